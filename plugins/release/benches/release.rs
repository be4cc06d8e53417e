//! The seed's benchmark: 3,000 instances (30 StatefulSets x 100 pods) on the embedded
//! cluster with a simulated clock, one image release with 1% of the updates failing for a
//! while (a transient image pull failure of that pod, retried by the kubelet), three ways
//! side by side, each on a fresh cluster:
//!
//! - (a) **in place**: the release plugin, max-unavailable 10% per StatefulSet, with the
//!   readiness gate in the pod template;
//! - (b) **recreate**: the release plugin with strategy `Recreate` (evict, the StatefulSet
//!   controller recreates the pod, the new pod pays the pod start delay: sandbox, volumes),
//!   same max-unavailable;
//! - (c) **workflow**: a driver in this file, like a ticket-based workflow: 30 fixed
//!   batches of 100 pods (highest ordinals first across the StatefulSets), each patched in
//!   place at once, then waited for as a whole; a pod failing for longer than the retry
//!   delay is retried (deleted, so the StatefulSet controller recreates it at the new
//!   template), at most twice; a batch gives up after its timeout and the next one starts.
//!
//! Reported per way: time to converge (every pod running the new image and Ready) or, for
//! the workflow, to its end; pods left inconsistent when it declared itself done (not
//! running the new image Ready); for in place also pods that changed uid or restarted
//! more than once; API requests answered by the embedded API server during the release
//! (reads, watches, writes).
//!
//! `cargo bench -p bosun-plugin-release --bench release`. Environment: `BOSUN_BENCH_SETS`
//! (30), `BOSUN_BENCH_PODS` (100 per set), `BOSUN_BENCH_SPEED` (clock factor, 10),
//! `BOSUN_BENCH_FAULT_SECONDS` (how long a failing pull fails, simulated, 30),
//! `BOSUN_BENCH_POD_START_SECONDS` (a new pod's start delay, simulated, 10),
//! `BOSUN_BENCH_WAYS` (`a,b,c`), `BOSUN_BENCH_GATE` (`0`: no readiness gate), `BOSUN_BENCH_TRACE` (a pod name or prefix: every change of those pods
//! printed with its time, the release plugin's metrics, and the runtime's data directory
//! (audit log) kept, to see where the time goes).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bosun_cluster::requests::Requests;
use bosun_host::host::log;
use bosun_host::load::Source;
use bosun_runtime::guardrail::Rate;
use bosun_runtime::{Config, Runtime};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const NS: &str = "default";
/// Simulated time from a container start to Ready.
const STARTUP: Duration = Duration::from_secs(5);
const OLD: &str = "app:v1";
/// How long the pods may take to be Ready before the release (real time).
const SETUP_LIMIT: Duration = Duration::from_secs(600);
const NEW: &str = "app:v2";
const GATE: &str = "release.bosun.dev/InPlaceReady";

/// The workflow's knobs, in simulated time.
const WORKFLOW_BATCH: usize = 100;
const WORKFLOW_POLL: Duration = Duration::from_secs(1);
const WORKFLOW_RETRY_AFTER: Duration = Duration::from_secs(20);
const WORKFLOW_RETRIES: u32 = 2;
const WORKFLOW_BATCH_TIMEOUT: Duration = Duration::from_secs(60);

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, Debug)]
struct Shape {
    sets: u64,
    per_set: u64,
    speed: f64,
    fault: Duration,
    pod_start: Duration,
}

