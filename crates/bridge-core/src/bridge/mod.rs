//! The running bridge: wires the store, the Matrix client, the appservice server, the
//! inbox worker and the network connector together, and stops them all on one signal.

pub mod ids;
pub mod logins;
mod handler;
mod state_notices;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use ruma::{OwnedServerName, UserId};
use tokio_util::sync::CancellationToken;

use tokio::sync::mpsc;

use crate::{
    appservice::{inbox::Inbox, server},
    login::LoginSessions,
    metrics::Metrics,
    network::{LoginId, RemoteEvent},
    portal::Portals,
    backoff::Backoff,
    config::{AppserviceConfig, BridgeConfig, Config, HomeserverConfig, PermissionLevel},
    matrix::{Intent, MatrixClient, MatrixError},
    network::{Network, NetworkConnector, NetworkInfo},
    store::Store,
};
use ids::GhostNamer;

/// Everything the parts of a running bridge share. Cheap to clone through `Arc`.
pub struct Bridge {
    /// Static facts about the network.
    pub info: NetworkInfo,
    /// The `homeserver` config section.
    pub homeserver: HomeserverConfig,
    /// The `appservice` config section.
    pub appservice: AppserviceConfig,
    /// The `bridge` config section.
    pub settings: BridgeConfig,
    /// The database.
    pub store: Store,
    /// The Matrix client (bot and ghosts).
    pub matrix: MatrixClient,
    /// The network's connector.
    pub connector: Arc<dyn NetworkConnector>,
    /// Maps remote user IDs to ghost Matrix IDs.
    pub ghosts: GhostNamer,
    /// Cancelled when the bridge shuts down.
    pub shutdown: CancellationToken,
    /// When the bridge started, for `ping`.
    pub started: std::time::Instant,
    /// The live logins and their clients.
    pub logins: logins::Logins,
    /// The portal actors.
    pub portals: Portals,
    /// Login flows in progress.
    pub login_sessions: LoginSessions,
    /// The Prometheus counters.
    pub metrics: Arc<Metrics>,
    /// The disconnections being told to the logins' owners.
    pub(crate) state_notices: state_notices::StateNotices,
    /// Where login clients report remote events (see [`crate::network::EventSender`]).
    pub remote_tx: mpsc::Sender<(LoginId, RemoteEvent)>,
    /// Where logins report tracked events ([`crate::network::EventSender::send_tracked`]).
    pub tracked_tx: mpsc::Sender<crate::network::events::TrackedEvent>,
    /// The double-puppet clients (see [`crate::ghost::puppet`]).
    pub puppets: crate::ghost::puppet::DoublePuppets,
    /// Signed public media URLs, when `appservice.public_media.enabled`.
    pub public_media: Option<crate::public_media::PublicMedia>,
    /// End-to-bridge encryption: the bot's device, once set up.
    pub crypto: crate::crypto::CryptoSlot,
}

impl Bridge {
    /// The bridge bot's Matrix ID.
    pub fn bot(&self) -> &UserId {
        self.matrix.bot()
    }

    /// The bridge bot's intent.
    pub fn bot_intent(&self) -> Intent {
        self.matrix.bot_intent()
    }

    /// Whether `user` is the bot or one of this bridge's ghosts (whose events are echoes).
    pub fn is_bridge_user(&self, user: &UserId) -> bool {
        user == self.bot() || self.ghosts.remote_id(user).is_some()
    }

    /// The permission level of a Matrix user.
    pub fn permission(&self, user: &UserId) -> PermissionLevel {
        self.settings.permission_for(user.as_str())
    }
}

