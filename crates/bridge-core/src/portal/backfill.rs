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
    network::{client::ChatActivity, LoginId, LoginStore, NetworkError, RemoteEvent},
};

/// How many recent chats get portals when a login syncs.
pub const RECENT_CHATS: usize = 20;

/// How many messages catch-up fetches at most per portal.
pub const CATCH_UP_LIMIT: usize = 100;

/// The least time between two chats' catch-up of one login, so that a login with news in
/// many chats does not send a burst of history requests at connect.
pub const CATCH_UP_PACE: std::time::Duration = std::time::Duration::from_millis(200);

/// How far before the start of the last complete catch-up the next one looks (events in
/// flight while it started; the message map drops what was already bridged).
const CATCH_UP_OVERLAP_MS: i64 = 60_000;

/// The login-store key under which the core keeps when the login's last catch-up started.
const CAUGHT_UP_KEY: &str = "core.caught_up_at";

/// After a login connects: catches up the portals of chats with news since the last
/// catch-up, newest first, one at a time and paced; then creates portals for the login's
/// recent chats. Nothing here touches portals without news.
pub(super) async fn sync_login(portals: &Portals, bridge: &Arc<Bridge>, login: &LoginId) {
    let Some(live) = bridge.logins.get(login) else { return };
    let Some(history) = live.client.history() else { return };
    let started = crate::store::now_ms();
    let marks = LoginStore::database(bridge.store.clone(), login);
    let since = match marks.get::<i64>(CAUGHT_UP_KEY).await {
        Ok(since) => since.unwrap_or(0),
        Err(e) => {
            tracing::warn!(%login, error = %e, "could not read when the login last caught up");
            0
        }
    };
    match history.chats_with_activity(since).await {
        Ok(mut chats) => {
            chats.sort_by_key(|c| std::cmp::Reverse(c.timestamp));
            let mut complete = true;
            let mut caught_up = 0usize;
            let mut pace = tokio::time::interval(CATCH_UP_PACE);
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for activity in chats {
                match needs_catch_up(bridge, &activity).await {
                    Ok(false) => continue,
                    Ok(true) => {}
                    Err(e) => {
                        tracing::warn!(%login, chat = %activity.chat.id, error = %e, "could not check a chat for missed messages");
                        complete = false;
                        continue;
                    }
                }
                pace.tick().await;
                let (done, finished) = tokio::sync::oneshot::channel();
                portals.send(bridge, &portal_key(&activity.chat), PortalMsg::CatchUp { login: login.clone(), done }).await;
                // Waiting for each keeps one history request of this login in flight.
                complete &= finished.await.unwrap_or(false);
                caught_up += 1;
            }
            tracing::info!(%login, caught_up, "caught up the chats with missed messages");
            if complete {
                if let Err(e) = marks.set(CAUGHT_UP_KEY, &(started - CATCH_UP_OVERLAP_MS)).await {
                    tracing::warn!(%login, error = %e, "could not record the catch-up");
                }
            }
        }
        Err(e) => tracing::warn!(%login, error = %e, "could not list chats with missed messages"),
    }
    match history.recent_chats(RECENT_CHATS).await {
        Ok(chats) => {
            for chat in chats {
                let key = portal_key(&chat);
                // Portals that have their room are left alone (no actor started for them).
                match bridge.store.portals().get_by_key(&key).await {
                    Ok(Some(portal)) if portal.mxid.is_some() => continue,
                    Ok(_) => portals.send(bridge, &key, PortalMsg::CreateRoom { login: login.clone() }).await,
                    Err(e) => tracing::warn!(%login, error = %e, "could not look up the portal of a recent chat"),
                }
            }
        }
        Err(e) => tracing::warn!(%login, error = %e, "could not list recent chats"),
    }
    tracing::info!(%login, "login synced");
}

/// Whether a chat with news has a portal room and its latest message is not bridged yet.
async fn needs_catch_up(bridge: &Bridge, activity: &ChatActivity) -> Result<bool, crate::store::StoreError> {
    let key = portal_key(&activity.chat);
    let has_room = bridge.store.portals().get_by_key(&key).await?.is_some_and(|p| p.mxid.is_some());
    if !has_room {
        return Ok(false);
    }
    match &activity.latest {
        Some(latest) => Ok(bridge.store.messages().get_parts(&key, latest.as_str()).await?.is_empty()),
        None => Ok(true),
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
    /// bridge or the login was down). `false` if it could not look.
    pub(super) async fn catch_up(&mut self, live: &LiveLogin) -> bool {
        let Some(room) = self.room() else { return true };
        let Some(history) = live.client.history() else { return true };
        let latest = match self.bridge.store.messages().latest_in_portal(&self.key).await {
            Ok(latest) => latest.map(|m| m.timestamp),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the latest bridged message");
                return false;
            }
        };
        // A room that never had a message bridged gets none now (as a new room's
        // backfill would have sent them).
        let Some(latest) = latest else { return true };
        let events = match history.fetch_history(&self.chat(), None, CATCH_UP_LIMIT).await {
            Ok(events) => oldest_first(events),
            Err(NetworkError::NotFound(what)) => {
                // Gone, or no longer visible to this login: nothing to fetch, now or later
                // (it is no longer listed with activity).
                tracing::info!(%what, "a chat to catch up is gone or no longer visible");
                return true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not fetch history to catch up");
                return false;
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
        true
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
