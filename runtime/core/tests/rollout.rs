//! Rollouts (direct, canary, shadow) and version control end to end, driven by `Plugin` objects on the
//! embedded cluster: push v1 → serving; v2 as a 20% canary takes the keys its hash
//! picks (and keeps them across a runtime restart); a failing canary is rolled back with
//! the reason while v1 serves; a healthy one is promoted after its window; a rollback to
//! an older digest; bytes that do not match their digest never serve; bad specs are
//! Degraded with the reason.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_api::plugin::Plugin;
use bosun_host::contract::Verdict;
use bosun_runtime::Runtime;
use bosun_test_support::embedded::Env;
use bosun_test_support::embedded::admin_get;
use bosun_test_support::eventually;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// A cluster with the Plugin CRD and `pods` pods for the test plugin to patch.
async fn env(pods: usize) -> Env {
    let env = Env::bare(1).await;
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(&bosun_api::plugin::crd_yaml().expect("yaml")).expect("crd");
    Api::<CustomResourceDefinition>::all(env.client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .expect("install the CRD");
    let api: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    for i in 0..pods {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("p-{i}"), "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "app:v1"}]}
        }))
        .expect("pod");
        api.create(&PostParams::default(), &pod).await.expect("pod");
    }
    env
}

async fn start(env: &Env) -> Arc<Runtime> {
    let mut c = env.config("rt");
    c.queue.backoff_max_ms = 500;
    // The test plugin patches on every event: rate limits would refuse (and fail) its
    // reconciles and blur the error rates the analysis compares.
    c.guardrails.global = bosun_runtime::guardrail::Rate::new(10_000.0, 10_000);
    c.guardrails.per_plugin = bosun_runtime::guardrail::Rate::new(10_000.0, 10_000);
    env.runtime(c).await
}

/// The hostile test plugin, optionally with a custom section appended (other bytes,
/// another digest, same behaviour).
fn hostile(tag: Option<&str>) -> Vec<u8> {
    let bytes = std::fs::read(bosun_test_artifacts::HOSTILE).expect("hostile");
    match tag {
        Some(tag) => bosun_test_support::with_custom_section(&bytes, tag),
        None => bytes,
    }
}

fn digest(bytes: &[u8]) -> String {
    bosun_link::digest(bytes)
}

/// A revision stored in a ConfigMap, as a Plugin's source names it.
struct Stored {
    /// The ConfigMap.
    name: String,
    /// The sha256 the source names.
    sha256: String,
}

/// The ConfigMap `bosun plugin push` would store `bytes` of plugin `hostile` in.
fn stored(bytes: &[u8]) -> Stored {
    stored_as("hostile", bytes)
}

/// The ConfigMap `bosun plugin push` would store `bytes` of plugin `plugin` in.
fn stored_as(plugin: &str, bytes: &[u8]) -> Stored {
    let sha256 = digest(bytes);
    let hex = sha256.trim_start_matches("sha256:");
    Stored {
        name: format!("bosun-plugin-{plugin}-{}", &hex[..12]),
        sha256,
    }
}

/// What `bosun plugin push` stores: a ConfigMap per digest, labelled with it.
async fn push_configmap(env: &Env, bytes: &[u8], label: Option<&str>) -> Stored {
    push_as(env, "default", "hostile", bytes, label).await
}

/// [`push_configmap`] of plugin `plugin` in namespace `ns`.
async fn push_as(env: &Env, ns: &str, plugin: &str, bytes: &[u8], label: Option<&str>) -> Stored {
    let stored = stored_as(plugin, bytes);
    let hex = stored.sha256.trim_start_matches("sha256:");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": stored.name, "labels": {
            "bosun.dev/plugin": plugin,
            "bosun.dev/digest": label.unwrap_or(&hex[..63]),
        }},
        "binaryData": {"plugin.wasm": ByteString(bytes.to_vec())},
    }))
    .expect("configmap");
    Api::<ConfigMap>::namespaced(env.client.clone(), ns)
        .create(&PostParams::default(), &cm)
        .await
        .expect("configmap");
    stored
}

async fn apply_plugin(
    env: &Env,
    name: &str,
    configmap: &Stored,
    config: serde_json::Value,
    rollout: serde_json::Value,
) {
    apply_in(env, "default", name, configmap, config, rollout).await;
}

