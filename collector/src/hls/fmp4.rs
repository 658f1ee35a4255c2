//! Fragmented MP4 (ISO BMFF) as MediaMTX's LL-HLS muxer writes it: the init section and the
//! `moof`/`mdat` pairs of a part or segment, down to the frames' stamps and fingerprints.
//!
//! References: ISO/IEC 14496-12 4.2 (box header, 64-bit `largesize`, size 0 = to the end),
//! 8.3.2 (`tkhd`), 8.4.2 (`mdhd`), 8.4.3 (`hdlr`), 8.5.2 (`stsd`, VisualSampleEntry), 8.8.3
//! (`trex`), 8.8.7 (`tfhd`), 8.8.8 (`trun`), 8.8.12 (`tfdt`) and 8.8.3.1 (sample flags); ISO/IEC
//! 14496-15 5.3.3 (`avc1`/`avc3` and `AVCDecoderConfigurationRecord` in `avcC`).
//!
//! ```text
//! init:  ftyp  moov ─┬─ mvhd
//!                    ├─ trak ── tkhd, mdia ─┬─ mdhd (timescale)
//!                    │                      ├─ hdlr ('vide')
//!                    │                      └─ minf ── stbl ── stsd ── avc1 ── avcC
//!                    └─ mvex ── trex (defaults)
//! part:  moof ── mfhd, traf ── tfhd, tfdt, trun…   mdat   (repeated)
//! ```
//!
//! Every function is pure and never panics on its input: sizes are checked against their parent
//! box, arithmetic is checked and the number of samples is capped. Offsets in errors are byte
//! offsets in the buffer passed in. The module reads the first H.264 video track only; it does
//! not read `sidx`, `styp`, `emsg`, `senc`/`saiz` (encryption), `sbgp`, edit lists, the sample
//! tables of non-fragmented files, H.265 or any audio, and it does not decode video.

use glasswatch_common::fingerprint::fingerprint_avcc;
use glasswatch_common::sei::{find_stamp_avcc, FrameStamp, SeiError};
use std::ops::Range;

/// Most samples [`parse_fragments`] accepts in one buffer (a part holds a handful, a 10 s
/// segment at 60 fps 600).
pub const MAX_SAMPLES: usize = 100_000;
/// Most SPS or PPS an `avcC` may list that are kept.
const MAX_PARAMETER_SETS: usize = 32;

/// A problem in an init section or a fragment. Offsets are bytes into the buffer parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum Mp4Error {
    /// The buffer ends `needed` bytes too early for the box or field starting at `offset`.
    #[error("truncated MP4 at byte {offset}: {needed} more bytes needed")]
    Truncated { offset: usize, needed: u64 },
    /// The data at `offset` breaks the rule `what`.
    #[error("invalid MP4 at byte {offset}: {what}")]
    Invalid { offset: usize, what: &'static str },
    /// A box or entry this reader needs is absent.
    #[error("MP4 has no {what}")]
    Missing { what: &'static str },
    /// The data at `offset` is valid MP4 but something this reader does not handle.
    #[error("unsupported MP4 at byte {offset}: {what}")]
    Unsupported { offset: usize, what: &'static str },
    /// The data at `offset` exceeds the limit `limit` on `what`.
    #[error("MP4 at byte {offset}: {what} exceeds the limit of {limit}")]
    TooLarge {
        offset: usize,
        what: &'static str,
        limit: u64,
    },
}

/// Per-sample defaults from the track's `trex` box (ISO/IEC 14496-12 8.8.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackDefaults {
    /// `default_sample_duration`, in timescale units.
    pub sample_duration: u32,
    /// `default_sample_size`, in bytes.
    pub sample_size: u32,
    /// `default_sample_flags` (8.8.3.1).
    pub sample_flags: u32,
}

/// What the fragments need from the init section: the H.264 video track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitSegment {
    /// `track_ID` of the video track (from `tkhd`).
    pub track_id: u32,
    /// Media timescale of the track (from `mdhd`), ticks per second; MediaMTX uses 90000.
    pub timescale: u32,
    /// Length of the NAL unit size prefix in samples (`lengthSizeMinusOne + 1`), 1, 2 or 4.
    pub nal_length_size: usize,
    /// Sequence parameter sets from `avcC`, each a NAL unit with its header byte.
    pub sps: Vec<Vec<u8>>,
    /// Picture parameter sets from `avcC`, each a NAL unit with its header byte.
    pub pps: Vec<Vec<u8>>,
    /// Sample defaults from `mvex`/`trex`; all zero when the init section has none.
    pub defaults: TrackDefaults,
}

