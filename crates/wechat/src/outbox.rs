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
//! The queue lives in memory: messages waiting when the bridge itself stops are lost. A
//! call that timed out may still have reached WeChat; retrying it can then send it twice
//! (a refused connection, the usual case of a service that is away, cannot).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bridge_core::backoff::Backoff;
use bridge_core::network::events::LoginState;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::client::{now_ms, Shared};
use crate::puppet::PuppetError;

/// How many provisional ids are remembered with their real ids.
const RESOLVED_MEMORY: usize = 512;

/// Queued items beyond this are refused (the send fails) rather than kept.
const MAX_QUEUED: usize = 1000;

/// One thing to send.
#[derive(Clone, Debug, PartialEq, Eq)]
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
        /// The content.
        data: Bytes,
    },
}

/// A queued item.
#[derive(Clone, Debug)]
struct Pending {
    /// Position in the queue's history; identifies the entry.
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
}

/// What became of a message a redaction targets.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// It was sent under this id.
    Sent(String),
    /// It was still queued and is now removed.
    Cancelled,
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

    /// Queues `items` for `conversation`; `provisional` (if any) names the first. `false`
    /// if the queue is full.
    pub(crate) fn push(&self, conversation: &str, items: impl IntoIterator<Item = Item>, mut provisional: Option<String>) -> bool {
        {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if queue.len() >= MAX_QUEUED {
                return false;
            }
            for item in items {
                let seq = self.seq.fetch_add(1, Ordering::SeqCst);
                queue.push_back(Pending { seq, conversation: conversation.to_owned(), item, provisional: provisional.take() });
            }
        }
        self.wake();
        true
    }

    /// A new provisional id.
    pub(crate) fn provisional_id(&self) -> String {
        format!("pending-{}-{}", now_ms(), self.seq.fetch_add(1, Ordering::SeqCst))
    }

    fn front(&self) -> Option<Pending> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).front().cloned()
    }

    /// Removes entry `seq` (sent, or given up); records `provisional → id` when sent.
    fn finish(&self, seq: u64, provisional: Option<String>, id: Option<String>) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).retain(|p| p.seq != seq);
        if let (Some(provisional), Some(id)) = (provisional, id) {
            let mut resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
            if resolved.len() >= RESOLVED_MEMORY {
                resolved.pop_front();
            }
            resolved.push_back((provisional, id));
        }
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
        let cancelled: HashMap<u64, ()> = queue.range(start..end).map(|p| (p.seq, ())).collect();
        queue.retain(|p| !cancelled.contains_key(&p.seq));
        Target::Cancelled
    }
}

impl Shared {
    /// Sends one item now, through the pacer; returns WeChat's id (or a made-up one).
    pub(crate) async fn send_now(&self, conversation: &str, item: &Item) -> Result<String, PuppetError> {
        self.pacer.wait(self.login.as_str()).await;
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
        if !self.outbox.push(conversation, items, provisional.clone()) {
            return Err(PuppetError::Unavailable("too many messages are waiting for the puppet service".to_owned()));
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
                    self.outbox.finish(pending.seq, pending.provisional, Some(id));
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
                    self.outbox.finish(pending.seq, None, None);
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
        assert!(outbox.push("c", [text("1")], Some("p1".to_owned())));
        assert!(outbox.push("c", [Item::File { name: "a.png".to_owned(), data: Bytes::new() }, text("cap")], Some("p2".to_owned())));
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
        assert_eq!(outbox.target("p2"), Target::Cancelled);
        assert!(outbox.is_empty());
    }

    #[test]
    fn a_full_queue_refuses_more() {
        let outbox = Outbox::default();
        for i in 0..MAX_QUEUED {
            assert!(outbox.push("c", [text(&i.to_string())], None));
        }
        assert!(!outbox.push("c", [text("one too many")], None));
        assert_eq!(outbox.len(), MAX_QUEUED);
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
