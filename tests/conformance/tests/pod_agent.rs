//! The pod-agent conformance suite: every case of `pod_cases.json` through bosun-host's
//! pod-agent path (a fake pod: HTTP from a table, files in memory), for the pod-agent
//! conformance plugin in Rust, Go and JavaScript. Each must produce exactly the expected
//! result, so the three produce identical results.
//!
//! `CONFORMANCE_BLESS=1 cargo test -p bosun-conformance --test pod_agent rust` rewrites
//! the expectations from the Rust plugin (review the diff: it is the specification).

use std::sync::OnceLock;

use bosun_conformance::pod::{PodCase, cases, component, run};
use bosun_conformance::{Lang, crate_dir, engine, metadata};
use bosun_host::{Engine, Source, World};
use serde_json::Value;

fn shared_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let dir = bosun_conformance::guest_target_dir().join("compiled");
        engine(Some(dir)).expect("engine")
    })
}

fn source(lang: Lang) -> Source {
    let wasm = component(lang).unwrap_or_else(|e| panic!("{e:#}"));
    let mut source =
        Source::file(&wasm).unwrap_or_else(|e| panic!("reading {}: {e}", wasm.display()));
    source.origin = "pod-conformance.wasm".to_owned();
    source
}

fn conforms(lang: Lang) {
    let source = source(lang);
    let mut cases: Vec<PodCase> = cases().expect("pod_cases.json parses");
    let bless = lang == Lang::Rust && std::env::var_os("CONFORMANCE_BLESS").is_some();
    let mut failures = Vec::new();
    for case in &mut cases {
        let got = run(shared_engine(), &source, case)
            .unwrap_or_else(|e| panic!("{}: case {:?}: {e:#}", lang.as_str(), case.name));
        if bless {
            case.expect = got;
            continue;
        }
        if got != case.expect {
            failures.push(format!(
                "case {:?}\n  expected {}\n  got      {}",
                case.name, case.expect, got
            ));
        }
    }
    if bless {
        let path = crate_dir().join("pod_cases.json");
        let text = std::fs::read_to_string(&path).expect("read");
        let mut raw: Vec<Value> = serde_json::from_str(&text).expect("pod_cases.json");
        for (raw, case) in raw.iter_mut().zip(&cases) {
            raw["expect"] = case.expect.clone();
        }
        let text = serde_json::to_string_pretty(&raw).expect("json") + "\n";
        std::fs::write(&path, text).expect("write pod_cases.json");
        return;
    }
    assert!(
        failures.is_empty(),
        "the {} pod-agent plugin differs from the specification in {} of {} cases:\n{}",
        lang.as_str(),
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn rust_pod_agent_conforms() {
    conforms(Lang::Rust);
}

#[test]
fn go_pod_agent_conforms() {
    conforms(Lang::Go);
}

#[test]
fn js_pod_agent_conforms() {
    conforms(Lang::Js);
}

#[test]
fn pod_agent_metadata_is_identical_and_the_world_is_pod_agent() {
    let reference = metadata(shared_engine(), &source(Lang::Rust)).expect("rust metadata");
    assert_eq!(reference["name"], "pod-conformance");
    for lang in [Lang::Go, Lang::Js] {
        let source = source(lang);
        let got = metadata(shared_engine(), &source).expect("metadata");
        assert_eq!(got, reference, "{} metadata", lang.as_str());
        let revision = bosun_host::Revision::inspect(
            shared_engine(),
            &source,
            bosun_host::Spec::new(bosun_host::Services::offline()),
        )
        .expect("inspect");
        assert_eq!(revision.info().world, World::PodAgent, "{}", lang.as_str());
    }
}