impl Shape {
    fn total(&self) -> usize {
        (self.sets * self.per_set) as usize
    }
    /// Real time for a simulated duration.
    fn wall(&self, sim: Duration) -> Duration {
        sim.div_f64(self.speed)
    }
    fn sim_s(&self, wall: Duration) -> f64 {
        wall.as_secs_f64() * self.speed
    }
    fn set_name(s: u64) -> String {
        format!("app{s:02}")
    }
    /// The 1% of pods whose update fails for a while: one per hundred, at an ordinal that
    /// differs from set to set.
    fn failing(&self) -> Vec<String> {
        (0..self.sets)
            .flat_map(|s| {
                let per = self.per_set;
                (0..per.div_ceil(100)).filter_map(move |k| {
                    let ordinal = k * 100 + (s * 37 + 11) % 100;
                    (ordinal < per).then(|| format!("{}-{ordinal}", Shape::set_name(s)))
                })
            })
            .collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Way {
    InPlace,
    Recreate,
    Workflow,
}

impl Way {
    fn label(self) -> &'static str {
        match self {
            Way::InPlace => "(a) bosun in place",
            Way::Recreate => "(b) recreate",
            Way::Workflow => "(c) workflow",
        }
    }
}

struct Outcome {
    way: Way,
    elapsed: Duration,
    converged: bool,
    not_converged: usize,
    uid_changed: usize,
    restarted_more_than_once: usize,
    requests: Requests,
    /// Per pod, from the first change the way made to it to it running the new image
    /// Ready (sorted; (a) and (b) only).
    per_pod: Vec<Duration>,
    note: String,
}

/// Follows the pods through the store's change feed, in-process: no API requests and no
/// copies, so the measurement does not load what it measures.
struct Tracker {
    key: String,
    rx: tokio::sync::broadcast::Receiver<Arc<bosun_cluster::store::Event>>,
    /// Whether each pod runs the new image Ready.
    done: HashMap<String, bool>,
    touched: HashMap<String, Instant>,
    finished: HashMap<String, Instant>,
    rt: Arc<bosun_cluster::resource::ResourceType>,
    /// `BOSUN_BENCH_TRACE`: a pod whose every change is printed, to see where time goes.
    trace: Option<String>,
    since: Instant,
}

impl Tracker {
    fn new(cluster: &bosun_cluster::Cluster) -> anyhow::Result<Self> {
        let rt = cluster
            .store()
            .resolve("", "v1", "pods")
            .context("the pods resource")?;
        let mut t = Self {
            key: rt.storage_key(),
            rx: cluster.store().subscribe(),
            done: HashMap::new(),
            touched: HashMap::new(),
            finished: HashMap::new(),
            rt,
            trace: std::env::var("BOSUN_BENCH_TRACE").ok(),
            since: Instant::now(),
        };
        if t.trace.is_some() {
            let epoch = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            println!(
                "trace +0ms is {} ms since the epoch (the audit log's timeMs)",
                epoch.as_millis()
            );
        }
        t.rescan(cluster);
        Ok(t)
    }

    fn rescan(&mut self, cluster: &bosun_cluster::Cluster) {
        let mut seen = HashMap::new();
        cluster.store().for_each(&self.rt, NS, |p| {
            seen.insert(
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                done_json(p),
            );
        });
        self.done = seen;
    }

    fn drain(&mut self, cluster: &bosun_cluster::Cluster) {
        use tokio::sync::broadcast::error::TryRecvError;
        loop {
            match self.rx.try_recv() {
                Ok(e) if e.key == self.key => {
                    let p = &e.object;
                    if p["metadata"]["namespace"] != NS {
                        continue;
                    }
                    let name = p["metadata"]["name"].as_str().unwrap_or_default();
                    let now = Instant::now();
                    if self.trace.as_deref().is_some_and(|t| name.starts_with(t)) {
                        let cond = |t: &str| {
                            p.pointer("/status/conditions")
                                .and_then(serde_json::Value::as_array)
                                .and_then(|cs| cs.iter().find(|c| c["type"] == t))
                                .map_or("-".to_owned(), |c| c["status"].to_string())
                        };
                        println!(
                            "trace {name} +{:>6.0}ms rv {} {:?}: spec {} running {} ready {} gate {} Ready {}",
                            now.duration_since(self.since).as_secs_f64() * 1000.0,
                            p["metadata"]["resourceVersion"],
                            e.kind,
                            p["spec"]["containers"][0]["image"],
                            p["status"]["containerStatuses"][0]["imageID"],
                            p["status"]["containerStatuses"][0]["ready"],
                            cond(GATE),
                            cond("Ready"),
                        );
                    }
                    if !self.touched.contains_key(name) && touched_json(p) {
                        self.touched.insert(name.to_owned(), now);
                    }
                    if e.kind == bosun_cluster::store::EventKind::Deleted {
                        self.touched.entry(name.to_owned()).or_insert(now);
                        self.done.remove(name);
                        continue;
                    }
                    let done = done_json(p);
                    if done && !self.finished.contains_key(name) {
                        self.finished.insert(name.to_owned(), now);
                    }
                    self.done.insert(name.to_owned(), done);
                }
                Ok(_) => {}
                Err(TryRecvError::Lagged(_)) => self.rescan(cluster),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
    }

    fn converged(&self, total: usize) -> bool {
        self.done.len() == total && self.done.values().all(|d| *d)
    }

    fn latencies(&self) -> Vec<Duration> {
        let mut out: Vec<Duration> = self
            .finished
            .iter()
            .filter_map(|(name, end)| Some(*end - *self.touched.get(name)?))
            .collect();
        out.sort();
        out
    }
}

/// Whether the stored pod has condition `type_` with `status`.
fn condition_is(p: &serde_json::Value, type_: &str, status: &str) -> bool {
    p.pointer("/status/conditions")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == type_ && c["status"] == status)
        })
}

