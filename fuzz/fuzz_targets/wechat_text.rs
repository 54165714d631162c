//! Matrix HTML → WeChat text: any input converts without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = bridge_wechat::convert::outgoing_text(text, Some(text), true);
    let _ = bridge_wechat::convert::escape(text);
});
