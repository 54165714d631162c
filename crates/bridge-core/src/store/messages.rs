//! The `messages` table: the map between remote message parts and Matrix events.
//!
//! A remote message may become several Matrix events (a caption and two images); each is a
//! *part* with its own `part_id` (`""` for a message with a single part). Both sides of the
//! map are unique: one remote part has one event, one event belongs to one part.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::AnyPool;
use sqlx::Row;

use super::{json_text, parse_json, PortalKey, StoreError};

/// One part of a remote message and the Matrix event that carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The portal the message is in (must exist in `portals`).
    pub portal: PortalKey,
    /// The remote message's ID.
    pub remote_id: String,
    /// The part's ID within the message (`""` for a single-part message).
    pub part_id: String,
    /// The Matrix event ID; unique.
    pub mxid: String,
    /// The Matrix room the event is in.
    pub room_mxid: String,
    /// The remote ID of the sender.
    pub sender_remote_id: String,
    /// The Matrix user who sent the event (a ghost or a real user).
    pub sender_mxid: String,
    /// When the message was sent (ms since the Unix epoch).
    pub timestamp: i64,
    /// The remote ID of the thread's root message, if the message is in a thread.
    pub thread_root: Option<String>,
    /// Network-specific data.
    pub metadata: Value,
}

impl Message {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Message {
            portal: PortalKey {
                remote_id: row.try_get("portal_remote_id")?,
                receiver: row.try_get("portal_receiver")?,
            },
            remote_id: row.try_get("remote_id")?,
            part_id: row.try_get("part_id")?,
            mxid: row.try_get("mxid")?,
            room_mxid: row.try_get("room_mxid")?,
            sender_remote_id: row.try_get("sender_remote_id")?,
            sender_mxid: row.try_get("sender_mxid")?,
            timestamp: row.try_get("sent_at")?,
            thread_root: row.try_get("thread_root")?,
            metadata: parse_json(&row.try_get::<String, _>("metadata")?)?,
        })
    }
}

/// The selected columns, in [`Message::from_row`]'s terms.
macro_rules! select_messages {
    ($tail:literal) => {
        concat!(
            "SELECT portal_remote_id, portal_receiver, remote_id, part_id, mxid, room_mxid, \
                 sender_remote_id, sender_mxid, sent_at, thread_root, metadata \
             FROM messages ",
            $tail
        )
    };
}

/// Access to the `messages` table; get one from [`super::Store::messages`].
#[derive(Debug, Clone, Copy)]
pub struct Messages<'a> {
    pool: &'a AnyPool,
}

impl<'a> Messages<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Messages { pool }
    }

    /// Records a new mapping.
    ///
    /// Never overwrites: fails with [`StoreError::Conflict`] if the remote part or the event
    /// is already mapped, and with [`StoreError::MissingReference`] if the portal is not stored.
    pub async fn insert(self, message: &Message) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO messages (portal_remote_id, portal_receiver, remote_id, part_id, mxid, \
                 room_mxid, sender_remote_id, sender_mxid, sent_at, thread_root, metadata) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&message.portal.remote_id)
        .bind(&message.portal.receiver)
        .bind(&message.remote_id)
        .bind(&message.part_id)
        .bind(&message.mxid)
        .bind(&message.room_mxid)
        .bind(&message.sender_remote_id)
        .bind(&message.sender_mxid)
        .bind(message.timestamp)
        .bind(message.thread_root.as_deref())
        .bind(json_text(&message.metadata)?)
        .execute(self.pool)
        .await?;
        Ok(())
    }

    /// The mapping of one part of a remote message.
    pub async fn get_part(
        self,
        portal: &PortalKey,
        remote_id: &str,
        part_id: &str,
    ) -> Result<Option<Message>, StoreError> {
        let row = sqlx::query(select_messages!(
            "WHERE portal_remote_id = $1 AND portal_receiver = $2 AND remote_id = $3 \
             AND part_id = $4"
        ))
        .bind(&portal.remote_id)
        .bind(&portal.receiver)
        .bind(remote_id)
        .bind(part_id)
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(Message::from_row).transpose()
    }

    /// Every part of a remote message, by part ID.
    pub async fn get_parts(
        self,
        portal: &PortalKey,
        remote_id: &str,
    ) -> Result<Vec<Message>, StoreError> {
        let rows = sqlx::query(select_messages!(
            "WHERE portal_remote_id = $1 AND portal_receiver = $2 AND remote_id = $3 \
             ORDER BY part_id"
        ))
        .bind(&portal.remote_id)
        .bind(&portal.receiver)
        .bind(remote_id)
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(Message::from_row).collect()
    }

    /// The part carried by this Matrix event.
    pub async fn get_by_mxid(self, mxid: &str) -> Result<Option<Message>, StoreError> {
        let row = sqlx::query(select_messages!("WHERE mxid = $1"))
            .bind(mxid)
            .fetch_optional(self.pool)
            .await?;
        row.as_ref().map(Message::from_row).transpose()
    }

    /// Deletes the mapping of this Matrix event (and reactions to it). Returns whether it
    /// existed.
    pub async fn delete_by_mxid(self, mxid: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM messages WHERE mxid = $1")
            .bind(mxid)
            .execute(self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes every part of a remote message (and reactions to them). Returns how many
    /// parts were deleted.
    pub async fn delete_by_remote(
        self,
        portal: &PortalKey,
        remote_id: &str,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM messages \
             WHERE portal_remote_id = $1 AND portal_receiver = $2 AND remote_id = $3",
        )
        .bind(&portal.remote_id)
        .bind(&portal.receiver)
        .bind(remote_id)
        .execute(self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The most recent part in the portal by timestamp (to catch up from after a restart).
    pub async fn latest_in_portal(self, portal: &PortalKey) -> Result<Option<Message>, StoreError> {
        let row = sqlx::query(select_messages!(
            "WHERE portal_remote_id = $1 AND portal_receiver = $2 \
             ORDER BY sent_at DESC, remote_id DESC, part_id DESC LIMIT 1"
        ))
        .bind(&portal.remote_id)
        .bind(&portal.receiver)
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(Message::from_row).transpose()
    }
}
