//! HLS playlist reader: multivariant and media playlists, classic and
//! low-latency, as MediaMTX (gohlslib) and other origins write them.
//!
//! The grammar is RFC 8216 §4 as extended by draft-pantos-hls-rfc8216bis-16
//! (cited as "bis"). Tags read into typed fields:
//!
//! - basic: `#EXTM3U` (bis §4.4.1.1, required on the first line),
//!   `EXT-X-VERSION` (§4.4.1.2);
//! - media playlist: `EXT-X-TARGETDURATION` (§4.4.3.1), `EXT-X-MEDIA-SEQUENCE`
//!   (§4.4.3.2), `EXT-X-ENDLIST` (§4.4.3.4), `EXT-X-PART-INF` (§4.4.3.7),
//!   `EXT-X-SERVER-CONTROL` (§4.4.3.8);
//! - media segment: `EXTINF` (§4.4.4.1), `EXT-X-MAP` (§4.4.4.5),
//!   `EXT-X-PROGRAM-DATE-TIME` (§4.4.4.6), `EXT-X-GAP` (§4.4.4.7),
//!   `EXT-X-PART` (§4.4.4.9);
//! - media metadata: `EXT-X-SKIP` (§4.4.5.2, delta updates: later segments
//!   keep their true media sequence numbers), `EXT-X-PRELOAD-HINT` (§4.4.5.3);
//! - multivariant: `EXT-X-STREAM-INF` (§4.4.6.2) and the URI line after it.
//!
//! Every other tag and every comment line is ignored, as §4.1 asks of
//! clients. [`blocking_url`] builds the `_HLS_msn`/`_HLS_part` delivery
//! directives of bis §6.2.5.2, and [`resolve`] resolves URIs (RFC 3986 §5.2)
//! while carrying the playlist's query string along: MediaMTX ≥ 1.18 hands a
//! reader a session query on `index.m3u8` that every later request must carry.
//!
//! # Why not `m3u8-rs`
//!
//! `m3u8-rs` 6.0.1 (the current release, checked with `cargo info` and its
//! source) has no type for `EXT-X-PART`, `EXT-X-PRELOAD-HINT`,
//! `EXT-X-SERVER-CONTROL`, `EXT-X-PART-INF`, `EXT-X-SKIP` or `EXT-X-GAP`: they
//! become "unknown tags" attached to the *next* segment, and the parts and
//! preload hint after the last `EXTINF` (the segment being built, which is the
//! whole point of LL-HLS) are dropped with the unfinished segment. Re-parsing
//! the attribute lists of unknown tags would leave little of the crate in use,
//! so this module is a small hand-written line parser instead.
//!
//! # What it does not do
//!
//! No I/O and no HTTP: the caller fetches and hands over the text. It does not
//! check every MUST of the spec (a playlist a server wrote loosely still
//! reads), does not follow `EXT-X-DEFINE` variable substitution, keys
//! (`EXT-X-KEY` is ignored: Glasswatch reads clear streams), byte ranges of
//! segments and parts, discontinuities, date ranges, rendition reports,
//! `EXT-X-MEDIA` renditions or I-frame playlists. When a playlist holds several
//! `EXT-X-MAP` tags only the last is kept (it applies to the newest
//! segments). A `TYPE=MAP` preload hint is ignored; so is a program date time
//! given before parts that do not yet form a segment.
//!
//! # What MediaMTX writes (v1.16.2, seen in the project's captures)
//!
//! - The first LL-HLS playlists pad the `hlsSegmentCount` window with
//!   `#EXT-X-GAP` segments that all share the URI `gap.mp4`: never fetch a
//!   segment marked [`Segment::gap`], and do not key segments by URI alone.
//! - Parts, and `EXT-X-PROGRAM-DATE-TIME`, are listed only for the newest
//!   segments; the parts of the segment being built come after the last
//!   `EXTINF` with no date, then one `TYPE=PART` preload hint.
//! - A blocking reload is answered as soon as the part asked for exists, so
//!   it is the newest part listed; when it is the last part of its segment the
//!   answer already holds the closed segment and no trailing part.
//! - `PART-TARGET` (0.067) is the configured part duration rounded up to
//!   whole frames; parts are 0.06667 s with a shorter last one per segment.
//! - The multivariant playlist says `EXT-X-VERSION:9`, the LL-HLS media
//!   playlists 10; the MPEG-TS media playlists carry `EXT-X-ALLOW-CACHE:NO`,
//!   a tag removed from the spec, which is ignored.
//!
//! Tolerated deviations from the grammar, none of which MediaMTX needs: a
//! UTF-8 byte order mark, CRLF line ends, `EXTINF` without its comma (old
//! writers), a decimal `EXT-X-TARGETDURATION`, and whitespace around values.
//!
//! Limits: at most [`MAX_TEXT_BYTES`] bytes, [`MAX_LINES`] lines, and
//! [`MAX_LINE_BYTES`] bytes per line. Numbers are checked (durations finite,
//! non-negative and at most [`MAX_DURATION_S`]; sequence numbers must not
//! overflow). Errors carry the 1-based line number. Parsing never panics.

