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
//! Responses are protobuf when the client's `Accept` prefers it and the object has a
//! protobuf form ([`negotiate`]): the JSON object is walked into the message named like
//! its kind by the same descriptors, the reverse of the mapping above, and sent in the same
//! envelope. Watch streams are length-prefixed `WatchEvent`s without the envelope, each
//! holding its object in the envelope, as kube-apiserver's raw stream serializer writes
//! them. Custom resources, Tables and anything else without a protobuf form stay JSON
//! when the client accepts JSON, and are a 406 when it accepts protobuf only.

use crate::status::{ApiError, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use prost_reflect::prost::Message as _;
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
    // `Status`, `APIResourceList` and the other meta types are written as `v1`.
    if matches!(group, "" | "meta.k8s.io")
        && version == "v1"
        && let Some(m) = POOL.get_message_by_name(&format!("apimachinery.pkg.apis.meta.v1.{kind}"))
    {
        return Some(m);
    }
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
            // FieldsV1's field is `Raw`, the others' `raw`.
            let raw = field("raw")
                .or_else(|| field("Raw"))
                .and_then(|v| v.as_bytes().cloned());
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
                    .or_else(|| one("jSONSchemas"))
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
            for (f, v) in msg.fields() {
                if let Some(j) = value(f.json_name(), v) {
                    match j {
                        // An embedded Go struct: its fields are the parent's in JSON.
                        Value::Object(inner) if is_inline(&f) => out.extend(inner),
                        j => {
                            out.insert(json_key(&f), j);
                        }
                    }
                }
            }
            Value::Object(out)
        }
    }
}

const JSON_SCHEMA_PROPS: &str = "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps";

/// Go structs embedded in another (`json:""`): a message field in protobuf, the parent's
/// own fields in JSON. From the `types.go` files of the groups served (message, field).
const INLINE: &[(&str, &str)] = &[
    ("api.core.v1.Volume", "volumeSource"),
    ("api.core.v1.PersistentVolumeSpec", "persistentVolumeSource"),
    ("api.core.v1.SecretProjection", "localObjectReference"),
    ("api.core.v1.ConfigMapVolumeSource", "localObjectReference"),
    ("api.core.v1.ConfigMapProjection", "localObjectReference"),
    ("api.core.v1.ConfigMapKeySelector", "localObjectReference"),
    ("api.core.v1.SecretKeySelector", "localObjectReference"),
    ("api.core.v1.ConfigMapEnvSource", "localObjectReference"),
    ("api.core.v1.SecretEnvSource", "localObjectReference"),
    ("api.core.v1.Probe", "handler"),
    ("api.core.v1.EphemeralContainer", "ephemeralContainerCommon"),
    (
        "api.admissionregistration.v1.NamedRuleWithOperations",
        "ruleWithOperations",
    ),
    ("api.admissionregistration.v1.RuleWithOperations", "rule"),
    ("api.networking.v1.IngressRule", "ingressRuleValue"),
];

fn is_inline(f: &prost_reflect::FieldDescriptor) -> bool {
    let parent = f.parent_message();
    INLINE
        .iter()
        .any(|(m, name)| f.name() == *name && parent.full_name() == *m)
}

/// Fields whose proto name is not their JSON name (message, proto field, JSON key), from
/// the `json` and `protobuf` tags of the served groups' `types.go`.
const RENAMED: &[(&str, &str, &str)] = &[
    (
        "api.admissionregistration.v1.MutatingWebhookConfiguration",
        "Webhooks",
        "webhooks",
    ),
    (
        "api.admissionregistration.v1.ValidatingWebhookConfiguration",
        "Webhooks",
        "webhooks",
    ),
    (
        "api.admissionregistration.v1.Validation",
        "Expression",
        "expression",
    ),
    (
        "api.admissionregistration.v1.Variable",
        "Expression",
        "expression",
    ),
    ("api.admissionregistration.v1.Variable", "Name", "name"),
    ("api.authentication.v1.BoundObjectReference", "uID", "uid"),
    (
        "api.networking.v1.IngressClassParametersReference",
        "aPIGroup",
        "apiGroup",
    ),
];

/// A field's JSON key: the proto's JSON name but for [`RENAMED`] and JSONSchemaProps'
/// own spellings.
fn json_key(f: &prost_reflect::FieldDescriptor) -> String {
    let parent = f.parent_message();
    if parent.full_name() == JSON_SCHEMA_PROPS {
        return schema_key(f.json_name());
    }
    RENAMED
        .iter()
        .find(|(m, name, _)| f.name() == *name && parent.full_name() == *m)
        .map_or_else(|| f.json_name().to_string(), |(_, _, key)| key.to_string())
}

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

