//! Checks on a parsed config that types alone cannot express: server names, URL schemes,
//! the ghost template, permission keys, the log filter.

use url::Url;

use super::Config;

/// One failed check: the key path, what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    pub key: String,
    pub message: String,
    pub hint: Option<String>,
}

fn violation(key: impl Into<String>, message: impl Into<String>, hint: Option<&str>) -> Violation {
    Violation {
        key: key.into(),
        message: message.into(),
        hint: hint.map(str::to_owned),
    }
}

/// Every failed check, in file order.
pub(crate) fn check<N>(config: &Config<N>) -> Vec<Violation> {
    let mut out = Vec::new();
    check_http_url(&mut out, "homeserver.address", &config.homeserver.address);
    if let Err(e) = <&ruma::ServerName>::try_from(config.homeserver.domain.as_str()) {
        out.push(violation(
            "homeserver.domain",
            format!(
                "`{}` is not a valid server name: {e}",
                config.homeserver.domain
            ),
            Some("use the homeserver's server_name, the part after `:` in user IDs (example.com)"),
        ));
    }

    let appservice = &config.appservice;
    check_http_url(&mut out, "appservice.address", &appservice.address);
    if appservice.hostname.trim().is_empty() {
        out.push(violation(
            "appservice.hostname",
            "must not be empty",
            Some("use 127.0.0.1 or 0.0.0.0"),
        ));
    }
    if appservice.port == 0 {
        out.push(violation("appservice.port", "must not be 0", None));
    }
    if appservice.id.trim().is_empty() {
        out.push(violation("appservice.id", "must not be empty", None));
    }
    if let Err(message) = check_localpart(&appservice.bot.username) {
        out.push(violation(
            "appservice.bot.username",
            message,
            Some(LOCALPART_HINT),
        ));
    }
    let avatar = &appservice.bot.avatar;
    if !avatar.is_empty() && !avatar.starts_with("mxc://") {
        out.push(violation(
            "appservice.bot.avatar",
            "must be an mxc:// URI or empty",
            None,
        ));
    }
    let template = &appservice.username_template;
    if template.matches("{id}").count() != 1 {
        out.push(violation(
            "appservice.username_template",
            format!("`{template}` must contain `{{id}}` exactly once"),
            Some("for example `discord_{id}`"),
        ));
    } else if let Err(message) = check_localpart(&template.replace("{id}", "x")) {
        out.push(violation(
            "appservice.username_template",
            message,
            Some(LOCALPART_HINT),
        ));
    }
    if appservice.max_body_bytes == 0 {
        out.push(violation(
            "appservice.max_body_bytes",
            "must not be 0",
            None,
        ));
    }
    if let Some(public) = &appservice.public_media.public_address {
        if !matches!(public.scheme(), "http" | "https") {
            out.push(violation(
                "appservice.public_media.public_address",
                format!("`{public}` must be an http or https URL"),
                Some("the address at which the remote network reaches the bridge, e.g. https://bridge.example.com"),
            ));
        }
    }
    if !appservice.has_placeholder_tokens() && appservice.as_token == appservice.hs_token {
        out.push(violation(
            "appservice.hs_token",
            "must differ from as_token",
            Some("run generate-registration --rotate to make new tokens"),
        ));
    }

    let database = &config.database;
    let known_scheme = ["sqlite:", "postgres://", "postgresql://"]
        .iter()
        .any(|s| database.uri.starts_with(s));
    if !known_scheme {
        out.push(violation(
            "database.uri",
            "must start with sqlite:, postgres:// or postgresql://",
            Some("for example `sqlite:bridge.db` or `postgres://user:password@localhost/bridge`"),
        ));
    }
    if database.max_connections == 0 {
        out.push(violation(
            "database.max_connections",
            "must be at least 1",
            None,
        ));
    }

    let bridge = &config.bridge;
    if bridge.command_prefix.is_empty() || bridge.command_prefix.contains(char::is_whitespace) {
        out.push(violation(
            "bridge.command_prefix",
            "must be a non-empty word without spaces",
            None,
        ));
    }
    for key in bridge.permissions.keys() {
        let valid = key == "*"
            || if key.starts_with('@') {
                <&ruma::UserId>::try_from(key.as_str()).is_ok()
            } else {
                <&ruma::ServerName>::try_from(key.as_str()).is_ok()
            };
        if !valid {
            out.push(violation(
                "bridge.permissions",
                format!("`{key}` is neither `*`, a server name nor a user ID"),
                Some("keys look like `*`, `example.com` or `@alice:example.com`"),
            ));
        }
    }
    if bridge.encryption.allow && !config.appservice.ephemeral_events {
        out.push(violation(
            "bridge.encryption.allow",
            "needs appservice.ephemeral_events: true (the homeserver sends the keys of encrypted messages with the ephemeral events)",
            Some("set appservice.ephemeral_events: true, or bridge.encryption.allow: false"),
        ));
    }
    if (bridge.encryption.default || bridge.encryption.require) && !bridge.encryption.allow {
        out.push(violation(
            "bridge.encryption.allow",
            "must be true when bridge.encryption.default or require is",
            None,
        ));
    }
    if bridge.relay.enabled && !bridge.relay.message_format.contains("{message}") {
        out.push(violation(
            "bridge.relay.message_format",
            "must contain `{message}`",
            None,
        ));
    }
    for server in bridge.double_puppet.secrets.keys() {
        if <&ruma::ServerName>::try_from(server.as_str()).is_err() {
            out.push(violation(
                "bridge.double_puppet.secrets",
                format!("`{server}` is not a server name"),
                Some("keys are server names such as `example.com`"),
            ));
        } else if bridge.double_puppet.as_token(server).is_none() {
            out.push(violation(
                "bridge.double_puppet.secrets",
                format!("the secret for `{server}` must be `as_token:<token>`"),
                Some("use the as_token of the double-puppeting registration, prefixed with `as_token:`"),
            ));
        }
    }
    for (server, url) in &bridge.double_puppet.servers {
        check_http_url(&mut out, &format!("bridge.double_puppet.servers.{server}"), url);
    }

    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.logging.level) {
        out.push(violation(
            "logging.level",
            format!("`{}` is not a valid log filter: {e}", config.logging.level),
            Some("use trace, debug, info, warn or error, optionally per crate: `bridge_core=debug,info`"),
        ));
    }
    out
}

