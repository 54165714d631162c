//! [`WhatsappClient`]: one login's linked device. It builds a whatsapp-rust [`Bot`] over the
//! login's [`DeviceStore`], runs it (whatsapp-rust reconnects by itself, with backoff) and
//! turns its connection events into login states ([`crate::handle_remote`]). Messages come
//! with stage 2 of the WhatsApp work; until then sending says so.

use std::sync::{Arc, Mutex};

use bridge_core::network::events::{ChatInfo, ChatRef, LoginState, UserInfo};
use bridge_core::network::{
    EventSender, LoginId, NetworkClient, NetworkError, OutgoingMessage, RemoteEvent, RemoteUserId,
    SentMessage,
};
use bytes::Bytes;
use tokio::task::JoinHandle;
use whatsapp_rust::bot::{Bot, BotHandle};
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::types::events::{Event, EventHandler};
use whatsapp_rust_tokio_transport::TokioWebSocketTransportFactory;

use crate::config::{PhoneLogout, WhatsappConfig};
use crate::device_store::DeviceStore;
use crate::handle_remote;

/// Hands whatsapp-rust's events to a task, in the order they were dispatched.
struct Forward(tokio::sync::mpsc::UnboundedSender<Arc<Event>>);

impl EventHandler for Forward {
    fn handle_event(&self, event: Arc<Event>) {
        // The receiver is gone only when the login or client stopped listening.
        let _ = self.0.send(event);
    }
}

/// Builds a bot for `store` as the config says; its events arrive on the returned channel
/// in the order whatsapp-rust dispatched them. `pair_code` asks for a pairing code for a
/// phone number as soon as it connects.
pub(crate) async fn build_bot(
    config: &WhatsappConfig,
    store: DeviceStore,
    pair_code: Option<PairCodeOptions>,
) -> Result<(Bot, tokio::sync::mpsc::UnboundedReceiver<Arc<Event>>), NetworkError> {
    let simulator = config
        .validate()
        .map_err(|e| NetworkError::Remote(e.to_string()))?;
    let mut transport = TokioWebSocketTransportFactory::new();
    if let Some(url) = simulator {
        transport = transport.with_url(url);
    }
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let mut builder = Bot::builder()
        .with_backend(store)
        .with_transport_factory(transport)
        .with_http_client(crate::media::HttpClient::new())
        .with_event_handler(Forward(tx))
        .with_device_props(
            whatsapp_rust::wacore::store::DevicePropsOverride::new()
                .with_os(config.device_name.clone()),
        );
    if let Some(version) = config
        .app_version()
        .map_err(|e| NetworkError::Remote(e.to_string()))?
    {
        builder = builder.with_version(version);
    }
    if let Some(options) = pair_code {
        builder = builder.with_pair_code(options);
    }
    let bot = builder
        .build()
        .await
        .map_err(|e| NetworkError::Remote(format!("could not start the WhatsApp client: {e}")))?;
    Ok((bot, events))
}

/// One login's client. Built by [`crate::WhatsappConnector`]'s `load_login`.
pub struct WhatsappClient {
    shared: Arc<Shared>,
    running: tokio::sync::Mutex<Option<Running>>,
}

/// A started bot and the task that reads its events.
struct Running {
    bot: BotHandle,
    events: JoinHandle<()>,
}

/// What the client and its event task share.
pub(crate) struct Shared {
    /// The login (the account's phone number).
    pub(crate) login: LoginId,
    /// Where events go.
    pub(crate) events: EventSender,
    /// The network config.
    pub(crate) config: WhatsappConfig,
    /// The device's keys and sessions.
    pub(crate) store: DeviceStore,
    /// The connection state.
    state: Mutex<LoginState>,
}

impl Shared {
    /// Records a new state and reports it when it changed; returns `false` if the core is gone.
    pub(crate) async fn report(&self, state: LoginState) -> bool {
        let changed = {
            let mut current = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let changed = *current != state;
            *current = state.clone();
            changed
        };
        !changed || self.events.send(RemoteEvent::StateChanged(state)).await
    }

