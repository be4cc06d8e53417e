//! The shared informer cache: one kube-rs watcher per kind, however many plugins read
//! or subscribe to it. Objects are kept as serialized JSON, so a plugin's read is a copy
//! of text the cache already holds. Kinds are resolved by discovery, so custom resources
//! work; a kind that does not exist yet stays pending and starts when it appears.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bosun_host::contract::{EventKind, ObjectRef};
use bosun_host::host::CallInfo;
use bosun_host::host::cache::{Cache, ListQuery};
use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::mpsc;

use crate::guardrail::View;

/// How long the last state of a deleted object stays readable.
const TOMBSTONE_TTL: Duration = Duration::from_secs(300);

/// A kind, as plugins name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind {
    /// `v1`, `apps/v1`, ...
    pub api_version: String,
    /// `Pod`, ...
    pub kind: String,
}

impl Kind {
    /// A kind from its api-version and name.
    pub fn new(api_version: &str, kind: &str) -> Self {
        Kind {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        }
    }

    fn gvk(&self) -> GroupVersionKind {
        let (group, version) = match self.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", self.api_version.as_str()),
        };
        GroupVersionKind::gvk(group, version, &self.kind)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.api_version, self.kind)
    }
}

/// One change the informers saw, for the dispatcher.
#[derive(Debug, Clone)]
pub struct Change {
    /// The object.
    pub target: ObjectRef,
    /// What happened.
    pub event: EventKind,
    /// The object's labels (its last state when deleted).
    pub labels: Arc<BTreeMap<String, String>>,
}

#[derive(Debug, Clone)]
struct Entry {
    json: Arc<str>,
    labels: Arc<BTreeMap<String, String>>,
}

/// An object's place in its kind: namespace (none when cluster-scoped) and name.
type Key = (Option<String>, String);

/// The cache of one kind.
#[derive(Debug)]
struct KindCache {
    objects: RwLock<BTreeMap<Key, Entry>>,
    /// Last states of deleted objects, readable for a while after the delete.
    tombstones: RwLock<HashMap<Key, (Entry, Instant)>>,
    synced: AtomicBool,
}

/// Where a kind stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "state", content = "reason")]
pub enum KindState {
    /// Being listed for the first time.
    Syncing,
    /// Listed and watched.
    Synced,
    /// Not served by the API server (yet): retried.
    Pending(String),
}

/// Every kind the runtime watches.
pub struct Informers {
    client: Client,
    kinds: RwLock<HashMap<Kind, Arc<KindCache>>>,
    states: RwLock<HashMap<Kind, KindState>>,
    /// Kinds the API server answered it does not serve (their last discovery): nothing
    /// to list until they appear.
    absent: RwLock<HashSet<Kind>>,
    /// Kinds watched for the runtime's own use that a cluster may well not serve (a
    /// DaemonSet-less embedded cluster): their absence is logged at debug level.
    optional: RwLock<HashSet<Kind>>,
    /// Kinds waiting to be served, looked for by one discovery refresh for all of them.
    pending: Pending,
    /// Kinds the runtime watches for itself: never released.
    pinned: RwLock<HashSet<Kind>>,
    /// Each kind's watch task.
    handles: std::sync::Mutex<HashMap<Kind, tokio::task::AbortHandle>>,
    changes: mpsc::UnboundedSender<Change>,
    /// Other listeners (the Plugin-object controller), each for a few kinds.
    observers: RwLock<Vec<(HashSet<Kind>, mpsc::UnboundedSender<Change>)>>,
    resources: RwLock<HashMap<Kind, (ApiResource, bool)>>,
    tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for Informers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informers").finish_non_exhaustive()
    }
}

