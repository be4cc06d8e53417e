//! Per-kind defaults and validation; custom resources are checked against their schema
//! (see [`crate::schema`]).

use crate::fieldvalidation::{self, Directive, Verb};
use crate::meta;
use crate::resource::ResourceType;
use crate::schema;
use crate::selector::LabelSelector;
use crate::status::{ApiError, Result};
use serde_json::{Value, json};

/// Names: a DNS label for namespaces, a DNS subdomain for everything else.
pub(crate) fn name(rt: &ResourceType, name: &str) -> Result<()> {
    let (ok, rule) = if rt.plural == "namespaces" && rt.group.is_empty() {
        (
            meta::is_dns_label(name),
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
        )
    } else {
        (
            meta::is_dns_subdomain(name),
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        )
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            &rt.kind,
            name,
            format!("metadata.name: Invalid value: \"{name}\": {rule}"),
        ))
    }
}

/// Defaults and checks on create.
pub(crate) fn prepare_create(rt: &ResourceType, obj: &mut Value) -> Result<()> {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => {
            if let Some(m) = obj.as_object_mut() {
                m.insert("status".into(), json!({"phase": "Pending"}));
            }
        }
        ("", "Namespace") => {
            if let Some(m) = obj.as_object_mut() {
                m.insert("status".into(), json!({"phase": "Active"}));
            }
        }
        ("", "Node") => {}
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(obj)?,
        _ if rt.status => {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        _ => {}
    }
    prepare_update(rt, obj, None)
}

/// Defaults and checks on every write of the main resource; `old` is the stored object
/// an update replaces.
pub(crate) fn prepare_update(
    rt: &ResourceType,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<()> {
    let name = meta::name(obj).to_string();
    let invalid = |why: String| ApiError::invalid(&rt.kind, &name, why);
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => {
            let containers = meta::path(obj, "spec.containers").and_then(Value::as_array);
            if containers.is_none_or(|c| c.is_empty()) {
                return Err(invalid("spec.containers: Required value".into()));
            }
            for c in containers.into_iter().flatten() {
                if meta::str_at(c, "name").is_empty() {
                    return Err(invalid("spec.containers[].name: Required value".into()));
                }
                if meta::str_at(c, "image").is_empty() {
                    return Err(invalid("spec.containers[].image: Required value".into()));
                }
            }
            let spec = meta::object_mut(obj, "spec");
            spec.entry("restartPolicy").or_insert(json!("Always"));
            spec.entry("schedulerName")
                .or_insert(json!("default-scheduler"));
            spec.entry("terminationGracePeriodSeconds")
                .or_insert(json!(30));
        }
        ("apps", "Deployment" | "StatefulSet" | "ReplicaSet") => {
            let selector = meta::path(obj, "spec.selector").cloned();
            let Some(selector) = selector.filter(Value::is_object) else {
                return Err(invalid("spec.selector: Required value".into()));
            };
            let sel = LabelSelector::from_object(&selector);
            let labels = meta::path(obj, "spec.template.metadata.labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if sel.is_empty() || !sel.matches_labels(&labels) {
                return Err(invalid(
                    "spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`".into(),
                ));
            }
            workload_numbers(&rt.kind, obj).map_err(|e| e.into_api_error(&rt.kind, &name))?;
            let kind = rt.kind.clone();
            let spec = meta::object_mut(obj, "spec");
            spec.entry("replicas").or_insert(json!(1));
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            match kind.as_str() {
                "StatefulSet" => {
                    spec.entry("podManagementPolicy")
                        .or_insert(json!("OrderedReady"));
                    spec.entry("updateStrategy").or_insert(
                        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                    );
                }
                "Deployment" => {
                    spec.entry("strategy").or_insert(json!({
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
                    }));
                }
                _ => {}
            }
        }
        ("apps", "DaemonSet") => {
            let spec = meta::object_mut(obj, "spec");
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            spec.entry("updateStrategy").or_insert(json!({
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}
            }));
        }
        ("batch", "Job") => {
            let spec = meta::object_mut(obj, "spec");
            spec.entry("completions").or_insert(json!(1));
            spec.entry("parallelism").or_insert(json!(1));
            spec.entry("backoffLimit").or_insert(json!(6));
            spec.entry("completionMode").or_insert(json!("NonIndexed"));
            spec.entry("suspend").or_insert(json!(false));
        }
        ("batch", "CronJob") => cronjob(obj).map_err(invalid)?,
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            let check = schema::check_crd(obj);
            // An update is only warned about what it brings.
            let before = old
                .map(|o| schema::check_crd(o).warnings)
                .unwrap_or_default();
            for w in check.warnings.into_iter().filter(|w| !before.contains(w)) {
                fieldvalidation::warn(w);
            }
            if !check.errors.is_empty() {
                return Err(ApiError::invalid_fields(
                    &rt.group,
                    &rt.kind,
                    &name,
                    &check.errors,
                ));
            }
        }
        ("policy", "PodDisruptionBudget") => {
            let at = |f: &str| format!("spec.{f}");
            for f in ["minAvailable", "maxUnavailable"] {
                int_or_percent_at(obj, &at(f), true)
                    .map_err(|e| e.into_api_error(&rt.kind, &name))?;
            }
            let given = |f: &str| meta::path(obj, &at(f)).is_some_and(|v| !v.is_null());
            if given("minAvailable") && given("maxUnavailable") {
                return Err(invalid(
                    "spec: Invalid value: minAvailable and maxUnavailable cannot be both set"
                        .into(),
                ));
            }
        }
        _ => {}
    }
    custom_resource(rt, obj, old, false)
}

