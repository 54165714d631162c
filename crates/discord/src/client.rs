//! [`DiscordClient`]: one login's connection to Discord. A task runs a serenity `Client`
//! (the gateway) whose event handler reports [`RemoteEvent`]s; when serenity gives up, the
//! task reconnects with backoff and jitter, and stops for good on a rejected token. While
//! serenity resumes or re-identifies by itself (at most one new session every 5 seconds), a
//! shard that stays down past `network.disconnect_grace_seconds` is reported as a transient
//! disconnect, so the user hears of outages but not of routine resumes.
//!
//! serenity 0.12 retries a resume at once, without pause, when the gateway accepts the
//! websocket and closes it straight away: a reconnect storm of thousands of connections a
//! second, until its heartbeat check gives up 41 to 82 seconds later. The bridge stops that
//! itself. serenity locks the client's gateway URL right before each websocket connect; the
//! task holds that lock and hands it over one connect at a time (`Shared::pace_gateway`,
//! at most one every 100 ms), counting them. More than [`STORM_ATTEMPTS`] connects within
//! [`STORM_WINDOW`] with no READY or RESUMED among them (serenity's own pace is a burst of
//! at most three, then one every 5 seconds) end that serenity client: the URL is emptied, so
//! its shard fails to connect and gives up, the login is reported as transiently
//! disconnected, and the bridge's backoff with jitter paces the next client. The URL is
//! emptied likewise whenever a client ends (a disconnect included), so a shard left behind
//! cannot resume a session on its own.
//!
//! The handler also follows the channels of servers bridged in full (`guilds bridge`): a new
//! text channel gets its portal at once, a deleted one is unlinked.
//! Sending and the optional capabilities live in [`crate::handle_matrix`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bridge_core::backoff::Backoff;
use bridge_core::network::client::{DeleteHandler, EditHandler, PresenceHandler, ReactionHandler};
use bridge_core::network::events::{ChatInfo, ChatMember, ChatRef, LoginState, Sender, UserInfo};
use bridge_core::network::{
    EventSender, LoginId, NetworkClient, NetworkError, OutgoingMessage, RemoteEvent, RemoteUserId, SentMessage,
};
use bytes::Bytes;
use serenity::all::{
    Cache, Channel, ChannelId, Context, EventHandler, GatewayIntents, GuildChannel, Message, MessageId,
    MessageUpdateEvent, Reaction, ReactionType, Ready, TypingStartEvent, UserId,
};
use serenity::gateway::{ConnectionStage, GatewayError, ShardManager, ShardMessenger};
use serenity::http::Http;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::commands::{GuildMode, GuildModes};
use crate::config::DiscordConfig;
use crate::connector::{timed, Endpoint, CALL_TIMEOUT};
use crate::convert::markdown_to_matrix;
use crate::handle_remote::{self, Names};
use crate::ids;

/// Why a login stops when Discord refuses the gateway intents the bridge asks for.
pub const INTENTS_REFUSED: &str = "Discord refused the bot's privileged gateway intents. Enable \
    \"Message Content Intent\" and \"Server Members Intent\" for the bot in the developer portal \
    (Bot settings), or turn off network.message_content_intent / network.guild_members_intent in \
    the bridge config, then log in again";

/// More gateway connects than this within [`STORM_WINDOW`], with no session opened (READY
/// or RESUMED) among them, is a reconnect storm: the serenity client is ended.
pub const STORM_ATTEMPTS: usize = 5;
/// The sliding window in which gateway connects are counted.
pub const STORM_WINDOW: Duration = Duration::from_secs(5);
/// How often the held gateway URL lock is offered to a waiting connect: the most a connect
/// waits for it.
const GATE_POLL: Duration = Duration::from_millis(100);

/// Why a login is disconnected after a reconnect storm.
const STORM: &str = "the Discord gateway closes every connection at once";

/// The serenity client's gateway URL, locked by each of its websocket connects.
type GatewayUrl = Arc<tokio::sync::Mutex<String>>;

/// One login's connection to Discord. Built by [`crate::DiscordConnector`].
pub struct DiscordClient {
    pub(crate) shared: Arc<Shared>,
    task: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
}

