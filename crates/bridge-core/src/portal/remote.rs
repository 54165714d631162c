//! Remote → Matrix: each [`RemoteEvent`] of a portal becomes Matrix actions by the
//! sender's ghost — or, for what the user sent from the network's own app, by their real
//! account when double puppeting is set up ([`crate::ghost::puppet`]). Messages are mapped part by part in the message map; a part already
//! mapped (the echo of a message sent from Matrix, or a redelivery after a restart) is
//! skipped, so nothing is bridged twice.

use std::time::Duration;

use bytes::Bytes;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, UInt};
use serde_json::{json, Map, Value};

use super::{
    actor::Actor,
    convert::{self, add_relations, describe_media, edit_content, Uploaded},
    image_size, PortalError,
};
use crate::{
    bridge::logins::LiveLogin,
    ghost::puppet::DOUBLE_PUPPET_KEY,
    matrix::{Intent, MatrixError},
    network::{
        events::{Media, MediaKind, MessageContent, MessagePart, Sender},
        LoginId, RemoteEvent, RemoteMessageId,
    },
    store::{Message, Reaction, StoreError},
};

/// Sends a message event built as JSON, backdated to `ts` (ms) when given.
pub(super) async fn send_json(intent: &Intent, room: &RoomId, event_type: &str, content: Map<String, Value>, ts: Option<i64>) -> Result<OwnedEventId, MatrixError> {
    let raw = serde_json::value::to_raw_value(&Value::Object(content))
        .map(ruma::serde::Raw::from_json)
        .map_err(|e| MatrixError::InvalidRequest(e.to_string()))?;
    let ts = ts.and_then(|t| u64::try_from(t).ok()).and_then(UInt::new).map(MilliSecondsSinceUnixEpoch);
    intent.send_message_raw(room, event_type.into(), raw, ts).await
}

/// Who speaks on Matrix for a remote sender: their ghost, or — for the user's own messages
/// when double puppeting is set up — the user's real Matrix account.
pub(super) struct Speaker {
    /// The intent that sends.
    pub intent: Intent,
    /// Whether it is a double puppet (its events are marked and remembered as echoes).
    pub puppet: bool,
}

/// At most this many double-puppet event IDs are remembered per portal as echoes.
const PUPPET_MEMORY: usize = 1000;

/// Whether a store error is the unique-constraint conflict of an already mapped row.
fn is_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::Conflict(_))
}

impl Actor {
    /// The `mxc://` image of a network's custom emoji (see
    /// [`crate::network::client::ReactionHandler::emoji_image`]), uploaded once and
    /// remembered in the kv store both ways (`emoji.mxc.<emoji id>` and `emoji.id.<mxc>`).
    async fn custom_emoji(&self, live: &LiveLogin, emoji: &crate::network::EmojiId) -> Option<(String, String)> {
        let (shortcode, source) = live.client.reactions()?.emoji_image(emoji)?;
        let kv = self.bridge.store.kv();
        let key = format!("emoji.mxc.{emoji}");
        if let Ok(Some(mxc)) = kv.get(&key).await {
            return Some((shortcode, mxc));
        }
        let bot = self.bridge.bot_intent();
        match crate::ghost::upload_remote_media(live.client.as_ref(), &bot, &source, None).await {
            Ok(mxc) => {
                if let Err(e) = kv.set(&key, &mxc).await {
                    tracing::warn!(error = %e, "could not remember a custom emoji");
                }
                let _ = kv.set(&format!("emoji.id.{mxc}"), emoji.as_str()).await;
                Some((shortcode, mxc))
            }
            Err(e) => {
                tracing::warn!(%emoji, error = %e, "could not bridge a custom emoji's image");
                None
            }
        }
    }

    /// Applies one remote event. While the homeserver is unreachable the event is parked
    /// in the store (with every later event of this portal, so that order holds) and
    /// applied when it is back ([`Actor::drain_parked`]). Other failures are logged: the
    /// network cannot be told.
    pub(super) async fn handle_remote(&mut self, login: LoginId, event: RemoteEvent) {
        if self.parked {
            self.park(&login, &event).await;
            return;
        }
        let Ok(live) = self.live(&login) else {
            tracing::debug!(%login, "event from a login that is gone; dropped");
            return;
        };
        match self.apply_scoped(&live, event.clone()).await {
            Ok(()) => {}
            Err(e) if MatrixError::is_transient_cause(&e) => {
                tracing::warn!(error = %e, "the homeserver is unreachable; this chat's events wait in the database until it is back");
                self.park(&login, &event).await;
                self.parked = true;
                self.schedule_drain();
            }
            Err(e) => tracing::warn!(error = %e, "could not bridge a remote event"),
        }
    }

