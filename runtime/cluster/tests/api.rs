//! The REST API driven through kube-rs, as an operator would.

mod common;

use common::{api_only, code, eventually, pod};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{
    Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}}))
        .expect("valid configmap")
}

#[tokio::test]
async fn create_get_list_with_selectors_and_delete() -> anyhow::Result<()> {
    let c = api_only().await?;
    let pods: Api<Pod> = Api::default_namespaced(c.client().await?);
    for (n, app, tier) in [
        ("a", "web", "front"),
        ("b", "web", "back"),
        ("c", "db", "back"),
    ] {
        let created = pods
            .create(
                &PostParams::default(),
                &pod(n).label("app", app).label("tier", tier).build(),
            )
            .await?;
        assert!(created.metadata.uid.is_some());
        assert!(created.metadata.creation_timestamp.is_some());
        assert_eq!(
            created.status.and_then(|s| s.phase).as_deref(),
            Some("Pending")
        );
    }
    let names = |l: kube::core::ObjectList<Pod>| {
        l.items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect::<Vec<_>>()
    };
    let sel = |s: &str| ListParams::default().labels(s);
    assert_eq!(names(pods.list(&sel("app=web")).await?), ["a", "b"]);
    assert_eq!(names(pods.list(&sel("app==web,tier!=front")).await?), ["b"]);
    assert_eq!(
        names(pods.list(&sel("tier in (back),app notin (web)")).await?),
        ["c"]
    );
    assert_eq!(names(pods.list(&sel("!tier")).await?), Vec::<String>::new());
    assert_eq!(names(pods.list(&sel("tier")).await?).len(), 3);
    let by_field = ListParams::default().fields("metadata.name=b,status.phase=Pending");
    assert_eq!(names(pods.list(&by_field).await?), ["b"]);

    let page1 = pods.list(&ListParams::default().limit(2)).await?;
    let token = page1.metadata.continue_.clone().expect("a continue token");
    assert_eq!(names(page1), ["a", "b"]);
    let page2 = pods
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await?;
    assert_eq!(page2.metadata.continue_, None);
    assert_eq!(names(page2), ["c"]);

    assert_eq!(
        pods.get("a")
            .await?
            .metadata
            .labels
            .map(|l| l["app"].clone())
            .as_deref(),
        Some("web")
    );
    pods.delete("a", &DeleteParams::default()).await?;
    assert_eq!(code(&pods.get("a").await.expect_err("deleted")), 404);
    let gone = pods
        .delete_collection(&DeleteParams::default(), &sel("app=web"))
        .await?;
    assert!(gone.is_left());
    assert_eq!(names(pods.list(&ListParams::default()).await?), ["c"]);
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn all_four_patch_types() -> anyhow::Result<()> {
    let c = api_only().await?;
    let pods: Api<Pod> = Api::default_namespaced(c.client().await?);
    let mut p = pod("p").build();
    if let Some(spec) = p.spec.as_mut() {
        spec.containers.push(serde_json::from_value(
            json!({"name": "side", "image": "side:v1"}),
        )?);
    }
    pods.create(&PostParams::default(), &p).await?;

    let merged = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"m": "1"}}})),
        )
        .await?;
    assert_eq!(
        merged.metadata.labels.as_ref().map(|l| l["m"].as_str()),
        Some("1")
    );

    let jsoned = common::raw(
        &c.client().await?,
        "PATCH",
        "/api/v1/namespaces/default/pods/p",
        "application/json-patch+json",
        br#"[{"op": "add", "path": "/metadata/labels/j", "value": "2"}]"#.to_vec(),
    )
    .await?;
    assert_eq!(jsoned["metadata"]["labels"]["j"], "2");
    assert_eq!(
        pods.get("p").await?.metadata.labels.map(|l| l.len()),
        Some(2)
    );

    let smp = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"spec": {"containers": [{"name": "app", "image": "app:v2"}]}}),
            ),
        )
        .await?;
    let images: Vec<_> = smp
        .spec
        .map(|s| {
            s.containers
                .into_iter()
                .map(|c| c.image.unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(images, ["app:v2", "side:v1"], "merged by container name");

    let applied = pods
        .patch(
            "p",
            &PatchParams::apply("bosun-test"),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "3"}},
                "spec": {"containers": [{"name": "side", "image": "side:v2"}]}
            })),
        )
        .await?;
    let managers: Vec<_> = applied
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"bosun-test".to_string()));
    assert_eq!(applied.metadata.labels.map(|l| l.len()), Some(3));
    let images: Vec<_> = applied
        .spec
        .map(|s| {
            s.containers
                .into_iter()
                .map(|c| c.image.unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(images, ["app:v2", "side:v2"]);

    // Server-side apply creates a missing object.
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client().await?);
    cms.patch(
        "new",
        &PatchParams::apply("bosun-test"),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new"}, "data": {"x": "1"}})),
    )
    .await?;
    assert!(cms.get("new").await?.data.is_some_and(|d| d["x"] == "1"));
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn stale_update_is_a_conflict_and_generation_counts_spec_changes() -> anyhow::Result<()> {
    let c = api_only().await?;
    let pods: Api<Pod> = Api::default_namespaced(c.client().await?);
    let first = pods
        .create(&PostParams::default(), &pod("p").build())
        .await?;
    assert_eq!(first.metadata.generation, Some(1));
    let mut fresh = first.clone();
    fresh.metadata.labels = Some([("x".to_string(), "1".to_string())].into());
    let updated = pods.replace("p", &PostParams::default(), &fresh).await?;
    assert_ne!(
        updated.metadata.resource_version,
        first.metadata.resource_version
    );
    assert_eq!(updated.metadata.generation, Some(1), "labels are not spec");

    let mut stale = first;
    stale.metadata.labels = Some([("y".to_string(), "1".to_string())].into());
    let err = pods
        .replace("p", &PostParams::default(), &stale)
        .await
        .expect_err("stale");
    assert_eq!(code(&err), 409);

    let mut spec_change = updated;
    if let Some(s) = spec_change.spec.as_mut() {
        s.containers[0].image = Some("app:v2".into());
    }
    // Status written through the main resource is ignored for types with /status.
    spec_change.status = Some(serde_json::from_value(json!({"phase": "Running"}))?);
    let bumped = pods
        .replace("p", &PostParams::default(), &spec_change)
        .await?;
    assert_eq!(bumped.metadata.generation, Some(2));
    assert_eq!(
        bumped.status.and_then(|s| s.phase).as_deref(),
        Some("Pending")
    );
    let status = pods
        .patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await?;
    assert_eq!(
        status.status.and_then(|s| s.phase).as_deref(),
        Some("Running")
    );
    assert_eq!(status.metadata.generation, Some(2));
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn watch_streams_changes_from_a_version() -> anyhow::Result<()> {
    let c = api_only().await?;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client().await?);
    let list = cms.list(&ListParams::default()).await?;
    let rv = list.metadata.resource_version.unwrap_or_default();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(10), &rv)
        .await?
        .boxed();
    cms.create(&PostParams::default(), &cm("w")).await?;
    cms.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await?;
    cms.delete("w", &DeleteParams::default()).await?;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match stream.try_next().await? {
            Some(WatchEvent::Added(o)) => {
                seen.push(format!("added {}", o.metadata.name.unwrap_or_default()))
            }
            Some(WatchEvent::Modified(o)) => {
                seen.push(format!("modified {}", o.data.unwrap_or_default()["k"]))
            }
            Some(WatchEvent::Deleted(_)) => seen.push("deleted".into()),
            Some(other) => anyhow::bail!("unexpected {other:?}"),
            None => anyhow::bail!("stream ended early"),
        }
    }
    assert_eq!(seen, ["added w", "modified 2", "deleted"]);
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn watch_sends_bookmarks_when_allowed() -> anyhow::Result<()> {
    let c = common::with(bosun_cluster::Config {
        nodes: 0,
        bookmark_interval: std::time::Duration::from_millis(100),
        ..Default::default()
    })
    .await?;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client().await?);
    let rv = cms
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(5), &rv)
        .await?
        .boxed();
    match stream.try_next().await? {
        Some(WatchEvent::Bookmark(b)) => assert_eq!(b.metadata.resource_version, rv),
        other => anyhow::bail!("expected a bookmark, got {other:?}"),
    }
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn too_old_watch_is_gone_and_a_relist_recovers() -> anyhow::Result<()> {
    let c = common::with(bosun_cluster::Config {
        nodes: 0,
        watch_history: 3,
        ..Default::default()
    })
    .await?;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client().await?);
    let old = cms
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    for i in 0..10 {
        cms.create(&PostParams::default(), &cm(&format!("c{i}")))
            .await?;
    }
    let mut stream = cms.watch(&WatchParams::default(), &old).await?.boxed();
    match stream.try_next().await? {
        Some(WatchEvent::Error(e)) => assert_eq!(e.code, 410),
        other => anyhow::bail!("expected 410 Gone, got {other:?}"),
    }
    // Relist, then watch from the list's version.
    let list = cms.list(&ListParams::default()).await?;
    assert_eq!(list.items.len(), 10);
    let rv = list.metadata.resource_version.unwrap_or_default();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(10), &rv)
        .await?
        .boxed();
    cms.create(&PostParams::default(), &cm("after")).await?;
    match stream.try_next().await? {
        Some(WatchEvent::Added(o)) => assert_eq!(o.metadata.name.as_deref(), Some("after")),
        other => anyhow::bail!("expected ADDED, got {other:?}"),
    }
    c.shutdown().await;
    Ok(())
}

