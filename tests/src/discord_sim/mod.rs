//! The Discord simulator: Discord's REST API (`/api/v10/...`) and gateway websocket on
//! 127.0.0.1, so the real serenity client of `bridge-discord` runs against it in tests.
//!
//! Tests build the world with [`DiscordSim::add_bot`], [`DiscordSim::add_user`],
//! [`DiscordSim::add_guild`], [`DiscordSim::add_channel`] and [`DiscordSim::add_dm`], act as
//! Discord users with [`DiscordSim::push_message`] and friends (stickers and embeds with
//! [`DiscordSim::push_message_with_extras`], channels come and go with
//! [`DiscordSim::add_channel`] / [`DiscordSim::delete_channel`]), disturb the gateway
//! ([`DiscordSim::drop_gateway_sessions`], [`DiscordSim::request_reconnect`],
//! [`DiscordSim::set_gateway_down`], [`DiscordSim::set_gateway_closing`]), and check what
//! the bridge did through [`DiscordSim::requests`] / [`DiscordSim::wait_request`] (every
//! REST call with its body and uploaded files) and [`DiscordSim::messages`]. Like Discord,
//! everything a bot or webhook sends is echoed on the gateway (webhook messages carry
//! `webhook_id`), and attachments are served by the simulator itself.
//!
//! The REST API and the gateway listen on two ports; `GET /api/v10/gateway` tells serenity
//! where the gateway is. A bridge points serenity at [`DiscordSim::url`].

mod gateway;
mod rest;
mod state;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub use state::Recorded;
use state::{Channel, Data, File, Guild, Inner, User};

/// Who a message is from.
#[derive(Debug, Clone)]
pub(crate) enum Author {
    /// A user or bot.
    User(u64),
    /// A webhook execution with the name and avatar it gave.
    Webhook {
        /// The webhook's ID.
        id: u64,
        /// The shown name.
        username: String,
        /// The avatar URL given.
        avatar: Option<String>,
    },
}

