//! A throw-away TLS setup for peers that serve TLS in tests (mosquitto,
//! PostgreSQL): a CA and a server certificate for `localhost` and
//! 127.0.0.1, made with `openssl`, valid for two days.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;

use crate::process::run_with_timeout;

/// Files of a test TLS setup.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate clients trust.
    pub ca: PathBuf,
    /// The server's certificate (for `localhost` and 127.0.0.1) and key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA and a server certificate for 127.0.0.1 and localhost, with `openssl`.
pub fn make_test_ca(dir: &Path) -> anyhow::Result<TlsFiles> {
    let p = |n: &str| dir.join(n);
    let ossl = |args: &[&str]| -> anyhow::Result<()> {
        let mut cmd = Command::new("openssl");
        cmd.args(args).current_dir(dir);
        run_with_timeout(&mut cmd, Duration::from_secs(30)).map(|_| ())
    };
    ossl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=glasswatch-test-ca",
    ])?;
    ossl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ])?;
    std::fs::write(
        p("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .context("writing san.ext")?;
    ossl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ])?;
    Ok(TlsFiles {
        ca: p("ca.pem"),
        cert: p("server.pem"),
        key: p("server.key"),
    })
}
