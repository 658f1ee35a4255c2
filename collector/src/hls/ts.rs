//! MPEG-TS segments (classic HLS) down to the frames' stamps and fingerprints.
//!
//! References: ISO/IEC 13818-1 2.4.3.2–2.4.3.5 (transport packet, adaptation field, continuity
//! counter), 2.4.3.6–2.4.3.7 (PES packet, PTS), 2.4.4.3 (PAT) and 2.4.4.8 (PMT, `stream_type`
//! 0x1B = H.264), Annex A (CRC-32 of PSI sections); ITU-T H.264 Annex B for the elementary
//! stream, split into access units by [`glasswatch_common::h264::split_access_units`].
//!
//! The reader walks 188-byte packets, follows PAT → PMT to the first H.264 elementary stream,
//! reassembles its PES packets (MediaMTX, ffmpeg and GStreamer write one per access unit) and
//! reports each access unit's stamp, fingerprint, keyframe flag and PTS. Damage is tolerated and
//! counted in [`TsReport`] rather than failing the segment: lost sync bytes (it resynchronises on
//! a 0x47 followed by another 188 bytes later), continuity counter gaps, broken PSI or PES
//! headers, a cut last packet. It is pure and never panics on its input.
//!
//! It does not handle PSI sections spanning several packets, several programs' worth of video
//! (the first H.264 stream of the first PMT wins), 192/204-byte packets (M2TS, FEC), scrambled
//! packets (skipped), DTS, PCR, audio or H.265, and it does not decode video.

use glasswatch_common::fingerprint::fingerprint_annexb;
use glasswatch_common::h264::{annexb_nals, nal_type, split_access_units, NAL_IDR};
use glasswatch_common::sei::{find_stamp_annexb, FrameStamp, SeiError};

/// Size of a transport packet.
pub const PACKET_LEN: usize = 188;
/// Sync byte that starts every transport packet.
pub const SYNC_BYTE: u8 = 0x47;
/// Largest PES packet reassembled; bigger ones are dropped and counted in `pes_errors`.
pub const MAX_PES_LEN: usize = 8 << 20;
/// `stream_type` of H.264 video in a PMT.
pub const STREAM_TYPE_H264: u8 = 0x1b;

const PAT_PID: u16 = 0;
const NULL_PID: u16 = 0x1fff;

/// A fatal problem with a segment: nothing usable could be read from it.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum TsError {
    /// No two sync bytes 188 bytes apart anywhere in the `len` bytes given (not MPEG-TS).
    #[error("no MPEG-TS packet sync in {len} bytes")]
    NoSync { len: usize },
    /// No PMT listing an H.264 stream (`stream_type` 0x1B) was found in `packets` packets.
    #[error("no PMT with an H.264 stream in {packets} packets")]
    NoVideoStream { packets: usize },
}

/// One access unit of the H.264 stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsFrame {
    /// The Glasswatch stamp, or `None` when the access unit has none or it is malformed.
    pub stamp: Option<FrameStamp>,
    /// Why the stamp could not be read when a malformed SEI got in the way (for the caller to
    /// count); `None` when the stamp was read or simply absent.
    pub stamp_error: Option<SeiError>,
    /// The access-unit fingerprint, `None` when the access unit has no VCL NAL unit.
    pub fingerprint: Option<u64>,
    /// The access unit holds an IDR slice (NAL unit type 5).
    pub keyframe: bool,
    /// PTS in 90 kHz units, for the first access unit of a PES that carries one; `None` for
    /// further access units of the same PES.
    pub pts: Option<u64>,
    /// A packet of this PES was lost (continuity gap, resync, cut segment), so the fingerprint
    /// and possibly the stamp are unreliable.
    pub damaged: bool,
    /// Byte offset in the segment of the packet that started this frame's PES.
    pub pes_offset: usize,
}

/// What [`frames`] read from a segment, with counts of the damage it tolerated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TsReport {
    /// The access units of the H.264 stream, in stream order.
    pub frames: Vec<TsFrame>,
    /// PID of the H.264 stream.
    pub video_pid: u16,
    /// Transport packets read (after resynchronisation).
    pub packets: usize,
    /// Bytes skipped to find the sync byte again.
    pub resync_skipped_bytes: usize,
    /// Bytes of a cut packet at the end of the segment.
    pub trailing_bytes: usize,
    /// Continuity counter gaps on the video PID (lost packets).
    pub cc_errors: usize,
    /// Packets dropped as corrupt: `transport_error_indicator` set, scrambled, or an adaptation
    /// field longer than the packet.
    pub bad_packets: usize,
    /// PAT/PMT sections ignored: CRC mismatch, spanning packets, or malformed.
    pub psi_errors: usize,
    /// PES packets dropped: no start code, malformed header, or over [`MAX_PES_LEN`].
    pub pes_errors: usize,
}

