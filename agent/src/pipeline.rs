//! Building one stream's GStreamer pipeline in code, with named elements.
//!
//! ```text
//!  videotestsrc ─┐                                            stamp probe        sent probe
//!  (or v4l2src → capsfilter → [jpeg decoder])                      │                  │
//!               └→ capsfilter → [textoverlay] → videoconvert → capsfilter(I420|NV12)
//!                  → encoder → h264parse(config-interval=-1) → capsfilter(byte-stream, au)
//!                  → queue(leaky) → rtspclientsink(TCP)
//! ```
//!
//! Nothing from the user is pasted into a launch string: every element is
//! made by factory name and configured through typed properties. The camera's
//! own H.264 skips the overlay and the encoder. Two pad probes do the work
//! the issue asks of the stamper: after `h264parse` (access-unit aligned
//! byte-stream) each access unit gets its SEI stamp (see `stamp`), and at the
//! RTSP sink's input the record is completed with `sent_us` and handed on.
//! Capture time mapping is in [`CaptureClock`]; `docs/design/time.md` explains it.
//!
//! The probes run on the streaming threads, in the path of every frame, so
//! they neither lock nor allocate (see [`Pending`] for the hand-offs between
//! them, [`ProbeState`] for what each keeps, `stamp_buffer` for the buffer it
//! makes).
//!
//! No element holds a frame longer than its work needs: no queue but the
//! leaky send queue (which holds frames only while the network blocks), the
//! encoders configured without lookahead or B-frames (see
//! `configure_encoder`), access-unit aligned caps into `h264parse` so it never
//! waits for the next access unit, and the sinks inside `rtspclientsink`
//! without clock sync (see `send_without_clock_wait`).

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use atomic_refcell::AtomicRefCell;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use heapless::mpmc::MpMcQueue;

use crate::config::{StreamConfig, Transport};
use crate::record::{FrameInfo, RecordSink};
use crate::select::{CaptureChoice, Decode, EncoderChoice, EncoderKind};
use crate::stamp::Stamper;
use crate::state::{wall_us, StreamCounters};

/// A pipeline could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("GStreamer element `{factory}` is missing: {hint}")]
    MissingElement { factory: String, hint: &'static str },
    #[error("cannot link {from} → {to}: {source}")]
    Link {
        from: String,
        to: String,
        #[source]
        source: glib::BoolError,
    },
    #[error("pipeline: {0}")]
    Other(String),
}

/// Where frames come from, resolved for this start of the pipeline.
#[derive(Debug, Clone)]
pub enum Capture {
    /// The moving test pattern.
    Test,
    /// A V4L2 device with the chosen format.
    V4l2 {
        device: String,
        choice: CaptureChoice,
    },
}

/// Everything decided before building: the stream, where it captures from,
/// and the encoder (None for the camera's own H.264).
#[derive(Debug, Clone)]
pub struct Plan {
    pub device_id: String,
    pub stream: StreamConfig,
    pub publish_url: String,
    pub capture: Capture,
    pub encoder: EncoderChoice,
}

impl Plan {
    /// Size and rate actually produced.
    pub fn geometry(&self) -> (u32, u32, u32) {
        match &self.capture {
            Capture::Test => (
                self.stream.width.get(),
                self.stream.height.get(),
                self.stream.fps.get(),
            ),
            Capture::V4l2 { choice, .. } => (choice.width, choice.height, choice.fps),
        }
    }
}

/// Maps a buffer's PTS, as running time, to UTC microseconds.
///
/// The pipeline runs on GStreamer's monotonic system clock. A buffer's
/// capture instant on that clock is `base_time + running_time(pts)`, so its
/// age is `clock.time() − (base_time + running_time)`; its capture time in UTC is the wall
/// clock now minus that age. Measuring the age on the monotonic clock keeps
/// NTP steps out of the mapping: a step moves `capture_us` exactly as it
/// moves the wall clock, never by a mix of both.
#[derive(Debug, Clone, Copy)]
pub struct CaptureClock;

impl CaptureClock {
    /// UTC µs of `running_time` for `element`'s pipeline; the wall clock
    /// now when the element has no clock yet or the buffer has no PTS.
    pub fn capture_us(element: &gst::Element, running_time: Option<gst::ClockTime>) -> i64 {
        let now = wall_us();
        let (Some(clock), Some(base), Some(rt)) =
            (element.clock(), element.base_time(), running_time)
        else {
            return now;
        };
        let clock_now = clock.time();
        let captured = base.nseconds().saturating_add(rt.nseconds());
        let age_ns = i128::from(clock_now.nseconds()) - i128::from(captured);
        now - i64::try_from(age_ns / 1000).unwrap_or(0)
    }
}

/// The running time of `pts` in the segment flowing through `pad`.
///
/// PTS are stream times: encoders may shift them (x264enc adds 1000 hours
/// and moves the segment start with it), so only the segment turns them
/// back into running time on the pipeline clock.
pub fn running_time(pad: &gst::Pad, pts: Option<gst::ClockTime>) -> Option<gst::ClockTime> {
    let pts = pts?;
    let event = pad.sticky_event::<gst::event::Segment>(0)?;
    let segment = event.segment().downcast_ref::<gst::ClockTime>()?;
    segment.to_running_time(pts)
}

