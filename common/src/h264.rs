//! H.264 NAL unit framing helpers: Annex B byte streams, length-prefixed (AVCC) samples,
//! emulation prevention and access-unit splitting.
//!
//! The references are ITU-T H.264: 7.3.1 and 7.4.1 (NAL unit syntax and semantics, emulation
//! prevention), 7.4.1.2.3 (order of NAL units and their association to access units), 7.3.3
//! (`first_mb_in_slice`), 9.1 (Exp-Golomb codes) and Annex B (byte stream format). Length-prefixed
//! samples are those of ISO/IEC 14496-15 (avcC, MP4 and fMP4).
//!
//! Every function here is a pure parser over borrowed bytes that never panics on its input. The
//! module does not parse SPS/PPS, decode slice data beyond `first_mb_in_slice`, apply the full
//! "first VCL NAL unit of a primary coded picture" rules of 7.4.1.2.4 (`frame_num`,
//! `pic_parameter_set_id`, …), nor handle H.265.

use std::borrow::Cow;
use std::ops::Range;

/// `nal_unit_type` of a coded slice of a non-IDR picture.
pub const NAL_SLICE: u8 = 1;
/// `nal_unit_type` of a coded slice of an IDR picture.
pub const NAL_IDR: u8 = 5;
/// `nal_unit_type` of supplemental enhancement information.
pub const NAL_SEI: u8 = 6;
/// `nal_unit_type` of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// `nal_unit_type` of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// `nal_unit_type` of an access unit delimiter.
pub const NAL_AUD: u8 = 9;

/// A problem in NAL unit framing.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum NalError {
    /// The data ends `needed` bytes too early for what starts at `offset`.
    #[error("truncated NAL data at byte {offset}: {needed} more bytes needed")]
    Truncated { offset: usize, needed: usize },
    /// The data at `offset` breaks the rule `what`.
    #[error("invalid NAL data at byte {offset}: {what}")]
    Invalid { offset: usize, what: &'static str },
}

/// Returns the `nal_unit_type` (the low 5 bits of the header byte), or `None` for an empty NAL unit.
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|h| h & 0x1f)
}

/// Tells whether `nal_type` is a VCL NAL unit type (1 to 5, coded slices and slice data partitions).
pub fn is_vcl(nal_type: u8) -> bool {
    (1..=5).contains(&nal_type)
}

/// Iterates the NAL units of an Annex B byte stream.
///
/// Start codes may be 3 or 4 bytes long. Each item is the byte offset of the NAL unit's header
/// byte within `data` and the NAL unit itself (header byte included), without start code and
/// without trailing zero bytes (`trailing_zero_8bits` and the leading zero of a 4-byte start code).
/// Bytes before the first start code and empty NAL units are skipped. To insert a NAL unit `x`
/// before a yielded one at offset `o`, insert `x` followed by a start code at `o`.
pub fn annexb_nals(data: &[u8]) -> AnnexBNals<'_> {
    AnnexBNals {
        data,
        pos: 0,
        prev_end: 0,
    }
}

/// Iterator returned by [`annexb_nals`].
#[derive(Debug, Clone)]
pub struct AnnexBNals<'a> {
    data: &'a [u8],
    /// Where to look for the next start code.
    pos: usize,
    /// End of the previous NAL unit yielded (after trailing zeros were trimmed).
    prev_end: usize,
}

/// One NAL unit of an Annex B stream with the position of its start code.
struct RawNal<'a> {
    /// First byte of the zero run and start code before the NAL unit.
    prefix: usize,
    /// Offset of the header byte.
    offset: usize,
    nal: &'a [u8],
}

impl<'a> AnnexBNals<'a> {
    fn next_raw(&mut self) -> Option<RawNal<'a>> {
        loop {
            let start_code = find_start_code(self.data, self.pos)?;
            // A start code found by `find_start_code` lies wholly inside `data`.
            let offset = start_code + 3;
            let raw_end = find_start_code(self.data, offset).unwrap_or(self.data.len());
            self.pos = raw_end;
            let nal = trim_trailing_zeros(self.data.get(offset..raw_end)?);
            if nal.is_empty() {
                continue;
            }
            let mut prefix = start_code;
            while prefix > self.prev_end && self.data.get(prefix - 1) == Some(&0) {
                prefix -= 1;
            }
            self.prev_end = offset + nal.len();
            return Some(RawNal {
                prefix,
                offset,
                nal,
            });
        }
    }
}

