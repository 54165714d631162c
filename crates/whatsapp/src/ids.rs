//! Identifiers: how WhatsApp's JIDs and message keys become the core's typed remote IDs.
//!
//! - A login is its account's phone number (the user part of its JID, digits only).
//! - A user (ghost) is a phone number too: `15551234567` for `15551234567@s.whatsapp.net`,
//!   whichever device wrote.
//! - A DM's chat ID is the other person's phone number, seen by one login (its
//!   [`ChatRef::receiver`]); a group's chat ID is its JID (`…@g.us`), shared by the
//!   logins in it.
//! - A message ID is `<sender's phone>:<WhatsApp message ID>`: WhatsApp IDs are unique only
//!   per sender in a chat, and replying, reacting, editing and deleting all need the sender
//!   (a message key's `from_me` and `participant`).

use bridge_core::network::events::ChatRef;
use bridge_core::network::{LoginId, RemoteChatId, RemoteMessageId, RemoteUserId};
use wacore_binary::{Jid, JidExt as _, Server};

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

/// The remote user of a JID (any device of the account).
pub fn user_id(jid: &Jid) -> RemoteUserId {
    RemoteUserId(jid.user.to_string())
}

/// The chat a JID names, as `login` sees it: a DM with a user, or a group.
pub fn chat_ref(login: &LoginId, chat: &Jid) -> ChatRef {
    if chat.is_group() {
        ChatRef {
            id: RemoteChatId(chat.to_non_ad().to_string()),
            receiver: None,
        }
    } else {
        ChatRef {
            id: RemoteChatId(chat.user.to_string()),
            receiver: Some(login.clone()),
        }
    }
}

/// The JID of a chat ID: a group's JID, or the user a DM is with.
pub fn chat_jid(chat: &RemoteChatId) -> Option<Jid> {
    let id = chat.as_str();
    if id.contains('@') {
        let jid: Jid = id.parse().ok()?;
        return jid.is_group().then_some(jid);
    }
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit())).then(|| Jid::new(id, Server::Pn))
}

/// Whether a chat ID names a DM (not a group).
pub fn is_direct(chat: &RemoteChatId) -> bool {
    !chat.as_str().contains('@')
}

/// A WhatsApp message: who sent it (phone digits) and its ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    /// The sender's phone number.
    pub sender: String,
    /// WhatsApp's message ID.
    pub id: String,
}

impl MessageRef {
    /// The message `id` sent by `sender` (any device of the account).
    pub fn new(sender: &Jid, id: &str) -> Self {
        Self {
            sender: sender.user.to_string(),
            id: id.to_owned(),
        }
    }

    /// Reads a remote message ID (`<sender>:<id>`).
    pub fn parse(id: &RemoteMessageId) -> Option<Self> {
        let (sender, id) = id.as_str().split_once(':')?;
        (!sender.is_empty() && !id.is_empty()).then(|| Self {
            sender: sender.to_owned(),
            id: id.to_owned(),
        })
    }

    /// The remote message ID.
    pub fn remote_id(&self) -> RemoteMessageId {
        RemoteMessageId(format!("{}:{}", self.sender, self.id))
    }

    /// The sender's JID.
    pub fn sender_jid(&self) -> Jid {
        Jid::new(self.sender.as_str(), Server::Pn)
    }
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

    #[test]
    fn chats_and_messages_round_trip_through_remote_ids() {
        let login = LoginId::from("15550000001");
        let bob = Jid::pn_device("15550000002", 3);
        let dm = chat_ref(&login, &bob);
        assert_eq!(dm.id.as_str(), "15550000002");
        assert_eq!(dm.receiver, Some(login.clone()));
        assert_eq!(chat_jid(&dm.id), Some(Jid::pn("15550000002")));
        assert!(is_direct(&dm.id));

        let group = Jid::group("120363000000000001");
        let shared = chat_ref(&login, &group);
        assert_eq!(shared.id.as_str(), "120363000000000001@g.us");
        assert_eq!(shared.receiver, None);
        assert_eq!(chat_jid(&shared.id), Some(group));
        assert!(!is_direct(&shared.id));
        assert_eq!(chat_jid(&RemoteChatId::from("bob@s.whatsapp.net")), None);
        assert_eq!(chat_jid(&RemoteChatId::from("")), None);

        let message = MessageRef::new(&bob, "3EB0ABC");
        let id = message.remote_id();
        assert_eq!(id.as_str(), "15550000002:3EB0ABC");
        assert_eq!(MessageRef::parse(&id), Some(message.clone()));
        assert_eq!(message.sender_jid(), Jid::pn("15550000002"));
        for bad in ["3EB0ABC", ":x", "x:"] {
            assert_eq!(
                MessageRef::parse(&RemoteMessageId::from(bad)),
                None,
                "{bad}"
            );
        }
    }
}
