//! `glasswatch-test-origin`: a small RTSP RECORD origin that republishes each
//! pushed H.264 stream over HTTP as classic HLS with MPEG-TS segments
//! (`--format ts`, the default), classic HLS with fMP4 segments made by
//! ffmpeg (`--format fmp4`), or LL-HLS the way MediaMTX v1.16.2 serves it
//! (`--format llhls`), for tests only.
//!
//! It exists because `ffmpeg -rtsp_flags listen` rejects the SETUP that
//! GStreamer's `rtspclientsink` sends, and tests must not depend on MediaMTX
//! (that is what `MEDIAMTX_BIN` tests are for). It does the part of an origin
//! the tests need and nothing more:
//!
//! ```text
//!  rtspclientsink ──RTSP RECORD (TCP)──▶ /NAME ─┐
//!                                               │  media per publisher session
//!  rtph264depay name=depay0 ─▶ h264parse name=parse ─▶ video/x-h264,stream-format=byte-stream,alignment=au
//!                                               │   (--strip-sei: a probe on parse's src pad drops every SEI NAL unit)
//!        ┌──────────────────────────────────────┼───────────────────────────────────────┐
//!   ts:  ▼                                fmp4: ▼                                llhls: ▼
//!  hlssink2 ─▶ {dir}/NAME/             mpegtsmux ─▶ fakesink name=out            fakesink name=out
//!  index.m3u8 + segment%05d.ts            probe ─▶ ffmpeg stdin (-f mpegts)        probe ─▶ llhls::Muxer (in memory)
//!                                          ─▶ -c copy -f hls -hls_segment_type fmp4
//!                                          ─▶ {dir}/NAME/index.m3u8, init.mp4, segment%05d.m4s
//!        └──────────────────────────────────────┼───────────────────────────────────────┘
//!                                               ▼
//!            axum on 127.0.0.1:{http}: GET /NAME/index.m3u8 (ts, fmp4: the directory; llhls: llhls::http)
//! ```
//!
//! Access units are handed on unchanged: `h264parse` only repacketises to
//! byte-stream/AU, so SEI NAL units (the frame stamp) and slices keep their
//! bytes, unless `--strip-sei` removes every SEI (an origin that strips the
//! stamp, so readers must match by fingerprint). For ts, segments are cut at
//! key frames once the target duration (1 s) has passed; it sends no
//! key-frame requests upstream. For fmp4, ffmpeg's HLS muxer (`-c copy`,
//! reading the MPEG-TS the media makes so the real timestamps are kept)
//! cuts 1 s segments at key frames and writes every segment and playlist to
//! a temporary file first, so HTTP never serves a half-written file; the
//! ffmpeg child gets end of file when the session ends and is killed by PID
//! if it has not exited 5 s later. For llhls, see
//! `glasswatch_testkit::llhls`: parts, segments and playlists live in memory
//! and are served complete only, with blocking playlist reloads, and with
//! `--sessions` MediaMTX 1.18's reader sessions.
//!
//! Each mount accepts one publisher at a time: an ANNOUNCE on a mount that is
//! recording is answered `503 Service Unavailable` (MediaMTX would let the
//! newcomer replace the publisher instead; closing a recording client from
//! another client's request leaves its TCP connection open in
//! gst-rtsp-server 1.22, so this origin refuses rather than half-replaces).
//! A new publisher session after a disconnect (TEARDOWN, or the connection
//! closing) gets a fresh media (the factory is not shared) and restarts the
//! playlist at `segment00000.ts` (llhls: a new muxer with a new random URI
//! prefix). The previous session's playlist and segments are removed when the
//! new session starts, and at start-up, so a path has no playlist until its
//! current publisher has produced a segment. When a publisher goes away the
//! media is shut down with EOS, so hlssink2 (or ffmpeg) closes the last
//! segment and the playlist ends with `#EXT-X-ENDLIST`; an LL-HLS path
//! answers 404 from then on, as MediaMTX's does.
//!
//! It binds only 127.0.0.1, prints `READY rtsp=127.0.0.1:P http=127.0.0.1:Q`
//! on stdout once both ports listen (port 0 picks a free one, and the line
//! gives the real port), logs to stderr and exits on SIGTERM or SIGINT
//! (without ending the playlists of publishers still connected).
//!
//! What it does not do: authentication, audio, RTSP playback, H.265.

