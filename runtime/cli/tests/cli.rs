//! The `bosun` binary as a user runs it.

use std::path::Path;
use std::process::{Command, Output};

fn bosun(args: &[&str]) -> Output {
    let cache = std::env::temp_dir().join("bosun-cli-tests-compiled");
    Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(args)
        .env("BOSUN_COMPILED_CACHE", cache)
        .output()
        .expect("bosun runs")
}

fn testdata(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/zone-labeler/testdata")
        .join(rel)
        .display()
        .to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn inspect_shows_world_metadata_and_digest() {
    let out = bosun(&["plugin", "inspect", bosun_test_artifacts::ZONE_LABELER]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("bosun:operator/controller@0.1.0"), "{text}");
    assert!(text.contains("plugin       zone-labeler"), "{text}");
    assert!(text.contains("digest       sha256:"), "{text}");
    assert!(text.contains("subscribes   v1/Pod"), "{text}");

    let json = bosun(&[
        "plugin",
        "inspect",
        "--json",
        bosun_test_artifacts::ZONE_LABELER,
    ]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(v["info"]["world"], "controller");
    assert_eq!(v["metadata"]["name"], "zone-labeler");
}

#[test]
fn test_prints_the_commands_and_the_outcome() {
    let out = bosun(&[
        "plugin",
        "test",
        bosun_test_artifacts::ZONE_LABELER,
        "--object",
        &testdata("pod.json"),
        "--cache",
        &testdata("cache"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "ok");
    assert_eq!(v["commands"].as_array().map(Vec::len), Some(1), "{v}");
    let command = &v["commands"][0]["command"];
    assert_eq!(command["command"], "merge-patch");
    assert!(
        command["patch"]["metadata"]["labels"]["topology.kubernetes.io/zone"].is_string(),
        "{command}"
    );
}

#[test]
fn a_failing_plugin_exits_non_zero_with_its_error() {
    let out = bosun(&[
        "plugin",
        "test",
        bosun_test_artifacts::HOSTILE,
        "--object",
        &testdata("pod.json"),
        "--config",
        r#"{"mode":"error"}"#,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "error");
    assert_eq!(v["outcome"]["kind"], "plugin-error");
}

#[test]
fn bad_input_gets_one_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let not_wasm = dir.path().join("x.wasm");
    std::fs::write(&not_wasm, "hello").expect("write");
    let out = bosun(&["plugin", "inspect", not_wasm.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("x.wasm") && err.contains("not a WebAssembly file"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let bad_json = dir.path().join("bad.json");
    std::fs::write(&bad_json, "{ nope: [").expect("write");
    let out = bosun(&[
        "plugin",
        "test",
        bosun_test_artifacts::ZONE_LABELER,
        "--object",
        bad_json.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("bad.json"), "{}", stderr(&out));

    let out = bosun(&[
        "plugin",
        "test",
        bosun_test_artifacts::ZONE_LABELER,
        "--object",
        &testdata("pod.json"),
        "--config",
        "{",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--config is not valid JSON"),
        "{}",
        stderr(&out)
    );

    let out = bosun(&["plugin", "frobnicate"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad flag or subcommand exits 2"
    );
}

#[test]
fn an_invalid_config_file_is_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bosun.yaml");
    std::fs::write(&config, "queue:\n  concurency: 3\n").expect("write");
    let out = bosun(&["run", "--config", config.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("bosun.yaml") && err.contains("concurency"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let out = bosun(&["run", "--admin-addr", "not-an-address"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn status_without_a_runtime_says_what_to_start() {
    let out = bosun(&["status", "--admin", "127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is `bosun up` or `bosun run` running?"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    // `-vv`: trace logging, so the plugin's load writes log lines to stderr (a pipe here).
    let out = bosun(&[
        "-vv",
        "plugin",
        "inspect",
        bosun_test_artifacts::ZONE_LABELER,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.is_empty(), "trace logging wrote nothing");
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escape codes in a non-terminal log: {err}"
    );
}
