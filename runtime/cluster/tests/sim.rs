//! The simulation: scheduler, kubelet, workload controllers and fault injection.

mod common;

use common::{code, eventually, pod};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;

async fn sim_cluster() -> anyhow::Result<bosun_cluster::Cluster> {
    common::with(bosun_cluster::Config {
        nodes: 2,
        sim: bosun_cluster::sim::Config {
            startup_delay: Duration::from_millis(50),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn container_status(p: &Pod) -> (String, i32, String) {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .map(|c| (c.image.clone(), c.restart_count, c.image_id.clone()))
        .unwrap_or_default()
}

#[tokio::test]
async fn pods_are_scheduled_started_and_updated_in_place() -> anyhow::Result<()> {
    let c = sim_cluster().await?;
    let client = c.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    assert_eq!(nodes.list(&ListParams::default()).await?.items.len(), 2);
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = eventually(10, || async {
        leases.get_opt("sim-node-0").await.ok().flatten()
    })
    .await?;
    assert!(lease.spec.and_then(|s| s.renew_time).is_some());
    let pods: Api<Pod> = Api::default_namespaced(client);
    let mut p = pod("web").build();
    if let Some(spec) = p.spec.as_mut() {
        spec.node_selector = Some(
            [(
                "kubernetes.io/hostname".to_string(),
                "sim-node-1".to_string(),
            )]
            .into(),
        );
    }
    let created = pods.create(&PostParams::default(), &p).await?;
    let running = eventually(10, || async { pods.get("web").await.ok().filter(is_ready) }).await?;
    assert_eq!(
        running.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some("sim-node-1")
    );
    assert_eq!(
        running.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Running")
    );
    assert_eq!(
        container_status(&running),
        ("app:v1".into(), 0, "sim://app:v1".into())
    );

    pods.patch(
        "web",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"containers": [{"name": "app", "image": "app:v2"}]}})),
    )
    .await?;
    let updated = eventually(10, || async {
        pods.get("web")
            .await
            .ok()
            .filter(|p| is_ready(p) && container_status(p).0 == "app:v2")
    })
    .await?;
    assert_eq!(
        container_status(&updated),
        ("app:v2".into(), 1, "sim://app:v2".into())
    );
    assert_eq!(
        updated.metadata.uid, created.metadata.uid,
        "in place: same pod"
    );

    // A pod nothing can take stays pending, marked unschedulable.
    let mut stuck = pod("stuck").build();
    if let Some(spec) = stuck.spec.as_mut() {
        spec.node_selector = Some([("disk".to_string(), "ssd".to_string())].into());
    }
    pods.create(&PostParams::default(), &stuck).await?;
    let pending = eventually(10, || async {
        pods.get("stuck").await.ok().filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "PodScheduled" && c.status == "False")
                })
        })
    })
    .await?;
    assert_eq!(pending.spec.and_then(|s| s.node_name), None);
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn faults_crash_pull_failure_and_node_not_ready() -> anyhow::Result<()> {
    let c = sim_cluster().await?;
    let client = c.client().await?;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pods.create(&PostParams::default(), &pod("a").build())
        .await?;
    eventually(10, || async { pods.get("a").await.ok().filter(is_ready) }).await?;

    // Through the admin endpoint, as an operator of the demo would.
    common::raw(
        &client,
        "POST",
        "/admin/v1/crash?namespace=default&pod=a&container=app",
        "text/plain",
        Vec::new(),
    )
    .await?;
    let crashed = eventually(10, || async {
        pods.get("a")
            .await
            .ok()
            .filter(|p| container_status(p).1 == 1)
    })
    .await?;
    assert_eq!(container_status(&crashed).0, "app:v1");

    c.sim().set_image_pull_failure("broken:v1", true);
    pods.create(&PostParams::default(), &pod("b").image("broken:v1").build())
        .await?;
    let waiting = eventually(10, || async {
        pods.get("b").await.ok().filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| cs.first())
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.waiting.as_ref())
                .is_some_and(|w| w.reason.as_deref() == Some("ErrImagePull"))
        })
    })
    .await?;
    assert_eq!(
        waiting.status.and_then(|s| s.phase).as_deref(),
        Some("Pending")
    );

    let node = pods
        .get("a")
        .await?
        .spec
        .and_then(|s| s.node_name)
        .unwrap_or_default();
    c.sim().set_node_ready(&node, false);
    let nodes: Api<Node> = Api::all(client);
    eventually(10, || async {
        nodes.get(&node).await.ok().filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "False"))
        })
    })
    .await?;
    eventually(10, || async {
        pods.get("a").await.ok().filter(|p| !is_ready(p))
    })
    .await?;
    let bad = common::raw(
        &c.client().await?,
        "POST",
        "/admin/v1/node-ready?node=x&ready=maybe",
        "text/plain",
        Vec::new(),
    )
    .await
    .expect_err("bad flag");
    assert_eq!(code(&bad), 400);
    c.shutdown().await;
    Ok(())
}

