//! The command line shared by every bridge binary: `generate-config`,
//! `generate-registration`, `check-config` and `run` (the default), with exit codes
//! 0 (ok), 1 (runtime failure) and 2 (config or usage error).
//!
//! A network crate's `main.rs` is one line:
//! `fn main() -> std::process::ExitCode { bridge_core::cli::main::<MyNetwork>() }`.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::registration::{generate_registration, Registration};
use crate::config::{Config, ConfigError, LogFormat, LoggingConfig};
use crate::network::{Network, NetworkInfo};

/// Exit code of a successful command.
pub const EXIT_OK: u8 = 0;
/// Exit code when the bridge failed while running.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a bad config file or bad command-line arguments.
pub const EXIT_CONFIG: u8 = 2;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(disable_version_flag = true)]
pub struct Cli {
    /// The config file.
    #[arg(
        short,
        long,
        global = true,
        default_value = "config.yaml",
        value_name = "PATH"
    )]
    pub config: PathBuf,
    /// The registration file written by generate-registration.
    #[arg(
        short,
        long,
        global = true,
        default_value = "registration.yaml",
        value_name = "PATH"
    )]
    pub registration: PathBuf,
    /// Print the version and exit.
    #[arg(short = 'V', long)]
    pub version: bool,
    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Write an example config file, with comments, to the --config path.
    GenerateConfig {
        /// Overwrite the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Fill in tokens in the config if needed and write the registration for the homeserver.
    GenerateRegistration {
        /// Replace the tokens with new ones (the homeserver must then load the new registration).
        #[arg(long)]
        rotate: bool,
    },
    /// Load and validate the config, then exit.
    CheckConfig,
    /// Run the bridge (the default).
    Run,
}

/// Runs the command line of `N`'s bridge binary with the process's arguments.
pub fn main<N: Network>() -> ExitCode {
    let code = execute::<N, _, _>(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    ExitCode::from(code)
}

/// The version line: `<display name> bridge <version>`.
pub fn version_line(info: &NetworkInfo) -> String {
    format!("{} bridge {}", info.display_name, env!("CARGO_PKG_VERSION"))
}

/// Parses `args` (the first is the program name) and runs the command, writing messages to
/// `out` and errors to `err`; returns the exit code.
pub fn execute<N, I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> u8
where
    N: Network,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let info = N::info();
    let about = format!("Matrix bridge for {} ({})", info.display_name, info.url);
    let matches = match Cli::command()
        .name(info.id)
        .about(about)
        .try_get_matches_from(args)
    {
        Ok(matches) => matches,
        Err(e) => {
            // Help goes to stdout with code 0; usage errors to stderr with code 2.
            let text = e.render().to_string();
            if e.use_stderr() {
                let _ = write!(err, "{text}");
                return EXIT_CONFIG;
            }
            let _ = write!(out, "{text}");
            return EXIT_OK;
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = write!(err, "{}", e.render());
            return EXIT_CONFIG;
        }
    };
    if cli.version {
        let _ = writeln!(out, "{}", version_line(&info));
        return EXIT_OK;
    }
    let result = match cli.command.clone().unwrap_or(Command::Run) {
        Command::GenerateConfig { force } => generate_config::<N>(&info, &cli.config, force, out),
        Command::GenerateRegistration { rotate } => {
            generate_registration_command::<N>(&info, &cli, rotate, out, err)
        }
        Command::CheckConfig => check_config::<N>(&info, &cli.config, out, err),
        Command::Run => run::<N>(&info, &cli, err),
    };
    match result {
        Ok(()) => EXIT_OK,
        Err(failure) => {
            let _ = writeln!(err, "error: {}", failure.message);
            failure.code
        }
    }
}

/// A failed command: what to print and the exit code.
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn config(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: EXIT_CONFIG,
        }
    }

    fn runtime(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: EXIT_FAILURE,
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        let code = match e {
            ConfigError::Write { .. } => EXIT_FAILURE,
            _ => EXIT_CONFIG,
        };
        let mut message = e.to_string();
        if let ConfigError::Read { source, .. } = &e {
            if source.kind() == std::io::ErrorKind::NotFound {
                message.push_str(
                    "\n hint: run generate-config to write an example, or pass --config PATH",
                );
            }
        }
        Self { message, code }
    }
}

