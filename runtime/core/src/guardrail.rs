//! The command pipe's checks: every command a plugin submits passes the guardrails before
//! the executor may run it.
//!
//! [`Guardrails::admit`] checks, in order: the plugin's circuit breaker (refuse while
//! open), the rate limits (the plugin's bucket, then the global one), the disruption
//! budgets, and the dry-run switch. Permission and schema checks happen before, in the
//! pipe; [`Guardrail`] names them too so every refusal has one metric label.
//!
//! Everything here is synchronous and cheap (it runs inside a plugin call, on a blocking
//! thread) and takes the time as an argument, so tests are deterministic.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bosun_host::contract::{Command, ObjectRef};
use serde::{Deserialize, Serialize};

pub mod breaker;
pub mod budget;
pub mod destructive;
mod rate;

pub use budget::{
    Budget, Limit, MaxCordonedNodes, MaxUnavailable, MinHealthyShare, PodDisruptionBudgets, View,
};
pub use rate::{Rate, TokenBucket};

/// A guardrail configuration that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A setting is out of its range.
    #[error("guardrail config: {field} {problem}")]
    Invalid {
        /// The setting, as written in the config file (`breaker.failureRatio`).
        field: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
}

/// The result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The guardrails' settings, as written in Bosun's config file (camelCase; every field
/// has a default).
///
/// Safe by default: with no configuration, at most 25% of a workload's pods (at least
/// one) may be out of service through plugin commands, the PodDisruptionBudgets covering
/// a pod are kept, at most 10% of the nodes (at least one) may be cordoned or tainted
/// out, and each plugin may have 60 destructive commands admitted per minute, the same
/// one on the same object once a minute. Each is switched off with `off` (or `false` for
/// `podDisruptionBudgets`), for the runtime, per namespace (`namespaces`) or per plugin
/// (`plugins`); a plugin's setting wins over its target's namespace's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Config {
    /// All plugins together. Default 100 commands/s, burst 200.
    pub global: Rate,
    /// Each plugin. Default 20 commands/s, burst 50.
    pub per_plugin: Rate,
    /// Plugins with their own rate, by plugin name.
    pub per_plugin_overrides: HashMap<String, Rate>,
    /// The circuit breaker of each plugin.
    pub breaker: breaker::Config,
    /// Plugins whose commands are checked and recorded but never executed.
    pub dry_run: HashSet<String>,
    /// Most nodes out of service at once ([`MaxCordonedNodes`]): a count, or a share of
    /// the nodes rounded down but at least 1. Default `"10%"`.
    #[serde(
        deserialize_with = "budget::limit::or_off",
        serialize_with = "budget::limit::serialize_or_off"
    )]
    pub max_cordoned_nodes: Option<Limit>,
    /// Most pods of a workload unavailable at once, `2` or `"25%"` (rounded down, at
    /// least 1) ([`MaxUnavailable`]). Default `"25%"`.
    #[serde(
        deserialize_with = "budget::limit::or_off",
        serialize_with = "budget::limit::serialize_or_off"
    )]
    pub max_unavailable: Option<Limit>,
    /// Smallest share of a workload's pods kept healthy, 0 to 1 ([`MinHealthyShare`]);
    /// off unless set.
    pub min_healthy_share: Option<f64>,
    /// Keep the PodDisruptionBudgets covering a pod ([`PodDisruptionBudgets`]). Default
    /// true.
    pub pod_disruption_budgets: bool,
    /// Destructive commands per plugin per minute, and the cooldown of the same one.
    pub destructive: destructive::Config,
    /// Budget settings for commands on objects in a namespace, by namespace.
    pub namespaces: HashMap<String, Overrides>,
    /// Budget and destructive-rate settings for a plugin's commands, by plugin name.
    pub plugins: HashMap<String, Overrides>,
}

/// Settings that replace the runtime's for a namespace or a plugin; what is not written
/// is inherited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Overrides {
    /// As [`Config::max_unavailable`]; `off` switches it off here.
    #[serde(
        deserialize_with = "budget::limit::override_or_off",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_unavailable: Option<Option<Limit>>,
    /// As [`Config::min_healthy_share`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_healthy_share: Option<f64>,
    /// As [`Config::pod_disruption_budgets`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_disruption_budgets: Option<bool>,
    /// As [`Config::max_cordoned_nodes`] (per plugin only: nodes have no namespace).
    #[serde(
        deserialize_with = "budget::limit::override_or_off",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_cordoned_nodes: Option<Option<Limit>>,
    /// As [`Config::destructive`] (per plugin only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destructive: Option<destructive::Config>,
}

impl Overrides {
    fn apply(&self, s: &mut budget::Settings) {
        if let Some(v) = self.max_unavailable {
            s.max_unavailable = v;
        }
        if let Some(v) = self.min_healthy_share {
            s.min_healthy_share = Some(v);
        }
        if let Some(v) = self.pod_disruption_budgets {
            s.pod_disruption_budgets = v;
        }
        if let Some(v) = self.max_cordoned_nodes {
            s.max_cordoned_nodes = v;
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            global: Rate::new(100.0, 200),
            per_plugin: Rate::new(20.0, 50),
            per_plugin_overrides: HashMap::new(),
            breaker: breaker::Config::default(),
            dry_run: HashSet::new(),
            max_cordoned_nodes: Some(Limit::Percent(10)),
            max_unavailable: Some(Limit::Percent(25)),
            min_healthy_share: None,
            pod_disruption_budgets: true,
            destructive: destructive::Config::default(),
            namespaces: HashMap::new(),
            plugins: HashMap::new(),
        }
    }
}

