//! plugins/owner-labels (a shipped controller plugin written in JavaScript) through
//! bosun-host: the same kind of tests as the Rust plugins get — commands asked for given
//! a cache, the error paths, and bad config.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use bosun_cli::offline::OfflineCache;
use bosun_conformance::{NOW_MS, crate_dir, engine};
use bosun_host::contract::{EventKind, ObjectRef, ReconcileRequest};
use bosun_host::host::{cache, clock, commands, log};
use bosun_host::{Engine, Revision, Services, Source, Spec, Strategy, World};
use serde_json::{Value, json};

const CONFIG: &str = r#"{"labels": ["team"], "prefixes": ["billing.example.com/"]}"#;

fn wasm() -> &'static PathBuf {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        bosun_cli::plugin::build_with(&crate_dir().join("../../plugins/owner-labels"), false)
            .unwrap_or_else(|e| panic!("{e:#}"))
    })
}

fn shared_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        engine(Some(bosun_conformance::guest_target_dir().join("compiled"))).expect("engine")
    })
}

fn testdata(name: &str) -> Value {
    let path = crate_dir()
        .join("../../plugins/owner-labels/testdata")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("testdata")).expect("JSON")
}

fn pod(name: &str, labels: Value, owner: Option<(&str, &str)>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": labels},
    });
    if let Some((kind, owner)) = owner {
        pod["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": kind, "name": owner, "uid": "u", "controller": true,
        }]);
    }
    pod
}

/// What one reconcile did: the outcome (or error), the patches as (pod, labels), the logs.
struct Run {
    requeue_after_ms: Option<u64>,
    patches: Vec<(String, Value)>,
    logs: Vec<String>,
}

fn load(
    objects: &[Value],
    config: &str,
) -> Result<(Revision, Arc<commands::Recorder>, Arc<log::Memory>), String> {
    let mut cache = OfflineCache::default();
    for o in objects {
        cache.insert(o).expect("object");
    }
    let recorder = Arc::new(commands::Recorder::default());
    let logs = Arc::new(log::Memory::default());
    let mut spec = Spec::new(Services {
        cache: Arc::new(cache),
        state: Arc::new(cache::MemoryState::default()),
        commands: recorder.clone(),
        log: logs.clone(),
        clock: Arc::new(clock::Fixed(NOW_MS)),
        pod: None,
    });
    spec.config = config.to_owned();
    spec.strategy = Strategy::Fresh;
    let source = Source::file(wasm()).expect("read");
    let revision = Revision::load(shared_engine(), &source, spec).map_err(|e| e.to_string())?;
    Ok((revision, recorder, logs))
}

fn reconcile(objects: &[Value], target: ObjectRef) -> Run {
    let (revision, recorder, logs) = load(objects, CONFIG).expect("load");
    let outcome = revision
        .reconcile(&ReconcileRequest {
            target,
            events: vec![EventKind::Added],
            outcomes: vec![],
            attempt: 0,
        })
        .expect("reconcile");
    let patches = recorder
        .take()
        .into_iter()
        .map(|c| {
            let c = c.command.to_json();
            assert_eq!(c["command"], "merge-patch", "{c}");
            (
                c["target"]["name"].as_str().unwrap_or("").to_owned(),
                c["patch"]["metadata"]["labels"].clone(),
            )
        })
        .collect();
    Run {
        requeue_after_ms: outcome.requeue_after_ms,
        patches,
        logs: logs.take().into_iter().map(|l| l.message).collect(),
    }
}

fn pod_ref(name: &str) -> ObjectRef {
    ObjectRef::namespaced("v1", "Pod", "shop", name)
}

#[test]
fn a_deployments_pod_gets_the_chosen_labels() {
    let objects = [
        testdata("pod.json"),
        testdata("cache/replicaset.json"),
        testdata("cache/deployment.json"),
    ];
    let run = reconcile(&objects, pod_ref("web-7f9c5-x2x8q"));
    assert_eq!(run.requeue_after_ms, None);
    // team and the billing prefix; not env (not chosen), not app (already equal).
    assert_eq!(
        run.patches,
        [(
            "web-7f9c5-x2x8q".to_owned(),
            json!({"team": "checkout", "billing.example.com/cost-center": "cc-42"})
        )]
    );
    assert_eq!(
        run.logs,
        [
            "v1/Pod shop/web-7f9c5-x2x8q: labels billing.example.com/cost-center, team from Deployment web"
        ]
    );
}

