//! Probing the machine: V4L2 capture devices (through the `v4l` crate) and
//! the H.264 encoders and JPEG decoders this machine's GStreamer offers.
//!
//! Probing only reads; it turns what it finds into the plain descriptions of
//! `select`, which makes the decisions. A device that cannot be opened or
//! queried is reported, not fatal.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use v4l::capability::Flags;
use v4l::frameinterval::FrameIntervalEnum;
use v4l::framesize::FrameSizeEnum;
use v4l::video::Capture;

use crate::config::{Config, Source};
use crate::select::{
    choose_capture, choose_encoder, DeviceCaps, EncoderAvailability, FormatCaps, PixelFormat,
    SizeCaps,
};

/// What GStreamer offers here. GStreamer must be initialised.
pub fn encoder_availability() -> EncoderAvailability {
    let has = |name: &str| gstreamer::ElementFactory::find(name).is_some();
    let first = |names: &[&str]| names.iter().find(|n| has(n)).map(|n| (*n).to_owned());
    EncoderAvailability {
        // The v4l2 plugin registers v4l2h264enc only when an M2M encoder device exists.
        v4l2: has("v4l2h264enc"),
        // Both VA plugins register their encoders only when a VA display opens.
        vaapi: first(&["vah264enc", "vah264lpenc", "vaapih264enc"]),
        x264: has("x264enc"),
        openh264: has("openh264enc"),
        hw_jpeg_decoder: first(&["v4l2jpegdec", "vajpegdec", "vaapijpegdec"]),
        jpegdec: has("jpegdec"),
    }
}

/// Paths of V4L2 device nodes (`/dev/video*`), sorted.
pub fn video_nodes() -> Vec<PathBuf> {
    let mut nodes: Vec<PathBuf> = std::fs::read_dir("/dev")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("video"))
                })
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    nodes
}

/// Queries one device node. `Ok(None)` when it is not a capture device
/// (M2M codecs and metadata nodes also live under `/dev/video*`).
pub fn probe_device(path: &Path) -> std::io::Result<Option<DeviceCaps>> {
    let dev = v4l::Device::with_path(path)?;
    let caps = dev.query_caps()?;
    let capture = caps.capabilities.contains(Flags::VIDEO_CAPTURE)
        && !caps.capabilities.contains(Flags::VIDEO_OUTPUT)
        && !caps.capabilities.contains(Flags::VIDEO_M2M);
    if !capture {
        return Ok(None);
    }
    let mut formats = Vec::new();
    for desc in dev.enum_formats()? {
        let format = PixelFormat::from_fourcc(&desc.fourcc.repr);
        let mut sizes = Vec::new();
        for fs in dev.enum_framesizes(desc.fourcc).unwrap_or_default() {
            match fs.size {
                FrameSizeEnum::Discrete(d) => {
                    let fps = rates(&dev, desc.fourcc, d.width, d.height);
                    sizes.push(SizeCaps::Discrete {
                        width: d.width,
                        height: d.height,
                        fps,
                    });
                }
                FrameSizeEnum::Stepwise(s) => {
                    let max_fps = rates(&dev, desc.fourcc, s.max_width, s.max_height)
                        .into_iter()
                        .reduce(f64::max)
                        .unwrap_or(30.0);
                    sizes.push(SizeCaps::Stepwise {
                        min_width: s.min_width,
                        max_width: s.max_width,
                        step_width: s.step_width,
                        min_height: s.min_height,
                        max_height: s.max_height,
                        step_height: s.step_height,
                        max_fps,
                    });
                }
            }
        }
        formats.push(FormatCaps { format, sizes });
    }
    Ok(Some(DeviceCaps {
        path: path.display().to_string(),
        card: caps.card,
        driver: caps.driver,
        formats,
    }))
}

/// The frame rates a device offers for a format and size (for a stepwise
/// range of intervals, its fastest).
fn rates(dev: &v4l::Device, fourcc: v4l::FourCC, width: u32, height: u32) -> Vec<f64> {
    dev.enum_frameintervals(fourcc, width, height)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|fi| match fi.interval {
            FrameIntervalEnum::Discrete(f) => rate(f.numerator, f.denominator),
            FrameIntervalEnum::Stepwise(s) => rate(s.min.numerator, s.min.denominator),
        })
        .collect()
}

/// Frames per second of a frame interval `num/den` seconds.
fn rate(num: u32, den: u32) -> Option<f64> {
    (num > 0).then(|| f64::from(den) / f64::from(num))
}

