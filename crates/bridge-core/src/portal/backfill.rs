//! History: backfill of a new portal, catch-up of existing portals after a (re)connect,
//! and portals for a login's recent chats.
//!
//! Both go through [`super::actor::Actor::bridge_message`], so the message map keeps
//! anything from being bridged twice; messages are sent oldest first with their original
//! timestamps.

use std::sync::Arc;

use ruma::RoomId;

use super::{actor::Actor, portal_key, PortalMsg, Portals};
use crate::{
    bridge::{logins::LiveLogin, Bridge},
    network::{LoginId, RemoteEvent},
};

/// How many recent chats get portals when a login syncs.
pub const RECENT_CHATS: usize = 20;

/// How many messages catch-up fetches at most per portal.
pub const CATCH_UP_LIMIT: usize = 100;

/// Queues catch-up for every portal `login` sees and portal creation for its recent chats.
pub(super) async fn sync_login(portals: &Portals, bridge: &Arc<Bridge>, login: &LoginId) {
    let Some(live) = bridge.logins.get(login) else { return };
    for receiver in [login.as_str(), ""] {
        match bridge.store.portals().list_for_receiver(receiver).await {
            Ok(list) => {
                for portal in list.into_iter().filter(|p| p.mxid.is_some()) {
                    portals.send(bridge, &portal.key, PortalMsg::Sync { login: login.clone(), create: false }).await;
                }
            }
            Err(e) => tracing::warn!(%login, error = %e, "could not list portals to catch up"),
        }
    }
    let Some(history) = live.client.history() else { return };
    match history.recent_chats(RECENT_CHATS).await {
        Ok(chats) => {
            for chat in chats {
                portals.send(bridge, &portal_key(&chat), PortalMsg::Sync { login: login.clone(), create: true }).await;
            }
        }
        Err(e) => tracing::warn!(%login, error = %e, "could not list recent chats"),
    }
}

/// The messages of a history page, oldest first.
fn oldest_first(mut events: Vec<RemoteEvent>) -> Vec<RemoteEvent> {
    // The network gives newest first; reversing keeps equal timestamps in order.
    events.reverse();
    events.retain(|e| matches!(e, RemoteEvent::Message { .. }));
    events.sort_by_key(|e| match e {
        RemoteEvent::Message { timestamp, .. } => *timestamp,
        _ => 0,
    });
    events
}

impl Actor {
    /// Sends the latest `bridge.backfill.max_initial_messages` messages into a new room.
    pub(super) async fn backfill_initial(&mut self, live: &LiveLogin, room: &RoomId) {
        let limit = self.bridge.settings.backfill.max_initial_messages as usize;
        let Some(history) = live.client.history().filter(|_| limit > 0) else { return };
        let events = match history.fetch_history(&self.chat(), None, limit).await {
            Ok(events) => oldest_first(events),
            Err(e) => {
                tracing::warn!(error = %e, "could not fetch history for backfill");
                return;
            }
        };
        tracing::info!(count = events.len(), "backfilling a new portal");
        for event in events {
            if let Err(e) = self.bridge_message(live, room, &event).await {
                tracing::warn!(error = %e, "could not backfill a message");
            }
        }
    }

    /// Sends the messages newer than the portal's latest mapped one (missed while the
    /// bridge or the login was down).
    pub(super) async fn catch_up(&mut self, live: &LiveLogin) {
        let Some(room) = self.room() else { return };
        let Some(history) = live.client.history() else { return };
        let latest = match self.bridge.store.messages().latest_in_portal(&self.key).await {
            Ok(latest) => latest.map(|m| m.timestamp),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the latest bridged message");
                return;
            }
        };
        let Some(latest) = latest else { return };
        let events = match history.fetch_history(&self.chat(), None, CATCH_UP_LIMIT).await {
            Ok(events) => oldest_first(events),
            Err(e) => {
                tracing::debug!(error = %e, "could not fetch history to catch up");
                return;
            }
        };
        let missed: Vec<RemoteEvent> = events
            .into_iter()
            .filter(|e| matches!(e, RemoteEvent::Message { timestamp, .. } if *timestamp >= latest))
            .collect();
        for event in missed {
            if let Err(e) = self.bridge_message(live, &room, &event).await {
                tracing::warn!(error = %e, "could not bridge a missed message");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::events::{ChatRef, Sender};

    fn message(id: &str, timestamp: i64) -> RemoteEvent {
        RemoteEvent::Message {
            chat: ChatRef { id: "c".into(), receiver: None },
            id: id.into(),
            sender: Sender { user: "u".into(), is_from_me: false },
            timestamp,
            parts: vec![],
            reply_to: None,
            thread_root: None,
        }
    }

    #[test]
    fn history_is_sent_oldest_first_and_only_messages() {
        let typing = RemoteEvent::Typing { chat: ChatRef { id: "c".into(), receiver: None }, sender: Sender { user: "u".into(), is_from_me: false }, timeout_ms: 0 };
        let got = oldest_first(vec![message("3", 30), typing, message("1", 10), message("2", 20)]);
        let ids: Vec<_> = got.iter().map(|e| match e { RemoteEvent::Message { id, .. } => id.0.clone(), _ => String::new() }).collect();
        assert_eq!(ids, ["1", "2", "3"]);
    }
}
