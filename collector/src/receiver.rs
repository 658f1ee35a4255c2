//! The HLS receiver: one task per stream that reads what an origin serves
//! and reports every frame it finds with the time its bytes were all there
//! (`available_us`, DESIGN.md "Times"). It never decodes video.
//!
//! ```text
//!  GET index.m3u8 ──(redirect: session query)──▶ multivariant? ──▶ media playlist
//!        │                                                            │
//!        │  LL-HLS (CAN-BLOCK-RELOAD + parts):                        │  classic:
//!        │   chained (one request at a time):                         │   GET media every reload_ms
//!        │     GET preload-hinted part (held until complete)          │   GET each new segment once
//!        │     GET media?_HLS_msn=M&_HLS_part=P (answers at once)     │   → ts::frames / fmp4::frames
//!        │   unchained (the origin is far, see Chain):                │
//!        │     GET media?_HLS_msn=M&_HLS_part=P (held by the origin)  │
//!        │     GET each new part once, beside the next reload         │
//!        │   → fmp4::frames                                           │
//!        └──── 401 / 404 / error / ENDLIST: start over at index.m3u8 after a backoff
//! ```
//!
//! Every later URI is resolved with [`playlist::resolve`], which keeps the
//! session query MediaMTX (≥ 1.18) hands out with its redirect. Parts and
//! segments already listed when the reader starts are skipped: they were
//! available before it looked, so their times would say nothing. Bad
//! playlists, parts and segments are reported as errors (counted) and
//! skipped; the receiver never stops on bad input, it starts over.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glasswatch_common::sei::FrameStamp;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::allow::AllowList;
use crate::hls::playlist::{self, MediaPlaylist, Playlist};
use crate::hls::{fmp4, ts};

/// Identifies a stream: (device, stream id).
pub type StreamKey = (String, String);

/// Now on the collector's wall clock, µs since the Unix epoch.
pub fn wall_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// How the receiver behaves (from `[hls]`).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Classic HLS playlist reload interval.
    pub reload: Duration,
    /// Longest wait for one response.
    pub timeout: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
}

/// One frame found over HLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenFrame {
    /// The stamp, when present and belonging to this stream.
    pub stamp: Option<FrameStamp>,
    pub fingerprint: Option<u64>,
    pub keyframe: bool,
}

/// How a stream is being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// "ll-hls" or "hls".
    pub mode: &'static str,
    /// "fmp4" or "mpegts".
    pub container: &'static str,
    /// The media playlist URL (session query included).
    pub url: String,
    /// What the reader adds to a figure's uncertainty (half the reload
    /// interval of classic HLS; 0 for LL-HLS blocking reloads).
    pub uncertainty_us: i64,
}

/// What a receiver reports to the hub.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A media playlist was found (again); figures now come this way.
    Reading(Reading),
    /// The frames of one part or segment, all there at `available_us`,
    /// with the requests made since the last such report.
    Frames {
        frames: Vec<SeenFrame>,
        available_us: i64,
        playlist_requests: u64,
        media_requests: u64,
    },
    /// Something malformed or failing was skipped (counted per window).
    Error(String),
}

/// A receiver's message to the hub.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub key: StreamKey,
    pub event: Event,
}

/// Why a reading session ended.
#[derive(Debug, thiserror::Error)]
enum Stop {
    /// Nothing to read yet (404) or the stream ended: start over quietly.
    #[error("{0}")]
    NotYet(String),
    /// The origin refused the session (401): start over at once.
    #[error("session refused (401) at {0}")]
    Unauthorized(String),
    /// A failure worth counting.
    #[error("{0}")]
    Failed(String),
    /// The hub is gone.
    #[error("collector shutting down")]
    Closed,
}

/// A capped exponential backoff.
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
        }
    }
    fn reset(&mut self) {
        self.next = self.min;
    }
    fn wait(&mut self) -> Duration {
        let w = self.next;
        self.next = (self.next * 2).min(self.max);
        w
    }
}

/// Most part or segment downloads in flight per stream. Unchained, media
/// requests run concurrently with the next blocking reload so that a slow
/// link (a long round trip, a delaying proxy) does not make the reader fall
/// behind.
const MAX_IN_FLIGHT: usize = 16;

