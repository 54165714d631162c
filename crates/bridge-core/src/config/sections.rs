//! The typed sections of the config file (everything except the network's own section),
//! their defaults, and the permission lookup.
//!
//! Defaults that depend on the network (port, bot name, ghost template, …) come from the
//! [`NetworkInfo`] in scope while a file is being read (see [`super::defaults`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

use super::defaults;
use crate::network::NetworkInfo;

/// Placeholder written for tokens until `generate-registration` fills in real ones.
pub const TOKEN_PLACEHOLDER: &str = "generate";

/// Default limit on the size of a request body from the homeserver (10 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// `homeserver:` — where the Matrix homeserver is and what it is called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeserverConfig {
    /// Client-server API base URL the bridge uses to reach the homeserver.
    pub address: Url,
    /// The homeserver's server name, the part after `:` in user IDs (`example.com`).
    pub domain: String,
}

impl HomeserverConfig {
    /// The values written by `generate-config`.
    pub fn example() -> Self {
        Self {
            address: local_url(8008),
            domain: "example.com".to_owned(),
        }
    }
}

/// `appservice:` — how the homeserver and the bridge reach each other.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default = "AppserviceConfig::scoped_default")]
pub struct AppserviceConfig {
    /// URL at which the homeserver reaches the bridge (`url` in the registration).
    pub address: Url,
    /// Host or IP address the bridge's HTTP server binds to.
    pub hostname: String,
    /// Port the bridge's HTTP server binds to.
    pub port: u16,
    /// The appservice ID in the registration; unique per homeserver.
    pub id: String,
    /// The bridge bot user.
    pub bot: BotConfig,
    /// Localpart template of ghost users; `{id}` is replaced by the remote user's ID.
    pub username_template: String,
    /// Token the bridge uses to call the homeserver.
    pub as_token: String,
    /// Token the homeserver uses to call the bridge.
    pub hs_token: String,
    /// Whether to ask for typing notifications, receipts and presence (MSC2409).
    pub ephemeral_events: bool,
    /// Largest request body accepted from the homeserver, in bytes.
    pub max_body_bytes: usize,
    /// Unauthenticated, signed URLs for Matrix media a remote network must fetch itself.
    pub public_media: PublicMediaConfig,
}

/// `appservice.public_media:` — whether the bridge serves signed public URLs of Matrix
/// media (avatars a remote network shows, such as a Discord webhook's), and where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublicMediaConfig {
    /// Whether the URLs are served and handed to the network.
    pub enabled: bool,
    /// The bridge's address as the remote network reaches it (a public https URL behind
    /// a reverse proxy, usually); `appservice.address` when not set.
    pub public_address: Option<Url>,
}

impl AppserviceConfig {
    /// The values written by `generate-config` for `info`'s network.
    pub fn example(info: &NetworkInfo) -> Self {
        Self {
            address: local_url(info.default_port),
            hostname: "127.0.0.1".to_owned(),
            port: info.default_port,
            id: info.id.to_owned(),
            bot: BotConfig::example(info),
            username_template: info.ghost_template.to_owned(),
            as_token: TOKEN_PLACEHOLDER.to_owned(),
            hs_token: TOKEN_PLACEHOLDER.to_owned(),
            ephemeral_events: true,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            public_media: PublicMediaConfig::default(),
        }
    }

    fn scoped_default() -> Self {
        Self::example(&defaults::current())
    }

    /// Whether either token is still the placeholder (or empty), i.e. `generate-registration`
    /// has not been run yet.
    pub fn has_placeholder_tokens(&self) -> bool {
        is_placeholder(&self.as_token) || is_placeholder(&self.hs_token)
    }

    /// The Matrix localpart of the ghost for a remote user ID.
    pub fn ghost_localpart(&self, remote_id: &str) -> String {
        self.username_template.replace("{id}", remote_id)
    }
}

/// Whether a token value is the placeholder written by `generate-config` (or empty).
pub fn is_placeholder(token: &str) -> bool {
    let token = token.trim();
    token.is_empty() || token == TOKEN_PLACEHOLDER
}

impl fmt::Debug for AppserviceConfig {
    // Hand-written so tokens never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppserviceConfig")
            .field("address", &self.address.as_str())
            .field("hostname", &self.hostname)
            .field("port", &self.port)
            .field("id", &self.id)
            .field("bot", &self.bot)
            .field("username_template", &self.username_template)
            .field("as_token", &"<redacted>")
            .field("hs_token", &"<redacted>")
            .field("ephemeral_events", &self.ephemeral_events)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("public_media", &self.public_media)
            .finish()
    }
}

