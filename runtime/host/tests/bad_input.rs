//! Bad input at load time: each case gives one clear error naming the plugin, the
//! origin and the cause, and nothing panics.

use std::sync::Arc;

use bosun_host::load::Cause;
use bosun_host::{Engine, Revision, Services, Source, Spec};

fn engine() -> Engine {
    Engine::new(&bosun_host::engine::Config {
        max_instances: 8,
        ..Default::default()
    })
    .expect("engine")
}

fn source(origin: &str, bytes: Vec<u8>) -> Source {
    Source {
        origin: origin.to_owned(),
        bytes: Arc::from(bytes),
    }
}

fn load_err(bytes: Vec<u8>) -> bosun_host::load::Error {
    Revision::load(
        &engine(),
        &source("fixture.wasm", bytes),
        Spec::new(Services::offline()),
    )
    .expect_err("must not load")
}

/// A component exporting `names` as parameterless functions, importing `imports`.
fn component(imports: &[&str], names: &[&str]) -> Vec<u8> {
    let imports: String = imports
        .iter()
        .map(|i| format!("(import \"{i}\" (instance))\n"))
        .collect();
    let exports: String = names
        .iter()
        .map(|n| format!("(export \"{n}\" (func $f))\n"))
        .collect();
    let text = format!(
        "(component {imports}
           (core module $m (func (export \"f\")))
           (core instance $i (instantiate $m))
           (func $f (canon lift (core func $i \"f\")))
           {exports})"
    );
    wat::parse_str(text).expect("fixture WAT")
}

#[test]
fn not_wasm_is_named() {
    let err = load_err(b"#!/bin/sh\necho not wasm\n".to_vec());
    assert!(matches!(err.cause, Cause::NotWasm), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("fixture.wasm") && text.contains("not a WebAssembly file"),
        "{text}"
    );
}

#[test]
fn core_module_is_told_to_build_a_component() {
    let module = wat::parse_str("(module (func (export \"reconcile\")))").expect("wat");
    let err = load_err(module);
    assert!(matches!(err.cause, Cause::CoreModule), "{err}");
    assert!(err.to_string().contains("wasm32-wasip2"), "{err}");
}

#[test]
fn truncated_component_fails_to_compile() {
    let mut bytes = component(&[], &["metadata", "init", "reconcile"]);
    bytes.truncate(bytes.len() / 2);
    let err = load_err(bytes);
    assert!(matches!(err.cause, Cause::Compile(_)), "{err}");
}

#[test]
fn component_of_no_world_lists_its_exports() {
    let err = load_err(component(&[], &["hello"]));
    match &err.cause {
        Cause::UnknownWorld { exports } => assert_eq!(exports, "hello"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("reconcile"), "{err}");
}

#[test]
fn unsupported_import_is_named() {
    let err = load_err(component(
        &["wasi:http/outgoing-handler@0.2.0"],
        &["metadata", "init", "reconcile"],
    ));
    match &err.cause {
        Cause::UnsupportedImport { import, world } => {
            assert_eq!(import, "wasi:http/outgoing-handler@0.2.0");
            assert_eq!(world.as_str(), "controller");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn pod_interface_is_not_given_to_controllers() {
    let err = load_err(component(
        &["bosun:operator/pod@0.1.0"],
        &["metadata", "init", "reconcile"],
    ));
    assert!(
        matches!(&err.cause, Cause::UnsupportedImport { import, .. } if import.starts_with("bosun:operator/pod")),
        "{err}"
    );
}

#[test]
fn exports_of_the_wrong_type_are_reported() {
    let err = load_err(component(&[], &["metadata", "init", "reconcile"]));
    assert!(matches!(err.cause, Cause::WrongWorld { .. }), "{err}");
}

#[test]
fn memory_cap_over_the_engine_maximum_is_refused() {
    let mut spec = Spec::new(Services::offline());
    spec.limits.memory_bytes = usize::MAX;
    let err = Revision::load(&engine(), &source("x.wasm", component(&[], &["a"])), spec)
        .expect_err("refused");
    assert!(matches!(err.cause, Cause::Limits { .. }), "{err}");
}
