//! What the collector's history costs, on SQLite and on a real PostgreSQL 15
//! (`bench/storage.sh` runs it; `bench/README.md` has the figures and what
//! they mean). Each part runs on both backends in the same run:
//!
//! 1. **Writes.** `Store::write` with 30 ticks per call, as the writer task
//!    does (`MAX_BATCHES_PER_WRITE` in `store/queue.rs`): second rows of
//!    `streams` streams (each with a 30-frame histogram blob), then frame
//!    rows of `frame_streams` streams at 30 fps. Throughput is rows per
//!    wall-clock second of the `write` calls; the rows are built before the
//!    clock starts. Peers, with the same rows: for SQLite a bare rusqlite
//!    loop of single-row prepared `INSERT`s (no `ON CONFLICT`), one
//!    transaction per 30 ticks, into another file with the same schema and
//!    pragmas, interleaved with ours; for PostgreSQL `psql` running
//!    `COPY … FROM STDIN (FORMAT csv)` of all the rows into a table created
//!    `LIKE` ours `INCLUDING ALL` (same keys and indexes), with psql's
//!    start-up (the fastest of three `SELECT 1` runs) subtracted.
//! 2. **Queries.** History for `streams` streams (one device each) ending at
//!    `T_END`: `seconds_min` minutes of seconds, `minute_days` days of
//!    minutes and `hour_days` days of hours, written through `Store::write`
//!    and `Store::write_rollups` (the watermark moved from window to
//!    window), plus the devices, streams and an event every 6 h. Then each
//!    dashboard query `queries` times (after 10 untimed) on random streams,
//!    wall time per call through the `Store` API; every answer is checked
//!    (point counts, latest second). PostgreSQL gets an `ANALYZE` first
//!    (autovacuum would have run one on a database this old). Then the size
//!    on disk: SQLite's file and WAL after `wal_checkpoint(TRUNCATE)`, per
//!    table from `dbstat`; PostgreSQL's `pg_total_relation_size` per table
//!    (heap, indexes, TOAST).
//! 3. **CPU.** `Storage::push_closed`, the collector's own entry point, with
//!    `cpu_streams` closed windows of 30 matched frames per tick (and their
//!    agent stats), the writer and maintenance tasks running. Each tick is
//!    pushed once the previous one is written, as at real-time rate (one
//!    second per transaction), then the minute and hour roll-ups of that data
//!    run. The figure is this process's CPU time (`/proc/self/stat`, every
//!    thread) per second of data, with frames kept and not, against a
//!    `Storage` with no store (`kind = "none"`) in the same run; for
//!    PostgreSQL also the server's CPU (the postmaster and its children).
//!    With frames kept, `rollup::retention` then runs with its clock an hour
//!    past the last frame, deleting every frame written (at steady state
//!    retention deletes as many frames as are written), and its CPU is
//!    reported per second of data too.
//! 4. With `fsync_on=1`, part 1 again on PostgreSQL restarted on the same
//!    data directory with `fsync`, `synchronous_commit` and
//!    `full_page_writes` on (the testkit runs it with them off).
//!
//! Arguments are `key=value` (`cargo bench` appends `--bench`, ignored); see
//! [`Args`] and `bench/storage.sh`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::future::Future;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glasswatch_collector::hub::Closed;
use glasswatch_collector::matcher::{FrameLatency, MatchedBy};
use glasswatch_collector::store::histogram::Histogram;
use glasswatch_collector::store::postgres::{Postgres, Settings};
use glasswatch_collector::store::rollup::{self, Ages, GRACE_US, HOUR_US, MINUTE_US};
use glasswatch_collector::store::rows::{
    Batch, DeviceRow, EventRow, FrameRow, RollupRow, SecondRow, StreamRow,
};
use glasswatch_collector::store::sqlite::Sqlite;
use glasswatch_collector::store::{sql, Storage, Store, Table};
use glasswatch_common::api::Resolution;
use glasswatch_common::messages::{
    Breakdown, ClockEstimate, HlsReading, Latency, Stats, SCHEMA_LATENCY, SCHEMA_STATS,
};
use glasswatch_testkit::postgres::{find_bindir, Postgres as PgPeer};

const S: i64 = 1_000_000;
const DAY_US: i64 = 86_400 * S;
/// Ticks per `Store::write`, as the writer takes them (`MAX_BATCHES_PER_WRITE`).
const TICKS_PER_WRITE: usize = 30;
/// Frames per second per stream.
const FPS: usize = 30;
/// The end of the generated history: 2027-01-15T00:00:00Z, a whole hour.
const T_END: i64 = 1_799_971_200_000_000;
/// Untimed runs of each query before the timed ones.
const WARM_UP: usize = 10;
/// Untimed ticks before the CPU is measured.
const CPU_WARM_UP: usize = 5;
/// The stream of every generated device.
const STREAM: &str = "cam0";

/// The run's sizes (`key=value` on the command line).
#[derive(Debug, Clone)]
struct Args {
    /// Streams in the write test's second rows and in the query test.
    streams: usize,
    /// `Store::write` calls (of 30 ticks) per write measure.
    writes: usize,
    /// Streams at 30 fps in the write test's frame rows.
    frame_streams: usize,
    /// Minutes of second rows generated for the queries.
    seconds_min: i64,
    /// Days of minute rows generated for the queries.
    minute_days: i64,
    /// Days of hour rows generated for the queries.
    hour_days: i64,
    /// Timed runs of each query.
    queries: usize,
    /// Streams in the CPU test.
    cpu_streams: usize,
    /// Seconds of data in the CPU test.
    cpu_ticks: usize,
    /// Repeat the PostgreSQL writes with fsync on.
    fsync_on: bool,
    sqlite: bool,
    postgres: bool,
}

impl Args {
    fn parse() -> Args {
        let mut a = Args {
            streams: 1_000,
            writes: 10,
            frame_streams: 100,
            seconds_min: 15,
            minute_days: 2,
            hour_days: 7,
            queries: 200,
            cpu_streams: 100,
            cpu_ticks: 300,
            fsync_on: true,
            sqlite: true,
            postgres: true,
        };
        for arg in std::env::args().skip(1).filter(|a| !a.starts_with("--")) {
            let (k, v) = arg
                .split_once('=')
                .unwrap_or_else(|| panic!("argument {arg:?} is not key=value"));
            let n = || -> i64 {
                v.parse()
                    .unwrap_or_else(|_| panic!("{k}={v}: not a whole number"))
            };
            let positive = || -> usize {
                let x = n();
                assert!(x > 0, "{k}={v}: must be positive");
                x as usize
            };
            match k {
                "streams" => a.streams = positive(),
                "writes" => a.writes = positive(),
                "frame_streams" => a.frame_streams = positive(),
                "seconds_min" => a.seconds_min = positive() as i64,
                "minute_days" => a.minute_days = positive() as i64,
                "hour_days" => a.hour_days = positive() as i64,
                "queries" => a.queries = positive(),
                "cpu_streams" => a.cpu_streams = positive(),
                "cpu_ticks" => a.cpu_ticks = positive(),
                "fsync_on" => a.fsync_on = n() != 0,
                "only" => {
                    a.sqlite = v == "sqlite";
                    a.postgres = v == "postgres";
                    assert!(a.sqlite || a.postgres, "only={v}: sqlite or postgres");
                }
                _ => panic!(
                    "unknown argument {k}; known: streams writes frame_streams seconds_min \
                     minute_days hour_days queries cpu_streams cpu_ticks fsync_on only"
                ),
            }
        }
        a
    }
}

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A glass-to-HLS figure: mostly 60-120 ms, 1 % in a tail to 2 s.
    fn latency_ms(&mut self) -> f64 {
        let u = self.unit();
        if u > 0.99 {
            300.0 + 1700.0 * (u - 0.99) / 0.01
        } else {
            60.0 + 60.0 * u * u
        }
    }
}

/// A window's histogram and its figures.
#[derive(Debug, Clone)]
struct Sample {
    hist: Histogram,
    bytes: Vec<u8>,
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
}

