//! Mapping between remote user IDs and ghost Matrix IDs.
//!
//! Remote IDs can hold characters Matrix localparts forbid (upper case, spaces, `@`), so
//! they are escaped reversibly: `a-z 0-9 . - /` stay, `_` becomes `__`, an upper-case
//! letter becomes `_` and its lower case, and every other byte becomes `=` and two hex
//! digits (the mapping the Matrix specification suggests).

use ruma::{OwnedUserId, UserId};

/// Builds ghost user IDs from a username template (`discord_{id}`) and back.
#[derive(Debug, Clone)]
pub struct GhostNamer {
    prefix: String,
    suffix: String,
    server_name: String,
}

impl GhostNamer {
    /// A namer for `template` (which contains `{id}`) on `server_name`.
    pub fn new(template: &str, server_name: &str) -> Self {
        let (prefix, suffix) = template.split_once("{id}").unwrap_or((template, ""));
        Self { prefix: prefix.to_owned(), suffix: suffix.to_owned(), server_name: server_name.to_owned() }
    }

    /// The ghost's Matrix ID for a remote user ID.
    pub fn user_id(&self, remote_id: &str) -> Option<OwnedUserId> {
        let localpart = format!("{}{}{}", self.prefix, escape(remote_id), self.suffix);
        UserId::parse(format!("@{localpart}:{}", self.server_name)).ok()
    }

    /// The remote user ID of a ghost, or `None` if `user_id` is not one of our ghosts.
    pub fn remote_id(&self, user_id: &UserId) -> Option<String> {
        if user_id.server_name().as_str() != self.server_name {
            return None;
        }
        let escaped = user_id
            .localpart()
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?;
        if escaped.is_empty() {
            return None;
        }
        unescape(escaped)
    }
}

/// Escapes a remote ID into characters allowed in a localpart.
pub fn escape(remote: &str) -> String {
    let mut out = String::with_capacity(remote.len());
    for byte in remote.bytes() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'/' => out.push(byte as char),
            b'_' => out.push_str("__"),
            b'A'..=b'Z' => {
                out.push('_');
                out.push(byte.to_ascii_lowercase() as char);
            }
            other => out.push_str(&format!("={other:02x}")),
        }
    }
    out
}

/// Reverses [`escape`]; `None` for a string `escape` cannot produce.
pub fn unescape(escaped: &str) -> Option<String> {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => {
                let next = *bytes.get(i + 1)?;
                out.push(if next == b'_' { b'_' } else if next.is_ascii_lowercase() { next.to_ascii_uppercase() } else { return None });
                i += 2;
            }
            b'=' => {
                let hex = escaped.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips() {
        let cases = [
            ("12345", "12345"),
            ("wxid_abc", "wxid__abc"),
            ("Alice", "_alice"),
            ("a b@c", "a=20b=40c"),
            ("名字", "=e5=90=8d=e5=ad=97"),
            ("x.y-z/w", "x.y-z/w"),
        ];
        for (remote, escaped) in cases {
            assert_eq!(escape(remote), escaped);
            assert_eq!(unescape(escaped).as_deref(), Some(remote));
        }
        assert_eq!(unescape("_1"), None);
        assert_eq!(unescape("=zz"), None);
    }

    #[test]
    fn ghost_ids_both_ways() {
        let namer = GhostNamer::new("discord_{id}", "example.com");
        let ghost = namer.user_id("Bob_1").expect("valid ghost id");
        assert_eq!(ghost.as_str(), "@discord__bob__1:example.com");
        assert_eq!(namer.remote_id(&ghost).as_deref(), Some("Bob_1"));
        let other = UserId::parse("@discordbot:example.com").expect("valid");
        assert_eq!(namer.remote_id(&other), None);
        let elsewhere = UserId::parse("@discord_1:other.org").expect("valid");
        assert_eq!(namer.remote_id(&elsewhere), None);
    }
}
