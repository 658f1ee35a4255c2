//! [`RtspOrigin`]: the `glasswatch-test-origin` binary run as a [`Peer`] —
//! an RTSP RECORD origin on 127.0.0.1 that republishes each pushed H.264
//! stream as classic HLS (MPEG-TS segments) over HTTP — plus a minimal
//! reader of the playlists it writes ([`HlsPlaylist`]).
//!
//! It stands in for MediaMTX where a test needs an origin but not MediaMTX's
//! own behaviour (LL-HLS, fMP4, sessions); those tests wait for
//! `MEDIAMTX_BIN`. The origin's behaviour is documented in its binary.

use std::{
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::{
    bins::try_bin_path,
    peer::{Peer, Ready},
    ports::loopback,
};

/// Name of the origin binary in `target/<profile>/`.
pub const ORIGIN_BIN: &str = "glasswatch-test-origin";

/// How long the origin may take to print READY (GStreamer's first registry
/// scan on a fresh machine takes a few seconds).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `glasswatch-test-origin`, killed on drop.
///
/// ```no_run
/// # fn main() -> anyhow::Result<()> {
/// use glasswatch_testkit::RtspOrigin;
/// let origin = RtspOrigin::start(&["cam"])?;
/// // push to origin.rtsp_url("cam"), read origin.hls_url("cam")
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RtspOrigin {
    // Field order matters: the process dies before its directory is removed.
    peer: Peer,
    rtsp_port: u16,
    http_port: u16,
    dir: PathBuf,
    paths: Vec<String>,
    temp_dir: Option<tempfile::TempDir>,
}

impl RtspOrigin {
    /// Starts an origin with one mount per entry of `paths`, HLS in a new
    /// temporary directory (removed on drop), on free ports: the origin binds
    /// port 0 and reports the ports it got, so no other process can take
    /// them between choosing and binding.
    pub fn start(paths: &[&str]) -> anyhow::Result<Self> {
        let temp_dir = tempfile::Builder::new()
            .prefix("glasswatch-origin-")
            .tempdir()
            .context("creating the HLS directory")?;
        let mut origin = Self::start_on(0, 0, temp_dir.path(), paths)?;
        origin.temp_dir = Some(temp_dir);
        Ok(origin)
    }

    /// Starts an origin on the given ports (0 = any free one) writing HLS
    /// under `dir`, which the caller owns. Use it to bring an origin back on
    /// the ports a publisher already knows; [`RtspOrigin::restart`] does
    /// that for an origin this process started.
    pub fn start_on(
        rtsp_port: u16,
        http_port: u16,
        dir: &Path,
        paths: &[&str],
    ) -> anyhow::Result<Self> {
        let paths: Vec<String> = paths.iter().map(|p| (*p).to_owned()).collect();
        let (peer, rtsp_port, http_port) = spawn(rtsp_port, http_port, dir, &paths)?;
        Ok(RtspOrigin {
            peer,
            rtsp_port,
            http_port,
            dir: dir.to_owned(),
            paths,
            temp_dir: None,
        })
    }

    /// Kills the origin if it runs, then starts it again on the same ports,
    /// directory and paths, as a crashed origin restarted by its supervisor.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        let (peer, _, _) = spawn(self.rtsp_port, self.http_port, &self.dir, &self.paths)
            .context("restarting the origin on the same ports")?;
        self.peer = peer;
        Ok(())
    }

    /// Kills the origin (SIGKILL by PID), as a crash would. Idempotent.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.peer.kill().map(drop)
    }

    /// Stops the origin with SIGTERM, failing if it takes longer than `grace`.
    pub fn terminate(&mut self, grace: Duration) -> anyhow::Result<()> {
        let status = self.peer.terminate(grace)?;
        if !status.success() {
            bail!("origin exited with {status} on SIGTERM");
        }
        Ok(())
    }

    /// The origin's process id.
    pub fn pid(&self) -> u32 {
        self.peer.pid()
    }

    /// The process guard, for its log.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The RTSP port on 127.0.0.1.
    pub fn rtsp_port(&self) -> u16 {
        self.rtsp_port
    }

    /// The HTTP port on 127.0.0.1.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The directory holding one HLS directory per path.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a publisher pushes `path`: `rtsp://127.0.0.1:{rtsp}/{path}`.
    pub fn rtsp_url(&self, path: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{path}", self.rtsp_port)
    }

    /// The playlist URL of `path`: `http://127.0.0.1:{http}/{path}/index.m3u8`.
    pub fn hls_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}/index.m3u8", self.http_port)
    }

    /// The directory holding `path`'s playlist and segments.
    pub fn hls_dir(&self, path: &str) -> PathBuf {
        self.dir.join(path)
    }

    /// The playlist of `path` as on disk now, if it has been written.
    pub fn playlist(&self, path: &str) -> anyhow::Result<Option<HlsPlaylist>> {
        let file = self.hls_dir(path).join("index.m3u8");
        match std::fs::read_to_string(&file) {
            Ok(text) => HlsPlaylist::parse(&text)
                .map(Some)
                .with_context(|| format!("parsing {}", file.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
        }
    }

    /// Polls `path`'s playlist until `done` accepts it, for up to `timeout`.
    /// The error shows the last playlist and the origin's log.
    pub fn wait_for_playlist(
        &self,
        path: &str,
        timeout: Duration,
        done: impl Fn(&HlsPlaylist) -> bool,
    ) -> anyhow::Result<HlsPlaylist> {
        let deadline = Instant::now() + timeout;
        loop {
            let playlist = self.playlist(path)?;
            if let Some(p) = &playlist {
                if done(p) {
                    return Ok(p.clone());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "playlist of {path:?} not as expected within {timeout:?}; last: {playlist:?}; \
                     origin log {}:\n{}",
                    self.peer.log_path().display(),
                    self.peer.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RtspOrigin {
    fn drop(&mut self) {
        if thread::panicking() {
            if let Some(dir) = self.temp_dir.take() {
                eprintln!(
                    "--- origin HLS directory kept at {} ---",
                    dir.keep().display()
                );
            }
        }
    }
}

/// Spawns the origin binary and reads its ports from the READY line.
fn spawn(
    rtsp_port: u16,
    http_port: u16,
    dir: &Path,
    paths: &[String],
) -> anyhow::Result<(Peer, u16, u16)> {
    if paths.is_empty() {
        bail!("an origin needs at least one path");
    }
    let bin = try_bin_path(ORIGIN_BIN)?;
    let mut cmd = Command::new(bin);
    cmd.arg("--rtsp-port")
        .arg(rtsp_port.to_string())
        .arg("--http-port")
        .arg(http_port.to_string())
        .arg("--dir")
        .arg(dir);
    for path in paths {
        cmd.arg("--path").arg(path);
    }
    let peer = Peer::spawn(
        "glasswatch-test-origin",
        cmd,
        Ready::StdoutLine("READY ".to_owned()),
        START_TIMEOUT,
    )?;
    let line = peer.ready_line().unwrap_or_default();
    let (rtsp, http) = parse_ready(line)
        .with_context(|| format!("origin printed an unexpected READY line {line:?}"))?;
    // READY is printed after both listeners exist; check them anyway, cheaply.
    for port in [rtsp, http] {
        crate::ports::wait_for_tcp(loopback(port), Duration::from_secs(5))?;
    }
    Ok((peer, rtsp, http))
}

/// Parses `READY rtsp=127.0.0.1:P http=127.0.0.1:Q` into `(P, Q)`.
fn parse_ready(line: &str) -> Option<(u16, u16)> {
    let mut rtsp = None;
    let mut http = None;
    for word in line.split_whitespace() {
        if let Some(addr) = word.strip_prefix("rtsp=") {
            rtsp = addr.rsplit(':').next()?.parse().ok();
        } else if let Some(addr) = word.strip_prefix("http=") {
            http = addr.rsplit(':').next()?.parse().ok();
        }
    }
    Some((rtsp?, http?))
}

/// One media segment of an [`HlsPlaylist`].
#[derive(Debug, Clone, PartialEq)]
pub struct HlsSegment {
    /// The URI as written (relative to the playlist for this origin).
    pub uri: String,
    /// `#EXTINF` duration in seconds.
    pub duration: f64,
}

/// The parts of a classic HLS media playlist the tests look at. Not a
/// general parser: tags it does not know are ignored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HlsPlaylist {
    /// `#EXT-X-MEDIA-SEQUENCE` (0 when absent).
    pub media_sequence: u64,
    /// `#EXT-X-TARGETDURATION` in seconds, when present.
    pub target_duration: Option<u64>,
    /// Segments in playlist order.
    pub segments: Vec<HlsSegment>,
    /// Whether `#EXT-X-ENDLIST` is present (the publisher has finished).
    pub ended: bool,
}

impl HlsPlaylist {
    /// Parses playlist text; fails without `#EXTM3U` or on a malformed number.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut lines = text.lines().map(str::trim);
        if lines.next() != Some("#EXTM3U") {
            bail!("not a playlist: first line is not #EXTM3U");
        }
        let mut playlist = HlsPlaylist::default();
        let mut pending: Option<f64> = None;
        for line in lines {
            if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                playlist.media_sequence = v.parse().with_context(|| format!("bad {line:?}"))?;
            } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                playlist.target_duration =
                    Some(v.parse().with_context(|| format!("bad {line:?}"))?);
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                let d = v.split(',').next().unwrap_or_default();
                pending = Some(d.parse().with_context(|| format!("bad {line:?}"))?);
            } else if line == "#EXT-X-ENDLIST" {
                playlist.ended = true;
            } else if !line.is_empty() && !line.starts_with('#') {
                let duration = pending
                    .take()
                    .with_context(|| format!("segment {line:?} without #EXTINF"))?;
                playlist.segments.push(HlsSegment {
                    uri: line.to_owned(),
                    duration,
                });
            }
        }
        Ok(playlist)
    }

    /// Sum of the segment durations, in seconds.
    pub fn duration(&self) -> f64 {
        self.segments.iter().map(|s| s.duration).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_gives_ports() {
        assert_eq!(
            parse_ready("READY rtsp=127.0.0.1:8554 http=127.0.0.1:8888"),
            Some((8554, 8888))
        );
        assert_eq!(parse_ready("READY rtsp=127.0.0.1:8554"), None);
        assert_eq!(parse_ready("READY rtsp=x http=y"), None);
    }

    #[test]
    fn parses_what_hlssink2_writes() {
        let text =
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:4\n#EXT-X-TARGETDURATION:1\n\n\
                    #EXTINF:0.99974226951599121,\nsegment00004.ts\n\
                    #EXTINF:0.5,\nsegment00005.ts\n#EXT-X-ENDLIST";
        let p = HlsPlaylist::parse(text).unwrap();
        assert_eq!(p.media_sequence, 4);
        assert_eq!(p.target_duration, Some(1));
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.segments[1].uri, "segment00005.ts");
        assert!(p.ended);
        assert!((p.duration() - 1.4997).abs() < 1e-3);
    }

    #[test]
    fn rejects_non_playlists() {
        assert!(HlsPlaylist::parse("<html>").is_err());
        assert!(HlsPlaylist::parse("#EXTM3U\nseg.ts").is_err());
    }
}