/// The server name the example config uses; a config that still contains it has not been
/// edited for this homeserver yet.
pub const PLACEHOLDER_DOMAIN: &str = "example.com";

/// The keys of `config` that still hold the example's [`PLACEHOLDER_DOMAIN`], in file
/// order: `homeserver.domain`, each `bridge.permissions` entry naming it, the public media
/// address and double-puppet servers on it. `run`, `check-config` and
/// `generate-registration` refuse such a config.
pub fn placeholder_keys<N>(config: &Config<N>) -> Vec<String> {
    let is_placeholder_host = |url: &Url| {
        url.host_str().is_some_and(|host| {
            host == PLACEHOLDER_DOMAIN || host.ends_with(&format!(".{PLACEHOLDER_DOMAIN}"))
        })
    };
    let names_placeholder = |name: &str| {
        name == PLACEHOLDER_DOMAIN || name.ends_with(&format!(":{PLACEHOLDER_DOMAIN}"))
    };
    let mut keys = Vec::new();
    if config.homeserver.domain == PLACEHOLDER_DOMAIN {
        keys.push("homeserver.domain".to_owned());
    }
    if let Some(url) = &config.appservice.public_media.public_address {
        if is_placeholder_host(url) {
            keys.push("appservice.public_media.public_address".to_owned());
        }
    }
    for name in config.bridge.permissions.keys() {
        if names_placeholder(name) {
            keys.push(format!("bridge.permissions.\"{name}\""));
        }
    }
    for server in config.bridge.double_puppet.servers.keys() {
        if names_placeholder(server) {
            keys.push(format!("bridge.double_puppet.servers.\"{server}\""));
        }
    }
    for server in config.bridge.double_puppet.secrets.keys() {
        if names_placeholder(server) {
            keys.push(format!("bridge.double_puppet.secrets.\"{server}\""));
        }
    }
    keys
}

const LOCALPART_HINT: &str = "use only a-z, 0-9 and . _ = - / +";

fn check_localpart(localpart: &str) -> Result<(), String> {
    if localpart.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let allowed = |c: char| matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '=' | '-' | '/' | '+');
    match localpart.chars().find(|c| !allowed(*c)) {
        Some(c) => Err(format!(
            "`{localpart}` contains `{c}`, which is not allowed in a Matrix localpart"
        )),
        None => Ok(()),
    }
}