/// What the client, its gateway task and its event handler share.
pub(crate) struct Shared {
    pub(crate) config: DiscordConfig,
    pub(crate) endpoint: Endpoint,
    pub(crate) login: LoginId,
    token: String,
    pub(crate) events: EventSender,
    pub(crate) http: Arc<Http>,
    /// The bot's user ID (the login ID).
    pub(crate) bot: Option<UserId>,
    state: Mutex<LoginState>,
    /// The gateway cache of the running serenity client, for names.
    cache: Mutex<Option<Arc<Cache>>>,
    /// The current shard runner's messenger (updated on every READY). Shutting down through
    /// it reaches the runner even after serenity restarted the shard by itself, when the
    /// shard manager's own shutdown can miss it.
    messenger: Mutex<Option<ShardMessenger>>,
    /// How many gateway sessions opened (READY or RESUMED) so far.
    sessions: AtomicU64,
    /// The webhook used per channel: (ID, token).
    pub(crate) webhooks: Mutex<HashMap<ChannelId, (u64, String)>>,
    /// The bots and webhooks of every login of this bridge, whose messages are not bridged
    /// back (shared through the connector).
    pub(crate) own: Arc<OwnAccounts>,
    /// Messages sent through a webhook: message ID → channel's webhook, for edits and deletes.
    pub(crate) webhook_messages: Mutex<HashMap<MessageId, (u64, String)>>,
    /// Messages the bridge is deleting, whose MESSAGE_DELETE echo is not reported.
    pub(crate) deleting: Mutex<HashSet<MessageId>>,
    /// How each server is bridged (set by the `guilds` commands, kept in the login's store).
    pub(crate) guild_modes: GuildModes,
    /// Guild channels seen: thread → its parent channel; `None` for channels that are not
    /// threads ([`crate::threads`]).
    pub(crate) channel_parents: Mutex<HashMap<ChannelId, Option<ChannelId>>>,
    /// Messages known to sit in a thread → the thread.
    pub(crate) thread_messages: Mutex<HashMap<MessageId, ChannelId>>,
    /// Keeps new messages of a channel in their order (see [`handle_remote::Sequencer`]).
    pub(crate) sequencer: handle_remote::Sequencer,
    /// Server nicknames given as names in rooms.
    room_names: handle_remote::RoomNames,
}

/// The Discord accounts of every login of this bridge: their bots, and the webhooks they
/// created. Messages from these are the bridge's own and are never bridged back, whichever
/// login sees them.
#[derive(Debug, Default)]
pub struct OwnAccounts {
    /// Bot user IDs.
    pub bots: Mutex<HashSet<u64>>,
    /// Webhook IDs.
    pub webhooks: Mutex<HashSet<u64>>,
}

/// Locks a mutex, ignoring poisoning (the data stays usable).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl DiscordClient {
    /// A client for `login` using `token`; does not connect yet.
    pub fn new(
        config: DiscordConfig,
        endpoint: Endpoint,
        own: Arc<OwnAccounts>,
        login: LoginId,
        token: String,
        events: EventSender,
    ) -> Self {
        let http = Arc::new(endpoint.http(&token));
        let guild_modes = GuildModes::new(events.store().clone());
        let bot = ids::parse_user(&RemoteUserId(login.0.clone())).ok();
        if let Some(bot) = bot {
            lock(&own.bots).insert(bot.get());
        }
        let shared = Shared {
            config,
            endpoint,
            login,
            token,
            events,
            http,
            bot,
            state: Mutex::new(LoginState::Connecting),
            cache: Mutex::new(None),
            messenger: Mutex::new(None),
            sessions: AtomicU64::new(0),
            webhooks: Mutex::new(HashMap::new()),
            own,
            webhook_messages: Mutex::new(HashMap::new()),
            deleting: Mutex::new(HashSet::new()),
            guild_modes,
            channel_parents: Mutex::new(HashMap::new()),
            thread_messages: Mutex::new(HashMap::new()),
            sequencer: handle_remote::Sequencer::default(),
            room_names: handle_remote::RoomNames::default(),
        };
        Self { shared: Arc::new(shared), task: Mutex::new(None) }
    }
}

impl Shared {
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

