//! Simulation: nodes, a scheduler, kubelets and workload controllers, as tokio tasks that
//! work on the store directly (not through HTTP: they are part of the server, like the
//! controllers built into kube-controller-manager would be in a single binary).
//!
//! A ReplicaSet or StatefulSet runs at most [`Config::max_pods_per_workload`] pods
//! (10,000 by default), whatever its `spec.replicas` (the API accepts up to 2^31-1, as
//! kube-apiserver does); over that, it gets a `ReplicasCapped` warning Event, once.
//!
//! The pods the ReplicaSet and StatefulSet controllers create go through admission, as
//! an API create would (see `creates`); their other writes go straight to the store.
//!
//! Every delay is divided by [`Config::speed`]. Faults are injected through [`Control`]
//! or the admin endpoints:
//! - `POST /admin/v1/node-ready?node=NAME&ready=false|true`
//! - `POST /admin/v1/crash?namespace=NS&pod=NAME&container=NAME`
//! - `POST /admin/v1/image-pull-failure?image=IMAGE&fail=true|false`
//! - `POST /admin/v1/pod-pull-failure?namespace=NS&pod=NAME&image=IMAGE&seconds=N`
//!   (pulls of IMAGE by that pod fail for N simulated seconds from the first attempt)
//! - `POST /admin/v1/node-kubelet?node=NAME&stopped=true|false` (the node's kubelet stops
//!   posting status and renewing its Lease, or starts again; see [`Control::stop_kubelet`])
//! - `POST /admin/v1/node-reboot?node=NAME&seconds=N` (NotReady for N simulated seconds,
//!   then every container restarts and the node has a new bootID; see
//!   [`Control::reboot_node`])
//! - `POST /admin/v1/crash-loop?namespace=NS&pod=NAME&container=NAME&on=true|false` (the
//!   container of the pod as it is now, by uid, crashes after every start, in
//!   `CrashLoopBackOff`; see [`Control::crash_loop`])
//!
//! Bad parameters get a 400; a crash loop on a pod that does not exist, a 404.
//!
//! # Pods that run to completion
//! The containers of a pod with `restartPolicy` `Never` or `OnFailure` (a Job's) run for
//! [`Config::run_time`] (1 s by default) and exit with code 0; the pod is then
//! `Succeeded` (`Failed` on a non-zero code; under `OnFailure` the container restarts
//! instead). Annotations on the pod, or a Job's pod template, override both:
//! - `sim.bosun.dev/run-seconds: "3"`: simulated seconds the containers run (decimals
//!   allowed);
//! - `sim.bosun.dev/exit-code: "1"`: their exit code.
//!
//! # Events
//! The simulated components record Events as kube's do (see `events`): `Scheduled`,
//! `Pulled`, `Created`, `Started`, `Killing`, `SuccessfulCreate`, `SuccessfulDelete`,
//! `ScalingReplicaSet`, `Completed`, `BackoffLimitExceeded`.
//!
//! # Node lifecycle
//! As kube-controller-manager's node lifecycle controller does, for the simulated nodes
//! (see `lifecycle`):
//! - A node whose heartbeats (the Ready condition's `lastHeartbeatTime`) and Lease are
//!   older than [`Config::node_monitor_grace_period`] gets its kubelet's conditions set to
//!   `Unknown`, reason `NodeStatusUnknown`, message `Kubelet stopped posting node status.`
//!   (the last heartbeat kept), and its pods' Ready condition set False.
//! - A node whose Ready is `False` carries the taints `node.kubernetes.io/not-ready`, one
//!   `Unknown` `node.kubernetes.io/unreachable`, each with effects `NoSchedule` and
//!   `NoExecute` (the latter with `timeAdded`); they go when it is Ready again. Other
//!   taints and `spec.unschedulable` are left alone.
//! - NoExecute taints do not evict: the taint manager's eviction of pods without a
//!   matching toleration (after `tolerationSeconds`) is not simulated. The scheduler
//!   does honour them, and places nothing on a node that is not Ready.
//! - A pod deleted gracefully while its node is not Ready stays Terminating (nothing
//!   confirms it), until the node is Ready again (the kubelet then ends it), the node is
//!   deleted, or the node carries `node.kubernetes.io/out-of-service` with effect
//!   `NoExecute` while not Ready: then it is force-deleted, as the pod garbage collector
//!   does. A delete with `gracePeriodSeconds=0` removes it at once.

