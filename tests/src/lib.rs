//! Harness for the end-to-end tests: a real Synapse per test, a minimal Matrix client that looks
//! at the bridges from outside, and child-process bookkeeping for the bridge binaries.
//!
//! The pieces:
//! - [`Synapse`]: starts a throw-away homeserver on a free loopback port
//!   ([`Synapse::start`] with [`SynapseOptions`]), registers users, restarts and stops it.
//! - [`TestUser`]: a small client-server API client (reqwest + `serde_json`, deliberately not
//!   `bridge-core`) with polling waits such as [`TestUser::wait_for_event`].
//! - [`BridgeProcess`]: a spawned bridge binary with its log file, and
//!   [`run_to_completion`] for one-shot subcommands.
//! - [`free_port`], [`wait_until`], [`random_localpart`]: small helpers.
//!
//! Environment read by the harness (set by `scripts/test`):
//! - `BRIDGE_TEST_SYNAPSE_PYTHON`: the python of the venv that has `matrix-synapse` installed
//!   (default: `python3`).
//! - `BRIDGE_TEST_E2EE_PYTHON`: the python of the venv with `matrix-nio[e2e]` (see [`e2ee`]).
//! - `BRIDGE_TEST_RUN_DIR`: when set, every spawned child writes its PID to
//!   `$BRIDGE_TEST_RUN_DIR/pids/` while it runs, so `scripts/test` can kill leftovers even if
//!   the test process crashes.
//! - `BRIDGE_TEST_POSTGRES_URL`, `BRIDGE_TEST_SKIP_POSTGRES`: see [`postgres_url`].

mod client;
pub mod discord_sim;
pub mod e2ee;
mod process;
pub mod procstat;
mod synapse;
pub mod telegram_sim;
pub mod testnet;
pub mod wechaty;
pub mod whatsapp_sim;

use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use anyhow::Context as _;
use rand::Rng as _;

pub use client::TestUser;
pub use process::{run_to_completion, BridgeCommand, BridgeProcess};
pub use synapse::{Synapse, SynapseOptions};

/// How often [`wait_until`] and the `wait_for_*` helpers poll.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is found by binding port 0 and releasing it, so another process may take it before
/// the caller binds it; callers that can retry on "address in use" should.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr().context("local address")?.port())
}

/// Returns `prefix` followed by a dash and 10 random lowercase letters and digits, usable as a
/// Matrix localpart, so that test runs never collide on names.
pub fn random_localpart(prefix: &str) -> String {
    format!("{prefix}-{}", random_lowercase(10))
}

/// Returns `len` random characters from `[a-z0-9]`.
pub(crate) fn random_lowercase(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Polls `check` every [`POLL_INTERVAL`] until it returns `Ok(Some(value))`, and returns that
/// value; fails once `timeout` has passed.
///
/// `Ok(None)` means "not yet". An `Err` also means "not yet" (a room the user has not joined
/// yet answers 403, for example); the last error is reported if the wait times out. `what`
/// names the awaited condition in that error.
///
/// `check` may be an `async || { ... }` closure that mutably borrows its captures (such as a
/// [`BridgeProcess`] whose exit it checks), or a plain `|| async { ... }` one.
pub async fn wait_until<T, F>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: AsyncFnMut() -> anyhow::Result<Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(match last_error {
                Some(error) => {
                    error.context(format!("timed out after {timeout:?} waiting for {what}"))
                }
                None => anyhow::anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// An appservice registration as Synapse loads it, for tests that register an appservice
/// by hand (the bridges write theirs with `generate-registration`). `url` is where Synapse
/// pushes transactions (`None`: it pushes nothing); `user_regex` is the user namespace; the
/// hs_token is random.
pub fn registration_yaml(id: &str, url: Option<&str>, as_token: &str, sender_localpart: &str, user_regex: &str, exclusive: bool) -> String {
    let url = url.map_or_else(|| "null".to_owned(), |u| format!("\"{u}\""));
    format!(
        "id: \"{id}\"\nurl: {url}\nas_token: \"{as_token}\"\nhs_token: \"{hs_token}\"\n\
         sender_localpart: \"{sender_localpart}\"\nrate_limited: false\n\
         namespaces:\n  users:\n    - exclusive: {exclusive}\n      regex: '{user_regex}'\n  aliases: []\n  rooms: []\n",
        hs_token = random_localpart("hs"),
    )
}

/// The PostgreSQL URL for storage tests, or `None` when they should skip themselves.
///
/// `None` when `BRIDGE_TEST_SKIP_POSTGRES=1`; otherwise `BRIDGE_TEST_POSTGRES_URL`, defaulting
/// to `postgres://postgres@127.0.0.1:5432/test` (what `scripts/test` checks is reachable).
pub fn postgres_url() -> Option<String> {
    if std::env::var("BRIDGE_TEST_SKIP_POSTGRES").is_ok_and(|value| value == "1") {
        return None;
    }
    Some(
        std::env::var("BRIDGE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned()),
    )
}

/// Receives the events a network client reports (as the core would) until one matches
/// `want`, skipping the others; fails after `timeout` or when the channel closes.
pub async fn next_remote_event(
    events: &mut tokio::sync::mpsc::Receiver<(bridge_core::network::LoginId, bridge_core::network::RemoteEvent)>,
    timeout: Duration,
    want: impl Fn(&bridge_core::network::RemoteEvent) -> bool,
) -> anyhow::Result<bridge_core::network::RemoteEvent> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (_, event) = tokio::time::timeout_at(deadline, events.recv())
            .await
            .map_err(|_| anyhow::anyhow!("timed out waiting for a matching remote event"))?
            .ok_or_else(|| anyhow::anyhow!("the event channel closed"))?;
        if want(&event) {
            return Ok(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_localparts_are_valid_and_distinct() {
        let a = random_localpart("alice");
        let b = random_localpart("alice");
        assert_ne!(a, b);
        assert!(a.starts_with("alice-"));
        assert_eq!(a.len(), "alice-".len() + 10);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_port().expect("free port");
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("bind the returned port");
    }

    #[tokio::test]
    async fn wait_until_returns_the_first_ready_value() {
        let mut calls = 0;
        let value = wait_until(Duration::from_secs(5), "the third call", async || {
            calls += 1;
            Ok((calls >= 3).then_some(calls))
        })
        .await
        .expect("ready");
        assert_eq!(value, 3);
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn wait_until_accepts_closures_returning_futures() {
        let value = wait_until(Duration::from_secs(5), "at once", || async { Ok(Some(7)) })
            .await
            .expect("ready");
        assert_eq!(value, 7);
    }

    #[tokio::test]
    async fn wait_until_times_out_with_the_last_error() {
        let error = wait_until::<(), _>(Duration::from_millis(250), "never", || async {
            Err(anyhow::anyhow!("still forbidden"))
        })
        .await
        .expect_err("must time out");
        let text = format!("{error:#}");
        assert!(text.contains("timed out"), "{text}");
        assert!(text.contains("still forbidden"), "{text}");
    }
}
