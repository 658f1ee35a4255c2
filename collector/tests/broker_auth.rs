//! The embedded broker's logins: on an address other than loopback it
//! refuses to start without device logins; with them, a wrong password or
//! no login is refused, and a device cannot publish under another
//! device's topics (dropped and counted), while its own messages arrive.

use std::process::Command;
use std::time::{Duration, Instant};

use glasswatch_common::api::DevicesResponse;
use glasswatch_common::messages::{self, Status};
use glasswatch_testkit::collector::{http_get, CollectorProcess};
use glasswatch_testkit::mosquitto::publish_as;
use glasswatch_testkit::require::require_mqtt_stack;
use glasswatch_testkit::{bin_path, free_port};

#[test]
fn a_non_loopback_embedded_broker_needs_logins() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[mqtt]\nlisten = \"0.0.0.0:1883\"\n").unwrap();
    let out = Command::new(bin_path("glasswatch-collector"))
        .arg("--config")
        .arg(&config)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mqtt.listen") && err.contains("users_file"),
        "{err}"
    );
}

fn status(device: &str) -> Vec<u8> {
    let mut s = Status::offline(device, 1_800_000_000_000_000, "");
    s.online = true;
    s.reason = None;
    messages::encode(&s).unwrap()
}

#[test]
fn devices_publish_only_under_their_own_topics() {
    if !require_mqtt_stack() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hash = |pw: &str| glasswatch_collector::auth::hash_password(pw).unwrap();
    let users = dir.path().join("mqtt-users");
    std::fs::write(
        &users,
        format!(
            "# device:hash\ndev-a:{}\ndev-b:{}\n",
            hash("pw-a"),
            hash("pw-b")
        ),
    )
    .unwrap();
    let port = free_port();
    let collector = CollectorProcess::start(&format!(
        "[mqtt]\nlisten = \"127.0.0.1:{port}\"\nusers_file = \"{}\"\n",
        users.display()
    ))
    .unwrap();
    // Refused: a wrong password, another device's password, no login.
    for login in [Some(("dev-a", "nope")), Some(("dev-a", "pw-b")), None] {
        let e = publish_as(
            port,
            login,
            "glasswatch/v1/devices/dev-a/status",
            b"{}",
            false,
        );
        assert!(e.is_err(), "{login:?} was let in");
    }
    // dev-a forges dev-b's status and a latency of its own, then publishes
    // its own status: that one arrives, the forgeries never do.
    let a = Some(("dev-a", "pw-a"));
    publish_as(
        port,
        a,
        "glasswatch/v1/devices/dev-b/status",
        &status("dev-b"),
        true,
    )
    .unwrap();
    publish_as(
        port,
        a,
        "glasswatch/v1/devices/dev-a/streams/cam0/latency",
        b"{}",
        true,
    )
    .unwrap();
    publish_as(
        port,
        a,
        "glasswatch/v1/devices/dev-a/status",
        &status("dev-a"),
        true,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let devices = loop {
        let body = http_get(&format!("{}/api/v1/devices", collector.api_url())).unwrap();
        let d: DevicesResponse = serde_json::from_str(&body).unwrap();
        if d.devices.iter().any(|d| d.device == "dev-a") {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "dev-a's own status never arrived: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        !devices.devices.iter().any(|d| d.device == "dev-b"),
        "{devices:?}"
    );
    let metrics = http_get(&format!("{}/metrics", collector.api_url())).unwrap();
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    assert_eq!(value("glasswatch_broker_unauthorized_total"), 2.0);
    assert_eq!(value("glasswatch_broker_refused_logins_total"), 3.0);
    // The collector's own client logged in (internal login): it is connected.
    assert_eq!(value("glasswatch_mqtt_connected"), 1.0);
}
