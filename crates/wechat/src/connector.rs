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
}

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
        Ok(WechatClient::new(puppet, LoginId::from(session.self_id), events, self.config.clone()))
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