/// Runs a bridge for network `N` with a loaded config until SIGINT or SIGTERM.
pub async fn run<N: Network>(config: Config<N::Config>, config_path: PathBuf) -> anyhow::Result<()> {
    let info = N::info();
    let shutdown = CancellationToken::new();
    let Config { homeserver, appservice, database, bridge: settings, network, .. } = config;
    tracing::info!(network = info.id, config = %config_path.display(), "starting bridge");

    let store = Store::connect(&database.uri)
        .await
        .with_context(|| format!("could not open the database at database.uri in {}", config_path.display()))?;
    store.migrate().await.context("could not migrate the database")?;

    let server_name = OwnedServerName::try_from(homeserver.domain.as_str())
        .context("homeserver.domain is not a valid server name")?;
    let matrix = MatrixClient::new(
        homeserver.address.clone(),
        server_name,
        appservice.as_token.clone(),
        &appservice.bot.username,
    )
    .context("could not build the Matrix client")?;
    let connector = N::connector(network).context("could not start the network connector")?;

    let bind = format!("{}:{}", appservice.hostname, appservice.port);
    let listener = tokio::net::TcpListener::bind(&bind).await.with_context(|| {
        format!("could not listen on {bind} (appservice.hostname / appservice.port): is another bridge running?")
    })?;

    let (remote_tx, remote_rx) = mpsc::channel(1024);
    let (tracked_tx, tracked_rx) = mpsc::channel(1024);
    let public_media = appservice.public_media.enabled.then(|| {
        let base = appservice.public_media.public_address.clone().unwrap_or_else(|| appservice.address.clone());
        crate::public_media::PublicMedia::new(base, &appservice.as_token)
    });
    let crypto = crate::crypto::CryptoSlot::new(settings.encryption.allow);
    let bridge = Arc::new(Bridge {
        crypto,
        public_media,
        info,
        ghosts: GhostNamer::new(&appservice.username_template, &homeserver.domain),
        homeserver,
        appservice,
        settings,
        store: store.clone(),
        matrix,
        connector,
        shutdown: shutdown.clone(),
        started: std::time::Instant::now(),
        logins: logins::Logins::default(),
        portals: Portals::default(),
        login_sessions: LoginSessions::default(),
        remote_tx,
        tracked_tx,
        metrics: Arc::new(Metrics::default()),
        state_notices: Default::default(),
        puppets: Default::default(),
    });

    let handler = Arc::new(handler::Handler::new(bridge.clone()));
    let inbox = Inbox::new(store, bridge.metrics.clone());
    let gauge_bridge = Arc::downgrade(&bridge);
    let live_gauges = Arc::new(move |gauges: &mut crate::metrics::Gauges| {
        if let Some(bridge) = gauge_bridge.upgrade() {
            gauges.logins = bridge.logins.all().len() as u64;
            gauges.portal_actors = bridge.portals.running() as u64;
        }
    });
    let state = server::ServerState::new(
        &bridge.appservice.hs_token,
        inbox.clone(),
        handler.clone(),
        bridge.metrics.clone(),
        live_gauges,
    );
    let router = server::router(state, bridge.appservice.max_body_bytes).merge(crate::provisioning::router(bridge.clone()))
        .merge(crate::public_media::router(bridge.clone()));
    let server_task = tokio::spawn(server::serve(listener, router, shutdown.clone()));

    spawn_signal_handler(shutdown.clone());
    if let Err(e) = wait_for_homeserver(&bridge).await {
        if e.is::<ShutdownWhileWaiting>() {
            // A stop asked for before the homeserver answered is a clean exit.
            server_task.abort();
            return Ok(());
        }
        return Err(e);
    }
    startup_checks(&bridge).await;
    start_encryption(&bridge).await;
    let worker = tokio::spawn(inbox.run(handler, shutdown.clone()));
    let remote_worker = tokio::spawn(run_remote_events(bridge.clone(), remote_rx, tracked_rx));
    if let Err(e) = bridge.load_logins().await {
        tracing::error!(error = %format!("{e:#}"), "could not load the stored logins");
    }
    bridge.portals.resume_parked(&bridge).await;
    tracing::info!(bot = %bridge.bot(), "bridge is running");

    shutdown.cancelled().await;
    tracing::info!("shutting down");
    bridge.disconnect_logins().await;
    remote_worker.abort();
    let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    match tokio::time::timeout(Duration::from_secs(10), server_task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "appservice server stopped with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "appservice server task failed"),
        _ => {}
    }
    tracing::info!("stopped");
    Ok(())
}

/// Hands each remote event to the bridge until shutdown.
async fn run_remote_events(
    bridge: Arc<Bridge>,
    mut rx: mpsc::Receiver<(LoginId, RemoteEvent)>,
    mut tracked: mpsc::Receiver<crate::network::events::TrackedEvent>,
) {
    loop {
        tokio::select! {
            _ = bridge.shutdown.cancelled() => return,
            next = rx.recv() => match next {
                Some((login, event)) => {
                    bridge.metrics.remote_event();
                    bridge.handle_remote_event(login, event, None).await
                }
                None => return,
            },
            Some(next) = tracked.recv() => {
                bridge.metrics.remote_event();
                bridge.handle_remote_event(next.login, next.event, Some(next.done)).await
            }
        }
    }
}

fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
            _ = shutdown.cancelled() => return,
        }
        tracing::info!("signal received");
        shutdown.cancel();
    });
}

