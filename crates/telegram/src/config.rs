//! The `network:` section of the Telegram bridge's config ([`TelegramConfig`]) and its checks.
//!
//! `test_dc_address` / `test_auth_key` seed a new login's MTProto session with a simulator's
//! address and a preset authorization key (a simulator cannot run Telegram's key exchange,
//! whose RSA keys are built into grammers). They exist only for the tests: a release build
//! refuses them at startup ([`check_test_dc`]).

use std::net::SocketAddrV4;

use serde::{Deserialize, Serialize};

/// The Telegram bridge's `network:` config section.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramConfig {
    /// The application's `api_id` from <https://my.telegram.org> (0 = not set). Required to log in.
    pub api_id: i32,
    /// The application's `api_hash` from <https://my.telegram.org>. Required to log in.
    pub api_hash: String,
    /// The device model shown in Telegram's list of active sessions.
    pub device_model: String,
    /// The system version shown in Telegram's list of active sessions.
    pub system_version: String,
    /// The app version shown in Telegram's list of active sessions.
    pub app_version: String,
    /// The longest flood wait (seconds) a call sleeps through by itself; longer waits are
    /// reported as rate limits.
    pub flood_wait_ceiling_seconds: u32,
    /// How often (seconds) the bridge checks that its connection is alive and its session
    /// still valid.
    pub keepalive_seconds: u32,
    /// How many members of a group are synced to its portal at first (-1 = all).
    pub max_initial_member_sync: i32,
    /// Whether the members of broadcast channels are synced as well.
    pub sync_channel_members: bool,
    /// Test only: the `IP:port` of a Telegram simulator, used as DC 2 of new logins.
    /// Must be empty in release builds.
    pub test_dc_address: String,
    /// Test only: the simulator's preset 256-byte authorization key, in hex.
    /// Must be empty in release builds.
    pub test_auth_key: String,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        Self {
            api_id: 0,
            api_hash: String::new(),
            device_model: "Matrix bridge".to_owned(),
            system_version: "Linux".to_owned(),
            app_version: env!("CARGO_PKG_VERSION").to_owned(),
            flood_wait_ceiling_seconds: 60,
            keepalive_seconds: 60,
            max_initial_member_sync: 100,
            sync_channel_members: false,
            test_dc_address: String::new(),
            test_auth_key: String::new(),
        }
    }
}

impl std::fmt::Debug for TelegramConfig {
    // Written by hand so that the api_hash and the key never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |s: &str| if s.is_empty() { "" } else { "<redacted>" };
        f.debug_struct("TelegramConfig")
            .field("api_id", &self.api_id)
            .field("api_hash", &hidden(&self.api_hash))
            .field("device_model", &self.device_model)
            .field("system_version", &self.system_version)
            .field("app_version", &self.app_version)
            .field(
                "flood_wait_ceiling_seconds",
                &self.flood_wait_ceiling_seconds,
            )
            .field("keepalive_seconds", &self.keepalive_seconds)
            .field("max_initial_member_sync", &self.max_initial_member_sync)
            .field("sync_channel_members", &self.sync_channel_members)
            .field("test_dc_address", &self.test_dc_address)
            .field("test_auth_key", &hidden(&self.test_auth_key))
            .finish()
    }
}

/// A simulator to log in to instead of Telegram (tests only).
#[derive(Clone, PartialEq, Eq)]
pub struct TestDc {
    /// Where the simulator listens.
    pub address: SocketAddrV4,
    /// Its preset authorization key.
    pub auth_key: [u8; 256],
}

impl std::fmt::Debug for TestDc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDc")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// The application credentials a login needs.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiCredentials {
    /// `api_id`.
    pub id: i32,
    /// `api_hash`.
    pub hash: String,
}

/// Errors in the `network:` section.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A test-only key was set in a release build.
    #[error("network.test_dc_address and network.test_auth_key are test-only settings and must be empty in release builds")]
    TestDcInRelease,
    /// Only one of the two test keys was set.
    #[error("network.test_dc_address and network.test_auth_key must be set together")]
    HalfATestDc,
    /// The simulator address is not `IPv4:port`.
    #[error("network.test_dc_address {0:?} is not an IPv4 address with a port (127.0.0.1:1234)")]
    BadTestDcAddress(String),
    /// The key is not 512 hex digits.
    #[error("network.test_auth_key must be 512 hexadecimal digits (256 bytes)")]
    BadTestAuthKey,
    /// `api_id` / `api_hash` are missing.
    #[error(
        "the bridge has no Telegram API credentials: set network.api_id and network.api_hash in the config. \
         Get them at https://my.telegram.org (log in, open \"API development tools\" and create an application)"
    )]
    MissingApiCredentials,
}

