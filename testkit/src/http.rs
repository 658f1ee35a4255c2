//! A minimal blocking HTTP/1.1 GET for tests on 127.0.0.1: one connection
//! per request (`Connection: close`), the whole body read, chunked transfer
//! decoded, redirects not followed. It lets a synchronous test look at an
//! origin's status codes, headers and timing without an async runtime.

use std::{
    io::{Read as _, Write as _},
    net::{TcpStream, ToSocketAddrs as _},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _};

/// Responses larger than this are refused (test media are small).
const MAX_RESPONSE: usize = 64 << 20;

/// One HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case, in order, repeated names kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// From sending the request to the last body byte.
    pub elapsed: Duration,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Splits `http://host:port/path?query` into the address and the request target.
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url:?} is not an http:// URL"))?;
    let (authority, target) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    ensure!(!authority.is_empty(), "{url:?} has no host");
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, target.to_owned()))
}

/// GETs `url` (plain `http://`), failing after `timeout` in all.
pub fn get(url: &str, timeout: Duration) -> anyhow::Result<HttpResponse> {
    get_with_headers(url, &[], timeout)
}

/// GETs `url` with a 20 s limit and returns what most tests look at:
/// (status, body as text, time from request to last byte).
pub fn get_text(url: &str) -> anyhow::Result<(u16, String, Duration)> {
    let r = get(url, Duration::from_secs(20))?;
    Ok((r.status, r.text(), r.elapsed))
}

/// GETs `url` with extra request headers.
pub fn get_with_headers(
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> anyhow::Result<HttpResponse> {
    let (authority, target) = split_url(url)?;
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} resolves to nothing"))?;
    let started = Instant::now();
    let deadline = started + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr} for GET {url}"))?;
    stream.set_nodelay(true).ok();
    let mut request =
        format!("GET {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .with_context(|| format!("sending GET {url}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("GET {url}: no complete response within {timeout:?}");
        }
        stream.set_read_timeout(Some(left)).ok();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                ensure!(raw.len() <= MAX_RESPONSE, "GET {url}: response too large");
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                bail!("GET {url}: no complete response within {timeout:?}")
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).with_context(|| format!("reading the response to GET {url}")),
        }
    }
    let elapsed = started.elapsed();
    let mut response =
        parse_response(&raw).with_context(|| format!("parsing the response to GET {url}"))?;
    response.elapsed = elapsed;
    Ok(response)
}

/// Parses a complete response (head and body up to the connection's end).
pub fn parse_response(raw: &[u8]) -> anyhow::Result<HttpResponse> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of header in the response")?;
    let head = std::str::from_utf8(&raw[..head_end]).context("header is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[head_end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    } else if let Some((_, len)) = headers.iter().find(|(k, _)| k == "content-length") {
        let len: usize = len.parse().context("bad content-length")?;
        ensure!(
            body.len() >= len,
            "body cut short: {} of {len} bytes",
            body.len()
        );
        body.truncate(len);
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
        elapsed: Duration::ZERO,
    })
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size line not terminated")?;
        let size_text = std::str::from_utf8(&data[..line_end]).context("chunk size not UTF-8")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data.get(..size).context("chunk cut short")?;
        out.extend_from_slice(chunk);
        data = data.get(size + 2..).context("chunk not terminated")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_bodies() {
        let r =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabc").unwrap();
        assert_eq!((r.status, r.text()), (200, "abc".to_owned()));
        assert_eq!(r.header("x-a"), Some("b"));
        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.text()), (404, "abcde".to_owned()));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab").is_err());
    }

    #[test]
    fn splits_urls() {
        assert_eq!(
            split_url("http://127.0.0.1:8/a/b?c=d").unwrap(),
            ("127.0.0.1:8".to_owned(), "/a/b?c=d".to_owned())
        );
        assert_eq!(
            split_url("http://localhost").unwrap(),
            ("localhost:80".to_owned(), "/".to_owned())
        );
        assert!(split_url("https://x/").is_err());
    }
}