/// An attachment for [`DiscordSim::push_message_with_file`].
#[derive(Debug, Clone)]
pub struct SimFile {
    /// The file name.
    pub filename: String,
    /// MIME type.
    pub content_type: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A running Discord simulator. Cheap to clone; stops when the last handle is dropped
/// or on [`DiscordSim::stop`].
#[derive(Clone)]
pub struct DiscordSim {
    inner: Arc<Inner>,
    stop: Arc<StopOnDrop>,
}

struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl DiscordSim {
    /// Starts the simulator on two free ports of 127.0.0.1 (REST and gateway).
    pub async fn start() -> anyhow::Result<Self> {
        let rest = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.context("bind rest")?;
        let ws = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.context("bind gateway")?;
        let inner = Arc::new(Inner::new(rest.local_addr()?.port()));
        inner.lock().gateway_port = ws.local_addr()?.port();
        let stop = CancellationToken::new();
        let router = axum::Router::new()
            .route("/attachments/{id}/{name}", axum::routing::get(rest::attachment))
            .route("/avatars/{user}/{file}", axum::routing::get(rest::avatar))
            .route("/emojis/{file}", axum::routing::get(rest::avatar))
            .fallback(rest::api)
            .with_state(inner.clone());
        let signal = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            if let Err(error) = axum::serve(rest, router).with_graceful_shutdown(signal).await {
                tracing::warn!(%error, "discord simulator failed");
            }
        });
        tokio::spawn(gateway::serve(ws, inner.clone(), stop.clone()));
        Ok(Self { inner, stop: Arc::new(StopOnDrop(stop)) })
    }

    /// The REST base URL (`http://127.0.0.1:PORT`), for `network.api_base_url`.
    pub fn url(&self) -> String {
        self.inner.base()
    }

    /// Stops both servers and closes every gateway session.
    pub fn stop(&self) {
        self.stop.0.cancel();
    }

    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.inner.lock()
    }

    /// Adds a bot account; returns its user ID and token.
    pub fn add_bot(&self, name: &str) -> (u64, String) {
        let id = self.inner.snowflake();
        let token = format!("bot{id}.{}", crate::random_lowercase(24));
        let mut data = self.data();
        data.users.insert(id, User { id, username: name.to_owned(), global_name: None, avatar: None, bot: true });
        data.tokens.insert(token.clone(), id);
        (id, token)
    }

    /// Adds a user with a username and an optional global (display) name; returns the ID.
    pub fn add_user(&self, username: &str, global_name: Option<&str>) -> u64 {
        let id = self.inner.snowflake();
        let user = User {
            id,
            username: username.to_owned(),
            global_name: global_name.map(str::to_owned),
            avatar: Some(format!("{id:032x}")),
            bot: false,
        };
        self.data().users.insert(id, user);
        id
    }

    /// Adds a guild owned by the first member; returns its ID. Bots among `members` see it
    /// (a bot already connected gets a GUILD_CREATE).
    pub fn add_guild(&self, name: &str, members: &[u64]) -> u64 {
        let id = self.inner.snowflake();
        let guild = Guild {
            id,
            name: name.to_owned(),
            owner: members.first().copied().unwrap_or(0),
            members: members.iter().copied().collect(),
            nicks: Default::default(),
        };
        let mut data = self.data();
        data.guilds.insert(id, guild.clone());
        let payload = guild.create_json(&data);
        let bots: Vec<u64> = members.to_vec();
        let sessions: Vec<_> = data.sessions.iter().filter(|s| bots.contains(&s.bot)).map(|s| s.tx.clone()).collect();
        for tx in sessions {
            let _ = tx.send(("GUILD_CREATE".to_owned(), payload.clone()));
        }
        id
    }

    /// Adds a member to a guild (a bot joining a server); a connected bot gets the guild's
    /// GUILD_CREATE.
    pub fn add_member(&self, guild: u64, user: u64) {
        let mut data = self.data();
        let Some(g) = data.guilds.get_mut(&guild) else { return };
        g.members.insert(user);
        let g = g.clone();
        let payload = g.create_json(&data);
        for session in data.sessions.iter().filter(|s| s.bot == user) {
            let _ = session.tx.send(("GUILD_CREATE".to_owned(), payload.clone()));
        }
    }

    /// Sets a member's nickname in a guild.
    pub fn set_nick(&self, guild: u64, user: u64, nick: &str) {
        if let Some(g) = self.data().guilds.get_mut(&guild) {
            g.nicks.insert(user, nick.to_owned());
        }
    }

    /// Adds a text channel to a guild; returns its ID.
    pub fn add_channel(&self, guild: u64, name: &str, topic: Option<&str>) -> u64 {
        let id = self.inner.snowflake();
        let mut data = self.data();
        let position = data.channels.values().filter(|c| c.guild == Some(guild)).count() as u32;
        let channel = Channel {
            id,
            guild: Some(guild),
            name: name.to_owned(),
            topic: topic.map(str::to_owned),
            position,
            recipients: Vec::new(),
            webhooks_forbidden: false,
            thread_parent: None,
        };
        let payload = channel.json(&data);
        data.channels.insert(id, channel);
        data.dispatch(Some(id), "CHANNEL_CREATE", &payload);
        id
    }

    /// Deletes a guild channel (CHANNEL_DELETE, dispatched to the bots that could see it).
    pub fn delete_channel(&self, channel: u64) {
        let mut data = self.data();
        let Some(c) = data.channels.get(&channel).cloned() else { return };
        let payload = c.json(&data);
        // Dispatch first: once the channel is gone nobody can see it.
        data.dispatch(Some(channel), "CHANNEL_DELETE", &payload);
        data.channels.remove(&channel);
        data.messages.remove(&channel);
    }

    /// Starts a thread on message `starter` of `channel`, as a Discord user would; the
    /// thread has the starter's ID (dispatches THREAD_CREATE). Returns the thread's ID.
    pub fn add_thread(&self, channel: u64, starter: u64, name: &str) -> u64 {
        let mut data = self.data();
        start_thread(&mut data, channel, starter, name)
    }

    /// Adds a DM channel between a bot and a user; returns its ID.
    pub fn add_dm(&self, bot: u64, user: u64) -> u64 {
        let id = self.inner.snowflake();
        let channel = Channel {
            id,
            guild: None,
            name: String::new(),
            topic: None,
            position: 0,
            recipients: vec![bot, user],
            webhooks_forbidden: false,
            thread_parent: None,
        };
        self.data().channels.insert(id, channel);
        id
    }

    /// Makes creating webhooks in a channel fail with "Missing Permissions".
    pub fn forbid_webhooks(&self, channel: u64) {
        if let Some(c) = self.data().channels.get_mut(&channel) {
            c.webhooks_forbidden = true;
        }
    }

    /// Renames a channel and changes its topic (CHANNEL_UPDATE).
    pub fn update_channel(&self, channel: u64, name: &str, topic: Option<&str>) {
        let mut data = self.data();
        let Some(c) = data.channels.get_mut(&channel) else { return };
        c.name = name.to_owned();
        c.topic = topic.map(str::to_owned);
        let c = c.clone();
        let payload = c.json(&data);
        data.dispatch(Some(channel), "CHANNEL_UPDATE", &payload);
    }

    /// `author` sends `content` in `channel`; returns the message ID.
    pub fn push_message(&self, channel: u64, author: u64, content: &str) -> u64 {
        self.push_full(channel, author, content, Vec::new(), None)
    }

    /// `author` replies to `reply_to` in `channel`; returns the message ID.
    pub fn push_reply(&self, channel: u64, author: u64, content: &str, reply_to: u64) -> u64 {
        self.push_full(channel, author, content, Vec::new(), Some(reply_to))
    }

    /// `author` sends a file (with `content` as text) in `channel`; returns the message ID.
    pub fn push_message_with_file(&self, channel: u64, author: u64, content: &str, file: SimFile) -> u64 {
        let file = File { filename: file.filename, content_type: file.content_type, bytes: file.bytes };
        self.push_full(channel, author, content, vec![("files[0]".to_owned(), file)], None)
    }

    fn push_full(&self, channel: u64, author: u64, content: &str, files: Vec<(String, File)>, reply: Option<u64>) -> u64 {
        self.push_rich(channel, author, content, files, reply, Value::Null)
    }

    /// `author` sends a message with stickers (`(id, name)`, as Discord's `sticker_items`)
    /// and embeds (Discord's embed objects, given as JSON); returns the message ID.
    pub fn push_message_with_extras(&self, channel: u64, author: u64, content: &str, stickers: &[(u64, &str)], embeds: Vec<Value>) -> u64 {
        let stickers: Vec<Value> =
            stickers.iter().map(|(id, name)| json!({ "id": id.to_string(), "name": name, "format_type": 1 })).collect();
        let extras = json!({ "sticker_items": stickers, "embeds": embeds });
        self.push_rich(channel, author, content, Vec::new(), None, extras)
    }

    fn push_rich(&self, channel: u64, author: u64, content: &str, files: Vec<(String, File)>, reply: Option<u64>, extras: Value) -> u64 {
        let mut data = self.data();
        let message = create_message_with(&self.inner, &mut data, channel, Author::User(author), content, files, reply, extras);
        message["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    /// `author` edits their message (MESSAGE_UPDATE).
    pub fn edit_message(&self, channel: u64, id: u64, content: &str) {
        let mut data = self.data();
        let Some(message) = data.message_mut(channel, id) else { return };
        message["content"] = json!(content);
        message["edited_timestamp"] = json!(state::iso8601(state::now_ms()));
        let message = message.clone();
        data.dispatch(Some(channel), "MESSAGE_UPDATE", &message);
    }

    /// Deletes a message (MESSAGE_DELETE).
    pub fn delete_message(&self, channel: u64, id: u64) {
        let mut data = self.data();
        if let Some(list) = data.messages.get_mut(&channel) {
            list.retain(|m| m["id"] != json!(id.to_string()));
        }
        let payload = json!({
            "id": id.to_string(),
            "channel_id": channel.to_string(),
            "guild_id": data.guild_of(channel).map(|g| g.id.to_string()),
        });
        data.dispatch(Some(channel), "MESSAGE_DELETE", &payload);
    }

    /// `user` reacts with a unicode emoji, or `name:id` for a custom one (`add` false removes).
    pub fn react(&self, channel: u64, message: u64, user: u64, emoji: &str, add: bool) {
        let mut data = self.data();
        let payload = reaction_json(&data, channel, message, user, emoji);
        let event = if add { "MESSAGE_REACTION_ADD" } else { "MESSAGE_REACTION_REMOVE" };
        data.dispatch(Some(channel), event, &payload);
    }

    /// `user` starts typing in `channel`.
    pub fn typing(&self, channel: u64, user: u64) {
        let mut data = self.data();
        let mut payload = json!({
            "channel_id": channel.to_string(),
            "guild_id": data.guild_of(channel).map(|g| g.id.to_string()),
            "user_id": user.to_string(),
            "timestamp": state::now_ms() / 1000,
        });
        if let Some(member) = data.guild_of(channel).and_then(|g| data.users.get(&user).map(|u| g.member_json(u))) {
            payload["member"] = member;
        }
        data.dispatch(Some(channel), "TYPING_START", &payload);
    }

    /// Closes every gateway session with a resumable error (the clients should reconnect).
    pub fn drop_gateway_sessions(&self) {
        self.to_every_session(gateway::CLOSE);
    }

    /// Sends every gateway session the RECONNECT opcode (7), as Discord does before it moves
    /// a session; the clients should reconnect and resume.
    pub fn request_reconnect(&self) {
        self.to_every_session(gateway::RECONNECT);
    }

    fn to_every_session(&self, what: &str) {
        let data = self.data();
        for session in &data.sessions {
            let _ = session.tx.send((what.to_owned(), Value::Null));
        }
    }

    /// Takes the gateway down (new connections are closed before HELLO; open sessions stay
    /// until dropped) or brings it back.
    pub fn set_gateway_down(&self, down: bool) {
        self.data().gateway_down = down;
    }

    /// Makes the gateway accept every new websocket and close it at once with 4000 (a
    /// resumable error), before HELLO, or stops doing so. Open sessions stay until dropped.
    pub fn set_gateway_closing(&self, closing: bool) {
        self.data().gateway_closing = closing;
    }

    /// How many websocket connections the gateway has accepted so far (every reconnect
    /// counts, whether it identified, resumed or failed).
    pub fn gateway_connections(&self) -> u64 {
        self.data().connections
    }

    /// Makes the gateway close an IDENTIFY of `bot` that asks for privileged intents with
    /// 4014 ("Disallowed intent(s)"), like Discord for a bot whose intents are not enabled in
    /// the developer portal.
    pub fn disallow_privileged_intents(&self, bot: u64) {
        self.data().no_privileged_intents.insert(bot);
    }

    /// Makes the gateway refuse RESUMEs (invalid session), so clients must IDENTIFY again.
    pub fn refuse_resume(&self, refuse: bool) {
        self.data().refuse_resume = refuse;
    }

    /// How many gateway sessions have identified and are open.
    pub fn gateway_sessions(&self) -> usize {
        self.data().sessions.iter().filter(|s| !s.tx.is_closed()).count()
    }

    /// How many gateway IDENTIFYs have succeeded so far (reconnects count again).
    pub fn identified(&self) -> u64 {
        self.data().identified
    }

    /// How many gateway RESUMEs have succeeded so far.
    pub fn resumed(&self) -> u64 {
        self.data().resumed
    }

    /// Every REST call so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.data().requests.clone()
    }

    /// Waits until a REST call matching `matches` has been made, and returns the first one.
    pub async fn wait_request(&self, timeout: Duration, what: &str, matches: impl Fn(&Recorded) -> bool) -> anyhow::Result<Recorded> {
        crate::wait_until(timeout, what, || async { Ok(self.requests().into_iter().find(|r| matches(r))) }).await
    }

    /// The messages of a channel, oldest first, as Discord's JSON.
    pub fn messages(&self, channel: u64) -> Vec<Value> {
        self.data().messages.get(&channel).cloned().unwrap_or_default()
    }

    /// The webhooks of a channel as (id, token, name).
    pub fn webhooks(&self, channel: u64) -> Vec<(u64, String, String)> {
        self.data().webhooks.values().filter(|w| w.channel == channel).map(|w| (w.id, w.token.clone(), w.name.clone())).collect()
    }
}

