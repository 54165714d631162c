//! The durable inbox between the appservice server and the bridge.
//!
//! [`Inbox::accept`] stores a transaction's events in one database transaction; only then
//! does the server acknowledge it, so a crash after the 200 loses nothing. The worker
//! ([`Inbox::run`]) hands stored events to the [`AppserviceHandler`] in arrival order and
//! marks each done, so after a restart it resumes with the first event not yet handled.
//!
//! Deduplication has two levels: a transaction ID seen within [`TXN_WINDOW`] is a retry
//! and stores nothing (Synapse restarts its transaction IDs at 1, so no ID is remembered
//! forever), and an event ID that was ever stored is skipped whatever transaction
//! carries it.

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::AppserviceHandler;
use crate::{
    metrics::Metrics,
    store::{InsertOutcome, Store, StoreError},
};

/// How long a transaction ID counts as already seen.
pub const TXN_WINDOW: Duration = Duration::from_secs(15 * 60);

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

    /// Stores a transaction's events durably and wakes the worker. Returns once the
    /// events are committed; the caller acknowledges the transaction only after that.
    pub async fn accept(
        &self,
        txn_id: &str,
        events: Vec<(String, Value)>,
    ) -> Result<InsertOutcome, StoreError> {
        let raw: Vec<(String, String)> =
            events.into_iter().map(|(id, event)| (id, event.to_string())).collect();
        let outcome = self
            .store
            .inbox()
            .insert_transaction(txn_id, &raw, TXN_WINDOW.as_millis() as i64)
            .await?;
        if outcome.new > 0 {
            self.wake.notify_one();
        }
        Ok(outcome)
    }

    /// How many stored events are waiting to be handled.
    pub async fn backlog(&self) -> Result<usize, StoreError> {
        Ok(self.store.inbox().pending_count().await? as usize)
    }

    /// Runs the worker until `shutdown` is cancelled: hands every stored event to
    /// `handler` in order and marks it done. The event being handled when shutdown
    /// comes is finished first.
    pub async fn run(self, handler: Arc<dyn AppserviceHandler>, shutdown: CancellationToken) {
        if hold_for_tests() {
            tracing::warn!("debug build: BRIDGE_DEBUG_HOLD_INBOX is set, events are stored but not handled");
            shutdown.cancelled().await;
            return;
        }
        let mut last_prune = std::time::Instant::now() - Duration::from_secs(3600);
        loop {
            // Register interest before reading, so a notify between the read and the
            // wait is not lost.
            let notified = self.wake.notified();
            let batch = match self.store.inbox().pending(100).await {
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
                let event: Value = match serde_json::from_str(&entry.event) {
                    Ok(event) => event,
                    Err(e) => {
                        tracing::error!(event_id = %entry.event_id, error = %e, "stored event is unreadable; skipping");
                        Value::Null
                    }
                };
                if !event.is_null() {
                    let span = tracing::info_span!("event", event_id = %entry.event_id, txn_id = %entry.txn_id);
                    let started = std::time::Instant::now();
                    let result = tracing::Instrument::instrument(handler.handle_event(event), span).await;
                    self.metrics.event_handled(result.is_ok(), started.elapsed());
                    if let Err(e) = result {
                        tracing::error!(event_id = %entry.event_id, error = %format!("{e:#}"), "failed to handle event");
                    }
                }
                if let Err(e) = self.store.inbox().mark_done(entry.seq).await {
                    tracing::error!(event_id = %entry.event_id, error = %e, "could not mark event as handled");
                }
            }
        }
    }

    async fn prune(&self) {
        let cutoff = now_ms() - DONE_RETENTION.as_millis() as i64;
        if let Err(e) = self.store.inbox().prune_done(cutoff).await {
            tracing::warn!(error = %e, "could not prune handled events");
        }
        let txn_cutoff = now_ms() - 2 * TXN_WINDOW.as_millis() as i64;
        if let Err(e) = self.store.inbox().prune_transactions(txn_cutoff).await {
            tracing::warn!(error = %e, "could not prune old transaction IDs");
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