impl budget::Policy for Config {
    fn settings(&self, plugin: &str, namespace: Option<&str>) -> budget::Settings {
        let mut s = budget::Settings {
            max_unavailable: self.max_unavailable,
            min_healthy_share: self.min_healthy_share,
            pod_disruption_budgets: self.pod_disruption_budgets,
            max_cordoned_nodes: self.max_cordoned_nodes,
        };
        if let Some(o) = namespace.and_then(|ns| self.namespaces.get(ns)) {
            o.apply(&mut s);
        }
        if let Some(o) = self.plugins.get(plugin) {
            o.apply(&mut s);
        }
        s
    }
}

impl Config {
    /// Checks every setting is in range.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &str, problem: &str| {
            Err(Error::Invalid {
                field: field.to_owned(),
                problem: problem.to_owned(),
            })
        };
        let rate = |field: &str, rate: &Rate| {
            if !(rate.per_second.is_finite() && rate.per_second > 0.0) {
                return invalid(
                    &format!("{field}.perSecond"),
                    "must be a positive number of commands per second",
                );
            }
            if rate.burst == 0 {
                return invalid(&format!("{field}.burst"), "must be at least 1");
            }
            Ok(())
        };
        rate("global", &self.global)?;
        rate("perPlugin", &self.per_plugin)?;
        for (plugin, r) in &self.per_plugin_overrides {
            rate(&format!("perPluginOverrides.{plugin}"), r)?;
        }
        let b = &self.breaker;
        if !(b.failure_ratio > 0.0 && b.failure_ratio <= 1.0) {
            return invalid("breaker.failureRatio", "must be above 0 and at most 1");
        }
        if b.min_samples == 0 {
            return invalid("breaker.minSamples", "must be at least 1");
        }
        if b.window.is_zero() {
            return invalid("breaker.window", "must be longer than 0s");
        }
        let share = |field: &str, share: Option<f64>| match share {
            Some(s) if !(0.0..=1.0).contains(&s) => invalid(field, "must be between 0 and 1"),
            _ => Ok(()),
        };
        share("minHealthyShare", self.min_healthy_share)?;
        for (scope, map) in [("namespaces", &self.namespaces), ("plugins", &self.plugins)] {
            for (name, o) in map {
                share(
                    &format!("{scope}.{name}.minHealthyShare"),
                    o.min_healthy_share,
                )?;
                if scope == "namespaces" && o.max_cordoned_nodes.is_some() {
                    return invalid(
                        &format!("namespaces.{name}.maxCordonedNodes"),
                        "is not a namespace setting (nodes have no namespace); set it for \
                         the runtime or per plugin",
                    );
                }
                if scope == "namespaces" && o.destructive.is_some() {
                    return invalid(
                        &format!("namespaces.{name}.destructive"),
                        "is not a namespace setting; set it for the runtime or per plugin",
                    );
                }
            }
        }
        Ok(())
    }

    /// The settings in force, in words, one line per scope (`bosun status` prints them):
    /// the runtime's first, then each namespace's and plugin's overrides.
    pub fn summary(&self) -> Vec<String> {
        let limit = |l: Option<Limit>, of: &str| match l {
            None => "off".to_owned(),
            Some(Limit::Count(n)) => n.to_string(),
            Some(l @ Limit::Percent(_)) => format!("{l} of {of} (at least 1)"),
        };
        let destructive = |d: &destructive::Config| {
            let rate = match d.per_minute {
                Some(l) => format!("{l}/min per plugin"),
                None => "no ceiling".to_owned(),
            };
            let cooldown = if d.cooldown.is_zero() {
                "no cooldown".to_owned()
            } else {
                format!("cooldown {}", fmt_duration(d.cooldown))
            };
            format!("destructive commands {rate}, {cooldown}")
        };
        let mut lines = vec![format!(
            "max-unavailable {}; pod-disruption-budgets {}; max-cordoned-nodes {}; \
             min-healthy-share {}; {}; rate {} per plugin, {} in all",
            limit(self.max_unavailable, "each workload's pods"),
            if self.pod_disruption_budgets {
                "kept"
            } else {
                "off"
            },
            limit(self.max_cordoned_nodes, "the nodes"),
            self.min_healthy_share
                .map_or_else(|| "off".to_owned(), |s| format!("{:.0}%", s * 100.0)),
            destructive(&self.destructive),
            self.per_plugin,
            self.global,
        )];
        let overrides = |o: &Overrides| {
            let mut parts = Vec::new();
            if let Some(l) = o.max_unavailable {
                parts.push(format!(
                    "max-unavailable {}",
                    limit(l, "each workload's pods")
                ));
            }
            if let Some(b) = o.pod_disruption_budgets {
                parts.push(format!(
                    "pod-disruption-budgets {}",
                    if b { "kept" } else { "off" }
                ));
            }
            if let Some(l) = o.max_cordoned_nodes {
                parts.push(format!("max-cordoned-nodes {}", limit(l, "the nodes")));
            }
            if let Some(s) = o.min_healthy_share {
                parts.push(format!("min-healthy-share {:.0}%", s * 100.0));
            }
            if let Some(d) = &o.destructive {
                parts.push(destructive(d));
            }
            parts.join("; ")
        };
        let mut scoped: Vec<String> = self
            .namespaces
            .iter()
            .map(|(ns, o)| format!("namespace {ns}: {}", overrides(o)))
            .chain(
                self.plugins
                    .iter()
                    .map(|(p, o)| format!("plugin {p}: {}", overrides(o))),
            )
            .collect();
        scoped.sort();
        lines.extend(scoped);
        if !self.dry_run.is_empty() {
            let mut names: Vec<&str> = self.dry_run.iter().map(String::as_str).collect();
            names.sort_unstable();
            lines.push(format!("dry-run: {}", names.join(", ")));
        }
        lines
    }

    fn rate_of(&self, plugin: &str) -> Rate {
        self.per_plugin_overrides
            .get(plugin)
            .copied()
            .unwrap_or(self.per_plugin)
    }

    /// The destructive-rate settings of `plugin`.
    pub fn destructive_of(&self, plugin: &str) -> destructive::Config {
        self.plugins
            .get(plugin)
            .and_then(|o| o.destructive)
            .unwrap_or(self.destructive)
    }

    /// Whether any plugin or namespace may have the budget `pick` on (to know which
    /// kinds the runtime must watch).
    pub fn any(&self, pick: impl Fn(&budget::Settings) -> bool) -> bool {
        let base = budget::Policy::settings(self, "", None);
        pick(&base)
            || self
                .namespaces
                .values()
                .chain(self.plugins.values())
                .any(|o| {
                    let mut s = base;
                    o.apply(&mut s);
                    pick(&s)
                })
    }
}