/// Reads `url` until the task is aborted or the hub goes away.
pub async fn run(
    key: StreamKey,
    url: String,
    client: reqwest::Client,
    settings: Settings,
    allow: Arc<AllowList>,
    tx: mpsc::Sender<Report>,
) {
    let tag = glasswatch_common::sei::stream_tag(&key.0, &key.1);
    let io = Io {
        key,
        client,
        settings,
        allow,
        tx,
        tag,
        counts: Arc::default(),
    };
    let mut backoff = Backoff::new(settings.retry_min, settings.retry_max);
    loop {
        let before = io.counts.frames.load(Ordering::Relaxed);
        let result = Session::new(io.clone()).run(&url).await;
        if io.counts.frames.load(Ordering::Relaxed) != before {
            backoff.reset();
        }
        let (device, stream) = (&io.key.0, &io.key.1);
        match result {
            Ok(()) => {}
            Err(Stop::Closed) => return,
            Err(Stop::NotYet(why)) => {
                tracing::debug!(device, stream, "{why}; retrying");
            }
            Err(Stop::Unauthorized(at)) => {
                tracing::info!(device, stream, "session refused at {at}; starting over");
                if io.send(Event::Error(format!("401 at {at}"))).await.is_err() {
                    return;
                }
                continue;
            }
            Err(Stop::Failed(why)) => {
                tracing::warn!(device, stream, "HLS: {why}; starting over");
                if io.send(Event::Error(why)).await.is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(backoff.wait()).await;
    }
}

/// Request and frame counters of one receiver.
#[derive(Debug, Default)]
struct Counts {
    frames: AtomicU64,
    playlists: AtomicU64,
    media: AtomicU64,
}

/// What a receiver and its download tasks share.
#[derive(Clone)]
struct Io {
    key: StreamKey,
    client: reqwest::Client,
    settings: Settings,
    /// Every URL is checked before it is fetched (a playlist may point
    /// anywhere).
    allow: Arc<AllowList>,
    tx: mpsc::Sender<Report>,
    tag: u32,
    counts: Arc<Counts>,
}

/// A response body with the URL it finally came from and when its last byte arrived.
struct Fetched {
    url: String,
    body: Vec<u8>,
    done_us: i64,
}

/// Most bytes accepted for one playlist, part or segment.
const MAX_BODY: usize = 64 << 20;

/// How a part or segment is read.
#[derive(Clone)]
enum Container {
    Fmp4(Arc<fmp4::InitSegment>),
    Ts,
}

impl Io {
    async fn send(&self, event: Event) -> Result<(), Stop> {
        self.tx
            .send(Report {
                key: self.key.clone(),
                event,
            })
            .await
            .map_err(|_| Stop::Closed)
    }

    async fn get(&self, url: &str) -> Result<Fetched, Stop> {
        self.allow
            .check(url)
            .map_err(|e| Stop::Failed(format!("GET refused: {e}")))?;
        let response = self
            .client
            .get(url)
            .timeout(self.settings.timeout)
            .send()
            .await
            .map_err(|e| Stop::Failed(format!("GET {url}: {}", error_chain(&e))))?;
        let status = response.status();
        let final_url = response.url().to_string();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(Stop::Unauthorized(final_url));
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(Stop::NotYet(format!("GET {url}: 404")));
        }
        if !status.is_success() {
            return Err(Stop::Failed(format!("GET {url}: HTTP {status}")));
        }
        let mut response = response;
        // One allocation of the announced size (bounded: the header is the
        // origin's word) instead of a growing buffer copied at each doubling.
        let announced = response.content_length().unwrap_or(0);
        let mut body = Vec::with_capacity(announced.min(MAX_BODY as u64) as usize);
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY {
                        return Err(Stop::Failed(format!(
                            "GET {url}: body larger than {MAX_BODY} bytes"
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(Stop::Failed(format!(
                        "GET {url}: body: {}",
                        error_chain(&e)
                    )))
                }
            }
        }
        let done_us = wall_us();
        // The connection goes back to the pool from a task hyper-util spawns
        // once it is idle; a request made before that task ran would race a
        // new connection against it, and a reader that fetches one thing
        // after another would keep two. Letting that task run first keeps
        // it on one.
        tokio::task::yield_now().await;
        Ok(Fetched {
            url: final_url,
            body,
            done_us,
        })
    }

    /// Fetches and parses a playlist; a bad one is a counted failure.
    async fn playlist(&self, url: &str) -> Result<(String, Playlist), Stop> {
        self.counts.playlists.fetch_add(1, Ordering::Relaxed);
        let f = self.get(url).await?;
        let text = std::str::from_utf8(&f.body)
            .map_err(|_| Stop::Failed(format!("playlist {url} is not UTF-8")))?;
        let p = playlist::parse(text).map_err(|e| Stop::Failed(format!("playlist {url}: {e}")))?;
        Ok((f.url, p))
    }

    fn seen(
        &self,
        stamp: Option<FrameStamp>,
        fingerprint: Option<u64>,
        keyframe: bool,
    ) -> SeenFrame {
        SeenFrame {
            stamp: stamp.filter(|s| s.stream_tag == self.tag),
            fingerprint,
            keyframe,
        }
    }

    /// Downloads one part or segment, reads its frames and reports them (or
    /// the error: a bad part is counted and skipped, the reading goes on).
    /// True when frames were reported.
    async fn media(&self, url: &str, container: &Container) -> bool {
        self.counts.media.fetch_add(1, Ordering::Relaxed);
        let result = match self.get(url).await {
            Ok(f) => self.frames(url, container, f),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok((event, damage)) => {
                if self.send(event).await.is_err() {
                    return false;
                }
                if let Some(d) = damage {
                    let _ = self.send(Event::Error(d)).await;
                }
                true
            }
            Err(e) => {
                tracing::debug!(device = self.key.0, stream = self.key.1, "skipped: {e}");
                let _ = self.send(Event::Error(e)).await;
                false
            }
        }
    }

    /// The frames of a part or segment, and a description of the damage
    /// skipped inside it (TS packets out of sync, lost or corrupt), if any.
    fn frames(
        &self,
        url: &str,
        container: &Container,
        f: Fetched,
    ) -> Result<(Event, Option<String>), String> {
        let mut damage = None;
        let frames: Vec<SeenFrame> = match container {
            Container::Fmp4(init) => fmp4::frames(init, &f.body)
                .map_err(|e| format!("{url}: {e}"))?
                .iter()
                .map(|fr| self.seen(fr.stamp, fr.fingerprint, fr.keyframe))
                .collect(),
            Container::Ts => {
                let report = ts::frames(&f.body).map_err(|e| format!("{url}: {e}"))?;
                let damage_count = report.cc_errors
                    + report.bad_packets
                    + report.psi_errors
                    + report.pes_errors
                    + usize::from(report.resync_skipped_bytes > 0);
                if damage_count > 0 || report.trailing_bytes > 0 {
                    damage = Some(format!(
                        "{url}: {damage_count} damaged packets or sections skipped, {} bytes resynchronised, {} trailing bytes",
                        report.resync_skipped_bytes, report.trailing_bytes
                    ));
                }
                report
                    .frames
                    .iter()
                    .map(|fr| {
                        self.seen(
                            fr.stamp,
                            fr.fingerprint.filter(|_| !fr.damaged),
                            fr.keyframe,
                        )
                    })
                    .collect()
            }
        };
        self.counts
            .frames
            .fetch_add(frames.len() as u64, Ordering::Relaxed);
        let event = Event::Frames {
            frames,
            available_us: f.done_us,
            playlist_requests: self.counts.playlists.swap(0, Ordering::Relaxed),
            media_requests: self.counts.media.swap(0, Ordering::Relaxed),
        };
        Ok((event, damage))
    }
}

/// One reading session: from the start URL to an error or the end. Its
/// downloads are aborted with it.
struct Session {
    io: Io,
    downloads: JoinSet<()>,
}

impl Session {
    fn new(io: Io) -> Session {
        Session {
            io,
            downloads: JoinSet::new(),
        }
    }

    async fn run(mut self, start: &str) -> Result<(), Stop> {
        let (mut url, mut p) = self.io.playlist(start).await?;
        if let Playlist::Multivariant(m) = &p {
            let variant = m.variants.first().ok_or_else(|| {
                Stop::Failed(format!("{url}: multivariant playlist lists no variant"))
            })?;
            let media_url = playlist::resolve(&url, &variant.uri);
            (url, p) = self.io.playlist(&media_url).await?;
        }
        let Playlist::Media(media) = p else {
            return Err(Stop::Failed(format!(
                "{url}: a multivariant playlist points at another one"
            )));
        };
        let low_latency = media
            .server_control
            .as_ref()
            .is_some_and(|c| c.can_block_reload)
            && media.part_target.is_some();
        if low_latency {
            self.low_latency(url, media).await
        } else {
            self.classic(url, media).await
        }
    }

    /// Starts a download, waiting for a slot when too many are in flight.
    async fn download(&mut self, url: String, container: Container) {
        while self.downloads.len() >= MAX_IN_FLIGHT {
            self.downloads.join_next().await;
        }
        while self.downloads.try_join_next().is_some() {}
        let io = self.io.clone();
        self.downloads.spawn(async move {
            io.media(&url, &container).await;
        });
    }

    /// Fetches the init section named by the playlist's `EXT-X-MAP`.
    async fn init(
        &self,
        url: &str,
        media: &MediaPlaylist,
    ) -> Result<Option<(String, Container)>, Stop> {
        let Some(map) = &media.map else {
            return Ok(None);
        };
        let init_url = playlist::resolve(url, &map.uri);
        let f = self.io.get(&init_url).await?;
        let init = fmp4::parse_init(&f.body)
            .map_err(|e| Stop::Failed(format!("init section {init_url}: {e}")))?;
        Ok(Some((map.uri.clone(), Container::Fmp4(Arc::new(init)))))
    }

    /// LL-HLS: each new part fetched once, on one connection while the
    /// origin is near (the [`Chain`]), else with blocking reloads and
    /// concurrent part downloads.
    async fn low_latency(&mut self, mut url: String, mut media: MediaPlaylist) -> Result<(), Stop> {
        let (mut map_uri, mut init) = match self.init(&url, &media).await? {
            Some(x) => x,
            None => {
                return Err(Stop::Failed(format!(
                    "{url}: LL-HLS playlist without EXT-X-MAP"
                )))
            }
        };
        let base = strip_directives(&url);
        self.io
            .send(Event::Reading(Reading {
                mode: "ll-hls",
                container: "fmp4",
                url: base.clone(),
                uncertainty_us: 0,
            }))
            .await?;
        // The next part to fetch: the first one not listed yet, and the
        // origin's name for it (its preload hint), if it gave one.
        let mut cursor = media.next_part();
        let mut hint = hinted_part(&url, &media);
        let mut chain = Chain::default();
        loop {
            let started = Instant::now();
            // Chained: the part at the cursor, held by the origin until it is
            // complete. The reload below then answers at once.
            let chained_before = chain.on;
            let mut hinted_failed = false;
            let hinted = match hint.take().filter(|_| chain.on) {
                Some(part_url) => {
                    let ok = self.io.media(&part_url, &init).await;
                    if !ok {
                        hinted_failed = true;
                    }
                    ok.then_some(part_url)
                }
                None => None,
            };
            let (u, p) = self
                .io
                .playlist(&playlist::blocking_url(&base, cursor.0, Some(cursor.1)))
                .await?;
            // URIs are resolved without this request's `_HLS_*` directives
            // (resolve() passes the playlist's query on, for sessions), so
            // that a part has the same URL in every playlist and as a hint.
            url = strip_directives(&u);
            media = match p {
                Playlist::Media(m) => m,
                Playlist::Multivariant(_) => {
                    return Err(Stop::Failed(format!("{u}: expected a media playlist")))
                }
            };
            if media.map.as_ref().is_some_and(|m| m.uri != map_uri) {
                // A new muxer (publisher restarted): new init, start at its live edge.
                (map_uri, init) = self
                    .init(&url, &media)
                    .await?
                    .ok_or_else(|| Stop::Failed(format!("{url}: EXT-X-MAP vanished")))?;
                cursor = media.next_part();
                hint = hinted_part(&url, &media);
                continue;
            }
            let parts = listed_parts(&media);
            let first = parts.first().map(|(id, _)| *id);
            let next = media.next_part();
            if first.is_some_and(|f| cursor < f) || cursor > next {
                // Fell behind the window, or the numbering went back: live
                // edge. Falling behind skips parts (their frames will count
                // as dropped), so it is logged where an operator sees it.
                tracing::warn!(
                    device = self.io.key.0,
                    stream = self.io.key.1,
                    ?cursor,
                    ?first,
                    ?next,
                    "LL-HLS reader off the playlist's window; jumping to the live edge"
                );
                cursor = next;
                hint = hinted_part(&url, &media);
                continue;
            }
            let from = cursor;
            let new: Vec<String> = parts
                .into_iter()
                .filter(|(id, part)| *id >= from && !part.gap)
                .map(|(_, part)| playlist::resolve(&url, &part.uri))
                .filter(|part_url| hinted.as_ref() != Some(part_url))
                .collect();
            let fetched_any = hinted.is_some() || !new.is_empty();
            if hinted.is_some() {
                // Chained. Parts listed after the hinted one completed before
                // this reload answered (a late cycle: a loaded machine, or a
                // far origin). One is fetched next on the same connection;
                // several are downloaded side by side, as one after another
                // they would put the reader further behind.
                let late = !new.is_empty();
                if new.len() == 1 {
                    for part_url in new {
                        self.io.media(&part_url, &init).await;
                    }
                } else {
                    for part_url in new {
                        self.download(part_url, init.clone()).await;
                    }
                }
                chain.chained_cycle(late);
            } else {
                let idle = self.downloads_done();
                for part_url in new {
                    self.download(part_url, init.clone()).await;
                }
                if hinted_failed {
                    chain.failed();
                } else if !chain.on {
                    chain.unchained_cycle(idle);
                }
            }
            // Everything listed is fetched: ask for the part after the last
            // listed one (after a segment closed, part 0 of the next one).
            cursor = next;
            hint = hinted_part(&url, &media);
            if chain.on != chained_before {
                tracing::debug!(
                    device = self.io.key.0,
                    stream = self.io.key.1,
                    chained = chain.on,
                    "LL-HLS chain"
                );
            }
            if media.ended {
                return Err(Stop::NotYet(format!("{url}: stream ended")));
            }
            if !fetched_any && started.elapsed() < Duration::from_millis(5) {
                // The origin answered at once without anything new: it does
                // not block. Do not spin.
                tokio::time::sleep(self.io.settings.reload).await;
            }
        }
    }

    /// Reaps finished downloads; true when none is left in flight.
    fn downloads_done(&mut self) -> bool {
        while self.downloads.try_join_next().is_some() {}
        self.downloads.is_empty()
    }

    /// Classic HLS: poll the playlist every `reload`, fetch each new segment once.
    async fn classic(&mut self, url: String, mut media: MediaPlaylist) -> Result<(), Stop> {
        let mut init = self.init(&url, &media).await?;
        let container = if init.is_some() { "fmp4" } else { "mpegts" };
        let uncertainty_us =
            i64::try_from(self.io.settings.reload.as_micros() / 2).unwrap_or(i64::MAX);
        self.io
            .send(Event::Reading(Reading {
                mode: "hls",
                container,
                url: url.clone(),
                uncertainty_us,
            }))
            .await?;
        let mut next_msn = media.next_msn();
        let mut ticker = tokio::time::interval(self.io.settings.reload);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let (u, p) = self.io.playlist(&url).await?;
            media = match p {
                Playlist::Media(m) => m,
                Playlist::Multivariant(_) => {
                    return Err(Stop::Failed(format!("{u}: expected a media playlist")))
                }
            };
            if let (Some(map), Some((uri, _))) = (&media.map, &init) {
                if &map.uri != uri {
                    init = self.init(&url, &media).await?;
                }
            }
            let listed_end = media.next_msn();
            let first = media.segments.first().map(|s| s.msn).unwrap_or(listed_end);
            if next_msn > listed_end || next_msn < first {
                // Numbering went back (new publisher) or we fell behind: live edge.
                next_msn = listed_end;
            }
            let from = next_msn;
            let new: Vec<String> = media
                .segments
                .iter()
                .filter(|s| s.msn >= from)
                .filter_map(|s| {
                    next_msn = s.msn + 1;
                    (!s.gap).then(|| playlist::resolve(&url, &s.uri))
                })
                .collect();
            for seg_url in new {
                let container = init.as_ref().map_or(Container::Ts, |(_, c)| c.clone());
                self.download(seg_url, container).await;
            }
            if media.ended {
                return Err(Stop::NotYet(format!("{url}: stream ended")));
            }
        }
    }
}

/// Every part listed in a media playlist with its (msn, index), in order.
fn listed_parts(media: &MediaPlaylist) -> Vec<((u64, u64), &playlist::Part)> {
    let mut out = Vec::new();
    for seg in &media.segments {
        for (i, part) in seg.parts.iter().enumerate() {
            out.push(((seg.msn, i as u64), part));
        }
    }
    let msn = media.next_msn();
    for (i, part) in media.trailing_parts.iter().enumerate() {
        out.push(((msn, i as u64), part));
    }
    out
}

/// The URL of the part the origin will deliver next (its `TYPE=PART`
/// preload hint), when it names a whole resource (a byte-range hint is a
/// piece of a growing segment: not chained).
fn hinted_part(url: &str, media: &MediaPlaylist) -> Option<String> {
    media
        .preload_hint
        .as_ref()
        .filter(|h| h.byterange_start.is_none() && h.byterange_length.is_none())
        .map(|h| playlist::resolve(url, &h.uri))
}

/// Whether an LL-HLS reader fetches on one connection, hint after hint.
///
/// Chained, each cycle is: GET the preload-hinted part (the origin holds it
/// until complete, so its last byte arrives half a round trip after the part
/// closed), then a blocking reload for that part (it exists: answered at
/// once) that names the next hint. One request at a time, so one connection
/// per stream, and a part is timed half a round trip sooner than by a
/// blocking reload followed by a GET. That stays in time while two round
/// trips fit in a part's duration. A cycle is *late* when the reload lists
/// parts after the hinted one; those are fetched next, on the same
/// connection. A loaded machine makes a cycle late now and then; a far
/// origin (or a delaying proxy) makes most of them late, and then the reader
/// unchains after [`Chain::LATE`] late cycles out of the last 8: blocking
/// reloads with the part downloads beside them (two connections or more, but
/// each part fetched as soon as it is listed). It chains again once its
/// downloads have all finished before each reload answered for
/// [`Chain::AGAIN`] cycles in a row (the origin is near again); after a
/// failed hint, that wait doubles, up to [`Chain::MAX_BACKOFF`] times.
#[derive(Debug)]
struct Chain {
    on: bool,
    /// Whether each of the last 8 chained cycles was late (bit 0: the last).
    recent: u8,
    /// Unchained cycles in a row whose downloads had all finished.
    quick: u32,
    /// Hints that could not be fetched in this session.
    failures: u32,
}

impl Default for Chain {
    fn default() -> Chain {
        Chain {
            on: true,
            recent: 0,
            quick: 0,
            failures: 0,
        }
    }
}

impl Chain {
    /// Late cycles out of the last 8 that unchain.
    const LATE: u32 = 3;
    /// Quick unchained cycles before chaining again (about 2 s of 60 ms parts).
    const AGAIN: u32 = 32;
    const MAX_BACKOFF: u32 = 5;

    fn unchain(&mut self) {
        self.on = false;
        self.recent = 0;
        self.quick = 0;
    }

    /// One chained cycle; `late`: the reload listed parts after the hinted one.
    fn chained_cycle(&mut self, late: bool) {
        self.recent = (self.recent << 1) | u8::from(late);
        if self.recent.count_ones() >= Chain::LATE {
            self.unchain();
        }
    }

    /// A hinted part could not be fetched.
    fn failed(&mut self) {
        self.unchain();
        self.failures = self.failures.saturating_add(1);
    }

    /// One cycle without the chain; `idle`: no download was still in flight
    /// when the reload answered.
    fn unchained_cycle(&mut self, idle: bool) {
        self.quick = if idle {
            self.quick.saturating_add(1)
        } else {
            0
        };
        if self.quick >= Chain::AGAIN << self.failures.min(Chain::MAX_BACKOFF) {
            self.on = true;
            self.quick = 0;
        }
    }
}

/// A playlist URL without `_HLS_msn`/`_HLS_part`/`_HLS_skip` (the base for the next request).
fn strip_directives(url: &str) -> String {
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, q),
        None => return url.to_owned(),
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("_HLS_"))
        .collect();
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// An error with its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_are_stripped_and_the_session_kept() {
        assert_eq!(strip_directives("http://h/a.m3u8"), "http://h/a.m3u8");
        assert_eq!(
            strip_directives("http://h/a.m3u8?session=x&_HLS_msn=3&_HLS_part=1"),
            "http://h/a.m3u8?session=x"
        );
        assert_eq!(
            strip_directives("http://h/a.m3u8?_HLS_msn=3"),
            "http://h/a.m3u8"
        );
    }

    #[test]
    fn parts_are_numbered_across_segments_and_trailing() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:7\n\
            #EXT-X-PART:DURATION=0.2,URI=\"p0\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.2,URI=\"p1\"\n\
            #EXTINF:0.4,\ns7\n#EXT-X-PART:DURATION=0.2,URI=\"p2\",INDEPENDENT=YES\n";
        let Ok(Playlist::Media(m)) = playlist::parse(text) else {
            panic!("parse")
        };
        let ids: Vec<_> = listed_parts(&m)
            .iter()
            .map(|(id, p)| (*id, p.uri.clone()))
            .collect();
        assert_eq!(
            ids,
            vec![
                ((7, 0), "p0".into()),
                ((7, 1), "p1".into()),
                ((8, 0), "p2".into())
            ]
        );
        assert_eq!(m.next_part(), (8, 1));
    }

    #[test]
    fn only_whole_part_hints_are_chained() {
        let head = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-PART-INF:PART-TARGET=0.2\n\
            #EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-PART:DURATION=0.2,URI=\"p0.mp4\",INDEPENDENT=YES\n";
        let media = |tail: &str| match playlist::parse(&format!("{head}{tail}")) {
            Ok(Playlist::Media(m)) => m,
            other => panic!("{other:?}"),
        };
        let url = "http://h/cam/stream.m3u8?session=s&_HLS_msn=7&_HLS_part=0";
        assert_eq!(
            hinted_part(
                url,
                &media("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p1.mp4?session=s\"\n")
            )
            .as_deref(),
            Some("http://h/cam/p1.mp4?session=s")
        );
        assert_eq!(hinted_part(url, &media("")), None);
        assert_eq!(
            hinted_part(
                url,
                &media("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s7.mp4\",BYTERANGE-START=100\n")
            ),
            None
        );
    }

    #[test]
    fn the_chain_holds_through_a_late_cycle_and_comes_back_once_the_origin_is_near_again() {
        let mut chain = Chain::default();
        assert!(chain.on);
        // A late cycle now and then (a loaded machine) keeps the chain.
        for i in 0..64 {
            chain.chained_cycle(i % 4 == 0);
            assert!(chain.on, "cycle {i}");
        }
        // Most cycles late (a far origin): unchained at the third of eight.
        chain.chained_cycle(true);
        chain.chained_cycle(false);
        assert!(chain.on);
        chain.chained_cycle(true);
        assert!(!chain.on);
        // A download still in flight when a reload answered starts the count over.
        for _ in 0..Chain::AGAIN - 1 {
            chain.unchained_cycle(true);
        }
        chain.unchained_cycle(false);
        assert!(!chain.on);
        for _ in 0..Chain::AGAIN {
            chain.unchained_cycle(true);
        }
        assert!(chain.on);
        // Each failed hint unchains at once and doubles the wait, to a cap.
        let cycles = |chain: &mut Chain| {
            (1..)
                .find(|_| {
                    chain.unchained_cycle(true);
                    chain.on
                })
                .unwrap_or(0)
        };
        chain.failed();
        assert!(!chain.on);
        assert_eq!(cycles(&mut chain), Chain::AGAIN * 2);
        chain.failed();
        assert_eq!(cycles(&mut chain), Chain::AGAIN * 4);
        for _ in 0..10 {
            chain.failed();
        }
        assert_eq!(cycles(&mut chain), Chain::AGAIN << Chain::MAX_BACKOFF);
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let w: Vec<_> = (0..4).map(|_| b.wait().as_millis()).collect();
        assert_eq!(w, vec![100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.wait().as_millis(), 100);
    }
}
