//! Bridge state notices: what the owner of a login is told in their management room when
//! the login's state changes. One notice per change, never one per retry: a disconnection
//! is told once it has lasted `bridge.notify_disconnect_after_secs` (shorter drops pass in
//! silence) and its end only if it was told; bad credentials and a logout are told once
//! each, and the login being connected again after any problem that was told.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::Duration,
};

use crate::network::{events::LoginState, LoginId};

/// The label under which a state is stored (`user_logins.state`) and listed.
pub(crate) fn label(state: &LoginState) -> &'static str {
    match state {
        LoginState::Connecting => "connecting",
        LoginState::Connected => "connected",
        LoginState::TransientDisconnect { .. } => "transient_disconnect",
        LoginState::BadCredentials { .. } => "bad_credentials",
        LoginState::LoggedOut => "logged_out",
    }
}

/// Whether `state` replaces the stored state `previous`: a login whose credentials are
/// bad or that was logged out stays so while its client tries to connect or loses the
/// connection; only a connection or another such problem replaces it (so a restarted
/// bridge that finds the credentials still bad does not tell it again).
pub(crate) fn replaces(previous: Option<&str>, state: &LoginState) -> bool {
    let broken = matches!(previous, Some("bad_credentials" | "logged_out"));
    !(broken && matches!(state, LoginState::Connecting | LoginState::TransientDisconnect { .. }))
}

/// What to tell a login's owner after a state change.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Tell {
    /// Nothing (a retry, a reconnect within the grace period, a state already told).
    Nothing,
    /// This notice, now.
    Now(String),
    /// A disconnection began: ask [`StateNotices::overdue`] about outage `outage` once the
    /// grace period has passed.
    Later {
        /// The outage's number.
        outage: u64,
    },
}

/// A disconnection in progress.
struct Outage {
    id: u64,
    reason: String,
    told: bool,
}

/// The disconnections in progress per login, to tell each once (see the module docs).
/// Its lock is never held across an `.await`.
#[derive(Default)]
pub(crate) struct StateNotices {
    outages: Mutex<HashMap<LoginId, Outage>>,
    next: AtomicU64,
}

impl StateNotices {
    /// What to tell after `login` (named `name`) went from `previous` (a stored label, if
    /// known) to `state`, with a grace period of `grace` for disconnections.
    pub(crate) fn on_change(&self, login: &LoginId, name: &str, previous: Option<&str>, state: &LoginState, grace: Duration) -> Tell {
        let mut outages = self.outages.lock().unwrap_or_else(|e| e.into_inner());
        let broken = matches!(previous, Some("bad_credentials" | "logged_out"));
        match state {
            LoginState::Connecting => Tell::Nothing,
            LoginState::Connected => {
                let told = outages.remove(login).is_some_and(|o| o.told);
                if told || broken {
                    Tell::Now(format!("Reconnected {name}."))
                } else {
                    Tell::Nothing
                }
            }
            LoginState::TransientDisconnect { reason } => {
                if let Some(outage) = outages.get_mut(login) {
                    outage.reason.clone_from(reason);
                    return Tell::Nothing;
                }
                if broken {
                    return Tell::Nothing;
                }
                let id = self.next.fetch_add(1, Ordering::Relaxed);
                let told = grace.is_zero();
                outages.insert(login.clone(), Outage { id, reason: reason.clone(), told });
                if told {
                    Tell::Now(lost(name, reason))
                } else {
                    Tell::Later { outage: id }
                }
            }
            LoginState::BadCredentials { reason } => {
                outages.remove(login);
                if previous == Some("bad_credentials") {
                    Tell::Nothing
                } else {
                    Tell::Now(format!("Your login {name} stopped working: {reason}. Use `relogin` or `login` to log in again."))
                }
            }
            LoginState::LoggedOut => {
                outages.remove(login);
                if previous == Some("logged_out") {
                    Tell::Nothing
                } else {
                    Tell::Now(format!("Your login {name} was logged out on the network."))
                }
            }
        }
    }

    /// Once the grace period of outage `outage` of `login` has passed: its notice, if it
    /// still lasts and was not told yet (it is then marked told).
    pub(crate) fn overdue(&self, login: &LoginId, name: &str, outage: u64) -> Option<String> {
        let mut outages = self.outages.lock().unwrap_or_else(|e| e.into_inner());
        let current = outages.get_mut(login).filter(|o| o.id == outage && !o.told)?;
        current.told = true;
        Some(lost(name, &current.reason))
    }

