//! The `reactions` table: bridged reactions and their Matrix annotation events.
//!
//! A reaction is unique per (portal, target message part, sender, emoji ID); its Matrix
//! event ID is unique too. Reactions go away with the message part they target.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::AnyPool;
use sqlx::Row;

use super::{json_text, parse_json, PortalKey, StoreError};

/// One reaction by one remote user to one message part.
#[derive(Debug, Clone, PartialEq)]
pub struct Reaction {
    /// The portal the target message is in.
    pub portal: PortalKey,
    /// The target message's remote ID.
    pub message_remote_id: String,
    /// The target part's ID (must be mapped in `messages`).
    pub message_part_id: String,
    /// The remote ID of the user who reacted.
    pub sender_remote_id: String,
    /// The network's ID for the emoji (the emoji itself on most networks); `""` if a sender
    /// has at most one reaction per message.
    pub emoji_id: String,
    /// The Matrix annotation event ID; unique.
    pub mxid: String,
    /// The reaction key shown on Matrix.
    pub emoji: String,
    /// When the reaction was made (ms since the Unix epoch).
    pub timestamp: i64,
    /// Network-specific data.
    pub metadata: Value,
}

impl Reaction {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Reaction {
            portal: PortalKey {
                remote_id: row.try_get("portal_remote_id")?,
                receiver: row.try_get("portal_receiver")?,
            },
            message_remote_id: row.try_get("message_remote_id")?,
            message_part_id: row.try_get("message_part_id")?,
            sender_remote_id: row.try_get("sender_remote_id")?,
            emoji_id: row.try_get("emoji_id")?,
            mxid: row.try_get("mxid")?,
            emoji: row.try_get("emoji")?,
            timestamp: row.try_get("sent_at")?,
            metadata: parse_json(&row.try_get::<String, _>("metadata")?)?,
        })
    }
}

/// The selected columns, in [`Reaction::from_row`]'s terms.
macro_rules! select_reactions {
    ($tail:literal) => {
        concat!(
            "SELECT portal_remote_id, portal_receiver, message_remote_id, message_part_id, \
                 sender_remote_id, emoji_id, mxid, emoji, sent_at, metadata \
             FROM reactions ",
            $tail
        )
    };
}

/// Access to the `reactions` table; get one from [`super::Store::reactions`].
#[derive(Debug, Clone, Copy)]
pub struct Reactions<'a> {
    pool: &'a AnyPool,
}

impl<'a> Reactions<'a> {
    pub(super) fn new(pool: &'a AnyPool) -> Self {
        Reactions { pool }
    }

    /// Inserts the reaction, or replaces event ID, emoji, timestamp and metadata of the
    /// reaction with the same key (a changed reaction).
    ///
    /// Fails with [`StoreError::Conflict`] if another reaction has the same `mxid`, and with
    /// [`StoreError::MissingReference`] if the target part is not mapped.
    pub async fn upsert(self, reaction: &Reaction) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO reactions (portal_remote_id, portal_receiver, message_remote_id, \
                 message_part_id, sender_remote_id, emoji_id, mxid, emoji, sent_at, metadata) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (portal_remote_id, portal_receiver, message_remote_id, \
                 message_part_id, sender_remote_id, emoji_id) \
             DO UPDATE SET mxid = excluded.mxid, emoji = excluded.emoji, \
                 sent_at = excluded.sent_at, metadata = excluded.metadata",
        )
        .bind(&reaction.portal.remote_id)
        .bind(&reaction.portal.receiver)
        .bind(&reaction.message_remote_id)
        .bind(&reaction.message_part_id)
        .bind(&reaction.sender_remote_id)
        .bind(&reaction.emoji_id)
        .bind(&reaction.mxid)
        .bind(&reaction.emoji)
        .bind(reaction.timestamp)
        .bind(json_text(&reaction.metadata)?)
        .execute(self.pool)
        .await?;
        Ok(())
    }

    /// The reaction carried by this Matrix event.
    pub async fn get_by_mxid(self, mxid: &str) -> Result<Option<Reaction>, StoreError> {
        let row = sqlx::query(select_reactions!("WHERE mxid = $1"))
            .bind(mxid)
            .fetch_optional(self.pool)
            .await?;
        row.as_ref().map(Reaction::from_row).transpose()
    }

    /// The reaction of `sender_remote_id` with `emoji_id` on one message part.
    pub async fn get(
        self,
        portal: &PortalKey,
        message_remote_id: &str,
        message_part_id: &str,
        sender_remote_id: &str,
        emoji_id: &str,
    ) -> Result<Option<Reaction>, StoreError> {
        let row = sqlx::query(select_reactions!(
            "WHERE portal_remote_id = $1 AND portal_receiver = $2 AND message_remote_id = $3 \
             AND message_part_id = $4 AND sender_remote_id = $5 AND emoji_id = $6"
        ))
        .bind(&portal.remote_id)
        .bind(&portal.receiver)
        .bind(message_remote_id)
        .bind(message_part_id)
        .bind(sender_remote_id)
        .bind(emoji_id)
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(Reaction::from_row).transpose()
    }

    /// Deletes the reaction with the same key as `reaction` (its `mxid` and other fields are
    /// ignored). Returns whether it existed.
    pub async fn delete(self, reaction: &Reaction) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM reactions WHERE portal_remote_id = $1 AND portal_receiver = $2 \
             AND message_remote_id = $3 AND message_part_id = $4 AND sender_remote_id = $5 \
             AND emoji_id = $6",
        )
        .bind(&reaction.portal.remote_id)
        .bind(&reaction.portal.receiver)
        .bind(&reaction.message_remote_id)
        .bind(&reaction.message_part_id)
        .bind(&reaction.sender_remote_id)
        .bind(&reaction.emoji_id)
        .execute(self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes the reaction carried by this Matrix event. Returns whether it existed.
    pub async fn delete_by_mxid(self, mxid: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM reactions WHERE mxid = $1")
            .bind(mxid)
            .execute(self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every reaction to any part of a remote message, oldest first.
    pub async fn list_for_message(
        self,
        portal: &PortalKey,
        message_remote_id: &str,
    ) -> Result<Vec<Reaction>, StoreError> {
        let rows = sqlx::query(select_reactions!(
            "WHERE portal_remote_id = $1 AND portal_receiver = $2 AND message_remote_id = $3 \
             ORDER BY sent_at, message_part_id, sender_remote_id, emoji_id"
        ))
        .bind(&portal.remote_id)
        .bind(&portal.receiver)
        .bind(message_remote_id)
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(Reaction::from_row).collect()
    }
}
