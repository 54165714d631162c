//! The portal actor: one task per portal that applies its events in order.
//!
//! The actor owns the portal's row (loaded once, written through) and the little state
//! that only matters while the process runs (who is typing, edits just sent from Matrix).
//! It stops when the bridge shuts down or the portal is deleted.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use ruma::{OwnedRoomId, OwnedUserId};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::{chat_ref, Handle, PortalError, PortalMsg};
use crate::{
    bridge::{logins::LiveLogin, Bridge},
    network::{events::ChatRef, LoginId},
    store::{Portal, PortalKey},
};

/// How many events may wait in one portal's queue before senders wait.
pub const QUEUE_SIZE: usize = 64;

/// How long an actor waits for work before it stops; its portal reloads from the store with
/// the next event, so a bridge with thousands of quiet portals keeps no task for them.
pub const IDLE_STOP: std::time::Duration = std::time::Duration::from_secs(300);

/// [`IDLE_STOP`], or in debug builds `BRIDGE_DEBUG_PORTAL_IDLE_SECS` (for the tests).
fn idle_stop() -> std::time::Duration {
    if cfg!(debug_assertions) {
        if let Some(secs) = std::env::var("BRIDGE_DEBUG_PORTAL_IDLE_SECS").ok().and_then(|v| v.parse().ok()) {
            return std::time::Duration::from_secs(secs);
        }
    }
    IDLE_STOP
}

/// Starts the actor of `key` and returns its queue.
pub(super) fn spawn(bridge: Arc<Bridge>, key: PortalKey) -> Handle {
    let (tx, rx) = mpsc::channel(QUEUE_SIZE);
    let span = tracing::info_span!("portal", chat = %key.remote_id, receiver = %key.receiver);
    tokio::spawn(run(bridge, key, rx).instrument(span));
    Handle { tx }
}

async fn run(bridge: Arc<Bridge>, key: PortalKey, mut rx: mpsc::Receiver<PortalMsg>) {
    let portal = match bridge.store.portals().get_by_key(&key).await {
        Ok(portal) => portal,
        Err(e) => {
            tracing::error!(error = %e, "could not load the portal; stopping its actor");
            return;
        }
    };
    let shutdown = bridge.shutdown.clone();
    // Events parked during a homeserver outage (before a restart, say) are applied first.
    let parked = matches!(bridge.store.remote_pending().first(&key).await, Ok(Some(_)));
    let mut actor = Actor {
        parked,
        drain_at: parked.then(tokio::time::Instant::now),
        drain_backoff: crate::backoff::Backoff::new(std::time::Duration::from_secs(1), std::time::Duration::from_secs(30)),
        bridge,
        key,
        portal,
        typing: HashSet::new(),
        sent_edits: HashMap::new(),
        members_checked: HashSet::new(),
        puppet_events: HashSet::new(),
        puppet_receipts: HashSet::new(),
    };
    let idle = idle_stop();
    loop {
        let drain_at = actor.drain_at;
        let msg = tokio::select! {
            // Parked events are older than anything queued: they go first.
            biased;
            _ = shutdown.cancelled() => return,
            _ = async { tokio::time::sleep_until(drain_at.unwrap_or_else(tokio::time::Instant::now)).await }, if drain_at.is_some() => {
                actor.drain_parked().await;
                continue;
            }
            msg = rx.recv() => msg,
            // Nothing to do for a while (and nothing parked): stop. Senders that find the
            // queue closed start a fresh actor.
            () = tokio::time::sleep(idle), if drain_at.is_none() => {
                rx.close();
                while let Ok(msg) = rx.try_recv() {
                    if !actor.handle(msg).await {
                        break;
                    }
                }
                actor.bridge.portals.forget_stopped(&actor.key);
                tracing::debug!("portal idle; its actor stopped");
                return;
            }
        };
        let Some(msg) = msg else { return };
        if !actor.handle(msg).await {
            return;
        }
    }
}

