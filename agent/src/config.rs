//! Agent configuration: the TOML file, its defaults and its validation.
//!
//! Every key is documented in `agent/glasswatch-agent.toml` (the commented
//! sample that `--print-default-config` prints). Loading either yields a
//! complete, validated [`Config`] or a [`ConfigError`] naming the file, the
//! line and column, and the key. Validation happens while deserialising (the
//! `Id` and `Bounded` types reject bad values themselves), so the error points
//! at the offending value. This module starts nothing.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

/// The commented sample configuration, also the documentation of every key.
pub const SAMPLE: &str = include_str!("../glasswatch-agent.toml");

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

/// The whole agent configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This device's id, `[a-z0-9_-]{1,64}`; also the MQTT client id later.
    pub device_id: Id,
    /// When set, every frame record is appended to this file as one JSON line.
    #[serde(default)]
    pub frame_log: Option<PathBuf>,
    /// Reconnect behaviour after a failure (origin away, camera unplugged).
    #[serde(default)]
    pub retry: Retry,
    /// The MQTT broker frame records, status and stats go to.
    #[serde(default)]
    pub mqtt: Mqtt,
    /// The streams this device publishes; one `cam0` on `auto` when absent.
    #[serde(default = "default_streams", rename = "stream")]
    pub streams: Vec<toml::Spanned<StreamConfig>>,
}

/// Capped exponential backoff between pipeline restarts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    /// First wait after a failure, in milliseconds.
    pub initial_ms: Bounded<50, 60_000>,
    /// The wait doubles after each failure up to this many milliseconds.
    pub max_ms: Bounded<100, 600_000>,
    /// A pipeline that delivered no frame to the RTSP sink for this long is
    /// considered stalled and restarted, in milliseconds.
    pub stall_ms: Bounded<1_000, 600_000>,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            initial_ms: Bounded(500),
            max_ms: Bounded(10_000),
            stall_ms: Bounded(5_000),
        }
    }
}

/// MQTT reporting.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mqtt {
    /// Report over MQTT at all.
    pub enabled: bool,
    /// `mqtt://host[:1883]` or `mqtts://host[:8883]` (TLS with rustls).
    pub url: BrokerUrl,
    /// User name for the broker, if it asks for one.
    pub username: Option<String>,
    /// Password, inline; prefer `password_file`.
    pub password: Option<String>,
    /// File whose first line is the password (kept out of the config).
    pub password_file: Option<PathBuf>,
    /// PEM file with the CA certificate(s) to trust for `mqtts://`; the
    /// system's roots when absent.
    pub ca_file: Option<PathBuf>,
    /// First topic level (DESIGN.md: `glasswatch`).
    pub topic_root: String,
    /// How many seconds of frame records to keep while the broker is away.
    pub buffer_seconds: Bounded<1, 3600>,
    /// MQTT keep-alive in seconds; the Last Will arrives within about 1.5 times this.
    pub keep_alive_s: Bounded<5, 300>,
}

impl Default for Mqtt {
    fn default() -> Self {
        Mqtt {
            enabled: true,
            url: BrokerUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: 1883,
            },
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            topic_root: "glasswatch".into(),
            buffer_seconds: Bounded(120),
            keep_alive_s: Bounded(5),
        }
    }
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

/// One camera (or test pattern) published as one RTSP path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Stream id, `[a-z0-9_-]{1,64}`, unique on this device.
    pub id: Id,
    /// What to capture from.
    #[serde(default)]
    pub source: Source,
    #[serde(default = "default_width")]
    pub width: Bounded<16, 7680>,
    #[serde(default = "default_height")]
    pub height: Bounded<16, 4320>,
    #[serde(default = "default_fps")]
    pub fps: Bounded<1, 240>,
    /// Keyframe interval in frames.
    #[serde(default = "default_gop")]
    pub gop: Bounded<1, 1000>,
    #[serde(default = "default_bitrate")]
    pub bitrate_kbps: Bounded<16, 200_000>,
    #[serde(default)]
    pub encoder: EncoderPref,
    /// Burn in "PUB hh:mm:ss.mmm" (UTC) in blue, top left.
    #[serde(default = "default_true")]
    pub overlay: bool,
    /// Where to push over RTSP; `rtsp://127.0.0.1:8554/{device}-{stream}` when absent.
    #[serde(default)]
    pub publish_url: Option<String>,
    /// Where viewers (and the collector) read the stream over HLS; advertised later.
    #[serde(default)]
    pub hls_url: Option<String>,
    /// RTSP lower transport for the push.
    #[serde(default)]
    pub transport: Transport,
}

