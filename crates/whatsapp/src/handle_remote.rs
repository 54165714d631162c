//! WhatsApp → core: what one login's whatsapp-rust client reports.
//!
//! Messages come through whatsapp-rust's inbound durability hook ([`Durable`]): the client
//! acknowledges a message to WhatsApp (which then drops it from the device's offline
//! queue) only once the hook returned, and the hook returns only once the core applied
//! the message's events (`EventSender::send_tracked`). A crash before that leaves the
//! message unacknowledged: WhatsApp delivers it again after the restart, and the core
//! skips what it already bridged. A message becomes a new message, an edit, a deletion
//! (revoke) or a reaction; the sender's push name names their ghost.
//!
//! The event task ([`run`]) reports the connection (connected, lost, replaced, logged out
//! by the phone), read receipts, typing, and messages that could not be decrypted: a
//! notice stands for such a message (`placeholder/<id>` in the login's store) while
//! whatsapp-rust asks the sender again, and becomes the message (an edit) if it arrives.

use std::sync::Arc;

use bridge_core::network::events::{
    ChatInfo, ChatMember, ChatRef, LoginState, MessageContent, MessagePart, Sender, UserInfo,
};
use bridge_core::network::{EmojiId, NetworkError, PartId, RemoteEvent, RemoteUserId};
use whatsapp_rust::types::events::{Event, InboundMessage};
use whatsapp_rust::wacore::types::message::MessageInfo;
use whatsapp_rust::wacore::types::presence::{ChatPresence, ReceiptType};
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::Client;

use crate::client::Shared;
use crate::convert::Mention;
use crate::ids::{self, MessageRef};

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// How long a "typing…" lasts without a renewal (WhatsApp clients repeat it while typing).
const TYPING_TIMEOUT_MS: u64 = 15_000;

/// The inbound durability hook: messages reach the core before WhatsApp is told they
/// arrived.
pub(crate) struct Durable(pub(crate) Arc<Shared>);

#[async_trait::async_trait]
impl whatsapp_rust::InboundDurabilityHook for Durable {
    async fn on_messages(
        &self,
        _client: Arc<Client>,
        batch: &[InboundMessage],
    ) -> anyhow::Result<()> {
        let shared = &self.0;
        let mut applied = Vec::new();
        for inbound in batch {
            for event in events_of(shared, &inbound.info, &inbound.message).await {
                let handle = shared
                    .events
                    .send_tracked(event)
                    .await
                    .ok_or_else(|| anyhow::anyhow!("the bridge is shutting down"))?;
                applied.push(handle);
            }
        }
        for handle in applied {
            anyhow::ensure!(
                handle.wait().await,
                "the bridge stopped before the message was bridged"
            );
        }
        Ok(())
    }
}

/// The core's events for one decrypted message.
async fn events_of(shared: &Shared, info: &MessageInfo, message: &wa::Message) -> Vec<RemoteEvent> {
    use whatsapp_rust::wacore::proto_helpers::MessageExt as _;
    let source = &info.source;
    let chat = ids::chat_ref(&shared.login, &source.chat);
    let sender = Sender {
        user: ids::user_id(&source.sender),
        is_from_me: source.is_from_me,
    };
    let mut events = Vec::new();
    if !source.is_from_me {
        if let Some(event) = shared
            .learn_push_name(&source.sender, &info.push_name)
            .await
        {
            events.push(event);
        }
    }
    let message = message.get_base_message();
    let timestamp = info.timestamp.timestamp_millis();
    // A key names the message it points at: its author wrote it (`from_me`), or, in a
    // group, the participant did; else the other side of the DM.
    let key_ref = |key: &wa::MessageKey| {
        let id = key.id.clone().unwrap_or_default();
        let participant = key
            .participant
            .as_deref()
            .map(|p| p.split(['@', ':']).next().unwrap_or_default())
            .filter(|p| !p.is_empty());
        let sender = if key.from_me.unwrap_or(false) {
            source.sender.user.to_string()
        } else if let Some(participant) = participant {
            participant.to_owned()
        } else if source.is_from_me {
            source.chat.user.to_string()
        } else {
            shared.login.as_str().to_owned()
        };
        MessageRef { sender, id }.remote_id()
    };
    if let Some(protocol) = message.protocol_message.as_option() {
        use wa::message::protocol_message::Type;
        let Some(key) = protocol.key.as_option() else {
            return events;
        };
        match protocol.r#type {
            Some(Type::Revoke) => events.push(RemoteEvent::Delete {
                chat,
                id: key_ref(key),
                sender,
            }),
            Some(Type::MessageEdit) => {
                if let Some(edited) = protocol.edited_message.as_option() {
                    events.push(RemoteEvent::Edit {
                        chat,
                        id: key_ref(key),
                        sender,
                        timestamp,
                        parts: parts_of(shared, edited).await,
                    });
                }
            }
            _ => {}
        }
        return events;
    }
    if let Some(reaction) = message.reaction_message.as_option() {
        let Some(key) = reaction.key.as_option() else {
            return events;
        };
        let target = key_ref(key);
        let emoji = reaction.text.clone().unwrap_or_default();
        // WhatsApp keeps one reaction per user and message: a new one replaces the old.
        let slot = format!("reaction/{}/{}", target.as_str(), sender.user.as_str());
        let previous: Option<String> = shared.events.store().get(&slot).await.ok().flatten();
        if let Some(previous) = previous.filter(|p| *p != emoji) {
            events.push(RemoteEvent::ReactionRemove {
                chat: chat.clone(),
                target: target.clone(),
                sender: sender.clone(),
                emoji_id: EmojiId(previous),
            });
        }
        if emoji.is_empty() {
            let _ = shared.events.store().delete(&slot).await;
        } else {
            let _ = shared.events.store().set(&slot, &emoji).await;
            events.push(RemoteEvent::ReactionAdd {
                chat,
                target,
                sender,
                emoji_id: EmojiId(emoji.clone()),
                emoji,
                timestamp,
            });
        }
        return events;
    }
    let parts = parts_of(shared, message).await;
    if parts.is_empty() {
        return events;
    }
    let id = MessageRef::new(&source.sender, &info.id).remote_id();
    let placeholder = placeholder_key(&id);
    if shared
        .events
        .store()
        .get::<bool>(&placeholder)
        .await
        .ok()
        .flatten()
        .is_some()
    {
        // It could not be decrypted at first: the notice standing for it becomes it.
        let _ = shared.events.store().delete(&placeholder).await;
        events.push(RemoteEvent::Edit {
            chat,
            id,
            sender,
            timestamp,
            parts,
        });
        return events;
    }
    let reply_to = context_of(message).and_then(|context| {
        let id = context.stanza_id.clone().filter(|id| !id.is_empty())?;
        let participant = context.participant.as_deref().unwrap_or_default();
        let sender = participant.split(['@', ':']).next().unwrap_or_default();
        let sender = if sender.is_empty() {
            source.chat.user.to_string()
        } else {
            sender.to_owned()
        };
        Some(MessageRef { sender, id }.remote_id())
    });
    events.push(RemoteEvent::Message {
        chat,
        id,
        sender,
        timestamp,
        parts,
        reply_to,
        thread_root: None,
    });
    events
}