/// The protobuf media type.
pub(crate) const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Why an object cannot be sent as protobuf.
#[derive(Debug)]
pub(crate) struct NoProtobuf(pub String);

/// How a response may be written, from the request's `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// JSON (no `Accept`, `*/*`, `application/json` first, or a Table).
    Json,
    /// Protobuf; `json_too` when a later choice accepts JSON.
    Protobuf { json_too: bool },
}

/// The media type to answer with, as kube-apiserver's negotiation picks it: the
/// acceptable type with the highest `q` (earlier first among equals) that the server can
/// write. Protobuf with an `as=` parameter (a Table) is not one it can.
pub(crate) fn negotiate(accept: &str) -> Wanted {
    let mut ranges: Vec<(f32, usize, &str, bool)> = Vec::new();
    for (i, range) in accept.split(',').enumerate() {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let mut q = 1.0f32;
        let mut other_params = false;
        for p in parts {
            match p.split_once('=') {
                Some(("q", v)) => q = v.trim().parse().unwrap_or(0.0),
                Some(_) => other_params = true,
                None => {}
            }
        }
        if q > 0.0 && !media.is_empty() {
            ranges.push((q, i, media, other_params));
        }
    }
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let json = |m: &str| matches!(m, "application/json" | "application/*" | "*/*");
    for (n, (_, _, media, params)) in ranges.iter().enumerate() {
        if *media == "application/vnd.kubernetes.protobuf" && !params {
            let json_too = ranges[n + 1..].iter().any(|r| json(r.2));
            return Wanted::Protobuf { json_too };
        }
        if json(media) {
            return Wanted::Json;
        }
    }
    Wanted::Json
}

/// `object` as a protobuf body: the `k8s\0` magic and a `runtime.Unknown` envelope
/// naming its apiVersion and kind, with the object's message in `raw`.
pub(crate) fn encode(object: &Value) -> std::result::Result<Vec<u8>, NoProtobuf> {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let kind = object["kind"].as_str().unwrap_or("");
    let desc = message_for(api_version, kind)
        .ok_or_else(|| NoProtobuf(format!("{api_version} {kind} has no protobuf form")))?;
    let raw = to_message(&desc, object)
        .map_err(|e| NoProtobuf(format!("{api_version} {kind}: {e}")))?
        .encode_to_vec();
    let unknown = POOL
        .get_message_by_name("apimachinery.pkg.runtime.Unknown")
        .ok_or_else(|| NoProtobuf("no runtime.Unknown descriptor".into()))?;
    let type_meta = POOL
        .get_message_by_name("apimachinery.pkg.runtime.TypeMeta")
        .ok_or_else(|| NoProtobuf("no runtime.TypeMeta descriptor".into()))?;
    let mut tm = DynamicMessage::new(type_meta);
    tm.set_field_by_name("apiVersion", Pb::String(api_version.into()));
    tm.set_field_by_name("kind", Pb::String(kind.into()));
    let mut env = DynamicMessage::new(unknown);
    env.set_field_by_name("typeMeta", Pb::Message(tm));
    env.set_field_by_name("raw", Pb::Bytes(raw.into()));
    env.set_field_by_name("contentEncoding", Pb::String(String::new()));
    env.set_field_by_name("contentType", Pb::String(String::new()));
    let mut out = b"k8s\0".to_vec();
    env.encode(&mut out)
        .map_err(|e| NoProtobuf(format!("encoding the envelope: {e}")))?;
    Ok(out)
}

/// One frame of a protobuf watch stream: a big-endian length, then a `WatchEvent`
/// (without the envelope) whose `object.raw` is the object's protobuf body.
pub(crate) fn watch_frame(
    event_type: &str,
    object: &Value,
) -> std::result::Result<Vec<u8>, NoProtobuf> {
    let raw = encode(object)?;
    let (event, raw_ext) = (
        POOL.get_message_by_name("apimachinery.pkg.apis.meta.v1.WatchEvent"),
        POOL.get_message_by_name("apimachinery.pkg.runtime.RawExtension"),
    );
    let (Some(event), Some(raw_ext)) = (event, raw_ext) else {
        return Err(NoProtobuf("no WatchEvent descriptor".into()));
    };
    let mut ext = DynamicMessage::new(raw_ext);
    ext.set_field_by_name("raw", Pb::Bytes(raw.into()));
    let mut ev = DynamicMessage::new(event);
    ev.set_field_by_name("type", Pb::String(event_type.into()));
    ev.set_field_by_name("object", Pb::Message(ext));
    let body = ev.encode_to_vec();
    let len =
        u32::try_from(body.len()).map_err(|_| NoProtobuf("a watch event over 4 GiB".into()))?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    Ok(out)
}

