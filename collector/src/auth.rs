//! Who may use the collector's HTTP side: people log in (users in the
//! config, argon2id hashes, server-side sessions in an HttpOnly,
//! SameSite=Strict cookie), machines send a bearer token (stored hashed in
//! `[http] tokens_file`, made and revoked by a command or by an admin).
//!
//! - Two roles: `viewer` reads; `admin` may also change state.
//! - Every state-changing request made with a session cookie carries the
//!   session's CSRF token (`X-CSRF-Token` header, or the `csrf` form field
//!   of the login and logout forms). Bearer tokens are not sent by browsers
//!   on their own, so they need none.
//! - Failed logins are limited per client address and per user name: after
//!   `login_max_failures` within `login_window_s`, further attempts are
//!   refused until the window has passed, and the lockout is logged.
//! - `[http] auth = "none"` turns all of it off, and is refused unless the
//!   collector listens on loopback only (config check).
//!
//! This module holds the state and the rules; `api.rs` wires them into the
//! router (every route declares what it needs).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a person or a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: Role,
    /// The session's CSRF token when the request came with a session cookie.
    pub csrf: Option<String>,
}

/// Names of the cookies.
pub const SESSION_COOKIE: &str = "gw_session";
pub const LOGIN_COOKIE: &str = "gw_login";
/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Prefix of API tokens, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "gwt_";
/// Most sessions kept at once (the oldest go first beyond it).
const MAX_SESSIONS: usize = 10_000;
/// Most clients and users tracked by the login limiter.
const MAX_TRACKED: usize = 10_000;
/// Most API tokens in the tokens file.
pub const MAX_TOKENS: usize = 1_000;

/// A user from the config.
#[derive(Debug, Clone)]
pub struct User {
    pub role: Role,
    pub password_hash: String,
}

#[derive(Debug, Clone)]
struct Session {
    name: String,
    role: Role,
    csrf: String,
    expires: Instant,
}

/// One API token as stored: its SHA-256, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    pub sha256: String,
    pub created_us: i64,
}

/// The settings the HTTP side needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub enabled: bool,
    pub users: HashMap<String, User>,
    pub session_ttl: Duration,
    pub tokens_file: Option<PathBuf>,
    pub max_failures: u32,
    pub window: Duration,
    pub trusted_proxies: Vec<IpAddr>,
    /// Cookies get `Secure` (the collector serves HTTPS itself).
    pub tls: bool,
}

/// The login and token state shared by the handlers.
#[derive(Debug)]
pub struct Auth {
    settings: Settings,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    limiter: Mutex<Limiter>,
    tokens: Mutex<TokenCache>,
    /// A valid hash to verify against for unknown users, so that a wrong
    /// user name costs as long as a wrong password.
    dummy_hash: String,
}

#[derive(Debug, Default)]
struct TokenCache {
    checked: Option<Instant>,
    /// The file's inode, modification time and length when read: writes
    /// replace the file (a new inode), and two writes within the kernel's
    /// coarse clock tick share a modification time.
    version: Option<(u64, SystemTime, u64)>,
    entries: Vec<TokenEntry>,
}

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// Wrong user name or password (never says which).
    Invalid,
    /// Too many failures from this address or for this user.
    LockedOut { retry_after: Duration },
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// 32 random bytes as 64 hex digits.
pub fn random_hex() -> String {
    let mut b = [0u8; 32];
    // The OS random source failing is not something to serve through.
    if getrandom::fill(&mut b).is_err() {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b[..16].copy_from_slice(&t.to_le_bytes());
    }
    hex(&b)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The argon2id parameters: OWASP's minimum (19 MiB, 2 passes, 1 lane).
fn argon2() -> Argon2<'static> {
    Argon2::default()
}

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no random salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a PHC string is an argon2id hash the collector can verify.
pub fn check_hash(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash).map_err(|e| format!("not a PHC hash string: {e}"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "the hash uses {}, not argon2id (make one with `glasswatch-collector hash-password`)",
            parsed.algorithm
        ));
    }
    Ok(())
}

/// Whether `password` matches an argon2id PHC `hash` (slow by design).
pub fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

impl Auth {
    pub fn new(settings: Settings) -> Auth {
        let dummy_hash = hash_password("glasswatch-dummy").unwrap_or_default();
        Auth {
            settings,
            sessions: Mutex::new(HashMap::new()),
            limiter: Mutex::new(Limiter::default()),
            tokens: Mutex::new(TokenCache::default()),
            dummy_hash,
        }
    }

    /// Whether login applies (`auth = "login"`).
    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    pub fn tls(&self) -> bool {
        self.settings.tls
    }

