//! The dashboard's HLS proxy: `GET /hls/{device}/{stream}/{*rest}` reads
//! `rest` under the directory of the stream's own playlist URL (the one the
//! hub reads: the `[[stream]]` override, or the advertised `hls_url` the
//! allow-list permitted), so a viewer needs to reach only the collector.
//!
//! - The upstream URL is built from the hub's URL and `rest`, never taken
//!   from the request: `rest` is plain path segments (no `..`, `.`, empty
//!   segments, `%` or `:`), and the result must stay under the stream's
//!   base (same scheme, host, port, path prefix) and pass `[hls] allow`.
//! - Redirects (MediaMTX's session redirect) are followed here, at most 5,
//!   each checked the same way; the session query they add ends up in the
//!   playlists' URIs, which are rewritten onto `/hls/{device}/{stream}/…`,
//!   so the browser sends it back and it is passed on.
//! - LL-HLS blocking reloads (`_HLS_msn`, `_HLS_part`) are passed on as
//!   they are and held as long as the origin holds them; parts and
//!   segments are streamed chunk by chunk as they arrive, never buffered
//!   whole. Playlists (small) are read whole to be rewritten.

use std::sync::{Arc, OnceLock, PoisonError};
use std::time::Duration;

use axum::{
    body::{Body, Bytes},
    extract::{Path, State},
    http::{header, HeaderValue, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use glasswatch_common::topics::valid_id;
use reqwest::Url;

use crate::allow::AllowList;
use crate::api::{ApiError, AppState};

/// Longest `rest` and query accepted.
const MAX_REST: usize = 256;
const MAX_QUERY: usize = 1_024;
/// Largest playlist read (MediaMTX's are a few kB).
const MAX_PLAYLIST: usize = 1 << 20;
/// Most redirects followed.
const MAX_REDIRECTS: usize = 5;
/// The longest an upstream request may take, body included (a blocking
/// reload waits at most three target durations at the origin).
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request is not proxied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("the collector knows no such stream (or reads it from nowhere)")]
    UnknownStream,
    #[error("not a path under the stream's playlist: {0}")]
    Escape(String),
    #[error("refused by [hls] allow: {0}")]
    NotAllowed(String),
    #[error("the origin failed: {0}")]
    Upstream(String),
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let status = match self {
            ProxyError::UnknownStream => StatusCode::NOT_FOUND,
            ProxyError::Escape(_) => StatusCode::BAD_REQUEST,
            ProxyError::NotAllowed(_) => StatusCode::FORBIDDEN,
            ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
        };
        ApiError::new(status, self.to_string()).into_response()
    }
}

/// The stream's base: its playlist URL's directory.
#[derive(Debug, Clone)]
pub struct Base {
    url: Url,
}

impl Base {
    /// The base of the playlist at `playlist`.
    pub fn new(playlist: &str) -> Result<Base, ProxyError> {
        let mut url = Url::parse(playlist)
            .map_err(|_| ProxyError::Escape("the stream's URL does not parse".into()))?;
        url.set_query(None);
        url.set_fragment(None);
        let url = url
            .join("./")
            .map_err(|_| ProxyError::Escape("the stream's URL has no directory".into()))?;
        Ok(Base { url })
    }

    /// Whether `u` lies under the base.
    pub fn contains(&self, u: &Url) -> bool {
        u.scheme() == self.url.scheme()
            && u.host_str() == self.url.host_str()
            && u.port_or_known_default() == self.url.port_or_known_default()
            && u.username().is_empty()
            && u.password().is_none()
            && u.path().starts_with(self.url.path())
    }

