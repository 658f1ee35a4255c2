//! The fleet page with 1,000 simulated streams (100 devices × 10 streams,
//! figures changing every second, fed to a real hub as the receivers and
//! MQTT would): the server's cost and size of one delta, and, in headless
//! Chromium, the time to first render and the cost of each update (script
//! alone, and until the next frame is painted). The figures are printed
//! for the notes; the assertions are loose bounds.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glasswatch_collector::dashboard::FleetDiff;
use glasswatch_collector::hub::{self, Hub};
use glasswatch_collector::receiver::{wall_us, Event, Reading, SeenFrame};
use glasswatch_common::messages::{FrameRecord, FramesBatch, Stats, Status, StreamInfo};
use glasswatch_common::sei::FrameStamp;
use glasswatch_testkit::chromium::{require_chromium, Chromium};

const DEVICES: usize = 100;
const STREAMS: usize = 10;
/// Frames fed per stream and second (enough for percentiles, cheap to feed).
const FRAMES: u64 = 5;

fn device(i: usize) -> String {
    format!("site-{:02}-cam-host-{i:03}", i % 7)
}

/// A hub knowing 1,000 streams, every tenth device offline.
fn hub() -> Hub {
    let mut hub = Hub::new(hub::Settings::default(), HashMap::new());
    let now = wall_us();
    for d in 0..DEVICES {
        let mut s = Status::offline(&device(d), now, "test");
        s.online = d % 10 != 9;
        s.streams = (0..STREAMS)
            .map(|k| StreamInfo {
                id: format!("cam{k}"),
                hls_url: format!("http://127.0.0.1:9/{}-cam{k}/index.m3u8", device(d)),
                encoder: if k % 2 == 0 { "x264enc" } else { "v4l2h264enc" }.into(),
                hardware: k % 2 == 1,
                ..StreamInfo::default()
            })
            .collect();
        // Streams are known even while their device is offline.
        let mut online = s.clone();
        online.online = true;
        hub.on_status(online, now);
        hub.on_status(s, now);
    }
    for d in 0..DEVICES {
        for k in 0..STREAMS {
            let key = (device(d), format!("cam{k}"));
            hub.on_receiver(
                &key,
                Event::Reading(Reading {
                    mode: "ll-hls",
                    container: "fmp4",
                    url: "http://127.0.0.1:9/x/stream.m3u8".into(),
                    uncertainty_us: 0,
                }),
                now,
            );
        }
    }
    hub
}

/// One second of every stream: records, frames over HLS, stats, a tick.
fn feed(hub: &Mutex<Hub>, second: u64) {
    let now = wall_us();
    let mut h = hub.lock().unwrap();
    for d in 0..DEVICES {
        for k in 0..STREAMS {
            let (dev, stream) = (device(d), format!("cam{k}"));
            let base_ms = 60 + ((d * 37 + k * 11) % 400) as i64;
            let mut records = Vec::new();
            let mut frames = Vec::new();
            for f in 0..FRAMES {
                let seq = second * FRAMES + f;
                let jitter = ((seq * 7919 + d as u64 * 31) % 40) as i64;
                let capture_us = now - (base_ms + jitter) * 1000 - f as i64;
                records.push(FrameRecord {
                    session: "0123456789abcdef".into(),
                    seq,
                    capture_us,
                    encoded_us: capture_us + 2_000,
                    sent_us: capture_us + 3_000,
                    bytes: 4_000,
                    keyframe: f == 0,
                    fingerprint: "0000000000000000".into(),
                });
                frames.push(SeenFrame {
                    stamp: Some(FrameStamp {
                        keyframe: f == 0,
                        stream_tag: 0,
                        seq,
                        capture_us,
                    }),
                    fingerprint: None,
                    keyframe: f == 0,
                });
            }
            h.on_frames(&dev, &stream, FramesBatch::new(&dev, &stream, records), now);
            h.on_receiver(
                &(dev.clone(), stream.clone()),
                Event::Frames {
                    frames,
                    available_us: now,
                    playlist_requests: 1,
                    media_requests: 1,
                },
                now,
            );
            let stats = Stats {
                schema: glasswatch_common::messages::SCHEMA_STATS.into(),
                device: dev.clone(),
                stream: stream.clone(),
                ts_us: now,
                interval_ms: 1000.0,
                publisher_fps: 30.0,
                bitrate_kbps: 800.0,
                frames_dropped_capture: 0,
                frames_dropped_encode: 0,
                encoder: "x264enc".into(),
                hardware: false,
                cpu_percent: 5.0 + ((second as usize + d) % 20) as f64,
                rss_bytes: 40_000_000,
                temperature_c: Some(45.0 + (k as f64)),
                report_backlog: 0,
                records_dropped: 0,
            };
            h.on_stats(&dev, &stream, &stats, now);
        }
    }
    h.tick(now + 1);
}

