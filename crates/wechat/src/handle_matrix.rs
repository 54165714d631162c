//! Matrix → WeChat: sending messages (text with `@` mentions; files inline or, when large,
//! through the service's `Upload` stream; locations as links), recalls, and the per-login
//! [`Pacer`] every outgoing message waits for, because WeChat bans accounts that send like
//! bots (its owner is warned in the management room past a daily count).

use std::time::Duration;

use bridge_core::network::client::DeleteHandler;
use bridge_core::network::events::ChatRef;
use bridge_core::network::{NetworkError, OutgoingContent, OutgoingMessage, PartId, RemoteMessageId, SentMessage};
use rand::Rng as _;
use tokio::time::Instant;

use crate::client::{now_ms, Shared, WechatClient};
use crate::config::PacingConfig;
use crate::convert::outgoing_text;
use crate::ids::is_room;
use crate::outbox::{Item, Target};

/// The length of the window of [`PacingConfig::daily_warning`].
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Spaces one login's outgoing messages: at least `min_interval` plus a random jitter
/// apart, in the order they asked; counts them per 24 hours.
#[derive(Debug)]
pub struct Pacer {
    config: PacingConfig,
    state: std::sync::Mutex<PaceState>,
}

#[derive(Debug)]
struct PaceState {
    /// The earliest time the next message may go.
    next: Option<Instant>,
    /// The start of the current 24-hour window, and the messages sent in it.
    window: Option<(Instant, u32)>,
}

/// A reserved sending time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// When the message may be sent.
    pub at: Instant,
    /// Whether this message is the first beyond the daily warning threshold.
    pub passes_daily_warning: bool,
}

impl Pacer {
    /// A pacer with `config`'s interval, jitter and warning threshold.
    pub fn new(config: PacingConfig) -> Self {
        Self { config, state: std::sync::Mutex::new(PaceState { next: None, window: None }) }
    }

    /// Reserves the next slot at or after `now`, spacing the following one by the
    /// interval plus `jitter` (pure: the caller picks the jitter).
    pub fn reserve(&self, now: Instant, jitter: Duration) -> Slot {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let at = state.next.map_or(now, |next| next.max(now));
        state.next = Some(at + Duration::from_millis(self.config.min_interval_ms) + jitter);
        let (start, count) = match state.window {
            Some((start, count)) if at.duration_since(start) < DAY => (start, count + 1),
            _ => (at, 1),
        };
        state.window = Some((start, count));
        let threshold = self.config.daily_warning;
        Slot { at, passes_daily_warning: threshold > 0 && count == threshold + 1 }
    }

    /// Waits for this login's next slot; returns whether this message is the first beyond
    /// the daily warning threshold (logged here; the caller tells the user).
    pub async fn wait(&self, login: &str) -> bool {
        let jitter = match self.config.jitter_ms {
            0 => Duration::ZERO,
            max => Duration::from_millis(rand::rng().random_range(0..=max)),
        };
        let slot = self.reserve(Instant::now(), jitter);
        if slot.passes_daily_warning {
            tracing::warn!(
                login,
                threshold = self.config.daily_warning,
                "this WeChat account has sent more messages in 24 hours than the warning threshold; \
                 WeChat may restrict accounts that send like bots"
            );
        }
        tokio::time::sleep_until(slot.at).await;
        slot.passes_daily_warning
    }

    /// The warning shown to the user when the daily threshold is passed.
    pub fn daily_warning_text(&self) -> String {
        format!(
            "Warning: this WeChat account has sent more than {} messages through the bridge in the last 24 hours. \
             WeChat restricts or bans accounts that send like bots; consider sending fewer messages today.",
            self.config.daily_warning
        )
    }
}

/// Unregisters an in-flight send when dropped, so the echo filter stops waiting for it.
pub(crate) struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    /// Registers a send in flight.
    pub(crate) fn new(shared: &'a Shared) -> Self {
        shared.inflight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        self.0.sent_notify.notify_waiters();
    }
}

/// Sends one Matrix message to WeChat through the pacer (and the [`crate::outbox`] when
/// the puppet service is away: the returned id is then provisional).
pub(crate) async fn send_message(shared: &Shared, message: OutgoingMessage) -> Result<SentMessage, NetworkError> {
    let conversation = message.chat.id.as_str();
    let items = match message.content {
        OutgoingContent::Text { body, html, mentions, emote: _ } => {
            let text = outgoing_text(&body, html.as_deref(), !mentions.is_empty());
            let mentions = if is_room(conversation) { mentions.into_iter().map(|m| m.0).collect() } else { Vec::new() };
            vec![Item::Text { text, mentions }]
        }
        OutgoingContent::Media { data, filename, caption, .. } => {
            let mut items = vec![Item::File { name: filename, data }];
            if let Some(caption) = caption.filter(|c| !c.trim().is_empty()) {
                items.push(Item::Text { text: caption, mentions: Vec::new() });
            }
            items
        }
        OutgoingContent::Location { latitude, longitude } => {
            let text = format!("📍 https://www.openstreetmap.org/?mlat={latitude}&mlon={longitude}");
            vec![Item::Text { text, mentions: Vec::new() }]
        }
    };
    let id = shared.send_items(conversation, items).await?;
    Ok(SentMessage { id: RemoteMessageId::from(id), part: PartId::from(""), timestamp: now_ms() })
}

#[async_trait::async_trait]
impl DeleteHandler for WechatClient {
    async fn delete_message(&self, _chat: &ChatRef, id: &RemoteMessageId) -> Result<(), NetworkError> {
        let id = match self.shared().redaction_target(id.as_str()).await {
            Target::Sent(id) => id,
            Target::Cancelled(_) => return Ok(()),
        };
        if self.shared().puppet.recall(&id).await? {
            Ok(())
        } else {
            Err(NetworkError::Remote(
                "WeChat refused to recall the message (only your own recent messages can be recalled)".to_owned(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer(min_interval_ms: u64, daily_warning: u32) -> Pacer {
        Pacer::new(PacingConfig { min_interval_ms, jitter_ms: 0, daily_warning })
    }

    #[tokio::test(start_paused = true)]
    async fn slots_are_spaced_by_interval_plus_jitter() {
        let pacer = pacer(1000, 0);
        let t0 = Instant::now();
        let jitters = [300, 0, 50];
        let mut slots = Vec::new();
        for jitter in jitters {
            slots.push(pacer.reserve(t0, Duration::from_millis(jitter)).at - t0);
        }
        assert_eq!(slots, [Duration::ZERO, Duration::from_millis(1300), Duration::from_millis(2300)]);
        // After a quiet period the next message goes at once.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(pacer.reserve(later, Duration::ZERO).at, later);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_sleeps_until_the_slot() {
        let pacer = pacer(2000, 0);
        let start = Instant::now();
        assert!(!pacer.wait("me").await);
        assert_eq!(Instant::now(), start);
        pacer.wait("me").await;
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn the_daily_warning_fires_once_per_window() {
        let pacer = pacer(0, 3);
        let t0 = Instant::now();
        let flags: Vec<bool> = (0..6).map(|_| pacer.reserve(t0, Duration::ZERO).passes_daily_warning).collect();
        assert_eq!(flags, [false, false, false, true, false, false]);
        // A new window starts the count again.
        let tomorrow = t0 + DAY + Duration::from_secs(1);
        let flags: Vec<bool> = (0..4).map(|_| pacer.reserve(tomorrow, Duration::ZERO).passes_daily_warning).collect();
        assert_eq!(flags, [false, false, false, true]);
    }
}
