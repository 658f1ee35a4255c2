//! Independent readers built on the real `ffmpeg` and `ffprobe` programs.
//!
//! They read what an origin serves with a demuxer that owes nothing to our
//! code or to GStreamer, so a test can tell "our reader is wrong" from "the
//! stream is wrong". Each run is bounded by a timeout and its errors carry
//! ffmpeg's stderr.

use std::{path::Path, process::Command, time::Duration};

use anyhow::{bail, ensure, Context as _};

use crate::process::{run_with_timeout, tail};

/// Extra time allowed beyond the requested duration (start-up, playlist
/// reloads, a live edge that has to fill).
const SLACK: Duration = Duration::from_secs(30);

/// Reads up to `seconds` of the first video stream of the HLS playlist at
/// `hls_url` with `ffmpeg -c copy`, writes it to `out` as an Annex B H.264
/// elementary stream and returns its bytes.
///
/// ffmpeg's raw `h264` muxer converts length-prefixed (fMP4/avcC) input to
/// Annex B by itself (`h264_mp4toannexb` is inserted automatically) and
/// passes MPEG-TS input through, so the NAL units are the ones the origin
/// served. For a live playlist ffmpeg starts three segments from the live
/// edge; for an ended one (`#EXT-X-ENDLIST`) at its first segment.
pub fn ffmpeg_read_hls_h264(hls_url: &str, seconds: f64, out: &Path) -> anyhow::Result<Vec<u8>> {
    ensure!(
        seconds.is_finite() && seconds > 0.0 && seconds < 3600.0,
        "seconds must be in (0, 3600), got {seconds}"
    );
    let timeout = Duration::from_secs_f64(seconds) + SLACK;
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        // Bounds each HTTP read (microseconds) so a stalled origin fails fast.
        .args(["-rw_timeout", "10000000"])
        .arg("-i")
        .arg(hls_url)
        .args(["-map", "0:v:0", "-c", "copy", "-t"])
        .arg(format!("{seconds:.3}"))
        .args(["-f", "h264"])
        .arg(out);
    let output =
        run_with_timeout(&mut cmd, timeout).with_context(|| format!("ffmpeg reading {hls_url}"))?;
    if !output.status.success() {
        bail!(
            "ffmpeg reading {hls_url} exited with {}; stderr:\n{}",
            output.status,
            tail(&output.stderr)
        );
    }
    let bytes = std::fs::read(out).with_context(|| format!("reading {}", out.display()))?;
    ensure!(
        !bytes.is_empty(),
        "ffmpeg wrote no video from {hls_url}; stderr:\n{}",
        tail(&output.stderr)
    );
    Ok(bytes)
}

/// Counts the packets (access units) of the first video stream of `input`
/// (a file path or URL) with `ffprobe -count_packets`.
///
/// ffprobe reads the whole input, so use it on files or ended playlists; a
/// live playlist runs into the 60 s timeout.
pub fn ffprobe_packet_count(input: &str) -> anyhow::Result<usize> {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error"]);
    if input.contains("://") {
        // Bounds each network read (microseconds); plain files reject it.
        cmd.args(["-rw_timeout", "10000000"]);
    }
    cmd.args(["-select_streams", "v:0", "-count_packets"])
        .args(["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(input);
    let output = run_with_timeout(&mut cmd, Duration::from_secs(60))
        .with_context(|| format!("ffprobe counting packets of {input}"))?;
    if !output.status.success() {
        bail!(
            "ffprobe on {input} exited with {}; stderr:\n{}",
            output.status,
            tail(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    let count = first.with_context(|| {
        format!(
            "ffprobe printed no packet count for {input}; stderr:\n{}",
            tail(&output.stderr)
        )
    })?;
    count
        .trim_end_matches(',')
        .parse()
        .with_context(|| format!("ffprobe printed {count:?} as the packet count of {input}"))
}
