//! What apiextensions-apiserver does with the structural part of a schema (properties,
//! items, additionalProperties; not the value validations under allOf/anyOf/oneOf/not):
//! pruning unknown fields, dropping nulls that are not allowed, defaulting, and the
//! `x-kubernetes-list-type` and `x-kubernetes-embedded-resource` checks.

use super::field::{FieldError, GoValue, Kind};
use super::openapi::MAX_DEPTH;
use serde_json::{Map, Value};
use std::collections::HashMap;

const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

fn props(s: Option<&Value>) -> Option<&Map<String, Value>> {
    s?.get("properties")?.as_object()
}

fn flag(s: Option<&Value>, k: &str) -> bool {
    s.and_then(|s| s.get(k)).and_then(Value::as_bool) == Some(true)
}

/// `additionalProperties`: `None` when absent; `Some(None)` when a bool (no schema).
fn additional(s: Option<&Value>) -> Option<Option<&Value>> {
    match s?.get("additionalProperties")? {
        v @ Value::Object(_) => Some(Some(v)),
        Value::Bool(_) => Some(None),
        _ => None,
    }
}

fn items(s: Option<&Value>) -> Option<&Value> {
    s?.get("items").filter(|i| i.is_object())
}

/// Removes fields the schema does not know (`structuralpruning.PruneWithOptions`); returns
/// their paths, sorted. At the root (and in embedded resources) `apiVersion`, `kind` and
/// `metadata` stay.
pub(crate) fn prune(obj: &mut Value, schema: &Value) -> Vec<String> {
    let mut unknown = Vec::new();
    prune_at(obj, Some(schema), true, &mut String::new(), &mut unknown, 0);
    unknown.sort();
    // Then what the `metadata` of embedded resources does not know, as upstream coerces
    // it after pruning.
    let mut meta = Vec::new();
    embedded_metadata(obj, Some(schema), true, "", &mut meta, 0);
    unknown.extend(meta);
    unknown
}