impl Sample {
    fn of(hist: Histogram) -> Sample {
        Sample {
            bytes: hist.to_bytes(),
            p50: hist.quantile(0.50),
            p95: hist.quantile(0.95),
            p99: hist.quantile(0.99),
            max: hist.max(),
            hist,
        }
    }

    fn frames(&self) -> i64 {
        self.hist.count() as i64
    }
}

/// Realistic histograms to draw rows from: seconds of 30 frames, minutes
/// merged from 60 seconds, hours from 60 minutes.
struct Pools {
    seconds: Vec<Sample>,
    minutes: Vec<Sample>,
    hours: Vec<Sample>,
}

impl Pools {
    fn new() -> Pools {
        let mut rng = Rng(7);
        let seconds: Vec<Sample> = (0..64)
            .map(|_| Sample::of((0..FPS).map(|_| rng.latency_ms()).collect()))
            .collect();
        let merged = |rng: &mut Rng, from: &[Sample]| {
            let mut h = Histogram::new();
            for _ in 0..60 {
                h.merge(&from[rng.below(from.len())].hist);
            }
            Sample::of(h)
        };
        let minutes: Vec<Sample> = (0..32).map(|_| merged(&mut rng, &seconds)).collect();
        let hours: Vec<Sample> = (0..16).map(|_| merged(&mut rng, &minutes)).collect();
        Pools {
            seconds,
            minutes,
            hours,
        }
    }
}

fn device(i: usize) -> String {
    format!("dev-{i:04}")
}

fn second_row(device: &str, start_us: i64, s: &Sample) -> SecondRow {
    SecondRow {
        device: device.into(),
        stream: STREAM.into(),
        start_us,
        end_us: start_us + S,
        frames: s.frames(),
        matched_by_fingerprint: 0,
        unmatched: 0,
        dropped: i64::from(start_us / S % 97 == 0),
        p50_ms: s.p50,
        p95_ms: s.p95,
        p99_ms: s.p99,
        max_ms: s.max,
        receiver_fps: Some(30.0),
        publisher_fps: Some(30.0),
        encode_ms: Some(3.2),
        publish_ms: Some(1.1),
        origin_delivery_ms: s.p50.map(|p| p - 4.3),
        clock_synced: true,
        clock_offset_ms: Some(0.25),
        clock_uncertainty_ms: Some(0.5),
        hls_mode: "ll-hls".into(),
        hls_container: "fmp4".into(),
        hls_errors: 0,
        playlist_requests: 20,
        media_requests: 20,
        bitrate_kbps: Some(2012.5),
        cpu_percent: Some(31.5),
        rss_bytes: Some(41 << 20),
        temperature_c: Some(51.0),
        report_backlog: Some(0),
        frames_dropped_capture: Some(0),
        frames_dropped_encode: Some(0),
        records_dropped: Some(0),
        hist: Some(s.bytes.clone()),
    }
}

fn rollup_row(device: &str, start_us: i64, seconds: i64, s: &Sample) -> RollupRow {
    RollupRow {
        device: device.into(),
        stream: STREAM.into(),
        start_us,
        seconds,
        frames: s.frames(),
        dropped: seconds / 97,
        p50_ms: s.p50,
        p95_ms: s.p95,
        p99_ms: s.p99,
        max_ms: s.max,
        receiver_fps: Some(30.0),
        publisher_fps: Some(30.0),
        encode_ms: Some(3.2),
        publish_ms: Some(1.1),
        origin_delivery_ms: s.p50.map(|p| p - 4.3),
        hist: Some(s.bytes.clone()),
    }
}

fn frame_row(device: &str, seq: i64, capture_us: i64, g2h: f64) -> FrameRow {
    FrameRow {
        device: device.into(),
        stream: STREAM.into(),
        session: 0x1122_3344_5566_7788,
        seq,
        capture_us,
        available_us: capture_us + (g2h * 1000.0) as i64,
        glass_to_hls_ms: g2h,
        encode_ms: 3.2,
        publish_ms: 1.1,
        origin_delivery_ms: g2h - 4.3,
        uncertainty_ms: 0.5,
        by_fingerprint: false,
    }
}

/// The second rows of write `w` of the throughput test: 30 ticks of `streams`.
fn seconds_batches(a: &Args, pools: &Pools, w: usize) -> Vec<Batch> {
    let start = T_END - (a.writes * TICKS_PER_WRITE) as i64 * S;
    (0..TICKS_PER_WRITE)
        .map(|k| {
            let tick = (w * TICKS_PER_WRITE + k) as i64;
            Batch {
                seconds: (0..a.streams)
                    .map(|i| {
                        let s = &pools.seconds[(i * 31 + tick as usize) % pools.seconds.len()];
                        second_row(&device(i), start + tick * S, s)
                    })
                    .collect(),
                ..Batch::default()
            }
        })
        .collect()
}

/// The frame rows of write `w`: 30 ticks of `frame_streams` at 30 fps.
fn frames_batches(a: &Args, w: usize, rng: &mut Rng) -> Vec<Batch> {
    let start = T_END - (a.writes * TICKS_PER_WRITE) as i64 * S;
    (0..TICKS_PER_WRITE)
        .map(|k| {
            let tick = (w * TICKS_PER_WRITE + k) as i64;
            let mut frames = Vec::with_capacity(a.frame_streams * FPS);
            for i in 0..a.frame_streams {
                let d = device(i);
                for j in 0..FPS as i64 {
                    let seq = tick * FPS as i64 + j;
                    frames.push(frame_row(&d, seq, start + seq * S / 30, rng.latency_ms()));
                }
            }
            Batch {
                frames,
                ..Batch::default()
            }
        })
        .collect()
}

// ---- CPU time -------------------------------------------------------------

/// Clock ticks per second of `/proc` times.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A process's `/proc/PID/stat`: command, then fields from `state` on.
fn proc_stat(path: &Path) -> Option<(String, Vec<u64>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_owned();
    let fields = text[close + 1..]
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    Some((comm, fields))
}

/// utime + stime of this process, every thread, in ticks.
fn self_ticks() -> u64 {
    let (_, f) = proc_stat(Path::new("/proc/self/stat")).expect("reading /proc/self/stat");
    f[11] + f[12]
}

/// CPU ticks of the PostgreSQL servers this process started: each
/// postmaster's own and reaped children's, plus its live children's.
fn server_ticks() -> u64 {
    let me = u64::from(std::process::id());
    let procs: Vec<(u64, String, Vec<u64>)> = std::fs::read_dir("/proc")
        .expect("listing /proc")
        .flatten()
        .filter_map(|e| {
            let pid: u64 = e.file_name().to_str()?.parse().ok()?;
            let (comm, f) = proc_stat(&e.path().join("stat"))?;
            Some((pid, comm, f))
        })
        .collect();
    let masters: Vec<u64> = procs
        .iter()
        .filter(|(_, comm, f)| f[1] == me && comm == "postgres")
        .map(|(pid, _, _)| *pid)
        .collect();
    procs
        .iter()
        .map(|(pid, _, f)| {
            if masters.contains(pid) {
                f[11] + f[12] + f[13] + f[14]
            } else if masters.contains(&f[1]) {
                f[11] + f[12]
            } else {
                0
            }
        })
        .sum()
}

/// Rows written, wall time and CPU of a series of timed calls.
#[derive(Debug, Clone, Default)]
struct Acc {
    rows: usize,
    wall_s: f64,
    cpu_ticks: u64,
    server_ticks: u64,
}

/// A clock started on wall time, this process's CPU and the servers'.
struct Clock {
    wall: Instant,
    cpu: u64,
    server: u64,
}

impl Clock {
    fn start(with_server: bool) -> Clock {
        Clock {
            server: if with_server { server_ticks() } else { 0 },
            cpu: self_ticks(),
            wall: Instant::now(),
        }
    }

    fn stop_into(self, acc: &mut Acc, rows: usize, with_server: bool) {
        acc.wall_s += self.wall.elapsed().as_secs_f64();
        acc.cpu_ticks += self_ticks() - self.cpu;
        if with_server {
            acc.server_ticks += server_ticks() - self.server;
        }
        acc.rows += rows;
    }
}

// ---- PostgreSQL plumbing --------------------------------------------------

