//! The checked-in CRD is what the Rust types generate.

use std::path::Path;

/// Compares a checked-in CRD with what the types generate (and rewrites it when asked).
fn assert_fresh(file: &str, generated: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/crds")
        .join(file);
    if std::env::var_os("BOSUN_UPDATE_CRDS").is_some() {
        std::fs::write(&path, generated).expect("write the CRD");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "deploy/crds/{file} is stale: run `BOSUN_UPDATE_CRDS=1 cargo test -p bosun-api --test crd` and commit it"
    );
}

#[test]
fn the_checked_in_plugin_crd_is_fresh() {
    assert_fresh(
        "plugin.yaml",
        &bosun_api::plugin::crd_yaml().expect("serialises"),
    );
}

#[test]
fn the_checked_in_sidecarset_crd_is_fresh() {
    assert_fresh(
        "sidecarset.yaml",
        &bosun_api::sidecarset::crd_yaml().expect("serialises"),
    );
}

#[test]
fn the_checked_in_healthcheck_crd_is_fresh() {
    assert_fresh(
        "healthcheck.yaml",
        &bosun_api::healthcheck::crd_yaml().expect("serialises"),
    );
}

#[test]
fn a_healthcheck_manifest_parses() {
    let yaml = r#"
apiVersion: bosun.dev/v1alpha1
kind: HealthCheck
metadata: {name: workers}
spec:
  target: {kind: Node}
  selector:
    matchExpressions: [{key: node-role.kubernetes.io/control-plane, operator: DoesNotExist}]
  unhealthyConditions:
  - {type: Ready, status: "False", duration: 300s}
  - {type: Ready, status: Unknown, duration: 5m}
  minHealthy: 51%
  maxInFlight: 1
  escalatingRemediations:
  - {action: cordon, order: 1, timeout: 60s}
  - {action: reboot, order: 2, timeout: 10m}
  pauseRequests: [cluster-upgrade]
  stormCooldownDuration: 2m
"#;
    let value: serde_json::Value = serde_yaml::from_str(yaml).expect("yaml");
    let hc: bosun_api::healthcheck::HealthCheck = serde_json::from_value(value).expect("parses");
    use bosun_api::healthcheck::{Action, ConditionStatus, TargetKind};
    assert_eq!(hc.spec.target.kind, TargetKind::Node);
    assert_eq!(
        hc.spec.unhealthy_conditions[0].status,
        ConditionStatus::False
    );
    assert_eq!(hc.spec.escalating_remediations[1].action, Action::Reboot);
    assert_eq!(hc.spec.healthy_threshold(10), Ok(6));
    assert_eq!(hc.spec.max_in_flight(10), Ok(Some(1)));
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

/// An embedded cluster with the CRD in `yaml` installed.
async fn cluster_with(yaml: &str) -> (bosun_cluster::Cluster, kube::Client) {
    let cluster = bosun_cluster::start(bosun_cluster::Config {
        nodes: 0,
        ..Default::default()
    })
    .await
    .expect("cluster");
    let client = cluster.client().await.expect("client");
    let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_yaml::from_str(yaml).expect("crd");
    kube::Api::all(client.clone())
        .create(&kube::api::PostParams::default(), &crd)
        .await
        .expect("the CRD is accepted");
    (cluster, client)
}

#[tokio::test]
async fn the_crd_installs_and_serves_plugins() {
    use kube::api::{Api, PostParams};
    let (cluster, client) = cluster_with(&bosun_api::plugin::crd_yaml().expect("yaml")).await;
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

#[tokio::test]
async fn the_sidecarset_crd_installs_and_serves_kruise_manifests() {
    use kube::api::{Api, PostParams};
    let (cluster, client) = cluster_with(&bosun_api::sidecarset::crd_yaml().expect("yaml")).await;
    // A Kruise manifest (config/samples of openkruise/kruise, plus the fields of the
    // subset) with only its apiVersion changed, sent as JSON as kubectl would.
    let manifest: serde_json::Value = serde_yaml::from_str(
        r#"
apiVersion: bosun.dev/v1alpha1
kind: SidecarSet
metadata: {name: test-sidecarset}
spec:
  selector:
    matchLabels: {app: nginx}
  namespaceSelector:
    matchExpressions: [{key: team, operator: In, values: [a, b]}]
  containers:
  - name: sidecar1
    image: centos:6.7
    command: ["sleep", "999d"]
    podInjectPolicy: BeforeAppContainer
    shareVolumePolicy: {type: disabled}
    upgradeStrategy: {upgradeType: ColdUpgrade}
    transferEnv: [{sourceContainerNameFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}, envNames: [TZ]}]
    volumeMounts: [{name: log-volume, mountPath: /var/log}]
    resources: {limits: {cpu: 100m}}
    shareVolumeDevicePolicy: {type: disabled}
  volumes:
  - {name: log-volume, emptyDir: {}}
  updateStrategy: {partition: 30%}
  revisionHistoryLimit: 5
"#,
    )
    .expect("yaml");
    let gvk = kube::api::GroupVersionKind::gvk("bosun.dev", "v1alpha1", "SidecarSet");
    let api: Api<kube::api::DynamicObject> = Api::all_with(
        client,
        &kube::api::ApiResource::from_gvk_with_plural(&gvk, "sidecarsets"),
    );
    let object = |v: &serde_json::Value| -> kube::api::DynamicObject {
        serde_json::from_value(v.clone()).expect("an object")
    };
    let mut created = None;
    for _ in 0..50 {
        match api.create(&PostParams::default(), &object(&manifest)).await {
            Ok(s) => {
                created = Some(serde_json::to_value(s).expect("json"));
                break;
            }
            // The new kind is served as soon as the CRD is established.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    let created = created.expect("a SidecarSet can be created");
    // The container is stored as written, Kruise's other fields included: the hashes
    // cover it as stored.
    assert_eq!(
        created["spec"]["containers"],
        manifest["spec"]["containers"]
    );
    // Fields outside the subset are pruned; updateStrategy's defaults are written.
    assert!(
        created["spec"].get("revisionHistoryLimit").is_none(),
        "{created}"
    );
    assert_eq!(
        created["spec"]["updateStrategy"],
        serde_json::json!({"type": "RollingUpdate", "partition": "30%", "maxUnavailable": 1})
    );
    let typed: bosun_api::sidecarset::SidecarSet =
        serde_json::from_value(created).expect("reads as the Rust type");
    assert_eq!(typed.spec.containers[0].container.name, "sidecar1");
    let hot = serde_json::json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "SidecarSet", "metadata": {"name": "hot"},
        "spec": {"selector": {"matchLabels": {"app": "x"}},
                 "containers": [{"name": "envoy", "image": "envoy", "upgradeStrategy": {"upgradeType": "HotUpgrade"}}]}
    });
    let refused = api
        .create(&PostParams::default(), &object(&hot))
        .await
        .expect_err("a hot upgrade is refused");
    assert!(refused.to_string().contains("upgradeType"), "{refused}");
    let no_selector = serde_json::json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "SidecarSet", "metadata": {"name": "no-selector"},
        "spec": {"containers": [{"name": "s", "image": "busybox"}]}
    });
    let refused = api
        .create(&PostParams::default(), &object(&no_selector))
        .await
        .expect_err("the selector is required");
    assert!(refused.to_string().contains("selector"), "{refused}");
    cluster.shutdown().await;
}