fn labels_of(object: &serde_json::Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(serde_json::Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

impl Informers {
    /// Informers on `client`; changes are sent to the returned receiver.
    pub fn new(client: Client) -> (Arc<Self>, mpsc::UnboundedReceiver<Change>) {
        let (changes, rx) = mpsc::unbounded_channel();
        let informers = Informers {
            client,
            kinds: RwLock::default(),
            states: RwLock::default(),
            absent: RwLock::default(),
            optional: RwLock::default(),
            pending: Pending::default(),
            pinned: RwLock::default(),
            handles: std::sync::Mutex::default(),
            changes,
            observers: RwLock::default(),
            resources: RwLock::default(),
            tasks: std::sync::Mutex::default(),
        };
        (Arc::new(informers), rx)
    }

    /// The client the informers use.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Resolves a kind through discovery: its API resource and whether it is namespaced.
    pub async fn resolve(&self, kind: &Kind) -> Result<(ApiResource, bool), kube::Error> {
        if let Some(r) = self
            .resources
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(kind)
        {
            return Ok(r.clone());
        }
        let (ar, caps) = kube::discovery::pinned_kind(&self.client, &kind.gvk()).await?;
        let namespaced = caps.scope == kube::discovery::Scope::Namespaced;
        self.resources
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kind.clone(), (ar.clone(), namespaced));
        Ok((ar, namespaced))
    }

    /// Starts watching `kind` for the runtime's own use (budgets, sidecars, Plugin
    /// objects) unless it is already watched or pending: it is never released.
    pub fn watch(self: &Arc<Self>, kind: Kind) {
        self.pinned
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kind.clone());
        self.start(kind);
    }

    /// Starts watching `kind` for plugins unless it is already watched or pending: it is
    /// released by [`release_unused`](Self::release_unused) once no plugin needs it.
    pub fn watch_for_plugins(self: &Arc<Self>, kind: Kind) {
        self.start(kind);
    }

    fn start(self: &Arc<Self>, kind: Kind) {
        {
            let mut states = self.states.write().unwrap_or_else(PoisonError::into_inner);
            if states.contains_key(&kind) {
                return;
            }
            states.insert(kind.clone(), KindState::Syncing);
        }
        let cache = Arc::new(KindCache {
            objects: RwLock::default(),
            tombstones: RwLock::default(),
            synced: AtomicBool::new(false),
        });
        self.kinds
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kind.clone(), cache.clone());
        let this = self.clone();
        let task = tokio::spawn({
            let kind = kind.clone();
            async move { this.run(kind, cache).await }
        });
        self.handles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kind, task.abort_handle());
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task.abort_handle());
    }

    /// Stops watching every kind watched for plugins that is not in `needed` (its
    /// plugins were removed or replaced): its watch, its cache and its pending lookups
    /// are dropped. Kinds the runtime watches for itself stay.
    pub fn release_unused(&self, needed: &HashSet<Kind>) {
        let pinned = self.pinned.read().unwrap_or_else(PoisonError::into_inner);
        let unused: Vec<Kind> = self
            .kinds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .filter(|k| !pinned.contains(*k) && !needed.contains(*k))
            .cloned()
            .collect();
        drop(pinned);
        for kind in unused {
            if let Some(h) = self
                .handles
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&kind)
            {
                h.abort();
            }
            self.kinds
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&kind);
            self.states
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&kind);
            self.absent
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&kind);
            self.pending
                .kinds
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&kind);
            tracing::info!(%kind, "no plugin needs this kind any more; its informer stops");
        }
        // Finished tasks' handles need not be kept for shutdown.
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|t| !t.is_finished());
    }

    /// Starts watching `kind` for the runtime's own use: a cluster that does not serve it
    /// is not worth a warning (it is watched once it appears).
    pub fn watch_optional(self: &Arc<Self>, kind: Kind) {
        self.optional
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kind.clone());
        self.watch(kind);
    }

    /// Stops every watch.
    pub fn shutdown(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }

    fn set_state(&self, kind: &Kind, state: KindState) {
        self.states
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kind.clone(), state);
    }

    /// The state of every watched kind.
    pub fn states(&self) -> BTreeMap<String, KindState> {
        let states = self.states.read().unwrap_or_else(PoisonError::into_inner);
        states
            .iter()
            .map(|(k, s)| (k.to_string(), s.clone()))
            .collect()
    }

    /// Whether the API server answered that it does not serve `kind` (not an error
    /// reaching it): a worker need not wait for its list, its objects arrive as they
    /// appear.
    pub fn is_absent(&self, kind: &Kind) -> bool {
        self.absent
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(kind)
    }

    /// Whether `kind` has been listed completely.
    pub fn is_synced(&self, kind: &Kind) -> bool {
        self.kinds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(kind)
            .is_some_and(|c| c.synced.load(Ordering::Acquire))
    }

    /// Objects cached per kind.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let kinds = self.kinds.read().unwrap_or_else(PoisonError::into_inner);
        kinds
            .iter()
            .map(|(k, c)| {
                (
                    k.to_string(),
                    c.objects
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                        .len(),
                )
            })
            .collect()
    }

    /// Every cached object of a kind: (reference, labels).
    pub fn keys(&self, kind: &Kind) -> Vec<(ObjectRef, Arc<BTreeMap<String, String>>)> {
        let Some(cache) = self.cache(kind) else {
            return Vec::new();
        };
        let objects = cache.objects.read().unwrap_or_else(PoisonError::into_inner);
        objects
            .iter()
            .map(|((ns, name), e)| {
                let target = ObjectRef {
                    api_version: kind.api_version.clone(),
                    kind: kind.kind.clone(),
                    namespace: ns.clone(),
                    name: name.clone(),
                };
                (target, e.labels.clone())
            })
            .collect()
    }

    fn cache(&self, kind: &Kind) -> Option<Arc<KindCache>> {
        self.kinds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(kind)
            .cloned()
    }

    async fn run(self: Arc<Self>, kind: Kind, cache: Arc<KindCache>) {
        let span = tracing::info_span!("bosun.informer.watch", %kind);
        let _enter = span.enter();
        drop(_enter);
        // Discovery, retried until the kind exists (e.g. its CRD is applied later).
        let (ar, namespaced) = loop {
            match self.resolve(&kind).await {
                Ok(r) => {
                    self.absent
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&kind);
                    break r;
                }
                Err(e) => {
                    let not_served = matches!(&e, kube::Error::Discovery(_))
                        || matches!(&e, kube::Error::Api(s) if s.code == 404);
                    {
                        let mut absent =
                            self.absent.write().unwrap_or_else(PoisonError::into_inner);
                        if not_served {
                            absent.insert(kind.clone());
                        } else {
                            absent.remove(&kind);
                        }
                    }
                    let e = one_line(&e);
                    let reason = format!("the API server does not serve {kind} (yet): {e}");
                    if !matches!(
                        self.states
                            .read()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get(&kind),
                        Some(KindState::Pending(_))
                    ) {
                        if self
                            .optional
                            .read()
                            .unwrap_or_else(PoisonError::into_inner)
                            .contains(&kind)
                        {
                            tracing::debug!(parent: &span, %kind, error = %e, "optional kind not served; pending until it appears");
                        } else {
                            tracing::warn!(parent: &span, %kind, error = %e, "kind not served; pending until it appears");
                        }
                    } else {
                        tracing::debug!(parent: &span, %kind, error = %e, "kind still not served");
                    }
                    self.set_state(&kind, KindState::Pending(reason));
                    self.wait_until_served(&kind).await;
                }
            }
        };
        self.set_state(&kind, KindState::Syncing);
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        let mut relist: Option<BTreeMap<Key, Entry>> = None;
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => relist = Some(BTreeMap::new()),
                Ok(watcher::Event::InitApply(obj)) => {
                    if let (Some(buf), Some((key, entry))) =
                        (relist.as_mut(), entry_of(&kind, &obj))
                    {
                        buf.insert(key, entry);
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    let fresh = relist.take().unwrap_or_default();
                    self.replace(&kind, namespaced, &cache, fresh);
                    if !cache.synced.swap(true, Ordering::AcqRel) {
                        tracing::info!(parent: &span, %kind, "cache synced");
                    }
                    self.set_state(&kind, KindState::Synced);
                }
                Ok(watcher::Event::Apply(obj)) => {
                    if let Some((key, entry)) = entry_of(&kind, &obj) {
                        let labels = entry.labels.clone();
                        let existed = cache
                            .objects
                            .write()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(key.clone(), entry)
                            .is_some();
                        let event = if existed {
                            EventKind::Modified
                        } else {
                            EventKind::Added
                        };
                        self.emit(&kind, key, event, labels);
                    }
                }
                Ok(watcher::Event::Delete(obj)) => {
                    if let Some((key, entry)) = entry_of(&kind, &obj) {
                        cache
                            .objects
                            .write()
                            .unwrap_or_else(PoisonError::into_inner)
                            .remove(&key);
                        let labels = entry.labels.clone();
                        self.bury(&cache, key.clone(), entry);
                        self.emit(&kind, key, EventKind::Deleted, labels);
                    }
                }
                Err(e) => {
                    // The watcher backs off and relists by itself; say so once per error.
                    tracing::warn!(parent: &span, %kind, error = %one_line_watch(&e), "watch error; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Waits until the shared discovery refresh finds `kind` served (or its discovery
    /// fails in a way that is worth trying the kind's own again).
    async fn wait_until_served(self: &Arc<Self>, kind: &Kind) {
        let mut rounds = self.pending.round.subscribe();
        self.pending
            .kinds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kind.clone());
        if !self.pending.started.swap(true, Ordering::AcqRel) {
            let this = Arc::downgrade(self);
            let task = tokio::spawn(refresh_pending(this));
            self.tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(task.abort_handle());
        }
        loop {
            if rounds.changed().await.is_err() {
                // The refresher is gone (shutting down): wait to be aborted.
                std::future::pending::<()>().await;
            }
            let found = self
                .pending
                .found
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(kind);
            if found {
                break;
            }
        }
        self.pending
            .kinds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(kind);
    }

    /// Swaps in a complete relist, emitting what changed against the previous contents.
    fn replace(
        &self,
        kind: &Kind,
        _namespaced: bool,
        cache: &KindCache,
        fresh: BTreeMap<Key, Entry>,
    ) {
        let old = std::mem::replace(
            &mut *cache
                .objects
                .write()
                .unwrap_or_else(PoisonError::into_inner),
            fresh.clone(),
        );
        for (key, entry) in &fresh {
            match old.get(key) {
                Some(prev) if prev.json == entry.json => {}
                Some(_) => self.emit(kind, key.clone(), EventKind::Modified, entry.labels.clone()),
                None => self.emit(kind, key.clone(), EventKind::Added, entry.labels.clone()),
            }
        }
        for (key, entry) in old {
            if !fresh.contains_key(&key) {
                let labels = entry.labels.clone();
                self.bury(cache, key.clone(), entry);
                self.emit(kind, key, EventKind::Deleted, labels);
            }
        }
    }

    fn bury(&self, cache: &KindCache, key: Key, entry: Entry) {
        let mut tombstones = cache
            .tombstones
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        tombstones.retain(|_, (_, at)| now.duration_since(*at) < TOMBSTONE_TTL);
        tombstones.insert(key, (entry, now));
    }

    fn emit(
        &self,
        kind: &Kind,
        (namespace, name): Key,
        event: EventKind,
        labels: Arc<BTreeMap<String, String>>,
    ) {
        let target = ObjectRef {
            api_version: kind.api_version.clone(),
            kind: kind.kind.clone(),
            namespace,
            name,
        };
        let change = Change {
            target,
            event,
            labels,
        };
        let gone = self
            .observers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(kinds, _)| kinds.contains(kind))
            .fold(false, |gone, (_, tx)| {
                tx.send(change.clone()).is_err() || gone
            });
        if gone {
            self.observers
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|(_, tx)| !tx.is_closed());
        }
        let _ = self.changes.send(change);
    }

    /// Changes of `kinds` (which must be watched by someone), besides those sent to the
    /// dispatcher; the listener is dropped when the receiver is.
    pub fn observe(&self, kinds: &[Kind]) -> mpsc::UnboundedReceiver<Change> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.observers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((kinds.iter().cloned().collect(), tx));
        rx
    }

    /// One object as JSON; a recently deleted object's last state when it is gone.
    pub fn get(&self, target: &ObjectRef) -> Option<Arc<str>> {
        let cache = self.cache(&Kind::new(&target.api_version, &target.kind))?;
        let key = (target.namespace.clone(), target.name.clone());
        if let Some(e) = cache
            .objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Some(e.json.clone());
        }
        let tombstones = cache
            .tombstones
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        tombstones
            .get(&key)
            .filter(|(_, at)| at.elapsed() < TOMBSTONE_TTL)
            .map(|(e, _)| e.json.clone())
    }

    /// Objects of a kind, optionally in one namespace and matching a selector.
    pub fn list(&self, query: &ListQuery<'_>) -> Vec<Arc<str>> {
        let Some(cache) = self.cache(&Kind::new(query.api_version, query.kind)) else {
            return Vec::new();
        };
        let objects = cache.objects.read().unwrap_or_else(PoisonError::into_inner);
        let selected = |e: &&Entry| query.selector.is_none_or(|s| s.matches(&e.labels));
        match query.namespace {
            // Keys sort by namespace first: one namespace is one range.
            Some(ns) => objects
                .range((Some(ns.to_owned()), String::new())..)
                .take_while(|((n, _), _)| n.as_deref() == Some(ns))
                .map(|(_, e)| e)
                .filter(selected)
                .map(|e| e.json.clone())
                .collect(),
            None => objects
                .values()
                .filter(selected)
                .map(|e| e.json.clone())
                .collect(),
        }
    }
}

