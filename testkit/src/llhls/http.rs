//! The HTTP side of the LL-HLS test origin: one [`Muxer`] per path and
//! publisher session, served like MediaMTX v1.16.2's HLS server, and
//! optionally with MediaMTX ≥ 1.18's reader sessions.
//!
//! ```text
//!  GStreamer streaming thread ──Publisher::write_annexb──▶ Mutex<Muxer> ──watch (version)──▶ waiting requests
//!  GET /{path}/index.m3u8 | video1_stream.m3u8[?_HLS_msn=M&_HLS_part=P] | {prefix}_video1_{init,partN,segN}.mp4
//! ```
//!
//! Answers, as MediaMTX gives them:
//!
//! | request | answer |
//! |---|---|
//! | any file of a path without publisher | 404 (sessions mode: 401 JSON, 404 JSON for `index.m3u8`) |
//! | `index.m3u8`, `video1_stream.m3u8` before the first segment | held until it exists |
//! | `index.m3u8` | `Cache-Control: max-age=30` |
//! | `video1_stream.m3u8` | `no-cache`; blocking reloads see [`Muxer::blocking`] |
//! | init | `max-age=30`; parts and segments `max-age=3600`, all `video/mp4` |
//! | the preload-hinted part | held until complete |
//! | anything else | 404 `404 page not found` |
//! | a held request when the publisher leaves | 500 |
//! | `/_testkit/held` (not MediaMTX's) | the number of requests held now, as text |
//! | `/_testkit/sessions` (not MediaMTX's) | the number of live reader sessions, as text |
//! | `/_testkit/connections?within_ms=N` (not MediaMTX's) | how many client connections (distinct client address and port) made a request in the last N ms, as text |
//!
//! **Sessions mode** (MediaMTX ≥ 1.18, `internal/servers/hls`): `index.m3u8`
//! without `cookieCheck=1` answers `302 Found` to itself with `cookieCheck=1`
//! added (and a `Secure; Partitioned` cookie a plain-HTTP client never sends
//! back). With it, a session is created (a random UUID secret, tied to the
//! client's IP address) and the multivariant playlist's URI carries
//! `?session=SECRET`, which the media playlist then puts on every URI. A
//! client that did send the `cookieCheck` cookie gets an `hlsSession` cookie
//! instead. Every other file needs a live session (cookie or `session`
//! query) from the same IP, else `401 {"status":"error","error":"authentication error"}`.
//! Sessions idle for the idle time (30 s) are removed by a sweep every third
//! of it, as MediaMTX does, so one lives 30 to 40 s after its last request.
//! Differences: the session belongs to the publisher session (a new
//! publisher invalidates it, as a new MediaMTX muxer does); playlists keep
//! v1.16.2's format (`VERSION:9` multivariant, no `public` in
//! `Cache-Control`); there is no HTML player page, no CDN secret, no
//! authentication.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::{Duration, Instant, SystemTime},
};

use axum::{
    body::{Body, Bytes},
    extract::{ConnectInfo, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri},
    response::{IntoResponse as _, Response},
    Router,
};
use glasswatch_common::h264;
use tokio::sync::watch;

use super::{
    encode_query, fill_random, parse_query, random_prefix, Blocking, Lookup, Muxer, MuxerConfig,
    MEDIA_PLAYLIST,
};

/// MediaMTX's session lifetime after the last request.
pub const SESSION_IDLE: Duration = Duration::from_secs(30);
const SESSION_COOKIE: &str = "hlsSession";
const SESSION_QUERY: &str = "session";
const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";

/// The muxer of one publisher session and the readers waiting on it.
#[derive(Debug)]
pub struct Live {
    muxer: Mutex<Muxer>,
    version: watch::Sender<u64>,
    sessions: Mutex<HashMap<String, Session>>,
    /// Requests waiting in [`Live::wait_for`] now (tests wait for a held
    /// request through `/_testkit/held` instead of sleeping).
    held: AtomicUsize,
}

/// Counts a request as held while it lives.
struct Held<'a>(&'a AtomicUsize);

