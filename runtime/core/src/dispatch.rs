//! Dispatch: routes cache changes to the work queues of the plugins subscribed to them,
//! and runs each plugin's reconciles — at most `concurrency` at once, never two for one
//! key — on the blocking pool, then hands their commands to the pipe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bosun_api::Selector;
use bosun_host::call::Error as CallError;
use bosun_host::contract::{EventKind, ObjectRef, ReconcileRequest, Subscription, Verb};
use bosun_host::host::CallInfo;
use bosun_host::{Registry, Revision, World};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::executor::Executor;
use crate::informer::{Change, Informers, Kind};
use crate::metrics::Metrics;
use crate::pipe::Pipe;
use crate::queue::{self, Outcome, Queue};

/// How long a worker waits for the kinds its plugin only reads to be listed.
const READ_SYNC_WAIT: Duration = Duration::from_secs(30);

/// Keys in flight per plugin call allowed at once: a key stays in flight while the
/// commands its reconcile submitted execute (API requests, in order), which takes no
/// plugin call, so other keys' reconciles run meanwhile.
const KEYS_PER_CALL: usize = 4;

#[derive(Debug, Clone)]
struct Sub {
    kind: Kind,
    namespace: Option<String>,
    selector: Option<Selector>,
}

impl Sub {
    fn of(s: &Subscription) -> Self {
        Sub {
            kind: Kind::new(&s.api_version, &s.kind),
            namespace: s.namespace.clone(),
            // Metadata is validated at load, so the selector parses.
            selector: s
                .label_selector
                .as_deref()
                .and_then(|l| Selector::parse(l).ok()),
        }
    }

    fn matches(
        &self,
        target: &ObjectRef,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> bool {
        self.kind.api_version == target.api_version
            && self.kind.kind == target.kind
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| target.namespace.as_ref() == Some(ns))
            && self.selector.as_ref().is_none_or(|s| s.matches(labels))
    }
}

struct Worker {
    digest: String,
    subs: Arc<Mutex<Vec<Sub>>>,
    queue: Queue<ObjectRef>,
    task: JoinHandle<()>,
}

/// What the dispatcher needs from the runtime.
#[derive(Clone)]
pub struct Parts {
    /// The plugins.
    pub registry: Arc<Registry>,
    /// The shared cache.
    pub informers: Arc<Informers>,
    /// The command pipe.
    pub pipe: Arc<Pipe>,
    /// The executor behind the pipe.
    pub executor: Executor,
    /// Metrics.
    pub metrics: Metrics,
    /// Work-queue settings for every plugin.
    pub queue: queue::Config,
    /// True while this runtime leads; reconciles wait while it does not.
    pub leading: watch::Receiver<bool>,
    /// Canaries in progress.
    pub routes: Arc<crate::rollout::Routes>,
    /// Recordings of plugins' calls.
    pub recorder: Arc<crate::record::Recorder>,
}

/// Routes changes and runs reconciles.
pub struct Dispatcher {
    parts: Parts,
    workers: Mutex<HashMap<String, Worker>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").finish_non_exhaustive()
    }
}

