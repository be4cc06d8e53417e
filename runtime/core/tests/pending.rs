//! Kinds the API server does not serve cost nothing while they wait: one discovery
//! refresh per interval for all of them, and each starts once it appears.

use std::time::{Duration, Instant};

use bosun_runtime::informer::{Informers, Kind, KindState};
use bosun_test_support::embedded::Env;
use bosun_test_support::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_pending_kinds_cost_one_discovery_call_per_interval() {
    let env = Env::bare(1).await;
    let (informers, _changes) = Informers::new(env.client.clone());
    for i in 0..1000 {
        informers.watch(Kind::new(&format!("g{i}.example.com/v1"), "Thing"));
    }
    // A served kind among them syncs as usual.
    informers.watch(Kind::new("v1", "Node"));
    eventually("every kind pending", Duration::from_secs(30), || {
        let states = informers.states();
        let pending = states
            .values()
            .filter(|s| matches!(s, KindState::Pending(_)))
            .count();
        async move { pending == 1000 }
    })
    .await;
    assert!(informers.is_synced(&Kind::new("v1", "Node")));
    // Each kind's own first look is done; from now on only the shared refresh asks.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = env.cluster.requests().reads;
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let calls = env.cluster.requests().reads - before;
    let seconds = start.elapsed().as_secs();
    // Refreshes 1 s apart, doubling while nothing appears: at most one per second.
    assert!(
        calls <= seconds,
        "{calls} discovery calls in {seconds} s for 1,000 pending kinds"
    );
    assert!(calls >= 1, "no discovery refresh in {seconds} s");
    informers.shutdown();
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_within_its_grace_while_a_plugin_loops_and_kinds_wait() {
    let env = Env::start(1).await;
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(env.client.clone(), "default");
    let pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "spin", "namespace": "default"},
        "spec": {"containers": [{"name": "app", "image": "app:v1"}]}
    }))
    .expect("pod");
    pods.create(&Default::default(), &pod).await.expect("pod");
    let mut config = env.config("rt");
    config.shutdown_grace_seconds = 2;
    let rt = env.runtime(config).await;
    rt.install(
        &bosun_test_support::embedded::source(bosun_test_artifacts::HOSTILE),
        r#"{"mode":"loop"}"#,
    )
    .expect("hostile");
    // A thousand kinds nobody serves wait meanwhile.
    for i in 0..1000 {
        rt.informers()
            .watch(Kind::new(&format!("g{i}.example.com/v1"), "Thing"));
    }
    // Let it spin into a few deadlines.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start = Instant::now();
    rt.shutdown().await;
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(2 + 3),
        "shutdown took {took:?} with a grace of 2 s"
    );
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_plugin_stops_the_informers_no_other_plugin_needs() {
    let env = Env::start(1).await;
    let rt = env.runtime(env.config("rt")).await;
    rt.install(
        &bosun_test_support::embedded::source(bosun_test_artifacts::CRD_WATCHER),
        "{}",
    )
    .expect("crd-watcher");
    let watched = |kind: &str| rt.informers().states().contains_key(kind);
    eventually(
        "the plugin's kinds are watched",
        Duration::from_secs(10),
        || {
            let both = watched("example.com/v1/Widget") && watched("example.com/v1/Gizmo");
            async move { both }
        },
    )
    .await;
    let name = rt.registry().names().into_iter().next().expect("a plugin");
    rt.uninstall(&name);
    eventually(
        "the kinds only it needed are released",
        Duration::from_secs(10),
        || {
            let gone = !watched("example.com/v1/Widget") && !watched("example.com/v1/Gizmo");
            async move { gone }
        },
    )
    .await;
    // What the runtime watches for itself stays.
    assert!(watched("v1/Pod") && watched("v1/Node"));
    rt.shutdown().await;
    env.cluster.shutdown().await;
}
