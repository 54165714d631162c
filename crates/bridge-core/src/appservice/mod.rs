//! The appservice side of the bridge: the HTTP server the homeserver pushes to, and the
//! durable inbox that makes every acknowledged transaction survive a crash.
//!
//! The flow: [`server`] checks the `hs_token`, parses the transaction and hands it to
//! [`inbox::Inbox::accept`], which writes its events to the database (deduplicated by
//! transaction ID within a window and by event ID forever after) before the server
//! answers 200. [`inbox::Inbox::run`] then feeds the stored events, in order, to an
//! [`AppserviceHandler`] and marks each one done.

pub mod inbox;
pub mod server;

use ruma::{OwnedRoomAliasId, OwnedUserId};
use serde_json::Value;

/// What the bridge does with what the homeserver sends. Implemented by the bridge
/// runtime; the server and the inbox know nothing else about it.
#[async_trait::async_trait]
pub trait AppserviceHandler: Send + Sync + 'static {
    /// Handles one timeline or state event from a transaction, after it was stored.
    /// Called by the inbox worker, one event at a time, in the order received. An error
    /// is logged and the event is not retried (it is kept as handled) — so return `Ok`
    /// once the event's effect is durable or queued elsewhere.
    async fn handle_event(&self, event: Value) -> anyhow::Result<()>;

    /// Handles an ephemeral event (typing, receipts, presence). Best effort: these are
    /// not persisted. Must not block for long.
    async fn handle_ephemeral(&self, event: Value);

    /// Answers a user query: `true` if the user exists or was just created.
    async fn query_user(&self, user_id: OwnedUserId) -> bool;

    /// Answers a room alias query: `true` if the alias exists or was just created.
    async fn query_alias(&self, alias: OwnedRoomAliasId) -> bool;
}
