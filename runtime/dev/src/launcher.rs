//! The simulated kubelet's part for Bosun's sidecar: the embedded cluster's pods are
//! simulated, so for every running pod that carries a `bosun-sidecar` container (put
//! there by the built-in SidecarSet, `deploy/sidecarset/bosun-sidecar.yaml`, through
//! the sidecarset-injector admission plugin) the runtime starts a real sidecar
//! in-process (the same code as the `bosun-sidecar` binary) configured from that
//! container's environment, and stops it (`on-stop` included) when the pod goes away or
//! the kubelet restarts that container (an in-place upgrade of the sidecar).
//!
//! The container's env is resolved as a kubelet resolves it (values, and the downward
//! API's `fieldRef`s) and read by the sidecar's own [`SidecarConfig::from_vars`], so a
//! broken manifest fails here as it would in a pod. What names the machine it runs on
//! is replaced: the runtime's address and CA are this process's link, the token is one
//! the runtime issues (there are no projected tokens here), probes listen on a free
//! loopback port and the directories live under `bosun up`'s data folder.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bosun_sidecar::config::Token;
use bosun_sidecar::{Config as SidecarConfig, Sidecar};

use bosun_api::keys::SIDECAR_CONTAINER;
use bosun_runtime::Runtime;
use bosun_runtime::informer::Kind;

/// The built-in SidecarSet that injects the sidecar into opted-in pods.
pub const SIDECARSET_YAML: &str = include_str!("../../../deploy/sidecarset/bosun-sidecar.yaml");

/// The built-in SidecarSet as JSON.
pub fn sidecarset() -> Result<serde_json::Value, serde_yaml::Error> {
    serde_yaml::from_str(SIDECARSET_YAML)
}

/// The built-in SidecarSet's `bosun-sidecar` container as a pod's container (without
/// the SidecarSet's own fields): what injection puts into a pod, less `IS_INJECTED`.
pub fn container() -> Result<serde_json::Value, serde_yaml::Error> {
    let mut c = sidecarset()?["spec"]["containers"][0].take();
    if let Some(c) = c.as_object_mut() {
        for field in [
            "podInjectPolicy",
            "shareVolumePolicy",
            "upgradeStrategy",
            "transferEnv",
        ] {
            c.remove(field);
        }
    }
    Ok(c)
}

/// Runs sidecars for the embedded cluster's pods that carry the sidecar container.
pub struct Launcher {
    running: Arc<Mutex<HashMap<(String, String), Running>>>,
    task: tokio::task::JoinHandle<()>,
}

struct Running {
    /// The pod's uid and the sidecar container's restart count when it started.
    incarnation: (String, i64),
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
    incarnation: (String, i64),
    labels: String,
    /// The sidecar's configuration from the container's env, or why it has none.
    config: Result<SidecarConfig, String>,
}

fn wanted(object: &serde_json::Value) -> Option<Wanted> {
    let meta = &object["metadata"];
    let container = object["spec"]["containers"]
        .as_array()?
        .iter()
        .find(|c| c["name"].as_str() == Some(SIDECAR_CONTAINER))?;
    if object["status"]["phase"].as_str() != Some("Running") || !meta["deletionTimestamp"].is_null()
    {
        return None;
    }
    let restarts = object["status"]["containerStatuses"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|s| s["name"].as_str() == Some(SIDECAR_CONTAINER))
        })
        .and_then(|s| s["restartCount"].as_i64())
        .unwrap_or(0);
    let config = environment(object, container).and_then(|vars| {
        SidecarConfig::from_vars(|k| vars.get(k).cloned()).map_err(|e| e.to_string())
    });
    Some(Wanted {
        namespace: meta["namespace"].as_str()?.to_owned(),
        name: meta["name"].as_str()?.to_owned(),
        incarnation: (meta["uid"].as_str()?.to_owned(), restarts),
        labels: meta["labels"].as_object().map_or_else(
            || "{}".to_owned(),
            |l| serde_json::Value::Object(l.clone()).to_string(),
        ),
        config,
    })
}

