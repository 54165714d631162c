//! The appservice side of the bridge: the HTTP server the homeserver pushes to, and the
//! durable inbox that makes every acknowledged transaction survive a crash.
//!
//! The flow: [`server`] checks the `hs_token`, parses the transaction and hands it to
//! [`inbox::Inbox::accept`], which writes its events to the database (deduplicated by
//! transaction key — ID and body hash — and by event ID) before the server answers 200.
//! [`inbox::Inbox::run`] then feeds the stored events, in order, to an
//! [`AppserviceHandler`], and each is marked done when its handling is complete.

pub mod inbox;
pub mod server;

use ruma::{OwnedRoomAliasId, OwnedUserId};
use serde_json::Value;

/// What the bridge does with what the homeserver sends. Implemented by the bridge
/// runtime; the server and the inbox know nothing else about it.
#[async_trait::async_trait]
pub trait AppserviceHandler: Send + Sync + 'static {
    /// Handles one timeline or state event from a transaction, after it was stored.
    /// Called by the inbox worker, one event at a time, in the order received, inside a
    /// transaction-ID scope of the event ([`crate::matrix::txn::scoped`]).
    ///
    /// On `Ok` the handler has called `ack` or handed it to whoever completes the work (a
    /// portal). On an error caused by the homeserver being unreachable
    /// ([`crate::matrix::MatrixError::is_transient`]) the event is handled again later, so
    /// handling must be safe to repeat; any other error is logged and the event is done.
    async fn handle_event(&self, event: Value, ack: inbox::InboxAck) -> anyhow::Result<()>;

    /// Whether an event of this `sender` and `type` is certainly ignored (the bridge's own
    /// echoes): such events are not stored in the inbox. Must be cheap (no I/O).
    fn ignores(&self, _sender: &str, _kind: &str) -> bool {
        false
    }

    /// Handles an ephemeral event (typing, receipts, presence). Best effort: these are
    /// not persisted. Must not block for long.
    async fn handle_ephemeral(&self, event: Value);

    /// Takes in what a transaction carries for the bot's encryption device (to-device
    /// events, device-list changes, key counts), before its events are stored. An error
    /// refuses the transaction, so the homeserver sends it again.
    async fn handle_crypto(&self, _crypto: crate::crypto::TransactionCrypto) -> anyhow::Result<()> {
        Ok(())
    }

    /// Answers a user query: `true` if the user exists or was just created.
    async fn query_user(&self, user_id: OwnedUserId) -> bool;

    /// Answers a room alias query: `true` if the alias exists or was just created.
    async fn query_alias(&self, alias: OwnedRoomAliasId) -> bool;
}
