//! Login flows in progress, driven from the management room or the provisioning API.

use std::sync::Arc;

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

use crate::bridge::Bridge;

/// The registry of login flows in progress, at most one per Matrix user.
#[derive(Default)]
pub struct LoginSessions {}

impl LoginSessions {
    /// Offers a message in a user's management room to their login flow in progress.
    /// Returns `true` if the flow consumed it as input (it is then not a command).
    pub async fn intercept(
        &self,
        _bridge: &Arc<Bridge>,
        _user: &OwnedUserId,
        _room: &OwnedRoomId,
        _event_id: &OwnedEventId,
        _body: &str,
    ) -> bool {
        false
    }
}
