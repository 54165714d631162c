//! Discord → core: serenity's gateway models turned into [`RemoteEvent`]s (messages with
//! converted markdown and attachments, edits, deletions, reactions, typing), the names
//! mentions resolve to, ghost information, and a channel's history (for the backfill of new
//! portals and the catch-up after downtime).

use std::collections::HashMap;

use bridge_core::network::client::ChatActivity;
use bridge_core::network::events::{
    AvatarRef, ChatInfo, ChatMember, ChatRef, Media, MediaKind, MessageContent, MessagePart, Sender, UserInfo,
};
use bridge_core::network::{
    EventSender, LoginId, NetworkError, PartId, RemoteChatId, RemoteEvent, RemoteMessageId, RemoteUserId,
};
use serenity::http::MessagePagination;

use crate::connector::timed;
use serenity::model::channel::{Attachment, GuildChannel, Message, MessageType};
use serenity::model::id::{ChannelId, GuildId, UserId};
use serenity::model::user::User;

use crate::commands::{text_channels, GuildMode};
use crate::convert::{markdown_to_matrix, MentionResolver};
use crate::ids;

/// The chat of a channel as one login sees it: guild channels are shared, DMs are the login's.
pub fn chat_ref(channel: ChannelId, guild: Option<GuildId>, login: &LoginId) -> ChatRef {
    ChatRef { id: ids::chat_id(channel), receiver: guild.is_none().then(|| login.clone()) }
}

/// The name a user is shown with: the server nickname, else the global name, else the username.
pub fn display_name(user: &User, nick: Option<&str>) -> String {
    nick.filter(|n| !n.is_empty())
        .map(str::to_owned)
        .or_else(|| user.global_name.clone().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| user.name.clone())
}

/// Ghost information of a user.
pub fn user_info(user: &User, nick: Option<&str>) -> UserInfo {
    let avatar = user.avatar.map(|hash| AvatarRef { id: hash.to_string(), source: user.avatar_url() });
    UserInfo { name: Some(display_name(user, nick)), avatar, is_bot: user.bot }
}

/// What mentions in one message resolve to: names gathered from the message and the cache.
pub struct Names<'a> {
    /// User ID → display name.
    pub users: HashMap<String, String>,
    /// Role ID → name.
    pub roles: HashMap<String, String>,
    /// Channel ID → name.
    pub channels: HashMap<String, String>,
    /// Makes pills for ghosts.
    pub events: &'a EventSender,
}

impl MentionResolver for Names<'_> {
    fn user(&self, id: &str) -> (String, String) {
        let name = self.users.get(id).cloned().unwrap_or_else(|| id.to_owned());
        let pill = self.events.mention_pill(&RemoteUserId::from(id), &name);
        (name, pill)
    }

    fn role(&self, id: &str) -> Option<String> {
        self.roles.get(id).cloned()
    }

    fn channel(&self, id: &str) -> Option<String> {
        self.channels.get(id).cloned()
    }
}

/// The media kind of an attachment, from its MIME type.
pub fn media_kind(attachment: &Attachment) -> MediaKind {
    let mime = attachment.content_type.as_deref().unwrap_or("");
    if mime.starts_with("image/") {
        MediaKind::Image
    } else if mime.starts_with("video/") {
        MediaKind::Video
    } else if mime.starts_with("audio/") {
        if attachment.waveform.is_some() {
            MediaKind::Voice
        } else {
            MediaKind::Audio
        }
    } else {
        MediaKind::File
    }
}

