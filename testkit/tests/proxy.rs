//! The delay proxy: media responses held back by the delay, playlists not;
//! path, query, status, headers and redirects passed through. The first test
//! runs against a scripted upstream in this process (no outside tools); the
//! second in front of the real LL-HLS test origin.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{Ipv4Addr, TcpListener},
    thread,
    time::{Duration, Instant},
};

use glasswatch_testkit::{
    ffmpeg_read_hls_h264,
    http::{get, get_with_headers},
    require_origin_stack, DelayProxy, OriginOptions, RtspOrigin, TestPattern,
};

const T: Duration = Duration::from_secs(10);
const D: Duration = Duration::from_millis(300);

/// A scripted upstream: answers every request on its own thread; its port.
fn upstream() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            thread::spawn(move || answer(stream, port));
        }
    });
    port
}

fn answer(mut stream: std::net::TcpStream, port: u16) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let target = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_owned();
    let mut cookie = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("cookie") {
                cookie = value.trim().to_owned();
            }
        }
    }
    let path = target.split('?').next().unwrap_or_default().to_owned();
    let (status, extra, body): (&str, String, Vec<u8>) = match path.as_str() {
        "/redirect" => (
            "302 Found",
            format!("Location: http://127.0.0.1:{port}/cam/index.m3u8?cookieCheck=1\r\n"),
            Vec::new(),
        ),
        "/relative" => (
            "302 Found",
            "Location: /cam/index.m3u8?x=1\r\n".to_owned(),
            Vec::new(),
        ),
        "/missing.mp4" => (
            "404 Not Found",
            String::new(),
            b"404 page not found".to_vec(),
        ),
        p if p.ends_with(".m3u8") => ("200 OK", String::new(), b"#EXTM3U\n".to_vec()),
        _ => ("200 OK", String::new(), vec![7u8; 100_000]),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nX-Target: {target}\r\nX-Cookie: {cookie}\r\n\
         Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nCache-Control: max-age=3600\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

#[test]
fn media_is_delayed_and_playlists_are_not() {
    let port = upstream();
    let origin = format!("http://127.0.0.1:{port}");
    let proxy = DelayProxy::start(&origin, D).unwrap();
    assert_eq!(proxy.delay(), D);

    // Media: held back by D after the upstream body is complete.
    let direct = get(&format!("{origin}/cam/abc_video1_part7.mp4?session=s"), T).unwrap();
    let proxied = get(&proxy.url("/cam/abc_video1_part7.mp4?session=s"), T).unwrap();
    assert_eq!(proxied.status, 200);
    assert_eq!(proxied.body, direct.body);
    // The proxy sleeps D after the body is complete, so it can never be
    // quicker than D (its promise); two fetches differ by a few ms of their
    // own, and by more on a loaded machine (the upper bound is the machine's).
    assert!(proxied.elapsed >= D, "{:?}", proxied.elapsed);
    let extra = proxied.elapsed.saturating_sub(direct.elapsed);
    assert!(
        extra >= D - Duration::from_millis(20) && extra < D + Duration::from_millis(500),
        "media held {extra:?} more than direct, expected about {D:?}"
    );
    // Path and query intact, headers (repeated ones too) intact.
    assert_eq!(
        proxied.header("x-target"),
        Some("/cam/abc_video1_part7.mp4?session=s")
    );
    let cookies: Vec<&str> = proxied
        .headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(proxied.header("cache-control"), Some("max-age=3600"));

    // Playlists, blocking reloads included: not held.
    let playlist = get(
        &proxy.url("/cam/video1_stream.m3u8?_HLS_msn=3&_HLS_part=1"),
        T,
    )
    .unwrap();
    assert_eq!(playlist.text(), "#EXTM3U\n");
    assert_eq!(
        playlist.header("x-target"),
        Some("/cam/video1_stream.m3u8?_HLS_msn=3&_HLS_part=1")
    );
    // The proxy's promise: playlists are not held (they would take D or
    // more); how quickly a loopback answer comes is the machine's.
    assert!(playlist.elapsed < D, "playlist took {:?}", playlist.elapsed);

    // Status passed on (a missing part is still a media response).
    assert_eq!(get(&proxy.url("/missing.mp4"), T).unwrap().status, 404);

    // Redirects: absolute ones to the upstream now point at the proxy.
    let r = get(&proxy.url("/redirect"), T).unwrap();
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some(proxy.url("/cam/index.m3u8?cookieCheck=1").as_str())
    );
    let r = get(&proxy.url("/relative"), T).unwrap();
    assert_eq!(r.header("location"), Some("/cam/index.m3u8?x=1"));

    // Request headers go upstream.
    let r = get_with_headers(&proxy.url("/x.m3u8"), &[("Cookie", "hlsSession=42")], T).unwrap();
    assert_eq!(r.header("x-cookie"), Some("hlsSession=42"));

    // The delay can change while running.
    proxy.set_delay(Duration::ZERO);
    let quick = get(&proxy.url("/cam/abc_video1_seg7.mp4"), T).unwrap();
    // No longer held (it was D a moment ago).
    assert!(quick.elapsed < D, "{:?}", quick.elapsed);
    assert_eq!(
        proxy.proxied(&format!("{origin}/cam/index.m3u8")).unwrap(),
        proxy.url("/cam/index.m3u8")
    );
    assert!(proxy.proxied("http://elsewhere/x").is_err());
}

#[test]
fn in_front_of_the_llhls_origin() {
    if !require_origin_stack() {
        return;
    }
    let origin = RtspOrigin::start_with(&["cam"], OriginOptions::llhls_like_fixture()).unwrap();
    let _publisher = TestPattern::default()
        .publish(&origin.rtsp_url("cam"))
        .unwrap();
    origin.wait_for_hls("cam", Duration::from_secs(20)).unwrap();
    let upstream = format!("http://127.0.0.1:{}", origin.http_port());
    let proxy = DelayProxy::start(&upstream, D).unwrap();

    let playlist = get(
        &proxy
            .proxied(&format!("{upstream}/cam/video1_stream.m3u8"))
            .unwrap(),
        T,
    )
    .unwrap();
    assert_eq!(playlist.status, 200);
    // Not held, as above.
    assert!(playlist.elapsed < D, "{:?}", playlist.elapsed);
    let text = playlist.text();
    let part = text
        .lines()
        .rfind(|l| l.starts_with("#EXT-X-PART:"))
        .and_then(|l| l.split('"').nth(1))
        .unwrap();
    let direct = get(&format!("{upstream}/cam/{part}"), T).unwrap();
    let proxied = get(&proxy.url(&format!("/cam/{part}")), T).unwrap();
    assert_eq!(proxied.body, direct.body);
    assert!(proxied.elapsed >= D, "{:?}", proxied.elapsed);
    let extra = proxied.elapsed.saturating_sub(direct.elapsed);
    assert!(
        extra >= D - Duration::from_millis(20) && extra < D + Duration::from_millis(500),
        "part held {extra:?} more than direct"
    );

    // A player reads the stream through the proxy.
    let out = origin.dir().join("proxied.h264");
    let started = Instant::now();
    ffmpeg_read_hls_h264(&proxy.proxied(&origin.hls_url("cam")).unwrap(), 1.0, &out).unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
}
