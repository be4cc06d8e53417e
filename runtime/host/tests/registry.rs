//! Revisions, atomic swaps, failed loads that leave the current revision serving,
//! rollback, hot reload from a folder, and the compiled-code cache.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bosun_host::engine::Compiled;
use bosun_host::registry::Outcome;
use bosun_host::watch::{Event, Folder};
use bosun_host::{Engine, Registry, Source, Spec, Strategy};
use bosun_test_artifacts::ZONE_LABELER;
use common::*;

fn labeler_spec() -> Spec {
    let cache = MapCache::with(&[
        pod("web-0").node("node-1").build(),
        node("node-1", "zone-a"),
    ]);
    spec(cache, "{}", WARM).0
}

fn bytes() -> Vec<u8> {
    std::fs::read(ZONE_LABELER).expect("artifact")
}

fn src(tag: &str) -> Source {
    Source {
        origin: format!("v-{tag}"),
        bytes: Arc::from(variant(&bytes(), tag)),
    }
}

#[test]
fn swaps_are_atomic_and_no_call_is_dropped() {
    let registry = Arc::new(Registry::new(engine()));
    registry
        .load(&src("0"), labeler_spec(), None)
        .expect("first revision");
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (registry, stop, calls) = (registry.clone(), stop.clone(), calls.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let revision = registry
                        .current("zone-labeler")
                        .expect("always a current revision");
                    revision
                        .reconcile(&request(pod_ref("web-0")))
                        .expect("no call fails during swaps");
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut digests = Vec::new();
    for i in 1..=10 {
        let r = registry
            .load(&src(&i.to_string()), labeler_spec(), None)
            .expect("loads");
        digests.push(r.digest().to_owned());
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker did not panic");
    }
    assert!(calls.load(Ordering::Relaxed) > 0);
    assert_eq!(
        registry.current("zone-labeler").expect("current").digest(),
        digests[9]
    );
    let status = registry.status();
    let history = &status[0].history;
    assert_eq!(
        history
            .iter()
            .filter(|e| e.outcome == Outcome::Serving)
            .count(),
        1
    );
}

#[test]
fn a_call_in_flight_finishes_on_its_revision() {
    let registry = Registry::new(engine());
    let old = registry.load(&src("a"), labeler_spec(), None).expect("a");
    let held = registry.current("zone-labeler").expect("current");
    let new = registry.load(&src("b"), labeler_spec(), None).expect("b");
    assert_ne!(old.digest(), new.digest());
    held.reconcile(&request(pod_ref("web-0")))
        .expect("the held revision still serves its call");
    assert_eq!(held.digest(), old.digest());
    assert_eq!(
        registry.current("zone-labeler").expect("current").digest(),
        new.digest()
    );
}

#[test]
fn a_failed_load_leaves_the_current_revision_serving() {
    let registry = Registry::new(engine());
    let good = registry
        .load(&src("good"), labeler_spec(), Some("zone-labeler"))
        .expect("good");
    let garbage = Source {
        origin: "broken.wasm".into(),
        bytes: Arc::from(b"\0asm garbage".to_vec()),
    };
    let err = registry
        .load(&garbage, labeler_spec(), Some("zone-labeler"))
        .expect_err("garbage fails");
    assert!(err.to_string().contains("broken.wasm"), "{err}");
    let current = registry.current("zone-labeler").expect("still serving");
    assert_eq!(current.digest(), good.digest());
    current
        .reconcile(&request(pod_ref("web-0")))
        .expect("works");
    let history = &registry.status()[0].history;
    assert!(
        matches!(history.last().map(|e| &e.outcome), Some(Outcome::Failed(_))),
        "{history:?}"
    );
}

#[test]
fn rollback_returns_to_the_previous_revision_or_a_named_one() {
    let registry = Registry::new(engine());
    let a = registry.load(&src("a"), labeler_spec(), None).expect("a");
    let b = registry.load(&src("b"), labeler_spec(), None).expect("b");
    let back = registry.rollback("zone-labeler", None).expect("rollback");
    assert_eq!(back.digest(), a.digest());
    let hex = b.digest().trim_start_matches("sha256:");
    let forward = registry
        .rollback("zone-labeler", Some(&hex[..12]))
        .expect("to b");
    assert_eq!(forward.digest(), b.digest());
    assert!(registry.rollback("zone-labeler", Some("ffff")).is_err());
    assert!(registry.rollback("nope", None).is_err());
}

#[test]
fn folder_hot_reload_waits_for_files_to_settle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = Arc::new(Registry::new(engine()));
    let settle = Duration::from_millis(300);
    let mut folder = Folder::new(dir.path(), registry.clone(), settle, |_| labeler_spec());
    let path = dir.path().join("zone-labeler.wasm");
    let full = variant(&bytes(), "one");

    // Half a file, then the rest before it settles: only the complete file is loaded.
    std::fs::write(&path, &full[..full.len() / 2]).expect("write");
    assert!(
        folder.scan().is_empty(),
        "nothing loads before the file settles"
    );
    std::thread::sleep(settle / 3);
    std::fs::write(&path, &full).expect("write");
    assert!(folder.scan().is_empty());
    std::thread::sleep(settle + Duration::from_millis(50));
    let events = folder.scan();
    assert!(
        matches!(&events[..], [Event::Loaded { name, .. }] if name == "zone-labeler"),
        "{events:?}"
    );
    let first = registry
        .current("zone-labeler")
        .expect("loaded")
        .digest()
        .to_owned();

    // A broken rewrite is reported and the loaded revision keeps serving.
    std::fs::write(&path, b"not wasm").expect("write");
    std::thread::sleep(settle + Duration::from_millis(50));
    folder.scan();
    std::thread::sleep(settle + Duration::from_millis(50));
    let events = folder.scan();
    assert!(
        events.is_empty() || matches!(&events[..], [Event::Failed { .. }]),
        "{events:?}"
    );
    assert_eq!(
        registry
            .current("zone-labeler")
            .expect("still serving")
            .digest(),
        first
    );

    // A new revision, with a config file beside it, is swapped in.
    std::fs::write(&path, variant(&bytes(), "two")).expect("write");
    std::fs::write(
        dir.path().join("zone-labeler.json"),
        r#"{"label":"example.com/zone"}"#,
    )
    .expect("write");
    std::thread::sleep(settle + Duration::from_millis(50));
    folder.scan();
    std::thread::sleep(settle + Duration::from_millis(50));
    folder.scan();
    let current = registry.current("zone-labeler").expect("loaded");
    assert_ne!(current.digest(), first);
    assert!(current.config().contains("example.com/zone"));

    std::fs::remove_file(&path).expect("remove");
    let events = folder.scan();
    assert!(
        matches!(&events[..], [Event::Removed { name }] if name == "zone-labeler"),
        "{events:?}"
    );
    assert!(registry.current("zone-labeler").is_none());
}

