//! The fMP4 (ISO/IEC 14496-12) boxes of an LL-HLS H.264 stream, laid out
//! byte for byte as MediaMTX v1.16.2 writes them (through `mediacommon`
//! v2.8.0, checked against the fixture's init section and parts):
//!
//! ```text
//! init:  ftyp(mp42, 1, [mp41 mp42 isom hlsf])
//!        moov ┬ mvhd(v0, timescale 1000, next_track_ID 0xffffffff)
//!             ├ trak ┬ tkhd(v0, flags 3, track 1, width/height 16.16)
//!             │      └ mdia ┬ mdhd(v0, timescale 90000, "und")
//!             │             ├ hdlr(vide, "VideoHandler")
//!             │             └ minf ┬ vmhd(flags 1)
//!             │                    ├ dinf └ dref └ url(flags 1)
//!             │                    └ stbl ┬ stsd └ avc1 ┬ avcC(1 SPS, 1 PPS, 4-byte lengths)
//!             │                           │             └ btrt(0, 1000000, 1000000)
//!             │                           └ stts, stsc, stsz, stco (empty)
//!             └ mvex └ trex(track 1, description 1)
//! part:  moof ┬ mfhd(sequence = part id)
//!             └ traf ┬ tfhd(flags 0x020000 default-base-is-moof, track 1)
//!                    ├ tfdt(v1, decode time of the first sample)
//!                    └ trun(v1, data offset, per sample duration and size,
//!                           flags only when a sample is not a sync sample,
//!                           composition offset only when one is non-zero)
//!        mdat (the samples, AVCC: 4-byte big-endian length before each NAL unit)
//! ```
//!
//! Pure byte building; nothing here fails except on sizes beyond `u32`.

/// One sample (one access unit) of a part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Duration in 90 kHz ticks.
    pub duration: u32,
    /// PTS minus DTS in 90 kHz ticks.
    pub pts_offset: i32,
    /// Whether the sample is not a random-access point (no IDR).
    pub non_sync: bool,
    /// AVCC payload.
    pub payload: Vec<u8>,
}

const TRUN_DATA_OFFSET: u32 = 0x01;
const TRUN_DURATION: u32 = 0x100;
const TRUN_SIZE: u32 = 0x200;
const TRUN_FLAGS: u32 = 0x400;
const TRUN_CTO: u32 = 0x800;
const SAMPLE_NON_SYNC: u32 = 1 << 16;

