//! Benchmark of the WeChat bridge against the npm Wechaty puppet service (PuppetServer over
//! PuppetMock) and a real Synapse: the same figures as the `bridge` bench (memory, latency
//! and throughput both ways, CPU per message beside Synapse's), with the real
//! `bridge-wechat` process talking gRPC to the puppet service. Prints figures; asserts only
//! that every message arrives once.
//!
//! `cargo bench -p bridge-tests --bench wechat` (release build). `BENCH_MESSAGES` sets how
//! many messages go each way (default 300).
//!
//! The bridge paces what it sends to WeChat on purpose (`network.pacing`: a second or more
//! between two messages of an account). The bench turns pacing off (interval and jitter 0,
//! no daily warning) to measure the bridge itself; the incoming direction is never paced.

#![allow(missing_docs)]

#[allow(dead_code, unused_imports)]
#[path = "../tests/e2e/env.rs"]
mod env;

mod common;

use std::path::Path;
use std::time::Duration;

use bridge_tests::procstat::rss_kib;
use bridge_tests::wechaty::{ScanStatus, To, WechatyPuppet};
use bridge_tests::{random_localpart, wait_until, TestUser};
use common::ProcessBridge;
use env::{body, WAIT};

const BOT: &str = "@wechatbot:test.localhost";

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let n = common::messages_each_way();
    let puppet = WechatyPuppet::start().await?;
    let edits: Vec<(String, String)> = [
        ("endpoint: http://127.0.0.1:8788", format!("endpoint: {}", puppet.endpoint())),
        ("token: \"\"", format!("token: \"{}\"", puppet.token())),
        ("min_interval_ms: 1000", "min_interval_ms: 0".to_owned()),
        ("jitter_ms: 1000", "jitter_ms: 0".to_owned()),
        ("daily_warning: 300", "daily_warning: 0".to_owned()),
    ]
    .into_iter()
    .map(|(from, to)| (from.to_owned(), to))
    .collect();
    let bin = Path::new(env!("CARGO_BIN_EXE_bridge-wechat-e2e"));
    let bridge = ProcessBridge::start(bin, 29318, &edits, &[]).await?;
    let result = measure(&puppet, &bridge, n).await;
    if result.is_err() {
        eprintln!("bridge log:\n{}\npuppet log:\n{}", bridge.log_tail(60), puppet.log_tail(30));
    }
    result
}

/// Polls `ping` in the management room until the login is listed as connected.
async fn wait_connected(user: &TestUser, management: &str) -> anyhow::Result<()> {
    wait_until(WAIT, "the login to be connected", async || {
        let sent = user.send_text(management, "ping").await?;
        let answer = user
            .wait_for_event(management, |e| e["sender"] == BOT && body(e).contains("The bridge is running") && e["event_id"] != sent.as_str(), WAIT)
            .await?;
        Ok(body(&answer).contains(": connected").then_some(()))
    })
    .await
}

async fn measure(puppet: &WechatyPuppet, bridge: &ProcessBridge, n: usize) -> anyhow::Result<()> {
    let pids = bridge.pids()?;
    let me = puppet.create_contact("测试用户", None).await?;
    let user = bridge.synapse.register_user(&random_localpart("alice"), false).await?;
    let management = user.create_dm(BOT).await?;
    user.wait_for_membership(&management, BOT, "join", WAIT).await?;
    user.send_text(&management, "login qr").await?;
    puppet.wait_streaming(WAIT).await?;
    puppet.scan("https://login.weixin.qq.com/l/bench", ScanStatus::Waiting).await?;
    user.wait_for_event(&management, |e| e["sender"] == BOT && e["content"]["msgtype"] == "m.image", WAIT).await?;
    puppet.login(&me).await?;
    user.wait_for_event(&management, |e| e["sender"] == BOT && body(e).contains("Logged in"), WAIT).await?;
    puppet.wait_streaming(WAIT).await?;
    wait_connected(&user, &management).await?;

    let zhang = puppet.create_contact("张三", None).await?;
    puppet.send_text(&zhang, To::Me, "warm-up", &[]).await?;
    let room = user.wait_for_bridged_room(&format!("wechat://{me}/{zhang}"), WAIT).await?;
    let warm_up = user.wait_for_event(&room, |e| body(e) == "warm-up", WAIT).await?;
    let direct = common::Direct::new(&bridge.synapse.url(), &bridge.dir.path().join("registration.yaml"), warm_up["sender"].as_str().unwrap_or_default())?;
    let plain_room = user.create_room(serde_json::json!({ "name": "no bridge here" })).await?;
    let (idle_rss, _) = rss_kib(pids.bridge)?;
    common::header("bridge-wechat (gRPC to a Wechaty puppet service)", "the npm Wechaty puppet service (PuppetMock)", n);
    println!("outgoing pacing off for the bench (network.pacing.min_interval_ms and jitter_ms 0); incoming is never paced");

    // WeChat → Matrix: bursts of direct messages from one contact, each beside the same
    // burst sent by the contact's ghost straight to Synapse.
    let mut push = async |text: String| puppet.send_text(&zhang, To::Me, &text, &[]).await.map(drop);
    common::compare_network_to_matrix("WeChat → Matrix", &user, &room, n, pids, &direct, &mut push).await?;

    // Matrix → WeChat: the user answers in the DM portal, one message after another (the
    // puppet service is asked over HTTP what it received, so it is polled less often); the
    // baseline is the same messages into a room without a bridge.
    let mut received = async || Ok(puppet.sent().await?.into_iter().filter(|s| s.conversation_id == zhang).filter_map(|s| s.text).collect());
    common::compare_matrix_to_network("Matrix → WeChat", &user, &room, &plain_room, n, pids, Duration::from_millis(5), &mut received).await?;
    common::report_memory(pids, idle_rss)
}
