//! The workload budgets: how many of a workload's pods may be unavailable, or what share
//! must stay healthy, when a command disrupts one of them.
//!
//! A pod's workload is its controller: a ReplicaSet owned by a Deployment counts as the
//! Deployment (both ReplicaSets of a rollout are one workload); a StatefulSet, DaemonSet,
//! Job or any other controller as itself; a pod without a controller is a workload of
//! one. Its size is read from the controller's spec when the controller is cached
//! (`spec.replicas`; a DaemonSet's `status.desiredNumberScheduled`; a Job's
//! `spec.parallelism`), otherwise it is the number of its pods; so a pod evicted and not
//! yet replaced still counts as missing. Disrupting a pod that is already unavailable
//! costs nothing.
//!
//! The limit that applies is the plugin's, else the pod's namespace's, else the
//! runtime's ([`Policy`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bosun_host::contract::{Command, ObjectRef};
use serde::Deserialize;

use super::disruption::{Disruption, disrupted_pod};
use super::in_flight::InFlight;
use super::pod::{OwnerReference, Parsed, PodDoc};
use super::{Budget, Limit, Policy, Refusal, Settings, View};

/// What the budgets read of a pod's controller.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct OwnerDoc {
    #[serde(default)]
    metadata: OwnerMeta,
    #[serde(default)]
    spec: OwnerSpec,
    #[serde(default)]
    status: OwnerStatus,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct OwnerMeta {
    #[serde(default)]
    owner_references: Vec<OwnerReference>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct OwnerSpec {
    replicas: Option<u32>,
    parallelism: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct OwnerStatus {
    desired_number_scheduled: Option<u32>,
}

impl OwnerDoc {
    /// The number of pods a controller of `kind` asks for.
    fn size(&self, kind: &str) -> Option<u32> {
        match kind {
            "DaemonSet" => self.status.desired_number_scheduled,
            "Job" => Some(self.spec.parallelism.unwrap_or(1)),
            _ => self.spec.replicas,
        }
    }

    fn controller(&self) -> Option<&OwnerReference> {
        self.metadata.owner_references.iter().find(|o| o.controller)
    }
}

/// A pod's workload.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Workload {
    /// `Deployment web` (for messages).
    pub(super) name: String,
    /// What identifies it among the namespace's pods: the controller's uid, or the bare
    /// pod's name.
    key: String,
    /// Pods it asks for, when its controller is cached.
    size: Option<u32>,
}

/// Finds pods' workloads in one namespace, reading each controller once.
pub(super) struct Workloads<'v> {
    view: &'v dyn View,
    namespace: &'v str,
    by_controller: HashMap<String, Arc<Workload>>,
}

impl<'v> Workloads<'v> {
    pub(super) fn new(view: &'v dyn View, namespace: &'v str) -> Self {
        Workloads {
            view,
            namespace,
            by_controller: HashMap::new(),
        }
    }

    fn owner(&self, o: &OwnerReference) -> Option<OwnerDoc> {
        let r = ObjectRef::namespaced(&o.api_version, &o.kind, self.namespace, &o.name);
        serde_json::from_str(&self.view.get(&r)?).ok()
    }

    /// The workload `pod` belongs to.
    pub(super) fn of(&mut self, pod: &PodDoc) -> Arc<Workload> {
        let Some(c) = pod.controller() else {
            return Arc::new(Workload {
                name: format!("Pod {}", pod.metadata.name),
                key: format!("pod:{}", pod.metadata.name),
                size: Some(1),
            });
        };
        if let Some(w) = self.by_controller.get(&c.uid) {
            return Arc::clone(w);
        }
        let doc = self.owner(c);
        let deployment = (c.kind == "ReplicaSet")
            .then(|| {
                doc.as_ref()?
                    .controller()
                    .filter(|d| d.kind == "Deployment")
            })
            .flatten();
        let w = match deployment {
            Some(d) => Workload {
                name: format!("Deployment {}", d.name),
                key: d.uid.clone(),
                size: self.owner(d).and_then(|doc| doc.size("Deployment")),
            },
            None => Workload {
                name: format!("{} {}", c.kind, c.name),
                key: c.uid.clone(),
                size: doc.and_then(|doc| doc.size(&c.kind)),
            },
        };
        let w = Arc::new(w);
        self.by_controller.insert(c.uid.clone(), Arc::clone(&w));
        w
    }
}

