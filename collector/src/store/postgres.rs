//! The PostgreSQL backend: `tokio-postgres` over a small pool
//! (`deadpool-postgres`), TLS through rustls when the URL asks for it
//! (`sslmode=require`), the password from a file if configured.
//!
//! A write is one transaction per call; seconds, frames and viewer reports
//! go in as multi-row inserts (`INSERT … SELECT * FROM unnest($1::text[],
//! …)`: one statement per [`CHUNK`] rows, arrays bound in binary), skipping
//! rows already there, so a retry after a failed commit, or a second
//! collector, never duplicates anything.

use std::path::Path;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use glasswatch_common::api::{DeviceEvent, SeriesPoint, StoredFrame, ViewerPoint};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::rollup::{HOUR_US, MINUTE_US};
use super::rows::{Batch, FrameRow, RollupRow, SecondRow, ViewerRow};
use super::{migrate, sql, FleetEntry, StoreError, Table};

/// Rows per multi-row insert.
const CHUNK: usize = 20_000;

/// How to reach the database.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    pub url: &'a str,
    pub password_file: Option<&'a Path>,
    pub ca_file: Option<&'a Path>,
    pub pool: usize,
}

/// An open PostgreSQL database.
pub struct Postgres {
    pool: Pool,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").finish_non_exhaustive()
    }
}

fn err(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |source| StoreError::Postgres { what, source }
}

fn pool_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Pool(e.to_string())
}

impl sql::Cols for Row {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.try_get(i).map_err(err("reading a row"))
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        self.try_get(i).map_err(err("reading a row"))
    }
    fn real(&self, i: usize) -> Result<f64, StoreError> {
        self.try_get(i).map_err(err("reading a row"))
    }
    fn opt_real(&self, i: usize) -> Result<Option<f64>, StoreError> {
        self.try_get(i).map_err(err("reading a row"))
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        self.try_get(i).map_err(err("reading a row"))
    }
    fn boolean(&self, i: usize) -> Result<bool, StoreError> {
        self.try_get(i).map_err(err("reading a row"))
    }
    fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
        self.try_get(i).map_err(err("reading a row"))
    }
}

/// Whether the URL asks for TLS (`sslmode=require`, `verify-ca` or
/// `verify-full`; all three check the server's certificate here).
fn wants_tls(url: &str) -> bool {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    query.split('&').any(|kv| {
        matches!(
            kv,
            "sslmode=require" | "sslmode=verify-ca" | "sslmode=verify-full"
        )
    })
}

