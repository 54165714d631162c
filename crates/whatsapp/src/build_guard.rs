// The release guard of the test-only certificate switch, shared by `build.rs` (which
// refuses the build) and the crate's unit tests (which prove the rule).

/// Whether a build may enable the feature `danger-test-simulator` (which skips the check
/// of the WhatsApp server's Noise certificate chain): only with debug assertions, which
/// release builds never have.
pub fn check_simulator_feature(enabled: bool, debug_assertions: bool) -> Result<(), &'static str> {
    if enabled && !debug_assertions {
        return Err("the feature `danger-test-simulator` of bridge-whatsapp skips the WhatsApp server's certificate check \
                    and is only for the test suite: it cannot be enabled in a build without debug assertions (release)");
    }
    Ok(())
}
