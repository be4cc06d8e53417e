//! Kubernetes protobuf request bodies, read as the JSON objects they stand for.
//!
//! kubectl's typed clients (`kubectl create secret|configmap|service|deployment|...`,
//! `kubectl drain`'s evictions) send `application/vnd.kubernetes.protobuf` bodies and do
//! not fall back to JSON. A body is the `k8s\0` magic and a `runtime.Unknown` envelope
//! whose typeMeta names the object's apiVersion and kind and whose `raw` holds the object.
//!
//! Nothing here knows a kind: both the envelope and the object are decoded with
//! prost-reflect against the upstream Kubernetes `.proto` files (`protobuf/proto`, compiled
//! by `build.rs`), and the decoded message is walked into JSON by its descriptor. The
//! message is the one named like the kind in the package of the apiVersion's group and
//! version (`apps/v1` -> `api.apps.v1`, `rbac.authorization.k8s.io/v1` -> `api.rbac.v1`).
//! Field names are the protos' own, which are the JSON names. The types whose JSON form
//! is not their protobuf shape are mapped as kube-apiserver writes them: Time and
//! MicroTime (RFC 3339), Duration, IntOrString, Quantity, RawExtension and other raw JSON,
//! bytes (base64), and single-`items` wrappers (lists). Empty strings and Go's unset
//! zero values are left out, as Go's `omitempty` does (see [`ZERO_IS_A_VALUE`]). Custom
//! resources have no protobuf form and are refused with 415.
//!
//! The k8s-pb crate's prost types were the other candidate; they carry neither serde nor
//! descriptors, so turning them into JSON would take code per kind.
//!
//! Responses are always JSON: kubectl's `Accept` lists `application/json` after protobuf.

use crate::status::{ApiError, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use prost_reflect::{
    DescriptorPool, DynamicMessage, Kind, MapKey, MessageDescriptor, ReflectMessage, Value as Pb,
};
use serde_json::{Map, Value, json};
use std::sync::LazyLock;

/// The descriptors of every vendored Kubernetes API type.
static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(&include_bytes!(concat!(env!("OUT_DIR"), "/k8s.binpb"))[..])
        .expect("build.rs wrote a valid descriptor set")
});

/// Fields written by Go from a pointer, where a zero or `false` is a value the client
/// chose and not "unset". Any other zero scalar is dropped, as Go's `omitempty` does:
/// protobuf carries Go's non-pointer zero values explicitly, JSON leaves them out.
const ZERO_IS_A_VALUE: &[&str] = &[
    "activeDeadlineSeconds",
    "allowPrivilegeEscalation",
    "automountServiceAccountToken",
    "backoffLimit",
    "backoffLimitPerIndex",
    "completions",
    "enableServiceLinks",
    "expirationSeconds",
    "failedJobsHistoryLimit",
    "gracePeriodSeconds",
    "maxFailedIndexes",
    "orphanDependents",
    "parallelism",
    "privileged",
    "progressDeadlineSeconds",
    "readOnlyRootFilesystem",
    "replicas",
    "revisionHistoryLimit",
    "runAsGroup",
    "runAsNonRoot",
    "runAsUser",
    "startingDeadlineSeconds",
    "successfulJobsHistoryLimit",
    "suspend",
    "terminationGracePeriodSeconds",
    "ttlSecondsAfterFinished",
];

fn malformed(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("malformed protobuf {what}: {e}"))
}

/// The message type of `apiVersion`/`kind`, if Kubernetes defines one.
fn message_for(api_version: &str, kind: &str) -> Option<MessageDescriptor> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    // Built-in groups are dotless (`apps`) or Kubernetes' own; a custom resource's group
    // has a dot (`apps.example.com`) and no protobuf form.
    if group.contains('.') && !group.ends_with(".k8s.io") {
        return None;
    }
    // Packages are named after the group's first label; the core group's is `core`.
    let label = match group.split('.').next() {
        Some("") | None => "core",
        Some(l) => l,
    };
    let suffix = format!(".{label}.{version}");
    POOL.all_messages()
        .find(|m| m.name() == kind && m.package_name().ends_with(&suffix))
}

/// What a `runtime.Unknown` envelope holds.
struct Envelope {
    api_version: String,
    kind: String,
    /// The object as JSON, without apiVersion and kind when it came as protobuf.
    object: Value,
}

