//! A loaded revision of a plugin: immutable, named by its digest, callable from many
//! threads. Each call runs in its own store with a deadline and a memory cap; a trap
//! discards the instance, never the revision or the host.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use wasmtime::Store;

use crate::bindings::admission::{Admission, AdmissionPre};
use crate::bindings::controller::{Controller, ControllerPre};
use crate::bindings::pod_agent::{PodAgent, PodAgentPre};
use crate::call::{Error, LimitExceeded};
use crate::contract::{
    ObjectRef, PluginMetadata, ProbeKind, ProbeResult, ReconcileOutcome, ReconcileRequest,
};
use crate::engine::{Compiled, Engine, TICK};
use crate::limits::truncate;
use crate::load::{self, Cause, Source, Spec, Strategy, World};
use crate::metadata::Metadata;
use crate::stats::{Counters, Stats};
use crate::store::{Shared, StoreState, new_store};

enum Pre {
    Controller(ControllerPre<StoreState>),
    Admission(AdmissionPre<StoreState>),
    PodAgent(PodAgentPre<StoreState>),
}

enum Bound {
    Controller(Controller),
    Admission(Admission),
    PodAgent(PodAgent),
}

struct Instance {
    store: Store<StoreState>,
    bound: Bound,
    calls: u32,
}

/// What is known about a revision without calling it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    /// The plugin's name (from its metadata).
    pub name: String,
    /// `sha256:…` of the component.
    pub digest: String,
    /// Where it was loaded from.
    pub origin: String,
    /// Its world.
    pub world: World,
    /// Size of the component in bytes.
    pub size: usize,
    /// Whether it was compiled or read from the cache.
    pub compiled: Compiled,
    /// Time to compile (or deserialize), check, instantiate and init, in microseconds.
    pub load_micros: u64,
    /// When it was loaded.
    #[serde(with = "unix_ms")]
    pub loaded_at: SystemTime,
    /// What the component imports.
    pub imports: Vec<String>,
    /// What the component exports.
    pub exports: Vec<String>,
}