/// Waits until the homeserver answers, retrying with backoff; gives up on shutdown. Says
/// why it does not answer: connection refused, name not found, TLS, or the as_token refused.
async fn wait_for_homeserver(bridge: &Bridge) -> anyhow::Result<()> {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut last_cause = String::new();
    loop {
        let result = bridge.matrix.versions().await;
        let cause = match result {
            Ok(_) => return Ok(()),
            Err(e) => describe_homeserver_error(&e),
        };
        let delay = backoff.next_delay();
        if cause != last_cause {
            tracing::warn!(address = %bridge.homeserver.address, retry_in = ?delay, "{cause}; retrying");
            last_cause = cause;
        } else {
            tracing::debug!(address = %bridge.homeserver.address, retry_in = ?delay, "{cause}; retrying");
        }
        tokio::select! {
            _ = bridge.shutdown.cancelled() => {
                tracing::info!("shut down while waiting for the homeserver");
                return Err(ShutdownWhileWaiting.into());
            }
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// The bridge was asked to stop before the homeserver answered: not a failure.
#[derive(Debug, thiserror::Error)]
#[error("shut down while waiting for the homeserver")]
pub struct ShutdownWhileWaiting;

/// Why the homeserver at `homeserver.address` cannot be used, in words an operator can act on.
pub(crate) fn describe_homeserver_error(e: &MatrixError) -> String {
    let chain = {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text.to_lowercase()
    };
    match e {
        MatrixError::Api { status, errcode, .. } if status.as_u16() == 401 || status.as_u16() == 403 || errcode == "M_UNKNOWN_TOKEN" => format!(
            "the homeserver rejected the bridge's as_token ({errcode}): the registration file the homeserver loads \
             (app_service_config_files) does not match appservice.as_token in this config; regenerate it with \
             generate-registration and restart the homeserver"
        ),
        MatrixError::Api { status, errcode, error } => format!("the homeserver at homeserver.address answered {status} {errcode}: {error}"),
        MatrixError::Timeout(after) => format!("the homeserver at homeserver.address did not answer within {after:?}"),
        _ if chain.contains("dns") || chain.contains("failed to lookup") || chain.contains("name or service not known") => {
            "the homeserver's name in homeserver.address could not be resolved (DNS)".to_owned()
        }
        _ if chain.contains("certificate") || chain.contains("tls") || chain.contains("handshake") => {
            format!("a TLS connection to homeserver.address failed ({chain}); check the scheme (http/https) and the certificate")
        }
        _ if chain.contains("connection refused") => "the homeserver refused the connection (homeserver.address): is it running and listening there?".to_owned(),
        _ => format!("the homeserver is not reachable at homeserver.address ({chain})"),
    }
}

/// Sets up the bot's encryption device when `bridge.encryption.allow` is on. A failure
/// leaves encryption off with the reason, which encrypted rooms are told.
async fn start_encryption(bridge: &Arc<Bridge>) {
    if !bridge.settings.encryption.allow {
        return;
    }
    let weak = Arc::downgrade(bridge);
    let is_bridge_user: crate::crypto::IsBridgeUser = Arc::new(move |user: &str| {
        let Some(bridge) = weak.upgrade() else { return false };
        ruma::UserId::parse(user).is_ok_and(|user| bridge.is_bridge_user(&user))
    });
    let name = format!("{} bridge", bridge.info.display_name);
    let started = crate::crypto::Crypto::start(
        bridge.matrix.clone(),
        bridge.store.clone(),
        bridge.settings.encryption.clone(),
        &name,
        is_bridge_user,
    )
    .await;
    match started {
        Ok(crypto) => {
            bridge.matrix.set_encryptor(crypto.clone());
            bridge.crypto.set(crate::crypto::CryptoStatus::Ready(crypto));
        }
        Err(e) => {
            let reason = format!("{e:#}");
            tracing::error!(error = %reason, "encryption is off: the bot's device could not be set up; the bot will say so in encrypted rooms");
            bridge.crypto.set(crate::crypto::CryptoStatus::Failed(reason));
        }
    }
}

/// Checks the bridge's registration from both sides and sets the bot's profile.
/// Problems are logged with what to fix; the bridge keeps running so that it serves
/// once the operator fixes the homeserver side.
async fn startup_checks(bridge: &Bridge) {
    let bot = bridge.bot_intent();
    match bridge.matrix.whoami().await {
        Ok(user) if user == bridge.bot() => {}
        Ok(user) => tracing::error!(
            expected = %bridge.bot(), got = %user,
            "the homeserver knows this as_token as another user: check appservice.bot.username and the registration"
        ),
        Err(e) => {
            tracing::error!(error = %e, "the homeserver rejected the as_token: is the registration file loaded by the homeserver (app_service_config_files) and up to date?");
            return;
        }
    }
    match bridge.matrix.appservice_ping(&bridge.appservice.id, None).await {
        Ok(rtt) => tracing::info!(round_trip = ?rtt, "homeserver can reach the bridge"),
        Err(e) => tracing::error!(
            error = %e,
            address = %bridge.appservice.address,
            "the homeserver cannot reach the bridge at appservice.address; events will not arrive until it can"
        ),
    }
    if let Some(puppet) = bridge.puppet_intent(bridge.bot()) {
        match puppet.client().whoami().await {
            Ok(_) => tracing::info!("double puppeting is set up for this homeserver"),
            Err(e) => tracing::error!(
                error = %e,
                "the homeserver rejected the double-puppet token (bridge.double_puppet.secrets): is its registration loaded by the homeserver?"
            ),
        }
    }
    let bot_cfg = &bridge.appservice.bot;
    if !bot_cfg.displayname.is_empty() {
        if let Err(e) = bot.set_display_name(&bot_cfg.displayname).await {
            tracing::warn!(error = %e, "could not set the bot's display name");
        }
    }
    let avatar = ruma::OwnedMxcUri::from(bot_cfg.avatar.as_str());
    if avatar.is_valid() {
        if let Err(e) = bot.set_avatar_url(Some(&avatar)).await {
            tracing::warn!(error = %e, "could not set the bot's avatar");
        }
    }
}
