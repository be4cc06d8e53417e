//! Destructive-rate limits, apart from the general command rate: how many destructive
//! commands (a deletion or an eviction of anything, or a patch whose effect takes a pod
//! or a node out of service, as the budgets judge it) one plugin may have admitted in
//! any minute, and a cooldown before the same destructive command on the same object
//! may run again once it executed. A plugin stuck in a loop evicting a pod that its
//! controller recreates under the same name evicts it once per cooldown, not on every
//! reconcile.
//!
//! "The same command" is the same verb on the same object with the same payload: a
//! release's readiness-gate patch carries its transition time, so a second release of
//! the same pod is a different command.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use bosun_host::contract::Command;
use serde::{Deserialize, Serialize};

use super::budget::limit::Limit;

/// The window [`Config::per_minute`] counts in.
const WINDOW: Duration = Duration::from_secs(60);

/// Entries kept in the cooldown table before expired ones are dropped.
const PRUNE_AT: usize = 256;

/// The destructive-rate settings, as written in config (`guardrails.destructive`, and per
/// plugin in `guardrails.plugins.NAME.destructive`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Config {
    /// Most destructive commands a plugin may have admitted in any 60 s; `off` for no
    /// ceiling. Default 60.
    #[serde(
        deserialize_with = "count_or_off",
        serialize_with = "super::budget::limit::serialize_or_off"
    )]
    pub per_minute: Option<Limit>,
    /// How long the same destructive command on the same object is refused after it
    /// executed; `0s` for no cooldown. Default 60 s.
    #[serde(with = "super::duration")]
    pub cooldown: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            per_minute: Some(Limit::Count(60)),
            cooldown: Duration::from_secs(60),
        }
    }
}

/// A count, or `off`: a percentage means nothing here.
fn count_or_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Limit>, D::Error> {
    match super::budget::limit::or_off(d)? {
        Some(Limit::Percent(_)) => Err(serde::de::Error::custom(
            "perMinute is a number of commands, not a percentage",
        )),
        other => Ok(other),
    }
}

/// Why a destructive command was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The plugin had `limit` destructive commands admitted in the last minute.
    Rate {
        /// The ceiling.
        limit: u32,
        /// When the oldest of them leaves the window.
        retry_after: Duration,
    },
    /// The same command on the same object executed `ago`.
    Cooldown {
        /// How long ago it was admitted.
        ago: Duration,
        /// The configured cooldown.
        cooldown: Duration,
        /// What is left of it.
        retry_after: Duration,
    },
}

impl Refusal {
    /// When trying again could succeed.
    pub fn retry_after(&self) -> Duration {
        match self {
            Refusal::Rate { retry_after, .. } | Refusal::Cooldown { retry_after, .. } => {
                *retry_after
            }
        }
    }
}

/// Each plugin's destructive commands: when they were admitted, and which ones.
#[derive(Debug, Default)]
pub struct Limiter {
    admitted: HashMap<String, VecDeque<Instant>>,
    recent: HashMap<(String, u64), Instant>,
}

/// What makes two commands "the same": verb, target and payload.
fn identity(cmd: &Command) -> u64 {
    let mut h = DefaultHasher::new();
    cmd.name().hash(&mut h);
    cmd.target().map(|t| t.key()).hash(&mut h);
    match cmd {
        Command::Apply(body) => body.hash(&mut h),
        Command::MergePatch(p) | Command::JsonPatch(p) => p.patch.hash(&mut h),
        Command::Taint(t) => {
            t.taint.key.hash(&mut h);
            t.taint.value.hash(&mut h);
            t.taint.effect.as_k8s().hash(&mut h);
        }
        _ => {}
    }
    h.finish()
}

impl Limiter {
    /// Whether `plugin` may run the destructive command `cmd` at `now`, without counting
    /// it.
    pub fn check(
        &mut self,
        plugin: &str,
        cmd: &Command,
        config: &Config,
        now: Instant,
    ) -> Result<(), Refusal> {
        if !config.cooldown.is_zero()
            && let Some(at) = self.recent.get(&(plugin.to_owned(), identity(cmd)))
        {
            let ago = now.saturating_duration_since(*at);
            if ago < config.cooldown {
                return Err(Refusal::Cooldown {
                    ago,
                    cooldown: config.cooldown,
                    retry_after: config.cooldown - ago,
                });
            }
        }
        if let Some(Limit::Count(limit)) = config.per_minute {
            let times = self.admitted.entry(plugin.to_owned()).or_default();
            while times
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
            {
                times.pop_front();
            }
            if times.len() >= usize::try_from(limit).unwrap_or(usize::MAX) {
                let oldest = times.front().copied().unwrap_or(now);
                return Err(Refusal::Rate {
                    limit,
                    retry_after: WINDOW.saturating_sub(now.saturating_duration_since(oldest)),
                });
            }
        }
        Ok(())
    }

