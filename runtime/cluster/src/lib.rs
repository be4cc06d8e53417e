//! An embedded, Kubernetes-compatible API server with simulated nodes.
//!
//! `bosun-cluster` serves the Kubernetes REST API over plain HTTP on loopback, stores
//! objects with Kubernetes semantics (resource versions, generations, optimistic
//! concurrency, finalizers, owner references, namespaces) in memory or in redb, and runs
//! simulated nodes: a scheduler, kubelets, and the workload controllers. It
//! writes a kubeconfig at start, so `kubectl --kubeconfig FILE` and `kube::Client` work
//! against it unchanged.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = bosun_cluster::start(bosun_cluster::Config::default()).await?;
//! let client = cluster.client().await?;
//! let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::default_namespaced(client);
//! println!("{} pods", pods.list(&Default::default()).await?.items.len());
//! cluster.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! `store` (objects, versions, history, redb), `api` (paths and verbs), `watch`,
//! `patch`, `selector`, `discovery`, `openapi` (schemas for `kubectl explain`), `table`
//! (kubectl get), `eviction` (PodDisruptionBudgets), `admission` (webhook configurations
//! and calls), `gc` (garbage collector and namespace controller, always on), `sim/`
//! (nodes, scheduler, kubelet, StatefulSet, ReplicaSet, Deployment, DaemonSet, Job
//! controllers, their Events, fault injection and its admin endpoints).
//!
//! # What is simplified
//! - No authentication or authorization unless [`Config::auth`] turns them on (HTTPS,
//!   bearer tokens, RBAC: see [`auth`]); webhooks see every API request as `system:admin`
//!   either way. Admission webhooks (`admissionregistration.k8s.io/v1`) are called for
//!   writes through the API, as kube-apiserver calls them, over HTTPS (kept-alive
//!   connections) to a URL or to a Service resolved through its Endpoints, and for the
//!   pods the ReplicaSet and StatefulSet controllers create (as their service accounts);
//!   the in-process controllers' other writes are not admitted, and CEL
//!   `matchConditions` are refused. Bodies are JSON (YAML is
//!   accepted too); protobuf request bodies (what kubectl's typed generators and
//!   `kubectl drain`'s evictions send) are decoded for every built-in kind against the
//!   upstream `.proto` files (see `protobuf`), not for custom resources; an eviction's
//!   pod is the URL's, and PodDisruptionBudgets apply as for JSON; responses are always
//!   JSON.
//! - All versions of a custom resource share one stored form; there is no conversion.
//!   Custom resources are pruned, defaulted and validated against `openAPIV3Schema` as
//!   apiextensions-apiserver does (see `schema`), except CEL rules
//!   (`x-kubernetes-validations`). `/scale` reads and writes
//!   `spec.replicas` (the CRD's `specReplicasPath` is not read).
//! - Pods are removed at once on delete (the simulated kubelet confirms at once), unless
//!   finalizers remain, or the pod runs on a simulated node that is not Ready: then it
//!   stays Terminating until the node is back or is tainted out-of-service (see [`sim`]);
//!   `gracePeriodSeconds=0` removes it at once. `Foreground` propagation behaves as
//!   `Background`. Pod spec updates are not restricted to the mutable fields.
//! - `continue` tokens page over live data (not a snapshot at the first page's version).
//! - core/v1 and events.k8s.io/v1 Events are stored separately.
//! - See [`patch`] for the strategic merge and server-side apply simplifications.
//! - The aggregated discovery form is answered with the plain form (clients fall back).
//!   OpenAPI v3 and v2 are served in JSON only (not protobuf), with the built-in kinds'
//!   schemas from k8s-openapi (without `x-kubernetes-patch-*` and list-type extensions)
//!   and the CRDs' (see `openapi`); kubectl leaves validation to the server
//!   (`fieldValidation`: unknown or repeated fields fail a `Strict` write, and are
//!   dropped with a warning for `Warn`).
//! - `kubectl get` Tables have columns for pods, nodes, namespaces, deployments,
//!   statefulsets, replicasets, daemonsets and jobs, NAME/AGE for the rest; watches send one-row Tables
//!   when asked (`kubectl get -w`).
//! - Simulation: one kubelet loop serves every simulated node; no probes, no resources
//!   (a node's room is a pod count), init containers count as completed. See [`sim`].
//! - kube's default client retries 429 answers (evictions refused by a budget) with
//!   backoff for minutes: see [`Cluster::client`].

