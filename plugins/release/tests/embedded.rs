//! The release plugin end to end: the runtime runs it on the embedded cluster.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_runtime::Runtime;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const STRATEGY: &str = "release.bosun.dev/strategy";
const MAX_UNAVAILABLE: &str = "release.bosun.dev/max-unavailable";
const PARTITION: &str = "release.bosun.dev/partition";
const PAUSED: &str = "release.bosun.dev/paused";
const STATUS: &str = "release.bosun.dev/status";

async fn runtime(env: &Env, name: &str) -> Arc<Runtime> {
    let rt = env.runtime(env.config(name)).await;
    rt.install(&source(bosun_test_artifacts::RELEASE), r#"{"pollMs": 50}"#)
        .expect("release plugin");
    rt
}

use bosun_test_support::embedded::{Env, source};
use bosun_test_support::eventually;

fn sts_api(env: &Env) -> Api<StatefulSet> {
    Api::namespaced(env.client.clone(), "default")
}

fn pod_api(env: &Env) -> Api<Pod> {
    Api::namespaced(env.client.clone(), "default")
}

async fn create_sts(env: &Env, name: &str, replicas: u32, annotations: Value) {
    let sts: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {
            "replicas": replicas, "serviceName": name, "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": {"type": "OnDelete"},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "app:v1"}]}
            }
        }
    }))
    .expect("statefulset");
    sts_api(env)
        .create(&PostParams::default(), &sts)
        .await
        .expect("create statefulset");
    eventually("every pod Ready", Duration::from_secs(30), || async {
        let pods = pods(env, name).await;
        pods.len() == replicas as usize && pods.values().all(ready)
    })
    .await;
}

async fn patch_sts(env: &Env, name: &str, patch: Value) {
    sts_api(env)
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("patch statefulset");
}

async fn set_image(env: &Env, name: &str, image: &str) {
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}});
    patch_sts(env, name, patch).await;
}

async fn annotate(env: &Env, name: &str, key: &str, value: &str) {
    patch_sts(
        env,
        name,
        json!({"metadata": {"annotations": {key: value}}}),
    )
    .await;
}

