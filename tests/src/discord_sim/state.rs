//! The Discord simulator's state (users, bots, guilds, channels, messages, webhooks, the
//! recorded REST calls and the open gateway sessions) and the JSON forms Discord uses for
//! each object.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Discord's epoch (2015-01-01) in Unix milliseconds.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// A user or bot.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: u64,
    pub username: String,
    pub global_name: Option<String>,
    pub avatar: Option<String>,
    pub bot: bool,
}

/// A guild.
#[derive(Debug, Clone)]
pub(crate) struct Guild {
    pub id: u64,
    pub name: String,
    pub owner: u64,
    pub members: BTreeSet<u64>,
    pub nicks: BTreeMap<u64, String>,
}

/// A channel: a guild text channel (`guild` set) or a DM (`recipients` set).
#[derive(Debug, Clone)]
pub(crate) struct Channel {
    pub id: u64,
    pub guild: Option<u64>,
    pub name: String,
    pub topic: Option<String>,
    pub position: u32,
    pub recipients: Vec<u64>,
    pub webhooks_forbidden: bool,
    /// For a thread: its parent channel (a thread started from a message has its ID).
    pub thread_parent: Option<u64>,
}

/// A stored file.
#[derive(Debug, Clone)]
pub(crate) struct File {
    pub filename: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// A webhook.
#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    pub id: u64,
    pub token: String,
    pub channel: u64,
    pub name: String,
    pub creator: u64,
}

/// One REST call the simulator received.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The HTTP method (`POST`).
    pub method: String,
    /// The path below `/api/v10` (`/channels/1/messages`).
    pub path: String,
    /// The query string, if any.
    pub query: String,
    /// The JSON body (for multipart uploads, `payload_json`); `Null` without one.
    pub body: Value,
    /// Uploaded files: (field name, file name, bytes).
    pub files: Vec<(String, String, Vec<u8>)>,
    /// The user ID of the bot that made the call (`None` for webhook executions).
    pub bot: Option<u64>,
}

/// A gateway session: the bot it identified as and the queue of events to send it.
pub(crate) struct Session {
    pub id: u64,
    pub bot: u64,
    pub tx: mpsc::UnboundedSender<(String, Value)>,
}

/// Everything the simulator knows, behind one lock (never held across `.await`).
#[derive(Default)]
pub(crate) struct Data {
    pub users: BTreeMap<u64, User>,
    pub tokens: BTreeMap<String, u64>,
    pub guilds: BTreeMap<u64, Guild>,
    pub channels: BTreeMap<u64, Channel>,
    pub messages: BTreeMap<u64, Vec<Value>>,
    pub files: BTreeMap<u64, File>,
    pub webhooks: BTreeMap<u64, Webhook>,
    pub requests: Vec<Recorded>,
    pub sessions: Vec<Session>,
    pub gateway_port: u16,
    /// How many connections the gateway accepted (or dropped while down).
    pub connections: u64,
    /// Whether the gateway is down: connections are dropped before the websocket handshake.
    pub gateway_down: bool,
    /// Whether the gateway closes every websocket at once (code 4000, before HELLO).
    pub gateway_closing: bool,
    /// How many IDENTIFYs succeeded.
    pub identified: u64,
    /// How many RESUMEs succeeded.
    pub resumed: u64,
    /// Whether RESUMEs are refused (op 9), forcing a new IDENTIFY.
    pub refuse_resume: bool,
    /// Bots not allowed privileged intents (MESSAGE_CONTENT, GUILD_MEMBERS, GUILD_PRESENCES):
    /// an IDENTIFY asking for them is closed with 4014, as Discord does.
    pub no_privileged_intents: std::collections::HashSet<u64>,
}

/// The shared state.
pub(crate) struct Inner {
    pub data: Mutex<Data>,
    next: AtomicU64,
    pub port: u16,
}