#![warn(missing_docs)]

pub mod admission;
mod api;
pub mod auth;
mod discovery;
mod eviction;
mod fieldvalidation;
mod gc;
pub mod kubeconfig;
mod meta;
mod openapi;
pub mod patch;
mod protobuf;
pub mod requests;
pub mod resource;
mod schema;
pub mod selector;
pub mod sim;
pub mod status;
pub mod store;
mod table;
mod validate;
mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

pub use status::ApiError;
pub use store::Store;

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be created or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The redb database could not be opened or read.
    #[error("storage")]
    Storage(#[source] redb::Error),
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The kube client could not be configured.
    #[error("kube client")]
    Client(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Authentication (certificates, keys, tokens) could not be set up.
    #[error("authentication")]
    Auth(#[source] auth::Error),
}

/// Result of starting or driving the cluster.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to run the cluster.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the redb file and the kubeconfig live; `None` keeps everything in memory
    /// (the kubeconfig then goes to a temporary directory removed at shutdown).
    pub data_dir: Option<PathBuf>,
    /// Where to listen; port 0 picks a free port. Default `127.0.0.1:0`.
    pub addr: SocketAddr,
    /// How many simulated nodes to register (`sim-node-0`, ...). 0 runs no simulation
    /// except the garbage collector and the namespace controller.
    pub nodes: usize,
    /// Events kept per resource for watches; a watch from an older version gets 410 Gone.
    pub watch_history: usize,
    /// Interval between BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// Where to write the kubeconfig; default `DATA_DIR/kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// Simulation timing and capacity.
    pub sim: sim::Config,
    /// Authentication and RBAC (HTTPS, tokens); `None` (the default) serves plain HTTP
    /// and treats every request as the admin's. See [`auth`].
    pub auth: Option<auth::Config>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            nodes: 3,
            watch_history: 10_000,
            bookmark_interval: Duration::from_secs(60),
            kubeconfig: None,
            sim: sim::Config::default(),
            auth: None,
        }
    }
}

/// A running cluster. Dropping it without [`Cluster::shutdown`] leaves the tasks running
/// until the runtime ends.
pub struct Cluster {
    url: String,
    addr: SocketAddr,
    kubeconfig: PathBuf,
    store: Arc<Store>,
    sim: Arc<sim::Control>,
    requests: Arc<requests::Counter>,
    auth: Option<Arc<auth::Auth>>,
    stop: tokio::sync::watch::Sender<bool>,
    server: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
    _tmp: Option<tempfile::TempDir>,
}

/// Starts the API server, the core controllers and the simulation; writes the kubeconfig.
pub async fn start(config: Config) -> Result<Cluster> {
    let store = Arc::new(Store::open(
        config.data_dir.as_deref(),
        config.watch_history,
    )?);
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| Error::Bind {
            addr: config.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.addr,
        source,
    })?;
    let auth = match &config.auth {
        Some(c) => {
            let dir = config.data_dir.as_ref().map(|d| d.join("auth"));
            let a =
                auth::Auth::new(c.clone(), store.clone(), dir.as_deref()).map_err(Error::Auth)?;
            Some(Arc::new(a))
        }
        None => None,
    };
    let scheme = if auth.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{addr}");
    let (tmp, kubeconfig) = match (&config.kubeconfig, &config.data_dir) {
        (Some(p), _) => (None, p.clone()),
        (None, Some(dir)) => (None, dir.join("kubeconfig")),
        (None, None) => {
            let tmp = tempfile::tempdir().map_err(|source| Error::Io {
                path: std::env::temp_dir(),
                source,
            })?;
            let p = tmp.path().join("kubeconfig");
            (Some(tmp), p)
        }
    };
    let written = match &auth {
        Some(a) => kubeconfig::write_text(&kubeconfig, &a.kubeconfig(&url)),
        None => kubeconfig::write(&kubeconfig, &url),
    };
    written.map_err(|source| Error::Io {
        path: kubeconfig.clone(),
        source,
    })?;
    ensure_namespaces(&store);

    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let sim = sim::Control::new(config.sim.clone());
    let requests = Arc::<requests::Counter>::default();
    let admission = Arc::<admission::Admission>::default();
    let state = api::AppState {
        requests: requests.clone(),
        store: store.clone(),
        addr: addr.to_string(),
        bookmark_interval: config.bookmark_interval,
        evictions: Arc::default(),
        stop: stop_rx.clone(),
        admission: admission.clone(),
    };
    let router = api::router(state).merge(sim::admin_router(sim.clone()));
    let mut shutdown_rx = stop_rx.clone();
    let shutdown = async move {
        let _ = shutdown_rx.wait_for(|s| *s).await;
    };
    let server = match &auth {
        Some(a) => {
            let listener = a.listener(listener).map_err(Error::Auth)?;
            let router = auth::layer(router, a.clone());
            tokio::spawn(async move {
                let serve = axum::serve(listener, router).with_graceful_shutdown(shutdown);
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "bosun cluster server failed");
                }
            })
        }
        None => tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(shutdown);
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "bosun cluster server failed");
            }
        }),
    };
    let mut tasks = vec![tokio::spawn(gc::run(store.clone(), stop_rx.clone()))];
    tasks.extend(sim::spawn(
        store.clone(),
        sim.clone(),
        admission,
        config.nodes,
        stop_rx,
    ));
    tracing::info!(%url, kubeconfig = %kubeconfig.display(), "bosun cluster listening");
    Ok(Cluster {
        url,
        addr,
        kubeconfig,
        store,
        sim,
        requests,
        auth,
        stop,
        server,
        tasks,
        _tmp: tmp,
    })
}

