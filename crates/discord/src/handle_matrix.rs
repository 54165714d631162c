//! Matrix → Discord: sending (through a per-channel webhook carrying the relayed user's
//! name, or as the bot), splitting long text, uploads, edits, deletions, reactions and
//! typing, as the core's capability traits on [`DiscordClient`].
//!
//! Who a message appears from: a Matrix user without a Discord login of their own is relayed
//! (`set-relay`), and their messages go through the channel's webhook with their display
//! name and, when the bridge serves public media, their avatar. The login's owner *is* the
//! bot on Discord (they logged in with its token, as one logs in with one's own account on
//! other networks), so their messages are sent as the bot, like any bridged user's own
//! messages. Where webhooks are not permitted, relayed messages go through the bot with the
//! core's relay format (`Name: text`).
//!
//! Webhooks are created on demand and kept in the login's store (id and token, under
//! `webhook/<channel>`), as is the channel whose webhook sent each relayed message
//! (`webhook-message/<message>`), so that edits and deletions still go through the right
//! webhook after a restart, and echoes of the webhooks are recognised from the start.
//! A webhook deleted on Discord is found again by listing the channel's (Discord returns
//! the token of webhooks the bot created) or created anew.

use bridge_core::network::client::{DeleteHandler, EditHandler, PresenceHandler, ReactionHandler};
use bridge_core::network::events::ChatRef;
use bridge_core::network::{
    EmojiId, EventSender, NetworkError, OutgoingContent, OutgoingMessage, PartId, RemoteMessageId, SentMessage,
};
use secrecy::ExposeSecret as _;
use serde_json::json;
use serenity::all::{ChannelId, CreateAllowedMentions, CreateAttachment, CreateMessage, EditMessage, WebhookId};

use crate::client::{lock, DiscordClient, Shared};
use crate::connector::{timed, Endpoint};
use crate::convert::{html_to_markdown, split_message, text_to_markdown, GhostResolver, MESSAGE_LIMIT};
use crate::ids;

/// The largest file a bot may upload to a server without boosts, in bytes.
pub const UPLOAD_LIMIT: usize = 10 * 1024 * 1024;

/// Maps ghost pills back to Discord users through the core's ghost namer.
struct Ghosts<'a>(&'a EventSender);

impl GhostResolver for Ghosts<'_> {
    fn discord_user(&self, matrix_user_id: &str) -> Option<String> {
        let user = ruma::UserId::parse(matrix_user_id).ok()?;
        self.0.remote_user_id(&user).map(|id| id.0)
    }
}

/// The Discord markdown of a text or caption.
fn markdown(events: &EventSender, body: &str, html: Option<&str>, emote: bool) -> String {
    let text = match html {
        Some(html) => html_to_markdown(html, &Ghosts(events)),
        None => text_to_markdown(body),
    };
    if emote && !text.is_empty() {
        format!("*{text}*")
    } else {
        text
    }
}

/// A webhook user name Discord accepts: 1–80 characters without "discord" or "clyde".
pub fn webhook_username(name: &str) -> String {
    let mut out = String::new();
    let lower = name.to_lowercase();
    let mut i = 0;
    while i < name.len() {
        let rest = &lower[i..];
        if rest.starts_with("discord") || rest.starts_with("clyde") {
            // Break the word with a zero-width space after its first letter.
            let first = name[i..].chars().next().unwrap_or('d');
            out.push(first);
            out.push('\u{200b}');
            i += first.len_utf8();
            continue;
        }
        let c = name[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    let out: String = out.trim().chars().take(80).collect();
    if out.is_empty() {
        "Matrix user".to_owned()
    } else {
        out
    }
}

/// The text without the `Name: ` the relay format (`bridge.relay.message_format`, by default
/// `{sender_displayname}: {message}`) put in front: a webhook message shows the name already.
pub fn strip_relay_prefix<'a>(text: &'a str, name: &str) -> &'a str {
    [name.to_owned(), text_to_markdown(name)]
        .iter()
        .find_map(|n| text.strip_prefix(n.as_str()).and_then(|rest| rest.strip_prefix(": ")))
        .filter(|rest| !rest.trim().is_empty())
        .unwrap_or(text)
}

