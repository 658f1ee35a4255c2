//! The skip-or-fail policy for tests that need an outside tool.
//!
//! A test that needs a real component (ffmpeg, a GStreamer element, later
//! mosquitto, PostgreSQL, Chromium) asks [`require`] first. When the
//! component is present it returns `true`. When it is missing:
//!
//! - in strict mode the test **fails**: everything was meant to be
//!   installed, so a missing component is a broken install step, and the
//!   panic message names the package to install. Strict mode is `CI=true`
//!   (or `CI=1`), and `GLASSWATCH_STRICT=1` (or `true`), which
//!   `scripts/test.sh` sets unless it is already set (`GLASSWATCH_STRICT=0
//!   scripts/test.sh` skips instead);
//! - elsewhere (a bare `cargo test`) it prints `skipped: <component> missing
//!   (...)` to stderr and returns `false`, and the test returns early.
//!
//! ```no_run
//! #[test]
//! fn reads_hls() {
//!     if !glasswatch_testkit::require_program("ffmpeg") {
//!         return;
//!     }
//!     // ...
//! }
//! ```

use std::path::{Path, PathBuf};

/// Whether this run is CI (`CI=true` or `CI=1`).
pub fn is_ci() -> bool {
    flag("CI")
}

/// Whether missing components fail tests: under CI, or with
/// `GLASSWATCH_STRICT=1` (or `true`), as `scripts/test.sh` runs them.
pub fn is_strict() -> bool {
    is_ci() || flag("GLASSWATCH_STRICT")
}

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Applies the policy to `component`: `probe` returns `Err(why)` when it is
/// missing, where `why` names what to install.
///
/// # Panics
///
/// In strict mode ([`is_strict`]), when the component is missing.
pub fn require(component: &str, probe: impl FnOnce() -> Result<(), String>) -> bool {
    match probe() {
        Ok(()) => true,
        Err(why) if is_strict() => {
            panic!(
                "{component} missing (strict: CI=true or GLASSWATCH_STRICT=1, as scripts/test.sh \
                 sets it): {why}"
            )
        }
        Err(why) => {
            eprintln!("skipped: {component} missing ({why})");
            false
        }
    }
}

/// Requires an executable `name` on `PATH`.
pub fn require_program(name: &str) -> bool {
    require(name, || {
        find_program(name).map(|_| ()).ok_or_else(|| {
            format!(
                "`{name}` is not on PATH; install it with `{}`",
                program_install_hint(name)
            )
        })
    })
}

/// Requires every GStreamer element factory in `elements` (checked in
/// process through the GStreamer registry).
pub fn require_gst_elements(elements: &[&str]) -> bool {
    let component = format!("GStreamer elements {}", elements.join(", "));
    require(&component, || {
        gstreamer::init().map_err(|e| {
            format!(
                "GStreamer does not initialise ({e}); install `apt-get install libgstreamer1.0-0`"
            )
        })?;
        let missing: Vec<&str> = elements
            .iter()
            .copied()
            .filter(|e| gstreamer::ElementFactory::find(e).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut packages: Vec<&str> = missing.iter().map(|e| gst_element_package(e)).collect();
        packages.sort_unstable();
        packages.dedup();
        Err(format!(
            "missing element(s) {}; install them with `apt-get install {}`",
            missing.join(", "),
            packages.join(" ")
        ))
    })
}

/// Everything the RTSP/HLS origin tests use: `gst-launch-1.0`, `ffmpeg`,
/// `ffprobe`, and the GStreamer elements of the test publisher and of
/// `glasswatch-test-origin`.
pub fn require_origin_stack() -> bool {
    require_program("gst-launch-1.0")
        && require_program("ffmpeg")
        && require_program("ffprobe")
        && require_gst_elements(&[
            "videotestsrc",
            "x264enc",
            "h264parse",
            "rtspclientsink",
            "rtph264depay",
            "hlssink2",
            "mpegtsmux",
        ])
}

/// mosquitto and its clients (apt: mosquitto mosquitto-clients), with the
/// origin stack the MQTT tests also use.
pub fn require_mqtt_stack() -> bool {
    require("mosquitto (apt: mosquitto mosquitto-clients)", || {
        for p in [
            "mosquitto",
            "mosquitto_sub",
            "mosquitto_pub",
            "mosquitto_passwd",
        ] {
            if find_program(p).is_none() {
                return Err(format!("{p} not found"));
            }
        }
        Ok(())
    }) && require_origin_stack()
}

/// The first executable called `name` on `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return is_executable(Path::new(name)).then(|| PathBuf::from(name));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The Debian install command for a program the tests use.
fn program_install_hint(name: &str) -> String {
    let package = match name {
        "ffmpeg" | "ffprobe" => "ffmpeg",
        "gst-launch-1.0" | "gst-inspect-1.0" => "gstreamer1.0-tools",
        "mosquitto" | "mosquitto_sub" | "mosquitto_pub" => "mosquitto mosquitto-clients",
        "postgres" | "initdb" | "pg_ctl" => "postgresql-15 postgresql-client-15",
        "chromium" | "chromium-browser" => "chromium",
        other => other,
    };
    format!("apt-get install {package}")
}

/// The Debian package (bookworm, GStreamer 1.22) holding a GStreamer element.
fn gst_element_package(element: &str) -> &'static str {
    match element {
        "x264enc" => "gstreamer1.0-plugins-ugly",
        "rtspclientsink" => "gstreamer1.0-rtsp",
        "hlssink2" | "hlssink" | "h264parse" | "mpegtsmux" | "tsdemux" => {
            "gstreamer1.0-plugins-bad"
        }
        "rtph264pay" | "rtph264depay" | "splitmuxsink" | "qtmux" | "mp4mux" | "rtspsrc"
        | "rtpbin" => "gstreamer1.0-plugins-good",
        "videotestsrc" | "videoconvert" | "videoscale" | "appsrc" | "appsink" | "timeoverlay"
        | "clockoverlay" | "textoverlay" => "gstreamer1.0-plugins-base",
        "avdec_h264" => "gstreamer1.0-libav",
        _ => "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_components_are_required_without_fuss() {
        assert!(require("always", || Ok(())));
        assert!(find_program("sh").is_some());
    }

    #[test]
    fn missing_component_skips_outside_ci_and_panics_under_ci() {
        let probe = || Err("install it with `apt-get install nothing`".to_owned());
        if is_strict() {
            let caught = std::panic::catch_unwind(|| require("nothing", probe));
            let msg = caught.unwrap_err();
            let msg = msg.downcast_ref::<String>().unwrap();
            assert!(msg.contains("apt-get install nothing"), "{msg}");
        } else {
            assert!(!require("nothing", probe));
        }
    }

    #[test]
    fn hints_name_packages() {
        assert_eq!(program_install_hint("ffprobe"), "apt-get install ffmpeg");
        assert_eq!(gst_element_package("x264enc"), "gstreamer1.0-plugins-ugly");
        assert_eq!(gst_element_package("rtspclientsink"), "gstreamer1.0-rtsp");
    }
}