/// A workload's health as the cache and the admitted disruptions show it.
#[derive(Debug)]
struct Health {
    /// `ReplicaSet web-5d8f` (for messages).
    workload: String,
    /// Pods the workload should have: its controller's size when cached, else its pods.
    expected: u32,
    /// Ready pods that are not being deleted or disrupted.
    healthy: u32,
    /// Whether the target pod is one of the healthy ones.
    target_healthy: bool,
}

/// Whether a pod counts as healthy: Ready, not being deleted, not being disrupted by an
/// admitted command.
pub(super) fn healthy(pod: &PodDoc, disrupted: &HashSet<&str>) -> bool {
    pod.ready()
        && pod.metadata.deletion_timestamp.is_none()
        && !disrupted.contains(pod.metadata.name.as_str())
}

/// The names of the pods of `namespace` among the in-flight keys.
pub(super) fn disrupted_in<'k>(
    in_flight: &'k BTreeSet<String>,
    namespace: &str,
) -> HashSet<&'k str> {
    let prefix = pod_key(namespace, "");
    in_flight
        .iter()
        .filter_map(|k| k.strip_prefix(prefix.as_str()))
        .collect()
}

impl Health {
    /// The pod `cmd` would disrupt and the health of its workload, when that pod is
    /// healthy now: disrupting a pod that is already unavailable costs no budget.
    fn of_disruption(
        cmd: &Command,
        view: &dyn View,
        parsed: &Parsed,
        in_flight: &InFlight,
        now: Instant,
    ) -> Option<(Disruption, Self)> {
        let disruption = disrupted_pod(cmd, view)?;
        let health = Health::of(&disruption.target, view, parsed, &in_flight.live(now, view))?;
        health.target_healthy.then_some((disruption, health))
    }

    /// The health of the workload of `target`; `None` when the pod is not cached.
    fn of(
        target: &ObjectRef,
        view: &dyn View,
        parsed: &Parsed,
        in_flight: &BTreeSet<String>,
    ) -> Option<Self> {
        let namespace = target.namespace.as_deref()?;
        let pod: PodDoc = serde_json::from_str(&view.get(target)?).ok()?;
        let mut workloads = Workloads::new(view, namespace);
        let workload = workloads.of(&pod);
        let disrupted = disrupted_in(in_flight, namespace);
        let target_healthy = healthy(&pod, &disrupted);
        let (mut members, mut healthy_count) = (1u32, u32::from(target_healthy));
        if pod.controller().is_some() {
            (members, healthy_count) = (0, 0);
            let own = pod.controller().map(|c| c.uid.as_str());
            // A workload made of several controllers (a Deployment's ReplicaSets) needs
            // each other pod's controller looked up; otherwise the uid decides.
            let several = own != Some(workload.key.as_str());
            for p in parsed.pods(view, namespace) {
                let Some(c) = p.controller() else {
                    continue;
                };
                let member = Some(c.uid.as_str()) == own
                    || (several && workloads.of(&p).key == workload.key);
                if member {
                    members += 1;
                    healthy_count += u32::from(healthy(&p, &disrupted));
                }
            }
        }
        Some(Health {
            workload: workload.name.clone(),
            expected: workload.size.unwrap_or(members),
            healthy: healthy_count,
            target_healthy,
        })
    }
}

/// The in-flight key of a pod (its [`ObjectRef::key`]).
pub(super) fn pod_key(namespace: &str, name: &str) -> String {
    format!("Pod/{namespace}/{name}")
}

/// Counts a disruption `cmd` makes from `now` in `in_flight`, until the cache shows it.
pub(super) fn admit_disruption(in_flight: &InFlight, cmd: &Command, view: &dyn View, now: Instant) {
    if let Some(d) = disrupted_pod(cmd, view) {
        in_flight.insert_until(d.target.key(), now, d.until);
    }
}

/// The settings for a command on `target` by `plugin`.
fn settings(policy: &dyn Policy, plugin: &str, cmd: &Command) -> Settings {
    let target = cmd.target();
    let namespace = target.as_ref().and_then(|t| t.namespace.as_deref());
    policy.settings(plugin, namespace)
}

/// Refuses a command that would make more than the limit of a workload's pods
/// unavailable (not Ready, being deleted, or being disrupted).
#[derive(Debug)]
pub struct MaxUnavailable {
    policy: Arc<dyn Policy>,
    parsed: Parsed,
    in_flight: InFlight,
}

