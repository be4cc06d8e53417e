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

/// A pod-agent that implements only metadata and init gets the Rust SDK's defaults in Go
/// and JavaScript too: on-start and on-stop succeed, every probe is healthy with no
/// message, and every command is refused with "this plugin takes no commands".
#[test]
fn default_hooks_are_the_rust_sdks_in_go_and_js() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let go = tmp.path().join("go-minimal");
    let js = tmp.path().join("js-minimal");
    std::fs::create_dir_all(&go).expect("mkdir");
    std::fs::create_dir_all(&js).expect("mkdir");
    let sdk = crate_dir()
        .join("../../sdk-guest/go")
        .canonicalize()
        .expect("sdk-guest/go");
    std::fs::write(
        go.join("go.mod"),
        format!(
            "module minimal\n\ngo 1.24\n\nrequire github.com/bosun-dev/bosun/sdk-guest/go v0.0.0\n\nreplace github.com/bosun-dev/bosun/sdk-guest/go => {}\n",
            sdk.display()
        ),
    )
    .expect("go.mod");
    std::fs::write(
        go.join("main.go"),
        r#"package main

import bosun "github.com/bosun-dev/bosun/sdk-guest/go"

type agent struct{ bosun.PodAgentDefaults }

func (agent) Metadata() bosun.Metadata { return bosun.NewMetadata("minimal", "0.1.0") }
func (agent) Init(config string) error { return nil }

func init() { bosun.ExportPodAgent(agent{}) }
func main() {}
"#,
    )
    .expect("main.go");
    std::fs::write(
        js.join("package.json"),
        r#"{"name": "minimal", "type": "module", "main": "plugin.js"}"#,
    )
    .expect("package.json");
    std::fs::write(
        js.join("plugin.js"),
        "import { Metadata, exportPodAgent } from '@bosun/sdk/pod-agent';\n\
         exportPodAgent({ metadata: () => new Metadata('minimal', '0.1.0'), init() {} });\n",
    )
    .expect("plugin.js");

    for dir in [go, js] {
        let wasm = bosun_cli::plugin::build_with(&dir, false).unwrap_or_else(|e| panic!("{e:#}"));
        let source = Source::file(&wasm).expect("read");
        let pod = std::sync::Arc::new(bosun_conformance::pod::FakePod::default());
        let logs = std::sync::Arc::new(bosun_host::host::log::Memory::default());
        let spec = bosun_host::Spec::new(bosun_conformance::pod::services(pod, logs));
        let revision = bosun_host::Revision::load(shared_engine(), &source, spec).expect("load");
        let name = dir.display();
        revision
            .on_start()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for kind in [
            bosun_host::contract::ProbeKind::Readiness,
            bosun_host::contract::ProbeKind::Liveness,
            bosun_host::contract::ProbeKind::Startup,
        ] {
            let p = revision.probe(kind).expect("probe");
            assert!(p.healthy && p.message.is_empty(), "{name}: {p:?}");
        }
        let err = revision.on_command("anything").expect_err("refused");
        assert_eq!(
            err.to_string(),
            "plugin minimal: on-command returned an error: this plugin takes no commands",
            "{name}"
        );
        revision.on_stop().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
