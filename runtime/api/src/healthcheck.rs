//! The `HealthCheck` custom resource (group `bosun.dev`, version `v1alpha1`,
//! cluster-scoped, short name `hc`): medik8s's NodeHealthCheck
//! (`remediation.medik8s.io/v1alpha1`) for nodes and pods, run by a Bosun plugin that
//! detects unhealthy targets and remediates them with built-in actions instead of
//! remediation templates. The CRD YAML under `deploy/crds/healthcheck.yaml` is generated
//! from these types and a test fails when it is stale
//! (`BOSUN_UPDATE_CRDS=1 cargo test -p bosun-api --test crd` rewrites it).
//!
//! # Semantics (as NodeHealthCheck's, unless said otherwise)
//!
//! - A target is *unhealthy* when any of `unhealthyConditions` (OR-ed) has held for its
//!   `duration`: a condition of that `type` with that `status` whose `lastTransitionTime`
//!   is more than `duration` ago. A missing condition never matches.
//! - A target counts as *healthy* for `minHealthy`/`maxUnhealthy` only when no condition
//!   matches and no remediation of it is in progress or waiting out `healthyDelay`: a
//!   target under remediation is unhealthy, as in NHC ("only consider nodes without
//!   remediation CRs as healthy"). `observedTargets` counts the targets the selector
//!   matches.
//! - New remediations start only while `healthyTargets >= threshold`, the threshold being
//!   `minHealthy`, or `observedTargets - maxUnhealthy`; percentages of `observedTargets`
//!   round **up** for both fields, as NHC's `getMinHealthy` does
//!   (`intstr.GetScaledValueFromIntOrPercent(nhc.Spec.MinHealthy, total, true)`, the same
//!   for `MaxUnhealthy`). See [`HealthCheckSpec::healthy_threshold`].
//! - Nodes labelled `remediation.medik8s.io/exclude-from-remediation: "true"` (and pods
//!   with that label) are detected and reported but never remediated.
//! - Remediation escalates: each unhealthy target gets the first action (lowest `order`);
//!   when it is still unhealthy after the action's `timeout`, that remediation gets
//!   `timedOut` and the next action starts. After the last one times out nothing more is
//!   done until the target is healthy again (NHC's `NoTemplateLeft`).
//! - `pauseRequests`: no new remediation starts; remediations already started continue.
//!
//! # Differences from NodeHealthCheck
//!
//! - Targets are nodes or pods (`target`); actions are Bosun's own
//!   (`escalatingRemediations[].action`), not remediation templates, and
//!   `remediationTemplate` does not exist.
//! - `escalatingRemediations` may be empty: the defaults of
//!   [`TargetKind::default_escalation`] apply. NHC's minimum timeout of 60s is not kept.
//! - `maxInFlight` is new (NHC has no such limit).
//! - `healthyDelay` must not be negative (NHC's "never healthy again until a person
//!   confirms it" is not offered).
//! - The exclusivity of `minHealthy` and `maxUnhealthy` (exactly one is required, as NHC's
//!   webhook requires) and the uniqueness of `order` and of `unhealthyConditions`' (type,
//!   status) pairs are checked by the API server through the schema (`oneOf`,
//!   `x-kubernetes-list-type: map`), where NHC has a webhook. The plugin refuses the rest
//!   with condition `Disabled` (reason `InvalidSpec`): an action that does not apply to
//!   the target kind, a negative `minHealthy` or `maxUnhealthy`, or a `maxUnhealthy` above
//!   the number of targets.
//! - Status: `observedTargets`, `healthyTargets`, `unhealthy` (with `namespace` for pods)
//!   and `inFlightRemediations` (a count; NHC's map of that name is deprecated) replace
//!   `observedNodes`, `healthyNodes` and `unhealthyNodes`.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::plugin::{FullLabelSelector as LabelSelector, LabelRequirement};

