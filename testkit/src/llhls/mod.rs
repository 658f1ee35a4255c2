//! An LL-HLS muxer that serves the publisher's own access units as fMP4
//! parts **the way MediaMTX v1.16.2 does** (gohlslib v2.2.6, mediacommon
//! v2.8.0), for the test origin's `--format llhls`.
//!
//! MediaMTX's own source was read to learn what it does; this is a separate
//! implementation of that behaviour, checked against the real MediaMTX
//! captures in `shared/fixtures/mediamtx-1.16.2-llhls/` (beside the repository) (the unit tests
//! rebuild the fixture's init section and parts byte for byte, and compare
//! playlists tag for tag).
//!
//! # What it does, as MediaMTX does
//!
//! - **Access units** (MediaMTX's unit remuxer): AUD, SPS and PPS are
//!   dropped, the latest SPS+PPS are put back before each IDR, SEI and
//!   slices are kept byte for byte, in order. An access unit without a slice
//!   is dropped, and so is everything before the first IDR.
//! - **Samples**: AVCC (4-byte lengths), decode times in 90 kHz from the
//!   first access unit plus 10 s. A sample's duration is the distance to the
//!   next sample's decode time, so **a frame is muxed only when its
//!   successor arrives**.
//! - **Parts** close when the next sample is at least the *adjusted* part
//!   duration after the part's start: the smallest duration from
//!   `part_min_duration` up (5 ms steps) that is more than 85 % of the whole
//!   number of frames it rounds up to (50 ms at 30 fps becomes 60 ms, so two
//!   frames), learnt over the first segment and frozen after it.
//!   `PART-TARGET` is the longest listed part rounded up to whole
//!   milliseconds; `PART-HOLD-BACK` is 2.5 times that.
//! - **Segments** are cut only at an IDR once `segment_min_duration` has
//!   passed (or at an IDR carrying new SPS/PPS, which also rewrites the init
//!   section). Segment ids start at 7 and the first segment is preceded by 7
//!   `#EXT-X-GAP` entries (`gap.mp4`, the first segment's duration) that
//!   leave the window as real segments arrive; the window holds
//!   `segment_count` (≥ 7) entries. `TARGETDURATION` is the longest entry,
//!   rounded to whole seconds.
//! - **Playlists**: the media playlist (`video1_stream.m3u8`) lists every
//!   window entry, with `PROGRAM-DATE-TIME` and `EXT-X-PART`s for the last
//!   two segments only, then the parts of the segment being filled, then an
//!   `EXT-X-PRELOAD-HINT` for the next part. Media URIs carry a random
//!   per-muxer prefix (`{prefix}_video1_init.mp4`, `_part{N}.mp4`,
//!   `_seg{N}.mp4`) and the request's query without its `_HLS_*` keys.
//!   `_HLS_skip=YES|v2` gives a delta update (`EXT-X-SKIP`).
//! - **Blocking reloads** (`_HLS_msn=M[&_HLS_part=P]`) wait until that part
//!   exists (a part index past the end of its segment means part 0 of the
//!   next one); `M` beyond the segment being filled plus one, or before the
//!   window, is answered 400 at once; `_HLS_part` without `_HLS_msn` is 400.
//!   There is no timeout (gohlslib has none, and MediaMTX's `writeTimeout`
//!   only bounds writes): a request waits until its part exists or the
//!   muxer closes (500).
//! - **Media**: a part or segment is served only once complete; the part
//!   named by the preload hint is held until it is complete; anything else
//!   unknown is 404.
//!
//! # Where it differs from MediaMTX
//!
//! - Timestamps come from GStreamer buffer PTS rounded to 90 kHz ticks, not
//!   from RTP timestamps, and the decode time equals the PTS unless the
//!   buffer carries its own DTS (MediaMTX derives DTS from the slice
//!   headers). For streams without B-frames (the agent's, the test
//!   pattern's) both give the same numbers.
//! - `PROGRAM-DATE-TIME` is the origin's wall clock at the first access unit
//!   plus the PTS distance, always written in UTC (`Z`), like MediaMTX on a
//!   UTC host.
//! - One video track only; no audio, no H.265/AV1, no MPEG-TS or
//!   non-low-latency variants, no `segmentMaxSize` setting (gohlslib's
//!   50 MB default applies).
//! - The muxer starts when the publisher's RTSP media is prepared, as with
//!   `hlsAlwaysRemux: yes` (the fixture's setting); without it MediaMTX
//!   starts a muxer at the first HTTP request, so its window starts then.
//! - HTTP (see [`http`]): no HTML player page and no `/{path}` → `/{path}/`
//!   redirect, no CORS or `OPTIONS` preflight answers, no `Server: mediamtx`
//!   header, no authentication; methods other than GET get 404. Nothing is
//!   written to disk.