fn statefulset(replicas: i32) -> anyhow::Result<StatefulSet> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {
            "replicas": replicas,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "db:v1"}]}
            }
        }
    }))?)
}

#[tokio::test]
async fn statefulset_creates_in_order_and_rolls_with_partition() -> anyhow::Result<()> {
    let c = sim_cluster().await?;
    let client = c.client().await?;
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client);
    sets.create(&PostParams::default(), &statefulset(3)?)
        .await?;
    let ready = eventually(20, || async {
        sets.get("db").await.ok().filter(|s| {
            s.status
                .as_ref()
                .is_some_and(|st| st.ready_replicas == Some(3))
        })
    })
    .await?;
    let st = ready.status.unwrap_or_default();
    assert_eq!(st.current_revision, st.update_revision);
    let first = st.update_revision.unwrap_or_default();
    let names: Vec<_> = pods
        .list(&ListParams::default().labels("app=db"))
        .await?
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(names, ["db-0", "db-1", "db-2"]);
    let uid0 = pods.get("db-0").await?.metadata.uid;

    // The disruption controller keeps budget status current.
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(c.client().await?);
    pdbs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "db"},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "db"}}}
        }))?,
    )
    .await?;
    let pdb = eventually(10, || async {
        pdbs.get("db").await.ok().filter(|p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.expected_pods == Some(3))
        })
    })
    .await?;
    let st = pdb.status.unwrap_or_default();
    assert_eq!(
        (
            st.current_healthy,
            st.desired_healthy,
            st.disruptions_allowed
        ),
        (Some(3), Some(2), Some(1))
    );

    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
            "template": {"spec": {"containers": [{"name": "db", "image": "db:v2"}]}}
        }})),
    )
    .await?;
    let rolled = eventually(20, || async {
        sets.get("db").await.ok().filter(|s| {
            s.status
                .as_ref()
                .is_some_and(|st| st.updated_replicas == Some(2) && st.ready_replicas == Some(3))
        })
    })
    .await?;
    let st = rolled.status.unwrap_or_default();
    assert_ne!(st.update_revision.as_deref(), Some(first.as_str()));
    assert_eq!(
        st.current_revision.as_deref(),
        Some(first.as_str()),
        "partition holds db-0"
    );
    let image = |p: Pod| {
        p.spec
            .and_then(|s| s.containers.first().and_then(|c| c.image.clone()))
    };
    assert_eq!(image(pods.get("db-2").await?).as_deref(), Some("db:v2"));
    assert_eq!(image(pods.get("db-1").await?).as_deref(), Some("db:v2"));
    let db0 = pods.get("db-0").await?;
    assert_eq!(db0.metadata.uid, uid0);
    assert_eq!(image(db0).as_deref(), Some("db:v1"));
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn deployment_rolls_out_a_new_replicaset() -> anyhow::Result<()> {
    let c = sim_cluster().await?;
    let client = c.client().await?;
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let sets: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client);
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "web:v1"}]}}
                }
            }))?,
        )
        .await?;
    let done = |image: &'static str| {
        let pods = pods.clone();
        move || {
            let pods = pods.clone();
            async move {
                let list = pods
                    .list(&ListParams::default().labels("app=web"))
                    .await
                    .ok()?;
                let ok = list.items.len() == 3
                    && list
                        .items
                        .iter()
                        .all(|p| is_ready(p) && container_status(p).0 == image);
                ok.then_some(())
            }
        }
    };
    eventually(20, done("web:v1")).await?;
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:v2"}]}}}})),
        )
        .await?;
    eventually(30, done("web:v2")).await?;
    let rs = sets.list(&ListParams::default()).await?.items;
    assert_eq!(rs.len(), 2);
    let replicas: Vec<i32> = rs.iter().filter_map(|r| r.spec.replicas).collect();
    assert!(
        replicas.contains(&0) && replicas.contains(&3),
        "{replicas:?}"
    );
    let d = eventually(10, || async {
        deployments.get("web").await.ok().filter(|d| {
            d.status
                .as_ref()
                .is_some_and(|s| s.updated_replicas == Some(3) && s.available_replicas == Some(3))
        })
    })
    .await?;
    assert!(d.status.is_some());
    c.shutdown().await;
    Ok(())
}