/// A CronJob's schedule (as kube's cron parser reads it), time zone (only UTC is
/// simulated) and concurrency policy; its defaults.
fn cronjob(obj: &mut Value) -> std::result::Result<(), String> {
    let schedule = meta::str_at(obj, "spec.schedule").to_string();
    if schedule.is_empty() {
        return Err("spec.schedule: Required value".into());
    }
    if schedule.contains("TZ") {
        return Err(format!(
            "spec.schedule: Invalid value: \"{schedule}\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
        ));
    }
    if let Err(why) = crate::sim::Schedule::parse(&schedule) {
        return Err(format!(
            "spec.schedule: Invalid value: \"{schedule}\": {why}"
        ));
    }
    if let Some(tz) = meta::path(obj, "spec.timeZone").and_then(Value::as_str)
        && !matches!(tz, "UTC" | "Etc/UTC")
    {
        return Err(format!(
            "spec.timeZone: Invalid value: \"{tz}\": unknown time zone {tz} (the simulation supports only UTC)"
        ));
    }
    let policy = meta::str_at(obj, "spec.concurrencyPolicy").to_string();
    if !matches!(policy.as_str(), "" | "Allow" | "Forbid" | "Replace") {
        return Err(format!(
            "spec.concurrencyPolicy: Unsupported value: \"{policy}\": supported values: \"Allow\", \"Forbid\", \"Replace\""
        ));
    }
    let spec = meta::object_mut(obj, "spec");
    spec.entry("concurrencyPolicy").or_insert(json!("Allow"));
    spec.entry("suspend").or_insert(json!(false));
    spec.entry("successfulJobsHistoryLimit").or_insert(json!(3));
    spec.entry("failedJobsHistoryLimit").or_insert(json!(1));
    Ok(())
}

/// Checks on a write through the status subresource (`obj`: the stored object with the
/// new status): a custom resource's status against its schema.
pub(crate) fn prepare_status(rt: &ResourceType, obj: &mut Value, old: &Value) -> Result<()> {
    custom_resource(rt, obj, Some(old), true)
}

