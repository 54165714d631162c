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

    /// Every `(name, value)` whose name starts with `prefix`, sorted by name.
    pub async fn list_prefix(self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT name, value FROM kv WHERE substr(name, 1, $2) = $1 ORDER BY name")
            .bind(prefix)
            .bind(i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX))
            .fetch_all(self.pool)
            .await?;
        rows.iter().map(|row| Ok((row.try_get("name")?, row.try_get("value")?))).collect()
    }

    /// Removes every name that starts with `prefix`; returns how many were removed.
    pub async fn delete_prefix(self, prefix: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM kv WHERE substr(name, 1, $2) = $1")
            .bind(prefix)
            .bind(i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX))
            .execute(self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
