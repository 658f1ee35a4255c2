//! Storage: one suite run against SQLite (a temp file) and against a real
//! PostgreSQL 15 the testkit starts on 127.0.0.1: migrations (from empty,
//! re-applied, upgraded from version 1, a newer one refused), writes and
//! every query, idempotent retries, roll-ups against a direct computation
//! over the same frames, retention to the row, the queue's overflow, and
//! bad figures.

use std::collections::BTreeMap;
use std::time::Duration;

use glasswatch_collector::aggregate::percentile;
use glasswatch_collector::store::histogram::Histogram;
use glasswatch_collector::store::postgres::{self, Postgres};
use glasswatch_collector::store::rollup::{self, Ages, HOUR_US, MINUTE_US};
use glasswatch_collector::store::rows::{
    Batch, DeviceRow, EventRow, FrameRow, SecondRow, StreamRow, ViewerRow,
};
use glasswatch_collector::store::sqlite::Sqlite;
use glasswatch_collector::store::{migrate, Storage, Store, StoreError};
use glasswatch_common::api::Resolution;
use glasswatch_testkit::postgres::{require_postgres, PgOptions, Postgres as PgPeer};

/// 2027-01-15T00:00:00Z, a whole hour.
const T0: i64 = 1_799_971_200_000_000;
const S: i64 = 1_000_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn pg_settings(url: &str) -> postgres::Settings<'_> {
    postgres::Settings {
        url,
        password_file: None,
        ca_file: None,
        pool: 4,
    }
}

/// The glass-to-HLS values of second `i`: a skewed distribution (most
/// 60–120 ms), with a tail to ~2 s in one minute of four, deterministic.
fn frame_values(stream: u64, i: i64, n: usize) -> Vec<f64> {
    let tail = if (i / 60) % 4 == 0 { 0.88 } else { 0.998 };
    let mut x = (i as u64)
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(stream.wrapping_mul(1_442_695_040_888_963_407) | 1);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let u = ((x >> 11) as f64) / ((1u64 << 53) as f64);
            if u > tail {
                300.0 + 1700.0 * (u - tail) / (1.0 - tail)
            } else {
                60.0 + 60.0 * u * u
            }
        })
        .collect()
}

fn second(device: &str, stream: &str, start_us: i64, values: &[f64]) -> SecondRow {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let hist: Histogram = values.iter().copied().collect();
    let some = |v: f64| (!values.is_empty()).then_some(v);
    SecondRow {
        device: device.into(),
        stream: stream.into(),
        start_us,
        end_us: start_us + S,
        frames: values.len() as i64,
        matched_by_fingerprint: 0,
        unmatched: 0,
        dropped: (start_us / S % 7 == 0) as i64,
        p50_ms: some(percentile(&sorted, 50.0)),
        p95_ms: some(percentile(&sorted, 95.0)),
        p99_ms: some(percentile(&sorted, 99.0)),
        max_ms: sorted.last().copied(),
        receiver_fps: Some(values.len() as f64),
        publisher_fps: Some(30.0),
        encode_ms: some(3.0),
        publish_ms: some(1.0),
        origin_delivery_ms: some(80.0),
        clock_synced: true,
        clock_offset_ms: Some(0.25),
        clock_uncertainty_ms: Some(0.5),
        hls_mode: "ll-hls".into(),
        hls_container: "fmp4".into(),
        hls_errors: 0,
        playlist_requests: 10,
        media_requests: 15,
        bitrate_kbps: Some(2500.0),
        cpu_percent: Some(31.5),
        rss_bytes: Some(40 << 20),
        temperature_c: Some(51.0),
        report_backlog: Some(0),
        frames_dropped_capture: Some(0),
        frames_dropped_encode: Some(0),
        records_dropped: Some(0),
        hist: (!values.is_empty()).then(|| hist.to_bytes()),
    }
}