/// A string field of `m`, empty when unset.
fn text(m: &DynamicMessage, name: &str) -> String {
    m.get_field_by_name(name)
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Reads the `k8s\0` magic and `runtime.Unknown` envelope, then the object in it.
fn envelope(body: &[u8]) -> Result<Envelope> {
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or_else(|| ApiError::bad_request("malformed protobuf body: no k8s magic"))?;
    let desc = POOL
        .get_message_by_name("apimachinery.pkg.runtime.Unknown")
        .ok_or_else(|| ApiError::bad_request("no runtime.Unknown descriptor"))?;
    let unknown = DynamicMessage::decode(desc, rest).map_err(|e| malformed("envelope", e))?;
    let type_meta = unknown
        .get_field_by_name("typeMeta")
        .and_then(|v| v.as_message().cloned());
    let (api_version, kind) = type_meta
        .map(|tm| (text(&tm, "apiVersion"), text(&tm, "kind")))
        .unwrap_or_default();
    let encoding = text(&unknown, "contentEncoding");
    if !encoding.is_empty() {
        return Err(ApiError::unsupported_media_type(format!(
            "protobuf bodies with contentEncoding {encoding:?} are not supported; send application/json"
        )));
    }
    let raw = unknown
        .get_field_by_name("raw")
        .and_then(|v| v.as_bytes().cloned())
        .unwrap_or_default();
    if text(&unknown, "contentType").contains("json") {
        let object = serde_json::from_slice(&raw).map_err(|e| malformed("raw JSON", e))?;
        return Ok(Envelope {
            api_version,
            kind,
            object,
        });
    }
    if kind.is_empty() {
        return Err(ApiError::bad_request(
            "malformed protobuf body: the envelope names no kind",
        ));
    }
    let desc = message_for(&api_version, &kind).ok_or_else(|| {
        ApiError::unsupported_media_type(format!(
            "protobuf bodies are supported for built-in kinds only, not {api_version} {kind}; send application/json"
        ))
    })?;
    let msg = DynamicMessage::decode(desc, raw).map_err(|e| malformed(&kind, e))?;
    Ok(Envelope {
        api_version,
        kind,
        object: to_json(&msg),
    })
}

/// Decodes a protobuf body into the JSON object it stands for.
pub(crate) fn decode(body: &[u8]) -> Result<Value> {
    let e = envelope(body)?;
    let Value::Object(mut obj) = e.object else {
        return Err(ApiError::bad_request("the request body must be an object"));
    };
    if !e.api_version.is_empty() {
        obj.insert("apiVersion".into(), json!(e.api_version));
    }
    if !e.kind.is_empty() {
        obj.insert("kind".into(), json!(e.kind));
    }
    Ok(Value::Object(obj))
}

/// Decodes a protobuf `policy/v1` Eviction (what `kubectl drain` sends).
pub(crate) fn decode_eviction(body: &[u8]) -> Result<Value> {
    let v = decode(body)?;
    if v["kind"] != "Eviction" {
        return Err(ApiError::bad_request(format!(
            "expected an Eviction body, got {}",
            v["kind"]
        )));
    }
    Ok(v)
}

/// A message as Kubernetes writes it in JSON.
fn to_json(msg: &DynamicMessage) -> Value {
    let desc = msg.descriptor();
    let field = |name: &str| msg.get_field_by_name(name).map(|v| v.into_owned());
    let int = |name: &str| field(name).and_then(|v| v.as_i64().or(v.as_i32().map(i64::from)));
    match desc.full_name() {
        "apimachinery.pkg.apis.meta.v1.Time" | "apimachinery.pkg.apis.meta.v1.MicroTime" => {
            let (secs, nanos) = (int("seconds").unwrap_or(0), int("nanos").unwrap_or(0));
            if secs == 0 && nanos == 0 {
                // Go's zero time: JSON null, left out here.
                return Value::Null;
            }
            let Ok(ts) = k8s_openapi::jiff::Timestamp::new(secs, i32::try_from(nanos).unwrap_or(0))
            else {
                return Value::Null;
            };
            let v = if desc.name() == "Time" {
                serde_json::to_value(Time(ts))
            } else {
                serde_json::to_value(MicroTime(ts))
            };
            v.unwrap_or(Value::Null)
        }
        "apimachinery.pkg.apis.meta.v1.Duration" => {
            json!(go_duration(int("duration").unwrap_or(0)))
        }
        "apimachinery.pkg.util.intstr.IntOrString" => {
            if int("type") == Some(1) {
                json!(field("strVal").and_then(|v| v.as_str().map(String::from)))
            } else {
                json!(int("intVal").unwrap_or(0))
            }
        }
        "apimachinery.pkg.api.resource.Quantity" => {
            json!(field("string").and_then(|v| v.as_str().map(String::from)))
        }
        "apimachinery.pkg.runtime.RawExtension"
        | "apimachinery.pkg.apis.meta.v1.FieldsV1"
        | "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSON" => {
            let raw = field("raw").and_then(|v| v.as_bytes().cloned());
            raw.and_then(|r| serde_json::from_slice(&r).ok())
                .unwrap_or(Value::Null)
        }
        // `schema` or the alternative, whichever is set.
        "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray"
        | "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool"
        | "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray" => {
            let one = |name: &str| {
                msg.get_field_by_name(name)
                    .filter(|_| msg.has_field_by_name(name))
                    .map(|v| value(name, &v).unwrap_or(Value::Null))
            };
            match desc.name() {
                "JSONSchemaPropsOrBool" => one("schema").unwrap_or_else(|| {
                    json!(field("allows").and_then(|v| v.as_bool()).unwrap_or(false))
                }),
                "JSONSchemaPropsOrArray" => one("schema")
                    .or_else(|| one("JSONSchemas"))
                    .unwrap_or(Value::Null),
                _ => one("schema")
                    .or_else(|| one("property"))
                    .unwrap_or(Value::Null),
            }
        }
        _ => {
            // Go's named string slices (`Verbs`, `ExtraValue`) are one repeated `items`.
            let mut fields = desc.fields();
            if fields.len() == 1
                && let Some(f) = fields.next()
                && f.name() == "items"
                && f.is_list()
                && f.kind() == Kind::String
            {
                return field("items")
                    .and_then(|v| value("items", &v))
                    .unwrap_or(json!([]));
            }
            let mut out = Map::new();
            let schema = desc.full_name() == JSON_SCHEMA_PROPS;
            for (f, v) in msg.fields() {
                if let Some(j) = value(f.json_name(), v) {
                    let key = if schema {
                        schema_key(f.json_name())
                    } else {
                        f.json_name().to_string()
                    };
                    out.insert(key, j);
                }
            }
            Value::Object(out)
        }
    }
}

const JSON_SCHEMA_PROPS: &str = "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps";

/// A JSONSchemaProps field's JSON name: the only protos whose field names are not their
/// JSON names (`ref` is `$ref`, `xKubernetesListType` is `x-kubernetes-list-type`).
fn schema_key(name: &str) -> String {
    match name {
        "ref" | "schema" => format!("${name}"),
        _ => match name.strip_prefix("xKubernetes") {
            Some(rest) => {
                let mut key = String::from("x-kubernetes");
                for c in rest.chars() {
                    if c.is_ascii_uppercase() {
                        key.push('-');
                    }
                    key.push(c.to_ascii_lowercase());
                }
                key
            }
            None => name.to_string(),
        },
    }
}

/// A field's value as JSON, `None` for what JSON leaves out.
fn value(name: &str, v: &Pb) -> Option<Value> {
    let keep_zero = ZERO_IS_A_VALUE.contains(&name);
    let j = match v {
        Pb::Bool(b) => (*b || keep_zero).then(|| json!(b))?,
        Pb::I32(n) => (*n != 0 || keep_zero).then(|| json!(n))?,
        Pb::I64(n) => (*n != 0 || keep_zero).then(|| json!(n))?,
        Pb::U32(n) => (*n != 0 || keep_zero).then(|| json!(n))?,
        Pb::U64(n) => (*n != 0 || keep_zero).then(|| json!(n))?,
        Pb::F32(n) => (*n != 0.0 || keep_zero).then(|| json!(n))?,
        Pb::F64(n) => (*n != 0.0 || keep_zero).then(|| json!(n))?,
        Pb::EnumNumber(n) => json!(n),
        Pb::String(s) => (!s.is_empty()).then(|| json!(s))?,
        Pb::Bytes(b) => serde_json::to_value(k8s_openapi::ByteString(b.to_vec())).ok()?,
        Pb::Message(m) => match to_json(m) {
            Value::Null => return None,
            j => j,
        },
        // Items are kept even when zero: a list's positions matter.
        Pb::List(items) => Value::Array(
            items
                .iter()
                .map(|i| match i {
                    Pb::Message(m) => to_json(m),
                    Pb::Bytes(b) => serde_json::to_value(k8s_openapi::ByteString(b.to_vec()))
                        .unwrap_or(Value::Null),
                    i => scalar(i),
                })
                .collect(),
        ),
        Pb::Map(entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                let key = match k {
                    MapKey::String(s) => s.clone(),
                    MapKey::Bool(b) => b.to_string(),
                    MapKey::I32(n) => n.to_string(),
                    MapKey::I64(n) => n.to_string(),
                    MapKey::U32(n) => n.to_string(),
                    MapKey::U64(n) => n.to_string(),
                };
                // Map values are kept as written: an empty value is still an entry.
                let j = match v {
                    Pb::Message(msg) => to_json(msg),
                    Pb::Bytes(b) => serde_json::to_value(k8s_openapi::ByteString(b.to_vec()))
                        .unwrap_or(Value::Null),
                    v => scalar(v),
                };
                m.insert(key, j);
            }
            Value::Object(m)
        }
    };
    Some(j)
}

