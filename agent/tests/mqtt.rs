//! The agent over MQTT with a real mosquitto on 127.0.0.1: birth and Last
//! Will, frame records matching the stamps read back over HLS, nothing lost
//! while the broker is away, overflow of a tiny buffer, TLS with a password,
//! clock ping/pong, and the documented Python subscriber and JSON Schemas
//! checking what the agent really sends.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use glasswatch_common::fingerprint;
use glasswatch_common::messages::{ClockPong, FramesBatch, Stats, Status};
use glasswatch_testkit::agent::{now_us, AgentProcess};
use glasswatch_testkit::mosquitto::{publish, BrokerOptions, Mosquitto, Subscriber};
use glasswatch_testkit::process::run_with_timeout;
use glasswatch_testkit::stamps::stamped_frames;
use glasswatch_testkit::{ffmpeg_read_hls_h264, require, RtspOrigin};

fn require_mqtt() -> bool {
    glasswatch_testkit::require::require_mqtt_stack()
}

/// A config with one test-pattern stream and the given `[mqtt]` lines.
fn config(device: &str, publish_url: &str, mqtt: &str) -> String {
    glasswatch_testkit::agent::test_pattern_config(device, publish_url, "", mqtt)
}

fn parse<T: glasswatch_common::messages::Message>(payload: &str) -> T {
    glasswatch_common::messages::decode(payload.as_bytes())
        .unwrap_or_else(|e| panic!("payload does not decode: {e}: {payload}"))
}

/// Every frame record received, in arrival order, as (session, seq, capture_us, fingerprint).
fn frames_received(sub: &Subscriber) -> Vec<(String, u64, i64, String)> {
    sub.messages("glasswatch/v1/devices/")
        .iter()
        .filter(|(t, _)| t.ends_with("/frames"))
        .flat_map(|(_, p)| parse::<FramesBatch>(p).frames)
        .map(|r| (r.session, r.seq, r.capture_us, r.fingerprint))
        .collect()
}

#[test]
fn birth_last_will_and_clean_offline() {
    if !require_mqtt() {
        return;
    }
    let broker = Mosquitto::start().unwrap();
    let mqtt = format!("url = \"{}\"", broker.url());
    let status_topic = "glasswatch/v1/devices/mq1/status";
    // A subscriber in place before the agent sees the birth as it is sent.
    // The agent may announce itself once before its stream is set up
    // (streams: []) and again with it: wait for the one that lists it.
    let early = Subscriber::start(&broker, status_topic, None, None).unwrap();
    let mut agent = AgentProcess::start(&config("mq1", "rtsp://127.0.0.1:9/none", &mqtt)).unwrap();
    let full = |p: &str| {
        let s = parse::<Status>(p);
        s.online && !s.streams.is_empty()
    };
    early
        .wait_for(status_topic, Duration::from_secs(15), |m| {
            m.iter().any(|(_, p)| full(p))
        })
        .unwrap_or_else(|e| panic!("{e:#}\nagent:\n{}", agent.log_tail()));
    drop(early);

    // ...and one that subscribes only after it was sent gets it too: retained.
    let sub = Subscriber::start(&broker, status_topic, None, None).unwrap();
    let got = sub
        .wait_for(status_topic, Duration::from_secs(10), |m| {
            m.iter().any(|(_, p)| full(p))
        })
        .unwrap_or_else(|e| panic!("{e:#}\nagent:\n{}", agent.log_tail()));
    let birth: Status = parse(&got.last().unwrap().1);
    assert_eq!(birth.device, "mq1");
    assert_eq!(birth.streams.len(), 1);
    assert_eq!(birth.streams[0].id, "cam0");
    assert_eq!(birth.streams[0].encoder, "x264enc");
    assert!(!birth.streams[0].hardware);
    assert!(birth.clock.is_some() && birth.agent_version.is_some() && birth.arch.is_some());

    // kill -9: the broker publishes the Last Will within the keep-alive
    // window. Product (MQTT 3.1.1 §3.1.2.10): 1.5 × keep_alive_s = 7.5 s
    // after the agent's last packet, plus the broker's own check (mosquitto
    // looks at keep-alives about once a second). Machine: up to 2 s more
    // for the subscriber and the broker to be scheduled on a busy machine.
    let killed_at = Instant::now();
    agent.peer().kill().unwrap();
    sub.wait_for(status_topic, Duration::from_secs(15), |m| {
        m.last().is_some_and(|(_, p)| !parse::<Status>(p).online)
    })
    .unwrap();
    let took = killed_at.elapsed();
    assert!(
        took <= Duration::from_millis(7_500 + 1_000 + 2_000),
        "will after {took:?}"
    );

    // A clean stop publishes online: false itself.
    let mut agent = AgentProcess::start(&config("mq1", "rtsp://127.0.0.1:9/none", &mqtt)).unwrap();
    sub.wait_for(status_topic, Duration::from_secs(10), |m| {
        m.last().is_some_and(|(_, p)| parse::<Status>(p).online)
    })
    .unwrap();
    let status = agent.peer().terminate(Duration::from_secs(5)).unwrap();
    assert!(status.success());
    let got = sub
        .wait_for(status_topic, Duration::from_secs(3), |m| {
            m.last().is_some_and(|(_, p)| !parse::<Status>(p).online)
        })
        .unwrap();
    let bye: Status = parse(&got.last().unwrap().1);
    assert_eq!(bye.reason.as_deref(), Some("shutdown"));
}

