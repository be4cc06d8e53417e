//! The OpenAPI documents kube-apiserver publishes, which `kubectl explain`, kubectl's
//! field-validation probe and clients' code generators read.
//!
//! - `GET /openapi/v3`: the index, `{"paths": {"api/v1": {"serverRelativeURL":
//!   "/openapi/v3/api/v1?hash=HEX"}, ...}}`, one entry per served group-version.
//! - `GET /openapi/v3/api/v1`, `/openapi/v3/apis/{group}/{version}`: an OpenAPI 3.0
//!   document whose `components.schemas` hold the group-version's kinds (with
//!   `x-kubernetes-group-version-kind`) and every schema they refer to, and whose `paths`
//!   hold each kind's PATCH operation with its `fieldValidation` parameter (what kubectl
//!   checks before it leaves `--validate` to the server).
//! - `GET /openapi/v2`: the same schemas for every served kind as one Swagger 2.0
//!   document (`definitions`, `#/definitions/...`).
//!
//! Built-in kinds' schemas come from k8s-openapi's schemars implementations (names,
//! descriptions and `$ref`s as kube-apiserver's); a custom resource's are its CRD's
//! `openAPIV3Schema` for that version, named `com.example.v1.Widget` for group
//! `example.com`, with `apiVersion`, `kind` and `metadata` described as apiextensions does.
//!
//! The hash is the SHA-512 of the JSON document; a request with a stale `hash` is
//! redirected to the current one, a matching one is cacheable for good. Only JSON is
//! answered: a client that accepts only the protobuf forms gets 406.

use crate::resource::{Registry, ResourceType};
use crate::status::{ApiError, Result};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Status};
use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use k8s_openapi::schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

const TITLE: &str = "Kubernetes";
const VERSION: &str = "v1.33.0+bosun";
const REF_V3: &str = "#/components/schemas/";
const REF_V2: &str = "#/definitions/";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

const API_VERSION_DOC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DOC: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const METADATA_DOC: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema_of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// The built-in kinds with a schema, `(group, version, kind)`. Kinds the registry does not
/// serve are left out of the documents.
const KINDS: &[(&str, &str, &str, SchemaFn)] = &[
    ("", "v1", "ConfigMap", schema_of::<api::core::v1::ConfigMap>),
    ("", "v1", "Endpoints", schema_of::<api::core::v1::Endpoints>),
    ("", "v1", "Event", schema_of::<api::core::v1::Event>),
    (
        "",
        "v1",
        "LimitRange",
        schema_of::<api::core::v1::LimitRange>,
    ),
    ("", "v1", "Namespace", schema_of::<api::core::v1::Namespace>),
    ("", "v1", "Node", schema_of::<api::core::v1::Node>),
    (
        "",
        "v1",
        "PersistentVolume",
        schema_of::<api::core::v1::PersistentVolume>,
    ),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        schema_of::<api::core::v1::PersistentVolumeClaim>,
    ),
    ("", "v1", "Pod", schema_of::<api::core::v1::Pod>),
    (
        "",
        "v1",
        "ReplicationController",
        schema_of::<api::core::v1::ReplicationController>,
    ),
    (
        "",
        "v1",
        "ResourceQuota",
        schema_of::<api::core::v1::ResourceQuota>,
    ),
    ("", "v1", "Secret", schema_of::<api::core::v1::Secret>),
    ("", "v1", "Service", schema_of::<api::core::v1::Service>),
    (
        "",
        "v1",
        "ServiceAccount",
        schema_of::<api::core::v1::ServiceAccount>,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        schema_of::<api::admissionregistration::v1::MutatingWebhookConfiguration>,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        schema_of::<api::admissionregistration::v1::ValidatingWebhookConfiguration>,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        schema_of::<apiextensions::CustomResourceDefinition>,
    ),
    (
        "apps",
        "v1",
        "ControllerRevision",
        schema_of::<api::apps::v1::ControllerRevision>,
    ),
    (
        "apps",
        "v1",
        "DaemonSet",
        schema_of::<api::apps::v1::DaemonSet>,
    ),
    (
        "apps",
        "v1",
        "Deployment",
        schema_of::<api::apps::v1::Deployment>,
    ),
    (
        "apps",
        "v1",
        "ReplicaSet",
        schema_of::<api::apps::v1::ReplicaSet>,
    ),
    (
        "apps",
        "v1",
        "StatefulSet",
        schema_of::<api::apps::v1::StatefulSet>,
    ),
    (
        "batch",
        "v1",
        "CronJob",
        schema_of::<api::batch::v1::CronJob>,
    ),
    ("batch", "v1", "Job", schema_of::<api::batch::v1::Job>),
    (
        "coordination.k8s.io",
        "v1",
        "Lease",
        schema_of::<api::coordination::v1::Lease>,
    ),
    (
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        schema_of::<api::discovery::v1::EndpointSlice>,
    ),
    (
        "events.k8s.io",
        "v1",
        "Event",
        schema_of::<api::events::v1::Event>,
    ),
    (
        "networking.k8s.io",
        "v1",
        "Ingress",
        schema_of::<api::networking::v1::Ingress>,
    ),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        schema_of::<api::networking::v1::NetworkPolicy>,
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        schema_of::<api::policy::v1::PodDisruptionBudget>,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        schema_of::<api::rbac::v1::ClusterRole>,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        schema_of::<api::rbac::v1::ClusterRoleBinding>,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        schema_of::<api::rbac::v1::Role>,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        schema_of::<api::rbac::v1::RoleBinding>,
    ),
    (
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        schema_of::<api::scheduling::v1::PriorityClass>,
    ),
    (
        "storage.k8s.io",
        "v1",
        "StorageClass",
        schema_of::<api::storage::v1::StorageClass>,
    ),
];

