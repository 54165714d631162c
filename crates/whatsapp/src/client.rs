//! [`WhatsappClient`]: one login's linked device. It builds a whatsapp-rust [`Bot`] over the
//! login's [`DeviceStore`], runs it (whatsapp-rust reconnects by itself, with backoff),
//! hands what arrives to [`crate::handle_remote`] and what Matrix users send to
//! [`crate::handle_matrix`]. Contacts' push names are kept in the login's store
//! (`contact/<phone>`) and name their ghosts.

use std::sync::{Arc, Mutex};

use bridge_core::network::client::{
    ChatStarter, DeleteHandler, EditHandler, PresenceHandler, ReactionHandler,
};
use bridge_core::network::events::{ChatInfo, ChatRef, LoginState, UserInfo};
use bridge_core::network::{
    EmojiId, EventSender, LoginId, NetworkClient, NetworkError, OutgoingContent, OutgoingMessage,
    RemoteChatId, RemoteEvent, RemoteMessageId, RemoteUserId, SentMessage,
};
use bytes::Bytes;
use tokio::task::JoinHandle;
use whatsapp_rust::bot::{Bot, BotHandle};
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::types::events::{Event, EventHandler};
use whatsapp_rust::Client;
use whatsapp_rust_tokio_transport::TokioWebSocketTransportFactory;

use crate::config::{PhoneLogout, WhatsappConfig};
use crate::device_store::DeviceStore;
use crate::{handle_matrix, handle_remote, ids};

/// Hands whatsapp-rust's events to a task, in the order they were dispatched.
struct Forward(tokio::sync::mpsc::UnboundedSender<Arc<Event>>);

impl EventHandler for Forward {
    fn handle_event(&self, event: Arc<Event>) {
        // The receiver is gone only when the login or client stopped listening.
        let _ = self.0.send(event);
    }
}

/// What a bot is built with beyond the config and its store.
#[derive(Default)]
pub struct BotOptions {
    /// Ask for a pairing code for a phone number as soon as it connects.
    pub(crate) pair_code: Option<PairCodeOptions>,
    /// The push name a new device starts with.
    pub(crate) push_name: Option<String>,
    /// Acknowledge messages only once this hook has them (see [`handle_remote`]).
    pub(crate) durable: Option<handle_remote::Durable>,
}

impl BotOptions {
    /// A new device that starts with the push name `name`.
    pub fn with_push_name(mut self, name: &str) -> Self {
        self.push_name = Some(name.to_owned());
        self
    }
}

