//! `plugins/remediation` (a controller plugin in Go) on the embedded cluster, with
//! `plugins/node-agent` (a pod-agent plugin in Go) in the sidecars of node-agent pods and
//! the simulation's faults (runtime/cluster/src/sim): a NotReady node is cordoned,
//! drained, tainted out-of-service and rebooted through its node agent, and returns to
//! service with the taint and the cordon gone; a crash-looping pod is restarted through
//! its sidecar, then deleted when that times out, and its replacement ends the
//! remediation; a storm (6 of 20 nodes down with minHealthy 80%) starts nothing until
//! enough nodes are back and the cooldown passed. The Go unit tests of both plugins (the
//! minHealthy/maxUnhealthy rounding vectors among them) and of the Go SDK run here too.
//!
//! What is expected comes from the HealthCheck's spec and NodeHealthCheck's semantics
//! (see plugins/remediation/README.md), observed through the API: node spec and status,
//! pods, Events, the HealthCheck's status.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bosun_conformance::{crate_dir, go_test};
use bosun_dev::launcher::Launcher;
use bosun_runtime::Runtime;
use bosun_test_support::embedded::{Env, source};
use bosun_test_support::eventually;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use serde_json::{Value, json};

#[test]
fn the_go_unit_tests_of_the_plugins_and_the_sdk_pass() {
    go_test("plugins/remediation");
    go_test("plugins/node-agent");
    go_test("sdk-guest/go");
}

fn built(dir: &str) -> String {
    bosun_cli::plugin::build_with(&crate_dir().join("../..").join(dir), false)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .display()
        .to_string()
}

fn remediation() -> &'static String {
    static WASM: OnceLock<String> = OnceLock::new();
    WASM.get_or_init(|| built("plugins/remediation"))
}

fn node_agent() -> &'static String {
    static WASM: OnceLock<String> = OnceLock::new();
    WASM.get_or_init(|| built("plugins/node-agent"))
}

fn app_probe() -> &'static String {
    static WASM: OnceLock<String> = OnceLock::new();
    WASM.get_or_init(|| built("plugins/app-probe"))
}

fn healthchecks(client: &kube::Client) -> Api<DynamicObject> {
    let gvk = kube::api::GroupVersionKind::gvk("bosun.dev", "v1alpha1", "HealthCheck");
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "healthchecks"),
    )
}

async fn install_crd(client: &kube::Client) {
    let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_yaml::from_str(&bosun_api::healthcheck::crd_yaml().expect("crd")).expect("crd");
    Api::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .expect("HealthCheck CRD");
    let hc = healthchecks(client);
    eventually(
        "the HealthCheck kind is served",
        Duration::from_secs(10),
        || async { hc.list(&ListParams::default()).await.is_ok() },
    )
    .await;
}

async fn namespace(client: &kube::Client, name: &str) {
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
}

async fn create_healthcheck(client: &kube::Client, name: &str, spec: Value) {
    let hc: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "HealthCheck",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("healthcheck");
    healthchecks(client)
        .create(&PostParams::default(), &hc)
        .await
        .expect("create HealthCheck");
}

async fn hc_status(client: &kube::Client, name: &str) -> Value {
    healthchecks(client)
        .get(name)
        .await
        .map(|o| o.data["status"].clone())
        .unwrap_or(Value::Null)
}

fn condition<'a>(status: &'a Value, t: &str) -> &'a str {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == t))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
}

async fn node(client: &kube::Client, name: &str) -> Value {
    serde_json::to_value(
        Api::<Node>::all(client.clone())
            .get(name)
            .await
            .expect("node"),
    )
    .expect("json")
}

fn out_of_service(node: &Value) -> bool {
    node["spec"]["taints"].as_array().is_some_and(|ts| {
        ts.iter()
            .any(|t| t["key"] == "node.kubernetes.io/out-of-service")
    })
}

