//! Telegram updates → the core's remote events: new messages (from contacts, and from the
//! account's other devices; not the echoes of what the bridge sent), edits and deletions,
//! typing and read receipts in private chats, name changes, and what a user object says
//! about its ghost.
//!
//! Every event is reported with `send_tracked` and waited for (see
//! [`crate::session::AppliedState`]); messages the bridge sent through its queue are
//! reported under the provisional IDs the core knows them by ([`crate::outbox`]).
//!
//! Telegram reports deletions in private chats and basic groups by message number only, so
//! the chat and author of every bridged message are kept in the login's store
//! (`message/<id>`) until it is deleted.

use bridge_core::network::events::{MessageContent, MessagePart, Sender, UserInfo};
use bridge_core::network::{PartId, RemoteEvent};
use grammers_client::peer::PeerMap;
use grammers_client::tl;
use grammers_session::types::{PeerId, PeerKind};
use serde::{Deserialize, Serialize};

use crate::client::Shared;
use crate::{convert, ids};

/// Where a message is and who wrote it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct MessageRef {
    /// The chat, in Bot API notation.
    chat: i64,
    /// The author.
    sender: i64,
}

fn message_key(id: i32) -> String {
    format!("message/{id}")
}

/// Remembers where message `id` is (not for channels, whose deletions name the channel).
pub(crate) async fn remember(shared: &Shared, id: i32, chat: PeerId, sender: i64) {
    if chat.kind() == PeerKind::Channel {
        return;
    }
    let entry = MessageRef {
        chat: chat.bot_api_dialog_id_unchecked(),
        sender,
    };
    if let Err(error) = shared.events.store().set(&message_key(id), &entry).await {
        tracing::warn!(login = %shared.login, %error, "could not remember a message's chat");
    }
}

/// Reports an event and waits until the core has applied it (or kept it to apply later), so
/// that the update state is stored only after that; `false` if the bridge is stopping.
async fn emit(shared: &Shared, event: RemoteEvent) -> bool {
    match shared.events.send_tracked(event).await {
        Some(applied) => applied.wait().await,
        None => false,
    }
}

/// Handles one update, returning once the core has applied what it reported; `false` if
/// the core is shutting down.
pub async fn handle(shared: &Shared, update: tl::enums::Update, _peers: &PeerMap) -> bool {
    use tl::enums::Update as U;
    match update {
        U::NewMessage(tl::types::UpdateNewMessage { message, .. })
        | U::NewChannelMessage(tl::types::UpdateNewChannelMessage { message, .. }) => {
            let Some(parsed) = parse(shared, &message) else {
                return true;
            };
            if parsed.out && shared.is_own_send(parsed.chat, parsed.id).await {
                return true;
            }
            remember(shared, parsed.id, parsed.chat, parsed.sender.0).await;
            emit(shared, parsed.into_message(shared)).await
        }
        U::EditMessage(tl::types::UpdateEditMessage { message, .. })
        | U::EditChannelMessage(tl::types::UpdateEditChannelMessage { message, .. }) => {
            let Some(parsed) = parse(shared, &message) else {
                return true;
            };
            if parsed.out && shared.take_edit_echo(parsed.chat, parsed.id) {
                return true;
            }
            emit(shared, parsed.into_edit(shared)).await
        }
        U::DeleteMessages(tl::types::UpdateDeleteMessages { messages, .. }) => {
            for id in messages {
                let key = message_key(id);
                let Ok(Some(entry)) = shared.events.store().get::<MessageRef>(&key).await else {
                    continue;
                };
                let Some(chat) = PeerId::from_bot_api_dialog_id(entry.chat) else {
                    continue;
                };
                let me = shared.self_id();
                let event = RemoteEvent::Delete {
                    chat: ids::chat_ref(&shared.login, chat),
                    id: shared.outbox.known_id(chat, id),
                    sender: Sender {
                        user: ids::user_id(entry.sender),
                        is_from_me: Some(entry.sender) == me,
                    },
                };
                if !emit(shared, event).await {
                    return false;
                }
                let _ = shared.events.store().delete(&key).await;
            }
            true
        }
        U::MessageReactions(update) => {
            for event in shared.reaction_events(update).await {
                if !emit(shared, event).await {
                    return false;
                }
            }
            true
        }
        U::UserTyping(typing) => {
            let chat = PeerId::user_unchecked(typing.user_id);
            let timeout_ms = match typing.action {
                tl::enums::SendMessageAction::SendMessageCancelAction => 0,
                _ => TYPING_TIMEOUT_MS,
            };
            let sender = Sender {
                user: ids::user_id(typing.user_id),
                is_from_me: false,
            };
            emit(
                shared,
                RemoteEvent::Typing {
                    chat: ids::chat_ref(&shared.login, chat),
                    sender,
                    timeout_ms,
                },
            )
            .await
        }
        U::UserName(renamed) => {
            let name = [renamed.first_name.trim(), renamed.last_name.trim()]
                .into_iter()
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            if name.is_empty() {
                return true;
            }
            let info = UserInfo {
                name: Some(name),
                ..UserInfo::default()
            };
            emit(
                shared,
                RemoteEvent::UserInfoChanged {
                    user: ids::user_id(renamed.user_id),
                    info,
                },
            )
            .await
        }
        U::ReadHistoryOutbox(read) => {
            let chat = PeerId::from(&read.peer);
            let Some(reader) = chat.bare_id().filter(|_| chat.kind() == PeerKind::User) else {
                return true;
            };
            let sender = Sender {
                user: ids::user_id(reader),
                is_from_me: false,
            };
            let up_to = shared.outbox.known_id(chat, read.max_id);
            emit(
                shared,
                RemoteEvent::ReadReceipt {
                    chat: ids::chat_ref(&shared.login, chat),
                    sender,
                    up_to,
                },
            )
            .await
        }
        _ => true,
    }
}

