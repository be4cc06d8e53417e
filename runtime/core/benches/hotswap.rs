//! Hot swap end to end: a new `.wasm` in the plugins folder to the new revision serving,
//! with a stream of events flowing through the swaps, every one of them counted.
//!
//! The runtime watches a plugins folder on the embedded cluster. The zone-labeler serves
//! PODS pods; the driver sets a pod's zone label to a wrong value RATE times a second and
//! watches for the plugin to put it back. Meanwhile it writes a new zone-labeler file into
//! the folder every second, cycling through three variants (same code, a different custom
//! section, so a different digest) whose compiled code is already on disk: the swap
//! measured is the folder's, not Cranelift's. Printed: write-to-serving time (the file
//! written, then `registry.current` showing its digest), that time less the folder's settle
//! time, the first load of each variant (cold compile), and the events sent, restored and
//! lost.
//!
//! Run: `cargo bench -p bosun-runtime --bench hotswap` (env: PODS (300), RATE (200), SWAPS (20))

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
const LABEL: &str = "topology.kubernetes.io/zone";
/// The runtime's plugins-folder settle time (runtime.rs).
const SETTLE: Duration = Duration::from_millis(300);

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The zone-labeler with a custom section naming `tag`: a new digest, the same code.
fn variant(tag: &str) -> Vec<u8> {
    let bytes = std::fs::read(bosun_test_artifacts::ZONE_LABELER).unwrap_or_default();
    bosun_test_support::with_custom_section(&bytes, tag)
}

/// Writes `bytes` as the plugin's file and waits until the registry serves them.
async fn swap_in(
    runtime: &bosun_runtime::Runtime,
    path: &std::path::Path,
    bytes: &[u8],
) -> anyhow::Result<Duration> {
    let digest = bosun_link::digest(bytes);
    std::fs::write(path, bytes)?;
    let written = Instant::now();
    let deadline = written + Duration::from_secs(60);
    loop {
        if runtime
            .registry()
            .current("zone-labeler")
            .is_some_and(|r| r.digest() == digest)
        {
            return Ok(written.elapsed());
        }
        anyhow::ensure!(Instant::now() < deadline, "{digest} never served");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn stats(samples: &mut [Duration]) -> String {
    samples.sort();
    let at = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    format!(
        "p50 {:.1} ms, max {:.1} ms (n={})",
        at(50).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        samples.len()
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let pods_n = env("PODS", 300) as usize;
    let rate = env("RATE", 200);
    let swaps = env("SWAPS", 20) as usize;
    let cluster = bosun_cluster::start(bosun_cluster::Config {
        nodes: 0,
        ..Default::default()
    })
    .await?;
    let client = cluster.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    for (i, zone) in ZONES.iter().enumerate() {
        let node: Node = serde_json::from_value(
            json!({"metadata": {"name": format!("node-{i}"), "labels": {LABEL: zone}}}),
        )?;
        nodes.create(&PostParams::default(), &node).await?;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..pods_n {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("p-{i}"), "labels": {LABEL: ZONES[i % 3]}},
            "spec": {"nodeName": format!("node-{}", i % 3), "containers": [{"name": "app", "image": "app:v1"}]}
        }))?;
        pods.create(&PostParams::default(), &pod).await?;
    }

    let data = tempfile::tempdir()?;
    let folder = tempfile::tempdir()?;
    let config = bosun_runtime::Config::parse(
        "guardrails:\n  global: {perSecond: 100000, burst: 100000}\n  perPlugin: {perSecond: 100000, burst: 100000}\nresyncSeconds: 0\n",
    )
    .map_err(anyhow::Error::msg)?;
    let config = bosun_runtime::Config {
        data_dir: data.path().to_owned(),
        plugins_dir: Some(folder.path().to_owned()),
        admin_addr: "127.0.0.1:0".parse()?,
        ..config
    };
    let runtime = bosun_runtime::Runtime::start(config, client.clone()).await?;
    let path = folder.path().join("zone-labeler.wasm");

    // Each variant's first load compiles it (and writes the compiled code to disk).
    let variants: Vec<Vec<u8>> = ["a", "b", "c"].iter().map(|t| variant(t)).collect();
    let mut cold = Vec::new();
    for bytes in &variants {
        cold.push(swap_in(&runtime, &path, bytes).await?);
    }
    println!(
        "first load of each variant (settle + compile + swap): {}",
        stats(&mut cold)
    );

    // The event stream: set a pod's label wrong, watch the plugin put it back.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let restored: Arc<Mutex<u64>> = Arc::default();
    {
        let (sent, restored) = (sent.clone(), restored.clone());
        let pods = pods.clone();
        tokio::spawn(async move {
            let mut stream = watcher(pods, watcher::Config::default()).boxed();
            while let Some(Ok(event)) = stream.next().await {
                if let watcher::Event::Apply(p) = event {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let right = p
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(LABEL))
                        .is_some_and(|z| z != "wrong");
                    if right && sent.lock().expect("lock").remove(&name).is_some() {
                        *restored.lock().expect("lock") += 1;
                    }
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let events = {
        let (sent, stop, pods) = (sent.clone(), stop.clone(), pods.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                // One event per pod at a time: a pod whose last event is not restored yet
                // is skipped, so every event sent is one the plugin must act on.
                let name = format!("p-{}", n as usize % pods_n);
                n += 1;
                if sent.lock().expect("lock").contains_key(&name) {
                    continue;
                }
                sent.lock()
                    .expect("lock")
                    .insert(name.clone(), Instant::now());
                let patch = json!({"metadata": {"labels": {LABEL: "wrong"}}});
                if let Err(e) = pods
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                {
                    sent.lock().expect("lock").remove(&name);
                    eprintln!("event {name} not sent: {e}");
                }
            }
        })
    };

    // Swaps through cached variants while the events flow.
    let mut warm = Vec::new();
    let sent_before = Instant::now();
    for i in 0..swaps {
        tokio::time::sleep(Duration::from_millis(700)).await;
        warm.push(swap_in(&runtime, &path, &variants[i % variants.len()]).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    events.await?;
    let streamed = sent_before.elapsed();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sent.lock().expect("lock").is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lost = sent.lock().expect("lock").len();
    let restored = *restored.lock().expect("lock");
    let mut beyond: Vec<Duration> = warm.iter().map(|d| d.saturating_sub(SETTLE)).collect();
    println!(
        "write to serving, compiled code cached: {}",
        stats(&mut warm)
    );
    println!(
        "  less the folder's {} ms settle time: {}",
        SETTLE.as_millis(),
        stats(&mut beyond)
    );
    println!(
        "events during {swaps} swaps in {:.1}s: {} sent, {restored} restored, {lost} lost",
        streamed.as_secs_f64(),
        restored + lost as u64,
    );
    runtime.shutdown().await;
    anyhow::ensure!(lost == 0, "{lost} events lost");
    Ok(())
}