/// [`apply_plugin`] in namespace `ns`.
async fn apply_in(
    env: &Env,
    ns: &str,
    name: &str,
    configmap: &Stored,
    config: serde_json::Value,
    rollout: serde_json::Value,
) {
    let plugin = json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "Plugin",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "source": {"configMap": {"name": configmap.name, "key": "plugin.wasm",
                "sha256": configmap.sha256}},
            "world": "controller",
            "config": config,
            "permissions": [{"apiVersion": "v1", "kind": "Pod", "verbs": ["read", "patch", "delete", "pod-command"]}],
            "rollout": rollout,
        }
    });
    Api::<Plugin>::namespaced(env.client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(plugin),
        )
        .await
        .expect("apply Plugin");
}

async fn status(env: &Env, name: &str) -> bosun_api::plugin::PluginStatus {
    Api::<Plugin>::namespaced(env.client.clone(), "default")
        .get(name)
        .await
        .expect("plugin")
        .status
        .unwrap_or_default()
}

fn condition(s: &bosun_api::plugin::PluginStatus, type_: &str) -> (String, String, String) {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

/// Keys of the patches a revision executed, from the audit log, one per command.
fn patches_by(rt: &Runtime, revision: &str) -> Vec<String> {
    rt.audit().flush().expect("flush");
    bosun_runtime::audit::read(rt.audit().path())
        .expect("audit")
        .into_iter()
        .filter(|r| r.revision == revision && r.verdict == Verdict::Executed)
        .filter_map(|r| r.key)
        .collect()
}

/// Keys whose patches a revision executed.
fn keys_patched_by(rt: &Runtime, revision: &str) -> BTreeSet<String> {
    patches_by(rt, revision).into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_takes_its_share_is_kept_across_a_restart_and_is_promoted() {
    let env = env(40).await;
    let rt = start(&env).await;
    let v1 = hostile(None);
    let cm1 = push_configmap(&env, &v1, None).await;
    apply_plugin(
        &env,
        "hostile",
        &cm1,
        json!({"mode": "ok"}),
        json!({"strategy": "direct"}),
    )
    .await;
    eventually("v1 serves and says so", Duration::from_secs(60), || async {
        let s = status(&env, "hostile").await;
        s.stable_revision.as_deref() == Some(digest(&v1).as_str())
            && condition(&s, "Ready").0 == "True"
    })
    .await;
    eventually("v1 labelled every pod", Duration::from_secs(60), || async {
        keys_patched_by(&rt, &digest(&v1)).len() == 40
    })
    .await;

    // v2 as a 20% canary, judged over a long window (promoted by hand below).
    let v2 = hostile(Some("v2"));
    let cm2 = push_configmap(&env, &v2, None).await;
    apply_plugin(
        &env,
        "hostile",
        &cm2,
        json!({"mode": "ok"}),
        json!({"strategy": "canary", "canary": {"share": 20, "manualPromotion": true,
            "analysis": {"minSamples": 1, "windowSeconds": 1}}}),
    )
    .await;
    let expected: BTreeSet<String> = (0..40)
        .map(|i| format!("Pod/default/p-{i}"))
        .filter(|k| bosun_runtime::rollout::bucket(k) < 20)
        .collect();
    assert!(!expected.is_empty() && expected.len() < 20, "{expected:?}");
    eventually(
        "the canary reconciled exactly its keys",
        Duration::from_secs(60),
        || async { keys_patched_by(&rt, &digest(&v2)) == expected },
    )
    .await;
    eventually(
        "status shows the canary awaiting promotion",
        Duration::from_secs(60),
        || async {
            let s = status(&env, "hostile").await;
            s.canary_revision.as_deref() == Some(digest(&v2).as_str())
                && s.canary_share == Some(20)
                && condition(&s, "Progressing").1 == "AwaitingPromotion"
        },
    )
    .await;

    // A restarted runtime resumes: v1 stable, v2 canary on the same keys.
    let before = patches_by(&rt, &digest(&v2)).len();
    rt.shutdown().await;
    drop(rt);
    let rt = start(&env).await;
    eventually(
        "the canary resumed after the restart",
        Duration::from_secs(60),
        || async {
            let (route, _) = rt.rollouts().state("hostile");
            route.is_some_and(|r| r.canary.digest() == digest(&v2))
                && rt
                    .registry()
                    .current("hostile")
                    .is_some_and(|s| s.digest() == digest(&v1))
        },
    )
    .await;
    eventually(
        "the same keys went to the canary again",
        Duration::from_secs(60),
        || async {
            patches_by(&rt, &digest(&v2)).len() >= before + expected.len()
                && keys_patched_by(&rt, &digest(&v2)) == expected
        },
    )
    .await;

    // Promotion by hand (what `bosun plugin promote` does).
    Api::<Plugin>::namespaced(env.client.clone(), "default")
        .patch(
            "hostile",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"bosun.dev/promote": "now"}}})),
        )
        .await
        .expect("annotate");
    eventually(
        "v2 is the stable revision",
        Duration::from_secs(60),
        || async {
            let s = status(&env, "hostile").await;
            s.stable_revision.as_deref() == Some(digest(&v2).as_str())
                && s.canary_revision.is_none()
                && condition(&s, "Progressing").1 == "CanaryPromoted"
        },
    )
    .await;
    let history = status(&env, "hostile").await.history;
    assert!(
        history
            .iter()
            .any(|h| h.digest == digest(&v2) && h.outcome == "Serving"),
        "{history:?}"
    );

    // Rollback to the older digest (what `bosun plugin rollback --to` does: the source
    // points at v1's ConfigMap again).
    apply_plugin(
        &env,
        "hostile",
        &cm1,
        json!({"mode": "ok"}),
        json!({"strategy": "direct"}),
    )
    .await;
    eventually("v1 serves again", Duration::from_secs(60), || async {
        status(&env, "hostile").await.stable_revision.as_deref() == Some(digest(&v1).as_str())
    })
    .await;
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_rolled_back_with_the_reason_and_a_good_one_promoted() {
    let env = env(40).await;
    let rt = start(&env).await;
    let v1 = hostile(None);
    let cm1 = push_configmap(&env, &v1, None).await;
    apply_plugin(
        &env,
        "hostile",
        &cm1,
        json!({"mode": "ok"}),
        json!({"strategy": "direct"}),
    )
    .await;
    eventually("v1 serves", Duration::from_secs(60), || async {
        keys_patched_by(&rt, &digest(&v1)).len() == 40
    })
    .await;
    // v2 fails every reconcile.
    let bad = hostile(Some("bad"));
    let cm_bad = push_configmap(&env, &bad, None).await;
    let started = Instant::now();
    apply_plugin(
        &env,
        "hostile",
        &cm_bad,
        json!({"mode": "error"}),
        json!({"strategy": "canary", "canary": {"share": 50,
            "analysis": {"maxErrorRate": 0.2, "minSamples": 10, "windowSeconds": 60}}}),
    )
    .await;
    // The rate is 100% of the canary's reconciles unless one of them timed out on a
    // loaded machine (a timeout counts as a trap, not an error): any rate over the limit.
    let last = std::sync::Mutex::new(None);
    let rolled_back = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            let s = status(&env, "hostile").await;
            let (st, reason, message) = condition(&s, "Degraded");
            let done = st == "True"
                && reason == "CanaryRolledBack"
                && message.contains("error rate")
                && message.contains("over the limit 20.0%")
                && s.canary_revision.is_none()
                && s.stable_revision.as_deref() == Some(digest(&v1).as_str());
            *last.lock().expect("last") = Some(s);
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        rolled_back.is_ok(),
        "the canary was not rolled back with the reason; last status: {:#?}",
        last.lock().expect("last")
    );
    let breach_to_rollback = started.elapsed();
    let history = status(&env, "hostile").await.history;
    assert!(
        history.iter().any(|h| h.digest == digest(&bad)
            && h.outcome == "Failed"
            && h.reason
                .as_deref()
                .is_some_and(|r| r.contains("rolled back"))),
        "{history:?}"
    );
    // v1 serves every key: a new pod is labelled by v1.
    let api: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    for i in 100..110 {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("p-{i}")},
            "spec": {"containers": [{"name": "app", "image": "app:v1"}]}
        }))
        .expect("pod");
        api.create(&PostParams::default(), &pod).await.expect("pod");
    }
    eventually(
        "new pods are served by v1",
        Duration::from_secs(60),
        || async {
            let keys = keys_patched_by(&rt, &digest(&v1));
            (100..110).all(|i| keys.contains(&format!("Pod/default/p-{i}")))
        },
    )
    .await;

    // A good v2 is promoted by itself after its window.
    let good = hostile(Some("good"));
    let cm_good = push_configmap(&env, &good, None).await;
    apply_plugin(
        &env,
        "hostile",
        &cm_good,
        json!({"mode": "ok"}),
        json!({"strategy": "canary", "canary": {"share": 50,
            "analysis": {"minSamples": 5, "windowSeconds": 2}}}),
    )
    .await;
    eventually(
        "the good canary is promoted after the window",
        Duration::from_secs(60),
        || async {
            let s = status(&env, "hostile").await;
            s.stable_revision.as_deref() == Some(digest(&good).as_str())
                && condition(&s, "Progressing").1 == "CanaryPromoted"
        },
    )
    .await;
    println!(
        "breach to rollback (apply of a failing canary → rolled back, in status): {breach_to_rollback:?}"
    );
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