impl Inner {
    pub(crate) fn new(port: u16) -> Self {
        Self { data: Mutex::new(Data::default()), next: AtomicU64::new(1), port }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new snowflake: the current time since Discord's epoch, then a counter.
    pub(crate) fn snowflake(&self) -> u64 {
        let ms = now_ms().saturating_sub(DISCORD_EPOCH_MS);
        (ms << 22) | (self.next.fetch_add(1, Ordering::Relaxed) & 0x3f_ffff)
    }

    /// The simulator's base URL.
    pub(crate) fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// An ISO 8601 timestamp (`2024-05-06T07:08:09.123000+00:00`) of Unix milliseconds.
pub(crate) fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}000+00:00",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        ms % 1000
    )
}

impl User {
    pub(crate) fn json(&self) -> Value {
        json!({
            "id": self.id.to_string(),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": self.avatar,
            "bot": self.bot,
            "public_flags": 0,
        })
    }
}

impl Channel {
    pub(crate) fn json(&self, data: &Data) -> Value {
        // As Discord does: the ID of the latest message (null in an empty channel).
        let last_message_id = data.messages.get(&self.id).and_then(|m| m.last()).map_or(Value::Null, |m| m["id"].clone());
        if let (Some(guild), Some(parent)) = (self.guild, self.thread_parent) {
            return json!({
                "id": self.id.to_string(),
                "type": 11,
                "guild_id": guild.to_string(),
                "parent_id": parent.to_string(),
                "name": self.name,
                "owner_id": null,
                "last_message_id": last_message_id,
                "rate_limit_per_user": 0,
                "message_count": 0,
                "member_count": 1,
                "nsfw": false,
                "permission_overwrites": [],
                "thread_metadata": {
                    "archived": false,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": iso8601(now_ms()),
                    "locked": false,
                },
            });
        }
        match self.guild {
            Some(guild) => json!({
                "id": self.id.to_string(),
                "type": 0,
                "guild_id": guild.to_string(),
                "position": self.position,
                "permission_overwrites": [],
                "name": self.name,
                "topic": self.topic,
                "nsfw": false,
                "last_message_id": last_message_id,
                "rate_limit_per_user": 0,
                "parent_id": null,
            }),
            None => json!({
                "id": self.id.to_string(),
                "type": 1,
                "last_message_id": last_message_id,
                "recipients": self
                    .recipients
                    .iter()
                    .filter_map(|u| data.users.get(u).map(User::json))
                    .collect::<Vec<_>>(),
            }),
        }
    }
}

impl Guild {
    /// The guild as `GET /guilds/{id}` returns it.
    pub(crate) fn json(&self) -> Value {
        json!({
            "id": self.id.to_string(),
            "name": self.name,
            "icon": null,
            "splash": null,
            "discovery_splash": null,
            "owner_id": self.owner.to_string(),
            "afk_channel_id": null,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [{
                "id": self.id.to_string(),
                "name": "@everyone",
                "color": 0,
                "colors": { "primary_color": 0, "secondary_color": null, "tertiary_color": null },
                "hoist": false,
                "icon": null,
                "unicode_emoji": null,
                "position": 0,
                "permissions": "1071698660929",
                "managed": false,
                "mentionable": false,
                "flags": 0,
            }],
            "emojis": [],
            "features": [],
            "mfa_level": 0,
            "application_id": null,
            "system_channel_id": null,
            "system_channel_flags": 0,
            "rules_channel_id": null,
            "max_members": 500000,
            "vanity_url_code": null,
            "description": null,
            "banner": null,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": null,
            "max_video_channel_users": 25,
            "nsfw_level": 0,
            "stickers": [],
            "premium_progress_bar_enabled": false,
            "safety_alerts_channel_id": null,
        })
    }

