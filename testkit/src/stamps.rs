//! Reading back what the agent sent: every access unit of an Annex B stream
//! (as `ffmpeg -c copy -f h264` writes it) with its stamp and fingerprint,
//! through `glasswatch-common`'s parsers.

use anyhow::{bail, Context as _};
use glasswatch_common::{fingerprint, h264, sei};

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
