//! The Go SDK's canonical-ABI glue under GC pressure, through the real host: one warm
//! instance reconciles 3,000 times with a 1 MiB object in the cache (read, parsed, and
//! patched each time). `cabi_realloc` allocating on the Go heap traps here within a few
//! dozen calls ("cannot leave component instance"), as wit-bindgen go's glue does.
//! The pod-agent glue gets the same treatment with 1 MiB HTTP bodies and files.

use std::sync::Arc;

use bosun_conformance::{Lang, component, engine};
use bosun_host::contract::{EventKind, ReconcileRequest};
use bosun_host::host::{cache, clock, commands, log};
use bosun_host::{Revision, Services, Source, Spec, Strategy};
use serde_json::json;

const CALLS: usize = 3_000;

#[test]
fn go_survives_3000_calls_with_a_1_mib_object() {
    let wasm = component(Lang::Go).unwrap_or_else(|e| panic!("{e:#}"));
    let source = Source::file(&wasm).expect("read the Go component");
    let big = "x".repeat(1 << 20);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "big", "namespace": "default", "resourceVersion": "1",
                     "annotations": {"blob": big}},
    });
    let mut cache = bosun_cli::offline::OfflineCache::default();
    let target = cache.insert(&pod).expect("pod");
    let recorder = Arc::new(commands::Recorder::default());
    let logs = Arc::new(log::Memory::default());
    let services = Services {
        cache: Arc::new(cache),
        state: Arc::new(cache::MemoryState::default()),
        commands: recorder.clone(),
        log: logs.clone(),
        clock: Arc::new(clock::Fixed(bosun_conformance::NOW_MS)),
        pod: None,
    };
    let mut spec = Spec::new(services);
    spec.config = json!({"script": [
        {"get": {"apiVersion": "v1", "kind": "Pod", "namespace": "default", "name": "big"}},
        {"list": {"apiVersion": "v1", "kind": "Pod"}},
        {"submit": {"merge-patch": {
            "target": {"apiVersion": "v1", "kind": "Pod", "namespace": "default", "name": "big"},
            "patch": {"metadata": {"annotations": {"seen": "yes"}}}}}},
    ]})
    .to_string();
    // One instance for every call: the heap and the arena are reused across calls.
    spec.strategy = Strategy::Warm {
        recycle_after: 100_000,
        max_idle: 1,
    };
    spec.limits.deadline = std::time::Duration::from_secs(10);
    let engine = engine(None).expect("engine");
    let revision = Revision::load(&engine, &source, spec).unwrap_or_else(|e| {
        let lines: Vec<String> = logs.take().into_iter().map(|l| l.message).collect();
        panic!("load the Go component: {e}\nlogs: {lines:#?}")
    });
    let request = ReconcileRequest {
        target,
        events: vec![EventKind::Modified],
        outcomes: vec![],
        attempt: 0,
    };
    for call in 0..CALLS {
        if let Err(err) = revision.reconcile(&request) {
            panic!("call {call} of {CALLS} failed: {err}");
        }
        let lines = logs.take();
        assert_eq!(lines.len(), 3, "call {call}: {lines:?}");
        assert_eq!(lines[0].message, "get v1/Pod default/big: present rv=1");
        assert_eq!(lines[1].message, "list v1/Pod: 1 [big]");
        assert_eq!(recorder.take().len(), 1, "call {call}: one command");
    }
}

/// The pod-agent glue under the same pressure: one warm instance, 800 on-commands, each
/// GETting a 1 MiB body from the app (lifted from the arena), writing it to a file and
/// reading it back (another 1 MiB through the arena), then a probe.
#[test]
fn go_pod_agent_survives_800_calls_with_1_mib_bodies() {
    use bosun_conformance::pod::{self, FakePod, Route};
    use bosun_host::contract::ProbeKind;

    const POD_CALLS: usize = 800;
    let wasm = pod::component(Lang::Go).unwrap_or_else(|e| panic!("{e:#}"));
    let source = Source::file(&wasm).expect("read the Go pod-agent component");
    let big = "y".repeat(1 << 20);
    let fake = Arc::new(FakePod {
        routes: vec![Route {
            method: Some("GET".to_owned()),
            port: 8080,
            path: "/big".to_owned(),
            status: 200,
            headers: vec![("content-type".to_owned(), "text/plain".to_owned())],
            body: big.clone(),
            error: None,
        }],
        ..FakePod::default()
    });
    let logs = Arc::new(log::Memory::default());
    let mut spec = Spec::new(pod::services(fake.clone(), logs.clone()));
    spec.config = json!({"probes": {"readiness": [{"get": {"port": 8080, "path": "/big"}}, {"expectStatus": 200}, {"reply": "ok"}]}})
        .to_string();
    spec.strategy = Strategy::Warm {
        recycle_after: 100_000,
        max_idle: 1,
    };
    spec.limits.deadline = std::time::Duration::from_secs(10);
    let engine = engine(None).expect("engine");
    let revision = Revision::load(&engine, &source, spec).expect("load the Go pod-agent");
    let command = json!([
        {"get": {"port": 8080, "path": "/big"}},
        {"write": {"path": "blob", "contents": big}},
        {"read": "blob"},
        {"reply": "done"},
    ])
    .to_string();
    for call in 0..POD_CALLS {
        match revision.on_command(&command) {
            Ok(reply) => assert_eq!(reply, "done", "call {call}"),
            Err(err) => panic!("call {call} of {POD_CALLS} failed: {err}"),
        }
        let probe = revision.probe(ProbeKind::Readiness).expect("probe");
        assert!(
            probe.healthy && probe.message == "ok",
            "call {call}: {probe:?}"
        );
        let lines = logs.take();
        assert_eq!(lines.len(), 4, "call {call}");
        assert!(
            lines[0]
                .message
                .starts_with("GET :8080/big -> 200 [content-type=text/plain] yyyy")
        );
        assert_eq!(lines[1].message, "wrote blob (1048576 bytes)");
    }
    assert_eq!(fake.requests.lock().expect("requests").len(), 2 * POD_CALLS);
}