fn unschedulable(node: &Value) -> bool {
    node["spec"]["unschedulable"] == true
}

fn ready(node: &Value) -> bool {
    node["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Events with `reason` (any namespace), as "object: message".
async fn events(client: &kube::Client, reason: &str) -> Vec<String> {
    Api::<Event>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| {
            format!(
                "{}: {}",
                e.involved_object.name.unwrap_or_default(),
                e.message.unwrap_or_default()
            )
        })
        .collect()
}

/// How many connected sidecars run `plugin`.
fn sidecars_running(rt: &Runtime, plugin: &str) -> usize {
    rt.sidecars().map_or(0, |(s, _)| {
        s.status()
            .iter()
            .filter(|s| s.plugins.contains_key(plugin))
            .count()
    })
}

/// A runtime with a sidecar link and the launcher (the simulated kubelet's sidecars).
async fn runtime_with_sidecars(env: &Env) -> (Arc<Runtime>, Launcher) {
    let mut config = env.config("rt");
    config.sidecars.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.sidecars.resend_ms = 500;
    let rt = env.runtime(config).await;
    let launcher = Launcher::start(&rt, env.dir.path().join("sidecars")).expect("link");
    (rt, launcher)
}

async fn deployment(client: &kube::Client, ns: &str, name: &str, replicas: i32, template: Value) {
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template},
    }))
    .expect("deployment");
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &d)
        .await
        .expect("create deployment");
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_not_ready_node_is_cordoned_drained_tainted_rebooted_and_returns_to_service() {
    let env = Env::bare(3).await;
    let client = env.client.clone();
    install_crd(&client).await;
    namespace(&client, "shop").await;
    namespace(&client, "bosun-system").await;
    let (rt, launcher) = runtime_with_sidecars(&env).await;
    // The agents' "app" is the embedded cluster's simulated reboot.
    let port = env.cluster.addr().port();
    rt.install(
        &source(node_agent()),
        &json!({"port": port, "path": "/admin/v1/node-reboot?seconds=2"}).to_string(),
    )
    .expect("node-agent loads");
    rt.install(
        &source(remediation()),
        r#"{"pollMs": 200, "evictionRetryMs": 500}"#,
    )
    .expect("remediation loads");
    // One node-agent pod per node, with its sidecar.
    let sidecar = bosun_dev::launcher::container().expect("sidecar container");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bosun-system");
    for i in 0..3 {
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
    deployment(
        &client,
        "shop",
        "web",
        6,
        json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "web:v1"}]}}),
    )
    .await;
    eventually(
        "3 node agents' sidecars connected and running node-agent, 6 web pods ready",
        Duration::from_secs(60),
        || async {
            let web = Api::<Pod>::namespaced(client.clone(), "shop")
                .list(&ListParams::default())
                .await
                .map(|l| l.items.iter().filter(|p| pod_ready(p)).count())
                .unwrap_or(0);
            sidecars_running(&rt, "node-agent") == 3 && web == 6
        },
    )
    .await;
    create_healthcheck(
        &client,
        "workers",
        json!({
            "target": {"kind": "Node"}, "selector": {}, "minHealthy": "50%",
            "unhealthyConditions": [
                {"type": "Ready", "status": "False", "duration": "2s"},
                {"type": "Ready", "status": "Unknown", "duration": "2s"}],
            "escalatingRemediations": [
                {"action": "cordon", "order": 0, "timeout": "1s"},
                {"action": "drain", "order": 1, "timeout": "2s"},
                {"action": "out-of-service", "order": 2, "timeout": "3s"},
                {"action": "reboot", "order": 3, "timeout": "60s"}],
        }),
    )
    .await;
    eventually(
        "the HealthCheck is Enabled",
        Duration::from_secs(20),
        || async {
            let s = hc_status(&client, "workers").await;
            s["phase"] == "Enabled" && s["healthyTargets"] == 3
        },
    )
    .await;
    let boot = node(&client, "sim-node-0").await["status"]["nodeInfo"]["bootID"].clone();

    env.cluster.sim().set_node_ready("sim-node-0", false);
    // What happens to sim-node-0, in order, sampled.
    let mut seen: Vec<&str> = Vec::new();
    let note = |what: &'static str, seen: &mut Vec<&str>| {
        if !seen.contains(&what) {
            seen.push(what);
        }
    };
    let done = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            let n = node(&client, "sim-node-0").await;
            if unschedulable(&n) {
                note("cordoned", &mut seen);
            }
            if out_of_service(&n) {
                note("out-of-service", &mut seen);
            }
            if n["status"]["nodeInfo"]["bootID"] != boot {
                note("rebooted", &mut seen);
            }
            if seen.contains(&"rebooted") && ready(&n) && !unschedulable(&n) && !out_of_service(&n)
            {
                note("back in service", &mut seen);
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let s = hc_status(&client, "workers").await;
    assert!(done.is_ok(), "sim-node-0: {seen:?}; HealthCheck status {s}");
    assert_eq!(
        seen,
        ["cordoned", "out-of-service", "rebooted", "back in service"]
    );
    let escalated = events(&client, "Escalated").await;
    for step in [
        "cordon of node sim-node-0 timed out: drain",
        "drain of node sim-node-0 timed out: out-of-service",
        "out-of-service of node sim-node-0 timed out: reboot",
    ] {
        assert!(
            escalated.iter().any(|e| e.contains(step)),
            "{step}: {escalated:?}"
        );
    }
    eventually(
        "RemediationSucceeded, the HealthCheck Enabled with 3 healthy",
        Duration::from_secs(20),
        || async {
            let s = hc_status(&client, "workers").await;
            s["phase"] == "Enabled"
                && s["healthyTargets"] == 3
                && s["inFlightRemediations"] == 0
                && !events(&client, "RemediationSucceeded").await.is_empty()
        },
    )
    .await;
    let succeeded = events(&client, "RemediationSucceeded").await;
    assert!(
        succeeded[0].contains(
            "node sim-node-0 is healthy again after cordon, drain, out-of-service, reboot"
        ),
        "{succeeded:?}"
    );
    // The other nodes were never touched.
    for other in ["sim-node-1", "sim-node-2"] {
        let n = node(&client, other).await;
        assert!(!unschedulable(&n) && !out_of_service(&n), "{other}: {n}");
    }
    launcher.stop().await;
    rt.shutdown().await;
}

