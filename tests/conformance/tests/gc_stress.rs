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
