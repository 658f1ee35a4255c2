//! The few fields of an H.264 sequence parameter set (ITU-T H.264 7.3.2.1.1
//! and E.1.1) an LL-HLS muxer needs: picture size after cropping and the
//! frame rate from the VUI timing information, as MediaMTX's `mediacommon`
//! computes them for `RESOLUTION` and `FRAME-RATE`.
//!
//! It reads only as far as the timing information and keeps nothing else.
//! Malformed input is an `Err`, never a panic.

use glasswatch_common::h264;

/// What the multivariant playlist and the init section need from an SPS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpsInfo {
    /// `profile_idc`, the constraint flags byte and `level_idc` (the three
    /// bytes after the NAL header, as written into `avc1.PPCCLL`).
    pub profile_compat_level: [u8; 3],
    /// Width in pixels after cropping.
    pub width: u32,
    /// Height in pixels after cropping.
    pub height: u32,
    /// `time_scale / (2 * num_units_in_tick)`, when the VUI has timing info.
    pub fps: Option<f64>,
}

/// Why an SPS could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpsError {
    #[error("not an SPS NAL unit")]
    NotSps,
    #[error("SPS ends early at bit {0}")]
    Truncated(usize),
    #[error("SPS field {0} out of range")]
    OutOfRange(&'static str),
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Result<u32, SpsError> {
        let byte = self
            .data
            .get(self.pos / 8)
            .ok_or(SpsError::Truncated(self.pos))?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(u32::from(bit))
    }

    fn bits(&mut self, n: u32) -> Result<u32, SpsError> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }

    fn flag(&mut self) -> Result<bool, SpsError> {
        Ok(self.bit()? == 1)
    }

    /// Unsigned Exp-Golomb (9.1), at most 31 leading zeros.
    fn ue(&mut self, what: &'static str) -> Result<u32, SpsError> {
        let mut zeros = 0u32;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(SpsError::OutOfRange(what));
            }
        }
        let rest = self.bits(zeros)?;
        let v = (1u64 << zeros) - 1 + u64::from(rest);
        u32::try_from(v).map_err(|_| SpsError::OutOfRange(what))
    }

    fn se(&mut self, what: &'static str) -> Result<i64, SpsError> {
        let k = i64::from(self.ue(what)?);
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

fn skip_scaling_list(b: &mut Bits<'_>, size: usize) -> Result<(), SpsError> {
    let mut last = 8i64;
    let mut next = 8i64;
    for _ in 0..size {
        if next != 0 {
            let delta = b.se("delta_scale")?;
            next = (last + delta + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// Reads `nal` (an SPS NAL unit with its header byte, emulation prevention
/// still in place).
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, SpsError> {
    if h264::nal_type(nal) != Some(h264::NAL_SPS) || nal.len() < 4 {
        return Err(SpsError::NotSps);
    }
    let rbsp = h264::remove_emulation_prevention(&nal[1..]);
    let profile_compat_level = [rbsp[0], rbsp[1], rbsp[2]];
    let profile = rbsp[0];
    let mut b = Bits {
        data: &rbsp[3..],
        pos: 0,
    };
    b.ue("seq_parameter_set_id")?;
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = b.ue("chroma_format_idc")?;
        if chroma_format_idc == 3 {
            separate_colour_plane = b.flag()?;
        }
        b.ue("bit_depth_luma_minus8")?;
        b.ue("bit_depth_chroma_minus8")?;
        b.flag()?; // qpprime_y_zero_transform_bypass_flag
        if b.flag()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if b.flag()? {
                    skip_scaling_list(&mut b, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    b.ue("log2_max_frame_num_minus4")?;
    match b.ue("pic_order_cnt_type")? {
        0 => {
            b.ue("log2_max_pic_order_cnt_lsb_minus4")?;
        }
        1 => {
            b.flag()?;
            b.se("offset_for_non_ref_pic")?;
            b.se("offset_for_top_to_bottom_field")?;
            let n = b.ue("num_ref_frames_in_pic_order_cnt_cycle")?;
            if n > 255 {
                return Err(SpsError::OutOfRange(
                    "num_ref_frames_in_pic_order_cnt_cycle",
                ));
            }
            for _ in 0..n {
                b.se("offset_for_ref_frame")?;
            }
        }
        2 => {}
        _ => return Err(SpsError::OutOfRange("pic_order_cnt_type")),
    }
    b.ue("max_num_ref_frames")?;
    b.flag()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(b.ue("pic_width_in_mbs_minus1")?) + 1;
    let height_map_units = u64::from(b.ue("pic_height_in_map_units_minus1")?) + 1;
    let frame_mbs_only = b.flag()?;
    if !frame_mbs_only {
        b.flag()?; // mb_adaptive_frame_field_flag
    }
    b.flag()?; // direct_8x8_inference_flag
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0u64, 0u64, 0u64, 0u64);
    if b.flag()? {
        crop_l = b.ue("frame_crop_left_offset")?.into();
        crop_r = b.ue("frame_crop_right_offset")?.into();
        crop_t = b.ue("frame_crop_top_offset")?.into();
        crop_b = b.ue("frame_crop_bottom_offset")?.into();
    }
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (sub_w, sub_h) = match (chroma_format_idc, separate_colour_plane) {
        (1, false) => (2, 2),
        (2, false) => (2, 1),
        (3, false) => (1, 1),
        _ => (1, 1),
    };
    let frame_mbs = if frame_mbs_only { 1 } else { 0 };
    let (crop_unit_x, crop_unit_y) = if chroma_array_type == 0 {
        (1, 2 - frame_mbs)
    } else {
        (sub_w, sub_h * (2 - frame_mbs))
    };
    let width = (width_mbs * 16)
        .checked_sub((crop_l + crop_r) * crop_unit_x)
        .ok_or(SpsError::OutOfRange("frame_crop_left/right_offset"))?;
    let height = ((2 - frame_mbs) * height_map_units * 16)
        .checked_sub((crop_t + crop_b) * crop_unit_y)
        .ok_or(SpsError::OutOfRange("frame_crop_top/bottom_offset"))?;
    let width = u32::try_from(width).map_err(|_| SpsError::OutOfRange("width"))?;
    let height = u32::try_from(height).map_err(|_| SpsError::OutOfRange("height"))?;

    let mut fps = None;
    // A VUI that ends early only loses the frame rate.
    if b.flag().unwrap_or(false) {
        fps = read_vui_fps(&mut b).ok().flatten();
    }
    Ok(SpsInfo {
        profile_compat_level,
        width,
        height,
        fps,
    })
}

fn read_vui_fps(b: &mut Bits<'_>) -> Result<Option<f64>, SpsError> {
    if b.flag()? {
        // aspect_ratio_info_present_flag
        if b.bits(8)? == 255 {
            b.bits(32)?; // sar_width, sar_height
        }
    }
    if b.flag()? {
        b.flag()?; // overscan_appropriate_flag
    }
    if b.flag()? {
        b.bits(4)?; // video_format, video_full_range_flag
        if b.flag()? {
            b.bits(24)?; // colour description
        }
    }
    if b.flag()? {
        b.ue("chroma_sample_loc_type_top_field")?;
        b.ue("chroma_sample_loc_type_bottom_field")?;
    }
    if !b.flag()? {
        return Ok(None);
    }
    let num_units_in_tick = b.bits(32)?;
    let time_scale = b.bits(32)?;
    if num_units_in_tick == 0 {
        return Ok(None);
    }
    Ok(Some(
        f64::from(time_scale) / (2.0 * f64::from(num_units_in_tick)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SPS MediaMTX put into the fixture's init section (x264,
    /// Constrained Baseline, 640x360 at 30 fps).
    pub(crate) const FIXTURE_SPS: [u8; 28] = [
        0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0xc0, 0x5a, 0x83, 0x03, 0x03, 0x52,
        0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x1e, 0x47, 0x8b, 0x17, 0x50,
    ];

    #[test]
    fn reads_the_fixture_sps() {
        let info = parse_sps(&FIXTURE_SPS).unwrap();
        assert_eq!(info.profile_compat_level, [0x42, 0xc0, 0x1e]);
        assert_eq!((info.width, info.height), (640, 360));
        assert_eq!(info.fps, Some(30.0));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert_eq!(parse_sps(&[0x68, 1, 2, 3]), Err(SpsError::NotSps));
        assert!(parse_sps(&[0x67, 0x42, 0xc0]).is_err());
        for cut in 4..FIXTURE_SPS.len() {
            let _ = parse_sps(&FIXTURE_SPS[..cut]);
        }
        let _ = parse_sps(&[0x67, 0x64, 0, 0, 0, 0, 0, 0, 0]);
    }
}