#[test]
fn the_settle_time_counts_from_the_files_last_write_not_from_the_scan_that_saw_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = Arc::new(Registry::new(engine()));
    let settle = Duration::from_millis(300);
    let mut folder = Folder::new(dir.path(), registry.clone(), settle, |_| labeler_spec());
    let path = dir.path().join("zone-labeler.wasm");
    std::fs::write(&path, variant(&bytes(), "one")).expect("write");
    assert!(folder.scan().is_empty());
    // A file waiting to settle shortens the pause before the next scan to its due time.
    let pause = folder.pause(Duration::from_secs(5));
    assert!(pause <= settle, "{pause:?}");
    std::thread::sleep(pause);
    assert!(
        matches!(&folder.scan()[..], [Event::Loaded { .. }]),
        "loaded at its due time"
    );
    assert_eq!(folder.pause(Duration::from_secs(5)), Duration::from_secs(5));

    // A rewrite first seen once it has been still for the settle time loads in that scan.
    std::fs::write(&path, variant(&bytes(), "two")).expect("write");
    std::thread::sleep(settle + Duration::from_millis(50));
    assert!(
        matches!(&folder.scan()[..], [Event::Loaded { .. }]),
        "a settled rewrite loads at once"
    );
}

#[test]
fn a_second_engine_loads_from_the_compiled_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = bosun_host::engine::Config {
        cache_dir: Some(dir.path().to_owned()),
        max_instances: 8,
        ..Default::default()
    };
    let first = bosun_host::Revision::load(
        &Engine::new(&config).expect("engine"),
        &source(ZONE_LABELER),
        labeler_spec(),
    )
    .expect("loads");
    assert_eq!(first.info().compiled, Compiled::Fresh);
    let again = bosun_host::Revision::load(
        &Engine::new(&config).expect("engine"),
        &source(ZONE_LABELER),
        labeler_spec(),
    )
    .expect("loads");
    assert_eq!(again.info().compiled, Compiled::Cached);
    again
        .reconcile(&request(pod_ref("web-0")))
        .expect("cached code runs");

    // A corrupt cache entry is recompiled, not trusted.
    for entry in std::fs::read_dir(dir.path()).expect("dir").flatten() {
        std::fs::write(entry.path(), b"corrupt").expect("corrupt");
    }
    let recovered = bosun_host::Revision::load(
        &Engine::new(&config).expect("engine"),
        &source(ZONE_LABELER),
        labeler_spec(),
    )
    .expect("loads");
    assert_eq!(recovered.info().compiled, Compiled::Fresh);
    let _ = Strategy::Fresh;
}

