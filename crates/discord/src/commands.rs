//! Discord's own bot commands: `guilds` (alias `listguilds`) lists the bot's servers,
//! `guilds bridge <id>` (alias `bridgeguild <id>`) bridges a server, `guilds unbridge <id>`
//! (alias `unbridgeguild <id>`) stops bridging it.
//!
//! Each server of a login has a [`GuildMode`]: `all` (every text channel gets a portal now,
//! and channels created later get one at once; the default of `guilds bridge`), `on-message`
//! (a portal appears with a channel's first message; what a server is in until told
//! otherwise) or `off` (its events are dropped). [`GuildModes`] keeps them in the login's
//! store (`guild_mode.<id>`), so they survive a restart of the bridge.

use std::collections::HashMap;
use std::sync::Mutex;

use bridge_core::network::events::ChatRef;
use bridge_core::network::{CommandResult, LoginStore, NetworkCommand, NetworkError, RemoteEvent};
use serde::{Deserialize, Serialize};
use serenity::all::{ChannelType, GuildChannel, GuildId};
use tokio::sync::OnceCell;

use crate::client::{lock, Shared};
use crate::connector::timed;
use crate::handle_remote::chat_ref;

/// How the channels of one server are bridged (stored as `"all"`, `"on-message"`, `"off"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuildMode {
    /// Every text channel has a portal (created by `guilds bridge`).
    All,
    /// A channel gets a portal with its first message.
    OnMessage,
    /// Nothing from the server is bridged.
    Off,
}

impl GuildMode {
    /// The mode's name as users type and read it.
    pub fn name(self) -> &'static str {
        match self {
            GuildMode::All => "all channels",
            GuildMode::OnMessage => "on first message",
            GuildMode::Off => "not bridged",
        }
    }
}

/// The key prefix of the stored modes in the login's store.
const MODE_KEY: &str = "guild_mode.";

/// The [`GuildMode`] of each server of one login: read from the login's store on first use,
/// written through on every change.
pub struct GuildModes {
    store: LoginStore,
    modes: Mutex<HashMap<GuildId, GuildMode>>,
    loaded: OnceCell<()>,
}

impl GuildModes {
    /// The modes kept in `store`; nothing is read yet.
    pub fn new(store: LoginStore) -> Self {
        Self { store, modes: Mutex::new(HashMap::new()), loaded: OnceCell::new() }
    }

    /// Reads the stored modes once. A failed read is logged and retried on the next call.
    async fn load(&self) {
        let loaded = self
            .loaded
            .get_or_try_init(|| async {
                let stored: Vec<(String, GuildMode)> = self.store.list(MODE_KEY).await?;
                let mut modes = lock(&self.modes);
                for (key, mode) in stored {
                    if let Some(guild) = key.strip_prefix(MODE_KEY).and_then(|id| id.parse::<u64>().ok()).filter(|g| *g != 0) {
                        // A mode set while loading is newer than the stored one.
                        modes.entry(GuildId::new(guild)).or_insert(mode);
                    }
                }
                Ok::<_, NetworkError>(())
            })
            .await;
        if let Err(error) = loaded {
            tracing::warn!(%error, "could not read the stored guild modes");
        }
    }

    /// The mode of a server (`on-message` until set).
    pub async fn get(&self, guild: GuildId) -> GuildMode {
        self.load().await;
        lock(&self.modes).get(&guild).copied().unwrap_or(GuildMode::OnMessage)
    }

    /// Every server with a mode set.
    pub async fn all(&self) -> HashMap<GuildId, GuildMode> {
        self.load().await;
        lock(&self.modes).clone()
    }

    /// Sets and stores the mode of a server.
    pub async fn set(&self, guild: GuildId, mode: GuildMode) -> Result<(), NetworkError> {
        self.load().await;
        lock(&self.modes).insert(guild, mode);
        self.store.set(&format!("{MODE_KEY}{guild}"), &mode).await
    }
}