/// Builds a bot for `store` as the config says; its events arrive on the returned channel
/// in the order whatsapp-rust dispatched them.
pub async fn build_bot(
    config: &WhatsappConfig,
    store: DeviceStore,
    options: BotOptions,
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
    if let Some(pair_code) = options.pair_code {
        builder = builder.with_pair_code(pair_code);
    }
    if let Some(name) = options.push_name {
        builder = builder.with_push_name(name);
    }
    if let Some(hook) = options.durable {
        builder = builder.with_inbound_durability_hook(hook);
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
    /// The running whatsapp-rust client.
    client: Mutex<Option<Arc<Client>>>,
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

    /// The running whatsapp-rust client, to send with.
    pub(crate) fn client(&self) -> Result<Arc<Client>, NetworkError> {
        self.client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(NetworkError::NotLoggedIn)
    }

    /// The push name of account `phone`, if one was seen.
    pub(crate) async fn push_name(&self, phone: &str) -> Option<String> {
        let key = format!("contact/{phone}");
        self.events.store().get(&key).await.ok().flatten()
    }

    /// Remembers the push name a message came with; a new or changed name is the event
    /// that (re)names the ghost.
    pub(crate) async fn learn_push_name(
        &self,
        sender: &wacore_binary::Jid,
        name: &str,
    ) -> Option<RemoteEvent> {
        let name = name.trim();
        let phone = sender.user.as_str();
        if name.is_empty() || phone == self.login.as_str() {
            return None;
        }
        let known = self.push_name(phone).await;
        if known.as_deref() == Some(name) {
            return None;
        }
        let key = format!("contact/{phone}");
        if let Err(error) = self.events.store().set(&key, &name).await {
            tracing::warn!(login = %self.login, %error, "could not keep a push name");
        }
        // A first name matters too: the ghost may exist already, named by the number (a
        // group member who had not written yet).
        Some(RemoteEvent::UserInfoChanged {
            user: ids::user_id(sender),
            info: handle_remote::user_info(phone, Some(name.to_owned())),
        })
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
            client: Mutex::new(None),
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
        let options = BotOptions {
            durable: Some(handle_remote::Durable(self.shared.clone())),
            ..BotOptions::default()
        };
        let (bot, events) =
            build_bot(&self.shared.config, self.shared.store.clone(), options).await?;
        *self.shared.client.lock().unwrap_or_else(|p| p.into_inner()) = Some(bot.client());
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
        self.shared
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
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

    async fn send_message(&self, message: OutgoingMessage) -> Result<SentMessage, NetworkError> {
        handle_matrix::send_message(&self.shared, message).await
    }

    async fn chat_info(&self, chat: &ChatRef) -> Result<ChatInfo, NetworkError> {
        if ids::is_direct(&chat.id) {
            return Ok(ChatInfo {
                name: self.shared.push_name(chat.id.as_str()).await,
                is_direct: true,
                ..ChatInfo::default()
            });
        }
        handle_remote::group_info(&self.shared, chat).await
    }

    async fn user_info(&self, user: &RemoteUserId) -> Result<UserInfo, NetworkError> {
        let name = self.shared.push_name(user.as_str()).await;
        Ok(handle_remote::user_info(user.as_str(), name))
    }

    async fn download_media(&self, source: &str) -> Result<(Bytes, Option<String>), NetworkError> {
        let client = self.shared.client()?;
        crate::media::download(&client, source).await
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

    fn edits(&self) -> Option<&dyn EditHandler> {
        Some(self)
    }

    fn deletions(&self) -> Option<&dyn DeleteHandler> {
        Some(self)
    }

    fn reactions(&self) -> Option<&dyn ReactionHandler> {
        Some(self)
    }

    fn presence(&self) -> Option<&dyn PresenceHandler> {
        Some(self)
    }

    fn chat_starter(&self) -> Option<&dyn ChatStarter> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl ChatStarter for WhatsappClient {
    async fn resolve_identifier(
        &self,
        identifier: &str,
    ) -> Result<(RemoteUserId, RemoteChatId), NetworkError> {
        handle_matrix::resolve_phone(&self.shared, identifier).await
    }
}

#[async_trait::async_trait]
impl EditHandler for WhatsappClient {
    async fn edit_message(
        &self,
        chat: &ChatRef,
        id: &RemoteMessageId,
        content: OutgoingContent,
    ) -> Result<(), NetworkError> {
        handle_matrix::edit_message(&self.shared, chat, id, content).await
    }
}

#[async_trait::async_trait]
impl DeleteHandler for WhatsappClient {
    async fn delete_message(
        &self,
        chat: &ChatRef,
        id: &RemoteMessageId,
    ) -> Result<(), NetworkError> {
        handle_matrix::delete_message(&self.shared, chat, id).await
    }
}

#[async_trait::async_trait]
impl ReactionHandler for WhatsappClient {
    fn emoji_id(&self, key: &str) -> Option<EmojiId> {
        // WhatsApp reacts with any single emoji; a Matrix key that is not text is refused.
        (!key.is_empty() && !key.starts_with("mxc://")).then(|| EmojiId(key.to_owned()))
    }

    async fn add_reaction(
        &self,
        chat: &ChatRef,
        target: &RemoteMessageId,
        emoji: &EmojiId,
    ) -> Result<(), NetworkError> {
        handle_matrix::react(&self.shared, chat, target, emoji.as_str()).await
    }

    async fn remove_reaction(
        &self,
        chat: &ChatRef,
        target: &RemoteMessageId,
        _emoji: &EmojiId,
    ) -> Result<(), NetworkError> {
        handle_matrix::react(&self.shared, chat, target, "").await
    }
}

#[async_trait::async_trait]
impl PresenceHandler for WhatsappClient {
    async fn set_typing(&self, chat: &ChatRef, typing: bool) -> Result<(), NetworkError> {
        handle_matrix::set_typing(&self.shared, chat, typing).await
    }

    async fn mark_read(&self, chat: &ChatRef, up_to: &RemoteMessageId) -> Result<(), NetworkError> {
        handle_matrix::mark_read(&self.shared, chat, up_to).await
    }
}