mod creates;
mod cronjob;
pub(crate) use cronjob::Schedule;
mod daemonset;
mod deployment;
mod disruption;
mod events;
mod job;
mod kubelet;
mod lifecycle;
mod node;
mod replicaset;
mod scheduler;
mod statefulset;

use crate::admission::Admission;
use crate::meta;
use crate::resource::ResourceType;
use crate::status::ApiError;
use crate::store::Store;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

/// Timing and capacity of the simulation.
#[derive(Debug, Clone)]
pub struct Config {
    /// Divides every simulated delay: 10.0 runs ten times faster than real time.
    pub speed: f64,
    /// Time from a container start to it being ready.
    pub startup_delay: Duration,
    /// Interval between node heartbeats (the Ready condition's `lastHeartbeatTime`).
    pub heartbeat: Duration,
    /// Pods each simulated node accepts.
    pub pods_per_node: usize,
    /// Time from a new pod's binding to its containers starting: sandbox, network,
    /// volume attach and mount, init containers. An in-place container restart does not
    /// pay it. Default zero.
    pub pod_start_delay: Duration,
    /// Pods one ReplicaSet or StatefulSet gets at most, whatever its `spec.replicas`
    /// (the API accepts up to 2^31-1): more is refused with a `ReplicasCapped` warning
    /// Event on the workload and a log line, once. Default 10,000.
    pub max_pods_per_workload: usize,
    /// How long a node's heartbeats and Lease may be stale before the node lifecycle step
    /// marks it `Unknown` (kube-controller-manager's `--node-monitor-grace-period`).
    /// Default 40 s.
    pub node_monitor_grace_period: Duration,
    /// How long the containers of a pod with `restartPolicy` `Never` or `OnFailure` run
    /// before they exit (code 0), unless its `sim.bosun.dev/run-seconds` annotation says
    /// otherwise. Default 1 s.
    pub run_time: Duration,
    /// How long one minute of a CronJob's schedule lasts, in real time (not divided by
    /// `speed`): tests shorten it to run `* * * * *` every second. At least 1 s. Default
    /// 60 s (see `cronjob`).
    pub cron_minute: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            speed: 1.0,
            startup_delay: Duration::from_millis(200),
            heartbeat: Duration::from_secs(10),
            pods_per_node: 110,
            pod_start_delay: Duration::ZERO,
            max_pods_per_workload: 10_000,
            node_monitor_grace_period: Duration::from_secs(40),
            run_time: Duration::from_secs(1),
            cron_minute: Duration::from_secs(60),
        }
    }
}

impl Config {
    /// A simulated delay in real time; one too long for a `Duration` is `Duration::MAX`
    /// (delays come from admin requests too).
    pub fn scaled(&self, d: Duration) -> Duration {
        Duration::try_from_secs_f64(d.as_secs_f64() / self.speed.max(0.001))
            .unwrap_or(Duration::MAX)
    }
}

/// A pull failure of one image by one pod, for a while.
#[derive(Debug)]
struct PullFault {
    /// How long pulls fail, from the first attempt (real time).
    lasts: Duration,
    /// The first failed attempt.
    since: Option<Instant>,
}

/// A container crashing after every start, for as long as the fault is on.
#[derive(Debug)]
struct CrashLoop {
    namespace: String,
    pod: String,
}

#[derive(Debug, Default)]
struct Faults {
    not_ready: HashSet<String>,
    crashes: HashSet<(String, String, String)>,
    bad_images: HashSet<String>,
    /// By (namespace, pod, image).
    pod_pulls: HashMap<(String, String, String), PullFault>,
    /// Nodes whose kubelet posts nothing.
    stopped: HashSet<String>,
    /// Nodes rebooting, until when (real time).
    reboots: HashMap<String, Instant>,
    /// By (pod uid, container).
    crash_loops: HashMap<(String, String), CrashLoop>,
}

/// The store, once the simulation runs (a crash loop looks its pod up).
#[derive(Default)]
struct StoreCell(std::sync::OnceLock<Arc<Store>>);

impl std::fmt::Debug for StoreCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "StoreCell(set)"
        } else {
            "StoreCell(unset)"
        })
    }
}