/// A custom resource as apiextensions-apiserver decodes and validates it: unknown fields
/// dropped (and reported as the request's `fieldValidation` asks), defaults applied, then
/// the schema's checks (only the status's through the status subresource). A built-in
/// kind gets the unknown-field part only, against its OpenAPI schema (`openapi::prune`).
fn custom_resource(
    rt: &ResourceType,
    obj: &mut Value,
    old: Option<&Value>,
    status_only: bool,
) -> Result<()> {
    let schema = rt.schema.as_ref().filter(|_| rt.custom);
    // Built-in kinds: unknown fields against their published OpenAPI schema.
    if schema.is_none() && !crate::openapi::has_schema(rt) {
        return Ok(());
    }
    let (directive, verb) = fieldvalidation::current()?;
    let patched = (directive == Directive::Strict && verb == Verb::Patch).then(|| obj.clone());
    let duplicates = fieldvalidation::take_duplicates();
    let mut unknown = match schema {
        Some(schema) => schema::coerce(obj, schema),
        None if status_only => crate::openapi::prune_status(rt, obj),
        None => crate::openapi::prune(rt, obj),
    };
    if status_only {
        // Only the status comes from the request; the rest is the stored object.
        unknown.retain(|u| u == "status" || u.starts_with("status.") || u.starts_with("status["));
    }
    if let Some(first) = unknown.first()
        && verb == Verb::Apply
    {
        // Server-side apply types the applied configuration first, whatever the
        // directive: a field the schema lacks fails the request.
        return Err(ApiError {
            reason: "",
            ..ApiError::internal(format!(
                "failed to create typed patch object ({}/{}; {}, Kind={}): .{first}: field not declared in schema",
                meta::namespace(obj),
                meta::name(obj),
                rt.api_version(),
                rt.kind
            ))
        });
    }
    if !duplicates.is_empty() || !unknown.is_empty() {
        // As Go's strict decoding: repeated fields first, then unknown ones.
        let texts: Vec<String> = duplicates
            .iter()
            .map(|d| format!("duplicate field {}", schema::field::go_quote(d)))
            .chain(
                unknown
                    .iter()
                    .map(|u| format!("unknown field {}", schema::field::go_quote(u))),
            )
            .collect();
        match directive {
            Directive::Ignore => {}
            Directive::Warn => texts.into_iter().for_each(fieldvalidation::warn),
            Directive::Strict => {
                let why = format!("strict decoding error: {}", texts.join(", "));
                return Err(match patched {
                    Some(p) => ApiError::invalid_fields(
                        "",
                        "",
                        "",
                        &[schema::FieldError::invalid(
                            "patch",
                            schema::field::GoValue::Str(schema::field::go_json(&p)),
                            why,
                        )],
                    ),
                    None => ApiError::bad_request(format!(
                        "{kind} in version {version:?} cannot be handled as a {kind}: {why}",
                        kind = rt.kind,
                        version = rt.version,
                    )),
                });
            }
        }
    }
    let Some(schema) = schema else {
        return Ok(());
    };
    schema::default(obj, schema);
    let errors = if status_only {
        schema::validate_status(obj, old, schema)
    } else {
        schema::validate(obj, old, schema)
    };
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_fields(
            &rt.group,
            &rt.kind,
            meta::name(obj),
            &errors,
        ))
    }
}

/// Why a number in a spec (a workload's, a budget's, a Scale's) was refused.
#[derive(Debug)]
pub(crate) enum NumberError {
    /// Not what the Go type decodes (an int32 that is not a number or out of range):
    /// kube-apiserver fails to decode the body, 400.
    Decode(String),
    /// Decoded, but out of the allowed range: 422.
    Invalid(String),
}

impl NumberError {
    /// The Status kube-apiserver answers with, for object `kind`/`name`.
    pub(crate) fn into_api_error(self, kind: &str, name: &str) -> ApiError {
        match self {
            Self::Decode(why) => ApiError::bad_request(why),
            Self::Invalid(why) => ApiError::invalid(kind, name, why),
        }
    }
}

/// An optional `int32` field at `at`, at least `min`: `Ok(None)` when absent or null.
pub(crate) fn int32_at(obj: &Value, at: &str, min: i32) -> Result<Option<i32>, NumberError> {
    let v = match meta::path(obj, at) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let n = v
        .as_i64()
        .and_then(|n| i32::try_from(n).ok())
        .ok_or_else(|| {
            NumberError::Decode(format!(
                "json: cannot unmarshal {v} into Go struct field {at} of type int32"
            ))
        })?;
    if n < min {
        return Err(NumberError::Invalid(format!(
            "{at}: Invalid value: {n}: must be greater than or equal to {min}"
        )));
    }
    Ok(Some(n))
}

