//! How WeChat's ids become the core's typed remote IDs: chats (rooms contain `@`, contacts
//! don't), the login (the self contact's id), and the media sources the client downloads.

use bridge_core::network::events::ChatRef;
use bridge_core::network::{LoginId, RemoteChatId};

/// Whether a conversation id names a room (WeChat room ids contain `@`, as in `…@chatroom`).
pub fn is_room(id: &str) -> bool {
    id.contains('@')
}

/// The chat a conversation id names for `login`: a room is shared by every login in it, a
/// contact's DM exists once per login.
pub fn chat_ref(login: &LoginId, conversation: &str) -> ChatRef {
    ChatRef {
        id: RemoteChatId::from(conversation),
        receiver: (!is_room(conversation)).then(|| login.clone()),
    }
}

/// The conversation a message belongs to: its room, or for a DM the other person (the
/// listener when we sent it, the talker otherwise).
pub fn conversation_of<'a>(self_id: &str, room_id: &'a str, talker_id: &'a str, listener_id: &'a str) -> &'a str {
    if !room_id.is_empty() {
        room_id
    } else if talker_id == self_id {
        listener_id
    } else {
        talker_id
    }
}

/// Something [`crate::client::WechatClient`]'s `download_media` can fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaSource {
    /// A message's file (`MessageFile`, then the file stream).
    File(String),
    /// A message's image (`MessageFile`, then the file stream, then the HD image stream).
    Image(String),
    /// A contact's or (for ids with `@`) a room's avatar.
    Avatar(String),
}

impl MediaSource {
    /// Parses a source written by [`MediaSource::to_string`].
    pub fn parse(source: &str) -> Option<Self> {
        let (kind, id) = source.split_once(':')?;
        if id.is_empty() {
            return None;
        }
        match kind {
            "file" => Some(Self::File(id.to_owned())),
            "image" => Some(Self::Image(id.to_owned())),
            "avatar" => Some(Self::Avatar(id.to_owned())),
            _ => None,
        }
    }
}

impl std::fmt::Display for MediaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(id) => write!(f, "file:{id}"),
            Self::Image(id) => write!(f, "image:{id}"),
            Self::Avatar(id) => write!(f, "avatar:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_are_shared_and_dms_belong_to_the_login() {
        let login = LoginId::from("wxid_me");
        for (id, room) in [("123@chatroom", true), ("wxid_abc", false), ("filehelper", false)] {
            assert_eq!(is_room(id), room, "{id}");
            let chat = chat_ref(&login, id);
            assert_eq!(chat.id.as_str(), id);
            assert_eq!(chat.receiver.is_none(), room, "{id}");
        }
    }

    #[test]
    fn conversation_of_a_message() {
        let cases = [
            ("me", "r@chatroom", "you", "", "r@chatroom"),
            ("me", "", "you", "me", "you"),
            ("me", "", "me", "you", "you"),
        ];
        for (me, room, talker, listener, want) in cases {
            assert_eq!(conversation_of(me, room, talker, listener), want);
        }
    }

    #[test]
    fn media_sources_round_trip() {
        let sources = [MediaSource::File("m1".to_owned()), MediaSource::Image("m:2".to_owned()), MediaSource::Avatar("wxid_a".to_owned())];
        for source in sources {
            assert_eq!(MediaSource::parse(&source.to_string()), Some(source));
        }
        for bad in ["", "file:", "avatar:", "thumb:x", "nothing"] {
            assert_eq!(MediaSource::parse(bad), None, "{bad}");
        }
    }
}