/// Handle on the running simulation: timing and fault injection.
#[derive(Debug)]
pub struct Control {
    config: Config,
    faults: Mutex<Faults>,
    /// Wakes the controllers after a fault changes.
    poke: tokio::sync::Notify,
    /// Counts fault changes: what the kubelet computed before a change is stale.
    generation: std::sync::atomic::AtomicU64,
    store: StoreCell,
}

impl Control {
    pub(crate) fn new(config: Config) -> Arc<Self> {
        Arc::new(Self {
            config,
            faults: Mutex::default(),
            poke: tokio::sync::Notify::new(),
            generation: std::sync::atomic::AtomicU64::new(0),
            store: StoreCell::default(),
        })
    }

    /// The faults, for a change: what was computed under the old ones is stale.
    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.faults_now()
    }

    /// The faults, to read.
    fn faults_now(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many times the faults changed.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The timing in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Makes a node report NotReady (`ready = false`) or Ready again; the scheduler avoids
    /// NotReady nodes and the pods on them turn unready. The node lifecycle step taints a
    /// NotReady node `node.kubernetes.io/not-ready` (NoSchedule and NoExecute) and
    /// removes the taints when it is Ready again; pods deleted meanwhile stay Terminating.
    pub fn set_node_ready(&self, node: &str, ready: bool) {
        let mut f = self.faults();
        if ready {
            f.not_ready.remove(node);
        } else {
            f.not_ready.insert(node.to_string());
        }
        drop(f);
        self.poke.notify_waiters();
    }

    /// Crashes a running container once: the kubelet restarts it (restartCount + 1).
    pub fn crash_container(&self, namespace: &str, pod: &str, container: &str) {
        self.faults()
            .crashes
            .insert((namespace.into(), pod.into(), container.into()));
        self.poke.notify_waiters();
    }

    /// Makes pulls of `image` fail (containers wait with `ErrImagePull`), or succeed again.
    pub fn set_image_pull_failure(&self, image: &str, fail: bool) {
        let mut f = self.faults();
        if fail {
            f.bad_images.insert(image.to_string());
        } else {
            f.bad_images.remove(image);
        }
        drop(f);
        self.poke.notify_waiters();
    }

    /// Makes pulls of `image` by pod `namespace/pod` fail (`ErrImagePull`) for `lasts`
    /// of simulated time from the first attempt, after which it starts: a transient
    /// failure of one update (a registry hiccup). The fault follows the pod's name, so a
    /// pod recreated meanwhile fails too.
    pub fn fail_pod_pulls(&self, namespace: &str, pod: &str, image: &str, lasts: Duration) {
        let lasts = self.config.scaled(lasts);
        self.faults().pod_pulls.insert(
            (namespace.into(), pod.into(), image.into()),
            PullFault { lasts, since: None },
        );
        self.poke.notify_waiters();
    }

    /// Stops the node's kubelet (`stopped = true`): it posts no heartbeat and renews no
    /// Lease, and no longer updates or ends its pods. After
    /// [`Config::node_monitor_grace_period`] the node lifecycle step marks the node
    /// `Unknown` and unreachable, and its pods not Ready. `false` starts it again: the node
    /// is Ready with a fresh heartbeat, and the unreachable taints go.
    pub fn stop_kubelet(&self, node: &str, stopped: bool) {
        let mut f = self.faults();
        if stopped {
            f.stopped.insert(node.to_string());
        } else {
            f.stopped.remove(node);
        }
        drop(f);
        self.poke.notify_waiters();
    }

    /// Reboots a node: NotReady (reason `KubeletNotReady`) for `downtime` of simulated
    /// time, its pods not Ready; then Ready with a new `status.nodeInfo.bootID`, and every
    /// container of its pods restarted (restartCount + 1). Cordon and taints are kept.
    /// A reboot repairs what the node's own faults simulate — a node made NotReady
    /// (`set_node_ready`) or a stopped kubelet (`stop_kubelet`) — as rebooting a machine
    /// whose kubelet hung would.
    pub fn reboot_node(&self, node: &str, downtime: Duration) {
        let now = Instant::now();
        let until = now
            .checked_add(self.config.scaled(downtime))
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30));
        let mut f = self.faults();
        f.not_ready.remove(node);
        f.stopped.remove(node);
        f.reboots.insert(node.to_string(), until);
        drop(f);
        self.poke.notify_waiters();
    }

    /// Puts container `container` of pod `namespace/pod` in a crash loop (`on = true`):
    /// after every start it exits with code 1 and the kubelet backs off 10 s, doubling up
    /// to 300 s (simulated time), in `CrashLoopBackOff`. The fault is the pod's as it is
    /// now (by uid): a pod recreated under the same name is healthy. A restart by other
    /// means (an image change) keeps it; `on = false` ends it for the pods of that name
    /// (whatever their uid). An unknown pod is a 404 (for `on = true`).
    pub fn crash_loop(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        on: bool,
    ) -> Result<(), ApiError> {
        if !on {
            self.faults()
                .crash_loops
                .retain(|(_, c), l| !(c == container && l.namespace == namespace && l.pod == pod));
            self.poke.notify_waiters();
            return Ok(());
        }
        let found = self.store.0.get().and_then(|store| {
            let rt = store.resolve("", "v1", "pods")?;
            store.get(&rt, namespace, pod).ok()
        });
        let Some(found) = found else {
            return Err(ApiError::not_found("pods", pod));
        };
        self.faults().crash_loops.insert(
            (meta::uid_of(&found).to_string(), container.to_string()),
            CrashLoop {
                namespace: namespace.to_string(),
                pod: pod.to_string(),
            },
        );
        self.poke.notify_waiters();
        Ok(())
    }

    /// Whether a pull of `image` by the pod fails at `now`; `Some(until)` while it does.
    fn pod_pull_fails(&self, ns: &str, pod: &str, image: &str, now: Instant) -> Option<Instant> {
        let mut f = self.faults_now();
        let key = (ns.to_string(), pod.to_string(), image.to_string());
        let fault = f.pod_pulls.get_mut(&key)?;
        let since = *fault.since.get_or_insert(now);
        // `seconds` is the admin request's: past what an Instant holds, it never ends.
        let until = since
            .checked_add(fault.lasts)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30));
        if now < until {
            return Some(until);
        }
        f.pod_pulls.remove(&key);
        None
    }

    /// Whether the node reports Ready: not made NotReady, not rebooting.
    fn node_ready(&self, node: &str) -> bool {
        let f = self.faults_now();
        !f.not_ready.contains(node) && !f.reboots.contains_key(node)
    }

    /// Whether the node's kubelet runs: not stopped, not rebooting.
    fn kubelet_up(&self, node: &str) -> bool {
        let f = self.faults_now();
        !f.stopped.contains(node) && !f.reboots.contains_key(node)
    }

    /// Whether the node's kubelet posts status (a rebooting node's reports NotReady).
    fn kubelet_posts(&self, node: &str) -> bool {
        !self.faults_now().stopped.contains(node)
    }

    /// When the node's reboot ends, if it is rebooting.
    fn reboot_until(&self, node: &str) -> Option<Instant> {
        self.faults_now().reboots.get(node).copied()
    }

    /// Ends a node's reboot, once its new bootID is written: the kubelet restarts its pods'
    /// containers.
    fn end_reboot(&self, node: &str) {
        self.faults().reboots.remove(node);
        self.poke.notify_waiters();
    }

    /// Whether the container of the pod (by uid) is in a crash loop.
    fn crash_looping(&self, uid: &str, container: &str) -> bool {
        self.faults_now()
            .crash_loops
            .contains_key(&(uid.to_string(), container.to_string()))
    }

    fn image_fails(&self, image: &str) -> bool {
        self.faults_now().bad_images.contains(image)
    }

    fn take_crash(&self, ns: &str, pod: &str, container: &str) -> bool {
        self.faults_now()
            .crashes
            .remove(&(ns.to_string(), pod.to_string(), container.to_string()))
    }
}