fn generate_config<N: Network>(
    info: &NetworkInfo,
    path: &Path,
    force: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    if path.exists() && !force {
        return Err(Failure::config(format!(
            "{} already exists; pass --force to overwrite it, or choose another file with --config",
            path.display()
        )));
    }
    let yaml = Config::<N::Config>::example_yaml_with(info, N::example_network_section())?;
    debug_assert_eq!(Some(&yaml), crate::config::example_config::<N>().ok().as_ref());
    crate::config::write_file(path, &yaml)?;
    let _ = writeln!(
        out,
        "wrote an example config to {}\nnext: edit homeserver.address, homeserver.domain, appservice.address, database.uri and bridge.permissions in it (replace every example.com), then run generate-registration",
        path.display()
    );
    Ok(())
}

fn generate_registration_command<N: Network>(
    info: &NetworkInfo,
    cli: &Cli,
    rotate: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let (config, registration) = (&cli.config, &cli.registration);
    refuse_placeholders(config, &Config::<N::Config>::load(config, info)?, err)?;
    let generated = generate_registration::<N::Config>(info, config, registration, rotate)?;
    if generated.tokens_changed {
        let _ = writeln!(out, "wrote new tokens to {}", config.display());
    }
    let _ = writeln!(
        out,
        "wrote the registration to {}\nnext: add it to app_service_config_files in the homeserver's config and restart the homeserver",
        registration.display()
    );
    Ok(())
}

fn check_config<N: Network>(
    info: &NetworkInfo,
    path: &Path,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let config = Config::<N::Config>::load(path, info)?;
    refuse_placeholders(path, &config, err)?;
    if config.appservice.has_placeholder_tokens() {
        let _ = writeln!(
            err,
            "warning: the tokens are placeholders; run generate-registration before run"
        );
    }
    let _ = writeln!(out, "{}: ok", path.display());
    Ok(())
}

fn run<N: Network>(info: &NetworkInfo, cli: &Cli, err: &mut dyn Write) -> Result<(), Failure> {
    let config = Config::<N::Config>::load(&cli.config, info)?;
    refuse_placeholders(&cli.config, &config, err)?;
    if config.appservice.has_placeholder_tokens() {
        return Err(Failure::config(format!(
            "{}: appservice.as_token and appservice.hs_token are not set yet; run `generate-registration` \
             (with the same --config), load the registration into the homeserver, then start the bridge again",
            cli.config.display()
        )));
    }
    if let Some(warning) = registration_mismatch(&cli.registration, &config) {
        let _ = writeln!(err, "warning: {warning}");
    }
    init_tracing(&config.logging).map_err(Failure::config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the async runtime: {e}")))?;
    tracing::info!(version = %version_line(info), config = %cli.config.display(), "starting");
    let path = cli.config.clone();
    runtime
        .block_on(crate::bridge::run::<N>(config, path))
        .map_err(|e| Failure::runtime(format!("{e:#}")))
}

/// Refuses a config whose `homeserver.domain` is still the example's `example.com`, naming
/// every key to edit; other keys left on `example.com` (a permission entry) get a warning.
fn refuse_placeholders<N>(
    path: &Path,
    config: &Config<N>,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let keys = crate::config::placeholder_keys(config);
    let placeholder = crate::config::PLACEHOLDER_DOMAIN;
    if keys.is_empty() {
        return Ok(());
    }
    if !keys.iter().any(|key| key == "homeserver.domain") {
        let _ = writeln!(
            err,
            "warning: {}: `{placeholder}` is still in {}; replace it with your server and users",
            path.display(),
            keys.join(", ")
        );
        return Ok(());
    }
    Err(Failure::config(format!(
        "{}: the example's `{placeholder}` is still in {}\n hint: set homeserver.domain to your \
         homeserver's server name (the part after `:` in user IDs) and bridge.permissions to your \
         server and users; check homeserver.address and appservice.address too (how the \
         homeserver and the bridge reach each other)",
        path.display(),
        keys.join(", ")
    )))
}

/// A warning when the registration file next to the config has other tokens than the config.
fn registration_mismatch<N>(path: &Path, config: &Config<N>) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let registration: Registration = serde_saphyr::from_str(&text).ok()?;
    let same = registration.as_token == config.appservice.as_token
        && registration.hs_token == config.appservice.hs_token;
    (!same).then(|| {
        format!(
            "{} has other tokens than the config; run generate-registration and restart the homeserver",
            path.display()
        )
    })
}

