//! The shipped broker configuration (`deploy/mosquitto/`) on a real
//! mosquitto: the ACL file itself, read from the repository; a password file
//! made by the shipped `add-device.sh` (devices) and `mosquitto_passwd`
//! (collector and read-only roles); and `glasswatch.conf` with only its
//! listeners, file paths and log destination swapped for test ones (both
//! listeners on 127.0.0.1 at free ports, a test CA for TLS). Everything else
//! in it, the authentication settings included, runs as shipped.
//!
//! The clients are `mosquitto_pub` and `mosquitto_sub`. A publish the ACL
//! refuses is dropped without a word to an MQTT 3.1.1 client (what agents
//! and collector speak: the broker even acknowledges it), so non-delivery is
//! shown by a marker published afterwards that is delivered: a subscriber
//! gets the messages queued for it in order, so once the marker is there,
//! anything published before it would be too. MQTT 5 clients are told "Not
//! authorized" in the PUBACK; that is checked as well.
//!
//! The shipped config makes each connection's client id its user name, so
//! two connections with one user name replace each other: no user publishes
//! here while a subscriber with the same name must stay connected.
//!
//! Needs mosquitto 2 and its clients, openssl and stdbuf; skipped without
//! them, failing under `CI=true`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use glasswatch_testkit::mosquitto::Mosquitto;
use glasswatch_testkit::peer::{Peer, Ready};
use glasswatch_testkit::ports::{free_port, loopback, wait_for_tcp};
use glasswatch_testkit::process::run_with_timeout;
use glasswatch_testkit::require::{require_mqtt_stack, require_program};
use glasswatch_testkit::tls::make_test_ca;

/// Longest wait for anything: a message, a connection, a tool.
const WAIT: Duration = Duration::from_secs(10);
const COLLECTOR: &str = "glasswatch-collector";
const SUBSCRIBER: &str = "subscriber";
/// What the collector subscribes to (collector/src/run.rs).
const COLLECTOR_FILTERS: [&str; 4] = [
    "glasswatch/v1/devices/+/status",
    "glasswatch/v1/devices/+/streams/+/frames",
    "glasswatch/v1/devices/+/streams/+/stats",
    "glasswatch/v1/devices/+/clock/pong",
];
const EVERYTHING: &str = "glasswatch/v1/#";

fn stack() -> bool {
    require_mqtt_stack() && require_program("openssl") && require_program("stdbuf")
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/mosquitto")
}

