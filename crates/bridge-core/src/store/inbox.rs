//! The appservice inbox: a durable queue of events received in homeserver transactions.
//!
//! The transaction handler stores a transaction's events with
//! [`Inbox::insert_transaction`] and answers the homeserver at once; workers take
//! [`Inbox::pending`] entries in arrival order and [`Inbox::mark_done`] them. Events are
//! deduplicated by event ID for as long as their rows are kept (see [`Inbox::prune_done`]).
//! Transaction IDs are deduplicated only within a time window, because homeservers restart
//! their transaction counter (Synapse starts again at 1).

use sqlx::any::AnyRow;
use sqlx::AnyPool;
use sqlx::Row;

use super::{now_ms, StoreError};

/// What [`Inbox::insert_transaction`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InsertOutcome {
    /// Events queued by this call.
    pub new: usize,
    /// Events skipped because their event ID was already queued (all of them when the
    /// whole transaction is a duplicate).
    pub duplicate: usize,
    /// The transaction key (ID and body hash) was already recorded, so nothing was stored.
    pub duplicate_transaction: bool,
}

/// One queued event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    /// The queue position; increases with arrival.
    pub seq: i64,
    /// The Matrix event ID.
    pub event_id: String,
    /// The key of the transaction that delivered the event (see [`Inbox::insert_transaction`]).
    pub txn_id: String,
    /// When the event was stored (ms since the Unix epoch).
    pub received_at: i64,
    /// The raw event JSON as received.
    pub event: String,
}

impl InboxEntry {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(InboxEntry {
            seq: row.try_get("seq")?,
            event_id: row.try_get("event_id")?,
            txn_id: row.try_get("txn_id")?,
            received_at: row.try_get("received_at")?,
            event: row.try_get("event")?,
        })
    }
}

/// Records the transaction key `$1` at `$2`; yields a row only when the key is new.
const RECORD_TXN: &str = "INSERT INTO as_txn (txn_id, received_at) VALUES ($1, $2) \
     ON CONFLICT (txn_id) DO NOTHING \
     RETURNING txn_id";

/// Access to `as_inbox` and `as_txn`; get one from [`super::Store::inbox`].
#[derive(Debug, Clone, Copy)]
pub struct Inbox<'a> {
    pool: &'a AnyPool,
}

impl<'a> Inbox<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Inbox { pool }
    }

    /// Stores a transaction's events, `(event_id, raw_json)`, in one database transaction.
    ///
    /// `txn_key` identifies the transaction: its ID and a hash of its body (see
    /// [`transaction_key`]). If the key was already recorded (a retry of a transaction the
    /// homeserver did not see acknowledged), nothing is stored and the outcome has
    /// `duplicate_transaction: true`. Otherwise the key is recorded and every event whose ID
    /// is not already queued is appended, in the given order.
    pub async fn insert_transaction(self, txn_key: &str, events: &[(String, String)]) -> Result<InsertOutcome, StoreError> {
        self.insert_transaction_at(txn_key, events, now_ms()).await
    }

    /// [`Inbox::insert_transaction`] with the clock given by the caller (`now` in ms).
    pub async fn insert_transaction_at(self, txn_key: &str, events: &[(String, String)], now: i64) -> Result<InsertOutcome, StoreError> {
        let txn_id = txn_key;
        let mut tx = self.pool.begin().await?;
        // Writing first takes SQLite's write lock at once (no lock upgrade deadlock).
        let fresh = sqlx::query(RECORD_TXN).bind(txn_id).bind(now).fetch_optional(&mut *tx).await?;
        if fresh.is_none() {
            tx.rollback().await?;
            return Ok(InsertOutcome { new: 0, duplicate: events.len(), duplicate_transaction: true });
        }
        let mut outcome = InsertOutcome::default();
        for (event_id, event) in events {
            let done = sqlx::query(
                "INSERT INTO as_inbox (event_id, txn_id, received_at, event, processed_at) \
                 VALUES ($1, $2, $3, $4, NULL) ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(event_id)
            .bind(txn_id)
            .bind(now)
            .bind(event)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() > 0 {
                outcome.new += 1;
            } else {
                outcome.duplicate += 1;
            }
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Whether the transaction key was recorded.
    pub async fn seen_transaction(self, txn_key: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM as_txn WHERE txn_id = $1").bind(txn_key).fetch_one(self.pool).await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Up to `limit` unprocessed events, oldest first.
    pub async fn pending(self, limit: i64) -> Result<Vec<InboxEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, event_id, txn_id, received_at, event FROM as_inbox \
             WHERE processed_at IS NULL ORDER BY seq LIMIT $1",
        )
        .bind(limit.max(0))
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(InboxEntry::from_row).collect()
    }

    /// Up to `limit` unprocessed events queued after position `after`, oldest first: the
    /// worker reads on from the last event it dispatched while earlier ones are in flight.
    pub async fn pending_after(self, after: i64, limit: i64) -> Result<Vec<InboxEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, event_id, txn_id, received_at, event FROM as_inbox \
             WHERE processed_at IS NULL AND seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit.max(0))
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(InboxEntry::from_row).collect()
    }

    /// How many events are waiting to be processed.
    pub async fn pending_count(self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM as_inbox WHERE processed_at IS NULL")
            .fetch_one(self.pool)
            .await?;
        Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
    }

    /// Marks the event at `seq` processed and forgets its content (only the event ID stays,
    /// for deduplication). Returns whether it was pending.
    pub async fn mark_done(self, seq: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE as_inbox SET processed_at = $1, event = '' WHERE seq = $2 AND processed_at IS NULL",
        )
        .bind(now_ms())
        .bind(seq)
        .execute(self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes processed events processed before `older_than_ms` (ms since the Unix epoch).
    /// Their IDs stop being deduplicated, so the caller keeps a cutoff well beyond any
    /// homeserver retry. Pending events are never deleted. Returns how many rows went.
    pub async fn prune_done(self, older_than_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM as_inbox WHERE processed_at IS NOT NULL AND processed_at < $1",
        )
        .bind(older_than_ms)
        .execute(self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Deletes transaction records received before `older_than_ms`. Returns how many went.
    pub async fn prune_transactions(self, older_than_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM as_txn WHERE received_at < $1")
            .bind(older_than_ms)
            .execute(self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// The key under which a transaction is recorded: its ID and the SHA-256 of its body, so
/// that a retry (same ID, same body) is recognised and a new transaction that reuses an ID
/// after a homeserver restart is not.
pub fn transaction_key(txn_id: &str, body: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(body);
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{txn_id}/{hex}")
}
