//! The outgoing queue of one login: what Matrix sent while the puppet service was away.
//!
//! A message is sent at once when nothing is queued. When a send fails because the service
//! is unreachable (or a call times out), that item and everything after it waits here, in
//! order, and `send_message` returns at once with a *provisional* id (`pending-…`), so a
//! portal is never blocked for longer than one call timeout. The queue's worker (started
//! with the event task) sends the waiting items, in order, once the event stream is
//! connected again, retrying with backoff; it then maps each provisional id to the id
//! WeChat gave, so a later redaction recalls the right message. A redaction of a message
//! still waiting removes it from the queue.
//!
//! The queue survives a restart of the bridge: each waiting item is written to the login's
//! store (`outbox/<seq>`) before `send_message` returns, removed once sent, and each
//! resolved provisional id is kept (`resolved/<provisional id>`), the newest
//! [`RESOLVED_MEMORY`] of them. A new client loads them before it sends anything, so
//! the order holds across restarts. A call that timed out may still have reached WeChat;
//! retrying it can then send it twice (a refused connection, the usual case of a service
//! that is away, cannot), and so can a crash between a send and the removal of its entry.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bridge_core::backoff::Backoff;
use bridge_core::network::events::LoginState;
use bridge_core::network::NetworkError;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::client::{now_ms, Shared};
use crate::puppet::PuppetError;

/// How many provisional ids are remembered with their real ids.
const RESOLVED_MEMORY: usize = 512;

/// Queued items beyond this are refused (the send fails) rather than kept.
const MAX_QUEUED: usize = 1000;

/// Store key prefix of queued items (`outbox/<seq, 20 digits>`, so keys sort by seq).
const QUEUE_KEY: &str = "outbox/";

/// Store key prefix of resolved provisional ids (`resolved/<provisional id>`).
const RESOLVED_KEY: &str = "resolved/";

/// One thing to send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Item {
    /// A text, with the ids of the room members it mentions.
    Text {
        /// The WeChat text.
        text: String,
        /// Mentioned contacts (rooms only).
        mentions: Vec<String>,
    },
    /// A file (an image if its name says so).
    File {
        /// The file name.
        name: String,
        /// The content (base64 in the store).
        #[serde(with = "base64_bytes")]
        data: Bytes,
    },
}

/// `Bytes` as base64 text in the store's JSON.
mod base64_bytes {
    use base64::Engine as _;
    use bytes::Bytes;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(data: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(data))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD.decode(text).map(Bytes::from).map_err(serde::de::Error::custom)
    }
}

/// A queued item.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Pending {
    /// Position in the queue's history; identifies the entry.
    #[serde(skip)]
    seq: u64,
    /// The contact or room.
    conversation: String,
    /// What to send.
    item: Item,
    /// The provisional id given to the core, for the first item of a message.
    provisional: Option<String>,
}

/// The queue, its wake-up signal and the provisional ids already resolved.
#[derive(Default)]
pub(crate) struct Outbox {
    queue: Mutex<VecDeque<Pending>>,
    resolved: Mutex<VecDeque<(String, String)>>,
    wake: tokio::sync::Notify,
    seq: AtomicU64,
    /// Set once what a previous run left in the store is loaded.
    loaded: tokio::sync::OnceCell<()>,
    /// Held while entries are written to or removed from the store, so that the removal of
    /// an entry sent at once cannot come before its write.
    persisting: tokio::sync::Mutex<()>,
}

/// What became of a message a redaction targets.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// It was sent under this id.
    Sent(String),
    /// It was still queued and is now removed (these entries).
    Cancelled(Vec<u64>),
}

/// The store key of queued entry `seq`.
fn queue_key(seq: u64) -> String {
    format!("{QUEUE_KEY}{seq:020}")
}

