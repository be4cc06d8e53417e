//! Per-kind defaults and validation, and basic openAPIV3Schema checks for custom resources.

use crate::meta;
use crate::resource::ResourceType;
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
    prepare_update(rt, obj)
}

/// Defaults and checks on every write of the main resource.
pub(crate) fn prepare_update(rt: &ResourceType, obj: &mut Value) -> Result<()> {
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
    if let Some(schema) = &rt.schema {
        let mut errors = Vec::new();
        if let (Some(m), Some(props)) = (
            obj.as_object(),
            schema.get("properties").and_then(Value::as_object),
        ) {
            for (k, v) in m {
                if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(s) = props.get(k) {
                    check_schema(v, s, k, &mut errors);
                }
            }
            for r in required(schema) {
                if !m.contains_key(&r) {
                    errors.push(format!("{r}: Required value"));
                }
            }
        }
        if !errors.is_empty() {
            return Err(invalid(errors.join(", ")));
        }
    }
    Ok(())
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

fn required(schema: &Value) -> Vec<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks types, required fields, enums and numeric bounds; unknown fields are kept
/// (the real server prunes them).
fn check_schema(v: &Value, s: &Value, at: &str, errors: &mut Vec<String>) {
    if v.is_null() && s.get("nullable").and_then(Value::as_bool) == Some(true) {
        return;
    }
    if s.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        if !(v.is_i64() || v.is_u64() || v.is_string()) {
            errors.push(format!(
                "{at}: Invalid value: must be an integer or a string"
            ));
        }
        return;
    }
    let ty = meta::str_at(s, "type");
    let ok = match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    };
    if !ok {
        errors.push(format!(
            "{at}: Invalid value: \"{}\": {at} in body must be of type {ty}",
            json_kind(v)
        ));
        return;
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        errors.push(format!("{at}: Unsupported value: {v}"));
    }
    if let (Some(n), Some(min)) = (v.as_f64(), s.get("minimum").and_then(Value::as_f64))
        && n < min
    {
        errors.push(format!(
            "{at}: Invalid value: {n}: should be greater than or equal to {min}"
        ));
    }
    if let (Some(n), Some(max)) = (v.as_f64(), s.get("maximum").and_then(Value::as_f64))
        && n > max
    {
        errors.push(format!(
            "{at}: Invalid value: {n}: should be less than or equal to {max}"
        ));
    }
    match v {
        Value::Object(m) => {
            let props = s.get("properties").and_then(Value::as_object);
            for (k, child) in m {
                if let Some(cs) = props.and_then(|p| p.get(k)) {
                    check_schema(child, cs, &format!("{at}.{k}"), errors);
                } else if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
                    check_schema(child, ap, &format!("{at}.{k}"), errors);
                }
            }
            for r in required(s) {
                if !m.contains_key(&r) {
                    errors.push(format!("{at}.{r}: Required value"));
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_schema(item, is, &format!("{at}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_types_and_required() {
        let s = json!({"type": "object", "required": ["size"], "properties": {
            "size": {"type": "integer", "minimum": 1},
            "mode": {"type": "string", "enum": ["a", "b"]},
            "tags": {"type": "array", "items": {"type": "string"}}
        }});
        let mut errs = Vec::new();
        check_schema(
            &json!({"size": 2, "mode": "a", "tags": ["x"]}),
            &s,
            "spec",
            &mut errs,
        );
        assert!(errs.is_empty(), "{errs:?}");
        check_schema(
            &json!({"size": "2", "mode": "c", "tags": [1]}),
            &s,
            "spec",
            &mut errs,
        );
        assert_eq!(errs.len(), 3, "{errs:?}");
        errs.clear();
        check_schema(&json!({"size": 0}), &s, "spec", &mut errs);
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs.clear();
        check_schema(&json!({}), &s, "spec", &mut errs);
        assert_eq!(errs, vec!["spec.size: Required value".to_string()]);
    }
}
