//! The commented example config that `generate-config` writes.
//!
//! Written from a template so every key carries an explanation; a test checks that it
//! parses back to exactly [`Config::example`].

use std::fmt::Write as _;

use super::{Config, ConfigError, NetworkConfig, PermissionLevel};
use crate::network::NetworkInfo;

/// Renders the example config for `info`'s network, with comments.
pub(crate) fn render<N: NetworkConfig>(info: &NetworkInfo, network_section: Option<&str>) -> Result<String, ConfigError> {
    let example = Config::<N>::example(info);
    let appservice = &example.appservice;
    let bridge = &example.bridge;
    let mut permissions = String::new();
    for (key, level) in &bridge.permissions {
        let level = match level {
            PermissionLevel::Block => "block",
            PermissionLevel::Relay => "relay",
            PermissionLevel::Commands => "commands",
            PermissionLevel::User => "user",
            PermissionLevel::Admin => "admin",
        };
        let _ = writeln!(permissions, "    {}: {level}", quote(key));
    }
    let network = match network_section {
        Some(text) => indent_section(text),
        None => default_section(&example.network)?,
    };
    let q = quote;
    Ok(format!(
        r#"# Configuration of the {display} bridge.
# Every key can be overridden by an environment variable: {env}__<SECTION>__<KEY>
# (for example {env}__APPSERVICE__AS_TOKEN); add _FILE to read the value from a file.

# The Matrix homeserver.
homeserver:
  # Client-server API URL the bridge uses to reach the homeserver.
  address: {hs_address}
  # The homeserver's server name: the part after ":" in user IDs.
  domain: {domain}

# How the homeserver and the bridge reach each other.
appservice:
  # URL at which the homeserver reaches the bridge.
  address: {as_address}
  # Where the bridge listens (use 0.0.0.0 inside a container).
  hostname: {hostname}
  port: {port}
  # Appservice ID in the registration; must be unique on the homeserver.
  id: {id}
  # The bridge bot. Leave displayname or avatar (an mxc:// URI) empty to not set them.
  bot:
    username: {bot_username}
    displayname: {bot_displayname}
    avatar: {bot_avatar}
  # Localpart of ghost users; {{id}} is replaced by the remote user's ID.
  username_template: {template}
  # Tokens shared with the homeserver. "{placeholder}" is replaced by random tokens when you
  # run generate-registration.
  as_token: {as_token}
  hs_token: {hs_token}
  # Receive typing notifications, read receipts and presence (MSC2409).
  ephemeral_events: {ephemeral}
  # Largest request body accepted from the homeserver, in bytes.
  max_body_bytes: {max_body}
  # Signed public URLs of Matrix media for networks that fetch images themselves (the avatar
  # of a relayed user on a Discord webhook). The homeserver's media needs a token, so the
  # bridge serves these itself under /_bridge/media/.
  public_media:
    enabled: {public_media_enabled}
    # The bridge's address as seen from the remote network (e.g. https://bridge.example.com
    # behind a reverse proxy); appservice.address when empty.
    public_address: {public_media_address}

# Where the bridge keeps its state.
database:
  # sqlite:<file> or postgres://user:password@host/database
  # SQLite runs in WAL mode with synchronous=NORMAL: a crash of the bridge loses nothing,
  # but a power loss of the machine may lose the last events acknowledged to the
  # homeserver (it does not send them again). Use PostgreSQL where that matters.
  uri: {db_uri}
  max_connections: {db_max}

# Behaviour shared by all networks.
bridge:
  # Prefix of bot commands in rooms other than the management room.
  command_prefix: {prefix}
  # Who may use the bridge: keys are "*" (everyone), a server name or a user ID; the most
  # specific entry wins. Levels: block, relay, commands, user, admin.
  permissions:
{permissions}  # Relay mode: messages of users without a login are sent through someone else's.
  relay:
    enabled: {relay_enabled}
    # {{sender_displayname}}, {{sender_id}} and {{message}} are replaced.
    message_format: {relay_format}
  # History bridged when a portal room is created; 0 disables backfill.
  backfill:
    max_initial_messages: {backfill}
  # Seconds a login flow waits for the user before it is cancelled.
  login_timeout_secs: {login_timeout}
  # Seconds a login may stay disconnected, reconnecting by itself, before you are told in
  # your management room (and told again when it is back); shorter drops pass silently.
  notify_disconnect_after_secs: {notify_disconnect}
  # The provisioning HTTP API (/_matrix/provision/v3/...) that login GUIs speak.
  provisioning:
    enabled: {prov_enabled}
    # Bearer token of API clients. "{placeholder}" is replaced by a random secret when you
    # run generate-registration; "disable" turns the API off.
    shared_secret: {prov_secret}
  # Double puppeting (optional): what you send from the {display} app itself appears in
  # Matrix as sent by your real Matrix account instead of a ghost. It needs, per homeserver,
  # an extra appservice registration loaded by that homeserver (app_service_config_files):
  #   id: doublepuppet
  #   url: null
  #   as_token: <a random token>
  #   hs_token: <another random token>
  #   sender_localpart: <a random word>
  #   rate_limited: false
  #   namespaces: {{users: [{{regex: '@.*:example\.com', exclusive: false}}]}}
  # and its as_token here as "as_token:<token>", under the homeserver's server name.
  double_puppet:
    # Client-server API URLs of homeservers other than homeserver.domain.
    servers:{dp_servers}
    # "<server name>": "as_token:<token>"
    secrets:{dp_secrets}
  # End-to-bridge encryption: the bot gets a device of its own, answers in encrypted rooms
  # (the DMs Element X creates are encrypted) and bridges encrypted portals. The homeserver
  # must send to-device events and device-list changes to the bridge: in Synapse's
  # homeserver.yaml,
  #   experimental_features:
  #     msc2409_to_device_messages_enabled: true
  #     msc3202_transaction_extensions: true
  # (generate-registration writes the registration flags this needs). The keys are kept in
  # the bridge's database: protect it like the config.
  encryption:
    # Join and work in encrypted rooms. When false, the bot says so in encrypted rooms.
    allow: {enc_allow}
    # Create new portal rooms encrypted.
    default: {enc_default}
    # In encrypted portals, refuse messages that arrive unencrypted.
    require: {enc_require}
    # Share room keys only with devices their owners have verified (cross-signed).
    verified_only: {enc_verified}
    # Seconds to wait for the keys of a message before telling its sender it could not be
    # decrypted (it is still bridged if the keys arrive later).
    undecryptable_notice_secs: {enc_utd}

# Logging. RUST_LOG, when set, replaces level.
logging:
  # trace, debug, info, warn or error, optionally per crate: bridge_core=debug,info
  level: {log_level}
  # pretty or json
  format: {log_format}

# Settings of the {display} connection.
{network}"#,
        display = info.display_name,
        env = info.env_prefix,
        hs_address = q(example.homeserver.address.as_str()),
        domain = q(&example.homeserver.domain),
        as_address = q(appservice.address.as_str()),
        hostname = q(&appservice.hostname),
        port = appservice.port,
        id = q(&appservice.id),
        bot_username = q(&appservice.bot.username),
        bot_displayname = q(&appservice.bot.displayname),
        bot_avatar = q(&appservice.bot.avatar),
        template = q(&appservice.username_template),
        placeholder = super::TOKEN_PLACEHOLDER,
        as_token = q(&appservice.as_token),
        hs_token = q(&appservice.hs_token),
        ephemeral = appservice.ephemeral_events,
        max_body = appservice.max_body_bytes,
        public_media_enabled = appservice.public_media.enabled,
        public_media_address = appservice.public_media.public_address.as_ref().map_or_else(|| "null".to_owned(), |u| q(u.as_str())),
        db_uri = q(&example.database.uri),
        db_max = example.database.max_connections,
        prefix = q(&bridge.command_prefix),
        relay_enabled = bridge.relay.enabled,
        relay_format = q(&bridge.relay.message_format),
        backfill = bridge.backfill.max_initial_messages,
        login_timeout = bridge.login_timeout_secs,
        notify_disconnect = bridge.notify_disconnect_after_secs,
        prov_enabled = bridge.provisioning.enabled,
        prov_secret = q(&bridge.provisioning.shared_secret),
        dp_servers = yaml_map(bridge.double_puppet.servers.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        dp_secrets = yaml_map(bridge.double_puppet.secrets.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        enc_allow = bridge.encryption.allow,
        enc_default = bridge.encryption.default,
        enc_require = bridge.encryption.require,
        enc_verified = bridge.encryption.verified_only,
        enc_utd = bridge.encryption.undecryptable_notice_secs,
        log_level = q(&example.logging.level),
        log_format = match example.logging.format {
            super::LogFormat::Pretty => "pretty",
            super::LogFormat::Json => "json",
        },
    ))
}

/// `network:` and a network's own commented section, indented.
fn indent_section(text: &str) -> String {
    let mut out = String::from("network:\n");
    for line in text.trim_end().lines() {
        if line.trim().is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// The commented example config of network `N`, exactly as `generate-config` writes it.
pub fn example_config<N: crate::network::Network>() -> Result<String, ConfigError> {
    render::<N::Config>(&N::info(), N::example_network_section())
}

/// Checks a network's commented `network:` section (see
/// [`crate::network::Network::example_network_section`]): it must parse to exactly the
/// network's `Default` config, and every top-level key must have a comment above it.
/// Network crates call this from a unit test.
pub fn check_network_section<N: crate::network::Network>() -> Result<(), String> {
    let Some(text) = N::example_network_section() else { return Ok(()) };
    let parsed: N::Config = serde_saphyr::from_str(text).map_err(|e| format!("the network section does not parse: {e}"))?;
    let as_json = |c: &N::Config| serde_json::to_value(c).map_err(|e| e.to_string());
    let (parsed, default) = (as_json(&parsed)?, as_json(&N::Config::default())?);
    if parsed != default {
        return Err(format!("the network section parses to\n{parsed:#}\nbut the default config is\n{default:#}"));
    }
    let mut previous = "";
    for line in text.lines() {
        let top_level_key = !line.starts_with([' ', '#', '-']) && line.contains(':');
        if top_level_key && !previous.trim_start().starts_with('#') {
            return Err(format!("the key line `{line}` has no comment above it"));
        }
        if !line.trim().is_empty() {
            previous = line;
        }
    }
    // The whole file must still round-trip with the section in place.
    let info = N::info();
    let yaml = render::<N::Config>(&info, Some(text)).map_err(|e| e.to_string())?;
    let env = std::collections::BTreeMap::new();
    Config::<N::Config>::parse_with_env(std::path::Path::new("example.yaml"), &yaml, &info, &env).map_err(|e| e.to_string())?;
    Ok(())
}

/// `network:` and the network's default section, indented.
fn default_section<N: NetworkConfig>(network: &N) -> Result<String, ConfigError> {
    let yaml =
        serde_saphyr::to_string(network).map_err(|e| ConfigError::Serialize(e.to_string()))?;
    let yaml = yaml.trim_end();
    if yaml.is_empty() || yaml == "{}" || yaml == "null" || yaml == "~" {
        return Ok("network: {}\n".to_owned());
    }
    let mut out = String::from("network:\n");
    for line in yaml.lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "  {line}");
        }
    }
    Ok(out)
}

/// A map of strings as a YAML value after `key:` (at the double puppet section's depth):
/// ` {}` when empty, else one quoted `key: value` line per entry.
fn yaml_map<'a>(entries: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (key, value) in entries {
        let _ = write!(out, "\n      {}: {}", quote(key), quote(value));
    }
    if out.is_empty() {
        " {}".to_owned()
    } else {
        out
    }
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn quote(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| format!("\"{}\"", value.escape_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_maps_are_inline_when_empty_and_quoted_lines_otherwise() {
        let cases: [(&[(&str, &str)], &str); 2] = [
            (&[], " {}"),
            (&[("example.com", "as_token:a\"b")], "\n      \"example.com\": \"as_token:a\\\"b\""),
        ];
        for (entries, want) in cases {
            assert_eq!(yaml_map(entries.iter().copied()), want);
        }
    }
}