impl<'a> Held<'a> {
    fn new(count: &'a AtomicUsize) -> Held<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        Held(count)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone, Copy)]
struct Session {
    ip: IpAddr,
    last_request: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Live {
    fn muxer(&self) -> MutexGuard<'_, Muxer> {
        lock(&self.muxer)
    }

    fn changed(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Runs `check` on the muxer after every change until it gives an answer.
    async fn wait_for<T>(&self, mut check: impl FnMut(&Muxer) -> Option<T>) -> T {
        let mut rx = self.version.subscribe();
        let mut held = None;
        loop {
            rx.borrow_and_update();
            if let Some(answer) = check(&self.muxer()) {
                return answer;
            }
            held.get_or_insert_with(|| Held::new(&self.held));
            if rx.changed().await.is_err() {
                // The sender lives as long as `self`; this is unreachable,
                // but a closed muxer is the honest reading of it.
                self.muxer().close();
            }
        }
    }
}

/// The LL-HLS side of the origin: paths, their current muxers, sessions.
#[derive(Debug)]
pub struct LlHlsServer {
    config: MuxerConfig,
    paths: HashMap<String, Mutex<Option<Arc<Live>>>>,
    session_idle: Option<Duration>,
    /// When each client connection last made a request (tests count a
    /// reader's connections through `/_testkit/connections`); entries idle
    /// for [`CONNECTION_MEMORY`] are forgotten.
    connections: Mutex<HashMap<SocketAddr, Instant>>,
}

/// How long `/_testkit/connections` remembers a connection.
const CONNECTION_MEMORY: Duration = Duration::from_secs(60);

impl LlHlsServer {
    /// A server for `paths`; `session_idle` enables sessions mode with that
    /// idle lifetime ([`SESSION_IDLE`] in MediaMTX).
    pub fn new(paths: &[String], config: MuxerConfig, session_idle: Option<Duration>) -> Arc<Self> {
        Arc::new(LlHlsServer {
            config,
            paths: paths
                .iter()
                .map(|p| (p.clone(), Mutex::new(None)))
                .collect(),
            session_idle,
            connections: Mutex::new(HashMap::new()),
        })
    }

    /// Starts a new muxer on `path` for a new publisher session (any
    /// previous one is closed). `None` for an unknown path.
    pub fn start_publisher(self: &Arc<Self>, path: &str) -> Option<Publisher> {
        let slot = self.paths.get(path)?;
        let prefix = random_prefix();
        let live = Arc::new(Live {
            muxer: Mutex::new(Muxer::new(self.config, prefix.clone())),
            version: watch::Sender::new(0),
            sessions: Mutex::new(HashMap::new()),
            held: AtomicUsize::new(0),
        });
        if let Some(old) = lock(slot).replace(live.clone()) {
            old.muxer().close();
            old.changed();
        }
        tracing::info!(path, prefix, "LL-HLS muxer started");
        Some(Publisher {
            server: self.clone(),
            path: path.to_owned(),
            live,
            clock: None,
            errors: 0,
        })
    }

    fn live(&self, path: &str) -> Option<Arc<Live>> {
        self.paths.get(path).and_then(|slot| lock(slot).clone())
    }

    /// The axum app; serve it with `into_make_service_with_connect_info::<SocketAddr>()`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new().fallback(handle).with_state(self.clone())
    }

    /// Removes idle sessions every third of the idle time, as MediaMTX does;
    /// runs until the server is dropped. Call from inside a tokio runtime.
    pub fn spawn_session_sweeper(self: &Arc<Self>) {
        let Some(idle) = self.session_idle else {
            return;
        };
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval((idle / 3).max(Duration::from_millis(10)));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(server) = weak.upgrade() else {
                    return;
                };
                let now = Instant::now();
                for slot in server.paths.values() {
                    if let Some(live) = lock(slot).clone() {
                        lock(&live.sessions)
                            .retain(|_, s| now.duration_since(s.last_request) < idle);
                    }
                }
            }
        });
    }
}

/// The writing end of one publisher session's muxer: the GStreamer probe
/// hands it every access unit. Dropping it closes the muxer (held requests
/// answer 500) and removes it from its path (later requests answer 404).
#[derive(Debug)]
pub struct Publisher {
    server: Arc<LlHlsServer>,
    path: String,
    live: Arc<Live>,
    /// The first access unit's PTS and the wall clock when it arrived.
    clock: Option<(u64, SystemTime)>,
    errors: u64,
}

