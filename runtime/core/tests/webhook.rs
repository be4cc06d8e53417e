//! The admission webhook: AdmissionReviews posted to the runtime over HTTPS are answered
//! by admission plugins, checked, counted and audited; canaries and shadows review their
//! share; the serving certificate is renewed under load without a failed request; and
//! the webhook configurations the runtime writes make the embedded cluster call it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_api::plugin::Webhook;
use bosun_runtime::rollout::{Analysis, Grants, Split};
use bosun_runtime::{Config, Runtime};
use bosun_test_support::embedded::{Env, HttpsClient as Client, admin_get, https_client, source};
use bosun_test_support::eventually;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

const PLUGIN: &str = "test-admission";

/// A test runtime whose webhook listens on loopback and is called at its own address.
fn config(env: &Env, name: &str) -> Config {
    let mut c = env.config(name);
    c.webhook.listen = Some("127.0.0.1:0".parse().expect("addr"));
    c.webhook.url = Some("https://127.0.0.1:0".to_owned());
    c
}

fn review(uid: &str, namespace: &str, name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid, "operation": "CREATE", "namespace": namespace, "name": name,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "object": {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": name, "namespace": namespace, "labels": labels}},
        }
    })
}

/// An HTTPS client trusting only the runtime's webhook CA.
fn client(rt: &Runtime) -> Client {
    https_client(&rt.webhooks().expect("webhook").ca_pem())
}

/// Posts `body` to `/admission/PLUGIN?timeout=...`; the status and the body.
async fn post(
    client: &Client,
    rt: &Runtime,
    plugin: &str,
    timeout: &str,
    body: &Value,
) -> (u16, String) {
    let addr = rt.webhooks().expect("webhook").addr();
    let uri = format!(
        "https://127.0.0.1:{}/admission/{plugin}?timeout={timeout}",
        addr.port()
    );
    let req = hyper::Request::post(uri)
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body.to_string())))
        .expect("request");
    let res = client.request(req).await.expect("the webhook answers");
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn response(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1", "{body}");
    assert_eq!(v["kind"], "AdmissionReview", "{body}");
    v["response"].clone()
}