    fn intents(&self) -> GatewayIntents {
        let mut intents = GatewayIntents::GUILDS
            | GatewayIntents::GUILD_MESSAGES
            | GatewayIntents::GUILD_MESSAGE_REACTIONS
            | GatewayIntents::GUILD_MESSAGE_TYPING
            | GatewayIntents::DIRECT_MESSAGES
            | GatewayIntents::DIRECT_MESSAGE_REACTIONS
            | GatewayIntents::DIRECT_MESSAGE_TYPING;
        if self.config.message_content_intent {
            intents |= GatewayIntents::MESSAGE_CONTENT;
        }
        if self.config.guild_members_intent {
            intents |= GatewayIntents::GUILD_MEMBERS;
        }
        intents
    }

    /// The gateway loop; returns when cancelled, when the core is gone or on a bad token.
    async fn run(self: Arc<Self>, cancel: CancellationToken) {
        crate::handle_matrix::load_webhooks(&self).await;
        let mut backoff = Backoff::reconnect();
        let mut failures: u32 = 0;
        loop {
            if !self.report(LoginState::Connecting).await {
                return;
            }
            let builder =
                serenity::client::ClientBuilder::new_with_http(self.endpoint.http(&self.token), self.intents())
                    .event_handler(Handler { shared: self.clone() });
            let built = tokio::select! {
                () = cancel.cancelled() => return,
                built = std::future::IntoFuture::into_future(builder) => built,
            };
            let grace = Duration::from_secs(u64::from(self.config.disconnect_grace_seconds.max(1)));
            let reason = match built {
                Ok(mut client) => {
                    let manager = client.shard_manager.clone();
                    let url = client.ws_url.clone();
                    let ended = tokio::select! {
                        () = cancel.cancelled() => Ended::Cancelled,
                        result = client.start() => Ended::Finished(result),
                        () = self.pace_gateway(&url) => Ended::Storm,
                        never = self.watch_gateway(&manager, grace) => match never {},
                    };
                    // Whatever ended this client, its shard must not connect again: with an
                    // empty gateway URL (which serenity cannot parse) it gives up instead of
                    // resuming, after the clean close below or during a storm.
                    url.lock().await.clear();
                    let messenger = lock(&self.messenger).take();
                    if let (Ended::Cancelled, Some(messenger)) = (&ended, messenger) {
                        messenger.shutdown_clean();
                    }
                    let result = match ended {
                        Ended::Cancelled => {
                            manager.shutdown_all().await;
                            return;
                        }
                        Ended::Finished(result) => {
                            manager.shutdown_all().await;
                            result
                        }
                        Ended::Storm => {
                            tracing::warn!(login = %self.login, "discord gateway reconnect storm; ending the serenity client");
                            // Reported before the shard manager's shutdown, which can take seconds.
                            if matches!(*lock(&self.state), LoginState::Connected) {
                                backoff.reset();
                                failures = 0;
                            }
                            let alive = self.report(LoginState::TransientDisconnect { reason: STORM.to_owned() }).await;
                            manager.shutdown_all().await;
                            if !alive {
                                return;
                            }
                            Err(serenity::Error::Other(STORM))
                        }
                    };
                    match result {
                        Err(serenity::Error::Gateway(GatewayError::InvalidAuthentication)) => {
                            let reason = "Discord rejected the bot token; log in again with a valid token".to_owned();
                            let _ = self.report(LoginState::BadCredentials { reason }).await;
                            return;
                        }
                        Err(serenity::Error::Gateway(
                            GatewayError::DisallowedGatewayIntents | GatewayError::InvalidGatewayIntents,
                        )) => {
                            let _ = self.report(LoginState::BadCredentials { reason: INTENTS_REFUSED.to_owned() }).await;
                            return;
                        }
                        Err(error) => error.to_string(),
                        Ok(()) => "the gateway connection closed".to_owned(),
                    }
                }
                Err(error) => error.to_string(),
            };
            if matches!(*lock(&self.state), LoginState::Connected) {
                backoff.reset();
                failures = 0;
            }
            failures += 1;
            tracing::info!(login = %self.login, %reason, "discord gateway disconnected, reconnecting");
            if !self.report(LoginState::TransientDisconnect { reason }).await {
                return;
            }
            let max = self.config.max_reconnect_attempts;
            if max > 0 && failures >= max {
                let reason = format!("gave up after {failures} reconnect attempts");
                let _ = self.report(LoginState::TransientDisconnect { reason }).await;
                return;
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    /// Paces and counts the running client's gateway connections. serenity locks the gateway
    /// URL right before each websocket connect; this holds that lock and, every [`GATE_POLL`],
    /// hands it to a connect waiting for it (tokio's mutex is fair: a waiter gets it before
    /// anyone else, so `try_lock` after the release fails exactly when one was waiting).
    /// Once more than [`STORM_ATTEMPTS`] connections fall within [`STORM_WINDOW`] with no
    /// session opened since the first of them, empties the URL (the shard waiting for it
    /// fails to connect, without a connection) and returns.
    async fn pace_gateway(&self, url: &GatewayUrl) {
        let mut attempts: VecDeque<Instant> = VecDeque::new();
        let mut sessions = self.sessions.load(Ordering::Relaxed);
        let mut held = url.clone().lock_owned().await;
        loop {
            drop(held);
            held = match url.clone().try_lock_owned() {
                Ok(held) => {
                    tokio::time::sleep(GATE_POLL).await;
                    held
                }
                Err(_) => {
                    // A connect took the lock: one connection attempt.
                    let now = Instant::now();
                    let opened = self.sessions.load(Ordering::Relaxed);
                    if opened != sessions {
                        sessions = opened;
                        attempts.clear();
                    }
                    attempts.push_back(now);
                    while attempts.front().is_some_and(|t| now.duration_since(*t) > STORM_WINDOW) {
                        attempts.pop_front();
                    }
                    let mut held = url.clone().lock_owned().await;
                    if attempts.len() > STORM_ATTEMPTS {
                        held.clear();
                        return;
                    }
                    held
                }
            };
        }
    }

    /// Watches the running client's shard: while the login is connected, a shard that is not
    /// connected for `grace` (serenity reconnecting by itself, every 5 seconds at most, during
    /// an outage) is reported as a transient disconnect, so the user hears of it; READY or
    /// RESUMED report the login connected again. Never completes.
    async fn watch_gateway(&self, manager: &ShardManager, grace: Duration) -> std::convert::Infallible {
        let mut down_since: Option<Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let up = manager.runners.lock().await.values().any(|r| r.stage == ConnectionStage::Connected);
            let connected = matches!(*lock(&self.state), LoginState::Connected);
            if up || !connected {
                down_since = None;
                continue;
            }
            let since = *down_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= grace {
                down_since = None;
                tracing::info!(login = %self.login, "discord gateway down for {grace:?}; serenity keeps reconnecting");
                let reason = "the Discord gateway connection dropped".to_owned();
                self.report(LoginState::TransientDisconnect { reason }).await;
            }
        }
    }

    /// Names for the mentions of a message, from the message itself and the cache.
    pub(crate) fn names(&self, message_mentions: &[serenity::all::User], guild: Option<serenity::all::GuildId>) -> Names<'_> {
        let mut users: HashMap<String, String> = message_mentions
            .iter()
            .map(|u| (u.id.get().to_string(), handle_remote::display_name(u, u.member.as_ref().and_then(|m| m.nick.as_deref()))))
            .collect();
        let mut roles = HashMap::new();
        let mut channels = HashMap::new();
        let cache = lock(&self.cache).clone();
        if let (Some(cache), Some(guild)) = (cache, guild) {
            if let Some(guild) = cache.guild(guild) {
                for (id, role) in &guild.roles {
                    roles.insert(id.get().to_string(), role.name.clone());
                }
                for (id, channel) in &guild.channels {
                    channels.insert(id.get().to_string(), channel.name.clone());
                }
                for (id, member) in &guild.members {
                    users.entry(id.get().to_string()).or_insert_with(|| handle_remote::display_name(&member.user, member.nick.as_deref()));
                }
            }
        }
        Names { users, roles, channels, events: &self.events }
    }

    /// Whether a message came from the bridge itself (the bot or one of its webhooks).
    pub(crate) fn is_own(&self, author: UserId, webhook: Option<u64>) -> bool {
        lock(&self.own.bots).contains(&author.get()) || webhook.is_some_and(|w| lock(&self.own.webhooks).contains(&w))
    }

    /// The gateway cache of the running client, once READY.
    pub(crate) fn cache(&self) -> Option<Arc<Cache>> {
        lock(&self.cache).clone()
    }

    /// Whether events of this server are dropped (`guilds unbridge`).
    async fn muted(&self, guild: Option<serenity::all::GuildId>) -> bool {
        match guild {
            Some(guild) => self.guild_modes.get(guild).await == GuildMode::Off,
            None => false,
        }
    }

    fn sender(&self, user: UserId) -> Sender {
        Sender { user: ids::user_id(user), is_from_me: Some(user) == self.bot }
    }
}

/// How one run of the serenity client ended.
enum Ended {
    /// The login is disconnecting.
    Cancelled,
    /// serenity returned.
    Finished(serenity::Result<()>),
    /// A reconnect storm ([`Shared::pace_gateway`]).
    Storm,
}

/// serenity's event handler of one login: turns gateway events into remote events.
struct Handler {
    shared: Arc<Shared>,
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        *lock(&self.shared.cache) = Some(ctx.cache.clone());
        *lock(&self.shared.messenger) = Some(ctx.shard.clone());
        self.shared.sessions.fetch_add(1, Ordering::Relaxed);
        tracing::info!(login = %self.shared.login, guilds = ready.guilds.len(), "discord gateway ready");
        self.shared.report(LoginState::Connected).await;
    }

