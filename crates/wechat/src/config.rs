//! The `network:` section of the WeChat bridge's config: where the Wechaty puppet service
//! is, how to authenticate and whether to use TLS, how fast to send, and how to watch the
//! connection.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The WeChat bridge's `network:` config section.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WechatConfig {
    /// The puppet service's gRPC endpoint, `http://host:port` (plain HTTP/2) or
    /// `https://host:port` (TLS). Required: the Wechaty discovery service is not used.
    pub endpoint: String,
    /// The puppet service token, sent as `authorization: Wechaty <token>`.
    pub token: String,
    /// TLS options for `https://` endpoints.
    pub tls: TlsConfig,
    /// Whether a user may give their own endpoint and token as the first login step.
    pub allow_user_endpoint: bool,
    /// Pacing of outgoing messages (WeChat bans accounts that send like bots).
    pub pacing: PacingConfig,
    /// Seconds between two pings (`Ding`) on an idle event stream.
    pub heartbeat_interval_secs: u64,
    /// Seconds without any event (a `DONG` answers each ping) after which the stream is
    /// considered dead and reopened.
    pub heartbeat_timeout_secs: u64,
    /// Timeout of one ordinary call, in seconds.
    pub call_timeout_secs: u64,
}

impl Default for WechatConfig {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:8788".to_owned(),
            token: String::new(),
            tls: TlsConfig::default(),
            allow_user_endpoint: false,
            pacing: PacingConfig::default(),
            heartbeat_interval_secs: 30,
            heartbeat_timeout_secs: 90,
            call_timeout_secs: 15,
        }
    }
}

impl std::fmt::Debug for WechatConfig {
    // Written by hand so the token never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatConfig")
            .field("endpoint", &self.endpoint)
            .field("token", &if self.token.is_empty() { "" } else { "<redacted>" })
            .field("tls", &self.tls)
            .field("allow_user_endpoint", &self.allow_user_endpoint)
            .field("pacing", &self.pacing)
            .field("heartbeat_interval_secs", &self.heartbeat_interval_secs)
            .field("heartbeat_timeout_secs", &self.heartbeat_timeout_secs)
            .field("call_timeout_secs", &self.call_timeout_secs)
            .finish()
    }
}

impl WechatConfig {
    /// The timeout of one ordinary call.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_secs(self.call_timeout_secs.max(1))
    }

    /// The interval between pings on the event stream.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs(self.heartbeat_interval_secs.max(1))
    }

    /// How long the event stream may stay silent before it is reopened.
    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_secs(self.heartbeat_timeout_secs.max(self.heartbeat_interval_secs + 1))
    }
}

/// TLS options of the puppet service connection.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The server name checked against the certificate (Wechaty services use the token's
    /// prefix as SNI); defaults to the endpoint's host.
    pub server_name: Option<String>,
    /// A PEM file with the CA that signed the service's certificate; defaults to the web PKI roots.
    pub ca_file: Option<String>,
}

/// Pacing of outgoing messages, per login.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PacingConfig {
    /// Minimum milliseconds between two messages sent by one login.
    pub min_interval_ms: u64,
    /// Up to this many extra random milliseconds are added to each interval.
    pub jitter_ms: u64,
    /// Once a login has sent this many messages in one day (UTC), its owner gets a warning in
    /// the management room (0: never). The count survives restarts of the bridge.
    pub daily_warning: u32,
}

impl Default for PacingConfig {
    fn default() -> Self {
        Self { min_interval_ms: 1000, jitter_ms: 1000, daily_warning: 300 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_unknown_keys_are_rejected() {
        let yaml = serde_json::to_string(&WechatConfig::default()).expect("serialize");
        let back: WechatConfig = serde_json::from_str(&yaml).expect("parse");
        assert_eq!(back, WechatConfig::default());
        let error = serde_json::from_str::<WechatConfig>(r#"{"endpont": "x"}"#).expect_err("typo");
        assert!(error.to_string().contains("endpont"), "{error}");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let config = WechatConfig { token: "secret-token".to_owned(), ..WechatConfig::default() };
        let text = format!("{config:?}");
        assert!(!text.contains("secret-token"), "{text}");
    }

    #[test]
    fn heartbeat_timeout_is_longer_than_the_interval() {
        let config = WechatConfig { heartbeat_interval_secs: 30, heartbeat_timeout_secs: 10, ..WechatConfig::default() };
        assert!(config.heartbeat_timeout() > config.heartbeat_interval());
    }
}
