//! Matrix → remote: messages, edits, reactions and redactions of real Matrix users in a
//! portal go to the network through the sender's own login (or the portal's relay login),
//! and typing and read receipts through [`crate::network::client::PresenceHandler`].
//!
//! Nothing is dropped silently: when an event cannot be bridged the bot answers with a
//! notice replying to it and sends a `com.beeper.message_send_status` event with status
//! `FAIL`, which clients show on the message. The one exception is a blocked user: nothing
//! of theirs is bridged, and their messages get only the `FAIL` status (`m.no_permission`),
//! no notice, so a blocked user cannot make the bot talk in the room.

use std::collections::HashSet;

use ruma::{OwnedUserId, RoomId, UserId};
use serde_json::{json, Map, Value};

use super::{
    actor::Actor,
    convert::{choose_login, incoming_content, relay_format, Incoming, LoginChoice},
    remote::send_json,
    PortalError,
};
use crate::{
    bridge::logins::LiveLogin,
    config::PermissionLevel,
    network::{OutgoingContent, OutgoingMessage, RemoteMessageId},
    store::{now_ms, Message, Reaction},
};

/// Why a Matrix event was not bridged, for the notice and the send status.
#[derive(Debug)]
pub(super) struct Failure {
    /// The status reason (`m.no_permission`, `m.unsupported`, `m.foreign_network_error`, …).
    reason: &'static str,
    /// The message for the user.
    message: String,
}

impl Failure {
    fn unsupported(message: String) -> Self {
        Failure { reason: "m.unsupported", message }
    }
}

impl From<PortalError> for Failure {
    fn from(e: PortalError) -> Self {
        let reason = match &e {
            PortalError::Network(crate::network::NetworkError::Unsupported(_)) => "m.unsupported",
            PortalError::Network(_) => "m.foreign_network_error",
            PortalError::Refused(_) | PortalError::NoLogin(_) => "m.no_permission",
            _ => "m.event_not_handled",
        };
        Failure { reason, message: e.to_string() }
    }
}

/// A string field of a JSON object.
fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

impl Actor {
    /// Handles a Matrix room event from a real user.
    pub(super) async fn handle_matrix(&mut self, event: Value) {
        let Some(room) = self.room() else { return };
        let (Some(kind), Some(sender), Some(event_id)) = (str_at(&event, "/type"), str_at(&event, "/sender"), str_at(&event, "/event_id")) else {
            return;
        };
        let Ok(sender) = UserId::parse(sender) else { return };
        if self.bridge.is_bridge_user(&sender) || self.puppet_events.contains(event_id) {
            return; // our own echo, or a double puppet's
        }
        if self.bridge.permission(&sender) < PermissionLevel::Relay {
            // A blocked user: nothing is bridged. Their messages get a failed send status
            // (shown on the message by clients) but no notice, so a blocked user cannot
            // make the bot talk in the room.
            if matches!(kind, "m.room.message" | "m.sticker") {
                let failure = Failure { reason: "m.no_permission", message: "you are not allowed to use this bridge".into() };
                self.send_status(&room, event_id, &failure, "Your message was not bridged: you are not allowed to use this bridge.").await;
            }
            return;
        }
        let content = event.get("content").cloned().unwrap_or(Value::Null);
        if self.bridge.settings.encryption.require && matches!(kind, "m.room.message" | "m.sticker" | "m.reaction") {
            let decrypted = event.get(crate::crypto::DECRYPTED).and_then(Value::as_bool).unwrap_or(false);
            let encrypted_room = match self.bridge.crypto.ready() {
                Some(crypto) => crypto.is_encrypted(&room).await.unwrap_or(true),
                None => false,
            };
            if encrypted_room && !decrypted {
                let failure = Failure {
                    reason: "m.no_permission",
                    message: "this room is encrypted and the bridge requires encrypted messages here".into(),
                };
                self.report_failure(&room, event_id, "message", &failure).await;
                return;
            }
        }
        let (what, result) = match kind {
            "m.room.message" | "m.sticker" if str_at(&content, "/m.relates_to/rel_type") == Some("m.replace") => {
                ("edit", self.matrix_edit(&room, &sender, &content).await)
            }
            "m.room.message" | "m.sticker" => ("message", self.matrix_message(&room, &sender, event_id, kind, &content).await),
            "m.reaction" => ("reaction", self.matrix_reaction(&sender, event_id, &content).await),
            "m.room.redaction" => {
                let redacts = str_at(&event, "/redacts").or_else(|| str_at(&content, "/redacts")).unwrap_or_default().to_owned();
                ("redaction", self.matrix_redaction(&sender, &redacts).await)
            }
            _ => return,
        };
        if let Err(failure) = result {
            tracing::info!(%sender, event = event_id, reason = failure.reason, error = %failure.message, "could not bridge a Matrix event");
            self.report_failure(&room, event_id, what, &failure).await;
        }
    }

