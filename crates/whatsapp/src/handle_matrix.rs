//! Core → WhatsApp: what Matrix users do in portals, sent as the login's account. Text
//! (Matrix HTML as WhatsApp formatting, pills of ghosts as mentions), replies as quotes,
//! edits and deletions (revokes) of the account's own messages, reactions (one per user,
//! an empty one removes it), typing and read receipts; files ([`crate::media::upload`]).
//! Locations are not sent yet.

use std::time::Duration;

use bridge_core::network::events::ChatRef;
use bridge_core::network::{
    NetworkError, OutgoingContent, OutgoingMessage, PartId, RemoteChatId, RemoteMessageId,
    RemoteUserId, SentMessage,
};
use wacore_binary::{Jid, JidExt as _};
use whatsapp_rust::buffa::MessageField;
use whatsapp_rust::wacore::proto_helpers::MessageBuilderExt as _;
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::RevokeType;

use crate::client::Shared;
use crate::convert;
use crate::handle_remote::now_ms;
use crate::ids::{self, MessageRef};

/// The longest a send may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a whatsapp-rust call with the send timeout, its error as the core's.
pub(crate) async fn timed<T, E: std::fmt::Display>(
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, NetworkError> {
    match tokio::time::timeout(SEND_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(NetworkError::Remote(error.to_string())),
        Err(_) => Err(NetworkError::Remote(format!(
            "WhatsApp did not answer within {} s",
            SEND_TIMEOUT.as_secs()
        ))),
    }
}

/// The JID of a portal's chat.
pub(crate) fn chat_jid(chat: &ChatRef) -> Result<Jid, NetworkError> {
    ids::chat_jid(&chat.id)
        .ok_or_else(|| NetworkError::NotFound(format!("chat {}", chat.id.as_str())))
}

fn message_ref(id: &RemoteMessageId) -> Result<MessageRef, NetworkError> {
    MessageRef::parse(id).ok_or_else(|| NetworkError::NotFound(format!("message {}", id.as_str())))
}

/// A message this account sent (only those can be edited or revoked).
fn own_message(
    shared: &Shared,
    id: &RemoteMessageId,
    what: &str,
) -> Result<MessageRef, NetworkError> {
    let message = message_ref(id)?;
    if message.sender != shared.login.as_str() {
        return Err(NetworkError::Unsupported(format!(
            "{what} other people's WhatsApp messages"
        )));
    }
    Ok(message)
}

/// The key WhatsApp names a message of `chat` by.
fn key_of(shared: &Shared, chat: &Jid, message: &MessageRef) -> wa::MessageKey {
    wa::MessageKey {
        remote_jid: Some(chat.to_string()),
        from_me: Some(message.sender == shared.login.as_str()),
        id: Some(message.id.clone()),
        participant: chat.is_group().then(|| message.sender_jid().to_string()),
    }
}

/// Matrix text as WhatsApp text and the accounts it mentions; an emote in italics.
fn text_of(
    shared: &Shared,
    content: &OutgoingContent,
) -> Result<(String, Vec<String>), NetworkError> {
    let OutgoingContent::Text {
        body, html, emote, ..
    } = content
    else {
        let what = match content {
            OutgoingContent::Location { .. } => "locations",
            _ => "files",
        };
        return Err(NetworkError::Unsupported(format!(
            "sending {what} to WhatsApp (not yet)"
        )));
    };
    let (text, mentions) = convert::from_matrix(body, html.as_deref(), &shared.events);
    let text = if *emote { format!("_{text}_") } else { text };
    Ok((text, mentions))
}

/// Sends a Matrix message to its chat; returns the WhatsApp message's ID.
pub(crate) async fn send_message(
    shared: &Shared,
    message: OutgoingMessage,
) -> Result<SentMessage, NetworkError> {
    let to = chat_jid(&message.chat)?;
    let client = shared.client()?;
    if let OutgoingContent::Media {
        kind,
        data,
        filename,
        mime,
        caption,
    } = message.content
    {
        let content = crate::media::upload(&client, kind, data, &filename, &mime, caption).await?;
        let sent = timed(client.send_message(to, content)).await?;
        return Ok(sent_message(shared, sent.message_id));
    }
    let (text, mentions) = text_of(shared, &message.content)?;
    let mut context = wa::ContextInfo::default();
    if let Some(reply) = message.reply_to.as_ref().and_then(MessageRef::parse) {
        context.stanza_id = Some(reply.id.clone());
        context.participant = Some(reply.sender_jid().to_string());
        // The quoted copy: WhatsApp apps show their own copy of the message when they
        // have it.
        context.quoted_message = MessageField::some(wa::Message::text(""));
    }
    context.mentioned_jid = mentions
        .iter()
        .map(|phone| Jid::pn(phone.as_str()).to_string())
        .collect();
    let content = if context.stanza_id.is_none() && context.mentioned_jid.is_empty() {
        wa::Message::text(text)
    } else {
        wa::Message::text_with_context(text, context)
    };
    let sent = timed(client.send_message(to, content)).await?;
    Ok(sent_message(shared, sent.message_id))
}

/// What the core keeps of a message the account sent with WhatsApp ID `id`.
fn sent_message(shared: &Shared, id: String) -> SentMessage {
    let id = MessageRef {
        sender: shared.login.as_str().to_owned(),
        id,
    };
    SentMessage {
        id: id.remote_id(),
        part: PartId(String::new()),
        timestamp: now_ms(),
    }
}

/// Replaces the text of a message the account sent.
pub(crate) async fn edit_message(
    shared: &Shared,
    chat: &ChatRef,
    id: &RemoteMessageId,
    content: OutgoingContent,
) -> Result<(), NetworkError> {
    let to = chat_jid(chat)?;
    let message = own_message(shared, id, "editing")?;
    let (text, _) = text_of(shared, &content)?;
    let client = shared.client()?;
    timed(client.edit_message(to, message.id, wa::Message::text(text))).await?;
    Ok(())
}

/// Deletes a message the account sent, for everyone.
pub(crate) async fn delete_message(
    shared: &Shared,
    chat: &ChatRef,
    id: &RemoteMessageId,
) -> Result<(), NetworkError> {
    let to = chat_jid(chat)?;
    let message = own_message(shared, id, "deleting")?;
    let client = shared.client()?;
    timed(client.revoke_message(to, message.id, RevokeType::Sender)).await
}

/// Reacts to a message with `emoji`; an empty one removes the account's reaction.
pub(crate) async fn react(
    shared: &Shared,
    chat: &ChatRef,
    target: &RemoteMessageId,
    emoji: &str,
) -> Result<(), NetworkError> {
    let to = chat_jid(chat)?;
    let key = key_of(shared, &to, &message_ref(target)?);
    let client = shared.client()?;
    timed(client.send_reaction(to, key, emoji)).await?;
    Ok(())
}

/// Starts or stops "typing…" in a chat.
pub(crate) async fn set_typing(
    shared: &Shared,
    chat: &ChatRef,
    typing: bool,
) -> Result<(), NetworkError> {
    let to = chat_jid(chat)?;
    let client = shared.client()?;
    let chatstate = client.chatstate();
    if typing {
        timed(chatstate.send_composing(&to)).await
    } else {
        timed(chatstate.send_paused(&to)).await
    }
}

/// The account behind a phone number typed for `start-chat`, and the DM with it; refused
/// if the number is not on WhatsApp.
pub(crate) async fn resolve_phone(
    shared: &Shared,
    identifier: &str,
) -> Result<(RemoteUserId, RemoteChatId), NetworkError> {
    let phone = ids::parse_phone(identifier).ok_or_else(|| {
        NetworkError::BadInput(
            "that is not a phone number in international format, like +15551234567".to_owned(),
        )
    })?;
    let client = shared.client()?;
    let jid = Jid::pn(phone.as_str());
    let found = timed(client.contacts().is_on_whatsapp(std::slice::from_ref(&jid))).await?;
    if !found
        .iter()
        .any(|r| r.is_registered && r.jid.user == jid.user)
    {
        return Err(NetworkError::NotFound(format!(
            "{} on WhatsApp",
            ids::display_phone(&phone)
        )));
    }
    Ok((RemoteUserId(phone.clone()), RemoteChatId(phone)))
}

/// Marks a chat read up to a message.
pub(crate) async fn mark_read(
    shared: &Shared,
    chat: &ChatRef,
    up_to: &RemoteMessageId,
) -> Result<(), NetworkError> {
    let to = chat_jid(chat)?;
    let message = message_ref(up_to)?;
    let sender = to.is_group().then(|| message.sender_jid());
    let client = shared.client()?;
    timed(client.mark_as_read(&to, sender.as_ref(), &[message.id.as_str()])).await
}
