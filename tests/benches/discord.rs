//! Benchmark of the Discord bridge against the Discord simulator and a real Synapse: the
//! same figures as the `bridge` bench (memory, latency and throughput both ways, CPU per
//! message beside Synapse's), with the real `bridge-discord` process (serenity over the
//! simulated gateway and REST API). Prints figures; asserts only that every message
//! arrives once.
//!
//! `cargo bench -p bridge-tests --bench discord` (release build): the Discord crate refuses a
//! simulator URL when built without debug assertions, so the workspace's `bench` profile turns
//! them on for that one crate (everything else is a plain release build).
//! `BENCH_MESSAGES` sets how many messages go each way (default 300).

#![allow(missing_docs)]

#[allow(dead_code, unused_imports)]
#[path = "../tests/e2e/env.rs"]
mod env;

mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use bridge_discord::DiscordConfig;
use bridge_tests::discord_sim::DiscordSim;
use bridge_tests::procstat::rss_kib;
use bridge_tests::{random_localpart, wait_until, TestUser};
use common::ProcessBridge;
use env::{body, replied_to, WAIT};
use serde_json::Value;

const BOT: &str = "@discordbot:test.localhost";

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}

fn is_bot_notice(event: &Value) -> bool {
    event["sender"] == BOT && event["content"]["msgtype"] == "m.notice"
}

/// Sends `text` to the management room and returns the bot's reply to it.
async fn command(user: &TestUser, room: &str, text: &str) -> anyhow::Result<String> {
    let sent = user.send_text(room, text).await?;
    let reply = user.wait_for_event(room, |e| is_bot_notice(e) && replied_to(e) == Some(sent.as_str()), WAIT).await?;
    Ok(body(&reply).to_owned())
}

async fn run() -> anyhow::Result<()> {
    let n = common::messages_each_way();
    let sim = DiscordSim::start().await?;
    DiscordConfig { api_base_url: sim.url(), ..DiscordConfig::default() }.validate().context(
        "this build of bridge-discord refuses the simulator: the bench profile must keep \
         debug assertions on for bridge-discord ([profile.bench.package.bridge-discord] in Cargo.toml)",
    )?;
    let (bot, token) = sim.add_bot("Bridge Bot");
    let alice = sim.add_user("alice", Some("Alice Liddell"));
    let guild = sim.add_guild("Bench", &[alice, bot]);
    let general = sim.add_channel(guild, "general", None);

    let bin = Path::new(env!("CARGO_BIN_EXE_bridge-discord-e2e"));
    let bridge = ProcessBridge::start(bin, 29334, &[], &[("DISCORD_BRIDGE__NETWORK__API_BASE_URL", &sim.url())]).await?;
    let result = measure(&sim, &bridge, n, &token, alice, guild, general).await;
    if result.is_err() {
        eprintln!("bridge log:\n{}", bridge.log_tail(60));
    }
    sim.stop();
    result
}

async fn measure(sim: &DiscordSim, bridge: &ProcessBridge, n: usize, token: &str, alice: u64, guild: u64, general: u64) -> anyhow::Result<()> {
    let pids = bridge.pids()?;
    let user = bridge.synapse.register_user(&random_localpart("alice"), false).await?;
    let management = user.create_dm(BOT).await?;
    user.wait_for_membership(&management, BOT, "join", WAIT).await?;
    let asked = command(&user, &management, "login token").await?;
    anyhow::ensure!(asked.contains("token"), "{asked}");
    user.send_text(&management, token).await?;
    user.wait_for_event(&management, |e| is_bot_notice(e) && body(e).contains("Bridge Bot"), WAIT).await?;
    wait_until(WAIT, "the gateway session", || async { Ok((sim.gateway_sessions() == 1).then_some(())) }).await?;
    let answer = command(&user, &management, &format!("bridgeguild {guild}")).await?;
    anyhow::ensure!(answer.contains("#general"), "{answer}");
    let room = user.wait_for_bridged_room(&format!("discord:///{general}"), WAIT).await?;
    sim.push_message(general, alice, "warm-up");
    let warm_up = user.wait_for_event(&room, |e| body(e) == "warm-up", WAIT).await?;
    let direct = common::Direct::new(&bridge.synapse.url(), &bridge.dir.path().join("registration.yaml"), warm_up["sender"].as_str().unwrap_or_default())?;
    let plain_room = user.create_room(serde_json::json!({ "name": "no bridge here" })).await?;
    let (idle_rss, _) = rss_kib(pids.bridge)?;
    common::header("bridge-discord (serenity)", "the Discord simulator", n);

    // Discord → Matrix: bursts from a guild member in one channel, each beside the same
    // burst sent by the member's ghost straight to Synapse.
    let mut push = async |text: String| {
        sim.push_message(general, alice, &text);
        Ok(())
    };
    common::compare_network_to_matrix("Discord → Matrix", &user, &room, n, pids, &direct, &mut push).await?;

    // Matrix → Discord: the logged-in user's messages, which the bot posts to the channel;
    // the baseline is the same messages into a room without a bridge.
    let path = format!("/channels/{general}/messages");
    let mut received = async || {
        Ok(sim
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == path)
            .filter_map(|r| r.body["content"].as_str().map(str::to_owned))
            .collect())
    };
    common::compare_matrix_to_network("Matrix → Discord", &user, &room, &plain_room, n, pids, Duration::from_millis(2), &mut received).await?;
    common::report_memory(pids, idle_rss)
}
