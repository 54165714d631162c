//! `bridge-whatsapp`: the WhatsApp bridge binary.

fn main() -> std::process::ExitCode {
    bridge_core::cli::main::<bridge_whatsapp::WhatsappNetwork>()
}
