//! The kubelet of every simulated node: runs pods bound to it.
//!
//! A new pod's containers start after the pod start delay (sandbox, volumes; zero by
//! default), with no image pull time; a container is ready after the start-up delay, a
//! pod is Ready when all its containers are and all its readiness gates are True. Changing
//! a running container's image restarts only that container (restartCount + 1, same pod
//! uid): the in-place update path. Init containers are treated as already completed;
//! probes are not run.
//!
//! A stopped kubelet (see `Control::stop_kubelet`) leaves its pods alone. After a node's
//! reboot (a new `bootID`) every container of its pods restarts. A container in a crash
//! loop (`Control::crash_loop`) runs for the start-up delay, never ready, exits with code
//! 1, and waits in `CrashLoopBackOff` (10 s, doubling up to 300 s; the first restart is
//! at once, as the kubelet's), with a `BackOff` warning Event on the pod each time.
//! A Terminating pod whose node is Ready is ended at once (the kubelet's final delete).

use super::scheduler::set_condition;
use super::{Ctx, Interest, Wake};
use crate::meta;
use crate::store::{Event, EventKind};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// What the kubelets keep between passes.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// What the containers' runs were, by pod uid first.
    runs: Runs,
    /// What was computed for each pod, by uid.
    seen: HashMap<String, Seen>,
    /// Pods whose status changes by itself at an instant (a container becomes ready, a
    /// pull fault ends): `(when, namespace, name)`.
    timers: BTreeSet<(Instant, String, String)>,
    /// Pods deleted with containers running, whose `Killing` Events are due.
    killed: Vec<Arc<Value>>,
}

/// Deleted pods kept for their `Killing` Events at most, between two passes.
const MAX_KILLED: usize = 10_000;

/// What the kubelet keeps of the containers' runs; every key starts with the pod's uid.
/// Entries are made once (`or_insert`), so computing a status again after a failed write
/// gives the same status.
#[derive(Debug, Default)]
struct Runs {
    /// When each simulated sandbox (`uid/sandbox`) and container
    /// (`uid/name/restartCount`) started, for readiness.
    starts: HashMap<String, Instant>,
    /// The node's bootID each container run (`uid/name/restartCount`) started under: a
    /// run of an older boot restarts.
    boots: HashMap<String, String>,
    /// The restart count of each crash-looping container (`uid/name`) when its loop began.
    loop_base: HashMap<String, u64>,
    /// When each crash-looping container run (`uid/name/restartCount`) that exited starts
    /// again.
    retries: HashMap<String, Instant>,
}

impl Runs {
    /// Forgets the pods that are gone.
    fn retain(&mut self, uids: &HashSet<&str>) {
        let keep = |k: &String| uids.contains(k.split('/').next().unwrap_or(""));
        self.starts.retain(|k, _| keep(k));
        self.boots.retain(|k, _| keep(k));
        self.loop_base.retain(|k, _| keep(k));
        self.retries.retain(|k, _| keep(k));
    }
}

/// What the kubelet computed for a pod: while the pod, the faults and the clock have not
/// moved past it, computing again gives the same status.
#[derive(Debug)]
struct Seen {
    /// The pod's resourceVersion after the kubelet's own write (or as read).
    resource_version: String,
    generation: u64,
    due: Option<Instant>,
}

/// The kubelets care about pods bound to a node; a node coming or going changes which
/// pods they run.
pub(crate) fn interest(ctx: &Ctx, e: &Event) -> Interest {
    if e.key == ctx.kinds.pods.storage_key() {
        if e.kind == EventKind::Deleted && has_running(&e.object) {
            let mut state = ctx.kubelet.lock().unwrap_or_else(PoisonError::into_inner);
            if state.killed.len() < MAX_KILLED {
                state.killed.push(e.object.clone());
            }
            return Interest::Key(String::new(), String::new());
        }
        if e.kind == EventKind::Deleted || meta::str_at(&e.object, "spec.nodeName").is_empty() {
            return Interest::Ignore;
        }
        return Interest::Key(
            meta::namespace(&e.object).to_string(),
            meta::name(&e.object).to_string(),
        );
    }
    if e.key == ctx.kinds.nodes.storage_key() && e.kind != EventKind::Modified {
        return Interest::Full;
    }
    Interest::Ignore
}

