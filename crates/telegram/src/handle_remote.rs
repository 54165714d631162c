//! Telegram updates → the core's remote events: new messages (from contacts, and from the
//! account's other devices), and what a user object says about its ghost.

use bridge_core::network::events::{MessageContent, MessagePart, Sender, UserInfo};
use bridge_core::network::{PartId, RemoteEvent};
use grammers_client::peer::PeerMap;
use grammers_client::tl;
use grammers_session::types::PeerId;

use crate::client::Shared;
use crate::{convert, ids};

/// Handles one update; returns `false` if the core is shutting down.
pub async fn handle(shared: &Shared, update: tl::enums::Update, _peers: &PeerMap) -> bool {
    match update {
        tl::enums::Update::NewMessage(tl::types::UpdateNewMessage { message, .. })
        | tl::enums::Update::NewChannelMessage(tl::types::UpdateNewChannelMessage {
            message,
            ..
        }) => match message_event(shared, &message) {
            Some(event) => shared.events.send(event).await,
            None => true,
        },
        _ => true,
    }
}

/// The remote event of a new message; `None` for what is not bridged (yet): empty
/// messages (our own sends, echoed by the library) and service messages.
pub fn message_event(shared: &Shared, message: &tl::enums::Message) -> Option<RemoteEvent> {
    let tl::enums::Message::Message(message) = message else {
        return None;
    };
    let chat = PeerId::from(&message.peer_id);
    let me = shared.self_id()?;
    let sender = if message.out {
        me
    } else {
        match &message.from_id {
            Some(from) => PeerId::from(from).bare_id()?,
            None => chat.bare_id()?,
        }
    };
    let (body, html) = convert::to_matrix(
        &message.message,
        message.entities.as_deref().unwrap_or_default(),
    );
    let reply_to = match &message.reply_to {
        Some(tl::enums::MessageReplyHeader::Header(header)) => {
            header.reply_to_msg_id.map(ids::message_id)
        }
        _ => None,
    };
    Some(RemoteEvent::Message {
        chat: ids::chat_ref(&shared.login, chat),
        id: ids::message_id(message.id),
        sender: Sender {
            user: ids::user_id(sender),
            is_from_me: message.out || sender == me,
        },
        timestamp: i64::from(message.date) * 1000,
        parts: vec![MessagePart {
            id: PartId(String::new()),
            content: MessageContent::Text {
                body,
                html,
                mentions: Vec::new(),
            },
        }],
        reply_to,
        thread_root: None,
    })
}

/// What a user object says about its ghost: the name the user gave themself (first and
/// last name), else their username or phone number.
pub fn user_info(user: &tl::enums::User) -> UserInfo {
    match user {
        tl::enums::User::Empty(_) => UserInfo::default(),
        tl::enums::User::User(user) => {
            let full = [user.first_name.as_deref(), user.last_name.as_deref()]
                .into_iter()
                .flatten()
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            let name = if user.deleted {
                Some("Deleted Account".to_owned())
            } else if !full.is_empty() {
                Some(full)
            } else {
                user.username
                    .clone()
                    .map(|u| format!("@{u}"))
                    .or_else(|| user.phone.clone().map(|p| format!("+{p}")))
            };
            UserInfo {
                name,
                avatar: None,
                is_bot: user.bot,
            }
        }
    }
}
