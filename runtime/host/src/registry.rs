//! The plugin registry: a plugin is a name and its revisions. One revision is current;
//! swapping is atomic between two calls (calls in flight finish on the revision they
//! started on), and a revision that fails to load leaves the current one serving.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use crate::engine::Engine;
use crate::load::{self, Source, Spec};
use crate::revision::{Revision, unix_ms};

/// Revisions kept loaded per plugin, for instant rollback.
const KEPT_REVISIONS: usize = 4;
/// History entries kept per plugin.
const HISTORY: usize = 32;

/// What happened to one revision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "state", content = "reason")]
pub enum Outcome {
    /// It is the current revision.
    Serving,
    /// A newer revision replaced it.
    Replaced,
    /// It failed to load; the previous revision kept serving.
    Failed(String),
    /// It was made current again by a rollback.
    RolledBack,
}

/// One entry of a plugin's history.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The revision's digest.
    pub digest: String,
    /// Where it came from.
    pub origin: String,
    /// When.
    #[serde(with = "unix_ms")]
    pub at: SystemTime,
    /// What happened.
    pub outcome: Outcome,
}

#[derive(Default)]
struct Slot {
    current: RwLock<Option<Arc<Revision>>>,
    kept: Mutex<VecDeque<Arc<Revision>>>,
    history: Mutex<VecDeque<Entry>>,
}

impl Slot {
    fn record(&self, entry: Entry) {
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        if entry.outcome == Outcome::Serving || entry.outcome == Outcome::RolledBack {
            for e in history
                .iter_mut()
                .filter(|e| matches!(e.outcome, Outcome::Serving | Outcome::RolledBack))
            {
                e.outcome = Outcome::Replaced;
            }
        }
        history.push_back(entry);
        while history.len() > HISTORY {
            history.pop_front();
        }
    }

    fn swap(&self, revision: Arc<Revision>) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.retain(|r| r.digest() != revision.digest());
        kept.push_back(revision.clone());
        while kept.len() > KEPT_REVISIONS {
            kept.pop_front();
        }
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(revision);
    }
}

/// A registry operation that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The revision failed to load; the previous one (if any) keeps serving.
    #[error(transparent)]
    Load(#[from] load::Error),
    /// No plugin of that name is registered.
    #[error("no plugin named {0:?}")]
    UnknownPlugin(String),
    /// No kept revision matches.
    #[error("plugin {plugin}: no kept revision matches {wanted:?} (kept: {kept})")]
    UnknownRevision {
        /// The plugin.
        plugin: String,
        /// What was asked for.
        wanted: String,
        /// What is kept.
        kept: String,
    },
}

/// A plugin's state, for status pages.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The plugin's name.
    pub name: String,
    /// The current revision, if one loaded.
    pub current: Option<crate::revision::Info>,
    /// Its counters.
    pub stats: Option<crate::stats::Stats>,
    /// What its state holds.
    pub state: Option<crate::host::cache::Usage>,
    /// Recent history, oldest first.
    pub history: Vec<Entry>,
}

/// All plugins of one host.
pub struct Registry {
    engine: Engine,
    plugins: RwLock<BTreeMap<String, Arc<Slot>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("plugins", &self.names())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry on `engine`.
    pub fn new(engine: Engine) -> Self {
        Registry {
            engine,
            plugins: RwLock::default(),
        }
    }

