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
    #[serde(default)]
    pub storage: Storage,
    #[serde(default)]
    pub dashboard: Dashboard,
    /// People who may log in.
    #[serde(default, rename = "user")]
    pub users: Vec<toml::Spanned<UserEntry>>,
    /// Per-stream overrides of where to read HLS.
    #[serde(default, rename = "stream")]
    pub streams: Vec<toml::Spanned<StreamOverride>>,
    /// The folder of the file this was read from (relative storage paths
    /// start there); `None` for the built-in defaults.
    #[serde(skip)]
    pub dir: Option<PathBuf>,
}

/// The broker: an external one (`url`) or the embedded one (`listen`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mqtt {
    pub url: Option<BrokerUrl>,
    pub listen: SocketAddr,
    /// The embedded broker's device logins (`device:argon2id-hash` lines).
    pub users_file: Option<PathBuf>,
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
            users_file: None,
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

/// Whether people must log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Login,
    None,
}

/// The HTTP side (API, dashboard): address, login, TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    pub listen: SocketAddr,
    pub auth: AuthMode,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub session_hours: Bounded<1, 720>,
    pub tokens_file: PathBuf,
    pub login_max_failures: Bounded<1, 1000>,
    pub login_window_s: Bounded<1, 86_400>,
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            auth: AuthMode::Login,
            tls_cert: None,
            tls_key: None,
            session_hours: Bounded(12),
            tokens_file: PathBuf::from("tokens.json"),
            login_max_failures: Bounded(5),
            login_window_s: Bounded(300),
            trusted_proxies: Vec::new(),
        }
    }
}

/// A person who may log in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    pub role: crate::auth::Role,
    /// argon2id PHC string (`glasswatch-collector hash-password`).
    pub password_hash: String,
}

/// How streams are read over HLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hls {
    /// Origins the collector may read (`None`: loopback and private networks).
    pub allow: Option<Vec<String>>,
    pub reload_ms: Bounded<10, 10_000>,
    pub request_timeout_ms: Bounded<100, 120_000>,
    pub retry_min_ms: Bounded<10, 60_000>,
    pub retry_max_ms: Bounded<10, 600_000>,
}

impl Default for Hls {
    fn default() -> Self {
        Hls {
            allow: None,
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

/// The dashboard's pages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dashboard {
    /// Latency colour bands, ms: below the first green, then yellow,
    /// orange, red beyond the third.
    pub bands_ms: [f64; 3],
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard {
            bands_ms: crate::dashboard::BANDS_MS,
        }
    }
}

impl Dashboard {
    /// Why the bands cannot be used, if they cannot.
    fn problem(&self) -> Option<String> {
        let b = self.bands_ms;
        let ok = b
            .iter()
            .all(|v| v.is_finite() && *v > 0.0 && *v <= 3_600_000.0)
            && b[0] < b[1]
            && b[1] < b[2];
        (!ok).then(|| {
            format!(
                "bands_ms must be three increasing figures above 0 and at most an hour, got {b:?}"
            )
        })
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

/// Which database history goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    Sqlite,
    Postgres,
    None,
}

/// History: where it is kept, for how long, and how much may wait while the
/// database is away.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// Absent: PostgreSQL when `postgres_url` is set, else SQLite.
    pub kind: Option<StorageKind>,
    pub sqlite: PathBuf,
    pub sqlite_cache_kib: Bounded<64, 1_048_576>,
    pub postgres_url: Option<String>,
    pub postgres_password_file: Option<PathBuf>,
    pub postgres_ca_file: Option<PathBuf>,
    pub postgres_pool: Bounded<1, 32>,
    pub frames: Age,
    pub seconds: Age,
    pub minutes: Age,
    pub hours: Age,
    pub events: Age,
    pub viewer: Age,
    pub queue_s: Bounded<5, 86_400>,
    pub flush_timeout_s: Bounded<1, 600>,
}

impl Default for Storage {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Storage {
            kind: None,
            sqlite: PathBuf::from("glasswatch.db"),
            sqlite_cache_kib: Bounded(crate::store::sqlite::DEFAULT_CACHE_KIB),
            postgres_url: None,
            postgres_password_file: None,
            postgres_ca_file: None,
            postgres_pool: Bounded(4),
            frames: Age(Some(3_600)),
            seconds: Age(Some(7 * DAY)),
            minutes: Age(Some(90 * DAY)),
            hours: Age(Some(730 * DAY)),
            events: Age(Some(365 * DAY)),
            viewer: Age(Some(7 * DAY)),
            queue_s: Bounded(300),
            flush_timeout_s: Bounded(10),
        }
    }
}

