//! Matrix → Telegram: text messages (Matrix HTML as Telegram entities), as replies where
//! the Matrix event replied to a bridged message; edits and deletions of them; typing and
//! read receipts.

use bridge_core::network::events::ChatRef;
use bridge_core::network::{
    NetworkError, OutgoingContent, OutgoingMessage, PartId, RemoteMessageId, SentMessage,
};
use grammers_client::message::InputMessage;
use grammers_client::tl;
use grammers_session::types::{PeerId, PeerRef};

use crate::client::{timed, Shared};
use crate::{convert, handle_remote, ids};

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

fn message_number(id: &RemoteMessageId) -> Result<i32, NetworkError> {
    ids::parse_message(id).ok_or_else(|| NetworkError::NotFound(format!("message {}", id.as_str())))
}

/// Matrix text as Telegram text and entities (an emote in italics: Telegram has none).
fn text(
    content: &OutgoingContent,
) -> Result<(String, Vec<tl::enums::MessageEntity>), NetworkError> {
    match content {
        OutgoingContent::Text {
            body, html, emote, ..
        } => {
            let (text, mut entities) = convert::from_matrix(body, html.as_deref());
            if *emote {
                let length = text.encode_utf16().count() as i32;
                entities.insert(
                    0,
                    tl::types::MessageEntityItalic { offset: 0, length }.into(),
                );
            }
            Ok((text, entities))
        }
        OutgoingContent::Media { .. } => Err(NetworkError::Unsupported(
            "sending files to Telegram (not yet)".to_owned(),
        )),
        OutgoingContent::Location { .. } => Err(NetworkError::Unsupported(
            "sending locations to Telegram (not yet)".to_owned(),
        )),
    }
}

/// Sends a Matrix message to its chat; returns the Telegram message's ID.
pub async fn send_message(
    shared: &Shared,
    message: OutgoingMessage,
) -> Result<SentMessage, NetworkError> {
    let (chat, peer) = peer(shared, &message.chat).await?;
    let (text, entities) = text(&message.content)?;
    let reply_to = message.reply_to.as_ref().and_then(ids::parse_message);
    let input = InputMessage::new()
        .text(text)
        .fmt_entities(entities)
        .reply_to(reply_to);
    let client = shared.client()?;
    let sending = shared.begin_send(chat);
    let sent = timed(&shared.config, client.send_message(peer, input)).await?;
    sending.sent(sent.id());
    drop(sending);
    if let Some(me) = shared.self_id() {
        handle_remote::remember(shared, sent.id(), chat, me).await;
    }
    Ok(SentMessage {
        id: ids::message_id(sent.id()),
        part: PartId(String::new()),
        timestamp: sent.date().as_millisecond(),
    })
}

/// Edits a message the account sent.
pub async fn edit_message(
    shared: &Shared,
    chat: &ChatRef,
    id: &RemoteMessageId,
    content: OutgoingContent,
) -> Result<(), NetworkError> {
    let (chat, peer) = peer(shared, chat).await?;
    let id = message_number(id)?;
    let (text, entities) = text(&content)?;
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
    let (_, peer) = peer(shared, chat).await?;
    let id = message_number(id)?;
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
    let max_id = message_number(up_to)?;
    let client = shared.client()?;
    let request = tl::functions::messages::ReadHistory {
        peer: peer.into(),
        max_id,
    };
    timed(&shared.config, client.invoke(&request)).await?;
    Ok(())
}
