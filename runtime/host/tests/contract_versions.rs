//! The contract is versioned like a public API (`bosun:operator@0.1.0`): a plugin built
//! against another 0.1.x of the contract must still load, and one built for 0.2 or 1.0
//! must be refused with an error naming the version.
//!
//! 0.1.0 is the first version, so no older contract exists to build a plugin with. These
//! tests prove the mechanism the policy relies on instead: wasmtime's component linker
//! matches an import `pkg/iface@0.1.x` to a definition `pkg/iface@0.1.y` for any x, y
//! (for 0.x versions the minor is the compatibility key; for >=1 the major), and never
//! across keys. The first test checks that on wasmtime itself, in both directions (an
//! older component on a newer host, and the reverse). The second goes through Bosun's
//! own loader: a real plugin whose imports name 0.1.1 or 0.1.7 loads and reconciles the
//! same; 0.2.0 and 1.0.0 are refused before linking (`Cause::UnsupportedImport`), naming
//! the import with its version and the version the host serves.

mod common;

use bosun_host::contract::Command;
use bosun_host::load::Cause;
use bosun_host::{Revision, Source, Strategy};
use bosun_test_artifacts::ZONE_LABELER;
use common::*;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

/// A component importing `bosun:operator/clock@{version}`'s `now-ms`, exporting `run`
/// that returns it.
fn clock_user(version: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(component
             (import "bosun:operator/clock@{version}" (instance $clock
               (export "now-ms" (func (result u64)))))
             (core func $now (canon lower (func $clock "now-ms")))
             (core module $m
               (import "host" "now" (func $now (result i64)))
               (func (export "run") (result i64) call $now))
             (core instance $host (export "now" (func $now)))
             (core instance $i (instantiate $m (with "host" (instance $host))))
             (func (export "run") (result u64) (canon lift (core func $i "run"))))"#
    ))
    .expect("fixture WAT")
}

/// Instantiates `component` against a host defining `bosun:operator/clock@{host}`
/// (`now-ms` returns 42) and calls `run`.
fn run_against(engine: &Engine, component: &[u8], host: &str) -> wasmtime::Result<u64> {
    let component = Component::new(engine, component)?;
    let mut linker = Linker::<()>::new(engine);
    linker
        .instance(&format!("bosun:operator/clock@{host}"))?
        .func_wrap("now-ms", |_, (): ()| Ok((42u64,)))?;
    let mut store = Store::new(engine, ());
    let instance = linker.instantiate(&mut store, &component)?;
    let run = instance.get_typed_func::<(), (u64,)>(&mut store, "run")?;
    Ok(run.call(&mut store, ())?.0)
}

#[test]
fn wasmtime_links_imports_within_one_0_x_minor_and_never_across() {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    let engine = Engine::new(&config).expect("engine");

    // An older component on a newer host, a newer one on an older host, and equal.
    for (component, host) in [
        ("0.1.0", "0.1.1"),
        ("0.1.0", "0.1.12"),
        ("0.1.1", "0.1.0"),
        ("0.1.0", "0.1.0"),
    ] {
        let got = run_against(&engine, &clock_user(component), host)
            .unwrap_or_else(|e| panic!("a {component} component on a {host} host: {e:#}"));
        assert_eq!(got, 42, "a {component} component on a {host} host");
    }

    // Another compatibility key is not linked, and the error names the import.
    for (component, host) in [("0.1.0", "0.2.0"), ("0.2.0", "0.1.0"), ("1.0.0", "0.1.0")] {
        let err = run_against(&engine, &clock_user(component), host)
            .expect_err("an incompatible version must not link");
        let text = format!("{err:#}");
        assert!(
            text.contains(&format!("bosun:operator/clock@{component}")),
            "a {component} component on a {host} host: {text}"
        );
    }
}

/// The component with every `bosun:operator/IFACE@0.1.0` name rewritten to `@{version}`
/// (same length, so the binary stays valid): what building the same plugin against a
/// copy of the WIT with that package version gives, as far as linking sees it.
fn with_contract_version(bytes: &[u8], version: &str) -> Vec<u8> {
    assert_eq!(version.len(), "0.1.0".len(), "same-length versions only");
    let prefix = b"bosun:operator/";
    let mut out = bytes.to_vec();
    let mut rewritten = 0;
    let mut i = 0;
    while let Some(at) = out[i..]
        .windows(prefix.len())
        .position(|w| w == prefix)
        .map(|p| p + i)
    {
        let name_end = out[at + prefix.len()..]
            .iter()
            .position(|b| !(b.is_ascii_lowercase() || *b == b'-'))
            .map_or(out.len(), |p| p + at + prefix.len());
        if out[name_end..].starts_with(b"@0.1.0") {
            out[name_end + 1..name_end + 6].copy_from_slice(version.as_bytes());
            rewritten += 1;
        }
        i = name_end;
    }
    assert!(rewritten > 0, "no contract import found");
    out
}

fn load_as(version: &str) -> Result<Harness, bosun_host::load::Error> {
    let bytes = std::fs::read(ZONE_LABELER).expect("artifact built by bosun-test-artifacts");
    let source = Source {
        origin: format!("zone-labeler@{version}.wasm"),
        bytes: with_contract_version(&bytes, version).into(),
    };
    let cache = MapCache::with(&[
        pod("web-0").node("node-1").build(),
        node("node-1", "zone-a"),
    ]);
    let (spec, commands, logs) = spec(cache, "{}", Strategy::Fresh);
    Ok(Harness {
        revision: Revision::load(&engine(), &source, spec)?,
        commands,
        logs,
    })
}

#[test]
fn bosun_loads_a_plugin_of_another_0_1_x_and_refuses_0_2_and_1_0() {
    for version in ["0.1.1", "0.1.7"] {
        let h = load_as(version).unwrap_or_else(|e| panic!("{version}: {e}"));
        assert!(
            h.revision
                .info()
                .imports
                .iter()
                .any(|i| i == &format!("bosun:operator/cache@{version}")),
            "{version}: {:?}",
            h.revision.info().imports
        );
        h.revision
            .reconcile(&request(pod_ref("web-0")))
            .expect("reconciles");
        let commands = h.commands.take();
        assert!(
            matches!(&commands[..], [c] if matches!(c.command, Command::MergePatch(_))),
            "{version}: {commands:?}"
        );
    }

    // Refused before the linker's type check, naming the import with its version and
    // the version the host serves.
    for version in ["0.2.0", "1.0.0"] {
        let err = load_as(version).err().expect("must not load");
        assert!(
            matches!(&err.cause, Cause::UnsupportedImport { import, .. } if import.ends_with(&format!("@{version}"))),
            "{version}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("zone-labeler@{version}.wasm"))
                && text.contains("imports `bosun:operator/")
                && text.contains(&format!(
                    "@{version}`, which a controller plugin is not given"
                ))
                && text.contains("plugins get bosun:operator@0.1"),
            "{version}: {text}"
        );
    }
}
