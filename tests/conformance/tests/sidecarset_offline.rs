//! plugins/sidecarset (JavaScript) through bosun-host against a fixed cache: which pods
//! one pass over a SidecarSet upgrades and what it counts, for the strategy fields the
//! end-to-end test (`sidecarset_upgrade.rs`) does not vary — percentages, the update
//! selector, `NotUpdate`, an upgrade in progress — with Kruise's
//! `calculateUpgradeCount` and `calculateStatus` (pkg/controller/sidecarset) as the
//! expectation.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use bosun_cli::offline::OfflineCache;
use bosun_conformance::{NOW_MS, crate_dir, engine};
use bosun_host::contract::{EventKind, ObjectRef, ReconcileRequest};
use bosun_host::host::{cache, clock, commands, log};
use bosun_host::{Engine, Revision, Services, Source, Spec, Strategy};
use serde_json::{Value, json};

const HASH: &str = "kruise.io/sidecarset-hash";
const WITHOUT_IMAGE: &str = "kruise.io/sidecarset-hash-without-image";
const STATE: &str = "kruise.io/sidecarset-inplace-update-state";

fn wasm() -> &'static PathBuf {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        bosun_cli::plugin::build_with(&crate_dir().join("../../plugins/sidecarset"), false)
            .unwrap_or_else(|e| panic!("{e:#}"))
    })
}

fn shared_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        engine(Some(bosun_conformance::guest_target_dir().join("compiled"))).expect("engine")
    })
}

/// The SidecarSet `agent` at hash `h2` (image agent:v2), without-image hash `w`.
fn sidecarset(strategy: Value) -> Value {
    json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "SidecarSet",
        "metadata": {"name": "agent", "generation": 3,
            "annotations": {HASH: "h2", WITHOUT_IMAGE: "w"}},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
            "containers": [{"name": "agent", "image": "agent:v2"}],
            "updateStrategy": strategy},
    })
}

/// A Ready pod injected with the SidecarSet at hash `hash` running `agent:v1`.
fn pod(name: &str, hash: &str, labels: Value) -> Value {
    let mut labels = labels;
    labels["app"] = json!("web");
    let entry = |h: &str| json!({"agent": {"hash": h, "sidecarSetName": "agent"}}).to_string();
    let running = |c: &str, image: &str| {
        json!({"name": c, "image": image,
        "imageID": format!("sim://{image}"), "ready": true, "restartCount": 0})
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": labels,
            "annotations": {HASH: entry(hash), WITHOUT_IMAGE: entry("w")}},
        "spec": {"nodeName": "n1", "containers": [
            {"name": "agent", "image": "agent:v1"}, {"name": "app", "image": "app:v1"}]},
        "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [running("agent", "agent:v1"), running("app", "app:v1")]},
    })
}

/// What one pass over the SidecarSet sent: the pods patched in place (names, sorted), the
/// status written (if any), the patches.
struct Run {
    upgraded: Vec<String>,
    status: Option<Value>,
    patches: Vec<Value>,
}

fn pass(objects: &[Value]) -> Run {
    let mut cache = OfflineCache::default();
    for o in objects {
        cache.insert(o).expect("object");
    }
    let recorder = Arc::new(commands::Recorder::default());
    let mut spec = Spec::new(Services {
        cache: Arc::new(cache),
        state: Arc::new(cache::MemoryState::default()),
        commands: recorder.clone(),
        log: Arc::new(log::Memory::default()),
        clock: Arc::new(clock::Fixed(NOW_MS)),
        pod: None,
    });
    spec.config = "{}".to_owned();
    spec.strategy = Strategy::Fresh;
    let source = Source::file(wasm()).expect("read");
    let revision = Revision::load(shared_engine(), &source, spec).expect("load");
    revision
        .reconcile(&ReconcileRequest {
            target: ObjectRef::cluster("bosun.dev/v1alpha1", "SidecarSet", "agent"),
            events: vec![EventKind::Modified],
            outcomes: vec![],
            attempt: 0,
        })
        .expect("reconcile");
    let mut run = Run {
        upgraded: vec![],
        status: None,
        patches: vec![],
    };
    for c in recorder.take() {
        let c = c.command.to_json();
        let patch = match &c["patch"] {
            Value::String(t) => serde_json::from_str(t).expect("patch JSON"),
            v => v.clone(),
        };
        match c["command"].as_str() {
            Some("merge-patch") if c["target"]["kind"] == "SidecarSet" => {
                run.status = Some(patch["status"].clone());
            }
            Some("json-patch") => {
                run.upgraded
                    .push(c["target"]["name"].as_str().unwrap_or("").to_owned());
                run.patches.push(patch);
            }
            _ => panic!("unexpected command {c}"),
        }
    }
    run.upgraded.sort();
    run
}