async fn reflector_follows_changes(config: watcher::Config) -> anyhow::Result<()> {
    let c = api_only().await?;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client().await?);
    cms.create(&PostParams::default(), &cm("before")).await?;
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = watcher(cms.clone(), config)
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    let task = tokio::spawn(async move {
        let mut s = std::pin::pin!(stream);
        while s.next().await.is_some() {}
    });
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        reader.wait_until_ready(),
    )
    .await??;
    cms.create(&PostParams::default(), &cm("after")).await?;
    cms.delete("before", &DeleteParams::default()).await?;
    let names = eventually(10, || {
        let reader = reader.clone();
        async move {
            let mut names: Vec<String> = reader
                .state()
                .iter()
                .filter_map(|o| o.metadata.name.clone())
                .collect();
            names.sort();
            (names == ["after"]).then_some(names)
        }
    })
    .await?;
    assert_eq!(names, ["after"]);
    task.abort();
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() -> anyhow::Result<()> {
    let c = api_only().await?;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client().await?);
    let mut o = cm("f");
    o.metadata.finalizers = Some(vec!["bosun.dev/test".into()]);
    cms.create(&PostParams::default(), &o).await?;
    cms.delete("f", &DeleteParams::default()).await?;
    let held = cms.get("f").await?;
    assert!(held.metadata.deletion_timestamp.is_some());
    cms.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    assert_eq!(code(&cms.get("f").await.expect_err("gone")), 404);
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn garbage_collection_and_namespace_deletion() -> anyhow::Result<()> {
    let c = api_only().await?;
    let client = c.client().await?;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "team"}}))?,
    )
    .await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    let owner = cms.create(&PostParams::default(), &cm("owner")).await?;
    let mut dep = cm("dep");
    dep.metadata.owner_references = Some(vec![serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
        "uid": owner.metadata.uid.clone().unwrap_or_default()
    }))?]);
    cms.create(&PostParams::default(), &dep).await?;
    cms.create(&PostParams::default(), &cm("other")).await?;
    cms.delete("owner", &DeleteParams::default()).await?;
    eventually(10, || {
        let cms = cms.clone();
        async move {
            cms.get_opt("dep")
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        }
    })
    .await?;
    nss.delete("team", &DeleteParams::default()).await?;
    eventually(10, || {
        let nss = nss.clone();
        async move {
            nss.get_opt("team")
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        }
    })
    .await?;
    assert_eq!(
        code(&cms.get("other").await.expect_err("namespace emptied")),
        404
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn eviction_honours_disruption_budgets() -> anyhow::Result<()> {
    let c = api_only().await?;
    // kube retries 429s by default; the refusal itself is what this test checks.
    let mut cfg = c.kube_config().await?;
    cfg.default_retry = false;
    let client = kube::Client::try_from(cfg)?;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    for n in ["a", "b"] {
        pods.create(&PostParams::default(), &pod(n).label("app", "web").build())
            .await?;
        pods.patch_status(
            n,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})),
        )
        .await?;
    }
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(client);
    pdbs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}
        }))?,
    )
    .await?;
    // policy/v1: a budget without a selector selects no pod, so it protects none.
    pdbs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "nothing"},
            "spec": {"minAvailable": 5}
        }))?,
    )
    .await?;
    pods.evict("a", &EvictParams::default()).await?;
    assert_eq!(code(&pods.get("a").await.expect_err("evicted")), 404);
    let err = pods
        .evict("b", &EvictParams::default())
        .await
        .expect_err("budget spent");
    assert_eq!(code(&err), 429);
    let message = match &err {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    };
    // The budget's sentence is a DisruptionBudget cause (the Python client's sequence
    // checks it); kube-rs keeps only the message.
    assert_eq!(
        message,
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert!(pods.get("b").await.is_ok());
    c.shutdown().await;
    Ok(())
}

