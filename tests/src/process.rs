//! Child processes of the tests: spawning with a log file, PID bookkeeping in
//! `$BRIDGE_TEST_RUN_DIR/pids/`, and stopping (SIGTERM, a grace period, then SIGKILL).
//!
//! [`ManagedChild`] is the shared core used by both [`crate::Synapse`] and [`BridgeProcess`];
//! [`BridgeCommand`] builds a bridge process or runs a one-shot subcommand.

use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// How long a stopped child gets between SIGTERM and SIGKILL.
pub(crate) const TERM_GRACE: Duration = Duration::from_secs(10);

/// How long [`BridgeCommand::output`] lets a one-shot command run.
const ONE_SHOT_TIMEOUT: Duration = Duration::from_secs(120);

/// How often a child is checked for having exited.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// A spawned child whose stdout and stderr go to a log file and whose PID is listed in the run
/// dir until it has been reaped. Dropping it stops the child.
#[derive(Debug)]
pub(crate) struct ManagedChild {
    child: Child,
    pid_file: Option<PathBuf>,
    status: Option<ExitStatus>,
}

impl ManagedChild {
    /// Spawns `command` with stdin closed and stdout/stderr appended to `log_path`.
    pub(crate) fn spawn(mut command: Command, name: &str, log_path: &Path) -> anyhow::Result<Self> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .with_context(|| format!("open log file {}", log_path.display()))?;
        // Only the program and its arguments: the environment may hold secrets.
        let mut line = format!(
            "=== {name}: starting {}",
            command.get_program().to_string_lossy()
        );
        for arg in command.get_args() {
            line.push(' ');
            line.push_str(&arg.to_string_lossy());
        }
        writeln!(log, "{line}").context("write log file")?;
        let stderr = log.try_clone().context("clone log file handle")?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        let child = command
            .spawn()
            .with_context(|| format!("spawn {}", command.get_program().to_string_lossy()))?;
        let pid_file = register_pid(name, child.id());
        Ok(Self {
            child,
            pid_file,
            status: None,
        })
    }

    /// Like [`Self::spawn`], with stdin and stdout piped to the caller (a driven peer that
    /// answers commands); stderr goes to `log_path`.
    pub(crate) fn spawn_piped(mut command: Command, name: &str, log_path: &Path) -> anyhow::Result<(Self, std::process::ChildStdin, std::process::ChildStdout)> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .with_context(|| format!("open log file {}", log_path.display()))?;
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::from(log));
        let mut child = command
            .spawn()
            .with_context(|| format!("spawn {}", command.get_program().to_string_lossy()))?;
        let stdin = child.stdin.take().context("child stdin")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let pid_file = register_pid(name, child.id());
        Ok((Self { child, pid_file, status: None }, stdin, stdout))
    }

    /// The child's process ID.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the child has exited (reaping it), without waiting.
    pub(crate) fn try_status(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            if let Some(status) = self.child.try_wait().context("check child status")? {
                self.reaped(status);
            }
        }
        Ok(self.status)
    }

    /// Waits up to `timeout` for the child to exit on its own.
    pub(crate) async fn wait_timeout(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(EXIT_POLL).await;
        }
    }

    /// Sends SIGTERM, waits up to `grace` for the child to exit, then SIGKILLs it.
    pub(crate) async fn terminate(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.try_status()? {
            return Ok(status);
        }
        self.send_term();
        match self.wait_timeout(grace).await? {
            Some(status) => Ok(status),
            None => self.kill(),
        }
    }

    /// Blocking twin of [`Self::terminate`] for `Drop`, where nothing can be awaited.
    fn terminate_blocking(&mut self, grace: Duration) {
        if matches!(self.try_status(), Ok(Some(_))) {
            return;
        }
        self.send_term();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.try_status(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(EXIT_POLL);
        }
        if let Err(error) = self.kill() {
            eprintln!("could not kill child {}: {error:#}", self.pid());
        }
    }

    /// Sends SIGKILL and reaps the child.
    pub(crate) fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.try_status()? {
            return Ok(status);
        }
        // Fails only if the child has exited in the meantime; `wait` reaps it either way.
        let _ = self.child.kill();
        let status = self.child.wait().context("wait for killed child")?;
        self.reaped(status);
        Ok(status)
    }

    /// Sends SIGTERM with the system's `kill` (the workspace forbids the unsafe `libc::kill`).
    fn send_term(&self) {
        let result = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Err(error) = result {
            eprintln!("could not run kill -TERM {}: {error}", self.pid());
        }
    }

    fn reaped(&mut self, status: ExitStatus) {
        self.status = Some(status);
        if let Some(pid_file) = self.pid_file.take() {
            let _ = std::fs::remove_file(pid_file);
        }
    }
}

