//! [`Intent`]: the homeserver as seen by one of the appservice's users (the bot or a ghost).
//!
//! An intent registers its user on first use, joins rooms before acting in them (asking the
//! bot for an invite when a ghost is refused) and remembers both in the client's caches, so
//! that sending a message is one call on the hot path.

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use http::Method;
use ruma::{
    api::client::{
        account::{register, whoami},
        membership::{
            invite_user::{self, v3::InviteUserId},
            join_room_by_id, joined_members, kick_user, leave_room,
        },
        message::send_message_event,
        profile::{get_profile, set_profile_field},
        receipt::create_receipt::{self, v3::ReceiptType},
        redact::redact_event,
        room::create_room::{self, v3::RoomPreset},
        state::{get_state_event_for_key, send_state_event},
        typing::create_typing_event::{
            self,
            v3::{Typing, TypingInfo},
        },
    },
    events::{
        reaction::ReactionEventContent, relation::Annotation, AnyInitialStateEvent,
        AnyMessageLikeEventContent, AnyStateEventContent, MessageLikeEventContent,
        MessageLikeEventType, StateEventContent, StateEventType,
    },
    profile::ProfileFieldValue,
    room::RoomType,
    serde::Raw,
    EventId, Int, MilliSecondsSinceUnixEpoch, MxcUri, OwnedEventId, OwnedMxcUri, OwnedRoomId,
    OwnedUserId, RoomId, UserId,
};
use serde_json::{Map, Value};

use super::{
    client::{MatrixClient, RawRequest, SendOptions},
    error::MatrixError,
};

/// A member of a room as listed by [`Intent::room_members`].
pub use ruma::api::client::membership::joined_members::v3::RoomMember;

/// A user's global profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// The display name, if set.
    pub displayname: Option<String>,
    /// The avatar, if set.
    pub avatar_url: Option<OwnedMxcUri>,
}

/// What [`Intent::create_room`] should create. Build with `..Default::default()`.
#[derive(Debug, Clone, Default)]
pub struct CreateRoomOptions {
    /// The room name.
    pub name: Option<String>,
    /// The room topic.
    pub topic: Option<String>,
    /// Whether the room is a direct chat (sets `is_direct` on the invites).
    pub is_direct: bool,
    /// Users to invite.
    pub invite: Vec<OwnedUserId>,
    /// The preset; the homeserver's default (private chat) when `None`.
    pub preset: Option<RoomPreset>,
    /// Power levels to set for users, merged over the preset's. An entry for the creator is
    /// dropped: the creator has full power in every room version.
    pub power_level_overrides: BTreeMap<OwnedUserId, Int>,
    /// State events to create the room with (`m.bridge`, `m.space.parent`, avatar, …).
    pub initial_state: Vec<Raw<AnyInitialStateEvent>>,
    /// The room type, such as [`RoomType::Space`].
    pub room_type: Option<RoomType>,
    /// Further fields of the `m.room.create` content.
    pub creation_content: Map<String, Value>,
}

/// The homeserver as one of the appservice's users. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Intent {
    client: MatrixClient,
    user_id: OwnedUserId,
}

impl Intent {
    /// An intent acting as `user_id` through `client`.
    pub(crate) fn new(client: MatrixClient, user_id: OwnedUserId) -> Self {
        Self { client, user_id }
    }

    /// The user this intent acts as.
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    /// The client this intent sends through.
    pub fn client(&self) -> &MatrixClient {
        &self.client
    }

    /// Whether this intent is the bot's.
    pub fn is_bot(&self) -> bool {
        self.user_id == self.client.bot()
    }

    /// The identity to assert: none for the bot (the token's own user).
    pub(crate) fn as_user(&self) -> Option<&UserId> {
        (!self.is_bot()).then_some(&*self.user_id)
    }

