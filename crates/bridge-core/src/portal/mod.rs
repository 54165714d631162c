//! Portals: Matrix rooms that stand for remote chats, each run by its own actor task.
//!
//! [`Portals`] is the registry: it maps a chat's [`PortalKey`] and its room ID to the
//! portal's actor and routes events there — remote events by chat, Matrix events and
//! ephemeral events by room. Each actor ([`actor`]) handles its events in order from a
//! bounded queue; portals run in parallel. No lock is held across an `.await`.
//!
//! The work of an actor is split by direction: [`create`] (rooms, spaces, `m.bridge`),
//! [`remote`] (remote → Matrix), [`matrix`] (Matrix → remote), [`backfill`] (history and
//! catch-up), with the pure conversions in [`convert`].
//!
//! A deleted chat ([`RemoteEvent::ChatDeleted`]) keeps its Matrix room: the bot posts a
//! notice, the portal and its message map are deleted, and the room is no longer bridged
//! (a later message in the chat creates a new room).

mod actor;
mod backfill;
mod convert;
mod create;
mod image_size;
mod matrix;
mod remote;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
};

use ruma::{OwnedRoomId, RoomId};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::{
    appservice::inbox::InboxAck,
    bridge::Bridge,
    ghost::GhostError,
    matrix::MatrixError,
    network::{events::ChatRef, LoginId, NetworkError, RemoteChatId, RemoteEvent, RemoteUserId},
    store::{PortalKey, StoreError},
};

pub use actor::{IDLE_STOP, QUEUE_SIZE};

/// How many non-portal rooms [`Portals`] remembers.
const NOT_PORTAL_CACHE: usize = 10_000;

