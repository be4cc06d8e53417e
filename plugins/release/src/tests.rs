//! The release's decisions against an in-memory host.

use bosun_sdk::testing::Host;
use serde_json::{Value, json};

use super::*;

const NS: &str = "shop";

fn template(image: &str, env: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": image, "env": [{"name": "E", "value": env}]}]}
    })
}

fn revision(name: &str, template: &Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": name, "namespace": NS},
        "data": {"spec": {"template": template}}, "revision": 1
    })
}

/// A StatefulSet `web` whose update revision is `web-v2`.
struct Sts {
    replicas: u64,
    annotations: Value,
    strategy: &'static str,
}

fn sts(replicas: u64) -> Sts {
    Sts {
        replicas,
        annotations: json!({params::STRATEGY: "InPlaceIfPossible"}),
        strategy: "OnDelete",
    }
}

impl Sts {
    fn annotate(mut self, key: &str, value: &str) -> Self {
        self.annotations[key] = json!(value);
        self
    }
    fn rolling(mut self) -> Self {
        self.strategy = "RollingUpdate";
        self
    }
    fn build(self) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": NS, "uid": "sts-uid", "generation": 2,
                "annotations": self.annotations},
            "spec": {"replicas": self.replicas, "selector": {"matchLabels": {"app": "web"}},
                "updateStrategy": {"type": self.strategy}, "template": template("app:v2", "a")},
            "status": {"observedGeneration": 2, "updateRevision": "web-v2", "currentRevision": "web-v1"}
        })
    }
}

struct Pod {
    ordinal: u64,
    revision: &'static str,
    image: &'static str,
    ready: bool,
    annotations: Value,
    waiting: Option<&'static str>,
    /// Declares the readiness gate, with this condition status (`None`: no condition yet).
    gate: Option<Option<&'static str>>,
}

fn pod(ordinal: u64) -> Pod {
    Pod {
        ordinal,
        revision: "web-v1",
        image: "app:v1",
        ready: true,
        annotations: json!({}),
        waiting: None,
        gate: None,
    }
}

impl Pod {
    fn at(mut self, revision: &'static str, image: &'static str) -> Self {
        self.revision = revision;
        self.image = image;
        self
    }
    fn not_ready(mut self) -> Self {
        self.ready = false;
        self
    }
    fn state(mut self, state: &State) -> Self {
        self.annotations[STATE] = json!(serde_json::to_string(state).expect("json"));
        self
    }
    fn waiting(mut self, reason: &'static str) -> Self {
        self.waiting = Some(reason);
        self.ready = false;
        self
    }
    fn gated(mut self, condition: Option<&'static str>) -> Self {
        self.gate = Some(condition);
        self
    }
    fn build(self) -> Value {
        // As the kubelet: a gated pod is Ready only when its gate is True too.
        let gate_ok = matches!(self.gate, None | Some(Some("True")));
        let tf = if self.ready && gate_ok {
            "True"
        } else {
            "False"
        };
        let mut conditions = vec![json!({"type": "Ready", "status": tf})];
        if let Some(Some(status)) = self.gate {
            conditions.push(json!({"type": GATE, "status": status}));
        }
        let gates = match self.gate {
            Some(_) => json!([{"conditionType": GATE}]),
            None => json!([]),
        };
        let state = match self.waiting {
            Some(reason) => json!({"waiting": {"reason": reason}}),
            None => json!({"running": {}}),
        };
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("web-{}", self.ordinal), "namespace": NS,
                "uid": format!("uid-{}", self.ordinal),
                "labels": {"app": "web", HASH_LABEL: self.revision},
                "annotations": self.annotations,
                "ownerReferences": [{"uid": "sts-uid", "kind": "StatefulSet", "name": "web", "controller": true}]},
            "spec": {"containers": [{"name": "app", "image": self.image}], "readinessGates": gates},
            "status": {"conditions": conditions,
                "containerStatuses": [{"name": "app", "image": self.image,
                    "imageID": if self.waiting.is_some() { String::new() } else { format!("sim://{}", self.image) },
                    "ready": self.ready, "restartCount": 0, "state": state}]}
        })
    }
}

