//! Figures for the embedded cluster: pod create throughput, list latency, watch fan-out
//! to 10 watchers (events/s and create-to-delivery latency), and the process's RSS (the
//! server runs in this process) before and after loading the pods; pod creates with one
//! admission webhook (a loopback HTTPS server in this process), through the API and by
//! a ReplicaSet.
//!
//! `cargo bench -p bosun-cluster` (set `BOSUN_BENCH_PODS` to change the 10 000 pods; the
//! webhook figures use a fifth of them; `BOSUN_BENCH_WEBHOOK_ONLY=1` runs only those).

use futures::{StreamExt, TryStreamExt, stream};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

fn pod(i: usize) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": format!("pod-{i}"), "labels": {"app": "bench", "shard": (i % 10).to_string()}},
        "spec": {"containers": [{"name": "app", "image": "app:v1"}]}
    }))?)
}

async fn create_pods(api: &Api<Pod>, range: std::ops::Range<usize>) -> anyhow::Result<Duration> {
    let start = Instant::now();
    stream::iter(range)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &pod(i)?).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(start.elapsed())
}

/// Creates pods `range` (32 in flight); the time each create took, sorted.
async fn create_pods_latencies(
    api: &Api<Pod>,
    range: std::ops::Range<usize>,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let start = Instant::now();
    let mut latencies: Vec<Duration> = stream::iter(range)
        .map(|i| {
            let api = api.clone();
            async move {
                let t = Instant::now();
                api.create(&PostParams::default(), &pod(i)?).await?;
                anyhow::Ok(t.elapsed())
            }
        })
        .buffer_unordered(32)
        .try_collect()
        .await?;
    let took = start.elapsed();
    latencies.sort();
    Ok((took, latencies))
}

type Counter = Arc<std::sync::atomic::AtomicUsize>;

/// A mutating webhook on loopback HTTPS (self-signed for 127.0.0.1, keep-alive) that
/// labels every pod `admitted=yes`; its port, its CA, and a count of the TLS
/// connections it accepted.
async fn start_webhook() -> anyhow::Result<(u16, String, Counter)> {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])?;
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key.into())?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let conns = Counter::default();
    let counted = conns.clone();
    let patch = k8s_openapi::ByteString(
        json!([{"op": "add", "path": "/metadata/labels/admitted", "value": "yes"}])
            .to_string()
            .into_bytes(),
    );
    let patch = serde_json::to_value(patch)?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (acceptor, patch) = (acceptor.clone(), patch.clone());
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let patch = patch.clone();
                    async move {
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let review: Value = serde_json::from_slice(&body).unwrap_or_default();
                        let out = json!({
                            "apiVersion": "admission.k8s.io/v1",
                            "kind": "AdmissionReview",
                            "response": {
                                "uid": review["request"]["uid"],
                                "allowed": true,
                                "patchType": "JSONPatch",
                                "patch": patch,
                            },
                        });
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(out.to_string()),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Ok((port, ck.cert.pem(), conns))
}

/// Registers the webhook of [`start_webhook`] for pod creates.
async fn register_webhook(client: &kube::Client, port: u16, ca: &str) -> anyhow::Result<()> {
    let config: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "bench"},
        "webhooks": [{
            "name": "bench.bosun.test",
            "clientConfig": {
                "url": format!("https://127.0.0.1:{port}/mutate"),
                "caBundle": k8s_openapi::ByteString(ca.as_bytes().to_vec()),
            },
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        }],
    }))?;
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &config)
        .await?;
    Ok(())
}

fn print_creates(what: &str, n: usize, took: Duration, latencies: &[Duration]) {
    println!(
        "{what}: {n} pods in {took:.2?} = {:.0} pods/s; per create p50 {:.2?}, p99 {:.2?}",
        per_sec(n, took),
        percentile(latencies, 0.5),
        percentile(latencies, 0.99)
    );
}

