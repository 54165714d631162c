//! Benchmark of the bridging engine against a real Synapse: memory of the bridge process,
//! latency and throughput of messages both ways, and the bridge's CPU cost per message set
//! beside the homeserver's own cost for the same messages. Prints figures; asserts nothing
//! about speed, only that every message arrives once.
//!
//! `cargo bench -p bridge-tests --bench bridge` (release build). `BENCH_MESSAGES` sets
//! how many messages go each way (default 300).
//!
//! The bridge is `bridge-test`, the core over the in-test network, so the figures are the
//! core's own: a network crate adds its client library's cost on top (see the `discord`
//! and `wechat` benches).

#![allow(missing_docs)]

#[allow(dead_code, unused_imports)]
#[path = "../tests/e2e/env.rs"]
mod env;

#[allow(dead_code)]
mod common;

use std::time::Duration;

use bridge_tests::procstat::rss_kib;
use bridge_tests::testnet::{Action, ChatSpec, MessageSpec, Sent, TestNet};
use common::Pids;
use env::{body, Options, TestBridge, WAIT};

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let n = common::messages_each_way();
    let net = TestNet::start().await?;
    let options = Options { config_edits: vec![("server: \"\"".to_owned(), format!("server: \"{}\"", net.url()))], ..Options::default() };
    let mut bridge = TestBridge::start(options).await?;
    // Restart with production-like logging (the test harness logs at debug).
    bridge.kill()?;
    bridge.run(&[("RUST_LOG", "info")]).await?;
    let bridge_pid = bridge.process.as_ref().map(|p| p.pid()).ok_or_else(|| anyhow::anyhow!("no bridge process"))?;
    let synapse_pid = bridge.synapse.pid().ok_or_else(|| anyhow::anyhow!("no Synapse process"))?;
    let pids = Pids { bridge: bridge_pid, synapse: synapse_pid };

    let user = bridge.user("alice").await?;
    let management = bridge.management_room(&user).await?;
    net.add_bot_account("token-me", "me", "Me Myself");
    bridge.command(&user, &management, "login token").await?;
    user.send_text(&management, "token-me").await?;
    user.wait_for_event(&management, |e| bridge.is_bot_notice(e) && body(e).contains("Logged in"), WAIT).await?;

    net.add_user("bob", "Bob");
    net.add_chat(ChatSpec::group("g1", "Bench", &["me", "bob"]));
    net.push_message("g1", "bob", MessageSpec::text("warm-up"))?;
    // The login's space is invited first: find the portal by its m.bridge state.
    let room = user.wait_for_bridged_room("test:///g1", WAIT).await?;
    user.wait_for_event(&room, |e| body(e) == "warm-up", WAIT).await?;
    let (idle_rss, _) = rss_kib(bridge_pid)?;
    common::header("bridge-test (the core over the in-test network)", "the in-test network", n);

    // Network → Matrix: a burst of messages from the remote user.
    let run = common::network_to_matrix(&user, &room, n, pids, async |i| net.push_message("g1", "bob", MessageSpec::text(&format!("in {i}"))).map(drop)).await?;
    common::report("network → Matrix", run);

    // Matrix → network: the user sends one message after another, as a person would.
    let run = common::matrix_to_network(&user, &room, n, pids, Duration::from_millis(2), async || {
        Ok(net
            .actions()
            .into_iter()
            .filter_map(|action| match action {
                Action::Send { content: Sent::Text { body, .. }, .. } => Some(body),
                _ => None,
            })
            .collect())
    })
    .await?;
    common::report("Matrix → network", run);

    common::report_memory(pids, idle_rss)?;
    bridge.kill()?;
    net.shutdown().await;
    Ok(())
}