/// The commands this crate adds to the core's.
pub fn commands() -> Vec<NetworkCommand> {
    vec![
        NetworkCommand {
            name: "guilds",
            aliases: &["listguilds"],
            args: "[bridge <id> [on-message] | unbridge <id>]",
            help: "List the bot's Discord servers, or bridge / unbridge one.",
            needs_login: true,
        },
        NetworkCommand {
            name: "bridgeguild",
            aliases: &[],
            args: "<id> [on-message]",
            help: "Bridge a Discord server: a room per text channel now, or with `on-message` when a channel first speaks.",
            needs_login: true,
        },
        NetworkCommand {
            name: "unbridgeguild",
            aliases: &[],
            args: "<id>",
            help: "Stop bridging a Discord server; its rooms are unlinked.",
            needs_login: true,
        },
    ]
}

/// Runs one of [`commands`] for the login whose client shares `shared`.
pub(crate) async fn run(shared: &Shared, command: &str, args: &[String]) -> Result<CommandResult, NetworkError> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match (command, args.as_slice()) {
        ("guilds", [] | ["list"]) => list(shared).await,
        ("guilds", ["bridge", id, rest @ ..]) | ("bridgeguild", [id, rest @ ..]) => bridge(shared, id, rest).await,
        ("guilds", ["unbridge", id]) | ("unbridgeguild", [id]) => unbridge(shared, id).await,
        _ => Err(NetworkError::BadInput(
            "Usage: `guilds`, `guilds bridge <id> [on-message]`, `guilds unbridge <id>`.".to_owned(),
        )),
    }
}

async fn list(shared: &Shared) -> Result<CommandResult, NetworkError> {
    let guilds = timed(shared.http.get_guilds(None, None)).await?;
    if guilds.is_empty() {
        return Ok(reply("The bot is in no Discord server yet: invite it to one from the developer portal."));
    }
    let modes = shared.guild_modes.all().await;
    let mut text = format!("The bot is in {} server(s):\n", guilds.len());
    for guild in &guilds {
        let mode = modes.get(&guild.id).copied().unwrap_or(GuildMode::OnMessage);
        text.push_str(&format!("- {} (`{}`): {}\n", guild.name, guild.id, mode.name()));
    }
    text.push_str("Send `guilds bridge <id>` to bridge one.");
    Ok(reply(&text))
}

/// The server of a typed ID, checked with Discord (the bot must be in it).
async fn guild(shared: &Shared, id: &str) -> Result<(GuildId, String), NetworkError> {
    let not_found = || {
        NetworkError::BadInput(format!(
            "The bot is not in a Discord server with the ID `{id}`. Send `guilds` for the list of servers."
        ))
    };
    let guild = id.parse::<u64>().ok().filter(|g| *g != 0).map(GuildId::new).ok_or_else(not_found)?;
    match timed(shared.http.get_guild(guild)).await {
        Ok(partial) => Ok((guild, partial.name)),
        Err(NetworkError::NotFound(_)) | Err(NetworkError::BadInput(_)) => Err(not_found()),
        Err(other) => Err(other),
    }
}

/// Whether a channel kind gets a portal (text and announcement channels).
pub fn is_text(kind: ChannelType) -> bool {
    matches!(kind, ChannelType::Text | ChannelType::News)
}

/// The server's text channels in Discord's order: by category position, then position.
pub fn text_channels(channels: &[GuildChannel]) -> Vec<&GuildChannel> {
    let category_position: HashMap<_, _> =
        channels.iter().filter(|c| c.kind == ChannelType::Category).map(|c| (c.id, c.position)).collect();
    let mut text: Vec<&GuildChannel> =
        channels.iter().filter(|c| is_text(c.kind)).collect();
    text.sort_by_key(|c| {
        let category = c.parent_id.and_then(|p| category_position.get(&p).copied());
        (category.map_or(0, |p| i32::from(p) + 1), c.position, c.id)
    });
    text
}