/// The kinds a revision may read (its read permissions on named kinds).
pub fn read_kinds_of(revision: &Revision) -> Vec<Kind> {
    let mut kinds: Vec<Kind> = revision
        .metadata()
        .permissions
        .iter()
        .filter(|p| p.kind != "*" && p.verbs.contains(&Verb::Read))
        .map(|p| Kind::new(&p.api_version, &p.kind))
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// The kinds a revision needs in the cache: what it subscribes to and may read.
pub fn kinds_of(revision: &Revision) -> Vec<Kind> {
    let mut kinds: Vec<Kind> = revision
        .metadata()
        .subscriptions
        .iter()
        .map(|s| Kind::new(&s.api_version, &s.kind))
        .collect();
    kinds.extend(read_kinds_of(revision));
    kinds.sort();
    kinds.dedup();
    kinds
}

impl Dispatcher {
    /// A dispatcher with no plugins yet.
    pub fn new(parts: Parts) -> Arc<Self> {
        Arc::new(Dispatcher {
            parts,
            workers: Mutex::default(),
        })
    }

    /// Routes cache changes until the channel closes.
    pub async fn route(self: Arc<Self>, mut changes: tokio::sync::mpsc::UnboundedReceiver<Change>) {
        while let Some(change) = changes.recv().await {
            let workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
            for worker in workers.values() {
                let subs = worker.subs.lock().unwrap_or_else(PoisonError::into_inner);
                if subs
                    .iter()
                    .any(|s| s.matches(&change.target, &change.labels))
                {
                    worker.queue.add(change.target.clone(), change.event);
                }
            }
        }
    }

    /// Brings workers in line with the registry: starts workers for new controller
    /// plugins, updates subscriptions of swapped revisions, stops removed plugins.
    pub fn sync(self: &Arc<Self>) {
        let registry = &self.parts.registry;
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let names = registry.names();
        workers.retain(|name, w| {
            let keep = registry.current(name).is_some();
            if !keep {
                tracing::info!(plugin = %name, "plugin removed; its worker stops");
                w.queue.shutdown();
                self.parts.metrics.forget_plugin(name);
            }
            keep
        });
        let mut needed = std::collections::HashSet::new();
        for name in names {
            let Some(revision) = registry.current(&name) else {
                continue;
            };
            if revision.info().world == World::Admission {
                // An admission plugin reads the cache while it reviews: what it may read
                // is watched (what it subscribes to is what it reviews, not what it reads).
                for kind in read_kinds_of(&revision) {
                    self.parts.informers.watch_for_plugins(kind.clone());
                    needed.insert(kind);
                }
            }
            if revision.info().world != World::Controller {
                continue;
            }
            for kind in kinds_of(&revision) {
                self.parts.informers.watch_for_plugins(kind.clone());
                needed.insert(kind);
            }
            let subs: Vec<Sub> = revision
                .metadata()
                .subscriptions
                .iter()
                .map(Sub::of)
                .collect();
            match workers.get_mut(&name) {
                Some(w) if w.digest == revision.digest() => {}
                Some(w) => {
                    // A new revision: it may judge objects differently, so it sees all of them.
                    w.digest = revision.digest().to_owned();
                    *w.subs.lock().unwrap_or_else(PoisonError::into_inner) = subs;
                    self.enqueue_all(&w.subs, &w.queue, EventKind::Resync);
                }
                None => {
                    // Keys in flight include those whose commands are executing, which
                    // takes no plugin call: more of them than calls at once.
                    let queue = Queue::new(queue::Config {
                        concurrency: self.parts.queue.concurrency.max(1) * KEYS_PER_CALL,
                        ..self.parts.queue.clone()
                    });
                    let subs = Arc::new(Mutex::new(subs));
                    let task =
                        tokio::spawn(self.clone().run(name.clone(), subs.clone(), queue.clone()));
                    workers.insert(
                        name,
                        Worker {
                            digest: revision.digest().to_owned(),
                            subs,
                            queue,
                            task,
                        },
                    );
                }
            }
        }
        // Informers no plugin needs any more (removed or replaced plugins) stop.
        self.parts.informers.release_unused(&needed);
    }

    fn enqueue_all(&self, subs: &Mutex<Vec<Sub>>, queue: &Queue<ObjectRef>, event: EventKind) {
        let subs = subs.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let mut kinds: Vec<&Kind> = subs.iter().map(|s| &s.kind).collect();
        kinds.dedup();
        for kind in kinds {
            for (target, labels) in self.parts.informers.keys(kind) {
                if subs.iter().any(|s| s.matches(&target, &labels)) {
                    queue.add(target, event);
                }
            }
        }
    }

    /// Reconciles `target` with `plugin` again (an outcome arrived for it).
    pub fn requeue(&self, plugin: &str, target: &ObjectRef) {
        let workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = workers.get(plugin) {
            w.queue.add(target.clone(), EventKind::Requeued);
        }
    }

    /// Enqueues every subscribed object of every plugin (periodic resync).
    pub fn resync(&self) {
        let workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        for w in workers.values() {
            self.enqueue_all(&w.subs, &w.queue, EventKind::Resync);
        }
    }

    /// Queue depth and in-flight count per plugin.
    pub fn queues(&self) -> HashMap<String, (usize, usize)> {
        let workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        workers
            .iter()
            .map(|(n, w)| (n.clone(), (w.queue.len(), w.queue.in_flight())))
            .collect()
    }

    /// Stops taking keys and waits (up to `grace`) for reconciles in flight to finish.
    pub async fn shutdown(&self, grace: Duration) {
        let workers: Vec<Worker> = {
            let mut w = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
            w.drain().map(|(_, w)| w).collect()
        };
        for w in &workers {
            w.queue.shutdown();
        }
        let deadline = Instant::now() + grace;
        for w in workers {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, w.task).await.is_err() {
                tracing::warn!("reconciles still running after the shutdown grace period");
            }
        }
    }

    async fn run(
        self: Arc<Self>,
        name: String,
        subs: Arc<Mutex<Vec<Sub>>>,
        queue: Queue<ObjectRef>,
    ) {
        let span = tracing::info_span!("bosun.dispatch.worker", plugin = %name);
        // Wait until the kinds the plugin subscribes to are listed, and those it only
        // reads for up to READ_SYNC_WAIT (it should not act on an empty cache, but a kind
        // the runtime cannot list must not stop it forever); a kind the API server does
        // not serve has nothing to list: its objects come as events when it appears.
        // Then look at every object once.
        let waiting_since = Instant::now();
        loop {
            if queue.is_shut_down() {
                return;
            }
            let subscribed: Vec<Kind> = subs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|s| s.kind.clone())
                .collect();
            let read: Vec<Kind> = self
                .parts
                .registry
                .current(&name)
                .map(|r| kinds_of(&r))
                .unwrap_or_default();
            let informers = &self.parts.informers;
            let listed = |k: &Kind| informers.is_synced(k) || informers.is_absent(k);
            if subscribed.iter().all(listed) {
                let unlisted: Vec<String> = read
                    .iter()
                    .filter(|k| !listed(k))
                    .map(Kind::to_string)
                    .collect();
                if unlisted.is_empty() {
                    break;
                }
                if waiting_since.elapsed() >= READ_SYNC_WAIT {
                    tracing::warn!(parent: &span, kinds = ?unlisted, "kinds the plugin reads are not listed yet; reconciling without them");
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(parent: &span, "caches synced; reconciling");
        self.enqueue_all(&subs, &queue, EventKind::Added);
        let mut tasks = tokio::task::JoinSet::new();
        // Plugin calls at once; a key whose commands are executing holds no permit.
        let calls = Arc::new(tokio::sync::Semaphore::new(
            self.parts.queue.concurrency.max(1),
        ));
        while let Some(item) = queue.next().await {
            let this = self.clone();
            let (task_name, task_queue, calls) = (name.clone(), queue.clone(), calls.clone());
            tasks.spawn(async move {
                let outcome = this.reconcile(&task_name, &item, &calls).await;
                task_queue.done(item, outcome);
            });
            while tasks.try_join_next().is_some() {}
            let (depth, in_flight) = (queue.len(), queue.in_flight());
            self.parts.metrics.queue(&name, depth, in_flight);
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Runs the shadow revision of `name` on the request the stable one just answered, and
    /// records a difference when it would have submitted other commands.
    async fn shadow(&self, name: &str, request: ReconcileRequest, stable: Vec<serde_json::Value>) {
        let Some((shadow, sink)) = self.parts.routes.shadow(name) else {
            return;
        };
        let key = request.target.key();
        let events: Vec<String> = request.events.iter().map(|e| format!("{e:?}")).collect();
        let result = tokio::task::spawn_blocking(move || shadow.reconcile(&request)).await;
        let submitted = sink.take(&key);
        let shadow = match result {
            Ok(Ok(_)) => Ok(submitted),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if shadow.as_ref() != Ok(&stable) {
            let at_ms = bosun_host::host::clock::Clock::now_ms(&bosun_host::host::clock::System);
            self.parts.routes.differ(
                name,
                crate::rollout::Difference {
                    at_ms,
                    key,
                    events,
                    stable,
                    shadow,
                },
            );
        }
    }

    async fn reconcile(
        &self,
        name: &str,
        item: &queue::Item<ObjectRef>,
        calls: &tokio::sync::Semaphore,
    ) -> Outcome {
        let mut leading = self.parts.leading.clone();
        if !*leading.borrow() {
            // A standby never reconciles; the key waits for leadership.
            let _ = leading.wait_for(|l| *l).await;
        }
        let Some(stable) = self.parts.registry.current(name) else {
            return Outcome::Ok;
        };
        // A canary in progress serves its share of the keys.
        let revision = self
            .parts
            .routes
            .pick(name, &item.key, || {
                let json = self.parts.informers.get(&item.key)?;
                let v: serde_json::Value = serde_json::from_str(&json).ok()?;
                serde_json::from_value(v["metadata"]["labels"].clone()).ok()
            })
            .unwrap_or(stable);
        let request = ReconcileRequest {
            target: item.key.clone(),
            events: item.events.clone(),
            outcomes: self.parts.pipe.take_outcomes(name, &item.key),
            attempt: item.attempt,
        };
        let call = CallInfo {
            plugin: Arc::from(name),
            revision: Arc::from(revision.digest()),
            key: Some(item.key.clone()),
        };
        let recording = self.parts.recorder.begin(&call, &request);
        let rev = revision.clone();
        let shadow_request = self.parts.routes.shadow(name).map(|_| request.clone());
        let span =
            tracing::debug_span!("bosun.dispatch.reconcile", plugin = %name, key = %item.key);
        let permit = calls.acquire().await;
        let started = Instant::now();
        let result = match tokio::task::spawn_blocking(move || rev.reconcile(&request)).await {
            Ok(r) => r,
            Err(e) => Err(CallError::Trap {
                plugin: Arc::from(name),
                op: "reconcile",
                message: e.to_string(),
            }),
        };
        if let Some(ticket) = recording {
            self.parts.recorder.end(ticket, &result);
        }
        let label = match &result {
            Ok(_) => "ok",
            Err(CallError::Plugin { .. }) => "error",
            Err(e) => e.kind(),
        };
        self.parts
            .metrics
            .reconcile(name, revision.digest(), label, started.elapsed());
        drop(permit);
        let completed = !matches!(&result, Err(e) if e.poisons_instance());
        let stable_commands = shadow_request
            .as_ref()
            .map(|_| self.parts.pipe.pending_of(&call));
        self.parts
            .pipe
            .finish(&call, completed, &self.parts.executor)
            .await;
        if let (Some(req), Some(stable), true) = (shadow_request, stable_commands, result.is_ok()) {
            let _permit = calls.acquire().await;
            self.shadow(name, req, stable).await;
        }
        match result {
            Ok(o) => match o.requeue_after_ms {
                Some(ms) => Outcome::RequeueAfter(Duration::from_millis(ms)),
                None => Outcome::Ok,
            },
            Err(e) => {
                tracing::warn!(parent: &span, error = %e, attempt = item.attempt, "reconcile failed; backing off");
                Outcome::Failed
            }
        }
    }
}
