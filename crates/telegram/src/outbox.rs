//! The outgoing queue of one login ([`Outbox`]): Matrix messages Telegram asked the bridge
//! to hold back (FLOOD_WAIT), or that could not reach it, wait here in order and are sent
//! once the wait is over; none is dropped.
//!
//! A message is sent at once when nothing waits. When Telegram answers with a flood wait
//! (or the call fails for a reason that may pass: no connection, a timeout), the message
//! and every later one wait in the queue, and `send_message` returns at once with a
//! *provisional* ID (`queued-<n>`) for the core's message map, so no portal waits on
//! Telegram. The queue's worker ([`Shared::run_outbox`], started with the connection) sends
//! them in order once the flood time is over. The login's owner is told when a wait is
//! [`FLOOD_NOTICE_AFTER`] or longer, and `ping` shows what waits.
//!
//! The queue survives a restart: each entry is written to the login's store
//! (`outbox/queue/<n>`) before `send_message` returns and removed once Telegram has the
//! message. Every entry carries the `random_id` it is sent with, so a retry of a message
//! that reached Telegram before a crash or a timeout is refused by Telegram
//! (RANDOM_ID_DUPLICATE) instead of sent twice. Once sent, a provisional ID is remembered
//! with the message's real number (`outbox/sent/<provisional ID>`, the newest
//! [`SENT_MEMORY`]): edits, deletions and replies from Matrix name the real message, and
//! what Telegram reports about that message (the echo of the send, edits from the phone,
//! replies, deletions) is reported under the provisional ID the core knows. An edit of a
//! message still waiting changes what will be sent; a deletion removes it from the queue.
//!
//! One window remains: a crash after the entry is stored but before the core mapped the
//! Matrix event makes the core hand the event over again after the restart, and the
//! message is queued twice.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bridge_core::backoff::Backoff;
use bridge_core::network::{
    NetworkError, OutgoingContent, RemoteEvent, RemoteMessageId, SentMessage,
};
use grammers_client::{tl, InvocationError};
use grammers_session::types::PeerId;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{lock, Shared, CALL_TIMEOUT};
use crate::{handle_remote, ids};

/// How long a send may be held by a flood wait before its user is told.
pub const FLOOD_NOTICE_AFTER: Duration = Duration::from_secs(3);

/// Entries beyond this are refused (the send fails) rather than queued.
const MAX_QUEUED: usize = 1000;

/// How many sent provisional IDs are remembered with their real message numbers.
const SENT_MEMORY: usize = 1000;

/// Store key prefix of queued entries (`outbox/queue/<n, 20 digits>`, so keys sort by n).
const QUEUE_KEY: &str = "outbox/queue/";

/// Store key prefix of sent provisional IDs (`outbox/sent/<provisional ID>`).
const SENT_KEY: &str = "outbox/sent/";

/// The prefix of provisional message IDs.
const PROVISIONAL: &str = "queued-";

/// One message waiting to be sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// Its place in the queue (the number of its provisional ID).
    #[serde(skip)]
    seq: u64,
    /// The chat, in Bot API notation.
    chat: i64,
    /// The Matrix body.
    body: String,
    /// The Matrix HTML.
    html: Option<String>,
    /// Whether it was an emote.
    emote: bool,
    /// The message it replies to (a number, or a provisional ID).
    reply_to: Option<String>,
    /// The `random_id` it is sent with, the same on every try.
    random_id: i64,
}

/// A sent provisional ID: where the message is and its real number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Sent {
    /// The chat, in Bot API notation.
    chat: i64,
    /// The message's number.
    id: i32,
}

/// What a message ID the core gives stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// A message Telegram has, with this number.
    Sent(i32),
    /// A message still waiting in the queue (its seq).
    Queued(u64),
    /// Nothing known (a provisional ID whose message was refused or forgotten).
    Unknown,
}

#[derive(Default)]
struct Queue {
    entries: VecDeque<Entry>,
    /// Sent provisional IDs, oldest first.
    sent: VecDeque<(u64, Sent)>,
    /// Until when Telegram asked the bridge to hold sends back.
    flood_until: Option<Instant>,
    /// Whether the owner was told about the current wait.
    told: bool,
}

/// The queue of one login (see the module documentation).
#[derive(Default)]
pub struct Outbox {
    queue: Mutex<Queue>,
    wake: tokio::sync::Notify,
    seq: AtomicU64,
    /// Set once what a previous run left in the store is loaded.
    loaded: tokio::sync::OnceCell<()>,
    /// Held while entries are written to or removed from the store.
    persisting: tokio::sync::Mutex<()>,
}

