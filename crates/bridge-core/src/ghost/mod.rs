//! Ghosts: the Matrix users that stand for remote users.
//!
//! [`crate::bridge::Bridge::ghost_intent`] gives the intent of a remote user's ghost, making
//! sure it is registered and that its display name and avatar come from the network
//! ([`crate::network::NetworkClient::user_info`]) rather than its raw ID. The profile last
//! pushed to Matrix is kept in the `ghosts` table, so the network is asked again only for a
//! ghost that has no name yet (at most every [`RETRY_UNNAMED_MS`]) or when it reports a
//! change ([`crate::network::RemoteEvent::UserInfoChanged`] →
//! [`crate::bridge::Bridge::update_ghost`]). An avatar is downloaded and uploaded again only
//! when its [`AvatarRef::id`] changes.
//!
//! [`puppet`] is the other way a remote user can appear on Matrix: the user's own remote
//! account as their real Matrix account (double puppeting).

pub mod puppet;

use ruma::OwnedUserId;

use crate::{
    bridge::Bridge,
    matrix::{Intent, MatrixError},
    network::{
        events::{AvatarRef, UserInfo},
        NetworkClient, RemoteUserId,
    },
    store::{now_ms, Ghost, StoreError},
};

/// How long to wait before asking the network again for a ghost it gave no name for.
pub const RETRY_UNNAMED_MS: i64 = 10 * 60 * 1000;

