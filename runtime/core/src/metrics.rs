//! Prometheus metrics of the runtime: one family per concept, labelled by plugin,
//! revision and outcome (labels come from enums and contract names, never free text).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How a reconcile call ended: the `result` label of `bosun_reconciles_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReconcileResult {
    /// The plugin returned an outcome.
    Ok,
    /// The plugin returned an error of its own.
    Error,
    /// The guest trapped.
    Trap,
    /// The call ran past its deadline.
    Timeout,
    /// The instance ran out of memory.
    OutOfMemory,
    /// The call broke a per-call cap.
    Limit,
    /// No instance could be started.
    Instantiate,
}

impl ReconcileResult {
    /// The label value (`out-of-memory`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReconcileResult::Ok => "ok",
            ReconcileResult::Error => "error",
            ReconcileResult::Trap => "trap",
            ReconcileResult::Timeout => "timeout",
            ReconcileResult::OutOfMemory => "out-of-memory",
            ReconcileResult::Limit => "limit",
            ReconcileResult::Instantiate => "instantiate",
        }
    }
}

impl From<&bosun_host::call::Error> for ReconcileResult {
    fn from(e: &bosun_host::call::Error) -> Self {
        use bosun_host::call::Error as E;
        match e {
            E::Plugin { .. } => ReconcileResult::Error,
            E::Timeout { .. } => ReconcileResult::Timeout,
            E::OutOfMemory { .. } => ReconcileResult::OutOfMemory,
            E::Limit { .. } => ReconcileResult::Limit,
            E::Trap { .. } => ReconcileResult::Trap,
            E::Instantiate { .. } => ReconcileResult::Instantiate,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReconcileLabels {
    plugin: String,
    revision: String,
    result: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RevisionLabels {
    plugin: String,
    revision: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CommandLabels {
    plugin: String,
    revision: String,
    command: String,
    verdict: String,
    guardrail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    api_version: String,
    kind: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 100 µs to about 52 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

struct Inner {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_duration: HistogramFamily<RevisionLabels>,
    commands: Family<CommandLabels, Counter>,
    queue_depth: Family<PluginLabels, Gauge>,
    queue_in_flight: Family<PluginLabels, Gauge>,
    cache_objects: Family<KindLabels, Gauge>,
    undeclared_reads: Family<PluginLabels, Counter>,
    breaker_open: Family<PluginLabels, Gauge>,
    state_bytes: Family<PluginLabels, Gauge>,
    state_keys: Family<PluginLabels, Gauge>,
    leader: Gauge,
    admissions: Family<ReconcileLabels, Counter>,
    admission_duration: HistogramFamily<RevisionLabels>,
    /// Last total reported per plugin by [`Metrics::undeclared_reads`].
    undeclared_totals: Mutex<HashMap<String, u64>>,
}

/// The runtime's metrics. Cheap to clone; clones share the same series.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family registered, with no samples yet.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "bosun_reconciles",
            "Reconcile calls by plugin, revision and result",
            reconciles.clone(),
        );
        let reconcile_duration: HistogramFamily<RevisionLabels> =
            Family::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register(
            "bosun_reconcile_duration_seconds",
            "Time spent in reconcile calls",
            reconcile_duration.clone(),
        );
        let commands = Family::<CommandLabels, Counter>::default();
        registry.register(
            "bosun_commands",
            "Commands submitted by plugins, by verdict and refusing guardrail",
            commands.clone(),
        );
        let queue_depth = Family::<PluginLabels, Gauge>::default();
        registry.register(
            "bosun_queue_depth",
            "Keys waiting in a plugin's work queue",
            queue_depth.clone(),
        );
        let queue_in_flight = Family::<PluginLabels, Gauge>::default();
        registry.register(
            "bosun_queue_in_flight",
            "Keys of a plugin being reconciled",
            queue_in_flight.clone(),
        );
        let cache_objects = Family::<KindLabels, Gauge>::default();
        registry.register(
            "bosun_cache_objects",
            "Objects in the informer cache by kind",
            cache_objects.clone(),
        );
        let undeclared_reads = Family::<PluginLabels, Counter>::default();
        registry.register(
            "bosun_undeclared_reads",
            "Cache reads of kinds a plugin did not subscribe to (answered with nothing)",
            undeclared_reads.clone(),
        );
        let breaker_open = Family::<PluginLabels, Gauge>::default();
        registry.register(
            "bosun_breaker_open",
            "1 while a plugin's circuit breaker refuses commands (open or half-open)",
            breaker_open.clone(),
        );
        let state_bytes = Family::<PluginLabels, Gauge>::default();
        registry.register(
            "bosun_plugin_state_bytes",
            "Bytes (keys plus values) a plugin holds in its state",
            state_bytes.clone(),
        );
        let state_keys = Family::<PluginLabels, Gauge>::default();
        registry.register(
            "bosun_plugin_state_keys",
            "Keys a plugin holds in its state",
            state_keys.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "bosun_leader",
            "1 while this replica is the leader",
            leader.clone(),
        );
        let admissions = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "bosun_admission_reviews",
            "AdmissionReviews answered by plugin, revision and result (allowed, patched, denied, error, timeout, excluded)",
            admissions.clone(),
        );
        let admission_duration: HistogramFamily<RevisionLabels> =
            Family::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register(
            "bosun_admission_review_duration_seconds",
            "Time from an AdmissionReview's arrival to its answer",
            admission_duration.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                reconciles,
                reconcile_duration,
                commands,
                queue_depth,
                queue_in_flight,
                cache_objects,
                undeclared_reads,
                breaker_open,
                state_bytes,
                state_keys,
                leader,
                admissions,
                admission_duration,
                undeclared_totals: Mutex::default(),
            }),
        }
    }

