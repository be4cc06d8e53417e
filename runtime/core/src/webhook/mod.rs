//! The admission webhook: admission plugins answer the API server's AdmissionReviews.
//!
//! ```text
//! API server --HTTPS--> /admission/NAME --> route (stable | canary share; shadow beside)
//!                          --> plugin `review` (blocking pool, deadline, memory cap)
//!                          --> the answer checked (uid, allowed, status, JSON patch applies)
//! ```
//!
//! Every replica serves: a review is stateless and on the API server's hot path, so a
//! Service spreads it over all of them and a leader change drops none. Only the leader
//! writes the Mutating/ValidatingWebhookConfiguration objects (server-side apply, one
//! field manager; removed when no admission plugin is left). The CA and the serving
//! certificate are shared through a Secret (or the data directory, embedded mode); the
//! serving certificate is renewed when a third of its life is left, without a restart
//! and without dropping a request.

mod configuration;
mod review;
pub(crate) mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime};

use bosun_host::Registry;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::audit::AuditLog;
use crate::informer::Informers;
use crate::metrics::Metrics;
use crate::rollout::Rollouts;

/// The webhook's settings (`webhook:` in the runtime's configuration). Off unless
/// `listen` is set.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Where the HTTPS endpoint listens, e.g. `0.0.0.0:8443`.
    pub listen: Option<SocketAddr>,
    /// The base URL the API server calls (`https://HOST:PORT`; port `0` stands for the
    /// port `listen` was given); when unset, it calls `service`.
    pub url: Option<String>,
    /// The Service in front of the runtime's replicas.
    pub service: ServiceRef,
    /// Names the serving certificate is valid for, besides the Service's DNS names,
    /// `localhost` and `127.0.0.1`.
    pub names: Vec<String>,
    /// Keep the CA and the serving certificate in this Secret of the runtime's
    /// namespace (replicas share it); unset: in the data directory.
    pub secret: Option<String>,
    /// How long a serving certificate is valid; it is renewed with a third left.
    pub cert_validity_seconds: u64,
    /// The name of both webhook configuration objects.
    pub configuration_name: String,
    /// Namespaces never sent to a plugin, besides the runtime's own pod's.
    pub exclude_namespaces: Vec<String>,
    /// Reviews running at once per plugin; more wait (within their timeout).
    pub max_concurrent_reviews: usize,
}

/// A Service reference.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceRef {
    /// Default: the runtime's namespace.
    pub namespace: Option<String>,
    /// The Service's name.
    pub name: String,
    /// Its port.
    pub port: u16,
}

impl Default for ServiceRef {
    fn default() -> Self {
        ServiceRef {
            namespace: None,
            name: "bosun-webhook".to_owned(),
            port: 443,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: None,
            url: None,
            service: ServiceRef::default(),
            names: Vec::new(),
            secret: None,
            cert_validity_seconds: 365 * 24 * 3600,
            configuration_name: "bosun".to_owned(),
            exclude_namespaces: vec!["kube-system".to_owned()],
            max_concurrent_reviews: 16,
        }
    }
}

/// The webhook could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Certificates could not be made, kept or read.
    #[error("webhook TLS: {0}")]
    Tls(String),
    /// The address could not be bound.
    #[error("webhook {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A setting is wrong.
    #[error("webhook configuration: {0}")]
    Config(String),
}

/// What the webhook needs from the runtime.
#[derive(Clone)]
pub struct Parts {
    /// Plugins and their revisions.
    pub registry: Arc<Registry>,
    /// Canaries and shadows, and the Plugin objects' webhook settings.
    pub rollouts: Arc<Rollouts>,
    /// Resolves kinds to resources (default rules).
    pub informers: Arc<Informers>,
    /// Counters.
    pub metrics: Metrics,
    /// Denials and errors are audited.
    pub audit: Arc<AuditLog>,
    /// Writes the configurations and the Secret.
    pub client: kube::Client,
    /// Only the leader writes the configurations.
    pub leading: watch::Receiver<bool>,
    /// The runtime's namespace: where the Secret and the Service live.
    pub namespace: String,
    /// The namespace of the runtime's own pod, when it runs in one: never sent to a
    /// plugin (an admission plugin must not block the pods of the runtime serving it).
    pub pod_namespace: Option<String>,
    /// The data directory (certificates without a Secret).
    pub data_dir: std::path::PathBuf,
}