    /// A member object of `user` in this guild.
    pub(crate) fn member_json(&self, user: &User) -> Value {
        json!({
            "user": user.json(),
            "nick": self.nicks.get(&user.id),
            "avatar": null,
            "roles": [],
            "joined_at": iso8601(now_ms()),
            "deaf": false,
            "mute": false,
            "flags": 0,
        })
    }

    /// The guild as `GUILD_CREATE` sends it: with channels and members.
    pub(crate) fn create_json(&self, data: &Data) -> Value {
        let mut value = self.json();
        let channels: Vec<Value> =
            data.channels.values().filter(|c| c.guild == Some(self.id)).map(|c| c.json(data)).collect();
        let members: Vec<Value> =
            self.members.iter().filter_map(|u| data.users.get(u)).map(|u| self.member_json(u)).collect();
        if let Value::Object(map) = &mut value {
            map.insert("joined_at".into(), json!(iso8601(now_ms())));
            map.insert("large".into(), json!(false));
            map.insert("unavailable".into(), json!(false));
            map.insert("member_count".into(), json!(self.members.len()));
            map.insert("voice_states".into(), json!([]));
            map.insert("members".into(), json!(members));
            map.insert("channels".into(), json!(channels));
            map.insert("threads".into(), json!([]));
            map.insert("presences".into(), json!([]));
            map.insert("stage_instances".into(), json!([]));
            map.insert("guild_scheduled_events".into(), json!([]));
        }
        value
    }
}

impl Webhook {
    pub(crate) fn json(&self, data: &Data) -> Value {
        let guild = data.channels.get(&self.channel).and_then(|c| c.guild);
        json!({
            "id": self.id.to_string(),
            "type": 1,
            "guild_id": guild.map(|g| g.to_string()),
            "channel_id": self.channel.to_string(),
            "user": data.users.get(&self.creator).map(User::json),
            "name": self.name,
            "avatar": null,
            "token": self.token,
            "application_id": self.creator.to_string(),
        })
    }
}

impl Data {
    /// The guild of a channel, if it is a guild channel.
    pub(crate) fn guild_of(&self, channel: u64) -> Option<&Guild> {
        self.channels.get(&channel).and_then(|c| c.guild).and_then(|g| self.guilds.get(&g))
    }

    /// Whether `user` can see `channel`.
    pub(crate) fn can_see(&self, user: u64, channel: u64) -> bool {
        match self.channels.get(&channel) {
            Some(c) => match c.guild {
                Some(g) => self.guilds.get(&g).is_some_and(|g| g.members.contains(&user)),
                None => c.recipients.contains(&user),
            },
            None => false,
        }
    }

    /// Sends a dispatch to every gateway session whose bot can see `channel` (all sessions
    /// when `channel` is `None`).
    pub(crate) fn dispatch(&mut self, channel: Option<u64>, event: &str, payload: &Value) {
        let visible: Vec<bool> =
            self.sessions.iter().map(|s| channel.is_none_or(|c| self.can_see(s.bot, c))).collect();
        self.sessions.retain(|s| !s.tx.is_closed());
        for (session, visible) in self.sessions.iter().zip(visible) {
            if visible {
                let _ = session.tx.send((event.to_owned(), payload.clone()));
            }
        }
    }

    /// A message's `member` field, for guild messages by real users.
    pub(crate) fn member_of(&self, channel: u64, author: u64) -> Option<Value> {
        let guild = self.guild_of(channel)?;
        let user = self.users.get(&author)?;
        let mut member = guild.member_json(user);
        if let Value::Object(map) = &mut member {
            map.remove("user");
        }
        Some(member)
    }

    /// Finds a stored message by ID in a channel.
    pub(crate) fn message_mut(&mut self, channel: u64, id: u64) -> Option<&mut Value> {
        let id = id.to_string();
        self.messages.get_mut(&channel)?.iter_mut().find(|m| m["id"] == json!(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_matches_known_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(iso8601(1_700_000_000_123), "2023-11-14T22:13:20.123000+00:00");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000000+00:00");
    }
}
