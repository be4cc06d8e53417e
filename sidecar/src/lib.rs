//! The Bosun sidecar: runs a pod's pod-agent plugins through the shared host library,
//! serves the pod's probes from them, and executes the pod-commands controller plugins
//! send it over the link to the runtime.
//!
//! The binary (`bosun-sidecar`) reads its [`Config`] from the environment; the embedded
//! cluster and tests run the same [`Sidecar`] in-process.

pub mod agents;
pub mod config;
mod executed;
pub mod pod;
mod probes;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bosun_host::contract::PodInfo;
use bosun_host::host::{Services, log};
use bosun_host::limits::Limits;
use tokio::sync::watch;

pub use agents::Agents;
pub use config::Config;

/// A running sidecar.
pub struct Sidecar {
    probe_addr: SocketAddr,
    agents: Arc<Agents>,
    session: Arc<session::Session>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    probes: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sidecar")
            .field("probe_addr", &self.probe_addr)
            .finish_non_exhaustive()
    }
}

impl Sidecar {
    /// Starts serving probes (with the plugins of the last assignment, from the cache)
    /// and connects to the runtime in the background.
    pub async fn start(config: Config) -> anyhow::Result<Sidecar> {
        let span = tracing::info_span!("bosun.sidecar.start", pod = %format!("{}/{}", config.namespace, config.pod));
        tracing::Instrument::instrument(Self::start_inner(config), span).await
    }

    async fn start_inner(config: Config) -> anyhow::Result<Sidecar> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| anyhow::anyhow!("BOSUN_DATA_DIR {}: {e}", config.data_dir.display()))?;
        std::fs::create_dir_all(&config.shared_dir).map_err(|e| {
            anyhow::anyhow!("BOSUN_SHARED_DIR {}: {e}", config.shared_dir.display())
        })?;
        let engine = bosun_host::Engine::new(&bosun_host::engine::Config {
            cache_dir: Some(config.data_dir.join("compiled")),
            max_instances: 16,
            max_memory_bytes: 256 << 20,
            // A sidecar runs a few plugins: no pool reserved up front.
            pooling: false,
        })?;
        let pod = pod::LocalPod::new(
            PodInfo {
                namespace: config.namespace.clone(),
                name: config.pod.clone(),
                uid: config.uid.clone(),
                node_name: config.node.clone(),
                labels: config.labels.clone(),
            },
            config.shared_dir.clone(),
        );
        let mut services = Services::offline();
        services.log = Arc::new(log::Tracing);
        services.pod = Some(Arc::new(pod));
        let limits = Limits {
            // A probe must answer before the kubelet gives up.
            deadline: config.probe_timeout.min(Limits::default().deadline),
            ..Limits::default()
        };
        let agents = Arc::new(Agents::new(
            engine,
            services,
            limits,
            config.data_dir.join("plugins"),
        ));
        let session = Arc::new(session::Session::new(config.clone(), agents.clone()));
        {
            let s = session.clone();
            tokio::task::spawn_blocking(move || s.restore()).await?;
        }
        let listener = tokio::net::TcpListener::bind(config.probe_addr)
            .await
            .map_err(|e| anyhow::anyhow!("BOSUN_PROBE_ADDR {}: {e}", config.probe_addr))?;
        let probe_addr = listener.local_addr()?;
        let app = probes::router(agents.clone(), session.clone(), config.probe_timeout);
        let probes = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "probe endpoint stopped");
            }
        });
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(session.clone().run(rx));
        tracing::info!(probes = %probe_addr, runtime = %config.runtime, "sidecar started");
        Ok(Sidecar {
            probe_addr,
            agents,
            session,
            shutdown,
            task,
            probes,
        })
    }

    /// Where the probe endpoints listen.
    pub fn probe_addr(&self) -> SocketAddr {
        self.probe_addr
    }

    /// The plugins.
    pub fn agents(&self) -> &Arc<Agents> {
        &self.agents
    }

    /// Whether the link to the runtime is up.
    pub fn connected(&self) -> bool {
        self.session.connected.load(Ordering::Relaxed)
    }

    /// Commands executed since start (redeliveries answered from memory not counted).
    pub fn executed(&self) -> u64 {
        self.session.executed.load(Ordering::Relaxed)
    }

    /// Graceful stop (SIGTERM): flush acks and outcomes, close the link, run every
    /// plugin's `on-stop`.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        let agents = self.agents.clone();
        let _ = tokio::task::spawn_blocking(move || agents.stop_all()).await;
        self.probes.abort();
    }

    /// Stops at once, as if the process were killed (tests).
    pub fn kill(self) {
        self.task.abort();
        self.probes.abort();
    }
}