#[test]
fn frame_records_match_the_stamps_in_hls() {
    if !require_mqtt() {
        return;
    }
    let broker = Mosquitto::start().unwrap();
    let origin = RtspOrigin::start(&["mq2-cam0"]).unwrap();
    let sub = Subscriber::start(&broker, "glasswatch/v1/devices/mq2/#", None, None).unwrap();
    let agent = AgentProcess::start(&config(
        "mq2",
        &origin.rtsp_url("mq2-cam0"),
        &format!("url = \"{}\"", broker.url()),
    ))
    .unwrap();
    origin
        .wait_for_playlist("mq2-cam0", Duration::from_secs(40), |p| {
            p.segments.len() >= 3
        })
        .unwrap_or_else(|e| panic!("{e:#}\nagent:\n{}", agent.log_tail()));
    let dir = tempfile::tempdir().unwrap();
    let es =
        ffmpeg_read_hls_h264(&origin.hls_url("mq2-cam0"), 2.0, &dir.path().join("a.h264")).unwrap();
    let seen = stamped_frames(&es).unwrap();
    assert!(seen.len() >= 45, "{} frames", seen.len());
    // Records are sent at most 200 ms after their frame: wait until the
    // last frame read has one (or fail below naming the first without).
    let newest = seen.iter().map(|f| f.stamp.seq).max().unwrap_or(0);
    let _ = sub.wait_for("glasswatch/", Duration::from_secs(10), |_| {
        frames_received(&sub).iter().any(|r| r.1 >= newest)
    });
    let records = frames_received(&sub);
    for (i, f) in seen.iter().enumerate() {
        let r = records
            .iter()
            .find(|r| r.1 == f.stamp.seq && r.2 == f.stamp.capture_us)
            .unwrap_or_else(|| panic!("frame {i} (seq {}) has no record over MQTT", f.stamp.seq));
        assert_eq!(
            r.3,
            fingerprint::to_hex(f.fingerprint),
            "frame {i}: fingerprint"
        );
    }
    // Stats arrive every second with plausible figures.
    let stats: Vec<Stats> = sub
        .messages("glasswatch/v1/devices/mq2/streams/cam0/stats")
        .iter()
        .map(|(_, p)| parse(p))
        .collect();
    assert!(stats.len() >= 2, "{} stats", stats.len());
    let last = stats.last().unwrap();
    assert!(
        (20.0..40.0).contains(&last.publisher_fps),
        "fps {}",
        last.publisher_fps
    );
    assert!(last.bitrate_kbps > 10.0 && last.rss_bytes > 0);
    assert_eq!(last.encoder, "x264enc");
}

/// Records of the newest session, deduplicated, checked for gaps and order.
/// Returns (first seq, last seq, missing seqs).
fn session_coverage(received: &[(String, u64, i64, String)]) -> (u64, u64, Vec<u64>) {
    let session = received.last().map(|r| r.0.clone()).unwrap();
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for r in received.iter().filter(|r| r.0 == session) {
        if seen.insert(r.1) {
            order.push(r.1);
        }
    }
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "records must arrive in order (duplicates aside)"
    );
    let (first, last) = (*seen.first().unwrap(), *seen.last().unwrap());
    let missing = (first..=last).filter(|s| !seen.contains(s)).collect();
    (first, last, missing)
}