impl MaxUnavailable {
    /// At most `per_workload` pods of each workload unavailable, for every plugin.
    pub fn new(per_workload: Limit) -> Self {
        Self::with_policy(Arc::new(Settings {
            max_unavailable: Some(per_workload),
            ..Settings::OFF
        }))
    }

    /// The limit `policy` gives each plugin in each namespace.
    pub fn with_policy(policy: Arc<dyn Policy>) -> Self {
        MaxUnavailable {
            policy,
            parsed: Parsed::default(),
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
        plugin: &str,
        cmd: &Command,
        view: &dyn View,
        now: Instant,
    ) -> Result<(), Refusal> {
        let Some(limit) = settings(self.policy.as_ref(), plugin, cmd).max_unavailable else {
            return Ok(());
        };
        let Some((d, health)) =
            Health::of_disruption(cmd, view, &self.parsed, &self.in_flight, now)
        else {
            return Ok(());
        };
        let unavailable = health.expected.saturating_sub(health.healthy) + 1;
        let allowed = limit.of(health.expected);
        if unavailable > allowed {
            return Err(Refusal::TooManyUnavailable {
                disruption: d.kind,
                pod: d.target,
                unavailable,
                expected: health.expected,
                workload: health.workload,
                allowed,
                limit,
            });
        }
        Ok(())
    }

    fn admitted(&self, _plugin: &str, cmd: &Command, view: &dyn View, now: Instant) {
        admit_disruption(&self.in_flight, cmd, view, now);
    }

    fn settle(&self, target: &ObjectRef) {
        self.in_flight.remove(&target.key());
    }
}

/// Refuses a command that would leave a workload with a smaller share of healthy pods
/// than the ratio (0 to 1). Grouping and sizing as in [`MaxUnavailable`].
#[derive(Debug)]
pub struct MinHealthyShare {
    policy: Arc<dyn Policy>,
    parsed: Parsed,
    in_flight: InFlight,
}

impl MinHealthyShare {
    /// Keep at least `ratio` of each workload's pods healthy, for every plugin.
    pub fn new(ratio: f64) -> Self {
        Self::with_policy(Arc::new(Settings {
            min_healthy_share: Some(ratio),
            ..Settings::OFF
        }))
    }