/// The built-in schemas, generated once.
struct Builtins {
    /// Every schema by name, in OpenAPI v3 form.
    schemas: Map<String, Value>,
    /// `(group, version, kind)` to the kind's schema name.
    kinds: BTreeMap<(&'static str, &'static str, &'static str), String>,
}

fn builtins() -> &'static Builtins {
    static BUILTINS: OnceLock<Builtins> = OnceLock::new();
    BUILTINS.get_or_init(|| {
        let mut g = SchemaSettings::openapi3().into_generator();
        let mut kinds = BTreeMap::new();
        for &(group, version, kind, f) in KINDS {
            if let Some(name) = ref_name(f(&mut g).as_value(), REF_V3) {
                kinds.insert((group, version, kind), name.to_string());
            }
        }
        // Custom resources refer to these.
        g.subschema_for::<ObjectMeta>();
        g.subschema_for::<Status>();
        let mut schemas = g.take_definitions(true);
        for ((group, version, kind), name) in &kinds {
            if let Some(Value::Object(s)) = schemas.get_mut(name) {
                s.insert(
                    "x-kubernetes-group-version-kind".into(),
                    gvk(group, version, kind),
                );
            }
        }
        Builtins { schemas, kinds }
    })
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!([{"group": group, "kind": kind, "version": version}])
}

fn ref_name<'a>(v: &'a Value, prefix: &str) -> Option<&'a str> {
    v.get("$ref")?.as_str()?.strip_prefix(prefix)
}

/// The schema name of a custom resource: `com.example.v1.Widget` for `example.com/v1`.
fn custom_name(rt: &ResourceType) -> String {
    let group: Vec<&str> = rt.group.split('.').rev().collect();
    format!("{}.{}.{}", group.join("."), rt.version, rt.kind)
}

/// A custom resource's schema as apiextensions-apiserver publishes it.
fn custom_schema(rt: &ResourceType) -> Value {
    let mut s = rt
        .schema
        .clone()
        .unwrap_or_else(|| json!({"type": "object"}));
    if let Value::Object(m) = &mut s {
        if !matches!(m.get("properties"), Some(Value::Object(_))) {
            m.insert("properties".into(), json!({}));
        }
        if let Some(Value::Object(props)) = m.get_mut("properties") {
            props.insert(
                "apiVersion".into(),
                json!({"description": API_VERSION_DOC, "type": "string"}),
            );
            props.insert(
                "kind".into(),
                json!({"description": KIND_DOC, "type": "string"}),
            );
            props.insert(
                "metadata".into(),
                json!({"description": METADATA_DOC, "allOf": [{"$ref": format!("{REF_V3}{OBJECT_META}")}]}),
            );
        }
        m.insert(
            "x-kubernetes-group-version-kind".into(),
            gvk(&rt.group, &rt.version, &rt.kind),
        );
    }
    s
}