/// The state of one portal's actor.
pub(super) struct Actor {
    pub bridge: Arc<Bridge>,
    pub key: PortalKey,
    /// The stored portal, once it exists.
    pub portal: Option<Portal>,
    /// Matrix users whose typing was forwarded to the network.
    pub typing: HashSet<OwnedUserId>,
    /// Remote message → body of the edit just sent from Matrix, to skip its echo.
    pub sent_edits: HashMap<String, String>,
    /// Matrix users of logins already checked to be in the room since the actor started.
    pub members_checked: HashSet<OwnedUserId>,
    /// Events double puppets sent here (redactions included), whose echoes are skipped.
    pub puppet_events: HashSet<String>,
    /// Read receipts double puppets sent here (user, event), whose echoes are skipped.
    pub puppet_receipts: HashSet<(OwnedUserId, String)>,
    /// Whether remote events of this portal wait in the store for the homeserver: new
    /// ones are parked behind them, so that order holds.
    pub parked: bool,
    /// When to try the parked events next.
    pub drain_at: Option<tokio::time::Instant>,
    /// The schedule of those attempts.
    pub drain_backoff: crate::backoff::Backoff,
}

impl Actor {
    /// Handles one message; `false` stops the actor.
    async fn handle(&mut self, msg: PortalMsg) -> bool {
        match msg {
            PortalMsg::Remote { login, event, done } => {
                self.handle_remote(login, event).await;
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            PortalMsg::Matrix(event, ack) => {
                let cause = event.get("event_id").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
                crate::matrix::txn::scoped(&cause, self.handle_matrix(event)).await;
                ack.done().await;
            }
            PortalMsg::Ephemeral(event) => self.handle_ephemeral(event).await,
            PortalMsg::CatchUp { login, done } => {
                let looked = match self.live(&login) {
                    Ok(live) => self.catch_up(&live).await,
                    Err(_) => false,
                };
                let _ = done.send(looked);
            }
            PortalMsg::CreateRoom { login } => self.create_recent(login).await,
            PortalMsg::EnsureRoom { login, other, reply } => {
                let result = self.start_chat(&login, other).await;
                let _ = reply.send(result);
            }
            PortalMsg::SetRelay { login, reply } => {
                let result = self.set_relay(login).await;
                let _ = reply.send(result);
            }
            PortalMsg::Delete { reply } => {
                let result = self.delete_portal().await;
                let ok = result.is_ok();
                let _ = reply.send(result);
                return !ok;
            }
        }
        true
    }

    /// The portal's room, if it has one.
    pub fn room(&self) -> Option<OwnedRoomId> {
        self.portal.as_ref()?.mxid.as_deref().and_then(|r| OwnedRoomId::try_from(r).ok())
    }

    /// The chat this portal stands for.
    pub fn chat(&self) -> ChatRef {
        chat_ref(&self.key)
    }

    /// The live login with this ID.
    pub fn live(&self, login: &LoginId) -> Result<LiveLogin, PortalError> {
        self.bridge.logins.get(login).ok_or_else(|| PortalError::NoLogin(login.to_string()))
    }

    /// Writes the portal row.
    pub async fn save(&self) -> Result<(), PortalError> {
        if let Some(portal) = &self.portal {
            self.bridge.store.portals().upsert(portal).await?;
        }
        Ok(())
    }

    async fn start_chat(&mut self, login: &LoginId, other: Option<crate::network::RemoteUserId>) -> Result<OwnedRoomId, PortalError> {
        let live = self.live(login)?;
        if let Some(room) = self.room() {
            // An existing room: invite the user again in case they left (and to the
            // room's parent space).
            self.members_checked.remove(&live.user);
            self.ensure_user_invited(&live, &room).await;
            return Ok(room);
        }
        self.ensure_room(&live, other.as_ref()).await
    }

    async fn set_relay(&mut self, login: Option<LoginId>) -> Result<(), PortalError> {
        let portal = self.portal.as_mut().ok_or(PortalError::NoRoom)?;
        portal.relay_login_id = login.map(|l| l.0);
        self.save().await
    }

    async fn create_recent(&mut self, login: LoginId) {
        let Ok(live) = self.live(&login) else { return };
        if self.room().is_none() {
            if let Err(e) = self.ensure_room(&live, None).await {
                tracing::warn!(error = %e, "could not create a portal for a recent chat");
            }
        }
    }
}