use std::fmt;

/// Largest playlist text accepted, in bytes.
pub const MAX_TEXT_BYTES: usize = 4 * 1024 * 1024;
/// Largest number of lines accepted.
pub const MAX_LINES: usize = 100_000;
/// Longest line accepted, in bytes (URIs with session queries fit easily).
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Largest duration accepted anywhere (segment, part, target, hold back), in
/// seconds: one day.
pub const MAX_DURATION_S: f64 = 86_400.0;

/// A parsed playlist: either a multivariant playlist (the list of variant
/// streams) or a media playlist (the list of segments).
// A playlist is parsed once per reload and moved once, so the size
// difference between the variants costs nothing worth a `Box` in the API.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Playlist {
    /// A multivariant ("master") playlist: it holds `EXT-X-STREAM-INF`.
    Multivariant(Multivariant),
    /// A media playlist: it holds `EXT-X-TARGETDURATION`.
    Media(MediaPlaylist),
}

/// A multivariant playlist (bis §4.4.6).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Multivariant {
    /// The variant streams in the order listed.
    pub variants: Vec<Variant>,
}

/// One `EXT-X-STREAM-INF` entry and the URI line that follows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Variant {
    /// The media playlist URI as written (resolve it with [`resolve`]).
    pub uri: String,
    /// `BANDWIDTH`, bits per second.
    pub bandwidth: Option<u64>,
    /// `CODECS`, unquoted (for example `avc1.42c01e`).
    pub codecs: Option<String>,
    /// `RESOLUTION` as (width, height).
    pub resolution: Option<(u32, u32)>,
}

/// A media playlist (bis §4.4.3 to §4.4.5).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MediaPlaylist {
    /// `EXT-X-VERSION`, if given.
    pub version: Option<u32>,
    /// `EXT-X-TARGETDURATION` in seconds (required; a decimal is tolerated).
    pub target_duration: f64,
    /// `EXT-X-MEDIA-SEQUENCE` (0 when absent, bis §4.4.3.2).
    pub media_sequence: u64,
    /// `SKIPPED-SEGMENTS` of `EXT-X-SKIP` (0 unless the playlist is a delta
    /// update): the first listed segment has this many more than
    /// `media_sequence`.
    pub skipped_segments: u64,
    /// `EXT-X-ENDLIST` was present.
    pub ended: bool,
    /// `EXT-X-SERVER-CONTROL`, if given.
    pub server_control: Option<ServerControl>,
    /// `PART-TARGET` of `EXT-X-PART-INF` in seconds, if given.
    pub part_target: Option<f64>,
    /// The last `EXT-X-MAP` (initialisation section), if any.
    pub map: Option<MapTag>,
    /// The complete segments in order; `segments[i].msn` is
    /// `media_sequence + skipped_segments + i`.
    pub segments: Vec<Segment>,
    /// Parts listed after the last complete segment: the segment being built,
    /// whose number is [`MediaPlaylist::next_msn`].
    pub trailing_parts: Vec<Part>,
    /// `EXT-X-PRELOAD-HINT` with `TYPE=PART`, if given.
    pub preload_hint: Option<PreloadHint>,
}

/// `EXT-X-SERVER-CONTROL` (bis §4.4.3.8).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerControl {
    /// `CAN-BLOCK-RELOAD=YES`: the server honours `_HLS_msn`/`_HLS_part`.
    pub can_block_reload: bool,
    /// `PART-HOLD-BACK` in seconds.
    pub part_hold_back: Option<f64>,
    /// `HOLD-BACK` in seconds.
    pub hold_back: Option<f64>,
    /// `CAN-SKIP-UNTIL` in seconds (delta updates allowed).
    pub can_skip_until: Option<f64>,
}

/// `EXT-X-MAP` (bis §4.4.4.5): where the initialisation section is.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MapTag {
    /// `URI`, as written.
    pub uri: String,
    /// `BYTERANGE`, if given.
    pub byterange: Option<ByteRange>,
}

/// A byte range `length[@offset]` (bis §4.4.4.2 syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ByteRange {
    /// Number of bytes.
    pub length: u64,
    /// Offset of the first byte, if given.
    pub offset: Option<u64>,
}

/// `EXT-X-PRELOAD-HINT` with `TYPE=PART` (bis §4.4.5.3): the part the server
/// will deliver next.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PreloadHint {
    /// `URI`, as written.
    pub uri: String,
    /// `BYTERANGE-START`, if given.
    pub byterange_start: Option<u64>,
    /// `BYTERANGE-LENGTH`, if given.
    pub byterange_length: Option<u64>,
}

