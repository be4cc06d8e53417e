//! A circuit breaker per plugin: stops a plugin whose commands keep failing.
//!
//! Closed → Open when, within the sliding window, at least `min_samples` results were
//! recorded and the failure share reaches `failure_ratio`. Open refuses every command
//! until `cooldown` has passed; then HalfOpen lets one probe command through: its success
//! closes the breaker, its failure opens it again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Results kept per breaker at most, whatever the window (bounds memory).
const MAX_SAMPLES: usize = 10_000;

/// When a breaker opens and for how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Config {
    /// The sliding window results are counted in (`60s`, `2m`, or seconds as a number).
    #[serde(with = "super::duration")]
    pub window: Duration,
    /// Results needed in the window before the breaker may open.
    pub min_samples: u32,
    /// Share of failures (0 < ratio ≤ 1) that opens the breaker.
    pub failure_ratio: f64,
    /// How long an open breaker refuses before it lets a probe through.
    #[serde(with = "super::duration")]
    pub cooldown: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            window: Duration::from_secs(60),
            min_samples: 10,
            failure_ratio: 0.5,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// A breaker's state, as shown on a status page and in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Commands pass.
    Closed,
    /// Commands are refused.
    Open,
    /// One probe command may pass; its result decides.
    HalfOpen,
}

impl State {
    /// The state's name (`half-open`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        }
    }
}

/// Why a breaker refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Tripped {
    /// Failures in the window when it opened.
    pub failures: u32,
    /// Results in the window when it opened.
    pub samples: u32,
    /// When the next probe may pass (`None` while a probe is out).
    pub retry_after: Option<Duration>,
}

#[derive(Debug, Clone)]
enum Phase {
    Closed,
    Open {
        until: Instant,
    },
    /// `probe_since`: when the probe was let through; a probe whose result never comes
    /// back is replaced after a cooldown.
    HalfOpen {
        probe_since: Option<Instant>,
    },
}

/// One plugin's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: Config,
    phase: Phase,
    /// (time, success) of recent results, oldest first.
    samples: VecDeque<(Instant, bool)>,
    failures: u32,
    /// Counts when it last opened, for messages.
    opened_with: (u32, u32),
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: Config) -> Self {
        Breaker {
            config,
            phase: Phase::Closed,
            samples: VecDeque::new(),
            failures: 0,
            opened_with: (0, 0),
        }
    }

    /// The current state. An open breaker whose cooldown has passed still reads `Open`
    /// until a command arrives.
    pub fn state(&self) -> State {
        match self.phase {
            Phase::Closed => State::Closed,
            Phase::Open { .. } => State::Open,
            Phase::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// The breaker's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Asks to let one command through at `now`. When the breaker is half-open, the
    /// command that gets through is the probe; [`cancel_probe`](Self::cancel_probe) takes
    /// that back if a later guardrail refuses the command.
    pub fn allow(&mut self, now: Instant) -> Result<Admitted, Tripped> {
        let tripped = |retry_after| Tripped {
            failures: self.opened_with.0,
            samples: self.opened_with.1,
            retry_after,
        };
        match self.phase {
            Phase::Closed => Ok(Admitted::Normal),
            Phase::Open { until } if now < until => {
                Err(tripped(Some(until.saturating_duration_since(now))))
            }
            Phase::HalfOpen {
                probe_since: Some(since),
            } if now.saturating_duration_since(since) < self.config.cooldown => Err(tripped(None)),
            Phase::Open { .. } | Phase::HalfOpen { .. } => {
                self.phase = Phase::HalfOpen {
                    probe_since: Some(now),
                };
                Ok(Admitted::Probe)
            }
        }
    }

    /// Takes back a probe let through by [`allow`](Self::allow) that was not executed.
    pub fn cancel_probe(&mut self) {
        if let Phase::HalfOpen { probe_since } = &mut self.phase {
            *probe_since = None;
        }
    }

    /// Records an executed command's result.
    pub fn record(&mut self, success: bool, now: Instant) {
        match self.phase {
            // Results of commands admitted before the breaker opened.
            Phase::Open { .. } => {}
            Phase::HalfOpen { .. } => {
                if success {
                    self.phase = Phase::Closed;
                } else {
                    self.open(now);
                }
            }
            Phase::Closed => {
                self.samples.push_back((now, success));
                if !success {
                    self.failures += 1;
                }
                if self.samples.len() > MAX_SAMPLES {
                    self.pop_oldest();
                }
                while let Some(&(at, _)) = self.samples.front() {
                    if now.saturating_duration_since(at) <= self.config.window {
                        break;
                    }
                    self.pop_oldest();
                }
                let samples = u32::try_from(self.samples.len()).unwrap_or(u32::MAX);
                if samples >= self.config.min_samples.max(1)
                    && f64::from(self.failures) / f64::from(samples) >= self.config.failure_ratio
                {
                    self.opened_with = (self.failures, samples);
                    self.open(now);
                }
            }
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, false)) = self.samples.pop_front() {
            self.failures -= 1;
        }
    }

    fn open(&mut self, now: Instant) {
        let until = now
            .checked_add(self.config.cooldown)
            .unwrap_or_else(|| now + Duration::from_secs(24 * 3600));
        self.phase = Phase::Open { until };
        self.samples.clear();
        self.failures = 0;
    }
}