/// Brings pods on simulated nodes to their simulated state: every pod on a full pass,
/// otherwise the pods that changed and those whose timer is due.
pub(crate) fn reconcile(
    ctx: &Ctx,
    wake: &Wake,
    _: &mut super::creates::Creates,
) -> Option<Instant> {
    // Simulated nodes, with their bootID.
    let nodes: HashMap<String, String> = ctx
        .store
        .all(&ctx.kinds.nodes.storage_key())
        .iter()
        .filter(|n| super::node::is_simulated(n))
        .map(|n| {
            let boot = meta::str_at(n, "status.nodeInfo.bootID");
            (meta::name(n).to_string(), boot.to_string())
        })
        .collect();
    let mut state = ctx.kubelet.lock().unwrap_or_else(PoisonError::into_inner);
    let state = &mut *state;
    for pod in std::mem::take(&mut state.killed) {
        killing_events(ctx, &pod);
    }
    let now = Instant::now();
    let pods: Vec<Arc<Value>> = if wake.full {
        let pods = ctx.store.all(&ctx.kinds.pods.storage_key());
        let uids: HashSet<&str> = pods.iter().map(|p| meta::uid_of(p)).collect();
        state.runs.retain(&uids);
        state.seen.retain(|uid, _| uids.contains(uid.as_str()));
        state.timers.clear();
        pods
    } else {
        let mut keys: HashSet<(String, String)> = wake.changed.clone();
        while let Some(first) = state.timers.first()
            && first.0 <= now
        {
            if let Some((_, ns, name)) = state.timers.pop_first() {
                keys.insert((ns, name));
            }
        }
        keys.into_iter()
            .filter_map(|(ns, name)| ctx.store.get(&ctx.kinds.pods, &ns, &name).ok())
            .map(Arc::new)
            .collect()
    };
    let delay = ctx.control.config.scaled(ctx.control.config.startup_delay);
    let generation = ctx.control.generation();
    for pod in &pods {
        let node = meta::str_at(pod, "spec.nodeName");
        let Some(boot) = nodes.get(node) else {
            continue;
        };
        if meta::is_deleting(pod) {
            confirm_deletion(ctx, pod);
            continue;
        }
        if matches!(meta::str_at(pod, "status.phase"), "Succeeded" | "Failed")
            || !ctx.control.kubelet_posts(node)
        {
            continue;
        }
        let (ns, name) = (meta::namespace(pod), meta::name(pod));
        let (uid, rv) = (
            meta::uid_of(pod),
            meta::str_at(pod, "metadata.resourceVersion"),
        );
        let due = match state.seen.get(uid) {
            Some(s)
                if s.resource_version == rv
                    && s.generation == generation
                    && s.due.is_none_or(|d| now < d) =>
            {
                s.due
            }
            _ => {
                let mut due = None;
                let status = pod_status(ctx, pod, boot, &mut state.runs, delay, &mut due);
                let backoffs = new_backoffs(pod, &status);
                let starts = new_starts(pod, &status);
                let written = super::write_status(ctx, &ctx.kinds.pods, pod, status);
                if written.is_some() {
                    backoffs
                        .iter()
                        .for_each(|c| backoff_event(ctx, pod, node, c));
                    starts
                        .iter()
                        .for_each(|(c, image)| start_events(ctx, pod, node, c, image));
                }
                state.seen.insert(
                    uid.to_string(),
                    Seen {
                        resource_version: written.unwrap_or_else(|| rv.to_string()),
                        generation,
                        due,
                    },
                );
                due
            }
        };
        if let Some(at) = due {
            state.timers.insert((at, ns.to_string(), name.to_string()));
        }
    }
    state.timers.first().map(|t| t.0)
}

