//! The webhook's certificates: a CA the runtime makes once (its PEM is the
//! configurations' `caBundle`) and a serving certificate it signs, renewed before it
//! expires. Both are kept in a Secret of the runtime's namespace (replicas share them)
//! or, without one, in the data directory. The server reads the serving certificate
//! through [`Resolver`] on every handshake, so a renewal drops no request.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::Error;

/// The CA lives ten years; renewing it means a new caBundle, which is not automated.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The PEM material: the CA and the serving certificate.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Material {
    pub(crate) ca_cert: String,
    pub(crate) ca_key: String,
    pub(crate) cert: String,
    pub(crate) key: String,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material").finish_non_exhaustive()
    }
}

const KEYS: [&str; 4] = ["ca.crt", "ca.key", "tls.crt", "tls.key"];

impl Material {
    fn fields(&self) -> [&String; 4] {
        [&self.ca_cert, &self.ca_key, &self.cert, &self.key]
    }

    fn from_fields(mut get: impl FnMut(&str) -> Option<String>) -> Option<Self> {
        Some(Material {
            ca_cert: get(KEYS[0])?,
            ca_key: get(KEYS[1])?,
            cert: get(KEYS[2])?,
            key: get(KEYS[3])?,
        })
    }

    /// When the serving certificate stops being valid.
    pub(crate) fn expires(&self) -> Result<SystemTime, Error> {
        not_after(&self.cert)
    }
}

fn not_after(pem: &str) -> Result<SystemTime, Error> {
    let bad = |e: String| Error::Tls(format!("cannot read the serving certificate: {e}"));
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| bad(e.to_string()))?;
    let secs = cert.validity().not_after.timestamp();
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

/// Where the material is kept.
#[derive(Clone)]
pub(crate) enum Keep {
    /// `webhook-tls/` in the data directory.
    Dir(PathBuf),
    /// A Secret (type kubernetes.io/tls, plus `ca.crt` and `ca.key`).
    Secret(Box<Api<Secret>>, String),
}

impl Keep {
    /// What is kept, if anything.
    pub(crate) async fn load(&self) -> Result<Option<Material>, Error> {
        match self {
            Keep::Dir(dir) => Ok(Material::from_fields(|k| {
                std::fs::read_to_string(dir.join(k)).ok()
            })),
            Keep::Secret(api, name) => {
                let secret = api
                    .get_opt(name)
                    .await
                    .map_err(|e| Error::Tls(format!("cannot read Secret {name}: {e}")))?;
                let data = secret.and_then(|s| s.data).unwrap_or_default();
                Ok(Material::from_fields(|k| {
                    data.get(k)
                        .and_then(|b| String::from_utf8(b.0.clone()).ok())
                }))
            }
        }
    }

    /// Keeps `m`: `fresh` when nothing was kept before (a replica that loses the race to
    /// create the Secret reads the winner's instead, so all replicas serve one CA).
    pub(crate) async fn store(&self, m: &Material, fresh: bool) -> Result<Material, Error> {
        match self {
            Keep::Dir(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::Tls(format!("cannot create {}: {e}", dir.display())))?;
                for (k, v) in KEYS.iter().zip(m.fields()) {
                    let path = dir.join(k);
                    crate::sidecars::write_private(&path, v.as_bytes())
                        .map_err(|e| Error::Tls(format!("cannot write {}: {e}", path.display())))?;
                }
                Ok(m.clone())
            }
            Keep::Secret(api, name) => {
                let data = KEYS
                    .iter()
                    .zip(m.fields())
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect();
                let mut secret = Secret {
                    metadata: kube::api::ObjectMeta {
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                    type_: Some("kubernetes.io/tls".to_owned()),
                    data: Some(data),
                    ..Default::default()
                };
                if fresh {
                    match api.create(&PostParams::default(), &secret).await {
                        Ok(_) => return Ok(m.clone()),
                        Err(kube::Error::Api(s)) if s.code == 409 => {
                            return self.load().await?.ok_or_else(|| {
                                Error::Tls(format!("Secret {name} exists but holds no certificate"))
                            });
                        }
                        Err(e) => {
                            return Err(Error::Tls(format!("cannot create Secret {name}: {e}")));
                        }
                    }
                }
                let current = api
                    .get(name)
                    .await
                    .map_err(|e| Error::Tls(format!("cannot read Secret {name}: {e}")))?;
                secret.metadata.resource_version = current.metadata.resource_version;
                api.replace(name, &PostParams::default(), &secret)
                    .await
                    .map_err(|e| Error::Tls(format!("cannot update Secret {name}: {e}")))?;
                Ok(m.clone())
            }
        }
    }
}