fn queue_key(seq: u64) -> String {
    format!("{QUEUE_KEY}{seq:020}")
}

fn provisional_id(seq: u64) -> RemoteMessageId {
    RemoteMessageId(format!("{PROVISIONAL}{seq}"))
}

fn parse_provisional(id: &str) -> Option<u64> {
    id.strip_prefix(PROVISIONAL)?.parse().ok()
}

/// What became of one try to send an entry.
enum Outcome {
    /// Telegram has it: its number and date (seconds).
    Sent(i32, i32),
    /// Telegram asks to wait this long first.
    Flood(Duration),
    /// Telegram already had it (a retry after a crash or a timeout).
    Duplicate,
    /// Telegram refused it for good (a 400 error): the reason.
    Refused(NetworkError),
    /// It did not get through now (no connection, a timeout, a server error).
    Later(String),
}

impl Outbox {
    /// How many messages wait.
    pub fn len(&self) -> usize {
        lock(&self.queue).entries.len()
    }

    /// Whether no message waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One line for `ping`, when messages wait.
    pub fn status(&self) -> Option<String> {
        let queue = lock(&self.queue);
        let waiting = queue.entries.len();
        if waiting == 0 {
            return None;
        }
        let mut line = format!(
            "{waiting} message{} waiting to be sent to Telegram",
            if waiting == 1 { "" } else { "s" }
        );
        let left = queue
            .flood_until
            .map(|until| until.saturating_duration_since(Instant::now()))
            .filter(|left| !left.is_zero());
        if let Some(left) = left {
            line.push_str(&format!(
                ", Telegram asked the bridge to wait another {} seconds",
                left.as_secs().max(1)
            ));
        }
        Some(line)
    }

    /// What the message ID `id` stands for.
    pub(crate) fn target(&self, id: &RemoteMessageId) -> Target {
        if let Some(number) = ids::parse_message(id) {
            return Target::Sent(number);
        }
        let Some(seq) = parse_provisional(id.as_str()) else {
            return Target::Unknown;
        };
        let queue = lock(&self.queue);
        if let Some((_, sent)) = queue.sent.iter().find(|(s, _)| *s == seq) {
            return Target::Sent(sent.id);
        }
        if queue.entries.iter().any(|e| e.seq == seq) {
            return Target::Queued(seq);
        }
        Target::Unknown
    }

    /// The ID the core knows message `id` of `chat` by: its provisional ID if it was
    /// queued, else its number.
    pub(crate) fn known_id(&self, chat: PeerId, id: i32) -> RemoteMessageId {
        let chat = chat.bot_api_dialog_id_unchecked();
        let queue = lock(&self.queue);
        match queue
            .sent
            .iter()
            .rev()
            .find(|(_, sent)| sent.chat == chat && sent.id == id)
        {
            Some((seq, _)) => provisional_id(*seq),
            None => ids::message_id(id),
        }
    }

    fn front(&self) -> Option<Entry> {
        lock(&self.queue).entries.front().cloned()
    }

    /// How long sends must still wait for a flood to pass.
    fn flood_left(&self) -> Option<Duration> {
        lock(&self.queue)
            .flood_until
            .map(|until| until.saturating_duration_since(Instant::now()))
            .filter(|left| !left.is_zero())
    }

    /// Records a flood wait; returns whether the owner should be told now.
    fn flooded(&self, wait: Duration) -> bool {
        let mut queue = lock(&self.queue);
        let until = Instant::now() + wait;
        queue.flood_until = Some(queue.flood_until.map_or(until, |u| u.max(until)));
        let tell = wait >= FLOOD_NOTICE_AFTER && !queue.told;
        queue.told |= tell;
        tell
    }

    /// Queues an entry under the next seq; `None` if the queue is full.
    fn push(&self, mut entry: Entry) -> Option<Entry> {
        let mut queue = lock(&self.queue);
        if queue.entries.len() >= MAX_QUEUED {
            return None;
        }
        entry.seq = self.seq.fetch_add(1, Ordering::SeqCst);
        queue.entries.push_back(entry.clone());
        Some(entry)
    }

    /// Removes entry `seq`; remembers its real number if it was sent. Returns the sent
    /// record that no longer fits in memory, if any.
    fn finish(&self, seq: u64, sent: Option<Sent>) -> Option<u64> {
        let mut queue = lock(&self.queue);
        queue.entries.retain(|e| e.seq != seq);
        if queue.entries.is_empty() {
            queue.told = false;
        }
        let sent = sent?;
        queue.sent.push_back((seq, sent));
        (queue.sent.len() > SENT_MEMORY)
            .then(|| queue.sent.pop_front().map(|(s, _)| s))
            .flatten()
    }
}

