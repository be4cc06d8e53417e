//! `bosun up`: the embedded cluster, the runtime and the plugins of a folder on one
//! machine, with a demo workload so that something visibly happens within seconds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use bosun_runtime::{Config, Runtime};

/// What `bosun up` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// State of the cluster and the runtime.
    pub data_dir: PathBuf,
    /// The hot-reloaded plugins folder.
    pub plugins_dir: PathBuf,
    /// Components to place in the plugins folder first (built-in plugins).
    pub seed: Vec<Seed>,
    /// Simulated nodes.
    pub nodes: usize,
    /// Runtime settings (its data and plugins folders are overridden).
    pub runtime: Config,
    /// Create the demo workload.
    pub demo: bool,
}

/// A built-in plugin placed in the plugins folder.
#[derive(Debug, Clone, Default)]
pub struct Seed {
    /// The component.
    pub wasm: PathBuf,
    /// The config it gets in `bosun up` (a JSON file), if any: `NAME.json`.
    pub config: Option<PathBuf>,
    /// Its webhook settings, if it is an admission plugin (a JSON file, a Plugin's
    /// `spec.admission`): `NAME.admission.json`.
    pub admission: Option<PathBuf>,
}

impl Seed {
    /// A component with no config and no webhook settings.
    pub fn new(wasm: impl Into<PathBuf>) -> Self {
        Seed {
            wasm: wasm.into(),
            ..Seed::default()
        }
    }
}

/// What `up` reports while it runs.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Ready pods / pods.
    pub pods: (usize, usize),
    /// Nodes.
    pub nodes: usize,
    /// Plugins serving, with short digests.
    pub plugins: Vec<String>,
    /// Reconciles so far (all plugins).
    pub reconciles: u64,
    /// Command verdicts so far.
    pub commands: bosun_runtime::pipe::Counts,
    /// Sidecars connected to the runtime's sidecar link.
    pub sidecars: usize,
}

/// A running `bosun up`.
pub struct Up {
    cluster: Option<bosun_cluster::Cluster>,
    runtime: Arc<Runtime>,
    client: kube::Client,
    launcher: Option<crate::launcher::Launcher>,
    mirror: tokio::task::JoinHandle<()>,
    demo: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Up {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Up").finish_non_exhaustive()
    }
}

/// Zones given to simulated nodes, round robin.
const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