/// Which guardrail refused a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guardrail {
    /// The plugin did not declare the verb on the kind (checked by the pipe).
    Permission,
    /// The command is malformed (checked by the pipe).
    Schema,
    /// A token bucket was empty.
    RateLimit,
    /// A disruption budget would be exceeded.
    Budget,
    /// The plugin's circuit breaker is open.
    Breaker,
    /// The plugin had its ceiling of destructive commands admitted in the last minute.
    DestructiveRate,
    /// The same destructive command on the same object executed within its cooldown.
    Cooldown,
}

impl Guardrail {
    /// The guardrail's name (`rate-limit`): a metric label and an audit field.
    pub fn as_str(self) -> &'static str {
        match self {
            Guardrail::Permission => "permission",
            Guardrail::Schema => "schema",
            Guardrail::RateLimit => "rate-limit",
            Guardrail::Budget => "budget",
            Guardrail::Breaker => "breaker",
            Guardrail::DestructiveRate => "destructive-rate",
            Guardrail::Cooldown => "cooldown",
        }
    }
}

impl std::fmt::Display for Guardrail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The guardrail that refused it.
    pub guardrail: Guardrail,
    /// For the plugin and the audit trail: the guardrail and its numbers.
    pub message: String,
    /// When trying again could succeed, if that is known (rate limits, breaker).
    pub retry_after: Option<Duration>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The guardrails' decision on one command.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Run it.
    Execute,
    /// The plugin is in dry-run: record the command, do not run it.
    DryRun,
    /// Do not run it.
    Refused(Refusal),
}

struct PluginState {
    rate: Rate,
    bucket: TokenBucket,
    breaker: breaker::Breaker,
}

struct State {
    global: TokenBucket,
    plugins: HashMap<String, PluginState>,
    dry_run: HashSet<String>,
}

/// The budgets and the destructive-rate limiter: checked and told about admissions under
/// one lock, so two commands admitted at once cannot both take the last unit of a budget.
struct Disruptive {
    budgets: Vec<Box<dyn Budget>>,
    destructive: destructive::Limiter,
}

/// The guardrails of one runtime: shared by every plugin, safe to call from many threads.
pub struct Guardrails {
    config: Arc<Config>,
    state: Mutex<State>,
    disruptive: Mutex<Disruptive>,
}