/// The kinds waiting for the API server to serve them, and what the last discovery
/// refresh found.
#[derive(Debug)]
struct Pending {
    kinds: std::sync::Mutex<HashSet<Kind>>,
    /// The waiting kinds the last refresh found served.
    found: RwLock<HashSet<Kind>>,
    /// Bumped after each refresh.
    round: tokio::sync::watch::Sender<u64>,
    /// Whether the refresher runs.
    started: AtomicBool,
}

impl Default for Pending {
    fn default() -> Self {
        Pending {
            kinds: std::sync::Mutex::default(),
            found: RwLock::default(),
            round: tokio::sync::watch::channel(0).0,
            started: AtomicBool::new(false),
        }
    }
}

/// The first wait between discovery refreshes of pending kinds, and the longest: it
/// doubles while nothing new appears.
const PENDING_FIRST: Duration = Duration::from_secs(1);
const PENDING_MAX: Duration = Duration::from_secs(10);

/// One discovery refresh per interval for every pending kind together: the API groups
/// (one request), then the resources of each group-version that a pending kind names and
/// the server lists (none while their groups do not exist), however many kinds wait.
async fn refresh_pending(informers: std::sync::Weak<Informers>) {
    let mut wait = PENDING_FIRST;
    loop {
        tokio::time::sleep(wait).await;
        let Some(this) = informers.upgrade() else {
            return;
        };
        let waiting: Vec<Kind> = this
            .pending
            .kinds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        if waiting.is_empty() {
            wait = PENDING_FIRST;
            continue;
        }
        let span = tracing::debug_span!("bosun.informer.discover", pending = waiting.len());
        let found = tracing::Instrument::instrument(served_of(&this.client, &waiting), span).await;
        let any = !found.is_empty();
        *this
            .pending
            .found
            .write()
            .unwrap_or_else(PoisonError::into_inner) = found;
        this.pending.round.send_modify(|r| *r += 1);
        wait = if any {
            PENDING_FIRST
        } else {
            (wait * 2).min(PENDING_MAX)
        };
    }
}

