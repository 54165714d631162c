//! Identifiers: a login is its account's phone number (the user part of its JID, digits
//! only); phone numbers as users type and see them.

/// `+15551234567` for the digits `15551234567`.
pub fn display_phone(digits: &str) -> String {
    format!("+{digits}")
}

/// The digits of a phone number typed in international format (`+1 555-123 4567`), or
/// `None` if it is not one.
pub fn parse_phone(text: &str) -> Option<String> {
    let text = text.trim();
    let rest = text.strip_prefix('+').unwrap_or(text);
    if rest
        .chars()
        .any(|c| !(c.is_ascii_digit() || matches!(c, ' ' | '-' | '(' | ')' | '.')))
    {
        return None;
    }
    let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
    (7..=15).contains(&digits.len()).then_some(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_parse_from_what_users_type() {
        let cases = [
            ("+15551234567", Some("15551234567")),
            (" +1 (555) 123-4567 ", Some("15551234567")),
            ("4915123456789", Some("4915123456789")),
            ("+1555", None),
            ("call me", None),
            ("+1555123456789012", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_phone(text).as_deref(), want, "{text:?}");
        }
        assert_eq!(display_phone("15551234567"), "+15551234567");
    }
}