/// The schemas of `types` and every built-in schema they refer to.
fn schemas_for<'a>(types: impl Iterator<Item = &'a ResourceType>) -> Map<String, Value> {
    let b = builtins();
    let mut out = Map::new();
    let mut todo = Vec::new();
    for rt in types {
        if rt.custom {
            out.insert(custom_name(rt), custom_schema(rt));
            todo.push(OBJECT_META.to_string());
        } else if let Some(name) =
            b.kinds
                .get(&(rt.group.as_str(), rt.version.as_str(), rt.kind.as_str()))
        {
            todo.push(name.clone());
        }
    }
    let mut seen = BTreeSet::new();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(s) = b.schemas.get(&name) {
            collect_refs(s, &mut todo);
            out.insert(name, s.clone());
        }
    }
    out
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(name) = ref_name(v, REF_V3) {
                out.push(name.to_string());
            }
            m.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Each kind's PATCH operation with the `fieldValidation` parameter: what kubectl's
/// `--validate` probe looks for before it leaves validation to the server.
fn patch_paths<'a>(types: impl Iterator<Item = &'a ResourceType>, v2: bool) -> Map<String, Value> {
    let param = |name: &str| {
        if v2 {
            json!({"name": name, "in": "query", "type": "string", "uniqueItems": true})
        } else {
            json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
        }
    };
    let mut paths = Map::new();
    for t in types {
        let base = gv_path(&t.group, &t.version);
        let item = if t.namespaced {
            format!("/{base}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("/{base}/{}/{{name}}", t.plural)
        };
        paths.insert(
            item,
            json!({"patch": {
                "operationId": format!("patch{}", t.kind),
                "x-kubernetes-group-version-kind": {"group": t.group, "version": t.version, "kind": t.kind},
                "parameters": [param("fieldValidation"), param("fieldManager")],
                "responses": {"200": {"description": "OK"}},
            }}),
        );
    }
    paths
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`; `None` when nothing is
/// served there.
pub(crate) fn v3_group_version(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let types: Vec<&ResourceType> = reg
        .all()
        .filter(|t| t.group == group && t.version == version)
        .map(|t| &**t)
        .collect();
    if types.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": TITLE, "version": VERSION},
        "paths": patch_paths(types.iter().copied(), false),
        "components": {"schemas": schemas_for(types.iter().copied())},
    }))
}

/// `/openapi/v3`: every served group-version, with its document's hash.
pub(crate) fn v3_index(reg: &Registry) -> Value {
    let gvs: BTreeSet<(String, String)> = reg
        .all()
        .map(|t| (t.group.clone(), t.version.clone()))
        .collect();
    let mut paths = Map::new();
    for (g, v) in gvs {
        let Some(doc) = v3_group_version(reg, &g, &v) else {
            continue;
        };
        let p = gv_path(&g, &v);
        let url = format!("/openapi/v3/{p}?hash={}", hash(&doc.to_string()));
        paths.insert(p, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// `/openapi/v2`: every served kind in one Swagger 2.0 document.
pub(crate) fn v2(reg: &Registry) -> Value {
    let types: Vec<&ResourceType> = reg.all().map(|t| &**t).collect();
    let definitions: Map<String, Value> = schemas_for(types.iter().copied())
        .into_iter()
        .map(|(k, mut v)| {
            to_v2(&mut v);
            (k, v)
        })
        .collect();
    json!({
        "swagger": "2.0",
        "info": {"title": TITLE, "version": VERSION},
        "paths": patch_paths(types.iter().copied(), true),
        "definitions": definitions,
    })
}

/// A v3 schema in Swagger 2.0 form: `#/definitions/` references, a reference with
/// siblings written beside them rather than in `allOf`, no `nullable`.
fn to_v2(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("nullable");
            let single_ref = match m.get("allOf") {
                Some(Value::Array(a)) if a.len() == 1 && a[0].get("$ref").is_some() => {
                    a[0].get("$ref").cloned()
                }
                _ => None,
            };
            if let Some(r) = single_ref {
                m.remove("allOf");
                m.insert("$ref".into(), r);
            }
            if let Some(Value::String(r)) = m.get_mut("$ref")
                && let Some(name) = r.strip_prefix(REF_V3)
            {
                *r = format!("{REF_V2}{name}");
            }
            m.values_mut().for_each(to_v2);
        }
        Value::Array(a) => a.iter_mut().for_each(to_v2),
        _ => {}
    }
}

/// Whether [`prune`] knows the schema of built-in kind `rt`.
pub(crate) fn has_schema(rt: &ResourceType) -> bool {
    builtin_name(rt).is_some()
}