    /// The engine revisions are loaded on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn slot(&self, name: &str) -> Arc<Slot> {
        if let Some(slot) = self
            .plugins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return slot.clone();
        }
        let mut plugins = self.plugins.write().unwrap_or_else(PoisonError::into_inner);
        plugins.entry(name.to_owned()).or_default().clone()
    }

    /// Loads a revision and makes it current. `expected` names the plugin when the
    /// caller knows it (e.g. from a file name), so that a failure is recorded under it;
    /// otherwise the plugin's metadata names it. Loading bytes identical to the current
    /// revision changes nothing.
    pub fn load(
        &self,
        source: &Source,
        spec: Spec,
        expected: Option<&str>,
    ) -> Result<Arc<Revision>, Error> {
        let digest = source.digest();
        if let Some(name) = expected
            && let Some(current) = self.current(name)
            && current.digest() == digest
            && current.config() == spec.config
        {
            return Ok(current);
        }
        let loaded = match expected {
            Some(name) => Revision::load_named(&self.engine, source, spec, name),
            None => Revision::load(&self.engine, source, spec),
        };
        match loaded {
            Ok(revision) => {
                let revision = Arc::new(revision);
                let slot = self.slot(revision.name());
                slot.swap(revision.clone());
                slot.record(Entry {
                    digest,
                    origin: source.origin.clone(),
                    at: SystemTime::now(),
                    outcome: Outcome::Serving,
                });
                tracing::info!(
                    plugin = revision.name(),
                    digest = revision.digest(),
                    "revision serving"
                );
                Ok(revision)
            }
            Err(error) => {
                let name = expected.map_or(error.plugin.clone(), str::to_owned);
                self.slot(&name).record(Entry {
                    digest,
                    origin: source.origin.clone(),
                    at: SystemTime::now(),
                    outcome: Outcome::Failed(error.cause.to_string()),
                });
                tracing::warn!(plugin = %name, error = %error, "revision failed to load; the previous one keeps serving");
                Err(Error::Load(error))
            }
        }
    }

    /// The current revision of a plugin. Callers hold the `Arc` for one call: a swap
    /// during the call does not affect it.
    pub fn current(&self, name: &str) -> Option<Arc<Revision>> {
        let plugins = self.plugins.read().unwrap_or_else(PoisonError::into_inner);
        let slot = plugins.get(name)?;
        slot.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes a kept revision current again: the one before the current by default, or
    /// the one whose digest starts with `to`.
    pub fn rollback(&self, name: &str, to: Option<&str>) -> Result<Arc<Revision>, Error> {
        let slot = self
            .plugins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownPlugin(name.to_owned()))?;
        let current = self.current(name).map(|r| r.digest().to_owned());
        let target = {
            let kept = slot.kept.lock().unwrap_or_else(PoisonError::into_inner);
            let matches = |r: &&Arc<Revision>| match to {
                Some(prefix) => {
                    r.digest().starts_with(prefix)
                        || r.digest().trim_start_matches("sha256:").starts_with(prefix)
                }
                None => Some(r.digest()) != current.as_deref(),
            };
            kept.iter()
                .rev()
                .find(matches)
                .cloned()
                .ok_or_else(|| Error::UnknownRevision {
                    plugin: name.to_owned(),
                    wanted: to.unwrap_or("the previous revision").to_owned(),
                    kept: kept
                        .iter()
                        .map(|r| r.digest().to_owned())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?
        };
        slot.swap(target.clone());
        slot.record(Entry {
            digest: target.digest().to_owned(),
            origin: target.info().origin.clone(),
            at: SystemTime::now(),
            outcome: Outcome::RolledBack,
        });
        Ok(target)
    }

    /// Makes an already loaded revision current (a canary promoted): calls in flight
    /// finish on the revision they started on.
    pub fn adopt(&self, revision: Arc<Revision>) {
        let slot = self.slot(revision.name());
        slot.swap(revision.clone());
        slot.record(Entry {
            digest: revision.digest().to_owned(),
            origin: revision.info().origin.clone(),
            at: SystemTime::now(),
            outcome: Outcome::Serving,
        });
    }

    /// Records that `digest` of plugin `name` was tried and did not stay (a canary rolled
    /// back, a source that could not be verified), with why.
    pub fn record_failure(&self, name: &str, digest: &str, origin: &str, reason: &str) {
        self.slot(name).record(Entry {
            digest: digest.to_owned(),
            origin: origin.to_owned(),
            at: SystemTime::now(),
            outcome: Outcome::Failed(reason.to_owned()),
        });
    }

    /// The history of one plugin, oldest first.
    pub fn history(&self, name: &str) -> Vec<Entry> {
        let plugins = self.plugins.read().unwrap_or_else(PoisonError::into_inner);
        plugins.get(name).map_or_else(Vec::new, |slot| {
            slot.history
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .cloned()
                .collect()
        })
    }

    /// Removes a plugin and frees what it held: its state and its idle instances.
    /// Calls in flight finish.
    pub fn remove(&self, name: &str) -> bool {
        let slot = self
            .plugins
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        let Some(slot) = slot else {
            return false;
        };
        let current = slot
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(r) = current {
            r.clear_state();
            r.drain_idle();
        }
        true
    }

    /// Names of the registered plugins.
    pub fn names(&self) -> Vec<String> {
        self.plugins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// Status of every plugin.
    pub fn status(&self) -> Vec<Status> {
        let plugins = self.plugins.read().unwrap_or_else(PoisonError::into_inner);
        plugins
            .iter()
            .map(|(name, slot)| {
                let current = slot
                    .current
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                Status {
                    name: name.clone(),
                    current: current.as_ref().map(|r| r.info().clone()),
                    stats: current.as_ref().map(|r| r.stats()),
                    state: current.as_ref().map(|r| r.state_usage()),
                    history: slot
                        .history
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .iter()
                        .cloned()
                        .collect(),
                }
            })
            .collect()
    }
}
