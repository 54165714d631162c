//! How Telegram's peers and messages become the core's typed remote IDs.
//!
//! A chat's ID is its peer in the "Bot API" notation Telegram users know: a user `123`, a
//! basic group `-123`, a channel or supergroup `-1000000000123`. Private chats exist once per
//! login (their [`ChatRef::receiver`] is the login); groups and channels are shared. A
//! user's ID (ghosts, the login) is the bare user ID; a message's ID is its number, unique
//! in its chat from one login's point of view.

use bridge_core::network::events::ChatRef;
use bridge_core::network::{LoginId, RemoteChatId, RemoteMessageId, RemoteUserId};
use grammers_session::types::{PeerId, PeerKind};

/// The login ID of an account: its user ID.
pub fn login_id(user: i64) -> LoginId {
    LoginId(user.to_string())
}

/// The remote user ID of a Telegram user.
pub fn user_id(user: i64) -> RemoteUserId {
    RemoteUserId(user.to_string())
}

/// The Telegram user behind a remote user ID.
pub fn parse_user(user: &RemoteUserId) -> Option<i64> {
    user.as_str().parse().ok().filter(|id| *id > 0)
}

/// The chat of a peer as `login` sees it.
pub fn chat_ref(login: &LoginId, peer: PeerId) -> ChatRef {
    ChatRef {
        id: RemoteChatId(peer.bot_api_dialog_id_unchecked().to_string()),
        receiver: matches!(peer.kind(), PeerKind::User).then(|| login.clone()),
    }
}

/// The peer a chat ID names.
pub fn parse_chat(chat: &RemoteChatId) -> Option<PeerId> {
    PeerId::from_bot_api_dialog_id(chat.as_str().parse().ok()?)
}

/// The remote ID of a message.
pub fn message_id(id: i32) -> RemoteMessageId {
    RemoteMessageId(id.to_string())
}

/// The Telegram message number behind a remote message ID.
pub fn parse_message(id: &RemoteMessageId) -> Option<i32> {
    id.as_str().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chats_round_trip_and_only_private_chats_have_a_receiver() {
        let login = login_id(1);
        let cases = [
            (PeerId::user_unchecked(777), "777", true),
            (PeerId::chat_unchecked(555), "-555", false),
            (PeerId::channel_unchecked(1234), "-1000000001234", false),
        ];
        for (peer, id, private) in cases {
            let chat = chat_ref(&login, peer);
            assert_eq!(chat.id.as_str(), id);
            assert_eq!(chat.receiver.is_some(), private, "{id}");
            assert_eq!(parse_chat(&chat.id), Some(peer), "{id}");
        }
        assert_eq!(parse_chat(&RemoteChatId::from("x")), None);
    }

    #[test]
    fn users_and_messages_round_trip() {
        assert_eq!(parse_user(&user_id(42)), Some(42));
        assert_eq!(parse_user(&RemoteUserId::from("-5")), None);
        assert_eq!(parse_message(&message_id(9)), Some(9));
    }
}