/// How long a "typing…" lasts without a renewal (Telegram clients repeat it every few
/// seconds and let it expire after about six).
const TYPING_TIMEOUT_MS: u64 = 6000;

/// A message, read.
struct Parsed {
    chat: PeerId,
    id: i32,
    /// The author, and whether it is the account itself.
    sender: (i64, bool),
    out: bool,
    date: i32,
    edit_date: Option<i32>,
    parts: Vec<MessagePart>,
    reply_to: Option<i32>,
}

impl Parsed {
    fn sender(&self) -> Sender {
        Sender {
            user: ids::user_id(self.sender.0),
            is_from_me: self.sender.1,
        }
    }

    fn into_message(self, shared: &Shared) -> RemoteEvent {
        let known = |id| shared.outbox.known_id(self.chat, id);
        RemoteEvent::Message {
            chat: ids::chat_ref(&shared.login, self.chat),
            id: known(self.id),
            sender: self.sender(),
            timestamp: i64::from(self.date) * 1000,
            parts: self.parts,
            reply_to: self.reply_to.map(known),
            thread_root: None,
        }
    }

    fn into_edit(self, shared: &Shared) -> RemoteEvent {
        RemoteEvent::Edit {
            chat: ids::chat_ref(&shared.login, self.chat),
            id: shared.outbox.known_id(self.chat, self.id),
            sender: self.sender(),
            timestamp: i64::from(self.edit_date.unwrap_or(self.date)) * 1000,
            parts: self.parts,
        }
    }
}

/// Reads a message; `None` for what is not bridged (yet): empty messages (our own sends,
/// echoed by the library) and service messages.
fn parse(shared: &Shared, message: &tl::enums::Message) -> Option<Parsed> {
    let tl::enums::Message::Message(message) = message else {
        return None;
    };
    let chat = PeerId::from(&message.peer_id);
    let me = shared.self_id()?;
    // A user by their ID; a channel posting as itself by its (negative) Bot API ID.
    let sender = if message.out {
        me
    } else {
        match &message.from_id {
            Some(from) => PeerId::from(from).bot_api_dialog_id()?,
            None => chat.bot_api_dialog_id()?,
        }
    };
    let (body, html, mentioned) = convert::to_matrix(
        &message.message,
        message.entities.as_deref().unwrap_or_default(),
        shared,
    );
    let reply_to = match &message.reply_to {
        Some(tl::enums::MessageReplyHeader::Header(header)) => header.reply_to_msg_id,
        _ => None,
    };
    Some(Parsed {
        chat,
        id: message.id,
        sender: (sender, message.out || sender == me),
        out: message.out,
        date: message.date,
        edit_date: message.edit_date,
        parts: vec![MessagePart {
            id: PartId(String::new()),
            content: MessageContent::Text {
                body,
                html,
                mentions: mentioned.into_iter().map(ids::user_id).collect(),
            },
        }],
        reply_to,
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
