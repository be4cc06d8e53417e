//! The runtime's end of the sidecar pipe: a gRPC server sidecars connect to, the
//! registry of connected sidecars, pod-agent plugin assignment by the plugins' Pod
//! subscriptions, and delivery of pod-commands.
//!
//! Delivery is at least once, in order per pod: a pod-command taken from the command
//! pipe is journaled on disk, sent when its pod's sidecar is connected, sent again when
//! not acknowledged in time or when the sidecar reconnects, and finished when its
//! outcome arrives or its time to live runs out. The journal survives a runtime restart,
//! and command ids are unique across restarts, so the sidecar's deduplication by id
//! makes a redelivered command answer with its first outcome instead of running twice.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bosun_host::contract::{ObjectRef, PodCommand};
use bosun_host::selector::Selector;
use bosun_host::{Registry, World};
use bosun_pipe::pipe_server::{Pipe as PipeService, PipeServer};
use bosun_pipe::{
    Assignment, Command, FetchChunk, FetchRequest, PluginAssignment, RuntimeMessage,
    SidecarMessage, Welcome, runtime_message, sidecar_message,
};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::config;
use crate::informer::{Informers, Kind};
use crate::pipe::{Pipe, PodDelivery};

/// The sidecar pipe could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file in the data directory is unusable.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate could not be made.
    #[error("sidecar pipe TLS: {0}")]
    Tls(String),
    /// The address could not be bound.
    #[error("sidecar pipe {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

type PodKey = (String, String);

/// The pod annotation naming pod-agent plugins the pod runs (comma-separated), besides
/// those whose `v1 Pod` subscription matches it.
pub const PLUGINS_ANNOTATION: &str = "sidecar.bosun.dev/plugins";

/// A PEM certificate and its PEM key.
pub type Pem = (String, String);

struct Pending {
    delivery: PodDelivery,
    queued_ms: u64,
    sent: Option<Instant>,
    acked: bool,
}

struct Conn {
    id: u64,
    uid: String,
    tx: mpsc::Sender<Result<RuntimeMessage, Status>>,
    assigned: Option<String>,
    plugins: BTreeMap<String, String>,
    errors: BTreeMap<String, String>,
    probes: BTreeMap<String, (bool, String)>,
    since: SystemTime,
}

#[derive(Default)]
struct State {
    conns: HashMap<PodKey, Conn>,
    outbox: HashMap<PodKey, VecDeque<Pending>>,
    next_conn: u64,
}

/// One connected sidecar, as status pages show it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarStatus {
    /// `namespace/pod`.
    pub pod: String,
    /// The pod's uid.
    pub uid: String,
    /// Plugins it runs (name → digest), as it reported them.
    pub plugins: BTreeMap<String, String>,
    /// Plugins it could not install (name → why).
    pub errors: BTreeMap<String, String>,
    /// Last probe answers it reported (`kind/plugin` → healthy).
    pub probes: BTreeMap<String, bool>,
    /// Pod-commands waiting for it.
    pub waiting: usize,
    /// Connected since (unix ms).
    pub since_ms: u64,
}

/// The registry of sidecars and the pod-command delivery.
pub struct Sidecars {
    runtime_id: String,
    secret: Vec<u8>,
    auth: config::SidecarAuth,
    audience: String,
    client: kube::Client,
    registry: Arc<Registry>,
    informers: Arc<Informers>,
    pipe: Arc<Pipe>,
    state: Mutex<State>,
    journal: Mutex<Journal>,
    ttl: Duration,
    resend: Duration,
    wake: tokio::sync::Notify,
    ca_file: Option<PathBuf>,
    pump: Mutex<Option<tokio::task::JoinHandle<()>>>,
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Sidecars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sidecars")
            .field("runtime_id", &self.runtime_id)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    bosun_host::host::clock::Clock::now_ms(&bosun_host::host::clock::System)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::File {
        path: path.display().to_string(),
        source,
    }
}

