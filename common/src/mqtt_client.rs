//! MQTT client options shared by the Glasswatch binaries (feature
//! `mqtt-client`): broker address, login (inline password or a password file)
//! and TLS through rustls with ring, trusting a CA file or the system's roots.
//! The caller adds what is its own (Last Will, session, inflight).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};

use crate::config::{read_password, BrokerUrl, ConfigError};

/// What a binary's `[mqtt]` section says about reaching the broker.
#[derive(Debug, Clone, Copy)]
pub struct ClientSettings<'a> {
    pub url: &'a BrokerUrl,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub password_file: Option<&'a Path>,
    pub ca_file: Option<&'a Path>,
    pub keep_alive_s: u32,
}

/// Why client options could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("mqtt.password_file: {0}")]
    Password(#[from] ConfigError),
    #[error("mqtt.ca_file {file}: {message}")]
    CaFile { file: String, message: String },
    #[error("no system CA certificates found; set mqtt.ca_file")]
    NoSystemRoots,
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
}

/// Options for `client_id` at the settings' broker, with credentials and TLS.
pub fn options(s: &ClientSettings<'_>, client_id: &str) -> Result<MqttOptions, SetupError> {
    let mut opts = MqttOptions::new(client_id, s.url.host.clone(), s.url.port);
    opts.set_keep_alive(Duration::from_secs(u64::from(s.keep_alive_s.max(1))));
    opts.set_max_packet_size(4 << 20, 4 << 20);
    if let Some(user) = s.username {
        opts.set_credentials(user, read_password(s.password, s.password_file)?);
    }
    if s.url.tls {
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls_config(s.ca_file)?),
        )));
    }
    Ok(opts)
}

/// rustls with ring, trusting `ca_file` (PEM) or else the system's roots.
pub fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, SetupError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let ca_err = |message: String| SetupError::CaFile {
                file: path.display().to_string(),
                message,
            };
            let pem = std::fs::read(path).map_err(|e| ca_err(format!("cannot read: {e}")))?;
            let mut n = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| ca_err(format!("cannot parse: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| ca_err(format!("cannot add a CA: {e}")))?;
                n += 1;
            }
            if n == 0 {
                return Err(ca_err("holds no PEM certificate".into()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(SetupError::NoSystemRoots);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