/// rustls with ring, trusting `ca_file` or the system's roots.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| StoreError::Tls(format!("reading {}: {e}", path.display())))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| StoreError::Tls(format!("{}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| StoreError::Tls(format!("{}: {e}", path.display())))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err(StoreError::Tls(
            "no CA certificate to trust (set storage.postgres_ca_file)".into(),
        ));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl Postgres {
    /// Connects, migrates and keeps a pool of `pool` connections.
    pub async fn open(s: &Settings<'_>) -> Result<Postgres, StoreError> {
        Postgres::open_at(s, migrate::latest()).await
    }

    /// Like [`Postgres::open`], migrating only up to version `upto` (tests
    /// build old schemas with it).
    pub async fn open_at(s: &Settings<'_>, upto: i64) -> Result<Postgres, StoreError> {
        let mut config: tokio_postgres::Config =
            s.url.parse().map_err(err("parsing storage.postgres_url"))?;
        if let Some(path) = s.password_file {
            let text = std::fs::read_to_string(path).map_err(|e| StoreError::Open {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
            config.password(text.lines().next().unwrap_or_default());
        }
        config.connect_timeout(std::time::Duration::from_secs(5));
        config.application_name("glasswatch-collector");
        let mgr_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = if wants_tls(s.url) {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(s.ca_file)?);
            Manager::from_config(config, tls, mgr_config)
        } else {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            Manager::from_config(config, NoTls, mgr_config)
        };
        let pool = Pool::builder(manager)
            .max_size(s.pool.max(1))
            .build()
            .map_err(pool_err)?;
        let pg = Postgres { pool };
        pg.migrate_to(upto).await?;
        Ok(pg)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_err)
    }

    /// Brings the database to version `upto`, each version in its own
    /// transaction, serialised against other collectors by an advisory lock.
    pub async fn migrate_to(&self, upto: i64) -> Result<i64, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(err("starting a migration"))?;
        // One collector migrates at a time; the others wait here.
        tx.execute("SELECT pg_advisory_xact_lock(7419561)", &[])
            .await
            .map_err(err("locking for migration"))?;
        tx.batch_execute(migrate::VERSION_TABLE)
            .await
            .map_err(err("creating the version table"))?;
        let found: i64 = tx
            .query_one(
                "SELECT COALESCE(max(version), 0)::int8 FROM glasswatch_schema",
                &[],
            )
            .await
            .map_err(err("reading the schema version"))?
            .try_get(0)
            .map_err(err("reading the schema version"))?;
        for (v, _, postgres) in migrate::plan(found, upto)? {
            tx.batch_execute(postgres)
                .await
                .map_err(err("applying a migration"))?;
            tx.execute(
                "INSERT INTO glasswatch_schema (version, applied_us) VALUES ($1, $2)",
                &[&v, &crate::receiver::wall_us()],
            )
            .await
            .map_err(err("recording the schema version"))?;
            tracing::info!(version = v, "PostgreSQL schema migrated");
        }
        tx.commit().await.map_err(err("committing a migration"))?;
        drop(c);
        self.schema_version().await
    }

    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let c = self.client().await?;
        c.query_one(
            "SELECT COALESCE(max(version), 0)::int8 FROM glasswatch_schema",
            &[],
        )
        .await
        .map_err(err("reading the schema version"))?
        .try_get(0)
        .map_err(err("reading the schema version"))
    }

    pub async fn write(&self, batches: &[Batch]) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(err("starting a write"))?;
        let device = tx
            .prepare_cached(sql::INSERT_DEVICE)
            .await
            .map_err(err("preparing devices"))?;
        let stream = tx
            .prepare_cached(sql::INSERT_STREAM)
            .await
            .map_err(err("preparing streams"))?;
        let event = tx
            .prepare_cached(sql::INSERT_EVENT)
            .await
            .map_err(err("preparing events"))?;
        for b in batches {
            for d in &b.devices {
                tx.execute(
                    &device,
                    &[
                        &d.device,
                        &d.online,
                        &d.since_us,
                        &d.updated_us,
                        &d.host,
                        &d.arch,
                        &d.agent_version,
                        &d.gstreamer_version,
                        &d.clock_synchronized,
                        &d.clock_est_error_us,
                        &d.status,
                    ],
                )
                .await
                .map_err(err("writing a device"))?;
            }
            for s in &b.streams {
                tx.execute(
                    &stream,
                    &[
                        &s.device,
                        &s.stream,
                        &s.encoder,
                        &s.hardware,
                        &s.width,
                        &s.height,
                        &s.fps,
                        &s.rtsp_url,
                        &s.hls_url,
                        &s.updated_us,
                    ],
                )
                .await
                .map_err(err("writing a stream"))?;
            }
            for e in &b.events {
                tx.execute(&event, &[&e.device, &e.at_us, &e.kind, &e.detail])
                    .await
                    .map_err(err("writing an event"))?;
            }
        }
        let seconds: Vec<&SecondRow> = batches.iter().flat_map(|b| &b.seconds).collect();
        for chunk in seconds.chunks(CHUNK) {
            let (text, params) = seconds_insert(chunk);
            tx.execute(text.as_str(), &refs(&params))
                .await
                .map_err(err("writing seconds"))?;
        }
        let newest = sql::newest_per_stream(seconds.iter().copied());
        if !newest.is_empty() {
            let (text, params) = latest_upsert(&newest);
            tx.execute(text.as_str(), &refs(&params))
                .await
                .map_err(err("writing latest"))?;
        }
        let frames: Vec<&FrameRow> = batches.iter().flat_map(|b| &b.frames).collect();
        for chunk in frames.chunks(CHUNK) {
            let (text, params) = frames_insert(chunk);
            tx.execute(text.as_str(), &refs(&params))
                .await
                .map_err(err("writing frames"))?;
        }
        let viewers: Vec<&ViewerRow> = batches.iter().flat_map(|b| &b.viewers).collect();
        for chunk in viewers.chunks(CHUNK) {
            let (text, params) = viewers_insert(chunk);
            tx.execute(text.as_str(), &refs(&params))
                .await
                .map_err(err("writing viewer reports"))?;
        }
        if let Some(t) = seconds.iter().map(|s| s.start_us).min() {
            for (kind, width) in [(Table::Minutes, MINUTE_US), (Table::Hours, HOUR_US)] {
                tx.execute(
                    sql::REWIND_WATERMARK,
                    &[&sql::kind_name(kind), &(t.div_euclid(width) * width)],
                )
                .await
                .map_err(err("moving a watermark back"))?;
            }
        }
        tx.commit().await.map_err(err("committing a write"))
    }

    pub async fn write_rollups(
        &self,
        kind: Table,
        rows: &[RollupRow],
        from_us: i64,
        done_us: i64,
    ) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(err("starting a roll-up"))?;
        let refs_rows: Vec<&RollupRow> = rows.iter().collect();
        for chunk in refs_rows.chunks(CHUNK) {
            let (text, params) = rollups_upsert(kind.name_and_time().0, chunk);
            tx.execute(text.as_str(), &refs(&params))
                .await
                .map_err(err("writing roll-ups"))?;
        }
        tx.execute(
            sql::ADVANCE_WATERMARK,
            &[&sql::kind_name(kind), &from_us, &done_us],
        )
        .await
        .map_err(err("moving a watermark"))?;
        tx.commit().await.map_err(err("committing a roll-up"))
    }

    pub async fn delete_older(
        &self,
        table: Table,
        cutoff_us: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let c = self.client().await?;
        c.execute(&sql::delete_older(table), &[&cutoff_us, &i64::from(limit)])
            .await
            .map_err(err("deleting old rows"))
    }

    pub async fn watermark(&self, kind: Table) -> Result<Option<i64>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_opt(sql::WATERMARK, &[&sql::kind_name(kind)])
            .await
            .map_err(err("reading a roll-up watermark"))?;
        row.map(|r| r.try_get(0))
            .transpose()
            .map_err(err("reading a roll-up watermark"))
    }

    pub async fn first_start(&self, table: Table) -> Result<Option<i64>, StoreError> {
        let c = self.client().await?;
        c.query_one(&sql::first_start(table), &[])
            .await
            .map_err(err("reading the first window"))?
            .try_get(0)
            .map_err(err("reading the first window"))
    }

    async fn rows(
        &self,
        text: &str,
        params: &[&(dyn ToSql + Sync)],
        what: &'static str,
    ) -> Result<Vec<Row>, StoreError> {
        let c = self.client().await?;
        let st = c.prepare_cached(text).await.map_err(err(what))?;
        c.query(&st, params).await.map_err(err(what))
    }

    pub async fn rollup_source(
        &self,
        table: Table,
        from_us: i64,
        to_us: i64,
    ) -> Result<Vec<RollupRow>, StoreError> {
        self.rows(
            &sql::rollup_source(table),
            &[&from_us, &to_us],
            "reading the roll-up source",
        )
        .await?
        .iter()
        .map(sql::rollup_row)
        .collect()
    }

    pub async fn latest(
        &self,
        device: &str,
        stream: &str,
    ) -> Result<Option<SeriesPoint>, StoreError> {
        self.rows(&sql::latest(), &[&device, &stream], "reading latest")
            .await?
            .first()
            .map(|r| sql::point(r, 0))
            .transpose()
    }

    pub async fn fleet(&self) -> Result<Vec<FleetEntry>, StoreError> {
        self.rows(&sql::fleet(), &[], "reading the fleet")
            .await?
            .iter()
            .map(sql::fleet_entry)
            .collect()
    }

    pub async fn series(
        &self,
        table: Table,
        device: &str,
        stream: &str,
        from_us: i64,
        to_us: i64,
    ) -> Result<Vec<SeriesPoint>, StoreError> {
        self.rows(
            &sql::series(table),
            &[&device, &stream, &from_us, &to_us],
            "reading a series",
        )
        .await?
        .iter()
        .map(|r| sql::point(r, 0))
        .collect()
    }

    pub async fn viewer_series(
        &self,
        device: &str,
        stream: &str,
        from_us: i64,
        to_us: i64,
        step_us: i64,
    ) -> Result<Vec<ViewerPoint>, StoreError> {
        self.rows(
            sql::VIEWER_SERIES,
            &[&device, &stream, &from_us, &to_us, &step_us],
            "reading a viewer series",
        )
        .await?
        .iter()
        .map(sql::viewer_point)
        .collect()
    }

    pub async fn events(
        &self,
        device: &str,
        from_us: i64,
        to_us: i64,
        limit: u32,
    ) -> Result<Vec<DeviceEvent>, StoreError> {
        self.rows(
            sql::EVENTS,
            &[&device, &from_us, &to_us, &i64::from(limit)],
            "reading events",
        )
        .await?
        .iter()
        .map(sql::event)
        .collect()
    }

    pub async fn frames(
        &self,
        device: &str,
        stream: &str,
        from_us: i64,
        to_us: i64,
        limit: u32,
    ) -> Result<Vec<StoredFrame>, StoreError> {
        self.rows(
            sql::FRAMES,
            &[&device, &stream, &from_us, &to_us, &i64::from(limit)],
            "reading frames",
        )
        .await?
        .iter()
        .map(sql::frame)
        .collect()
    }

    pub fn close(&self) {
        self.pool.close();
    }
}

