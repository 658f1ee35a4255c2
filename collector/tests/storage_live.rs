//! Storage with the live chain (agent → testkit LL-HLS origin → collector,
//! all real processes on 127.0.0.1): one row per stream and second, equal
//! to what went out on MQTT; and nothing lost while the database is away
//! for 20 s (PostgreSQL stopped, the SQLite file made read-only or locked
//! by another process): every second of the outage is stored exactly once,
//! in order, once the database is back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use glasswatch_common::api::{SeriesResponse, StorageStatus};
use glasswatch_common::messages::Latency;
use glasswatch_testkit::chain::Chain;
use glasswatch_testkit::collector::http_get;
use glasswatch_testkit::postgres::{require_postgres, Postgres};
use glasswatch_testkit::require::{require, require_mqtt_stack, require_program};

/// How long the database is away (pacing, not synchronisation).
const OUTAGE: Duration = Duration::from_secs(20);

fn start(device: &str, storage: &str) -> Chain {
    Chain::start(device, &format!("[storage]\n{storage}")).unwrap()
}

fn storage(chain: &Chain) -> StorageStatus {
    serde_json::from_str(&chain.get("/api/v1/storage").unwrap()).unwrap()
}

/// Waits until storage has written everything queued.
fn wait_flushed(chain: &Chain, timeout: Duration) -> StorageStatus {
    let deadline = Instant::now() + timeout;
    loop {
        let st = storage(chain);
        if st.writable && st.queued_batches == 0 {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "storage not flushed within {timeout:?}: {st:?}\n{}",
            chain.collector.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The stream's stored seconds over the API.
fn series(chain: &Chain, from_us: i64, to_us: i64) -> SeriesResponse {
    let body = chain
        .get(&format!(
            "/api/v1/streams/{}/cam0/series?from={from_us}&to={to_us}",
            chain.device
        ))
        .unwrap();
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Windows `(start_us, end_us)` stored for a stream must follow each other
/// without gap or overlap, and cover every window that went out on MQTT.
fn check_contiguous(windows: &[(i64, i64)], published: &[Latency]) {
    assert!(windows.len() >= 2, "{windows:?}");
    for w in windows.windows(2) {
        assert_eq!(
            w[1].0, w[0].1,
            "a gap or overlap between stored seconds: {w:?}"
        );
    }
    let stored: std::collections::HashSet<i64> = windows.iter().map(|w| w.0).collect();
    let (first, last) = (windows[0].0, windows[windows.len() - 1].0);
    let missing: Vec<i64> = published
        .iter()
        .map(|s| s.window_start_us)
        .filter(|t| (first..=last).contains(t) && !stored.contains(t))
        .collect();
    assert!(missing.is_empty(), "published but not stored: {missing:?}");
}

#[test]
fn live_chain_stores_one_row_per_second_equal_to_mqtt() {
    if !require_mqtt_stack() {
        return;
    }
    let chain = start("store1", "frames = \"1h\"");
    chain.wait_for_frames(20, Duration::from_secs(60)).unwrap();
    let published = chain.mqtt();
    let last = published.last().unwrap().window_start_us;
    // Storage trails MQTT by at most a write.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = published[0].window_start_us;
    let stored = loop {
        let s = series(&chain, first, last + 1);
        if s.points.last().is_some_and(|p| p.t_us == last) {
            break s;
        }
        assert!(Instant::now() < deadline, "last second not stored: {s:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        stored.resolution,
        glasswatch_common::api::Resolution::Seconds
    );
    assert_eq!(
        stored.points.len(),
        published.len(),
        "one row per second, as published"
    );
    for (p, m) in stored.points.iter().zip(&published) {
        assert_eq!(p.t_us, m.window_start_us);
        assert_eq!(p.frames, m.frames);
        assert_eq!(p.dropped, m.dropped);
        assert_eq!(p.p50_ms, m.p50_ms);
        assert_eq!(p.p95_ms, m.p95_ms);
        assert_eq!(p.p99_ms, m.p99_ms);
        assert_eq!(p.max_ms, m.max_ms);
        assert_eq!(p.receiver_fps, Some(m.receiver_fps));
        assert_eq!(p.publisher_fps, m.publisher_fps);
        assert_eq!(p.encode_ms, m.breakdown.encode_ms);
        assert_eq!(p.publish_ms, m.breakdown.publish_ms);
        assert_eq!(p.origin_delivery_ms, m.breakdown.origin_delivery_ms);
    }
    // The frames behind the percentiles: as many as the summaries counted,
    // and their median is the published one.
    let api = chain.collector.api_url();
    let with_frames = published.iter().rev().find(|s| s.frames > 0).unwrap();
    let csv = http_get(&format!(
        "{api}/api/v1/streams/store1/cam0/frames?from=0&to={}&format=csv&limit=100000",
        i64::MAX / 2
    ))
    .unwrap();
    assert!(csv.starts_with("session,seq,capture_us,available_us,glass_to_hls_ms"));
    let json = http_get(&format!(
        "{api}/api/v1/streams/store1/cam0/frames?from=0&to={}",
        i64::MAX / 2
    ))
    .unwrap();
    let frames: glasswatch_common::api::FramesResponse = serde_json::from_str(&json).unwrap();
    let total: u64 = published.iter().map(|s| s.frames).sum();
    assert!(
        frames.frames.len() as u64 >= total,
        "{} < {total}",
        frames.frames.len()
    );
    assert_eq!(csv.lines().count() - 1, frames.frames.len());
    // A frame counts in the window that matched it, which is usually the
    // one its part arrived in (a frame waiting for its record moves on).
    let mut window: Vec<f64> = frames
        .frames
        .iter()
        .filter(|f| {
            let t = f.available_us;
            t >= with_frames.window_start_us && t < with_frames.window_end_us
        })
        .map(|f| f.glass_to_hls_ms)
        .collect();
    window.sort_by(f64::total_cmp);
    assert!(
        (window.len() as i64 - with_frames.frames as i64).abs() <= 2,
        "{} stored frames arrived in a window that counted {}",
        window.len(),
        with_frames.frames
    );
    let median = glasswatch_collector::aggregate::percentile(&window, 50.0);
    let published_p50 = with_frames.p50_ms.unwrap();
    assert!(
        (median - published_p50).abs() <= 40.0,
        "median of the stored frames {median} vs published {published_p50}"
    );
    // The device's events: it came online.
    let events = http_get(&format!("{api}/api/v1/devices/store1/events")).unwrap();
    assert!(events.contains("\"kind\":\"online\""), "{events}");
    let st = storage(&chain);
    assert_eq!((st.kind.as_str(), st.dropped_seconds), ("sqlite", 0));
    assert_eq!(
        st.schema_version,
        Some(glasswatch_collector::store::migrate::latest())
    );
}

/// Seconds stored in PostgreSQL for `device`, in order.
fn pg_windows(pg: &Postgres, device: &str) -> Vec<(i64, i64)> {
    pg.psql(&format!(
        "SELECT start_us, end_us FROM seconds WHERE device = '{device}' ORDER BY start_us"
    ))
    .unwrap()
    .lines()
    .filter_map(|l| {
        let (a, b) = l.split_once('|')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    })
    .collect()
}

#[test]
fn postgres_outage_loses_nothing() {
    if !require_mqtt_stack() || !require_postgres() {
        return;
    }
    let mut pg = Postgres::start().unwrap();
    let chain = start("store2", &format!("postgres_url = \"{}\"", pg.url()));
    chain.wait_for_frames(3, Duration::from_secs(60)).unwrap();
    wait_flushed(&chain, Duration::from_secs(10));
    assert!(!pg_windows(&pg, "store2").is_empty());
    pg.stop().unwrap();
    let down_at = chain.mqtt().len();
    std::thread::sleep(OUTAGE);
    let during = chain.mqtt().len() - down_at;
    assert!(
        during >= 15,
        "the collector kept measuring: {during} summaries"
    );
    let st = storage(&chain);
    assert!(!st.writable && st.write_failures > 0, "{st:?}");
    assert!(st.queued_batches >= 15, "{st:?}");
    pg.start_again().unwrap();
    let st = wait_flushed(&chain, Duration::from_secs(30));
    assert_eq!((st.dropped_seconds, st.dropped_frames), (0, 0), "{st:?}");
    let published = chain.mqtt();
    let windows = pg_windows(&pg, "store2");
    check_contiguous(&windows, &published);
    let dupes = pg
        .psql("SELECT count(*) - count(DISTINCT (device, stream, start_us)) FROM seconds")
        .unwrap();
    assert_eq!(dupes.trim(), "0");
    // Every second published during the outage is there.
    let outage: Vec<i64> = published[down_at..down_at + during]
        .iter()
        .map(|s| s.window_start_us)
        .collect();
    let stored: Vec<i64> = windows.iter().map(|w| w.0).collect();
    assert!(outage.iter().all(|t| stored.contains(t)));
}

/// Seconds stored in an SQLite file for `device`, in order.
fn sqlite_windows(path: &Path, device: &str) -> Vec<(i64, i64)> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut st = conn
        .prepare("SELECT start_us, end_us FROM seconds WHERE device = ?1 ORDER BY start_us")
        .unwrap();
    st.query_map([device], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Files made immutable (`chattr +i`, which holds even for root) until dropped.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    fn set(files: Vec<PathBuf>) -> Immutable {
        for f in &files {
            let out = Command::new("chattr").arg("+i").arg(f).output().unwrap();
            assert!(out.status.success(), "chattr +i {}: {out:?}", f.display());
        }
        Immutable(files)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = Command::new("chattr").arg("-i").arg(f).status();
        }
    }
}

/// Runs the SQLite outage: `outage` makes the database unusable for the
/// collector until what it returns is dropped.
fn sqlite_outage<G>(device: &str, outage: impl FnOnce(&Path) -> G) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let chain = start(device, &format!("sqlite = \"{}\"", db.display()));
    chain.wait_for_frames(3, Duration::from_secs(60)).unwrap();
    wait_flushed(&chain, Duration::from_secs(10));
    let down_at = chain.mqtt().len();
    let guard = outage(&db);
    std::thread::sleep(OUTAGE);
    let st = storage(&chain);
    assert!(!st.writable && st.write_failures > 0, "{st:?}");
    drop(guard);
    let st = wait_flushed(&chain, Duration::from_secs(30));
    assert_eq!((st.dropped_seconds, st.dropped_frames), (0, 0), "{st:?}");
    let published = chain.mqtt();
    assert!(published.len() - down_at >= 15);
    let windows = sqlite_windows(&db, device);
    check_contiguous(&windows, &published);
    let stored: Vec<i64> = windows.iter().map(|w| w.0).collect();
    assert!(published[down_at..]
        .iter()
        .filter(|s| s.window_start_us <= *stored.last().unwrap())
        .all(|s| stored.contains(&s.window_start_us)));
}

#[test]
fn sqlite_read_only_for_20s_loses_nothing() {
    if !require_mqtt_stack() || !require_program("chattr") {
        return;
    }
    // Read-only for root too needs the immutable attribute (CAP_LINUX_IMMUTABLE).
    let probe = tempfile::NamedTempFile::new().unwrap();
    let can = require("chattr +i (root with CAP_LINUX_IMMUTABLE on ext4)", || {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(probe.path())
            .status()
            .is_ok_and(|s| s.success());
        let _ = Command::new("chattr").arg("-i").arg(probe.path()).status();
        if ok {
            Ok(())
        } else {
            Err("cannot make a file immutable here".into())
        }
    });
    if !can {
        return;
    }
    sqlite_outage("store3", |db| {
        // The database and its write-ahead log; not the shared-memory index,
        // which every connection has mapped (writing to a mapping of an
        // immutable file faults the process, a case no disk produces).
        let wal = PathBuf::from(format!("{}-wal", db.display()));
        Immutable::set(vec![db.to_owned(), wal])
    });
}

#[test]
fn sqlite_locked_by_another_process_for_20s_loses_nothing() {
    if !require_mqtt_stack() {
        return;
    }
    sqlite_outage("store4", |db| {
        // Another writer holds the database's write lock.
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        conn
    });
}

#[test]
fn sigterm_flushes_what_is_queued() {
    if !require_mqtt_stack() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let mut chain = start("store5", &format!("sqlite = \"{}\"", db.display()));
    chain.wait_for_frames(3, Duration::from_secs(60)).unwrap();
    wait_flushed(&chain, Duration::from_secs(10));
    // Seconds pile up while another process holds the lock...
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let queued = storage(&chain).queued_batches;
        if queued >= 4 {
            break;
        }
        assert!(Instant::now() < deadline, "{queued} batches queued");
        std::thread::sleep(Duration::from_millis(200));
    }
    // ...then the lock goes, and the collector is stopped at once.
    drop(conn);
    let published = chain.mqtt();
    let started = Instant::now();
    let status = chain
        .collector
        .peer()
        .terminate(Duration::from_secs(20))
        .unwrap();
    assert!(
        status.success(),
        "{status:?}\n{}",
        chain.collector.log_tail()
    );
    // Bounded by storage.flush_timeout_s (10 s) plus the rest of shutdown.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let windows = sqlite_windows(&db, "store5");
    check_contiguous(&windows, &published);
    let last_published = published.last().unwrap().window_start_us;
    assert!(
        windows.last().unwrap().0 >= last_published,
        "the last published second was flushed"
    );
}
