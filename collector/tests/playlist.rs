//! Tests of the HLS playlist reader against real MediaMTX v1.16.2 playlists
//! (`testdata/playlists/`, see its README) and against bad input.

use glasswatch_collector::hls::playlist::{
    blocking_url, parse, resolve, MediaPlaylist, Multivariant, Playlist, PlaylistErrorKind,
    MAX_LINE_BYTES,
};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

const LL_INDEX: &str =
    include_str!("../testdata/playlists/mediamtx-1.16.2-llhls-0000-multivariant.m3u8");
const LL_FIRST: &str =
    include_str!("../testdata/playlists/mediamtx-1.16.2-llhls-0001-first-gaps.m3u8");
const LL_0009: &str =
    include_str!("../testdata/playlists/mediamtx-1.16.2-llhls-0009-msn12-part6.m3u8");
const LL_0011: &str =
    include_str!("../testdata/playlists/mediamtx-1.16.2-llhls-0011-msn12-part7.m3u8");
const LL_0013: &str =
    include_str!("../testdata/playlists/mediamtx-1.16.2-llhls-0013-msn13-part0.m3u8");
const LL_LAST: &str = include_str!("../testdata/playlists/mediamtx-1.16.2-llhls-0265-last.m3u8");
const LL_REQUESTS: &str =
    include_str!("../testdata/playlists/mediamtx-1.16.2-llhls-requests-head.jsonl");
const TS_INDEX: &str =
    include_str!("../testdata/playlists/mediamtx-1.16.2-mpegts-0000-multivariant.m3u8");
const TS_FIRST: &str = include_str!("../testdata/playlists/mediamtx-1.16.2-mpegts-0001-first.m3u8");
const TS_LAST: &str = include_str!("../testdata/playlists/mediamtx-1.16.2-mpegts-0078-last.m3u8");

fn media(text: &str) -> MediaPlaylist {
    match parse(text) {
        Ok(Playlist::Media(m)) => m,
        other => panic!("not a media playlist: {other:?}"),
    }
}

fn multivariant(text: &str) -> Multivariant {
    match parse(text) {
        Ok(Playlist::Multivariant(m)) => m,
        other => panic!("not a multivariant playlist: {other:?}"),
    }
}

fn kind(text: &str) -> PlaylistErrorKind {
    match parse(text) {
        Err(e) => e.kind,
        Ok(p) => panic!("parsed: {p:?}"),
    }
}

/// Checks what holds for every LL-HLS playlist MediaMTX wrote in the capture.
fn check_llhls_invariants(m: &MediaPlaylist) {
    assert_eq!(m.version, Some(10));
    assert_eq!(m.target_duration, 1.0);
    assert!(!m.ended);
    let sc = m.server_control.as_ref().expect("server control");
    assert!(sc.can_block_reload);
    assert_eq!(sc.part_hold_back, Some(0.1675));
    assert_eq!(sc.can_skip_until, Some(6.0));
    assert_eq!(sc.hold_back, None);
    assert_eq!(m.part_target, Some(0.067));
    assert_eq!(
        m.map.as_ref().map(|t| t.uri.as_str()),
        Some("d5b1031f57ca_video1_init.mp4")
    );
    assert_eq!(m.segments.len(), 7, "hlsSegmentCount: 7");
    for (i, s) in m.segments.iter().enumerate() {
        assert_eq!(s.msn, m.media_sequence + i as u64);
        assert_eq!(s.duration, 0.5);
        if s.gap {
            assert_eq!(s.uri, "gap.mp4");
            assert!(s.parts.is_empty());
        } else {
            assert_eq!(s.uri, format!("d5b1031f57ca_video1_seg{}.mp4", s.msn));
        }
        // Parts are listed for the newest segments: 8 of them, the first
        // independent, 7 of 2 frames and 1 of 1 frame.
        if !s.parts.is_empty() {
            assert_eq!(s.parts.len(), 8);
            let ind: Vec<bool> = s.parts.iter().map(|p| p.independent).collect();
            assert_eq!(ind, [true, false, false, false, false, false, false, false]);
            let total: f64 = s.parts.iter().map(|p| p.duration).sum();
            assert!((total - 0.5).abs() < 0.001, "{total}");
            assert!(s.program_date_time.is_some());
        } else {
            assert!(s.program_date_time.is_none());
        }
    }
    // Part numbers run on across segments; the hint names the next one.
    let all: Vec<u64> = m
        .segments
        .iter()
        .flat_map(|s| s.parts.iter())
        .chain(m.trailing_parts.iter())
        .map(|p| part_number(&p.uri))
        .collect();
    assert!(all.windows(2).all(|w| w[1] == w[0] + 1), "{all:?}");
    let hint = m.preload_hint.as_ref().expect("preload hint");
    assert_eq!(part_number(&hint.uri), all.last().unwrap() + 1);
    assert_eq!(hint.byterange_start, None);
    assert!(m.trailing_parts.iter().all(|p| !p.gap));
    assert_eq!(
        m.trailing_parts.first().map(|p| p.independent),
        (!m.trailing_parts.is_empty()).then_some(true)
    );
}