type Param = Box<dyn ToSql + Sync + Send>;

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// One column of `rows` as an array parameter.
fn col<R, T: ToSql + Sync + Send + 'static>(rows: &[&R], f: impl Fn(&R) -> T) -> Param {
    Box::new(rows.iter().map(|r| f(r)).collect::<Vec<T>>())
}

/// `INSERT INTO table (columns) SELECT * FROM unnest($1::t1[], …)`.
fn unnest_insert(table: &str, columns: &str, types: &[&str], tail: &str) -> String {
    let arrays = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    format!("INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays}) {tail}")
}

fn seconds_insert(rows: &[&SecondRow]) -> (String, Vec<Param>) {
    let types = [
        "text", "text", "int8", "int8", "int8", "int8", "int8", "int8", "float8", "float8",
        "float8", "float8", "float8", "float8", "float8", "float8", "float8", "bool", "float8",
        "float8", "text", "text", "int8", "int8", "int8", "float8", "float8", "int8", "float8",
        "int8", "int8", "int8", "int8", "bytea",
    ];
    let params: Vec<Param> = vec![
        col(rows, |r: &SecondRow| r.device.clone()),
        col(rows, |r: &SecondRow| r.stream.clone()),
        col(rows, |r: &SecondRow| r.start_us),
        col(rows, |r: &SecondRow| r.end_us),
        col(rows, |r: &SecondRow| r.frames),
        col(rows, |r: &SecondRow| r.matched_by_fingerprint),
        col(rows, |r: &SecondRow| r.unmatched),
        col(rows, |r: &SecondRow| r.dropped),
        col(rows, |r: &SecondRow| r.p50_ms),
        col(rows, |r: &SecondRow| r.p95_ms),
        col(rows, |r: &SecondRow| r.p99_ms),
        col(rows, |r: &SecondRow| r.max_ms),
        col(rows, |r: &SecondRow| r.receiver_fps),
        col(rows, |r: &SecondRow| r.publisher_fps),
        col(rows, |r: &SecondRow| r.encode_ms),
        col(rows, |r: &SecondRow| r.publish_ms),
        col(rows, |r: &SecondRow| r.origin_delivery_ms),
        col(rows, |r: &SecondRow| r.clock_synced),
        col(rows, |r: &SecondRow| r.clock_offset_ms),
        col(rows, |r: &SecondRow| r.clock_uncertainty_ms),
        col(rows, |r: &SecondRow| r.hls_mode.clone()),
        col(rows, |r: &SecondRow| r.hls_container.clone()),
        col(rows, |r: &SecondRow| r.hls_errors),
        col(rows, |r: &SecondRow| r.playlist_requests),
        col(rows, |r: &SecondRow| r.media_requests),
        col(rows, |r: &SecondRow| r.bitrate_kbps),
        col(rows, |r: &SecondRow| r.cpu_percent),
        col(rows, |r: &SecondRow| r.rss_bytes),
        col(rows, |r: &SecondRow| r.temperature_c),
        col(rows, |r: &SecondRow| r.report_backlog),
        col(rows, |r: &SecondRow| r.frames_dropped_capture),
        col(rows, |r: &SecondRow| r.frames_dropped_encode),
        col(rows, |r: &SecondRow| r.records_dropped),
        col(rows, |r: &SecondRow| r.hist.clone()),
    ];
    debug_assert_eq!(params.len(), sql::SECOND_COUNT);
    (
        unnest_insert(
            "seconds",
            sql::SECOND_COLUMNS,
            &types,
            "ON CONFLICT DO NOTHING",
        ),
        params,
    )
}

