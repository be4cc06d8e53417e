//! Reconcile cost of a Rust plugin against the same logic as a native function.
//!
//! The zone-labeler plugin reconciles a ~4 KiB Pod: it reads the pod and its node from
//! the cache and submits one merge patch. Printed: p50/p99 per call for the fresh-instance
//! and warm strategies and for native Rust, calls/s on one core, the wasm/native ratio,
//! load time from the compiled cache against a cold compile, and the time of a hot swap.
//!
//! Run: `cargo bench -p bosun-host --bench reconcile`
//!
//! Profiling: `BOSUN_BENCH_PROFILE=warm|fresh|native` runs only that loop for 6 s after
//! loading; with `BOSUN_PERFMAP=1` the engine writes /tmp/perf-PID.map so `perf report`
//! names the guest's functions (build the plugin unstripped and name it with
//! `BOSUN_BENCH_COMPONENT=path.wasm`):
//! `BOSUN_PERFMAP=1 BOSUN_BENCH_PROFILE=warm perf record -g -D 2500 <bench binary>`

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_host::contract::{EventKind, ObjectRef, ReconcileRequest};
use bosun_host::host::cache::{Cache, ListQuery};
use bosun_host::host::{CallInfo, Services, commands};
use bosun_host::{Engine, Registry, Revision, Source, Spec, Strategy};
use serde_json::{Value, json};

struct Objects(HashMap<String, Arc<str>>);

impl Cache for Objects {
    fn get(&self, _: &CallInfo, target: &ObjectRef) -> Option<Arc<str>> {
        self.0.get(&target.key()).cloned()
    }
    fn list(&self, _: &CallInfo, _: &ListQuery<'_>) -> Vec<Arc<str>> {
        Vec::new()
    }
}

/// Drops commands after counting them, so the sink costs the same for every variant.
#[derive(Default)]
struct Sink(std::sync::atomic::AtomicU64);