fn plugin() -> Release {
    Release::init(r#"{"pollMs": 100}"#).expect("config")
}

/// A host with `sts`, both revisions (`web-v1` differs from `web-v2` in the image, and in
/// the env when `other_change`) and `pods`.
fn host(sts: Value, other_change: bool, pods: Vec<Pod>) -> Host {
    let mut host = Host::new()
        .with_object(sts)
        .with_object(revision(
            "web-v1",
            &template("app:v1", if other_change { "b" } else { "a" }),
        ))
        .with_object(revision("web-v2", &template("app:v2", "a")));
    for p in pods {
        host.insert(p.build());
    }
    host
}

fn sts_ref() -> ObjectRef {
    ObjectRef::new("apps/v1", "StatefulSet")
        .namespaced(NS)
        .named("web")
}

fn run(host: &mut Host) -> Outcome {
    host.reconcile(&plugin(), &Request::new(sts_ref()))
        .expect("reconcile succeeds")
}

/// The pods a JSON patch moved to web-v2, in order.
fn patched(commands: &[Command]) -> Vec<String> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::JsonPatch { target, patch } if patch.contains("app:v2") => {
                Some(target.name.clone())
            }
            _ => None,
        })
        .collect()
}

fn evicted(commands: &[Command]) -> Vec<String> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Evict { pod } => Some(pod.name.clone()),
            _ => None,
        })
        .collect()
}

fn events(commands: &[Command]) -> Vec<(EventType, String, String)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Event {
                event_type,
                reason,
                message,
                ..
            } => Some((*event_type, reason.clone(), message.clone())),
            _ => None,
        })
        .collect()
}

fn status(commands: &[Command]) -> Option<Status> {
    commands.iter().find_map(|c| match c {
        Command::MergePatch { target, patch } if target.kind == "StatefulSet" => {
            let patch: Value = serde_json::from_str(patch).ok()?;
            serde_json::from_str(
                patch
                    .pointer("/metadata/annotations")?
                    .get(STATUS)?
                    .as_str()?,
            )
            .ok()
        }
        _ => None,
    })
}

#[test]
fn patches_images_in_place_highest_ordinal_first_within_max_unavailable() {
    let sts = sts(6).annotate(params::MAX_UNAVAILABLE, "2").build();
    let mut h = host(sts, false, (0..6).map(pod).collect());
    let outcome = run(&mut h);
    assert_eq!(outcome, Outcome::requeue_after(Duration::from_millis(100)));
    let cmds = h.take_commands();
    assert_eq!(patched(&cmds), ["web-5", "web-4"]);
    let Some(Command::JsonPatch { patch, .. }) = cmds.first() else {
        panic!("first command is the patch: {cmds:?}");
    };
    let ops: Value = serde_json::from_str(patch).expect("json");
    assert_eq!(
        ops[0],
        json!({"op": "test", "path": "/metadata/labels/controller-revision-hash", "value": "web-v1"})
    );
    assert_eq!(
        ops[1],
        json!({"op": "replace", "path": "/spec/containers/0/image", "value": "app:v2"})
    );
    let s = status(&cmds).expect("status written");
    assert_eq!((s.updated, s.ready, s.total, s.paused), (0, 6, 6, None));
    assert!(events(&cmds).iter().any(|(_, r, _)| r == "ReleaseStarted"));

    // The same (stale) cache again: what is in flight is not patched twice, and counts.
    run(&mut h);
    assert_eq!(patched(&h.take_commands()), Vec::<String>::new());
}