/// What a stream captures from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Source {
    /// `/dev/video0` if it exists when the pipeline starts, else the test pattern.
    #[default]
    Auto,
    /// A moving test pattern with a visible clock.
    Test,
    /// A V4L2 capture device node.
    V4l2(PathBuf),
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "auto" => Ok(Source::Auto),
            "test" => Ok(Source::Test),
            p if p.starts_with('/') => Ok(Source::V4l2(PathBuf::from(p))),
            other => Err(serde::de::Error::custom(format!(
                "`{other}` is neither \"auto\", \"test\" nor an absolute V4L2 device path such as \"/dev/video0\""
            ))),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Auto => f.write_str("auto"),
            Source::Test => f.write_str("test"),
            Source::V4l2(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Which H.264 encoder to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncoderPref {
    /// Hardware where the device has it (V4L2 M2M, then VA-API), else x264, else OpenH264.
    #[default]
    Auto,
    V4l2,
    Vaapi,
    X264,
    Openh264,
}

/// RTSP lower transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Tcp,
    Udp,
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

fn default_streams() -> Vec<toml::Spanned<StreamConfig>> {
    vec![toml::Spanned::new(
        0..0,
        StreamConfig {
            id: Id("cam0".into()),
            source: Source::Auto,
            width: default_width(),
            height: default_height(),
            fps: default_fps(),
            gop: default_gop(),
            bitrate_kbps: default_bitrate(),
            encoder: EncoderPref::Auto,
            overlay: true,
            publish_url: None,
            hls_url: None,
            transport: Transport::Tcp,
        },
    )]
}
fn default_width() -> Bounded<16, 7680> {
    Bounded(1280)
}
fn default_height() -> Bounded<16, 4320> {
    Bounded(720)
}
fn default_fps() -> Bounded<1, 240> {
    Bounded(30)
}
fn default_gop() -> Bounded<1, 1000> {
    Bounded(15)
}
fn default_bitrate() -> Bounded<16, 200_000> {
    Bounded(2000)
}
fn default_true() -> bool {
    true
}

impl StreamConfig {
    /// The RTSP URL this stream is pushed to.
    pub fn publish_url(&self, device: &str) -> String {
        self.publish_url
            .clone()
            .unwrap_or_else(|| format!("rtsp://127.0.0.1:8554/{device}-{}", self.id))
    }

    /// The HLS URL advertised for this stream.
    pub fn hls_url(&self, device: &str) -> String {
        self.hls_url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:8888/{device}-{}/index.m3u8", self.id))
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text; `file` is only used in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
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
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
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
        })?;
        config.check_unique_ids(text, file)?;
        config.check_mqtt(text, file)?;
        Ok(config)
    }

    fn check_unique_ids(&self, text: &str, file: &Path) -> Result<(), ConfigError> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, s) in self.streams.iter().enumerate() {
            if let Some(first) = seen.insert(s.get_ref().id.as_str(), i) {
                let (line, column) = line_col(text, s.span().start);
                return Err(ConfigError::Invalid {
                    file: file.to_owned(),
                    line,
                    column,
                    key: format!("stream[{i}].id"),
                    message: format!(
                        "stream id `{}` is already used by stream[{first}]; ids must be unique on a device",
                        s.get_ref().id
                    ),
                });
            }
        }
        Ok(())
    }

    fn check_mqtt(&self, text: &str, file: &Path) -> Result<(), ConfigError> {
        let m = &self.mqtt;
        let problem = if m.password.is_some() && m.password_file.is_some() {
            Some((
                "mqtt.password_file",
                "set either password or password_file, not both".to_owned(),
            ))
        } else if let Err(e) = glasswatch_common::topics::Topics::new(&m.topic_root) {
            Some(("mqtt.topic_root", e.to_string()))
        } else if m.ca_file.is_some() && !m.url.tls {
            Some((
                "mqtt.ca_file",
                "ca_file is only used with an mqtts:// url".to_owned(),
            ))
        } else {
            None
        };
        match problem {
            None => Ok(()),
            Some((key, message)) => {
                let leaf = key.rsplit('.').next().unwrap_or(key);
                let offset = find_key(text, leaf).unwrap_or(0);
                let (line, column) = line_col(text, offset);
                Err(ConfigError::Invalid {
                    file: file.to_owned(),
                    line,
                    column,
                    key: key.to_owned(),
                    message,
                })
            }
        }
    }

    /// The streams, without their spans.
    pub fn streams(&self) -> impl Iterator<Item = &StreamConfig> {
        self.streams.iter().map(|s| s.get_ref())
    }
}

