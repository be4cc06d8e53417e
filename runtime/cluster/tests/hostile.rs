//! Numbers from requests that used to panic the server or the simulation (or make it
//! try to create billions of pods) are answered with a Status, as kube-apiserver would,
//! or bounded.

mod common;

use common::{api_only, code, eventually, raw};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends a GET on a raw connection (a watch's body never ends) and reads until `until`
/// shows up; what was read, short when the server closes the connection first.
async fn read_until(
    s: &mut tokio::net::TcpStream,
    path: Option<&str>,
    until: &str,
) -> anyhow::Result<String> {
    if let Some(path) = path {
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: bosun\r\n\r\n").as_bytes())
            .await?;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains(until) {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await??;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test]
async fn watch_timeouts_past_what_an_instant_holds() -> anyhow::Result<()> {
    let c = api_only().await?;
    let client = c.client().await?;
    let watch = "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=";
    // Not an int64: kube-apiserver cannot decode it either.
    for t in ["18446744073709551615", "-1", "soon"] {
        let e = raw(&client, "GET", &format!("{watch}{t}"), "", Vec::new())
            .await
            .expect_err(t);
        assert_eq!(code(&e), 400, "{t}: {e}");
    }
    // The largest int64 is a watch that lasts (its deadline saturates) and sees events.
    let mut s = tokio::net::TcpStream::connect(c.addr()).await?;
    let path = format!("{watch}9223372036854775807");
    let answer = read_until(&mut s, Some(&path), "\r\n\r\n").await?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let cm = json!({"metadata": {"name": "seen"}})
        .to_string()
        .into_bytes();
    raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        cm,
    )
    .await?;
    let events = read_until(&mut s, None, "\"seen\"").await?;
    assert!(events.contains("ADDED"), "{events:?}");
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_pod_table_with_huge_restart_counts() -> anyhow::Result<()> {
    let c = api_only().await?;
    let client = c.client().await?;
    let pods = "/api/v1/namespaces/default/pods";
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]}});
    raw(
        &client,
        "POST",
        pods,
        "application/json",
        pod.to_string().into_bytes(),
    )
    .await?;
    let status = json!({"metadata": {"name": "p"}, "status": {"containerStatuses": [
        {"name": "a", "restartCount": i64::MAX}, {"name": "b", "restartCount": i64::MAX}]}});
    raw(
        &client,
        "PATCH",
        &format!("{pods}/p/status"),
        "application/merge-patch+json",
        status.to_string().into_bytes(),
    )
    .await?;
    // What `kubectl get pods` asks for.
    let req = http::Request::builder()
        .uri(pods)
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())?;
    let table: Value = serde_json::from_str(&client.request_text(req).await?)?;
    assert_eq!(table["kind"], "Table", "{table}");
    assert_eq!(table["rows"][0]["cells"][3], json!(i64::MAX), "{table}");
    c.shutdown().await;
    Ok(())
}

fn deployment(name: &str, spec: Value) -> Vec<u8> {
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "app:v1"}]}},
        },
    });
    if let (Some(s), Some(extra)) = (d["spec"].as_object_mut(), spec.as_object()) {
        s.extend(extra.clone());
    }
    d.to_string().into_bytes()
}

