//! The link's CA where the sidecars mount it: a ConfigMap in every namespace, kept by the
//! leader, as kube-controller-manager's root-CA publisher keeps `kube-root-ca.crt`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::informer::{Informers, Kind};

/// Field manager of the published ConfigMaps.
const MANAGER: &str = "bosun-runtime";
/// Every namespace is published again this often, so a deleted ConfigMap comes back.
const REFRESH: Duration = Duration::from_secs(600);

/// Keeps ConfigMap `name` (key `ca.pem`: `ca`) in every namespace while this runtime
/// leads. Terminating namespaces are skipped (the API server refuses new objects there).
pub async fn ca(
    informers: Arc<Informers>,
    client: kube::Client,
    mut leading: watch::Receiver<bool>,
    name: String,
    ca: String,
) {
    let span = tracing::info_span!("bosun.sidecars.publish_ca", configmap = %name);
    let namespaces = Kind::new("v1", "Namespace");
    let object = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "bosun"}},
        "data": {"ca.pem": ca},
    });
    // Published, and refused (said once each until they succeed).
    let mut done: HashSet<String> = HashSet::new();
    let mut warned: HashSet<String> = HashSet::new();
    let mut last_full = Instant::now();
    loop {
        if *leading.borrow() && informers.is_synced(&namespaces) {
            if last_full.elapsed() > REFRESH {
                done.clear();
                last_full = Instant::now();
            }
            for (r, _) in informers.keys(&namespaces) {
                if done.contains(&r.name) || terminating(&informers, &r) {
                    continue;
                }
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), &r.name);
                match api
                    .patch(
                        &name,
                        &PatchParams::apply(MANAGER).force(),
                        &Patch::Apply(&object),
                    )
                    .await
                {
                    Ok(_) => {
                        warned.remove(&r.name);
                        done.insert(r.name.clone());
                    }
                    Err(e) => {
                        if warned.insert(r.name.clone()) {
                            tracing::warn!(parent: &span, namespace = %r.name, error = %e, "cannot publish the sidecar link's CA");
                        }
                    }
                }
            }
        } else if !*leading.borrow() {
            done.clear();
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            r = leading.changed() => if r.is_err() { return },
        }
    }
}

fn terminating(informers: &Informers, r: &bosun_host::contract::ObjectRef) -> bool {
    informers
        .get(r)
        .and_then(|o| serde_json::from_str::<Value>(&o).ok())
        .is_some_and(|o| o["status"]["phase"] == "Terminating")
}