impl Drop for ManagedChild {
    fn drop(&mut self) {
        self.terminate_blocking(TERM_GRACE);
    }
}

/// Lists `pid` in `$BRIDGE_TEST_RUN_DIR/pids/` if that variable is set; returns the file.
fn register_pid(name: &str, pid: u32) -> Option<PathBuf> {
    let run_dir = std::env::var_os("BRIDGE_TEST_RUN_DIR")?;
    let dir = Path::new(&run_dir).join("pids");
    let file = dir.join(format!("{name}-{pid}"));
    let written =
        std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, format!("{pid}\n")));
    match written {
        Ok(()) => Some(file),
        Err(error) => {
            eprintln!("could not record PID {pid} in {}: {error}", dir.display());
            None
        }
    }
}

/// The last `lines` lines of the file at `path` (lossily decoded), or a note if it can't be read.
pub(crate) fn tail_file(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}

/// Builder for a bridge (or any other) binary run by a test: arguments, environment, working
/// directory and a name for its log and PID files.
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// use bridge_tests::BridgeCommand;
/// let bridge = BridgeCommand::new("/path/to/bridge-test")
///     .args(["run", "-c", "config.yaml"])
///     .env("RUST_LOG", "debug")
///     .spawn()?;
/// println!("{}", bridge.log_tail(20));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BridgeCommand {
    bin: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    dir: Option<PathBuf>,
    name: Option<String>,
}

impl BridgeCommand {
    /// Starts building a run of the binary at `bin` (in tests, `env!("CARGO_BIN_EXE_<name>")`).
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            args: Vec::new(),
            envs: Vec::new(),
            dir: None,
            name: None,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the child (the rest of the test's environment is
    /// inherited).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Runs the child in `dir`, which the caller keeps (use this to restart a bridge on the same
    /// config and database). Without it, each run gets a fresh temporary directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Names the log file (`<dir>/<name>.log`) and PID file; defaults to the binary's file name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            self.bin.file_name().map_or_else(
                || "child".to_owned(),
                |name| name.to_string_lossy().into_owned(),
            )
        })
    }

    fn command(&self, dir: &Path) -> Command {
        let mut command = Command::new(&self.bin);
        command.args(&self.args).current_dir(dir);
        for (key, value) in &self.envs {
            command.env(key, value);
        }
        command
    }

    /// Spawns the binary in the background, its output appended to `<dir>/<name>.log`.
    pub fn spawn(self) -> anyhow::Result<BridgeProcess> {
        let (dir, tempdir) = match &self.dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let tempdir = tempfile::tempdir().context("create working directory")?;
                (tempdir.path().to_owned(), Some(tempdir))
            }
        };
        let name = self.display_name();
        let log_path = dir.join(format!("{name}.log"));
        let child = ManagedChild::spawn(self.command(&dir), &name, &log_path)?;
        Ok(BridgeProcess {
            child,
            dir,
            log_path,
            _tempdir: tempdir,
        })
    }

    /// Runs the binary to completion (at most 120 s) and returns its exit status and captured
    /// stdout and stderr.
    pub async fn output(self) -> anyhow::Result<Output> {
        let tempdir;
        let dir = match &self.dir {
            Some(dir) => dir.clone(),
            None => {
                tempdir = tempfile::tempdir().context("create working directory")?;
                tempdir.path().to_owned()
            }
        };
        let name = self.display_name();
        let mut command = tokio::process::Command::from(self.command(&dir));
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("spawn {}", self.bin.display()))?;
        let pid_file = child.id().and_then(|pid| register_pid(&name, pid));
        let result = tokio::time::timeout(ONE_SHOT_TIMEOUT, child.wait_with_output()).await;
        if let Some(pid_file) = pid_file {
            let _ = std::fs::remove_file(pid_file);
        }
        match result {
            Ok(output) => output.with_context(|| format!("run {}", self.bin.display())),
            Err(_) => anyhow::bail!(
                "{} did not finish within {ONE_SHOT_TIMEOUT:?}",
                self.bin.display()
            ),
        }
    }
}