/// Where the notice standing for an undecryptable message is remembered.
fn placeholder_key(id: &bridge_core::network::RemoteMessageId) -> String {
    format!("placeholder/{}", id.as_str())
}

/// What the room shows while a message cannot be decrypted.
const WAITING: &str = "⏳ Waiting for this message: it could not be decrypted, and WhatsApp \
                       asked the sender's phone to send it again. If it does not appear, \
                       read it in WhatsApp on your phone.";

/// A message whatsapp-rust could not decrypt (it asks the sender again with a retry
/// receipt): a notice in the room instead of silence, replaced by the message if a retry
/// brings it.
async fn undecryptable(shared: &Shared, info: &MessageInfo) -> Option<RemoteEvent> {
    let source = &info.source;
    if source.is_from_me {
        return None;
    }
    let id = MessageRef::new(&source.sender, &info.id).remote_id();
    let _ = shared
        .events
        .store()
        .set(&placeholder_key(&id), &true)
        .await;
    tracing::info!(login = %shared.login, message = %id.as_str(), "a message could not be decrypted; a retry was requested");
    Some(RemoteEvent::Message {
        chat: ids::chat_ref(&shared.login, &source.chat),
        id,
        sender: Sender {
            user: ids::user_id(&source.sender),
            is_from_me: false,
        },
        timestamp: info.timestamp.timestamp_millis(),
        parts: vec![MessagePart {
            id: PartId(String::new()),
            content: MessageContent::Notice {
                body: WAITING.to_owned(),
            },
        }],
        reply_to: None,
        thread_root: None,
    })
}

/// The context (quote, mentions) of a message's content.
fn context_of(message: &wa::Message) -> Option<&wa::ContextInfo> {
    if let Some(text) = message.extended_text_message.as_option() {
        return text.context_info.as_option();
    }
    None
}

/// The people a message's context mentions, as pills and names.
async fn mentions_of(shared: &Shared, message: &wa::Message) -> Vec<Mention> {
    let Some(context) = context_of(message) else {
        return Vec::new();
    };
    let mut mentions = Vec::new();
    for jid in &context.mentioned_jid {
        let phone = jid.split(['@', ':']).next().unwrap_or_default();
        if phone.is_empty() || mentions.iter().any(|m: &Mention| m.phone == phone) {
            continue;
        }
        let name = shared
            .push_name(phone)
            .await
            .unwrap_or_else(|| ids::display_phone(phone));
        let user = RemoteUserId(phone.to_owned());
        mentions.push(Mention {
            phone: phone.to_owned(),
            pill: shared.events.mention_pill(&user, &name),
            name,
        });
    }
    mentions
}