fn pods(n: usize, hash: &str) -> Vec<Value> {
    (0..n)
        .map(|i| pod(&format!("web-{i}"), hash, json!({})))
        .collect()
}

#[test]
fn percentages_round_down_partition_leaves_pods_and_max_unavailable_bounds_a_pass() {
    // 10 pods: partition 25% → 2 stay, maxUnavailable 35% → 3 at once.
    let mut objects = pods(10, "h1");
    objects.push(sidecarset(
        json!({"partition": "25%", "maxUnavailable": "35%"}),
    ));
    let run = pass(&objects);
    assert_eq!(run.upgraded.len(), 3, "{:?}", run.upgraded);
    assert_eq!(
        run.status,
        Some(
            json!({"observedGeneration": 3, "matchedPods": 10, "updatedPods": 0,
            "readyPods": 10, "updatedReadyPods": 0, "latestRevision": "agent-h2"})
        )
    );
    // One patch per pod: test the hash the cache showed, the sidecar's image, the new
    // hash, the imageID before the restart.
    let ops = run.patches[0].as_array().expect("ops");
    assert_eq!(ops[0]["op"], "test");
    assert_eq!(
        ops[0]["path"],
        "/metadata/annotations/kruise.io~1sidecarset-hash"
    );
    assert_eq!(
        ops[1],
        json!({"op": "replace", "path": "/spec/containers/0/image", "value": "agent:v2"})
    );
    let hash: Value = serde_json::from_str(ops[2]["value"].as_str().expect("hash")).expect("json");
    assert_eq!(hash["agent"]["hash"], "h2");
    assert_eq!(hash["agent"]["sidecarList"], json!(["agent"]));
    let state: Value =
        serde_json::from_str(ops[3]["value"].as_str().expect("state")).expect("json");
    assert_eq!(
        state["agent"]["lastContainerStatuses"],
        json!({"agent": {"imageID": "sim://agent:v1"}})
    );

    // 8 of 10 updated already: the partition of 2 leaves nothing to do.
    let mut objects = pods(8, "h2");
    objects.extend([pod("web-8", "h1", json!({})), pod("web-9", "h1", json!({}))]);
    objects.push(sidecarset(json!({"partition": 2, "maxUnavailable": "50%"})));
    assert!(pass(&objects).upgraded.is_empty());
}

#[test]
fn the_update_selector_scopes_and_not_update_stops_the_upgrade() {
    let mut objects = vec![
        pod("web-0", "h1", json!({"canary": "true"})),
        pod("web-1", "h1", json!({})),
        pod("web-2", "h1", json!({"canary": "true"})),
    ];
    objects.push(sidecarset(json!({"maxUnavailable": 3,
        "selector": {"matchExpressions": [{"key": "canary", "operator": "In", "values": ["true"]}]}})));
    assert_eq!(pass(&objects).upgraded, ["web-0", "web-2"]);

    objects.pop();
    objects.push(sidecarset(
        json!({"type": "NotUpdate", "maxUnavailable": 3}),
    ));
    let run = pass(&objects);
    assert!(run.upgraded.is_empty());
    assert_eq!(run.status.expect("status")["matchedPods"], 3);
}

