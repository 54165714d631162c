//! The bridge's YAML config file: its typed sections, defaults drawn from the network's
//! [`NetworkInfo`], loading with environment overrides and errors that point at the file,
//! line and key, validation, the commented example, and the registration file generated
//! from it ([`registration`]).
//!
//! Environment overrides: `<ENV_PREFIX>__<SECTION>__<KEY>` (double underscores between
//! levels, since keys contain single ones) sets `section.key`, for example
//! `DISCORD_BRIDGE__APPSERVICE__AS_TOKEN`. Ending the last part in `_FILE` reads the value
//! from a file instead (trailing newline removed), unless a key of that exact name exists.
//! Keys that hold a mapping or list (`bridge.permissions`) take a YAML flow value.

mod env;
mod error;
mod example;
pub use example::{check_network_section, example_config};
pub use validate::{placeholder_keys, PLACEHOLDER_DOMAIN};
pub mod registration;
mod sections;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use error::{ConfigError, Problem};
pub use sections::{
    is_placeholder, AppserviceConfig, BackfillConfig, BotConfig, BridgeConfig, DatabaseConfig,
    DoublePuppetConfig, EncryptionConfig, ProvisioningConfig, PublicMediaConfig,
    HomeserverConfig, LogFormat, LoggingConfig, PermissionLevel, RelayConfig,
    DEFAULT_MAX_BODY_BYTES, TOKEN_PLACEHOLDER,
};

use crate::network::{NetworkConfig, NetworkInfo};

/// The whole config file of one bridge; `N` is the network's own `network:` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config<N> {
    /// Where the homeserver is.
    pub homeserver: HomeserverConfig,
    /// How the homeserver and the bridge reach each other.
    #[serde(default = "default_appservice")]
    pub appservice: AppserviceConfig,
    /// Where state is kept.
    #[serde(default = "default_database")]
    pub database: DatabaseConfig,
    /// Behaviour shared by all networks.
    #[serde(default = "default_bridge")]
    pub bridge: BridgeConfig,
    /// Logging.
    #[serde(default)]
    pub logging: LoggingConfig,
    /// The network's own settings.
    #[serde(default)]
    pub network: N,
}

fn default_appservice() -> AppserviceConfig {
    AppserviceConfig::example(&defaults::current())
}

fn default_database() -> DatabaseConfig {
    DatabaseConfig::example(&defaults::current())
}

fn default_bridge() -> BridgeConfig {
    BridgeConfig::example(&defaults::current(), "example.com")
}

/// A config as read from disk, with what it took to get it.
#[derive(Debug, Clone)]
pub(crate) struct Loaded<N> {
    /// The parsed, validated config.
    pub config: Config<N>,
    /// The file's text.
    pub text: String,
    /// Environment variables that overrode keys: (variable, dotted key).
    pub overridden: Vec<(String, String)>,
}

impl<N: NetworkConfig> Config<N> {
    /// The config `generate-config` writes for `info`'s network (without comments).
    pub fn example(info: &NetworkInfo) -> Self {
        let homeserver = HomeserverConfig::example();
        let bridge = BridgeConfig::example(info, &homeserver.domain);
        Self {
            homeserver,
            appservice: AppserviceConfig::example(info),
            database: DatabaseConfig::example(info),
            bridge,
            logging: LoggingConfig::default(),
            network: N::default(),
        }
    }

    /// The commented example config for `info`'s network, as written by `generate-config`.
    pub fn example_yaml(info: &NetworkInfo) -> Result<String, ConfigError> {
        example::render::<N>(info, None)
    }

    /// [`Config::example_yaml`] with the network's own commented `network:` section (see
    /// [`crate::network::Network::example_network_section`]) instead of its bare defaults.
    pub fn example_yaml_with(info: &NetworkInfo, network_section: Option<&str>) -> Result<String, ConfigError> {
        example::render::<N>(info, network_section)
    }