/// A real Go operator under the same pressure: the remediation plugin, one warm
/// instance, 200 passes over a HealthCheck of 300 nodes (60 NotReady for an hour, each
/// pass decoding every node and, for the drains, 3,000 pods, and writing its state).
#[test]
fn the_remediation_plugin_survives_200_passes_over_300_nodes_and_3000_pods() {
    const PASSES: usize = 200;
    let wasm = bosun_cli::plugin::build_with(
        &bosun_conformance::crate_dir().join("../../plugins/remediation"),
        false,
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let source = Source::file(&wasm).expect("read the remediation component");
    let mut cache = bosun_cli::offline::OfflineCache::default();
    let hour_ago = bosun_api::time::rfc3339(bosun_conformance::NOW_MS - 3_600_000);
    let hc = cache
        .insert(&json!({
            "apiVersion": "bosun.dev/v1alpha1", "kind": "HealthCheck",
            "metadata": {"name": "workers", "generation": 1},
            "spec": {"target": {"kind": "Node"}, "selector": {}, "minHealthy": 0,
                "escalatingRemediations": [{"action": "drain", "order": 0, "timeout": "600s"}]},
        }))
        .expect("healthcheck");
    for i in 0..300 {
        let ready = if i < 60 { "False" } else { "True" };
        cache
            .insert(&json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": format!("n{i}"), "uid": format!("u{i}"),
                    "labels": {"kubernetes.io/hostname": format!("n{i}")}},
                "status": {"conditions": [{"type": "Ready", "status": ready,
                    "lastTransitionTime": hour_ago, "lastHeartbeatTime": hour_ago}]},
            }))
            .expect("node");
    }
    for i in 0..3000 {
        cache
            .insert(&json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("p{i}"), "namespace": "shop", "uid": format!("pu{i}"),
                    "labels": {"app": "web"}},
                "spec": {"nodeName": format!("n{}", i % 300), "containers": [{"name": "app"}]},
                "status": {"phase": "Running"},
            }))
            .expect("pod");
    }
    let recorder = Arc::new(commands::Recorder::default());
    let logs = Arc::new(log::Memory::default());
    let services = Services {
        cache: Arc::new(cache),
        state: Arc::new(cache::MemoryState::default()),
        commands: recorder.clone(),
        log: logs.clone(),
        clock: Arc::new(clock::Fixed(bosun_conformance::NOW_MS)),
        pod: None,
    };
    let mut spec = Spec::new(services);
    spec.config = json!({"pollMs": 1000, "evictionRetryMs": 0}).to_string();
    spec.strategy = Strategy::Warm {
        recycle_after: 100_000,
        max_idle: 1,
    };
    spec.limits.deadline = std::time::Duration::from_secs(10);
    let engine = engine(None).expect("engine");
    let revision = Revision::load(&engine, &source, spec).unwrap_or_else(|e| {
        let lines: Vec<String> = logs.take().into_iter().map(|l| l.message).collect();
        panic!("load the remediation plugin: {e}\nlogs: {lines:#?}")
    });
    let request = ReconcileRequest {
        target: hc,
        events: vec![EventKind::Modified],
        outcomes: vec![],
        attempt: 0,
    };
    for pass in 0..PASSES {
        if let Err(err) = revision.reconcile(&request) {
            let lines: Vec<String> = logs.take().into_iter().map(|l| l.message).collect();
            panic!("pass {pass} of {PASSES} failed: {err}\nlogs: {lines:#?}");
        }
        let cmds = recorder.take();
        // The cache never changes: every pass cordons the 60 nodes again and evicts
        // their 600 pods again (evictionRetryMs 0).
        let evictions = cmds
            .iter()
            .filter(|c| matches!(c.command, bosun_host::contract::Command::Evict(_)))
            .count();
        assert_eq!(evictions, 600, "pass {pass}");
        logs.take();
    }
}
