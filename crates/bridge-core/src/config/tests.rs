//! Tests of loading, errors, environment overrides and the example config.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::*;

/// Facts of a made-up network for tests.
pub(crate) fn test_info() -> NetworkInfo {
    NetworkInfo {
        id: "test",
        display_name: "Test",
        bot_localpart: "testbot",
        ghost_template: "test_{id}",
        command_prefix: "!t",
        default_port: 29999,
        env_prefix: "TEST_BRIDGE",
        url: "https://example.invalid/test",
    }
}

/// The `network:` section of the made-up network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct TestNetConfig {
    pub api_url: String,
    pub retries: u32,
}

impl Default for TestNetConfig {
    fn default() -> Self {
        Self {
            api_url: "http://127.0.0.1:9000".into(),
            retries: 3,
        }
    }
}

type TestConfig = Config<TestNetConfig>;

const MINIMAL: &str = "homeserver:\n  address: http://127.0.0.1:8008\n  domain: example.com\n";

fn parse(text: &str, env: &[(&str, &str)]) -> Result<TestConfig, ConfigError> {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    TestConfig::parse_with_env(Path::new("configs/test.yaml"), text, &test_info(), &env)
        .map(|(c, _)| c)
}

fn as_json(config: &TestConfig) -> serde_json::Value {
    serde_json::to_value(config).expect("serializes")
}

#[test]
fn example_yaml_round_trips() {
    let info = test_info();
    let yaml = TestConfig::example_yaml(&info).expect("renders");
    let parsed = parse(&yaml, &[]).expect("example parses");
    assert_eq!(as_json(&parsed), as_json(&TestConfig::example(&info)));
    assert!(yaml.contains("network:\n  api_url:"), "{yaml}");
    assert!(yaml.contains("# "), "has comments");
}

#[test]
fn example_with_empty_network_section_round_trips() {
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Empty {}
    let yaml = Config::<Empty>::example_yaml(&test_info()).expect("renders");
    assert!(yaml.contains("network: {}"), "{yaml}");
    let env = BTreeMap::new();
    Config::<Empty>::parse_with_env(Path::new("x.yaml"), &yaml, &test_info(), &env)
        .expect("parses");
}

#[test]
fn minimal_file_takes_network_defaults() {
    let config = parse(MINIMAL, &[]).expect("parses");
    assert_eq!(config.appservice.port, 29999);
    assert_eq!(config.appservice.id, "test");
    assert_eq!(config.appservice.bot.username, "testbot");
    assert_eq!(config.appservice.username_template, "test_{id}");
    assert_eq!(
        config.appservice.address.as_str(),
        "http://127.0.0.1:29999/"
    );
    assert_eq!(config.database.uri, "sqlite:test.db");
    assert_eq!(config.bridge.command_prefix, "!t");
    assert!(config.appservice.has_placeholder_tokens());
    assert_eq!(config.network, TestNetConfig::default());

    let partial = parse(
        &format!("{MINIMAL}appservice:\n  port: 1234\n  bot:\n    displayname: B\n"),
        &[],
    )
    .expect("parses");
    assert_eq!(partial.appservice.port, 1234);
    assert_eq!(partial.appservice.id, "test");
    assert_eq!(partial.appservice.bot.username, "testbot");
    assert_eq!(partial.appservice.bot.displayname, "B");
    // The scope is restored afterwards.
    assert_eq!(defaults::current().id, "bridge");
}

