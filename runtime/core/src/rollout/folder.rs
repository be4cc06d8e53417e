//! Embedded mode's plugins folder, published as `Plugin` objects so that `bosun plugin
//! status|push|promote|rollback` see and manage folder plugins like any other.
//!
//! Ownership: a Plugin has one source. `bosun plugin push` takes it over (a ConfigMap
//! source) and the folder leaves that plugin alone until its file changes; a changed
//! file is loaded by the folder and takes the source back (a file source). Each writer
//! removes the other kinds of source before it applies its own.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use bosun_api::keys;
use bosun_api::plugin::{Plugin, Source};
use bosun_host::Registry;
use kube::api::{Api, Patch, PatchParams};

use super::controller::API_VERSION;

/// The field manager of the Plugin objects the folder publishes.
pub const FIELD_MANAGER: &str = "bosun-plugins-folder";

/// An admission plugin's webhook settings beside its file (`NAME.admission.json`, a
/// Plugin's `spec.admission`), when there are readable ones.
fn admission_file(wasm: &std::path::Path) -> Option<serde_json::Value> {
    let path = wasm.with_extension("admission.json");
    let text = std::fs::read_to_string(&path).ok()?;
    let read = serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| e.to_string())
        .and_then(|v| {
            serde_json::from_value::<bosun_api::plugin::Webhook>(v.clone())
                .map(|_| v)
                .map_err(|e| e.to_string())
        });
    match read {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "the admission settings do not read as a Plugin's spec.admission; the defaults apply");
            None
        }
    }
}

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
            // A push took this plugin over after the folder published this very file (a
            // restart loads the folder again): the push stands until the file changes.
            if let Ok(Some(existing)) = api.get_opt(&name).await
                && !matches!(existing.spec.source, Source::File { .. })
                && existing
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(keys::FOLDER_DIGEST_ANNOTATION))
                    .is_some_and(|d| d == r.digest())
            {
                published.insert(name, r.digest().to_owned());
                continue;
            }
            let world = r.info().world.as_str();
            let source = Source::File {
                path: path.display().to_string(),
            };
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
            let annotations = serde_json::Map::from_iter([(
                keys::FOLDER_DIGEST_ANNOTATION.to_owned(),
                serde_json::Value::from(r.digest()),
            )]);
            let mut plugin = serde_json::json!({
                "apiVersion": API_VERSION, "kind": "Plugin",
                "metadata": {"name": name, "namespace": namespace,
                    "labels": labels, "annotations": annotations},
                "spec": {
                    "source": source,
                    "world": world,
                    "config": config,
                    "permissions": permissions,
                    "rollout": {"strategy": "direct"},
                }
            });
            if let Some(webhook) = admission_file(&path) {
                plugin["spec"]["admission"] = webhook;
            }
            // The folder's new file takes the source over from a push (one source at a time).
            let _ = api
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(source.take_over_patch()),
                )
                .await;
            match api
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
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
