//! What the benchmarks share: a bridge binary started as a process beside its own Synapse,
//! the two measured runs (a burst from the network into one portal, and messages sent one
//! after another from Matrix), and the printed figures. Each bench includes this module
//! (`mod common;`) and `tests/e2e/env.rs` as `mod env`.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bridge_tests::procstat::{cpu_ms, rss_kib};
use bridge_tests::{free_port, wait_until, BridgeCommand, BridgeProcess, Synapse, SynapseOptions, TestUser};

use crate::env::{body, edit, tail};

/// How long one measured run may take before the bench gives up.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// How many messages go each way: `BENCH_MESSAGES` (10 to 900), 300 by default.
pub fn messages_each_way() -> usize {
    std::env::var("BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(300).clamp(10, 900)
}

/// Milliseconds since the Unix epoch (the clock Synapse stamps `origin_server_ts` with).
pub fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or_default()
}

/// Percentile `p` (0–100) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// The processes whose CPU time is set side by side.
#[derive(Clone, Copy)]
pub struct Pids {
    pub bridge: u32,
    pub synapse: u32,
}

struct Costs {
    bridge_cpu: f64,
    synapse_cpu: f64,
}

fn costs(pids: Pids) -> anyhow::Result<Costs> {
    Ok(Costs { bridge_cpu: cpu_ms(pids.bridge)?, synapse_cpu: cpu_ms(pids.synapse)? })
}

/// One measured run: N messages one way.
pub struct Run {
    n: usize,
    elapsed: Duration,
    latencies: Vec<f64>,
    before: Costs,
    after: Costs,
}

/// The first line of the output: which bridge, against what, how many messages.
pub fn header(bridge: &str, counterpart: &str, n: usize) {
    println!("{bridge} against {counterpart} and Synapse, {n} messages each way");
}

