//! The example plugin end to end through the host: cache reads, one patch, logs,
//! requeue, and the host's read filter and permission check.

mod common;

use bosun_host::contract::Command;
use bosun_host::{Revision, Strategy};
use bosun_test_artifacts::{HOSTILE, ZONE_LABELER};
use common::*;

#[test]
fn labels_a_pod_with_its_nodes_zone() {
    let h = load(&engine(), ZONE_LABELER, "{}", Strategy::Fresh, |_| {});
    let outcome = h
        .revision
        .reconcile(&request(pod_ref("web-0")))
        .expect("reconciles");
    assert_eq!(outcome.requeue_after_ms, None);
    let commands = h.commands.take();
    assert_eq!(commands.len(), 1, "{commands:?}");
    match &commands[0].command {
        Command::MergePatch(p) => {
            assert_eq!(p.target, pod_ref("web-0"));
            let patch: serde_json::Value = serde_json::from_str(&p.patch).expect("json");
            assert_eq!(
                patch["metadata"]["labels"]["topology.kubernetes.io/zone"],
                "zone-a"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(commands[0].call.key.as_ref(), Some(&pod_ref("web-0")));
}

#[test]
fn an_already_labelled_pod_needs_nothing() {
    let cache = MapCache::with(&[
        pod("web-1")
            .node("node-1")
            .label("topology.kubernetes.io/zone", "zone-a")
            .build(),
        node("node-1", "zone-a"),
    ]);
    let (spec, commands, _) = spec(cache, "{}", Strategy::Fresh);
    let revision = Revision::load(&engine(), &source(ZONE_LABELER), spec).expect("loads");
    revision
        .reconcile(&request(pod_ref("web-1")))
        .expect("reconciles");
    assert!(commands.is_empty());
}

#[test]
fn a_missing_node_requeues_with_a_warning() {
    let cache = MapCache::with(&[pod("web-2").node("node-9").build()]);
    let (spec, commands, logs) = spec(cache, "{}", Strategy::Fresh);
    let revision = Revision::load(&engine(), &source(ZONE_LABELER), spec).expect("loads");
    let outcome = revision
        .reconcile(&request(pod_ref("web-2")))
        .expect("reconciles");
    assert_eq!(outcome.requeue_after_ms, Some(30_000));
    assert!(commands.is_empty());
    assert!(logs.take().iter().any(|l| l.message.contains("node-9")));
}

#[test]
fn the_label_key_comes_from_config() {
    let mut custom = node("node-1", "zone-a");
    custom["metadata"]["labels"]["example.com/zone"] = serde_json::json!("blue");
    let cache = MapCache::with(&[pod("web-0").node("node-1").build(), custom]);
    let (spec, commands, _) = spec(cache, r#"{"label":"example.com/zone"}"#, Strategy::Fresh);
    let revision = Revision::load(&engine(), &source(ZONE_LABELER), spec).expect("loads");
    revision
        .reconcile(&request(pod_ref("web-0")))
        .expect("reconciles");
    let commands = commands.take();
    assert!(
        matches!(&commands[0].command, Command::MergePatch(p) if p.patch.contains(r#""example.com/zone":"blue""#)),
        "{commands:?}"
    );
}

#[test]
fn reads_of_undeclared_kinds_return_nothing_and_are_counted() {
    // The hostile plugin declares Pods only; asked to reconcile a Secret, its cache read
    // of the Secret is filtered out even though the cache holds one.
    let secret = serde_json::json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","namespace":"default"}});
    let cache = MapCache::with(&[secret]);
    let (spec, commands, _) = spec(cache, r#"{"mode":"ok"}"#, Strategy::Fresh);
    let revision = Revision::load(&engine(), &source(HOSTILE), spec).expect("loads");
    let target = bosun_host::contract::ObjectRef::namespaced("v1", "Secret", "default", "s");
    revision.reconcile(&request(target)).expect("reconciles");
    assert!(commands.is_empty(), "nothing read, nothing patched");
    assert_eq!(revision.stats().undeclared_reads, 1);
}

#[test]
fn commands_outside_the_declared_verbs_are_refused() {
    let h = load(
        &engine(),
        HOSTILE,
        r#"{"mode":"forbidden"}"#,
        Strategy::Fresh,
        |_| {},
    );
    h.revision
        .reconcile(&request(pod_ref("web-0")))
        .expect("the refusal is data");
    assert!(h.commands.is_empty(), "nothing reached the pipe");
    assert_eq!(h.revision.stats().commands_refused, 1);
    let logs = h.logs.take();
    assert!(
        logs.iter()
            .any(|l| l.message.contains("not permitted") && l.message.contains("evict")),
        "{logs:?}"
    );
}
