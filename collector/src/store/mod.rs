//! History: what the collector measured, kept in SQLite (the default) or
//! PostgreSQL (for fleets), or nowhere (`[storage] kind = "none"`).
//!
//! ```text
//!  main loop (1 s tick) ──Batch──▶ Queue (bounded, in seconds of data) ──▶ writer task ──▶ Store
//!                                    overflow drops the oldest, counted      retries with backoff
//!  maintenance task (10 s) ──▶ roll-ups (minutes, hours) ──▶ Store ◀── retention (small batches)
//!  API ──▶ queries ──▶ Store
//! ```
//!
//! - [`rows`]: the rows kept (devices, streams, events, seconds, frames,
//!   viewer reports, roll-ups) and the checks that keep bad figures out.
//! - [`histogram`]: the mergeable log-bucket histogram behind roll-ups.
//! - [`queue`]: the lossless path from the main loop to the database.
//! - [`rollup`]: per-minute and per-hour roll-ups and retention, over any backend.
//! - [`sqlite`], [`postgres`]: the two backends; [`Store`] dispatches to them.
//! - [`migrate`]: the schema versions embedded in the binary.
//!
//! **Invariant:** the main loop never waits for the database: it hands a
//! batch to the queue and goes on. Only an overflowing queue loses data, the
//! oldest first, and every row lost is counted.
//! **Invariant:** every row has its natural key under a unique constraint and
//! every write is idempotent (`ON CONFLICT DO NOTHING` for appended rows),
//! so a retry after a failed commit, or two collectors writing the same
//! second, never duplicates it. Roll-ups are recomputable from the seconds.

pub mod histogram;
pub mod migrate;
pub mod postgres;
pub mod queue;
pub mod rollup;
pub mod rows;
pub mod sql;
pub mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;

use glasswatch_common::api::{DeviceEvent, Resolution, SeriesPoint, StoredFrame, ViewerPoint};

pub use queue::Storage;
pub use rows::{Batch, DeviceRow, EventRow, FrameRow, RollupRow, SecondRow, StreamRow, ViewerRow};

/// What went wrong with the database. Every variant says which backend and
/// what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite {what}: {source}")]
    Sqlite {
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("PostgreSQL {what}: {source}")]
    Postgres {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("PostgreSQL pool: {0}")]
    Pool(String),
    #[error("cannot open {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error(
        "the database's schema is version {found}, newer than this collector knows ({known}): \
         upgrade the collector, or point it at another database"
    )]
    TooNew { found: i64, known: i64 },
    #[error("the database holds a damaged value in {what}: {message}")]
    Damaged { what: &'static str, message: String },
    #[error("the SQLite writer thread has stopped")]
    WriterGone,
    #[error("PostgreSQL TLS: {0}")]
    Tls(String),
}

/// Which kind of history a table holds (roll-ups and retention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Seconds,
    Minutes,
    Hours,
    Frames,
    Events,
    Viewer,
}

impl Table {
    /// The table's name, and the column its age is measured on.
    pub fn name_and_time(self) -> (&'static str, &'static str) {
        match self {
            Table::Seconds => ("seconds", "start_us"),
            Table::Minutes => ("minutes", "start_us"),
            Table::Hours => ("hours", "start_us"),
            Table::Frames => ("frames", "capture_us"),
            Table::Events => ("events", "at_us"),
            Table::Viewer => ("viewer_seconds", "start_us"),
        }
    }

    /// The table's primary key columns.
    pub fn key(self) -> &'static str {
        match self {
            Table::Seconds | Table::Minutes | Table::Hours => "device, stream, start_us",
            Table::Frames => "device, stream, session, seq",
            Table::Events => "device, at_us, kind",
            Table::Viewer => "device, stream, viewer, start_us",
        }
    }

    /// The table a resolution reads.
    pub fn for_resolution(r: Resolution) -> Table {
        match r {
            Resolution::Seconds => Table::Seconds,
            Resolution::Minutes => Table::Minutes,
            Resolution::Hours => Table::Hours,
        }
    }
}

/// The latest second of one stream, for the fleet overview.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetEntry {
    pub device: String,
    pub stream: String,
    pub online: bool,
    pub encoder: String,
    pub hardware: bool,
    pub last: Option<SeriesPoint>,
}