/// One sample of the video track in a part or segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Decode time in timescale units (`tfdt` plus the durations of the samples before it).
    pub decode_time: u64,
    /// Composition offset in timescale units (`trun` `sample_composition_time_offset`, else 0).
    pub pts_offset: i64,
    /// Duration in timescale units.
    pub duration: u32,
    /// The sample is a sync sample (`sample_is_non_sync_sample` clear).
    pub keyframe: bool,
    /// Where the sample's bytes are in the buffer passed in; always inside an `mdat` payload.
    pub data: Range<usize>,
}

/// One frame of a part or segment, as the collector needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The Glasswatch stamp, or `None` when the sample has none or it is malformed.
    pub stamp: Option<FrameStamp>,
    /// Why the stamp could not be read, when a malformed SEI or broken NAL framing got in the
    /// way (so the caller can count it); `None` when the stamp was read or simply absent.
    pub stamp_error: Option<SeiError>,
    /// The access-unit fingerprint, or `None` when the sample has no VCL NAL unit or its NAL
    /// framing is broken.
    pub fingerprint: Option<u64>,
    /// The sample is a sync sample.
    pub keyframe: bool,
    /// Presentation time in timescale units (decode time plus composition offset).
    pub pts: i64,
    /// Where the sample's bytes are in the buffer passed in.
    pub data: Range<usize>,
}

/// Reads the H.264 video track's parameters from an init section (`ftyp` + `moov`).
///
/// The first track whose handler is `vide` and whose first sample entry is `avc1` or `avc3` is
/// used. Errors when there is no such track or its boxes are malformed.
pub fn parse_init(data: &[u8]) -> Result<InitSegment, Mp4Error> {
    let moov =
        find_child(data, 0..data.len(), b"moov")?.ok_or(Mp4Error::Missing { what: "moov box" })?;
    let mut video = None;
    for item in children(data, moov.body.clone()) {
        let child = item?;
        if &child.kind == b"trak" {
            if let Some(track) = parse_trak(data, &child)? {
                video = Some(track);
                break;
            }
        }
    }
    let (track_id, timescale, avc) = video.ok_or(Mp4Error::Missing {
        what: "H.264 video track",
    })?;
    let mut defaults = TrackDefaults::default();
    if let Some(mvex) = find_child(data, moov.body.clone(), b"mvex")? {
        for item in children(data, mvex.body.clone()) {
            let child = item?;
            if &child.kind != b"trex" {
                continue;
            }
            let mut r = Reader::full_box(data, &child)?.1;
            if r.u32()? != track_id {
                continue;
            }
            let _sample_description_index = r.u32()?;
            defaults = TrackDefaults {
                sample_duration: r.u32()?,
                sample_size: r.u32()?,
                sample_flags: r.u32()?,
            };
        }
    }
    Ok(InitSegment {
        track_id,
        timescale,
        nal_length_size: avc.nal_length_size,
        sps: avc.sps,
        pps: avc.pps,
        defaults,
    })
}

/// What `parse_trak` reads from a video track: track ID, timescale and the avcC contents.
type VideoTrack = (u32, u32, AvcConfig);

/// The parts of an `AVCDecoderConfigurationRecord` that are kept.
struct AvcConfig {
    nal_length_size: usize,
    sps: Vec<Vec<u8>>,
    pps: Vec<Vec<u8>>,
}

