//! [`TelegramClient`]: one login's MTProto connection (grammers' sender pool and client over
//! the login's [`StoredSession`]), the task that follows its updates, and what the core asks
//! of it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bridge_core::backoff::Backoff;
use bridge_core::network::client::{DeleteHandler, EditHandler, PresenceHandler, ReactionHandler};
use bridge_core::network::events::{ChatInfo, ChatRef, LoginState, UserInfo};
use bridge_core::network::{
    EventSender, LoginId, NetworkClient, NetworkError, OutgoingContent, OutgoingMessage,
    RemoteEvent, RemoteMessageId, RemoteUserId, SentMessage,
};
use bytes::Bytes;
use grammers_client::sender::{
    AutoSleep, ConnectionParams, RetryContext, RetryPolicy, SenderPool, UpdatesConfiguration,
};
use grammers_client::{tl, Client, InvocationError};
use grammers_session::types::{PeerId, PeerRef};
use grammers_session::updates::UpdatesLike;
use std::ops::ControlFlow;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::TelegramConfig;
use crate::outbox::Outbox;
use crate::session::{AppliedState, StoredSession, STATE_SETTLE};
use crate::{handle_remote, ids};

/// The timeout of one call to Telegram (flood waits up to the configured ceiling come on top).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// grammers' [`AutoSleep`] (sleeps through flood waits up to the configured ceiling, a few
/// times), except for message sends: their flood waits are the [`crate::outbox`]'s to wait
/// out, durably and in order.
struct FloodPolicy {
    sleep: AutoSleep,
}

impl RetryPolicy for FloodPolicy {
    fn should_retry(&self, context: &RetryContext) -> ControlFlow<(), Duration> {
        if let InvocationError::Rpc(rpc) = &context.error {
            let is_send = rpc.caused_by
                == Some(<tl::functions::messages::SendMessage as tl::Identifiable>::CONSTRUCTOR_ID);
            if rpc.code == 420 && is_send {
                return ControlFlow::Break(());
            }
        }
        self.sleep.should_retry(context)
    }
}

/// A grammers client over `session` with its sender pool running: the client, the updates
/// the pool receives, and the pool's task (it ends after [`Client::disconnect`]).
pub(crate) fn open(
    session: Arc<StoredSession>,
    api_id: i32,
    config: &TelegramConfig,
) -> (Client, mpsc::Receiver<UpdatesLike>, JoinHandle<()>) {
    let sleep = AutoSleep {
        tries: std::num::NonZeroU32::new(3).unwrap_or(std::num::NonZeroU32::MIN),
        threshold: Duration::from_secs(config.flood_wait_ceiling_seconds.into()),
        ..AutoSleep::default()
    };
    let params = ConnectionParams {
        device_model: config.device_model.clone(),
        system_version: config.system_version.clone(),
        app_version: config.app_version.clone(),
        retry_policy: Box::new(FloodPolicy { sleep }),
        ..ConnectionParams::default()
    };
    let SenderPool {
        runner,
        handle,
        updates,
    } = SenderPool::with_configuration(session, api_id, params);
    let client = Client::new(handle);
    let task = tokio::spawn(runner.run());
    (client, updates, task)
}

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// Maps a grammers error to the core's error kinds.
pub fn network_error(error: &InvocationError) -> NetworkError {
    match error {
        InvocationError::Rpc(rpc) if rpc.code == 420 => {
            NetworkError::RateLimited(Duration::from_secs(rpc.value.unwrap_or(1).into()))
        }
        InvocationError::Rpc(rpc) if rpc.code == 401 => NetworkError::NotLoggedIn,
        InvocationError::Rpc(rpc)
            if rpc.name.ends_with("_INVALID") || rpc.name.ends_with("_NOT_FOUND") =>
        {
            NetworkError::NotFound(rpc.name.clone())
        }
        other => NetworkError::Remote(other.to_string()),
    }
}

/// Runs a call with [`CALL_TIMEOUT`] plus the flood-wait ceiling.
pub async fn timed<T>(
    config: &TelegramConfig,
    call: impl std::future::Future<Output = Result<T, InvocationError>>,
) -> Result<T, NetworkError> {
    let limit = CALL_TIMEOUT + Duration::from_secs(config.flood_wait_ceiling_seconds.into());
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(network_error(&error)),
        Err(_) => Err(NetworkError::Remote(
            "Telegram did not answer in time".to_owned(),
        )),
    }
}

