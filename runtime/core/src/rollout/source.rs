//! Where a Plugin's component comes from — a file (embedded mode), a ConfigMap that
//! `bosun plugin push` wrote, or a URL — fetched and checked against the digest the
//! source names before anything loads it.
//!
//! A `file` source reads the runtime's own disk, so it is confined: accepted only by a
//! runtime with a plugins folder (embedded mode, whose folder publisher writes them),
//! and only for a file inside that folder once symlinks are resolved. ConfigMap and URL
//! sources name the full sha256 of their bytes.

use std::path::{Component, Path};
use std::time::Duration;

use bosun_api::keys::DIGEST_LABEL;
use bosun_api::plugin::{Source, sha256_hex};
use bosun_host::load::Source as Bytes;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

/// A source could not give the component's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The bytes could not be read or downloaded.
    #[error("{0}")]
    Fetch(String),
    /// The bytes are not the ones the source names.
    #[error("{0}")]
    DigestMismatch(String),
    /// This kind of source is not fetched by this runtime.
    #[error("{0}")]
    Unsupported(String),
    /// The source itself is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The source is well formed but this runtime does not read it: a file outside its
    /// plugins folder, or a file source on a runtime without one.
    #[error("{0}")]
    NotAllowed(String),
}

impl Error {
    /// The Plugin condition's reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Fetch(_) => "FetchFailed",
            Error::DigestMismatch(_) => "DigestMismatch",
            Error::Unsupported(_) => "SourceUnsupported",
            Error::Invalid(_) => "InvalidSource",
            Error::NotAllowed(_) => "SourceNotAllowed",
        }
    }
}

/// The plugin's bytes, checked against the digest its source names. `folder` is the
/// runtime's plugins folder, the only place `file` sources may name.
pub async fn fetch(
    client: &kube::Client,
    ns: &str,
    source: &Source,
    folder: Option<&Path>,
) -> Result<Bytes, Error> {
    match source {
        Source::File { path } => {
            let file = confine(path, folder)?;
            let bytes = read_file(&file, path)?;
            Ok(Bytes {
                origin: file.display().to_string(),
                bytes: bytes.into(),
            })
        }
        Source::ConfigMap { name, key, sha256 } => {
            let want = sha256_hex(sha256).ok_or_else(|| {
                Error::Invalid(format!(
                    "source.configMap.sha256 {sha256:?} is not a full sha256 (sha256:<64 hex digits>); `bosun plugin push` writes it"
                ))
            })?;
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
            let cm = api
                .get_opt(name)
                .await
                .map_err(|e| Error::Fetch(format!("ConfigMap {ns}/{name}: {e}")))?;
            let Some(cm) = cm else {
                return Err(Error::Fetch(format!(
                    "ConfigMap {ns}/{name} does not exist"
                )));
            };
            let bytes = cm
                .binary_data
                .as_ref()
                .and_then(|b| b.get(key))
                .map(|b| b.0.clone())
                .ok_or_else(|| {
                    Error::Fetch(format!(
                        "ConfigMap {ns}/{name} has no binaryData key {key:?}"
                    ))
                })?;
            let source = Bytes {
                origin: format!("configmap {ns}/{name}"),
                bytes: bytes.into(),
            };
            let digest = source.digest();
            if digest.trim_start_matches("sha256:") != want {
                return Err(Error::DigestMismatch(format!(
                    "ConfigMap {ns}/{name} holds {digest}, not the sha256 the Plugin names (sha256:{want}); refusing to serve them"
                )));
            }
            if let Some(want) = cm
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(DIGEST_LABEL))
            {
                let digest = source.digest();
                if !digest
                    .trim_start_matches("sha256:")
                    .starts_with(want.as_str())
                {
                    return Err(Error::DigestMismatch(format!(
                        "ConfigMap {ns}/{name} says {DIGEST_LABEL}={want} but its bytes are {digest}; refusing to serve them"
                    )));
                }
            }
            Ok(source)
        }
        Source::Url { url, sha256 } => fetch_url(url, sha256).await,
        Source::Oci { reference } => Err(Error::Unsupported(format!(
            "OCI sources ({reference}) are not fetched by this runtime yet; push the plugin as a ConfigMap (bosun plugin push)"
        ))),
    }
}

/// The largest plugin fetched by URL.
const MAX_URL_BYTES: usize = 64 * 1024 * 1024;

/// GETs `url` (http or https, the system's CA roots) and checks the bytes' sha256.
async fn fetch_url(url: &str, sha256: &str) -> Result<Bytes, Error> {
    use http_body_util::BodyExt;
    let fail = Error::Fetch;
    let want = sha256_hex(sha256).ok_or_else(|| {
        Error::Invalid(format!(
            "source.url.sha256 {sha256:?} is not a sha256 (64 hex digits)"
        ))
    })?;
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| Error::Invalid(format!("source.url {url:?}: {e}")))?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| fail(format!("no CA roots to check {url} with: {e}")))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https);
    let response = tokio::time::timeout(Duration::from_secs(30), client.get(uri))
        .await
        .map_err(|_| fail(format!("GET {url}: no answer within 30 s")))?
        .map_err(|e| fail(format!("GET {url}: {e}")))?;
    if !response.status().is_success() {
        return Err(fail(format!("GET {url}: {}", response.status())));
    }
    let body = tokio::time::timeout(
        Duration::from_secs(120),
        http_body_util::Limited::new(response.into_body(), MAX_URL_BYTES).collect(),
    )
    .await
    .map_err(|_| fail(format!("GET {url}: the body took over 120 s")))?
    .map_err(|e| fail(format!("GET {url}: {e} (limit {MAX_URL_BYTES} bytes)")))?
    .to_bytes();
    let source = Bytes {
        origin: url.to_owned(),
        bytes: body.to_vec().into(),
    };
    let digest = source.digest();
    if digest.trim_start_matches("sha256:") != want {
        return Err(Error::DigestMismatch(format!(
            "{url} has {digest}, not the sha256 the Plugin names ({want}); refusing to serve it"
        )));
    }
    Ok(source)
}