/// Reads one `trak`; `Ok(None)` when it is not an H.264 video track.
fn parse_trak(data: &[u8], trak: &BoxHeader) -> Result<Option<VideoTrack>, Mp4Error> {
    let tkhd = require(find_child(data, trak.body.clone(), b"tkhd")?, "tkhd box")?;
    let (version, mut r) = Reader::full_box(data, &tkhd)?;
    r.skip(if version == 1 { 16 } else { 8 })?;
    let track_id = r.u32()?;

    let mdia = require(find_child(data, trak.body.clone(), b"mdia")?, "mdia box")?;
    let hdlr = require(find_child(data, mdia.body.clone(), b"hdlr")?, "hdlr box")?;
    let (_, mut r) = Reader::full_box(data, &hdlr)?;
    r.skip(4)?;
    if r.bytes(4)? != b"vide" {
        return Ok(None);
    }
    let mdhd = require(find_child(data, mdia.body.clone(), b"mdhd")?, "mdhd box")?;
    let (version, mut r) = Reader::full_box(data, &mdhd)?;
    r.skip(if version == 1 { 16 } else { 8 })?;
    let timescale_at = r.pos;
    let timescale = r.u32()?;
    if timescale == 0 {
        return Err(Mp4Error::Invalid {
            offset: timescale_at,
            what: "mdhd timescale is 0",
        });
    }

    let minf = require(find_child(data, mdia.body.clone(), b"minf")?, "minf box")?;
    let stbl = require(find_child(data, minf.body.clone(), b"stbl")?, "stbl box")?;
    let stsd = require(find_child(data, stbl.body.clone(), b"stsd")?, "stsd box")?;
    let (_, mut r) = Reader::full_box(data, &stsd)?;
    let entry_count = r.u32()?;
    if entry_count == 0 {
        return Err(Mp4Error::Missing {
            what: "sample entry in stsd",
        });
    }
    let entry = match children(data, r.pos..stsd.end).next() {
        Some(entry) => entry?,
        None => {
            return Err(Mp4Error::Missing {
                what: "sample entry in stsd",
            })
        }
    };
    if &entry.kind != b"avc1" && &entry.kind != b"avc3" {
        return Ok(None);
    }
    // VisualSampleEntry: SampleEntry (8) + 70 bytes of fixed fields, then child boxes.
    let boxes_at = entry
        .body
        .start
        .checked_add(78)
        .filter(|&at| at <= entry.end)
        .ok_or(Mp4Error::Invalid {
            offset: entry.start,
            what: "visual sample entry shorter than its fixed fields",
        })?;
    let avcc = require(find_child(data, boxes_at..entry.end, b"avcC")?, "avcC box")?;
    Ok(Some((track_id, timescale, parse_avcc(data, &avcc)?)))
}

/// Reads an `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 5.3.3.1).
fn parse_avcc(data: &[u8], avcc: &BoxHeader) -> Result<AvcConfig, Mp4Error> {
    let mut r = Reader::new(data, avcc.body.clone());
    let version_at = r.pos;
    if r.u8()? != 1 {
        return Err(Mp4Error::Unsupported {
            offset: version_at,
            what: "avcC configurationVersion is not 1",
        });
    }
    r.skip(3)?; // profile, compatibility, level
    let length_at = r.pos;
    let nal_length_size = usize::from(r.u8()? & 0x03) + 1;
    if nal_length_size == 3 {
        return Err(Mp4Error::Invalid {
            offset: length_at,
            what: "avcC lengthSizeMinusOne is 2",
        });
    }
    let sps_count = usize::from(r.u8()? & 0x1f);
    let sps = read_parameter_sets(&mut r, sps_count)?;
    let pps_count = usize::from(r.u8()?);
    let pps = read_parameter_sets(&mut r, pps_count)?;
    Ok(AvcConfig {
        nal_length_size,
        sps,
        pps,
    })
}

fn read_parameter_sets(r: &mut Reader<'_>, count: usize) -> Result<Vec<Vec<u8>>, Mp4Error> {
    let mut sets = Vec::new();
    for _ in 0..count {
        let len = usize::from(r.u16()?);
        let set = r.bytes(len)?;
        if sets.len() < MAX_PARAMETER_SETS {
            sets.push(set.to_vec());
        }
    }
    Ok(sets)
}

