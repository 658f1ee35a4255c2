//! The real `glasswatch-agent` binary as a peer.
//!
//! [`AgentProcess`] writes a config into a temp dir (adding a `frame_log`
//! there), starts the binary built next to the test, and reads back the
//! frame records the agent wrote, so tests can compare what the stamper
//! recorded with what a reader received.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use glasswatch_common::messages::FrameRecord;
use serde::Deserialize;

use crate::bins::try_bin_path;
use crate::peer::{Peer, Ready};

/// A line of the agent's `frame_log`: the stream and its frame record.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FrameLine {
    pub stream: String,
    #[serde(flatten)]
    pub record: FrameRecord,
}

impl std::ops::Deref for FrameLine {
    type Target = FrameRecord;
    fn deref(&self) -> &FrameRecord {
        &self.record
    }
}

/// The wall clock in µs since the Unix epoch, as the agent writes times.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// One `[[stream]]` of the test pattern, encoded with x264 at 30 fps, GOP 15.
#[derive(Debug, Clone)]
pub struct TestStream<'a> {
    pub id: &'a str,
    pub publish_url: &'a str,
    /// Empty: the agent's default.
    pub hls_url: &'a str,
    pub width: u32,
    pub height: u32,
    pub bitrate_kbps: u32,
}

impl Default for TestStream<'_> {
    /// `cam0`, 320x240 at 400 kbit/s, publishing nowhere.
    fn default() -> Self {
        TestStream {
            id: "cam0",
            publish_url: "rtsp://127.0.0.1:9/none",
            hls_url: "",
            width: 320,
            height: 240,
            bitrate_kbps: 400,
        }
    }
}

impl TestStream<'_> {
    /// The `[[stream]]` table.
    pub fn toml(&self) -> String {
        let hls = if self.hls_url.is_empty() {
            String::new()
        } else {
            format!("hls_url = \"{}\"\n", self.hls_url)
        };
        format!(
            "[[stream]]\nid = \"{}\"\nsource = \"test\"\nwidth = {}\nheight = {}\nfps = 30\ngop = 15\n\
             bitrate_kbps = {}\nencoder = \"x264\"\npublish_url = \"{}\"\n{hls}",
            self.id, self.width, self.height, self.bitrate_kbps, self.publish_url
        )
    }
}

/// An agent config with one small test-pattern stream `cam0` (320x240@30,
/// GOP 15, x264), quick retries, and the given `[mqtt]` lines.
/// An empty `hls_url` leaves the agent's default.
pub fn test_pattern_config(device: &str, publish_url: &str, hls_url: &str, mqtt: &str) -> String {
    format!(
        "device_id = \"{device}\"\n[retry]\ninitial_ms = 200\nmax_ms = 2000\n\
         [mqtt]\nkeep_alive_s = 5\n{mqtt}\n{}",
        TestStream {
            publish_url,
            hls_url,
            ..TestStream::default()
        }
        .toml()
    )
}

/// A running agent, killed by PID on drop.
#[derive(Debug)]
pub struct AgentProcess {
    peer: Peer,
    dir: tempfile::TempDir,
    frame_log: PathBuf,
}

impl AgentProcess {
    /// Starts the agent on `config` (TOML without `frame_log`, which is added).
    pub fn start(config: &str) -> anyhow::Result<AgentProcess> {
        Self::start_with_env(config, &[])
    }

    /// Like [`AgentProcess::start`], with extra environment variables.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> anyhow::Result<AgentProcess> {
        let bin = try_bin_path("glasswatch-agent")?;
        let dir = tempfile::Builder::new()
            .prefix("glasswatch-agent-")
            .tempdir()
            .context("creating the agent's directory")?;
        let frame_log = dir.path().join("frames.jsonl");
        let config_path = dir.path().join("agent.toml");
        let text = format!(
            "frame_log = {:?}\n{config}",
            frame_log.display().to_string()
        );
        std::fs::write(&config_path, text)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let mut cmd = Command::new(bin);
        cmd.arg("--config").arg(&config_path);
        cmd.env("RUST_LOG", "info,glasswatch_agent=debug");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let peer = Peer::spawn("agent", cmd, Ready::Spawned, Duration::from_secs(5))?;
        Ok(AgentProcess {
            peer,
            dir,
            frame_log,
        })
    }

    /// The process guard (PID, terminate, kill, log).
    pub fn peer(&mut self) -> &mut Peer {
        &mut self.peer
    }

    /// The end of the agent's log (stderr).
    pub fn log_tail(&self) -> String {
        self.peer.log_tail()
    }

    /// The agent's whole log (stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.peer.log_path()).unwrap_or_default()
    }

    /// The directory holding the config and the frame log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every frame record written so far (a torn last line is left out).
    pub fn records(&self) -> anyhow::Result<Vec<FrameLine>> {
        let text = match std::fs::read_to_string(&self.frame_log) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", self.frame_log.display()))
            }
        };
        let complete = text.rfind('\n').map(|i| &text[..i]).unwrap_or("");
        complete
            .lines()
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .with_context(|| format!("{}:{}: {l}", self.frame_log.display(), i + 1))
            })
            .collect()
    }

    /// Polls the records until `done` accepts them, for up to `timeout`.
    pub fn wait_for_records(
        &self,
        timeout: Duration,
        done: impl Fn(&[FrameLine]) -> bool,
    ) -> anyhow::Result<Vec<FrameLine>> {
        let deadline = Instant::now() + timeout;
        loop {
            let records = self.records()?;
            if done(&records) {
                return Ok(records);
            }
            if Instant::now() >= deadline {
                bail!(
                    "frame records not as expected within {timeout:?} ({} so far)",
                    records.len()
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
}
