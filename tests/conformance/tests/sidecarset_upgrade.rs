//! `plugins/sidecarset` (a controller plugin in JavaScript) with `plugins/sidecarset-injector`
//! on the embedded cluster: the pods of a StatefulSet and of a Deployment (20 in all) are
//! injected with a SidecarSet, the
//! SidecarSet's status is kept as Kruise's sidecarset controller computes it, and a change
//! of only the sidecar's image upgrades the sidecars in place — within `maxUnavailable`,
//! leaving `partition` pods, not while `paused` — while a change beyond the image marks
//! the pods not upgradable (condition and Event) and touches nothing else. A runtime
//! stopped mid-upgrade and started again finishes it without upgrading a pod twice.
//!
//! The expectations come from Kruise's pkg/controller/sidecarset (`calculateStatus`,
//! `calculateUpgradeCount`: partition leaves that many waiting pods, maxUnavailable
//! bounds the updated pods not yet consistent and ready) and from what the kubelet shows
//! (uid, restartCount, image), not from the plugin's code.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bosun_conformance::crate_dir;
use bosun_runtime::Runtime;
use bosun_test_support::embedded::{Env, source};
use bosun_test_support::eventually;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

#[path = "support/injector.rs"]
mod injector;

const NS: &str = "shop";
const SET: &str = "log-agent";
/// The StatefulSet's pods and the Deployment's.
const STS_PODS: usize = 14;
const DEPLOYMENT_PODS: usize = 6;
const PODS: usize = STS_PODS + DEPLOYMENT_PODS;
const MAX_UNAVAILABLE: usize = 2;
const HASH: &str = "kruise.io/sidecarset-hash";

fn plugin() -> &'static PathBuf {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        bosun_cli::plugin::build_with(&crate_dir().join("../../plugins/sidecarset"), false)
            .unwrap_or_else(|e| panic!("{e:#}"))
    })
}

fn sidecarsets(client: &kube::Client) -> Api<DynamicObject> {
    let gvk = kube::api::GroupVersionKind::gvk("bosun.dev", "v1alpha1", "SidecarSet");
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "sidecarsets"),
    )
}

async fn sidecarset(client: &kube::Client) -> Value {
    let o = sidecarsets(client).get(SET).await.expect("get SidecarSet");
    serde_json::to_value(o).expect("json")
}

async fn patch_set(client: &kube::Client, patch: Value) {
    sidecarsets(client)
        .patch(SET, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("patch SidecarSet");
}

/// The StatefulSet's and the Deployment's pods, by name, as JSON.
async fn pods(client: &kube::Client) -> BTreeMap<String, Value> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NS);
    api.list(&ListParams::default().labels("app=web"))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .map(|p| {
            let v = serde_json::to_value(p).expect("json");
            (v["metadata"]["name"].as_str().unwrap_or("").to_owned(), v)
        })
        .collect()
}

fn status_of<'a>(pod: &'a Value, container: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == container))
        .unwrap_or(&Value::Null)
}

fn spec_image<'a>(pod: &'a Value, container: &str) -> &'a str {
    pod["spec"]["containers"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == container))
        .and_then(|c| c["image"].as_str())
        .unwrap_or("")
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// The sidecar runs `image`, ready.
fn runs(pod: &Value, image: &str) -> bool {
    let s = status_of(pod, "agent");
    spec_image(pod, "agent") == image && s["image"] == image && s["ready"] == true && ready(pod)
}

