//! Node remediation on the embedded cluster, in one run:
//!
//!     cargo bench -p bosun-conformance --bench remediation
//!
//! `BOSUN_BENCH_NODES` (default 100) simulated nodes, each with a node-agent pod whose
//! sidecar runs `plugins/node-agent` (its reboot is the simulation's), and the remediation
//! plugin with one HealthCheck over every node (`minHealthy: 51%`, Ready False for
//! `BOSUN_BENCH_UNHEALTHY_SECONDS`, default 5, then cordon 2 s → drain 3 s →
//! out-of-service 3 s → reboot 60 s; the reboot takes 3 s).
//!
//! (a) 10 nodes go NotReady together: the time from the failure until every one of them
//! is back in service (Ready, schedulable, no out-of-service taint), and the API requests
//! the cluster answered meanwhile, by verb.
//! (b) 60 nodes go NotReady together — a storm: 40 of 100 healthy, 51 needed, so nothing
//! starts. After 20 s, 15 of them are repaired by hand (as an operator would); once 55 are
//! healthy and the 10 s cooldown passed, the other 45 are remediated, within the runtime's
//! node budget (10% of the nodes cordoned at once by default). The time from the repair
//! until every node is back, and the requests.
//!
//! The durations are scaled down from NodeHealthCheck's defaults (300 s unhealthy, which
//! Bosun's HealthCheck also defaults to): add them to compare.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bosun_conformance::crate_dir;
use bosun_test_support::embedded::{Env, source};
use bosun_test_support::eventually;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use serde_json::{Value, json};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn built(dir: &str) -> String {
    bosun_cli::plugin::build_with(&crate_dir().join("../..").join(dir), false)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .display()
        .to_string()
}

fn in_service(n: &Node) -> bool {
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let spec = n.spec.as_ref();
    let cordoned = spec.and_then(|s| s.unschedulable) == Some(true);
    let tainted = spec.and_then(|s| s.taints.as_ref()).is_some_and(|ts| {
        ts.iter()
            .any(|t| t.key == "node.kubernetes.io/out-of-service")
    });
    ready && !cordoned && !tainted
}

