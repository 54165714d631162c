//! Matrix → WeChat: sending messages (text with `@` mentions; files inline or, when large,
//! through the service's `Upload` stream; locations as links), recalls, and the per-login
//! [`Pacer`] every outgoing message waits for, because WeChat bans accounts that send like
//! bots (its owner is warned in the management room past a daily count, kept in the
//! login's store across restarts).

use std::time::Duration;

use bridge_core::network::client::DeleteHandler;
use bridge_core::network::events::ChatRef;
use bridge_core::network::{
    LoginStore, NetworkError, OutgoingContent, OutgoingMessage, PartId, RemoteMessageId, SentMessage,
};
use rand::Rng as _;
use tokio::time::Instant;

use crate::client::{now_ms, Shared, WechatClient};
use crate::config::PacingConfig;
use crate::convert::outgoing_text;
use crate::ids::is_room;
use crate::outbox::{Item, Target};

/// Where the daily counts live in the login's store: one key per UTC date.
const DAILY_KEY: &str = "pacing/daily/";

/// Spaces one login's outgoing messages: at least `min_interval` plus a random jitter
/// apart, in the order they asked; counts them per UTC day, in the login's store so that a
/// restart of the bridge neither resets the count nor repeats the warning.
#[derive(Debug)]
pub struct Pacer {
    config: PacingConfig,
    /// The earliest time the next message may go.
    next: std::sync::Mutex<Option<Instant>>,
    /// The day being counted (a UTC date) and its count so far, once read from the store.
    daily: tokio::sync::Mutex<Option<(String, u32)>>,
}

impl Pacer {
    /// A pacer with `config`'s interval, jitter and warning threshold.
    pub fn new(config: PacingConfig) -> Self {
        Self { config, next: std::sync::Mutex::new(None), daily: tokio::sync::Mutex::new(None) }
    }

    /// Reserves the next sending time at or after `now`, spacing the following one by the
    /// interval plus `jitter` (pure: the caller picks the jitter).
    pub fn reserve(&self, now: Instant, jitter: Duration) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let at = next.map_or(now, |n| n.max(now));
        *next = Some(at + Duration::from_millis(self.config.min_interval_ms) + jitter);
        at
    }

    /// Counts one more message on `day` (a UTC date, `YYYY-MM-DD`) in `store`; returns
    /// whether it is the first beyond the daily warning threshold. Counts of earlier days
    /// are dropped from the store.
    pub async fn count(&self, store: &LoginStore, day: &str) -> bool {
        let threshold = self.config.daily_warning;
        if threshold == 0 {
            return false;
        }
        let mut daily = self.daily.lock().await;
        let before = match daily.as_ref() {
            Some((counted, count)) if counted == day => *count,
            _ => {
                let stored = store.get::<u32>(&daily_key(day)).await.unwrap_or_else(|error| {
                    tracing::warn!(%error, "could not read today's message count");
                    None
                });
                drop_other_days(store, day).await;
                stored.unwrap_or(0)
            }
        };
        let count = before.saturating_add(1);
        *daily = Some((day.to_owned(), count));
        if let Err(error) = store.set(&daily_key(day), &count).await {
            tracing::warn!(%error, "could not store today's message count");
        }
        count == threshold.saturating_add(1)
    }

    /// Waits for this login's next slot, counting the message in `store`; returns whether
    /// it is the first of the day beyond the warning threshold (logged here; the caller
    /// tells the user).
    pub async fn wait(&self, login: &str, store: &LoginStore) -> bool {
        let jitter = match self.config.jitter_ms {
            0 => Duration::ZERO,
            max => Duration::from_millis(rand::rng().random_range(0..=max)),
        };
        let at = self.reserve(Instant::now(), jitter);
        let passes = self.count(store, &utc_date(now_ms() / 1000)).await;
        if passes {
            tracing::warn!(
                login,
                threshold = self.config.daily_warning,
                "this WeChat account has sent more messages today (UTC) than the warning threshold; \
                 WeChat may restrict accounts that send like bots"
            );
        }
        tokio::time::sleep_until(at).await;
        passes
    }

    /// The warning shown to the user when the daily threshold is passed.
    pub fn daily_warning_text(&self) -> String {
        format!(
            "Warning: this WeChat account has sent more than {} messages through the bridge today (UTC). \
             WeChat restricts or bans accounts that send like bots; consider sending fewer messages today.",
            self.config.daily_warning
        )
    }
}

fn daily_key(day: &str) -> String {
    format!("{DAILY_KEY}{day}")
}

/// Removes the stored counts of days other than `day`.
async fn drop_other_days(store: &LoginStore, day: &str) {
    let days = match store.list::<u32>(DAILY_KEY).await {
        Ok(days) => days,
        Err(error) => {
            tracing::warn!(%error, "could not list the stored message counts");
            return;
        }
    };
    for (key, _) in days {
        if key != daily_key(day) {
            if let Err(error) = store.delete(&key).await {
                tracing::warn!(%error, key, "could not drop an old message count");
            }
        }
    }
}

/// The UTC date (`YYYY-MM-DD`) of a Unix time in seconds.
pub fn utc_date(unix_secs: i64) -> String {
    // Days to a civil date, after Howard Hinnant's `civil_from_days`.
    let days = unix_secs.div_euclid(86_400) + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
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
            slots.push(pacer.reserve(t0, Duration::from_millis(jitter)) - t0);
        }
        assert_eq!(slots, [Duration::ZERO, Duration::from_millis(1300), Duration::from_millis(2300)]);
        // After a quiet period the next message goes at once.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(pacer.reserve(later, Duration::ZERO), later);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_sleeps_until_the_slot() {
        let pacer = pacer(2000, 0);
        let store = LoginStore::in_memory(&bridge_core::network::LoginId::from("me".to_owned()));
        let start = Instant::now();
        assert!(!pacer.wait("me", &store).await);
        assert_eq!(Instant::now(), start);
        pacer.wait("me", &store).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
    }

    async fn flags(pacer: &Pacer, store: &LoginStore, day: &str, n: usize) -> Vec<bool> {
        let mut flags = Vec::new();
        for _ in 0..n {
            flags.push(pacer.count(store, day).await);
        }
        flags
    }

    #[tokio::test]
    async fn the_daily_warning_fires_once_per_day_across_restarts() {
        let store = LoginStore::in_memory(&bridge_core::network::LoginId::from("me".to_owned()));
        let first = pacer(0, 3);
        assert_eq!(flags(&first, &store, "2026-11-25", 2).await, [false, false]);
        // A new pacer on the same store (a restarted bridge) goes on counting.
        let restarted = pacer(0, 3);
        assert_eq!(flags(&restarted, &store, "2026-11-25", 4).await, [false, true, false, false]);
        assert_eq!(store.get::<u32>("pacing/daily/2026-11-25").await.ok().flatten(), Some(6));
        // The next day counts again, and the old day's count is dropped.
        assert_eq!(flags(&restarted, &store, "2026-11-26", 4).await, [false, false, false, true]);
        let days: Vec<String> = store.list::<u32>(DAILY_KEY).await.unwrap_or_default().into_iter().map(|(k, _)| k).collect();
        assert_eq!(days, ["pacing/daily/2026-11-26"]);
        // No threshold: nothing counted, never a warning.
        assert_eq!(flags(&pacer(0, 0), &store, "2026-11-27", 3).await, [false, false, false]);
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(86_399), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_798_761_599), "2026-12-31");
        assert_eq!(utc_date(1_798_761_600), "2027-01-01");
        assert_eq!(utc_date(-1), "1969-12-31");
    }
}