/// Formats UTC µs as `hh:mm:ss.mmm`, in place (the overlay probe draws it
/// on every frame).
pub fn clock_text(us: i64) -> heapless::String<12> {
    use std::fmt::Write as _;
    let ms = us.div_euclid(1000);
    let day_ms = ms.rem_euclid(86_400_000);
    let mut text = heapless::String::new();
    // Always 12 characters: the hour is below 24.
    let _ = write!(
        text,
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    );
    text
}

fn make(factory: &str, name: &str) -> Result<gst::Element, BuildError> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|_| BuildError::MissingElement {
            factory: factory.to_owned(),
            hint: install_hint(factory),
        })
}

fn install_hint(factory: &str) -> &'static str {
    match factory {
        "x264enc" => "install gstreamer1.0-plugins-ugly",
        "openh264enc" | "vah264enc" | "vajpegdec" => "install gstreamer1.0-plugins-bad",
        "rtspclientsink" => "install gstreamer1.0-rtsp",
        "v4l2src" | "v4l2h264enc" | "v4l2jpegdec" | "jpegdec" => {
            "install gstreamer1.0-plugins-good"
        }
        "vaapih264enc" | "vaapijpegdec" => "install gstreamer1.0-vaapi",
        _ => "install gstreamer1.0-plugins-base and gstreamer1.0-plugins-good",
    }
}

/// Sets a property by its string form if the element has it, so that the
/// differences between encoder versions never panic. Returns whether it was set.
fn set_str(element: &gst::Element, name: &str, value: &str) -> bool {
    let Some(pspec) = element.find_property(name) else {
        tracing::debug!(element = %element.name(), property = name, "property not present, left as is");
        return false;
    };
    match glib::Value::deserialize(value, pspec.value_type()) {
        Ok(v) => {
            element.set_property_from_value(name, &v);
            true
        }
        Err(_) => {
            tracing::warn!(element = %element.name(), property = name, value, "value not accepted, left as is");
            false
        }
    }
}

fn capsfilter(name: &str, caps: gst::Caps) -> Result<gst::Element, BuildError> {
    let f = make("capsfilter", name)?;
    f.set_property("caps", &caps);
    Ok(f)
}

fn link_chain(chain: &[&gst::Element]) -> Result<(), BuildError> {
    for pair in chain.windows(2) {
        pair[0].link(pair[1]).map_err(|e| BuildError::Link {
            from: pair[0].name().to_string(),
            to: pair[1].name().to_string(),
            source: glib::bool_error!("{e}"),
        })?;
    }
    Ok(())
}

/// Configures the encoder for low latency with the stream's GOP and bitrate.
fn configure_encoder(enc: &gst::Element, kind: EncoderKind, gop: u32, kbps: u32) {
    match kind {
        EncoderKind::X264 => {
            // `tune=zerolatency`: no lookahead (rc and sync), no B-frames,
            // sliced threads, so x264 holds no frame (it reports 0 frames of
            // latency); its VBV (600 ms) shapes sizes, it holds nothing.
            set_str(enc, "tune", "zerolatency");
            set_str(enc, "speed-preset", "ultrafast");
            set_str(enc, "key-int-max", &gop.to_string());
            set_str(enc, "bitrate", &kbps.to_string());
            set_str(enc, "bframes", "0");
            set_str(enc, "b-adapt", "false");
        }
        EncoderKind::OpenH264 => {
            // OpenH264 codes each frame in the call that receives it (no
            // lookahead, no B-frames in its baseline profile); frame skipping
            // stays off (the default) so the rate control drops nothing.
            set_str(enc, "gop-size", &gop.to_string());
            set_str(enc, "bitrate", &(u64::from(kbps) * 1000).to_string());
            set_str(enc, "rate-control", "bitrate");
            set_str(enc, "complexity", "low");
        }
        EncoderKind::V4l2 => {
            // V4L2 M2M controls. `video_b_frames=0`: a B-frame makes the
            // encoder hold the frames before it until the next P-frame is
            // coded (one frame interval per B-frame); some drivers default to
            // B-frames where the hardware has them. `h264_i_frame_period`: our
            // GOP, so parts and segments can start where the origin wants.
            // `repeat_sequence_header=1`: SPS/PPS with every IDR, so a reader
            // joining mid-stream does not wait a GOP. A control the driver does
            // not know is skipped by v4l2h264enc with a warning.
            let controls = format!(
                "controls,h264_i_frame_period={gop},video_b_frames=0,video_bitrate={},\
                 repeat_sequence_header=1",
                u64::from(kbps) * 1000
            );
            set_str(enc, "extra-controls", &controls);
        }
        EncoderKind::Vaapi => {
            // Both VA-API elements (`vaapih264enc`, `vah264enc`): each sets
            // the properties it has. No B-frames (`max-bframes`, `b-frames`):
            // reordering holds frames. Constant bitrate with a coded picture
            // buffer of 600 ms (`cpb-length` in ms for vaapih264enc, default
            // 1500; `cpb-size` in kbit for vah264enc): the CPB bounds how far
            // a frame (a keyframe, mostly) may exceed the average size, which
            // on an uplink close to the bitrate is the queueing delay it adds
            // on the wire; 600 ms is the bound x264enc's VBV has here
            // (`vbv-buf-capacity` default), so both paths burst alike.
            set_str(enc, "key-int-max", &gop.to_string());
            set_str(enc, "keyframe-period", &gop.to_string());
            set_str(enc, "bitrate", &kbps.to_string());
            set_str(enc, "rate-control", "cbr");
            set_str(enc, "b-frames", "0");
            set_str(enc, "max-bframes", "0");
            set_str(enc, "cpb-length", "600");
            set_str(enc, "cpb-size", &(u64::from(kbps) * 600 / 1000).to_string());
        }
        EncoderKind::Camera => {}
    }
}

