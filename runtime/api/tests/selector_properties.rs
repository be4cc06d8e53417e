//! Properties of the label-selector parser, on generated input.
//!
//! Each property runs `PROPTEST_CASES` cases (256 by default); run more with
//! `PROPTEST_CASES=100000 cargo test -p bosun-api --test selector_properties`. A failure
//! prints the smallest input found and records its seed under `proptest-regressions/`.

use bosun_api::Selector;
use bosun_api::selector::Requirement;
use proptest::prelude::*;

/// A label key: an optional DNS-subdomain prefix, then a name.
fn key() -> impl Strategy<Value = String> {
    (
        proptest::option::of("[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z0-9]{1,5}){0,2}"),
        "[A-Za-z0-9]([A-Za-z0-9_.-]{0,20}[A-Za-z0-9])?",
    )
        .prop_map(|(prefix, name)| match prefix {
            Some(p) => format!("{p}/{name}"),
            None => name,
        })
}

/// A label value, possibly empty.
fn value() -> impl Strategy<Value = String> {
    "([A-Za-z0-9]([A-Za-z0-9_.-]{0,20}[A-Za-z0-9])?)?"
}

/// Spaces the parser must tolerate around tokens.
fn pad() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(""), Just(" "), Just("  ")]
}

/// One requirement in selector syntax, valid by construction.
fn requirement() -> impl Strategy<Value = String> {
    let set = prop_oneof![
        // A set is never empty; a single empty value would print as `()`, which
        // Kubernetes refuses.
        "[A-Za-z0-9]{1,8}".prop_map(|v| vec![v]),
        proptest::collection::vec(value(), 2..4),
    ];
    (key(), value(), set, 0..6u8, pad(), pad()).prop_map(|(k, v, vs, op, a, b)| match op {
        0 => format!("{a}{k}{b}={a}{v}{b}"),
        1 => format!("{a}{k}{b}=={a}{v}{b}"),
        2 => format!("{a}{k}{b}!={a}{v}{b}"),
        3 => format!("{a}{k} in{b}({a}{}{b}){a}", vs.join(&format!("{b},{a}"))),
        4 => format!("{a}{k} notin {b}({}){b}", vs.join(",")),
        _ if v.is_empty() => format!("{a}!{b}{k}"),
        _ => format!("{a}{k}{b}"),
    })
}

/// Text near selector syntax, to reach deep into the parser.
fn selectorish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            "[a-z0-9]{1,4}",
            Just("=".to_string()),
            Just("==".to_string()),
            Just("!=".to_string()),
            Just("!".to_string()),
            Just(",".to_string()),
            Just("(".to_string()),
            Just(")".to_string()),
            Just(" in ".to_string()),
            Just(" notin ".to_string()),
            Just("/".to_string()),
            Just(".".to_string()),
            Just(" ".to_string()),
            "\\PC",
        ],
        0..16,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn valid_selectors_parse_and_read_back_from_their_display(
        parts in proptest::collection::vec(requirement(), 0..5)
    ) {
        let input = parts.join(",");
        let parsed = Selector::parse(&input)
            .map_err(|e| TestCaseError::fail(format!("{input:?} does not parse: {e}")))?;
        prop_assert_eq!(parsed.requirements().len(), parts.len());
        let shown = parsed.to_string();
        prop_assert_eq!(Selector::parse(&shown), Ok(parsed.clone()), "{:?} shown as {:?}", input, shown);
        // The displayed form is canonical: showing it again changes nothing.
        prop_assert_eq!(Selector::parse(&shown).map(|s| s.to_string()), Ok(shown));
    }

    #[test]
    fn arbitrary_text_never_panics_and_what_parses_reads_back(
        input in prop_oneof![any::<String>(), selectorish()]
    ) {
        if let Ok(parsed) = Selector::parse(&input) {
            let shown = parsed.to_string();
            prop_assert_eq!(Selector::parse(&shown), Ok(parsed), "{:?} shown as {:?}", input, shown);
        }
    }

    #[test]
    fn label_selector_objects_never_panic(
        labels in proptest::collection::btree_map(selectorish(), selectorish(), 0..4),
        exprs in proptest::collection::vec(
            (selectorish(), prop_oneof![
                Just("In"), Just("NotIn"), Just("Exists"), Just("DoesNotExist"), Just("Gt")
            ], proptest::option::of(proptest::collection::vec(selectorish(), 0..3))),
            0..3,
        )
    ) {
        let object = serde_json::json!({
            "matchLabels": labels,
            "matchExpressions": exprs.iter().map(|(k, op, vs)| {
                serde_json::json!({"key": k, "operator": op, "values": vs})
            }).collect::<Vec<_>>(),
        });
        if let Ok(sel) = Selector::from_label_selector(&object) {
            // An accepted object has the requirements its shape promises.
            prop_assert_eq!(sel.requirements().len(), labels.len() + exprs.len());
            for r in sel.requirements() {
                if let Requirement::In(_, vs) | Requirement::NotIn(_, vs) = r {
                    prop_assert!(!vs.is_empty());
                }
            }
        }
    }
}
