//! Creating, updating and deleting portal rooms, and the per-login space.
//!
//! A DM room is created by the other person's ghost with the user invited as a direct
//! chat (so clients list it under people, named after the ghost) and the bot invited and
//! given admin; a group room is created by the bot with the members' ghosts invited and
//! joined (the chat's admins as moderators). Both carry `m.bridge` / `uk.half-shot.bridge` state and belong to the login's
//! space, or, when the chat info names a `parent` (a Discord server), to that parent's space
//! (created on demand, named after the parent, itself inside the login's space). Right after creation the room is backfilled ([`super::backfill`]).

use std::collections::BTreeMap;

use ruma::{
    events::AnyInitialStateEvent, room::RoomType, serde::Raw, Int, OwnedRoomId, OwnedUserId, RoomId,
};
use serde_json::{json, Value};

use super::{actor::Actor, PortalError};
use crate::{
    bridge::logins::LiveLogin,
    ghost::upload_remote_media,
    matrix::{CreateRoomOptions, Intent, MatrixError},
    network::{
        events::{ChatInfo, ChatMember, ChatRef},
        LoginId, RemoteChatId, RemoteUserId,
    },
    store::{now_ms, Portal, PortalKind},
};

/// At most this many members get ghosts joined when a room is created or synced.
pub const MAX_MEMBERS: usize = 100;

/// The kv key of the space of `parent` (a chat that contains others) for `receiver`.
pub fn parent_space_key(receiver: &str, parent: &RemoteChatId) -> String {
    format!("portal.parent_space.{receiver}.{parent}")
}

/// Builds an initial state event for `create_room`.
fn initial_state(event_type: &str, state_key: &str, content: Value) -> Result<Raw<AnyInitialStateEvent>, PortalError> {
    let json = json!({ "type": event_type, "state_key": state_key, "content": content });
    serde_json::value::to_raw_value(&json)
        .map(Raw::from_json)
        .map_err(|e| PortalError::Matrix(MatrixError::InvalidRequest(e.to_string())))
}

/// Sends a state event built as JSON.
pub(super) async fn send_state(intent: &Intent, room: &RoomId, event_type: &str, state_key: &str, content: Value) -> Result<(), PortalError> {
    let raw = serde_json::value::to_raw_value(&content)
        .map(Raw::from_json)
        .map_err(|e| PortalError::Matrix(MatrixError::InvalidRequest(e.to_string())))?;
    intent.send_state_raw(room, event_type.into(), state_key, raw).await?;
    Ok(())
}

impl Actor {
    /// The `m.bridge` content of this portal.
    fn bridge_info(&self, name: Option<&str>) -> Value {
        let info = &self.bridge.info;
        let mut channel = json!({ "id": self.key.remote_id });
        if let Some(name) = name {
            channel["displayname"] = json!(name);
        }
        json!({
            "bridgebot": self.bridge.bot(),
            "creator": self.bridge.bot(),
            "protocol": { "id": info.id, "displayname": info.display_name, "external_url": info.url },
            "channel": channel,
        })
    }

    /// The state key of this portal's `m.bridge` event.
    fn bridge_state_key(&self) -> String {
        format!("{}://{}/{}", self.bridge.info.id, self.key.receiver, self.key.remote_id)
    }

    /// The portal's room, creating it (and backfilling it) if it does not exist yet.
    /// `other` is the other person of a DM when the network's chat info does not say.
    pub async fn ensure_room(&mut self, live: &LiveLogin, other: Option<&RemoteUserId>) -> Result<OwnedRoomId, PortalError> {
        if let Some(room) = self.room() {
            self.ensure_user_invited(live, &room).await;
            return Ok(room);
        }
        let chat = self.chat();
        let info = match live.client.chat_info(&chat).await {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!(error = %e, "could not get chat info; creating the room with what is known");
                ChatInfo { is_direct: chat.receiver.is_some() && other.is_some(), ..ChatInfo::default() }
            }
        };
        let me = RemoteUserId(live.id.0.clone());
        let mut members: Vec<RemoteUserId> =
            info.members.iter().flatten().map(|m| m.user.clone()).filter(|u| *u != me).take(MAX_MEMBERS).collect();
        let dm_other = if info.is_direct {
            members.first().cloned().or_else(|| other.filter(|u| **u != me).cloned())
        } else {
            None
        };
        if let Some(o) = &dm_other {
            if !members.contains(o) {
                members.insert(0, o.clone());
            }
        }
        let mut ghosts: Vec<Intent> = Vec::new();
        for member in &members {
            match self.bridge.ghost_intent(live.client.as_ref(), member).await {
                Ok(intent) => ghosts.push(intent),
                Err(e) => tracing::warn!(%member, error = %e, "could not prepare a member's ghost"),
            }
        }
        let name = match (&info.name, &dm_other) {
            (Some(name), _) => Some(name.clone()),
            (None, Some(o)) => self.bridge.ghost_name(o).await,
            (None, None) => None,
        };
        let bot = self.bridge.bot_intent();
        let creator = match &dm_other {
            Some(o) => ghosts.iter().find(|g| self.bridge.ghosts.remote_id(g.user_id()).as_deref() == Some(o.as_str())).cloned(),
            None => None,
        };
        let creator = creator.unwrap_or_else(|| bot.clone());

