//! The SQL both backends run, written once (`$n` parameters, which SQLite
//! reads as numbered parameters in order of appearance, and PostgreSQL
//! natively), and the decoding of result rows through [`Cols`], which each
//! backend implements for its own row type.
//!
//! Every query the dashboard and API run is one statement with an index
//! behind it (primary keys `(device, stream, start_us)` and the like, and
//! the `…_by_time` indexes for roll-ups and retention).

use glasswatch_common::api::{DeviceEvent, SeriesPoint, StoredFrame, ViewerPoint};

use super::rows::RollupRow;
use super::{session_from_db, u64_of, FleetEntry, StoreError, Table};

/// Reading typed columns out of a result row.
pub trait Cols {
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError>;
    fn real(&self, i: usize) -> Result<f64, StoreError>;
    fn opt_real(&self, i: usize) -> Result<Option<f64>, StoreError>;
    fn text(&self, i: usize) -> Result<String, StoreError>;
    fn boolean(&self, i: usize) -> Result<bool, StoreError>;
    fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError>;
}

pub const INSERT_DEVICE: &str = "INSERT INTO devices (device, online, since_us, updated_us, host, arch, \
     agent_version, gstreamer_version, clock_synchronized, clock_est_error_us, status) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
     ON CONFLICT (device) DO UPDATE SET \
     since_us = CASE WHEN devices.online = excluded.online THEN devices.since_us ELSE excluded.since_us END, \
     online = excluded.online, updated_us = excluded.updated_us, host = excluded.host, \
     arch = excluded.arch, agent_version = excluded.agent_version, \
     gstreamer_version = excluded.gstreamer_version, \
     clock_synchronized = excluded.clock_synchronized, \
     clock_est_error_us = excluded.clock_est_error_us, status = excluded.status \
     WHERE excluded.updated_us >= devices.updated_us";

pub const INSERT_STREAM: &str =
    "INSERT INTO streams (device, stream, encoder, hardware, width, height, \
     fps, rtsp_url, hls_url, updated_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
     ON CONFLICT (device, stream) DO UPDATE SET encoder = excluded.encoder, \
     hardware = excluded.hardware, width = excluded.width, height = excluded.height, \
     fps = excluded.fps, rtsp_url = excluded.rtsp_url, hls_url = excluded.hls_url, \
     updated_us = excluded.updated_us WHERE excluded.updated_us >= streams.updated_us";

pub const INSERT_EVENT: &str = "INSERT INTO events (device, at_us, kind, detail) \
     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";

/// The columns of `seconds`, in the order the backends bind them.
pub const SECOND_COLUMNS: &str =
    "device, stream, start_us, end_us, frames, matched_by_fingerprint, \
     unmatched, dropped, p50_ms, p95_ms, p99_ms, max_ms, receiver_fps, publisher_fps, encode_ms, \
     publish_ms, origin_delivery_ms, clock_synced, clock_offset_ms, clock_uncertainty_ms, \
     hls_mode, hls_container, hls_errors, playlist_requests, media_requests, bitrate_kbps, \
     cpu_percent, rss_bytes, temperature_c, report_backlog, frames_dropped_capture, \
     frames_dropped_encode, records_dropped, hist";
pub const SECOND_COUNT: usize = 34;

pub const FRAME_COLUMNS: &str = "device, stream, session, seq, capture_us, available_us, \
     glass_to_hls_ms, encode_ms, publish_ms, origin_delivery_ms, uncertainty_ms, by_fingerprint";
pub const FRAME_COUNT: usize = 12;

pub const VIEWER_COLUMNS: &str =
    "device, stream, viewer, start_us, frames, p50_ms, p95_ms, buffer_ms, stalls, uncertainty_ms";
pub const VIEWER_COUNT: usize = 10;

pub const ROLLUP_COLUMNS: &str = "device, stream, start_us, seconds, frames, dropped, p50_ms, \
     p95_ms, p99_ms, max_ms, receiver_fps, publisher_fps, encode_ms, publish_ms, \
     origin_delivery_ms, hist";
pub const ROLLUP_COUNT: usize = 16;

