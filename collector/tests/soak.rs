//! Soak: the collector as a user runs it by default (its embedded MQTT
//! broker) carries the MQTT traffic of 20 devices for two minutes, and its
//! memory stays flat; and the short form of bench/soak.sh's faults: the
//! chain recovers by itself from origin, broker and device outages.
//!
//! Each simulated device is its own MQTT connection, as agents are: a
//! retained status with a Last Will, a frames batch of 6 records every
//! 200 ms (QoS 1), stats every second (QoS 0), and a pong for every clock
//! ping. Their `hls_url` leads nowhere (a closed port), so the collector's
//! receivers only retry; history goes to SQLite, as by default (devices,
//! events and per-second rows with no frames). What is left to grow is the
//! broker, storage and the record stores, which fill within
//! `matching.retention_s` (30 s).
//! After a warm-up, the collector's VmRSS is sampled every 2 s and its
//! least-squares slope must stay under [`MAX_SLOPE_KIB_S`]. On 2026-12-02
//! the collector with rumqttd 0.20, the broker before, grew 159.5 KiB/s in
//! this test (its commit logs kept slices that pinned the connections' read
//! buffers; see docs/design/broker.md); with the broker of `broker.rs`,
//! 0.9 KiB/s.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use glasswatch_testkit::agent::{now_us, test_pattern_config, AgentProcess};
use glasswatch_testkit::collector::CollectorProcess;
use glasswatch_testkit::mosquitto::Mosquitto;
use glasswatch_testkit::ports::free_port;
use glasswatch_testkit::{require_origin_stack, require_program, OriginOptions, RtspOrigin};
use rumqttc::{Client, Event, LastWill, MqttOptions, Packet, QoS};

const STREAMS: usize = 20;
/// Time for the record stores to fill and the traffic to settle.
const WARM_UP: Duration = Duration::from_secs(40);
/// Time over which the slope is measured.
const MEASURE: Duration = Duration::from_secs(80);
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Most growth tolerated over the measurement, in KiB/s: a machine bound,
/// not the product's promise (bench/soak.sh measures that over an hour, ≤ 1
/// KiB/s). Two minutes with SQLite read 4.6 KiB/s on an idle machine and 9.4
/// KiB/s beside a build (SQLite's page caches still filling, glibc trimming
/// once a minute inside an 80 s window); rumqttd's leak, 159.5 KiB/s, breaks
/// it five times over.
const MAX_SLOPE_KIB_S: f64 = 32.0;

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Least-squares slope of (seconds, KiB) points, in KiB/s.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let num: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let den: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    num / den
}

const ROOT: &str = "glasswatch/v1/devices";

fn status(device: &str, online: bool, hls_url: &str) -> String {
    let streams = if online {
        format!(
            r#"[{{"id":"cam0","rtsp_url":"rtsp://127.0.0.1:1/{device}","hls_url":"{hls_url}","width":1280,"height":720,"fps":30,"encoder":"x264enc","hardware":false}}]"#
        )
    } else {
        "[]".to_owned()
    };
    format!(
        r#"{{"schema":"glasswatch.status/1","device":"{device}","online":{online},"ts_us":{},"streams":{streams}}}"#,
        now_us()
    )
}

fn frames(device: &str, session: &str, first_seq: u64) -> String {
    let records: Vec<String> = (first_seq..first_seq + 6)
        .map(|seq| {
            let capture = now_us() - 40_000 + (seq - first_seq) as i64 * 33_333;
            format!(
                r#"{{"session":"{session}","seq":{seq},"capture_us":{capture},"encoded_us":{},"sent_us":{},"bytes":{},"keyframe":{},"fingerprint":"{:016x}"}}"#,
                capture + 6_000,
                capture + 6_400,
                3_600 + seq % 700,
                seq % 15 == 0,
                seq.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            )
        })
        .collect();
    format!(
        r#"{{"schema":"glasswatch.frames/1","device":"{device}","stream":"cam0","frames":[{}]}}"#,
        records.join(",")
    )
}