/// Whether a way has begun to change this pod: its gate is False, its spec has the new
/// image, or it is being deleted.
fn touched_json(p: &serde_json::Value) -> bool {
    condition_is(p, GATE, "False")
        || p.pointer("/spec/containers/0/image") == Some(&json!(NEW))
        || p.pointer("/metadata/deletionTimestamp").is_some()
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn first_status(p: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStatus> {
    p.status.as_ref()?.container_statuses.as_ref()?.first()
}

fn running(p: &Pod, image: &str) -> bool {
    first_status(p).is_some_and(|c| c.image_id == format!("sim://{image}"))
}

fn done(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none() && ready(p) && running(p, NEW)
}

/// [`done`] on the stored form of a pod.
fn done_json(p: &serde_json::Value) -> bool {
    let ready = condition_is(p, "Ready", "True");
    let image = p
        .pointer("/status/containerStatuses/0/imageID")
        .and_then(serde_json::Value::as_str);
    p.pointer("/metadata/deletionTimestamp").is_none()
        && ready
        && image == Some(format!("sim://{NEW}").as_str())
}

fn waiting_failed(p: &Pod) -> bool {
    first_status(p)
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.as_deref())
        .is_some_and(|r| matches!(r, "ErrImagePull" | "ImagePullBackOff" | "CrashLoopBackOff"))
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn ordinal(name: &str) -> u64 {
    name.rsplit('-')
        .next()
        .and_then(|i| i.parse().ok())
        .unwrap_or(0)
}

/// A fresh cluster with the StatefulSets of `way` created (their pods start).
async fn setup(shape: &Shape, way: Way) -> anyhow::Result<(bosun_cluster::Cluster, kube::Client)> {
    let sim = bosun_cluster::sim::Config {
        speed: shape.speed,
        startup_delay: STARTUP,
        pods_per_node: 110,
        pod_start_delay: shape.pod_start,
        ..Default::default()
    };
    let nodes = shape.total().div_ceil(100).max(1);
    let cluster = bosun_cluster::start(bosun_cluster::Config {
        nodes,
        sim,
        ..Default::default()
    })
    .await
    .context("embedded cluster")?;
    let client = cluster.client().await?;
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    for s in 0..shape.sets {
        let name = Shape::set_name(s);
        let annotations = match way {
            Way::InPlace => json!({
                "release.bosun.dev/strategy": "InPlaceIfPossible",
                "release.bosun.dev/max-unavailable": "10%",
                "release.bosun.dev/failure-threshold": "10%",
            }),
            Way::Recreate => json!({
                "release.bosun.dev/strategy": "Recreate",
                "release.bosun.dev/max-unavailable": "10%",
                "release.bosun.dev/failure-threshold": "10%",
            }),
            Way::Workflow => json!({}),
        };
        let mut spec = json!({"containers": [{"name": "app", "image": OLD}]});
        // BOSUN_BENCH_GATE=0: pods without the readiness gate (one write per pod, and no
        // out-of-service window before the restart: the trade the README describes).
        if way != Way::Workflow && std::env::var("BOSUN_BENCH_GATE").as_deref() != Ok("0") {
            spec["readinessGates"] = json!([{"conditionType": GATE}]);
        }
        let sts: StatefulSet = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": NS, "annotations": annotations},
            "spec": {
                "replicas": shape.per_set, "serviceName": name, "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": {"app": name}},
                "updateStrategy": {"type": "OnDelete"},
                "template": {"metadata": {"labels": {"app": name}}, "spec": spec}
            }
        }))?;
        sts_api.create(&PostParams::default(), &sts).await?;
    }
    Ok((cluster, client))
}