    /// Applies a remote event with transaction IDs derived from it, so that applying it
    /// again (after a crash, or from the parked queue) is deduplicated by the homeserver.
    async fn apply_scoped(&mut self, live: &LiveLogin, event: RemoteEvent) -> Result<(), PortalError> {
        if matches!(event, RemoteEvent::Message { .. }) {
            // Numbered per part inside (parts already mapped are skipped on a replay).
            return self.apply_remote(live, event).await;
        }
        let cause = format!("{}/{}/{}", self.key.remote_id, self.key.receiver, serde_json::to_string(&event).unwrap_or_default());
        crate::matrix::txn::scoped(&cause, self.apply_remote(live, event)).await
    }

    /// Stores `event` at the end of this portal's parked events.
    async fn park(&mut self, login: &LoginId, event: &RemoteEvent) {
        let json = match serde_json::to_string(event) {
            Ok(json) => json,
            Err(e) => {
                tracing::error!(error = %e, "could not serialise a remote event to keep it; dropped");
                return;
            }
        };
        match self.bridge.store.remote_pending().push(&self.key, login.as_str(), &json).await {
            Ok(()) => tracing::debug!(event = %remote_event_name(event), "remote event parked until the homeserver is back"),
            Err(e) => tracing::error!(error = %e, "could not keep a remote event for later; dropped"),
        }
        self.bridge.metrics.remote_parked();
    }

    /// Plans the next attempt to apply the parked events, with backoff.
    pub(super) fn schedule_drain(&mut self) {
        let delay = self.drain_backoff.next_delay();
        self.drain_at = Some(tokio::time::Instant::now() + delay);
    }

    /// Applies the parked events in order until none is left or the homeserver fails again.
    pub(super) async fn drain_parked(&mut self) {
        self.drain_at = None;
        let bridge = self.bridge.clone();
        let store = bridge.store.remote_pending();
        loop {
            let row = match store.first(&self.key).await {
                Ok(Some(row)) => row,
                Ok(None) => {
                    if self.parked {
                        tracing::info!("the events that waited for the homeserver are bridged");
                    }
                    self.parked = false;
                    self.drain_backoff.reset();
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the parked events; trying again later");
                    self.parked = true;
                    self.schedule_drain();
                    return;
                }
            };
            self.parked = true;
            let event: RemoteEvent = match serde_json::from_str(&row.event) {
                Ok(event) => event,
                Err(e) => {
                    tracing::error!(error = %e, "a parked remote event is unreadable; dropped");
                    let _ = store.remove(row.seq).await;
                    continue;
                }
            };
            let Ok(live) = self.live(&LoginId(row.login_id.clone())) else {
                // After a restart the login may not be connected yet.
                self.schedule_drain();
                return;
            };
            let name = remote_event_name(&event);
            match self.apply_scoped(&live, event).await {
                Ok(()) => tracing::debug!(event = %name, "parked remote event bridged"),
                Err(e) if MatrixError::is_transient_cause(&e) => {
                    tracing::debug!(error = %e, "the homeserver is still unreachable");
                    self.schedule_drain();
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "could not bridge a parked remote event"),
            }
            if let Err(e) = store.remove(row.seq).await {
                tracing::warn!(error = %e, "could not remove a bridged parked event");
            }
        }
    }

    /// The speaker for `sender` in `room`: the user's double puppet (joined to the room) when
    /// the sender is the user's own account and one is configured, else the sender's ghost.
    /// A double puppet that cannot join is logged and the ghost speaks instead.
    pub(super) async fn speaker(&self, live: &LiveLogin, room: &RoomId, sender: &Sender) -> Result<Speaker, PortalError> {
        if sender.is_from_me {
            if let Some(puppet) = self.bridge.puppet_intent(&live.user) {
                match self.bridge.join_puppet(&puppet, room).await {
                    Ok(()) => return Ok(Speaker { intent: puppet, puppet: true }),
                    Err(e) => tracing::warn!(user = %live.user, error = %e, "the double puppet could not join; the ghost speaks instead"),
                }
            }
        }
        let intent = self.bridge.ghost_intent(live.client.as_ref(), &sender.user).await?;
        Ok(Speaker { intent, puppet: false })
    }

