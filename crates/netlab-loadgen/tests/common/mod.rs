//! What the test binaries share: the echo servers, built once per test binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use netlab_loadgen::servers;

/// Builds the echo servers once per test binary and returns their directory.
pub fn server_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let profile = servers::own_profile_dir().expect("test binary location");
        let root = servers::workspace_root().expect("tests run from the workspace");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .current_dir(&root)
            .args(["build", "--quiet", "--bins", "-p", "netlab"])
            .env("CARGO_TARGET_DIR", profile.parent().unwrap());
        if profile.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build
            .status()
            .expect("run cargo build for the echo servers");
        assert!(status.success(), "building the echo servers failed");
        profile
    })
}