    /// Forgets a removed login.
    pub(crate) fn forget(&self, login: &LoginId) {
        self.outages.lock().unwrap_or_else(|e| e.into_inner()).remove(login);
    }
}

fn lost(name: &str, reason: &str) -> String {
    format!("Lost the connection for {name} ({reason}); reconnecting.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient(reason: &str) -> LoginState {
        LoginState::TransientDisconnect { reason: reason.to_owned() }
    }

    /// Runs states through the notices as the core does (the previous state is the last
    /// one stored); returns what was told, with `overdue` asked after each `Later`
    /// when `late` says the outage outlasted the grace period.
    fn run(states: &[(LoginState, bool)], grace: Duration) -> Vec<String> {
        let notices = StateNotices::default();
        let login = LoginId::from("1");
        let mut previous: Option<&str> = Some("connecting");
        let mut told = Vec::new();
        for (state, late) in states {
            match notices.on_change(&login, "Ann", previous, state, grace) {
                Tell::Nothing => {}
                Tell::Now(text) => told.push(text),
                Tell::Later { outage } if *late => told.extend(notices.overdue(&login, "Ann", outage)),
                Tell::Later { .. } => {}
            }
            if replaces(previous, state) {
                previous = Some(label(state));
            }
        }
        told
    }

    #[test]
    fn one_notice_per_change_never_per_retry() {
        let grace = Duration::from_secs(30);
        let (c, up) = (LoginState::Connecting, LoginState::Connected);
        let bad = LoginState::BadCredentials { reason: "token revoked".to_owned() };
        let lost = "Lost the connection for Ann (down); reconnecting.";
        let back = "Reconnected Ann.";
        let stopped = "Your login Ann stopped working: token revoked. Use `relogin` or `login` to log in again.";
        /// (what, the states with whether each outlasts the grace period, what is told)
        type Case<'a> = (&'a str, Vec<(LoginState, bool)>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            ("a start", vec![(c.clone(), false), (up.clone(), false)], vec![]),
            ("a drop within the grace period", vec![(up.clone(), false), (transient("down"), false), (c.clone(), false), (up.clone(), false)], vec![]),
            (
                "an outage over the grace period, with retries",
                vec![(up.clone(), false), (transient("down"), true), (c.clone(), false), (transient("again"), true), (c.clone(), false), (transient("still"), true), (up.clone(), false)],
                vec![lost, back],
            ),
            ("bad credentials, reported again at each retry", vec![(up.clone(), false), (bad.clone(), false), (bad.clone(), false), (transient("x"), true)], vec![stopped]),
            ("connected after bad credentials", vec![(bad.clone(), false), (up.clone(), false), (up.clone(), false)], vec![stopped, back]),
            (
                "bad credentials again after a restart or a drop",
                vec![(bad.clone(), false), (c.clone(), false), (bad.clone(), false), (transient("x"), true), (bad.clone(), false)],
                vec![stopped],
            ),
            ("logged out", vec![(up.clone(), false), (LoginState::LoggedOut, false), (LoginState::LoggedOut, false)], vec!["Your login Ann was logged out on the network."]),
        ];
        for (name, states, want) in cases {
            assert_eq!(run(&states, grace), want, "{name}");
        }
    }

    #[test]
    fn without_a_grace_period_a_drop_is_told_at_once() {
        let states = [(LoginState::Connected, false), (transient("reset"), false), (transient("again"), false), (LoginState::Connected, false)];
        assert_eq!(run(&states, Duration::ZERO), ["Lost the connection for Ann (reset); reconnecting.", "Reconnected Ann."]);
    }

    #[test]
    fn an_outage_that_ended_is_not_told_late() {
        let notices = StateNotices::default();
        let login = LoginId::from("1");
        let grace = Duration::from_secs(30);
        let Tell::Later { outage } = notices.on_change(&login, "Ann", Some("connected"), &transient("down"), grace) else { panic!("no outage") };
        assert_eq!(notices.on_change(&login, "Ann", Some("transient_disconnect"), &LoginState::Connected, grace), Tell::Nothing);
        assert_eq!(notices.overdue(&login, "Ann", outage), None);
    }
}