/// Whether Telegram said the session is no longer authorized (revoked, logged out elsewhere).
fn is_unauthorized(error: &InvocationError) -> bool {
    matches!(error, InvocationError::Rpc(rpc) if rpc.code == 401)
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The state one login's tasks share.
pub struct Shared {
    /// The `network:` section.
    pub(crate) config: TelegramConfig,
    /// The login.
    pub(crate) login: LoginId,
    /// Where remote events go.
    pub(crate) events: EventSender,
    api_id: i32,
    pub(crate) session: Arc<StoredSession>,
    state: Mutex<LoginState>,
    client: Mutex<Option<Client>>,
    /// Messages `(chat, id)` the bridge is editing, whose edit update is its own echo.
    edit_echoes: Mutex<HashSet<(PeerId, i32)>>,
    /// Sends in progress and sent messages whose echo (grammers reports what the account
    /// sends as new messages) has not come yet.
    sends: Mutex<Sends>,
    /// Signalled when a send ends.
    send_done: tokio::sync::Notify,
    /// Messages waiting for a flood wait to pass (or for Telegram to be reachable).
    pub(crate) outbox: Outbox,
}

/// See [`Shared::sends`].
#[derive(Default)]
struct Sends {
    in_flight: std::collections::HashMap<PeerId, usize>,
    sent: HashSet<(PeerId, i32)>,
}

/// A send in progress (see [`Shared::begin_send`]); ends on drop.
pub(crate) struct SendGuard<'a> {
    shared: &'a Shared,
    chat: PeerId,
}

impl SendGuard<'_> {
    /// The send succeeded with message `id`: its echo is skipped.
    pub(crate) fn sent(&self, id: i32) {
        lock(&self.shared.sends).sent.insert((self.chat, id));
    }
}

impl Drop for SendGuard<'_> {
    fn drop(&mut self) {
        let mut sends = lock(&self.shared.sends);
        if let Some(count) = sends.in_flight.get_mut(&self.chat) {
            *count -= 1;
            if *count == 0 {
                sends.in_flight.remove(&self.chat);
            }
        }
        drop(sends);
        self.shared.send_done.notify_waiters();
    }
}

impl Shared {
    /// The connected grammers client, or [`NetworkError::NotLoggedIn`] before `connect`.
    pub(crate) fn client(&self) -> Result<Client, NetworkError> {
        lock(&self.client).clone().ok_or(NetworkError::NotLoggedIn)
    }

    /// The account's own user ID.
    pub(crate) fn self_id(&self) -> Option<i64> {
        self.session
            .self_id()
            .or_else(|| self.login.as_str().parse().ok())
    }

    /// The peer (with its access hash) of a chat or user this login has seen.
    pub(crate) async fn peer_ref(&self, peer: PeerId) -> Option<PeerRef> {
        use grammers_session::Session as _;
        self.session.peer_ref(peer).await.ok().flatten()
    }