fn frame(device: &str, seq: i64, capture_us: i64, g2h: f64) -> FrameRow {
    FrameRow {
        device: device.into(),
        stream: "cam0".into(),
        session: 0x0011_2233_4455_6677,
        seq,
        capture_us,
        available_us: capture_us + (g2h * 1000.0) as i64,
        glass_to_hls_ms: g2h,
        encode_ms: 3.0,
        publish_ms: 1.0,
        origin_delivery_ms: g2h - 4.0,
        uncertainty_ms: 0.5,
        by_fingerprint: seq % 2 == 0,
    }
}

fn device_row(device: &str, online: bool, at_us: i64) -> DeviceRow {
    DeviceRow {
        device: device.into(),
        online,
        since_us: at_us,
        updated_us: at_us,
        host: Some("pi".into()),
        arch: Some("aarch64".into()),
        agent_version: Some("0.1.0".into()),
        gstreamer_version: Some("1.22.0".into()),
        clock_synchronized: Some(true),
        clock_est_error_us: Some(1500),
        status: "{}".into(),
    }
}

fn stream_row(device: &str, stream: &str, at_us: i64) -> StreamRow {
    StreamRow {
        device: device.into(),
        stream: stream.into(),
        encoder: "x264enc".into(),
        hardware: false,
        width: 1280,
        height: 720,
        fps: 30,
        rtsp_url: "rtsp://127.0.0.1:8554/x".into(),
        hls_url: "http://127.0.0.1:8888/x/index.m3u8".into(),
        updated_us: at_us,
    }
}

async fn write(store: &Store, batch: Batch) {
    store.write(std::sync::Arc::new(vec![batch])).await.unwrap();
}