/// Which nodes or pods are checked, when they are unhealthy, and how they are remediated.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "bosun.dev",
    version = "v1alpha1",
    kind = "HealthCheck",
    status = "HealthCheckStatus",
    shortname = "hc",
    printcolumn = r#"{"name":"TARGET","type":"string","jsonPath":".spec.target.kind","description":"Node or Pod."}"#,
    printcolumn = r#"{"name":"PHASE","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"HEALTHY","type":"integer","jsonPath":".status.healthyTargets","description":"The number of healthy targets."}"#,
    printcolumn = r#"{"name":"OBSERVED","type":"integer","jsonPath":".status.observedTargets","description":"The number of targets the selector matches."}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [{"required": ["minHealthy"]}, {"required": ["maxUnhealthy"]}]))]
pub struct HealthCheckSpec {
    /// What is checked: nodes, or pods (of a namespace or of the namespaces a selector
    /// matches).
    pub target: Target,
    /// The nodes or pods checked (their labels); an empty selector matches all of them,
    /// as in NodeHealthCheck.
    pub selector: LabelSelector,
    /// When a target is unhealthy: any of these conditions (OR-ed) held for its duration.
    /// Empty means the defaults: for nodes `Ready` `False` 300s and `Ready` `Unknown`
    /// 300s (NodeHealthCheck's); for pods `Ready` `False` 300s and `CrashLoopBackOff`
    /// `True` 60s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type", "status"]))]
    pub unhealthy_conditions: Vec<UnhealthyCondition>,
    /// Remediation starts only while at least this many targets (or this percentage of
    /// them, rounded up) are healthy. A non-negative integer or a percentage up to 100%;
    /// 100% blocks all remediation. Exactly one of `minHealthy` and `maxUnhealthy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_percent")]
    pub min_healthy: Option<IntOrString>,
    /// Remediation starts only while at most this many targets (or this percentage of
    /// them, rounded up) are not healthy. A non-negative integer or a percentage up to
    /// 100%; 0 blocks all remediation. Exactly one of `minHealthy` and `maxUnhealthy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_percent")]
    pub max_unhealthy: Option<IntOrString>,
    /// At most this many targets (or this percentage of the targets, rounded up) are
    /// being remediated at once; no limit beyond `minHealthy`/`maxUnhealthy` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_percent")]
    pub max_in_flight: Option<IntOrString>,
    /// The remediation actions, tried one after another by ascending `order` (unique)
    /// while the target stays unhealthy. Empty means the defaults: for nodes `cordon`
    /// 60s, `drain` 300s, `out-of-service` 300s, `reboot` 600s; for pods
    /// `restart-container` 60s, `delete-pod` 120s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["order"]))]
    pub escalating_remediations: Vec<EscalatingRemediation>,
    /// While any entry is present no new remediation starts; remediations already
    /// started continue. Free-form, ideally naming who paused and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pause_requests: Vec<String>,
    /// How long a target whose conditions no longer match stays under remediation
    /// (and counts as unhealthy) before it is healthy again; 0 when unset. A Go duration
    /// (`"300s"`, `"5m"`, `"1h30m"`), not negative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub healthy_delay: Option<String>,
    /// After a storm (fewer healthy targets than the threshold) ends, no new remediation
    /// starts for this long, so that late status updates do not trigger remediations of
    /// healthy targets. No storm handling when unset. A Go duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub storm_cooldown_duration: Option<String>,
}

/// What a HealthCheck checks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// `Node` or `Pod`.
    pub kind: TargetKind,
    /// Pods only: only pods in this namespace; every namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Pods only: only pods in the namespaces whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// The kinds a HealthCheck can check.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TargetKind {
    /// Nodes (core v1), cluster-wide.
    Node,
    /// Pods (core v1).
    Pod,
}

impl TargetKind {
    /// The conditions used when `unhealthyConditions` is empty: for nodes `Ready` `False`
    /// 300s and `Ready` `Unknown` 300s (NodeHealthCheck's schema default); for pods
    /// `Ready` `False` 300s and `CrashLoopBackOff` `True` 60s.
    pub fn default_unhealthy_conditions(self) -> Vec<UnhealthyCondition> {
        let c = |type_: &str, status, duration: &str| UnhealthyCondition {
            type_: type_.into(),
            status,
            duration: duration.into(),
        };
        match self {
            TargetKind::Node => vec![
                c("Ready", ConditionStatus::False, "300s"),
                c("Ready", ConditionStatus::Unknown, "300s"),
            ],
            TargetKind::Pod => vec![
                c("Ready", ConditionStatus::False, "300s"),
                c(CRASH_LOOP_BACK_OFF, ConditionStatus::True, "60s"),
            ],
        }
    }