/// A scalar as JSON, zero or not.
fn scalar(v: &Pb) -> Value {
    match v {
        Pb::Bool(b) => json!(b),
        Pb::I32(n) | Pb::EnumNumber(n) => json!(n),
        Pb::I64(n) => json!(n),
        Pb::U32(n) => json!(n),
        Pb::U64(n) => json!(n),
        Pb::F32(n) => json!(n),
        Pb::F64(n) => json!(n),
        Pb::String(s) => json!(s),
        _ => Value::Null,
    }
}

/// Nanoseconds as Go's `time.Duration.String()` writes them (`1h2m3.5s`, `0s`).
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000_000_000 {
        // Sub-second durations use the largest unit that keeps an integer part.
        let (unit, div) = if n < 1_000 {
            ("ns", 1)
        } else if n < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{unit}", trim(n / div, n % div, div));
    }
    let (h, rest) = (n / 3_600_000_000_000, n % 3_600_000_000_000);
    let (m, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let secs = trim(rest / 1_000_000_000, rest % 1_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{sign}{secs}s"),
        (0, m) => format!("{sign}{m}m{secs}s"),
        (h, m) => format!("{sign}{h}h{m}m{secs}s"),
    }
}

/// `whole.frac` with the fraction's trailing zeros trimmed.
fn trim(whole: u64, frac: u64, div: u64) -> String {
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let f = format!("{frac:0width$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_reflect::prost::Message;

    /// A message of the vendored type `name`, its fields set from `(field, value)`.
    fn message(name: &str, fields: Vec<(&str, Pb)>) -> DynamicMessage {
        let desc = POOL.get_message_by_name(name).expect("known type");
        let mut m = DynamicMessage::new(desc);
        for (f, v) in fields {
            m.set_field_by_name(f, v);
        }
        m
    }

    fn msg(name: &str, fields: Vec<(&str, Pb)>) -> Pb {
        Pb::Message(message(name, fields))
    }

    fn s(v: &str) -> Pb {
        Pb::String(v.into())
    }

    /// `object` (of `api_version`/`kind`) in the `k8s\0` + `runtime.Unknown` envelope.
    fn body(api_version: &str, kind: &str, object: &DynamicMessage) -> Vec<u8> {
        let tm = msg(
            "apimachinery.pkg.runtime.TypeMeta",
            vec![("apiVersion", s(api_version)), ("kind", s(kind))],
        );
        let raw = Pb::Bytes(object.encode_to_vec().into());
        let unknown = message(
            "apimachinery.pkg.runtime.Unknown",
            vec![("typeMeta", tm), ("raw", raw), ("contentType", s(""))],
        );
        [b"k8s\0".to_vec(), unknown.encode_to_vec()].concat()
    }

    fn meta(name: &str) -> Pb {
        msg(
            "apimachinery.pkg.apis.meta.v1.ObjectMeta",
            vec![
                ("name", s(name)),
                ("namespace", s("")),
                (
                    "creationTimestamp",
                    msg("apimachinery.pkg.apis.meta.v1.Time", vec![]),
                ),
            ],
        )
    }

    #[test]
    fn decodes_a_secret_with_bytes_and_a_time() {
        let mut data = std::collections::HashMap::new();
        data.insert(
            MapKey::String("a".into()),
            Pb::Bytes(b"b\xff".to_vec().into()),
        );
        let mut m = message("api.core.v1.Secret", vec![("metadata", meta("s"))]);
        m.set_field_by_name("data", Pb::Map(data));
        m.set_field_by_name("type", s("Opaque"));
        m.set_field_by_name("immutable", Pb::Bool(false));
        let v = decode(&body("v1", "Secret", &m)).expect("decodes");
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Secret");
        // Empty strings and Go's zero time are what JSON leaves out.
        assert_eq!(v["metadata"], json!({"name": "s"}));
        assert_eq!(v["data"], json!({"a": "Yv8="}));
        assert_eq!(v["type"], "Opaque");
        assert!(v.get("immutable").is_none(), "{v}");

        let time = msg(
            "apimachinery.pkg.apis.meta.v1.Time",
            vec![("seconds", Pb::I64(1_700_000_000))],
        );
        let stamped = msg(
            "apimachinery.pkg.apis.meta.v1.ObjectMeta",
            vec![("name", s("s")), ("creationTimestamp", time)],
        );
        let m = message("api.core.v1.Secret", vec![("metadata", stamped)]);
        let v = decode(&body("v1", "Secret", &m)).expect("decodes");
        assert_eq!(v["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");

        let micro = |nanos| {
            msg(
                "apimachinery.pkg.apis.meta.v1.MicroTime",
                vec![
                    ("seconds", Pb::I64(1_700_000_000)),
                    ("nanos", Pb::I32(nanos)),
                ],
            )
        };
        let lease = message(
            "api.coordination.v1.Lease",
            vec![(
                "spec",
                msg(
                    "api.coordination.v1.LeaseSpec",
                    vec![("acquireTime", micro(0)), ("renewTime", micro(1_500))],
                ),
            )],
        );
        let v = decode(&body("coordination.k8s.io/v1", "Lease", &lease)).expect("decodes");
        assert_eq!(v["spec"]["acquireTime"], "2023-11-14T22:13:20.000000Z");
        assert_eq!(v["spec"]["renewTime"], "2023-11-14T22:13:20.000001Z");
    }

    #[test]
    fn decodes_int_or_string_quantities_and_pointer_zeros() {
        let port = |p: &str, target: Pb| {
            msg(
                "api.core.v1.ServicePort",
                vec![
                    ("name", s(p)),
                    ("port", Pb::I32(80)),
                    ("nodePort", Pb::I32(0)),
                    ("targetPort", target),
                ],
            )
        };
        let int = msg(
            "apimachinery.pkg.util.intstr.IntOrString",
            vec![("type", Pb::I64(0)), ("intVal", Pb::I32(8080))],
        );
        let named = msg(
            "apimachinery.pkg.util.intstr.IntOrString",
            vec![("type", Pb::I64(1)), ("strVal", s("http"))],
        );
        let spec = msg(
            "api.core.v1.ServiceSpec",
            vec![("ports", Pb::List(vec![port("a", int), port("b", named)]))],
        );
        let svc = message(
            "api.core.v1.Service",
            vec![("metadata", meta("x")), ("spec", spec)],
        );
        let v = decode(&body("v1", "Service", &svc)).expect("decodes");
        assert_eq!(
            v["spec"]["ports"],
            json!([
                {"name": "a", "port": 80, "targetPort": 8080},
                {"name": "b", "port": 80, "targetPort": "http"},
            ])
        );

        let mut limits = std::collections::HashMap::new();
        let q = msg(
            "apimachinery.pkg.api.resource.Quantity",
            vec![("string", s("500m"))],
        );
        limits.insert(MapKey::String("cpu".into()), q);
        let mut resources = message("api.core.v1.ResourceRequirements", vec![]);
        resources.set_field_by_name("limits", Pb::Map(limits));
        let container = msg(
            "api.core.v1.Container",
            vec![
                ("name", s("c")),
                ("resources", Pb::Message(resources)),
                ("tty", Pb::Bool(false)),
            ],
        );
        let pod_spec = msg(
            "api.core.v1.PodSpec",
            vec![("containers", Pb::List(vec![container]))],
        );
        let template = msg(
            "api.core.v1.PodTemplateSpec",
            vec![("metadata", meta("")), ("spec", pod_spec)],
        );
        let spec = msg(
            "api.apps.v1.DeploymentSpec",
            vec![
                ("replicas", Pb::I32(0)),
                ("minReadySeconds", Pb::I32(0)),
                ("template", template),
            ],
        );
        let d = message("api.apps.v1.Deployment", vec![("spec", spec)]);
        let v = decode(&body("apps/v1", "Deployment", &d)).expect("decodes");
        // `replicas: 0` is the client's choice; `minReadySeconds: 0` and `tty: false`
        // are Go's unset non-pointer fields.
        assert_eq!(
            v["spec"],
            json!({
                "replicas": 0,
                "template": {
                    "metadata": {},
                    "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "500m"}}}]},
                },
            })
        );
    }

    #[test]
    fn decodes_rbac_and_an_eviction() {
        let rule = msg(
            "api.rbac.v1.PolicyRule",
            vec![
                ("verbs", Pb::List(vec![s("get")])),
                ("apiGroups", Pb::List(vec![s("")])),
                ("resources", Pb::List(vec![s("pods")])),
            ],
        );
        let role = message(
            "api.rbac.v1.Role",
            vec![("metadata", meta("r")), ("rules", Pb::List(vec![rule]))],
        );
        let v = decode(&body("rbac.authorization.k8s.io/v1", "Role", &role)).expect("decodes");
        assert_eq!(
            v["rules"],
            json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}])
        );

        let opts = msg(
            "apimachinery.pkg.apis.meta.v1.DeleteOptions",
            vec![
                ("gracePeriodSeconds", Pb::I64(0)),
                ("dryRun", Pb::List(vec![s("All")])),
                (
                    "preconditions",
                    msg(
                        "apimachinery.pkg.apis.meta.v1.Preconditions",
                        vec![("uid", s("u-1"))],
                    ),
                ),
            ],
        );
        let ev = message(
            "api.policy.v1.Eviction",
            vec![("metadata", meta("web-0")), ("deleteOptions", opts)],
        );
        let v = decode_eviction(&body("policy/v1", "Eviction", &ev)).expect("decodes");
        assert_eq!(v["metadata"]["name"], "web-0");
        assert_eq!(
            v["deleteOptions"],
            json!({"gracePeriodSeconds": 0, "dryRun": ["All"], "preconditions": {"uid": "u-1"}})
        );
        let ns = message("api.core.v1.Namespace", vec![("metadata", meta("n"))]);
        assert!(decode_eviction(&body("v1", "Namespace", &ns)).is_err());
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let ns = message("api.core.v1.Namespace", vec![("metadata", meta("n"))]);
        let custom = decode(&body("example.com/v1", "Widget", &ns)).expect_err("custom kind");
        assert_eq!(custom.code, 415, "{custom}");
        let lookalike =
            decode(&body("apps.example.com/v1", "Deployment", &ns)).expect_err("custom");
        assert_eq!(lookalike.code, 415, "{lookalike}");
        assert!(decode(b"k8s\0\xff").is_err());
        assert!(decode(b"nope").is_err());
        assert_eq!(
            schema_key("xKubernetesListMapKeys"),
            "x-kubernetes-list-map-keys"
        );
        assert_eq!(schema_key("ref"), "$ref");
        assert_eq!(schema_key("minLength"), "minLength");
        let verbs = message(
            "apimachinery.pkg.apis.meta.v1.Verbs",
            vec![("items", Pb::List(vec![s("get")]))],
        );
        assert_eq!(to_json(&verbs), json!(["get"]));
        let file = msg("api.core.v1.DownwardAPIVolumeFile", vec![("path", s("p"))]);
        let projection = message(
            "api.core.v1.DownwardAPIProjection",
            vec![("items", Pb::List(vec![file]))],
        );
        assert_eq!(to_json(&projection), json!({"items": [{"path": "p"}]}));
        assert_eq!(go_duration(5_400_000_000_000), "1h30m0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(2_000_000), "2ms");
    }

    // Random bodies, bare and inside a well-formed envelope, never panic the decoders and
    // are refused with a client error. `PROPTEST_CASES` sets the number of cases (256).
    proptest::proptest! {
        #[test]
        fn random_bodies_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128),
            kind in proptest::sample::select(vec!["Namespace", "ConfigMap", "Secret", "Pod", "Eviction"]),
        ) {
            let version = if kind == "Eviction" { "policy/v1" } else { "v1" };
            let tm = msg(
                "apimachinery.pkg.runtime.TypeMeta",
                vec![("apiVersion", s(version)), ("kind", s(kind))],
            );
            let unknown = message(
                "apimachinery.pkg.runtime.Unknown",
                vec![("typeMeta", tm), ("raw", Pb::Bytes(bytes.clone().into()))],
            );
            let enveloped = [b"k8s\0".to_vec(), unknown.encode_to_vec()].concat();
            let bare = [b"k8s\0".as_slice(), &bytes].concat();
            for body in [&bytes, &bare, &enveloped] {
                for decoded in [decode(body), decode_eviction(body)] {
                    if let Err(e) = decoded {
                        proptest::prop_assert!((400..500).contains(&e.code), "{e}");
                    }
                }
            }
        }
    }
}
