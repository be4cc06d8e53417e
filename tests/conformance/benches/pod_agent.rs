//! The pod-agent calls of the three guest languages, on one table:
//!
//!     cargo bench -p bosun-conformance --bench pod_agent
//!
//! Per language: the pod-agent conformance plugin's size, compile time (cold load),
//! cached-load time, and warm calls through bosun-host's pod-agent path against the fake
//! pod: a probe with nothing to do, a readiness probe doing an HTTP GET and checking the
//! status, and an on-command writing then reading back a 4 KiB file.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_conformance::pod::{FakePod, Route, component, services};
use bosun_conformance::{Lang, engine};
use bosun_host::contract::ProbeKind;
use bosun_host::host::log;
use bosun_host::{Engine, Revision, Source, Spec, Strategy};

const CONFIG: &str = r#"{"probes": {"readiness": [{"get": {"port": 8080, "path": "/healthz"}}, {"expectStatus": 200}]}}"#;

fn load(engine: &Engine, source: &Source) -> Revision {
    let pod = Arc::new(FakePod {
        routes: vec![Route {
            method: Some("GET".to_owned()),
            port: 8080,
            path: "/healthz".to_owned(),
            status: 200,
            headers: vec![("content-type".to_owned(), "text/plain".to_owned())],
            body: "ok".to_owned(),
            error: None,
        }],
        ..FakePod::default()
    });
    let mut spec = Spec::new(services(pod, Arc::new(log::Memory::default())));
    spec.config = CONFIG.to_owned();
    spec.strategy = Strategy::Warm {
        recycle_after: 1_000_000,
        max_idle: 1,
    };
    spec.limits.deadline = Duration::from_secs(10);
    Revision::load(engine, source, spec).expect("load")
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

fn main() {
    println!(
        "| language | size | compile | cached load | probe (no-op) | readiness (HTTP GET) | on-command (write+read 4 KiB) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let contents = "x".repeat(4 << 10);
    let command = serde_json::json!([
        {"write": {"path": "state/blob", "contents": contents}},
        {"read": "state/blob"},
        {"reply": "done"},
    ])
    .to_string();
    for lang in Lang::ALL {
        let wasm = match component(lang) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("skipping {}: {e:#}", lang.as_str());
                continue;
            }
        };
        let source = Source::file(&wasm).expect("read");
        let cache_dir = tempfile::tempdir().expect("tempdir");
        let cold = engine(Some(cache_dir.path().to_path_buf())).expect("engine");
        let t = Instant::now();
        drop(load(&cold, &source));
        let compile = t.elapsed();
        let hot = engine(Some(cache_dir.path().to_path_buf())).expect("engine");
        let t = Instant::now();
        let revision = load(&hot, &source);
        let cached = t.elapsed();
        let noop = median(500, || {
            revision.probe(ProbeKind::Liveness).expect("probe");
        });
        let http = median(500, || {
            let r = revision.probe(ProbeKind::Readiness).expect("probe");
            assert!(r.healthy, "{}", r.message);
        });
        let files = median(300, || {
            revision.on_command(&command).expect("on-command");
        });
        println!(
            "| {} | {:.2} MB | {} | {} | {} | {} | {} |",
            lang.as_str(),
            source.bytes.len() as f64 / 1e6,
            fmt(compile),
            fmt(cached),
            fmt(noop),
            fmt(http),
            fmt(files),
        );
    }
}