/// A JSON object as the message `desc`, the reverse of [`to_json`].
fn to_message(desc: &MessageDescriptor, v: &Value) -> std::result::Result<DynamicMessage, String> {
    let mut msg = DynamicMessage::new(desc.clone());
    let mut set = |name: &str, value: Pb| msg.set_field_by_name(name, value);
    match desc.full_name() {
        "apimachinery.pkg.apis.meta.v1.Time" | "apimachinery.pkg.apis.meta.v1.MicroTime" => {
            let s = v.as_str().ok_or("a time must be a string")?;
            let ts: k8s_openapi::jiff::Timestamp =
                s.parse().map_err(|e| format!("time {s:?}: {e}"))?;
            set("seconds", Pb::I64(ts.as_second()));
            set("nanos", Pb::I32(ts.subsec_nanosecond()));
        }
        "apimachinery.pkg.apis.meta.v1.Duration" => {
            let s = v.as_str().ok_or("a duration must be a string")?;
            set("duration", Pb::I64(parse_go_duration(s)?));
        }
        "apimachinery.pkg.util.intstr.IntOrString" => match v {
            Value::String(s) => {
                set("type", Pb::I64(1));
                set("strVal", Pb::String(s.clone()));
            }
            Value::Number(n) => {
                let n = n
                    .as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or("an int-or-string out of range")?;
                set("type", Pb::I64(0));
                set("intVal", Pb::I32(n));
            }
            _ => return Err("an int-or-string must be a number or a string".into()),
        },
        "apimachinery.pkg.api.resource.Quantity" => {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err("a quantity must be a string".into()),
            };
            set("string", Pb::String(s));
        }
        "apimachinery.pkg.runtime.RawExtension"
        | "apimachinery.pkg.apis.meta.v1.FieldsV1"
        | "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSON" => {
            let raw = serde_json::to_vec(v).map_err(|e| e.to_string())?;
            let name = if desc.name() == "FieldsV1" {
                "Raw"
            } else {
                "raw"
            };
            set(name, Pb::Bytes(raw.into()));
        }
        "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray"
        | "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool"
        | "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray" => {
            let field = |name: &str| desc.get_field_by_name(name).ok_or(format!("no {name}"));
            match (desc.name(), v) {
                (_, Value::Object(_)) => {
                    let f = field("schema")?;
                    set("schema", field_value(&f, v)?);
                }
                ("JSONSchemaPropsOrBool", Value::Bool(b)) => set("allows", Pb::Bool(*b)),
                ("JSONSchemaPropsOrArray", Value::Array(_)) => {
                    let f = field("jSONSchemas")?;
                    set("jSONSchemas", field_value(&f, v)?);
                }
                ("JSONSchemaPropsOrStringArray", Value::Array(_)) => {
                    let f = field("property")?;
                    set("property", field_value(&f, v)?);
                }
                _ => return Err(format!("unexpected {} value {v}", desc.name())),
            }
        }
        _ => {
            if let Value::Array(_) = v {
                // Go's named string slices (`Verbs`) are one repeated `items`.
                let f = desc
                    .get_field_by_name("items")
                    .filter(|f| desc.fields().len() == 1 && f.is_list())
                    .ok_or_else(|| format!("an array where {} is expected", desc.name()))?;
                set("items", field_value(&f, v)?);
                return Ok(msg);
            }
            let obj = v
                .as_object()
                .ok_or_else(|| format!("{} must be an object, not {v}", desc.name()))?;
            let fields: Vec<_> = desc.fields().collect();
            let inline: Vec<_> = fields.iter().filter(|f| is_inline(f)).collect();
            // The keys of each embedded struct, gathered into its own object.
            let mut embedded: Vec<Map<String, Value>> = vec![Map::new(); inline.len()];
            for (key, val) in obj {
                if val.is_null() {
                    continue;
                }
                if let Some(f) = fields.iter().find(|f| !is_inline(f) && json_key(f) == *key) {
                    let pb = field_value(f, val).map_err(|e| format!("{key}: {e}"))?;
                    msg.try_set_field(f, pb)
                        .map_err(|e| format!("{key}: {e}"))?;
                    continue;
                }
                // apiVersion and kind are the envelope's; nothing else should be missing.
                for (i, f) in inline.iter().enumerate() {
                    if let Kind::Message(d) = f.kind()
                        && claims(&d, key)
                    {
                        embedded[i].insert(key.clone(), val.clone());
                        break;
                    }
                }
            }
            for (f, part) in inline.into_iter().zip(embedded) {
                if !part.is_empty() {
                    let pb = field_value(f, &Value::Object(part))?;
                    msg.try_set_field(f, pb).map_err(|e| e.to_string())?;
                }
            }
        }
    }
    Ok(msg)
}

