//! The conformance suite: every case of `cases.json` through bosun-host, for the
//! conformance plugin in each language. Each language must produce exactly the expected
//! result, so the three produce identical results. A missing toolchain fails the suite
//! with the command that installs it.
//!
//! `CONFORMANCE_BLESS=1 cargo test -p bosun-conformance --test conformance rust` rewrites
//! the expectations from the Rust plugin (review the diff: it is the specification).

use std::sync::OnceLock;

use bosun_conformance::{Case, Lang, cases, component, crate_dir, engine, metadata, run};
use bosun_host::{Engine, Source};
use serde_json::Value;

fn shared_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        // Compiled once per component, then loaded from this cache by every case.
        let dir = bosun_conformance::guest_target_dir().join("compiled");
        engine(Some(dir)).expect("engine")
    })
}

fn source(lang: Lang) -> Source {
    let wasm = component(lang).unwrap_or_else(|e| panic!("{e:#}"));
    let mut source =
        Source::file(&wasm).unwrap_or_else(|e| panic!("reading {}: {e}", wasm.display()));
    // Load errors name the origin: the same for every language.
    source.origin = "conformance.wasm".to_owned();
    source
}

fn conforms(lang: Lang) {
    let source = source(lang);
    let mut cases: Vec<Case> = cases().expect("cases.json parses");
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
        let text = std::fs::read_to_string(crate_dir().join("cases.json")).expect("read");
        let mut raw: Vec<Value> = serde_json::from_str(&text).expect("cases.json");
        for (raw, case) in raw.iter_mut().zip(&cases) {
            raw["expect"] = case.expect.clone();
        }
        let text = serde_json::to_string_pretty(&raw).expect("json") + "\n";
        std::fs::write(crate_dir().join("cases.json"), text).expect("write cases.json");
        return;
    }
    assert!(
        failures.is_empty(),
        "the {} plugin differs from the specification in {} of {} cases:\n{}",
        lang.as_str(),
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn rust_conforms() {
    conforms(Lang::Rust);
}

#[test]
fn go_conforms() {
    conforms(Lang::Go);
}

#[test]
fn js_conforms() {
    conforms(Lang::Js);
}

#[test]
fn every_language_declares_the_same_metadata() {
    let reference = metadata(shared_engine(), &source(Lang::Rust)).expect("rust metadata");
    assert_eq!(reference["name"], "conformance");
    assert_eq!(reference["subscriptions"][1]["label_selector"], "app=conf");
    for lang in [Lang::Go, Lang::Js] {
        let got = metadata(shared_engine(), &source(lang)).expect("metadata");
        assert_eq!(
            got,
            reference,
            "{} metadata differs from rust",
            lang.as_str()
        );
    }
}
