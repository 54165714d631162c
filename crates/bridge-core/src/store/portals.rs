//! The `portals` table: remote chats and the Matrix rooms that mirror them.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::AnyPool;
use sqlx::Row;

use super::{json_text, parse_json, StoreError};

/// Identifies a portal: the remote chat's ID and who sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortalKey {
    /// The remote chat's ID.
    pub remote_id: String,
    /// The login ID for a chat seen per login (a DM), or `""` for a chat shared by all.
    pub receiver: String,
}

impl PortalKey {
    /// The key of a chat shared by every login (empty receiver).
    pub fn shared(remote_id: impl Into<String>) -> Self {
        PortalKey {
            remote_id: remote_id.into(),
            receiver: String::new(),
        }
    }

    /// The key of a chat seen only through one login.
    pub fn for_login(remote_id: impl Into<String>, login_id: impl Into<String>) -> Self {
        PortalKey {
            remote_id: remote_id.into(),
            receiver: login_id.into(),
        }
    }
}

/// What kind of chat a portal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortalKind {
    /// A one-to-one chat (the room is flagged `is_direct`).
    Direct,
    /// A group chat.
    Group,
    /// A broadcast channel or a channel of a server/guild.
    Channel,
    /// A container of other chats, bridged as a Matrix space.
    Space,
}

impl PortalKind {
    /// The stored label.
    pub fn as_str(self) -> &'static str {
        match self {
            PortalKind::Direct => "direct",
            PortalKind::Group => "group",
            PortalKind::Channel => "channel",
            PortalKind::Space => "space",
        }
    }

    /// Parses a stored label.
    pub fn parse(label: &str) -> Option<Self> {
        match label {
            "direct" => Some(PortalKind::Direct),
            "group" => Some(PortalKind::Group),
            "channel" => Some(PortalKind::Channel),
            "space" => Some(PortalKind::Space),
            _ => None,
        }
    }

    /// Whether rooms of this kind are direct chats.
    pub fn is_direct(self) -> bool {
        self == PortalKind::Direct
    }
}

/// A remote chat and, once created, its Matrix room.
#[derive(Debug, Clone, PartialEq)]
pub struct Portal {
    /// The portal's key.
    pub key: PortalKey,
    /// The Matrix room ID, once the room exists; unique.
    pub mxid: Option<String>,
    /// What kind of chat this is.
    pub kind: PortalKind,
    /// The chat's name as last bridged.
    pub name: Option<String>,
    /// The chat's topic as last bridged.
    pub topic: Option<String>,
    /// The room avatar's `mxc://` URI.
    pub avatar_url: Option<String>,
    /// A hash of the remote avatar, to skip re-uploading an unchanged one.
    pub avatar_hash: Option<String>,
    /// The remote ID of the space portal (same receiver) this chat belongs to.
    pub parent_space: Option<String>,
    /// The login that relays messages of users without a login, if relaying is on.
    pub relay_login_id: Option<String>,
    /// Network-specific data.
    pub metadata: Value,
    /// When the portal was first stored (ms since the Unix epoch).
    pub created_at: i64,
}

impl Portal {
    /// A portal with only its key and kind set (no room yet, empty metadata).
    pub fn new(key: PortalKey, kind: PortalKind, created_at: i64) -> Self {
        Portal {
            key,
            mxid: None,
            kind,
            name: None,
            topic: None,
            avatar_url: None,
            avatar_hash: None,
            parent_space: None,
            relay_login_id: None,
            metadata: Value::Object(serde_json::Map::new()),
            created_at,
        }
    }

    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        let kind: String = row.try_get("kind")?;
        Ok(Portal {
            key: PortalKey {
                remote_id: row.try_get("remote_id")?,
                receiver: row.try_get("receiver")?,
            },
            mxid: row.try_get("mxid")?,
            kind: PortalKind::parse(&kind).ok_or(StoreError::Decode {
                column: "portals.kind",
                value: kind,
            })?,
            name: row.try_get("name")?,
            topic: row.try_get("topic")?,
            avatar_url: row.try_get("avatar_url")?,
            avatar_hash: row.try_get("avatar_hash")?,
            parent_space: row.try_get("parent_space")?,
            relay_login_id: row.try_get("relay_login_id")?,
            metadata: parse_json(&row.try_get::<String, _>("metadata")?)?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// Access to the `portals` table; get one from [`super::Store::portals`].
#[derive(Debug, Clone, Copy)]
pub struct Portals<'a> {
    pool: &'a AnyPool,
}

impl<'a> Portals<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Portals { pool }
    }