/// Whether the JSON key `key` is a field of `desc`, or of a struct embedded in it.
fn claims(desc: &MessageDescriptor, key: &str) -> bool {
    desc.fields().any(|f| {
        if is_inline(&f) {
            matches!(f.kind(), Kind::Message(d) if claims(&d, key))
        } else {
            json_key(&f) == key
        }
    })
}

/// A field's JSON value as the field's protobuf value (lists and maps included).
fn field_value(f: &prost_reflect::FieldDescriptor, v: &Value) -> std::result::Result<Pb, String> {
    if f.is_map() {
        let Kind::Message(entry) = f.kind() else {
            return Err("a map without an entry type".into());
        };
        let value_kind = entry.map_entry_value_field().kind();
        let obj = v.as_object().ok_or("a map must be an object")?;
        let mut out = std::collections::HashMap::new();
        for (k, val) in obj {
            let pb = if val.is_null() {
                zero(&value_kind)
            } else {
                scalar_or_message(&value_kind, val).map_err(|e| format!("{k}: {e}"))?
            };
            out.insert(MapKey::String(k.clone()), pb);
        }
        return Ok(Pb::Map(out));
    }
    if f.is_list() {
        let items = v.as_array().ok_or("a list must be an array")?;
        let kind = f.kind();
        return items
            .iter()
            .enumerate()
            .map(|(i, item)| scalar_or_message(&kind, item).map_err(|e| format!("[{i}]: {e}")))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(Pb::List);
    }
    scalar_or_message(&f.kind(), v)
}

/// The zero value of `kind` (a null map value).
fn zero(kind: &Kind) -> Pb {
    match kind {
        Kind::Message(d) => Pb::Message(DynamicMessage::new(d.clone())),
        Kind::Bytes => Pb::Bytes(Default::default()),
        _ => Pb::String(String::new()),
    }
}

