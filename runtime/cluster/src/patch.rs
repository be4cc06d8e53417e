//! The four patch types: JSON merge patch, JSON patch, strategic merge patch, and
//! server-side apply.
//!
//! Simplifications, against the real server:
//! - strategic merge knows merge keys by field name only (not by the schema of the
//!   enclosing type): `containers`, `initContainers`, `ephemeralContainers`, `volumes`,
//!   `env`, `imagePullSecrets` by `name`; `ports` by `containerPort` (or `port` for
//!   service ports); `conditions` by `type`; `readinessGates` by `conditionType`;
//!   `volumeMounts` by `mountPath`; `volumeDevices` by `devicePath`; `ownerReferences` by
//!   `uid`; `hostAliases` by `ip`; `topologySpreadConstraints` by `topologyKey`;
//!   `finalizers` merge as a set. Every other list (including `tolerations` and `taints`)
//!   is replaced. Directives: `$patch: replace|delete` and `$deleteFromPrimitiveList/…`;
//!   `$setElementOrder/…` and `$retainKeys` are ignored.
//! - server-side apply merges the applied configuration like a strategic merge patch,
//!   records the manager's fields in `managedFields` (FieldsV1), and removes the fields
//!   this manager applied before but no longer applies. Conflicts are detected against
//!   other appliers only: updates and non-apply patches record no managed fields.

use crate::meta;
use crate::status::{ApiError, Result};
use serde_json::{Map, Value, json};

/// A patch content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
}

impl PatchKind {
    /// From a `Content-Type` header.
    pub fn from_content_type(ct: &str) -> Result<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/json-patch+json" => Ok(Self::Json),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(Self::Apply),
            other => Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"
            ))),
        }
    }
}

/// Applies a merge, JSON or strategic patch to `current`.
pub fn patch(kind: PatchKind, current: &Value, body: &[u8]) -> Result<Value> {
    let mut doc = current.clone();
    match kind {
        PatchKind::Merge => {
            let p: Value = parse_json(body)?;
            json_patch::merge(&mut doc, &p);
        }
        PatchKind::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(&mut doc, &p.0).map_err(|e| {
                ApiError::invalid(
                    meta::str_at(current, "kind"),
                    meta::name(current),
                    format!("the JSON patch could not be applied: {e}"),
                )
            })?;
        }
        PatchKind::Strategic => {
            let p: Value = parse_json(body)?;
            if !p.is_object() {
                return Err(ApiError::bad_request(
                    "a strategic merge patch must be a JSON object",
                ));
            }
            strategic_merge(&mut doc, &p);
        }
        PatchKind::Apply => {
            return Err(ApiError::internal("apply goes through server_side_apply"));
        }
    }
    Ok(doc)
}

fn parse_json(body: &[u8]) -> Result<Value> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON in the request body: {e}")))
}

/// Parses an applied configuration (YAML or JSON).
pub fn parse_applied(body: &[u8]) -> Result<Value> {
    let v: Value = serde_yaml::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid YAML in the request body: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "an applied configuration must be an object",
        ));
    }
    Ok(v)
}