/// The secret embedded-mode tokens are signed with: made once, kept in the data
/// directory, so sidecars keep their tokens across runtime restarts.
fn load_secret(dir: &Path) -> Result<Vec<u8>, Error> {
    let path = dir.join("pipe-secret");
    if let Ok(s) = std::fs::read(&path)
        && s.len() >= 32
    {
        return Ok(s);
    }
    let secret: Vec<u8> = (0..32).map(|_| fastrand::u8(..)).collect();
    // fastrand is not a CSPRNG: mix in the process's randomised hasher state and time.
    let mut mixed = Vec::with_capacity(64);
    mixed.extend_from_slice(&secret);
    for _ in 0..4 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        mixed.extend_from_slice(&h.finish().to_le_bytes());
    }
    let secret = bosun_pipe::digest(&mixed).into_bytes();
    std::fs::write(&path, &secret).map_err(io_err(&path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(secret)
}

/// A certificate and key for the pipe, made once and kept.
fn load_tls(dir: &Path, names: &[String]) -> Result<(String, String, PathBuf), Error> {
    let tls = dir.join("pipe-tls");
    let (cert, key) = (tls.join("ca.pem"), tls.join("key.pem"));
    if let (Ok(c), Ok(k)) = (
        std::fs::read_to_string(&cert),
        std::fs::read_to_string(&key),
    ) {
        return Ok((c, k, cert));
    }
    std::fs::create_dir_all(&tls).map_err(io_err(&tls))?;
    let mut sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    sans.extend(names.iter().cloned());
    let made = rcgen::generate_simple_self_signed(sans).map_err(|e| Error::Tls(e.to_string()))?;
    let (c, k) = (made.cert.pem(), made.signing_key.serialize_pem());
    std::fs::write(&key, &k).map_err(io_err(&key))?;
    std::fs::write(&cert, &c).map_err(io_err(&cert))?;
    Ok((c, k, cert))
}

impl Sidecars {
    /// Sets up the pipe's state in `data_dir` (secret, journal, TLS material).
    pub fn new(
        data_dir: &Path,
        config: &config::Sidecars,
        client: kube::Client,
        registry: Arc<Registry>,
        informers: Arc<Informers>,
        pipe: Arc<Pipe>,
    ) -> Result<(Arc<Self>, Option<Pem>), Error> {
        let secret = load_secret(data_dir)?;
        let (journal, pending) = Journal::open(&data_dir.join("pod-commands.jsonl"))?;
        let tls = if config.tls {
            Some(load_tls(data_dir, &config.tls_names)?)
        } else {
            None
        };
        let mut state = State::default();
        for (delivery, queued_ms) in pending {
            let key = (
                delivery.command.namespace.clone(),
                delivery.command.pod.clone(),
            );
            state.outbox.entry(key).or_default().push_back(Pending {
                delivery,
                queued_ms,
                sent: None,
                acked: false,
            });
        }
        informers.watch(Kind::new("v1", "Pod"));
        let pipe_for_hook = pipe.clone();
        let sidecars = Arc::new(Sidecars {
            runtime_id: format!("{:016x}", fastrand::u64(..)),
            secret,
            auth: config.auth,
            audience: config.token_audience.clone(),
            client,
            registry,
            informers,
            pipe,
            state: Mutex::new(state),
            journal: Mutex::new(journal),
            ttl: Duration::from_secs(config.command_ttl_seconds.max(1)),
            resend: Duration::from_millis(config.resend_ms.max(100)),
            wake: tokio::sync::Notify::new(),
            ca_file: tls.as_ref().map(|t| t.2.clone()),
            pump: Mutex::default(),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        {
            let weak = Arc::downgrade(&sidecars);
            pipe_for_hook.on_pod_command(Box::new(move || {
                if let Some(s) = weak.upgrade() {
                    s.wake.notify_one();
                }
            }));
        }
        Ok((sidecars, tls.map(|(c, k, _)| (c, k))))
    }

    /// The token the sidecar of `namespace/pod` (uid `uid`) presents in embedded mode.
    pub fn issue_token(&self, namespace: &str, pod: &str, uid: &str) -> String {
        bosun_pipe::pod_token(&self.secret, namespace, pod, uid)
    }

    /// The CA file sidecars must trust (with TLS on).
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// Connected sidecars.
    pub fn status(&self) -> Vec<SidecarStatus> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<SidecarStatus> = state
            .conns
            .iter()
            .map(|((ns, pod), c)| SidecarStatus {
                pod: format!("{ns}/{pod}"),
                uid: c.uid.clone(),
                plugins: c.plugins.clone(),
                errors: c.errors.clone(),
                probes: c.probes.iter().map(|(k, (h, _))| (k.clone(), *h)).collect(),
                waiting: state
                    .outbox
                    .get(&(ns.clone(), pod.clone()))
                    .map_or(0, VecDeque::len),
                since_ms: c
                    .since
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0)),
            })
            .collect();
        list.sort_by(|a, b| a.pod.cmp(&b.pod));
        list
    }

    /// How many sidecars are connected.
    pub fn connected(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .conns
            .len()
    }

    /// Pod-commands not yet finished (waiting, sent, or acknowledged without outcome).
    pub fn in_flight(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .outbox
            .values()
            .map(VecDeque::len)
            .sum()
    }

    /// Serves the pipe on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener, tls: Option<Pem>) {
        let mut builder = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(15)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)));
        if let Some((cert, key)) = tls {
            match builder.tls_config(
                tonic::transport::ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(cert, key)),
            ) {
                Ok(b) => builder = b,
                Err(e) => {
                    tracing::error!(error = %e, "sidecar pipe TLS configuration refused; not serving");
                    return;
                }
            }
        }
        let service = PipeServer::new(Service(self.clone()))
            .max_decoding_message_size(bosun_pipe::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(bosun_pipe::MAX_MESSAGE_BYTES);
        *self.pump.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(tokio::spawn(self.clone().pump()));
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        if let Err(e) = builder
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!(error = %e, "sidecar pipe stopped");
        }
    }

    /// Stops delivering and ends every sidecar's stream with a drain (the runtime is
    /// going away); sidecars reconnect to whichever runtime answers next. Commands not
    /// finished stay in the journal for the next runtime.
    pub fn close(&self, reason: &str) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(p) = self
            .pump
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            p.abort();
        }
        let conns: Vec<Conn> = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.conns.drain().map(|(_, c)| c).collect()
        };
        for c in conns {
            let _ = c.tx.try_send(Ok(RuntimeMessage {
                body: Some(runtime_message::Body::Drain(bosun_pipe::Drain {
                    reason: reason.to_owned(),
                })),
            }));
        }
        self.journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sync();
    }

    /// Moves pod-commands from the command pipe into per-pod outboxes, sends them,
    /// resends the unacknowledged, expires the old, refreshes assignments.
    async fn pump(self: Arc<Self>) {
        let mut last_assign = Instant::now() - Duration::from_secs(1);
        loop {
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            self.take_new();
            self.deliver();
            if last_assign.elapsed() >= Duration::from_millis(500) {
                last_assign = Instant::now();
                self.assign_all();
            }
        }
    }

    fn take_new(&self) {
        let new = self.pipe.take_all_pod_commands();
        if new.is_empty() {
            return;
        }
        let at = now_ms();
        {
            let mut journal = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
            for d in &new {
                journal.queued(d, at);
            }
            journal.sync();
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        for delivery in new {
            let key = (
                delivery.command.namespace.clone(),
                delivery.command.pod.clone(),
            );
            state.outbox.entry(key).or_default().push_back(Pending {
                delivery,
                queued_ms: at,
                sent: None,
                acked: false,
            });
        }
    }

    fn deliver(&self) {
        let now = now_ms();
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let mut expired = Vec::new();
        {
            let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let state = &mut *guard;
            for (key, queue) in &mut state.outbox {
                queue.retain(|p| {
                    let old = now.saturating_sub(p.queued_ms) > ttl_ms && !p.acked;
                    if old {
                        expired.push(p.delivery.clone());
                    }
                    !old
                });
                let Some(conn) = state.conns.get(key) else {
                    continue;
                };
                for p in queue.iter_mut() {
                    let due = match p.sent {
                        None => true,
                        Some(at) => !p.acked && at.elapsed() >= self.resend,
                    };
                    if !due {
                        continue;
                    }
                    let message = RuntimeMessage {
                        body: Some(runtime_message::Body::Command(Command {
                            id: p.delivery.id,
                            plugin: p.delivery.command.plugin.clone(),
                            payload: p.delivery.command.payload.clone(),
                        })),
                    };
                    if conn.tx.try_send(Ok(message)).is_err() {
                        // Full or closed: try again on the next round, in order.
                        break;
                    }
                    p.sent = Some(Instant::now());
                }
            }
            state.outbox.retain(|_, q| !q.is_empty());
        }
        for d in expired {
            self.finish(
                &d,
                "",
                Err(format!(
                    "expired: the sidecar of {}/{} did not take it within {} s",
                    d.command.namespace,
                    d.command.pod,
                    self.ttl.as_secs()
                )),
            );
        }
    }

    fn finish(&self, delivery: &PodDelivery, revision: &str, result: Result<String, String>) {
        {
            let mut journal = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
            journal.done(delivery.id);
        }
        self.pipe.pod_command_done(delivery, revision, result);
    }

    /// The pod-agent plugins `pod` should run: those with a Pod subscription matching
    /// its namespace and labels. `None` while the pod is not in the cache.
    fn plugins_for(&self, namespace: &str, pod: &str) -> Option<Vec<PluginAssignment>> {
        let object = self
            .informers
            .get(&ObjectRef::namespaced("v1", "Pod", namespace, pod))?;
        let value: serde_json::Value = serde_json::from_str(&object).ok()?;
        let labels: BTreeMap<String, String> =
            serde_json::from_value(value["metadata"]["labels"].clone()).unwrap_or_default();
        // The pod may name the pod-agent plugins it wants (what sidecar injection sets).
        let named: Vec<&str> = value["metadata"]["annotations"][PLUGINS_ANNOTATION]
            .as_str()
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let mut out = Vec::new();
        for name in self.registry.names() {
            let Some(r) = self.registry.current(&name) else {
                continue;
            };
            if r.info().world != World::PodAgent {
                continue;
            }
            let wanted = named.contains(&name.as_str())
                || r.metadata().subscriptions.iter().any(|s| {
                    s.api_version == "v1"
                        && s.kind == "Pod"
                        && s.namespace.as_deref().is_none_or(|n| n == namespace)
                        && s.label_selector.as_deref().is_none_or(|l| {
                            Selector::parse(l).is_ok_and(|sel| sel.matches(&labels))
                        })
                });
            if wanted {
                out.push(PluginAssignment {
                    name,
                    digest: r.digest().to_owned(),
                    config: r.config().to_owned(),
                    size: r.bytes().len() as u64,
                });
            }
        }
        Some(out)
    }

    fn assign_all(&self) {
        let keys: Vec<PodKey> = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.conns.keys().cloned().collect()
        };
        for key in keys {
            self.assign(&key);
        }
    }

    fn assign(&self, key: &PodKey) {
        let Some(plugins) = self.plugins_for(&key.0, &key.1) else {
            return;
        };
        let fingerprint: String = plugins
            .iter()
            .map(|p| format!("{}@{}#{}\n", p.name, p.digest, p.config))
            .collect();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(conn) = state.conns.get_mut(key) else {
            return;
        };
        if conn.assigned.as_deref() == Some(fingerprint.as_str()) {
            return;
        }
        let message = RuntimeMessage {
            body: Some(runtime_message::Body::Assignment(Assignment { plugins })),
        };
        if conn.tx.try_send(Ok(message)).is_ok() {
            conn.assigned = Some(fingerprint);
        }
    }

    async fn authenticate(&self, token: &str, hello: &bosun_pipe::Hello) -> Result<(), Status> {
        if self.auth == config::SidecarAuth::TokenReview {
            return self.token_review(token, hello).await;
        }
        if !bosun_pipe::token_matches(
            &self.secret,
            token,
            &hello.namespace,
            &hello.pod,
            &hello.uid,
        ) {
            return Err(Status::unauthenticated(format!(
                "the token does not belong to pod {}/{} (uid {})",
                hello.namespace, hello.pod, hello.uid
            )));
        }
        // The pod must still be the one the token was issued for.
        if let Some(object) = self.informers.get(&ObjectRef::namespaced(
            "v1",
            "Pod",
            &hello.namespace,
            &hello.pod,
        )) && let Ok(v) = serde_json::from_str::<serde_json::Value>(&object)
            && v["metadata"]["uid"]
                .as_str()
                .is_some_and(|u| u != hello.uid)
        {
            return Err(Status::permission_denied(format!(
                "pod {}/{} has another uid than {}: the sidecar belongs to a deleted pod",
                hello.namespace, hello.pod, hello.uid
            )));
        }
        Ok(())
    }

    /// Asks the API server whose token this is (the pod's projected service-account
    /// token carries the pod's name and uid).
    async fn token_review(&self, token: &str, hello: &bosun_pipe::Hello) -> Result<(), Status> {
        use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..Default::default()
        };
        let api: kube::Api<TokenReview> = kube::Api::all(self.client.clone());
        let reviewed = api
            .create(&kube::api::PostParams::default(), &review)
            .await
            .map_err(|e| {
                Status::unavailable(format!("TokenReview failed: {e}; the sidecar will retry"))
            })?;
        check_review(reviewed.status.as_ref(), hello)
    }

    fn received(&self, key: &PodKey, conn_id: u64, message: SidecarMessage) {
        // After close, this runtime records nothing more: the next one redelivers what
        // is unfinished and the sidecar answers it from memory.
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let Some(body) = message.body else {
            return;
        };
        match body {
            sidecar_message::Body::Hello(_) => {}
            sidecar_message::Body::Ack(a) => {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(p) = state
                    .outbox
                    .get_mut(key)
                    .and_then(|q| q.iter_mut().find(|p| p.delivery.id == a.id))
                {
                    p.acked = true;
                }
            }
            sidecar_message::Body::Outcome(o) => {
                let delivery = {
                    let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                    state.outbox.get_mut(key).and_then(|q| {
                        let i = q.iter().position(|p| p.delivery.id == o.id)?;
                        q.remove(i).map(|p| p.delivery)
                    })
                };
                // An outcome for an id already finished (a duplicate) changes nothing.
                if let Some(d) = delivery {
                    let result = if o.ok { Ok(o.message) } else { Err(o.message) };
                    self.finish(&d, &o.revision, result);
                }
            }
            sidecar_message::Body::Probe(p) => {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(c) = state.conns.get_mut(key).filter(|c| c.id == conn_id) {
                    c.probes
                        .insert(format!("{}/{}", p.kind, p.plugin), (p.healthy, p.message));
                }
            }
            sidecar_message::Body::PluginLoaded(l) => {
                tracing::info!(pod = %format!("{}/{}", key.0, key.1), plugin = %l.plugin, digest = %bosun_host::host::log::short(&l.digest), micros = l.load_micros, "sidecar plugin loaded");
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(c) = state.conns.get_mut(key).filter(|c| c.id == conn_id) {
                    c.errors.remove(&l.plugin);
                    c.plugins.insert(l.plugin, l.digest);
                }
            }
            sidecar_message::Body::PluginError(e) => {
                tracing::warn!(pod = %format!("{}/{}", key.0, key.1), plugin = %e.plugin, "sidecar could not install plugin: {}", e.message);
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(c) = state.conns.get_mut(key).filter(|c| c.id == conn_id) {
                    c.errors.insert(e.plugin, e.message);
                }
            }
        }
    }
}