/// `$1, $2, …, $n`.
pub fn params(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A single-row insert into `table` of `columns` (`n` of them) that skips
/// rows already there.
pub fn insert_ignore(table: &str, columns: &str, n: usize) -> String {
    format!(
        "INSERT INTO {table} ({columns}) VALUES ({}) ON CONFLICT DO NOTHING",
        params(n)
    )
}

/// `col = excluded.col, …` for every column of `columns` not in `key`: what
/// an upsert replaces.
pub fn update_sets(columns: &str, key: &[&str]) -> String {
    columns
        .split(',')
        .map(str::trim)
        .filter(|c| !key.contains(c))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a roll-up upsert replaces on conflict.
pub fn rollup_conflict() -> String {
    format!(
        "ON CONFLICT (device, stream, start_us) DO UPDATE SET {}",
        update_sets(ROLLUP_COLUMNS, &["device", "stream", "start_us"])
    )
}

/// The upsert of one roll-up row into `minutes` or `hours`.
pub fn upsert_rollup(table: &str) -> String {
    format!(
        "INSERT INTO {table} ({ROLLUP_COLUMNS}) VALUES ({}) {}",
        params(ROLLUP_COUNT),
        rollup_conflict()
    )
}

/// Moves a roll-up watermark from `$2` to `$3` (`$1` the kind), creating it
/// when absent; a watermark moved back meanwhile by a late write stays.
pub const ADVANCE_WATERMARK: &str = "INSERT INTO rollup_state (kind, done_us) VALUES ($1, $3) \
     ON CONFLICT (kind) DO UPDATE SET done_us = excluded.done_us \
     WHERE rollup_state.done_us = $2";

/// Moves a watermark back to `$2` when seconds older than it were written.
pub const REWIND_WATERMARK: &str =
    "UPDATE rollup_state SET done_us = $2 WHERE kind = $1 AND done_us > $2";

pub const WATERMARK: &str = "SELECT done_us FROM rollup_state WHERE kind = $1";

/// The watermark's name for a roll-up table.
pub fn kind_name(kind: Table) -> &'static str {
    kind.name_and_time().0
}

pub fn first_start(table: Table) -> String {
    format!("SELECT min(start_us) FROM {}", table.name_and_time().0)
}

/// Rows of `seconds` or `minutes` in `[$1, $2)` as roll-up inputs.
pub fn rollup_source(table: Table) -> String {
    let seconds = if table == Table::Seconds {
        "CAST(1 AS BIGINT)"
    } else {
        "seconds"
    };
    format!(
        "SELECT device, stream, start_us, {seconds}, frames, dropped, p50_ms, p95_ms, p99_ms, \
         max_ms, receiver_fps, publisher_fps, encode_ms, publish_ms, origin_delivery_ms, hist \
         FROM {} WHERE start_us >= $1 AND start_us < $2",
        table.name_and_time().0
    )
}

/// Deletes at most `$2` rows older than `$1`, by primary key (works on
/// SQLite's WITHOUT ROWID tables and PostgreSQL alike).
pub fn delete_older(table: Table) -> String {
    let (name, time) = table.name_and_time();
    let key = table.key();
    format!(
        "DELETE FROM {name} WHERE ({key}) IN \
         (SELECT {key} FROM {name} WHERE {time} < $1 LIMIT $2)"
    )
}

const POINT: &str = "start_us, frames, dropped, p50_ms, p95_ms, p99_ms, max_ms, receiver_fps, \
     publisher_fps, encode_ms, publish_ms, origin_delivery_ms";

pub fn latest() -> String {
    format!(
        "SELECT {POINT} FROM seconds WHERE device = $1 AND stream = $2 \
         ORDER BY start_us DESC LIMIT 1"
    )
}

pub fn series(table: Table) -> String {
    format!(
        "SELECT {POINT} FROM {} WHERE device = $1 AND stream = $2 \
         AND start_us >= $3 AND start_us < $4 ORDER BY start_us",
        table.name_and_time().0
    )
}

/// One stream's viewer reports in `[$3, $4)`, grouped into points `$5` µs
/// wide (see [`ViewerPoint`] for what a point's figures mean).
pub const VIEWER_SERIES: &str = "SELECT (start_us / $5) * $5 AS t, COUNT(DISTINCT viewer), \
     CAST(SUM(frames) AS BIGINT), \
     SUM(p50_ms * CAST(frames AS DOUBLE PRECISION)) / \
     NULLIF(SUM(CASE WHEN p50_ms IS NULL THEN 0.0 ELSE CAST(frames AS DOUBLE PRECISION) END), 0.0), \
     MAX(p95_ms), AVG(buffer_ms), CAST(SUM(stalls) AS BIGINT), MAX(uncertainty_ms) \
     FROM viewer_seconds WHERE device = $1 AND stream = $2 AND start_us >= $3 AND start_us < $4 \
     GROUP BY t ORDER BY t";

/// A [`ViewerPoint`] from the columns of [`VIEWER_SERIES`].
pub fn viewer_point(r: &impl Cols) -> Result<ViewerPoint, StoreError> {
    Ok(ViewerPoint {
        t_us: r.int(0)?,
        viewers: u64_of(r.int(1)?),
        frames: u64_of(r.int(2)?),
        p50_ms: r.opt_real(3)?,
        p95_ms: r.opt_real(4)?,
        buffer_ms: r.opt_real(5)?,
        stalls: u64_of(r.int(6)?),
        uncertainty_ms: r.opt_real(7)?,
    })
}

/// Every stream with its device's state and its latest second (the
/// `latest` table: one row per stream, kept by every write).
pub fn fleet() -> String {
    let cols = POINT
        .split(',')
        .map(|c| format!("s.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT st.device, st.stream, COALESCE(d.online, FALSE), st.encoder, st.hardware, {cols} \
         FROM streams st LEFT JOIN devices d ON d.device = st.device \
         LEFT JOIN latest s ON s.device = st.device AND s.stream = st.stream \
         ORDER BY st.device, st.stream"
    )
}

/// The columns of `latest`.
pub const LATEST_COLUMNS: &str = "device, stream, start_us, frames, dropped, p50_ms, p95_ms, \
     p99_ms, max_ms, receiver_fps, publisher_fps, encode_ms, publish_ms, origin_delivery_ms";
pub const LATEST_COUNT: usize = 14;

/// What an upsert of `latest` sets: a row replaces the stored one only
/// when it is newer (a flush after an outage writes old seconds).
pub fn latest_update() -> String {
    let sets = update_sets(LATEST_COLUMNS, &["device", "stream"]);
    format!("ON CONFLICT (device, stream) DO UPDATE SET {sets} WHERE excluded.start_us > latest.start_us")
}

/// The newest second of each stream among `rows` (one per stream, as an
/// upsert of `latest` needs).
pub fn newest_per_stream<'a>(
    rows: impl Iterator<Item = &'a super::rows::SecondRow>,
) -> Vec<&'a super::rows::SecondRow> {
    let mut newest: std::collections::BTreeMap<(&str, &str), &super::rows::SecondRow> =
        std::collections::BTreeMap::new();
    for r in rows {
        let e = newest.entry((&r.device, &r.stream)).or_insert(r);
        if r.start_us > e.start_us {
            *e = r;
        }
    }
    newest.into_values().collect()
}