    /// Marks a send to `chat` as in progress until the guard drops.
    pub(crate) fn begin_send(&self, chat: PeerId) -> SendGuard<'_> {
        *lock(&self.sends).in_flight.entry(chat).or_default() += 1;
        SendGuard { shared: self, chat }
    }

    /// Whether a message the account sent is the echo of a send by the bridge: waits for
    /// the sends to `chat` in progress to end (the echo can come before the answer).
    pub(crate) async fn is_own_send(&self, chat: PeerId, id: i32) -> bool {
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        loop {
            let notified = self.send_done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut sends = lock(&self.sends);
                if sends.sent.remove(&(chat, id)) {
                    return true;
                }
                if !sends.in_flight.contains_key(&chat) {
                    return false;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Notes that the bridge edits message `id` of `chat` (see [`Shared::take_edit_echo`]).
    pub(crate) fn expect_edit_echo(&self, chat: PeerId, id: i32) {
        lock(&self.edit_echoes).insert((chat, id));
    }

    /// Whether an edit of our own message is the echo of an edit the bridge made.
    pub(crate) fn take_edit_echo(&self, chat: PeerId, id: i32) -> bool {
        lock(&self.edit_echoes).remove(&(chat, id))
    }

    /// Records a new state and reports it if its kind changed; `false` if the core is gone.
    async fn report(&self, state: LoginState) -> bool {
        let changed = {
            let mut current = lock(&self.state);
            let changed = std::mem::discriminant(&*current) != std::mem::discriminant(&state);
            *current = state.clone();
            changed
        };
        !changed || self.events.send(RemoteEvent::StateChanged(state)).await
    }

    /// The connection task: opens the pool, checks the session is still authorized, then
    /// follows the updates (catching up from the stored state) until cancelled.
    async fn run(self: Arc<Self>, cancel: CancellationToken) {
        // Cancelled on shutdown, or when Telegram ends the session.
        let cancel = cancel.child_token();
        let (client, updates, pool) = open(self.session.clone(), self.api_id, &self.config);
        *lock(&self.client) = Some(client.clone());
        self.report(LoginState::Connecting).await;
        let mut backoff = Backoff::reconnect();
        loop {
            let checked = tokio::select! {
                () = cancel.cancelled() => break,
                checked = client.get_me() => checked,
            };
            match checked {
                Ok(_) => break,
                Err(error) if is_unauthorized(&error) => {
                    self.session_ended(&error).await;
                    cancel.cancel();
                    break;
                }
                Err(error) => {
                    tracing::warn!(login = %self.login, %error, "could not reach Telegram");
                    self.report(LoginState::TransientDisconnect {
                        reason: "cannot reach Telegram".to_owned(),
                    })
                    .await;
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
        if !cancel.is_cancelled() {
            let keepalive = tokio::spawn(self.clone().keepalive(client.clone(), cancel.clone()));
            let outbox = tokio::spawn(self.clone().run_outbox(cancel.clone()));
            self.follow_updates(&client, updates, &cancel).await;
            cancel.cancel();
            let _ = keepalive.await;
            let _ = outbox.await;
        }
        client.disconnect();
        *lock(&self.client) = None;
        if tokio::time::timeout(Duration::from_secs(10), pool)
            .await
            .is_err()
        {
            tracing::warn!(login = %self.login, "the Telegram connection did not close in time");
        }
    }

    /// Follows the updates until cancelled: each becomes the core's events, and the update
    /// state is stored only once the core has applied them (see [`AppliedState`]).
    async fn follow_updates(
        &self,
        client: &Client,
        updates: mpsc::Receiver<UpdatesLike>,
        cancel: &CancellationToken,
    ) {
        let mut stream = match client
            .stream_updates(updates, UpdatesConfiguration { catch_up: true })
            .await
        {
            Ok(stream) => stream,
            Err(error) => {
                tracing::error!(login = %self.login, %error, "could not follow Telegram's updates");
                self.report(LoginState::TransientDisconnect {
                    reason: "cannot follow updates".to_owned(),
                })
                .await;
                return;
            }
        };
        self.report(LoginState::Connected).await;
        let mut backoff = Backoff::reconnect();
        let mut applied = AppliedState::default();
        loop {
            let next = {
                let next = stream.next_raw();
                tokio::pin!(next);
                loop {
                    // The stream first: the other branches run only while no update is at
                    // hand, so every update of the last batch has been applied then.
                    tokio::select! {
                        biased;
                        next = &mut next => break Some(next),
                        () = cancel.cancelled() => {
                            applied.store(&self.session, &self.login).await;
                            break None;
                        }
                        () = tokio::time::sleep(STATE_SETTLE), if applied.has_pending() => {
                            applied.store(&self.session, &self.login).await;
                        }
                    }
                }
            };
            let Some(next) = next else { break };
            match next {
                Ok((update, state, peers)) => {
                    backoff.reset();
                    applied.next(&state, &self.session, &self.login).await;
                    if !handle_remote::handle(self, update, &peers).await {
                        break;
                    }
                    applied.applied(state);
                    self.report(LoginState::Connected).await;
                }
                Err(error) if is_unauthorized(&error) => {
                    self.session_ended(&error).await;
                    break;
                }
                Err(error) => {
                    tracing::warn!(login = %self.login, %error, "lost Telegram's updates; retrying");
                    self.report(LoginState::TransientDisconnect {
                        reason: "reconnecting to Telegram".to_owned(),
                    })
                    .await;
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
        // Leaving in the middle of a batch (the core stopping) stores nothing of it: after a
        // restart the batch comes again, and the core skips what it already bridged.
    }

    /// Asks Telegram for the update state every `keepalive_seconds`: keeps a connection
    /// open (grammers reconnects only when a request is made, and Telegram pushes updates
    /// only to live connections) and notices a session Telegram ended. Cancels `cancel` then.
    async fn keepalive(self: Arc<Self>, client: Client, cancel: CancellationToken) {
        let period = Duration::from_secs(self.config.keepalive_seconds.max(1).into());
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
            let answer = tokio::select! {
                () = cancel.cancelled() => return,
                answer = tokio::time::timeout(CALL_TIMEOUT, client.invoke(&tl::functions::updates::GetState {})) => answer,
            };
            match answer {
                Ok(Ok(_)) => {
                    self.report(LoginState::Connected).await;
                }
                Ok(Err(error)) if is_unauthorized(&error) => {
                    self.session_ended(&error).await;
                    cancel.cancel();
                    return;
                }
                Ok(Err(error)) => {
                    tracing::warn!(login = %self.login, %error, "Telegram did not answer the keepalive");
                    self.report(LoginState::TransientDisconnect {
                        reason: "reconnecting to Telegram".to_owned(),
                    })
                    .await;
                }
                Err(_) => {
                    self.report(LoginState::TransientDisconnect {
                        reason: "Telegram does not answer".to_owned(),
                    })
                    .await;
                }
            }
        }
    }

    async fn session_ended(&self, error: &InvocationError) {
        let why = match error {
            InvocationError::Rpc(rpc) => rpc.name.clone(),
            other => other.to_string(),
        };
        tracing::warn!(login = %self.login, reason = %why, "Telegram ended the session");
        let reason = format!("Telegram ended this session ({why}); log in again");
        self.report(LoginState::BadCredentials { reason }).await;
    }
}

impl crate::convert::MentionMap for Shared {
    fn link(&self, user: i64) -> Option<String> {
        let target = self.events.mention_target(&ids::user_id(user))?;
        Some(format!("https://matrix.to/#/{target}"))
    }

    fn user(&self, link: &str) -> Option<i64> {
        let user = crate::convert::matrix_to_user(link)?;
        let user = ruma::OwnedUserId::try_from(user).ok()?;
        ids::parse_user(&self.events.remote_user_id(&user)?)
    }
}

impl Shared {
    /// Text mentions by user ID as Telegram takes them from a client: with the user's
    /// access hash (a mention of a user this login has not seen stays plain text).
    pub(crate) async fn input_mentions(
        &self,
        entities: Vec<tl::enums::MessageEntity>,
    ) -> Vec<tl::enums::MessageEntity> {
        let mut out = Vec::with_capacity(entities.len());
        for entity in entities {
            let tl::enums::MessageEntity::MentionName(mention) = &entity else {
                out.push(entity);
                continue;
            };
            let Some(peer) = self.peer_ref(PeerId::user_unchecked(mention.user_id)).await else {
                continue;
            };
            out.push(
                tl::types::InputMessageEntityMentionName {
                    offset: mention.offset,
                    length: mention.length,
                    user_id: tl::types::InputUser {
                        user_id: mention.user_id,
                        access_hash: peer.auth.hash(),
                    }
                    .into(),
                }
                .into(),
            );
        }
        out
    }
}

/// One login's connection to Telegram.
pub struct TelegramClient {
    /// The state its tasks share.
    pub shared: Arc<Shared>,
    task: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
}

impl TelegramClient {
    /// A client of `login` over its stored session; connects on [`NetworkClient::connect`].
    pub fn new(
        config: TelegramConfig,
        api_id: i32,
        login: LoginId,
        session: Arc<StoredSession>,
        events: EventSender,
    ) -> Self {
        let shared = Shared {
            config,
            login,
            events,
            api_id,
            session,
            state: Mutex::new(LoginState::Connecting),
            client: Mutex::new(None),
            edit_echoes: Mutex::default(),
            sends: Mutex::default(),
            send_done: tokio::sync::Notify::new(),
            outbox: Outbox::default(),
        };
        Self {
            shared: Arc::new(shared),
            task: Mutex::new(None),
        }
    }
}

#[async_trait::async_trait]
impl NetworkClient for TelegramClient {
    async fn connect(&self) {
        let mut task = lock(&self.task);
        if task
            .as_ref()
            .is_some_and(|(_, handle)| !handle.is_finished())
        {
            return;
        }
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(self.shared.clone().run(cancel.clone()));
        *task = Some((cancel, handle));
    }

    async fn disconnect(&self) {
        let task = lock(&self.task).take();
        if let Some((cancel, mut handle)) = task {
            cancel.cancel();
            if tokio::time::timeout(Duration::from_secs(15), &mut handle)
                .await
                .is_err()
            {
                handle.abort();
            }
        }
    }

    fn state(&self) -> LoginState {
        lock(&self.shared.state).clone()
    }

    fn status(&self) -> Option<String> {
        self.shared.outbox.status()
    }

    async fn send_message(&self, message: OutgoingMessage) -> Result<SentMessage, NetworkError> {
        crate::handle_matrix::send_message(&self.shared, message).await
    }

    async fn chat_info(&self, chat: &ChatRef) -> Result<ChatInfo, NetworkError> {
        self.shared.chat_info(chat).await
    }

    async fn user_info(&self, user: &RemoteUserId) -> Result<UserInfo, NetworkError> {
        self.shared.user_info(user).await
    }

    async fn download_media(&self, source: &str) -> Result<(Bytes, Option<String>), NetworkError> {
        Err(NetworkError::Unsupported(format!(
            "downloading {source} (not yet)"
        )))
    }

    fn edits(&self) -> Option<&dyn EditHandler> {
        Some(self)
    }

    fn deletions(&self) -> Option<&dyn DeleteHandler> {
        Some(self)
    }

    fn presence(&self) -> Option<&dyn PresenceHandler> {
        Some(self)
    }

    fn reactions(&self) -> Option<&dyn ReactionHandler> {
        Some(self)
    }

    async fn logout(&self) -> Result<(), NetworkError> {
        if let Ok(client) = self.shared.client() {
            if let Err(error) = timed(
                &self.shared.config,
                client.invoke(&tl::functions::auth::LogOut {}),
            )
            .await
            {
                tracing::warn!(login = %self.shared.login, %error, "Telegram did not confirm the logout");
            }
        }
        self.disconnect().await;
        Ok(())
    }
}

#[async_trait::async_trait]
impl EditHandler for TelegramClient {
    async fn edit_message(
        &self,
        chat: &ChatRef,
        id: &RemoteMessageId,
        content: OutgoingContent,
    ) -> Result<(), NetworkError> {
        crate::handle_matrix::edit_message(&self.shared, chat, id, content).await
    }
}

#[async_trait::async_trait]
impl ReactionHandler for TelegramClient {
    fn emoji_id(&self, key: &str) -> Option<bridge_core::network::EmojiId> {
        crate::reactions::emoji_id(key)
    }

    async fn add_reaction(
        &self,
        chat: &ChatRef,
        target: &RemoteMessageId,
        emoji: &bridge_core::network::EmojiId,
    ) -> Result<(), NetworkError> {
        self.shared.react(chat, target, Some(emoji)).await
    }

    async fn remove_reaction(
        &self,
        chat: &ChatRef,
        target: &RemoteMessageId,
        _emoji: &bridge_core::network::EmojiId,
    ) -> Result<(), NetworkError> {
        self.shared.react(chat, target, None).await
    }
}

#[async_trait::async_trait]
impl DeleteHandler for TelegramClient {
    async fn delete_message(
        &self,
        chat: &ChatRef,
        id: &RemoteMessageId,
    ) -> Result<(), NetworkError> {
        crate::handle_matrix::delete_message(&self.shared, chat, id).await
    }
}

#[async_trait::async_trait]
impl PresenceHandler for TelegramClient {
    async fn set_typing(&self, chat: &ChatRef, typing: bool) -> Result<(), NetworkError> {
        crate::handle_matrix::set_typing(&self.shared, chat, typing).await
    }

    async fn mark_read(&self, chat: &ChatRef, up_to: &RemoteMessageId) -> Result<(), NetworkError> {
        crate::handle_matrix::mark_read(&self.shared, chat, up_to).await
    }
}