fn waiting_reason(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

#[tokio::test]
async fn transient_pod_pull_failures_pod_start_delay_and_request_counts() -> anyhow::Result<()> {
    let c = common::with(bosun_cluster::Config {
        nodes: 1,
        sim: bosun_cluster::sim::Config {
            startup_delay: Duration::from_millis(20),
            pod_start_delay: Duration::from_millis(600),
            ..Default::default()
        },
        ..Default::default()
    })
    .await?;
    let client = c.client().await?;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let before = c.requests();
    // A new pod waits for its sandbox: ContainerCreating, then Ready.
    pods.create(&PostParams::default(), &pod("a").build())
        .await?;
    eventually(10, || async {
        pods.get("a")
            .await
            .ok()
            .filter(|p| waiting_reason(p).as_deref() == Some("ContainerCreating"))
    })
    .await?;
    let started = std::time::Instant::now();
    eventually(10, || async { pods.get("a").await.ok().filter(is_ready) }).await?;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the pod start delay held the containers"
    );

    // An in-place image change does not pay the pod start delay; a transient pull
    // failure of the new image by this pod makes it wait with ErrImagePull, then start.
    c.sim()
        .fail_pod_pulls("default", "a", "app:v2", Duration::from_millis(800));
    let patch = json!({"spec": {"containers": [{"name": "app", "image": "app:v2"}]}});
    pods.patch("a", &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    eventually(10, || async {
        pods.get("a")
            .await
            .ok()
            .filter(|p| waiting_reason(p).as_deref() == Some("ErrImagePull"))
    })
    .await?;
    let running = eventually(10, || async {
        pods.get("a")
            .await
            .ok()
            .filter(|p| is_ready(p) && container_status(p).2 == "sim://app:v2")
    })
    .await?;
    assert_eq!(container_status(&running).0, "app:v2");

    // Through the admin endpoint; a bad duration is refused.
    let bad = common::raw(
        &client,
        "POST",
        "/admin/v1/pod-pull-failure?namespace=default&pod=a&image=x&seconds=soon",
        "text/plain",
        Vec::new(),
    )
    .await
    .expect_err("bad seconds");
    assert_eq!(code(&bad), 400);

    let counted = c.requests().since(&before);
    assert!(counted.creates >= 1 && counted.patches >= 1, "{counted:?}");
    assert!(counted.reads >= 4, "{counted:?}");
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn rolling_update_keeps_max_unavailable() -> anyhow::Result<()> {
    let c = common::with(bosun_cluster::Config {
        nodes: 2,
        sim: bosun_cluster::sim::Config {
            startup_delay: Duration::from_millis(50),
            pod_start_delay: Duration::from_millis(300),
            ..Default::default()
        },
        ..Default::default()
    })
    .await?;
    let client = c.client().await?;
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client);
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 20,
                    "strategy": {"type": "RollingUpdate",
                        "rollingUpdate": {"maxUnavailable": 2, "maxSurge": 0}},
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "web:v1"}]}}
                }
            }))?,
        )
        .await?;
    // (ready and not terminating, of which on `image`)
    let count = |image: &'static str| {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            let ready: Vec<&Pod> = list
                .items
                .iter()
                .filter(|p| is_ready(p) && p.metadata.deletion_timestamp.is_none())
                .collect();
            let on = ready
                .iter()
                .filter(|p| container_status(p).0 == image)
                .count();
            Some((ready.len(), on))
        }
    };
    eventually(30, || async {
        count("web:v1").await.filter(|&(_, on)| on == 20)
    })
    .await?;
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:v2"}]}}}})),
        )
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut lowest = usize::MAX;
    loop {
        let Some((ready, updated)) = count("web:v2").await else {
            anyhow::bail!("cannot list pods");
        };
        lowest = lowest.min(ready);
        if updated == 20 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "rollout not done: {updated} of 20 updated"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        lowest >= 18,
        "{lowest} ready pods at one moment, at least 18 wanted"
    );
    c.shutdown().await;
    Ok(())
}