/// Waits until every pod is Ready at the old image; returns uid and restarts by name.
async fn settled(
    shape: &Shape,
    pod_api: &Api<Pod>,
) -> anyhow::Result<HashMap<String, (String, i32)>> {
    let started = Instant::now();
    loop {
        let pods = pod_api.list(&ListParams::default()).await?.items;
        if pods.len() == shape.total() && pods.iter().all(|p| ready(p) && running(p, OLD)) {
            return Ok(pods
                .iter()
                .map(|p| {
                    let restarts = first_status(p).map_or(0, |c| c.restart_count);
                    (
                        name(p),
                        (p.metadata.uid.clone().unwrap_or_default(), restarts),
                    )
                })
                .collect());
        }
        if started.elapsed() > SETUP_LIMIT {
            let stuck: Vec<String> = pods
                .iter()
                .filter(|p| !ready(p))
                .take(3)
                .map(|p| {
                    format!(
                        "{}: {}",
                        name(p),
                        serde_json::to_string(&p.status).unwrap_or_default()
                    )
                })
                .collect();
            anyhow::bail!(
                "setup timed out: {} pods, {} ready; not ready: {stuck:?}",
                pods.len(),
                pods.iter().filter(|p| ready(p)).count()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn set_template_image(shape: &Shape, client: &kube::Client) -> anyhow::Result<()> {
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    for s in 0..shape.sets {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": NEW}]}}}});
        sts_api
            .patch(
                &Shape::set_name(s),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await?;
    }
    Ok(())
}

fn inject_faults(shape: &Shape, cluster: &bosun_cluster::Cluster) -> usize {
    let failing = shape.failing();
    for pod in &failing {
        cluster.sim().fail_pod_pulls(NS, pod, NEW, shape.fault);
    }
    failing.len()
}

/// (a) and (b): the release plugin in the runtime.
async fn released(shape: &Shape, way: Way) -> anyhow::Result<Outcome> {
    let (cluster, client) = setup(shape, way).await?;
    let dir = tempfile::tempdir()?;
    let mut config = Config {
        data_dir: dir.path().join("rt"),
        admin_addr: "127.0.0.1:0".parse()?,
        resync_seconds: 0,
        ..Default::default()
    };
    // The release paces itself with max-unavailable (10%, within the runtime's default
    // budget of 25%, which stays on); the rate limits are not measured: 3,000 pods are
    // 6,000 destructive commands (gate, image), far over the default 60 a minute.
    config.guardrails.global = Rate::new(100_000.0, 100_000);
    config.guardrails.per_plugin = Rate::new(100_000.0, 100_000);
    config.guardrails.destructive.per_minute = None;
    let logs = Arc::new(log::Memory::default());
    let rt = Runtime::start_with(config, client.clone(), logs.clone()).await?;
    let source = Source::file(std::path::Path::new(bosun_test_artifacts::RELEASE))?;
    rt.install(&source, r#"{"pollMs": 100}"#)?;
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let before = settled(shape, &pod_api).await?;
    inject_faults(shape, &cluster);

    let requests = cluster.requests();
    let mut tracker = Tracker::new(&cluster)?;
    let start = Instant::now();
    set_template_image(shape, &client).await?;
    let limit = shape
        .wall(Duration::from_secs(3600))
        .max(Duration::from_secs(300));
    let mut converged = false;
    while start.elapsed() < limit {
        tracker.drain(&cluster);
        if tracker.converged(shape.total()) {
            converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = start.elapsed();
    let requests = cluster.requests().since(&requests);
    let after = pod_api.list(&ListParams::default()).await?.items;
    let mut outcome = judge(way, elapsed, converged, &before, &after, requests);
    outcome.per_pod = tracker.latencies();
    if let Some(t) = &tracker.trace {
        for line in logs.take() {
            if line.message.contains(&format!("/{t}")) {
                println!("log {}", line.message);
            }
        }
        for line in rt.metrics().encode().lines() {
            if line.contains("plugin=\"release\"") && !line.contains("_bucket") {
                println!("{line}");
            }
        }
    }
    outcome.note = if way == Way::InPlace {
        String::new()
    } else {
        "recreated pods change uid by design".to_owned()
    };
    rt.shutdown().await;
    cluster.shutdown().await;
    if tracker.trace.is_some() {
        println!("runtime data kept in {}", dir.keep().display());
    }
    Ok(outcome)
}

fn judge(
    way: Way,
    elapsed: Duration,
    converged: bool,
    before: &HashMap<String, (String, i32)>,
    after: &[Pod],
    requests: Requests,
) -> Outcome {
    let not_converged =
        after.iter().filter(|p| !done(p)).count() + before.len().saturating_sub(after.len());
    let uid_changed = after
        .iter()
        .filter(|p| {
            before
                .get(&name(p))
                .is_none_or(|(uid, _)| p.metadata.uid.as_deref() != Some(uid.as_str()))
        })
        .count();
    let restarted_more_than_once = after
        .iter()
        .filter(|p| {
            let restarts = first_status(p).map_or(0, |c| c.restart_count);
            before.get(&name(p)).is_some_and(|(uid, r)| {
                p.metadata.uid.as_deref() == Some(uid.as_str()) && restarts > r + 1
            })
        })
        .count();
    Outcome {
        way,
        elapsed,
        converged,
        not_converged,
        uid_changed,
        restarted_more_than_once,
        requests,
        per_pod: Vec::new(),
        note: String::new(),
    }
}

/// (c): the workflow, driven from here against the cluster.
async fn workflow(shape: &Shape) -> anyhow::Result<Outcome> {
    let (cluster, client) = setup(shape, Way::Workflow).await?;
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let before = settled(shape, &pod_api).await?;
    inject_faults(shape, &cluster);

    let requests = cluster.requests();
    let start = Instant::now();
    // The template first (OnDelete: no pod changes), so a recreated pod gets the new image.
    set_template_image(shape, &client).await?;
    // Fixed batches: highest ordinals first, across the StatefulSets.
    let mut names: Vec<String> = before.keys().cloned().collect();
    names.sort_by_key(|n| (std::cmp::Reverse(ordinal(n)), n.clone()));
    let poll = shape.wall(WORKFLOW_POLL);
    let mut given_up = 0usize;
    let mut retries = 0u32;
    let mut batches = 0usize;
    for batch in names.chunks(WORKFLOW_BATCH) {
        batches += 1;
        let patch = json!({"spec": {"containers": [{"name": "app", "image": NEW}]}});
        futures::stream::iter(batch.iter().map(|n| {
            let pod_api = pod_api.clone();
            let patch = patch.clone();
            async move {
                pod_api
                    .patch(n, &PatchParams::default(), &Patch::Strategic(patch))
                    .await
            }
        }))
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        let began = Instant::now();
        let mut failing_since: BTreeMap<String, Instant> = BTreeMap::new();
        let mut tries: BTreeMap<String, u32> = BTreeMap::new();
        loop {
            let pods: Vec<Pod> = pod_api
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter(|p| batch.contains(&name(p)))
                .collect();
            let pending: Vec<&Pod> = pods.iter().filter(|p| !done(p)).collect();
            if pods.len() == batch.len() && pending.is_empty() {
                break;
            }
            if began.elapsed() >= shape.wall(WORKFLOW_BATCH_TIMEOUT) {
                given_up += pending.len() + batch.len().saturating_sub(pods.len());
                break;
            }
            let now = Instant::now();
            for p in pending.iter().filter(|p| waiting_failed(p)) {
                let n = name(p);
                let since = *failing_since.entry(n.clone()).or_insert(now);
                let tried = tries.entry(n.clone()).or_default();
                if now - since >= shape.wall(WORKFLOW_RETRY_AFTER) && *tried < WORKFLOW_RETRIES {
                    // Retry the instance: delete it; the StatefulSet controller recreates it.
                    pod_api.delete(&n, &DeleteParams::default()).await?;
                    *tried += 1;
                    retries += 1;
                    failing_since.remove(&n);
                }
            }
            tokio::time::sleep(poll).await;
        }
    }
    let elapsed = start.elapsed();
    let requests = cluster.requests().since(&requests);
    let after = pod_api.list(&ListParams::default()).await?.items;
    let mut outcome = judge(
        Way::Workflow,
        elapsed,
        given_up == 0,
        &before,
        &after,
        requests,
    );
    outcome.note = format!(
        "{batches} batches of {WORKFLOW_BATCH}; {retries} retries (delete and recreate); {given_up} pods given up at a batch timeout; its polling lists are part of the workflow and counted"
    );
    cluster.shutdown().await;
    Ok(outcome)
}

async fn run() -> anyhow::Result<()> {
    let shape = Shape {
        sets: env_or("BOSUN_BENCH_SETS", 30),
        per_set: env_or("BOSUN_BENCH_PODS", 100),
        speed: env_or("BOSUN_BENCH_SPEED", 10) as f64,
        fault: Duration::from_secs(env_or("BOSUN_BENCH_FAULT_SECONDS", 30)),
        pod_start: Duration::from_secs(env_or("BOSUN_BENCH_POD_START_SECONDS", 10)),
    };
    let ways = std::env::var("BOSUN_BENCH_WAYS").unwrap_or_else(|_| "a,b,c".to_owned());
    println!(
        "release benchmark: {} StatefulSets x {} pods = {} pods, clock x{}, {} updates failing \
         (image pull fails for {}s simulated, then the kubelet's retry succeeds); container \
         start-up {}s, new-pod start delay {}s (simulated)",
        shape.sets,
        shape.per_set,
        shape.total(),
        shape.speed,
        shape.failing().len(),
        shape.fault.as_secs(),
        STARTUP.as_secs(),
        shape.pod_start.as_secs(),
    );
    let mut outcomes = Vec::new();
    for w in ways.split(',').map(str::trim) {
        let way = match w {
            "a" => Way::InPlace,
            "b" => Way::Recreate,
            "c" => Way::Workflow,
            other => anyhow::bail!("BOSUN_BENCH_WAYS: unknown way {other:?} (a, b or c)"),
        };
        let began = Instant::now();
        let outcome = match way {
            Way::Workflow => workflow(&shape).await?,
            _ => released(&shape, way).await?,
        };
        println!(
            "{}: {} in {:.1}s wall = {:.0}s simulated (with setup {:.0}s wall)",
            way.label(),
            if outcome.converged {
                "converged"
            } else {
                "ended without converging"
            },
            outcome.elapsed.as_secs_f64(),
            shape.sim_s(outcome.elapsed),
            began.elapsed().as_secs_f64()
        );
        outcomes.push(outcome);
    }

    println!();
    println!(
        "{:<20} {:>10} {:>10} {:>13} {:>11} {:>13} {:>8} {:>8} {:>8} {:>8}",
        "way",
        "wall s",
        "sim s",
        "inconsistent",
        "uid changed",
        "restarts > 1",
        "reads",
        "watches",
        "writes",
        "total"
    );
    for o in &outcomes {
        println!(
            "{:<20} {:>10.1} {:>10.0} {:>13} {:>11} {:>13} {:>8} {:>8} {:>8} {:>8}",
            o.way.label(),
            o.elapsed.as_secs_f64(),
            shape.sim_s(o.elapsed),
            o.not_converged,
            o.uid_changed,
            o.restarted_more_than_once,
            o.requests.reads,
            o.requests.watches,
            o.requests.writes(),
            o.requests.total()
        );
    }
    for o in outcomes.iter().filter(|o| !o.per_pod.is_empty()) {
        let at = |q: f64| {
            let i = ((o.per_pod.len() - 1) as f64 * q).round() as usize;
            shape.sim_s(o.per_pod[i])
        };
        println!(
            "  {}: per pod, first change to running {NEW} Ready: p50 {:.1}s, p90 {:.1}s, max {:.1}s simulated ({} pods)",
            o.way.label(),
            at(0.5),
            at(0.9),
            at(1.0),
            o.per_pod.len()
        );
    }
    for o in outcomes.iter().filter(|o| !o.note.is_empty()) {
        println!("  {}: {}", o.way.label(), o.note);
    }
    let time = |w: Way| {
        outcomes
            .iter()
            .find(|o| o.way == w)
            .map(|o| o.elapsed.as_secs_f64())
    };
    if let Some(a) = time(Way::InPlace) {
        if let Some(b) = time(Way::Recreate) {
            println!("(a) is {:.1}x faster than (b) recreate (goal 2x)", b / a);
        }
        if let Some(c) = time(Way::Workflow) {
            println!(
                "(a) is {:.1}x faster than (c) the workflow (goal 3x)",
                c / a
            );
        }
    }
    println!("inconsistent = pods not running {NEW} and Ready when the way declared itself done");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}