    /// Reads the config at `path`, applies overrides from the process environment (see the
    /// module docs) and validates it. Errors name the file, line, column and key path.
    pub fn load(path: &Path, info: &NetworkInfo) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Ok(Self::load_with_env(path, info, &env)?.config)
    }

    /// Parses and validates a config's text with no environment overrides; errors name
    /// `file` (as if the text had been read from it).
    pub fn parse(file: &Path, text: &str, info: &NetworkInfo) -> Result<Self, ConfigError> {
        Ok(Self::parse_with_env(file, text, info, &BTreeMap::new())?.0)
    }

    /// [`Config::load`] with an explicit environment.
    pub(crate) fn load_with_env(
        path: &Path,
        info: &NetworkInfo,
        env: &BTreeMap<String, String>,
    ) -> Result<Loaded<N>, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let (config, overridden) = Self::parse_with_env(path, &text, info, env)?;
        Ok(Loaded {
            config,
            text,
            overridden,
        })
    }

    /// Parses and validates `text` (read from `file`, which errors name).
    pub(crate) fn parse_with_env(
        file: &Path,
        text: &str,
        info: &NetworkInfo,
        env: &BTreeMap<String, String>,
    ) -> Result<(Self, Vec<(String, String)>), ConfigError> {
        defaults::scoped(info, || {
            let known = serde_json::to_value(Self::example(info))
                .map_err(|e| ConfigError::Serialize(e.to_string()))?;
            let overrides = env::collect(info.env_prefix, env, &known)?;
            let config = if overrides.is_empty() {
                parse_typed(text).map_err(|failure| {
                    invalid(Problem::from_yaml(file, text, &failure.0, &failure.1))
                })?
            } else {
                Self::parse_overridden(file, text, &overrides)?
            };
            let overridden: Vec<(String, String)> =
                overrides.iter().map(|o| (o.var.clone(), o.key())).collect();
            if let Some(v) = validate::check(&config).into_iter().next() {
                if let Some((var, _)) = overridden.iter().find(|(_, key)| covers(key, &v.key)) {
                    return Err(ConfigError::Env {
                        var: var.clone(),
                        key: v.key,
                        message: v.message,
                    });
                }
                return Err(invalid(Problem::at_key(
                    file, text, &v.key, v.message, v.hint,
                )));
            }
            Ok((config, overridden))
        })
    }

    /// Parses `text` after applying environment overrides to its tree.
    fn parse_overridden(
        file: &Path,
        text: &str,
        overrides: &[env::Override],
    ) -> Result<Self, ConfigError> {
        let mut tree: serde_json::Value = serde_saphyr::from_str(text)
            .map_err(|e| invalid(Problem::from_yaml(file, text, "", &e)))?;
        env::apply(&mut tree, overrides)?;
        let merged =
            serde_saphyr::to_string(&tree).map_err(|e| ConfigError::Serialize(e.to_string()))?;
        let (path, err) = match parse_typed::<Self>(&merged) {
            Ok(config) => return Ok(config),
            Err(failure) => *failure,
        };
        let problem = Problem::from_yaml(file, &merged, &path, &err);
        if let Some(o) = overrides.iter().find(|o| covers(&o.key(), &problem.key)) {
            return Err(ConfigError::Env {
                var: o.var.clone(),
                key: problem.key,
                message: problem.message,
            });
        }
        // The problem is in the file itself: report it against the file's own text.
        match parse_typed::<Self>(text) {
            Err(failure)
                if Problem::from_yaml(file, text, &failure.0, &failure.1).key == problem.key =>
            {
                Err(invalid(Problem::from_yaml(
                    file, text, &failure.0, &failure.1,
                )))
            }
            _ => Err(invalid(Problem::at_key(
                file,
                text,
                &problem.key,
                problem.message,
                problem.hint,
            ))),
        }
    }

    /// Writes the config as YAML (without the example's comments) to `path`.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let body =
            serde_saphyr::to_string(self).map_err(|e| ConfigError::Serialize(e.to_string()))?;
        let text = format!(
            "# Bridge configuration; `generate-config` writes a commented example.\n{body}"
        );
        write_file(path, &text)
    }
}

/// Whether an override of `overridden` decides the value at `key`.
fn covers(overridden: &str, key: &str) -> bool {
    key == overridden
        || key
            .strip_prefix(overridden)
            .is_some_and(|rest| rest.starts_with('.'))
        || overridden
            .strip_prefix(key)
            .is_some_and(|rest| rest.starts_with('.'))
}

fn invalid(problem: Problem) -> ConfigError {
    ConfigError::Invalid(Box::new(problem))
}

/// Deserializes `text`, returning the key path and error on failure.
fn parse_typed<T: serde::de::DeserializeOwned>(
    text: &str,
) -> Result<T, Box<(String, serde_saphyr::Error)>> {
    let mut failed_at = None;
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
            failed_at = Some(e.path().to_string());
            e.into_inner()
        })
    });
    result.map_err(|e| Box::new((failed_at.unwrap_or_default(), e)))
}

/// Writes `text` to `path`, replacing it. Config and registration files hold tokens: on
/// Unix the file is readable by its owner only (0600), also when it existed with a wider mode
/// (the mode is narrowed before anything is written).
pub(crate) fn write_file(path: &Path, text: &str) -> Result<(), ConfigError> {
    use std::io::Write as _;
    let failed = |source| ConfigError::Write {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(failed)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(failed)?;
    }
    file.write_all(text.as_bytes()).map_err(failed)
}

/// The [`NetworkInfo`] whose defaults apply while a config is being deserialized.
///
/// Serde's `default` functions take no arguments, so the network's defaults (port, bot
/// name, ghost template) are put in scope on this thread for the duration of a parse.
pub(crate) mod defaults {
    use std::cell::Cell;

    use crate::network::NetworkInfo;

    thread_local! {
        static CURRENT: Cell<Option<NetworkInfo>> = const { Cell::new(None) };
    }

    /// Defaults used when no network is in scope.
    const GENERIC: NetworkInfo = NetworkInfo {
        id: "bridge",
        display_name: "Matrix",
        bot_localpart: "bridgebot",
        ghost_template: "bridge_{id}",
        command_prefix: "!bridge",
        default_port: 29300,
        env_prefix: "BRIDGE",
        url: "",
    };

    /// Runs `f` with `info`'s defaults in scope.
    pub(crate) fn scoped<R>(info: &NetworkInfo, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<NetworkInfo>);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(CURRENT.with(|c| c.replace(Some(*info))));
        f()
    }

    /// The network in scope, or generic defaults.
    pub(crate) fn current() -> NetworkInfo {
        CURRENT.with(Cell::get).unwrap_or(GENERIC)
    }
}

#[cfg(test)]
pub(crate) mod tests;