/// A stamped access unit's record waiting for its `sent_us`, under the PTS
/// the access unit carries.
type PendingRecord = (Option<gst::ClockTime>, FrameInfo);

/// What the probes hand each other across streaming threads, in bounded
/// lock-free queues (`heapless::mpmc::MpMcQueue`, capacity fixed when
/// building, allocated once per pipeline): pushing and popping never locks,
/// never allocates, never waits. Each queue has one producing probe and one
/// consuming probe; the consumer's look at the front is its own [`Front`].
struct Pending {
    /// Stamped records, from the stamp probe (after `h264parse`) to the sent
    /// probe (at the RTSP sink's input). A full queue refuses the newest
    /// record, counted in `records_lost`; its access unit still goes out.
    queue: MpMcQueue<PendingRecord, PENDING_RECORDS>,
    /// Running times of frames that entered the encoder and have not come
    /// out, from the encoder's sink pad to the stamp probe.
    encoder_in: MpMcQueue<gst::ClockTime, MAX_ENCODER_IN>,
}

/// Records between the stamp probe and the sent probe: the leaky send queue
/// holds up to 2 s of access units, 480 at the highest rate a stream may
/// have (240 fps); the next power of two.
const PENDING_RECORDS: usize = 512;

/// Frames inside the encoder we keep track of; beyond this the oldest are
/// forgotten, uncounted (an encoder holding 256 frames has stalled; a frame
/// it drops among the forgotten goes uncounted).
const MAX_ENCODER_IN: usize = 256;

/// The consuming side's look at the front of a queue that can only pop:
/// the entry popped but not matched yet waits here, ahead of the queue.
/// Owned by the consuming probe (in its [`ProbeState`]).
struct Front<T>(Option<T>);

impl<T> Front<T> {
    fn new() -> Front<T> {
        Front(None)
    }

    /// The oldest entry, popped into the slot if the slot was empty.
    fn peek<const N: usize>(&mut self, queue: &MpMcQueue<T, N>) -> Option<&T> {
        if self.0.is_none() {
            self.0 = queue.dequeue();
        }
        self.0.as_ref()
    }

    /// Takes the oldest entry.
    fn pop<const N: usize>(&mut self, queue: &MpMcQueue<T, N>) -> Option<T> {
        self.0.take().or_else(|| queue.dequeue())
    }
}

/// State only one probe uses. A pad's buffers pass its probe one streaming
/// thread at a time (the pad's stream lock), but the probe closure must be
/// `Sync`: the state is in an `AtomicRefCell`, borrowed with
/// `try_borrow_mut`, one atomic swap that never blocks. Were it ever busy,
/// the buffer passes untouched and `probe_busy` counts it.
struct ProbeState<T>(AtomicRefCell<T>);

impl<T> ProbeState<T> {
    fn new(state: T) -> ProbeState<T> {
        ProbeState(AtomicRefCell::new(state))
    }