/// Server-side apply of `applied` by `manager` onto `current` (None: the object is new).
///
/// A field another applier manages with a different value is a conflict (409) unless
/// `force`, which takes the field over.
pub fn server_side_apply(
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
) -> Result<Value> {
    let new_fields = fieldset("", applied);
    let mut taken: Vec<(String, Vec<String>)> = Vec::new();
    if let Some(cur) = current {
        let mut wanted = Vec::new();
        leaves(&new_fields, &mut Vec::new(), &mut wanted);
        // (manager as kube prints it, field), in the order found.
        let mut conflicts: Vec<(String, String)> = Vec::new();
        for e in managed_entries(cur) {
            let other = meta::str_at(&e, "manager");
            if other == manager {
                continue;
            }
            let Some(fields) = e.get("fieldsV1") else {
                continue;
            };
            for path in &wanted {
                if owns(fields, path) && value_at(cur, path) != value_at(applied, path) {
                    conflicts.push((print_manager(&e), display(path)));
                    taken.push((other.to_string(), path.clone()));
                }
            }
        }
        if !conflicts.is_empty() && !force {
            return Err(apply_conflict(&conflicts));
        }
    }
    let mut entries: Vec<Value> = current
        .map(managed_entries)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            !(meta::str_at(e, "manager") == manager && meta::str_at(e, "operation") == "Apply")
        })
        .collect();
    // Forced: the fields move to this manager.
    for e in &mut entries {
        let other = meta::str_at(e, "manager").to_string();
        for (_, path) in taken.iter().filter(|(m, _)| *m == other) {
            if let Some(fields) = e.get_mut("fieldsV1") {
                remove_path(fields, path);
            }
        }
    }
    let mut out = match current {
        None => applied.clone(),
        Some(cur) => {
            let mut doc = cur.clone();
            let old_fields = managed_entries(cur)
                .into_iter()
                .find(|e| {
                    meta::str_at(e, "manager") == manager && meta::str_at(e, "operation") == "Apply"
                })
                .and_then(|e| e.get("fieldsV1").cloned());
            if let Some(old) = old_fields {
                // What another manager owns stays, even when this one stops applying it.
                let mut others = Value::Object(Map::new());
                for e in &entries {
                    if let Some(f) = e.get("fieldsV1") {
                        union_into(&mut others, f);
                    }
                }
                remove_dropped(&mut doc, &old, &new_fields, &others);
            }
            let mut a = applied.clone();
            if let Some(m) = a.get_mut("metadata").and_then(Value::as_object_mut) {
                // The applier cannot move the object's identity.
                m.remove("resourceVersion");
                m.remove("uid");
            }
            strategic_merge(&mut doc, &a);
            doc
        }
    };
    entries.push(json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": meta::str_at(applied, "apiVersion"),
        "time": meta::now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": new_fields,
    }));
    meta::metadata_mut(&mut out).insert("managedFields".into(), Value::Array(entries));
    Ok(out)
}

/// Whether a FieldsV1 set has `path` as a member: a leaf, or a node marked `.`. Owning
/// `.data.y` is not owning `.data`.
fn owns(set: &Value, path: &[String]) -> bool {
    path.iter()
        .try_fold(set, |f, p| f.get(p))
        .and_then(Value::as_object)
        .is_some_and(|node| node.is_empty() || node.contains_key("."))
}

/// A manager as kube-apiserver's conflict errors print it: `"name"`, with the
/// subresource, and `using API-VERSION` for an Update manager.
fn print_manager(entry: &Value) -> String {
    let mut s = format!("{:?}", meta::str_at(entry, "manager"));
    let sub = meta::str_at(entry, "subresource");
    if !sub.is_empty() {
        s = format!("{s} with subresource {sub:?}");
    }
    if meta::str_at(entry, "operation") == "Update" {
        s = format!("{s} using {}", meta::str_at(entry, "apiVersion"));
    }
    s
}

/// The 409 of an apply that conflicts, worded as kube-apiserver's field manager does,
/// one FieldManagerConflict cause per field.
fn apply_conflict(conflicts: &[(String, String)]) -> ApiError {
    let message = match conflicts {
        [(m, field)] => format!("Apply failed with 1 conflict: conflict with {m}: {field}"),
        _ => {
            let mut managers: Vec<&String> = conflicts.iter().map(|(m, _)| m).collect();
            managers.sort();
            managers.dedup();
            let mut lines = Vec::new();
            for m in managers {
                lines.push(format!("conflicts with {m}:"));
                for (_, field) in conflicts.iter().filter(|(o, _)| o == m) {
                    lines.push(format!("- {field}"));
                }
            }
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                lines.join("\n")
            )
        }
    };
    let causes = conflicts
        .iter()
        .map(|(m, field)| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {m}"),
                "field": field,
            })
        })
        .collect();
    ApiError::conflict_msg(message).with_causes(causes)
}

