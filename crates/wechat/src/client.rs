//! [`WechatClient`]: one login's connection to the puppet service. Its event task lives in
//! [`crate::handle_remote`]; sending in [`crate::handle_matrix`]; here are the client's
//! shared state, chat and user info, media downloads and logout.

use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bridge_core::network::client::DeleteHandler;
use bridge_core::network::events::{ChatInfo, ChatMember, ChatRef, LoginState, UserInfo};
use bridge_core::network::{
    EventSender, LoginId, NetworkClient, NetworkError, OutgoingMessage, RemoteEvent, RemoteUserId, SentMessage,
};
use bytes::Bytes;
use futures::StreamExt as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::WechatConfig;
use crate::convert;
use crate::handle_matrix::Pacer;
use crate::ids::{is_room, MediaSource};
use crate::outbox::Outbox;
use crate::puppet::Puppet;

/// How many ids of sent messages are remembered to drop their echoes.
const SENT_MEMORY: usize = 256;

/// Rooms larger than this are reported without the members beyond it.
const MAX_MEMBERS: usize = 500;

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// One login's client. Built by [`crate::WechatConnector`]'s `load_login`.
pub struct WechatClient {
    shared: Arc<Shared>,
    task: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
}

/// What the client, its event task and its senders share.
pub(crate) struct Shared {
    /// The puppet service.
    pub(crate) puppet: Puppet,
    /// The login (the self contact's id).
    pub(crate) login: LoginId,
    /// Where events go.
    pub(crate) events: EventSender,
    /// The network config.
    pub(crate) config: WechatConfig,
    /// The connection state.
    state: Mutex<LoginState>,
    /// Ids of messages this bridge sent, newest last, to drop their echoes.
    sent: Mutex<VecDeque<String>>,
    /// Sends in progress; an echo may arrive before its send returns.
    pub(crate) inflight: AtomicUsize,
    /// Woken when a send finishes.
    pub(crate) sent_notify: tokio::sync::Notify,
    /// The outgoing queue's pacing.
    pub(crate) pacer: Pacer,
    /// Messages waiting for the puppet service to come back.
    pub(crate) outbox: Outbox,
    /// Downloads of avatars and files given as URLs.
    pub(crate) http: reqwest::Client,
    /// Whether the puppet service is the user's own (not the operator's): the URLs it gives
    /// must then not lead the bridge into its own network.
    pub(crate) users_own_service: bool,
}

impl WechatClient {
    /// A client for `login` on `puppet`, reporting to `events`; `users_own_service` when the
    /// user gave that puppet service at login (its URLs are then only fetched from public
    /// addresses).
    pub fn new(puppet: Puppet, login: LoginId, events: EventSender, config: WechatConfig, users_own_service: bool) -> Self {
        let shared = Shared {
            puppet,
            login,
            events,
            pacer: Pacer::new(config.pacing.clone()),
            config,
            state: Mutex::new(LoginState::Connecting),
            sent: Mutex::new(VecDeque::new()),
            inflight: AtomicUsize::new(0),
            sent_notify: tokio::sync::Notify::new(),
            outbox: Outbox::default(),
            http: crate::media::http_client(),
            users_own_service,
        };
        Self { shared: Arc::new(shared), task: Mutex::new(None) }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }
}

impl Shared {
    /// The self contact's id.
    pub(crate) fn self_id(&self) -> &str {
        self.login.as_str()
    }

    /// Records a new state and reports it if its kind changed (or `always`); returns
    /// `false` if the core is gone.
    pub(crate) async fn report(&self, state: LoginState, always: bool) -> bool {
        let changed = {
            let mut current = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let changed = always || std::mem::discriminant(&*current) != std::mem::discriminant(&state);
            *current = state.clone();
            changed
        };
        // The queue's worker sends only while connected.
        self.outbox.wake();
        !changed || self.events.send(RemoteEvent::StateChanged(state)).await
    }

    /// The connection state.
    pub(crate) fn current_state(&self) -> LoginState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Remembers a sent message's id (making one up if the puppet gave none) and returns it.
    pub(crate) fn remember_sent(&self, id: String) -> String {
        let id = if id.is_empty() {
            tracing::warn!("the puppet service returned no id for a sent message");
            format!("local-{}-{}", now_ms(), rand::random::<u32>())
        } else {
            id
        };
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        if sent.len() >= SENT_MEMORY {
            sent.pop_front();
        }
        sent.push_back(id.clone());
        id
    }