/// The container's environment as the kubelet gives it: literal values and the
/// downward API's `fieldRef`s (`$(VAR)` references are not expanded). Any other source
/// (Secrets, ConfigMaps, resources) is an error: the sidecar needs none.
fn environment(
    pod: &serde_json::Value,
    container: &serde_json::Value,
) -> Result<HashMap<String, String>, String> {
    let mut vars = HashMap::new();
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap_or_default();
        let value = if let Some(v) = var["value"].as_str() {
            v.to_owned()
        } else if let Some(path) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            field(pod, path).ok_or_else(|| {
                format!("env {name}: fieldRef {path:?} is not a field the downward API gives")
            })?
        } else if var["valueFrom"].is_object() {
            return Err(format!(
                "env {name}: only values and fieldRefs are resolved for the simulated pod"
            ));
        } else {
            String::new()
        };
        vars.insert(name.to_owned(), value);
    }
    Ok(vars)
}

/// A downward-API field of the pod (the `fieldRef` paths a kubelet accepts for env).
fn field(pod: &serde_json::Value, path: &str) -> Option<String> {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let keyed = |map: &str, rest: &str| -> Option<String> {
        let key = rest.strip_prefix("['")?.strip_suffix("']")?;
        Some(text(&pod["metadata"][map][key]))
    };
    Some(match path {
        "metadata.name" => text(&pod["metadata"]["name"]),
        "metadata.namespace" => text(&pod["metadata"]["namespace"]),
        "metadata.uid" => text(&pod["metadata"]["uid"]),
        "spec.nodeName" => text(&pod["spec"]["nodeName"]),
        "spec.serviceAccountName" => text(&pod["spec"]["serviceAccountName"]),
        "status.hostIP" => text(&pod["status"]["hostIP"]),
        "status.podIP" => text(&pod["status"]["podIP"]),
        _ => {
            if let Some(rest) = path.strip_prefix("metadata.labels") {
                keyed("labels", rest)?
            } else if let Some(rest) = path.strip_prefix("metadata.annotations") {
                keyed("annotations", rest)?
            } else {
                return None;
            }
        }
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
            // Pods whose sidecar container has an invalid environment (logged once).
            let mut refused: HashSet<(String, i64)> = HashSet::new();
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
                // Stop sidecars whose pod is gone, was replaced (a new uid) or whose
                // sidecar container the kubelet restarted.
                let stale: Vec<Running> = {
                    let mut map = r.lock().unwrap_or_else(PoisonError::into_inner);
                    let keys: Vec<(String, String)> = map
                        .iter()
                        .filter(|(k, run)| {
                            present
                                .get(*k)
                                .is_none_or(|w| w.incarnation != run.incarnation)
                        })
                        .map(|(k, _)| k.clone())
                        .collect();
                    keys.iter().filter_map(|k| map.remove(k)).collect()
                };
                for s in stale {
                    s.sidecar.stop().await;
                }
                refused.retain(|i| present.values().any(|w| &w.incarnation == i));
                for (key, w) in present {
                    if r.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .contains_key(&key)
                        || refused.contains(&w.incarnation)
                    {
                        continue;
                    }
                    let pod = format!("{}/{}", key.0, key.1);
                    let mut config = match w.config {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::error!(%pod, error = %e, "the pod's bosun-sidecar container cannot start: its environment is invalid");
                            refused.insert(w.incarnation);
                            continue;
                        }
                    };
                    let pod_dir = dir.join(&w.namespace).join(&w.name);
                    config.token =
                        Token::Value(sidecars.issue_token(&w.namespace, &w.name, &w.incarnation.0));
                    config.labels = w.labels;
                    config.runtime = address.clone();
                    config.runtime_ca = ca.clone();
                    config.probe_addr = SocketAddr::from(([127, 0, 0, 1], 0));
                    config.shared_dir = pod_dir.join(&w.incarnation.0).join("shared");
                    config.data_dir = pod_dir.join("data");
                    config.reconnect_max = Duration::from_secs(2);
                    match Sidecar::start(config).await {
                        Ok(sidecar) => {
                            tracing::info!(%pod, probes = %sidecar.probe_addr(), "sidecar started for the simulated pod");
                            r.lock().unwrap_or_else(PoisonError::into_inner).insert(
                                key,
                                Running {
                                    incarnation: w.incarnation,
                                    sidecar,
                                },
                            );
                        }
                        Err(e) => {
                            tracing::error!(%pod, error = %format!("{e:#}"), "cannot start the sidecar");
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(container: serde_json::Value) -> serde_json::Value {
        json!({
            "metadata": {"name": "web-0", "namespace": "demo", "uid": "u-1",
                "labels": {"app": "web", "tier": "front"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "web"}, container]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "web", "restartCount": 7}, {"name": "bosun-sidecar", "restartCount": 2}]}
        })
    }

    #[test]
    fn the_built_in_container_configures_the_sidecar_from_the_downward_api() {
        let w = wanted(&pod(container().expect("built-in"))).expect("wanted");
        let c = w.config.expect("valid environment");
        assert_eq!(
            (c.namespace.as_str(), c.pod.as_str(), c.uid.as_str()),
            ("demo", "web-0", "u-1")
        );
        assert_eq!(c.node, "node-1");
        assert_eq!(c.runtime, "https://bosun-runtime.bosun-system.svc:9470");
        assert!(matches!(c.token, Token::File(ref f) if f.ends_with("token")));
        assert_eq!(
            w.incarnation,
            ("u-1".to_owned(), 2),
            "the sidecar's own restarts"
        );
        assert_eq!(w.labels, r#"{"app":"web","tier":"front"}"#);
    }

    #[test]
    fn only_running_pods_that_carry_the_container_want_a_sidecar() {
        let mut p = pod(json!({"name": "other"}));
        assert!(wanted(&p).is_none(), "no bosun-sidecar container");
        p = pod(container().expect("built-in"));
        p["status"]["phase"] = "Pending".into();
        assert!(wanted(&p).is_none(), "not running yet");
        p["status"]["phase"] = "Running".into();
        p["metadata"]["deletionTimestamp"] = "2026-12-06T00:00:00Z".into();
        assert!(wanted(&p).is_none(), "terminating");
    }

    #[test]
    fn a_broken_environment_is_refused_naming_the_variable() {
        let mut c = container().expect("built-in");
        c["env"]
            .as_array_mut()
            .expect("env")
            .retain(|v| v["name"] != "POD_UID");
        let e = wanted(&pod(c.clone()))
            .expect("wanted")
            .config
            .expect_err("refused");
        assert!(e.starts_with("POD_UID: not set"), "{e}");

        c["env"].as_array_mut().expect("env").push(json!(
            {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.generation"}}}));
        let e = wanted(&pod(c.clone()))
            .expect("wanted")
            .config
            .expect_err("refused");
        assert!(e.contains("metadata.generation"), "{e}");

        let last = c["env"].as_array().expect("env").len() - 1;
        c["env"][last] = json!(
            {"name": "POD_UID", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}});
        let e = wanted(&pod(c))
            .expect("wanted")
            .config
            .expect_err("refused");
        assert!(e.contains("only values and fieldRefs"), "{e}");
    }

    #[test]
    fn downward_api_fields_resolve_like_the_kubelets() {
        let p = pod(json!({}));
        assert_eq!(
            field(&p, "metadata.labels['tier']").as_deref(),
            Some("front")
        );
        assert_eq!(field(&p, "metadata.labels['none']").as_deref(), Some(""));
        assert_eq!(field(&p, "metadata.labels"), None);
        assert_eq!(field(&p, "spec.nodeName").as_deref(), Some("node-1"));
    }
}
