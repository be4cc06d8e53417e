//! The seed's benchmark: 3,000 instances (30 StatefulSets x 100 pods) on the embedded
//! cluster with a simulated clock, one image release through the release plugin
//! (in place, max-unavailable 10%), against a workflow-style model computed from the same
//! per-pod timings: 30 fixed batches of 100, each waiting for its slowest pod.
//!
//! `cargo bench -p bosun-plugin-release --bench release` (env `BOSUN_BENCH_SETS`,
//! `BOSUN_BENCH_PODS`, `BOSUN_BENCH_SPEED` override the shape and the clock factor).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bosun_host::host::log;
use bosun_host::load::Source;
use bosun_runtime::guardrail::Rate;
use bosun_runtime::{Config, Runtime};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::json;

const NS: &str = "default";
/// Simulated time from a container start to Ready.
const STARTUP: Duration = Duration::from_secs(5);

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default, Clone, Copy)]
struct Timing {
    patched: Option<Instant>,
    done: Option<Instant>,
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn spec_image(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.as_deref())
        .unwrap_or("")
}

fn first_status(p: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStatus> {
    p.status.as_ref()?.container_statuses.as_ref()?.first()
}

fn running(p: &Pod, image: &str) -> bool {
    first_status(p).is_some_and(|c| c.image_id == format!("sim://{image}"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run() -> anyhow::Result<()> {
    let sets = env_or("BOSUN_BENCH_SETS", 30);
    let per_set = env_or("BOSUN_BENCH_PODS", 100);
    let speed = env_or("BOSUN_BENCH_SPEED", 10) as f64;
    let total = (sets * per_set) as usize;
    let sim = bosun_cluster::sim::Config {
        speed,
        startup_delay: STARTUP,
        pods_per_node: 110,
        ..Default::default()
    };
    let nodes = total.div_ceil(100).max(1);
    let cluster = bosun_cluster::start(bosun_cluster::Config {
        nodes,
        sim,
        ..Default::default()
    })
    .await
    .context("embedded cluster")?;
    let client = cluster.client().await?;
    let dir = tempfile::tempdir()?;
    let mut config = Config {
        data_dir: dir.path().join("rt"),
        admin_addr: "127.0.0.1:0".parse()?,
        resync_seconds: 0,
        ..Default::default()
    };
    // The release paces itself with max-unavailable; the rate limits are not what is measured.
    config.guardrails.global = Rate::new(100_000.0, 100_000);
    config.guardrails.per_plugin = Rate::new(100_000.0, 100_000);
    let rt = Runtime::start_with(config, client.clone(), Arc::new(log::Memory::default())).await?;
    let source = Source::file(std::path::Path::new(bosun_test_artifacts::RELEASE))?;
    rt.install(&source, r#"{"pollMs": 100}"#)?;

    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let setup = Instant::now();
    for s in 0..sets {
        let name = format!("app{s:02}");
        let sts: StatefulSet = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": NS, "annotations": {
                "release.bosun.dev/strategy": "InPlaceIfPossible",
                "release.bosun.dev/max-unavailable": "10%",
            }},
            "spec": {
                "replicas": per_set, "serviceName": name, "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": {"app": name}},
                "updateStrategy": {"type": "OnDelete"},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": "app:v1"}]}}
            }
        }))?;
        sts_api.create(&PostParams::default(), &sts).await?;
    }
    let before = loop {
        let pods = pod_api.list(&ListParams::default()).await?.items;
        if pods.len() == total && pods.iter().all(ready) {
            break pods;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        anyhow::ensure!(
            setup.elapsed() < Duration::from_secs(600),
            "setup timed out"
        );
    };
    let uids: HashMap<String, (String, i32)> = before
        .iter()
        .map(|p| {
            let restarts = first_status(p).map_or(0, |c| c.restart_count);
            (
                p.metadata.name.clone().unwrap_or_default(),
                (p.metadata.uid.clone().unwrap_or_default(), restarts),
            )
        })
        .collect();
    println!(
        "setup: {sets} StatefulSets x {per_set} pods = {total} pods Ready on {nodes} nodes in {:.1}s",
        setup.elapsed().as_secs_f64()
    );

    // Per-pod timings from a watch: patched (spec shows the new image), done (Ready and
    // the kubelet runs the new image).
    let timings: Arc<Mutex<HashMap<String, Timing>>> = Arc::default();
    let recorder = {
        let timings = timings.clone();
        let stream = watcher(pod_api.clone(), watcher::Config::default()).applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(pod)) = stream.next().await {
                let now = Instant::now();
                let name = pod.metadata.name.clone().unwrap_or_default();
                let mut t = timings.lock().unwrap_or_else(PoisonError::into_inner);
                let t = t.entry(name).or_default();
                if spec_image(&pod) == "app:v2" && t.patched.is_none() {
                    t.patched = Some(now);
                }
                if t.done.is_none() && ready(&pod) && running(&pod, "app:v2") {
                    t.done = Some(now);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    let start = Instant::now();
    for s in 0..sets {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:v2"}]}}}});
        sts_api
            .patch(
                &format!("app{s:02}"),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await?;
    }
    loop {
        let done = timings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|t| t.done.is_some())
            .count();
        if done >= total {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(1200),
            "release did not converge: {done}/{total}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = start.elapsed();
    recorder.abort();

    let after = pod_api.list(&ListParams::default()).await?.items;
    let inconsistent = after
        .iter()
        .filter(|p| {
            let name = p.metadata.name.clone().unwrap_or_default();
            let restarts = first_status(p).map_or(-1, |c| c.restart_count);
            uids.get(&name).is_none_or(|(uid, r)| {
                p.metadata.uid.as_deref() != Some(uid.as_str())
                    || restarts != r + 1
                    || !running(p, "app:v2")
                    || !ready(p)
            })
        })
        .count();

    let timings = timings
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let per_pod = |name: &str| -> Option<Duration> {
        let t = timings.get(name)?;
        Some(t.done?.saturating_duration_since(t.patched?))
    };
    let mut durations: Vec<Duration> = timings.keys().filter_map(|n| per_pod(n)).collect();
    durations.sort();
    // The workflow model: 30 batches of 100 pods (here: one StatefulSet each), run one
    // after another, each as long as its slowest pod.
    let batch = per_set as usize;
    let mut names: Vec<&String> = timings.keys().collect();
    names.sort();
    let workflow: Duration = names
        .chunks(batch)
        .map(|chunk| {
            chunk
                .iter()
                .filter_map(|n| per_pod(n))
                .max()
                .unwrap_or_default()
        })
        .sum();
    let sim_s = |d: Duration| d.as_secs_f64() * speed;
    let p50 = percentile(&durations, 0.50);
    let p99 = percentile(&durations, 0.99);
    let max = durations.last().copied().unwrap_or_default();
    println!(
        "release: {total} pods, in place, max-unavailable 10% per StatefulSet, clock x{speed}"
    );
    println!(
        "  total time to converge : {:>7.2}s wall = {:>7.1}s simulated",
        elapsed.as_secs_f64(),
        sim_s(elapsed)
    );
    println!(
        "  per-pod update (patch -> Ready on new image): p50 {:.3}s  p99 {:.3}s  max {:.3}s wall  (p50 {:.1}s  p99 {:.1}s simulated; container start-up {}s simulated)",
        p50.as_secs_f64(),
        p99.as_secs_f64(),
        max.as_secs_f64(),
        sim_s(p50),
        sim_s(p99),
        STARTUP.as_secs()
    );
    println!(
        "  pods timed {} / {total}; pods left inconsistent (uid changed, restartCount != +1, not Ready on app:v2): {inconsistent}",
        durations.len()
    );
    println!(
        "workflow model ({} batches of {batch}, each waits for its slowest pod, same per-pod timings, zero overhead per batch): {:>7.2}s wall = {:>7.1}s simulated",
        names.len().div_ceil(batch),
        workflow.as_secs_f64(),
        sim_s(workflow)
    );
    println!(
        "speed-up of the plugin over the workflow model: {:.1}x",
        workflow.as_secs_f64() / elapsed.as_secs_f64().max(f64::EPSILON)
    );
    rt.shutdown().await;
    cluster.shutdown().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}