/// A complete media segment: `EXTINF` and its URI line, with the tags and
/// parts listed before it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Segment {
    /// Media sequence number.
    pub msn: u64,
    /// URI as written.
    pub uri: String,
    /// `EXTINF` duration in seconds.
    pub duration: f64,
    /// `EXT-X-GAP` preceded it: the segment is missing (MediaMTX pads its
    /// first playlists with `gap.mp4` entries).
    pub gap: bool,
    /// `EXT-X-PROGRAM-DATE-TIME` as written (ISO 8601), not interpreted.
    pub program_date_time: Option<String>,
    /// The `EXT-X-PART` tags listed for this segment, in order (empty for
    /// classic HLS and for segments older than the part window).
    pub parts: Vec<Part>,
}

/// `EXT-X-PART` (bis §4.4.4.9): one partial segment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Part {
    /// `URI`, as written.
    pub uri: String,
    /// `DURATION` in seconds.
    pub duration: f64,
    /// `INDEPENDENT=YES`: the part starts with an independent frame.
    pub independent: bool,
    /// `GAP=YES`: the part is not available.
    pub gap: bool,
}

impl MediaPlaylist {
    /// The next (msn, part index) to ask for with `_HLS_msn`/`_HLS_part`
    /// blocking reload: the part after the last listed part. With trailing
    /// parts that is part `trailing_parts.len()` of [`Self::next_msn`];
    /// otherwise the first part (0) of the next segment.
    pub fn next_part(&self) -> (u64, u64) {
        let index = u64::try_from(self.trailing_parts.len()).unwrap_or(u64::MAX);
        (self.next_msn(), index)
    }

    /// The media sequence number after the last complete segment (that of
    /// the segment being built, if parts of it are listed).
    pub fn next_msn(&self) -> u64 {
        let count = u64::try_from(self.segments.len()).unwrap_or(u64::MAX);
        self.media_sequence
            .saturating_add(self.skipped_segments)
            .saturating_add(count)
    }
}

/// Why a playlist was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("playlist line {line}: {kind}")]
pub struct PlaylistError {
    /// 1-based line number where the problem was found (0: the whole text).
    pub line: usize,
    /// What was wrong.
    pub kind: PlaylistErrorKind,
}

/// The kinds of [`PlaylistError`].
#[derive(Debug, Clone, PartialEq)]
pub enum PlaylistErrorKind {
    /// The first line is not `#EXTM3U`.
    MissingHeader,
    /// The text is longer than [`MAX_TEXT_BYTES`].
    TooLarge {
        /// Text length in bytes.
        bytes: usize,
    },
    /// More lines than [`MAX_LINES`].
    TooManyLines,
    /// A line longer than [`MAX_LINE_BYTES`].
    LineTooLong {
        /// Line length in bytes.
        bytes: usize,
    },
    /// A tag's value or attribute is not a valid number, or is out of range.
    InvalidNumber {
        /// Tag (and attribute) concerned.
        what: &'static str,
        /// The text found, capped at 64 bytes.
        value: String,
    },
    /// A tag lacks a required attribute or value, or its attribute list is
    /// malformed.
    InvalidTag {
        /// Tag concerned.
        tag: &'static str,
        /// What is wrong.
        what: &'static str,
    },
    /// A URI line came without the tag that must precede it (`EXTINF` or
    /// `EXT-X-STREAM-INF`).
    UnexpectedUri,
    /// A tag that needs a URI line after it was not followed by one.
    MissingUri {
        /// Tag concerned.
        tag: &'static str,
    },
    /// The playlist holds both multivariant and media playlist tags.
    MixedPlaylist,
    /// A required tag is absent (a media playlist without
    /// `EXT-X-TARGETDURATION`, or neither kind of playlist).
    MissingTag {
        /// Tag concerned.
        tag: &'static str,
    },
    /// Media sequence numbers overflow `u64`.
    SequenceOverflow,
}

impl fmt::Display for PlaylistErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingHeader => write!(f, "does not start with #EXTM3U"),
            Self::TooLarge { bytes } => {
                write!(f, "{bytes} bytes, more than {MAX_TEXT_BYTES}")
            }
            Self::TooManyLines => write!(f, "more than {MAX_LINES} lines"),
            Self::LineTooLong { bytes } => {
                write!(f, "line of {bytes} bytes, more than {MAX_LINE_BYTES}")
            }
            Self::InvalidNumber { what, value } => {
                write!(f, "invalid number for {what}: {value:?}")
            }
            Self::InvalidTag { tag, what } => write!(f, "{tag}: {what}"),
            Self::UnexpectedUri => {
                write!(f, "URI line without a preceding EXTINF or EXT-X-STREAM-INF")
            }
            Self::MissingUri { tag } => write!(f, "{tag} is not followed by a URI line"),
            Self::MixedPlaylist => {
                write!(f, "both multivariant and media playlist tags")
            }
            Self::MissingTag { tag } => write!(f, "missing {tag}"),
            Self::SequenceOverflow => write!(f, "media sequence number overflows"),
        }
    }
}

fn err(line: usize, kind: PlaylistErrorKind) -> PlaylistError {
    PlaylistError { line, kind }
}

/// Caps a value copied into an error at 64 bytes, on a char boundary.
fn capped(value: &str) -> String {
    let mut end = value.len().min(64);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value.get(..end).unwrap_or_default().to_owned()
}

