//! The `Plugin`-object controller: turns each `Plugin` (`bosun.dev/v1alpha1`) into a
//! serving revision — fetch the source, load it, check its world, name and grants, then
//! adopt it, start a canary or start a shadow — acts on promote/rollback annotations,
//! and writes the status (revisions, counters, conditions, history).
//!
//! Tenancy: Plugin objects are read in one namespace only, the runtime's plugin
//! namespace ([`namespace`]). A plugin acts cluster-wide with the runtime's identity, so
//! who may declare one is decided by RBAC on that one namespace; plugins are keyed by
//! name within it. A Plugin anywhere else never loads and never replaces anything: it is
//! marked `Degraded` (`WrongNamespace`) once, naming the namespace Plugins are read in.
//!
//! Each Plugin's spec is applied (fetched, loaded, attached) in a task of its own, one
//! at a time per Plugin: a slow URL delays only its own Plugin.
//!
//! It is event-driven: woken by changes of Plugin objects (an informer, like the
//! dispatcher's), by rollout changes (a canary judged, promoted, rolled back), by
//! leadership, and every ten seconds to refresh counters. ConfigMaps are not watched:
//! a revision's ConfigMap is immutable and named by its digest, so a new revision always
//! comes with a Plugin change; a source that could not be read (a ConfigMap created
//! after its Plugin) is tried again with backoff instead, which spares the runtime a
//! cache of every ConfigMap in the cluster.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bosun_api::Selector;
use bosun_api::keys::{
    CONFIGMAP_KEY, DIGEST_LABEL, PLUGIN_LABEL, PROMOTE_ANNOTATION, ROLLBACK_ANNOTATION,
};
use bosun_api::plugin::{
    Condition, HistoryEntry, Plugin, PluginStatus, RevisionCounters, Source, Strategy,
};
use bosun_api::time::rfc3339;
use bosun_host::Revision;
use bosun_host::contract::EventKind;
use bosun_host::host::clock::{Clock, System};
use bosun_host::load::Source as Bytes;
use bosun_host::registry::Outcome;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{Analysis, Candidate, Grants, Judgement, Rollouts, Split, source};
use crate::informer::{Informers, Kind};

/// The API version of Plugin objects.
pub const API_VERSION: &str = "bosun.dev/v1alpha1";

/// The kind of Plugin objects.
pub fn kind() -> Kind {
    Kind::new(API_VERSION, "Plugin")
}

/// Why a Plugin's spec is not served; its name is the `Degraded` condition's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The component could not be fetched or is not the one the source names.
    #[error(transparent)]
    Source(#[from] source::Error),
    /// `spec.rollout` is not a rollout this runtime can run.
    #[error("{0}")]
    InvalidRollout(String),
    /// The component did not load (compile, link, metadata, init).
    #[error("{0}")]
    LoadFailed(String),
    /// The component is another plugin than the Plugin object names.
    #[error("{0}")]
    NameMismatch(String),
    /// The Plugin object is outside the namespace Plugins are read in.
    #[error("{0}")]
    WrongNamespace(String),
    /// The object does not read as a Plugin.
    #[error("{0}")]
    InvalidObject(String),
    /// The component implements another world than `spec.world`.
    #[error("{0}")]
    WorldMismatch(String),
    /// The plugin asks for permissions `spec.permissions` does not grant.
    #[error("{0}")]
    PermissionsNotGranted(String),
}

impl Problem {
    /// The `Degraded` condition's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::Source(e) => e.reason(),
            Problem::InvalidRollout(_) => "InvalidRollout",
            Problem::LoadFailed(_) => "LoadFailed",
            Problem::NameMismatch(_) => "NameMismatch",
            Problem::WrongNamespace(_) => "WrongNamespace",
            Problem::InvalidObject(_) => "InvalidObject",
            Problem::WorldMismatch(_) => "WorldMismatch",
            Problem::PermissionsNotGranted(_) => "PermissionsNotGranted",
        }
    }
}

