//! [`DiscordNetwork`] (the bridge's static facts and config section) and
//! [`DiscordConnector`]: the login flows and building a [`DiscordClient`] per login.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bridge_core::network::login::LoginFlow;
use bridge_core::network::{
    CommandResult, EventSender, LoginId, LoginProcess, Network, NetworkClient, NetworkCommand, NetworkConnector,
    NetworkError, NetworkInfo, StoredLogin,
};
use serenity::http::{Http, HttpBuilder};

use crate::client::{lock, DiscordClient, OwnAccounts, Shared};
use crate::config::DiscordConfig;
use crate::login::TokenLogin;

/// The timeout of one REST call to Discord.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// The Discord network, as the `bridge-discord` binary sees it.
pub struct DiscordNetwork;

impl Network for DiscordNetwork {
    type Config = DiscordConfig;

    fn info() -> NetworkInfo {
        NetworkInfo {
            id: "discord",
            display_name: "Discord",
            bot_localpart: "discordbot",
            ghost_template: "discord_{id}",
            command_prefix: "!dc",
            default_port: 29334,
            env_prefix: "DISCORD_BRIDGE",
            url: "https://discord.com/developers/docs",
        }
    }

    fn connector(config: DiscordConfig) -> anyhow::Result<Arc<dyn NetworkConnector>> {
        Ok(Arc::new(DiscordConnector::new(config)?))
    }

    fn example_network_section() -> Option<&'static str> {
        Some(EXAMPLE_NETWORK_SECTION)
    }
}

/// The commented `network:` section of the generated config (the defaults of
/// [`DiscordConfig`]).
const EXAMPLE_NETWORK_SECTION: &str = r#"# Ask Discord for the privileged MESSAGE_CONTENT intent. Enable "Message Content Intent" for
# the bot in the developer portal (Bot settings) too; without it, messages in servers arrive
# with empty text.
message_content_intent: true
# Ask for the privileged GUILD_MEMBERS intent ("Server Members Intent" in the developer
# portal), for server nicknames and member lists.
guild_members_intent: true
# Send the messages of relayed Matrix users through a webhook per channel, showing their
# display name and avatar. When off, or where the bot may not manage webhooks, the bot sends
# them as "Name: text".
use_webhooks: true
# The name of the webhooks the bridge creates: 1 to 80 characters, without "discord" or
# "clyde" (Discord refuses those).
webhook_name: "Matrix Bridge"
# How many failed reconnects in a row before a login is reported as disconnected for good;
# 0 keeps retrying forever, with backoff.
max_reconnect_attempts: 0
# How many seconds the gateway may stay disconnected (the library reconnects by itself,
# at most every 5 seconds) before the user is told the connection was lost (at least 1).
disconnect_grace_seconds: 5
# For tests only: the base URL of a Discord simulator. Leave empty; release builds refuse
# any other value.
api_base_url: ""
"#;

/// Where serenity connects: real Discord, or a simulator in tests.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The simulator's base URL (`http://127.0.0.1:PORT`), `None` for Discord itself.
    pub simulator: Option<url::Url>,
}

impl Endpoint {
    /// A serenity HTTP client for `token`. With a simulator, requests go to it and the rate
    /// limiter is off (serenity ignores the proxy otherwise); with Discord it stays on.
    pub fn http(&self, token: &str) -> Http {
        match &self.simulator {
            Some(url) => HttpBuilder::new(token)
                .proxy(url.as_str().trim_end_matches('/'))
                .ratelimiter_disabled(true)
                .build(),
            None => HttpBuilder::new(token).build(),
        }
    }
}

/// The Discord connector: offers the `token` flow and builds one [`DiscordClient`] per login.
pub struct DiscordConnector {
    config: DiscordConfig,
    endpoint: Endpoint,
    own: Arc<OwnAccounts>,
    /// The clients built by [`NetworkConnector::load_login`], for the `guilds` commands
    /// (the core hands commands an `Arc<dyn NetworkClient>`, which cannot be downcast).
    clients: Mutex<HashMap<LoginId, Weak<Shared>>>,
}

