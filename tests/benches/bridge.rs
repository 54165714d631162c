//! Benchmark of the bridging engine against a real Synapse: memory of the bridge process,
//! latency and throughput of messages both ways, and the bridge's CPU cost per message set
//! beside the homeserver's own cost for the same messages. Prints figures; asserts nothing
//! about speed.
//!
//! `cargo bench -p bridge-tests --bench bridge` (release build). `BENCH_MESSAGES` sets
//! how many messages go each way (default 300).
//!
//! The bridge is `bridge-test`, the core over the in-test network, so the figures are the
//! core's own: a network crate adds its client library's cost on top.

#![allow(missing_docs)]

#[allow(dead_code, unused_imports)]
#[path = "../tests/e2e/env.rs"]
mod env;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bridge_tests::procstat::{cpu_ms, rss_kib};
use bridge_tests::testnet::{Action, ChatSpec, MessageSpec, Sent, TestNet};
use env::{body, Options, TestBridge, WAIT};

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or_default()
}

/// Percentile `p` (0–100) of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

struct Costs {
    bridge_cpu: f64,
    synapse_cpu: f64,
}

fn costs(bridge: u32, synapse: u32) -> anyhow::Result<Costs> {
    Ok(Costs { bridge_cpu: cpu_ms(bridge)?, synapse_cpu: cpu_ms(synapse)? })
}

fn report(direction: &str, n: usize, elapsed: Duration, mut latencies: Vec<f64>, before: &Costs, after: &Costs) {
    latencies.sort_by(f64::total_cmp);
    let per = |a: f64, b: f64| (b - a) / n as f64;
    let bridge = per(before.bridge_cpu, after.bridge_cpu);
    let synapse = per(before.synapse_cpu, after.synapse_cpu);
    println!("{direction}: {n} messages in {:.2} s = {:.0} msg/s", elapsed.as_secs_f64(), n as f64 / elapsed.as_secs_f64());
    println!(
        "  latency ms: p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}",
        percentile(&latencies, 50.0),
        percentile(&latencies, 95.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 100.0)
    );
    println!(
        "  CPU ms per message: bridge {bridge:.2}  synapse {synapse:.2}  (bridge = {:.0}% of the homeserver's cost)",
        100.0 * bridge / synapse
    );
}

async fn run() -> anyhow::Result<()> {
    let n: usize = std::env::var("BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(300).clamp(10, 900);
    let net = TestNet::start().await?;
    let options = Options { config_edits: vec![("server: \"\"".to_owned(), format!("server: \"{}\"", net.url()))], ..Options::default() };
    let mut bridge = TestBridge::start(options).await?;
    // Restart with production-like logging (the test harness logs at debug).
    bridge.kill()?;
    bridge.run(&[("RUST_LOG", "info")]).await?;
    let bridge_pid = bridge.process.as_ref().map(|p| p.pid()).ok_or_else(|| anyhow::anyhow!("no bridge process"))?;
    let synapse_pid = bridge.synapse.pid().ok_or_else(|| anyhow::anyhow!("no Synapse process"))?;

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

    // Network → Matrix: a burst of messages from the remote user.
    let before = costs(bridge_pid, synapse_pid)?;
    let start = Instant::now();
    let mut pushed = Vec::with_capacity(n);
    for i in 0..n {
        pushed.push(now_ms());
        net.push_message("g1", "bob", MessageSpec::text(&format!("in {i}")))?;
    }
    let limit = u32::try_from(n + 20).unwrap_or(1000);
    let events = loop {
        let events = user.messages(&room, limit).await?;
        if events.iter().any(|e| body(e) == format!("in {}", n - 1)) {
            break events;
        }
        anyhow::ensure!(start.elapsed() < Duration::from_secs(300), "the burst did not arrive within 5 minutes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let elapsed = start.elapsed();
    let after = costs(bridge_pid, synapse_pid)?;
    let latencies: Vec<f64> = events
        .iter()
        .filter_map(|e| {
            let i: usize = body(e).strip_prefix("in ")?.parse().ok()?;
            Some(e["origin_server_ts"].as_f64()? - pushed.get(i)?)
        })
        .collect();
    anyhow::ensure!(latencies.len() == n, "{} of {n} messages arrived once", latencies.len());
    println!("bridge-test (core over the test network) against Synapse, {n} messages each way");
    report("network → Matrix", n, elapsed, latencies, &before, &after);

    // Matrix → network: the user sends one message after another, as a person would.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(vec![f64::NAN; n]));
    let watcher = {
        let (net, seen) = (net.clone(), seen.clone());
        tokio::spawn(async move {
            let mut found = 0;
            while found < n {
                let actions = net.actions();
                let at = now_ms();
                {
                    let mut seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    for action in &actions {
                        if let Action::Send { content: Sent::Text { body, .. }, .. } = action {
                            if let Some(i) = body.strip_prefix("out ").and_then(|i| i.parse::<usize>().ok()).filter(|i| *i < n) {
                                if seen[i].is_nan() {
                                    seen[i] = at;
                                    found += 1;
                                }
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let before = costs(bridge_pid, synapse_pid)?;
    let start = Instant::now();
    let mut sent = Vec::with_capacity(n);
    for i in 0..n {
        sent.push(now_ms());
        user.send_text(&room, &format!("out {i}")).await?;
    }
    tokio::time::timeout(Duration::from_secs(300), watcher).await??;
    let elapsed = start.elapsed();
    let after = costs(bridge_pid, synapse_pid)?;
    let seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let latencies: Vec<f64> = seen.iter().zip(&sent).map(|(s, t)| s - t).collect();
    report("Matrix → network", n, elapsed, latencies, &before, &after);

    let (rss, peak) = rss_kib(bridge_pid)?;
    println!(
        "bridge memory (RSS): {:.1} MiB with one login and one portal, {:.1} MiB after the runs, {:.1} MiB peak",
        idle_rss as f64 / 1024.0,
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let (synapse_rss, _) = rss_kib(synapse_pid)?;
    println!("homeserver memory: {:.1} MiB (Synapse, for scale)", synapse_rss as f64 / 1024.0);
    bridge.kill()?;
    net.shutdown().await;
    Ok(())
}
