//! Compiles the Wechaty puppet protocol (`proto/`) into Rust with protox (pure Rust, no
//! `protoc` needed) and tonic-prost-build (client only).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = protox::compile(["wechaty/puppet.proto"], ["proto"])?;
    tonic_prost_build::configure().build_server(false).compile_fds(files)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