    async fn resume(&self, _ctx: Context, _event: serenity::all::ResumedEvent) {
        tracing::info!(login = %self.shared.login, "discord gateway session resumed");
        self.shared.sessions.fetch_add(1, Ordering::Relaxed);
        self.shared.report(LoginState::Connected).await;
    }

    async fn message(&self, _ctx: Context, message: Message) {
        let shared = &self.shared;
        // Taken first, before anything that waits: the order the gateway sent them in.
        let turn = shared.sequencer.enter(message.channel_id.get(), message.id.get());
        if shared.is_own(message.author.id, message.webhook_id.map(|w| w.get()))
            || !handle_remote::is_relayable(&message)
            || shared.muted(message.guild_id).await
        {
            return;
        }
        let Some(bot) = shared.bot else { return };
        let (chat, root) = shared.locate(message.channel_id, message.guild_id).await;
        if root.is_some() {
            shared.note_thread_message(message.id, message.channel_id);
        }
        let mut event = {
            let names = shared.names(&message.mentions, message.guild_id);
            handle_remote::message_event(&message, &names, &shared.login, bot)
        };
        // In a server, the author's nickname is their name in its rooms: set before the
        // message (in a room made for it first, when it is the room's first message).
        let named = message.guild_id.and(message.member.as_ref()).and_then(|member| {
            shared.room_names.news(&chat, message.author.id, member.nick.as_deref())
        });
        if let RemoteEvent::Message { chat: event_chat, thread_root, .. } = &mut event {
            *event_chat = chat.clone();
            *thread_root = root;
        }
        turn.wait().await;
        if let Some(info) = named {
            shared.events.send(RemoteEvent::ChatCreated { chat: chat.clone() }).await;
            shared.events.send(RemoteEvent::ChatInfoChanged { chat, info }).await;
        }
        shared.events.send(event).await;
    }