/// The parts of a message: its text (part `""`), each attachment (part = attachment ID),
/// and stickers and embeds as readable text.
pub fn message_parts(message: &Message, names: &Names<'_>) -> Vec<MessagePart> {
    let mut parts = Vec::new();
    if !message.content.is_empty() {
        let converted = markdown_to_matrix(&message.content, names);
        parts.push(MessagePart {
            id: PartId::from(""),
            content: MessageContent::Text {
                body: converted.body,
                html: converted.html,
                mentions: converted.mentions,
            },
        });
    }
    for attachment in &message.attachments {
        parts.push(MessagePart {
            id: PartId(attachment.id.get().to_string()),
            content: MessageContent::Media(Media {
                kind: media_kind(attachment),
                source: attachment.url.clone(),
                filename: attachment.filename.clone(),
                mime: attachment.content_type.clone(),
                size: Some(u64::from(attachment.size)),
                dimensions: attachment.width.zip(attachment.height),
                duration_ms: attachment.duration_secs.map(|s| (s * 1000.0) as u64),
                caption: None,
            }),
        });
    }
    for sticker in &message.sticker_items {
        parts.push(MessagePart {
            id: PartId(format!("sticker-{}", sticker.id.get())),
            content: MessageContent::Notice { body: format!("[sticker: {}]", sticker.name) },
        });
    }
    for (index, embed) in message.embeds.iter().enumerate() {
        let lines: Vec<&str> = [embed.title.as_deref(), embed.description.as_deref(), embed.url.as_deref()]
            .into_iter()
            .flatten()
            .filter(|line| !line.is_empty() && !message.content.contains(*line))
            .collect();
        if !lines.is_empty() {
            parts.push(MessagePart {
                id: PartId(format!("embed-{index}")),
                content: MessageContent::Notice { body: lines.join("\n") },
            });
        }
    }
    parts
}

/// Most (room, member) pairs [`RoomNames`] remembers before it starts afresh.
const MAX_ROOM_NAMES: usize = 10_000;

/// The server nicknames already given to ghosts as their names in rooms: (chat, user) →
/// nickname. A member's nickname is their name in that server's rooms only (their ghost's
/// global profile keeps their own name); it is sent with their first message in each room
/// of a run, and again when it changed.
#[derive(Debug, Default)]
pub struct RoomNames(std::sync::Mutex<HashMap<(RemoteChatId, UserId), Option<String>>>);

impl RoomNames {
    /// The chat info that names `user` `nick` (`None`: no nickname) in `chat`, unless
    /// that was already sent.
    pub fn news(&self, chat: &ChatRef, user: UserId, nick: Option<&str>) -> Option<ChatInfo> {
        let nick = nick.map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned);
        let mut known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = (chat.id.clone(), user);
        if known.get(&key) == Some(&nick) {
            return None;
        }
        if known.len() >= MAX_ROOM_NAMES {
            known.clear();
        }
        known.insert(key, nick.clone());
        let member = ChatMember { user: ids::user_id(user), nickname: nick, is_admin: false };
        Some(ChatInfo { members: Some(vec![member]), members_partial: true, ..ChatInfo::default() })
    }
}

/// Whether a message is one the bridge should relay (not a system message such as a pin).
pub fn is_relayable(message: &Message) -> bool {
    matches!(message.kind, MessageType::Regular | MessageType::InlineReply)
}

/// A new message as a [`RemoteEvent::Message`].
pub fn message_event(message: &Message, names: &Names<'_>, login: &LoginId, bot: UserId) -> RemoteEvent {
    RemoteEvent::Message {
        chat: chat_ref(message.channel_id, message.guild_id, login),
        id: ids::message_id(message.id),
        sender: Sender { user: ids::user_id(message.author.id), is_from_me: message.author.id == bot },
        timestamp: ids::millis(&message.timestamp),
        parts: message_parts(message, names),
        reply_to: message.message_reference.as_ref().and_then(|r| r.message_id).map(ids::message_id),
        thread_root: None,
    }
}

/// An edited message as a [`RemoteEvent::Edit`] (its text part only; attachments cannot
/// change).
pub fn edit_event(message: &Message, names: &Names<'_>, login: &LoginId, bot: UserId) -> RemoteEvent {
    let parts = message_parts(message, names).into_iter().filter(|p| p.id.as_str().is_empty()).collect();
    let timestamp = ids::millis(&message.edited_timestamp.unwrap_or(message.timestamp));
    RemoteEvent::Edit {
        chat: chat_ref(message.channel_id, message.guild_id, login),
        id: ids::message_id(message.id),
        sender: Sender { user: ids::user_id(message.author.id), is_from_me: message.author.id == bot },
        timestamp,
        parts,
    }
}