/// A length-delimited protobuf field (payloads under 128 bytes).
fn pb_field(n: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![
        (n << 3) | 2,
        u8::try_from(payload.len()).expect("short payload"),
    ];
    v.extend_from_slice(payload);
    v
}

/// A protobuf policy/v1 Eviction, as kubectl drain sends it.
fn pb_eviction(name: &str, ns: &str, dry_run: bool) -> Vec<u8> {
    let meta = [pb_field(1, name.as_bytes()), pb_field(3, ns.as_bytes())].concat();
    let opts = if dry_run {
        pb_field(5, b"All")
    } else {
        Vec::new()
    };
    let raw = [pb_field(1, &meta), pb_field(2, &opts)].concat();
    let tm = [pb_field(1, b"policy/v1"), pb_field(2, b"Eviction")].concat();
    [b"k8s\0".to_vec(), pb_field(1, &tm), pb_field(2, &raw)].concat()
}

#[tokio::test]
async fn protobuf_evictions_honour_disruption_budgets() -> anyhow::Result<()> {
    let c = api_only().await?;
    let mut cfg = c.kube_config().await?;
    cfg.default_retry = false;
    let client = kube::Client::try_from(cfg)?;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    for n in ["a", "b", "c"] {
        pods.create(&PostParams::default(), &pod(n).label("app", "web").build())
            .await?;
        pods.patch_status(
            n,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})),
        )
        .await?;
    }
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(client.clone());
    pdbs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}
        }))?,
    )
    .await?;
    const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
    let evict = |name: &'static str, body: Vec<u8>| {
        let client = client.clone();
        async move {
            common::raw(
                &client,
                "POST",
                &format!("/api/v1/namespaces/default/pods/{name}/eviction"),
                PROTOBUF,
                body,
            )
            .await
        }
    };
    // dryRun in the protobuf deleteOptions is honoured.
    evict("a", pb_eviction("a", "default", true)).await?;
    assert!(
        pods.get("a").await.is_ok(),
        "dry-run eviction removed the pod"
    );
    // One disruption is allowed ...
    evict("a", pb_eviction("a", "default", false)).await?;
    assert_eq!(code(&pods.get("a").await.expect_err("evicted")), 404);
    // ... the next one would leave fewer than minAvailable.
    let err = evict("b", pb_eviction("b", "default", false))
        .await
        .expect_err("budget spent");
    assert_eq!(code(&err), 429, "{err}");
    assert!(pods.get("b").await.is_ok());
    // A dry run is checked against the budget too.
    let err = evict("b", pb_eviction("b", "default", true))
        .await
        .expect_err("budget spent");
    assert_eq!(code(&err), 429, "{err}");
    // An empty body names the pod by the URL alone; the budget still applies.
    let err = evict("c", Vec::new()).await.expect_err("budget spent");
    assert_eq!(code(&err), 429, "{err}");
    // A body naming another pod is refused, as by kube-apiserver.
    let err = evict("b", pb_eviction("c", "default", false))
        .await
        .expect_err("name mismatch");
    assert_eq!(code(&err), 400, "{err}");
    assert_eq!(pods.list(&ListParams::default()).await?.items.len(), 2);
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn dry_run_changes_nothing() -> anyhow::Result<()> {
    let c = api_only().await?;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client().await?);
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let out = cms.create(&pp, &cm("dry")).await?;
    assert_eq!(out.metadata.name.as_deref(), Some("dry"));
    assert_eq!(code(&cms.get("dry").await.expect_err("not stored")), 404);
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn filtered_watch_sees_objects_enter_and_leave_the_selection() -> anyhow::Result<()> {
    let c = api_only().await?;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client().await?);
    cms.create(&PostParams::default(), &cm("x")).await?;
    let rv = cms
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let wp = WatchParams::default().labels("team=a").timeout(10);
    let mut stream = cms.watch(&wp, &rv).await?.boxed();
    let label = |v: Option<&str>| Patch::Merge(json!({"metadata": {"labels": {"team": v}}}));
    cms.patch("x", &PatchParams::default(), &label(Some("a")))
        .await?;
    cms.patch("x", &PatchParams::default(), &label(Some("b")))
        .await?;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match stream.try_next().await? {
            Some(WatchEvent::Added(_)) => seen.push("added"),
            Some(WatchEvent::Deleted(_)) => seen.push("deleted"),
            other => anyhow::bail!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["added", "deleted"]);
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn reflector_follows_changes_with_list_then_watch() -> anyhow::Result<()> {
    reflector_follows_changes(watcher::Config::default()).await
}