use std::{
    collections::HashMap,
    future::Future,
    io::{IsTerminal as _, Write as _},
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    pin::Pin,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use axum::{
    http::{header, HeaderValue, Uri},
    middleware,
    response::Response,
    Router,
};
use clap::Parser;
use glasswatch_testkit::{
    llhls::{
        http::{LlHlsServer, Publisher},
        MuxerConfig,
    },
    stamps::strip_sei_annexb,
};
use gstreamer_rtsp_server::{self as rtsp_server, gio, glib, gst, gst_rtsp, prelude::*};
use tower_http::{services::ServeDir, set_header::SetResponseHeaderLayer};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    name = "glasswatch-test-origin",
    about = "Test-only RTSP RECORD origin that republishes H.264 as HLS (MPEG-TS, fMP4) or LL-HLS"
)]
struct Args {
    /// RTSP port on 127.0.0.1 (0 picks a free port; READY tells which).
    #[arg(long)]
    rtsp_port: u16,
    /// HTTP port on 127.0.0.1 serving `--dir` (0 picks a free port).
    #[arg(long)]
    http_port: u16,
    /// Directory holding one HLS directory per path.
    #[arg(long)]
    dir: PathBuf,
    /// Mount name, repeatable: `/NAME` accepts a publisher, HLS goes to `{dir}/NAME/`.
    /// Names match `[A-Za-z0-9_-]{1,64}`.
    #[arg(long = "path", required = true)]
    paths: Vec<String>,
    /// HLS target duration in seconds.
    #[arg(long, default_value_t = 1)]
    target_duration: u32,
    /// Segments listed in the playlist.
    #[arg(long, default_value_t = 5)]
    playlist_length: u32,
    /// Segment files kept on disk per path (older ones are deleted).
    #[arg(long, default_value_t = 10)]
    max_files: u32,
    /// Output: `ts` (hlssink2), `fmp4` (ffmpeg's HLS muxer) or `llhls`
    /// (in-memory LL-HLS muxer imitating MediaMTX 1.16.2).
    #[arg(long, value_enum, default_value_t = Format::Ts)]
    format: Format,
    /// Remove every SEI NAL unit from each access unit before it is segmented.
    #[arg(long)]
    strip_sei: bool,
    /// llhls: MediaMTX 1.18 reader sessions (redirect, `?session=`, 401).
    #[arg(long)]
    sessions: bool,
    /// llhls: idle time after which a reader session expires.
    #[arg(long, default_value_t = 30_000)]
    session_idle_ms: u64,
    /// llhls: `hlsPartDuration` in milliseconds (rounded up to whole frames).
    #[arg(long, default_value_t = 200)]
    part_ms: u64,
    /// llhls: `hlsSegmentDuration` in milliseconds (segments are cut at the
    /// first IDR after it).
    #[arg(long, default_value_t = 1000)]
    segment_ms: u64,
    /// llhls: `hlsSegmentCount`, at least 7.
    #[arg(long, default_value_t = 7)]
    segment_count: usize,
}

/// What each publisher session is turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// Classic HLS, MPEG-TS segments (`hlssink2`).
    Ts,
    /// Classic HLS, fMP4 segments (ffmpeg's HLS muxer, `-c copy`).
    Fmp4,
    /// LL-HLS with fMP4 parts, MediaMTX-style.
    Llhls,
}

/// Settings every media of the origin shares.
#[derive(Debug)]
struct Settings {
    format: Format,
    strip_sei: bool,
    target_duration: u32,
    playlist_length: u32,
    llhls: Option<Arc<LlHlsServer>>,
}

/// Checks a mount name: it becomes a URL path segment and a directory name.
fn validate_path_name(name: &str) -> anyhow::Result<()> {
    let ok_len = (1..=64).contains(&name.len());
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok_len || !ok_chars {
        bail!("invalid --path {name:?}: expected [A-Za-z0-9_-]{{1,64}}");
    }
    Ok(())
}