/// Waits until every node is in service; the time from `since`.
async fn all_in_service(client: &kube::Client, since: Instant) -> Duration {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = since + Duration::from_secs(1200);
    loop {
        let list = nodes
            .list(&ListParams::default())
            .await
            .expect("nodes")
            .items;
        if list.iter().all(in_service) {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{} nodes still out after 20 minutes",
            list.iter().filter(|n| !in_service(n)).count()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn requests(env: &Env) -> bosun_cluster::requests::Requests {
    env.cluster.requests()
}

fn diff(
    before: &bosun_cluster::requests::Requests,
    after: &bosun_cluster::requests::Requests,
) -> String {
    let d = after.since(before);
    format!(
        "{} reads, {} watches, {} creates (evictions included), {} updates, {} patches, {} deletes",
        d.reads, d.watches, d.creates, d.updates, d.patches, d.deletes
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = usize::try_from(env_u64("BOSUN_BENCH_NODES", 100)).unwrap_or(100);
    let unhealthy = env_u64("BOSUN_BENCH_UNHEALTHY_SECONDS", 5);
    let env = Env::bare(n).await;
    let client = env.client.clone();
    let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_yaml::from_str(&bosun_api::healthcheck::crd_yaml().expect("crd")).expect("crd");
    Api::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .expect("HealthCheck CRD");
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "bosun-system"}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let mut config = env.config("rt");
    config.sidecars.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.sidecars.resend_ms = 500;
    let rt = env.runtime(config).await;
    let launcher =
        bosun_dev::launcher::Launcher::start(&rt, env.dir.path().join("sidecars")).expect("link");
    rt.install(
        &source(&built("plugins/node-agent")),
        &json!({"port": env.cluster.addr().port(), "path": "/admin/v1/node-reboot?seconds=3"})
            .to_string(),
    )
    .expect("node-agent");
    rt.install(&source(&built("plugins/remediation")), r#"{"pollMs": 500}"#)
        .expect("remediation");
    let sidecar = bosun_dev::launcher::container().expect("container");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bosun-system");
    for i in 0..n {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("node-agent-{i}"),
                "labels": {"remediation.bosun.dev/node-agent": "true"}},
            "spec": {"nodeName": format!("sim-node-{i}"),
                "containers": [{"name": "agent", "image": "bosun/node-agent:v1"}, sidecar]},
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("node agent");
    }
    let t = Instant::now();
    eventually(
        "every node agent's sidecar runs node-agent",
        Duration::from_secs(300),
        || async {
            rt.sidecars().map_or(0, |(s, _)| {
                s.status()
                    .iter()
                    .filter(|s| s.plugins.contains_key("node-agent"))
                    .count()
            }) == n
        },
    )
    .await;
    println!(
        "{n} nodes, {n} node-agent sidecars running in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let gvk = kube::api::GroupVersionKind::gvk("bosun.dev", "v1alpha1", "HealthCheck");
    let hcs: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "healthchecks"),
    );
    let hc: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "HealthCheck",
        "metadata": {"name": "workers"},
        "spec": {
            "target": {"kind": "Node"}, "selector": {}, "minHealthy": "51%",
            "stormCooldownDuration": "10s",
            "unhealthyConditions": [
                {"type": "Ready", "status": "False", "duration": format!("{unhealthy}s")},
                {"type": "Ready", "status": "Unknown", "duration": format!("{unhealthy}s")}],
            "escalatingRemediations": [
                {"action": "cordon", "order": 0, "timeout": "2s"},
                {"action": "drain", "order": 1, "timeout": "3s"},
                {"action": "out-of-service", "order": 2, "timeout": "3s"},
                {"action": "reboot", "order": 3, "timeout": "60s"}],
        },
    }))
    .expect("hc");
    hcs.create(&PostParams::default(), &hc).await.expect("hc");
    let status = || async {
        hcs.get("workers")
            .await
            .map(|o| o.data["status"].clone())
            .unwrap_or(Value::Null)
    };
    eventually("every node healthy", Duration::from_secs(60), || async {
        status().await["healthyTargets"] == n
    })
    .await;

    // (a) 10 together.
    let before = requests(&env);
    let t = Instant::now();
    for i in 0..10 {
        env.cluster
            .sim()
            .set_node_ready(&format!("sim-node-{i}"), false);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let took = all_in_service(&client, t).await;
    println!(
        "(a) 10 of {n} nodes NotReady together: all back in service in {:.1} s (unhealthy after {unhealthy} s, 8 s of cordon/drain/out-of-service timeouts, a 3 s reboot); API requests: {}",
        took.as_secs_f64(),
        diff(&before, &requests(&env))
    );
    eventually(
        "every node healthy again",
        Duration::from_secs(60),
        || async { status().await["healthyTargets"] == n },
    )
    .await;

    // (b) 60 together: a storm.
    let storm = 60.min(n);
    let before = requests(&env);
    for i in 0..storm {
        env.cluster
            .sim()
            .set_node_ready(&format!("sim-node-{i}"), false);
    }
    eventually("StormActive", Duration::from_secs(60), || async {
        status().await["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "StormActive" && c["status"] == "True")
        })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let cordoned = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("nodes")
        .items
        .iter()
        .filter(|n| n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true))
        .count();
    println!("(b) {storm} of {n} NotReady: storm for 20 s, {cordoned} nodes remediated meanwhile");
    let t = Instant::now();
    for i in 0..15 {
        env.cluster
            .sim()
            .set_node_ready(&format!("sim-node-{i}"), true);
    }
    let took = all_in_service(&client, t).await;
    println!(
        "(b) 15 repaired by hand: the other {} back in service {:.1} s later (10 s cooldown, node budget 10% at once); API requests since the failure: {}",
        storm - 15,
        took.as_secs_f64(),
        diff(&before, &requests(&env))
    );
    launcher.stop().await;
    rt.shutdown().await;
}