/// The test's stand-in for the pods' apps: answers every request 200 and counts the
/// restart requests (app-probe's `restart` POSTs here through each pod's sidecar).
fn serve_app() -> (u16, Arc<AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let restarts = Arc::new(AtomicUsize::new(0));
    let r = restarts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            if String::from_utf8_lossy(&buf[..n]).starts_with("POST /quit") {
                r.fetch_add(1, Ordering::SeqCst);
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (port, restarts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_pod_is_restarted_through_its_sidecar_then_deleted() {
    let env = Env::bare(2).await;
    let client = env.client.clone();
    install_crd(&client).await;
    namespace(&client, "shop").await;
    let (rt, launcher) = runtime_with_sidecars(&env).await;
    let (app_port, restarts) = serve_app();
    rt.install(
        &source(app_probe()),
        &json!({"port": app_port, "restart": {"path": "/quit"}}).to_string(),
    )
    .expect("app-probe loads");
    rt.install(&source(remediation()), r#"{"pollMs": 200}"#)
        .expect("remediation loads");
    let sidecar = bosun_dev::launcher::container().expect("sidecar container");
    deployment(
        &client,
        "shop",
        "api",
        2,
        json!({"metadata": {"labels": {"app": "api"},
                "annotations": {"sidecar.bosun.dev/plugins": "app-probe"}},
            "spec": {"containers": [{"name": "app", "image": "api:v1"}, sidecar]}}),
    )
    .await;
    let api: Api<Pod> = Api::namespaced(client.clone(), "shop");
    eventually(
        "2 api pods ready, their sidecars running",
        Duration::from_secs(60),
        || async {
            let ready = api
                .list(&ListParams::default())
                .await
                .map(|l| l.items.iter().filter(|p| pod_ready(p)).count())
                .unwrap_or(0);
            ready == 2 && sidecars_running(&rt, "app-probe") == 2
        },
    )
    .await;
    create_healthcheck(
        &client,
        "api",
        json!({
            "target": {"kind": "Pod", "namespace": "shop"},
            "selector": {"matchLabels": {"app": "api"}}, "maxUnhealthy": 1,
            "unhealthyConditions": [{"type": "CrashLoopBackOff", "status": "True", "duration": "1s"}],
            "escalatingRemediations": [
                {"action": "restart-container", "order": 0, "timeout": "4s"},
                {"action": "delete-pod", "order": 1, "timeout": "30s"}],
        }),
    )
    .await;
    let list = api.list(&ListParams::default()).await.expect("pods").items;
    let victim = list[0].metadata.name.clone().expect("name");
    let uid = list[0].metadata.uid.clone().expect("uid");
    env.cluster
        .sim()
        .crash_loop("shop", &victim, "app", true)
        .expect("crash loop");
    let asked = tokio::time::timeout(Duration::from_secs(60), async {
        while restarts.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        asked.is_ok(),
        "the app was not asked to restart through the sidecar: HealthCheck {}; Events {:?} {:?}; logs {:?}; pod {:?}",
        hc_status(&client, "api").await,
        events(&client, "RemediationStarted").await,
        events(&client, "Escalated").await,
        env.log_lines(),
        api.get(&victim).await.map(|p| p.status)
    );
    let started = events(&client, "RemediationStarted").await;
    assert!(
        started.iter().any(|e| e.starts_with(&format!("{victim}:"))
            && e.contains("CrashLoopBackOff True")
            && e.ends_with("restart-container")),
        "{started:?}"
    );
    // The crash loop follows the pod, not the restart: restart-container times out, the
    // pod is deleted, its replacement is healthy.
    eventually(
        "the pod is replaced and the remediation succeeds",
        Duration::from_secs(90),
        || async {
            let gone = api
                .get_opt(&victim)
                .await
                .ok()
                .flatten()
                .is_none_or(|p| p.metadata.uid.as_deref() != Some(uid.as_str()));
            gone && events(&client, "RemediationSucceeded")
                .await
                .iter()
                .any(|e| {
                    e.contains(&format!(
                        "pod shop/{victim} was replaced after restart-container, delete-pod"
                    ))
                })
        },
    )
    .await;
    assert_eq!(restarts.load(Ordering::SeqCst), 1, "one restart request");
    eventually(
        "2 api pods ready again",
        Duration::from_secs(30),
        || async {
            api.list(&ListParams::default())
                .await
                .map(|l| l.items.iter().filter(|p| pod_ready(p)).count() == 2)
                .unwrap_or(false)
        },
    )
    .await;
    let s = hc_status(&client, "api").await;
    assert_eq!(s["phase"], "Enabled", "{s}");
    launcher.stop().await;
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_starts_nothing_until_enough_nodes_are_back_and_the_cooldown_passed() {
    let env = Env::bare(20).await;
    let client = env.client.clone();
    install_crd(&client).await;
    // The runtime's node budget (10% of the nodes cordoned by default) would let 2 of
    // the 4 cordons through; this test is about the storm, so it allows 6.
    let mut config = env.config("rt");
    config.guardrails.plugins.insert(
        "remediation".to_owned(),
        serde_json::from_value(json!({"maxCordonedNodes": 6})).expect("overrides"),
    );
    let rt = env.runtime(config).await;
    rt.install(&source(remediation()), r#"{"pollMs": 100}"#)
        .expect("remediation loads");
    create_healthcheck(
        &client,
        "workers",
        json!({
            "target": {"kind": "Node"}, "selector": {}, "minHealthy": "80%",
            "stormCooldownDuration": "3s",
            "unhealthyConditions": [{"type": "Ready", "status": "False", "duration": "1s"}],
            "escalatingRemediations": [{"action": "cordon", "order": 0, "timeout": "600s"}],
        }),
    )
    .await;
    eventually("20 healthy", Duration::from_secs(30), || async {
        hc_status(&client, "workers").await["healthyTargets"] == 20
    })
    .await;
    let down: Vec<String> = (0..6).map(|i| format!("sim-node-{i}")).collect();
    for n in &down {
        env.cluster.sim().set_node_ready(n, false);
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let cordoned = || async {
        nodes
            .list(&ListParams::default())
            .await
            .expect("nodes")
            .items
            .into_iter()
            .filter(|n| n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true))
            .filter_map(|n| n.metadata.name)
            .collect::<Vec<String>>()
    };
    eventually(
        "StormActive, 6 unhealthy waiting",
        Duration::from_secs(20),
        || async {
            let s = hc_status(&client, "workers").await;
            condition(&s, "StormActive") == "True"
                && s["unhealthy"].as_array().is_some_and(|u| u.len() == 6)
        },
    )
    .await;
    // Sampled for 3 s: nothing is cordoned (14 of 20 healthy, 16 needed).
    for _ in 0..30 {
        assert!(cordoned().await.is_empty(), "{:?}", cordoned().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let skipped = events(&client, "RemediationSkipped").await;
    assert_eq!(skipped.len(), 6, "one per waiting node: {skipped:?}");
    assert!(
        skipped.iter().all(|e| e.contains("storm recovery active")),
        "{skipped:?}"
    );
    assert_eq!(events(&client, "StormRecoveryStarted").await.len(), 1);

    // Two come back: 16 healthy. The cooldown holds (sampled), then the 4 still down are
    // cordoned, none of the healthy ones.
    env.cluster.sim().set_node_ready("sim-node-0", true);
    env.cluster.sim().set_node_ready("sim-node-1", true);
    eventually("StormCooldownActive", Duration::from_secs(20), || async {
        condition(&hc_status(&client, "workers").await, "StormCooldownActive") == "True"
    })
    .await;
    for _ in 0..15 {
        assert!(
            cordoned().await.is_empty(),
            "cooldown: {:?}",
            cordoned().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually(
        "after the cooldown the 4 still down are cordoned",
        Duration::from_secs(20),
        || async { cordoned().await == ["sim-node-2", "sim-node-3", "sim-node-4", "sim-node-5"] },
    )
    .await;
    let s = hc_status(&client, "workers").await;
    assert_eq!(condition(&s, "StormActive"), "False", "{s}");
    assert_eq!(s["inFlightRemediations"], 4, "{s}");
    assert_eq!(events(&client, "StormRecoveryEnded").await.len(), 1);
    rt.shutdown().await;
}

/// A release (the release plugin, in place) and a remediation (a crash-looping pod
/// deleted) of one StatefulSet at once: both go through the runtime's workload budget
/// (25% of 4 pods: 1 unavailable at a time), so together they never take more than one
/// pod out (sampled every 20 ms), and both finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_and_a_remediation_of_one_statefulset_share_its_budget() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use kube::api::{Patch, PatchParams};

    let env = Env::bare(2).await;
    let client = env.client.clone();
    install_crd(&client).await;
    namespace(&client, "shop").await;
    let rt = env.runtime(env.config("rt")).await;
    rt.install(&source(bosun_test_artifacts::RELEASE), "{}")
        .expect("release loads");
    rt.install(&source(remediation()), r#"{"pollMs": 200}"#)
        .expect("remediation loads");
    let sts: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "shop",
            "annotations": {"release.bosun.dev/strategy": "InPlaceIfPossible"}},
        "spec": {
            "replicas": 4, "serviceName": "db", "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "OnDelete"},
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "db:v1"}]}},
        }
    }))
    .expect("statefulset");
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "shop");
    sets.create(&PostParams::default(), &sts)
        .await
        .expect("statefulset");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let available = |list: &[Pod]| {
        list.iter()
            .filter(|p| pod_ready(p) && p.metadata.deletion_timestamp.is_none())
            .count()
    };
    eventually("4 db pods ready", Duration::from_secs(60), || async {
        pods.list(&ListParams::default())
            .await
            .is_ok_and(|l| available(&l.items) == 4)
    })
    .await;
    create_healthcheck(
        &client,
        "db",
        json!({
            "target": {"kind": "Pod", "namespace": "shop"},
            "selector": {"matchLabels": {"app": "db"}}, "maxUnhealthy": 2,
            "unhealthyConditions": [{"type": "CrashLoopBackOff", "status": "True", "duration": "1s"}],
            "escalatingRemediations": [{"action": "delete-pod", "order": 0, "timeout": "60s"}],
        }),
    )
    .await;
    env.cluster
        .sim()
        .crash_loop("shop", "db-1", "db", true)
        .expect("crash loop");
    eventually("db-1 is down", Duration::from_secs(30), || async {
        pods.list(&ListParams::default())
            .await
            .is_ok_and(|l| available(&l.items) == 3)
    })
    .await;

    // From here on every disruption is a plugin's command: sample what is unavailable.
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let worst = Arc::new(AtomicUsize::new(0));
    let sampler = tokio::spawn({
        let (pods, sampling, worst) = (pods.clone(), sampling.clone(), worst.clone());
        async move {
            while sampling.load(Ordering::Relaxed) {
                if let Ok(l) = pods.list(&ListParams::default()).await {
                    worst.fetch_max(4 - available(&l.items).min(4), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "db", "image": "db:v2"}]}}}})),
    )
    .await
    .expect("release db:v2");
    let done = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            if let Ok(l) = pods.list(&ListParams::default()).await {
                let v2 = l.items.iter().all(|p| {
                    p.spec
                        .as_ref()
                        .is_some_and(|s| s.containers[0].image.as_deref() == Some("db:v2"))
                });
                if v2
                    && available(&l.items) == 4
                    && events(&client, "RemediationSucceeded")
                        .await
                        .iter()
                        .any(|e| e.contains("pod shop/db-1 was replaced after delete-pod"))
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    if done.is_err() {
        let list = pods.list(&ListParams::default()).await.expect("pods").items;
        let pods: Vec<String> = list
            .iter()
            .map(|p| {
                format!(
                    "{} {:?} {:?} ready={} deleting={}",
                    p.metadata.name.as_deref().unwrap_or(""),
                    p.metadata.uid,
                    p.spec.as_ref().map(|s| s.containers[0].image.clone()),
                    pod_ready(p),
                    p.metadata.deletion_timestamp.is_some()
                )
            })
            .collect();
        let sts = sets.get("db").await.expect("sts");
        let mut all = Vec::new();
        for r in [
            "RemediationStarted",
            "RemediationSkipped",
            "Escalated",
            "RemediationSucceeded",
        ] {
            all.push((r, events(&client, r).await));
        }
        panic!(
            "not done in 120 s: pods {pods:#?}\nsts annotations {:?}\nHealthCheck {}\nevents {all:?}\nlogs {:?}",
            sts.metadata.annotations,
            hc_status(&client, "db").await,
            env.log_lines()
        );
    }
    sampling.store(false, Ordering::Relaxed);
    sampler.await.expect("sampler");
    let worst = worst.load(Ordering::Relaxed);
    assert_eq!(
        worst, 1,
        "the release and the remediation together took {worst} pods out at once"
    );
    rt.shutdown().await;
}
