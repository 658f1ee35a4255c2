//! Choosing the encoder and the capture format, as pure functions.
//!
//! The inputs are plain descriptions of what a machine offers ([`EncoderAvailability`],
//! [`DeviceCaps`]), filled by `probe` on a real machine and written by hand in
//! tests (a Raspberry Pi 4, an x86 box with VA-API, webcams of several kinds).
//! Nothing here touches GStreamer or a device. Each choice carries a reason a
//! person can read in `glasswatch-agent probe` and in the logs.

use std::fmt;

use crate::config::EncoderPref;

/// The H.264 encoders (and JPEG decoders) this machine's GStreamer offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncoderAvailability {
    /// `v4l2h264enc`: the V4L2 memory-to-memory encoder (Raspberry Pi 4 and older).
    pub v4l2: bool,
    /// The VA-API encoder element, when VA-API works: `vah264enc` (va plugin) or `vaapih264enc`.
    pub vaapi: Option<String>,
    /// `x264enc`.
    pub x264: bool,
    /// `openh264enc`.
    pub openh264: bool,
    /// A hardware JPEG decoder element (`v4l2jpegdec`, `vajpegdec`, `vaapijpegdec`).
    pub hw_jpeg_decoder: Option<String>,
    /// The software `jpegdec`.
    pub jpegdec: bool,
}

/// The encoder family chosen for a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderKind {
    V4l2,
    Vaapi,
    X264,
    OpenH264,
    /// The camera's own H.264, passed through without re-encoding.
    Camera,
}

impl EncoderKind {
    pub fn is_hardware(self) -> bool {
        matches!(
            self,
            EncoderKind::V4l2 | EncoderKind::Vaapi | EncoderKind::Camera
        )
    }
}

/// An encoder decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderChoice {
    pub kind: EncoderKind,
    /// The GStreamer element factory name.
    pub element: String,
    pub reason: String,
}

/// Why no encoder could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoEncoder(pub String);

/// Picks the encoder for a stream: what was asked for if present, else for
/// `auto` the hardware encoder where the device has one, then x264 (tuned for
/// zero latency), then OpenH264 as the last resort.
pub fn choose_encoder(
    pref: EncoderPref,
    avail: &EncoderAvailability,
) -> Result<EncoderChoice, NoEncoder> {
    let v4l2 = || EncoderChoice {
        kind: EncoderKind::V4l2,
        element: "v4l2h264enc".into(),
        reason: "V4L2 memory-to-memory H.264 encoder present (hardware)".into(),
    };
    let vaapi = |el: &str| EncoderChoice {
        kind: EncoderKind::Vaapi,
        element: el.to_owned(),
        reason: format!("VA-API H.264 encoder {el} present (hardware)"),
    };
    let x264 = |why: &str| EncoderChoice {
        kind: EncoderKind::X264,
        element: "x264enc".into(),
        reason: format!("x264 in software, tuned for zero latency{why}"),
    };
    let openh264 = |why: &str| EncoderChoice {
        kind: EncoderKind::OpenH264,
        element: "openh264enc".into(),
        reason: format!("OpenH264 in software{why}"),
    };
    let missing = |what: &str, pkg: &str| {
        NoEncoder(format!(
            "encoder = \"{what}\" was requested but this machine's GStreamer has no such element (install {pkg})"
        ))
    };
    match pref {
        EncoderPref::Auto => {
            if avail.v4l2 {
                Ok(v4l2())
            } else if let Some(el) = &avail.vaapi {
                Ok(vaapi(el))
            } else if avail.x264 {
                Ok(x264(": no hardware H.264 encoder found"))
            } else if avail.openh264 {
                Ok(openh264(": no hardware encoder and no x264enc found"))
            } else {
                Err(NoEncoder(
                    "no H.264 encoder available: install gstreamer1.0-plugins-ugly (x264enc) \
                     or gstreamer1.0-plugins-bad (openh264enc), or enable the hardware encoder"
                        .into(),
                ))
            }
        }
        EncoderPref::V4l2 if avail.v4l2 => Ok(v4l2()),
        EncoderPref::V4l2 => Err(missing(
            "v4l2",
            "gstreamer1.0-plugins-good and a V4L2 M2M encoder device",
        )),
        EncoderPref::Vaapi => match &avail.vaapi {
            Some(el) => Ok(vaapi(el)),
            None => Err(missing(
                "vaapi",
                "gstreamer1.0-plugins-bad (va) or gstreamer1.0-vaapi, with a working VA driver",
            )),
        },
        EncoderPref::X264 if avail.x264 => Ok(x264(" (requested)")),
        EncoderPref::X264 => Err(missing("x264", "gstreamer1.0-plugins-ugly")),
        EncoderPref::Openh264 if avail.openh264 => Ok(openh264(" (requested)")),
        EncoderPref::Openh264 => Err(missing("openh264", "gstreamer1.0-plugins-bad")),
    }
}

