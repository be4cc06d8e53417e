//! Disruption budgets: limits on how much of the cluster commands may take out of service
//! at once, judged against the informer cache.
//!
//! Where a command is refused for disruption, by stage:
//!
//! - [`disruption`]: what a command does to the cluster — the pod it takes out of
//!   service (an eviction, a deletion, an image patch, a readiness gate set False) or the
//!   node it cordons or taints;
//! - [`in_flight`]: what admitted commands are disrupting right now, before the cache
//!   shows it;
//! - [`nodes`], [`workload`] and [`pdb`]: the budgets themselves, each deciding "is
//!   this allowed?" from the cache and what is in flight, and saying why not as a
//!   [`Refusal`];
//! - [`limit`]: the `2` or `"25%"` a budget is configured with, and [`Policy`]: which
//!   [`Settings`] apply to a plugin's command in a namespace.
//!
//! The cache lags behind the commands: ten evictions submitted in one reconcile would all
//! see the same, still healthy, workload. So each built-in budget keeps a short-lived
//! record of what it admitted ([`Budget::admitted`]) and counts those objects as already
//! disrupted until the cache shows the change, the executor reports it
//! ([`Budget::settle`]), or [`IN_FLIGHT_TTL`] passes.
//!
//! What disrupts a pod: an eviction, a deletion, and any patch or apply whose effect on
//! the cached pod changes its containers' images (the kubelet restarts them in place) or
//! sets one of its readiness-gate conditions False (it leaves the endpoints). So a
//! release updating pods in place and a remediation plugin evicting them share one
//! budget.

use std::sync::Arc;
use std::time::Instant;

use bosun_host::contract::{Command, ObjectRef};
use serde::Deserialize;

pub mod disruption;
pub mod in_flight;
pub mod limit;
pub mod nodes;
pub mod pdb;
mod pod;
pub mod workload;

#[cfg(test)]
pub(crate) mod fixtures;

pub use in_flight::IN_FLIGHT_TTL;
pub use limit::Limit;
pub use nodes::MaxCordonedNodes;
pub use pdb::PodDisruptionBudgets;
pub use workload::{MaxUnavailable, MinHealthyShare};

/// The budget settings that apply to one plugin's commands in one namespace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Most pods of a workload unavailable at once; `None` is off.
    pub max_unavailable: Option<Limit>,
    /// Smallest share of a workload's pods kept healthy; `None` is off.
    pub min_healthy_share: Option<f64>,
    /// Whether the PodDisruptionBudgets covering a pod are kept.
    pub pod_disruption_budgets: bool,
    /// Most nodes out of service at once (a count, or a share of the nodes); `None` is
    /// off.
    pub max_cordoned_nodes: Option<Limit>,
}

impl Settings {
    /// Every budget off.
    pub const OFF: Settings = Settings {
        max_unavailable: None,
        min_healthy_share: None,
        pod_disruption_budgets: false,
        max_cordoned_nodes: None,
    };
}

/// Which settings apply to a plugin's command on an object in a namespace (`None` for a
/// cluster-scoped object): the runtime's configuration, with its per-namespace and
/// per-plugin overrides.
pub trait Policy: Send + Sync + std::fmt::Debug {
    /// The settings for `plugin` acting in `namespace`.
    fn settings(&self, plugin: &str, namespace: Option<&str>) -> Settings;
}

/// The same settings for every plugin everywhere.
impl Policy for Settings {
    fn settings(&self, _plugin: &str, _namespace: Option<&str>) -> Settings {
        *self
    }
}

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
///
/// [`Guardrails`](super::Guardrails) asks budgets only about destructive commands (a
/// deletion or eviction, or a patch or apply that takes a pod or a node out of service,
/// as [`disruption`] judges it) and uncordons; other commands pass them untouched.
pub trait Budget: Send + Sync {
    /// The budget's name (`max-unavailable`), used in refusal messages.
    fn name(&self) -> &str;

    /// Whether `plugin` may run `cmd` now. A refusal says what would break and the
    /// numbers (its text is shown to the plugin and kept in the audit trail).
    #[expect(
        clippy::result_large_err,
        reason = "a refusal carries the pod it names; it is built at most once per command"
    )]
    fn check(
        &self,
        plugin: &str,
        cmd: &Command,
        view: &dyn View,
        now: Instant,
    ) -> Result<(), Refusal>;

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

