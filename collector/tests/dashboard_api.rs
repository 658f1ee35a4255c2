//! The dashboard's HTTP side without a browser: viewer reports (accepted,
//! and refused with a 4xx and counted when malformed, oversized, too
//! frequent or for an unknown stream), the clock endpoint, the assets'
//! types, cache and security headers, and the live fleet's event stream.
//! (docs/api.md's examples are checked in docs_api.rs.)

mod support;

use std::io::{BufRead as _, BufReader};
use std::time::{Duration, Instant};
use support::client;
use support::server::serve;

use glasswatch_common::messages::Viewer;

/// GET through testkit's HTTP client: (status, body, elapsed).
fn get(url: &str) -> (u16, String, Duration) {
    glasswatch_testkit::http::get_text(url).unwrap_or_else(|e| panic!("GET {url}: {e:#}"))
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn report(page: &str) -> serde_json::Value {
    let end = now_us();
    serde_json::json!({
        "page": page, "window_start_us": end - 1_000_000, "window_end_us": end,
        "frames": 30, "p50_ms": 310.5, "p95_ms": 340.0, "max_ms": 351.0,
        "buffer_ms": 190.0, "stalls": 0, "uncertainty_ms": 0.8, "method": "rvfc"
    })
}

fn post(base: &str, path: &str, body: String) -> u16 {
    client()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn viewer_reports_are_validated_limited_and_counted() {
    let s = serve("http://127.0.0.1:9/dev-cam0/index.m3u8");
    let path = "/api/v1/streams/dev/cam0/viewer";
    assert_eq!(
        post(&s.base, path, report("00112233aabbccdd").to_string()),
        204
    );
    let (status, body, _) = get(&format!("{}{path}", s.base));
    assert_eq!(status, 200, "{body}");
    let v: Viewer = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v.frames, v.p50_ms, v.viewer.as_str()),
        (30, Some(310.5), "anonymous/00112233aabbccdd")
    );
    // Malformed: not JSON, unknown field, NaN-like figures, bad page id.
    let mut bad = report("00112233aabbccdd");
    bad["p50_ms"] = serde_json::json!(1e12);
    for body in [
        "{".to_owned(),
        bad.to_string(),
        report("not-hex").to_string(),
        {
            let mut r = report("00112233aabbccdd");
            r["extra"] = serde_json::json!(1);
            r.to_string()
        },
        report("00112233aabbccdd")
            .to_string()
            .replace("310.5", "NaN"),
    ] {
        assert_eq!(post(&s.base, path, body), 400);
    }
    // Oversized.
    let mut big = report("00112233aabbccdd");
    big["method"] = serde_json::json!("x".repeat(4000));
    assert_eq!(post(&s.base, path, big.to_string()), 413);
    // Unknown stream.
    assert_eq!(
        post(
            &s.base,
            "/api/v1/streams/dev/nope/viewer",
            report("00112233aabbccdd").to_string()
        ),
        404
    );
    // Too frequent: a burst of 4, then one per 500 ms (the product's rule).
    // How many of 8 quick posts fall after a refill is the machine's: each
    // 500 ms the posts take on a loaded machine lets one more through.
    let burst_started = Instant::now();
    let codes: Vec<u16> = (0..8)
        .map(|_| post(&s.base, path, report("0011223344556677").to_string()))
        .collect();
    let refills = (burst_started.elapsed().as_micros() / 500_000) as usize;
    let accepted = codes.iter().filter(|c| **c == 204).count();
    let refused = codes.iter().filter(|c| **c == 429).count();
    assert_eq!(codes[..4], [204; 4], "the burst: {codes:?}");
    assert!(
        (4..=4 + refills).contains(&accepted) && accepted + refused == 8,
        "{codes:?} with {refills} refills"
    );
    let (_, counters, _) = get(&format!("{}/api/v1/viewers", s.base));
    let c: serde_json::Value = serde_json::from_str(&counters).unwrap();
    assert_eq!(c["accepted"], 1 + accepted, "{c}");
    assert_eq!(c["malformed"], 5, "{c}");
    assert_eq!(c["too_large"], 1, "{c}");
    assert_eq!(c["unknown_stream"], 1, "{c}");
    assert_eq!(c["too_frequent"], refused, "{c}");
    // Bucket counts feed the viewer-latency histogram of /metrics; counts
    // that do not add up to the frames are refused.
    let mut wrong = report("aabbccddeeff0011");
    wrong["buckets"] = serde_json::json!(vec![1u64; 17]);
    wrong["sum_ms"] = serde_json::json!(1000.0);
    assert_eq!(post(&s.base, path, wrong.to_string()), 400);
    let mut counted = report("aabbccddeeff0011");
    let mut buckets = [0u64; 17];
    buckets[8] = 30; // 0.3 s < x <= 0.5 s
    counted["buckets"] = serde_json::json!(buckets);
    counted["sum_ms"] = serde_json::json!(30.0 * 310.5);
    assert_eq!(post(&s.base, path, counted.to_string()), 204);
    let (_, metrics, _) = get(&format!("{}/metrics", s.base));
    let line = |l: &str| metrics.lines().any(|m| m == l);
    assert!(
        line("glasswatch_viewer_latency_seconds_count{device=\"dev\",stream=\"cam0\"} 30"),
        "{metrics}"
    );
    assert!(line(
        "glasswatch_viewer_latency_seconds_bucket{device=\"dev\",stream=\"cam0\",le=\"0.3\"} 0"
    ));
    assert!(line(
        "glasswatch_viewer_latency_seconds_bucket{device=\"dev\",stream=\"cam0\",le=\"0.5\"} 30"
    ));
}

