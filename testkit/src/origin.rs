//! [`RtspOrigin`]: the `glasswatch-test-origin` binary run as a [`Peer`] —
//! an RTSP RECORD origin on 127.0.0.1 that republishes each pushed H.264
//! stream over HTTP as classic HLS with MPEG-TS segments (the default),
//! classic HLS with fMP4 segments, or LL-HLS shaped like MediaMTX's
//! ([`OriginOptions`], [`HlsFormat`]) — plus a minimal reader of the
//! playlists it writes to disk ([`HlsPlaylist`]).
//!
//! It stands in for MediaMTX where a test needs an origin; the LL-HLS format
//! imitates MediaMTX v1.16.2 closely (see [`crate::llhls`] for where it
//! differs), so only tests of MediaMTX itself wait for `MEDIAMTX_BIN`. The
//! origin's behaviour is documented in its binary.
//!
//! Every format is read at [`RtspOrigin::hls_url`]
//! (`http://127.0.0.1:{http}/{path}/index.m3u8`): the media playlist for
//! `ts` and `fmp4`, the multivariant playlist for `llhls`.

use std::{
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _};

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

/// What the origin makes of each pushed stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HlsFormat {
    /// Classic HLS, MPEG-TS segments (`hlssink2`), `index.m3u8` on disk.
    #[default]
    Ts,
    /// Classic HLS, fMP4 segments (`init.mp4`, `segmentNNNNN.m4s`) made by
    /// ffmpeg's HLS muxer with `-c copy`, `index.m3u8` on disk.
    Fmp4,
    /// LL-HLS as MediaMTX v1.16.2 serves it, from memory: `index.m3u8`
    /// (multivariant) → `video1_stream.m3u8` → `{prefix}_video1_{init,partN,segN}.mp4`.
    Llhls,
}

impl HlsFormat {
    /// The value of the origin's `--format`.
    pub fn as_arg(self) -> &'static str {
        match self {
            HlsFormat::Ts => "ts",
            HlsFormat::Fmp4 => "fmp4",
            HlsFormat::Llhls => "llhls",
        }
    }
}

/// Options for [`RtspOrigin::start_with`]; `Default` is what
/// [`RtspOrigin::start`] uses (MPEG-TS, 1 s segments, nothing stripped) with
/// MediaMTX's LL-HLS defaults (200 ms parts, 7 segments, 30 s sessions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginOptions {
    pub format: HlsFormat,
    /// Remove every SEI NAL unit (the frame stamp among them) from each
    /// access unit before it is segmented.
    pub strip_sei: bool,
    /// LL-HLS only: MediaMTX 1.18 reader sessions (`index.m3u8` redirects to
    /// itself with `cookieCheck=1`, then hands out `?session=…` URIs;
    /// anything else without a live session is 401).
    pub sessions: bool,
    /// LL-HLS: `hlsPartDuration` (rounded up to whole frames by the muxer).
    pub part_ms: u64,
    /// LL-HLS: `hlsSegmentDuration`; ts and fmp4: the target duration,
    /// rounded up to whole seconds. Segments are cut at the first key frame
    /// after it.
    pub segment_ms: u64,
    /// LL-HLS: `hlsSegmentCount` (at least 7).
    pub segment_count: usize,
    /// LL-HLS sessions: idle time before a session expires (MediaMTX: 30 s,
    /// swept every third of it).
    pub session_idle_ms: u64,
}

impl Default for OriginOptions {
    fn default() -> Self {
        OriginOptions {
            format: HlsFormat::Ts,
            strip_sei: false,
            sessions: false,
            part_ms: 200,
            segment_ms: 1000,
            segment_count: 7,
            session_idle_ms: 30_000,
        }
    }
}

impl OriginOptions {
    /// LL-HLS with the settings of the MediaMTX fixture capture
    /// (`hlsPartDuration: 50ms`, `hlsSegmentDuration: 500ms`, 7 segments).
    pub fn llhls_like_fixture() -> Self {
        OriginOptions {
            format: HlsFormat::Llhls,
            part_ms: 50,
            segment_ms: 500,
            ..OriginOptions::default()
        }
    }

    /// The origin's command-line arguments for these options.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--format".to_owned(),
            self.format.as_arg().to_owned(),
            "--target-duration".to_owned(),
            self.segment_ms.div_ceil(1000).max(1).to_string(),
            "--part-ms".to_owned(),
            self.part_ms.to_string(),
            "--segment-ms".to_owned(),
            self.segment_ms.to_string(),
            "--segment-count".to_owned(),
            self.segment_count.to_string(),
            "--session-idle-ms".to_owned(),
            self.session_idle_ms.to_string(),
        ];
        if self.strip_sei {
            args.push("--strip-sei".to_owned());
        }
        if self.sessions {
            args.push("--sessions".to_owned());
        }
        args
    }
}

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
    options: OriginOptions,
    temp_dir: Option<tempfile::TempDir>,
}

impl RtspOrigin {
    /// Starts an origin with one mount per entry of `paths`, HLS in a new
    /// temporary directory (removed on drop), on free ports: the origin binds
    /// port 0 and reports the ports it got, so no other process can take
    /// them between choosing and binding.
    pub fn start(paths: &[&str]) -> anyhow::Result<Self> {
        Self::start_with(paths, OriginOptions::default())
    }

