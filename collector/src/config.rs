//! Collector configuration: the TOML file, its defaults and its validation.
//!
//! Every key is documented in `collector/glasswatch-collector.toml` (the
//! commented sample `--print-default-config` prints); an empty file gives the
//! same configuration. Errors name the file, line, column and key
//! ([`ConfigError`]). This module starts nothing.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use glasswatch_common::config::{invalid_at, invalid_key, mqtt_client_problem, parse_toml};
pub use glasswatch_common::config::{Bounded, BrokerUrl, ConfigError, Id};
use serde::Deserialize;

/// The commented sample configuration, also the documentation of every key.
pub const SAMPLE: &str = include_str!("../glasswatch-collector.toml");

/// The whole collector configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub mqtt: Mqtt,
    #[serde(default)]
    pub http: Http,
    #[serde(default)]
    pub hls: Hls,
    #[serde(default)]
    pub clock: Clock,
    #[serde(default)]
    pub matching: Matching,
    #[serde(default)]
    pub output: Output,
    /// Per-stream overrides of where to read HLS.
    #[serde(default, rename = "stream")]
    pub streams: Vec<toml::Spanned<StreamOverride>>,
}

/// The broker: an external one (`url`) or the embedded one (`listen`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mqtt {
    pub url: Option<BrokerUrl>,
    pub listen: SocketAddr,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub topic_root: String,
    pub client_id: Id,
    pub keep_alive_s: Bounded<5, 300>,
}

impl Default for Mqtt {
    fn default() -> Self {
        Mqtt {
            url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            topic_root: "glasswatch".into(),
            client_id: Id::parse("glasswatch-collector").expect("a literal valid id"),
            keep_alive_s: Bounded(10),
        }
    }
}

/// The HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    pub listen: SocketAddr,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

/// How streams are read over HLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hls {
    pub reload_ms: Bounded<10, 10_000>,
    pub request_timeout_ms: Bounded<100, 120_000>,
    pub retry_min_ms: Bounded<10, 60_000>,
    pub retry_max_ms: Bounded<10, 600_000>,
}

impl Default for Hls {
    fn default() -> Self {
        Hls {
            reload_ms: Bounded(100),
            request_timeout_ms: Bounded(10_000),
            retry_min_ms: Bounded(250),
            retry_max_ms: Bounded(5_000),
        }
    }
}

/// Clock sync with each device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Clock {
    pub ping_interval_s: Bounded<1, 3600>,
    pub window_s: Bounded<5, 86_400>,
    pub max_rtt_ms: Bounded<1, 60_000>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            ping_interval_s: Bounded(3),
            window_s: Bounded(60),
            max_rtt_ms: Bounded(2_000),
        }
    }
}

/// Matching frames to records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Matching {
    pub retention_s: Bounded<30, 3600>,
    pub wait_ms: Bounded<100, 60_000>,
}

impl Default for Matching {
    fn default() -> Self {
        Matching {
            retention_s: Bounded(30),
            wait_ms: Bounded(3_000),
        }
    }
}

/// Where summaries go besides the internal sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Output {
    pub publish_latency: bool,
}

impl Default for Output {
    fn default() -> Self {
        Output {
            publish_latency: true,
        }
    }
}

