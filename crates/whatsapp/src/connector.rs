//! The WhatsApp bridge as the core sees it: [`WhatsappNetwork`] (facts and config) and
//! [`WhatsappConnector`] (the `qr` and `phone` login flows, loading stored logins).

use std::sync::Arc;

use bridge_core::network::login::LoginFlow;
use bridge_core::network::{
    EventSender, LoginId, LoginProcess, Network, NetworkClient, NetworkConnector, NetworkError,
    NetworkInfo, StoredLogin,
};

use crate::client::WhatsappClient;
use crate::config::WhatsappConfig;
use crate::device_store::DeviceStore;
use crate::login::{Flow, PairLogin, Session};

/// The WhatsApp network, for `bridge_core::cli::main`.
pub struct WhatsappNetwork;

impl Network for WhatsappNetwork {
    type Config = WhatsappConfig;

    fn info() -> NetworkInfo {
        NetworkInfo {
            id: "whatsapp",
            display_name: "WhatsApp",
            bot_localpart: "whatsappbot",
            ghost_template: "whatsapp_{id}",
            command_prefix: "!wa",
            default_port: 29317,
            env_prefix: "WHATSAPP_BRIDGE",
            url: "https://github.com/oxidezap/whatsapp-rust",
        }
    }

    fn connector(config: WhatsappConfig) -> anyhow::Result<Arc<dyn NetworkConnector>> {
        config.validate()?;
        Ok(Arc::new(WhatsappConnector::new(config)))
    }

    fn example_network_section() -> Option<&'static str> {
        Some(EXAMPLE_NETWORK_SECTION)
    }
}

/// The commented `network:` section `generate-config` writes; parses to
/// `WhatsappConfig::default()` (checked by a unit test).
const EXAMPLE_NETWORK_SECTION: &str = r#"# The WhatsApp Web version the bridge announces when it connects, as 2.3000.x. WhatsApp
# refuses versions that are too old: keep it current, or set `fetch` to read the current
# version from web.whatsapp.com at each connect.
app_version: 2.3000.1026131876
# The name of the bridge in the phone's list of linked devices.
device_name: Matrix bridge
# Warn users in their management room when their phone has not been online for this many
# days: WhatsApp unlinks companion devices after about 14 days without the phone. 0: never.
# (Read but not acted on yet: the warning comes with the bridge's next stage.)
phone_offline_warning_days: 12
# What to do when the phone unlinks the bridge (or WhatsApp logs the device out): `keep`
# the login, marked as logged out until the user links again, or `delete` the device's keys
# at once. Either way the user is told, and the bridge never relinks by itself.
on_phone_logout: keep
# Test only, refused by release builds: the address of a WhatsApp simulator.
websocket_url: ""
"#;

/// The WhatsApp connector: the `qr` and `phone` flows; one [`WhatsappClient`] per login.
pub struct WhatsappConnector {
    config: WhatsappConfig,
}

impl WhatsappConnector {
    /// A connector with the bridge's `network:` config.
    pub fn new(config: WhatsappConfig) -> Self {
        Self { config }
    }

    /// Builds a login's client without going through `Arc<dyn NetworkClient>` (for tests):
    /// a device linked by the login flow moves from the session into the login's store.
    pub async fn client(
        &self,
        login: &StoredLogin,
        events: EventSender,
    ) -> Result<WhatsappClient, NetworkError> {
        let session: Session = serde_json::from_value(login.session.clone()).map_err(|e| {
            NetworkError::Remote(format!("the stored WhatsApp session is unreadable: {e}"))
        })?;
        if session.phone != login.id.as_str() {
            return Err(NetworkError::Remote(
                "the stored WhatsApp session belongs to another login".to_owned(),
            ));
        }
        let store = DeviceStore::new(events.store().clone());
        let linked_at: Option<i64> = events.store().get("linked_at").await?;
        if linked_at != Some(session.linked_at) && !session.device.is_empty() {
            // A new link of this account: its device replaces the old one.
            store.clear().await?;
            store.import(&session.device).await?;
            events.store().set("linked_at", &session.linked_at).await?;
        }
        Ok(WhatsappClient::new(
            LoginId::from(session.phone),
            store,
            events,
            self.config.clone(),
        ))
    }
}

#[async_trait::async_trait]
impl NetworkConnector for WhatsappConnector {
    fn login_flows(&self) -> Vec<LoginFlow> {
        let flow = |id: &str, name: &str, description: &str| LoginFlow {
            id: id.to_owned(),
            name: name.to_owned(),
            description: description.to_owned(),
        };
        vec![
            flow(
                "qr",
                "QR code",
                "Scan a QR code with WhatsApp on your phone.",
            ),
            flow(
                "phone",
                "Pairing code",
                "Enter a code in WhatsApp on your phone, for your phone number.",
            ),
        ]
    }

    async fn create_login(&self, flow: &str) -> Result<Box<dyn LoginProcess>, NetworkError> {
        match flow {
            "qr" => Ok(Box::new(PairLogin::new(self.config.clone(), Flow::Qr))),
            "phone" => Ok(Box::new(PairLogin::new(self.config.clone(), Flow::Phone))),
            other => Err(NetworkError::NotFound(format!("login flow {other}"))),
        }
    }

    async fn load_login(
        &self,
        login: StoredLogin,
        events: EventSender,
    ) -> Result<Arc<dyn NetworkClient>, NetworkError> {
        Ok(Arc::new(self.client(&login, events).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_network_section_is_the_default_config_with_comments() {
        bridge_core::config::check_network_section::<WhatsappNetwork>()
            .expect("a faithful, commented section");
    }
}
