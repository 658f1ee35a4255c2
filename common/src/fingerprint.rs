//! The access-unit fingerprint: XXH3-64 (seed 0) over the access unit's VCL NAL units.
//!
//! DESIGN.md ("In-band frame stamp") defines it so that a frame can be recognized without its SEI
//! stamp and without decoding. The VCL NAL units (`nal_unit_type` 1 to 5, ITU-T H.264 7.4.1 and
//! Table 7-1) are hashed in stream order, each with its header byte and its emulation prevention
//! bytes, without start codes, length prefixes or Annex B trailing zero bytes.
//!
//! The hash is computed in a streaming way, with no concatenation buffer. The module does not split
//! access units (see [`crate::h264::split_access_units`]) and does not notice that an origin has
//! rewritten the slices, which gives a different fingerprint.

use crate::h264::{annexb_nals, avcc_nals, is_vcl, nal_type, NalError};
use std::convert::Infallible;
use xxhash_rust::xxh3::Xxh3;

/// Fingerprints the VCL NAL units among `nals` (header byte included, emulation prevention kept).
/// Non-VCL NAL units are skipped; `None` when there is no VCL NAL unit.
pub fn fingerprint_nals<'a>(nals: impl IntoIterator<Item = &'a [u8]>) -> Option<u64> {
    match hash_vcl(nals.into_iter().map(Ok::<_, Infallible>)) {
        Ok(fp) => fp,
        Err(never) => match never {},
    }
}

/// Hashes the VCL NAL units among `nals`, stopping at the first error.
fn hash_vcl<'a, E>(nals: impl IntoIterator<Item = Result<&'a [u8], E>>) -> Result<Option<u64>, E> {
    let mut hasher = Xxh3::new();
    let mut any = false;
    for nal in nals {
        let nal = nal?;
        if nal_type(nal).is_some_and(is_vcl) {
            hasher.update(nal);
            any = true;
        }
    }
    Ok(any.then(|| hasher.digest()))
}

/// Fingerprints an access unit in Annex B format.
pub fn fingerprint_annexb(au: &[u8]) -> Option<u64> {
    fingerprint_nals(annexb_nals(au).map(|(_, nal)| nal))
}

/// Fingerprints an AVCC / fMP4 sample with `length_size`-byte NAL length prefixes. Fails when the
/// framing is broken, since a partial hash would be meaningless.
pub fn fingerprint_avcc(sample: &[u8], length_size: usize) -> Result<Option<u64>, NalError> {
    hash_vcl(avcc_nals(sample, length_size))
}

/// Formats a fingerprint as 16 lowercase hex characters.
pub fn to_hex(fp: u64) -> String {
    format!("{fp:016x}")
}

/// Parses a fingerprint written as exactly 16 hex characters (either case).
pub fn from_hex(s: &str) -> Option<u64> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_only_vcl_nals_in_order() {
        let slice_a: &[u8] = &[0x65, 0x88, 0x00, 0x00, 0x03, 0x01];
        let slice_b: &[u8] = &[0x65, 0x40, 0x12];
        let expected = xxhash_rust::xxh3::xxh3_64(&[slice_a, slice_b].concat());
        let nals: [&[u8]; 4] = [&[0x09, 0xF0], &[0x06, 0x05, 0x00, 0x80], slice_a, slice_b];
        assert_eq!(fingerprint_nals(nals), Some(expected));
        assert_eq!(fingerprint_nals([&[0x09u8, 0xF0][..]]), None);

        let mut annexb = Vec::new();
        let mut avcc = Vec::new();
        for nal in nals {
            annexb.extend_from_slice(&[0, 0, 0, 1]);
            annexb.extend_from_slice(nal);
            avcc.extend_from_slice(&u32::try_from(nal.len()).unwrap().to_be_bytes());
            avcc.extend_from_slice(nal);
        }
        assert_eq!(fingerprint_annexb(&annexb), Some(expected));
        assert_eq!(fingerprint_avcc(&avcc, 4), Ok(Some(expected)));
        assert!(fingerprint_avcc(&avcc[..avcc.len() - 1], 4).is_err());
    }

    #[test]
    fn hex() {
        assert_eq!(to_hex(0x692adb679ee977a5), "692adb679ee977a5");
        assert_eq!(to_hex(1), "0000000000000001");
        assert_eq!(from_hex("692ADB679ee977a5"), Some(0x692adb679ee977a5));
        assert_eq!(from_hex("+92adb679ee977a5"), None);
        assert_eq!(from_hex("692adb679ee977a"), None);
        assert_eq!(from_hex("692adb679ee977a5 "), None);
    }
}