    /// The actions used when `escalatingRemediations` is empty: for nodes `cordon` 60s,
    /// `drain` 300s, `out-of-service` 300s, `reboot` 600s; for pods `restart-container`
    /// 60s, `delete-pod` 120s.
    pub fn default_escalation(self) -> Vec<EscalatingRemediation> {
        let steps: &[(Action, &str)] = match self {
            TargetKind::Node => &[
                (Action::Cordon, "60s"),
                (Action::Drain, "300s"),
                (Action::OutOfService, "300s"),
                (Action::Reboot, "600s"),
            ],
            TargetKind::Pod => &[
                (Action::RestartContainer, "60s"),
                (Action::DeletePod, "120s"),
            ],
        };
        steps
            .iter()
            .zip(1..)
            .map(|(&(action, timeout), order)| EscalatingRemediation {
                action,
                order,
                timeout: timeout.into(),
            })
            .collect()
    }

    /// Whether `action` applies to targets of this kind.
    pub fn allows(self, action: Action) -> bool {
        match action {
            Action::RestartContainer | Action::DeletePod => self == TargetKind::Pod,
            Action::Cordon | Action::Drain | Action::OutOfService | Action::Reboot => {
                self == TargetKind::Node
            }
        }
    }
}

/// The pseudo-condition type of pods: `CrashLoopBackOff` `True` when a container of the
/// pod is waiting with reason `CrashLoopBackOff` (since when that container last
/// terminated; the pod has no such condition).
pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";

/// A condition that makes a target unhealthy once it has held for `duration`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnhealthyCondition {
    /// The condition type in the target's status (`Ready`, ...); for pods also the
    /// pseudo-condition `CrashLoopBackOff` (status `True`: a container is waiting in
    /// CrashLoopBackOff).
    #[serde(rename = "type")]
    #[schemars(length(min = 1))]
    pub type_: String,
    /// The condition status: `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// How long the condition must have had this status: a Go duration (`"300s"`,
    /// `"5m"`, `"1h30m"`).
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub duration: String,
}

/// A condition status.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// It does not.
    False,
    /// Its state is not known (a node whose kubelet stopped reporting).
    Unknown,
}

/// One step of a remediation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EscalatingRemediation {
    /// What is done to the target; it must apply to the target kind.
    pub action: Action,
    /// Steps run by ascending order; orders are unique.
    pub order: i32,
    /// How long the target may stay unhealthy after this step started before the next
    /// step starts: a Go duration.
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub timeout: String,
}

/// Remediation actions.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Pods: restart the containers that make the pod unhealthy, in place.
    RestartContainer,
    /// Pods: delete the pod (its controller replaces it).
    DeletePod,
    /// Nodes: mark the node unschedulable.
    Cordon,
    /// Nodes: cordon, then evict the node's pods (PodDisruptionBudgets respected).
    Drain,
    /// Nodes: add the taint `node.kubernetes.io/out-of-service:NoExecute`, so that its
    /// pods and volume attachments are deleted; removed when the node is healthy again.
    OutOfService,
    /// Nodes: reboot the node.
    Reboot,
}

