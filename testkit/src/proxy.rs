//! [`DelayProxy`]: an in-process HTTP/1.1 reverse proxy on 127.0.0.1 that
//! holds every media response back by a set delay, for the collector's truth
//! test (the measured glass-to-HLS latency must rise by that delay).
//!
//! ```text
//!  reader ──GET /x?q──▶ DelayProxy (127.0.0.1:0, own tokio thread) ──GET {upstream}/x?q──▶ origin
//!         ◀── status, headers, body ── [body complete] ── .m3u8: at once; anything else: after D ──┘
//! ```
//!
//! Every GET is forwarded with its path and query intact and its request
//! headers (hop-by-hop ones dropped); the answer keeps its status and
//! headers, and an absolute `Location` pointing at the upstream is rewritten
//! to point at the proxy (relative ones are left alone). A response whose
//! path ends in `.m3u8` (playlists, blocking reloads included) is passed on
//! as soon as its body is complete; any other (init sections, parts,
//! segments) is held for the delay after its body is complete, then sent in
//! one piece. Redirects are not followed. Other methods answer 405.
//!
//! The proxy runs on its own thread with its own runtime, so synchronous
//! tests can use it; dropping it stops the server and joins the thread.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{ensure, Context as _};
use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri},
    response::Response,
    Router,
};
use tokio::sync::oneshot;

/// How long one upstream exchange may take (blocking reloads included).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// A running delay proxy; stopped on drop.
#[derive(Debug)]
pub struct DelayProxy {
    addr: SocketAddr,
    upstream: String,
    delay_us: Arc<AtomicU64>,
    fault_every: Arc<AtomicU64>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    upstream: String,
    /// `scheme://host:port` of the upstream, for `Location` rewriting.
    upstream_origin: String,
    own_origin: String,
    delay_us: Arc<AtomicU64>,
    /// Mangle every n-th playlist and every n-th media response (0: none).
    fault_every: Arc<AtomicU64>,
    playlists: AtomicU64,
    media: AtomicU64,
    client: reqwest::Client,
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1),
/// plus the ones the proxy sets itself.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

fn origin_of(url: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    match url[scheme_end..].find('/') {
        Some(i) => url[..scheme_end + i].to_owned(),
        None => url.to_owned(),
    }
}

