//! A real MediaMTX as a peer, for the tests that need MediaMTX itself.
//!
//! MediaMTX cannot be downloaded on the machines tests run on, so these tests
//! run only when `MEDIAMTX_BIN` points at a binary (`deploy/install-mediamtx.sh`
//! fetches the pinned release on a user's machine); otherwise
//! [`MediaMtx::from_env`] says so and the test returns. It runs the repo's
//! `mediamtx.yml` with its addresses moved to free ports on 127.0.0.1.

use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;

use crate::peer::{Peer, Ready};
use crate::ports::{free_port, loopback};

/// A running MediaMTX, killed by PID on drop.
#[derive(Debug)]
pub struct MediaMtx {
    peer: Peer,
    _dir: tempfile::TempDir,
    rtsp_port: u16,
    hls_port: u16,
}

impl MediaMtx {
    /// Starts `$MEDIAMTX_BIN` with the repo's config, or returns `None` (and
    /// prints that the test is skipped) when the variable is unset.
    pub fn from_env(test: &str) -> Option<anyhow::Result<MediaMtx>> {
        match std::env::var_os("MEDIAMTX_BIN") {
            Some(bin) if !bin.is_empty() => Some(Self::start(std::path::Path::new(&bin))),
            _ => {
                eprintln!("{test}: skipped: MEDIAMTX_BIN is not set (it needs MediaMTX itself)");
                None
            }
        }
    }

    /// Starts `bin` with the repo's `mediamtx.yml` on free loopback ports.
    pub fn start(bin: &std::path::Path) -> anyhow::Result<MediaMtx> {
        let repo_config = concat!(env!("CARGO_MANIFEST_DIR"), "/../mediamtx.yml");
        let text = std::fs::read_to_string(repo_config)
            .with_context(|| format!("reading {repo_config}"))?;
        let (rtsp_port, hls_port) = (free_port(), free_port());
        // The control API and metrics too, so that MediaMTXs of concurrent
        // tests do not fight over 9997/9998.
        let (api_port, metrics_port) = (free_port(), free_port());
        let text: String = text
            .lines()
            .map(|l| {
                if l.starts_with("rtspAddress:") {
                    format!("rtspAddress: 127.0.0.1:{rtsp_port}")
                } else if l.starts_with("hlsAddress:") {
                    format!("hlsAddress: 127.0.0.1:{hls_port}")
                } else if l.starts_with("apiAddress:") {
                    format!("apiAddress: 127.0.0.1:{api_port}")
                } else if l.starts_with("metricsAddress:") {
                    format!("metricsAddress: 127.0.0.1:{metrics_port}")
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let dir = tempfile::Builder::new()
            .prefix("glasswatch-mediamtx-")
            .tempdir()
            .context("creating MediaMTX's directory")?;
        let config = dir.path().join("mediamtx.yml");
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        let mut cmd = Command::new(bin);
        cmd.arg(&config).current_dir(dir.path());
        let peer = Peer::spawn(
            "mediamtx",
            cmd,
            Ready::Tcp(loopback(rtsp_port)),
            Duration::from_secs(15),
        )?;
        Ok(MediaMtx {
            peer,
            _dir: dir,
            rtsp_port,
            hls_port,
        })
    }

    /// `rtsp://127.0.0.1:{port}/{path}`: where to publish.
    pub fn rtsp_url(&self, path: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{path}", self.rtsp_port)
    }

    /// `http://127.0.0.1:{port}/{path}/index.m3u8`: where to read LL-HLS.
    pub fn hls_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}/index.m3u8", self.hls_port)
    }

    /// The process guard.
    pub fn peer(&mut self) -> &mut Peer {
        &mut self.peer
    }
}