/// Logs a failed store write: the queue in memory still has the message.
fn log_store_error(result: Result<(), NetworkError>, what: &str) {
    if let Err(error) = result {
        tracing::warn!(%error, "could not record {what} in the bridge database");
    }
}

/// Reads what `Updates` a `messages.sendMessage` returned say about the message sent with
/// `random_id`: its number and date.
fn sent_message(updates: &tl::enums::Updates, random_id: i64) -> Option<(i32, i32)> {
    use tl::enums::{Update, Updates};
    match updates {
        Updates::UpdateShortSentMessage(sent) => Some((sent.id, sent.date)),
        Updates::Updates(tl::types::Updates { updates, date, .. })
        | Updates::Combined(tl::types::UpdatesCombined { updates, date, .. }) => {
            updates.iter().find_map(|update| match update {
                Update::MessageId(u) if u.random_id == random_id => Some((u.id, *date)),
                _ => None,
            })
        }
        _ => None,
    }
}

impl Shared {
    /// Loads, once, what a previous run left queued and sent.
    pub(crate) async fn load_outbox(&self) {
        self.outbox
            .loaded
            .get_or_init(|| async {
                let store = self.events.store();
                let mut max = None;
                match store.list::<Entry>(QUEUE_KEY).await {
                    Ok(entries) => {
                        let mut queue = lock(&self.outbox.queue);
                        for (key, mut entry) in entries {
                            let Ok(seq) = key[QUEUE_KEY.len()..].parse::<u64>() else {
                                continue;
                            };
                            entry.seq = seq;
                            max = max.max(Some(seq));
                            queue.entries.push_back(entry);
                        }
                        queue.entries.make_contiguous().sort_by_key(|e| e.seq);
                        if !queue.entries.is_empty() {
                            tracing::info!(login = %self.login, waiting = queue.entries.len(), "messages from before the restart wait to be sent");
                        }
                    }
                    Err(error) => tracing::warn!(login = %self.login, %error, "could not load the queued messages"),
                }
                match store.list::<Sent>(SENT_KEY).await {
                    Ok(entries) => {
                        let mut queue = lock(&self.outbox.queue);
                        let mut sent: Vec<(u64, Sent)> = entries
                            .into_iter()
                            .filter_map(|(key, sent)| Some((parse_provisional(&key[SENT_KEY.len()..])?, sent)))
                            .collect();
                        sent.sort_by_key(|(seq, _)| *seq);
                        max = max.max(sent.last().map(|(seq, _)| *seq));
                        queue.sent = sent.into();
                    }
                    Err(error) => tracing::warn!(login = %self.login, %error, "could not load the sent messages' numbers"),
                }
                // New entries go after everything known (and after anything queued meanwhile).
                let next = max.map_or(0, |m| m + 1);
                self.outbox.seq.fetch_max(next, Ordering::SeqCst);
                self.outbox.wake.notify_one();
            })
            .await;
    }

    /// Sends a Matrix text message: at once when nothing waits, else (or when Telegram
    /// asks to wait, or cannot be reached) through the queue, with a provisional ID.
    pub(crate) async fn send_or_queue(
        &self,
        chat: PeerId,
        content: &OutgoingContent,
        reply_to: Option<&RemoteMessageId>,
    ) -> Result<SentMessage, NetworkError> {
        let OutgoingContent::Text {
            body, html, emote, ..
        } = content
        else {
            return Err(crate::handle_matrix::unsupported(content));
        };
        self.load_outbox().await;
        let entry = Entry {
            seq: 0,
            chat: chat.bot_api_dialog_id_unchecked(),
            body: body.clone(),
            html: html.clone(),
            emote: *emote,
            reply_to: reply_to.map(|r| r.as_str().to_owned()),
            random_id: rand::random(),
        };
        if self.outbox.is_empty() && self.outbox.flood_left().is_none() {
            match self.try_send(&entry).await {
                Outcome::Sent(id, date) => {
                    return Ok(SentMessage {
                        id: ids::message_id(id),
                        part: bridge_core::network::PartId(String::new()),
                        timestamp: i64::from(date) * 1000,
                    })
                }
                Outcome::Refused(error) => return Err(error),
                Outcome::Flood(wait) => self.flood_wait(wait).await,
                Outcome::Duplicate => {}
                Outcome::Later(why) => {
                    tracing::info!(login = %self.login, %why, "Telegram cannot take the message now; queueing it")
                }
            }
        }
        let _persisting = self.outbox.persisting.lock().await;
        let entry = self.outbox.push(entry).ok_or_else(|| {
            NetworkError::Remote("too many messages are waiting to be sent to Telegram".to_owned())
        })?;
        // Stored before the core hears of the message, so a restart cannot lose it.
        log_store_error(
            self.events.store().set(&queue_key(entry.seq), &entry).await,
            "a queued message",
        );
        self.outbox.wake.notify_one();
        tracing::debug!(login = %self.login, waiting = self.outbox.len(), "a message waits to be sent");
        Ok(SentMessage {
            id: provisional_id(entry.seq),
            part: bridge_core::network::PartId(String::new()),
            timestamp: crate::client::now_ms(),
        })
    }