/// The fixed launch line of a RECORD media. Only numbers from our own
/// options are formatted in; file locations are set as properties in
/// `media-configure`, never through this string.
fn launch_line(args: &Args) -> String {
    const HEAD: &str = "rtph264depay name=depay0 ! h264parse name=parse";
    const AU: &str = "video/x-h264,stream-format=byte-stream,alignment=au";
    match args.format {
        Format::Ts => format!(
            "( {HEAD} ! {AU} ! hlssink2 name=hls target-duration={} playlist-length={} \
             max-files={} send-keyframe-requests=false )",
            args.target_duration, args.playlist_length, args.max_files
        ),
        // The depayloader hands over whole access units (the RTP marker bit
        // ends one); the caps say so, so h264parse never waits for the next
        // access unit to find where one ends (MediaMTX does not). SPS/PPS
        // go before every IDR, so ffmpeg and the muxer can start at any key
        // frame (MediaMTX also has them from the SDP).
        Format::Fmp4 => format!(
            "( rtph264depay name=depay0 ! {AU} ! h264parse name=parse config-interval=-1 ! {AU} \
             ! mpegtsmux ! fakesink name=out sync=false async=false )"
        ),
        Format::Llhls => format!(
            "( rtph264depay name=depay0 ! {AU} ! h264parse name=parse config-interval=-1 ! {AU} \
             ! fakesink name=out sync=false async=false )"
        ),
    }
}

/// The medias created on each mount (one per publisher session), weakly.
type Medias = Vec<glib::WeakRef<rtsp_server::RTSPMedia>>;
type Recording = Arc<Mutex<HashMap<String, Medias>>>;

fn lock(recording: &Recording) -> MutexGuard<'_, HashMap<String, Medias>> {
    recording.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether mount `name` has a publisher that is recording.
///
/// gst-rtsp-server emits `pre-announce-request` after it has constructed
/// the new session's media (not yet prepared), so only prepared medias
/// count: that excludes the newcomer and any media shutting down.
fn is_recording(recording: &Recording, name: &str) -> bool {
    lock(recording).get(name).is_some_and(|medias| {
        medias
            .iter()
            .filter_map(|weak| weak.upgrade())
            .any(|media| {
                matches!(
                    media.status(),
                    rtsp_server::RTSPMediaStatus::Prepared
                        | rtsp_server::RTSPMediaStatus::Suspended
                )
            })
    })
}

