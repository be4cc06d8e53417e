//! The runtime's configuration file (YAML). Every field has a default, unknown fields
//! are an error, so a typo is reported rather than ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bosun_host::limits::Limits;

use crate::guardrail;

/// Runtime settings.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Where the audit log, compiled-code cache and plugin state live.
    pub data_dir: PathBuf,
    /// A folder of plugins (`NAME.wasm`, config in `NAME.json`), hot-reloaded.
    pub plugins_dir: Option<PathBuf>,
    /// The command pipe's guardrails.
    pub guardrails: guardrail::Config,
    /// Per-plugin work queues.
    pub queue: QueueConfig,
    /// Every subscribed object is reconciled again this often (0 disables).
    pub resync_seconds: u64,
    /// Admin endpoint: /metrics, /healthz, /readyz, /plugins.
    pub admin_addr: SocketAddr,
    /// Leader election on a coordination.k8s.io/v1 Lease.
    pub leader_election: LeaderElection,
    /// Default per-call limits of every plugin.
    pub limits: Limits,
    /// How long in-flight reconciles may run on shutdown.
    pub shutdown_grace_seconds: u64,
    /// The link to the sidecars in pods.
    pub sidecars: Sidecars,
    /// Drive `Plugin` objects (bosun.dev/v1alpha1) found in the cluster.
    pub plugin_objects: bool,
    /// The one namespace `Plugin` objects are read in (default: the runtime's own
    /// namespace in a pod, else the kubeconfig context's, else `default`). Plugins act
    /// cluster-wide with the runtime's identity: who may create a Plugin is decided by
    /// RBAC on this namespace, and a Plugin anywhere else is ignored (`WrongNamespace`).
    pub plugin_namespace: Option<String>,
    /// The audit trail: file rotation and per-plugin volume of refused commands.
    pub audit: crate::audit::Config,
    /// The admission webhook that serves admission plugins (off unless `listen` is set).
    pub webhook: crate::webhook::Config,
}

/// The sidecar link (gRPC), off unless `listen` is set.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Sidecars {
    /// Where the link listens, e.g. `0.0.0.0:9470`.
    pub listen: Option<SocketAddr>,
    /// Serve TLS with a certificate the runtime generates once (kept in the data
    /// directory; sidecars trust `pipe-tls/ca.pem`).
    pub tls: bool,
    /// Names the certificate is valid for, besides `localhost` and `127.0.0.1`.
    pub tls_names: Vec<String>,
    /// A pod-command no sidecar acknowledged within this time fails as expired.
    pub command_ttl_seconds: u64,
    /// A command sent but not acknowledged is sent again after this long.
    pub resend_ms: u64,
    /// How a sidecar proves which pod it is.
    pub auth: SidecarAuth,
    /// The audience sidecar tokens must be issued for (`tokenReview`): the projected
    /// service-account token's `audience`.
    pub token_audience: String,
    /// With `tls`: keep the link's CA and serving certificate in this Secret of the
    /// runtime's namespace instead of the data directory, so that every replica (and
    /// every restart) serves the one CA the sidecars trust. The first replica makes it.
    pub tls_secret: Option<String>,
    /// With `tls`: the leader publishes the link's CA as this ConfigMap (key `ca.pem`)
    /// in every namespace, where the sidecars mount it, as kube-controller-manager
    /// publishes `kube-root-ca.crt`.
    pub publish_ca: Option<String>,
}

/// How sidecars authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SidecarAuth {
    /// Tokens the runtime issues per pod (embedded mode: `bosun up`, tests).
    Issued,
    /// The pod's projected service-account token, checked with a TokenReview: the
    /// token's pod name and uid must be the pod the sidecar claims to be.
    TokenReview,
}

impl Default for Sidecars {
    fn default() -> Self {
        Sidecars {
            listen: None,
            tls: false,
            tls_names: Vec::new(),
            command_ttl_seconds: 600,
            resend_ms: 5000,
            auth: SidecarAuth::Issued,
            token_audience: "bosun".to_owned(),
            tls_secret: None,
            publish_ca: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(".bosun"),
            plugins_dir: None,
            guardrails: guardrail::Config::default(),
            queue: QueueConfig::default(),
            resync_seconds: 300,
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 9464)),
            leader_election: LeaderElection::default(),
            limits: Limits::default(),
            shutdown_grace_seconds: 10,
            sidecars: Sidecars::default(),
            plugin_objects: true,
            plugin_namespace: None,
            audit: crate::audit::Config::default(),
            webhook: crate::webhook::Config::default(),
        }
    }
}

