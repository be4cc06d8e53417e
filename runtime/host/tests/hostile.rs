//! Hostile plugins are contained: each misbehaviour ends its own call with a clear
//! error, and the host and a well-behaved plugin beside it keep working.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_host::call::Error;
use bosun_host::contract::{Command, Level};
use bosun_host::host::cache::MemoryState;
use bosun_host::load::Cause;
use bosun_host::{Revision, Strategy};
use bosun_test_artifacts::{BAD_METADATA, GREEDY_METADATA, HOSTILE, ZONE_LABELER};
use common::*;

fn hostile(mode: &str, tune: impl FnOnce(&mut bosun_host::Spec)) -> Harness {
    load(
        &engine(),
        HOSTILE,
        &format!(r#"{{"mode":"{mode}"}}"#),
        Strategy::Fresh,
        tune,
    )
}

fn reconcile(h: &Harness) -> Result<bosun_host::contract::ReconcileOutcome, Error> {
    h.revision.reconcile(&request(pod_ref("web-0")))
}

/// A well-behaved plugin still answers correctly.
fn assert_neighbour_works(engine: &bosun_host::Engine) {
    let good = load(engine, ZONE_LABELER, "{}", WARM, |_| {});
    good.revision
        .reconcile(&request(pod_ref("web-0")))
        .expect("the well-behaved plugin still works");
    assert_eq!(good.commands.len(), 1);
}

#[test]
fn well_behaved_hostile_mode_patches() {
    let h = hostile("ok", |_| {});
    reconcile(&h).expect("ok mode succeeds");
    let commands = h.commands.take();
    assert_eq!(commands.len(), 1);
    assert!(
        matches!(&commands[0].command, Command::MergePatch(p) if p.patch.contains("hostile/seen"))
    );
}

#[test]
fn a_trap_is_contained_and_its_panic_message_logged() {
    let h = hostile("trap", |_| {});
    let err = reconcile(&h).expect_err("traps");
    assert!(matches!(err, Error::Trap { .. }), "{err}");
    let logs = h.logs.take();
    assert!(
        logs.iter().any(|l| l.level == Level::Warn
            && l.message.contains("[stderr]")
            && l.message.contains("panicked")),
        "{logs:?}"
    );
    // The revision itself keeps serving: the next call gets a new instance and traps again.
    assert!(matches!(reconcile(&h), Err(Error::Trap { .. })));
    assert!(h.revision.stats().traps >= 2);
    assert_neighbour_works(&engine());
}

#[test]
fn an_endless_loop_hits_the_deadline_while_a_neighbour_keeps_working() {
    let engine = engine();
    let h = load(
        &engine,
        HOSTILE,
        r#"{"mode":"loop"}"#,
        Strategy::Fresh,
        |s| {
            s.limits.deadline = Duration::from_millis(300);
        },
    );
    let neighbour = std::thread::spawn({
        let engine = engine.clone();
        move || {
            let good = load(&engine, ZONE_LABELER, "{}", WARM, |_| {});
            for _ in 0..20 {
                good.revision
                    .reconcile(&request(pod_ref("web-0")))
                    .expect("neighbour works during the loop");
            }
            good.commands.len()
        }
    });
    let started = Instant::now();
    let err = reconcile(&h).expect_err("times out");
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("deadline of 300ms"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "interrupted promptly: {:?}",
        started.elapsed()
    );
    assert_eq!(neighbour.join().expect("neighbour thread"), 20);
    assert_eq!(h.revision.stats().timeouts, 1);
}

#[test]
fn unbounded_allocation_runs_out_of_memory() {
    let h = hostile("alloc", |s| s.limits.memory_bytes = 16 << 20);
    let err = reconcile(&h).expect_err("runs out of memory");
    assert!(
        matches!(err, Error::OutOfMemory { limit, .. } if limit == 16 << 20),
        "{err}"
    );
    assert_neighbour_works(&engine());
}

#[test]
fn a_command_flood_is_stopped_at_the_per_call_cap() {
    let h = hostile("flood", |s| s.limits.max_commands_per_call = 500);
    let err = reconcile(&h).expect_err("stopped");
    assert!(
        matches!(&err, Error::Limit { what, .. } if what.contains("more than 500 commands")),
        "{err}"
    );
    assert_eq!(h.commands.len(), 500);
}

#[test]
fn a_100_mb_error_string_cannot_be_built() {
    let h = hostile("big-error", |_| {});
    let err = reconcile(&h).expect_err("fails");
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
}

#[test]
fn a_long_error_message_is_truncated() {
    let h = load(
        &engine(),
        HOSTILE,
        r#"{"mode":"big-error","bytes":2000000}"#,
        Strategy::Fresh,
        |_| {},
    );
    // With room for the string, the host still caps what it keeps of it.
    match reconcile(&h) {
        Err(Error::Plugin { message, .. }) => assert!(
            message.len() < 8 << 10 && message.contains("truncated"),
            "{}",
            message.len()
        ),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn init_failure_is_a_load_error_naming_the_plugin() {
    let cache = MapCache::with(&[]);
    let (spec, _, _) = spec(cache, r#"{"mode":"init-fail"}"#, Strategy::Fresh);
    let err = Revision::load(&engine(), &source(HOSTILE), spec).expect_err("init fails");
    assert!(matches!(err.cause, Cause::Init(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("plugin hostile") && text.contains("init refused by config"),
        "{text}"
    );
}

#[test]
fn invalid_config_json_is_refused_before_init() {
    let (spec, _, _) = spec(MapCache::with(&[]), "{mode: loop", Strategy::Fresh);
    let err = Revision::load(&engine(), &source(HOSTILE), spec).expect_err("bad config");
    assert!(matches!(err.cause, Cause::InvalidConfig(_)), "{err}");
}

#[test]
fn malformed_metadata_is_refused() {
    let (spec, _, _) = spec(MapCache::with(&[]), "{}", Strategy::Fresh);
    let err = Revision::load(&engine(), &source(BAD_METADATA), spec).expect_err("bad metadata");
    assert!(matches!(err.cause, Cause::Metadata(_)), "{err}");
    assert!(err.to_string().contains("not a version!"), "{err}");
}

#[test]
fn a_hundred_thousand_subscriptions_are_refused_at_load_naming_the_cap() {
    let (spec, _, _) = spec(MapCache::with(&[]), "{}", Strategy::Fresh);
    let err = Revision::load(&engine(), &source(GREEDY_METADATA), spec).expect_err("over the cap");
    assert!(matches!(err.cause, Cause::Metadata(_)), "{err}");
    assert!(
        err.to_string()
            .contains("100000 subscriptions declared, over the cap of 64 subscriptions per plugin"),
        "{err}"
    );
}

#[test]
fn log_floods_are_capped_per_call() {
    let h = hostile("log-flood", |s| s.limits.max_log_lines_per_call = 100);
    reconcile(&h).expect("logging is not an error");
    let logs = h.logs.take();
    assert_eq!(logs.len(), 101, "100 lines and one notice");
    assert!(
        logs[100]
            .message
            .contains("log lines over the per-call cap"),
        "{:?}",
        logs[100]
    );
    assert!(h.revision.stats().log_lines_dropped > 0);
}

#[test]
fn stdout_and_stderr_reach_the_log() {
    let h = hostile("stdout", |_| {});
    reconcile(&h).expect("ok");
    let logs = h.logs.take();
    assert!(
        logs.iter()
            .any(|l| l.level == Level::Info && l.message == "[stdout] hostile stdout line 1"),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.level == Level::Warn && l.message.starts_with("[stderr]")),
        "{logs:?}"
    );
}

#[test]
fn plugin_errors_and_requeues_are_data() {
    let err = reconcile(&hostile("error", |_| {})).expect_err("errors");
    assert!(
        matches!(&err, Error::Plugin { message, .. } if message == "hostile: reconcile failed on purpose"),
        "{err}"
    );
    assert!(!err.poisons_instance());
    let outcome = reconcile(&hostile("requeue", |_| {})).expect("ok");
    assert_eq!(outcome.requeue_after_ms, Some(1500));
}

#[test]
fn state_survives_fresh_instances() {
    let h = hostile("state", |_| {});
    for _ in 0..3 {
        reconcile(&h).expect("ok");
    }
    let counts: Vec<String> = h.logs.take().into_iter().map(|l| l.message).collect();
    assert!(counts.last().is_some_and(|l| l.contains('3')), "{counts:?}");
    assert!(
        h.revision.stats().instances >= 3,
        "fresh strategy makes an instance per call"
    );
}

#[test]
fn warm_instances_are_reused_and_recycled() {
    let engine = engine();
    let warm = load(
        &engine,
        ZONE_LABELER,
        "{}",
        Strategy::Warm {
            recycle_after: 5,
            max_idle: 1,
        },
        |_| {},
    );
    for _ in 0..12 {
        warm.revision
            .reconcile(&request(pod_ref("web-0")))
            .expect("ok");
    }
    // One instance at load, then a new one every 5 calls.
    let instances = warm.revision.stats().instances;
    assert!(
        (3..=4).contains(&instances),
        "{instances} instances for 12 warm calls"
    );
}

#[test]
fn a_state_flood_is_stopped_at_the_per_plugin_cap() {
    let state = Arc::new(MemoryState::with_caps(4 << 20, 10_000));
    let h = hostile("state-flood", |s| s.services.state = state.clone());
    reconcile(&h).expect("the refusal is data");
    let logs: Vec<String> = h.logs.take().into_iter().map(|l| l.message).collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("state-flood: refused after 63:")
                && l.contains("over the cap of 4194304 bytes per plugin")),
        "{logs:?}"
    );
    let usage = h.revision.state_usage();
    assert!(usage.bytes <= 4 << 20, "{usage:?}");
    // Later calls are refused at once: the state does not grow.
    reconcile(&h).expect("the refusal is data");
    assert_eq!(h.revision.state_usage(), usage);
}

#[test]
fn state_keys_are_capped_per_plugin() {
    let state = Arc::new(MemoryState::with_caps(usize::MAX, 100));
    let h = hostile("state-flood", |s| s.services.state = state.clone());
    reconcile(&h).expect("the refusal is data");
    let logs: Vec<String> = h.logs.take().into_iter().map(|l| l.message).collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("the cap of 100 keys per plugin")),
        "{logs:?}"
    );
    assert_eq!(h.revision.state_usage().keys, 100);
}

#[test]
fn state_sets_are_capped_per_call() {
    let h = hostile("state-flood", |s| {
        s.limits.max_state_sets_per_call = 50;
        s.services.state = Arc::new(MemoryState::with_caps(usize::MAX, usize::MAX));
    });
    let err = reconcile(&h).expect_err("stopped");
    assert!(
        matches!(&err, Error::Limit { what, .. } if what.contains("more than 50 state-set calls")),
        "{err}"
    );
    assert_eq!(h.revision.stats().limit_exceeded, 1);
}

#[test]
fn a_plugin_spinning_on_list_objects_is_stopped_by_its_read_cap() {
    // A deadline long enough that only the read cap can stop the call.
    let h = hostile("list-spin", |s| {
        s.limits.deadline = Duration::from_secs(60);
        s.limits.max_read_bytes_per_call = 1 << 20;
    });
    let started = Instant::now();
    let err = reconcile(&h).expect_err("stopped");
    assert!(
        matches!(&err, Error::Limit { what, .. } if what.contains("over the cap of 1048576 bytes per call")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn cutting_objects_is_bounded_by_the_field_list_limit_and_the_read_cap() {
    let h = hostile("fields-spin", |s| {
        s.limits.deadline = Duration::from_secs(60);
        s.limits.max_read_bytes_per_call = 1 << 20;
    });
    let started = Instant::now();
    let err = reconcile(&h).expect_err("stopped");
    // Each cut spends the read cap by the size of the object it scans.
    assert!(
        matches!(&err, Error::Limit { what, .. } if what.contains("over the cap of 1048576 bytes per call")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    let logs = h.logs.take();
    assert!(
        logs.iter()
            .any(|l| l.message.contains("refused:") && l.message.contains("over the limit")),
        "{logs:?}"
    );
}

#[test]
fn out_of_memory_calls_are_counted() {
    let h = hostile("alloc", |s| s.limits.memory_bytes = 16 << 20);
    for _ in 0..3 {
        let err = reconcile(&h).expect_err("runs out of memory");
        assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
    }
    let stats = h.revision.stats();
    assert_eq!(stats.out_of_memory, 3, "{stats:?}");
}

#[test]
fn removing_a_plugin_frees_its_state() {
    use bosun_host::host::cache::State;
    let state = Arc::new(MemoryState::default());
    let registry = bosun_host::Registry::new(engine());
    let cache = MapCache::with(&[pod("web-0").node("node-1").build()]);
    let (mut spec, _, _) = spec(cache, r#"{"mode":"state-flood"}"#, Strategy::Fresh);
    spec.services.state = state.clone();
    let revision = registry.load(&source(HOSTILE), spec, None).expect("loads");
    revision
        .reconcile(&request(pod_ref("web-0")))
        .expect("the refusal is data");
    assert!(
        state.usage("hostile").bytes > 1 << 20,
        "it filled its state"
    );
    let status = registry.status();
    assert_eq!(status[0].state, Some(state.usage("hostile")));
    assert!(registry.remove("hostile"));
    assert_eq!(state.usage("hostile"), Default::default());
    assert_eq!(state.get("hostile", "flood-0"), None);
}