/// The running webhook.
pub struct Webhooks {
    config: Config,
    parts: Parts,
    addr: SocketAddr,
    names: Vec<String>,
    keep: tls::Keep,
    material: RwLock<tls::Material>,
    resolver: Arc<tls::Resolver>,
    permits: std::sync::Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Loads (or makes) the certificates, binds `config.listen` and starts serving,
    /// renewing and (on the leader) writing the configurations. The tasks returned stop
    /// all of it.
    pub async fn start(
        config: Config,
        parts: Parts,
    ) -> Result<(Arc<Self>, Vec<JoinHandle<()>>), Error> {
        let Some(listen) = config.listen else {
            return Err(Error::Config("webhook.listen is not set".to_owned()));
        };
        if config.cert_validity_seconds < 60 {
            return Err(Error::Config(format!(
                "certValiditySeconds {} is too short: use at least 60",
                config.cert_validity_seconds
            )));
        }
        if let Some(url) = &config.url
            && !url.starts_with("https://")
        {
            return Err(Error::Config(format!(
                "url {url:?} must start with https:// (the API server calls webhooks over TLS)"
            )));
        }
        let service_ns = config
            .service
            .namespace
            .clone()
            .unwrap_or_else(|| parts.namespace.clone());
        let svc = &config.service.name;
        let mut names = vec![
            format!("{svc}.{service_ns}.svc"),
            format!("{svc}.{service_ns}.svc.cluster.local"),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ];
        names.extend(config.names.iter().cloned());
        if let Some(host) = config.url.as_deref().and_then(url_host) {
            names.push(host);
        }
        names.dedup();
        let keep = match &config.secret {
            Some(name) => tls::Keep::Secret(
                Box::new(kube::Api::namespaced(
                    parts.client.clone(),
                    &parts.namespace,
                )),
                name.clone(),
            ),
            None => tls::Keep::Dir(parts.data_dir.join("webhook-tls")),
        };
        let validity = Duration::from_secs(config.cert_validity_seconds);
        let material = match keep.load().await? {
            Some(mut m) => {
                if tls::due(m.expires()?, validity, SystemTime::now()) {
                    tls::renew(&mut m, &names, validity)?;
                    keep.store(&m, false).await?
                } else {
                    m
                }
            }
            None => keep.store(&tls::make(&names, validity)?, true).await?,
        };
        let resolver = Arc::new(tls::Resolver::new(&material)?);
        let server = tls::server_config(resolver.clone())?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| Error::Listen {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: listen,
            source,
        })?;
        let mut config = config;
        // `https://127.0.0.1:0`: the port this endpoint was given.
        config.url = config.url.map(|u| with_bound_port(&u, addr.port()));
        let webhooks = Arc::new(Webhooks {
            config,
            parts,
            addr,
            names,
            keep,
            material: RwLock::new(material),
            resolver,
            permits: std::sync::Mutex::default(),
        });
        let tasks = vec![
            tokio::spawn(review::serve(listener, server, Arc::downgrade(&webhooks))),
            tokio::spawn(renew_loop(Arc::downgrade(&webhooks))),
            tokio::spawn(configuration::sync_loop(Arc::downgrade(&webhooks))),
        ];
        tracing::info!(addr = %addr, base = %webhooks.base(), "admission webhook serving");
        Ok((webhooks, tasks))
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the API server is told to call, without the plugin's path.
    pub fn base(&self) -> String {
        match &self.config.url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let ns = self.service_namespace();
                format!(
                    "https://{}.{ns}.svc:{}",
                    self.config.service.name, self.config.service.port
                )
            }
        }
    }

    fn service_namespace(&self) -> String {
        self.config
            .service
            .namespace
            .clone()
            .unwrap_or_else(|| self.parts.namespace.clone())
    }

    /// The CA's PEM: the configurations' caBundle.
    pub fn ca_pem(&self) -> String {
        self.material
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .ca_cert
            .clone()
    }

    /// When the serving certificate expires.
    pub fn cert_expires(&self) -> Option<SystemTime> {
        self.material
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .expires()
            .ok()
    }

    /// Renews the serving certificate now (it is otherwise renewed with a third of its
    /// life left), keeping the CA: requests in flight finish on the old one.
    pub async fn renew_now(&self) -> Result<(), Error> {
        let validity = Duration::from_secs(self.config.cert_validity_seconds);
        let mut m = self
            .material
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        tls::renew(&mut m, &self.names, validity)?;
        let m = self.keep.store(&m, false).await?;
        self.serve_material(m)
    }

    fn serve_material(&self, m: tls::Material) -> Result<(), Error> {
        self.resolver.swap(&m)?;
        *self
            .material
            .write()
            .unwrap_or_else(PoisonError::into_inner) = m;
        Ok(())
    }

    /// For `bosun status`: address, what the API server calls, certificate expiry and
    /// the admission plugins served.
    pub fn status(&self) -> serde_json::Value {
        let plugins: Vec<serde_json::Value> = self
            .admission_plugins()
            .into_iter()
            .map(|name| {
                let w = self.parts.rollouts.webhook(&name).unwrap_or_default();
                serde_json::json!({
                    "name": name,
                    "mutating": w.mutating,
                    "failurePolicy": match w.failure_policy {
                        Some(bosun_api::plugin::FailurePolicy::Fail) => "Fail",
                        _ => "Ignore",
                    },
                })
            })
            .collect();
        serde_json::json!({
            "address": self.addr.to_string(),
            "calledAt": self.base(),
            "certificateExpires": self.cert_expires().map(bosun_api::time::rfc3339_of),
            "plugins": plugins,
        })
    }

    /// The names of the admission plugins with a serving revision.
    fn admission_plugins(&self) -> Vec<String> {
        let registry = &self.parts.registry;
        let mut names: Vec<String> = registry
            .names()
            .into_iter()
            .filter(|n| {
                registry
                    .current(n)
                    .is_some_and(|r| r.info().world == bosun_host::World::Admission)
            })
            .collect();
        names.sort();
        names
    }

    fn permit(&self, plugin: &str) -> Arc<Semaphore> {
        self.permits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(plugin.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.max_concurrent_reviews.max(1))))
            .clone()
    }

    fn excluded(&self, namespace: &str) -> bool {
        self.parts.pod_namespace.as_deref() == Some(namespace)
            || self
                .config
                .exclude_namespaces
                .iter()
                .any(|n| n == namespace)
    }

    fn excluded_namespaces(&self) -> Vec<String> {
        let mut all: Vec<String> = self.parts.pod_namespace.iter().cloned().collect();
        all.extend(self.config.exclude_namespaces.iter().cloned());
        all.sort();
        all.dedup();
        all
    }
}