    /// The login an event of `sender` goes through, and whether it is a relay.
    async fn pick_login(&self, sender: &UserId) -> Result<(LiveLogin, bool), Failure> {
        let own = self.bridge.logins.of_user(sender);
        let ids: Vec<_> = own.iter().map(|l| l.id.clone()).collect();
        let relay = self.portal.as_ref().and_then(|p| p.relay_login_id.clone()).map(crate::network::LoginId);
        let choice = choose_login(
            &self.key.receiver,
            &ids,
            relay.as_ref(),
            self.bridge.settings.relay.enabled,
            self.bridge.permission(sender),
            self.bridge.info.display_name,
        );
        match choice {
            LoginChoice::Own(id) => own.into_iter().find(|l| l.id == id).map(|l| (l, false)).ok_or(Failure { reason: "m.no_permission", message: "your login is not connected".into() }),
            LoginChoice::Relay(id) => self
                .bridge
                .logins
                .get(&id)
                .map(|l| (l, true))
                .ok_or(Failure { reason: "m.no_permission", message: "the relay login of this room is not connected".into() }),
            LoginChoice::Refused(message) => Err(Failure { reason: "m.no_permission", message }),
        }
    }

    /// The display name and avatar of `user` in `room`: their member event there, else
    /// their global profile, else their localpart and no avatar.
    async fn sender_profile(&self, room: &RoomId, user: &UserId) -> (String, Option<String>) {
        let bot = self.bridge.bot_intent();
        let member = match bot.get_state_event(room, "m.room.member".into(), user.as_str()).await {
            Ok(Some(raw)) => serde_json::from_str(raw.json().get()).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        let field = |key: &str| str_at(&member, key).filter(|v| !v.is_empty()).map(str::to_owned);
        let (name, avatar) = (field("/displayname"), field("/avatar_url"));
        if name.is_some() && avatar.is_some() {
            return (name.unwrap_or_default(), avatar);
        }
        let profile = bot.get_profile(user).await.ok();
        let name = name.or_else(|| profile.as_ref().and_then(|p| p.displayname.clone())).unwrap_or_else(|| user.localpart().to_owned());
        let avatar = avatar.or_else(|| profile.and_then(|p| p.avatar_url).map(|a| a.to_string()));
        (name, avatar)
    }

    /// The display name of `user` in `room` (for relayed messages).
    async fn display_name(&self, room: &RoomId, user: &UserId) -> String {
        self.sender_profile(room, user).await.0
    }

    /// The remote message an event ID stands for in this portal.
    async fn mapped(&self, event_id: &str) -> Result<Option<Message>, Failure> {
        let row = self.bridge.store.messages().get_by_mxid(event_id).await.map_err(|e| Failure::from(PortalError::from(e)))?;
        Ok(row.filter(|m| m.portal == self.key))
    }

    /// Turns converted content into what the network gets, downloading media.
    async fn outgoing(&self, incoming: Incoming) -> Result<OutgoingContent, Failure> {
        match incoming {
            Incoming::Ready(content) => Ok(content),
            Incoming::Media { mxc, kind, filename, mime, caption, file } => {
                let uri = ruma::OwnedMxcUri::from(mxc.as_str());
                let (mut data, content_type) = self.bridge.bot_intent().download(&uri).await.map_err(|e| Failure::from(PortalError::from(e)))?;
                if let Some(file) = file {
                    let plain = crate::crypto::decrypt_attachment(&data, &file)
                        .map_err(|why| Failure::unsupported(format!("the encrypted file could not be bridged: {why}")))?;
                    data = plain.into();
                }
                Ok(OutgoingContent::Media { kind, data, filename, mime: mime.unwrap_or(content_type), caption })
            }
        }
    }

    async fn matrix_message(&mut self, room: &RoomId, sender: &UserId, event_id: &str, kind: &str, content: &Value) -> Result<(), Failure> {
        if self.mapped(event_id).await?.is_some() {
            // Handled again after a crash, but it was sent: nothing to do.
            return Ok(());
        }
        let incoming = incoming_content(kind, content, &self.bridge.ghosts).map_err(|what| Failure::unsupported(format!("{what} are not supported by the bridge")))?;
        let (live, relay) = self.pick_login(sender).await?;
        let mut out = self.outgoing(incoming).await?;
        let relates = content.get("m.relates_to");
        let is_thread = relates.and_then(|r| str_at(r, "/rel_type")) == Some("m.thread");
        let falling_back = relates.and_then(|r| r.get("is_falling_back")).and_then(Value::as_bool).unwrap_or(false);
        let reply_event = relates.and_then(|r| str_at(r, "/m.in_reply_to/event_id")).filter(|_| !(is_thread && falling_back));
        let reply_to = match reply_event {
            Some(e) => self.mapped(e).await?.map(|m| RemoteMessageId(m.remote_id)),
            None => None,
        };
        let thread_root = match relates.filter(|_| is_thread).and_then(|r| str_at(r, "/event_id")) {
            Some(e) => self.mapped(e).await?.map(|m| RemoteMessageId(m.remote_id)),
            None => None,
        };
        // The sender's name (for relayed messages) and avatar (for networks that show it),
        // read once and only when needed.
        let public = self.bridge.public_media.as_ref();
        let (name, avatar) = if relay || public.is_some() { self.sender_profile(room, sender).await } else { (String::new(), None) };
        let relayed_from = if relay {
            out = relay_format(out, &self.bridge.settings.relay.message_format, &name, sender.as_str());
            Some(name)
        } else {
            None
        };
        let avatar_url = public.zip(avatar).and_then(|(public, mxc)| public.url_for(&ruma::OwnedMxcUri::from(mxc)));
        let message = OutgoingMessage { chat: self.chat(), content: out, reply_to, thread_root: thread_root.clone(), relayed_from, avatar_url };
        let sent = live.client.send_message(message).await.map_err(|e| Failure::from(PortalError::from(e)))?;
        let row = Message {
            portal: self.key.clone(),
            remote_id: sent.id.0,
            part_id: sent.part.0,
            mxid: event_id.to_owned(),
            room_mxid: room.to_string(),
            sender_remote_id: live.id.0.clone(),
            sender_mxid: sender.to_string(),
            timestamp: sent.timestamp,
            thread_root: thread_root.map(|t| t.0),
            metadata: json!({ "relayed": relay }),
        };
        if let Err(e) = self.bridge.store.messages().insert(&row).await {
            tracing::warn!(error = %e, "could not map a sent message");
        }
        Ok(())
    }

    async fn matrix_edit(&mut self, room: &RoomId, sender: &UserId, content: &Value) -> Result<(), Failure> {
        let target = str_at(content, "/m.relates_to/event_id").unwrap_or_default();
        let Some(row) = self.mapped(target).await? else {
            return Err(Failure { reason: "m.event_not_handled", message: "the edited message is not bridged".into() });
        };
        let new = content.get("m.new_content").cloned().unwrap_or(Value::Null);
        let out = match incoming_content("m.room.message", &new, &self.bridge.ghosts) {
            Ok(Incoming::Ready(out)) => out,
            Ok(Incoming::Media { .. }) => return Err(Failure::unsupported("editing media is not supported".into())),
            Err(what) => return Err(Failure::unsupported(format!("{what} are not supported by the bridge"))),
        };
        let (live, relay) = self.pick_login(sender).await?;
        let network = self.bridge.info.display_name;
        let edits = live.client.edits().ok_or_else(|| Failure::unsupported(format!("editing messages is not supported on {network}")))?;
        let out = if relay {
            let name = self.display_name(room, sender).await;
            relay_format(out, &self.bridge.settings.relay.message_format, &name, sender.as_str())
        } else {
            out
        };
        if let OutgoingContent::Text { body, .. } = &out {
            self.sent_edits.insert(row.remote_id.clone(), body.clone());
        }
        edits.edit_message(&self.chat(), &RemoteMessageId(row.remote_id), out).await.map_err(|e| Failure::from(PortalError::from(e)))
    }

    async fn matrix_reaction(&mut self, sender: &UserId, event_id: &str, content: &Value) -> Result<(), Failure> {
        let target = str_at(content, "/m.relates_to/event_id").unwrap_or_default();
        let key = str_at(content, "/m.relates_to/key").unwrap_or_default();
        let Some(row) = self.mapped(target).await? else {
            return Err(Failure { reason: "m.event_not_handled", message: "the message reacted to is not bridged".into() });
        };
        let (live, relay) = self.pick_login(sender).await?;
        if relay {
            return Err(Failure { reason: "m.no_permission", message: "reactions are not relayed; log in to react".into() });
        }
        let network = self.bridge.info.display_name;
        let reactions = live.client.reactions().ok_or_else(|| Failure::unsupported(format!("reactions are not supported on {network}")))?;
        // An image key of a custom emoji the bridge uploaded maps back to that emoji.
        let custom = match key.starts_with("mxc://") {
            true => self.bridge.store.kv().get(&format!("emoji.id.{key}")).await.ok().flatten().map(crate::network::EmojiId),
            false => None,
        };
        let emoji = custom
            .or_else(|| reactions.emoji_id(key))
            .ok_or_else(|| Failure::unsupported(format!("the reaction {key} is not supported on {network}")))?;
        reactions.add_reaction(&self.chat(), &RemoteMessageId(row.remote_id.clone()), &emoji).await.map_err(|e| Failure::from(PortalError::from(e)))?;
        let reaction = Reaction {
            portal: self.key.clone(),
            message_remote_id: row.remote_id,
            message_part_id: row.part_id,
            sender_remote_id: live.id.0.clone(),
            emoji_id: emoji.0,
            mxid: event_id.to_owned(),
            emoji: key.to_owned(),
            timestamp: now_ms(),
            metadata: json!({}),
        };
        if let Err(e) = self.bridge.store.reactions().upsert(&reaction).await {
            tracing::warn!(error = %e, "could not map a sent reaction");
        }
        Ok(())
    }

    async fn matrix_redaction(&mut self, sender: &UserId, redacts: &str) -> Result<(), Failure> {
        let store = &self.bridge.store;
        let network = self.bridge.info.display_name;
        if let Some(row) = self.mapped(redacts).await? {
            let (live, _) = self.pick_login(sender).await?;
            let deletions = live.client.deletions().ok_or_else(|| Failure::unsupported(format!("deleting messages is not supported on {network}")))?;
            deletions.delete_message(&self.chat(), &RemoteMessageId(row.remote_id.clone())).await.map_err(|e| Failure::from(PortalError::from(e)))?;
            store.messages().delete_by_remote(&self.key, &row.remote_id).await.map_err(|e| Failure::from(PortalError::from(e)))?;
            return Ok(());
        }
        let reaction = store.reactions().get_by_mxid(redacts).await.map_err(|e| Failure::from(PortalError::from(e)))?;
        let Some(reaction) = reaction.filter(|r| r.portal == self.key) else { return Ok(()) };
        let (live, _) = self.pick_login(sender).await?;
        let reactions = live.client.reactions().ok_or_else(|| Failure::unsupported(format!("reactions are not supported on {network}")))?;
        let target = RemoteMessageId(reaction.message_remote_id.clone());
        reactions
            .remove_reaction(&self.chat(), &target, &reaction.emoji_id.clone().into())
            .await
            .map_err(|e| Failure::from(PortalError::from(e)))?;
        store.reactions().delete_by_mxid(redacts).await.map_err(|e| Failure::from(PortalError::from(e)))?;
        Ok(())
    }

    /// Tells the sender their event was not bridged: a notice replying to it and a
    /// `com.beeper.message_send_status` event.
    async fn report_failure(&self, room: &RoomId, event_id: &str, what: &str, failure: &Failure) {
        let text = format!("Your {what} was not bridged: {}", failure.message);
        let reply_to = ruma::OwnedEventId::try_from(event_id).ok();
        if let Err(e) = crate::commands::reply(&self.bridge, room, reply_to.as_deref(), &text).await {
            tracing::warn!(error = %format!("{e:#}"), "could not send an error notice");
        }
        self.send_status(room, event_id, failure, &text).await;
    }

    /// Sends a `com.beeper.message_send_status` event with status `FAIL` for `event_id`.
    async fn send_status(&self, room: &RoomId, event_id: &str, failure: &Failure, text: &str) {
        let mut status = Map::new();
        status.insert("network".into(), json!(self.bridge.info.id));
        status.insert("m.relates_to".into(), json!({ "rel_type": "m.reference", "event_id": event_id }));
        status.insert("status".into(), json!("FAIL"));
        status.insert("reason".into(), json!(failure.reason));
        status.insert("error".into(), json!(failure.message));
        status.insert("message".into(), json!(text));
        if let Err(e) = send_json(&self.bridge.bot_intent(), room, "com.beeper.message_send_status", status, None).await {
            tracing::warn!(error = %e, "could not send a message status");
        }
    }

    /// Handles `m.typing` and `m.receipt` of real users in the portal.
    pub(super) async fn handle_ephemeral(&mut self, event: Value) {
        let chat = self.chat();
        match str_at(&event, "/type") {
            Some("m.typing") => {
                let now: HashSet<OwnedUserId> = event
                    .pointer("/content/user_ids")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter_map(|u| UserId::parse(u).ok())
                    .filter(|u| !self.bridge.is_bridge_user(u))
                    .collect();
                let started: Vec<_> = now.difference(&self.typing).cloned().map(|u| (u, true)).collect();
                let stopped: Vec<_> = self.typing.difference(&now).cloned().map(|u| (u, false)).collect();
                self.typing = now;
                for (user, typing) in started.into_iter().chain(stopped) {
                    let Some(live) = self.own_login(&user) else { continue };
                    if let Some(presence) = live.client.presence() {
                        if let Err(e) = presence.set_typing(&chat, typing).await {
                            tracing::debug!(error = %e, "could not forward typing");
                        }
                    }
                }
            }
            Some("m.receipt") => {
                let Some(receipts) = event.get("content").and_then(Value::as_object) else { return };
                for (event_id, kinds) in receipts {
                    let Some(readers) = kinds.get("m.read").and_then(Value::as_object) else { continue };
                    for user in readers.keys().filter_map(|u| UserId::parse(u.as_str()).ok()) {
                        if self.bridge.is_bridge_user(&user) {
                            continue;
                        }
                        if self.puppet_receipts.contains(&(user.clone(), event_id.clone())) {
                            tracing::debug!(%user, event = %event_id, "skipped the echo of a double puppet's receipt");
                            continue;
                        }
                        let Some(live) = self.own_login(&user) else { continue };
                        let Some(presence) = live.client.presence() else { continue };
                        let Ok(Some(row)) = self.mapped(event_id).await else { continue };
                        if row.sender_mxid == user.as_str() {
                            // Reading one's own message (the implicit receipt of a send,
                            // or of a double puppet's message) tells the network nothing.
                            continue;
                        }
                        if let Err(e) = presence.mark_read(&chat, &RemoteMessageId(row.remote_id)).await {
                            tracing::debug!(error = %e, "could not forward a read receipt");
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// The user's own login that sees this portal (never the relay).
    fn own_login(&self, user: &UserId) -> Option<LiveLogin> {
        let own = self.bridge.logins.of_user(user);
        if self.key.receiver.is_empty() {
            own.into_iter().next()
        } else {
            own.into_iter().find(|l| l.id.as_str() == self.key.receiver)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::NetworkError;

    #[test]
    fn failures_carry_the_status_reason_clients_show() {
        let cases = [
            (PortalError::Network(NetworkError::Unsupported("stickers".into())), "m.unsupported"),
            (PortalError::Network(NetworkError::RateLimited(std::time::Duration::from_secs(1))), "m.foreign_network_error"),
            (PortalError::Network(NetworkError::Remote("boom".into())), "m.foreign_network_error"),
            (PortalError::Refused("no".into()), "m.no_permission"),
            (PortalError::NoLogin("me".into()), "m.no_permission"),
            (PortalError::NoRoom, "m.event_not_handled"),
        ];
        for (error, reason) in cases {
            let message = error.to_string();
            let failure = Failure::from(error);
            assert_eq!(failure.reason, reason, "{message}");
            assert_eq!(failure.message, message);
        }
    }
}