    /// The portal with this key.
    pub async fn get_by_key(self, key: &PortalKey) -> Result<Option<Portal>, StoreError> {
        let row = sqlx::query(
            "SELECT remote_id, receiver, mxid, kind, name, topic, avatar_url, avatar_hash, \
                 parent_space, relay_login_id, metadata, created_at \
             FROM portals WHERE remote_id = $1 AND receiver = $2",
        )
        .bind(&key.remote_id)
        .bind(&key.receiver)
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(Portal::from_row).transpose()
    }

    /// The portal whose Matrix room is `mxid`.
    pub async fn get_by_mxid(self, mxid: &str) -> Result<Option<Portal>, StoreError> {
        let row = sqlx::query(
            "SELECT remote_id, receiver, mxid, kind, name, topic, avatar_url, avatar_hash, \
                 parent_space, relay_login_id, metadata, created_at \
             FROM portals WHERE mxid = $1",
        )
        .bind(mxid)
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(Portal::from_row).transpose()
    }

    /// Inserts the portal, or overwrites every field but `created_at` of the portal with the
    /// same key. Fails with [`StoreError::Conflict`] if another portal has the same `mxid`.
    pub async fn upsert(self, portal: &Portal) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO portals (remote_id, receiver, mxid, kind, name, topic, avatar_url, \
                 avatar_hash, parent_space, relay_login_id, metadata, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (remote_id, receiver) DO UPDATE SET mxid = excluded.mxid, \
                 kind = excluded.kind, name = excluded.name, topic = excluded.topic, \
                 avatar_url = excluded.avatar_url, avatar_hash = excluded.avatar_hash, \
                 parent_space = excluded.parent_space, \
                 relay_login_id = excluded.relay_login_id, metadata = excluded.metadata",
        )
        .bind(&portal.key.remote_id)
        .bind(&portal.key.receiver)
        .bind(portal.mxid.as_deref())
        .bind(portal.kind.as_str())
        .bind(portal.name.as_deref())
        .bind(portal.topic.as_deref())
        .bind(portal.avatar_url.as_deref())
        .bind(portal.avatar_hash.as_deref())
        .bind(portal.parent_space.as_deref())
        .bind(portal.relay_login_id.as_deref())
        .bind(json_text(&portal.metadata)?)
        .bind(portal.created_at)
        .execute(self.pool)
        .await?;
        Ok(())
    }

    /// Sets (or clears) the portal's Matrix room. Returns whether the portal exists; fails
    /// with [`StoreError::Conflict`] if another portal has that room.
    pub async fn set_mxid(self, key: &PortalKey, mxid: Option<&str>) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE portals SET mxid = $1 WHERE remote_id = $2 AND receiver = $3")
                .bind(mxid)
                .bind(&key.remote_id)
                .bind(&key.receiver)
                .execute(self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes the portal with its messages and reactions. Returns whether it existed.
    pub async fn delete(self, key: &PortalKey) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM portals WHERE remote_id = $1 AND receiver = $2")
            .bind(&key.remote_id)
            .bind(&key.receiver)
            .execute(self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every portal with this receiver (a login ID, or `""` for shared chats), by remote ID.
    pub async fn list_for_receiver(self, receiver: &str) -> Result<Vec<Portal>, StoreError> {
        let rows = sqlx::query(
            "SELECT remote_id, receiver, mxid, kind, name, topic, avatar_url, avatar_hash, \
                 parent_space, relay_login_id, metadata, created_at \
             FROM portals WHERE receiver = $1 ORDER BY remote_id",
        )
        .bind(receiver)
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(Portal::from_row).collect()
    }

    /// Every portal that has a Matrix room, by key.
    pub async fn list_with_room(self) -> Result<Vec<Portal>, StoreError> {
        let rows = sqlx::query(
            "SELECT remote_id, receiver, mxid, kind, name, topic, avatar_url, avatar_hash, \
                 parent_space, relay_login_id, metadata, created_at \
             FROM portals WHERE mxid IS NOT NULL ORDER BY remote_id, receiver",
        )
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(Portal::from_row).collect()
    }
}