/// `url` with a port of `0` replaced by `port`.
fn with_bound_port(url: &str, port: u16) -> String {
    let Some(rest) = url.strip_prefix("https://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.strip_suffix(":0") {
        Some(host) => format!("https://{host}:{port}{path}"),
        None => url.to_owned(),
    }
}

/// The namespace of the pod this process runs in, from its service account.
pub fn pod_namespace() -> Option<String> {
    std::fs::read_to_string(crate::connect::service_account_dir().join("namespace"))
        .ok()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
}

fn url_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// Renews the serving certificate when due (checked every minute, or every tenth of
/// its life when that is shorter). With a Secret, a replica first reads what another
/// one may have renewed.
async fn renew_loop(webhooks: Weak<Webhooks>) {
    loop {
        let every = match webhooks.upgrade() {
            Some(w) => Duration::from_secs((w.config.cert_validity_seconds / 10).clamp(1, 60)),
            None => return,
        };
        tokio::time::sleep(every).await;
        let Some(w) = webhooks.upgrade() else {
            return;
        };
        let validity = Duration::from_secs(w.config.cert_validity_seconds);
        let due = |m: &tls::Material| {
            m.expires()
                .is_ok_and(|e| tls::due(e, validity, SystemTime::now()))
        };
        let current = w
            .material
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if !due(&current) {
            continue;
        }
        let result = async {
            if let Some(kept) = w.keep.load().await?
                && kept.ca_cert == current.ca_cert
                && !due(&kept)
            {
                return w.serve_material(kept);
            }
            w.renew_now().await
        }
        .await;
        match result {
            Ok(()) => tracing::info!(
                expires = ?w.cert_expires(), "renewed the webhook's serving certificate"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the webhook's serving certificate; retrying")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts() {
        assert_eq!(
            url_host("https://127.0.0.1:8443").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            url_host("https://hooks.example.com/x").as_deref(),
            Some("hooks.example.com")
        );
        assert_eq!(url_host("https://[::1]:8443/").as_deref(), Some("::1"));
        assert_eq!(url_host("http://x"), None);
        assert_eq!(
            with_bound_port("https://127.0.0.1:0", 8443),
            "https://127.0.0.1:8443"
        );
        assert_eq!(
            with_bound_port("https://127.0.0.1:0/x", 1),
            "https://127.0.0.1:1/x"
        );
        assert_eq!(with_bound_port("https://h:10", 1), "https://h:10");
    }
}