    /// Changes what a queued message will say; `false` if it is no longer queued.
    pub(crate) async fn edit_queued(&self, seq: u64, content: &OutgoingContent) -> bool {
        let OutgoingContent::Text {
            body, html, emote, ..
        } = content
        else {
            return false;
        };
        let _persisting = self.outbox.persisting.lock().await;
        let edited = {
            let mut queue = lock(&self.outbox.queue);
            let entry = queue.entries.iter_mut().find(|e| e.seq == seq);
            entry.map(|entry| {
                entry.body = body.clone();
                entry.html = html.clone();
                entry.emote = *emote;
                entry.clone()
            })
        };
        match edited {
            Some(entry) => {
                log_store_error(
                    self.events.store().set(&queue_key(seq), &entry).await,
                    "an edited queued message",
                );
                true
            }
            None => false,
        }
    }

    /// Removes a queued message (deleted on Matrix before it was sent); `false` if it is
    /// no longer queued.
    pub(crate) async fn cancel_queued(&self, seq: u64) -> bool {
        let _persisting = self.outbox.persisting.lock().await;
        let found = lock(&self.outbox.queue)
            .entries
            .iter()
            .any(|e| e.seq == seq);
        if found {
            self.outbox.finish(seq, None);
            log_store_error(
                self.events.store().delete(&queue_key(seq)).await.map(drop),
                "a cancelled message",
            );
        }
        found
    }

    /// Records a flood wait and tells the owner once per wait when it is long.
    async fn flood_wait(&self, wait: Duration) {
        tracing::info!(login = %self.login, seconds = wait.as_secs(), "Telegram asked to wait before sending");
        if self.outbox.flooded(wait) {
            let notice = format!(
                "Telegram asked the bridge to slow down: your messages wait {} seconds before they are sent. They will be sent in order; `ping` shows how many wait.",
                wait.as_secs()
            );
            let _ = self.events.send(RemoteEvent::Notice(notice)).await;
        }
    }

