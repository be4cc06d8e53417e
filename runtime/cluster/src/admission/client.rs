//! The webhook client: one HTTPS POST, verified against the configuration's `caBundle`,
//! to a URL or to a Service resolved through its Endpoints.
//!
//! Connections are kept alive and reused, as Go's `http.Transport` does for
//! kube-apiserver: a [`Pool`] keyed by the address dialled, the TLS server name and the
//! CA bundle keeps up to [`IDLE_PER_KEY`] idle connections each ([`IDLE_TOTAL`] in all)
//! for [`IDLE_TIMEOUT`]. A reused connection that turns out closed before the request
//! went out is discarded with the other idle connections of its key, and the call is
//! made once more on a fresh connection; a request that was sent is never sent again.

use crate::meta;
use crate::store::Store;
use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// Webhook answers over this size are refused (the API server's own body limit).
pub(crate) const MAX_RESPONSE: usize = crate::api::MAX_BODY;

/// Where a webhook is served.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// `clientConfig.url`: `host[:port]` and the path.
    Url {
        /// Host as written (a name or an IP address, IPv6 without brackets).
        host: String,
        /// Port, 443 by default.
        port: u16,
        /// Path, `/` when absent.
        path: String,
    },
    /// `clientConfig.service`.
    Service {
        /// Namespace of the Service.
        namespace: String,
        /// Name of the Service.
        name: String,
        /// Service port.
        port: u16,
        /// Path, `/` when absent.
        path: String,
    },
}

/// How to reach one webhook: its target and TLS settings (or why there are none).
#[derive(Clone)]
pub(crate) struct Client {
    pub target: Target,
    tls: Result<Arc<rustls::ClientConfig>, String>,
    /// The `caBundle` the TLS settings were made from: part of the pool's key.
    ca: Arc<[u8]>,
    pool: Pool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// From a validated `clientConfig`.
    pub(crate) fn new(
        cc: &k8s_openapi::api::admissionregistration::v1::WebhookClientConfig,
        pool: Pool,
    ) -> Self {
        let target = match (&cc.url, &cc.service) {
            (Some(url), _) => parse_url(url),
            (None, Some(s)) => Target::Service {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                port: s.port.and_then(|p| u16::try_from(p).ok()).unwrap_or(443),
                path: s
                    .path
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "/".into()),
            },
            (None, None) => Target::Url {
                host: String::new(),
                port: 443,
                path: "/".into(),
            },
        };
        let ca = cc.ca_bundle.as_ref().map(|b| b.0.as_slice()).unwrap_or(&[]);
        Self {
            target,
            tls: tls_config(ca),
            ca: Arc::from(ca),
            pool,
        }
    }

    /// The URL as kube-apiserver names it in errors (a Service by its DNS name).
    pub(crate) fn url(&self, timeout: Duration) -> String {
        let (host, port, path) = match &self.target {
            Target::Url { host, port, path } => (bracket(host), *port, path.as_str()),
            Target::Service {
                namespace,
                name,
                port,
                path,
            } => (format!("{name}.{namespace}.svc"), *port, path.as_str()),
        };
        let port = if port == 443 && matches!(self.target, Target::Url { .. }) {
            String::new()
        } else {
            format!(":{port}")
        };
        format!("https://{host}{port}{}", path_and_query(path, timeout))
    }

    /// POSTs `body` and returns the answer's body; the error is the reason the call
    /// failed, as `failed calling webhook "NAME": ...` continues it.
    pub(crate) async fn post(
        &self,
        store: &Store,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Bytes, String> {
        let url = self.url(timeout);
        let tls = self
            .tls
            .clone()
            .map_err(|e| format!("could not get REST client: {e}"))?;
        let fail = |why: String| format!("failed to call webhook: Post {url:?}: {why}");
        let call = async {
            let (dial, server_name, host_header, path) = self.resolve(store).await?;
            let key = Key {
                dial,
                server_name,
                ca: self.ca.clone(),
            };
            let body = Bytes::from(body);
            let mut req = hyper::Request::post(path_and_query(&path, timeout))
                .header(hyper::header::HOST, host_header)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header(hyper::header::ACCEPT, "application/json")
                .body(Full::new(body))
                .map_err(|e| e.to_string())?;
            let (mut conn, mut reused) = match self.pool.take(&key) {
                Some(conn) => (conn, true),
                None => (connect(&key, tls.clone()).await?, false),
            };
            let resp = loop {
                match conn.sender.try_send_request(req).await {
                    Ok(resp) => break resp,
                    Err(mut e) => match e.take_message() {
                        // The server closed an idle connection before the request went
                        // out: the others of its key are likely closed too.
                        Some(unsent) if reused => {
                            self.pool.clear(&key);
                            req = unsent;
                            conn = connect(&key, tls.clone()).await?;
                            reused = false;
                        }
                        _ => return Err(e.into_error().to_string()),
                    },
                }
            };
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        format!(
                            "the response body is larger than the limit of {MAX_RESPONSE} bytes"
                        )
                    } else {
                        e.to_string()
                    }
                })?
                .to_bytes();
            // The answer was read whole: the connection can carry the next call.
            self.pool.put(key, conn);
            if !status.is_success() {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(256)]).into_owned();
                return Err(format!(
                    "an error on the server ({text:?}) has prevented the request from succeeding (status {})",
                    status.as_u16()
                ));
            }
            Ok(bytes)
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(r) => r.map_err(fail),
            Err(_) => Err(fail("context deadline exceeded".into())),
        }
    }

    /// Where to dial, the TLS name to verify, the Host header and the path.
    async fn resolve(
        &self,
        store: &Store,
    ) -> Result<(Dial, ServerName<'static>, String, String), String> {
        match &self.target {
            Target::Url { host, port, path } => {
                let server_name =
                    ServerName::try_from(host.clone()).map_err(|e| format!("invalid host: {e}"))?;
                let dial = match host.parse::<std::net::IpAddr>() {
                    Ok(ip) => Dial::Addr(SocketAddr::new(ip, *port)),
                    Err(_) => Dial::Host(host.clone(), *port),
                };
                Ok((
                    dial,
                    server_name,
                    format!("{}:{port}", bracket(host)),
                    path.clone(),
                ))
            }
            Target::Service {
                namespace,
                name,
                port,
                path,
            } => {
                let addr = resolve_service(store, namespace, name, *port)?;
                let dns = format!("{name}.{namespace}.svc");
                let server_name =
                    ServerName::try_from(dns.clone()).map_err(|e| format!("invalid host: {e}"))?;
                Ok((
                    Dial::Addr(addr),
                    server_name,
                    format!("{dns}:{port}"),
                    path.clone(),
                ))
            }
        }
    }
}