    /// Like [`RtspOrigin::start`], with a format and options.
    ///
    /// ```no_run
    /// # fn main() -> anyhow::Result<()> {
    /// use glasswatch_testkit::origin::{HlsFormat, OriginOptions, RtspOrigin};
    /// let origin = RtspOrigin::start_with(
    ///     &["cam"],
    ///     OriginOptions { format: HlsFormat::Llhls, part_ms: 50, segment_ms: 500, ..OriginOptions::default() },
    /// )?;
    /// // origin.hls_url("cam") is the multivariant playlist.
    /// # Ok(()) }
    /// ```
    pub fn start_with(paths: &[&str], options: OriginOptions) -> anyhow::Result<Self> {
        let temp_dir = tempfile::Builder::new()
            .prefix("glasswatch-origin-")
            .tempdir()
            .context("creating the HLS directory")?;
        let mut origin = Self::start_on_with(0, 0, temp_dir.path(), paths, options)?;
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
        Self::start_on_with(rtsp_port, http_port, dir, paths, OriginOptions::default())
    }

    /// Like [`RtspOrigin::start_on`], with a format and options.
    pub fn start_on_with(
        rtsp_port: u16,
        http_port: u16,
        dir: &Path,
        paths: &[&str],
        options: OriginOptions,
    ) -> anyhow::Result<Self> {
        let paths: Vec<String> = paths.iter().map(|p| (*p).to_owned()).collect();
        let (peer, rtsp_port, http_port) = spawn(rtsp_port, http_port, dir, &paths, &options)?;
        Ok(RtspOrigin {
            peer,
            rtsp_port,
            http_port,
            dir: dir.to_owned(),
            paths,
            options,
            temp_dir: None,
        })
    }

    /// The options the origin runs with.
    pub fn options(&self) -> &OriginOptions {
        &self.options
    }

    /// Kills the origin if it runs, then starts it again on the same ports,
    /// directory and paths, as a crashed origin restarted by its supervisor.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        let (peer, _, _) = spawn(
            self.rtsp_port,
            self.http_port,
            &self.dir,
            &self.paths,
            &self.options,
        )
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

    /// The playlist URL of `path`: `http://127.0.0.1:{http}/{path}/index.m3u8`
    /// (for LL-HLS the multivariant playlist; with sessions it answers a
    /// redirect first).
    pub fn hls_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}/index.m3u8", self.http_port)
    }

    /// Waits up to `timeout` until `path`'s HLS URL answers 200: a publisher
    /// is there and its first segment is done (an LL-HLS playlist is held
    /// until then; with sessions, the redirect is followed). Works for every
    /// format; the error carries the last answer and the origin's log.
    pub fn wait_for_hls(&self, path: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut url = self.hls_url(path);
        let mut last = String::new();
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            match crate::http::get(&url, left) {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) if (300..400).contains(&r.status) => {
                    if let Some(location) = r.header("location") {
                        url = if location.starts_with('/') {
                            format!("http://127.0.0.1:{}{location}", self.http_port)
                        } else {
                            location.to_owned()
                        };
                        continue;
                    }
                    last = format!("{} without Location", r.status);
                }
                Ok(r) => last = format!("{} {}", r.status, r.text()),
                Err(e) => last = format!("{e:#}"),
            }
            thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "{url} did not answer 200 within {timeout:?}; last: {last}; origin log {}:\n{}",
            self.peer.log_path().display(),
            self.peer.log_tail()
        )
    }

    /// How many client connections made an HTTP request to the LL-HLS
    /// origin (`--format llhls`) within the last `within`: distinct client
    /// address and port, as the origin saw them.
    pub fn hls_connections(&self, within: Duration) -> anyhow::Result<usize> {
        let url = format!(
            "http://127.0.0.1:{}/_testkit/connections?within_ms={}",
            self.http_port,
            within.as_millis()
        );
        let r = crate::http::get(&url, Duration::from_secs(5))?;
        ensure!(r.status == 200, "{url}: {} {}", r.status, r.text());
        r.text()
            .trim()
            .parse()
            .with_context(|| format!("{url}: not a count: {}", r.text()))
    }

    /// The directory holding `path`'s playlist and segments.
    pub fn hls_dir(&self, path: &str) -> PathBuf {
        self.dir.join(path)
    }

    /// The playlist of `path` as on disk now, if it has been written (`ts`
    /// and `fmp4`; an LL-HLS origin writes nothing to disk, so this is
    /// always `None` for it: read it over HTTP).
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
    options: &OriginOptions,
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
    cmd.args(options.args());
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
    fn options_become_arguments() {
        let args = OriginOptions::default().args().join(" ");
        assert!(
            args.starts_with("--format ts --target-duration 1 "),
            "{args}"
        );
        assert!(!args.contains("--strip-sei") && !args.contains("--sessions"));
        let args = OriginOptions {
            strip_sei: true,
            sessions: true,
            segment_ms: 1500,
            ..OriginOptions::llhls_like_fixture()
        }
        .args()
        .join(" ");
        assert!(
            args.contains("--format llhls --target-duration 2 --part-ms 50"),
            "{args}"
        );
        assert!(args.ends_with("--strip-sei --sessions"), "{args}");
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
