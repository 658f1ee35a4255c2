//! Checks, before the collector is compiled, that the dashboard's
//! third-party browser libraries are installed where `dashboard.rs` embeds
//! them from (`collector/web/node_modules`, filled by `npm ci` from
//! `collector/web/package-lock.json`, which pins each version with its
//! integrity hash), and that the installed versions are the pinned ones.
//! Nothing is downloaded here: a missing library fails the build with the
//! command that fetches it.

use std::path::Path;

/// The files `dashboard.rs` embeds, by package.
const FILES: &[(&str, &[&str])] = &[
    ("hls.js", &["dist/hls.min.mjs"]),
    ("uplot", &["dist/uPlot.esm.js", "dist/uPlot.min.css"]),
];

fn main() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    println!("cargo:rerun-if-changed=web/package.json");
    println!("cargo:rerun-if-changed=web/package-lock.json");
    let manifest = std::fs::read_to_string(web.join("package.json")).unwrap_or_default();
    for (package, files) in FILES {
        let dir = web.join("node_modules").join(package);
        for file in *files {
            let path = dir.join(file);
            println!("cargo:rerun-if-changed={}", path.display());
            if !path.is_file() {
                panic!(
                    "\n\nThe dashboard's browser library {package} is not installed \
                     ({} is missing).\nRun scripts/install-deps.sh (it runs `npm ci` in \
                     collector/web), or `cd collector/web && npm ci`.\n\n",
                    path.display()
                );
            }
        }
        // The installed version must be the one package.json pins.
        let installed = std::fs::read_to_string(dir.join("package.json")).unwrap_or_default();
        let version = field(&installed, "version");
        let pinned = format!("\"{package}\": \"{}\"", version.unwrap_or_default());
        if version.is_none() || !manifest.contains(&pinned) {
            panic!(
                "\n\ncollector/web/node_modules/{package} is version {version:?}, not the one \
                 collector/web/package.json pins.\nRun `cd collector/web && npm ci` \
                 (scripts/install-deps.sh does).\n\n"
            );
        }
    }
}

/// The value of a top-level string field of a package.json (its first
/// occurrence, which is the top-level one in npm's own files).
fn field<'a>(json: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("\"{name}\"");
    let rest = &json[json.find(&key)? + key.len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}