pub mod fmp4;
pub mod http;
pub mod sps;

use std::{
    collections::{BTreeSet, VecDeque},
    fmt::Write as _,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::body::Bytes;
use glasswatch_common::h264;

/// The id of the only stream, as MediaMTX names its first video track.
pub const STREAM_ID: &str = "video1";
/// The media playlist's file name.
pub const MEDIA_PLAYLIST: &str = "video1_stream.m3u8";
/// Decode time added to every sample so `tfdt` is never negative (10 s at 90 kHz).
const START_DTS: i64 = 900_000;
/// Gap entries before the first segment (gohlslib adds 7 whatever the window).
const INITIAL_GAPS: usize = 7;
/// gohlslib's default `SegmentMaxSize`.
const SEGMENT_MAX_SIZE: u64 = 50 * 1024 * 1024;
const NS_PER_S: i64 = 1_000_000_000;
const CLOCK_RATE: i64 = 90_000;

/// Muxer settings, named as in `mediamtx.yml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MuxerConfig {
    /// `hlsSegmentCount`: entries in the window (at least 7).
    pub segment_count: usize,
    /// `hlsSegmentDuration`: a segment is cut at the first IDR after this.
    pub segment_min_duration: Duration,
    /// `hlsPartDuration`: the part duration before rounding up to frames.
    pub part_min_duration: Duration,
}

impl Default for MuxerConfig {
    /// MediaMTX's defaults: 7 segments of 1 s, parts of 200 ms.
    fn default() -> Self {
        MuxerConfig {
            segment_count: 7,
            segment_min_duration: Duration::from_secs(1),
            part_min_duration: Duration::from_millis(200),
        }
    }
}

/// Why an access unit could not be muxed (the muxer stays usable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MuxError {
    #[error("sample timestamp is impossible to handle (decode time {0} < 0)")]
    NegativeTime(i64),
    #[error("reached maximum segment size")]
    SegmentTooLarge,
    #[error("no SPS/PPS seen before the first segment ended: cannot write the init section")]
    NoParameterSets,
    #[error("the muxer is closed")]
    Closed,
}

/// A finished part.
#[derive(Debug)]
pub struct Part {
    pub id: u64,
    /// Start and end decode times in nanoseconds (with the 10 s offset).
    pub start_ns: i64,
    pub end_ns: i64,
    /// Whether the part holds a sync sample (its first part of a segment).
    pub independent: bool,
    /// `moof` + `mdat`.
    pub data: Bytes,
}

impl Part {
    pub fn duration_ns(&self) -> i64 {
        self.end_ns - self.start_ns
    }
}

/// A finished segment (the concatenation of its parts).
#[derive(Debug)]
pub struct Segment {
    pub id: u64,
    pub start_ns: i64,
    pub end_ns: i64,
    pub start_ntp: SystemTime,
    pub parts: Vec<Arc<Part>>,
    pub data: Bytes,
}

impl Segment {
    pub fn duration_ns(&self) -> i64 {
        self.end_ns - self.start_ns
    }
}

/// One entry of the playlist window.
#[derive(Debug)]
pub enum Entry {
    Gap { duration_ns: i64 },
    Segment(Arc<Segment>),
}

impl Entry {
    fn duration_ns(&self) -> i64 {
        match self {
            Entry::Gap { duration_ns } => *duration_ns,
            Entry::Segment(s) => s.duration_ns(),
        }
    }
}

#[derive(Debug)]
struct OpenSegment {
    id: u64,
    start_ns: i64,
    start_ntp: SystemTime,
    parts: Vec<Arc<Part>>,
    size: u64,
}

#[derive(Debug)]
struct OpenPart {
    id: u64,
    start_ns: i64,
    base_dts: i64,
    independent: bool,
    samples: Vec<fmp4::Sample>,
}