#[test]
fn not_ready_and_patched_pods_use_the_budget() {
    let sts = sts(6).annotate(params::MAX_UNAVAILABLE, "2").build();
    // web-5 is patched, the kubelet has not restarted it yet: Ready, but not available.
    let mut five = pod(5).at("web-v2", "app:v1").build();
    five["spec"]["containers"][0]["image"] = json!("app:v2");
    let mut h = host(sts, false, (0..5).map(pod).collect());
    h.insert(five);
    run(&mut h);
    assert_eq!(patched(&h.take_commands()), ["web-4"]);
}

#[test]
fn an_unavailable_old_pod_is_updated_without_budget() {
    let sts = sts(3).build();
    let pods = vec![
        pod(0),
        pod(1).not_ready(),
        pod(2).at("web-v2", "app:v2").not_ready(),
    ];
    let mut h = host(sts, false, pods);
    run(&mut h);
    assert_eq!(patched(&h.take_commands()), ["web-1"]);
}

#[test]
fn partition_keeps_lower_ordinals_and_completes_above_it() {
    let sts = sts(4)
        .annotate(params::PARTITION, "2")
        .annotate(params::MAX_UNAVAILABLE, "4")
        .build();
    let mut h = host(sts.clone(), false, (0..4).map(pod).collect());
    run(&mut h);
    assert_eq!(patched(&h.take_commands()), ["web-3", "web-2"]);

    let pods = vec![
        pod(0),
        pod(1),
        pod(2).at("web-v2", "app:v2"),
        pod(3).at("web-v2", "app:v2"),
    ];
    let mut h = host(sts, false, pods);
    assert_eq!(run(&mut h), Outcome::done());
    let cmds = h.take_commands();
    assert!(patched(&cmds).is_empty());
    let s = status(&cmds).expect("status");
    assert_eq!((s.updated, s.ready, s.total), (2, 4, 4));
}

#[test]
fn paused_releases_nothing_and_says_why() {
    let sts = sts(3).annotate(params::PAUSED, "true").build();
    let mut h = host(sts, false, (0..3).map(pod).collect());
    run(&mut h);
    let cmds = h.take_commands();
    assert!(patched(&cmds).is_empty());
    assert!(
        status(&cmds)
            .and_then(|s| s.paused)
            .is_some_and(|r| r.contains("paused by annotation"))
    );
    assert!(
        events(&cmds)
            .iter()
            .any(|(t, r, _)| *t == EventType::Warning && r == "ReleasePaused")
    );
}

#[test]
fn failures_past_the_threshold_pause_the_release() {
    let sts = sts(4).annotate(params::MAX_UNAVAILABLE, "4").build();
    let pods = vec![
        pod(0),
        pod(1),
        pod(2),
        pod(3).at("web-v2", "app:v2").waiting("ErrImagePull"),
    ];
    let mut h = host(sts.clone(), false, pods);
    run(&mut h);
    let cmds = h.take_commands();
    assert!(patched(&cmds).is_empty(), "{cmds:?}");
    let reason = status(&cmds).and_then(|s| s.paused).expect("paused");
    assert!(
        reason.contains("1 pods failed") && reason.contains("threshold 0"),
        "{reason}"
    );

    // A threshold of 1 tolerates it.
    let sts = self::sts(4)
        .annotate(params::MAX_UNAVAILABLE, "4")
        .annotate(params::FAILURE_THRESHOLD, "1")
        .build();
    let pods = vec![
        pod(0),
        pod(1),
        pod(2),
        pod(3).at("web-v2", "app:v2").waiting("ErrImagePull"),
    ];
    let mut h = host(sts, false, pods);
    run(&mut h);
    assert_eq!(patched(&h.take_commands()), ["web-2", "web-1", "web-0"]);
}