impl commands::Commands for Sink {
    fn submit(&self, _: &CallInfo, command: bosun_host::contract::Command) -> Result<u64, String> {
        black_box(command);
        Ok(self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

fn pod_4k() -> Value {
    let env: Vec<Value> = (0..90)
        .map(|i| json!({"name": format!("SETTING_{i:02}"), "value": format!("value-{i:04}")}))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "web-0", "namespace": "default", "uid": "9f0c6f4e-0b44-4d8e-a1c9-5e2f1c3b7d11",
            "labels": {"app": "web", "tier": "frontend", "release": "stable"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-29T03:00:00Z"}
        },
        "spec": {
            "nodeName": "node-1",
            "containers": [{"name": "app", "image": "registry.example.com/web:v1.2.3", "env": env,
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}}],
            "volumes": [{"name": "config", "configMap": {"name": "web-config"}}]
        },
        "status": {"phase": "Running", "podIP": "10.0.0.12", "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

fn node() -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-1", "labels": {"topology.kubernetes.io/zone": "zone-a"}}})
}

/// The plugin's logic as a native Rust function over the same cache and sink.
fn native(cache: &Objects, sink: &Sink, call: &CallInfo, target: &ObjectRef) {
    let Some(pod) = cache.get(call, target) else {
        return;
    };
    let pod: Value = serde_json::from_str(&pod).expect("json");
    let Some(node_name) = pod.pointer("/spec/nodeName").and_then(Value::as_str) else {
        return;
    };
    let Some(node) = cache.get(call, &ObjectRef::cluster("v1", "Node", node_name)) else {
        return;
    };
    let node: Value = serde_json::from_str(&node).expect("json");
    let key = "topology.kubernetes.io/zone";
    let zone = node
        .pointer("/metadata/labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str);
    let current = pod
        .pointer("/metadata/labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str);
    if let Some(zone) = zone
        && current != Some(zone)
    {
        let patch = json!({"metadata": {"labels": {key: zone}}}).to_string();
        let cmd = bosun_host::contract::Command::MergePatch(bosun_host::contract::Patch {
            target: target.clone(),
            patch,
        });
        let _ = commands::Commands::submit(sink, call, cmd);
    }
}

struct Figures {
    p50: Duration,
    p99: Duration,
    per_sec: f64,
}

fn measure(iterations: usize, mut f: impl FnMut()) -> Figures {
    for _ in 0..iterations / 10 {
        f();
    }
    let mut samples = Vec::with_capacity(iterations);
    let started = Instant::now();
    for _ in 0..iterations {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    let total = started.elapsed();
    samples.sort();
    Figures {
        p50: samples[samples.len() / 2],
        p99: samples[samples.len() * 99 / 100],
        per_sec: iterations as f64 / total.as_secs_f64(),
    }
}

fn print(name: &str, f: &Figures) {
    println!(
        "{name:<28} p50 {:>9.2} µs   p99 {:>9.2} µs   {:>10.0} calls/s",
        f.p50.as_secs_f64() * 1e6,
        f.p99.as_secs_f64() * 1e6,
        f.per_sec
    );
}

fn main() {
    let pod = pod_4k();
    let pod_json = pod.to_string();
    let target = ObjectRef::of(&pod).expect("named");
    let mut objects = HashMap::new();
    objects.insert(target.key(), Arc::from(pod_json.as_str()));
    objects.insert(
        "Node/node-1".to_owned(),
        Arc::from(node().to_string().as_str()),
    );
    let cache = Arc::new(Objects(objects));
    let sink = Arc::new(Sink::default());
    let services = Services {
        cache: cache.clone(),
        commands: sink.clone(),
        ..Services::offline()
    };
    let request = ReconcileRequest {
        target: target.clone(),
        events: vec![EventKind::Modified],
        outcomes: vec![],
        attempt: 0,
    };
    let path = std::env::var("BOSUN_BENCH_COMPONENT")
        .unwrap_or_else(|_| bosun_test_artifacts::ZONE_LABELER.to_owned());
    let path = path.as_str();
    let bytes = std::fs::read(path).expect("artifact");
    println!(
        "zone-labeler: {} bytes of component, reconciling a {} byte Pod",
        bytes.len(),
        pod_json.len()
    );

    let engine = Engine::new(&bosun_host::engine::Config::default()).expect("engine");
    let source = Source {
        origin: path.to_owned(),
        bytes: Arc::from(bytes.clone()),
    };
    let spec = |strategy| {
        let mut s = Spec::new(services.clone());
        s.strategy = strategy;
        s
    };
    let iterations = 20_000;

    let fresh = Revision::load(&engine, &source, spec(Strategy::Fresh)).expect("loads");
    let warm = Revision::load(
        &engine,
        &source,
        spec(Strategy::Warm {
            recycle_after: u32::MAX,
            max_idle: 1,
        }),
    )
    .expect("loads");
    let call = CallInfo {
        plugin: "native".into(),
        revision: "native".into(),
        key: Some(target.clone()),
    };

    if let Ok(what) = std::env::var("BOSUN_BENCH_PROFILE") {
        let until = Instant::now() + Duration::from_secs(6);
        while Instant::now() < until {
            for _ in 0..100 {
                match what.as_str() {
                    "native" => native(&cache, &sink, &call, &target),
                    "fresh" => {
                        fresh.reconcile(&request).expect("ok");
                    }
                    _ => {
                        warm.reconcile(&request).expect("ok");
                    }
                }
            }
        }
        return;
    }
    let native_f = measure(iterations, || native(&cache, &sink, &call, &target));
    let warm_f = measure(iterations, || {
        warm.reconcile(&request).expect("ok");
    });
    let fresh_f = measure(iterations / 4, || {
        fresh.reconcile(&request).expect("ok");
    });
    print("native Rust", &native_f);
    print("wasm, warm instance", &warm_f);
    print("wasm, fresh instance + init", &fresh_f);
    println!(
        "ratio wasm/native (p50): warm {:.2}x, fresh {:.2}x",
        warm_f.p50.as_secs_f64() / native_f.p50.as_secs_f64(),
        fresh_f.p50.as_secs_f64() / native_f.p50.as_secs_f64()
    );

    // Load: cold compile against the compiled-code cache.
    let dir = tempfile::tempdir().expect("tempdir");
    let cached_engine = Engine::new(&bosun_host::engine::Config {
        cache_dir: Some(dir.path().to_owned()),
        ..Default::default()
    })
    .expect("engine");
    let t = Instant::now();
    Revision::load(&cached_engine, &source, spec(Strategy::Fresh)).expect("loads");
    let cold = t.elapsed();
    let mut cached = Vec::new();
    for _ in 0..20 {
        let e = Engine::new(&bosun_host::engine::Config {
            cache_dir: Some(dir.path().to_owned()),
            max_instances: 4,
            ..Default::default()
        })
        .expect("engine");
        let t = Instant::now();
        let r = Revision::load(&e, &source, spec(Strategy::Fresh)).expect("loads");
        cached.push(t.elapsed());
        assert_eq!(r.info().compiled, bosun_host::engine::Compiled::Cached);
    }
    cached.sort();
    println!(
        "load: cold compile {:.1} ms; from the compiled cache p50 {:.2} ms (full load: read cache, link, metadata, init)",
        cold.as_secs_f64() * 1e3,
        cached[cached.len() / 2].as_secs_f64() * 1e3
    );

    // Hot swap: loading a new revision (compiled) and switching, and the switch alone.
    let registry = Registry::new(cached_engine);
    registry
        .load(&source, spec(Strategy::Fresh), None)
        .expect("first");
    let mut swaps = Vec::new();
    for i in 0..20u8 {
        let mut b = bytes.clone();
        b.extend_from_slice(&[0, 3, 2, b'x', i]);
        let s = Source {
            origin: format!("v{i}"),
            bytes: Arc::from(b),
        };
        let t = Instant::now();
        registry
            .load(&s, spec(Strategy::Fresh), None)
            .expect("swap");
        swaps.push(t.elapsed());
    }
    swaps.sort();
    let mut rollbacks = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        registry.rollback("zone-labeler", None).expect("rollback");
        rollbacks.push(t.elapsed());
    }
    rollbacks.sort();
    println!(
        "hot swap: new revision (compile + check + metadata + init + switch) p50 {:.1} ms; switch to a kept revision (rollback) p50 {:.1} µs",
        swaps[swaps.len() / 2].as_secs_f64() * 1e3,
        rollbacks[rollbacks.len() / 2].as_secs_f64() * 1e6
    );
}