/// Makes a CA and a serving certificate for `names`, valid for `validity`.
pub(crate) fn make(names: &[String], validity: Duration) -> Result<Material, Error> {
    make_named("bosun webhook CA", names, validity)
}

/// [`make`] with the CA named `ca_name`.
pub(crate) fn make_named(
    ca_name: &str,
    names: &[String],
    validity: Duration,
) -> Result<Material, Error> {
    let tls = |e: rcgen::Error| Error::Tls(e.to_string());
    let now = time::OffsetDateTime::now_utc();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    ca.not_before = now - time::Duration::minutes(5);
    ca.not_after = now + CA_VALIDITY;
    let ca_key = rcgen::KeyPair::generate().map_err(tls)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(tls)?;
    let mut m = Material {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        cert: String::new(),
        key: String::new(),
    };
    renew(&mut m, names, validity)?;
    Ok(m)
}

/// Signs a new serving certificate for `names` with the CA in `m`.
pub(crate) fn renew(m: &mut Material, names: &[String], validity: Duration) -> Result<(), Error> {
    let tls = |e: rcgen::Error| Error::Tls(e.to_string());
    let ca_key = rcgen::KeyPair::from_pem(&m.ca_key).map_err(tls)?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&m.ca_cert, ca_key).map_err(tls)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(tls)?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + validity;
    let key = rcgen::KeyPair::generate().map_err(tls)?;
    let cert = params.signed_by(&key, &issuer).map_err(tls)?;
    m.cert = cert.pem();
    m.key = key.serialize_pem();
    Ok(())
}

/// The serving certificate, swapped in place on renewal.
#[derive(Debug)]
pub(crate) struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl Resolver {
    pub(crate) fn new(m: &Material) -> Result<Self, Error> {
        Ok(Resolver {
            current: RwLock::new(certified(m)?),
        })
    }

    /// Serves `m` from the next handshake on.
    pub(crate) fn swap(&self, m: &Material) -> Result<(), Error> {
        let key = certified(m)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = key;
        Ok(())
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

fn certified(m: &Material) -> Result<Arc<CertifiedKey>, Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: String| Error::Tls(format!("the serving {what} does not read: {e}"));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(m.cert.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| bad("certificate", e.to_string()))?;
    let key =
        PrivateKeyDer::from_pem_slice(m.key.as_bytes()).map_err(|e| bad("key", e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad("key", e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(certs, key)))
}

/// The rustls server configuration over `resolver` (HTTP/1.1).
pub(crate) fn server_config(resolver: Arc<Resolver>) -> Result<Arc<rustls::ServerConfig>, Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Whether a certificate valid until `expires`, issued for `validity`, is due for
/// renewal at `now`: when less than a third of its life is left.
pub(crate) fn due(expires: SystemTime, validity: Duration, now: SystemTime) -> bool {
    expires
        .duration_since(now)
        .map_or(true, |left| left < validity / 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_certificate_reads_and_renews_under_the_same_ca() {
        let names = vec![
            "bosun-webhook.bosun-system.svc".to_owned(),
            "127.0.0.1".to_owned(),
        ];
        let mut m = make(&names, Duration::from_secs(3600)).expect("make");
        let first = m.cert.clone();
        let expires = m.expires().expect("expiry");
        let left = expires.duration_since(SystemTime::now()).expect("future");
        assert!(
            left > Duration::from_secs(3500) && left <= Duration::from_secs(3600),
            "{left:?}"
        );
        let ca = m.ca_cert.clone();
        renew(&mut m, &names, Duration::from_secs(7200)).expect("renew");
        assert_ne!(m.cert, first);
        assert_eq!(m.ca_cert, ca);
        Resolver::new(&m).expect("serves");
    }

    #[test]
    fn renewal_is_due_with_a_third_of_the_life_left() {
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        assert!(!due(now + day * 20, day * 30, now));
        assert!(due(now + day * 9, day * 30, now));
        assert!(due(now - day, day * 30, now));
    }
}