fn latest_upsert(rows: &[&SecondRow]) -> (String, Vec<Param>) {
    let types = [
        "text", "text", "int8", "int8", "int8", "float8", "float8", "float8", "float8", "float8",
        "float8", "float8", "float8", "float8",
    ];
    let params: Vec<Param> = vec![
        col(rows, |r: &SecondRow| r.device.clone()),
        col(rows, |r: &SecondRow| r.stream.clone()),
        col(rows, |r: &SecondRow| r.start_us),
        col(rows, |r: &SecondRow| r.frames),
        col(rows, |r: &SecondRow| r.dropped),
        col(rows, |r: &SecondRow| r.p50_ms),
        col(rows, |r: &SecondRow| r.p95_ms),
        col(rows, |r: &SecondRow| r.p99_ms),
        col(rows, |r: &SecondRow| r.max_ms),
        col(rows, |r: &SecondRow| r.receiver_fps),
        col(rows, |r: &SecondRow| r.publisher_fps),
        col(rows, |r: &SecondRow| r.encode_ms),
        col(rows, |r: &SecondRow| r.publish_ms),
        col(rows, |r: &SecondRow| r.origin_delivery_ms),
    ];
    (
        unnest_insert("latest", sql::LATEST_COLUMNS, &types, &sql::latest_update()),
        params,
    )
}