/// Each bad file gives an error naming the file, the line, the key path, and a hint.
#[test]
fn errors_name_file_line_and_key() {
    let cases: [(&str, String, &str, &str); 8] = [
        (
            "yaml syntax",
            "homeserver: [\n".to_owned(),
            ":1:13:",
            "homeserver",
        ),
        (
            "wrong type",
            format!("{MINIMAL}appservice:\n  port: abc\n"),
            ":5:9:",
            "appservice.port",
        ),
        (
            "unknown key",
            format!("{MINIMAL}appservice:\n  prot: 1\n"),
            ":5:3:",
            "appservice.prot",
        ),
        (
            "missing address",
            "homeserver:\n  domain: example.com\n".to_owned(),
            ":2:",
            "homeserver.address",
        ),
        (
            "bad url",
            "homeserver:\n  address: nope\n  domain: example.com\n".to_owned(),
            ":2:",
            "homeserver.address",
        ),
        (
            "bad domain",
            "homeserver:\n  address: http://h\n  domain: a b\n".to_owned(),
            ":3:3:",
            "homeserver.domain",
        ),
        (
            "bad enum",
            format!("{MINIMAL}logging:\n  format: xml\n"),
            ":5:",
            "logging.format",
        ),
        (
            "network key",
            format!("{MINIMAL}network:\n  retries: many\n"),
            ":5:",
            "network.retries",
        ),
    ];
    for (name, text, line, key) in cases {
        let err = parse(&text, &[]).expect_err(name).to_string();
        assert!(err.starts_with("configs/test.yaml:"), "{name}: {err}");
        assert!(err.contains(line), "{name}: no {line} in {err}");
        assert!(err.contains(key), "{name}: no {key} in {err}");
    }
    let unknown = parse(&format!("{MINIMAL}appservice:\n  prot: 1\n"), &[])
        .expect_err("unknown")
        .to_string();
    assert!(
        unknown.contains("expected one of") && unknown.contains("spelling"),
        "{unknown}"
    );
    let missing = parse("homeserver:\n  domain: example.com\n", &[])
        .expect_err("missing")
        .to_string();
    assert!(
        missing.contains("add `address: <value>` under `homeserver:`"),
        "{missing}"
    );
}

#[test]
fn error_shows_the_offending_line() {
    let err = parse(&format!("{MINIMAL}appservice:\n  port: abc\n"), &[]).expect_err("bad port");
    assert_eq!(
        err.to_string(),
        "configs/test.yaml:5:9: appservice.port: invalid u16\n 5 |   port: abc\n   |         ^\n hint: expected a whole number from 0 to 65535"
    );
}

#[test]
fn load_reads_the_file_and_names_it_when_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yaml");
    let err =
        TestConfig::load_with_env(&path, &test_info(), &BTreeMap::new()).expect_err("no file");
    assert!(
        matches!(err, ConfigError::Read { .. }) && err.to_string().contains("config.yaml"),
        "{err}"
    );
    std::fs::write(&path, MINIMAL).expect("write");
    let loaded = TestConfig::load_with_env(&path, &test_info(), &BTreeMap::new()).expect("loads");
    assert_eq!(loaded.config.homeserver.domain, "example.com");
}

#[test]
fn environment_overrides_keys() {
    let text = format!("{MINIMAL}appservice:\n  port: 1000\n");
    let env = [
        ("TEST_BRIDGE__APPSERVICE__PORT", "2000"),
        ("TEST_BRIDGE__APPSERVICE__AS_TOKEN", "astoken"),
        ("TEST_BRIDGE__APPSERVICE__EPHEMERAL_EVENTS", "false"),
        // Encryption needs the ephemeral events (to-device keys come with them).
        ("TEST_BRIDGE__BRIDGE__ENCRYPTION__ALLOW", "false"),
        ("TEST_BRIDGE__BRIDGE__PERMISSIONS", "{\"*\": admin}"),
        ("TEST_BRIDGE__NETWORK__RETRIES", "7"),
        ("TEST_BRIDGE__LOGGING__LEVEL", "debug"),
        ("UNRELATED__APPSERVICE__PORT", "1"),
    ];
    let config = parse(&text, &env).expect("parses");
    assert_eq!(config.appservice.port, 2000);
    assert_eq!(config.appservice.as_token, "astoken");
    assert!(!config.appservice.ephemeral_events);
    assert_eq!(
        config.bridge.permission_for("@x:y.z"),
        PermissionLevel::Admin
    );
    assert_eq!(config.network.retries, 7);
    assert_eq!(config.logging.level, "debug");
    // Untouched keys keep the file's values and the defaults.
    assert_eq!(config.homeserver.domain, "example.com");
    assert_eq!(config.appservice.id, "test");
}