    /// The address a request comes from: the peer, or the client a trusted
    /// proxy names in `X-Forwarded-For` (its last entry).
    pub fn client(&self, peer: SocketAddr, forwarded_for: Option<&str>) -> IpAddr {
        if self.settings.trusted_proxies.contains(&peer.ip()) {
            if let Some(ip) = forwarded_for
                .and_then(|v| v.rsplit(',').next())
                .and_then(|s| s.trim().parse().ok())
            {
                return ip;
            }
        }
        peer.ip()
    }

    /// Whether the request reached a trusted proxy over HTTPS.
    pub fn forwarded_https(&self, peer: SocketAddr, proto: Option<&str>) -> bool {
        self.settings.trusted_proxies.contains(&peer.ip())
            && proto.is_some_and(|p| p.eq_ignore_ascii_case("https"))
    }

    /// Verifies a login (slow: run it off the async workers) and opens a
    /// session: returns the cookie value and the identity.
    pub fn login(
        &self,
        client: IpAddr,
        name: &str,
        password: &str,
    ) -> Result<(String, Identity), LoginError> {
        let now = Instant::now();
        let name = name.chars().take(128).collect::<String>();
        if let Some(retry_after) = lock(&self.limiter).locked(client, &name, now, &self.settings) {
            return Err(LoginError::LockedOut { retry_after });
        }
        let user = self.settings.users.get(&name);
        let hash = user.map_or(self.dummy_hash.as_str(), |u| u.password_hash.as_str());
        let ok = verify(password, hash) && user.is_some();
        let Some(user) = user.filter(|_| ok) else {
            let locked = lock(&self.limiter).fail(client, &name, now, &self.settings);
            if locked {
                tracing::warn!(
                    %client,
                    user = name,
                    window_s = self.settings.window.as_secs(),
                    "login: too many failures; locked out for the window"
                );
            } else {
                tracing::info!(%client, user = name, "login failed");
            }
            return Err(LoginError::Invalid);
        };
        let token = random_hex();
        let identity = Identity {
            name: name.clone(),
            role: user.role,
            csrf: Some(random_hex()),
        };
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| *k)
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            sha256(&token),
            Session {
                name: name.clone(),
                role: user.role,
                csrf: identity.csrf.clone().unwrap_or_default(),
                expires: now + self.settings.session_ttl,
            },
        );
        tracing::info!(%client, user = name, "login");
        Ok((token, identity))
    }

    /// The identity of a session cookie, if it names a live session.
    pub fn session(&self, cookie: &str) -> Option<Identity> {
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        let key = sha256(cookie);
        match sessions.get(&key) {
            Some(s) if s.expires > now => Some(Identity {
                name: s.name.clone(),
                role: s.role,
                csrf: Some(s.csrf.clone()),
            }),
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends a session (logout).
    pub fn logout(&self, cookie: &str) -> bool {
        lock(&self.sessions).remove(&sha256(cookie)).is_some()
    }

    /// The identity of a bearer token, if it is in the tokens file.
    pub fn bearer(&self, token: &str) -> Option<Identity> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 200 {
            return None;
        }
        let digest = hex(&sha256(token));
        self.tokens()
            .into_iter()
            .find(|t| same(t.sha256.as_bytes(), digest.as_bytes()))
            .map(|t| Identity {
                name: format!("token:{}", t.name),
                role: t.role,
                csrf: None,
            })
    }

    /// The tokens file's entries, re-read when it changed (checked at most
    /// once a second). A missing file is no tokens; a damaged one is logged
    /// and counts as none.
    pub fn tokens(&self) -> Vec<TokenEntry> {
        let Some(path) = &self.settings.tokens_file else {
            return Vec::new();
        };
        let mut cache = lock(&self.tokens);
        let now = Instant::now();
        if cache
            .checked
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return cache.entries.clone();
        }
        cache.checked = Some(now);
        let version = std::fs::metadata(path).ok().and_then(|m| {
            use std::os::unix::fs::MetadataExt as _;
            Some((m.ino(), m.modified().ok()?, m.len()))
        });
        if version != cache.version || version.is_none() {
            cache.version = version;
            cache.entries = match read_tokens(path) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!("API tokens: {e}; no token is accepted until it is fixed");
                    Vec::new()
                }
            };
        }
        cache.entries.clone()
    }

    /// Forgets the cached tokens (after this process changed the file).
    pub fn reload_tokens(&self) {
        *lock(&self.tokens) = TokenCache::default();
    }

    pub fn tokens_file(&self) -> Option<&Path> {
        self.settings.tokens_file.as_deref()
    }
}

/// Reads the tokens file (JSON array of [`TokenEntry`]); absent is empty.
pub fn read_tokens(path: &Path) -> Result<Vec<TokenEntry>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if text.len() > 1 << 20 {
        return Err(format!("{} is larger than 1 MiB", path.display()));
    }
    let entries: Vec<TokenEntry> = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a tokens file: {e}", path.display()))?;
    if entries.len() > MAX_TOKENS {
        return Err(format!(
            "{} holds more than {MAX_TOKENS} tokens",
            path.display()
        ));
    }
    Ok(entries)
}