/// Only users may be pinged by bridged messages, never @everyone or roles.
fn allowed_mentions() -> CreateAllowedMentions {
    CreateAllowedMentions::new().all_users(true).everyone(false).all_roles(false)
}

/// The webhook of a channel: cached, else stored, else the bot's existing one, else a new one.
async fn webhook(shared: &Shared, channel: ChannelId) -> Result<(u64, String), NetworkError> {
    if let Some(hook) = lock(&shared.webhooks).get(&channel).cloned() {
        return Ok(hook);
    }
    let key = format!("webhook/{channel}");
    if let Ok(Some(hook)) = shared.events.store().get::<(u64, String)>(&key).await {
        lock(&shared.own.webhooks).insert(hook.0);
        lock(&shared.webhooks).insert(channel, hook.clone());
        return Ok(hook);
    }
    let name = shared.config.webhook_name.clone();
    let existing = timed(shared.http.get_channel_webhooks(channel)).await?;
    let found = existing.into_iter().find(|w| {
        w.user.as_ref().map(|u| u.id) == shared.bot && w.name.as_deref() == Some(name.as_str()) && w.token.is_some()
    });
    let webhook = match found {
        Some(webhook) => webhook,
        None => timed(shared.http.create_webhook(channel, &json!({ "name": name }), None)).await?,
    };
    let token = webhook
        .token
        .as_ref()
        .map(|t| t.expose_secret().clone())
        .ok_or_else(|| NetworkError::Remote("Discord returned a webhook without a token".to_owned()))?;
    let hook = (webhook.id.get(), token);
    lock(&shared.own.webhooks).insert(hook.0);
    lock(&shared.webhooks).insert(channel, hook.clone());
    if let Err(e) = shared.events.store().set(&key, &hook).await {
        tracing::warn!(%channel, error = %e, "could not store a channel's webhook");
    }
    Ok(hook)
}

/// The webhook that sent `message`, if one of ours did: remembered at sending, and kept
/// across restarts as the channel whose webhook it was.
async fn webhook_of_message(shared: &Shared, message: serenity::all::MessageId) -> Option<(u64, String)> {
    if let Some(hook) = lock(&shared.webhook_messages).get(&message).cloned() {
        return Some(hook);
    }
    let channel: u64 = shared.events.store().get(&format!("webhook-message/{message}")).await.ok().flatten()?;
    webhook(shared, ChannelId::new(channel)).await.ok()
}