/// Where a connection goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Dial {
    /// An address: a URL's IP address, or a Service's endpoint.
    Addr(SocketAddr),
    /// A URL's host name, looked up when dialling (as Go's transport does: a pooled
    /// connection is reused without a lookup).
    Host(String, u16),
}

/// What a pooled connection may be reused for: the same peer, verified the same way.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    dial: Dial,
    server_name: ServerName<'static>,
    ca: Arc<[u8]>,
}

/// An open HTTP/1.1 connection to a webhook.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    /// The task that drives the connection; closes it when the `Conn` is dropped.
    _driver: AbortOnDrop,
}

/// Opens a TLS connection to the key's peer.
async fn connect(key: &Key, tls: Arc<rustls::ClientConfig>) -> Result<Conn, String> {
    let addr = match &key.dial {
        Dial::Addr(addr) => *addr,
        Dial::Host(host, port) => tokio::net::lookup_host((host.as_str(), *port))
            .await
            .map_err(|e| format!("dial tcp: lookup {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("dial tcp: lookup {host}: no such host"))?,
    };
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                format!("dial tcp {addr}: connect: connection refused")
            }
            _ => format!("dial tcp {addr}: {e}"),
        })?;
    // Go's dialer sets TCP_NODELAY: a request is one write, not worth delaying.
    let _ = tcp.set_nodelay(true);
    let tls = tokio_rustls::TlsConnector::from(tls)
        .connect(key.server_name.clone(), tcp)
        .await
        .map_err(tls_error)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    let driver = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    Ok(Conn {
        sender,
        _driver: driver,
    })
}