#[derive(Debug)]
struct Pending {
    dts: i64,
    ntp: SystemTime,
    sample: fmp4::Sample,
}

/// What a blocking playlist request should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocking {
    /// Answer with the playlist.
    Ready,
    /// 400 Bad Request, at once.
    BadRequest,
    /// Wait for the next change.
    Wait,
}

/// A media file lookup.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Serve `data` with this `Cache-Control`.
    Found {
        data: Bytes,
        cache_control: &'static str,
    },
    /// The preload-hinted part: wait until the next part id passes it.
    Pending(u64),
    NotFound,
}

/// One LL-HLS muxer: the state of one publisher session (a new session gets
/// a new muxer with a new prefix).
#[derive(Debug)]
pub struct Muxer {
    config: MuxerConfig,
    prefix: String,
    // The stream's parameter sets, as MediaMTX keeps them on the format.
    stream_sps: Option<Vec<u8>>,
    stream_pps: Option<Vec<u8>>,
    // The codec parameters gohlslib's track holds.
    codec_sps: Option<Vec<u8>>,
    codec_pps: Option<Vec<u8>>,
    pending_params_change: bool,
    first_random_access: bool,
    // Segmenter.
    sample_durations: BTreeSet<i64>,
    adjusted_part_ns: i64,
    freeze_part_duration: bool,
    pending: Option<Pending>,
    // Stream.
    segments: VecDeque<Entry>,
    delete_count: u64,
    next_segment: Option<OpenSegment>,
    next_part: Option<OpenPart>,
    next_segment_id: u64,
    next_part_id: u64,
    target_duration: i64,
    part_target_ns: i64,
    init: Option<Bytes>,
    closed: bool,
}

/// 90 kHz ticks to nanoseconds, as gohlslib's `timestampToDuration`.
pub fn ticks_to_ns(ticks: i64) -> i64 {
    (ticks / CLOCK_RATE) * NS_PER_S + (ticks % CLOCK_RATE) * NS_PER_S / CLOCK_RATE
}

fn duration_ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// gohlslib's `partDurationIsCompatible`: the part duration must exceed 85 %
/// of the whole number of samples it rounds up to.
fn part_duration_is_compatible(part: i64, sample: i64) -> bool {
    if sample > part {
        return false;
    }
    let mut f = part / sample;
    if part % sample != 0 {
        f += 1;
    }
    f *= sample;
    part > (f * 85) / 100
}

/// gohlslib's `findCompatiblePartDuration`.
fn find_compatible_part_duration(min: i64, samples: &BTreeSet<i64>) -> i64 {
    let mut i = min;
    while i < 5 * NS_PER_S {
        if samples.iter().all(|&s| part_duration_is_compatible(i, s)) {
            break;
        }
        i += 5_000_000;
    }
    i
}

impl Muxer {
    /// A muxer whose media URIs start with `prefix` (MediaMTX: 12 random hex digits).
    pub fn new(config: MuxerConfig, prefix: String) -> Muxer {
        Muxer {
            config: MuxerConfig {
                segment_count: config.segment_count.max(INITIAL_GAPS),
                ..config
            },
            prefix,
            stream_sps: None,
            stream_pps: None,
            codec_sps: None,
            codec_pps: None,
            pending_params_change: false,
            first_random_access: false,
            sample_durations: BTreeSet::new(),
            adjusted_part_ns: 0,
            freeze_part_duration: false,
            pending: None,
            segments: VecDeque::new(),
            delete_count: 0,
            next_segment: None,
            next_part: None,
            next_segment_id: INITIAL_GAPS as u64,
            next_part_id: 0,
            target_duration: 0,
            part_target_ns: 0,
            init: None,
            closed: false,
        }
    }

