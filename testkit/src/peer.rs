//! A guard for one real peer process (an origin, a broker, a database, a
//! browser, a publisher) that a test starts on 127.0.0.1 and stops by PID.
//!
//! [`Peer::spawn`] starts a [`Command`] with stdin closed and stdout and
//! stderr captured to a log file in a temporary directory, then waits, with a
//! timeout, until the peer is ready ([`Ready`]). Every error names the peer,
//! its PID, the log path and the log's last lines. The process is killed with
//! SIGKILL when the guard is dropped; when that happens while the test is
//! panicking, the log is kept and its tail printed to stderr so the failure
//! shows what the peer said. Set `GLASSWATCH_KEEP_LOGS=1` to keep every log.
//!
//! Signals go to the PID of the spawned process only (not its process group),
//! and only while the child has not been reaped, so a recycled PID is never
//! signalled. It does not restart peers, and knows nothing about any one
//! peer's protocol: wrappers such as [`crate::RtspOrigin`] build on it.

use std::{
    fmt,
    fs::File,
    io::{BufRead as _, BufReader, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

/// How long [`Peer::terminate`] waits after SIGTERM by default.
pub const DEFAULT_TERM_GRACE: Duration = Duration::from_secs(10);

/// Stdout lines kept for [`Peer::wait_for_line`] before newer ones are only
/// logged (they always reach the log file).
const LINE_QUEUE: usize = 1024;

/// Lines of log shown in error messages.
const TAIL_LINES: usize = 40;

/// When a freshly spawned peer counts as ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// As soon as the process has been spawned.
    Spawned,
    /// Once a TCP connection to this address succeeds.
    Tcp(SocketAddr),
    /// Once a stdout line starts with this prefix; the whole line is then
    /// available from [`Peer::ready_line`].
    StdoutLine(String),
}

impl fmt::Display for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ready::Spawned => write!(f, "spawn"),
            Ready::Tcp(addr) => write!(f, "TCP connect to {addr}"),
            Ready::StdoutLine(prefix) => write!(f, "a stdout line starting with {prefix:?}"),
        }
    }
}