    /// The share `policy` gives each plugin in each namespace.
    pub fn with_policy(policy: Arc<dyn Policy>) -> Self {
        MinHealthyShare {
            policy,
            parsed: Parsed::default(),
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
        plugin: &str,
        cmd: &Command,
        view: &dyn View,
        now: Instant,
    ) -> Result<(), Refusal> {
        let Some(ratio) = settings(self.policy.as_ref(), plugin, cmd).min_healthy_share else {
            return Ok(());
        };
        let Some((d, health)) =
            Health::of_disruption(cmd, view, &self.parsed, &self.in_flight, now)
        else {
            return Ok(());
        };
        if health.expected == 0 {
            return Ok(());
        }
        let left = health.healthy.saturating_sub(1);
        let share = f64::from(left) / f64::from(health.expected);
        if share < ratio {
            return Err(Refusal::TooFewHealthy {
                disruption: d.kind,
                pod: d.target,
                left,
                expected: health.expected,
                workload: health.workload,
                share,
                minimum: ratio,
            });
        }
        Ok(())
    }

    fn admitted(&self, _plugin: &str, cmd: &Command, view: &dyn View, now: Instant) {
        admit_disruption(&self.in_flight, cmd, view, now);
    }

    fn settle(&self, target: &ObjectRef) {
        self.in_flight.remove(&target.key());
    }
}

#[cfg(test)]
mod tests {
    use super::super::disruption::Kind;
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn max_unavailable_counts_unready_and_deleting_pods() {
        let now = Instant::now();
        let budget = MaxUnavailable::new(Limit::Count(1));
        let view = workload(4, 0);
        assert!(budget.check("release", &evict("web-0"), &view, now).is_ok());
        let view = workload(3, 1);
        let err = budget
            .check("release", &evict("web-0"), &view, now)
            .expect_err("one pod is already unavailable")
            .to_string();
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
        assert!(
            matches!(
                err,
                Refusal::TooManyUnavailable {
                    disruption: Kind::Deletion,
                    unavailable: 2,
                    expected: 4,
                    allowed: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = err.to_string();
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
            .with(pod("bare").not_ready().build())
            .with(pod("lonely").build());
        assert!(budget.check("r", &evict("web-0"), &view, now).is_ok());
        assert!(budget.check("r", &evict("bare"), &view, now).is_ok());
        // A bare pod is a workload of one: one disruption at a time.
        let lonely = evict("lonely");
        assert!(budget.check("r", &lonely, &view, now).is_ok());
        budget.admitted("r", &lonely, &view, now);
        assert!(
            budget.check("r", &lonely, &view, now).is_ok(),
            "already out"
        );
    }

    #[test]
    fn a_deployment_is_one_workload_across_its_replica_sets() {
        let now = Instant::now();
        let budget = MaxUnavailable::new(Limit::Count(1));
        // Mid-rollout: two ReplicaSets of Deployment web, 4 replicas; one new pod unready.
        let view = FakeView::default()
            .with(deployment("web", 4))
            .with(replica_set("web-old", 2).owned_by_deployment("web"))
            .with(replica_set("web-new", 2).owned_by_deployment("web"))
            .with(pod("a").owned_by("web-old").build())
            .with(pod("b").owned_by("web-old").build())
            .with(pod("c").owned_by("web-new").build())
            .with(pod("d").owned_by("web-new").not_ready().build());
        let err = budget
            .check("r", &evict("a"), &view, now)
            .expect_err("d is already unavailable")
            .to_string();
        assert!(
            err.contains("would make 2 of 4 pods of Deployment web unavailable"),
            "{err}"
        );
        // Sized by the Deployment, not by the pods that happen to exist.
        let view = FakeView::default()
            .with(deployment("web", 4))
            .with(replica_set("web-new", 4).owned_by_deployment("web"))
            .with(pod("c").owned_by("web-new").build())
            .with(pod("d").owned_by("web-new").build())
            .with(pod("e").owned_by("web-new").build());
        assert!(budget.check("r", &evict("c"), &view, now).is_err());
    }

    #[test]
    fn max_unavailable_percent_rounds_down_to_at_least_one() {
        let now = Instant::now();
        let budget = MaxUnavailable::new(Limit::Percent(25));
        let view = workload(3, 0);
        assert!(budget.check("r", &evict("web-0"), &view, now).is_ok());
        let view = workload(2, 1);
        let err = budget
            .check("r", &evict("web-0"), &view, now)
            .expect_err("one of three is down")
            .to_string();
        assert!(err.contains("limit of 1 (25%)"), "{err}");
        let budget = MaxUnavailable::new(Limit::Percent(50));
        let view = workload(3, 1);
        assert!(budget.check("r", &evict("web-0"), &view, now).is_ok());
        let view = workload(2, 2);
        let err = budget
            .check("r", &evict("web-0"), &view, now)
            .expect_err("half is down")
            .to_string();
        assert!(err.contains("limit of 2 (50%)"), "{err}");
    }

    #[test]
    fn in_place_image_patches_count_against_max_unavailable() {
        let now = Instant::now();
        let budget = MaxUnavailable::new(Limit::Count(1));
        let view = running_workload(3, 1);
        let err = budget
            .check("release", &set_image("web-0", "app:v2"), &view, now)
            .expect_err("one pod is already unavailable")
            .to_string();
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
            .expect_err("at the limit")
            .to_string();
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
            .expect_err("web-0 is being updated")
            .to_string();
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
            matches!(
                err,
                Refusal::TooFewHealthy {
                    disruption: Kind::Eviction,
                    left: 2,
                    expected: 4,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = err.to_string();
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
    fn refusals_read_as_before() {
        let now = Instant::now();
        let err = MaxUnavailable::new(Limit::Count(1))
            .check("r", &evict("web-0"), &workload(3, 1), now)
            .expect_err("one is down");
        assert_eq!(
            err.to_string(),
            "evicting Pod/default/web-0 would make 2 of 4 pods of ReplicaSet web unavailable, \
             over the limit of 1"
        );
        let err = MaxUnavailable::new(Limit::Percent(50))
            .check("r", &evict("web-0"), &workload(2, 2), now)
            .expect_err("half is down");
        assert_eq!(
            err.to_string(),
            "evicting Pod/default/web-0 would make 3 of 4 pods of ReplicaSet web unavailable, \
             over the limit of 2 (50%)"
        );
        let budget = MinHealthyShare::new(0.75);
        let view = workload(4, 0);
        budget.admitted("r", &evict("web-0"), &view, now);
        let err = budget
            .check("r", &evict("web-1"), &view, now)
            .expect_err("below 75%");
        assert_eq!(
            err.to_string(),
            "evicting Pod/default/web-1 would leave 2 of 4 pods of ReplicaSet web healthy (50%), \
             below the minimum of 75%"
        );
    }
}