fn bad_number(line: usize, what: &'static str, value: &str) -> PlaylistError {
    err(
        line,
        PlaylistErrorKind::InvalidNumber {
            what,
            value: capped(value),
        },
    )
}

fn bad_tag(line: usize, tag: &'static str, what: &'static str) -> PlaylistError {
    err(line, PlaylistErrorKind::InvalidTag { tag, what })
}

/// Parses a decimal-integer (bis §4.2): ASCII digits only, fitting `u64`.
fn parse_u64(line: usize, what: &'static str, value: &str) -> Result<u64, PlaylistError> {
    let v = value.trim();
    if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_number(line, what, value));
    }
    v.parse::<u64>().map_err(|_| bad_number(line, what, value))
}

/// Parses a non-negative decimal-floating-point duration (digits with at most
/// one dot, no sign or exponent), at most [`MAX_DURATION_S`].
fn parse_duration(line: usize, what: &'static str, value: &str) -> Result<f64, PlaylistError> {
    let v = value.trim();
    let dots = v.bytes().filter(|&b| b == b'.').count();
    let digits = v.bytes().filter(u8::is_ascii_digit).count();
    if digits == 0 || dots > 1 || digits + dots != v.len() || v.len() > 40 {
        return Err(bad_number(line, what, value));
    }
    match v.parse::<f64>() {
        Ok(d) if d.is_finite() && (0.0..=MAX_DURATION_S).contains(&d) => Ok(d),
        _ => Err(bad_number(line, what, value)),
    }
}

/// One `NAME=VALUE` of an attribute list (quotes removed from the value).
struct Attr<'a> {
    name: &'a str,
    value: &'a str,
}

/// Splits an attribute list (bis §4.2) into name/value pairs; quoted-string
/// values are returned without their quotes.
fn attributes<'a>(
    line: usize,
    tag: &'static str,
    list: &'a str,
) -> Result<Vec<Attr<'a>>, PlaylistError> {
    let mut out = Vec::new();
    let mut rest = list.trim();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| bad_tag(line, tag, "attribute without '='"))?;
        let name = rest.get(..eq).unwrap_or_default().trim();
        let after = rest.get(eq + 1..).unwrap_or_default();
        if name.is_empty() {
            return Err(bad_tag(line, tag, "attribute without a name"));
        }
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let close = quoted
                .find('"')
                .ok_or_else(|| bad_tag(line, tag, "unterminated quoted string"))?;
            let value = quoted.get(..close).unwrap_or_default();
            let tail = quoted.get(close + 1..).unwrap_or_default().trim_start();
            let next = if tail.is_empty() {
                ""
            } else {
                tail.strip_prefix(',')
                    .ok_or_else(|| bad_tag(line, tag, "text after a quoted string"))?
            };
            (value, next)
        } else {
            match after.find(',') {
                Some(comma) => (
                    after.get(..comma).unwrap_or_default().trim(),
                    after.get(comma + 1..).unwrap_or_default(),
                ),
                None => (after.trim(), ""),
            }
        };
        out.push(Attr { name, value });
        rest = next.trim_start();
    }
    Ok(out)
}

fn attr<'a>(attrs: &[Attr<'a>], name: &str) -> Option<&'a str> {
    attrs.iter().find(|a| a.name == name).map(|a| a.value)
}

