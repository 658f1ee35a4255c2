//! Locating workspace binaries (such as `glasswatch-test-origin`) from a
//! running test.
//!
//! A test executable lives in `target/<profile>/deps/`; the workspace's
//! binaries live one level up, in `target/<profile>/`. Cargo builds the
//! binaries of the package under test, but not those of its dependencies, so
//! a test in another crate needs `cargo build --workspace --bins` first; the
//! error says so.

use std::path::PathBuf;

use anyhow::{bail, Context as _};

/// The path of workspace binary `name` next to the running executable.
///
/// # Panics
///
/// If it is not there, with the command that builds it; see [`try_bin_path`].
pub fn bin_path(name: &str) -> PathBuf {
    try_bin_path(name).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The path of workspace binary `name` next to the running executable, or an
/// error telling how to build it.
pub fn try_bin_path(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running executable")?;
    let mut dir = exe
        .parent()
        .with_context(|| format!("{} has no parent directory", exe.display()))?;
    if dir
        .file_name()
        .is_some_and(|n| n == "deps" || n == "examples")
    {
        dir = dir.parent().unwrap_or(dir);
    }
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        bail!(
            "binary {name} not found at {}: run `cargo build --workspace --bins` \
             (with the same profile as the tests) before these tests",
            path.display()
        );
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_says_how_to_build_it() {
        let err = try_bin_path("glasswatch-no-such-binary").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("cargo build --workspace --bins"), "{msg}");
        assert!(msg.contains("glasswatch-no-such-binary"), "{msg}");
    }

    #[test]
    fn origin_binary_is_found_in_this_package() {
        // Cargo builds this package's binaries before its tests.
        let path = try_bin_path(crate::origin::ORIGIN_BIN).unwrap();
        assert!(path.is_file());
    }
}