/// Runs `bin` with `args` to completion in a fresh temporary directory; see
/// [`BridgeCommand::output`].
pub async fn run_to_completion<I, S>(bin: impl Into<PathBuf>, args: I) -> anyhow::Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    BridgeCommand::new(bin).args(args).output().await
}

/// A bridge binary running in the background. Dropping it stops the process (SIGTERM, then
/// SIGKILL after a grace period).
#[derive(Debug)]
pub struct BridgeProcess {
    child: ManagedChild,
    dir: PathBuf,
    log_path: PathBuf,
    _tempdir: Option<tempfile::TempDir>,
}

impl BridgeProcess {
    /// Spawns `bin` with `args` in a fresh temporary directory; see [`BridgeCommand`] for more
    /// control.
    pub fn spawn<I, S>(bin: impl Into<PathBuf>, args: I) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        BridgeCommand::new(bin).args(args).spawn()
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The working directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that receives the process's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail_file(&self.log_path, lines)
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_exit_status(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        self.child.try_status()
    }

    /// Kills the process at once with SIGKILL (a crash, as far as the bridge can tell).
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        self.child.kill()
    }

    /// Asks the process to stop with SIGTERM and waits for it; SIGKILL after 10 s.
    pub async fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        self.child.terminate(TERM_GRACE).await
    }

    /// Waits up to `timeout` for the process to exit by itself; fails (with the log's tail) if
    /// it is still running then.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        match self.child.wait_timeout(timeout).await? {
            Some(status) => Ok(status),
            None => anyhow::bail!(
                "process {} still running after {timeout:?}; log tail:\n{}",
                self.pid(),
                self.log_tail(40)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_shot_output_is_captured() {
        let output = run_to_completion("sh", ["-c", "echo out; echo err >&2; exit 3"])
            .await
            .expect("run sh");
        assert_eq!(output.status.code(), Some(3));
        assert_eq!(String::from_utf8_lossy(&output.stdout), "out\n");
        assert_eq!(String::from_utf8_lossy(&output.stderr), "err\n");
    }

    #[tokio::test]
    async fn background_process_logs_and_terminates() {
        let mut process = BridgeCommand::new("sh")
            .args(["-c", "echo hello from $GREETING; exec sleep 600"])
            .env("GREETING", "the test")
            .name("sleeper")
            .spawn()
            .expect("spawn");
        crate::wait_until(Duration::from_secs(10), "log line", || {
            let tail = process.log_tail(5);
            async move { Ok(tail.contains("hello from the test").then_some(())) }
        })
        .await
        .expect("log written");
        assert!(process.try_exit_status().expect("status").is_none());
        let status = process.terminate().await.expect("terminate");
        assert!(!status.success());
    }

    #[tokio::test]
    async fn wait_exit_reports_status_and_times_out() {
        let mut quick = BridgeProcess::spawn("sh", ["-c", "exit 7"]).expect("spawn");
        let status = quick
            .wait_exit(Duration::from_secs(10))
            .await
            .expect("exits");
        assert_eq!(status.code(), Some(7));

        let mut slow = BridgeProcess::spawn("sleep", ["600"]).expect("spawn");
        assert!(slow.wait_exit(Duration::from_millis(100)).await.is_err());
        let status = slow.kill().expect("kill");
        assert!(!status.success());
    }

    #[test]
    fn dropping_a_child_stops_it_and_removes_its_pid_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("child.log");
        let mut command = Command::new("sleep");
        command.arg("600");
        let mut child = ManagedChild::spawn(command, "sleeper", &log).expect("spawn");
        // register_pid wrote one if BRIDGE_TEST_RUN_DIR is set; otherwise put a stand-in.
        let pid_file = match child.pid_file.clone() {
            Some(registered) => registered,
            None => {
                let stand_in = dir.path().join(format!("sleeper-{}", child.pid()));
                std::fs::write(&stand_in, format!("{}\n", child.pid())).expect("write PID file");
                child.pid_file = Some(stand_in.clone());
                stand_in
            }
        };
        assert!(pid_file.exists());
        drop(child);
        assert!(
            !pid_file.exists(),
            "PID file removed once the child is reaped"
        );
        assert!(tail_file(&log, 1).contains("=== sleeper: starting sleep 600"));
    }
}