/// Work-queue settings.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct QueueConfig {
    /// Reconciles (plugin calls) running at once per plugin. Up to four times as many
    /// keys may be in flight: a key whose submitted commands are executing holds no call.
    pub concurrency: usize,
    /// First retry delay after an error.
    pub backoff_base_ms: u64,
    /// Longest retry delay.
    pub backoff_max_ms: u64,
    /// Shortest requeue-after a plugin gets (it may ask for 0).
    pub min_requeue_ms: u64,
    /// Requeues and retries per second per plugin (a token bucket; 0 disables the
    /// limit), so that a plugin that asks to be called again at once costs a bounded
    /// share of a core. Events from the cluster are not limited.
    pub requeue_rate: u32,
    /// Requeues and retries granted at once per plugin before `requeueRate` applies.
    pub requeue_burst: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            concurrency: 4,
            backoff_base_ms: 50,
            backoff_max_ms: 300_000,
            min_requeue_ms: 100,
            requeue_rate: crate::queue::RATE,
            requeue_burst: crate::queue::BURST,
        }
    }
}

impl QueueConfig {
    /// As the queue module takes it.
    pub fn to_queue(&self) -> crate::queue::Config {
        crate::queue::Config {
            concurrency: self.concurrency.max(1),
            backoff_base: Duration::from_millis(self.backoff_base_ms),
            backoff_max: Duration::from_millis(self.backoff_max_ms),
            min_requeue: Duration::from_millis(self.min_requeue_ms),
            rate: self.requeue_rate,
            burst: self.requeue_burst,
        }
    }
}

/// Leader-election settings.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaderElection {
    /// Elect a leader (off: this runtime always leads).
    pub enabled: bool,
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// How long a lease holds without renewal (at least 2). The leader steps down 2/3 of
    /// it after its last successful renewal, even while a request still hangs; a
    /// standby takes over a full lease after it last saw the Lease change; attempts
    /// come every 1/6 of it (see `leader::Timing`).
    pub lease_seconds: u64,
    /// This runtime's identity (default: hostname and process id).
    pub identity: Option<String>,
    /// Label this runtime's own pod `bosun.dev/leader: "true"` while it leads (and
    /// remove the label otherwise), so that a Service can send the sidecars to the
    /// leader, the only replica that delivers pod-commands. The pod is `POD_NAME`
    /// (downward API) in the service account's namespace.
    pub label_pod: bool,
}

impl Default for LeaderElection {
    fn default() -> Self {
        LeaderElection {
            enabled: false,
            namespace: "default".to_owned(),
            name: "bosun-runtime".to_owned(),
            lease_seconds: 15,
            identity: None,
            label_pod: false,
        }
    }
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// It could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It is not valid YAML for this schema.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the location.
        message: String,
    },
}

impl Config {
    /// Reads a YAML config file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| Error::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses YAML config text.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_errors() {
        let err = Config::parse("resyncSecond: 10\n").expect_err("typo");
        assert!(err.contains("resyncSecond"), "{err}");
        let ok = Config::parse("resyncSeconds: 10\nqueue:\n  concurrency: 2\n").expect("valid");
        assert_eq!((ok.resync_seconds, ok.queue.concurrency), (10, 2));
        assert!(Config::parse("").is_ok());
    }

    #[test]
    fn the_readme_guardrails_example_is_a_valid_config() {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("## What the command pipe lets through")
            .nth(1)
            .expect("README has the section");
        let yaml = section
            .split("```yaml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a yaml block");
        let config = Config::parse(yaml).expect("the README example parses");
        let g = config.guardrails;
        assert!(g.validate().is_ok());
        assert_eq!(
            g.plugins["remediation"].destructive.map(|d| d.cooldown),
            Some(Duration::from_secs(300))
        );
        assert_eq!(g.namespaces["batch"].max_unavailable, Some(None));
    }
}