#[tokio::test]
async fn reflector_follows_changes_with_streaming_lists() -> anyhow::Result<()> {
    reflector_follows_changes(watcher::Config::default().streaming_lists()).await
}

#[tokio::test]
async fn watch_ends_after_timeout_seconds() -> anyhow::Result<()> {
    let c = api_only().await?;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client().await?);
    let rv = cms
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(1).disable_bookmarks(), &rv)
        .await?
        .boxed();
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.try_next()).await?;
    assert!(next?.is_none(), "the server closes the watch");
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn scale_and_binding_subresources() -> anyhow::Result<()> {
    let c = api_only().await?;
    let client = c.client().await?;
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "web"},
                "spec": {"selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "web:v1"}]}}}
            }))?,
        )
        .await?;
    let scale = deployments.get_scale("web").await?;
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(1), "defaulted");
    deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await?;
    assert_eq!(deployments.get("web").await?.spec.replicas, Some(3));

    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pods.create(&PostParams::default(), &pod("p").build())
        .await?;
    let bind = |node: &str| {
        let body = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": node}});
        let client = client.clone();
        async move {
            common::raw(
                &client,
                "POST",
                "/api/v1/namespaces/default/pods/p/binding",
                "application/json",
                serde_json::to_vec(&body)?,
            )
            .await
            .map_err(anyhow::Error::from)
        }
    };
    bind("n1").await?;
    assert_eq!(
        pods.get("p")
            .await?
            .spec
            .and_then(|s| s.node_name)
            .as_deref(),
        Some("n1")
    );
    let again = bind("n2").await.expect_err("already bound");
    assert_eq!(again.downcast_ref::<kube::Error>().map(code), Some(409));
    c.shutdown().await;
    Ok(())
}

