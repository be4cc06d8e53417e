//! Simulation: nodes, a scheduler, kubelets and workload controllers, as tokio tasks that
//! work on the store directly (not through HTTP: they are part of the server, like the
//! controllers built into kube-controller-manager would be in a single binary).
//!
//! Every delay is divided by [`Config::speed`]. Faults are injected through [`Control`]
//! or the admin endpoints:
//! - `POST /admin/v1/node-ready?node=NAME&ready=false|true`
//! - `POST /admin/v1/crash?namespace=NS&pod=NAME&container=NAME`
//! - `POST /admin/v1/image-pull-failure?image=IMAGE&fail=true|false`
//! - `POST /admin/v1/pod-pull-failure?namespace=NS&pod=NAME&image=IMAGE&seconds=N`
//!   (pulls of IMAGE by that pod fail for N simulated seconds from the first attempt)

mod deployment;
mod disruption;
mod kubelet;
mod node;
mod replicaset;
mod scheduler;
mod statefulset;

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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            speed: 1.0,
            startup_delay: Duration::from_millis(200),
            heartbeat: Duration::from_secs(10),
            pods_per_node: 110,
            pod_start_delay: Duration::ZERO,
        }
    }
}

impl Config {
    /// A simulated delay in real time.
    pub fn scaled(&self, d: Duration) -> Duration {
        d.div_f64(self.speed.max(0.001))
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

#[derive(Debug, Default)]
struct Faults {
    not_ready: HashSet<String>,
    crashes: HashSet<(String, String, String)>,
    bad_images: HashSet<String>,
    /// By (namespace, pod, image).
    pod_pulls: HashMap<(String, String, String), PullFault>,
}

/// Handle on the running simulation: timing and fault injection.
#[derive(Debug)]
pub struct Control {
    config: Config,
    faults: Mutex<Faults>,
    /// Wakes the controllers after a fault changes.
    poke: tokio::sync::Notify,
}

impl Control {
    pub(crate) fn new(config: Config) -> Arc<Self> {
        Arc::new(Self {
            config,
            faults: Mutex::default(),
            poke: tokio::sync::Notify::new(),
        })
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The timing in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Makes a node report NotReady (`ready = false`) or Ready again; the scheduler avoids
    /// NotReady nodes and the pods on them turn unready.
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

    /// Whether a pull of `image` by the pod fails at `now`; `Some(until)` while it does.
    fn pod_pull_fails(&self, ns: &str, pod: &str, image: &str, now: Instant) -> Option<Instant> {
        let mut f = self.faults();
        let key = (ns.to_string(), pod.to_string(), image.to_string());
        let fault = f.pod_pulls.get_mut(&key)?;
        let until = *fault.since.get_or_insert(now) + fault.lasts;
        if now < until {
            return Some(until);
        }
        f.pod_pulls.remove(&key);
        None
    }

    fn node_ready(&self, node: &str) -> bool {
        !self.faults().not_ready.contains(node)
    }

    fn image_fails(&self, image: &str) -> bool {
        self.faults().bad_images.contains(image)
    }

    fn take_crash(&self, ns: &str, pod: &str, container: &str) -> bool {
        self.faults()
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
    let seconds: u64 = param(&q, "seconds")?
        .parse()
        .map_err(|_| ApiError::bad_request("seconds must be a non-negative integer".to_string()))?;
    c.fail_pod_pulls(
        param(&q, "namespace")?,
        param(&q, "pod")?,
        param(&q, "image")?,
        Duration::from_secs(seconds),
    );
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
        })
    }
}

/// What every controller gets.
pub(crate) struct Ctx {
    pub store: Arc<Store>,
    pub control: Arc<Control>,
    pub kinds: Kinds,
    /// When each simulated container (`uid/name/restartCount`) started, for readiness.
    pub starts: Mutex<HashMap<String, Instant>>,
}

/// Writes `status` through /status when it differs; a conflict is retried on the next pass.
pub(crate) fn write_status(ctx: &Ctx, rt: &ResourceType, obj: &Value, status: Value) {
    if obj.get("status") == Some(&status) {
        return;
    }
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.insert("status".into(), status);
    }
    if let Err(e) = ctx
        .store
        .update(rt, meta::namespace(obj), meta::name(obj), o, true, false)
        && e.code != 409
        && e.code != 404
    {
        tracing::warn!(name = meta::name(obj), error = %e, "status write failed");
    }
}

/// A reconcile function: one pass over everything, returning when it wants to run again
/// at the latest.
type Reconcile = fn(&Ctx) -> Option<Instant>;

/// Starts the simulation tasks.
pub(crate) fn spawn(
    store: Arc<Store>,
    control: Arc<Control>,
    nodes: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
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
        starts: Mutex::default(),
    });
    node::register(&ctx, nodes);
    let loops: [(&'static str, Reconcile); 7] = [
        ("nodes", node::reconcile),
        ("scheduler", scheduler::reconcile),
        ("kubelet", kubelet::reconcile),
        ("statefulset", statefulset::reconcile),
        ("replicaset", replicaset::reconcile),
        ("deployment", deployment::reconcile),
        ("disruption", disruption::reconcile),
    ];
    loops
        .into_iter()
        .map(|(name, f)| tokio::spawn(run(ctx.clone(), name, f, stop.clone())))
        .collect()
}

/// Runs a reconcile function on every change (batched), on pokes, and when it asks to.
async fn run(
    ctx: Arc<Ctx>,
    name: &'static str,
    reconcile: Reconcile,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut rx = ctx.store.subscribe();
    let resync = Duration::from_secs(5);
    loop {
        let began = Instant::now();
        let next = {
            let _span = tracing::trace_span!("bosun.cluster.sim", controller = name).entered();
            reconcile(&ctx)
        };
        // A pass scans every object: under a stream of writes, wait twice as long as the
        // pass took, so the controllers never take more than a third of the time.
        let pause = (began.elapsed() * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
        let deadline = next.unwrap_or_else(|| Instant::now() + resync);
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep_until(deadline) => {}
            () = ctx.control.poke.notified() => {}
            r = rx.recv() => match r {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
        }
        // Let a burst of writes land, then do one pass for all of them.
        tokio::time::sleep(pause).await;
        loop {
            match rx.try_recv() {
                Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => return,
            }
        }
    }
}

/// Whether `owner` is a controller owner reference of `obj`.
pub(crate) fn owned_by(obj: &Value, owner: &Value) -> bool {
    let uid = meta::uid_of(owner);
    meta::owner_uids(obj).iter().any(|u| u == uid)
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

/// `spec.replicas` (default 1).
pub(crate) fn replicas(obj: &Value) -> usize {
    meta::path(obj, "spec.replicas")
        .and_then(Value::as_u64)
        .unwrap_or(1) as usize
}