impl std::fmt::Debug for Guardrails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guardrails")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Guardrails {
    /// Guardrails with the built-in budgets the config enables for some plugin or
    /// namespace (each budget asks the config which settings apply to a command).
    pub fn new(config: Config) -> Result<Self> {
        config.validate()?;
        let config = Arc::new(config);
        let policy: Arc<dyn budget::Policy> = config.clone();
        let mut budgets: Vec<Box<dyn Budget>> = Vec::new();
        if config.any(|s| s.max_cordoned_nodes.is_some()) {
            budgets.push(Box::new(MaxCordonedNodes::with_policy(policy.clone())));
        }
        if config.any(|s| s.max_unavailable.is_some()) {
            budgets.push(Box::new(MaxUnavailable::with_policy(policy.clone())));
        }
        if config.any(|s| s.pod_disruption_budgets) {
            budgets.push(Box::new(PodDisruptionBudgets::with_policy(policy.clone())));
        }
        if config.any(|s| s.min_healthy_share.is_some()) {
            budgets.push(Box::new(MinHealthyShare::with_policy(policy)));
        }
        Ok(Guardrails {
            state: Mutex::new(State {
                global: config.global.bucket(),
                plugins: HashMap::new(),
                dry_run: config.dry_run.clone(),
            }),
            config,
            disruptive: Mutex::new(Disruptive {
                budgets,
                destructive: destructive::Limiter::default(),
            }),
        })
    }

    /// Adds a budget of one's own, checked after the built-in ones.
    pub fn with_budget(mut self, budget: Box<dyn Budget>) -> Self {
        self.disruptive
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .budgets
            .push(budget);
        self
    }

    fn disruptive(&self) -> MutexGuard<'_, Disruptive> {
        self.disruptive
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The configuration these guardrails were built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent, so a panic elsewhere cannot poison it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decides whether `plugin` may run `cmd` at `now`: breaker, then rate limits (plugin,
    /// then global), then, for a destructive command, its cooldown and the plugin's
    /// destructive rate, then budgets, then dry-run. A command refused by one bucket
    /// takes no token from the other. Commands in dry-run take rate tokens (they show
    /// what would happen) but are not counted by the budgets or the destructive rate
    /// afterwards.
    pub fn admit(&self, plugin: &str, cmd: &Command, view: &dyn View, now: Instant) -> Admission {
        let (probe, dry_run) = {
            let mut guard = self.state();
            let state = &mut *guard;
            if !state.plugins.contains_key(plugin) {
                let rate = self.config.rate_of(plugin);
                state.plugins.insert(
                    plugin.to_owned(),
                    PluginState {
                        rate,
                        bucket: rate.bucket(),
                        breaker: breaker::Breaker::new(self.config.breaker.clone()),
                    },
                );
            }
            let Some(ps) = state.plugins.get_mut(plugin) else {
                unreachable!("inserted above");
            };
            let probe = match ps.breaker.allow(now) {
                Ok(admitted) => admitted == breaker::Admitted::Probe,
                Err(tripped) => {
                    let message = match tripped.retry_after {
                        Some(wait) => format!(
                            "circuit breaker: plugin {plugin} is open after {} of {} commands \
                             failed within {}; retry in {}",
                            tripped.failures,
                            tripped.samples,
                            fmt_duration(self.config.breaker.window),
                            fmt_duration(wait),
                        ),
                        None => format!(
                            "circuit breaker: plugin {plugin} is half-open and waits for the \
                             result of its probe command"
                        ),
                    };
                    return Admission::Refused(Refusal {
                        guardrail: Guardrail::Breaker,
                        message,
                        retry_after: tripped.retry_after,
                    });
                }
            };
            let refused = if let Err(wait) = ps.bucket.check(now) {
                Some((format!("plugin {plugin}"), ps.rate, wait))
            } else if let Err(wait) = state.global.try_take(now) {
                Some(("all plugins together".to_owned(), self.config.global, wait))
            } else {
                let _ = ps.bucket.try_take(now);
                None
            };
            if let Some((who, rate, wait)) = refused {
                if probe {
                    ps.breaker.cancel_probe();
                }
                return Admission::Refused(Refusal {
                    guardrail: Guardrail::RateLimit,
                    message: format!(
                        "rate limit: {who} exceeded {rate}; retry in {}",
                        fmt_duration(wait)
                    ),
                    retry_after: Some(wait),
                });
            }
            (probe, state.dry_run.contains(plugin))
        };

        let refusal = {
            let mut guard = self.disruptive();
            let Disruptive {
                budgets,
                destructive,
            } = &mut *guard;
            let limits = self.config.destructive_of(plugin);
            let is_destructive = budget::disruption::is_destructive(cmd, view);
            let mut refusal = if is_destructive {
                destructive
                    .check(plugin, cmd, &limits, now)
                    .err()
                    .map(|why| destructive_refusal(plugin, cmd, &why))
            } else {
                None
            };
            // Budgets concern what takes capacity out (and an uncordon, which gives a
            // node back): any other command, most of them, is not judged again by each.
            let budgeted = is_destructive || matches!(cmd, Command::Uncordon(_));
            if refusal.is_none() && budgeted {
                refusal = budgets.iter().find_map(|budget| {
                    budget
                        .check(plugin, cmd, view, now)
                        .err()
                        .map(|why| Refusal {
                            guardrail: Guardrail::Budget,
                            message: format!("budget {}: {why}", budget.name()),
                            retry_after: None,
                        })
                });
            }
            if refusal.is_none() && !dry_run {
                if is_destructive {
                    destructive.admitted(plugin, cmd, &limits, now);
                }
                if budgeted {
                    for budget in budgets.iter() {
                        budget.admitted(plugin, cmd, view, now);
                    }
                }
            }
            refusal
        };

        let admission = match refusal {
            Some(refusal) => Admission::Refused(refusal),
            None if dry_run => Admission::DryRun,
            None => return Admission::Execute,
        };
        if probe {
            // Not executed, so it cannot tell the breaker anything.
            if let Some(ps) = self.state().plugins.get_mut(plugin) {
                ps.breaker.cancel_probe();
            }
        }
        admission
    }

    /// Feeds the plugin's circuit breaker with the result of an executed command.
    pub fn record(&self, plugin: &str, success: bool, now: Instant) {
        if let Some(ps) = self.state().plugins.get_mut(plugin) {
            ps.breaker.record(success, now);
        }
    }

    /// The plugin's breaker state (`Closed` for a plugin not seen yet).
    pub fn breaker_state(&self, plugin: &str) -> breaker::State {
        self.state()
            .plugins
            .get(plugin)
            .map_or(breaker::State::Closed, |ps| ps.breaker.state())
    }

    /// The executor is done with a command on `target` (applied and visible, or failed):
    /// the budgets stop counting it as in flight.
    pub fn settle(&self, target: &ObjectRef) {
        for budget in &self.disruptive().budgets {
            budget.settle(target);
        }
    }

    /// An admitted command failed: it destroyed nothing, so its cooldown is lifted and
    /// the budgets stop counting it.
    pub fn failed(&self, plugin: &str, cmd: &Command) {
        let mut d = self.disruptive();
        d.destructive.failed(plugin, cmd);
        if let Some(target) = cmd.target() {
            for budget in &d.budgets {
                budget.settle(&target);
            }
        }
    }

    /// Switches dry-run on or off for a plugin at run time.
    pub fn set_dry_run(&self, plugin: &str, on: bool) {
        let mut state = self.state();
        if on {
            state.dry_run.insert(plugin.to_owned());
        } else {
            state.dry_run.remove(plugin);
        }
    }

    /// Whether the plugin's commands are only recorded.
    pub fn is_dry_run(&self, plugin: &str) -> bool {
        self.state().dry_run.contains(plugin)
    }

    /// Forgets a plugin's bucket, breaker and destructive commands (when it is unloaded).
    pub fn forget(&self, plugin: &str) {
        self.state().plugins.remove(plugin);
        self.disruptive().destructive.forget(plugin);
    }
}

