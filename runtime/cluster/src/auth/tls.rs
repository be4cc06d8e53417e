//! HTTPS for an authenticating cluster: a CA the cluster makes once and keeps in its data
//! directory (its PEM is the kubeconfig's `certificate-authority-data`), a serving
//! certificate signed at every start, and a listener that does the TLS handshakes.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::Error;

/// The CA, as PEM.
#[derive(Clone)]
pub(crate) struct Ca {
    pub(crate) cert: String,
    key: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

fn tls(e: impl std::fmt::Display) -> Error {
    Error::Tls(e.to_string())
}

impl Ca {
    /// The CA kept in `dir` (`ca.crt`, `ca.key`), made and written there if absent;
    /// without a directory, a new one.
    pub(crate) fn load_or_make(dir: Option<&Path>) -> Result<Self, Error> {
        if let Some(dir) = dir
            && let (Ok(cert), Ok(key)) = (
                std::fs::read_to_string(dir.join("ca.crt")),
                std::fs::read_to_string(dir.join("ca.key")),
            )
        {
            return Ok(Ca { cert, key });
        }
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "bosun-cluster-ca");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().map_err(tls)?;
        let cert = params.self_signed(&key).map_err(tls)?;
        let ca = Ca {
            cert: cert.pem(),
            key: key.serialize_pem(),
        };
        if let Some(dir) = dir {
            super::write_private(&dir.join("ca.key"), &ca.key)?;
            super::write_private(&dir.join("ca.crt"), &ca.cert)?;
        }
        Ok(ca)
    }

    /// A serving certificate for `localhost`, the loopback addresses and `addr`'s IP.
    fn serving(&self, addr: SocketAddr) -> Result<(String, String), Error> {
        let key = rcgen::KeyPair::from_pem(&self.key).map_err(tls)?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(&self.cert, key).map_err(tls)?;
        let mut names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
            "kubernetes.default.svc".to_string(),
        ];
        let ip = addr.ip().to_string();
        if !names.contains(&ip) {
            names.push(ip);
        }
        let mut params = rcgen::CertificateParams::new(names).map_err(tls)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "bosun-cluster");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().map_err(tls)?;
        let cert = params.signed_by(&key, &issuer).map_err(tls)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// The rustls acceptor serving a certificate for `addr`.
    pub(crate) fn acceptor(&self, addr: SocketAddr) -> Result<TlsAcceptor, Error> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let (cert, key) = self.serving(addr)?;
        let chain = vec![
            CertificateDer::from_pem_slice(cert.as_bytes()).map_err(tls)?,
            CertificateDer::from_pem_slice(self.cert.as_bytes()).map_err(tls)?,
        ];
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(tls)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(tls)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// Accepts TCP connections and hands on those whose TLS handshake succeeds; handshakes
/// run concurrently, so a slow client holds up no other.
pub(crate) struct Listener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl Listener {
    pub(crate) fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let addr = tcp.local_addr()?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let accept = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(stream),
                    );
                    match handshake.await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Listener { rx, addr, accept })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl axum::serve::Listener for Listener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task ended (it does not): serve nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
