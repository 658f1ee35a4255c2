//! The SQLite backend: one file, WAL mode, every write on one dedicated
//! thread (never on the async runtime's workers), reads on a few read-only
//! connections in `spawn_blocking`.
//!
//! The writer thread owns the only read-write connection and executes
//! commands in the order they arrive, so a retention step (a bounded
//! `DELETE`) and a batch of seconds never wait on each other for long.
//! After a failed write (the file read-only, the disk full, the database
//! locked by another process for longer than the busy timeout) the
//! connection is opened again before the next command, so a database that
//! comes back is used again without a restart.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;

use glasswatch_common::api::{DeviceEvent, SeriesPoint, StoredFrame, ViewerPoint};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::oneshot;

use super::rollup::{HOUR_US, MINUTE_US};
use super::rows::{Batch, RollupRow};
use super::{migrate, sql, FleetEntry, StoreError, Table};

/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_millis(2_000);
/// Most idle read connections kept.
const READERS: usize = 4;
/// Page cache of all connections together by default, KiB (SQLite's own
/// default is about 2,000 KiB per connection): what `[storage]
/// sqlite_cache_kib` leaves out.
pub const DEFAULT_CACHE_KIB: u32 = 2048;
/// Smallest page cache a connection gets, KiB (a few pages).
const MIN_CONNECTION_CACHE_KIB: u32 = 16;

/// Splits the page cache budget between the connections: half to the
/// writer (it walks the tails of the tables and indexes every batch
/// appends to), the other half shared by the [`READERS`] kept readers.
/// Each cache fills up to its bound and stays there, so what SQLite holds
/// levels off at about `total_kib` whatever the number of streams; a bound
/// per connection (five of them) let it climb for an hour (the soak's
/// whole slope).
fn split_cache(total_kib: u32) -> (u32, u32) {
    let writer = (total_kib / 2).max(MIN_CONNECTION_CACHE_KIB);
    let reader = (total_kib / 2 / READERS as u32).max(MIN_CONNECTION_CACHE_KIB);
    (writer, reader)
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Command {
    Write(Arc<Vec<Batch>>, Reply<()>),
    Rollups {
        kind: Table,
        rows: Vec<RollupRow>,
        from_us: i64,
        done_us: i64,
        reply: Reply<()>,
    },
    Delete {
        table: Table,
        cutoff_us: i64,
        limit: u32,
        reply: Reply<u64>,
    },
    Close(oneshot::Sender<()>),
}

/// An open SQLite database.
#[derive(Debug)]
pub struct Sqlite {
    path: PathBuf,
    /// Page cache of each read connection, KiB.
    reader_cache_kib: u32,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

/// Bytes SQLite holds in this process (every connection: page caches,
/// prepared statements, schema), from `sqlite3_memory_used`.
pub fn memory_used() -> u64 {
    // SAFETY: sqlite3_memory_used only reads SQLite's own counter; it is
    // thread-safe in the bundled build's default (serialized) mode.
    let used = unsafe { rusqlite::ffi::sqlite3_memory_used() };
    u64::try_from(used).unwrap_or(0)
}

/// The shared SQL's `$n` parameters as SQLite's numbered `?n` (SQLite
/// would read `$n` as a named parameter, numbered by first appearance).
pub fn lite(sql: &str) -> String {
    sql.replace('$', "?")
}

fn err(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { what, source }
}

impl super::sql::Cols for rusqlite::Row<'_> {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.get(i).map_err(err("reading a row"))
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        self.get(i).map_err(err("reading a row"))
    }
    fn real(&self, i: usize) -> Result<f64, StoreError> {
        self.get(i).map_err(err("reading a row"))
    }
    fn opt_real(&self, i: usize) -> Result<Option<f64>, StoreError> {
        self.get(i).map_err(err("reading a row"))
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        self.get(i).map_err(err("reading a row"))
    }
    fn boolean(&self, i: usize) -> Result<bool, StoreError> {
        self.get(i).map_err(err("reading a row"))
    }
    fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(i).map_err(err("reading a row"))
    }
}

/// Runs `query` (the shared SQL) with `params` and decodes every row.
fn all<T>(
    c: &Connection,
    query: &str,
    params: impl rusqlite::Params,
    what: &'static str,
    decode: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut st = c.prepare_cached(&lite(query)).map_err(err(what))?;
    let mut rows = st.query(params).map_err(err(what))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(err(what))? {
        out.push(decode(r)?);
    }
    Ok(out)
}

