//! The gRPC service sidecars call (`bosun.link.v1.Link`): `Session`, a sidecar's
//! stream (hello, then assignments and commands one way, acks, outcomes and reports the
//! other), and `Fetch`, the bytes of a pod-agent revision in chunks.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use bosun_host::World;
use bosun_link::link_server::{Link, LinkServer};
use bosun_link::{
    FetchChunk, FetchRequest, RuntimeMessage, SidecarMessage, Welcome, runtime_message,
    sidecar_message,
};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{Conn, Pem, PodKey, Sidecars};

impl Sidecars {
    /// Serves the link on `listener` until the task is dropped.
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
                    tracing::error!(error = %e, "sidecar link TLS configuration refused; not serving");
                    return;
                }
            }
        }
        let service = LinkServer::new(Service(self.clone()))
            .max_decoding_message_size(bosun_link::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(bosun_link::MAX_MESSAGE_BYTES);
        *self.pump.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(tokio::spawn(self.clone().pump()));
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        if let Err(e) = builder
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!(error = %e, "sidecar link stopped");
        }
    }

    /// What the sidecar of `key` said on its connection `conn_id`.
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
            sidecar_message::Body::Ack(a) => self.acked(key, a.id),
            sidecar_message::Body::Outcome(o) => self.completed(key, o),
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

struct Service(Arc<Sidecars>);

/// The sidecar's token, from `authorization: Bearer <token>`.
fn bearer<T>(request: &Request<T>) -> Result<String, Status> {
    request
        .metadata()
        .get(bosun_link::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
        .ok_or_else(|| Status::unauthenticated("no bearer token in `authorization`"))
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Link for Service {
    type SessionStream = BoxStream<RuntimeMessage>;
    type FetchStream = BoxStream<FetchChunk>;

    async fn session(
        &self,
        request: Request<Streaming<SidecarMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let sidecars = self.0.clone();
        let token = bearer(&request)?;
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
                engine: sidecars.registry.engine().artifact_key(),
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
        let sidecars = &self.0;
        // Plugin bytes go to sidecars only, proven like a session.
        let token = bearer(&request)?;
        let FetchRequest {
            digest,
            namespace,
            pod,
            uid,
            precompiled,
        } = request.into_inner();
        let claimed = bosun_link::Hello {
            namespace,
            pod,
            uid,
            ..Default::default()
        };
        if sidecars.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Status::unavailable("the runtime is shutting down"));
        }
        sidecars.authenticate(&token, &claimed).await?;
        let revision = sidecars
            .registry
            .names()
            .into_iter()
            .filter_map(|n| sidecars.registry.current(&n))
            .find(|r| r.digest() == digest && r.info().world == World::PodAgent)
            .ok_or_else(|| Status::not_found(format!("no pod-agent revision {digest}")))?;
        let (bytes, sha256) = if precompiled {
            let code = sidecars.precompiled(revision).await?;
            let sha = bosun_link::digest(&code);
            (code, sha)
        } else {
            (revision.bytes().clone(), String::new())
        };
        let size = bytes.len() as u64;
        let chunks: Vec<Result<FetchChunk, Status>> = bytes
            .chunks(bosun_link::CHUNK_BYTES)
            .enumerate()
            .map(|(i, c)| {
                Ok(FetchChunk {
                    data: c.to_vec(),
                    size: if i == 0 { size } else { 0 },
                    sha256: if i == 0 {
                        sha256.clone()
                    } else {
                        String::new()
                    },
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
}
