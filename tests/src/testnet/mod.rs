//! The test network: a fake remote network for the end-to-end tests of the bridging engine.
//!
//! Two halves share this module:
//! - the **server** ([`TestNet`]), an axum server on 127.0.0.1 inside the test process. Tests
//!   drive it through Rust methods ([`TestNet::add_user`], [`TestNet::push_message`],
//!   [`TestNet::actions`], …) and it serves a small JSON API to the client half;
//! - the **client** ([`TestNetwork`], [`TestConnector`], [`TestClient`]), the network
//!   implementation of the `bridge-test` binary: it speaks that JSON API with reqwest.
//!
//! A test starts a [`TestNet`], puts its [`TestNet::url`] into the bridge's config as
//! `network: { server: "http://127.0.0.1:PORT" }`, injects remote events with the `push_*`
//! methods and reads what the bridge did with [`TestNet::actions`] / [`TestNet::wait_action`].
//!
//! Events are queued per login with increasing sequence numbers and kept until the client
//! acknowledges them, so a bridge that was down catches up when it reconnects. State lives as
//! long as any [`TestNet`] handle; [`TestNet::stop`] / [`TestNet::start_again`] take the HTTP
//! server away and bring it back on the same port, keeping the state.

mod api;
mod client;
mod connector;
mod login;
mod server;
mod state;
pub mod wire;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use bridge_core::network::events::MediaKind;

pub use client::TestClient;
pub use connector::{TestConfig, TestConnector, TestNetwork};
pub use login::TestLogin;

/// A handle to a running test network. Cheap to clone; the server stops when the last
/// handle is dropped (or on [`TestNet::stop`]).
#[derive(Clone)]
pub struct TestNet {
    inner: Arc<state::Inner>,
    control: Arc<Control>,
}

/// The running HTTP server, if any.
struct Control {
    port: u16,
    server: Mutex<Option<Running>>,
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Drop for Control {
    fn drop(&mut self) {
        let running = self.server.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(running) = running {
            running.stop.cancel();
        }
    }
}

/// A chat to create with [`TestNet::add_chat`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatSpec {
    /// The chat's ID.
    pub id: String,
    /// Its name (`None` for most DMs).
    pub name: Option<String>,
    /// Its topic.
    pub topic: Option<String>,
    /// Whether it is a one-to-one chat (seen once per login: `ChatRef::receiver` is set).
    pub is_direct: bool,
    /// Member user IDs, including the accounts that should see it.
    pub members: Vec<String>,
}

impl ChatSpec {
    /// A group chat.
    pub fn group(id: &str, name: &str, members: &[&str]) -> Self {
        Self {
            id: id.to_owned(),
            name: Some(name.to_owned()),
            topic: None,
            is_direct: false,
            members: members.iter().map(|m| (*m).to_owned()).collect(),
        }
    }

    /// A one-to-one chat between `a` and `b`.
    pub fn direct(id: &str, a: &str, b: &str) -> Self {
        Self { id: id.to_owned(), name: None, topic: None, is_direct: true, members: vec![a.to_owned(), b.to_owned()] }
    }
}

/// An attachment of a [`MessageSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSpec {
    /// The kind.
    pub kind: MediaKind,
    /// The file name.
    pub filename: String,
    /// MIME type.
    pub mime: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A message to inject with [`TestNet::push_message`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageSpec {
    /// Plain text (the caption when there is media).
    pub text: String,
    /// Matrix HTML.
    pub html: Option<String>,
    /// Mentioned user IDs.
    pub mentions: Vec<String>,
    /// The message replied to.
    pub reply_to: Option<String>,
    /// An attachment.
    pub media: Option<MediaSpec>,
}

impl MessageSpec {
    /// A plain text message.
    pub fn text(text: &str) -> Self {
        Self { text: text.to_owned(), ..Self::default() }
    }
}

/// Content the bridge sent or edited, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    /// Text.
    Text {
        /// Plain text.
        body: String,
        /// HTML.
        html: Option<String>,
        /// Mentioned user IDs.
        mentions: Vec<String>,
        /// `/me`.
        emote: bool,
    },
    /// A file, with its bytes.
    Media {
        /// The kind.
        kind: MediaKind,
        /// The bytes.
        data: Vec<u8>,
        /// The file name.
        filename: String,
        /// MIME type.
        mime: String,
        /// Caption.
        caption: Option<String>,
    },
    /// A location.
    Location {
        /// Degrees.
        latitude: f64,
        /// Degrees.
        longitude: f64,
    },
}

