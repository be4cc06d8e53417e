//! The admission world of the Go and JavaScript SDKs through bosun-host: the same plugin
//! in each (`plugins/go-admission`, `plugins/js-admission`) allows with a JSON patch or
//! denies, and reads the cache on the way, with identical answers.

use std::sync::Arc;

use bosun_conformance::{NOW_MS, crate_dir, engine};
use bosun_host::host::{cache, clock, commands, log};
use bosun_host::{Revision, Services, Source, Spec, World};
use serde_json::{Value, json};

fn review(labels: Value) -> String {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u-1", "namespace": "shop", "operation": "CREATE",
                    "object": {"apiVersion": "v1", "kind": "Pod",
                               "metadata": {"name": "web-0", "namespace": "shop", "labels": labels}}},
    })
    .to_string()
}

#[test]
fn go_admission_allows_with_a_patch_or_denies() {
    allows_with_a_patch_or_denies("go-admission");
}

#[test]
fn js_admission_allows_with_a_patch_or_denies() {
    allows_with_a_patch_or_denies("js-admission");
}

fn allows_with_a_patch_or_denies(plugin: &str) {
    let wasm = bosun_cli::plugin::build_with(&crate_dir().join("plugins").join(plugin), false)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut objects = bosun_cli::offline::OfflineCache::default();
    objects
        .insert(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}))
        .expect("namespace");
    let logs = Arc::new(log::Memory::default());
    let services = Services {
        cache: Arc::new(objects),
        state: Arc::new(cache::MemoryState::default()),
        commands: Arc::new(commands::Recorder::default()),
        log: logs.clone(),
        clock: Arc::new(clock::Fixed(NOW_MS)),
        pod: None,
    };
    let engine = engine(None).expect("engine");
    let source = Source::file(&wasm).expect("read");
    let revision = Revision::load(&engine, &source, Spec::new(services)).expect("load");
    assert_eq!(revision.info().world, World::Admission);
    assert_eq!(revision.name(), plugin);

    let allowed: Value = serde_json::from_str(
        &revision
            .review(&review(json!({"app": "web"})))
            .expect("review"),
    )
    .expect("JSON");
    assert_eq!(allowed["response"]["uid"], "u-1");
    assert_eq!(allowed["response"]["allowed"], true);
    assert_eq!(allowed["response"]["patchType"], "JSONPatch");
    // base64 of [{"op":"add","path":"/metadata/labels/admitted-by","value":"bosun"}]
    assert_eq!(
        allowed["response"]["patch"],
        "W3sib3AiOiJhZGQiLCJwYXRoIjoiL21ldGFkYXRhL2xhYmVscy9hZG1pdHRlZC1ieSIsInZhbHVlIjoiYm9zdW4ifV0="
    );

    let denied: Value =
        serde_json::from_str(&revision.review(&review(json!({}))).expect("review")).expect("JSON");
    assert_eq!(denied["response"]["allowed"], false);
    assert_eq!(
        denied["response"]["status"]["message"],
        "pods need an app label"
    );

    let lines: Vec<String> = logs.take().into_iter().map(|l| l.message).collect();
    assert_eq!(
        lines,
        ["review web-0 in shop (namespace cached: true)"; 2].to_vec()
    );
    let err = revision.review("{not json").expect_err("not JSON");
    assert!(
        err.to_string().contains("invalid AdmissionReview JSON"),
        "{err}"
    );
}
