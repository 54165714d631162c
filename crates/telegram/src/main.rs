//! `bridge-telegram`: the Telegram bridge binary. Everything lives in the library
//! ([`bridge_telegram`]); the core owns the command line.

fn main() -> std::process::ExitCode {
    bridge_core::cli::main::<bridge_telegram::TelegramNetwork>()
}