/// Opens the read-write connection with the settings every one gets.
fn open_rw(path: &Path, cache_kib: u32) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(|e| StoreError::Open {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(err("setting the busy timeout"))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err("switching to WAL"))?;
    // In WAL mode NORMAL loses at most the last transactions on a power
    // cut, never the database's consistency.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err("setting synchronous"))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(err("setting foreign_keys"))?;
    set_cache(&conn, cache_kib)?;
    Ok(conn)
}

/// Bounds the connection's page cache (a negative `cache_size` is KiB).
/// Pages it holds stay until the bound is reached: that, not the number of
/// streams, is what SQLite's memory grows to.
fn set_cache(conn: &Connection, cache_kib: u32) -> Result<(), StoreError> {
    conn.pragma_update(None, "cache_size", -i64::from(cache_kib))
        .map_err(err("setting cache_size"))
}

fn open_ro(path: &Path, cache_kib: u32) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Open {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(err("setting the busy timeout"))?;
    set_cache(&conn, cache_kib)?;
    Ok(conn)
}

/// The schema version of an open database (0 when it has none).
pub fn version(conn: &Connection) -> Result<i64, StoreError> {
    conn.execute_batch(migrate::VERSION_TABLE)
        .map_err(err("creating the version table"))?;
    conn.query_row(
        "SELECT COALESCE(max(version), 0) FROM glasswatch_schema",
        [],
        |r| r.get(0),
    )
    .map_err(err("reading the schema version"))
}

/// Brings `conn` to version `upto` (the latest unless a test builds an
/// old one); each version in its own transaction.
pub fn migrate_to(conn: &mut Connection, upto: i64) -> Result<i64, StoreError> {
    let found = version(conn)?;
    for (v, sqlite, _) in migrate::plan(found, upto)? {
        let tx = conn.transaction().map_err(err("starting a migration"))?;
        tx.execute_batch(sqlite)
            .map_err(err("applying a migration"))?;
        tx.execute(
            "INSERT INTO glasswatch_schema (version, applied_us) VALUES ($1, $2)",
            params![v, crate::receiver::wall_us()],
        )
        .map_err(err("recording the schema version"))?;
        tx.commit().map_err(err("committing a migration"))?;
        tracing::info!(version = v, "SQLite schema migrated");
    }
    version(conn)
}

impl Sqlite {
    /// Opens (creating if needed) and migrates the database at `path`, and
    /// starts its writer thread.
    pub async fn open(path: &Path) -> Result<Sqlite, StoreError> {
        Sqlite::open_with(path, migrate::latest(), DEFAULT_CACHE_KIB).await
    }

    /// Like [`Sqlite::open`], migrating only up to version `upto` (tests
    /// build old schemas with it).
    pub async fn open_at(path: &Path, upto: i64) -> Result<Sqlite, StoreError> {
        Sqlite::open_with(path, upto, DEFAULT_CACHE_KIB).await
    }

