//! `bosun plugin test --review`: an admission plugin answers one AdmissionReview offline.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

fn bosun(args: &[&str]) -> Output {
    let cache = std::env::temp_dir().join("bosun-cli-tests-compiled");
    Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(args)
        .env("BOSUN_COMPILED_CACHE", cache)
        .output()
        .expect("bosun runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout_json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

/// A folder with an AdmissionReview of a pod with these labels, a pod object and an
/// empty cache folder.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(labels: Value) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "shop", "labels": labels},
            "spec": {"containers": [{"name": "app", "image": "app:v1"}]},
        });
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "shop",
                "name": "web-0",
                "operation": "CREATE",
                "userInfo": {"username": "alice"},
                "object": pod,
            },
        });
        std::fs::write(dir.path().join("review.json"), review.to_string()).expect("write");
        std::fs::write(dir.path().join("pod.json"), pod.to_string()).expect("write");
        std::fs::create_dir(dir.path().join("cache")).expect("mkdir");
        Files { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn zone_labeler_testdata(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/zone-labeler/testdata")
        .join(rel)
        .display()
        .to_string()
}

fn review(files: &Files, config: &str) -> Output {
    review_with(files, bosun_test_artifacts::TEST_ADMISSION, config)
}

fn review_with(files: &Files, plugin: &str, config: &str) -> Output {
    bosun(&[
        "plugin",
        "test",
        plugin,
        "--review",
        &files.path("review.json"),
        "--cache",
        &files.path("cache"),
        "--config",
        config,
    ])
}

#[test]
fn a_denial_is_printed_with_its_message() {
    let files = Files::new(json!({"app": "web"}));
    let out = review(&files, r#"{"require":"team"}"#);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = stdout_json(&out);
    assert_eq!(v["plugin"], "test-admission", "{v}");
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["uid"], "u-1", "{v}");
    assert_eq!(v["response"]["uid"], "u-1", "{v}");
    assert_eq!(v["response"]["allowed"], false, "{v}");
    assert_eq!(
        v["response"]["status"]["message"], "pods need a team label",
        "{v}"
    );
    assert!(v["response"].get("patchDecoded").is_none(), "{v}");
    assert!(v["logs"].is_array(), "{v}");

    // With the label, the same plugin allows.
    let files = Files::new(json!({"team": "a"}));
    let v = stdout_json(&review(&files, r#"{"require":"team"}"#));
    assert_eq!(v["response"]["allowed"], true, "{v}");
}

#[test]
fn a_patch_is_shown_decoded() {
    let files = Files::new(json!({"app": "web"}));
    let out = review(&files, r#"{"add":{"k":"v"}}"#);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = stdout_json(&out);
    let response = &v["response"];
    assert_eq!(response["allowed"], true, "{v}");
    assert_eq!(response["patchType"], "JSONPatch", "{v}");
    assert!(response["patch"].is_string(), "{v}");
    assert_eq!(
        response["patchDecoded"],
        json!([{"op": "add", "path": "/metadata/labels/k", "value": "v"}]),
        "{v}"
    );
}

#[test]
fn a_failing_review_exits_non_zero_with_its_error() {
    let files = Files::new(json!({}));
    let out = review(&files, r#"{"mode":"error"}"#);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = stdout_json(&out);
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["outcome"]["kind"], "plugin-error", "{v}");
}

#[test]
fn object_with_an_admission_plugin_says_to_use_review() {
    let files = Files::new(json!({}));
    let out = bosun(&[
        "plugin",
        "test",
        bosun_test_artifacts::TEST_ADMISSION,
        "--object",
        &files.path("pod.json"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("is an admission plugin") && err.contains("--review FILE"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn review_with_a_controller_plugin_says_to_use_object() {
    let files = Files::new(json!({}));
    let out = bosun(&[
        "plugin",
        "test",
        bosun_test_artifacts::ZONE_LABELER,
        "--review",
        &files.path("review.json"),
        "--cache",
        &zone_labeler_testdata("cache"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("is a controller plugin") && err.contains("--object FILE"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_review_file_that_is_not_an_admission_review_is_refused() {
    let files = Files::new(json!({}));
    // A pod is valid JSON but no AdmissionReview.
    let out = bosun(&[
        "plugin",
        "test",
        bosun_test_artifacts::TEST_ADMISSION,
        "--review",
        &files.path("pod.json"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("pod.json") && err.contains("is not an AdmissionReview"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // An AdmissionReview without a request.
    let empty = files.dir.path().join("empty.json");
    std::fs::write(
        &empty,
        r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
    )
    .expect("write");
    let out = bosun(&[
        "plugin",
        "test",
        bosun_test_artifacts::TEST_ADMISSION,
        "--review",
        &empty.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("without a request"),
        "{}",
        stderr(&out)
    );

    // Not JSON or YAML at all.
    let bad = files.dir.path().join("bad.json");
    std::fs::write(&bad, "{ nope: [").expect("write");
    let out = bosun(&[
        "plugin",
        "test",
        bosun_test_artifacts::TEST_ADMISSION,
        "--review",
        &bad.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not valid JSON or YAML"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn object_and_review_together_are_a_usage_error() {
    let files = Files::new(json!({}));
    let out = bosun(&[
        "plugin",
        "test",
        bosun_test_artifacts::TEST_ADMISSION,
        "--object",
        &files.path("pod.json"),
        "--review",
        &files.path("review.json"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--review"), "{}", stderr(&out));
}

#[test]
fn the_review_reads_the_offline_cache() {
    // The SidecarSet injector finds what to inject in its cache: the --cache folder.
    let files = Files::new(json!({"app": "web"}));
    let sidecarset = json!({
        "apiVersion": "bosun.dev/v1alpha1",
        "kind": "SidecarSet",
        "metadata": {"name": "logs"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "containers": [{"name": "logs-sc", "image": "logs:1"}],
        },
    });
    std::fs::write(
        files.dir.path().join("cache/sidecarset.json"),
        sidecarset.to_string(),
    )
    .expect("write");
    let out = bosun(&[
        "plugin",
        "test",
        bosun_test_artifacts::SIDECARSET_INJECTOR,
        "--review",
        &files.path("review.json"),
        "--cache",
        &files.path("cache"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = stdout_json(&out);
    assert_eq!(v["response"]["allowed"], true, "{v}");
    let ops = v["response"]["patchDecoded"].as_array().expect("a patch");
    assert!(ops.iter().any(|o| o.to_string().contains("logs-sc")), "{v}");

    // Without it, nothing is injected.
    std::fs::remove_file(files.dir.path().join("cache/sidecarset.json")).expect("rm");
    let v = stdout_json(&review_with(
        &files,
        bosun_test_artifacts::SIDECARSET_INJECTOR,
        "{}",
    ));
    assert!(!v["response"].to_string().contains("logs-sc"), "{v}");
}
