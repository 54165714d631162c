//! The `ghosts` table: the Matrix puppets of remote users and their bridged profiles.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::AnyPool;
use sqlx::Row;

use super::{json_text, parse_json, StoreError};

/// A remote user's ghost and the profile last pushed to Matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Ghost {
    /// The remote user's ID.
    pub remote_id: String,
    /// The display name last bridged.
    pub name: Option<String>,
    /// Whether `name` has been set on the Matrix profile.
    pub name_set: bool,
    /// The avatar's `mxc://` URI.
    pub avatar_mxc: Option<String>,
    /// A hash of the remote avatar, to skip re-uploading an unchanged one.
    pub avatar_hash: Option<String>,
    /// Network-specific data.
    pub metadata: Value,
    /// When the row was last written (ms since the Unix epoch).
    pub updated_at: i64,
}

impl Ghost {
    /// A ghost with only its remote ID set (no profile yet, empty metadata).
    pub fn new(remote_id: impl Into<String>, updated_at: i64) -> Self {
        Ghost {
            remote_id: remote_id.into(),
            name: None,
            name_set: false,
            avatar_mxc: None,
            avatar_hash: None,
            metadata: Value::Object(serde_json::Map::new()),
            updated_at,
        }
    }

    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Ghost {
            remote_id: row.try_get("remote_id")?,
            name: row.try_get("name")?,
            name_set: row.try_get::<i64, _>("name_set")? != 0,
            avatar_mxc: row.try_get("avatar_mxc")?,
            avatar_hash: row.try_get("avatar_hash")?,
            metadata: parse_json(&row.try_get::<String, _>("metadata")?)?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// Access to the `ghosts` table; get one from [`super::Store::ghosts`].
#[derive(Debug, Clone, Copy)]
pub struct Ghosts<'a> {
    pool: &'a AnyPool,
}

impl<'a> Ghosts<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Ghosts { pool }
    }

    /// The ghost of this remote user.
    pub async fn get(self, remote_id: &str) -> Result<Option<Ghost>, StoreError> {
        let row = sqlx::query(
            "SELECT remote_id, name, name_set, avatar_mxc, avatar_hash, metadata, updated_at \
             FROM ghosts WHERE remote_id = $1",
        )
        .bind(remote_id)
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(Ghost::from_row).transpose()
    }

    /// Inserts the ghost, or overwrites every field of the ghost with the same remote ID.
    pub async fn upsert(self, ghost: &Ghost) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ghosts \
                 (remote_id, name, name_set, avatar_mxc, avatar_hash, metadata, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (remote_id) DO UPDATE SET name = excluded.name, \
                 name_set = excluded.name_set, avatar_mxc = excluded.avatar_mxc, \
                 avatar_hash = excluded.avatar_hash, metadata = excluded.metadata, \
                 updated_at = excluded.updated_at",
        )
        .bind(&ghost.remote_id)
        .bind(ghost.name.as_deref())
        .bind(i64::from(ghost.name_set))
        .bind(ghost.avatar_mxc.as_deref())
        .bind(ghost.avatar_hash.as_deref())
        .bind(json_text(&ghost.metadata)?)
        .bind(ghost.updated_at)
        .execute(self.pool)
        .await?;
        Ok(())
    }
}