/// Errors of portal operations.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// A homeserver call failed.
    #[error("matrix: {0}")]
    Matrix(#[from] MatrixError),
    /// The database failed.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// The network failed or refused.
    #[error("{0}")]
    Network(#[from] NetworkError),
    /// A ghost could not be prepared.
    #[error("ghost: {0}")]
    Ghost(#[from] GhostError),
    /// The login the operation needs is not live.
    #[error("the login {0} is not connected")]
    NoLogin(String),
    /// The portal has no Matrix room (yet, or any more).
    #[error("this chat has no Matrix room")]
    NoRoom,
    /// The portal's actor stopped (the bridge is shutting down).
    #[error("the portal is shutting down")]
    Stopped,
    /// The operation is refused; the text says why.
    #[error("{0}")]
    Refused(String),
}

/// What a portal actor is asked to do.
pub(crate) enum PortalMsg {
    /// A remote event reported by a login; `done` is answered once it is applied.
    Remote { login: LoginId, event: RemoteEvent, done: Option<oneshot::Sender<()>> },
    /// A Matrix room event from the inbox, acknowledged to the inbox once handled.
    Matrix(Value, InboxAck),
    /// A Matrix ephemeral event (typing, receipts).
    Ephemeral(Value),
    /// After a login connects: bridge what it missed; `done` says whether it could look.
    CatchUp { login: LoginId, done: oneshot::Sender<bool> },
    /// A recent chat of a login: create its room if it has none.
    CreateRoom { login: LoginId },
    /// Create the room if needed (`start-chat`) and invite the login's user.
    EnsureRoom { login: LoginId, other: Option<RemoteUserId>, reply: oneshot::Sender<Result<OwnedRoomId, PortalError>> },
    /// Set or clear the relay login.
    SetRelay { login: Option<LoginId>, reply: oneshot::Sender<Result<(), PortalError>> },
    /// Delete the portal: kick everyone, leave, forget.
    Delete { reply: oneshot::Sender<Result<(), PortalError>> },
}

/// A running actor's queue.
#[derive(Clone)]
struct Handle {
    tx: mpsc::Sender<PortalMsg>,
}

/// A space room being created or known, shared so that it is created once.
type SpaceCell = Arc<tokio::sync::OnceCell<OwnedRoomId>>;

/// The registry of portal actors.
#[derive(Default)]
pub struct Portals {
    by_key: Mutex<HashMap<PortalKey, Handle>>,
    by_room: Mutex<HashMap<OwnedRoomId, PortalKey>>,
    /// Rooms known not to be portals (management rooms, …), so their events cost no query.
    /// Cleared when it grows past [`NOT_PORTAL_CACHE`]; a room leaves it when it becomes a portal.
    not_portals: Mutex<HashSet<OwnedRoomId>>,
    /// Per-login spaces being created or known, so two portals never make two spaces.
    spaces: Mutex<HashMap<LoginId, Arc<tokio::sync::OnceCell<OwnedRoomId>>>>,
    /// Spaces of parent chats ((receiver, parent ID)) being created or known.
    parent_spaces: Mutex<HashMap<(String, String), SpaceCell>>,
    /// The homeserver's upload size limit, once asked.
    upload_limit: tokio::sync::OnceCell<Option<u64>>,
}

/// The portal key of a chat as a login sees it.
pub fn portal_key(chat: &ChatRef) -> PortalKey {
    PortalKey { remote_id: chat.id.0.clone(), receiver: chat.receiver.as_ref().map(|l| l.0.clone()).unwrap_or_default() }
}

/// The chat of a portal key (inverse of [`portal_key`]).
pub fn chat_ref(key: &PortalKey) -> ChatRef {
    ChatRef {
        id: key.remote_id.clone().into(),
        receiver: (!key.receiver.is_empty()).then(|| LoginId(key.receiver.clone())),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Portals {
    /// Handles an event a login reported (not a state change); `done` is answered once it
    /// is applied (or parked for later).
    pub async fn handle_remote(&self, bridge: &Arc<Bridge>, login: LoginId, event: RemoteEvent, done: Option<oneshot::Sender<()>>) {
        let chat = match &event {
            RemoteEvent::Message { chat, .. }
            | RemoteEvent::Edit { chat, .. }
            | RemoteEvent::Delete { chat, .. }
            | RemoteEvent::ReactionAdd { chat, .. }
            | RemoteEvent::ReactionRemove { chat, .. }
            | RemoteEvent::Typing { chat, .. }
            | RemoteEvent::ReadReceipt { chat, .. }
            | RemoteEvent::ChatInfoChanged { chat, .. }
            | RemoteEvent::ChatCreated { chat }
            | RemoteEvent::ChatDeleted { chat } => chat.clone(),
            RemoteEvent::UserInfoChanged { user, info } => {
                // Not tied to a chat: update the ghost right here.
                if let Some(live) = bridge.logins.get(&login) {
                    if let Err(e) = bridge.update_ghost(live.client.as_ref(), user, info).await {
                        tracing::warn!(%user, error = %e, "could not update a ghost");
                    }
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
                return;
            }
            RemoteEvent::StateChanged(_) | RemoteEvent::Notice(_) => {
                if let Some(done) = done {
                    let _ = done.send(());
                }
                return;
            }
        };
        self.send(bridge, &portal_key(&chat), PortalMsg::Remote { login, event, done }).await;
    }

    /// Handles a Matrix event in a room that is not a management room and not a command:
    /// the room's portal handles it and then calls `ack`. Returns the ack unused if the
    /// room is not a portal.
    pub async fn handle_matrix(&self, bridge: &Arc<Bridge>, event: &Value, ack: InboxAck) -> Option<InboxAck> {
        let Some(room) = event.get("room_id").and_then(Value::as_str).and_then(|r| RoomId::parse(r).ok()) else {
            return Some(ack);
        };
        let Some(key) = self.key_for_room(bridge, &room).await else { return Some(ack) };
        self.send(bridge, &key, PortalMsg::Matrix(event.clone(), ack)).await;
        None
    }

    /// Handles an ephemeral event (typing, receipts). Never waits: dropped if the portal
    /// is busy, since typing and receipts are best effort.
    pub async fn handle_ephemeral(&self, bridge: &Arc<Bridge>, event: &Value) {
        let kind = event.get("type").and_then(Value::as_str);
        if !matches!(kind, Some("m.typing" | "m.receipt")) {
            return;
        }
        let Some(room) = event.get("room_id").and_then(Value::as_str).and_then(|r| RoomId::parse(r).ok()) else { return };
        let Some(key) = self.key_for_room(bridge, &room).await else { return };
        let handle = self.handle(bridge, &key);
        if handle.tx.try_send(PortalMsg::Ephemeral(event.clone())).is_err() {
            tracing::debug!(%room, "portal busy; dropped an ephemeral event");
        }
    }

    /// After a login connects (at login or startup): catches up the portals of chats with
    /// news, then creates rooms for its recent chats, if the network has history.
    pub async fn sync_login(&self, bridge: &Arc<Bridge>, login: &LoginId) {
        backfill::sync_login(self, bridge, login).await;
    }

    /// Starts the actor of every portal with remote events parked during a homeserver
    /// outage (at startup, after the logins are loaded): each applies them, in order.
    pub async fn resume_parked(&self, bridge: &Arc<Bridge>) {
        match bridge.store.remote_pending().portals().await {
            Ok(keys) => {
                if !keys.is_empty() {
                    tracing::info!(portals = keys.len(), "bridging remote events that waited for the homeserver");
                }
                for key in keys {
                    self.handle(bridge, &key);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read the parked remote events"),
        }
    }

    /// The portal room of `chat` as seen by `login`, created if needed, with the login's
    /// user invited. Used by `start-chat`.
    pub async fn ensure_room(
        &self,
        bridge: &Arc<Bridge>,
        login: &LoginId,
        chat: &ChatRef,
        other: Option<RemoteUserId>,
    ) -> Result<OwnedRoomId, PortalError> {
        let (reply, rx) = oneshot::channel();
        self.send(bridge, &portal_key(chat), PortalMsg::EnsureRoom { login: login.clone(), other, reply }).await;
        rx.await.map_err(|_| PortalError::Stopped)?
    }

    /// The portal key of a room, if the room is a portal.
    pub async fn key_for_room(&self, bridge: &Bridge, room: &RoomId) -> Option<PortalKey> {
        if let Some(key) = lock(&self.by_room).get(room).cloned() {
            return Some(key);
        }
        if lock(&self.not_portals).contains(room) {
            return None;
        }
        match bridge.store.portals().get_by_mxid(room.as_str()).await {
            Ok(Some(portal)) => {
                lock(&self.by_room).insert(room.to_owned(), portal.key.clone());
                Some(portal.key)
            }
            Ok(None) => {
                // Decided under the `by_room` lock, which `register_room` also holds while
                // it takes a new portal's room out of this cache: no room is cached as
                // "not a portal" after it became one.
                let by_room = lock(&self.by_room);
                if let Some(key) = by_room.get(room) {
                    return Some(key.clone());
                }
                let mut not_portals = lock(&self.not_portals);
                if not_portals.len() >= NOT_PORTAL_CACHE {
                    not_portals.clear();
                }
                not_portals.insert(room.to_owned());
                None
            }
            Err(e) => {
                tracing::warn!(%room, error = %e, "could not look up a portal");
                None
            }
        }
    }

    /// Sets (`Some`) or clears the relay login of the portal in `room`.
    pub async fn set_relay(&self, bridge: &Arc<Bridge>, room: &RoomId, login: Option<LoginId>) -> Result<(), PortalError> {
        let key = self.key_for_room(bridge, room).await.ok_or(PortalError::NoRoom)?;
        let (reply, rx) = oneshot::channel();
        self.send(bridge, &key, PortalMsg::SetRelay { login, reply }).await;
        rx.await.map_err(|_| PortalError::Stopped)?
    }

    /// Deletes the portal in `room`: everyone is kicked, the bot leaves, the portal and its
    /// message map are deleted.
    pub async fn delete(&self, bridge: &Arc<Bridge>, room: &RoomId) -> Result<(), PortalError> {
        let key = self.key_for_room(bridge, room).await.ok_or(PortalError::NoRoom)?;
        let (reply, rx) = oneshot::channel();
        self.send(bridge, &key, PortalMsg::Delete { reply }).await;
        rx.await.map_err(|_| PortalError::Stopped)?
    }

    /// Forgets the actor of `key` if it has stopped (an idle actor, as it exits); a newer
    /// actor already started for the key is kept.
    fn forget_stopped(&self, key: &PortalKey) {
        let mut map = lock(&self.by_key);
        if map.get(key).is_some_and(|h| h.tx.is_closed()) {
            map.remove(key);
        }
    }

    /// How many portal actors are running.
    pub fn running(&self) -> usize {
        lock(&self.by_key).values().filter(|h| !h.tx.is_closed()).count()
    }

    /// Records that `room` is the portal `key` (after the room is created).
    fn register_room(&self, room: &RoomId, key: &PortalKey) {
        let mut by_room = lock(&self.by_room);
        by_room.insert(room.to_owned(), key.clone());
        lock(&self.not_portals).remove(room);
    }

    /// Forgets a portal's room and actor (after it is deleted).
    fn forget(&self, room: Option<&RoomId>, key: &PortalKey) {
        if let Some(room) = room {
            lock(&self.by_room).remove(room);
        }
        lock(&self.by_key).remove(key);
    }

    /// Queues `msg` for the actor of `key`, starting it if needed. Waits when the queue is
    /// full (backpressure); drops the message only when the bridge is stopping.
    async fn send(&self, bridge: &Arc<Bridge>, key: &PortalKey, msg: PortalMsg) {
        let handle = self.handle(bridge, key);
        if let Err(mpsc::error::SendError(msg)) = handle.tx.send(msg).await {
            // The actor ended (deleted portal): start a fresh one once.
            lock(&self.by_key).remove(key);
            let handle = self.handle(bridge, key);
            if handle.tx.send(msg).await.is_err() {
                tracing::debug!(portal = %key.remote_id, "portal stopped; dropped an event");
            }
        }
    }

    fn handle(&self, bridge: &Arc<Bridge>, key: &PortalKey) -> Handle {
        let mut map = lock(&self.by_key);
        if let Some(handle) = map.get(key) {
            if !handle.tx.is_closed() {
                return handle.clone();
            }
        }
        let handle = actor::spawn(bridge.clone(), key.clone());
        map.insert(key.clone(), handle.clone());
        handle
    }

    /// The space cell of a parent chat for a receiver (created empty on first use).
    fn parent_space_cell(&self, receiver: &str, parent: &RemoteChatId) -> SpaceCell {
        lock(&self.parent_spaces).entry((receiver.to_owned(), parent.0.clone())).or_default().clone()
    }

    /// The space cell of a login (created empty on first use).
    fn space_cell(&self, login: &LoginId) -> Arc<tokio::sync::OnceCell<OwnedRoomId>> {
        lock(&self.spaces).entry(login.clone()).or_default().clone()
    }
}