/// Which of `waiting` the API server serves now. A discovery request that fails counts
/// as "not served yet".
async fn served_of(client: &Client, waiting: &[Kind]) -> HashSet<Kind> {
    let mut versions: BTreeMap<String, Vec<&Kind>> = BTreeMap::new();
    for kind in waiting {
        versions
            .entry(kind.api_version.clone())
            .or_default()
            .push(kind);
    }
    let mut groups: HashSet<String> = HashSet::new();
    if versions.keys().any(|v| v.contains('/')) {
        match client.list_api_groups().await {
            Ok(list) => {
                for g in list.groups {
                    for v in g.versions {
                        groups.insert(v.group_version);
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %one_line(&e), "discovery of API groups failed");
                return HashSet::new();
            }
        }
    }
    let mut found = HashSet::new();
    for (api_version, kinds) in versions {
        let resources = if api_version.contains('/') {
            if !groups.contains(&api_version) {
                continue;
            }
            client.list_api_group_resources(&api_version).await
        } else {
            client.list_core_api_resources(&api_version).await
        };
        let Ok(resources) = resources else {
            continue;
        };
        for kind in kinds {
            if resources.resources.iter().any(|r| r.kind == kind.kind) {
                found.insert(kind.clone());
            }
        }
    }
    found
}

/// A watcher error on one line.
fn one_line_watch(e: &watcher::Error) -> String {
    collapse(&e.to_string())
}

/// Text with every run of whitespace, line breaks included, as one space.
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An API error on one line: `404 NotFound: the server could not find the requested
/// resource`, not a `Status { … }` dump.
fn one_line(e: &kube::Error) -> String {
    let text = match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => other.to_string(),
    };
    collapse(&text)
}

