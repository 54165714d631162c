//! A throw-away Synapse per test: its config, its process, and its user registration.
//!
//! Each [`Synapse`] lives in its own temporary directory (config, signing key, media, log and,
//! when persistent, its SQLite database), listens for the client API only on a free
//! 127.0.0.1 port, does not federate, and has every rate limit raised out of the way.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use serde_json::{json, Map, Value};
use sha1::Sha1;

use crate::client::TestUser;
use crate::process::{tail_file, ManagedChild, TERM_GRACE};

/// How long Synapse gets to answer `/_matrix/client/versions` after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How many times a start is retried when the chosen port was taken in the meantime.
const PORT_ATTEMPTS: usize = 3;

/// The Synapse version `scripts/synapse-venv` installs; used to find its venv when
/// `BRIDGE_TEST_SYNAPSE_PYTHON` is not set.
const SYNAPSE_VERSION: &str = "1.163.2";

/// How to set up a [`Synapse`].
#[derive(Debug, Clone)]
pub struct SynapseOptions {
    /// Keep the database in a file in the Synapse's directory so [`Synapse::restart`] keeps
    /// rooms and users. Otherwise SQLite `:memory:` is used (faster; a restart starts empty).
    pub persistent: bool,
    /// Appservice registration files, as `app_service_config_files`.
    pub appservice_files: Vec<PathBuf>,
    /// The homeserver's `server_name` (default `test.localhost`).
    pub server_name: String,
    /// Top-level config keys written over the generated ones (for example
    /// `experimental_features`).
    pub extra_config: Map<String, Value>,
}

impl Default for SynapseOptions {
    fn default() -> Self {
        Self {
            persistent: false,
            appservice_files: Vec::new(),
            server_name: "test.localhost".to_owned(),
            extra_config: Map::new(),
        }
    }
}

/// A running Synapse. Dropping it stops the process (SIGTERM, then SIGKILL after a grace
/// period) and deletes its directory.
pub struct Synapse {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    log_path: PathBuf,
    options: SynapseOptions,
    port: u16,
    shared_secret: String,
    http: reqwest::Client,
    child: Option<ManagedChild>,
}

