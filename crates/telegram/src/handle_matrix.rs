//! Matrix → Telegram: text messages (Matrix HTML as Telegram entities), as replies where
//! the Matrix event replied to a bridged message.

use bridge_core::network::{NetworkError, OutgoingContent, OutgoingMessage, PartId, SentMessage};
use grammers_client::message::InputMessage;

use crate::client::{timed, Shared};
use crate::{convert, ids};

/// Sends a Matrix message to its chat; returns the Telegram message's ID.
pub async fn send_message(
    shared: &Shared,
    message: OutgoingMessage,
) -> Result<SentMessage, NetworkError> {
    let peer = ids::parse_chat(&message.chat.id)
        .ok_or_else(|| NetworkError::NotFound(format!("chat {}", message.chat.id.as_str())))?;
    let peer = shared.peer_ref(peer).await.ok_or_else(|| {
        NetworkError::NotFound(format!(
            "the Telegram chat {} (not seen by this login yet)",
            message.chat.id.as_str()
        ))
    })?;
    let (text, entities) = match &message.content {
        OutgoingContent::Text {
            body, html, emote, ..
        } => {
            let (text, entities) = convert::from_matrix(body, html.as_deref());
            if *emote {
                // Telegram has no emotes: shown in italics.
                let length = text.encode_utf16().count() as i32;
                let mut entities = entities;
                entities.insert(
                    0,
                    grammers_client::tl::types::MessageEntityItalic { offset: 0, length }.into(),
                );
                (text, entities)
            } else {
                (text, entities)
            }
        }
        OutgoingContent::Media { .. } => {
            return Err(NetworkError::Unsupported(
                "sending files to Telegram (not yet)".to_owned(),
            ))
        }
        OutgoingContent::Location { .. } => {
            return Err(NetworkError::Unsupported(
                "sending locations to Telegram (not yet)".to_owned(),
            ))
        }
    };
    let reply_to = message.reply_to.as_ref().and_then(ids::parse_message);
    let input = InputMessage::new()
        .text(text)
        .fmt_entities(entities)
        .reply_to(reply_to);
    let client = shared.client()?;
    let sent = timed(&shared.config, client.send_message(peer, input)).await?;
    Ok(SentMessage {
        id: ids::message_id(sent.id()),
        part: PartId(String::new()),
        timestamp: sent.date().as_millisecond(),
    })
}