    /// One try to send an entry (with its own `random_id`).
    async fn try_send(&self, entry: &Entry) -> Outcome {
        let Some(chat) = PeerId::from_bot_api_dialog_id(entry.chat) else {
            return Outcome::Refused(NetworkError::NotFound(format!("chat {}", entry.chat)));
        };
        let Some(peer) = self.peer_ref(chat).await else {
            return Outcome::Refused(NetworkError::NotFound(format!(
                "the Telegram chat {} (not seen by this login yet)",
                entry.chat
            )));
        };
        let client = match self.client() {
            Ok(client) => client,
            Err(_) => return Outcome::Later("not connected".to_owned()),
        };
        let (text, entities) = crate::handle_matrix::text_entities(
            &entry.body,
            entry.html.as_deref(),
            entry.emote,
            self,
        );
        let entities = self.input_mentions(entities).await;
        let reply_to = entry
            .reply_to
            .as_ref()
            .map(|r| self.outbox.target(&RemoteMessageId(r.clone())))
            .and_then(|target| match target {
                Target::Sent(id) => Some(id),
                _ => None,
            });
        let request = tl::functions::messages::SendMessage {
            no_webpage: true,
            silent: false,
            background: false,
            clear_draft: false,
            noforwards: false,
            update_stickersets_order: false,
            invert_media: false,
            allow_paid_floodskip: false,
            peer: peer.into(),
            reply_to: reply_to.map(|id| {
                tl::types::InputReplyToMessage {
                    reply_to_msg_id: id,
                    top_msg_id: None,
                    reply_to_peer_id: None,
                    quote_text: None,
                    quote_entities: None,
                    quote_offset: None,
                    monoforum_peer_id: None,
                    todo_item_id: None,
                    poll_option: None,
                }
                .into()
            }),
            message: text,
            random_id: entry.random_id,
            reply_markup: None,
            entities: (!entities.is_empty()).then_some(entities),
            schedule_date: None,
            schedule_repeat_period: None,
            send_as: None,
            quick_reply_shortcut: None,
            effect: None,
            allow_paid_stars: None,
            suggested_post: None,
            rich_message: None,
        };
        let sending = self.begin_send(chat);
        let answer = tokio::time::timeout(CALL_TIMEOUT, client.invoke(&request)).await;
        let outcome = match answer {
            Err(_) => Outcome::Later("Telegram did not answer in time".to_owned()),
            Ok(Ok(updates)) => match sent_message(&updates, entry.random_id) {
                Some((id, date)) => {
                    sending.sent(id);
                    Outcome::Sent(id, date)
                }
                None => Outcome::Duplicate,
            },
            Ok(Err(InvocationError::Rpc(rpc))) if rpc.code == 420 => {
                Outcome::Flood(Duration::from_secs(rpc.value.unwrap_or(1).into()))
            }
            Ok(Err(InvocationError::Rpc(rpc))) if rpc.name == "RANDOM_ID_DUPLICATE" => {
                Outcome::Duplicate
            }
            Ok(Err(InvocationError::Rpc(rpc))) if rpc.code == 400 || rpc.code == 403 => {
                Outcome::Refused(crate::client::network_error(&InvocationError::Rpc(rpc)))
            }
            Ok(Err(error)) => Outcome::Later(error.to_string()),
        };
        drop(sending);
        if let Outcome::Sent(id, _) = &outcome {
            if let Some(me) = self.self_id() {
                handle_remote::remember(self, *id, chat, me).await;
            }
        }
        outcome
    }

    /// Removes a sent (or refused) entry, in memory and in the store, remembering its real
    /// number.
    async fn finish_entry(&self, entry: &Entry, id: Option<i32>) {
        let store = self.events.store();
        let _persisting = self.outbox.persisting.lock().await;
        let sent = id.map(|id| Sent {
            chat: entry.chat,
            id,
        });
        if let Some(sent) = sent {
            // The real number first: a crash before the entry is removed resends it, and
            // Telegram refuses the duplicate.
            log_store_error(
                store
                    .set(
                        &format!("{SENT_KEY}{}", provisional_id(entry.seq).as_str()),
                        &sent,
                    )
                    .await,
                "a sent message's number",
            );
        }
        if let Some(old) = self.outbox.finish(entry.seq, sent) {
            let key = format!("{SENT_KEY}{}", provisional_id(old).as_str());
            log_store_error(store.delete(&key).await.map(drop), "an old message number");
        }
        log_store_error(
            store.delete(&queue_key(entry.seq)).await.map(drop),
            "a sent message",
        );
    }