/// Makes message `starter` of `channel` the start of a thread (ID = the starter's), stores
/// the thread and dispatches THREAD_CREATE; returns the thread's ID.
pub(crate) fn start_thread(data: &mut Data, channel: u64, starter: u64, name: &str) -> u64 {
    let guild = data.guild_of(channel).map(|g| g.id);
    let thread = Channel {
        id: starter,
        guild,
        name: name.to_owned(),
        topic: None,
        position: 0,
        recipients: Vec::new(),
        webhooks_forbidden: false,
        thread_parent: Some(channel),
    };
    let mut payload = thread.json(data);
    payload["newly_created"] = json!(true);
    data.channels.insert(starter, thread);
    data.dispatch(Some(channel), "THREAD_CREATE", &payload);
    starter
}

/// Stores a new message, dispatches MESSAGE_CREATE and returns the message's JSON.
pub(crate) fn create_message(
    inner: &Inner,
    data: &mut Data,
    channel: u64,
    author: Author,
    content: &str,
    files: Vec<(String, File)>,
    reply: Option<u64>,
) -> Value {
    create_message_with(inner, data, channel, author, content, files, reply, Value::Null)
}

/// [`create_message`] with `extras`: fields (`embeds`, `sticker_items`, …) that replace the
/// message's own.
#[allow(clippy::too_many_arguments)]
pub(crate) fn create_message_with(
    inner: &Inner,
    data: &mut Data,
    channel: u64,
    author: Author,
    content: &str,
    files: Vec<(String, File)>,
    reply: Option<u64>,
    extras: Value,
) -> Value {
    let id = inner.snowflake();
    let guild = data.guild_of(channel).map(|g| g.id);
    let (author_json, webhook_id, member) = match &author {
        Author::User(user) => {
            let json = data.users.get(user).map(User::json).unwrap_or(Value::Null);
            (json, None, data.member_of(channel, *user))
        }
        Author::Webhook { id: webhook, username, avatar } => {
            let json = json!({
                "id": webhook.to_string(),
                "username": username,
                "discriminator": "0000",
                "avatar": avatar.as_ref().map(|_| format!("{webhook:032x}")),
                "bot": true,
            });
            (json, Some(webhook.to_string()), None)
        }
    };
    let mentions: Vec<Value> = content
        .split("<@")
        .skip(1)
        .filter_map(|rest| rest.trim_start_matches('!').split('>').next())
        .filter_map(|id| id.parse::<u64>().ok())
        .filter_map(|id| data.users.get(&id).map(User::json))
        .collect();
    let mut attachments = Vec::new();
    for (_, file) in files {
        let file_id = inner.snowflake();
        let url = format!("{}/attachments/{file_id}/{}", inner.base(), file.filename);
        attachments.push(json!({
            "id": file_id.to_string(),
            "filename": file.filename,
            "size": file.bytes.len(),
            "url": url,
            "proxy_url": url,
            "content_type": file.content_type,
        }));
        data.files.insert(file_id, file);
    }
    let mut message = json!({
        "id": id.to_string(),
        "channel_id": channel.to_string(),
        "author": author_json,
        "content": content,
        "timestamp": state::iso8601(state::now_ms()),
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": content.contains("@everyone"),
        "mentions": mentions,
        "mention_roles": [],
        "attachments": attachments,
        "embeds": [],
        "pinned": false,
        "type": if reply.is_some() { 19 } else { 0 },
        "flags": 0,
        "components": [],
        "sticker_items": [],
    });
    if let Value::Object(extras) = extras {
        for (key, value) in extras {
            message[key] = value;
        }
    }
    if let Some(guild) = guild {
        message["guild_id"] = json!(guild.to_string());
    }
    if let Some(webhook_id) = webhook_id {
        message["webhook_id"] = json!(webhook_id);
    }
    if let Some(reply) = reply {
        message["message_reference"] = json!({
            "message_id": reply.to_string(),
            "channel_id": channel.to_string(),
            "guild_id": guild.map(|g| g.to_string()),
        });
        let referenced = data.message_mut(channel, reply).map(|m| m.clone());
        message["referenced_message"] = referenced.unwrap_or(Value::Null);
    }
    data.messages.entry(channel).or_default().push(message.clone());
    let mut event = message.clone();
    if let Some(member) = member {
        event["member"] = member;
    }
    data.dispatch(Some(channel), "MESSAGE_CREATE", &event);
    message
}

/// The payload of MESSAGE_REACTION_ADD/REMOVE.
pub(crate) fn reaction_json(data: &Data, channel: u64, message: u64, user: u64, emoji: &str) -> Value {
    let emoji = match emoji.rsplit_once(':') {
        Some((name, id)) if id.parse::<u64>().is_ok() => json!({ "id": id, "name": name, "animated": false }),
        _ => json!({ "id": null, "name": emoji }),
    };
    json!({
        "user_id": user.to_string(),
        "channel_id": channel.to_string(),
        "message_id": message.to_string(),
        "guild_id": data.guild_of(channel).map(|g| g.id.to_string()),
        "emoji": emoji,
        "burst": false,
        "type": 0,
    })
}

#[cfg(test)]
mod tests;
