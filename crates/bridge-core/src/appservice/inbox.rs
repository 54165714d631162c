//! The durable inbox between the appservice server and the bridge.
//!
//! [`Inbox::accept`] stores a transaction's events in one database transaction; only then
//! does the server acknowledge it, so a crash after the 200 loses nothing. The worker
//! ([`Inbox::run`]) hands stored events to the [`AppserviceHandler`] in arrival order with an
//! [`InboxAck`]; an event is marked done only when its handling is complete — by the
//! handler itself, or later by the portal that handled it — so after a crash every event
//! not yet done is handled again. What the bridge sends while handling an event carries a
//! transaction ID derived from the event ([`crate::matrix::txn`]), so such a replay is
//! deduplicated by the homeserver instead of repeating replies.
//!
//! An event whose handling fails because the homeserver is unreachable
//! ([`MatrixError::is_transient`]) is not dropped: the worker waits (with backoff) and
//! tries it again, in order, until the homeserver is back. Only a permanent failure (a
//! refusal) marks it done unhandled.
//!
//! Deduplication has two levels: a transaction key (ID and body hash) already recorded is a
//! retry and stores nothing — a transaction ID alone is no identity, because Synapse
//! restarts its counter at 1 — and an event ID that was ever stored is skipped whatever
//! transaction carries it.

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::AppserviceHandler;
use crate::{
    backoff::Backoff,
    matrix::MatrixError,
    metrics::Metrics,
    store::{transaction_key, InsertOutcome, Store, StoreError},
};

/// How long a transaction key is remembered (a homeserver retries far sooner).
pub const TXN_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// How long handled events are kept for deduplication by event ID.
pub const DONE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Handle to the inbox; cheap to clone.
#[derive(Clone)]
pub struct Inbox {
    store: Store,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
}

impl Inbox {
    /// An inbox stored in `store`, counting into `metrics`.
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Self {
        Self { store, wake: Arc::new(Notify::new()), metrics }
    }

    /// Stores a transaction's events durably and wakes the worker. `body` is the raw
    /// transaction body, whose hash tells a retry from a new transaction that reuses the ID.
    /// Returns once the events are committed; the caller acknowledges the transaction only
    /// after that.
    pub async fn accept(
        &self,
        txn_id: &str,
        body: &[u8],
        events: Vec<(String, String)>,
    ) -> Result<InsertOutcome, StoreError> {
        let key = transaction_key(txn_id, body);
        let outcome = self.store.inbox().insert_transaction(&key, &events).await?;
        if outcome.new > 0 {
            self.wake.notify_one();
        }
        Ok(outcome)
    }

    /// How many remote events wait in the store for the homeserver (see
    /// [`crate::store::RemotePending`]).
    pub async fn remote_backlog(&self) -> Result<u64, StoreError> {
        self.store.remote_pending().count().await
    }

    /// How many stored events are waiting to be handled.
    pub async fn backlog(&self) -> Result<usize, StoreError> {
        Ok(self.store.inbox().pending_count().await? as usize)
    }

    /// Runs the worker until `shutdown` is cancelled: hands every stored event to
    /// `handler` in order. The event being handled when shutdown comes is finished first.
    pub async fn run(self, handler: Arc<dyn AppserviceHandler>, shutdown: CancellationToken) {
        if hold_for_tests() {
            tracing::warn!("debug build: BRIDGE_DEBUG_HOLD_INBOX is set, events are stored but not handled");
            shutdown.cancelled().await;
            return;
        }
        let mut last_prune = std::time::Instant::now() - Duration::from_secs(3600);
        // The last event handed on: events after it are read next, while earlier ones may
        // still be in a portal's hands (done when the portal acknowledges them).
        let mut cursor = 0;
        loop {
            // Register interest before reading, so a notify between the read and the
            // wait is not lost.
            let notified = self.wake.notified();
            let batch = match self.store.inbox().pending_after(cursor, 100).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(error = %e, "could not read the inbox; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            if batch.is_empty() {
                if last_prune.elapsed() > Duration::from_secs(3600) {
                    self.prune().await;
                    last_prune = std::time::Instant::now();
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = notified => continue,
                }
            }
            for entry in batch {
                if shutdown.is_cancelled() {
                    return;
                }
                cursor = entry.seq;
                let ack = InboxAck { store: self.store.clone(), seq: entry.seq };
                let event: Value = match serde_json::from_str(&entry.event) {
                    Ok(event) => event,
                    Err(e) => {
                        tracing::error!(event_id = %entry.event_id, error = %e, "stored event is unreadable; skipping");
                        ack.done().await;
                        continue;
                    }
                };
                if !self.deliver(&*handler, &entry.event_id, event, ack, &shutdown).await {
                    return;
                }
            }
        }
    }