/// Appends a box: `body` writes the payload, the size is patched after.
fn boxed(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(kind);
    body(out);
    let size = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// Appends a full box (version and 24-bit flags before the payload).
fn full_box(
    out: &mut Vec<u8>,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    boxed(out, kind, |out| {
        out.push(version);
        out.extend_from_slice(&flags.to_be_bytes()[1..]);
        body(out);
    });
}

fn u16be(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn u32be(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn zeros(out: &mut Vec<u8>, n: usize) {
    out.resize(out.len() + n, 0);
}

const MATRIX: [u32; 9] = [0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x4000_0000];

fn matrix(out: &mut Vec<u8>) {
    for v in MATRIX {
        u32be(out, v);
    }
}

/// The init section of one H.264 track (id 1, 90 kHz) from its SPS and PPS
/// (NAL units with header, emulation prevention in place) and picture size.
pub fn init_section(sps: &[u8], pps: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(700 + sps.len() + pps.len());
    boxed(&mut out, b"ftyp", |o| {
        o.extend_from_slice(b"mp42");
        u32be(o, 1);
        o.extend_from_slice(b"mp41mp42isomhlsf");
    });
    boxed(&mut out, b"moov", |o| {
        full_box(o, b"mvhd", 0, 0, |o| {
            zeros(o, 8); // creation, modification time
            u32be(o, 1000); // timescale
            u32be(o, 0); // duration
            u32be(o, 0x0001_0000); // rate 1.0
            u16be(o, 0x0100); // volume 1.0
            zeros(o, 2 + 8);
            matrix(o);
            zeros(o, 24); // pre_defined
            u32be(o, 0xffff_ffff); // next_track_ID
        });
        boxed(o, b"trak", |o| {
            full_box(o, b"tkhd", 0, 3, |o| {
                zeros(o, 8); // creation, modification time
                u32be(o, 1); // track_ID
                zeros(o, 4); // reserved
                u32be(o, 0); // duration
                zeros(o, 8); // reserved
                zeros(o, 2 + 2 + 2 + 2); // layer, alternate_group, volume, reserved
                matrix(o);
                u32be(o, width << 16);
                u32be(o, height << 16);
            });
            boxed(o, b"mdia", |o| {
                full_box(o, b"mdhd", 0, 0, |o| {
                    zeros(o, 8);
                    u32be(o, 90_000);
                    u32be(o, 0);
                    u16be(o, 0x55c4); // "und"
                    u16be(o, 0);
                });
                full_box(o, b"hdlr", 0, 0, |o| {
                    u32be(o, 0);
                    o.extend_from_slice(b"vide");
                    zeros(o, 12);
                    o.extend_from_slice(b"VideoHandler\0");
                });
                boxed(o, b"minf", |o| {
                    full_box(o, b"vmhd", 0, 1, |o| zeros(o, 8));
                    boxed(o, b"dinf", |o| {
                        full_box(o, b"dref", 0, 0, |o| {
                            u32be(o, 1);
                            full_box(o, b"url ", 0, 1, |_| {});
                        });
                    });
                    boxed(o, b"stbl", |o| {
                        full_box(o, b"stsd", 0, 0, |o| {
                            u32be(o, 1);
                            avc1(o, sps, pps, width, height);
                        });
                        full_box(o, b"stts", 0, 0, |o| u32be(o, 0));
                        full_box(o, b"stsc", 0, 0, |o| u32be(o, 0));
                        full_box(o, b"stsz", 0, 0, |o| zeros(o, 8));
                        full_box(o, b"stco", 0, 0, |o| u32be(o, 0));
                    });
                });
            });
        });
        boxed(o, b"mvex", |o| {
            full_box(o, b"trex", 0, 0, |o| {
                u32be(o, 1); // track_ID
                u32be(o, 1); // default_sample_description_index
                zeros(o, 12);
            });
        });
    });
    out
}

fn avc1(o: &mut Vec<u8>, sps: &[u8], pps: &[u8], width: u32, height: u32) {
    boxed(o, b"avc1", |o| {
        zeros(o, 6);
        u16be(o, 1); // data_reference_index
        zeros(o, 2 + 2 + 12);
        u16be(o, u16::try_from(width).unwrap_or(u16::MAX));
        u16be(o, u16::try_from(height).unwrap_or(u16::MAX));
        u32be(o, 0x0048_0000); // 72 dpi
        u32be(o, 0x0048_0000);
        u32be(o, 0);
        u16be(o, 1); // frame_count
        zeros(o, 32); // compressorname
        u16be(o, 0x0018); // depth
        u16be(o, 0xffff); // pre_defined = -1
        boxed(o, b"avcC", |o| {
            o.push(1);
            o.push(sps.get(1).copied().unwrap_or(0));
            o.push(sps.get(2).copied().unwrap_or(0));
            o.push(sps.get(3).copied().unwrap_or(0));
            o.push(0xff); // 6 reserved bits, lengthSizeMinusOne = 3
            o.push(0xe1); // 3 reserved bits, one SPS
            u16be(o, u16::try_from(sps.len()).unwrap_or(u16::MAX));
            o.extend_from_slice(sps);
            o.push(1);
            u16be(o, u16::try_from(pps.len()).unwrap_or(u16::MAX));
            o.extend_from_slice(pps);
        });
        boxed(o, b"btrt", |o| {
            u32be(o, 0);
            u32be(o, 1_000_000);
            u32be(o, 1_000_000);
        });
    });
}

/// One part: `moof` + `mdat` for track 1 with `base_time` (90 kHz) as the
/// decode time of its first sample. `samples` must not be empty.
pub fn part(sequence: u32, base_time: u64, samples: &[Sample]) -> Vec<u8> {
    let data_len: usize = samples.iter().map(|s| s.payload.len()).sum();
    let mut out = Vec::with_capacity(120 + 16 * samples.len() + data_len);
    let mut trun_data_offset_at = None;
    boxed(&mut out, b"moof", |o| {
        full_box(o, b"mfhd", 0, 0, |o| u32be(o, sequence));
        boxed(o, b"traf", |o| {
            full_box(o, b"tfhd", 0, 0x02_0000, |o| u32be(o, 1));
            full_box(o, b"tfdt", 1, 0, |o| {
                o.extend_from_slice(&base_time.to_be_bytes())
            });
            let mut flags = TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE;
            for s in samples {
                if s.non_sync {
                    flags |= TRUN_FLAGS;
                }
                if s.pts_offset != 0 {
                    flags |= TRUN_CTO;
                }
            }
            full_box(o, b"trun", 1, flags, |o| {
                u32be(o, u32::try_from(samples.len()).unwrap_or(u32::MAX));
                trun_data_offset_at = Some(o.len());
                u32be(o, 0); // patched below
                for s in samples {
                    u32be(o, s.duration);
                    u32be(o, u32::try_from(s.payload.len()).unwrap_or(u32::MAX));
                    if flags & TRUN_FLAGS != 0 {
                        u32be(o, if s.non_sync { SAMPLE_NON_SYNC } else { 0 });
                    }
                    if flags & TRUN_CTO != 0 {
                        o.extend_from_slice(&s.pts_offset.to_be_bytes());
                    }
                }
            });
        });
    });
    // The data starts right after the mdat header, counted from the moof.
    let data_offset = u32::try_from(out.len() + 8).unwrap_or(u32::MAX);
    if let Some(at) = trun_data_offset_at {
        out[at..at + 4].copy_from_slice(&data_offset.to_be_bytes());
    }
    boxed(&mut out, b"mdat", |o| {
        for s in samples {
            o.extend_from_slice(&s.payload);
        }
    });
    out
}

/// NAL units as one AVCC sample (4-byte big-endian length before each).
pub fn avcc<'a>(nals: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for nal in nals {
        u32be(&mut out, u32::try_from(nal.len()).unwrap_or(u32::MAX));
        out.extend_from_slice(nal);
    }
    out
}