fn frames_insert(rows: &[&FrameRow]) -> (String, Vec<Param>) {
    let types = [
        "text", "text", "int8", "int8", "int8", "int8", "float8", "float8", "float8", "float8",
        "float8", "bool",
    ];
    let params: Vec<Param> = vec![
        col(rows, |r: &FrameRow| r.device.clone()),
        col(rows, |r: &FrameRow| r.stream.clone()),
        col(rows, |r: &FrameRow| r.session),
        col(rows, |r: &FrameRow| r.seq),
        col(rows, |r: &FrameRow| r.capture_us),
        col(rows, |r: &FrameRow| r.available_us),
        col(rows, |r: &FrameRow| r.glass_to_hls_ms),
        col(rows, |r: &FrameRow| r.encode_ms),
        col(rows, |r: &FrameRow| r.publish_ms),
        col(rows, |r: &FrameRow| r.origin_delivery_ms),
        col(rows, |r: &FrameRow| r.uncertainty_ms),
        col(rows, |r: &FrameRow| r.by_fingerprint),
    ];
    (
        unnest_insert(
            "frames",
            sql::FRAME_COLUMNS,
            &types,
            "ON CONFLICT DO NOTHING",
        ),
        params,
    )
}

fn viewers_insert(rows: &[&ViewerRow]) -> (String, Vec<Param>) {
    let types = [
        "text", "text", "text", "int8", "int8", "float8", "float8", "float8", "int8", "float8",
    ];
    let params: Vec<Param> = vec![
        col(rows, |r: &ViewerRow| r.device.clone()),
        col(rows, |r: &ViewerRow| r.stream.clone()),
        col(rows, |r: &ViewerRow| r.viewer.clone()),
        col(rows, |r: &ViewerRow| r.start_us),
        col(rows, |r: &ViewerRow| r.frames),
        col(rows, |r: &ViewerRow| r.p50_ms),
        col(rows, |r: &ViewerRow| r.p95_ms),
        col(rows, |r: &ViewerRow| r.buffer_ms),
        col(rows, |r: &ViewerRow| r.stalls),
        col(rows, |r: &ViewerRow| r.uncertainty_ms),
    ];
    (
        unnest_insert(
            "viewer_seconds",
            sql::VIEWER_COLUMNS,
            &types,
            "ON CONFLICT DO NOTHING",
        ),
        params,
    )
}

fn rollups_upsert(table: &str, rows: &[&RollupRow]) -> (String, Vec<Param>) {
    let types = [
        "text", "text", "int8", "int8", "int8", "int8", "float8", "float8", "float8", "float8",
        "float8", "float8", "float8", "float8", "float8", "bytea",
    ];
    let params: Vec<Param> = vec![
        col(rows, |r: &RollupRow| r.device.clone()),
        col(rows, |r: &RollupRow| r.stream.clone()),
        col(rows, |r: &RollupRow| r.start_us),
        col(rows, |r: &RollupRow| r.seconds),
        col(rows, |r: &RollupRow| r.frames),
        col(rows, |r: &RollupRow| r.dropped),
        col(rows, |r: &RollupRow| r.p50_ms),
        col(rows, |r: &RollupRow| r.p95_ms),
        col(rows, |r: &RollupRow| r.p99_ms),
        col(rows, |r: &RollupRow| r.max_ms),
        col(rows, |r: &RollupRow| r.receiver_fps),
        col(rows, |r: &RollupRow| r.publisher_fps),
        col(rows, |r: &RollupRow| r.encode_ms),
        col(rows, |r: &RollupRow| r.publish_ms),
        col(rows, |r: &RollupRow| r.origin_delivery_ms),
        col(rows, |r: &RollupRow| r.hist.clone()),
    ];
    (
        unnest_insert(table, sql::ROLLUP_COLUMNS, &types, &sql::rollup_conflict()),
        params,
    )
}
