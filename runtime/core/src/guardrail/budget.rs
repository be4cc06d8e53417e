//! Disruption budgets: limits on how much of the cluster commands may take out of service
//! at once, judged against the informer cache.
//!
//! The cache lags behind the commands: ten evictions submitted in one reconcile would all
//! see the same, still healthy, workload. So each built-in budget keeps a short-lived
//! record of what it admitted ([`Budget::admitted`]) and counts those objects as already
//! disrupted until the cache shows the change, the executor reports it
//! ([`Budget::settle`]), or [`IN_FLIGHT_TTL`] passes.
//!
//! What disrupts a pod: an eviction, a deletion, a patch that changes its containers'
//! images (the kubelet restarts them in place, see [`disruption`]), and a status patch
//! that sets one of its readiness-gate conditions False (it leaves the endpoints). So a
//! release updating pods in place and a remediation plugin evicting them share one budget.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bosun_host::contract::{Command, ObjectRef, TaintEffect};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// How long an admitted disruption counts while the cache does not show it yet.
pub const IN_FLIGHT_TTL: Duration = Duration::from_secs(30);

/// A read-only view of the informer cache: objects as their JSON text.
pub trait View: Send + Sync {
    /// Every cached object of a kind.
    fn list(&self, api_version: &str, kind: &str) -> Vec<Arc<str>>;

    /// One cached object.
    fn get(&self, r: &ObjectRef) -> Option<Arc<str>>;

    /// The cached objects of a kind in one namespace. The default filters
    /// [`list`](Self::list); a cache with a namespace index should override it.
    fn list_namespaced(&self, api_version: &str, kind: &str, namespace: &str) -> Vec<Arc<str>> {
        #[derive(Deserialize)]
        struct Object {
            #[serde(default)]
            metadata: Meta,
        }
        #[derive(Deserialize, Default)]
        struct Meta {
            namespace: Option<String>,
        }
        self.list(api_version, kind)
            .into_iter()
            .filter(|json| {
                serde_json::from_str::<Object>(json)
                    .is_ok_and(|o| o.metadata.namespace.as_deref() == Some(namespace))
            })
            .collect()
    }
}

/// A disruption budget: refuses commands that would take too much out of service.
pub trait Budget: Send + Sync {
    /// The budget's name (`max-unavailable`), used in refusal messages.
    fn name(&self) -> &str;

    /// Whether `plugin` may run `cmd` now. The message says what would break and the
    /// numbers (it is shown to the plugin and kept in the audit trail).
    fn check(
        &self,
        plugin: &str,
        cmd: &Command,
        view: &dyn View,
        now: Instant,
    ) -> Result<(), String>;

    /// `cmd` passed every guardrail and will be executed: count it from now on, until
    /// the cache shows it. Called right after [`check`](Self::check), under the same lock.
    fn admitted(&self, plugin: &str, cmd: &Command, view: &dyn View, now: Instant) {
        let _ = (plugin, cmd, view, now);
    }

    /// The executor is done with a command on `target` (its effect is in the cache, or it
    /// failed): stop counting it as in flight.
    fn settle(&self, target: &ObjectRef) {
        let _ = target;
    }
}

/// A budget's limit: a number, or a percentage of a workload's pods.
///
/// Written in config as a number (`1`) or a percentage string (`"25%"`), like a
/// Kubernetes int-or-string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// At most this many.
    Count(u32),
    /// At most this percentage, rounded up (as a PodDisruptionBudget does).
    Percent(u32),
}

impl Limit {
    /// The limit for a workload of `total` pods.
    pub fn of(self, total: u32) -> u32 {
        match self {
            Limit::Count(n) => n,
            Limit::Percent(p) => {
                let scaled = u64::from(total) * u64::from(p.min(100));
                u32::try_from(scaled.div_ceil(100)).unwrap_or(u32::MAX)
            }
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Count(n) => write!(f, "{n}"),
            Limit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Limit::Count(n) => serializer.serialize_u32(*n),
            Limit::Percent(_) => serializer.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LimitVisitor;
        impl Visitor<'_> for LimitVisitor {
            type Value = Limit;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of pods (2) or a percentage (\"25%\")")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Limit, E> {
                u32::try_from(v)
                    .map(Limit::Count)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Limit, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("{v} is negative")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Limit, E> {
                let bad = || E::custom(format!("{v:?} is not a number or a percentage"));
                match v.trim().strip_suffix('%') {
                    Some(p) => {
                        let p: u32 = p.trim().parse().map_err(|_| bad())?;
                        if p > 100 {
                            return Err(E::custom(format!("{v:?} is over 100%")));
                        }
                        Ok(Limit::Percent(p))
                    }
                    None => v.trim().parse().map(Limit::Count).map_err(|_| bad()),
                }
            }
        }
        deserializer.deserialize_any(LimitVisitor)
    }
}

/// Until when an admitted disruption counts, besides [`IN_FLIGHT_TTL`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Until {
    /// Only the TTL (or [`Budget::settle`]) ends it.
    Ttl,
    /// The cached pod reports these containers (name, image) running: from then on its
    /// own readiness tells whether it is available.
    Images(ObjectRef, Vec<(String, String)>),
    /// The cached pod shows itself not Ready.
    Unready(ObjectRef),
}