#[test]
fn clock_assets_and_live_fleet() {
    let s = serve("http://127.0.0.1:9/dev-cam0/index.m3u8");
    let (status, body, _) = get(&format!("{}/api/v1/time", s.base));
    assert_eq!(status, 200);
    let t: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!((t["now_us"].as_i64().unwrap() - now_us()).abs() < 5_000_000);
    for (name, ty) in [
        ("fleet.js", "text/javascript"),
        ("stream.js", "text/javascript"),
        ("hls.mjs", "text/javascript"),
        ("uplot.mjs", "text/javascript"),
        ("uplot.css", "text/css"),
        ("app.css", "text/css"),
    ] {
        let r = client()
            .get(format!("{}/assets/{name}", s.base))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        let h = r.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(ty),
            "{name}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        let etag = h["etag"].to_str().unwrap().to_owned();
        let again = client()
            .get(format!("{}/assets/{name}", s.base))
            .header("if-none-match", &etag)
            .send()
            .unwrap();
        assert_eq!(again.status(), 304, "{name}");
    }
    assert_eq!(get(&format!("{}/assets/nope.js", s.base)).0, 404);
    for page in ["/", "/streams/dev/cam0"] {
        let r = client().get(format!("{}{page}", s.base)).send().unwrap();
        assert_eq!(r.status(), 200);
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        let html = r.text().unwrap();
        assert!(
            !html.contains("<script>") && !html.contains("style="),
            "inline code in {page}"
        );
    }
    // The live fleet: a snapshot at once, then deltas every second.
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("{}/api/v1/fleet/live", s.base))
        .send()
        .unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut lines = BufReader::new(r).lines();
    let t0 = Instant::now();
    let mut events = Vec::new();
    while events.len() < 3 && t0.elapsed() < Duration::from_secs(8) {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(e) = line.strip_prefix("event: ") {
            events.push(e.to_owned());
        }
        if let Some(d) = line.strip_prefix("data: ") {
            if events.len() == 1 {
                let snap: serde_json::Value = serde_json::from_str(d).unwrap();
                assert_eq!(snap["rows"][0][0], "dev/cam0");
            }
        }
    }
    assert_eq!(events, ["snapshot", "delta", "delta"]);
    assert!(
        t0.elapsed() >= Duration::from_millis(1_900),
        "deltas come every second"
    );
}