/// A pixel format a V4L2 capture device offers, as far as the agent cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PixelFormat {
    H264,
    Mjpeg,
    Yuyv,
    Nv12,
    I420,
    /// Anything else, by its FourCC.
    Other(String),
}

impl PixelFormat {
    pub fn from_fourcc(fourcc: &[u8; 4]) -> PixelFormat {
        match fourcc {
            b"H264" => PixelFormat::H264,
            b"MJPG" | b"JPEG" => PixelFormat::Mjpeg,
            b"YUYV" => PixelFormat::Yuyv,
            b"NV12" => PixelFormat::Nv12,
            b"YU12" => PixelFormat::I420,
            other => PixelFormat::Other(String::from_utf8_lossy(other).into_owned()),
        }
    }

    /// The GStreamer caps this format is captured as: media type and, for raw video, the format.
    pub fn gst_caps(&self) -> Option<(&'static str, Option<&'static str>)> {
        match self {
            PixelFormat::H264 => Some(("video/x-h264", None)),
            PixelFormat::Mjpeg => Some(("image/jpeg", None)),
            PixelFormat::Yuyv => Some(("video/x-raw", Some("YUY2"))),
            PixelFormat::Nv12 => Some(("video/x-raw", Some("NV12"))),
            PixelFormat::I420 => Some(("video/x-raw", Some("I420"))),
            PixelFormat::Other(_) => None,
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PixelFormat::H264 => f.write_str("H264"),
            PixelFormat::Mjpeg => f.write_str("MJPG"),
            PixelFormat::Yuyv => f.write_str("YUYV"),
            PixelFormat::Nv12 => f.write_str("NV12"),
            PixelFormat::I420 => f.write_str("YU12"),
            PixelFormat::Other(s) => f.write_str(s),
        }
    }
}

/// Frame sizes of one format.
#[derive(Debug, Clone, PartialEq)]
pub enum SizeCaps {
    /// One size with its discrete frame rates (fps).
    Discrete {
        width: u32,
        height: u32,
        fps: Vec<f64>,
    },
    /// A range of sizes (stepwise or continuous) with the best rate reachable across it.
    Stepwise {
        min_width: u32,
        max_width: u32,
        step_width: u32,
        min_height: u32,
        max_height: u32,
        step_height: u32,
        max_fps: f64,
    },
}

/// One format a device offers, with its sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct FormatCaps {
    pub format: PixelFormat,
    pub sizes: Vec<SizeCaps>,
}

/// A V4L2 capture device as probed.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceCaps {
    pub path: String,
    pub card: String,
    pub driver: String,
    pub formats: Vec<FormatCaps>,
}

/// How the captured frames become raw video for the encoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decode {
    /// Raw already (YUYV, NV12, I420).
    None,
    /// MJPEG through this decoder element.
    Jpeg { element: String, hardware: bool },
    /// The camera's H.264 is passed through as is: no decode, no encode.
    Passthrough,
}

/// A capture format decision.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureChoice {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub decode: Decode,
    pub reason: String,
}

/// Why no capture format could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoFormat(pub String);

/// The best rate a format offers at exactly `w`×`h`, if it offers that size.
fn best_fps_at(f: &FormatCaps, w: u32, h: u32) -> Option<f64> {
    f.sizes
        .iter()
        .filter_map(|s| match s {
            SizeCaps::Discrete { width, height, fps } if *width == w && *height == h => {
                fps.iter().copied().reduce(f64::max)
            }
            SizeCaps::Stepwise {
                min_width,
                max_width,
                step_width,
                min_height,
                max_height,
                step_height,
                max_fps,
            } if (*min_width..=*max_width).contains(&w)
                && (*min_height..=*max_height).contains(&h)
                && (w - min_width) % (*step_width).max(1) == 0
                && (h - min_height) % (*step_height).max(1) == 0 =>
            {
                Some(*max_fps)
            }
            _ => None,
        })
        .reduce(f64::max)
}

