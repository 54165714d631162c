//! The `kv` table: small named values the core keeps between runs (e.g. a version marker).

use sqlx::AnyPool;
use sqlx::Row;

use super::StoreError;

/// Access to the `kv` table; get one from [`super::Store::kv`].
#[derive(Debug, Clone, Copy)]
pub struct Kv<'a> {
    pool: &'a AnyPool,
}

impl<'a> Kv<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Kv { pool }
    }

    /// The value stored under `key`.
    pub async fn get(self, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM kv WHERE name = $1")
            .bind(key)
            .fetch_optional(self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("value")).transpose()?)
    }

    /// Stores `value` under `key`, replacing any previous value.
    pub async fn set(self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO kv (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(self.pool)
        .await?;
        Ok(())
    }

    /// Removes `key`. Returns whether it was set.
    pub async fn delete(self, key: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM kv WHERE name = $1")
            .bind(key)
            .execute(self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
