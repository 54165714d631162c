//! The `network:` section of the WhatsApp bridge's config ([`WhatsappConfig`]) and its checks.
//!
//! `websocket_url` points the client at a WhatsApp simulator. It exists only for the tests:
//! a release build refuses a non-empty value ([`check_websocket_url`]), and a build with the
//! test-only certificate switch (feature `danger-test-simulator`) refuses everything but a
//! loopback simulator, so neither can reach the real WhatsApp by accident.

use serde::{Deserialize, Serialize};

/// The WhatsApp Web version announced when `app_version` is left empty.
pub const DEFAULT_APP_VERSION: (u32, u32, u32) = (2, 3000, 1_026_131_876);

/// The WhatsApp bridge's `network:` config section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WhatsappConfig {
    /// The WhatsApp Web version the bridge announces, `2.3000.x`; `fetch` asks
    /// web.whatsapp.com for the current one at each connect.
    pub app_version: String,
    /// The name of the linked device, shown in the phone's list of linked devices.
    pub device_name: String,
    /// Warn the user in their management room when their phone has not been seen for this
    /// many days (WhatsApp unlinks companions after about 14); 0 never warns. Not acted on
    /// yet (stage 2 of the bridge watches the phone's activity).
    pub phone_offline_warning_days: u32,
    /// What to do when the phone unlinks the bridge (or WhatsApp logs the device out):
    /// `keep` the login, shown as logged out until the user links again, or `delete` it.
    pub on_phone_logout: PhoneLogout,
    /// Test only: the WebSocket URL of a WhatsApp simulator (`ws://127.0.0.1:PORT/ws/chat`).
    /// Must be empty in release builds.
    pub websocket_url: String,
}

/// What happens to a login that the phone unlinked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhoneLogout {
    /// Keep the login (its portals stay), marked logged out.
    Keep,
    /// Delete the login and its device keys.
    Delete,
}

impl Default for WhatsappConfig {
    fn default() -> Self {
        let (a, b, c) = DEFAULT_APP_VERSION;
        Self {
            app_version: format!("{a}.{b}.{c}"),
            device_name: "Matrix bridge".to_owned(),
            phone_offline_warning_days: 12,
            on_phone_logout: PhoneLogout::Keep,
            websocket_url: String::new(),
        }
    }
}

/// Errors in the `network:` section.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The app version is neither `fetch` nor three numbers.
    #[error("network.app_version {0:?} is not `fetch` or a version like 2.3000.1026131876")]
    BadAppVersion(String),
    /// The simulator URL was set in a release build.
    #[error("network.websocket_url is a test-only setting and must be empty in release builds")]
    WebsocketUrlInRelease,
    /// The simulator URL is not a ws:// URL on a loopback address.
    #[error("network.websocket_url {0:?} is not a ws:// URL on 127.0.0.1")]
    BadWebsocketUrl(String),
    /// The build accepts uncertified servers but no simulator is configured.
    #[error("this is a test build that must only talk to a WhatsApp simulator: set network.websocket_url")]
    SimulatorBuildWithoutSimulator,
}

impl WhatsappConfig {
    /// The app version to announce, `None` to fetch it.
    pub fn app_version(&self) -> Result<Option<(u32, u32, u32)>, ConfigError> {
        let text = self.app_version.trim();
        if text.eq_ignore_ascii_case("fetch") {
            return Ok(None);
        }
        let bad = || ConfigError::BadAppVersion(self.app_version.clone());
        let parts: Vec<u32> = text
            .split('.')
            .map(|p| p.parse().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        match parts[..] {
            [a, b, c] => Ok(Some((a, b, c))),
            _ => Err(bad()),
        }
    }

    /// Checks the section for this build; returns the simulator URL to use, if any.
    pub fn validate(&self) -> Result<Option<String>, ConfigError> {
        self.app_version()?;
        check_websocket_url(
            &self.websocket_url,
            cfg!(debug_assertions),
            crate::TEST_SIMULATOR_BUILD,
        )
    }
}

/// The guard for the simulator URL, as a pure function of the value, whether this is a
/// debug build, and whether the build skips the certificate check (`simulator_build`):
/// a value is refused in release builds and must be a loopback `ws://` URL otherwise; a
/// build that skips the certificate check must have one.
pub fn check_websocket_url(
    value: &str,
    debug_build: bool,
    simulator_build: bool,
) -> Result<Option<String>, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return if simulator_build {
            Err(ConfigError::SimulatorBuildWithoutSimulator)
        } else {
            Ok(None)
        };
    }
    if !debug_build {
        return Err(ConfigError::WebsocketUrlInRelease);
    }
    let loopback = ["ws://127.0.0.1:", "ws://localhost:", "ws://[::1]:"];
    if !loopback.iter().any(|prefix| value.starts_with(prefix)) {
        return Err(ConfigError::BadWebsocketUrl(value.to_owned()));
    }
    Ok(Some(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_versions_parse_or_are_refused() {
        let cases = [
            ("2.3000.1026131876", Ok(Some((2, 3000, 1_026_131_876)))),
            ("fetch", Ok(None)),
            ("2.3000", Err(())),
            ("2.x.1", Err(())),
        ];
        for (text, want) in cases {
            let config = WhatsappConfig {
                app_version: text.to_owned(),
                ..WhatsappConfig::default()
            };
            assert_eq!(config.app_version().map_err(|_| ()), want, "{text}");
        }
        assert_eq!(
            WhatsappConfig::default().app_version(),
            Ok(Some(DEFAULT_APP_VERSION))
        );
    }

    #[test]
    fn the_simulator_url_is_refused_in_release_and_required_by_simulator_builds() {
        let sim = "ws://127.0.0.1:4000/ws/chat";
        let cases = [
            ("", true, false, Ok(None)),
            ("", false, false, Ok(None)),
            (sim, true, false, Ok(Some(sim.to_owned()))),
            (sim, true, true, Ok(Some(sim.to_owned()))),
            (sim, false, false, Err(ConfigError::WebsocketUrlInRelease)),
            (sim, false, true, Err(ConfigError::WebsocketUrlInRelease)),
            (
                "",
                true,
                true,
                Err(ConfigError::SimulatorBuildWithoutSimulator),
            ),
            (
                "wss://web.whatsapp.com/ws/chat",
                true,
                true,
                Err(ConfigError::BadWebsocketUrl(
                    "wss://web.whatsapp.com/ws/chat".to_owned(),
                )),
            ),
        ];
        for (value, debug, simulator, want) in cases {
            assert_eq!(
                check_websocket_url(value, debug, simulator),
                want,
                "{value:?} debug={debug} simulator={simulator}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let error =
            serde_json::from_str::<WhatsappConfig>(r#"{"app_versoin": "x"}"#).expect_err("typo");
        assert!(error.to_string().contains("app_versoin"), "{error}");
    }
}