fn attr_yes(attrs: &[Attr<'_>], name: &str) -> bool {
    attr(attrs, name) == Some("YES")
}

fn opt_duration(
    line: usize,
    attrs: &[Attr<'_>],
    name: &str,
    what: &'static str,
) -> Result<Option<f64>, PlaylistError> {
    attr(attrs, name)
        .map(|v| parse_duration(line, what, v))
        .transpose()
}

fn opt_u64(
    line: usize,
    attrs: &[Attr<'_>],
    name: &str,
    what: &'static str,
) -> Result<Option<u64>, PlaylistError> {
    attr(attrs, name)
        .map(|v| parse_u64(line, what, v))
        .transpose()
}

fn parse_byterange(line: usize, value: &str) -> Result<ByteRange, PlaylistError> {
    let (len, off) = match value.split_once('@') {
        Some((l, o)) => (l, Some(o)),
        None => (value, None),
    };
    Ok(ByteRange {
        length: parse_u64(line, "BYTERANGE length", len)?,
        offset: off
            .map(|o| parse_u64(line, "BYTERANGE offset", o))
            .transpose()?,
    })
}

fn parse_resolution(line: usize, value: &str) -> Result<(u32, u32), PlaylistError> {
    let (w, h) = value
        .split_once(['x', 'X'])
        .ok_or_else(|| bad_number(line, "RESOLUTION", value))?;
    let w = parse_u64(line, "RESOLUTION width", w)?;
    let h = parse_u64(line, "RESOLUTION height", h)?;
    match (u32::try_from(w), u32::try_from(h)) {
        (Ok(w), Ok(h)) => Ok((w, h)),
        _ => Err(bad_number(line, "RESOLUTION", value)),
    }
}

/// Which kind of playlist the tags seen so far make this.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Multivariant,
    Media,
}

/// Parser state: the playlists being built plus the tags that apply to the
/// next URI line.
#[derive(Default)]
struct Builder {
    kind: Option<Kind>,
    media: MediaPlaylist,
    target_seen: bool,
    variants: Vec<Variant>,
    /// `EXT-X-STREAM-INF` waiting for its URI line (with its line number).
    pending_variant: Option<(usize, Variant)>,
    /// `EXTINF` duration waiting for its URI line (with its line number).
    pending_extinf: Option<(usize, f64)>,
    pending_gap: bool,
    pending_pdt: Option<String>,
    pending_parts: Vec<Part>,
}

impl Builder {
    fn set_kind(&mut self, line: usize, kind: Kind) -> Result<(), PlaylistError> {
        match self.kind {
            Some(k) if k != kind => Err(err(line, PlaylistErrorKind::MixedPlaylist)),
            _ => {
                self.kind = Some(kind);
                Ok(())
            }
        }
    }

    fn tag(&mut self, line: usize, text: &str) -> Result<(), PlaylistError> {
        let (name, value) = match text.split_once(':') {
            Some((n, v)) => (n, v),
            None => (text, ""),
        };
        match name {
            "#EXT-X-VERSION" => {
                let v = parse_u64(line, "EXT-X-VERSION", value)?;
                let v = u32::try_from(v).map_err(|_| bad_number(line, "EXT-X-VERSION", value))?;
                self.media.version = Some(v);
            }
            "#EXT-X-STREAM-INF" => {
                self.set_kind(line, Kind::Multivariant)?;
                const TAG: &str = "EXT-X-STREAM-INF";
                let attrs = attributes(line, TAG, value)?;
                let variant = Variant {
                    uri: String::new(),
                    bandwidth: opt_u64(line, &attrs, "BANDWIDTH", "EXT-X-STREAM-INF BANDWIDTH")?,
                    codecs: attr(&attrs, "CODECS").map(str::to_owned),
                    resolution: attr(&attrs, "RESOLUTION")
                        .map(|v| parse_resolution(line, v))
                        .transpose()?,
                };
                if let Some((pending, _)) = self.pending_variant {
                    return Err(err(pending, PlaylistErrorKind::MissingUri { tag: TAG }));
                }
                self.pending_variant = Some((line, variant));
            }
            "#EXT-X-TARGETDURATION" => {
                self.set_kind(line, Kind::Media)?;
                self.media.target_duration = parse_duration(line, "EXT-X-TARGETDURATION", value)?;
                self.target_seen = true;
            }
            "#EXT-X-MEDIA-SEQUENCE" => {
                self.set_kind(line, Kind::Media)?;
                // bis §4.4.3.2: it MUST appear before the first segment; the
                // segments already numbered would otherwise disagree with it.
                if !self.media.segments.is_empty() {
                    return Err(bad_tag(
                        line,
                        "EXT-X-MEDIA-SEQUENCE",
                        "after the first segment",
                    ));
                }
                self.media.media_sequence = parse_u64(line, "EXT-X-MEDIA-SEQUENCE", value)?;
            }
            "#EXT-X-ENDLIST" => {
                self.set_kind(line, Kind::Media)?;
                self.media.ended = true;
            }
            "#EXT-X-PART-INF" => {
                self.set_kind(line, Kind::Media)?;
                let attrs = attributes(line, "EXT-X-PART-INF", value)?;
                let target = attr(&attrs, "PART-TARGET")
                    .ok_or_else(|| bad_tag(line, "EXT-X-PART-INF", "no PART-TARGET"))?;
                self.media.part_target =
                    Some(parse_duration(line, "EXT-X-PART-INF PART-TARGET", target)?);
            }
            "#EXT-X-SERVER-CONTROL" => {
                self.set_kind(line, Kind::Media)?;
                let attrs = attributes(line, "EXT-X-SERVER-CONTROL", value)?;
                self.media.server_control = Some(ServerControl {
                    can_block_reload: attr_yes(&attrs, "CAN-BLOCK-RELOAD"),
                    part_hold_back: opt_duration(
                        line,
                        &attrs,
                        "PART-HOLD-BACK",
                        "EXT-X-SERVER-CONTROL PART-HOLD-BACK",
                    )?,
                    hold_back: opt_duration(
                        line,
                        &attrs,
                        "HOLD-BACK",
                        "EXT-X-SERVER-CONTROL HOLD-BACK",
                    )?,
                    can_skip_until: opt_duration(
                        line,
                        &attrs,
                        "CAN-SKIP-UNTIL",
                        "EXT-X-SERVER-CONTROL CAN-SKIP-UNTIL",
                    )?,
                });
            }
            "#EXT-X-MAP" => {
                self.set_kind(line, Kind::Media)?;
                let attrs = attributes(line, "EXT-X-MAP", value)?;
                let uri =
                    attr(&attrs, "URI").ok_or_else(|| bad_tag(line, "EXT-X-MAP", "no URI"))?;
                self.media.map = Some(MapTag {
                    uri: uri.to_owned(),
                    byterange: attr(&attrs, "BYTERANGE")
                        .map(|v| parse_byterange(line, v))
                        .transpose()?,
                });
            }
            "#EXTINF" => {
                self.set_kind(line, Kind::Media)?;
                if let Some((pending, _)) = self.pending_extinf {
                    return Err(err(
                        pending,
                        PlaylistErrorKind::MissingUri { tag: "EXTINF" },
                    ));
                }
                // `<duration>,[<title>]`; old writers omit the comma.
                let duration = value.split_once(',').map_or(value, |(d, _)| d);
                self.pending_extinf = Some((line, parse_duration(line, "EXTINF", duration)?));
            }
            "#EXT-X-GAP" => {
                self.set_kind(line, Kind::Media)?;
                self.pending_gap = true;
            }
            "#EXT-X-PROGRAM-DATE-TIME" => {
                self.set_kind(line, Kind::Media)?;
                let v = value.trim();
                if v.is_empty() {
                    return Err(bad_tag(line, "EXT-X-PROGRAM-DATE-TIME", "no date"));
                }
                self.pending_pdt = Some(v.to_owned());
            }
            "#EXT-X-PART" => {
                self.set_kind(line, Kind::Media)?;
                let attrs = attributes(line, "EXT-X-PART", value)?;
                let uri =
                    attr(&attrs, "URI").ok_or_else(|| bad_tag(line, "EXT-X-PART", "no URI"))?;
                let duration = attr(&attrs, "DURATION")
                    .ok_or_else(|| bad_tag(line, "EXT-X-PART", "no DURATION"))?;
                self.pending_parts.push(Part {
                    uri: uri.to_owned(),
                    duration: parse_duration(line, "EXT-X-PART DURATION", duration)?,
                    independent: attr_yes(&attrs, "INDEPENDENT"),
                    gap: attr_yes(&attrs, "GAP"),
                });
            }
            "#EXT-X-PRELOAD-HINT" => {
                self.set_kind(line, Kind::Media)?;
                let attrs = attributes(line, "EXT-X-PRELOAD-HINT", value)?;
                let uri = attr(&attrs, "URI")
                    .ok_or_else(|| bad_tag(line, "EXT-X-PRELOAD-HINT", "no URI"))?;
                if attr(&attrs, "TYPE") == Some("PART") {
                    self.media.preload_hint = Some(PreloadHint {
                        uri: uri.to_owned(),
                        byterange_start: opt_u64(
                            line,
                            &attrs,
                            "BYTERANGE-START",
                            "EXT-X-PRELOAD-HINT BYTERANGE-START",
                        )?,
                        byterange_length: opt_u64(
                            line,
                            &attrs,
                            "BYTERANGE-LENGTH",
                            "EXT-X-PRELOAD-HINT BYTERANGE-LENGTH",
                        )?,
                    });
                }
            }
            "#EXT-X-SKIP" => {
                self.set_kind(line, Kind::Media)?;
                let attrs = attributes(line, "EXT-X-SKIP", value)?;
                let n = attr(&attrs, "SKIPPED-SEGMENTS")
                    .ok_or_else(|| bad_tag(line, "EXT-X-SKIP", "no SKIPPED-SEGMENTS"))?;
                if !self.media.segments.is_empty() {
                    return Err(bad_tag(line, "EXT-X-SKIP", "after the first segment"));
                }
                self.media.skipped_segments = parse_u64(line, "EXT-X-SKIP SKIPPED-SEGMENTS", n)?;
            }
            // Unknown tags and comments are ignored (§4.1).
            _ => {}
        }
        Ok(())
    }

    fn uri(&mut self, line: usize, uri: &str) -> Result<(), PlaylistError> {
        if let Some((_, mut variant)) = self.pending_variant.take() {
            variant.uri = uri.to_owned();
            self.variants.push(variant);
            return Ok(());
        }
        let Some((_, duration)) = self.pending_extinf.take() else {
            return Err(err(line, PlaylistErrorKind::UnexpectedUri));
        };
        let index = u64::try_from(self.media.segments.len())
            .map_err(|_| err(line, PlaylistErrorKind::SequenceOverflow))?;
        let msn = self
            .media
            .media_sequence
            .checked_add(self.media.skipped_segments)
            .and_then(|m| m.checked_add(index))
            .ok_or_else(|| err(line, PlaylistErrorKind::SequenceOverflow))?;
        self.media.segments.push(Segment {
            msn,
            uri: uri.to_owned(),
            duration,
            gap: std::mem::take(&mut self.pending_gap),
            program_date_time: self.pending_pdt.take(),
            parts: std::mem::take(&mut self.pending_parts),
        });
        Ok(())
    }

    fn finish(mut self, last_line: usize) -> Result<Playlist, PlaylistError> {
        if let Some((line, _)) = self.pending_variant {
            return Err(err(
                line,
                PlaylistErrorKind::MissingUri {
                    tag: "EXT-X-STREAM-INF",
                },
            ));
        }
        if let Some((line, _)) = self.pending_extinf {
            return Err(err(line, PlaylistErrorKind::MissingUri { tag: "EXTINF" }));
        }
        match self.kind {
            Some(Kind::Multivariant) => Ok(Playlist::Multivariant(Multivariant {
                variants: self.variants,
            })),
            Some(Kind::Media) if self.target_seen => {
                self.media.trailing_parts = self.pending_parts;
                // The segment being built must have a number too.
                if u64::try_from(self.media.segments.len())
                    .ok()
                    .and_then(|n| n.checked_add(self.media.media_sequence))
                    .and_then(|n| n.checked_add(self.media.skipped_segments))
                    .is_none()
                {
                    return Err(err(last_line, PlaylistErrorKind::SequenceOverflow));
                }
                Ok(Playlist::Media(self.media))
            }
            _ => Err(err(
                last_line,
                PlaylistErrorKind::MissingTag {
                    tag: "EXT-X-TARGETDURATION",
                },
            )),
        }
    }
}

/// Parses a playlist. The text must start with `#EXTM3U` (a UTF-8 byte order
/// mark before it is tolerated); lines may end in LF or CRLF. Whether it is a
/// multivariant or a media playlist is decided by its tags.
pub fn parse(text: &str) -> Result<Playlist, PlaylistError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(err(0, PlaylistErrorKind::TooLarge { bytes: text.len() }));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut builder = Builder::default();
    let mut last_line = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        last_line = line;
        if line > MAX_LINES {
            return Err(err(line, PlaylistErrorKind::TooManyLines));
        }
        if raw.len() > MAX_LINE_BYTES {
            return Err(err(
                line,
                PlaylistErrorKind::LineTooLong { bytes: raw.len() },
            ));
        }
        let content = raw.trim();
        if line == 1 {
            if content != "#EXTM3U" {
                return Err(err(1, PlaylistErrorKind::MissingHeader));
            }
            continue;
        }
        if content.is_empty() {
            continue;
        }
        if content.starts_with("#EXT") {
            builder.tag(line, content)?;
        } else if content.starts_with('#') {
            // A comment.
        } else {
            builder.uri(line, content)?;
        }
    }
    if last_line == 0 {
        return Err(err(1, PlaylistErrorKind::MissingHeader));
    }
    builder.finish(last_line)
}