    /// The phone unlinked this device (or WhatsApp logged it out): reported, and the
    /// device's keys removed when the config says so. Relinking is never automatic.
    pub(crate) async fn logged_out(&self, reason: &str) {
        if self.config.on_phone_logout == PhoneLogout::Delete {
            if let Err(error) = self.store.clear().await {
                tracing::warn!(login = %self.login, %error, "could not delete the unlinked device's keys");
            }
        }
        self.report(LoginState::BadCredentials {
            reason: reason.to_owned(),
        })
        .await;
    }
}

impl WhatsappClient {
    /// A client for `login` whose device lives in `store`, reporting to `events`.
    pub fn new(
        login: LoginId,
        store: DeviceStore,
        events: EventSender,
        config: WhatsappConfig,
    ) -> Self {
        let shared = Shared {
            login,
            events,
            config,
            store,
            state: Mutex::new(LoginState::Connecting),
        };
        Self {
            shared: Arc::new(shared),
            running: tokio::sync::Mutex::new(None),
        }
    }

    async fn start(&self) -> Result<(), NetworkError> {
        if !self.shared.store.has_device().await? {
            return Err(NetworkError::NotLoggedIn);
        }
        let (bot, events) = build_bot(&self.shared.config, self.shared.store.clone(), None).await?;
        let handle = bot.spawn();
        let task = tokio::spawn(handle_remote::run(self.shared.clone(), events));
        *self.running.lock().await = Some(Running {
            bot: handle,
            events: task,
        });
        Ok(())
    }
}

#[async_trait::async_trait]
impl NetworkClient for WhatsappClient {
    async fn connect(&self) {
        self.shared.report(LoginState::Connecting).await;
        if let Err(error) = self.start().await {
            tracing::warn!(login = %self.shared.login, %error, "could not start the WhatsApp client");
            let reason = match error {
                NetworkError::NotLoggedIn => {
                    "the linked device's keys are gone; link the bridge again".to_owned()
                }
                other => other.to_string(),
            };
            self.shared
                .report(LoginState::BadCredentials { reason })
                .await;
        }
    }

    async fn disconnect(&self) {
        let running = self.running.lock().await.take();
        if let Some(running) = running {
            // Flushes the device's state to the store before returning.
            running.bot.shutdown().await;
            running.events.abort();
        }
    }

    fn state(&self) -> LoginState {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn send_message(&self, _message: OutgoingMessage) -> Result<SentMessage, NetworkError> {
        Err(NetworkError::Unsupported(
            "sending WhatsApp messages (coming with the next stage of the bridge)".to_owned(),
        ))
    }

    async fn chat_info(&self, chat: &ChatRef) -> Result<ChatInfo, NetworkError> {
        Ok(ChatInfo {
            is_direct: !chat.id.as_str().contains('-'),
            ..ChatInfo::default()
        })
    }

    async fn user_info(&self, user: &RemoteUserId) -> Result<UserInfo, NetworkError> {
        Ok(UserInfo {
            name: Some(format!("+{}", user.as_str())),
            ..UserInfo::default()
        })
    }

    async fn download_media(&self, _source: &str) -> Result<(Bytes, Option<String>), NetworkError> {
        Err(NetworkError::Unsupported(
            "WhatsApp media (coming with the next stage of the bridge)".to_owned(),
        ))
    }

    async fn logout(&self) -> Result<(), NetworkError> {
        let running = self.running.lock().await.take();
        if let Some(running) = running {
            // Unlinks the device on WhatsApp, then disconnects.
            running.bot.client().logout().await;
            running.bot.shutdown().await;
            running.events.abort();
        }
        self.shared.store.clear().await?;
        self.shared.report(LoginState::LoggedOut).await;
        Ok(())
    }
}