/// Loads the stored webhooks of this login, so their echoes are recognised at once.
pub(crate) async fn load_webhooks(shared: &Shared) {
    match shared.events.store().list::<(u64, String)>("webhook/").await {
        Ok(hooks) => {
            for (key, hook) in hooks {
                lock(&shared.own.webhooks).insert(hook.0);
                if let Some(channel) = key.strip_prefix("webhook/").and_then(|c| c.parse::<u64>().ok()).filter(|c| *c != 0) {
                    lock(&shared.webhooks).insert(ChannelId::new(channel), hook);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not load the stored webhooks"),
    }
}

/// Sends a message (see the module doc for the routing).
pub(crate) async fn send_message(shared: &Shared, message: OutgoingMessage) -> Result<SentMessage, NetworkError> {
    let channel = ids::parse_chat(&message.chat.id)?;
    let (text, file) = match &message.content {
        OutgoingContent::Text { body, html, emote, .. } => (markdown(&shared.events, body, html.as_deref(), *emote), None),
        OutgoingContent::Media { data, filename, caption, .. } => {
            if data.len() > UPLOAD_LIMIT {
                return Err(NetworkError::BadInput(format!(
                    "{filename} is {} MB, over Discord's upload limit of {} MB",
                    data.len() / (1024 * 1024),
                    UPLOAD_LIMIT / (1024 * 1024)
                )));
            }
            let caption = caption.as_deref().map(text_to_markdown).unwrap_or_default();
            (caption, Some(CreateAttachment::bytes(data.to_vec(), filename.clone())))
        }
        OutgoingContent::Location { latitude, longitude } => (
            format!("📍 https://www.openstreetmap.org/?mlat={latitude}&mlon={longitude}#map=16/{latitude}/{longitude}"),
            None,
        ),
    };
    if text.trim().is_empty() && file.is_none() {
        return Err(NetworkError::BadInput("an empty message cannot be sent to Discord".to_owned()));
    }
    let parts = if text.is_empty() { vec![String::new()] } else { split_message(&text, MESSAGE_LIMIT) };
    let count = parts.len();
    let reply = match &message.reply_to {
        Some(id) => Some(ids::parse_message(id)?),
        None => None,
    };

    let guild_channel = message.chat.receiver.is_none();
    // A Matrix thread goes to the Discord thread of its root (started on demand).
    let thread = match (&message.thread_root, guild_channel) {
        (Some(root), true) => Some(crate::threads::thread_for_root(shared, channel, root).await?),
        _ => None,
    };
    let target = thread.unwrap_or(channel);
    if let (true, true, Some(name)) = (shared.config.use_webhooks, guild_channel, message.relayed_from.as_deref()) {
        match webhook(shared, channel).await {
            Ok((id, token)) => {
                let username = webhook_username(name);
                let mut first = None;
                let mut file = file;
                let mut parts = parts;
                if let Some(head) = parts.first_mut() {
                    *head = strip_relay_prefix(head, name).to_owned();
                }
                for (index, part) in parts.into_iter().enumerate() {
                    let files = if index + 1 == count { file.take().into_iter().collect() } else { Vec::new() };
                    let mut body = json!({
                        "content": part,
                        "username": username,
                        "allowed_mentions": { "parse": ["users"] },
                    });
                    if let Some(avatar) = &message.avatar_url {
                        body["avatar_url"] = json!(avatar);
                    }
                    let sent = timed(shared.http.execute_webhook(WebhookId::new(id), thread, &token, true, files, &body)).await?;
                    let sent = sent.ok_or_else(|| NetworkError::Remote("Discord did not return the message".to_owned()))?;
                    lock(&shared.webhook_messages).insert(sent.id, (id, token.clone()));
                    if let Err(e) = shared.events.store().set(&format!("webhook-message/{}", sent.id), &channel.get()).await {
                        tracing::warn!(message = %sent.id, error = %e, "could not remember a webhook message");
                    }
                    if let Some(thread) = thread {
                        shared.note_thread_message(sent.id, thread);
                    }
                    first.get_or_insert(sent);
                }
                let first = first.ok_or_else(|| NetworkError::Remote("nothing was sent".to_owned()))?;
                return Ok(sent_message(&first));
            }
            Err(NetworkError::BadInput(reason)) | Err(NetworkError::Remote(reason)) => {
                tracing::info!(%channel, %reason, "no webhook in this channel, sending as the bot");
            }
            Err(other) => {
                tracing::info!(%channel, error = %other, "no webhook in this channel, sending as the bot");
            }
        }
    }

    let mut first = None;
    let mut file = file;
    for (index, part) in parts.into_iter().enumerate() {
        let mut builder = CreateMessage::new().content(part).allowed_mentions(allowed_mentions());
        if index == 0 {
            if let Some(reply) = reply {
                builder = builder.reference_message((shared.channel_of(target, reply).await, reply));
            }
        }
        if index + 1 == count {
            if let Some(file) = file.take() {
                builder = builder.add_file(file);
            }
        }
        let sent = timed(target.send_message(&*shared.http, builder)).await?;
        if let Some(thread) = thread {
            shared.note_thread_message(sent.id, thread);
        }
        first.get_or_insert(sent);
    }
    let first = first.ok_or_else(|| NetworkError::Remote("nothing was sent".to_owned()))?;
    Ok(sent_message(&first))
}

fn sent_message(message: &serenity::all::Message) -> SentMessage {
    SentMessage {
        id: ids::message_id(message.id),
        part: PartId::from(""),
        timestamp: ids::millis(&message.timestamp),
    }
}

/// The URL to download a media source from; with a simulator, Discord's CDN is rewritten to it.
pub fn media_url(endpoint: &Endpoint, source: &str) -> Result<url::Url, NetworkError> {
    let mut url = url::Url::parse(source).map_err(|_| NetworkError::NotFound(format!("media {source:?}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(NetworkError::NotFound(format!("media {source:?}")));
    }
    if let Some(simulator) = &endpoint.simulator {
        if url.host_str().is_some_and(|h| h.ends_with("discordapp.com") || h.ends_with("discordapp.net")) {
            let path = url.path().to_owned();
            url = simulator.join(&path).map_err(|_| NetworkError::NotFound(format!("media {source:?}")))?;
        }
    }
    Ok(url)
}

#[async_trait::async_trait]
impl EditHandler for DiscordClient {
    async fn edit_message(&self, chat: &ChatRef, id: &RemoteMessageId, content: OutgoingContent) -> Result<(), NetworkError> {
        let shared = &self.shared;
        let channel = ids::parse_chat(&chat.id)?;
        let message = ids::parse_message(id)?;
        let OutgoingContent::Text { body, html, emote, .. } = content else {
            return Err(NetworkError::Unsupported("editing media".to_owned()));
        };
        let text = markdown(&shared.events, &body, html.as_deref(), emote);
        if text.chars().count() > MESSAGE_LIMIT {
            return Err(NetworkError::BadInput("the edited message is over Discord's 2,000-character limit".to_owned()));
        }
        let hook = webhook_of_message(shared, message).await;
        let in_channel = shared.channel_of(channel, message).await;
        let thread = (in_channel != channel).then_some(in_channel);
        let channel = in_channel;
        match hook {
            Some((id, token)) => {
                let body = json!({ "content": text, "allowed_mentions": { "parse": ["users"] } });
                timed(shared.http.edit_webhook_message(WebhookId::new(id), thread, &token, message, &body, Vec::new())).await?;
            }
            None => {
                let builder = EditMessage::new().content(text).allowed_mentions(allowed_mentions());
                timed(channel.edit_message(&*shared.http, message, builder)).await?;
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl DeleteHandler for DiscordClient {
    async fn delete_message(&self, chat: &ChatRef, id: &RemoteMessageId) -> Result<(), NetworkError> {
        let shared = &self.shared;
        let channel = ids::parse_chat(&chat.id)?;
        let message = ids::parse_message(id)?;
        let hook = webhook_of_message(shared, message).await;
        let in_channel = shared.channel_of(channel, message).await;
        let thread = (in_channel != channel).then_some(in_channel);
        let channel = in_channel;
        lock(&shared.deleting).insert(message);
        let result = match hook {
            Some((id, ref token)) => timed(shared.http.delete_webhook_message(WebhookId::new(id), thread, token, message)).await,
            None => timed(shared.http.delete_message(channel, message, None)).await,
        };
        if result.is_err() {
            lock(&shared.deleting).remove(&message);
        } else if hook.is_some() {
            lock(&shared.webhook_messages).remove(&message);
            let _ = shared.events.store().delete(&format!("webhook-message/{message}")).await;
        }
        result
    }
}

#[async_trait::async_trait]
impl ReactionHandler for DiscordClient {
    fn emoji_id(&self, key: &str) -> Option<EmojiId> {
        // Custom emoji arrive from Matrix as images, not keys: only unicode can be sent.
        let key = key.trim_end_matches('\u{fe0f}');
        (!key.is_empty() && !key.is_ascii() && key.chars().count() <= 12).then(|| EmojiId::from(key))
    }

    fn emoji_image(&self, emoji: &EmojiId) -> Option<(String, String)> {
        custom_emoji_image(emoji)
    }

    async fn add_reaction(&self, chat: &ChatRef, target: &RemoteMessageId, emoji: &EmojiId) -> Result<(), NetworkError> {
        let message = ids::parse_message(target)?;
        let channel = self.shared.channel_of(ids::parse_chat(&chat.id)?, message).await;
        timed(self.shared.http.create_reaction(channel, message, &ids::parse_emoji(emoji))).await
    }

    async fn remove_reaction(&self, chat: &ChatRef, target: &RemoteMessageId, emoji: &EmojiId) -> Result<(), NetworkError> {
        let message = ids::parse_message(target)?;
        let channel = self.shared.channel_of(ids::parse_chat(&chat.id)?, message).await;
        timed(self.shared.http.delete_reaction_me(channel, message, &ids::parse_emoji(emoji))).await
    }
}

#[async_trait::async_trait]
impl PresenceHandler for DiscordClient {
    async fn set_typing(&self, chat: &ChatRef, typing: bool) -> Result<(), NetworkError> {
        // Discord's typing indicator lasts 10 seconds and cannot be stopped early.
        if !typing {
            return Ok(());
        }
        let channel = ids::parse_chat(&chat.id)?;
        timed(self.shared.http.broadcast_typing(channel)).await
    }

    async fn mark_read(&self, _chat: &ChatRef, _up_to: &RemoteMessageId) -> Result<(), NetworkError> {
        // Bots have no read state on Discord.
        Ok(())
    }
}

/// The shortcode and CDN image of a custom emoji ID (`name:id`); `None` for unicode emoji.
pub fn custom_emoji_image(emoji: &EmojiId) -> Option<(String, String)> {
    match ids::parse_emoji(emoji) {
        serenity::all::ReactionType::Custom { id, name, .. } => {
            Some((name.unwrap_or_else(|| "emoji".to_owned()), format!("https://cdn.discordapp.com/emojis/{id}.png")))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_usernames_are_accepted_by_discord() {
        let cases = [
            ("Alice", "Alice"),
            ("  Bob  ", "Bob"),
            ("", "Matrix user"),
            ("Discord fan", "D\u{200b}iscord fan"),
            ("my clyde", "my c\u{200b}lyde"),
        ];
        for (name, want) in cases {
            assert_eq!(webhook_username(name), want, "{name:?}");
        }
        assert_eq!(webhook_username(&"x".repeat(100)).chars().count(), 80);
    }

    #[test]
    fn relay_prefixes_are_stripped_for_webhooks() {
        let cases = [
            ("Bob: hi", "Bob", "hi"),
            ("Bob_x: hi", "Bob_x", "hi"),
            ("Bob\\_x: hi", "Bob_x", "hi"),
            ("Bob:hi", "Bob", "Bob:hi"),
            ("Bob: ", "Bob", "Bob: "),
            ("Alice: hi", "Bob", "Alice: hi"),
            ("hi", "Bob", "hi"),
        ];
        for (text, name, want) in cases {
            assert_eq!(strip_relay_prefix(text, name), want, "{text:?}");
        }
    }

    #[test]
    fn custom_emoji_have_cdn_images() {
        let cases = [
            ("blob:123", Some(("blob", "https://cdn.discordapp.com/emojis/123.png"))),
            ("👍", None),
            ("a:b", None),
        ];
        for (id, want) in cases {
            let got = custom_emoji_image(&EmojiId::from(id));
            assert_eq!(got.as_ref().map(|(n, u)| (n.as_str(), u.as_str())), want, "{id}");
        }
    }

    #[test]
    fn media_urls_follow_the_simulator() {
        let real = Endpoint { simulator: None };
        let sim = Endpoint { simulator: Some(url::Url::parse("http://127.0.0.1:9/").expect("url")) };
        let cdn = "https://cdn.discordapp.com/avatars/1/abc.png";
        assert_eq!(media_url(&real, cdn).expect("real").as_str(), cdn);
        assert_eq!(media_url(&sim, cdn).expect("sim").as_str(), "http://127.0.0.1:9/avatars/1/abc.png");
        assert!(media_url(&real, "file:///etc/passwd").is_err());
        assert!(media_url(&real, "not a url").is_err());
    }
}