/// Lists the video track's samples in every `moof`/`mdat` pair of a part or segment, in order.
///
/// Handles `tfhd` (explicit base data offset, default-base-is-moof, per-fragment defaults),
/// `tfdt` (version 0 and 1) and any number of `trun` boxes per `traf` (data offset, first
/// sample flags, per-sample duration, size, flags and composition offset, version 0 and 1).
/// Track fragments of other tracks are skipped. Without `tfdt`, decode times continue from the
/// previous fragment in the buffer (0 for the first). Every sample must lie wholly inside one
/// `mdat` payload of `data`, else [`Mp4Error::Invalid`] at the `trun` ([`Mp4Error::Truncated`]
/// when the sample runs past the end of `data`).
pub fn parse_fragments(init: &InitSegment, data: &[u8]) -> Result<Vec<Sample>, Mp4Error> {
    let mut moofs = Vec::new();
    let mut mdats = Vec::new();
    for item in children(data, 0..data.len()) {
        let top = item?;
        match &top.kind {
            b"moof" => moofs.push(top),
            b"mdat" => mdats.push(top.body),
            _ => {}
        }
    }
    let mut samples = Vec::new();
    let mut next_decode_time = 0u64;
    for moof in &moofs {
        for item in children(data, moof.body.clone()) {
            let traf = item?;
            if &traf.kind == b"traf" {
                parse_traf(
                    init,
                    data,
                    moof,
                    &traf,
                    &mdats,
                    &mut next_decode_time,
                    &mut samples,
                )?;
            }
        }
    }
    Ok(samples)
}

const TFHD_BASE_DATA_OFFSET: u32 = 0x00_0001;
const TFHD_SAMPLE_DESCRIPTION_INDEX: u32 = 0x00_0002;
const TFHD_DEFAULT_DURATION: u32 = 0x00_0008;
const TFHD_DEFAULT_SIZE: u32 = 0x00_0010;
const TFHD_DEFAULT_FLAGS: u32 = 0x00_0020;
const TRUN_DATA_OFFSET: u32 = 0x00_0001;
const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x00_0004;
const TRUN_DURATION: u32 = 0x00_0100;
const TRUN_SIZE: u32 = 0x00_0200;
const TRUN_FLAGS: u32 = 0x00_0400;
const TRUN_CTS: u32 = 0x00_0800;
/// `sample_is_non_sync_sample` in sample flags (8.8.3.1).
const SAMPLE_NON_SYNC: u32 = 0x0001_0000;