    /// The queue's worker: sends what waits, in order, once any flood wait is over,
    /// retrying with backoff when Telegram cannot be reached; runs until cancelled.
    pub(crate) async fn run_outbox(self: Arc<Self>, cancel: CancellationToken) {
        self.load_outbox().await;
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            let woken = self.outbox.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let Some(entry) = self.outbox.front() else {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = woken => continue,
                }
            };
            if let Some(left) = self.outbox.flood_left() {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(left) => continue,
                }
            }
            let outcome = tokio::select! {
                () = cancel.cancelled() => return,
                outcome = self.try_send(&entry) => outcome,
            };
            match outcome {
                Outcome::Sent(id, _) => {
                    backoff.reset();
                    tracing::debug!(login = %self.login, id, "sent a queued message");
                    self.finish_entry(&entry, Some(id)).await;
                }
                Outcome::Duplicate => {
                    tracing::info!(login = %self.login, "a queued message had reached Telegram already");
                    self.finish_entry(&entry, None).await;
                }
                Outcome::Flood(wait) => self.flood_wait(wait).await,
                Outcome::Refused(error) => {
                    tracing::warn!(login = %self.login, %error, "Telegram refused a queued message");
                    let notice =
                        format!("Telegram refused a message that waited to be sent: {error}.");
                    let _ = self.events.send(RemoteEvent::Notice(notice)).await;
                    self.finish_entry(&entry, None).await;
                }
                Outcome::Later(why) => {
                    let delay = backoff.next_delay();
                    tracing::debug!(login = %self.login, %why, ?delay, "a queued message could not be sent yet");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &str) -> Entry {
        Entry {
            seq: 0,
            chat: 42,
            body: body.to_owned(),
            html: None,
            emote: false,
            reply_to: None,
            random_id: 7,
        }
    }

    #[test]
    fn queued_messages_keep_their_order_and_resolve_to_their_numbers() {
        let outbox = Outbox::default();
        let first = outbox.push(entry("1")).expect("room");
        let second = outbox.push(entry("2")).expect("room");
        assert_eq!((first.seq, second.seq), (0, 1));
        let id = provisional_id(first.seq);
        assert_eq!(id.as_str(), "queued-0");
        assert_eq!(outbox.target(&id), Target::Queued(0));
        assert_eq!(
            outbox.target(&RemoteMessageId::from("17")),
            Target::Sent(17)
        );
        assert_eq!(outbox.target(&RemoteMessageId::from("x")), Target::Unknown);
        assert_eq!(outbox.front().map(|e| e.body), Some("1".to_owned()));

        outbox.finish(first.seq, Some(Sent { chat: 42, id: 90 }));
        assert_eq!(outbox.target(&id), Target::Sent(90));
        let chat = PeerId::user_unchecked(42);
        assert_eq!(outbox.known_id(chat, 90), id);
        assert_eq!(outbox.known_id(chat, 91), ids::message_id(91));
        assert_eq!(outbox.front().map(|e| e.body), Some("2".to_owned()));
        outbox.finish(second.seq, None);
        assert_eq!(outbox.target(&provisional_id(1)), Target::Unknown);
        assert!(outbox.is_empty());
    }

    #[test]
    fn a_flood_is_told_once_and_shown_while_messages_wait() {
        let outbox = Outbox::default();
        assert_eq!(outbox.status(), None);
        assert!(
            !outbox.flooded(Duration::from_secs(1)),
            "short waits are not told"
        );
        assert!(outbox.flooded(Duration::from_secs(10)));
        assert!(!outbox.flooded(Duration::from_secs(10)), "told once");
        let queued = outbox.push(entry("1")).expect("room");
        let status = outbox.status().expect("status");
        assert!(status.starts_with("1 message waiting"), "{status}");
        assert!(
            status.contains("another 10 seconds") || status.contains("another 9 seconds"),
            "{status}"
        );
        outbox.finish(queued.seq, None);
        assert!(
            outbox.flooded(Duration::from_secs(10)),
            "a new wait is told again"
        );
    }

    #[test]
    fn the_queue_is_bounded_and_sent_numbers_are_forgotten_oldest_first() {
        let outbox = Outbox::default();
        for i in 0..MAX_QUEUED {
            assert!(outbox.push(entry(&i.to_string())).is_some());
        }
        assert!(outbox.push(entry("one too many")).is_none());
        let mut forgotten = Vec::new();
        for seq in 0..=SENT_MEMORY as u64 {
            forgotten.extend(outbox.finish(
                seq,
                Some(Sent {
                    chat: 1,
                    id: seq as i32,
                }),
            ));
        }
        assert_eq!(forgotten, vec![0]);
    }

    #[test]
    fn entries_round_trip_through_the_store_format_and_keys_sort() {
        let mut queued = entry("你好 <b>");
        queued.html = Some("<b>你好</b>".to_owned());
        queued.reply_to = Some("queued-3".to_owned());
        let json = serde_json::to_string(&queued).expect("encode");
        let back: Entry = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, queued);
        assert!(queue_key(10) > queue_key(9));
        assert_eq!(parse_provisional("queued-12"), Some(12));
        assert_eq!(parse_provisional("12"), None);
    }

    #[test]
    fn the_sent_message_is_found_in_what_telegram_answers() {
        let short: tl::enums::Updates = tl::types::UpdateShortSentMessage {
            out: true,
            id: 5,
            pts: 1,
            pts_count: 1,
            date: 99,
            media: None,
            entities: None,
            ttl_period: None,
        }
        .into();
        assert_eq!(sent_message(&short, 1), Some((5, 99)));
        let full: tl::enums::Updates = tl::types::Updates {
            updates: vec![tl::types::UpdateMessageId {
                id: 8,
                random_id: 77,
            }
            .into()],
            users: vec![],
            chats: vec![],
            date: 100,
            seq: 0,
        }
        .into();
        assert_eq!(sent_message(&full, 77), Some((8, 100)));
        assert_eq!(sent_message(&full, 78), None);
    }
}
