//! Refuses to build the test-only certificate switch into a release binary.

include!("src/build_guard.rs");

fn main() {
    println!("cargo::rerun-if-changed=src/build_guard.rs");
    let enabled = std::env::var_os("CARGO_FEATURE_DANGER_TEST_SIMULATOR").is_some();
    let debug_assertions = std::env::var_os("CARGO_CFG_DEBUG_ASSERTIONS").is_some();
    if let Err(why) = check_simulator_feature(enabled, debug_assertions) {
        panic!("{why}");
    }
}
