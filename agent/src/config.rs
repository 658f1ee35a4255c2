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

use glasswatch_common::config::{invalid_at, invalid_key, mqtt_client_problem, parse_toml};
pub use glasswatch_common::config::{Bounded, BrokerUrl, ConfigError, Id};
use serde::{Deserialize, Deserializer};

/// The commented sample configuration, also the documentation of every key.
pub const SAMPLE: &str = include_str!("../glasswatch-agent.toml");

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

fn default_streams() -> Vec<toml::Spanned<StreamConfig>> {
    vec![toml::Spanned::new(
        0..0,
        StreamConfig {
            id: Id::parse("cam0").expect("a literal valid id"),
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
        Config::parse(&glasswatch_common::config::read(path)?, path)
    }

    /// Parses and validates config text; `file` is only used in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let config: Config = parse_toml(text, file)?;
        config.check_unique_ids(text, file)?;
        config.check_mqtt(text, file)?;
        Ok(config)
    }

    fn check_unique_ids(&self, text: &str, file: &Path) -> Result<(), ConfigError> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, s) in self.streams.iter().enumerate() {
            if let Some(first) = seen.insert(s.get_ref().id.as_str(), i) {
                return Err(invalid_at(
                    text,
                    file,
                    s.span().start,
                    &format!("stream[{i}].id"),
                    format!(
                        "stream id `{}` is already used by stream[{first}]; ids must be unique on a device",
                        s.get_ref().id
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_mqtt(&self, text: &str, file: &Path) -> Result<(), ConfigError> {
        let m = &self.mqtt;
        let problem = mqtt_client_problem(
            m.password.is_some(),
            m.password_file.is_some(),
            &m.topic_root,
            m.ca_file.is_some(),
            m.url.tls,
        );
        match problem {
            None => Ok(()),
            Some((key, message)) => Err(invalid_key(text, file, key, message)),
        }
    }

    /// The streams, without their spans.
    pub fn streams(&self) -> impl Iterator<Item = &StreamConfig> {
        self.streams.iter().map(|s| s.get_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    fn err(text: &str) -> (usize, String, String) {
        let e = parse(text).unwrap_err();
        let (line, key, message) = e.located().unwrap();
        (line, key.to_owned(), message.to_owned())
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
        // URL grammar: common::config's tests.
        let (line, key, _) = err("device_id = \"a\"\n[mqtt]\nurl = \"http://x\"\n");
        assert_eq!((line, key.as_str()), (3, "mqtt.url"));
        let (line, key, _) =
            err("device_id = \"a\"\n[mqtt]\npassword = \"x\"\npassword_file = \"/p\"\n");
        assert_eq!((line, key.as_str()), (4, "mqtt.password_file"));
        let (_, key, _) = err("device_id = \"a\"\n[mqtt]\ntopic_root = \"a/#\"\n");
        assert_eq!(key, "mqtt.topic_root");
    }
}