/// Pod creates without and with one mutating webhook, through the API (32 in flight),
/// then by a ReplicaSet (until its pods exist, labelled by the webhook).
async fn webhook_figures(n: usize) -> anyhow::Result<()> {
    println!("admission webhook ({n} pods per figure, 1 simulated node)");
    let c = bosun_cluster::start(bosun_cluster::Config {
        nodes: 1,
        sim: bosun_cluster::sim::Config {
            max_pods_per_workload: n,
            ..Default::default()
        },
        ..Default::default()
    })
    .await?;
    let client = c.client().await?;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let (took, lat) = create_pods_latencies(&pods, 0..n).await?;
    print_creates("create, no webhook (32 in flight)", n, took, &lat);
    let (port, ca, conns) = start_webhook().await?;
    register_webhook(&client, port, &ca).await?;
    let (took, lat) = create_pods_latencies(&pods, n..2 * n).await?;
    let opened = conns.load(std::sync::atomic::Ordering::Relaxed);
    print_creates("create, one mutating webhook (32 in flight)", n, took, &lat);
    println!("  webhook TLS connections opened: {opened}");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "bench-rs"},
        "spec": {
            "replicas": n,
            "selector": {"matchLabels": {"app": "bench-rs"}},
            "template": {
                "metadata": {"labels": {"app": "bench-rs"}},
                "spec": {"containers": [{"name": "app", "image": "app:v1"}]},
            },
        },
    }))?;
    let start = Instant::now();
    Api::<ReplicaSet>::default_namespaced(client.clone())
        .create(&PostParams::default(), &rs)
        .await?;
    let selector = ListParams::default().labels("app=bench-rs");
    loop {
        let made = pods.list(&selector).await?.items;
        if made.len() >= n || start.elapsed() > Duration::from_secs(120) {
            let took = start.elapsed();
            let admitted = made
                .iter()
                .filter(|p| {
                    p.metadata
                        .labels
                        .as_ref()
                        .is_some_and(|l| l.contains_key("admitted"))
                })
                .count();
            println!(
                "ReplicaSet of {n}: {} pods created by the controller in {took:.2?} = {:.0} pods/s, {admitted} of them through the webhook ({} more TLS connections)",
                made.len(),
                per_sec(made.len(), took),
                conns.load(std::sync::atomic::Ordering::Relaxed) - opened
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.shutdown().await;
    Ok(())
}

/// `VmRSS` of this process (server, client and bench together), in MiB.
fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn print_rss(when: &str) {
    match rss_mib() {
        Some(mib) => println!("RSS {when}: {mib:.1} MiB"),
        None => println!("RSS {when}: unavailable (no /proc/self/status)"),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

async fn timed_lists(
    api: &Api<Pod>,
    lp: &ListParams,
    runs: u32,
) -> anyhow::Result<(Duration, usize)> {
    let mut total = Duration::ZERO;
    let mut n = 0;
    for _ in 0..runs {
        let start = Instant::now();
        n = api.list(lp).await?.items.len();
        total += start.elapsed();
    }
    Ok((total / runs, n))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let pods_n: usize = std::env::var("BOSUN_BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    println!("bosun-cluster bench ({pods_n} pods, API only, no simulated nodes)");
    if std::env::var_os("BOSUN_BENCH_WEBHOOK_ONLY").is_some() {
        return webhook_figures((pods_n / 5).max(100)).await;
    }

    let c = bosun_cluster::start(bosun_cluster::Config {
        nodes: 0,
        watch_history: pods_n * 2,
        ..Default::default()
    })
    .await?;
    let client = c.client().await?;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    print_rss("before loading pods (cluster started, empty)");
    let took = create_pods(&pods, 0..pods_n).await?;
    println!(
        "create (in memory, 32 in flight): {pods_n} pods in {:.2?} = {:.0} pods/s",
        took,
        per_sec(pods_n, took)
    );
    print_rss(&format!("after loading {pods_n} pods"));
    let (avg, n) = timed_lists(&pods, &ListParams::default(), 5).await?;
    println!("list all: {n} pods in {avg:.2?} (mean of 5)");
    let (avg, n) = timed_lists(&pods, &ListParams::default().labels("shard=3"), 5).await?;
    println!("list labelSelector shard=3: {n} pods in {avg:.2?} (mean of 5)");
    let (avg, n) = timed_lists(&pods, &ListParams::default().limit(500), 5).await?;
    println!("list limit=500: {n} pods in {avg:.2?} (mean of 5)");

    print_rss("after the lists");

    // Watch fan-out: W watchers each receive every one of E events (ConfigMap creates,
    // with the pods still stored). Latency: from just before each create is sent to the
    // watcher's receipt of its event.
    let (watchers, events) = (10usize, 1_000usize);
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let rv = cms
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let sent: Arc<Vec<OnceLock<Instant>>> =
        Arc::new((0..events).map(|_| OnceLock::new()).collect());
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let stream = cms.watch(&WatchParams::default().timeout(120), &rv).await?;
        tasks.push(tokio::spawn(async move {
            let mut s = std::pin::pin!(stream);
            let mut received = Vec::with_capacity(events);
            while received.len() < events {
                match s.try_next().await {
                    Ok(Some(WatchEvent::Added(cm))) => {
                        let at = Instant::now();
                        let i = cm
                            .metadata
                            .name
                            .as_deref()
                            .and_then(|n| n.strip_prefix("cm-"))
                            .and_then(|n| n.parse::<usize>().ok());
                        received.push((i, at));
                    }
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
            received
        }));
    }
    let start = Instant::now();
    stream::iter(0..events)
        .map(|i| {
            let (cms, sent) = (cms.clone(), sent.clone());
            async move {
                let cm: ConfigMap =
                    serde_json::from_value(json!({"metadata": {"name": format!("cm-{i}")}}))?;
                let _ = sent[i].set(Instant::now());
                cms.create(&PostParams::default(), &cm).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    let mut last = start;
    let mut delivered = 0;
    let mut latencies = Vec::with_capacity(watchers * events);
    for t in tasks {
        for (i, at) in t.await? {
            delivered += 1;
            last = last.max(at);
            if let Some(sent_at) = i.and_then(|i| sent.get(i)).and_then(OnceLock::get) {
                latencies.push(at.saturating_duration_since(*sent_at));
            }
        }
    }
    let took = last - start;
    println!(
        "watch fan-out: {watchers} watchers x {events} events = {delivered} delivered in {took:.2?} = {:.0} events/s",
        per_sec(delivered, took)
    );
    latencies.sort();
    let mean = latencies.iter().sum::<Duration>() / (latencies.len().max(1) as u32);
    println!(
        "watch latency (create sent -> event received, {} samples): mean {mean:.2?}, p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    print_rss("after the watch fan-out");
    c.shutdown().await;

    // Simulation: from create to every pod Running and Ready, on pods/100 nodes.
    let nodes = (pods_n / 100).max(1);
    let c = bosun_cluster::start(bosun_cluster::Config {
        nodes,
        watch_history: pods_n * 4,
        sim: bosun_cluster::sim::Config {
            startup_delay: Duration::ZERO,
            ..Default::default()
        },
        ..Default::default()
    })
    .await?;
    let pods: Api<Pod> = Api::default_namespaced(c.client().await?);
    let start = Instant::now();
    create_pods(&pods, 0..pods_n).await?;
    let created = start.elapsed();
    loop {
        let running = pods
            .list(&ListParams::default().fields("status.phase=Running"))
            .await?
            .items
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        if running == pods_n || start.elapsed() > Duration::from_secs(600) {
            println!(
                "simulation ({nodes} nodes): {pods_n} pods created in {created:.2?}, {running} Running and Ready after {:.2?}",
                start.elapsed()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.shutdown().await;

    // Durable writes: every create is committed (fsync) to redb before the answer.
    let dir = tempfile::tempdir()?;
    let n = (pods_n / 10).max(100);
    let c = bosun_cluster::start(bosun_cluster::Config {
        data_dir: Some(dir.path().to_path_buf()),
        nodes: 0,
        ..Default::default()
    })
    .await?;
    let pods: Api<Pod> = Api::default_namespaced(c.client().await?);
    let took = create_pods(&pods, 0..n).await?;
    println!(
        "create (redb, durable): {n} pods in {:.2?} = {:.0} pods/s",
        took,
        per_sec(n, took)
    );
    c.shutdown().await;

    webhook_figures((pods_n / 5).max(100)).await
}