impl From<super::Error> for Problem {
    fn from(e: super::Error) -> Self {
        use super::Error as E;
        match e {
            E::NameMismatch { .. } => Problem::NameMismatch(e.to_string()),
            E::NotGranted { .. } => Problem::PermissionsNotGranted(e.to_string()),
            E::World { .. } => Problem::WorldMismatch(e.to_string()),
            E::NoStable(_) | E::NoCanary(_) => Problem::InvalidRollout(e.to_string()),
            E::Load(_) => Problem::LoadFailed(e.to_string()),
        }
    }
}

/// The namespace Plugin objects are read in: `configured` (the runtime config's
/// `pluginNamespace`), else the client's default namespace — the runtime's own
/// namespace in a pod (its service account's), else the kubeconfig context's, else
/// `default`. `bosun plugin` and the plugins folder's publisher use the same default.
pub fn namespace(configured: Option<&str>, client: &kube::Client) -> String {
    configured
        .filter(|ns| !ns.is_empty())
        .map_or_else(|| client.default_namespace().to_owned(), str::to_owned)
}

/// What the controller drives Plugin objects with: narrow handles, not the runtime.
#[derive(Clone)]
pub struct Parts {
    /// Starts, promotes and rolls back revisions.
    pub rollouts: Arc<Rollouts>,
    /// The shared cache (Plugin objects are read from it).
    pub informers: Arc<Informers>,
    /// Writes status and reads ConfigMaps.
    pub client: kube::Client,
    /// Whether this runtime leads: only the leader acts.
    pub leading: watch::Receiver<bool>,
    /// The one namespace Plugin objects are read in (see [`namespace`]).
    pub namespace: String,
    /// The runtime's plugins folder (embedded mode): the only place `file` sources may
    /// name; without one, `file` sources are refused.
    pub plugins_dir: Option<PathBuf>,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("controller::Parts").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Seen {
    /// Looked at once already: annotations found then are not requests.
    looked: bool,
    /// The spec version last applied (successfully or not).
    version: String,
    promote: Option<String>,
    rollback: Option<String>,
    problem: Option<Problem>,
    /// When a failed fetch is tried again, and the wait that led there.
    retry: Option<(Instant, Duration)>,
    status: Option<PluginStatus>,
    written: Option<Instant>,
    /// The last parse error logged for this object (logged once, not on every look).
    unreadable: Option<String>,
    /// Reported as outside the plugin namespace (reported once).
    wrong_namespace: bool,
}

impl Seen {
    /// Records how applying spec `version` of the Plugin `key` went.
    fn applied(&mut self, key: &Key, version: String, result: Result<(), Problem>) {
        match result {
            Ok(()) => {
                self.problem = None;
                self.retry = None;
            }
            Err(problem) => {
                tracing::warn!(plugin = %format!("{}/{}", key.0, key.1), reason = problem.reason(), "{problem}");
                // A source that could not be read may appear (a ConfigMap created after
                // its Plugin): tried again with backoff. Other problems wait for a change.
                self.retry =
                    matches!(problem, Problem::Source(source::Error::Fetch(_))).then(|| {
                        let wait = self
                            .retry
                            .map_or(RETRY_FIRST, |(_, w)| (w * 2).min(RETRY_MAX));
                        (Instant::now() + wait, wait)
                    });
                self.problem = Some(problem);
            }
        }
        self.version = version;
    }
}

/// What an apply reports: the Plugin, the spec version applied, and how it went.
type Applied = (Key, String, Result<(), Problem>);

/// Specs being applied, each in a task of its own and at most one per Plugin, so that
/// a slow fetch (or load) delays no other Plugin.
#[derive(Default)]
struct Applies {
    tasks: JoinSet<Applied>,
    /// The task and spec version of each Plugin with an apply in flight.
    in_flight: HashMap<Key, (tokio::task::Id, String)>,
}

impl Applies {
    fn busy(&self, key: &Key) -> bool {
        self.in_flight.contains_key(key)
    }

