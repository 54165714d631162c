//! The `remote_pending` table: remote events that could not be bridged because the
//! homeserver was unreachable, kept in arrival order per portal until they are.
//!
//! A portal that meets a homeserver outage parks the event it was applying here, and every
//! later event of the same portal after it, so that order holds; it drains the table when
//! the homeserver is back, and after a restart the bridge drains what is left. The network
//! may never send these events again, so they must outlive the process.

use sqlx::AnyPool;
use sqlx::Row;

use super::{now_ms, PortalKey, StoreError};

/// One parked remote event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRemote {
    /// The queue position; increases with arrival.
    pub seq: i64,
    /// The login that reported the event.
    pub login_id: String,
    /// The event as JSON.
    pub event: String,
}

/// Access to `remote_pending`; get one from [`super::Store::remote_pending`].
#[derive(Debug, Clone, Copy)]
pub struct RemotePending<'a> {
    pool: &'a AnyPool,
}

impl<'a> RemotePending<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        RemotePending { pool }
    }

    /// Appends an event of `portal` reported by `login_id`.
    pub async fn push(self, portal: &PortalKey, login_id: &str, event: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO remote_pending (portal_remote_id, portal_receiver, login_id, event, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&portal.remote_id)
        .bind(&portal.receiver)
        .bind(login_id)
        .bind(event)
        .bind(now_ms())
        .execute(self.pool)
        .await?;
        Ok(())
    }

    /// The oldest parked event of `portal`.
    pub async fn first(self, portal: &PortalKey) -> Result<Option<PendingRemote>, StoreError> {
        let row = sqlx::query(
            "SELECT seq, login_id, event FROM remote_pending \
             WHERE portal_remote_id = $1 AND portal_receiver = $2 ORDER BY seq LIMIT 1",
        )
        .bind(&portal.remote_id)
        .bind(&portal.receiver)
        .fetch_optional(self.pool)
        .await?;
        row.map(|row| Ok(PendingRemote { seq: row.try_get("seq")?, login_id: row.try_get("login_id")?, event: row.try_get("event")? })).transpose()
    }

    /// Removes the event at `seq` (once bridged, or dropped for good).
    pub async fn remove(self, seq: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM remote_pending WHERE seq = $1").bind(seq).execute(self.pool).await?;
        Ok(())
    }

    /// The portals with parked events.
    pub async fn portals(self) -> Result<Vec<PortalKey>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT portal_remote_id, portal_receiver FROM remote_pending").fetch_all(self.pool).await?;
        rows.iter()
            .map(|row| Ok(PortalKey { remote_id: row.try_get("portal_remote_id")?, receiver: row.try_get("portal_receiver")? }))
            .collect()
    }

    /// How many events are parked in all.
    pub async fn count(self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM remote_pending").fetch_one(self.pool).await?;
        Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
    }
}