impl DelayProxy {
    /// Starts a proxy in front of `upstream` (`http://host:port`, optionally
    /// with a path prefix every request path is appended to) that holds
    /// media responses back by `delay`.
    pub fn start(upstream: &str, delay: Duration) -> anyhow::Result<DelayProxy> {
        ensure!(
            upstream.starts_with("http://") || upstream.starts_with("https://"),
            "upstream {upstream:?} is not an http(s) URL"
        );
        let upstream = upstream.trim_end_matches('/').to_owned();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("binding the proxy on 127.0.0.1:0")?;
        let addr = listener.local_addr().context("reading the proxy address")?;
        listener
            .set_nonblocking(true)
            .context("making the proxy socket non-blocking")?;
        // reqwest uses rustls without a built-in provider; plain HTTP never
        // touches it, but building a client needs one installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(UPSTREAM_TIMEOUT)
            .build()
            .context("building the proxy's HTTP client")?;
        let delay_us = Arc::new(AtomicU64::new(
            u64::try_from(delay.as_micros()).unwrap_or(u64::MAX),
        ));
        let fault_every = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(Shared {
            upstream_origin: origin_of(&upstream),
            upstream: upstream.clone(),
            own_origin: format!("http://{addr}"),
            delay_us: delay_us.clone(),
            fault_every: fault_every.clone(),
            playlists: AtomicU64::new(0),
            media: AtomicU64::new(0),
            client,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the proxy's runtime")?;
        let (shutdown, stop) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let thread = std::thread::Builder::new()
            .name(format!("delay-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e).context("registering the proxy socket"));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let app = Router::new().fallback(forward).with_state(shared);
                    let served = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stop.await;
                        })
                        .await;
                    if let Err(e) = served {
                        tracing::error!("delay proxy on {addr} failed: {e}");
                    }
                });
            })
            .context("spawning the proxy thread")?;
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .context("the proxy thread did not start")??;
        tracing::debug!(%addr, upstream, ?delay, "delay proxy started");
        Ok(DelayProxy {
            addr,
            upstream,
            delay_us,
            fault_every,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:{port}`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The proxy URL for `path_and_query` (starting with `/`).
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base_url())
    }

    /// The proxy URL standing for `upstream_url` (which must start with the
    /// upstream base), e.g. an origin's `hls_url`.
    pub fn proxied(&self, upstream_url: &str) -> anyhow::Result<String> {
        let rest = upstream_url.strip_prefix(&self.upstream).with_context(|| {
            format!(
                "{upstream_url:?} is not under the upstream {:?}",
                self.upstream
            )
        })?;
        Ok(self.url(rest))
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The current delay of media responses.
    pub fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_us.load(Ordering::Relaxed))
    }

    /// From now on, mangles every `n`-th successful playlist response and
    /// every `n`-th successful media response (0 turns it off), cycling
    /// through the kinds of damage in [`mangle`]: bad input for the reader.
    pub fn set_fault_every(&self, n: u64) {
        self.fault_every.store(n, Ordering::Relaxed);
    }

    /// Changes the delay for responses whose upstream body completes from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_us.store(
            u64::try_from(delay.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Graceful shutdown waits for open connections; a held blocking
            // reload ends with its upstream timeout at the latest.
            let _ = thread.join();
        }
    }
}

fn plain(status: StatusCode, text: String) -> Response {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r
}

async fn forward(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET {
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("the delay proxy forwards GET only, not {method}"),
        );
    }
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path_and_query}", shared.upstream);
    let mut request = shared.client.get(&url);
    for (name, value) in &headers {
        if !is_hop_by_hop(name) {
            request = request.header(name, value);
        }
    }
    let upstream = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            return plain(
                StatusCode::BAD_GATEWAY,
                format!("delay proxy: GET {url}: {e}"),
            )
        }
    };
    let status = upstream.status();
    let upstream_headers = upstream.headers().clone();
    let body = match upstream.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return plain(
                StatusCode::BAD_GATEWAY,
                format!("delay proxy: reading GET {url}: {e}"),
            )
        }
    };
    let playlist = uri.path().ends_with(".m3u8");
    let every = shared.fault_every.load(Ordering::Relaxed);
    let body = if every > 0 && status.is_success() {
        let counter = if playlist {
            &shared.playlists
        } else {
            &shared.media
        };
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        if n % every == 0 {
            let mangled = mangle(uri.path(), &body, n / every);
            tracing::debug!(path = uri.path(), "delay proxy: mangled the response");
            axum::body::Bytes::from(mangled)
        } else {
            body
        }
    } else {
        body
    };
    if !playlist {
        let delay = Duration::from_micros(shared.delay_us.load(Ordering::Relaxed));
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    for (name, value) in &upstream_headers {
        if is_hop_by_hop(name) {
            continue;
        }
        let value = if name == header::LOCATION {
            rewrite_location(&shared.upstream_origin, &shared.own_origin, value)
        } else {
            value.clone()
        };
        response.headers_mut().append(name.clone(), value);
    }
    response
}

/// Damages a response body the way broken origins and networks do; `round`
/// picks the kind. Playlists: cut in the middle of a line, or a tag with a
/// garbage attribute. MPEG-TS: bytes inserted so packets lose sync, or cut
/// short. fMP4: the first box claims an absurd size, or the body is cut.
pub fn mangle(path: &str, body: &[u8], round: u64) -> Vec<u8> {
    let mut out = body.to_vec();
    if path.ends_with(".m3u8") {
        if round % 2 == 0 {
            out.truncate(body.len() / 2);
        } else {
            out = b"#EXTM3U\n#EXT-X-TARGETDURATION:nope\n#EXT-X-PART:DURATION=,URI=\n\xff\xfe\n"
                .to_vec();
        }
    } else if path.ends_with(".ts") {
        if round % 2 == 0 {
            let at = (188 * 3 + 5).min(out.len());
            out.splice(at..at, [0x47u8, 0x00, 0xff, 0x12, 0x47, 0x47, 0x01]);
        } else {
            out.truncate(body.len() / 3);
        }
    } else if round % 2 == 0 && out.len() >= 4 {
        out[..4].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
    } else {
        out.truncate(body.len() / 2);
    }
    out
}

/// An absolute `Location` on the upstream becomes the same path on the proxy.
fn rewrite_location(upstream_origin: &str, own_origin: &str, value: &HeaderValue) -> HeaderValue {
    let Ok(text) = value.to_str() else {
        return value.clone();
    };
    match text.strip_prefix(upstream_origin) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') => {
            HeaderValue::from_str(&format!("{own_origin}{rest}")).unwrap_or_else(|_| value.clone())
        }
        _ => value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_locations() {
        assert_eq!(origin_of("http://127.0.0.1:5/a/b"), "http://127.0.0.1:5");
        assert_eq!(origin_of("http://127.0.0.1:5"), "http://127.0.0.1:5");
        let loc = |s: &'static str| {
            rewrite_location(
                "http://127.0.0.1:5",
                "http://127.0.0.1:6",
                &HeaderValue::from_static(s),
            )
        };
        assert_eq!(loc("http://127.0.0.1:5/x?y=1"), "http://127.0.0.1:6/x?y=1");
        assert_eq!(loc("/x?y=1"), "/x?y=1");
        assert_eq!(loc("http://127.0.0.1:55/x"), "http://127.0.0.1:55/x");
        assert_eq!(loc("http://other/x"), "http://other/x");
    }
}