    /// Makes sure the user exists on the homeserver (`POST /register` as the appservice;
    /// `M_USER_IN_USE` counts as success). Cached: at most one call per user and process.
    pub async fn ensure_registered(&self) -> Result<(), MatrixError> {
        if self.client.is_known_registered(&self.user_id) {
            return Ok(());
        }
        let mut request = register::v3::Request::new();
        request.username = Some(self.user_id.localpart().to_owned());
        request.inhibit_login = true;
        request.login_type = Some(register::LoginType::ApplicationService);
        match self.client.send(request, None).await {
            Ok(_) => tracing::debug!(user = %self.user_id, "registered ghost"),
            Err(e) if e.is("M_USER_IN_USE") => {}
            Err(e) => return Err(e),
        }
        self.client.mark_registered(&self.user_id);
        Ok(())
    }

    /// Makes sure the user is joined to `room`, joining if it is not known to be. When a
    /// ghost is refused (`M_FORBIDDEN`, typically an invite-only room) the bot invites it and
    /// the join is tried once more.
    pub async fn ensure_joined(&self, room: &RoomId) -> Result<(), MatrixError> {
        if self.client.is_known_joined(&self.user_id, room) {
            return Ok(());
        }
        self.ensure_registered().await?;
        match self.join(room).await {
            Err(e) if e.is("M_FORBIDDEN") && !self.is_bot() => {
                tracing::debug!(user = %self.user_id, %room, "join refused; inviting through the bot");
                self.client.bot_intent().invite(room, &self.user_id).await?;
                self.join(room).await
            }
            other => other,
        }
    }

    /// Joins `room` (`POST /rooms/{room}/join`).
    pub async fn join(&self, room: &RoomId) -> Result<(), MatrixError> {
        let request = join_room_by_id::v3::Request::new(room.to_owned());
        self.client.send(request, self.as_user()).await?;
        self.client.mark_joined(&self.user_id, room);
        Ok(())
    }

    /// Leaves `room` (or declines an invite to it), with an optional reason.
    pub async fn leave(&self, room: &RoomId, reason: Option<&str>) -> Result<(), MatrixError> {
        self.client.mark_left(&self.user_id, room);
        let mut request = leave_room::v3::Request::new(room.to_owned());
        request.reason = reason.map(str::to_owned);
        self.client.send(request, self.as_user()).await?;
        Ok(())
    }

    /// Invites `user` to `room`. The homeserver refuses (`M_FORBIDDEN`) if the user is
    /// already joined.
    pub async fn invite(&self, room: &RoomId, user: &UserId) -> Result<(), MatrixError> {
        let recipient = InviteUserId::new(user.to_owned()).into();
        let request = invite_user::v3::Request::new(room.to_owned(), recipient);
        self.client.send(request, self.as_user()).await?;
        Ok(())
    }

    /// Kicks `user` out of `room`, with an optional reason.
    pub async fn kick(
        &self,
        room: &RoomId,
        user: &UserId,
        reason: Option<&str>,
    ) -> Result<(), MatrixError> {
        let mut request = kick_user::v3::Request::new(room.to_owned(), user.to_owned());
        request.reason = reason.map(str::to_owned);
        self.client.send(request, self.as_user()).await?;
        self.client.mark_left(user, room);
        Ok(())
    }

    /// Sets the user's display name.
    pub async fn set_display_name(&self, name: &str) -> Result<(), MatrixError> {
        self.set_profile_field(ProfileFieldValue::DisplayName(name.to_owned()))
            .await
    }

