//! `bridge-telegram-e2e`: the Telegram bridge binary (the same `main` as `bridge-telegram`)
//! built inside the test package, so the end-to-end suite can run it as a process (cargo
//! only gives a test the paths of its own package's binaries).

fn main() -> std::process::ExitCode {
    bridge_core::cli::main::<bridge_telegram::TelegramNetwork>()
}