    /// Whether `id` is a message this bridge sent. Waits (briefly) for sends in progress,
    /// since the echo of a message can arrive before the call that sent it returns.
    pub(crate) async fn was_sent_here(&self, id: &str) -> bool {
        let deadline = tokio::time::Instant::now() + self.config.call_timeout();
        loop {
            let notified = self.sent_notify.notified();
            if self.sent.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|s| s == id) {
                return true;
            }
            if self.inflight.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return false;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// The name of a user as shown in `room`: their room alias, else their contact name.
    pub(crate) async fn member_name(&self, room: Option<&str>, user: &str) -> Option<String> {
        if let Some(room) = room {
            if let Ok(member) = self.puppet.room_member(room, user).await {
                if let Some(name) = convert::display_name(&member.room_alias, &member.name, "") {
                    return Some(name);
                }
            }
        }
        let contact = self.puppet.contact(user).await.ok()?;
        convert::display_name(&contact.alias, &contact.name, &contact.weixin)
    }

    /// A chat's info: a room's topic and members (with room aliases), or a DM's contact.
    pub(crate) async fn chat_info(&self, chat: &str) -> Result<ChatInfo, NetworkError> {
        let avatar = self.avatar(chat);
        if !is_room(chat) {
            let contact = self.puppet.contact(chat).await?;
            return Ok(ChatInfo { avatar: avatar.await, ..convert::dm_info(&contact, self.self_id()) });
        }
        let room = self.puppet.room(chat).await?;
        let avatar = avatar.await;
        let ids = if room.member_ids.is_empty() { self.puppet.room_members(chat).await? } else { room.member_ids.clone() };
        let room_ref = &room;
        let members: Vec<ChatMember> = futures::stream::iter(ids.into_iter().take(MAX_MEMBERS))
            .map(|id| async move {
                let alias = match self.puppet.room_member(chat, &id).await {
                    Ok(member) => member.room_alias,
                    Err(error) => {
                        tracing::debug!(%error, room = chat, member = %id, "no room member payload");
                        String::new()
                    }
                };
                convert::room_member(room_ref, &id, &alias)
            })
            .buffered(8)
            .collect()
            .await;
        Ok(ChatInfo { avatar, ..convert::room_info(&room, members) })
    }
}

#[async_trait::async_trait]
impl NetworkClient for WechatClient {
    async fn connect(&self) {
        let mut task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if task.as_ref().is_some_and(|(_, handle)| !handle.is_finished()) {
            return;
        }
        let cancel = CancellationToken::new();
        let span = tracing::info_span!("wechat", login = %self.shared.login);
        let events = self.shared.clone().run(cancel.clone());
        let outbox = self.shared.clone().run_outbox(cancel.clone());
        // The queue's worker stops with the event task (what waits stays queued).
        let both = async move {
            tokio::select! {
                () = events => {}
                () = outbox => {}
            }
        };
        let handle = tokio::spawn(tracing::Instrument::instrument(both, span));
        *task = Some((cancel, handle));
    }

    async fn disconnect(&self) {
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((cancel, mut handle)) = task {
            cancel.cancel();
            if tokio::time::timeout(Duration::from_secs(5), &mut handle).await.is_err() {
                handle.abort();
            }
        }
    }

    fn state(&self) -> LoginState {
        self.shared.current_state()
    }

    async fn send_message(&self, message: OutgoingMessage) -> Result<SentMessage, NetworkError> {
        crate::handle_matrix::send_message(&self.shared, message).await
    }

    async fn chat_info(&self, chat: &ChatRef) -> Result<ChatInfo, NetworkError> {
        self.shared.chat_info(chat.id.as_str()).await
    }

    async fn user_info(&self, user: &RemoteUserId) -> Result<UserInfo, NetworkError> {
        let contact = self.shared.puppet.contact(user.as_str()).await?;
        let mut info = convert::user_info(&contact);
        info.avatar = self.shared.avatar(user.as_str()).await;
        Ok(info)
    }

    async fn download_media(&self, source: &str) -> Result<(Bytes, Option<String>), NetworkError> {
        let (name, data) = match MediaSource::parse(source) {
            Some(MediaSource::File(id)) => self.shared.message_file(&id, false).await?,
            Some(MediaSource::Image(id)) => self.shared.message_file(&id, true).await?,
            Some(MediaSource::Avatar(id)) => self.shared.avatar_image(&id).await?,
            None => return Err(NetworkError::NotFound(format!("media {source}"))),
        };
        Ok((data, convert::mime_for(&name).map(str::to_owned)))
    }

    async fn logout(&self) -> Result<(), NetworkError> {
        self.disconnect().await;
        self.shared.puppet.logout().await?;
        let _ = self.shared.report(LoginState::LoggedOut, false).await;
        Ok(())
    }

    fn deletions(&self) -> Option<&dyn DeleteHandler> {
        Some(self)
    }
}