/// Nanoseconds to 90 kHz ticks, rounded to the nearest tick (GStreamer
/// converted the RTP timestamps to nanoseconds, rounding down).
fn ns_to_ticks(ns: i128) -> i64 {
    let ticks = (ns * 90_000 + ns.signum() * 500_000_000) / 1_000_000_000;
    i64::try_from(ticks).unwrap_or(0)
}

impl Publisher {
    /// Muxes one Annex B access unit with its buffer PTS and DTS (ns).
    pub fn write_annexb(&mut self, au: &[u8], pts_ns: Option<u64>, dts_ns: Option<u64>) {
        let Some(pts) = pts_ns.or(dts_ns) else {
            self.error("access unit without timestamp");
            return;
        };
        let dts = dts_ns.unwrap_or(pts);
        let (first, wall) = *self.clock.get_or_insert((pts, SystemTime::now()));
        let rel = |t: u64| i128::from(t) - i128::from(first);
        let ntp = if pts >= first {
            wall + Duration::from_nanos(pts - first)
        } else {
            wall.checked_sub(Duration::from_nanos(first - pts))
                .unwrap_or(wall)
        };
        if tracing::enabled!(tracing::Level::TRACE) {
            if let Ok(Some(stamp)) = glasswatch_common::sei::find_stamp_annexb(au) {
                let now_us = SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros() as i64);
                tracing::trace!(
                    path = self.path,
                    seq = stamp.seq,
                    age_us = now_us - stamp.capture_us,
                    "stamped access unit reached the muxer"
                );
            }
        }
        let nals: Vec<&[u8]> = h264::annexb_nals(au).map(|(_, n)| n).collect();
        let result = self.live.muxer().write_access_unit(
            &nals,
            ns_to_ticks(rel(pts)),
            ns_to_ticks(rel(dts)),
            ntp,
        );
        self.live.changed();
        if let Err(e) = result {
            self.error(&e.to_string());
        }
    }

    fn error(&mut self, what: &str) {
        self.errors += 1;
        // Every error once, then every 100th, so a broken stream cannot flood the log.
        if self.errors == 1 || self.errors % 100 == 0 {
            tracing::warn!(
                path = self.path,
                errors = self.errors,
                "LL-HLS muxer: {what}"
            );
        }
    }

    /// The muxer's URI prefix.
    pub fn prefix(&self) -> String {
        self.live.muxer().prefix().to_owned()
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.live.muxer().close();
        self.live.changed();
        if let Some(slot) = self.server.paths.get(&self.path) {
            let mut slot = lock(slot);
            if slot.as_ref().is_some_and(|l| Arc::ptr_eq(l, &self.live)) {
                *slot = None;
            }
        }
        tracing::info!(path = self.path, "LL-HLS muxer closed");
    }
}

fn respond(status: StatusCode, headers: &[(header::HeaderName, &str)], body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            response.headers_mut().append(name.clone(), v);
        }
    }
    response
}

fn status_only(status: StatusCode) -> Response {
    respond(status, &[], Body::empty())
}

/// What gin answers when no handler wrote anything.
fn not_found() -> Response {
    respond(
        StatusCode::NOT_FOUND,
        &[(header::CONTENT_TYPE, "text/plain")],
        Body::from("404 page not found"),
    )
}