impl Until {
    /// Whether the cache shows the disruption, so it no longer needs counting.
    fn shown(&self, view: &dyn View) -> bool {
        let pod = |r: &ObjectRef| -> Option<serde_json::Value> {
            serde_json::from_str(&view.get(r)?).ok()
        };
        match self {
            Until::Ttl => false,
            Until::Images(r, images) => pod(r).is_some_and(|p| {
                images.iter().all(|(name, image)| {
                    status_images(&p)
                        .iter()
                        .any(|(n, i)| n == name && same_image(i, image))
                })
            }),
            Until::Unready(r) => pod(r)
                .is_some_and(|p| !serde_json::from_value::<PodDoc>(p).is_ok_and(|d| d.ready())),
        }
    }
}

/// The (name, image) of each container status of a pod.
fn status_images(pod: &serde_json::Value) -> Vec<(String, String)> {
    pod.pointer("/status/containerStatuses")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let s = |k: &str| c.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
            (s("name"), s("image"))
        })
        .collect()
}

/// Image references equal up to what container runtimes add when they report them
/// (`docker.io/library/nginx:1.28` for `nginx:1.28`).
fn same_image(a: &str, b: &str) -> bool {
    fn short(i: &str) -> &str {
        let i = i.strip_prefix("docker.io/").unwrap_or(i);
        i.strip_prefix("library/").unwrap_or(i)
    }
    short(a) == short(b)
}

/// Objects admitted for a disruption, by key, with when they were admitted.
#[derive(Debug, Default)]
struct InFlight {
    entries: Mutex<HashMap<String, (Instant, Until)>>,
}

impl InFlight {
    /// The keys of the disruptions still counted: not expired, not shown by the cache.
    fn live(&self, now: Instant, view: &dyn View) -> BTreeSet<String> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|_, (at, until)| {
            now.saturating_duration_since(*at) < IN_FLIGHT_TTL && !until.shown(view)
        });
        entries.keys().cloned().collect()
    }

    fn insert(&self, key: String, now: Instant) {
        self.insert_until(key, now, Until::Ttl);
    }

    fn insert_until(&self, key: String, now: Instant, until: Until) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.insert(key, (now, until));
    }

    fn remove(&self, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.remove(key);
    }
}

// ---- nodes --------------------------------------------------------------------------

/// Refuses to cordon a node, or to give it a `NoSchedule`/`NoExecute` taint, when `n`
/// other nodes are already unschedulable (`spec.unschedulable`) or being taken out by
/// admitted commands.
#[derive(Debug)]
pub struct MaxCordonedNodes {
    /// Most nodes out of service at once.
    pub max: u32,
    in_flight: InFlight,
}

impl MaxCordonedNodes {
    /// At most `max` nodes cordoned at once.
    pub fn new(max: u32) -> Self {
        MaxCordonedNodes {
            max,
            in_flight: InFlight::default(),
        }
    }

    /// The node a command takes out of service, if it does.
    fn target(cmd: &Command) -> Option<&str> {
        match cmd {
            Command::Cordon(node) => Some(node),
            Command::Taint(t)
                if matches!(
                    t.taint.effect,
                    TaintEffect::NoSchedule | TaintEffect::NoExecute
                ) =>
            {
                Some(&t.node)
            }
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct NodeDoc {
    metadata: NameOnly,
    #[serde(default)]
    spec: NodeSpec,
}

#[derive(Deserialize)]
struct NameOnly {
    name: String,
}

#[derive(Deserialize, Default)]
struct NodeSpec {
    #[serde(default)]
    unschedulable: bool,
}

impl Budget for MaxCordonedNodes {
    fn name(&self) -> &str {
        "max-cordoned-nodes"
    }

    fn check(
        &self,
        _plugin: &str,
        cmd: &Command,
        view: &dyn View,
        now: Instant,
    ) -> Result<(), String> {
        let Some(target) = Self::target(cmd) else {
            return Ok(());
        };
        let mut out = self.in_flight.live(now, view);
        for json in view.list("v1", "Node") {
            if let Ok(node) = serde_json::from_str::<NodeDoc>(&json)
                && node.spec.unschedulable
            {
                out.insert(node.metadata.name);
            }
        }
        out.remove(target);
        let count = u32::try_from(out.len()).unwrap_or(u32::MAX);
        if count >= self.max {
            let names: Vec<&str> = out.iter().map(String::as_str).take(5).collect();
            let more = if out.len() > names.len() { ", ..." } else { "" };
            return Err(format!(
                "{count} nodes are already unschedulable or being cordoned ({}{more}), \
                 the limit is {}; refusing to {} node {target}",
                names.join(", "),
                self.max,
                cmd.name(),
            ));
        }
        Ok(())
    }

    fn admitted(&self, _plugin: &str, cmd: &Command, _view: &dyn View, now: Instant) {
        if let Some(node) = Self::target(cmd) {
            self.in_flight.insert(node.to_owned(), now);
        } else if let Command::Uncordon(node) = cmd {
            self.in_flight.remove(node);
        }
    }

    fn settle(&self, target: &ObjectRef) {
        if target.kind == "Node" {
            self.in_flight.remove(&target.name);
        }
    }
}

// ---- pods ---------------------------------------------------------------------------

/// A command that takes a pod out of service.
#[derive(Debug)]
struct Disruption<'c> {
    /// The pod.
    target: &'c ObjectRef,
    /// Until when it counts once admitted.
    until: Until,
    /// `evicting`, `deleting`, ... (for messages).
    verb: &'static str,
}

fn is_pod(r: &ObjectRef) -> bool {
    r.kind == "Pod" && r.api_version == "v1" && r.namespace.is_some()
}

/// The pod `cmd` takes out of service, if it does: an eviction, a deletion, a patch that
/// changes a container's image (judged against the cached pod), or a status patch that
/// sets a condition the pod declares as a readiness gate to False.
fn disruption<'c>(cmd: &'c Command, view: &dyn View) -> Option<Disruption<'c>> {
    match cmd {
        Command::Evict(r) | Command::Delete(r) if is_pod(r) => Some(Disruption {
            target: r,
            until: Until::Ttl,
            verb: if matches!(cmd, Command::Delete(_)) {
                "deleting"
            } else {
                "evicting"
            },
        }),
        Command::MergePatch(p) | Command::JsonPatch(p) if is_pod(&p.target) => {
            let pod: serde_json::Value = serde_json::from_str(&view.get(&p.target)?).ok()?;
            let patch: serde_json::Value = serde_json::from_str(&p.patch).ok()?;
            let json = matches!(cmd, Command::JsonPatch(_));
            let images = if json {
                json_patch_images(&pod, &patch)
            } else {
                merge_patch_images(&pod, &patch)
            };
            if !images.is_empty() {
                return Some(Disruption {
                    target: &p.target,
                    until: Until::Images(p.target.clone(), images),
                    verb: "patching the images of",
                });
            }
            let gates_off = if json {
                json_patch_gates_off(&pod, &patch)
            } else {
                merge_patch_gates_off(&pod, &patch)
            };
            gates_off.then(|| Disruption {
                target: &p.target,
                until: Until::Unready(p.target.clone()),
                verb: "setting a readiness gate False on",
            })
        }
        _ => None,
    }
}

