//! The `network:` section of the Discord bridge's config ([`DiscordConfig`]) and its checks.
//!
//! `api_base_url` points serenity at a Discord simulator. It exists only for the tests: a
//! release build refuses a non-empty value at startup ([`check_api_base_url`]), so the
//! switch cannot be turned on by accident in production.

use serde::{Deserialize, Serialize};

/// The Discord bridge's `network:` config section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscordConfig {
    /// Ask for the privileged MESSAGE_CONTENT intent (enable it for the bot in the developer
    /// portal too); without it guild messages arrive with empty text.
    pub message_content_intent: bool,
    /// Ask for the privileged GUILD_MEMBERS intent, for nicknames and member lists.
    pub guild_members_intent: bool,
    /// Send Matrix messages through per-channel webhooks with the sender's name and avatar;
    /// when off (or not permitted) the bot sends `**name**: text`.
    pub use_webhooks: bool,
    /// The name given to the webhooks the bridge creates. Discord refuses names containing
    /// "discord" or "clyde".
    pub webhook_name: String,
    /// The most reconnect attempts in a row before the login is reported as disconnected
    /// for good (0 = retry forever).
    pub max_reconnect_attempts: u32,
    /// How many seconds the gateway may stay disconnected (serenity reconnecting by itself)
    /// before the login is reported as disconnected to its user. At least 1.
    pub disconnect_grace_seconds: u32,
    /// Test only: the base URL of a Discord simulator (`http://127.0.0.1:PORT`). Must be
    /// empty in release builds.
    pub api_base_url: String,
}

impl Default for DiscordConfig {
    fn default() -> Self {
        Self {
            message_content_intent: true,
            guild_members_intent: true,
            use_webhooks: true,
            webhook_name: "Matrix Bridge".to_owned(),
            max_reconnect_attempts: 0,
            disconnect_grace_seconds: 5,
            api_base_url: String::new(),
        }
    }
}

/// Errors in the `network:` section.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The simulator URL was set in a release build.
    #[error("network.api_base_url is a test-only setting and must be empty in release builds")]
    ApiBaseUrlInRelease,
    /// The simulator URL is not an http(s) URL.
    #[error("network.api_base_url {0:?} is not an http:// or https:// URL")]
    BadApiBaseUrl(String),
    /// The disconnect grace is zero.
    #[error("network.disconnect_grace_seconds must be at least 1")]
    ZeroDisconnectGrace,
    /// The webhook name is not allowed by Discord.
    #[error("network.webhook_name must be 1 to 80 characters without \"discord\" or \"clyde\"")]
    BadWebhookName,
}

impl DiscordConfig {
    /// Checks the section for this build; returns the simulator URL to use, if any.
    pub fn validate(&self) -> Result<Option<url::Url>, ConfigError> {
        let lower = self.webhook_name.to_lowercase();
        let length = self.webhook_name.chars().count();
        if !(1..=80).contains(&length) || lower.contains("discord") || lower.contains("clyde") {
            return Err(ConfigError::BadWebhookName);
        }
        if self.disconnect_grace_seconds == 0 {
            return Err(ConfigError::ZeroDisconnectGrace);
        }
        check_api_base_url(&self.api_base_url, cfg!(debug_assertions))
    }
}

/// The release guard for the simulator URL, as a pure function of the value and whether
/// this is a debug build: empty is always fine; a value is refused in release builds and
/// must be an http(s) URL otherwise.
pub fn check_api_base_url(value: &str, debug_build: bool) -> Result<Option<url::Url>, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if !debug_build {
        return Err(ConfigError::ApiBaseUrlInRelease);
    }
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(Some(url)),
        _ => Err(ConfigError::BadApiBaseUrl(value.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_guard() {
        let cases: [(&str, bool, Result<bool, ConfigError>); 7] = [
            ("", false, Ok(false)),
            ("", true, Ok(false)),
            ("  ", false, Ok(false)),
            ("http://127.0.0.1:1234", true, Ok(true)),
            ("http://127.0.0.1:1234", false, Err(ConfigError::ApiBaseUrlInRelease)),
            ("not a url", false, Err(ConfigError::ApiBaseUrlInRelease)),
            ("ftp://x", true, Err(ConfigError::BadApiBaseUrl("ftp://x".to_owned()))),
        ];
        for (value, debug, want) in cases {
            let got = check_api_base_url(value, debug).map(|u| u.is_some());
            assert_eq!(got, want, "value {value:?}, debug {debug}");
        }
    }

    #[test]
    fn defaults_validate_and_round_trip() {
        let config = DiscordConfig::default();
        assert_eq!(config.validate(), Ok(None));
        let yaml = serde_saphyr::to_string(&config).expect("serialize");
        let back: DiscordConfig = serde_saphyr::from_str(&yaml).expect("parse");
        assert_eq!(back, config);
    }

    #[test]
    fn webhook_names() {
        for (name, ok) in [("Matrix", true), ("My Discord relay", false), ("clyde", false), ("", false)] {
            let config = DiscordConfig { webhook_name: name.to_owned(), ..DiscordConfig::default() };
            assert_eq!(config.validate().is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn a_zero_disconnect_grace_is_refused() {
        let config = DiscordConfig { disconnect_grace_seconds: 0, ..DiscordConfig::default() };
        assert_eq!(config.validate(), Err(ConfigError::ZeroDisconnectGrace));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let parsed: Result<DiscordConfig, _> = serde_saphyr::from_str("use_webhook: true\n");
        assert!(parsed.is_err());
    }
}
