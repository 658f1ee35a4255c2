//! A real mosquitto broker and `mosquitto_sub` subscribers as peers.
//!
//! [`Mosquitto`] writes its own config into a temp dir (listener on
//! 127.0.0.1, persistence on so a restart keeps sessions and queued
//! messages, optionally a password file and a TLS listener with a test CA
//! made by `openssl`), and can be stopped and started again on the same
//! port; [`Mosquitto::start_with_config`] runs a config the caller wrote
//! instead. [`Subscriber`] runs `mosquitto_sub -v` and reads what it received
//! from its log, so no message is lost to a full line queue.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::peer::{Peer, Ready};
use crate::ports::{free_port, loopback};
use crate::process::run_with_timeout;
use crate::tls::make_test_ca;

/// Where subscribers' ready markers go (see [`Subscriber::start`]): outside
/// `glasswatch/`, so no test reading product topics sees them.
pub const MARKER_ROOT: &str = "testkit-ready";

/// How a broker is set up.
#[derive(Debug, Clone, Default)]
pub struct BrokerOptions {
    /// Require this user name and password (anonymous access is refused).
    pub user: Option<(String, String)>,
    /// Serve TLS with a fresh test CA (the URL becomes `mqtts://`).
    pub tls: bool,
}

/// A running mosquitto, killed on drop.
#[derive(Debug)]
pub struct Mosquitto {
    peer: Option<Peer>,
    port: u16,
    dir: tempfile::TempDir,
    conf: PathBuf,
    ca: Option<PathBuf>,
}

impl Mosquitto {
    /// A plain broker, anonymous access, persistence on.
    pub fn start() -> anyhow::Result<Mosquitto> {
        Self::start_with(BrokerOptions::default())
    }

    /// A broker set up as `opts` says.
    pub fn start_with(opts: BrokerOptions) -> anyhow::Result<Mosquitto> {
        let dir = tempfile::Builder::new()
            .prefix("glasswatch-mosquitto-")
            .tempdir()
            .context("creating the broker's directory")?;
        let port = free_port();
        let mut conf = format!(
            "listener {port} 127.0.0.1\npersistence true\npersistence_location {}/\n\
             autosave_interval 1\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n\
             log_type information\nconnection_messages true\nmax_queued_messages 100000\n",
            dir.path().display()
        );
        // Started as root, mosquitto would switch to the `mosquitto` user, which
        // cannot read this private temp dir; keep it as the test's user.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            conf.push_str("user root\n");
        }
        match &opts.user {
            Some((user, pass)) => {
                let file = dir.path().join("passwd");
                std::fs::write(&file, "").context("creating the password file")?;
                run_with_timeout(
                    Command::new("mosquitto_passwd")
                        .arg("-b")
                        .arg(&file)
                        .arg(user)
                        .arg(pass),
                    Duration::from_secs(10),
                )
                .context("mosquitto_passwd")?;
                conf.push_str(&format!(
                    "allow_anonymous false\npassword_file {}\n",
                    file.display()
                ));
            }
            None => conf.push_str("allow_anonymous true\n"),
        }
        let ca = if opts.tls {
            let tls = make_test_ca(dir.path())?;
            conf.push_str(&format!(
                "cafile {}\ncertfile {}\nkeyfile {}\n",
                tls.ca.display(),
                tls.cert.display(),
                tls.key.display()
            ));
            Some(tls.ca)
        } else {
            None
        };
        let conf_path = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_path, conf).context("writing mosquitto.conf")?;
        let mut m = Mosquitto {
            peer: None,
            port,
            dir,
            conf: conf_path,
            ca,
        };
        m.restart()?;
        Ok(m)
    }

    /// A broker running a config file the caller wrote, such as a shipped
    /// configuration with its listeners and paths pointed at test ones.
    ///
    /// `dir` is kept (and deleted) with the broker; put the config, its
    /// files and the persistence location there. `port` is a plain MQTT
    /// listener of that config on 127.0.0.1: the broker counts as ready
    /// once it accepts connections there, and [`Mosquitto::port`] and
    /// [`Mosquitto::url`] name it. Wait for any other listener yourself
    /// ([`crate::wait_for_tcp`]). Nothing is added to the config: a broker
    /// started as root needs its own `user root` line to read `dir`.
    pub fn start_with_config(
        dir: tempfile::TempDir,
        conf: PathBuf,
        port: u16,
    ) -> anyhow::Result<Mosquitto> {
        let mut m = Mosquitto {
            peer: None,
            port,
            dir,
            conf,
            ca: None,
        };
        m.restart()?;
        Ok(m)
    }

    /// Starts the broker (again) on the same port with the same config and data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new("mosquitto");
        cmd.arg("-c").arg(&self.conf);
        self.peer = Some(Peer::spawn(
            "mosquitto",
            cmd,
            Ready::Tcp(loopback(self.port)),
            Duration::from_secs(10),
        )?);
        Ok(())
    }

    /// Stops the broker with SIGTERM (it saves its persistence file).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut p) = self.peer.take() {
            p.terminate(Duration::from_secs(5))?;
        }
        Ok(())
    }

    /// The broker's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:PORT`, or `mqtts://` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "mqtts" } else { "mqtt" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The test CA to trust, with TLS.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// The broker's directory (config, persistence).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The end of the broker's log.
    pub fn log_tail(&self) -> String {
        self.peer.as_ref().map(|p| p.log_tail()).unwrap_or_default()
    }
}