impl DiscordConnector {
    /// Checks the config (the simulator URL is refused in release builds) and builds the
    /// connector. Connects to nothing.
    pub fn new(config: DiscordConfig) -> anyhow::Result<Self> {
        let simulator = config.validate()?;
        if simulator.is_some() {
            tracing::warn!("network.api_base_url is set: talking to a Discord simulator, not Discord");
        }
        Ok(Self { config, endpoint: Endpoint { simulator }, own: Arc::default(), clients: Mutex::default() })
    }

    /// Where this connector's clients connect.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

#[async_trait::async_trait]
impl NetworkConnector for DiscordConnector {
    fn login_flows(&self) -> Vec<LoginFlow> {
        vec![LoginFlow {
            id: "token".to_owned(),
            name: "Bot token".to_owned(),
            description: "Log in with the token of a Discord bot from the developer portal.".to_owned(),
        }]
    }

    async fn create_login(&self, flow: &str) -> Result<Box<dyn LoginProcess>, NetworkError> {
        match flow {
            "token" => Ok(Box::new(TokenLogin::new(self.endpoint.clone()))),
            other => Err(NetworkError::NotFound(format!("login flow {other}"))),
        }
    }

    async fn load_login(&self, login: StoredLogin, events: EventSender) -> Result<Arc<dyn NetworkClient>, NetworkError> {
        let token = login
            .session
            .get("token")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| NetworkError::Remote("the stored Discord session has no token".to_owned()))?;
        let client = DiscordClient::new(
            self.config.clone(),
            self.endpoint.clone(),
            self.own.clone(),
            login.id.clone(),
            token.to_owned(),
            events,
        );
        let mut clients = lock(&self.clients);
        clients.retain(|_, shared| shared.strong_count() > 0);
        clients.insert(login.id, Arc::downgrade(&client.shared));
        drop(clients);
        Ok(Arc::new(client))
    }

    fn commands(&self) -> Vec<NetworkCommand> {
        crate::commands::commands()
    }

    async fn run_command(
        &self,
        command: &str,
        args: &[String],
        login: Option<(LoginId, Arc<dyn NetworkClient>)>,
    ) -> Result<CommandResult, NetworkError> {
        let (login, _client) = login.ok_or(NetworkError::NotLoggedIn)?;
        let shared = lock(&self.clients).get(&login).and_then(Weak::upgrade).ok_or(NetworkError::NotLoggedIn)?;
        crate::commands::run(&shared, command, args).await
    }
}

/// Maps a serenity error to the core's error kinds.
pub fn network_error(error: &serenity::Error) -> NetworkError {
    use serenity::http::HttpError;
    if let serenity::Error::Http(HttpError::UnsuccessfulRequest(response)) = error {
        let message = response.error.message.clone();
        return match response.status_code.as_u16() {
            401 => NetworkError::NotLoggedIn,
            404 => NetworkError::NotFound(message),
            429 => NetworkError::RateLimited(Duration::from_secs(1)),
            400 => NetworkError::BadInput(format!("Discord refused the request: {message}")),
            _ => NetworkError::Remote(format!("Discord answered {}: {message}", response.status_code)),
        };
    }
    NetworkError::Remote(error.to_string())
}

/// Runs a REST call with [`CALL_TIMEOUT`].
pub async fn timed<T>(call: impl std::future::Future<Output = serenity::Result<T>>) -> Result<T, NetworkError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(network_error(&error)),
        Err(_) => Err(NetworkError::Remote("Discord did not answer in time".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_network_section_is_the_default_config() {
        assert!(DiscordNetwork::example_network_section().is_some());
        if let Err(problem) = bridge_core::config::check_network_section::<DiscordNetwork>() {
            panic!("{problem}");
        }
    }
}