    /// Opens, migrating up to version `upto`, the page caches of all
    /// connections together bounded to about `cache_kib` (see [`split_cache`]).
    pub async fn open_with(path: &Path, upto: i64, cache_kib: u32) -> Result<Sqlite, StoreError> {
        let (writer_cache_kib, reader_cache_kib) = split_cache(cache_kib);
        let p = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            let mut conn = open_rw(&p, writer_cache_kib)?;
            migrate_to(&mut conn, upto)?;
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Open {
            path: path.to_owned(),
            message: e.to_string(),
        })??;
        let (tx, rx) = mpsc::channel();
        let thread_path = path.to_owned();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_thread(thread_path, writer_cache_kib, conn, rx))
            .map_err(|e| StoreError::Open {
                path: path.to_owned(),
                message: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Sqlite {
            path: path.to_owned(),
            reader_cache_kib,
            commands: Mutex::new(Some(tx)),
            readers: Arc::new(Mutex::new(Vec::new())),
        })
    }

    async fn command<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        {
            let guard = self.commands.lock().unwrap_or_else(PoisonError::into_inner);
            let tx = guard.as_ref().ok_or(StoreError::WriterGone)?;
            tx.send(make(reply)).map_err(|_| StoreError::WriterGone)?;
        }
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Runs a read on a read-only connection off the async workers.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        let path = self.path.clone();
        let cache_kib = self.reader_cache_kib;
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let conn = match pooled {
                Some(c) => c,
                None => open_ro(&path, cache_kib)?,
            };
            let result = f(&conn);
            let mut pool = readers.lock().unwrap_or_else(PoisonError::into_inner);
            if result.is_ok() && pool.len() < READERS {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Open {
            path: self.path.clone(),
            message: format!("a read task failed: {e}"),
        })?
    }

    pub async fn write(&self, batches: Arc<Vec<Batch>>) -> Result<(), StoreError> {
        self.command(|reply| Command::Write(batches, reply)).await
    }

    pub async fn write_rollups(
        &self,
        kind: Table,
        rows: Vec<RollupRow>,
        from_us: i64,
        done_us: i64,
    ) -> Result<(), StoreError> {
        self.command(|reply| Command::Rollups {
            kind,
            rows,
            from_us,
            done_us,
            reply,
        })
        .await
    }

    pub async fn delete_older(
        &self,
        table: Table,
        cutoff_us: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.command(|reply| Command::Delete {
            table,
            cutoff_us,
            limit,
            reply,
        })
        .await
    }

    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT COALESCE(max(version), 0) FROM glasswatch_schema",
                [],
                |r| r.get(0),
            )
            .map_err(err("reading the schema version"))
        })
        .await
    }

    pub async fn watermark(&self, kind: Table) -> Result<Option<i64>, StoreError> {
        self.read(move |c| {
            c.query_row(&lite(sql::WATERMARK), [sql::kind_name(kind)], |r| r.get(0))
                .optional()
                .map_err(err("reading a roll-up watermark"))
        })
        .await
    }

    pub async fn first_start(&self, table: Table) -> Result<Option<i64>, StoreError> {
        self.read(move |c| {
            c.query_row(&lite(&sql::first_start(table)), [], |r| r.get(0))
                .map_err(err("reading the first window"))
        })
        .await
    }

    pub async fn rollup_source(
        &self,
        table: Table,
        from_us: i64,
        to_us: i64,
    ) -> Result<Vec<RollupRow>, StoreError> {
        self.read(move |c| {
            all(
                c,
                &sql::rollup_source(table),
                params![from_us, to_us],
                "reading the roll-up source",
                |r| sql::rollup_row(r),
            )
        })
        .await
    }

    pub async fn latest(
        &self,
        device: &str,
        stream: &str,
    ) -> Result<Option<SeriesPoint>, StoreError> {
        let (d, s) = (device.to_owned(), stream.to_owned());
        self.read(move |c| {
            let points = all(c, &sql::latest(), params![d, s], "reading latest", |r| {
                sql::point(r, 0)
            })?;
            Ok(points.into_iter().next())
        })
        .await
    }

    pub async fn fleet(&self) -> Result<Vec<FleetEntry>, StoreError> {
        self.read(|c| {
            all(c, &sql::fleet(), [], "reading the fleet", |r| {
                sql::fleet_entry(r)
            })
        })
        .await
    }

    pub async fn series(
        &self,
        table: Table,
        device: &str,
        stream: &str,
        from_us: i64,
        to_us: i64,
    ) -> Result<Vec<SeriesPoint>, StoreError> {
        let (d, s) = (device.to_owned(), stream.to_owned());
        self.read(move |c| {
            all(
                c,
                &sql::series(table),
                params![d, s, from_us, to_us],
                "reading a series",
                |r| sql::point(r, 0),
            )
        })
        .await
    }

    pub async fn viewer_series(
        &self,
        device: &str,
        stream: &str,
        from_us: i64,
        to_us: i64,
        step_us: i64,
    ) -> Result<Vec<ViewerPoint>, StoreError> {
        let (d, s) = (device.to_owned(), stream.to_owned());
        self.read(move |c| {
            all(
                c,
                sql::VIEWER_SERIES,
                params![d, s, from_us, to_us, step_us],
                "reading a viewer series",
                |r| sql::viewer_point(r),
            )
        })
        .await
    }

    pub async fn events(
        &self,
        device: &str,
        from_us: i64,
        to_us: i64,
        limit: u32,
    ) -> Result<Vec<DeviceEvent>, StoreError> {
        let d = device.to_owned();
        self.read(move |c| {
            all(
                c,
                sql::EVENTS,
                params![d, from_us, to_us, limit],
                "reading events",
                |r| sql::event(r),
            )
        })
        .await
    }

    pub async fn frames(
        &self,
        device: &str,
        stream: &str,
        from_us: i64,
        to_us: i64,
        limit: u32,
    ) -> Result<Vec<StoredFrame>, StoreError> {
        let (d, s) = (device.to_owned(), stream.to_owned());
        self.read(move |c| {
            all(
                c,
                sql::FRAMES,
                params![d, s, from_us, to_us, limit],
                "reading frames",
                |r| sql::frame(r),
            )
        })
        .await
    }

    /// Stops the writer thread once it has done what it was given.
    pub async fn close(&self) {
        let tx = self
            .commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(tx) = tx {
            let (done, rx) = oneshot::channel();
            if tx.send(Command::Close(done)).is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
            }
        }
    }
}

