//! Debian's headless Chromium as a peer, driven over WebDriver by
//! `chromedriver` on a free 127.0.0.1 port (started and stopped by PID as a
//! [`Peer`]). The WebDriver calls are plain HTTP/1.1 with JSON bodies over a
//! `TcpStream`, each with a timeout; no browser-automation crate is needed.
//!
//! Chromium runs with `--headless --no-sandbox --disable-gpu
//! --disable-background-networking --disable-component-update
//! --disable-sync --no-first-run` and a fresh profile in a temp dir, so it
//! talks to nothing but the pages a test opens.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::peer::{Peer, Ready};
use crate::ports::free_port;
use crate::require::{find_program, require};

/// Longest a single WebDriver call may take (navigation included).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The Chromium binary and chromedriver, if both are installed.
pub fn programs() -> Option<(PathBuf, PathBuf)> {
    let browser = find_program("chromium").or_else(|| find_program("chromium-browser"))?;
    let driver = find_program("chromedriver")?;
    Some((browser, driver))
}

/// The missing-component policy for Chromium and chromedriver (under
/// `CI=true` a missing one fails the test).
pub fn require_chromium() -> bool {
    require("chromium + chromedriver", || {
        programs().map(|_| ()).ok_or_else(|| {
            "install them with `apt-get install chromium chromium-driver` \
             (scripts/install-deps.sh does)"
                .to_owned()
        })
    })
}

/// A browser session; the session is deleted and chromedriver killed on drop.
#[derive(Debug)]
pub struct Chromium {
    driver: Peer,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// Starts chromedriver and a headless Chromium session with a window of
    /// `width`×`height` CSS pixels.
    pub fn start(width: u32, height: u32) -> anyhow::Result<Chromium> {
        let (browser, driver) = programs().context("chromium or chromedriver is not installed")?;
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = Command::new(driver);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg("--log-level=WARNING");
        let driver = Peer::spawn(
            "chromedriver",
            cmd,
            Ready::Tcp(addr),
            Duration::from_secs(20),
        )?;
        let profile = tempfile::Builder::new()
            .prefix("glasswatch-chromium-")
            .tempdir()
            .context("creating a Chromium profile directory")?;
        let caps = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": browser,
                    "args": [
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        "--no-first-run",
                        "--disable-dev-shm-usage",
                        "--autoplay-policy=no-user-gesture-required",
                        format!("--window-size={width},{height}"),
                        format!("--user-data-dir={}", profile.path().display()),
                    ],
                },
            }},
        });
        let mut c = Chromium {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        let v = c.call("POST", "/session", Some(&caps))?;
        c.session = v["sessionId"]
            .as_str()
            .context("WebDriver gave no sessionId")?
            .to_owned();
        Ok(c)
    }

    /// One WebDriver request; returns its `value`.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .context("connecting to chromedriver")?;
        s.set_read_timeout(Some(CALL_TIMEOUT))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )?;
        // chromedriver may keep the connection open: read the header, then
        // exactly Content-Length bytes (or chunks up to the last one).
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let (head, body_start) = loop {
            let n = s
                .read(&mut buf)
                .with_context(|| format!("reading chromedriver's answer to {method} {path}"))?;
            if n == 0 {
                bail!("chromedriver closed the connection during {method} {path}");
            }
            raw.extend_from_slice(&buf[..n]);
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break (String::from_utf8_lossy(&raw[..i]).into_owned(), i + 4);
            }
        };
        let lower = head.to_ascii_lowercase();
        let length: Option<usize> = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok());
        let chunked = lower.contains("transfer-encoding: chunked");
        loop {
            let have = raw.len() - body_start;
            let done = match length {
                Some(len) => have >= len,
                None if chunked => raw.ends_with(b"0\r\n\r\n"),
                None => false,
            };
            if done {
                break;
            }
            let n = s
                .read(&mut buf)
                .with_context(|| format!("reading chromedriver's answer to {method} {path}"))?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
        }
        let response = crate::http::parse_response(&raw)
            .with_context(|| format!("chromedriver's answer to {method} {path}"))?;
        let status = response.status;
        let payload = response.text();
        let v: Value = serde_json::from_str(&payload)
            .with_context(|| format!("chromedriver's answer is not JSON: {payload:.200}"))?;
        if status != 200 {
            bail!(
                "WebDriver {method} {path}: {status} {}",
                v["value"]["message"].as_str().unwrap_or(&payload)
            );
        }
        Ok(v["value"].clone())
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url` (waits for the load event).
    pub fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(&json!({ "url": url })),
        )
        .map(|_| ())
    }

    /// The current URL.
    pub fn url(&self) -> anyhow::Result<String> {
        let v = self.call("GET", &self.session_path("/url"), None)?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns
    /// what it returns.
    pub fn execute(&self, script: &str, args: &[Value]) -> anyhow::Result<Value> {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Polls `script` until it returns something truthy, or fails after `timeout`.
    pub fn wait_for(&self, script: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.execute(script, &[])?;
            let truthy =
                !matches!(v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                bail!("timed out after {timeout:?} waiting for `{script}`");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Types `text` into the element `css` selects.
    pub fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let id = self.element(css)?;
        self.call(
            "POST",
            &self.session_path(&format!("/element/{id}/value")),
            Some(&json!({ "text": text })),
        )
        .map(|_| ())
    }

    /// Clicks the element `css` selects.
    pub fn click(&self, css: &str) -> anyhow::Result<()> {
        let id = self.element(css)?;
        self.call(
            "POST",
            &self.session_path(&format!("/element/{id}/click")),
            Some(&json!({})),
        )
        .map(|_| ())
    }

    fn element(&self, css: &str) -> anyhow::Result<String> {
        let v = self.call(
            "POST",
            &self.session_path("/element"),
            Some(&json!({ "using": "css selector", "value": css })),
        )?;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("no element {css}"))
    }

    /// Writes a PNG screenshot of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let v = self.call("GET", &self.session_path("/screenshot"), None)?;
        let png = base64_decode(v.as_str().context("screenshot is not a string")?)
            .context("screenshot is not base64")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }

    /// chromedriver's log so far.
    pub fn log_tail(&self) -> String {
        self.driver.log_tail()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // Deleting the session makes chromedriver close Chromium; the
        // driver itself is killed by PID when `driver` drops.
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &self.session_path(""), None);
        }
    }
}

/// Standard base64 (with padding), as WebDriver sends screenshots.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        let mut k = 0;
        for &c in chunk {
            if c == b'=' {
                break;
            }
            n = (n << 6) | val(c)?;
            k += 1;
        }
        n <<= 6 * (4 - k);
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..k.max(1)]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
    }
}
