//! The composition root: assembles the engine, registry, informers, command pipe,
//! dispatcher, rollouts, leader election, plugins folder, sidecar link and admin
//! endpoint, and hands each part the narrow handles it needs. Nothing here decides
//! anything: each stage lives in its own module.

use std::sync::Arc;
use std::time::Duration;

use bosun_host::host::cache::{MemoryState, State};
use bosun_host::host::{Services, clock, log};
use bosun_host::load::{Source, Spec, Strategy};
use bosun_host::watch::{Event, Folder};
use bosun_host::{Engine, Registry, Revision};
use kube::Client;
use tokio::sync::{mpsc, oneshot, watch};

use crate::audit::AuditLog;
use crate::config::Config;
use crate::connect::{self, Health};
use crate::dispatch::{Dispatcher, Parts};
use crate::executor::Executor;
use crate::guardrail::Guardrails;
use crate::informer::{Informers, Kind};
use crate::metrics::Metrics;
use crate::pipe::Pipe;
use crate::record::Recorder;
use crate::rollout::{Resync, Rollouts, Routes};
use crate::sidecars::Sidecars;
use crate::{admin, leader, rollout};

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
    /// The sidecar link could not start.
    #[error(transparent)]
    Sidecars(#[from] crate::sidecars::Error),
    /// The admission webhook could not start.
    #[error(transparent)]
    Webhook(#[from] crate::webhook::Error),
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

/// A running runtime. Its parts are reached through narrow accessors; the fields stay
/// private so no module reaches into another through it.
pub struct Runtime {
    config: Config,
    registry: Arc<Registry>,
    informers: Arc<Informers>,
    dispatcher: Arc<Dispatcher>,
    pipe: Arc<Pipe>,
    metrics: Metrics,
    audit: Arc<AuditLog>,
    leading: watch::Receiver<bool>,
    /// Stops the election (stepping down, releasing the lease) and its task.
    election: std::sync::Mutex<Option<Election>>,
    admin: Arc<admin::Parts>,
    admin_addr: std::net::SocketAddr,
    sidecars: Option<(Arc<Sidecars>, std::net::SocketAddr)>,
    rollouts: Arc<Rollouts>,
    webhooks: Option<Arc<crate::webhook::Webhooks>>,
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
            AuditLog::open_with(data.join("audit.log"), config.audit.clone())
                .map_err(|e| Error::Audit(e.to_string()))?,
        );
        let metrics = Metrics::new();
        let (informers, changes) = Informers::new(client.clone());
        let pipe = Arc::new(command_pipe(&config, &informers, &metrics, &audit)?);
        let registry = Arc::new(Registry::new(engine));
        let mut tasks = Vec::new();
        let (leading, election) = leader_election(&config, &client, &metrics, &mut tasks);
        // Checked before each execution, not only when a reconcile starts.
        pipe.set_leading(leading.clone());

        let routes = Arc::new(Routes::default());
        // Plugins read the cache and submit commands through the recorder.
        let recorder = Arc::new(Recorder::new(informers.clone(), pipe.clone()));
        let dispatcher = Dispatcher::new(Parts {
            registry: registry.clone(),
            informers: informers.clone(),
            pipe: pipe.clone(),
            executor: Executor::new(client.clone(), informers.clone()),
            metrics: metrics.clone(),
            queue: config.queue.to_queue(),
            leading: leading.clone(),
            routes: routes.clone(),
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
        let sidecars = sidecar_link(
            &config, &client, &registry, &informers, &pipe, &leading, &mut tasks,
        )
        .await?;
        background(&config, &client, &dispatcher, &health, &audit, &mut tasks);

        let rollouts = Arc::new(Rollouts::new(
            registry.clone(),
            routes.clone(),
            plugin_spec(&config, &recorder, plugin_log),
            resync_on(&dispatcher),
        ));
        // The canary analysis: judged twice a second, acted on at once.
        tasks.push(tokio::spawn(Rollouts::analysis(
            Arc::downgrade(&rollouts),
            Duration::from_millis(500),
        )));
        if config.plugin_objects {
            tasks.push(tokio::spawn(rollout::controller::run(
                rollout::controller::Parts {
                    rollouts: rollouts.clone(),
                    informers: informers.clone(),
                    client: client.clone(),
                    leading: leading.clone(),
                    namespace: rollout::controller::namespace(
                        config.plugin_namespace.as_deref(),
                        &client,
                    ),
                    plugins_dir: config.plugins_dir.clone(),
                },
            )));
        }

        let webhooks = match config.webhook.listen {
            Some(_) => {
                let (w, mut started) = crate::webhook::Webhooks::start(
                    config.webhook.clone(),
                    crate::webhook::Parts {
                        registry: registry.clone(),
                        rollouts: rollouts.clone(),
                        informers: informers.clone(),
                        metrics: metrics.clone(),
                        audit: audit.clone(),
                        client: client.clone(),
                        leading: leading.clone(),
                        namespace: rollout::controller::namespace(
                            config.plugin_namespace.as_deref(),
                            &client,
                        ),
                        pod_namespace: crate::webhook::pod_namespace(),
                        data_dir: config.data_dir.clone(),
                    },
                )
                .await?;
                tasks.append(&mut started);
                Some(w)
            }
            None => {
                tasks.push(tokio::spawn(warn_unserved_admission(
                    Arc::downgrade(&registry),
                    rollouts.changed(),
                )));
                None
            }
        };

        let (listener, admin_addr) = bind_admin(config.admin_addr).await?;
        let admin = Arc::new(admin::Parts {
            registry: registry.clone(),
            informers: informers.clone(),
            dispatcher: dispatcher.clone(),
            pipe: pipe.clone(),
            metrics: metrics.clone(),
            health,
            routes,
            recorder,
            sidecars: sidecars.clone(),
            leading: leading.clone(),
            webhooks: webhooks.clone(),
        });
        // The admin endpoint answers until the runtime is dropped (then 503).
        tokio::spawn(admin::serve(listener, Arc::downgrade(&admin)));

        let mut runtime = Runtime {
            config,
            registry,
            informers,
            dispatcher,
            pipe,
            metrics,
            audit,
            leading,
            election: std::sync::Mutex::new(election),
            admin,
            admin_addr,
            sidecars,
            rollouts,
            webhooks,
            tasks,
            folder_stop: None,
        };
        if let Some(dir) = runtime.config.plugins_dir.clone() {
            runtime.watch_folder(&dir);
        }
        tracing::info!(admin = %admin_addr, "runtime started");
        Ok(Arc::new(runtime))
    }

    fn watch_folder(&mut self, dir: &std::path::Path) {
        if let Err(e) = std::fs::create_dir_all(dir) {
            tracing::error!(dir = %dir.display(), error = %e, "cannot create the plugins folder");
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let spec = self.rollouts.spec();
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
                    // Every 250 ms, or as soon as a changed file has settled.
                    match stop_rx.recv_timeout(folder.pause(Duration::from_millis(250))) {
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
        self.install_with(source, |spec| spec.config = config.to_owned())
    }

    /// Loads a plugin with a spec adjusted by `tune` (limits, strategy) and starts it.
    pub fn install_with(
        &self,
        source: &Source,
        tune: impl FnOnce(&mut Spec),
    ) -> Result<Arc<Revision>, bosun_host::registry::Error> {
        let mut spec = self.rollouts.spec();
        tune(&mut spec);
        let revision = self.registry.load(source, spec, None)?;
        self.dispatcher.sync();
        Ok(revision)
    }

    /// Removes a plugin.
    pub fn uninstall(&self, name: &str) {
        self.registry.remove(name);
        self.dispatcher.sync();
    }

    /// Rollouts: canaries, shadows, promotion and rollback.
    pub fn rollouts(&self) -> &Arc<Rollouts> {
        &self.rollouts
    }

    /// Publishes the plugins folder's plugins as Plugin objects (a `file` source) where
    /// this runtime reads them, so `bosun plugin …` sees and manages them; nothing
    /// without a plugins folder or with Plugin objects off. Runs until aborted.
    pub fn publish_folder(&self, client: Client) -> Option<tokio::task::JoinHandle<()>> {
        let dir = self
            .config
            .plugins_dir
            .clone()
            .filter(|_| self.config.plugin_objects)?;
        let namespace =
            rollout::controller::namespace(self.config.plugin_namespace.as_deref(), &client);
        Some(tokio::spawn(rollout::folder::mirror_folder(
            Arc::downgrade(&self.registry),
            client,
            std::fs::canonicalize(&dir).unwrap_or(dir),
            namespace,
        )))
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

    /// The admission webhook, when `webhook.listen` is set.
    pub fn webhooks(&self) -> Option<&Arc<crate::webhook::Webhooks>> {
        self.webhooks.as_ref()
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

    /// The command pipe (pod-commands wait here for the sidecar link).
    pub fn pipe(&self) -> &Arc<Pipe> {
        &self.pipe
    }

    /// The sidecar link and the address it listens on, when configured.
    pub fn sidecars(&self) -> Option<(&Arc<Sidecars>, std::net::SocketAddr)> {
        self.sidecars.as_ref().map(|(s, a)| (s, *a))
    }

    /// The audit log.
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// Status of every plugin, as `/plugins` serves it and `bosun status` prints it.
    pub fn status(&self) -> serde_json::Value {
        admin::plugins_json(&self.admin)
    }

    /// Stops taking keys, lets reconciles in flight finish (bounded by the configured
    /// grace), steps down and releases the lease (a standby takes over at once),
    /// flushes the audit log, and stops every task.
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
        let election = self
            .election
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some((stop, task)) = election {
            let _ = stop.send(());
            // The release has its own request timeout; this only bounds a stuck task, so
            // shutdown ends within its grace period and a few seconds whatever the API
            // server does.
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!("leader election did not stop");
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

impl Drop for Runtime {
    fn drop(&mut self) {
        // Tasks hold parts of the runtime, not the runtime: end them with it.
        for t in &self.tasks {
            t.abort();
        }
        let election = self
            .election
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, task)) = election.take() {
            task.abort();
        }
    }
}

/// How every plugin revision is loaded: the configured limits, and services that read
/// the cache and submit commands through the recorder (config replaced per plugin).
fn plugin_spec(config: &Config, recorder: &Arc<Recorder>, log: Arc<dyn log::Log>) -> Spec {
    Spec {
        config: "{}".to_owned(),
        limits: config.limits.clone(),
        strategy: Strategy::default(),
        services: Services {
            cache: recorder.clone(),
            state: Arc::new(MemoryState::with_caps(
                config.limits.max_state_bytes,
                config.limits.max_state_keys,
            )) as Arc<dyn State>,
            commands: recorder.clone(),
            log,
            clock: Arc::new(clock::System),
            pod: None,
        },
    }
}

/// What the dispatcher does when a rollout changed something (it may be gone).
fn resync_on(dispatcher: &Arc<Dispatcher>) -> Box<dyn Fn(Resync) + Send + Sync> {
    let d = Arc::downgrade(dispatcher);
    Box::new(move |what| {
        if let Some(d) = d.upgrade() {
            match what {
                Resync::Workers => d.sync(),
                Resync::Keys => d.resync(),
            }
        }
    })
}

/// The admin endpoint's listener and the address it got.
async fn bind_admin(
    addr: std::net::SocketAddr,
) -> Result<(tokio::net::TcpListener, std::net::SocketAddr), Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Admin { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::Admin { addr, source })?;
    Ok((listener, bound))
}

/// The controllers whose spec sizes a workload for the budgets, then the
/// PodDisruptionBudget kind.
const WORKLOAD_KINDS_AND_PDBS: [(&str, &str); 6] = [
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("batch/v1", "Job"),
    ("policy/v1", "PodDisruptionBudget"),
];

/// The command pipe with the configured guardrails; the kinds its budgets read are
/// watched.
fn command_pipe(
    config: &Config,
    informers: &Arc<Informers>,
    metrics: &Metrics,
    audit: &Arc<AuditLog>,
) -> Result<Pipe, Error> {
    let guardrails =
        Guardrails::new(config.guardrails.clone()).map_err(|e| Error::Config(e.to_string()))?;
    let g = &config.guardrails;
    if g.any(|s| s.max_cordoned_nodes.is_some()) {
        informers.watch(Kind::new("v1", "Node"));
    }
    let workloads = g.any(|s| s.max_unavailable.is_some() || s.min_healthy_share.is_some());
    let pdbs = g.any(|s| s.pod_disruption_budgets);
    if workloads || pdbs {
        // Pods, and (not required: a workload not cached is sized by its pods) what
        // sizes their workloads and the PodDisruptionBudgets covering them.
        informers.watch(Kind::new("v1", "Pod"));
        let optional: &[(&str, &str)] = match (workloads, pdbs) {
            (true, true) => &WORKLOAD_KINDS_AND_PDBS,
            (true, false) => &WORKLOAD_KINDS_AND_PDBS[..5],
            _ => &WORKLOAD_KINDS_AND_PDBS[5..],
        };
        for (api_version, kind) in optional {
            informers.watch_optional(Kind::new(api_version, kind));
        }
    }
    Ok(Pipe::new(
        guardrails,
        informers.clone(),
        metrics.clone(),
        Some(audit.clone()),
    ))
}

/// A running election: send to stop it, then wait for its task (it releases the lease).
type Election = (oneshot::Sender<()>, tokio::task::JoinHandle<()>);

/// Leader election when configured (else this runtime always leads): the receiver is
/// true while this runtime leads.
fn leader_election(
    config: &Config,
    client: &Client,
    metrics: &Metrics,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> (watch::Receiver<bool>, Option<Election>) {
    let (lead_tx, leading) = watch::channel(!config.leader_election.enabled);
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
        if config.leader_election.label_pod {
            tasks.push(tokio::spawn(leader::label_pod(
                client.clone(),
                lead_tx.subscribe(),
            )));
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(leader::run(
            client.clone(),
            config.leader_election.clone(),
            identity,
            lead_tx,
            async {
                let _ = stopped.await;
            },
        ));
        (leading, Some((stop, task)))
    } else {
        metrics.leader(true);
        tasks.push(tokio::spawn(async move {
            // Keep the sender alive: this runtime always leads.
            let _lead = lead_tx;
            std::future::pending::<()>().await;
        }));
        (leading, None)
    }
}

/// The sidecar link's server, when an address is configured.
async fn sidecar_link(
    config: &Config,
    client: &Client,
    registry: &Arc<Registry>,
    informers: &Arc<Informers>,
    pipe: &Arc<Pipe>,
    leading: &watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<Option<(Arc<Sidecars>, std::net::SocketAddr)>, Error> {
    let Some(addr) = config.sidecars.listen else {
        return Ok(None);
    };
    let c = &config.sidecars;
    let shared = match (&c.tls_secret, c.tls) {
        (Some(secret), true) => {
            let namespace = crate::webhook::pod_namespace()
                .unwrap_or_else(|| client.default_namespace().to_owned());
            Some(
                crate::sidecars::tls::load_shared(
                    client.clone(),
                    &namespace,
                    secret,
                    &config.data_dir,
                    &c.tls_names,
                )
                .await?,
            )
        }
        _ => None,
    };
    let ca = shared.as_ref().map(|t| t.ca_pem().to_owned());
    let (sidecars, tls) = Sidecars::new(
        &config.data_dir,
        &config.sidecars,
        client.clone(),
        registry.clone(),
        informers.clone(),
        pipe.clone(),
        shared,
    )?;
    if let (Some(name), true) = (&c.publish_ca, c.tls) {
        // The CA in the data directory when it is not shared.
        let ca = match ca {
            Some(ca) => ca,
            None => sidecars
                .ca_file()
                .and_then(|f| std::fs::read_to_string(f).ok())
                .unwrap_or_default(),
        };
        informers.watch(Kind::new("v1", "Namespace"));
        tasks.push(tokio::spawn(crate::sidecars::publish::ca(
            informers.clone(),
            client.clone(),
            leading.clone(),
            name.clone(),
            ca,
        )));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| crate::sidecars::Error::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| crate::sidecars::Error::Listen { addr, source })?;
    tasks.push(tokio::spawn(sidecars.clone().serve(listener, tls)));
    tracing::info!(link = %bound, tls = config.sidecars.tls, "sidecar link listening");
    Ok(Some((sidecars, bound)))
}

/// The periodic work: resync, API-server reachability, audit-log flushes.
fn background(
    config: &Config,
    client: &Client,
    dispatcher: &Arc<Dispatcher>,
    health: &Health,
    audit: &Arc<AuditLog>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) {
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

/// Without `webhook.listen` nothing serves admission plugins: each one loaded is said
/// once, so that a plugin that never gets called is not a mystery.
async fn warn_unserved_admission(
    registry: std::sync::Weak<bosun_host::registry::Registry>,
    mut changed: tokio::sync::watch::Receiver<u64>,
) {
    let mut warned = std::collections::HashSet::new();
    loop {
        let Some(registry) = registry.upgrade() else {
            return;
        };
        for name in registry.names() {
            let admission = registry
                .current(&name)
                .is_some_and(|r| r.info().world == bosun_host::World::Admission);
            if admission && warned.insert(name.clone()) {
                tracing::warn!(
                    plugin = %name,
                    "admission plugin loaded, but the admission webhook is off: the API server never calls it; set `webhook.listen` (and `webhook.service` or `webhook.url`) in the runtime config"
                );
            }
        }
        drop(registry);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            r = changed.changed() => if r.is_err() { return },
        }
    }
}