async fn bridge(shared: &Shared, id: &str, rest: &[&str]) -> Result<CommandResult, NetworkError> {
    let lazy = match rest {
        [] => false,
        ["on-message"] => true,
        _ => return Err(NetworkError::BadInput("The only option of `guilds bridge` is `on-message`.".to_owned())),
    };
    let (guild, name) = self::guild(shared, id).await?;
    if lazy {
        shared.guild_modes.set(guild, GuildMode::OnMessage).await?;
        return Ok(reply(&format!("Bridging {name}: a room is created when a channel gets its first message.")));
    }
    let channels = timed(shared.http.get_channels(guild)).await?;
    let text = text_channels(&channels);
    shared.guild_modes.set(guild, GuildMode::All).await?;
    let create_portals: Vec<ChatRef> = text.iter().map(|c| chat_ref(c.id, Some(guild), &shared.login)).collect();
    let names: Vec<String> = text.iter().map(|c| format!("#{}", c.name)).collect();
    let reply = if names.is_empty() {
        format!("{name} has no text channel to bridge.")
    } else {
        format!("Bridging {name}: {} channel(s) ({}).", names.len(), names.join(", "))
    };
    Ok(CommandResult { reply, create_portals })
}

async fn unbridge(shared: &Shared, id: &str) -> Result<CommandResult, NetworkError> {
    let (guild, name) = self::guild(shared, id).await?;
    shared.guild_modes.set(guild, GuildMode::Off).await?;
    let channels = timed(shared.http.get_channels(guild)).await?;
    for channel in text_channels(&channels) {
        let chat = chat_ref(channel.id, Some(guild), &shared.login);
        shared.events.send(RemoteEvent::ChatDeleted { chat }).await;
    }
    Ok(reply(&format!("Stopped bridging {name} (`{guild}`); its rooms are no longer bridged.")))
}

fn reply(text: &str) -> CommandResult {
    CommandResult { reply: text.to_owned(), create_portals: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(id: u64, kind: u8, position: u16, parent: Option<u64>) -> GuildChannel {
        serde_json::from_value(serde_json::json!({
            "id": id.to_string(), "type": kind, "guild_id": "1", "name": format!("c{id}"),
            "position": position, "parent_id": parent.map(|p| p.to_string()), "permission_overwrites": [],
            "nsfw": false,
        }))
        .expect("channel")
    }

    #[test]
    fn text_channels_follow_category_order() {
        let channels = vec![
            channel(10, 4, 1, None),      // category B
            channel(11, 4, 0, None),      // category A
            channel(20, 0, 0, Some(10)),  // in B
            channel(21, 0, 1, Some(11)),  // in A, second
            channel(22, 0, 0, Some(11)),  // in A, first
            channel(23, 0, 5, None),      // uncategorized first
            channel(24, 2, 0, None),      // voice: skipped
            channel(25, 5, 3, Some(10)),  // announcements in B
        ];
        let order: Vec<u64> = text_channels(&channels).iter().map(|c| c.id.get()).collect();
        assert_eq!(order, vec![23, 22, 21, 20, 25]);
    }

    #[tokio::test]
    async fn guild_modes_are_kept_in_the_login_store() {
        let store = LoginStore::in_memory(&bridge_core::network::LoginId::from("1"));
        let modes = GuildModes::new(store.clone());
        assert_eq!(modes.get(GuildId::new(5)).await, GuildMode::OnMessage, "unset servers bridge on first message");
        modes.set(GuildId::new(5), GuildMode::All).await.expect("set");
        modes.set(GuildId::new(6), GuildMode::OnMessage).await.expect("set");
        modes.set(GuildId::new(7), GuildMode::Off).await.expect("set");
        let stored: Option<String> = store.get("guild_mode.5").await.expect("get");
        assert_eq!(stored.as_deref(), Some("all"));

        // A new client of the same login (a restart) reads them back.
        let again = GuildModes::new(store);
        let cases = [(5, GuildMode::All), (6, GuildMode::OnMessage), (7, GuildMode::Off), (8, GuildMode::OnMessage)];
        for (guild, want) in cases {
            assert_eq!(again.get(GuildId::new(guild)).await, want, "guild {guild}");
        }
        assert_eq!(again.all().await.len(), 3);
    }

    #[test]
    fn commands_are_declared() {
        let names: Vec<&str> = commands().iter().map(|c| c.name).collect();
        assert_eq!(names, vec!["guilds", "bridgeguild", "unbridgeguild"]);
        assert!(commands().iter().all(|c| c.needs_login));
    }
}
