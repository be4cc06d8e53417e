//! The binary's contract with the pod: bad configuration is one line naming the
//! variable, and exit code 64.

use std::process::Command;

#[test]
fn bad_environment_exits_64_naming_the_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_bosun-sidecar"))
        .env_clear()
        .env("POD_NAMESPACE", "default")
        .env("POD_NAME", "p")
        .env("POD_UID", "u")
        .env("BOSUN_RUNTIME", "runtime:9470")
        .env("BOSUN_TOKEN", "t")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("BOSUN_RUNTIME"), "{err}");
    assert!(err.contains("http://HOST:PORT"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_bosun-sidecar"))
        .env_clear()
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("POD_NAMESPACE"));
}