/// Errors while preparing a ghost.
#[derive(Debug, thiserror::Error)]
pub enum GhostError {
    /// The remote ID cannot be turned into a Matrix user ID with the username template.
    #[error("remote user id {0:?} cannot be a ghost")]
    InvalidId(String),
    /// The homeserver refused to register the ghost.
    #[error("could not register the ghost")]
    Matrix(#[from] MatrixError),
    /// The ghosts table could not be read or written.
    #[error("could not access the ghosts table")]
    Store(#[from] StoreError),
}

impl Bridge {
    /// The Matrix ID of a remote user's ghost.
    pub fn ghost_mxid(&self, user: &RemoteUserId) -> Result<OwnedUserId, GhostError> {
        self.ghosts.user_id(user.as_str()).ok_or_else(|| GhostError::InvalidId(user.to_string()))
    }

    /// The intent of `user`'s ghost: registered, and named from the network through
    /// `client` if it has no name yet. Profile failures are logged, not returned: a ghost
    /// without a name can still speak.
    pub async fn ghost_intent(&self, client: &dyn NetworkClient, user: &RemoteUserId) -> Result<Intent, GhostError> {
        let intent = self.matrix.intent(self.ghost_mxid(user)?);
        intent.ensure_registered().await?;
        let row = self.store.ghosts().get(user.as_str()).await?;
        let stale = match &row {
            None => true,
            Some(g) => !g.name_set && now_ms() - g.updated_at > RETRY_UNNAMED_MS,
        };
        if stale {
            match client.user_info(user).await {
                Ok(info) => self.apply_user_info(client, &intent, user, row, &info).await?,
                Err(e) => {
                    tracing::warn!(%user, error = %e, "could not get a remote user's profile");
                    // Remember the attempt so the network is not asked on every message.
                    let ghost = row.unwrap_or_else(|| Ghost::new(user.as_str(), now_ms()));
                    self.store.ghosts().upsert(&Ghost { updated_at: now_ms(), ..ghost }).await?;
                }
            }
        }
        Ok(intent)
    }

    /// Pushes a (changed) profile to `user`'s ghost: the name if it differs from the one
    /// last set, the avatar if its ID differs. Fields the network left `None` stay as they are.
    pub async fn update_ghost(&self, client: &dyn NetworkClient, user: &RemoteUserId, info: &UserInfo) -> Result<(), GhostError> {
        let intent = self.matrix.intent(self.ghost_mxid(user)?);
        intent.ensure_registered().await?;
        let row = self.store.ghosts().get(user.as_str()).await?;
        self.apply_user_info(client, &intent, user, row, info).await
    }

    /// The display name last bridged for `user`, if any.
    pub async fn ghost_name(&self, user: &RemoteUserId) -> Option<String> {
        self.store.ghosts().get(user.as_str()).await.ok().flatten().and_then(|g| g.name)
    }

    async fn apply_user_info(
        &self,
        client: &dyn NetworkClient,
        intent: &Intent,
        user: &RemoteUserId,
        row: Option<Ghost>,
        info: &UserInfo,
    ) -> Result<(), GhostError> {
        let mut ghost = row.unwrap_or_else(|| Ghost::new(user.as_str(), now_ms()));
        if let Some(name) = info.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            if !ghost.name_set || ghost.name.as_deref() != Some(name) {
                match intent.set_display_name(name).await {
                    Ok(()) => {
                        ghost.name = Some(name.to_owned());
                        ghost.name_set = true;
                    }
                    Err(e) => tracing::warn!(%user, error = %e, "could not set a ghost's display name"),
                }
            }
        }
        if let Some(avatar) = &info.avatar {
            if ghost.avatar_hash.as_deref() != Some(avatar.id.as_str()) {
                match self.push_avatar(client, intent, avatar).await {
                    Ok(mxc) => {
                        ghost.avatar_mxc = mxc;
                        ghost.avatar_hash = Some(avatar.id.clone());
                    }
                    Err(e) => tracing::warn!(%user, error = %e, "could not set a ghost's avatar"),
                }
            }
        }
        ghost.updated_at = now_ms();
        self.store.ghosts().upsert(&ghost).await?;
        Ok(())
    }

    /// Puts back the room-specific name of `user`'s ghost in `room` when its member event
    /// there shows `shown` instead (the homeserver copies a new global profile into every
    /// room a user is in). Failures are logged.
    pub(crate) async fn keep_room_name(&self, room: &ruma::RoomId, user: &RemoteUserId, shown: Option<&str>, avatar: Option<&str>) {
        let key = format!("{}{room}", room_name_prefix(user));
        let wanted = match self.store.kv().get(&key).await {
            Ok(Some(name)) if Some(name.as_str()) != shown => name,
            Ok(_) => return,
            Err(e) => return tracing::warn!(%user, error = %e, "could not read a ghost's room name"),
        };
        let result = async {
            let intent = self.matrix.intent(self.ghost_mxid(user)?);
            put_member(&intent, room, Some(&wanted), avatar).await?;
            Ok::<_, GhostError>(())
        };
        if let Err(e) = result.await {
            tracing::warn!(%user, %room, error = %e, "could not restore a ghost's name in a room");
        }
    }

    /// Gives `user`'s ghost the name `wanted` in `room` only (a group alias), or its global
    /// profile back with `None`. Remembered, so a later change of the global profile (which
    /// the homeserver copies into every room) does not erase it. A name equal to the global
    /// one is no room name.
    pub(crate) async fn set_room_name(&self, room: &ruma::RoomId, user: &RemoteUserId, wanted: Option<&str>) -> Result<(), GhostError> {
        let ghost = self.store.ghosts().get(user.as_str()).await?.unwrap_or_else(|| Ghost::new(user.as_str(), now_ms()));
        let wanted = wanted.map(str::trim).filter(|n| !n.is_empty() && Some(*n) != ghost.name.as_deref());
        let key = format!("{}{room}", room_name_prefix(user));
        let previous = self.store.kv().get(&key).await?;
        if wanted == previous.as_deref() {
            return Ok(());
        }
        let intent = self.matrix.intent(self.ghost_mxid(user)?);
        put_member(&intent, room, wanted.or(ghost.name.as_deref()), ghost.avatar_mxc.as_deref()).await?;
        match wanted {
            Some(name) => self.store.kv().set(&key, name).await?,
            None => {
                self.store.kv().delete(&key).await?;
            }
        }
        Ok(())
    }

    /// Downloads an avatar from the network, uploads it and sets it on the intent's profile;
    /// returns the `mxc://` URI (`None` when the avatar was removed).
    async fn push_avatar(&self, client: &dyn NetworkClient, intent: &Intent, avatar: &AvatarRef) -> Result<Option<String>, String> {
        let Some(source) = &avatar.source else {
            intent.set_avatar_url(None).await.map_err(|e| e.to_string())?;
            return Ok(None);
        };
        let mxc = upload_remote_media(client, intent, source, None).await?;
        let uri = ruma::OwnedMxcUri::from(mxc.as_str());
        intent.set_avatar_url(Some(&uri)).await.map_err(|e| e.to_string())?;
        Ok(Some(mxc))
    }
}

/// The kv prefix of a ghost's room-specific names (`…/<room ID>` → name). The remote ID is
/// length-prefixed so no user's prefix is another's.
fn room_name_prefix(user: &RemoteUserId) -> String {
    format!("ghost-room-name/{}:{}/", user.as_str().len(), user.as_str())
}

/// Sends the ghost's own member event in `room` with this name and avatar.
async fn put_member(intent: &Intent, room: &ruma::RoomId, name: Option<&str>, avatar: Option<&str>) -> Result<(), MatrixError> {
    let mut content = serde_json::json!({ "membership": "join" });
    if let Some(name) = name {
        content["displayname"] = serde_json::json!(name);
    }
    if let Some(avatar) = avatar {
        content["avatar_url"] = serde_json::json!(avatar);
    }
    let raw = serde_json::value::to_raw_value(&content).map_err(|e| MatrixError::InvalidRequest(e.to_string()))?;
    intent.send_state_raw(room, "m.room.member".into(), intent.user_id().as_str(), ruma::serde::Raw::from_json(raw)).await?;
    Ok(())
}

/// Downloads `source` through the network client and uploads it as `intent`; returns the
/// `mxc://` URI. The error is a message for logs and notices.
pub(crate) async fn upload_remote_media(
    client: &dyn NetworkClient,
    intent: &Intent,
    source: &str,
    filename: Option<&str>,
) -> Result<String, String> {
    let (data, mime) = client.download_media(source).await.map_err(|e| format!("download from the network failed: {e}"))?;
    let mime = mime.unwrap_or_else(|| "application/octet-stream".to_owned());
    let mxc = intent.upload(data, &mime, filename).await.map_err(|e| format!("upload to the homeserver failed: {e}"))?;
    Ok(mxc.to_string())
}
