//! `bridge-test`: a bridge binary over the in-process test network, used by the
//! end-to-end suite to exercise the core (CLI, appservice, commands) against Synapse.

use std::sync::Arc;

use bridge_core::network::{
    EventSender, LoginFlow, LoginProcess, Network, NetworkClient, NetworkConnector, NetworkError,
    NetworkInfo, StoredLogin,
};
use serde::{Deserialize, Serialize};

/// The test network's config section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestConfig {
    /// A value the tests can set to check that the `network` section is read.
    #[serde(default)]
    label: String,
}

struct TestNetwork;

struct TestConnector;

#[async_trait::async_trait]
impl NetworkConnector for TestConnector {
    fn login_flows(&self) -> Vec<LoginFlow> {
        Vec::new()
    }

    async fn create_login(&self, flow: &str) -> Result<Box<dyn LoginProcess>, NetworkError> {
        Err(NetworkError::Unsupported(format!("login flow {flow}")))
    }

    async fn load_login(
        &self,
        _login: StoredLogin,
        _events: EventSender,
    ) -> Result<Arc<dyn NetworkClient>, NetworkError> {
        Err(NetworkError::Unsupported("logins".to_owned()))
    }
}

impl Network for TestNetwork {
    type Config = TestConfig;

    fn info() -> NetworkInfo {
        NetworkInfo {
            id: "test",
            display_name: "Test",
            bot_localpart: "testbot",
            ghost_template: "test_{id}",
            command_prefix: "!test",
            default_port: 29399,
            env_prefix: "TEST_BRIDGE",
            url: "https://example.invalid/bridges",
        }
    }

    fn connector(_config: TestConfig) -> anyhow::Result<Arc<dyn NetworkConnector>> {
        Ok(Arc::new(TestConnector))
    }
}

fn main() -> std::process::ExitCode {
    bridge_core::cli::main::<TestNetwork>()
}
