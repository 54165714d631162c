//! The real Wechaty puppet service for the WeChat tests: [`WechatyPuppet`] runs
//! `tests/wechaty/server.mjs` (the npm `wechaty-puppet-service` PuppetServer wrapping
//! `wechaty-puppet-mock`, installed from the committed lockfile) and wraps its control API,
//! through which a test scripts contacts, rooms, the QR scan, the login and incoming
//! messages, and reads what the bridge sent.
//!
//! Needs `node` and `npm` on the PATH. `scripts/test` installs the npm packages before the
//! tests run; [`WechatyPuppet::start`] installs them itself (once, under a lock shared by all
//! test processes) when they are missing or older than the lockfile.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::process::ManagedChild;
use crate::{free_port, wait_until};

/// How long the puppet service gets to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one `npm ci` may take before another test process may take over its lock.
const INSTALL_LOCK_STALE: Duration = Duration::from_secs(600);

/// wechaty-puppet's QR scan statuses, for [`WechatyPuppet::scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanStatus {
    /// Waiting for a scan.
    Waiting = 2,
    /// Scanned, not yet confirmed.
    Scanned = 3,
    /// Confirmed on the phone.
    Confirmed = 4,
    /// The code expired.
    Timeout = 5,
}

/// Where an incoming message is sent.
#[derive(Debug, Clone, Copy)]
pub enum To<'a> {
    /// A DM to the logged-in account.
    Me,
    /// A room, by id.
    Room(&'a str),
}

/// What the control API reports about the puppet.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// Whether the gRPC server is up.
    pub grpc: bool,
    /// Whether an account is logged in.
    pub logged_in: bool,
    /// The logged-in contact.
    pub self_id: Option<String>,
    /// Whether a client has the event stream open.
    pub streaming: bool,
}

/// A message the bridge sent through the puppet service.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SentByBridge {
    /// The id the puppet gave it.
    pub id: String,
    /// The contact or room it went to.
    pub conversation_id: String,
    /// The text, for texts.
    pub text: Option<String>,
    /// The mentioned contacts.
    #[serde(default)]
    pub mention_ids: Vec<String>,
    /// The file, for files.
    pub file: Option<SentFile>,
}

/// A file the bridge sent.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct SentFile {
    /// Its name.
    pub name: String,
    /// Its content, base64.
    pub base64: String,
    /// Its size in bytes.
    pub size: u64,
    /// The kind of file box it arrived in (file-box's `FileBoxType`: 1 inline base64,
    /// 6 the older chunk stream, 7 a UUID after `Upload`).
    #[serde(rename = "boxType")]
    pub box_type: u8,
}

/// A running puppet service; dropping it stops the node process.
pub struct WechatyPuppet {
    _child: ManagedChild,
    grpc_port: u16,
    control: String,
    token: String,
    http: reqwest::Client,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl WechatyPuppet {
    /// Installs the npm packages if needed, starts the service on free ports with a random
    /// token and waits until it answers.
    pub async fn start() -> anyhow::Result<Self> {
        let package = package_dir();
        tokio::task::spawn_blocking(move || ensure_installed(&package)).await??;
        let mut last_error = None;
        for _ in 0..3 {
            match Self::spawn().await {
                Ok(puppet) => return Ok(puppet),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("puppet service did not start")))
    }

    async fn spawn() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("wechaty-").tempdir()?;
        let grpc_port = free_port()?;
        let control_port = free_port()?;
        let token = format!("puppet_test_{}", crate::random_lowercase(16));
        let log_path = dir.path().join("wechaty.log");
        let mut command = Command::new("node");
        command
            .arg(package_dir().join("server.mjs"))
            .args(["--grpc-port", &grpc_port.to_string(), "--control-port", &control_port.to_string()])
            .args(["--token", &token])
            .current_dir(package_dir())
            .env("WECHATY_LOG", "warn");
        let mut child = ManagedChild::spawn(command, "wechaty", &log_path)?;
        // No pooled connections: Node closes idle keep-alive sockets after 5 s, and a request
        // sent on one just as Node closes it fails with "connection reset".
        let puppet_http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()?;
        let control = format!("http://127.0.0.1:{control_port}");
        let ready = wait_until(START_TIMEOUT, "the puppet service", async || {
            if let Some(status) = child.try_status()? {
                anyhow::bail!("the puppet service exited with {status}");
            }
            let response = puppet_http.get(format!("{control}/health")).send().await?;
            Ok(response.status().is_success().then_some(()))
        })
        .await;
        if let Err(error) = ready {
            return Err(error.context(crate::process::tail_file(&log_path, 30)));
        }
        Ok(Self { _child: child, grpc_port, control, token, http: puppet_http, log_path, _dir: dir })
    }

