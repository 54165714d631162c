//! The WhatsApp bridge: links as a companion device of the user's phone (multi-device) with
//! whatsapp-rust, as mautrix-whatsapp does with whatsmeow.
//!
//! - [`connector`]: [`WhatsappNetwork`] and [`WhatsappConnector`], what the core sees.
//! - [`login`]: the `qr` and `phone` login flows.
//! - [`client`]: [`client::WhatsappClient`], one login's linked device.
//! - [`handle_remote`] / [`handle_matrix`]: the two directions.
//! - [`device_store`]: whatsapp-rust's storage traits over the bridge's database.
//! - [`convert`], [`ids`]: pure conversions; [`config`]: the `network:` section; [`media`]:
//!   the HTTP client.

pub mod client;
pub mod commands;
pub mod config;
pub mod connector;
pub mod convert;
pub mod device_store;
pub mod handle_matrix;
pub mod handle_remote;
pub mod ids;
pub mod login;
pub mod media;

/// The release guard of the feature `danger-test-simulator` (also run by `build.rs`).
#[path = "build_guard.rs"]
pub mod build_guard;

pub use config::WhatsappConfig;
pub use connector::{WhatsappConnector, WhatsappNetwork};

/// Whether this build skips the check of the WhatsApp server's certificate chain (the
/// feature `danger-test-simulator`, for the test suite's simulator only). Such a build
/// talks to nothing but a loopback simulator ([`config::check_websocket_url`]).
pub const TEST_SIMULATOR_BUILD: bool = cfg!(feature = "danger-test-simulator");

#[cfg(all(feature = "danger-test-simulator", not(debug_assertions)))]
compile_error!("the feature `danger-test-simulator` of bridge-whatsapp is for the test suite only and never builds without debug assertions");

#[cfg(test)]
mod tests {
    use super::build_guard::check_simulator_feature;

    #[test]
    fn the_certificate_switch_never_builds_without_debug_assertions() {
        assert!(
            check_simulator_feature(true, false).is_err(),
            "a release build with the switch must fail"
        );
        assert!(check_simulator_feature(true, true).is_ok());
        assert!(check_simulator_feature(false, false).is_ok());
        assert!(check_simulator_feature(false, true).is_ok());
    }
}
