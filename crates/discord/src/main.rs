//! `bridge-discord`: the Discord bridge binary. Everything lives in the library
//! ([`bridge_discord`]); the core owns the command line.

fn main() -> std::process::ExitCode {
    bridge_core::cli::main::<bridge_discord::DiscordNetwork>()
}