/// MediaMTX's JSON error (`AbortWithStatusJSON`).
fn json_error(status: StatusCode, error: &str) -> Response {
    let body = serde_json::json!({"status": "error", "error": error}).to_string();
    respond(
        status,
        &[(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        Body::from(body),
    )
}

fn media(data: Bytes, cache_control: &str) -> Response {
    respond(
        StatusCode::OK,
        &[
            (header::CACHE_CONTROL, cache_control),
            (header::CONTENT_TYPE, "video/mp4"),
        ],
        Body::from(data),
    )
}

fn playlist(text: String, cache_control: &str) -> Response {
    respond(
        StatusCode::OK,
        &[
            (header::CACHE_CONTROL, cache_control),
            (header::CONTENT_TYPE, PLAYLIST_TYPE),
        ],
        Body::from(text),
    )
}

async fn handle(
    State(server): State<Arc<LlHlsServer>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET {
        return not_found();
    }
    let full = uri.path().strip_prefix('/').unwrap_or(uri.path());
    // What tests wait for instead of sleeping.
    let count = |f: fn(&Live) -> usize| -> usize {
        server
            .paths
            .keys()
            .filter_map(|p| server.live(p))
            .map(|l| f(&l))
            .sum()
    };
    match full {
        "_testkit/held" => {
            return count(|l| l.held.load(Ordering::SeqCst))
                .to_string()
                .into_response()
        }
        "_testkit/sessions" => {
            return count(|l| lock(&l.sessions).len())
                .to_string()
                .into_response()
        }
        "_testkit/connections" => {
            let within = parse_query(uri.query().unwrap_or(""))
                .unwrap_or_default()
                .into_iter()
                .find(|(k, _)| k == "within_ms")
                .and_then(|(_, v)| v.parse::<u64>().ok())
                .map_or(CONNECTION_MEMORY, Duration::from_millis);
            let now = Instant::now();
            return lock(&server.connections)
                .values()
                .filter(|t| now.duration_since(**t) <= within)
                .count()
                .to_string()
                .into_response();
        }
        _ => {
            let now = Instant::now();
            let mut connections = lock(&server.connections);
            connections.retain(|_, t| now.duration_since(*t) < CONNECTION_MEMORY);
            connections.insert(peer, now);
        }
    }
    let is_file = [".m3u8", ".ts", ".mp4", ".mp"]
        .iter()
        .any(|ext| full.ends_with(ext));
    let Some((dir, file)) = full.rsplit_once('/').filter(|_| is_file) else {
        return not_found();
    };
    let mut file = file.to_owned();
    if file.ends_with(".mp") {
        file.push('4');
    }
    if !server.paths.contains_key(dir) {
        return not_found();
    }
    let raw_query = uri.query().unwrap_or("");
    if server.session_idle.is_some() {
        return with_session(&server, dir, &file, raw_query, peer.ip(), &headers).await;
    }
    match server.live(dir) {
        Some(live) => serve(&live, &file, raw_query).await,
        None => not_found(),
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A random version 4 UUID in its text form.
fn new_uuid() -> String {
    let mut b = [0u8; 16];
    fill_random(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn query_value(raw_query: &str, key: &str) -> Option<String> {
    // Go's URL.Query() ignores malformed pairs; so do we.
    raw_query
        .split('&')
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((super::query_unescape(k)?, super::query_unescape(v)?))
        })
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

async fn with_session(
    server: &Arc<LlHlsServer>,
    dir: &str,
    file: &str,
    raw_query: &str,
    ip: IpAddr,
    headers: &HeaderMap,
) -> Response {
    if file == "index.m3u8" {
        let mut pairs = parse_query(raw_query).unwrap_or_default();
        if query_value(raw_query, "cookieCheck").as_deref() != Some("1") {
            pairs.retain(|(k, _)| k != "cookieCheck");
            pairs.push(("cookieCheck".to_owned(), "1".to_owned()));
            let location = format!("/{dir}/{file}?{}", encode_query(&pairs));
            return respond(
                StatusCode::FOUND,
                &[
                    (
                        header::SET_COOKIE,
                        "cookieCheck=1; HttpOnly; Secure; SameSite=None; Partitioned",
                    ),
                    (header::LOCATION, &location),
                ],
                Body::empty(),
            );
        }
        pairs.retain(|(k, _)| k != "cookieCheck");
        let Some(live) = server.live(dir) else {
            return json_error(
                StatusCode::NOT_FOUND,
                &format!("no stream is available on path '{dir}'"),
            );
        };
        let secret = new_uuid();
        lock(&live.sessions).insert(
            secret.clone(),
            Session {
                ip,
                last_request: Instant::now(),
            },
        );
        tracing::info!(path = dir, %ip, "HLS session created");
        let mut set_cookie = None;
        if cookie(headers, "cookieCheck") == Some("1") {
            set_cookie = Some(format!(
                "{SESSION_COOKIE}={secret}; HttpOnly; Secure; SameSite=None; Partitioned"
            ));
        } else {
            pairs.retain(|(k, _)| k != SESSION_QUERY);
            pairs.push((SESSION_QUERY.to_owned(), secret));
        }
        let mut response = serve(&live, file, &encode_query(&pairs)).await;
        if let Some(c) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().append(header::SET_COOKIE, c);
        }
        return response;
    }
    let unauthorized = || json_error(StatusCode::UNAUTHORIZED, "authentication error");
    let Some(live) = server.live(dir) else {
        return unauthorized();
    };
    let secret = cookie(headers, SESSION_COOKIE)
        .map(str::to_owned)
        .or_else(|| query_value(raw_query, SESSION_QUERY))
        .unwrap_or_default();
    if !is_uuid(&secret) {
        return unauthorized();
    }
    {
        let mut sessions = lock(&live.sessions);
        match sessions.get_mut(&secret.to_ascii_lowercase()) {
            Some(s) if s.ip == ip => s.last_request = Instant::now(),
            _ => return unauthorized(),
        }
    }
    serve(&live, file, raw_query).await
}

/// One file of a live muxer, as gohlslib's `Muxer.Handle` answers.
async fn serve(live: &Live, file: &str, raw_query: &str) -> Response {
    if file == "index.m3u8" {
        return live
            .wait_for(|m| {
                if m.is_closed() {
                    Some(status_only(StatusCode::INTERNAL_SERVER_ERROR))
                } else if m.has_content() {
                    Some(match m.multivariant_playlist(raw_query) {
                        Some(text) => playlist(text, "max-age=30"),
                        None => status_only(StatusCode::INTERNAL_SERVER_ERROR),
                    })
                } else {
                    None
                }
            })
            .await;
    }
    if file == MEDIA_PLAYLIST {
        return media_playlist(live, raw_query).await;
    }
    let first = live.muxer().lookup(file);
    match first {
        Lookup::Found {
            data,
            cache_control,
        } => media(data, cache_control),
        Lookup::NotFound => not_found(),
        Lookup::Pending(id) => {
            live.wait_for(|m| {
                if m.is_closed() {
                    return Some(status_only(StatusCode::INTERNAL_SERVER_ERROR));
                }
                if m.next_part_id() <= id {
                    return None;
                }
                Some(match m.lookup(file) {
                    Lookup::Found {
                        data,
                        cache_control,
                    } => media(data, cache_control),
                    Lookup::NotFound | Lookup::Pending(_) => not_found(),
                })
            })
            .await
        }
    }
}

async fn media_playlist(live: &Live, raw_query: &str) -> Response {
    let msn = query_value(raw_query, "_HLS_msn").unwrap_or_default();
    let part = query_value(raw_query, "_HLS_part").unwrap_or_default();
    let skip = query_value(raw_query, "_HLS_skip").unwrap_or_default();
    let delta = skip == "YES" || skip == "v2";
    let parse = |s: &str| -> Result<u64, ()> {
        if s.is_empty() {
            Ok(0)
        } else {
            s.parse().map_err(|_| ())
        }
    };
    let (Ok(msn_n), Ok(part_n)) = (parse(&msn), parse(&part)) else {
        return status_only(StatusCode::BAD_REQUEST);
    };
    if msn.is_empty() && !part.is_empty() {
        return status_only(StatusCode::BAD_REQUEST);
    }
    let blocking = !msn.is_empty();
    live.wait_for(|m| {
        if m.is_closed() {
            return Some(status_only(StatusCode::INTERNAL_SERVER_ERROR));
        }
        if blocking {
            match m.blocking(msn_n, part_n) {
                Blocking::BadRequest => return Some(status_only(StatusCode::BAD_REQUEST)),
                Blocking::Wait => return None,
                Blocking::Ready => {}
            }
        } else if !m.has_content() {
            return None;
        }
        Some(playlist(m.media_playlist(delta, raw_query), "no-cache"))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_look_like_uuids() {
        let u = new_uuid();
        assert!(is_uuid(&u), "{u}");
        assert_eq!(&u[14..15], "4");
        assert!(!is_uuid("nope"));
        assert!(!is_uuid("0000000-0000-0000-0000-000000000000"));
    }

    #[test]
    fn ticks_round_to_nearest() {
        // 1 frame at 30 fps is 33 333 333 ns after GStreamer rounds down.
        assert_eq!(ns_to_ticks(33_333_333), 3000);
        assert_eq!(ns_to_ticks(66_666_666), 6000);
        assert_eq!(ns_to_ticks(-33_333_333), -3000);
    }

    #[test]
    fn cookies_and_queries_are_read() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; hlsSession=xyz"),
        );
        assert_eq!(cookie(&h, "hlsSession"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), None);
        assert_eq!(
            query_value("x=1&session=ab%2Dc&_HLS_msn=3", "session").as_deref(),
            Some("ab-c")
        );
    }
}