/// The admin HTTP endpoints (fault injection).
pub(crate) fn admin_router(control: Arc<Control>) -> axum::Router {
    use axum::routing::post;
    axum::Router::new()
        .route("/admin/v1/node-ready", post(admin_node_ready))
        .route("/admin/v1/crash", post(admin_crash))
        .route("/admin/v1/image-pull-failure", post(admin_image))
        .route("/admin/v1/pod-pull-failure", post(admin_pod_pull))
        .route("/admin/v1/node-kubelet", post(admin_node_kubelet))
        .route("/admin/v1/node-reboot", post(admin_node_reboot))
        .route("/admin/v1/crash-loop", post(admin_crash_loop))
        .with_state(control)
}

type Params = Query<HashMap<String, String>>;

fn param<'a>(q: &'a Params, k: &str) -> Result<&'a str, ApiError> {
    q.get(k)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("query parameter {k} is required")))
}

fn flag(q: &Params, k: &str) -> Result<bool, ApiError> {
    match param(q, k)? {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(ApiError::bad_request(format!(
            "{k} must be true or false, not {other:?}"
        ))),
    }
}

async fn admin_node_ready(
    State(c): State<Arc<Control>>,
    q: Params,
) -> Result<impl IntoResponse, ApiError> {
    c.set_node_ready(param(&q, "node")?, flag(&q, "ready")?);
    Ok("ok")
}