/// An open database.
#[derive(Debug)]
pub enum Store {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

impl Store {
    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Writes batches in one transaction; idempotent.
    pub async fn write(&self, batches: Arc<Vec<Batch>>) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.write(batches).await,
            Store::Postgres(p) => p.write(&batches).await,
        }
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.schema_version().await,
            Store::Postgres(p) => p.schema_version().await,
        }
    }

    /// Up to where `kind` (minutes or hours) is rolled up, if it ever was.
    pub async fn watermark(&self, kind: Table) -> Result<Option<i64>, StoreError> {
        match self {
            Store::Sqlite(s) => s.watermark(kind).await,
            Store::Postgres(p) => p.watermark(kind).await,
        }
    }

    /// The earliest window start in `table`.
    pub async fn first_start(&self, table: Table) -> Result<Option<i64>, StoreError> {
        match self {
            Store::Sqlite(s) => s.first_start(table).await,
            Store::Postgres(p) => p.first_start(table).await,
        }
    }

    /// The rows of `table` (seconds or minutes) in `[from_us, to_us)`, as
    /// roll-up inputs.
    pub async fn rollup_source(
        &self,
        table: Table,
        from_us: i64,
        to_us: i64,
    ) -> Result<Vec<RollupRow>, StoreError> {
        match self {
            Store::Sqlite(s) => s.rollup_source(table, from_us, to_us).await,
            Store::Postgres(p) => p.rollup_source(table, from_us, to_us).await,
        }
    }

    /// Writes (replaces) roll-ups of `kind` and moves its watermark from
    /// `from_us` to `done_us`, unless a late write moved it meanwhile.
    pub async fn write_rollups(
        &self,
        kind: Table,
        rows: Vec<RollupRow>,
        from_us: i64,
        done_us: i64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.write_rollups(kind, rows, from_us, done_us).await,
            Store::Postgres(p) => p.write_rollups(kind, &rows, from_us, done_us).await,
        }
    }

    /// Deletes at most `limit` rows of `table` older than `cutoff_us`;
    /// returns how many it deleted.
    pub async fn delete_older(
        &self,
        table: Table,
        cutoff_us: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.delete_older(table, cutoff_us, limit).await,
            Store::Postgres(p) => p.delete_older(table, cutoff_us, limit).await,
        }
    }

    /// The latest stored second of one stream.
    pub async fn latest(
        &self,
        device: &str,
        stream: &str,
    ) -> Result<Option<SeriesPoint>, StoreError> {
        match self {
            Store::Sqlite(s) => s.latest(device, stream).await,
            Store::Postgres(p) => p.latest(device, stream).await,
        }
    }

    /// Every stream with its latest stored second.
    pub async fn fleet(&self) -> Result<Vec<FleetEntry>, StoreError> {
        match self {
            Store::Sqlite(s) => s.fleet().await,
            Store::Postgres(p) => p.fleet().await,
        }
    }

    /// One stream's points in `[from_us, to_us)` at a resolution.
    pub async fn series(
        &self,
        resolution: Resolution,
        device: &str,
        stream: &str,
        from_us: i64,
        to_us: i64,
    ) -> Result<Vec<SeriesPoint>, StoreError> {
        let table = Table::for_resolution(resolution);
        match self {
            Store::Sqlite(s) => s.series(table, device, stream, from_us, to_us).await,
            Store::Postgres(p) => p.series(table, device, stream, from_us, to_us).await,
        }
    }

    /// One stream's viewer reports in `[from_us, to_us)`, grouped at a
    /// resolution (the same points as [`Store::series`]).
    pub async fn viewer_series(
        &self,
        resolution: Resolution,
        device: &str,
        stream: &str,
        from_us: i64,
        to_us: i64,
    ) -> Result<Vec<ViewerPoint>, StoreError> {
        let step = resolution.step_us();
        match self {
            Store::Sqlite(s) => s.viewer_series(device, stream, from_us, to_us, step).await,
            Store::Postgres(p) => p.viewer_series(device, stream, from_us, to_us, step).await,
        }
    }

    /// A device's events in `[from_us, to_us)`, newest first, at most `limit`.
    pub async fn events(
        &self,
        device: &str,
        from_us: i64,
        to_us: i64,
        limit: u32,
    ) -> Result<Vec<DeviceEvent>, StoreError> {
        match self {
            Store::Sqlite(s) => s.events(device, from_us, to_us, limit).await,
            Store::Postgres(p) => p.events(device, from_us, to_us, limit).await,
        }
    }

    /// One stream's frames captured in `[from_us, to_us)`, oldest first, at
    /// most `limit`.
    pub async fn frames(
        &self,
        device: &str,
        stream: &str,
        from_us: i64,
        to_us: i64,
        limit: u32,
    ) -> Result<Vec<StoredFrame>, StoreError> {
        match self {
            Store::Sqlite(s) => s.frames(device, stream, from_us, to_us, limit).await,
            Store::Postgres(p) => p.frames(device, stream, from_us, to_us, limit).await,
        }
    }

    /// Closes the database (the SQLite writer thread finishes what it holds).
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(p) => p.close(),
        }
    }
}

/// An i64 read back as a count (a negative one is damage: 0).
pub(crate) fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A frame's session as stored: the 16 hex digits' bits as i64.
pub(crate) fn session_to_db(session: u64) -> i64 {
    session as i64
}

/// A stored session back to its 16 hex digits.
pub(crate) fn session_from_db(session: i64) -> String {
    format!("{:016x}", session as u64)
}