/// The report `glasswatch-agent probe` prints.
pub fn report(config: Option<&Config>) -> String {
    let mut out = String::new();
    let avail = encoder_availability();
    let yes = |b: bool| if b { "yes" } else { "no" };
    let _ = writeln!(
        out,
        "H.264 encoders offered by GStreamer {}:",
        gstreamer::version_string()
    );
    let _ = writeln!(
        out,
        "  v4l2h264enc (V4L2 M2M, hardware): {}",
        yes(avail.v4l2)
    );
    let _ = writeln!(
        out,
        "  VA-API (hardware):                {}",
        avail.vaapi.as_deref().unwrap_or("no")
    );
    let _ = writeln!(
        out,
        "  x264enc (software):               {}",
        yes(avail.x264)
    );
    let _ = writeln!(
        out,
        "  openh264enc (software):           {}",
        yes(avail.openh264)
    );
    let _ = writeln!(
        out,
        "JPEG decoders: hardware {}, jpegdec {}",
        avail.hw_jpeg_decoder.as_deref().unwrap_or("none"),
        yes(avail.jpegdec)
    );

    let _ = writeln!(out, "\nV4L2 capture devices:");
    let mut devices = Vec::new();
    let nodes = video_nodes();
    if nodes.is_empty() {
        let _ = writeln!(out, "  none (no /dev/video* nodes)");
    }
    for node in nodes {
        match probe_device(&node) {
            Ok(Some(dev)) => {
                let _ = writeln!(out, "  {} — {} ({})", dev.path, dev.card, dev.driver);
                for f in &dev.formats {
                    let _ = writeln!(out, "    {}:", f.format);
                    for s in &f.sizes {
                        match s {
                            SizeCaps::Discrete { width, height, fps } => {
                                let rates: Vec<String> = fps
                                    .iter()
                                    .map(|r| {
                                        format!("{r:.4}")
                                            .trim_end_matches('0')
                                            .trim_end_matches('.')
                                            .to_owned()
                                    })
                                    .collect();
                                let _ = writeln!(
                                    out,
                                    "      {width}x{height} @ {} fps",
                                    rates.join(", ")
                                );
                            }
                            SizeCaps::Stepwise {
                                min_width,
                                max_width,
                                min_height,
                                max_height,
                                max_fps,
                                ..
                            } => {
                                let _ = writeln!(
                                    out,
                                    "      {min_width}x{min_height} to {max_width}x{max_height} @ up to {max_fps:.0} fps"
                                );
                            }
                        }
                    }
                }
                devices.push(dev);
            }
            Ok(None) => {
                let _ = writeln!(out, "  {} — not a capture device, skipped", node.display());
            }
            Err(e) => {
                let _ = writeln!(out, "  {} — cannot query: {e}", node.display());
            }
        }
    }

    if let Some(config) = config {
        let _ = writeln!(out, "\nConfigured streams:");
        for s in config.streams() {
            let _ = writeln!(out, "  {} (source {}):", s.id, s.source);
            let device = match &s.source {
                Source::Test => None,
                Source::Auto if !Path::new("/dev/video0").exists() => None,
                Source::Auto => Some(PathBuf::from("/dev/video0")),
                Source::V4l2(p) => Some(p.clone()),
            };
            let mut passthrough = false;
            match device {
                None => {
                    let _ = writeln!(
                        out,
                        "    capture: test pattern {}x{}@{} (videotestsrc)",
                        s.width.get(),
                        s.height.get(),
                        s.fps.get()
                    );
                }
                Some(path) => match devices.iter().find(|d| Path::new(&d.path) == path) {
                    None => {
                        let _ = writeln!(
                            out,
                            "    capture: {} not found now; the agent will wait for it",
                            path.display()
                        );
                    }
                    Some(dev) => match choose_capture(
                        dev,
                        s.width.get(),
                        s.height.get(),
                        s.fps.get(),
                        &avail,
                    ) {
                        Ok(c) => {
                            passthrough = c.decode == crate::select::Decode::Passthrough;
                            let _ = writeln!(
                                out,
                                "    capture: {} {}x{}@{} — {}",
                                c.format, c.width, c.height, c.fps, c.reason
                            );
                        }
                        Err(e) => {
                            let _ = writeln!(out, "    capture: none — {e}");
                        }
                    },
                },
            }
            if passthrough {
                let _ = writeln!(out, "    encoder: none — the camera's H.264 is sent as is");
            } else {
                match choose_encoder(s.encoder, &avail) {
                    Ok(c) => {
                        let _ = writeln!(out, "    encoder: {} — {}", c.element, c.reason);
                    }
                    Err(e) => {
                        let _ = writeln!(out, "    encoder: none — {e}");
                    }
                }
            }
        }
    }
    out
}
