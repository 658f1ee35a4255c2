//! Running a one-shot tool (ffmpeg, ffprobe, gst-inspect) to completion with
//! a time limit, keeping its output for error messages.

use std::{
    process::{Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

/// Runs `cmd` with stdin closed, captures stdout and stderr, and kills it
/// (SIGKILL) if it has not exited after `timeout`. Returns the output
/// whatever the exit status; a timeout is an error carrying stderr.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> anyhow::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {cmd:?}"))?;
    let stdout = child.stdout.take().map(read_in_thread);
    let stderr = child.stderr.take().map(read_in_thread);
    let deadline = Instant::now() + timeout;
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait().context("waiting for child")? {
            break (status, false);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break (child.wait().context("reaping killed child")?, true);
        }
        thread::sleep(Duration::from_millis(20));
    };
    let join =
        |h: Option<thread::JoinHandle<Vec<u8>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
    let output = Output {
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    };
    if timed_out {
        bail!(
            "{cmd:?} did not finish within {timeout:?}; stderr:\n{}",
            tail(&output.stderr)
        );
    }
    Ok(output)
}

/// The last 4 KiB of a tool's output, as text.
pub fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(4096);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

fn read_in_thread(mut r: impl std::io::Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let out = run_with_timeout(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 2"]),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn kills_on_timeout() {
        let started = Instant::now();
        let err = run_with_timeout(
            Command::new("sh").args(["-c", "echo waiting >&2; exec sleep 30"]),
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(format!("{err}").contains("waiting"));
    }
}