fn builtin_name(rt: &ResourceType) -> Option<&'static str> {
    if rt.custom {
        return None;
    }
    builtins()
        .kinds
        .iter()
        .find(|((g, v, k), _)| *g == rt.group && *v == rt.version && *k == rt.kind)
        .map(|(_, name)| name.as_str())
}

/// Decoding a built-in kind: drops the fields its schema does not declare, as decoding
/// into the Go types does, and returns their paths (`spec.template.spec.containers[0].x`)
/// for `fieldValidation`.
pub(crate) fn prune(rt: &ResourceType, obj: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    if let Some(name) = builtin_name(rt) {
        let schema = json!({"$ref": format!("{REF_V3}{name}")});
        prune_at(obj, &schema, "", &mut unknown, 0);
    }
    unknown
}

/// A write through the status subresource of a built-in kind: only `status` comes from
/// the request (the rest is the stored object, already decoded), so only it is walked —
/// the simulation's kubelets and controllers write status all the time.
pub(crate) fn prune_status(rt: &ResourceType, obj: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    let Some(name) = builtin_name(rt) else {
        return unknown;
    };
    let kind = json!({"$ref": format!("{REF_V3}{name}")});
    let schema = resolve(&kind)
        .and_then(|s| s.get("properties"))
        .and_then(|p| p.get("status"));
    if let (Some(schema), Some(status)) = (schema, obj.get_mut("status")) {
        prune_at(status, schema, "status", &mut unknown, 1);
    }
    unknown
}

/// Nesting beyond this is not walked (the body limit bounds it anyway).
const MAX_DEPTH: usize = 64;

fn resolve(schema: &Value) -> Option<&'static Value> {
    let name = ref_name(schema, REF_V3).or_else(|| match schema.get("allOf") {
        Some(Value::Array(a)) if a.len() == 1 => ref_name(&a[0], REF_V3),
        _ => None,
    })?;
    builtins().schemas.get(name)
}

