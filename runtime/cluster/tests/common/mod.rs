//! Shared fixtures for the end-to-end tests.
#![allow(dead_code, reason = "each test binary uses a different part")]

use bosun_cluster::{Cluster, Config};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use std::time::Duration;

/// A cluster without simulated nodes: the API alone.
pub async fn api_only() -> anyhow::Result<Cluster> {
    Ok(bosun_cluster::start(Config {
        nodes: 0,
        ..Config::default()
    })
    .await?)
}

/// A cluster with `config`.
pub async fn with(config: Config) -> anyhow::Result<Cluster> {
    Ok(bosun_cluster::start(config).await?)
}

/// Builder for a pod fixture.
pub struct PodBuilder {
    v: Value,
}

/// `pod("web-0").label("app", "web").image("app:v1").build()`.
pub fn pod(name: &str) -> PodBuilder {
    PodBuilder {
        v: json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {}},
            "spec": {"containers": [{"name": "app", "image": "app:v1"}]},
        }),
    }
}

impl PodBuilder {
    /// Adds a label.
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.v["metadata"]["labels"][k] = json!(v);
        self
    }
    /// Sets the image of the first container.
    pub fn image(mut self, image: &str) -> Self {
        self.v["spec"]["containers"][0]["image"] = json!(image);
        self
    }
    /// Pins the pod to a node.
    pub fn on_node(mut self, node: &str) -> Self {
        self.v["spec"]["nodeName"] = json!(node);
        self
    }
    /// The pod.
    pub fn build(self) -> Pod {
        serde_json::from_value(self.v).expect("fixture is a valid pod")
    }
}

/// The HTTP status code of a kube error (0 when it is not an API error).
pub fn code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        _ => 0,
    }
}

/// Polls `f` until it returns `Some`, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("condition not met within {secs}s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A raw request; an error status comes back as `kube::Error::Api`.
pub async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<Value, kube::Error> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(body)
        .map_err(kube::Error::HttpError)?;
    let text = client.request_text(req).await?;
    Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
}
