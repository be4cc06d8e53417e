//! Routing keys between a plugin's stable revision and its canary, and judging the
//! canary against the stable one.
//!
//! Keys are routed by a stable hash of the key (FNV-1a), so an object stays on one
//! revision for the whole canary, across runtime restarts too.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bosun_api::Selector;
use bosun_host::Revision;
use bosun_host::contract::ObjectRef;
use bosun_host::stats::Stats;

use super::shadow::{DIFFERENCES, Difference, ShadowSink};
use super::state::Scratch;

/// What the analysis requires of a canary.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Largest share of reconciles answered with an error.
    pub max_error_rate: f64,
    /// Largest share of reconciles that trapped, timed out or ran out of memory.
    pub max_trap_rate: f64,
    /// Largest share of submitted commands refused by the guardrails.
    pub max_refused_rate: f64,
    /// Reconciles the canary must have made before it is judged.
    pub min_samples: u64,
    /// How long the canary serves before it is promoted.
    pub window: Duration,
    /// Wait for an explicit promotion instead of promoting after the window.
    pub manual: bool,
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            max_error_rate: 0.05,
            max_trap_rate: 0.01,
            max_refused_rate: 0.2,
            min_samples: 20,
            window: Duration::from_secs(300),
            manual: false,
        }
    }
}

/// Which keys the canary takes.
#[derive(Debug, Clone)]
pub enum Split {
    /// This percentage of keys, by stable hash.
    Share(u8),
    /// Objects whose labels match.
    Selector(Selector),
    /// None: the new revision runs beside the stable one on every key, its commands are
    /// recorded and compared, never executed.
    Shadow,
}

/// A canary in progress.
#[derive(Debug, Clone)]
pub struct Route {
    /// The canary revision.
    pub canary: Arc<Revision>,
    /// Which keys it takes.
    pub split: Split,
    /// What it must show.
    pub analysis: Analysis,
    /// Where a shadow revision's commands go.
    pub sink: Option<Arc<ShadowSink>>,
    /// The canary's or shadow's own plugin state.
    pub state: Option<Arc<Scratch>>,
    started: Instant,
    stable_base: Stats,
    canary_base: Stats,
    stable_digest: String,
}

/// What the analysis concluded.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    /// Not enough time or samples yet; the text says how far along.
    Waiting(String),
    /// Healthy over the window; waiting for a manual promotion.
    ReadyToPromote(String),
    /// Healthy over the window: promote.
    Promote(String),
    /// A limit was breached: roll back, with why.
    RollBack(String),
}

/// Rates of one revision over the canary's window.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rates {
    /// Reconciles.
    pub samples: u64,
    /// Errors / reconciles.
    pub error_rate: f64,
    /// Traps, timeouts and out-of-memory / reconciles.
    pub trap_rate: f64,
    /// Refused / submitted commands.
    pub refused_rate: f64,
}