fn part_number(uri: &str) -> u64 {
    uri.strip_prefix("d5b1031f57ca_video1_part")
        .and_then(|s| s.strip_suffix(".mp4"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected part URI {uri}"))
}

#[test]
fn llhls_multivariant() {
    let m = multivariant(LL_INDEX);
    assert_eq!(m.variants.len(), 1);
    let v = &m.variants[0];
    assert_eq!(v.uri, "video1_stream.m3u8");
    assert_eq!(v.bandwidth, Some(452_272));
    assert_eq!(v.codecs.as_deref(), Some("avc1.42c01e"));
    assert_eq!(v.resolution, Some((640, 360)));
}

#[test]
fn mpegts_multivariant() {
    let m = multivariant(TS_INDEX);
    assert_eq!(m.variants.len(), 1);
    assert_eq!(m.variants[0].uri, "main_stream.m3u8");
    assert_eq!(m.variants[0].bandwidth, Some(476_768));
}

#[test]
fn llhls_first_playlist_with_gaps() {
    let m = media(LL_FIRST);
    check_llhls_invariants(&m);
    assert_eq!(m.media_sequence, 5);
    let gaps: Vec<bool> = m.segments.iter().map(|s| s.gap).collect();
    assert_eq!(gaps, [true, true, false, false, false, false, false]);
    assert_eq!(m.segments[2].uri, "d5b1031f57ca_video1_seg7.mp4");
    // Parts are listed for seg10 and seg11 only.
    let parts: Vec<usize> = m.segments.iter().map(|s| s.parts.len()).collect();
    assert_eq!(parts, [0, 0, 0, 0, 0, 8, 8]);
    let seg10 = &m.segments[5];
    assert_eq!(seg10.msn, 10);
    assert_eq!(
        seg10.program_date_time.as_deref(),
        Some("2026-11-24T06:00:05.938Z")
    );
    let durations: Vec<f64> = seg10.parts.iter().map(|p| p.duration).collect();
    assert_eq!(
        durations,
        [0.06667, 0.06667, 0.06667, 0.06667, 0.06667, 0.06667, 0.06667, 0.03333]
    );
    assert_eq!(seg10.parts[0].uri, "d5b1031f57ca_video1_part24.mp4");
    assert_eq!(m.trailing_parts.len(), 6);
    assert_eq!(m.trailing_parts[0].uri, "d5b1031f57ca_video1_part40.mp4");
    assert!(m.trailing_parts[0].independent);
    assert_eq!(
        m.preload_hint.as_ref().map(|h| h.uri.as_str()),
        Some("d5b1031f57ca_video1_part46.mp4")
    );
    assert_eq!(m.next_msn(), 12);
    assert_eq!(m.next_part(), (12, 6));
}

#[test]
fn llhls_blocking_reloads() {
    let m = media(LL_0009);
    check_llhls_invariants(&m);
    assert_eq!(m.media_sequence, 5);
    assert_eq!(m.trailing_parts.len(), 7);
    assert_eq!(m.next_part(), (12, 7));

    // Segment 12 closed: no trailing parts, the window slid by one.
    let m = media(LL_0011);
    check_llhls_invariants(&m);
    assert_eq!(m.media_sequence, 6);
    assert_eq!(m.segments.iter().filter(|s| s.gap).count(), 1);
    assert!(m.trailing_parts.is_empty());
    assert_eq!(m.segments.last().map(|s| s.msn), Some(12));
    assert_eq!(m.segments.last().map(|s| s.parts.len()), Some(8));
    assert_eq!(
        m.preload_hint.as_ref().map(|h| h.uri.as_str()),
        Some("d5b1031f57ca_video1_part48.mp4")
    );
    assert_eq!(m.next_part(), (13, 0));

    let m = media(LL_0013);
    check_llhls_invariants(&m);
    assert_eq!(m.trailing_parts.len(), 1);
    assert_eq!(m.next_part(), (13, 1));

    let m = media(LL_LAST);
    check_llhls_invariants(&m);
    assert_eq!(m.media_sequence, 21);
    assert!(m.segments.iter().all(|s| !s.gap));
    assert_eq!(m.trailing_parts.len(), 7);
    assert_eq!(m.next_part(), (28, 7));
}

#[test]
fn mpegts_playlists() {
    let m = media(TS_FIRST);
    assert_eq!(m.version, Some(3));
    assert_eq!(m.target_duration, 1.0);
    assert_eq!(m.media_sequence, 0);
    assert!(m.server_control.is_none() && m.part_target.is_none() && m.map.is_none());
    assert!(m.preload_hint.is_none() && m.trailing_parts.is_empty());
    assert_eq!(m.segments.len(), 2);
    assert_eq!(m.segments[1].uri, "373f05ed2c83_main_seg1.ts");
    assert_eq!(
        m.segments[1].program_date_time.as_deref(),
        Some("2026-11-24T06:00:26.229Z")
    );
    assert_eq!(m.next_msn(), 2);
    assert_eq!(m.next_part(), (2, 0));

    let m = media(TS_LAST);
    assert_eq!(m.media_sequence, 2);
    assert_eq!(m.segments.len(), 7);
    for (i, s) in m.segments.iter().enumerate() {
        assert_eq!(s.msn, 2 + i as u64);
        assert_eq!(s.uri, format!("373f05ed2c83_main_seg{}.ts", s.msn));
        assert_eq!(s.duration, 1.0);
        assert!(!s.gap && s.parts.is_empty() && s.program_date_time.is_some());
    }
    assert_eq!(m.next_msn(), 9);
}

/// The `_HLS_msn`/`_HLS_part` of `url`, if it carries them.
fn directives(url: &str) -> Option<(u64, u64)> {
    let query = url.split_once('?')?.1;
    let get = |name: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
    };
    Some((get("_HLS_msn")?, get("_HLS_part")?))
}

/// Walks a request log: every blocking reload asked for `next_part()` of the
/// playlist received before it, and its answer lists the part asked for.
/// Returns how many reloads were checked.
fn check_request_sequence(requests: &str, load: &dyn Fn(&str) -> Option<String>) -> usize {
    let mut previous: Option<MediaPlaylist> = None;
    let mut checked = 0;
    for line in requests.lines().filter(|l| !l.trim().is_empty()) {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let url = r["url"].as_str().unwrap();
        let file = r["file"].as_str().unwrap();
        if !url.contains("_stream.m3u8") {
            continue;
        }
        let Some(text) = load(file) else {
            previous = None;
            continue;
        };
        let m = media(&text);
        if let Some((msn, part)) = directives(url) {
            let prev = previous.as_ref().expect("a reload follows a playlist");
            assert_eq!(prev.next_part(), (msn, part), "{url}");
            assert_eq!(
                blocking_url("/fixture-cam0/video1_stream.m3u8", msn, Some(part)),
                url
            );
            // The server held the reload until the asked-for part existed.
            let listed = if msn < m.next_msn() {
                m.segments
                    .iter()
                    .find(|s| s.msn == msn)
                    .is_some_and(|s| s.parts.len() as u64 > part)
            } else {
                msn == m.next_msn() && m.trailing_parts.len() as u64 > part
            };
            assert!(listed, "{url}: part not in the answer");
            // MediaMTX answered as soon as that part existed: it is always the
            // newest listed part (closing its segment if it was the last one).
            let next = m.next_part();
            assert!(
                next == (msn, part + 1) || next == (msn + 1, 0),
                "{url}: {next:?}"
            );
            checked += 1;
        }
        previous = Some(m);
    }
    checked
}

#[test]
fn llhls_request_sequence_follows_next_part() {
    let copied = |file: &str| {
        Some(
            match file {
                "0001_video1_stream.m3u8" => LL_FIRST,
                "0009_video1_stream.m3u8" => LL_0009,
                "0011_video1_stream.m3u8" => LL_0011,
                "0013_video1_stream.m3u8" => LL_0013,
                _ => return None,
            }
            .to_owned(),
        )
    };
    assert_eq!(check_request_sequence(LL_REQUESTS, &copied), 3);
}

/// The project's shared fixtures (`GLASSWATCH_FIXTURES`, else
/// `shared/fixtures` beside the repository, where CI puts the project's
/// `shared/` folder). Missing, the test is skipped in a bare `cargo test`
/// and fails in strict mode (CI, `scripts/test.sh`), as any missing
/// component does.
fn shared_fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("GLASSWATCH_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/fixtures"
            ))
        });
    glasswatch_testkit::require("the shared fixtures", || {
        if dir.join("mediamtx-1.16.2-llhls").is_dir() {
            Ok(())
        } else {
            Err(format!(
                "no mediamtx-1.16.2-llhls in {}; put the project's shared/ folder beside the \
                 repository or point GLASSWATCH_FIXTURES at its fixtures/",
                dir.display()
            ))
        }
    })
    .then_some(dir)
}