    async fn message_update(&self, _ctx: Context, _old: Option<Message>, _new: Option<Message>, event: MessageUpdateEvent) {
        let shared = &self.shared;
        let (Some(author), Some(content)) = (event.author.as_ref(), event.content.as_ref()) else { return };
        if shared.is_own(author.id, event.webhook_id.flatten().map(|w| w.get())) || shared.muted(event.guild_id).await {
            return;
        }
        let (chat, _) = shared.locate(event.channel_id, event.guild_id).await;
        let update = {
            let names = shared.names(event.mentions.as_deref().unwrap_or(&[]), event.guild_id);
            let converted = markdown_to_matrix(content, &names);
            let timestamp = event.edited_timestamp.map_or(0, |t| crate::ids::millis(&t));
            RemoteEvent::Edit {
                chat,
                id: ids::message_id(event.id),
                sender: shared.sender(author.id),
                timestamp,
                parts: vec![bridge_core::network::events::MessagePart {
                    id: bridge_core::network::PartId::from(""),
                    content: bridge_core::network::events::MessageContent::Text {
                        body: converted.body,
                        html: converted.html,
                        mentions: converted.mentions,
                    },
                }],
            }
        };
        shared.events.send(update).await;
    }

    async fn message_delete(
        &self,
        _ctx: Context,
        channel: ChannelId,
        message: MessageId,
        guild: Option<serenity::all::GuildId>,
    ) {
        let shared = &self.shared;
        let webhook = lock(&shared.webhook_messages).remove(&message);
        let deleting = lock(&shared.deleting).remove(&message);
        if deleting || webhook.is_some() || shared.muted(guild).await {
            return;
        }
        // Discord does not say who deleted a message.
        let Some(bot) = shared.bot else { return };
        let (chat, _) = shared.locate(channel, guild).await;
        let event = RemoteEvent::Delete {
            chat,
            id: ids::message_id(message),
            sender: Sender { user: ids::user_id(bot), is_from_me: false },
        };
        shared.events.send(event).await;
    }

