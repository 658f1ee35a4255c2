//! The HTTP side of [`crate::auth`]: the guard every route passes (who is
//! asking, may they, and is a state change carrying its CSRF token), the
//! login page and form, logout, `whoami`, and the admin's token routes.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::{
    extract::{ConnectInfo, Path, Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{Html, IntoResponse, Redirect, Response},
    Form, Json,
};
use serde::Deserialize;

use crate::api::{bad, ApiError, AppState};
use crate::auth::{self, Auth, Identity, LoginError, Role};

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (the login page, `/healthz`).
    Open,
    /// A logged-in person or a token, any role.
    Viewer,
    /// The admin role.
    Admin,
}

fn peer(req_ext: &axum::http::Extensions) -> SocketAddr {
    req_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
}

fn header_str(h: &HeaderMap, name: impl axum::http::header::AsHeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Who is asking: a bearer token, else a session cookie.
pub fn identify(auth: &Auth, headers: &HeaderMap) -> Option<Identity> {
    if let Some(token) =
        header_str(headers, header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer "))
    {
        return auth.bearer(token.trim());
    }
    header_str(headers, header::COOKIE)
        .and_then(|c| auth::cookie(c, auth::SESSION_COOKIE))
        .and_then(|c| auth.session(c))
}

/// The guard in front of every route that is not [`Access::Open`].
pub async fn guard(
    State(state): State<AppState>,
    access: Access,
    mut req: Request,
    next: Next,
) -> Response {
    let auth = &state.auth;
    let identity = if auth.enabled() {
        match identify(auth, req.headers()) {
            Some(id) => id,
            None => return unauthenticated(req.method(), req.headers(), req.uri()),
        }
    } else {
        // `auth = "none"` (loopback only): everyone may do everything.
        Identity {
            name: "anonymous".into(),
            role: Role::Admin,
            csrf: None,
        }
    };
    if access == Access::Admin && identity.role < Role::Admin {
        return ApiError::new(StatusCode::FORBIDDEN, "this needs the admin role").into_response();
    }
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && !auth::csrf_ok(&identity, header_str(req.headers(), auth::CSRF_HEADER)) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "missing or wrong CSRF token (send the X-CSRF-Token header from /api/v1/whoami)",
        )
        .into_response();
    }
    req.extensions_mut().insert(identity);
    next.run(req).await
}

/// A browser navigating goes to the login page; anything else gets 401.
fn unauthenticated(method: &Method, headers: &HeaderMap, uri: &axum::http::Uri) -> Response {
    let wants_html = header_str(headers, header::ACCEPT).is_some_and(|a| a.contains("text/html"));
    if *method == Method::GET && wants_html {
        let next = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        return Redirect::to(&format!("/login?next={}", encode(&next))).into_response();
    }
    let mut r =
        ApiError::new(StatusCode::UNAUTHORIZED, "log in, or send a bearer token").into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"glasswatch\""),
    );
    r
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where to go after logging in: a path on this site only.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.len() < 2048 =>
        {
            n
        }
        _ => "/",
    }
}

/// Whether cookies must be `Secure`: served over HTTPS here, or via a
/// trusted proxy that received HTTPS.
fn secure(auth: &Auth, peer: SocketAddr, headers: &HeaderMap) -> bool {
    auth.tls() || auth.forwarded_https(peer, header_str(headers, "x-forwarded-proto"))
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    failed: Option<String>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const PAGE_STYLE: &str = "body{font:15px system-ui,sans-serif;margin:0;display:grid;place-items:center;min-height:100vh;background:#f4f5f7}\
form{background:#fff;padding:2em;border-radius:8px;box-shadow:0 1px 4px #0002;display:grid;gap:.8em;min-width:16em}\
input,button{font:inherit;padding:.5em}button{cursor:pointer}.err{color:#b00020}";

/// `GET /login`: the form, with a fresh login CSRF token in a cookie and
/// in the form (double submit).
pub async fn login_page(State(state): State<AppState>, req: Request) -> Response {
    if !state.auth.enabled() {
        return Redirect::to("/").into_response();
    }
    let q: LoginQuery = axum::extract::Query::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or(LoginQuery {
            next: None,
            failed: None,
        });
    let csrf = auth::random_hex();
    let next = safe_next(q.next.as_deref());
    let message = match q.failed.as_deref() {
        Some("locked") => "<p class=err>Too many failed logins. Try again later.</p>",
        Some(_) => "<p class=err>Wrong user name or password.</p>",
        None => "",
    };
    let body = format!(
        "<!doctype html><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>Glasswatch: log in</title><style>{PAGE_STYLE}</style>\
         <form method=post action=/login><h1>Glasswatch</h1>{message}\
         <label>User <input name=user autocomplete=username required autofocus></label>\
         <label>Password <input name=password type=password autocomplete=current-password required></label>\
         <input type=hidden name=csrf value=\"{csrf}\"><input type=hidden name=next value=\"{}\">\
         <button>Log in</button></form>",
        esc(next)
    );
    let secure = secure(&state.auth, peer(req.extensions()), req.headers());
    (
        [
            (
                header::SET_COOKIE,
                auth::set_cookie(auth::LOGIN_COOKIE, &csrf, secure, Some(600)),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Html(body),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    user: String,
    password: String,
    csrf: String,
    next: Option<String>,
}

/// `POST /login`.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let auth = state.auth.clone();
    if !auth.enabled() {
        return Redirect::to("/").into_response();
    }
    let Ok(Form(form)) = form else {
        return bad("a login needs user, password and csrf").into_response();
    };
    if form.user.len() > 128 || form.password.len() > 1024 {
        return bad("user name or password too long").into_response();
    }
    let cookie =
        header_str(&headers, header::COOKIE).and_then(|c| auth::cookie(c, auth::LOGIN_COOKIE));
    if cookie.is_none_or(|c| c != form.csrf) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "login form expired: reload the login page",
        )
        .into_response();
    }
    let client = auth.client(peer, header_str(&headers, "x-forwarded-for"));
    let secure = secure(&auth, peer, &headers);
    let next = safe_next(form.next.as_deref()).to_owned();
    let a = auth.clone();
    let result =
        tokio::task::spawn_blocking(move || a.login(client, &form.user, &form.password)).await;
    match result {
        Ok(Ok((token, _))) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, next),
                (
                    header::SET_COOKIE,
                    auth::set_cookie(auth::SESSION_COOKIE, &token, secure, None),
                ),
            ],
        )
            .into_response(),
        Ok(Err(LoginError::LockedOut { retry_after })) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(
                header::RETRY_AFTER,
                retry_after.as_secs().max(1).to_string(),
            )],
            Redirect::to("/login?failed=locked"),
        )
            .into_response(),
        Ok(Err(LoginError::Invalid)) => (
            StatusCode::SEE_OTHER,
            [(
                header::LOCATION,
                format!("/login?failed=1&next={}", encode(&next)),
            )],
        )
            .into_response(),
        Err(e) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("login: {e}")).into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    csrf: Option<String>,
}

