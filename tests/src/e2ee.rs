//! A Matrix user with a real Olm/Megolm device: matrix-nio (Python, its encryption is
//! vodozemac) driven over stdin/stdout by the tests (`tests/e2ee/client.py`).
//!
//! `BRIDGE_TEST_E2EE_PYTHON` names the python of the venv that has `matrix-nio[e2e]`
//! (installed by `scripts/e2ee-client-venv`, which `scripts/test` runs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use crate::process::ManagedChild;
use crate::{Synapse, TestUser};

/// How long one command may take beyond its own timeout.
const COMMAND_SLACK: Duration = Duration::from_secs(30);

/// A message as the encrypting client saw it.
#[derive(Debug, Clone)]
pub struct SeenMessage {
    /// The message's text.
    pub body: String,
    /// Its event ID.
    pub event_id: String,
    /// Whether it arrived encrypted (and was decrypted by the client).
    pub encrypted: bool,
}

/// A logged-in encrypting client; see the module documentation.
pub struct E2eeClient {
    child: ManagedChild,
    stdin: tokio::process::ChildStdin,
    stdout: BufReader<tokio::process::ChildStdout>,
    user_id: String,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

fn python() -> PathBuf {
    std::env::var_os("BRIDGE_TEST_E2EE_PYTHON").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("python3"))
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2ee").join("client.py")
}

impl E2eeClient {
    /// Starts the client and logs `user` in (with its password) on `synapse`, as a new device.
    pub async fn login(synapse: &Synapse, user: &TestUser) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("e2ee-client-").tempdir()?;
        let log_path = dir.path().join("client.log");
        let mut command = Command::new(python());
        command.arg(script()).current_dir(dir.path());
        let (child, stdin, stdout) = ManagedChild::spawn_piped(command, "e2ee-client", &log_path)?;
        let stdin = tokio::process::ChildStdin::from_std(stdin)?;
        let stdout = BufReader::new(tokio::process::ChildStdout::from_std(stdout)?);
        let mut client = Self { child, stdin, stdout, user_id: user.user_id().to_owned(), log_path, _dir: dir };
        let store = client._dir.path().join("store");
        let password = user.password().context("the user has no password")?.to_owned();
        client
            .call(
                json!({"cmd": "login", "homeserver": synapse.url(), "user": user.user_id(), "password": password, "store": store}),
                Duration::from_secs(30),
            )
            .await?;
        Ok(client)
    }

    /// The user's Matrix ID.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    async fn call(&mut self, command: Value, timeout: Duration) -> anyhow::Result<Value> {
        let what = command["cmd"].as_str().unwrap_or_default().to_owned();
        self.stdin.write_all(format!("{command}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        let mut line = String::new();
        let read = tokio::time::timeout(timeout + COMMAND_SLACK, self.stdout.read_line(&mut line)).await;
        let log = || crate::process::tail_file(&self.log_path, 30);
        match read {
            Err(_) => anyhow::bail!("the e2ee client did not answer `{what}` in time; its log:\n{}", log()),
            Ok(Err(e)) => return Err(anyhow::Error::from(e).context(format!("reading the e2ee client's answer; its log:\n{}", log()))),
            Ok(Ok(0)) => anyhow::bail!("the e2ee client exited (status {:?}); its log:\n{}", self.child.try_status().ok().flatten(), log()),
            Ok(Ok(_)) => {}
        }
        let answer: Value = serde_json::from_str(&line).with_context(|| format!("the e2ee client answered {line:?}"))?;
        if let Some(error) = answer.get("error") {
            anyhow::bail!("e2ee client `{what}`: {}", error.as_str().unwrap_or_default());
        }
        Ok(answer["ok"].clone())
    }

    /// The content of a well-formed `m.room.encrypted` event for `room` whose Megolm session
    /// key is never shared with anyone: undecryptable for every other device.
    pub async fn undecryptable_content(&mut self, room: &str, body: &str) -> anyhow::Result<Value> {
        self.call(json!({"cmd": "undecryptable_content", "room": room, "body": body}), Duration::from_secs(10)).await
    }

    /// Creates a DM with `invite` as Element X does: encrypted from the start, `is_direct`.
    pub async fn create_dm(&mut self, invite: &str) -> anyhow::Result<String> {
        let room = self.call(json!({"cmd": "create_dm", "invite": invite}), Duration::from_secs(20)).await?;
        room.as_str().map(str::to_owned).context("create_dm answered no room")
    }

    /// Waits until `user` has joined `room`.
    pub async fn wait_joined(&mut self, room: &str, user: &str, timeout: Duration) -> anyhow::Result<()> {
        self.call(json!({"cmd": "wait_joined", "room": room, "user": user, "timeout": timeout.as_secs_f64()}), timeout).await?;
        Ok(())
    }

    /// Sends a text message (encrypted when the room is); returns its event ID.
    pub async fn send(&mut self, room: &str, body: &str) -> anyhow::Result<String> {
        let id = self.call(json!({"cmd": "send", "room": room, "body": body}), Duration::from_secs(30)).await?;
        id.as_str().map(str::to_owned).context("send answered no event ID")
    }

    /// How many text messages from `sender` containing `contains` the client has seen in `room`.
    pub async fn count(&mut self, room: &str, sender: &str, contains: &str) -> anyhow::Result<u64> {
        let n = self.call(json!({"cmd": "count", "room": room, "sender": sender, "contains": contains}), Duration::from_secs(10)).await?;
        n.as_u64().context("count answered no number")
    }

    /// Waits for a text message from `sender` containing `contains`, after the previous one
    /// found in this room.
    pub async fn wait_message(&mut self, room: &str, sender: &str, contains: &str, timeout: Duration) -> anyhow::Result<SeenMessage> {
        let found = self
            .call(json!({"cmd": "wait_message", "room": room, "sender": sender, "contains": contains, "timeout": timeout.as_secs_f64()}), timeout)
            .await?;
        Ok(SeenMessage {
            body: found["body"].as_str().unwrap_or_default().to_owned(),
            event_id: found["event_id"].as_str().unwrap_or_default().to_owned(),
            encrypted: found["encrypted"].as_bool().unwrap_or(false),
        })
    }
}