#[test]
fn environment_can_supply_a_missing_required_key() {
    let config = parse(
        "homeserver:\n  domain: example.com\n",
        &[("TEST_BRIDGE__HOMESERVER__ADDRESS", "http://synapse:8008")],
    )
    .expect("parses");
    assert_eq!(config.homeserver.address.as_str(), "http://synapse:8008/");
    let config = parse(
        "",
        &[
            ("TEST_BRIDGE__HOMESERVER__ADDRESS", "http://h"),
            ("TEST_BRIDGE__HOMESERVER__DOMAIN", "h.org"),
        ],
    )
    .expect("parses an empty file");
    assert_eq!(config.homeserver.domain, "h.org");
}

#[test]
fn environment_errors_name_the_variable() {
    let cases = [
        ("TEST_BRIDGE__APPSERVICE__PORT", "abc", "appservice.port"),
        ("TEST_BRIDGE__APPSERVICE__PORT", "0", "appservice.port"),
        ("TEST_BRIDGE__APPSERVICE__NOPE", "1", "appservice.nope"),
        (
            "TEST_BRIDGE__HOMESERVER__DOMAIN",
            "bad name",
            "homeserver.domain",
        ),
    ];
    for (var, value, key) in cases {
        let err = parse(MINIMAL, &[(var, value)]).expect_err(var).to_string();
        assert!(
            err.starts_with(&format!("environment variable {var}: {key}")),
            "{err}"
        );
    }
    // A problem in the file is still reported against the file when the environment is used.
    let err = parse(
        &format!("{MINIMAL}appservice:\n  port: abc\n"),
        &[("TEST_BRIDGE__LOGGING__LEVEL", "debug")],
    )
    .expect_err("bad file")
    .to_string();
    assert!(
        err.starts_with("configs/test.yaml:5:9: appservice.port"),
        "{err}"
    );
}

#[test]
fn validation_errors_are_located() {
    let err = parse(
        &format!("{MINIMAL}appservice:\n  username_template: nope\n"),
        &[],
    )
    .expect_err("template");
    let text = err.to_string();
    assert!(
        text.starts_with("configs/test.yaml:5:3: appservice.username_template:"),
        "{text}"
    );
    assert!(text.contains("{id}"), "{text}");
}

#[test]
fn save_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("saved.yaml");
    let mut config = TestConfig::example(&test_info());
    config.appservice.as_token = "a".into();
    config.appservice.hs_token = "b".into();
    config.save(&path).expect("saves");
    let loaded = TestConfig::load_with_env(&path, &test_info(), &BTreeMap::new()).expect("loads");
    assert_eq!(as_json(&loaded.config), as_json(&config));
}

/// A made-up network with a commented section, for [`check_network_section`].
struct Commented<const GOOD: u8>;

impl<const GOOD: u8> crate::network::Network for Commented<GOOD> {
    type Config = TestNetConfig;
    fn info() -> NetworkInfo {
        test_info()
    }
    fn connector(_: TestNetConfig) -> anyhow::Result<std::sync::Arc<dyn crate::network::NetworkConnector>> {
        anyhow::bail!("not used")
    }
    fn example_network_section() -> Option<&'static str> {
        Some(match GOOD {
            0 => "# Where the API is.\napi_url: \"http://127.0.0.1:9000\"\n# How often to retry.\nretries: 3\n",
            1 => "# Where the API is.\napi_url: \"http://127.0.0.1:9000\"\n# How often to retry.\nretries: 4\n",
            _ => "# Where the API is.\napi_url: \"http://127.0.0.1:9000\"\nretries: 3\n",
        })
    }
}

#[test]
fn commented_network_sections_are_checked_and_written() {
    check_network_section::<Commented<0>>().expect("a faithful section passes");
    let wrong = check_network_section::<Commented<1>>().expect_err("a different value is caught");
    assert!(wrong.contains("\"retries\": 4"), "{wrong}");
    let bare = check_network_section::<Commented<2>>().expect_err("a key without comment is caught");
    assert!(bare.contains("retries: 3"), "{bare}");
    let yaml = TestConfig::example_yaml_with(&test_info(), <Commented<0> as crate::network::Network>::example_network_section()).expect("renders");
    assert!(yaml.contains("network:\n  # Where the API is.\n  api_url: \"http://127.0.0.1:9000\"\n  # How often"), "{yaml}");
}