#[allow(clippy::too_many_arguments)]
fn parse_traf(
    init: &InitSegment,
    data: &[u8],
    moof: &BoxHeader,
    traf: &BoxHeader,
    mdats: &[Range<usize>],
    next_decode_time: &mut u64,
    samples: &mut Vec<Sample>,
) -> Result<(), Mp4Error> {
    let tfhd = require(find_child(data, traf.body.clone(), b"tfhd")?, "tfhd box")?;
    let (flags, mut r) = Reader::full_box_flags(data, &tfhd)?;
    if r.u32()? != init.track_id {
        return Ok(());
    }
    let mut defaults = init.defaults;
    // Without an explicit base, the first run starts at the moof (default-base-is-moof, or the
    // first traf of a moof without it) — MediaMTX sets default-base-is-moof.
    let mut base = moof.start;
    if flags & TFHD_BASE_DATA_OFFSET != 0 {
        let at = r.pos;
        base = usize::try_from(r.u64()?).map_err(|_| Mp4Error::Invalid {
            offset: at,
            what: "tfhd base_data_offset does not fit in memory",
        })?;
    }
    if flags & TFHD_SAMPLE_DESCRIPTION_INDEX != 0 {
        r.skip(4)?;
    }
    if flags & TFHD_DEFAULT_DURATION != 0 {
        defaults.sample_duration = r.u32()?;
    }
    if flags & TFHD_DEFAULT_SIZE != 0 {
        defaults.sample_size = r.u32()?;
    }
    if flags & TFHD_DEFAULT_FLAGS != 0 {
        defaults.sample_flags = r.u32()?;
    }

    let mut decode_time = *next_decode_time;
    if let Some(tfdt) = find_child(data, traf.body.clone(), b"tfdt")? {
        let (version, mut r) = Reader::full_box(data, &tfdt)?;
        decode_time = if version == 1 {
            r.u64()?
        } else {
            u64::from(r.u32()?)
        };
    }

    // Where the next run's data starts when its trun has no data_offset.
    let mut run_pos = base;
    for item in children(data, traf.body.clone()) {
        let trun = item?;
        if &trun.kind != b"trun" {
            continue;
        }
        let (version, flags, mut r) = Reader::full_box_all(data, &trun)?;
        let count_at = r.pos;
        let count = usize::try_from(r.u32()?).unwrap_or(usize::MAX);
        if count > MAX_SAMPLES.saturating_sub(samples.len()) {
            return Err(Mp4Error::TooLarge {
                offset: count_at,
                what: "number of samples",
                limit: MAX_SAMPLES as u64,
            });
        }
        if flags & TRUN_DATA_OFFSET != 0 {
            let at = r.pos;
            let offset = i64::from(r.i32()?);
            run_pos = i64::try_from(base)
                .ok()
                .and_then(|b| b.checked_add(offset))
                .and_then(|p| usize::try_from(p).ok())
                .ok_or(Mp4Error::Invalid {
                    offset: at,
                    what: "trun data_offset points before the buffer",
                })?;
        }
        let first_flags = if flags & TRUN_FIRST_SAMPLE_FLAGS != 0 {
            Some(r.u32()?)
        } else {
            None
        };
        for i in 0..count {
            let entry_at = r.pos;
            let duration = if flags & TRUN_DURATION != 0 {
                r.u32()?
            } else {
                defaults.sample_duration
            };
            let size = if flags & TRUN_SIZE != 0 {
                r.u32()?
            } else {
                defaults.sample_size
            };
            let sample_flags = if flags & TRUN_FLAGS != 0 {
                r.u32()?
            } else {
                match (i, first_flags) {
                    (0, Some(f)) => f,
                    _ => defaults.sample_flags,
                }
            };
            let pts_offset = if flags & TRUN_CTS != 0 {
                let raw = r.u32()?;
                if version == 0 {
                    i64::from(raw)
                } else {
                    i64::from(raw as i32)
                }
            } else {
                0
            };
            let size = usize::try_from(size).map_err(|_| Mp4Error::Invalid {
                offset: entry_at,
                what: "sample size does not fit in memory",
            })?;
            let end = run_pos.checked_add(size).ok_or(Mp4Error::Invalid {
                offset: entry_at,
                what: "sample data end overflows",
            })?;
            // mdats are in buffer order and disjoint: the candidate is the last starting at or
            // before run_pos.
            let candidate = mdats
                .partition_point(|m| m.start <= run_pos)
                .checked_sub(1)
                .and_then(|i| mdats.get(i));
            if candidate.is_none_or(|m| end > m.end) {
                if end > data.len() {
                    // Most likely the buffer was cut inside (or before) the mdat.
                    return Err(Mp4Error::Truncated {
                        offset: trun.start,
                        needed: (end - data.len()) as u64,
                    });
                }
                return Err(Mp4Error::Invalid {
                    offset: trun.start,
                    what: "trun sample lies outside every mdat payload",
                });
            }
            samples.push(Sample {
                decode_time,
                pts_offset,
                duration,
                keyframe: sample_flags & SAMPLE_NON_SYNC == 0,
                data: run_pos..end,
            });
            run_pos = end;
            decode_time =
                decode_time
                    .checked_add(u64::from(duration))
                    .ok_or(Mp4Error::Invalid {
                        offset: entry_at,
                        what: "decode time overflows",
                    })?;
        }
    }
    *next_decode_time = decode_time;
    Ok(())
}