pub(crate) mod unix_ms {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        s.serialize_u64(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

/// One immutable, loaded revision of a plugin.
pub struct Revision {
    engine: Engine,
    shared: Arc<Shared>,
    pre: Pre,
    config: String,
    strategy: Strategy,
    idle: Mutex<Vec<Instance>>,
    info: Info,
    bytes: Arc<[u8]>,
}

impl std::fmt::Debug for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revision")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Revision {
    /// Loads a revision: check, compile (or read the cache), link, ask for metadata,
    /// validate it, and initialise one instance with `spec.config`.
    pub fn load(engine: &Engine, source: &Source, spec: Spec) -> Result<Self, load::Error> {
        Self::load_inner(engine, source, spec, None, true)
    }

    /// Loads like [`Revision::load`], but fails unless the metadata names `expected`.
    pub fn load_named(
        engine: &Engine,
        source: &Source,
        spec: Spec,
        expected: &str,
    ) -> Result<Self, load::Error> {
        Self::load_inner(engine, source, spec, Some(expected), true)
    }

    /// Loads far enough to read the metadata, without calling `init`: for inspection.
    pub fn inspect(engine: &Engine, source: &Source, spec: Spec) -> Result<Self, load::Error> {
        Self::load_inner(engine, source, spec, None, false)
    }

    fn load_inner(
        engine: &Engine,
        source: &Source,
        spec: Spec,
        expected: Option<&str>,
        init: bool,
    ) -> Result<Self, load::Error> {
        let started = std::time::Instant::now();
        let digest = source.digest();
        let _span =
            tracing::info_span!("bosun.host.load", origin = %source.origin, digest = %digest)
                .entered();
        let mut name = expected.unwrap_or("?").to_owned();
        let fail = |name: &str, cause: Cause| load::Error {
            plugin: name.to_owned(),
            origin: source.origin.clone(),
            cause,
        };
        if spec.limits.memory_bytes > engine.max_memory_bytes() {
            let cause = Cause::Limits {
                asked: spec.limits.memory_bytes,
                max: engine.max_memory_bytes(),
            };
            return Err(fail(&name, cause));
        }
        if init && let Err(e) = serde_json::from_str::<serde_json::Value>(&spec.config) {
            return Err(fail(&name, Cause::InvalidConfig(e.to_string())));
        }
        let checked = load::check(engine, &source.bytes, &digest).map_err(|c| fail(&name, c))?;
        let linker = engine.linker(checked.world);
        let instance_pre = linker.instantiate_pre(&checked.component).map_err(|e| {
            fail(
                &name,
                Cause::WrongWorld {
                    world: checked.world,
                    message: format!("{e:#}"),
                },
            )
        })?;
        let wrong = |e: wasmtime::Error| Cause::WrongWorld {
            world: checked.world,
            message: format!("{e:#}"),
        };
        let pre = match checked.world {
            World::Controller => Pre::Controller(
                ControllerPre::new(instance_pre).map_err(|e| fail(&name, wrong(e)))?,
            ),
            World::Admission => {
                Pre::Admission(AdmissionPre::new(instance_pre).map_err(|e| fail(&name, wrong(e)))?)
            }
            World::PodAgent => {
                Pre::PodAgent(PodAgentPre::new(instance_pre).map_err(|e| fail(&name, wrong(e)))?)
            }
        };
        let shared = Arc::new(Shared {
            name: Arc::from(name.as_str()),
            digest: Arc::from(digest.as_str()),
            metadata: OnceLock::new(),
            limits: spec.limits,
            services: spec.services,
            counters: Counters::default(),
            fields: Default::default(),
        });
        let mut revision = Revision {
            engine: engine.clone(),
            shared,
            pre,
            config: spec.config,
            strategy: spec.strategy,
            idle: Mutex::new(Vec::new()),
            bytes: source.bytes.clone(),
            info: Info {
                name: name.clone(),
                digest: digest.clone(),
                origin: source.origin.clone(),
                world: checked.world,
                size: source.bytes.len(),
                compiled: checked.compiled,
                load_micros: 0,
                loaded_at: SystemTime::now(),
                imports: checked.imports,
                exports: checked.exports,
            },
        };

        // Metadata, on an instance of its own that is never initialised.
        let mut probe = revision
            .instantiate()
            .map_err(|e| fail(&name, Cause::Init(e.to_string())))?;
        let raw = revision
            .run(&mut probe, "metadata", None, |b, s| match b {
                Bound::Controller(c) => c.call_metadata(s).map(Ok),
                Bound::Admission(a) => a.call_metadata(s).map(Ok),
                Bound::PodAgent(p) => p.call_metadata(s).map(Ok),
            })
            .map_err(|e| fail(&name, Cause::Metadata(e.to_string())))?;
        drop(probe);
        let metadata = Metadata::new(raw).map_err(|e| fail(&name, Cause::Metadata(e.0)))?;
        name = metadata.name().to_owned();
        if let Some(expected) = expected
            && expected != name
        {
            let cause = Cause::NameMismatch {
                expected: expected.to_owned(),
                actual: name.clone(),
            };
            return Err(fail(expected, cause));
        }
        // The probe instance is gone, so the shared state is ours alone again: name it.
        let shared = Arc::get_mut(&mut revision.shared).ok_or_else(|| {
            fail(
                &name,
                Cause::Init("internal: revision state still shared".to_owned()),
            )
        })?;
        shared.name = Arc::from(name.as_str());
        let _ = shared.metadata.set(metadata);
        revision.info.name = name.clone();

        if init {
            let mut first = revision
                .instantiate()
                .map_err(|e| fail(&name, Cause::Init(e.to_string())))?;
            revision
                .init(&mut first)
                .map_err(|e| fail(&name, Cause::Init(e.to_string())))?;
            revision.put_back(first);
        }
        revision.info.load_micros =
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        tracing::info!(plugin = %name, world = %revision.info.world, compiled = ?revision.info.compiled,
            micros = revision.info.load_micros, "plugin revision loaded");
        Ok(revision)
    }

    /// The component's bytes (the runtime hands pod-agent plugins to sidecars by digest).
    pub fn bytes(&self) -> &Arc<[u8]> {
        &self.bytes
    }

    /// Name, digest, world, size and origin.
    pub fn info(&self) -> &Info {
        &self.info
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// `sha256:…` of the component.
    pub fn digest(&self) -> &str {
        &self.info.digest
    }

    /// The validated metadata.
    pub fn metadata(&self) -> &PluginMetadata {
        match self.shared.metadata.get() {
            Some(m) => m.raw(),
            None => unreachable!("a revision is only constructed once its metadata is set"),
        }
    }

    /// The checked metadata, with permission queries.
    pub fn permissions(&self) -> Option<&Metadata> {
        self.shared.metadata.get()
    }

    /// The config given to `init`.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// Counters since load.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// What the plugin's state holds (revisions of one plugin share it).
    pub fn state_usage(&self) -> crate::host::cache::Usage {
        self.shared.services.state.usage(&self.shared.name)
    }

    /// Drops the plugin's state (the plugin is removed).
    pub fn clear_state(&self) {
        self.shared.services.state.clear(&self.shared.name);
    }

    /// The per-call limits.
    pub fn limits(&self) -> &crate::limits::Limits {
        &self.shared.limits
    }

    /// Reconciles one key (controller world).
    pub fn reconcile(&self, request: &ReconcileRequest) -> Result<ReconcileOutcome, Error> {
        self.call("reconcile", Some(request.target.clone()), |b, s| match b {
            Bound::Controller(c) => c.call_reconcile(s, request),
            _ => Err(wasmtime::format_err!("not a controller plugin")),
        })
    }

    /// Reviews an AdmissionReview (admission world).
    pub fn review(&self, request: &str) -> Result<String, Error> {
        self.call("review", None, |b, s| match b {
            Bound::Admission(a) => a.call_review(s, request),
            _ => Err(wasmtime::format_err!("not an admission plugin")),
        })
    }

    /// The app started (pod-agent world).
    pub fn on_start(&self) -> Result<(), Error> {
        self.call("on-start", None, |b, s| match b {
            Bound::PodAgent(p) => p.call_on_start(s),
            _ => Err(wasmtime::format_err!("not a pod-agent plugin")),
        })
    }

    /// Probes the app (pod-agent world).
    pub fn probe(&self, kind: ProbeKind) -> Result<ProbeResult, Error> {
        self.call("probe", None, |b, s| match b {
            Bound::PodAgent(p) => p.call_probe(s, kind).map(Ok),
            _ => Err(wasmtime::format_err!("not a pod-agent plugin")),
        })
    }

    /// Delivers a pipe command (pod-agent world).
    pub fn on_command(&self, payload: &str) -> Result<String, Error> {
        self.call("on-command", None, |b, s| match b {
            Bound::PodAgent(p) => p.call_on_command(s, payload),
            _ => Err(wasmtime::format_err!("not a pod-agent plugin")),
        })
    }

    /// The pod is stopping (pod-agent world).
    pub fn on_stop(&self) -> Result<(), Error> {
        self.call("on-stop", None, |b, s| match b {
            Bound::PodAgent(p) => p.call_on_stop(s),
            _ => Err(wasmtime::format_err!("not a pod-agent plugin")),
        })
    }

    /// Drops idle warm instances (their memory returns to the pool).
    pub fn drain_idle(&self) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn call<R>(
        &self,
        op: &'static str,
        key: Option<ObjectRef>,
        f: impl FnOnce(&Bound, &mut Store<StoreState>) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, Error> {
        let mut instance = self.checkout()?;
        let result = self.run(&mut instance, op, key, f);
        match &result {
            Err(e) if e.poisons_instance() => {}
            _ => self.put_back(instance),
        }
        result
    }

    /// Runs one export on `instance` with the deadline, then forwards its stdio.
    fn run<R>(
        &self,
        instance: &mut Instance,
        op: &'static str,
        key: Option<ObjectRef>,
        f: impl FnOnce(&Bound, &mut Store<StoreState>) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, Error> {
        let counters = &self.shared.counters;
        counters.calls.fetch_add(1, Ordering::Relaxed);
        // A review is an admission plugin's reconcile: a canary is judged on either.
        if op == "reconcile" || op == "review" {
            counters.reconciles.fetch_add(1, Ordering::Relaxed);
        }
        instance.calls += 1;
        instance.store.data_mut().begin_call(key);
        let deadline = self.shared.limits.deadline;
        instance.store.set_epoch_deadline(ticks(deadline));
        let outcome = f(&instance.bound, &mut instance.store);
        instance.store.data_mut().end_call();
        let plugin = self.shared.name.clone();
        let error = match outcome {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(message)) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                let message = truncate(message, self.shared.limits.max_error_bytes);
                Error::Plugin {
                    plugin,
                    op,
                    message,
                }
            }
            Err(e) => self.classify(e, instance, op),
        };
        tracing::debug!(plugin = %self.shared.name, op, error = %error, "plugin call failed");
        Err(error)
    }

    fn classify(&self, e: wasmtime::Error, instance: &Instance, op: &'static str) -> Error {
        let counters = &self.shared.counters;
        let plugin = self.shared.name.clone();
        if let Some(limit) = e.downcast_ref::<LimitExceeded>() {
            counters.limit_exceeded.fetch_add(1, Ordering::Relaxed);
            return Error::Limit {
                plugin,
                op,
                what: limit.0.clone(),
            };
        }
        if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
            counters.timeouts.fetch_add(1, Ordering::Relaxed);
            return Error::Timeout {
                plugin,
                op,
                deadline: self.shared.limits.deadline,
            };
        }
        if instance.store.data().limiter.denied {
            counters.out_of_memory.fetch_add(1, Ordering::Relaxed);
            return Error::OutOfMemory {
                plugin,
                op,
                limit: self.shared.limits.memory_bytes,
            };
        }
        counters.traps.fetch_add(1, Ordering::Relaxed);
        let message = e
            .chain()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(": ");
        Error::Trap {
            plugin,
            op,
            message: truncate(message, 2048),
        }
    }

    /// A warm instance from the pool, or a new initialised one.
    fn checkout(&self) -> Result<Instance, Error> {
        if let Strategy::Warm { .. } = self.strategy
            && let Some(instance) = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()
        {
            return Ok(instance);
        }
        let mut instance = self.instantiate()?;
        self.init(&mut instance).map_err(|e| match e {
            Error::Plugin {
                plugin, message, ..
            } => Error::Instantiate {
                plugin,
                message: format!("init: {message}"),
            },
            other => other,
        })?;
        Ok(instance)
    }

    fn put_back(&self, instance: Instance) {
        if let Strategy::Warm {
            recycle_after,
            max_idle,
        } = self.strategy
            && instance.calls < recycle_after
        {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < max_idle as usize {
                idle.push(instance);
            }
        }
    }

    fn instantiate(&self) -> Result<Instance, Error> {
        let mut store = new_store(&self.engine, &self.shared);
        // Instantiation runs guest start functions: bound them by the deadline too.
        store.set_epoch_deadline(ticks(self.shared.limits.deadline));
        let instantiate_err = |e: wasmtime::Error| {
            self.shared
                .counters
                .instantiate_failures
                .fetch_add(1, Ordering::Relaxed);
            Error::Instantiate {
                plugin: self.shared.name.clone(),
                message: format!("{e:#}"),
            }
        };
        let bound = match &self.pre {
            Pre::Controller(p) => {
                Bound::Controller(p.instantiate(&mut store).map_err(instantiate_err)?)
            }
            Pre::Admission(p) => {
                Bound::Admission(p.instantiate(&mut store).map_err(instantiate_err)?)
            }
            Pre::PodAgent(p) => {
                Bound::PodAgent(p.instantiate(&mut store).map_err(instantiate_err)?)
            }
        };
        self.shared
            .counters
            .instances
            .fetch_add(1, Ordering::Relaxed);
        Ok(Instance {
            store,
            bound,
            calls: 0,
        })
    }

    fn init(&self, instance: &mut Instance) -> Result<(), Error> {
        let config = self.config.as_str();
        self.run(instance, "init", None, |b, s| match b {
            Bound::Controller(c) => c.call_init(s, config),
            Bound::Admission(a) => a.call_init(s, config),
            Bound::PodAgent(p) => p.call_init(s, config),
        })
        .map(|()| instance.calls = 0)
    }
}

fn ticks(deadline: Duration) -> u64 {
    let tick = TICK.as_nanos().max(1);
    u64::try_from(deadline.as_nanos().div_ceil(tick))
        .unwrap_or(u64::MAX)
        .max(1)
        + 1
}