/// `appservice.bot:` — the bridge bot's profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default = "BotConfig::scoped_default")]
pub struct BotConfig {
    /// Localpart of the bot (`discordbot`).
    pub username: String,
    /// Display name set on the bot; empty leaves it unchanged.
    pub displayname: String,
    /// `mxc://` avatar of the bot; empty leaves it unchanged.
    pub avatar: String,
}

impl BotConfig {
    /// The values written by `generate-config` for `info`'s network.
    pub fn example(info: &NetworkInfo) -> Self {
        Self {
            username: info.bot_localpart.to_owned(),
            displayname: format!("{} bridge bot", info.display_name),
            avatar: String::new(),
        }
    }

    fn scoped_default() -> Self {
        Self::example(&defaults::current())
    }
}

/// `database:` — where the bridge keeps its state.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default = "DatabaseConfig::scoped_default")]
pub struct DatabaseConfig {
    /// `sqlite:<file>` or `postgres://user:password@host/db`.
    pub uri: String,
    /// Size of the connection pool.
    pub max_connections: u32,
}

impl DatabaseConfig {
    /// The values written by `generate-config` for `info`'s network.
    pub fn example(info: &NetworkInfo) -> Self {
        Self {
            uri: format!("sqlite:{}.db", info.id),
            max_connections: 5,
        }
    }

    fn scoped_default() -> Self {
        Self::example(&defaults::current())
    }
}

impl fmt::Debug for DatabaseConfig {
    // Hand-written so a PostgreSQL password never reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uri = match Url::parse(&self.uri) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("redacted"));
                url.to_string()
            }
            _ => self.uri.clone(),
        };
        f.debug_struct("DatabaseConfig")
            .field("uri", &uri)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// What a Matrix user may do with the bridge, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PermissionLevel {
    /// Ignored entirely.
    Block,
    /// Messages are bridged through a relay login, if the room has one.
    Relay,
    /// May use bot commands but not log in.
    Commands,
    /// May log in and bridge their own account.
    User,
    /// May do everything, including administrative commands.
    Admin,
}

/// `bridge:` — behaviour shared by all networks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default = "BridgeConfig::scoped_default")]
pub struct BridgeConfig {
    /// Prefix of bot commands in rooms other than the management room (`!dc`).
    pub command_prefix: String,
    /// Permission per user ID (`@a:example.com`), per server name (`example.com`) or for
    /// everyone (`*`). The most specific entry wins.
    pub permissions: BTreeMap<String, PermissionLevel>,
    /// Relaying of messages from users without a login through someone else's login.
    pub relay: RelayConfig,
    /// History fetched when a portal room is created.
    pub backfill: BackfillConfig,
    /// Seconds a login flow may wait for the user before it is cancelled.
    pub login_timeout_secs: u64,
    /// Seconds a login may stay disconnected (its client reconnecting by itself) before its
    /// owner is told in their management room; shorter drops pass in silence. 0 tells at once.
    pub notify_disconnect_after_secs: u64,
    /// The provisioning HTTP API (`/_matrix/provision/v3/...`).
    pub provisioning: ProvisioningConfig,
    /// Double puppeting: the user's own messages from the network's app sent as their
    /// real Matrix account.
    pub double_puppet: DoublePuppetConfig,
    /// End-to-bridge encryption: the bot's own device, in encrypted rooms.
    pub encryption: EncryptionConfig,
}

impl BridgeConfig {
    /// The values written by `generate-config` for `info`'s network; `domain` is the
    /// example homeserver's server name.
    pub fn example(info: &NetworkInfo, domain: &str) -> Self {
        let permissions = BTreeMap::from([
            ("*".to_owned(), PermissionLevel::Relay),
            (domain.to_owned(), PermissionLevel::User),
            (format!("@admin:{domain}"), PermissionLevel::Admin),
        ]);
        Self {
            command_prefix: info.command_prefix.to_owned(),
            permissions,
            relay: RelayConfig::default(),
            backfill: BackfillConfig::default(),
            login_timeout_secs: DEFAULT_LOGIN_TIMEOUT_SECS,
            notify_disconnect_after_secs: DEFAULT_NOTIFY_DISCONNECT_AFTER_SECS,
            provisioning: ProvisioningConfig::default(),
            double_puppet: DoublePuppetConfig::default(),
            encryption: EncryptionConfig::default(),
        }
    }

    fn scoped_default() -> Self {
        Self::example(&defaults::current(), "example.com")
    }

    /// The permission of `user_id`: its own entry, else its server's entry, else `*`,
    /// else [`PermissionLevel::Block`].
    pub fn permission_for(&self, user_id: &str) -> PermissionLevel {
        if let Some(level) = self.permissions.get(user_id) {
            return *level;
        }
        let server = user_id
            .strip_prefix('@')
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, s)| s);
        if let Some(level) = server.and_then(|s| self.permissions.get(s)) {
            return *level;
        }
        self.permissions
            .get("*")
            .copied()
            .unwrap_or(PermissionLevel::Block)
    }
}

