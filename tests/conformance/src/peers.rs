//! The peers of the peer comparison (`peers/`, `benches/peers.rs`): building the Go ones
//! and running a hook once.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The `peers/` folder.
pub fn dir() -> PathBuf {
    crate::crate_dir().join("peers")
}

/// Builds the Go peer `./cmd/NAME` into the guest target folder; its path.
pub fn build(name: &str) -> PathBuf {
    let out = crate::guest_target_dir().join("peers").join(name);
    let status = crate::go_command()
        .args(["build", "-o"])
        .arg(&out)
        .arg(format!("./cmd/{name}"))
        .current_dir(dir())
        .status()
        .unwrap_or_else(|e| panic!("cannot run go (run .ci/setup): {e}"));
    assert!(status.success(), "go build ./cmd/{name} failed");
    out
}

/// Runs a hook once: `input` on its stdin, its stdout back. A hook that fails panics.
pub fn run_hook(program: &Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).expect("write the binding");
    }
    let out = child.wait_with_output().expect("the hook's output");
    assert!(out.status.success(), "{} failed", program.display());
    out.stdout
}