/// The file a `file` source may read: `path` inside the plugins folder `folder`, with
/// symlinks resolved (a link inside the folder to a file outside it is refused too).
fn confine(path: &str, folder: Option<&Path>) -> Result<std::path::PathBuf, Error> {
    let Some(folder) = folder else {
        return Err(Error::NotAllowed(format!(
            "file sources ({path}) are read only by a runtime with a plugins folder (embedded mode, `bosun up`); push the plugin as a ConfigMap (bosun plugin push) or serve it by URL"
        )));
    };
    let outside = || {
        Error::NotAllowed(format!(
            "file {path} is outside the plugins folder {}: a file source may only name a file in it",
            folder.display()
        ))
    };
    let folder = std::fs::canonicalize(folder)
        .map_err(|e| Error::Fetch(format!("plugins folder {}: {e}", folder.display())))?;
    let asked = Path::new(path);
    // Judged on the text first, so that nothing outside the folder is even looked at.
    if !asked.is_absolute()
        || asked.components().any(|c| c == Component::ParentDir)
        || !asked.starts_with(&folder)
    {
        return Err(outside());
    }
    let real =
        std::fs::canonicalize(asked).map_err(|e| Error::Fetch(format!("file {path}: {e}")))?;
    if !real.starts_with(&folder) {
        return Err(outside());
    }
    Ok(real)
}

/// Reads a plugin file of at most [`MAX_URL_BYTES`].
fn read_file(file: &Path, path: &str) -> Result<Vec<u8>, Error> {
    let meta = std::fs::metadata(file).map_err(|e| Error::Fetch(format!("file {path}: {e}")))?;
    if !meta.is_file() {
        return Err(Error::Invalid(format!("file {path} is not a regular file")));
    }
    if meta.len() > MAX_URL_BYTES as u64 {
        return Err(Error::Invalid(format!(
            "file {path} is {} bytes, over the limit of {MAX_URL_BYTES}",
            meta.len()
        )));
    }
    std::fs::read(file).map_err(|e| Error::Fetch(format!("file {path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sources_need_a_plugins_folder() {
        let e = confine("/tmp/x.wasm", None).expect_err("no folder");
        assert_eq!(e.reason(), "SourceNotAllowed");
        assert!(e.to_string().contains("plugins folder"), "{e}");
    }

    #[test]
    fn file_sources_stay_inside_the_plugins_folder() {
        let root = tempfile::tempdir().expect("tempdir");
        let folder = root.path().join("plugins");
        std::fs::create_dir(&folder).expect("folder");
        let folder = std::fs::canonicalize(&folder).expect("canonical");
        std::fs::write(folder.join("ok.wasm"), b"\0asm").expect("file");
        std::fs::write(root.path().join("secret.wasm"), b"\0asm").expect("file");
        let inside = folder.join("ok.wasm");
        assert_eq!(
            confine(&inside.display().to_string(), Some(&folder)).ok(),
            Some(inside)
        );
        let secret = std::fs::canonicalize(root.path().join("secret.wasm")).expect("secret");
        let dotdot = format!("{}/../secret.wasm", folder.display());
        for path in [
            secret.display().to_string(),
            dotdot,
            "ok.wasm".to_owned(),
            "/etc/passwd".to_owned(),
        ] {
            let e = confine(&path, Some(&folder)).expect_err(&path);
            assert_eq!(e.reason(), "SourceNotAllowed", "{path}: {e}");
        }
        // A symlink inside the folder to a file outside it.
        #[cfg(unix)]
        {
            let link = folder.join("link.wasm");
            std::os::unix::fs::symlink(&secret, &link).expect("symlink");
            let e = confine(&link.display().to_string(), Some(&folder)).expect_err("escape");
            assert_eq!(e.reason(), "SourceNotAllowed", "{e}");
        }
    }

    #[test]
    fn a_folder_file_is_read_and_a_directory_is_not() {
        let folder = tempfile::tempdir().expect("tempdir");
        let folder = std::fs::canonicalize(folder.path()).expect("canonical");
        std::fs::write(folder.join("p.wasm"), b"bytes").expect("file");
        std::fs::create_dir(folder.join("d.wasm")).expect("dir");
        let file =
            confine(&folder.join("p.wasm").display().to_string(), Some(&folder)).expect("inside");
        assert_eq!(read_file(&file, "p.wasm").ok(), Some(b"bytes".to_vec()));
        let dir =
            confine(&folder.join("d.wasm").display().to_string(), Some(&folder)).expect("inside");
        assert_eq!(
            read_file(&dir, "d.wasm").map_err(|e| e.reason()),
            Err("InvalidSource")
        );
    }
}
