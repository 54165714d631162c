//! Portals: Matrix rooms that stand for remote chats, each run by its own actor task.
//!
//! [`Portals`] routes events: remote events by chat, Matrix events by room. Each portal
//! handles its events in order in one task with a bounded queue; portals run in parallel.

use std::sync::Arc;

use serde_json::Value;

use crate::{
    bridge::Bridge,
    network::{LoginId, RemoteEvent},
};

/// The registry of portal actors.
#[derive(Default)]
pub struct Portals {}

impl Portals {
    /// Handles an event a login reported (not a state change).
    pub async fn handle_remote(&self, _bridge: &Arc<Bridge>, login: LoginId, event: RemoteEvent) {
        tracing::debug!(%login, ?event, "remote event (portals not wired yet)");
    }

    /// Handles a Matrix event in a room that is not a management room and not a command.
    /// Returns `false` if the room is not a portal.
    pub async fn handle_matrix(&self, _bridge: &Arc<Bridge>, _event: &Value) -> bool {
        false
    }

    /// Handles an ephemeral event (typing, receipts).
    pub async fn handle_ephemeral(&self, _bridge: &Arc<Bridge>, _event: &Value) {}

    /// Creates or updates portals for a login's recent chats (after login or at startup).
    pub async fn sync_login(&self, _bridge: &Arc<Bridge>, _login: &LoginId) {}
}