/// Ends a Terminating pod in its grace period once its node's kubelet runs and the node
/// is Ready: the kubelet's final delete (grace 0, on the pod's uid).
fn confirm_deletion(ctx: &Ctx, pod: &Value) {
    let node = meta::str_at(pod, "spec.nodeName");
    let in_grace = meta::path(pod, "metadata.deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|g| g > 0);
    if !in_grace || !ctx.control.kubelet_up(node) || !ctx.control.node_ready(node) {
        return;
    }
    let opts = crate::store::DeleteOptions {
        grace_period_seconds: Some(0),
        uid: Some(meta::uid_of(pod).to_string()),
        ..Default::default()
    };
    let (ns, name) = (meta::namespace(pod), meta::name(pod));
    if let Err(e) = ctx.store.delete(&ctx.kinds.pods, ns, name, &opts) {
        tracing::debug!(namespace = ns, pod = name, error = %e, "final delete failed");
    }
}

/// Whether a pod on a node has a container running.
fn has_running(pod: &Value) -> bool {
    !meta::str_at(pod, "spec.nodeName").is_empty()
        && previous_statuses(pod)
            .values()
            .any(|c| meta::path(c, "state.running").is_some())
}

/// The kubelet's `Killing` Events of a deleted pod's running containers.
fn killing_events(ctx: &Ctx, pod: &Value) {
    let node = meta::str_at(pod, "spec.nodeName");
    for c in previous_statuses(pod)
        .values()
        .filter(|c| meta::path(c, "state.running").is_some())
    {
        let cname = meta::str_at(c, "name");
        let message = format!("Stopping container {cname}");
        kubelet_event(ctx, pod, node, cname, "Killing", &message);
    }
}

/// The containers of `status` that have started a new run since the pod's last status
/// (a new `containerID`, running): `(name, image)`.
fn new_starts(pod: &Value, status: &Value) -> Vec<(String, String)> {
    let old = previous_statuses(pod);
    meta::path(status, "containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| meta::path(c, "state.running").is_some())
        .filter(|c| {
            old.get(meta::str_at(c, "name"))
                .is_none_or(|o| o.get("containerID") != c.get("containerID"))
        })
        .map(|c| {
            (
                meta::str_at(c, "name").to_string(),
                meta::str_at(c, "image").to_string(),
            )
        })
        .collect()
}

/// The kubelet's `Pulled`, `Created` and `Started` Events of a container run.
fn start_events(ctx: &Ctx, pod: &Value, node: &str, container: &str, image: &str) {
    let notes = [
        (
            "Pulled",
            format!("Container image \"{image}\" already present on machine"),
        ),
        ("Created", format!("Created container: {container}")),
        ("Started", format!("Started container {container}")),
    ];
    for (reason, message) in &notes {
        kubelet_event(ctx, pod, node, container, reason, message);
    }
}

/// A Normal Event of the kubelet about a container of a pod.
fn kubelet_event(ctx: &Ctx, pod: &Value, node: &str, container: &str, reason: &str, message: &str) {
    super::events::record(
        ctx,
        pod,
        &super::events::Note {
            type_: "Normal",
            reason,
            message,
            component: "kubelet",
            host: node,
            field_path: &format!("spec.containers{{{container}}}"),
        },
    );
}

/// The containers of `status` that have just gone into `CrashLoopBackOff` (not in it in
/// the pod's last status at this restart count).
fn new_backoffs(pod: &Value, status: &Value) -> Vec<String> {
    let old = previous_statuses(pod);
    let backing_off = |c: &Value| meta::str_at(c, "state.waiting.reason") == "CrashLoopBackOff";
    meta::path(status, "containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| backing_off(c))
        .filter(|c| {
            old.get(meta::str_at(c, "name"))
                .is_none_or(|o| !backing_off(o) || o.get("restartCount") != c.get("restartCount"))
        })
        .map(|c| meta::str_at(c, "name").to_string())
        .collect()
}

/// The kubelet's `BackOff` warning Event on a pod whose container backs off; repeats
/// of it count up (`count`, `lastTimestamp`), as the kubelet's event recorder does.
fn backoff_event(ctx: &Ctx, pod: &Value, node: &str, container: &str) {
    let message = format!(
        "Back-off restarting failed container {container} in pod {}",
        pod_ref(pod)
    );
    super::events::record(
        ctx,
        pod,
        &super::events::Note {
            type_: "Warning",
            reason: "BackOff",
            message: &message,
            component: "kubelet",
            host: node,
            field_path: &format!("spec.containers{{{container}}}"),
        },
    );
}

/// A pod as the kubelet names it in messages: `name_namespace(uid)`.
fn pod_ref(pod: &Value) -> String {
    format!(
        "{}_{}({})",
        meta::name(pod),
        meta::namespace(pod),
        meta::uid_of(pod)
    )
}

/// One pod as the kubelet sees it in one pass: who it is and the clock, read once.
struct Pass<'a> {
    ctx: &'a Ctx,
    ns: &'a str,
    name: &'a str,
    uid: &'a str,
    /// The node's bootID.
    boot: &'a str,
    now: Instant,
    /// How long a started container takes to become ready.
    delay: Duration,
    node_ready: bool,
    /// For a pod that runs to completion (`restartPolicy` `Never` or `OnFailure`): how
    /// long its containers run (real time) and their exit code.
    completes: Option<(Duration, i64)>,
    /// `restartPolicy: OnFailure`: a container that exits non-zero starts again.
    on_failure: bool,
}

/// What the kubelet reports for one container, and what it means for the pod.
struct Container {
    status: Value,
    running: bool,
    ready: bool,
    /// The exit code of a container that ran to completion.
    exit: Option<i64>,
}

impl Container {
    /// A container that has not started: it holds the pod in Pending and not Ready.
    fn waiting(status: Value) -> Self {
        Self {
            status,
            running: false,
            ready: false,
            exit: None,
        }
    }
}

/// The running state a container keeps, or starts afresh when it restarts.
struct Run {
    restarts: u64,
    last_state: Value,
    started_at: String,
    /// Started in this pass (first start or restart), so not yet up for the start-up delay.
    fresh: bool,
}

/// The status the kubelet reports for a pod on a simulated node; `next` is lowered to the
/// instant this status changes by itself (sandbox ready, container ready, pull fault ends).
fn pod_status(
    ctx: &Ctx,
    pod: &Value,
    boot: &str,
    runs: &mut Runs,
    delay: Duration,
    next: &mut Option<Instant>,
) -> Value {
    let node = meta::str_at(pod, "spec.nodeName");
    let p = Pass {
        ctx,
        ns: meta::namespace(pod),
        name: meta::name(pod),
        uid: meta::uid_of(pod),
        boot,
        now: Instant::now(),
        delay,
        node_ready: ctx.control.node_ready(node),
        completes: run_to_completion(ctx, pod),
        on_failure: meta::str_at(pod, "spec.restartPolicy") == "OnFailure",
    };
    let old = previous_statuses(pod);
    let creating = sandbox_pending(&p, &old, &mut runs.starts, next);
    let (mut all_running, mut all_ready) = (true, true);
    let (mut all_exited, mut all_zero) = (true, true);
    let mut statuses = Vec::new();
    for c in meta::path(pod, "spec.containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let container = if creating {
            Container::waiting(creating_status(
                meta::str_at(c, "name"),
                meta::str_at(c, "image"),
            ))
        } else {
            container_status(&p, c, old.get(meta::str_at(c, "name")), runs, next)
        };
        all_running &= container.running || container.exit.is_some();
        all_ready &= container.ready;
        all_exited &= container.exit.is_some();
        all_zero &= container.exit.is_none_or(|c| c == 0);
        statuses.push(container.status);
    }
    let mut status = pod.get("status").cloned().unwrap_or(json!({}));
    let gates_ok = readiness_gates_ok(pod, &status);
    set_conditions(&mut status, all_ready, gates_ok);
    let phase = match (all_exited && !statuses.is_empty(), all_zero, all_running) {
        (true, true, _) => "Succeeded",
        (true, false, _) => "Failed",
        (false, _, true) => "Running",
        (false, _, false) => "Pending",
    };
    set_fields(&mut status, phase, statuses, node, p.uid);
    status
}

/// How long the containers of a pod with `restartPolicy` `Never` or `OnFailure` run
/// (real time) and the code they exit with: [`super::Config::run_time`] and 0, or the
/// pod's `sim.bosun.dev/run-seconds` and `sim.bosun.dev/exit-code` annotations. `None`
/// for other pods: their containers run until stopped.
fn run_to_completion(ctx: &Ctx, pod: &Value) -> Option<(Duration, i64)> {
    if !matches!(
        meta::str_at(pod, "spec.restartPolicy"),
        "Never" | "OnFailure"
    ) {
        return None;
    }
    let annotation = |k: &str| {
        meta::path(pod, "metadata.annotations")
            .and_then(|a| a.get(k))
            .and_then(Value::as_str)
            .map(str::trim)
    };
    let config = &ctx.control.config;
    let run = annotation(RUN_SECONDS)
        .and_then(|s| s.parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(config.run_time);
    let code = annotation(EXIT_CODE)
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0);
    Some((config.scaled(run), code))
}

/// The annotation of a pod (template) setting how long its containers run, in simulated
/// seconds, when its `restartPolicy` is `Never` or `OnFailure`.
pub(crate) const RUN_SECONDS: &str = "sim.bosun.dev/run-seconds";
/// The annotation of a pod (template) setting its containers' exit code.
pub(crate) const EXIT_CODE: &str = "sim.bosun.dev/exit-code";

/// A container that ran to completion, as it last was.
fn exited(prev: &Value) -> Option<Container> {
    let code = meta::path(prev, "state.terminated.exitCode")?.as_i64()?;
    Some(Container {
        status: prev.clone(),
        running: false,
        ready: false,
        exit: Some(code),
    })
}

/// The container of a pod that runs to completion, `run` started at `started`: running
/// until its run time is up, then terminated with its exit code (or, under `OnFailure`
/// with a non-zero code, started again: restartCount + 1).
fn complete(
    p: &Pass<'_>,
    c: Container,
    run: &Run,
    started: Instant,
    runs: &mut Runs,
    next: &mut Option<Instant>,
) -> Container {
    let Some((run_for, code)) = p.completes else {
        return c;
    };
    let ends = started + run_for;
    if p.now < ends {
        wake_at(next, ends);
        return c;
    }
    let (cname, image) = (
        meta::str_at(&c.status, "name"),
        meta::str_at(&c.status, "image"),
    );
    let terminated = json!({
        "exitCode": code,
        "reason": if code == 0 { "Completed" } else { "Error" },
        "startedAt": run.started_at, "finishedAt": meta::now(),
    });
    if code != 0 && p.on_failure {
        let again = Run {
            restarts: run.restarts.saturating_add(1),
            last_state: json!({"terminated": terminated}),
            started_at: meta::now(),
            fresh: true,
        };
        let key = format!("{}/{cname}/{}", p.uid, again.restarts);
        runs.starts.entry(key.clone()).or_insert(p.now);
        runs.boots.entry(key).or_insert_with(|| p.boot.to_string());
        wake_at(next, p.now + run_for);
        return Container {
            status: running_status(p.uid, cname, image, &again, false),
            running: true,
            ready: false,
            exit: None,
        };
    }
    let mut status = c.status;
    status["ready"] = json!(false);
    status["started"] = json!(false);
    status["state"] = json!({"terminated": terminated});
    Container {
        status,
        running: false,
        ready: false,
        exit: Some(code),
    }
}

/// Lowers `next` to `at`: the earliest instant some status changes by itself.
fn wake_at(next: &mut Option<Instant>, at: Instant) {
    *next = Some(next.map_or(at, |n| n.min(at)));
}

/// The container statuses last written, by container name: restarts count from them.
fn previous_statuses(pod: &Value) -> HashMap<String, Value> {
    meta::path(pod, "status.containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| (meta::str_at(c, "name").to_string(), c.clone()))
        .collect()
}

/// Whether a new pod still waits for its sandbox and volumes (the pod start delay) before
/// any container starts. A pod whose containers have run is past that.
fn sandbox_pending(
    p: &Pass<'_>,
    old: &HashMap<String, Value>,
    starts: &mut HashMap<String, Instant>,
    next: &mut Option<Instant>,
) -> bool {
    let config = &p.ctx.control.config;
    let setup = config.scaled(config.pod_start_delay);
    let ran = old.values().any(|c| {
        meta::path(c, "state.running").is_some() || meta::path(c, "lastState.terminated").is_some()
    });
    if setup.is_zero() || ran {
        return false;
    }
    let bound = *starts.entry(format!("{}/sandbox", p.uid)).or_insert(p.now);
    let at = bound + setup;
    if p.now < at {
        wake_at(next, at);
    }
    p.now < at
}

/// A container once the sandbox is up: waiting on a failed pull (a bad image or a
/// transient pull fault), in a crash loop, otherwise running.
fn container_status(
    p: &Pass<'_>,
    c: &Value,
    prev: Option<&Value>,
    runs: &mut Runs,
    next: &mut Option<Instant>,
) -> Container {
    let (cname, image) = (meta::str_at(c, "name"), meta::str_at(c, "image"));
    if p.completes.is_some()
        && let Some(done) = prev.and_then(exited)
    {
        return done;
    }
    let control = &p.ctx.control;
    let transient = control.pod_pull_fails(p.ns, p.name, image, p.now);
    if let Some(until) = transient {
        wake_at(next, until);
    }
    if control.image_fails(image) || transient.is_some() {
        return Container::waiting(pull_failed_status(cname, image, restart_count(prev)));
    }
    if control.crash_looping(p.uid, cname) {
        return crash_loop(p, cname, image, prev, runs, next);
    }
    runs.loop_base.remove(&format!("{}/{cname}", p.uid));
    let was_running = prev.is_some_and(|s| meta::path(s, "state.running").is_some());
    let same_image = prev.is_some_and(|s| meta::str_at(s, "image") == image);
    let exit = if !was_running {
        None
    } else if !same_image {
        Some(REPLACED)
    } else if rebooted(p, cname, prev, runs) {
        Some(REBOOTED)
    } else if control.take_crash(p.ns, p.name, cname) {
        Some(CRASHED)
    } else {
        None
    };
    let mut run = next_run(prev, was_running, exit);
    if waiting_reason(prev) == "CrashLoopBackOff" {
        // Out of a crash loop ended meanwhile: this start is a restart.
        run.restarts = run.restarts.saturating_add(1);
    }
    let key = format!("{}/{cname}/{}", p.uid, run.restarts);
    runs.boots
        .entry(key.clone())
        .or_insert_with(|| p.boot.to_string());
    let ready = container_ready(p, &mut runs.starts, &key, run.fresh, next);
    let started = runs.starts.get(&key).copied().unwrap_or(p.now);
    let c = Container {
        status: running_status(p.uid, cname, image, &run, ready),
        running: true,
        ready,
        exit: None,
    };
    complete(p, c, &run, started, runs, next)
}

/// How a running container ended, when it restarts.
#[derive(Debug, Clone, Copy)]
struct Exit {
    code: i64,
    reason: &'static str,
}

/// A crash (a fault): exit code 1.
const CRASHED: Exit = Exit {
    code: 1,
    reason: "Error",
};
/// Replaced by a new image.
const REPLACED: Exit = Exit {
    code: 0,
    reason: "Completed",
};
/// Killed by a reboot of its node, as the runtime reports it after the boot.
const REBOOTED: Exit = Exit {
    code: 255,
    reason: "Unknown",
};

/// Whether the container's current run started under an older boot of its node.
fn rebooted(p: &Pass<'_>, cname: &str, prev: Option<&Value>, runs: &mut Runs) -> bool {
    let key = format!("{}/{cname}/{}", p.uid, restart_count(prev));
    let boot = runs.boots.entry(key).or_insert_with(|| p.boot.to_string());
    boot != p.boot
}

/// The reason a container waits (empty when it does not).
fn waiting_reason(status: Option<&Value>) -> &str {
    status.map_or("", |s| meta::str_at(s, "state.waiting.reason"))
}

/// A container in a crash loop: running (never ready) for the start-up delay, then
/// exited with code 1 and waiting in `CrashLoopBackOff` for its back-off, then running
/// again (restartCount + 1). An image change restarts it at once; it still crashes.
fn crash_loop(
    p: &Pass<'_>,
    cname: &str,
    image: &str,
    prev: Option<&Value>,
    runs: &mut Runs,
    next: &mut Option<Instant>,
) -> Container {
    let restarts = restart_count(prev);
    let base = *runs
        .loop_base
        .entry(format!("{}/{cname}", p.uid))
        .or_insert(restarts);
    let back_off = back_off(restarts.saturating_sub(base));
    let run_key = format!("{}/{cname}/{restarts}", p.uid);
    let same_image = prev.is_some_and(|s| meta::str_at(s, "image") == image);
    let last_state = prev
        .and_then(|s| s.get("lastState"))
        .cloned()
        .unwrap_or(json!({}));
    let again = restarts.saturating_add(1);
    if let Some(prev) = prev.filter(|s| meta::path(s, "state.running").is_some()) {
        let started_at = meta::str_at(prev, "state.running.startedAt");
        let started = *runs
            .starts
            .entry(run_key.clone())
            .or_insert_with(|| p.now.checked_sub(p.delay).unwrap_or(p.now));
        let exits_at = started + p.delay;
        if p.now < exits_at && same_image {
            wake_at(next, exits_at);
            let run = Run {
                restarts,
                last_state,
                started_at: started_at.to_string(),
                fresh: false,
            };
            return looping(running_status(p.uid, cname, image, &run, false));
        }
        let exited = json!({"terminated": {
            "exitCode": 1, "reason": "Error",
            "startedAt": started_at, "finishedAt": meta::now(),
        }});
        if back_off.is_zero() || !same_image {
            return start_looping(p, cname, image, again, exited, runs, next);
        }
        let retry = *runs
            .retries
            .entry(run_key)
            .or_insert_with(|| p.now + p.ctx.control.config.scaled(back_off));
        wake_at(next, retry);
        return looping(backoff_status(p, cname, image, restarts, back_off, exited));
    }
    if waiting_reason(prev) == "CrashLoopBackOff" {
        // After a server restart the back-off is over.
        let retry = *runs.retries.entry(run_key).or_insert(p.now);
        if p.now < retry && same_image {
            wake_at(next, retry);
            return looping(backoff_status(
                p, cname, image, restarts, back_off, last_state,
            ));
        }
        return start_looping(p, cname, image, again, last_state, runs, next);
    }
    // Not started yet: its first run.
    start_looping(p, cname, image, restarts, last_state, runs, next)
}

/// A crash-looping container's status: never ready, but it has run, so the pod is
/// Running.
fn looping(status: Value) -> Container {
    Container {
        status,
        running: true,
        ready: false,
        exit: None,
    }
}

/// A crash-looping container starting run `restarts`; it exits after the start-up delay.
fn start_looping(
    p: &Pass<'_>,
    cname: &str,
    image: &str,
    restarts: u64,
    last_state: Value,
    runs: &mut Runs,
    next: &mut Option<Instant>,
) -> Container {
    let started = *runs
        .starts
        .entry(format!("{}/{cname}/{restarts}", p.uid))
        .or_insert(p.now);
    wake_at(next, started + p.delay);
    let run = Run {
        restarts,
        last_state,
        started_at: meta::now(),
        fresh: true,
    };
    looping(running_status(p.uid, cname, image, &run, false))
}

/// The kubelet's back-off before restart `failures + 1` of a crashed container: none
/// for the first, then 10 s doubling up to 300 s (simulated time).
fn back_off(failures: u64) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u64
        .checked_shl((failures - 1).min(63) as u32)
        .unwrap_or(u64::MAX);
    Duration::from_secs(10u64.saturating_mul(factor).min(300))
}

/// A duration as Go prints it (`10s`, `1m20s`, `5m0s`), as the kubelet's messages show.
fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// A crashed container waiting out its back-off.
fn backoff_status(
    p: &Pass<'_>,
    cname: &str,
    image: &str,
    restarts: u64,
    back_off: Duration,
    last_state: Value,
) -> Value {
    let message = format!(
        "back-off {} restarting failed container={cname} pod={}_{}({})",
        go_duration(back_off),
        p.name,
        p.ns,
        p.uid
    );
    json!({
        "name": cname, "image": image, "imageID": format!("sim://{image}"),
        "containerID": format!("sim://{}/{cname}/{restarts}", p.uid),
        "ready": false, "started": false, "restartCount": restarts,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": message}},
        "lastState": last_state,
    })
}

/// The restarts recorded in the container's last status.
fn restart_count(prev: Option<&Value>) -> u64 {
    prev.and_then(|p| p.get("restartCount"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// The running state of a container: kept as it was, started when it was not running, or
/// restarted when it ended (`exit`: its image changed, it crashed, its node rebooted).
fn next_run(prev: Option<&Value>, was_running: bool, exit: Option<Exit>) -> Run {
    let mut run = Run {
        restarts: restart_count(prev),
        last_state: prev
            .and_then(|p| p.get("lastState"))
            .cloned()
            .unwrap_or(json!({})),
        started_at: prev
            .map(|p| meta::str_at(p, "state.running.startedAt").to_string())
            .unwrap_or_default(),
        fresh: !was_running,
    };
    if let Some(exit) = exit.filter(|_| was_running) {
        // In place: this container alone restarts, the pod keeps its uid.
        // The count comes from the pod's status, which a client may write.
        run.restarts = run.restarts.saturating_add(1);
        run.last_state = json!({"terminated": {
            "exitCode": exit.code,
            "reason": exit.reason,
            "startedAt": run.started_at, "finishedAt": meta::now(),
        }});
        run.fresh = true;
    }
    if run.fresh {
        run.started_at = meta::now();
    }
    run
}

/// Whether a started container is ready: its node is Ready and it has been up for the
/// start-up delay. `key` names this run of the container (`uid/name/restartCount`).
fn container_ready(
    p: &Pass<'_>,
    starts: &mut HashMap<String, Instant>,
    key: &str,
    fresh: bool,
    next: &mut Option<Instant>,
) -> bool {
    // After a server restart a running container has no start instant: it has been up
    // for long enough.
    let started = *starts.entry(key.to_string()).or_insert_with(|| {
        if fresh {
            p.now
        } else {
            p.now.checked_sub(p.delay).unwrap_or(p.now)
        }
    });
    let ready_at = started + p.delay;
    let ready = p.node_ready && p.now >= ready_at;
    if p.node_ready && !ready {
        wake_at(next, ready_at);
    }
    ready
}

/// A container whose pod sandbox is still being set up.
fn creating_status(cname: &str, image: &str) -> Value {
    json!({
        "name": cname, "image": image, "imageID": "", "ready": false, "started": false,
        "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}},
    })
}

/// A container whose image cannot be pulled (a simulated fault).
fn pull_failed_status(cname: &str, image: &str, restarts: u64) -> Value {
    json!({
        "name": cname, "image": image, "imageID": "", "ready": false, "started": false,
        "restartCount": restarts,
        "state": {"waiting": {"reason": "ErrImagePull",
            "message": format!("simulated fault: failed to pull image \"{image}\"")}},
    })
}

/// A running container; its ids name the pod, the container and the run.
fn running_status(uid: &str, cname: &str, image: &str, run: &Run, ready: bool) -> Value {
    json!({
        "name": cname, "image": image, "imageID": format!("sim://{image}"),
        "containerID": format!("sim://{uid}/{cname}/{}", run.restarts),
        "ready": ready, "started": true, "restartCount": run.restarts,
        "state": {"running": {"startedAt": run.started_at}},
        "lastState": run.last_state,
    })
}

/// Whether every readiness gate of the pod names a condition that is True in `status`
/// (set by whoever owns the gate, not by the kubelet).
fn readiness_gates_ok(pod: &Value, status: &Value) -> bool {
    meta::path(pod, "spec.readinessGates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .all(|g| {
            let t = meta::str_at(g, "conditionType");
            meta::path(status, "conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        meta::str_at(c, "type") == t && meta::str_at(c, "status") == "True"
                    })
                })
        })
}

