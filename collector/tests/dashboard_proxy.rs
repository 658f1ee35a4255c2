//! The dashboard's HLS proxy against the testkit LL-HLS origin (with and
//! without MediaMTX-style reader sessions) and a stamped test pattern:
//! playlists rewritten onto the proxy with the session query kept, a
//! blocking reload that completes when the origin's does, and refusals of
//! unknown streams and of every way out of the stream's directory. Prints
//! the proxy's added time per part (proxied against direct, same run).

mod support;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::server::serve;

use glasswatch_testkit::{require_origin_stack, OriginOptions, RtspOrigin, TestPattern};

/// GET through testkit's HTTP client: (status, body, elapsed).
fn get(url: &str) -> (u16, String, Duration) {
    glasswatch_testkit::http::get_text(url).unwrap_or_else(|e| panic!("GET {url}: {e:#}"))
}

/// A raw request, so that `..` and odd bytes reach the server as written.
fn raw_status(addr: SocketAddr, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The URI lines of a playlist.
fn uris(playlist: &str) -> Vec<String> {
    let mut out: Vec<String> = playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    for l in playlist.lines().filter(|l| l.starts_with('#')) {
        let mut rest = l;
        while let Some(i) = rest.find("URI=\"") {
            let tail = &rest[i + 5..];
            let end = tail.find('"').unwrap_or(tail.len());
            out.push(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    out
}

/// The next part a blocking reload waits for: (msn, part).
fn next_part(playlist: &str) -> (u64, u64) {
    let mut msn: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    let mut parts = 0;
    for l in playlist.lines() {
        if l.starts_with("#EXT-X-PART:") {
            parts += 1;
        } else if !l.starts_with('#') && !l.trim().is_empty() {
            msn += 1;
            parts = 0;
        }
    }
    (msn, parts)
}

fn check_proxy(sessions: bool) {
    let path = "dev-cam0";
    let origin = RtspOrigin::start_with(
        &[path],
        OriginOptions {
            sessions,
            ..OriginOptions::llhls_like_fixture()
        },
    )
    .unwrap();
    let _publisher = TestPattern {
        stamp: true,
        ..TestPattern::default()
    }
    .publish(&origin.rtsp_url(path))
    .unwrap();
    origin.wait_for_hls(path, Duration::from_secs(20)).unwrap();
    let server = serve(&origin.hls_url(path));
    let prefix = "/hls/dev/cam0/";

    let (status, multi, _) = get(&format!("{}{prefix}index.m3u8", server.base));
    assert_eq!(status, 200, "{multi}");
    let media = uris(&multi);
    assert!(!media.is_empty(), "{multi}");
    for u in &media {
        assert!(u.starts_with(prefix), "not on the proxy: {u}");
        assert_eq!(u.contains("session="), sessions, "{u}");
    }
    let media_url = format!("{}{}", server.base, media[0]);
    let (status, playlist, _) = get(&media_url);
    assert_eq!(status, 200, "{playlist}");
    for u in uris(&playlist) {
        assert!(u.starts_with(prefix), "not on the proxy: {u}");
        // MediaMTX's padding gaps carry no session.
        if !u.ends_with("gap.mp4") {
            assert_eq!(u.contains("session="), sessions, "{u}");
        }
    }

    // Blocking reloads: proxied and direct at once complete together.
    let direct_base = origin.hls_url(path);
    let direct_dir = &direct_base[..direct_base.rfind('/').unwrap() + 1];
    let sep = if media[0].contains('?') { '&' } else { '?' };
    let mut added = Vec::new();
    let mut reload_gap = Vec::new();
    let mut playlist = playlist;
    for _ in 0..10 {
        let (msn, part) = next_part(&playlist);
        let q = format!("{sep}_HLS_msn={msn}&_HLS_part={part}");
        let proxied = format!("{media_url}{q}");
        let direct = format!("{direct_dir}{}{q}", &media[0][prefix.len()..]);
        let t0 = Instant::now();
        let d = std::thread::spawn(move || {
            let r = get(&direct);
            (r, Instant::now())
        });
        let (status, text, took) = get(&proxied);
        let proxied_done = Instant::now();
        let ((dstatus, _, _), direct_done) = d.join().unwrap();
        assert_eq!((status, dstatus), (200, 200));
        assert!(
            took < Duration::from_secs(3),
            "a blocking reload took {took:?}"
        );
        let gap = if proxied_done >= direct_done {
            proxied_done.duration_since(direct_done).as_secs_f64()
        } else {
            -direct_done.duration_since(proxied_done).as_secs_f64()
        };
        reload_gap.push(gap * 1e3);
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "the reloads took {:?}",
            t0.elapsed()
        );
        // The newest part: direct, then proxied.
        let newest = text
            .lines()
            .rfind(|l| l.starts_with("#EXT-X-PART:"))
            .and_then(|l| uris(l).into_iter().next())
            .unwrap();
        let (s1, _, direct_t) = get(&format!("{direct_dir}{}", &newest[prefix.len()..]));
        let (s2, _, proxied_t) = get(&format!("{}{newest}", server.base));
        assert_eq!((s1, s2), (200, 200), "{newest}");
        added.push((proxied_t.as_secs_f64() - direct_t.as_secs_f64()) * 1e3);
        playlist = text;
    }
    added.sort_by(f64::total_cmp);
    reload_gap.sort_by(f64::total_cmp);
    println!(
        "sessions={sessions}: proxy adds {:.2} ms per part (median of 10; min {:.2}, max {:.2}); \
         a blocking reload via the proxy ends {:+.2} ms after the same one direct (median)",
        added[5], added[0], added[9], reload_gap[5]
    );
    assert!(
        reload_gap[5] < 100.0,
        "the proxied reload lags the origin's: {reload_gap:?}"
    );

    // Refusals.
    let (status, _, _) = get(&format!("{}/hls/dev/nope/index.m3u8", server.base));
    assert_eq!(status, 404, "unknown stream");
    let (status, _, _) = get(&format!("{}/hls/other/cam0/index.m3u8", server.base));
    assert_eq!(status, 404, "unknown device");
    for escape in [
        "/hls/dev/cam0/../../etc/passwd",
        "/hls/dev/cam0/..%2F..%2Fetc%2Fpasswd",
        "/hls/dev/cam0/%2e%2e/x.m3u8",
        "/hls/dev/cam0/http:%2F%2F10.0.0.1%2Fx",
        "/hls/dev/cam0//127.0.0.1:1/x",
        "/hls/dev/cam0/a/./b",
        "/hls/dev/cam0/x.mp4?a=b%20c'",
    ] {
        let status = raw_status(server.addr, escape);
        assert!(
            (400..500).contains(&status),
            "{escape} answered {status}, not a refusal"
        );
    }
}

#[test]
fn proxy_serves_llhls_and_refuses_escapes() {
    if !require_origin_stack() {
        return;
    }
    check_proxy(false);
}

#[test]
fn proxy_keeps_mediamtx_sessions() {
    if !require_origin_stack() {
        return;
    }
    check_proxy(true);
}
