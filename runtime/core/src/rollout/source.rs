//! Where a Plugin's component comes from — a file (embedded mode), a ConfigMap that
//! `bosun plugin push` wrote, or a URL — fetched and checked against the digest the
//! source names before anything loads it.

use std::time::Duration;

use bosun_api::keys::DIGEST_LABEL;
use bosun_api::plugin::Source;
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
}

impl Error {
    /// The Plugin condition's reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Fetch(_) => "FetchFailed",
            Error::DigestMismatch(_) => "DigestMismatch",
            Error::Unsupported(_) => "SourceUnsupported",
            Error::Invalid(_) => "InvalidSource",
        }
    }
}

/// The plugin's bytes, checked against the digest its source names.
pub async fn fetch(client: &kube::Client, ns: &str, source: &Source) -> Result<Bytes, Error> {
    match source {
        Source::File { path } => {
            let bytes =
                std::fs::read(path).map_err(|e| Error::Fetch(format!("file {path}: {e}")))?;
            Ok(Bytes {
                origin: path.clone(),
                bytes: bytes.into(),
            })
        }
        Source::ConfigMap { name, key } => {
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
    let want = sha256
        .trim()
        .trim_start_matches("sha256:")
        .to_ascii_lowercase();
    if want.len() != 64 || !want.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::Invalid(format!(
            "source.url.sha256 {sha256:?} is not a sha256 (64 hex digits)"
        )));
    }
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
