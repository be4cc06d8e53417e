//! A `kube::runtime::Controller` converging against the embedded cluster, and concurrent
//! writers that never lose an update.

mod common;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

struct Ctx {
    api: Api<ConfigMap>,
    reconciles: AtomicUsize,
}

fn configmap(name: &str, app: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "data": {"k": "v"},
    }))
    .expect("valid configmap")
}

async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    let name = cm.metadata.name.clone().unwrap_or_default();
    let seen = cm.data.as_ref().and_then(|d| d.get("seen"));
    if seen.map(String::as_str) != Some(name.as_str()) {
        let patch = json!({"data": {"seen": name}});
        ctx.api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(Action::await_change())
}

fn error_policy(_cm: Arc<ConfigMap>, _e: &kube::Error, _ctx: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(100))
}

fn seen(cm: &ConfigMap) -> Option<&str> {
    cm.data.as_ref()?.get("seen").map(String::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_converges_and_stops() -> anyhow::Result<()> {
    let c = common::api_only().await?;
    let client = c.client().await?;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    for i in 0..5 {
        api.create(
            &PostParams::default(),
            &configmap(&format!("demo-{i}"), "demo"),
        )
        .await?;
    }
    api.create(&PostParams::default(), &configmap("other", "other"))
        .await?;

    let ctx = Arc::new(Ctx {
        api: api.clone(),
        reconciles: AtomicUsize::new(0),
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let controller = Controller::new(api.clone(), watcher::Config::default().labels("app=demo"))
        .graceful_shutdown_on(async move {
            let _ = stop_rx.await;
        })
        .run(reconcile, error_policy, ctx.clone())
        .collect::<Vec<_>>();
    let running = tokio::spawn(controller);

    let all_seen = |n: usize| {
        let api = api.clone();
        move || {
            let api = api.clone();
            async move {
                let list = api
                    .list(&ListParams::default().labels("app=demo"))
                    .await
                    .ok()?;
                let ok = list.items.len() == n
                    && list
                        .items
                        .iter()
                        .all(|cm| seen(cm) == cm.metadata.name.as_deref());
                ok.then_some(list)
            }
        }
    };
    common::eventually(20, all_seen(5)).await?;
    // An object created while the controller runs converges too.
    api.create(&PostParams::default(), &configmap("demo-late", "demo"))
        .await?;
    common::eventually(20, all_seen(6)).await?;
    // Objects outside the selector are left alone.
    let other = api.get("other").await?;
    assert_eq!(seen(&other), None);

    stop_tx.send(()).ok();
    let results = tokio::time::timeout(Duration::from_secs(10), running).await??;
    assert!(
        results.iter().all(Result::is_ok),
        "reconcile errors: {:?}",
        results.iter().filter(|r| r.is_err()).collect::<Vec<_>>()
    );
    assert!(ctx.reconciles.load(Ordering::SeqCst) >= 6);
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_read_modify_write_loses_no_update() -> anyhow::Result<()> {
    const TASKS: usize = 8;
    const INCREMENTS: usize = 50;
    let c = common::api_only().await?;
    let client = c.client().await?;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let mut cm = configmap("counter", "counter");
    cm.data = Some(BTreeMap::from([("n".to_string(), "0".to_string())]));
    api.create(&PostParams::default(), &cm).await?;

    let conflicts = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (api, conflicts) = (api.clone(), conflicts.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..INCREMENTS {
                loop {
                    let mut cm = api.get("counter").await?;
                    let data = cm.data.get_or_insert_with(BTreeMap::new);
                    let n: u64 = data.get("n").map_or(Ok(0), |v| v.parse())?;
                    data.insert("n".to_string(), (n + 1).to_string());
                    match api.replace("counter", &PostParams::default(), &cm).await {
                        Ok(_) => break,
                        Err(e) if common::code(&e) == 409 => {
                            conflicts.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => return Err(anyhow::Error::from(e)),
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let cm = api.get("counter").await?;
    let n = cm.data.as_ref().and_then(|d| d.get("n")).cloned();
    assert_eq!(n.as_deref(), Some(&*(TASKS * INCREMENTS).to_string()));
    println!(
        "{} increments, {} conflicts retried",
        TASKS * INCREMENTS,
        conflicts.load(Ordering::SeqCst)
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_are_all_visible() -> anyhow::Result<()> {
    const TASKS: usize = 8;
    const EACH: usize = 50;
    let c = common::api_only().await?;
    let client = c.client().await?;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                api.create(
                    &PostParams::default(),
                    &configmap(&format!("cm-{t}-{i}"), "many"),
                )
                .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let list = api.list(&ListParams::default().labels("app=many")).await?;
    let mut names: Vec<String> = list
        .items
        .iter()
        .filter_map(|cm| cm.metadata.name.clone())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), TASKS * EACH);
    for t in 0..TASKS {
        for i in 0..EACH {
            assert!(
                names.binary_search(&format!("cm-{t}-{i}")).is_ok(),
                "cm-{t}-{i}"
            );
        }
    }
    // Every create got its own resourceVersion.
    let mut rvs: Vec<String> = list
        .items
        .iter()
        .filter_map(|cm| cm.metadata.resource_version.clone())
        .collect();
    rvs.sort();
    rvs.dedup();
    assert_eq!(rvs.len(), TASKS * EACH);
    c.shutdown().await;
    Ok(())
}