async fn admin_crash(
    State(c): State<Arc<Control>>,
    q: Params,
) -> Result<impl IntoResponse, ApiError> {
    c.crash_container(
        param(&q, "namespace")?,
        param(&q, "pod")?,
        param(&q, "container")?,
    );
    Ok("ok")
}

async fn admin_image(
    State(c): State<Arc<Control>>,
    q: Params,
) -> Result<impl IntoResponse, ApiError> {
    c.set_image_pull_failure(param(&q, "image")?, flag(&q, "fail")?);
    Ok("ok")
}

async fn admin_pod_pull(
    State(c): State<Arc<Control>>,
    q: Params,
) -> Result<impl IntoResponse, ApiError> {
    c.fail_pod_pulls(
        param(&q, "namespace")?,
        param(&q, "pod")?,
        param(&q, "image")?,
        seconds(&q)?,
    );
    Ok("ok")
}

/// A `seconds` parameter: a non-negative integer.
fn seconds(q: &Params) -> Result<Duration, ApiError> {
    param(q, "seconds")?
        .parse()
        .map(Duration::from_secs)
        .map_err(|_| ApiError::bad_request("seconds must be a non-negative integer".to_string()))
}

async fn admin_node_kubelet(
    State(c): State<Arc<Control>>,
    q: Params,
) -> Result<impl IntoResponse, ApiError> {
    c.stop_kubelet(param(&q, "node")?, flag(&q, "stopped")?);
    Ok("ok")
}

async fn admin_node_reboot(
    State(c): State<Arc<Control>>,
    q: Params,
) -> Result<impl IntoResponse, ApiError> {
    c.reboot_node(param(&q, "node")?, seconds(&q)?);
    Ok("ok")
}

async fn admin_crash_loop(
    State(c): State<Arc<Control>>,
    q: Params,
) -> Result<impl IntoResponse, ApiError> {
    c.crash_loop(
        param(&q, "namespace")?,
        param(&q, "pod")?,
        param(&q, "container")?,
        flag(&q, "on")?,
    )?;
    Ok("ok")
}

/// The resource types the controllers work on.
pub(crate) struct Kinds {
    pub pods: Arc<ResourceType>,
    pub nodes: Arc<ResourceType>,
    pub statefulsets: Arc<ResourceType>,
    pub replicasets: Arc<ResourceType>,
    pub deployments: Arc<ResourceType>,
    pub revisions: Arc<ResourceType>,
    pub daemonsets: Arc<ResourceType>,
    pub jobs: Arc<ResourceType>,
    pub cronjobs: Arc<ResourceType>,
}

impl Kinds {
    fn resolve(store: &Store) -> Option<Self> {
        Some(Self {
            pods: store.resolve("", "v1", "pods")?,
            nodes: store.resolve("", "v1", "nodes")?,
            statefulsets: store.resolve("apps", "v1", "statefulsets")?,
            replicasets: store.resolve("apps", "v1", "replicasets")?,
            deployments: store.resolve("apps", "v1", "deployments")?,
            revisions: store.resolve("apps", "v1", "controllerrevisions")?,
            daemonsets: store.resolve("apps", "v1", "daemonsets")?,
            jobs: store.resolve("batch", "v1", "jobs")?,
            cronjobs: store.resolve("batch", "v1", "cronjobs")?,
        })
    }
}

