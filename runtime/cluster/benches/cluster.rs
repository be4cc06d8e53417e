//! Figures for the embedded cluster: pod create throughput, list latency, watch fan-out
//! to 10 watchers (events/s and create-to-delivery latency), and the process's RSS (the
//! server runs in this process) before and after loading the pods.
//!
//! `cargo bench -p bosun-cluster` (set `BOSUN_BENCH_PODS` to change the 10 000 pods).

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
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
    Ok(())
}
