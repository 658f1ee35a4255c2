//! The muxer against the real MediaMTX v1.16.2 capture in
//! `testkit/testdata/mediamtx-1.16.2-llhls/` (see its README): the access
//! units MediaMTX served are fed back in with their decode times, and what
//! comes out must be what MediaMTX wrote.

use super::*;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/mediamtx-1.16.2-llhls"
);

/// The fixture's first and last part numbers in the test data.
const FIRST_PART: u64 = 40;
const LAST_PART: u64 = 111;

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}/{name}")).unwrap()
}

fn read_text(name: &str) -> String {
    String::from_utf8(read(name)).unwrap()
}

/// A parsed part: sequence number, base decode time, samples.
struct FixturePart {
    sequence: u32,
    base: u64,
    samples: Vec<fmp4::Sample>,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// Walks `moof(mfhd, traf(tfhd, tfdt, trun)) mdat` as MediaMTX lays it out.
fn parse_part(data: &[u8]) -> FixturePart {
    let moof_len = be32(data, 0) as usize;
    assert_eq!(&data[4..8], b"moof");
    let mfhd = 8;
    assert_eq!(&data[mfhd + 4..mfhd + 8], b"mfhd");
    let sequence = be32(data, mfhd + 12);
    let traf = mfhd + be32(data, mfhd) as usize;
    let tfhd = traf + 8;
    let tfdt = tfhd + be32(data, tfhd) as usize;
    assert_eq!(&data[tfdt + 4..tfdt + 8], b"tfdt");
    let base = u64::from_be_bytes(data[tfdt + 12..tfdt + 20].try_into().unwrap());
    let trun = tfdt + be32(data, tfdt) as usize;
    assert_eq!(&data[trun + 4..trun + 8], b"trun");
    let flags = be32(data, trun + 8) & 0xff_ffff;
    let count = be32(data, trun + 12) as usize;
    let data_offset = be32(data, trun + 16) as usize;
    let mut at = trun + 20;
    let mut pos = data_offset;
    let mut samples = Vec::new();
    for _ in 0..count {
        let duration = be32(data, at);
        let size = be32(data, at + 4) as usize;
        at += 8;
        let mut non_sync = false;
        if flags & 0x400 != 0 {
            non_sync = be32(data, at) & (1 << 16) != 0;
            at += 4;
        }
        assert_eq!(flags & 0x800, 0, "no composition offsets in the fixture");
        samples.push(fmp4::Sample {
            duration,
            pts_offset: 0,
            non_sync,
            payload: data[pos..pos + size].to_vec(),
        });
        pos += size;
    }
    assert_eq!(&data[moof_len + 4..moof_len + 8], b"mdat");
    assert_eq!(pos, data.len());
    FixturePart {
        sequence,
        base,
        samples,
    }
}

fn avcc_nals(sample: &[u8]) -> Vec<&[u8]> {
    h264::avcc_nals(sample, 4).map(|r| r.unwrap()).collect()
}

/// The fixture's SPS and PPS, read from its first IDR sample.
fn fixture_parameter_sets() -> (Vec<u8>, Vec<u8>) {
    let part = parse_part(&read(&format!("video1_part{FIRST_PART}.mp4")));
    let nals = avcc_nals(&part.samples[0].payload);
    (nals[0].to_vec(), nals[1].to_vec())
}

#[test]
fn init_section_is_byte_identical() {
    let (sps, pps) = fixture_parameter_sets();
    assert_eq!(sps::parse_sps(&sps).unwrap().width, 640);
    let ours = fmp4::init_section(&sps, &pps, 640, 360);
    assert_eq!(ours, read("video1_init.mp4"));
}

#[test]
fn parts_are_byte_identical_when_rebuilt() {
    for n in FIRST_PART..=LAST_PART {
        let data = read(&format!("video1_part{n}.mp4"));
        let part = parse_part(&data);
        assert_eq!(u64::from(part.sequence), n);
        assert_eq!(fmp4::part(part.sequence, part.base, &part.samples), data);
    }
}

/// capture_us per seq, from the publisher's truth.
fn truth_capture_us() -> std::collections::HashMap<u64, i64> {
    read_text("truth.jsonl")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["seq"].as_u64().unwrap(),
                v["capture_us"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Every access unit of the test data's parts, in order: NAL units with an
/// AUD in front (which MediaMTX's input had), decode time, capture time.
fn fixture_access_units() -> Vec<(Vec<Vec<u8>>, i64, SystemTime)> {
    let truth = truth_capture_us();
    let mut out = Vec::new();
    // Part 40 starts at seq 75 (its tfdt is 10 s + 75 frames).
    let mut seq = 75u64;
    for n in FIRST_PART..=LAST_PART {
        let part = parse_part(&read(&format!("video1_part{n}.mp4")));
        let mut dts = part.base as i64 - START_DTS;
        for sample in &part.samples {
            let mut nals = vec![vec![0x09, 0xf0]];
            nals.extend(avcc_nals(&sample.payload).into_iter().map(<[u8]>::to_vec));
            let capture_us = truth[&seq];
            // MediaMTX stamped the segment 1.7 to 2.7 ms after capture.
            let ntp = UNIX_EPOCH + Duration::from_micros(capture_us as u64 + 2000);
            out.push((nals, dts, ntp));
            dts += i64::from(sample.duration);
            seq += 1;
        }
    }
    out
}

fn fixture_config() -> MuxerConfig {
    MuxerConfig {
        segment_count: 7,
        segment_min_duration: Duration::from_millis(500),
        part_min_duration: Duration::from_millis(50),
    }
}

/// Feeds `aus` and returns the muxer and every distinct media playlist it
/// served along the way.
fn replay(aus: &[(Vec<Vec<u8>>, i64, SystemTime)]) -> (Muxer, Vec<String>) {
    let mut muxer = Muxer::new(fixture_config(), "d5b1031f57ca".to_owned());
    let mut playlists: Vec<String> = Vec::new();
    for (nals, dts, ntp) in aus {
        let refs: Vec<&[u8]> = nals.iter().map(Vec::as_slice).collect();
        muxer.write_access_unit(&refs, *dts, *dts, *ntp).unwrap();
        if muxer.has_content() {
            let p = muxer.media_playlist(false, "");
            if playlists.last() != Some(&p) {
                playlists.push(p);
            }
        }
    }
    (muxer, playlists)
}

#[test]
fn muxed_parts_equal_mediamtx_parts() {
    let aus = fixture_access_units();
    let (muxer, _) = replay(&aus);
    // Our part k is MediaMTX's part k + 40: same bytes but the sequence
    // number in mfhd.
    let mut compared = 0;
    let parts: Vec<Arc<Part>> = muxer
        .entries()
        .filter_map(|e| match e {
            Entry::Segment(s) => Some(s.parts.clone()),
            Entry::Gap { .. } => None,
        })
        .flatten()
        .chain(muxer.open_parts().iter().cloned())
        .collect();
    for part in &parts {
        let mut theirs = read(&format!("video1_part{}.mp4", part.id + FIRST_PART));
        theirs[20..24].copy_from_slice(&(part.id as u32).to_be_bytes());
        assert_eq!(&part.data[..], &theirs[..], "part {}", part.id);
        compared += 1;
    }
    assert!(compared >= 7 * 8, "only {compared} parts compared");
}

#[test]
fn playlists_have_mediamtx_shapes() {
    let aus = fixture_access_units();
    let (_, ours) = replay(&aus);
    let our_shapes: Vec<String> = ours.iter().map(|p| super::playlist_shape(p)).collect();
    let mut names: Vec<String> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("_video1_stream.m3u8"))
        .collect();
    names.sort();
    assert!(names.len() >= 10);
    for name in &names {
        let theirs = super::playlist_shape(&read_text(name));
        assert!(
            our_shapes.contains(&theirs),
            "no playlist of ours has the shape of {name}:\n{theirs}\n\nours at a similar stage:\n{}",
            our_shapes
                .iter()
                .find(|s| s.lines().count() == theirs.lines().count())
                .map_or("(none)", String::as_str)
        );
    }
}

#[test]
fn later_playlist_is_exactly_mediamtx_playlist_shifted() {
    // Fed from MediaMTX's seg12 on, our seg7 is its seg12 and our part 0 its
    // part 40: once the gaps are gone, our playlists are its playlists with
    // every id and the media sequence shifted (dates masked: ours come from
    // the publisher's capture times).
    let aus = fixture_access_units();
    let (_, ours) = replay(&aus);
    let theirs = read_text("0107_video1_stream.m3u8");
    let mask = |l: &str| -> String {
        if l.starts_with("#EXT-X-PROGRAM-DATE-TIME:") {
            "#EXT-X-PROGRAM-DATE-TIME:*".to_owned()
        } else {
            l.to_owned()
        }
    };
    let mut expected = String::new();
    for line in theirs.lines() {
        let mut l = mask(line);
        if let Some(n) = l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            l = format!("#EXT-X-MEDIA-SEQUENCE:{}", n.parse::<u64>().unwrap() - 5);
        }
        for (kind, delta) in [("_seg", 5u64), ("_part", FIRST_PART)] {
            if let Some(at) = l.find(&format!("video1{kind}")) {
                let start = at + "video1".len() + kind.len();
                let end = start + l[start..].find(".mp4").unwrap();
                let n: u64 = l[start..end].parse().unwrap();
                l = format!("{}{}{}", &l[..start], n - delta, &l[end..]);
            }
        }
        expected.push_str(&l);
        expected.push('\n');
    }
    let found = ours
        .iter()
        .any(|p| p.lines().map(|l| mask(l) + "\n").collect::<String>() == expected);
    assert!(
        found,
        "expected:\n{expected}\nours:\n{}",
        ours.join("\n----\n")
    );
}

#[test]
fn program_date_time_is_the_first_frame_time() {
    let aus = fixture_access_units();
    let (muxer, _) = replay(&aus);
    let playlist = muxer.media_playlist(false, "");
    let pdt = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
        .unwrap();
    assert!(pdt.ends_with('Z') && pdt.len() <= 24, "{pdt}");
    assert_eq!(
        program_date_time(UNIX_EPOCH + Duration::from_millis(1_795_500_005_938)),
        "2026-11-24T06:00:05.938Z"
    );
    assert_eq!(
        program_date_time(UNIX_EPOCH + Duration::from_millis(1_795_500_005_930)),
        "2026-11-24T06:00:05.93Z"
    );
    assert_eq!(
        program_date_time(UNIX_EPOCH + Duration::from_secs(1_795_500_005)),
        "2026-11-24T06:00:05Z"
    );
}

#[test]
fn multivariant_matches_mediamtx_but_for_bandwidth() {
    let aus = fixture_access_units();
    let (muxer, _) = replay(&aus);
    let ours = muxer.multivariant_playlist("").unwrap();
    let theirs = read_text("0000_index.m3u8");
    let strip = |s: &str| -> String {
        s.split(',')
            .filter(|f| !f.contains("BANDWIDTH="))
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(strip(&ours), strip(&theirs));
    assert!(ours.contains("#EXT-X-STREAM-INF:BANDWIDTH="));
    let with_session = muxer.multivariant_playlist("session=abc").unwrap();
    assert!(with_session.ends_with("\nvideo1_stream.m3u8?session=abc\n"));
}

#[test]
fn blocking_requests_wait_for_their_part_and_reject_out_of_range() {
    let aus = fixture_access_units();
    let mut muxer = Muxer::new(fixture_config(), "p".to_owned());
    // Before the first segment only msn == next + 1 waits (gohlslib's
    // unsigned arithmetic); anything else is 400.
    assert_eq!(muxer.blocking(7, 0), Blocking::BadRequest);
    assert_eq!(muxer.blocking(8, 0), Blocking::Wait);
    let mut fed = 0;
    while !muxer.has_content() {
        let (nals, dts, ntp) = &aus[fed];
        let refs: Vec<&[u8]> = nals.iter().map(Vec::as_slice).collect();
        muxer.write_access_unit(&refs, *dts, *dts, *ntp).unwrap();
        fed += 1;
    }
    // The first segment (seg7, 8 parts) closed when the 16th frame arrived.
    assert_eq!(fed, 16);
    assert_eq!(muxer.next_part_id(), 8);
    assert_eq!(muxer.blocking(7, 0), Blocking::Ready);
    assert_eq!(muxer.blocking(7, 7), Blocking::Ready);
    // Past the last part of seg7 means part 0 of seg8, which does not exist yet.
    assert_eq!(muxer.blocking(7, 8), Blocking::Wait);
    assert_eq!(muxer.blocking(8, 0), Blocking::Wait);
    assert_eq!(muxer.blocking(9, 0), Blocking::Wait);
    assert_eq!(muxer.blocking(10, 0), Blocking::BadRequest);
    assert!(matches!(
        muxer.lookup("p_video1_part8.mp4"),
        Lookup::Pending(8)
    ));
    assert!(matches!(
        muxer.lookup("p_video1_part9.mp4"),
        Lookup::NotFound
    ));
    assert!(matches!(
        muxer.lookup("p_video1_part7.mp4"),
        Lookup::Found { .. }
    ));
    assert!(matches!(
        muxer.lookup("p_video1_seg7.mp4"),
        Lookup::Found { .. }
    ));
    assert!(matches!(
        muxer.lookup("p_video1_seg8.mp4"),
        Lookup::NotFound
    ));
    assert!(matches!(
        muxer.lookup("p_video1_init.mp4"),
        Lookup::Found { .. }
    ));
    assert!(matches!(muxer.lookup("gap.mp4"), Lookup::NotFound));
    assert!(matches!(
        muxer.lookup("p_video1_part07.mp4"),
        Lookup::NotFound
    ));
    // Part 8 holds frames 15 and 16; it is done when frame 17 arrives (a
    // frame waits for its successor), not before.
    for _ in 0..1 {
        let (nals, dts, ntp) = &aus[fed];
        let refs: Vec<&[u8]> = nals.iter().map(Vec::as_slice).collect();
        muxer.write_access_unit(&refs, *dts, *dts, *ntp).unwrap();
        fed += 1;
        assert_eq!(muxer.blocking(8, 0), Blocking::Wait);
    }
    let (nals, dts, ntp) = &aus[fed];
    let refs: Vec<&[u8]> = nals.iter().map(Vec::as_slice).collect();
    muxer.write_access_unit(&refs, *dts, *dts, *ntp).unwrap();
    assert_eq!(muxer.blocking(8, 0), Blocking::Ready);
    assert!(matches!(
        muxer.lookup("p_video1_part8.mp4"),
        Lookup::Found { .. }
    ));
}

#[test]
fn queries_are_filtered_like_go() {
    assert_eq!(filter_hls_params(""), "");
    assert_eq!(
        filter_hls_params("_HLS_msn=3&session=x&_HLS_part=1&a=b%20c"),
        "a=b+c&session=x"
    );
    assert_eq!(filter_hls_params("a;b=1"), "a;b=1");
    assert_eq!(query_escape("a b/ü"), "a+b%2F%C3%BC");
}

#[test]
fn part_durations_round_up_to_frames() {
    let frame = ticks_to_ns(3000);
    assert_eq!(frame, 33_333_333);
    let set: BTreeSet<i64> = [frame].into();
    assert_eq!(find_compatible_part_duration(50_000_000, &set), 60_000_000);
    assert_eq!(
        find_compatible_part_duration(200_000_000, &set),
        200_000_000
    );
    assert!(!part_duration_is_compatible(10_000_000, frame));
}

#[test]
fn prefixes_are_random_hex() {
    let a = random_prefix();
    assert_eq!(a.len(), 12);
    assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(a, random_prefix());
}