/// Prints a run's throughput, latency percentiles and CPU per message.
pub fn report(direction: &str, run: Run) {
    let Run { n, elapsed, mut latencies, before, after } = run;
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

/// Prints the bridge's memory (`idle_kib`: its RSS with one login and one portal, before
/// the runs) and Synapse's for scale.
pub fn report_memory(pids: Pids, idle_kib: u64) -> anyhow::Result<()> {
    let (rss, peak) = rss_kib(pids.bridge)?;
    println!(
        "bridge memory (RSS): {:.1} MiB with one login and one portal, {:.1} MiB after the runs, {:.1} MiB peak",
        idle_kib as f64 / 1024.0,
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let (synapse_rss, _) = rss_kib(pids.synapse)?;
    println!("homeserver memory: {:.1} MiB (Synapse, for scale)", synapse_rss as f64 / 1024.0);
    Ok(())
}

/// The index `i` of a benchmark message `"{prefix}{i}"`, if `text` is one below `n`.
fn index(text: &str, prefix: &str, n: usize) -> Option<usize> {
    text.strip_prefix(prefix)?.parse::<usize>().ok().filter(|i| *i < n)
}

/// Requires that every one of the `n` messages was seen exactly once.
fn exactly_once(counts: &[usize], direction: &str) -> anyhow::Result<()> {
    let missing = counts.iter().filter(|c| **c == 0).count();
    let repeated = counts.iter().filter(|c| **c > 1).count();
    anyhow::ensure!(
        missing == 0 && repeated == 0,
        "{direction}: {missing} of {} messages missing, {repeated} arrived more than once",
        counts.len()
    );
    Ok(())
}

/// Network → Matrix: `push(i)` injects message `"in {i}"` on the network side, as fast as
/// it can, while the Matrix user follows the room with `/sync` long-polls; the run lasts
/// until all `n` are there. Latency is from injecting a message to the user's `/sync`
/// bringing it (the event's `origin_server_ts` is no use: bridges backdate events to the
/// network's timestamp). Every message must be in the room once.
pub async fn network_to_matrix<F>(user: &TestUser, room: &str, n: usize, pids: Pids, mut push: F) -> anyhow::Result<Run>
where
    F: AsyncFnMut(usize) -> anyhow::Result<()>,
{
    let filter = serde_json::json!({
        "presence": { "not_types": ["*"] },
        "account_data": { "not_types": ["*"] },
        "room": {
            "rooms": [room],
            "timeline": { "limit": 1000 },
            "state": { "lazy_load_members": true },
            "ephemeral": { "not_types": ["*"] },
            "account_data": { "not_types": ["*"] },
        },
    });
    let filter = percent_encoding::utf8_percent_encode(&filter.to_string(), percent_encoding::NON_ALPHANUMERIC).to_string();
    let sync = async |since: &str| {
        let since = percent_encoding::utf8_percent_encode(since, percent_encoding::NON_ALPHANUMERIC);
        user.call(reqwest::Method::GET, &format!("/_matrix/client/v3/sync?timeout=5000&filter={filter}&since={since}"), None).await
    };
    let first = user.call(reqwest::Method::GET, &format!("/_matrix/client/v3/sync?timeout=0&filter={filter}"), None).await?;
    let mut since = first["next_batch"].as_str().unwrap_or_default().to_owned();

    let before = costs(pids)?;
    let start = Instant::now();
    let mut pushed = vec![f64::NAN; n];
    let mut seen = vec![f64::NAN; n];
    let inject = async {
        for (i, at) in pushed.iter_mut().enumerate() {
            *at = now_ms();
            push(i).await?;
        }
        anyhow::Ok(())
    };
    let follow = async {
        let mut found = 0;
        while found < n {
            anyhow::ensure!(start.elapsed() < RUN_LIMIT, "{found} of {n} messages reached Matrix within {RUN_LIMIT:?}");
            let response = sync(&since).await?;
            let at = now_ms();
            since = response["next_batch"].as_str().unwrap_or(&since).to_owned();
            let timeline = &response["rooms"]["join"][room]["timeline"];
            for event in timeline["events"].as_array().into_iter().flatten() {
                if let Some(i) = index(body(event), "in ", n) {
                    if seen[i].is_nan() {
                        seen[i] = at;
                        found += 1;
                    }
                }
            }
        }
        anyhow::Ok(())
    };
    tokio::try_join!(inject, follow)?;
    let elapsed = start.elapsed();
    let after = costs(pids)?;
    let limit = u32::try_from(n + 20).unwrap_or(1000);
    let mut counts = vec![0; n];
    for i in user.messages(room, limit).await?.iter().filter_map(|e| index(body(e), "in ", n)) {
        counts[i] += 1;
    }
    exactly_once(&counts, "network → Matrix")?;
    let latencies = seen.iter().zip(&pushed).map(|(s, t)| s - t).collect();
    Ok(Run { n, elapsed, latencies, before, after })
}

/// Matrix → network: the user sends `"out {i}"` to `room` one after another (each `PUT`
/// waits for Synapse), as a person would, while `received()` (the texts the network side
/// has received so far) is polled every `poll`. Latency is from the `PUT` until the text is
/// first seen there. Every message must arrive once.
pub async fn matrix_to_network<F>(user: &TestUser, room: &str, n: usize, pids: Pids, poll: Duration, mut received: F) -> anyhow::Result<Run>
where
    F: AsyncFnMut() -> anyhow::Result<Vec<String>>,
{
    let before = costs(pids)?;
    let start = Instant::now();
    let mut sent = vec![f64::NAN; n];
    let mut seen = vec![f64::NAN; n];
    let send = async {
        for (i, at) in sent.iter_mut().enumerate() {
            *at = now_ms();
            user.send_text(room, &format!("out {i}")).await?;
        }
        anyhow::Ok(())
    };
    let watch = async {
        let mut found = 0;
        while found < n {
            anyhow::ensure!(start.elapsed() < RUN_LIMIT, "{found} of {n} messages reached the network within {RUN_LIMIT:?}");
            let texts = received().await?;
            let at = now_ms();
            for i in texts.iter().filter_map(|t| index(t, "out ", n)) {
                if seen[i].is_nan() {
                    seen[i] = at;
                    found += 1;
                }
            }
            tokio::time::sleep(poll).await;
        }
        anyhow::Ok(())
    };
    tokio::try_join!(send, watch)?;
    let elapsed = start.elapsed();
    let after = costs(pids)?;
    let mut counts = vec![0; n];
    for i in received().await?.iter().filter_map(|t| index(t, "out ", n)) {
        counts[i] += 1;
    }
    exactly_once(&counts, "Matrix → network")?;
    let latencies = seen.iter().zip(&sent).map(|(s, t)| s - t).collect();
    Ok(Run { n, elapsed, latencies, before, after })
}

/// A network bridge's binary run as a process, as its admin would: config and registration
/// generated by its own CLI, its own Synapse, production logging (`RUST_LOG=info`).
pub struct ProcessBridge {
    /// Config, registration, database and log.
    pub dir: tempfile::TempDir,
    pub synapse: Synapse,
    pub process: BridgeProcess,
}

impl ProcessBridge {
    /// `default_port` is the port in the generated config; `edits` are further `(from, to)`
    /// replacements in it; `env` is the process's extra environment.
    pub async fn start(bin: &Path, default_port: u16, edits: &[(String, String)], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("bridge-bench-").tempdir()?;
        let config = dir.path().join("config.yaml");
        let port = free_port()?;
        cli(bin, dir.path(), "generate-config").await?;
        let standard = [
            ("domain: \"example.com\"".to_owned(), "domain: \"test.localhost\"".to_owned()),
            ("\"example.com\": user".to_owned(), "\"test.localhost\": user".to_owned()),
            (format!("address: \"http://127.0.0.1:{default_port}/\""), format!("address: \"http://127.0.0.1:{port}/\"")),
            (format!("port: {default_port}"), format!("port: {port}")),
        ];
        for (from, to) in standard.iter().chain(edits) {
            edit(&config, from, to)?;
        }
        cli(bin, dir.path(), "generate-registration").await?;
        let synapse =
            Synapse::start(SynapseOptions { appservice_files: vec![dir.path().join("registration.yaml")], ..SynapseOptions::default() }).await?;
        edit(&config, "address: \"http://127.0.0.1:8008/\"", &format!("address: \"{}/\"", synapse.url().trim_end_matches('/')))?;
        let mut command = BridgeCommand::new(bin)
            .args(["-c", "config.yaml", "-r", "registration.yaml", "run"])
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .name("bridge");
        for (key, value) in env {
            command = command.env(key, value);
        }
        let mut process = command.spawn()?;
        let log_path = dir.path().join("bridge.log");
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        wait_until(Duration::from_secs(30), "the bridge to run", async || {
            if let Some(status) = process.try_exit_status()? {
                anyhow::bail!("the bridge exited with {status}:\n{}", tail(&log(), 30));
            }
            Ok(log().contains("bridge is running").then_some(()))
        })
        .await?;
        Ok(Self { dir, synapse, process })
    }

    /// The bridge's and Synapse's process IDs.
    pub fn pids(&self) -> anyhow::Result<Pids> {
        let synapse = self.synapse.pid().ok_or_else(|| anyhow::anyhow!("no Synapse process"))?;
        Ok(Pids { bridge: self.process.pid(), synapse })
    }

    /// The end of the bridge's log, for errors.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&std::fs::read_to_string(self.dir.path().join("bridge.log")).unwrap_or_default(), lines)
    }
}

async fn cli(bin: &Path, dir: &Path, subcommand: &str) -> anyhow::Result<()> {
    let output =
        BridgeCommand::new(bin).args(["-c", "config.yaml", "-r", "registration.yaml", subcommand]).current_dir(dir).name("cli").output().await?;
    anyhow::ensure!(output.status.success(), "{subcommand} failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(())
}