/// The conditions the kubelet owns: the pod is Ready when all its containers are and all
/// its readiness gates are True.
fn set_conditions(status: &mut Value, all_ready: bool, gates_ok: bool) {
    let tf = |b: bool| if b { "True" } else { "False" };
    set_condition(status, "PodScheduled", "True", "");
    set_condition(status, "Initialized", "True", "");
    set_condition(
        status,
        "ContainersReady",
        tf(all_ready),
        if all_ready { "" } else { "ContainersNotReady" },
    );
    let ready = all_ready && gates_ok;
    set_condition(
        status,
        "Ready",
        tf(ready),
        if ready {
            ""
        } else if all_ready {
            "ReadinessGatesNotReady"
        } else {
            "ContainersNotReady"
        },
    );
}

/// Phase, container statuses, start time, QoS class and the addresses the simulated
/// network gives the pod (a pod keeps its IP once it has one).
fn set_fields(status: &mut Value, phase: &str, statuses: Vec<Value>, node: &str, uid: &str) {
    let Some(m) = status.as_object_mut() else {
        return;
    };
    m.insert("phase".into(), json!(phase));
    m.insert("containerStatuses".into(), Value::Array(statuses));
    m.entry("startTime").or_insert_with(|| json!(meta::now()));
    m.insert("qosClass".into(), json!("BestEffort"));
    let node_idx = node_index(node);
    let host = host_ip(node_idx);
    m.insert("hostIP".into(), json!(host));
    m.insert("hostIPs".into(), json!([{"ip": host}]));
    if !m.contains_key("podIP") {
        let ip = pod_ip(uid, node_idx);
        m.insert("podIP".into(), json!(ip));
        m.insert("podIPs".into(), json!([{"ip": ip}]));
    }
}

