//! The lossless path from the main loop to the database, and the handle the
//! rest of the collector holds ([`Storage`]).
//!
//! The main loop pushes one [`Batch`] per tick (a second of data) and never
//! waits. A writer task takes what is queued, oldest first, and writes it in
//! one transaction; when the database is away (PostgreSQL restarting, disk
//! full, SQLite locked or read-only) it puts the batches back in order,
//! waits with a capped backoff and tries again, while the collector goes on
//! measuring and publishing. The queue holds at most `queue_s` batches: only
//! overflow loses data, the oldest batch first, and every row lost is
//! counted ([`StorageStatus`]). On shutdown the writer flushes what is queued
//! within `flush_timeout_s`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use glasswatch_common::api::StorageStatus;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::rollup::{self, Ages};
use super::rows::{self, Batch, Checked};
use super::{Store, StoreError};
use crate::config::{self, StorageKind};
use crate::hub::Closed;

/// Most batches written in one transaction (a flush after an outage goes
/// in steps of this many seconds).
const MAX_BATCHES_PER_WRITE: usize = 30;
/// How often roll-ups run; retention runs every [`RETENTION_EVERY`] of them.
const MAINTENANCE_PERIOD: Duration = Duration::from_secs(10);
const RETENTION_EVERY: u32 = 6;