    /// Counts a reconcile call and observes its duration. `result` is one of
    /// [`ReconcileResult`]'s names (`ok`, `error`, `trap`, `timeout`, `out-of-memory`,
    /// `limit`, `instantiate`).
    pub fn reconcile(&self, plugin: &str, revision: &str, result: &str, duration: Duration) {
        self.inner
            .reconciles
            .get_or_create(&ReconcileLabels {
                plugin: plugin.to_owned(),
                revision: revision.to_owned(),
                result: result.to_owned(),
            })
            .inc();
        self.inner
            .reconcile_duration
            .get_or_create(&RevisionLabels {
                plugin: plugin.to_owned(),
                revision: revision.to_owned(),
            })
            .observe(duration.as_secs_f64());
    }

    /// Counts an AdmissionReview answered by `plugin`'s `revision` and observes how long
    /// it took. `result` is `allowed`, `patched`, `denied`, `error`, `timeout` or
    /// `excluded` (the namespace is never sent to plugins).
    pub fn admission(&self, plugin: &str, revision: &str, result: &str, duration: Duration) {
        self.inner
            .admissions
            .get_or_create(&ReconcileLabels {
                plugin: plugin.to_owned(),
                revision: revision.to_owned(),
                result: result.to_owned(),
            })
            .inc();
        self.inner
            .admission_duration
            .get_or_create(&RevisionLabels {
                plugin: plugin.to_owned(),
                revision: revision.to_owned(),
            })
            .observe(duration.as_secs_f64());
    }

    /// Counts a command's verdict. `command` is `Command::name()`, `verdict` is
    /// `Verdict::as_str()`, `guardrail` the refusing guardrail's `Guardrail::as_str()`, or
    /// `""` when the command was not refused.
    pub fn command(
        &self,
        plugin: &str,
        revision: &str,
        command: &str,
        verdict: &str,
        guardrail: &str,
    ) {
        self.inner
            .commands
            .get_or_create(&CommandLabels {
                plugin: plugin.to_owned(),
                revision: revision.to_owned(),
                command: command.to_owned(),
                verdict: verdict.to_owned(),
                guardrail: guardrail.to_owned(),
            })
            .inc();
    }

    /// Sets a plugin's queue gauges.
    pub fn queue(&self, plugin: &str, depth: usize, in_flight: usize) {
        let labels = PluginLabels {
            plugin: plugin.to_owned(),
        };
        self.inner
            .queue_depth
            .get_or_create(&labels)
            .set(to_i64(depth));
        self.inner
            .queue_in_flight
            .get_or_create(&labels)
            .set(to_i64(in_flight));
    }

    /// Sets the number of cached objects of a kind.
    pub fn cache_objects(&self, api_version: &str, kind: &str, count: usize) {
        self.inner
            .cache_objects
            .get_or_create(&KindLabels {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
            })
            .set(to_i64(count));
    }

    /// Counts a read of a kind the plugin did not declare.
    pub fn undeclared_read(&self, plugin: &str) {
        self.inner
            .undeclared_reads
            .get_or_create(&PluginLabels {
                plugin: plugin.to_owned(),
            })
            .inc();
    }

    /// Brings a plugin's undeclared-read counter up to `total`, a running total kept
    /// elsewhere (the host's per-revision stats). A total smaller than the last one means
    /// a new count started (a new revision): all of it is added.
    pub fn undeclared_reads(&self, plugin: &str, total: u64) {
        let delta = {
            let mut totals = self
                .inner
                .undeclared_totals
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let last = totals.insert(plugin.to_owned(), total).unwrap_or(0);
            if total >= last { total - last } else { total }
        };
        if delta > 0 {
            self.inner
                .undeclared_reads
                .get_or_create(&PluginLabels {
                    plugin: plugin.to_owned(),
                })
                .inc_by(delta);
        }
    }

