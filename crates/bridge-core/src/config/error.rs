//! Config errors, and turning parser and validation failures into messages that name the
//! file, line, column and key path and say how to fix the problem.

use std::fmt;
use std::path::{Path, PathBuf};

/// Everything that can go wrong reading, checking or writing a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the config file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("{}: cannot write the file: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML, has a key of the wrong type, an unknown or missing key,
    /// or a value that fails validation.
    #[error("{0}")]
    Invalid(Box<Problem>),
    /// An environment variable that overrides a key has a bad value or names a bad key.
    #[error("environment variable {var}: {key}: {message}")]
    Env {
        /// The variable's name.
        var: String,
        /// The key path it overrides (`appservice.port`).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The config could not be turned into YAML.
    #[error("cannot serialize the config: {0}")]
    Serialize(String),
}

/// One problem in a config file, with where it is and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub location: Option<(usize, usize)>,
    /// Dotted key path (`appservice.port`); empty for the whole document.
    pub key: String,
    /// What is wrong, lowercase.
    pub message: String,
    /// The offending line of the file, when known.
    pub source_line: Option<String>,
    /// How to fix it.
    pub hint: Option<String>,
}

impl Problem {
    /// A problem at `key`, located in `text` by looking the key path up.
    pub(crate) fn at_key(
        file: &Path,
        text: &str,
        key: &str,
        message: String,
        hint: Option<String>,
    ) -> Self {
        let location = locate_key(text, key);
        Self::new(file, text, location, key, message, hint)
    }

    fn new(
        file: &Path,
        text: &str,
        location: Option<(usize, usize)>,
        key: &str,
        message: String,
        hint: Option<String>,
    ) -> Self {
        let source_line = location
            .and_then(|(line, _)| text.lines().nth(line.saturating_sub(1)))
            .map(str::to_owned);
        Self {
            file: file.to_owned(),
            location,
            key: key.to_owned(),
            message,
            source_line,
            hint,
        }
    }

    /// Builds a problem from a YAML deserialization error at `path` (from
    /// `serde_path_to_error`), adding the missing key's name and a hint.
    pub(crate) fn from_yaml(
        file: &Path,
        text: &str,
        path: &str,
        err: &serde_saphyr::Error,
    ) -> Self {
        let location = err
            .location()
            .map(|l| (l.line() as usize, l.column() as usize));
        let mut message = err.without_snippet().to_string();
        if let Some((line, column)) = location {
            let suffix = format!(" at line {line}, column {column}");
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message = stripped.to_owned();
            }
        }
        let path = if path == "." { "" } else { path };
        let (key, hint) = explain(path, &message);
        Self::new(file, text, location, &key, message, hint)
    }
}

/// Works out the full key path and a hint from a serde message.
fn explain(path: &str, message: &str) -> (String, Option<String>) {
    let join = |field: &str| {
        if path.is_empty() {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        }
    };
    if let Some(field) = backticked(message, "missing field `") {
        let place = if path.is_empty() {
            "at the top level".to_owned()
        } else {
            format!("under `{path}:`")
        };
        return (
            join(field),
            Some(format!(
                "add `{field}: <value>` {place}; `generate-config` writes an example"
            )),
        );
    }
    if let Some(field) = backticked(message, "unknown field `") {
        return (
            path.to_owned(),
            Some(format!(
                "`{field}` is not a known key here: check its spelling or remove it"
            )),
        );
    }
    if message.starts_with("unknown variant") {
        return (
            path.to_owned(),
            Some("use one of the values listed".to_owned()),
        );
    }
    if let Some(kind) = message.strip_prefix("invalid ") {
        let range = match kind {
            "u8" => Some("from 0 to 255"),
            "u16" => Some("from 0 to 65535"),
            "u32" => Some("from 0 to 4294967295"),
            "u64" | "usize" => Some("of 0 or more"),
            _ => None,
        };
        if let Some(range) = range {
            return (
                path.to_owned(),
                Some(format!("expected a whole number {range}")),
            );
        }
        if kind == "boolean" {
            return (path.to_owned(), Some("expected true or false".to_owned()));
        }
    }
    if message.contains("null into string") {
        return (
            path.to_owned(),
            Some("give it a value, or `\"\"` for an empty string".to_owned()),
        );
    }
    (path.to_owned(), None)
}

fn backticked<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message
        .strip_prefix(prefix)
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field)
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.location {
            write!(f, ":{line}:{column}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)?;
        if let (Some((line, column)), Some(source)) = (self.location, &self.source_line) {
            let number = line.to_string();
            let pad = " ".repeat(number.len());
            write!(
                f,
                "\n {number} | {source}\n {pad} | {}^",
                " ".repeat(column.saturating_sub(1))
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n hint: {hint}")?;
        }
        Ok(())
    }
}

/// Finds the 1-based line and column of a dotted key path in block-style YAML.
///
/// A plain line scanner, enough for config files written in the style `generate-config`
/// uses; returns `None` for anything it cannot follow (flow style, anchors).
pub(crate) fn locate_key(text: &str, key: &str) -> Option<(usize, usize)> {
    if key.is_empty() {
        return None;
    }
    let segments: Vec<&str> = key.split('.').collect();
    let mut depth = 0;
    let mut parent_indent: Option<usize> = None;
    let mut child_indent: Option<usize> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if parent_indent.is_some_and(|p| indent <= p) {
            return None;
        }
        match child_indent {
            None => child_indent = Some(indent),
            Some(c) if c != indent => continue,
            Some(_) => {}
        }
        if yaml_key(trimmed) == Some(segments[depth]) {
            if depth + 1 == segments.len() {
                return Some((index + 1, indent + 1));
            }
            depth += 1;
            parent_indent = Some(indent);
            child_indent = None;
        }
    }
    None
}

/// The key of a `key: value` line, without quotes.
pub(crate) fn yaml_key(trimmed: &str) -> Option<&str> {
    for quote in ['"', '\''] {
        if let Some(rest) = trimmed.strip_prefix(quote) {
            let (key, after) = rest.split_once(quote)?;
            return after.trim_start().starts_with(':').then_some(key);
        }
    }
    let end = trimmed
        .find(": ")
        .or_else(|| trimmed.strip_suffix(':').map(str::len))?;
    Some(trimmed[..end].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# comment
homeserver:
  address: http://x
  domain: d
appservice:
  # nested comment
  port: 1
  bot:
    username: b
bridge:
  permissions:
    \"*\": relay
    \"@a:b.c\": admin
";

    #[test]
    fn locate_key_follows_nesting() {
        let cases = [
            ("homeserver", Some((2, 1))),
            ("homeserver.domain", Some((4, 3))),
            ("appservice.port", Some((7, 3))),
            ("appservice.bot.username", Some((9, 5))),
            ("appservice.username", None),
            ("bridge.permissions.*", Some((12, 5))),
            ("bridge.permissions.@a:b.c", None), // dots in keys are ambiguous; not found
            ("database", None),
            ("", None),
        ];
        for (key, want) in cases {
            assert_eq!(locate_key(TEXT, key), want, "{key}");
        }
    }

    #[test]
    fn yaml_key_handles_quotes_and_values() {
        let cases = [
            ("port: 1", Some("port")),
            ("bot:", Some("bot")),
            ("\"@a:b.c\": admin", Some("@a:b.c")),
            ("'*': relay", Some("*")),
            ("- item", None),
            ("address: http://x:1", Some("address")),
        ];
        for (line, want) in cases {
            assert_eq!(yaml_key(line), want, "{line}");
        }
    }
}
