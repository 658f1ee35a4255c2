//! The MQTT topic tree: building topic names and recognising them.
//!
//! The tree is fixed by DESIGN.md ("MQTT topics"); only its root is configurable (default
//! [`DEFAULT_ROOT`], and it may have several levels, e.g. `site-a/glasswatch`):
//!
//! ```text
//! {root}/v1/devices/{device}/status                   agent → all, QoS 1, retained, Last Will
//! {root}/v1/devices/{device}/streams/{stream}/frames  agent → all, QoS 1
//! {root}/v1/devices/{device}/streams/{stream}/stats   agent → all, QoS 0
//! {root}/v1/devices/{device}/streams/{stream}/latency collector → all, QoS 0, retained
//! {root}/v1/devices/{device}/clock/ping               collector → agent, QoS 0
//! {root}/v1/devices/{device}/clock/pong               agent → collector, QoS 0
//! ```
//!
//! `{device}` and `{stream}` are `[a-z0-9_-]{1,64}` ([`valid_id`]). The builders do not check the
//! ids they are given (the agent's and collector's configurations do); [`Topics::parse`] does,
//! and rejects any topic whose ids are invalid. This module knows nothing about QoS, retain or
//! payloads beyond the comments above; see `messages` and `docs/mqtt.md`.

/// The topic root used when none is configured.
pub const DEFAULT_ROOT: &str = "glasswatch";
/// The version level under the root; a breaking change to any payload bumps it.
pub const VERSION_LEVEL: &str = "v1";
/// Longest id [`valid_id`] accepts.
pub const MAX_ID_LEN: usize = 64;
/// Longest root [`Topics::new`] accepts, in bytes. MQTT allows 65535 bytes for a whole topic;
/// this leaves ample room for the levels below the root.
pub const MAX_ROOT_LEN: usize = 1024;

/// Whether `s` is a valid device or stream id: 1 to 64 characters out of `a-z`, `0-9`, `_`, `-`.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Why a topic root was rejected by [`Topics::new`].
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum TopicError {
    /// The root is the empty string.
    #[error("MQTT topic root is empty")]
    Empty,
    /// The root is longer than [`MAX_ROOT_LEN`] bytes.
    #[error("MQTT topic root is {len} bytes, more than {MAX_ROOT_LEN}")]
    TooLong { len: usize },
    /// The root holds a character not allowed in a topic name: the wildcards `+` and `#`, or NUL.
    #[error("MQTT topic root has {ch:?} at byte {offset}; wildcards and NUL are not allowed")]
    InvalidChar { ch: char, offset: usize },
    /// The root starts with `/`.
    #[error("MQTT topic root starts with '/'")]
    LeadingSlash,
    /// The root ends with `/`.
    #[error("MQTT topic root ends with '/'")]
    TrailingSlash,
    /// The root has an empty level (`//`).
    #[error("MQTT topic root has an empty level at byte {offset}")]
    EmptyLevel { offset: usize },
    /// The root starts with `$`, which brokers reserve for themselves (`$SYS`).
    #[error("MQTT topic root starts with '$', which brokers reserve")]
    Reserved,
}

/// A topic of ours, recognised by [`Topics::parse`]. Ids in it are valid ([`valid_id`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    /// `{root}/v1/devices/{device}/status`
    Status { device: String },
    /// `{root}/v1/devices/{device}/streams/{stream}/frames`
    Frames { device: String, stream: String },
    /// `{root}/v1/devices/{device}/streams/{stream}/stats`
    Stats { device: String, stream: String },
    /// `{root}/v1/devices/{device}/streams/{stream}/latency`
    Latency { device: String, stream: String },
    /// `{root}/v1/devices/{device}/streams/{stream}/viewer`
    Viewer { device: String, stream: String },
    /// `{root}/v1/devices/{device}/clock/ping`
    ClockPing { device: String },
    /// `{root}/v1/devices/{device}/clock/pong`
    ClockPong { device: String },
}