/// Adds the members of FieldsV1 set `add` to `into`.
fn union_into(into: &mut Value, add: &Value) {
    let (Some(dst), Some(src)) = (into.as_object_mut(), add.as_object()) else {
        return;
    };
    for (k, v) in src {
        union_into(
            dst.entry(k.clone())
                .or_insert_with(|| Value::Object(Map::new())),
            v,
        );
    }
}

/// The leaf paths of a FieldsV1 set.
fn leaves(set: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let Some(m) = set.as_object() else { return };
    if m.is_empty() {
        if !prefix.is_empty() {
            out.push(prefix.clone());
        }
        return;
    }
    for (k, v) in m {
        prefix.push(k.clone());
        leaves(v, prefix, out);
        prefix.pop();
    }
}

/// The value a FieldsV1 path names in an object.
fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |cur, p| {
        if let Some(f) = p.strip_prefix("f:") {
            cur.get(f)
        } else {
            let key: Map<String, Value> = serde_json::from_str(p.strip_prefix("k:")?).ok()?;
            cur.as_array()?
                .iter()
                .find(|e| key.iter().all(|(k, v)| e.get(k) == Some(v)))
        }
    })
}

fn remove_path(set: &mut Value, path: &[String]) {
    let Some((last, init)) = path.split_last() else {
        return;
    };
    let mut cur = set;
    for p in init {
        match cur.get_mut(p) {
            Some(c) => cur = c,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

/// `.spec.containers[name="app"].image`, as conflict messages name fields.
fn display(path: &[String]) -> String {
    path.iter()
        .map(|p| match p.strip_prefix("f:") {
            Some(f) => format!(".{f}"),
            None => format!("[{}]", p.trim_start_matches("k:")),
        })
        .collect()
}

fn managed_entries(obj: &Value) -> Vec<Value> {
    meta::path(obj, "metadata.managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The FieldsV1 set of an applied configuration, without what kube-apiserver strips
/// from every set: apiVersion, kind, metadata.name and metadata.namespace.
fn fieldset(field: &str, v: &Value) -> Value {
    let mut set = fields_of(field, v);
    if field.is_empty()
        && let Some(top) = set.as_object_mut()
        && let Some(Value::Object(md)) = top.get_mut("f:metadata")
    {
        md.remove("f:name");
        md.remove("f:namespace");
        if md.is_empty() {
            top.remove("f:metadata");
        }
    }
    set
}

fn fields_of(field: &str, v: &Value) -> Value {
    let mut out = Map::new();
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if field.is_empty() && matches!(k.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                out.insert(format!("f:{k}"), fields_of(k, child));
            }
        }
        Value::Array(items) => {
            if let Some(mk) = merge_key(field, items, &[]) {
                for item in items {
                    if let Some(kv) = item.get(mk) {
                        out.insert(format!("k:{}", json!({ mk: kv })), fields_of("", item));
                    }
                }
            }
        }
        _ => {}
    }
    Value::Object(out)
}

/// Removes from `doc` what `old` names and `new` does not, but for what `others` (the
/// other managers' sets, merged) own at or under it.
fn remove_dropped(doc: &mut Value, old: &Value, new: &Value, others: &Value) {
    let (Some(old), Some(m)) = (old.as_object(), doc.as_object_mut()) else {
        return;
    };
    let empty = Value::Object(Map::new());
    for (path, sub) in old {
        let Some(field) = path.strip_prefix("f:") else {
            continue;
        };
        // Sets written before name and namespace were stripped may still list them.
        if field == "name" || field == "namespace" {
            continue;
        }
        let other = others.get(path);
        let new_sub = match (new.get(path), other) {
            (None, None) => {
                m.remove(field);
                continue;
            }
            (Some(n), _) => n,
            // Others own something here: only what they do not own goes.
            (None, Some(_)) => &empty,
        };
        if let Some(child) = m.get_mut(field) {
            let other = other.unwrap_or(&empty);
            match child {
                Value::Array(items) => remove_dropped_items(items, sub, new_sub, other),
                child => remove_dropped(child, sub, new_sub, other),
            }
        }
    }
}

fn remove_dropped_items(items: &mut Vec<Value>, old: &Value, new: &Value, others: &Value) {
    let Some(old) = old.as_object() else { return };
    let empty = Value::Object(Map::new());
    for (path, sub) in old {
        let Some(key) = path
            .strip_prefix("k:")
            .and_then(|k| serde_json::from_str::<Map<String, Value>>(k).ok())
        else {
            continue;
        };
        let matches = |e: &Value| key.iter().all(|(k, v)| e.get(k) == Some(v));
        let other = others.get(path);
        match (new.get(path), other) {
            (None, None) => items.retain(|e| !matches(e)),
            (new_sub, other) => {
                let new_sub = new_sub.unwrap_or(&empty);
                let other = other.unwrap_or(&empty);
                for e in items.iter_mut().filter(|e| matches(e)) {
                    remove_dropped(e, sub, new_sub, other);
                }
            }
        }
    }
}

/// The merge key of a list field, if it is merged by key.
fn merge_key(field: &str, patch: &[Value], current: &[Value]) -> Option<&'static str> {
    let has = |k: &str| patch.iter().chain(current).any(|e| e.get(k).is_some());
    let key = match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets" => "name",
        "ports" if has("containerPort") => "containerPort",
        "ports" => "port",
        "conditions" => "type",
        "readinessGates" => "conditionType",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        _ => return None,
    };
    patch.iter().all(Value::is_object).then_some(key)
}

/// Strategic merge of `patch` into `target`.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = strip(patch);
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = strip(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, pv) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(del)) = (t.get_mut(field), pv.as_array()) {
                list.retain(|e| !del.contains(e));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            t.remove(k);
            continue;
        }
        match (t.get_mut(k), pv) {
            (Some(tv @ Value::Object(_)), Value::Object(_)) => strategic_merge(tv, pv),
            (Some(Value::Array(ta)), Value::Array(pa)) if k == "finalizers" => {
                for v in pa {
                    if !ta.contains(v) {
                        ta.push(v.clone());
                    }
                }
            }
            (Some(Value::Array(ta)), Value::Array(pa)) => match merge_key(k, pa, ta) {
                Some(mk) => merge_list(ta, pa, mk),
                None => {
                    t.insert(k.clone(), strip(pv));
                }
            },
            _ => {
                t.insert(k.clone(), strip(pv));
            }
        }
    }
}

