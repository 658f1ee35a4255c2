//! A real RTSP publisher for tests: `gst-launch-1.0` pushing a live x264 test
//! pattern with `rtspclientsink` (RECORD over TCP), as the agent does.
//!
//! ```text
//! videotestsrc is-live=true ─▶ I420 WxH@fps ─▶ x264enc (zerolatency, GOP) ─▶ h264parse config-interval=-1
//!     ─▶ byte-stream/au ─▶ [tee ─▶ filesink copy_to] ─▶ rtspclientsink protocols=tcp
//! ```
//!
//! The optional copy of the pushed elementary stream (written unbuffered, so
//! it survives SIGKILL) lets a test compare what it sent with what an origin
//! served. With `stamp` set, the same pipeline runs in
//! `glasswatch-test-publisher` instead of `gst-launch-1.0`, which puts the
//! Glasswatch SEI stamp into every access unit after `h264parse` (stream tag
//! of [`crate::stamps::PATTERN_IDS`], `seq` from 0, `capture_us` the wall
//! clock at stamping), so a test can check that stamps survive an origin
//! without running the agent.
//!
//! Stop a publisher by killing it ([`Peer::kill`]), as a crashing agent
//! would: with GStreamer 1.22, `rtspclientsink` at end of stream sometimes
//! hangs in its shutdown or fails with "Could not send message (Received
//! end-of-file)" after the origin has already recorded everything (seen in
//! about 1 of 20 bounded runs), so tests should not wait for a bounded
//! pattern to exit cleanly.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::ensure;

use crate::peer::{Peer, Ready};

/// The binary that runs a stamped pattern.
pub const STAMPING_PUBLISHER: &str = "glasswatch-test-publisher";

/// Options for [`TestPattern::publish`]; `Default` gives 320x240 at 30 fps,
/// a key frame every 15 frames, baseline profile, running until stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestPattern {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Maximum frames between key frames (x264enc `key-int-max`).
    pub key_int_max: u32,
    /// H.264 profile forced through caps (`baseline`, `main`, `high`).
    pub profile: String,
    /// Stop after this many frames (gst-launch then usually exits 0, see the
    /// module notes); `None` runs until killed.
    pub frames: Option<u32>,
    /// Also write the pushed byte stream (Annex B) to this file.
    pub copy_to: Option<PathBuf>,
    /// Stamp every access unit (runs `glasswatch-test-publisher`).
    pub stamp: bool,
}

impl Default for TestPattern {
    fn default() -> Self {
        TestPattern {
            width: 320,
            height: 240,
            fps: 30,
            key_int_max: 15,
            profile: "baseline".to_owned(),
            frames: None,
            copy_to: None,
            stamp: false,
        }
    }
}

impl TestPattern {
    /// A default pattern that stops after `frames` frames.
    pub fn frames(frames: u32) -> Self {
        TestPattern {
            frames: Some(frames),
            ..TestPattern::default()
        }
    }

    /// The `gst-launch-1.0` arguments pushing this pattern to `rtsp_url`.
    ///
    /// gst-launch joins its arguments with spaces and parses the result, so
    /// the URL, profile and `copy_to` path must not contain whitespace,
    /// quotes or `!`.
    pub fn launch_args(&self, rtsp_url: &str) -> anyhow::Result<Vec<String>> {
        let copy_to = self
            .copy_to
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned());
        for text in [
            Some(rtsp_url),
            Some(self.profile.as_str()),
            copy_to.as_deref(),
        ]
        .into_iter()
        .flatten()
        {
            ensure!(
                !text.is_empty()
                    && !text
                        .chars()
                        .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '!' | '\\')),
                "{text:?} cannot be passed through gst-launch"
            );
        }
        let mut args = vec![
            "-q".to_owned(),
            "videotestsrc".to_owned(),
            "is-live=true".to_owned(),
        ];
        if let Some(n) = self.frames {
            args.push(format!("num-buffers={n}"));
        }
        args.extend([
            "!".to_owned(),
            format!(
                "video/x-raw,format=I420,width={},height={},framerate={}/1",
                self.width, self.height, self.fps
            ),
            "!".to_owned(),
            "x264enc".to_owned(),
            "tune=zerolatency".to_owned(),
            "speed-preset=ultrafast".to_owned(),
            format!("key-int-max={}", self.key_int_max),
            "!".to_owned(),
            format!("video/x-h264,profile={}", self.profile),
            "!".to_owned(),
            "h264parse".to_owned(),
            "name=stamp".to_owned(),
            "config-interval=-1".to_owned(),
            "!".to_owned(),
            // Without this the tee lets h264parse pick avc for the copy.
            "video/x-h264,stream-format=byte-stream,alignment=au".to_owned(),
            "!".to_owned(),
        ]);
        if let Some(path) = copy_to {
            args.extend(["tee", "name=t", "!", "queue", "!"].map(str::to_owned));
            args.extend(rtsp_sink(rtsp_url));
            args.extend(
                [
                    "t.",
                    "!",
                    "queue",
                    "!",
                    "filesink",
                    "buffer-mode=unbuffered",
                ]
                .map(str::to_owned),
            );
            args.push(format!("location={path}"));
        } else {
            args.extend(rtsp_sink(rtsp_url));
        }
        Ok(args)
    }

    /// Starts `gst-launch-1.0` publishing to `rtsp_url`. The peer is ready
    /// once spawned; wait on the origin (e.g. for a playlist) to know the
    /// stream arrived.
    pub fn publish(&self, rtsp_url: &str) -> anyhow::Result<Peer> {
        let mut args = self.launch_args(rtsp_url)?;
        let mut cmd = if self.stamp {
            let mut cmd = Command::new(crate::bins::try_bin_path(STAMPING_PUBLISHER)?);
            // `-q` is gst-launch's option, not part of the description.
            args.retain(|a| a != "-q");
            cmd.arg("--");
            cmd
        } else {
            Command::new("gst-launch-1.0")
        };
        cmd.args(args);
        Peer::spawn("gst-publisher", cmd, Ready::Spawned, Duration::from_secs(5))
    }
}

fn rtsp_sink(rtsp_url: &str) -> [String; 3] {
    [
        "rtspclientsink".to_owned(),
        format!("location={rtsp_url}"),
        "protocols=tcp".to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_line_forces_i420_and_tcp() {
        let args = TestPattern::frames(30)
            .launch_args("rtsp://127.0.0.1:8554/cam")
            .unwrap()
            .join(" ");
        assert!(args.contains("num-buffers=30"), "{args}");
        assert!(args.contains("format=I420"), "{args}");
        assert!(args.contains("rtspclientsink location=rtsp://127.0.0.1:8554/cam protocols=tcp"));
        assert!(!args.contains("tee"));
    }

    #[test]
    fn copy_goes_through_a_tee() {
        let pattern = TestPattern {
            copy_to: Some("/tmp/x/sent.h264".into()),
            ..TestPattern::default()
        };
        let args = pattern
            .launch_args("rtsp://127.0.0.1:1/a")
            .unwrap()
            .join(" ");
        assert!(args.contains("tee name=t"), "{args}");
        assert!(
            args.ends_with("filesink buffer-mode=unbuffered location=/tmp/x/sent.h264"),
            "{args}"
        );
    }

    #[test]
    fn unsafe_text_is_rejected() {
        let pattern = TestPattern {
            copy_to: Some("/tmp/a b.h264".into()),
            ..TestPattern::default()
        };
        assert!(pattern.launch_args("rtsp://127.0.0.1:1/a").is_err());
        assert!(TestPattern::default()
            .launch_args("rtsp://x/a ! fakesink")
            .is_err());
    }
}