/// What the HealthCheck plugin reports.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckStatus {
    /// The generation of the spec this status is for.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub observed_generation: i64,
    /// Targets the selector matches.
    #[serde(default)]
    pub observed_targets: i32,
    /// Targets that are healthy: no unhealthy condition matches and none is being
    /// remediated.
    #[serde(default)]
    pub healthy_targets: i32,
    /// Unhealthy targets and their remediations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unhealthy: Vec<UnhealthyTarget>,
    /// Targets with a remediation step running (not timed out).
    #[serde(default)]
    pub in_flight_remediations: i32,
    /// `Disabled` (condition `Disabled` is `True`), else `Paused` (`pauseRequests` set),
    /// else `Remediating` (a remediation is in progress), else `Enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The phase in more detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
    /// Conditions of type `Disabled` (`True` when the spec cannot be acted on, reason
    /// `InvalidSpec`; `False` with reason `HealthCheckEnabled` otherwise),
    /// `StormActive` (`True` from the moment fewer targets than the threshold are
    /// healthy until `stormCooldownDuration` after enough are again; only with
    /// `stormCooldownDuration`) and `StormCooldownActive` (`True` during that cooldown;
    /// its `lastTransitionTime` is when the cooldown started). The storm conditions'
    /// reason is `HealthyTargetThresholdChange`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// An unhealthy target and its remediations.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnhealthyTarget {
    /// The node's or pod's name.
    pub name: String,
    /// The pod's namespace (pods only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The steps started for this target, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remediations: Vec<Remediation>,
    /// When the unhealthy conditions stopped matching (RFC 3339); the target stays here,
    /// and unhealthy, until `healthyDelay` has passed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions_healthy_timestamp: Option<String>,
}

/// One remediation step started for a target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Remediation {
    /// The action.
    pub action: Action,
    /// When it started (RFC 3339).
    pub started: String,
    /// When its timeout passed with the target still unhealthy (RFC 3339); the next step
    /// then starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timed_out: Option<String>,
}

/// The phases of a HealthCheck.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Condition `Disabled` is `True`: nothing is checked or remediated.
    Disabled,
    /// `pauseRequests` is set: no new remediation starts.
    Paused,
    /// A remediation is in progress.
    Remediating,
    /// Checking, nothing to remediate.
    Enabled,
}

/// A status condition (`metav1.Condition`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Disabled`, `StormActive` or `StormCooldownActive`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// UpperCamelCase reason.
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// The generation of the spec the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Why a HealthCheck's numbers cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Both `minHealthy` and `maxUnhealthy` are set, or neither.
    #[error("exactly one of minHealthy and maxUnhealthy must be set")]
    Threshold,
    /// An int-or-percentage field that is negative or not a percentage.
    #[error("{field}: {value:?} is not a non-negative integer or a percentage up to 100%")]
    IntOrPercent {
        /// The field (`minHealthy`, ...).
        field: &'static str,
        /// Its value as written.
        value: String,
    },
    /// `maxUnhealthy` above the number of targets, as NHC refuses it.
    #[error("maxUnhealthy {max_unhealthy} is greater than the number of targets ({targets})")]
    MaxUnhealthyAboveTargets {
        /// `maxUnhealthy`, scaled.
        max_unhealthy: u32,
        /// The number of targets.
        targets: u32,
    },
}

impl HealthCheckSpec {
    /// How many of `targets` targets must be healthy for a new remediation to start:
    /// `minHealthy`, or `targets - maxUnhealthy`, percentages of `targets` rounded up
    /// (NHC's `getMinHealthy`). For 10 targets: `minHealthy` 25% gives 3, 51% gives 6;
    /// `maxUnhealthy` 25% gives 7, 49% gives 5.
    pub fn healthy_threshold(&self, targets: u32) -> Result<u32, Error> {
        match (&self.min_healthy, &self.max_unhealthy) {
            (Some(min), None) => scaled("minHealthy", min, targets),
            (None, Some(max)) => {
                let max_unhealthy = scaled("maxUnhealthy", max, targets)?;
                targets
                    .checked_sub(max_unhealthy)
                    .ok_or(Error::MaxUnhealthyAboveTargets {
                        max_unhealthy,
                        targets,
                    })
            }
            _ => Err(Error::Threshold),
        }
    }

    /// How many targets may be under remediation at once (`maxInFlight`, a percentage
    /// of `targets` rounded up); `None` when unlimited.
    pub fn max_in_flight(&self, targets: u32) -> Result<Option<u32>, Error> {
        self.max_in_flight
            .as_ref()
            .map(|v| scaled("maxInFlight", v, targets))
            .transpose()
    }
}

