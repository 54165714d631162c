//! The `users` table: Matrix users who use the bridge, and their management rooms.

use sqlx::any::AnyRow;
use sqlx::AnyPool;
use sqlx::Row;

use super::{now_ms, StoreError};

/// A Matrix user known to the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The Matrix user ID (`@alice:example.org`).
    pub mxid: String,
    /// The room ID of the user's management room with the bridge bot, once there is one.
    pub management_room: Option<String>,
    /// When the user was first stored (ms since the Unix epoch).
    pub created_at: i64,
}

impl User {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(User {
            mxid: row.try_get("mxid")?,
            management_room: row.try_get("management_room")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// Access to the `users` table; get one from [`super::Store::users`].
#[derive(Debug, Clone, Copy)]
pub struct Users<'a> {
    pool: &'a AnyPool,
}

impl<'a> Users<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Users { pool }
    }

    /// The user with this Matrix ID, if stored.
    pub async fn get(self, mxid: &str) -> Result<Option<User>, StoreError> {
        let row =
            sqlx::query("SELECT mxid, management_room, created_at FROM users WHERE mxid = $1")
                .bind(mxid)
                .fetch_optional(self.pool)
                .await?;
        row.as_ref().map(User::from_row).transpose()
    }

    /// Stores the user if missing and returns the stored row (an existing row is untouched).
    pub async fn upsert(self, mxid: &str) -> Result<User, StoreError> {
        // The no-op update makes RETURNING yield the existing row on conflict.
        let row = sqlx::query(
            "INSERT INTO users (mxid, management_room, created_at) VALUES ($1, NULL, $2) \
             ON CONFLICT (mxid) DO UPDATE SET mxid = excluded.mxid \
             RETURNING mxid, management_room, created_at",
        )
        .bind(mxid)
        .bind(now_ms())
        .fetch_one(self.pool)
        .await?;
        User::from_row(&row)
    }

    /// Sets (or clears) the user's management room. Returns whether the user exists.
    pub async fn set_management_room(
        self,
        mxid: &str,
        room: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET management_room = $1 WHERE mxid = $2")
            .bind(room)
            .bind(mxid)
            .execute(self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The user whose management room is `room`, if any.
    pub async fn find_by_management_room(self, room: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(
            "SELECT mxid, management_room, created_at FROM users WHERE management_room = $1",
        )
        .bind(room)
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(User::from_row).transpose()
    }
}