#[tokio::test]
async fn the_healthcheck_crd_installs_and_checks_what_nhc_checks() {
    use kube::api::{Api, PostParams};
    let (cluster, client) = cluster_with(&bosun_api::healthcheck::crd_yaml().expect("yaml")).await;
    let gvk = kube::api::GroupVersionKind::gvk("bosun.dev", "v1alpha1", "HealthCheck");
    let api: Api<kube::api::DynamicObject> = Api::all_with(
        client,
        &kube::api::ApiResource::from_gvk_with_plural(&gvk, "healthchecks"),
    );
    let object = |name: &str, spec: serde_json::Value| -> kube::api::DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "bosun.dev/v1alpha1", "kind": "HealthCheck",
            "metadata": {"name": name}, "spec": spec
        }))
        .expect("an object")
    };
    let good = serde_json::json!({
        "target": {"kind": "Pod", "namespaceSelector": {"matchLabels": {"team": "shop"}}},
        "selector": {},
        "unhealthyConditions": [{"type": "CrashLoopBackOff", "status": "True", "duration": "1m30s"}],
        "maxUnhealthy": "25%",
        "escalatingRemediations": [{"action": "restart-container", "order": 1, "timeout": "60s"},
                                   {"action": "delete-pod", "order": 2, "timeout": "2m"}],
        "healthyDelay": "0s"
    });
    let mut created = None;
    for _ in 0..50 {
        match api
            .create(&PostParams::default(), &object("good", good.clone()))
            .await
        {
            Ok(h) => {
                created = Some(serde_json::to_value(h).expect("json"));
                break;
            }
            // The new kind is served as soon as the CRD is established.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    let created = created.expect("a HealthCheck can be created");
    assert_eq!(created["spec"], good);
    assert!(
        created["metadata"].get("namespace").is_none(),
        "cluster-scoped"
    );
    let typed: bosun_api::healthcheck::HealthCheck =
        serde_json::from_value(created).expect("reads as the Rust type");
    assert_eq!(typed.spec.healthy_threshold(8), Ok(6));

    let with = |change: serde_json::Value| {
        let mut spec = good.clone();
        for (k, v) in change.as_object().expect("object") {
            if v.is_null() {
                spec.as_object_mut().expect("object").remove(k);
            } else {
                spec[k] = v.clone();
            }
        }
        spec
    };
    for (name, spec, expected) in [
        (
            "both",
            with(serde_json::json!({"minHealthy": 2})),
            "\"spec\" must validate one and only one schema (oneOf)",
        ),
        (
            "neither",
            with(serde_json::json!({"maxUnhealthy": null})),
            "\"spec\" must validate one and only one schema (oneOf)",
        ),
        (
            "percent",
            with(serde_json::json!({"maxUnhealthy": "101%"})),
            "spec.maxUnhealthy: Invalid value",
        ),
        (
            "same-order",
            with(serde_json::json!({"escalatingRemediations": [
                {"action": "restart-container", "order": 1, "timeout": "60s"},
                {"action": "delete-pod", "order": 1, "timeout": "2m"}]})),
            "spec.escalatingRemediations[1]: Duplicate value",
        ),
        (
            "duration",
            with(serde_json::json!({"unhealthyConditions": [
                {"type": "Ready", "status": "False", "duration": "5 minutes"}]})),
            "spec.unhealthyConditions[0].duration: Invalid value",
        ),
        (
            "action",
            with(serde_json::json!({"escalatingRemediations": [
                {"action": "power-cycle", "order": 1, "timeout": "60s"}]})),
            "spec.escalatingRemediations[0].action: Unsupported value",
        ),
        (
            "delay",
            with(serde_json::json!({"healthyDelay": "-1s"})),
            "spec.healthyDelay: Invalid value",
        ),
        (
            "kind",
            with(serde_json::json!({"target": {"kind": "Service"}})),
            "spec.target.kind: Unsupported value",
        ),
    ] {
        let refused = api
            .create(&PostParams::default(), &object(name, spec))
            .await
            .expect_err(name);
        assert!(refused.to_string().contains(expected), "{name}: {refused}");
    }
    cluster.shutdown().await;
}
