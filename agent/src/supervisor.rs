//! One task per stream that keeps its pipeline running.
//!
//! The supervisor plans (resolves the source, probes the camera, chooses the
//! encoder), builds and starts the pipeline, then watches its bus. Any
//! failure — the RTSP server absent or restarted, the camera missing or
//! unplugged, a stall with no frame reaching the RTSP sink — ends that
//! pipeline; the supervisor logs why, waits with capped exponential backoff
//! and starts a fresh one (a new session, `seq` from 0). It never exits on
//! its own: only the shutdown signal stops it. Its `select!` loop is the one
//! place that owns the pipeline.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use tokio::sync::watch;

use glasswatch_common::messages::StreamInfo;

use crate::config::{Retry, Source, StreamConfig};
use crate::pipeline::{self, Capture, Plan};
use crate::probe;
use crate::record::{session_hex, RecordSink};
use crate::select::{self, Decode, EncoderAvailability, EncoderChoice, EncoderKind};
use crate::state::{wall_us, Backoff, Phase, StreamState};

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("camera {0} is not present")]
    CameraAbsent(PathBuf),
    #[error("camera {path} cannot be used: {why}")]
    CameraUnusable { path: PathBuf, why: String },
    #[error(transparent)]
    NoEncoder(#[from] select::NoEncoder),
}

/// Decides the source and encoder for one start of the pipeline.
pub fn plan(
    device_id: &str,
    stream: &StreamConfig,
    avail: &EncoderAvailability,
) -> Result<Plan, PlanError> {
    let device = match &stream.source {
        Source::Test => None,
        Source::Auto => Some(PathBuf::from("/dev/video0")).filter(|p| p.exists()),
        Source::V4l2(p) => Some(p.clone()),
    };
    let capture = match device {
        None => Capture::Test,
        Some(path) => {
            if !path.exists() {
                return Err(PlanError::CameraAbsent(path));
            }
            let caps = probe::probe_device(&path)
                .map_err(|e| PlanError::CameraUnusable {
                    path: path.clone(),
                    why: e.to_string(),
                })?
                .ok_or_else(|| PlanError::CameraUnusable {
                    path: path.clone(),
                    why: "not a V4L2 capture device".into(),
                })?;
            let choice = select::choose_capture(
                &caps,
                stream.width.get(),
                stream.height.get(),
                stream.fps.get(),
                avail,
            )
            .map_err(|e| PlanError::CameraUnusable {
                path: path.clone(),
                why: e.0,
            })?;
            Capture::V4l2 {
                device: path.display().to_string(),
                choice,
            }
        }
    };
    let encoder = match &capture {
        Capture::V4l2 { choice, .. } if choice.decode == Decode::Passthrough => EncoderChoice {
            kind: EncoderKind::Camera,
            element: "none".into(),
            reason: "the camera's own H.264 is sent as is".into(),
        },
        _ => select::choose_encoder(stream.encoder, avail)?,
    };
    Ok(Plan {
        device_id: device_id.to_owned(),
        publish_url: stream.publish_url(device_id),
        stream: stream.clone(),
        capture,
        encoder,
    })
}

/// How a running pipeline ended.
enum Outcome {
    Shutdown,
    Failed(String),
}

/// Everything one stream's supervisor needs.
pub struct Supervisor {
    pub device_id: String,
    pub stream: StreamConfig,
    pub retry: Retry,
    pub avail: EncoderAvailability,
    pub records: RecordSink,
    pub state: Arc<StreamState>,
}