/// Idle connections kept per key: client-go's `MaxIdleConnsPerHost`.
pub(crate) const IDLE_PER_KEY: usize = 25;
/// Idle connections kept in all; more are closed.
pub(crate) const IDLE_TOTAL: usize = 256;
/// An idle connection is closed after this: Go's `IdleConnTimeout`.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Keep-alive connections to webhooks, shared by every configuration of a cluster.
#[derive(Clone, Default)]
pub(crate) struct Pool {
    idle: Arc<Mutex<Idle>>,
}

#[derive(Default)]
struct Idle {
    /// By key, the most recently used last.
    conns: HashMap<Key, Vec<(Conn, Instant)>>,
    total: usize,
    /// Whether a task closes the connections that stay idle too long.
    reaping: bool,
}

impl Idle {
    /// Closes the connections idle since before `now - IDLE_TIMEOUT`; returns when the
    /// next one expires.
    fn expire(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        self.conns.retain(|_, list| {
            list.retain(|(_, since)| now.saturating_duration_since(*since) < IDLE_TIMEOUT);
            if let Some((_, oldest)) = list.first() {
                let at = *oldest + IDLE_TIMEOUT;
                next = Some(next.map_or(at, |n| n.min(at)));
            }
            !list.is_empty()
        });
        self.total = self.conns.values().map(Vec::len).sum();
        next
    }
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used idle connection to `key` that is still open.
    fn take(&self, key: &Key) -> Option<Conn> {
        let mut idle = self.lock();
        let now = Instant::now();
        let list = idle.conns.get_mut(key)?;
        let mut found = None;
        let mut dropped = 0;
        while let Some((conn, since)) = list.pop() {
            dropped += 1;
            if conn.sender.is_ready() && now.saturating_duration_since(since) < IDLE_TIMEOUT {
                found = Some(conn);
                break;
            }
        }
        if list.is_empty() {
            idle.conns.remove(key);
        }
        idle.total = idle.total.saturating_sub(dropped);
        found
    }

    /// Closes the idle connections to `key`.
    fn clear(&self, key: &Key) {
        let mut idle = self.lock();
        if let Some(list) = idle.conns.remove(key) {
            idle.total = idle.total.saturating_sub(list.len());
        }
    }

    /// Keeps `conn` for the next call to `key` once it is ready for one (at once after
    /// a whole answer was read, unless the server closes it).
    fn put(&self, key: Key, mut conn: Conn) {
        if conn.sender.is_ready() {
            keep(&self.idle, key, conn);
            return;
        }
        let pool = Arc::downgrade(&self.idle);
        tokio::spawn(async move {
            let ready = tokio::time::timeout(Duration::from_secs(1), conn.sender.ready()).await;
            if let (Ok(Ok(())), Some(idle)) = (ready, pool.upgrade()) {
                keep(&idle, key, conn);
            }
        });
    }
}

/// Adds a ready connection to the idle ones, unless there are enough.
fn keep(idle: &Arc<Mutex<Idle>>, key: Key, conn: Conn) {
    let mut guard = idle.lock().unwrap_or_else(|e| e.into_inner());
    let full = guard.total >= IDLE_TOTAL;
    let list = guard.conns.entry(key).or_default();
    if full || list.len() >= IDLE_PER_KEY {
        return;
    }
    list.push((conn, Instant::now()));
    guard.total += 1;
    if !guard.reaping {
        guard.reaping = true;
        tokio::spawn(reap(Arc::downgrade(idle)));
    }
}

/// Closes idle connections as they expire; ends when none is left (or the pool is gone).
async fn reap(pool: Weak<Mutex<Idle>>) {
    let mut next = Instant::now() + IDLE_TIMEOUT;
    loop {
        tokio::time::sleep_until(next).await;
        let Some(idle) = pool.upgrade() else {
            return;
        };
        let mut guard = idle.lock().unwrap_or_else(|e| e.into_inner());
        match guard.expire(Instant::now()) {
            Some(at) => next = at,
            None => {
                guard.reaping = false;
                return;
            }
        }
    }
}

/// Aborts the connection task when the call ends or is dropped (timed out).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// `PATH?timeout=Ns`, the deadline rounded up to whole seconds, as kube-apiserver sends it.
fn path_and_query(path: &str, timeout: Duration) -> String {
    let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    format!("{path}?timeout={secs}s")
}

