//! The sidecar's end of the link: connect (with backoff and jitter), say hello, take
//! assignments and commands, answer with acks and outcomes; reconnect when cut off.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bosun_link::link_client::LinkClient;
use bosun_link::{
    Ack, FetchRequest, Hello, Outcome, PluginError, PluginLoaded, PluginRef, ProbeReport,
    RuntimeMessage, SidecarMessage, runtime_message, sidecar_message,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::agents::Agents;
use crate::config::Config;
use crate::executed::Executed;

/// The largest plugin the sidecar fetches.
const MAX_PLUGIN_BYTES: u64 = 64 * 1024 * 1024;

/// Why a session ended.
enum Ended {
    Shutdown,
    Closed,
}

/// Shared between the session loop and the probe server.
pub(crate) struct Session {
    config: Config,
    agents: Arc<Agents>,
    done: Mutex<Executed>,
    pub(crate) connected: AtomicBool,
    outbound: Mutex<Option<mpsc::Sender<SidecarMessage>>>,
    last_probe: Mutex<HashMap<(String, String), bool>>,
    pub(crate) executed: std::sync::atomic::AtomicU64,
    /// The runtime's engine key, from its Welcome.
    runtime_engine: Mutex<String>,
}

fn send_body(body: sidecar_message::Body) -> SidecarMessage {
    SidecarMessage { body: Some(body) }
}

impl Session {
    pub(crate) fn new(config: Config, agents: Arc<Agents>) -> Self {
        let done = Executed::open(&config.data_dir.join("executed.jsonl"));
        Session {
            config,
            agents,
            done: Mutex::new(done),
            connected: AtomicBool::new(false),
            outbound: Mutex::default(),
            last_probe: Mutex::default(),
            executed: std::sync::atomic::AtomicU64::new(0),
            runtime_engine: Mutex::default(),
        }
    }

    /// Tells the runtime about a probe answer that changed.
    pub(crate) fn probe_changed(&self, kind: &str, plugin: &str, healthy: bool, message: &str) {
        let key = (kind.to_owned(), plugin.to_owned());
        let changed = self
            .last_probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, healthy)
            != Some(healthy);
        if !changed {
            return;
        }
        if let Some(tx) = self
            .outbound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = tx.try_send(send_body(sidecar_message::Body::Probe(ProbeReport {
                plugin: plugin.to_owned(),
                kind: kind.to_owned(),
                healthy,
                message: message.to_owned(),
            })));
        }
    }

    /// Connects and serves until `shutdown` turns true, reconnecting with backoff.
    pub(crate) async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.clone().serve_once(&mut shutdown).await {
                Ok(Ended::Shutdown) => return,
                Ok(Ended::Closed) => {
                    tracing::info!("the runtime closed the link; reconnecting");
                    failures = 1;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, attempt = failures, "link to the runtime failed; serving probes with the plugins held");
                }
            }
            self.connected.store(false, Ordering::Relaxed);
            *self.outbound.lock().unwrap_or_else(PoisonError::into_inner) = None;
            let exp = 100u64.saturating_mul(1 << failures.min(10));
            let cap = exp.min(u64::try_from(self.config.reconnect_max.as_millis()).unwrap_or(5000));
            // Full jitter between half and all of the delay: a restarted runtime is not
            // met by every sidecar at the same instant.
            let wait = Duration::from_millis(cap / 2 + fastrand::u64(0..=cap / 2));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Puts the pod's current token in `request`'s metadata.
    fn authorize<T>(&self, request: &mut tonic::Request<T>) -> anyhow::Result<()> {
        let token = self
            .config
            .token
            .read()
            .map_err(|e| anyhow::anyhow!("token: {e}"))?;
        request.metadata_mut().insert(
            bosun_link::AUTHORIZATION,
            format!("Bearer {token}")
                .parse()
                .map_err(|_| anyhow::anyhow!("the token is not a valid header value"))?,
        );
        Ok(())
    }

    async fn channel(&self) -> anyhow::Result<Channel> {
        let mut endpoint = Endpoint::from_shared(self.config.runtime.clone())?
            .connect_timeout(Duration::from_secs(3))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        if let Some(ca) = &self.config.runtime_ca {
            let pem = std::fs::read(ca)
                .map_err(|e| anyhow::anyhow!("BOSUN_RUNTIME_CA {}: {e}", ca.display()))?;
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))?;
        }
        Ok(endpoint.connect().await?)
    }

    async fn serve_once(
        self: Arc<Self>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<Ended> {
        let channel = self.channel().await?;
        let mut client = LinkClient::new(channel)
            .max_decoding_message_size(bosun_link::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(bosun_link::MAX_MESSAGE_BYTES);
        let (tx, rx) = mpsc::channel::<SidecarMessage>(256);
        let hello = Hello {
            namespace: self.config.namespace.clone(),
            pod: self.config.pod.clone(),
            uid: self.config.uid.clone(),
            sidecar_version: env!("CARGO_PKG_VERSION").to_owned(),
            plugins: self
                .agents
                .held()
                .into_iter()
                .map(|(name, digest)| PluginRef { name, digest })
                .collect(),
        };
        tx.send(send_body(sidecar_message::Body::Hello(hello)))
            .await?;
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        self.authorize(&mut request)?;
        let mut inbound = client.session(request).await?.into_inner();
        *self.outbound.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx.clone());
        self.connected.store(true, Ordering::Relaxed);
        tracing::info!(runtime = %self.config.runtime, "connected to the runtime");
        loop {
            tokio::select! {
                message = inbound.message() => match message? {
                    None => return Ok(Ended::Closed),
                    Some(m) => self.handle(m, &tx, &mut client).await?,
                },
                _ = shutdown.changed() => {
                    // Acks and outcomes already queued go out before the stream closes.
                    *self.outbound.lock().unwrap_or_else(PoisonError::into_inner) = None;
                    drop(tx);
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while let Ok(Some(_)) = inbound.message().await {}
                    }).await;
                    return Ok(Ended::Shutdown);
                }
            }
        }
    }

    async fn handle(
        &self,
        message: RuntimeMessage,
        tx: &mpsc::Sender<SidecarMessage>,
        client: &mut LinkClient<Channel>,
    ) -> anyhow::Result<()> {
        let Some(body) = message.body else {
            return Ok(());
        };
        match body {
            runtime_message::Body::Welcome(w) => {
                tracing::info!(runtime = %w.runtime_id, engine = %w.engine, "welcomed by the runtime");
                *self
                    .runtime_engine
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = w.engine;
            }
            runtime_message::Body::Drain(d) => {
                tracing::info!(reason = %d.reason, "the runtime drains this link");
            }
            runtime_message::Body::Assignment(a) => {
                let wanted: Vec<String> = a.plugins.iter().map(|p| p.name.clone()).collect();
                for (name, _) in self.agents.held() {
                    if !wanted.contains(&name) {
                        let agents = self.agents.clone();
                        let n = name.clone();
                        tokio::task::spawn_blocking(move || agents.remove(&n)).await?;
                        tracing::info!(plugin = %name, "plugin unassigned; stopped");
                    }
                }
                for p in a.plugins {
                    if self.agents.runs(&p.name, &p.digest, &p.config) {
                        continue;
                    }
                    let body = match self
                        .install(client, &p.name, &p.digest, &p.config, p.size)
                        .await
                    {
                        Ok(micros) => sidecar_message::Body::PluginLoaded(PluginLoaded {
                            plugin: p.name.clone(),
                            digest: p.digest.clone(),
                            load_micros: micros,
                        }),
                        Err(e) => {
                            tracing::error!(plugin = %p.name, error = %e, "plugin not installed");
                            sidecar_message::Body::PluginError(PluginError {
                                plugin: p.name.clone(),
                                digest: p.digest.clone(),
                                message: e.to_string(),
                            })
                        }
                    };
                    tx.send(send_body(body)).await?;
                }
            }
            runtime_message::Body::Command(c) => {
                tx.send(send_body(sidecar_message::Body::Ack(Ack { id: c.id })))
                    .await?;
                let known = self
                    .done
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(c.id);
                let outcome = match known {
                    // Delivered again (a reconnect, a restarted runtime or sidecar):
                    // answered, not re-run.
                    Some(o) => o,
                    None => {
                        let agents = self.agents.clone();
                        let (plugin, payload) = (c.plugin.clone(), c.payload.clone());
                        let (revision, result) =
                            tokio::task::spawn_blocking(move || agents.command(&plugin, &payload))
                                .await?;
                        self.executed.fetch_add(1, Ordering::Relaxed);
                        let (ok, message) = match result {
                            Ok(m) => (true, m),
                            Err(m) => (false, m),
                        };
                        let o = Outcome {
                            id: c.id,
                            plugin: c.plugin,
                            revision,
                            ok,
                            message,
                        };
                        self.done
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .record(&o);
                        o
                    }
                };
                tx.send(send_body(sidecar_message::Body::Outcome(outcome)))
                    .await?;
            }
        }
        Ok(())
    }

    async fn install(
        &self,
        client: &mut LinkClient<Channel>,
        name: &str,
        digest: &str,
        config: &str,
        size: u64,
    ) -> anyhow::Result<u64> {
        let bytes = match self.agents.cached(digest) {
            Some(b) => b,
            None => {
                if size > MAX_PLUGIN_BYTES {
                    anyhow::bail!(
                        "{size} bytes is over the sidecar's {MAX_PLUGIN_BYTES}-byte plugin limit"
                    );
                }
                let bytes = self.fetch(client, digest, false, size).await?;
                self.agents.store(name, digest, &bytes)?;
                bytes.into()
            }
        };
        // The runtime compiled it once for every sidecar: take its code when the engines
        // match, rather than compiling here.
        let same_engine = *self
            .runtime_engine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            == self.agents.engine_key();
        if self.config.precompiled && same_engine && !self.agents.has_compiled(digest) {
            let adopted = match self.fetch(client, digest, true, 0).await {
                Ok(code) => {
                    let (agents, name, digest) =
                        (self.agents.clone(), name.to_owned(), digest.to_owned());
                    tokio::task::spawn_blocking(move || agents.adopt(&name, &digest, &code))
                        .await?
                        .map_err(anyhow::Error::from)
                }
                Err(e) => Err(e),
            };
            if let Err(e) = adopted {
                tracing::warn!(plugin = name, error = %format!("{e:#}"), "no precompiled code from the runtime; compiling the component here");
            }
        }
        let agents = self.agents.clone();
        let (name, digest, config) = (name.to_owned(), digest.to_owned(), config.to_owned());
        let micros =
            tokio::task::spawn_blocking(move || agents.install(&name, &digest, bytes, &config))
                .await??;
        self.save_assignment();
        Ok(micros)
    }

    /// Fetches a revision's component, or the runtime's compiled code of it
    /// (`precompiled`), authenticated like the session: plugin bytes are for this pod only.
    async fn fetch(
        &self,
        client: &mut LinkClient<Channel>,
        digest: &str,
        precompiled: bool,
        size: u64,
    ) -> anyhow::Result<Vec<u8>> {
        let mut request = tonic::Request::new(FetchRequest {
            digest: digest.to_owned(),
            namespace: self.config.namespace.clone(),
            pod: self.config.pod.clone(),
            uid: self.config.uid.clone(),
            precompiled,
        });
        self.authorize(&mut request)?;
        let mut stream = client.fetch(request).await?.into_inner();
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        let mut expected = String::new();
        while let Some(chunk) = stream.message().await? {
            if expected.is_empty() {
                expected = chunk.sha256;
            }
            bytes.extend_from_slice(&chunk.data);
            if bytes.len() as u64 > MAX_PLUGIN_BYTES {
                anyhow::bail!("fetch of {digest} exceeds {MAX_PLUGIN_BYTES} bytes");
            }
        }
        if precompiled {
            let actual = bosun_link::digest(&bytes);
            anyhow::ensure!(
                actual == expected,
                "precompiled code of {digest} arrived damaged: sha256 {actual}, not {expected}"
            );
        }
        Ok(bytes)
    }

    fn save_assignment(&self) {
        let held: Vec<serde_json::Value> = self
            .agents
            .held()
            .into_iter()
            .map(|(name, digest)| {
                serde_json::json!({"name": name, "digest": digest, "config": self.agents.config_of(&name)})
            })
            .collect();
        let path = self.config.data_dir.join("assigned.json");
        if let Err(e) = std::fs::write(&path, serde_json::Value::from(held).to_string()) {
            tracing::warn!(file = %path.display(), error = %e, "cannot save the assignment");
        }
    }

    /// Loads the plugins of the last assignment from the cache, so that probes answer
    /// before the runtime does (or while it is away).
    pub(crate) fn restore(&self) {
        let path = self.config.data_dir.join("assigned.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return;
        };
        let Ok(list) = serde_json::from_str::<Vec<serde_json::Value>>(&text) else {
            tracing::warn!(file = %path.display(), "unreadable saved assignment; ignored");
            return;
        };
        for p in list {
            let (Some(name), Some(digest)) = (p["name"].as_str(), p["digest"].as_str()) else {
                continue;
            };
            let config = p["config"].as_str().unwrap_or("{}");
            if let Some(bytes) = self.agents.cached(digest) {
                match self.agents.install(name, digest, bytes, config) {
                    Ok(_) => tracing::info!(plugin = name, "plugin restored from the cache"),
                    Err(e) => tracing::warn!(plugin = name, error = %e, "cannot restore plugin"),
                }
            }
        }
    }
}