fn playlists_in(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "m3u8"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_shared_fixture_playlist() {
    let Some(root) = shared_fixtures() else {
        return;
    };
    let ll = root.join("mediamtx-1.16.2-llhls");
    let mut media_count = 0;
    for (name, text) in playlists_in(&ll) {
        if name.ends_with("_index.m3u8") {
            multivariant(&text);
            continue;
        }
        check_llhls_invariants(&media(&text));
        media_count += 1;
    }
    assert_eq!(media_count, 130);
    let requests = std::fs::read_to_string(ll.join("requests.jsonl")).unwrap();
    let load = |file: &str| std::fs::read_to_string(ll.join(file)).ok();
    assert_eq!(check_request_sequence(&requests, &load), 129);

    let ts = root.join("mediamtx-1.16.2-mpegts");
    let mut ts_count = 0;
    for (name, text) in playlists_in(&ts) {
        if name.ends_with("_index.m3u8") {
            multivariant(&text);
            continue;
        }
        let m = media(&text);
        assert!(m
            .segments
            .iter()
            .all(|s| s.duration == 1.0 && s.uri.ends_with(".ts")));
        assert!(m.segments.len() <= 7 && m.server_control.is_none());
        ts_count += 1;
    }
    assert_eq!(ts_count, 80);
}

#[test]
fn resolve_relative_absolute_and_session_query() {
    let base = "http://127.0.0.1:8888/cam/index.m3u8";
    assert_eq!(
        resolve(base, "video1_stream.m3u8"),
        "http://127.0.0.1:8888/cam/video1_stream.m3u8"
    );
    // A MediaMTX ≥ 1.18 session query follows every request.
    let session = "http://h:8888/cam/video1_stream.m3u8?session=abc";
    assert_eq!(
        resolve(session, "d5_part3.mp4"),
        "http://h:8888/cam/d5_part3.mp4?session=abc"
    );
    assert_eq!(
        resolve(session, "/other/x.mp4"),
        "http://h:8888/other/x.mp4?session=abc"
    );
    assert_eq!(
        resolve(session, "../x.mp4"),
        "http://h:8888/x.mp4?session=abc"
    );
    assert_eq!(
        resolve(session, "x.mp4?own=1"),
        "http://h:8888/cam/x.mp4?own=1"
    );
    assert_eq!(
        resolve(session, "//h:8888/cam/y.mp4"),
        "http://h:8888/cam/y.mp4?session=abc"
    );
    assert_eq!(
        resolve(session, "http://h:8888/z.mp4"),
        "http://h:8888/z.mp4?session=abc"
    );
    // Never to another host.
    assert_eq!(resolve(session, "https://cdn/z.mp4"), "https://cdn/z.mp4");
    assert_eq!(resolve(session, "//cdn/z.mp4"), "http://cdn/z.mp4");
    // Fragments: the base's is dropped, the URI's kept after the query.
    assert_eq!(
        resolve("http://h/a/b.m3u8?q#f", "c.ts#t"),
        "http://h/a/c.ts?q#t"
    );
    assert_eq!(resolve("http://h/a/b.m3u8?q", ""), "http://h/a/b.m3u8?q");
    // Bases without a path or without scheme and host.
    assert_eq!(resolve("http://h", "a.ts"), "http://h/a.ts");
    assert_eq!(resolve("http://h?s=1", "a.ts"), "http://h/a.ts?s=1");
    assert_eq!(resolve("/cam/index.m3u8?s=1", "v.m3u8"), "/cam/v.m3u8?s=1");
    assert_eq!(resolve("index.m3u8", "v.m3u8"), "v.m3u8");
}

#[test]
fn blocking_url_adds_and_replaces() {
    assert_eq!(
        blocking_url("http://h/cam/v.m3u8", 12, Some(6)),
        "http://h/cam/v.m3u8?_HLS_msn=12&_HLS_part=6"
    );
    assert_eq!(
        blocking_url(
            "http://h/cam/v.m3u8?session=abc&_HLS_msn=1&_HLS_part=2",
            13,
            Some(0)
        ),
        "http://h/cam/v.m3u8?session=abc&_HLS_msn=13&_HLS_part=0"
    );
    assert_eq!(
        blocking_url("/v.m3u8?_HLS_part=2&a=b", 9, None),
        "/v.m3u8?a=b&_HLS_msn=9"
    );
    assert_eq!(
        blocking_url("/v.m3u8?#x", 1, Some(2)),
        "/v.m3u8?_HLS_msn=1&_HLS_part=2#x"
    );
    // Parameters merely starting with the same letters stay.
    assert_eq!(
        blocking_url("/v.m3u8?_HLS_msnx=1", 1, None),
        "/v.m3u8?_HLS_msnx=1&_HLS_msn=1"
    );
}

#[test]
fn truncated_at_every_byte_never_panics() {
    for text in [LL_FIRST, TS_LAST, LL_INDEX] {
        for end in 0..=text.len() {
            // The files are ASCII, so every index is a char boundary.
            let _ = parse(&text[..end]);
        }
        assert!(parse(text).is_ok());
    }
    // Cut inside a quoted URI: an error with the line number.
    let cut = LL_FIRST.find("part46").unwrap();
    let e = parse(&LL_FIRST[..cut]).unwrap_err();
    assert_eq!(e.line, LL_FIRST[..cut].lines().count());
    assert!(
        matches!(e.kind, PlaylistErrorKind::InvalidTag { .. }),
        "{e}"
    );
    // Cut after an EXTINF: its URI is missing.
    let cut = LL_FIRST.find("d5b1031f57ca_video1_seg11.mp4").unwrap();
    let e = parse(&LL_FIRST[..cut]).unwrap_err();
    assert_eq!(e.kind, PlaylistErrorKind::MissingUri { tag: "EXTINF" });
    assert_eq!(e.line, LL_FIRST[..cut].lines().count());
}

#[test]
fn missing_header() {
    assert_eq!(kind(""), PlaylistErrorKind::MissingHeader);
    assert_eq!(kind("\n#EXTM3U\n"), PlaylistErrorKind::MissingHeader);
    assert_eq!(kind(&LL_FIRST[1..]), PlaylistErrorKind::MissingHeader);
    assert_eq!(kind("#EXTM3U8\n"), PlaylistErrorKind::MissingHeader);
    assert_eq!(
        kind("#EXTM3U\n"),
        PlaylistErrorKind::MissingTag {
            tag: "EXT-X-TARGETDURATION"
        }
    );
    // CRLF line ends and a byte order mark are fine.
    let crlf = LL_FIRST.replace('\n', "\r\n");
    assert_eq!(media(&crlf), media(LL_FIRST));
    assert_eq!(media(&format!("\u{feff}{TS_LAST}")), media(TS_LAST));
}

#[test]
fn absurd_numbers() {
    let with = |tag: &str| format!("#EXTM3U\n#EXT-X-TARGETDURATION:1\n{tag}\n#EXTINF:1,\na.ts\n");
    for tag in [
        "#EXT-X-MEDIA-SEQUENCE:-1",
        "#EXT-X-MEDIA-SEQUENCE:18446744073709551616",
        "#EXT-X-MEDIA-SEQUENCE:1e3",
        "#EXT-X-VERSION:4294967296",
        "#EXT-X-PART-INF:PART-TARGET=-0.1",
        "#EXT-X-SERVER-CONTROL:PART-HOLD-BACK=1e400",
        "#EXT-X-SERVER-CONTROL:CAN-SKIP-UNTIL=NaN",
        "#EXT-X-PART:DURATION=99999999,URI=\"p.mp4\"",
        "#EXT-X-PART:DURATION=inf,URI=\"p.mp4\"",
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p\",BYTERANGE-START=-5",
        "#EXT-X-MAP:URI=\"i.mp4\",BYTERANGE=\"10@x\"",
        "#EXTINF:-1,",
    ] {
        let text = with(tag);
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, 3, "{tag}: {e}");
        assert!(
            matches!(e.kind, PlaylistErrorKind::InvalidNumber { .. }),
            "{tag}: {e}"
        );
    }
    let e = parse("#EXTM3U\n#EXT-X-TARGETDURATION:1e308\n").unwrap_err();
    assert!(matches!(e.kind, PlaylistErrorKind::InvalidNumber { .. }));
    // The value in the error is capped.
    let e = parse(&format!(
        "#EXTM3U\n#EXT-X-TARGETDURATION:{}\n",
        "9".repeat(500)
    ))
    .unwrap_err();
    let PlaylistErrorKind::InvalidNumber { value, .. } = e.kind else {
        panic!("{e}")
    };
    assert!(value.len() <= 64);

    // Sequence numbers that overflow, directly or for the segment being built.
    let top = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:18446744073709551615\n";
    let e = parse(&format!("{top}#EXTINF:1,\na.ts\n#EXTINF:1,\nb.ts\n")).unwrap_err();
    assert_eq!((e.line, e.kind), (7, PlaylistErrorKind::SequenceOverflow));
    let e = parse(&format!("{top}#EXTINF:1,\na.ts\n")).unwrap_err();
    assert_eq!(e.kind, PlaylistErrorKind::SequenceOverflow);
    let m = media(top);
    assert_eq!(m.next_part(), (u64::MAX, 0));
}