    /// The random prefix of this muxer's media URIs.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The window: gaps and finished segments.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.segments.iter()
    }

    /// Every part still listed: those of the complete segments in the
    /// window, then the finished parts of the segment being filled.
    fn listed_parts(&self) -> impl Iterator<Item = &Arc<Part>> {
        self.segments
            .iter()
            .filter_map(|e| match e {
                Entry::Segment(s) => Some(s.parts.iter()),
                Entry::Gap { .. } => None,
            })
            .flatten()
            .chain(self.open_parts().iter())
    }

    /// Finished parts of the segment being filled.
    pub fn open_parts(&self) -> &[Arc<Part>] {
        self.next_segment.as_ref().map_or(&[], |s| &s.parts)
    }

    /// The id the next part will have (the preload hint).
    pub fn next_part_id(&self) -> u64 {
        self.next_part_id
    }

    /// Marks the muxer closed: waiting requests answer 500.
    pub fn close(&mut self) {
        self.closed = true;
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// One access unit as NAL units (no start codes), its PTS and DTS in
    /// 90 kHz ticks from the session's first access unit, and its wall-clock
    /// time.
    pub fn write_access_unit(
        &mut self,
        nals: &[&[u8]],
        pts: i64,
        dts: i64,
        ntp: SystemTime,
    ) -> Result<(), MuxError> {
        if self.closed {
            return Err(MuxError::Closed);
        }
        let au = self.remux(nals);
        if au.is_empty() {
            return Ok(());
        }
        self.write_h264(&au, pts, dts, ntp)
    }

    /// MediaMTX's unit remuxer: drop AUD/SPS/PPS (remembering the latest
    /// parameter sets) and put SPS+PPS back before the first IDR slice.
    fn remux(&mut self, nals: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut idr = false;
        for nal in nals {
            match h264::nal_type(nal) {
                Some(h264::NAL_SPS) => self.stream_sps = Some(nal.to_vec()),
                Some(h264::NAL_PPS) => self.stream_pps = Some(nal.to_vec()),
                Some(h264::NAL_IDR) => idr = true,
                _ => {}
            }
        }
        let mut out = Vec::with_capacity(nals.len() + 2);
        if idr {
            if let (Some(sps), Some(pps)) = (&self.stream_sps, &self.stream_pps) {
                out.push(sps.clone());
                out.push(pps.clone());
            }
        }
        for nal in nals {
            match h264::nal_type(nal) {
                Some(h264::NAL_SPS | h264::NAL_PPS | h264::NAL_AUD) | None => {}
                Some(_) => out.push(nal.to_vec()),
            }
        }
        out
    }

    /// gohlslib's `writeH264`.
    fn write_h264(
        &mut self,
        au: &[Vec<u8>],
        pts: i64,
        dts: i64,
        ntp: SystemTime,
    ) -> Result<(), MuxError> {
        let mut random_access = false;
        let mut non_idr = false;
        for nal in au {
            match h264::nal_type(nal) {
                Some(h264::NAL_IDR) => random_access = true,
                Some(h264::NAL_SLICE) => non_idr = true,
                // Parameters from the SDP count as known in MediaMTX; the
                // first in-band ones stand in for them.
                Some(h264::NAL_SPS) if self.codec_sps.as_deref() != Some(nal.as_slice()) => {
                    self.pending_params_change |= self.codec_sps.is_some();
                    self.codec_sps = Some(nal.clone());
                }
                Some(h264::NAL_PPS) if self.codec_pps.as_deref() != Some(nal.as_slice()) => {
                    self.pending_params_change |= self.codec_pps.is_some();
                    self.codec_pps = Some(nal.clone());
                }
                _ => {}
            }
        }
        if !random_access && !non_idr {
            return Ok(());
        }
        let params_changed = random_access && self.pending_params_change;
        if params_changed {
            self.pending_params_change = false;
        }
        if !self.first_random_access {
            if !random_access {
                return Ok(());
            }
            self.first_random_access = true;
        }
        let sample = fmp4::Sample {
            duration: 0,
            pts_offset: i32::try_from(pts - dts).unwrap_or(0),
            non_sync: !random_access,
            payload: fmp4::avcc(au.iter().map(Vec::as_slice)),
        };
        self.write_sample(random_access, params_changed, dts, ntp, sample)
    }

    /// gohlslib's `fmp4WriteSample`: queue one sample to learn the previous
    /// one's duration, mux the previous one, then rotate parts or segments.
    fn write_sample(
        &mut self,
        random_access: bool,
        params_changed: bool,
        dts: i64,
        ntp: SystemTime,
        sample: fmp4::Sample,
    ) -> Result<(), MuxError> {
        let dts = dts + START_DTS;
        if dts < 0 {
            return Err(MuxError::NegativeTime(dts));
        }
        let Some(mut prev) = self.pending.replace(Pending { dts, ntp, sample }) else {
            return Ok(());
        };
        let (next_dts, next_ntp) = {
            let next = self.pending.as_mut().ok_or(MuxError::Closed)?;
            if next.dts < prev.dts {
                next.dts = prev.dts;
            }
            (next.dts, next.ntp)
        };
        let duration = next_dts - prev.dts;
        prev.sample.duration = u32::try_from(duration).unwrap_or(u32::MAX);

        if self.next_segment.is_none() {
            self.create_first_segment(ticks_to_ns(prev.dts), prev.ntp);
        }
        self.adjust_part_duration(ticks_to_ns(duration));
        self.write_to_part(prev)?;

        let next_ns = ticks_to_ns(next_dts);
        let segment_start = self.next_segment.as_ref().map_or(next_ns, |s| s.start_ns);
        let part_start = self.next_part.as_ref().map_or(next_ns, |p| p.start_ns);
        if random_access
            && (params_changed
                || next_ns - segment_start >= duration_ns(self.config.segment_min_duration))
        {
            self.rotate_segments(next_ns, next_ntp, params_changed)?;
            if params_changed {
                self.freeze_part_duration = false;
                self.sample_durations.clear();
            } else {
                self.freeze_part_duration = true;
            }
        } else if next_ns - part_start >= self.adjusted_part_ns {
            self.rotate_parts(next_ns, true);
        }
        Ok(())
    }

    fn adjust_part_duration(&mut self, sample_ns: i64) {
        if self.freeze_part_duration || sample_ns == 0 {
            return;
        }
        if self.sample_durations.insert(sample_ns) {
            self.adjusted_part_ns = find_compatible_part_duration(
                duration_ns(self.config.part_min_duration),
                &self.sample_durations,
            );
        }
    }

    fn write_to_part(&mut self, p: Pending) -> Result<(), MuxError> {
        let (Some(segment), Some(part)) = (self.next_segment.as_mut(), self.next_part.as_mut())
        else {
            return Ok(());
        };
        let size = p.sample.payload.len() as u64;
        if segment.size + size > SEGMENT_MAX_SIZE {
            return Err(MuxError::SegmentTooLarge);
        }
        segment.size += size;
        if part.samples.is_empty() {
            part.base_dts = p.dts;
        }
        if !p.sample.non_sync {
            part.independent = true;
        }
        part.samples.push(p.sample);
        Ok(())
    }

    fn new_part(&self, start_ns: i64) -> OpenPart {
        OpenPart {
            id: self.next_part_id,
            start_ns,
            base_dts: 0,
            independent: false,
            samples: Vec::new(),
        }
    }

    fn create_first_segment(&mut self, start_ns: i64, start_ntp: SystemTime) {
        self.next_segment = Some(OpenSegment {
            id: self.next_segment_id,
            start_ns,
            start_ntp,
            parts: Vec::new(),
            size: 0,
        });
        self.next_part = Some(self.new_part(start_ns));
    }

    fn rotate_parts(&mut self, next_ns: i64, create_new: bool) {
        self.next_part_id += 1;
        if let Some(open) = self.next_part.take() {
            let base = u64::try_from(open.base_dts).unwrap_or(0);
            let data = fmp4::part(
                u32::try_from(open.id).unwrap_or(u32::MAX),
                base,
                &open.samples,
            );
            let part = Arc::new(Part {
                id: open.id,
                start_ns: open.start_ns,
                end_ns: next_ns,
                independent: open.independent,
                data: Bytes::from(data),
            });
            if let Some(segment) = self.next_segment.as_mut() {
                segment.parts.push(part);
            }
        }
        if create_new {
            self.next_part = Some(self.new_part(next_ns));
        }
        // gohlslib recomputes the part target after every part.
        let longest = self
            .listed_parts()
            .map(|p| p.duration_ns())
            .max()
            .unwrap_or(0);
        let target = longest.div_euclid(1_000_000) * 1_000_000
            + if longest.rem_euclid(1_000_000) != 0 {
                1_000_000
            } else {
                0
            };
        if self.part_target_ns != 0 && target != self.part_target_ns {
            tracing::warn!(
                from_ns = self.part_target_ns,
                to_ns = target,
                "part duration changed - this will cause an error in iOS clients"
            );
        }
        self.part_target_ns = target;
    }

    fn rotate_segments(
        &mut self,
        next_ns: i64,
        next_ntp: SystemTime,
        force: bool,
    ) -> Result<(), MuxError> {
        self.rotate_parts(next_ns, false);
        self.next_segment_id += 1;
        if let Some(open) = self.next_segment.take() {
            let mut data = Vec::with_capacity(open.parts.iter().map(|p| p.data.len()).sum());
            for part in &open.parts {
                data.extend_from_slice(&part.data);
            }
            let segment = Arc::new(Segment {
                id: open.id,
                start_ns: open.start_ns,
                end_ns: next_ns,
                start_ntp: open.start_ntp,
                parts: open.parts,
                data: Bytes::from(data),
            });
            if self.segments.is_empty() {
                for _ in 0..INITIAL_GAPS {
                    self.segments.push_back(Entry::Gap {
                        duration_ns: segment.duration_ns(),
                    });
                }
            }
            self.segments.push_back(Entry::Segment(segment));
            if self.segments.len() > self.config.segment_count {
                self.segments.pop_front();
                self.delete_count += 1;
            }
        }
        if self.init.is_none() || force {
            self.init = Some(Bytes::from(self.init_section()?));
        }
        self.next_segment = Some(OpenSegment {
            id: self.next_segment_id,
            start_ns: next_ns,
            start_ntp: next_ntp,
            parts: Vec::new(),
            size: 0,
        });
        self.next_part = Some(self.new_part(next_ns));

        // EXTINF rounded to the nearest second must not exceed TARGETDURATION.
        let target = self
            .segments
            .iter()
            .map(|e| (e.duration_ns() as f64 / NS_PER_S as f64).round() as i64)
            .max()
            .unwrap_or(0);
        if self.target_duration == 0 {
            self.target_duration = target;
        } else if target > self.target_duration {
            tracing::warn!(
                from = self.target_duration,
                to = target,
                "segment duration changed - this will cause an error in iOS clients"
            );
            self.target_duration = target;
        }
        Ok(())
    }

    fn init_section(&self) -> Result<Vec<u8>, MuxError> {
        let (Some(sps), Some(pps)) = (&self.codec_sps, &self.codec_pps) else {
            return Err(MuxError::NoParameterSets);
        };
        let (width, height) = sps::parse_sps(sps)
            .map(|i| (i.width, i.height))
            .unwrap_or((0, 0));
        Ok(fmp4::init_section(sps, pps, width, height))
    }

    /// Whether playlists can be served (the first segment is complete).
    pub fn has_content(&self) -> bool {
        !self.segments.is_empty()
    }

    /// gohlslib's `hasPart`.
    pub fn has_part(&self, msn: u64, part: u64) -> bool {
        if msn == self.next_segment_id {
            return part < self.open_parts().len() as u64;
        }
        let (mut msn, mut part) = (msn, part);
        for entry in &self.segments {
            if let Entry::Segment(s) = entry {
                if s.id == msn {
                    if part >= s.parts.len() as u64 {
                        msn += 1;
                        part = 0;
                        continue;
                    }
                    return true;
                }
            }
        }
        false
    }

    /// What to do with a blocking reload for part `part` of segment `msn`.
    pub fn blocking(&self, msn: u64, part: u64) -> Blocking {
        // gohlslib compares unsigned values; the subtraction wraps the same
        // way before the first segment.
        let oldest = self
            .next_segment_id
            .wrapping_sub((self.segments.len() as u64).wrapping_sub(1));
        if msn > self.next_segment_id + 1 || msn < oldest {
            return Blocking::BadRequest;
        }
        if self.has_content() && self.has_part(msn, part) {
            Blocking::Ready
        } else {
            Blocking::Wait
        }
    }

    fn init_name(&self) -> String {
        format!("{}_{STREAM_ID}_init.mp4", self.prefix)
    }

    fn segment_name(&self, id: u64) -> String {
        format!("{}_{STREAM_ID}_seg{id}.mp4", self.prefix)
    }

    fn part_name(&self, id: u64) -> String {
        format!("{}_{STREAM_ID}_part{id}.mp4", self.prefix)
    }

    /// Looks up a media file by name.
    pub fn lookup(&self, name: &str) -> Lookup {
        if name == self.init_name() {
            return match &self.init {
                Some(init) => Lookup::Found {
                    data: init.clone(),
                    cache_control: "max-age=30",
                },
                None => Lookup::NotFound,
            };
        }
        let stem = format!("{}_{STREAM_ID}_", self.prefix);
        let Some(rest) = name.strip_prefix(&stem) else {
            return Lookup::NotFound;
        };
        let number = |s: &str| -> Option<u64> {
            let digits = s.strip_suffix(".mp4")?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Reject leading zeros: names are written without them.
            if digits.len() > 1 && digits.starts_with('0') {
                return None;
            }
            digits.parse().ok()
        };
        let found = |data: &Bytes| Lookup::Found {
            data: data.clone(),
            cache_control: "max-age=3600",
        };
        if let Some(id) = rest.strip_prefix("seg").and_then(number) {
            for entry in &self.segments {
                if let Entry::Segment(s) = entry {
                    if s.id == id {
                        return found(&s.data);
                    }
                }
            }
        } else if let Some(id) = rest.strip_prefix("part").and_then(number) {
            for part in self.listed_parts() {
                if part.id == id {
                    return found(&part.data);
                }
            }
            // gohlslib registers a waiting handler for each new preload hint.
            if id == self.next_part_id && self.next_part_id > 0 {
                return Lookup::Pending(id);
            }
        }
        Lookup::NotFound
    }

    /// The media playlist for a request whose query is `raw_query` (without
    /// the `?`); `delta` for `_HLS_skip=YES|v2`.
    pub fn media_playlist(&self, delta: bool, raw_query: &str) -> String {
        let query = with_question_mark(&filter_hls_params(raw_query));
        let skip_boundary = self.target_duration * 6 * NS_PER_S;
        let part_hold_back = (self.part_target_ns * 25) / 10;
        let mut out = String::with_capacity(4096);
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:10\n#EXT-X-TARGETDURATION:{}\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={},CAN-SKIP-UNTIL={}\n\
             #EXT-X-PART-INF:PART-TARGET={}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
            self.target_duration,
            seconds(part_hold_back),
            seconds(skip_boundary),
            seconds(self.part_target_ns),
            self.delete_count,
        );
        let mut skipped = 0;
        if delta {
            let mut total = 0;
            let mut shown = 0;
            for entry in &self.segments {
                total += entry.duration_ns();
                if total >= skip_boundary {
                    break;
                }
                shown += 1;
            }
            skipped = self.segments.len() - shown;
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        } else {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}{query}\"", self.init_name());
        }
        let len = self.segments.len();
        for (i, entry) in self.segments.iter().enumerate().skip(skipped) {
            match entry {
                Entry::Segment(s) => {
                    let recent = len - i <= 2;
                    if recent {
                        let _ = writeln!(
                            out,
                            "#EXT-X-PROGRAM-DATE-TIME:{}",
                            program_date_time(s.start_ntp)
                        );
                        for part in &s.parts {
                            self.write_part(&mut out, part, &query);
                        }
                    }
                    let _ = write!(
                        out,
                        "#EXTINF:{},\n{}{query}\n",
                        seconds(s.duration_ns()),
                        self.segment_name(s.id)
                    );
                }
                Entry::Gap { duration_ns } => {
                    let _ = write!(
                        out,
                        "#EXT-X-GAP\n#EXTINF:{},\ngap.mp4\n",
                        seconds(*duration_ns)
                    );
                }
            }
        }
        for part in self.open_parts() {
            self.write_part(&mut out, part, &query);
        }
        let _ = writeln!(
            out,
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}{query}\"",
            self.part_name(self.next_part_id)
        );
        out
    }

    fn write_part(&self, out: &mut String, part: &Part, query: &str) {
        let _ = write!(
            out,
            "#EXT-X-PART:DURATION={},URI=\"{}{query}\"",
            seconds(part.duration_ns()),
            self.part_name(part.id)
        );
        out.push_str(if part.independent {
            ",INDEPENDENT=YES\n"
        } else {
            "\n"
        });
    }

    /// The multivariant playlist (`index.m3u8`) for a request whose query is
    /// `raw_query`, which the media playlist URI carries unchanged. `None`
    /// when the SPS is missing or unreadable (MediaMTX answers 500).
    pub fn multivariant_playlist(&self, raw_query: &str) -> Option<String> {
        let mut max_bandwidth = 0u64;
        let mut sizes = 0u64;
        let mut durations = 0u64;
        for entry in &self.segments {
            if let Entry::Segment(s) = entry {
                let size = s.data.len() as u64;
                let duration = u64::try_from(s.duration_ns()).unwrap_or(0).max(1);
                max_bandwidth = max_bandwidth.max(8 * size * NS_PER_S as u64 / duration);
                sizes += size;
                durations += duration;
            }
        }
        let average = 8 * sizes * NS_PER_S as u64 / durations.max(1);
        let sps = self.codec_sps.as_deref()?;
        let info = sps::parse_sps(sps).ok()?;
        let [p, c, l] = info.profile_compat_level;
        let mut out = format!(
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n\n\
             #EXT-X-STREAM-INF:BANDWIDTH={max_bandwidth},AVERAGE-BANDWIDTH={average},\
             CODECS=\"avc1.{p:02x}{c:02x}{l:02x}\",RESOLUTION={}x{}",
            info.width, info.height
        );
        if let Some(fps) = info.fps.filter(|f| *f != 0.0) {
            let _ = write!(out, ",FRAME-RATE={fps:.3}");
        }
        let _ = writeln!(out, "\n{MEDIA_PLAYLIST}{}", with_question_mark(raw_query));
        Some(out)
    }
}