async fn degraded(env: &Env, v1: &[u8], reason: &str, text: &str) {
    eventually(reason, Duration::from_secs(60), || async {
        let s = status(env, "hostile").await;
        let (st, r, m) = condition(&s, "Degraded");
        // Nothing else is disturbed: v1 keeps serving.
        st == "True"
            && r == reason
            && m.contains(text)
            && s.stable_revision.as_deref() == Some(digest(v1).as_str())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plugins_are_degraded_with_the_reason_and_never_serve() {
    let env = env(2).await;
    let rt = start(&env).await;
    let v1 = hostile(None);
    let cm1 = push_configmap(&env, &v1, None).await;
    apply_plugin(
        &env,
        "hostile",
        &cm1,
        json!({"mode": "ok"}),
        json!({"strategy": "direct"}),
    )
    .await;
    eventually("v1 serves", Duration::from_secs(60), || async {
        status(&env, "hostile").await.stable_revision.as_deref() == Some(digest(&v1).as_str())
    })
    .await;
    // Bytes that do not match the digest their ConfigMap names.
    let tampered = hostile(Some("tampered"));
    let cm_bad = push_configmap(&env, &tampered, Some("00000000000000000000")).await;
    apply_plugin(
        &env,
        "hostile",
        &cm_bad,
        json!({"mode": "ok"}),
        json!({"strategy": "direct"}),
    )
    .await;
    degraded(&env, &v1, "DigestMismatch", "refusing to serve them").await;
    assert!(
        rt.registry()
            .current("hostile")
            .is_some_and(|r| r.digest() == digest(&v1))
    );
    // A ConfigMap (labelled truly) whose bytes are not the sha256 the Plugin names.
    let other = push_configmap(&env, &hostile(Some("other")), None).await;
    let claimed = Stored {
        name: other.name.clone(),
        sha256: digest(&hostile(Some("claimed"))),
    };
    apply_plugin(
        &env,
        "hostile",
        &claimed,
        json!({"mode": "ok"}),
        json!({"strategy": "direct"}),
    )
    .await;
    degraded(
        &env,
        &v1,
        "DigestMismatch",
        "not the sha256 the Plugin names",
    )
    .await;
    // A sha256 cut short (its first 12 digits, as in the ConfigMap's name).
    let short = Stored {
        name: other.name.clone(),
        sha256: other.sha256["sha256:".len()..][..12].to_owned(),
    };
    apply_plugin(
        &env,
        "hostile",
        &short,
        json!({"mode": "ok"}),
        json!({"strategy": "direct"}),
    )
    .await;
    degraded(&env, &v1, "InvalidSource", "not a full sha256").await;
    // A source that does not exist.
    let missing = Stored {
        name: "no-such-configmap".to_owned(),
        sha256: digest(&v1),
    };
    apply_plugin(
        &env,
        "hostile",
        &missing,
        json!({"mode": "ok"}),
        json!({"strategy": "direct"}),
    )
    .await;
    degraded(&env, &v1, "FetchFailed", "does not exist").await;
    // Share over 100%.
    let v2 = hostile(Some("v2"));
    let cm2 = push_configmap(&env, &v2, None).await;
    apply_plugin(
        &env,
        "hostile",
        &cm2,
        json!({"mode": "ok"}),
        json!({"strategy": "canary", "canary": {"share": 150}}),
    )
    .await;
    degraded(&env, &v1, "InvalidRollout", "use 1 to 100").await;
    // Another world than declared.
    let plugin = json!({"spec": {"world": "pod-agent", "rollout": {"strategy": "direct"}}});
    Api::<Plugin>::namespaced(env.client.clone(), "default")
        .patch("hostile", &PatchParams::default(), &Patch::Merge(plugin))
        .await
        .expect("patch");
    degraded(&env, &v1, "WorldMismatch", "spec.world says pod-agent").await;
    // Permissions narrower than the metadata asks.
    let plugin = json!({"spec": {"world": "controller",
        "permissions": [{"apiVersion": "v1", "kind": "Pod", "verbs": ["read"]}]}});
    Api::<Plugin>::namespaced(env.client.clone(), "default")
        .patch("hostile", &PatchParams::default(), &Patch::Merge(plugin))
        .await
        .expect("patch");
    degraded(&env, &v1, "PermissionsNotGranted", "patch on v1/Pod").await;
    assert!(
        rt.registry()
            .current("hostile")
            .is_some_and(|r| r.digest() == digest(&v1))
    );
    // A file on the runtime's disk, and this runtime has no plugins folder.
    let plugin = json!({"spec": {"source": {"configMap": null,
        "file": {"path": bosun_test_artifacts::HOSTILE}}}});
    Api::<Plugin>::namespaced(env.client.clone(), "default")
        .patch("hostile", &PatchParams::default(), &Patch::Merge(plugin))
        .await
        .expect("patch");
    degraded(&env, &v1, "SourceNotAllowed", "plugins folder").await;
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_executes_nothing_and_its_differences_are_reported() {
    let env = env(5).await;
    let rt = start(&env).await;
    let v1 = hostile(None);
    let cm1 = push_configmap(&env, &v1, None).await;
    apply_plugin(
        &env,
        "hostile",
        &cm1,
        json!({"mode": "ok"}),
        json!({"strategy": "direct"}),
    )
    .await;
    eventually("v1 serves", Duration::from_secs(60), || async {
        keys_patched_by(&rt, &digest(&v1)).len() == 5
    })
    .await;
    // The shadow decides differently: it would delete each pod.
    let v2 = hostile(Some("shadow"));
    let cm2 = push_configmap(&env, &v2, None).await;
    apply_plugin(
        &env,
        "hostile",
        &cm2,
        json!({"mode": "reap"}),
        json!({"strategy": "shadow"}),
    )
    .await;
    let api: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    // Mark a pod for reaping: the shadow would delete it, the stable one only labels it.
    api.patch(
        "p-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"reap": "true"}}})),
    )
    .await
    .expect("mark");
    eventually(
        "the difference is reported",
        Duration::from_secs(60),
        || async {
            let body = admin_get(&rt, "/plugins/hostile/diff");
            body.contains(&digest(&v2))
                && body.contains("\"delete\"")
                && body.contains("Pod/default/p-0")
        },
    )
    .await;
    // Nothing the shadow decided was executed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        api.get_opt("p-0").await.expect("get").is_some(),
        "the shadow's delete ran"
    );
    assert!(patches_by(&rt, &digest(&v2)).is_empty());
    let s = status(&env, "hostile").await;
    assert_eq!(s.stable_revision.as_deref(), Some(digest(&v1).as_str()));
    assert_eq!(s.canary_revision.as_deref(), Some(digest(&v2).as_str()));
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

async fn apply_url(env: &Env, url: &str, sha256: &str) {
    let plugin = json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "Plugin",
        "metadata": {"name": "hostile", "namespace": "default"},
        "spec": {
            "source": {"url": {"url": url, "sha256": sha256}},
            "world": "controller",
            "config": {"mode": "ok"},
            "permissions": [{"apiVersion": "v1", "kind": "Pod", "verbs": ["read", "patch", "delete", "pod-command"]}],
            "rollout": {"strategy": "direct"},
        }
    });
    Api::<Plugin>::namespaced(env.client.clone(), "default")
        .patch(
            "hostile",
            &PatchParams::apply("test").force(),
            &Patch::Apply(plugin),
        )
        .await
        .expect("apply Plugin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_sources_are_fetched_and_checked_against_their_sha256() {
    let env = env(2).await;
    let rt = start(&env).await;
    let v1 = hostile(None);
    let served = v1.clone();
    let app = axum::Router::new().route(
        "/hostile.wasm",
        axum::routing::get(move || {
            let bytes = served.clone();
            async move { bytes }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let base = format!("http://{addr}");
    apply_url(&env, &format!("{base}/hostile.wasm"), &digest(&v1)).await;
    eventually(
        "v1 serves from its URL",
        Duration::from_secs(60),
        || async {
            status(&env, "hostile").await.stable_revision.as_deref() == Some(digest(&v1).as_str())
        },
    )
    .await;
    // A source that 404s.
    apply_url(&env, &format!("{base}/missing.wasm"), &digest(&v1)).await;
    degraded(&env, &v1, "FetchFailed", "404 Not Found").await;
    // Bytes that do not match the sha256 the Plugin names.
    let other = digest(&hostile(Some("other")));
    apply_url(&env, &format!("{base}/hostile.wasm"), &other).await;
    degraded(&env, &v1, "DigestMismatch", "refusing to serve it").await;
    // Not a sha256 at all.
    apply_url(&env, &format!("{base}/hostile.wasm"), "abc").await;
    degraded(&env, &v1, "InvalidSource", "64 hex digits").await;
    assert!(
        rt.registry()
            .current("hostile")
            .is_some_and(|r| r.digest() == digest(&v1))
    );
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_whose_configmap_comes_later_serves_once_it_exists() {
    let env = env(2).await;
    let rt = start(&env).await;
    let v1 = hostile(None);
    let cm = stored(&v1);
    // The Plugin first, naming a ConfigMap that does not exist yet.
    apply_plugin(
        &env,
        "hostile",
        &cm,
        json!({"mode": "ok"}),
        json!({"strategy": "direct"}),
    )
    .await;
    eventually(
        "the missing source is reported",
        Duration::from_secs(30),
        || async {
            let s = status(&env, "hostile").await;
            let (on, reason, message) = condition(&s, "Degraded");
            on == "True" && reason == "FetchFailed" && message.contains("does not exist")
        },
    )
    .await;
    // No Plugin change follows: the controller tries the source again by itself.
    push_configmap(&env, &v1, None).await;
    eventually(
        "the plugin serves once its ConfigMap exists",
        Duration::from_secs(30),
        || async {
            let s = status(&env, "hostile").await;
            s.stable_revision.as_deref() == Some(digest(&v1).as_str())
                && condition(&s, "Degraded").0 == "False"
        },
    )
    .await;
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_plugin_is_degraded_and_the_others_serve() {
    let env = env(2).await;
    let rt = start(&env).await;
    // Two sources: the schema allows one; this runtime cannot read it as a Plugin.
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        "default",
        &kube::api::ApiResource::erase::<Plugin>(&()),
    );
    // Stored under an older CRD: today's schema refuses it, as the API server does.
    bosun_test_support::embedded::store_plugin_unchecked(
        &env.client,
        json!({
            "apiVersion": "bosun.dev/v1alpha1", "kind": "Plugin",
            "metadata": {"name": "broken", "namespace": "default"},
            "spec": {"source": {"file": {"path": "/x.wasm"}, "configMap": {"name": "c", "key": "k", "sha256": "sha256:0"}},
                     "world": "controller"}
        }),
    )
    .await;
    let v1 = hostile(None);
    let cm1 = push_configmap(&env, &v1, None).await;
    apply_plugin(
        &env,
        "hostile",
        &cm1,
        json!({"mode": "ok"}),
        json!({"strategy": "direct"}),
    )
    .await;
    eventually(
        "the broken Plugin is Degraded naming the field",
        Duration::from_secs(30),
        || async {
            let Ok(object) = raw.get("broken").await else {
                return false;
            };
            object.data["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["type"] == "Degraded"
                        && c["status"] == "True"
                        && c["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("spec.source"))
                })
        },
    )
    .await;
    eventually(
        "the other Plugin serves",
        Duration::from_secs(30),
        || async {
            status(&env, "hostile").await.stable_revision.as_deref() == Some(digest(&v1).as_str())
        },
    )
    .await;
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

/// Plugin log lines with the revision that wrote them.
#[derive(Default)]
struct ByRevision(std::sync::Mutex<Vec<(String, String)>>);

impl bosun_host::host::log::Log for ByRevision {
    fn log(&self, call: &bosun_host::CallInfo, _: bosun_host::contract::Level, message: &str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((call.revision.to_string(), message.to_owned()));
    }
}

impl ByRevision {
    /// The `count=N` values `revision` logged, in order.
    fn counts(&self, revision: &str) -> Vec<u64> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(r, _)| r == revision)
            .filter_map(|(_, m)| m.strip_prefix("count=")?.parse().ok())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_in_another_namespace_never_loads_and_is_told_where_plugins_are_read() {
    let env = env(2).await;
    let rt = start(&env).await;
    let v1 = hostile(None);
    let cm1 = push_configmap(&env, &v1, None).await;
    apply_plugin(
        &env,
        "hostile",
        &cm1,
        json!({"mode": "ok"}),
        json!({"strategy": "direct"}),
    )
    .await;
    eventually("v1 serves", Duration::from_secs(60), || async {
        status(&env, "hostile").await.stable_revision.as_deref() == Some(digest(&v1).as_str())
    })
    .await;
    // Another namespace declares a Plugin of the same name, granting itself as much.
    let ns: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": "tenant"}})).expect("namespace");
    Api::<k8s_openapi::api::core::v1::Namespace>::all(env.client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let evil = hostile(Some("evil"));
    let cm_evil = push_as(&env, "tenant", "hostile", &evil, None).await;
    apply_in(
        &env,
        "tenant",
        "hostile",
        &cm_evil,
        json!({"mode": "reap"}),
        json!({"strategy": "direct"}),
    )
    .await;
    let tenant: Api<Plugin> = Api::namespaced(env.client.clone(), "tenant");
    let degraded = || async {
        let s = tenant.get("hostile").await.ok()?.status?;
        s.conditions
            .into_iter()
            .find(|c| c.type_ == "Degraded" && c.status == "True")
    };
    eventually(
        "the Plugin elsewhere is told where Plugins are read",
        Duration::from_secs(30),
        || async {
            degraded().await.is_some_and(|c| {
                c.reason == "WrongNamespace" && c.message.contains("read in namespace default")
            })
        },
    )
    .await;
    let said = degraded().await.expect("degraded");
    // A change of it is not answered again, and it never loads.
    tenant
        .patch(
            "hostile",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .expect("touch");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(degraded().await, Some(said), "said again");
    assert!(
        rt.registry()
            .current("hostile")
            .is_some_and(|r| r.digest() == digest(&v1)),
        "the Plugin of another namespace replaced the real one"
    );
    assert!(rt.rollouts().routes().route("hostile").is_none());
    assert!(
        rt.registry()
            .history("hostile")
            .iter()
            .all(|h| h.digest != digest(&evil)),
        "the Plugin of another namespace was loaded"
    );
    let s = status(&env, "hostile").await;
    assert_eq!(s.stable_revision.as_deref(), Some(digest(&v1).as_str()));
    assert_eq!(condition(&s, "Degraded").0, "False");
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_that_is_another_plugin_is_refused_before_it_attaches() {
    let env = env(2).await;
    let rt = start(&env).await;
    let v1 = hostile(None);
    let cm1 = push_configmap(&env, &v1, None).await;
    apply_plugin(
        &env,
        "hostile",
        &cm1,
        json!({"mode": "ok"}),
        json!({"strategy": "direct"}),
    )
    .await;
    let pinger = std::fs::read(bosun_test_artifacts::PINGER).expect("pinger");
    let cm_pinger = push_as(&env, "default", "pinger", &pinger, None).await;
    apply_plugin(
        &env,
        "pinger",
        &cm_pinger,
        json!({"count": 1}),
        json!({"strategy": "direct"}),
    )
    .await;
    eventually("both serve", Duration::from_secs(60), || async {
        status(&env, "hostile").await.stable_revision.as_deref() == Some(digest(&v1).as_str())
            && status(&env, "pinger").await.stable_revision.as_deref()
                == Some(digest(&pinger).as_str())
    })
    .await;
    // The Plugin `pinger` shadows a component named `hostile`.
    let evil = hostile(Some("evil"));
    let cm_evil = push_configmap(&env, &evil, None).await;
    apply_plugin(
        &env,
        "pinger",
        &cm_evil,
        json!({"mode": "state"}),
        json!({"strategy": "shadow"}),
    )
    .await;
    eventually(
        "the shadow is refused, naming both plugins",
        Duration::from_secs(30),
        || async {
            let (on, reason, message) = condition(&status(&env, "pinger").await, "Degraded");
            on == "True"
                && reason == "NameMismatch"
                && message.contains("\"hostile\"")
                && message.contains("pinger")
        },
    )
    .await;
    assert!(
        rt.rollouts().routes().route("hostile").is_none(),
        "the shadow attached to the plugin it names"
    );
    assert!(rt.rollouts().routes().route("pinger").is_none());
    let s = status(&env, "hostile").await;
    assert_eq!(s.canary_revision, None);
    assert_eq!(s.stable_revision.as_deref(), Some(digest(&v1).as_str()));
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_neither_reads_nor_writes_the_stable_revisions_state() {
    let env = env(3).await;
    let mut c = env.config("rt");
    // One call at a time: each revision's counter goes up by one per call.
    c.queue.concurrency = 1;
    c.queue.backoff_max_ms = 500;
    let log = Arc::new(ByRevision::default());
    let rt = Runtime::start_with(c, env.client.clone(), log.clone())
        .await
        .expect("runtime");
    let v1 = hostile(None);
    let cm1 = push_configmap(&env, &v1, None).await;
    apply_plugin(
        &env,
        "hostile",
        &cm1,
        json!({"mode": "state"}),
        json!({"strategy": "direct"}),
    )
    .await;
    eventually("v1 counted each pod", Duration::from_secs(60), || async {
        log.counts(&digest(&v1)).len() >= 3
    })
    .await;
    let v2 = hostile(Some("shadow"));
    let cm2 = push_configmap(&env, &v2, None).await;
    apply_plugin(
        &env,
        "hostile",
        &cm2,
        json!({"mode": "state"}),
        json!({"strategy": "shadow"}),
    )
    .await;
    // Each pod changes: stable and shadow both count it.
    let api: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    for i in 0..3 {
        api.patch(
            &format!("p-{i}"),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .expect("touch");
    }
    eventually(
        "the shadow counted the pods",
        Duration::from_secs(60),
        || async { log.counts(&digest(&v2)).len() >= 3 },
    )
    .await;
    let stable = log.counts(&digest(&v1));
    let shadow = log.counts(&digest(&v2));
    // The shadow started from nothing, not from what the stable revision kept ...
    assert_eq!(
        shadow[0], 1,
        "the shadow read the stable's state: {shadow:?}"
    );
    // ... and never moved the stable revision's counter.
    let expected: Vec<u64> = (1..=stable.len() as u64).collect();
    assert_eq!(stable, expected, "the shadow wrote the stable's state");
    let expected: Vec<u64> = (1..=shadow.len() as u64).collect();
    assert_eq!(shadow, expected);
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_url_delays_no_other_plugin() {
    let env = env(2).await;
    let rt = start(&env).await;
    // A URL that answers nothing (the runtime gives up after 30 s).
    let asked = Arc::new(tokio::sync::Notify::new());
    let notify = asked.clone();
    let app = axum::Router::new().route(
        "/slow.wasm",
        axum::routing::get(move || {
            let notify = notify.clone();
            async move {
                notify.notify_one();
                std::future::pending::<Vec<u8>>().await
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let slow = json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "Plugin",
        "metadata": {"name": "slow", "namespace": "default"},
        "spec": {
            "source": {"url": {"url": format!("http://{addr}/slow.wasm"), "sha256": digest(b"x")}},
            "world": "controller",
        }
    });
    Api::<Plugin>::namespaced(env.client.clone(), "default")
        .patch(
            "slow",
            &PatchParams::apply("test").force(),
            &Patch::Apply(slow),
        )
        .await
        .expect("apply Plugin");
    tokio::time::timeout(Duration::from_secs(30), asked.notified())
        .await
        .expect("the slow URL is being fetched");
    // While that fetch hangs, another Plugin is served.
    let v1 = hostile(None);
    let cm1 = push_configmap(&env, &v1, None).await;
    apply_plugin(
        &env,
        "hostile",
        &cm1,
        json!({"mode": "ok"}),
        json!({"strategy": "direct"}),
    )
    .await;
    eventually(
        "the other Plugin serves while the slow fetch hangs",
        Duration::from_secs(20),
        || async {
            status(&env, "hostile").await.stable_revision.as_deref() == Some(digest(&v1).as_str())
        },
    )
    .await;
    assert!(rt.registry().current("slow").is_none());
    rt.shutdown().await;
    env.cluster.shutdown().await;
}
