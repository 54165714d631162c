//! Routes events from the inbox: the bot's invites, commands, and (later) portal traffic.

use std::{collections::HashMap, sync::{Arc, Mutex}, time::Duration};

use ruma::{OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedUserId};
use serde_json::Value;

use super::Bridge;
use crate::{
    appservice::{inbox::InboxAck, AppserviceHandler},
    commands,
    config::PermissionLevel,
    crypto::{CryptoStatus, DecryptFailure},
};

/// The kv key that marks `room` as a management room (its value: the user).
fn management_key(room: &ruma::RoomId) -> String {
    format!("management_room.{room}")
}

/// The bridge's [`AppserviceHandler`].
pub(crate) struct Handler {
    bridge: Arc<Bridge>,
    /// When each room last got the "encryption is off" notice.
    off_notices: Mutex<HashMap<OwnedRoomId, std::time::Instant>>,
}

impl Handler {
    pub(crate) fn new(bridge: Arc<Bridge>) -> Self {
        Self { bridge, off_notices: Mutex::default() }
    }

    async fn on_bot_invite(&self, room: OwnedRoomId, inviter: OwnedUserId, is_direct: bool) -> anyhow::Result<()> {
        let bot = self.bridge.bot_intent();
        let level = self.bridge.permission(&inviter);
        if level < PermissionLevel::Commands {
            tracing::info!(%inviter, %room, ?level, "declining an invite from a user without permission");
            bot.leave(&room, Some("You are not allowed to use this bridge.")).await?;
            return Ok(());
        }
        bot.join(&room).await?;
        if is_direct {
            self.bridge.store.users().upsert(inviter.as_str()).await?;
            self.bridge.store.users().set_management_room(inviter.as_str(), Some(room.as_str())).await?;
            // Every DM with the bot stays a management room; the newest gets the notices.
            self.bridge.store.kv().set(&management_key(&room), inviter.as_str()).await?;
            let name = self.bridge.info.display_name;
            commands::reply(
                &self.bridge,
                &room,
                None,
                &format!(
                    "Hello, I'm the {name} bridge bot. This room is now your management room: send `help` for the commands, or `login` to connect your {name} account."
                ),
            )
            .await?;
        }
        let failure = match self.bridge.crypto.get() {
            CryptoStatus::Disabled => Some(None),
            CryptoStatus::Failed(reason) => Some(Some(reason)),
            CryptoStatus::Ready(_) | CryptoStatus::Starting => None,
        };
        if let Some(failure) = failure {
            if self.room_is_encrypted(&room).await {
                commands::reply(&self.bridge, &room, None, &encryption_off_text(failure.as_deref())).await?;
            }
        }
        Ok(())
    }

    /// A message in the management room that looks like a token, password or code while no
    /// login waits for one (its prompt timed out, or the bridge restarted): it is removed
    /// from the room and never echoed, and the user learns that the login had ended.
    async fn on_stray_secret(&self, room: &OwnedRoomId, event_id: &OwnedEventId) -> anyhow::Result<()> {
        let bot = self.bridge.bot_intent();
        let removed = match bot.redact(room, event_id, Some("looks like a secret")).await {
            Ok(_) => "so I removed it from the room",
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => {
                tracing::info!(%room, error = %e, "could not redact a stray secret");
                "and I could not remove it: please delete it yourself"
            }
        };
        let timeout = commands::human_duration(std::time::Duration::from_secs(self.bridge.settings.login_timeout_secs));
        let text = format!(
            "That looked like a token, password or code, {removed}. No login is waiting for it: a login ends when its prompt gets no answer for {timeout} or when the bridge restarts. Send `login` to start again."
        );
        commands::reply(&self.bridge, room, None, &text).await
    }

    /// Whether `room` is one of `user`'s DMs with the bot: the newest (kept on the user) or
    /// an older one (kept in the kv store). Portals never are, and are told apart from the
    /// cache without a query.
    async fn is_management_room(&self, user: &OwnedUserId, room: &OwnedRoomId) -> anyhow::Result<bool> {
        let newest = self.bridge.store.users().get(user.as_str()).await?.and_then(|u| u.management_room);
        if newest.as_deref() == Some(room.as_str()) {
            return Ok(true);
        }
        if newest.is_none() || self.bridge.portals.key_for_room(&self.bridge, room).await.is_some() {
            return Ok(false);
        }
        Ok(self.bridge.store.kv().get(&management_key(room)).await?.as_deref() == Some(user.as_str()))
    }

