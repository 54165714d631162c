//! The WeChat bridge as the core sees it: [`WechatNetwork`] (facts and config) and
//! [`WechatConnector`] (the `qr` login flow, loading stored logins).

use std::sync::Arc;

use bridge_core::network::login::LoginFlow;
use bridge_core::network::{
    EventSender, LoginId, LoginProcess, Network, NetworkClient, NetworkConnector, NetworkError, NetworkInfo, StoredLogin,
};

use crate::client::WechatClient;
use crate::config::WechatConfig;
use crate::login::{QrLogin, Session};
use crate::puppet::Puppet;

/// The WeChat network, for `bridge_core::cli::main`.
pub struct WechatNetwork;

impl Network for WechatNetwork {
    type Config = WechatConfig;

    fn info() -> NetworkInfo {
        NetworkInfo {
            id: "wechat",
            display_name: "WeChat",
            bot_localpart: "wechatbot",
            ghost_template: "wechat_{id}",
            command_prefix: "!wc",
            default_port: 29318,
            env_prefix: "WECHAT_BRIDGE",
            url: "https://wechaty.js.org/docs/puppet-services/",
        }
    }

    fn connector(config: WechatConfig) -> anyhow::Result<Arc<dyn NetworkConnector>> {
        Ok(Arc::new(WechatConnector::new(config)))
    }

    fn example_network_section() -> Option<&'static str> {
        Some(EXAMPLE_NETWORK_SECTION)
    }
}

/// The commented `network:` section `generate-config` writes; parses to
/// `WechatConfig::default()` (checked by a unit test).
const EXAMPLE_NETWORK_SECTION: &str = r#"# The Wechaty puppet service that carries the WeChat accounts, as http://host:port
# (plain HTTP/2) or https://host:port (TLS). Any Wechaty puppet (padlocal, wechat4u, ...)
# behind a puppet service works. The Wechaty discovery service is not used: give the
# address itself.
endpoint: http://127.0.0.1:8788
# The puppet service's token (sent as `authorization: Wechaty <token>`). Can also come
# from the environment (WECHAT_BRIDGE__NETWORK__TOKEN, or ..._FILE for a file).
token: ""
# TLS options, used with https:// endpoints only.
tls:
  # The name checked against the service's certificate (Wechaty services often use the
  # token's prefix); null: the endpoint's host.
  server_name: null
  # A PEM file with the CA that signed the service's certificate; null: the usual web
  # certificate authorities.
  ca_file: null
# Whether a user may give their own puppet service (endpoint and token) as the first
# step of `login`, instead of using the one above. Their token is deleted from the room.
allow_user_endpoint: false
# Pacing of messages sent from Matrix, per WeChat account: WeChat restricts or bans
# accounts that send like bots.
pacing:
  # At least this many milliseconds between two messages of one account.
  min_interval_ms: 1000
  # Plus a random delay of up to this many milliseconds.
  jitter_ms: 1000
  # Once an account has sent this many messages in one day (UTC), its owner is warned in
  # their management room (0: never).
  daily_warning: 300
# Seconds between two pings of the puppet service while its event stream is quiet.
heartbeat_interval_secs: 30
# Seconds without any sign of life after which the event stream is reopened.
heartbeat_timeout_secs: 90
# Timeout of one call to the puppet service, in seconds (file transfers get four times
# as long).
call_timeout_secs: 15
"#;

/// The WeChat connector: one `qr` login flow; one [`WechatClient`] per login.
pub struct WechatConnector {
    config: WechatConfig,
}

impl WechatConnector {
    /// A connector with the bridge's `network:` config.
    pub fn new(config: WechatConfig) -> Self {
        Self { config }
    }

    /// Builds a login's client without going through `Arc<dyn NetworkClient>` (for tests).
    pub fn client(&self, login: &StoredLogin, events: EventSender) -> Result<WechatClient, NetworkError> {
        let session: Session = serde_json::from_value(login.session.clone())
            .map_err(|e| NetworkError::Remote(format!("the stored WeChat session is unreadable: {e}")))?;
        if session.self_id != login.id.as_str() {
            return Err(NetworkError::Remote("the stored WeChat session belongs to another login".to_owned()));
        }
        let puppet = Puppet::new(&session.target(&self.config), self.config.call_timeout())?;
        let own = session.endpoint.is_some();
        Ok(WechatClient::new(puppet, LoginId::from(session.self_id), events, self.config.clone(), own))
    }
}

#[async_trait::async_trait]
impl NetworkConnector for WechatConnector {
    fn login_flows(&self) -> Vec<LoginFlow> {
        vec![LoginFlow {
            id: "qr".to_owned(),
            name: "QR code".to_owned(),
            description: "Scan a QR code with WeChat on your phone.".to_owned(),
        }]
    }

    async fn create_login(&self, flow: &str) -> Result<Box<dyn LoginProcess>, NetworkError> {
        match flow {
            "qr" => Ok(Box::new(QrLogin::new(self.config.clone()))),
            other => Err(NetworkError::NotFound(format!("login flow {other}"))),
        }
    }

    async fn load_login(&self, login: StoredLogin, events: EventSender) -> Result<Arc<dyn NetworkClient>, NetworkError> {
        Ok(Arc::new(self.client(&login, events)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_network_section_is_the_default_config_with_comments() {
        bridge_core::config::check_network_section::<WechatNetwork>().expect("a faithful, commented section");
    }
}