    /// The gRPC endpoint for the bridge's config (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// The service token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The last lines of the service's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        crate::process::tail_file(&self.log_path, lines)
    }

    async fn call<T: serde::de::DeserializeOwned>(&self, method: reqwest::Method, path: &str, body: Value) -> anyhow::Result<T> {
        let response = self
            .http
            .request(method, format!("{}{path}", self.control))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("puppet control {path}"))?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status.is_success(), "puppet control {path} answered {status}: {text}");
        serde_json::from_str(&text).with_context(|| format!("puppet control {path}: {text}"))
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, body).await
    }

    fn id(value: &Value) -> anyhow::Result<String> {
        value["id"].as_str().map(str::to_owned).context("no id in the answer")
    }

    /// The puppet's state.
    pub async fn health(&self) -> anyhow::Result<Health> {
        self.call(reqwest::Method::GET, "/health", Value::Null).await
    }

    /// Waits until a client has the event stream open (events emitted before are lost).
    pub async fn wait_streaming(&self, timeout: Duration) -> anyhow::Result<()> {
        wait_until(timeout, "a client on the event stream", async || Ok(self.health().await?.streaming.then_some(()))).await
    }

    /// Creates a contact named `name` (their nickname) with an optional remark; returns its id.
    pub async fn create_contact(&self, name: &str, alias: Option<&str>) -> anyhow::Result<String> {
        Self::id(&self.post("/contacts", json!({ "name": name, "alias": alias })).await?)
    }

    /// Creates a contact with a WeChat ID (`weixin`) and an avatar image (name, bytes); returns its id.
    pub async fn create_contact_with_avatar(&self, name: &str, weixin: &str, avatar: (&str, &[u8])) -> anyhow::Result<String> {
        use base64::Engine as _;
        let base64 = base64::engine::general_purpose::STANDARD.encode(avatar.1);
        let body = json!({ "name": name, "weixin": weixin, "avatarFile": { "name": avatar.0, "base64": base64 } });
        Self::id(&self.post("/contacts", body).await?)
    }

    /// Sets the avatar image of a contact or room.
    pub async fn set_avatar(&self, id: &str, name: &str, data: &[u8]) -> anyhow::Result<()> {
        use base64::Engine as _;
        let base64 = base64::engine::general_purpose::STANDARD.encode(data);
        self.post("/avatars", json!({ "id": id, "name": name, "base64": base64 })).await.map(drop)
    }

    /// Makes the avatar of a contact or room a URL file box (the bridge must download it).
    pub async fn set_avatar_url(&self, id: &str, name: &str, url: &str) -> anyhow::Result<()> {
        self.post("/avatars", json!({ "id": id, "name": name, "url": url })).await.map(drop)
    }

    /// Creates a room with a topic, members and members' room aliases; returns its id.
    pub async fn create_room(&self, topic: &str, members: &[&str], aliases: &[(&str, &str)]) -> anyhow::Result<String> {
        let aliases: serde_json::Map<String, Value> =
            aliases.iter().map(|(id, alias)| ((*id).to_owned(), Value::from(*alias))).collect();
        Self::id(&self.post("/rooms", json!({ "topic": topic, "members": members, "aliases": aliases })).await?)
    }

    /// Emits a SCAN event.
    pub async fn scan(&self, qrcode: &str, status: ScanStatus) -> anyhow::Result<()> {
        self.post("/scan", json!({ "qrcode": qrcode, "status": status as i32 })).await.map(drop)
    }

    /// Logs the puppet in as the contact `id` (emits LOGIN).
    pub async fn login(&self, id: &str) -> anyhow::Result<()> {
        self.post("/login", json!({ "id": id })).await.map(drop)
    }

    /// Logs the account out as if from the phone (emits LOGOUT).
    pub async fn logout(&self) -> anyhow::Result<()> {
        self.post("/logout", Value::Null).await.map(drop)
    }

    /// Makes the puppet reset itself as its watchdog would (stop, then start): clients see
    /// LOGOUT with "puppet stop()". With `relogin`, the puppet then logs the same account
    /// in again (LOGIN), as a puppet that keeps its session does.
    pub async fn reset_puppet(&self, relogin: bool) -> anyhow::Result<()> {
        self.post("/puppet/reset", json!({ "relogin": relogin })).await.map(drop)
    }

    /// Writes a RESET event (`EVENT_TYPE_RESET`) on the event stream the service holds open.
    /// The npm PuppetServer never sends one itself (it drops the puppet's `reset` event);
    /// the control script writes the frame on the server's stream call. Fails if no client
    /// has the stream open.
    pub async fn send_reset_event(&self, data: &str) -> anyhow::Result<()> {
        let answer = self.post("/events/reset", json!({ "data": data })).await?;
        anyhow::ensure!(answer["written"] == true, "no open event stream to write RESET on: {answer}");
        Ok(())
    }

    /// Sends a text from the contact `from`; returns the message id.
    pub async fn send_text(&self, from: &str, to: To<'_>, text: &str, mentions: &[&str]) -> anyhow::Result<String> {
        let mut body = json!({ "from": from, "text": text, "mentions": mentions });
        if let To::Room(room) = to {
            body["room"] = room.into();
        }
        Self::id(&self.post("/messages", body).await?)
    }

    /// Sends a file from `from` (an image, video or voice message if its name says so:
    /// .png/.jpg/.gif, .mp4/.mov, .mp3/.silk/.amr/.ogg); returns the message id.
    pub async fn send_file(&self, from: &str, to: To<'_>, name: &str, data: &[u8]) -> anyhow::Result<String> {
        use base64::Engine as _;
        let base64 = base64::engine::general_purpose::STANDARD.encode(data);
        let mut body = json!({ "from": from, "file": { "name": name, "base64": base64 } });
        if let To::Room(room) = to {
            body["room"] = room.into();
        }
        Self::id(&self.post("/messages", body).await?)
    }

    /// Sends a file as a message of wechaty-puppet message type `kind` (2 voice, 5 emoticon,
    /// 15 video, …) from `from`; returns the message id.
    pub async fn send_file_typed(&self, from: &str, to: To<'_>, name: &str, data: &[u8], kind: i32) -> anyhow::Result<String> {
        use base64::Engine as _;
        let base64 = base64::engine::general_purpose::STANDARD.encode(data);
        let mut body = json!({ "from": from, "type": kind, "file": { "name": name, "base64": base64 } });
        if let To::Room(room) = to {
            body["room"] = room.into();
        }
        Self::id(&self.post("/messages", body).await?)
    }

    /// Sends a card message from `from`: `kind` is `url`, `miniProgram`, `contact` or
    /// `location`, `payload` the card (wechaty-puppet's payload shape; a contact id for
    /// `contact`); returns the message id.
    pub async fn send_card(&self, from: &str, to: To<'_>, kind: &str, payload: Value) -> anyhow::Result<String> {
        let mut body = json!({ "from": from, "card": { "kind": kind, "payload": payload } });
        if let To::Room(room) = to {
            body["room"] = room.into();
        }
        Self::id(&self.post("/messages", body).await?)
    }

    /// Sends a message of wechaty-puppet message type `kind` (a number, such as 11 for a
    /// transfer) with `text` from `from`; returns the message id.
    pub async fn send_typed(&self, from: &str, to: To<'_>, kind: i32, text: &str) -> anyhow::Result<String> {
        let mut body = json!({ "from": from, "type": kind, "text": text });
        if let To::Room(room) = to {
            body["room"] = room.into();
        }
        Self::id(&self.post("/messages", body).await?)
    }

    /// Makes the sender of message `id` recall it (a Recalled message); returns the notice's id.
    pub async fn recall(&self, id: &str) -> anyhow::Result<String> {
        Self::id(&self.post("/recall", json!({ "id": id })).await?)
    }

    /// Changes a room's topic, by the contact `by`.
    pub async fn set_topic(&self, room: &str, topic: &str, by: &str) -> anyhow::Result<()> {
        self.post("/rooms/topic", json!({ "room": room, "topic": topic, "by": by })).await.map(drop)
    }

    /// What the bridge sent so far, in order.
    pub async fn sent(&self) -> anyhow::Result<Vec<SentByBridge>> {
        self.call(reqwest::Method::GET, "/sent", Value::Null).await
    }

    /// The ids of messages the bridge recalled.
    pub async fn recalled(&self) -> anyhow::Result<Vec<String>> {
        self.call(reqwest::Method::GET, "/recalled", Value::Null).await
    }

    /// Leaves pings unanswered (`true`) as a hung service would, or answers them again.
    pub async fn freeze(&self, frozen: bool) -> anyhow::Result<()> {
        self.post("/freeze", json!({ "frozen": frozen })).await.map(drop)
    }

    /// Stops the gRPC server (the puppet keeps its login), as if the service went away.
    pub async fn stop_server(&self) -> anyhow::Result<()> {
        self.post("/server/stop", Value::Null).await.map(drop)
    }

    /// Starts the gRPC server again on the same port.
    pub async fn start_server(&self) -> anyhow::Result<()> {
        self.post("/server/start", Value::Null).await.map(drop)
    }
}

