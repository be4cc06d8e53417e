//! Shared fixtures for the host's integration tests.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the fixtures"
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bosun_host::contract::{EventKind, ObjectRef, ReconcileRequest};
use bosun_host::host::cache::{Cache, ListQuery};
use bosun_host::host::{CallInfo, commands, log};
use bosun_host::{Engine, Revision, Services, Source, Spec, Strategy};
use serde_json::{Value, json};

/// A cache over a map of objects.
#[derive(Default)]
pub struct MapCache(pub Mutex<BTreeMap<String, Arc<str>>>);

impl MapCache {
    pub fn with(objects: &[Value]) -> Arc<Self> {
        let cache = MapCache::default();
        for o in objects {
            cache.put(o);
        }
        Arc::new(cache)
    }

    pub fn put(&self, object: &Value) {
        let r = ObjectRef::of(object).expect("fixture objects are named");
        self.0
            .lock()
            .expect("lock")
            .insert(r.key(), Arc::from(object.to_string()));
    }
}

impl Cache for MapCache {
    fn get(&self, _: &CallInfo, target: &ObjectRef) -> Option<Arc<str>> {
        self.0.lock().expect("lock").get(&target.key()).cloned()
    }
    fn list(&self, _: &CallInfo, q: &ListQuery<'_>) -> Vec<Arc<str>> {
        let prefix = format!("{}/", q.kind);
        self.0
            .lock()
            .expect("lock")
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Builds a Pod: `pod("web-0").node("node-1").label("a", "b").build()`.
pub struct PodBuilder(Value);

pub fn pod(name: &str) -> PodBuilder {
    PodBuilder(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": { "app": "web" } },
        "spec": { "containers": [ { "name": "app", "image": "app:v1" } ] },
        "status": { "phase": "Running" }
    }))
}

impl PodBuilder {
    pub fn node(mut self, node: &str) -> Self {
        self.0["spec"]["nodeName"] = json!(node);
        self
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.0["metadata"]["labels"][k] = json!(v);
        self
    }
    pub fn build(self) -> Value {
        self.0
    }
}

pub fn node(name: &str, zone: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name, "labels": { "topology.kubernetes.io/zone": zone } },
        "status": { "conditions": [ { "type": "Ready", "status": "True" } ] }
    })
}

pub fn request(target: ObjectRef) -> ReconcileRequest {
    ReconcileRequest {
        target,
        events: vec![EventKind::Added],
        outcomes: vec![],
        attempt: 0,
    }
}

pub fn pod_ref(name: &str) -> ObjectRef {
    ObjectRef::namespaced("v1", "Pod", "default", name)
}

pub fn engine() -> Engine {
    Engine::new(&bosun_host::engine::Config {
        max_instances: 32,
        ..Default::default()
    })
    .expect("engine")
}

pub fn source(path: &str) -> Source {
    Source::file(std::path::Path::new(path)).expect("artifact built by bosun-test-artifacts")
}

/// A loaded plugin with recording services.
pub struct Harness {
    pub revision: Revision,
    pub commands: Arc<commands::Recorder>,
    pub logs: Arc<log::Memory>,
}

pub fn services(cache: Arc<dyn Cache>) -> (Services, Arc<commands::Recorder>, Arc<log::Memory>) {
    let commands = Arc::new(commands::Recorder::default());
    let logs = Arc::new(log::Memory::default());
    let services = Services {
        cache,
        commands: commands.clone(),
        log: logs.clone(),
        ..Services::offline()
    };
    (services, commands, logs)
}

pub fn spec(
    cache: Arc<dyn Cache>,
    config: &str,
    strategy: Strategy,
) -> (Spec, Arc<commands::Recorder>, Arc<log::Memory>) {
    let (services, commands, logs) = services(cache);
    let mut spec = Spec::new(services);
    spec.config = config.to_owned();
    spec.strategy = strategy;
    (spec, commands, logs)
}

pub fn load(
    engine: &Engine,
    path: &str,
    config: &str,
    strategy: Strategy,
    tune: impl FnOnce(&mut Spec),
) -> Harness {
    let cache = MapCache::with(&[
        pod("web-0").node("node-1").build(),
        node("node-1", "zone-a"),
    ]);
    let (mut spec, commands, logs) = spec(cache, config, strategy);
    tune(&mut spec);
    let revision = Revision::load(engine, &source(path), spec).expect("loads");
    Harness {
        revision,
        commands,
        logs,
    }
}

pub const WARM: Strategy = Strategy::Warm {
    recycle_after: 1_000,
    max_idle: 4,
};

/// The same component with a custom section appended: valid, with another digest.
pub fn variant(bytes: &[u8], tag: &str) -> Vec<u8> {
    let name = b"bosun-test-variant";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(tag.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0);
    out.push(u8::try_from(section.len()).expect("small section"));
    out.extend_from_slice(&section);
    out
}