#[test]
fn an_upgrade_in_progress_counts_against_max_unavailable_and_not_as_ready() {
    // web-0 was patched to h2: its spec asks for agent:v2, the kubelet still reports
    // agent:v1 with the imageID recorded before the patch: updated, not consistent.
    let mut upgrading = pod("web-0", "h2", json!({}));
    upgrading["spec"]["containers"][0]["image"] = json!("agent:v2");
    upgrading["metadata"]["annotations"][STATE] = json!(
        json!({"agent": {"revision": "h2", "lastContainerStatuses": {"agent": {"imageID": "sim://agent:v1"}}}})
            .to_string()
    );
    let mut objects = vec![upgrading.clone(), pod("web-1", "h1", json!({}))];
    objects.push(sidecarset(json!({})));
    let run = pass(&objects);
    assert!(run.upgraded.is_empty(), "maxUnavailable 1 is taken");
    let status = run.status.expect("status");
    assert_eq!(
        (
            &status["updatedPods"],
            &status["readyPods"],
            &status["updatedReadyPods"]
        ),
        (&json!(1), &json!(1), &json!(0)),
        "{status}"
    );

    // The kubelet runs the new image: consistent, ready, and the next pod goes.
    let s = &mut upgrading["status"]["containerStatuses"][0];
    s["image"] = json!("agent:v2");
    s["imageID"] = json!("sim://agent:v2");
    s["restartCount"] = json!(1);
    let mut objects = vec![upgrading, pod("web-1", "h1", json!({}))];
    objects.push(sidecarset(json!({})));
    let run = pass(&objects);
    assert_eq!(run.upgraded, ["web-1"]);
    assert_eq!(run.status.expect("status")["updatedReadyPods"], 1);
}

/// A clock the test moves.
struct Moving(std::sync::atomic::AtomicU64);

impl clock::Clock for Moving {
    fn now_ms(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Pod events recount a SidecarSet at most once per pollMs (a recount reads every pod: one
/// per pod event made an upgrade of 1,000 pods quadratic): an event within pollMs of the
/// last recount is looked at again when pollMs has passed, and then only if no recount
/// happened meanwhile.
#[test]
fn pod_events_recount_a_sidecarset_at_most_once_per_poll_interval() {
    let mut cache = OfflineCache::default();
    let mut objects = pods(3, "h1");
    objects.push(sidecarset(json!({"type": "NotUpdate"})));
    for o in &objects {
        cache.insert(o).expect("object");
    }
    let recorder = Arc::new(commands::Recorder::default());
    let now = Arc::new(Moving(std::sync::atomic::AtomicU64::new(NOW_MS)));
    let mut spec = Spec::new(Services {
        cache: Arc::new(cache),
        state: Arc::new(cache::MemoryState::default()),
        commands: recorder.clone(),
        log: Arc::new(log::Memory::default()),
        clock: now.clone(),
        pod: None,
    });
    spec.config = r#"{"pollMs": 1000}"#.to_owned();
    let revision =
        Revision::load(shared_engine(), &Source::file(wasm()).expect("read"), spec).expect("load");
    // At `at` ms after NOW, an event on pod `name`: (requeue-after, status patches sent).
    let event = |at: u64, name: &str, kind: EventKind| {
        now.0
            .store(NOW_MS + at, std::sync::atomic::Ordering::SeqCst);
        let out = revision
            .reconcile(&ReconcileRequest {
                target: ObjectRef::namespaced("v1", "Pod", "shop", name),
                events: vec![kind],
                outcomes: vec![],
                attempt: 0,
            })
            .expect("reconcile");
        (out.requeue_after_ms, recorder.take().len())
    };
    assert_eq!(
        event(0, "web-0", EventKind::Modified),
        (None, 1),
        "recounted"
    );
    assert_eq!(
        event(100, "web-1", EventKind::Modified),
        (Some(900), 0),
        "deferred until pollMs has passed"
    );
    assert_eq!(event(200, "web-2", EventKind::Modified), (Some(800), 0));
    assert_eq!(
        event(1000, "web-1", EventKind::Requeued),
        (None, 1),
        "recounted when its time came"
    );
    assert_eq!(
        event(1001, "web-2", EventKind::Requeued),
        (None, 0),
        "covered by the recount a millisecond earlier"
    );
}