/// `value` (an integer, or a percentage of `total` rounded up) as a count.
fn scaled(field: &'static str, value: &IntOrString, total: u32) -> Result<u32, Error> {
    let bad = || Error::IntOrPercent {
        field,
        value: match value {
            IntOrString::Int(i) => i.to_string(),
            IntOrString::String(s) => s.clone(),
        },
    };
    match value {
        IntOrString::Int(i) => u32::try_from(*i).map_err(|_| bad()),
        IntOrString::String(s) => {
            let percent: u64 = s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse().ok())
                .filter(|p| *p <= 100)
                .ok_or_else(bad)?;
            let count = (percent * u64::from(total)).div_ceil(100);
            u32::try_from(count).map_err(|_| bad())
        }
    }
}

/// A Go duration as the schema's pattern accepts it (`"300s"`, `"1.5h"`, `"2h45m"`,
/// units `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`); `None` when it is not one.
pub fn parse_duration(text: &str) -> Option<Duration> {
    // "ms" before "m": the first unit the text starts with is taken.
    const UNITS: [(&str, u128); 7] = [
        ("ns", 1),
        ("us", 1_000),
        ("µs", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    let mut rest = text;
    let mut nanos: u128 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let whole_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if whole_len == 0 {
            return None;
        }
        let (whole, after) = rest.split_at(whole_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(f) => {
                let n = f.bytes().take_while(u8::is_ascii_digit).count();
                if n == 0 {
                    return None;
                }
                f.split_at(n)
            }
            None => ("", after),
        };
        let &(unit, scale) = UNITS.iter().find(|(u, _)| after.starts_with(u))?;
        let whole: u128 = whole.parse().ok()?;
        let mut value = whole.checked_mul(scale)?;
        let mut place = scale;
        for d in frac.bytes() {
            place /= 10;
            value = value.checked_add(u128::from(d - b'0') * place)?;
        }
        nanos = nanos.checked_add(value)?;
        rest = &after[unit.len()..];
    }
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

/// An int-or-string of the form NHC's schema allows: a non-negative integer or a
/// percentage up to 100% (the pattern checks strings only).
fn int_or_percent(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "pattern": "^((100|[0-9]{1,2})%|[0-9]+)$"
    })
}

