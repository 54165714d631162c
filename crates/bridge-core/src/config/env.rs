//! Environment variables that override config keys.
//!
//! `<PREFIX>__<SECTION>__<KEY>` sets `section.key` (double underscores separate levels, since
//! keys contain single ones): `DISCORD_BRIDGE__APPSERVICE__AS_TOKEN=...`. A variable whose
//! last part ends in `_FILE` instead reads the value from that file, trailing newline
//! removed (`DISCORD_BRIDGE__APPSERVICE__AS_TOKEN_FILE=/run/secrets/as_token`), unless a key
//! with that exact name exists. Values are strings; YAML turns them into numbers or booleans
//! where the key needs one. A key whose example value is a mapping or a list takes a YAML
//! flow value (`{"*": relay}`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::ConfigError;

/// One override: which variable sets which key to what.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Override {
    /// The variable's name.
    pub var: String,
    /// The key path, lowercase.
    pub path: Vec<String>,
    /// The value to set.
    pub value: Value,
}

impl Override {
    /// The dotted key path.
    pub fn key(&self) -> String {
        self.path.join(".")
    }
}

/// Collects the overrides for `prefix` from `env`; `known` is the example config as a
/// tree, used to tell `_file` keys from file indirection and to spot structured keys.
pub(crate) fn collect(
    prefix: &str,
    env: &BTreeMap<String, String>,
    known: &Value,
) -> Result<Vec<Override>, ConfigError> {
    let start = format!("{prefix}__");
    let mut overrides = Vec::new();
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(&start) else {
            continue;
        };
        let mut path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
        if path
            .iter()
            .any(|s| s.is_empty() || s.starts_with('_') || s.ends_with('_'))
        {
            return Err(env_error(
                var,
                &path.join("."),
                "bad key: separate levels with exactly two underscores",
            ));
        }
        let mut raw = raw.clone();
        let last = path.len() - 1;
        if lookup(known, &path).is_none() {
            if let Some(stripped) = path[last].strip_suffix("_file").map(str::to_owned) {
                path[last] = stripped;
                raw = std::fs::read_to_string(&raw).map_err(|e| {
                    env_error(var, &path.join("."), &format!("cannot read {raw}: {e}"))
                })?;
                let trimmed = raw.trim_end_matches(['\n', '\r']).len();
                raw.truncate(trimmed);
            }
        }
        let value = match lookup(known, &path) {
            Some(Value::Object(_) | Value::Array(_)) => serde_saphyr::from_str::<Value>(&raw)
                .map_err(|e| {
                    env_error(
                        var,
                        &path.join("."),
                        &format!("expected a YAML mapping or list: {}", e.without_snippet()),
                    )
                })?,
            _ => Value::String(raw),
        };
        overrides.push(Override {
            var: var.clone(),
            path,
            value,
        });
    }
    Ok(overrides)
}

/// Sets every override in `tree`, creating sections that are missing.
pub(crate) fn apply(tree: &mut Value, overrides: &[Override]) -> Result<(), ConfigError> {
    if tree.is_null() {
        *tree = Value::Object(Map::new());
    }
    for o in overrides {
        let mut node = &mut *tree;
        for (i, segment) in o.path.iter().enumerate() {
            if node.is_null() {
                *node = Value::Object(Map::new());
            }
            let Value::Object(map) = node else {
                let parent = o.path[..i].join(".");
                return Err(env_error(
                    &o.var,
                    &o.key(),
                    &format!("`{parent}` in the file is not a mapping"),
                ));
            };
            if i + 1 == o.path.len() {
                map.insert(segment.clone(), o.value.clone());
                break;
            }
            node = map.entry(segment.clone()).or_insert(Value::Null);
        }
    }
    Ok(())
}

fn lookup<'a>(tree: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(tree, |node, segment| node.as_object()?.get(segment))
}

fn env_error(var: &str, key: &str, message: &str) -> ConfigError {
    ConfigError::Env {
        var: var.to_owned(),
        key: key.to_owned(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn known() -> Value {
        json!({"appservice": {"as_token": "x", "port": 1}, "bridge": {"permissions": {"*": "relay"}},
               "network": {"session_file": "a"}})
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn collects_by_prefix_with_double_underscores() {
        let env = env(&[
            ("X__APPSERVICE__AS_TOKEN", "tok"),
            ("X__APPSERVICE__PORT", "8080"),
            ("X_APPSERVICE__PORT", "1"),
            ("OTHER__APPSERVICE__PORT", "2"),
            ("X__NETWORK__SESSION_FILE", "/keep/as/is"),
            ("X__BRIDGE__PERMISSIONS", "{\"*\": admin}"),
        ]);
        let got = collect("X", &env, &known()).expect("collect");
        let got: Vec<(String, Value)> = got.iter().map(|o| (o.key(), o.value.clone())).collect();
        assert_eq!(
            got,
            vec![
                ("appservice.as_token".to_owned(), json!("tok")),
                ("appservice.port".to_owned(), json!("8080")),
                ("bridge.permissions".to_owned(), json!({"*": "admin"})),
                ("network.session_file".to_owned(), json!("/keep/as/is")),
            ]
        );
    }

    #[test]
    fn file_suffix_reads_and_trims() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret\n").expect("write");
        let env = env(&[(
            "X__APPSERVICE__AS_TOKEN_FILE",
            secret.to_str().expect("utf-8"),
        )]);
        let got = collect("X", &env, &known()).expect("collect");
        assert_eq!(got[0].key(), "appservice.as_token");
        assert_eq!(got[0].value, json!("s3cret"));

        let env = self::env(&[("X__APPSERVICE__HS_TOKEN_FILE", "/does/not/exist")]);
        let err = collect("X", &env, &known()).expect_err("missing file");
        assert!(
            err.to_string().contains("X__APPSERVICE__HS_TOKEN_FILE"),
            "{err}"
        );
    }

    #[test]
    fn bad_names_and_values_name_the_variable() {
        let cases = [
            ("X__APPSERVICE___PORT", "1"),
            ("X__BRIDGE__PERMISSIONS", "[unclosed"),
        ];
        for (var, value) in cases {
            let err = collect("X", &env(&[(var, value)]), &known()).expect_err(var);
            assert!(err.to_string().contains(var), "{err}");
        }
    }

    #[test]
    fn apply_creates_sections_and_rejects_scalars() {
        let mut tree = json!({"homeserver": {"domain": "d"}, "logging": "oops"});
        let set = |var: &str, path: &[&str], value: Value| Override {
            var: var.to_owned(),
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            value,
        };
        apply(
            &mut tree,
            &[
                set("A", &["homeserver", "address"], json!("http://h")),
                set("B", &["appservice", "bot", "username"], json!("u")),
            ],
        )
        .expect("apply");
        assert_eq!(
            tree["homeserver"],
            json!({"domain": "d", "address": "http://h"})
        );
        assert_eq!(tree["appservice"], json!({"bot": {"username": "u"}}));
        let err = apply(
            &mut tree,
            &[set("C", &["logging", "level"], json!("debug"))],
        )
        .expect_err("scalar parent");
        assert!(
            err.to_string()
                .contains("environment variable C: logging.level"),
            "{err}"
        );

        let mut empty = Value::Null;
        apply(&mut empty, &[set("D", &["a", "b"], json!("c"))]).expect("apply on empty");
        assert_eq!(empty, json!({"a": {"b": "c"}}));
    }
}
