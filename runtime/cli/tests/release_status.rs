//! `bosun release status` against the embedded cluster, with the runtime running the
//! release plugin: what the plugin writes is what the command prints.

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use bosun_host::host::log;
use bosun_host::load::Source;
use bosun_runtime::{Config, Runtime};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

fn bosun(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("bosun runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

use bosun_test_support::eventually;

fn statefulset(name: &str, annotations: Value) -> StatefulSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {
            "replicas": 2, "serviceName": name, "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": {"type": "OnDelete"},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "app:v1"}]}}
        }
    }))
    .expect("statefulset")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_what_the_release_plugin_reports() {
    let cluster = bosun_cluster::start(bosun_cluster::Config {
        nodes: 2,
        ..Default::default()
    })
    .await
    .expect("cluster");
    let client = cluster.client().await.expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: dir.path().join("rt"),
        admin_addr: "127.0.0.1:0".parse().expect("addr"),
        resync_seconds: 0,
        ..Default::default()
    };
    let rt = Runtime::start_with(config, client.clone(), Arc::new(log::Memory::default()))
        .await
        .expect("runtime");
    let source =
        Source::file(std::path::Path::new(bosun_test_artifacts::RELEASE)).expect("artifact");
    rt.install(&source, r#"{"pollMs": 50}"#).expect("release");

    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let strategy = "release.bosun.dev/strategy";
    for s in [
        statefulset("web", json!({strategy: "InPlaceIfPossible"})),
        statefulset(
            "bad",
            json!({strategy: "InPlaceIfPossible", "release.bosun.dev/max-unavailable": "200%"}),
        ),
        statefulset("plain", json!({})),
    ] {
        sts.create(&PostParams::default(), &s)
            .await
            .expect("create");
    }
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:v2"}]}}}});
    sts.patch("web", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("new image");
    let status = |name: &'static str| {
        let sts = sts.clone();
        async move {
            sts.get(name)
                .await
                .ok()
                .and_then(|s| s.metadata.annotations)
                .and_then(|a| a.get("release.bosun.dev/status").cloned())
                .and_then(|s| serde_json::from_str::<Value>(&s).ok())
                .unwrap_or(Value::Null)
        }
    };
    eventually("web released", Duration::from_secs(30), || async {
        let s = status("web").await;
        s["updated"] == 2 && s["ready"] == 2
    })
    .await;
    eventually("bad refused", Duration::from_secs(10), || async {
        status("bad").await["paused"].is_string()
    })
    .await;

    let kubeconfig = cluster.kubeconfig_path().display().to_string();
    let out = tokio::task::spawn_blocking({
        let kc = kubeconfig.clone();
        move || bosun(&["release", "status", "--kubeconfig", &kc])
    })
    .await
    .expect("join");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "header + 2 opted-in StatefulSets: {text}");
    assert!(
        lines[0].starts_with("STATEFULSET") && lines[0].contains("PAUSED"),
        "{text}"
    );
    assert!(lines[1].starts_with("default/bad"), "{text}");
    assert!(
        lines[1].contains("release.bosun.dev/max-unavailable"),
        "the paused reason names the annotation: {text}"
    );
    assert!(lines[2].starts_with("default/web"), "{text}");
    let fields: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(fields[1], "InPlaceIfPossible", "{text}");
    assert!(fields[2].starts_with("web-"), "the revision: {text}");
    assert_eq!(&fields[3..8], ["2", "2", "2", "0", "-"], "{text}");

    let out = tokio::task::spawn_blocking({
        let kc = kubeconfig.clone();
        move || {
            bosun(&[
                "release",
                "status",
                "default/web",
                "--json",
                "--kubeconfig",
                &kc,
            ])
        }
    })
    .await
    .expect("join");
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(rows[0]["name"], "web");
    assert_eq!(rows[0]["total"], 2);
    assert_eq!(rows[0]["paused"], Value::Null);

    // Bad input: one line naming the problem, non-zero exit.
    for (args, wanted) in [
        (
            vec!["default/plain"],
            "no release.bosun.dev/strategy annotation",
        ),
        (vec!["default/missing"], "not found"),
        (vec!["a/b/c"], "NAMESPACE/NAME"),
    ] {
        let kc = kubeconfig.clone();
        let out = tokio::task::spawn_blocking(move || {
            let mut all = vec!["release", "status", "--kubeconfig", &kc];
            all.extend(args);
            bosun(&all)
        })
        .await
        .expect("join");
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains(wanted), "{err}");
    }
    rt.shutdown().await;
    cluster.shutdown().await;
}