#[test]
fn a_pod_already_labelled_or_without_owner_is_left_alone() {
    let sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "shop", "labels": {"team": "data"}},
        "spec": {"selector": {"matchLabels": {"app": "db"}}},
    });
    let labelled = pod(
        "db-0",
        json!({"app": "db", "team": "data"}),
        Some(("StatefulSet", "db")),
    );
    let run = reconcile(&[sts.clone(), labelled], pod_ref("db-0"));
    assert!(run.patches.is_empty() && run.logs.is_empty());

    let bare = pod("debug", json!({"team": "x"}), None);
    let run = reconcile(&[bare], pod_ref("debug"));
    assert!(run.patches.is_empty() && run.requeue_after_ms.is_none());

    // A changed value is corrected.
    let stale = pod(
        "db-1",
        json!({"app": "db", "team": "old"}),
        Some(("StatefulSet", "db")),
    );
    let run = reconcile(&[sts, stale], pod_ref("db-1"));
    assert_eq!(run.patches, [("db-1".to_owned(), json!({"team": "data"}))]);
}

#[test]
fn an_owner_missing_from_the_cache_requeues() {
    let orphan = pod(
        "web-1",
        json!({"app": "web"}),
        Some(("ReplicaSet", "web-abc")),
    );
    let run = reconcile(&[orphan], pod_ref("web-1"));
    assert_eq!(run.requeue_after_ms, Some(30_000));
    assert!(run.patches.is_empty());
    assert_eq!(
        run.logs,
        ["v1/Pod shop/web-1: owner ReplicaSet web-abc is not in the cache yet; retrying"]
    );
}

#[test]
fn a_workload_change_labels_its_pods_only() {
    let sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "shop", "labels": {"team": "data"}},
        "spec": {"selector": {"matchLabels": {"app": "db"}}},
    });
    let objects = [
        sts,
        pod("db-0", json!({"app": "db"}), Some(("StatefulSet", "db"))),
        pod(
            "db-1",
            json!({"app": "db", "team": "data"}),
            Some(("StatefulSet", "db")),
        ),
        // Matches the selector, owned by another StatefulSet: not ours.
        pod("db-x", json!({"app": "db"}), Some(("StatefulSet", "other"))),
        pod("web-0", json!({"app": "web"}), Some(("StatefulSet", "web"))),
    ];
    let run = reconcile(
        &objects,
        ObjectRef::namespaced("apps/v1", "StatefulSet", "shop", "db"),
    );
    assert_eq!(run.patches, [("db-0".to_owned(), json!({"team": "data"}))]);
}

#[test]
fn metadata_and_bad_config() {
    let (revision, _, _) = load(&[], CONFIG).expect("load");
    assert_eq!(revision.info().world, World::Controller);
    let m = serde_json::to_value(revision.metadata()).expect("metadata");
    assert_eq!(m["name"], "owner-labels");
    let kinds: Vec<&str> = m["subscriptions"]
        .as_array()
        .expect("subscriptions")
        .iter()
        .filter_map(|s| s["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        ["Pod", "Deployment", "StatefulSet", "DaemonSet", "Job"]
    );

    for (config, want) in [
        ("{}", "name the labels to copy"),
        (
            r#"{"labels": ["team"], "lables": []}"#,
            r#"unknown field "lables""#,
        ),
        (
            r#"{"labels": "team"}"#,
            "labels must be a list of non-empty strings",
        ),
        (
            r#"{"labels": ["-bad-"]}"#,
            r#""-bad-" is not a valid label key"#,
        ),
        (
            r#"{"prefixes": ["billing.example.com"]}"#,
            "must be a DNS subdomain ending in /",
        ),
        ("[1]", "not a JSON object"),
    ] {
        let err = load(&[], config)
            .err()
            .unwrap_or_else(|| panic!("{config} loads"));
        assert!(
            err.contains("init failed") && err.contains("invalid config: ") && err.contains(want),
            "{config}: {err}"
        );
    }
}
