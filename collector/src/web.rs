//! Serving the HTTP side: plain HTTP, or HTTPS with rustls (ring) when
//! `[http] tls_cert` and `tls_key` are set. Either way each request knows
//! its peer address (login rate limits, trusted proxies).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;

use crate::auth::{Auth, Settings, User};
use crate::config::{self, AuthMode, Config};

/// The login state the config describes.
pub fn auth(cfg: &Config) -> Auth {
    let h = &cfg.http;
    let users = cfg
        .users
        .iter()
        .map(|u| u.get_ref())
        .map(|u| {
            (
                u.name.clone(),
                User {
                    role: u.role,
                    password_hash: u.password_hash.clone(),
                },
            )
        })
        .collect();
    Auth::new(Settings {
        enabled: h.auth == AuthMode::Login,
        users,
        session_ttl: std::time::Duration::from_secs(u64::from(h.session_hours.get()) * 3600),
        tokens_file: Some(config::state_path(&h.tokens_file, cfg.dir.as_deref())),
        max_failures: h.login_max_failures.get(),
        window: std::time::Duration::from_secs(u64::from(h.login_window_s.get())),
        trusted_proxies: h.trusted_proxies.clone(),
        tls: h.tls_cert.is_some(),
    })
}

/// rustls (ring) serving `cert` (PEM chain) with `key` (PEM private key).
pub fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("http.tls_cert {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("http.tls_cert {}: not PEM certificates", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("http.tls_cert {} holds no certificate", cert.display());
    }
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("http.tls_key {}", key.display()))?,
    ))
    .with_context(|| format!("http.tls_key {}: not a PEM key", key.display()))?
    .with_context(|| format!("http.tls_key {} holds no private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("http.tls_cert and http.tls_key do not make a valid pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves `app` on `listener` until the task is aborted.
pub async fn serve(
    listener: std::net::TcpListener,
    app: Router,
    tls: Option<rustls::ServerConfig>,
) {
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let result = match tls {
        Some(config) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
            axum_server::from_tcp_rustls(listener, config)
                .serve(service)
                .await
        }
        None => match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => axum::serve(l, service).await,
            Err(e) => Err(e),
        },
    };
    if let Err(e) = result {
        tracing::error!("HTTP side stopped: {e}");
    }
}