/// Where to read one stream instead of the `hls_url` its agent advertises.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOverride {
    pub device: Id,
    pub id: Id,
    pub hls_url: String,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::parse(&glasswatch_common::config::read(path)?, path)
    }

    /// Parses and validates config text; `file` is only used in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let config: Config = parse_toml(text, file)?;
        config.check(text, file)?;
        Ok(config)
    }

    fn check(&self, text: &str, file: &Path) -> Result<(), ConfigError> {
        let m = &self.mqtt;
        let problem = if let Some(p) = mqtt_client_problem(
            m.password.is_some(),
            m.password_file.is_some(),
            &m.topic_root,
            m.ca_file.is_some(),
            m.url.as_ref().is_some_and(|u| u.tls),
        ) {
            Some(p)
        } else if m.url.is_none() && (m.username.is_some() || m.password_file.is_some()) {
            Some((
                "mqtt.username",
                "the embedded broker takes no login; set mqtt.url to use one".to_owned(),
            ))
        } else if self.hls.retry_min_ms.get() > self.hls.retry_max_ms.get() {
            Some((
                "hls.retry_min_ms",
                "retry_min_ms is larger than retry_max_ms".to_owned(),
            ))
        } else {
            None
        };
        if let Some((key, message)) = problem {
            return Err(invalid_key(text, file, key, message));
        }
        let mut seen = HashSet::new();
        for (i, s) in self.streams.iter().enumerate() {
            let o = s.get_ref();
            let key = format!("stream[{i}]");
            if !seen.insert((o.device.as_str(), o.id.as_str())) {
                return Err(invalid_at(
                    text,
                    file,
                    s.span().start,
                    &key,
                    format!("{}/{} is overridden twice", o.device, o.id),
                ));
            }
            if !(o.hls_url.starts_with("http://") || o.hls_url.starts_with("https://")) {
                return Err(invalid_at(
                    text,
                    file,
                    s.span().start,
                    &format!("{key}.hls_url"),
                    format!("`{}` must start with http:// or https://", o.hls_url),
                ));
            }
        }
        Ok(())
    }

    /// The override of where to read `device/stream`, if any.
    pub fn hls_override(&self, device: &str, stream: &str) -> Option<&str> {
        self.streams
            .iter()
            .map(|s| s.get_ref())
            .find(|o| o.device.as_str() == device && o.id.as_str() == stream)
            .map(|o| o.hls_url.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("c.toml"))
    }

    fn err(text: &str) -> (usize, String, String) {
        let e = parse(text).unwrap_err();
        let (line, key, message) = e.located().unwrap();
        (line, key.to_owned(), message.to_owned())
    }

    #[test]
    fn sample_and_empty_file_give_the_defaults() {
        let sample = parse(SAMPLE).unwrap();
        let empty = parse("").unwrap();
        assert!(sample.mqtt.url.is_none() && empty.mqtt.url.is_none());
        assert_eq!(sample.mqtt.listen, empty.mqtt.listen);
        assert_eq!(sample.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(sample.hls.reload_ms, empty.hls.reload_ms);
        assert_eq!(sample.clock.ping_interval_s, empty.clock.ping_interval_s);
        assert_eq!(sample.matching.retention_s, empty.matching.retention_s);
        assert_eq!(sample.mqtt.keep_alive_s, empty.mqtt.keep_alive_s);
        assert_eq!(sample.mqtt.client_id, empty.mqtt.client_id);
        assert!(sample.output.publish_latency && empty.output.publish_latency);
    }

    #[test]
    fn issue_example_parses() {
        let c = parse(
            "[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\nlisten = \"127.0.0.1:1883\"\n[http]\nlisten = \"127.0.0.1:8080\"\n\
             [[stream]]\ndevice = \"pi-kitchen\"\nid = \"cam0\"\nhls_url = \"http://10.8.0.5:8888/pi-kitchen-cam0/index.m3u8\"\n",
        )
        .unwrap();
        assert_eq!(c.mqtt.url.as_ref().unwrap().port, 1883);
        assert_eq!(
            c.hls_override("pi-kitchen", "cam0"),
            Some("http://10.8.0.5:8888/pi-kitchen-cam0/index.m3u8")
        );
        assert_eq!(c.hls_override("pi-kitchen", "cam1"), None);
    }

    #[test]
    fn errors_point_at_the_key() {
        assert_eq!(err("[hls]\nreload_ms = 5\n").1, "hls.reload_ms");
        assert_eq!(err("[http]\nlisten = \"nowhere\"\n").1, "http.listen");
        assert_eq!(err("[mqtt]\nurl = \"http://x\"\n").1, "mqtt.url");
        assert_eq!(err("[mqtt]\nbogus = 1\n").1, "mqtt.bogus");
        let (line, key, _) = err("[mqtt]\nusername = \"u\"\n");
        assert_eq!((line, key.as_str()), (2, "mqtt.username"));
        let (_, key, _) = err("[[stream]]\ndevice = \"a\"\nid = \"b\"\nhls_url = \"rtsp://x\"\n");
        assert_eq!(key, "stream[0].hls_url");
        let dup = "[[stream]]\ndevice = \"a\"\nid = \"b\"\nhls_url = \"http://x\"\n";
        let (line, key, _) = err(&format!("{dup}{dup}"));
        assert_eq!((line, key.as_str()), (5, "stream[1]"));
        assert_eq!(err("[hls]\nretry_min_ms = 9000\n").1, "hls.retry_min_ms");
        assert_eq!(
            err("[[stream]]\ndevice = \"A\"\nid = \"b\"\nhls_url = \"http://x\"\n").1,
            "stream[0].device"
        );
    }
}