/// Every query over data written once, then the same data written again.
async fn writes_and_queries(store: &Store) {
    let mut b = Batch {
        devices: vec![
            device_row("dev-a", true, T0),
            device_row("dev-b", false, T0),
        ],
        streams: vec![
            stream_row("dev-a", "cam0", T0),
            stream_row("dev-a", "cam1", T0),
            stream_row("dev-b", "cam0", T0),
        ],
        events: vec![
            EventRow {
                device: "dev-a".into(),
                at_us: T0,
                kind: "online",
                detail: String::new(),
            },
            EventRow {
                device: "dev-a".into(),
                at_us: T0 + 30 * S,
                kind: "restart",
                detail: String::new(),
            },
        ],
        ..Batch::default()
    };
    for i in 0..60 {
        let t = T0 + i * S;
        b.seconds
            .push(second("dev-a", "cam0", t, &frame_values(0, i, 30)));
        b.seconds
            .push(second("dev-b", "cam0", t, &frame_values(1, i, 30)));
        for j in 0..30 {
            b.frames
                .push(frame("dev-a", i * 30 + j, t + j * 33_333, 90.0 + j as f64));
        }
    }
    // A window without matched frames: no figures, stored as NULL.
    b.seconds.push(second("dev-a", "cam1", T0, &[]));
    b.viewers.push(ViewerRow {
        device: "dev-a".into(),
        stream: "cam0".into(),
        viewer: "v1".into(),
        start_us: T0,
        frames: 29,
        p50_ms: Some(350.0),
        p95_ms: Some(420.0),
        buffer_ms: Some(200.0),
        stalls: 0,
        uncertainty_ms: Some(2.0),
    });
    // A second viewer of the same second, and the first one a second later;
    // one second whose player saw no frame (no figures).
    for (viewer, at, frames, p50, p95, stalls) in [
        ("v2", T0, 31, Some(450.0), Some(500.0), 1),
        ("v1", T0 + S, 30, Some(380.0), Some(400.0), 0),
        ("v1", T0 + 2 * S, 0, None, None, 2),
    ] {
        b.viewers.push(ViewerRow {
            device: "dev-a".into(),
            stream: "cam0".into(),
            viewer: viewer.into(),
            start_us: at,
            frames,
            p50_ms: p50,
            p95_ms: p95,
            buffer_ms: Some(100.0),
            stalls,
            uncertainty_ms: Some(3.0),
        });
    }
    write(store, b.clone()).await;
    // Written again (a retry after a commit whose answer was lost): no duplicates.
    write(store, b.clone()).await;

    let latest = store.latest("dev-a", "cam0").await.unwrap().unwrap();
    assert_eq!(latest.t_us, T0 + 59 * S);
    assert_eq!(latest.frames, 30);
    let expected = b
        .seconds
        .iter()
        .find(|s| s.device == "dev-a" && s.stream == "cam0" && s.start_us == T0 + 59 * S)
        .unwrap();
    assert_eq!(latest.p50_ms, expected.p50_ms);
    assert_eq!(latest.p99_ms, expected.p99_ms);
    assert_eq!(latest.receiver_fps, expected.receiver_fps);
    assert!(store.latest("dev-a", "nope").await.unwrap().is_none());

    let fleet = store.fleet().await.unwrap();
    assert_eq!(fleet.len(), 3);
    assert_eq!(
        (fleet[0].device.as_str(), fleet[0].stream.as_str()),
        ("dev-a", "cam0")
    );
    assert!(fleet[0].online);
    assert_eq!(fleet[0].last.as_ref().unwrap().t_us, T0 + 59 * S);
    let empty = &fleet[1];
    assert_eq!(empty.stream, "cam1");
    let empty_last = empty.last.as_ref().unwrap();
    assert_eq!((empty_last.frames, empty_last.p50_ms), (0, None));
    assert!(!fleet[2].online);
    // An old second written late (a flush after an outage) leaves the
    // fleet's latest alone.
    write(
        store,
        Batch {
            seconds: vec![second("dev-a", "cam0", T0 - 3_600 * S, &[1.0])],
            ..Batch::default()
        },
    )
    .await;
    let fleet = store.fleet().await.unwrap();
    assert_eq!(fleet[0].last.as_ref().unwrap().t_us, T0 + 59 * S);

    let series = store
        .series(Resolution::Seconds, "dev-a", "cam0", T0, T0 + 60 * S)
        .await
        .unwrap();
    assert_eq!(series.len(), 60, "once each, after two writes");
    assert!(series.windows(2).all(|w| w[1].t_us == w[0].t_us + S));
    let half = store
        .series(
            Resolution::Seconds,
            "dev-a",
            "cam0",
            T0 + 10 * S,
            T0 + 20 * S,
        )
        .await
        .unwrap();
    assert_eq!(half.first().unwrap().t_us, T0 + 10 * S);
    assert_eq!(half.len(), 10, "from inclusive, to exclusive");

    // Viewer reports: per second, then grouped into a minute.
    let v = store
        .viewer_series(Resolution::Seconds, "dev-a", "cam0", T0, T0 + 60 * S)
        .await
        .unwrap();
    assert_eq!(v.len(), 3, "{v:?}");
    assert_eq!((v[0].t_us, v[0].viewers, v[0].frames), (T0, 2, 60));
    let mean = (350.0 * 29.0 + 450.0 * 31.0) / 60.0;
    assert!((v[0].p50_ms.unwrap() - mean).abs() < 1e-9, "{v:?}");
    assert_eq!(v[0].p95_ms, Some(500.0), "the worst second's p95");
    assert_eq!(v[0].stalls, 1);
    assert_eq!(v[0].uncertainty_ms, Some(3.0));
    assert_eq!((v[2].frames, v[2].p50_ms, v[2].stalls), (0, None, 2));
    let m = store
        .viewer_series(Resolution::Minutes, "dev-a", "cam0", T0, T0 + 60 * S)
        .await
        .unwrap();
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(
        (m[0].t_us, m[0].viewers, m[0].frames, m[0].stalls),
        (T0, 2, 90, 3)
    );
    let mean = (350.0 * 29.0 + 450.0 * 31.0 + 380.0 * 30.0) / 90.0;
    assert!((m[0].p50_ms.unwrap() - mean).abs() < 1e-9, "{m:?}");
    assert!(store
        .viewer_series(Resolution::Seconds, "dev-a", "nope", T0, T0 + 60 * S)
        .await
        .unwrap()
        .is_empty());

    let events = store.events("dev-a", T0, T0 + 3600 * S, 10).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].kind, "restart", "newest first");
    assert!(
        store
            .events("dev-a", T0, T0 + 3600 * S, 1)
            .await
            .unwrap()
            .len()
            == 1
    );

    let frames = store
        .frames("dev-a", "cam0", T0, T0 + 2 * S, 1000)
        .await
        .unwrap();
    assert_eq!(frames.len(), 60);
    assert_eq!(frames[0].session, "0011223344556677");
    assert!(frames.windows(2).all(|w| w[0].capture_us < w[1].capture_us));
    assert!(frames[0].matched_by_fingerprint);
    let limited = store
        .frames("dev-a", "cam0", T0, T0 + 60 * S, 7)
        .await
        .unwrap();
    assert_eq!(limited.len(), 7);
}