    /// Sends JSON content as `speaker`; a double puppet's event is marked with
    /// [`DOUBLE_PUPPET_KEY`] and its ID remembered, so its echo is not bridged back.
    async fn send_as(&mut self, speaker: &Speaker, room: &RoomId, event_type: &str, mut content: Map<String, Value>, ts: Option<i64>) -> Result<OwnedEventId, PortalError> {
        if speaker.puppet {
            content.insert(DOUBLE_PUPPET_KEY.to_owned(), json!(self.bridge.appservice.id));
        }
        let id = send_json(&speaker.intent, room, event_type, content, ts).await?;
        if speaker.puppet {
            self.remember_puppet_event(id.as_str());
        }
        Ok(id)
    }

    /// Remembers an event a double puppet sent (bounded).
    fn remember_puppet_event(&mut self, event_id: &str) {
        if self.puppet_events.len() >= PUPPET_MEMORY {
            self.puppet_events.clear();
        }
        self.puppet_events.insert(event_id.to_owned());
    }

    async fn apply_remote(&mut self, live: &LiveLogin, event: RemoteEvent) -> Result<(), PortalError> {
        if let RemoteEvent::Message { sender, .. } = &event {
            let other = (!sender.is_from_me).then(|| sender.user.clone());
            let room = self.ensure_room(live, other.as_ref()).await?;
            return self.bridge_message(live, &room, &event).await;
        }
        if let RemoteEvent::ChatInfoChanged { info, .. } = &event {
            return self.update_info(live, info).await;
        }
        if let RemoteEvent::ChatCreated { .. } = &event {
            return self.ensure_room(live, None).await.map(|_| ());
        }
        let Some(room) = self.room() else {
            tracing::debug!("event for a chat without a room; dropped");
            return Ok(());
        };
        match event {
            RemoteEvent::Edit { id, sender, timestamp, parts, .. } => self.remote_edit(live, &room, &id, &sender, timestamp, &parts).await,
            RemoteEvent::Delete { id, sender, .. } => self.remote_delete(live, &room, &id, &sender).await,
            RemoteEvent::ReactionAdd { target, sender, emoji_id, emoji, timestamp, .. } => {
                let Some(part) = self.first_part(&target).await? else { return Ok(()) };
                let bridge = self.bridge.clone();
                let store = bridge.store.reactions();
                if store.get(&self.key, &part.remote_id, &part.part_id, sender.user.as_str(), emoji_id.as_str()).await?.is_some() {
                    return Ok(()); // already bridged (or our own reaction's echo)
                }
                let speaker = self.speaker(live, &room, &sender).await?;
                let mut content = json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": part.mxid, "key": emoji } });
                if let Some((shortcode, mxc)) = self.custom_emoji(live, &emoji_id).await {
                    content["m.relates_to"]["key"] = json!(mxc);
                    content["com.beeper.reaction.shortcode"] = json!(format!(":{shortcode}:"));
                }
                let Value::Object(content) = content else { return Ok(()) };
                let mxid = self.send_as(&speaker, &room, "m.reaction", content, None).await?;
                let reaction = Reaction {
                    portal: self.key.clone(),
                    message_remote_id: part.remote_id,
                    message_part_id: part.part_id,
                    sender_remote_id: sender.user.0.clone(),
                    emoji_id: emoji_id.0,
                    mxid: mxid.to_string(),
                    emoji,
                    timestamp,
                    metadata: json!({}),
                };
                store.upsert(&reaction).await?;
                Ok(())
            }
            RemoteEvent::ReactionRemove { target, sender, emoji_id, .. } => {
                let Some(part) = self.first_part(&target).await? else { return Ok(()) };
                let bridge = self.bridge.clone();
                let store = bridge.store.reactions();
                let Some(row) = store.get(&self.key, &part.remote_id, &part.part_id, sender.user.as_str(), emoji_id.as_str()).await? else {
                    return Ok(());
                };
                let speaker = self.speaker(live, &room, &sender).await?;
                self.redact_as(&speaker, &room, &row.mxid).await?;
                store.delete(&row).await?;
                Ok(())
            }
            RemoteEvent::Typing { sender, timeout_ms, .. } => {
                if sender.is_from_me {
                    return Ok(());
                }
                let ghost = self.bridge.ghost_intent(live.client.as_ref(), &sender.user).await?;
                ghost.typing(&room, timeout_ms > 0, Duration::from_millis(timeout_ms)).await?;
                Ok(())
            }
            RemoteEvent::ReadReceipt { sender, up_to, .. } => {
                if sender.is_from_me && self.bridge.puppet_intent(&live.user).is_none() {
                    return Ok(()); // the user's own receipt needs double puppeting
                }
                let parts = self.bridge.store.messages().get_parts(&self.key, up_to.as_str()).await?;
                let Some(last) = parts.last() else { return Ok(()) };
                let speaker = self.speaker(live, &room, &sender).await?;
                speaker.intent.mark_read(&room, &event_id(&last.mxid)?).await?;
                if speaker.puppet {
                    if self.puppet_receipts.len() >= PUPPET_MEMORY {
                        self.puppet_receipts.clear();
                    }
                    self.puppet_receipts.insert((live.user.clone(), last.mxid.clone()));
                }
                Ok(())
            }
            RemoteEvent::ChatDeleted { .. } => {
                let text = format!("This chat was deleted on {} or you left it; this room is no longer bridged.", self.bridge.info.display_name);
                if let Err(e) = crate::commands::reply(&self.bridge, &room, None, &text).await {
                    tracing::warn!(error = %format!("{e:#}"), "could not announce a deleted chat");
                }
                self.remove_from_spaces(&room).await;
                self.unlink(Some(&room)).await
            }
            RemoteEvent::Message { .. } | RemoteEvent::ChatInfoChanged { .. } | RemoteEvent::ChatCreated { .. } | RemoteEvent::UserInfoChanged { .. } | RemoteEvent::StateChanged(_) | RemoteEvent::Notice(_) => Ok(()),
        }
    }