fn stats(device: &str) -> String {
    format!(
        r#"{{"schema":"glasswatch.stats/1","device":"{device}","stream":"cam0","ts_us":{},"interval_ms":1000.0,"publisher_fps":30.0,"bitrate_kbps":2000.0,"frames_dropped_capture":0,"frames_dropped_encode":0,"encoder":"x264enc","hardware":false,"cpu_percent":12.5,"rss_bytes":48234496,"temperature_c":null,"report_backlog":0,"records_dropped":0}}"#,
        now_us()
    )
}

/// One simulated device: its MQTT connection runs on a thread that answers
/// clock pings; `publish` sends its periodic messages.
struct Device {
    name: String,
    client: Client,
    thread: JoinHandle<()>,
    session: String,
    seq: u64,
}

impl Device {
    fn start(
        n: usize,
        port: u16,
        hls_url: &str,
        stop: &Arc<AtomicBool>,
        pongs: &Arc<AtomicU64>,
    ) -> Device {
        let name = format!("soak{n}");
        let mut opts = MqttOptions::new(format!("glasswatch-agent-{name}"), "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_clean_session(true);
        opts.set_last_will(LastWill::new(
            format!("{ROOT}/{name}/status"),
            status(&name, false, hls_url),
            QoS::AtLeastOnce,
            true,
        ));
        let (client, mut connection) = Client::new(opts, 64);
        let (ping_topic, pong_topic) = (
            format!("{ROOT}/{name}/clock/ping"),
            format!("{ROOT}/{name}/clock/pong"),
        );
        let responder = client.clone();
        let (stop, pongs) = (stop.clone(), pongs.clone());
        let thread = std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = responder.try_subscribe(ping_topic.clone(), QoS::AtMostOnce);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == ping_topic => {
                        let Ok(ping) = serde_json::from_slice::<serde_json::Value>(&p.payload)
                        else {
                            continue;
                        };
                        let t2 = now_us();
                        let pong = format!(
                            r#"{{"schema":"glasswatch.clock_pong/1","nonce":{},"t1_us":{},"t2_us":{t2},"t3_us":{}}}"#,
                            ping["nonce"],
                            ping["t1_us"],
                            now_us()
                        );
                        if responder
                            .try_publish(pong_topic.clone(), QoS::AtMostOnce, false, pong)
                            .is_ok()
                        {
                            pongs.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(_) => {}
                    Err(_) if stop.load(Ordering::Relaxed) => return,
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        });
        let device = Device {
            session: format!("{:016x}", 0x5eed_0000_u64 + n as u64),
            name,
            client,
            thread,
            seq: 0,
        };
        device
            .client
            .publish(
                format!("{ROOT}/{}/status", device.name),
                QoS::AtLeastOnce,
                true,
                status(&device.name, true, hls_url),
            )
            .expect("status queued");
        device
    }

    fn publish(&mut self, with_stats: bool) {
        let batch = frames(&self.name, &self.session, self.seq);
        self.seq += 6;
        let topic = format!("{ROOT}/{}/streams/cam0", self.name);
        let _ = self
            .client
            .try_publish(format!("{topic}/frames"), QoS::AtLeastOnce, false, batch);
        if with_stats {
            let _ = self.client.try_publish(
                format!("{topic}/stats"),
                QoS::AtMostOnce,
                false,
                stats(&self.name),
            );
        }
    }
}

#[test]
fn embedded_broker_memory_stays_flat_under_20_streams() {
    // As a user runs it: history in SQLite (the default), in the test's folder.
    let (config, port) = CollectorProcess::embedded_broker_config();
    let mut collector = CollectorProcess::start(&config).expect("collector starts");
    let pid = collector.peer().pid();
    // A closed port: the receivers retry with backoff, nothing is read.
    let hls_url = format!("http://127.0.0.1:{}/nowhere/index.m3u8", free_port());

    let stop = Arc::new(AtomicBool::new(false));
    let pongs = Arc::new(AtomicU64::new(0));
    let mut devices: Vec<Device> = (0..STREAMS)
        .map(|n| Device::start(n, port, &hls_url, &stop, &pongs))
        .collect();

    let start = Instant::now();
    let end = start + WARM_UP + MEASURE;
    let mut next_sample = start + WARM_UP;
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let mut tick = 0u64;
    while Instant::now() < end {
        tick += 1;
        for d in &mut devices {
            d.publish(tick % 5 == 0);
        }
        if Instant::now() >= next_sample {
            let kib = rss_kib(pid).expect("the collector runs");
            samples.push((start.elapsed().as_secs_f64(), kib as f64));
            next_sample += SAMPLE_EVERY;
        }
        let due = start + Duration::from_millis(200 * tick);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }

    // The traffic went through: every stream is known and holds records.
    let (streams, counters) = collector.streams().expect("API answers");
    stop.store(true, Ordering::Relaxed);
    for d in devices {
        let _ = d.client.disconnect();
        let _ = d.thread.join();
    }
    let log = collector.log_tail();
    let fed: Vec<_> = streams.iter().filter(|s| s.records >= 300).collect();
    assert_eq!(
        fed.len(),
        STREAMS,
        "every stream's records arrive: {streams:#?}\n{log}"
    );
    assert_eq!(counters.malformed_messages, 0, "{counters:?}");
    assert!(
        pongs.load(Ordering::Relaxed) >= STREAMS as u64,
        "clock pings reached the devices: {} pongs\n{log}",
        pongs.load(Ordering::Relaxed)
    );

    let growth = slope(&samples);
    let first = samples.first().map_or(0.0, |s| s.1);
    let last = samples.last().map_or(0.0, |s| s.1);
    eprintln!(
        "collector VmRSS over {:.0} s after a {:.0} s warm-up, {STREAMS} streams: {:.1} -> {:.1} MiB, slope {growth:.2} KiB/s",
        MEASURE.as_secs_f64(),
        WARM_UP.as_secs_f64(),
        first / 1024.0,
        last / 1024.0
    );
    assert!(
        growth <= MAX_SLOPE_KIB_S,
        "the collector's memory grows {growth:.1} KiB/s (at most {MAX_SLOPE_KIB_S}): {samples:?}\n{log}"
    );
}

/// The last summary of `device`/cam0 (window end, frames, dropped), if any.
fn last_summary(collector: &CollectorProcess, device: &str) -> Option<(i64, u64, u64)> {
    let (streams, _) = collector.streams().ok()?;
    let s = streams
        .into_iter()
        .find(|s| s.device == device && s.stream == "cam0")?;
    s.last.map(|l| (l.window_end_us, l.frames, l.dropped))
}

/// Waits until `device`/cam0 has matched frames in `n` summaries in a row,
/// each of a window that started after `after_us` (collector clock), for up
/// to `timeout`; returns how long it took.
fn wait_measuring(
    collector: &CollectorProcess,
    device: &str,
    after_us: i64,
    n: usize,
    timeout: Duration,
) -> Duration {
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < timeout {
        if let Some((end, frames, _)) = last_summary(collector, device) {
            // Windows are a second long: this one started after `after_us`.
            if end - 1_000_000 > after_us && seen.last().map(|l: &(i64, u64)| l.0) != Some(end) {
                seen.push((end, frames));
            }
            let tail = &seen[seen.len().saturating_sub(n)..];
            if tail.len() == n && tail.iter().all(|s| s.1 > 0) {
                return start.elapsed();
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!(
        "{device}: no {n} measured seconds in a row within {timeout:?}: {seen:?}\n{}",
        collector.log_tail()
    );
}

/// The short form of bench/soak.sh's faults, on the real chain (agent →
/// testkit LL-HLS origin → collector, over mosquitto, history in SQLite):
/// the origin is killed and restarted, mosquitto restarted, the agent
/// frozen (SIGSTOP: a device gone silent without closing anything) and
/// thawed. After each the chain measures again by itself, and what the
/// stored seconds count as dropped stays within what the outages explain.
#[test]
fn recovers_by_itself_from_origin_broker_and_device_outages() {
    if !require_origin_stack() || !require_program("mosquitto") {
        return;
    }
    let device = "soak-faults";
    let path = format!("{device}-cam0");
    let mut broker = Mosquitto::start().expect("mosquitto starts");
    let mut origin = RtspOrigin::start_with(&[&path], OriginOptions::llhls_like_fixture())
        .expect("origin starts");
    let collector = CollectorProcess::start(&format!("[mqtt]\nurl = \"{}\"\n", broker.url()))
        .expect("collector starts");
    let mut agent = AgentProcess::start(&test_pattern_config(
        device,
        &origin.rtsp_url(&path),
        &origin.hls_url(&path),
        &format!("url = \"{}\"", broker.url()),
    ))
    .expect("agent starts");
    let from_us = now_us();
    wait_measuring(&collector, device, from_us, 3, Duration::from_secs(60));

    // Outages, each followed by recovery; their lengths are what may be lost.
    let mut outages = Vec::new();
    let t = Instant::now();
    origin.restart().expect("origin restarts");
    outages.push(("origin", t.elapsed()));
    let back = wait_measuring(&collector, device, now_us(), 3, Duration::from_secs(60));
    eprintln!("origin killed and restarted: measuring again after {back:?}");
    outages.push(("origin recovery", back));

    let t = Instant::now();
    broker.stop().expect("mosquitto stops");
    std::thread::sleep(Duration::from_secs(3));
    broker.restart().expect("mosquitto restarts");
    outages.push(("broker", t.elapsed()));
    let back = wait_measuring(&collector, device, now_us(), 3, Duration::from_secs(60));
    eprintln!("mosquitto stopped 3 s and restarted: measuring again after {back:?}");
    outages.push(("broker recovery", back));

    let pid = agent.peer().pid().to_string();
    let t = Instant::now();
    let signal = |s: &str| {
        let ok = std::process::Command::new("kill")
            .args([s, &pid])
            .status()
            .is_ok_and(|st| st.success());
        assert!(ok, "kill {s} {pid}");
    };
    signal("-STOP");
    std::thread::sleep(Duration::from_secs(4));
    signal("-CONT");
    outages.push(("device frozen", t.elapsed()));
    let back = wait_measuring(&collector, device, now_us(), 3, Duration::from_secs(60));
    eprintln!("agent frozen 4 s and thawed: measuring again after {back:?}");
    outages.push(("device recovery", back));
    // A few clean seconds after the last recovery, stored.
    wait_measuring(&collector, device, now_us(), 5, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));

    let url = format!(
        "{}/api/v1/streams/{device}/cam0/series?from={from_us}&to={}",
        collector.api_url(),
        now_us()
    );
    let body = glasswatch_testkit::collector::http_get(&url).expect("series answers");
    let series: glasswatch_common::api::SeriesResponse =
        serde_json::from_str(&body).expect("a series");
    let frames: u64 = series.points.iter().map(|p| p.frames).sum();
    let dropped: u64 = series.points.iter().map(|p| p.dropped).sum();
    let outage_s: f64 = outages.iter().map(|o| o.1.as_secs_f64()).sum();
    // At 30 fps, every frame published while something was down or
    // recovering may be lost, plus a second of frames at each edge (the
    // window an outage cuts through): the product's promise. Anything past
    // that is a frame lost for no reason.
    let explained = (30.0 * (outage_s + 2.0 * 3.0)).ceil() as u64;
    eprintln!(
        "{} stored seconds, {frames} frames matched, {dropped} dropped; outages {outages:?} \
         ({outage_s:.1} s, explaining up to {explained})",
        series.points.len()
    );
    assert!(frames > 0, "{body}");
    assert!(
        dropped <= explained,
        "{dropped} frames dropped, the outages explain {explained}: {outages:?}\n{body}"
    );
    // Measured after the last recovery without loss.
    let tail = &series.points[series.points.len().saturating_sub(3)..];
    assert!(
        tail.iter().all(|p| p.frames > 0 && p.dropped == 0),
        "the last stored seconds: {tail:?}"
    );
}
