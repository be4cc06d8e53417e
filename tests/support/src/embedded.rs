//! The setup of the runtime's end-to-end tests: an embedded cluster whose simulated
//! nodes carry zone labels, a temporary data folder, plugin logs kept in memory, and a
//! runtime configured for tests (any admin port, no resync, fast backoff).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bosun_host::host::log;
use bosun_host::load::Source;
use bosun_runtime::{Config, Runtime};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};

use crate::eventually;

/// Zones given to the simulated nodes, in order (`sim-node-0` is in `zone-a`).
pub const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

/// An embedded cluster and what a test runs on it.
pub struct Env {
    /// The cluster.
    pub cluster: bosun_cluster::Cluster,
    /// A client of it.
    pub client: kube::Client,
    /// Data folders of the runtimes the test starts.
    pub dir: tempfile::TempDir,
    /// Plugins' log lines.
    pub logs: Arc<log::Memory>,
}

impl Env {
    /// A cluster with `nodes` simulated nodes, each labelled with its zone.
    pub async fn start(nodes: usize) -> Env {
        let env = Env::bare(nodes).await;
        let api: Api<Node> = Api::all(env.client.clone());
        for i in 0..nodes {
            let node = format!("sim-node-{i}");
            eventually("node registered", Duration::from_secs(10), || async {
                api.get_opt(&node).await.ok().flatten().is_some()
            })
            .await;
            let zone = ZONES[i % ZONES.len()];
            let patch =
                serde_json::json!({"metadata": {"labels": {"topology.kubernetes.io/zone": zone}}});
            api.patch(&node, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .expect("label node");
        }
        env
    }

    /// A cluster with `nodes` simulated nodes, unlabelled.
    pub async fn bare(nodes: usize) -> Env {
        let cluster = bosun_cluster::start(bosun_cluster::Config {
            nodes,
            ..Default::default()
        })
        .await
        .expect("cluster");
        let client = cluster.client().await.expect("client");
        Env {
            cluster,
            client,
            dir: tempfile::tempdir().expect("tempdir"),
            logs: Arc::new(log::Memory::default()),
        }
    }

    /// A runtime configuration for tests, its data in the folder `name`.
    pub fn config(&self, name: &str) -> Config {
        let mut c = Config {
            data_dir: self.dir.path().join(name),
            admin_addr: "127.0.0.1:0".parse().expect("addr"),
            resync_seconds: 0,
            shutdown_grace_seconds: 5,
            ..Default::default()
        };
        c.queue.backoff_base_ms = 100;
        c
    }

    /// Starts a runtime with `config` on this cluster, its plugins logging to [`Env::logs`].
    pub async fn runtime(&self, config: Config) -> Arc<Runtime> {
        Runtime::start_with(config, self.client.clone(), self.logs.clone())
            .await
            .expect("runtime starts")
    }

    /// The messages plugins logged since the last call.
    pub fn log_lines(&self) -> Vec<String> {
        self.logs.take().into_iter().map(|l| l.message).collect()
    }
}

/// The body of a GET of `path` on the runtime's admin endpoint (`/plugins` is what
/// `bosun status` reads, `/metrics` the Prometheus text).
pub fn admin_get(rt: &Runtime, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(rt.admin_addr()).expect("admin");
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// A built test artifact as a plugin source.
pub fn source(path: &str) -> Source {
    Source::file(Path::new(path)).expect("artifact")
}

/// Stores a Plugin object that today's CRD schema refuses, as one stored under an older,
/// laxer CRD would be: `spec` is made schemaless for the moment of the create, then the
/// CRD is put back. What a runtime meets after a CRD upgrade.
pub async fn store_plugin_unchecked(client: &kube::Client, object: serde_json::Value) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{DynamicObject, PostParams};
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = "plugins.bosun.dev";
    let original = crds.get(name).await.expect("the Plugin CRD is installed");
    let mut lax = serde_json::to_value(&original).expect("crd");
    lax["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] =
        serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    let lax: CustomResourceDefinition = serde_json::from_value(lax).expect("lax crd");
    let lax = crds
        .replace(name, &PostParams::default(), &lax)
        .await
        .expect("relax the CRD");
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    let raw: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &namespace,
        &kube::api::ApiResource::erase::<bosun_api::plugin::Plugin>(&()),
    );
    let object: DynamicObject = serde_json::from_value(object).expect("object");
    raw.create(&PostParams::default(), &object)
        .await
        .expect("stored under the lax CRD");
    let mut back = original;
    back.metadata.resource_version = lax.metadata.resource_version;
    crds.replace(name, &PostParams::default(), &back)
        .await
        .expect("restore the CRD");
}

/// An HTTPS client (HTTP/1.1, keep-alive) of a test's webhook server.
pub type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<bytes::Bytes>,
>;

/// An HTTPS client that trusts only the CA in `ca_pem` (the runtime's webhook CA).
pub fn https_client(ca_pem: &str) -> HttpsClient {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("root");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build(https)
}