    /// Bridges a [`RemoteEvent::Message`] into `room`, part by part, skipping parts already
    /// in the message map. Also used by backfill and catch-up.
    pub(super) async fn bridge_message(&mut self, live: &LiveLogin, room: &RoomId, event: &RemoteEvent) -> Result<(), PortalError> {
        let RemoteEvent::Message { id, sender, timestamp, parts, reply_to, thread_root, .. } = event else { return Ok(()) };
        let bridge = self.bridge.clone();
        let messages = bridge.store.messages();
        let mut pending: Vec<&MessagePart> = Vec::new();
        for part in parts {
            if messages.get_part(&self.key, id.as_str(), part.id.as_str()).await?.is_none() {
                pending.push(part);
            }
        }
        if pending.is_empty() {
            tracing::debug!(message = %id, "message already bridged; skipped");
            return Ok(());
        }
        let speaker = self.speaker(live, room, sender).await?;
        let reply_event = match reply_to {
            Some(r) => self.first_part(r).await?.map(|m| m.mxid),
            None => None,
        };
        let thread_event = match thread_root {
            Some(r) => self.first_part(r).await?.map(|m| m.mxid),
            None => None,
        };
        for (i, part) in pending.into_iter().enumerate() {
            let mut content = self.part_content(live, &speaker.intent, room, &part.content).await;
            add_relations(&mut content.content, if i == 0 { reply_event.as_deref() } else { None }, thread_event.as_deref());
            let cause = format!("{}/{}/{}/{}", self.key.remote_id, self.key.receiver, id, part.id);
            let mxid = crate::matrix::txn::scoped(&cause, self.send_as(&speaker, room, content.event_type, content.content, Some(*timestamp))).await?;
            let row = Message {
                portal: self.key.clone(),
                remote_id: id.0.clone(),
                part_id: part.id.0.clone(),
                mxid: mxid.to_string(),
                room_mxid: room.to_string(),
                sender_remote_id: sender.user.0.clone(),
                sender_mxid: speaker.intent.user_id().to_string(),
                timestamp: *timestamp,
                thread_root: thread_root.as_ref().map(|t| t.0.clone()),
                metadata: json!({}),
            };
            match messages.insert(&row).await {
                Err(e) if is_conflict(&e) => tracing::debug!(message = %id, "part mapped meanwhile"),
                other => other?,
            }
        }
        Ok(())
    }