impl Supervisor {
    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(&self.retry);
        let mut camera_logged = false;
        let id = self.stream.id.as_str().to_owned();
        loop {
            if *shutdown.borrow() {
                break;
            }
            self.state.beat();
            let reason = match plan(&self.device_id, &self.stream, &self.avail) {
                Err(PlanError::CameraAbsent(path)) => {
                    if !camera_logged {
                        tracing::warn!(stream = %id, camera = %path.display(), "camera not present; waiting for it");
                        camera_logged = true;
                    }
                    self.state.set(Phase::WaitingForCamera(path.clone()));
                    self.state.attempted.store(true, Ordering::Relaxed);
                    let wait = backoff.next_wait();
                    if sleep_or_shutdown(&self.state, wait, &mut shutdown).await {
                        break;
                    }
                    continue;
                }
                Err(e) => format!("{e}"),
                Ok(plan) => {
                    camera_logged = false;
                    let started = wall_us();
                    match self.run_pipeline(&plan, &mut shutdown).await {
                        Outcome::Shutdown => break,
                        Outcome::Failed(reason) => {
                            // A pipeline that ran for a while earns a fresh backoff.
                            if wall_us() - started > 10_000_000 {
                                backoff.reset();
                            }
                            reason
                        }
                    }
                }
            };
            self.state.attempted.store(true, Ordering::Relaxed);
            let wait = backoff.next_wait();
            tracing::warn!(stream = %id, retry_in_ms = wait, "{reason}");
            self.state.set(Phase::Retrying {
                reason,
                in_ms: wait,
            });
            if sleep_or_shutdown(&self.state, wait, &mut shutdown).await {
                break;
            }
        }
        self.state.set(Phase::Stopped);
        let c = &self.state.counters;
        tracing::info!(
            stream = %id,
            stamped = c.stamped.load(Ordering::Relaxed),
            sent = c.sent.load(Ordering::Relaxed),
            dropped_before_send = c.dropped_before_send.load(Ordering::Relaxed),
            unstamped = c.unstamped.load(Ordering::Relaxed),
            probe_busy = c.probe_busy.load(Ordering::Relaxed),
            stamper_mean_us = format!("{:.1}", c.mean_stamp_us()),
            "stopped"
        );
    }

    async fn run_pipeline(&self, plan: &Plan, shutdown: &mut watch::Receiver<bool>) -> Outcome {
        let id = self.stream.id.as_str();
        let session = getrandom::u64().unwrap_or_else(|_| wall_us() as u64);
        let (w, h, fps) = plan.geometry();
        self.state.set_info(StreamInfo {
            id: id.to_owned(),
            rtsp_url: plan.publish_url.clone(),
            hls_url: plan.stream.hls_url(&plan.device_id),
            width: w,
            height: h,
            fps,
            encoder: plan.encoder.element.clone(),
            hardware: plan.encoder.kind.is_hardware(),
        });
        let pipeline = match pipeline::build(
            plan,
            session,
            self.records.clone(),
            self.state.counters.clone(),
        ) {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(format!("cannot build the pipeline: {e}")),
        };
        tracing::info!(
            stream = id,
            session = %session_hex(session),
            url = %plan.publish_url,
            encoder = %plan.encoder.element,
            hardware = plan.encoder.kind.is_hardware(),
            hls = %plan.stream.hls_url(&plan.device_id),
            "starting pipeline {w}x{h}@{fps}: {}",
            plan.encoder.reason
        );
        let Some(bus) = pipeline.bus() else {
            return Outcome::Failed("pipeline has no bus".into());
        };
        let mut messages = bus.stream();
        let outcome = if let Err(e) = pipeline.set_state(gst::State::Playing) {
            // The reason is on the bus; take it from there if it is already posted.
            let detail = bus
                .pop_filtered(&[gst::MessageType::Error])
                .map(|m| describe(&m))
                .unwrap_or_else(|| e.to_string());
            Outcome::Failed(format!("cannot start: {detail}"))
        } else {
            self.watch(plan, &mut messages, shutdown).await
        };
        stop_pipeline(pipeline).await;
        outcome
    }

    async fn watch(
        &self,
        plan: &Plan,
        messages: &mut gst::bus::BusStream,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let id = self.stream.id.as_str();
        let stall_us = i64::from(self.retry.stall_ms.get()) * 1000;
        let started = wall_us();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut publishing = false;
        loop {
            tokio::select! {
                // The shutdown flag flipped (or its sender is gone): stop now.
                _ = shutdown.changed() => return Outcome::Shutdown,
                // Every bus message: errors end the pipeline, state changes update the phase.
                msg = messages.next() => {
                    let Some(msg) = msg else { return Outcome::Failed("bus closed".into()) };
                    match msg.view() {
                        gst::MessageView::Error(_) => return Outcome::Failed(describe(&msg)),
                        gst::MessageView::Eos(_) => return Outcome::Failed("end of stream".into()),
                        gst::MessageView::Warning(w) => {
                            tracing::warn!(stream = id, element = %src_path(&msg), "{} ({})", w.error(), w.debug().unwrap_or_default());
                        }
                        _ => {}
                    }
                }
                // Twice a second: heartbeat, and the stall check once frames should flow.
                _ = tick.tick() => {
                    self.state.beat();
                    let last = i64::try_from(self.state.counters.last_sent_us.load(Ordering::Relaxed)).unwrap_or(0);
                    let last_activity = last.max(started);
                    if !publishing && last > started {
                        publishing = true;
                        self.state.attempted.store(true, Ordering::Relaxed);
                        self.state.set(Phase::Publishing { encoder: plan.encoder.element.clone(), url: plan.publish_url.clone() });
                        tracing::info!(stream = id, url = %plan.publish_url, "publishing");
                    }
                    if wall_us() - last_activity > stall_us {
                        let what = if publishing { "stalled" } else { "never started" };
                        return Outcome::Failed(format!(
                            "pipeline {what}: no frame reached the RTSP sink for {} ms (is the RTSP server at {} up?)",
                            self.retry.stall_ms.get(), plan.publish_url
                        ));
                    }
                }
            }
        }
    }
}

