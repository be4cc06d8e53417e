//! Properties of command validation, on generated commands: `Command::validate` never
//! panics, and every target it accepts satisfies the documented rules (checked here by an
//! independent reading of them), so the executor can build a request path from it.
//!
//! Runs `PROPTEST_CASES` cases (256 by default); run more with
//! `PROPTEST_CASES=100000 cargo test -p bosun-host --test contract_properties`.

use bosun_host::contract::{
    Command, EventCommand, EventType, NodeTaint, NodeUntaint, ObjectRef, Patch, PodCommand, Taint,
    TaintEffect,
};
use proptest::prelude::*;
use serde_json::json;

/// Text that is sometimes a valid name, sometimes close to one, sometimes anything.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9./%_-]{0,12}",
        "[a-z0-9]([a-z0-9.-]{0,10}[a-z0-9])?",
        "[a-z0-9.]{1,8}/[a-z0-9]{1,4}",
        prop::sample::select(vec![
            "",
            ".",
            "..",
            "a/b",
            "v1",
            "apps/v1",
            "Pod",
            "Node",
            "Namespace",
            "ConfigMap",
            "Widget",
            "-a",
            "a-",
            "A",
            "a_b",
            "a\u{0}b",
            "a\nb",
            "%2e%2e",
            "web-0",
            "default",
        ])
        .prop_map(str::to_string),
        (1..300usize).prop_map(|n| "a".repeat(n)),
    ]
}

fn object_ref() -> impl Strategy<Value = ObjectRef> {
    (text(), text(), proptest::option::of(text()), text()).prop_map(
        |(api_version, kind, namespace, name)| ObjectRef {
            api_version,
            kind,
            namespace,
            name,
        },
    )
}

fn effect() -> impl Strategy<Value = TaintEffect> {
    prop::sample::select(vec![
        TaintEffect::NoSchedule,
        TaintEffect::PreferNoSchedule,
        TaintEffect::NoExecute,
    ])
}

fn command() -> impl Strategy<Value = Command> {
    let patch_body = prop_oneof![
        text(),
        Just("{}".to_string()),
        Just(r#"[{"op":"add","path":"/a","value":1}]"#.to_string()),
    ];
    prop_oneof![
        (text(), text(), text(), proptest::option::of(text())).prop_map(|(a, k, n, ns)| {
            Command::Apply(
                json!({"apiVersion": a, "kind": k, "metadata": {"name": n, "namespace": ns}})
                    .to_string(),
            )
        }),
        text().prop_map(Command::Apply),
        (object_ref(), patch_body.clone())
            .prop_map(|(target, patch)| Command::MergePatch(Patch { target, patch })),
        (object_ref(), patch_body)
            .prop_map(|(target, patch)| Command::JsonPatch(Patch { target, patch })),
        object_ref().prop_map(Command::Delete),
        object_ref().prop_map(Command::Evict),
        text().prop_map(Command::Cordon),
        text().prop_map(Command::Uncordon),
        (text(), text(), proptest::option::of(text()), effect()).prop_map(
            |(node, key, value, effect)| Command::Taint(NodeTaint {
                node,
                taint: Taint { key, value, effect },
            })
        ),
        (text(), text(), proptest::option::of(effect()))
            .prop_map(|(node, key, effect)| Command::Untaint(NodeUntaint { node, key, effect })),
        (object_ref(), text(), text()).prop_map(|(regarding, reason, message)| {
            Command::RecordEvent(EventCommand {
                regarding,
                event_type: EventType::Warning,
                reason,
                message,
            })
        }),
        (text(), text(), text(), text()).prop_map(|(namespace, pod, plugin, payload)| {
            Command::PodCommand(PodCommand {
                namespace,
                pod,
                plugin,
                payload,
            })
        }),
    ]
}

// The rules, read independently of `bosun_api::name`.

fn alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.starts_with(alnum_lower)
        && s.ends_with(alnum_lower)
        && s.chars().all(|c| alnum_lower(c) || c == '-')
}

fn dns_subdomain(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.starts_with(alnum_lower)
                && p.ends_with(alnum_lower)
                && p.chars().all(|c| alnum_lower(c) || c == '-')
        })
}

/// What the executor may put in a URL path segment.
fn path_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && !s.contains(['/', '%'])
        && !s.chars().any(char::is_control)
}

fn qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let alnum = |c: char| c.is_ascii_alphanumeric();
    prefix.is_none_or(dns_subdomain)
        && (1..=63).contains(&name.len())
        && name.starts_with(alnum)
        && name.ends_with(alnum)
        && name
            .chars()
            .all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
}

fn check_target(r: &ObjectRef) -> Result<(), TestCaseError> {
    let version_ok = match r.api_version.split_once('/') {
        Some((g, v)) => dns_subdomain(g) && dns_label(v),
        None => dns_label(&r.api_version),
    };
    prop_assert!(version_ok, "apiVersion {:?}", r.api_version);
    prop_assert!(
        (1..=63).contains(&r.kind.len())
            && r.kind.starts_with(|c: char| c.is_ascii_alphabetic())
            && r.kind.chars().all(|c| c.is_ascii_alphanumeric()),
        "kind {:?}",
        r.kind
    );
    if let Some(ns) = &r.namespace {
        prop_assert!(dns_label(ns), "namespace {ns:?}");
    }
    prop_assert!(path_segment(&r.name), "name {:?}", r.name);
    match r.kind.as_str() {
        "Namespace" => prop_assert!(dns_label(&r.name), "namespace name {:?}", r.name),
        "Pod" | "Node" | "ConfigMap" | "Deployment" | "StatefulSet" => {
            prop_assert!(dns_subdomain(&r.name), "{} name {:?}", r.kind, r.name);
        }
        _ => {}
    }
    Ok(())
}

/// `PROPTEST_CASES`, or 256.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256)
}

#[test]
fn accepted_commands_name_valid_targets() {
    let accepted = std::cell::Cell::new(0u32);
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        failure_persistence: None,
        ..proptest::test_runner::Config::with_cases(cases())
    });
    let outcome = runner.run(&command(), |cmd| {
        let Ok(action) = cmd.validate() else {
            return Ok(());
        };
        accepted.set(accepted.get() + 1);
        let target = cmd.target();
        prop_assert!(target.is_some(), "{cmd:?} accepted without a target");
        if let Some(t) = &target {
            check_target(t)?;
            prop_assert_eq!(&action.api_version, &t.api_version);
            prop_assert_eq!(&action.kind, &t.kind);
        }
        match &cmd {
            Command::Taint(t) => {
                prop_assert!(qualified_name(&t.taint.key), "taint key {:?}", t.taint.key);
                if let Some(v) = &t.taint.value {
                    prop_assert!(
                        v.is_empty() || qualified_name(v) && !v.contains('/'),
                        "taint value {v:?}"
                    );
                }
            }
            Command::Untaint(u) => prop_assert!(qualified_name(&u.key), "untaint key {:?}", u.key),
            Command::PodCommand(p) => prop_assert!(dns_label(&p.plugin), "plugin {:?}", p.plugin),
            Command::Evict(r) => prop_assert!(r.kind == "Pod" && r.namespace.is_some()),
            _ => {}
        }
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    // The property says nothing unless some generated commands are accepted.
    assert!(
        accepted.get() >= cases() / 50,
        "only {} of {} generated commands were accepted",
        accepted.get(),
        cases()
    );
}
