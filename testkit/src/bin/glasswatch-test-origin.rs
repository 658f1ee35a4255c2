//! `glasswatch-test-origin`: a small RTSP RECORD origin that republishes each
//! pushed H.264 stream as classic HLS (MPEG-TS segments), for tests only.
//!
//! It exists because `ffmpeg -rtsp_flags listen` rejects the SETUP that
//! GStreamer's `rtspclientsink` sends, and tests must not depend on MediaMTX
//! (that is what `MEDIAMTX_BIN` tests are for). It does the part of an origin
//! the tests need and nothing more:
//!
//! ```text
//!  rtspclientsink ──RTSP RECORD (TCP)──▶ /NAME ─┐
//!                                               │  media per publisher session
//!  rtph264depay name=depay0 ─▶ h264parse ─▶ video/x-h264,stream-format=byte-stream,alignment=au
//!                                               │
//!                                               ▼
//!             hlssink2 ─▶ {dir}/{NAME}/index.m3u8 + segment%05d.ts
//!                                               │
//!            axum ServeDir on 127.0.0.1:{http}  ◀┘  GET /NAME/index.m3u8
//! ```
//!
//! Access units are handed on unchanged: `h264parse` only repacketises to
//! byte-stream/AU, so SEI NAL units (the frame stamp) and slices keep their
//! bytes. Segments are cut at key frames once the target duration (1 s) has
//! passed; it sends no key-frame requests upstream.
//!
//! Each mount accepts one publisher at a time: an ANNOUNCE on a mount that is
//! recording is answered `503 Service Unavailable` (MediaMTX would let the
//! newcomer replace the publisher instead; closing a recording client from
//! another client's request leaves its TCP connection open in
//! gst-rtsp-server 1.22, so this origin refuses rather than half-replaces).
//! A new publisher session after a disconnect (TEARDOWN, or the connection
//! closing) gets a fresh media (the factory is not shared) and restarts the
//! playlist at `segment00000.ts`. The previous session's playlist and
//! segments are removed when the new session starts, and at start-up, so a
//! path has no playlist until its current publisher has produced a segment.
//! When a publisher goes away the media is shut down with EOS, so hlssink2
//! closes the last segment and the playlist ends with `#EXT-X-ENDLIST`.
//!
//! It binds only 127.0.0.1, prints `READY rtsp=127.0.0.1:P http=127.0.0.1:Q`
//! on stdout once both ports listen (port 0 picks a free one, and the line
//! gives the real port), logs to stderr and exits on SIGTERM or SIGINT
//! (without ending the playlists of publishers still connected).
//!
//! What it does not do: LL-HLS, fMP4, authentication, audio, RTSP playback.

use std::{
    collections::HashMap,
    io::{IsTerminal as _, Write as _},
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use anyhow::{bail, Context as _};
use axum::{
    http::{header, HeaderValue, Uri},
    middleware,
    response::Response,
    Router,
};
use clap::Parser;
use gstreamer_rtsp_server::{self as rtsp_server, gio, glib, gst, gst_rtsp, prelude::*};
use tower_http::{services::ServeDir, set_header::SetResponseHeaderLayer};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    name = "glasswatch-test-origin",
    about = "Test-only RTSP RECORD origin that republishes H.264 as classic HLS"
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
    format!(
        "( rtph264depay name=depay0 ! h264parse \
         ! video/x-h264,stream-format=byte-stream,alignment=au \
         ! hlssink2 name=hls target-duration={} playlist-length={} max-files={} \
         send-keyframe-requests=false )",
        args.target_duration, args.playlist_length, args.max_files
    )
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

    let name = name.to_owned();
    let hls_dir = hls_dir.to_owned();
    let recording = recording.clone();
    factory.connect_media_configure(move |_factory, media| {
        configure_media(&name, &hls_dir, &recording, media);
    });
    factory
}

/// Called once per publisher session (on ANNOUNCE): points hlssink2 at the
/// mount's directory and records the media as the mount's publisher.
fn configure_media(
    name: &str,
    hls_dir: &Path,
    recording: &Recording,
    media: &rtsp_server::RTSPMedia,
) {
    if let Err(e) = std::fs::create_dir_all(hls_dir) {
        tracing::error!(path = name, dir = %hls_dir.display(), "cannot create HLS directory: {e}");
    }
    let hls = media
        .element()
        .downcast::<gst::Bin>()
        .ok()
        .and_then(|bin| bin.by_name("hls"));
    match hls {
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
    }
    {
        let mut map = lock(recording);
        let medias = map.entry(name.to_owned()).or_default();
        medias.retain(|weak| weak.upgrade().is_some());
        medias.push(media.downgrade());
    }

    let path = name.to_owned();
    let dir = hls_dir.to_owned();
    media.connect_prepared(move |_| {
        // Only accepted publishers get here (a refused one's media is never
        // prepared), and before any buffer reaches hlssink2.
        clear_hls_dir(&path, &dir);
        tracing::info!(path, "publisher recording");
    });
    let path = name.to_owned();
    media.connect_unprepared(move |_| tracing::info!(path, "publisher session ended"));
    tracing::info!(path = name, dir = %hls_dir.display(), "new publisher session");
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
            || (file_name.starts_with("segment") && file_name.ends_with(".ts"));
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
        let factory = make_factory(name, &hls_dir, &launch, &recording);
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
    gst::init().context("initialising GStreamer")?;

    // The RTSP server runs on its own GLib main loop thread.
    let ctx = glib::MainContext::new();
    let (server, rtsp_port) = start_rtsp(&args, &ctx)?;
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
    let app = http_app(&args.dir);

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
        "origin listening"
    );

    let result = tokio::select! {
        r = axum::serve(listener, app) => r.context("HTTP server failed"),
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
