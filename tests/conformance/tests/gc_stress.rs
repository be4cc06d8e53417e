//! The Go SDK's canonical-ABI glue under GC pressure, through the real host: one warm
//! instance reconciles 3,000 times with a 1 MiB object in the cache (read, parsed, and
//! patched each time). `cabi_realloc` allocating on the Go heap traps here within a few
//! dozen calls ("cannot leave component instance"), as wit-bindgen go's glue does.

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