/// The CRD as YAML, as checked in under `deploy/crds/healthcheck.yaml`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    let mut crd = serde_json::to_value(HealthCheck::crd()).unwrap_or_default();
    crate::plugin::drop_unknown_formats(&mut crd);
    let body = serde_yaml::to_string(&crd)?;
    Ok(format!(
        "# Generated from runtime/api/src/healthcheck.rs — do not edit; see that file.\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min: Option<IntOrString>, max: Option<IntOrString>) -> HealthCheckSpec {
        HealthCheckSpec {
            target: Target {
                kind: TargetKind::Node,
                namespace: None,
                namespace_selector: None,
            },
            selector: LabelSelector::default(),
            unhealthy_conditions: vec![],
            min_healthy: min,
            max_unhealthy: max,
            max_in_flight: None,
            escalating_remediations: vec![],
            pause_requests: vec![],
            healthy_delay: None,
            storm_cooldown_duration: None,
        }
    }

    fn pct(p: &str) -> IntOrString {
        IntOrString::String(p.into())
    }

    #[test]
    fn thresholds_round_up_as_nhc_does() {
        // NHC's getMinHealthy for 10 nodes (GetScaledValueFromIntOrPercent, roundUp).
        for (min, want) in [
            (pct("0%"), 0),
            (pct("10%"), 1),
            (pct("25%"), 3),
            (pct("51%"), 6),
            (pct("80%"), 8),
            (pct("100%"), 10),
            (IntOrString::Int(7), 7),
        ] {
            assert_eq!(
                spec(Some(min.clone()), None).healthy_threshold(10),
                Ok(want),
                "{min:?}"
            );
        }
        for (max, want) in [
            (pct("0%"), 10),
            (pct("10%"), 9),
            (pct("25%"), 7),
            (pct("49%"), 5),
            (IntOrString::Int(2), 8),
        ] {
            assert_eq!(
                spec(None, Some(max.clone())).healthy_threshold(10),
                Ok(want),
                "{max:?}"
            );
        }
    }

    #[test]
    fn unusable_thresholds_are_refused() {
        assert_eq!(spec(None, None).healthy_threshold(3), Err(Error::Threshold));
        let both = spec(Some(IntOrString::Int(1)), Some(IntOrString::Int(1)));
        assert_eq!(both.healthy_threshold(3), Err(Error::Threshold));
        assert_eq!(
            spec(None, Some(IntOrString::Int(4))).healthy_threshold(3),
            Err(Error::MaxUnhealthyAboveTargets {
                max_unhealthy: 4,
                targets: 3
            })
        );
        for bad in [
            IntOrString::Int(-1),
            pct("101%"),
            pct("5"),
            pct("%"),
            pct("-5%"),
        ] {
            let e = spec(Some(bad.clone()), None).healthy_threshold(3);
            assert!(
                matches!(e, Err(Error::IntOrPercent { .. })),
                "{bad:?}: {e:?}"
            );
        }
        let mut s = spec(Some(IntOrString::Int(1)), None);
        assert_eq!(s.max_in_flight(10), Ok(None));
        s.max_in_flight = Some(pct("15%"));
        assert_eq!(s.max_in_flight(10), Ok(Some(2)));
    }

    #[test]
    fn go_durations_parse() {
        for (text, want) in [
            ("300s", Duration::from_secs(300)),
            ("5m", Duration::from_secs(300)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5h", Duration::from_secs(5400)),
            ("2h45m0.5s", Duration::from_millis(9_900_500)),
            ("300ms", Duration::from_millis(300)),
            ("10µs", Duration::from_micros(10)),
            ("10us", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(text), Some(want), "{text}");
        }
        for bad in ["", "5", "m", "-5s", "1.s", ".5s", "5d", "5s ", "1h-1m"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn defaults_are_valid_for_their_kind() {
        for kind in [TargetKind::Node, TargetKind::Pod] {
            let steps = kind.default_escalation();
            assert!(steps.iter().all(|s| kind.allows(s.action)), "{kind:?}");
            assert!(steps.iter().all(|s| parse_duration(&s.timeout).is_some()));
            assert!(steps.windows(2).all(|w| w[0].order < w[1].order));
            let conditions = kind.default_unhealthy_conditions();
            assert!(
                conditions
                    .iter()
                    .all(|c| parse_duration(&c.duration).is_some())
            );
        }
        let node: Vec<_> = TargetKind::Node
            .default_escalation()
            .iter()
            .map(|s| (s.action, parse_duration(&s.timeout)))
            .collect();
        assert_eq!(
            node,
            [
                (Action::Cordon, Some(Duration::from_secs(60))),
                (Action::Drain, Some(Duration::from_secs(300))),
                (Action::OutOfService, Some(Duration::from_secs(300))),
                (Action::Reboot, Some(Duration::from_secs(600))),
            ]
        );
        assert!(!TargetKind::Pod.allows(Action::Reboot));
        assert!(!TargetKind::Node.allows(Action::DeletePod));
    }

    #[test]
    fn a_manifest_reads_and_writes_back() {
        let value = serde_json::json!({
            "target": {"kind": "Pod", "namespace": "shop"},
            "selector": {"matchLabels": {"app": "cart"}},
            "unhealthyConditions": [
                {"type": "Ready", "status": "False", "duration": "5m"},
                {"type": "CrashLoopBackOff", "status": "True", "duration": "60s"}],
            "maxUnhealthy": "25%",
            "maxInFlight": 1,
            "escalatingRemediations": [
                {"action": "restart-container", "order": 1, "timeout": "60s"},
                {"action": "delete-pod", "order": 2, "timeout": "2m"}],
            "pauseRequests": ["upgrade"],
            "healthyDelay": "30s",
            "stormCooldownDuration": "2m"
        });
        let s: HealthCheckSpec = serde_json::from_value(value.clone()).expect("reads");
        assert_eq!(s.target.kind, TargetKind::Pod);
        assert_eq!(s.escalating_remediations[1].action, Action::DeletePod);
        assert_eq!(s.healthy_threshold(8), Ok(6));
        assert_eq!(serde_json::to_value(&s).expect("writes"), value);
        let bad = serde_json::json!({"target": {"kind": "Pod"}, "selector": {},
            "escalatingRemediations": [{"action": "reboot-pod", "order": 1, "timeout": "1s"}]});
        assert!(serde_json::from_value::<HealthCheckSpec>(bad).is_err());
    }
}