#[test]
fn precompiled_code_ships_to_another_engine_which_refuses_code_it_cannot_run() {
    let bytes = bytes();
    let digest = bosun_host::load::digest(&bytes);
    let hex = digest.trim_start_matches("sha256:");
    let maker = engine();
    let code = maker.precompiled(&bytes, hex).expect("precompiled");
    let dir = tempfile::tempdir().expect("tempdir");
    let taker = Engine::new(&bosun_host::engine::Config {
        cache_dir: Some(dir.path().to_owned()),
        max_instances: 8,
        ..Default::default()
    })
    .expect("engine");
    assert_eq!(maker.artifact_key(), taker.artifact_key());
    assert!(!taker.has_compiled(hex));
    taker.adopt_precompiled(hex, &code).expect("adopted");
    assert!(taker.has_compiled(hex));
    let revision =
        bosun_host::Revision::load(&taker, &source(ZONE_LABELER), labeler_spec()).expect("loads");
    assert_eq!(revision.info().compiled, Compiled::Shipped);
    revision
        .reconcile(&request(pod_ref("web-0")))
        .expect("the shipped code runs");

    // Not code at all, or code from an engine with other settings: refused with the reason
    // before anything of it runs.
    let err = taker
        .adopt_precompiled(hex, b"\x7fELF but not really")
        .expect_err("garbage");
    assert!(
        err.to_string().contains("not a precompiled component"),
        "{err:#}"
    );
    let mut other = wasmtime::Config::new();
    other.wasm_component_model(true);
    let foreign = wasmtime::Engine::new(&other)
        .and_then(|e| e.precompile_component(&bytes))
        .expect("precompiled elsewhere");
    let err = taker
        .adopt_precompiled(hex, &foreign)
        .expect_err("other settings");
    assert!(
        format!("{err:#}").contains("without epoch interruption"),
        "{err:#}"
    );
}

#[test]
fn the_wasmtime_version_constant_is_the_pinned_one() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"))
            .expect("workspace manifest");
    let pin = format!(
        "wasmtime = {{ version = \"={}\"",
        bosun_host::engine::WASMTIME_VERSION
    );
    assert!(manifest.contains(&pin), "Cargo.toml does not pin {pin}");
}
