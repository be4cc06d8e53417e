//! Custom resources against their CRD's structural `openAPIV3Schema`, as
//! apiextensions-apiserver treats them: unknown fields pruned (and reported as the
//! request's `fieldValidation` asks), disallowed nulls dropped, defaults applied (on
//! writes and on reads), then validation with kube-openapi's messages, list-type and
//! embedded-resource checks, and ratcheting on updates. Also the checks a CRD's schemas
//! get when the CRD is written (types, patterns, defaults).
//!
//! Not covered: CEL rules (`x-kubernetes-validations`), the labels, annotations and
//! field types of embedded resources' metadata (its unknown fields are dropped and its
//! name checked), the structural rules a CRD's schema must follow beyond the checks
//! above, and conversion between versions (all versions share one stored form).

pub(crate) mod field;
mod formats;
mod openapi;
mod pattern;
mod structural;

pub(crate) use field::FieldError;
use field::{GoValue, Kind};
use openapi::Old;
use serde_json::Value;

/// The top-level `metadata` fields of an `ObjectMeta`; others are unknown fields.
pub(crate) const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Decoding a custom resource: drops unknown fields (the root's `metadata` included) and
/// nulls the schema does not allow. Returns the unknown fields' paths, `metadata` first,
/// as apiextensions reports them.
pub(crate) fn coerce(obj: &mut Value, schema: &Value) -> Vec<String> {
    let mut unknown = Vec::new();
    if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
        let mut dropped: Vec<String> = meta
            .keys()
            .filter(|k| !OBJECT_META.contains(&k.as_str()))
            .cloned()
            .collect();
        dropped.sort();
        for k in &dropped {
            meta.remove(k);
        }
        unknown.extend(dropped.into_iter().map(|k| format!("metadata.{k}")));
    }
    unknown.extend(structural::prune(obj, schema));
    structural::prune_nulls(obj, Some(schema), 0);
    unknown
}

/// Applies the schema's defaults.
pub(crate) fn default(obj: &mut Value, schema: &Value) {
    structural::default(obj, Some(schema), 0);
}

/// A stored object as a read returns it: pruned and defaulted by the current schema.
pub(crate) fn on_read(obj: &mut Value, schema: &Value) {
    structural::prune(obj, schema);
    structural::prune_nulls(obj, Some(schema), 0);
    default(obj, schema);
}

/// Validates a custom resource (`old`: the stored object, on updates).
pub(crate) fn validate(obj: &Value, old: Option<&Value>, schema: &Value) -> Vec<FieldError> {
    let mut errs = openapi::validate(schema, obj, "", Old::of(old)).into_field_errors(None);
    errs.extend(structural::embedded(obj, schema));
    // As upstream: list types are only checked when the old object passed them.
    if old.is_none_or(|o| structural::list_types(o, schema).is_empty()) {
        errs.extend(structural::list_types(obj, schema));
    }
    errs
}

/// Validates the `status` of a custom resource against the status schema (the status
/// subresource checks nothing else).
pub(crate) fn validate_status(obj: &Value, old: Option<&Value>, schema: &Value) -> Vec<FieldError> {
    let (Some(status), Some(status_schema)) = (
        obj.get("status"),
        schema.get("properties").and_then(|p| p.get("status")),
    ) else {
        return Vec::new();
    };
    let old_status = old.and_then(|o| o.get("status"));
    openapi::validate(status_schema, status, "", Old::of(old_status))
        .into_field_errors(Some("status"))
}

/// What writing a CRD gets checked for in its schemas: errors (422) and warnings.
#[derive(Debug, Default)]
pub(crate) struct CrdCheck {
    /// Field errors, under `spec.validation.openAPIV3Schema` (one schema for all
    /// versions) or `spec.versions[i].schema.openAPIV3Schema`.
    pub errors: Vec<FieldError>,
    /// Warnings (`unrecognized format "uint64"`).
    pub warnings: Vec<String>,
}

/// Checks the schemas of a CRD: known types, compiling patterns, `uniqueItems` not set,
/// defaults valid against their schema.
pub(crate) fn check_crd(crd: &Value) -> CrdCheck {
    let mut out = CrdCheck::default();
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let schemas: Vec<Option<&Value>> = versions
        .iter()
        .map(|v| v.pointer("/schema/openAPIV3Schema"))
        .collect();
    // Upstream's internal form keeps one `spec.validation` when all versions agree.
    let shared = schemas.windows(2).all(|w| w[0] == w[1]);
    for (i, s) in schemas.iter().enumerate() {
        let Some(s) = s else { continue };
        let path = if shared {
            if i > 0 {
                break;
            }
            "spec.validation.openAPIV3Schema".to_string()
        } else {
            format!("spec.versions[{i}].schema.openAPIV3Schema")
        };
        check_schema(s, &path, &mut out, 0);
    }
    out.warnings.dedup();
    out
}

