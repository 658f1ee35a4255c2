//! The Glasswatch frame stamp: one H.264 SEI `user_data_unregistered` message per access unit.
//!
//! The layout is fixed by DESIGN.md ("In-band frame stamp"). The syntax follows ITU-T H.264 7.3.2.3
//! (`sei_rbsp`), 7.3.2.3.1 (`sei_message`, with its 0xFF-extended `payloadType` and `payloadSize`),
//! 7.3.2.11 (`rbsp_trailing_bits`) and D.1.7 / D.2.7 (user data unregistered, UUID first).
//! Emulation prevention is that of 7.4.1.
//!
//! The module builds and finds stamps only: it does not interpret other SEI payload types (it
//! skips them by size), does not check the placement of the SEI within the access unit, and does
//! not decide what to do with an access unit that has no stamp.

use crate::h264::{
    add_emulation_prevention, annexb_nals, avcc_nals, nal_type, remove_emulation_prevention,
    NalError, NAL_SEI,
};

/// UUID `1aa60c2a-2f66-44ba-8983-79b063c25a95` that opens every stamp payload.
pub const STAMP_UUID: [u8; 16] = [
    0x1a, 0xa6, 0x0c, 0x2a, 0x2f, 0x66, 0x44, 0xba, 0x89, 0x83, 0x79, 0xb0, 0x63, 0xc2, 0x5a, 0x95,
];
/// Stamp layout version written after the UUID.
pub const STAMP_VERSION: u8 = 1;
/// Size of the stamp's SEI payload: UUID, version, flags, stream tag, seq and capture time.
pub const STAMP_PAYLOAD_LEN: usize = 38;
/// SEI `payloadType` of user data unregistered.
pub const USER_DATA_UNREGISTERED: usize = 5;
/// Largest SEI NAL unit [`parse_sei_nal`] accepts. Encoders write a few hundred bytes at most.
pub const MAX_SEI_NAL_LEN: usize = 1 << 20;

const FLAG_KEYFRAME: u8 = 0x01;

/// A problem in an SEI NAL unit or a stamp payload.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum SeiError {
    /// The SEI RBSP (after the header byte, emulation prevention removed) ends `needed` bytes too
    /// early for what starts at `offset`.
    #[error("truncated SEI at RBSP byte {offset}: {needed} more bytes needed")]
    Truncated { offset: usize, needed: usize },
    /// The data at `offset` breaks the rule `what`.
    #[error("invalid SEI at byte {offset}: {what}")]
    Invalid { offset: usize, what: &'static str },
    /// A stamp payload does not start with [`STAMP_UUID`].
    #[error("user data UUID is not the Glasswatch stamp's")]
    WrongUuid,
    /// A stamp payload carries a version this code does not know.
    #[error("unsupported stamp version {0}")]
    UnsupportedVersion(u8),
    /// A stamp payload is not [`STAMP_PAYLOAD_LEN`] bytes long.
    #[error("stamp payload is {0} bytes, expected {STAMP_PAYLOAD_LEN}")]
    WrongLength(usize),
    /// An error inside the SEI NAL unit whose header byte is at `nal_offset` of the access unit.
    #[error("SEI NAL unit at byte {nal_offset}: {inner}")]
    InNal {
        nal_offset: usize,
        inner: Box<SeiError>,
    },
    /// The length-prefixed framing around the NAL units is broken.
    #[error(transparent)]
    Nal(#[from] NalError),
}

/// What the agent stamps on every access unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameStamp {
    /// The access unit is an IDR (flags bit 0).
    pub keyframe: bool,
    /// [`stream_tag`] of the stream.
    pub stream_tag: u32,
    /// Frame counter of the stream, from 0 at each pipeline start.
    pub seq: u64,
    /// Capture time, Unix microseconds.
    pub capture_us: i64,
}

impl FrameStamp {
    /// Serializes the stamp into its SEI payload (all integers big-endian).
    pub fn to_payload(&self) -> [u8; STAMP_PAYLOAD_LEN] {
        let mut p = [0u8; STAMP_PAYLOAD_LEN];
        p[..16].copy_from_slice(&STAMP_UUID);
        p[16] = STAMP_VERSION;
        p[17] = if self.keyframe { FLAG_KEYFRAME } else { 0 };
        p[18..22].copy_from_slice(&self.stream_tag.to_be_bytes());
        p[22..30].copy_from_slice(&self.seq.to_be_bytes());
        p[30..38].copy_from_slice(&self.capture_us.to_be_bytes());
        p
    }