/// A raw GET with `accept`: status, content type and body.
async fn get_as(
    client: &kube::Client,
    path: &str,
    accept: &str,
) -> anyhow::Result<(u16, String, Vec<u8>)> {
    let req = http::Request::get(path)
        .header("accept", accept)
        .body(kube::client::Body::empty())?;
    let resp = client.send(req).await?;
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut body = resp.into_body();
    let mut bytes = Vec::new();
    // A watch never ends: its first frame is enough.
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        if let Ok(data) = frame?.into_data() {
            bytes.extend_from_slice(&data);
        }
        if ct.contains("stream=watch") && bytes.len() >= 4 {
            let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
            if bytes.len() >= 4 + len {
                break;
            }
        }
    }
    Ok((status, ct, bytes))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn answers_in_protobuf_when_asked_first() -> anyhow::Result<()> {
    let c = api_only().await?;
    let client = c.client().await?;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pods.create(&PostParams::default(), &pod("pb").build())
        .await?;
    let typed = "application/vnd.kubernetes.protobuf,application/json";
    let path = "/api/v1/namespaces/default/pods/pb";

    let (code, ct, body) = get_as(&client, path, typed).await?;
    assert_eq!(
        (code, ct.as_str()),
        (200, "application/vnd.kubernetes.protobuf")
    );
    assert!(body.starts_with(b"k8s\0"), "{body:?}");
    assert!(contains(&body, b"Pod") && contains(&body, b"pb"));
    // JSON first, or no preference: JSON.
    let (_, ct, _) = get_as(
        &client,
        path,
        "application/json, application/vnd.kubernetes.protobuf",
    )
    .await?;
    assert_eq!(ct, "application/json");
    let (_, ct, _) = get_as(&client, path, "*/*").await?;
    assert_eq!(ct, "application/json");

    // Errors are Status objects in the same media type.
    let (code, ct, body) = get_as(&client, "/api/v1/namespaces/default/pods/nope", typed).await?;
    assert_eq!(
        (code, ct.as_str()),
        (404, "application/vnd.kubernetes.protobuf")
    );
    assert!(contains(&body, b"Status") && contains(&body, b"NotFound"));

    // Lists and watches: PodList, then length-prefixed WatchEvents.
    let (_, ct, body) = get_as(&client, "/api/v1/namespaces/default/pods", typed).await?;
    assert_eq!(ct, "application/vnd.kubernetes.protobuf");
    assert!(contains(&body, b"PodList"));
    let (code, ct, body) = get_as(
        &client,
        "/api/v1/namespaces/default/pods?watch=1&resourceVersion=0",
        typed,
    )
    .await?;
    assert_eq!(
        (code, ct.as_str()),
        (200, "application/vnd.kubernetes.protobuf;stream=watch")
    );
    let len = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
    let frame = &body[4..4 + len];
    // A WatchEvent without the envelope, its object with it.
    assert!(!frame.starts_with(b"k8s\0"));
    assert!(contains(frame, b"ADDED") && contains(frame, b"k8s\0"));
    Ok(())
}