impl fmt::Debug for Synapse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No shared secret here: Debug output ends up in test logs.
        f.debug_struct("Synapse")
            .field("url", &self.url())
            .field("server_name", &self.options.server_name)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl Synapse {
    /// Writes a config into a new temporary directory, starts Synapse on a free port and waits
    /// until it answers. On failure the error carries the tail of Synapse's log.
    pub async fn start(options: SynapseOptions) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("synapse-")
            .tempdir()
            .context("create Synapse directory")?;
        write_signing_key(&dir.path().join("signing.key"))?;
        std::fs::create_dir_all(dir.path().join("media")).context("create media store")?;
        let mut synapse = Self {
            config_path: dir.path().join("homeserver.yaml"),
            log_path: dir.path().join("synapse.log"),
            dir,
            options,
            port: 0,
            shared_secret: crate::random_lowercase(32),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .context("build HTTP client")?,
            child: None,
        };
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            synapse.port = crate::free_port()?;
            synapse.write_config()?;
            match synapse.spawn_and_wait().await {
                Ok(()) => return Ok(synapse),
                Err(error) => {
                    let port_taken = synapse.log_tail(50).contains("Address already in use");
                    last_error = Some(error);
                    if !port_taken {
                        break;
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("Synapse did not start")))
    }

    /// The process ID of the running Synapse (for benchmarks that read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.pid())
    }

    /// The base URL of the client API, such as `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port Synapse listens on (kept across [`Self::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The homeserver's `server_name`.
    pub fn server_name(&self) -> &str {
        &self.options.server_name
    }

    /// The full Matrix user ID for `localpart` on this server.
    pub fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.options.server_name)
    }

    /// The directory holding the config, log, media and database.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The path of the generated `homeserver.yaml`.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The last `lines` lines of Synapse's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail_file(&self.log_path, lines)
    }

    /// Whether the Synapse process is running (not stopped, not crashed).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(ManagedChild::try_status) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_)) | Err(_)) | None => false,
        }
    }

    /// Stops Synapse (SIGTERM, SIGKILL after a grace period) and waits for it to exit. The
    /// directory stays until the `Synapse` is dropped.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.terminate(TERM_GRACE).await?;
        }
        Ok(())
    }

    /// Starts Synapse again after [`Synapse::stop`], with the same config, directory and
    /// port (does nothing if it runs).
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        self.spawn_and_wait().await
    }

    /// Stops Synapse and starts it again with the same config, directory and port. Data
    /// survives only with [`SynapseOptions::persistent`].
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.spawn_and_wait().await
    }

    /// Registers a user with the shared-secret admin API and returns it logged in (with the
    /// access token that registration hands out). The password is random; see
    /// [`TestUser::password`].
    pub async fn register_user(&self, localpart: &str, admin: bool) -> anyhow::Result<TestUser> {
        let password = crate::random_lowercase(24);
        let endpoint = format!("{}/_synapse/admin/v1/register", self.url());
        let nonce: Value = self
            .http
            .get(&endpoint)
            .send()
            .await
            .context("get registration nonce")?
            .error_for_status()
            .context("get registration nonce")?
            .json()
            .await
            .context("decode registration nonce")?;
        let nonce = nonce["nonce"]
            .as_str()
            .context("registration nonce missing")?
            .to_owned();
        let mac = registration_mac(&self.shared_secret, &nonce, localpart, &password, admin)?;
        let response = self
            .http
            .post(&endpoint)
            .json(&json!({
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac,
            }))
            .send()
            .await
            .context("register user")?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!(
                "registering {localpart} failed: {status} {}",
                error_summary(&body)
            );
        }
        let user_id = body["user_id"].as_str().context("user_id missing")?;
        let token = body["access_token"]
            .as_str()
            .context("access_token missing")?;
        let mut user = TestUser::new(self.url(), user_id, token)?;
        user.set_password(password);
        if let Some(device_id) = body["device_id"].as_str() {
            user.set_device_id(device_id);
        }
        Ok(user)
    }

    /// Logs in an existing user with a password (a new device and access token).
    pub async fn login(&self, localpart: &str, password: &str) -> anyhow::Result<TestUser> {
        let response = self
            .http
            .post(format!("{}/_matrix/client/v3/login", self.url()))
            .json(&json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": localpart},
                "password": password,
            }))
            .send()
            .await
            .context("log in")?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!(
                "logging in {localpart} failed: {status} {}",
                error_summary(&body)
            );
        }
        let user_id = body["user_id"].as_str().context("user_id missing")?;
        let token = body["access_token"]
            .as_str()
            .context("access_token missing")?;
        let mut user = TestUser::new(self.url(), user_id, token)?;
        user.set_password(password);
        if let Some(device_id) = body["device_id"].as_str() {
            user.set_device_id(device_id);
        }
        Ok(user)
    }

    /// A client for `user_id` using an existing access token, such as an appservice's
    /// `as_token` (then `user_id` is its bot; see [`TestUser::impersonate`] for ghosts).
    pub fn user_with_token(&self, user_id: &str, access_token: &str) -> anyhow::Result<TestUser> {
        TestUser::new(self.url(), user_id, access_token)
    }

    /// Spawns Synapse on the configured port and waits until it answers.
    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let python = synapse_python();
        let mut command = Command::new(&python);
        command
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(&self.config_path)
            .current_dir(self.dir.path())
            .env("PYTHONUNBUFFERED", "1");
        let child = ManagedChild::spawn(command, "synapse", &self.log_path)
            .with_context(|| format!("start Synapse with {}", python.display()))?;
        self.child = Some(child);
        match self.wait_ready().await {
            Ok(()) => Ok(()),
            Err(error) => {
                if let Some(mut child) = self.child.take() {
                    let _ = child.kill();
                }
                Err(error.context(format!(
                    "Synapse did not come up on port {}; log tail:\n{}",
                    self.port,
                    self.log_tail(40)
                )))
            }
        }
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let url = format!("{}/_matrix/client/versions", self.url());
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_status()? {
                    anyhow::bail!("Synapse exited during start-up ({status})");
                }
            }
            let probe = self
                .http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if matches!(&probe, Ok(response) if response.status().is_success()) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("no answer from {url} within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(crate::POLL_INTERVAL).await;
        }
    }

    /// Writes `homeserver.yaml` (as JSON, which YAML reads as is) for the current port.
    fn write_config(&self) -> anyhow::Result<()> {
        let config = homeserver_config(
            self.dir.path(),
            self.port,
            &self.shared_secret,
            &self.options,
        );
        let text = serde_json::to_string_pretty(&config).context("serialise config")?;
        std::fs::write(&self.config_path, text)
            .with_context(|| format!("write {}", self.config_path.display()))
    }
}