    /// Sets (or with `None` removes) the user's avatar.
    pub async fn set_avatar_url(&self, url: Option<&MxcUri>) -> Result<(), MatrixError> {
        match url {
            Some(url) => {
                self.set_profile_field(ProfileFieldValue::AvatarUrl(url.to_owned()))
                    .await
            }
            None => {
                // ruma cannot express "unset"; the homeserver takes an empty string for it.
                self.ensure_registered().await?;
                let request = RawRequest {
                    method: Method::PUT,
                    path: [
                        "_matrix",
                        "client",
                        "v3",
                        "profile",
                        self.user_id.as_str(),
                        "avatar_url",
                    ]
                    .map(String::from)
                    .to_vec(),
                    query: Vec::new(),
                    content_type: Some("application/json".to_owned()),
                    body: Bytes::from_static(br#"{"avatar_url":""}"#),
                };
                self.client
                    .send_raw(request, self.as_user(), SendOptions::default())
                    .await?;
                Ok(())
            }
        }
    }

    /// Sets one field of the user's global profile.
    async fn set_profile_field(&self, value: ProfileFieldValue) -> Result<(), MatrixError> {
        self.ensure_registered().await?;
        let request = set_profile_field::v3::Request::new(self.user_id.clone(), value);
        self.client.send(request, self.as_user()).await?;
        Ok(())
    }

    /// The global profile of `user`.
    pub async fn get_profile(&self, user: &UserId) -> Result<Profile, MatrixError> {
        let response = self
            .client
            .send(
                get_profile::v3::Request::new(user.to_owned()),
                self.as_user(),
            )
            .await?;
        let displayname = response
            .get("displayname")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let avatar_url = response
            .get("avatar_url")
            .and_then(Value::as_str)
            .filter(|url| !url.is_empty())
            .map(OwnedMxcUri::from);
        Ok(Profile {
            displayname,
            avatar_url,
        })
    }

    /// Creates a room with this user as its creator, and returns its ID.
    pub async fn create_room(
        &self,
        options: CreateRoomOptions,
    ) -> Result<OwnedRoomId, MatrixError> {
        self.ensure_registered().await?;
        let mut request = create_room::v3::Request::new();
        request.name = options.name;
        request.topic = options.topic;
        request.is_direct = options.is_direct;
        request.invite = options.invite;
        request.preset = options.preset;
        request.initial_state = options.initial_state;
        // The creator has full power anyway, and room version 12 refuses it in `users`.
        let mut levels = options.power_level_overrides;
        levels.remove(&self.user_id);
        if !levels.is_empty() {
            let overrides = serde_json::json!({ "users": levels });
            request.power_level_content_override = Some(to_raw(&overrides)?);
        }
        let mut creation = options.creation_content;
        if let Some(room_type) = options.room_type {
            creation.insert("type".to_owned(), Value::String(room_type.to_string()));
        }
        if !creation.is_empty() {
            request.creation_content = Some(to_raw(&creation)?);
        }
        let response = self.client.send(request, self.as_user()).await?;
        self.client.mark_joined(&self.user_id, &response.room_id);
        Ok(response.room_id)
    }

    /// Sends a message event to `room`, joining first if needed. The transaction ID comes from
    /// the cause being handled ([`super::txn::scoped`]), so a replay is deduplicated.
    /// `ts` backdates the event (appservice timestamp massaging) to the remote time.
    pub async fn send_message_event<C>(
        &self,
        room: &RoomId,
        content: C,
        ts: Option<MilliSecondsSinceUnixEpoch>,
    ) -> Result<OwnedEventId, MatrixError>
    where
        C: MessageLikeEventContent,
    {
        let body = to_raw(&content)?;
        self.send_message_raw(room, content.event_type(), body, ts)
            .await
    }

    /// Like [`Intent::send_message_event`], for content built as JSON (custom fields, event
    /// types ruma does not know).
    pub async fn send_message_raw(
        &self,
        room: &RoomId,
        event_type: MessageLikeEventType,
        content: Raw<AnyMessageLikeEventContent>,
        ts: Option<MilliSecondsSinceUnixEpoch>,
    ) -> Result<OwnedEventId, MatrixError> {
        self.ensure_joined(room).await?;
        // In an encrypted room the content goes out as `m.room.encrypted`, encrypted by the
        // bot's device on this user's behalf.
        let (event_type, content) = match self.client.encryptor() {
            Some(encryptor) => match encryptor.encrypt_for_room(room, &event_type.to_string(), &content).await? {
                Some(encrypted) => (MessageLikeEventType::RoomEncrypted, encrypted),
                None => (event_type, content),
            },
            None => (event_type, content),
        };
        let mut request = send_message_event::v3::Request::new_raw(
            room.to_owned(),
            super::txn::next_txn_id(),
            event_type,
            content,
        );
        request.timestamp = ts;
        Ok(self.client.send(request, self.as_user()).await?.event_id)
    }

    /// Sends a state event to `room`, joining first if needed.
    pub async fn send_state_event<C>(
        &self,
        room: &RoomId,
        content: C,
        state_key: &str,
    ) -> Result<OwnedEventId, MatrixError>
    where
        C: StateEventContent,
    {
        let body = to_raw(&content)?;
        self.send_state_raw(room, content.event_type(), state_key, body)
            .await
    }

    /// Like [`Intent::send_state_event`], for content built as JSON.
    pub async fn send_state_raw(
        &self,
        room: &RoomId,
        event_type: StateEventType,
        state_key: &str,
        content: Raw<AnyStateEventContent>,
    ) -> Result<OwnedEventId, MatrixError> {
        self.ensure_joined(room).await?;
        let request = send_state_event::v3::Request::new_raw(
            room.to_owned(),
            event_type,
            state_key.to_owned(),
            content,
        );
        Ok(self.client.send(request, self.as_user()).await?.event_id)
    }

    /// The content of the state event `(event_type, state_key)` in `room`, or `None` if the
    /// room has no such state.
    pub async fn get_state_event(
        &self,
        room: &RoomId,
        event_type: StateEventType,
        state_key: &str,
    ) -> Result<Option<Raw<AnyStateEventContent>>, MatrixError> {
        let request = get_state_event_for_key::v3::Request::new(
            room.to_owned(),
            event_type,
            state_key.to_owned(),
        );
        match self.client.send(request, self.as_user()).await {
            Ok(response) => Ok(Some(Raw::from_json(response.event_or_content))),
            Err(e) if e.is("M_NOT_FOUND") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Redacts `event` in `room`, with an optional reason; returns the redaction's event ID.
    pub async fn redact(
        &self,
        room: &RoomId,
        event: &EventId,
        reason: Option<&str>,
    ) -> Result<OwnedEventId, MatrixError> {
        self.ensure_joined(room).await?;
        let mut request =
            redact_event::v3::Request::new(room.to_owned(), event.to_owned(), super::txn::next_txn_id());
        request.reason = reason.map(str::to_owned);
        Ok(self.client.send(request, self.as_user()).await?.event_id)
    }

    /// Reacts to `event` in `room` with `key` (an `m.annotation`); returns the reaction's ID.
    pub async fn react(
        &self,
        room: &RoomId,
        event: &EventId,
        key: &str,
    ) -> Result<OwnedEventId, MatrixError> {
        let content = ReactionEventContent::new(Annotation::new(event.to_owned(), key.to_owned()));
        self.send_message_event(room, content, None).await
    }

    /// Starts (for `timeout`) or stops typing in `room`.
    pub async fn typing(
        &self,
        room: &RoomId,
        typing: bool,
        timeout: Duration,
    ) -> Result<(), MatrixError> {
        self.ensure_joined(room).await?;
        let state = if typing {
            Typing::Yes(TypingInfo::new(timeout))
        } else {
            Typing::No
        };
        let request =
            create_typing_event::v3::Request::new(self.user_id.clone(), room.to_owned(), state);
        self.client.send(request, self.as_user()).await?;
        Ok(())
    }

    /// Marks `event` in `room` as read (an `m.read` receipt).
    pub async fn mark_read(&self, room: &RoomId, event: &EventId) -> Result<(), MatrixError> {
        self.ensure_joined(room).await?;
        let request =
            create_receipt::v3::Request::new(room.to_owned(), ReceiptType::Read, event.to_owned());
        self.client.send(request, self.as_user()).await?;
        Ok(())
    }

    /// The joined members of `room` with their room display names and avatars.
    pub async fn room_members(
        &self,
        room: &RoomId,
    ) -> Result<BTreeMap<OwnedUserId, RoomMember>, MatrixError> {
        let request = joined_members::v3::Request::new(room.to_owned());
        Ok(self.client.send(request, self.as_user()).await?.joined)
    }

    /// Who the homeserver thinks this intent is (`GET /account/whoami`).
    pub async fn whoami(&self) -> Result<OwnedUserId, MatrixError> {
        Ok(self
            .client
            .send(whoami::v3::Request::new(), self.as_user())
            .await?
            .user_id)
    }
}

/// Serialises event content or a request fragment into a `Raw`.
fn to_raw<T: serde::Serialize, U>(value: &T) -> Result<Raw<U>, MatrixError> {
    serde_json::value::to_raw_value(value)
        .map(Raw::from_json)
        .map_err(|e| MatrixError::InvalidRequest(format!("cannot serialise content: {e}")))
}
