//! `bosun:operator/pod`: what a pod-agent plugin may touch in its own pod.

use crate::bindings::pod_agent::bosun::operator::pod::Host;
use crate::contract::{HttpResponse, PodInfo};
use crate::store::StoreState;

/// The pod a pod-agent plugin runs in, as the sidecar supplies it. Implementations
/// confine HTTP to the pod's loopback and files to the declared shared directory.
pub trait Pod: Send + Sync {
    /// The pod's identity.
    fn info(&self) -> PodInfo;
    /// GET `http://127.0.0.1:{port}{path}`.
    fn http_get(&self, port: u16, path: &str, timeout_ms: u32) -> Result<HttpResponse, String>;
    /// POST `http://127.0.0.1:{port}{path}`.
    fn http_post(
        &self,
        port: u16,
        path: &str,
        content_type: &str,
        body: &[u8],
        timeout_ms: u32,
    ) -> Result<HttpResponse, String>;
    /// Reads a file under the shared directory.
    fn read_file(&self, path: &str) -> Result<Vec<u8>, String>;
    /// Writes a file under the shared directory.
    fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), String>;
}

const NO_POD: &str = "the pod interface is only available inside a sidecar";

impl StoreState {
    fn pod(&self) -> Option<&dyn Pod> {
        self.shared.services.pod.as_deref()
    }
}

impl Host for StoreState {
    fn info(&mut self) -> wasmtime::Result<PodInfo> {
        Ok(self.pod().map(Pod::info).unwrap_or(PodInfo {
            namespace: String::new(),
            name: String::new(),
            uid: String::new(),
            node_name: String::new(),
            labels: "{}".to_owned(),
        }))
    }

    fn http_get(
        &mut self,
        port: u16,
        path: String,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<HttpResponse, String>> {
        Ok(self.pod().map_or(Err(NO_POD.to_owned()), |p| {
            p.http_get(port, &path, timeout_ms)
        }))
    }

    fn http_post(
        &mut self,
        port: u16,
        path: String,
        content_type: String,
        body: Vec<u8>,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<HttpResponse, String>> {
        Ok(self.pod().map_or(Err(NO_POD.to_owned()), |p| {
            p.http_post(port, &path, &content_type, &body, timeout_ms)
        }))
    }

    fn read_file(&mut self, path: String) -> wasmtime::Result<Result<Vec<u8>, String>> {
        Ok(self
            .pod()
            .map_or(Err(NO_POD.to_owned()), |p| p.read_file(&path)))
    }

    fn write_file(
        &mut self,
        path: String,
        contents: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(self
            .pod()
            .map_or(Err(NO_POD.to_owned()), |p| p.write_file(&path, &contents)))
    }
}
