//! One table comparing the three guest languages on Bosun's own calls:
//!
//!     cargo bench -p bosun-conformance --bench languages
//!
//! Per language: the conformance plugin's size, compile time, cached-load time,
//! instantiate cost (fresh instance + init, minus a warm call), a warm reconcile on a
//! 4 KiB and a 64 KiB pod (get + parse + one merge patch), and the time from
//! `bosun plugin new` through `bosun plugin build` to one reconcile of the scaffold's
//! test pod. `BOSUN_BENCH_EXTRA=label=path.wasm` adds a prebuilt conformance component
//! (e.g. the SpiderMonkey build compared in sdk-guest/js/README.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_cli::offline::OfflineCache;
use bosun_cli::plugin::{Lang as CliLang, NewArgs, build_with, scaffold};
use bosun_conformance::{Lang, component, engine};
use bosun_host::contract::{EventKind, ObjectRef, ReconcileRequest};
use bosun_host::host::{cache, clock, commands, log};
use bosun_host::{Engine, Revision, Services, Source, Spec, Strategy};
use serde_json::{Value, json};

fn pod(bytes: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "default", "resourceVersion": "1",
                     "labels": {"app": "web"}, "annotations": {"blob": "x".repeat(bytes)}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
    })
}

fn services(objects: &[Value]) -> (Services, ObjectRef) {
    let mut c = OfflineCache::default();
    let mut target = None;
    for o in objects {
        target.get_or_insert(c.insert(o).expect("object"));
    }
    let s = Services {
        cache: Arc::new(c),
        state: Arc::new(cache::MemoryState::default()),
        commands: Arc::new(commands::Recorder::default()),
        log: Arc::new(log::Memory::default()),
        clock: Arc::new(clock::Fixed(bosun_conformance::NOW_MS)),
        pod: None,
    };
    (s, target.expect("one object"))
}

const SCRIPT: &str = r#"{"script": [
  {"get": {"apiVersion": "v1", "kind": "Pod", "namespace": "default", "name": "web-0"}},
  {"submit": {"merge-patch": {"target": {"apiVersion": "v1", "kind": "Pod", "namespace": "default", "name": "web-0"},
                               "patch": {"metadata": {"labels": {"seen": "yes"}}}}}}]}"#;

fn load(
    engine: &Engine,
    source: &Source,
    objects: &[Value],
    config: &str,
    strategy: Strategy,
) -> (Revision, ReconcileRequest) {
    let (services, target) = services(objects);
    let mut spec = Spec::new(services);
    spec.config = config.to_owned();
    spec.strategy = strategy;
    spec.limits.deadline = Duration::from_secs(10);
    let revision = Revision::load(engine, source, spec).expect("load");
    let request = ReconcileRequest {
        target,
        events: vec![EventKind::Modified],
        outcomes: vec![],
        attempt: 0,
    };
    (revision, request)
}

/// Median of `n` timed calls after 5 warm-up calls.
fn median(n: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..5 {
        f();
    }
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

fn warm() -> Strategy {
    Strategy::Warm {
        recycle_after: 1_000_000,
        max_idle: 1,
    }
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1e6 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

struct Row {
    label: String,
    size: usize,
    compile: Duration,
    cached: Duration,
    instantiate: Duration,
    warm_noop: Duration,
    small: Duration,
    large: Duration,
    scaffold: Option<Duration>,
}

fn measure(label: &str, source: &Source) -> Row {
    let cache_dir = tempfile::tempdir().expect("tempdir");
    // Cold: compiles and fills the cache; then a fresh engine loads from the cache.
    let cold = engine(Some(cache_dir.path().to_path_buf())).expect("engine");
    let t = Instant::now();
    let (r, _) = load(&cold, source, &[pod(16)], "{}", Strategy::Fresh);
    let compile = t.elapsed();
    drop(r);
    let hot = engine(Some(cache_dir.path().to_path_buf())).expect("engine");
    let t = Instant::now();
    let (_r, _) = load(&hot, source, &[pod(16)], "{}", Strategy::Fresh);
    let cached = t.elapsed();

    let (fresh, req) = load(&hot, source, &[pod(16)], "{}", Strategy::Fresh);
    let fresh_call = median(50, || {
        fresh.reconcile(&req).expect("call");
    });
    let (w, req) = load(&hot, source, &[pod(16)], "{}", warm());
    let warm_noop = median(500, || {
        w.reconcile(&req).expect("call");
    });
    let (w4, req4) = load(&hot, source, &[pod(4 << 10)], SCRIPT, warm());
    let small = median(300, || {
        w4.reconcile(&req4).expect("call");
    });
    let (w64, req64) = load(&hot, source, &[pod(64 << 10)], SCRIPT, warm());
    let large = median(100, || {
        w64.reconcile(&req64).expect("call");
    });
    Row {
        label: label.to_owned(),
        size: source.bytes.len(),
        compile,
        cached,
        instantiate: fresh_call.saturating_sub(warm_noop),
        warm_noop,
        small,
        large,
        scaffold: None,
    }
}

/// `bosun plugin new` → `bosun plugin build` → one reconcile of testdata/pod.json.
fn scaffold_to_test(lang: CliLang) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    let plugin = scaffold(&NewArgs {
        name: format!("hello-{}", lang.as_str()),
        lang,
        dir: Some(dir.path().join("p")),
    })?;
    let wasm = build_with(&plugin, false)?;
    let engine = engine(None)?;
    let object: Value =
        serde_json::from_str(&std::fs::read_to_string(plugin.join("testdata/pod.json"))?)?;
    let (revision, req) = load(
        &engine,
        &Source::file(&wasm)?,
        &[object],
        "{}",
        Strategy::Fresh,
    );
    revision
        .reconcile(&req)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(t.elapsed())
}

fn main() {
    let mut rows = Vec::new();
    for lang in Lang::ALL {
        let wasm = match component(lang) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("skipping {}: {e:#}", lang.as_str());
                continue;
            }
        };
        let source = Source::file(&wasm).expect("read");
        let mut row = measure(lang.as_str(), &source);
        let cli = match lang {
            Lang::Rust => CliLang::Rust,
            Lang::Go => CliLang::Go,
            Lang::Js => CliLang::Js,
        };
        row.scaffold = scaffold_to_test(cli)
            .map_err(|e| eprintln!("scaffold {}: {e:#}", lang.as_str()))
            .ok();
        rows.push(row);
    }
    if let Ok(extra) = std::env::var("BOSUN_BENCH_EXTRA")
        && let Some((label, path)) = extra.split_once('=')
    {
        let source = Source::file(std::path::Path::new(path)).expect("read BOSUN_BENCH_EXTRA");
        rows.push(measure(label, &source));
    }
    println!(
        "| language | size | compile | cached load | instantiate+init | warm no-op call | reconcile 4 KiB | reconcile 64 KiB | new → build → test |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.2} MB | {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            r.size as f64 / 1e6,
            fmt(r.compile),
            fmt(r.cached),
            fmt(r.instantiate),
            fmt(r.warm_noop),
            fmt(r.small),
            fmt(r.large),
            r.scaffold.map_or("-".to_owned(), fmt),
        );
    }
}