/// The pod's hash for the SidecarSet.
fn pod_hash(pod: &Value) -> String {
    pod["metadata"]["annotations"][HASH]
        .as_str()
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .and_then(|v| v[SET]["hash"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn count(status: &Value, field: &str) -> i64 {
    status[field].as_i64().unwrap_or(0)
}

/// Waits until the SidecarSet's status says `matched, updated, ready, updatedReady` for
/// its current generation.
async fn wait_status(client: &kube::Client, what: &str, want: [i64; 4]) -> Value {
    let mut last = Value::Null;
    let ok = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let set = sidecarset(client).await;
            let s = &set["status"];
            let got = [
                count(s, "matchedPods"),
                count(s, "updatedPods"),
                count(s, "readyPods"),
                count(s, "updatedReadyPods"),
            ];
            if got == want && s["observedGeneration"] == set["metadata"]["generation"] {
                return set;
            }
            last = set;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    ok.unwrap_or_else(|_| panic!("{what}: status never {want:?}: {}", last["status"]))
}

/// A runtime (data folder `rt`, so a second one resumes the first's state) serving the
/// injector behind its webhook and the sidecarset plugin.
async fn start_runtime(env: &Env) -> Arc<Runtime> {
    let mut config = env.config("rt");
    config.webhook.listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.webhook.url = Some("https://127.0.0.1:0".to_owned());
    let rt = env.runtime(config).await;
    rt.install(&source(bosun_test_artifacts::SIDECARSET_INJECTOR), "{}")
        .expect("injector loads");
    rt.rollouts()
        .declare_webhook("sidecarset-injector", Some(injector::webhook()));
    rt.install(
        &source(&plugin().display().to_string()),
        r#"{"pollMs": 100}"#,
    )
    .expect("sidecarset plugin loads");
    rt
}

/// The CRD, a runtime, the SidecarSet `SET` (agent:v1, `strategy`) and a StatefulSet and
/// a Deployment of `PODS` pods in all injected with it, all Ready and counted; returns the runtime and the
/// SidecarSet's hash.
async fn setup(env: &Env, strategy: Value) -> (Arc<Runtime>, String) {
    let client = env.client.clone();
    let crd_yaml = bosun_api::sidecarset::crd_yaml().expect("crd yaml");
    let file = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(file.path(), crd_yaml).expect("write");
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(env.cluster.kubeconfig_path())
        .args(["apply", "-f"])
        .arg(file.path())
        .output()
        .expect("kubectl runs");
    assert!(out.status.success(), "{out:?}");
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": NS}})).expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let rt = start_runtime(env).await;

    // The SidecarSet is stamped with its hashes by the injector's webhook.
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "SidecarSet",
        "metadata": {"name": SET},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "containers": [{"name": "agent", "image": "agent:v1"}],
            "updateStrategy": strategy,
        },
    }))
    .expect("sidecarset");
    eventually(
        "the SidecarSet is created through the webhook",
        Duration::from_secs(30),
        || async {
            sidecarsets(&client)
                .create(&PostParams::default(), &object)
                .await
                .is_ok()
        },
    )
    .await;
    let set = sidecarset(&client).await;
    let v1_hash = set["metadata"]["annotations"][HASH]
        .as_str()
        .expect("stamped")
        .to_owned();

    let sts: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "replicas": STS_PODS, "serviceName": "web", "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "web", "owner": "sts"}},
            "updateStrategy": {"type": "OnDelete"},
            "template": {
                "metadata": {"labels": {"app": "web", "owner": "sts"}},
                "spec": {"containers": [{"name": "app", "image": "app:v1"}]}
            }
        }
    }))
    .expect("statefulset");
    Api::<StatefulSet>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &sts)
        .await
        .expect("create statefulset");
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "replicas": DEPLOYMENT_PODS,
            "selector": {"matchLabels": {"app": "web", "owner": "deployment"}},
            "template": {
                "metadata": {"labels": {"app": "web", "owner": "deployment"}},
                "spec": {"containers": [{"name": "app", "image": "app:v1"}]}
            }
        }
    }))
    .expect("deployment");
    Api::<Deployment>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create deployment");
    eventually(
        "every pod injected and Ready",
        Duration::from_secs(60),
        || async {
            let pods = pods(&client).await;
            pods.len() == PODS
                && pods
                    .values()
                    .all(|p| runs(p, "agent:v1") && pod_hash(p) == v1_hash)
        },
    )
    .await;
    let n = PODS as i64;
    let set = wait_status(&client, "after injection", [n, n, n, n]).await;
    assert_eq!(
        set["status"]["latestRevision"],
        format!("{SET}-{v1_hash}"),
        "{}",
        set["status"]
    );
    (rt, v1_hash)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_are_upgraded_in_place_within_the_update_strategy() {
    let env = Env::bare(2).await;
    let client = env.client.clone();
    let (rt, v1_hash) = setup(
        &env,
        json!({"type": "RollingUpdate", "maxUnavailable": MAX_UNAVAILABLE, "partition": 2}),
    )
    .await;
    let n = PODS as i64;
    let before = pods(&client).await;

    // --- Only the image changes: in place, at most maxUnavailable at once, partition 2.
    let sampling = Arc::new(AtomicBool::new(true));
    let worst = Arc::new(AtomicUsize::new(0));
    let sampler = tokio::spawn({
        let (client, sampling, worst) = (client.clone(), sampling.clone(), worst.clone());
        async move {
            while sampling.load(Ordering::Relaxed) {
                // Upgrading: the spec asks for the new image and the pod does not run it
                // ready yet.
                let upgrading = pods(&client)
                    .await
                    .values()
                    .filter(|p| spec_image(p, "agent") == "agent:v2" && !runs(p, "agent:v2"))
                    .count();
                worst.fetch_max(upgrading, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    patch_set(
        &client,
        json!({"spec": {"containers": [{"name": "agent", "image": "agent:v2"}]}}),
    )
    .await;
    let set = sidecarset(&client).await;
    let v2_hash = set["metadata"]["annotations"][HASH]
        .as_str()
        .expect("stamped")
        .to_owned();
    assert_ne!(v2_hash, v1_hash, "the injector restamps the hash on UPDATE");
    let up = n - 2;
    wait_status(&client, "partition 2", [n, up, n, up]).await;
    // Nothing more moves: the partition holds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_status(&client, "partition 2, later", [n, up, n, up]).await;
    let now = pods(&client).await;
    let (mut moved, mut kept) = (0, 0);
    for (name, pod) in &now {
        let old = &before[name];
        assert_eq!(
            pod["metadata"]["uid"], old["metadata"]["uid"],
            "{name} kept its uid"
        );
        let restarts = status_of(pod, "agent")["restartCount"]
            .as_u64()
            .unwrap_or(0);
        let app = status_of(pod, "app")["restartCount"].as_u64().unwrap_or(0);
        assert_eq!(app, 0, "{name}: the app container is not restarted");
        if runs(pod, "agent:v2") {
            assert_eq!(restarts, 1, "{name}: the sidecar restarted once");
            assert_eq!(pod_hash(pod), v2_hash, "{name}: hash annotation updated");
            moved += 1;
        } else {
            assert!(runs(pod, "agent:v1"), "{name}: {}", pod["status"]);
            assert_eq!(restarts, 0, "{name}: untouched");
            assert_eq!(pod_hash(pod), v1_hash, "{name}");
            kept += 1;
        }
    }
    assert_eq!((moved, kept), (PODS - 2, 2));

    // --- Paused: the partition goes to 0 and nothing moves; unpaused, the rest do.
    patch_set(
        &client,
        json!({"spec": {"updateStrategy": {"paused": true, "partition": 0}}}),
    )
    .await;
    wait_status(&client, "paused", [n, up, n, up]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let paused = pods(&client).await;
    assert_eq!(
        paused
            .values()
            .filter(|p| spec_image(p, "agent") == "agent:v2")
            .count(),
        PODS - 2,
        "paused: no pod is patched"
    );
    patch_set(
        &client,
        json!({"spec": {"updateStrategy": {"paused": false}}}),
    )
    .await;
    wait_status(&client, "unpaused", [n, n, n, n]).await;
    sampling.store(false, Ordering::Relaxed);
    sampler.await.expect("sampler");
    let worst = worst.load(Ordering::Relaxed);
    assert!(
        (1..=MAX_UNAVAILABLE).contains(&worst),
        "at most {MAX_UNAVAILABLE} sidecars upgrading at once, saw {worst}"
    );
    let after = pods(&client).await;
    for (name, pod) in &after {
        assert_eq!(
            pod["metadata"]["uid"], before[name]["metadata"]["uid"],
            "{name}"
        );
        assert!(runs(pod, "agent:v2"), "{name}: {}", pod["status"]);
        assert_eq!(status_of(pod, "agent")["restartCount"], 1, "{name}");
    }

    // --- More than the image changes: the pods are not touched, each is marked not
    // upgradable (condition and Event naming what changed), and none counts as updated.
    patch_set(
        &client,
        json!({"spec": {"containers": [{"name": "agent", "image": "agent:v3",
            "env": [{"name": "LEVEL", "value": "debug"}]}]}}),
    )
    .await;
    wait_status(&client, "not upgradable", [n, 0, n, 0]).await;
    eventually(
        "every pod is marked not upgradable",
        Duration::from_secs(30),
        || async {
            pods(&client).await.values().all(|p| {
                p["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c["type"] == "SidecarSetUpgradable"
                            && c["status"] == "False"
                            && c["reason"] == "EnvChanged"
                            && c["message"]
                                .as_str()
                                .is_some_and(|m| m.contains("agent: env"))
                    })
                })
            })
        },
    )
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    eventually(
        "an Event per pod names what changed",
        Duration::from_secs(30),
        || async {
            let list = events.list(&ListParams::default()).await.expect("events");
            let marked: std::collections::BTreeSet<String> = list
                .items
                .iter()
                .filter(|e| {
                    e.reason.as_deref() == Some("SidecarNotUpgradable")
                        && e.type_.as_deref() == Some("Warning")
                        && e.message
                            .as_deref()
                            .is_some_and(|m| m.contains("agent: env"))
                })
                .filter_map(|e| e.involved_object.name.clone())
                .collect();
            marked.len() == PODS
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (name, pod) in &pods(&client).await {
        assert!(runs(pod, "agent:v2"), "{name} untouched: {}", pod["status"]);
        assert_eq!(status_of(pod, "agent")["restartCount"], 1, "{name}");
    }

    // --- The env change is dropped: only the image differs again, so the pods are
    // upgraded in place to agent:v3 and marked upgradable again.
    patch_set(
        &client,
        json!({"spec": {"containers": [{"name": "agent", "image": "agent:v3"}]}}),
    )
    .await;
    wait_status(&client, "images only again", [n, n, n, n]).await;
    for (name, pod) in &pods(&client).await {
        assert_eq!(
            pod["metadata"]["uid"], before[name]["metadata"]["uid"],
            "{name}"
        );
        assert!(runs(pod, "agent:v3"), "{name}: {}", pod["status"]);
        assert_eq!(status_of(pod, "agent")["restartCount"], 2, "{name}");
    }
    eventually(
        "the pods are upgradable again",
        Duration::from_secs(30),
        || async {
            pods(&client).await.values().all(|p| {
                p["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "SidecarSetUpgradable" && c["status"] == "True")
                })
            })
        },
    )
    .await;
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_restarted_mid_upgrade_resumes_without_upgrading_a_pod_twice() {
    let env = Env::bare(2).await;
    let client = env.client.clone();
    let (rt, _) = setup(&env, json!({"maxUnavailable": 1})).await;
    patch_set(
        &client,
        json!({"spec": {"containers": [{"name": "agent", "image": "agent:v2"}]}}),
    )
    .await;
    eventually("a few pods upgraded", Duration::from_secs(30), || async {
        let pods = pods(&client).await;
        pods.values().filter(|p| runs(p, "agent:v2")).count() >= 3
    })
    .await;
    rt.shutdown().await;
    drop(rt);
    let moved = pods(&client)
        .await
        .values()
        .filter(|p| spec_image(p, "agent") == "agent:v2")
        .count();
    assert!(
        moved < PODS,
        "the upgrade was stopped midway ({moved} moved)"
    );

    let rt = start_runtime(&env).await;
    let n = PODS as i64;
    wait_status(&client, "resumed", [n, n, n, n]).await;
    for (name, pod) in &pods(&client).await {
        assert!(runs(pod, "agent:v2"), "{name}: {}", pod["status"]);
        assert_eq!(
            status_of(pod, "agent")["restartCount"],
            1,
            "{name}: upgraded once"
        );
    }
    rt.shutdown().await;
}