/// The python of the Synapse venv: `BRIDGE_TEST_SYNAPSE_PYTHON`, else the venv that
/// `scripts/synapse-venv` installs into the cache, else `python3`.
fn synapse_python() -> PathBuf {
    if let Some(python) = std::env::var_os("BRIDGE_TEST_SYNAPSE_PYTHON") {
        return PathBuf::from(python);
    }
    let cache = std::env::var_os("BRIDGE_TEST_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/bridges")));
    if let Some(cache) = cache {
        let python = cache.join(format!("synapse-{SYNAPSE_VERSION}/bin/python"));
        if python.exists() {
            return python;
        }
    }
    PathBuf::from("python3")
}

/// Writes a fresh ed25519 signing key in Synapse's format (`ed25519 <version> <seed>`), which
/// saves the ~2 s that `--generate-keys` spends importing Synapse.
fn write_signing_key(path: &Path) -> anyhow::Result<()> {
    let mut seed = [0_u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let seed = base64::engine::general_purpose::STANDARD_NO_PAD.encode(seed);
    let version = crate::random_lowercase(4);
    std::fs::write(path, format!("ed25519 a_{version} {seed}\n"))
        .with_context(|| format!("write {}", path.display()))
}

/// The hex HMAC-SHA1 that shared-secret registration expects:
/// `nonce \0 user \0 password \0 admin|notadmin`, keyed with the shared secret.
fn registration_mac(
    secret: &str,
    nonce: &str,
    user: &str,
    password: &str,
    admin: bool,
) -> anyhow::Result<String> {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).context("HMAC key")?;
    for (index, part) in [nonce, user, password].into_iter().enumerate() {
        if index > 0 {
            mac.update(b"\0");
        }
        mac.update(part.as_bytes());
    }
    mac.update(b"\0");
    mac.update(if admin {
        b"admin".as_slice()
    } else {
        b"notadmin".as_slice()
    });
    Ok(mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// `errcode: error` of a Matrix error body, or the body itself.
pub(crate) fn error_summary(body: &Value) -> String {
    match (body["errcode"].as_str(), body["error"].as_str()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => body.to_string(),
    }
}

/// The whole homeserver config for a test Synapse in `dir` on `port`.
fn homeserver_config(
    dir: &Path,
    port: u16,
    shared_secret: &str,
    options: &SynapseOptions,
) -> Value {
    let unlimited = json!({"per_second": 10_000, "burst_count": 100_000});
    let database = if options.persistent {
        dir.join("homeserver.db").to_string_lossy().into_owned()
    } else {
        ":memory:".to_owned()
    };
    let appservices: Vec<String> = options
        .appservice_files
        .iter()
        .map(|path| path.to_string_lossy().into_owned())
        .collect();
    let mut config = json!({
        "server_name": options.server_name,
        "public_baseurl": format!("http://127.0.0.1:{port}/"),
        "pid_file": dir.join("homeserver.pid"),
        "report_stats": false,
        "listeners": [{
            "port": port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "tls": false,
            "x_forwarded": false,
            "resources": [{"names": ["client"], "compress": false}],
        }],
        "database": {"name": "sqlite3", "args": {"database": database}},
        "media_store_path": dir.join("media"),
        "signing_key_path": dir.join("signing.key"),
        "registration_shared_secret": shared_secret,
        "macaroon_secret_key": crate::random_lowercase(32),
        "form_secret": crate::random_lowercase(32),
        "enable_registration": false,
        "enable_metrics": false,
        "url_preview_enabled": false,
        "presence": {"enabled": false},
        "federation_domain_whitelist": [],
        "trusted_key_servers": [],
        "suppress_key_server_warning": true,
        "app_service_config_files": appservices,
        "user_directory": {"enabled": true, "search_all_users": true},
        // What end-to-bridge encryption needs (the README's homeserver.yaml lines): to-device
        // events, device-list changes and one-time-key counts in appservice transactions.
        "experimental_features": {
            "msc2409_to_device_messages_enabled": true,
            "msc3202_transaction_extensions": true,
        },
        "rc_message": unlimited,
        "rc_registration": unlimited,
        "rc_registration_token_validity": unlimited,
        "rc_login": {
            "address": unlimited,
            "account": unlimited,
            "failed_attempts": unlimited,
        },
        "rc_admin_redaction": unlimited,
        "rc_joins": {"local": unlimited, "remote": unlimited},
        "rc_joins_per_room": unlimited,
        "rc_key_requests": unlimited,
        "rc_3pid_validation": unlimited,
        "rc_invites": {
            "per_room": unlimited,
            "per_user": unlimited,
            "per_issuer": unlimited,
        },
        "rc_third_party_invite": unlimited,
        "rc_media_create": unlimited,
        "rc_presence": {"per_user": unlimited},
        "rc_delayed_event_mgmt": unlimited,
        "rc_room_creation": unlimited,
        "rc_reports": unlimited,
        "rc_user_directory": unlimited,
        "rc_profile": unlimited,
    });
    if let Some(map) = config.as_object_mut() {
        for (key, value) in &options.extra_config {
            map.insert(key.clone(), value.clone());
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_mac_matches_a_reference() {
        // Reference values from Python:
        // hmac.new(b"secret", b"abc\0alice\0pw\0notadmin", hashlib.sha1).hexdigest()
        let cases = [
            (false, "42e32623fe124933c326f9d2d67ff7c617915a10"),
            (true, "dc5ed98b283077684552e3f72d67f26b3366bf58"),
        ];
        for (admin, expected) in cases {
            let mac = registration_mac("secret", "abc", "alice", "pw", admin).expect("mac");
            assert_eq!(mac, expected, "admin = {admin}");
        }
    }

    #[test]
    fn config_has_no_federation_and_unlimited_rates() {
        let dir = Path::new("/tmp/x");
        let mut options = SynapseOptions {
            persistent: true,
            appservice_files: vec![PathBuf::from("/tmp/as.yaml")],
            ..SynapseOptions::default()
        };
        options
            .extra_config
            .insert("enable_registration".to_owned(), json!(true));
        let config = homeserver_config(dir, 1234, "s3cret", &options);
        assert_eq!(
            config["listeners"][0]["resources"][0]["names"],
            json!(["client"])
        );
        assert_eq!(
            config["listeners"][0]["bind_addresses"],
            json!(["127.0.0.1"])
        );
        assert_eq!(config["federation_domain_whitelist"], json!([]));
        assert_eq!(
            config["database"]["args"]["database"],
            json!("/tmp/x/homeserver.db")
        );
        assert_eq!(config["app_service_config_files"], json!(["/tmp/as.yaml"]));
        assert_eq!(
            config["rc_login"]["failed_attempts"]["burst_count"],
            json!(100_000)
        );
        assert_eq!(
            config["enable_registration"],
            json!(true),
            "extra config wins"
        );
        let memory = homeserver_config(dir, 1234, "s3cret", &SynapseOptions::default());
        assert_eq!(memory["database"]["args"]["database"], json!(":memory:"));
    }

    #[test]
    fn signing_key_has_synapse_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("signing.key");
        write_signing_key(&path).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        let parts: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "ed25519");
        assert!(parts[1].starts_with("a_"));
        let seed = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(parts[2])
            .expect("base64");
        assert_eq!(seed.len(), 32);
    }
}