/// The writer thread: executes commands in order on the one read-write
/// connection, reopening it after a failure.
fn writer_thread(path: PathBuf, cache_kib: u32, conn: Connection, rx: mpsc::Receiver<Command>) {
    let mut conn = Some(conn);
    while let Ok(cmd) = rx.recv() {
        if let Command::Close(done) = cmd {
            drop(conn.take());
            let _ = done.send(());
            return;
        }
        let c = match conn.take() {
            Some(c) => Ok(c),
            None => open_rw(&path, cache_kib),
        };
        let mut c = match c {
            Ok(c) => c,
            Err(e) => {
                fail(cmd, e);
                continue;
            }
        };
        let ok = match cmd {
            Command::Write(batches, reply) => {
                let r = write_batches(&mut c, &batches);
                let ok = r.is_ok();
                let _ = reply.send(r);
                ok
            }
            Command::Rollups {
                kind,
                rows,
                from_us,
                done_us,
                reply,
            } => {
                let r = write_rollups(&mut c, kind, &rows, from_us, done_us);
                let ok = r.is_ok();
                let _ = reply.send(r);
                ok
            }
            Command::Delete {
                table,
                cutoff_us,
                limit,
                reply,
            } => {
                let r = c
                    .execute(&lite(&sql::delete_older(table)), params![cutoff_us, limit])
                    .map(|n| n as u64)
                    .map_err(err("deleting old rows"));
                let ok = r.is_ok();
                let _ = reply.send(r);
                ok
            }
            Command::Close(_) => true,
        };
        // After a failure the connection is opened again for the next
        // command: the file may have changed under it.
        if ok {
            conn = Some(c);
        }
    }
}

fn fail(cmd: Command, e: StoreError) {
    let msg = e.to_string();
    let again = || StoreError::Open {
        path: PathBuf::new(),
        message: msg.clone(),
    };
    match cmd {
        Command::Write(_, reply) => {
            let _ = reply.send(Err(e));
        }
        Command::Rollups { reply, .. } => {
            let _ = reply.send(Err(again()));
        }
        Command::Delete { reply, .. } => {
            let _ = reply.send(Err(again()));
        }
        Command::Close(done) => {
            let _ = done.send(());
        }
    }
}

/// Writes batches in one transaction.
pub fn write_batches(conn: &mut Connection, batches: &[Batch]) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(err("starting a write"))?;
    {
        let mut device = tx
            .prepare_cached(&lite(sql::INSERT_DEVICE))
            .map_err(err("preparing devices"))?;
        let mut stream = tx
            .prepare_cached(&lite(sql::INSERT_STREAM))
            .map_err(err("preparing streams"))?;
        let mut event = tx
            .prepare_cached(&lite(sql::INSERT_EVENT))
            .map_err(err("preparing events"))?;
        let second_sql = sql::insert_ignore("seconds", sql::SECOND_COLUMNS, sql::SECOND_COUNT);
        let mut second = tx
            .prepare_cached(&lite(&second_sql))
            .map_err(err("preparing seconds"))?;
        let frame_sql = sql::insert_ignore("frames", sql::FRAME_COLUMNS, sql::FRAME_COUNT);
        let mut frame = tx
            .prepare_cached(&lite(&frame_sql))
            .map_err(err("preparing frames"))?;
        let viewer_sql = lite(&sql::insert_ignore(
            "viewer_seconds",
            sql::VIEWER_COLUMNS,
            sql::VIEWER_COUNT,
        ));
        let mut earliest: Option<i64> = None;
        for b in batches {
            for d in &b.devices {
                device
                    .execute(params![
                        d.device,
                        d.online,
                        d.since_us,
                        d.updated_us,
                        d.host,
                        d.arch,
                        d.agent_version,
                        d.gstreamer_version,
                        d.clock_synchronized,
                        d.clock_est_error_us,
                        d.status
                    ])
                    .map_err(err("writing a device"))?;
            }
            for s in &b.streams {
                stream
                    .execute(params![
                        s.device,
                        s.stream,
                        s.encoder,
                        s.hardware,
                        s.width,
                        s.height,
                        s.fps,
                        s.rtsp_url,
                        s.hls_url,
                        s.updated_us
                    ])
                    .map_err(err("writing a stream"))?;
            }
            for e in &b.events {
                event
                    .execute(params![e.device, e.at_us, e.kind, e.detail])
                    .map_err(err("writing an event"))?;
            }
            for s in &b.seconds {
                earliest = Some(earliest.map_or(s.start_us, |e| e.min(s.start_us)));
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
                    .map_err(err("writing a second"))?;
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
                    .map_err(err("writing a frame"))?;
            }
            for v in &b.viewers {
                // Prepared only when needed (schema version 1 has no such table).
                tx.prepare_cached(&viewer_sql)
                    .map_err(err("preparing viewer reports"))?
                    .execute(params![
                        v.device,
                        v.stream,
                        v.viewer,
                        v.start_us,
                        v.frames,
                        v.p50_ms,
                        v.p95_ms,
                        v.buffer_ms,
                        v.stalls,
                        v.uncertainty_ms
                    ])
                    .map_err(err("writing a viewer report"))?;
            }
        }
        let all: Vec<&super::rows::SecondRow> = batches.iter().flat_map(|b| &b.seconds).collect();
        if !all.is_empty() {
            let upsert = lite(&format!(
                "INSERT INTO latest ({}) VALUES ({}) {}",
                sql::LATEST_COLUMNS,
                sql::params(sql::LATEST_COUNT),
                sql::latest_update()
            ));
            let mut latest = tx
                .prepare_cached(&upsert)
                .map_err(err("preparing latest"))?;
            for s in sql::newest_per_stream(all.into_iter()) {
                latest
                    .execute(params![
                        s.device,
                        s.stream,
                        s.start_us,
                        s.frames,
                        s.dropped,
                        s.p50_ms,
                        s.p95_ms,
                        s.p99_ms,
                        s.max_ms,
                        s.receiver_fps,
                        s.publisher_fps,
                        s.encode_ms,
                        s.publish_ms,
                        s.origin_delivery_ms
                    ])
                    .map_err(err("writing latest"))?;
            }
        }
        if let Some(t) = earliest {
            let mut rewind = tx
                .prepare_cached(&lite(sql::REWIND_WATERMARK))
                .map_err(err("preparing a watermark"))?;
            for (kind, width) in [(Table::Minutes, MINUTE_US), (Table::Hours, HOUR_US)] {
                rewind
                    .execute(params![sql::kind_name(kind), t.div_euclid(width) * width])
                    .map_err(err("moving a watermark back"))?;
            }
        }
    }
    tx.commit().map_err(err("committing a write"))
}

