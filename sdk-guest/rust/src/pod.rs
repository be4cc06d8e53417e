//! What a pod-agent plugin may touch in its own pod: HTTP on the pod's loopback and files
//! under the shared directory the plugin declared. Nothing else.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Error;
use crate::wit::bosun::operator::pod as host;

/// The pod this sidecar runs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's UID.
    pub uid: String,
    /// The node the pod runs on.
    pub node_name: String,
    /// The pod's labels.
    pub labels: BTreeMap<String, String>,
}

/// An HTTP response from the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Headers, with lowercase names.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl From<host::HttpResponse> for HttpResponse {
    fn from(r: host::HttpResponse) -> Self {
        Self {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }
}

fn timeout_ms(timeout: Duration) -> u32 {
    u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX)
}

/// The pod this sidecar runs in. Labels that are not a JSON object of strings read as
/// empty.
pub fn info() -> PodInfo {
    let info = host::info();
    PodInfo {
        labels: serde_json::from_str(&info.labels).unwrap_or_default(),
        namespace: info.namespace,
        name: info.name,
        uid: info.uid,
        node_name: info.node_name,
    }
}

/// HTTP GET to `http://127.0.0.1:{port}{path}`.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> Result<HttpResponse, Error> {
    host::http_get(port, path, timeout_ms(timeout))
        .map(Into::into)
        .map_err(|err| Error::msg(format!("GET :{port}{path}: {err}")))
}

/// HTTP POST to `http://127.0.0.1:{port}{path}`.
pub fn http_post(
    port: u16,
    path: &str,
    content_type: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<HttpResponse, Error> {
    host::http_post(port, path, content_type, body, timeout_ms(timeout))
        .map(Into::into)
        .map_err(|err| Error::msg(format!("POST :{port}{path}: {err}")))
}

/// Reads a file; `path` is relative to the shared directory and may not leave it.
pub fn read_file(path: &str) -> Result<Vec<u8>, Error> {
    host::read_file(path).map_err(|err| Error::msg(format!("reading {path}: {err}")))
}

/// Writes (creates or replaces) a file under the shared directory.
pub fn write_file(path: &str, contents: &[u8]) -> Result<(), Error> {
    host::write_file(path, contents).map_err(|err| Error::msg(format!("writing {path}: {err}")))
}