fn check_http_url(out: &mut Vec<Violation>, key: &str, url: &Url) {
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        out.push(violation(
            key,
            format!("`{url}` must be an http:// or https:// URL with a host"),
            None,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{test_info, TestNetConfig};

    #[test]
    fn example_passes() {
        let config = Config::<TestNetConfig>::example(&test_info());
        assert_eq!(check(&config), vec![]);
    }

    #[test]
    fn placeholder_keys_name_every_example_value_left() {
        let mut config = Config::<TestNetConfig>::example(&test_info());
        assert_eq!(
            placeholder_keys(&config),
            [
                "homeserver.domain",
                "bridge.permissions.\"@admin:example.com\"",
                "bridge.permissions.\"example.com\"",
            ]
        );
        config.homeserver.domain = "matrix.org".into();
        config.bridge.permissions.remove("example.com");
        config.appservice.public_media.public_address =
            Some(Url::parse("https://bridge.example.com").expect("url"));
        assert_eq!(
            placeholder_keys(&config),
            [
                "appservice.public_media.public_address",
                "bridge.permissions.\"@admin:example.com\"",
            ]
        );
        // Names that merely end in the placeholder are someone's real domain.
        config.appservice.public_media.public_address = None;
        config.bridge.permissions.clear();
        config
            .bridge
            .permissions
            .insert("notexample.com".into(), crate::config::PermissionLevel::User);
        config
            .bridge
            .permissions
            .insert("@me:myexample.com".into(), crate::config::PermissionLevel::Admin);
        assert_eq!(placeholder_keys(&config), Vec::<String>::new());
    }

    #[test]
    fn each_bad_value_names_its_key() {
        type Edit = fn(&mut Config<TestNetConfig>);
        let cases: [(&str, Edit); 17] = [
            ("homeserver.address", |c| {
                c.homeserver.address = Url::parse("ftp://h").expect("url")
            }),
            ("homeserver.domain", |c| {
                c.homeserver.domain = "bad domain".into()
            }),
            ("appservice.address", |c| {
                c.appservice.address = Url::parse("unix:/x").expect("url")
            }),
            ("appservice.port", |c| c.appservice.port = 0),
            ("appservice.bot.username", |c| {
                c.appservice.bot.username = "Bot".into()
            }),
            ("appservice.bot.avatar", |c| {
                c.appservice.bot.avatar = "http://x/y.png".into()
            }),
            ("appservice.username_template", |c| {
                c.appservice.username_template = "discord_".into()
            }),
            ("appservice.username_template", |c| {
                c.appservice.username_template = "{id}_{id}".into()
            }),
            ("appservice.username_template", |c| {
                c.appservice.username_template = "Dc {id}".into()
            }),
            ("appservice.hs_token", |c| {
                c.appservice.as_token = "same".into();
                c.appservice.hs_token = "same".into();
            }),
            ("database.uri", |c| c.database.uri = "mysql://x".into()),
            ("bridge.permissions", |c| {
                c.bridge
                    .permissions
                    .insert("@nocolon".into(), crate::config::PermissionLevel::Admin);
            }),
            ("bridge.command_prefix", |c| {
                c.bridge.command_prefix = "! x".into()
            }),
            ("logging.level", |c| c.logging.level = "bridge=loud".into()),
            ("bridge.double_puppet.secrets", |c| {
                c.bridge.double_puppet.secrets.insert("example.com".into(), "token-without-prefix".into());
            }),
            ("bridge.double_puppet.secrets", |c| {
                c.bridge.double_puppet.secrets.insert("not a server".into(), "as_token:x".into());
            }),
            ("bridge.double_puppet.servers.other.org", |c| {
                c.bridge.double_puppet.servers.insert("other.org".into(), Url::parse("ftp://other.org").expect("url"));
            }),
        ];
        for (key, edit) in cases {
            let mut config = Config::<TestNetConfig>::example(&test_info());
            edit(&mut config);
            let found = check(&config);
            assert_eq!(found.len(), 1, "{key}: {found:?}");
            assert_eq!(found[0].key, key, "{found:?}");
        }
    }
}
