//! Node and container failures as a remediation controller sees them through the API:
//! a stopped kubelet, a NotReady node, Terminating pods on a dead node, a reboot, a
//! container in CrashLoopBackOff.

mod common;

use common::{code, eventually, pod};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Node, NodeCondition, Pod, Taint};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;

/// Two nodes, with a 1 s heartbeat and a node-monitor grace period of `grace`.
async fn cluster(speed: f64, grace: u64) -> anyhow::Result<bosun_cluster::Cluster> {
    common::with(bosun_cluster::Config {
        nodes: 2,
        sim: bosun_cluster::sim::Config {
            speed,
            startup_delay: Duration::from_millis(100),
            heartbeat: Duration::from_secs(1),
            node_monitor_grace_period: Duration::from_secs(grace),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
}

/// An admin request; its HTTP status on failure.
async fn admin(c: &bosun_cluster::Cluster, path: &str) -> Result<(), u16> {
    let client = c.client().await.map_err(|_| 0u16)?;
    common::raw(&client, "POST", path, "text/plain", Vec::new())
        .await
        .map(drop)
        .map_err(|e| code(&e))
}

fn node_ready(n: &Node) -> Option<NodeCondition> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .cloned()
}

fn taints(n: &Node) -> Vec<(String, String, bool)> {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t: Taint| (t.key, t.effect, t.time_added.is_some()))
        .collect()
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn app_status(p: &Pod) -> Option<ContainerStatus> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()
        .cloned()
}

fn restarts(p: &Pod) -> i32 {
    app_status(p).map_or(0, |s| s.restart_count)
}

fn boot_id(n: &Node) -> String {
    n.status
        .as_ref()
        .and_then(|s| s.node_info.as_ref())
        .map(|i| i.boot_id.clone())
        .unwrap_or_default()
}

fn graceful() -> DeleteParams {
    DeleteParams {
        grace_period_seconds: Some(30),
        ..DeleteParams::default()
    }
}

#[tokio::test]
async fn a_stopped_kubelet_makes_its_node_unknown_and_keeps_its_deleted_pods() -> anyhow::Result<()>
{
    let c = cluster(1.0, 3).await?;
    let client = c.client().await?;
    let (nodes, pods): (Api<Node>, Api<Pod>) = (
        Api::all(client.clone()),
        Api::default_namespaced(client.clone()),
    );
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    for name in ["a", "b"] {
        pods.create(
            &PostParams::default(),
            &pod(name).on_node("sim-node-0").build(),
        )
        .await?;
        eventually(10, || async { pods.get(name).await.ok().filter(pod_ready) }).await?;
    }

    admin(&c, "/admin/v1/node-kubelet?node=sim-node-0&stopped=true")
        .await
        .map_err(|s| anyhow::anyhow!("admin: {s}"))?;
    // A heartbeat already under way lands first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = node_ready(&nodes.get("sim-node-0").await?).expect("ready condition");
    let unknown = eventually(15, || async {
        let n = nodes.get("sim-node-0").await.ok()?;
        node_ready(&n)
            .filter(|r| r.status == "Unknown")
            .map(|r| (n, r))
    })
    .await?;
    let (node, ready) = unknown;
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    // No heartbeat since the kubelet stopped.
    assert_eq!(ready.last_heartbeat_time, before.last_heartbeat_time);
    let renewed = leases
        .get("sim-node-0")
        .await?
        .spec
        .and_then(|s| s.renew_time);
    let ts = eventually(5, || async {
        let n = nodes.get("sim-node-0").await.ok()?;
        let ts = taints(&n);
        (ts.len() == 2).then_some(ts)
    })
    .await?;
    assert!(ts.contains(&(
        "node.kubernetes.io/unreachable".into(),
        "NoSchedule".into(),
        false
    )));
    assert!(ts.contains(&(
        "node.kubernetes.io/unreachable".into(),
        "NoExecute".into(),
        true
    )));
    assert!(node.spec.and_then(|s| s.unschedulable).is_none());
    // The node lifecycle controller marks its pods not Ready.
    eventually(5, || async {
        pods.get("a").await.ok().filter(|p| !pod_ready(p))
    })
    .await?;

    // Nothing new lands there; a graceful delete stays Terminating; a force delete goes.
    let mut pinned = pod("c").build();
    pinned.spec.as_mut().expect("spec").node_selector =
        Some([("kubernetes.io/hostname".into(), "sim-node-0".into())].into());
    pods.create(&PostParams::default(), &pinned).await?;
    pods.delete("a", &graceful()).await?;
    pods.delete("b", &DeleteParams::default().grace_period(0))
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let terminating = pods.get("a").await?;
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    assert!(pods.get_opt("b").await?.is_none());
    assert!(
        pods.get("c")
            .await?
            .spec
            .and_then(|s| s.node_name)
            .is_none()
    );
    assert_eq!(
        leases
            .get("sim-node-0")
            .await?
            .spec
            .and_then(|s| s.renew_time),
        renewed,
        "a stopped kubelet renews no lease"
    );

    // Back: Ready with a fresh heartbeat, no unreachable taints, the deleted pod ends.
    c.sim().stop_kubelet("sim-node-0", false);
    let back = eventually(10, || async {
        let n = nodes.get("sim-node-0").await.ok()?;
        node_ready(&n)
            .filter(|r| r.status == "True")
            .and_then(|_| taints(&n).is_empty().then_some(n))
    })
    .await?;
    assert!(node_ready(&back).expect("ready").last_heartbeat_time > ready.last_heartbeat_time);
    eventually(10, || async {
        pods.get_opt("a").await.ok().filter(Option::is_none)
    })
    .await?;
    eventually(10, || async {
        pods.get("c")
            .await
            .ok()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("sim-node-0"))
    })
    .await?;
    assert_eq!(
        admin(&c, "/admin/v1/node-kubelet?node=sim-node-0&stopped=maybe").await,
        Err(400)
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_not_ready_node_is_tainted_and_out_of_service_frees_its_terminating_pods()
-> anyhow::Result<()> {
    let c = cluster(1.0, 3).await?;
    let client = c.client().await?;
    let (nodes, pods): (Api<Node>, Api<Pod>) = (
        Api::all(client.clone()),
        Api::default_namespaced(client.clone()),
    );
    pods.create(
        &PostParams::default(),
        &pod("a").on_node("sim-node-1").build(),
    )
    .await?;
    eventually(10, || async { pods.get("a").await.ok().filter(pod_ready) }).await?;

    c.sim().set_node_ready("sim-node-1", false);
    eventually(10, || async {
        let n = nodes.get("sim-node-1").await.ok()?;
        let ts = taints(&n);
        (ts.contains(&(
            "node.kubernetes.io/not-ready".into(),
            "NoSchedule".into(),
            false,
        )) && ts.contains(&(
            "node.kubernetes.io/not-ready".into(),
            "NoExecute".into(),
            true,
        )))
        .then_some(())
    })
    .await?;
    pods.delete("a", &graceful()).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(pods.get("a").await?.metadata.deletion_timestamp.is_some());

    let out_of_service = json!({"spec": {"taints": [
        {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"},
    ]}});
    nodes
        .patch(
            "sim-node-1",
            &PatchParams::default(),
            &Patch::Merge(&out_of_service),
        )
        .await?;
    eventually(10, || async {
        pods.get_opt("a").await.ok().filter(Option::is_none)
    })
    .await?;

    c.sim().set_node_ready("sim-node-1", true);
    let ts = eventually(10, || async {
        let n = nodes.get("sim-node-1").await.ok()?;
        node_ready(&n).filter(|r| r.status == "True")?;
        let ts = taints(&n);
        (ts.len() == 1).then_some(ts)
    })
    .await?;
    assert_eq!(
        ts[0].0, "node.kubernetes.io/out-of-service",
        "a user's taint stays"
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_reboot_restarts_every_container_under_a_new_boot_id() -> anyhow::Result<()> {
    let c = cluster(1.0, 3).await?;
    let client = c.client().await?;
    let (nodes, pods): (Api<Node>, Api<Pod>) = (
        Api::all(client.clone()),
        Api::default_namespaced(client.clone()),
    );
    pods.create(
        &PostParams::default(),
        &pod("a").on_node("sim-node-0").build(),
    )
    .await?;
    let first = eventually(10, || async { pods.get("a").await.ok().filter(pod_ready) }).await?;
    let cordon = json!({"spec": {"unschedulable": true, "taints": [
        {"key": "example.com/maintenance", "effect": "NoSchedule"},
    ]}});
    nodes
        .patch(
            "sim-node-0",
            &PatchParams::default(),
            &Patch::Merge(&cordon),
        )
        .await?;
    let boot = boot_id(&nodes.get("sim-node-0").await?);

    admin(&c, "/admin/v1/node-reboot?node=sim-node-0&seconds=3")
        .await
        .map_err(|s| anyhow::anyhow!("admin: {s}"))?;
    let down = eventually(5, || async {
        node_ready(&nodes.get("sim-node-0").await.ok()?).filter(|r| r.status == "False")
    })
    .await?;
    assert_eq!(down.reason.as_deref(), Some("KubeletNotReady"));
    assert!(down.message.unwrap_or_default().contains("reboot"));
    eventually(5, || async {
        pods.get("a").await.ok().filter(|p| !pod_ready(p))
    })
    .await?;

    let up = eventually(10, || async {
        let n = nodes.get("sim-node-0").await.ok()?;
        node_ready(&n).filter(|r| r.status == "True")?;
        (taints(&n).len() == 1).then_some(n)
    })
    .await?;
    assert_ne!(boot_id(&up), boot);
    assert_eq!(up.spec.as_ref().and_then(|s| s.unschedulable), Some(true));
    let kept: Vec<String> = taints(&up).into_iter().map(|t| t.0).collect();
    assert_eq!(kept, ["example.com/maintenance"]);
    let after = eventually(10, || async {
        pods.get("a")
            .await
            .ok()
            .filter(|p| pod_ready(p) && restarts(p) == 1)
    })
    .await?;
    let started = |p: &Pod| {
        app_status(p)
            .and_then(|s| s.state)
            .and_then(|s| s.running)
            .and_then(|r| r.started_at)
    };
    assert!(started(&after) >= started(&first));
    assert_eq!(after.metadata.uid, first.metadata.uid);
    assert_eq!(
        admin(&c, "/admin/v1/node-reboot?node=sim-node-0&seconds=soon").await,
        Err(400)
    );
    c.shutdown().await;
    Ok(())
}

fn back_off_message(p: &Pod) -> Option<String> {
    let w = app_status(p)?.state?.waiting?;
    (w.reason.as_deref() == Some("CrashLoopBackOff")).then(|| w.message.unwrap_or_default())
}

#[tokio::test]
async fn a_crash_loop_backs_off_and_follows_the_pod_uid() -> anyhow::Result<()> {
    // Ten times faster: back-offs of 1 s, 2 s, 4 s real time.
    let c = cluster(10.0, 40).await?;
    let client = c.client().await?;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pods.create(&PostParams::default(), &pod("a").build())
        .await?;
    let ready = eventually(10, || async { pods.get("a").await.ok().filter(pod_ready) }).await?;
    let uid = ready.metadata.uid.clone().unwrap_or_default();

    admin(
        &c,
        "/admin/v1/crash-loop?namespace=default&pod=a&container=app&on=true",
    )
    .await
    .map_err(|s| anyhow::anyhow!("admin: {s}"))?;
    let looping = eventually(10, || async {
        let p = pods.get("a").await.ok()?;
        back_off_message(&p).map(|m| (p, m))
    })
    .await?;
    let (p, message) = looping;
    assert_eq!(
        message,
        format!("back-off 10s restarting failed container=app pod=a_default({uid})")
    );
    assert!(!pod_ready(&p));
    assert_eq!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Running")
    );
    let last = app_status(&p)
        .and_then(|s| s.last_state)
        .and_then(|s| s.terminated)
        .expect("last state terminated");
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    assert_eq!(restarts(&p), 1);

    // The kubelet's warning Event.
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let event = eventually(5, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("BackOff"))
    })
    .await?;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(
        event.message.as_deref(),
        Some(format!("Back-off restarting failed container app in pod a_default({uid})").as_str())
    );

    // The back-off doubles; an in-place image change does not end the loop.
    eventually(10, || async {
        pods.get("a")
            .await
            .ok()
            .and_then(|p| back_off_message(&p))
            .filter(|m| m.starts_with("back-off 20s "))
    })
    .await?;
    let image = json!({"spec": {"containers": [{"name": "app", "image": "app:v2"}]}});
    pods.patch("a", &PatchParams::default(), &Patch::Strategic(&image))
        .await?;
    let before = restarts(&pods.get("a").await?);
    eventually(10, || async {
        pods.get("a").await.ok().filter(|p| {
            restarts(p) > before
                && back_off_message(p).is_some()
                && app_status(p).is_some_and(|s| s.image == "app:v2")
        })
    })
    .await?;

    // Off: it runs and is Ready again.
    c.sim().crash_loop("default", "a", "app", false)?;
    eventually(15, || async { pods.get("a").await.ok().filter(pod_ready) }).await?;

    // The fault is the pod's, not its name's.
    c.sim().crash_loop("default", "a", "app", true)?;
    pods.delete("a", &DeleteParams::default()).await?;
    eventually(10, || async {
        pods.get_opt("a").await.ok().filter(Option::is_none)
    })
    .await?;
    pods.create(&PostParams::default(), &pod("a").build())
        .await?;
    eventually(10, || async { pods.get("a").await.ok().filter(pod_ready) }).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fresh = pods.get("a").await?;
    assert!(pod_ready(&fresh) && restarts(&fresh) == 0);

    assert_eq!(
        admin(
            &c,
            "/admin/v1/crash-loop?namespace=default&pod=nope&container=app&on=true"
        )
        .await,
        Err(404)
    );
    assert_eq!(
        admin(
            &c,
            "/admin/v1/crash-loop?namespace=default&pod=a&container=app&on=yes"
        )
        .await,
        Err(400)
    );
    c.shutdown().await;
    Ok(())
}

/// A reboot repairs what a node's simulated faults break: a NotReady node and a node
/// whose kubelet stopped come back Ready (and their not-ready taints go).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reboot_repairs_a_not_ready_node_and_a_stopped_kubelet() -> anyhow::Result<()> {
    let c = cluster(1.0, 3).await?;
    let nodes: Api<Node> = Api::all(c.client().await?);
    admin(&c, "/admin/v1/node-ready?node=sim-node-0&ready=false")
        .await
        .map_err(|s| anyhow::anyhow!("admin: {s}"))?;
    admin(&c, "/admin/v1/node-kubelet?node=sim-node-1&stopped=true")
        .await
        .map_err(|s| anyhow::anyhow!("admin: {s}"))?;
    for (node, status) in [("sim-node-0", "False"), ("sim-node-1", "Unknown")] {
        eventually(10, || async {
            node_ready(&nodes.get(node).await.ok()?).filter(|r| r.status == status)
        })
        .await?;
        admin(&c, &format!("/admin/v1/node-reboot?node={node}&seconds=1"))
            .await
            .map_err(|s| anyhow::anyhow!("admin: {s}"))?;
    }
    for node in ["sim-node-0", "sim-node-1"] {
        eventually(15, || async {
            let n = nodes.get(node).await.ok()?;
            node_ready(&n).filter(|r| r.status == "True")?;
            taints(&n).is_empty().then_some(())
        })
        .await?;
    }
    c.shutdown().await;
    Ok(())
}