/// `bridge.relay:` — relay mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Whether rooms may have a relay login at all.
    pub enabled: bool,
    /// How a relayed message is shown on the remote network; `{sender_displayname}`,
    /// `{sender_id}` and `{message}` are replaced.
    pub message_format: String,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            message_format: "{sender_displayname}: {message}".to_owned(),
        }
    }
}

/// Default of `bridge.login_timeout_secs`: ten minutes.
pub const DEFAULT_LOGIN_TIMEOUT_SECS: u64 = 600;

/// Default of `bridge.notify_disconnect_after_secs`: half a minute.
pub const DEFAULT_NOTIFY_DISCONNECT_AFTER_SECS: u64 = 30;

/// Value of `bridge.provisioning.shared_secret` that turns the provisioning API off.
pub const SECRET_DISABLED: &str = "disable";

/// `bridge.provisioning:` — the provisioning HTTP API that login GUIs speak.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvisioningConfig {
    /// Whether the API is served at all.
    pub enabled: bool,
    /// The bearer token clients must send. `generate` is replaced by a random secret when
    /// `generate-registration` runs; `disable` turns the API off.
    pub shared_secret: String,
}

impl ProvisioningConfig {
    /// The secret to check requests against, or `None` when the API is off (disabled, or
    /// the secret is still a placeholder).
    pub fn active_secret(&self) -> Option<&str> {
        let secret = self.shared_secret.trim();
        (self.enabled && !is_placeholder(secret) && secret != SECRET_DISABLED).then_some(secret)
    }
}

impl Default for ProvisioningConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            shared_secret: TOKEN_PLACEHOLDER.to_owned(),
        }
    }
}

impl fmt::Debug for ProvisioningConfig {
    // Hand-written so the shared secret never reaches a log line through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvisioningConfig")
            .field("enabled", &self.enabled)
            .field("shared_secret", &"<redacted>")
            .finish()
    }
}

/// The prefix of a double-puppeting secret that is an appservice token.
pub const AS_TOKEN_PREFIX: &str = "as_token:";

/// `bridge.double_puppet:` — double puppeting. For each homeserver with a secret, what a
/// user sends from the network's own app is sent to Matrix as their real account, through
/// an extra appservice registration (`as_token:<token>`) whose user namespace covers them.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DoublePuppetConfig {
    /// Client-server API URL per server name, for homeservers other than
    /// `homeserver.domain` (which is reached at `homeserver.address`).
    pub servers: BTreeMap<String, Url>,
    /// Secret per server name: `as_token:<token>` of a registration with a non-exclusive
    /// user namespace covering that server's users.
    pub secrets: BTreeMap<String, String>,
}

impl DoublePuppetConfig {
    /// The appservice token for users of `server`, if one is configured.
    pub fn as_token(&self, server: &str) -> Option<&str> {
        self.secrets
            .get(server)
            .and_then(|s| s.trim().strip_prefix(AS_TOKEN_PREFIX))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }
}

impl fmt::Debug for DoublePuppetConfig {
    // Hand-written so the tokens never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DoublePuppetConfig")
            .field("servers", &self.servers)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `bridge.encryption:` — end-to-bridge encryption. The bot has a device of its own (created
/// through the appservice, MSC4190) whose keys the bridge keeps in its database; it decrypts
/// what users send in encrypted rooms and encrypts what the bot and the ghosts send there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptionConfig {
    /// Join and work in encrypted rooms (management DMs, encrypted portals). Needs the
    /// homeserver to send to-device events and device-list changes to the appservice.
    pub allow: bool,
    /// Create new portal rooms encrypted.
    pub default: bool,
    /// In encrypted portals, refuse to bridge messages that arrive unencrypted.
    pub require: bool,
    /// Share room keys only with devices their owner has cross-signed. Off: every device of
    /// the room's members gets them, as most clients do.
    pub verified_only: bool,
    /// Seconds to wait for the keys of a message that cannot be decrypted yet before the
    /// sender is told in the room; the message is still bridged if the keys come later.
    pub undecryptable_notice_secs: u64,
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        Self { allow: true, default: false, require: false, verified_only: false, undecryptable_notice_secs: 30 }
    }
}

/// `bridge.backfill:` — history fetched for new portals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackfillConfig {
    /// How many past messages to bridge when a portal room is created; 0 disables backfill.
    pub max_initial_messages: u32,
}