#[test]
fn broker_outage_loses_no_record() {
    if !require_mqtt() {
        return;
    }
    let mut broker = Mosquitto::start().unwrap();
    let origin = RtspOrigin::start(&["mq3-cam0"]).unwrap();
    let sub = Subscriber::start(
        &broker,
        "glasswatch/v1/devices/mq3/streams/+/frames",
        Some("outage-sub"),
        None,
    )
    .unwrap();
    let agent = AgentProcess::start(&config(
        "mq3",
        &origin.rtsp_url("mq3-cam0"),
        &format!("url = \"{}\"\nbuffer_seconds = 120", broker.url()),
    ))
    .unwrap();
    sub.wait_for("glasswatch/", Duration::from_secs(30), |m| m.len() >= 5)
        .unwrap_or_else(|e| panic!("{e:#}\nagent:\n{}", agent.log_tail()));

    broker.stop().unwrap();
    let down = now_us();
    // Pacing, not synchronisation: the outage lasts 20 s.
    std::thread::sleep(Duration::from_secs(20));
    broker.restart().unwrap();
    let back = now_us();

    // The subscriber (persistent session) catches up: the whole session, no gap.
    sub.wait_for("glasswatch/", Duration::from_secs(30), |_| {
        frames_received(&sub).iter().any(|r| r.2 > back + 2_000_000)
    })
    .unwrap_or_else(|e| panic!("{e:#}\nagent:\n{}", agent.log_tail()));
    let received = frames_received(&sub);
    let (first, last, missing) = session_coverage(&received);
    assert_eq!(first, 0, "the session's first record");
    assert!(
        missing.is_empty(),
        "{} records lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let during: usize = received.iter().filter(|r| r.2 > down && r.2 < back).count();
    assert!(
        during >= 500,
        "records captured during the outage: {during}"
    );
    assert!(last >= 600, "last seq {last}");
}

#[test]
fn overflow_drops_only_the_oldest_and_stats_count_them() {
    if !require_mqtt() {
        return;
    }
    let mut broker = Mosquitto::start().unwrap();
    let origin = RtspOrigin::start(&["mq4-cam0"]).unwrap();
    let sub = Subscriber::start(
        &broker,
        "glasswatch/v1/devices/mq4/#",
        Some("overflow-sub"),
        None,
    )
    .unwrap();
    let agent = AgentProcess::start(&config(
        "mq4",
        &origin.rtsp_url("mq4-cam0"),
        &format!("url = \"{}\"\nbuffer_seconds = 1", broker.url()),
    ))
    .unwrap();
    sub.wait_for("glasswatch/", Duration::from_secs(30), |_| {
        frames_received(&sub).len() >= 30
    })
    .unwrap_or_else(|e| panic!("{e:#}\nagent:\n{}", agent.log_tail()));
    broker.stop().unwrap();
    // Pacing: a 6 s outage, longer than the 1 s buffer.
    std::thread::sleep(Duration::from_secs(6));
    broker.restart().unwrap();
    let back = now_us();
    // Wait for stats sent well after the reconnect, when the backlog is gone.
    let stats_topic = "glasswatch/v1/devices/mq4/streams/cam0/stats";
    sub.wait_for(stats_topic, Duration::from_secs(30), |m| {
        m.iter()
            .map(|(_, p)| parse::<Stats>(p))
            .any(|s| s.ts_us > back + 2_000_000 && s.report_backlog < 30)
    })
    .unwrap_or_else(|e| panic!("{e:#}\nagent:\n{}", agent.log_tail()));
    let stats: Stats = parse(&sub.messages(stats_topic).last().unwrap().1);
    let (_, _, missing) = session_coverage(&frames_received(&sub));
    assert!(
        missing.len() > 60,
        "a 6 s outage with a 1 s buffer drops records: {}",
        missing.len()
    );
    assert_eq!(
        stats.records_dropped,
        missing.len() as u64,
        "stats count exactly the records that never arrived"
    );
    // Only the oldest go: what is missing is one run, and what follows it arrived.
    assert!(
        missing.windows(2).all(|w| w[1] == w[0] + 1),
        "missing records are one contiguous run of the oldest"
    );
}

#[test]
fn tls_with_password_and_a_wrong_password() {
    if !require_mqtt() {
        return;
    }
    let broker = Mosquitto::start_with(BrokerOptions {
        user: Some(("mq5".into(), "s3cret".into())),
        tls: true,
    })
    .unwrap();
    let ca = broker.ca_file().unwrap().display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "s3cret\n").unwrap();
    let mqtt = format!(
        "url = \"{}\"\nusername = \"mq5\"\npassword_file = \"{}\"\nca_file = \"{ca}\"",
        broker.url(),
        pass.display()
    );
    let agent = AgentProcess::start(&config("mq5", "rtsp://127.0.0.1:9/none", &mqtt)).unwrap();
    let topic = "glasswatch/v1/devices/mq5/status";
    let sub = Subscriber::start(&broker, topic, None, Some(("mq5", "s3cret"))).unwrap();
    sub.wait_for(topic, Duration::from_secs(15), |m| {
        m.iter().any(|(_, p)| parse::<Status>(p).online)
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e:#}\nagent:\n{}\nbroker:\n{}",
            agent.log_tail(),
            broker.log_tail()
        )
    });
    drop(agent);

    let wrong = mqtt.replace(
        &pass.display().to_string(),
        &dir.path().join("wrong").display().to_string(),
    );
    std::fs::write(dir.path().join("wrong"), "nope\n").unwrap();
    let mut agent = AgentProcess::start(&config("mq6", "rtsp://127.0.0.1:9/none", &wrong)).unwrap();
    // The refusal is logged clearly, and logged again when the agent tries
    // again: it went on running after the first.
    let refusals = |a: &AgentProcess| a.log().matches("the broker refused the connection").count();
    let deadline = Instant::now() + Duration::from_secs(20);
    while refusals(&agent) < 2 {
        assert!(
            Instant::now() < deadline,
            "no clear error, or no second attempt:\n{}",
            agent.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        agent.peer().is_running(),
        "a refused login must not end the agent"
    );
}

