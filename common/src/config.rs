//! Shared configuration plumbing of the Glasswatch binaries (feature `config`):
//! TOML parsing with errors that name the file, line, column and key, and the
//! value types both the agent's and the collector's files use (ids, bounded
//! numbers, broker URLs). Subscribers that only need the wire contract leave
//! the feature off and do not pull in `toml`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// Where a config error was found, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: key `{key}`: {message}")]
    Invalid {
        file: PathBuf,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
}

/// A broker address from `mqtt://host[:port]` or `mqtts://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    pub fn parse(s: &str) -> Result<BrokerUrl, String> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(format!("`{s}` must start with mqtt:// or mqtts://"));
        };
        let rest = rest.trim_end_matches('/');
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("`{s}`: unclosed [ in an IPv6 address"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("`{s}`: bad port `{p}`"))?,
                None if after.is_empty() => default_port,
                None => return Err(format!("`{s}`: unexpected `{after}` after the address")),
            };
            (h.to_owned(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    p.parse().map_err(|_| format!("`{s}`: bad port `{p}`"))?,
                ),
                None => (rest.to_owned(), default_port),
            }
        };
        if host.is_empty() || host.contains(['/', '@', '?', '#']) {
            return Err(format!(
                "`{s}`: expected mqtt[s]://host[:port] with no path or user info"
            ));
        }
        Ok(BrokerUrl { tls, host, port })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl<'de> Deserialize<'de> for BrokerUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BrokerUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A device or stream id: `[a-z0-9_-]{1,64}` (DESIGN.md, MQTT topics).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Id(String);

impl Id {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks the id grammar; the error says what is wrong.
    pub fn parse(s: &str) -> Result<Id, String> {
        if s.is_empty() || s.len() > 64 {
            return Err(format!(
                "`{s}` must be 1 to 64 characters long (it has {})",
                s.len()
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
        {
            return Err(format!(
                "`{s}` contains {c:?}; ids may only use a-z, 0-9, '_' and '-'"
            ));
        }
        Ok(Id(s.to_owned()))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Id::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An unsigned integer that must lie in `MIN..=MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounded<const MIN: u32, const MAX: u32>(pub u32);

impl<const MIN: u32, const MAX: u32> Bounded<MIN, MAX> {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de, const MIN: u32, const MAX: u32> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        if v < i64::from(MIN) || v > i64::from(MAX) {
            return Err(serde::de::Error::custom(format!(
                "{v} is out of range, expected {MIN} to {MAX}"
            )));
        }
        // In range of u32 by the check above.
        Ok(Bounded(v as u32))
    }
}

/// Builds the key to report: the path serde was at, plus the field a
/// "missing field" or "unknown field" message names.
pub fn key_name(path: &str, message: &str) -> String {
    // `toml::Spanned` shows up in serde's path as a private field; hide it.
    let path = path.replace(".$__serde_spanned_private_value", "");
    let path = path.as_str();
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split('`').next());
    match (path, named) {
        (".", Some(field)) => field.to_owned(),
        (p, Some(field)) if !p.ends_with(field) => format!("{p}.{field}"),
        (p, _) => p.to_owned(),
    }
}

/// Byte offset of the line assigning `key` (`key =` at a line start).
pub fn find_key(text: &str, key: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            return Some(offset + (line.len() - t.len()));
        }
        offset += line.len();
    }
    None
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

impl ConfigError {
    /// Line, key and message of an [`ConfigError::Invalid`] (for callers and
    /// tests that check where an error points).
    pub fn located(&self) -> Option<(usize, &str, &str)> {
        match self {
            ConfigError::Invalid {
                line, key, message, ..
            } => Some((*line, key, message)),
            ConfigError::Read { .. } => None,
        }
    }
}

/// Reads a config file's text.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_owned(),
        source,
    })
}

/// The problem, if any, with the `[mqtt]` keys every binary shares: a
/// password given twice, a bad topic root, a CA file without TLS. Returns
/// the dotted key and the message, for [`invalid_key`].
pub fn mqtt_client_problem(
    password: bool,
    password_file: bool,
    topic_root: &str,
    ca_file: bool,
    tls: bool,
) -> Option<(&'static str, String)> {
    if password && password_file {
        Some((
            "mqtt.password_file",
            "set either password or password_file, not both".to_owned(),
        ))
    } else if let Err(e) = crate::topics::Topics::new(topic_root) {
        Some(("mqtt.topic_root", e.to_string()))
    } else if ca_file && !tls {
        Some((
            "mqtt.ca_file",
            "ca_file is only used with an mqtts:// url".to_owned(),
        ))
    } else {
        None
    }
}