    /// The upstream URL for `rest` and the request's query.
    pub fn target(&self, rest: &str, query: Option<&str>) -> Result<Url, ProxyError> {
        let ok_segment = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~'))
        };
        if rest.len() > MAX_REST || !rest.split('/').all(ok_segment) {
            return Err(ProxyError::Escape(rest.chars().take(80).collect()));
        }
        let mut url = self
            .url
            .join(rest)
            .map_err(|_| ProxyError::Escape(rest.chars().take(80).collect()))?;
        match query {
            Some(q) if !q.is_empty() => {
                let ok = q.len() <= MAX_QUERY
                    && q.bytes().all(|b| {
                        b.is_ascii_alphanumeric()
                            || matches!(b, b'.' | b'_' | b'-' | b'~' | b'=' | b'&' | b'%')
                    });
                if !ok {
                    return Err(ProxyError::Escape("query".into()));
                }
                url.set_query(Some(q));
            }
            _ => url.set_query(None),
        }
        if !self.contains(&url) {
            return Err(ProxyError::Escape(rest.chars().take(80).collect()));
        }
        Ok(url)
    }

    /// `uri` (from a playlist fetched at `at`) on the proxy, or `None` when
    /// it leads outside the base.
    pub fn proxied(&self, at: &Url, uri: &str, prefix: &str) -> Option<String> {
        let abs = at.join(uri).ok()?;
        if !self.contains(&abs) {
            return None;
        }
        let rel = abs.path().get(self.url.path().len()..)?;
        Some(match abs.query() {
            Some(q) => format!("{prefix}{rel}?{q}"),
            None => format!("{prefix}{rel}"),
        })
    }
}

/// Rewrites every URI of a playlist fetched at `at` onto `prefix`
/// (`/hls/{device}/{stream}/`): URI lines and `URI="…"` attributes. A URI
/// leading outside the base becomes `{prefix}refused`, which the proxy
/// refuses.
pub fn rewrite(text: &str, base: &Base, at: &Url, prefix: &str) -> String {
    let map = |uri: &str| {
        base.proxied(at, uri, prefix)
            .unwrap_or_else(|| format!("{prefix}refused"))
    };
    let mut out = String::with_capacity(text.len() + 256);
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() {
            out.push_str(line);
        } else if !t.starts_with('#') {
            out.push_str(&map(t));
        } else {
            let mut rest = line;
            while let Some(i) = rest.find("URI=\"") {
                let (head, tail) = rest.split_at(i + 5);
                out.push_str(head);
                match tail.find('"') {
                    Some(end) => {
                        out.push_str(&map(&tail[..end]));
                        rest = &tail[end..];
                    }
                    None => {
                        rest = tail;
                        break;
                    }
                }
            }
            out.push_str(rest);
        }
        out.push('\n');
    }
    out
}

/// The proxy's HTTP client: no automatic redirects (each is checked
/// here), and names never resolve to addresses the collector never fetches.
fn client() -> Result<&'static reqwest::Client, ProxyError> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .dns_resolver(Arc::new(crate::allow::GuardedResolver))
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(5))
                .pool_idle_timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| ProxyError::Upstream(format!("HTTP client: {e}")))
}

fn is_playlist(url: &Url, content_type: Option<&HeaderValue>) -> bool {
    url.path().ends_with(".m3u8")
        || content_type
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.to_ascii_lowercase().contains("mpegurl"))
}

/// GETs `url`, following redirects that stay under the base and pass
/// the allow-list; returns the final URL and response.
async fn fetch(
    mut url: Url,
    base: &Base,
    allow: Option<&AllowList>,
) -> Result<(Url, reqwest::Response), ProxyError> {
    let client = client()?;
    for _ in 0..=MAX_REDIRECTS {
        if let Some(a) = allow {
            a.check(url.as_str())
                .map_err(|e| ProxyError::NotAllowed(e.to_string()))?;
        }
        let resp = client
            .get(url.clone())
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| ProxyError::Upstream(e.without_url().to_string()))?;
        if !resp.status().is_redirection() {
            return Ok((url, resp));
        }
        let next = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| url.join(l).ok())
            .ok_or_else(|| ProxyError::Upstream("a redirect without a usable Location".into()))?;
        if !base.contains(&next) {
            return Err(ProxyError::Escape(
                "the origin redirected outside the stream".into(),
            ));
        }
        url = next;
    }
    Err(ProxyError::Upstream("too many redirects".into()))
}

/// `GET /hls/{device}/{stream}/{*rest}`.
pub async fn proxy(
    State(state): State<AppState>,
    Path((device, stream, rest)): Path<(String, String, String)>,
    uri: Uri,
) -> Response {
    match serve(&state, &device, &stream, &rest, uri.query()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(device, stream, "HLS proxy: {e}");
            e.into_response()
        }
    }
}

