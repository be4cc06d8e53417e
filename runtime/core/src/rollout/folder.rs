//! Embedded mode's plugins folder, published as `Plugin` objects so that `bosun plugin
//! status|push|promote|rollback` see and manage folder plugins like any other.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use bosun_api::keys;
use bosun_api::plugin::Plugin;
use bosun_host::Registry;
use kube::api::{Api, Patch, PatchParams};

use super::controller::API_VERSION;

/// Embedded mode: every plugin the plugins folder loaded is published as a `Plugin`
/// object (a `file` source), so `bosun plugin status|push|promote|rollback` see and
/// manage folder plugins like any other. A plugin whose serving revision did not come
/// from the folder (a push took over) is left alone until the folder's file changes.
pub async fn mirror_folder(
    registry: Weak<Registry>,
    client: kube::Client,
    dir: std::path::PathBuf,
    namespace: String,
) {
    let mut published: HashMap<String, String> = HashMap::new();
    let api: Api<Plugin> = Api::namespaced(client, &namespace);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(registry) = registry.upgrade() else {
            return;
        };
        for name in registry.names() {
            let Some(r) = registry.current(&name) else {
                continue;
            };
            let Ok(path) = std::fs::canonicalize(&r.info().origin) else {
                continue;
            };
            if !path.starts_with(&dir)
                || published.get(&name).map(String::as_str) == Some(r.digest())
            {
                continue;
            }
            let world = r.info().world.as_str();
            let permissions: Vec<serde_json::Value> = r
                .metadata()
                .permissions
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "apiVersion": p.api_version,
                        "kind": p.kind,
                        "verbs": p.verbs.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let config: serde_json::Value =
                serde_json::from_str(r.config()).unwrap_or_else(|_| serde_json::json!({}));
            let labels = serde_json::Map::from_iter([(
                keys::SOURCE_LABEL.to_owned(),
                serde_json::Value::from(keys::SOURCE_FOLDER),
            )]);
            let plugin = serde_json::json!({
                "apiVersion": API_VERSION, "kind": "Plugin",
                "metadata": {"name": name, "namespace": namespace,
                    "labels": labels},
                "spec": {
                    "source": {"file": {"path": path.display().to_string()}},
                    "world": world,
                    "config": config,
                    "permissions": permissions,
                    "rollout": {"strategy": "direct"},
                }
            });
            match api
                .patch(
                    &name,
                    &PatchParams::apply("bosun-plugins-folder").force(),
                    &Patch::Apply(&plugin),
                )
                .await
            {
                Ok(_) => {
                    tracing::info!(plugin = %name, "published the folder's plugin as a Plugin object");
                    published.insert(name, r.digest().to_owned());
                }
                // The CRD may not be installed (yet): try again next round.
                Err(e) => {
                    tracing::debug!(plugin = %name, error = %e, "cannot publish the Plugin object")
                }
            }
        }
    }
}