/// `psql` against the server on 127.0.0.1:`port`.
struct Psql {
    bin: PathBuf,
    port: u16,
}

impl Psql {
    fn new(port: u16) -> Psql {
        let bin = find_bindir()
            .map(|d| d.join("psql"))
            .ok()
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("psql"));
        Psql { bin, port }
    }

    fn cmd(&self, db: &str) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db])
            .env("PGCONNECT_TIMEOUT", "5")
            .env_remove("PGOPTIONS");
        cmd
    }

    fn try_query(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = self
            .cmd(db)
            .args(["-q", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", self.bin.display()))?;
        if !out.status.success() {
            return Err(format!(
                "psql {sql:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn query(&self, db: &str, sql: &str) -> String {
        self.try_query(db, sql).unwrap_or_else(|e| panic!("{e}"))
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs `COPY table (columns) FROM STDIN (FORMAT csv)` with `file` on
    /// stdin; returns the wall seconds, and checks the rows copied.
    fn copy(&self, db: &str, table: &str, columns: &str, file: &Path, rows: usize) -> f64 {
        let t0 = Instant::now();
        let out = self
            .cmd(db)
            .args([
                "-c",
                &format!("COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)"),
            ])
            .stdin(File::open(file).expect("opening the CSV file"))
            .output()
            .expect("running psql COPY");
        let wall = t0.elapsed().as_secs_f64();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.trim() == format!("COPY {rows}"),
            "psql COPY into {table}: {} {}",
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        wall
    }

    /// psql's start-up, connection and exit: the fastest of three `SELECT 1`.
    fn startup_s(&self, db: &str) -> f64 {
        (0..3)
            .map(|_| {
                let t0 = Instant::now();
                self.query(db, "SELECT 1");
                t0.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    }
}

fn pg_settings(url: &str) -> Settings<'_> {
    Settings {
        url,
        password_file: None,
        ca_file: None,
        pool: 4,
    }
}

async fn open_pg(psql: &Psql, db: &str) -> Store {
    psql.query("postgres", &format!("CREATE DATABASE {db}"));
    let url = psql.url(db);
    Store::Postgres(
        Postgres::open(&pg_settings(&url))
            .await
            .expect("opening the PostgreSQL store"),
    )
}

/// A postmaster this bench started itself on the testkit's data directory,
/// with durability on; stopped (SIGINT, then SIGKILL after 15 s) on drop.
struct DurablePostgres {
    child: Child,
}

impl DurablePostgres {
    /// Stops the testkit's server and starts the same cluster, same port,
    /// with `fsync`, `synchronous_commit` and `full_page_writes` on.
    fn start(pg: &mut PgPeer, psql: &Psql, log: &Path) -> DurablePostgres {
        pg.stop().expect("stopping the testkit's PostgreSQL");
        let data = pg.dir().join("data");
        let meta = std::fs::metadata(&data).expect("the cluster's data directory");
        let bindir = find_bindir().expect("PostgreSQL's binaries");
        let log = File::create(log).expect("creating the server log");
        let mut cmd = Command::new(bindir.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(pg.port().to_string())
            .arg("-k")
            .arg(pg.dir().join("socket"))
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=on",
                "-c",
                "synchronous_commit=on",
                "-c",
                "full_page_writes=on",
            ])
            .current_dir(pg.dir())
            .env("HOME", pg.dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("duplicating the log"))
            .stderr(log)
            // As the cluster's owner (the testkit's user when run as root).
            .uid(meta.uid())
            .gid(meta.gid());
        let server = DurablePostgres {
            child: cmd.spawn().expect("starting postgres with fsync on"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while psql.try_query("postgres", "SELECT 1").is_err() {
            assert!(
                Instant::now() < deadline,
                "postgres with fsync on does not answer"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }
}

impl Drop for DurablePostgres {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- CSV for COPY ---------------------------------------------------------

/// One CSV line, fields in order.
#[derive(Default)]
struct Csv(String);

impl Csv {
    fn sep(&mut self) {
        if !self.0.is_empty() {
            self.0.push(',');
        }
    }
    fn v(&mut self, v: impl std::fmt::Display) -> &mut Self {
        self.sep();
        let _ = write!(self.0, "{v}");
        self
    }
    fn opt(&mut self, v: Option<impl std::fmt::Display>) -> &mut Self {
        self.sep();
        if let Some(v) = v {
            let _ = write!(self.0, "{v}");
        }
        self
    }
    fn b(&mut self, v: bool) -> &mut Self {
        self.v(if v { "t" } else { "f" })
    }
    fn bytes(&mut self, v: Option<&[u8]>) -> &mut Self {
        self.sep();
        if let Some(v) = v {
            self.0.push_str("\\x");
            for byte in v {
                let _ = write!(self.0, "{byte:02x}");
            }
        }
        self
    }
    fn line(&mut self, out: &mut impl std::io::Write) {
        self.0.push('\n');
        out.write_all(self.0.as_bytes()).expect("writing CSV");
        self.0.clear();
    }
}

/// A second row in the order of `sql::SECOND_COLUMNS`.
fn csv_second(c: &mut Csv, s: &SecondRow, out: &mut impl std::io::Write) {
    c.v(&s.device)
        .v(&s.stream)
        .v(s.start_us)
        .v(s.end_us)
        .v(s.frames)
        .v(s.matched_by_fingerprint)
        .v(s.unmatched)
        .v(s.dropped)
        .opt(s.p50_ms)
        .opt(s.p95_ms)
        .opt(s.p99_ms)
        .opt(s.max_ms)
        .opt(s.receiver_fps)
        .opt(s.publisher_fps)
        .opt(s.encode_ms)
        .opt(s.publish_ms)
        .opt(s.origin_delivery_ms)
        .b(s.clock_synced)
        .opt(s.clock_offset_ms)
        .opt(s.clock_uncertainty_ms)
        .v(&s.hls_mode)
        .v(&s.hls_container)
        .v(s.hls_errors)
        .v(s.playlist_requests)
        .v(s.media_requests)
        .opt(s.bitrate_kbps)
        .opt(s.cpu_percent)
        .opt(s.rss_bytes)
        .opt(s.temperature_c)
        .opt(s.report_backlog)
        .opt(s.frames_dropped_capture)
        .opt(s.frames_dropped_encode)
        .opt(s.records_dropped)
        .bytes(s.hist.as_deref())
        .line(out);
}

/// A frame row in the order of `sql::FRAME_COLUMNS`.
fn csv_frame(c: &mut Csv, f: &FrameRow, out: &mut impl std::io::Write) {
    c.v(&f.device)
        .v(&f.stream)
        .v(f.session)
        .v(f.seq)
        .v(f.capture_us)
        .v(f.available_us)
        .v(f.glass_to_hls_ms)
        .v(f.encode_ms)
        .v(f.publish_ms)
        .v(f.origin_delivery_ms)
        .v(f.uncertainty_ms)
        .b(f.by_fingerprint)
        .line(out);
}

// ---- SQLite peer ----------------------------------------------------------

/// A connection with the settings of the collector's own (`open_rw`).
fn peer_connection(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).expect("opening the peer's SQLite file");
    c.pragma_update(None, "journal_mode", "WAL")
        .expect("journal_mode");
    c.pragma_update(None, "synchronous", "NORMAL")
        .expect("synchronous");
    c.pragma_update(None, "foreign_keys", "ON")
        .expect("foreign_keys");
    c
}

fn plain_insert(table: &str, columns: &str, n: usize) -> String {
    let marks: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO {table} ({columns}) VALUES ({})",
        marks.join(", ")
    )
}

/// The floor of SQLite: one prepared single-row `INSERT` per row, one
/// transaction for the call.
fn peer_insert(conn: &mut rusqlite::Connection, batches: &[Batch]) {
    use rusqlite::params;
    let tx = conn.transaction().expect("peer: begin");
    {
        let mut second = tx
            .prepare_cached(&plain_insert(
                "seconds",
                sql::SECOND_COLUMNS,
                sql::SECOND_COUNT,
            ))
            .expect("peer: prepare seconds");
        let mut frame = tx
            .prepare_cached(&plain_insert(
                "frames",
                sql::FRAME_COLUMNS,
                sql::FRAME_COUNT,
            ))
            .expect("peer: prepare frames");
        for b in batches {
            for s in &b.seconds {
                second
                    .execute(params![
                        s.device,
                        s.stream,
                        s.start_us,
                        s.end_us,
                        s.frames,
                        s.matched_by_fingerprint,
                        s.unmatched,
                        s.dropped,
                        s.p50_ms,
                        s.p95_ms,
                        s.p99_ms,
                        s.max_ms,
                        s.receiver_fps,
                        s.publisher_fps,
                        s.encode_ms,
                        s.publish_ms,
                        s.origin_delivery_ms,
                        s.clock_synced,
                        s.clock_offset_ms,
                        s.clock_uncertainty_ms,
                        s.hls_mode,
                        s.hls_container,
                        s.hls_errors,
                        s.playlist_requests,
                        s.media_requests,
                        s.bitrate_kbps,
                        s.cpu_percent,
                        s.rss_bytes,
                        s.temperature_c,
                        s.report_backlog,
                        s.frames_dropped_capture,
                        s.frames_dropped_encode,
                        s.records_dropped,
                        s.hist
                    ])
                    .expect("peer: insert a second");
            }
            for f in &b.frames {
                frame
                    .execute(params![
                        f.device,
                        f.stream,
                        f.session,
                        f.seq,
                        f.capture_us,
                        f.available_us,
                        f.glass_to_hls_ms,
                        f.encode_ms,
                        f.publish_ms,
                        f.origin_delivery_ms,
                        f.uncertainty_ms,
                        f.by_fingerprint
                    ])
                    .expect("peer: insert a frame");
            }
        }
    }
    tx.commit().expect("peer: commit");
}

/// Bytes per table (table and its indexes together) of an SQLite file,
/// after a checkpoint; `None` in the map when `dbstat` is missing.
fn sqlite_sizes(path: &Path) -> (u64, BTreeMap<String, u64>) {
    let c = rusqlite::Connection::open(path).expect("opening the SQLite file for its size");
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpointing the WAL");
    let mut tables = BTreeMap::new();
    if let Ok(mut st) =
        c.prepare("SELECT tbl_name, name FROM sqlite_schema WHERE type IN ('table', 'index')")
    {
        let names: Vec<(String, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("listing tables")
            .flatten()
            .collect();
        for (table, name) in names {
            let bytes: Option<i64> = c
                .query_row(
                    "SELECT sum(pgsize) FROM dbstat WHERE name = ?1",
                    [&name],
                    |r| r.get(0),
                )
                .ok()
                .flatten();
            if let Some(b) = bytes {
                *tables.entry(table).or_insert(0) += b as u64;
            }
        }
    }
    drop(c);
    let len = |p: PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    (len(path.to_owned()) + len(wal), tables)
}

/// `pg_total_relation_size` of `tables`, and the database's size.
fn pg_sizes(psql: &Psql, db: &str, tables: &[&str]) -> (u64, BTreeMap<String, u64>) {
    let cols: Vec<String> = tables
        .iter()
        .map(|t| format!("pg_total_relation_size('{t}')"))
        .collect();
    let out = psql.query(
        db,
        &format!(
            "SELECT pg_database_size(current_database()), {}",
            cols.join(", ")
        ),
    );
    let v: Vec<u64> = out.split('|').map(|x| x.parse().expect("a size")).collect();
    let map = tables
        .iter()
        .zip(&v[1..])
        .map(|(t, b)| ((*t).to_owned(), *b))
        .collect();
    (v[0], map)
}

/// The gist of `EXPLAIN (ANALYZE, BUFFERS)` of `query`: its plan nodes, the
/// heap blocks read and the server's execution time.
fn pg_explain(psql: &Psql, db: &str, query: &str) -> String {
    let plan = psql.query(db, &format!("EXPLAIN (ANALYZE, BUFFERS) {query}"));
    let mut nodes = Vec::new();
    let mut notes = Vec::new();
    for line in plan.lines().map(str::trim) {
        let line = line.trim_start_matches("->").trim();
        if line.contains("(cost=") {
            let node = line.split("  (cost=").next().unwrap_or_default();
            if !nodes.contains(&node) {
                nodes.push(node);
            }
        } else if line.starts_with("Heap Blocks") || line.starts_with("Execution Time") {
            notes.push(line);
        }
    }
    format!("{}; {}", nodes.join(" > "), notes.join(", "))
}

// ---- 1. writes ------------------------------------------------------------

/// One line of the write table.
struct WriteLine {
    name: String,
    acc: Acc,
    server: bool,
}

fn print_writes(lines: &[WriteLine], ticks: f64) {
    println!(
        "{:<62}{:>10}{:>10}{:>8}{:>8}{:>8}{:>8}",
        "", "rows/s", "rows", "wall s", "CPU s", "srv s", "ratio"
    );
    for pair in lines.chunks(2) {
        let ours_rate = pair[0].acc.rows as f64 / pair[0].acc.wall_s;
        for (k, l) in pair.iter().enumerate() {
            let rate = l.acc.rows as f64 / l.acc.wall_s;
            let ratio = if k == 0 && pair.len() == 2 {
                format!(
                    "{:.2}x",
                    ours_rate / (pair[1].acc.rows as f64 / pair[1].acc.wall_s)
                )
            } else {
                String::new()
            };
            let srv = if l.server {
                format!("{:.2}", l.acc.server_ticks as f64 / ticks)
            } else {
                "-".into()
            };
            println!(
                "{:<62}{:>10.0}{:>10}{:>8.2}{:>8.2}{:>8}{:>8}",
                l.name,
                rate,
                l.acc.rows,
                l.acc.wall_s,
                l.acc.cpu_ticks as f64 / ticks,
                srv,
                ratio
            );
        }
    }
}

async fn sqlite_writes(a: &Args, pools: &Pools, dir: &Path) -> (Vec<WriteLine>, PathBuf) {
    let ours_path = dir.join("writes.db");
    let peer_path = dir.join("writes-peer.db");
    let store = Store::Sqlite(Sqlite::open(&ours_path).await.expect("opening SQLite"));
    // The peer's file gets the same schema, then a bare connection.
    let schema = Sqlite::open(&peer_path)
        .await
        .expect("opening the peer file");
    schema.close().await;
    drop(schema);
    let mut peer = peer_connection(&peer_path);
    let (mut ours_s, mut peer_s, mut ours_f, mut peer_f) = Default::default();
    let mut rng = Rng(11);
    for w in 0..a.writes {
        let b = Arc::new(seconds_batches(a, pools, w));
        let rows = TICKS_PER_WRITE * a.streams;
        let c = Clock::start(false);
        store
            .write(b.clone())
            .await
            .expect("SQLite: writing seconds");
        c.stop_into(&mut ours_s, rows, false);
        let c = Clock::start(false);
        peer_insert(&mut peer, &b);
        c.stop_into(&mut peer_s, rows, false);
    }
    for w in 0..a.writes {
        let b = Arc::new(frames_batches(a, w, &mut rng));
        let rows = TICKS_PER_WRITE * a.frame_streams * FPS;
        let c = Clock::start(false);
        store
            .write(b.clone())
            .await
            .expect("SQLite: writing frames");
        c.stop_into(&mut ours_f, rows, false);
        let c = Clock::start(false);
        peer_insert(&mut peer, &b);
        c.stop_into(&mut peer_f, rows, false);
    }
    store.close().await;
    let line = |name: String, acc: Acc| WriteLine {
        name,
        acc,
        server: false,
    };
    let s = format!("{} streams x 30 s per call", a.streams);
    let f = format!("{} streams x 30 fps x 30 s per call", a.frame_streams);
    (
        vec![
            line(format!("SQLite seconds: Store::write ({s})"), ours_s),
            line(
                "SQLite seconds: peer, bare rusqlite INSERT loop".into(),
                peer_s,
            ),
            line(format!("SQLite frames: Store::write ({f})"), ours_f),
            line(
                "SQLite frames: peer, bare rusqlite INSERT loop".into(),
                peer_f,
            ),
        ],
        ours_path,
    )
}

async fn postgres_writes(
    a: &Args,
    pools: &Pools,
    psql: &Psql,
    db: &str,
    dir: &Path,
    label: &str,
) -> Vec<WriteLine> {
    let store = open_pg(psql, db).await;
    let seconds_csv = dir.join(format!("{db}-seconds.csv"));
    let frames_csv = dir.join(format!("{db}-frames.csv"));
    let mut csv = Csv::default();
    let (mut ours_s, mut ours_f) = (Acc::default(), Acc::default());
    let mut out = std::io::BufWriter::new(File::create(&seconds_csv).expect("CSV file"));
    for w in 0..a.writes {
        let b = Arc::new(seconds_batches(a, pools, w));
        for s in b.iter().flat_map(|b| &b.seconds) {
            csv_second(&mut csv, s, &mut out);
        }
        let c = Clock::start(true);
        store.write(b).await.expect("PostgreSQL: writing seconds");
        c.stop_into(&mut ours_s, TICKS_PER_WRITE * a.streams, true);
    }
    out.flush().expect("writing CSV");
    drop(out);
    let mut out = std::io::BufWriter::new(File::create(&frames_csv).expect("CSV file"));
    let mut rng = Rng(11);
    for w in 0..a.writes {
        let b = Arc::new(frames_batches(a, w, &mut rng));
        for f in b.iter().flat_map(|b| &b.frames) {
            csv_frame(&mut csv, f, &mut out);
        }
        let c = Clock::start(true);
        store.write(b).await.expect("PostgreSQL: writing frames");
        c.stop_into(&mut ours_f, TICKS_PER_WRITE * a.frame_streams * FPS, true);
    }
    out.flush().expect("writing CSV");
    drop(out);
    store.close().await;

    psql.query(
        db,
        "CREATE TABLE peer_seconds (LIKE seconds INCLUDING ALL); \
         CREATE TABLE peer_frames (LIKE frames INCLUDING ALL)",
    );
    let startup = psql.startup_s(db);
    let copy = |table: &str, columns: &str, file: &Path, rows: usize| {
        let server0 = server_ticks();
        let wall = psql.copy(db, table, columns, file, rows);
        Acc {
            rows,
            wall_s: (wall - startup).max(1e-3),
            cpu_ticks: 0,
            server_ticks: server_ticks() - server0,
        }
    };
    let peer_s = copy(
        "peer_seconds",
        sql::SECOND_COLUMNS,
        &seconds_csv,
        ours_s.rows,
    );
    let peer_f = copy("peer_frames", sql::FRAME_COLUMNS, &frames_csv, ours_f.rows);
    let _ = std::fs::remove_file(&seconds_csv);
    let _ = std::fs::remove_file(&frames_csv);
    let line = |name: String, acc: Acc| WriteLine {
        name,
        acc,
        server: true,
    };
    vec![
        line(
            format!("PostgreSQL{label} seconds: Store::write (unnest, 30 s/call)"),
            ours_s,
        ),
        line(
            format!("PostgreSQL{label} seconds: peer, psql COPY FROM STDIN csv"),
            peer_s,
        ),
        line(
            format!("PostgreSQL{label} frames: Store::write (unnest, 30 s/call)"),
            ours_f,
        ),
        line(
            format!("PostgreSQL{label} frames: peer, psql COPY FROM STDIN csv"),
            peer_f,
        ),
    ]
}

// ---- 2. queries -----------------------------------------------------------

/// How much history was generated and how fast it went in.
#[derive(Debug, Default)]
struct Generated {
    seconds: Acc,
    minutes: Acc,
    hours: Acc,
    events: usize,
}

async fn generate(store: &Store, a: &Args, pools: &Pools) -> Generated {
    let mut g = Generated::default();
    let names: Vec<String> = (0..a.streams).map(device).collect();
    // Devices, streams and an event every 6 h over the hours' span.
    let span = a.hour_days.max(a.minute_days) * DAY_US;
    let mut dir = Batch::default();
    for (i, d) in names.iter().enumerate() {
        let at = T_END - 60 * S;
        dir.devices.push(DeviceRow {
            device: d.clone(),
            online: i % 20 != 0,
            since_us: at,
            updated_us: at,
            host: Some(format!("pi-{i}")),
            arch: Some("aarch64".into()),
            agent_version: Some("0.1.0".into()),
            gstreamer_version: Some("1.22.0".into()),
            clock_synchronized: Some(true),
            clock_est_error_us: Some(1500),
            status: "{}".into(),
        });
        dir.streams.push(StreamRow {
            device: d.clone(),
            stream: STREAM.into(),
            encoder: "x264enc".into(),
            hardware: false,
            width: 1280,
            height: 720,
            fps: 30,
            rtsp_url: format!("rtsp://127.0.0.1:8554/{d}/{STREAM}"),
            hls_url: format!("http://127.0.0.1:8888/{d}/{STREAM}/index.m3u8"),
            updated_us: at,
        });
        let mut t = T_END - span + i as i64 * 1_000;
        let mut k = 0;
        while t < T_END {
            dir.events.push(EventRow {
                device: d.clone(),
                at_us: t,
                kind: if k % 2 == 0 { "offline" } else { "online" },
                detail: if k % 2 == 0 {
                    "connection lost (last will)".into()
                } else {
                    String::new()
                },
            });
            t += 6 * HOUR_US;
            k += 1;
        }
    }
    g.events = dir.events.len();
    store
        .write(Arc::new(vec![dir]))
        .await
        .expect("writing devices, streams and events");

    // Roll-ups, the watermark moved from window to window.
    for (kind, width, days, per_call) in [
        (Table::Hours, HOUR_US, a.hour_days, 24),
        (Table::Minutes, MINUTE_US, a.minute_days, 60),
    ] {
        let pool = if kind == Table::Hours {
            &pools.hours
        } else {
            &pools.minutes
        };
        let mut mark: Option<i64> = None;
        let mut acc = Acc::default();
        let mut t = T_END - days * DAY_US;
        while t < T_END {
            let end = (t + per_call * width).min(T_END);
            let mut rows = Vec::with_capacity(names.len() * ((end - t) / width) as usize);
            let mut w = t;
            while w < end {
                for (i, d) in names.iter().enumerate() {
                    let s = &pool[(i * 7 + (w / width) as usize) % pool.len()];
                    rows.push(rollup_row(d, w, width / S, s));
                }
                w += width;
            }
            let n = rows.len();
            let c = Clock::start(false);
            store
                .write_rollups(kind, rows, mark.unwrap_or(t), end)
                .await
                .expect("writing roll-ups");
            c.stop_into(&mut acc, n, false);
            mark = Some(end);
            t = end;
        }
        assert_eq!(
            store.watermark(kind).await.expect("reading a watermark"),
            Some(T_END),
            "the roll-up watermark followed the writes"
        );
        if kind == Table::Hours {
            g.hours = acc;
        } else {
            g.minutes = acc;
        }
    }

    // Seconds, 30 ticks per write as the writer does.
    let ticks = a.seconds_min * 60;
    let start = T_END - ticks * S;
    let mut tick = 0;
    while tick < ticks {
        let n = (ticks - tick).min(TICKS_PER_WRITE as i64);
        let batches: Vec<Batch> = (tick..tick + n)
            .map(|k| Batch {
                seconds: names
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        let s = &pools.seconds[(i * 13 + k as usize) % pools.seconds.len()];
                        second_row(d, start + k * S, s)
                    })
                    .collect(),
                ..Batch::default()
            })
            .collect();
        let c = Clock::start(false);
        store
            .write(Arc::new(batches))
            .await
            .expect("writing seconds");
        c.stop_into(&mut g.seconds, n as usize * names.len(), false);
        tick += n;
    }
    g
}

/// Wall milliseconds of `n` calls of `f(k)`, after [`WARM_UP`] untimed ones.
async fn time_calls<F, Fut>(n: usize, mut f: F) -> Vec<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    for k in 0..WARM_UP {
        f(k).await;
    }
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let t0 = Instant::now();
        f(WARM_UP + k).await;
        out.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    out.sort_by(f64::total_cmp);
    out
}

/// The value at quantile `q` of sorted `v` (nearest rank).
fn pct(v: &[f64], q: f64) -> f64 {
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Each dashboard query's name and sorted times, ms.
type Timings = Vec<(String, Vec<f64>)>;

async fn queries(store: &Store, a: &Args) -> Timings {
    let names: Vec<String> = (0..a.streams).map(device).collect();
    let mut rng = Rng(3);
    let picks: Vec<usize> = (0..a.queries + WARM_UP)
        .map(|_| rng.below(names.len()))
        .collect();
    let (names, picks) = (&names, &picks);
    let mut out = Vec::new();

    let t = time_calls(a.queries, |k| async move {
        let p = store
            .latest(&names[picks[k]], STREAM)
            .await
            .expect("latest")
            .expect("a latest second");
        assert_eq!(p.t_us, T_END - S, "latest is the last second");
    })
    .await;
    out.push(("latest (one stream's last second)".to_owned(), t));

    let t = time_calls(a.queries, |_| async move {
        let fleet = store.fleet().await.expect("fleet");
        assert_eq!(fleet.len(), names.len(), "one fleet entry per stream");
        assert!(fleet.iter().all(|e| e.last.is_some()));
    })
    .await;
    out.push((
        format!("fleet ({} streams, latest of each)", names.len()),
        t,
    ));

    let points = 24 * 60;
    let t = time_calls(a.queries, |k| async move {
        let s = store
            .series(
                Resolution::Minutes,
                &names[picks[k]],
                STREAM,
                T_END - DAY_US,
                T_END,
            )
            .await
            .expect("minutes series");
        assert_eq!(s.len(), points.min(a.minute_days as usize * points));
    })
    .await;
    out.push(("series, minutes, 24 h (1440 points)".to_owned(), t));

    let minutes = a.seconds_min.min(15);
    let t = time_calls(a.queries, |k| async move {
        let s = store
            .series(
                Resolution::Seconds,
                &names[picks[k]],
                STREAM,
                T_END - 15 * 60 * S,
                T_END,
            )
            .await
            .expect("seconds series");
        assert_eq!(s.len(), (minutes * 60) as usize);
    })
    .await;
    out.push((
        format!("series, seconds, 15 min ({} points)", minutes * 60),
        t,
    ));

    let hours = 24 * a.hour_days;
    let t = time_calls(a.queries, |k| async move {
        let s = store
            .series(
                Resolution::Hours,
                &names[picks[k]],
                STREAM,
                T_END - a.hour_days * DAY_US,
                T_END,
            )
            .await
            .expect("hours series");
        assert_eq!(s.len(), hours as usize);
    })
    .await;
    out.push((
        format!("series, hours, {} d ({hours} points)", a.hour_days),
        t,
    ));

    let t = time_calls(a.queries, |k| async move {
        let e = store
            .events(&names[picks[k]], T_END - 7 * DAY_US, T_END, 100)
            .await
            .expect("events");
        assert!(!e.is_empty(), "a device has events");
    })
    .await;
    out.push(("events, 7 d, newest 100".to_owned(), t));
    out
}

/// Bytes per row of the three history tables, and per stream-day.
struct SizeReport {
    label: String,
    total: u64,
    per_row: Vec<(&'static str, f64)>,
    stream_day: f64,
}

fn size_report(
    label: &str,
    total: u64,
    tables: &BTreeMap<String, u64>,
    g: &Generated,
) -> SizeReport {
    let per = |t: &str, rows: usize| tables.get(t).map_or(f64::NAN, |b| *b as f64 / rows as f64);
    let s = per("seconds", g.seconds.rows);
    let m = per("minutes", g.minutes.rows);
    let h = per("hours", g.hours.rows);
    SizeReport {
        label: label.to_owned(),
        total,
        per_row: vec![("second", s), ("minute", m), ("hour", h)],
        stream_day: 86_400.0 * s + 1_440.0 * m + 24.0 * h,
    }
}

// ---- 3. CPU ---------------------------------------------------------------

/// The closed windows of `ticks` seconds of `streams` streams, from `start`.
fn closed_ticks(streams: usize, ticks: usize, start: i64) -> Vec<Vec<Closed>> {
    let mut rng = Rng(5);
    (0..ticks)
        .map(|k| {
            let t = start + k as i64 * S;
            (0..streams)
                .map(|i| {
                    let d = device(i);
                    let frames: Vec<FrameLatency> = (0..FPS as i64)
                        .map(|j| {
                            let capture_us = t - 500_000 + j * S / 30;
                            let g2h = rng.latency_ms();
                            FrameLatency {
                                session: 0x1122_3344_5566_7788,
                                seq: (k * FPS) as u64 + j as u64,
                                capture_us,
                                available_us: capture_us + (g2h * 1000.0) as i64,
                                encode_ms: 3.2,
                                publish_ms: 1.1,
                                origin_delivery_ms: g2h - 4.3,
                                glass_to_hls_ms: g2h,
                                uncertainty_ms: 0.5,
                                matched_by: MatchedBy::Stamp,
                                corrected: true,
                            }
                        })
                        .collect();
                    let mut sorted: Vec<f64> = frames.iter().map(|f| f.glass_to_hls_ms).collect();
                    sorted.sort_by(f64::total_cmp);
                    let q = |p: f64| Some(pct(&sorted, p));
                    Closed {
                        latency: Latency {
                            schema: SCHEMA_LATENCY.into(),
                            device: d.clone(),
                            stream: STREAM.into(),
                            window_start_us: t,
                            window_end_us: t + S,
                            frames: FPS as u64,
                            matched_by_fingerprint: 0,
                            unmatched: 0,
                            p50_ms: q(0.50),
                            p95_ms: q(0.95),
                            p99_ms: q(0.99),
                            max_ms: sorted.last().copied(),
                            receiver_fps: 30.0,
                            publisher_fps: Some(30.0),
                            dropped: 0,
                            breakdown: Breakdown {
                                encode_ms: Some(3.2),
                                publish_ms: Some(1.1),
                                origin_delivery_ms: q(0.5).map(|p| p - 4.3),
                            },
                            clock: ClockEstimate {
                                synced: true,
                                offset_ms: Some(0.25),
                                uncertainty_ms: 0.5,
                            },
                            hls: HlsReading {
                                mode: "ll-hls".into(),
                                container: "fmp4".into(),
                                url: format!("http://127.0.0.1:8888/{d}/{STREAM}/index.m3u8"),
                                errors: 0,
                                playlist_requests: 20,
                                media_requests: 20,
                            },
                        },
                        stats: Some(Stats {
                            schema: SCHEMA_STATS.into(),
                            device: d.clone(),
                            stream: STREAM.into(),
                            ts_us: t,
                            interval_ms: 1000.0,
                            publisher_fps: 30.0,
                            bitrate_kbps: 2012.5,
                            frames_dropped_capture: 0,
                            frames_dropped_encode: 0,
                            encoder: "x264enc".into(),
                            hardware: false,
                            cpu_percent: 31.5,
                            rss_bytes: 41 << 20,
                            temperature_c: Some(51.0),
                            report_backlog: 0,
                            records_dropped: 0,
                        }),
                        frames,
                    }
                })
                .collect()
        })
        .collect()
}

/// One CPU measure.
struct CpuLine {
    name: String,
    seconds_of_data: usize,
    wall_s: f64,
    cpu_s: f64,
    server_s: Option<f64>,
    rows: (u64, u64, u64),
    /// Frame retention afterwards: frames deleted, and the CPU it took.
    retention: Option<Acc>,
}

/// Pushes the ticks through `Storage::push_closed`, each once the previous
/// one is written, then runs the roll-ups; measures CPU over it all.
async fn cpu_run(
    name: &str,
    store: Option<Store>,
    frames_on: bool,
    ticks: &[Vec<Closed>],
    with_server: bool,
    clk: f64,
) -> CpuLine {
    let ages = Ages {
        frames: frames_on.then_some(3_600 * S),
        ..Ages::default()
    };
    let enabled = store.is_some();
    let storage = Storage::with_store(store, 300, ages, Duration::from_secs(10));
    let tasks = storage.spawn();
    let per_tick = ticks[0].len() as u64;
    let mut expected = 0u64;
    let mut push = |tick: &[Closed]| {
        storage.push_closed(tick, Batch::default());
        expected += per_tick;
        expected
    };
    let wait = |n: u64| {
        let storage = storage.clone();
        async move {
            while enabled && storage.status().written_seconds < n {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    for tick in &ticks[..CPU_WARM_UP] {
        let n = push(tick);
        wait(n).await;
    }
    let c = Clock::start(with_server);
    for tick in &ticks[CPU_WARM_UP..] {
        let n = push(tick);
        wait(n).await;
    }
    let mut rolled = 0;
    let last = ticks
        .last()
        .and_then(|t| t.first())
        .map_or(0, |w| w.latency.window_end_us);
    if let Some(store) = storage.store() {
        let hour_end = last.div_euclid(HOUR_US) * HOUR_US + HOUR_US;
        rolled = rollup::roll_up(store, hour_end + GRACE_US)
            .await
            .expect("rolling up");
    }
    let mut acc = Acc::default();
    c.stop_into(&mut acc, 0, with_server);
    let st = storage.status();
    assert_eq!(
        (st.dropped_seconds, st.write_failures),
        (0, 0),
        "{name}: nothing dropped, no failed write"
    );
    if enabled {
        assert_eq!(st.written_seconds, expected, "{name}: every second written");
        let frames = if frames_on { expected * FPS as u64 } else { 0 };
        assert_eq!(st.written_frames, frames, "{name}: every frame written");
    }
    // Retention once every frame is past its age (at steady state it deletes
    // as many frames as are written); nothing else is old enough.
    let mut retention = None;
    if let (Some(store), Some(age)) = (storage.store(), ages.frames.filter(|_| frames_on)) {
        let c = Clock::start(with_server);
        let deleted = rollup::retention(store, &ages, last + age + S)
            .await
            .expect("retention");
        let mut r = Acc::default();
        c.stop_into(&mut r, deleted as usize, with_server);
        assert_eq!(
            deleted, st.written_frames,
            "{name}: retention deletes every frame and nothing else"
        );
        retention = Some(r);
    }
    storage.shutdown(tasks).await;
    let n = ticks.len() - CPU_WARM_UP;
    CpuLine {
        name: name.to_owned(),
        seconds_of_data: n,
        wall_s: acc.wall_s,
        cpu_s: acc.cpu_ticks as f64 / clk,
        server_s: with_server.then(|| acc.server_ticks as f64 / clk),
        rows: (
            per_tick * n as u64,
            if frames_on {
                per_tick * n as u64 * FPS as u64
            } else {
                0
            },
            rolled,
        ),
        retention,
    }
}

// ---- main -----------------------------------------------------------------

fn main() {
    let a = Args::parse();
    let clk = clock_ticks();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let dir = tempfile::Builder::new()
        .prefix("glasswatch-bench-storage-")
        .tempdir()
        .expect("a temporary directory");
    let pools = Pools::new();
    let mut pg = a.postgres.then(|| {
        eprintln!("starting PostgreSQL (testkit) ...");
        PgPeer::start().expect("starting PostgreSQL 15 (scripts/install-deps.sh installs it)")
    });
    let psql = pg.as_ref().map(|p| Psql::new(p.port()));
    let started = Instant::now();
    rt.block_on(async {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        println!(
            "storage: SQLite {} (WAL, synchronous=NORMAL, file in {}); {}; {cores} cores, load average {}",
            rusqlite::version(),
            std::env::temp_dir().display(),
            psql.as_ref().map_or("PostgreSQL skipped".to_owned(), |p| format!(
                "PostgreSQL {} on 127.0.0.1 (testkit: fsync={}, synchronous_commit={}, full_page_writes={})",
                p.query("postgres", "SHOW server_version"),
                p.query("postgres", "SHOW fsync"),
                p.query("postgres", "SHOW synchronous_commit"),
                p.query("postgres", "SHOW full_page_writes"),
            )),
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );

        // 1. Writes.
        println!();
        println!(
            "1. write throughput: Store::write, 30 ticks per call (one transaction), rows built \
             beforehand; CPU s = this process, srv s = PostgreSQL server; ratio = ours / peer"
        );
        let mut writes = Vec::new();
        let mut frames_db: Option<PathBuf> = None;
        if a.sqlite {
            eprintln!("1. SQLite writes ...");
            let (lines, path) = sqlite_writes(&a, &pools, dir.path()).await;
            writes.extend(lines);
            frames_db = Some(path);
        }
        if let Some(psql) = &psql {
            eprintln!("1. PostgreSQL writes ...");
            writes.extend(postgres_writes(&a, &pools, psql, "gw_write", dir.path(), "").await);
        }
        print_writes(&writes, clk);
        let rate_of = |prefix: &str| {
            writes
                .iter()
                .find(|l| l.name.starts_with(prefix))
                .map(|l| l.acc.rows as f64 / l.acc.wall_s)
        };
        let mut targets: Vec<(String, Option<f64>, f64, bool)> = vec![
            (
                "SQLite second rows/s".into(),
                rate_of("SQLite seconds: Store"),
                20_000.0,
                true,
            ),
            (
                "PostgreSQL second rows/s".into(),
                rate_of("PostgreSQL seconds: Store"),
                50_000.0,
                true,
            ),
            (
                "PostgreSQL frame rows/s".into(),
                rate_of("PostgreSQL frames: Store"),
                100_000.0,
                true,
            ),
        ];
        // Frame rows' size, from the write test's databases.
        let mut frame_sizes = Vec::new();
        let frame_rows = a.writes * TICKS_PER_WRITE * a.frame_streams * FPS;
        if let Some(path) = &frames_db {
            let (_, t) = sqlite_sizes(path);
            if let Some(b) = t.get("frames") {
                frame_sizes.push(("SQLite", *b as f64 / frame_rows as f64));
            }
        }
        if let Some(psql) = &psql {
            let (_, t) = pg_sizes(psql, "gw_write", &["frames"]);
            frame_sizes.push(("PostgreSQL", t["frames"] as f64 / frame_rows as f64));
        }

        // 2. Queries.
        println!();
        println!(
            "2. dashboard queries, {} streams (one per device): generated {} min of seconds, \
             {} d of minutes, {} d of hours, an event every 6 h; {} timed calls each after {WARM_UP} untimed, wall ms",
            a.streams, a.seconds_min, a.minute_days, a.hour_days, a.queries
        );
        let mut results: Vec<(&str, Generated, Timings, SizeReport)> = Vec::new();
        let mut pg_plans: Vec<String> = Vec::new();
        if a.sqlite {
            eprintln!("2. SQLite: generating history ...");
            let path = dir.path().join("history.db");
            let store = Store::Sqlite(Sqlite::open(&path).await.expect("opening SQLite"));
            let g = generate(&store, &a, &pools).await;
            eprintln!("2. SQLite: queries ...");
            let q = queries(&store, &a).await;
            store.close().await;
            drop(store);
            let (total, tables) = sqlite_sizes(&path);
            let size = size_report("SQLite (file + WAL after checkpoint; tables from dbstat)", total, &tables, &g);
            let _ = std::fs::remove_file(&path);
            results.push(("SQLite", g, q, size));
        }
        if let Some(psql) = &psql {
            eprintln!("2. PostgreSQL: generating history ...");
            let store = open_pg(psql, "gw_query").await;
            let g = generate(&store, &a, &pools).await;
            psql.query("gw_query", "ANALYZE");
            eprintln!("2. PostgreSQL: queries ...");
            let q = queries(&store, &a).await;
            let one = device(a.streams / 2);
            pg_plans.push(format!(
                "24 h minute series: {}",
                pg_explain(
                    psql,
                    "gw_query",
                    &sql::series(Table::Minutes)
                        .replace("$1", &format!("'{one}'"))
                        .replace("$2", &format!("'{STREAM}'"))
                        .replace("$3", &(T_END - DAY_US).to_string())
                        .replace("$4", &T_END.to_string()),
                )
            ));
            pg_plans.push(format!("fleet: {}", pg_explain(psql, "gw_query", &sql::fleet())));
            store.close().await;
            let (total, tables) = pg_sizes(psql, "gw_query", &["seconds", "minutes", "hours"]);
            let size = size_report("PostgreSQL (pg_database_size; tables from pg_total_relation_size)", total, &tables, &g);
            results.push(("PostgreSQL", g, q, size));
        }
        for (name, g, _, _) in &results {
            let rate = |acc: &Acc| acc.rows as f64 / acc.wall_s;
            println!(
                "{name} generated: {} second rows ({:.0}/s via Store::write), {} minute rows \
                 ({:.0}/s via write_rollups), {} hour rows ({:.0}/s), {} events",
                g.seconds.rows,
                rate(&g.seconds),
                g.minutes.rows,
                rate(&g.minutes),
                g.hours.rows,
                rate(&g.hours),
                g.events
            );
        }
        print!("{:<44}", "");
        for (name, _, _, _) in &results {
            print!("{:>30}", format!("{name} p50 / p99 / max"));
        }
        println!("{:>10}", "target");
        if let Some((_, _, first, _)) = results.first() {
            for (i, (qname, _)) in first.iter().enumerate() {
                print!("{qname:<44}");
                for (_, _, q, _) in &results {
                    let v = &q[i].1;
                    print!(
                        "{:>30}",
                        format!("{:.2} / {:.2} / {:.2}", pct(v, 0.5), pct(v, 0.99), v[v.len() - 1])
                    );
                }
                let target = match i {
                    0 | 1 => "20 ms",
                    2 => "50 ms",
                    _ => "-",
                };
                println!("{target:>10}");
            }
        }
        for plan in &pg_plans {
            println!("PostgreSQL plan, {plan}");
        }
        for (name, _, q, _) in &results {
            for (i, limit) in [(0, 20.0), (1, 20.0), (2, 50.0)] {
                let (qname, v) = &q[i];
                let short = qname.split(" (").next().unwrap_or(qname);
                targets.push((format!("{name} {short} p99 ms"), Some(pct(v, 0.99)), limit, false));
            }
        }
        let avg = |v: &[Sample]| v.iter().map(|s| s.bytes.len()).sum::<usize>() / v.len();
        println!(
            "size on disk (histogram blobs: second {} B, minute {} B, hour {} B on average):",
            avg(&pools.seconds),
            avg(&pools.minutes),
            avg(&pools.hours)
        );
        for (_, _, _, s) in &results {
            println!(
                "  {}: {:.1} MiB in all; bytes per row (table + indexes): {}; per stream-day \
                 (86,400 seconds + 1,440 minutes + 24 hours): {:.1} MiB",
                s.label,
                s.total as f64 / 1048576.0,
                s.per_row
                    .iter()
                    .map(|(k, b)| format!("{k} {b:.0}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                s.stream_day / 1048576.0
            );
            println!(
                "    so 1,000 streams x 7 days of seconds + minutes + hours: {:.0} GiB",
                s.stream_day * 7000.0 / (1u64 << 30) as f64
            );
        }
        for (name, b) in &frame_sizes {
            println!(
                "  {name} frames: {b:.0} bytes per frame row (from the write test); 1 h kept at \
                 30 fps = {:.1} MiB per stream",
                b * 108_000.0 / 1048576.0
            );
        }

        // 3. CPU.
        println!();
        println!(
            "3. CPU added by storage: {} streams, {} s of data (after {CPU_WARM_UP} untimed), \
             30 matched frames per stream-second, through Storage::push_closed, one tick per \
             transaction, then the minute and hour roll-ups",
            a.cpu_streams, a.cpu_ticks
        );
        // A whole hour a day ahead of the wall clock: maintenance finds
        // nothing due and retention nothing old.
        let start = (glasswatch_collector::receiver::wall_us() / HOUR_US + 24) * HOUR_US;
        let ticks = closed_ticks(a.cpu_streams, a.cpu_ticks + CPU_WARM_UP, start);
        let mut lines = Vec::new();
        eprintln!("3. CPU: kind = none ...");
        lines.push(cpu_run("none (kind = \"none\")", None, false, &ticks, false, clk).await);
        for frames_on in [false, true] {
            let tag = if frames_on { "frames kept" } else { "no frames" };
            if a.sqlite {
                eprintln!("3. CPU: SQLite, {tag} ...");
                let path = dir.path().join(format!("cpu-{frames_on}.db"));
                let store = Store::Sqlite(Sqlite::open(&path).await.expect("opening SQLite"));
                lines.push(cpu_run(&format!("SQLite, {tag}"), Some(store), frames_on, &ticks, false, clk).await);
                let _ = std::fs::remove_file(&path);
            }
            if let Some(psql) = &psql {
                eprintln!("3. CPU: PostgreSQL, {tag} ...");
                let store = open_pg(psql, &format!("gw_cpu_{frames_on}")).await;
                lines.push(cpu_run(&format!("PostgreSQL, {tag}"), Some(store), frames_on, &ticks, true, clk).await);
            }
        }
        println!(
            "{:<28}{:>9}{:>10}{:>9}{:>8}{:>12}{:>14}{:>14}",
            "", "seconds", "frames", "rollups", "wall s", "CPU s", "% of a core", "server %"
        );
        let none_pct = lines[0].cpu_s / lines[0].seconds_of_data as f64 * 100.0;
        for l in &lines {
            let pct_core = l.cpu_s / l.seconds_of_data as f64 * 100.0;
            println!(
                "{:<28}{:>9}{:>10}{:>9}{:>8.2}{:>12.2}{:>14}{:>14}",
                l.name,
                l.rows.0,
                l.rows.1,
                l.rows.2,
                l.wall_s,
                l.cpu_s,
                format!("{pct_core:.2} (+{:.2})", pct_core - none_pct),
                l.server_s.map_or("-".to_owned(), |s| format!(
                    "{:.2}",
                    s / l.seconds_of_data as f64 * 100.0
                )),
            );
        }
        println!(
            "(% of a core = CPU s per second of data; (+x) = over kind = \"none\"; server % = the \
             PostgreSQL server's CPU per second of data)"
        );
        for l in &lines {
            let Some(r) = &l.retention else { continue };
            let cpu = r.cpu_ticks as f64 / clk;
            let server = r.server_ticks as f64 / clk;
            // Seconds of data whose frames were deleted (warm-up ticks included).
            let data_s = r.rows as f64 / (a.cpu_streams * FPS) as f64;
            println!(
                "frame retention, {}: deleted {} frames (1 h age) in {:.2} s wall, CPU {:.2} s \
                 ({:.1} us per frame) = {:.2} % of a core at {} frames/s{}",
                l.name,
                r.rows,
                r.wall_s,
                cpu,
                cpu * 1e6 / r.rows as f64,
                cpu / data_s * 100.0,
                a.cpu_streams * FPS,
                if l.server_s.is_some() {
                    format!(", server {:.2} %", server / data_s * 100.0)
                } else {
                    String::new()
                }
            );
        }

        // 4. PostgreSQL with durability on.
        if let (true, Some(pg), Some(psql)) = (a.fsync_on, pg.as_mut(), psql.as_ref()) {
            eprintln!("4. PostgreSQL with fsync on ...");
            let server = DurablePostgres::start(pg, psql, &dir.path().join("durable.log"));
            println!();
            println!(
                "4. write throughput again on PostgreSQL restarted with fsync={}, \
                 synchronous_commit={}, full_page_writes={}",
                psql.query("postgres", "SHOW fsync"),
                psql.query("postgres", "SHOW synchronous_commit"),
                psql.query("postgres", "SHOW full_page_writes"),
            );
            let lines =
                postgres_writes(&a, &pools, psql, "gw_write_durable", dir.path(), " fsync on").await;
            print_writes(&lines, clk);
            drop(server);
        }
        println!();
        println!("targets:");
        for (name, value, limit, at_least) in &targets {
            let Some(v) = value else { continue };
            let met = if *at_least { v >= limit } else { v <= limit };
            println!(
                "  {name:<48} {v:>10.2}  target {} {limit}: {}",
                if *at_least { ">=" } else { "<=" },
                if met { "met" } else { "NOT met" }
            );
        }
    });
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
    drop(pg);
}