impl Outbox {
    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    /// How many items wait.
    pub(crate) fn len(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Wakes the worker (something was queued, or the connection state changed).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Queues `items` for `conversation`; `provisional` (if any) names the first. Returns
    /// the new entries, `None` if the queue is full.
    pub(crate) fn push(
        &self,
        conversation: &str,
        items: impl IntoIterator<Item = Item>,
        mut provisional: Option<String>,
    ) -> Option<Vec<Pending>> {
        let mut added = Vec::new();
        {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if queue.len() >= MAX_QUEUED {
                return None;
            }
            for item in items {
                let seq = self.seq.fetch_add(1, Ordering::SeqCst);
                let pending = Pending { seq, conversation: conversation.to_owned(), item, provisional: provisional.take() };
                queue.push_back(pending.clone());
                added.push(pending);
            }
        }
        self.wake();
        Some(added)
    }

    /// A new provisional id.
    pub(crate) fn provisional_id(&self) -> String {
        format!("pending-{}-{}", now_ms(), self.seq.fetch_add(1, Ordering::SeqCst))
    }

    fn front(&self) -> Option<Pending> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).front().cloned()
    }

    /// Removes entry `seq` (sent, or given up); records `provisional → id` when sent and
    /// returns the provisional id that no longer fits in memory, if any.
    fn finish(&self, seq: u64, provisional: Option<String>, id: Option<String>) -> Option<String> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).retain(|p| p.seq != seq);
        let (Some(provisional), Some(id)) = (provisional, id) else { return None };
        self.remember_resolved(provisional, id)
    }

    /// Records `provisional → id`; returns the oldest provisional id it pushed out, if any.
    fn remember_resolved(&self, provisional: String, id: String) -> Option<String> {
        let mut resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        let dropped = if resolved.len() >= RESOLVED_MEMORY { resolved.pop_front().map(|(p, _)| p) } else { None };
        resolved.push_back((provisional, id));
        dropped
    }

    /// What a redaction of `id` should act on: the real id of a sent message (`id` itself
    /// if it was never provisional), or the removal of a message still queued.
    pub(crate) fn target(&self, id: &str) -> Target {
        if let Some((_, real)) = self.resolved.lock().unwrap_or_else(|p| p.into_inner()).iter().find(|(p, _)| p == id) {
            return Target::Sent(real.clone());
        }
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let Some(start) = queue.iter().position(|p| p.provisional.as_deref() == Some(id)) else {
            return Target::Sent(id.to_owned());
        };
        // The message's items: the first and those queued with it (up to the next message).
        let end = queue.iter().skip(start + 1).position(|p| p.provisional.is_some()).map_or(queue.len(), |n| start + 1 + n);
        let cancelled: Vec<u64> = queue.range(start..end).map(|p| p.seq).collect();
        let gone: HashSet<u64> = cancelled.iter().copied().collect();
        queue.retain(|p| !gone.contains(&p.seq));
        Target::Cancelled(cancelled)
    }
}

/// Logs a failed store write: the message itself is still sent (or queued in memory).
fn log_store_error(result: Result<(), NetworkError>, what: &str) {
    if let Err(error) = result {
        tracing::warn!(%error, "could not record {what} in the bridge database");
    }
}

impl Shared {
    /// Loads, once, what a previous run left queued and resolved.
    pub(crate) async fn load_outbox(&self) {
        self.outbox
            .loaded
            .get_or_init(|| async {
                let store = self.events.store();
                match store.list::<Pending>(QUEUE_KEY).await {
                    Ok(entries) => {
                        let mut queue = self.outbox.queue.lock().unwrap_or_else(|p| p.into_inner());
                        let mut max = None;
                        for (key, mut pending) in entries {
                            let Ok(seq) = key[QUEUE_KEY.len()..].parse::<u64>() else { continue };
                            pending.seq = seq;
                            max = max.max(Some(seq));
                            queue.push_back(pending);
                        }
                        // New entries go after the loaded ones (and after anything queued meanwhile).
                        let next = max.map_or(0, |m| m + 1).max(self.outbox.seq.load(Ordering::SeqCst));
                        self.outbox.seq.store(next, Ordering::SeqCst);
                        queue.make_contiguous().sort_by_key(|p| p.seq);
                        if !queue.is_empty() {
                            tracing::info!(waiting = queue.len(), "messages from before the restart wait for the puppet service");
                        }
                    }
                    Err(error) => tracing::warn!(%error, "could not load the queued messages"),
                }
                match store.list::<String>(RESOLVED_KEY).await {
                    Ok(entries) => {
                        for (key, id) in entries {
                            let _ = self.outbox.remember_resolved(key[RESOLVED_KEY.len()..].to_owned(), id);
                        }
                    }
                    Err(error) => tracing::warn!(%error, "could not load the resolved message ids"),
                }
                self.outbox.wake();
            })
            .await;
    }

