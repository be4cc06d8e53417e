//! The runtime's end of the sidecar link: a gRPC server sidecars connect to, the
//! registry of connected sidecars, pod-agent plugin assignment by the plugins' Pod
//! subscriptions, and delivery of pod-commands.
//!
//! Delivery is at least once, in order per pod: a pod-command taken from the command
//! pipe is journaled on disk, sent when its pod's sidecar is connected, sent again when
//! not acknowledged in time or when the sidecar reconnects, and finished when its
//! outcome arrives or its time to live runs out. The journal survives a runtime restart,
//! and command ids are unique across restarts, so the sidecar's deduplication by id
//! makes a redelivered command answer with its first outcome instead of running twice.
//!
//! This module holds [`Sidecars`] and its state; each job has a module of its own:
//! `tls` (the link's certificate), `auth` (which pod a sidecar is), `assignment` (which
//! pod-agent plugins a pod runs), `service` (the gRPC service sidecars call),
//! `delivery` (pod-commands out, acks and outcomes back) and `journal` (pod-commands
//! on disk until they finish).

mod assignment;
mod auth;
mod delivery;
mod journal;
pub mod publish;
mod service;
pub mod tls;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bosun_host::Registry;
use bosun_link::{RuntimeMessage, runtime_message};
use tokio::sync::mpsc;
use tonic::Status;

use crate::config;
use crate::informer::{Informers, Kind};
use crate::pipe::{Pipe, PodDelivery};

pub use assignment::PLUGINS_ANNOTATION;
use journal::Journal;

/// The sidecar link could not start.
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
    #[error("sidecar link TLS: {0}")]
    Tls(String),
    /// The address could not be bound.
    #[error("sidecar link {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// `(namespace, pod)`.
type PodKey = (String, String);

/// A PEM certificate and its PEM key.
pub type Pem = (String, String);

/// A pod-command in its pod's outbox.
struct Pending {
    delivery: PodDelivery,
    queued_ms: u64,
    sent: Option<Instant>,
    acked: bool,
}

/// A connected sidecar: its stream and what it reported.
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

/// A revision's compiled code, made by the first sidecar that asks for it.
type CodeCell = Arc<tokio::sync::OnceCell<Arc<[u8]>>>;

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
    /// Pod-agent revisions' compiled code for sidecars, made once per digest however many
    /// sidecars ask at once.
    precompiled: Mutex<HashMap<String, CodeCell>>,
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

/// Creates (or truncates) `path` readable and writable by its owner only (0600): the
/// link's secret, its TLS key and the journal. An existing file's mode is tightened too.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(file)
    }
    #[cfg(not(unix))]
    options.open(path)
}

/// Writes `contents` to `path` with [`create_private`].
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = create_private(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

impl Sidecars {
    /// The runtime's compiled code of a pod-agent revision, for sidecars whose engine has
    /// the runtime's artifact key: made once per digest (from the compiled-code cache the
    /// load filled), shared by every sidecar that asks.
    pub(crate) async fn precompiled(
        &self,
        revision: Arc<bosun_host::Revision>,
    ) -> Result<Arc<[u8]>, Status> {
        let digest = revision.digest().to_owned();
        let cell = {
            let mut cells = self
                .precompiled
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Only current revisions' code is kept.
            let current: std::collections::HashSet<String> = self
                .registry
                .names()
                .into_iter()
                .filter_map(|n| self.registry.current(&n).map(|r| r.digest().to_owned()))
                .collect();
            cells.retain(|d, _| current.contains(d));
            cells.entry(digest.clone()).or_default().clone()
        };
        cell.get_or_try_init(|| async {
            let engine = self.registry.engine().clone();
            tokio::task::spawn_blocking(move || {
                let _span = tracing::info_span!("bosun.sidecars.precompile", digest = %bosun_host::host::log::short(revision.digest())).entered();
                let hex = revision.digest().trim_start_matches("sha256:");
                engine
                    .precompiled(revision.bytes(), hex)
                    .map(Arc::<[u8]>::from)
                    .map_err(|e| Status::internal(e.to_string()))
            })
            .await
            .map_err(|e| Status::internal(format!("precompiling {digest}: {e}")))?
        })
        .await
        .cloned()
    }

    /// Sets up the link's state in `data_dir` (secret, journal, TLS material).
    /// `shared`: the TLS material kept in a Secret (`tlsSecret`), loaded by the caller.
    pub fn new(
        data_dir: &Path,
        config: &config::Sidecars,
        client: kube::Client,
        registry: Arc<Registry>,
        informers: Arc<Informers>,
        pipe: Arc<Pipe>,
        shared: Option<tls::Tls>,
    ) -> Result<(Arc<Self>, Option<Pem>), Error> {
        let secret = auth::load_secret(data_dir)?;
        let (journal, pending) = Journal::open(&data_dir.join("pod-commands.jsonl"))?;
        let tls = match shared {
            Some(t) => Some(t),
            None if config.tls => Some(tls::load(data_dir, &config.tls_names)?),
            None => None,
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
            ca_file: tls.as_ref().map(|t| t.ca_file.clone()),
            pump: Mutex::default(),
            closed: std::sync::atomic::AtomicBool::new(false),
            precompiled: Mutex::default(),
        });
        {
            let weak = Arc::downgrade(&sidecars);
            pipe_for_hook.on_pod_command(Box::new(move || {
                if let Some(s) = weak.upgrade() {
                    s.wake.notify_one();
                }
            }));
        }
        Ok((sidecars, tls.map(|t| (t.cert, t.key))))
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
                body: Some(runtime_message::Body::Drain(bosun_link::Drain {
                    reason: reason.to_owned(),
                })),
            }));
        }
        self.journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sync();
    }
}