impl Default for BackfillConfig {
    fn default() -> Self {
        Self {
            max_initial_messages: 50,
        }
    }
}

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `logging:` — what is logged and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// An `EnvFilter` directive (`info`, `bridge_core=debug,info`); `RUST_LOG` overrides it.
    pub level: String,
    /// Line format.
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Pretty,
        }
    }
}

/// `http://127.0.0.1:<port>`.
fn local_url(port: u16) -> Url {
    Url::parse(&format!("http://127.0.0.1:{port}"))
        .expect("a loopback URL with a u16 port always parses")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge() -> BridgeConfig {
        BridgeConfig {
            command_prefix: "!x".into(),
            permissions: BTreeMap::from([
                ("*".to_owned(), PermissionLevel::Relay),
                ("example.com".to_owned(), PermissionLevel::User),
                ("@admin:example.com".to_owned(), PermissionLevel::Admin),
                ("@bad:example.com".to_owned(), PermissionLevel::Block),
                ("other.org".to_owned(), PermissionLevel::Commands),
            ]),
            relay: RelayConfig::default(),
            encryption: EncryptionConfig::default(),
            backfill: BackfillConfig::default(),
            login_timeout_secs: DEFAULT_LOGIN_TIMEOUT_SECS,
            notify_disconnect_after_secs: DEFAULT_NOTIFY_DISCONNECT_AFTER_SECS,
            provisioning: ProvisioningConfig::default(),
            double_puppet: DoublePuppetConfig::default(),
        }
    }

    #[test]
    fn double_puppet_tokens_are_found_per_server_and_never_debug_printed() {
        let config = DoublePuppetConfig {
            servers: BTreeMap::new(),
            secrets: BTreeMap::from([
                ("example.com".to_owned(), "as_token:s3cret-token".to_owned()),
                ("padded.org".to_owned(), " as_token: tok2 ".to_owned()),
                ("empty.org".to_owned(), "as_token:".to_owned()),
                ("shared.org".to_owned(), "shared-secret-thing".to_owned()),
            ]),
        };
        let cases = [
            ("example.com", Some("s3cret-token")),
            ("padded.org", Some("tok2")),
            ("empty.org", None),
            ("shared.org", None),
            ("unknown.net", None),
        ];
        for (server, want) in cases {
            assert_eq!(config.as_token(server), want, "{server}");
        }
        let text = format!("{config:?}");
        assert!(!text.contains("s3cret") && text.contains("example.com"), "{text}");
    }

    #[test]
    fn provisioning_secret_is_active_only_when_real() {
        let cases = [
            (true, "generate", None),
            (true, "", None),
            (true, "disable", None),
            (false, "s3cret-s3cret-s3cret", None),
            (true, "s3cret-s3cret-s3cret", Some("s3cret-s3cret-s3cret")),
        ];
        for (enabled, secret, want) in cases {
            let config = ProvisioningConfig { enabled, shared_secret: secret.into() };
            assert_eq!(config.active_secret(), want, "{enabled} {secret}");
            assert!(!format!("{config:?}").contains("s3cret"));
        }
    }

    #[test]
    fn permission_for_picks_the_most_specific_entry() {
        let cases = [
            ("@admin:example.com", PermissionLevel::Admin),
            ("@bad:example.com", PermissionLevel::Block),
            ("@alice:example.com", PermissionLevel::User),
            ("@bob:other.org", PermissionLevel::Commands),
            ("@carol:elsewhere.net", PermissionLevel::Relay),
            ("@dave:example.com:8448", PermissionLevel::Relay),
            ("not-a-user-id", PermissionLevel::Relay),
        ];
        let config = bridge();
        for (user, want) in cases {
            assert_eq!(config.permission_for(user), want, "{user}");
        }
    }

    #[test]
    fn permission_for_without_wildcard_blocks() {
        let mut config = bridge();
        config.permissions.remove("*");
        assert_eq!(
            config.permission_for("@x:nowhere.net"),
            PermissionLevel::Block
        );
        assert_eq!(
            config.permission_for("@x:example.com"),
            PermissionLevel::User
        );
    }

    #[test]
    fn permission_levels_are_ordered() {
        use PermissionLevel::*;
        assert!(Block < Relay && Relay < Commands && Commands < User && User < Admin);
    }

    #[test]
    fn debug_redacts_secrets() {
        let info = crate::config::tests::test_info();
        let mut appservice = AppserviceConfig::example(&info);
        appservice.as_token = "secret-as".into();
        appservice.hs_token = "secret-hs".into();
        let text = format!("{appservice:?}");
        assert!(
            !text.contains("secret-as") && !text.contains("secret-hs"),
            "{text}"
        );
        let db = DatabaseConfig {
            uri: "postgres://u:hunter2@db/x".into(),
            max_connections: 1,
        };
        assert!(!format!("{db:?}").contains("hunter2"));
    }
}