    /// What a redaction of `id` should act on (see [`Outbox::target`]); removes the
    /// stored entries of a cancelled message.
    pub(crate) async fn redaction_target(&self, id: &str) -> Target {
        self.load_outbox().await;
        let _persisting = self.outbox.persisting.lock().await;
        let target = self.outbox.target(id);
        if let Target::Cancelled(seqs) = &target {
            for seq in seqs {
                log_store_error(self.events.store().delete(&queue_key(*seq)).await.map(drop), "a cancelled message");
            }
        }
        target
    }

    /// Removes a sent (or given up) entry, in memory and in the store, recording its real id.
    async fn finish_pending(&self, pending: Pending, id: Option<String>) {
        let store = self.events.store();
        let _persisting = self.outbox.persisting.lock().await;
        let resolved = pending.provisional.clone().zip(id.clone());
        let dropped = self.outbox.finish(pending.seq, pending.provisional, id);
        if let Some((provisional, id)) = resolved {
            log_store_error(store.set(&format!("{RESOLVED_KEY}{provisional}"), &id).await, "a sent message's id");
        }
        if let Some(old) = dropped {
            log_store_error(store.delete(&format!("{RESOLVED_KEY}{old}")).await.map(drop), "an old message id");
        }
        log_store_error(store.delete(&queue_key(pending.seq)).await.map(drop), "a sent message");
    }
}

impl Shared {
    /// Sends one item now, through the pacer; returns WeChat's id (or a made-up one).
    pub(crate) async fn send_now(&self, conversation: &str, item: &Item) -> Result<String, PuppetError> {
        if self.pacer.wait(self.login.as_str(), self.events.store()).await {
            // The user must see this, not just the operator.
            let _ = self.events.send(bridge_core::network::RemoteEvent::Notice(self.pacer.daily_warning_text())).await;
        }
        let _flight = crate::handle_matrix::InFlight::new(self);
        let id = match item {
            Item::Text { text, mentions } => self.puppet.send_text(conversation, text, mentions.clone()).await?,
            Item::File { name, data } => self.puppet.send_file(conversation, name, data.clone()).await?,
        };
        Ok(self.remember_sent(id))
    }