impl Up {
    /// Starts the cluster, the runtime and the plugins; creates the demo workload.
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        use anyhow::Context;
        std::fs::create_dir_all(&options.plugins_dir).with_context(|| {
            format!(
                "cannot create the plugins folder {}",
                options.plugins_dir.display()
            )
        })?;
        for s in &options.seed {
            seed(s, &options.plugins_dir)?;
        }
        let cluster = bosun_cluster::start(bosun_cluster::Config {
            data_dir: Some(options.data_dir.join("cluster")),
            nodes: options.nodes,
            ..Default::default()
        })
        .await
        .context("cannot start the embedded cluster")?;
        let kube_config = cluster
            .kube_config()
            .await
            .context("cannot connect to the embedded cluster")?;
        let client = bosun_runtime::connect::from_config(kube_config)?;
        label_zones(&client)
            .await
            .context("cannot label the simulated nodes")?;
        install_crd(&client)
            .await
            .context("cannot install the Plugin, SidecarSet and HealthCheck CRDs")?;
        let mut config = options.runtime.clone();
        config.data_dir = options.data_dir.join("runtime");
        config.plugins_dir = Some(options.plugins_dir.clone());
        if config.sidecars.listen.is_none() {
            // The simulated pods' sidecars run in this process: any free port will do.
            config.sidecars.listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
            config.sidecars.tls = true;
        }
        if config.webhook.listen.is_none() {
            // The embedded cluster calls admission plugins at the runtime's own loopback
            // port, trusting the CA the runtime writes into the configurations.
            config.webhook.listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
            config.webhook.url = Some("https://127.0.0.1:0".to_owned());
        }
        let configuration = config.webhook.configuration_name.clone();
        let runtime = Runtime::start(config, client.clone())
            .await
            .context("cannot start the runtime")?;
        let launcher =
            crate::launcher::Launcher::start(&runtime, options.data_dir.join("sidecars"));
        // The folder's plugins are Plugin objects too, managed by `bosun plugin …`.
        let mirror = runtime
            .publish_folder(client.clone())
            .unwrap_or_else(|| tokio::spawn(async {}));
        apply_sidecarset(&client)
            .await
            .context("cannot apply the built-in SidecarSet bosun-sidecar")?;
        // The demo's pods get their sidecar through injection: they are created once the
        // injector can inject them (or after a while without, said in the log).
        let demo = options.demo.then(|| {
            let client = client.clone();
            let runtime = runtime.clone();
            tokio::spawn(async move {
                injection_ready(&client, &runtime, &configuration, DEMO_WAIT).await;
                if let Err(e) = demo(&client).await {
                    tracing::error!(error = %e, "cannot create the demo workload");
                }
            })
        });
        Ok(Up {
            cluster: Some(cluster),
            runtime,
            client,
            launcher,
            mirror,
            demo,
        })
    }

    /// The kubeconfig of the embedded cluster.
    pub fn kubeconfig(&self) -> Option<&Path> {
        self.cluster.as_ref().map(|c| c.kubeconfig_path())
    }

    /// `(namespace/pod, probe address)` of the in-process sidecars running.
    pub fn sidecars(&self) -> Vec<(String, std::net::SocketAddr)> {
        self.launcher
            .as_ref()
            .map(crate::launcher::Launcher::running)
            .unwrap_or_default()
    }

    /// The runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// What is happening now.
    pub async fn snapshot(&self) -> Snapshot {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let pods = pods
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let ready = pods
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        let nodes: Api<Node> = Api::all(self.client.clone());
        let nodes = nodes
            .list(&ListParams::default())
            .await
            .map(|l| l.items.len())
            .unwrap_or(0);
        let registry = self.runtime.registry();
        let mut reconciles = 0;
        let plugins = registry
            .names()
            .into_iter()
            .filter_map(|n| {
                let r = registry.current(&n)?;
                reconciles += r.stats().calls;
                Some(format!(
                    "{n}@{}",
                    &bosun_host::host::log::short(r.digest())[..8]
                ))
            })
            .collect();
        Snapshot {
            pods: (ready, pods.len()),
            nodes,
            plugins,
            reconciles,
            commands: self.runtime.pipe_counts(),
            sidecars: self.runtime.sidecars().map_or(0, |(s, _)| s.connected()),
        }
    }

    /// Stops the runtime (finishing reconciles in flight), then the cluster.
    pub async fn shutdown(mut self) {
        self.mirror.abort();
        if let Some(d) = self.demo.take() {
            d.abort();
        }
        if let Some(l) = self.launcher.take() {
            l.stop().await;
        }
        self.runtime.shutdown().await;
        if let Some(cluster) = self.cluster.take() {
            cluster.shutdown().await;
        }
    }
}

fn seed(seed: &Seed, dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let file = &seed.wasm;
    let name = file.file_name().context("a plugin file has no name")?;
    let name = name
        .to_string_lossy()
        .replace("bosun_plugin_", "")
        .replace('_', "-");
    let dest = dir.join(name);
    // The config and the webhook settings first: the watcher loads the plugin with them.
    for (source, extension) in [(&seed.config, "json"), (&seed.admission, "admission.json")] {
        let Some(source) = source else { continue };
        let text =
            std::fs::read(source).with_context(|| format!("cannot read {}", source.display()))?;
        let json = dest.with_extension(extension);
        if std::fs::read(&json).ok().as_deref() != Some(text.as_slice()) {
            std::fs::write(&json, &text)
                .with_context(|| format!("cannot write {}", json.display()))?;
        }
    }
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    if std::fs::read(&dest).ok().as_deref() != Some(bytes.as_slice()) {
        // Write beside, then rename: the folder watcher never sees half a file.
        let tmp = dest.with_extension("wasm.tmp");
        std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &dest).with_context(|| format!("cannot write {}", dest.display()))?;
    }
    Ok(())
}

/// Installs (or updates) Bosun's CRDs: `Plugin`, so `bosun plugin push` works against
/// the embedded cluster, `SidecarSet`, which the built-in sidecarset-injector reads, and
/// `HealthCheck`, which the built-in remediation plugin acts on.
async fn install_crd(client: &kube::Client) -> anyhow::Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for yaml in [
        bosun_api::plugin::crd_yaml()?,
        bosun_api::sidecarset::crd_yaml()?,
        bosun_api::healthcheck::crd_yaml()?,
    ] {
        let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml)?;
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply("bosun-up").force(),
            &Patch::Apply(&crd),
        )
        .await?;
    }
    Ok(())
}

/// Applies the built-in SidecarSet (`deploy/sidecarset/bosun-sidecar.yaml`).
async fn apply_sidecarset(client: &kube::Client) -> anyhow::Result<()> {
    let api: Api<bosun_api::sidecarset::SidecarSet> = Api::all(client.clone());
    let set: bosun_api::sidecarset::SidecarSet =
        serde_json::from_value(crate::launcher::sidecarset()?)?;
    let name = set.metadata.name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply("bosun-up").force(),
        &Patch::Apply(&set),
    )
    .await?;
    Ok(())
}

