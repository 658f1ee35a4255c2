//! Reading back what the agent sent: every access unit of an Annex B stream
//! (as `ffmpeg -c copy -f h264` writes it) with its stamp and fingerprint,
//! through `glasswatch-common`'s parsers.

use anyhow::{bail, Context as _};
use glasswatch_common::{fingerprint, h264, sei};

/// Whether `nal` (without its start code) is the first slice of a picture
/// (x264 with `tune=zerolatency` cuts frames into several slices).
pub fn is_first_slice(nal: &[u8]) -> bool {
    h264::nal_type(nal).is_some_and(h264::is_vcl) && h264::first_mb_in_slice(nal) == Some(0)
}

/// The pictures in an Annex B stream: its first slices.
pub fn picture_count(es: &[u8]) -> usize {
    h264::annexb_nals(es)
        .filter(|(_, n)| is_first_slice(n))
        .count()
}

/// One access unit as a reader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenFrame {
    pub stamp: sei::FrameStamp,
    pub fingerprint: u64,
}

/// Splits `es` into access units and reads each one's stamp and fingerprint.
/// Fails on an access unit without a stamp or with a malformed one, naming
/// its index and NAL types. A leading chunk without a picture (ffmpeg's raw
/// muxer writes the stream's SPS/PPS once before the first AUD) is skipped.
pub fn stamped_frames(es: &[u8]) -> anyhow::Result<Vec<SeenFrame>> {
    let has_picture =
        |au: &[u8]| h264::annexb_nals(au).any(|(_, n)| h264::nal_type(n).is_some_and(h264::is_vcl));
    let mut out = Vec::new();
    let aus = h264::split_access_units(es);
    for (i, range) in aus.iter().enumerate() {
        let au = es
            .get(range.clone())
            .context("access unit range out of bounds")?;
        if i == 0 && !has_picture(au) {
            continue;
        }
        let types: Vec<u8> = h264::annexb_nals(au)
            .filter_map(|(_, n)| h264::nal_type(n))
            .collect();
        let stamp = match sei::find_stamp_annexb(au) {
            Ok(Some(s)) => s,
            Ok(None) => bail!(
                "access unit {i} of {} carries no stamp; NAL types {types:?}",
                aus.len()
            ),
            Err(e) => bail!("access unit {i}: malformed stamp: {e}; NAL types {types:?}"),
        };
        let Some(fp) = fingerprint::fingerprint_annexb(au) else {
            bail!("access unit {i} has no slice; NAL types {types:?}");
        };
        out.push(SeenFrame {
            stamp,
            fingerprint: fp,
        });
    }
    Ok(out)
}

/// The device and stream ids whose stream tag a stamped [`crate::TestPattern`] carries.
pub const PATTERN_IDS: (&str, &str) = ("testkit", "pattern");

/// `au` (Annex B) with the Glasswatch stamp (an SEI NAL unit) inserted
/// directly before its first slice, as the agent places it; `None` when the
/// access unit has no slice. The keyframe flag comes from the slices.
pub fn insert_stamp_annexb(
    au: &[u8],
    stream_tag: u32,
    seq: u64,
    capture_us: i64,
) -> Option<Vec<u8>> {
    let first_vcl = h264::annexb_nals(au)
        .find(|(_, n)| h264::nal_type(n).is_some_and(h264::is_vcl))
        .map(|(offset, _)| offset)?;
    let keyframe = h264::annexb_nals(au).any(|(_, n)| h264::nal_type(n) == Some(h264::NAL_IDR));
    let mut nal = Vec::with_capacity(64);
    sei::build_sei_nal(
        &sei::FrameStamp {
            keyframe,
            stream_tag,
            seq,
            capture_us,
        },
        &mut nal,
    );
    let mut out = Vec::with_capacity(au.len() + nal.len() + 4);
    out.extend_from_slice(&au[..first_vcl]);
    out.extend_from_slice(&nal);
    out.extend_from_slice(&[0, 0, 1]);
    out.extend_from_slice(&au[first_vcl..]);
    Some(out)
}

/// The access unit `au` (Annex B) without its SEI NAL units (type 6), each
/// remaining NAL unit behind a 4-byte start code; `None` when it has none to
/// remove. What an origin that strips SEI serves.
pub fn strip_sei_annexb(au: &[u8]) -> Option<Vec<u8>> {
    let nals: Vec<&[u8]> = h264::annexb_nals(au).map(|(_, n)| n).collect();
    if !nals
        .iter()
        .any(|n| h264::nal_type(n) == Some(h264::NAL_SEI))
    {
        return None;
    }
    let mut out = Vec::with_capacity(au.len());
    for nal in nals {
        if h264::nal_type(nal) != Some(h264::NAL_SEI) {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(nal);
        }
    }
    Some(out)
}

/// Replaces a buffer's bytes (a stamp inserted, SEI stripped), keeping its
/// timestamps, offset and flags: for pad probes that rewrite access units.
pub fn replace_buffer_data(buffer: &mut gstreamer::Buffer, bytes: Vec<u8>) {
    let mut new = gstreamer::Buffer::from_mut_slice(bytes);
    if let Some(b) = new.get_mut() {
        b.set_pts(buffer.pts());
        b.set_dts(buffer.dts());
        b.set_duration(buffer.duration());
        b.set_offset(buffer.offset());
        b.set_flags(buffer.flags());
    }
    *buffer = new;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_sei() {
        let au = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x06, 5, 1, 0x80, 0, 0, 0, 1, 0x65, 0x88, 0x84,
        ];
        let out = strip_sei_annexb(&au).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x65, 0x88, 0x84]);
        assert_eq!(strip_sei_annexb(&out), None);
    }

    #[test]
    fn stamps_go_before_the_first_slice() {
        let au = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x65, 0x88, 0x84, 0, 0, 1, 0x65, 0x11,
        ];
        let out = insert_stamp_annexb(&au, 7, 42, 1_000_000).unwrap();
        let frames = stamped_frames(&out).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].stamp.seq, 42);
        assert!(frames[0].stamp.keyframe);
        let types: Vec<u8> = h264::annexb_nals(&out)
            .filter_map(|(_, n)| h264::nal_type(n))
            .collect();
        assert_eq!(types, [9, 6, 5, 5]);
        assert_eq!(insert_stamp_annexb(&[0, 0, 1, 0x09, 0xf0], 7, 0, 0), None);
    }
}