impl Storage {
    /// The backend in use.
    pub fn kind(&self) -> StorageKind {
        self.kind.unwrap_or(if self.postgres_url.is_some() {
            StorageKind::Postgres
        } else {
            StorageKind::Sqlite
        })
    }

    /// The SQLite file: a relative path is taken from `$STATE_DIRECTORY`
    /// under systemd (`StateDirectory=`), else from the config file's
    /// folder, else from the working directory.
    pub fn sqlite_path(&self, config_dir: Option<&Path>) -> PathBuf {
        state_path(&self.sqlite, config_dir)
    }
}

/// A file the collector keeps: an absolute path as it is; a relative one
/// from `$STATE_DIRECTORY` under systemd (`StateDirectory=`), else from the
/// config file's folder, else from the working directory.
pub fn state_path(file: &Path, config_dir: Option<&Path>) -> PathBuf {
    if file.is_absolute() {
        return file.to_owned();
    }
    let state = std::env::var_os("STATE_DIRECTORY")
        .map(PathBuf::from)
        // systemd may list several, separated by ':'; the first is ours.
        .and_then(|p| {
            p.to_str()
                .and_then(|s| s.split(':').next())
                .map(PathBuf::from)
        })
        .filter(|p| p.is_absolute());
    match state.as_deref().or(config_dir) {
        Some(dir) => dir.join(file),
        None => file.to_owned(),
    }
}

/// How long a kind of row is kept: `"off"` (keep none), or a number with a
/// unit: `s`, `m`, `h`, `d` or `y` (365 days), such as `"90d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Age(pub Option<u64>);

impl Age {
    /// The age in microseconds; `None` when off.
    pub fn us(self) -> Option<i64> {
        self.0
            .map(|s| i64::try_from(s.saturating_mul(1_000_000)).unwrap_or(i64::MAX))
    }

    pub fn parse(s: &str) -> Result<Age, String> {
        let s = s.trim();
        if s == "off" {
            return Ok(Age(None));
        }
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a duration such as \"1h\", \"7d\" or \"off\""))?;
        let mult = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "y" => 365 * 86_400,
            _ => {
                return Err(format!(
                    "`{s}`: the unit must be s, m, h, d or y (such as \"90d\"), or the whole value \"off\""
                ))
            }
        };
        let secs = n.saturating_mul(mult);
        if secs == 0 || secs > 100 * 365 * 86_400 {
            return Err(format!(
                "`{s}` must lie between 1s and 100y (or be \"off\")"
            ));
        }
        Ok(Age(Some(secs)))
    }
}