/// How a breaker let a command through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// The breaker is closed.
    Normal,
    /// The breaker is half-open and this command is its probe.
    Probe,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(Config {
            window: Duration::from_secs(60),
            min_samples: 4,
            failure_ratio: 0.5,
            cooldown: Duration::from_secs(30),
        })
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn opens_on_the_failure_ratio_once_enough_samples() {
        let t0 = Instant::now();
        let mut b = breaker();
        b.record(false, t0);
        b.record(false, t0);
        b.record(false, t0);
        assert_eq!(b.state(), State::Closed, "3 samples are below min_samples");
        b.record(true, t0);
        assert_eq!(b.state(), State::Open);
        let tripped = b.allow(t0 + secs(10)).expect_err("open");
        assert_eq!((tripped.failures, tripped.samples), (3, 4));
        assert_eq!(tripped.retry_after, Some(secs(20)));
    }

    #[test]
    fn stays_closed_below_the_ratio_and_forgets_old_samples() {
        let t0 = Instant::now();
        let mut b = breaker();
        for _ in 0..3 {
            b.record(false, t0);
        }
        // The old failures leave the window before the next samples arrive.
        for i in 0..6 {
            b.record(true, t0 + secs(61 + i));
        }
        b.record(false, t0 + secs(70));
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.allow(t0 + secs(70)), Ok(Admitted::Normal));
    }

    #[test]
    fn half_opens_after_cooldown_and_a_probe_success_closes() {
        let t0 = Instant::now();
        let mut b = breaker();
        for _ in 0..4 {
            b.record(false, t0);
        }
        assert!(b.allow(t0 + secs(29)).is_err());
        assert_eq!(b.allow(t0 + secs(30)), Ok(Admitted::Probe));
        assert_eq!(b.state(), State::HalfOpen);
        let second = b.allow(t0 + secs(31)).expect_err("one probe at a time");
        assert_eq!(second.retry_after, None);
        b.record(true, t0 + secs(32));
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.allow(t0 + secs(32)), Ok(Admitted::Normal));
    }

    #[test]
    fn a_probe_failure_reopens() {
        let t0 = Instant::now();
        let mut b = breaker();
        for _ in 0..4 {
            b.record(false, t0);
        }
        assert_eq!(b.allow(t0 + secs(30)), Ok(Admitted::Probe));
        b.record(false, t0 + secs(31));
        assert_eq!(b.state(), State::Open);
        assert!(b.allow(t0 + secs(60)).is_err());
        assert_eq!(b.allow(t0 + secs(61)), Ok(Admitted::Probe));
    }

    #[test]
    fn a_cancelled_or_lost_probe_is_replaced() {
        let t0 = Instant::now();
        let mut b = breaker();
        for _ in 0..4 {
            b.record(false, t0);
        }
        assert_eq!(b.allow(t0 + secs(30)), Ok(Admitted::Probe));
        b.cancel_probe();
        assert_eq!(b.allow(t0 + secs(30)), Ok(Admitted::Probe));
        // The result never comes back: another probe after a cooldown.
        assert!(b.allow(t0 + secs(59)).is_err());
        assert_eq!(b.allow(t0 + secs(60)), Ok(Admitted::Probe));
    }
}