/// Why a budget refused a command: one variant per budget rule, carrying its numbers.
///
/// The text (lowercase, no trailing period) is what the plugin sees and the audit trail
/// keeps, after the `budget <name>: ` prefix the guardrails add.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// Cordoning or tainting `node` would put more nodes out of service than
    /// [`MaxCordonedNodes`] allows.
    #[error(
        "{} nodes are already unschedulable or being cordoned ({}), the limit is {limit}; \
         refusing to {command} node {node}",
        .out.len(),
        sample(.out)
    )]
    TooManyNodesOut {
        /// The nodes already unschedulable or being cordoned, sorted, without `node`.
        out: Vec<String>,
        /// The most nodes out of service at once.
        limit: u32,
        /// The refused command's name (`cordon`, `taint`).
        command: &'static str,
        /// The node the command would take out.
        node: String,
    },
    /// Disrupting `pod` would make more of its workload unavailable than
    /// [`MaxUnavailable`] allows.
    #[error(
        "{disruption} {pod} would make {unavailable} of {expected} pods of {workload} \
         unavailable, over the limit of {allowed}{}",
        percent_of(*.limit)
    )]
    TooManyUnavailable {
        /// How the command disrupts the pod.
        disruption: disruption::Kind,
        /// The pod.
        pod: ObjectRef,
        /// Pods of the workload unavailable if the command ran.
        unavailable: u32,
        /// Pods the workload should have.
        expected: u32,
        /// The workload (`ReplicaSet web-5d8f`).
        workload: String,
        /// The limit for this workload's size.
        allowed: u32,
        /// The limit as configured.
        limit: Limit,
    },
    /// Disrupting `pod` would leave a smaller share of its workload healthy than
    /// [`MinHealthyShare`] requires.
    #[error(
        "{disruption} {pod} would leave {left} of {expected} pods of {workload} healthy \
         ({:.0}%), below the minimum of {:.0}%",
        .share * 100.0,
        .minimum * 100.0
    )]
    TooFewHealthy {
        /// How the command disrupts the pod.
        disruption: disruption::Kind,
        /// The pod.
        pod: ObjectRef,
        /// Healthy pods of the workload left if the command ran.
        left: u32,
        /// Pods the workload should have.
        expected: u32,
        /// The workload (`ReplicaSet web-5d8f`).
        workload: String,
        /// `left` as a share of `expected`, 0 to 1.
        share: f64,
        /// The smallest share allowed, 0 to 1.
        minimum: f64,
    },
    /// Disrupting `pod` would leave fewer of the pods a PodDisruptionBudget selects
    /// healthy than it requires.
    #[error(
        "{disruption} {pod} would leave {left} of {expected} pods selected by \
         PodDisruptionBudget {pdb} healthy, it requires {desired}"
    )]
    PodDisruptionBudget {
        /// How the command disrupts the pod.
        disruption: disruption::Kind,
        /// The pod.
        pod: ObjectRef,
        /// The PodDisruptionBudget (`namespace/name`).
        pdb: String,
        /// Healthy pods it selects that would be left.
        left: u32,
        /// Pods it expects (`status.expectedPods`, else the pods it selects).
        expected: u32,
        /// Healthy pods it requires (from `minAvailable` or `maxUnavailable`).
        desired: u32,
    },
    /// A budget added with
    /// [`Guardrails::with_budget`](super::Guardrails::with_budget) refused, for a
    /// reason of its own: the text is its message.
    #[error("{0}")]
    Custom(String),
}

/// Up to five names, then `, ...` when there are more.
fn sample(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().map(String::as_str).take(5).collect();
    let more = if names.len() > shown.len() {
        ", ..."
    } else {
        ""
    };
    format!("{}{more}", shown.join(", "))
}

/// ` (25%)` for a percentage limit, nothing for a count.
fn percent_of(limit: Limit) -> String {
    match limit {
        Limit::Percent(p) => format!(" ({p}%)"),
        Limit::Count(_) => String::new(),
    }
}