/// Writes the tokens file atomically, readable by its owner only.
pub fn write_tokens(path: &Path, entries: &[TokenEntry]) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let text = serde_json::to_string_pretty(entries).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

/// Adds a token named `name` to the file and returns it (shown once).
pub fn create_token(path: &Path, name: &str, role: Role, now_us: i64) -> Result<String, String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(format!("token name `{name}` must be [a-z0-9_-]{{1,64}}"));
    }
    let mut entries = read_tokens(path)?;
    if entries.iter().any(|t| t.name == name) {
        return Err(format!("a token named `{name}` exists; revoke it first"));
    }
    if entries.len() >= MAX_TOKENS {
        return Err(format!("at most {MAX_TOKENS} tokens"));
    }
    let token = format!("{TOKEN_PREFIX}{}", random_hex());
    entries.push(TokenEntry {
        name: name.to_owned(),
        role,
        sha256: hex(&sha256(&token)),
        created_us: now_us,
    });
    write_tokens(path, &entries)?;
    Ok(token)
}

/// Removes the token named `name`; false when there was none.
pub fn revoke_token(path: &Path, name: &str) -> Result<bool, String> {
    let mut entries = read_tokens(path)?;
    let before = entries.len();
    entries.retain(|t| t.name != name);
    if entries.len() == before {
        return Ok(false);
    }
    write_tokens(path, &entries)?;
    Ok(true)
}

/// Failed logins per client address and per user name, in a sliding window.
#[derive(Debug, Default)]
struct Limiter {
    by_client: HashMap<IpAddr, VecDeque<Instant>>,
    by_user: HashMap<String, VecDeque<Instant>>,
}

fn prune(q: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
        q.pop_front();
    }
}

fn lock_left(q: Option<&VecDeque<Instant>>, now: Instant, s: &Settings) -> Option<Duration> {
    let q = q?;
    let live: Vec<&Instant> = q
        .iter()
        .filter(|t| now.duration_since(**t) < s.window)
        .collect();
    if live.len() >= s.max_failures as usize {
        // Open again once the oldest failure in the window has aged out.
        live.first()
            .map(|t| s.window.saturating_sub(now.duration_since(**t)))
    } else {
        None
    }
}

impl Limiter {
    fn locked(&self, client: IpAddr, user: &str, now: Instant, s: &Settings) -> Option<Duration> {
        let a = lock_left(self.by_client.get(&client), now, s);
        let b = lock_left(self.by_user.get(user), now, s);
        a.max(b)
    }

    /// Records a failure; true when it locks the client or the user out.
    fn fail(&mut self, client: IpAddr, user: &str, now: Instant, s: &Settings) -> bool {
        if self.by_client.len() > MAX_TRACKED || self.by_user.len() > MAX_TRACKED {
            self.by_client.retain(|_, q| {
                prune(q, now, s.window);
                !q.is_empty()
            });
            self.by_user.retain(|_, q| {
                prune(q, now, s.window);
                !q.is_empty()
            });
        }
        let cap = s.max_failures as usize;
        for q in [
            self.by_client.entry(client).or_default(),
            self.by_user.entry(user.to_owned()).or_default(),
        ] {
            prune(q, now, s.window);
            q.push_back(now);
            while q.len() > cap.max(1) {
                q.pop_front();
            }
        }
        self.locked(client, user, now, s).is_some()
    }
}

/// A cookie's value from a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/, Secure when
/// served over HTTPS; `max_age` None for a session cookie, Some(0) to clear.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

