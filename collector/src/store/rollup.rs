//! Per-minute and per-hour roll-ups, and retention, over any backend.
//!
//! A minute is made from its seconds, an hour from its minutes, by merging
//! their glass-to-HLS histograms (never by averaging percentiles): the
//! roll-up's p50/p95/p99 are those of every frame in it, within the
//! histogram's ±1% ([`super::histogram`]). Frames and dropped add up; fps
//! is the mean over the seconds; the breakdown is the mean over the frames.
//!
//! Each kind keeps a watermark (`rollup_state`): windows before it are done.
//! Minutes are rolled up once their end is [`GRACE_US`] old; a write of
//! seconds older than the watermark (a flush after an outage) moves it back
//! in the same transaction, so the late minute is made again. Roll-ups are
//! upserts, so redoing one is harmless.
//!
//! Retention deletes rows past their age in steps of [`DELETE_STEP`] rows,
//! each its own statement, so writes go on between them.

use std::collections::BTreeMap;
use std::time::Duration;

use super::histogram::Histogram;
use super::rows::RollupRow;
use super::{Store, StoreError, Table};
use crate::config;

/// A window is rolled up this long after it ended (late seconds still come
/// in while the main loop's last tick is written).
pub const GRACE_US: i64 = 5_000_000;
/// Rows deleted per statement.
pub const DELETE_STEP: u32 = 2_000;
/// Most source windows rolled up per step (a day of minutes, or of hours).
const STEP_WINDOWS: i64 = 24 * 60;

pub const MINUTE_US: i64 = 60_000_000;
pub const HOUR_US: i64 = 3_600_000_000;

/// How long each kind of row is kept (`None`: not at all, or forever for
/// tables that cannot be off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ages {
    pub frames: Option<i64>,
    pub seconds: Option<i64>,
    pub minutes: Option<i64>,
    pub hours: Option<i64>,
    pub events: Option<i64>,
    pub viewer: Option<i64>,
}

impl Ages {
    pub fn from_config(c: &config::Storage) -> Ages {
        Ages {
            frames: c.frames.us(),
            seconds: c.seconds.us(),
            minutes: c.minutes.us(),
            hours: c.hours.us(),
            events: c.events.us(),
            viewer: c.viewer.us(),
        }
    }
}

impl Default for Ages {
    fn default() -> Self {
        Ages::from_config(&config::Storage::default())
    }
}

fn floor(t: i64, width: i64) -> i64 {
    t.div_euclid(width).saturating_mul(width)
}

/// Merges rows of one stream and window into one roll-up row.
pub fn merge(device: &str, stream: &str, start_us: i64, rows: &[&RollupRow]) -> RollupRow {
    let mut hist = Histogram::new();
    let mut seconds = 0i64;
    let mut frames = 0i64;
    let mut dropped = 0i64;
    let mut max: Option<f64> = None;
    let mean_over = |pick: &dyn Fn(&RollupRow) -> Option<f64>,
                     weight: &dyn Fn(&RollupRow) -> i64| {
        let (mut sum, mut w) = (0.0, 0i64);
        for r in rows {
            if let Some(v) = pick(r) {
                let k = weight(r);
                sum += v * k as f64;
                w += k;
            }
        }
        (w > 0).then(|| sum / w as f64)
    };
    for r in rows {
        seconds += r.seconds;
        frames = frames.saturating_add(r.frames);
        dropped = dropped.saturating_add(r.dropped);
        if let Some(m) = r.max_ms {
            max = Some(max.map_or(m, |x: f64| x.max(m)));
        }
        if let Some(h) = r
            .hist
            .as_deref()
            .and_then(|b| Histogram::from_bytes(b).ok())
        {
            hist.merge(&h);
        }
    }
    let q = |p: f64| hist.quantile(p);
    RollupRow {
        device: device.to_owned(),
        stream: stream.to_owned(),
        start_us,
        seconds,
        frames,
        dropped,
        p50_ms: q(0.50),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        max_ms: max.or_else(|| hist.max()),
        receiver_fps: mean_over(&|r| r.receiver_fps, &|r| r.seconds),
        publisher_fps: mean_over(&|r| r.publisher_fps, &|r| r.seconds),
        encode_ms: mean_over(&|r| r.encode_ms, &|r| r.frames),
        publish_ms: mean_over(&|r| r.publish_ms, &|r| r.frames),
        origin_delivery_ms: mean_over(&|r| r.origin_delivery_ms, &|r| r.frames),
        hist: (hist.count() > 0).then(|| hist.to_bytes()),
    }
}

/// Groups source rows by stream and window of `width` and merges each group.
pub fn group(rows: &[RollupRow], width: i64) -> Vec<RollupRow> {
    let mut groups: BTreeMap<(&str, &str, i64), Vec<&RollupRow>> = BTreeMap::new();
    for r in rows {
        groups
            .entry((&r.device, &r.stream, floor(r.start_us, width)))
            .or_default()
            .push(r);
    }
    groups
        .into_iter()
        .map(|((d, s, t), rs)| merge(d, s, t, &rs))
        .collect()
}

/// Rolls up what is due at `now_us`: minutes from seconds, then hours from
/// minutes. Returns how many roll-up rows it wrote.
pub async fn roll_up(store: &Store, now_us: i64) -> Result<u64, StoreError> {
    let minutes_done = step(
        store,
        Table::Seconds,
        Table::Minutes,
        MINUTE_US,
        now_us - GRACE_US,
    )
    .await?;
    // An hour is rolled up once all its minutes are.
    let hours_done = match store.watermark(Table::Minutes).await? {
        Some(limit) => step(store, Table::Minutes, Table::Hours, HOUR_US, limit).await?,
        None => 0,
    };
    Ok(minutes_done + hours_done)
}

/// Rolls `source` up into `kind` (windows of `width`) up to `limit_us`.
async fn step(
    store: &Store,
    source: Table,
    kind: Table,
    width: i64,
    limit_us: i64,
) -> Result<u64, StoreError> {
    let upto = floor(limit_us, width);
    let mut done = match store.watermark(kind).await? {
        Some(d) => d,
        None => match store.first_start(source).await? {
            Some(first) => floor(first, width),
            None => return Ok(0),
        },
    };
    let mut written = 0u64;
    while done < upto {
        let end = upto.min(done.saturating_add(width.saturating_mul(STEP_WINDOWS)));
        let rows = store.rollup_source(source, done, end).await?;
        let merged = group(&rows, width);
        written += merged.len() as u64;
        store.write_rollups(kind, merged, done, end).await?;
        done = end;
        tokio::task::yield_now().await;
    }
    Ok(written)
}

/// Deletes what is past its age, in small steps. Returns the rows deleted.
pub async fn retention(store: &Store, ages: &Ages, now_us: i64) -> Result<u64, StoreError> {
    let mut deleted = 0u64;
    let kinds = [
        (Table::Frames, ages.frames.or(Some(0))),
        (Table::Seconds, ages.seconds),
        (Table::Minutes, ages.minutes),
        (Table::Hours, ages.hours),
        (Table::Events, ages.events),
        (Table::Viewer, ages.viewer.or(Some(0))),
    ];
    for (table, age) in kinds {
        let Some(age) = age else { continue };
        let cutoff = now_us.saturating_sub(age);
        loop {
            let n = store.delete_older(table, cutoff, DELETE_STEP).await?;
            deleted += n;
            if n < u64::from(DELETE_STEP) {
                break;
            }
            // Let queued writes go first.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(deleted)
}