    /// A message that is not from the bridge: login input, a command, or portal traffic.
    /// Returns whether it is portal traffic (to be handed to the room's portal).
    async fn on_message(&self, event: &Value, room: OwnedRoomId, sender: OwnedUserId, event_id: OwnedEventId) -> anyhow::Result<bool> {
        let content = &event["content"];
        let is_edit = content.pointer("/m.relates_to/rel_type").and_then(Value::as_str) == Some("m.replace");
        let text = (content.get("msgtype").and_then(Value::as_str) == Some("m.text") && !is_edit)
            .then(|| content.get("body").and_then(Value::as_str).unwrap_or_default().trim());
        let management = self.is_management_room(&sender, &room).await?;
        if let Some(body) = text {
            if management && self.bridge.login_sessions.intercept(&self.bridge, &sender, &room, &event_id, body).await {
                return Ok(false);
            }
            if management && commands::looks_like_secret(body) {
                self.on_stray_secret(&room, &event_id).await?;
                return Ok(false);
            }
            let prefix = &self.bridge.settings.command_prefix;
            let after_prefix = body
                .strip_prefix(prefix.as_str())
                .filter(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
                .map(str::trim);
            let command = after_prefix.or(management.then_some(body));
            if let Some(command) = command {
                let ctx = commands::CommandContext {
                    bridge: self.bridge.clone(),
                    room,
                    sender: sender.clone(),
                    event_id,
                    level: self.bridge.permission(&sender),
                    management,
                };
                commands::dispatch(ctx, command).await?;
                return Ok(false);
            }
        }
        Ok(!management)
    }

    /// Handles what the bridge itself answers; returns whether the event is for a portal.
    async fn route(&self, event: &Value) -> anyhow::Result<bool> {
        let str_field = |k: &str| event.get(k).and_then(Value::as_str);
        let (Some(kind), Some(sender), Some(room)) = (str_field("type"), str_field("sender"), str_field("room_id")) else {
            return Ok(false);
        };
        let Ok(sender) = OwnedUserId::try_from(sender) else { return Ok(false) };
        let Ok(room) = OwnedRoomId::try_from(room) else { return Ok(false) };
        if self.bridge.is_bridge_user(&sender) {
            if kind == "m.room.member" && str_field("state_key") == Some(sender.as_str()) {
                // The homeserver copies a ghost's new global profile into every room, over
                // any name the ghost has in that room only: put that name back.
                let name = event.pointer("/content/displayname").and_then(Value::as_str);
                let joined = event.pointer("/content/membership").and_then(Value::as_str) == Some("join");
                if let (Some(remote), true) = (self.bridge.ghosts.remote_id(&sender), joined) {
                    let avatar = event.pointer("/content/avatar_url").and_then(Value::as_str);
                    self.bridge.keep_room_name(&room, &crate::network::RemoteUserId(remote), name, avatar).await;
                }
            }
            return Ok(false); // our own echo
        }
        if self.bridge.is_double_puppet_echo(event) {
            // Sent by a double puppet for a user's own remote message: neither a command
            // nor something to bridge back.
            return Ok(false);
        }
        let content = event.get("content").cloned().unwrap_or(Value::Null);
        match kind {
            "m.room.member" => {
                let target = str_field("state_key").unwrap_or_default();
                let membership = content.get("membership").and_then(Value::as_str);
                if target == self.bridge.bot().as_str() && membership == Some("invite") {
                    let is_direct = content.get("is_direct").and_then(Value::as_bool).unwrap_or(false);
                    self.on_bot_invite(room, sender, is_direct).await?;
                    return Ok(false);
                }
            }
            "m.room.message" => {
                let Some(event_id) = str_field("event_id").and_then(|e| OwnedEventId::try_from(e).ok()) else {
                    return Ok(false);
                };
                return self.on_message(event, room, sender, event_id).await;
            }
            _ => {}
        }
        // Everything else that happens in portals: reactions, redactions, stickers,
        // membership and room changes.
        Ok(true)
    }
}

/// How long an undecryptable event is held for its keys before it is given up.
const UNDECRYPTABLE_GIVE_UP: Duration = Duration::from_secs(3600);
/// How often a held event is tried again when no keys arrive.
const UNDECRYPTABLE_RETRY: Duration = Duration::from_secs(5);
/// How often the "encryption is off" notice is repeated in a room other than a DM.
const ENCRYPTION_OFF_NOTICE_EVERY: Duration = Duration::from_secs(600);

impl Handler {
    /// An event in plain text (as received, or decrypted): routed to the bot or a portal.
    async fn handle_plain(&self, event: Value, ack: InboxAck) -> anyhow::Result<()> {
        if let (Some(crypto), Some("m.room.encryption" | "m.room.member")) =
            (self.bridge.crypto.ready(), event.get("type").and_then(Value::as_str))
        {
            crypto.note_state(&event).await;
        }
        if self.route(&event).await? {
            // The portal marks the event done once it has handled it.
            if let Some(ack) = self.bridge.portals.handle_matrix(&self.bridge, &event, ack).await {
                ack.done().await;
            }
        } else {
            ack.done().await;
        }
        Ok(())
    }

