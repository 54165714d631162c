//! The `crypto_store` table: the bridge bot's end-to-end encryption state, one row per item.
//!
//! The core's crypto module ([`crate::crypto`]) keeps matrix-sdk-crypto's state here as
//! serialized values: `kind` says what a row holds (the Olm account, an Olm session, a Megolm
//! session, a device of another user…) and `name` identifies it within its kind. A batch of
//! changes is written in one database transaction, so a crash never keeps half of one.

use sqlx::AnyPool;
use sqlx::Row;

use super::StoreError;

/// One write of a batch: a row to store, or (with `value` `None`) to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoRow {
    /// What the row holds.
    pub kind: &'static str,
    /// Which item of its kind.
    pub name: String,
    /// The serialized item; `None` removes the row.
    pub value: Option<String>,
}

impl CryptoRow {
    /// A row to store.
    pub fn put(kind: &'static str, name: impl Into<String>, value: String) -> Self {
        Self { kind, name: name.into(), value: Some(value) }
    }

    /// A row to remove.
    pub fn delete(kind: &'static str, name: impl Into<String>) -> Self {
        Self { kind, name: name.into(), value: None }
    }
}

/// Access to `crypto_store`; get one from [`super::Store::crypto`].
#[derive(Debug, Clone, Copy)]
pub struct Crypto<'a> {
    pool: &'a AnyPool,
}

impl<'a> Crypto<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Crypto { pool }
    }

    /// Applies a batch of writes atomically, in order.
    pub async fn apply(self, rows: &[CryptoRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for row in rows {
            match &row.value {
                Some(value) => {
                    sqlx::query(
                        "INSERT INTO crypto_store (kind, name, value) VALUES ($1, $2, $3) \
                         ON CONFLICT (kind, name) DO UPDATE SET value = excluded.value",
                    )
                    .bind(row.kind)
                    .bind(&row.name)
                    .bind(value)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM crypto_store WHERE kind = $1 AND name = $2")
                        .bind(row.kind)
                        .bind(&row.name)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every `(name, value)` of `kind`, sorted by name.
    pub async fn list(self, kind: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT name, value FROM crypto_store WHERE kind = $1 ORDER BY name")
            .bind(kind)
            .fetch_all(self.pool)
            .await?;
        rows.iter().map(|row| Ok((row.try_get("name")?, row.try_get("value")?))).collect()
    }

    /// The value of one row.
    pub async fn get(self, kind: &str, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM crypto_store WHERE kind = $1 AND name = $2")
            .bind(kind)
            .bind(name)
            .fetch_optional(self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("value")).transpose()?)
    }

    /// Removes every row (a device that is being replaced); returns how many there were.
    pub async fn clear(self) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM crypto_store").execute(self.pool).await?;
        Ok(done.rows_affected())
    }
}
