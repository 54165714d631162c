//! Exponential backoff with full jitter, shared by every retry loop in the bridges.
//!
//! One helper serves the Matrix client's retries on 429/5xx, reconnect loops of the
//! network clients and the startup wait for the homeserver, so that no loop in the
//! code base retries in a tight or synchronised way.

use std::time::Duration;

use rand::Rng;

/// An exponential backoff schedule with full jitter.
///
/// Each call to [`Backoff::next_delay`] returns a random delay between half and the
/// whole of the current step, and doubles the step up to `max`. Randomising the delay
/// keeps many clients that failed together (after a homeserver restart, say) from
/// retrying together.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    attempts: u32,
}

impl Backoff {
    /// A schedule that starts at `initial` and doubles up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, current: initial, attempts: 0 }
    }

    /// The schedule used for outbound HTTP retries: 250 ms doubling to 30 s.
    pub fn http() -> Self {
        Self::new(Duration::from_millis(250), Duration::from_secs(30))
    }

    /// The schedule used for reconnect loops: 1 s doubling to 5 minutes.
    pub fn reconnect() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(300))
    }

    /// How many delays this schedule has handed out since it was created or reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The next delay to wait, with jitter; advances the schedule.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.current;
        self.current = (self.current * 2).min(self.max);
        self.attempts += 1;
        let half = step / 2;
        let jitter_ms = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// Starts the schedule over, after a success.
    pub fn reset(&mut self) {
        self.current = self.initial;
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_within_bounds() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let bounds = [(50, 100), (100, 200), (200, 400), (400, 800), (400, 800)];
        for (lo, hi) in bounds {
            let d = b.next_delay().as_millis() as u64;
            assert!((lo..=hi + 1).contains(&d), "{d} not in {lo}..={hi}");
        }
        assert_eq!(b.attempts(), 5);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(101));
    }
}