/// Whether a TokenReview's answer proves the token belongs to the pod in `hello`.
fn check_review(
    status: Option<&k8s_openapi::api::authentication::v1::TokenReviewStatus>,
    hello: &bosun_pipe::Hello,
) -> Result<(), Status> {
    let Some(status) = status.filter(|s| s.authenticated == Some(true)) else {
        let why = status.and_then(|s| s.error.clone()).unwrap_or_default();
        return Err(Status::unauthenticated(format!(
            "the token was not accepted by the API server{}",
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        )));
    };
    let user = status.user.clone().unwrap_or_default();
    let extra = user.extra.unwrap_or_default();
    let one = |k: &str| {
        extra
            .get(k)
            .and_then(|v| v.first())
            .cloned()
            .unwrap_or_default()
    };
    let (pod, uid) = (
        one("authentication.kubernetes.io/pod-name"),
        one("authentication.kubernetes.io/pod-uid"),
    );
    let namespace = user
        .username
        .as_deref()
        .and_then(|u| u.strip_prefix("system:serviceaccount:"))
        .and_then(|r| r.split(':').next())
        .unwrap_or_default()
        .to_owned();
    if pod.is_empty() {
        return Err(Status::permission_denied(
            "the token is not bound to a pod: mount a projected service-account token",
        ));
    }
    if (namespace.as_str(), pod.as_str(), uid.as_str())
        != (
            hello.namespace.as_str(),
            hello.pod.as_str(),
            hello.uid.as_str(),
        )
    {
        return Err(Status::permission_denied(format!(
            "the token belongs to pod {namespace}/{pod} (uid {uid}), not {}/{} (uid {})",
            hello.namespace, hello.pod, hello.uid
        )));
    }
    Ok(())
}

