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

/// What `bosun plugin push` stores: a ConfigMap per digest, labelled with it.
async fn push_configmap(env: &Env, bytes: &[u8], label: Option<&str>) -> String {
    let d = digest(bytes);
    let hex = d.trim_start_matches("sha256:");
    let name = format!("bosun-plugin-hostile-{}", &hex[..12]);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "bosun.dev/plugin": "hostile",
            "bosun.dev/digest": label.unwrap_or(&hex[..63]),
        }},
        "binaryData": {"plugin.wasm": ByteString(bytes.to_vec())},
    }))
    .expect("configmap");
    Api::<ConfigMap>::namespaced(env.client.clone(), "default")
        .create(&PostParams::default(), &cm)
        .await
        .expect("configmap");
    name
}

async fn apply_plugin(
    env: &Env,
    name: &str,
    configmap: &str,
    config: serde_json::Value,
    rollout: serde_json::Value,
) {
    let plugin = json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "Plugin",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "source": {"configMap": {"name": configmap, "key": "plugin.wasm"}},
            "world": "controller",
            "config": config,
            "permissions": [{"apiVersion": "v1", "kind": "Pod", "verbs": ["read", "patch", "delete", "pod-command"]}],
            "rollout": rollout,
        }
    });
    Api::<Plugin>::namespaced(env.client.clone(), "default")
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
    eventually(
        "the canary is rolled back with the reason",
        Duration::from_secs(60),
        || async {
            let s = status(&env, "hostile").await;
            let (st, reason, message) = condition(&s, "Degraded");
            st == "True"
                && reason == "CanaryRolledBack"
                && message.contains("error rate 100.0% over the limit 20.0%")
                && s.canary_revision.is_none()
                && s.stable_revision.as_deref() == Some(digest(&v1).as_str())
        },
    )
    .await;
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
    // A source that does not exist.
    apply_plugin(
        &env,
        "hostile",
        "no-such-configmap",
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
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

fn admin_get(rt: &Runtime, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(rt.admin_addr()).expect("admin");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
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
    let hex = digest(&v1).trim_start_matches("sha256:").to_owned();
    let cm = format!("bosun-plugin-hostile-{}", &hex[..12]);
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
    let broken: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "Plugin",
        "metadata": {"name": "broken", "namespace": "default"},
        "spec": {"source": {"file": {"path": "/x.wasm"}, "configMap": {"name": "c", "key": "k"}},
                 "world": "controller"}
    }))
    .expect("object");
    raw.create(&PostParams::default(), &broken)
        .await
        .expect("stored");
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