/// A running peer process, killed (SIGKILL) on drop.
pub struct Peer {
    name: String,
    child: Child,
    pid: u32,
    status: Option<ExitStatus>,
    log_path: PathBuf,
    log_dir: Option<tempfile::TempDir>,
    lines: Receiver<String>,
    ready_line: Option<String>,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("status", &self.status)
            .field("log_path", &self.log_path)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// Spawns `cmd` as the peer called `name` (used in file names and
    /// messages) and waits up to `timeout` until it is `ready`.
    ///
    /// The command's stdin, stdout and stderr are replaced. If the process
    /// exits or the timeout passes first, it is killed and the error carries
    /// the log tail; the log file is then kept on disk.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        ready: Ready,
        timeout: Duration,
    ) -> anyhow::Result<Peer> {
        let log_dir = tempfile::Builder::new()
            .prefix(&format!("glasswatch-{name}-"))
            .tempdir()
            .context("creating a log directory")?;
        let log_path = log_dir.path().join(format!("{name}.log"));
        let mut log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        writeln!(log, "$ {cmd:?}").with_context(|| format!("writing {}", log_path.display()))?;
        let stderr_log = log
            .try_clone()
            .with_context(|| format!("duplicating {}", log_path.display()))?;

        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr_log));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {name}: {cmd:?}"))?;
        let pid = child.id();

        let (tx, lines) = mpsc::sync_channel(LINE_QUEUE);
        if let Some(stdout) = child.stdout.take() {
            let spawned = thread::Builder::new()
                .name(format!("{name}-stdout"))
                .spawn(move || copy_stdout(stdout, log, tx));
            if let Err(e) = spawned {
                // Kill by PID right away: the guard below does not exist yet.
                let _ = child.kill();
                let _ = child.wait();
                return Err(e).context("spawning the stdout reader thread");
            }
        }

        let mut peer = Peer {
            name: name.to_owned(),
            child,
            pid,
            status: None,
            log_path,
            log_dir: Some(log_dir),
            lines,
            ready_line: None,
        };
        if let Err(e) = peer.wait_ready(&ready, timeout) {
            let _ = peer.kill();
            peer.keep_log();
            return Err(e.context(format!(
                "log {}:\n{}",
                peer.log_path.display(),
                peer.log_tail()
            )));
        }
        Ok(peer)
    }

    fn wait_ready(&mut self, ready: &Ready, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let step = Duration::from_millis(50);
        loop {
            if let Some(status) = self.try_wait()? {
                bail!(
                    "{} (pid {}) exited with {status} before it was ready (waited for {ready})",
                    self.name,
                    self.pid
                );
            }
            let now = Instant::now();
            if now >= deadline {
                bail!(
                    "{} (pid {}) not ready after {timeout:?} (waited for {ready})",
                    self.name,
                    self.pid
                );
            }
            let left = deadline - now;
            match ready {
                Ready::Spawned => return Ok(()),
                Ready::Tcp(addr) => {
                    if TcpStream::connect_timeout(addr, left.min(Duration::from_millis(200)))
                        .is_ok()
                    {
                        return Ok(());
                    }
                    thread::sleep(left.min(step));
                }
                Ready::StdoutLine(prefix) => match self.lines.recv_timeout(left.min(step)) {
                    Ok(line) if line.starts_with(prefix.as_str()) => {
                        self.ready_line = Some(line);
                        return Ok(());
                    }
                    Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        // Stdout closed: the process is exiting; the next
                        // try_wait reports it, so avoid a busy loop until then.
                        thread::sleep(left.min(step));
                    }
                },
            }
        }
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The stdout line that made the peer ready, for [`Ready::StdoutLine`].
    pub fn ready_line(&self) -> Option<&str> {
        self.ready_line.as_deref()
    }

    /// The log file holding the peer's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last lines of the log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path, TAIL_LINES)
    }

    /// Keeps the log file on disk after the guard is dropped.
    pub fn keep_log(&mut self) {
        if let Some(dir) = self.log_dir.take() {
            let _ = dir.keep();
        }
    }

    /// Waits up to `timeout` for the next stdout line starting with `prefix`
    /// (lines printed before readiness that did not match are skipped).
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{} (pid {}): no stdout line starting with {prefix:?} within {timeout:?}; log {}:\n{}",
                    self.name,
                    self.pid,
                    self.log_path.display(),
                    self.log_tail()
                );
            }
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return Ok(line),
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => bail!(
                    "{} (pid {}) closed stdout before printing {prefix:?}; log {}:\n{}",
                    self.name,
                    self.pid,
                    self.log_path.display(),
                    self.log_tail()
                ),
            }
        }
    }

    /// The exit status if the process has exited (it is then reaped).
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .with_context(|| format!("waiting for {} (pid {})", self.name, self.pid))?;
        }
        Ok(self.status)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} (pid {}) still running after {timeout:?}; log {}:\n{}",
                    self.name,
                    self.pid,
                    self.log_path.display(),
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Like [`Peer::wait_timeout`], and fails unless the exit status is success.
    pub fn wait_success(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let status = self.wait_timeout(timeout)?;
        if !status.success() {
            bail!(
                "{} (pid {}) exited with {status}; log {}:\n{}",
                self.name,
                self.pid,
                self.log_path.display(),
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Sends `signal` (a `libc::SIG*` number) to the PID, unless the process
    /// has already been reaped.
    pub fn signal(&mut self, signal: i32) -> anyhow::Result<()> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(self.pid).context("PID out of range")?;
        // SAFETY: kill(2) has no memory effects; the PID is our unreaped child.
        if unsafe { libc::kill(pid, signal) } != 0 {
            let err = std::io::Error::last_os_error();
            // ESRCH: it exited between try_wait and kill; still a zombie to reap.
            if err.raw_os_error() != Some(libc::ESRCH) {
                return Err(err)
                    .with_context(|| format!("kill({pid}, {signal}) for {}", self.name));
            }
        }
        Ok(())
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        self.signal(libc::SIGKILL)?;
        self.wait_timeout(Duration::from_secs(10))
    }

    /// Sends SIGTERM and waits up to `grace` for the process to exit. If it
    /// does not, it is killed with SIGKILL and an error says so.
    pub fn terminate(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        self.signal(libc::SIGTERM)?;
        match self.wait_timeout(grace) {
            Ok(status) => Ok(status),
            Err(e) => {
                self.kill()?;
                Err(e.context(format!(
                    "{} (pid {}) ignored SIGTERM for {grace:?}; killed",
                    self.name, self.pid
                )))
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.kill();
        if thread::panicking() || std::env::var_os("GLASSWATCH_KEEP_LOGS").is_some() {
            self.keep_log();
        }
        if thread::panicking() {
            // A test is failing: show what the peer said.
            eprintln!(
                "--- {} (pid {}) log kept at {} ---\n{}",
                self.name,
                self.pid,
                self.log_path.display(),
                self.log_tail()
            );
        }
    }
}

/// Copies the child's stdout into the log and queues each line.
fn copy_stdout(stdout: impl std::io::Read, mut log: File, tx: SyncSender<String>) {
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let _ = log.write_all(&buf);
                let line = String::from_utf8_lossy(&buf);
                // A full queue only drops the line from the queue, not from the log.
                let _ = tx.try_send(line.trim_end_matches(['\r', '\n']).to_owned());
            }
        }
    }
}