fn install(rt: &Runtime, config: Value, webhook: Webhook) {
    rt.install(
        &source(bosun_test_artifacts::TEST_ADMISSION),
        &config.to_string(),
    )
    .expect("admission plugin loads");
    rt.rollouts().declare_webhook(PLUGIN, Some(webhook));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_are_answered_checked_counted_and_audited() {
    let env = Env::bare(1).await;
    let rt = env.runtime(config(&env, "rt")).await;
    install(&rt, json!({"require": "team"}), Webhook::default());
    let c = client(&rt);

    let (status, body) = post(
        &c,
        &rt,
        PLUGIN,
        "5s",
        &review("u-1", "shop", "web-0", json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let r = response(&body);
    assert_eq!(r["uid"], "u-1");
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["message"], "pods need a team label");
    assert_eq!(r["status"]["code"], 403);

    let (status, body) = post(
        &c,
        &rt,
        PLUGIN,
        "5s",
        &review("u-2", "shop", "web-1", json!({"team": "a"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(response(&body)["allowed"], true);

    // kube-system is never sent to a plugin: allowed without a call.
    let calls = rt
        .registry()
        .current(PLUGIN)
        .expect("serving")
        .stats()
        .calls;
    let (_, body) = post(
        &c,
        &rt,
        PLUGIN,
        "5s",
        &review("u-3", "kube-system", "dns", json!({})),
    )
    .await;
    assert_eq!(response(&body)["allowed"], true);
    assert_eq!(
        rt.registry()
            .current(PLUGIN)
            .expect("serving")
            .stats()
            .calls,
        calls
    );

    // Not a plugin here, not an AdmissionReview, not JSON: clear errors, not a panic.
    let (status, body) = post(
        &c,
        &rt,
        "nobody",
        "5s",
        &review("u-4", "shop", "p", json!({})),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no admission plugin \"nobody\""), "{body}");
    let (status, body) = post(&c, &rt, PLUGIN, "5s", &json!({"kind": "Pod"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("admission.k8s.io/v1 AdmissionReview"),
        "{body}"
    );

    // A validating webhook's plugin that patches: an invalid answer, a 500 (the API
    // server then applies the failure policy).
    rt.uninstall(PLUGIN);
    install(&rt, json!({"add": {"x": "y"}}), Webhook::default());
    let (status, body) = post(
        &c,
        &rt,
        PLUGIN,
        "5s",
        &review("u-5", "shop", "p", json!({})),
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("a validating webhook may not patch"),
        "{body}"
    );

    let metrics = admin_get(&rt, "/metrics");
    for result in ["denied", "allowed", "excluded", "error"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("bosun_admission_reviews_total")
                    && l.contains(&format!("result=\"{result}\""))
                    && l.contains("plugin=\"test-admission\"")),
            "no {result} count in\n{metrics}"
        );
    }
    assert!(
        metrics.contains("bosun_admission_review_duration_seconds_bucket"),
        "{metrics}"
    );
    rt.audit().flush().expect("flush");
    let records = bosun_runtime::audit::read(rt.audit().path()).expect("audit");
    assert!(
        records
            .iter()
            .any(|r| r.guardrail.as_deref() == Some("admission")
                && r.message == "pods need a team label"
                && r.key.as_deref() == Some("Pod/shop/web-0")),
        "{records:?}"
    );
    assert!(
        records.iter().any(|r| r.message.contains("may not patch")),
        "{records:?}"
    );

    let status = admin_get(&rt, "/plugins");
    let v: Value = serde_json::from_str(&status).expect("json");
    assert!(
        v["webhook"]["calledAt"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://127.0.0.1:")),
        "{status}"
    );
    assert!(
        v["webhook"]["certificateExpires"].as_str().is_some(),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutating_plugin_patches_and_a_looping_one_times_out() {
    let env = Env::bare(1).await;
    let rt = env.runtime(config(&env, "rt")).await;
    install(
        &rt,
        json!({"add": {"injected": "yes"}}),
        Webhook {
            mutating: true,
            ..Webhook::default()
        },
    );
    let c = client(&rt);
    let (status, body) = post(
        &c,
        &rt,
        PLUGIN,
        "5s",
        &review("u-1", "shop", "web-0", json!({"app": "web"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let r = response(&body);
    assert_eq!(r["allowed"], true);
    assert_eq!(r["patchType"], "JSONPatch");
    use base64::Engine as _;
    let patch: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(r["patch"].as_str().expect("patch"))
            .expect("base64"),
    )
    .expect("json");
    assert_eq!(
        patch,
        json!([{"op": "add", "path": "/metadata/labels/injected", "value": "yes"}])
    );

    // A patch that does not apply is refused before the API server sees it.
    rt.uninstall(PLUGIN);
    install(
        &rt,
        json!({"mode": "bad-patch"}),
        Webhook {
            mutating: true,
            ..Webhook::default()
        },
    );
    let (status, body) = post(
        &c,
        &rt,
        PLUGIN,
        "5s",
        &review("u-2", "shop", "p", json!({})),
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("does not apply to the object"), "{body}");

    // An endless loop: the answer comes at the API server's timeout, not never.
    rt.uninstall(PLUGIN);
    install(&rt, json!({"mode": "loop"}), Webhook::default());
    let started = Instant::now();
    let (status, body) = post(
        &c,
        &rt,
        PLUGIN,
        "500ms",
        &review("u-3", "shop", "p", json!({})),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("did not answer within 500ms"), "{body}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_reviews_its_share_and_a_shadow_is_only_compared() {
    let env = Env::bare(1).await;
    let rt = env.runtime(config(&env, "rt")).await;
    install(
        &rt,
        json!({"require": "team", "tag": "v1"}),
        Webhook::default(),
    );
    let c = client(&rt);
    rt.rollouts()
        .canary(
            PLUGIN,
            Grants::new(&[]),
            &source(bosun_test_artifacts::TEST_ADMISSION),
            r#"{"require": "team", "tag": "v2"}"#,
            Split::Share(30),
            Analysis {
                manual: true,
                ..Analysis::default()
            },
        )
        .expect("canary");
    let (mut v1, mut v2) = (0, 0);
    for i in 0..200 {
        let (_, body) = post(
            &c,
            &rt,
            PLUGIN,
            "5s",
            &review(&format!("u-{i}"), "shop", &format!("p-{i}"), json!({})),
        )
        .await;
        match response(&body)["status"]["message"].as_str() {
            Some("pods need a team label (v1)") => v1 += 1,
            Some("pods need a team label (v2)") => v2 += 1,
            other => panic!("{other:?}"),
        }
    }
    // 30% of the keys by their stable hash: the same split as controllers get.
    assert!((40..=80).contains(&v2), "v1 {v1}, v2 {v2}");
    assert_eq!(v1 + v2, 200);

    rt.rollouts().drop_route(PLUGIN);
    let mut spec = rt.rollouts().spec();
    spec.config = r#"{"require": "owner"}"#.to_owned();
    rt.rollouts()
        .shadow(
            PLUGIN,
            Grants::new(&[]),
            &source(bosun_test_artifacts::TEST_ADMISSION),
            spec,
        )
        .expect("shadow");
    let (_, body) = post(
        &c,
        &rt,
        PLUGIN,
        "5s",
        &review("s-1", "shop", "web-0", json!({"team": "a"})),
    )
    .await;
    // The stable answer is returned; the shadow's denial is only recorded.
    assert_eq!(response(&body)["allowed"], true);
    eventually(
        "the shadow's difference is recorded",
        Duration::from_secs(10),
        || async {
            let diff = admin_get(&rt, "/plugins/test-admission/diff");
            diff.contains("pods need a owner label") && diff.contains("Pod/shop/web-0")
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serving_certificate_is_renewed_under_load_without_a_failed_request() {
    let env = Env::bare(1).await;
    let rt = env.runtime(config(&env, "rt")).await;
    install(&rt, json!({"require": "team"}), Webhook::default());
    let webhooks = rt.webhooks().expect("webhook").clone();
    let first_expiry = webhooks.cert_expires().expect("expiry");
    let ca = webhooks.ca_pem();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (rt, stop) = (rt.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // A new client now and then: new connections make new handshakes.
                let c = client(&rt);
                for _ in 0..5 {
                    i += 1;
                    let (status, body) = post(
                        &c,
                        &rt,
                        PLUGIN,
                        "5s",
                        &review(&format!("{worker}-{i}"), "shop", "p", json!({})),
                    )
                    .await;
                    if status == 200 && body.contains("pods need a team label") {
                        ok += 1;
                    } else {
                        failed.push(format!("{status} {body}"));
                    }
                }
            }
            (ok, failed)
        }));
    }
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        webhooks.renew_now().await.expect("renew");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for l in load {
        let (o, f) = l.await.expect("worker");
        ok += o;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 50, "{ok}");
    // A new serving certificate (later expiry: renewed seconds later), the same CA.
    assert!(webhooks.cert_expires().expect("expiry") > first_expiry);
    assert_eq!(webhooks.ca_pem(), ca);
    // Kept in the data directory: a restarted runtime serves it again.
    let kept = std::fs::read_to_string(env.dir.path().join("rt/webhook-tls/ca.crt")).expect("kept");
    assert_eq!(kept, ca);
}

async fn namespace(env: &Env, name: &str, labels: Value) {
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(env.client.clone());
    let ns =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).expect("ns");
    api.create(&kube::api::PostParams::default(), &ns)
        .await
        .expect("namespace");
}

/// Creates a pod; the error's message when the API server refuses it.
async fn create_pod(
    env: &Env,
    ns: &str,
    name: &str,
    labels: Value,
) -> Result<k8s_openapi::api::core::v1::Pod, String> {
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(env.client.clone(), ns);
    let pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "app:v1"}]},
    }))
    .expect("pod");
    api.create(&kube::api::PostParams::default(), &pod)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) => format!("{} {}", s.code, s.message),
            e => e.to_string(),
        })
}

/// The webhooks of the configuration of `kind` the runtime wrote.
async fn configured(env: &Env, kind: &str) -> Option<Value> {
    let ar = kube::api::ApiResource {
        group: "admissionregistration.k8s.io".into(),
        version: "v1".into(),
        api_version: "admissionregistration.k8s.io/v1".into(),
        kind: kind.into(),
        plural: format!("{}s", kind.to_ascii_lowercase()),
    };
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::all_with(env.client.clone(), &ar);
    let o = api.get_opt("bosun").await.ok().flatten()?;
    Some(o.data["webhooks"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_calls_admission_plugins_through_the_configurations_the_runtime_writes() {
    let env = Env::bare(1).await;
    let rt = env.runtime(config(&env, "rt")).await;
    namespace(&env, "shop", json!({"admission": "on"})).await;
    namespace(&env, "other", json!({})).await;
    let selector: bosun_api::plugin::FullLabelSelector =
        serde_json::from_value(json!({"matchLabels": {"admission": "on"}})).expect("selector");
    install(
        &rt,
        json!({"require": "team"}),
        Webhook {
            namespace_selector: Some(selector.clone()),
            ..Webhook::default()
        },
    );
    eventually(
        "the validating configuration is written",
        Duration::from_secs(20),
        || async {
            configured(&env, "ValidatingWebhookConfiguration")
                .await
                .is_some_and(|w| {
                    w[0]["name"] == "test-admission.plugins.bosun.dev"
                        && w[0]["rules"][0]["resources"] == json!(["pods"])
                        && w[0]["clientConfig"]["caBundle"]
                            .as_str()
                            .is_some_and(|c| !c.is_empty())
                })
        },
    )
    .await;
    let denied = create_pod(&env, "shop", "no-team", json!({}))
        .await
        .expect_err("denied");
    assert!(
        denied.contains("admission webhook \"test-admission.plugins.bosun.dev\" denied the request: pods need a team label"),
        "{denied}"
    );
    create_pod(&env, "shop", "with-team", json!({"team": "a"}))
        .await
        .expect("allowed");
    // A namespace the selector does not select is never reviewed.
    create_pod(&env, "other", "no-team", json!({}))
        .await
        .expect("not reviewed");

    // Now a mutating plugin: the validating configuration goes, a mutating one comes.
    rt.uninstall(PLUGIN);
    install(
        &rt,
        json!({"add": {"injected": "yes"}}),
        Webhook {
            mutating: true,
            namespace_selector: Some(selector),
            ..Webhook::default()
        },
    );
    eventually(
        "the mutating configuration replaces the validating one",
        Duration::from_secs(20),
        || async {
            configured(&env, "MutatingWebhookConfiguration")
                .await
                .is_some()
                && configured(&env, "ValidatingWebhookConfiguration")
                    .await
                    .is_none()
        },
    )
    .await;
    let pod = create_pod(&env, "shop", "mutated", json!({"app": "web"}))
        .await
        .expect("created");
    let labels = pod.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("injected").map(String::as_str),
        Some("yes"),
        "{labels:?}"
    );
    assert_eq!(labels.get("app").map(String::as_str), Some("web"));
}

/// Waits until the validating configuration's webhook has `policy`.
async fn failure_policy_is(env: &Env, policy: &str) {
    eventually(
        &format!("the configuration says {policy}"),
        Duration::from_secs(20),
        || async {
            configured(env, "ValidatingWebhookConfiguration")
                .await
                .is_some_and(|w| w[0]["failurePolicy"] == policy)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_policy_decides_when_the_plugin_loops_or_the_runtime_is_gone() {
    let env = Env::bare(1).await;
    let rt = env.runtime(config(&env, "rt")).await;
    namespace(&env, "shop", json!({})).await;
    install(
        &rt,
        json!({"mode": "loop"}),
        Webhook {
            failure_policy: Some(bosun_api::plugin::FailurePolicy::Fail),
            timeout_seconds: Some(1),
            ..Webhook::default()
        },
    );
    failure_policy_is(&env, "Fail").await;
    let started = Instant::now();
    let e = create_pod(&env, "shop", "p1", json!({}))
        .await
        .expect_err("fails under Fail");
    assert!(
        e.contains("failed calling webhook \"test-admission.plugins.bosun.dev\""),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Ignore: the same loop lets the pod through after the timeout.
    rt.rollouts().declare_webhook(
        PLUGIN,
        Some(Webhook {
            timeout_seconds: Some(1),
            ..Webhook::default()
        }),
    );
    failure_policy_is(&env, "Ignore").await;
    create_pod(&env, "shop", "p2", json!({}))
        .await
        .expect("Ignore lets it through");

    // The runtime stops: its configuration stays, and nobody answers.
    rt.uninstall(PLUGIN);
    install(
        &rt,
        json!({"require": "team"}),
        Webhook {
            failure_policy: Some(bosun_api::plugin::FailurePolicy::Fail),
            ..Webhook::default()
        },
    );
    failure_policy_is(&env, "Fail").await;
    rt.shutdown().await;
    drop(rt);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = create_pod(&env, "shop", "p3", json!({"team": "a"}))
        .await
        .expect_err("nobody answers");
    assert!(
        e.contains("failed calling webhook \"test-admission.plugins.bosun.dev\""),
        "{e}"
    );
    // Under Ignore, the same request goes through while nobody answers.
    let ar = kube::api::ApiResource {
        group: "admissionregistration.k8s.io".into(),
        version: "v1".into(),
        api_version: "admissionregistration.k8s.io/v1".into(),
        kind: "ValidatingWebhookConfiguration".into(),
        plural: "validatingwebhookconfigurations".into(),
    };
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::all_with(env.client.clone(), &ar);
    api.patch(
        "bosun",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Json::<()>(
            serde_json::from_value(
                json!([{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"}]),
            )
            .expect("patch"),
        ),
    )
    .await
    .expect("Ignore");
    create_pod(&env, "shop", "p4", json!({}))
        .await
        .expect("Ignore lets it through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_a_secret_serve_one_ca() {
    let env = Env::bare(1).await;
    let mut first = config(&env, "a");
    first.webhook.secret = Some("bosun-webhook-tls".to_owned());
    let mut second = config(&env, "b");
    second.webhook.secret = Some("bosun-webhook-tls".to_owned());
    let (a, b) = tokio::join!(env.runtime(first), env.runtime(second));
    let (wa, wb) = (a.webhooks().expect("a"), b.webhooks().expect("b"));
    assert_eq!(wa.ca_pem(), wb.ca_pem());
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::default_namespaced(env.client.clone());
    let secret = secrets
        .get("bosun-webhook-tls")
        .await
        .expect("kept in the Secret");
    let data = secret.data.unwrap_or_default();
    assert_eq!(
        data.get("ca.crt")
            .map(|b| String::from_utf8_lossy(&b.0).into_owned()),
        Some(wa.ca_pem())
    );
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    // Nothing in the data directories.
    assert!(!env.dir.path().join("a/webhook-tls").exists());
    // A renewal by one replica is kept for the others.
    wa.renew_now().await.expect("renew");
    let renewed = secrets.get("bosun-webhook-tls").await.expect("secret");
    assert_ne!(
        renewed.data.unwrap_or_default().get("tls.crt"),
        data.get("tls.crt")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_of_one_plugin_are_bounded_by_max_concurrent_reviews() {
    let env = Env::bare(1).await;
    let mut c = config(&env, "rt");
    c.webhook.max_concurrent_reviews = 1;
    let rt = env.runtime(c).await;
    install(&rt, json!({"mode": "loop"}), Webhook::default());
    let client = client(&rt);
    let calls = || {
        rt.registry()
            .current(PLUGIN)
            .expect("serving")
            .stats()
            .calls
    };
    let before = calls();
    // Two reviews at once of a plugin that never answers: the second waits for the
    // first's place (held until the plugin's 1 s deadline ends its call) and times out
    // without ever running.
    let review_a = review("a", "shop", "a", json!({}));
    let review_b = review("b", "shop", "b", json!({}));
    let (a, b) = tokio::join!(
        post(&client, &rt, PLUGIN, "500ms", &review_a),
        post(&client, &rt, PLUGIN, "500ms", &review_b),
    );
    assert_eq!((a.0, b.0), (500, 500), "{a:?} {b:?}");
    assert_eq!(calls() - before, 1, "only one review ran");
}
