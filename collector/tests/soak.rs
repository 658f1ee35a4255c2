//! Soak: the collector as a user runs it by default (its embedded MQTT
//! broker) carries the MQTT traffic of 20 devices for two minutes, and its
//! memory stays flat.
//!
//! Each simulated device is its own MQTT connection, as agents are: a
//! retained status with a Last Will, a frames batch of 6 records every
//! 200 ms (QoS 1), stats every second (QoS 0), and a pong for every clock
//! ping. Their `hls_url` leads nowhere (a closed port), so the collector's
//! receivers only retry; storage is off. What is left to grow is the broker
//! and the record stores, which fill within `matching.retention_s` (30 s).
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

use glasswatch_testkit::collector::CollectorProcess;
use glasswatch_testkit::ports::free_port;
use rumqttc::{Client, Event, LastWill, MqttOptions, Packet, QoS};

const STREAMS: usize = 20;
/// Time for the record stores to fill and the traffic to settle.
const WARM_UP: Duration = Duration::from_secs(40);
/// Time over which the slope is measured.
const MEASURE: Duration = Duration::from_secs(80);
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Most growth tolerated over the measurement, in KiB/s (0.7 GB a day).
const MAX_SLOPE_KIB_S: f64 = 8.0;

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

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
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
    let (mut config, port) = CollectorProcess::embedded_broker_config();
    config.push_str("[storage]\nkind = \"none\"\n");
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
