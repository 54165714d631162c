//! Double puppeting: acting as a user's real Matrix account.
//!
//! When `bridge.double_puppet.secrets` holds `as_token:<token>` for a user's homeserver,
//! what the user sends from the network's own app (a remote event whose
//! [`crate::network::events::Sender::is_from_me`] is set) is sent to Matrix as that user
//! rather than as the ghost of their remote account. The token belongs to a second
//! appservice registration with a non-exclusive user namespace covering the homeserver's
//! users (`@.*:example.com`), so identity assertion (`?user_id=`) works for them; the
//! operator adds that registration to the homeserver.
//!
//! Events sent this way come back in transactions as events of a real user. They carry
//! [`DOUBLE_PUPPET_KEY`] (the bridge's appservice ID) in their content, and the portal
//! remembers the IDs of what it sent, so they are never bridged back to the network.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

use ruma::{OwnedServerName, RoomId, UserId};
use serde_json::Value;
use url::Url;

use crate::{
    bridge::Bridge,
    config::{BridgeConfig, HomeserverConfig},
    matrix::{Intent, MatrixClient, MatrixError},
};

/// The content key that marks an event sent by a double puppet; its value is the
/// appservice ID of the bridge that sent it.
pub const DOUBLE_PUPPET_KEY: &str = "fi.mau.double_puppet_source";

/// The localpart given as the "bot" of a double-puppet client. The double-puppet
/// registration's own user is never used: every request asserts the real user's ID.
const PUPPET_CLIENT_BOT: &str = "_double_puppet";

/// The double-puppet clients, one per homeserver with a secret, built on first use.
#[derive(Default)]
pub struct DoublePuppets {
    clients: Mutex<HashMap<String, Option<MatrixClient>>>,
}

impl DoublePuppets {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Option<MatrixClient>>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Bridge {
    /// The intent of `user`'s real Matrix account, or `None` when double puppeting is not
    /// configured for their homeserver (or its client cannot be built; logged once).
    pub fn puppet_intent(&self, user: &UserId) -> Option<Intent> {
        let server = user.server_name().as_str();
        let settings = &self.settings.double_puppet;
        let token = settings.as_token(server)?;
        let mut clients = self.puppets.lock();
        let client = clients
            .entry(server.to_owned())
            .or_insert_with(|| {
                let url = homeserver_url(&self.settings, &self.homeserver, server)?;
                let name = OwnedServerName::try_from(server).ok()?;
                match MatrixClient::new(url, name, token.to_owned(), PUPPET_CLIENT_BOT) {
                    Ok(client) => Some(client),
                    Err(e) => {
                        tracing::warn!(%server, error = %e, "cannot build the double-puppet client (bridge.double_puppet)");
                        None
                    }
                }
            })
            .clone()?;
        drop(clients);
        let intent = client.intent(user.to_owned());
        (!intent.is_bot()).then_some(intent)
    }

    /// Makes sure a double puppet is joined to `room`. The user was invited when the portal
    /// was made; if not (a refused join), the bot invites them and the join is tried again.
    pub async fn join_puppet(&self, puppet: &Intent, room: &RoomId) -> Result<(), MatrixError> {
        if puppet.client().is_known_joined(puppet.user_id(), room) {
            return Ok(());
        }
        match puppet.join(room).await {
            Err(e) if e.is("M_FORBIDDEN") => {
                tracing::debug!(user = %puppet.user_id(), %room, "double puppet not invited; inviting through the bot");
                self.bot_intent().invite(room, puppet.user_id()).await?;
                puppet.join(room).await
            }
            other => other,
        }
    }

    /// Whether an event's content says this bridge's double puppet sent it.
    pub fn is_double_puppet_echo(&self, event: &Value) -> bool {
        marked_by(event, &self.appservice.id)
    }
}

/// Whether `event` carries [`DOUBLE_PUPPET_KEY`] with the value `appservice_id`.
pub fn marked_by(event: &Value, appservice_id: &str) -> bool {
    event.get("content").and_then(|c| c.get(DOUBLE_PUPPET_KEY)).and_then(Value::as_str) == Some(appservice_id)
}

/// The client-server API URL of `server`: from `double_puppet.servers`, else the bridge's
/// own homeserver for its domain, else `https://<server>`.
fn homeserver_url(settings: &BridgeConfig, own: &HomeserverConfig, server: &str) -> Option<Url> {
    match settings.double_puppet.servers.get(server) {
        Some(url) => Some(url.clone()),
        None if server == own.domain => Some(own.address.clone()),
        None => Url::parse(&format!("https://{server}")).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_this_bridges_mark_makes_an_echo() {
        let cases = [
            (json!({"content": {"body": "x", DOUBLE_PUPPET_KEY: "test"}}), true),
            (json!({"content": {"body": "x", DOUBLE_PUPPET_KEY: "other-bridge"}}), false),
            (json!({"content": {"body": "x"}}), false),
            (json!({"content": {DOUBLE_PUPPET_KEY: true}}), false),
            (json!({"type": "m.room.redaction"}), false),
        ];
        for (event, want) in cases {
            assert_eq!(marked_by(&event, "test"), want, "{event}");
        }
    }

    #[test]
    fn homeserver_urls_come_from_servers_then_our_own_then_https() {
        let own = HomeserverConfig { address: Url::parse("http://127.0.0.1:8008").expect("url"), domain: "example.com".into() };
        let mut settings = BridgeConfig::example(&crate::config::tests::test_info(), "example.com");
        settings.double_puppet.servers.insert("other.org".into(), Url::parse("https://matrix.other.org").expect("url"));
        let cases = [
            ("example.com", "http://127.0.0.1:8008/"),
            ("other.org", "https://matrix.other.org/"),
            ("third.net", "https://third.net/"),
        ];
        for (server, want) in cases {
            assert_eq!(homeserver_url(&settings, &own, server).map(String::from).as_deref(), Some(want), "{server}");
        }
    }
}