    /// The Matrix content of one part; media is downloaded and uploaded here, and a
    /// notice says why when that fails.
    async fn part_content(&self, live: &LiveLogin, ghost: &Intent, room: &RoomId, content: &MessageContent) -> convert::MatrixContent {
        let ghosts = &self.bridge.ghosts;
        let owner = Some((live.id.as_str(), live.user.as_ref()));
        let MessageContent::Media(media) = content else {
            return convert::matrix_content(content, None, ghosts, owner);
        };
        match self.upload_media(live, ghost, room, media).await {
            Ok(up) => convert::matrix_content(content, Some(&up), ghosts, owner),
            Err(reason) => {
                tracing::warn!(%reason, "could not bridge remote media");
                let body = format!("{} could not be bridged: {reason}", describe_media(media));
                convert::matrix_content(&MessageContent::Notice { body }, None, ghosts, owner)
            }
        }
    }

    async fn upload_media(&self, live: &LiveLogin, ghost: &Intent, room: &RoomId, media: &Media) -> Result<Uploaded, String> {
        let limit = self.upload_limit().await;
        let too_big = |size: u64| limit.filter(|l| size > *l).map(|l| format!("it is too large ({size} bytes; the homeserver accepts up to {l})"));
        if let Some(reason) = media.size.and_then(too_big) {
            return Err(reason);
        }
        let (data, mime): (Bytes, Option<String>) = live.client.download_media(&media.source).await.map_err(|e| format!("download failed: {e}"))?;
        let size = data.len() as u64;
        if let Some(reason) = too_big(size) {
            return Err(reason);
        }
        let mime = media.mime.clone().or(mime).unwrap_or_else(|| "application/octet-stream".to_owned());
        let is_image = matches!(media.kind, MediaKind::Image | MediaKind::Sticker) || mime.starts_with("image/");
        let dimensions = if media.dimensions.is_none() && is_image { image_size::dimensions(&data) } else { None };
        let filename = (!media.filename.is_empty()).then_some(media.filename.as_str());
        // In an encrypted room the file is encrypted too, and uploaded as opaque bytes.
        let encrypted = match self.bridge.crypto.ready() {
            Some(crypto) => crypto.is_encrypted(room).await.map_err(|e| format!("could not tell whether the room is encrypted: {e}"))?,
            None => false,
        };
        if encrypted {
            let (cipher, mut file) = crate::crypto::encrypt_attachment(&data).map_err(|e| format!("encryption failed: {e}"))?;
            let mxc = ghost.upload(cipher, "application/octet-stream", None).await.map_err(|e| format!("upload failed: {e}"))?;
            file["url"] = serde_json::json!(mxc.to_string());
            return Ok(Uploaded { mxc: mxc.to_string(), size, mime, file: Some(file), dimensions });
        }
        let mxc = ghost.upload(data, &mime, filename).await.map_err(|e| format!("upload failed: {e}"))?;
        Ok(Uploaded { mxc: mxc.to_string(), size, mime, file: None, dimensions })
    }

    /// The homeserver's upload size limit (asked once per process; `None` if unknown).
    async fn upload_limit(&self) -> Option<u64> {
        let client = self.bridge.matrix.clone();
        *self
            .bridge
            .portals
            .upload_limit
            .get_or_init(|| async move {
                for path in [["_matrix", "client", "v1", "media", "config"].as_slice(), ["_matrix", "media", "v3", "config"].as_slice()] {
                    let request = crate::matrix::RawRequest {
                        method: http::Method::GET,
                        path: path.iter().map(|s| s.to_string()).collect(),
                        query: Vec::new(),
                        content_type: None,
                        body: Bytes::new(),
                    };
                    if let Ok(response) = client.send_raw(request, None, Default::default()).await {
                        let parsed: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
                        return parsed.get("m.upload.size").and_then(Value::as_u64);
                    }
                }
                None
            })
            .await
    }

