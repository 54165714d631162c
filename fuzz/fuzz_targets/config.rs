//! Config loading: any text is either a valid config or an error that names where, never a
//! panic.
#![no_main]

use bridge_core::config::Config;
use bridge_core::network::Network;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let info = bridge_discord::connector::DiscordNetwork::info();
    let path = std::path::Path::new("fuzz.yaml");
    if let Err(e) = Config::<<bridge_discord::connector::DiscordNetwork as Network>::Config>::parse(path, text, &info) {
        let _ = e.to_string();
    }
});