/// An optional int-or-percent field (`maxSurge`, `maxUnavailable`): an int32 or `N%`,
/// never negative; with `at_most_100`, a percentage is at most 100%. The value as a
/// number or a percentage, 0 when absent.
fn int_or_percent_at(obj: &Value, at: &str, at_most_100: bool) -> Result<u64, NumberError> {
    let invalid =
        |v: &Value, why: &str| NumberError::Invalid(format!("{at}: Invalid value: {v}: {why}"));
    match meta::path(obj, at) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) => {
            let v = Value::String(s.clone());
            let pct = s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    invalid(
                        &v,
                        "a valid percent string must be a numeric string followed by an ending '%'",
                    )
                })?;
            // Digits only: what does not fit is far over any limit.
            let pct = pct.parse::<u64>().unwrap_or(u64::MAX);
            if at_most_100 && pct > 100 {
                return Err(invalid(&v, "must not be greater than 100%"));
            }
            Ok(pct)
        }
        Some(Value::Number(_)) => {
            let n = int32_at(obj, at, 0)?.unwrap_or(0);
            Ok(u64::try_from(n).unwrap_or(0))
        }
        Some(v) => Err(NumberError::Decode(format!(
            "json: cannot unmarshal {v} into Go struct field {at} of type intstr.IntOrString"
        ))),
    }
}

/// The numbers of a Deployment, StatefulSet or ReplicaSet spec, as kube-apiserver checks
/// them: int32 counts that are not negative, int-or-percent rollout bounds.
fn workload_numbers(kind: &str, obj: &Value) -> Result<(), NumberError> {
    for at in [
        "spec.replicas",
        "spec.minReadySeconds",
        "spec.revisionHistoryLimit",
    ] {
        int32_at(obj, at, 0)?;
    }
    match kind {
        "Deployment" => {
            int32_at(obj, "spec.progressDeadlineSeconds", 0)?;
            let surge = int_or_percent_at(obj, "spec.strategy.rollingUpdate.maxSurge", false)?;
            let unavailable =
                int_or_percent_at(obj, "spec.strategy.rollingUpdate.maxUnavailable", true)?;
            let given = |f: &str| {
                meta::path(obj, &format!("spec.strategy.rollingUpdate.{f}"))
                    .is_some_and(|v| !v.is_null())
            };
            if surge == 0 && unavailable == 0 && given("maxSurge") && given("maxUnavailable") {
                return Err(NumberError::Invalid(
                    "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0".into(),
                ));
            }
        }
        "StatefulSet" => {
            int32_at(obj, "spec.updateStrategy.rollingUpdate.partition", 0)?;
            int_or_percent_at(
                obj,
                "spec.updateStrategy.rollingUpdate.maxUnavailable",
                true,
            )?;
        }
        _ => {}
    }
    Ok(())
}

/// A definition's name is `plural.group`; it is accepted and established at once.
fn crd(obj: &mut Value) -> Result<()> {
    let name = meta::name(obj).to_string();
    let group = meta::str_at(obj, "spec.group").to_string();
    let plural = meta::str_at(obj, "spec.names.plural").to_string();
    let kind = meta::str_at(obj, "spec.names.kind").to_string();
    let invalid = |why: &str| ApiError::invalid("CustomResourceDefinition", &name, why);
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Err(invalid(
            "spec.group, spec.names.plural and spec.names.kind: Required value",
        ));
    }
    if name != format!("{plural}.{group}") {
        return Err(invalid(&format!(
            "metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
        )));
    }
    if meta::path(obj, "spec.versions")
        .and_then(Value::as_array)
        .is_none_or(|v| v.is_empty())
    {
        return Err(invalid("spec.versions: Required value"));
    }
    // The defaults upstream gives a definition.
    let spec = meta::object_mut(obj, "spec");
    spec.entry("conversion")
        .or_insert(json!({"strategy": "None"}));
    if let Some(n) = spec.get_mut("names").and_then(Value::as_object_mut) {
        n.entry("singular").or_insert(json!(kind.to_lowercase()));
        n.entry("listKind").or_insert(json!(format!("{kind}List")));
    }
    let names = meta::path(obj, "spec.names").cloned().unwrap_or(json!({}));
    let now = meta::now();
    if let Some(m) = obj.as_object_mut() {
        m.insert(
            "status".into(),
            json!({
                "acceptedNames": names,
                "storedVersions": [],
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                     "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                     "message": "the initial names have been accepted", "lastTransitionTime": now},
                ]
            }),
        );
    }
    Ok(())
}