/// Drops the fields an `ObjectMeta` lacks from the `metadata` of embedded resources.
fn embedded_metadata(
    x: &mut Value,
    s: Option<&Value>,
    root: bool,
    path: &str,
    unknown: &mut Vec<String>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let Some(s) = s else {
        return;
    };
    match x {
        Value::Object(m) => {
            if !root
                && flag(Some(s), "x-kubernetes-embedded-resource")
                && let Some(Value::Object(meta)) = m.get_mut("metadata")
            {
                let dropped: Vec<String> = meta
                    .keys()
                    .filter(|k| !super::OBJECT_META.contains(&k.as_str()))
                    .cloned()
                    .collect();
                for k in dropped {
                    meta.remove(&k);
                    unknown.push(format!("{}.metadata.{k}", path));
                }
            }
            let props = props(Some(s));
            let ap = additional(Some(s)).flatten();
            for (k, v) in m.iter_mut() {
                if let Some(ps) = props.and_then(|p| p.get(k)) {
                    embedded_metadata(v, Some(ps), false, &join(path, k), unknown, depth + 1);
                } else if let Some(ap) = ap {
                    embedded_metadata(v, Some(ap), false, &join(path, k), unknown, depth + 1);
                }
            }
        }
        Value::Array(a) => {
            let is = items(Some(s));
            for (i, v) in a.iter_mut().enumerate() {
                embedded_metadata(v, is, false, &format!("{path}[{i}]"), unknown, depth + 1);
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn prune_at(
    x: &mut Value,
    s: Option<&Value>,
    root: bool,
    path: &mut String,
    unknown: &mut Vec<String>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    if flag(s, "x-kubernetes-preserve-unknown-fields") {
        skip_prune(x, s, root, path, unknown, depth);
        return;
    }
    let embedded = root || flag(s, "x-kubernetes-embedded-resource");
    match x {
        Value::Object(m) => {
            let Some(s) = s else {
                for k in m.keys() {
                    unknown.push(join(path, k));
                }
                m.clear();
                return;
            };
            let props = props(Some(s));
            let additional = additional(Some(s));
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let child = match (props.and_then(|p| p.get(&k)), additional) {
                    (Some(p), _) => Some(Some(p)),
                    (None, Some(ap)) => Some(ap),
                    (None, None) => None,
                };
                match child {
                    Some(cs) => {
                        let len = path.len();
                        *path = join(path, &k);
                        if let Some(v) = m.get_mut(&k) {
                            prune_at(v, cs, false, path, unknown, depth + 1);
                        }
                        path.truncate(len);
                    }
                    None => {
                        if !META_FIELDS.contains(&k.as_str()) || !path.is_empty() {
                            unknown.push(join(path, &k));
                        }
                        m.remove(&k);
                    }
                }
            }
        }
        Value::Array(a) => {
            let is = s.and_then(|s| items(Some(s)));
            for (i, v) in a.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                prune_at(v, is, false, path, unknown, depth + 1);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn skip_prune(
    x: &mut Value,
    s: Option<&Value>,
    root: bool,
    path: &mut String,
    unknown: &mut Vec<String>,
    depth: usize,
) {
    let Some(s) = s else {
        return;
    };
    let embedded = root || flag(Some(s), "x-kubernetes-embedded-resource");
    match x {
        Value::Object(m) => {
            let props = props(Some(s));
            let additional = additional(Some(s));
            for (k, v) in m.iter_mut() {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let child = match (props.and_then(|p| p.get(k)), additional) {
                    (Some(p), _) => Some(Some(p)),
                    (None, Some(ap)) => Some(ap),
                    (None, None) => None,
                };
                if let Some(cs) = child {
                    let len = path.len();
                    *path = join(path, k);
                    prune_at(v, cs, false, path, unknown, depth + 1);
                    path.truncate(len);
                }
            }
        }
        Value::Array(a) => {
            let is = items(Some(s));
            for (i, v) in a.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                skip_prune(v, is, false, path, unknown, depth + 1);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn nullable(s: &Value) -> bool {
    flag(Some(s), "nullable")
}

fn has_default(s: &Value) -> bool {
    s.get("default").is_some_and(|d| !d.is_null())
}

/// Drops nulls where the schema neither allows nor defaults them
/// (`PruneNonNullableNullsWithoutDefaults`).
pub(crate) fn prune_nulls(x: &mut Value, s: Option<&Value>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match x {
        Value::Object(m) => {
            let field_schema = |k: &str| -> Option<&Value> {
                props(s)
                    .and_then(|p| p.get(k))
                    .or_else(|| additional(s).flatten())
            };
            m.retain(|k, v| {
                !(v.is_null()
                    && field_schema(k).is_some_and(|fs| !nullable(fs) && !has_default(fs)))
            });
            for (k, v) in m.iter_mut() {
                prune_nulls(v, field_schema(k), depth + 1);
            }
        }
        Value::Array(a) => {
            let is = items(s);
            for v in a {
                prune_nulls(v, is, depth + 1);
            }
        }
        _ => {}
    }
}

fn non_nullable_null(x: &Value, s: Option<&Value>) -> bool {
    x.is_null() && s.is_some_and(|s| !nullable(s))
}

/// Applies `default`s (`structuraldefaulting.Default`): a missing (or disallowed null)
/// property gets its default; nested defaults apply inside what exists, including what a
/// default just added.
pub(crate) fn default(x: &mut Value, s: Option<&Value>, depth: usize) {
    let Some(s) = s else {
        return;
    };
    if depth > MAX_DEPTH {
        return;
    }
    match x {
        Value::Object(m) => {
            let props = props(Some(s));
            for (k, ps) in props.into_iter().flatten() {
                let Some(d) = ps.get("default").filter(|d| !d.is_null()) else {
                    continue;
                };
                if m.get(k).is_none_or(|v| non_nullable_null(v, Some(ps))) {
                    m.insert(k.clone(), d.clone());
                }
            }
            let ap = additional(Some(s)).flatten();
            for (k, v) in m.iter_mut() {
                if let Some(ps) = props.and_then(|p| p.get(k)) {
                    default(v, Some(ps), depth + 1);
                } else if let Some(ap) = ap {
                    if non_nullable_null(v, Some(ap)) {
                        *v = ap.get("default").cloned().unwrap_or(Value::Null);
                    }
                    default(v, Some(ap), depth + 1);
                }
            }
        }
        Value::Array(a) => {
            let is = items(Some(s));
            for v in a {
                if non_nullable_null(v, is)
                    && let Some(d) = is.and_then(|i| i.get("default"))
                {
                    *v = d.clone();
                }
                default(v, is, depth + 1);
            }
        }
        _ => {}
    }
}

/// A scalar as Go's `map[interface{}]int` keys it (type and value).
fn scalar_key(v: &Value) -> String {
    match v {
        Value::Number(n) if n.as_i64().is_some() => format!("i{n}"),
        Value::Number(n) => format!("f{}", n.as_f64().unwrap_or(0.0)),
        Value::String(s) => format!("s{s}"),
        Value::Bool(b) => format!("b{b}"),
        Value::Null => "n".into(),
        v => format!("c{}", super::field::go_json(v)),
    }
}

/// Indices of repeated elements (each repeated value reported once, at its second place).
fn non_unique(items: &[Value]) -> Vec<usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, x) in items.iter().enumerate() {
        let n = seen.entry(scalar_key(x)).or_insert(0);
        *n += 1;
        if *n == 2 {
            out.push(i);
        }
    }
    out
}

/// `x-kubernetes-list-type: set|map` uniqueness (`ValidateListSetsAndMaps`).
pub(crate) fn list_types(obj: &Value, s: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Value::Object(m) = obj {
        lists_in_object(m, s, None, &mut errs, 0);
    }
    errs
}

fn child(path: Option<&str>, k: &str) -> String {
    match path {
        Some(p) => format!("{p}.{k}"),
        None => k.to_string(),
    }
}

fn key(path: Option<&str>, k: &str) -> String {
    format!("{}[{k}]", path.unwrap_or("<nil>"))
}

fn lists_in_object(
    m: &Map<String, Value>,
    s: &Value,
    path: Option<&str>,
    errs: &mut Vec<FieldError>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    if let Some(Some(ap)) = additional(Some(s)) {
        for (k, v) in m {
            lists_in(v, ap, &key(path, k), errs, depth + 1);
        }
    }
    if let Some(p) = props(Some(s)) {
        for (k, v) in m {
            if let Some(ps) = p.get(k) {
                lists_in(v, ps, &child(path, k), errs, depth + 1);
            }
        }
    }
}

fn lists_in(x: &Value, s: &Value, path: &str, errs: &mut Vec<FieldError>, depth: usize) {
    match x {
        Value::Array(a) => {
            match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => {
                    for i in non_unique(a) {
                        errs.push(FieldError::new(
                            Kind::Duplicate,
                            format!("{path}[{i}]"),
                            GoValue::of(&a[i]),
                            "",
                        ));
                    }
                }
                Some("map") => list_map(a, s, path, errs),
                _ => {}
            }
            if let Some(is) = items(Some(s)) {
                for (i, v) in a.iter().enumerate() {
                    lists_in(v, is, &format!("{path}[{i}]"), errs, depth + 1);
                }
            }
        }
        Value::Object(m) => lists_in_object(m, s, Some(path), errs, depth),
        _ => {}
    }
}

fn list_map(a: &[Value], s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for (i, x) in a.iter().enumerate() {
        if !x.is_null() && !x.is_object() {
            errs.push(FieldError::invalid(
                format!("{path}[{i}]"),
                GoValue::of(x),
                "must be an object for an array of list-type map",
            ));
            return;
        }
    }
    if a.len() <= 1 {
        return;
    }
    let names: Vec<&str> = s
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|k| k.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let keys: Vec<Value> = a
        .iter()
        .map(|x| {
            let mut key = Map::new();
            for n in &names {
                if let Some(v) = x.get(*n) {
                    key.insert((*n).to_string(), v.clone());
                }
            }
            Value::Object(key)
        })
        .collect();
    let compared: Vec<Value> = if names.len() == 1 {
        // One key: compared as a scalar (a missing key is its own value).
        keys.iter()
            .map(|k| {
                k.get(names[0])
                    .cloned()
                    .unwrap_or(Value::String("\u{0}unset".into()))
            })
            .collect()
    } else {
        keys.clone()
    };
    for i in non_unique(&compared) {
        errs.push(FieldError::new(
            Kind::Duplicate,
            format!("{path}[{i}]"),
            GoValue::Json(keys[i].clone()),
            "",
        ));
    }
}

/// `apiVersion`/`kind` of `x-kubernetes-embedded-resource` objects (below the root).
pub(crate) fn embedded(obj: &Value, s: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Value::Object(m) = obj {
        for (k, v) in m {
            if let Some(ps) = props(Some(s)).and_then(|p| p.get(k)) {
                embedded_at(v, ps, &k.clone(), &mut errs, 1);
            } else if let Some(Some(ap)) = additional(Some(s)) {
                embedded_at(v, ap, &key(None, k), &mut errs, 1);
            }
        }
    }
    errs
}

fn embedded_at(x: &Value, s: &Value, path: &str, errs: &mut Vec<FieldError>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match x {
        Value::Object(m) => {
            if flag(Some(s), "x-kubernetes-embedded-resource") {
                check_embedded(m, path, errs);
                check_embedded_names(m, path, errs);
            }
            for (k, v) in m {
                if let Some(ps) = props(Some(s)).and_then(|p| p.get(k)) {
                    embedded_at(v, ps, &format!("{path}.{k}"), errs, depth + 1);
                } else if let Some(Some(ap)) = additional(Some(s)) {
                    embedded_at(v, ap, &format!("{path}[{k}]"), errs, depth + 1);
                }
            }
        }
        Value::Array(a) => {
            if let Some(is) = items(Some(s)) {
                for (i, v) in a.iter().enumerate() {
                    embedded_at(v, is, &format!("{path}[{i}]"), errs, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn check_embedded(m: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
    for k in ["apiVersion", "kind"] {
        if !m.contains_key(k) {
            errs.push(FieldError::required(format!("{path}.{k}")));
        }
    }
    if let Some(v) = m.get("apiVersion") {
        let at = format!("{path}.apiVersion");
        match v.as_str() {
            None => errs.push(FieldError::invalid(at, GoValue::of(v), "must be a string")),
            Some("") => errs.push(FieldError::invalid(
                at,
                GoValue::Str(String::new()),
                "must not be empty",
            )),
            Some(s) if s != "/" && s.matches('/').count() > 1 => errs.push(FieldError::invalid(
                at,
                GoValue::Str(s.into()),
                format!("unexpected GroupVersion string: {s}"),
            )),
            Some(_) => {}
        }
    }
    if let Some(v) = m.get("kind") {
        let at = format!("{path}.kind");
        match v.as_str() {
            None => errs.push(FieldError::invalid(at, GoValue::of(v), "must be a string")),
            Some("") => errs.push(FieldError::invalid(
                at,
                GoValue::Str(String::new()),
                "must not be empty",
            )),
            Some(kind) => {
                let lower = kind.to_lowercase();
                let mut why = Vec::new();
                if lower.len() > 63 {
                    why.push("must be no more than 63 characters".to_string());
                }
                if !is_dns1035(&lower) {
                    why.push("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".to_string());
                }
                if !why.is_empty() {
                    errs.push(FieldError::invalid(
                        at,
                        GoValue::Str(kind.into()),
                        format!(
                            "may have mixed case, but should otherwise match: {}",
                            why.join(",")
                        ),
                    ));
                }
            }
        }
    }
}

/// `metadata.name` and `generateName` of an embedded resource: path segments.
fn check_embedded_names(m: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
    let Some(Value::Object(meta)) = m.get("metadata") else {
        return;
    };
    for (field, prefix) in [("name", false), ("generateName", true)] {
        let Some(name) = meta
            .get(field)
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        else {
            continue;
        };
        let at = format!("{path}.metadata.{field}");
        if !prefix && (name == "." || name == "..") {
            errs.push(FieldError::invalid(
                at,
                GoValue::Str(name.into()),
                format!("may not be '{name}'"),
            ));
            continue;
        }
        for bad in ["/", "%"] {
            if name.contains(bad) {
                errs.push(FieldError::invalid(
                    at.clone(),
                    GoValue::Str(name.into()),
                    format!("may not contain '{bad}'"),
                ));
            }
        }
    }
}

fn is_dns1035(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prunes_unknown_fields_and_reports_them_sorted() {
        let s = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "a": {"type": "string"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "items": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}}
        }}}});
        let mut o = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n"}, "top": 1,
            "spec": {"a": "x", "z": 1, "free": {"q": 1}, "items": [{"k": "a", "bad": 2}]}});
        let unknown = prune(&mut o, &s);
        assert_eq!(unknown, vec!["spec.items[0].bad", "spec.z", "top"]);
        assert_eq!(
            o,
            json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n"},
                "spec": {"a": "x", "free": {"q": 1}, "items": [{"k": "a"}]}})
        );
    }

    #[test]
    fn defaults_apply_inside_what_exists() {
        let s = json!({"type": "object", "properties": {
            "mode": {"type": "string", "default": "a"},
            "nested": {"type": "object", "properties": {
                "inner": {"type": "object", "default": {}, "properties": {"v": {"type": "integer", "default": 7}}}}},
            "absent": {"type": "object", "properties": {"z": {"type": "string", "default": "zz"}}}
        }});
        let mut o = json!({"nested": {}});
        default(&mut o, Some(&s), 0);
        assert_eq!(o, json!({"mode": "a", "nested": {"inner": {"v": 7}}}));
    }

    #[test]
    fn sets_and_maps_are_unique() {
        let s = json!({"type": "object", "properties": {
            "ints": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "integer"}},
            "m": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
                  "items": {"type": "object"}}}});
        let errs: Vec<String> = list_types(
            &json!({"ints": [1, 2, 1, 3, 3], "m": [{"k": "a"}, {"k": "a"}]}),
            &s,
        )
        .iter()
        .map(ToString::to_string)
        .collect();
        assert!(
            errs.contains(&"ints[2]: Duplicate value: 1".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.contains(&"ints[4]: Duplicate value: 3".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.contains(&"m[1]: Duplicate value: {\"k\":\"a\"}".to_string()),
            "{errs:?}"
        );
    }
}