impl<'a> Iterator for AnnexBNals<'a> {
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        self.next_raw().map(|raw| (raw.offset, raw.nal))
    }
}

/// Returns the offset of the first `00 00 01` at or after `from`.
fn find_start_code(data: &[u8], from: usize) -> Option<usize> {
    data.get(from..)?
        .windows(3)
        .position(|w| w == [0, 0, 1])
        .map(|p| p + from)
}

fn trim_trailing_zeros(data: &[u8]) -> &[u8] {
    match data.iter().rposition(|&b| b != 0) {
        Some(last) => data.get(..=last).unwrap_or(data),
        None => &[],
    }
}

/// Iterates the NAL units of a sample whose NAL units are each preceded by a big-endian length of
/// `length_size` bytes (1, 2 or 4 in practice: avcC `lengthSizeMinusOne + 1`).
///
/// Yields each NAL unit with its header byte and skips zero-length ones. A length running past the
/// end of `data`, or a `length_size` outside 1 to 4, yields one error and ends the iteration.
pub fn avcc_nals(data: &[u8], length_size: usize) -> AvccNals<'_> {
    AvccNals {
        data,
        length_size,
        pos: 0,
        done: false,
    }
}

/// Iterator returned by [`avcc_nals`].
#[derive(Debug, Clone)]
pub struct AvccNals<'a> {
    data: &'a [u8],
    length_size: usize,
    pos: usize,
    done: bool,
}