    /// Sends a message's items in order: at once if nothing waits, otherwise (or from the
    /// first item that fails because the service is away) through the queue. Returns the
    /// first item's id, provisional when it was queued.
    pub(crate) async fn send_items(&self, conversation: &str, items: Vec<Item>) -> Result<String, PuppetError> {
        self.load_outbox().await;
        let mut items: VecDeque<Item> = items.into();
        let mut first: Option<String> = None;
        if self.outbox.is_empty() {
            while let Some(item) = items.front() {
                match self.send_now(conversation, item).await {
                    Ok(id) => {
                        first.get_or_insert(id);
                        items.pop_front();
                    }
                    Err(error) if error.is_transient() => {
                        tracing::info!(%error, conversation, "the puppet service is away; queueing the message");
                        break;
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        if items.is_empty() {
            return first.ok_or_else(|| PuppetError::BadAnswer("nothing to send".to_owned()));
        }
        let provisional = if first.is_none() { Some(self.outbox.provisional_id()) } else { None };
        let _persisting = self.outbox.persisting.lock().await;
        let Some(added) = self.outbox.push(conversation, items, provisional.clone()) else {
            return Err(PuppetError::Unavailable("too many messages are waiting for the puppet service".to_owned()));
        };
        // Stored before the core hears of the message, so a restart cannot lose it.
        for pending in &added {
            log_store_error(self.events.store().set(&queue_key(pending.seq), pending).await, "a queued message");
        }
        tracing::debug!(waiting = self.outbox.len(), "messages waiting for the puppet service");
        Ok(first.or(provisional).unwrap_or_default())
    }

    fn connected(&self) -> bool {
        matches!(self.current_state(), LoginState::Connected)
    }

    /// The queue's worker: while the stream is connected, sends what waits, in order,
    /// retrying with backoff; runs until cancelled.
    pub(crate) async fn run_outbox(self: Arc<Self>, cancel: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        self.load_outbox().await;
        loop {
            let pending = self.outbox.front();
            let Some(pending) = pending.filter(|_| self.connected()) else {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = self.outbox.wake.notified() => continue,
                }
            };
            let result = tokio::select! {
                () = cancel.cancelled() => return,
                result = self.send_now(&pending.conversation, &pending.item) => result,
            };
            match result {
                Ok(id) => {
                    backoff.reset();
                    tracing::debug!(conversation = %pending.conversation, "sent a queued message");
                    self.finish_pending(pending, Some(id)).await;
                }
                Err(error) if error.is_transient() => {
                    let delay = backoff.next_delay();
                    tracing::debug!(%error, ?delay, "a queued message could not be sent yet");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, conversation = %pending.conversation, "dropping a queued message WeChat refused");
                    self.finish_pending(pending, None).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> Item {
        Item::Text { text: t.to_owned(), mentions: Vec::new() }
    }

    #[test]
    fn queued_messages_keep_their_order_and_resolve_their_ids() {
        let outbox = Outbox::default();
        assert!(outbox.push("c", [text("1")], Some("p1".to_owned())).is_some());
        let added = outbox.push("c", [Item::File { name: "a.png".to_owned(), data: Bytes::new() }, text("cap")], Some("p2".to_owned()));
        assert_eq!(added.map(|a| a.len()), Some(2));
        let order: Vec<(Item, Option<String>)> = {
            let queue = outbox.queue.lock().expect("lock");
            queue.iter().map(|p| (p.item.clone(), p.provisional.clone())).collect()
        };
        assert_eq!(order.len(), 3);
        assert_eq!(order[0], (text("1"), Some("p1".to_owned())));
        assert_eq!(order[2], (text("cap"), None));

        let first = outbox.front().expect("front");
        outbox.finish(first.seq, first.provisional, Some("real-1".to_owned()));
        assert_eq!(outbox.target("p1"), Target::Sent("real-1".to_owned()));
        assert_eq!(outbox.target("other"), Target::Sent("other".to_owned()));
        // A redaction of a message still waiting removes all its items.
        assert!(matches!(outbox.target("p2"), Target::Cancelled(seqs) if seqs.len() == 2));
        assert!(outbox.is_empty());
    }

    #[test]
    fn a_full_queue_refuses_more() {
        let outbox = Outbox::default();
        for i in 0..MAX_QUEUED {
            assert!(outbox.push("c", [text(&i.to_string())], None).is_some());
        }
        assert!(outbox.push("c", [text("one too many")], None).is_none());
        assert_eq!(outbox.len(), MAX_QUEUED);
    }

    #[test]
    fn items_round_trip_through_the_store_format() {
        let pending = Pending {
            seq: 7,
            conversation: "r@chatroom".to_owned(),
            item: Item::File { name: "图.png".to_owned(), data: Bytes::from_static(b"\x89PNG") },
            provisional: Some("pending-1-2".to_owned()),
        };
        let json = serde_json::to_string(&pending).expect("encode");
        let back: Pending = serde_json::from_str(&json).expect("decode");
        assert_eq!((back.item, back.provisional, back.conversation), (pending.item, pending.provisional, pending.conversation));
        assert_eq!(queue_key(7), "outbox/00000000000000000007");
        assert!(queue_key(10) > queue_key(9));
    }

    #[test]
    fn provisional_ids_are_unique() {
        let outbox = Outbox::default();
        let a = outbox.provisional_id();
        let b = outbox.provisional_id();
        assert_ne!(a, b);
        assert!(a.starts_with("pending-"));
    }
}