pub const EVENTS: &str = "SELECT device, at_us, kind, detail FROM events \
     WHERE device = $1 AND at_us >= $2 AND at_us < $3 ORDER BY at_us DESC LIMIT $4";

pub const FRAMES: &str = "SELECT session, seq, capture_us, available_us, glass_to_hls_ms, \
     encode_ms, publish_ms, origin_delivery_ms, uncertainty_ms, by_fingerprint FROM frames \
     WHERE device = $1 AND stream = $2 AND capture_us >= $3 AND capture_us < $4 \
     ORDER BY capture_us LIMIT $5";

/// A [`SeriesPoint`] from the columns of [`latest`]/[`series`], starting at `at`.
pub fn point(r: &impl Cols, at: usize) -> Result<SeriesPoint, StoreError> {
    Ok(SeriesPoint {
        t_us: r.int(at)?,
        frames: u64_of(r.int(at + 1)?),
        dropped: u64_of(r.int(at + 2)?),
        p50_ms: r.opt_real(at + 3)?,
        p95_ms: r.opt_real(at + 4)?,
        p99_ms: r.opt_real(at + 5)?,
        max_ms: r.opt_real(at + 6)?,
        receiver_fps: r.opt_real(at + 7)?,
        publisher_fps: r.opt_real(at + 8)?,
        encode_ms: r.opt_real(at + 9)?,
        publish_ms: r.opt_real(at + 10)?,
        origin_delivery_ms: r.opt_real(at + 11)?,
    })
}

pub fn fleet_entry(r: &impl Cols) -> Result<FleetEntry, StoreError> {
    let last = match r.opt_int(5)? {
        Some(_) => Some(point(r, 5)?),
        None => None,
    };
    Ok(FleetEntry {
        device: r.text(0)?,
        stream: r.text(1)?,
        online: r.boolean(2)?,
        encoder: r.text(3)?,
        hardware: r.boolean(4)?,
        last,
    })
}

pub fn event(r: &impl Cols) -> Result<DeviceEvent, StoreError> {
    Ok(DeviceEvent {
        device: r.text(0)?,
        at_us: r.int(1)?,
        kind: r.text(2)?,
        detail: r.text(3)?,
    })
}

pub fn frame(r: &impl Cols) -> Result<StoredFrame, StoreError> {
    Ok(StoredFrame {
        session: session_from_db(r.int(0)?),
        seq: u64_of(r.int(1)?),
        capture_us: r.int(2)?,
        available_us: r.int(3)?,
        glass_to_hls_ms: r.real(4)?,
        encode_ms: r.real(5)?,
        publish_ms: r.real(6)?,
        origin_delivery_ms: r.real(7)?,
        uncertainty_ms: r.real(8)?,
        matched_by_fingerprint: r.boolean(9)?,
    })
}

pub fn rollup_row(r: &impl Cols) -> Result<RollupRow, StoreError> {
    Ok(RollupRow {
        device: r.text(0)?,
        stream: r.text(1)?,
        start_us: r.int(2)?,
        seconds: r.int(3)?,
        frames: r.int(4)?,
        dropped: r.int(5)?,
        p50_ms: r.opt_real(6)?,
        p95_ms: r.opt_real(7)?,
        p99_ms: r.opt_real(8)?,
        max_ms: r.opt_real(9)?,
        receiver_fps: r.opt_real(10)?,
        publisher_fps: r.opt_real(11)?,
        encode_ms: r.opt_real(12)?,
        publish_ms: r.opt_real(13)?,
        origin_delivery_ms: r.opt_real(14)?,
        hist: r.opt_blob(15)?,
    })
}