impl std::fmt::Debug for ApiCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hash.
        f.debug_struct("ApiCredentials")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl TelegramConfig {
    /// Checks the section for this build; returns the simulator to use for new logins, if any.
    pub fn validate(&self) -> Result<Option<TestDc>, ConfigError> {
        check_test_dc(
            &self.test_dc_address,
            &self.test_auth_key,
            cfg!(debug_assertions),
        )
    }

    /// The `api_id` and `api_hash`, or the error telling the admin where to get them.
    pub fn credentials(&self) -> Result<ApiCredentials, ConfigError> {
        let hash = self.api_hash.trim();
        if self.api_id <= 0 || hash.is_empty() {
            return Err(ConfigError::MissingApiCredentials);
        }
        Ok(ApiCredentials {
            id: self.api_id,
            hash: hash.to_owned(),
        })
    }
}

/// The release guard for the simulator switch, as a pure function of the values and whether
/// this is a debug build: empty is always fine; anything else is refused in release builds
/// and must be a valid address and key otherwise.
pub fn check_test_dc(
    address: &str,
    key: &str,
    debug_build: bool,
) -> Result<Option<TestDc>, ConfigError> {
    let (address, key) = (address.trim(), key.trim());
    if address.is_empty() && key.is_empty() {
        return Ok(None);
    }
    if !debug_build {
        return Err(ConfigError::TestDcInRelease);
    }
    if address.is_empty() || key.is_empty() {
        return Err(ConfigError::HalfATestDc);
    }
    let address: SocketAddrV4 = address
        .parse()
        .map_err(|_| ConfigError::BadTestDcAddress(address.to_owned()))?;
    let bytes = decode_hex(key).ok_or(ConfigError::BadTestAuthKey)?;
    let auth_key: [u8; 256] = bytes.try_into().map_err(|_| ConfigError::BadTestAuthKey)?;
    Ok(Some(TestDc { address, auth_key }))
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> String {
        "ab".repeat(256)
    }

    #[test]
    fn release_builds_refuse_the_simulator() {
        let key = key();
        let cases: [(&str, &str, bool, Result<bool, ConfigError>); 8] = [
            ("", "", false, Ok(false)),
            ("", "", true, Ok(false)),
            ("127.0.0.1:1234", &key, true, Ok(true)),
            (
                "127.0.0.1:1234",
                &key,
                false,
                Err(ConfigError::TestDcInRelease),
            ),
            (
                "127.0.0.1:1234",
                "",
                false,
                Err(ConfigError::TestDcInRelease),
            ),
            ("127.0.0.1:1234", "", true, Err(ConfigError::HalfATestDc)),
            (
                "localhost",
                &key,
                true,
                Err(ConfigError::BadTestDcAddress("localhost".to_owned())),
            ),
            (
                "127.0.0.1:1234",
                "abcd",
                true,
                Err(ConfigError::BadTestAuthKey),
            ),
        ];
        for (address, key, debug, want) in cases {
            let got = check_test_dc(address, key, debug).map(|dc| dc.is_some());
            assert_eq!(got, want, "address {address:?}, debug {debug}");
        }
        let dc = check_test_dc("127.0.0.1:1234", &self::key(), true)
            .expect("valid")
            .expect("set");
        assert_eq!(dc.auth_key, [0xab; 256]);
        assert!(
            !format!("{dc:?}").contains("ab, ab"),
            "the key is not printed"
        );
    }

    #[test]
    fn missing_credentials_say_where_to_get_them() {
        let config = TelegramConfig::default();
        let error = config
            .credentials()
            .expect_err("no credentials by default")
            .to_string();
        assert!(
            error.contains("https://my.telegram.org") && error.contains("network.api_id"),
            "{error}"
        );
        let config = TelegramConfig {
            api_id: 12345,
            api_hash: " 0123abcd ".to_owned(),
            ..TelegramConfig::default()
        };
        let credentials = config.credentials().expect("set");
        assert_eq!(
            (credentials.id, credentials.hash.as_str()),
            (12345, "0123abcd")
        );
    }

    #[test]
    fn defaults_validate_round_trip_and_hide_secrets() {
        let config = TelegramConfig {
            api_hash: "secret-hash".to_owned(),
            ..TelegramConfig::default()
        };
        assert_eq!(config.validate(), Ok(None));
        let yaml = serde_saphyr::to_string(&config).expect("serialize");
        let back: TelegramConfig = serde_saphyr::from_str(&yaml).expect("parse");
        assert_eq!(back, config);
        assert!(!format!("{config:?}").contains("secret-hash"));
        let parsed: Result<TelegramConfig, _> = serde_saphyr::from_str("api_idd: 1\n");
        assert!(parsed.is_err(), "unknown keys are refused");
    }
}