/// Splits `s` at the first `c`, keeping `c` at the start of the tail.
fn split_keep(s: &str, c: char) -> (&str, &str) {
    match s.find(c) {
        Some(i) => (s.get(..i).unwrap_or(s), s.get(i..).unwrap_or_default()),
        None => (s, ""),
    }
}

/// The length of the `scheme:` prefix of `s` (RFC 3986 §3.1), if it has one.
fn scheme_len(s: &str) -> Option<usize> {
    let colon = s.find(':')?;
    let scheme = s.get(..colon)?;
    let mut bytes = scheme.bytes();
    let first = bytes.next()?;
    (first.is_ascii_alphabetic()
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
    .then_some(colon + 1)
}

/// Splits a URL without query or fragment into (`scheme://authority`, path).
fn origin_and_path(url: &str) -> (&str, &str) {
    let after_scheme = scheme_len(url).unwrap_or(0);
    let rest = url.get(after_scheme..).unwrap_or_default();
    if let Some(auth) = rest.strip_prefix("//") {
        let end = auth.find('/').map_or(url.len(), |i| after_scheme + 2 + i);
        (
            url.get(..end).unwrap_or(url),
            url.get(end..).unwrap_or_default(),
        )
    } else {
        (
            url.get(..after_scheme).unwrap_or_default(),
            url.get(after_scheme..).unwrap_or_default(),
        )
    }
}

/// Removes `.` and `..` segments from a path (RFC 3986 §5.2.4).
fn remove_dot_segments(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                if out.len() > usize::from(absolute) {
                    out.pop();
                }
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut joined = out.join("/");
    if absolute && !joined.starts_with('/') {
        joined.insert(0, '/');
    }
    if trailing_slash && !joined.ends_with('/') {
        joined.push('/');
    }
    joined
}

/// Resolves a URI from a playlist against the playlist's URL (RFC 3986 §5.2)
/// and keeps the query string of `base` where the URI has none, so a session
/// query (MediaMTX ≥ 1.18: every request after the `index.m3u8` redirect must
/// carry it) follows every later request.
///
/// `base` may be an absolute URL (`http://host:port/path?query`) or an
/// absolute path (`/path?query`). `uri` may be an absolute URL, a
/// scheme-relative `//host/path`, an absolute path or a relative path. The
/// base query is carried only to URIs on the same scheme and authority, never
/// to another host. A fragment of `base` is dropped. Pure string work: no
/// percent-decoding or other normalisation.
pub fn resolve(base: &str, uri: &str) -> String {
    let (base, _) = split_keep(base, '#');
    let (base_no_query, base_query) = split_keep(base, '?');
    let (base_origin, base_path) = origin_and_path(base_no_query);
    let (uri_main, uri_fragment) = split_keep(uri, '#');
    let (uri_path_part, uri_query) = split_keep(uri_main, '?');

    let (origin, path): (String, String) = if scheme_len(uri_path_part).is_some() {
        let (o, p) = origin_and_path(uri_path_part);
        (o.to_owned(), remove_dot_segments(p))
    } else if uri_path_part.starts_with("//") {
        let scheme_end = scheme_len(base_origin).unwrap_or(0);
        let scheme = base_origin.get(..scheme_end).unwrap_or_default();
        let full = format!("{scheme}{uri_path_part}");
        let (o, p) = origin_and_path(&full);
        (o.to_owned(), remove_dot_segments(p))
    } else if uri_path_part.starts_with('/') {
        (base_origin.to_owned(), remove_dot_segments(uri_path_part))
    } else if uri_path_part.is_empty() {
        (base_origin.to_owned(), base_path.to_owned())
    } else {
        let dir = base_path
            .rfind('/')
            .map_or("", |i| base_path.get(..=i).unwrap_or_default());
        let dir = if dir.is_empty() && !base_origin.is_empty() {
            "/"
        } else {
            dir
        };
        (
            base_origin.to_owned(),
            remove_dot_segments(&format!("{dir}{uri_path_part}")),
        )
    };

    let query = if !uri_query.is_empty() {
        uri_query
    } else if origin.eq_ignore_ascii_case(base_origin) {
        base_query
    } else {
        ""
    };
    format!("{origin}{path}{query}{uri_fragment}")
}

/// Adds or replaces the `_HLS_msn` and `_HLS_part` delivery directives (bis
/// §6.2.5.2) on a media playlist URL, keeping its other query parameters in
/// order (a session query, for instance). The directives go last, `_HLS_msn`
/// first; `part: None` removes any `_HLS_part`.
pub fn blocking_url(playlist_url: &str, msn: u64, part: Option<u64>) -> String {
    let (url, fragment) = split_keep(playlist_url, '#');
    let (path, query) = split_keep(url, '?');
    let mut params: Vec<String> = query
        .strip_prefix('?')
        .unwrap_or_default()
        .split('&')
        .filter(|p| {
            let name = p.split_once('=').map_or(*p, |(n, _)| n);
            !p.is_empty() && name != "_HLS_msn" && name != "_HLS_part"
        })
        .map(str::to_owned)
        .collect();
    params.push(format!("_HLS_msn={msn}"));
    if let Some(part) = part {
        params.push(format!("_HLS_part={part}"));
    }
    format!("{path}?{}{fragment}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(text: &str) -> MediaPlaylist {
        match parse(text) {
            Ok(Playlist::Media(m)) => m,
            other => panic!("not a media playlist: {other:?}"),
        }
    }

    #[test]
    fn attribute_list_with_quoted_commas() {
        let attrs = attributes(1, "T", r#"A=1,B="x,y",C=NO"#).unwrap();
        assert_eq!(attrs.len(), 3);
        assert_eq!(attr(&attrs, "B"), Some("x,y"));
        assert_eq!(attr(&attrs, "C"), Some("NO"));
        assert!(attributes(1, "T", r#"A="x"#).is_err());
        assert!(attributes(1, "T", r#"A="x"y"#).is_err());
        assert!(attributes(1, "T", "=1").is_err());
        assert!(attributes(1, "T", "A").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(1, "x", "18446744073709551615").unwrap(), u64::MAX);
        assert!(parse_u64(1, "x", "18446744073709551616").is_err());
        assert!(parse_u64(1, "x", "-1").is_err());
        assert!(parse_u64(1, "x", "+1").is_err());
        assert!(parse_u64(1, "x", "").is_err());
        assert_eq!(parse_duration(1, "x", "0.50000").unwrap(), 0.5);
        assert_eq!(parse_duration(1, "x", "4").unwrap(), 4.0);
        for bad in ["-0.5", "1e3", "inf", "NaN", ".", "1.2.3", "86400.1", ""] {
            assert!(parse_duration(1, "x", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dot_segments() {
        assert_eq!(remove_dot_segments("/a/b/../c"), "/a/c");
        assert_eq!(remove_dot_segments("/a/./b/"), "/a/b/");
        assert_eq!(remove_dot_segments("/../../a"), "/a");
        assert_eq!(remove_dot_segments("/a/b/.."), "/a/");
    }

    #[test]
    fn skip_offsets_msn() {
        let m = media(
            "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:10\n\
             #EXT-X-SKIP:SKIPPED-SEGMENTS=3\n#EXTINF:1,\na.ts\n",
        );
        assert_eq!(m.segments[0].msn, 13);
        assert_eq!(m.next_msn(), 14);
    }

    #[test]
    fn capped_respects_char_boundaries() {
        let s = "é".repeat(40);
        let c = capped(&s);
        assert!(c.len() <= 64);
        assert!(s.starts_with(&c));
    }
}
