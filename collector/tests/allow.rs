//! No fetching on request of a stranger: a status advertising an `hls_url`
//! outside `[hls] allow` (here the cloud metadata address, and a public
//! address the default does not allow) is refused and counted by the real
//! collector, which reads nothing there.

use std::time::{Duration, Instant};

use glasswatch_common::messages::{self, Status, StreamInfo};
use glasswatch_testkit::collector::CollectorProcess;
use glasswatch_testkit::mosquitto::publish;
use glasswatch_testkit::require::require_mqtt_stack;

#[test]
fn advertised_urls_outside_the_allow_list_are_refused() {
    if !require_mqtt_stack() {
        return;
    }
    let (config, port) = CollectorProcess::embedded_broker_config();
    let collector = CollectorProcess::start(&config).unwrap();
    let mut status = Status::offline("stranger", 1_800_000_000_000_000, "");
    status.online = true;
    status.reason = None;
    status.streams = [
        "http://169.254.169.254/latest/meta-data/index.m3u8",
        "http://8.8.8.8/x/index.m3u8",
    ]
    .iter()
    .enumerate()
    .map(|(i, url)| StreamInfo {
        id: format!("cam{i}"),
        hls_url: (*url).to_owned(),
        ..StreamInfo::default()
    })
    .collect();
    publish(
        port,
        "glasswatch/v1/devices/stranger/status",
        &messages::encode(&status).unwrap(),
        // Retained, as agents publish it: the collector may subscribe after.
        true,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (streams, counters) = collector.streams().unwrap();
        if counters.refused_hls_urls >= 2 {
            assert!(
                streams
                    .iter()
                    .filter(|s| s.device == "stranger")
                    .all(|s| s.reading.is_none()),
                "{streams:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not refused: {counters:?}\n{}",
            collector.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(collector.log_tail().contains("advertised hls_url refused"));
}
