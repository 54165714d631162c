//! The `user_logins` table: a Matrix user's logins to remote accounts and their sessions.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::AnyPool;
use sqlx::Row;

use super::{json_text, parse_json, StoreError};

/// One login of a Matrix user to a remote account.
#[derive(Debug, Clone, PartialEq)]
pub struct UserLogin {
    /// The login's ID, chosen by the core (see [`UserLogin::make_id`]); unique.
    pub id: String,
    /// The Matrix user who owns the login (must exist in `users`).
    pub user_mxid: String,
    /// The remote account's stable ID; unique per Matrix user.
    pub remote_id: String,
    /// The remote account's display name.
    pub remote_name: String,
    /// The network's session data (tokens, cookies…): never log it.
    pub session: Value,
    /// The login's state as a short label chosen by the core (e.g. `connected`).
    pub state: String,
    /// When the login was first stored (ms since the Unix epoch).
    pub created_at: i64,
}

impl UserLogin {
    /// The conventional login ID for a user's login to a remote account: `user|remote`.
    pub fn make_id(user_mxid: &str, remote_id: &str) -> String {
        format!("{user_mxid}|{remote_id}")
    }

    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(UserLogin {
            id: row.try_get("id")?,
            user_mxid: row.try_get("user_mxid")?,
            remote_id: row.try_get("remote_id")?,
            remote_name: row.try_get("remote_name")?,
            session: parse_json(&row.try_get::<String, _>("session")?)?,
            state: row.try_get("state")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// Access to the `user_logins` table; get one from [`super::Store::user_logins`].
#[derive(Debug, Clone, Copy)]
pub struct UserLogins<'a> {
    pool: &'a AnyPool,
}

impl<'a> UserLogins<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        UserLogins { pool }
    }

    /// Inserts the login, or updates name, session and state of the login with the same
    /// `id` (`user_mxid`, `remote_id` and `created_at` of an existing row are kept).
    ///
    /// Fails with [`StoreError::Conflict`] if another login ID already holds the same
    /// (`user_mxid`, `remote_id`), and with [`StoreError::MissingReference`] if the user is
    /// not stored.
    pub async fn upsert(self, login: &UserLogin) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO user_logins \
                 (id, user_mxid, remote_id, remote_name, session, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO UPDATE SET remote_name = excluded.remote_name, \
                 session = excluded.session, state = excluded.state",
        )
        .bind(&login.id)
        .bind(&login.user_mxid)
        .bind(&login.remote_id)
        .bind(&login.remote_name)
        .bind(json_text(&login.session)?)
        .bind(&login.state)
        .bind(login.created_at)
        .execute(self.pool)
        .await?;
        Ok(())
    }

    /// The login with this ID.
    pub async fn get(self, id: &str) -> Result<Option<UserLogin>, StoreError> {
        let row = sqlx::query(
            "SELECT id, user_mxid, remote_id, remote_name, session, state, created_at \
             FROM user_logins WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(UserLogin::from_row).transpose()
    }

    /// The user's login to this remote account.
    pub async fn get_by_remote(
        self,
        user_mxid: &str,
        remote_id: &str,
    ) -> Result<Option<UserLogin>, StoreError> {
        let row = sqlx::query(
            "SELECT id, user_mxid, remote_id, remote_name, session, state, created_at \
             FROM user_logins WHERE user_mxid = $1 AND remote_id = $2",
        )
        .bind(user_mxid)
        .bind(remote_id)
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(UserLogin::from_row).transpose()
    }

    /// The user's logins, oldest first.
    pub async fn list_for_user(self, user_mxid: &str) -> Result<Vec<UserLogin>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, user_mxid, remote_id, remote_name, session, state, created_at \
             FROM user_logins WHERE user_mxid = $1 ORDER BY created_at, id",
        )
        .bind(user_mxid)
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(UserLogin::from_row).collect()
    }

    /// Every login of every user, oldest first (to reconnect them at startup).
    pub async fn list_all(self) -> Result<Vec<UserLogin>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, user_mxid, remote_id, remote_name, session, state, created_at \
             FROM user_logins ORDER BY created_at, id",
        )
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(UserLogin::from_row).collect()
    }

    /// Replaces the login's session data. Returns whether the login exists.
    pub async fn update_session(self, id: &str, session: &Value) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE user_logins SET session = $1 WHERE id = $2")
            .bind(json_text(session)?)
            .bind(id)
            .execute(self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Sets the login's state label. Returns whether the login exists.
    pub async fn update_state(self, id: &str, state: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE user_logins SET state = $1 WHERE id = $2")
            .bind(state)
            .bind(id)
            .execute(self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes the login (portals relaying through it lose their relay). Returns whether it
    /// existed.
    pub async fn delete(self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM user_logins WHERE id = $1")
            .bind(id)
            .execute(self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