/// Builds the key to report: the path serde was at, plus the field a
/// "missing field" or "unknown field" message names.
fn key_name(path: &str, message: &str) -> String {
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
fn find_key(text: &str, key: &str) -> Option<usize> {
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
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    fn err(text: &str) -> (usize, String, String) {
        match parse(text) {
            Err(ConfigError::Invalid {
                line, key, message, ..
            }) => (line, key, message),
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    #[test]
    fn sample_parses_and_matches_issue_keys() {
        let c = parse(SAMPLE).unwrap();
        assert_eq!(c.device_id.as_str(), "pi-kitchen");
        let s: Vec<_> = c.streams().collect();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].id.as_str(), "cam0");
        assert_eq!(s[0].fps.get(), 30);
        assert_eq!(
            s[0].publish_url(c.device_id.as_str()),
            "rtsp://127.0.0.1:8554/pi-kitchen-cam0"
        );
    }

    #[test]
    fn minimal_config_gets_working_defaults() {
        let c = parse("device_id = \"box\"\n").unwrap();
        let s: Vec<_> = c.streams().collect();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].source, Source::Auto);
        assert_eq!(s[0].encoder, EncoderPref::Auto);
        assert_eq!(
            s[0].publish_url(c.device_id.as_str()),
            "rtsp://127.0.0.1:8554/box-cam0"
        );
        assert_eq!(
            s[0].hls_url(c.device_id.as_str()),
            "http://127.0.0.1:8888/box-cam0/index.m3u8"
        );
        assert_eq!(c.retry.max_ms.get(), 10_000);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let (line, key, msg) = err("device_id = \"a\"\n[[stream]]\nid = \"cam0\"\nfsp = 30\n");
        assert_eq!(line, 4);
        assert_eq!(key, "stream[0].fsp");
        assert!(msg.contains("unknown field"), "{msg}");
    }

    #[test]
    fn wrong_type_is_named_with_its_line() {
        let (line, key, msg) =
            err("device_id = \"a\"\n[[stream]]\nid = \"cam0\"\nfps = \"thirty\"\n");
        assert_eq!(line, 4);
        assert_eq!(key, "stream[0].fps");
        assert!(msg.contains("invalid type"), "{msg}");
    }

    #[test]
    fn missing_device_id() {
        let (_, key, msg) = err("[[stream]]\nid = \"cam0\"\n");
        assert_eq!(key, "device_id");
        assert!(msg.contains("missing field"), "{msg}");
    }

    #[test]
    fn bad_ids() {
        let (line, key, msg) = err("device_id = \"Pi Kitchen\"\n");
        assert_eq!((line, key.as_str()), (1, "device_id"));
        assert!(msg.contains("a-z"), "{msg}");
        let long = "x".repeat(65);
        let (_, key, _) = err(&format!("device_id = \"a\"\n[[stream]]\nid = \"{long}\"\n"));
        assert_eq!(key, "stream[0].id");
        let (_, key, _) = err("device_id = \"\"\n");
        assert_eq!(key, "device_id");
    }

    #[test]
    fn duplicate_stream_ids() {
        let (line, key, msg) =
            err("device_id = \"a\"\n[[stream]]\nid = \"cam0\"\n\n[[stream]]\nid = \"cam0\"\n");
        assert_eq!(key, "stream[1].id");
        assert!(msg.contains("already used"), "{msg}");
        assert!(line >= 5, "line {line}");
    }

    #[test]
    fn out_of_range_and_bad_enum() {
        let (line, key, _) = err("device_id = \"a\"\n[[stream]]\nid = \"c\"\nfps = 0\n");
        assert_eq!((line, key.as_str()), (4, "stream[0].fps"));
        let (_, key, msg) = err("device_id = \"a\"\n[[stream]]\nid = \"c\"\nencoder = \"nvenc\"\n");
        assert_eq!(key, "stream[0].encoder");
        assert!(msg.contains("nvenc"), "{msg}");
        let (_, key, _) = err("device_id = \"a\"\n[[stream]]\nid = \"c\"\nsource = \"video0\"\n");
        assert_eq!(key, "stream[0].source");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let (line, key, _) = err("device_id = \"a\"\n[[stream]\n");
        assert_eq!(line, 2);
        assert_eq!(key, "(syntax)");
    }

    #[test]
    fn mqtt_defaults_and_urls() {
        let c = parse("device_id = \"a\"\n").unwrap();
        assert!(c.mqtt.enabled);
        assert_eq!(c.mqtt.url.to_string(), "mqtt://127.0.0.1:1883");
        assert_eq!(c.mqtt.buffer_seconds.get(), 120);
        let u = BrokerUrl::parse("mqtts://broker.example:8884").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port),
            (true, "broker.example", 8884)
        );
        assert_eq!(BrokerUrl::parse("mqtts://h").unwrap().port, 8883);
        assert_eq!(BrokerUrl::parse("mqtt://[::1]:1884").unwrap().host, "::1");
        for bad in [
            "tcp://h",
            "mqtt://",
            "mqtt://h:x",
            "mqtt://u@h",
            "mqtt://[::1",
        ] {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
        let (line, key, _) = err("device_id = \"a\"\n[mqtt]\nurl = \"http://x\"\n");
        assert_eq!((line, key.as_str()), (3, "mqtt.url"));
        let (line, key, _) =
            err("device_id = \"a\"\n[mqtt]\npassword = \"x\"\npassword_file = \"/p\"\n");
        assert_eq!((line, key.as_str()), (4, "mqtt.password_file"));
        let (_, key, _) = err("device_id = \"a\"\n[mqtt]\ntopic_root = \"a/#\"\n");
        assert_eq!(key, "mqtt.topic_root");
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}
