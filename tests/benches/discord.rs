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
    user.wait_for_event(&room, |e| body(e) == "warm-up", WAIT).await?;
    let (idle_rss, _) = rss_kib(pids.bridge)?;
    common::header("bridge-discord (serenity)", "the Discord simulator", n);

    // Discord → Matrix: a burst of messages from a guild member in one channel.
    let run = common::network_to_matrix(&user, &room, n, pids, async |i| {
        sim.push_message(general, alice, &format!("in {i}"));
        Ok(())
    })
    .await?;
    common::report("Discord → Matrix", run);

    // Matrix → Discord: the logged-in user's messages, which the bot posts to the channel.
    let path = format!("/channels/{general}/messages");
    let run = common::matrix_to_network(&user, &room, n, pids, Duration::from_millis(2), async || {
        Ok(sim
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == path)
            .filter_map(|r| r.body["content"].as_str().map(str::to_owned))
            .collect())
    })
    .await?;
    common::report("Matrix → Discord", run);
    common::report_memory(pids, idle_rss)
}