fn merge_list(target: &mut Vec<Value>, patch: &[Value], mk: &str) {
    for item in patch {
        let key = item.get(mk);
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            target.retain(|e| e.get(mk) != key);
            continue;
        }
        match target
            .iter_mut()
            .find(|e| key.is_some() && e.get(mk) == key)
        {
            Some(existing) => strategic_merge(existing, item),
            None => target.push(strip(item)),
        }
    }
}

/// A patch value without directives.
fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({"metadata": {"name": "p", "labels": {"a": "1"}}, "spec": {"containers": [
            {"name": "app", "image": "app:v1", "env": [{"name": "A", "value": "1"}]},
            {"name": "side", "image": "side:v1"}
        ], "tolerations": [{"key": "x"}]}})
    }

    #[test]
    fn strategic_merges_containers_by_name() {
        let out = patch(
            PatchKind::Strategic,
            &pod(),
            br#"{"spec":{"containers":[{"name":"app","image":"app:v2","env":[{"name":"B","value":"2"}]}],"tolerations":[{"key":"y"}]}}"#,
        )
        .expect("patches");
        let c = &out["spec"]["containers"];
        assert_eq!(c.as_array().map(Vec::len), Some(2));
        assert_eq!(c[0]["image"], "app:v2");
        assert_eq!(c[0]["env"].as_array().map(Vec::len), Some(2));
        assert_eq!(c[1]["image"], "side:v1");
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "y"}]));
    }

    #[test]
    fn strategic_delete_directive_and_null() {
        let out = patch(
            PatchKind::Strategic,
            &pod(),
            br#"{"metadata":{"labels":{"a":null}},"spec":{"containers":[{"name":"side","$patch":"delete"}]}}"#,
        )
        .expect("patches");
        assert_eq!(out["spec"]["containers"].as_array().map(Vec::len), Some(1));
        assert_eq!(out["metadata"]["labels"], json!({}));
    }

    #[test]
    fn merge_patch_replaces_lists() {
        let out = patch(
            PatchKind::Merge,
            &pod(),
            br#"{"spec":{"containers":[{"name":"x","image":"x"}]}}"#,
        )
        .expect("patches");
        assert_eq!(out["spec"]["containers"].as_array().map(Vec::len), Some(1));
        assert!(patch(PatchKind::Merge, &pod(), b"{nope").is_err());
    }

    #[test]
    fn apply_removes_fields_the_manager_dropped() {
        let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        let created = server_side_apply(None, &first, "me", false).expect("applies");
        let mut live = created.clone();
        live["data"]["other"] = json!("kept");
        let second = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "3"}});
        let out = server_side_apply(Some(&live), &second, "me", false).expect("applies");
        assert_eq!(out["data"], json!({"a": "3", "other": "kept"}));
        assert_eq!(out["metadata"]["managedFields"][0]["manager"], "me");
        assert!(out["metadata"]["managedFields"][0]["fieldsV1"]["f:data"]["f:a"].is_object());

        // Another applier setting a field "me" owns to another value conflicts...
        let theirs = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "4"}});
        let err = server_side_apply(Some(&out), &theirs, "them", false).expect_err("conflict");
        assert_eq!(err.code, 409);
        assert!(err.message.contains(".data.a"), "{}", err.message);
        // ...unless forced, which moves the field to them; the same value is no conflict.
        let forced = server_side_apply(Some(&out), &theirs, "them", true).expect("forced");
        assert_eq!(forced["data"]["a"], "4");
        assert!(
            forced["metadata"]["managedFields"][0]["fieldsV1"]["f:data"]
                .get("f:a")
                .is_none()
        );
        let same = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "3"}});
        assert!(server_side_apply(Some(&out), &same, "other", false).is_ok());
    }

    #[test]
    fn apply_conflicts_are_worded_and_caused_as_kube_apiserver_words_them() {
        let cm = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data});
        let mut live = server_side_apply(None, &cm(json!({"a": "1", "b": "1"})), "alpha", false)
            .expect("applies");
        // An Update manager (kubectl edit) owning .data.c.
        live["data"]["c"] = json!("1");
        live["metadata"]["managedFields"]
            .as_array_mut()
            .expect("entries")
            .push(
                json!({"manager": "kubectl-edit", "operation": "Update", "apiVersion": "v1",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:c": {}}}}),
            );
        let err = server_side_apply(
            Some(&live),
            &cm(json!({"a": "2", "b": "2", "c": "2"})),
            "beta",
            false,
        )
        .expect_err("three conflicts");
        assert_eq!(
            err.message,
            "Apply failed with 3 conflicts: conflicts with \"alpha\":\n- .data.a\n- .data.b\nconflicts with \"kubectl-edit\" using v1:\n- .data.c"
        );
        let causes = &err.to_status()["details"]["causes"];
        assert_eq!(
            causes[2],
            json!({"reason": "FieldManagerConflict", "message": "conflict with \"kubectl-edit\" using v1", "field": ".data.c"})
        );
        // The applier's own set never lists the object's name.
        assert!(
            live["metadata"]["managedFields"][0]["fieldsV1"]
                .get("f:metadata")
                .is_none()
        );
    }
}