    /// Sets whether a plugin's breaker refuses commands.
    pub fn breaker_open(&self, plugin: &str, open: bool) {
        self.inner
            .breaker_open
            .get_or_create(&PluginLabels {
                plugin: plugin.to_owned(),
            })
            .set(i64::from(open));
    }

    /// Sets what a plugin's state holds.
    pub fn plugin_state(&self, plugin: &str, bytes: usize, keys: usize) {
        let labels = PluginLabels {
            plugin: plugin.to_owned(),
        };
        self.inner
            .state_bytes
            .get_or_create(&labels)
            .set(to_i64(bytes));
        self.inner
            .state_keys
            .get_or_create(&labels)
            .set(to_i64(keys));
    }

    /// Sets whether this replica leads.
    pub fn leader(&self, leader: bool) {
        self.inner.leader.set(i64::from(leader));
    }

    /// Drops a plugin's gauges (after it is unloaded). Counters are kept: they are
    /// cumulative.
    pub fn forget_plugin(&self, plugin: &str) {
        let labels = PluginLabels {
            plugin: plugin.to_owned(),
        };
        self.inner.queue_depth.remove(&labels);
        self.inner.queue_in_flight.remove(&labels);
        self.inner.breaker_open.remove(&labels);
        self.inner.state_bytes.remove(&labels);
        self.inner.state_keys.remove(&labels);
        self.inner
            .undeclared_totals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(plugin);
    }

    /// Every family in the OpenMetrics text format (which Prometheus scrapes); serve it
    /// with [`CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry) {
            // Writing to a String cannot fail; keep what was written.
            tracing::error!(error = %e, "metrics could not be encoded");
        }
        out
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_host::contract::Verdict;

    #[test]
    fn encode_contains_recorded_samples_with_labels() {
        let m = Metrics::new();
        let ok = ReconcileResult::Ok.as_str();
        m.reconcile("release", "sha256:ab", ok, Duration::from_millis(3));
        let oom = ReconcileResult::OutOfMemory.as_str();
        m.reconcile("release", "sha256:ab", oom, Duration::from_millis(1));
        let (refused, executed) = (Verdict::Refused.as_str(), Verdict::Executed.as_str());
        m.command("release", "sha256:ab", "evict", refused, "budget");
        m.command("release", "sha256:ab", "evict", executed, "");
        m.queue("release", 7, 2);
        m.cache_objects("v1", "Pod", 120);
        m.undeclared_read("release");
        m.undeclared_reads("release", 5);
        m.undeclared_reads("release", 7);
        // A new revision counts from zero again.
        m.undeclared_reads("release", 2);
        m.breaker_open("release", true);
        m.leader(true);
        let text = m.encode();
        for expected in [
            r#"bosun_reconciles_total{plugin="release",revision="sha256:ab",result="ok"} 1"#,
            r#"bosun_reconciles_total{plugin="release",revision="sha256:ab",result="out-of-memory"} 1"#,
            r#"bosun_reconcile_duration_seconds_count{plugin="release",revision="sha256:ab"} 2"#,
            r#"bosun_reconcile_duration_seconds_bucket{le="0.0001",plugin="release",revision="sha256:ab"} 0"#,
            r#"bosun_commands_total{plugin="release",revision="sha256:ab",command="evict",verdict="refused",guardrail="budget"} 1"#,
            r#"bosun_commands_total{plugin="release",revision="sha256:ab",command="evict",verdict="executed",guardrail=""} 1"#,
            r#"bosun_queue_depth{plugin="release"} 7"#,
            r#"bosun_queue_in_flight{plugin="release"} 2"#,
            r#"bosun_cache_objects{api_version="v1",kind="Pod"} 120"#,
            r#"bosun_undeclared_reads_total{plugin="release"} 10"#,
            r#"bosun_breaker_open{plugin="release"} 1"#,
            "bosun_leader 1",
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
        m.forget_plugin("release");
        let text = m.encode();
        assert!(!text.contains(r#"bosun_queue_depth{plugin="release"}"#));
        assert!(text.contains(r#"bosun_undeclared_reads_total{plugin="release"} 10"#));
    }

    #[test]
    fn host_errors_map_to_result_labels() {
        let e = bosun_host::call::Error::Timeout {
            plugin: "p".into(),
            op: "reconcile",
            deadline: Duration::from_secs(1),
        };
        assert_eq!(ReconcileResult::from(&e).as_str(), "timeout");
    }
}