/// Reads the H.264 access units of an MPEG-TS segment.
///
/// Each PES packet of the video PID is split into access units with `split_access_units`, so a
/// PES holding several still yields one frame each. A PES still open at the end of the segment is
/// emitted (MediaMTX ends segments at a PES boundary), marked damaged if the segment was cut
/// inside a packet. Errors only when the bytes are not MPEG-TS or hold no H.264 stream.
pub fn frames(segment: &[u8]) -> Result<TsReport, TsError> {
    let mut report = TsReport::default();
    let mut pmt_pids: Vec<u16> = Vec::new();
    let mut video_pid: Option<u16> = None;
    let mut last_cc: Option<u8> = None;
    let mut pes: Option<Pes> = None;
    let mut pos = 0usize;
    let mut synced_once = false;
    // Once a packet was read, a sync byte where the next packet should start is trusted alone,
    // as demuxers do, so the packet before a damaged one is kept; a first packet, or one found by
    // resynchronising, needs a second sync byte 188 bytes later.
    let mut in_sync = false;

    while pos < segment.len() {
        let sync_here = segment.get(pos) == Some(&SYNC_BYTE);
        let confirmed = sync_here && sync_confirmed(segment, pos);
        if !(confirmed || (sync_here && in_sync)) {
            match find_sync(segment, pos) {
                Some(next) => {
                    report.resync_skipped_bytes += next - pos;
                    // last_cc is kept: a gap then counts the video packets lost in between.
                    if let Some(p) = pes.as_mut() {
                        p.damaged = true;
                    }
                    pos = next;
                }
                None => {
                    let rest = segment.len() - pos;
                    if synced_once {
                        if rest < PACKET_LEN {
                            report.trailing_bytes = rest;
                        } else {
                            report.resync_skipped_bytes += rest;
                        }
                        if let Some(p) = pes.as_mut() {
                            p.damaged = true;
                        }
                    }
                    break;
                }
            }
        }
        let Some(packet) = pos
            .checked_add(PACKET_LEN)
            .and_then(|end| segment.get(pos..end))
        else {
            // A sync byte with less than a packet after it: the segment was cut.
            report.trailing_bytes = segment.len() - pos;
            if let Some(p) = pes.as_mut() {
                p.damaged = true;
            }
            break;
        };
        synced_once = true;
        in_sync = true;
        let at = pos;
        pos += PACKET_LEN;
        report.packets += 1;
        let Some(p) = Packet::parse(packet) else {
            report.bad_packets += 1;
            continue;
        };
        if p.pid == NULL_PID {
            continue;
        }
        if p.pid == PAT_PID {
            if p.unit_start {
                match parse_pat(p.payload) {
                    Some(pids) => pmt_pids = pids,
                    None => report.psi_errors += 1,
                }
            }
            continue;
        }
        if video_pid.is_none() && pmt_pids.contains(&p.pid) {
            if p.unit_start {
                match parse_pmt(p.payload) {
                    Some(found) => {
                        video_pid = found;
                        if let Some(v) = found {
                            report.video_pid = v;
                        }
                    }
                    None => report.psi_errors += 1,
                }
            }
            continue;
        }
        if Some(p.pid) != video_pid {
            continue;
        }
        // Continuity (2.4.3.3): the counter goes up by one per packet with payload; one
        // duplicate is allowed; a discontinuity_indicator resets the expectation.
        if p.has_payload {
            match last_cc {
                Some(prev) if !p.discontinuity => {
                    if p.cc == prev {
                        continue; // duplicate packet
                    }
                    if p.cc != (prev + 1) & 0x0f {
                        report.cc_errors += 1;
                        if let Some(pes) = pes.as_mut() {
                            pes.damaged = true;
                        }
                    }
                }
                _ => {}
            }
            last_cc = Some(p.cc);
        }
        if p.unit_start {
            if let Some(done) = pes.take() {
                finish_pes(done, &mut report);
            }
            pes = Some(Pes {
                offset: at,
                bytes: Vec::new(),
                damaged: false,
                oversized: false,
            });
        }
        if let Some(open) = pes.as_mut() {
            if open.bytes.len().saturating_add(p.payload.len()) > MAX_PES_LEN {
                open.oversized = true;
            } else {
                open.bytes.extend_from_slice(p.payload);
            }
        }
    }
    if let Some(done) = pes.take() {
        finish_pes(done, &mut report);
    }
    if !synced_once {
        return Err(TsError::NoSync { len: segment.len() });
    }
    if video_pid.is_none() {
        return Err(TsError::NoVideoStream {
            packets: report.packets,
        });
    }
    Ok(report)
}

