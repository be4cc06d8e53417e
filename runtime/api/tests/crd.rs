//! The checked-in CRD is what the Rust types generate.

use std::path::Path;

#[test]
fn the_checked_in_plugin_crd_is_fresh() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds/plugin.yaml");
    let generated = bosun_api::plugin::crd_yaml().expect("serialises");
    if std::env::var_os("BOSUN_UPDATE_CRDS").is_some() {
        std::fs::write(&path, &generated).expect("write the CRD");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "deploy/crds/plugin.yaml is stale: run `BOSUN_UPDATE_CRDS=1 cargo test -p bosun-api --test crd` and commit it"
    );
}

#[test]
fn a_plugin_manifest_parses() {
    let yaml = r#"
apiVersion: bosun.dev/v1alpha1
kind: Plugin
metadata: {name: zone-labeler, namespace: bosun-system}
spec:
  source: {file: {path: /plugins/zone-labeler.wasm}}
  world: controller
  config: {label: topology.kubernetes.io/zone}
  permissions: [{apiVersion: v1, kind: Pod, verbs: [read, patch]}]
  rollout: {strategy: canary, canary: {share: 10, analysis: {maxErrorRate: 0.05, minSamples: 50, windowSeconds: 600}}}
"#;
    // Objects arrive as JSON from the API server; go through a JSON value as they would.
    let value: serde_json::Value = serde_yaml::from_str(yaml).expect("yaml");
    let p: bosun_api::plugin::Plugin = serde_json::from_value(value).expect("parses");
    assert_eq!(p.spec.world, bosun_api::plugin::World::Controller);
    assert!(matches!(
        p.spec.source,
        bosun_api::plugin::Source::File { .. }
    ));
    assert_eq!(
        p.spec.rollout.canary.as_ref().and_then(|c| c.share),
        Some(10)
    );
}

#[tokio::test]
async fn the_crd_installs_and_serves_plugins() {
    use kube::api::{Api, PostParams};
    let cluster = bosun_cluster::start(bosun_cluster::Config {
        nodes: 0,
        ..Default::default()
    })
    .await
    .expect("cluster");
    let client = cluster.client().await.expect("client");
    let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_yaml::from_str(&bosun_api::plugin::crd_yaml().expect("yaml")).expect("crd");
    let crds = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("the CRD is accepted");
    let plugins: Api<bosun_api::plugin::Plugin> = Api::namespaced(client, "default");
    let plugin: bosun_api::plugin::Plugin = serde_json::from_value(serde_json::json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "Plugin",
        "metadata": {"name": "zone-labeler"},
        "spec": {"source": {"file": {"path": "/plugins/zone-labeler.wasm"}}, "world": "controller", "config": {"a": 1}}
    }))
    .expect("plugin");
    let mut created = None;
    for _ in 0..50 {
        match plugins.create(&PostParams::default(), &plugin).await {
            Ok(p) => {
                created = Some(p);
                break;
            }
            // The new kind is served as soon as the CRD is established.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    let created = created.expect("a Plugin can be created");
    assert_eq!(created.spec.config, Some(serde_json::json!({"a": 1})));
    let bad: Result<bosun_api::plugin::Plugin, _> = serde_json::from_value(serde_json::json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "Plugin", "metadata": {"name": "bad"},
        "spec": {"source": {"file": {"path": "x"}}, "world": "sidecar"}
    }));
    assert!(bad.is_err(), "an unknown world is refused");
    cluster.shutdown().await;
}
