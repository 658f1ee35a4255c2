//! The README's run command, headless: `scripts/run.sh --for SECONDS` starts
//! the whole chain (origin, collector with its embedded broker and a login,
//! the agent on the test pattern), prints the dashboard URL, and exits 0
//! only once the collector's API (asked with a token the script makes)
//! reports a latency figure for the agent's stream. The suite has installed
//! and built everything already, so the script runs with `SKIP_SETUP=1` on
//! the binaries the tests use, on free ports and its own run folder.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use glasswatch_testkit::{free_port, require_origin_stack, try_bin_path};

#[test]
fn headless_quick_start_reaches_a_latency_figure() {
    if !require_origin_stack() {
        return;
    }
    let bin = try_bin_path("glasswatch-collector").expect("the collector is built");
    let bin_dir = bin.parent().expect("a folder");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace");
    let run_dir = tempfile::tempdir().expect("a run folder");
    let http = free_port();
    let t = Instant::now();
    let out = Command::new("bash")
        .arg(repo.join("scripts/run.sh"))
        .args(["--for", "90"])
        .env("SKIP_SETUP", "1")
        .env("BIN_DIR", bin_dir)
        .env("RUN_DIR", run_dir.path())
        .env("SOURCE", "test")
        .env("DEVICE_ID", "quick")
        .env("RTSP_PORT", free_port().to_string())
        .env("HLS_PORT", free_port().to_string())
        .env("MQTT_PORT", free_port().to_string())
        .env("HTTP_PORT", http.to_string())
        // The development origin, even where a MediaMTX is installed.
        .env("MEDIAMTX_BIN", "")
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("bash runs scripts/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "scripts/run.sh --for 90: {:?}, {:.1} s\n{stdout}",
        out.status,
        t.elapsed().as_secs_f64()
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("Dashboard: http://127.0.0.1:{http}/")),
        "the dashboard URL is printed: {stdout}"
    );
    assert!(
        stdout.contains("testkit LL-HLS origin"),
        "the development origin is named as such: {stdout}"
    );
    let line = stdout
        .lines()
        .find(|l| l.contains("the API reports latency"))
        .unwrap_or_else(|| panic!("no latency line: {stdout}"));
    assert!(
        line.contains("quick/cam0") && line.contains("glass-to-HLS p50"),
        "{line}"
    );
    // Everything it started has stopped: the ports are free again.
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", http)).is_ok(),
        "the collector still listens after the script ended"
    );
}