/// `tests/wechaty`.
fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("wechaty")
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Whether `node_modules` was installed from the current lockfile.
fn installed(package: &Path) -> bool {
    match (modified(&package.join("node_modules/.package-lock.json")), modified(&package.join("package-lock.json"))) {
        (Some(installed), Some(lock)) => installed >= lock,
        _ => false,
    }
}

/// Runs `npm ci` in `package` unless it is installed, under a lock file so that parallel
/// test processes install once.
fn ensure_installed(package: &Path) -> anyhow::Result<()> {
    if installed(package) {
        return Ok(());
    }
    let lock = package.join(".npm-install.lock");
    let deadline = std::time::Instant::now() + INSTALL_LOCK_STALE;
    loop {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&lock) {
            Ok(_) => break,
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                if installed(package) {
                    return Ok(());
                }
                let stale = modified(&lock).and_then(|m| m.elapsed().ok()).is_some_and(|age| age > INSTALL_LOCK_STALE);
                if stale || std::time::Instant::now() > deadline {
                    let _ = std::fs::remove_file(&lock);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(error) => return Err(error).with_context(|| format!("create {}", lock.display())),
        }
    }
    let result = if installed(package) {
        Ok(())
    } else {
        let output = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(package)
            .output()
            .context("run npm ci (are node and npm installed?)");
        match output {
            Ok(output) if output.status.success() => Ok(()),
            Ok(output) => Err(anyhow::anyhow!(
                "npm ci in {} failed: {}\n{}",
                package.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )),
            Err(error) => Err(error),
        }
    };
    let _ = std::fs::remove_file(&lock);
    result
}