    async fn reaction_add(&self, _ctx: Context, reaction: Reaction) {
        self.reaction(reaction, true).await;
    }

    async fn reaction_remove(&self, _ctx: Context, reaction: Reaction) {
        self.reaction(reaction, false).await;
    }

    async fn typing_start(&self, _ctx: Context, event: TypingStartEvent) {
        let shared = &self.shared;
        if Some(event.user_id) == shared.bot || shared.muted(event.guild_id).await {
            return;
        }
        let (chat, _) = shared.locate(event.channel_id, event.guild_id).await;
        let typing = RemoteEvent::Typing {
            chat,
            sender: shared.sender(event.user_id),
            timeout_ms: 10_000,
        };
        shared.events.send(typing).await;
    }

    async fn channel_update(&self, _ctx: Context, _old: Option<GuildChannel>, new: GuildChannel) {
        let shared = &self.shared;
        let info = ChatInfo {
            name: Some(new.name.clone()),
            topic: new.topic.clone(),
            parent: Some(ids::guild_id(new.guild_id)),
            ..ChatInfo::default()
        };
        let chat = handle_remote::chat_ref(new.id, Some(new.guild_id), &shared.login);
        shared.events.send(RemoteEvent::ChatInfoChanged { chat, info }).await;
    }

    async fn thread_create(&self, _ctx: Context, thread: GuildChannel) {
        self.shared.note_thread(&thread);
    }

    async fn channel_create(&self, _ctx: Context, channel: GuildChannel) {
        let shared = &self.shared;
        if crate::threads::is_thread(channel.kind) {
            shared.note_thread(&channel);
            return;
        }
        lock(&shared.channel_parents).insert(channel.id, None);
        if !crate::commands::is_text(channel.kind) || shared.guild_modes.get(channel.guild_id).await != GuildMode::All {
            return;
        }
        tracing::info!(login = %shared.login, channel = %channel.id, "new channel in a server bridged in full; opening its portal");
        let chat = handle_remote::chat_ref(channel.id, Some(channel.guild_id), &shared.login);
        shared.events.send(RemoteEvent::ChatCreated { chat }).await;
    }

    async fn channel_delete(&self, _ctx: Context, channel: GuildChannel, _messages: Option<Vec<Message>>) {
        let shared = &self.shared;
        lock(&shared.channel_parents).remove(&channel.id);
        if crate::threads::is_thread(channel.kind) || !crate::commands::is_text(channel.kind) || shared.muted(Some(channel.guild_id)).await {
            return;
        }
        let chat = handle_remote::chat_ref(channel.id, Some(channel.guild_id), &shared.login);
        shared.events.send(RemoteEvent::ChatDeleted { chat }).await;
    }

    async fn thread_delete(&self, _ctx: Context, thread: serenity::all::PartialGuildChannel, _full: Option<GuildChannel>) {
        lock(&self.shared.channel_parents).remove(&thread.id);
    }
}

