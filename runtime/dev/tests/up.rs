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