/// Installs the global log subscriber: `RUST_LOG` if set, else `logging.level`.
fn init_tracing(logging: &LoggingConfig) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(directive) if !directive.trim().is_empty() => EnvFilter::try_new(&directive)
            .map_err(|e| format!("RUST_LOG is not a valid log filter: {e}"))?,
        _ => EnvFilter::try_new(&logging.level)
            .map_err(|e| format!("logging.level is not a valid log filter: {e}"))?,
    };
    // Colour codes only on a terminal: a log file or `docker logs` gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // A subscriber may already be installed (tests, embedding); keep it then.
    let _ = match logging.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::tests::{test_info, TestNetConfig};
    use crate::network::NetworkConnector;

    struct TestNet;

    impl Network for TestNet {
        type Config = TestNetConfig;

        fn info() -> NetworkInfo {
            test_info()
        }

        fn connector(_config: TestNetConfig) -> anyhow::Result<Arc<dyn NetworkConnector>> {
            anyhow::bail!("no connector in cli tests")
        }
    }

    /// Runs the CLI with `args` in `dir`; returns (code, stdout, stderr).
    fn cli(dir: &Path, args: &[&str]) -> (u8, String, String) {
        let config = dir.join("config.yaml");
        let registration = dir.join("registration.yaml");
        let mut argv: Vec<OsString> = vec!["test-bridge".into()];
        argv.extend(args.iter().map(OsString::from));
        argv.extend([
            "-c".into(),
            config.into_os_string(),
            "-r".into(),
            registration.into_os_string(),
        ]);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = execute::<TestNet, _, _>(argv, &mut out, &mut err);
        (
            code,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }

    #[test]
    fn version_and_help() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (code, out, _) = cli(dir.path(), &["--version"]);
        assert_eq!(
            (code, out.trim()),
            (
                EXIT_OK,
                format!("Test bridge {}", env!("CARGO_PKG_VERSION")).as_str()
            )
        );
        let (code, out, _) = cli(dir.path(), &["--help"]);
        assert_eq!(code, EXIT_OK);
        assert!(
            out.contains("generate-registration") && out.contains("--config"),
            "{out}"
        );
        let (code, _, err) = cli(dir.path(), &["frobnicate"]);
        assert_eq!(code, EXIT_CONFIG, "{err}");
    }

    #[test]
    fn generate_config_refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (code, out, err) = cli(dir.path(), &["generate-config"]);
        assert_eq!(code, EXIT_OK, "{err}");
        assert!(out.contains("config.yaml"), "{out}");
        let written = std::fs::read_to_string(dir.path().join("config.yaml")).expect("written");
        assert_eq!(
            written,
            Config::<TestNetConfig>::example_yaml(&test_info()).expect("example")
        );

        std::fs::write(dir.path().join("config.yaml"), "edited").expect("edit");
        let (code, _, err) = cli(dir.path(), &["generate-config"]);
        assert_eq!(code, EXIT_CONFIG);
        assert!(
            err.starts_with("error: ") && err.contains("--force"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("config.yaml")).expect("kept"),
            "edited"
        );
        let (code, _, err) = cli(dir.path(), &["generate-config", "--force"]);
        assert_eq!(code, EXIT_OK, "{err}");
    }

    #[test]
    fn check_config_and_generate_registration_flow() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (code, _, err) = cli(dir.path(), &["check-config"]);
        assert_eq!(code, EXIT_CONFIG);
        assert!(
            err.starts_with("error: ")
                && err.contains("config.yaml")
                && err.contains("generate-config"),
            "{err}"
        );

        assert_eq!(cli(dir.path(), &["generate-config"]).0, EXIT_OK);
        // The example as written is refused until its example.com is replaced.
        for args in [&["check-config"][..], &["run"], &["generate-registration"]] {
            let (code, _, err) = cli(dir.path(), args);
            assert_eq!(code, EXIT_CONFIG, "{args:?}: {err}");
            assert!(
                err.contains("`example.com` is still in homeserver.domain, \
                     bridge.permissions.\"@admin:example.com\", bridge.permissions.\"example.com\""),
                "{args:?}: {err}"
            );
        }
        assert!(!dir.path().join("registration.yaml").exists());
        // With the domain set, a permission entry left on example.com is only a warning.
        let path = dir.path().join("config.yaml");
        let text = std::fs::read_to_string(&path).expect("config");
        let domain_only = text.replace("domain: \"example.com\"", "domain: \"matrix.test\"");
        std::fs::write(&path, domain_only).expect("edit");
        let (code, _, err) = cli(dir.path(), &["check-config"]);
        assert_eq!(code, EXIT_OK, "{err}");
        assert!(
            err.contains("warning: ") && err.contains("bridge.permissions.\"example.com\"")
                && !err.contains("homeserver.domain"),
            "{err}"
        );
        edit_placeholders(dir.path());
        let (code, out, err) = cli(dir.path(), &["check-config"]);
        assert_eq!(code, EXIT_OK, "{err}");
        assert!(
            out.contains(": ok") && err.contains("placeholders"),
            "{out}{err}"
        );

        // `run` is the default and refuses placeholder tokens.
        let (code, _, err) = cli(dir.path(), &[]);
        assert_eq!(code, EXIT_CONFIG);
        assert!(err.contains("generate-registration"), "{err}");

        let (code, out, err) = cli(dir.path(), &["generate-registration"]);
        assert_eq!(code, EXIT_OK, "{err}");
        assert!(out.contains("registration.yaml"), "{out}");
        assert!(dir.path().join("registration.yaml").exists());
        let (code, _, err) = cli(dir.path(), &["check-config"]);
        assert_eq!((code, err.as_str()), (EXIT_OK, ""));
    }

    /// Replaces the example's example.com as an operator would.
    fn edit_placeholders(dir: &Path) {
        let path = dir.join("config.yaml");
        let text = std::fs::read_to_string(&path).expect("config");
        std::fs::write(&path, text.replace("example.com", "matrix.test")).expect("edit");
    }

    #[cfg(unix)]
    #[test]
    fn files_with_tokens_are_written_for_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mode = |name: &str| {
            std::fs::metadata(dir.path().join(name))
                .expect("metadata")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(cli(dir.path(), &["generate-config"]).0, EXIT_OK);
        assert_eq!(mode("config.yaml"), 0o600);
        // A config the operator made world-readable is narrowed when tokens are written in.
        edit_placeholders(dir.path());
        let config = dir.path().join("config.yaml");
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::write(dir.path().join("registration.yaml"), "old").expect("old registration");
        std::fs::set_permissions(
            dir.path().join("registration.yaml"),
            std::fs::Permissions::from_mode(0o666),
        )
        .expect("chmod");
        let (code, _, err) = cli(dir.path(), &["generate-registration"]);
        assert_eq!(code, EXIT_OK, "{err}");
        assert_eq!((mode("config.yaml"), mode("registration.yaml")), (0o600, 0o600));
        assert!(std::fs::read_to_string(&config).expect("config").contains("as_token: "));
    }

    #[test]
    fn config_errors_exit_with_2_and_name_the_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "homeserver:\n  address: http://127.0.0.1:8008\n  domain: example.com\nappservice:\n  port: x\n";
        std::fs::write(dir.path().join("config.yaml"), text).expect("write");
        for args in [&["check-config"][..], &["run"], &["generate-registration"]] {
            let (code, _, err) = cli(dir.path(), args);
            assert_eq!(code, EXIT_CONFIG, "{args:?}");
            assert!(
                err.starts_with("error: ") && err.contains("config.yaml:5:9: appservice.port"),
                "{err}"
            );
        }
    }

    #[test]
    fn mismatched_registration_is_noticed() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(cli(dir.path(), &["generate-config"]).0, EXIT_OK);
        edit_placeholders(dir.path());
        assert_eq!(cli(dir.path(), &["generate-registration"]).0, EXIT_OK);
        let config = Config::<TestNetConfig>::load(&dir.path().join("config.yaml"), &test_info())
            .expect("load");
        assert_eq!(
            registration_mismatch(&dir.path().join("registration.yaml"), &config),
            None
        );
        let config_path = dir.path().join("config.yaml");
        generate_registration::<TestNetConfig>(
            &test_info(),
            &config_path,
            &dir.path().join("other.yaml"),
            true,
        )
        .expect("rotate");
        let rotated = Config::<TestNetConfig>::load(&dir.path().join("config.yaml"), &test_info())
            .expect("load");
        assert!(registration_mismatch(&dir.path().join("registration.yaml"), &rotated).is_some());
    }
}
