//! AdmissionReviews per second and their latency, for the same policy in Rust and in
//! JavaScript (deny a pod without an `app` label, label the others with a JSON patch):
//!
//!     cargo bench -p bosun-conformance --bench admission
//!
//! (a) posted straight to the runtime's webhook over HTTPS (keep-alive connections), at
//! a fixed rate (`BOSUN_BENCH_RATE`, default 1,000/s) for `BOSUN_BENCH_SECONDS` (default
//! 30), latency measured from each request's scheduled send time, so that a stall
//! counts against every request it delays; then as fast as 8 connections go for 5 s.
//! (b) `BOSUN_BENCH_PODS` (default 2,000) pods created through the embedded cluster,
//! which calls the webhook, 4 at a time, against the same creations with no webhook
//! configured (measured last, once the plugins are gone). Client, runtime and cluster
//! share this machine's cores.

use std::time::{Duration, Instant};

use bosun_api::plugin::{FailurePolicy, Webhook};
use bosun_conformance::crate_dir;
use bosun_runtime::Runtime;
use bosun_test_support::embedded::{Env, HttpsClient as Client, https_client, source};
use bosun_test_support::eventually;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn client(rt: &Runtime) -> Client {
    https_client(&rt.webhooks().expect("webhook").ca_pem())
}

fn review(i: u64) -> String {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": format!("u-{i}"), "operation": "CREATE", "namespace": "shop", "name": format!("web-{i}"),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "object": {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("web-{i}"), "namespace": "shop", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27",
                    "ports": [{"containerPort": 80}], "resources": {"requests": {"cpu": "100m"}}}]}},
        }
    })
    .to_string()
}

async fn post(c: &Client, url: &str, body: String) -> bool {
    let req = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body)))
        .expect("request");
    match c.request(req).await {
        Ok(res) => {
            let ok = res.status() == 200;
            let body = res.into_body().collect().await.map(|b| b.to_bytes());
            ok && body.is_ok_and(|b| b.windows(9).any(|w| w == b"JSONPatch"))
        }
        Err(_) => false,
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// (a) at a fixed rate: (sent, failed, p50, p99, max, achieved rate).
async fn fixed_rate(c: &Client, url: &str, rate: u64, seconds: u64) -> String {
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let (c, url) = (c.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let ok = post(&c, &url, review(i)).await;
            (ok, due.elapsed())
        }));
    }
    let mut lat = Vec::with_capacity(tasks.len());
    let mut failed = 0;
    for t in tasks {
        let (ok, d) = t.await.expect("task");
        failed += u64::from(!ok);
        lat.push(d);
    }
    let wall = start.elapsed();
    lat.sort();
    format!(
        "{total} sent at {rate}/s ({:.0}/s achieved), {failed} failed; p50 {}, p99 {}, max {}",
        total as f64 / wall.as_secs_f64(),
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(*lat.last().unwrap_or(&Duration::ZERO))
    )
}

/// (a) as fast as `workers` keep-alive connections go for `secs`.
async fn closed_loop(c: &Client, url: &str, workers: u64, secs: u64) -> String {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (c, url) = (c.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = w * 1_000_000;
            while Instant::now() < until {
                let t = Instant::now();
                assert!(post(&c, &url, review(i)).await, "a review failed");
                lat.push(t.elapsed());
                i += 1;
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("worker"));
    }
    lat.sort();
    format!(
        "{:.0} reviews/s with {workers} connections; p50 {}, p99 {}",
        lat.len() as f64 / secs as f64,
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    )
}

/// (b) pods created through the cluster, `workers` at a time, for `secs`.
async fn through_cluster(env: &Env, prefix: &str, workers: usize, pods: usize) -> String {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(env.client.clone(), "shop");
        let prefix = prefix.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0;
            while i < pods / workers {
                let pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("{prefix}-{w}-{i}"), "labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
                }))
                .expect("pod");
                let t = Instant::now();
                api.create(&kube::api::PostParams::default(), &pod)
                    .await
                    .expect("created");
                lat.push(t.elapsed());
                i += 1;
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("worker"));
    }
    lat.sort();
    let wall = started.elapsed();
    // The simulated kubelet starts the pods meanwhile: let it settle before what follows.
    tokio::time::sleep(Duration::from_secs(3)).await;
    format!(
        "{} pods in {:.2} s ({:.0}/s) with {workers} clients; p50 {}, p99 {}",
        lat.len(),
        wall.as_secs_f64(),
        lat.len() as f64 / wall.as_secs_f64(),
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    )
}

/// Whether a pod without the `app` label is created (no webhook denies it).
async fn probe(env: &Env, name: &str) -> bool {
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(env.client.clone(), "shop");
    let pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
    }))
    .expect("pod");
    api.create(&kube::api::PostParams::default(), &pod)
        .await
        .is_ok()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rate = env_u64("BOSUN_BENCH_RATE", 1000);
    let seconds = env_u64("BOSUN_BENCH_SECONDS", 30);
    let env = Env::bare(1).await;
    let mut config = env.config("rt");
    config.webhook.listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.webhook.url = Some("https://127.0.0.1:0".to_owned());
    let rt = env.runtime(config).await;
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(env.client.clone());
    api.create(
        &kube::api::PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "shop"}})).expect("ns"),
    )
    .await
    .expect("namespace");
    let pods = usize::try_from(env_u64("BOSUN_BENCH_PODS", 2000)).unwrap_or(2000);

    let js = bosun_cli::plugin::build_with(&crate_dir().join("plugins/js-admission"), false)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let policies: [(&str, String, Value); 2] = [
        (
            "test-admission",
            bosun_test_artifacts::TEST_ADMISSION.to_owned(),
            json!({"require": "app", "add": {"admitted-by": "bosun"}}),
        ),
        ("js-admission", js.display().to_string(), json!({})),
    ];
    let addr = rt.webhooks().expect("webhook").addr();
    for (lang, (name, path, plugin_config)) in ["rust", "javascript"].into_iter().zip(policies) {
        rt.install(&source(&path), &plugin_config.to_string())
            .expect("loads");
        rt.rollouts().declare_webhook(
            name,
            Some(Webhook {
                mutating: true,
                failure_policy: Some(FailurePolicy::Fail),
                ..Webhook::default()
            }),
        );
        let url = format!(
            "https://127.0.0.1:{}/admission/{name}?timeout=5s",
            addr.port()
        );
        let c = client(&rt);
        // Warm: instances made, connections open.
        closed_loop(&c, &url, 8, 1).await;
        println!(
            "(a) {lang:<10} fixed rate:   {}",
            fixed_rate(&c, &url, rate, seconds).await
        );
        println!(
            "(a) {lang:<10} closed loop:  {}",
            closed_loop(&c, &url, 8, 5).await
        );
        // Denied (no app label) once the API server calls the plugin.
        eventually(
            "the webhook is configured",
            Duration::from_secs(20),
            || async { !probe(&env, &format!("probe-{name}")).await },
        )
        .await;
        println!(
            "(b) {lang:<10} via cluster:  {}",
            through_cluster(&env, lang, 4, pods).await
        );
        rt.uninstall(name);
        eventually(
            "the webhook is removed",
            Duration::from_secs(20),
            || async { probe(&env, &format!("gone-{name}")).await },
        )
        .await;
    }
    println!(
        "(b) no webhook:               {}",
        through_cluster(&env, "none", 4, pods).await
    );
    rt.shutdown().await;
}
