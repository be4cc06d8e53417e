//! `bosun up`'s assembly: the plugins folder's plugins become Plugin objects (file
//! sources) that the runtime drives and `bosun plugin …` manages.

use std::time::Duration;

use bosun_api::plugin::Plugin;
use bosun_dev::{Options, Up};
use bosun_test_support::eventually;
use kube::api::Api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_plugins_are_published_as_plugin_objects() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut runtime = bosun_runtime::Config {
        admin_addr: "127.0.0.1:0".parse().expect("addr"),
        resync_seconds: 0,
        ..Default::default()
    };
    runtime.shutdown_grace_seconds = 2;
    let up = Up::start(Options {
        data_dir: dir.path().join("data"),
        plugins_dir: dir.path().join("plugins"),
        seed: vec![bosun_dev::up::Seed::new(bosun_test_artifacts::ZONE_LABELER)],
        nodes: 1,
        runtime,
        demo: false,
    })
    .await
    .expect("up");
    let kubeconfig = up.kubeconfig().expect("embedded").to_owned();
    let client = bosun_runtime::connect::client(Some(&kubeconfig))
        .await
        .expect("client");
    let plugins: Api<Plugin> = Api::namespaced(client, "default");
    let digest =
        bosun_link::digest(&std::fs::read(bosun_test_artifacts::ZONE_LABELER).expect("wasm"));
    eventually("zone-labeler is a Plugin object, serving", Duration::from_secs(60), || async {
        let Ok(Some(p)) = plugins.get_opt("zone-labeler").await else {
            return false;
        };
        let file = matches!(&p.spec.source, bosun_api::plugin::Source::File { path } if path.ends_with("zone-labeler.wasm"));
        let granted = p.spec.permissions.iter().any(|g| g.kind == "Node" && g.verbs == ["read"]);
        file && granted
            && p.status.as_ref().and_then(|s| s.stable_revision.as_deref()) == Some(digest.as_str())
            && p.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| c.type_ == "Degraded" && c.status == "False")
            })
    })
    .await;
    up.shutdown().await;
}

/// The demo's pods get Bosun's sidecar through injection: the built-in SidecarSet
/// `bosun-sidecar` is applied, the sidecarset-injector puts the container into the
/// labelled pods, and the launcher (the simulated kubelet's part) runs a sidecar for each
/// of them, configured from the container's environment; restarting that container (an
/// image change) restarts the sidecar. An unlabelled pod gets neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_pods_get_their_sidecar_through_the_built_in_sidecarset() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Patch, PatchParams, PostParams};

    let dir = tempfile::tempdir().expect("tmp");
    let admission = dir.path().join("admission.json");
    std::fs::write(
        &admission,
        include_str!("../../../plugins/sidecarset-injector/admission.json"),
    )
    .expect("write");
    let mut runtime = bosun_runtime::Config {
        admin_addr: "127.0.0.1:0".parse().expect("addr"),
        resync_seconds: 0,
        ..Default::default()
    };
    runtime.shutdown_grace_seconds = 2;
    let up = Up::start(Options {
        data_dir: dir.path().join("data"),
        plugins_dir: dir.path().join("plugins"),
        seed: vec![bosun_dev::up::Seed {
            admission: Some(admission),
            ..bosun_dev::up::Seed::new(bosun_test_artifacts::SIDECARSET_INJECTOR)
        }],
        nodes: 2,
        runtime,
        demo: true,
    })
    .await
    .expect("up");
    let kubeconfig = up.kubeconfig().expect("embedded").to_owned();
    let client = bosun_runtime::connect::client(Some(&kubeconfig))
        .await
        .expect("client");
    let demo: Api<Pod> = Api::namespaced(client.clone(), "demo");
    let has_sidecar = |p: &Pod| {
        p.spec
            .as_ref()
            .is_some_and(|s| s.containers.iter().any(|c| c.name == "bosun-sidecar"))
    };
    eventually(
        "3 demo pods with an injected bosun-sidecar, each sidecar running and connected",
        Duration::from_secs(90),
        || async {
            let Ok(list) = demo.list(&Default::default()).await else {
                return false;
            };
            list.items.len() == 3
                && list.items.iter().all(has_sidecar)
                && up.sidecars().len() == 3
                && up.snapshot().await.sidecars == 3
        },
    )
    .await;
    let web0 = demo.get("web-0").await.expect("web-0");
    let injected = web0
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kruise.io/sidecarset-injected-list"))
        .cloned();
    assert_eq!(injected.as_deref(), Some("bosun-sidecar"));
    let spec = web0.spec.as_ref().expect("spec");
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["web", "bosun-sidecar"], "AfterAppContainer");
    let volumes: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    for v in [
        "bosun-token",
        "bosun-runtime-ca",
        "bosun-shared",
        "bosun-sidecar-data",
    ] {
        assert!(volumes.contains(&v), "{v} in {volumes:?}");
    }

    // A pod without the label: no container, no sidecar.
    let plain: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "plain", "namespace": "demo"},
        "spec": {"containers": [{"name": "app", "image": "app:v1"}]}
    }))
    .expect("pod");
    let plain = demo
        .create(&PostParams::default(), &plain)
        .await
        .expect("create");
    assert!(!has_sidecar(&plain));

    // The kubelet restarts the sidecar container for a new image: so does the launcher.
    let before = up
        .sidecars()
        .into_iter()
        .find(|(p, _)| p == "demo/web-0")
        .expect("web-0's sidecar")
        .1;
    let mut containers = serde_json::to_value(&spec.containers).expect("json");
    for c in containers.as_array_mut().expect("list") {
        if c["name"] == "bosun-sidecar" {
            c["image"] = "ghcr.io/bosun-dev/bosun-sidecar:0.1.1".into();
        }
    }
    demo.patch(
        "web-0",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"containers": containers}})),
    )
    .await
    .expect("image patch");
    eventually(
        "web-0's sidecar restarted with its container",
        Duration::from_secs(30),
        || async {
            up.sidecars()
                .iter()
                .any(|(p, addr)| p == "demo/web-0" && *addr != before)
        },
    )
    .await;
    assert_eq!(up.sidecars().len(), 3, "{:?}", up.sidecars());
    up.shutdown().await;
}
