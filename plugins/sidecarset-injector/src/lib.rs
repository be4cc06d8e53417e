//! `sidecarset-injector`: OpenKruise's SidecarSet injection as a Bosun admission plugin.
//!
//! - **SidecarSet CREATE/UPDATE** (`bosun.dev/v1alpha1`): the SidecarSet gets the
//!   annotations `kruise.io/sidecarset-hash` and `kruise.io/sidecarset-hash-without-image`,
//!   Kruise's hashes of its containers ([`bosun_api::sidecarset_hash`]), as Kruise's
//!   SidecarSet webhook writes them.
//! - **Pod CREATE**: the SidecarSets that match the pod ([`select`]) are injected as
//!   Kruise's pod webhook does ([`inject`]), and the changes are answered as one JSON
//!   patch ([`patch`]). Two SidecarSets that would inject the same container name deny the
//!   pod, naming both.
//!
//! SidecarSets and Namespaces are read from the runtime's cache: no API call per review.

mod inject;
mod patch;
mod select;

use bosun_api::{keys, sidecarset_hash};
use bosun_sdk::admission::{Admission, allow, deny};
use bosun_sdk::{Context, Error, Metadata, Verb};
use serde_json::Value;

/// The SidecarSet's API version.
const API_VERSION: &str = "bosun.dev/v1alpha1";

struct Injector;

impl Admission for Injector {
    fn metadata() -> Metadata {
        Metadata::new("sidecarset-injector", env!("CARGO_PKG_VERSION"))
            .description(
                "injects SidecarSets (bosun.dev/v1alpha1, Kruise-compatible) into pods at creation",
            )
            .subscribe("v1", "Pod")
            .subscribe(API_VERSION, "SidecarSet")
            .permit(API_VERSION, "SidecarSet", &[Verb::Read])
            .permit("v1", "Namespace", &[Verb::Read])
    }

    fn init(_config: &str) -> Result<Self, Error> {
        Ok(Injector)
    }

    fn review(&self, ctx: &mut Context, review: Value) -> Result<Value, Error> {
        let request = &review["request"];
        if request["subResource"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
        {
            return Ok(allow(&review));
        }
        let operation = request["operation"].as_str().unwrap_or("");
        let kind = (
            request["kind"]["group"].as_str().unwrap_or(""),
            request["kind"]["kind"].as_str().unwrap_or(""),
        );
        match (kind, operation) {
            (("bosun.dev", "SidecarSet"), "CREATE" | "UPDATE") => Ok(stamp_hashes(&review)),
            (("", "Pod"), "CREATE") => review_pod(ctx, &review),
            _ => Ok(allow(&review)),
        }
    }
}

/// Kruise's SidecarSet webhook (`SetHashSidecarSet`): the SidecarSet carries the hashes
/// of its containers, with and without images.
fn stamp_hashes(review: &Value) -> Value {
    let object = &review["request"]["object"];
    let spec = &object["spec"];
    let hashes = sidecarset_hash::hash(spec)
        .and_then(|h| Ok((h, sidecarset_hash::hash_without_image(spec)?)));
    let (hash, without_image) = match hashes {
        Ok(h) => h,
        Err(e) => {
            return deny(
                review,
                &format!(
                    "SidecarSet {}: {e}",
                    object["metadata"]["name"].as_str().unwrap_or("")
                ),
            );
        }
    };
    let current = object.pointer("/metadata/annotations");
    let mut ops = patch::Ops::default();
    ops.annotations(
        current,
        &[
            (keys::SIDECARSET_HASH_ANNOTATION, hash),
            (
                keys::SIDECARSET_HASH_WITHOUT_IMAGE_ANNOTATION,
                without_image,
            ),
        ],
    );
    ops.answer(review)
}

fn review_pod(ctx: &mut Context, review: &Value) -> Result<Value, Error> {
    let request = &review["request"];
    let pod = &request["object"];
    if !select::is_active(pod) {
        return Ok(allow(review));
    }
    let namespace = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .or_else(|| request["namespace"].as_str().filter(|n| !n.is_empty()))
        .unwrap_or("default");
    let mut sidecarsets = ctx.list(API_VERSION, "SidecarSet", None, None)?;
    // Kruise takes them in its cache's order; by name, the result does not depend on it.
    sidecarsets.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    let mut matched = Vec::new();
    for set in &sidecarsets {
        match select::matches(ctx, set, pod, namespace) {
            Ok(true) => matched.push(set),
            Ok(false) => {}
            Err(e) => ctx.warn(format!("SidecarSet {} skipped: {e}", name_of(set))),
        }
    }
    if matched.is_empty() {
        return Ok(allow(review));
    }
    let injection = match inject::inject(pod, &matched, &ctx.now_rfc3339()) {
        Ok(Some(injection)) => injection,
        Ok(None) => return Ok(allow(review)),
        Err(inject::Error::Conflict(message)) => return Ok(deny(review, &message)),
        Err(inject::Error::Annotation(message)) => return Err(Error::msg(message)),
    };
    let mut ops = patch::Ops::default();
    ops.set_list(pod, "/spec/initContainers", injection.init_containers);
    ops.set_list(pod, "/spec/containers", injection.containers);
    ops.set_list(pod, "/spec/volumes", injection.volumes);
    ops.set_list(pod, "/spec/imagePullSecrets", injection.image_pull_secrets);
    let annotations: Vec<(&str, String)> = injection
        .annotations
        .iter()
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    ops.annotations(pod.pointer("/metadata/annotations"), &annotations);
    Ok(ops.answer(review))
}

fn name_of(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

bosun_sdk::export_admission!(Injector);
