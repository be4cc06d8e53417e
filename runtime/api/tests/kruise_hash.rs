//! Kruise's SidecarSet hashes, as Go computes them: `tests/kruise-hash/expected.json` is
//! the output of the standalone Go program beside it (its README says how to rerun it)
//! over `tests/kruise-hash/cases.json`.

use bosun_api::sidecarset_hash;

const CASES: &str = include_str!("kruise-hash/cases.json");
const EXPECTED: &str = include_str!("kruise-hash/expected.json");

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    spec: serde_json::Value,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Expected {
    name: String,
    encoded: String,
    hash: String,
    hash_without_image: String,
}

#[test]
fn hashes_match_what_go_computes() {
    let cases: Vec<Case> = serde_json::from_str(CASES).expect("cases.json");
    let expected: Vec<Expected> = serde_json::from_str(EXPECTED).expect("expected.json");
    assert_eq!(cases.len(), expected.len(), "rerun the Go program");
    assert!(cases.len() >= 8, "the cases are all there");
    for (case, want) in cases.iter().zip(&expected) {
        assert_eq!(case.name, want.name, "rerun the Go program");
        let encoded = sidecarset_hash::encode(&case.spec).expect(&case.name);
        assert_eq!(encoded, want.encoded, "{}: encoded bytes", case.name);
        assert_eq!(
            sidecarset_hash::hash(&case.spec).expect(&case.name),
            want.hash,
            "{}: kruise.io/sidecarset-hash",
            case.name
        );
        assert_eq!(
            sidecarset_hash::hash_without_image(&case.spec).expect(&case.name),
            want.hash_without_image,
            "{}: kruise.io/sidecarset-hash-without-image",
            case.name
        );
    }
}

#[test]
fn only_an_image_change_keeps_the_hash_without_image() {
    let cases: Vec<Case> = serde_json::from_str(CASES).expect("cases.json");
    let mut spec = cases[0].spec.clone();
    let before = (
        sidecarset_hash::hash(&spec).expect("hash"),
        sidecarset_hash::hash_without_image(&spec).expect("hash"),
    );
    spec["containers"][0]["image"] = "centos:7".into();
    assert_ne!(sidecarset_hash::hash(&spec).expect("hash"), before.0);
    assert_eq!(
        sidecarset_hash::hash_without_image(&spec).expect("hash"),
        before.1
    );
    spec["containers"][0]["command"] = serde_json::json!(["sleep", "1"]);
    assert_ne!(
        sidecarset_hash::hash_without_image(&spec).expect("hash"),
        before.1
    );
}

#[test]
fn quantities_hash_in_canonical_form() {
    // The Go program keeps quantities as written, so its cases write them canonical;
    // Kruise canonicalises them when it decodes, and so does the Rust side.
    let cases: Vec<Case> = serde_json::from_str(CASES).expect("cases.json");
    let expected: Vec<Expected> = serde_json::from_str(EXPECTED).expect("expected.json");
    let i = cases
        .iter()
        .position(|c| c.name.starts_with("env, ports, resources"))
        .expect("the resources case");
    let mut spec = cases[i].spec.clone();
    let resources = &mut spec["containers"][0]["resources"];
    resources["limits"]["memory"] = "1024Mi".into();
    resources["limits"]["cpu"] = "0.5".into();
    resources["limits"]["ephemeral-storage"] = "2000M".into();
    resources["requests"]["cpu"] = "0.1".into();
    resources["requests"]["memory"] = "131072Ki".into();
    assert_eq!(
        sidecarset_hash::hash(&spec).expect("hash"),
        expected[i].hash
    );
}