    /// Parses a stamp from a user data unregistered payload (UUID included).
    ///
    /// Checks the UUID, then the version, then the length. Flag bits other than bit 0 are ignored.
    pub fn from_payload(payload: &[u8]) -> Result<FrameStamp, SeiError> {
        let wrong_length = || SeiError::WrongLength(payload.len());
        let mut rest = payload;
        if take::<16>(&mut rest).ok_or_else(wrong_length)? != STAMP_UUID {
            return Err(SeiError::WrongUuid);
        }
        let [version] = take::<1>(&mut rest).ok_or_else(wrong_length)?;
        if version != STAMP_VERSION {
            return Err(SeiError::UnsupportedVersion(version));
        }
        decode_v1_fields(rest).ok_or_else(wrong_length)
    }
}

/// Decodes what follows the version byte of a version 1 stamp; `None` unless exactly 21 bytes.
fn decode_v1_fields(mut rest: &[u8]) -> Option<FrameStamp> {
    let [flags] = take::<1>(&mut rest)?;
    let stamp = FrameStamp {
        keyframe: flags & FLAG_KEYFRAME != 0,
        stream_tag: u32::from_be_bytes(take(&mut rest)?),
        seq: u64::from_be_bytes(take(&mut rest)?),
        capture_us: i64::from_be_bytes(take(&mut rest)?),
    };
    rest.is_empty().then_some(stamp)
}

/// Takes the first `N` bytes off `buf`.
fn take<const N: usize>(buf: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = buf.split_first_chunk::<N>()?;
    *buf = rest;
    Some(*head)
}

/// The stream tag of a stream: the low 32 bits of XXH3-64 (seed 0) of `"{device_id}/{stream_id}"`.
pub fn stream_tag(device_id: &str, stream_id: &str) -> u32 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(device_id.as_bytes());
    h.update(b"/");
    h.update(stream_id.as_bytes());
    // Truncation to the low 32 bits is the definition of the tag.
    h.digest() as u32
}

/// Appends a complete SEI NAL unit carrying `stamp` to `out`, without start code or length prefix.
///
/// The NAL unit is the header byte 0x06, one user data unregistered message (payloadType 5,
/// payloadSize 38) and the rbsp trailing bits 0x80, with emulation prevention applied after the
/// header.
pub fn build_sei_nal(stamp: &FrameStamp, out: &mut Vec<u8>) {
    let mut rbsp = [0u8; STAMP_PAYLOAD_LEN + 3];
    rbsp[0] = USER_DATA_UNREGISTERED as u8;
    rbsp[1] = STAMP_PAYLOAD_LEN as u8;
    rbsp[2..2 + STAMP_PAYLOAD_LEN].copy_from_slice(&stamp.to_payload());
    rbsp[2 + STAMP_PAYLOAD_LEN] = 0x80;
    out.push(NAL_SEI);
    add_emulation_prevention(&rbsp, out);
}

/// Parses one SEI NAL unit (header byte included, emulation prevention still applied) and returns
/// the stamp if one of its messages is user data unregistered with [`STAMP_UUID`].
///
/// Other messages, such as x264's own user data or other payload types, are skipped. `Ok(None)`
/// when no message is a stamp. Errors carry offsets into the RBSP.
pub fn parse_sei_nal(nal: &[u8]) -> Result<Option<FrameStamp>, SeiError> {
    let Some((&header, ebsp)) = nal.split_first() else {
        return Err(SeiError::Truncated {
            offset: 0,
            needed: 1,
        });
    };
    if header & 0x1f != NAL_SEI {
        return Err(SeiError::Invalid {
            offset: 0,
            what: "not an SEI NAL unit",
        });
    }
    if nal.len() > MAX_SEI_NAL_LEN {
        return Err(SeiError::Invalid {
            offset: 0,
            what: "SEI NAL unit larger than MAX_SEI_NAL_LEN",
        });
    }
    let rbsp = remove_emulation_prevention(ebsp);
    let mut pos = 0;
    while more_rbsp_data(rbsp.get(pos..).unwrap_or_default()) {
        let (payload_type, after_type) = read_sei_number(&rbsp, pos)?;
        let (payload_size, start) = read_sei_number(&rbsp, after_type)?;
        let available = rbsp.get(start..).unwrap_or_default();
        let payload = available
            .get(..payload_size)
            .ok_or_else(|| SeiError::Truncated {
                offset: start,
                needed: payload_size.saturating_sub(available.len()),
            })?;
        if payload_type == USER_DATA_UNREGISTERED && payload.starts_with(&STAMP_UUID) {
            return FrameStamp::from_payload(payload).map(Some);
        }
        pos = start + payload_size;
    }
    Ok(None)
}

/// Tells whether an SEI message starts in `rest`: anything but nothing or the rbsp trailing
/// bits (0x80 followed only by zero bytes).
fn more_rbsp_data(rest: &[u8]) -> bool {
    match rest.split_first() {
        None => false,
        Some((0x80, tail)) => tail.iter().any(|&b| b != 0),
        Some(_) => true,
    }
}