/// `POST /logout`: ends the session (the form carries its CSRF token).
pub async fn logout(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.ok();
    let auth = &state.auth;
    let Some(cookie) =
        header_str(&headers, header::COOKIE).and_then(|c| auth::cookie(c, auth::SESSION_COOKIE))
    else {
        return Redirect::to("/login").into_response();
    };
    let Some(id) = auth.session(cookie) else {
        return Redirect::to("/login").into_response();
    };
    let sent = form
        .as_ref()
        .and_then(|f| f.csrf.as_deref())
        .or_else(|| header_str(&headers, auth::CSRF_HEADER));
    if !auth::csrf_ok(&id, sent) {
        return ApiError::new(StatusCode::FORBIDDEN, "missing or wrong CSRF token").into_response();
    }
    auth.logout(cookie);
    tracing::info!(user = id.name, "logout");
    let secure = secure(auth, peer, &headers);
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/login".to_owned()),
            (
                header::SET_COOKIE,
                auth::set_cookie(auth::SESSION_COOKIE, "", secure, Some(0)),
            ),
        ],
    )
        .into_response()
}

/// `GET /api/v1/whoami`: the caller, and the CSRF token its page sends
/// with state changes.
pub async fn whoami(req: Request) -> Json<serde_json::Value> {
    let id = req.extensions().get::<Identity>().cloned();
    Json(serde_json::json!({
        "name": id.as_ref().map(|i| i.name.clone()),
        "role": id.as_ref().map(|i| i.role.as_str()),
        "csrf": id.and_then(|i| i.csrf),
    }))
}

fn tokens_file(auth: &Auth) -> Result<&std::path::Path, ApiError> {
    auth.tokens_file()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no tokens file"))
}

/// `GET /api/v1/tokens` (admin): the tokens' names, roles and ages, never
/// the tokens.
pub async fn list_tokens(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    tokens_file(&state.auth)?;
    let list: Vec<serde_json::Value> = state
        .auth
        .tokens()
        .into_iter()
        .map(|t| serde_json::json!({ "name": t.name, "role": t.role, "created_us": t.created_us }))
        .collect();
    Ok(Json(serde_json::json!({ "tokens": list })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    role: Role,
}

/// `POST /api/v1/tokens` (admin) `{"name": "prometheus", "role": "viewer"}`:
/// makes a token and shows it once.
pub async fn create_token(
    State(state): State<AppState>,
    body: Result<Json<NewToken>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(t) = body.map_err(|e| bad(format!("bad token request: {}", e.body_text())))?;
    let path = tokens_file(&state.auth)?.to_owned();
    let token =
        auth::create_token(&path, &t.name, t.role, crate::receiver::wall_us()).map_err(bad)?;
    state.auth.reload_tokens();
    tracing::info!(name = t.name, role = t.role.as_str(), "API token created");
    Ok(Json(
        serde_json::json!({ "name": t.name, "role": t.role, "token": token }),
    ))
}

/// `DELETE /api/v1/tokens/{name}` (admin): revokes a token at once.
pub async fn revoke_token(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let path = tokens_file(&state.auth)?.to_owned();
    let found = auth::revoke_token(&path, &name).map_err(bad)?;
    state.auth.reload_tokens();
    if found {
        tracing::info!(name, "API token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "no such token"))
    }
}

/// The shared auth state, as the router holds it.
pub type SharedAuth = Arc<Auth>;