/// What every controller gets.
pub(crate) struct Ctx {
    pub store: Arc<Store>,
    pub control: Arc<Control>,
    pub kinds: Kinds,
    /// What the kubelet keeps between passes.
    pub kubelet: Mutex<kubelet::State>,
    /// What the node lifecycle controller keeps between passes.
    pub lifecycle: Mutex<lifecycle::State>,
    /// The workloads (uid, replicas) already told that their replicas are capped.
    pub capped: Mutex<HashSet<(String, usize)>>,
    /// The webhooks the controllers' pod creates go through.
    pub admission: Arc<Admission>,
    /// The owners whose pods could not be created, waiting to try again.
    pub backoffs: creates::Backoffs,
    /// The Events the simulation created, to bound them.
    pub events: events::Recorded,
}

/// Writes `status` through /status when it differs; a conflict is retried on the next
/// pass. The new resourceVersion when it wrote.
pub(crate) fn write_status(
    ctx: &Ctx,
    rt: &ResourceType,
    obj: &Value,
    status: Value,
) -> Option<String> {
    if obj.get("status") == Some(&status) {
        return None;
    }
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.insert("status".into(), status);
    }
    match ctx
        .store
        .update(rt, meta::namespace(obj), meta::name(obj), o, true, false)
    {
        Ok(written) => Some(meta::str_at(&written, "metadata.resourceVersion").to_string()),
        Err(e) => {
            if e.code != 409 && e.code != 404 {
                tracing::warn!(name = meta::name(obj), error = %e, "status write failed");
            }
            None
        }
    }
}

/// Why a pass runs.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    /// Everything may have changed: the first pass, a resync, a fault, a lagged feed.
    pub full: bool,
    /// The `(namespace, name)` of the objects the controller said it cares about that
    /// changed since the last pass (see [`Interest`]); a controller that looks at
    /// everything on every pass ignores them.
    pub changed: HashSet<(String, String)>,
}

/// A reconcile function: one pass, returning when it wants to run again at the latest.
/// The pods it queues in [`creates::Creates`] are created after the pass.
type Reconcile = fn(&Ctx, &Wake, &mut creates::Creates) -> Option<Instant>;

/// What a change means to a controller.
pub(crate) enum Interest {
    /// Nothing: no pass for it.
    Ignore,
    /// A pass, for the object `(namespace, name)` (what the controller works on: a
    /// pod's StatefulSet for the StatefulSet controller).
    Key(String, String),
    /// A pass over everything.
    Full,
}

type Filter = fn(&Ctx, &crate::store::Event) -> Interest;

/// Every change but an Event's (the simulation writes many): a pass over everything.
fn any_change(_: &Ctx, e: &crate::store::Event) -> Interest {
    if matches!(e.key.as_str(), "/events" | "events.k8s.io/events") {
        return Interest::Ignore;
    }
    Interest::Full
}

/// Only the controller's own deadlines, pokes and resyncs.
fn no_change(_: &Ctx, _: &crate::store::Event) -> Interest {
    Interest::Ignore
}

impl Wake {
    fn add(&mut self, interest: Interest) -> bool {
        match interest {
            Interest::Ignore => return false,
            Interest::Key(ns, name) => {
                self.changed.insert((ns, name));
            }
            Interest::Full => self.full = true,
        }
        true
    }
}

