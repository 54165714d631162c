//! Login flows in progress, driven from the management room or the provisioning API.
//!
//! [`driver::LoginDriver`] owns a network's [`crate::network::LoginProcess`] and advances it;
//! it is shared by both front ends. This module keeps the management-room flows, at most one
//! per Matrix user, each run by its own task ([`room`]); the provisioning API keeps its own
//! processes (see [`crate::provisioning`]).

pub mod driver;
pub mod prompt;
pub mod qr;
mod room;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, UserId};
use tokio::sync::mpsc;

pub use driver::{resolve_flow, Advance, LoginDriver, LoginError};

use crate::bridge::Bridge;
use room::RoomInput;

/// A management-room flow as the registry sees it.
struct RoomSession {
    id: u64,
    flow: String,
    inputs: mpsc::Sender<RoomInput>,
    awaiting_input: Arc<AtomicBool>,
}

/// The registry of management-room login flows in progress, at most one per Matrix user.
/// Its lock is never held across an `.await`.
#[derive(Default)]
pub struct LoginSessions {
    rooms: Mutex<HashMap<OwnedUserId, RoomSession>>,
    next_id: AtomicU64,
}

impl LoginSessions {
    /// Offers a message in a user's management room to their login flow in progress.
    /// Returns `true` if the flow consumed it as input (it is then not a command): the
    /// answer to an open prompt, or `cancel` while a prompt is open.
    pub async fn intercept(
        &self,
        bridge: &Arc<Bridge>,
        user: &OwnedUserId,
        _room: &OwnedRoomId,
        event_id: &OwnedEventId,
        body: &str,
    ) -> bool {
        let Some((inputs, awaiting)) = self.with_session(user, |s| (s.inputs.clone(), s.awaiting_input.clone())) else {
            return false;
        };
        if !awaiting.load(Ordering::SeqCst) {
            return false;
        }
        let word = body.trim();
        let word = word
            .strip_prefix(bridge.settings.command_prefix.as_str())
            .map(str::trim_start)
            .unwrap_or(word);
        let input = if word.eq_ignore_ascii_case("cancel") {
            RoomInput::Cancel { event_id: event_id.clone() }
        } else if awaiting.swap(false, Ordering::SeqCst) {
            RoomInput::Answer { event_id: event_id.clone(), body: body.to_owned() }
        } else {
            return false;
        };
        inputs.send(input).await.is_ok()
    }

    /// Whether `user` has a management-room flow in progress, and which.
    pub fn in_progress(&self, user: &UserId) -> Option<String> {
        self.with_session(user, |s| s.flow.clone())
    }

    /// Starts login flow `flow` (the default when `None`) for `user` in their management
    /// room `room`; `reply_to` is the command's event. Returns once the flow's task runs.
    pub async fn start_in_room(
        &self,
        bridge: &Arc<Bridge>,
        user: &OwnedUserId,
        room: &OwnedRoomId,
        reply_to: &OwnedEventId,
        flow: Option<&str>,
    ) -> Result<(), LoginError> {
        if self.in_progress(user).is_some() {
            return Err(LoginError::InProgress);
        }
        let driver = LoginDriver::create(bridge, user, flow).await?;
        let (tx, rx) = mpsc::channel(8);
        let awaiting = Arc::new(AtomicBool::new(false));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
            if rooms.contains_key(user) {
                return Err(LoginError::InProgress);
            }
            let session = RoomSession { id, flow: driver.flow().id.clone(), inputs: tx, awaiting_input: awaiting.clone() };
            rooms.insert(user.clone(), session);
        }
        let (bridge, user, room, reply_to) = (bridge.clone(), user.clone(), room.clone(), reply_to.clone());
        let span = tracing::info_span!("login", %user, flow = %driver.flow().id);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let ended = {
                    let bridge = bridge.clone();
                    move || bridge.login_sessions.finish(&user, id)
                };
                room::run(bridge, driver, room, reply_to, rx, awaiting, ended).await;
            },
            span,
        ));
        Ok(())
    }

    /// Cancels `user`'s management-room flow; `event_id` is the `cancel` message. Returns
    /// `false` if there was nothing to cancel.
    pub async fn cancel_in_room(&self, user: &UserId, event_id: &OwnedEventId) -> bool {
        let Some(inputs) = self.with_session(user, |s| s.inputs.clone()) else { return false };
        inputs.send(RoomInput::Cancel { event_id: event_id.clone() }).await.is_ok()
    }

    /// Forgets the flow `id` of `user` once its task has ended.
    fn finish(&self, user: &UserId, id: u64) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if rooms.get(user).is_some_and(|s| s.id == id) {
            rooms.remove(user);
        }
    }

    fn with_session<T>(&self, user: &UserId, f: impl FnOnce(&RoomSession) -> T) -> Option<T> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner()).get(user).map(f)
    }
}
