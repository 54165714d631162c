//! [`TelegramNetwork`] (the bridge's static facts and config section) and
//! [`TelegramConnector`]: the login flows and building a [`TelegramClient`] per login.

use std::sync::Arc;

use bridge_core::network::login::LoginFlow;
use bridge_core::network::{
    EventSender, LoginProcess, Network, NetworkClient, NetworkConnector, NetworkError, NetworkInfo,
    StoredLogin,
};

use crate::client::TelegramClient;
use crate::config::{TelegramConfig, TestDc};
use crate::login::{BotLogin, PhoneLogin, QrLogin, Setup};
use crate::session::StoredSession;

/// The Telegram network, as the `bridge-telegram` binary sees it.
pub struct TelegramNetwork;

impl Network for TelegramNetwork {
    type Config = TelegramConfig;

    fn info() -> NetworkInfo {
        NetworkInfo {
            id: "telegram",
            display_name: "Telegram",
            bot_localpart: "telegrambot",
            ghost_template: "telegram_{id}",
            command_prefix: "!tg",
            default_port: 29317,
            env_prefix: "TELEGRAM_BRIDGE",
            url: "https://core.telegram.org/api",
        }
    }

    fn connector(config: TelegramConfig) -> anyhow::Result<Arc<dyn NetworkConnector>> {
        Ok(Arc::new(TelegramConnector::new(config)?))
    }

    fn example_network_section() -> Option<&'static str> {
        Some(EXAMPLE_NETWORK_SECTION)
    }
}

/// The commented `network:` section of the generated config (the defaults of
/// [`TelegramConfig`]).
const EXAMPLE_NETWORK_SECTION: &str = concat!(
    r#"# The api_id of your Telegram application, needed to log in. Get it at https://my.telegram.org:
# log in with your phone number, open "API development tools" and create an application.
api_id: 0
# The api_hash of the same application.
api_hash: ""
# How the bridge appears in Telegram's list of active sessions (Settings → Devices): the
# device model,
device_model: "Matrix bridge"
# the system version,
system_version: "Linux"
# and the app version.
app_version: ""#,
    env!("CARGO_PKG_VERSION"),
    r#""
# The longest flood wait (in seconds) Telegram may impose on a call before the bridge stops
# waiting by itself and reports the call as rate limited.
flood_wait_ceiling_seconds: 60
# How often (in seconds) the bridge checks that its connection to Telegram is alive and that
# Telegram has not ended the session (then you are told in your management room).
keepalive_seconds: 60
# How many members of a group are added to its room when the room is created (-1 for all).
max_initial_member_sync: 100
# Whether the members of broadcast channels are synced too (they can be very many).
sync_channel_members: false
# For tests only: the address of a Telegram simulator. Leave empty; release builds refuse
# any other value.
test_dc_address: ""
# For tests only: the simulator's preset authorization key (hex). Leave empty.
test_auth_key: ""
"#
);

/// The Telegram connector: offers the `phone`, `qr` and `bot` flows and builds one
/// [`TelegramClient`] per login.
pub struct TelegramConnector {
    config: TelegramConfig,
    test_dc: Option<TestDc>,
}

impl TelegramConnector {
    /// Checks the config (the simulator switch is refused in release builds) and builds
    /// the connector. Connects to nothing.
    pub fn new(config: TelegramConfig) -> anyhow::Result<Self> {
        let test_dc = config.validate()?;
        if test_dc.is_some() {
            tracing::warn!("network.test_dc_address is set: new logins talk to a Telegram simulator, not Telegram");
        }
        if config.credentials().is_err() {
            tracing::warn!("network.api_id / network.api_hash are not set: nobody can log in until they are (see https://my.telegram.org)");
        }
        Ok(Self { config, test_dc })
    }
}

#[async_trait::async_trait]
impl NetworkConnector for TelegramConnector {
    fn login_flows(&self) -> Vec<LoginFlow> {
        vec![
            LoginFlow {
                id: "phone".to_owned(),
                name: "Phone number".to_owned(),
                description: "Log in with your phone number, the code Telegram sends you and your cloud password if you set one.".to_owned(),
            },
            LoginFlow {
                id: "qr".to_owned(),
                name: "QR code".to_owned(),
                description: "Scan a QR code with Telegram on your phone (Settings → Devices → Link Desktop Device), then your cloud password if you set one.".to_owned(),
            },
            LoginFlow {
                id: "bot".to_owned(),
                name: "Bot token".to_owned(),
                description: "Log in as a Telegram bot with its token from @BotFather (for relaying).".to_owned(),
            },
        ]
    }

    async fn create_login(&self, flow: &str) -> Result<Box<dyn LoginProcess>, NetworkError> {
        let credentials = self
            .config
            .credentials()
            .map_err(|e| NetworkError::BadInput(e.to_string()))?;
        let setup = Setup {
            config: self.config.clone(),
            credentials,
            test_dc: self.test_dc.clone(),
        };
        match flow {
            "phone" => Ok(Box::new(PhoneLogin::new(setup))),
            "qr" => Ok(Box::new(QrLogin::new(setup))),
            "bot" => Ok(Box::new(BotLogin::new(setup))),
            other => Err(NetworkError::NotFound(format!("login flow {other}"))),
        }
    }

    async fn load_login(
        &self,
        login: StoredLogin,
        events: EventSender,
    ) -> Result<Arc<dyn NetworkClient>, NetworkError> {
        let session = StoredSession::load(events.store().clone(), &login.session)
            .await
            .map_err(|e| NetworkError::Remote(e.to_string()))?;
        let api_id = self.config.credentials().map(|c| c.id).unwrap_or_default();
        Ok(Arc::new(TelegramClient::new(
            self.config.clone(),
            api_id,
            login.id,
            Arc::new(session),
            events,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_network_section_is_the_default_config() {
        if let Err(problem) = bridge_core::config::check_network_section::<TelegramNetwork>() {
            panic!("{problem}");
        }
    }
}