/// The parts of a message's content; empty for what is not bridged at all (protocol
/// messages, key distribution).
pub(crate) async fn parts_of(shared: &Shared, message: &wa::Message) -> Vec<MessagePart> {
    use whatsapp_rust::wacore::proto_helpers::MessageExt as _;
    let part = |content| {
        vec![MessagePart {
            id: PartId(String::new()),
            content,
        }]
    };
    if let Some(text) = message.text_content() {
        let mentions = mentions_of(shared, message).await;
        let (body, html) = crate::convert::to_matrix(text, &mentions);
        return part(MessageContent::Text {
            body,
            html,
            mentions: mentions
                .into_iter()
                .map(|m| RemoteUserId(m.phone))
                .collect(),
        });
    }
    if let Some(media) = crate::media::incoming(message) {
        return part(MessageContent::Media(media));
    }
    let kind = if message.location_message.is_set() {
        "a location"
    } else if message.contact_message.is_set() {
        "a contact card"
    } else {
        return Vec::new();
    };
    let caption = message
        .get_caption()
        .map(|c| format!(": {c}"))
        .unwrap_or_default();
    part(MessageContent::Notice {
        body: format!("Sent {kind}, which the bridge cannot show yet{caption}"),
    })
}

/// Reads `events` until the client stops or the core goes away.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<Arc<Event>>,
) {
    while let Some(event) = events.recv().await {
        if let Some(state) = login_state(&event) {
            if let LoginState::BadCredentials { reason } = &state {
                tracing::info!(login = %shared.login, %reason, "the WhatsApp device was logged out");
                shared.logged_out(reason).await;
                continue;
            }
            if !shared.report(state).await {
                return;
            }
            continue;
        }
        let reported = match &*event {
            Event::UndecryptableMessage(failed) => undecryptable(&shared, &failed.info).await,
            other => activity(&shared, other),
        };
        if let Some(event) = reported {
            if shared.events.send_tracked(event).await.is_none() {
                return;
            }
        }
    }
}

/// A read receipt or a chat state, as the core's event.
fn activity(shared: &Shared, event: &Event) -> Option<RemoteEvent> {
    match event {
        Event::Receipt(receipt) if matches!(receipt.r#type, ReceiptType::Read) => {
            let source = &receipt.source;
            if source.is_from_me {
                return None;
            }
            let last = receipt.message_ids.last()?;
            // Receipts name messages of this account.
            let up_to = MessageRef {
                sender: shared.login.as_str().to_owned(),
                id: last.to_string(),
            }
            .remote_id();
            Some(RemoteEvent::ReadReceipt {
                chat: ids::chat_ref(&shared.login, &source.chat),
                sender: Sender {
                    user: ids::user_id(&source.sender),
                    is_from_me: false,
                },
                up_to,
            })
        }
        Event::ChatPresence(presence) => {
            let source = &presence.source;
            if source.is_from_me {
                return None;
            }
            let timeout_ms = match presence.state {
                ChatPresence::Composing => TYPING_TIMEOUT_MS,
                ChatPresence::Paused => 0,
            };
            Some(RemoteEvent::Typing {
                chat: ids::chat_ref(&shared.login, &source.chat),
                sender: Sender {
                    user: ids::user_id(&source.sender),
                    is_from_me: false,
                },
                timeout_ms,
            })
        }
        _ => None,
    }
}

/// The login state an event means, if any.
pub(crate) fn login_state(event: &Event) -> Option<LoginState> {
    let bad = |reason: &str| {
        Some(LoginState::BadCredentials {
            reason: reason.to_owned(),
        })
    };
    match event {
        Event::Connected(_) => Some(LoginState::Connected),
        Event::Disconnected(disconnected) => Some(LoginState::TransientDisconnect {
            reason: format!("disconnected from WhatsApp: {}", disconnected.reason),
        }),
        Event::LoggedOut(_) => {
            bad("the bridge was unlinked from your phone (or WhatsApp logged the device out)")
        }
        Event::StreamReplaced(_) => bad("another client connected as this linked device"),
        Event::TemporaryBan(_) => bad("WhatsApp banned the account temporarily"),
        Event::ClientOutdated(_) => {
            bad("WhatsApp says this version is outdated: update network.app_version")
        }
        _ => None,
    }
}

/// A group's subject, description and members (admins marked), asked of WhatsApp.
pub(crate) async fn group_info(shared: &Shared, chat: &ChatRef) -> Result<ChatInfo, NetworkError> {
    let jid = crate::handle_matrix::chat_jid(chat)?;
    let client = shared.client()?;
    let group = crate::handle_matrix::timed(client.groups().get_metadata(&jid)).await?;
    let members = group
        .participants
        .iter()
        .map(|member| ChatMember {
            user: ids::user_id(member.phone_number.as_ref().unwrap_or(&member.jid)),
            nickname: None,
            is_admin: member.is_admin(),
        })
        .collect();
    Ok(ChatInfo {
        name: Some(group.subject).filter(|s| !s.is_empty()),
        topic: group.description.filter(|d| !d.is_empty()),
        is_direct: false,
        members: Some(members),
        ..ChatInfo::default()
    })
}

/// What a push name says about its ghost.
pub(crate) fn user_info(phone: &str, push_name: Option<String>) -> UserInfo {
    UserInfo {
        name: Some(push_name.unwrap_or_else(|| ids::display_phone(phone))),
        ..UserInfo::default()
    }
}