impl Topic {
    /// The device the topic belongs to.
    pub fn device(&self) -> &str {
        match self {
            Topic::Status { device }
            | Topic::Frames { device, .. }
            | Topic::Stats { device, .. }
            | Topic::Latency { device, .. }
            | Topic::Viewer { device, .. }
            | Topic::ClockPing { device }
            | Topic::ClockPong { device } => device,
        }
    }

    /// The stream the topic belongs to, for per-stream topics.
    pub fn stream(&self) -> Option<&str> {
        match self {
            Topic::Frames { stream, .. }
            | Topic::Stats { stream, .. }
            | Topic::Latency { stream, .. }
            | Topic::Viewer { stream, .. } => Some(stream),
            Topic::Status { .. } | Topic::ClockPing { .. } | Topic::ClockPong { .. } => None,
        }
    }
}

/// The topic tree under one root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    root: String,
}

impl Default for Topics {
    /// The tree under [`DEFAULT_ROOT`].
    fn default() -> Topics {
        Topics {
            root: DEFAULT_ROOT.to_owned(),
        }
    }
}

impl Topics {
    /// The tree under `root`, which must be a valid MQTT topic name prefix: non-empty, without
    /// wildcards or NUL, without a leading or trailing `/` or an empty level, and not starting
    /// with `$`.
    pub fn new(root: &str) -> Result<Topics, TopicError> {
        if root.is_empty() {
            return Err(TopicError::Empty);
        }
        if root.len() > MAX_ROOT_LEN {
            return Err(TopicError::TooLong { len: root.len() });
        }
        if let Some((offset, ch)) = root
            .char_indices()
            .find(|&(_, c)| matches!(c, '+' | '#' | '\0'))
        {
            return Err(TopicError::InvalidChar { ch, offset });
        }
        if root.starts_with('/') {
            return Err(TopicError::LeadingSlash);
        }
        if root.ends_with('/') {
            return Err(TopicError::TrailingSlash);
        }
        if let Some(offset) = root.find("//") {
            return Err(TopicError::EmptyLevel { offset: offset + 1 });
        }
        if root.starts_with('$') {
            return Err(TopicError::Reserved);
        }
        Ok(Topics {
            root: root.to_owned(),
        })
    }

    /// The root all topics start with.
    pub fn root(&self) -> &str {
        &self.root
    }

    fn device(&self, device: &str) -> String {
        format!("{}/{VERSION_LEVEL}/devices/{device}", self.root)
    }

    fn stream(&self, device: &str, stream: &str, leaf: &str) -> String {
        format!("{}/streams/{stream}/{leaf}", self.device(device))
    }

    /// `{root}/v1/devices/{device}/status`: retained birth message and Last Will.
    pub fn status(&self, device: &str) -> String {
        format!("{}/status", self.device(device))
    }

    /// `{root}/v1/devices/{device}/streams/{stream}/frames`: batches of frame records.
    pub fn frames(&self, device: &str, stream: &str) -> String {
        self.stream(device, stream, "frames")
    }

    /// `{root}/v1/devices/{device}/streams/{stream}/stats`: the agent's figures every second.
    pub fn stats(&self, device: &str, stream: &str) -> String {
        self.stream(device, stream, "stats")
    }

    /// `{root}/v1/devices/{device}/streams/{stream}/latency`: the collector's measurements.
    pub fn latency(&self, device: &str, stream: &str) -> String {
        self.stream(device, stream, "latency")
    }

    /// `{root}/v1/devices/{device}/streams/{stream}/viewer`: what dashboard viewers saw.
    pub fn viewer(&self, device: &str, stream: &str) -> String {
        self.stream(device, stream, "viewer")
    }

    /// `{root}/v1/devices/{device}/clock/ping`: the collector's clock probe.
    pub fn clock_ping(&self, device: &str) -> String {
        format!("{}/clock/ping", self.device(device))
    }

