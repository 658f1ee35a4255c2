//! Login, roles, CSRF, tokens, rate limiting and TLS on the collector's
//! real HTTP side (the router served on 127.0.0.1, asked with a real
//! HTTP client). Every route of the router's table is asked anonymously,
//! so a route added without a guard fails here.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use glasswatch_collector::api::{routes, Access, AppState, RouteInfo};
use glasswatch_collector::auth::{self, Auth, Role, Settings, User};
use glasswatch_collector::hub::{self, Hub};
use glasswatch_collector::store::rollup::Ages;
use glasswatch_collector::store::Storage;
use reqwest::{header, Method, StatusCode};
use support::client;

struct Server {
    base: String,
    _dir: tempfile::TempDir,
    tokens: std::path::PathBuf,
    _rt: tokio::runtime::Runtime,
}

fn settings(dir: &std::path::Path, tls: bool) -> Settings {
    let user = |role, pw: &str| User {
        role,
        password_hash: auth::hash_password(pw).unwrap(),
    };
    Settings {
        enabled: true,
        users: HashMap::from([
            ("vic".to_owned(), user(Role::Viewer, "viewer-pw")),
            ("ada".to_owned(), user(Role::Admin, "admin-pw")),
        ]),
        session_ttl: Duration::from_secs(3600),
        tokens_file: Some(dir.join("tokens.json")),
        max_failures: 3,
        window: Duration::from_secs(3),
        trusted_proxies: Vec::new(),
        tls,
    }
}

/// The collector's router with two users, served on 127.0.0.1.
fn serve(tls: Option<&glasswatch_testkit::tls::TlsFiles>) -> (Server, Vec<RouteInfo>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let state = AppState {
        hub: Arc::new(Mutex::new(Hub::new(
            hub::Settings::default(),
            HashMap::new(),
        ))),
        storage: Storage::with_store(None, 10, Ages::default(), Duration::from_secs(1)),
        auth: Arc::new(Auth::new(settings(dir.path(), tls.is_some()))),
        health: Arc::default(),
    };
    let (router, table) = routes(state);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let tls_config = tls.map(|t| glasswatch_collector::web::tls_config(&t.cert, &t.key).unwrap());
    rt.spawn(glasswatch_collector::web::serve(
        listener, router, tls_config,
    ));
    let scheme = if tls.is_some() {
        "https://localhost"
    } else {
        "http://127.0.0.1"
    };
    let server = Server {
        base: format!("{scheme}:{}", addr.port()),
        tokens: dir.path().join("tokens.json"),
        _dir: dir,
        _rt: rt,
    };
    (server, table)
}

/// A route's pattern with sample parameters.
fn sample(path: &str) -> String {
    path.replace("{device}", "dev")
        .replace("{*rest}", "index.m3u8")
        .replace("{stream}", "cam0")
        .replace("{name}", "nobody")
}

/// Logs in through the form; returns the session cookie and its CSRF token.
fn login(s: &Server, user: &str, password: &str) -> Result<(String, String), StatusCode> {
    let c = client();
    let page = c.get(format!("{}/login", s.base)).send().unwrap();
    let login_cookie = page.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = page.text().unwrap();
    let csrf = html
        .split("name=csrf value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let r = c
        .post(format!("{}/login", s.base))
        .header(header::COOKIE, &login_cookie)
        .form(&[
            ("user", user),
            ("password", password),
            ("csrf", &csrf),
            ("next", "/"),
        ])
        .send()
        .unwrap();
    let set = r
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.starts_with("gw_session="))
        .map(str::to_owned);
    match set {
        Some(cookie) if r.status() == StatusCode::SEE_OTHER => {
            assert!(
                cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
                "{cookie}"
            );
            let cookie = cookie.split(';').next().unwrap().to_owned();
            let who: serde_json::Value = c
                .get(format!("{}/api/v1/whoami", s.base))
                .header(header::COOKIE, &cookie)
                .send()
                .unwrap()
                .json()
                .unwrap();
            Ok((cookie, who["csrf"].as_str().unwrap().to_owned()))
        }
        _ => Err(r.status()),
    }
}