    /// An `m.room.encrypted` event: decrypted and handled, or held until its keys arrive,
    /// or answered with why the bridge cannot read it.
    async fn on_encrypted(&self, event: Value, ack: InboxAck) -> anyhow::Result<()> {
        let str_field = |k: &str| event.get(k).and_then(Value::as_str).map(str::to_owned);
        let (Some(room), Some(sender)) = (str_field("room_id"), str_field("sender")) else {
            ack.done().await;
            return Ok(());
        };
        let (Ok(room), Ok(sender)) = (OwnedRoomId::try_from(room), OwnedUserId::try_from(sender)) else {
            ack.done().await;
            return Ok(());
        };
        if self.bridge.is_bridge_user(&sender) {
            ack.done().await;
            return Ok(());
        }
        let crypto = match self.bridge.crypto.get() {
            CryptoStatus::Ready(crypto) => crypto,
            CryptoStatus::Disabled | CryptoStatus::Starting => {
                self.encryption_off_notice(&room, &sender, None).await?;
                ack.done().await;
                return Ok(());
            }
            CryptoStatus::Failed(reason) => {
                self.encryption_off_notice(&room, &sender, Some(&reason)).await?;
                ack.done().await;
                return Ok(());
            }
        };
        match crypto.decrypt(&event).await {
            Ok(plain) => self.handle_plain(plain, ack).await,
            Err(DecryptFailure::MissingKey(reason)) => {
                let event_id = str_field("event_id").unwrap_or_default();
                tracing::info!(%room, %sender, %event_id, %reason, "holding an encrypted event until its keys arrive");
                tokio::spawn(hold_undecryptable(self.bridge.clone(), crypto, event, ack));
                Ok(())
            }
            Err(DecryptFailure::Permanent(reason)) => {
                tracing::warn!(%room, %sender, %reason, "could not decrypt an event");
                let event_id = str_field("event_id").and_then(|e| OwnedEventId::try_from(e).ok());
                let text = format!("🔒 I could not decrypt your message ({reason}), so it was not bridged. Please send it again.");
                commands::reply(&self.bridge, &room, event_id.as_deref(), &text).await?;
                ack.done().await;
                Ok(())
            }
        }
    }

    /// Tells an encrypted room that the bridge cannot read it: in a DM with the bot at
    /// every message, elsewhere at most every ten minutes.
    async fn encryption_off_notice(&self, room: &OwnedRoomId, sender: &OwnedUserId, failure: Option<&str>) -> anyhow::Result<()> {
        let management = self.is_management_room(sender, room).await?;
        if !management {
            let mut last = self.off_notices.lock().unwrap_or_else(|p| p.into_inner());
            let now = std::time::Instant::now();
            if last.get(room).is_some_and(|at| now.duration_since(*at) < ENCRYPTION_OFF_NOTICE_EVERY) {
                return Ok(());
            }
            last.insert(room.clone(), now);
        }
        commands::reply(&self.bridge, room, None, &encryption_off_text(failure)).await
    }