fn delta(now: &Stats, base: &Stats) -> Rates {
    let samples = now.reconciles.saturating_sub(base.reconciles);
    let bad = |n: u64, b: u64| n.saturating_sub(b);
    let errors = bad(now.errors, base.errors);
    let traps = bad(now.traps, base.traps)
        + bad(now.timeouts, base.timeouts)
        + bad(now.out_of_memory, base.out_of_memory);
    let submitted = bad(now.commands_submitted, base.commands_submitted);
    let refused = bad(now.commands_refused, base.commands_refused);
    let rate = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    Rates {
        samples,
        error_rate: rate(errors, samples),
        trap_rate: rate(traps, samples),
        refused_rate: rate(refused, submitted),
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The 0–99 bucket of a key: FNV-1a of its text, so it never changes.
pub fn bucket(key: &str) -> u8 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    u8::try_from(h % 100).unwrap_or(0)
}

impl Route {
    /// A canary of `canary` beside `stable`.
    pub fn new(canary: Arc<Revision>, stable: &Revision, split: Split, analysis: Analysis) -> Self {
        Route {
            canary_base: canary.stats(),
            canary,
            split,
            analysis,
            sink: None,
            state: None,
            started: Instant::now(),
            stable_base: stable.stats(),
            stable_digest: stable.digest().to_owned(),
        }
    }

    /// Whether `key` (with `labels`) is served by the canary.
    pub fn takes(&self, key: &ObjectRef, labels: Option<&BTreeMap<String, String>>) -> bool {
        match &self.split {
            Split::Share(share) => bucket(&key.key()) < *share,
            Split::Selector(s) => labels.is_some_and(|l| s.matches(l)),
            Split::Shadow => false,
        }
    }

    /// Rates of (stable, canary) since the canary started.
    pub fn rates(&self, stable: &Revision) -> (Rates, Rates) {
        let stable_base = if stable.digest() == self.stable_digest {
            &self.stable_base
        } else {
            &Stats::default()
        };
        (
            delta(&stable.stats(), stable_base),
            delta(&self.canary.stats(), &self.canary_base),
        )
    }

    /// Compares canary and stable.
    pub fn judge(&self, stable: &Revision) -> Judgement {
        let a = &self.analysis;
        let (s, c) = self.rates(stable);
        if matches!(self.split, Split::Shadow) {
            // A shadow is only observed: promoted or dropped by hand.
            return Judgement::Waiting(format!(
                "shadow: {} reconciles, errors {} (stable {})",
                c.samples,
                pct(c.error_rate),
                pct(s.error_rate)
            ));
        }
        if c.samples >= a.min_samples {
            // A limit breached by the canary, and worse than stable over the same window.
            for (what, canary, stable, max) in [
                ("error rate", c.error_rate, s.error_rate, a.max_error_rate),
                (
                    "trap/timeout rate",
                    c.trap_rate,
                    s.trap_rate,
                    a.max_trap_rate,
                ),
                (
                    "refused-command rate",
                    c.refused_rate,
                    s.refused_rate,
                    a.max_refused_rate,
                ),
            ] {
                if canary > max && canary > stable {
                    return Judgement::RollBack(format!(
                        "canary {what} {} over the limit {} (stable {}) after {} reconciles",
                        pct(canary),
                        pct(max),
                        pct(stable),
                        c.samples
                    ));
                }
            }
        }
        let elapsed = self.started.elapsed();
        if elapsed < a.window || c.samples < a.min_samples {
            return Judgement::Waiting(format!(
                "{} of {} samples, {}s of {}s; canary errors {}, stable errors {}",
                c.samples,
                a.min_samples,
                elapsed.as_secs(),
                a.window.as_secs(),
                pct(c.error_rate),
                pct(s.error_rate)
            ));
        }
        let why = format!(
            "healthy for {}s over {} reconciles (errors {}, traps {}, refused {})",
            elapsed.as_secs(),
            c.samples,
            pct(c.error_rate),
            pct(c.trap_rate),
            pct(c.refused_rate)
        );
        if a.manual {
            Judgement::ReadyToPromote(why)
        } else {
            Judgement::Promote(why)
        }
    }
}

/// The canaries (and shadows) in progress, by plugin name, and the differences shadows
/// showed: what the dispatcher asks on every key.
#[derive(Debug, Default)]
pub struct Routes {
    routes: RwLock<HashMap<String, Route>>,
    differences: std::sync::Mutex<HashMap<String, std::collections::VecDeque<Difference>>>,
}

impl Routes {
    /// Starts (or replaces) the canary of `plugin`.
    pub fn start(&self, plugin: &str, route: Route) {
        self.routes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(plugin.to_owned(), route);
    }

    /// Ends the canary of `plugin`, returning it.
    pub fn end(&self, plugin: &str) -> Option<Route> {
        self.routes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(plugin)
    }

    /// The canary of `plugin`.
    pub fn route(&self, plugin: &str) -> Option<Route> {
        self.routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(plugin)
            .cloned()
    }

    /// The shadow of `plugin`, if one runs: its revision and sink.
    pub fn shadow(&self, plugin: &str) -> Option<(Arc<Revision>, Arc<ShadowSink>)> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let r = routes.get(plugin)?;
        Some((r.canary.clone(), r.sink.clone()?))
    }

    /// Records a difference between stable and shadow.
    pub fn differ(&self, plugin: &str, d: Difference) {
        let mut all = self
            .differences
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let list = all.entry(plugin.to_owned()).or_default();
        list.push_back(d);
        while list.len() > DIFFERENCES {
            list.pop_front();
        }
    }

    /// The differences recorded for `plugin`, oldest first.
    pub fn differences(&self, plugin: &str) -> Vec<Difference> {
        self.differences
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(plugin)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The canary revision when it serves `key`; `labels` is asked for only when the
    /// canary splits by selector.
    pub fn pick(
        &self,
        plugin: &str,
        key: &ObjectRef,
        labels: impl FnOnce() -> Option<BTreeMap<String, String>>,
    ) -> Option<Arc<Revision>> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let route = routes.get(plugin)?;
        let takes = match &route.split {
            Split::Share(_) | Split::Shadow => route.takes(key, None),
            Split::Selector(_) => route.takes(key, labels().as_ref()),
        };
        takes.then(|| route.canary.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket("Pod/default/web-0"), bucket("Pod/default/web-0"));
        let under_20 = (0..10_000)
            .filter(|i| bucket(&format!("Pod/default/p-{i}")) < 20)
            .count();
        assert!((1_700..2_300).contains(&under_20), "{under_20}");
    }

    #[test]
    fn rates_are_deltas_since_the_start() {
        let base = Stats {
            reconciles: 10,
            errors: 5,
            ..Stats::default()
        };
        let now = Stats {
            reconciles: 30,
            errors: 9,
            commands_submitted: 10,
            commands_refused: 5,
            ..Stats::default()
        };
        let r = delta(&now, &base);
        assert_eq!(r.samples, 20);
        assert!((r.error_rate - 0.2).abs() < 1e-9);
        assert!((r.refused_rate - 0.5).abs() < 1e-9);
    }
}