/// Roll-ups: minutes and hours agree with a direct computation over the
/// same frames within the histogram's error; a late second redoes its minute.
async fn rollups_agree_with_direct_computation(store: &Store) {
    let dev = "roll";
    let seconds = 2 * 3600 + 120;
    let mut all: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    let mut batch = Batch::default();
    for i in 0..seconds {
        let t = T0 + i * S;
        // One second in 60 has no matched frames.
        let n = if i % 60 == 17 { 0 } else { 30 };
        let values = frame_values(7, i, n);
        all.insert(t, values.clone());
        batch.seconds.push(second(dev, "cam0", t, &values));
        if batch.seconds.len() == 600 {
            write(store, std::mem::take(&mut batch)).await;
        }
    }
    write(store, batch).await;
    let now = T0 + seconds * S + 10 * S;
    let written = rollup::roll_up(store, now).await.unwrap();
    assert!(written >= 120 + 2, "{written} roll-up rows");
    // Nothing more to do right after.
    assert_eq!(rollup::roll_up(store, now).await.unwrap(), 0);

    let direct = |all: &BTreeMap<i64, Vec<f64>>, from: i64, to: i64| {
        let mut v: Vec<f64> = all
            .range(from..to)
            .flat_map(|(_, v)| v.iter().copied())
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let close = |got: Option<f64>, want: f64, what: &str| {
        let got = got.unwrap_or(f64::NAN);
        assert!(
            (got - want).abs() <= want.abs() * 0.01 + 1e-9,
            "{what}: roll-up {got} vs direct {want}"
        );
    };
    let minutes = store
        .series(Resolution::Minutes, dev, "cam0", T0, T0 + seconds * S)
        .await
        .unwrap();
    assert_eq!(minutes.len(), 122);
    for m in &minutes {
        let v = direct(&all, m.t_us, m.t_us + MINUTE_US);
        assert_eq!(m.frames as usize, v.len());
        close(m.p50_ms, percentile(&v, 50.0), "minute p50");
        close(m.p95_ms, percentile(&v, 95.0), "minute p95");
        close(m.p99_ms, percentile(&v, 99.0), "minute p99");
        assert_eq!(m.max_ms, v.last().copied(), "max is exact");
        let expected_dropped = (m.t_us / S..m.t_us / S + 60).filter(|s| s % 7 == 0).count();
        assert_eq!(m.dropped as usize, expected_dropped);
        // fps is the mean over the seconds: 59 of 60 had 30 frames.
        close(m.receiver_fps, 30.0 * 59.0 / 60.0, "minute fps");
    }
    let hours = store
        .series(Resolution::Hours, dev, "cam0", T0, T0 + seconds * S)
        .await
        .unwrap();
    assert_eq!(hours.len(), 2, "the third hour is not complete");
    for h in &hours {
        let v = direct(&all, h.t_us, h.t_us + HOUR_US);
        assert_eq!(h.frames as usize, v.len());
        close(h.p50_ms, percentile(&v, 50.0), "hour p50");
        close(h.p95_ms, percentile(&v, 95.0), "hour p95");
        close(h.p99_ms, percentile(&v, 99.0), "hour p99");
        assert_eq!(h.max_ms, v.last().copied());
    }
    // Averaging the minutes' p99 would be wrong: check the test data can tell.
    let mean_p99: f64 = minutes[..60].iter().filter_map(|m| m.p99_ms).sum::<f64>() / 60.0;
    let true_p99 = percentile(&direct(&all, T0, T0 + HOUR_US), 99.0);
    assert!(
        (mean_p99 - true_p99).abs() > true_p99 * 0.02,
        "{mean_p99} vs {true_p99}"
    );

    // A second that arrives late (a flush after an outage) is rolled in.
    let late_t = T0 + 17 * S; // the empty second of minute 0
    let late_values = vec![5_000.0; 30];
    write(
        store,
        Batch {
            seconds: vec![SecondRow {
                start_us: late_t + 500_000,
                ..second(dev, "cam0", late_t + 500_000, &late_values)
            }],
            ..Batch::default()
        },
    )
    .await;
    all.insert(late_t + 500_000, late_values);
    rollup::roll_up(store, now).await.unwrap();
    let m0 = &store
        .series(Resolution::Minutes, dev, "cam0", T0, T0 + MINUTE_US)
        .await
        .unwrap()[0];
    let v = direct(&all, T0, T0 + MINUTE_US);
    assert_eq!(m0.frames as usize, v.len());
    assert_eq!(m0.max_ms, Some(5_000.0));
    close(m0.p99_ms, percentile(&v, 99.0), "late minute p99");
    let h0 = &store
        .series(Resolution::Hours, dev, "cam0", T0, T0 + HOUR_US)
        .await
        .unwrap()[0];
    assert_eq!(h0.max_ms, Some(5_000.0), "the hour was redone too");
}

/// Retention deletes exactly what is past its age, in steps.
async fn retention_is_exact(store: &Store) {
    let now = T0 + 400 * 86_400 * S;
    let ages = Ages {
        frames: Some(3600 * S),
        seconds: Some(7 * 86_400 * S),
        minutes: Some(90 * 86_400 * S),
        hours: Some(730 * 86_400 * S),
        events: Some(365 * 86_400 * S),
        viewer: Some(7 * 86_400 * S),
    };
    let dev = "ret";
    let mut b = Batch::default();
    let sec_cut = now - 7 * 86_400 * S;
    for t in [sec_cut - S, sec_cut - 1, sec_cut, sec_cut + 1, now - S] {
        b.seconds.push(second(dev, "cam0", t, &[100.0]));
    }
    let frame_cut = now - 3600 * S;
    // 4,500 frames past their age (more than one delete step) and 3 kept.
    for i in 0..4_500 {
        b.frames
            .push(frame(dev, i, frame_cut - 4_500 * 1_000 + i * 1_000, 90.0));
    }
    for (i, t) in [frame_cut, frame_cut + 1, now].into_iter().enumerate() {
        b.frames.push(frame(dev, 10_000 + i as i64, t, 90.0));
    }
    let event_cut = now - 365 * 86_400 * S;
    for (i, t) in [event_cut - 1, event_cut, now].into_iter().enumerate() {
        b.events.push(EventRow {
            device: dev.into(),
            at_us: t,
            kind: ["online", "offline", "restart"][i],
            detail: String::new(),
        });
    }
    write(store, b).await;
    let deleted = rollup::retention(store, &ages, now).await.unwrap();
    assert_eq!(deleted, 2 + 4_500 + 1);
    let left = store
        .series(Resolution::Seconds, dev, "cam0", T0, now + S)
        .await
        .unwrap();
    let starts: Vec<i64> = left.iter().map(|p| p.t_us).collect();
    assert_eq!(starts, vec![sec_cut, sec_cut + 1, now - S]);
    let frames = store
        .frames(dev, "cam0", T0, now + S, 10_000)
        .await
        .unwrap();
    let kept: Vec<i64> = frames.iter().map(|f| f.capture_us).collect();
    assert_eq!(kept, vec![frame_cut, frame_cut + 1, now]);
    let events = store.events(dev, T0, now + S, 100).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(rollup::retention(store, &ages, now).await.unwrap(), 0);
}

/// The queue: overflow drops only the oldest, counted exactly; what is left
/// is written in order once the writer runs.
async fn queue_overflow_drops_the_oldest(store: Store) {
    let storage = Storage::with_store(Some(store), 5, Ages::default(), Duration::from_secs(10));
    let dev = "queue";
    for i in 0..20 {
        let t = T0 + i * S;
        storage.push(Batch {
            seconds: vec![
                second(dev, "cam0", t, &[80.0]),
                second(dev, "cam1", t, &[81.0]),
            ],
            frames: vec![frame(dev, i, t, 80.0)],
            ..Batch::default()
        });
    }
    let st = storage.status();
    assert_eq!(st.queued_batches, 5);
    assert_eq!((st.dropped_seconds, st.dropped_frames), (30, 15));
    let tasks = storage.spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while storage.pending() > 0 {
        assert!(std::time::Instant::now() < deadline, "queue not flushed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored = storage
        .store()
        .unwrap()
        .series(Resolution::Seconds, dev, "cam0", T0, T0 + 60 * S)
        .await
        .unwrap();
    let starts: Vec<i64> = stored.iter().map(|p| (p.t_us - T0) / S).collect();
    assert_eq!(starts, vec![15, 16, 17, 18, 19], "the newest five");
    assert_eq!(storage.status().written_seconds, 10);
    storage.shutdown(tasks).await;
}

/// Runs the whole suite on stores `open` makes (each call a fresh handle
/// on the same database).
async fn suite<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Store>,
{
    let store = open().await;
    assert_eq!(store.schema_version().await.unwrap(), migrate::latest());
    // Retention first: it counts every row it deletes.
    retention_is_exact(&store).await;
    writes_and_queries(&store).await;
    rollups_agree_with_direct_computation(&store).await;
    store.close().await;
    queue_overflow_drops_the_oldest(open().await).await;
}

#[test]
fn sqlite_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("glasswatch.db");
    runtime().block_on(suite(|| async {
        Store::Sqlite(Sqlite::open(&path).await.unwrap())
    }));
    // WAL mode.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn postgres_passes_the_suite() {
    if !require_postgres() {
        return;
    }
    let pg = PgPeer::start().unwrap();
    let url = pg.url();
    runtime().block_on(suite(|| async {
        Store::Postgres(Postgres::open(&pg_settings(&url)).await.unwrap())
    }));
}

/// The version 1 tables with a row, then the current binary opens it.
/// A second as a version 1 collector wrote it (that collector's writer,
/// not today's: its SQL, run by hand).
const V1_SECOND: &str = "INSERT INTO seconds (device, stream, start_us, end_us, frames, \
     matched_by_fingerprint, unmatched, dropped, p50_ms, clock_synced, hls_mode, hls_container, \
     hls_errors, playlist_requests, media_requests) VALUES ('old', 'cam0', 1799971200000000, \
     1799971201000000, 2, 0, 0, 0, 70.5, TRUE, 'll-hls', 'fmp4', 0, 0, 0)";

async fn check_upgrade(
    old: Store,
    write_v1: impl FnOnce(),
    reopen: impl std::future::Future<Output = Store>,
) {
    assert_eq!(old.schema_version().await.unwrap(), 1);
    old.close().await;
    write_v1();
    let new = reopen.await;
    assert_eq!(new.schema_version().await.unwrap(), migrate::latest());
    // Version 3 filled `latest` from the seconds already there.
    let fleet_point = new.latest("old", "cam0").await.unwrap().unwrap();
    assert_eq!(
        (fleet_point.t_us, fleet_point.frames, fleet_point.p50_ms),
        (T0, 2, Some(70.5))
    );
    new.close().await;
}

#[test]
fn sqlite_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    // From empty, then again (idempotent).
    let path = dir.path().join("a.db");
    rt.block_on(async {
        let s = Sqlite::open(&path).await.unwrap();
        assert_eq!(s.schema_version().await.unwrap(), migrate::latest());
        s.close().await;
        let s = Sqlite::open(&path).await.unwrap();
        assert_eq!(s.schema_version().await.unwrap(), migrate::latest());
        s.close().await;
    });
    let conn = rusqlite::Connection::open(&path).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM glasswatch_schema", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, migrate::latest(), "each version recorded once");
    // Upgrade from version 1.
    let old = dir.path().join("old.db");
    rt.block_on(async {
        let v1 = Store::Sqlite(Sqlite::open_at(&old, 1).await.unwrap());
        let by_hand = || {
            let c = rusqlite::Connection::open(&old).unwrap();
            c.execute(V1_SECOND, []).unwrap();
        };
        check_upgrade(v1, by_hand, async {
            Store::Sqlite(Sqlite::open(&old).await.unwrap())
        })
        .await;
        let c = rusqlite::Connection::open(&old).unwrap();
        let n: i64 = c
            .query_row(
                "SELECT count(*) FROM latest WHERE device = 'old'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "the upgrade filled latest");
    });
    // A database from a newer collector is refused, and left alone.
    conn.execute(
        "INSERT INTO glasswatch_schema (version, applied_us) VALUES (99, 0)",
        [],
    )
    .unwrap();
    drop(conn);
    let e = rt.block_on(Sqlite::open(&path)).unwrap_err();
    assert!(matches!(e, StoreError::TooNew { found: 99, .. }), "{e}");
    assert!(e.to_string().contains("newer than this collector"), "{e}");
}

#[test]
fn postgres_migrations() {
    if !require_postgres() {
        return;
    }
    let pg = PgPeer::start().unwrap();
    let url = pg.url();
    let rt = runtime();
    rt.block_on(async {
        let v1 = Store::Postgres(Postgres::open_at(&pg_settings(&url), 1).await.unwrap());
        check_upgrade(v1, || drop(pg.psql(V1_SECOND).unwrap()), async {
            Store::Postgres(Postgres::open(&pg_settings(&url)).await.unwrap())
        })
        .await;
        let n = pg
            .psql("SELECT count(*) FROM latest WHERE device = 'old'")
            .unwrap();
        assert_eq!(n.trim(), "1", "the upgrade filled latest");
        // Re-applied: nothing to do, nothing recorded twice.
        let again = Postgres::open(&pg_settings(&url)).await.unwrap();
        assert_eq!(again.schema_version().await.unwrap(), migrate::latest());
        again.close();
    });
    let versions = pg.psql("SELECT count(*) FROM glasswatch_schema").unwrap();
    assert_eq!(versions.trim(), migrate::latest().to_string());
    pg.psql("INSERT INTO glasswatch_schema (version, applied_us) VALUES (99, 0)")
        .unwrap();
    let e = rt.block_on(Postgres::open(&pg_settings(&url))).unwrap_err();
    assert!(matches!(e, StoreError::TooNew { found: 99, .. }), "{e}");
}

#[test]
fn postgres_over_tls_with_a_password_file() {
    if !require_postgres() {
        return;
    }
    let pg = PgPeer::start_with(PgOptions {
        tls: true,
        password: Some("s3cret-pass".into()),
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("pg-password");
    std::fs::write(&password, "s3cret-pass\nignored second line\n").unwrap();
    let wrong_password = dir.path().join("bad");
    std::fs::write(&wrong_password, "nope\n").unwrap();
    let other = glasswatch_testkit::tls::make_test_ca(dir.path()).unwrap();
    let url = format!("{}?sslmode=require", pg.url());
    let ca = pg.ca_file().unwrap();
    let settings = |ca_file, password_file| postgres::Settings {
        url: &url,
        password_file: Some(password_file),
        ca_file: Some(ca_file),
        pool: 2,
    };
    runtime().block_on(async {
        let store = Store::Postgres(Postgres::open(&settings(ca, &password)).await.unwrap());
        write(
            &store,
            Batch {
                seconds: vec![second("tls", "cam0", T0, &[90.0])],
                ..Batch::default()
            },
        )
        .await;
        assert_eq!(
            store.latest("tls", "cam0").await.unwrap().unwrap().frames,
            1
        );
        // The server saw our connections encrypted.
        let encrypted = pg
            .psql(
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = 'glasswatch-collector' AND s.ssl",
            )
            .unwrap();
        assert_ne!(encrypted.trim(), "0");
        store.close().await;
        // A certificate from another CA is refused, and so is a wrong password.
        let e = Postgres::open(&settings(&other.ca, &password))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("PostgreSQL"), "{e}");
        assert!(Postgres::open(&settings(ca, &wrong_password))
            .await
            .is_err());
    });
}