    async fn remote_edit(&mut self, live: &LiveLogin, room: &RoomId, id: &RemoteMessageId, sender: &Sender, ts: i64, parts: &[MessagePart]) -> Result<(), PortalError> {
        if let (Some(sent), Some(MessagePart { content: MessageContent::Text { body, .. }, .. })) = (self.sent_edits.get(id.as_str()), parts.first()) {
            if sent == body {
                self.sent_edits.remove(id.as_str());
                return Ok(()); // the echo of an edit made on Matrix
            }
        }
        let existing = self.bridge.store.messages().get_parts(&self.key, id.as_str()).await?;
        if existing.is_empty() {
            return Ok(());
        }
        let speaker = self.speaker(live, room, sender).await?;
        for part in parts {
            let target = existing.iter().find(|m| m.part_id == part.id.as_str()).or_else(|| (parts.len() == 1).then(|| &existing[0]));
            let Some(target) = target else { continue };
            let content = self.part_content(live, &speaker.intent, room, &part.content).await;
            let edit = edit_content(&content.content, &target.mxid);
            self.send_as(&speaker, room, content.event_type, edit, Some(ts)).await?;
        }
        Ok(())
    }

    async fn remote_delete(&mut self, live: &LiveLogin, room: &RoomId, id: &RemoteMessageId, sender: &Sender) -> Result<(), PortalError> {
        let parts = self.bridge.store.messages().get_parts(&self.key, id.as_str()).await?;
        if parts.is_empty() {
            return Ok(()); // unknown, or deleted from Matrix (our own echo)
        }
        let speaker = self.speaker(live, room, sender).await?;
        for part in &parts {
            self.redact_as(&speaker, room, &part.mxid).await?;
        }
        self.bridge.store.messages().delete_by_remote(&self.key, id.as_str()).await?;
        Ok(())
    }

    /// Redacts `event` as `speaker`, or as the bot when the homeserver refuses (the event
    /// was sent by someone else). A double puppet's redaction is remembered as an echo.
    async fn redact_as(&mut self, speaker: &Speaker, room: &RoomId, event: &str) -> Result<(), PortalError> {
        let event = event_id(event)?;
        match speaker.intent.redact(room, &event, None).await {
            Err(e) if e.is("M_FORBIDDEN") => {
                self.bridge.bot_intent().redact(room, &event, None).await?;
            }
            Ok(redaction) if speaker.puppet => self.remember_puppet_event(redaction.as_str()),
            other => {
                other?;
            }
        }
        Ok(())
    }

    /// The first mapped part of a remote message.
    pub(super) async fn first_part(&self, id: &RemoteMessageId) -> Result<Option<Message>, PortalError> {
        Ok(self.bridge.store.messages().get_parts(&self.key, id.as_str()).await?.into_iter().next())
    }
}

/// Parses a stored event ID.
pub(super) fn event_id(id: &str) -> Result<OwnedEventId, PortalError> {
    OwnedEventId::try_from(id).map_err(|e| PortalError::Refused(format!("invalid stored event id {id}: {e}")))
}


/// A short name of a remote event for the logs: its kind and remote ID, never its content.
pub(super) fn remote_event_name(event: &RemoteEvent) -> String {
    match event {
        RemoteEvent::Message { id, .. } => format!("message {id}"),
        RemoteEvent::Edit { id, .. } => format!("edit of {id}"),
        RemoteEvent::Delete { id, .. } => format!("deletion of {id}"),
        RemoteEvent::ReactionAdd { target, .. } => format!("reaction to {target}"),
        RemoteEvent::ReactionRemove { target, .. } => format!("reaction removed from {target}"),
        RemoteEvent::Typing { .. } => "typing".to_owned(),
        RemoteEvent::ReadReceipt { up_to, .. } => format!("receipt up to {up_to}"),
        RemoteEvent::ChatInfoChanged { .. } => "chat info".to_owned(),
        RemoteEvent::UserInfoChanged { user, .. } => format!("user info of {user}"),
        RemoteEvent::ChatCreated { .. } => "chat created".to_owned(),
        RemoteEvent::ChatDeleted { .. } => "chat deleted".to_owned(),
        RemoteEvent::StateChanged(_) => "state".to_owned(),
        RemoteEvent::Notice(_) => "notice".to_owned(),
    }
}