#[test]
fn unknown_tags_and_comments_ignored() {
    let noisy = LL_FIRST
        .replace(
            "#EXTINF",
            "#EXT-X-FUTURE-TAG:A=\"b,c\"\n# a comment\n\n#EXTINF",
        )
        .replace("#EXT-X-MAP", "#EXT-X-KEY:METHOD=NONE\n#EXT-X-MAP")
        + "#EXT-X-RENDITION-REPORT:URI=\"../1M/waitForMSN.php\",LAST-MSN=273,LAST-PART=2\n";
    assert_eq!(media(&noisy), media(LL_FIRST));
}

#[test]
fn structural_errors() {
    assert_eq!(
        kind("#EXTM3U\n#EXT-X-TARGETDURATION:1\na.ts\n"),
        PlaylistErrorKind::UnexpectedUri
    );
    assert_eq!(
        kind("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n#EXT-X-TARGETDURATION:1\n"),
        PlaylistErrorKind::MixedPlaylist
    );
    let e = parse("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n").unwrap_err();
    assert_eq!(
        (e.line, e.kind),
        (
            2,
            PlaylistErrorKind::MissingUri {
                tag: "EXT-X-STREAM-INF"
            }
        )
    );
    let e = parse("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n#EXTINF:1,\na.ts\n").unwrap_err();
    assert_eq!(
        (e.line, e.kind),
        (3, PlaylistErrorKind::MissingUri { tag: "EXTINF" })
    );
    for tag in [
        "#EXT-X-PART:DURATION=0.1",
        "#EXT-X-PART:URI=\"p.mp4\"",
        "#EXT-X-MAP:BYTERANGE=\"1@0\"",
        "#EXT-X-PRELOAD-HINT:TYPE=PART",
        "#EXT-X-PART-INF:",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD",
        "#EXT-X-PROGRAM-DATE-TIME:",
    ] {
        let text = format!("#EXTM3U\n#EXT-X-TARGETDURATION:1\n{tag}\n");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, 3, "{tag}");
        assert!(
            matches!(e.kind, PlaylistErrorKind::InvalidTag { .. }),
            "{tag}: {e}"
        );
    }
}

