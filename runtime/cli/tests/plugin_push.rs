//! `bosun plugin push|status|history|promote|rollback` against the embedded cluster with
//! the Plugin CRD installed: the real binary, through `--kubeconfig`. No runtime drives the
//! Plugins here, so where a status is needed the test writes it as the runtime would.

use std::process::{Command, Output};
use std::time::Duration;

use bosun_api::plugin::{Plugin, Source, Strategy};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

struct Bosun {
    kubeconfig: String,
    cache: String,
}

impl Bosun {
    /// Runs `bosun ARGS --kubeconfig ...` off the async runtime (the cluster runs on it).
    async fn run(&self, args: &[&str]) -> Output {
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        args.extend(["--kubeconfig".to_owned(), self.kubeconfig.clone()]);
        let cache = self.cache.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_bosun"))
                .args(&args)
                .env_remove("KUBECONFIG")
                .env("BOSUN_COMPILED_CACHE", cache)
                .output()
                .expect("bosun runs")
        })
        .await
        .expect("join")
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The command failed with `code` and said why in one line containing `words`.
fn assert_fails(o: &Output, code: i32, words: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("bosun: "), "{err}");
    for w in words {
        assert!(err.contains(w), "{w:?} in: {err}");
    }
}

/// `bytes` with a custom section appended: the same plugin, another digest.
fn with_custom_section(bytes: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut content = Vec::new();
    leb(name.len(), &mut content);
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(payload);
    let mut out = bytes.to_vec();
    out.push(0);
    leb(content.len(), &mut out);
    out.extend_from_slice(&content);
    out
}

fn digest(bytes: &[u8]) -> String {
    bosun_host::load::digest(bytes)
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").expect("sha256:")
}