    /// `{root}/v1/devices/{device}/clock/pong`: the agent's answer to a probe.
    pub fn clock_pong(&self, device: &str) -> String {
        format!("{}/clock/pong", self.device(device))
    }

    /// `{root}/v1/devices/#`: the subscription filter matching every topic of every device.
    pub fn all_devices(&self) -> String {
        format!("{}/{VERSION_LEVEL}/devices/#", self.root)
    }

    /// The topic name of `topic` (the inverse of [`Topics::parse`] for valid ids).
    pub fn name(&self, topic: &Topic) -> String {
        match topic {
            Topic::Status { device } => self.status(device),
            Topic::Frames { device, stream } => self.frames(device, stream),
            Topic::Stats { device, stream } => self.stats(device, stream),
            Topic::Latency { device, stream } => self.latency(device, stream),
            Topic::Viewer { device, stream } => self.viewer(device, stream),
            Topic::ClockPing { device } => self.clock_ping(device),
            Topic::ClockPong { device } => self.clock_pong(device),
        }
    }

    /// Recognises one of our topics. Returns `None` for a topic under another root or version,
    /// one not in the tree, and one whose device or stream id is not [`valid_id`].
    pub fn parse(&self, topic: &str) -> Option<Topic> {
        let rest = topic
            .strip_prefix(self.root.as_str())?
            .strip_prefix('/')?
            .strip_prefix(VERSION_LEVEL)?
            .strip_prefix("/devices/")?;
        let mut levels = rest.split('/');
        let device = levels.next().filter(|d| valid_id(d))?.to_owned();
        let parsed = match (levels.next()?, levels.next(), levels.next()) {
            ("status", None, None) => Topic::Status { device },
            ("clock", Some("ping"), None) => Topic::ClockPing { device },
            ("clock", Some("pong"), None) => Topic::ClockPong { device },
            ("streams", Some(stream), Some(leaf)) if valid_id(stream) => {
                let stream = stream.to_owned();
                match leaf {
                    "frames" => Topic::Frames { device, stream },
                    "stats" => Topic::Stats { device, stream },
                    "latency" => Topic::Latency { device, stream },
                    "viewer" => Topic::Viewer { device, stream },
                    _ => return None,
                }
            }
            _ => return None,
        };
        match levels.next() {
            None => Some(parsed),
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_documented_names() {
        let t = Topics::default();
        assert_eq!(t.root(), "glasswatch");
        assert_eq!(
            t.status("pi-kitchen"),
            "glasswatch/v1/devices/pi-kitchen/status"
        );
        assert_eq!(
            t.frames("pi-kitchen", "cam0"),
            "glasswatch/v1/devices/pi-kitchen/streams/cam0/frames"
        );
        assert_eq!(
            t.stats("pi-kitchen", "cam0"),
            "glasswatch/v1/devices/pi-kitchen/streams/cam0/stats"
        );
        assert_eq!(
            t.latency("pi-kitchen", "cam0"),
            "glasswatch/v1/devices/pi-kitchen/streams/cam0/latency"
        );
        assert_eq!(
            t.clock_ping("pi-kitchen"),
            "glasswatch/v1/devices/pi-kitchen/clock/ping"
        );
        assert_eq!(
            t.clock_pong("pi-kitchen"),
            "glasswatch/v1/devices/pi-kitchen/clock/pong"
        );
        assert_eq!(t.all_devices(), "glasswatch/v1/devices/#");
        let t = Topics::new("site-a/glasswatch").unwrap();
        assert_eq!(t.status("d"), "site-a/glasswatch/v1/devices/d/status");
        assert_eq!(t.all_devices(), "site-a/glasswatch/v1/devices/#");
    }

    #[test]
    fn parses_what_it_builds() {
        for root in ["glasswatch", "site-a/glasswatch", "a b/ü"] {
            let t = Topics::new(root).unwrap();
            let d = || "pi-kitchen".to_owned();
            let s = || "cam_0".to_owned();
            for topic in [
                Topic::Status { device: d() },
                Topic::Frames {
                    device: d(),
                    stream: s(),
                },
                Topic::Stats {
                    device: d(),
                    stream: s(),
                },
                Topic::Latency {
                    device: d(),
                    stream: s(),
                },
                Topic::Viewer {
                    device: d(),
                    stream: s(),
                },
                Topic::ClockPing { device: d() },
                Topic::ClockPong { device: d() },
            ] {
                let name = t.name(&topic);
                assert_eq!(t.parse(&name), Some(topic.clone()), "{name}");
                assert_eq!(topic.device(), "pi-kitchen");
            }
        }
    }

    #[test]
    fn parse_rejects_foreign_and_malformed_topics() {
        let t = Topics::default();
        for bad in [
            "",
            "glasswatch",
            "glasswatch/v1/devices",
            "glasswatch/v1/devices/",
            "glasswatch/v1/devices/pi/",
            "glasswatch/v1/devices/pi/status/",
            "glasswatch/v1/devices/pi/status/x",
            "glasswatch/v2/devices/pi/status",
            "glasswatchx/v1/devices/pi/status",
            "other/glasswatch/v1/devices/pi/status",
            "glasswatch/v1/devices/Pi/status",
            "glasswatch/v1/devices/pi.kitchen/status",
            "glasswatch/v1/devices//status",
            "glasswatch/v1/devices/+/status",
            "glasswatch/v1/devices/pi/clock",
            "glasswatch/v1/devices/pi/clock/pang",
            "glasswatch/v1/devices/pi/clock/ping/x",
            "glasswatch/v1/devices/pi/streams/cam0",
            "glasswatch/v1/devices/pi/streams/cam0/other",
            "glasswatch/v1/devices/pi/streams/cam0/frames/x",
            "glasswatch/v1/devices/pi/streams/CAM/frames",
            "glasswatch/v1/devices/pi/streams//frames",
            "glasswatch/v1/devices/pi/frames",
        ] {
            assert_eq!(t.parse(bad), None, "{bad:?}");
        }
        let long = "a".repeat(65);
        assert_eq!(t.parse(&t.status(&long)), None);
        let max = "a".repeat(64);
        assert!(t.parse(&t.status(&max)).is_some());
    }

    #[test]
    fn valid_ids() {
        for good in ["a", "pi-kitchen", "cam_0", "0", "-", &"z".repeat(64)] {
            assert!(valid_id(good), "{good:?}");
        }
        for bad in ["", "A", "a b", "a/b", "a+", "é", "a.b", &"z".repeat(65)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn new_rejects_bad_roots() {
        assert_eq!(Topics::new(""), Err(TopicError::Empty));
        assert_eq!(
            Topics::new("a/+/b"),
            Err(TopicError::InvalidChar { ch: '+', offset: 2 })
        );
        assert_eq!(
            Topics::new("a#"),
            Err(TopicError::InvalidChar { ch: '#', offset: 1 })
        );
        assert_eq!(
            Topics::new("a\0"),
            Err(TopicError::InvalidChar {
                ch: '\0',
                offset: 1
            })
        );
        assert_eq!(Topics::new("/a"), Err(TopicError::LeadingSlash));
        assert_eq!(Topics::new("/"), Err(TopicError::LeadingSlash));
        assert_eq!(Topics::new("a/"), Err(TopicError::TrailingSlash));
        assert_eq!(
            Topics::new("a//b"),
            Err(TopicError::EmptyLevel { offset: 2 })
        );
        assert_eq!(Topics::new("$SYS"), Err(TopicError::Reserved));
        assert_eq!(
            Topics::new(&"a".repeat(MAX_ROOT_LEN + 1)),
            Err(TopicError::TooLong {
                len: MAX_ROOT_LEN + 1
            })
        );
        assert!(Topics::new(&"a".repeat(MAX_ROOT_LEN)).is_ok());
        assert_eq!(Topics::new(DEFAULT_ROOT), Ok(Topics::default()));
    }
}