/// The refusal of a destructive command: its ceiling, or its cooldown.
fn destructive_refusal(plugin: &str, cmd: &Command, why: &destructive::Refusal) -> Refusal {
    let target = cmd.target().map(|t| t.key()).unwrap_or_default();
    let (guardrail, message) = match why {
        destructive::Refusal::Rate { limit, retry_after } => (
            Guardrail::DestructiveRate,
            format!(
                "destructive rate: plugin {plugin} had {limit} destructive commands admitted \
                 in the last minute, the limit; retry in {}",
                fmt_duration(*retry_after)
            ),
        ),
        destructive::Refusal::Cooldown {
            ago,
            cooldown,
            retry_after,
        } => (
            Guardrail::Cooldown,
            format!(
                "cooldown: the same {} of {target} executed {} ago; it may run again {} after \
                 that, retry in {}",
                cmd.name(),
                fmt_duration(*ago),
                fmt_duration(*cooldown),
                fmt_duration(*retry_after)
            ),
        ),
    };
    Refusal {
        guardrail,
        message,
        retry_after: Some(why.retry_after()),
    }
}

/// `40 ms`, `2.5 s`, `5 min`.
fn fmt_duration(d: Duration) -> String {
    if d == Duration::MAX {
        "never".to_owned()
    } else if d < Duration::from_secs(1) {
        format!("{} ms", d.as_micros().div_ceil(1000))
    } else if d < Duration::from_secs(120) {
        let tenths = d.as_millis().div_ceil(100);
        if tenths.is_multiple_of(10) {
            format!("{} s", tenths / 10)
        } else {
            format!("{}.{} s", tenths / 10, tenths % 10)
        }
    } else {
        format!("{} min", d.as_secs().div_ceil(60))
    }
}