#[async_trait::async_trait]
impl bridge_core::network::client::HistoryHandler for crate::client::DiscordClient {
    async fn fetch_history(
        &self,
        chat: &ChatRef,
        before: Option<&RemoteMessageId>,
        limit: usize,
    ) -> Result<Vec<RemoteEvent>, NetworkError> {
        let shared = &self.shared;
        let Some(bot) = shared.bot else { return Err(NetworkError::NotLoggedIn) };
        let channel = ids::parse_chat(&chat.id)?;
        let before = before.map(ids::parse_message).transpose()?;
        let page = u8::try_from(limit.clamp(1, 100)).unwrap_or(100);
        let mut messages =
            timed(shared.http.get_messages(channel, before.map(MessagePagination::Before), Some(page))).await?;
        // Newest first, as the core expects; whatever the server did with the query.
        messages.retain(|m| before.is_none_or(|b| m.id < b));
        messages.sort_by_key(|m| std::cmp::Reverse(m.id));
        messages.truncate(limit);
        let guild = chat.receiver.is_none().then(|| messages.first().and_then(|m| m.guild_id)).flatten();
        let events = messages
            .iter()
            .filter(|m| is_relayable(m) && !shared.is_own(m.author.id, m.webhook_id.map(|w| w.get())))
            .map(|m| {
                let names = shared.names(&m.mentions, m.guild_id.or(guild));
                let mut event = message_event(m, &names, &shared.login, bot);
                // REST messages carry no guild ID: the chat is the one asked for.
                if let RemoteEvent::Message { chat: event_chat, .. } = &mut event {
                    *event_chat = chat.clone();
                }
                event
            })
            .collect();
        Ok(events)
    }

    async fn recent_chats(&self, limit: usize) -> Result<Vec<ChatRef>, NetworkError> {
        // The text channels of the servers bridged in full, so that channels created while
        // the bridge was down get their portal; DMs open a portal with their next message.
        let shared = &self.shared;
        let mut chats: Vec<ChatRef> = bridged_text_channels(shared, |mode| mode == GuildMode::All)
            .await
            .into_iter()
            .map(|(guild, channel)| chat_ref(channel.id, Some(guild), &shared.login))
            .collect();
        chats.truncate(limit);
        Ok(chats)
    }

    async fn chats_with_activity(&self, since: i64) -> Result<Vec<ChatActivity>, NetworkError> {
        // One channel list per bridged server: each channel names its latest message, whose
        // snowflake carries its time. DM channels of a bot cannot be listed; a DM's next
        // message reopens it.
        let shared = &self.shared;
        Ok(bridged_text_channels(shared, |mode| mode != GuildMode::Off)
            .await
            .into_iter()
            .filter_map(|(guild, channel)| {
                let latest = channel.last_message_id?;
                let timestamp = ids::millis(&latest.created_at());
                (timestamp > since).then(|| ChatActivity {
                    chat: chat_ref(channel.id, Some(guild), &shared.login),
                    latest: Some(ids::message_id(latest)),
                    timestamp,
                })
            })
            .collect())
    }
}

