//! Assembling the runtime: engine, registry, informers, pipe, dispatcher, leader
//! election, plugins folder, admin endpoint.

use std::sync::Arc;
use std::time::Duration;

use bosun_host::host::cache::{MemoryState, State};
use bosun_host::host::{Services, clock, log};
use bosun_host::load::{Source, Spec, Strategy};
use bosun_host::watch::{Event, Folder};
use bosun_host::{Engine, Registry, Revision};
use kube::Client;
use tokio::sync::{mpsc, watch};

use crate::audit::AuditLog;
use crate::config::Config;
use crate::connect::{self, Health};
use crate::dispatch::{Dispatcher, Parts};
use crate::executor::Executor;
use crate::gray::{Analysis, Judgement, Route, Split};
use crate::guardrail::Guardrails;
use crate::informer::{Informers, Kind};
use crate::metrics::Metrics;
use crate::pipe::Pipe;
use crate::sidecars::Sidecars;
use crate::{admin, leader};

/// The runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory is unusable.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The wasm engine could not start.
    #[error(transparent)]
    Engine(#[from] bosun_host::engine::Error),
    /// The audit log could not be opened.
    #[error("audit log: {0}")]
    Audit(String),
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The sidecar pipe could not start.
    #[error(transparent)]
    Sidecars(#[from] crate::sidecars::Error),
    /// The admin endpoint could not listen.
    #[error("admin endpoint {addr}: {source}")]
    Admin {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A running runtime.
pub struct Runtime {
    pub(crate) config: Config,
    pub(crate) registry: Arc<Registry>,
    pub(crate) informers: Arc<Informers>,
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) pipe: Arc<Pipe>,
    pub(crate) metrics: Metrics,
    pub(crate) audit: Arc<AuditLog>,
    pub(crate) health: Health,
    pub(crate) leading: watch::Receiver<bool>,
    pub(crate) services: Services,
    admin_addr: std::net::SocketAddr,
    sidecars: Option<(Arc<Sidecars>, std::net::SocketAddr)>,
    pub(crate) gray: Arc<crate::gray::Gray>,
    pub(crate) recorder: Arc<crate::record::Recorder>,
    analysis_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    objects_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    judgements: Arc<std::sync::Mutex<std::collections::HashMap<String, Judgement>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    folder_stop: Option<std::sync::mpsc::Sender<()>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("admin", &self.admin_addr)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Starts the runtime on `client`, logging plugins through `tracing`.
    pub async fn start(config: Config, client: Client) -> Result<Arc<Self>, Error> {
        Self::start_with(config, client, Arc::new(log::Tracing)).await
    }

    /// Starts the runtime on `client`, with plugin log lines going to `plugin_log`. An
    /// unreachable API server does not stop the start: it is retried with backoff, and
    /// the health endpoint says so until it answers.
    pub async fn start_with(
        config: Config,
        client: Client,
        plugin_log: Arc<dyn log::Log>,
    ) -> Result<Arc<Self>, Error> {
        let data = &config.data_dir;
        std::fs::create_dir_all(data).map_err(|source| Error::DataDir {
            path: data.display().to_string(),
            source,
        })?;
        let health = Health::default();
        health.set(Some("connecting to the API server".to_owned()));

        let engine = Engine::new(&bosun_host::engine::Config {
            cache_dir: Some(data.join("compiled")),
            ..Default::default()
        })?;
        let audit = Arc::new(
            AuditLog::open(data.join("audit.log")).map_err(|e| Error::Audit(e.to_string()))?,
        );
        let metrics = Metrics::new();
        let (informers, changes) = Informers::new(client.clone());
        let guardrails =
            Guardrails::new(config.guardrails.clone()).map_err(|e| Error::Config(e.to_string()))?;
        if config.guardrails.max_cordoned_nodes.is_some() {
            informers.watch(Kind::new("v1", "Node"));
        }
        if config.guardrails.max_unavailable.is_some()
            || config.guardrails.min_healthy_share.is_some()
        {
            informers.watch(Kind::new("v1", "Pod"));
        }
        let executor = Executor::new(client.clone(), informers.clone());
        let pipe = Arc::new(Pipe::new(
            guardrails,
            informers.clone(),
            metrics.clone(),
            Some(audit.clone()),
        ));
        let registry = Arc::new(Registry::new(engine));

        let (lead_tx, leading) = watch::channel(!config.leader_election.enabled);
        let mut tasks = Vec::new();
        if config.leader_election.enabled {
            let identity = config
                .leader_election
                .identity
                .clone()
                .unwrap_or_else(leader::default_identity);
            let metrics = metrics.clone();
            let mut rx = lead_tx.subscribe();
            tasks.push(tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    metrics.leader(*rx.borrow());
                }
            }));
            tasks.push(tokio::spawn(leader::run(
                client.clone(),
                config.leader_election.clone(),
                identity,
                lead_tx,
            )));
        } else {
            metrics.leader(true);
            tasks.push(tokio::spawn(async move {
                // Keep the sender alive: this runtime always leads.
                let _lead = lead_tx;
                std::future::pending::<()>().await;
            }));
        }

        let gray = Arc::new(crate::gray::Gray::default());
        // Plugins read the cache and submit commands through the recorder.
        let recorder = Arc::new(crate::record::Recorder::new(
            informers.clone(),
            pipe.clone(),
        ));
        let dispatcher = Dispatcher::new(Parts {
            registry: registry.clone(),
            informers: informers.clone(),
            pipe: pipe.clone(),
            executor,
            metrics: metrics.clone(),
            queue: config.queue.to_queue(),
            leading: leading.clone(),
            gray: gray.clone(),
            recorder: recorder.clone(),
        });
        tasks.push(tokio::spawn(dispatcher.clone().route(changes)));
        {
            // A pod-command's outcome comes back without a cluster event: reconcile the
            // key that submitted it again so the plugin sees it.
            let d = Arc::downgrade(&dispatcher);
            pipe.on_pod_outcome(Box::new(move |plugin, target| {
                if let Some(d) = d.upgrade() {
                    d.requeue(plugin, target);
                }
            }));
        }
        let sidecars = match config.sidecars.listen {
            None => None,
            Some(addr) => {
                let (sidecars, tls) = Sidecars::new(
                    data,
                    &config.sidecars,
                    client.clone(),
                    registry.clone(),
                    informers.clone(),
                    pipe.clone(),
                )?;
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| crate::sidecars::Error::Listen { addr, source })?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| crate::sidecars::Error::Listen { addr, source })?;
                tasks.push(tokio::spawn(sidecars.clone().serve(listener, tls)));
                tracing::info!(pipe = %bound, tls = config.sidecars.tls, "sidecar pipe listening");
                Some((sidecars, bound))
            }
        };
        if config.resync_seconds > 0 {
            let d = dispatcher.clone();
            let period = Duration::from_secs(config.resync_seconds);
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    d.resync();
                }
            }));
        }
        {
            let (client, health) = (client.clone(), health.clone());
            tasks.push(tokio::spawn(async move {
                connect::wait_reachable(&client, &health).await;
                connect::monitor(client, health, Duration::from_secs(10)).await;
            }));
        }
        {
            let audit = audit.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    if let Err(e) = audit.flush() {
                        tracing::error!(error = %e, "cannot flush the audit log");
                    }
                }
            }));
        }

        let state: Arc<dyn State> = Arc::new(MemoryState::default());
        let services = Services {
            cache: recorder.clone(),
            state,
            commands: recorder.clone(),
            log: plugin_log,
            clock: Arc::new(clock::System),
            pod: None,
        };

        let listener = tokio::net::TcpListener::bind(config.admin_addr)
            .await
            .map_err(|source| Error::Admin {
                addr: config.admin_addr,
                source,
            })?;
        let admin_addr = listener.local_addr().map_err(|source| Error::Admin {
            addr: config.admin_addr,
            source,
        })?;

        let mut runtime = Runtime {
            config,
            registry,
            informers,
            dispatcher,
            pipe,
            metrics,
            audit,
            health,
            leading,
            services,
            admin_addr,
            sidecars,
            gray,
            recorder,
            analysis_task: std::sync::Mutex::new(None),
            objects_task: std::sync::Mutex::new(None),
            judgements: Arc::default(),
            tasks,
            folder_stop: None,
        };
        if let Some(dir) = runtime.config.plugins_dir.clone() {
            runtime.watch_folder(&dir);
        }
        let runtime = Arc::new(runtime);
        if runtime.config.plugin_objects {
            runtime.informers.watch(crate::objects::kind());
            let task = tokio::spawn(crate::objects::run(
                Arc::downgrade(&runtime),
                client.clone(),
            ));
            runtime
                .objects_task
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .replace(task);
        }
        {
            // The canary analysis: judged twice a second, acted on at once.
            let weak = Arc::downgrade(&runtime);
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                loop {
                    tick.tick().await;
                    let Some(rt) = weak.upgrade() else { return };
                    rt.analyze();
                }
            });
            // The task stops with the runtime (weak reference); shutdown aborts it too.
            runtime
                .analysis_task
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .replace(task);
        }
        let admin_runtime = Arc::downgrade(&runtime);
        tokio::spawn(admin::serve(listener, admin_runtime));
        tracing::info!(admin = %admin_addr, "runtime started");
        Ok(runtime)
    }

    pub(crate) fn spec(&self) -> Spec {
        Spec {
            config: "{}".to_owned(),
            limits: self.config.limits.clone(),
            strategy: Strategy::default(),
            services: self.services.clone(),
        }
    }

    fn watch_folder(&mut self, dir: &std::path::Path) {
        if let Err(e) = std::fs::create_dir_all(dir) {
            tracing::error!(dir = %dir.display(), error = %e, "cannot create the plugins folder");
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let spec = self.spec();
        let mut folder = Folder::new(
            dir,
            self.registry.clone(),
            Duration::from_millis(300),
            move |_| spec.clone(),
        );
        std::thread::Builder::new()
            .name("bosun-plugins-folder".into())
            .spawn(move || {
                loop {
                    for event in folder.scan() {
                        if tx.send(event).is_err() {
                            return;
                        }
                    }
                    match stop_rx.recv_timeout(Duration::from_millis(250)) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                }
            })
            .map_err(|e| tracing::error!(error = %e, "cannot start the plugins folder watcher"))
            .ok();
        self.folder_stop = Some(stop_tx);
        let dispatcher = self.dispatcher.clone();
        self.tasks.push(tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                match &event {
                    Event::Loaded { name, digest, path } => {
                        tracing::info!(plugin = %name, digest = %bosun_host::host::log::short(digest), file = %path.display(), "plugin revision serving")
                    }
                    Event::Failed { name, error, .. } => tracing::error!(plugin = %name, "{error}"),
                    Event::Removed { name } => tracing::info!(plugin = %name, "plugin removed"),
                }
                dispatcher.sync();
            }
        }));
    }

    /// Loads a plugin revision with `config` and starts (or swaps) it.
    pub fn install(
        &self,
        source: &Source,
        config: &str,
    ) -> Result<Arc<Revision>, bosun_host::registry::Error> {
        let mut spec = self.spec();
        spec.config = config.to_owned();
        let revision = self.registry.load(source, spec, None)?;
        self.dispatcher.sync();
        Ok(revision)
    }

    /// Loads a plugin with a spec adjusted by `tune` (limits, strategy) and starts it.
    pub fn install_with(
        &self,
        source: &Source,
        tune: impl FnOnce(&mut Spec),
    ) -> Result<Arc<Revision>, bosun_host::registry::Error> {
        let mut spec = self.spec();
        tune(&mut spec);
        let revision = self.registry.load(source, spec, None)?;
        self.dispatcher.sync();
        Ok(revision)
    }

    /// Starts a canary of a new revision of an installed plugin: it serves the keys
    /// `split` picks until the analysis promotes it or rolls it back. A plugin not
    /// installed yet is installed directly.
    pub fn canary(
        &self,
        source: &Source,
        config: &str,
        split: Split,
        analysis: Analysis,
    ) -> Result<Arc<Revision>, crate::gray::Error> {
        let mut spec = self.spec();
        spec.config = config.to_owned();
        let revision = Arc::new(Revision::load(self.registry.engine(), source, spec)?);
        self.start_canary(revision, split, analysis)
    }

    /// Starts a canary of a loaded revision (see [`Runtime::canary`]).
    pub fn start_canary(
        &self,
        revision: Arc<Revision>,
        split: Split,
        analysis: Analysis,
    ) -> Result<Arc<Revision>, crate::gray::Error> {
        let name = revision.name().to_owned();
        let Some(stable) = self.registry.current(&name) else {
            self.registry.adopt(revision.clone());
            self.dispatcher.sync();
            return Ok(revision);
        };
        if stable.info().world != revision.info().world {
            return Err(crate::gray::Error::World {
                plugin: name,
                stable: stable.info().world,
                canary: revision.info().world,
            });
        }
        if stable.digest() == revision.digest() && stable.config() == revision.config() {
            return Ok(stable);
        }
        tracing::info!(plugin = %name, canary = %bosun_host::host::log::short(revision.digest()), split = ?split, "canary started");
        self.gray.start(
            &name,
            Route::new(revision.clone(), &stable, split, analysis),
        );
        // Keys that moved to the canary are looked at by it at once.
        self.dispatcher.resync();
        Ok(revision)
    }

    /// Starts a shadow of a new revision: it reconciles every key the stable revision
    /// does, its commands are recorded and compared with stable's, never executed.
    pub fn shadow(
        &self,
        source: &Source,
        config: &str,
    ) -> Result<Arc<Revision>, crate::gray::Error> {
        let sink = Arc::new(crate::gray::ShadowSink::default());
        let mut spec = self.spec();
        spec.config = config.to_owned();
        spec.services.commands = sink.clone();
        let revision = Arc::new(Revision::load(self.registry.engine(), source, spec)?);
        let name = revision.name().to_owned();
        let stable = self
            .registry
            .current(&name)
            .ok_or_else(|| crate::gray::Error::NoStable(name.clone()))?;
        if stable.info().world != revision.info().world {
            return Err(crate::gray::Error::World {
                plugin: name,
                stable: stable.info().world,
                canary: revision.info().world,
            });
        }
        let mut route = Route::new(
            revision.clone(),
            &stable,
            Split::Shadow,
            Analysis::default(),
        );
        route.sink = Some(sink);
        tracing::info!(plugin = %name, shadow = %bosun_host::host::log::short(revision.digest()), "shadow started");
        self.gray.start(&name, route);
        self.dispatcher.resync();
        Ok(revision)
    }

    /// Promotes the canary (or shadow) of `name`: it becomes the stable revision.
    pub fn promote(&self, name: &str, why: &str) -> Result<Arc<Revision>, crate::gray::Error> {
        let route = self
            .gray
            .end(name)
            .ok_or_else(|| crate::gray::Error::NoCanary(name.to_owned()))?;
        tracing::info!(plugin = %name, revision = %bosun_host::host::log::short(route.canary.digest()), "canary promoted: {why}");
        let promoted = if route.sink.is_some() {
            // A shadow's commands went to its sink: load it again on the real pipe.
            let mut spec = self.spec();
            spec.config = route.canary.config().to_owned();
            let source = Source {
                origin: route.canary.info().origin.clone(),
                bytes: route.canary.bytes().clone(),
            };
            Arc::new(Revision::load(self.registry.engine(), &source, spec)?)
        } else {
            route.canary.clone()
        };
        self.registry.adopt(promoted.clone());
        self.judgements
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned(), Judgement::Promote(why.to_owned()));
        self.dispatcher.sync();
        Ok(promoted)
    }

    /// Rolls the canary of `name` back: the stable revision serves every key again.
    pub fn abort_canary(&self, name: &str, why: &str) -> Result<(), crate::gray::Error> {
        let route = self
            .gray
            .end(name)
            .ok_or_else(|| crate::gray::Error::NoCanary(name.to_owned()))?;
        tracing::warn!(plugin = %name, revision = %bosun_host::host::log::short(route.canary.digest()), "canary rolled back: {why}");
        self.registry.record_failure(
            name,
            route.canary.digest(),
            &route.canary.info().origin,
            &format!("rolled back: {why}"),
        );
        self.judgements
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned(), Judgement::RollBack(why.to_owned()));
        self.dispatcher.resync();
        Ok(())
    }

    /// The canary of `name` and the analysis' latest word on it (or on the last canary).
    pub fn canary_state(&self, name: &str) -> (Option<Route>, Option<Judgement>) {
        (
            self.gray.route(name),
            self.judgements
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(name)
                .cloned(),
        )
    }

    fn analyze(&self) {
        let names: Vec<String> = self.registry.names();
        for name in names {
            let (Some(route), Some(stable)) =
                (self.gray.route(&name), self.registry.current(&name))
            else {
                continue;
            };
            let judgement = route.judge(&stable);
            let acted = match &judgement {
                Judgement::Promote(why) => self.promote(&name, why).is_ok(),
                Judgement::RollBack(why) => self.abort_canary(&name, why).is_ok(),
                _ => false,
            };
            if !acted {
                self.judgements
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(name, judgement);
            }
        }
    }

    /// Removes a plugin.
    pub fn uninstall(&self, name: &str) {
        self.registry.remove(name);
        self.dispatcher.sync();
    }

    /// The plugin registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The shared cache.
    pub fn informers(&self) -> &Arc<Informers> {
        &self.informers
    }

    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The admin endpoint's address.
    pub fn admin_addr(&self) -> std::net::SocketAddr {
        self.admin_addr
    }

    /// Whether this runtime currently leads.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// Command verdicts so far.
    pub fn pipe_counts(&self) -> crate::pipe::Counts {
        self.pipe.counts()
    }

    /// The command pipe (pod-commands wait here for the sidecar pipe).
    pub fn pipe(&self) -> &Arc<Pipe> {
        &self.pipe
    }

    /// The sidecar pipe and the address it listens on, when configured.
    pub fn sidecars(&self) -> Option<(&Arc<Sidecars>, std::net::SocketAddr)> {
        self.sidecars.as_ref().map(|(s, a)| (s, *a))
    }

    /// The audit log.
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// Stops taking keys, lets reconciles in flight finish (bounded by the configured
    /// grace), flushes the audit log, and stops every task.
    pub async fn shutdown(&self) {
        if let Some(stop) = &self.folder_stop {
            let _ = stop.send(());
        }
        self.dispatcher
            .shutdown(Duration::from_secs(self.config.shutdown_grace_seconds))
            .await;
        if let Some((sidecars, _)) = &self.sidecars {
            sidecars.close("the runtime is shutting down");
        }
        for task in [&self.analysis_task, &self.objects_task] {
            if let Some(t) = task
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
            {
                t.abort();
            }
        }
        if let Err(e) = self.audit.flush() {
            tracing::error!(error = %e, "cannot flush the audit log");
        }
        for t in &self.tasks {
            t.abort();
        }
        self.informers.shutdown();
        tracing::info!("runtime stopped");
    }
}