/// Starts the simulation tasks.
pub(crate) fn spawn(
    store: Arc<Store>,
    control: Arc<Control>,
    admission: Arc<Admission>,
    nodes: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let _ = control.store.0.set(store.clone());
    if nodes == 0 {
        return Vec::new();
    }
    let Some(kinds) = Kinds::resolve(&store) else {
        return Vec::new();
    };
    let ctx = Arc::new(Ctx {
        store,
        control,
        kinds,
        kubelet: Mutex::default(),
        lifecycle: Mutex::default(),
        capped: Mutex::default(),
        admission,
        backoffs: creates::Backoffs::default(),
        events: events::Recorded::default(),
    });
    node::register(&ctx, nodes);
    let loops: [(&'static str, Reconcile, Filter); 11] = [
        ("nodes", node::reconcile, no_change),
        ("nodelifecycle", lifecycle::reconcile, no_change),
        ("scheduler", scheduler::reconcile, scheduler::interest),
        ("kubelet", kubelet::reconcile, kubelet::interest),
        ("statefulset", statefulset::reconcile, statefulset::interest),
        ("replicaset", replicaset::reconcile, any_change),
        ("deployment", deployment::reconcile, any_change),
        ("disruption", disruption::reconcile, any_change),
        ("daemonset", daemonset::reconcile, any_change),
        ("job", job::reconcile, any_change),
        ("cronjob", cronjob::reconcile, any_change),
    ];
    loops
        .into_iter()
        .map(|(name, f, filter)| tokio::spawn(run(ctx.clone(), name, f, filter, stop.clone())))
        .collect()
}

/// Runs a reconcile function on the changes it cares about (batched), on pokes, when it
/// asks to, and every five seconds over everything.
async fn run(
    ctx: Arc<Ctx>,
    name: &'static str,
    reconcile: Reconcile,
    filter: Filter,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut rx = ctx.store.subscribe();
    let resync = Duration::from_secs(5);
    let mut wake = Wake {
        full: true,
        ..Wake::default()
    };
    let mut last_full = Instant::now();
    let mut creates = creates::Creates::default();
    loop {
        let began = Instant::now();
        if wake.full {
            last_full = began;
        }
        let next = {
            let _span = tracing::trace_span!("bosun.cluster.sim", controller = name).entered();
            reconcile(&ctx, &std::mem::take(&mut wake), &mut creates)
        };
        // No lock is held here: the creates may wait for webhooks (shutdown does not).
        let flush = creates::flush(&ctx, &mut creates).instrument(tracing::trace_span!(
            "bosun.cluster.sim.create",
            controller = name
        ));
        let retry = tokio::select! {
            _ = stop.changed() => return,
            retry = flush => retry,
        };
        // Under a stream of writes, wait twice as long as the pass took, so a controller
        // whose passes are long never takes more than a third of the time.
        let pause = (began.elapsed() * 2).clamp(Duration::from_millis(2), Duration::from_secs(1));
        let resync_at = last_full + resync;
        let deadline = [next, retry]
            .into_iter()
            .flatten()
            .fold(resync_at, Instant::min);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep_until(deadline) => {
                    // A backoff's end is a pass over everything: the controllers that
                    // pass over what changed would not look at the waiting owner.
                    let now = Instant::now();
                    wake.full |= now >= resync_at || retry.is_some_and(|r| now >= r);
                    break;
                }
                () = ctx.control.poke.notified() => {
                    wake.full = true;
                    break;
                }
                r = rx.recv() => match r {
                    Ok(e) => if wake.add(filter(&ctx, &e)) { break },
                    Err(RecvError::Lagged(_)) => { wake.full = true; break }
                    Err(RecvError::Closed) => return,
                },
            }
        }
        // Let a burst of writes land, then do one pass for all of them.
        tokio::time::sleep(pause).await;
        loop {
            match rx.try_recv() {
                Ok(e) => {
                    wake.add(filter(&ctx, &e));
                }
                Err(TryRecvError::Lagged(_)) => wake.full = true,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => return,
            }
        }
    }
}

/// Whether `owner` is a controller owner reference of `obj`.
pub(crate) fn owned_by(obj: &Value, owner: &Value) -> bool {
    let uid = meta::uid_of(owner);
    meta::owner_uid_refs(obj).any(|u| u == uid)
}

/// Objects grouped by the uids of their owners: one pass, instead of one scan of every
/// object per owner.
pub(crate) fn by_owner(objs: &[Arc<Value>]) -> HashMap<&str, Vec<&Value>> {
    let mut out: HashMap<&str, Vec<&Value>> = HashMap::new();
    for o in objs {
        for uid in meta::owner_uid_refs(o) {
            out.entry(uid).or_default().push(o);
        }
    }
    out
}