fn parse_url(url: &str) -> Target {
    let uri = url.parse::<axum::http::Uri>().ok();
    let host = uri
        .as_ref()
        .and_then(|u| u.host())
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.as_ref().and_then(|u| u.port_u16()).unwrap_or(443);
    let path = uri
        .as_ref()
        .map(|u| u.path().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into());
    Target::Url { host, port, path }
}

fn tls_error(e: std::io::Error) -> String {
    let inner = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .cloned();
    match inner {
        Some(rustls::Error::InvalidCertificate(c)) => {
            format!("tls: failed to verify certificate: {c:?}")
        }
        Some(other) => format!("tls: {other}"),
        None => format!("tls: {e}"),
    }
}

/// The system's roots, for webhooks without a `caBundle`, loaded once.
fn native_roots() -> &'static rustls::RootCertStore {
    static ROOTS: OnceLock<rustls::RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        roots
    })
}

fn tls_config(ca_bundle: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = if ca_bundle.is_empty() {
        native_roots().clone()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_bundle) {
            let cert = cert.map_err(|e| format!("unable to load root certificates: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("unable to load root certificates: {e}"))?;
        }
        if roots.is_empty() {
            return Err(
                "unable to load root certificates: unable to parse bytes as PEM block".into(),
            );
        }
        roots
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A Service's port resolved as kube-apiserver's endpoint resolver does: the Service
/// port, then the Endpoints port of the same name (or of the Service's `targetPort`)
/// and the first ready address of that subset.
pub(crate) fn resolve_service(
    store: &Store,
    namespace: &str,
    name: &str,
    port: u16,
) -> Result<SocketAddr, String> {
    let get = |plural: &str| {
        store
            .resolve("", "v1", plural)
            .and_then(|rt| store.get(&rt, namespace, name).ok())
    };
    let svc = get("services").ok_or_else(|| format!("service \"{name}\" not found"))?;
    let kind = meta::str_at(&svc, "spec.type");
    if !matches!(kind, "" | "ClusterIP" | "NodePort" | "LoadBalancer") {
        return Err(format!("unsupported service type {kind:?}"));
    }
    let svc_port = meta::path(&svc, "spec.ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| p.get("port").and_then(Value::as_u64) == Some(u64::from(port)))
        .ok_or_else(|| format!("no service port {port} found for service \"{name}\""))?;
    let port_name = meta::str_at(svc_port, "name");
    let target = svc_port
        .get("targetPort")
        .and_then(Value::as_u64)
        .unwrap_or(u64::from(port));
    let eps = get("endpoints").ok_or_else(|| format!("endpoints \"{name}\" not found"))?;
    for subset in meta::path(&eps, "subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ports = subset.get("ports").and_then(Value::as_array);
        let Some(ep_port) = ports.into_iter().flatten().find_map(|p| {
            let n = p.get("port").and_then(Value::as_u64)?;
            let same_name = meta::str_at(p, "name") == port_name;
            (same_name || n == target).then_some(n)
        }) else {
            continue;
        };
        let ip = subset
            .get("addresses")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .map(|a| meta::str_at(a, "ip"));
        if let (Some(ip), Ok(p)) = (ip, u16::try_from(ep_port))
            && let Ok(ip) = ip.parse::<std::net::IpAddr>()
        {
            return Ok(SocketAddr::new(ip, p));
        }
    }
    Err(format!("service {namespace}/{name} has no endpoints"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_the_timeout_as_kube_apiserver_sends_it() {
        let c = Client {
            target: parse_url("https://127.0.0.1:8443/validate"),
            tls: Err("none".into()),
            ca: Arc::from(&[][..]),
            pool: Pool::default(),
        };
        assert_eq!(
            c.url(Duration::from_millis(1500)),
            "https://127.0.0.1:8443/validate?timeout=2s"
        );
        let c = Client {
            target: Target::Service {
                namespace: "ns".into(),
                name: "hook".into(),
                port: 443,
                path: "/".into(),
            },
            tls: Err("none".into()),
            ca: Arc::from(&[][..]),
            pool: Pool::default(),
        };
        assert_eq!(
            c.url(Duration::from_secs(10)),
            "https://hook.ns.svc:443/?timeout=10s"
        );
    }

    #[test]
    fn a_bad_ca_bundle_is_an_error_not_a_panic() {
        assert!(tls_config(b"garbage").is_err());
        assert!(
            tls_config(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err()
        );
    }
}
