//! The peers of the peer comparison (`benches/peers.rs`) make the same decision as the
//! zone-labeler plugin in every language: for each binding in `peers/testdata/bindings`,
//! the Rust, Go and JavaScript plugins submit the patch the Go and Python hooks print
//! (or none), and the Go code passes its own tests.

use bosun_conformance::go_test;
use bosun_host::contract::{Command as Cmd, EventKind, ObjectRef, ReconcileRequest};
use bosun_host::host::cache::{Cache, ListQuery};
use bosun_host::host::{CallInfo, Services, commands};
use bosun_host::{Engine, Revision, Source, Spec};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

struct Objects(Mutex<HashMap<String, Arc<str>>>);

impl Cache for Objects {
    fn get(&self, _: &CallInfo, target: &ObjectRef) -> Option<Arc<str>> {
        self.0.lock().ok()?.get(&target.key()).cloned()
    }
    fn list(&self, _: &CallInfo, _: &ListQuery<'_>) -> Vec<Arc<str>> {
        Vec::new()
    }
}

#[derive(Default)]
struct Sink(Mutex<Vec<String>>);

impl commands::Commands for Sink {
    fn submit(&self, _: &CallInfo, command: Cmd) -> Result<u64, String> {
        if let Cmd::MergePatch(p) = command
            && let Ok(mut v) = self.0.lock()
        {
            v.push(p.patch);
        }
        Ok(0)
    }
}

fn hook(program: &str, args: &[&str], binding: &[u8]) -> Option<Value> {
    let out = bosun_conformance::peers::run_hook(std::path::Path::new(program), args, binding);
    serde_json::from_slice(&out).ok()
}

#[test]
fn every_peer_and_plugin_makes_the_same_decision() -> anyhow::Result<()> {
    go_test("tests/conformance/peers");
    go_test("tests/conformance/peers/plugins/go");
    let peers = bosun_conformance::peers::dir();
    let hook_bin = bosun_conformance::peers::build("hook");
    let hook_bin = hook_bin.display().to_string();
    let script = peers.join("hook.py").display().to_string();

    let cache = Arc::new(Objects(Mutex::default()));
    let sink = Arc::new(Sink::default());
    let services = Services {
        cache: cache.clone(),
        commands: sink.clone(),
        ..Services::offline()
    };
    let engine = Engine::new(&bosun_host::engine::Config::default())?;
    let mut plugins = Vec::new();
    for path in [
        PathBuf::from(bosun_test_artifacts::ZONE_LABELER),
        bosun_cli::plugin::build_with(&peers.join("plugins/go"), false)?,
        bosun_cli::plugin::build_with(&peers.join("plugins/js"), false)?,
    ] {
        let source = Source::file(&path)?;
        plugins.push((
            path.display().to_string(),
            Revision::load(&engine, &source, Spec::new(services.clone()))?,
        ));
    }

    let mut bindings: Vec<PathBuf> = std::fs::read_dir(peers.join("testdata/bindings"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    bindings.sort();
    assert!(bindings.len() >= 6, "{bindings:?}");
    for path in bindings {
        let bytes = std::fs::read(&path)?;
        let binding: Value = serde_json::from_slice(&bytes)?;
        let want = hook(&hook_bin, &[], &bytes);
        assert_eq!(
            hook("python3", &[&script], &bytes),
            want,
            "{}: Python",
            path.display()
        );
        // The plugins read the pod and, when the caller knows it, the node from the cache.
        let pod = &binding["object"];
        let target = ObjectRef::of(pod).expect("a named pod");
        {
            let mut objects = cache.0.lock().expect("cache");
            objects.clear();
            objects.insert(target.key(), Arc::from(pod.to_string().as_str()));
            if binding["node"].is_object()
                && let Some(name) = binding["node"]["metadata"]["name"].as_str()
            {
                objects.insert(
                    format!("Node/{name}"),
                    Arc::from(binding["node"].to_string().as_str()),
                );
            }
        }
        let request = ReconcileRequest {
            target,
            events: vec![EventKind::Modified],
            outcomes: vec![],
            attempt: 0,
        };
        for (name, revision) in &plugins {
            revision.reconcile(&request)?;
            let patches = std::mem::take(&mut *sink.0.lock().expect("sink"));
            let got = patches
                .first()
                .and_then(|p| serde_json::from_str::<Value>(p).ok());
            assert_eq!(got, want, "{}: {name}", path.display());
        }
    }
    Ok(())
}