#[test]
fn other_differences_evict_unless_in_place_only() {
    let mut h = host(sts(2).build(), true, vec![pod(0), pod(1)]);
    run(&mut h);
    let cmds = h.take_commands();
    assert_eq!(evicted(&cmds), ["web-1"]);
    assert!(patched(&cmds).is_empty());

    let only = sts(2).annotate(params::STRATEGY, "InPlaceOnly").build();
    let mut h = host(only, true, vec![pod(0), pod(1)]);
    run(&mut h);
    let cmds = h.take_commands();
    assert!(evicted(&cmds).is_empty() && patched(&cmds).is_empty());
    assert!(
        status(&cmds)
            .and_then(|s| s.paused)
            .is_some_and(|r| r.contains("InPlaceOnly"))
    );

    let recreate = sts(2).annotate(params::STRATEGY, "Recreate").build();
    let mut h = host(recreate, false, vec![pod(0), pod(1)]);
    run(&mut h);
    assert_eq!(evicted(&h.take_commands()), ["web-1"]);
}

#[test]
fn a_grace_period_marks_first_then_patches_when_it_is_over() {
    let sts = sts(2).annotate(params::GRACE_PERIOD, "5").build();
    let mut h = host(sts.clone(), false, vec![pod(0), pod(1)]);
    run(&mut h);
    let cmds = h.take_commands();
    assert!(patched(&cmds).is_empty());
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::MergePatch { target, patch }
        if target.name == "web-1" && patch.contains("Draining")))
    );

    let now = Host::new().enter(bosun_sdk::clock::now_ms);
    let marked = |since_ms| {
        pod(1).state(&State {
            revision: "web-v2".into(),
            phase: Phase::Draining,
            since_ms,
        })
    };
    // Marked 1s ago: wait 4s more; the marked pod counts against max-unavailable.
    let mut h = host(sts.clone(), false, vec![pod(0), marked(now - 1000)]);
    assert_eq!(
        run(&mut h),
        Outcome::requeue_after(Duration::from_millis(100))
    );
    assert!(patched(&h.take_commands()).is_empty());
    // Marked 6s ago: patch it.
    let mut h = host(sts, false, vec![pod(0), marked(now - 6000)]);
    run(&mut h);
    assert_eq!(patched(&h.take_commands()), ["web-1"]);
}

