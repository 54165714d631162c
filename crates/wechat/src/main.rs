//! `bridge-wechat`: the WeChat bridge binary.

fn main() -> std::process::ExitCode {
    bridge_core::cli::main::<bridge_wechat::WechatNetwork>()
}