/// The text channels of the servers whose bridge mode `wanted` accepts, in server order and
/// each server's channel order. A server whose channels cannot be listed is skipped (logged).
async fn bridged_text_channels(shared: &crate::client::Shared, wanted: impl Fn(GuildMode) -> bool) -> Vec<(GuildId, GuildChannel)> {
    let mut guilds: Vec<GuildId> = shared.guild_modes.all().await.into_iter().filter(|(_, mode)| wanted(*mode)).map(|(g, _)| g).collect();
    guilds.sort();
    let mut found = Vec::new();
    for guild in guilds {
        match timed(shared.http.get_channels(guild)).await {
            Ok(channels) => found.extend(text_channels(&channels).into_iter().map(|c| (guild, c.clone()))),
            Err(error) => tracing::warn!(%guild, %error, "could not list a server's channels"),
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(json: serde_json::Value) -> User {
        serde_json::from_value(json).expect("user")
    }

    #[test]
    fn display_names_prefer_nick_then_global_name() {
        let with_global = user(serde_json::json!({"id": "1", "username": "ann", "global_name": "Ann A.", "discriminator": "0", "avatar": null}));
        let plain = user(serde_json::json!({"id": "2", "username": "bob", "discriminator": "0", "avatar": null}));
        let cases = [
            (&with_global, Some("Annie"), "Annie"),
            (&with_global, Some(""), "Ann A."),
            (&with_global, None, "Ann A."),
            (&plain, None, "bob"),
        ];
        for (user, nick, want) in cases {
            assert_eq!(display_name(user, nick), want);
        }
    }

    #[test]
    fn user_info_has_avatar_url() {
        let u = user(serde_json::json!({"id": "5", "username": "c", "discriminator": "0", "avatar": "0123456789abcdef0123456789abcdef", "bot": true}));
        let info = user_info(&u, None);
        assert!(info.is_bot);
        let avatar = info.avatar.expect("avatar");
        assert_eq!(avatar.id, "0123456789abcdef0123456789abcdef");
        assert!(avatar.source.expect("source").contains("/avatars/5/"));
    }

    #[test]
    fn room_names_are_news_once_per_room_and_nickname() {
        let names = RoomNames::default();
        let login = LoginId::from("9");
        let (general, random) = (chat_ref(ChannelId::new(3), Some(GuildId::new(4)), &login), chat_ref(ChannelId::new(5), Some(GuildId::new(4)), &login));
        let ming = UserId::new(7);
        let cases = [
            (&general, Some("小明同学"), Some(Some("小明同学"))),
            (&general, Some("小明同学"), None),
            (&random, Some("小明同学"), Some(Some("小明同学"))),
            (&general, Some(" 小明 "), Some(Some("小明"))),
            (&general, Some(""), Some(None)),
            (&general, None, None),
        ];
        for (chat, nick, want) in cases {
            let got = names.news(chat, ming, nick);
            let members = got.as_ref().and_then(|info| info.members.clone());
            assert_eq!(members.as_ref().map(|m| m[0].nickname.as_deref()), want, "{nick:?}");
            assert!(got.is_none_or(|info| info.members_partial && members.is_some_and(|m| m[0].user == ids::user_id(ming))));
        }
    }

    #[test]
    fn chat_refs() {
        let login = LoginId::from("9");
        assert_eq!(chat_ref(ChannelId::new(3), Some(GuildId::new(4)), &login).receiver, None);
        assert_eq!(chat_ref(ChannelId::new(3), None, &login).receiver, Some(login));
    }
}

/// Puts new messages back in their order per channel. serenity hands each gateway event to
/// its own task, and tokio runs the task spawned last first (its "LIFO slot"): of a burst
/// of messages the newest would reach the core first, and the others race after it. A
/// message enters the sequencer as soon as its task starts; before it is reported it lets
/// the tasks already queued run (so that older messages of the burst enter too), then waits
/// until no older message (smaller snowflake) of its channel is still being prepared.
#[derive(Debug, Default)]
pub struct Sequencer {
    in_flight: std::sync::Mutex<HashMap<u64, std::collections::BTreeSet<u64>>>,
    changed: tokio::sync::Notify,
}

/// A message's place in the [`Sequencer`]; leaving (on drop) lets younger messages go.
#[derive(Debug)]
pub struct Turn<'a> {
    sequencer: &'a Sequencer,
    channel: u64,
    message: u64,
}

impl Sequencer {
    /// Registers `message` of `channel` as being prepared.
    pub fn enter(&self, channel: u64, message: u64) -> Turn<'_> {
        self.lock().entry(channel).or_default().insert(message);
        Turn { sequencer: self, channel, message }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, std::collections::BTreeSet<u64>>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Turn<'_> {
    /// Waits until every older message of the channel has been reported (or dropped), at
    /// most one second: a stuck message never blocks a channel for good.
    pub async fn wait(&self) {
        // Tasks of older messages spawned in the same burst are queued behind this one.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            let notified = self.sequencer.changed.notified();
            let first = self.sequencer.lock().get(&self.channel).and_then(|set| set.first().copied());
            if first.is_none_or(|first| first >= self.message) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut map = self.sequencer.lock();
        if let Some(set) = map.get_mut(&self.channel) {
            set.remove(&self.message);
            if set.is_empty() {
                map.remove(&self.channel);
            }
        }
        drop(map);
        self.sequencer.changed.notify_waiters();
    }
}

#[cfg(test)]
mod sequencer_tests {
    use super::*;

    #[tokio::test]
    async fn younger_messages_wait_for_older_ones_of_their_channel() {
        let sequencer = std::sync::Arc::new(Sequencer::default());
        let older = sequencer.enter(1, 10);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let seq = sequencer.clone();
        let tx2 = tx.clone();
        let younger = tokio::spawn(async move {
            let turn = seq.enter(1, 11);
            turn.wait().await;
            let _ = tx2.send(11);
        });
        // Another channel is not held up.
        let other = sequencer.enter(2, 5);
        other.wait().await;
        drop(other);
        tokio::task::yield_now().await;
        let _ = tx.send(10);
        drop(older);
        younger.await.expect("task");
        assert_eq!(rx.recv().await, Some(10));
        assert_eq!(rx.recv().await, Some(11));
    }
}