/// Seconds with five decimals, as gohlslib writes durations.
fn seconds(ns: i64) -> String {
    let secs = (ns / NS_PER_S) as f64 + (ns % NS_PER_S) as f64 / 1e9;
    format!("{secs:.5}")
}

fn with_question_mark(query: &str) -> String {
    if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    }
}

/// `2006-01-02T15:04:05.999Z07:00` in UTC: milliseconds without trailing
/// zeros (none at all on a whole second), as Go formats it.
pub fn program_date_time(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    if millis != 0 {
        let frac = format!("{millis:03}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space).
pub fn query_unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Go's `url.ParseQuery`: `None` on malformed input (a `;`, bad escapes).
pub fn parse_query(raw: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in raw.split('&') {
        if pair.is_empty() {
            continue;
        }
        if pair.contains(';') {
            return None;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((query_unescape(k)?, query_unescape(v)?));
    }
    Some(out)
}

/// Go's `url.Values.Encode`: keys sorted, values in order.
pub fn encode_query(pairs: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// gohlslib's `filterOutHLSParams`: drops `_HLS_*` keys and re-encodes; a
/// query Go cannot parse is kept as it is.
pub fn filter_hls_params(raw: &str) -> String {
    if raw.is_empty() {
        return String::new();
    }
    match parse_query(raw) {
        Some(pairs) => {
            let kept: Vec<(String, String)> = pairs
                .into_iter()
                .filter(|(k, _)| !k.starts_with("_HLS_"))
                .collect();
            encode_query(&kept)
        }
        None => raw.to_owned(),
    }
}

/// A random muxer prefix: 12 lowercase hex digits, as MediaMTX's.
pub fn random_prefix() -> String {
    let mut buf = [0u8; 6];
    fill_random(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fills `buf` from the OS, falling back to time-based bytes (test code:
/// uniqueness matters, secrecy does not).
pub(crate) fn fill_random(buf: &mut [u8]) {
    if getrandom::fill(buf).is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (nanos >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(0x9d);
        }
    }
}

/// A playlist with ids, dates and the media sequence masked (the random
/// muxer prefix becomes `P`, numbers in media URIs vanish), so playlists at
/// the same stage compare equal whatever the ids: how tests compare this
/// muxer's playlists with MediaMTX's.
pub fn playlist_shape(playlist: &str) -> String {
    playlist
        .lines()
        .map(|l| {
            if l.starts_with("#EXT-X-PROGRAM-DATE-TIME:") {
                "#EXT-X-PROGRAM-DATE-TIME:*".to_owned()
            } else if l.starts_with("#EXT-X-MEDIA-SEQUENCE:") {
                "#EXT-X-MEDIA-SEQUENCE:*".to_owned()
            } else if let Some(i) = l.find("_video1_") {
                let start = l[..i].rfind('"').map_or(0, |q| q + 1);
                let tail: String = l[i..].chars().filter(|c| !c.is_ascii_digit()).collect();
                format!("{}P{tail}", &l[..start])
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests;