/// The last `lines` lines of the file at `path` (at most 16 KiB).
pub fn log_tail(path: &Path, lines: usize) -> String {
    const MAX_BYTES: usize = 16 * 1024;
    let data = match std::fs::read(path) {
        Ok(data) => data,
        Err(e) => return format!("(cannot read {}: {e})", path.display()),
    };
    let start = data.len().saturating_sub(MAX_BYTES);
    let text = String::from_utf8_lossy(&data[start..]);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Removes the log directory a failed spawn kept, named in its error.
    fn remove_kept_log(msg: &str) {
        let start = msg.find("log /").expect("error names the log") + 4;
        let end = start + msg[start..].find(".log:").expect("log path ends") + 4;
        let dir = Path::new(&msg[start..end]).parent().unwrap();
        assert!(dir.join("sh-fails.log").exists() || dir.join("sh-silent.log").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        cmd
    }

    #[test]
    fn ready_on_stdout_line_and_killed_by_pid() {
        let mut peer = Peer::spawn(
            "sh-ready",
            sh("echo starting; echo READY port=7; exec sleep 30"),
            Ready::StdoutLine("READY".into()),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(peer.ready_line(), Some("READY port=7"));
        assert!(peer.is_running());
        let status = peer.kill().unwrap();
        assert!(!status.success());
        assert!(!peer.is_running());
        assert!(peer.log_tail().contains("starting"));
    }

    #[test]
    fn exit_before_ready_reports_the_log_tail() {
        let err = Peer::spawn(
            "sh-fails",
            sh("echo 'something went wrong' >&2; exit 3"),
            Ready::StdoutLine("READY".into()),
            Duration::from_secs(10),
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("exited with"), "{msg}");
        assert!(msg.contains("something went wrong"), "{msg}");
        remove_kept_log(&msg);
    }

    #[test]
    fn readiness_times_out() {
        let started = Instant::now();
        let err = Peer::spawn(
            "sh-silent",
            sh("exec sleep 30"),
            Ready::StdoutLine("READY".into()),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        let msg = format!("{err:#}");
        assert!(msg.contains("not ready after"), "{msg}");
        remove_kept_log(&msg);
    }

    #[test]
    fn ready_on_tcp_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = Peer::spawn(
            "sh-tcp",
            sh("exec sleep 30"),
            Ready::Tcp(addr),
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(peer.pid() > 0);
    }

    #[test]
    fn terminate_sends_sigterm() {
        let mut peer = Peer::spawn(
            "sh-term",
            sh("trap 'echo got TERM; exit 0' TERM; echo READY; while :; do sleep 0.05; done"),
            Ready::StdoutLine("READY".into()),
            Duration::from_secs(10),
        )
        .unwrap();
        let status = peer.terminate(Duration::from_secs(5)).unwrap();
        assert!(status.success(), "{status}");
        assert!(peer.log_tail().contains("got TERM"));
    }
}
