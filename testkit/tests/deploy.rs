//! Deployment as shipped: `mediamtx.yml`, the three systemd units,
//! `deploy/install-mediamtx.sh`, the agent cross-compiled for aarch64 and
//! run under qemu, and the `.deb` packages built, inspected, installed,
//! upgraded and purged.
//!
//! Needs python3 with PyYAML, systemd-analyze, curl, qemu-user,
//! gcc-aarch64-linux-gnu, the aarch64 Rust target, cargo-deb and dpkg
//! (scripts/install-deps.sh installs them); skipped without them, failing
//! under `CI=true`. The package install test also needs root (CI runs as
//! root) and refuses to touch a machine where the packages are installed
//! already. A real MediaMTX is used only where `MEDIAMTX_BIN` is set.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use glasswatch_testkit::mediamtx::MediaMtx;
use glasswatch_testkit::process::run_with_timeout;
use glasswatch_testkit::require::{is_ci, require, require_program};

/// A cold cross build of the agent (profile `cross-check`) takes ~2 min on 2
/// cores; the bound leaves room for a busy machine and a slow mirror.
const BUILD_TIMEOUT: Duration = Duration::from_secs(1800);
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let shown = format!("{cmd:?}");
    match run_with_timeout(cmd, timeout) {
        Ok(out) => out,
        Err(e) => panic!("{shown}: {e:#}"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs and asserts success; returns stdout.
fn ok(cmd: &mut Command, timeout: Duration) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd, timeout);
    assert!(
        out.status.success(),
        "{shown} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

// ---------------------------------------------------------------- mediamtx.yml

fn require_pyyaml() -> bool {
    require("python3 with PyYAML", || {
        let out = Command::new("python3")
            .args(["-c", "import yaml"])
            .output()
            .map_err(|e| format!("python3 does not run ({e}); apt-get install python3"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err("`import yaml` fails; apt-get install python3-yaml".into())
        }
    })
}

/// `mediamtx.yml` parsed by a real YAML parser (PyYAML, YAML 1.1 as
/// MediaMTX reads `yes`/`no`), as JSON.
fn mediamtx_yml() -> serde_json::Value {
    let path = repo().join("mediamtx.yml");
    let json = ok(
        Command::new("python3")
            .arg("-c")
            .arg("import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))")
            .arg(&path),
        TOOL_TIMEOUT,
    );
    match serde_json::from_str(&json) {
        Ok(v) => v,
        Err(e) => panic!("PyYAML's JSON for {}: {e}", path.display()),
    }
}

#[test]
fn mediamtx_yml_has_the_documented_settings() {
    if !require_pyyaml() {
        return;
    }
    let y = mediamtx_yml();
    let get = |k: &str| {
        y.get(k)
            .unwrap_or_else(|| panic!("mediamtx.yml lacks `{k}`"))
    };
    // The plural key of the pinned release, not the deprecated one.
    assert!(
        y.get("hlsAllowOrigin").is_none(),
        "deprecated hlsAllowOrigin"
    );
    assert!(get("hlsAllowOrigins").is_array());
    // RTSP over TCP on 8554, where the agent publishes.
    assert_eq!(get("rtspTransports"), &serde_json::json!(["tcp"]));
    assert_eq!(get("rtspAddress"), ":8554");
    // LL-HLS with parts of two frames at 30 fps, segments one 15-frame GOP.
    assert_eq!(get("hlsVariant"), "lowLatency");
    assert_eq!(get("hlsPartDuration"), "50ms");
    assert_eq!(get("hlsSegmentDuration"), "500ms");
    assert_eq!(get("hlsAlwaysRemux"), true);
    // API and metrics on, on loopback only.
    for (on, addr) in [("api", "apiAddress"), ("metrics", "metricsAddress")] {
        assert_eq!(get(on), true, "{on}");
        let a = get(addr).as_str().unwrap_or_default();
        assert!(a.starts_with("127.0.0.1:"), "{addr} = {a}: loopback only");
    }
    // Unused servers off; recording off.
    for k in ["rtmp", "webrtc", "srt"] {
        assert_eq!(get(k), false, "{k}");
    }
    assert_eq!(get("pathDefaults")["record"], false);
    // Publishing only from the device itself; reading from the network.
    let users = get("authInternalUsers")
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!users.is_empty(), "authInternalUsers is empty");
    let loopback = serde_json::json!(["127.0.0.1", "::1"]);
    let mut network_read = false;
    for u in &users {
        let actions: Vec<&str> = u["permissions"]
            .as_array()
            .map(|p| p.iter().filter_map(|a| a["action"].as_str()).collect())
            .unwrap_or_default();
        if actions.contains(&"publish") || actions.contains(&"api") {
            assert_eq!(u["ips"], loopback, "publish/api only from loopback: {u}");
        }
        if actions.contains(&"read") && u["ips"] != loopback {
            network_read = true;
        }
    }
    assert!(network_read, "the collector cannot read over the network");
    assert!(y["paths"]
        .as_object()
        .is_some_and(|p| p.contains_key("all_others")));
}

/// Every top-level key, and every key under pathDefaults, carries a comment:
/// on its line or in the comment block right above it.
#[test]
fn mediamtx_yml_comments_every_key() {
    let path = repo().join("mediamtx.yml");
    let body = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    let version = std::fs::read_to_string(repo().join("deploy/mediamtx.version"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        body.contains(version.trim()),
        "mediamtx.yml names the pinned release {}",
        version.trim()
    );
    let lines: Vec<&str> = body.lines().collect();
    let mut in_path_defaults = false;
    for (i, line) in lines.iter().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let t = line.trim_start();
        if indent == 0 && !t.is_empty() && !t.starts_with('#') {
            in_path_defaults = t.starts_with("pathDefaults:");
        }
        let is_key = !t.starts_with('#')
            && !t.starts_with('-')
            && t.split_once(':').is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
        let checked = indent == 0 || (in_path_defaults && indent == 2);
        if !is_key || !checked {
            continue;
        }
        let commented = t.contains(" #")
            || i.checked_sub(1)
                .is_some_and(|p| lines[p].trim_start().starts_with('#'));
        assert!(commented, "mediamtx.yml:{}: `{t}` has no comment", i + 1);
    }
}

/// With `MEDIAMTX_BIN`, the real MediaMTX loads the file (ports moved) and
/// says nothing about deprecated or unknown keys.
#[test]
fn mediamtx_loads_the_repository_config() {
    let Some(started) = MediaMtx::from_env("mediamtx_loads_the_repository_config") else {
        return;
    };
    let mut mtx = started.unwrap_or_else(|e| panic!("{e:#}"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(mtx.peer().is_running(), "{}", mtx.peer().log_tail());
    let log = mtx.peer().log_tail();
    for bad in ["deprecated", "ERR", "WAR"] {
        assert!(!log.contains(bad), "MediaMTX said `{bad}`:\n{log}");
    }
}

// ---------------------------------------------------------------- systemd

const UNITS: [&str; 3] = [
    "glasswatch-agent.service",
    "glasswatch-collector.service",
    "mediamtx.service",
];

/// A root folder with the system's units, ours, and stand-ins for the
/// binaries our units start (systemd-analyze checks they are executable).
fn unit_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let r = root.path();
    ok(
        Command::new("mkdir").arg("-p").args([
            r.join("usr/bin"),
            r.join("usr/local/bin"),
            r.join("usr/lib/systemd"),
            r.join("etc/systemd/system"),
        ]),
        TOOL_TIMEOUT,
    );
    ok(
        Command::new("cp")
            .arg("-a")
            .arg("/lib/systemd/system")
            .arg(r.join("usr/lib/systemd/")),
        TOOL_TIMEOUT,
    );
    for bin in [
        "usr/bin/glasswatch-agent",
        "usr/bin/glasswatch-collector",
        "usr/local/bin/mediamtx",
    ] {
        let p = r.join(bin);
        std::fs::write(&p, "#!/bin/sh\n").unwrap_or_else(|e| panic!("{e}"));
        ok(Command::new("chmod").arg("755").arg(&p), TOOL_TIMEOUT);
    }
    for unit in UNITS {
        std::fs::copy(
            repo().join("systemd").join(unit),
            r.join("etc/systemd/system").join(unit),
        )
        .unwrap_or_else(|e| panic!("{unit}: {e}"));
    }
    root
}

fn require_systemd_analyze() -> bool {
    require_program("systemd-analyze") && Path::new("/lib/systemd/system/sysinit.target").exists()
}

#[test]
fn systemd_units_verify() {
    if !require_systemd_analyze() {
        return;
    }
    let root = unit_root();
    let out = run(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.path().display()))
            .args(UNITS),
        TOOL_TIMEOUT,
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    // Unknown keys and bad values are warnings only: none allowed.
    assert!(stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
}

#[test]
fn systemd_security_exposure() {
    if !require_systemd_analyze() {
        return;
    }
    let root = unit_root();
    for unit in UNITS {
        let out = run(
            Command::new("systemd-analyze")
                .args(["security", "--offline=true", "--no-pager"])
                .arg(format!("--root={}", root.path().display()))
                .arg(unit),
            TOOL_TIMEOUT,
        );
        let stdout = text(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| panic!("{unit}: no rating:\n{stdout}{}", text(&out.stderr)));
        let figure: f64 = line
            .split(':')
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{unit}: cannot read `{line}`"));
        println!("systemd-analyze security {unit}: {figure:.1}");
        eprintln!("systemd-analyze security {unit}: {figure:.1}");
        assert!(figure <= 3.0, "{unit}: exposure {figure} > 3.0\n{stdout}");
    }
}

// ---------------------------------------------------------------- install-mediamtx.sh

/// A fake release folder: the archive for amd64 and the release's own
/// checksums.sha256 (as `sha256sum -b` writes it).
fn fake_release(dir: &Path) -> (String, String) {
    let version = std::fs::read_to_string(repo().join("deploy/mediamtx.version"))
        .unwrap_or_else(|e| panic!("{e}"));
    let version = version.trim();
    let file = format!("mediamtx_{version}_linux_amd64.tar.gz");
    let stage = dir.join("stage");
    let rel = dir.join("release");
    std::fs::create_dir_all(&stage).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(&rel).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(stage.join("mediamtx"), "#!/bin/sh\necho fake mediamtx\n")
        .unwrap_or_else(|e| panic!("{e}"));
    ok(
        Command::new("chmod").arg("755").arg(stage.join("mediamtx")),
        TOOL_TIMEOUT,
    );
    ok(
        Command::new("tar")
            .arg("-czf")
            .arg(rel.join(&file))
            .arg("-C")
            .arg(&stage)
            .arg("mediamtx"),
        TOOL_TIMEOUT,
    );
    let sum = ok(Command::new("sha256sum").arg(rel.join(&file)), TOOL_TIMEOUT);
    let sum = sum.split_whitespace().next().unwrap_or_default().to_owned();
    std::fs::write(rel.join("checksums.sha256"), format!("{sum} *{file}\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    (file, sum)
}

/// Runs install-mediamtx.sh into `dir/<name>` with the fake release.
fn install_mediamtx(dir: &Path, name: &str, base: &str, pins: &Path) -> Output {
    let out = dir.join(name);
    run(
        Command::new("bash")
            .arg(repo().join("deploy/install-mediamtx.sh"))
            .arg("--prefix")
            .arg(out.join("prefix"))
            .arg("--config-dir")
            .arg(out.join("etc"))
            .arg("--unit-dir")
            .arg(out.join("units"))
            .arg("--no-start")
            .env("GLASSWATCH_MEDIAMTX_BASE_URL", base)
            .env("GLASSWATCH_MEDIAMTX_PINS", pins)
            .env("GLASSWATCH_MEDIAMTX_MACHINE", "x86_64"),
        TOOL_TIMEOUT,
    )
}

#[test]
fn install_mediamtx_verifies_before_installing() {
    if !require_program("curl") || !require_program("sha256sum") {
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let (file, sum) = fake_release(d);
    let base = format!("file://{}", d.join("release").display());
    let pins = d.join("pins.sha256");
    let installed = |name: &str| d.join(name).join("prefix/bin/mediamtx").exists();

    // 1. Nothing pinned: the release's checksums.sha256 vouches for it.
    std::fs::write(&pins, "# nothing pinned\n").unwrap_or_else(|e| panic!("{e}"));
    let out = install_mediamtx(d, "listed", &base, &pins);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(installed("listed"));
    assert!(d.join("listed/etc/mediamtx.yml").exists());
    let unit = std::fs::read_to_string(d.join("listed/units/mediamtx.service"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(unit.contains(&format!(
        "ExecStart={}",
        d.join("listed/prefix/bin/mediamtx").display()
    )));

    // 2. A matching pin.
    std::fs::write(&pins, format!("{sum}  {file}\n")).unwrap_or_else(|e| panic!("{e}"));
    let out = install_mediamtx(d, "pinned", &base, &pins);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("pinned in"),
        "{}",
        text(&out.stdout)
    );
    assert!(installed("pinned"));

    // 3. A wrong pin: refused, nothing installed.
    let wrong = "0".repeat(64);
    std::fs::write(&pins, format!("{wrong}  {file}\n")).unwrap_or_else(|e| panic!("{e}"));
    let out = install_mediamtx(d, "wrong-pin", &base, &pins);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("mismatch"),
        "{}",
        text(&out.stderr)
    );
    assert!(!installed("wrong-pin"));

    // 4. Nothing pinned and the release's list disagrees: refused.
    std::fs::write(&pins, "").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        d.join("release/checksums.sha256"),
        format!("{wrong} *{file}\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = install_mediamtx(d, "wrong-list", &base, &pins);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("mismatch"),
        "{}",
        text(&out.stderr)
    );
    assert!(!installed("wrong-list"));

    // 5. Nothing pinned and the release lists no such archive: refused.
    std::fs::write(
        d.join("release/checksums.sha256"),
        format!("{sum} *other.tar.gz\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = install_mediamtx(d, "unlisted", &base, &pins);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unverified"),
        "{}",
        text(&out.stderr)
    );
    assert!(!installed("unlisted"));

    // 6. Unreachable (a closed port on loopback): says so and names MEDIAMTX_BIN.
    let port = glasswatch_testkit::ports::free_port();
    let out = install_mediamtx(
        d,
        "offline",
        &format!("https://127.0.0.1:{port}/rel"),
        &pins,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("MEDIAMTX_BIN"),
        "{}",
        text(&out.stderr)
    );
    assert!(!installed("offline"));

    // 7. Plain http is not accepted as a source.
    let out = install_mediamtx(d, "http", &format!("http://127.0.0.1:{port}/rel"), &pins);
    assert!(!out.status.success());
    assert!(!installed("http"));
}

#[test]
fn install_mediamtx_picks_the_archive_for_the_machine() {
    for (machine, arch) in [
        ("x86_64", "amd64"),
        ("aarch64", "arm64"),
        ("armv7l", "armv7"),
        ("armv6l", "armv6"),
    ] {
        let url = ok(
            Command::new("bash")
                .arg(repo().join("deploy/install-mediamtx.sh"))
                .arg("--print-url")
                .env("GLASSWATCH_MEDIAMTX_MACHINE", machine),
            TOOL_TIMEOUT,
        );
        assert!(
            url.trim().ends_with(&format!("_linux_{arch}.tar.gz")),
            "{machine}: {url}"
        );
        assert!(url.starts_with("https://"), "{url}");
    }
    let out = run(
        Command::new("bash")
            .arg(repo().join("deploy/install-mediamtx.sh"))
            .arg("--print-url")
            .env("GLASSWATCH_MEDIAMTX_MACHINE", "mips"),
        TOOL_TIMEOUT,
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("MEDIAMTX_BIN"));
}

// ---------------------------------------------------------------- aarch64

fn require_cross_aarch64() -> bool {
    require_program("qemu-aarch64")
        && require_program("aarch64-linux-gnu-gcc")
        && require("the aarch64-unknown-linux-gnu Rust target", || {
            let out = Command::new("rustup")
                .args(["target", "list", "--installed"])
                .output()
                .map_err(|e| format!("rustup does not run: {e}"))?;
            if text(&out.stdout)
                .lines()
                .any(|l| l.trim() == "aarch64-unknown-linux-gnu")
            {
                Ok(())
            } else {
                Err("rustup target add aarch64-unknown-linux-gnu".into())
            }
        })
}

#[test]
fn aarch64_agent_runs_under_qemu() {
    if !require_cross_aarch64() {
        return;
    }
    // The link and the ELF are what is checked, not speed: the cross-check
    // profile (no debug info, no optimisation) builds in a third of dev's time.
    ok(
        Command::new("bash")
            .arg(repo().join("deploy/cross-build.sh"))
            .args(["aarch64", "--profile", "cross-check"]),
        BUILD_TIMEOUT,
    );
    let bin = repo().join("target/aarch64-unknown-linux-gnu/cross-check/glasswatch-agent");
    let sysroot = std::env::var_os("GLASSWATCH_SYSROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/sysroot/arm64"));
    let qemu = |args: &[&str]| -> Output {
        run(
            Command::new("qemu-aarch64")
                .arg("-L")
                .arg(&sysroot)
                .arg(&bin)
                .args(args)
                .env("GST_REGISTRY_FORK", "no"),
            TOOL_TIMEOUT,
        )
    };
    let elf = ok(Command::new("file").arg(&bin), TOOL_TIMEOUT);
    assert!(elf.contains("ARM aarch64"), "{elf}");

    let out = qemu(&["--version"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("glasswatch-agent "),
        "{}",
        text(&out.stdout)
    );

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let good = dir.path().join("agent.toml");
    std::fs::write(&good, "device_id = \"pi-test\"\n").unwrap_or_else(|e| panic!("{e}"));
    let out = qemu(&["--config", &good.to_string_lossy(), "--check-config"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("config OK: device pi-test"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "device_id = \"pi test\"\n").unwrap_or_else(|e| panic!("{e}"));
    let out = qemu(&["--config", &bad.to_string_lossy(), "--check-config"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("device_id"),
        "{}",
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------- .deb

fn require_cargo_deb() -> bool {
    require_program("dpkg-deb")
        && require("cargo-deb", || {
            let out = Command::new("cargo")
                .args(["deb", "--version"])
                .output()
                .map_err(|e| format!("cargo does not run: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err("cargo install cargo-deb --locked".into())
            }
        })
}

/// Packs the amd64 packages at `version` into `out` from the dev binaries
/// the test run uses (scripts/test.sh builds them with the workspace; a
/// `cargo build -p` here would rebuild them with other features).
fn build_debs(out: &Path, version: &str) -> (PathBuf, PathBuf) {
    for bin in ["glasswatch-agent", "glasswatch-collector"] {
        glasswatch_testkit::bins::bin_path(bin);
    }
    ok(
        Command::new("bash")
            .arg(repo().join("deploy/build-debs.sh"))
            .args([
                "amd64",
                "--profile",
                "dev",
                "--no-build",
                "--deb-version",
                version,
                "--out",
            ])
            .arg(out),
        BUILD_TIMEOUT,
    );
    let find = |pkg: &str| {
        let path = out.join(format!("{pkg}_{version}_amd64.deb"));
        assert!(path.exists(), "{} was not built", path.display());
        path
    };
    (find("glasswatch-agent"), find("glasswatch-collector"))
}

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    ok(Command::new("dpkg-deb").args(args).arg(deb), TOOL_TIMEOUT)
}

fn field(info: &str, name: &str) -> String {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
        .unwrap_or_default()
        .to_owned()
}

fn check_deb(deb: &Path, pkg: &str, conffile: &str) {
    let info = dpkg_deb(&["-I"], deb);
    assert_eq!(field(&info, "Package"), pkg, "{info}");
    assert_eq!(field(&info, "Architecture"), "amd64", "{info}");
    assert!(field(&info, "Depends").contains("adduser"), "{info}");
    for script in ["postinst", "prerm", "postrm", "conffiles"] {
        assert!(
            info.contains(&format!(" {script}")),
            "{pkg}: no {script}:\n{info}"
        );
    }
    let ctrl = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    ok(
        Command::new("dpkg-deb").arg("-e").arg(deb).arg(ctrl.path()),
        TOOL_TIMEOUT,
    );
    let conffiles =
        std::fs::read_to_string(ctrl.path().join("conffiles")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        conffiles.lines().any(|l| l.trim() == conffile),
        "{conffiles}"
    );

    let contents = dpkg_deb(&["-c"], deb);
    for path in [
        format!("./usr/bin/{pkg}"),
        format!("./lib/systemd/system/{pkg}.service"),
        format!(".{conffile}"),
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(&path)),
            "{pkg}: {path} missing:\n{contents}"
        );
    }
}

fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| text(&o.stdout).contains("installed"))
}

#[test]
fn debs_build_install_upgrade_purge() {
    if !require_cargo_deb() {
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (agent1, collector1) = build_debs(&dir.path().join("v1"), "0.1.0-1");
    check_deb(&agent1, "glasswatch-agent", "/etc/glasswatch/agent.toml");
    check_deb(
        &collector1,
        "glasswatch-collector",
        "/etc/glasswatch/collector.toml",
    );

    // The agent's packaged config names no device, so it is not started.
    let x = dir.path().join("x");
    ok(
        Command::new("dpkg-deb").arg("-x").arg(&agent1).arg(&x),
        TOOL_TIMEOUT,
    );
    let packaged = std::fs::read_to_string(x.join("etc/glasswatch/agent.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !packaged.lines().any(|l| l.starts_with("device_id")),
        "{packaged}"
    );
    let unit = std::fs::read_to_string(x.join("lib/systemd/system/glasswatch-agent.service"))
        .unwrap_or_else(|e| panic!("{e}"));
    let repo_unit = std::fs::read_to_string(repo().join("systemd/glasswatch-agent.service"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(unit, repo_unit);

    // Install, upgrade, purge on this machine: needs root and dpkg, and a
    // machine without the packages already.
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(!is_ci(), "CI runs as root");
        eprintln!("debs_build_install_upgrade_purge: install part skipped: not root");
        return;
    }
    for pkg in ["glasswatch-agent", "glasswatch-collector"] {
        if dpkg_installed(pkg) {
            eprintln!("debs_build_install_upgrade_purge: install part skipped: {pkg} is installed on this machine; not touching it");
            assert!(!is_ci(), "{pkg} installed before the test under CI");
            return;
        }
    }
    let (agent2, collector2) = build_debs(&dir.path().join("v2"), "0.1.0-2");
    let dpkg = |args: &[&str], debs: &[&Path]| -> String {
        let out = run(
            Command::new("dpkg")
                .args(["--force-confdef", "--force-confold"])
                .args(args)
                .args(debs)
                .env("DEBIAN_FRONTEND", "noninteractive"),
            TOOL_TIMEOUT,
        );
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "dpkg {args:?}: {all}");
        all
    };
    // Purge whatever happens below.
    struct Purge;
    impl Drop for Purge {
        fn drop(&mut self) {
            let _ = Command::new("dpkg")
                .args(["--purge", "glasswatch-agent", "glasswatch-collector"])
                .output();
        }
    }
    let _purge = Purge;

    let said = dpkg(&["-i"], &[&agent1, &collector1]);
    assert!(said.contains("names no device"), "{said}");
    let id = ok(Command::new("id").arg("glasswatch"), TOOL_TIMEOUT);
    assert!(id.contains("(video)"), "glasswatch is not in video: {id}");
    ok(Command::new("id").arg("glasswatch-collector"), TOOL_TIMEOUT);
    let version = ok(
        Command::new("/usr/bin/glasswatch-agent").arg("--version"),
        TOOL_TIMEOUT,
    );
    assert!(version.starts_with("glasswatch-agent"), "{version}");
    let stat = ok(
        Command::new("stat")
            .args(["-c", "%U:%G %a"])
            .arg("/etc/glasswatch/agent.toml"),
        TOOL_TIMEOUT,
    );
    assert_eq!(stat.trim(), "root:glasswatch 640");
    let wants = Path::new("/etc/systemd/system/multi-user.target.wants");
    assert!(
        !wants.join("glasswatch-agent.service").exists(),
        "the agent was enabled before its config named a device"
    );
    assert!(
        wants.join("glasswatch-collector.service").exists(),
        "the collector is enabled on install"
    );

    // The admin names the device; an upgrade keeps the edit.
    let edited = packaged.replacen("# device_id", "device_id = \"deploy-test\"\n# device_id", 1);
    std::fs::write("/etc/glasswatch/agent.toml", &edited).unwrap_or_else(|e| panic!("{e}"));
    dpkg(&["-i"], &[&agent2, &collector2]);
    let kept =
        std::fs::read_to_string("/etc/glasswatch/agent.toml").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        kept.contains("device_id = \"deploy-test\""),
        "upgrade lost the config:\n{kept}"
    );
    let status = ok(
        Command::new("dpkg-query").args(["-W", "-f=${Version}", "glasswatch-agent"]),
        TOOL_TIMEOUT,
    );
    assert_eq!(status, "0.1.0-2");

    // Purge: binary, config and the config's owner override gone.
    dpkg(
        &["--purge", "glasswatch-agent", "glasswatch-collector"],
        &[],
    );
    assert!(!Path::new("/usr/bin/glasswatch-agent").exists());
    assert!(!Path::new("/etc/glasswatch/agent.toml").exists());
    assert!(!Path::new("/etc/glasswatch/collector.toml").exists());
    assert!(!wants.join("glasswatch-collector.service").exists());
    let overrides = ok(
        Command::new("dpkg-statoverride").arg("--list"),
        TOOL_TIMEOUT,
    );
    assert!(!overrides.contains("/etc/glasswatch/"), "{overrides}");
}

// ---------------------------------------------------------------- watchdog

/// Datagrams the agent sent to our stand-in for systemd's notify socket
/// within `window`.
fn notifications(sock: &std::os::unix::net::UnixDatagram, window: Duration) -> Vec<String> {
    let deadline = std::time::Instant::now() + window;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return got;
        }
        if sock.set_read_timeout(Some(left)).is_err() {
            return got;
        }
        match sock.recv(&mut buf) {
            Ok(n) => got.extend(text(&buf[..n]).lines().map(str::to_owned)),
            Err(_) => return got,
        }
    }
}

/// The real agent under a stand-in for systemd (`NOTIFY_SOCKET`,
/// `WATCHDOG_USEC`): while its stream correctly retries (nothing listens at
/// its publish URL) it feeds the watchdog; stopped (SIGSTOP, as a hung
/// process) it does not; continued, it feeds again. systemd itself cannot
/// run here (not PID 1), so the restart is systemd's part: what decides the
/// pings is agent/src/watchdog.rs, unit-tested there.
#[test]
fn agent_feeds_the_watchdog_only_while_running() {
    use glasswatch_testkit::peer::{Peer, Ready};
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path)
        .unwrap_or_else(|e| panic!("binding {}: {e}", sock_path.display()));
    let port = glasswatch_testkit::ports::free_port();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "device_id = \"wd\"\n[mqtt]\nenabled = false\n[[stream]]\nid = \"cam0\"\nsource = \"test\"\n\
             width = 320\nheight = 240\npublish_url = \"rtsp://127.0.0.1:{port}/wd-cam0\"\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(glasswatch_testkit::bins::bin_path("glasswatch-agent"));
    cmd.arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "4000000")
        .env_remove("WATCHDOG_PID");
    let mut agent = Peer::spawn(
        "glasswatch-agent",
        cmd,
        Ready::Spawned,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));

    // WatchdogSec=4: a ping each second (the agent pings at half the
    // interval, at most every second); a busy machine's slow pipeline
    // rebuilds stay well inside 4 s.
    let running = notifications(&sock, Duration::from_secs(6));
    assert!(
        running.iter().any(|l| l == "READY=1"),
        "{running:?}\n{}",
        agent.log_tail()
    );
    let pings = running.iter().filter(|l| *l == "WATCHDOG=1").count();
    assert!(
        pings >= 3,
        "retrying is correct and fed: {pings} pings in 6 s: {running:?}\n{}",
        agent.log_tail()
    );
    assert!(
        running
            .iter()
            .any(|l| l.starts_with("STATUS=") && l.contains("retrying")),
        "{running:?}"
    );

    agent
        .signal(libc::SIGSTOP)
        .unwrap_or_else(|e| panic!("{e:#}"));
    // What was queued before the stop may still arrive; then nothing.
    let _ = notifications(&sock, Duration::from_millis(300));
    let stopped = notifications(&sock, Duration::from_secs(3));
    assert!(
        !stopped.iter().any(|l| l == "WATCHDOG=1"),
        "a stopped agent fed the watchdog: {stopped:?}"
    );

    agent
        .signal(libc::SIGCONT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let resumed = notifications(&sock, Duration::from_secs(3));
    assert!(
        resumed.iter().any(|l| l == "WATCHDOG=1"),
        "{resumed:?}\n{}",
        agent.log_tail()
    );
    let _ = agent.terminate(Duration::from_secs(5));
}

// ---------------------------------------------------------------- install-device.sh

/// The config part of install-device.sh (`--config-only`: no package, no
/// systemd), checked by the real agent binary.
#[test]
fn install_device_writes_a_checked_config() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(repo().join("mediamtx.yml"), etc.join("mediamtx.yml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let agent = glasswatch_testkit::bins::bin_path("glasswatch-agent");
    let script = repo().join("deploy/install-device.sh");
    let install = |extra: &[&str]| {
        run(
            Command::new("bash")
                .arg(&script)
                .arg("--config-only")
                .arg("--etc")
                .arg(&etc)
                .args(extra)
                .env("GLASSWATCH_AGENT_BIN", &agent)
                .env("GLASSWATCH_MQTT_PASSWORD", "s3cret"),
            TOOL_TIMEOUT,
        )
    };
    let out = install(&[
        "--device-id",
        "pi-test",
        "--broker",
        "mqtts://broker.example.net:8883",
        "--mqtt-user",
        "pi-test",
        "--camera",
        "test",
        "--hls-host",
        "10.8.0.12",
        "--collector-ip",
        "10.8.0.1",
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let config = std::fs::read_to_string(etc.join("agent.toml")).unwrap_or_else(|e| panic!("{e}"));
    for want in [
        "device_id = \"pi-test\"",
        "url = \"mqtts://broker.example.net:8883\"",
        "username = \"pi-test\"",
        "source = \"test\"",
        "hls_url = \"http://10.8.0.12:8888/pi-test-cam0/index.m3u8\"",
    ] {
        assert!(config.contains(want), "{want} missing:\n{config}");
    }
    assert!(!config.contains("s3cret"), "the password is in the config");
    let pass = etc.join("mqtt.pass");
    assert_eq!(
        std::fs::read_to_string(&pass).unwrap_or_default(),
        "s3cret\n"
    );
    let mode = ok(
        Command::new("stat").args(["-c", "%a"]).arg(&pass),
        TOOL_TIMEOUT,
    );
    assert_eq!(mode.trim(), "640");
    let check = ok(
        Command::new(&agent)
            .arg("--config")
            .arg(etc.join("agent.toml"))
            .arg("--check-config"),
        TOOL_TIMEOUT,
    );
    assert!(check.contains("device pi-test"), "{check}");
    let yml = std::fs::read_to_string(etc.join("mediamtx.yml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        yml.contains("    ips: ['10.8.0.1']"),
        "read rule not narrowed"
    );
    assert!(!yml.contains("'192.168.0.0/16'"), "read rule not narrowed");

    // Bad input: refused before anything is written.
    std::fs::remove_file(etc.join("agent.toml")).unwrap_or_else(|e| panic!("{e}"));
    for bad in [
        &["--device-id", "Pi Test", "--broker", "mqtt://b"][..],
        &["--device-id", "pi", "--broker", "http://b"][..],
        &[
            "--device-id",
            "pi",
            "--broker",
            "mqtt://b",
            "--camera",
            "$(reboot)",
        ][..],
    ] {
        let out = install(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
        assert!(!etc.join("agent.toml").exists(), "{bad:?} wrote a config");
    }
}
