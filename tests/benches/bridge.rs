//! Benchmark of the bridging engine against a real Synapse: memory of the bridge process,
//! latency and throughput of messages both ways, and the bridge's CPU cost per message set
//! beside the homeserver's own cost for the same messages, each against the direct baseline
//! (the same messages sent straight to Synapse) in the same run. Prints figures; asserts
//! nothing about speed, only that every message arrives once.
//!
//! `cargo bench -p bridge-tests --bench bridge` (release build). `BENCH_MESSAGES` sets
//! how many messages go each way (default 300), `BENCH_PAIRS` how many bridged/direct pairs
//! (default 3). `-- --postgres` stores on PostgreSQL (`BRIDGE_TEST_POSTGRES_URL`, default
//! the local `test` database's server) instead of SQLite. `-- --seed N` measures instead
//! a bridge whose store holds N portals, 10N ghosts and 100N messages: RSS and start-up
//! after a login connects and after a restart, and the history requests catch-up made.
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

#[path = "common/seed.rs"]
mod seed;

use std::time::{Duration, Instant};

use bridge_tests::procstat::rss_kib;
use bridge_tests::testnet::{Action, ChatSpec, MessageSpec, Sent, TestNet};
use bridge_tests::TestUser;
use common::{Direct, Pids};
use env::{body, Options, TestBridge, WAIT};

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}

/// The value after `flag` on the command line.
fn arg(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1).cloned())
}

async fn run() -> anyhow::Result<()> {
    let postgres = std::env::args().any(|a| a == "--postgres");
    let seed: Option<usize> = arg("--seed").map(|v| v.parse()).transpose()?;
    let database = if postgres { Some(seed::PostgresDb::create().await?) } else { None };
    let net = TestNet::start().await?;
    let mut edits = vec![("server: \"\"".to_owned(), format!("server: \"{}\"", net.url()))];
    if let Some(db) = &database {
        edits.push(("uri: \"sqlite:test.db\"".to_owned(), format!("uri: \"{}\"", db.url())));
    }
    let mut bridge = TestBridge::start(Options { config_edits: edits, ..Options::default() }).await?;
    // Restart with production-like logging (the test harness logs at debug).
    bridge.kill()?;
    bridge.run(&[("RUST_LOG", "info")]).await?;
    let user = bridge.user("alice").await?;
    let management = bridge.management_room(&user).await?;
    net.add_bot_account("token-me", "me", "Me Myself");
    bridge.command(&user, &management, "login token").await?;
    user.send_text(&management, "token-me").await?;
    user.wait_for_event(&management, |e| bridge.is_bot_notice(e) && body(e).contains("Logged in"), WAIT).await?;
    let storage = if postgres { "PostgreSQL" } else { "SQLite" };

    let result = match seed {
        Some(portals) => seeded(&net, &mut bridge, portals, storage, database.as_ref()).await,
        None => measure(&net, &bridge, &user, storage).await,
    };
    if result.is_err() {
        eprintln!("bridge log:\n{}", env::tail(&bridge.log(), 60));
    }
    bridge.kill()?;
    net.shutdown().await;
    if let Some(db) = database {
        db.drop().await?;
    }
    result
}

fn pids(bridge: &TestBridge) -> anyhow::Result<Pids> {
    let bridge_pid = bridge.process.as_ref().map(|p| p.pid()).ok_or_else(|| anyhow::anyhow!("no bridge process"))?;
    let synapse_pid = bridge.synapse.pid().ok_or_else(|| anyhow::anyhow!("no Synapse process"))?;
    Ok(Pids { bridge: bridge_pid, synapse: synapse_pid })
}