/// The (name, image) of each container in the pod's spec.
fn spec_images(pod: &serde_json::Value) -> Vec<(String, String)> {
    pod.pointer("/spec/containers")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .map(container_image)
        .collect()
}

fn container_image(c: &serde_json::Value) -> (String, String) {
    let s = |k: &str| c.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    (s("name"), s("image"))
}

/// The containers (name, new image) of `list` whose image differs from the pod's spec.
fn changed(pod: &serde_json::Value, list: &[serde_json::Value]) -> Vec<(String, String)> {
    let have = spec_images(pod);
    list.iter()
        .map(container_image)
        .filter(|(name, image)| {
            !image.is_empty() && !have.iter().any(|(n, i)| n == name && i == image)
        })
        .collect()
}

/// Images a merge patch changes: it replaces `spec.containers` whole.
fn merge_patch_images(pod: &serde_json::Value, patch: &serde_json::Value) -> Vec<(String, String)> {
    patch
        .pointer("/spec/containers")
        .and_then(serde_json::Value::as_array)
        .map(|list| changed(pod, list))
        .unwrap_or_default()
}

/// Images a JSON patch changes: `add`/`replace` of `/spec/containers`,
/// `/spec/containers/N` or `/spec/containers/N/image`.
fn json_patch_images(pod: &serde_json::Value, patch: &serde_json::Value) -> Vec<(String, String)> {
    let have = spec_images(pod);
    let mut out = Vec::new();
    for op in patch.as_array().into_iter().flatten() {
        if !matches!(op["op"].as_str(), Some("add" | "replace")) {
            continue;
        }
        let Some(rest) = op["path"]
            .as_str()
            .and_then(|p| p.strip_prefix("/spec/containers"))
        else {
            continue;
        };
        let value = &op["value"];
        let parts: Vec<&str> = rest.split('/').skip(1).collect();
        match parts.as_slice() {
            [] => {
                if let Some(list) = value.as_array() {
                    out.extend(changed(pod, list));
                }
            }
            [_] => out.extend(changed(pod, std::slice::from_ref(value))),
            [index, "image"] => {
                let image = value.as_str().unwrap_or("");
                let name = index
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| have.get(i))
                    .filter(|(_, old)| old != image)
                    .map(|(n, _)| n.clone());
                if let Some(name) = name {
                    out.push((name, image.to_owned()));
                }
            }
            _ => {}
        }
    }
    out
}

/// The condition types the pod declares as readiness gates.
fn readiness_gates(pod: &serde_json::Value) -> Vec<&str> {
    pod.pointer("/spec/readinessGates")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|g| g.get("conditionType").and_then(|t| t.as_str()))
        .collect()
}

/// Whether a condition (JSON) sets one of `gates` False.
fn gate_off(gates: &[&str], condition: &serde_json::Value) -> bool {
    condition["status"] == "False"
        && condition["type"]
            .as_str()
            .is_some_and(|t| gates.contains(&t))
}