/// Tells whether the sync byte at `pos` is followed by another one a packet later, or by the end
/// of the data (the last packet).
fn sync_confirmed(data: &[u8], pos: usize) -> bool {
    match pos.checked_add(PACKET_LEN) {
        Some(next) if next == data.len() => true,
        Some(next) => data.get(next) == Some(&SYNC_BYTE),
        None => false,
    }
}

/// Finds the next confirmed sync byte at or after `from`.
fn find_sync(data: &[u8], from: usize) -> Option<usize> {
    let rest = data.get(from..)?;
    rest.iter()
        .enumerate()
        .filter(|&(_, &b)| b == SYNC_BYTE)
        .map(|(i, _)| from + i)
        .find(|&at| sync_confirmed(data, at))
}

/// The fields of a transport packet header this reader uses.
struct Packet<'a> {
    pid: u16,
    unit_start: bool,
    cc: u8,
    has_payload: bool,
    discontinuity: bool,
    payload: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Parses a 188-byte packet; `None` for a corrupt or scrambled one.
    fn parse(packet: &'a [u8]) -> Option<Self> {
        let b1 = *packet.get(1)?;
        let b2 = *packet.get(2)?;
        let b3 = *packet.get(3)?;
        if b1 & 0x80 != 0 || b3 & 0xc0 != 0 {
            return None; // transport_error_indicator or transport_scrambling_control
        }
        let control = (b3 >> 4) & 0x03;
        let has_payload = control & 0x01 != 0;
        let mut payload_at = 4usize;
        let mut discontinuity = false;
        if control & 0x02 != 0 {
            let af_len = usize::from(*packet.get(4)?);
            if af_len > 0 {
                discontinuity = packet.get(5)? & 0x80 != 0;
            }
            payload_at = 5 + af_len;
            if payload_at > packet.len() {
                return None;
            }
        }
        if control == 0 {
            return None;
        }
        Some(Packet {
            pid: (u16::from(b1 & 0x1f) << 8) | u16::from(b2),
            unit_start: b1 & 0x40 != 0,
            cc: b3 & 0x0f,
            has_payload,
            discontinuity,
            payload: if has_payload {
                packet.get(payload_at..)?
            } else {
                &[]
            },
        })
    }
}

/// Returns the section that a PSI payload's `pointer_field` points to, checked against its
/// `section_length` and CRC-32, without the CRC. `None` if it spans packets or is malformed.
fn psi_section(payload: &[u8], table_id: u8) -> Option<&[u8]> {
    let pointer = usize::from(*payload.first()?);
    let section = payload.get(1 + pointer..)?;
    if *section.first()? != table_id {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([*section.get(1)?, *section.get(2)?]) & 0x0fff);
    let whole = section.get(..3 + length)?;
    if length < 9 || crc32_mpeg2(whole) != 0 {
        return None;
    }
    whole.get(..whole.len() - 4)
}

/// Reads the PMT PIDs from a PAT packet's payload (2.4.4.3).
fn parse_pat(payload: &[u8]) -> Option<Vec<u16>> {
    let section = psi_section(payload, 0x00)?;
    let programs = section.get(8..)?;
    Some(
        programs
            .chunks_exact(4)
            .filter_map(|p| match *p {
                // Program 0 points at the network information table, not a PMT.
                [n0, n1, pid0, pid1] if [n0, n1] != [0, 0] => {
                    Some(u16::from_be_bytes([pid0, pid1]) & 0x1fff)
                }
                _ => None,
            })
            .collect(),
    )
}

/// Reads the first H.264 elementary stream's PID from a PMT packet's payload (2.4.4.8);
/// `Some(None)` for a valid PMT without one.
fn parse_pmt(payload: &[u8]) -> Option<Option<u16>> {
    let section = psi_section(payload, 0x02)?;
    let info_len = usize::from(u16::from_be_bytes([*section.get(10)?, *section.get(11)?]) & 0x0fff);
    let mut es = section.get(12usize.checked_add(info_len)?..)?;
    while es.len() >= 5 {
        let stream_type = *es.first()?;
        let pid = u16::from_be_bytes([*es.get(1)?, *es.get(2)?]) & 0x1fff;
        let es_info_len = usize::from(u16::from_be_bytes([*es.get(3)?, *es.get(4)?]) & 0x0fff);
        if stream_type == STREAM_TYPE_H264 {
            return Some(Some(pid));
        }
        es = es.get(5usize.checked_add(es_info_len)?..)?;
    }
    Some(None)
}