impl<'a> AvccNals<'a> {
    /// Like `next`, but also returns the offset of the NAL unit's header byte within the sample.
    pub(crate) fn next_with_offset(&mut self) -> Option<Result<(usize, &'a [u8]), NalError>> {
        loop {
            if self.done || self.pos >= self.data.len() {
                return None;
            }
            match self.read_one() {
                Ok(Some(found)) => return Some(Ok(found)),
                Ok(None) => continue,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }

    /// Reads the NAL unit at `pos`; `Ok(None)` for a zero-length one.
    fn read_one(&mut self) -> Result<Option<(usize, &'a [u8])>, NalError> {
        let at = self.pos;
        if !(1..=4).contains(&self.length_size) {
            return Err(NalError::Invalid {
                offset: at,
                what: "NAL length size must be 1 to 4 bytes",
            });
        }
        let rest = self.data.get(at..).unwrap_or_default();
        let prefix = rest
            .get(..self.length_size)
            .ok_or_else(|| NalError::Truncated {
                offset: at,
                needed: self.length_size.saturating_sub(rest.len()),
            })?;
        let len = prefix
            .iter()
            .fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        let len = usize::try_from(len).map_err(|_| NalError::Invalid {
            offset: at,
            what: "NAL length does not fit in memory",
        })?;
        let start = at + self.length_size;
        let body = self.data.get(start..).unwrap_or_default();
        let nal = body.get(..len).ok_or_else(|| NalError::Truncated {
            offset: start,
            needed: len.saturating_sub(body.len()),
        })?;
        self.pos = start + len;
        Ok((!nal.is_empty()).then_some((start, nal)))
    }
}

impl<'a> Iterator for AvccNals<'a> {
    type Item = Result<&'a [u8], NalError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with_offset().map(|r| r.map(|(_, nal)| nal))
    }
}

/// Appends `rbsp` to `out` with emulation prevention applied (7.4.1): an `emulation_prevention_three_byte`
/// (0x03) goes after every `00 00` that is followed by a byte of 0x00 to 0x03, and after a final `00 00`.
pub fn add_emulation_prevention(rbsp: &[u8], out: &mut Vec<u8>) {
    out.reserve(rbsp.len() + rbsp.len() / 64);
    let mut zeros = 0usize;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    if zeros >= 2 {
        out.push(3);
    }
}

/// Removes the emulation prevention bytes from a NAL unit payload: every 0x03 that follows `00 00`.
///
/// Borrows when there is none. The 0x03 is removed whatever follows it, as decoders do.
pub fn remove_emulation_prevention(ebsp: &[u8]) -> Cow<'_, [u8]> {
    if !ebsp.windows(3).any(|w| w == [0, 0, 3]) {
        return Cow::Borrowed(ebsp);
    }
    let mut out = Vec::with_capacity(ebsp.len());
    let mut zeros = 0usize;
    for &b in ebsp {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    Cow::Owned(out)
}

/// Reads `first_mb_in_slice`, the first ue(v) of a slice header (7.3.3), from a VCL NAL unit
/// (header byte included, emulation prevention still applied). `None` when the bits run out or the
/// code is longer than 32 bits.
pub fn first_mb_in_slice(nal: &[u8]) -> Option<u32> {
    let (_, body) = nal.split_first()?;
    // A ue(v) for a u32 takes at most 63 bits; 16 escaped bytes hold at least 11 unescaped ones.
    let head = body.get(..16).unwrap_or(body);
    read_ue(&remove_emulation_prevention(head))
}

/// Reads an unsigned Exp-Golomb code (9.1) from the start of `data`.
fn read_ue(data: &[u8]) -> Option<u32> {
    let mut bits = data
        .iter()
        .flat_map(|&byte| (0..8).rev().map(move |i| (byte >> i) & 1));
    let mut leading_zeros = 0u32;
    while bits.next()? == 0 {
        leading_zeros += 1;
        if leading_zeros > 31 {
            return None;
        }
    }
    let mut suffix = 0u64;
    for _ in 0..leading_zeros {
        suffix = (suffix << 1) | u64::from(bits.next()?);
    }
    u32::try_from((1u64 << leading_zeros) - 1 + suffix).ok()
}

/// Splits an Annex B elementary stream (e.g. what `ffmpeg -c copy -f h264` writes from MPEG-TS or
/// HLS) into access units following 7.4.1.2.3.
///
/// A new access unit starts at an access unit delimiter; at an SEI, SPS, PPS or type 14 to 18 NAL
/// unit that follows a VCL NAL unit of the current access unit; or at a VCL NAL unit whose
/// `first_mb_in_slice` is 0 that follows a VCL NAL unit. Returns byte ranges of `data`: each runs
/// from the start code (zero bytes included) of the access unit's first NAL unit to where the next
/// access unit's starts, and the last one to the end of `data`. Bytes before the first start code
/// belong to no access unit.
pub fn split_access_units(data: &[u8]) -> Vec<Range<usize>> {
    let mut units = Vec::new();
    let mut current: Option<usize> = None;
    let mut seen_vcl = false;
    let mut nals = annexb_nals(data);
    while let Some(raw) = nals.next_raw() {
        let t = nal_type(raw.nal).unwrap_or(0);
        let starts_new = match t {
            NAL_AUD => true,
            NAL_SEI | NAL_SPS | NAL_PPS | 14..=18 => seen_vcl,
            t if is_vcl(t) => seen_vcl && first_mb_in_slice(raw.nal) == Some(0),
            _ => false,
        };
        match current {
            Some(start) if starts_new => {
                units.push(start..raw.prefix);
                current = Some(raw.prefix);
                seen_vcl = false;
            }
            Some(_) => {}
            None => current = Some(raw.prefix),
        }
        seen_vcl |= is_vcl(t);
    }
    if let Some(start) = current {
        units.push(start..data.len());
    }
    units
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annexb_mixed_start_codes_and_trailing_zeros() {
        let data = [
            0xAA, 0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 0, 0, 1, 0x65, 0x88, 0, 0,
            1, 0, 0, 1, 0x41,
        ];
        let nals: Vec<_> = annexb_nals(&data).collect();
        assert_eq!(
            nals,
            vec![
                (5, &[0x09, 0xF0][..]),
                (10, &[0x67, 1, 2][..]),
                (19, &[0x65, 0x88][..]),
                (27, &[0x41][..]),
            ]
        );
    }

    #[test]
    fn annexb_without_start_code_is_empty() {
        assert_eq!(annexb_nals(&[0x65, 1, 2, 3]).count(), 0);
        assert_eq!(annexb_nals(&[]).count(), 0);
        assert_eq!(annexb_nals(&[0, 0, 1]).count(), 0);
    }

    #[test]
    fn avcc_lengths_and_truncation() {
        let data = [0, 0, 0, 2, 0x65, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x06];
        let nals: Vec<_> = avcc_nals(&data, 4).collect();
        assert_eq!(nals, vec![Ok(&[0x65, 1][..]), Ok(&[0x06][..])]);

        let nals: Vec<_> = avcc_nals(&[0, 5, 0x65, 1], 2).collect();
        assert_eq!(
            nals,
            vec![Err(NalError::Truncated {
                offset: 2,
                needed: 3
            })]
        );
        let nals: Vec<_> = avcc_nals(&[0, 0, 1], 4).collect();
        assert_eq!(
            nals,
            vec![Err(NalError::Truncated {
                offset: 0,
                needed: 1
            })]
        );
        assert!(matches!(
            avcc_nals(&[1, 2], 0).next(),
            Some(Err(NalError::Invalid { offset: 0, .. }))
        ));
    }

    #[test]
    fn emulation_prevention_round_trip() {
        let rbsp = [0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0, 0];
        let mut ebsp = Vec::new();
        add_emulation_prevention(&rbsp, &mut ebsp);
        assert_eq!(
            ebsp,
            [0, 0, 3, 0, 0, 3, 0, 1, 0, 0, 3, 2, 0, 0, 3, 3, 0, 0, 4, 0, 0, 3]
        );
        assert_eq!(remove_emulation_prevention(&ebsp), &rbsp[..]);
        assert!(matches!(
            remove_emulation_prevention(&[1, 0, 0, 4]),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn exp_golomb() {
        assert_eq!(read_ue(&[0b1000_0000]), Some(0));
        assert_eq!(read_ue(&[0b0100_0000]), Some(1));
        assert_eq!(read_ue(&[0b0110_0000]), Some(2));
        assert_eq!(read_ue(&[0b0001_0001]), Some(7));
        assert_eq!(read_ue(&[0x08, 0x80]), Some(16));
        assert_eq!(
            read_ue(&[0, 0, 0, 0x01, 0xFF, 0xFF, 0xFF, 0xFE]),
            Some(u32::MAX - 1)
        );
        assert_eq!(read_ue(&[0, 0, 0, 0, 0x80]), None);
        assert_eq!(read_ue(&[0b0000_0001]), None);
        assert_eq!(first_mb_in_slice(&[0x41, 0x9A]), Some(0));
        assert_eq!(first_mb_in_slice(&[0x41, 0x0B, 0x40]), Some(21));
        assert_eq!(first_mb_in_slice(&[0x41]), None);
    }

    #[test]
    fn access_units_split_on_aud_sei_and_first_mb() {
        // AUD SPS PPS SEI IDR(first_mb 0) IDR(first_mb 1) | SEI slice(0) slice(1) | slice(0) | AUD slice(0)
        let mut s = Vec::new();
        for nal in [
            &[0x09, 0xF0][..],
            &[0x67, 0x42],
            &[0x68, 0xCE],
            &[0x06, 0x05, 0x00, 0x80],
            &[0x65, 0x88],
            &[0x65, 0x40],
        ] {
            s.extend_from_slice(&[0, 0, 0, 1]);
            s.extend_from_slice(nal);
        }
        let second = s.len();
        for nal in [&[0x06, 0x05, 0x00, 0x80][..], &[0x41, 0x9A], &[0x41, 0x40]] {
            s.extend_from_slice(&[0, 0, 1]);
            s.extend_from_slice(nal);
        }
        let third = s.len();
        s.extend_from_slice(&[0, 0, 0, 1, 0x41, 0x9A, 0x00]);
        // The trailing zero byte counts as part of the next access unit's start code.
        let fourth = s.len() - 1;
        s.extend_from_slice(&[0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x41, 0x9A]);
        assert_eq!(
            split_access_units(&s),
            vec![0..second, second..third, third..fourth, fourth..s.len()]
        );
        assert!(split_access_units(&[1, 2, 3]).is_empty());
    }
}