/// A controller owner reference to `owner`.
pub(crate) fn owner_ref(owner: &Value) -> Value {
    serde_json::json!({
        "apiVersion": meta::str_at(owner, "apiVersion"),
        "kind": meta::str_at(owner, "kind"),
        "name": meta::name(owner),
        "uid": meta::uid_of(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// A stable short hash of a pod template (what `controller-revision-hash` and
/// `pod-template-hash` hold).
pub(crate) fn template_hash(template: &Value) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    // Hash a canonical form (sorted keys): the same template always gives the same hash,
    // whatever the key order serde_json keeps.
    fn canonical(v: &Value, h: &mut DefaultHasher) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                for k in keys {
                    k.hash(h);
                    canonical(&m[k.as_str()], h);
                }
                '}'.hash(h);
            }
            Value::Array(a) => {
                a.iter().for_each(|x| canonical(x, h));
                ']'.hash(h);
            }
            other => other.to_string().hash(h),
        }
    }
    let mut h = DefaultHasher::new();
    canonical(template, &mut h);
    let n = h.finish();
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = n;
    (0..10)
        .map(|_| {
            let c = ALPHABET[(x % ALPHABET.len() as u64) as usize] as char;
            x /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// A pod built from a workload's template.
pub(crate) fn pod_from_template(
    owner: &Value,
    name: Option<&str>,
    extra_labels: &[(&str, &str)],
) -> Value {
    let template = meta::path(owner, "spec.template")
        .cloned()
        .unwrap_or(Value::Null);
    let mut pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": template.get("metadata").cloned().unwrap_or(serde_json::json!({})),
        "spec": template.get("spec").cloned().unwrap_or(serde_json::json!({})),
    });
    let m = meta::metadata_mut(&mut pod);
    match name {
        Some(n) => m.insert("name".into(), Value::String(n.into())),
        None => m.insert(
            "generateName".into(),
            Value::String(format!("{}-", meta::name(owner))),
        ),
    };
    m.insert(
        "namespace".into(),
        Value::String(meta::namespace(owner).into()),
    );
    m.insert(
        "ownerReferences".into(),
        Value::Array(vec![owner_ref(owner)]),
    );
    let labels = meta::object_mut(&mut pod["metadata"], "labels");
    for (k, v) in extra_labels {
        labels.insert((*k).into(), Value::String((*v).into()));
    }
    pod
}

/// Whether a pod is Running and Ready and not being deleted.
pub(crate) fn pod_ready(pod: &Value) -> bool {
    !meta::is_deleting(pod)
        && meta::str_at(pod, "status.phase") == "Running"
        && crate::eviction::is_ready(pod)
}

/// The pods a ReplicaSet or StatefulSet gets: `spec.replicas`, capped at
/// [`Config::max_pods_per_workload`]. Over the cap, the workload gets a warning Event and
/// the log a line, once per workload and replica count.
pub(crate) fn pods_wanted(ctx: &Ctx, obj: &Value) -> usize {
    let want = replicas(obj);
    let max = ctx.control.config.max_pods_per_workload;
    if want <= max {
        return want;
    }
    let first = {
        let mut told = ctx.capped.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: at worst a workload is told again.
        if told.len() >= 4096 {
            told.clear();
        }
        told.insert((meta::uid_of(obj).to_string(), want))
    };
    if first {
        let (ns, name, kind) = (
            meta::namespace(obj),
            meta::name(obj),
            meta::str_at(obj, "kind"),
        );
        let message = format!(
            "spec.replicas is {want}: the simulation runs at most {max} pods per workload (sim max_pods_per_workload)"
        );
        tracing::warn!(
            kind,
            namespace = ns,
            name,
            replicas = want,
            max,
            "replicas capped by the simulation"
        );
        if let Some(events) = ctx.store.resolve("", "v1", "events") {
            let now = meta::now();
            let event = serde_json::json!({
                "metadata": {"generateName": format!("{name}."), "namespace": ns},
                "involvedObject": {
                    "apiVersion": meta::str_at(obj, "apiVersion"), "kind": kind,
                    "name": name, "namespace": ns, "uid": meta::uid_of(obj),
                },
                "reason": "ReplicasCapped",
                "message": message,
                "type": "Warning",
                "source": {"component": "bosun-cluster-sim"},
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
            });
            let _ = ctx.store.create(&events, ns, event, false);
        }
    }
    max
}

/// `spec.replicas` (default 1).
pub(crate) fn replicas(obj: &Value) -> usize {
    meta::path(obj, "spec.replicas")
        .and_then(Value::as_u64)
        .unwrap_or(1) as usize
}
