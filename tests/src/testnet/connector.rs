//! The test network as a bridge binary sees it: [`TestNetwork`] (facts and config),
//! [`TestConnector`] (login flows, loading logins) and the small HTTP helper both client
//! halves share.

use std::sync::Arc;
use std::time::Duration;

use bridge_core::network::login::LoginFlow;
use bridge_core::network::events::ChatRef;
use bridge_core::network::{
    CommandResult, EventSender, LoginId, LoginProcess, Network, NetworkClient, NetworkCommand, NetworkConnector,
    NetworkError, NetworkInfo, RemoteChatId, StoredLogin,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::client::TestClient;
use super::login::TestLogin;
use super::wire::WireError;

/// The `network:` section of the `bridge-test` config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestConfig {
    /// The test network server's base URL (`http://127.0.0.1:PORT`, from [`super::TestNet::url`]).
    /// Empty by default; logins fail with "network.server must be set" until it is set.
    #[serde(default)]
    pub server: String,
}

/// The test network's [`Network`] implementation, used by the `bridge-test` binary.
pub struct TestNetwork;

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

    fn connector(config: TestConfig) -> anyhow::Result<Arc<dyn NetworkConnector>> {
        Ok(Arc::new(TestConnector::new(&config.server)?))
    }
}

/// The test network's connector: offers the `password`, `qr` and `token` flows and builds a
/// [`TestClient`] per login.
pub struct TestConnector {
    http: Option<Http>,
}

impl TestConnector {
    /// A connector talking to the server at `server` (`http://127.0.0.1:PORT`). An empty
    /// `server` builds a connector whose logins fail with a clear error, so a bridge can
    /// still start without a test network (the core's own tests need none).
    pub fn new(server: &str) -> anyhow::Result<Self> {
        if server.is_empty() {
            return Ok(Self { http: None });
        }
        Ok(Self { http: Some(Http::new(server)?) })
    }

    fn http(&self) -> Result<&Http, NetworkError> {
        self.http.as_ref().ok_or_else(|| NetworkError::Remote("network.server must be set in the config".to_owned()))
    }
}

#[async_trait::async_trait]
impl NetworkConnector for TestConnector {
    fn login_flows(&self) -> Vec<LoginFlow> {
        let flow = |id: &str, name: &str, description: &str| LoginFlow {
            id: id.to_owned(),
            name: name.to_owned(),
            description: description.to_owned(),
        };
        vec![
            flow("password", "Phone and password", "Log in with your phone number, a code and your password."),
            flow("qr", "QR code", "Scan a QR code with the app on your phone."),
            flow("token", "Bot token", "Log in as a bot with its token."),
        ]
    }

    async fn create_login(&self, flow: &str) -> Result<Box<dyn LoginProcess>, NetworkError> {
        if !self.login_flows().iter().any(|f| f.id == flow) {
            return Err(NetworkError::NotFound(format!("login flow {flow}")));
        }
        Ok(Box::new(TestLogin::new(self.http()?.clone(), flow)))
    }

    async fn load_login(&self, login: StoredLogin, events: EventSender) -> Result<Arc<dyn NetworkClient>, NetworkError> {
        let token = login
            .session
            .get("token")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| NetworkError::Remote("the stored session has no token".to_owned()))?;
        Ok(Arc::new(TestClient::new(self.http()?.clone(), login.id, token.to_owned(), events)))
    }

    fn commands(&self) -> Vec<NetworkCommand> {
        vec![NetworkCommand {
            name: "open",
            aliases: &["open-chat"],
            args: "<chat id>",
            help: "Open a portal for a chat of the test network.",
            needs_login: true,
        }]
    }

    async fn run_command(
        &self,
        command: &str,
        args: &[String],
        login: Option<(LoginId, Arc<dyn NetworkClient>)>,
    ) -> Result<CommandResult, NetworkError> {
        let (Some((login, client)), "open") = (login, command) else {
            return Err(NetworkError::Unsupported(format!("the command {command}")));
        };
        let [chat] = args else {
            return Err(NetworkError::BadInput("usage: open <chat id>".to_owned()));
        };
        let shared = ChatRef { id: RemoteChatId(chat.clone()), receiver: None };
        let info = client.chat_info(&shared).await?;
        let chat_ref = if info.is_direct { ChatRef { receiver: Some(login), ..shared } } else { shared };
        Ok(CommandResult {
            reply: format!("Opening {}.", info.name.unwrap_or_else(|| chat.clone())),
            create_portals: vec![chat_ref],
        })
    }
}

/// A failed call to the test network server.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The server answered with an error status.
    #[error("test network answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The `error` of the body.
        message: String,
    },
    /// The server could not be reached, or the answer was not what we expected.
    #[error("test network unreachable: {0}")]
    Transport(String),
}

impl From<CallError> for NetworkError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Status { status: 400, message } => Self::BadInput(message),
            CallError::Status { status: 401, .. } => Self::NotLoggedIn,
            CallError::Status { status: 404, message } => Self::NotFound(message),
            other => Self::Remote(other.to_string()),
        }
    }
}

/// The JSON-over-HTTP client of the test network server. Every call has a timeout.
#[derive(Clone, Debug)]
pub(crate) struct Http {
    base: url::Url,
    client: reqwest::Client,
}

/// The timeout of ordinary calls; long polls add their hold time.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl Http {
    pub(crate) fn new(server: &str) -> anyhow::Result<Self> {
        let base = url::Url::parse(server).map_err(|e| anyhow::anyhow!("network.server {server:?} is not a URL: {e}"))?;
        anyhow::ensure!(!base.cannot_be_a_base(), "network.server {server:?} is not an http URL");
        let client = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build()?;
        Ok(Self { base, client })
    }

    /// The URL of the path made of `segments` (each percent-encoded).
    pub(crate) fn url(&self, segments: &[&str]) -> url::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// A request builder for `method` on the path made of `segments`.
    pub(crate) fn request(&self, method: reqwest::Method, segments: &[&str]) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(segments))
    }

    /// Sends a request and returns the raw response, mapping error statuses to [`CallError`].
    pub(crate) async fn send(&self, request: reqwest::RequestBuilder, timeout: Duration) -> Result<reqwest::Response, CallError> {
        let response = request.timeout(timeout).send().await.map_err(|e| CallError::Transport(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let message = response
            .json::<WireError>()
            .await
            .map_or_else(|_| status.canonical_reason().unwrap_or("error").to_owned(), |e| e.error);
        Err(CallError::Status { status: status.as_u16(), message })
    }

    /// A JSON call: `method` on `segments` with an optional bearer token, query and body.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        token: Option<&str>,
        query: &[(&str, String)],
        body: Option<&dyn erased::Body>,
        timeout: Duration,
    ) -> Result<T, CallError> {
        let mut request = self.request(method, segments).query(query);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body.to_json());
        }
        let response = self.send(request, timeout).await?;
        response.json().await.map_err(|e| CallError::Transport(format!("bad answer: {e}")))
    }
}

/// Object-safe JSON bodies, so [`Http::call`] can take any serializable body or none.
pub(crate) mod erased {
    /// A value that serializes to JSON.
    pub(crate) trait Body: Send + Sync {
        /// The JSON form.
        fn to_json(&self) -> serde_json::Value;
    }

    impl<T: serde::Serialize + Send + Sync> Body for T {
        fn to_json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }
}
