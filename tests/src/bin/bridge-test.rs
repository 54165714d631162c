//! `bridge-test`: a bridge binary over the test network ([`bridge_tests::testnet`]), used by
//! the end-to-end suite to exercise the core against Synapse. Its `network:` config section
//! is `server: "http://127.0.0.1:PORT"`, the URL of a running `TestNet`.

fn main() -> std::process::ExitCode {
    bridge_core::cli::main::<bridge_tests::testnet::TestNetwork>()
}
