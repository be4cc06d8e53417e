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
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bosun_host::contract::{Command, ObjectRef};
use serde::{Deserialize, Serialize};

pub mod breaker;
pub mod budget;
mod rate;

pub use budget::{Budget, Limit, MaxCordonedNodes, MaxUnavailable, MinHealthyShare, View};
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
    /// Most nodes unschedulable at once ([`MaxCordonedNodes`]); off when absent.
    pub max_cordoned_nodes: Option<u32>,
    /// Most pods of a workload unavailable at once, `2` or `"25%"` ([`MaxUnavailable`]).
    pub max_unavailable: Option<Limit>,
    /// Smallest share of a workload's pods kept healthy, 0 to 1 ([`MinHealthyShare`]).
    pub min_healthy_share: Option<f64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            global: Rate::new(100.0, 200),
            per_plugin: Rate::new(20.0, 50),
            per_plugin_overrides: HashMap::new(),
            breaker: breaker::Config::default(),
            dry_run: HashSet::new(),
            max_cordoned_nodes: None,
            max_unavailable: None,
            min_healthy_share: None,
        }
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
        if let Some(share) = self.min_healthy_share
            && !(0.0..=1.0).contains(&share)
        {
            return invalid("minHealthyShare", "must be between 0 and 1");
        }
        if let Some(Limit::Percent(p)) = self.max_unavailable
            && p > 100
        {
            return invalid("maxUnavailable", "must be at most 100%");
        }
        Ok(())
    }

    fn rate_of(&self, plugin: &str) -> Rate {
        self.per_plugin_overrides
            .get(plugin)
            .copied()
            .unwrap_or(self.per_plugin)
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

/// The guardrails of one runtime: shared by every plugin, safe to call from many threads.
pub struct Guardrails {
    config: Config,
    state: Mutex<State>,
    /// Checked and told about admissions under this one lock, so two commands admitted
    /// at once cannot both take the last unit of a budget.
    budgets: Mutex<Vec<Box<dyn Budget>>>,
}

impl std::fmt::Debug for Guardrails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guardrails")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Guardrails {
    /// Guardrails with the built-in budgets the config enables.
    pub fn new(config: Config) -> Result<Self> {
        config.validate()?;
        let mut budgets: Vec<Box<dyn Budget>> = Vec::new();
        if let Some(n) = config.max_cordoned_nodes {
            budgets.push(Box::new(MaxCordonedNodes::new(n)));
        }
        if let Some(limit) = config.max_unavailable {
            budgets.push(Box::new(MaxUnavailable::new(limit)));
        }
        if let Some(ratio) = config.min_healthy_share {
            budgets.push(Box::new(MinHealthyShare::new(ratio)));
        }
        Ok(Guardrails {
            state: Mutex::new(State {
                global: config.global.bucket(),
                plugins: HashMap::new(),
                dry_run: config.dry_run.clone(),
            }),
            config,
            budgets: Mutex::new(budgets),
        })
    }

    /// Adds a budget of one's own, checked after the built-in ones.
    pub fn with_budget(mut self, budget: Box<dyn Budget>) -> Self {
        self.budgets
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .push(budget);
        self
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
    /// then global), then budgets, then dry-run. A command refused by one bucket takes no
    /// token from the other. Commands in dry-run take rate tokens (they show what would
    /// happen) but are not counted by the budgets afterwards.
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
            let budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
            let refusal = budgets.iter().find_map(|budget| {
                budget
                    .check(plugin, cmd, view, now)
                    .err()
                    .map(|why| Refusal {
                        guardrail: Guardrail::Budget,
                        message: format!("budget {}: {why}", budget.name()),
                        retry_after: None,
                    })
            });
            if refusal.is_none() && !dry_run {
                for budget in budgets.iter() {
                    budget.admitted(plugin, cmd, view, now);
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
        let budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        for budget in budgets.iter() {
            budget.settle(target);
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

    /// Forgets a plugin's bucket and breaker (when it is unloaded).
    pub fn forget(&self, plugin: &str) {
        self.state().plugins.remove(plugin);
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

    fn event_cmd() -> Command {
        Command::Cordon("n1".into())
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
    fn durations_format_for_people() {
        assert_eq!(fmt_duration(Duration::from_micros(39_200)), "40 ms");
        assert_eq!(fmt_duration(Duration::from_millis(2500)), "2.5 s");
        assert_eq!(fmt_duration(Duration::from_secs(30)), "30 s");
        assert_eq!(fmt_duration(Duration::from_secs(300)), "5 min");
    }
}
