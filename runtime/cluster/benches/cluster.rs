//! Figures for the embedded cluster: pod create throughput, list latency, watch fan-out.
//!
//! `cargo bench -p bosun-cluster` (set `BOSUN_BENCH_PODS` to change the 10 000 pods).

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
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
    let took = create_pods(&pods, 0..pods_n).await?;
    println!(
        "create (in memory, 32 in flight): {pods_n} pods in {:.2?} = {:.0} pods/s",
        took,
        per_sec(pods_n, took)
    );
    let (avg, n) = timed_lists(&pods, &ListParams::default(), 5).await?;
    println!("list all: {n} pods in {avg:.2?} (mean of 5)");
    let (avg, n) = timed_lists(&pods, &ListParams::default().labels("shard=3"), 5).await?;
    println!("list labelSelector shard=3: {n} pods in {avg:.2?} (mean of 5)");
    let (avg, n) = timed_lists(&pods, &ListParams::default().limit(500), 5).await?;
    println!("list limit=500: {n} pods in {avg:.2?} (mean of 5)");

    // Watch fan-out: W watchers each receive every one of E events.
    let (watchers, events) = (50usize, 1_000usize);
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let rv = cms
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let stream = cms.watch(&WatchParams::default().timeout(120), &rv).await?;
        tasks.push(tokio::spawn(async move {
            let mut s = std::pin::pin!(stream);
            let mut seen = 0;
            while seen < events {
                match s.try_next().await {
                    Ok(Some(WatchEvent::Added(_))) => seen += 1,
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
            (seen, Instant::now())
        }));
    }
    let start = Instant::now();
    stream::iter(0..events)
        .map(|i| {
            let cms = cms.clone();
            async move {
                let cm: ConfigMap =
                    serde_json::from_value(json!({"metadata": {"name": format!("cm-{i}")}}))?;
                cms.create(&PostParams::default(), &cm).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    let mut last = start;
    let mut delivered = 0;
    for t in tasks {
        let (seen, at) = t.await?;
        delivered += seen;
        last = last.max(at);
    }
    let took = last - start;
    println!(
        "watch fan-out: {watchers} watchers x {events} events = {delivered} delivered in {took:.2?} = {:.0} events/s",
        per_sec(delivered, took)
    );
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
