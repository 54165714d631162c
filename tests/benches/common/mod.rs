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

impl Run {
    fn throughput(&self) -> f64 {
        self.n as f64 / self.elapsed.as_secs_f64()
    }

    /// The bridge's CPU time as a share of Synapse's over the run.
    fn bridge_share(&self) -> f64 {
        (self.after.bridge_cpu - self.before.bridge_cpu) / (self.after.synapse_cpu - self.before.synapse_cpu)
    }

    fn latency(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort_by(f64::total_cmp);
        percentile(&sorted, p)
    }

    /// One line: throughput, latency p50/p95, CPU per message of each process.
    fn summary(&self) -> String {
        let per = |a: f64, b: f64| (b - a) / self.n as f64;
        format!(
            "{:.0} msg/s, p50 {:.1} / p95 {:.1} ms, CPU ms/msg bridge {:.2} synapse {:.2}",
            self.throughput(),
            self.latency(50.0),
            self.latency(95.0),
            per(self.before.bridge_cpu, self.after.bridge_cpu),
            per(self.before.synapse_cpu, self.after.synapse_cpu)
        )
    }
}

/// The first line of the output: which bridge, against what, how many messages.
pub fn header(bridge: &str, counterpart: &str, n: usize) {
    println!("{bridge} against {counterpart} and Synapse, {n} messages each way");
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

/// Follows one room with `/sync` long-polls (a filter for its timeline only), as a client
/// would, and notes when each message body is first seen.
pub struct Follower<'a> {
    user: &'a TestUser,
    room: String,
    filter: String,
    since: String,
}

impl<'a> Follower<'a> {
    /// Starts following `room` from now.
    pub async fn new(user: &'a TestUser, room: &str) -> anyhow::Result<Self> {
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
        let first = user.call(reqwest::Method::GET, &format!("/_matrix/client/v3/sync?timeout=0&filter={filter}"), None).await?;
        let since = first["next_batch"].as_str().unwrap_or_default().to_owned();
        Ok(Self { user, room: room.to_owned(), filter, since })
    }

    /// The bodies of the room's new messages, waiting up to 5 s for some, and when they came.
    pub async fn next(&mut self) -> anyhow::Result<(Vec<String>, f64)> {
        let since = percent_encoding::utf8_percent_encode(&self.since, percent_encoding::NON_ALPHANUMERIC);
        let path = format!("/_matrix/client/v3/sync?timeout=5000&filter={}&since={since}", self.filter);
        let response = self.user.call(reqwest::Method::GET, &path, None).await?;
        let at = now_ms();
        self.since = response["next_batch"].as_str().unwrap_or(&self.since).to_owned();
        let timeline = &response["rooms"]["join"][&self.room]["timeline"];
        let bodies = timeline["events"].as_array().into_iter().flatten().map(|e| body(e).to_owned()).collect();
        Ok((bodies, at))
    }

    /// Waits until a message with `text` arrives; returns when.
    pub async fn wait_for(&mut self, text: &str) -> anyhow::Result<f64> {
        let start = Instant::now();
        loop {
            anyhow::ensure!(start.elapsed() < RUN_LIMIT, "{text:?} did not reach Matrix within {RUN_LIMIT:?}");
            let (bodies, at) = self.next().await?;
            if bodies.iter().any(|b| b == text) {
                return Ok(at);
            }
        }
    }
}

/// The messages a ghost sends straight to Synapse (the appservice's token with identity
/// assertion): the direct baseline the bridged runs are set against.
pub struct Direct {
    ghost: TestUser,
}

impl Direct {
    /// `registration`: the bridge's registration file (for its `as_token`); `ghost`: the
    /// ghost of the remote sender, already in the room.
    pub fn new(synapse_url: &str, registration: &Path, ghost: &str) -> anyhow::Result<Self> {
        let as_token = crate::env::yaml_value(registration, "as_token")?;
        Ok(Self { ghost: TestUser::new(synapse_url, ghost, as_token)?.impersonate(ghost) })
    }

    /// Sends `text` to `room` as the ghost (waits for Synapse's answer).
    pub async fn send(&self, room: &str, text: &str) -> anyhow::Result<()> {
        self.ghost.send_text(room, text).await.map(drop)
    }
}