        let mut state = vec![
            initial_state("m.bridge", &self.bridge_state_key(), self.bridge_info(name.as_deref()))?,
            initial_state("uk.half-shot.bridge", &self.bridge_state_key(), self.bridge_info(name.as_deref()))?,
        ];
        let mut avatar_url = None;
        if let Some(avatar) = info.avatar.as_ref().and_then(|a| a.source.as_ref().map(|s| (a, s))) {
            match upload_remote_media(live.client.as_ref(), &bot, avatar.1, None).await {
                Ok(mxc) => {
                    state.push(initial_state("m.room.avatar", "", json!({ "url": mxc }))?);
                    avatar_url = Some((mxc, avatar.0.id.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "could not bridge a chat avatar"),
            }
        }
        let login_space = self.ensure_space(live).await;
        let parent = info.parent.as_ref().filter(|p| p.as_str() != self.key.remote_id);
        let space = match (login_space, parent) {
            (Ok(login_space), Some(parent)) => match self.ensure_parent_space(live, parent, &login_space).await {
                Ok(space) => Ok(space),
                Err(e) => {
                    tracing::warn!(%parent, error = %e, "could not prepare the parent's space; using the login's");
                    Ok(login_space)
                }
            },
            (other, _) => other,
        };
        let space = match space {
            Ok(space) => {
                let via = self.bridge.matrix.server_name().to_string();
                state.push(initial_state("m.space.parent", space.as_str(), json!({ "via": [via], "canonical": true }))?);
                Some(space)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not prepare the login's space");
                None
            }
        };

        // `bridge.encryption.default`: new portals are encrypted from the start (only when the
        // bot's device runs, or nobody could read the bridged messages).
        if self.bridge.settings.encryption.default && self.bridge.crypto.ready().is_some() {
            state.push(initial_state("m.room.encryption", "", json!({ "algorithm": "m.megolm.v1.aes-sha2" }))?);
        }
        let mut invite: Vec<OwnedUserId> = vec![live.user.clone()];
        if !creator.is_bot() {
            invite.push(self.bridge.bot().to_owned());
        }
        invite.extend(ghosts.iter().map(|g| g.user_id().to_owned()).filter(|g| g != creator.user_id()));
        // The chat's admins are moderators of the room (the bot stays its only admin).
        let mut power_level_overrides: BTreeMap<OwnedUserId, Int> = [(self.bridge.bot().to_owned(), Int::from(100))].into_iter().collect();
        for admin in info.members.iter().flatten().filter(|m| m.is_admin) {
            let user = if admin.user == me { Some(live.user.clone()) } else { self.bridge.ghosts.user_id(admin.user.as_str()) };
            if let Some(user) = user {
                power_level_overrides.entry(user).or_insert_with(|| Int::from(50));
            }
        }
        let options = CreateRoomOptions {
            name: name.clone(),
            topic: info.topic.clone(),
            is_direct: dm_other.is_some(),
            invite,
            power_level_overrides,
            initial_state: state,
            ..CreateRoomOptions::default()
        };
        let room = creator.create_room(options).await?;
        tracing::info!(%room, name = name.as_deref().unwrap_or(""), direct = dm_other.is_some(), "created a portal room");

        let kind = if dm_other.is_some() { PortalKind::Direct } else { PortalKind::Group };
        let mut portal = self.portal.take().unwrap_or_else(|| Portal::new(self.key.clone(), kind, now_ms()));
        portal.mxid = Some(room.to_string());
        portal.kind = kind;
        portal.name = name;
        portal.topic = info.topic.clone();
        if let Some(parent) = parent {
            portal.parent_space = Some(parent.0.clone());
        }
        if let Some((mxc, hash)) = avatar_url {
            portal.avatar_url = Some(mxc);
            portal.avatar_hash = Some(hash);
        }
        self.portal = Some(portal);
        self.save().await?;
        self.bridge.portals.register_room(&room, &self.key);
        self.members_checked.insert(live.user.clone());

        if !creator.is_bot() {
            bot.ensure_joined(&room).await?;
        }
        for ghost in ghosts.iter().filter(|g| g.user_id() != creator.user_id()) {
            if let Err(e) = ghost.ensure_joined(&room).await {
                tracing::warn!(ghost = %ghost.user_id(), error = %e, "a member's ghost could not join");
            }
        }
        if let Some(members) = &info.members {
            self.apply_nicknames(&room, members).await;
        }
        if let Some(puppet) = self.bridge.puppet_intent(&live.user) {
            // With double puppeting the user's account joins for them.
            if let Err(e) = self.bridge.join_puppet(&puppet, &room).await {
                tracing::warn!(user = %live.user, error = %e, "the double puppet could not join a new portal");
            }
        }
        if let Some(space) = space {
            let via = self.bridge.matrix.server_name().to_string();
            if let Err(e) = send_state(&bot, &space, "m.space.child", room.as_str(), json!({ "via": [via] })).await {
                tracing::warn!(error = %e, "could not add the portal to its space");
            }
        }
        self.backfill_initial(live, &room).await;
        Ok(room)
    }

    /// Gives ghosts their chat-specific name (a group alias) in this room only, and their
    /// global profile back when the alias is gone (see [`crate::bridge::Bridge::set_room_name`]).
    async fn apply_nicknames(&self, room: &RoomId, members: &[ChatMember]) {
        for member in members.iter().take(MAX_MEMBERS) {
            if let Err(e) = self.bridge.set_room_name(room, &member.user, member.nickname.as_deref()).await {
                tracing::warn!(user = %member.user, error = %e, "could not set a member's name in the room");
            }
        }
    }

    /// Invites the login's Matrix user if they are neither joined nor invited (another
    /// user's login reporting an event in a shared portal). Checked once per actor run.
    pub(super) async fn ensure_user_invited(&mut self, live: &LiveLogin, room: &RoomId) {
        if !self.members_checked.insert(live.user.clone()) {
            return;
        }
        if !self.invite_if_absent(room, &live.user).await {
            return;
        }
        // The portal's parent space (a Discord server's) was made for the first login that
        // saw it: this user gets it too, listed in their own login's space.
        let Some(parent) = self.portal.as_ref().and_then(|p| p.parent_space.clone()) else { return };
        let key = parent_space_key(&self.key.receiver, &RemoteChatId(parent));
        let Ok(Some(space)) = self.bridge.store.kv().get(&key).await else { return };
        let Ok(space) = OwnedRoomId::try_from(space) else { return };
        self.invite_if_absent(&space, &live.user).await;
        match self.ensure_space(live).await {
            Ok(login_space) => {
                let via = self.bridge.matrix.server_name().to_string();
                if let Err(e) = send_state(&self.bridge.bot_intent(), &login_space, "m.space.child", space.as_str(), json!({ "via": [via] })).await {
                    tracing::warn!(error = %e, "could not add a parent's space to another login's space");
                }
            }
            Err(e) => tracing::warn!(user = %live.user, error = %e, "could not prepare the login's space"),
        }
    }

    /// Invites `user` to `room` unless they are joined or invited. Returns `false` when the
    /// membership could not be read.
    async fn invite_if_absent(&self, room: &RoomId, user: &ruma::UserId) -> bool {
        let bot = self.bridge.bot_intent();
        let membership = match bot.get_state_event(room, "m.room.member".into(), user.as_str()).await {
            Ok(Some(raw)) => serde_json::from_str::<Value>(raw.json().get()).ok().and_then(|c| c["membership"].as_str().map(str::to_owned)),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, "could not read a user's membership");
                return false;
            }
        };
        if !matches!(membership.as_deref(), Some("join" | "invite")) {
            if let Err(e) = bot.invite(room, user).await {
                tracing::warn!(%user, error = %e, "could not invite a login's user");
            }
        }
        true
    }

    /// The login's space, created (with the user invited) on first need.
    async fn ensure_space(&self, live: &LiveLogin) -> Result<OwnedRoomId, PortalError> {
        let cell = self.bridge.portals.space_cell(&live.id);
        let bridge = self.bridge.clone();
        cell.get_or_try_init(|| async move {
            let kv_key = format!("portal.space.{}", live.id);
            if let Some(room) = bridge.store.kv().get(&kv_key).await?.and_then(|r| OwnedRoomId::try_from(r).ok()) {
                return Ok(room);
            }
            let info = &bridge.info;
            let options = CreateRoomOptions {
                name: Some(format!("{} ({})", info.display_name, live.remote_name)),
                topic: Some(format!("Your {} chats, bridged by {}", info.display_name, bridge.bot())),
                invite: vec![live.user.clone()],
                room_type: Some(RoomType::Space),
                ..CreateRoomOptions::default()
            };
            let room = bridge.bot_intent().create_room(options).await?;
            bridge.store.kv().set(&kv_key, room.as_str()).await?;
            tracing::info!(%room, login = %live.id, "created the login's space");
            Ok::<_, PortalError>(room)
        })
        .await
        .cloned()
    }

    /// The space of a parent chat (a Discord server, say) as this portal's receiver sees
    /// it: created on first need, named after the parent's chat info, with the login's user
    /// invited, and itself a child of the login's space. Remembered in the kv store under
    /// [`parent_space_key`].
    async fn ensure_parent_space(&self, live: &LiveLogin, parent: &RemoteChatId, login_space: &RoomId) -> Result<OwnedRoomId, PortalError> {
        let cell = self.bridge.portals.parent_space_cell(&self.key.receiver, parent);
        let bridge = self.bridge.clone();
        let kv_key = parent_space_key(&self.key.receiver, parent);
        let receiver = (!self.key.receiver.is_empty()).then(|| LoginId(self.key.receiver.clone()));
        cell.get_or_try_init(|| async move {
            if let Some(room) = bridge.store.kv().get(&kv_key).await?.and_then(|r| OwnedRoomId::try_from(r).ok()) {
                return Ok(room);
            }
            let chat = ChatRef { id: parent.clone(), receiver };
            let info = match live.client.chat_info(&chat).await {
                Ok(info) => info,
                Err(e) => {
                    tracing::warn!(%parent, error = %e, "could not get the parent's chat info");
                    ChatInfo::default()
                }
            };
            let via = bridge.matrix.server_name().to_string();
            let options = CreateRoomOptions {
                name: Some(info.name.clone().unwrap_or_else(|| parent.0.clone())),
                topic: info.topic.clone(),
                invite: vec![live.user.clone()],
                room_type: Some(RoomType::Space),
                initial_state: vec![initial_state("m.space.parent", login_space.as_str(), json!({ "via": [via.clone()], "canonical": true }))?],
                ..CreateRoomOptions::default()
            };
            let bot = bridge.bot_intent();
            let room = bot.create_room(options).await?;
            bridge.store.kv().set(&kv_key, room.as_str()).await?;
            if let Err(e) = send_state(&bot, login_space, "m.space.child", room.as_str(), json!({ "via": [via] })).await {
                tracing::warn!(error = %e, "could not add a parent's space to the login's space");
            }
            tracing::info!(%room, %parent, "created a parent's space");
            Ok::<_, PortalError>(room)
        })
        .await
        .cloned()
    }

    /// Applies changed chat info to the room: name, topic, avatar and members.
    pub async fn update_info(&mut self, live: &LiveLogin, info: &ChatInfo) -> Result<(), PortalError> {
        let (Some(room), Some(mut portal)) = (self.room(), self.portal.clone()) else { return Ok(()) };
        let bot = self.bridge.bot_intent();
        if let Some(name) = info.name.as_ref().filter(|n| portal.name.as_ref() != Some(*n)) {
            send_state(&bot, &room, "m.room.name", "", json!({ "name": name })).await?;
            portal.name = Some(name.clone());
            for event_type in ["m.bridge", "uk.half-shot.bridge"] {
                send_state(&bot, &room, event_type, &self.bridge_state_key(), self.bridge_info(Some(name))).await?;
            }
        }
        if let Some(topic) = info.topic.as_ref().filter(|t| portal.topic.as_ref() != Some(*t)) {
            send_state(&bot, &room, "m.room.topic", "", json!({ "topic": topic })).await?;
            portal.topic = Some(topic.clone());
        }
        if let Some(avatar) = info.avatar.as_ref().filter(|a| portal.avatar_hash.as_ref() != Some(&a.id)) {
            let url = match &avatar.source {
                Some(source) => Some(upload_remote_media(live.client.as_ref(), &bot, source, None).await.map_err(PortalError::Refused)?),
                None => None,
            };
            let content = url.as_ref().map(|u| json!({ "url": u })).unwrap_or_else(|| json!({}));
            send_state(&bot, &room, "m.room.avatar", "", content).await?;
            portal.avatar_url = url;
            portal.avatar_hash = Some(avatar.id.clone());
        }
        if let Some(members) = &info.members {
            let me = RemoteUserId(live.id.0.clone());
            let mut wanted: Vec<OwnedUserId> = Vec::new();
            for member in members.iter().map(|m| &m.user).filter(|u| **u != me).take(MAX_MEMBERS) {
                match self.bridge.ghost_intent(live.client.as_ref(), member).await {
                    Ok(ghost) => {
                        if let Err(e) = ghost.ensure_joined(&room).await {
                            tracing::warn!(%member, error = %e, "a member's ghost could not join");
                        }
                        wanted.push(ghost.user_id().to_owned());
                    }
                    Err(e) => tracing::warn!(%member, error = %e, "could not prepare a member's ghost"),
                }
            }
            self.apply_nicknames(&room, members).await;
            // With only some members named, nobody else is known to have left.
            let joined = if info.members_partial { Default::default() } else { bot.room_members(&room).await? };
            let my_ghost = self.bridge.ghost_mxid(&me).ok();
            for user in joined.keys() {
                let is_ghost = self.bridge.ghosts.remote_id(user).is_some();
                if is_ghost && !wanted.contains(user) && Some(user) != my_ghost.as_ref() {
                    if let Err(e) = self.bridge.matrix.intent(user.clone()).leave(&room, None).await {
                        tracing::warn!(ghost = %user, error = %e, "a departed member's ghost could not leave");
                    }
                }
            }
        }
        self.portal = Some(portal);
        self.save().await
    }

    /// Deletes the portal: users are kicked, ghosts and the bot leave, the room is removed
    /// from the space, and the portal row (with its message map) is deleted.
    pub async fn delete_portal(&mut self) -> Result<(), PortalError> {
        let room = self.room();
        if let Some(room) = &room {
            let bot = self.bridge.bot_intent();
            let members = bot.room_members(room).await?;
            for user in members.keys().filter(|u| *u != self.bridge.bot()) {
                let result = if self.bridge.ghosts.remote_id(user).is_some() {
                    self.bridge.matrix.intent(user.clone()).leave(room, None).await
                } else {
                    bot.kick(room, user, Some("This portal was deleted.")).await
                };
                if let Err(e) = result {
                    tracing::warn!(%user, error = %e, "could not remove a member from a deleted portal");
                }
            }
            self.remove_from_spaces(room).await;
            bot.leave(room, Some("This portal was deleted.")).await?;
        }
        self.unlink(room.as_deref()).await
    }

    /// Forgets the portal: deletes its row (and message map) and its registry entries.
    pub async fn unlink(&mut self, room: Option<&RoomId>) -> Result<(), PortalError> {
        self.bridge.store.portals().delete(&self.key).await?;
        self.bridge.portals.forget(room, &self.key);
        self.portal = None;
        Ok(())
    }

    /// Removes `room` from the spaces of the logins that might hold it.
    pub async fn remove_from_spaces(&self, room: &RoomId) {
        let bot = self.bridge.bot_intent();
        let Ok(spaces) = self.bridge.store.kv().get(&format!("portal.space.{}", self.key.receiver)).await else { return };
        let mut spaces: Vec<String> = spaces.into_iter().collect();
        if let Some(parent) = self.portal.as_ref().and_then(|p| p.parent_space.clone()) {
            let key = parent_space_key(&self.key.receiver, &RemoteChatId(parent));
            if let Ok(Some(space)) = self.bridge.store.kv().get(&key).await {
                spaces.push(space);
            }
        }
        for space in spaces.into_iter().filter_map(|s| OwnedRoomId::try_from(s).ok()) {
            if let Err(e) = send_state(&bot, &space, "m.space.child", room.as_str(), json!({})).await {
                tracing::debug!(error = %e, "could not remove a portal from its space");
            }
        }
    }
}