/// The collector's storage: a queue and, unless `kind = "none"`, a database
/// with its writer and maintenance tasks.
#[derive(Debug, Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Option<Arc<Store>>,
    queue: Mutex<VecDeque<Batch>>,
    capacity: usize,
    /// Rows taken by the writer and not yet committed or put back.
    in_flight: Mutex<usize>,
    wake: Notify,
    status: Mutex<StorageStatus>,
    keep_frames: bool,
    ages: Ages,
    flush_timeout: Duration,
    stop: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Storage {
    /// Opens (and migrates) the configured database. `config_dir` anchors a
    /// relative SQLite path.
    pub async fn open(
        cfg: &config::Storage,
        config_dir: Option<&std::path::Path>,
    ) -> anyhow::Result<Storage> {
        let store = match cfg.kind() {
            StorageKind::None => None,
            StorageKind::Sqlite => {
                let path = cfg.sqlite_path(config_dir);
                let s = super::sqlite::Sqlite::open_with(
                    &path,
                    super::migrate::latest(),
                    cfg.sqlite_cache_kib.get(),
                )
                .await
                .with_context(|| format!("opening the SQLite database {}", path.display()))?;
                tracing::info!(path = %path.display(), "storage: SQLite");
                Some(Store::Sqlite(s))
            }
            StorageKind::Postgres => {
                let url = cfg.postgres_url.as_deref().unwrap_or_default();
                let p = super::postgres::Postgres::open(&super::postgres::Settings {
                    url,
                    password_file: cfg.postgres_password_file.as_deref(),
                    ca_file: cfg.postgres_ca_file.as_deref(),
                    pool: cfg.postgres_pool.get() as usize,
                })
                .await
                .context("opening the PostgreSQL database (storage.postgres_url)")?;
                tracing::info!("storage: PostgreSQL");
                Some(Store::Postgres(p))
            }
        };
        Ok(Storage::with_store(
            store,
            cfg.queue_s.get() as usize,
            Ages::from_config(cfg),
            Duration::from_secs(u64::from(cfg.flush_timeout_s.get())),
        ))
    }

    /// A storage over an open store (`None`: keep nothing).
    pub fn with_store(
        store: Option<Store>,
        capacity: usize,
        ages: Ages,
        flush_timeout: Duration,
    ) -> Storage {
        let status = StorageStatus {
            kind: store.as_ref().map_or("none", Store::kind).to_owned(),
            queue_capacity: capacity as u64,
            writable: store.is_some(),
            ..StorageStatus::default()
        };
        Storage {
            inner: Arc::new(Inner {
                store: store.map(Arc::new),
                queue: Mutex::new(VecDeque::new()),
                capacity: capacity.max(1),
                in_flight: Mutex::new(0),
                wake: Notify::new(),
                status: Mutex::new(status),
                keep_frames: ages.frames.is_some(),
                ages,
                flush_timeout,
                stop: watch::channel(false).0,
            }),
        }
    }

    /// The database, for queries (`None` when nothing is kept).
    pub fn store(&self) -> Option<&Store> {
        self.inner.store.as_deref()
    }

    /// Whether anything is kept.
    pub fn enabled(&self) -> bool {
        self.inner.store.is_some()
    }

    /// Turns the windows closed at one tick into rows and queues them with
    /// `extra` (statuses, events). Never waits.
    pub fn push_closed(&self, closed: &[Closed], mut extra: Batch) {
        if !self.enabled() {
            return;
        }
        let mut checked = Checked::default();
        rows::closed_rows(closed, self.inner.keep_frames, &mut checked, &mut extra);
        self.count_checked(&checked);
        self.push(extra);
    }

    fn count_checked(&self, c: &Checked) {
        if c.nulled == 0 && c.rejected.is_empty() {
            return;
        }
        let mut st = lock(&self.inner.status);
        st.nulled_values += c.nulled;
        for (why, n) in &c.rejected {
            *st.rejected.entry((*why).to_owned()).or_insert(0) += n;
        }
    }

    /// Queues a batch. Never waits: when the queue is full the oldest batch
    /// is dropped and counted.
    pub fn push(&self, batch: Batch) {
        if !self.enabled() || batch.is_empty() {
            return;
        }
        let dropped = {
            let mut q = lock(&self.inner.queue);
            q.push_back(batch);
            self.trim(&mut q)
        };
        self.count_dropped(dropped);
        self.inner.wake.notify_one();
    }

    /// Drops the oldest batches beyond the capacity; returns them.
    fn trim(&self, q: &mut VecDeque<Batch>) -> Vec<Batch> {
        let mut dropped = Vec::new();
        while q.len() > self.inner.capacity {
            if let Some(b) = q.pop_front() {
                dropped.push(b);
            }
        }
        dropped
    }

    fn count_dropped(&self, dropped: Vec<Batch>) {
        if dropped.is_empty() {
            return;
        }
        let (mut s, mut f, mut o) = (0u64, 0u64, 0u64);
        for b in &dropped {
            s += b.seconds.len() as u64;
            f += b.frames.len() as u64;
            o += b.other_rows() as u64;
        }
        let total = {
            let mut st = lock(&self.inner.status);
            st.dropped_seconds += s;
            st.dropped_frames += f;
            st.dropped_other += o;
            st.dropped_seconds
        };
        if total == s || total.is_power_of_two() || s > 1 {
            tracing::warn!(
                seconds = s,
                frames = f,
                total_seconds_dropped = total,
                "storage queue full: dropped the oldest data"
            );
        }
    }

    /// Storage's counters for the API.
    pub fn status(&self) -> StorageStatus {
        let queued = self.pending() as u64;
        let mut st = lock(&self.inner.status).clone();
        st.queued_batches = queued;
        st
    }

    /// Batches waiting, including those being written.
    pub fn pending(&self) -> usize {
        lock(&self.inner.queue).len() + *lock(&self.inner.in_flight)
    }

    /// Starts the writer and the maintenance task.
    pub fn spawn(&self) -> Vec<JoinHandle<()>> {
        let Some(store) = self.inner.store.clone() else {
            return Vec::new();
        };
        let writer = tokio::spawn(writer(self.clone(), store.clone()));
        let maintenance = tokio::spawn(maintenance(self.clone(), store));
        vec![writer, maintenance]
    }

    /// Flushes what is queued, waiting at most `flush_timeout_s`; what is
    /// left then is counted as dropped. Then closes the database.
    pub async fn shutdown(&self, tasks: Vec<JoinHandle<()>>) {
        let _ = self.inner.stop.send(true);
        self.inner.wake.notify_one();
        let left = self.pending();
        if left > 0 {
            tracing::info!(batches = left, "storage: flushing before exit");
        }
        let mut tasks = tasks.into_iter();
        let writer = tasks.next();
        for t in tasks {
            t.abort();
        }
        if let Some(w) = writer {
            let abort = w.abort_handle();
            if tokio::time::timeout(self.inner.flush_timeout, w)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        let rest: Vec<Batch> = lock(&self.inner.queue).drain(..).collect();
        if !rest.is_empty() {
            tracing::warn!(
                batches = rest.len(),
                "storage: the database did not take everything before the flush timeout"
            );
            self.count_dropped(rest);
        }
        if let Some(s) = &self.inner.store {
            s.close().await;
        }
    }

    /// Takes up to [`MAX_BATCHES_PER_WRITE`] batches from the front.
    fn take(&self) -> Vec<Batch> {
        let mut q = lock(&self.inner.queue);
        let n = q.len().min(MAX_BATCHES_PER_WRITE);
        let taken: Vec<Batch> = q.drain(..n).collect();
        *lock(&self.inner.in_flight) = taken.len();
        taken
    }

    /// Puts batches that failed back at the front, in order, then trims.
    fn put_back(&self, batches: Vec<Batch>) {
        let dropped = {
            let mut q = lock(&self.inner.queue);
            for b in batches.into_iter().rev() {
                q.push_front(b);
            }
            *lock(&self.inner.in_flight) = 0;
            self.trim(&mut q)
        };
        self.count_dropped(dropped);
    }

    fn written(&self, batches: &[Batch]) {
        *lock(&self.inner.in_flight) = 0;
        let mut st = lock(&self.inner.status);
        for b in batches {
            st.written_seconds += b.seconds.len() as u64;
            st.written_frames += b.frames.len() as u64;
        }
        if !st.writable {
            tracing::info!("storage: the database takes writes again");
        }
        st.writable = true;
    }

    fn failed(&self, e: &StoreError) {
        let mut st = lock(&self.inner.status);
        st.write_failures += 1;
        let n = st.write_failures;
        if st.writable || n.is_power_of_two() {
            tracing::warn!("storage: write failed ({n} so far), will retry: {e}");
        }
        st.writable = false;
        st.last_error = Some(e.to_string());
    }

    fn stopping(&self) -> bool {
        *self.inner.stop.borrow()
    }

    pub(crate) fn note_maintenance(&self, rollups: u64, deleted: u64) {
        let mut st = lock(&self.inner.status);
        st.rollups_written += rollups;
        st.retention_deleted += deleted;
    }

    pub(crate) fn set_schema_version(&self, v: i64) {
        lock(&self.inner.status).schema_version = Some(v);
    }
}

/// Writes what is queued, oldest first; on failure puts it back and waits.
async fn writer(storage: Storage, store: Arc<Store>) {
    let mut stop = storage.inner.stop.subscribe();
    let mut backoff = Duration::from_millis(250);
    loop {
        let batches = storage.take();
        if batches.is_empty() {
            if storage.stopping() {
                return;
            }
            tokio::select! {
                _ = storage.inner.wake.notified() => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let shared = Arc::new(batches);
        let result = store.write(shared.clone()).await;
        let batches = Arc::try_unwrap(shared).unwrap_or_else(|arc| (*arc).clone());
        match result {
            Ok(()) => {
                storage.written(&batches);
                backoff = Duration::from_millis(250);
            }
            Err(e) => {
                storage.failed(&e);
                storage.put_back(batches);
                // On shutdown, try again at once: the flush has its own deadline.
                if !storage.stopping() {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => {}
                    }
                } else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Roll-ups every 10 s, retention every minute, in small steps.
async fn maintenance(storage: Storage, store: Arc<Store>) {
    if let Ok(v) = store.schema_version().await {
        storage.set_schema_version(v);
    }
    let mut round = 0u32;
    let mut tick = tokio::time::interval(MAINTENANCE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = crate::receiver::wall_us();
        match rollup::roll_up(&store, now).await {
            Ok(n) => storage.note_maintenance(n, 0),
            Err(e) => tracing::warn!("storage: roll-up failed, will retry: {e}"),
        }
        if round % RETENTION_EVERY == 0 {
            match rollup::retention(&store, &storage.inner.ages, now).await {
                Ok(n) => storage.note_maintenance(0, n),
                Err(e) => tracing::warn!("storage: retention failed, will retry: {e}"),
            }
        }
        round = round.wrapping_add(1);
    }
}