/// The StatefulSet's pods by ordinal.
async fn pods(env: &Env, name: &str) -> BTreeMap<u32, Pod> {
    let list = pod_api(env)
        .list(&ListParams::default().labels(&format!("app={name}")))
        .await
        .expect("list pods");
    list.items
        .into_iter()
        .filter_map(|p| {
            let n = p
                .metadata
                .name
                .as_deref()?
                .rsplit('-')
                .next()?
                .parse()
                .ok()?;
            Some((n, p))
        })
        .collect()
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn image(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// The image the kubelet runs (from `imageID`, `sim://IMAGE`).
fn running_image(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.image_id.strip_prefix("sim://").map(str::to_owned))
        .unwrap_or_default()
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .map_or(-1, |c| c.restart_count)
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

async fn status(env: &Env, name: &str) -> Value {
    let sts = sts_api(env).get(name).await.expect("statefulset");
    sts.metadata
        .annotations
        .and_then(|a| a.get(STATUS).cloned())
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null)
}

/// Samples readiness while the release of `name` to `image` runs, until every one of its
/// `replicas` pods is Ready on it: the most pods not Ready at once, and the samples.
async fn release_sampled(env: &Env, name: &str, replicas: usize, image_now: &str) -> (usize, u32) {
    let started = Instant::now();
    let mut most_not_ready = 0;
    let mut samples = 0;
    loop {
        let now = pods(env, name).await;
        let not_ready = now.values().filter(|p| !ready(p)).count() + replicas - now.len();
        most_not_ready = most_not_ready.max(not_ready);
        samples += 1;
        let done = now.len() == replicas
            && now
                .values()
                .all(|p| ready(p) && running_image(p) == image_now);
        if done {
            return (most_not_ready, samples);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "release did not converge: {:?}",
            now.values()
                .map(|p| (image(p), running_image(p), ready(p)))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_works_within_the_runtime_budget_never_beyond_it() {
    let env = Env::bare(3).await;
    let _rt = runtime(&env, "rt").await;
    // The release would take every pod at once; the runtime's default budget (25% of 4
    // pods: 1) holds it to one at a time, and it still converges.
    let annotations = json!({STRATEGY: "InPlaceIfPossible", MAX_UNAVAILABLE: "100%"});
    create_sts(&env, "wide", 4, annotations).await;
    set_image(&env, "wide", "app:v2").await;
    let (most_not_ready, samples) = release_sampled(&env, "wide", 4, "app:v2").await;
    assert!(samples > 10, "sampled readiness {samples} times");
    assert_eq!(
        most_not_ready, 1,
        "the runtime's budget allows 1 of 4 pods out at once, saw {most_not_ready}"
    );
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_change_updates_every_pod_in_place_within_max_unavailable() {
    let env = Env::bare(3).await;
    let _rt = runtime(&env, "rt").await;
    let annotations = json!({STRATEGY: "InPlaceIfPossible", MAX_UNAVAILABLE: "2"});
    create_sts(&env, "web", 6, annotations).await;
    let before = pods(&env, "web").await;
    set_image(&env, "web", "app:v2").await;

    let (most_not_ready, samples) = release_sampled(&env, "web", 6, "app:v2").await;
    let after = pods(&env, "web").await;
    for (i, p) in &after {
        let old = &before[i];
        assert_eq!(uid(p), uid(old), "pod {i} kept its uid");
        assert_eq!(restarts(p), restarts(old) + 1, "pod {i} restarted once");
        assert_eq!(image(p), "app:v2");
    }
    assert!(samples > 10, "sampled readiness {samples} times");
    assert!(most_not_ready >= 1, "the release was observed in progress");
    assert!(
        most_not_ready <= 2,
        "at most max-unavailable (2) pods not Ready at once, saw {most_not_ready}"
    );
    eventually("status shows 6/6", Duration::from_secs(10), || async {
        let s = status(&env, "web").await;
        s["updated"] == 6 && s["ready"] == 6 && s["total"] == 6
    })
    .await;
    env.cluster.shutdown().await;
}

const GATE: &str = "release.bosun.dev/InPlaceReady";
const GRACE: &str = "release.bosun.dev/grace-period-seconds";

fn gate(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == GATE)
        .map(|c| c.status.clone())
}

fn labels(p: &Pod) -> BTreeMap<String, String> {
    p.metadata.labels.clone().unwrap_or_default()
}

/// Samples the 4 pods of StatefulSet `gated` every 10 ms, calling `check` on each, until
/// every one runs `target` Ready with its gate True (60 s at most); how many samples.
async fn sample_gated_release(env: &Env, target: &str, mut check: impl FnMut(u32, &Pod)) -> usize {
    let started = Instant::now();
    let mut samples = 0;
    loop {
        let now = pods(env, "gated").await;
        samples += 1;
        for (i, p) in &now {
            check(*i, p);
        }
        let done = now.len() == 4
            && now.values().all(|p| {
                ready(p) && running_image(p) == target && gate(p).as_deref() == Some("True")
            });
        if done {
            return samples;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "release to {target} did not converge: {:?}",
            now.values()
                .map(|p| (running_image(p), ready(p), gate(p)))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readiness_gate_keeps_a_pod_out_of_service_while_it_is_updated_in_place() {
    let env = Env::bare(3).await;
    let _rt = runtime(&env, "rt").await;
    let sts: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "gated", "namespace": "default", "annotations": {
            STRATEGY: "InPlaceIfPossible", MAX_UNAVAILABLE: "2", GRACE: "1"}},
        "spec": {
            "replicas": 4, "serviceName": "gated", "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "gated"}},
            "updateStrategy": {"type": "OnDelete"},
            "template": {
                "metadata": {"labels": {"app": "gated", "track": "v1"}},
                "spec": {"containers": [{"name": "app", "image": "app:v1"}],
                         "readinessGates": [{"conditionType": GATE}]}
            }
        }
    }))
    .expect("statefulset");
    sts_api(&env)
        .create(&PostParams::default(), &sts)
        .await
        .expect("create statefulset");
    // The kubelet keeps a gated pod un-Ready until someone sets the gate: the plugin does.
    eventually("every gated pod Ready", Duration::from_secs(30), || async {
        let pods = pods(&env, "gated").await;
        pods.len() == 4
            && pods
                .values()
                .all(|p| ready(p) && gate(p).as_deref() == Some("True"))
    })
    .await;
    let before = pods(&env, "gated").await;
    let patch = json!({"spec": {"template": {
        "metadata": {"labels": {"app": "gated", "track": "v2"}},
        "spec": {"containers": [{"name": "app", "image": "app:v2"}]}}}});
    patch_sts(&env, "gated", patch).await;

    // Sample: a pod is never Ready while its update is under way, and each is seen out of
    // service (gate False, not Ready) before its images change.
    let mut out_before_patch = std::collections::BTreeSet::new();
    let samples = sample_gated_release(&env, "app:v2", |i, p| {
        // Between the image patch and the kubelet restarting the container, the
        // status still shows the old container ready: only the gate keeps it out.
        let updating = image(p) != running_image(p);
        assert!(
            !(updating && ready(p)),
            "pod {i} is Ready while updated in place: spec {} runs {} gate {:?}",
            image(p),
            running_image(p),
            gate(p)
        );
        if image(p) == "app:v1" && gate(p).as_deref() == Some("False") && !ready(p) {
            out_before_patch.insert(i);
        }
    })
    .await;
    assert!(samples > 10, "sampled {samples} times");
    assert_eq!(
        out_before_patch.len(),
        4,
        "every pod was seen out of service before its images changed: {out_before_patch:?}"
    );
    for (i, p) in pods(&env, "gated").await {
        let old = &before[&i];
        assert_eq!(uid(&p), uid(old), "pod {i} kept its uid");
        assert_eq!(restarts(&p), restarts(old) + 1, "pod {i} restarted once");
        assert_eq!(
            labels(&p).get("track").map(String::as_str),
            Some("v2"),
            "pod {i} carries the template's labels"
        );
    }

    // Without a grace period the gate and the images are patched in one pass, so there is
    // no drain before the restart (the kubelet takes the pod out when it restarts the
    // container); the new container is never Ready before the plugin confirms it, and
    // the gate condition is on each pod once.
    annotate(&env, "gated", GRACE, "0").await;
    let before = pods(&env, "gated").await;
    let patch = json!({"spec": {"template": {
        "spec": {"containers": [{"name": "app", "image": "app:v3"}]}}}});
    patch_sts(&env, "gated", patch).await;
    sample_gated_release(&env, "app:v3", |i, p| {
        let unconfirmed = running_image(p) == "app:v3" && gate(p).as_deref() != Some("True");
        assert!(
            !(unconfirmed && ready(p)),
            "pod {i}'s new container is Ready before the plugin confirmed it: spec {} runs {} gate {:?}",
            image(p),
            running_image(p),
            gate(p)
        );
    })
    .await;
    for (i, p) in pods(&env, "gated").await {
        let old = &before[&i];
        assert_eq!(uid(&p), uid(old), "pod {i} kept its uid");
        assert_eq!(
            restarts(&p),
            restarts(old) + 1,
            "pod {i} restarted once more"
        );
        let gates = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map_or(0, |cs| cs.iter().filter(|c| c.type_ == GATE).count());
        assert_eq!(gates, 1, "pod {i} has the gate condition once");
    }
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_and_pause_hold_pods_until_resumed() {
    let env = Env::bare(3).await;
    let _rt = runtime(&env, "rt").await;
    let annotations = json!({
        STRATEGY: "InPlaceOnly", MAX_UNAVAILABLE: "50%", PARTITION: "2", PAUSED: "true",
    });
    create_sts(&env, "db", 4, annotations).await;
    set_image(&env, "db", "app:v2").await;
    eventually("paused status", Duration::from_secs(10), || async {
        status(&env, "db").await["paused"]
            .as_str()
            .is_some_and(|r| r.contains("paused by annotation"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        pods(&env, "db")
            .await
            .values()
            .all(|p| image(p) == "app:v1"),
        "a paused release updates nothing"
    );

    annotate(&env, "db", PAUSED, "false").await;
    eventually(
        "ordinals 2 and 3 updated",
        Duration::from_secs(30),
        || async {
            let now = pods(&env, "db").await;
            [2, 3].iter().all(|i| {
                now.get(i)
                    .is_some_and(|p| ready(p) && running_image(p) == "app:v2")
            })
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now = pods(&env, "db").await;
    assert_eq!(
        image(&now[&0]),
        "app:v1",
        "ordinal 0 is below the partition"
    );
    assert_eq!(
        image(&now[&1]),
        "app:v1",
        "ordinal 1 is below the partition"
    );
    eventually(
        "status shows 2 updated",
        Duration::from_secs(10),
        || async {
            let s = status(&env, "db").await;
            s["updated"] == 2 && s["ready"] == 4 && s["paused"].is_null()
        },
    )
    .await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_pull_failure_past_the_threshold_pauses_the_release() {
    let env = Env::bare(3).await;
    let _rt = runtime(&env, "rt").await;
    env.cluster.sim().set_image_pull_failure("app:broken", true);
    create_sts(&env, "api", 4, json!({STRATEGY: "InPlaceIfPossible"})).await;
    set_image(&env, "api", "app:broken").await;
    eventually("paused on failure", Duration::from_secs(20), || async {
        let s = status(&env, "api").await;
        s["failed"] == 1
            && s["paused"]
                .as_str()
                .is_some_and(|r| r.contains("1 pods failed") && r.contains("threshold 0"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now = pods(&env, "api").await;
    let broken: Vec<u32> = now
        .iter()
        .filter(|(_, p)| image(p) == "app:broken")
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(broken, [3], "only the highest ordinal was tried");
    assert!(now.values().filter(|p| ready(p)).count() == 3);
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_image_change_recreates_pods() {
    let env = Env::bare(3).await;
    let _rt = runtime(&env, "rt").await;
    create_sts(&env, "batch", 2, json!({STRATEGY: "InPlaceIfPossible"})).await;
    let before = pods(&env, "batch").await;
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "app:v1", "env": [{"name": "MODE", "value": "fast"}]}
    ]}}}});
    patch_sts(&env, "batch", patch).await;
    eventually("both pods recreated", Duration::from_secs(30), || async {
        let now = pods(&env, "batch").await;
        now.len() == 2
            && now.iter().all(|(i, p)| {
                ready(p)
                    && uid(p) != uid(&before[i])
                    && p.spec
                        .as_ref()
                        .and_then(|s| s.containers[0].env.as_ref())
                        .is_some_and(|e| e.iter().any(|v| v.name == "MODE"))
            })
    })
    .await;
    env.cluster.shutdown().await;
}

/// Waits until every pod of `name` is Ready on `image`, then returns them.
async fn converged(env: &Env, name: &str, replicas: usize, image: &str) -> BTreeMap<u32, Pod> {
    eventually(
        "every pod Ready on the new image",
        Duration::from_secs(60),
        || async {
            let now = pods(env, name).await;
            now.len() == replicas && now.values().all(|p| ready(p) && running_image(p) == image)
        },
    )
    .await;
    pods(env, name).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_restart_mid_release_resumes_without_updating_a_pod_twice() {
    let env = Env::bare(3).await;
    let first = runtime(&env, "rt").await;
    create_sts(&env, "queue", 6, json!({STRATEGY: "InPlaceIfPossible"})).await;
    let before = pods(&env, "queue").await;
    set_image(&env, "queue", "app:v2").await;
    eventually("some pods patched", Duration::from_secs(20), || async {
        let n = pods(&env, "queue")
            .await
            .values()
            .filter(|p| image(p) == "app:v2")
            .count();
        (2..6).contains(&n)
    })
    .await;
    first.shutdown().await;
    drop(first);
    let patched = pods(&env, "queue")
        .await
        .values()
        .filter(|p| image(p) == "app:v2")
        .count();
    assert!(
        patched < 6,
        "the release was interrupted mid-way ({patched}/6 patched)"
    );
    let _second = runtime(&env, "rt").await;
    let after = converged(&env, "queue", 6, "app:v2").await;
    for (i, p) in &after {
        assert_eq!(uid(p), uid(&before[i]), "pod {i} kept its uid");
        assert_eq!(
            restarts(p),
            restarts(&before[i]) + 1,
            "pod {i} updated exactly once"
        );
    }
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_out_mid_release_gets_the_new_image_and_a_newer_template_retargets() {
    let env = Env::bare(3).await;
    let _rt = runtime(&env, "rt").await;
    create_sts(&env, "cache", 4, json!({STRATEGY: "InPlaceIfPossible"})).await;
    let before = pods(&env, "cache").await;
    set_image(&env, "cache", "app:v2").await;
    eventually("the release started", Duration::from_secs(20), || async {
        pods(&env, "cache")
            .await
            .values()
            .any(|p| image(p) == "app:v2")
    })
    .await;
    patch_sts(&env, "cache", json!({"spec": {"replicas": 6}})).await;
    eventually("the new pods exist", Duration::from_secs(20), || async {
        pods(&env, "cache").await.len() == 6
    })
    .await;
    let now = pods(&env, "cache").await;
    assert_eq!(
        image(&now[&4]),
        "app:v2",
        "a scaled-out pod starts at the new revision"
    );
    assert_eq!(
        image(&now[&5]),
        "app:v2",
        "a scaled-out pod starts at the new revision"
    );
    // A newer template before the release is done: every pod ends at v3.
    set_image(&env, "cache", "app:v3").await;
    let after = converged(&env, "cache", 6, "app:v3").await;
    for i in 0..4 {
        assert_eq!(uid(&after[&i]), uid(&before[&i]), "pod {i} kept its uid");
        assert!(
            restarts(&after[&i]) > restarts(&before[&i]),
            "pod {i} restarted in place"
        );
    }
    eventually("status shows 6/6", Duration::from_secs(10), || async {
        let s = status(&env, "cache").await;
        s["updated"] == 6 && s["ready"] == 6 && s["total"] == 6
    })
    .await;
    env.cluster.shutdown().await;
}
