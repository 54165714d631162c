//! Message format conversion between Discord and Matrix: Discord markdown → Matrix HTML
//! ([`md_to_html`]), Matrix HTML → Discord markdown ([`html_to_md`]), and splitting text
//! over Discord's 2,000-character limit ([`split`]).
//!
//! Both directions are pure functions; what they need to know about users, roles and
//! channels comes through small resolver traits so they can be tested without a network.

pub mod html_to_md;
pub mod md_to_html;
pub mod split;

pub use html_to_md::{html_to_markdown, text_to_markdown, GhostResolver};
pub use md_to_html::{markdown_to_matrix, Converted, MentionResolver};
pub use split::{split_message, MESSAGE_LIMIT};

/// Escapes text for HTML content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html_specials() {
        assert_eq!(escape_html(r#"a<b>&"c""#), "a&lt;b&gt;&amp;&quot;c&quot;");
        assert_eq!(escape_html("plain"), "plain");
    }
}
