//! The appservice transaction parser: any body is either parsed or refused with an error
//! code, never a panic; what it accepts keeps every event's text intact.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match bridge_core::appservice::server::parse_transaction(data) {
        Ok(parsed) => {
            for (id, text) in &parsed.events {
                assert!(id.starts_with('$'));
                let value: serde_json::Value = serde_json::from_str(text).expect("stored events are JSON");
                assert_eq!(value["event_id"].as_str(), Some(id.as_str()));
            }
        }
        Err((code, _)) => assert!(code == "M_NOT_JSON" || code == "M_BAD_JSON"),
    }
});