async fn serve(
    state: &AppState,
    device: &str,
    stream: &str,
    rest: &str,
    query: Option<&str>,
) -> Result<Response, ProxyError> {
    if !valid_id(device) || !valid_id(stream) {
        return Err(ProxyError::UnknownStream);
    }
    let (playlist, allow) = {
        let hub = state.hub.lock().unwrap_or_else(PoisonError::into_inner);
        (hub.stream_url(device, stream), hub.allow())
    };
    let playlist = playlist.ok_or(ProxyError::UnknownStream)?;
    let base = Base::new(&playlist)?;
    let url = base.target(rest, query)?;
    let (at, resp) = fetch(url, &base, allow.as_deref()).await?;
    let status = resp.status();
    let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
    if status.is_success() && is_playlist(&at, content_type.as_ref()) {
        let mut resp = resp;
        let mut text = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ProxyError::Upstream(e.without_url().to_string()))?
        {
            if text.len() + chunk.len() > MAX_PLAYLIST {
                return Err(ProxyError::Upstream("playlist larger than 1 MiB".into()));
            }
            text.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(text)
            .map_err(|_| ProxyError::Upstream("playlist is not UTF-8".into()))?;
        let prefix = format!("/hls/{device}/{stream}/");
        let body = rewrite(&text, &base, &at, &prefix);
        return Ok((
            [
                (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response());
    }
    let length = resp.headers().get(header::CONTENT_LENGTH).cloned();
    // Streamed as it arrives: a part held by the origin flows through.
    let body = Body::from_stream(futures_util::stream::unfold(Some(resp), |r| async move {
        let mut r = r?;
        match r.chunk().await {
            Ok(Some(b)) => Some((Ok::<Bytes, std::io::Error>(b), Some(r))),
            Ok(None) => None,
            Err(e) => Some((Err(std::io::Error::other(e.without_url())), None)),
        }
    }));
    let mut out = Response::builder().status(status.as_u16());
    if let Some(t) = content_type {
        out = out.header(header::CONTENT_TYPE, t);
    }
    if let Some(l) = length {
        out = out.header(header::CONTENT_LENGTH, l);
    }
    out.header(header::CACHE_CONTROL, "private, max-age=60")
        .body(body)
        .map_err(|e| ProxyError::Upstream(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_stay_under_the_base() {
        let b = Base::new("http://127.0.0.1:8888/cam/index.m3u8?x=1").unwrap();
        assert_eq!(
            b.target("stream.m3u8", Some("_HLS_msn=5&_HLS_part=1&session=ab-12"))
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8888/cam/stream.m3u8?_HLS_msn=5&_HLS_part=1&session=ab-12"
        );
        for bad in [
            "../other/index.m3u8",
            "a/../../x",
            "./x",
            "",
            "a//b",
            "%2e%2e/x",
            "http:x",
            "x?y",
            "\\..\\x",
        ] {
            assert!(b.target(bad, None).is_err(), "{bad}");
        }
        assert!(b.target("x.mp4", Some("a=b c")).is_err());
        let outside = Url::parse("http://127.0.0.1:8889/cam/x.mp4").unwrap();
        assert!(!b.contains(&outside));
        let other = Url::parse("http://10.0.0.1:8888/cam/x.mp4").unwrap();
        assert!(!b.contains(&other));
    }

    #[test]
    fn playlists_are_rewritten_onto_the_proxy() {
        let b = Base::new("http://127.0.0.1:8888/cam/index.m3u8").unwrap();
        let at = Url::parse("http://127.0.0.1:8888/cam/stream.m3u8?session=s1").unwrap();
        let text = "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4?session=s1\"\n\
            #EXT-X-PART:DURATION=0.1,URI=\"p1.mp4?session=s1\",INDEPENDENT=YES\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p2.mp4?session=s1\"\n\
            seg1.mp4?session=s1\nhttp://evil.example/x.mp4\n/other/x.mp4\n";
        let out = rewrite(text, &b, &at, "/hls/d/s/");
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-MAP:URI=\"/hls/d/s/init.mp4?session=s1\"\n\
            #EXT-X-PART:DURATION=0.1,URI=\"/hls/d/s/p1.mp4?session=s1\",INDEPENDENT=YES\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"/hls/d/s/p2.mp4?session=s1\"\n\
            /hls/d/s/seg1.mp4?session=s1\n/hls/d/s/refused\n/hls/d/s/refused\n"
        );
    }
}