#[test]
fn other_tag_forms() {
    let m = media(
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n\
         #EXT-X-SERVER-CONTROL:HOLD-BACK=12.0\n\
         #EXT-X-MAP:URI=\"init.mp4\",BYTERANGE=\"720@0\"\n\
         #EXTINF:4\nold.ts\n\
         #EXT-X-PART:DURATION=1.0,URI=\"p1.mp4\",GAP=YES\n\
         #EXT-X-PRELOAD-HINT:TYPE=MAP,URI=\"init2.mp4\"\n\
         #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg.mp4\",BYTERANGE-START=100,BYTERANGE-LENGTH=50\n\
         #EXT-X-ENDLIST\n",
    );
    assert!(m.ended);
    let sc = m.server_control.unwrap();
    assert!(!sc.can_block_reload);
    assert_eq!(sc.hold_back, Some(12.0));
    let map = m.map.unwrap();
    assert_eq!(map.uri, "init.mp4");
    assert_eq!(
        map.byterange.map(|b| (b.length, b.offset)),
        Some((720, Some(0)))
    );
    assert_eq!(m.segments[0].duration, 4.0);
    assert!(m.trailing_parts[0].gap);
    let hint = m.preload_hint.unwrap();
    assert_eq!(hint.uri, "seg.mp4");
    assert_eq!(
        (hint.byterange_start, hint.byterange_length),
        (Some(100), Some(50))
    );
}