fn prune_at(v: &mut Value, schema: &Value, path: &str, unknown: &mut Vec<String>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let schema = resolve(schema).unwrap_or(schema);
    let child = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(props)) = schema.get("properties") {
                let extra: Vec<String> = m
                    .keys()
                    .filter(|k| !props.contains_key(k.as_str()))
                    .cloned()
                    .collect();
                for k in extra {
                    m.remove(&k);
                    unknown.push(child(&k));
                }
                for (k, v) in m.iter_mut() {
                    if let Some(s) = props.get(k) {
                        prune_at(v, s, &child(k), unknown, depth + 1);
                    }
                }
            } else if let Some(s @ Value::Object(_)) = schema.get("additionalProperties") {
                for (k, v) in m.iter_mut() {
                    prune_at(v, s, &child(k), unknown, depth + 1);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for (i, v) in a.iter_mut().enumerate() {
                    prune_at(v, items, &format!("{path}[{i}]"), unknown, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// SHA-512 of a document, upper-case hex, as kube-apiserver's ETags and `hash` parameters.
fn hash(body: &str) -> String {
    hex::encode_upper(sha2::Sha512::digest(body.as_bytes()))
}

/// Answers `GET /openapi/...`.
pub(crate) fn serve(reg: &Registry, parts: &Parts) -> Result<Response> {
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return Err(ApiError::method_not_allowed(format!(
            "{} is not supported on {}",
            parts.method,
            parts.uri.path()
        )));
    }
    let not_found = || ApiError::not_found_msg("the server could not find the requested resource");
    let segs: Vec<&str> = parts.uri.path().trim_matches('/').split('/').collect();
    let (doc, versioned) = match segs.as_slice() {
        ["openapi", "v3"] => (v3_index(reg), false),
        ["openapi", "v3", "api", v] => (v3_group_version(reg, "", v).ok_or_else(not_found)?, true),
        ["openapi", "v3", "apis", g, v] => {
            (v3_group_version(reg, g, v).ok_or_else(not_found)?, true)
        }
        ["openapi", "v2"] => (v2(reg), false),
        _ => return Err(not_found()),
    };
    if !accepts_json(&parts.headers) {
        return Ok((StatusCode::NOT_ACCEPTABLE, [(header::VARY, "Accept")]).into_response());
    }
    let body = doc.to_string();
    let h = hash(&body);
    let etag = format!("\"{h}\"");
    let asked = query_param(parts.uri.query(), "hash");
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    let fresh = versioned && asked.as_deref() == Some(h.as_str());
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if fresh {
            "public, immutable"
        } else {
            "no-cache, private"
        }),
    );
    if versioned && asked.is_some() && !fresh {
        let location = format!("{}?hash={h}", parts.uri.path());
        if let Ok(v) = HeaderValue::from_str(&location) {
            headers.insert(header::LOCATION, v);
        }
        return Ok((StatusCode::MOVED_PERMANENTLY, headers).into_response());
    }
    let matched = parts
        .headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matched {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    if parts.method == Method::HEAD {
        return Ok((StatusCode::OK, headers).into_response());
    }
    Ok((StatusCode::OK, headers, body).into_response())
}

/// Whether the `Accept` header allows JSON (no header does).
fn accepts_json(headers: &HeaderMap) -> bool {
    let mut any = false;
    for v in headers.get_all(header::ACCEPT) {
        any = true;
        let Ok(v) = v.to_str() else { continue };
        for range in v.split(',') {
            let media = range.split(';').next().unwrap_or("").trim();
            if matches!(media, "application/json" | "application/*" | "*/*" | "") {
                return true;
            }
        }
    }
    !any
}

fn query_param(q: Option<&str>, key: &str) -> Option<String> {
    q?.split('&')
        .filter_map(|p| p.split_once('=').or(Some((p, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_kinds_have_described_schemas_and_refs() {
        let reg = Registry::builtin();
        let doc = v3_group_version(&reg, "apps", "v1").expect("apps/v1");
        let schemas = &doc["components"]["schemas"];
        let d = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            d["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        let strategy = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        assert_eq!(
            strategy["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"
        );
        assert!(schemas["io.k8s.api.apps.v1.DeploymentStrategy"]["description"].is_string());
        // Every reference resolves within the document.
        let mut refs = Vec::new();
        collect_refs(schemas, &mut refs);
        assert!(refs.iter().all(|r| schemas.get(r).is_some()), "{refs:?}");
        assert!(schemas.get("io.k8s.api.core.v1.Pod").is_none());
    }

    #[test]
    fn v2_uses_definitions_and_plain_refs() {
        let doc = v2(&Registry::builtin());
        let spec = &doc["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"];
        assert_eq!(
            spec["securityContext"]["$ref"],
            "#/definitions/io.k8s.api.core.v1.PodSecurityContext"
        );
        assert!(spec["securityContext"].get("allOf").is_none());
        assert!(!doc.to_string().contains(REF_V3));
    }

    #[test]
    fn custom_names_reverse_the_group() {
        let reg = Registry::builtin();
        let mut rt = (**reg.all().next().expect("a kind")).clone();
        rt.group = "apps.kruise.io".into();
        rt.version = "v1alpha1".into();
        rt.kind = "SidecarSet".into();
        rt.custom = true;
        rt.schema = Some(json!({"type": "object", "properties": {"spec": {"type": "object"}}}));
        assert_eq!(custom_name(&rt), "io.kruise.apps.v1alpha1.SidecarSet");
        let s = custom_schema(&rt);
        assert_eq!(
            s["properties"]["metadata"]["allOf"][0]["$ref"],
            format!("{REF_V3}{OBJECT_META}")
        );
        assert!(s["properties"]["spec"].is_object());
    }

    #[test]
    fn prune_drops_undeclared_fields_of_builtins() {
        let reg = Registry::builtin();
        let rt = reg
            .all()
            .find(|t| t.kind == "Deployment")
            .expect("deployments");
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "bogus": 1,
            "metadata": {"name": "d", "labels": {"a": "b"}, "nope": true},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"spec": {
                "containers": [{"name": "c", "image": "i", "imagePolicy": "x",
                    "resources": {"limits": {"cpu": "1"}}}],
            }}},
        });
        let unknown = prune(rt, &mut d);
        assert_eq!(
            unknown,
            [
                "bogus",
                "metadata.nope",
                "spec.template.spec.containers[0].imagePolicy"
            ]
        );
        assert!(d.get("bogus").is_none());
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "1"
        );
        assert_eq!(d["metadata"]["labels"]["a"], "b");
    }

    #[test]
    fn accept_and_query() {
        let mut h = HeaderMap::new();
        assert!(accepts_json(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
        );
        assert!(!accepts_json(&h));
        h.append(
            header::ACCEPT,
            HeaderValue::from_static("application/json;q=0.9"),
        );
        assert!(accepts_json(&h));
        assert_eq!(
            query_param(Some("a=1&hash=AB"), "hash").as_deref(),
            Some("AB")
        );
        assert_eq!(query_param(Some("a=1"), "hash"), None);
    }
}