/// Network → Matrix: `push(text)` injects message `"{prefix}{i}"` for each `i` below `n`
/// as fast as it can, while the Matrix user follows the room with `/sync` long-polls; the
/// run lasts until all `n` are there. Latency is from injecting a message to the user's
/// `/sync` bringing it (the event's `origin_server_ts` is no use: bridges backdate events
/// to the network's timestamp). Every message must be in the room once.
pub async fn network_to_matrix<F>(user: &TestUser, room: &str, n: usize, pids: Pids, prefix: &str, push: &mut F) -> anyhow::Result<Run>
where
    F: AsyncFnMut(String) -> anyhow::Result<()>,
{
    let mut follower = Follower::new(user, room).await?;
    let before = costs(pids)?;
    let start = Instant::now();
    let mut pushed = vec![f64::NAN; n];
    let mut seen = vec![f64::NAN; n];
    let inject = async {
        for (i, at) in pushed.iter_mut().enumerate() {
            *at = now_ms();
            push(format!("{prefix}{i}")).await?;
        }
        anyhow::Ok(())
    };
    let follow = async {
        let mut found = 0;
        while found < n {
            anyhow::ensure!(start.elapsed() < RUN_LIMIT, "{found} of {n} messages reached Matrix within {RUN_LIMIT:?}");
            let (bodies, at) = follower.next().await?;
            for i in bodies.iter().filter_map(|b| index(b, prefix, n)) {
                if seen[i].is_nan() {
                    seen[i] = at;
                    found += 1;
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
    for i in user.messages(room, limit).await?.iter().filter_map(|e| index(body(e), prefix, n)) {
        counts[i] += 1;
    }
    exactly_once(&counts, "network → Matrix")?;
    let latencies = seen.iter().zip(&pushed).map(|(s, t)| s - t).collect();
    Ok(Run { n, elapsed, latencies, before, after })
}

/// How many bridged/direct pairs each comparison runs: `BENCH_PAIRS` (1 to 9), 3 by default.
pub fn pairs() -> usize {
    std::env::var("BENCH_PAIRS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).clamp(1, 9)
}

/// Network → Matrix against the direct baseline: `pairs()` bursts of `n` through the bridge
/// (`push`), each followed by the same burst PUT by the ghost straight to Synapse; then
/// `n.min(50)` single messages, one at a time, alternating bridged and direct. Prints each
/// run, the median bridged/direct throughput, the bridge's CPU as a share of Synapse's and
/// the latency a message gains by going through the bridge.
pub async fn compare_network_to_matrix<F>(label: &str, user: &TestUser, room: &str, n: usize, pids: Pids, direct: &Direct, push: &mut F) -> anyhow::Result<()>
where
    F: AsyncFnMut(String) -> anyhow::Result<()>,
{
    let mut ratios = Vec::new();
    let mut shares = Vec::new();
    for pair in 0..pairs() {
        let bridged = network_to_matrix(user, room, n, pids, &format!("in{pair} "), push).await?;
        let mut send_direct = async |text: String| direct.send(room, &text).await;
        let baseline = network_to_matrix(user, room, n, pids, &format!("direct{pair} "), &mut send_direct).await?;
        println!("{label} pair {}: bridged {}; direct {}", pair + 1, bridged.summary(), baseline.summary());
        ratios.push(bridged.throughput() / baseline.throughput());
        shares.push(bridged.bridge_share());
    }
    let singles = n.min(50);
    let mut follower = Follower::new(user, room).await?;
    let (mut through_bridge, mut straight) = (Vec::new(), Vec::new());
    for i in 0..singles {
        let text = format!("one {i}");
        let at = now_ms();
        push(text.clone()).await?;
        through_bridge.push(follower.wait_for(&text).await? - at);
        let text = format!("direct one {i}");
        let at = now_ms();
        direct.send(room, &text).await?;
        straight.push(follower.wait_for(&text).await? - at);
    }
    through_bridge.sort_by(f64::total_cmp);
    straight.sort_by(f64::total_cmp);
    println!(
        "{label}: bridged/direct throughput {:.2} (median of {}), bridge CPU {:.1} % of Synapse's (median)",
        median(&mut ratios),
        ratios.len(),
        100.0 * median(&mut shares)
    );
    println!(
        "{label}: one message at a time ({singles}): bridged p50 {:.1} / p95 {:.1} ms, direct p50 {:.1} / p95 {:.1} ms, added p50 {:.1} / p95 {:.1} ms",
        percentile(&through_bridge, 50.0),
        percentile(&through_bridge, 95.0),
        percentile(&straight, 50.0),
        percentile(&straight, 95.0),
        percentile(&through_bridge, 50.0) - percentile(&straight, 50.0),
        percentile(&through_bridge, 95.0) - percentile(&straight, 95.0),
    );
    Ok(())
}

/// Matrix → network against the direct baseline: `pairs()` runs of `n` messages from the
/// user into the portal (until the network has them), each followed by the same messages
/// into `plain_room`, a room no bridge is in (until Synapse accepted them). Prints each
/// run, the median throughput ratio, the bridge's CPU share and the added latency (each
/// message is sent when the previous one was accepted, so these are single messages).
pub async fn compare_matrix_to_network<F>(
    label: &str,
    user: &TestUser,
    room: &str,
    plain_room: &str,
    n: usize,
    pids: Pids,
    poll: Duration,
    received: &mut F,
) -> anyhow::Result<()>
where
    F: AsyncFnMut() -> anyhow::Result<Vec<String>>,
{
    let (mut ratios, mut shares, mut added50, mut added95) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for pair in 0..pairs() {
        let bridged = matrix_to_network(user, room, n, pids, &format!("out{pair} "), poll, received).await?;
        let baseline = sends_alone(user, plain_room, n, pids, &format!("plain{pair} ")).await?;
        println!("{label} pair {}: bridged {}; direct {}", pair + 1, bridged.summary(), baseline.summary());
        ratios.push(bridged.throughput() / baseline.throughput());
        shares.push(bridged.bridge_share());
        added50.push(bridged.latency(50.0) - baseline.latency(50.0));
        added95.push(bridged.latency(95.0) - baseline.latency(95.0));
    }
    println!(
        "{label}: bridged/direct throughput {:.2} (median of {}), bridge CPU {:.1} % of Synapse's, added latency p50 {:.1} / p95 {:.1} ms (medians)",
        median(&mut ratios),
        ratios.len(),
        100.0 * median(&mut shares),
        median(&mut added50),
        median(&mut added95)
    );
    Ok(())
}

/// The user's messages into a room without a bridge, one after another: the time Synapse
/// alone takes to accept them.
async fn sends_alone(user: &TestUser, room: &str, n: usize, pids: Pids, prefix: &str) -> anyhow::Result<Run> {
    let before = costs(pids)?;
    let start = Instant::now();
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let at = now_ms();
        user.send_text(room, &format!("{prefix}{i}")).await?;
        latencies.push(now_ms() - at);
    }
    let elapsed = start.elapsed();
    let after = costs(pids)?;
    Ok(Run { n, elapsed, latencies, before, after })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    percentile(values, 50.0)
}

/// Matrix → network: the user sends `"{prefix}{i}"` to `room` one after another (each `PUT`
/// waits for Synapse), as a person would, while `received()` (the texts the network side
/// has received so far) is polled every `poll`. Latency is from the `PUT` until the text is
/// first seen there. Every message must arrive once.
pub async fn matrix_to_network<F>(user: &TestUser, room: &str, n: usize, pids: Pids, prefix: &str, poll: Duration, received: &mut F) -> anyhow::Result<Run>
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
            user.send_text(room, &format!("{prefix}{i}")).await?;
        }
        anyhow::Ok(())
    };
    let watch = async {
        let mut found = 0;
        while found < n {
            anyhow::ensure!(start.elapsed() < RUN_LIMIT, "{found} of {n} messages reached the network within {RUN_LIMIT:?}");
            let texts = received().await?;
            let at = now_ms();
            for i in texts.iter().filter_map(|t| index(t, prefix, n)) {
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
    for i in received().await?.iter().filter_map(|t| index(t, prefix, n)) {
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