/// The index at the end of a simulated node's name (`sim-node-3`), 0 for other names.
fn node_index(node: &str) -> u64 {
    node.rsplit('-')
        .next()
        .and_then(|i| i.parse::<u64>().ok())
        .unwrap_or(0)
}

/// The node's InternalIP, as `node::register` gives it.
fn host_ip(node_idx: u64) -> String {
    format!("10.0.{}.{}", node_idx / 250, node_idx % 250 + 1)
}

/// A pod IP in the node's pod CIDR, stable for a uid.
fn pod_ip(uid: &str, node_idx: u64) -> String {
    let h = uid
        .bytes()
        .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("10.244.{}.{}", node_idx % 256, h % 253 + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_count_written_by_a_client_saturates() {
        let prev = json!({"restartCount": u64::MAX, "state": {"running": {}}});
        let run = next_run(Some(&prev), true, Some(REPLACED));
        assert_eq!(run.restarts, u64::MAX);
        assert!(run.fresh);
    }

    #[test]
    fn back_off_doubles_to_five_minutes_and_prints_as_go() {
        let shown: Vec<String> = (0..8).map(|n| go_duration(back_off(n))).collect();
        assert_eq!(
            shown,
            ["0s", "10s", "20s", "40s", "1m20s", "2m40s", "5m0s", "5m0s"]
        );
        assert_eq!(back_off(u64::MAX), Duration::from_secs(300));
    }
}