    /// Applies spec `version` of `p` in the background.
    fn start(&mut self, parts: &Parts, key: Key, version: String, p: &Plugin) {
        let span =
            tracing::info_span!("bosun.rollout.apply", plugin = %format!("{}/{}", key.0, key.1));
        let (parts, p) = (parts.clone(), p.clone());
        let (k, v) = (key.clone(), version.clone());
        let task = self.tasks.spawn(tracing::Instrument::instrument(
            async move {
                let result = apply_spec(&parts, &p).await;
                (k, v, result)
            },
            span,
        ));
        self.in_flight.insert(key, (task.id(), version));
    }

    /// The next apply to end (pending while none is in flight).
    async fn next(&mut self) -> Applied {
        loop {
            match self.tasks.join_next_with_id().await {
                None => std::future::pending::<()>().await,
                Some(Ok((_, done))) => {
                    self.in_flight.remove(&done.0);
                    return done;
                }
                Some(Err(e)) => {
                    // A panic: the Plugin reports it and is applied again on its next change.
                    let id = e.id();
                    let Some((key, version)) = self
                        .in_flight
                        .iter()
                        .find(|(_, (task, _))| *task == id)
                        .map(|(k, (_, v))| (k.clone(), v.clone()))
                    else {
                        continue;
                    };
                    self.in_flight.remove(&key);
                    let problem = Problem::LoadFailed(format!("applying the spec failed: {e}"));
                    return (key, version, Err(problem));
                }
            }
        }
    }
}

/// Counters alone are written at most this often (and looked at this often).
const COUNTERS_EVERY: Duration = Duration::from_secs(10);
/// First and longest wait before a failed fetch is tried again.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Where a retry waits while its apply runs (the apply's end decides the next one).
const RETRY_PARKED: Duration = Duration::from_secs(24 * 3600);

type Key = (String, String);

fn key_of(target: &bosun_host::contract::ObjectRef) -> Key {
    (
        target.namespace.clone().unwrap_or_default(),
        target.name.clone(),
    )
}

/// Drives Plugin objects until the informers' change feed closes.
pub async fn run(parts: Parts) {
    parts.informers.watch(kind());
    let mut changes = parts.informers.observe(&[kind()]);
    let mut rollouts_changed = parts.rollouts.changed();
    let mut leading = parts.leading.clone();
    let mut counters = tokio::time::interval(COUNTERS_EVERY);
    let mut seen: HashMap<Key, Seen> = HashMap::new();
    let mut applies = Applies::default();
    loop {
        let next_retry = seen
            .values()
            .filter_map(|s| s.retry.map(|(at, _)| at))
            .min();
        // Which Plugins to look at; None: all of them.
        let mut dirty: Option<HashSet<Key>> = Some(HashSet::new());
        tokio::select! {
            change = changes.recv() => {
                let Some(change) = change else { return };
                let set = dirty.get_or_insert_with(HashSet::new);
                let mut note = |c: crate::informer::Change| {
                    let key = key_of(&c.target);
                    if c.event == EventKind::Deleted {
                        // Nothing to undo: the serving revision stays until removed.
                        set.remove(&key);
                        seen.remove(&key);
                    } else {
                        set.insert(key);
                    }
                };
                note(change);
                while let Ok(more) = changes.try_recv() {
                    note(more);
                }
            }
            (key, version, result) = applies.next() => {
                if let Some(entry) = seen.get_mut(&key) {
                    entry.applied(&key, version, result);
                }
                dirty = Some(HashSet::from([key]));
            }
            Ok(()) = rollouts_changed.changed() => dirty = None,
            Ok(()) = leading.changed() => dirty = None,
            _ = counters.tick() => dirty = None,
            () = sleep_until(next_retry) => {
                let now = Instant::now();
                dirty = Some(seen.iter().filter(|(_, s)| s.retry.is_some_and(|(at, _)| at <= now)).map(|(k, _)| k.clone()).collect());
            }
        }
        if !*leading.borrow_and_update() {
            continue;
        }
        let targets: Vec<Key> = match dirty {
            Some(set) => set.into_iter().collect(),
            None => parts
                .informers
                .keys(&kind())
                .into_iter()
                .map(|(t, _)| key_of(&t))
                .collect(),
        };
        for (ns, name) in targets {
            let target = bosun_host::contract::ObjectRef {
                api_version: API_VERSION.to_owned(),
                kind: "Plugin".to_owned(),
                namespace: Some(ns.clone()),
                name: name.clone(),
            };
            let Some(json) = parts.informers.get(&target) else {
                continue;
            };
            let key = (ns, name);
            let entry = seen.entry(key.clone()).or_default();
            if key.0 != parts.namespace {
                if !entry.wrong_namespace {
                    // Said once: a warning and a Degraded condition; nothing else happens.
                    let problem = Problem::WrongNamespace(format!(
                        "Plugins are read in namespace {} only: this one is ignored (a plugin acts cluster-wide with the runtime's identity, so only that namespace may declare one)",
                        parts.namespace
                    ));
                    tracing::warn!(plugin = %target, "{problem}");
                    report_degraded(&parts.client, &target, &json, &problem).await;
                    entry.wrong_namespace = true;
                }
                continue;
            }
            let plugin = match serde_json::from_str::<serde_json::Value>(&json)
                .map_err(|e| bosun_api::plugin::Unreadable {
                    path: ".".to_owned(),
                    message: e.to_string(),
                })
                .and_then(|v| bosun_api::plugin::parse(&v))
            {
                Ok(p) => p,
                Err(e) => {
                    let e = e.to_string();
                    if entry.unreadable.as_ref() != Some(&e) {
                        // Said once per problem: a warning and a Degraded condition.
                        tracing::warn!(plugin = %target, error = %e, "unreadable Plugin object");
                        let problem = Problem::InvalidObject(format!(
                            "the object is not a valid Plugin: {e}"
                        ));
                        report_degraded(&parts.client, &target, &json, &problem).await;
                        entry.unreadable = Some(e);
                    }
                    continue;
                }
            };
            entry.unreadable = None;
            drive(&parts, &plugin, entry, &mut applies).await;
        }
    }
}

/// Writes a Degraded condition naming `problem` on a Plugin the controller does not
/// drive (unreadable, or in another namespace), through JSON since the object may not
/// read as a Plugin; `json` is the object as cached: a condition it already carries is
/// not written again (a restarted runtime says it once too).
async fn report_degraded(
    client: &kube::Client,
    target: &bosun_host::contract::ObjectRef,
    json: &str,
    problem: &Problem,
) {
    let (reason, message) = (problem.reason(), problem.to_string());
    let object: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let said = object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Degraded" && c["reason"] == reason && c["message"] == *message);
    if said {
        return;
    }
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        target.namespace.as_deref().unwrap_or_default(),
        &kube::api::ApiResource::erase::<Plugin>(&()),
    );
    let degraded = Condition {
        type_: "Degraded".to_owned(),
        status: "True".to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time: rfc3339(System.now_ms()),
    };
    let patch = serde_json::json!({ "status": { "conditions": [degraded] } });
    if let Err(e) = api
        .patch_status(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::debug!(plugin = %target, error = %e, "cannot write the Plugin status");
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn annotation(p: &Plugin, key: &str) -> Option<String> {
    p.metadata.annotations.as_ref()?.get(key).cloned()
}

fn analysis_of(p: &Plugin) -> Result<(Split, Analysis), String> {
    let canary = p.spec.rollout.canary.clone().unwrap_or_default();
    let split = match (&canary.selector, canary.share) {
        (Some(sel), _) => {
            let text: Vec<String> = sel
                .match_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            Split::Selector(
                Selector::parse(&text.join(","))
                    .map_err(|e| format!("rollout.canary.selector: {e}"))?,
            )
        }
        (None, Some(share)) if (1..=100).contains(&share) => Split::Share(share),
        (None, Some(share)) => {
            return Err(format!(
                "rollout.canary.share {share} is not a percentage of keys: use 1 to 100"
            ));
        }
        (None, None) => Split::Share(10),
    };
    let d = Analysis::default();
    let a = &canary.analysis;
    for (name, v) in [
        ("maxErrorRate", a.max_error_rate),
        ("maxTrapRate", a.max_trap_rate),
        ("maxRefusedRate", a.max_refused_rate),
    ] {
        if let Some(v) = v
            && !(0.0..=1.0).contains(&v)
        {
            return Err(format!(
                "rollout.canary.analysis.{name} {v} is not a rate: use 0 to 1"
            ));
        }
    }
    Ok((
        split,
        Analysis {
            max_error_rate: a.max_error_rate.unwrap_or(d.max_error_rate),
            max_trap_rate: a.max_trap_rate.unwrap_or(d.max_trap_rate),
            max_refused_rate: a.max_refused_rate.unwrap_or(d.max_refused_rate),
            min_samples: a.min_samples.unwrap_or(d.min_samples),
            window: a.window_seconds.map_or(d.window, Duration::from_secs),
            manual: canary.manual_promotion,
        },
    ))
}

/// Makes the runtime serve what `p`'s spec says: fetch, load, check, then adopt, start
/// a canary or start a shadow.
async fn apply_spec(parts: &Parts, p: &Plugin) -> Result<(), Problem> {
    let rollouts = &parts.rollouts;
    let name = p.metadata.name.clone().unwrap_or_default();
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let canary = if p.spec.rollout.strategy == Strategy::Canary {
        Some(analysis_of(p).map_err(Problem::InvalidRollout)?)
    } else {
        None
    };
    let source = source::fetch(
        &parts.client,
        &ns,
        &p.spec.source,
        parts.plugins_dir.as_deref(),
    )
    .await?;
    let config = config_of(p);
    let digest = source.digest();
    let grants = Grants::new(&p.spec.permissions);
    // Already serving exactly this (stable, or as the canary)?
    if let Some(current) = rollouts.registry().current(&name)
        && current.digest() == digest
        && current.config() == config
    {
        if rollouts.routes().route(&name).is_some() {
            // The spec went back to the stable revision: the canary ends.
            let _ =
                rollouts.abort_canary(&name, "the Plugin's source is the stable revision again");
        }
        return Ok(());
    }
    if let Some(route) = rollouts.routes().route(&name)
        && route.canary.digest() == digest
        && route.canary.config() == config
    {
        // The same canary, under grants that may have narrowed.
        let missing = grants.missing(&route.canary.metadata().permissions);
        if !missing.is_empty() {
            let e = super::Error::NotGranted {
                plugin: name.clone(),
                missing,
            };
            let _ = rollouts.abort_canary(&name, &e.to_string());
            return Err(e.into());
        }
        return Ok(());
    }
    let spec = spec_of(rollouts, p, config);
    if p.spec.rollout.strategy == Strategy::Shadow {
        let Some(stable) = rollouts.registry().current(&name) else {
            return Err(Problem::InvalidRollout(
                "a shadow needs a stable revision to compare with: roll the first revision out directly".to_owned(),
            ));
        };
        if stable.info().world != p.spec.world {
            return Err(Problem::WorldMismatch(format!(
                "spec.world says {} but the stable revision, which a shadow is compared with, is a {} plugin",
                p.spec.world,
                stable.info().world
            )));
        }
        // Name, grants and world are checked before it is attached.
        let (r, n) = (rollouts.clone(), name.clone());
        tokio::task::spawn_blocking(move || r.shadow(&n, grants, &source, spec))
            .await
            .map_err(|e| Problem::LoadFailed(e.to_string()))??;
        return Ok(());
    }
    if canary.is_some()
        && rollouts.registry().current(&name).is_none()
        && let Some(stable) = p.status.as_ref().and_then(|s| s.stable_revision.clone())
        && stable != digest
    {
        // A restarted runtime: the stable revision comes back first, then the canary
        // resumes with the same split.
        restore_stable(parts, p, &stable).await?;
    }
    let mut spec = spec;
    // A canary runs beside the stable revision, on state of its own.
    let state = (canary.is_some() && rollouts.registry().current(&name).is_some())
        .then(|| rollouts.isolate(&mut spec));
    let revision = Arc::new(load(rollouts, &source, spec, &name).await?);
    if let Err(problem) = admissible(p, &revision, &grants) {
        rollouts
            .registry()
            .record_failure(&name, &digest, &source.origin, &problem.to_string());
        return Err(problem);
    }
    match (canary, state) {
        (Some((split, analysis)), Some(state)) => {
            let candidate = Candidate { revision, state };
            rollouts.start_canary(&name, grants, candidate, split, analysis)?;
        }
        _ => {
            if rollouts.routes().route(&name).is_some() {
                let _ = rollouts.abort_canary(&name, "replaced by a direct rollout");
            }
            rollouts.grant(&name, grants);
            rollouts.adopt(revision);
        }
    }
    Ok(())
}

/// The spec a revision of `p` loads with: the runtime's, with `p`'s config and limits.
fn spec_of(rollouts: &Rollouts, p: &Plugin, config: String) -> bosun_host::load::Spec {
    let mut spec = rollouts.spec();
    spec.config = config;
    if let Some(l) = &p.spec.limits {
        if let Some(ms) = l.deadline_ms {
            spec.limits.deadline = Duration::from_millis(ms);
        }
        if let Some(bytes) = l.memory_bytes {
            spec.limits.memory_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        }
    }
    spec
}

/// The JSON handed to the plugin's `init`.
fn config_of(p: &Plugin) -> String {
    p.spec
        .config
        .as_ref()
        .map_or_else(|| "{}".to_owned(), serde_json::Value::to_string)
}

/// Loads (compile, link, metadata, init) off the async threads; a failure is recorded
/// in the plugin's history.
async fn load(
    rollouts: &Rollouts,
    source: &Bytes,
    spec: bosun_host::load::Spec,
    name: &str,
) -> Result<Revision, Problem> {
    let engine = rollouts.registry().engine().clone();
    let (src, expected) = (source.clone(), name.to_owned());
    tokio::task::spawn_blocking(move || Revision::load_named(&engine, &src, spec, &expected))
        .await
        .map_err(|e| Problem::LoadFailed(e.to_string()))?
        .map_err(|e| {
            rollouts.registry().record_failure(
                name,
                &source.digest(),
                &source.origin,
                &e.cause.to_string(),
            );
            match e.cause {
                bosun_host::load::Cause::NameMismatch { .. } => {
                    Problem::NameMismatch(e.to_string())
                }
                _ => Problem::LoadFailed(e.to_string()),
            }
        })
}

/// Whether a revision loaded for `p` (so named as it, see [`load`]) may serve: its
/// world, and the permissions its metadata asks for against what the Plugin grants.
fn admissible(p: &Plugin, revision: &Revision, grants: &Grants) -> Result<(), Problem> {
    let want = p.spec.world;
    if revision.info().world != want {
        return Err(Problem::WorldMismatch(format!(
            "the component is a {} plugin but spec.world says {want}",
            revision.info().world
        )));
    }
    let missing = grants.missing(&revision.metadata().permissions);
    if !missing.is_empty() {
        return Err(Problem::PermissionsNotGranted(format!(
            "the plugin asks for permissions spec.permissions does not grant: {}",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// Loads the revision `digest` of `p` from the ConfigMap `bosun plugin push` left for it.
async fn restore_stable(parts: &Parts, p: &Plugin, digest: &str) -> Result<(), Problem> {
    let (rollouts, client) = (&parts.rollouts, &parts.client);
    let name = p.metadata.name.clone().unwrap_or_default();
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let hex = digest.trim_start_matches("sha256:");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let list = api
        .list(&kube::api::ListParams::default().labels(&format!("{PLUGIN_LABEL}={name}")))
        .await
        .map_err(|e| source::Error::Fetch(format!("listing the ConfigMaps of {name}: {e}")))?;
    let found = list.items.into_iter().find(|cm| {
        cm.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(DIGEST_LABEL))
            .is_some_and(|d| hex.starts_with(d.as_str()))
    });
    let Some(cm) = found else {
        return Err(source::Error::Fetch(format!(
            "the stable revision {digest} is not kept in any ConfigMap of {name}; push it again"
        ))
        .into());
    };
    // Checked against the full digest the status names, not the ConfigMap's label.
    let source = Source::ConfigMap {
        name: cm.metadata.name.unwrap_or_default(),
        key: CONFIGMAP_KEY.to_owned(),
        sha256: digest.to_owned(),
    };
    let bytes = source::fetch(client, &ns, &source, None).await?;
    let revision = load(rollouts, &bytes, spec_of(rollouts, p, config_of(p)), &name).await?;
    let grants = Grants::new(&p.spec.permissions);
    admissible(p, &revision, &grants)?;
    rollouts.grant(&name, grants);
    rollouts.adopt(Arc::new(revision));
    Ok(())
}

/// Starts applying `p`'s spec when it changed (or a fetch failure is due for a retry)
/// and no apply of it is in flight, acts on new promote/rollback annotations, and
/// writes the status when it changed.
async fn drive(parts: &Parts, p: &Plugin, seen: &mut Seen, applies: &mut Applies) {
    let (rollouts, client) = (&parts.rollouts, &parts.client);
    let name = p.metadata.name.clone().unwrap_or_default();
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let version = format!(
        "{}/{}",
        p.metadata.generation.unwrap_or_default(),
        serde_json::to_string(&p.spec).unwrap_or_default()
    );
    // What the Plugin grants now bounds a promotion, even before its spec is applied.
    rollouts.grant(&name, Grants::new(&p.spec.permissions));
    rollouts.declare_webhook(&name, p.spec.admission.clone());
    let first = !seen.looked;
    seen.looked = true;
    let retry = seen.retry.is_some_and(|(at, _)| at <= Instant::now());
    let key = (ns.clone(), name.clone());
    if (version != seen.version || retry) && !applies.busy(&key) {
        // Due no more while it runs (the wait is kept for the backoff).
        seen.retry = seen
            .retry
            .map(|(_, wait)| (Instant::now() + RETRY_PARKED, wait));
        applies.start(parts, key, version, p);
    }
    // Annotations are requests: one seen when the runtime starts was already acted on
    // (or is stale), so only a change acts.
    let promote = annotation(p, PROMOTE_ANNOTATION);
    if !first
        && promote.is_some()
        && promote != seen.promote
        && let Err(e) = rollouts.promote(&name, "promoted by hand (bosun.dev/promote)")
    {
        tracing::warn!(plugin = %name, "{e}");
    }
    seen.promote = promote;
    let rollback = annotation(p, ROLLBACK_ANNOTATION);
    if !first && rollback.is_some() && rollback != seen.rollback {
        if rollouts.routes().route(&name).is_some() {
            let _ = rollouts.abort_canary(&name, "rolled back by hand (bosun.dev/rollback)");
        } else if let Err(e) = rollouts.rollback(&name) {
            tracing::warn!(plugin = %name, "{e}");
        }
    }
    seen.rollback = rollback;
    let mut status = status_of(rollouts, &name, seen.problem.as_ref());
    // A condition keeps its transition time while its status stays.
    let now = rfc3339(System.now_ms());
    for c in &mut status.conditions {
        c.last_transition_time = seen
            .status
            .as_ref()
            .and_then(|s| {
                s.conditions
                    .iter()
                    .find(|o| o.type_ == c.type_ && o.status == c.status)
            })
            .map_or_else(|| now.clone(), |o| o.last_transition_time.clone());
    }
    let only_counters = seen.status.as_ref().is_some_and(|old| {
        let mut a = old.clone();
        a.revisions = status.revisions.clone();
        a == status
    });
    let due = seen.written.is_none_or(|t| t.elapsed() >= COUNTERS_EVERY);
    if seen.status.as_ref() != Some(&status) && (!only_counters || due) {
        let api: Api<Plugin> = Api::namespaced(client.clone(), &ns);
        // A merge patch leaves out what it does not name: fields now empty are nulled.
        let mut value = serde_json::to_value(&status).unwrap_or_default();
        for field in ["stableRevision", "canaryRevision", "canaryShare"] {
            if let Some(obj) = value.as_object_mut() {
                obj.entry(field).or_insert(serde_json::Value::Null);
            }
        }
        let patch = serde_json::json!({ "status": value });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                seen.status = Some(status);
                seen.written = Some(std::time::Instant::now());
            }
            Err(e) => {
                tracing::warn!(plugin = %format!("{ns}/{name}"), error = %e, "cannot write the Plugin status")
            }
        }
    }
}

fn condition(type_: &str, on: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if on { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        // Set when written; the runtime does not track transitions across restarts.
        last_transition_time: String::new(),
    }
}

/// The status the runtime reports for the Plugin `name` (transition times left empty).
fn status_of(rollouts: &Rollouts, name: &str, problem: Option<&Problem>) -> PluginStatus {
    let stable = rollouts.registry().current(name);
    let (route, judgement) = rollouts.state(name);
    let mut revisions = BTreeMap::new();
    let counters = |r: &Revision| {
        let s = r.stats();
        RevisionCounters {
            reconciles: s.reconciles,
            errors: s.errors,
            traps: s.traps + s.timeouts + s.out_of_memory,
            refused: s.commands_refused,
        }
    };
    if let Some(s) = &stable {
        revisions.insert(s.digest().to_owned(), counters(s));
    }
    if let Some(r) = &route {
        revisions.insert(r.canary.digest().to_owned(), counters(&r.canary));
    }
    let mut conditions = vec![match &stable {
        Some(s) => condition(
            "Ready",
            true,
            "Serving",
            &format!("{} serves", bosun_host::host::log::short(s.digest())),
        ),
        None => condition("Ready", false, "NotServing", "no revision serves yet"),
    }];
    conditions.push(match (&route, &judgement) {
        (Some(_), Some(j)) => {
            let (reason, text) = match j {
                Judgement::Waiting(t) => ("CanaryAnalysis", t),
                Judgement::ReadyToPromote(t) => ("AwaitingPromotion", t),
                Judgement::Promote(t) | Judgement::RollBack(t) => ("CanaryAnalysis", t),
            };
            condition("Progressing", true, reason, text)
        }
        (Some(_), None) => condition(
            "Progressing",
            true,
            "CanaryStarted",
            "the analysis has not run yet",
        ),
        (None, Some(Judgement::Promote(t))) => condition("Progressing", false, "CanaryPromoted", t),
        (None, Some(Judgement::RollBack(t))) => {
            condition("Progressing", false, "CanaryRolledBack", t)
        }
        (None, _) => condition("Progressing", false, "Stable", "no canary in progress"),
    });
    conditions.push(match (problem, &judgement, &route) {
        (Some(problem), _, _) => {
            condition("Degraded", true, problem.reason(), &problem.to_string())
        }
        (None, Some(Judgement::RollBack(t)), None) => {
            condition("Degraded", true, "CanaryRolledBack", t)
        }
        _ => condition("Degraded", false, "AsExpected", ""),
    });
    let history = rollouts
        .registry()
        .history(name)
        .into_iter()
        .map(|e| {
            let ms =
                e.at.duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
            let (outcome, reason) = match e.outcome {
                Outcome::Serving => ("Serving", None),
                Outcome::Replaced => ("Replaced", None),
                Outcome::RolledBack => ("RolledBackTo", None),
                Outcome::Failed(r) => ("Failed", Some(r)),
            };
            HistoryEntry {
                digest: e.digest,
                time: rfc3339(ms),
                outcome: outcome.to_owned(),
                reason,
            }
        })
        .collect();
    PluginStatus {
        stable_revision: stable.map(|s| s.digest().to_owned()),
        canary_revision: route.as_ref().map(|r| r.canary.digest().to_owned()),
        canary_share: route.as_ref().and_then(|r| match r.split {
            Split::Share(s) => Some(s),
            Split::Selector(_) | Split::Shadow => None,
        }),
        revisions,
        conditions,
        history,
    }
}