/// Reads the frames of a part or segment: [`parse_fragments`], then per sample the stamp
/// (`find_stamp_avcc`) and fingerprint (`fingerprint_avcc`).
///
/// A sample whose SEI or NAL framing is malformed still yields a frame, with `stamp` `None` and
/// the reason in `stamp_error`; only box-level problems fail the whole buffer.
pub fn frames(init: &InitSegment, data: &[u8]) -> Result<Vec<Frame>, Mp4Error> {
    let samples = parse_fragments(init, data)?;
    let mut out = Vec::with_capacity(samples.len());
    for s in samples {
        // parse_fragments only returns ranges inside `data`.
        let bytes = data.get(s.data.clone()).unwrap_or_default();
        let (stamp, stamp_error) = match find_stamp_avcc(bytes, init.nal_length_size) {
            Ok(stamp) => (stamp, None),
            Err(e) => (None, Some(e)),
        };
        let fingerprint = fingerprint_avcc(bytes, init.nal_length_size).ok().flatten();
        let pts = i64::try_from(s.decode_time)
            .ok()
            .and_then(|dt| dt.checked_add(s.pts_offset))
            .ok_or(Mp4Error::Invalid {
                offset: s.data.start,
                what: "presentation time overflows",
            })?;
        out.push(Frame {
            stamp,
            stamp_error,
            fingerprint,
            keyframe: s.keyframe,
            pts,
            data: s.data,
        });
    }
    Ok(out)
}

/// A box header: its type and where it, its payload and its end are in the buffer.
#[derive(Debug, Clone)]
struct BoxHeader {
    kind: [u8; 4],
    start: usize,
    body: Range<usize>,
    end: usize,
}

fn require(found: Option<BoxHeader>, what: &'static str) -> Result<BoxHeader, Mp4Error> {
    found.ok_or(Mp4Error::Missing { what })
}

/// Finds the first child box of type `kind` within `range`.
fn find_child(
    data: &[u8],
    range: Range<usize>,
    kind: &[u8; 4],
) -> Result<Option<BoxHeader>, Mp4Error> {
    for item in children(data, range) {
        let child = item?;
        if &child.kind == kind {
            return Ok(Some(child));
        }
    }
    Ok(None)
}

/// Iterates the boxes that fill `range` of `data`. A box running past `range` is an error:
/// [`Mp4Error::Truncated`] at the top level (the whole buffer: more bytes would help),
/// [`Mp4Error::Invalid`] when it overruns its parent box. The iteration stops after an error.
fn children(data: &[u8], range: Range<usize>) -> Children<'_> {
    Children {
        data,
        // Only the whole buffer is the top level: a child box's range starts after its header.
        top_level: range.start == 0 && range.end >= data.len(),
        pos: range.start,
        end: range.end.min(data.len()),
        failed: false,
    }
}

struct Children<'a> {
    data: &'a [u8],
    top_level: bool,
    pos: usize,
    end: usize,
    failed: bool,
}

impl Iterator for Children<'_> {
    type Item = Result<BoxHeader, Mp4Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.end {
            return None;
        }
        let result = self.read_header();
        match &result {
            Ok(header) => self.pos = header.end,
            Err(_) => self.failed = true,
        }
        Some(result)
    }
}

impl Children<'_> {
    fn overrun(&self, start: usize, end: u64) -> Mp4Error {
        if self.top_level {
            Mp4Error::Truncated {
                offset: start,
                needed: end.saturating_sub(self.end as u64),
            }
        } else {
            Mp4Error::Invalid {
                offset: start,
                what: "box runs past the end of its parent",
            }
        }
    }

    fn read_header(&self) -> Result<BoxHeader, Mp4Error> {
        let start = self.pos;
        let mut r = Reader::new(self.data, start..self.end);
        let short =
            |r: &Reader<'_>, n: usize| self.overrun(start, (r.pos as u64).saturating_add(n as u64));
        if r.remaining() < 8 {
            return Err(short(&r, 8));
        }
        let size32 = r.u32()?;
        let kind: [u8; 4] = r.bytes(4)?.try_into().map_err(|_| short(&r, 4))?;
        let size = match size32 {
            0 => (self.end - start) as u64,
            1 => {
                if r.remaining() < 8 {
                    return Err(short(&r, 8));
                }
                r.u64()?
            }
            n => u64::from(n),
        };
        if &kind == b"uuid" {
            r.skip(16).map_err(|_| short(&r, 16))?;
        }
        let header_len = (r.pos - start) as u64;
        if size < header_len {
            return Err(Mp4Error::Invalid {
                offset: start,
                what: "box size smaller than its header",
            });
        }
        let end = (start as u64).saturating_add(size);
        if end > self.end as u64 {
            return Err(self.overrun(start, end));
        }
        // end <= self.end, so it fits in usize.
        let end = start.saturating_add(size as usize);
        Ok(BoxHeader {
            kind,
            start,
            body: r.pos..end,
            end,
        })
    }
}