#[test]
fn every_route_refuses_anonymous_requests_and_roles_hold() {
    let (s, table) = serve(None);
    let c = client();
    assert!(table.iter().any(|r| r.access == Access::Admin));
    for r in &table {
        let url = format!("{}{}", s.base, sample(r.path));
        let method = Method::from_bytes(r.method.as_str().as_bytes()).unwrap();
        let resp = c.request(method.clone(), &url).send().unwrap();
        match r.access {
            Access::Open => assert_ne!(resp.status(), StatusCode::UNAUTHORIZED, "{r:?}"),
            _ => {
                assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{r:?}");
                assert!(resp.headers().contains_key(header::WWW_AUTHENTICATE));
                if method == Method::GET {
                    // A browser is sent to the login page instead.
                    let page = c
                        .get(&url)
                        .header(header::ACCEPT, "text/html")
                        .send()
                        .unwrap();
                    assert_eq!(page.status(), StatusCode::SEE_OTHER, "{r:?}");
                    let to = page.headers()[header::LOCATION].to_str().unwrap();
                    assert!(
                        to.starts_with("/login?next=%2F") || to.starts_with("/login?next=/"),
                        "{to}"
                    );
                }
                // A forged or unknown session or token is no better.
                let forged = c
                    .request(method, &url)
                    .header(header::COOKIE, "gw_session=0123456789abcdef")
                    .header(header::AUTHORIZATION, "Bearer gwt_forged")
                    .send()
                    .unwrap();
                assert_eq!(forged.status(), StatusCode::UNAUTHORIZED, "{r:?}");
            }
        }
    }
    assert_eq!(
        c.get(format!("{}/healthz", s.base))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "ok"
    );

    // A viewer reads every viewer route and is refused every admin one.
    let (cookie, csrf) = login(&s, "vic", "viewer-pw").unwrap();
    for r in table.iter().filter(|r| r.access != Access::Open) {
        let method = Method::from_bytes(r.method.as_str().as_bytes()).unwrap();
        let resp = c
            .request(method, format!("{}{}", s.base, sample(r.path)))
            .header(header::COOKIE, &cookie)
            .header("x-csrf-token", &csrf)
            .json(&serde_json::json!({"name": "t", "role": "viewer"}))
            .send()
            .unwrap();
        let st = resp.status();
        match r.access {
            Access::Viewer => assert!(
                st != StatusCode::UNAUTHORIZED && st != StatusCode::FORBIDDEN,
                "{r:?}: {st}"
            ),
            _ => assert_eq!(st, StatusCode::FORBIDDEN, "{r:?}"),
        }
    }
}

#[test]
fn csrf_tokens_and_logout() {
    let (s, _) = serve(None);
    let c = client();
    let (cookie, csrf) = login(&s, "ada", "admin-pw").unwrap();
    let url = format!("{}/api/v1/tokens", s.base);
    let body = serde_json::json!({"name": "prometheus", "role": "viewer"});
    // A state change without the session's CSRF token fails, with a wrong one too.
    let r = c
        .post(&url)
        .header(header::COOKIE, &cookie)
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .post(&url)
        .header(header::COOKIE, &cookie)
        .header("x-csrf-token", "f00d")
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let created: serde_json::Value = c
        .post(&url)
        .header(header::COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .json(&body)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("gwt_"));
    assert!(!std::fs::read_to_string(&s.tokens)
        .unwrap()
        .contains(&token[4..]));
    // The token reads, without cookie or CSRF; it cannot administer (viewer).
    let bearer = format!("Bearer {token}");
    let r = c
        .get(format!("{}/api/v1/streams", s.base))
        .header(header::AUTHORIZATION, &bearer)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .get(&url)
        .header(header::AUTHORIZATION, &bearer)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // An admin token made by the command's code path administers without CSRF.
    // The running collector sees a token added to the file within a second.
    let admin = auth::create_token(&s.tokens, "ops", Role::Admin, 1).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let r = loop {
        let r = c
            .delete(format!("{}/api/v1/tokens/prometheus", s.base))
            .header(header::AUTHORIZATION, format!("Bearer {admin}"))
            .send()
            .unwrap();
        if r.status() != StatusCode::UNAUTHORIZED || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = c
        .get(format!("{}/api/v1/streams", s.base))
        .header(header::AUTHORIZATION, &bearer)
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a revoked token is refused at once"
    );

    // Logout needs the CSRF token too; afterwards the cookie is dead.
    let r = c
        .post(format!("{}/logout", s.base))
        .header(header::COOKIE, &cookie)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .post(format!("{}/logout", s.base))
        .header(header::COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let r = c
        .get(format!("{}/api/v1/streams", s.base))
        .header(header::COOKIE, &cookie)
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a stopped session's cookie is refused"
    );
    // GET cannot log out.
    assert_eq!(
        c.get(format!("{}/logout", s.base)).send().unwrap().status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[test]
fn failed_logins_lock_out_then_let_through_after_the_window() {
    let (s, _) = serve(None);
    for _ in 0..3 {
        assert_eq!(login(&s, "vic", "wrong"), Err(StatusCode::SEE_OTHER));
    }
    // Locked out: even the right password is refused, with Retry-After.
    assert_eq!(
        login(&s, "vic", "viewer-pw"),
        Err(StatusCode::TOO_MANY_REQUESTS)
    );
    // A login form without its own CSRF cookie is refused outright.
    let r = client()
        .post(format!("{}/login", s.base))
        .form(&[("user", "ada"), ("password", "admin-pw"), ("csrf", "x")])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The window (3 s here) passes: the right password works again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match login(&s, "vic", "viewer-pw") {
            Ok(_) => break,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(500))
            }
            Err(e) => panic!("still refused after the window: {e}"),
        }
    }
}

#[test]
fn https_with_a_test_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = glasswatch_testkit::tls::make_test_ca(dir.path()).unwrap();
    let (s, _) = serve(Some(&ca));
    assert!(s.base.starts_with("https://"));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read(&ca.ca).unwrap();
    let trusting = reqwest::blocking::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = trusting.get(format!("{}/healthz", s.base)).send().unwrap();
    assert_eq!(
        (r.status(), r.text().unwrap().as_str()),
        (StatusCode::OK, "ok")
    );
    // The login page's cookie is Secure under TLS.
    let page = trusting.get(format!("{}/login", s.base)).send().unwrap();
    assert!(page.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Secure"));
    // A client that does not trust the test CA is refused.
    let strict = reqwest::blocking::Client::builder().build().unwrap();
    assert!(strict.get(format!("{}/healthz", s.base)).send().is_err());
}