impl<'de> Deserialize<'de> for Age {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Age::parse(&s).map_err(serde::de::Error::custom)
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
        let mut config = Config::parse(&glasswatch_common::config::read(path)?, path)?;
        config.dir = Some(
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_owned(),
        );
        Ok(config)
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
        } else if m.url.is_none() && m.users_file.is_none() && !m.listen.ip().is_loopback() {
            Some((
                "mqtt.listen",
                format!(
                    "the embedded broker on {} (not loopback) needs mqtt.users_file: \
                     devices must log in (or use an external broker with mqtt.url)",
                    m.listen
                ),
            ))
        } else if m.url.is_some() && m.users_file.is_some() {
            Some((
                "mqtt.users_file",
                "users_file is for the embedded broker; an external broker has its own".to_owned(),
            ))
        } else if m.url.is_none() && (m.username.is_some() || m.password_file.is_some()) {
            Some((
                "mqtt.username",
                "the embedded broker takes no login; set mqtt.url to use one".to_owned(),
            ))
        } else if let Some(p) = self.storage_problem() {
            Some(p)
        } else if let Some(p) = self.http_problem() {
            Some(p)
        } else if let Some(m) = self.dashboard.problem() {
            Some(("dashboard.bands_ms", m))
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
        let allow = self
            .allow_list()
            .map_err(|m| invalid_key(text, file, "hls.allow", m))?;
        let mut names = HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let e = u.get_ref();
            let key = format!("user[{i}]");
            let problem = if e.name.is_empty()
                || e.name.len() > 64
                || !e
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
            {
                Some((
                    "name",
                    format!("user name `{}` must be 1 to 64 of [A-Za-z0-9._-@]", e.name),
                ))
            } else if !names.insert(e.name.as_str()) {
                Some(("name", format!("user `{}` is listed twice", e.name)))
            } else {
                crate::auth::check_hash(&e.password_hash)
                    .err()
                    .map(|m| ("password_hash", m))
            };
            if let Some((field, message)) = problem {
                return Err(invalid_at(
                    text,
                    file,
                    u.span().start,
                    &format!("{key}.{field}"),
                    message,
                ));
            }
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
            if let Err(e) = allow.check(&o.hls_url) {
                return Err(invalid_at(
                    text,
                    file,
                    s.span().start,
                    &format!("{key}.hls_url"),
                    format!("{e}; add its origin to [hls] allow"),
                ));
            }
        }
        Ok(())
    }

    fn http_problem(&self) -> Option<(&'static str, String)> {
        let h = &self.http;
        if h.auth == AuthMode::None && !h.listen.ip().is_loopback() {
            return Some((
                "http.auth",
                format!(
                    "auth = \"none\" lets anyone in, so the collector listens only on loopback \
                     then; {} is not (set http.listen = \"127.0.0.1:{}\", or log in)",
                    h.listen,
                    h.listen.port()
                ),
            ));
        }
        if h.tls_cert.is_some() != h.tls_key.is_some() {
            return Some((
                "http.tls_cert",
                "tls_cert and tls_key go together".to_owned(),
            ));
        }
        None
    }

    fn storage_problem(&self) -> Option<(&'static str, String)> {
        let st = &self.storage;
        if st.kind() == StorageKind::Postgres {
            match st.postgres_url.as_deref() {
                None => {
                    return Some((
                        "storage.kind",
                        "kind = \"postgres\" needs storage.postgres_url".to_owned(),
                    ))
                }
                Some(url)
                    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) =>
                {
                    return Some((
                        "storage.postgres_url",
                        "must start with postgres:// or postgresql://".to_owned(),
                    ))
                }
                Some(url) => {
                    if let Err(e) = url.parse::<tokio_postgres::Config>() {
                        return Some(("storage.postgres_url", format!("not a valid URL: {e}")));
                    }
                }
            }
        }
        if st.sqlite.as_os_str().is_empty() {
            return Some(("storage.sqlite", "must name a file".to_owned()));
        }
        let ages = [st.seconds, st.minutes, st.hours];
        if ages.iter().any(|a| a.0.is_none()) {
            return Some((
                "storage.seconds",
                "seconds, minutes and hours cannot be \"off\": the roll-ups are made from them"
                    .to_owned(),
            ));
        }
        None
    }

    /// The origins the collector may read, with its own listeners.
    pub fn allow_list(&self) -> Result<crate::allow::AllowList, String> {
        let mut own = vec![self.http.listen];
        if self.mqtt.url.is_none() {
            own.push(self.mqtt.listen);
        }
        crate::allow::AllowList::new(self.hls.allow.as_deref(), own)
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
        assert_eq!(
            sample.storage.sqlite_cache_kib,
            empty.storage.sqlite_cache_kib
        );
        assert_eq!(sample.mqtt.keep_alive_s, empty.mqtt.keep_alive_s);
        assert_eq!(sample.mqtt.client_id, empty.mqtt.client_id);
        assert!(sample.output.publish_latency && empty.output.publish_latency);
    }

    #[test]
    fn storage_defaults_ages_and_backend_choice() {
        let c = parse("").unwrap();
        assert_eq!(c.storage.kind(), StorageKind::Sqlite);
        assert_eq!(c.storage.frames, Age(Some(3_600)));
        assert_eq!(c.storage.hours, Age(Some(730 * 86_400)));
        assert!(parse("[storage]\nbogus = 1\n").is_err());
        let c =
            parse("[storage]\npostgres_url = \"postgres://u@127.0.0.1/db\"\nframes = \"off\"\n")
                .unwrap();
        assert_eq!(c.storage.kind(), StorageKind::Postgres);
        assert_eq!(c.storage.frames.us(), None);
        let c = parse("[storage]\nkind = \"none\"\npostgres_url = \"postgres://h/db\"\n").unwrap();
        assert_eq!(c.storage.kind(), StorageKind::None);
        assert_eq!(Age::parse("90d"), Ok(Age(Some(90 * 86_400))));
        assert_eq!(Age::parse("15m"), Ok(Age(Some(900))));
        for bad in ["", "d", "7", "7w", "-1d", "0s", "1000y", "1h30m"] {
            assert!(Age::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dashboard_bands_default_parse_and_refuse_nonsense() {
        let sample = Config::parse(SAMPLE, Path::new("sample.toml")).unwrap();
        assert_eq!(sample.dashboard.bands_ms, crate::dashboard::BANDS_MS);
        assert_eq!(
            parse("").unwrap().dashboard.bands_ms,
            [100.0, 500.0, 2000.0]
        );
        let c = parse("[dashboard]\nbands_ms = [50, 250.5, 1000]\n").unwrap();
        assert_eq!(c.dashboard.bands_ms, [50.0, 250.5, 1000.0]);
        for bad in [
            "[500, 100, 2000]",
            "[0, 100, 200]",
            "[100, 100, 200]",
            "[-1, 1, 2]",
            "[1e12, 2e12, 3e12]",
        ] {
            let (_, key, message) = err(&format!("[dashboard]\nbands_ms = {bad}\n"));
            assert_eq!(key, "dashboard.bands_ms", "{bad}: {message}");
        }
        assert!(parse("[dashboard]\nbands_ms = [1, 2]\n").is_err());
        assert!(parse("[dashboard]\nbands_ms = [\"a\", 2, 3]\n").is_err());
        assert!(parse("[dashboard]\ncolour = 1\n").is_err());
    }

    #[test]
    fn storage_errors_point_at_the_key() {
        assert_eq!(err("[storage]\nkind = \"postgres\"\n").1, "storage.kind");
        assert_eq!(err("[storage]\nkind = \"mysql\"\n").1, "storage.kind");
        assert_eq!(
            err("[storage]\npostgres_url = \"mysql://x\"\n").1,
            "storage.postgres_url"
        );
        assert_eq!(err("[storage]\nframes = \"1 week\"\n").1, "storage.frames");
        assert_eq!(err("[storage]\nminutes = \"off\"\n").1, "storage.seconds");
        assert_eq!(err("[storage]\nqueue_s = 1\n").1, "storage.queue_s");
    }

    #[test]
    fn login_off_only_on_loopback_and_users_are_checked() {
        assert_eq!(
            err("[http]\nlisten = \"0.0.0.0:8080\"\nauth = \"none\"\n").1,
            "http.auth"
        );
        assert_eq!(
            err("[http]\nlisten = \"10.8.0.1:8080\"\nauth = \"none\"\n").1,
            "http.auth"
        );
        parse("[http]\nlisten = \"127.0.0.1:8080\"\nauth = \"none\"\n").unwrap();
        parse("[http]\nlisten = \"[::1]:8080\"\nauth = \"none\"\n").unwrap();
        // Login on any address is fine.
        let c = parse("[http]\nlisten = \"0.0.0.0:8080\"\n").unwrap();
        assert_eq!(c.http.auth, AuthMode::Login);
        assert_eq!(err("[http]\ntls_cert = \"/x.pem\"\n").1, "http.tls_cert");
        let hash = crate::auth::hash_password("pw").unwrap();
        let c = parse(&format!(
            "[[user]]\nname = \"ann\"\nrole = \"admin\"\npassword_hash = \"{hash}\"\n"
        ))
        .unwrap();
        assert_eq!(c.users.len(), 1);
        let (line, key, _) = err(&format!(
            "[[user]]\nname = \"ann\"\nrole = \"admin\"\npassword_hash = \"{hash}\"\n\
             [[user]]\nname = \"ann\"\nrole = \"viewer\"\npassword_hash = \"{hash}\"\n"
        ));
        assert_eq!((line, key.as_str()), (5, "user[1].name"));
        assert_eq!(
            err("[[user]]\nname = \"bob\"\nrole = \"viewer\"\npassword_hash = \"hunter2\"\n").1,
            "user[0].password_hash"
        );
        assert_eq!(
            err(&format!(
                "[[user]]\nname = \"bob\"\nrole = \"root\"\npassword_hash = \"{hash}\"\n"
            ))
            .1,
            "user[0].role"
        );
    }

    #[test]
    fn sqlite_path_is_relative_to_state_directory_or_the_config_folder() {
        let st = Storage::default();
        let dir = Path::new("/etc/glasswatch");
        let abs = Storage {
            sqlite: PathBuf::from("/var/db/g.db"),
            ..Storage::default()
        };
        assert_eq!(abs.sqlite_path(Some(dir)), Path::new("/var/db/g.db"));
        if std::env::var_os("STATE_DIRECTORY").is_none() {
            assert_eq!(st.sqlite_path(Some(dir)), dir.join("glasswatch.db"));
            assert_eq!(st.sqlite_path(None), Path::new("glasswatch.db"));
        }
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
        let dup = "[[stream]]\ndevice = \"a\"\nid = \"b\"\nhls_url = \"http://10.0.0.1/x\"\n";
        let (line, key, _) = err(&format!("{dup}{dup}"));
        assert_eq!((line, key.as_str()), (5, "stream[1]"));
        assert_eq!(err("[hls]\nretry_min_ms = 9000\n").1, "hls.retry_min_ms");
        assert_eq!(
            err("[[stream]]\ndevice = \"A\"\nid = \"b\"\nhls_url = \"http://x\"\n").1,
            "stream[0].device"
        );
    }
}