fn merge_patch_gates_off(pod: &serde_json::Value, patch: &serde_json::Value) -> bool {
    let gates = readiness_gates(pod);
    patch
        .pointer("/status/conditions")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| gate_off(&gates, c)))
}

/// `add`/`replace` of `/status/conditions`, `/status/conditions/N` (or `-`), or
/// `/status/conditions/N/status` where the cached condition N is a gate.
fn json_patch_gates_off(pod: &serde_json::Value, patch: &serde_json::Value) -> bool {
    let gates = readiness_gates(pod);
    let cached = pod
        .pointer("/status/conditions")
        .and_then(serde_json::Value::as_array);
    patch.as_array().into_iter().flatten().any(|op| {
        if !matches!(op["op"].as_str(), Some("add" | "replace")) {
            return false;
        }
        let Some(rest) = op["path"]
            .as_str()
            .and_then(|p| p.strip_prefix("/status/conditions"))
        else {
            return false;
        };
        let value = &op["value"];
        let parts: Vec<&str> = rest.split('/').skip(1).collect();
        match parts.as_slice() {
            [] => value
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| gate_off(&gates, c))),
            [_] => gate_off(&gates, value),
            [index, "status"] => {
                value == "False"
                    && index
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| cached?.get(i))
                        .and_then(|c| c["type"].as_str())
                        .is_some_and(|t| gates.contains(&t))
            }
            _ => false,
        }
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodDoc {
    metadata: PodMeta,
    #[serde(default)]
    status: PodStatus,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodMeta {
    name: String,
    #[serde(default)]
    deletion_timestamp: Option<serde_json::Value>,
    #[serde(default)]
    owner_references: Vec<OwnerReference>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnerReference {
    api_version: String,
    kind: String,
    name: String,
    uid: String,
    #[serde(default)]
    controller: bool,
}

#[derive(Deserialize, Default)]
struct PodStatus {
    #[serde(default)]
    conditions: Vec<Condition>,
}

#[derive(Deserialize)]
struct Condition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

impl PodDoc {
    fn controller(&self) -> Option<&OwnerReference> {
        self.metadata.owner_references.iter().find(|o| o.controller)
    }

    fn ready(&self) -> bool {
        self.status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    }
}

#[derive(Deserialize)]
struct ScaleDoc {
    #[serde(default)]
    spec: ScaleSpec,
}

#[derive(Deserialize, Default)]
struct ScaleSpec {
    replicas: Option<u32>,
}

/// A workload's health as the cache and the admitted disruptions show it.
#[derive(Debug)]
struct Health {
    /// `ReplicaSet web-5d8f` (for messages).
    workload: String,
    /// Pods the workload should have: its `spec.replicas` when cached, else its pods.
    expected: u32,
    /// Ready pods that are not being deleted or disrupted.
    healthy: u32,
    /// Whether the target pod is one of the healthy ones.
    target_healthy: bool,
}

impl Health {
    /// The pod `cmd` would disrupt and the health of its workload, when that pod is
    /// healthy now: disrupting a pod that is already unavailable costs no budget.
    fn of_disruption<'c>(
        cmd: &'c Command,
        view: &dyn View,
        in_flight: &InFlight,
        now: Instant,
    ) -> Option<(Disruption<'c>, Self)> {
        let disruption = disruption(cmd, view)?;
        let health = Health::of(disruption.target, view, &in_flight.live(now, view))?;
        health.target_healthy.then_some((disruption, health))
    }

    /// The health of the workload of `target`; `None` when the pod is not cached or has
    /// no controller (a bare pod is not part of a workload).
    fn of(target: &ObjectRef, view: &dyn View, in_flight: &BTreeSet<String>) -> Option<Self> {
        let namespace = target.namespace.as_deref()?;
        let pod: PodDoc = serde_json::from_str(&view.get(target)?).ok()?;
        let owner = pod.controller()?;
        let healthy_pod = |p: &PodDoc| {
            p.ready()
                && p.metadata.deletion_timestamp.is_none()
                && !in_flight.contains(&pod_key(namespace, &p.metadata.name))
        };
        let mut members = 0u32;
        let mut healthy = 0u32;
        for json in view.list_namespaced("v1", "Pod", namespace) {
            let Ok(p) = serde_json::from_str::<PodDoc>(&json) else {
                continue;
            };
            if p.controller().is_some_and(|o| o.uid == owner.uid) {
                members += 1;
                healthy += u32::from(healthy_pod(&p));
            }
        }
        let owner_ref =
            ObjectRef::namespaced(&owner.api_version, &owner.kind, namespace, &owner.name);
        let replicas = view
            .get(&owner_ref)
            .and_then(|json| serde_json::from_str::<ScaleDoc>(&json).ok())
            .and_then(|scale| scale.spec.replicas);
        Some(Health {
            workload: format!("{} {}", owner.kind, owner.name),
            expected: replicas.unwrap_or(members),
            healthy,
            target_healthy: healthy_pod(&pod),
        })
    }
}

fn pod_key(namespace: &str, name: &str) -> String {
    format!("Pod/{namespace}/{name}")
}

/// Refuses an eviction or a pod deletion that would make more than the limit of a
/// workload's pods unavailable (not Ready, being deleted, or being disrupted).
///
/// Pods are grouped by their controller owner reference; a workload's size is its
/// `spec.replicas` when the owner is cached, otherwise the number of its pods. Evicting
/// a pod that is already unavailable is always allowed; bare pods are not covered.
#[derive(Debug)]
pub struct MaxUnavailable {
    /// Most pods of one workload unavailable at once.
    pub per_workload: Limit,
    in_flight: InFlight,
}

impl MaxUnavailable {
    /// At most `per_workload` pods of each workload unavailable.
    pub fn new(per_workload: Limit) -> Self {
        MaxUnavailable {
            per_workload,
            in_flight: InFlight::default(),
        }
    }
}

impl Budget for MaxUnavailable {
    fn name(&self) -> &str {
        "max-unavailable"
    }

    fn check(
        &self,
        _plugin: &str,
        cmd: &Command,
        view: &dyn View,
        now: Instant,
    ) -> Result<(), String> {
        let Some((d, health)) = Health::of_disruption(cmd, view, &self.in_flight, now) else {
            return Ok(());
        };
        let unavailable = health.expected.saturating_sub(health.healthy) + 1;
        let allowed = self.per_workload.of(health.expected);
        if unavailable > allowed {
            let percent = match self.per_workload {
                Limit::Percent(p) => format!(" ({p}%)"),
                Limit::Count(_) => String::new(),
            };
            return Err(format!(
                "{} {} would make {unavailable} of {} pods of {} unavailable, \
                 over the limit of {allowed}{percent}",
                d.verb, d.target, health.expected, health.workload,
            ));
        }
        Ok(())
    }

    fn admitted(&self, _plugin: &str, cmd: &Command, view: &dyn View, now: Instant) {
        if let Some(d) = disruption(cmd, view) {
            self.in_flight.insert_until(d.target.key(), now, d.until);
        }
    }

    fn settle(&self, target: &ObjectRef) {
        self.in_flight.remove(&target.key());
    }
}

/// Refuses an eviction or a pod deletion that would leave a workload with a smaller share
/// of healthy pods than the ratio (0 to 1). Grouping and sizing as in [`MaxUnavailable`].
#[derive(Debug)]
pub struct MinHealthyShare {
    /// The smallest share of a workload's pods that must stay healthy.
    pub ratio: f64,
    in_flight: InFlight,
}

impl MinHealthyShare {
    /// Keep at least `ratio` of each workload's pods healthy.
    pub fn new(ratio: f64) -> Self {
        MinHealthyShare {
            ratio,
            in_flight: InFlight::default(),
        }
    }
}

impl Budget for MinHealthyShare {
    fn name(&self) -> &str {
        "min-healthy-share"
    }

    fn check(
        &self,
        _plugin: &str,
        cmd: &Command,
        view: &dyn View,
        now: Instant,
    ) -> Result<(), String> {
        let Some((d, health)) = Health::of_disruption(cmd, view, &self.in_flight, now) else {
            return Ok(());
        };
        if health.expected == 0 {
            return Ok(());
        }
        let left = health.healthy.saturating_sub(1);
        let share = f64::from(left) / f64::from(health.expected);
        if share < self.ratio {
            return Err(format!(
                "{} {} would leave {left} of {} pods of {} healthy ({:.0}%), \
                 below the minimum of {:.0}%",
                d.verb,
                d.target,
                health.expected,
                health.workload,
                share * 100.0,
                self.ratio * 100.0,
            ));
        }
        Ok(())
    }

    fn admitted(&self, _plugin: &str, cmd: &Command, view: &dyn View, now: Instant) {
        if let Some(d) = disruption(cmd, view) {
            self.in_flight.insert_until(d.target.key(), now, d.until);
        }
    }

    fn settle(&self, target: &ObjectRef) {
        self.in_flight.remove(&target.key());
    }
}

/// Test fixtures: JSON objects built by small builders, and a view over them.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use serde_json::{Value, json};

    /// A view over a fixed set of objects.
    #[derive(Default)]
    pub struct FakeView {
        objects: Vec<(ObjectRef, Arc<str>)>,
    }

    impl FakeView {
        pub fn with(mut self, object: Value) -> Self {
            let r = ObjectRef::of(&object).expect("fixture names itself");
            self.objects.push((r, object.to_string().into()));
            self
        }
    }

    impl View for FakeView {
        fn list(&self, api_version: &str, kind: &str) -> Vec<Arc<str>> {
            self.objects
                .iter()
                .filter(|(r, _)| r.api_version == api_version && r.kind == kind)
                .map(|(_, json)| Arc::clone(json))
                .collect()
        }

        fn get(&self, r: &ObjectRef) -> Option<Arc<str>> {
            self.objects
                .iter()
                .find(|(o, _)| o == r)
                .map(|(_, json)| Arc::clone(json))
        }
    }

    pub struct NodeBuilder(Value);

    pub fn node(name: &str) -> NodeBuilder {
        NodeBuilder(json!({
            "apiVersion": "v1", "kind": "Node", "metadata": { "name": name }, "spec": {},
        }))
    }

    impl NodeBuilder {
        pub fn unschedulable(mut self) -> Self {
            self.0["spec"]["unschedulable"] = json!(true);
            self
        }
        pub fn build(self) -> Value {
            self.0
        }
    }

    pub struct PodBuilder(Value);

    /// A ready pod in namespace `default`.
    pub fn pod(name: &str) -> PodBuilder {
        PodBuilder(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "namespace": "default" },
            "status": { "conditions": [ { "type": "Ready", "status": "True" } ] },
        }))
    }

    impl PodBuilder {
        /// Controlled by ReplicaSet `rs` (uid `uid-<rs>`).
        pub fn owned_by(mut self, rs: &str) -> Self {
            self.0["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                "uid": format!("uid-{rs}"), "controller": true,
            }]);
            self
        }
        pub fn not_ready(mut self) -> Self {
            self.0["status"]["conditions"][0]["status"] = json!("False");
            self
        }
        pub fn deleting(mut self) -> Self {
            self.0["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            self
        }
        /// Runs container `app` with `image` (spec and status).
        pub fn image(mut self, image: &str) -> Self {
            self.0["spec"]["containers"] = json!([{"name": "app", "image": image}]);
            self.0["status"]["containerStatuses"] =
                json!([{"name": "app", "image": image, "ready": true}]);
            self
        }
        /// Declares the readiness gate `example.com/gate`, with the condition at `status`.
        pub fn gated(mut self, status: &str) -> Self {
            self.0["spec"]["readinessGates"] = json!([{"conditionType": "example.com/gate"}]);
            let conditions = self.0["status"]["conditions"]
                .as_array_mut()
                .expect("conditions");
            conditions.push(json!({"type": "example.com/gate", "status": status}));
            self
        }
        pub fn build(self) -> Value {
            self.0
        }
    }

    pub fn replica_set(name: &str, replicas: u32) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": { "name": name, "namespace": "default", "uid": format!("uid-{name}") },
            "spec": { "replicas": replicas },
        })
    }

    /// A view with `ready` ready pods and `not_ready` unready pods of ReplicaSet `web`.
    pub fn workload(ready: usize, not_ready: usize) -> FakeView {
        let mut view = FakeView::default();
        for i in 0..ready {
            view = view.with(pod(&format!("web-{i}")).owned_by("web").build());
        }
        for i in ready..ready + not_ready {
            view = view.with(pod(&format!("web-{i}")).owned_by("web").not_ready().build());
        }
        view
    }

    /// A view with `ready` ready pods and `not_ready` unready pods of ReplicaSet `web`,
    /// each running `app:v1` and gated by `example.com/gate`.
    pub fn running_workload(ready: usize, not_ready: usize) -> FakeView {
        let mut view = FakeView::default();
        for i in 0..ready + not_ready {
            let p = pod(&format!("web-{i}")).owned_by("web").image("app:v1");
            let p = if i < ready {
                p.gated("True")
            } else {
                p.gated("True").not_ready()
            };
            view = view.with(p.build());
        }
        view
    }

    pub fn pod_ref(name: &str) -> ObjectRef {
        ObjectRef::namespaced("v1", "Pod", "default", name)
    }

    pub fn evict(name: &str) -> Command {
        Command::Evict(pod_ref(name))
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use bosun_host::contract::{NodeTaint, Taint};

    fn taint(node: &str, effect: TaintEffect) -> Command {
        Command::Taint(NodeTaint {
            node: node.into(),
            taint: Taint {
                key: "bosun.dev/repair".into(),
                value: None,
                effect,
            },
        })
    }

    #[test]
    fn max_cordoned_nodes_counts_unschedulable_nodes_but_not_the_target() {
        let now = Instant::now();
        let view = FakeView::default()
            .with(node("n1").unschedulable().build())
            .with(node("n2").unschedulable().build())
            .with(node("n3").build());
        let budget = MaxCordonedNodes::new(2);
        let err = budget
            .check("remediation", &Command::Cordon("n3".into()), &view, now)
            .expect_err("two nodes are already cordoned");
        assert!(err.contains("2 nodes") && err.contains("n1, n2"), "{err}");
        assert!(err.contains("the limit is 2"), "{err}");
        let refused = budget.check("r", &taint("n3", TaintEffect::NoExecute), &view, now);
        assert!(refused.is_err());
        // A harmless taint, an uncordon, or a taint on a node already cordoned pass.
        let soft = taint("n3", TaintEffect::PreferNoSchedule);
        assert!(budget.check("r", &soft, &view, now).is_ok());
        let uncordon = Command::Uncordon("n1".into());
        assert!(budget.check("r", &uncordon, &view, now).is_ok());
        let budget = MaxCordonedNodes::new(2);
        let view = FakeView::default()
            .with(node("n1").unschedulable().build())
            .with(node("n2").build());
        let lock = taint("n1", TaintEffect::NoSchedule);
        assert!(budget.check("r", &lock, &view, now).is_ok());
    }

    #[test]
    fn max_cordoned_nodes_counts_admitted_cordons_until_settled_or_expired() {
        let now = Instant::now();
        let view = FakeView::default()
            .with(node("n1").build())
            .with(node("n2").build())
            .with(node("n3").build());
        let budget = MaxCordonedNodes::new(1);
        let first = Command::Cordon("n1".into());
        assert!(budget.check("r", &first, &view, now).is_ok());
        budget.admitted("r", &first, &view, now);
        // Cordon and taint of the same node are one node out.
        let lock = taint("n1", TaintEffect::NoSchedule);
        assert!(budget.check("r", &lock, &view, now).is_ok());
        let second = Command::Cordon("n2".into());
        assert!(budget.check("r", &second, &view, now).is_err());
        assert!(
            budget
                .check("r", &second, &view, now + IN_FLIGHT_TTL)
                .is_ok()
        );
        budget.settle(&ObjectRef::cluster("v1", "Node", "n1"));
        assert!(budget.check("r", &second, &view, now).is_ok());
    }

    #[test]
    fn max_unavailable_counts_unready_and_deleting_pods() {
        let now = Instant::now();
        let budget = MaxUnavailable::new(Limit::Count(1));
        let view = workload(4, 0);
        assert!(budget.check("release", &evict("web-0"), &view, now).is_ok());
        let view = workload(3, 1);
        let err = budget
            .check("release", &evict("web-0"), &view, now)
            .expect_err("one pod is already unavailable");
        assert!(
            err.contains("would make 2 of 4 pods of ReplicaSet web unavailable")
                && err.contains("limit of 1"),
            "{err}"
        );
        // Evicting the pod that is already unavailable does not make it worse.
        assert!(budget.check("release", &evict("web-3"), &view, now).is_ok());
        let view = workload(3, 0).with(pod("web-3").owned_by("web").deleting().build());
        let delete = Command::Delete(pod_ref("web-0"));
        let err = budget
            .check("release", &delete, &view, now)
            .expect_err("a pod is being deleted");
        assert!(err.starts_with("deleting Pod/default/web-0"), "{err}");
    }

    #[test]
    fn max_unavailable_uses_replicas_and_groups_by_controller() {
        let now = Instant::now();
        let budget = MaxUnavailable::new(Limit::Count(1));
        // 3 pods of 4 replicas exist: one is missing, so one is already unavailable.
        let view = workload(3, 0).with(replica_set("web", 4));
        assert!(budget.check("r", &evict("web-0"), &view, now).is_err());
        // Unready pods of another workload, and bare pods, do not count.
        let view = workload(4, 0)
            .with(pod("db-0").owned_by("db").not_ready().build())
            .with(pod("bare").not_ready().build());
        assert!(budget.check("r", &evict("web-0"), &view, now).is_ok());
        assert!(budget.check("r", &evict("bare"), &view, now).is_ok());
    }

    #[test]
    fn max_unavailable_percent_rounds_up() {
        assert_eq!(Limit::Percent(25).of(4), 1);
        assert_eq!(Limit::Percent(25).of(5), 2);
        assert_eq!(Limit::Percent(10).of(3), 1);
        assert_eq!(Limit::Percent(0).of(10), 0);
        let now = Instant::now();
        let budget = MaxUnavailable::new(Limit::Percent(50));
        let view = workload(3, 1);
        assert!(budget.check("r", &evict("web-0"), &view, now).is_ok());
        let view = workload(2, 2);
        let err = budget
            .check("r", &evict("web-0"), &view, now)
            .expect_err("half is down");
        assert!(err.contains("limit of 2 (50%)"), "{err}");
    }

    fn merge(name: &str, patch: serde_json::Value) -> Command {
        Command::MergePatch(bosun_host::contract::Patch {
            target: pod_ref(name),
            patch: patch.to_string(),
        })
    }

    fn json_patch(name: &str, ops: serde_json::Value) -> Command {
        Command::JsonPatch(bosun_host::contract::Patch {
            target: pod_ref(name),
            patch: ops.to_string(),
        })
    }

    fn set_image(name: &str, image: &str) -> Command {
        json_patch(
            name,
            serde_json::json!([{"op": "replace", "path": "/spec/containers/0/image", "value": image}]),
        )
    }

    #[test]
    fn in_place_image_patches_count_against_max_unavailable() {
        let now = Instant::now();
        let budget = MaxUnavailable::new(Limit::Count(1));
        let view = running_workload(3, 1);
        let err = budget
            .check("release", &set_image("web-0", "app:v2"), &view, now)
            .expect_err("one pod is already unavailable");
        assert!(
            err.starts_with("patching the images of Pod/default/web-0 would make 2 of 4"),
            "{err}"
        );
        let merge_image = merge(
            "web-0",
            serde_json::json!({"spec": {"containers": [{"name": "app", "image": "app:v2"}]}}),
        );
        assert!(budget.check("r", &merge_image, &view, now).is_err());
        // Not a disruption: the same image, a label, another field; or the unready pod.
        let same = merge(
            "web-0",
            serde_json::json!({"spec": {"containers": [{"name": "app", "image": "app:v1"}]}}),
        );
        assert!(budget.check("r", &same, &view, now).is_ok());
        assert!(
            budget
                .check("r", &set_image("web-0", "app:v1"), &view, now)
                .is_ok()
        );
        let label = merge(
            "web-0",
            serde_json::json!({"metadata": {"labels": {"a": "b"}}}),
        );
        assert!(budget.check("r", &label, &view, now).is_ok());
        assert!(
            budget
                .check("r", &set_image("web-3", "app:v2"), &view, now)
                .is_ok()
        );
    }

    #[test]
    fn a_readiness_gate_set_false_counts_against_max_unavailable() {
        let now = Instant::now();
        let budget = MaxUnavailable::new(Limit::Count(1));
        let view = running_workload(3, 1);
        let gate_off = json_patch(
            "web-0",
            serde_json::json!([{"op": "replace", "path": "/status/conditions/1",
                "value": {"type": "example.com/gate", "status": "False"}}]),
        );
        let err = budget
            .check("r", &gate_off, &view, now)
            .expect_err("at the limit");
        assert!(
            err.starts_with("setting a readiness gate False on"),
            "{err}"
        );
        let by_index = json_patch(
            "web-0",
            serde_json::json!([{"op": "replace", "path": "/status/conditions/1/status", "value": "False"}]),
        );
        assert!(budget.check("r", &by_index, &view, now).is_err());
        let merge_off = merge(
            "web-0",
            serde_json::json!({"status": {"conditions": [{"type": "example.com/gate", "status": "False"}]}}),
        );
        assert!(budget.check("r", &merge_off, &view, now).is_err());
        // Setting it True, or a condition that is not a gate, disrupts nothing.
        let gate_on = json_patch(
            "web-0",
            serde_json::json!([{"op": "replace", "path": "/status/conditions/1",
                "value": {"type": "example.com/gate", "status": "True"}}]),
        );
        assert!(budget.check("r", &gate_on, &view, now).is_ok());
        let other = merge(
            "web-0",
            serde_json::json!({"status": {"conditions": [{"type": "Other", "status": "False"}]}}),
        );
        assert!(budget.check("r", &other, &view, now).is_ok());
    }

    #[test]
    fn release_and_remediation_share_the_budget_until_the_cache_shows_the_update() {
        let now = Instant::now();
        let budget = MaxUnavailable::new(Limit::Count(1));
        let view = running_workload(4, 0);
        // The release patches web-0's image in place; the cache still shows app:v1.
        let patch = set_image("web-0", "app:v2");
        assert!(budget.check("release", &patch, &view, now).is_ok());
        budget.admitted("release", &patch, &view, now);
        // Remediation may not evict another pod of the workload meanwhile.
        let err = budget
            .check("remediation", &evict("web-1"), &view, now)
            .expect_err("web-0 is being updated");
        assert!(err.contains("would make 2 of 4"), "{err}");
        // The cache shows web-0 running app:v2 and Ready: the budget is free again.
        let mut view = FakeView::default();
        for i in 1..4 {
            let p = pod(&format!("web-{i}")).owned_by("web").image("app:v1");
            view = view.with(p.gated("True").build());
        }
        let view = view.with(
            pod("web-0")
                .owned_by("web")
                .image("app:v2")
                .gated("True")
                .build(),
        );
        assert!(
            budget
                .check("remediation", &evict("web-1"), &view, now)
                .is_ok()
        );
    }

    #[test]
    fn ten_evictions_in_one_reconcile_cannot_all_pass() {
        let now = Instant::now();
        let budget = MaxUnavailable::new(Limit::Count(2));
        let view = workload(10, 0);
        let mut passed = 0;
        for i in 0..10 {
            let cmd = evict(&format!("web-{i}"));
            if budget.check("r", &cmd, &view, now).is_ok() {
                budget.admitted("r", &cmd, &view, now);
                passed += 1;
            }
        }
        assert_eq!(passed, 2);
        budget.settle(&pod_ref("web-0"));
        assert!(budget.check("r", &evict("web-9"), &view, now).is_ok());
    }

    #[test]
    fn min_healthy_share_refuses_below_the_ratio() {
        let now = Instant::now();
        let budget = MinHealthyShare::new(0.75);
        let view = workload(4, 0);
        assert!(budget.check("r", &evict("web-0"), &view, now).is_ok());
        budget.admitted("r", &evict("web-0"), &view, now);
        let err = budget
            .check("r", &evict("web-1"), &view, now)
            .expect_err("2 of 4 is below 75%");
        assert!(
            err.contains(
                "evicting Pod/default/web-1 would leave 2 of 4 pods of ReplicaSet web healthy (50%)"
            ) && err.contains("minimum of 75%"),
            "{err}"
        );
        // A pod that is already unhealthy may go.
        let view = workload(2, 2);
        assert!(budget.check("r", &evict("web-3"), &view, now).is_ok());
        assert!(budget.check("r", &evict("web-1"), &view, now).is_err());
    }

    #[test]
    fn limits_parse_as_int_or_percent() {
        let count: Limit = serde_json::from_str("2").expect("a count");
        let percent: Limit = serde_json::from_str("\"25%\"").expect("a percent");
        assert_eq!((count, percent), (Limit::Count(2), Limit::Percent(25)));
        assert!(serde_json::from_str::<Limit>("\"150%\"").is_err());
        assert!(serde_json::from_str::<Limit>("-1").is_err());
        assert_eq!(
            serde_json::to_string(&percent).expect("serialises"),
            "\"25%\""
        );
    }
}