/// How long the demo waits for the injector before its pods are created anyway.
const DEMO_WAIT: Duration = Duration::from_secs(120);

/// Waits until a pod created now would get the built-in sidecar: the cluster calls the
/// sidecarset-injector (its webhook is in the MutatingWebhookConfiguration) and the
/// runtime's cache, which the injector reads, holds the SidecarSet. Says so when it
/// gives up after `wait`.
async fn injection_ready(
    client: &kube::Client,
    runtime: &Runtime,
    configuration: &str,
    wait: Duration,
) -> bool {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let configurations: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let kind = bosun_runtime::informer::Kind::new("bosun.dev/v1alpha1", "SidecarSet");
    let webhook = "sidecarset-injector.plugins.bosun.dev";
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let registered = configurations
            .get_opt(configuration)
            .await
            .ok()
            .flatten()
            .and_then(|c| c.webhooks)
            .is_some_and(|w| w.iter().any(|w| w.name == webhook));
        let cached = runtime
            .informers()
            .keys(&kind)
            .iter()
            .any(|(r, _)| r.name == "bosun-sidecar");
        if registered && cached {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                webhook,
                registered,
                sidecarset_cached = cached,
                "the sidecarset-injector is not ready after {}s: the demo pods are created without their Bosun sidecar",
                wait.as_secs()
            );
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn label_zones(client: &kube::Client) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&ListParams::default()).await?;
    for (i, node) in list.items.iter().enumerate() {
        let Some(name) = node.metadata.name.as_deref() else {
            continue;
        };
        let has = node
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key("topology.kubernetes.io/zone"));
        if !has {
            let patch = json!({ "metadata": { "labels": { "topology.kubernetes.io/zone": ZONES[i % ZONES.len()] } } });
            nodes
                .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
        }
    }
    Ok(())
}

async fn demo(client: &kube::Client) -> Result<(), kube::Error> {
    let params = PatchParams::apply("bosun-up").force();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            "demo",
            &params,
            &Patch::Apply(
                json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "demo" } }),
            ),
        )
        .await?;
    let sts: Api<k8s_openapi::api::apps::v1::StatefulSet> = Api::namespaced(client.clone(), "demo");
    let web = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {
            "name": "web",
            "namespace": "demo",
            // Released in place by the release plugin: `kubectl set image` restarts
            // only the container, the pods keep their names, nodes and uids.
            "annotations": {
                "release.bosun.dev/strategy": "InPlaceIfPossible",
                "release.bosun.dev/max-unavailable": "1"
            },
            // Copied onto the running pods by the owner-labels plugin (JavaScript).
            "labels": { "team": "demo" }
        },
        "spec": {
            "replicas": 3,
            "serviceName": "web",
            "updateStrategy": { "type": "OnDelete" },
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                // Each pod gets a Bosun sidecar, injected by the built-in SidecarSet
                // for the label: pod-agent plugins whose Pod subscription matches run
                // in it.
                "metadata": {
                    "labels": { "app": "web", "sidecar.bosun.dev/inject": "true" },
                    "annotations": {
                        // The app-probe plugin (Go) answers the pod's probes.
                        "sidecar.bosun.dev/plugins": "app-probe"
                    }
                },
                "spec": { "containers": [ { "name": "web", "image": "nginx:1.27" } ] }
            }
        }
    });
    sts.patch("web", &params, &Patch::Apply(web)).await?;
    Ok(())
}

/// Waits for Ctrl-C (or SIGTERM).
pub async fn signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// How often the status line refreshes.
pub const STATUS_PERIOD: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_brings_its_config_and_webhook_settings_under_the_plugins_name() {
        let src = tempfile::tempdir().expect("tmp");
        let dir = tempfile::tempdir().expect("tmp");
        let wasm = src.path().join("bosun_plugin_sidecarset_injector.wasm");
        let admission = src.path().join("admission.json");
        std::fs::write(&wasm, b"\0asm").expect("write");
        std::fs::write(&admission, br#"{"mutating": true}"#).expect("write");
        let s = Seed {
            admission: Some(admission),
            ..Seed::new(&wasm)
        };
        seed(&s, dir.path()).expect("seeds");
        let read = |name: &str| std::fs::read(dir.path().join(name)).ok();
        assert_eq!(
            read("sidecarset-injector.wasm").as_deref(),
            Some(&b"\0asm"[..])
        );
        assert_eq!(
            read("sidecarset-injector.admission.json").as_deref(),
            Some(&br#"{"mutating": true}"#[..])
        );
        assert_eq!(read("sidecarset-injector.json"), None, "no config given");
    }
}