/// A `mosquitto_sub -v` subscriber; what it receives is read from its log.
#[derive(Debug)]
pub struct Subscriber {
    peer: Peer,
}

impl Subscriber {
    /// Subscribes to `topic` (QoS 1) on `broker`. With `session`, it is a
    /// persistent session with that client id (clean session off), so the
    /// broker queues messages for it while it is disconnected. Returns once
    /// the subscription is in place.
    pub fn start(
        broker: &Mosquitto,
        topic: &str,
        session: Option<&str>,
        user: Option<(&str, &str)>,
    ) -> anyhow::Result<Subscriber> {
        Self::spawn(broker.port(), topic, session, user, broker.ca_file())
    }

    /// Subscribes to `topic` (QoS 1) on any plain broker on 127.0.0.1:`port`
    /// (the collector's embedded one, say). Returns once the subscription is
    /// in place.
    pub fn start_at(port: u16, topic: &str) -> anyhow::Result<Subscriber> {
        Self::spawn(port, topic, None, None, None)
    }

    /// mosquitto_sub prints nothing once it has subscribed, so it also
    /// subscribes to a marker topic of its own, the marker is published
    /// retained, and the subscriber counts as ready once it printed it: the
    /// broker sends a retained message only to a subscription in place, and
    /// all of a client's filters are subscribed in one packet.
    fn spawn(
        port: u16,
        topic: &str,
        session: Option<&str>,
        user: Option<(&str, &str)>,
        ca_file: Option<&Path>,
    ) -> anyhow::Result<Subscriber> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let marker = format!(
            "{MARKER_ROOT}/{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut cmd = Command::new("mosquitto_sub");
        cmd.args(["-h", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .args(["-v", "-q", "1", "-t", topic, "-t", &marker]);
        if let Some(id) = session {
            cmd.args(["-c", "-i", id]);
        }
        if let Some((u, p)) = user {
            cmd.args(["-u", u, "-P", p]);
        }
        if let Some(ca) = ca_file {
            cmd.arg("--cafile").arg(ca);
        }
        let peer = Peer::spawn("mosquitto_sub", cmd, Ready::Spawned, Duration::from_secs(5))?;
        let sub = Subscriber { peer };
        publish_with(port, user, ca_file, &marker, b"ready", true)
            .context("publishing the subscriber's ready marker")?;
        sub.wait_for(&marker, Duration::from_secs(10), |m| !m.is_empty())
            .context("mosquitto_sub never received its ready marker")?;
        // Clear the retained marker (an empty retained message deletes it).
        publish_with(port, user, ca_file, &marker, b"", true)
            .context("clearing the subscriber's ready marker")?;
        Ok(sub)
    }

    /// Every `(topic, payload)` received so far whose topic starts with `prefix`.
    pub fn messages(&self, prefix: &str) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.peer.log_path()).unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.split_once(' '))
            .map(|(t, p)| (t.to_owned(), p.to_owned()))
            .collect()
    }

    /// Polls until `done` accepts the messages under `prefix`, for up to `timeout`.
    pub fn wait_for(
        &self,
        prefix: &str,
        timeout: Duration,
        done: impl Fn(&[(String, String)]) -> bool,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages(prefix);
            if done(&got) {
                return Ok(got);
            }
            if Instant::now() >= deadline {
                bail!(
                    "messages under {prefix} not as expected within {timeout:?} ({} received); log:\n{}",
                    got.len(),
                    self.peer.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The process guard.
    pub fn peer(&mut self) -> &mut Peer {
        &mut self.peer
    }
}

/// Publishes one message with `mosquitto_pub` (QoS 1) to the broker on
/// 127.0.0.1:`port` and waits for it to be sent.
pub fn publish(port: u16, topic: &str, payload: &[u8], retain: bool) -> anyhow::Result<()> {
    publish_as(port, None, topic, payload, retain)
}

/// Like [`publish`], logging in as `login` (user, password) when given.
pub fn publish_as(
    port: u16,
    login: Option<(&str, &str)>,
    topic: &str,
    payload: &[u8],
    retain: bool,
) -> anyhow::Result<()> {
    publish_with(port, login, None, topic, payload, retain)
}

/// Like [`publish_as`], over TLS trusting `ca_file` when given.
pub fn publish_with(
    port: u16,
    login: Option<(&str, &str)>,
    ca_file: Option<&Path>,
    topic: &str,
    payload: &[u8],
    retain: bool,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("a directory for the payload")?;
    let file = dir.path().join("payload");
    std::fs::write(&file, payload).context("writing the payload")?;
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-q", "1", "-t", topic])
        .arg("-p")
        .arg(port.to_string());
    if payload.is_empty() {
        // `-f` refuses an empty file; `-n` sends a null message.
        cmd.arg("-n");
    } else {
        cmd.arg("-f").arg(&file);
    }
    if retain {
        cmd.arg("-r");
    }
    if let Some((user, password)) = login {
        cmd.args(["-u", user, "-P", password]);
    }
    if let Some(ca) = ca_file {
        cmd.arg("--cafile").arg(ca);
    }
    let out = run_with_timeout(&mut cmd, Duration::from_secs(10))?;
    if !out.status.success() {
        bail!(
            "mosquitto_pub to {topic} on port {port} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