#[test]
fn clock_ping_is_answered_and_garbage_ignored() {
    if !require_mqtt() {
        return;
    }
    let broker = Mosquitto::start().unwrap();
    let mut agent = AgentProcess::start(&config(
        "mq7",
        "rtsp://127.0.0.1:9/none",
        &format!("url = \"{}\"", broker.url()),
    ))
    .unwrap();
    let sub =
        Subscriber::start(&broker, "glasswatch/v1/devices/mq7/clock/pong", None, None).unwrap();
    let ping = |payload: &str| {
        publish(
            broker.port(),
            "glasswatch/v1/devices/mq7/clock/ping",
            payload.as_bytes(),
            false,
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    };
    let valid = |nonce: u64, t1: i64| {
        format!("{{\"schema\":\"glasswatch.clock_ping/1\",\"nonce\":{nonce},\"t1_us\":{t1}}}")
    };
    let pongs = || -> Vec<ClockPong> {
        sub.messages("glasswatch/")
            .iter()
            .map(|(_, p)| parse(p))
            .collect()
    };
    // The agent subscribes to its pings once connected: ping until one is
    // answered (pings before that are lost, as QoS 0 pings may be). Answers
    // to these probes may still come later; they are told apart by nonce.
    const PROBE: u64 = 7;
    let deadline = Instant::now() + Duration::from_secs(15);
    while pongs().is_empty() {
        assert!(Instant::now() < deadline, "no pong:\n{}", agent.log_tail());
        ping(&valid(PROBE, now_us()));
        std::thread::sleep(Duration::from_millis(200));
    }
    for garbage in [
        "not json",
        "{\"schema\":\"glasswatch.clock_ping/1\"}",
        "{\"schema\":\"other/1\",\"nonce\":1,\"t1_us\":1}",
    ] {
        ping(garbage);
    }
    let t1 = now_us();
    ping(&valid(42, t1));
    sub.wait_for("glasswatch/", Duration::from_secs(10), |_| {
        pongs().iter().any(|p| p.nonce == 42)
    })
    .unwrap_or_else(|e| panic!("{e:#}\nagent:\n{}", agent.log_tail()));
    // Pings are answered in order: the garbage sent before 42 got nothing.
    let got: Vec<ClockPong> = pongs().into_iter().filter(|p| p.nonce != PROBE).collect();
    assert_eq!(got.len(), 1, "garbage pings get no answer: {got:?}");
    let pong = &got[0];
    assert_eq!((pong.nonce, pong.t1_us), (42, t1));
    assert!(pong.t2_us <= pong.t3_us);
    assert!(
        (pong.t2_us - t1).abs() < 1_000_000,
        "same clock on loopback"
    );
    assert!(agent.peer().is_running());
    assert!(agent.log_tail().contains("malformed clock ping"));
}

#[test]
fn documented_python_subscriber_and_schemas_accept_real_traffic() {
    if !require_mqtt() {
        return;
    }
    let python = "/usr/bin/python3";
    if !require("python3-paho-mqtt and python3-jsonschema", || {
        let ok = Command::new(python)
            .args(["-c", "import paho.mqtt.client, jsonschema"])
            .status()
            .map_err(|e| e.to_string())?
            .success();
        if ok {
            Ok(())
        } else {
            Err("import failed".into())
        }
    }) {
        return;
    }
    let broker = Mosquitto::start().unwrap();
    let origin = RtspOrigin::start(&["mq8-cam0"]).unwrap();
    let agent = AgentProcess::start(&config(
        "mq8",
        &origin.rtsp_url("mq8-cam0"),
        &format!("url = \"{}\"", broker.url()),
    ))
    .unwrap();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = run_with_timeout(
        Command::new(python)
            .arg(format!("{root}/docs/examples/subscriber.py"))
            .args([
                "--port",
                &broker.port().to_string(),
                "--count",
                "90",
                "--timeout",
                "40",
            ])
            .arg("--validate")
            .arg(format!("{root}/docs/schemas")),
        Duration::from_secs(60),
    );
    let out = out.unwrap_or_else(|e| panic!("{e:#}\nagent:\n{}", agent.log_tail()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("/frames"), "{stdout}");
    assert!(stdout.contains("/status"), "{stdout}");
}