#[test]
fn overlong_lines_and_texts() {
    let long = format!(
        "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{}\n",
        "a".repeat(MAX_LINE_BYTES + 1)
    );
    let e = parse(&long).unwrap_err();
    assert_eq!(e.line, 4);
    assert!(matches!(e.kind, PlaylistErrorKind::LineTooLong { .. }));
    // Exactly at the limit is fine.
    let ok = format!(
        "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{}\n",
        "a".repeat(MAX_LINE_BYTES)
    );
    assert_eq!(media(&ok).segments.len(), 1);
    // Too many lines.
    let many = format!("#EXTM3U\n{}", "\n".repeat(200_000));
    assert_eq!(
        parse(&many).unwrap_err().kind,
        PlaylistErrorKind::TooManyLines
    );
    let huge = "#".repeat(5 * 1024 * 1024);
    assert!(matches!(
        parse(&huge).unwrap_err().kind,
        PlaylistErrorKind::TooLarge { .. }
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(s in "(#EXTM3U\n)?([ -~\n]{0,200})") {
        let _ = parse(&s);
        let _ = resolve(&s, &s);
        let _ = blocking_url(&s, 1, Some(2));
    }

    #[test]
    fn random_lines_of_real_tags_never_panic(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("#EXT-X-TARGETDURATION:1".to_owned()),
                Just("#EXTINF:0.5,".to_owned()),
                Just("#EXT-X-GAP".to_owned()),
                Just("#EXT-X-STREAM-INF:BANDWIDTH=1".to_owned()),
                Just("#EXT-X-SKIP:SKIPPED-SEGMENTS=18446744073709551615".to_owned()),
                Just("#EXT-X-MEDIA-SEQUENCE:18446744073709551614".to_owned()),
                Just("#EXT-X-PART:DURATION=0.1,URI=\"p\",INDEPENDENT=YES".to_owned()),
                Just("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p\"".to_owned()),
                Just("seg.mp4".to_owned()),
                "[ -~]{0,30}",
            ],
            0..40,
        )
    ) {
        let text = format!("#EXTM3U\n{}", lines.join("\n"));
        if let Ok(Playlist::Media(m)) = parse(&text) {
            // Segment numbers are consecutive and next_msn follows them.
            for w in m.segments.windows(2) {
                prop_assert_eq!(w[1].msn, w[0].msn + 1);
            }
            if let Some(last) = m.segments.last() {
                prop_assert_eq!(m.next_msn(), last.msn + 1);
            }
            prop_assert_eq!(m.next_part().1, m.trailing_parts.len() as u64);
        }
    }

    #[test]
    fn random_bytes_lossy_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let s = String::from_utf8_lossy(&bytes);
        let _ = parse(&s);
        let _ = parse(&format!("#EXTM3U\n{s}"));
    }
}

#[test]
fn media_sequence_after_a_segment_is_an_error() {
    // Found by the property test below: a late EXT-X-MEDIA-SEQUENCE would
    // renumber the playlist behind the segments already read.
    let text = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:0.5,\nseg.mp4\n#EXT-X-MEDIA-SEQUENCE:7\n";
    let e = parse(text).unwrap_err();
    assert_eq!(e.line, 5, "{e}");
}
