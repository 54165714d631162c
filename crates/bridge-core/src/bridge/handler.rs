//! Routes events from the inbox: the bot's invites, commands, and (later) portal traffic.

use std::sync::Arc;

use ruma::{OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedUserId};
use serde_json::Value;

use super::Bridge;
use crate::{appservice::AppserviceHandler, commands, config::PermissionLevel};

/// The bridge's [`AppserviceHandler`].
pub(crate) struct Handler {
    bridge: Arc<Bridge>,
}

impl Handler {
    pub(crate) fn new(bridge: Arc<Bridge>) -> Self {
        Self { bridge }
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
        Ok(())
    }

    async fn on_message(&self, room: OwnedRoomId, sender: OwnedUserId, event_id: OwnedEventId, content: &Value) -> anyhow::Result<()> {
        let msgtype = content.get("msgtype").and_then(Value::as_str).unwrap_or_default();
        if msgtype != "m.text" {
            return Ok(());
        }
        // An edit carries the new text in m.new_content; commands are not re-run on edits.
        if content.pointer("/m.relates_to/rel_type").and_then(Value::as_str) == Some("m.replace") {
            return Ok(());
        }
        let body = content.get("body").and_then(Value::as_str).unwrap_or_default().trim();
        let management = self
            .bridge
            .store
            .users()
            .get(sender.as_str())
            .await?
            .and_then(|u| u.management_room)
            .is_some_and(|r| r == room.as_str());
        let prefix = &self.bridge.settings.command_prefix;
        let command_text = if let Some(rest) = body.strip_prefix(prefix.as_str()).filter(|r| r.is_empty() || r.starts_with(char::is_whitespace)) {
            rest.trim()
        } else if management {
            body
        } else {
            return Ok(());
        };
        let ctx = commands::CommandContext {
            bridge: self.bridge.clone(),
            room,
            sender: sender.clone(),
            event_id,
            level: self.bridge.permission(&sender),
            management,
        };
        commands::dispatch(ctx, command_text).await
    }
}

#[async_trait::async_trait]
impl AppserviceHandler for Handler {
    async fn handle_event(&self, event: Value) -> anyhow::Result<()> {
        let str_field = |k: &str| event.get(k).and_then(Value::as_str);
        let (Some(kind), Some(sender), Some(room)) = (str_field("type"), str_field("sender"), str_field("room_id")) else {
            return Ok(());
        };
        let Ok(sender) = OwnedUserId::try_from(sender) else { return Ok(()) };
        let Ok(room) = OwnedRoomId::try_from(room) else { return Ok(()) };
        if self.bridge.is_bridge_user(&sender) {
            return Ok(()); // our own echo
        }
        let content = event.get("content").cloned().unwrap_or(Value::Null);
        match kind {
            "m.room.member" => {
                let target = str_field("state_key").unwrap_or_default();
                let membership = content.get("membership").and_then(Value::as_str);
                if target == self.bridge.bot().as_str() && membership == Some("invite") {
                    let is_direct = content.get("is_direct").and_then(Value::as_bool).unwrap_or(false);
                    self.on_bot_invite(room, sender, is_direct).await?;
                }
            }
            "m.room.message" => {
                let Some(event_id) = str_field("event_id").and_then(|e| OwnedEventId::try_from(e).ok()) else {
                    return Ok(());
                };
                self.on_message(room, sender, event_id, &content).await?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn handle_ephemeral(&self, _event: Value) {}

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