fn check_schema(s: &Value, path: &str, out: &mut CrdCheck, depth: usize) {
    if depth > openapi::MAX_DEPTH {
        out.errors.push(FieldError::new(
            Kind::Forbidden,
            path.to_string(),
            GoValue::Omit,
            format!("nested deeper than {} levels", openapi::MAX_DEPTH),
        ));
        return;
    }
    let Some(m) = s.as_object() else {
        return;
    };
    let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
    const TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];
    if !ty.is_empty() && !TYPES.contains(&ty) {
        out.errors.push(FieldError::new(
            Kind::NotSupported,
            format!("{path}.type"),
            GoValue::Str(ty.into()),
            format!(
                "supported values: {}",
                TYPES.map(field::go_quote).join(", ")
            ),
        ));
    }
    if let Some(p) = m.get("pattern").and_then(Value::as_str)
        && let Err(why) = pattern::compile(p)
    {
        out.errors.push(FieldError::invalid(
            format!("{path}.pattern"),
            GoValue::Str(p.into()),
            format!("must be a valid regular expression, but isn't: {why}"),
        ));
    }
    if m.get("uniqueItems").and_then(Value::as_bool) == Some(true) {
        out.errors.push(FieldError::new(
            Kind::Forbidden,
            format!("{path}.uniqueItems"),
            GoValue::Omit,
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    if let Some(f) = m
        .get("format")
        .and_then(Value::as_str)
        .filter(|f| !f.is_empty())
    {
        let single = if m.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
            ""
        } else {
            ty
        };
        let known = match single {
            "" | "string" => formats::is_string_format(f),
            "integer" => matches!(f, "int32" | "int64"),
            "number" => matches!(f, "float" | "double"),
            _ => false,
        };
        if !known {
            out.warnings
                .push(format!("unrecognized format {}", field::go_quote(f)));
        }
    }
    if let Some(d) = m.get("default").filter(|d| !d.is_null()) {
        let mut d = d.clone();
        structural::prune(&mut d, s);
        out.errors.extend(
            openapi::validate(s, &d, "", Old::none())
                .into_field_errors(Some(&format!("{path}.default"))),
        );
    }
    if let Some(Value::Object(props)) = m.get("properties") {
        for (k, v) in props {
            check_schema(v, &format!("{path}.properties[{k}]"), out, depth + 1);
        }
    }
    if let Some(v) = m.get("items").filter(|v| v.is_object()) {
        check_schema(v, &format!("{path}.items"), out, depth + 1);
    }
    if let Some(v) = m.get("additionalProperties").filter(|v| v.is_object()) {
        check_schema(v, &format!("{path}.additionalProperties"), out, depth + 1);
    }
    for k in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = m.get(k) {
            for (i, v) in alts.iter().enumerate() {
                check_schema(v, &format!("{path}.{k}[{i}]"), out, depth + 1);
            }
        }
    }
    if let Some(v) = m.get("not").filter(|v| v.is_object()) {
        check_schema(v, &format!("{path}.not"), out, depth + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd(spec_schema: Value) -> Value {
        json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
            "type": "object", "properties": {"spec": spec_schema}}}}]}})
    }

    #[test]
    fn crd_schemas_are_checked() {
        let c = check_crd(&crd(json!({"type": "object", "properties": {
            "a": {"type": "string", "pattern": "(["},
            "b": {"type": "strin"},
            "c": {"type": "string", "default": 5},
            "d": {"type": "integer", "format": "uint64"}}})));
        let errs: Vec<String> = c.errors.iter().map(ToString::to_string).collect();
        assert!(errs.iter().any(|e| e.starts_with(
            "spec.validation.openAPIV3Schema.properties[spec].properties[a].pattern: Invalid value: \"([\": must be a valid regular expression, but isn't: error parsing regexp: missing closing ]"
        )), "{errs:?}");
        assert!(errs.contains(&"spec.validation.openAPIV3Schema.properties[spec].properties[b].type: Unsupported value: \"strin\": supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\"".to_string()), "{errs:?}");
        assert!(errs.contains(&"spec.validation.openAPIV3Schema.properties[spec].properties[c].default: Invalid value: \"integer\":  in body must be of type string: \"integer\"".to_string()), "{errs:?}");
        assert_eq!(c.warnings, vec!["unrecognized format \"uint64\""]);
    }

    #[test]
    fn hostile_schemas_do_not_panic() {
        let mut s = json!({"type": "string"});
        for _ in 0..400 {
            s = json!({"type": "object", "anyOf": [s.clone()], "properties": {"a": s}});
            if s.to_string().len() > 1 << 20 {
                break;
            }
        }
        let c = check_crd(&crd(s.clone()));
        let _ = c.errors.len();
        let mut o = json!({"spec": {"a": {"a": 1}}});
        let schema = json!({"type": "object", "properties": {"spec": s}});
        coerce(&mut o, &schema);
        let _ = validate(&o, None, &schema);
    }
}
