//! The boundary between the core and a remote network.
//!
//! A network crate implements [`Network`] (static facts and its config section, one per
//! binary), which builds an [`NetworkConnector`] (shared by all logins); the connector
//! creates one [`NetworkClient`] per user login and runs [`login::LoginProcess`]es.
//! Everything a network reports flows back into the core as [`RemoteEvent`]s.

pub mod client;
pub mod events;
pub mod ids;
pub mod login;
pub mod state;

use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

pub use client::{NetworkClient, OutgoingContent, OutgoingMessage, SentMessage};
pub use events::{EventSender, RemoteEvent};
pub use ids::{EmojiId, LoginId, PartId, RemoteChatId, RemoteMessageId, RemoteUserId};
pub use login::{LoginFlow, LoginProcess, LoginStep};
pub use state::LoginStore;

/// A stored login, as the core hands it to [`NetworkConnector::load_login`].
#[derive(Debug, Clone)]
pub struct StoredLogin {
    /// The login's ID (the remote account's ID).
    pub id: LoginId,
    /// The Matrix user who owns it.
    pub user: ruma::OwnedUserId,
    /// A human name for the account.
    pub remote_name: String,
    /// The session data the network returned when the login completed (or updated since).
    pub session: serde_json::Value,
}

/// Static facts about a network that the core needs before any config is read:
/// names, defaults for the generated config, and the environment variable prefix.
#[derive(Debug, Clone, Copy)]
pub struct NetworkInfo {
    /// Machine name, lowercase (`discord`); used in IDs, the `m.bridge` protocol id, metrics.
    pub id: &'static str,
    /// Human name (`Discord`), shown to users.
    pub display_name: &'static str,
    /// Default localpart of the bridge bot (`discordbot`).
    pub bot_localpart: &'static str,
    /// Default ghost username template; `{id}` is replaced by the remote user's ID (`discord_{id}`).
    pub ghost_template: &'static str,
    /// Default command prefix outside the management room (`!dc`).
    pub command_prefix: &'static str,
    /// Default port the appservice listens on.
    pub default_port: u16,
    /// Prefix of environment variables that override config keys (`DISCORD_BRIDGE`).
    pub env_prefix: &'static str,
    /// Homepage or source of the network's bridge, shown by `version`.
    pub url: &'static str,
}

/// The network's own config section (`network:` in the YAML file).
///
/// `Default` gives the values written by `generate-config`; unknown keys must be
/// rejected (`#[serde(deny_unknown_fields)]`) so typos are reported.
pub trait NetworkConfig: Serialize + DeserializeOwned + Default + Clone + Send + Sync + 'static {}

impl<T> NetworkConfig for T where T: Serialize + DeserializeOwned + Default + Clone + Send + Sync + 'static {}

/// One network as a bridge binary sees it: its facts, its config section and how to
/// build its connector. Implemented by a unit struct in each network crate.
pub trait Network: Send + Sync + 'static {
    /// The `network:` section of the config file.
    type Config: NetworkConfig;

    /// Static facts about the network.
    fn info() -> NetworkInfo;

    /// Builds the connector from the network's config section. Called once at startup,
    /// before the appservice starts; must not connect to anything yet.
    fn connector(config: Self::Config) -> anyhow::Result<Arc<dyn NetworkConnector>>;

    /// The body of the `network:` section that `generate-config` writes, with a `#`
    /// comment explaining each key (not indented; the core indents it). It must parse to
    /// exactly `Self::Config::default()`: check it with
    /// [`crate::config::check_network_section`] in a unit test. `None` writes the bare
    /// defaults without comments.
    fn example_network_section() -> Option<&'static str> {
        None
    }
}

/// The network's side of a running bridge, shared by every login.
#[async_trait::async_trait]
pub trait NetworkConnector: Send + Sync + 'static {
    /// The login flows a user can pick from (`login <flow>`); the first is the default.
    fn login_flows(&self) -> Vec<LoginFlow>;

    /// Starts the login process for `flow` on behalf of a Matrix user. The core drives
    /// the returned process step by step; it must not block on the network here.
    async fn create_login(&self, flow: &str) -> Result<Box<dyn LoginProcess>, NetworkError>;

    /// Builds the client of a stored login (at startup, or when a login completes). Must
    /// not connect yet; the core calls [`NetworkClient::connect`]. Events go to `events`.
    async fn load_login(
        &self,
        login: StoredLogin,
        events: EventSender,
    ) -> Result<Arc<dyn NetworkClient>, NetworkError>;

    /// The network's own bot commands (`guilds`, …), listed by `help` after the core's.
    fn commands(&self) -> Vec<NetworkCommand> {
        Vec::new()
    }

    /// Runs one of [`NetworkConnector::commands`] for a user with permission level `user`
    /// or more. `login` is the sender's login ID and client (their first, if several),
    /// `None` if they have none (only for commands with `needs_login: false`). The reply
    /// is shown to the user; errors are shown too.
    async fn run_command(
        &self,
        command: &str,
        args: &[String],
        login: Option<(LoginId, Arc<dyn NetworkClient>)>,
    ) -> Result<CommandResult, NetworkError> {
        let _ = (args, login);
        Err(NetworkError::Unsupported(format!("the command {command}")))
    }
}

/// A bot command a network adds (declared as data, like the core's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkCommand {
    /// The name typed by the user.
    pub name: &'static str,
    /// Other names that run it.
    pub aliases: &'static [&'static str],
    /// Argument synopsis for `help`.
    pub args: &'static str,
    /// One line for `help`.
    pub help: &'static str,
    /// Whether the user must be logged in to run it.
    pub needs_login: bool,
}

/// What a network command asks the core to do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommandResult {
    /// Text shown to the user (may use `` `code` ``).
    pub reply: String,
    /// Chats whose portals the core should create now (bridging a server's channels, say),
    /// for the sender's login.
    pub create_portals: Vec<events::ChatRef>,
}

/// Errors at the boundary between the core and a network, by cause.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The network cannot do this at all; the user is told so.
    #[error("{0} is not supported on this network")]
    Unsupported(String),
    /// The operation needs a login that is not there or no longer valid.
    #[error("not logged in")]
    NotLoggedIn,
    /// The remote object does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The network asked us to slow down.
    #[error("rate limited, retry after {0:?}")]
    RateLimited(std::time::Duration),
    /// Input from the user was rejected; the message says why and is shown to them.
    #[error("{0}")]
    BadInput(String),
    /// Any other failure reported by the network or its client library. The message is
    /// shown to users as is: it says what failed in the network's words, never the
    /// library's.
    #[error("{0}")]
    Remote(String),
}