/// A topic under `glasswatch/v1/devices/`.
fn dev(rest: &str) -> String {
    format!("glasswatch/v1/devices/{rest}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Plain,
    Tls,
}

/// The shipped configuration running on 127.0.0.1, with devices `dev-a`
/// and `dev-b`, the collector and the read-only role.
struct Fleet {
    broker: Mosquitto,
    tls_port: u16,
    ca: PathBuf,
    passwords: BTreeMap<String, String>,
    dir: PathBuf,
}

/// `glasswatch.conf` with its listeners, paths and log destination
/// replaced; every replaced line must be there exactly once, and every
/// other line is kept as shipped (a listener the test does not know of
/// would bind a real port: it fails instead).
fn test_config(shipped: &str, swaps: &[(&str, String)]) -> String {
    let mut used = vec![0; swaps.len()];
    let mut out = String::new();
    for line in shipped.lines() {
        let trimmed = line.trim();
        let swap = swaps.iter().position(|(from, _)| {
            if from.contains(' ') {
                trimmed == *from
            } else {
                trimmed.split_whitespace().next() == Some(from)
            }
        });
        match swap {
            Some(i) if !trimmed.starts_with('#') => {
                used[i] += 1;
                out.push_str(&swaps[i].1);
            }
            _ => {
                // Every listener must be one moved to 127.0.0.1 above.
                assert!(
                    !trimmed.starts_with("listener") && !trimmed.starts_with("include_dir"),
                    "glasswatch.conf line the test does not know how to move: {line}"
                );
                out.push_str(line);
            }
        }
        out.push('\n');
    }
    for (i, (from, _)) in swaps.iter().enumerate() {
        assert_eq!(
            used[i], 1,
            "glasswatch.conf should have one `{from}` line (found {})",
            used[i]
        );
    }
    out
}

impl Fleet {
    fn start() -> Fleet {
        let tmp = tempfile::Builder::new()
            .prefix("glasswatch-mosquitto-acl-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_owned();
        let passwd = dir.join("glasswatch.passwd");
        let mut passwords = BTreeMap::new();
        // Devices as an operator adds them.
        for device in ["dev-a", "dev-b"] {
            let out = add_device(&passwd, &dir, &[device]);
            assert!(out.status.success(), "add-device.sh {device}: {out:?}");
            let pass = std::fs::read_to_string(dir.join(format!("{device}.pass"))).unwrap();
            passwords.insert(device.to_owned(), pass.trim_end().to_owned());
        }
        // The roles, with mosquitto_passwd as docs/mqtt.md says (-b here:
        // test passwords may show in the process list).
        for user in [COLLECTOR, SUBSCRIBER] {
            let pass = format!("{user}-test-password");
            let out = run_with_timeout(
                Command::new("mosquitto_passwd")
                    .arg("-b")
                    .arg(&passwd)
                    .arg(user)
                    .arg(&pass),
                WAIT,
            )
            .unwrap();
            assert!(out.status.success(), "mosquitto_passwd {user}: {out:?}");
            passwords.insert(user.to_owned(), pass);
        }

        let tls = make_test_ca(&dir).unwrap();
        let plain_port = free_port();
        let tls_port = loop {
            let p = free_port();
            if p != plain_port {
                break p;
            }
        };
        let shipped = std::fs::read_to_string(deploy_dir().join("glasswatch.conf")).unwrap();
        let acl = deploy_dir().join("glasswatch.acl").canonicalize().unwrap();
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let swaps = [
            ("listener 8883", format!("listener {tls_port} 127.0.0.1")),
            (
                "listener 1883 127.0.0.1",
                format!("listener {plain_port} 127.0.0.1"),
            ),
            (
                "password_file",
                format!("password_file {}", passwd.display()),
            ),
            // The shipped ACL itself, not a copy.
            ("acl_file", format!("acl_file {}", acl.display())),
            ("cafile", format!("cafile {}", tls.ca.display())),
            ("certfile", format!("certfile {}", tls.cert.display())),
            ("keyfile", format!("keyfile {}", tls.key.display())),
            (
                "persistence_location",
                format!("persistence_location {}/", dir.display()),
            ),
            (
                "pid_file",
                format!("pid_file {}", dir.join("mosquitto.pid").display()),
            ),
            ("log_dest", "log_dest stderr".to_owned()),
            // Started as root, mosquitto would drop to `mosquitto`, which
            // cannot read this private temp dir.
            (
                "user",
                if root {
                    "user root".to_owned()
                } else {
                    "user mosquitto".to_owned()
                },
            ),
        ];
        let conf = test_config(&shipped, &swaps);
        // What this test relies on is in the shipped file, on both listeners.
        for line in ["per_listener_settings false", "allow_anonymous false"] {
            assert!(conf.lines().any(|l| l == line), "{line} missing");
        }
        assert_eq!(
            conf.lines()
                .filter(|l| *l == "use_username_as_clientid true")
                .count(),
            2,
            "use_username_as_clientid true on each listener"
        );
        let conf_path = dir.join("glasswatch-test.conf");
        std::fs::write(&conf_path, conf).unwrap();

        let broker = Mosquitto::start_with_config(tmp, conf_path, plain_port).unwrap();
        wait_for_tcp(loopback(tls_port), WAIT).unwrap();
        Fleet {
            broker,
            tls_port,
            ca: tls.ca,
            passwords,
            dir,
        }
    }

    fn password(&self, user: &str) -> &str {
        &self.passwords[user]
    }

    /// Where and as whom to connect, for mosquitto_pub and mosquitto_sub.
    fn connect_args(&self, via: Via, user: &str, password: &str) -> Vec<String> {
        let port = match via {
            Via::Plain => self.broker.port(),
            Via::Tls => self.tls_port,
        };
        let mut args: Vec<String> = ["-h", "127.0.0.1", "-p", &port.to_string()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if !user.is_empty() {
            args.extend(["-u".into(), user.into(), "-P".into(), password.into()]);
        }
        if via == Via::Tls {
            args.extend(["--cafile".into(), self.ca.display().to_string()]);
        }
        args
    }

    fn mosquitto_pub(&self, via: Via, user: &str, extra: &[&str]) -> Output {
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args(self.connect_args(via, user, self.passwords.get(user).map_or("", |p| p)))
            .args(["-q", "1"])
            .args(extra);
        run_with_timeout(&mut cmd, WAIT).unwrap()
    }

    /// Publishes as an agent or the collector would (MQTT 3.1.1, QoS 1) and
    /// expects the client to see success: it does whether the ACL allows
    /// the publish or not.
    fn publish(&self, user: &str, topic: &str, payload: &str, retain: bool) {
        self.publish_via(Via::Plain, user, topic, payload, retain);
    }

    fn publish_via(&self, via: Via, user: &str, topic: &str, payload: &str, retain: bool) {
        let mut extra = vec!["-t", topic, "-m", payload];
        if retain {
            extra.push("-r");
        }
        let out = self.mosquitto_pub(via, user, &extra);
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{user} publishing {topic}: {}",
            describe(&out)
        );
    }

    /// With MQTT 5 the broker says "Not authorized" in the PUBACK
    /// (mosquitto_pub prints it, and still exits 0).
    fn assert_v5_denied(&self, via: Via, user: &str, topic: &str) {
        let out = self.mosquitto_pub(via, user, &["-V", "mqttv5", "-t", topic, "-m", "v5"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("Not authorized"),
            "{user} publishing {topic} over MQTT 5 should be refused: {}",
            describe(&out)
        );
    }

    /// The same over MQTT 5 for a publish the ACL allows: no complaint.
    fn assert_v5_allowed(&self, via: Via, user: &str, topic: &str, payload: &str) {
        let out = self.mosquitto_pub(via, user, &["-V", "mqttv5", "-t", topic, "-m", payload]);
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{user} publishing {topic} over MQTT 5 should be accepted: {}",
            describe(&out)
        );
    }

    /// A `mosquitto_sub` as `user`, ready once the broker acknowledged its
    /// subscriptions (QoS 1).
    fn subscribe(&self, user: &str, filters: &[&str]) -> Sub {
        self.subscribe_via(Via::Plain, user, filters)
    }

    fn subscribe_via(&self, via: Via, user: &str, filters: &[&str]) -> Sub {
        self.spawn_sub(via, user, filters, &[])
    }

    /// A connection as `user` with a Last Will (retained, QoS 1), open until
    /// [`Sub::kill`] drops it without a DISCONNECT.
    fn with_will(&self, user: &str, will_topic: &str, will_payload: &str) -> Sub {
        let own_ping = dev(&format!("{user}/clock/ping"));
        self.spawn_sub(
            Via::Plain,
            user,
            &[own_ping.as_str()],
            &[
                "--will-topic",
                will_topic,
                "--will-payload",
                will_payload,
                "--will-qos",
                "1",
                "--will-retain",
            ],
        )
    }

    fn spawn_sub(&self, via: Via, user: &str, filters: &[&str], extra: &[&str]) -> Sub {
        // Line-buffered, so that the debug line after the SUBACK arrives when
        // it is printed (mosquitto_sub flushes only after messages).
        let mut cmd = Command::new("stdbuf");
        cmd.args(["-oL", "mosquitto_sub"])
            .args(self.connect_args(via, user, self.password(user)))
            .args(["-v", "-d", "-q", "1"])
            .args(extra);
        for f in filters {
            cmd.args(["-t", f]);
        }
        let peer = Peer::spawn(
            &format!("mosquitto_sub-{user}"),
            cmd,
            Ready::StdoutLine("Subscribed".into()),
            WAIT,
        )
        .unwrap_or_else(|e| {
            panic!(
                "{user} subscribing: {e:#}\nbroker:\n{}",
                self.broker.log_tail()
            )
        });
        Sub {
            peer,
            who: user.to_owned(),
        }
    }
}

fn add_device(passwd: &Path, out: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(deploy_dir().join("add-device.sh"))
        .arg("--passwd")
        .arg(passwd)
        .arg("--out")
        .arg(out)
        .args(args);
    run_with_timeout(&mut cmd, WAIT).unwrap()
}

fn describe(out: &Output) -> String {
    format!(
        "{}; stdout: {}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// A running `mosquitto_sub -v -d`; what it received is read from its log.
struct Sub {
    peer: Peer,
    who: String,
}

impl Sub {
    /// Every `(topic, payload)` received so far.
    fn messages(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.peer.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("glasswatch/"))
            .filter_map(|l| l.split_once(' '))
            .map(|(t, p)| (t.to_owned(), p.to_owned()))
            .collect()
    }

    /// How many times it connected (mosquitto_sub connects again when the
    /// broker closes its connection).
    fn connects(&self) -> usize {
        std::fs::read_to_string(self.peer.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("Client ") && l.ends_with("sending CONNECT"))
            .count()
    }

    fn wait_until(&self, what: &str, done: impl Fn(&Sub) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "{}: {what} not seen within {WAIT:?}; log:\n{}",
                self.who,
                self.peer.log_tail()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_for(&self, topic: &str, payload: &str) {
        self.wait_until(&format!("{topic} {payload}"), |s| {
            s.messages().iter().any(|(t, p)| t == topic && p == payload)
        });
    }

    /// Asserts that no message matching `bad` arrived.
    fn assert_none(&self, what: &str, bad: impl Fn(&str, &str) -> bool) {
        let got: Vec<_> = self
            .messages()
            .into_iter()
            .filter(|(t, p)| bad(t, p))
            .collect();
        assert!(got.is_empty(), "{} received {what}: {got:?}", self.who);
    }

    /// Drops the connection without a DISCONNECT (SIGKILL), as a power cut
    /// would: the broker then sends the Last Will.
    fn kill(mut self) {
        self.peer.kill().unwrap();
    }
}

/// Payloads of messages that must never arrive start with this.
const FORGED: &str = "forged";

fn is_forged(_topic: &str, payload: &str) -> bool {
    payload.starts_with(FORGED)
}

#[test]
fn a_device_publishes_under_its_own_id_only() {
    if !stack() {
        return;
    }
    let f = Fleet::start();
    let collector = f.subscribe(COLLECTOR, &COLLECTOR_FILTERS);
    let everyone = f.subscribe(SUBSCRIBER, &[EVERYTHING]);

    // What an agent publishes, the way it does (MQTT 3.1.1, QoS 1).
    let own = [
        (dev("dev-a/status"), "a-online", true),
        (dev("dev-a/streams/cam0/frames"), "a-frames", false),
        (dev("dev-a/streams/cam0/stats"), "a-stats", false),
        (dev("dev-a/clock/pong"), "a-pong", false),
    ];
    for (topic, payload, retain) in &own {
        f.publish("dev-a", topic, payload, *retain);
    }
    for (topic, payload, _) in &own {
        collector.wait_for(topic, payload);
        everyone.wait_for(topic, payload);
    }

    // Another device's topics, the collector's, and anything else.
    let forged = [
        (dev("dev-b/status"), true),
        (dev("dev-b/streams/cam0/frames"), false),
        (dev("dev-b/streams/cam0/stats"), false),
        (dev("dev-b/clock/pong"), false),
        (dev("dev-b/clock/ping"), false),
        (dev("dev-a/clock/ping"), false),
        (dev("dev-a/streams/cam0/latency"), true),
        (dev("dev-a/streams/cam0/viewer"), true),
        (dev("dev-a/other"), false),
        ("glasswatch/v1/fleet".to_owned(), true),
    ];
    for (topic, retain) in &forged {
        f.publish("dev-a", topic, &format!("{FORGED}-{topic}"), *retain);
    }
    // A packet over max_packet_size on its own topic: the broker hangs up.
    let big = f.dir.join("big");
    std::fs::write(&big, vec![b'x'; 1_100_000]).unwrap();
    let out = f.mosquitto_pub(
        Via::Plain,
        "dev-a",
        &[
            "-t",
            &dev("dev-a/streams/cam0/stats"),
            "-f",
            big.to_str().unwrap(),
        ],
    );
    assert!(
        !out.status.success(),
        "oversized publish: {}",
        describe(&out)
    );
    // A Last Will on another device's status, sent when the connection dies.
    f.with_will("dev-a", &dev("dev-b/status"), &format!("{FORGED}-will"))
        .kill();

    // The marker: dev-a's own Last Will, sent after all of the above.
    f.with_will("dev-a", &dev("dev-a/status"), "a-will").kill();
    collector.wait_for(&dev("dev-a/status"), "a-will");
    everyone.wait_for(&dev("dev-a/status"), "a-will");
    for sub in [&collector, &everyone] {
        sub.assert_none("a forged message", is_forged);
        sub.assert_none("the oversized message", |_, p| p.starts_with("xxx"));
    }

    // MQTT 5 clients are told, for the same topics and beyond the tree.
    for (topic, _) in &forged {
        f.assert_v5_denied(Via::Plain, "dev-a", topic);
    }
    f.assert_v5_denied(Via::Plain, "dev-a", "elsewhere/dev-a");
    f.assert_v5_allowed(Via::Plain, "dev-a", &dev("dev-a/status"), "a-v5");
    collector.wait_for(&dev("dev-a/status"), "a-v5");
}

#[test]
fn a_device_reads_only_its_own_clock_pings_and_the_collector_writes_what_it_needs() {
    if !stack() {
        return;
    }
    let f = Fleet::start();
    // Retained messages a device must not get when it subscribes.
    f.publish("dev-b", &dev("dev-b/status"), "b-online", true);
    f.publish(
        COLLECTOR,
        &dev("dev-b/streams/cam0/latency"),
        "b-latency",
        true,
    );
    // A curious device asks for everything.
    let dev_a = f.subscribe("dev-a", &[EVERYTHING]);
    let everyone = f.subscribe(SUBSCRIBER, &[EVERYTHING]);
    everyone.wait_for(&dev("dev-b/status"), "b-online");
    everyone.wait_for(&dev("dev-b/streams/cam0/latency"), "b-latency");

    // The collector writes pings, latency and viewer summaries...
    let writes = [
        (dev("dev-b/clock/ping"), "ping-b", false),
        (dev("dev-a/streams/cam0/latency"), "latency-a", true),
        (dev("dev-a/streams/cam0/viewer"), "viewer-a", true),
    ];
    for (topic, payload, retain) in &writes {
        f.publish(COLLECTOR, topic, payload, *retain);
    }
    // ...and nothing an agent writes.
    let forged = [
        (dev("dev-a/status"), true),
        (dev("dev-a/streams/cam0/frames"), false),
        (dev("dev-a/streams/cam0/stats"), false),
        (dev("dev-a/clock/pong"), false),
        (dev("glasswatch-collector/status"), true),
        ("glasswatch/v1/fleet".to_owned(), true),
    ];
    for (topic, retain) in &forged {
        f.publish(COLLECTOR, topic, &format!("{FORGED}-{topic}"), *retain);
    }
    // The marker, for dev-a and for everyone.
    f.publish(COLLECTOR, &dev("dev-a/clock/ping"), "ping-a", false);
    dev_a.wait_for(&dev("dev-a/clock/ping"), "ping-a");
    everyone.wait_for(&dev("dev-a/clock/ping"), "ping-a");

    // dev-a got its own ping and nothing else: no other device's ping, no
    // retained status, no latency.
    assert_eq!(
        dev_a.messages(),
        vec![(dev("dev-a/clock/ping"), "ping-a".to_owned())]
    );
    for (topic, payload, _) in &writes {
        everyone.wait_for(topic, payload);
    }
    everyone.assert_none("a forged message", is_forged);

    for (topic, _) in &forged {
        f.assert_v5_denied(Via::Plain, COLLECTOR, topic);
    }
    f.assert_v5_allowed(Via::Plain, COLLECTOR, &dev("dev-a/clock/ping"), "ping-v5");
    dev_a.wait_for(&dev("dev-a/clock/ping"), "ping-v5");
}

#[test]
fn the_read_only_role_reads_everything_and_publishes_nothing() {
    if !stack() {
        return;
    }
    let f = Fleet::start();
    let collector = f.subscribe(COLLECTOR, &COLLECTOR_FILTERS);
    let dev_a = f.subscribe("dev-a", &[dev("dev-a/clock/ping").as_str()]);

    let forged = [
        (dev("dev-a/status"), true),
        (dev("dev-a/streams/cam0/frames"), false),
        (dev("dev-a/streams/cam0/stats"), false),
        (dev("dev-a/clock/pong"), false),
        (dev("dev-a/clock/ping"), false),
        (dev("dev-a/streams/cam0/latency"), true),
        (dev("dev-a/streams/cam0/viewer"), true),
        // Its own name as a device: the device patterns apply to every user.
        (dev("subscriber/status"), true),
        (dev("subscriber/streams/cam0/frames"), false),
        ("glasswatch/v1/fleet".to_owned(), true),
    ];
    for (topic, retain) in &forged {
        f.publish(SUBSCRIBER, topic, &format!("{FORGED}-{topic}"), *retain);
    }
    // Markers: for the collector from a device, then for dev-a from the
    // collector (whose own subscriber goes first: one connection per user).
    f.publish("dev-b", &dev("dev-b/status"), "b-online", true);
    collector.wait_for(&dev("dev-b/status"), "b-online");
    collector.assert_none("a forged message", is_forged);
    drop(collector);
    f.publish(COLLECTOR, &dev("dev-a/clock/ping"), "ping-a", false);
    dev_a.wait_for(&dev("dev-a/clock/ping"), "ping-a");
    dev_a.assert_none("a forged message", is_forged);

    // Forged retained messages would have been stored: a new reader of
    // everything gets what is retained, and then a live marker.
    f.publish(
        COLLECTOR,
        &dev("dev-a/streams/cam0/latency"),
        "latency-a",
        true,
    );
    let everyone = f.subscribe(SUBSCRIBER, &[EVERYTHING]);
    f.publish(
        "dev-b",
        &dev("dev-b/streams/cam0/frames"),
        "b-frames",
        false,
    );
    everyone.wait_for(&dev("dev-b/streams/cam0/frames"), "b-frames");
    everyone.wait_for(&dev("dev-b/status"), "b-online");
    everyone.wait_for(&dev("dev-a/streams/cam0/latency"), "latency-a");
    everyone.assert_none("a forged message", is_forged);
    drop(everyone);

    for (topic, _) in &forged {
        f.assert_v5_denied(Via::Plain, SUBSCRIBER, topic);
    }
    f.assert_v5_denied(Via::Plain, SUBSCRIBER, "elsewhere/subscriber");
}

#[test]
fn wrong_or_missing_credentials_are_refused_on_both_listeners() {
    if !stack() {
        return;
    }
    let f = Fleet::start();
    let dev_a_password = f.password("dev-a").to_owned();
    for via in [Via::Plain, Via::Tls] {
        let logins = [
            ("dev-a", "wrong"),
            ("dev-b", dev_a_password.as_str()),
            (COLLECTOR, "wrong"),
            (SUBSCRIBER, ""),
            ("nobody", "nothing"),
            // Anonymous: no user name at all.
            ("", ""),
        ];
        for (user, password) in logins {
            let args = f.connect_args(via, user, password);
            let publish = run_with_timeout(
                Command::new("mosquitto_pub").args(&args).args([
                    "-t",
                    &dev("dev-a/status"),
                    "-m",
                    "x",
                ]),
                WAIT,
            )
            .unwrap();
            let subscribe = run_with_timeout(
                Command::new("mosquitto_sub")
                    .args(&args)
                    .args(["-t", EVERYTHING, "-C", "1", "-W", "5"]),
                WAIT,
            )
            .unwrap();
            for (tool, out) in [("mosquitto_pub", publish), ("mosquitto_sub", subscribe)] {
                assert!(
                    !out.status.success()
                        && String::from_utf8_lossy(&out.stderr).contains("not authorised"),
                    "{tool} {via:?} as {user:?}/{password:?} should be refused: {}",
                    describe(&out)
                );
            }
        }
        // The right password works on the same listener.
        f.publish_via(via, "dev-a", &dev("dev-a/status"), "a-online", true);
    }
}

#[test]
fn the_tls_listener_applies_the_same_rules() {
    if !stack() {
        return;
    }
    let f = Fleet::start();
    let collector = f.subscribe_via(Via::Tls, COLLECTOR, &COLLECTOR_FILTERS);
    f.publish_via(Via::Tls, "dev-a", &dev("dev-b/status"), FORGED, true);
    f.publish_via(Via::Tls, "dev-a", &dev("dev-a/status"), "a-online", true);
    collector.wait_for(&dev("dev-a/status"), "a-online");
    collector.assert_none("a forged message", is_forged);
    f.assert_v5_denied(Via::Tls, "dev-a", &dev("dev-b/status"));
    f.assert_v5_allowed(Via::Tls, "dev-a", &dev("dev-a/clock/pong"), "a-pong");
    collector.wait_for(&dev("dev-a/clock/pong"), "a-pong");

    // Plain MQTT on the TLS port gets nowhere.
    let mut args = f.connect_args(Via::Plain, "dev-a", f.password("dev-a"));
    let port = args.iter().position(|a| a == "-p").unwrap() + 1;
    args[port] = f.tls_port.to_string();
    let out = run_with_timeout(
        Command::new("mosquitto_pub")
            .args(&args)
            .args(["-t", &dev("dev-a/status"), "-m", "x"]),
        WAIT,
    )
    .unwrap();
    assert!(
        !out.status.success(),
        "plain MQTT on TLS: {}",
        describe(&out)
    );
}

#[test]
fn a_client_cannot_take_over_another_users_client_id() {
    if !stack() {
        return;
    }
    let f = Fleet::start();
    // The collector connects with its configured client id (mqtt.client_id).
    let collector = f.spawn_sub(
        Via::Plain,
        COLLECTOR,
        &COLLECTOR_FILTERS,
        &["-i", COLLECTOR],
    );
    // dev-a claims the collector's client id (over TLS, so both listeners'
    // settings count); the broker names the connection after its user
    // instead, and the collector stays connected.
    let out = f.mosquitto_pub(
        Via::Tls,
        "dev-a",
        &[
            "-i",
            COLLECTOR,
            "-t",
            &dev("dev-a/status"),
            "-m",
            "a-as-collector",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    collector.wait_for(&dev("dev-a/status"), "a-as-collector");
    assert_eq!(collector.connects(), 1, "the collector was disconnected");

    // Two connections of one user do replace each other: the collector's
    // publishing connection ends its subscriber's (which reconnects).
    f.publish(COLLECTOR, &dev("dev-a/clock/ping"), "ping", false);
    collector.wait_until("a second connection", |s| s.connects() >= 2);
}

#[test]
fn a_reload_applies_a_rotated_or_deleted_login_to_open_connections() {
    if !stack() {
        return;
    }
    let f = Fleet::start();
    let passwd = f.dir.join("glasswatch.passwd");
    let mut dev_a = f.subscribe("dev-a", &[dev("dev-a/clock/ping").as_str()]);
    let mut dev_b = f.subscribe("dev-b", &[dev("dev-b/clock/ping").as_str()]);

    // dev-a gets a new password, dev-b is retired.
    let out = add_device(&passwd, &f.dir, &["--replace", "dev-a"]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = run_with_timeout(
        Command::new("mosquitto_passwd")
            .arg("-D")
            .arg(&passwd)
            .arg("dev-b"),
        WAIT,
    )
    .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    // `systemctl reload mosquitto` sends SIGHUP; the PID is the broker's
    // own, from the pid_file the test config points into its directory.
    let pid: libc::pid_t = std::fs::read_to_string(f.dir.join("mosquitto.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) has no memory effects; the PID is our running broker.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);

    // Both open connections are closed, and mosquitto_sub's attempt to
    // reconnect with the old password is refused.
    for (who, sub) in [("dev-a", &mut dev_a), ("dev-b", &mut dev_b)] {
        let status = sub.peer.wait_timeout(WAIT).unwrap();
        let log = std::fs::read_to_string(sub.peer.log_path()).unwrap();
        assert!(
            !status.success() && log.contains("not authorised"),
            "{who}'s connection after the reload: {status}; log:\n{log}"
        );
    }
    let new_password = std::fs::read_to_string(f.dir.join("dev-a.pass")).unwrap();
    for (user, password, accepted) in [
        ("dev-a", new_password.trim_end(), true),
        ("dev-a", f.password("dev-a"), false),
        ("dev-b", f.password("dev-b"), false),
    ] {
        let out = run_with_timeout(
            Command::new("mosquitto_pub")
                .args(f.connect_args(Via::Plain, user, password))
                .args(["-t", &dev(&format!("{user}/status")), "-m", "x"]),
            WAIT,
        )
        .unwrap();
        assert_eq!(
            out.status.success(),
            accepted,
            "{user} with the {} password: {}",
            if accepted { "new" } else { "old" },
            describe(&out)
        );
    }
}

#[test]
fn add_device_takes_device_ids_only() {
    if !(require_program("bash") && require_program("mosquitto_passwd")) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let passwd = dir.join("passwd");

    let out = add_device(&passwd, dir, &["--broker", "mq.example.net", "pi-kitchen"]);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "device_id = \"pi-kitchen\"",
        "url = \"mqtts://mq.example.net:8883\"",
        "username = \"pi-kitchen\"",
        "password_file = \"/run/credentials/glasswatch-agent.service/mqtt.pass\"",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "{line} not in:\n{stdout}"
        );
    }
    let pass_file = dir.join("pi-kitchen.pass");
    let password = std::fs::read_to_string(&pass_file).unwrap();
    assert_eq!(password.trim_end().len(), 32, "{password:?}");
    assert!(!stdout.contains(password.trim_end()), "password printed");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&pass_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let mode = std::fs::metadata(&passwd).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0o040, "password file mode {mode:o}");
    let entries = std::fs::read_to_string(&passwd).unwrap();
    assert!(entries.starts_with("pi-kitchen:$7$"), "{entries}");

    // A second time needs --replace, which changes the password.
    let out = add_device(&passwd, dir, &["pi-kitchen"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert_eq!(std::fs::read_to_string(&passwd).unwrap(), entries);
    let out = add_device(&passwd, dir, &["--replace", "pi-kitchen"]);
    assert!(out.status.success(), "{}", describe(&out));
    let replaced = std::fs::read_to_string(&passwd).unwrap();
    assert_ne!(replaced, entries);
    assert_eq!(replaced.lines().count(), 1, "{replaced}");
    assert_ne!(std::fs::read_to_string(&pass_file).unwrap(), password);

    let too_long = "a".repeat(65);
    for bad in [
        "Pi-Kitchen",
        "pi/kitchen",
        "pi+kitchen",
        "#",
        "pi kitchen",
        "pi\nkitchen",
        "../../etc/x",
        too_long.as_str(),
        "glasswatch-collector",
        "subscriber",
        "",
    ] {
        let out = add_device(&passwd, dir, &[bad]);
        assert!(
            !out.status.success(),
            "{bad:?} accepted: {}",
            describe(&out)
        );
        assert_eq!(
            std::fs::read_to_string(&passwd).unwrap(),
            replaced,
            "{bad:?}"
        );
    }
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    // 64 characters is still an id.
    let longest = "a".repeat(64);
    let out = add_device(&passwd, dir, &[&longest]);
    assert!(out.status.success(), "{}", describe(&out));
}