fn write_rollups(
    conn: &mut Connection,
    kind: Table,
    rows: &[RollupRow],
    from_us: i64,
    done_us: i64,
) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(err("starting a roll-up"))?;
    {
        let upsert = sql::upsert_rollup(kind.name_and_time().0);
        let mut st = tx
            .prepare_cached(&lite(&upsert))
            .map_err(err("preparing a roll-up"))?;
        for r in rows {
            st.execute(params![
                r.device,
                r.stream,
                r.start_us,
                r.seconds,
                r.frames,
                r.dropped,
                r.p50_ms,
                r.p95_ms,
                r.p99_ms,
                r.max_ms,
                r.receiver_fps,
                r.publisher_fps,
                r.encode_ms,
                r.publish_ms,
                r.origin_delivery_ms,
                r.hist
            ])
            .map_err(err("writing a roll-up"))?;
        }
        tx.execute(
            &lite(sql::ADVANCE_WATERMARK),
            params![sql::kind_name(kind), from_us, done_us],
        )
        .map_err(err("moving a watermark"))?;
    }
    tx.commit().map_err(err("committing a roll-up"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_gets_the_cache_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let cache = |c: &Connection| -> i64 {
            c.pragma_query_value(None, "cache_size", |r| r.get(0))
                .unwrap()
        };
        let rw = open_rw(&path, 100).unwrap();
        assert_eq!(cache(&rw), -100);
        assert_eq!(cache(&open_ro(&path, 4096).unwrap()), -4096);
        // SQLite's own count of what it holds moves with what is open.
        assert!(memory_used() > 0);
    }

    #[test]
    fn the_cache_budget_is_shared_by_the_writer_and_the_readers() {
        assert_eq!(split_cache(2048), (1024, 256));
        // The smallest budget config accepts still leaves each a few pages.
        assert_eq!(split_cache(64), (32, 16));
        let (w, r) = split_cache(1_048_576);
        assert!(w + r * READERS as u32 <= 1_048_576);
    }

    #[tokio::test]
    async fn an_open_database_gives_each_connection_its_share() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open_with(&dir.path().join("s.db"), migrate::latest(), 2048)
            .await
            .unwrap();
        let reader = db
            .read(|c| {
                c.pragma_query_value(None, "cache_size", |r| r.get::<_, i64>(0))
                    .map_err(err("reading cache_size"))
            })
            .await
            .unwrap();
        assert_eq!(reader, -256);
        db.close().await;
    }
}