    /// Whether `room` is encrypted, asked of the homeserver (for a room the bot just joined
    /// while its own encryption is off).
    async fn room_is_encrypted(&self, room: &OwnedRoomId) -> bool {
        let bot = self.bridge.bot_intent();
        matches!(bot.get_state_event(room, ruma::events::StateEventType::RoomEncryption, "").await, Ok(Some(_)))
    }
}

/// What an encrypted room is told when the bridge cannot read it.
fn encryption_off_text(failure: Option<&str>) -> String {
    match failure {
        None => "🔒 This room is encrypted, and encryption is turned off on this bridge, so I cannot read what is sent here. Ask the bridge's administrator to set `bridge.encryption.allow: true` in the bridge's config (the README's \"Encryption\" section lists the homeserver settings it needs), or talk to me in a room without encryption.".to_owned(),
        Some(reason) => format!("🔒 This room is encrypted, and the bridge could not set up its encryption ({reason}), so I cannot read what is sent here. Ask the bridge's administrator to look at the bridge's log; until then, talk to me in a room without encryption."),
    }
}

/// Holds an event whose room key has not arrived: tries again whenever keys arrive (and
/// every few seconds), tells the sender once after `undecryptable_notice_secs`, and hands the
/// event on as soon as it decrypts. The event stays undone in the inbox meanwhile, so a
/// restart tries it again.
async fn hold_undecryptable(bridge: Arc<Bridge>, crypto: Arc<crate::crypto::Crypto>, event: Value, ack: InboxAck) {
    let event_id = event.get("event_id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let room = event.get("room_id").and_then(Value::as_str).and_then(|r| OwnedRoomId::try_from(r).ok());
    let Some(room) = room else { return };
    let started = std::time::Instant::now();
    let notice_after = Duration::from_secs(bridge.settings.encryption.undecryptable_notice_secs);
    let mut noticed = false;
    loop {
        let arrived = crypto.keys_arrived();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        match crypto.decrypt(&event).await {
            Ok(plain) => {
                tracing::info!(%room, %event_id, waited = ?started.elapsed(), "the keys of a held event arrived");
                let handler = Handler::new(bridge.clone());
                let handling = crate::matrix::txn::scoped(&event_id, handler.handle_plain(plain, ack));
                if let Err(e) = handling.await {
                    // Not done: handled again after a restart.
                    tracing::warn!(%event_id, error = %format!("{e:#}"), "could not handle a decrypted event");
                }
                return;
            }
            Err(DecryptFailure::Permanent(reason)) => {
                tracing::warn!(%room, %event_id, %reason, "a held event cannot be decrypted");
                ack.done().await;
                return;
            }
            Err(DecryptFailure::MissingKey(_)) => {}
        }
        tokio::select! {
            _ = bridge.shutdown.cancelled() => return,
            _ = arrived => {}
            _ = tokio::time::sleep(UNDECRYPTABLE_RETRY) => {}
        }
        if !noticed && started.elapsed() >= notice_after {
            noticed = true;
            let text = format!(
                "🔒 I could not decrypt your message: the keys your client should send me have not arrived after {}. It will still be bridged if they arrive. If this keeps happening, send the message again, or ask the bridge's administrator to check that the homeserver sends encryption events to the bridge (the README's \"Encryption\" section).",
                commands::human_duration(notice_after)
            );
            let event = OwnedEventId::try_from(event_id.as_str()).ok();
            let cause = format!("{event_id}/undecryptable");
            let notice = crate::matrix::txn::scoped(&cause, commands::reply(&bridge, &room, event.as_deref(), &text));
            match notice.await {
                Ok(_) => tracing::info!(%room, %event_id, "told the sender that an event could not be decrypted"),
                Err(e) => tracing::warn!(%room, error = %format!("{e:#}"), "could not tell the room about an undecryptable message"),
            }
        }
        if started.elapsed() >= UNDECRYPTABLE_GIVE_UP {
            tracing::warn!(%room, %event_id, "giving up on an event whose keys never arrived");
            ack.done().await;
            return;
        }
    }
}

#[async_trait::async_trait]
impl AppserviceHandler for Handler {
    async fn handle_crypto(&self, txn: crate::crypto::TransactionCrypto) -> anyhow::Result<()> {
        match self.bridge.crypto.settled(Duration::from_secs(30)).await {
            CryptoStatus::Ready(crypto) => crypto.receive(txn).await,
            CryptoStatus::Starting => anyhow::bail!("the encryption device is still being set up"),
            CryptoStatus::Disabled | CryptoStatus::Failed(_) => Ok(()),
        }
    }

    async fn handle_event(&self, event: Value, ack: InboxAck) -> anyhow::Result<()> {
        if event.get("type").and_then(Value::as_str) == Some("m.room.encrypted") {
            return self.on_encrypted(event, ack).await;
        }
        self.handle_plain(event, ack).await
    }

    fn ignores(&self, sender: &str, kind: &str) -> bool {
        // A ghost's member event is looked at (a room name to put back); everything else
        // the bridge's users send is its own echo.
        kind != "m.room.member" && ruma::UserId::parse(sender).is_ok_and(|user| self.bridge.is_bridge_user(&user))
    }

    async fn handle_ephemeral(&self, event: Value) {
        self.bridge.portals.handle_ephemeral(&self.bridge, &event).await;
    }

    async fn query_user(&self, user_id: OwnedUserId) -> bool {
        if self.bridge.ghosts.remote_id(&user_id).is_none() {
            return false;
        }
        match self.bridge.matrix.intent(user_id.clone()).ensure_registered().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(%user_id, error = %e, "could not register a queried ghost");
                false
            }
        }
    }

    async fn query_alias(&self, _alias: OwnedRoomAliasId) -> bool {
        false
    }
}
