//! Every acknowledged write survives a restart of the server (redb).

mod common;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn restart_keeps_objects_and_versions() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = || bosun_cluster::Config {
        data_dir: Some(dir.path().to_path_buf()),
        nodes: 0,
        ..Default::default()
    };
    let c = common::with(config()).await?;
    assert!(c.kubeconfig_path().starts_with(dir.path()));
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client().await?);
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "kept"}, "data": {"k": "v"}}))?;
    let created = cms.create(&PostParams::default(), &cm).await?;
    let rv_before: u64 = created
        .metadata
        .resource_version
        .unwrap_or_default()
        .parse()?;
    let crds: Api<CustomResourceDefinition> = Api::all(c.client().await?);
    crds.create(&PostParams::default(), &serde_json::from_value(json!({
        "metadata": {"name": "widgets.bosun.dev"},
        "spec": {"group": "bosun.dev", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))?)
    .await?;
    c.shutdown().await;

    let c = common::with(config()).await?;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client().await?);
    let kept = cms.get("kept").await?;
    assert_eq!(kept.data.unwrap_or_default()["k"], "v");
    assert_eq!(kept.metadata.uid, created.metadata.uid);
    let list_rv: u64 = cms
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default()
        .parse()?;
    assert!(list_rv >= rv_before, "the version counter does not go back");
    let next = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "next"}}))?,
        )
        .await?;
    let rv_next: u64 = next.metadata.resource_version.unwrap_or_default().parse()?;
    assert!(rv_next > rv_before);
    // Custom resources stay served: the definitions are reloaded.
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("bosun.dev", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::default_namespaced_with(c.client().await?, &ar);
    widgets
        .create(&PostParams::default(), &DynamicObject::new("w", &ar))
        .await?;
    assert_eq!(widgets.list(&ListParams::default()).await?.items.len(), 1);
    c.shutdown().await;
    Ok(())
}