/// Parses TOML text into `T`; `file` is only used in errors. Syntax errors and
/// type, range or unknown-key errors all come back as [`ConfigError::Invalid`]
/// pointing at the offending line, column and key.
pub fn parse_toml<T: DeserializeOwned>(text: &str, file: &Path) -> Result<T, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ConfigError::Invalid {
            file: file.to_owned(),
            line,
            column,
            key: "(syntax)".into(),
            message: e.message().trim().to_owned(),
        }
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.message().trim().to_owned();
        let (line, column) = inner
            .span()
            .map(|s| line_col(text, s.start))
            .unwrap_or((1, 1));
        ConfigError::Invalid {
            file: file.to_owned(),
            line,
            column,
            key: key_name(&path, &message),
            message,
        }
    })
}

/// Reads a file and parses it with [`parse_toml`].
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<(T, String), ConfigError> {
    let text = read(path)?;
    let value = parse_toml(&text, path)?;
    Ok((value, text))
}

/// An error about dotted `key` found by a check after parsing: points at the
/// line assigning the key's last component, or at the start of the file.
pub fn invalid_key(text: &str, file: &Path, key: &str, message: String) -> ConfigError {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    let offset = find_key(text, leaf).unwrap_or(0);
    invalid_at(text, file, offset, key, message)
}

/// An error about `key` at byte `offset` of `text`.
pub fn invalid_at(
    text: &str,
    file: &Path,
    offset: usize,
    key: &str,
    message: String,
) -> ConfigError {
    let (line, column) = line_col(text, offset);
    ConfigError::Invalid {
        file: file.to_owned(),
        line,
        column,
        key: key.to_owned(),
        message,
    }
}

/// Reads the password of an MQTT login: inline, else the first line of a file.
pub fn read_password(
    password: Option<&str>,
    password_file: Option<&Path>,
) -> Result<String, ConfigError> {
    match (password, password_file) {
        (Some(p), _) => Ok(p.to_owned()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                file: path.to_owned(),
                source,
            })?;
            Ok(text.lines().next().unwrap_or_default().to_owned())
        }
        (None, None) => Ok(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        id: Id,
        n: Bounded<1, 10>,
        #[serde(default)]
        url: Option<BrokerUrl>,
    }

    fn err(text: &str) -> (usize, String, String) {
        let e = parse_toml::<Sample>(text, Path::new("t.toml")).unwrap_err();
        let (line, key, message) = e.located().unwrap();
        (line, key.to_owned(), message.to_owned())
    }

    #[test]
    fn errors_name_line_and_key() {
        assert!(parse_toml::<Sample>("id = \"a\"\nn = 3\n", Path::new("t")).is_ok());
        let (line, key, _) = err("id = \"a\"\nn = 30\n");
        assert_eq!((line, key.as_str()), (2, "n"));
        let (line, key, msg) = err("id = \"A\"\nn = 3\n");
        assert_eq!((line, key.as_str()), (1, "id"), "{msg}");
        let (_, key, _) = err("id = \"a\"\nn = 3\nzz = 1\n");
        assert_eq!(key, "zz");
        let (line, key, _) = err("id = \"a\"\nn = 3\nurl = \"http://x\"\n");
        assert_eq!((line, key.as_str()), (3, "url"));
        let (line, key, _) = err("id = \"a\"\nn = [\n");
        assert_eq!((line, key.as_str()), (2, "(syntax)"));
    }

    #[test]
    fn broker_urls() {
        let u = BrokerUrl::parse("mqtts://broker.example:8884").unwrap();
        assert!(u.tls && u.host == "broker.example" && u.port == 8884);
        assert_eq!(u.to_string(), "mqtts://broker.example:8884");
        assert_eq!(BrokerUrl::parse("mqtts://h").unwrap().port, 8883);
        assert_eq!(BrokerUrl::parse("mqtt://[::1]:1884").unwrap().host, "::1");
        for bad in [
            "http://h",
            "mqtt://",
            "mqtt://u@h",
            "mqtt://h:x",
            "mqtt://h/p",
        ] {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
    }

    #[test]
    fn invalid_key_points_at_the_assignment() {
        let text = "[mqtt]\nurl = \"x\"\n  password_file = \"p\"\n";
        match invalid_key(text, Path::new("f"), "mqtt.password_file", "m".into()) {
            ConfigError::Invalid { line, column, .. } => assert_eq!((line, column), (3, 3)),
            e => panic!("{e:?}"),
        }
    }
}