    /// Counts an admitted destructive command from `now`.
    pub fn admitted(&mut self, plugin: &str, cmd: &Command, config: &Config, now: Instant) {
        if config.per_minute.is_some() {
            self.admitted
                .entry(plugin.to_owned())
                .or_default()
                .push_back(now);
        }
        if !config.cooldown.is_zero() {
            if self.recent.len() >= PRUNE_AT {
                self.recent.retain(|_, at| {
                    now.saturating_duration_since(*at) < config.cooldown.max(WINDOW)
                });
            }
            self.recent.insert((plugin.to_owned(), identity(cmd)), now);
        }
    }

    /// The command failed: it did not destroy anything, so it may be retried at once.
    pub fn failed(&mut self, plugin: &str, cmd: &Command) {
        self.recent.remove(&(plugin.to_owned(), identity(cmd)));
    }

    /// Forgets a plugin (when it is unloaded).
    pub fn forget(&mut self, plugin: &str) {
        self.admitted.remove(plugin);
        self.recent.retain(|(p, _), _| p != plugin);
    }
}

#[cfg(test)]
mod tests {
    use super::super::budget::fixtures::{evict, set_image};
    use super::*;

    #[test]
    fn the_same_command_waits_for_its_cooldown() {
        let mut l = Limiter::default();
        let config = Config::default();
        let now = Instant::now();
        let cmd = evict("web-0");
        assert!(l.check("p", &cmd, &config, now).is_ok());
        l.admitted("p", &cmd, &config, now);
        let later = now + Duration::from_secs(20);
        let refusal = l
            .check("p", &cmd, &config, later)
            .expect_err("cooling down");
        assert_eq!(refusal.retry_after(), Duration::from_secs(40));
        // Another pod, another plugin, another payload: not the same command.
        assert!(l.check("p", &evict("web-1"), &config, later).is_ok());
        assert!(l.check("q", &cmd, &config, later).is_ok());
        l.admitted("p", &set_image("web-0", "app:v2"), &config, later);
        assert!(
            l.check("p", &set_image("web-0", "app:v3"), &config, later)
                .is_ok()
        );
        // After the cooldown, or when it failed, it may run again.
        assert!(l.check("p", &cmd, &config, now + config.cooldown).is_ok());
        l.failed("p", &cmd);
        assert!(l.check("p", &cmd, &config, later).is_ok());
    }

    #[test]
    fn at_most_per_minute_in_any_minute() {
        let mut l = Limiter::default();
        let config = Config {
            per_minute: Some(Limit::Count(3)),
            cooldown: Duration::ZERO,
        };
        let t0 = Instant::now();
        for i in 0..3u64 {
            let at = t0 + Duration::from_secs(i * 10);
            assert!(l.check("p", &evict("web-0"), &config, at).is_ok());
            l.admitted("p", &evict("web-0"), &config, at);
        }
        let at = t0 + Duration::from_secs(30);
        let refusal = l
            .check("p", &evict("web-1"), &config, at)
            .expect_err("3 in a minute");
        assert_eq!(
            refusal,
            Refusal::Rate {
                limit: 3,
                retry_after: Duration::from_secs(30)
            }
        );
        assert!(l.check("p", &evict("web-1"), &config, t0 + WINDOW).is_ok());
        let off = Config {
            per_minute: None,
            cooldown: Duration::ZERO,
        };
        assert!(l.check("p", &evict("web-1"), &off, at).is_ok());
    }

    #[test]
    fn config_reads_off_and_refuses_percentages() {
        let c: Config =
            serde_json::from_str(r#"{"perMinute": "off", "cooldown": "0s"}"#).expect("off");
        assert_eq!((c.per_minute, c.cooldown), (None, Duration::ZERO));
        assert!(serde_json::from_str::<Config>(r#"{"perMinute": "10%"}"#).is_err());
        let d: Config = serde_json::from_str("{}").expect("defaults");
        assert_eq!(d, Config::default());
    }
}
