//! WhatsApp → core: the task that reads one login's whatsapp-rust events and reports them.
//! Stage 1 of the bridge reports the connection (connected, lost, replaced, logged out by
//! the phone); messages follow with stage 2.

use std::sync::Arc;

use bridge_core::network::events::LoginState;
use whatsapp_rust::types::events::Event;

use crate::client::Shared;

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// Reads `events` until the client stops or the core goes away.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<Arc<Event>>,
) {
    while let Some(event) = events.recv().await {
        let Some(state) = login_state(&event) else {
            continue;
        };
        if let LoginState::BadCredentials { reason } = &state {
            tracing::info!(login = %shared.login, %reason, "the WhatsApp device was logged out");
            shared.logged_out(reason).await;
            continue;
        }
        if !shared.report(state).await {
            return;
        }
    }
}

/// The login state an event means, if any.
pub(crate) fn login_state(event: &Event) -> Option<LoginState> {
    let bad = |reason: &str| {
        Some(LoginState::BadCredentials {
            reason: reason.to_owned(),
        })
    };
    match event {
        Event::Connected(_) => Some(LoginState::Connected),
        Event::Disconnected(disconnected) => Some(LoginState::TransientDisconnect {
            reason: format!("disconnected from WhatsApp: {}", disconnected.reason),
        }),
        Event::LoggedOut(_) => {
            bad("the bridge was unlinked from your phone (or WhatsApp logged the device out)")
        }
        Event::StreamReplaced(_) => bad("another client connected as this linked device"),
        Event::TemporaryBan(_) => bad("WhatsApp banned the account temporarily"),
        Event::ClientOutdated(_) => {
            bad("WhatsApp says this version is outdated: update network.app_version")
        }
        _ => None,
    }
}