/// CRC-32/MPEG-2 (Annex A); over a section including its CRC it gives 0.
fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A PES packet being reassembled.
struct Pes {
    offset: usize,
    bytes: Vec<u8>,
    damaged: bool,
    oversized: bool,
}

/// Parses a reassembled PES packet (2.4.3.6) and appends its access units to the report.
fn finish_pes(pes: Pes, report: &mut TsReport) {
    if pes.oversized {
        report.pes_errors += 1;
        return;
    }
    let Some((pts, es)) = pes_payload(&pes.bytes) else {
        report.pes_errors += 1;
        return;
    };
    for (i, au) in split_access_units(es).into_iter().enumerate() {
        let Some(au) = es.get(au) else { continue };
        let (stamp, stamp_error) = match find_stamp_annexb(au) {
            Ok(stamp) => (stamp, None),
            Err(e) => (None, Some(e)),
        };
        report.frames.push(TsFrame {
            stamp,
            stamp_error,
            fingerprint: fingerprint_annexb(au),
            keyframe: annexb_nals(au).any(|(_, nal)| nal_type(nal) == Some(NAL_IDR)),
            pts: if i == 0 { pts } else { None },
            damaged: pes.damaged,
            pes_offset: pes.offset,
        });
    }
}

/// Splits a PES packet into its PTS (if any) and its payload; `None` when malformed.
fn pes_payload(pes: &[u8]) -> Option<(Option<u64>, &[u8])> {
    if pes.get(..3)? != [0, 0, 1] {
        return None;
    }
    let stream_id = *pes.get(3)?;
    let declared = usize::from(u16::from_be_bytes([*pes.get(4)?, *pes.get(5)?]));
    // Video streams (0xE0–0xEF) always carry the optional PES header.
    if !(0xe0..=0xef).contains(&stream_id) {
        return None;
    }
    if pes.get(6)? & 0xc0 != 0x80 {
        return None;
    }
    let pts_dts_flags = pes.get(7)? >> 6;
    let header_len = usize::from(*pes.get(8)?);
    let pts = if pts_dts_flags & 0x02 != 0 {
        let &[p0, p1, p2, p3, p4] = pes.get(9..14)? else {
            return None;
        };
        // 33 bits split 3 / 15 / 15, each part followed by a marker bit (2.4.3.7).
        Some(
            (u64::from(p0 >> 1 & 0x07) << 30)
                | (u64::from(p1) << 22)
                | (u64::from(p2 >> 1) << 15)
                | (u64::from(p3) << 7)
                | u64::from(p4 >> 1),
        )
    } else {
        None
    };
    let mut payload = pes.get(9usize.checked_add(header_len)?..)?;
    if declared != 0 {
        // PES_packet_length counts the bytes after itself; 0 means unbounded (video).
        let total = declared.checked_add(6)?;
        if let Some(bounded) = pes.get(..total) {
            payload = bounded.get(9 + header_len..)?;
        }
    }
    Some((pts, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_real_pat_is_zero() {
        // The PAT section MediaMTX writes (from the fixtures), CRC included.
        let pat = [
            0x00, 0xb0, 0x0d, 0x00, 0x00, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00, 0x71, 0x10,
            0xd8, 0x78,
        ];
        assert_eq!(crc32_mpeg2(&pat), 0);
        let mut payload = vec![0];
        payload.extend_from_slice(&pat);
        assert_eq!(parse_pat(&payload), Some(vec![0x1000]));
        payload[5] ^= 1;
        assert_eq!(parse_pat(&payload), None);
    }

    #[test]
    fn pts_is_read() {
        let pes = [
            0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 0x05, 0x21, 0x00, 0x0b, 0x7e, 0x41, 0xAA,
        ];
        let (pts, payload) = pes_payload(&pes).unwrap();
        // 0x21 0x00 0x0b 0x7e 0x41 encodes 180000 (2 s at 90 kHz).
        assert_eq!(pts, Some(180_000));
        assert_eq!(payload, &[0xAA]);
        assert_eq!(pes_payload(&pes[..10]), None);
        assert_eq!(pes_payload(&[0, 0, 2, 0xe0]), None);
    }
}