#[test]
fn fleet_with_1000_streams() {
    let hub = Arc::new(Mutex::new(hub()));
    for s in 0..3 {
        feed(&hub, s);
    }
    // The server's side: one delta for 1,000 rows.
    let mut diff = FleetDiff::default();
    let rows = hub.lock().unwrap().fleet(wall_us());
    assert_eq!(rows.len(), DEVICES * STREAMS);
    let (_, snapshot) = diff.next(&rows);
    feed(&hub, 3);
    let t = Instant::now();
    let rows = hub.lock().unwrap().fleet(wall_us());
    let locked = t.elapsed();
    let (_, delta) = diff.next(&rows);
    let text = delta.to_string();
    let cost = t.elapsed();
    println!(
        "server, 1,000 streams: snapshot {} kB; one delta {} kB ({} rows changed), built in {:.1} ms \
         (hub locked {:.1} ms)",
        snapshot.to_string().len() / 1000,
        text.len() / 1000,
        delta["u"].as_array().map_or(0, Vec::len),
        cost.as_secs_f64() * 1e3,
        locked.as_secs_f64() * 1e3
    );
    assert!(cost < Duration::from_secs(1));

    if !require_chromium() {
        return;
    }
    let server = support::server::serve_state(support::server::open_state(hub.clone()));
    let base = server.base.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (hub, stop) = (hub.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut s = 4;
            while !stop.load(Ordering::Relaxed) {
                feed(&hub, s);
                s += 1;
                std::thread::sleep(Duration::from_millis(1000));
            }
        })
    };
    let b = Chromium::start(1280, 900).unwrap();
    b.goto(&format!("{base}/")).unwrap();
    b.wait_for(
        "const p = window.__glasswatchPerf; return p && p.rows === 1000 && p.firstRenderMs !== null;",
        Duration::from_secs(30),
    )
    .expect("the fleet page rendered 1,000 rows");
    // Pacing: the page's update times are measured over 12 s of updates.
    std::thread::sleep(Duration::from_secs(12));
    let perf = b
        .execute(
            "const p = window.__glasswatchPerf; return {first: p.firstRenderMs, snapshot: p.snapshotMs, \
             updates: p.updates, painted: p.painted, rows: document.querySelectorAll('#fleet tbody tr').length};",
            &[],
        )
        .unwrap();
    let shot = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-artefacts/dashboard-fleet-1000.png");
    b.screenshot(&shot).unwrap();
    println!("screenshot: {}", shot.display());
    stop.store(true, Ordering::Relaxed);
    let _ = feeder.join();
    let list = |k: &str| -> Vec<f64> {
        let mut v: Vec<f64> = perf[k]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default();
        v.sort_by(f64::total_cmp);
        v
    };
    let (updates, painted) = (list("updates"), list("painted"));
    let q = |v: &[f64], q: f64| {
        v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "browser, 1,000 streams: first render {:.0} ms after navigation (snapshot applied in {:.0} ms); \
         {} updates: script median {:.1} ms (max {:.1}), until painted median {:.1} ms (max {:.1})",
        perf["first"].as_f64().unwrap_or(f64::NAN),
        perf["snapshot"].as_f64().unwrap_or(f64::NAN),
        updates.len(),
        q(&updates, 0.5),
        q(&updates, 1.0),
        q(&painted, 0.5),
        q(&painted, 1.0),
    );
    assert_eq!(perf["rows"], 1000);
    assert!(updates.len() >= 8, "about one update a second: {perf}");
    assert!(q(&updates, 0.5) < 250.0, "an update costs too much: {perf}");
}