/// A big-endian cursor over `range` of the buffer; reading past the range is
/// [`Mp4Error::Invalid`] (a box too short for its fields).
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], range: Range<usize>) -> Self {
        Reader {
            data,
            pos: range.start,
            end: range.end.min(data.len()),
        }
    }

    /// A reader over a full box's payload after its version and flags.
    fn full_box_all(data: &'a [u8], b: &BoxHeader) -> Result<(u8, u32, Self), Mp4Error> {
        let mut r = Reader::new(data, b.body.clone());
        let vf = r.u32()?;
        Ok(((vf >> 24) as u8, vf & 0x00ff_ffff, r))
    }

    fn full_box(data: &'a [u8], b: &BoxHeader) -> Result<(u8, Self), Mp4Error> {
        Self::full_box_all(data, b).map(|(v, _, r)| (v, r))
    }

    fn full_box_flags(data: &'a [u8], b: &BoxHeader) -> Result<(u32, Self), Mp4Error> {
        Self::full_box_all(data, b).map(|(_, f, r)| (f, r))
    }

    fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Mp4Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.end)
            .ok_or(Mp4Error::Invalid {
                offset: self.pos,
                what: "box too short for its fields",
            })?;
        let out = self.data.get(self.pos..end).ok_or(Mp4Error::Invalid {
            offset: self.pos,
            what: "box too short for its fields",
        })?;
        self.pos = end;
        Ok(out)
    }

    fn skip(&mut self, n: usize) -> Result<(), Mp4Error> {
        self.bytes(n).map(|_| ())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Mp4Error> {
        let at = self.pos;
        self.bytes(N)?.try_into().map_err(|_| Mp4Error::Invalid {
            offset: at,
            what: "box too short for its fields",
        })
    }

    fn u8(&mut self) -> Result<u8, Mp4Error> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16, Mp4Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, Mp4Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, Mp4Error> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Mp4Error> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = u32::try_from(body.len() + 8)
            .unwrap()
            .to_be_bytes()
            .to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn box_sizes_zero_one_and_absurd() {
        // Size 0 runs to the end of the buffer.
        let mut data = vec![0, 0, 0, 0];
        data.extend_from_slice(b"mdat");
        data.extend_from_slice(&[1, 2, 3]);
        let b: Vec<_> = children(&data, 0..data.len()).collect();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].as_ref().unwrap().body, 8..11);

        // 64-bit size.
        let mut data = vec![0, 0, 0, 1];
        data.extend_from_slice(b"free");
        data.extend_from_slice(&18u64.to_be_bytes());
        data.extend_from_slice(&[9, 9]);
        let b = children(&data, 0..data.len()).next().unwrap().unwrap();
        assert_eq!(b.body, 16..18);

        // 64-bit size smaller than the header, and absurd sizes.
        data[8..16].copy_from_slice(&3u64.to_be_bytes());
        assert!(matches!(
            children(&data, 0..data.len()).next(),
            Some(Err(Mp4Error::Invalid { offset: 0, .. }))
        ));
        data[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(
            children(&data, 0..data.len()).next(),
            Some(Err(Mp4Error::Truncated { offset: 0, .. }))
        ));
        let mut data = 0xFFFF_FFFFu32.to_be_bytes().to_vec();
        data.extend_from_slice(b"moof");
        assert!(matches!(
            children(&data, 0..data.len()).next(),
            Some(Err(Mp4Error::Truncated {
                offset: 0,
                needed: 0xFFFF_FFF7
            }))
        ));
    }

    #[test]
    fn child_overrunning_parent_is_invalid() {
        let inner = boxed(b"free", &[0; 4]);
        let mut moof = boxed(b"moof", &inner);
        // Make the child claim more than its parent holds.
        moof[11] = 20;
        let parent = children(&moof, 0..moof.len()).next().unwrap().unwrap();
        assert!(matches!(
            children(&moof, parent.body).next(),
            Some(Err(Mp4Error::Invalid { offset: 8, .. }))
        ));
    }
}