async fn measure(net: &TestNet, bridge: &TestBridge, user: &TestUser, storage: &str) -> anyhow::Result<()> {
    let n = common::messages_each_way();
    let pids = pids(bridge)?;
    net.add_user("bob", "Bob");
    net.add_chat(ChatSpec::group("g1", "Bench", &["me", "bob"]));
    net.push_message("g1", "bob", MessageSpec::text("warm-up"))?;
    // The login's space is invited first: find the portal by its m.bridge state.
    let room = user.wait_for_bridged_room("test:///g1", WAIT).await?;
    let warm_up = user.wait_for_event(&room, |e| body(e) == "warm-up", WAIT).await?;
    let ghost = warm_up["sender"].as_str().unwrap_or_default().to_owned();
    let direct = Direct::new(&bridge.synapse.url(), &bridge.dir.path().join("registration.yaml"), &ghost)?;
    let plain_room = user.create_room(serde_json::json!({ "name": "no bridge here" })).await?;
    let (idle_rss, _) = rss_kib(pids.bridge)?;
    common::header(&format!("bridge-test (the core over the in-test network), {storage}"), "the in-test network", n);

    // Network → Matrix: bursts from the remote user, each beside the same burst sent by the
    // ghost straight to Synapse.
    let mut push = async |text: String| net.push_message("g1", "bob", MessageSpec::text(&text)).map(drop);
    common::compare_network_to_matrix("network → Matrix", user, &room, n, pids, &direct, &mut push).await?;

    // Matrix → network: the user sends one message after another, as a person would; the
    // baseline is the same messages into a room without a bridge.
    let mut received = async || {
        Ok(net
            .actions()
            .into_iter()
            .filter_map(|action| match action {
                Action::Send { content: Sent::Text { body, .. }, .. } => Some(body),
                _ => None,
            })
            .collect())
    };
    common::compare_matrix_to_network("Matrix → network", user, &room, &plain_room, n, pids, Duration::from_millis(2), &mut received).await?;
    common::report_memory(pids, idle_rss)
}

/// Seeds the store with `portals` portals (each chat also on the network, its latest message
/// bridged), `10 × portals` ghosts and `100 × portals` messages, then starts the bridge
/// with its login and restarts it, printing RSS, start-up time and catch-up requests.
async fn seeded(net: &TestNet, bridge: &mut TestBridge, portals: usize, storage: &str, database: Option<&seed::PostgresDb>) -> anyhow::Result<()> {
    bridge.kill()?;
    net.add_user("bob", "Bob");
    let mut latest = Vec::with_capacity(portals);
    for i in 0..portals {
        let chat = format!("s{i}");
        net.add_chat(ChatSpec::group(&chat, &chat, &["me", "bob"]));
        latest.push(net.push_message(&chat, "bob", MessageSpec::text("latest"))?);
    }
    net.drop_pending("me");
    let url = match database {
        Some(db) => db.url().to_owned(),
        None => format!("sqlite:{}", bridge.dir.path().join("test.db").display()),
    };
    let started = Instant::now();
    seed::seed_store(&url, &latest).await?;
    println!(
        "bridge-test, {storage}: store seeded with {portals} portals, {} ghosts, {} messages in {:.1} s",
        portals * 10,
        portals * 100,
        started.elapsed().as_secs_f64()
    );
    let reads_before: usize = net.history_reads().values().sum();
    for (i, what) in ["the login connects (first start)", "a restart with that login"].iter().enumerate() {
        let started = Instant::now();
        let synced = bridge.log().matches("login synced").count();
        bridge.run(&[("RUST_LOG", "info")]).await?;
        let ready = started.elapsed();
        bridge.wait_log_count("login synced", synced + 1).await?;
        let synced_after = started.elapsed();
        let pid = pids(bridge)?.bridge;
        let (rss, peak) = rss_kib(pid)?;
        let cpu = bridge_tests::procstat::cpu_ms(pid)?;
        println!(
            "after {what}: RSS {:.1} MiB (peak {:.1}), ready in {} ms, login synced after {} ms, CPU {:.0} ms",
            rss as f64 / 1024.0,
            peak as f64 / 1024.0,
            ready.as_millis(),
            synced_after.as_millis(),
            cpu
        );
        if i == 0 {
            bridge.kill()?;
        }
    }
    let reads: usize = net.history_reads().values().sum::<usize>() - reads_before;
    println!("history requests by catch-up over both starts: {reads} (chats with news: 0)");
    Ok(())
}