/// Durations in config: `"500ms"`, `"30s"`, `"5m"`, `"1h"`, or a number of seconds.
mod duration {
    use std::time::Duration;

    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::Serializer;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_millis() == 0 && d.subsec_nanos() == 0 {
            s.serialize_str(&format!("{}s", d.as_secs()))
        } else {
            s.serialize_str(&format!("{}ms", d.as_millis()))
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration (\"500ms\", \"30s\", \"5m\", \"1h\") or seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration::from_secs)
                    .map_err(|_| E::custom(format!("{v} is negative")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                Duration::try_from_secs_f64(v)
                    .map_err(|_| E::custom(format!("{v} is not a duration in seconds")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                let s = v.trim();
                let split = s
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .unwrap_or(s.len());
                let (number, unit) = s.split_at(split);
                let bad = || E::custom(format!("{v:?} is not a duration like \"30s\""));
                let number: f64 = number.parse().map_err(|_| bad())?;
                let scale = match unit.trim() {
                    "ms" => 0.001,
                    "s" | "" => 1.0,
                    "m" | "min" => 60.0,
                    "h" => 3600.0,
                    _ => return Err(bad()),
                };
                Duration::try_from_secs_f64(number * scale).map_err(|_| bad())
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::budget::fixtures::{evict, workload};
    use super::*;

    fn config() -> Config {
        Config {
            global: Rate::new(100.0, 200),
            per_plugin: Rate::new(20.0, 50),
            breaker: breaker::Config {
                window: Duration::from_secs(60),
                min_samples: 2,
                failure_ratio: 0.5,
                cooldown: Duration::from_secs(30),
            },
            ..Config::default()
        }
    }

    /// A command that disrupts nothing.
    fn event_cmd() -> Command {
        Command::MergePatch(bosun_host::contract::Patch {
            target: ObjectRef::namespaced("v1", "ConfigMap", "default", "c"),
            patch: r#"{"data":{"a":"b"}}"#.into(),
        })
    }

    fn refusal(admission: Admission) -> Refusal {
        match admission {
            Admission::Refused(r) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn plugin_rate_limit_refuses_with_its_numbers() {
        let g = Guardrails::new(config()).expect("valid");
        let view = workload(0, 0);
        let now = Instant::now();
        for _ in 0..50 {
            assert_eq!(
                g.admit("release", &event_cmd(), &view, now),
                Admission::Execute
            );
        }
        let r = refusal(g.admit("release", &event_cmd(), &view, now));
        assert_eq!(r.guardrail, Guardrail::RateLimit);
        assert_eq!(
            r.message,
            "rate limit: plugin release exceeded 20 commands/s (burst 50); retry in 50 ms"
        );
        // Another plugin has its own bucket.
        assert_eq!(
            g.admit("other", &event_cmd(), &view, now),
            Admission::Execute
        );
        let later = now + Duration::from_millis(60);
        assert_eq!(
            g.admit("release", &event_cmd(), &view, later),
            Admission::Execute
        );
    }

    #[test]
    fn global_refusal_does_not_take_the_plugin_token() {
        let mut cfg = config();
        cfg.global = Rate::new(1.0, 1);
        cfg.per_plugin = Rate::new(1.0, 1);
        let g = Guardrails::new(cfg).expect("valid");
        let view = workload(0, 0);
        let now = Instant::now();
        assert_eq!(g.admit("a", &event_cmd(), &view, now), Admission::Execute);
        let r = refusal(g.admit("b", &event_cmd(), &view, now));
        assert!(
            r.message
                .starts_with("rate limit: all plugins together exceeded 1 commands/s")
        );
        // b's own token is still there once the global bucket refills.
        let later = now + Duration::from_secs(1);
        assert_eq!(g.admit("b", &event_cmd(), &view, later), Admission::Execute);
    }

    #[test]
    fn plugin_refusal_does_not_take_a_global_token() {
        let mut cfg = config();
        cfg.global = Rate::new(1.0, 2);
        cfg.per_plugin_overrides
            .insert("greedy".into(), Rate::new(1.0, 1));
        let g = Guardrails::new(cfg).expect("valid");
        let view = workload(0, 0);
        let now = Instant::now();
        assert_eq!(
            g.admit("greedy", &event_cmd(), &view, now),
            Admission::Execute
        );
        for _ in 0..5 {
            let r = refusal(g.admit("greedy", &event_cmd(), &view, now));
            assert!(
                r.message
                    .contains("plugin greedy exceeded 1 commands/s (burst 1)")
            );
        }
        assert_eq!(
            g.admit("polite", &event_cmd(), &view, now),
            Admission::Execute
        );
    }

    #[test]
    fn breaker_opens_refuses_then_half_opens() {
        let g = Guardrails::new(config()).expect("valid");
        let view = workload(0, 0);
        let t0 = Instant::now();
        assert_eq!(g.admit("p", &event_cmd(), &view, t0), Admission::Execute);
        g.record("p", false, t0);
        g.record("p", false, t0);
        assert_eq!(g.breaker_state("p"), breaker::State::Open);
        let r = refusal(g.admit("p", &event_cmd(), &view, t0 + Duration::from_secs(10)));
        assert_eq!(r.guardrail, Guardrail::Breaker);
        assert_eq!(
            r.message,
            "circuit breaker: plugin p is open after 2 of 2 commands failed within 60 s; \
             retry in 20 s"
        );
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(g.admit("p", &event_cmd(), &view, t1), Admission::Execute);
        assert_eq!(g.breaker_state("p"), breaker::State::HalfOpen);
        assert_eq!(
            refusal(g.admit("p", &event_cmd(), &view, t1)).guardrail,
            Guardrail::Breaker
        );
        g.record("p", true, t1);
        assert_eq!(g.breaker_state("p"), breaker::State::Closed);
        assert_eq!(g.breaker_state("never-seen"), breaker::State::Closed);
    }

    #[test]
    fn checks_run_in_order_breaker_rate_budget() {
        let mut cfg = config();
        cfg.per_plugin = Rate::new(1.0, 1);
        cfg.max_unavailable = Some(Limit::Count(0));
        let g = Guardrails::new(cfg).expect("valid");
        let view = workload(3, 0);
        let now = Instant::now();
        // The budget refuses, after the rate limit took its token.
        let r = refusal(g.admit("p", &evict("web-0"), &view, now));
        assert_eq!(r.guardrail, Guardrail::Budget);
        assert!(
            r.message
                .starts_with("budget max-unavailable: evicting Pod/default/web-0")
        );
        // Now the bucket is empty: the rate limit answers before the budget.
        let r = refusal(g.admit("p", &evict("web-0"), &view, now));
        assert_eq!(r.guardrail, Guardrail::RateLimit);
        // And an open breaker answers before the rate limit.
        g.record("p", false, now);
        g.record("p", false, now);
        let r = refusal(g.admit("p", &evict("web-0"), &view, now));
        assert_eq!(r.guardrail, Guardrail::Breaker);
    }

    #[test]
    fn budgets_count_admitted_commands_until_settled() {
        let mut cfg = config();
        cfg.max_unavailable = Some(Limit::Count(1));
        let g = Guardrails::new(cfg).expect("valid");
        let view = workload(4, 0);
        let now = Instant::now();
        assert_eq!(
            g.admit("p", &evict("web-0"), &view, now),
            Admission::Execute
        );
        let r = refusal(g.admit("p", &evict("web-1"), &view, now));
        assert_eq!(r.guardrail, Guardrail::Budget);
        g.settle(&budget::fixtures::pod_ref("web-0"));
        assert_eq!(
            g.admit("p", &evict("web-1"), &view, now),
            Admission::Execute
        );
    }

    #[test]
    fn dry_run_passes_the_checks_but_is_not_counted() {
        let mut cfg = config();
        cfg.max_unavailable = Some(Limit::Count(1));
        cfg.dry_run.insert("p".into());
        let g = Guardrails::new(cfg).expect("valid");
        let view = workload(4, 0);
        let now = Instant::now();
        assert_eq!(g.admit("p", &evict("web-0"), &view, now), Admission::DryRun);
        assert_eq!(g.admit("p", &evict("web-1"), &view, now), Admission::DryRun);
        // A dry-run command the budget would refuse is refused, not dry-run.
        let view = workload(3, 1);
        let r = refusal(g.admit("p", &evict("web-0"), &view, now));
        assert_eq!(r.guardrail, Guardrail::Budget);
        g.set_dry_run("p", false);
        assert!(!g.is_dry_run("p"));
        let view = workload(4, 0);
        assert_eq!(
            g.admit("p", &evict("web-0"), &view, now),
            Admission::Execute
        );
    }

    #[test]
    fn config_reads_yaml_with_defaults() {
        let yaml = r#"
perPlugin: { perSecond: 5, burst: 10 }
perPluginOverrides:
  remediation: { perSecond: 1, burst: 2 }
breaker: { window: 2m, cooldown: "500ms" }
dryRun: [release]
maxCordonedNodes: 3
maxUnavailable: "25%"
minHealthyShare: 0.6
"#;
        let cfg: Config = serde_yaml::from_str(yaml).expect("parses");
        assert_eq!(cfg.global, Rate::new(100.0, 200));
        assert_eq!(cfg.per_plugin, Rate::new(5.0, 10));
        assert_eq!(cfg.rate_of("remediation"), Rate::new(1.0, 2));
        assert_eq!(cfg.breaker.window, Duration::from_secs(120));
        assert_eq!(cfg.breaker.cooldown, Duration::from_millis(500));
        assert_eq!(cfg.breaker.min_samples, 10);
        assert!(cfg.dry_run.contains("release"));
        assert_eq!(cfg.max_unavailable, Some(Limit::Percent(25)));
        assert!(Guardrails::new(cfg).is_ok());

        let defaults: Config = serde_yaml::from_str("{}").expect("parses");
        assert_eq!(defaults, Config::default());
        assert!(serde_yaml::from_str::<Config>("perPlugins: {}").is_err());
        let bad: Config = serde_yaml::from_str("breaker: { failureRatio: 2 }").expect("parses");
        let err = Guardrails::new(bad).expect_err("ratio over 1");
        assert_eq!(
            err.to_string(),
            "guardrail config: breaker.failureRatio must be above 0 and at most 1"
        );
    }

    #[test]
    fn defaults_keep_workloads_up_and_cool_down_repeats() {
        let g = Guardrails::new(Config::default()).expect("valid");
        let view = workload(4, 0);
        let now = Instant::now();
        assert_eq!(
            g.admit("p", &evict("web-0"), &view, now),
            Admission::Execute
        );
        // 25% of 4 pods is 1: the next one waits.
        let r = refusal(g.admit("p", &evict("web-1"), &view, now));
        assert_eq!(r.guardrail, Guardrail::Budget);
        assert!(
            r.message
                .starts_with("budget max-unavailable: evicting Pod/default/web-1"),
            "{}",
            r.message
        );
        // The same eviction again, within the cooldown (the recreated pod is Ready).
        let later = now + Duration::from_secs(5);
        g.settle(&budget::fixtures::pod_ref("web-0"));
        let r = refusal(g.admit("p", &evict("web-0"), &view, later));
        assert_eq!(r.guardrail, Guardrail::Cooldown);
        assert_eq!(
            r.message,
            "cooldown: the same evict of Pod/default/web-0 executed 5 s ago; it may run again \
             60 s after that, retry in 55 s"
        );
        assert_eq!(r.retry_after, Some(Duration::from_secs(55)));
        // A failed command lifts its cooldown.
        g.failed("p", &evict("web-0"));
        assert_eq!(
            g.admit("p", &evict("web-0"), &view, later),
            Admission::Execute
        );
        // A command that destroys nothing is not counted.
        for _ in 0..3 {
            assert_eq!(g.admit("p", &event_cmd(), &view, later), Admission::Execute);
        }
    }

    #[test]
    fn the_destructive_ceiling_is_per_plugin_per_minute() {
        let mut cfg = config();
        cfg.max_unavailable = None;
        cfg.pod_disruption_budgets = false;
        cfg.destructive.per_minute = Some(Limit::Count(5));
        let g = Guardrails::new(cfg).expect("valid");
        let view = workload(20, 0);
        let now = Instant::now();
        for i in 0..5 {
            let cmd = evict(&format!("web-{i}"));
            assert_eq!(g.admit("p", &cmd, &view, now), Admission::Execute);
        }
        let r = refusal(g.admit("p", &evict("web-9"), &view, now));
        assert_eq!(r.guardrail, Guardrail::DestructiveRate);
        assert_eq!(
            r.message,
            "destructive rate: plugin p had 5 destructive commands admitted in the last \
             minute, the limit; retry in 60 s"
        );
        assert_eq!(
            g.admit("q", &evict("web-9"), &view, now),
            Admission::Execute
        );
        let minute = now + Duration::from_secs(60);
        assert_eq!(
            g.admit("p", &evict("web-9"), &view, minute),
            Admission::Execute
        );
    }

    #[test]
    fn overrides_apply_per_namespace_then_per_plugin() {
        let yaml = r#"
namespaces:
  default: { maxUnavailable: off }
plugins:
  careful: { maxUnavailable: 0, destructive: { perMinute: off, cooldown: 0s } }
  remediation: { maxCordonedNodes: 3 }
"#;
        let cfg: Config = serde_yaml::from_str(yaml).expect("parses");
        use budget::Policy as _;
        assert_eq!(cfg.settings("any", Some("default")).max_unavailable, None);
        assert_eq!(
            cfg.settings("any", Some("prod")).max_unavailable,
            Some(Limit::Percent(25))
        );
        assert_eq!(
            cfg.settings("careful", Some("default")).max_unavailable,
            Some(Limit::Count(0))
        );
        assert_eq!(
            cfg.settings("remediation", None).max_cordoned_nodes,
            Some(Limit::Count(3))
        );
        assert_eq!(cfg.destructive_of("careful").per_minute, None);
        let g = Guardrails::new(cfg).expect("valid");
        let view = workload(4, 0);
        let now = Instant::now();
        // Namespace default has no workload budget: two at once pass (PDBs still apply).
        assert_eq!(
            g.admit("any", &evict("web-0"), &view, now),
            Admission::Execute
        );
        assert_eq!(
            g.admit("any", &evict("web-1"), &view, now),
            Admission::Execute
        );
        let r = refusal(g.admit("careful", &evict("web-2"), &view, now));
        assert_eq!(r.guardrail, Guardrail::Budget);

        let bad: Config =
            serde_yaml::from_str("namespaces: { a: { maxCordonedNodes: 1 } }").expect("parses");
        let err = Guardrails::new(bad).expect_err("a node limit per namespace");
        assert!(
            err.to_string().starts_with(
                "guardrail config: namespaces.a.maxCordonedNodes is not a namespace setting"
            ),
            "{err}"
        );
        let off: Config = serde_yaml::from_str(
            "{ maxUnavailable: off, maxCordonedNodes: off, podDisruptionBudgets: false }",
        )
        .expect("parses");
        assert_eq!(
            (
                off.max_unavailable,
                off.max_cordoned_nodes,
                off.pod_disruption_budgets
            ),
            (None, None, false)
        );
    }

    #[test]
    fn the_summary_says_what_is_on() {
        assert_eq!(
            Config::default().summary(),
            vec![
                "max-unavailable 25% of each workload's pods (at least 1); \
                 pod-disruption-budgets kept; max-cordoned-nodes 10% of the nodes (at least 1); \
                 min-healthy-share off; destructive commands 60/min per plugin, cooldown 60 s; \
                 rate 20 commands/s (burst 50) per plugin, 100 commands/s (burst 200) in all"
                    .to_owned()
            ]
        );
        let cfg: Config =
            serde_yaml::from_str("{ namespaces: { batch: { maxUnavailable: off } } }")
                .expect("parses");
        assert_eq!(cfg.summary()[1], "namespace batch: max-unavailable off");
    }

    #[test]
    fn durations_format_for_people() {
        assert_eq!(fmt_duration(Duration::from_micros(39_200)), "40 ms");
        assert_eq!(fmt_duration(Duration::from_millis(2500)), "2.5 s");
        assert_eq!(fmt_duration(Duration::from_secs(30)), "30 s");
        assert_eq!(fmt_duration(Duration::from_secs(300)), "5 min");
    }
}