/// Sleeps `ms` unless shutdown comes first; returns true on shutdown.
async fn sleep_or_shutdown(
    state: &StreamState,
    ms: u64,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    loop {
        state.beat();
        let step = (deadline - tokio::time::Instant::now()).min(Duration::from_millis(500));
        if step.is_zero() {
            return false;
        }
        tokio::select! {
            _ = shutdown.changed() => return true,
            _ = tokio::time::sleep(step) => {}
        }
    }
}

/// Sets the pipeline to NULL off the async threads, giving up after 1.5 s
/// (an unresponsive RTSP server must not hold up a restart or a shutdown).
async fn stop_pipeline(pipeline: gst::Pipeline) {
    let task = tokio::task::spawn_blocking(move || {
        let _ = pipeline.set_state(gst::State::Null);
    });
    if tokio::time::timeout(Duration::from_millis(1500), task)
        .await
        .is_err()
    {
        tracing::warn!("pipeline did not stop within 1.5 s; abandoning it");
    }
}

fn src_path(msg: &gst::Message) -> String {
    msg.src()
        .map(|s| s.path_string().to_string())
        .unwrap_or_else(|| "?".into())
}

/// An error message with the element path, the GLib error and the debug string.
fn describe(msg: &gst::Message) -> String {
    match msg.view() {
        gst::MessageView::Error(e) => format!(
            "{}: {} ({})",
            src_path(msg),
            e.error(),
            e.debug().unwrap_or_default()
        ),
        _ => format!("{}: {:?}", src_path(msg), msg.type_()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Bounded;
    use std::path::Path;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let retry = Retry {
            initial_ms: Bounded(500),
            max_ms: Bounded(3000),
            stall_ms: Bounded(5000),
        };
        let mut b = Backoff::new(&retry);
        let seq: Vec<u64> = (0..6).map(|_| b.next_wait()).collect();
        assert_eq!(seq, vec![500, 1000, 2000, 3000, 3000, 3000]);
        b.reset();
        assert_eq!(b.next_wait(), 500);
    }

    #[test]
    fn absent_camera_is_not_a_config_error_but_a_wait() {
        let cfg = crate::config::Config::parse(
            "device_id = \"d\"\n[[stream]]\nid = \"c\"\nsource = \"/dev/video-glasswatch-absent\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let s = cfg.streams().next().unwrap();
        let avail = EncoderAvailability {
            x264: true,
            ..Default::default()
        };
        match plan("d", s, &avail) {
            Err(PlanError::CameraAbsent(p)) => {
                assert_eq!(p, PathBuf::from("/dev/video-glasswatch-absent"))
            }
            other => panic!("expected CameraAbsent, got {other:?}"),
        }
    }

    #[test]
    fn test_source_plans_the_software_encoder() {
        let cfg = crate::config::Config::parse(
            "device_id = \"d\"\n[[stream]]\nid = \"c\"\nsource = \"test\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let s = cfg.streams().next().unwrap();
        let avail = EncoderAvailability {
            x264: true,
            ..Default::default()
        };
        let p = plan("d", s, &avail).unwrap();
        assert!(matches!(p.capture, Capture::Test));
        assert_eq!(p.encoder.kind, EncoderKind::X264);
        assert_eq!(p.publish_url, "rtsp://127.0.0.1:8554/d-c");
    }
}
