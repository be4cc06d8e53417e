//! Sidecars for the embedded cluster: its pods are simulated, so the runtime starts a
//! real sidecar (in-process, the same code as the `bosun-sidecar` binary) for every
//! running pod annotated `sidecar.bosun.dev/inject: "true"`, with a token the runtime
//! issues, and stops it (`on-stop` included) when the pod goes away.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bosun_sidecar::config::Token;
use bosun_sidecar::{Config as SidecarConfig, Sidecar};

use bosun_runtime::Runtime;
use bosun_runtime::informer::Kind;

/// The annotation that asks for a sidecar.
pub const INJECT: &str = "sidecar.bosun.dev/inject";

/// Runs sidecars for the embedded cluster's annotated pods.
pub struct Launcher {
    running: Arc<Mutex<HashMap<(String, String), Running>>>,
    task: tokio::task::JoinHandle<()>,
}

struct Running {
    uid: String,
    sidecar: Sidecar,
}

impl std::fmt::Debug for Launcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launcher").finish_non_exhaustive()
    }
}

struct Wanted {
    namespace: String,
    name: String,
    uid: String,
    node: String,
    labels: String,
}

fn wanted(object: &serde_json::Value) -> Option<Wanted> {
    let meta = &object["metadata"];
    if meta["annotations"][INJECT].as_str() != Some("true")
        || object["status"]["phase"].as_str() != Some("Running")
        || !meta["deletionTimestamp"].is_null()
    {
        return None;
    }
    Some(Wanted {
        namespace: meta["namespace"].as_str()?.to_owned(),
        name: meta["name"].as_str()?.to_owned(),
        uid: meta["uid"].as_str()?.to_owned(),
        node: object["spec"]["nodeName"].as_str().unwrap_or("").to_owned(),
        labels: meta["labels"].as_object().map_or_else(
            || "{}".to_owned(),
            |l| serde_json::Value::Object(l.clone()).to_string(),
        ),
    })
}

impl Launcher {
    /// Starts watching `runtime`'s pods; sidecar state goes under `dir`. `None` when the
    /// runtime has no sidecar link.
    pub fn start(runtime: &Arc<Runtime>, dir: PathBuf) -> Option<Launcher> {
        let (sidecars, addr) = runtime.sidecars()?;
        let sidecars = sidecars.clone();
        let informers = runtime.informers().clone();
        informers.watch(Kind::new("v1", "Pod"));
        let scheme = if sidecars.ca_file().is_some() {
            "https"
        } else {
            "http"
        };
        let address = format!("{scheme}://{}", loopback(addr));
        let ca = sidecars.ca_file().map(std::path::Path::to_path_buf);
        let running: Arc<Mutex<HashMap<(String, String), Running>>> = Arc::default();
        let r = running.clone();
        let task = tokio::spawn(async move {
            loop {
                let mut present = HashMap::new();
                for (target, _) in informers.keys(&Kind::new("v1", "Pod")) {
                    let Some(json) = informers.get(&target) else {
                        continue;
                    };
                    let Ok(object) = serde_json::from_str::<serde_json::Value>(&json) else {
                        continue;
                    };
                    if let Some(w) = wanted(&object) {
                        present.insert((w.namespace.clone(), w.name.clone()), w);
                    }
                }
                // Stop sidecars whose pod is gone (or was replaced by a new uid).
                let stale: Vec<Running> = {
                    let mut map = r.lock().unwrap_or_else(PoisonError::into_inner);
                    let keys: Vec<(String, String)> = map
                        .iter()
                        .filter(|(k, run)| present.get(*k).is_none_or(|w| w.uid != run.uid))
                        .map(|(k, _)| k.clone())
                        .collect();
                    keys.iter().filter_map(|k| map.remove(k)).collect()
                };
                for s in stale {
                    s.sidecar.stop().await;
                }
                for (key, w) in present {
                    if r.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .contains_key(&key)
                    {
                        continue;
                    }
                    let pod_dir = dir.join(&w.namespace).join(&w.name);
                    let config = SidecarConfig {
                        token: Token::Value(sidecars.issue_token(&w.namespace, &w.name, &w.uid)),
                        namespace: w.namespace.clone(),
                        pod: w.name.clone(),
                        uid: w.uid.clone(),
                        node: w.node,
                        labels: w.labels,
                        runtime: address.clone(),
                        runtime_ca: ca.clone(),
                        probe_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                        shared_dir: pod_dir.join(&w.uid).join("shared"),
                        data_dir: pod_dir.join("data"),
                        reconnect_max: Duration::from_secs(2),
                        probe_timeout: Duration::from_secs(1),
                    };
                    match Sidecar::start(config).await {
                        Ok(sidecar) => {
                            tracing::info!(pod = %format!("{}/{}", key.0, key.1), probes = %sidecar.probe_addr(), "sidecar started for the simulated pod");
                            r.lock().unwrap_or_else(PoisonError::into_inner).insert(
                                key,
                                Running {
                                    uid: w.uid,
                                    sidecar,
                                },
                            );
                        }
                        Err(e) => {
                            tracing::error!(pod = %format!("{}/{}", key.0, key.1), error = %format!("{e:#}"), "cannot start the sidecar");
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        Some(Launcher { running, task })
    }

    /// `(namespace/pod, probe address)` of the sidecars running.
    pub fn running(&self) -> Vec<(String, SocketAddr)> {
        let map = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<(String, SocketAddr)> = map
            .iter()
            .map(|((ns, p), r)| (format!("{ns}/{p}"), r.sidecar.probe_addr()))
            .collect();
        list.sort();
        list
    }

    /// Stops every sidecar gracefully.
    pub async fn stop(self) {
        self.task.abort();
        let all: Vec<Running> = {
            let mut map = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            map.drain().map(|(_, r)| r).collect()
        };
        for r in all {
            r.sidecar.stop().await;
        }
    }
}

/// A wildcard listen address is reached on loopback.
fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}