    /// Runs `f` on the state, unless another thread holds it.
    fn with(&self, counters: &StreamCounters, f: impl FnOnce(&mut T)) {
        match self.0.try_borrow_mut() {
            Ok(mut state) => f(&mut state),
            Err(_) => {
                counters.probe_busy.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Builds the pipeline for `plan`. `session` identifies this pipeline start.
pub fn build(
    plan: &Plan,
    session: u64,
    records: RecordSink,
    counters: Arc<StreamCounters>,
) -> Result<gst::Pipeline, BuildError> {
    let s = &plan.stream;
    let (width, height, fps) = plan.geometry();
    let pipeline = gst::Pipeline::with_name(&format!("{}-{}", plan.device_id, s.id));
    // The capture-time mapping needs the pipeline clock to be the monotonic
    // system clock (CLOCK_MONOTONIC, the driver's timestamp clock): never a
    // clock some element might offer.
    pipeline.use_clock(Some(&gst::SystemClock::obtain()));

    // Source and raw caps.
    let mut chain: Vec<gst::Element> = Vec::new();
    let passthrough = matches!(
        &plan.capture,
        Capture::V4l2 { choice, .. } if choice.decode == Decode::Passthrough
    );
    match &plan.capture {
        Capture::Test => {
            let src = make("videotestsrc", "src")?;
            set_str(&src, "is-live", "true");
            set_str(&src, "pattern", "ball");
            chain.push(src);
            chain.push(capsfilter(
                "src_caps",
                gst::Caps::builder("video/x-raw")
                    .field("format", "I420")
                    .field("width", width as i32)
                    .field("height", height as i32)
                    .field("framerate", gst::Fraction::new(fps as i32, 1))
                    .build(),
            )?);
        }
        Capture::V4l2 { device, choice } => {
            let src = make("v4l2src", "src")?;
            src.set_property("device", device);
            // Buffer PTS from the driver's timestamp (see docs/design/time.md):
            // with io-mode `auto` v4l2src streams (mmap or dmabuf), and each
            // dequeued `v4l2_buffer` carries the driver's CLOCK_MONOTONIC
            // stamp, which v4l2src turns into running time. `do-timestamp`
            // would put the time GStreamer handed the buffer on instead; it is
            // off by default and kept off here on purpose.
            set_str(&src, "do-timestamp", "false");
            chain.push(src);
            let (media, format) = choice.format.gst_caps().ok_or_else(|| {
                BuildError::Other(format!("capture format {} is not usable", choice.format))
            })?;
            let mut caps = gst::Caps::builder(media)
                .field("width", choice.width as i32)
                .field("height", choice.height as i32)
                .field("framerate", gst::Fraction::new(choice.fps as i32, 1));
            if let Some(f) = format {
                caps = caps.field("format", f);
            }
            if passthrough {
                // Whole access units from the camera (v4l2src offers only
                // these), so h264parse never waits for the next one to know
                // where this one ends.
                caps = caps
                    .field("stream-format", "byte-stream")
                    .field("alignment", "au");
            }
            chain.push(capsfilter("src_caps", caps.build())?);
            if let Decode::Jpeg { element, .. } = &choice.decode {
                chain.push(make("jpegparse", "jpegparse")?);
                chain.push(make(element, "jpegdec")?);
            }
        }
    }

    if !passthrough {
        chain.push(make("videoconvert", "convert")?);
        let raw_format = match plan.encoder.kind {
            EncoderKind::Vaapi | EncoderKind::V4l2 => "NV12",
            _ => "I420",
        };
        let enc_in = capsfilter(
            "enc_in_caps",
            gst::Caps::builder("video/x-raw")
                .field("format", raw_format)
                .build(),
        )?;
        if s.overlay {
            add_overlay_probe(&enc_in, counters.clone())?;
        }
        chain.push(enc_in);
        let enc = make(&plan.encoder.element, "encoder")?;
        configure_encoder(&enc, plan.encoder.kind, s.gop.get(), s.bitrate_kbps.get());
        chain.push(enc);
        // Access-unit aligned output (what every encoder we use produces), so
        // h264parse passes each access unit on as it arrives instead of
        // waiting for the start of the next one.
        let mut out_caps = gst::Caps::builder("video/x-h264")
            .field("stream-format", "byte-stream")
            .field("alignment", "au");
        if plan.encoder.kind == EncoderKind::V4l2 {
            // The Raspberry Pi's encoder refuses to negotiate without a level.
            out_caps = out_caps.field("level", "4");
        }
        chain.push(capsfilter("enc_out_caps", out_caps.build())?);
    }

    let parse = make("h264parse", "parse")?;
    set_str(&parse, "config-interval", "-1");
    chain.push(parse);
    let au_caps = capsfilter(
        "au_caps",
        gst::Caps::builder("video/x-h264")
            .field("stream-format", "byte-stream")
            .field("alignment", "au")
            .build(),
    )?;
    chain.push(au_caps.clone());

    let queue = make("queue", "send_queue")?;
    set_str(&queue, "leaky", "downstream");
    set_str(&queue, "max-size-buffers", "0");
    set_str(&queue, "max-size-bytes", "0");
    set_str(&queue, "max-size-time", "2000000000");
    chain.push(queue.clone());

    let sink = make("rtspclientsink", "sink")?;
    sink.set_property("location", &plan.publish_url);
    set_str(
        &sink,
        "protocols",
        match s.transport {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        },
    );
    set_str(&sink, "latency", "0");
    send_without_clock_wait(&sink);
    chain.push(sink.clone());

    let refs: Vec<&gst::Element> = chain.iter().collect();
    pipeline
        .add_many(&refs)
        .map_err(|e| BuildError::Other(format!("adding elements: {e}")))?;
    link_chain(&refs)?;

    let pending = Arc::new(Pending {
        queue: MpMcQueue::new(),
        encoder_in: MpMcQueue::new(),
    });
    if let Some(src_caps) = pipeline.by_name("src_caps") {
        add_capture_gap_probe(&src_caps, counters.clone());
    }
    if let Some(enc) = pipeline.by_name("encoder") {
        add_encoder_in_probe(&enc, pending.clone());
    }
    add_stamp_probe(
        &au_caps,
        Stamper::new(&plan.device_id, s.id.as_str()),
        pending.clone(),
        counters.clone(),
        session,
    )?;
    let sink_pad = queue
        .static_pad("src")
        .and_then(|p| p.peer())
        .ok_or_else(|| BuildError::Other("rtspclientsink has no linked sink pad".into()))?;
    add_sent_probe(&sink_pad, pending, counters, records);
    Ok(pipeline)
}

/// Makes `rtspclientsink` send each RTP packet as soon as it is made.
///
/// Inside `rtspclientsink`, the RTP packets of a stream go through a sink of
/// its own (an `appsink` for TCP, a `multiudpsink` for UDP) created with
/// `sync=true`: it holds each buffer until `base_time + running_time +
/// latency`, where the latency is the pipeline's reported one (the source's
/// frame, 33.3 ms at 30 fps, plus the sink's 20 ms `processing-deadline`).
/// A frame that reaches it 35 ms after its capture (a live source hands a
/// frame on when it is complete, then encoding) therefore waited another
/// 18 ms there, on every frame: the constant `sent_us − encoded_us` of issue 12.
///
/// Nothing needs that wait. The live source already paces the stream (one
/// frame per frame interval, on the capture clock); RTP timestamps come from
/// the PTS, not from the time of sending; the leaky `send_queue` still
/// absorbs a stalled network, since a blocked TCP write blocks the sink the
/// same way. So every sink inside gets `sync=false` (the RTCP ones already
/// have it), and the RTP session maps RTP to NTP time in its sender reports
/// by capture time (`rtcp-sync-send-time=false`) instead of by
/// "running time + latency", which would now be later than the real sending.
fn send_without_clock_wait(sink: &gst::Element) {
    let Some(bin) = sink.downcast_ref::<gst::Bin>() else {
        tracing::warn!("rtspclientsink is not a bin; its sending sink keeps clock sync");
        return;
    };
    bin.connect_deep_element_added(|_, _, element| {
        if element.element_flags().contains(gst::ElementFlags::SINK) {
            set_str(element, "sync", "false");
        }
    });
    sink.connect("new-manager", false, |args| {
        if let Some(Ok(manager)) = args.get(1).map(|v| v.get::<gst::Element>()) {
            set_str(&manager, "rtcp-sync-send-time", "false");
        }
        None
    });
}

/// Burns `PUB hh:mm:ss.mmm` (the frame's capture time, UTC) into each raw
/// frame on its way to the encoder (see `overlay`).
fn add_overlay_probe(
    element: &gst::Element,
    counters: Arc<StreamCounters>,
) -> Result<(), BuildError> {
    let pad = element
        .static_pad("src")
        .ok_or_else(|| BuildError::Other("enc_in_caps has no src pad".into()))?;
    let weak = element.downgrade();
    // The frame layout of the current caps, worked out again when they change.
    let info_cache = ProbeState::new(None::<(gst::Caps, gst_video::VideoInfo)>);
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(element) = weak.upgrade() else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(caps) = pad.current_caps() else {
            return gst::PadProbeReturn::Ok;
        };
        info_cache.with(&counters, |cache| {
            if cache.as_ref().is_none_or(|(c, _)| *c != caps) {
                *cache = gst_video::VideoInfo::from_caps(&caps)
                    .ok()
                    .map(|i| (caps, i));
            }
            let Some((_, vinfo)) = cache.as_ref() else {
                return;
            };
            if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data {
                let us = CaptureClock::capture_us(&element, running_time(pad, buffer.pts()));
                let mut text = heapless::String::<16>::new();
                let _ = text.push_str("PUB ");
                let _ = text.push_str(&clock_text(us));
                draw_clock(buffer.make_mut(), vinfo, &text);
            }
        });
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

/// Draws `text` top left on an I420 or NV12 frame; other formats are left alone.
fn draw_clock(buffer: &mut gst::BufferRef, vinfo: &gst_video::VideoInfo, text: &str) {
    use crate::overlay::{draw, scale_for, Chroma, Frame};
    let chroma = match vinfo.format() {
        gst_video::VideoFormat::I420 => Chroma::Planar,
        gst_video::VideoFormat::Nv12 => Chroma::Interleaved,
        _ => return,
    };
    let Ok(mut frame) = gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, vinfo) else {
        return;
    };
    let (width, height) = (vinfo.width() as usize, vinfo.height() as usize);
    // The frame's own strides (a video meta may differ from the caps' defaults).
    let mut strides = [0usize; 4];
    for (to, from) in strides.iter_mut().zip(frame.plane_stride()) {
        *to = usize::try_from(*from).unwrap_or(0);
    }
    let stride = |i: usize| strides.get(i).copied().unwrap_or(0);
    let [y, u, v, _] = frame.planes_data_mut();
    let mut f = Frame {
        width,
        height,
        y,
        y_stride: stride(0),
        u,
        u_stride: stride(1),
        v,
        v_stride: stride(2),
        chroma,
    };
    let scale = scale_for(height);
    draw(&mut f, text, scale * 2, scale * 2, scale);
}

/// Counts frames the source skipped: its buffers' offsets are frame numbers
/// (the V4L2 driver's sequence for `v4l2src`), so a jump is a capture drop.
fn add_capture_gap_probe(element: &gst::Element, counters: Arc<StreamCounters>) {
    let Some(pad) = element.static_pad("src") else {
        return;
    };
    // The last offset seen; `OFFSET_NONE` (a buffer without one) until the first.
    let last = AtomicU64::new(OFFSET_NONE);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buffer) = info.buffer() {
            let offset = buffer.offset();
            if offset != OFFSET_NONE {
                let prev = last.swap(offset, Ordering::Relaxed);
                if prev != OFFSET_NONE && offset > prev.saturating_add(1) {
                    counters
                        .dropped_capture
                        .fetch_add(offset - prev - 1, Ordering::Relaxed);
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// `GST_BUFFER_OFFSET_NONE`.
const OFFSET_NONE: u64 = u64::MAX;

/// Remembers each frame entering the encoder, so the stamp probe can count
/// the ones that never came out.
fn add_encoder_in_probe(encoder: &gst::Element, pending: Arc<Pending>) {
    let Some(pad) = encoder.static_pad("sink") else {
        return;
    };
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        if let Some(rt) = info.buffer().and_then(|b| running_time(pad, b.pts())) {
            if let Err(rt) = pending.encoder_in.enqueue(rt) {
                // Full: forget the oldest. This probe is the only producer,
                // so the second try finds room.
                let _ = pending.encoder_in.dequeue();
                let _ = pending.encoder_in.enqueue(rt);
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// Stamps every access unit leaving `element`'s src pad.
fn add_stamp_probe(
    element: &gst::Element,
    stamper: Stamper,
    pending: Arc<Pending>,
    counters: Arc<StreamCounters>,
    session: u64,
) -> Result<(), BuildError> {
    let pad = element
        .static_pad("src")
        .ok_or_else(|| BuildError::Other("au_caps has no src pad".into()))?;
    let weak = element.downgrade();
    let state = ProbeState::new(StampState {
        stamper,
        encoder_out: Front::new(),
    });
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |pad, info| {
            let Some(element) = weak.upgrade() else {
                return gst::PadProbeReturn::Ok;
            };
            let outputs = StampOutputs {
                pending: &pending,
                counters: &counters,
                session,
            };
            state.with(&counters, |state| {
                let mut stamp_one = |buffer: &gst::Buffer| -> Option<gst::Buffer> {
                    let rt = running_time(pad, buffer.pts());
                    stamp_buffer(&element, buffer, rt, state, &outputs)
                };
                match &mut info.data {
                    Some(gst::PadProbeData::Buffer(buffer)) => {
                        if let Some(new) = stamp_one(buffer) {
                            *buffer = new;
                        }
                    }
                    Some(gst::PadProbeData::BufferList(list)) => {
                        // In place: a list is copied only if someone else holds it too.
                        list.make_mut().foreach_mut(|buffer, _| {
                            ControlFlow::Continue(Some(stamp_one(&buffer).unwrap_or(buffer)))
                        });
                    }
                    _ => {}
                }
            });
            gst::PadProbeReturn::Ok
        },
    );
    Ok(())
}

/// What the stamp probe keeps from one access unit to the next.
struct StampState {
    stamper: Stamper,
    /// The stamp probe's look at `Pending::encoder_in`.
    encoder_out: Front<gst::ClockTime>,
}

/// What the stamp probe writes to besides the buffer.
struct StampOutputs<'a> {
    pending: &'a Pending,
    counters: &'a StreamCounters,
    session: u64,
}

/// Stamps one access unit; `None` leaves the buffer as it was.
///
/// The stamped access unit is a new buffer: one on its way downstream is
/// GStreamer's, and the stamp makes it longer. It is written once, the frame
/// copied around the stamp, into a buffer GStreamer allocates
/// (`gst_buffer_new_allocate`: the buffer and one memory of the access
/// unit's size); nothing of ours is allocated or grown per frame.
///
/// Why one memory, and not shares of the original's memory around a small
/// one with the stamp, which would spare this copy: `rtph264pay` (inside
/// `rtspclientsink`) maps each byte-stream access unit whole
/// (`gst_adapter_map`), and mapping a buffer of several memories that are
/// not one span makes GStreamer allocate a memory of the whole size and copy
/// them into it. The copy and its allocation would only move downstream,
/// with three more small allocations (two shares, the stamp's memory).
fn stamp_buffer(
    element: &gst::Element,
    buffer: &gst::Buffer,
    running_time: Option<gst::ClockTime>,
    state: &mut StampState,
    outputs: &StampOutputs<'_>,
) -> Option<gst::Buffer> {
    let StampOutputs {
        pending,
        counters,
        session,
    } = outputs;
    let started = std::time::Instant::now();
    if let Some(rt) = running_time {
        // Frames that entered before this one and never came out were dropped by the encoder.
        let (queue, front) = (&pending.encoder_in, &mut state.encoder_out);
        while front.peek(queue).is_some_and(|f| *f < rt) {
            front.pop(queue);
            counters.dropped_encode.fetch_add(1, Ordering::Relaxed);
        }
        if front.peek(queue) == Some(&rt) {
            front.pop(queue);
        }
    }
    let capture_us = CaptureClock::capture_us(element, running_time);
    let map = buffer.map_readable().ok()?;
    let insertion = match state.stamper.insertion(map.as_slice(), capture_us) {
        Ok(i) => i,
        Err(e) => return count_unstamped(counters, e),
    };
    let inserted = with_inserted(
        buffer,
        map.as_slice(),
        insertion.at,
        state.stamper.stamp_nal(),
    );
    drop(map);
    let out = match inserted {
        Ok(o) => o,
        Err(e) => {
            return count_unstamped(
                counters,
                format_args!("access unit passed on unstamped: {e}"),
            )
        }
    };
    let stamped = insertion.stamped;
    let encoded_us = wall_us();
    counters.stamped.fetch_add(1, Ordering::Relaxed);
    let record = FrameInfo {
        stream: 0,
        session: *session,
        seq: stamped.seq,
        capture_us: stamped.capture_us,
        encoded_us,
        sent_us: 0,
        bytes: stamped.bytes as u64,
        keyframe: stamped.keyframe,
        fingerprint: stamped.fingerprint,
    };
    if pending.queue.enqueue((buffer.pts(), record)).is_err() {
        counters.records_lost.fetch_add(1, Ordering::Relaxed);
    }
    let spent = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    counters.stamp_ns.fetch_add(spent, Ordering::Relaxed);
    Some(out)
}

/// Counts an access unit passed on unstamped, and says why (the first ten
/// times, then at powers of two).
fn count_unstamped(counters: &StreamCounters, why: impl std::fmt::Display) -> Option<gst::Buffer> {
    let n = counters.unstamped.fetch_add(1, Ordering::Relaxed);
    if n < 10 || n.is_power_of_two() {
        tracing::warn!(unstamped = n + 1, "{why}");
    }
    None
}

/// A new buffer with `buffer`'s flags and timestamps (keyframe / delta unit,
/// PTS, DTS, duration, offsets) holding `au` (`buffer`'s bytes) with
/// `insert` inserted at byte `at`, in one memory from GStreamer's allocator.
fn with_inserted(
    buffer: &gst::Buffer,
    au: &[u8],
    at: usize,
    insert: &[u8],
) -> Result<gst::Buffer, glib::BoolError> {
    let (head, tail) = au
        .split_at_checked(at)
        .ok_or_else(|| glib::bool_error!("insertion at {at} beyond {} bytes", au.len()))?;
    let mut out = gst::Buffer::with_size(au.len() + insert.len())?;
    let o = out
        .get_mut()
        .ok_or_else(|| glib::bool_error!("new buffer not writable"))?;
    buffer.copy_into(
        o,
        gst::BufferCopyFlags::FLAGS | gst::BufferCopyFlags::TIMESTAMPS,
        ..,
    )?;
    let mut map = o.map_writable()?;
    let (to_head, rest) = map.split_at_mut(head.len());
    let (to_insert, to_tail) = rest.split_at_mut(insert.len());
    to_head.copy_from_slice(head);
    to_insert.copy_from_slice(insert);
    to_tail.copy_from_slice(tail);
    drop(map);
    Ok(out)
}

/// Completes each record with `sent_us` when its access unit enters the RTSP sink.
fn add_sent_probe(
    pad: &gst::Pad,
    pending: Arc<Pending>,
    counters: Arc<StreamCounters>,
    records: RecordSink,
) {
    // The sent probe's look at `Pending::queue`.
    let front = ProbeState::new(Front::<PendingRecord>::new());
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |_, info| {
            if !matches!(
                info.data,
                Some(gst::PadProbeData::Buffer(_) | gst::PadProbeData::BufferList(_))
            ) {
                return gst::PadProbeReturn::Ok;
            }
            let sent_us = wall_us();
            counters
                .last_sent_us
                .store(u64::try_from(sent_us).unwrap_or(0), Ordering::Relaxed);
            front.with(&counters, |front| {
                let mut sent = |pts: Option<gst::ClockTime>| {
                    complete_record(pts, sent_us, front, &pending.queue, &counters, &records);
                };
                match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => sent(b.pts()),
                    Some(gst::PadProbeData::BufferList(l)) => l.iter().for_each(|b| sent(b.pts())),
                    _ => {}
                }
            });
            gst::PadProbeReturn::Ok
        },
    );
}

/// Completes the record of the access unit with `pts`, which entered the
/// RTSP sink at `sent_us`, and hands it on.
fn complete_record(
    pts: Option<gst::ClockTime>,
    sent_us: i64,
    front: &mut Front<PendingRecord>,
    queue: &MpMcQueue<PendingRecord, PENDING_RECORDS>,
    counters: &StreamCounters,
    records: &RecordSink,
) {
    // Records ahead of this buffer belong to access units the leaky queue dropped.
    while front
        .peek(queue)
        .is_some_and(|(f, _)| f.zip(pts).is_some_and(|(f, p)| f < p))
    {
        front.pop(queue);
        counters.dropped_before_send.fetch_add(1, Ordering::Relaxed);
    }
    if front.peek(queue).is_some_and(|(p, _)| *p == pts) {
        if let Some((_, mut record)) = front.pop(queue) {
            record.sent_us = sent_us;
            counters.sent.fetch_add(1, Ordering::Relaxed);
            counters
                .sent_bytes
                .fetch_add(record.bytes, Ordering::Relaxed);
            if !records.send(record) {
                counters.records_lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_text_formats_utc_time_of_day() {
        // 2026-11-24T06:07:08.123Z
        let us = 1_795_500_000_000_000i64 - 1_795_500_000_000_000 % 86_400_000_000
            + ((6 * 3600 + 7 * 60 + 8) * 1_000_000 + 123_456);
        assert_eq!(clock_text(us), "06:07:08.123");
        assert_eq!(clock_text(0), "00:00:00.000");
    }

    #[test]
    fn inserted_bytes_keep_the_originals_flags_and_timestamps_in_one_memory() {
        gst::init().unwrap();
        let mut original = gst::Buffer::from_slice([1u8, 2, 3, 4, 5, 6, 7]);
        {
            let b = original.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_mseconds(40));
            b.set_dts(gst::ClockTime::from_mseconds(39));
            b.set_duration(gst::ClockTime::from_mseconds(33));
            b.set_offset(7);
            b.set_offset_end(8);
            b.set_flags(gst::BufferFlags::DELTA_UNIT | gst::BufferFlags::HEADER);
        }
        let au = original.map_readable().unwrap().to_vec();
        for (at, expected) in [
            (0, vec![9u8, 9, 1, 2, 3, 4, 5, 6, 7]),
            (4, vec![1, 2, 3, 4, 9, 9, 5, 6, 7]),
            (7, vec![1, 2, 3, 4, 5, 6, 7, 9, 9]),
        ] {
            let out = with_inserted(&original, &au, at, &[9, 9]).unwrap();
            assert_eq!(out.n_memory(), 1);
            assert_eq!(out.map_readable().unwrap().as_slice(), expected, "at {at}");
            assert_eq!(out.pts(), original.pts());
            assert_eq!(out.dts(), original.dts());
            assert_eq!(out.duration(), original.duration());
            assert_eq!((out.offset(), out.offset_end()), (7, 8));
            assert!(out
                .flags()
                .contains(gst::BufferFlags::DELTA_UNIT | gst::BufferFlags::HEADER));
        }
        assert!(with_inserted(&original, &au, 8, &[9]).is_err());
    }

    fn record(seq: u64) -> FrameInfo {
        FrameInfo {
            stream: 0,
            session: 1,
            seq,
            capture_us: 0,
            encoded_us: 0,
            sent_us: 0,
            bytes: 10,
            keyframe: false,
            fingerprint: 0,
        }
    }

    #[test]
    fn sent_records_are_matched_by_pts_through_the_held_front() {
        let ms = |n: u64| Some(gst::ClockTime::from_mseconds(n));
        let queue = MpMcQueue::<PendingRecord, PENDING_RECORDS>::new();
        let counters = StreamCounters::default();
        let (hand, mut source) = crate::record::hand_off(1);
        let records = hand.for_stream(0);
        let mut front = Front::new();
        for (pts, seq) in [(10, 0), (20, 1), (30, 2), (40, 3)] {
            assert!(queue.enqueue((ms(pts), record(seq))).is_ok());
        }
        // An access unit without a record (it went out unstamped): nothing matched,
        // nothing dropped, the record ahead stays held.
        complete_record(ms(5), 100, &mut front, &queue, &counters, &records);
        assert!(front.0.is_some());
        complete_record(ms(10), 101, &mut front, &queue, &counters, &records);
        // 20 and 30 were dropped by the leaky queue.
        complete_record(ms(40), 104, &mut front, &queue, &counters, &records);
        complete_record(ms(50), 105, &mut front, &queue, &counters, &records);
        let mut sent = Vec::new();
        source.drain(|f| sent.push((f.seq, f.sent_us)));
        assert_eq!(sent, [(0, 101), (3, 104)]);
        assert_eq!(counters.sent.load(Ordering::Relaxed), 2);
        assert_eq!(counters.sent_bytes.load(Ordering::Relaxed), 20);
        assert_eq!(counters.dropped_before_send.load(Ordering::Relaxed), 2);
        assert_eq!(counters.records_lost.load(Ordering::Relaxed), 0);
        assert!(front.pop(&queue).is_none());
    }
}
