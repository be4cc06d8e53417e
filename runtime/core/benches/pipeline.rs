//! The runtime on the embedded cluster: 10k pods cached, a stream of events at a fixed
//! rate, and the time from each event to the plugin's command applied.
//!
//! The cluster runs in a child process (this binary again), so the RSS printed is the
//! runtime's (plus this driver's small bookkeeping). Each event sets a pod's zone label
//! to a wrong value; the zone-labeler plugin notices and patches it back; the driver
//! watches pods and takes the time until the label is right again.
//!
//! Run: `cargo bench -p bosun-runtime --bench pipeline` (env: PODS, RATE, SECONDS, CONCURRENCY)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if std::env::var_os("BOSUN_BENCH_CLUSTER").is_some() {
        return rt.block_on(async {
            let cluster = bosun_cluster::start(bosun_cluster::Config {
                nodes: 0,
                ..Default::default()
            })
            .await?;
            println!("{}", cluster.kubeconfig_path().display());
            tokio::signal::ctrl_c().await.ok();
            std::future::pending::<()>().await;
            Ok(())
        });
    }
    rt.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    use std::io::BufRead;
    let pods_n = env("PODS", 10_000) as usize;
    let rate = env("RATE", 1_000);
    let seconds = env("SECONDS", 10);
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .env("BOSUN_BENCH_CLUSTER", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut line = String::new();
    std::io::BufReader::new(
        child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?,
    )
    .read_line(&mut line)?;
    let kubeconfig = std::path::PathBuf::from(line.trim());
    let client = bosun_runtime::connect::client(Some(&kubeconfig)).await?;

    let nodes: Api<Node> = Api::all(client.clone());
    for (i, zone) in ZONES.iter().enumerate() {
        let node: Node = serde_json::from_value(
            json!({"metadata": {"name": format!("node-{i}"), "labels": {"topology.kubernetes.io/zone": zone}}}),
        )?;
        nodes.create(&PostParams::default(), &node).await?;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    let mut creates = futures::stream::iter(0..pods_n)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("p-{i}"), "labels": {"app": "bench", "topology.kubernetes.io/zone": ZONES[i % 3]}},
                    "spec": {"nodeName": format!("node-{}", i % 3), "containers": [{"name": "app", "image": "app:v1",
                        "env": (0..20).map(|e| json!({"name": format!("E{e}"), "value": "x".repeat(40)})).collect::<Vec<_>>()}]}
                }))?;
                pods.create(&PostParams::default(), &pod).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32);
    while let Some(r) = creates.next().await {
        r?;
    }
    println!(
        "created {pods_n} pods in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir()?;
    let concurrency = env("CONCURRENCY", 16);
    let config = bosun_runtime::Config::parse(&format!(
        "guardrails:\n  global: {{perSecond: 100000, burst: 100000}}\n  perPlugin: {{perSecond: 100000, burst: 100000}}\nqueue:\n  concurrency: {concurrency}\nresyncSeconds: 0\n"
    ))
    .map_err(anyhow::Error::msg)?;
    let config = bosun_runtime::Config {
        data_dir: dir.path().to_owned(),
        admin_addr: "127.0.0.1:0".parse()?,
        ..config
    };
    let rss_before = rss_mib();
    let runtime = bosun_runtime::Runtime::start(config, client.clone()).await?;
    let source =
        bosun_host::Source::file(std::path::Path::new(bosun_test_artifacts::ZONE_LABELER))?;
    let t = Instant::now();
    runtime.install(&source, "{}")?;
    let labeler = runtime
        .registry()
        .current("zone-labeler")
        .ok_or_else(|| anyhow::anyhow!("not loaded"))?;
    // Initial sync: every pod is reconciled once (and needs nothing).
    while labeler.stats().calls < pods_n as u64 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "initial sync: {pods_n} pods listed and reconciled in {:.1}s ({:.0} reconciles/s); RSS {:.0} MiB (driver before runtime {:.0} MiB)",
        t.elapsed().as_secs_f64(),
        pods_n as f64 / t.elapsed().as_secs_f64(),
        rss_mib(),
        rss_before
    );

    // Watch for restores.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    {
        let (sent, latencies) = (sent.clone(), latencies.clone());
        let pods = pods.clone();
        tokio::spawn(async move {
            let mut stream = watcher(pods, watcher::Config::default()).boxed();
            while let Some(Ok(event)) = stream.next().await {
                if let watcher::Event::Apply(p) = event {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let zone = p
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("topology.kubernetes.io/zone"))
                        .cloned();
                    if zone.as_deref().is_some_and(|z| z != "wrong")
                        && let Some(at) = sent.lock().expect("lock").remove(&name)
                    {
                        latencies.lock().expect("lock").push(at.elapsed());
                    }
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls_before = labeler.stats().calls;
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut inflight = futures::stream::FuturesUnordered::new();
    for i in 0..total {
        tick.tick().await;
        let name = format!("p-{}", (i as usize * 7919) % pods_n);
        let pods = pods.clone();
        let sent = sent.clone();
        inflight.push(async move {
            let patch = json!({"metadata": {"labels": {"topology.kubernetes.io/zone": "wrong"}}});
            sent.lock()
                .expect("lock")
                .insert(name.clone(), Instant::now());
            let _ = pods
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await;
        });
        while futures::FutureExt::now_or_never(inflight.next())
            .flatten()
            .is_some()
        {}
    }
    while inflight.next().await.is_some() {}
    let sending = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sent.lock().expect("lock").is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = start.elapsed();
    let calls = labeler.stats().calls - calls_before;
    let mut l = latencies.lock().expect("lock").clone();
    l.sort();
    let pct = |p: usize| {
        l.get((l.len() * p / 100).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "events: {total} sent in {:.1}s ({:.0}/s); {} restored, {} not restored",
        sending.as_secs_f64(),
        total as f64 / sending.as_secs_f64(),
        l.len(),
        sent.lock().expect("lock").len()
    );
    println!(
        "event -> command applied -> observed: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(50).as_secs_f64() * 1e3,
        pct(99).as_secs_f64() * 1e3,
        l.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "reconciles: {calls} in {:.1}s = {:.0}/s; runtime RSS {:.0} MiB; commands {:?}",
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64(),
        rss_mib(),
        runtime.pipe_counts()
    );
    runtime.shutdown().await;
    let _ = child.kill();
    Ok(())
}