/// Reads a `payloadType` or `payloadSize` (a run of 0xFF bytes, each adding 255, then a last byte)
/// starting at `pos`. Returns the value and the position after it.
fn read_sei_number(rbsp: &[u8], pos: usize) -> Result<(usize, usize), SeiError> {
    let mut value = 0usize;
    let mut at = pos;
    loop {
        let byte = *rbsp.get(at).ok_or(SeiError::Truncated {
            offset: at,
            needed: 1,
        })?;
        value = value
            .checked_add(usize::from(byte))
            .ok_or(SeiError::Invalid {
                offset: at,
                what: "SEI payload type or size overflows",
            })?;
        at += 1;
        if byte != 0xFF {
            return Ok((value, at));
        }
    }
}

/// Finds the stamp in an access unit (or any run of NAL units) in Annex B format.
///
/// Every SEI NAL unit is examined, so a malformed foreign SEI does not hide a stamp after it.
/// `Ok(None)` when there is no stamp and every SEI parsed; otherwise the first error, as
/// [`SeiError::InNal`] with the NAL unit's offset in `au`.
pub fn find_stamp_annexb(au: &[u8]) -> Result<Option<FrameStamp>, SeiError> {
    find_stamp(annexb_nals(au).map(Ok))
}

/// Finds the stamp in an AVCC / fMP4 sample whose NAL units carry `length_size`-byte big-endian
/// length prefixes. Errors as [`find_stamp_annexb`], plus [`SeiError::Nal`] for broken framing
/// when no stamp came before it.
pub fn find_stamp_avcc(sample: &[u8], length_size: usize) -> Result<Option<FrameStamp>, SeiError> {
    let mut nals = avcc_nals(sample, length_size);
    find_stamp(std::iter::from_fn(|| nals.next_with_offset()))
}

fn find_stamp<'a>(
    nals: impl Iterator<Item = Result<(usize, &'a [u8]), NalError>>,
) -> Result<Option<FrameStamp>, SeiError> {
    let mut first_error = None;
    for item in nals {
        let (offset, nal) = match item {
            Ok(found) => found,
            Err(e) => {
                first_error.get_or_insert(SeiError::Nal(e));
                break;
            }
        };
        if nal_type(nal) != Some(NAL_SEI) {
            continue;
        }
        match parse_sei_nal(nal) {
            Ok(Some(stamp)) => return Ok(Some(stamp)),
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(SeiError::InNal {
                    nal_offset: offset,
                    inner: Box::new(e),
                });
            }
        }
    }
    first_error.map_or(Ok(None), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_layout() {
        let stamp = FrameStamp {
            keyframe: true,
            stream_tag: 0x6a62e076,
            seq: 0x0102030405060708,
            capture_us: -2,
        };
        let p = stamp.to_payload();
        assert_eq!(p[..16], STAMP_UUID);
        assert_eq!(p[16..22], [1, 1, 0x6a, 0x62, 0xe0, 0x76]);
        assert_eq!(p[22..30], [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(p[30..], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(FrameStamp::from_payload(&p), Ok(stamp));
    }

    #[test]
    fn payload_checks() {
        let p = FrameStamp {
            keyframe: false,
            stream_tag: 1,
            seq: 2,
            capture_us: 3,
        }
        .to_payload();
        let mut other = p;
        other[3] ^= 1;
        assert_eq!(FrameStamp::from_payload(&other), Err(SeiError::WrongUuid));
        let mut v2 = p;
        v2[16] = 2;
        assert_eq!(
            FrameStamp::from_payload(&v2),
            Err(SeiError::UnsupportedVersion(2))
        );
        assert_eq!(
            FrameStamp::from_payload(&p[..37]),
            Err(SeiError::WrongLength(37))
        );
        assert_eq!(
            FrameStamp::from_payload(&p[..10]),
            Err(SeiError::WrongLength(10))
        );
        let mut long = p.to_vec();
        long.push(0);
        assert_eq!(
            FrameStamp::from_payload(&long),
            Err(SeiError::WrongLength(39))
        );
    }

    #[test]
    fn parse_errors_have_offsets() {
        assert!(matches!(
            parse_sei_nal(&[0x65, 0x05]),
            Err(SeiError::Invalid { offset: 0, .. })
        ));
        assert_eq!(
            parse_sei_nal(&[0x06, 0x05, 0x30, 1, 2]),
            Err(SeiError::Truncated {
                offset: 2,
                needed: 46
            })
        );
        assert_eq!(
            parse_sei_nal(&[0x06, 0xFF, 0xFF]),
            Err(SeiError::Truncated {
                offset: 2,
                needed: 1
            })
        );
        assert_eq!(parse_sei_nal(&[0x06, 0x80]), Ok(None));
        assert_eq!(parse_sei_nal(&[0x06]), Ok(None));
    }
}