/// An image as the encrypting client saw it, downloaded (and decrypted).
#[derive(Debug, Clone)]
pub struct SeenImage {
    /// The body (file name or caption).
    pub body: String,
    /// The file's bytes.
    pub data: Vec<u8>,
    /// Whether the event arrived encrypted.
    pub encrypted: bool,
    /// Whether the file itself was encrypted (`file` instead of `url`).
    pub file_encrypted: bool,
}

impl E2eeClient {
    /// Sends an image the way Element does in an encrypted room: the file encrypted and
    /// uploaded, its key in the (encrypted) event.
    pub async fn send_image(&mut self, room: &str, data: &[u8], filename: &str, mime: &str) -> anyhow::Result<String> {
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD.encode(data);
        let id = self
            .call(json!({"cmd": "send_image", "room": room, "data": data, "filename": filename, "mime": mime}), Duration::from_secs(30))
            .await?;
        id.as_str().map(str::to_owned).context("send_image answered no event ID")
    }

    /// Waits for the next image from `sender` in `room`, and downloads it.
    pub async fn wait_image(&mut self, room: &str, sender: &str, timeout: Duration) -> anyhow::Result<SeenImage> {
        use base64::Engine as _;
        let found = self.call(json!({"cmd": "wait_image", "room": room, "sender": sender, "timeout": timeout.as_secs_f64()}), timeout).await?;
        let data = base64::engine::general_purpose::STANDARD.decode(found["data"].as_str().unwrap_or_default())?;
        Ok(SeenImage {
            body: found["body"].as_str().unwrap_or_default().to_owned(),
            data,
            encrypted: found["encrypted"].as_bool().unwrap_or(false),
            file_encrypted: found["file_encrypted"].as_bool().unwrap_or(false),
        })
    }
}