/// Whether a CSRF token sent with a request matches the session's.
pub fn csrf_ok(identity: &Identity, sent: Option<&str>) -> bool {
    match (&identity.csrf, sent) {
        (Some(expected), Some(sent)) => same(expected.as_bytes(), sent.as_bytes()),
        // A bearer token: no cookie, no CSRF.
        (None, _) => true,
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(users: &[(&str, Role, &str)]) -> Settings {
        Settings {
            enabled: true,
            users: users
                .iter()
                .map(|(n, r, p)| {
                    (
                        (*n).to_owned(),
                        User {
                            role: *r,
                            password_hash: hash_password(p).unwrap(),
                        },
                    )
                })
                .collect(),
            session_ttl: Duration::from_secs(3600),
            tokens_file: None,
            max_failures: 3,
            window: Duration::from_secs(60),
            trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
            tls: false,
        }
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7));

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        check_hash(&h).unwrap();
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong", &h));
        assert!(check_hash("$2b$12$abc").is_err());
        assert!(check_hash("plain").is_err());
    }

    #[test]
    fn login_sessions_and_logout() {
        let auth = Auth::new(settings(&[("ann", Role::Admin, "pw-ann")]));
        assert_eq!(
            auth.login(CLIENT, "ann", "nope").unwrap_err(),
            LoginError::Invalid
        );
        assert_eq!(
            auth.login(CLIENT, "bob", "pw-ann").unwrap_err(),
            LoginError::Invalid
        );
        let (cookie, id) = auth.login(CLIENT, "ann", "pw-ann").unwrap();
        assert_eq!((id.name.as_str(), id.role), ("ann", Role::Admin));
        let again = auth.session(&cookie).unwrap();
        assert_eq!(again.csrf, id.csrf);
        assert!(csrf_ok(&again, id.csrf.as_deref()));
        assert!(!csrf_ok(&again, Some("forged")));
        assert!(!csrf_ok(&again, None));
        assert!(auth.session("not-a-session").is_none());
        assert!(auth.logout(&cookie));
        assert!(
            auth.session(&cookie).is_none(),
            "a stopped session is refused"
        );
    }

    #[test]
    fn expired_sessions_are_refused() {
        let mut s = settings(&[("ann", Role::Viewer, "pw")]);
        s.session_ttl = Duration::from_millis(1);
        let auth = Auth::new(s);
        let (cookie, _) = auth.login(CLIENT, "ann", "pw").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(auth.session(&cookie).is_none());
    }

    #[test]
    fn failures_lock_out_per_client_and_per_user() {
        let auth = Auth::new(settings(&[("ann", Role::Viewer, "pw")]));
        for _ in 0..3 {
            assert_eq!(
                auth.login(CLIENT, "ann", "x").unwrap_err(),
                LoginError::Invalid
            );
        }
        // Even the right password is refused while locked out.
        assert!(matches!(
            auth.login(CLIENT, "ann", "pw"),
            Err(LoginError::LockedOut { .. })
        ));
        // Another client trying the same user is locked out too.
        let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 8));
        assert!(matches!(
            auth.login(other, "ann", "pw"),
            Err(LoginError::LockedOut { .. })
        ));
        let now = Instant::now();
        let s = settings(&[]);
        let mut l = Limiter::default();
        for i in 0..3 {
            l.fail(CLIENT, "u", now + Duration::from_secs(i), &s);
        }
        assert!(l
            .locked(CLIENT, "v", now + Duration::from_secs(10), &s)
            .is_some());
        // After the window the oldest failure has aged out.
        assert!(l
            .locked(CLIENT, "v", now + Duration::from_secs(61), &s)
            .is_none());
    }

    #[test]
    fn tokens_are_stored_hashed_and_revocable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let mut s = settings(&[]);
        s.tokens_file = Some(path.clone());
        let auth = Auth::new(s);
        let t = create_token(&path, "prometheus", Role::Viewer, 1).unwrap();
        assert!(t.starts_with(TOKEN_PREFIX));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&t[TOKEN_PREFIX.len()..]),
            "only the hash is stored"
        );
        assert!(create_token(&path, "prometheus", Role::Viewer, 2).is_err());
        assert!(create_token(&path, "Bad Name", Role::Viewer, 2).is_err());
        let id = auth.bearer(&t).unwrap();
        assert_eq!(
            (id.name.as_str(), id.role),
            ("token:prometheus", Role::Viewer)
        );
        assert!(auth.bearer("gwt_0000").is_none());
        assert!(revoke_token(&path, "prometheus").unwrap());
        assert!(!revoke_token(&path, "prometheus").unwrap());
        auth.reload_tokens();
        assert!(auth.bearer(&t).is_none(), "revoked");
        std::fs::write(&path, "garbage").unwrap();
        auth.reload_tokens();
        assert!(auth.tokens().is_empty());
    }

    #[test]
    fn forwarded_headers_only_from_trusted_proxies() {
        let auth = Auth::new(settings(&[]));
        let proxy: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let stranger: SocketAddr = "10.1.1.1:4000".parse().unwrap();
        assert_eq!(auth.client(proxy, Some("1.2.3.4, 10.0.0.7")), CLIENT);
        assert_eq!(auth.client(stranger, Some("10.0.0.7")), stranger.ip());
        assert!(auth.forwarded_https(proxy, Some("https")));
        assert!(!auth.forwarded_https(stranger, Some("https")));
    }

    #[test]
    fn cookies() {
        assert_eq!(
            cookie("a=1; gw_session=abc; b=2", "gw_session"),
            Some("abc")
        );
        assert_eq!(cookie("gw_sessionx=1", "gw_session"), None);
        let c = set_cookie("gw_session", "v", true, None);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(!set_cookie("x", "v", false, Some(0)).contains("Secure"));
    }
}