    /// Hands one event to the handler until it is handled or fails for good; while the
    /// homeserver is unreachable it waits and tries again. Returns `false` on shutdown.
    async fn deliver(&self, handler: &dyn AppserviceHandler, event_id: &str, event: Value, ack: InboxAck, shutdown: &CancellationToken) -> bool {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        loop {
            let span = tracing::info_span!("event", event_id = %event_id);
            let started = std::time::Instant::now();
            let handling = crate::matrix::txn::scoped(event_id, handler.handle_event(event.clone(), ack.clone()));
            let result = tracing::Instrument::instrument(handling, span).await;
            match result {
                Ok(()) => {
                    self.metrics.event_handled(true, started.elapsed());
                    return true;
                }
                Err(e) if e.chain().any(MatrixError::is_transient_cause) => {
                    // Not done: the event waits for the homeserver, and so do the ones after it.
                    let delay = backoff.next_delay();
                    if backoff.attempts() == 1 {
                        tracing::warn!(%event_id, error = %format!("{e:#}"), "the homeserver is unreachable; the event waits and is handled when it is back");
                    } else {
                        tracing::debug!(%event_id, ?delay, error = %format!("{e:#}"), "still waiting for the homeserver");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(e) => {
                    self.metrics.event_handled(false, started.elapsed());
                    tracing::error!(%event_id, error = %format!("{e:#}"), "failed to handle event");
                    ack.done().await;
                    return true;
                }
            }
        }
    }

    async fn prune(&self) {
        let cutoff = now_ms() - DONE_RETENTION.as_millis() as i64;
        if let Err(e) = self.store.inbox().prune_done(cutoff).await {
            tracing::warn!(error = %e, "could not prune handled events");
        }
        let txn_cutoff = now_ms() - TXN_RETENTION.as_millis() as i64;
        if let Err(e) = self.store.inbox().prune_transactions(txn_cutoff).await {
            tracing::warn!(error = %e, "could not prune old transaction IDs");
        }
    }
}

/// Marks one inbox event done once its handling is complete. The worker gives one to the
/// handler with each event; the handler calls [`InboxAck::done`] itself or passes the ack
/// to whoever finishes the work (a portal's actor). An event whose ack is never called is
/// handled again after a restart. Cheap to clone.
#[derive(Clone)]
pub struct InboxAck {
    store: Store,
    seq: i64,
}

impl std::fmt::Debug for InboxAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxAck").field("seq", &self.seq).finish()
    }
}

impl InboxAck {
    /// Marks the event done (and forgets its content). A failure is logged: the event is
    /// then handled again after a restart, which the transaction IDs make harmless.
    pub async fn done(self) {
        if let Err(e) = self.store.inbox().mark_done(self.seq).await {
            tracing::error!(seq = self.seq, error = %e, "could not mark an event as handled");
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Debug builds only: `BRIDGE_DEBUG_HOLD_INBOX=1` stores events without handling them,
/// so the crash-recovery test can kill the bridge between acknowledgement and handling.
/// Release builds never read the variable.
fn hold_for_tests() -> bool {
    cfg!(debug_assertions) && std::env::var_os("BRIDGE_DEBUG_HOLD_INBOX").is_some_and(|v| v == "1")
}
