//! The link's TLS material: a self-signed certificate made once and kept in the data
//! directory, so the sidecars that trust it keep trusting it across runtime restarts.

use std::path::{Path, PathBuf};

use super::{Error, io_err};

/// The folder of the certificate in the data directory. It keeps the name it had when
/// the link was called the pipe: sidecars are given `pipe-tls/ca.pem` to trust, and a
/// new name would make a new certificate they do not trust.
const DIR: &str = "pipe-tls";

/// The link's certificate.
pub struct Tls {
    /// The certificate (PEM).
    pub(super) cert: String,
    /// Its key (PEM).
    pub(super) key: String,
    /// The file sidecars trust: the certificate itself when it is self-signed, else the
    /// CA's (written beside).
    pub(super) ca_file: PathBuf,
    /// What sidecars trust (PEM).
    pub(super) ca: String,
}

impl Tls {
    /// The CA sidecars trust (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca
    }
}

/// How long the shared CA and serving certificate are valid (the link does not rotate
/// them; the webhook's CA is as long-lived).
const SHARED_VALIDITY: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 24 * 3600);

/// The certificate kept in the Secret `name` of `namespace`, made (a CA and a serving
/// certificate for `localhost`, `127.0.0.1` and `names`) by the first replica to find
/// none; its CA is also written to `pipe-tls-shared/ca.pem` in `dir`.
pub async fn load_shared(
    client: kube::Client,
    namespace: &str,
    name: &str,
    dir: &Path,
    names: &[String],
) -> Result<Tls, Error> {
    use crate::webhook::tls::{Keep, make_named};
    let keep = Keep::Secret(
        Box::new(kube::Api::namespaced(client, namespace)),
        name.to_owned(),
    );
    let tls_err = |e: crate::webhook::Error| Error::Tls(e.to_string());
    let material = match keep.load().await.map_err(tls_err)? {
        Some(m) => m,
        None => {
            let mut sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
            sans.extend(names.iter().cloned());
            let made =
                make_named("bosun sidecar link CA", &sans, SHARED_VALIDITY).map_err(tls_err)?;
            keep.store(&made, true).await.map_err(tls_err)?
        }
    };
    let shared = dir.join("pipe-tls-shared");
    std::fs::create_dir_all(&shared).map_err(io_err(&shared))?;
    let ca_file = shared.join("ca.pem");
    std::fs::write(&ca_file, &material.ca_cert).map_err(io_err(&ca_file))?;
    Ok(Tls {
        cert: material.cert,
        key: material.key,
        ca_file,
        ca: material.ca_cert,
    })
}

/// The certificate in `dir`, made valid for `localhost`, `127.0.0.1` and `names` the
/// first time.
pub(super) fn load(dir: &Path, names: &[String]) -> Result<Tls, Error> {
    let tls = dir.join(DIR);
    let (cert, key) = (tls.join("ca.pem"), tls.join("key.pem"));
    if let (Ok(c), Ok(k)) = (
        std::fs::read_to_string(&cert),
        std::fs::read_to_string(&key),
    ) {
        // A key written by an older runtime may be readable by others.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
                .map_err(io_err(&key))?;
        }
        return Ok(Tls {
            ca: c.clone(),
            cert: c,
            key: k,
            ca_file: cert,
        });
    }
    std::fs::create_dir_all(&tls).map_err(io_err(&tls))?;
    let mut sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    sans.extend(names.iter().cloned());
    let made = rcgen::generate_simple_self_signed(sans).map_err(|e| Error::Tls(e.to_string()))?;
    let (c, k) = (made.cert.pem(), made.signing_key.serialize_pem());
    super::write_private(&key, k.as_bytes()).map_err(io_err(&key))?;
    std::fs::write(&cert, &c).map_err(io_err(&cert))?;
    Ok(Tls {
        ca: c.clone(),
        cert: c,
        key: k,
        ca_file: cert,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("tmp");
        let first = load(dir.path(), &["bosun-runtime.bosun-system".to_owned()]).expect("make");
        assert!(first.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(first.ca_file, dir.path().join("pipe-tls/ca.pem"));
        assert_eq!(
            std::fs::read_to_string(&first.ca_file).expect("ca"),
            first.cert
        );
        let again = load(dir.path(), &[]).expect("keep");
        assert_eq!((again.cert, again.key), (first.cert, first.key));
    }

    #[cfg(unix)]
    #[test]
    fn the_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("file").permissions().mode() & 0o777;
        let dir = tempfile::tempdir().expect("tmp");
        let key = dir.path().join("pipe-tls/key.pem");
        load(dir.path(), &[]).expect("make");
        assert_eq!(mode(&key), 0o600);
        // A key left readable by an older runtime is tightened.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        load(dir.path(), &[]).expect("keep");
        assert_eq!(mode(&key), 0o600);
    }
}
