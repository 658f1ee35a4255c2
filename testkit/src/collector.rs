//! The real `glasswatch-collector` binary as a peer.
//!
//! [`CollectorProcess`] writes a config into a temp dir, starts the binary
//! built next to the test with `--live`, waits for its `READY` line and reads
//! its HTTP API, so tests see what a user or a dashboard would.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
pub use glasswatch_common::api::{Counters, StreamView, StreamsResponse};
use glasswatch_common::messages::Latency;

use crate::bins::try_bin_path;
use crate::peer::{Peer, Ready};
use crate::ports::free_port;

/// A running collector, killed by PID on drop.
#[derive(Debug)]
pub struct CollectorProcess {
    peer: Peer,
    _dir: tempfile::TempDir,
    http_port: u16,
    mqtt_url: String,
}

impl CollectorProcess {
    /// Starts the collector on `config` (TOML). `[http] listen` is added on
    /// a free port, with `auth = "none"`, unless the config has an `[http]` table; with no
    /// `[mqtt] url` the embedded broker runs where `[mqtt] listen` says
    /// (see [`CollectorProcess::embedded_broker_config`]).
    pub fn start(config: &str) -> anyhow::Result<CollectorProcess> {
        let bin = try_bin_path("glasswatch-collector")?;
        let dir = tempfile::Builder::new()
            .prefix("glasswatch-collector-")
            .tempdir()
            .context("creating the collector's directory")?;
        let mut text = config.to_owned();
        let mut http_port = 0;
        if !config.contains("[http]") {
            http_port = free_port();
            // Tests read the API anonymously on loopback unless they set
            // up [http] (and login) themselves.
            text.push_str(&format!(
                "\n[http]\nlisten = \"127.0.0.1:{http_port}\"\nauth = \"none\"\n"
            ));
        }
        let path = dir.path().join("collector.toml");
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        let mut cmd = Command::new(bin);
        cmd.arg("--config").arg(&path).arg("--live");
        cmd.env("RUST_LOG", "info,glasswatch_collector=debug");
        let peer = Peer::spawn(
            "collector",
            cmd,
            Ready::StdoutLine("READY ".into()),
            Duration::from_secs(15),
        )?;
        let line = peer.ready_line().unwrap_or_default().to_owned();
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_owned)
        };
        let mqtt_url = field("mqtt=").with_context(|| format!("no mqtt= in {line:?}"))?;
        if http_port == 0 {
            http_port = field("http=")
                .and_then(|a| a.rsplit(':').next().and_then(|p| p.parse().ok()))
                .with_context(|| format!("no http= port in {line:?}"))?;
        }
        Ok(CollectorProcess {
            peer,
            _dir: dir,
            http_port,
            mqtt_url,
        })
    }

    /// A config running the embedded broker on a free port; returns it with the port.
    pub fn embedded_broker_config() -> (String, u16) {
        let port = free_port();
        (format!("[mqtt]\nlisten = \"127.0.0.1:{port}\"\n"), port)
    }

    /// The broker the collector uses, as `mqtt://host:port`.
    pub fn mqtt_url(&self) -> &str {
        &self.mqtt_url
    }

    /// The HTTP API's base URL.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The process guard (PID, terminate, kill, log).
    pub fn peer(&mut self) -> &mut Peer {
        &mut self.peer
    }

    /// The end of the collector's log.
    pub fn log_tail(&self) -> String {
        self.peer.log_tail()
    }

    /// `GET /api/v1/streams`: every stream with its last summary, and the counters.
    pub fn streams(&self) -> anyhow::Result<(Vec<StreamView>, Counters)> {
        let url = format!("{}/api/v1/streams", self.api_url());
        let body = http_get(&url)?;
        let r: StreamsResponse =
            serde_json::from_str(&body).with_context(|| format!("parsing {url}: {body}"))?;
        Ok((r.streams, r.counters))
    }

    /// Polls the API once per 250 ms and collects each new summary of
    /// `device/stream` until `done` accepts the list, for up to `timeout`.
    pub fn collect_summaries(
        &self,
        device: &str,
        stream: &str,
        timeout: Duration,
        done: impl Fn(&[Latency]) -> bool,
    ) -> anyhow::Result<Vec<Latency>> {
        let deadline = Instant::now() + timeout;
        let mut out: Vec<Latency> = Vec::new();
        loop {
            let (streams, _) = self.streams()?;
            if let Some(last) = streams
                .into_iter()
                .find(|s| s.device == device && s.stream == stream)
                .and_then(|s| s.last)
            {
                if out
                    .last()
                    .is_none_or(|l| l.window_end_us != last.window_end_us)
                {
                    out.push(last);
                }
            }
            if done(&out) {
                return Ok(out);
            }
            if Instant::now() >= deadline {
                bail!(
                    "summaries of {device}/{stream} not as expected within {timeout:?}: {} collected, last {:?}\ncollector log:\n{}",
                    out.len(),
                    out.last(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// A plain HTTP/1.1 GET on 127.0.0.1 returning the body of a 200 answer
/// (tests only; [`crate::http::get`] with a 10 s limit).
pub fn http_get(url: &str) -> anyhow::Result<String> {
    let r = crate::http::get(url, Duration::from_secs(10))?;
    if r.status != 200 {
        bail!("{url}: HTTP {}: {}", r.status, r.text());
    }
    Ok(r.text())
}