/// The gate values set by status patches, per pod, in order.
fn gate_patches(commands: &[Command]) -> Vec<(String, String)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::JsonPatch { target, patch }
                if patch.contains("/status/conditions") && !patch.contains("app:v2") =>
            {
                let ops: Value = serde_json::from_str(patch).ok()?;
                let ops = ops.as_array()?;
                // Every operation stays under /status: the host sends it to the subresource.
                assert!(
                    ops.iter().all(|o| o["path"]
                        .as_str()
                        .is_some_and(|p| p.starts_with("/status/"))),
                    "{patch}"
                );
                let value = ops.last()?.pointer("/value/status")?.as_str()?.to_owned();
                Some((target.name.clone(), value))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_gated_pod_is_taken_out_of_service_before_its_images_change() {
    // No grace period: in one pass the gate is set False, then the images are patched
    // by a patch that tests the gate is False (the pipe runs the two in order, and a
    // failed gate patch makes the image patch fail).
    let sts = sts(2).build();
    // The fixture's conditions: Ready, then the gate.
    let gate_at = 1;
    let mut h = host(
        sts.clone(),
        false,
        vec![pod(0).gated(Some("True")), pod(1).gated(Some("True"))],
    );
    run(&mut h);
    let cmds = h.take_commands();
    assert_eq!(
        gate_patches(&cmds),
        [("web-1".to_owned(), "False".to_owned())]
    );
    assert_eq!(patched(&cmds), ["web-1"]);
    let patches: Vec<&str> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::JsonPatch { patch, .. } => Some(patch.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(patches.len(), 2, "{patches:?}");
    assert!(!patches[0].contains("app:v2"), "gate first: {patches:?}");
    let ops: Value = serde_json::from_str(patches[1]).expect("json");
    assert!(
        ops.as_array().is_some_and(|ops| ops.contains(&json!(
            {"op": "test", "path": format!("/status/conditions/{gate_at}/status"), "value": "False"}
        ))),
        "{ops}"
    );
    assert!(
        !cmds
            .iter()
            .any(|c| matches!(c, Command::MergePatch { patch, .. } if patch.contains(STATE))),
        "no mark without a grace period: {cmds:?}"
    );

    // Marked earlier (by a release with a grace period, now over):

    let now = Host::new().enter(bosun_sdk::clock::now_ms);
    let marked = || {
        pod(1).state(&State {
            revision: "web-v2".into(),
            phase: Phase::Draining,
            since_ms: now - 10,
        })
    };
    // Marked, but the cache still shows the gate True: no image patch yet.
    let mut h = host(
        sts.clone(),
        false,
        vec![pod(0).gated(Some("True")), marked().gated(Some("True"))],
    );
    run(&mut h);
    let cmds = h.take_commands();
    assert!(patched(&cmds).is_empty(), "{cmds:?}");
    assert_eq!(
        gate_patches(&cmds),
        [("web-1".to_owned(), "False".to_owned())]
    );
    // The gate shows False: patch the images.
    let mut h = host(
        sts.clone(),
        false,
        vec![
            pod(0).gated(Some("True")),
            marked().gated(Some("False")).not_ready(),
        ],
    );
    run(&mut h);
    let cmds = h.take_commands();
    assert_eq!(patched(&cmds), ["web-1"]);
    assert!(gate_patches(&cmds).is_empty(), "{cmds:?}");

    // Patched, new image running and ready, gate still False: set it True.
    let done = pod(1)
        .at("web-v2", "app:v2")
        .state(&State {
            revision: "web-v2".into(),
            phase: Phase::Patched,
            since_ms: now - 10,
        })
        .gated(Some("False"));
    let mut h = host(sts.clone(), false, vec![pod(0).gated(Some("True")), done]);
    run(&mut h);
    let cmds = h.take_commands();
    assert_eq!(
        gate_patches(&cmds),
        [("web-1".to_owned(), "True".to_owned())]
    );
    // Patched but the new container is not up yet: the gate stays False.
    let starting = pod(1)
        .at("web-v2", "app:v2")
        .waiting("ContainerCreating")
        .gated(Some("False"));
    let mut h = host(sts, false, vec![pod(0).gated(Some("True")), starting]);
    run(&mut h);
    assert!(gate_patches(&h.take_commands()).is_empty());
}

#[test]
fn a_gate_condition_is_appended_guarded_by_the_list_it_was_read_from() {
    use bosun_cluster::patch::{PatchKind, patch as apply};
    let p = pod(1).gated(None).build();
    let patch = gate_patch(&p, true, "2026-01-01T00:00:00Z").expect("conditions exist");
    assert_eq!(patch[0]["op"], "test");
    assert_eq!(patch[0]["path"], "/status/conditions");
    assert_eq!(patch[0]["value"], p["status"]["conditions"]);
    assert_eq!(patch[1]["path"], "/status/conditions/-");
    // Applied by the API server to what the cache showed: the gate is appended once.
    let body = serde_json::to_vec(&patch).expect("json");
    let once = apply(PatchKind::Json, &p, &body).expect("applies");
    assert_eq!(gate_status(&once), Some("True"));
    // The cache was stale and the gate is there already (another pass appended it):
    // the patch fails instead of adding it twice.
    let err = apply(PatchKind::Json, &once, &body).expect_err("the guard fails");
    assert!(err.to_string().contains("did not match"), "{err}");
    let p = pod(1).gated(Some("True")).build();
    let patch = gate_patch(&p, false, "2026-01-01T00:00:00Z").expect("conditions exist");
    assert_eq!(patch[0]["path"], "/status/conditions/1/type");
    assert_eq!(patch[1]["path"], "/status/conditions/1");
    assert_eq!(patch[1]["value"]["status"], "False");
    let mut bare = pod(1).gated(None).build();
    bare["status"] = json!({});
    assert_eq!(gate_patch(&bare, true, "t"), None);
}

#[test]
fn new_gated_pods_are_let_into_service() {
    // A pod the StatefulSet controller created at the target revision: no condition yet.
    let sts = sts(1).build();
    let fresh = pod(0).at("web-v2", "app:v2").gated(None);
    let mut h = host(sts, false, vec![fresh]);
    run(&mut h);
    assert_eq!(
        gate_patches(&h.take_commands()),
        [("web-0".to_owned(), "True".to_owned())]
    );
}

#[test]
fn in_place_updates_carry_the_template_labels_and_annotations() {
    let mut old = template("app:v1", "a");
    old["metadata"]["labels"]["track"] = json!("old");
    old["metadata"]["annotations"] = json!({"note": "v1"});
    let mut new = template("app:v2", "a");
    new["metadata"]["labels"]["tier"] = json!("web");
    new["metadata"]["annotations"] = json!({"note": "v2"});
    let mut h = Host::new()
        .with_object(sts(1).build())
        .with_object(revision("web-v1", &old))
        .with_object(revision("web-v2", &new));
    let mut p = pod(0).build();
    p["metadata"]["labels"]["track"] = json!("old");
    p["metadata"]["annotations"]["note"] = json!("v1");
    h.insert(p);
    run(&mut h);
    let cmds = h.take_commands();
    let ops: Vec<Value> = cmds
        .iter()
        .find_map(|c| match c {
            Command::JsonPatch { patch, .. } if patch.contains("app:v2") => {
                serde_json::from_str(patch).ok()
            }
            _ => None,
        })
        .expect("an in-place patch");
    let has = |op: &str, path: &str| ops.iter().any(|o| o["op"] == op && o["path"] == path);
    assert!(has("add", "/metadata/labels/tier"), "{ops:?}");
    assert!(has("remove", "/metadata/labels/track"), "{ops:?}");
    assert!(has("add", "/metadata/annotations/note"), "{ops:?}");
    assert!(
        !has("add", "/metadata/labels/app"),
        "unchanged labels are left: {ops:?}"
    );
}

#[test]
fn an_update_that_does_not_come_up_in_time_counts_as_failed() {
    let sts = sts(2)
        .annotate(params::UPDATE_TIMEOUT, "30")
        .annotate(params::MAX_UNAVAILABLE, "2")
        .build();
    let now = Host::new().enter(bosun_sdk::clock::now_ms);
    // Patched 60s ago, container running the new image but never ready.
    let stuck = |since_ms| {
        pod(1).at("web-v2", "app:v2").not_ready().state(&State {
            revision: "web-v2".into(),
            phase: Phase::Patched,
            since_ms,
        })
    };
    let mut h = host(sts.clone(), false, vec![pod(0), stuck(now - 60_000)]);
    run(&mut h);
    let cmds = h.take_commands();
    let s = status(&cmds).expect("status");
    assert_eq!(s.failed, 1);
    assert!(s.paused.is_some_and(|r| r.contains("1 pods failed")));
    assert!(patched(&cmds).is_empty());
    // Patched 10s ago: still within the timeout, the release goes on.
    let mut h = host(sts, false, vec![pod(0), stuck(now - 10_000)]);
    run(&mut h);
    let cmds = h.take_commands();
    assert_eq!(status(&cmds).map(|s| s.failed), Some(0));
    assert_eq!(patched(&cmds), ["web-0"]);
}

#[test]
fn priority_order_goes_by_label_then_ordinal() {
    let sts = sts(3).annotate(params::ORDER, "priority").build();
    let mut first = pod(0).build();
    first["metadata"]["labels"][params::PRIORITY_LABEL] = json!("10");
    let mut h = host(sts, false, vec![pod(1), pod(2)]);
    h.insert(first);
    run(&mut h);
    assert_eq!(patched(&h.take_commands()), ["web-0"]);
}

#[test]
fn bad_input_is_refused_with_an_event_naming_the_fix() {
    let bad = sts(2).annotate(params::MAX_UNAVAILABLE, "200%").build();
    let mut h = host(bad.clone(), false, vec![pod(0), pod(1)]);
    assert_eq!(run(&mut h), Outcome::done());
    let cmds = h.take_commands();
    assert!(patched(&cmds).is_empty());
    let ev = events(&cmds);
    assert!(
        ev.iter().any(|(t, r, m)| *t == EventType::Warning
            && r == "InvalidReleaseAnnotation"
            && m.contains("release.bosun.dev/max-unavailable")
            && m.contains("percentage")),
        "{ev:?}"
    );
    // Once refused (status written), the same input does not repeat the Event.
    let mut refused = bad;
    let text = status(&cmds)
        .map(|s| serde_json::to_string(&s).expect("json"))
        .expect("status");
    refused["metadata"]["annotations"][STATUS] = json!(text);
    let mut h = host(refused, false, vec![pod(0), pod(1)]);
    run(&mut h);
    assert!(h.take_commands().is_empty());

    let mut h = host(sts(2).rolling().build(), false, vec![pod(0), pod(1)]);
    run(&mut h);
    let ev = events(&h.take_commands());
    assert!(
        ev.iter()
            .any(|(_, r, m)| r == "UnsupportedUpdateStrategy" && m.contains("OnDelete"))
    );
}

#[test]
fn a_statefulset_without_the_annotation_is_left_alone() {
    let mut plain = sts(2).build();
    plain["metadata"]["annotations"] = json!({});
    let mut h = host(plain, false, vec![pod(0), pod(1)]);
    assert_eq!(run(&mut h), Outcome::done());
    assert!(h.commands().is_empty());
}

#[test]
fn refused_commands_are_retried_later_not_failed() {
    let mut h =
        host(sts(3).build(), false, (0..3).map(pod).collect()).refusing_commands("rate limited");
    assert_eq!(
        run(&mut h),
        Outcome::requeue_after(Duration::from_millis(100))
    );
    assert!(h.commands().is_empty());
    // Nothing was recorded as in flight: the next call tries again.
    assert_eq!(h.state(&in_flight_key(&sts_ref())), None);
}

#[test]
fn the_status_is_rewritten_at_most_once_a_second_while_only_its_counts_move() {
    // Mid-release: the first status is written.
    let mut sts = sts(4).annotate(params::MAX_UNAVAILABLE, "1").build();
    let pods = || vec![pod(0), pod(1), pod(2), pod(3).at("web-v2", "app:v2")];
    let mut h = host(sts.clone(), false, pods());
    run(&mut h);
    let first = status(&h.take_commands()).expect("the first status is written");
    assert_eq!((first.updated, first.ready), (1, 4));

    // The StatefulSet shows it; a pod goes un-Ready: only a count moves, within the second.
    sts["metadata"]["annotations"][STATUS] = json!(serde_json::to_string(&first).expect("json"));
    h.insert(sts.clone());
    h.insert(pod(2).not_ready().build());
    run(&mut h);
    assert_eq!(
        status(&h.take_commands()),
        None,
        "not rewritten within the second"
    );

    // Every pod updated and ready: the release is over, written at once.
    for i in 0..4 {
        h.insert(pod(i).at("web-v2", "app:v2").build());
    }
    let outcome = run(&mut h);
    let last = status(&h.take_commands()).expect("the final status is written at once");
    assert_eq!((last.updated, last.ready, last.total), (4, 4, 4));
    assert_eq!(outcome, Outcome::done());
}

#[test]
fn phases_keep_the_names_pods_and_plugin_state_already_carry() {
    let stored = r#"{"revision":"web-v2","phase":"Draining","since_ms":5}"#;
    let state: State = serde_json::from_str(stored).expect("reads");
    assert_eq!(state, State::new("web-v2", Phase::Draining, 5));
    assert_eq!(serde_json::to_string(&state).expect("json"), stored);
    for (phase, name) in [
        (Phase::Patched, "\"Patched\""),
        (Phase::Evicted, "\"Evicted\""),
    ] {
        assert_eq!(serde_json::to_string(&phase).expect("json"), name);
    }
}