#[tokio::test]
async fn workload_numbers_are_checked_as_kube_apiserver_does() -> anyhow::Result<()> {
    let c = api_only().await?;
    let client = c.client().await?;
    let path = "/apis/apps/v1/namespaces/default/deployments";
    let cases = [
        // Not an int32: the body does not decode.
        (json!({"replicas": 2_147_483_648_u64}), 400),
        (json!({"replicas": 18_446_744_073_709_551_615_u64}), 400),
        (json!({"replicas": "3"}), 400),
        (json!({"revisionHistoryLimit": 1_000_000_000_000_u64}), 400),
        (
            json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1_u64 << 40}}}),
            400,
        ),
        // Decoded but out of range.
        (json!({"replicas": -1}), 422),
        (json!({"minReadySeconds": -5}), 422),
        (
            json!({"strategy": {"rollingUpdate": {"maxSurge": "lots", "maxUnavailable": 1}}}),
            422,
        ),
        (
            json!({"strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": "101%"}}}),
            422,
        ),
        (
            json!({"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}}),
            422,
        ),
    ];
    for (i, (spec, want)) in cases.into_iter().enumerate() {
        let e = raw(
            &client,
            "POST",
            path,
            "application/json",
            deployment(&format!("d{i}"), spec.clone()),
        )
        .await
        .expect_err("refused");
        assert_eq!(code(&e), want, "{spec}: {e}");
    }
    // The largest int32 and a huge surge percentage are what kube-apiserver accepts.
    raw(
        &client,
        "POST",
        path,
        "application/json",
        deployment(
            "big",
            json!({"replicas": i32::MAX, "strategy": {"rollingUpdate": {"maxSurge": "100000000000%"}}}),
        ),
    )
    .await?;
    let sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
        "spec": {"selector": {"matchLabels": {"app": "s"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": -1}},
            "template": {"metadata": {"labels": {"app": "s"}},
                "spec": {"containers": [{"name": "app", "image": "app:v1"}]}}},
    });
    let e = raw(
        &client,
        "POST",
        "/apis/apps/v1/namespaces/default/statefulsets",
        "application/json",
        sts.to_string().into_bytes(),
    )
    .await
    .expect_err("negative partition");
    assert_eq!(code(&e), 422, "{e}");
    // The scale subresource: an int32 too.
    let scale = "/apis/apps/v1/namespaces/default/deployments/big/scale";
    for (body, want) in [
        (json!({"spec": {"replicas": 4_294_967_296_u64}}), 400),
        (json!({"spec": {"replicas": -2}}), 422),
    ] {
        let e = raw(
            &client,
            "PATCH",
            scale,
            "application/merge-patch+json",
            body.to_string().into_bytes(),
        )
        .await
        .expect_err("refused");
        assert_eq!(code(&e), want, "{body}: {e}");
    }
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_simulation_bounds_huge_workloads_and_budgets() -> anyhow::Result<()> {
    let c = common::with(bosun_cluster::Config {
        nodes: 1,
        sim: bosun_cluster::sim::Config {
            startup_delay: Duration::from_millis(20),
            max_pods_per_workload: 3,
            ..Default::default()
        },
        ..Default::default()
    })
    .await?;
    // kube retries 429s for minutes by default; the refusal is what is checked here.
    let mut cfg = c.kube_config().await?;
    cfg.default_retry = false;
    let client = kube::Client::try_from(cfg)?;
    // A pull fault that lasts longer than an Instant can hold.
    raw(
        &client,
        "POST",
        "/admin/v1/pod-pull-failure?namespace=default&pod=p&image=x&seconds=18446744073709551615",
        "",
        Vec::new(),
    )
    .await?;
    // What kube-apiserver accepts: 2^31-1 replicas and a surge that overflows a usize.
    raw(
        &client,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        "application/json",
        deployment(
            "big",
            json!({"replicas": i32::MAX, "strategy": {"rollingUpdate": {"maxSurge": "100000000000%", "maxUnavailable": "100%"}}}),
        ),
    )
    .await?;
    let sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "many"},
        "spec": {"replicas": i32::MAX, "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "many"}},
            "template": {"metadata": {"labels": {"app": "many"}},
                "spec": {"containers": [{"name": "app", "image": "app:v1"}]}}},
    });
    raw(
        &client,
        "POST",
        "/apis/apps/v1/namespaces/default/statefulsets",
        "application/json",
        sts.to_string().into_bytes(),
    )
    .await?;
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    // The Deployment controller keeps working (it used to overflow on maxSurge), and
    // each workload runs the simulation's cap of pods, not 2^31-1.
    eventually(20, || async {
        let d = deployments.get("big").await.ok()?;
        let s = sets.get("many").await.ok()?;
        let ready = |r: Option<i32>| r == Some(3);
        (ready(d.status?.ready_replicas) && ready(s.status?.ready_replicas)).then_some(())
    })
    .await?;
    let rs: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let owned = rs.list(&ListParams::default()).await?;
    assert_eq!(owned.items.len(), 1);
    assert_eq!(
        owned.items.first().and_then(|r| r.spec.replicas),
        Some(i32::MAX)
    );
    for app in ["big", "many"] {
        let n = pods
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await?
            .items
            .len();
        assert_eq!(n, 3, "{app}");
    }
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let capped: Vec<Event> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ReplicasCapped"))
        .collect();
    assert_eq!(capped.len(), 2, "one warning per workload: {capped:?}");
    assert!(
        capped.iter().all(|e| e
            .message
            .as_deref()
            .is_some_and(|m| m.contains("at most 3"))),
        "{capped:?}"
    );

    // Budgets: what kube-apiserver refuses is refused (the eviction arithmetic saturates
    // besides, see `eviction::tests`); a budget that protects every pod refuses evictions.
    let pdb = |extra: Value| {
        let mut spec = json!({"selector": {"matchLabels": {"app": "many"}}});
        if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(extra.clone());
        }
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "b"}, "spec": spec})
            .to_string()
            .into_bytes()
    };
    let pdbs = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";
    for (spec, want) in [
        (json!({"minAvailable": "18446744073709551615%"}), 422),
        (json!({"maxUnavailable": "101%"}), 422),
        (json!({"minAvailable": -1}), 422),
        (json!({"minAvailable": 4_294_967_296_u64}), 400),
        (json!({"minAvailable": 1, "maxUnavailable": 1}), 422),
    ] {
        let e = raw(&client, "POST", pdbs, "application/json", pdb(spec.clone()))
            .await
            .expect_err("refused");
        assert_eq!(code(&e), want, "{spec}: {e}");
    }
    raw(
        &client,
        "POST",
        pdbs,
        "application/json",
        pdb(json!({"minAvailable": "100%"})),
    )
    .await?;
    let eviction =
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "many-0"}});
    let e = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/pods/many-0/eviction",
        "application/json",
        eviction.to_string().into_bytes(),
    )
    .await
    .expect_err("the budget forbids it");
    assert_eq!(code(&e), 429, "{e}");

    // The pull fault holds; the kubelet is still alive and starts other pods.
    let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "app", "image": "x"}]}});
    raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/pods",
        "application/json",
        p.to_string().into_bytes(),
    )
    .await?;
    eventually(10, || async {
        let p = pods.get("p").await.ok()?;
        let waiting = p
            .status?
            .container_statuses?
            .first()?
            .state
            .clone()?
            .waiting?;
        (waiting.reason.as_deref() == Some("ErrImagePull")).then_some(())
    })
    .await?;
    c.shutdown().await;
    Ok(())
}