/// The cache entry of an object; list responses omit apiVersion and kind per item, so
/// they are filled in: plugins always see complete objects.
fn entry_of(kind: &Kind, obj: &DynamicObject) -> Option<(Key, Entry)> {
    let mut value = serde_json::to_value(obj).ok()?;
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), kind.api_version.clone().into());
        map.insert("kind".into(), kind.kind.clone().into());
    }
    let name = obj.metadata.name.clone()?;
    let labels = Arc::new(labels_of(&value));
    let json: Arc<str> = Arc::from(value.to_string());
    Some((
        (obj.metadata.namespace.clone(), name),
        Entry { json, labels },
    ))
}

impl Cache for Informers {
    fn get(&self, _: &CallInfo, target: &ObjectRef) -> Option<Arc<str>> {
        Informers::get(self, target)
    }

    fn list(&self, _: &CallInfo, query: &ListQuery<'_>) -> Vec<Arc<str>> {
        Informers::list(self, query)
    }
}

impl View for Informers {
    fn list(&self, api_version: &str, kind: &str) -> Vec<Arc<str>> {
        Informers::list(
            self,
            &ListQuery {
                api_version,
                kind,
                namespace: None,
                selector: None,
            },
        )
    }

    fn get(&self, r: &ObjectRef) -> Option<Arc<str>> {
        Informers::get(self, r)
    }

    fn list_namespaced(&self, api_version: &str, kind: &str, namespace: &str) -> Vec<Arc<str>> {
        Informers::list(
            self,
            &ListQuery {
                api_version,
                kind,
                namespace: Some(namespace),
                selector: None,
            },
        )
    }
}