struct Service(Arc<Sidecars>);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl PipeService for Service {
    type SessionStream = BoxStream<RuntimeMessage>;
    type FetchStream = BoxStream<FetchChunk>;

    async fn session(
        &self,
        request: Request<Streaming<SidecarMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let sidecars = self.0.clone();
        let token = request
            .metadata()
            .get(bosun_pipe::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned)
            .ok_or_else(|| Status::unauthenticated("no bearer token in `authorization`"))?;
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(Duration::from_secs(10), inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no hello within 10 s"))??;
        let Some(SidecarMessage {
            body: Some(sidecar_message::Body::Hello(hello)),
        }) = first
        else {
            return Err(Status::invalid_argument(
                "the first message must be a hello",
            ));
        };
        if sidecars.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Status::unavailable("the runtime is shutting down"));
        }
        sidecars.authenticate(&token, &hello).await?;
        let key: PodKey = (hello.namespace.clone(), hello.pod.clone());
        let _span =
            tracing::info_span!("bosun.sidecars.session", pod = %format!("{}/{}", key.0, key.1))
                .entered();
        let (tx, rx) = mpsc::channel(1024);
        let welcome = RuntimeMessage {
            body: Some(runtime_message::Body::Welcome(Welcome {
                runtime_id: sidecars.runtime_id.clone(),
                heartbeat_ms: 15_000,
            })),
        };
        let _ = tx.try_send(Ok(welcome));
        let conn_id = {
            let mut state = sidecars
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state.next_conn += 1;
            let id = state.next_conn;
            state.conns.insert(
                key.clone(),
                Conn {
                    id,
                    uid: hello.uid.clone(),
                    tx,
                    assigned: None,
                    plugins: hello
                        .plugins
                        .iter()
                        .map(|p| (p.name.clone(), p.digest.clone()))
                        .collect(),
                    errors: BTreeMap::new(),
                    probes: BTreeMap::new(),
                    since: SystemTime::now(),
                },
            );
            // A new connection: whatever was sent on the old one is sent again.
            if let Some(q) = state.outbox.get_mut(&key) {
                for p in q.iter_mut() {
                    p.sent = None;
                    p.acked = false;
                }
            }
            id
        };
        tracing::info!(pod = %format!("{}/{}", key.0, key.1), version = %hello.sidecar_version, plugins = hello.plugins.len(), "sidecar connected");
        sidecars.assign(&key);
        sidecars.wake.notify_one();
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(m)) => sidecars.received(&key, conn_id, m),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::info!(pod = %format!("{}/{}", key.0, key.1), error = %e, "sidecar stream ended");
                        break;
                    }
                }
            }
            let mut state = sidecars
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if state.conns.get(&key).is_some_and(|c| c.id == conn_id) {
                state.conns.remove(&key);
                tracing::info!(pod = %format!("{}/{}", key.0, key.1), "sidecar disconnected");
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch(
        &self,
        request: Request<FetchRequest>,
    ) -> Result<Response<Self::FetchStream>, Status> {
        let digest = request.into_inner().digest;
        let sidecars = &self.0;
        let bytes = sidecars
            .registry
            .names()
            .into_iter()
            .filter_map(|n| sidecars.registry.current(&n))
            .find(|r| r.digest() == digest && r.info().world == World::PodAgent)
            .map(|r| r.bytes().clone())
            .ok_or_else(|| Status::not_found(format!("no pod-agent revision {digest}")))?;
        let size = bytes.len() as u64;
        let chunks: Vec<Result<FetchChunk, Status>> = bytes
            .chunks(bosun_pipe::CHUNK_BYTES)
            .enumerate()
            .map(|(i, c)| {
                Ok(FetchChunk {
                    data: c.to_vec(),
                    size: if i == 0 { size } else { 0 },
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
}

/// The on-disk record of pod-commands taken from the pipe and not yet finished.
struct Journal {
    path: PathBuf,
    file: Option<std::fs::File>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Queued {
    id: u64,
    plugin: String,
    key: Option<String>,
    target: Option<ObjectRef>,
    command: PodCommand,
    at: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Line {
    Queued(Box<Queued>),
    Done(u64),
}

impl Journal {
    /// Opens the journal, returns the unfinished commands and compacts the file.
    fn open(path: &Path) -> Result<(Self, Vec<(PodDelivery, u64)>), Error> {
        let mut pending: Vec<Queued> = Vec::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                // A torn last line (a crash mid-write) is skipped.
                match serde_json::from_str::<Line>(line) {
                    Ok(Line::Queued(q)) => pending.push(*q),
                    Ok(Line::Done(id)) => pending.retain(|q| q.id != id),
                    Err(_) => {}
                }
            }
        }
        let tmp = path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
            for q in &pending {
                let line = serde_json::to_string(&Line::Queued(Box::new(Queued {
                    id: q.id,
                    plugin: q.plugin.clone(),
                    key: q.key.clone(),
                    target: q.target.clone(),
                    command: q.command.clone(),
                    at: q.at,
                })))
                .unwrap_or_default();
                writeln!(f, "{line}").map_err(io_err(&tmp))?;
            }
            f.sync_all().map_err(io_err(&tmp))?;
        }
        std::fs::rename(&tmp, path).map_err(io_err(path))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        if !pending.is_empty() {
            tracing::info!(
                count = pending.len(),
                "pod-commands from before the restart will be delivered"
            );
        }
        let deliveries = pending
            .into_iter()
            .map(|q| {
                (
                    PodDelivery {
                        id: q.id,
                        plugin: Arc::from(q.plugin.as_str()),
                        key: q.key,
                        target: q.target,
                        command: q.command,
                    },
                    q.at,
                )
            })
            .collect();
        Ok((
            Journal {
                path: path.to_owned(),
                file: Some(file),
            },
            deliveries,
        ))
    }

    fn write(&mut self, line: &Line) {
        let Some(f) = self.file.as_mut() else {
            return;
        };
        let text = serde_json::to_string(line).unwrap_or_default();
        if let Err(e) = writeln!(f, "{text}") {
            tracing::error!(file = %self.path.display(), error = %e, "cannot write the pod-command journal");
        }
    }

    fn queued(&mut self, d: &PodDelivery, at: u64) {
        self.write(&Line::Queued(Box::new(Queued {
            id: d.id,
            plugin: d.plugin.to_string(),
            key: d.key.clone(),
            target: d.target.clone(),
            command: d.command.clone(),
            at,
        })));
    }

    fn done(&mut self, id: u64) {
        self.write(&Line::Done(id));
    }

    fn sync(&mut self) {
        if let Some(f) = self.file.as_mut()
            && let Err(e) = f.sync_data()
        {
            tracing::error!(file = %self.path.display(), error = %e, "cannot sync the pod-command journal");
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo};

    use super::*;

    fn hello() -> bosun_pipe::Hello {
        bosun_pipe::Hello {
            namespace: "demo".into(),
            pod: "web-0".into(),
            uid: "u1".into(),
            ..Default::default()
        }
    }

    fn review(authenticated: bool, user: &str, pod: &str, uid: &str) -> TokenReviewStatus {
        let mut extra = std::collections::BTreeMap::new();
        if !pod.is_empty() {
            extra.insert(
                "authentication.kubernetes.io/pod-name".to_owned(),
                vec![pod.to_owned()],
            );
            extra.insert(
                "authentication.kubernetes.io/pod-uid".to_owned(),
                vec![uid.to_owned()],
            );
        }
        TokenReviewStatus {
            authenticated: Some(authenticated),
            user: Some(UserInfo {
                username: Some(user.to_owned()),
                extra: Some(extra),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_token_review_must_name_the_claimed_pod() {
        let sa = "system:serviceaccount:demo:web";
        assert!(check_review(Some(&review(true, sa, "web-0", "u1")), &hello()).is_ok());
        let e =
            check_review(Some(&review(true, sa, "web-1", "u9")), &hello()).expect_err("other pod");
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("belongs to pod demo/web-1"), "{e}");
        let e = check_review(
            Some(&review(
                true,
                "system:serviceaccount:other:web",
                "web-0",
                "u1",
            )),
            &hello(),
        )
        .expect_err("other namespace");
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let e = check_review(Some(&review(true, sa, "", "")), &hello()).expect_err("unbound");
        assert!(e.message().contains("projected"), "{e}");
        let e =
            check_review(Some(&review(false, sa, "web-0", "u1")), &hello()).expect_err("rejected");
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(check_review(None, &hello()).is_err());
    }

    #[test]
    fn the_journal_keeps_what_is_unfinished_across_opens() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j.jsonl");
        let (mut j, pending) = Journal::open(&path).expect("open");
        assert!(pending.is_empty());
        let d = |id| PodDelivery {
            id,
            plugin: Arc::from("p"),
            key: Some("Pod/ns/a".into()),
            target: Some(ObjectRef::namespaced("v1", "Pod", "ns", "a")),
            command: PodCommand {
                namespace: "ns".into(),
                pod: "a".into(),
                plugin: "agent".into(),
                payload: format!("{id}"),
            },
        };
        for id in 1..=3 {
            j.queued(&d(id), 5);
        }
        j.done(2);
        j.sync();
        drop(j);
        // A torn last line (a crash mid-write) is ignored.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"queued\":{\"id\":9"))
            .expect("tear");
        let (_, pending) = Journal::open(&path).expect("reopen");
        let ids: Vec<u64> = pending.iter().map(|(d, _)| d.id).collect();
        assert_eq!(ids, [1, 3]);
        assert_eq!(pending[1].0.command.payload, "3");
        assert_eq!(pending[1].0.target, d(3).target);
    }
}
