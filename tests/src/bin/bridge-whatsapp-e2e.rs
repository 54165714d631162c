//! `bridge-whatsapp-e2e`: the WhatsApp bridge binary (the same `main` as `bridge-whatsapp`)
//! built inside the test package — with the simulator-only certificate switch — so the
//! end-to-end suite can run it as a process against the WhatsApp simulator.

fn main() -> std::process::ExitCode {
    bridge_core::cli::main::<bridge_whatsapp::WhatsappNetwork>()
}