/// The largest discrete size not above `w`×`h` that reaches `fps`.
fn largest_size_reaching(f: &FormatCaps, w: u32, h: u32, fps: u32) -> Option<(u32, u32)> {
    f.sizes
        .iter()
        .filter_map(|s| match s {
            SizeCaps::Discrete {
                width,
                height,
                fps: rates,
            } if *width <= w
                && *height <= h
                && rates.iter().any(|r| *r + 0.01 >= f64::from(fps)) =>
            {
                Some((*width, *height))
            }
            _ => None,
        })
        .max_by_key(|(w, h)| u64::from(*w) * u64::from(*h))
}

/// Chooses the capture format reaching the requested size and rate with the
/// least CPU: the camera's own H.264 (used as is), then raw formats (no decode),
/// then MJPEG with a hardware decoder, then MJPEG with `jpegdec`. When no
/// format reaches the request, the largest size that keeps the rate wins,
/// and the reason says so.
pub fn choose_capture(
    dev: &DeviceCaps,
    width: u32,
    height: u32,
    fps: u32,
    avail: &EncoderAvailability,
) -> Result<CaptureChoice, NoFormat> {
    // Cost rank (lower is cheaper) and how to decode, per usable format.
    let rank = |f: &PixelFormat| -> Option<(u8, Decode)> {
        match f {
            PixelFormat::H264 => Some((0, Decode::Passthrough)),
            PixelFormat::Nv12 | PixelFormat::I420 => Some((1, Decode::None)),
            PixelFormat::Yuyv => Some((2, Decode::None)),
            PixelFormat::Mjpeg => match (&avail.hw_jpeg_decoder, avail.jpegdec) {
                (Some(el), _) => Some((
                    3,
                    Decode::Jpeg {
                        element: el.clone(),
                        hardware: true,
                    },
                )),
                (None, true) => Some((
                    4,
                    Decode::Jpeg {
                        element: "jpegdec".into(),
                        hardware: false,
                    },
                )),
                (None, false) => None,
            },
            PixelFormat::Other(_) => None,
        }
    };
    let describe = |d: &Decode| match d {
        Decode::Passthrough => {
            "the camera's own H.264, passed through without re-encoding".to_owned()
        }
        Decode::None => "raw frames, no decoding needed".to_owned(),
        Decode::Jpeg {
            element,
            hardware: true,
        } => format!("MJPEG decoded in hardware by {element}"),
        Decode::Jpeg {
            element,
            hardware: false,
        } => format!("MJPEG decoded in software by {element}"),
    };

    let mut usable: Vec<(&FormatCaps, u8, Decode)> = dev
        .formats
        .iter()
        .filter_map(|f| rank(&f.format).map(|(r, d)| (f, r, d)))
        .collect();
    usable.sort_by_key(|(_, r, _)| *r);
    if usable.is_empty() {
        let offered: Vec<String> = dev.formats.iter().map(|f| f.format.to_string()).collect();
        return Err(NoFormat(format!(
            "{} offers no usable format (offers: {}; usable: H264, NV12, YU12, YUYV, MJPG with a JPEG decoder)",
            dev.path,
            if offered.is_empty() { "none".to_owned() } else { offered.join(", ") }
        )));
    }

    // 1. The cheapest format that reaches the requested size and rate exactly.
    for (f, _, decode) in &usable {
        if let Some(best) = best_fps_at(f, width, height) {
            if best + 0.01 >= f64::from(fps) {
                let reason = format!(
                    "{} reaches {width}x{height}@{fps}: {}",
                    f.format,
                    describe(decode)
                );
                return Ok(CaptureChoice {
                    format: f.format.clone(),
                    width,
                    height,
                    fps,
                    decode: decode.clone(),
                    reason,
                });
            }
        }
    }
    // 2. Keep the rate, give up size: the largest size reaching the rate, cheapest format on ties.
    let by_size = usable
        .iter()
        .filter_map(|(f, r, d)| largest_size_reaching(f, width, height, fps).map(|s| (f, r, d, s)))
        .max_by(|a, b| {
            let area = |s: (u32, u32)| u64::from(s.0) * u64::from(s.1);
            area(a.3).cmp(&area(b.3)).then(b.1.cmp(a.1))
        });
    if let Some((f, _, decode, (w, h))) = by_size {
        return Ok(CaptureChoice {
            format: f.format.clone(),
            width: w,
            height: h,
            fps,
            decode: decode.clone(),
            reason: format!(
                "no format reaches {width}x{height}@{fps}; {} keeps {fps} fps at {w}x{h}: {}",
                f.format,
                describe(decode)
            ),
        });
    }
    // 3. Keep the size, give up rate.
    let by_rate = usable
        .iter()
        .filter_map(|(f, r, d)| best_fps_at(f, width, height).map(|b| (f, r, d, b)))
        .max_by(|a, b| a.3.total_cmp(&b.3).then(b.1.cmp(a.1)));
    if let Some((f, _, decode, best)) = by_rate {
        let got = (best.floor() as u32).max(1);
        return Ok(CaptureChoice {
            format: f.format.clone(),
            width,
            height,
            fps: got,
            decode: decode.clone(),
            reason: format!(
                "no format reaches {fps} fps at {width}x{height}; {} gives {got} fps: {}",
                f.format,
                describe(decode)
            ),
        });
    }
    Err(NoFormat(format!(
        "{} offers neither {width}x{height} nor {fps} fps at any smaller size in a usable format",
        dev.path
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pi4() -> EncoderAvailability {
        EncoderAvailability {
            v4l2: true,
            vaapi: None,
            x264: true,
            openh264: false,
            hw_jpeg_decoder: Some("v4l2jpegdec".into()),
            jpegdec: true,
        }
    }
    fn x86_vaapi() -> EncoderAvailability {
        EncoderAvailability {
            v4l2: false,
            vaapi: Some("vah264enc".into()),
            x264: true,
            openh264: true,
            hw_jpeg_decoder: Some("vajpegdec".into()),
            jpegdec: true,
        }
    }
    fn bare() -> EncoderAvailability {
        EncoderAvailability {
            x264: true,
            openh264: true,
            jpegdec: true,
            ..Default::default()
        }
    }

    fn discrete(w: u32, h: u32, fps: &[f64]) -> SizeCaps {
        SizeCaps::Discrete {
            width: w,
            height: h,
            fps: fps.to_vec(),
        }
    }

    /// A typical UVC webcam: MJPEG up to 1080p30, YUYV only at low rates above 480p.
    fn webcam_mjpeg_yuyv() -> DeviceCaps {
        DeviceCaps {
            path: "/dev/video0".into(),
            card: "HD Webcam C525".into(),
            driver: "uvcvideo".into(),
            formats: vec![
                FormatCaps {
                    format: PixelFormat::Yuyv,
                    sizes: vec![
                        discrete(640, 480, &[30.0, 15.0]),
                        discrete(1280, 720, &[10.0, 5.0]),
                        discrete(1920, 1080, &[5.0]),
                    ],
                },
                FormatCaps {
                    format: PixelFormat::Mjpeg,
                    sizes: vec![
                        discrete(640, 480, &[30.0]),
                        discrete(1280, 720, &[30.0]),
                        discrete(1920, 1080, &[30.0]),
                    ],
                },
            ],
        }
    }

    fn only(format: PixelFormat, sizes: Vec<SizeCaps>) -> DeviceCaps {
        DeviceCaps {
            path: "/dev/video0".into(),
            card: "cam".into(),
            driver: "uvcvideo".into(),
            formats: vec![FormatCaps { format, sizes }],
        }
    }

    #[test]
    fn pi4_uses_its_m2m_encoder() {
        let c = choose_encoder(EncoderPref::Auto, &pi4()).unwrap();
        assert_eq!(
            (c.kind, c.element.as_str()),
            (EncoderKind::V4l2, "v4l2h264enc")
        );
        assert!(c.kind.is_hardware());
    }

    #[test]
    fn x86_uses_vaapi() {
        let c = choose_encoder(EncoderPref::Auto, &x86_vaapi()).unwrap();
        assert_eq!(
            (c.kind, c.element.as_str()),
            (EncoderKind::Vaapi, "vah264enc")
        );
    }

    #[test]
    fn neither_falls_back_to_x264_then_openh264() {
        let c = choose_encoder(EncoderPref::Auto, &bare()).unwrap();
        assert_eq!(c.kind, EncoderKind::X264);
        assert!(!c.kind.is_hardware());
        let no_x264 = EncoderAvailability {
            x264: false,
            ..bare()
        };
        assert_eq!(
            choose_encoder(EncoderPref::Auto, &no_x264).unwrap().kind,
            EncoderKind::OpenH264
        );
        let nothing = EncoderAvailability::default();
        let e = choose_encoder(EncoderPref::Auto, &nothing).unwrap_err();
        assert!(e.0.contains("x264enc"), "{e}");
    }

    #[test]
    fn explicit_request_is_honoured_or_refused() {
        assert_eq!(
            choose_encoder(EncoderPref::X264, &pi4()).unwrap().kind,
            EncoderKind::X264
        );
        let e = choose_encoder(EncoderPref::Vaapi, &pi4()).unwrap_err();
        assert!(e.0.contains("vaapi"), "{e}");
        let e = choose_encoder(EncoderPref::V4l2, &x86_vaapi()).unwrap_err();
        assert!(e.0.contains("v4l2"), "{e}");
    }

    #[test]
    fn webcam_720p30_picks_mjpeg_over_slow_yuyv() {
        let c = choose_capture(&webcam_mjpeg_yuyv(), 1280, 720, 30, &bare()).unwrap();
        assert_eq!(c.format, PixelFormat::Mjpeg);
        assert_eq!((c.width, c.height, c.fps), (1280, 720, 30));
        assert_eq!(
            c.decode,
            Decode::Jpeg {
                element: "jpegdec".into(),
                hardware: false
            }
        );
        // On a Pi the same camera's MJPEG goes through the hardware decoder.
        let c = choose_capture(&webcam_mjpeg_yuyv(), 1280, 720, 30, &pi4()).unwrap();
        assert_eq!(
            c.decode,
            Decode::Jpeg {
                element: "v4l2jpegdec".into(),
                hardware: true
            }
        );
    }

    #[test]
    fn webcam_480p30_prefers_raw_yuyv() {
        let c = choose_capture(&webcam_mjpeg_yuyv(), 640, 480, 30, &bare()).unwrap();
        assert_eq!(c.format, PixelFormat::Yuyv);
        assert_eq!(c.decode, Decode::None);
    }

    #[test]
    fn h264_webcam_is_passed_through() {
        let mut dev = webcam_mjpeg_yuyv();
        dev.formats.push(FormatCaps {
            format: PixelFormat::H264,
            sizes: vec![discrete(1280, 720, &[30.0]), discrete(1920, 1080, &[30.0])],
        });
        let c = choose_capture(&dev, 1280, 720, 30, &bare()).unwrap();
        assert_eq!(c.format, PixelFormat::H264);
        assert_eq!(c.decode, Decode::Passthrough);
    }

    #[test]
    fn mjpeg_only_camera() {
        let dev = only(
            PixelFormat::Mjpeg,
            vec![discrete(1280, 720, &[30.0]), discrete(640, 480, &[30.0])],
        );
        let c = choose_capture(&dev, 1280, 720, 30, &x86_vaapi()).unwrap();
        assert_eq!(c.format, PixelFormat::Mjpeg);
        assert!(matches!(c.decode, Decode::Jpeg { hardware: true, .. }));
        // Without any JPEG decoder, an MJPEG-only camera is unusable, and the error says why.
        let none = EncoderAvailability {
            jpegdec: false,
            ..bare()
        };
        let e = choose_capture(&dev, 1280, 720, 30, &none).unwrap_err();
        assert!(e.0.contains("MJPG"), "{e}");
    }

    #[test]
    fn yuyv_only_camera_keeps_rate_by_giving_up_size() {
        let dev = only(
            PixelFormat::Yuyv,
            vec![
                discrete(640, 480, &[30.0]),
                discrete(800, 600, &[20.0]),
                discrete(1280, 720, &[10.0]),
            ],
        );
        let c = choose_capture(&dev, 1280, 720, 30, &bare()).unwrap();
        assert_eq!((c.width, c.height, c.fps), (640, 480, 30));
        assert!(c.reason.contains("no format reaches"), "{}", c.reason);
    }

    #[test]
    fn slow_camera_keeps_size_by_giving_up_rate() {
        let dev = only(PixelFormat::Yuyv, vec![discrete(1280, 720, &[10.0, 5.0])]);
        let c = choose_capture(&dev, 1280, 720, 30, &bare()).unwrap();
        assert_eq!((c.width, c.height, c.fps), (1280, 720, 10));
    }

    #[test]
    fn stepwise_sizes_are_matched_without_enumerating() {
        let dev = only(
            PixelFormat::Nv12,
            vec![SizeCaps::Stepwise {
                min_width: 32,
                max_width: 4096,
                step_width: 2,
                min_height: 32,
                max_height: 4096,
                step_height: 2,
                max_fps: 60.0,
            }],
        );
        let c = choose_capture(&dev, 1280, 720, 30, &bare()).unwrap();
        assert_eq!((c.format, c.fps), (PixelFormat::Nv12, 30));
    }

    #[test]
    fn unusable_formats_are_reported() {
        let dev = only(
            PixelFormat::Other("GREY".into()),
            vec![discrete(640, 480, &[30.0])],
        );
        let e = choose_capture(&dev, 640, 480, 30, &bare()).unwrap_err();
        assert!(e.0.contains("GREY"), "{e}");
    }
}
