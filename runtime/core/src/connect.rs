//! Connecting to Kubernetes: only through a `kube::Client`, from a kubeconfig or the
//! in-cluster service account. An unreachable API server is retried with backoff and
//! reported by the health endpoint, never a crash.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// A connection that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// No kubeconfig and not in a cluster.
    #[error("no cluster configured: {0} (pass --kubeconfig, set KUBECONFIG, or run in a pod)")]
    Infer(String),
    /// The client could not be built.
    #[error("cannot create a Kubernetes client: {0}")]
    Client(String),
}

/// A client for the cluster of `kubeconfig`, or of the environment (KUBECONFIG,
/// ~/.kube/config, in-cluster).
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, Error> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| Error::Kubeconfig {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Kubeconfig {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?
        }
        None if std::env::var_os(SERVICE_ACCOUNT_DIR_ENV).is_some() => in_cluster()?,
        None => Config::infer()
            .await
            .map_err(|e| Error::Infer(e.to_string()))?,
    };
    from_config(config)
}

/// Overrides where the service account's files are mounted (tests start the runtime the
/// way a pod does, on a machine where that path is not theirs to write).
pub const SERVICE_ACCOUNT_DIR_ENV: &str = "BOSUN_SERVICEACCOUNT_DIR";

/// Where the pod's service account is mounted: `token`, `ca.crt`, `namespace`.
pub fn service_account_dir() -> std::path::PathBuf {
    std::env::var_os(SERVICE_ACCOUNT_DIR_ENV).map_or_else(
        || "/var/run/secrets/kubernetes.io/serviceaccount".into(),
        std::path::PathBuf::from,
    )
}

/// The in-cluster configuration, as kube's own (`KUBERNETES_SERVICE_HOST`/`_PORT`, the
/// service account's CA, a token file re-read as the kubelet rotates it, its namespace),
/// from [`service_account_dir`].
fn in_cluster() -> Result<Config, Error> {
    let infer = |m: String| Error::Infer(m);
    let env = |k: &str| std::env::var(k).map_err(|_| infer(format!("{k} is not set")));
    let (host, port) = (
        env("KUBERNETES_SERVICE_HOST")?,
        env("KUBERNETES_SERVICE_PORT")?,
    );
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let url = format!("https://{host}:{port}")
        .parse()
        .map_err(|e| infer(format!("KUBERNETES_SERVICE_HOST/PORT: {e}")))?;
    let dir = service_account_dir();
    let ca = std::fs::read(dir.join("ca.crt"))
        .map_err(|e| infer(format!("{}: {e}", dir.join("ca.crt").display())))?;
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let roots: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(&ca)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| infer(format!("{}: {e}", dir.join("ca.crt").display())))?;
    let mut config = Config::new(url);
    config.root_cert = Some(roots);
    config.auth_info.token_file = Some(dir.join("token").display().to_string());
    if let Ok(ns) = std::fs::read_to_string(dir.join("namespace")) {
        config.default_namespace = ns.trim().to_owned();
    }
    Ok(config)
}

/// A client from a kube config, without kube's built-in retries: the runtime retries
/// with its own backoff (work queues, informers), and a refusal such as an eviction
/// blocked by a PodDisruptionBudget (429) must come back as a failed command at once,
/// not after minutes of hidden retries.
pub fn from_config(mut config: Config) -> Result<Client, Error> {
    config.default_retry = false;
    Client::try_from(config).map_err(|e| Error::Client(e.to_string()))
}

/// Whether the API server answers, as the health endpoint reports it.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Mutex<Option<String>>>);

impl Health {
    /// `None` when the API server answered last time; the error otherwise.
    pub fn problem(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records the current problem (`None`: reachable).
    pub fn set(&self, problem: Option<String>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = problem;
    }
}

/// Waits until the API server answers, retrying with backoff (capped at 30 s) and
/// saying why it does not; then keeps checking every `period` to keep `health` current.
pub async fn wait_reachable(client: &Client, health: &Health) {
    let mut delay = Duration::from_millis(250);
    loop {
        match client.apiserver_version().await {
            Ok(v) => {
                tracing::info!(version = %v.git_version, "connected to the API server");
                health.set(None);
                return;
            }
            Err(e) => {
                let problem = format!("cannot reach the API server: {e}");
                tracing::warn!(retry_in = ?delay, "{problem}");
                health.set(Some(problem));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Checks the API server every `period`, updating `health`.
pub async fn monitor(client: Client, health: Health, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        match client.apiserver_version().await {
            Ok(_) => health.set(None),
            Err(e) => health.set(Some(format!("cannot reach the API server: {e}"))),
        }
    }
}