fn scalar_or_message(kind: &Kind, v: &Value) -> std::result::Result<Pb, String> {
    let int = || v.as_i64().ok_or_else(|| format!("{v} is not an integer"));
    let uint = || {
        v.as_u64()
            .ok_or_else(|| format!("{v} is not a non-negative integer"))
    };
    let narrow = |n: i64| i32::try_from(n).map_err(|_| format!("{n} is out of range"));
    Ok(match kind {
        Kind::Message(d) => Pb::Message(to_message(d, v)?),
        Kind::String => Pb::String(
            v.as_str()
                .ok_or_else(|| format!("{v} is not a string"))?
                .to_string(),
        ),
        Kind::Bool => Pb::Bool(v.as_bool().ok_or_else(|| format!("{v} is not a boolean"))?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Pb::I32(narrow(int()?)?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Pb::I64(int()?),
        Kind::Uint32 | Kind::Fixed32 => {
            Pb::U32(u32::try_from(uint()?).map_err(|_| format!("{v} is out of range"))?)
        }
        Kind::Uint64 | Kind::Fixed64 => Pb::U64(uint()?),
        Kind::Float => Pb::F32(v.as_f64().ok_or_else(|| format!("{v} is not a number"))? as f32),
        Kind::Double => Pb::F64(v.as_f64().ok_or_else(|| format!("{v} is not a number"))?),
        Kind::Bytes => {
            let b: k8s_openapi::ByteString =
                serde_json::from_value(v.clone()).map_err(|e| format!("bytes: {e}"))?;
            Pb::Bytes(b.0.into())
        }
        Kind::Enum(_) => Pb::EnumNumber(narrow(int()?)?),
    })
}

/// Go's `time.ParseDuration`, for the durations Kubernetes writes (`1h2m3.5s`, `300ms`).
fn parse_go_duration(s: &str) -> std::result::Result<i64, String> {
    let bad = || format!("invalid duration {s:?}");
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    let total = total.round() as i64;
    Ok(if neg { -total } else { total })
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

    /// The kinds of Kubernetes' own fixtures (`testdata/protobuf`), `.pb` and `.json`.
    fn fixtures() -> Vec<(String, Vec<u8>, Value)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/protobuf");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("fixtures") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "pb") {
                let json = std::fs::read(path.with_extension("json")).expect("json twin");
                let name = path
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into();
                let pb = std::fs::read(&path).expect("pb");
                out.push((name, pb, serde_json::from_slice(&json).expect("json")));
            }
        }
        assert!(out.len() >= 30, "{} fixtures", out.len());
        out
    }

    /// The first path where two JSON values differ.
    fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<_> = x.keys().chain(y.keys()).collect();
                keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => first_difference(p, q, &format!("{at}.{k}")),
                    (p, q) => Some(format!("{at}.{k}: {p:?} vs {q:?}")),
                })
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
                .iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (p, q))| first_difference(p, q, &format!("{at}[{i}]"))),
            _ if a == b => None,
            _ => Some(format!("{at}: {a} vs {b}")),
        }
    }

    #[test]
    fn reads_kubernetes_fixtures_as_their_json() {
        for (name, pb, json) in fixtures() {
            let decoded = decode(&pb).unwrap_or_else(|e| panic!("{name}: {e}"));
            if let Some(d) = first_difference(&decoded, &json, "") {
                panic!("{name}: decoded protobuf differs from kube's JSON at {d}");
            }
        }
    }

    #[test]
    fn writes_kubernetes_fixtures_as_protobuf_that_reads_back() {
        for (name, pb, json) in fixtures() {
            let encoded = encode(&json).unwrap_or_else(|e| panic!("{name}: {}", e.0));
            let back = decode(&encoded).unwrap_or_else(|e| panic!("{name}: {e}"));
            if let Some(d) = first_difference(&back, &json, "") {
                panic!("{name}: re-read protobuf differs at {d}");
            }
            // Kubernetes' bytes and ours decode to the same message.
            let inner = |body: &[u8]| {
                let e = envelope(body).expect("envelope");
                let desc = message_for(&e.api_version, &e.kind).expect("message");
                let unknown = DynamicMessage::decode(
                    POOL.get_message_by_name("apimachinery.pkg.runtime.Unknown")
                        .expect("Unknown"),
                    &body[4..],
                )
                .expect("unknown");
                let raw = unknown
                    .get_field_by_name("raw")
                    .and_then(|v| v.as_bytes().cloned())
                    .unwrap_or_default();
                to_json(&DynamicMessage::decode(desc, raw).expect("object"))
            };
            assert_eq!(inner(&encoded), inner(&pb), "{name}");
        }
    }

    #[test]
    fn negotiates_like_kube_apiserver() {
        use Wanted::*;
        assert_eq!(negotiate(""), Json);
        assert_eq!(negotiate("*/*"), Json);
        assert_eq!(
            negotiate("application/vnd.kubernetes.protobuf, */*"),
            Protobuf { json_too: true }
        );
        assert_eq!(
            negotiate("application/vnd.kubernetes.protobuf"),
            Protobuf { json_too: false }
        );
        assert_eq!(
            negotiate("application/json, application/vnd.kubernetes.protobuf"),
            Json
        );
        assert_eq!(
            negotiate("application/json;q=0.5, application/vnd.kubernetes.protobuf"),
            Protobuf { json_too: true }
        );
        assert_eq!(
            negotiate(
                "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io, application/json"
            ),
            Json
        );
        assert_eq!(parse_go_duration("1h30m0s"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_go_duration("2ms"), Ok(2_000_000));
        assert_eq!(parse_go_duration("-3µs"), Ok(-3_000));
        assert!(parse_go_duration("5 parsecs").is_err());
        assert!(parse_go_duration("").is_err());
    }

    #[test]
    fn writes_status_and_watch_frames() {
        let status = ApiError::not_found("pods", "p").to_status();
        let body = encode(&status).expect("Status has a protobuf form");
        assert_eq!(decode(&body).expect("reads back")["reason"], "NotFound");
        let custom = json!({"apiVersion": "example.com/v1", "kind": "Widget"});
        assert!(encode(&custom).is_err());
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
        let frame = watch_frame("ADDED", &pod).expect("frame");
        let len = u32::from_be_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
        assert_eq!(len, frame.len() - 4);
        let event = DynamicMessage::decode(
            POOL.get_message_by_name("apimachinery.pkg.apis.meta.v1.WatchEvent")
                .expect("WatchEvent"),
            &frame[4..],
        )
        .expect("a WatchEvent without the envelope");
        assert_eq!(text(&event, "type"), "ADDED");
        let raw = event
            .get_field_by_name("object")
            .and_then(|o| o.as_message().cloned())
            .and_then(|o| {
                o.get_field_by_name("raw")
                    .and_then(|r| r.as_bytes().cloned())
            })
            .expect("object.raw");
        assert_eq!(decode(&raw).expect("the pod"), pod);
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
