//! Matrix → Telegram: text messages (Matrix HTML as Telegram entities), as replies where
//! the Matrix event replied to a bridged message, sent through the login's [`crate::outbox`];
//! edits and deletions of them (of the queued copy while a message still waits); typing
//! and read receipts.

use bridge_core::network::events::ChatRef;
use bridge_core::network::{
    NetworkError, OutgoingContent, OutgoingMessage, RemoteMessageId, SentMessage,
};
use grammers_client::message::InputMessage;
use grammers_client::tl;
use grammers_session::types::{PeerId, PeerKind, PeerRef};

use crate::client::{timed, Shared};
use crate::outbox::Target;
use crate::{convert, ids};

/// The peer of a chat, with its access hash.
async fn peer(shared: &Shared, chat: &ChatRef) -> Result<(PeerId, PeerRef), NetworkError> {
    let id = ids::parse_chat(&chat.id)
        .ok_or_else(|| NetworkError::NotFound(format!("chat {}", chat.id.as_str())))?;
    let peer = shared.peer_ref(id).await.ok_or_else(|| {
        NetworkError::NotFound(format!(
            "the Telegram chat {} (not seen by this login yet)",
            chat.id.as_str()
        ))
    })?;
    Ok((id, peer))
}

/// The number of a message Telegram has, for what the core names by `id` (a number, or
/// the provisional ID of a message the queue sent since).
fn message_number(shared: &Shared, id: &RemoteMessageId) -> Result<i32, NetworkError> {
    match shared.outbox.target(id) {
        Target::Sent(number) => Ok(number),
        Target::Queued(_) | Target::Unknown => Err(NetworkError::NotFound(format!(
            "message {} (not sent to Telegram)",
            id.as_str()
        ))),
    }
}

/// What Telegram cannot be sent (yet) from Matrix.
pub(crate) fn unsupported(content: &OutgoingContent) -> NetworkError {
    let what = match content {
        OutgoingContent::Text { .. } => "this message",
        OutgoingContent::Media { .. } => "sending files to Telegram (not yet)",
        OutgoingContent::Location { .. } => "sending locations to Telegram (not yet)",
    };
    NetworkError::Unsupported(what.to_owned())
}

/// Matrix text as Telegram text and entities (an emote in italics: Telegram has none).
pub(crate) fn text_entities(
    body: &str,
    html: Option<&str>,
    emote: bool,
    mentions: &dyn convert::MentionMap,
) -> (String, Vec<tl::enums::MessageEntity>) {
    let (text, mut entities) = convert::from_matrix(body, html, mentions);
    if emote {
        let length = text.encode_utf16().count() as i32;
        entities.insert(
            0,
            tl::types::MessageEntityItalic { offset: 0, length }.into(),
        );
    }
    (text, entities)
}

/// Matrix text as Telegram text and entities (mentions with their users' access hashes).
async fn text(
    shared: &Shared,
    content: &OutgoingContent,
) -> Result<(String, Vec<tl::enums::MessageEntity>), NetworkError> {
    match content {
        OutgoingContent::Text {
            body, html, emote, ..
        } => {
            let (text, entities) = text_entities(body, html.as_deref(), *emote, shared);
            Ok((text, shared.input_mentions(entities).await))
        }
        other => Err(unsupported(other)),
    }
}

/// Sends a Matrix message to its chat (through the login's queue when Telegram asks the
/// bridge to wait); returns the Telegram message's ID, or a provisional one.
pub async fn send_message(
    shared: &Shared,
    message: OutgoingMessage,
) -> Result<SentMessage, NetworkError> {
    let (chat, _) = peer(shared, &message.chat).await?;
    shared
        .send_or_queue(chat, &message.content, message.reply_to.as_ref())
        .await
}

/// Edits a message the account sent.
pub async fn edit_message(
    shared: &Shared,
    chat: &ChatRef,
    id: &RemoteMessageId,
    content: OutgoingContent,
) -> Result<(), NetworkError> {
    if let Target::Queued(seq) = shared.outbox.target(id) {
        if shared.edit_queued(seq, &content).await {
            return Ok(());
        }
    }
    let (chat, peer) = peer(shared, chat).await?;
    let id = message_number(shared, id)?;
    let (text, entities) = text(shared, &content).await?;
    let client = shared.client()?;
    shared.expect_edit_echo(chat, id);
    let input = InputMessage::new().text(text).fmt_entities(entities);
    let edited = timed(&shared.config, client.edit_message(peer, id, input)).await;
    if edited.is_err() {
        shared.take_edit_echo(chat, id);
    }
    edited
}

/// Deletes a message for everyone in the chat.
pub async fn delete_message(
    shared: &Shared,
    chat: &ChatRef,
    id: &RemoteMessageId,
) -> Result<(), NetworkError> {
    if let Target::Queued(seq) = shared.outbox.target(id) {
        if shared.cancel_queued(seq).await {
            return Ok(());
        }
    }
    let (_, peer) = peer(shared, chat).await?;
    let id = message_number(shared, id)?;
    let client = shared.client()?;
    timed(&shared.config, client.delete_messages(peer, &[id])).await?;
    Ok(())
}

/// Starts or stops "typing…" in a chat.
pub async fn set_typing(shared: &Shared, chat: &ChatRef, typing: bool) -> Result<(), NetworkError> {
    let (_, peer) = peer(shared, chat).await?;
    let action: tl::enums::SendMessageAction = if typing {
        tl::types::SendMessageTypingAction {}.into()
    } else {
        tl::types::SendMessageCancelAction {}.into()
    };
    let client = shared.client()?;
    let request = tl::functions::messages::SetTyping {
        peer: peer.into(),
        top_msg_id: None,
        action,
    };
    timed(&shared.config, client.invoke(&request)).await?;
    Ok(())
}

/// Marks a chat read up to a message.
pub async fn mark_read(
    shared: &Shared,
    chat: &ChatRef,
    up_to: &RemoteMessageId,
) -> Result<(), NetworkError> {
    let (_, peer) = peer(shared, chat).await?;
    let Target::Sent(max_id) = shared.outbox.target(up_to) else {
        // Our own message, still waiting: nothing to mark.
        return Ok(());
    };
    let client = shared.client()?;
    if peer.id.kind() == PeerKind::Channel {
        let request = tl::functions::channels::ReadHistory {
            channel: tl::types::InputChannel {
                channel_id: peer.id.bare_id_unchecked(),
                access_hash: peer.auth.hash(),
            }
            .into(),
            max_id,
        };
        timed(&shared.config, client.invoke(&request)).await?;
        return Ok(());
    }
    let request = tl::functions::messages::ReadHistory {
        peer: peer.into(),
        max_id,
    };
    timed(&shared.config, client.invoke(&request)).await?;
    Ok(())
}