impl Handler {
    async fn reaction(&self, reaction: Reaction, add: bool) {
        let shared = &self.shared;
        let Some(user) = reaction.user_id else { return };
        if Some(user) == shared.bot || shared.muted(reaction.guild_id).await {
            return;
        }
        let (chat, _) = shared.locate(reaction.channel_id, reaction.guild_id).await;
        let emoji_id = ids::emoji_id(&reaction.emoji);
        let event = if add {
            let emoji = match &reaction.emoji {
                ReactionType::Unicode(text) => text.clone(),
                ReactionType::Custom { name, .. } => format!(":{}:", name.as_deref().unwrap_or("emoji")),
                other => other.to_string(),
            };
            RemoteEvent::ReactionAdd {
                chat,
                target: ids::message_id(reaction.message_id),
                sender: shared.sender(user),
                emoji_id,
                emoji,
                timestamp: now_ms(),
            }
        } else {
            RemoteEvent::ReactionRemove { chat, target: ids::message_id(reaction.message_id), sender: shared.sender(user), emoji_id }
        };
        shared.events.send(event).await;
    }
}

/// Unix milliseconds now.
fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[async_trait::async_trait]
impl NetworkClient for DiscordClient {
    async fn connect(&self) {
        let mut task = lock(&self.task);
        if task.as_ref().is_some_and(|(_, handle)| !handle.is_finished()) {
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
            if tokio::time::timeout(Duration::from_secs(10), &mut handle).await.is_err() {
                handle.abort();
            }
        }
    }

    fn state(&self) -> LoginState {
        lock(&self.shared.state).clone()
    }

    async fn send_message(&self, message: OutgoingMessage) -> Result<SentMessage, NetworkError> {
        crate::handle_matrix::send_message(&self.shared, message).await
    }

    async fn chat_info(&self, chat: &ChatRef) -> Result<ChatInfo, NetworkError> {
        if let Some(guild) = ids::parse_guild(&chat.id) {
            let cached = lock(&self.shared.cache).clone().and_then(|cache| cache.guild(guild).map(|g| g.name.clone()));
            let name = match cached {
                Some(name) => name,
                None => timed(self.shared.http.get_guild(guild)).await?.name,
            };
            return Ok(ChatInfo { name: Some(name), ..ChatInfo::default() });
        }
        let channel = ids::parse_chat(&chat.id)?;
        match timed(self.shared.http.get_channel(channel)).await? {
            Channel::Guild(channel) => Ok(ChatInfo {
                name: Some(channel.name.clone()),
                topic: channel.topic.clone(),
                parent: Some(ids::guild_id(channel.guild_id)),
                ..ChatInfo::default()
            }),
            Channel::Private(dm) => {
                let mut members = vec![ChatMember { user: ids::user_id(dm.recipient.id), nickname: None, is_admin: false }];
                if let Some(bot) = self.shared.bot {
                    members.push(ChatMember { user: ids::user_id(bot), nickname: None, is_admin: false });
                }
                Ok(ChatInfo { is_direct: true, members: Some(members), ..ChatInfo::default() })
            }
            _ => Err(NetworkError::Unsupported("this kind of Discord channel".to_owned())),
        }
    }

    async fn user_info(&self, user: &RemoteUserId) -> Result<UserInfo, NetworkError> {
        let id = ids::parse_user(user)?;
        let user = timed(self.shared.http.get_user(id)).await?;
        Ok(handle_remote::user_info(&user, None))
    }

    async fn download_media(&self, source: &str) -> Result<(Bytes, Option<String>), NetworkError> {
        let url = crate::handle_matrix::media_url(&self.shared.endpoint, source)?;
        let response = reqwest::Client::new()
            .get(url)
            .timeout(CALL_TIMEOUT * 3)
            .send()
            .await
            .map_err(|e| NetworkError::Remote(format!("download failed: {e}")))?;
        if !response.status().is_success() {
            return Err(NetworkError::NotFound(format!("media answered {}", response.status())));
        }
        let mime = response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = response.bytes().await.map_err(|e| NetworkError::Remote(format!("download failed: {e}")))?;
        Ok((bytes, mime))
    }

    async fn logout(&self) -> Result<(), NetworkError> {
        // A bot token cannot be revoked through the API; forgetting it is the logout.
        self.disconnect().await;
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

    fn history(&self) -> Option<&dyn bridge_core::network::client::HistoryHandler> {
        Some(self)
    }
}
