//! Hostile plugins on the embedded cluster cost a bounded share of the runtime.

use std::time::{Duration, Instant};

use bosun_runtime::{Config, Runtime};
use bosun_test_support::embedded::{Env, admin_get, source};
use bosun_test_support::eventually;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

async fn pod(env: &Env, name: &str) {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "app:v1"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
}

fn reconciles(rt: &Runtime, plugin: &str) -> u64 {
    rt.registry()
        .current(plugin)
        .map_or(0, |r| r.stats().reconciles)
}

/// Starts a runtime with `config`, the `requeue-now` hostile plugin and six pods, and
/// waits until it reconciles.
async fn requeue_now(env: &Env, config: Config) -> std::sync::Arc<Runtime> {
    let rt = env.runtime(config).await;
    rt.install(
        &source(bosun_test_artifacts::HOSTILE),
        r#"{"mode":"requeue-now"}"#,
    )
    .expect("hostile");
    for i in 0..6 {
        pod(env, &format!("web-{i}")).await;
    }
    eventually("it reconciles", Duration::from_secs(20), || async {
        reconciles(&rt, "hostile") >= 6
    })
    .await;
    rt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_requeueing_at_once_is_held_to_its_rate() {
    let env = Env::start(1).await;
    let config = env.config("rt");
    let (rate, burst) = (config.queue.requeue_rate, config.queue.requeue_burst);
    let rt = requeue_now(&env, config).await;
    let window = Duration::from_secs(3);
    let before = reconciles(&rt, "hostile");
    tokio::time::sleep(window).await;
    let n = reconciles(&rt, "hostile") - before;
    // The bucket may be full when the window opens; a few events (pods being
    // scheduled) are not limited.
    let bound = u64::from(burst) + 3 * u64::from(rate) + 50;
    assert!(
        n <= bound,
        "{n} reconciles in {window:?}, over the rate of {rate}/s (burst {burst})"
    );
    assert!(
        n >= u64::from(rate),
        "{n} reconciles in {window:?}: starved"
    );
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

/// The `/plugins` entry of `name`, as `bosun status` reads it.
fn status_of(rt: &Runtime, name: &str) -> Option<serde_json::Value> {
    rt.status()["plugins"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_calls_are_counted_in_status_and_metrics() {
    let env = Env::start(1).await;
    let rt = env.runtime(env.config("rt")).await;
    rt.install_with(&source(bosun_test_artifacts::HOSTILE), |spec| {
        spec.config = r#"{"mode":"alloc"}"#.to_owned();
        spec.limits.memory_bytes = 16 << 20;
    })
    .expect("hostile");
    pod(&env, "web-0").await;
    eventually(
        "out-of-memory calls counted",
        Duration::from_secs(30),
        || async {
            status_of(&rt, "hostile").is_some_and(|p| p["stats"]["outOfMemory"].as_u64() >= Some(2))
        },
    )
    .await;
    let metrics = admin_get(&rt, "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("bosun_reconciles_total{")
                && l.contains("plugin=\"hostile\"")
                && l.contains("result=\"out-of-memory\"")),
        "{metrics}"
    );
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_flood_stops_at_the_cap_and_removal_frees_it() {
    let env = Env::start(1).await;
    let mut config = env.config("rt");
    config.limits.max_state_bytes = 2 << 20;
    let rt = env.runtime(config).await;
    rt.install(
        &source(bosun_test_artifacts::HOSTILE),
        r#"{"mode":"state-flood"}"#,
    )
    .expect("hostile");
    pod(&env, "web-0").await;
    let mut seen = Vec::new();
    eventually("the flood is refused", Duration::from_secs(30), || {
        seen.extend(env.log_lines());
        let refused = seen
            .iter()
            .any(|l| l.contains("state-flood: refused") && l.contains("cap of 2097152 bytes"));
        async move { refused }
    })
    .await;
    let bytes = status_of(&rt, "hostile").expect("status")["pluginState"]["bytes"]
        .as_u64()
        .expect("state bytes");
    assert!(bytes > 1 << 20 && bytes <= 2 << 20, "{bytes} bytes held");
    let metrics = admin_get(&rt, "/metrics");
    assert!(
        metrics.contains(&format!(
            "bosun_plugin_state_bytes{{plugin=\"hostile\"}} {bytes}"
        )),
        "{metrics}"
    );
    rt.uninstall("hostile");
    assert!(status_of(&rt, "hostile").is_none());
    // Loaded again (without touching its state): it starts from nothing.
    rt.install(
        &source(bosun_test_artifacts::HOSTILE),
        r#"{"mode":"requeue"}"#,
    )
    .expect("hostile again");
    let again = status_of(&rt, "hostile").expect("status");
    assert_eq!(again["pluginState"]["bytes"], 0, "{again}");
    assert_eq!(again["pluginState"]["keys"], 0, "{again}");
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

/// CPU time (user plus system) of this process so far.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("comm")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// How long a measurement lasts: `BOSUN_MEASURE_SECONDS`, 10 s by default.
fn measured() -> Duration {
    Duration::from_secs(
        std::env::var("BOSUN_MEASURE_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10),
    )
}

/// Figures, not assertions: the requeue-now plugin's reconciles and this process's CPU
/// (runtime and embedded cluster) over the measured time, with the queue's limits off (as before
/// they existed) and on, and zone-labeler's latency to label a new pod meanwhile.
/// `cargo test -p bosun-runtime --test hostile -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; prints figures"]
async fn measure_requeue_now() {
    for limited in [false, true] {
        let env = Env::start(1).await;
        let mut config = env.config("rt");
        if !limited {
            config.queue.min_requeue_ms = 0;
            config.queue.requeue_rate = 0;
        }
        let rt = requeue_now(&env, config).await;
        rt.install(&source(bosun_test_artifacts::ZONE_LABELER), "{}")
            .expect("zone-labeler");
        let (before, cpu0, t0) = (reconciles(&rt, "hostile"), cpu(), Instant::now());
        tokio::time::sleep(measured()).await;
        let n = reconciles(&rt, "hostile") - before;
        let cpu_share = (cpu() - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
        let mut latencies = Vec::new();
        for i in 0..5 {
            let name = format!("late-{i}");
            let t = Instant::now();
            pod(&env, &name).await;
            eventually("labelled", Duration::from_secs(30), || async {
                pods.get(&name).await.ok().is_some_and(|p| {
                    p.metadata
                        .labels
                        .is_some_and(|l| l.contains_key("topology.kubernetes.io/zone"))
                })
            })
            .await;
            latencies.push(t.elapsed());
        }
        println!(
            "limits {}: {n} reconciles in {:?}, CPU {:.0}% of a core, zone-labeler latency {latencies:?}",
            if limited { "on " } else { "off" },
            measured(),
            cpu_share * 100.0
        );
        rt.shutdown().await;
        env.cluster.shutdown().await;
    }
}

/// Resident memory of this process.
fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// Figures, not assertions: this process's memory after the `state-flood` plugin ran
/// for the measured time with the state caps off (as before they existed) and on.
/// `cargo test -p bosun-runtime --test hostile measure_state_flood -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; prints figures"]
async fn measure_state_flood() {
    for capped in [true, false] {
        let env = Env::start(1).await;
        let mut config = env.config("rt");
        if !capped {
            config.limits.max_state_bytes = usize::MAX;
            config.limits.max_state_keys = usize::MAX;
        }
        let rt = env.runtime(config).await;
        let before = rss_mib();
        rt.install(
            &source(bosun_test_artifacts::HOSTILE),
            r#"{"mode":"state-flood"}"#,
        )
        .expect("hostile");
        for i in 0..6 {
            pod(&env, &format!("web-{i}")).await;
        }
        tokio::time::sleep(measured()).await;
        let state = status_of(&rt, "hostile").expect("status")["pluginState"].clone();
        println!(
            "state caps {}: RSS {before} MiB -> {} MiB, plugin state {state}",
            if capped { "on " } else { "off" },
            rss_mib()
        );
        rt.uninstall("hostile");
        println!("  after removal: RSS {} MiB", rss_mib());
        rt.shutdown().await;
        env.cluster.shutdown().await;
    }
}