impl Sent {
    /// The text body, or the caption of media.
    pub fn body(&self) -> Option<&str> {
        match self {
            Self::Text { body, .. } => Some(body),
            Self::Media { caption, .. } => caption.as_deref(),
            Self::Location { .. } => None,
        }
    }
}

/// Something the bridge did on the test network, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Sent a message (`id` is the ID the server assigned).
    Send {
        /// The login that sent it.
        login: String,
        /// The chat.
        chat: String,
        /// The new message's ID.
        id: String,
        /// The content.
        content: Sent,
        /// The message replied to.
        reply_to: Option<String>,
        /// The thread root.
        thread_root: Option<String>,
        /// The relayed Matrix user's name.
        relayed_from: Option<String>,
        /// The public URL of the sender's avatar.
        avatar_url: Option<String>,
    },
    /// Edited a message.
    Edit {
        /// The login.
        login: String,
        /// The chat.
        chat: String,
        /// The message.
        id: String,
        /// The new content.
        content: Sent,
    },
    /// Deleted a message.
    Delete {
        /// The login.
        login: String,
        /// The chat.
        chat: String,
        /// The message.
        id: String,
    },
    /// Added (`add`) or removed a reaction.
    Reaction {
        /// The login.
        login: String,
        /// The chat.
        chat: String,
        /// The message reacted to.
        target: String,
        /// The emoji.
        emoji: String,
        /// Added or removed.
        add: bool,
    },
    /// Started or stopped typing.
    Typing {
        /// The login.
        login: String,
        /// The chat.
        chat: String,
        /// Started or stopped.
        typing: bool,
    },
    /// Marked a chat read.
    Read {
        /// The login.
        login: String,
        /// The chat.
        chat: String,
        /// The last message read.
        up_to: String,
    },
    /// Logged the login out.
    Logout {
        /// The login.
        login: String,
    },
}

impl Action {
    /// The login that acted.
    pub fn login(&self) -> &str {
        match self {
            Self::Send { login, .. }
            | Self::Edit { login, .. }
            | Self::Delete { login, .. }
            | Self::Reaction { login, .. }
            | Self::Typing { login, .. }
            | Self::Read { login, .. }
            | Self::Logout { login } => login,
        }
    }
}

impl TestNet {
    /// Starts a test network on a free port of 127.0.0.1.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.context("bind 127.0.0.1:0")?;
        let port = listener.local_addr().context("local address")?.port();
        let net = Self {
            inner: Arc::new(state::Inner::new()),
            control: Arc::new(Control { port, server: Mutex::new(None) }),
        };
        net.serve(listener);
        Ok(net)
    }

    /// The server's base URL (`http://127.0.0.1:PORT`), for `network.server`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.control.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.control.port
    }

    /// Whether the HTTP server is running.
    pub fn is_running(&self) -> bool {
        self.control.server.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let stop = CancellationToken::new();
        let app = server::App { inner: self.inner.clone(), stop: stop.clone() };
        let signal = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, server::router(app)).with_graceful_shutdown(signal).await {
                tracing::warn!(%error, "test network server failed");
            }
        });
        *self.control.server.lock().unwrap_or_else(|p| p.into_inner()) = Some(Running { stop, task });
    }

    /// Stops the HTTP server (the network "goes away"); state and queued events are kept.
    /// Returns once the port is closed. Does nothing if it is not running.
    pub async fn stop(&self) {
        let running = self.control.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(running) = running {
            running.stop.cancel();
            let mut task = running.task;
            if tokio::time::timeout(Duration::from_secs(10), &mut task).await.is_err() {
                task.abort();
            }
        }
    }

    /// Starts the HTTP server again on the same port (retrying the bind for a few seconds).
    pub async fn start_again(&self) -> anyhow::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.control.port));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(error) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(%error, "test network port still busy");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => return Err(error).with_context(|| format!("bind {addr} again")),
            }
        };
        self.serve(listener);
        Ok(())
    }

    /// [`TestNet::stop`] then [`TestNet::start_again`].
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.stop().await;
        self.start_again().await
    }

    /// Stops the server for good (same as [`TestNet::stop`]; dropping every handle also does).
    pub async fn shutdown(&self) {
        self.stop().await;
    }
}