/// Creates the namespaces every cluster has.
fn ensure_namespaces(store: &Store) {
    let Some(rt) = store.resolve("", "v1", "namespaces") else {
        return;
    };
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj = serde_json::json!({"metadata": {"name": ns}});
        // AlreadyExists after a restart is the expected case.
        let _ = store.create(&rt, "", obj, false);
    }
}

/// Starts the cluster, prints where it listens, and serves until Ctrl-C.
pub async fn serve_until_ctrl_c(config: Config) -> Result<()> {
    let cluster = start(config).await?;
    println!("bosun cluster listening on {}", cluster.url());
    println!(
        "kubectl --kubeconfig {} get nodes",
        cluster.kubeconfig_path().display()
    );
    let _ = tokio::signal::ctrl_c().await;
    cluster.shutdown().await;
    Ok(())
}

impl Cluster {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The kubeconfig written at start.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The kube client configuration for this cluster (default namespace `default`).
    pub async fn kube_config(&self) -> Result<kube::Config> {
        let yaml = match &self.auth {
            Some(a) => a.kubeconfig(&self.url),
            None => kubeconfig::render(&self.url),
        };
        let kc =
            kube::config::Kubeconfig::from_yaml(&yaml).map_err(|e| Error::Client(Box::new(e)))?;
        kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .map_err(|e| Error::Client(Box::new(e)))
    }

    /// A kube client for this cluster. Note that kube's default retry policy retries 429
    /// and 503 answers (up to 15 times, with backoff): build a client from
    /// [`Cluster::kube_config`] with `default_retry = false` to see them at once.
    pub async fn client(&self) -> Result<kube::Client> {
        kube::Client::try_from(self.kube_config().await?).map_err(|e| Error::Client(Box::new(e)))
    }

    /// Authentication, when [`Config::auth`] turned it on: the CA, the admin token, and
    /// service account tokens for tests.
    pub fn auth(&self) -> Option<&auth::Auth> {
        self.auth.as_deref()
    }

    /// The object store, for in-process callers (benchmarks, tests).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Fault injection and timing of the simulation.
    pub fn sim(&self) -> &Arc<sim::Control> {
        &self.sim
    }

    /// The API requests answered so far, by verb (admin endpoints not counted).
    pub fn requests(&self) -> requests::Requests {
        self.requests.snapshot()
    }

    /// Stops serving, ends the controllers and closes the database.
    pub async fn shutdown(self) {
        let _span = tracing::info_span!("bosun.cluster.shutdown").entered();
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let mut server = self.server;
        // Open connections get a moment to close; then they are cut.
        if tokio::time::timeout(Duration::from_secs(2), &mut server)
            .await
            .is_err()
        {
            server.abort();
            let _ = server.await;
        }
        self.store.close();
    }
}