async fn install_crd(client: &kube::Client) {
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(&bosun_api::plugin::crd_yaml().expect("yaml")).expect("crd");
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .expect("the CRD is accepted");
    let plugins: Api<Plugin> = Api::namespaced(client.clone(), "default");
    for _ in 0..100 {
        if plugins.list(&ListParams::default()).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Plugins are not served");
}

/// The ConfigMap, key and sha256 a Plugin's source names.
fn configmap_source(plugin: &Plugin) -> (String, String, String) {
    match &plugin.spec.source {
        Source::ConfigMap { name, key, sha256 } => (name.clone(), key.clone(), sha256.clone()),
        other => panic!("source is not a ConfigMap: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_status_promote_and_rollback_on_the_embedded_cluster() {
    let cluster = bosun_cluster::start(bosun_cluster::Config {
        nodes: 0,
        ..Default::default()
    })
    .await
    .expect("cluster");
    let client = cluster.client().await.expect("client");
    install_crd(&client).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let bosun = Bosun {
        kubeconfig: cluster.kubeconfig_path().display().to_string(),
        cache: dir.path().join("compiled").display().to_string(),
    };
    let plugins: Api<Plugin> = Api::namespaced(client.clone(), "default");
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    // v1: a direct rollout with a config.
    let v1 = std::fs::read(bosun_test_artifacts::ZONE_LABELER).expect("artifact");
    let d1 = digest(&v1);
    let out = bosun
        .run(&[
            "plugin",
            "push",
            bosun_test_artifacts::ZONE_LABELER,
            "--name",
            "zone-labeler",
            "--config",
            r#"{"label": "topology.kubernetes.io/zone"}"#,
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&d1), "prints the digest: {text}");
    assert!(text.contains("direct"), "prints the rollout: {text}");
    let cm1 = format!("bosun-plugin-zone-labeler-{}", &hex(&d1)[..12]);
    assert!(text.contains(&cm1), "prints the ConfigMap: {text}");

    let cm = configmaps.get(&cm1).await.expect("the ConfigMap exists");
    assert_eq!(cm.immutable, Some(true));
    let labels = cm.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("bosun.dev/plugin").map(String::as_str),
        Some("zone-labeler")
    );
    assert_eq!(
        labels.get("bosun.dev/digest").map(String::as_str),
        Some(&hex(&d1)[..63])
    );
    let stored = cm
        .binary_data
        .as_ref()
        .and_then(|b| b.get("plugin.wasm"))
        .expect("binaryData plugin.wasm");
    assert!(stored.0 == v1, "the ConfigMap holds the component's bytes");

    let p = plugins
        .get("zone-labeler")
        .await
        .expect("the Plugin exists");
    assert_eq!(
        configmap_source(&p),
        (cm1.clone(), "plugin.wasm".to_owned(), d1.clone()),
        "the source names the ConfigMap and the component's full sha256"
    );
    assert_eq!(p.spec.world, bosun_api::plugin::World::Controller);
    assert_eq!(
        p.spec.config,
        Some(json!({"label": "topology.kubernetes.io/zone"}))
    );
    assert_eq!(p.spec.rollout.strategy, Strategy::Direct);
    assert!(
        p.spec
            .permissions
            .iter()
            .any(|g| g.kind == "Pod" && g.verbs.iter().any(|v| v == "patch")),
        "grants what the metadata asks: {:?}",
        p.spec.permissions
    );

    // v2: the same plugin with a custom section, as a 20% canary; the config is kept.
    let v2 = with_custom_section(&v1, "bosun-test", b"v2");
    let d2 = digest(&v2);
    assert_ne!(d1, d2);
    let v2_path = dir.path().join("zone-labeler-v2.wasm");
    std::fs::write(&v2_path, &v2).expect("write v2");
    let v2_arg = v2_path.display().to_string();
    let out = bosun
        .run(&[
            "plugin",
            "push",
            &v2_arg,
            "--name",
            "zone-labeler",
            "--canary",
            "20%",
            "--window",
            "60",
            "--max-error-rate",
            "5%",
            "--min-samples",
            "10",
            "--manual-promotion",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("canary 20%"), "{}", stdout(&out));
    let cm2 = format!("bosun-plugin-zone-labeler-{}", &hex(&d2)[..12]);
    let p = plugins.get("zone-labeler").await.expect("plugin");
    assert_eq!(configmap_source(&p).0, cm2);
    assert_eq!(p.spec.rollout.strategy, Strategy::Canary);
    let canary = p.spec.rollout.canary.clone().expect("canary settings");
    assert_eq!(canary.share, Some(20));
    assert_eq!(canary.analysis.window_seconds, Some(60));
    assert_eq!(canary.analysis.max_error_rate, Some(0.05));
    assert_eq!(canary.analysis.min_samples, Some(10));
    assert!(canary.manual_promotion);
    assert_eq!(
        p.spec.config,
        Some(json!({"label": "topology.kubernetes.io/zone"})),
        "a push without --config keeps the config"
    );
    let stored = configmaps
        .list(&ListParams::default().labels("bosun.dev/plugin=zone-labeler"))
        .await
        .expect("list");
    let mut names: Vec<String> = stored
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    names.sort();
    let mut want = vec![cm1.clone(), cm2.clone()];
    want.sort();
    assert_eq!(names, want, "both revisions are kept");

    // Pushing the same bytes again stores nothing new.
    let out = bosun
        .run(&["plugin", "push", &v2_arg, "--name", "zone-labeler"])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("already stored"), "{}", stdout(&out));

    // No runtime: the status is empty, and the table still prints.
    let out = bosun.run(&["plugin", "status"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("DEGRADED"),
        "{text}"
    );
    let fields: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &fields[..4],
        ["zone-labeler", "controller", "-", "-"],
        "{text}"
    );

    // Promote needs a canary in the status.
    let out = bosun.run(&["plugin", "promote", "zone-labeler"]).await;
    assert_fails(&out, 1, &["default/zone-labeler", "no canary"]);

    // Rollback to v1 by a digest prefix: the source points back at v1's ConfigMap.
    let out = bosun
        .run(&["plugin", "rollback", "zone-labeler", "--to", &hex(&d1)[..8]])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&d1), "{}", stdout(&out));
    let p = plugins.get("zone-labeler").await.expect("plugin");
    assert_eq!(configmap_source(&p).0, cm1);
    assert_eq!(configmap_source(&p).2, d1, "the rollback names v1's sha256");
    assert_eq!(p.spec.rollout.strategy, Strategy::Direct);
    assert_eq!(p.spec.rollout.canary, None);
    assert_eq!(p.spec.world, bosun_api::plugin::World::Controller);
    assert!(p.spec.config.is_some(), "the config survives a rollback");

    // With a status as the runtime writes it: status, history and promote read it.
    let status = json!({"status": {
        "stableRevision": d1,
        "canaryRevision": d2,
        "canaryShare": 20,
        "revisions": {
            d1.clone(): {"reconciles": 80, "errors": 0, "traps": 0, "refused": 0},
            d2.clone(): {"reconciles": 20, "errors": 3, "traps": 0, "refused": 1},
        },
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Serving", "message": "", "lastTransitionTime": "2026-11-29T06:00:00Z"},
            {"type": "Progressing", "status": "True", "reason": "Canary", "message": "", "lastTransitionTime": "2026-11-29T06:00:00Z"},
            {"type": "Degraded", "status": "False", "reason": "Healthy", "message": "", "lastTransitionTime": "2026-11-29T06:00:00Z"},
        ],
        "history": [
            {"digest": d1, "time": "2026-11-29T06:00:00Z", "outcome": "serving"},
            {"digest": d2, "time": "2026-11-29T06:01:00Z", "outcome": "failed", "reason": "init returned an error"},
        ],
    }});
    plugins
        .patch_status(
            "zone-labeler",
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .expect("status");
    let out = bosun.run(&["plugin", "status", "zone-labeler"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let fields: Vec<&str> = text
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let canary_col = format!("{}@20%", &hex(&d2)[..12]);
    assert_eq!(
        &fields[..7],
        [
            "zone-labeler",
            "controller",
            &hex(&d1)[..12],
            canary_col.as_str(),
            "True",
            "True",
            "False"
        ],
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains(&hex(&d2)[..12])
            && l.contains("errors=3")
            && l.contains("refused=1")),
        "per-revision counters: {text}"
    );
    let out = bosun
        .run(&["plugin", "status", "zone-labeler", "--json"])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(json[0]["status"]["canaryRevision"], json!(d2));

    let out = bosun.run(&["plugin", "history", "zone-labeler"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("TIME"), "{text}");
    assert!(
        lines[2].contains("2026-11-29T06:01:00Z")
            && lines[2].contains(&hex(&d2)[..12])
            && lines[2].contains("failed")
            && lines[2].contains("init returned an error"),
        "{text}"
    );

    let out = bosun.run(&["plugin", "promote", "zone-labeler"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = bosun.run(&["plugin", "rollback", "zone-labeler"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let p = plugins.get("zone-labeler").await.expect("plugin");
    let annotations = p.metadata.annotations.unwrap_or_default();
    for key in ["bosun.dev/promote", "bosun.dev/rollback"] {
        let at = annotations.get(key).map(String::as_str).unwrap_or("");
        assert!(
            at.len() == 20 && at.ends_with('Z') && at.as_bytes()[10] == b'T',
            "{key} is an RFC 3339 time: {at:?}"
        );
    }

    // Bad input: one line, the right exit code, nothing applied.
    let not_wasm = dir.path().join("notes.wasm");
    std::fs::write(&not_wasm, "hello").expect("write");
    let not_wasm = not_wasm.display().to_string();
    let out = bosun
        .run(&["plugin", "push", &not_wasm, "--name", "zone-labeler"])
        .await;
    assert_fails(&out, 1, &["notes.wasm", "not a Bosun plugin component"]);

    let out = bosun
        .run(&["plugin", "push", &v2_arg, "--name", "other"])
        .await;
    assert_fails(&out, 1, &["\"zone-labeler\"", "--name zone-labeler"]);

    let out = bosun
        .run(&[
            "plugin",
            "push",
            &v2_arg,
            "--name",
            "zone-labeler",
            "--canary",
            "150%",
        ])
        .await;
    assert_fails(&out, 2, &["--canary", "150%", "`20%`"]);

    let out = bosun
        .run(&[
            "plugin",
            "push",
            &v2_arg,
            "--name",
            "zone-labeler",
            "--config",
            "{bad",
        ])
        .await;
    assert_fails(&out, 2, &["--config is not valid JSON"]);

    let big = with_custom_section(&v1, "padding", &vec![0u8; 1024 * 1024]);
    let big_path = dir.path().join("big.wasm");
    std::fs::write(&big_path, &big).expect("write");
    let out = bosun
        .run(&[
            "plugin",
            "push",
            &big_path.display().to_string(),
            "--name",
            "zone-labeler",
        ])
        .await;
    assert_fails(&out, 1, &["1 MiB", "source.url", hex(&digest(&big))]);

    let out = bosun
        .run(&["plugin", "rollback", "zone-labeler", "--to", "deadbeef"])
        .await;
    assert_fails(&out, 1, &["deadbeef", &d1, &d2]);

    let out = bosun
        .run(&["plugin", "history", "missing", "--namespace", "default"])
        .await;
    assert_fails(&out, 1, &["Plugin default/missing not found"]);

    // None of that touched the Plugin or stored another revision.
    let p = plugins.get("zone-labeler").await.expect("plugin");
    assert_eq!(configmap_source(&p).0, cm1);
    let stored = configmaps
        .list(&ListParams::default().labels("bosun.dev/plugin=zone-labeler"))
        .await
        .expect("list");
    assert_eq!(stored.items.len(), 2);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_the_crd_is_named() {
    let cluster = bosun_cluster::start(bosun_cluster::Config {
        nodes: 0,
        ..Default::default()
    })
    .await
    .expect("cluster");
    let dir = tempfile::tempdir().expect("tempdir");
    let bosun = Bosun {
        kubeconfig: cluster.kubeconfig_path().display().to_string(),
        cache: dir.path().join("compiled").display().to_string(),
    };
    let out = bosun.run(&["plugin", "status"]).await;
    assert_fails(&out, 1, &["deploy/crds/plugin.yaml"]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_takes_over_a_folder_plugins_source_and_an_unreadable_plugin_hides_no_other() {
    let cluster = bosun_cluster::start(bosun_cluster::Config {
        nodes: 0,
        ..Default::default()
    })
    .await
    .expect("cluster");
    let client = cluster.client().await.expect("client");
    install_crd(&client).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let bosun = Bosun {
        kubeconfig: cluster.kubeconfig_path().display().to_string(),
        cache: dir.path().join("compiled").display().to_string(),
    };
    let plugins: Api<Plugin> = Api::namespaced(client.clone(), "default");
    // As the plugins folder publishes it: a file source, under its own field manager.
    let folder = json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "Plugin",
        "metadata": {"name": "zone-labeler", "namespace": "default"},
        "spec": {"source": {"file": {"path": "/plugins/zone-labeler.wasm"}}, "world": "controller",
                 "config": {"label": "topology.kubernetes.io/zone"}}
    });
    plugins
        .patch(
            "zone-labeler",
            &PatchParams::apply("bosun-plugins-folder").force(),
            &Patch::Apply(&folder),
        )
        .await
        .expect("folder Plugin");
    let out = bosun
        .run(&[
            "plugin",
            "push",
            bosun_test_artifacts::ZONE_LABELER,
            "--name",
            "zone-labeler",
            "--canary",
            "20%",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let p = plugins.get("zone-labeler").await.expect("readable Plugin");
    assert!(
        matches!(p.spec.source, Source::ConfigMap { .. }),
        "the push took the source over: {:?}",
        p.spec.source
    );
    assert_eq!(
        p.spec.config,
        Some(json!({"label": "topology.kubernetes.io/zone"})),
        "the config is kept"
    );

    // An object with two sources (what the schema forbids) next to a readable one.
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &kube::api::ApiResource::erase::<Plugin>(&()),
    );
    // The API server refuses it today (oneOf): one stored under an older CRD.
    let two_sources = json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "Plugin",
        "metadata": {"name": "broken", "namespace": "default"},
        "spec": {"source": {"file": {"path": "/x.wasm"}, "configMap": {"name": "c", "key": "k", "sha256": "sha256:0"}},
                 "world": "controller"}
    });
    let refused = raw
        .create(
            &PostParams::default(),
            &serde_json::from_value(two_sources.clone()).expect("object"),
        )
        .await
        .expect_err("the schema allows one source");
    assert!(refused.to_string().contains("oneOf"), "{refused}");
    bosun_test_support::embedded::store_plugin_unchecked(&client, two_sources).await;
    let out = bosun.run(&["plugin", "status"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("zone-labeler"), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Plugin default/broken is not a valid Plugin: spec.source"),
        "{err}"
    );
    let out = bosun.run(&["plugin", "status", "broken"]).await;
    assert_fails(&out, 1, &["Plugin default/broken", "spec.source"]);
    cluster.shutdown().await;
}