/// The mount name an RTSP URL addresses (`rtsp://host:port/NAME` gives `NAME`).
fn mount_name(url: &gst_rtsp::RTSPUrl) -> String {
    url.decode_path_components()
        .iter()
        .map(|c| c.as_str())
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// Builds one RECORD factory for `/name`, writing HLS into `hls_dir`.
fn make_factory(
    name: &str,
    hls_dir: &Path,
    launch: &str,
    recording: &Recording,
    settings: &Arc<Settings>,
) -> rtsp_server::RTSPMediaFactory {
    let factory = rtsp_server::RTSPMediaFactory::new();
    factory.set_launch(launch);
    factory.set_transport_mode(rtsp_server::RTSPTransportMode::RECORD);
    factory.set_protocols(gst_rtsp::RTSPLowerTrans::TCP);
    // Each publisher session gets its own media, so a reconnect starts clean.
    factory.set_shared(false);
    // When the publisher goes, push EOS so hlssink2 closes the last segment
    // and ends the playlist.
    factory.set_eos_shutdown(true);

    // The jitter buffer of a RECORD media waits 200 ms by default; over TCP
    // nothing arrives out of order, and MediaMTX has no such wait.
    if settings.format != Format::Ts {
        factory.set_latency(0);
    }

    let name = name.to_owned();
    let hls_dir = hls_dir.to_owned();
    let recording = recording.clone();
    let settings = settings.clone();
    factory.connect_media_configure(move |_factory, media| {
        configure_media(&name, &hls_dir, &recording, &settings, media);
    });
    factory
}

/// Where a media's access units (llhls) or MPEG-TS bytes (fmp4) go, once
/// the session is accepted.
#[derive(Debug)]
enum Output {
    Llhls(Publisher),
    Ffmpeg(FfmpegHls),
}

type OutputSlot = Arc<Mutex<Option<Output>>>;

fn lock_output(slot: &OutputSlot) -> MutexGuard<'_, Option<Output>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Called once per publisher session (on ANNOUNCE): points the media's
/// output at the mount and records the media as the mount's publisher. The
/// output itself starts when the media is prepared (an accepted publisher).
fn configure_media(
    name: &str,
    hls_dir: &Path,
    recording: &Recording,
    settings: &Arc<Settings>,
    media: &rtsp_server::RTSPMedia,
) {
    if let Err(e) = std::fs::create_dir_all(hls_dir) {
        tracing::error!(path = name, dir = %hls_dir.display(), "cannot create HLS directory: {e}");
    }
    if settings.format != Format::Ts {
        use_rtp_timestamps(name, media);
    }
    let bin = media.element().downcast::<gst::Bin>().ok();
    let element = |element: &str| bin.as_ref().and_then(|b| b.by_name(element));
    let output: OutputSlot = Arc::default();
    match settings.format {
        Format::Ts => match element("hls") {
            Some(hls) => {
                hls.set_property(
                    "location",
                    hls_dir.join("segment%05d.ts").to_string_lossy().as_ref(),
                );
                hls.set_property(
                    "playlist-location",
                    hls_dir.join("index.m3u8").to_string_lossy().as_ref(),
                );
            }
            None => tracing::error!(path = name, "no element named hls in the media"),
        },
        Format::Fmp4 | Format::Llhls => match element("out") {
            Some(out) => add_output_probe(name, &out, &output),
            None => tracing::error!(path = name, "no element named out in the media"),
        },
    }
    if settings.strip_sei {
        match element("parse") {
            Some(parse) => add_strip_sei_probe(name, &parse),
            None => tracing::error!(path = name, "no element named parse in the media"),
        }
    }
    {
        let mut map = lock(recording);
        let medias = map.entry(name.to_owned()).or_default();
        medias.retain(|weak| weak.upgrade().is_some());
        medias.push(media.downgrade());
    }

    let path = name.to_owned();
    let dir = hls_dir.to_owned();
    let started = output.clone();
    let settings = settings.clone();
    media.connect_prepared(move |_| {
        // Only accepted publishers get here (a refused one's media is never
        // prepared), and before any buffer reaches the output.
        clear_hls_dir(&path, &dir);
        let new = match settings.format {
            Format::Ts => None,
            Format::Fmp4 => match FfmpegHls::spawn(&path, &dir, &settings) {
                Ok(ffmpeg) => Some(Output::Ffmpeg(ffmpeg)),
                Err(e) => {
                    tracing::error!(path, "cannot start ffmpeg: {e:#}");
                    None
                }
            },
            Format::Llhls => settings
                .llhls
                .as_ref()
                .and_then(|server| server.start_publisher(&path))
                .map(Output::Llhls),
        };
        *lock_output(&started) = new;
        tracing::info!(path, "publisher recording");
    });
    let path = name.to_owned();
    media.connect_unprepared(move |_| {
        let ended = lock_output(&output).take();
        match ended {
            Some(Output::Ffmpeg(ffmpeg)) => ffmpeg.finish(),
            Some(Output::Llhls(publisher)) => drop(publisher),
            None => {}
        }
        tracing::info!(path, "publisher session ended");
    });
    tracing::info!(path = name, dir = %hls_dir.display(), "new publisher session");
}

/// Makes the media's RTP jitter buffers time buffers from RTP timestamps
/// alone (`mode=none`), as MediaMTX does: the default (`slave`) follows the
/// arrival times, and its jitter would reach the part and segment
/// durations.
fn use_rtp_timestamps(name: &str, media: &rtsp_server::RTSPMedia) {
    let Some(pipeline) = media
        .element()
        .parent()
        .and_then(|p| p.downcast::<gst::Bin>().ok())
    else {
        tracing::error!(path = name, "the media has no pipeline yet");
        return;
    };
    let path = name.to_owned();
    pipeline.connect_deep_element_added(move |_, _, element| {
        let factory = element.factory().map(|f| f.name());
        match factory.as_deref() {
            Some("rtpbin") => element.set_property_from_str("buffer-mode", "none"),
            Some("rtpjitterbuffer") => {
                element.set_property_from_str("mode", "none");
                tracing::debug!(path, "jitter buffer set to RTP timestamps only");
            }
            _ => {}
        }
    });
}

/// Hands every buffer reaching `out`'s sink pad to the media's output.
fn add_output_probe(name: &str, out: &gst::Element, output: &OutputSlot) {
    let Some(pad) = out.static_pad("sink") else {
        tracing::error!(path = name, "the out element has no sink pad");
        return;
    };
    let output = output.clone();
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |_, info| {
            let mut guard = lock_output(&output);
            let Some(out) = guard.as_mut() else {
                return gst::PadProbeReturn::Ok;
            };
            match &info.data {
                Some(gst::PadProbeData::Buffer(buffer)) => write_buffer(out, buffer),
                Some(gst::PadProbeData::BufferList(list)) => {
                    for buffer in list.iter() {
                        write_buffer(out, buffer);
                    }
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
}

fn write_buffer(out: &mut Output, buffer: &gst::BufferRef) {
    let Ok(map) = buffer.map_readable() else {
        return;
    };
    match out {
        Output::Llhls(publisher) => publisher.write_annexb(
            &map,
            buffer.pts().map(gst::ClockTime::nseconds),
            buffer.dts().map(gst::ClockTime::nseconds),
        ),
        Output::Ffmpeg(ffmpeg) => ffmpeg.write(&map),
    }
}

/// Replaces each access unit leaving `parse` by a copy without SEI NAL units.
fn add_strip_sei_probe(name: &str, parse: &gst::Element) {
    let Some(pad) = parse.static_pad("src") else {
        tracing::error!(path = name, "the parse element has no src pad");
        return;
    };
    pad.add_probe(gst::PadProbeType::BUFFER, |_, info| {
        if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data {
            let stripped = buffer
                .map_readable()
                .ok()
                .and_then(|map| strip_sei_annexb(&map));
            if let Some(bytes) = stripped {
                glasswatch_testkit::stamps::replace_buffer_data(buffer, bytes);
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// ffmpeg's HLS muxer as a child reading the media's MPEG-TS on stdin and
/// writing fMP4 segments into the mount's directory.
#[derive(Debug)]
struct FfmpegHls {
    path: String,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl FfmpegHls {
    fn spawn(path: &str, dir: &Path, settings: &Settings) -> anyhow::Result<FfmpegHls> {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-nostats", "-hide_banner", "-loglevel", "warning"])
            // Start on the first key frame instead of probing for seconds.
            .args(["-probesize", "65536", "-analyzeduration", "500000"])
            .args(["-f", "mpegts", "-i", "pipe:0"])
            .args(["-map", "0:v:0", "-c", "copy", "-f", "hls"])
            .args(["-hls_time", &settings.target_duration.to_string()])
            .args(["-hls_list_size", &settings.playlist_length.to_string()])
            .args([
                "-hls_segment_type",
                "fmp4",
                "-hls_fmp4_init_filename",
                "init.mp4",
            ])
            .args([
                "-hls_flags",
                "temp_file+delete_segments+independent_segments",
            ])
            .arg("-hls_segment_filename")
            .arg(dir.join("segment%05d.m4s"))
            .arg(dir.join("index.m3u8"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
        let stdin = child.stdin.take();
        tracing::info!(path, pid = child.id(), "ffmpeg HLS muxer started");
        Ok(FfmpegHls {
            path: path.to_owned(),
            child,
            stdin,
        })
    }

    fn write(&mut self, data: &[u8]) {
        use std::io::Write as _;
        if let Some(stdin) = self.stdin.as_mut() {
            if let Err(e) = stdin.write_all(data) {
                tracing::error!(path = self.path, "ffmpeg stopped reading: {e}");
                self.stdin = None;
            }
        }
    }

    /// Closes ffmpeg's input so it writes the last segment and ends the
    /// playlist, and kills it by PID if it has not exited 5 s later.
    fn finish(mut self) {
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    tracing::info!(path = self.path, %status, "ffmpeg HLS muxer exited");
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    tracing::warn!(path = self.path, "waiting for ffmpeg: {e}");
                    break;
                }
            }
        }
        // Drop kills it.
    }
}

impl Drop for FfmpegHls {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            tracing::warn!(path = self.path, pid = self.child.id(), "killing ffmpeg");
            // Child::kill signals this child's own PID (SIGKILL).
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Removes the playlist and segments a previous session or origin process
/// left in `dir`, so that, as with MediaMTX, a path has no playlist until its
/// current publisher has produced a segment. Other files are left alone.
fn clear_hls_dir(name: &str, dir: &Path) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(path = name, dir = %dir.display(), "cannot list HLS directory: {e}");
            return;
        }
    };
    let mut removed = 0usize;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        let ours = file_name == "index.m3u8"
            || file_name == "init.mp4"
            || file_name.ends_with(".tmp")
            || (file_name.starts_with("segment")
                && (file_name.ends_with(".ts") || file_name.ends_with(".m4s")));
        if !ours {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(path = name, file = %file_name, "cannot remove stale file: {e}")
            }
        }
    }
    if removed > 0 {
        tracing::info!(
            path = name,
            removed,
            "removed the previous session's HLS files"
        );
    }
}

/// Refuses an ANNOUNCE on a mount that is recording.
fn watch_announces(server: &rtsp_server::RTSPServer, recording: &Recording) {
    let recording = recording.clone();
    server.connect_client_connected(move |_server, client| {
        let recording = recording.clone();
        client.connect_pre_announce_request(move |_client, ctx| {
            let Some(name) = ctx.uri().map(mount_name) else {
                return gst_rtsp::RTSPStatusCode::Ok;
            };
            if is_recording(&recording, &name) {
                tracing::warn!(path = name, "refusing a second publisher (503)");
                gst_rtsp::RTSPStatusCode::ServiceUnavailable
            } else {
                gst_rtsp::RTSPStatusCode::Ok
            }
        });
    });
}

/// Creates the RTSP server bound to 127.0.0.1 and attaches it to `ctx`.
/// Returns the server (keep it alive) and its bound port.
fn start_rtsp(
    args: &Args,
    settings: &Arc<Settings>,
    ctx: &glib::MainContext,
) -> anyhow::Result<(rtsp_server::RTSPServer, u16)> {
    let server = rtsp_server::RTSPServer::new();
    server.set_address(&Ipv4Addr::LOCALHOST.to_string());
    server.set_service(&args.rtsp_port.to_string());
    let mounts = server
        .mount_points()
        .context("RTSP server has no mount points")?;
    let launch = launch_line(args);
    let recording: Recording = Arc::default();
    for name in &args.paths {
        let hls_dir = args.dir.join(name);
        std::fs::create_dir_all(&hls_dir)
            .with_context(|| format!("creating {}", hls_dir.display()))?;
        clear_hls_dir(name, &hls_dir);
        let factory = make_factory(name, &hls_dir, &launch, &recording, settings);
        mounts.add_factory(&format!("/{name}"), factory);
    }
    watch_announces(&server, &recording);
    // create_source binds the socket and reports why when it cannot.
    let source = server
        .create_source(None::<&gio::Cancellable>)
        .with_context(|| format!("binding RTSP on 127.0.0.1:{}", args.rtsp_port))?;
    source.attach(Some(ctx));
    let port = u16::try_from(server.bound_port())
        .ok()
        .filter(|p| *p != 0)
        .context("RTSP server reports no bound port")?;
    Ok((server, port))
}

/// The HTTP app: `dir` as static files, never cached, with HLS media types.
fn http_app(dir: &Path) -> Router {
    Router::new()
        .fallback_service(ServeDir::new(dir))
        .layer(middleware::map_response(hls_content_type))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ))
}

/// Content types of RFC 8216 (section 4): the generic guesses for `.m3u8`
/// and `.ts` (`audio/x-mpegurl`, a DLNA type) are not what players expect.
async fn hls_content_type(uri: Uri, mut response: Response) -> Response {
    let path = uri.path();
    let content_type = if path.ends_with(".m3u8") {
        Some("application/vnd.apple.mpegurl")
    } else if path.ends_with(".ts") {
        Some("video/mp2t")
    } else if path.ends_with(".mp4") || path.ends_with(".m4s") {
        Some("video/mp4")
    } else {
        None
    };
    if let (Some(ct), true) = (content_type, response.status().is_success()) {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    response
}

/// SIGTERM and SIGINT handlers, installed before anything else so that a
/// signal during start-up also ends the origin cleanly.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
        })
    }

    /// Resolves with the name of the first signal received.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut signals = Signals::install()?;
    for (i, name) in args.paths.iter().enumerate() {
        validate_path_name(name)?;
        if args.paths[..i].contains(name) {
            bail!("--path {name:?} given twice");
        }
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    if args.sessions && args.format != Format::Llhls {
        bail!("--sessions needs --format llhls");
    }
    gst::init().context("initialising GStreamer")?;

    let llhls = (args.format == Format::Llhls).then(|| {
        LlHlsServer::new(
            &args.paths,
            MuxerConfig {
                segment_count: args.segment_count,
                segment_min_duration: Duration::from_millis(args.segment_ms),
                part_min_duration: Duration::from_millis(args.part_ms),
            },
            args.sessions
                .then(|| Duration::from_millis(args.session_idle_ms)),
        )
    });
    let settings = Arc::new(Settings {
        format: args.format,
        strip_sei: args.strip_sei,
        target_duration: args.target_duration,
        playlist_length: args.playlist_length,
        llhls: llhls.clone(),
    });

    // The RTSP server runs on its own GLib main loop thread.
    let ctx = glib::MainContext::new();
    let (server, rtsp_port) = start_rtsp(&args, &settings, &ctx)?;
    let main_loop = glib::MainLoop::new(Some(&ctx), false);
    let glib_thread = {
        let main_loop = main_loop.clone();
        let ctx = ctx.clone();
        std::thread::Builder::new()
            .name("rtsp-main-loop".into())
            .spawn(move || {
                let guard = ctx.acquire();
                if guard.is_err() {
                    tracing::error!("cannot acquire the RTSP main context");
                    return;
                }
                main_loop.run();
            })
            .context("spawning the RTSP main loop thread")?
    };

    let http_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.http_port));
    let listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .with_context(|| format!("binding HTTP on {http_addr}"))?;
    let http_addr = listener.local_addr().context("reading HTTP address")?;
    let serve: Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> = match &llhls {
        Some(server) => {
            server.spawn_session_sweeper();
            let app = server
                .router()
                .into_make_service_with_connect_info::<SocketAddr>();
            Box::pin(async move { axum::serve(listener, app).await })
        }
        None => {
            let app = http_app(&args.dir);
            Box::pin(async move { axum::serve(listener, app).await })
        }
    };

    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY rtsp=127.0.0.1:{rtsp_port} http={http_addr}")
            .and_then(|()| out.flush())
            .context("writing READY to stdout")?;
    }
    tracing::info!(
        rtsp_port,
        %http_addr,
        dir = %args.dir.display(),
        paths = ?args.paths,
        format = ?args.format,
        strip_sei = args.strip_sei,
        sessions = args.sessions,
        "origin listening"
    );

    let result = tokio::select! {
        r = serve => r.context("HTTP server failed"),
        s = signals.recv() => {
            tracing::info!("{s}: shutting down");
            Ok(())
        }
    };
    main_loop.quit();
    if glib_thread.join().is_err() {
        tracing::error!("RTSP main loop thread panicked");
    }
    tracing::debug!("RTSP main loop stopped");
    drop(server);
    tracing::debug!("RTSP server dropped");
    result
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start tokio: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(args));
    drop(runtime);
    tracing::debug!("runtime stopped");
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_names_are_validated() {
        assert!(validate_path_name("cam").is_ok());
        assert!(validate_path_name("dev-1_cam0").is_ok());
        assert!(validate_path_name("").is_err());
        assert!(validate_path_name("a/b").is_err());
        assert!(validate_path_name("a b").is_err());
        assert!(validate_path_name("..").is_err());
        assert!(validate_path_name(&"x".repeat(65)).is_err());
    }
}
