//! OpenKruise's SidecarSet hashes, bit for bit: the values Kruise writes to the
//! SidecarSet's (and its pods') `kruise.io/sidecarset-hash` and
//! `kruise.io/sidecarset-hash-without-image` annotations, so a Bosun plugin and Kruise
//! agree on whether a pod runs the latest sidecars.
//!
//! Kruise (`pkg/control/sidecarcontrol/hash.go`) hashes Go's `json.Marshal` of
//! `{"containers": spec.containers}`, adding `"initContainers": spec.initContainers`
//! (all of them) when one init container is a native sidecar (`restartPolicy: Always`).
//! The hash is `rand.SafeEncodeString` of the hex sha256 of those bytes; the second one
//! blanks every container's `image` first. Go marshals the containers it *decoded*: the
//! fields of `k8s.io/api/core/v1.Container` (v0.32) in declaration order, then Kruise's
//! `SidecarContainer` fields, each with its `omitempty` rule (structs are never omitted,
//! so `"resources":{}`, `"upgradeStrategy":{}` and `"shareVolumePolicy":{}` always
//! appear), unknown fields dropped, map keys sorted, quantities canonical
//! ([`crate::quantity`]), `<`, `>`, `&`, U+2028 and U+2029 escaped. [`encode`]
//! reproduces those bytes from the JSON an API server returns.
//!
//! The hashes cover what is stored: Kruise computes them in its webhook after defaulting
//! (`podInjectPolicy`, `upgradeStrategy.upgradeType`, `shareVolumePolicy.type`,
//! `terminationMessagePath`, probe timings...), so a SidecarSet hashes the same here and
//! in Kruise when both read the same defaulted spec.
//!
//! Limits: Go decodes JSON numbers in quantities from their literal text, serde_json from
//! a float, so an unquoted fractional quantity (`cpu: 0.5`) is read as serde_json prints
//! it (quote quantities, as Kubernetes writes them); keys match case-sensitively, as
//! Kubernetes' decoder (sigs.k8s.io/json) does. Fields added to `Container` after v0.32
//! (or to Kruise's `SidecarContainer` after `resourcesPolicy`) are dropped, as a Kruise
//! built on v0.32 drops them.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::quantity;

/// A container Kruise's Go types would not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A field holds a JSON type Go cannot decode into the field's Go type.
    #[error("{path}: expected {expected}")]
    Type {
        /// Where (`containers[0].ports[1].containerPort`).
        path: String,
        /// The Go type (`string`, `int32`, ...).
        expected: &'static str,
    },
    /// A quantity that does not read, or that this implementation does not canonicalise.
    #[error("{path}: unreadable quantity")]
    Quantity {
        /// Where (`containers[0].resources.limits.cpu`).
        path: String,
        /// Why.
        #[source]
        source: quantity::Error,
    },
}

/// `Result` of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `kruise.io/sidecarset-hash` of a SidecarSet's `spec` (its containers and, when one is
/// a native sidecar, its init containers).
pub fn hash(spec: &Value) -> Result<String> {
    Ok(safe_encode(&hex_sha256(&encode(spec)?)))
}

/// `kruise.io/sidecarset-hash-without-image` of a SidecarSet's `spec`: the same with every
/// container's and init container's image blanked, so it changes only when something
/// other than an image does.
pub fn hash_without_image(spec: &Value) -> Result<String> {
    let mut spec = spec.clone();
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(items)) = spec.get_mut(list) {
            for item in items {
                if let Some(c) = item.as_object_mut() {
                    c.remove("image");
                }
            }
        }
    }
    hash(&spec)
}

/// The bytes Kruise's `encodeSidecarSet` hashes for a SidecarSet's `spec`.
pub fn encode(spec: &Value) -> Result<String> {
    let mut out = String::from("{\"containers\":");
    write_containers(&mut out, spec.get("containers"), "containers")?;
    let init = spec.get("initContainers");
    let native_sidecar = init.and_then(Value::as_array).is_some_and(|items| {
        items
            .iter()
            .any(|c| c.get("restartPolicy").and_then(Value::as_str) == Some("Always"))
    });
    if native_sidecar {
        out.push_str(",\"initContainers\":");
        write_containers(&mut out, init, "initContainers")?;
    }
    out.push('}');
    Ok(out)
}

/// Go's `json.Marshal` of a `[]SidecarContainer` decoded from `containers` (a JSON array,
/// or absent/null for a nil slice, which Go writes `null`).
pub fn encode_containers(containers: &Value) -> Result<String> {
    let mut out = String::new();
    write_containers(&mut out, Some(containers), "containers")?;
    Ok(out)
}

fn write_containers(out: &mut String, v: Option<&Value>, path: &str) -> Result<()> {
    // A slice field without omitempty: nil is `null`, empty is `[]`.
    write_value(out, v, &Ty::Slice(&SIDECAR_CONTAINER), path)
}

/// The hex sha256 of `data`, as Go's `fmt.Sprintf("%x", sha256.Sum256(data))`.
fn hex_sha256(data: &str) -> String {
    use std::fmt::Write;
    Sha256::digest(data.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// `k8s.io/apimachinery/pkg/util/rand.SafeEncodeString`.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.chars()
        .map(|c| char::from(ALPHANUMS[c as usize % ALPHANUMS.len()]))
        .collect()
}

/// A Go type, as far as `encoding/json` cares.
enum Ty {
    Str,
    Bool,
    Int32,
    Int64,
    /// `resource.Quantity`: a struct (never omitted), canonical text, zero is `"0"`.
    Quantity,
    /// `intstr.IntOrString`: a struct (never omitted); a number or a string.
    IntOrString,
    /// A struct by value: never omitted, absent is all zero.
    Struct(&'static [Field]),
    /// A pointer: nil (absent or null) is omitted, or `null` without omitempty.
    Ptr(&'static Ty),
    Slice(&'static Ty),
    /// `map[string]T`, keys sorted.
    Map(&'static Ty),
}

/// A struct field: its json name, type and omitempty; `inline` embeds a struct's fields.
struct Field {
    name: &'static str,
    ty: Ty,
    omitempty: bool,
    inline: bool,
}

const fn f(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        omitempty: true,
        inline: false,
    }
}

/// A field without omitempty.
const fn req(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        omitempty: false,
        inline: false,
    }
}

const fn inline(fields: &'static [Field]) -> Field {
    Field {
        name: "",
        ty: Ty::Struct(fields),
        omitempty: false,
        inline: true,
    }
}

const STR: &Ty = &Ty::Str;
const BOOL: &Ty = &Ty::Bool;
const I64: &Ty = &Ty::Int64;

// Kruise's apps/v1alpha1 SidecarContainer (HEAD of 2026-07; `resourcesPolicy` last).
static SIDECAR_CONTAINER: Ty = Ty::Struct(&[
    inline(CONTAINER),
    f("podInjectPolicy", Ty::Str),
    f("upgradeStrategy", Ty::Struct(UPGRADE_STRATEGY)),
    f("shareVolumePolicy", Ty::Struct(SHARE_VOLUME_POLICY)),
    f(
        "shareVolumeDevicePolicy",
        Ty::Ptr(&Ty::Struct(SHARE_VOLUME_POLICY)),
    ),
    f("transferEnv", Ty::Slice(&Ty::Struct(TRANSFER_ENV))),
    f("resourcesPolicy", Ty::Ptr(&Ty::Struct(RESOURCES_POLICY))),
]);
const UPGRADE_STRATEGY: &[Field] = &[
    f("upgradeType", Ty::Str),
    f("hotUpgradeEmptyImage", Ty::Str),
];
const SHARE_VOLUME_POLICY: &[Field] = &[f("type", Ty::Str)];
const TRANSFER_ENV: &[Field] = &[
    f("sourceContainerName", Ty::Str),
    f(
        "sourceContainerNameFrom",
        Ty::Ptr(&Ty::Struct(&[f(
            "fieldRef",
            Ty::Ptr(&Ty::Struct(OBJECT_FIELD)),
        )])),
    ),
    f("envName", Ty::Str),
    f("envNames", Ty::Slice(STR)),
];
const RESOURCES_POLICY: &[Field] = &[
    req("targetContainersMode", Ty::Str),
    f("targetContainersNameRegex", Ty::Str),
    req(
        "resourcesExpr",
        Ty::Struct(&[
            f("limits", Ty::Ptr(&Ty::Struct(CPU_MEMORY))),
            f("requests", Ty::Ptr(&Ty::Struct(CPU_MEMORY))),
        ]),
    ),
];
const CPU_MEMORY: &[Field] = &[f("cpu", Ty::Str), f("memory", Ty::Str)];

// k8s.io/api/core/v1 v0.32 Container and what it nests, in declaration order.
const CONTAINER: &[Field] = &[
    req("name", Ty::Str),
    f("image", Ty::Str),
    f("command", Ty::Slice(STR)),
    f("args", Ty::Slice(STR)),
    f("workingDir", Ty::Str),
    f("ports", Ty::Slice(&Ty::Struct(CONTAINER_PORT))),
    f("envFrom", Ty::Slice(&Ty::Struct(ENV_FROM))),
    f("env", Ty::Slice(&Ty::Struct(ENV_VAR))),
    f("resources", Ty::Struct(RESOURCES)),
    f("resizePolicy", Ty::Slice(&Ty::Struct(RESIZE_POLICY))),
    f("restartPolicy", Ty::Ptr(STR)),
    f("volumeMounts", Ty::Slice(&Ty::Struct(VOLUME_MOUNT))),
    f("volumeDevices", Ty::Slice(&Ty::Struct(VOLUME_DEVICE))),
    f("livenessProbe", Ty::Ptr(&Ty::Struct(PROBE))),
    f("readinessProbe", Ty::Ptr(&Ty::Struct(PROBE))),
    f("startupProbe", Ty::Ptr(&Ty::Struct(PROBE))),
    f("lifecycle", Ty::Ptr(&Ty::Struct(LIFECYCLE))),
    f("terminationMessagePath", Ty::Str),
    f("terminationMessagePolicy", Ty::Str),
    f("imagePullPolicy", Ty::Str),
    f("securityContext", Ty::Ptr(&Ty::Struct(SECURITY_CONTEXT))),
    f("stdin", Ty::Bool),
    f("stdinOnce", Ty::Bool),
    f("tty", Ty::Bool),
];
const CONTAINER_PORT: &[Field] = &[
    f("name", Ty::Str),
    f("hostPort", Ty::Int32),
    req("containerPort", Ty::Int32),
    f("protocol", Ty::Str),
    f("hostIP", Ty::Str),
];
const ENV_FROM: &[Field] = &[
    f("prefix", Ty::Str),
    f("configMapRef", Ty::Ptr(&Ty::Struct(ENV_SOURCE))),
    f("secretRef", Ty::Ptr(&Ty::Struct(ENV_SOURCE))),
];
/// ConfigMapEnvSource and SecretEnvSource.
const ENV_SOURCE: &[Field] = &[inline(LOCAL_OBJECT), f("optional", Ty::Ptr(BOOL))];
const LOCAL_OBJECT: &[Field] = &[f("name", Ty::Str)];
const ENV_VAR: &[Field] = &[
    req("name", Ty::Str),
    f("value", Ty::Str),
    f(
        "valueFrom",
        Ty::Ptr(&Ty::Struct(&[
            f("fieldRef", Ty::Ptr(&Ty::Struct(OBJECT_FIELD))),
            f("resourceFieldRef", Ty::Ptr(&Ty::Struct(RESOURCE_FIELD))),
            f("configMapKeyRef", Ty::Ptr(&Ty::Struct(KEY_SELECTOR))),
            f("secretKeyRef", Ty::Ptr(&Ty::Struct(KEY_SELECTOR))),
        ])),
    ),
];
const OBJECT_FIELD: &[Field] = &[f("apiVersion", Ty::Str), req("fieldPath", Ty::Str)];
const RESOURCE_FIELD: &[Field] = &[
    f("containerName", Ty::Str),
    req("resource", Ty::Str),
    f("divisor", Ty::Quantity),
];
/// ConfigMapKeySelector and SecretKeySelector.
const KEY_SELECTOR: &[Field] = &[
    inline(LOCAL_OBJECT),
    req("key", Ty::Str),
    f("optional", Ty::Ptr(BOOL)),
];
const RESOURCES: &[Field] = &[
    f("limits", Ty::Map(&Ty::Quantity)),
    f("requests", Ty::Map(&Ty::Quantity)),
    f(
        "claims",
        Ty::Slice(&Ty::Struct(&[req("name", Ty::Str), f("request", Ty::Str)])),
    ),
];
const RESIZE_POLICY: &[Field] = &[req("resourceName", Ty::Str), req("restartPolicy", Ty::Str)];
const VOLUME_MOUNT: &[Field] = &[
    req("name", Ty::Str),
    f("readOnly", Ty::Bool),
    f("recursiveReadOnly", Ty::Ptr(STR)),
    req("mountPath", Ty::Str),
    f("subPath", Ty::Str),
    f("mountPropagation", Ty::Ptr(STR)),
    f("subPathExpr", Ty::Str),
];
const VOLUME_DEVICE: &[Field] = &[req("name", Ty::Str), req("devicePath", Ty::Str)];
const PROBE: &[Field] = &[
    inline(&[
        f("exec", Ty::Ptr(&Ty::Struct(EXEC))),
        f("httpGet", Ty::Ptr(&Ty::Struct(HTTP_GET))),
        f("tcpSocket", Ty::Ptr(&Ty::Struct(TCP_SOCKET))),
        f(
            "grpc",
            Ty::Ptr(&Ty::Struct(&[
                req("port", Ty::Int32),
                req("service", Ty::Ptr(STR)),
            ])),
        ),
    ]),
    f("initialDelaySeconds", Ty::Int32),
    f("timeoutSeconds", Ty::Int32),
    f("periodSeconds", Ty::Int32),
    f("successThreshold", Ty::Int32),
    f("failureThreshold", Ty::Int32),
    f("terminationGracePeriodSeconds", Ty::Ptr(I64)),
];
const EXEC: &[Field] = &[f("command", Ty::Slice(STR))];
const HTTP_GET: &[Field] = &[
    f("path", Ty::Str),
    req("port", Ty::IntOrString),
    f("host", Ty::Str),
    f("scheme", Ty::Str),
    f(
        "httpHeaders",
        Ty::Slice(&Ty::Struct(&[req("name", Ty::Str), req("value", Ty::Str)])),
    ),
];
const TCP_SOCKET: &[Field] = &[req("port", Ty::IntOrString), f("host", Ty::Str)];
const LIFECYCLE: &[Field] = &[
    f("postStart", Ty::Ptr(&Ty::Struct(LIFECYCLE_HANDLER))),
    f("preStop", Ty::Ptr(&Ty::Struct(LIFECYCLE_HANDLER))),
];
const LIFECYCLE_HANDLER: &[Field] = &[
    f("exec", Ty::Ptr(&Ty::Struct(EXEC))),
    f("httpGet", Ty::Ptr(&Ty::Struct(HTTP_GET))),
    f("tcpSocket", Ty::Ptr(&Ty::Struct(TCP_SOCKET))),
    f("sleep", Ty::Ptr(&Ty::Struct(&[req("seconds", Ty::Int64)]))),
];
const SECURITY_CONTEXT: &[Field] = &[
    f(
        "capabilities",
        Ty::Ptr(&Ty::Struct(&[
            f("add", Ty::Slice(STR)),
            f("drop", Ty::Slice(STR)),
        ])),
    ),
    f("privileged", Ty::Ptr(BOOL)),
    f(
        "seLinuxOptions",
        Ty::Ptr(&Ty::Struct(&[
            f("user", Ty::Str),
            f("role", Ty::Str),
            f("type", Ty::Str),
            f("level", Ty::Str),
        ])),
    ),
    f(
        "windowsOptions",
        Ty::Ptr(&Ty::Struct(&[
            f("gmsaCredentialSpecName", Ty::Ptr(STR)),
            f("gmsaCredentialSpec", Ty::Ptr(STR)),
            f("runAsUserName", Ty::Ptr(STR)),
            f("hostProcess", Ty::Ptr(BOOL)),
        ])),
    ),
    f("runAsUser", Ty::Ptr(I64)),
    f("runAsGroup", Ty::Ptr(I64)),
    f("runAsNonRoot", Ty::Ptr(BOOL)),
    f("readOnlyRootFilesystem", Ty::Ptr(BOOL)),
    f("allowPrivilegeEscalation", Ty::Ptr(BOOL)),
    f("procMount", Ty::Ptr(STR)),
    f("seccompProfile", Ty::Ptr(&Ty::Struct(PROFILE))),
    f("appArmorProfile", Ty::Ptr(&Ty::Struct(PROFILE))),
];
/// SeccompProfile and AppArmorProfile.
const PROFILE: &[Field] = &[req("type", Ty::Str), f("localhostProfile", Ty::Ptr(STR))];

/// Go decodes JSON null like an absent field.
fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

fn type_error(path: &str, expected: &'static str) -> Error {
    Error::Type {
        path: path.to_owned(),
        expected,
    }
}

/// Whether Go's omitempty leaves this field out (after decoding `v`).
fn is_empty(v: Option<&Value>, ty: &Ty, path: &str) -> Result<bool> {
    let v = present(v);
    Ok(match ty {
        Ty::Str => str_of(v, path)?.is_empty(),
        Ty::Bool => !bool_of(v, path)?,
        Ty::Int32 | Ty::Int64 => int_of(v, ty, path)? == 0,
        Ty::Ptr(_) => v.is_none(),
        Ty::Slice(_) => match v {
            None => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(_) => return Err(type_error(path, "array")),
        },
        Ty::Map(_) => match v {
            None => true,
            Some(Value::Object(m)) => m.is_empty(),
            Some(_) => return Err(type_error(path, "object")),
        },
        Ty::Quantity | Ty::IntOrString | Ty::Struct(_) => false,
    })
}

fn str_of<'a>(v: Option<&'a Value>, path: &str) -> Result<&'a str> {
    match v {
        None => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(type_error(path, "string")),
    }
}

fn bool_of(v: Option<&Value>, path: &str) -> Result<bool> {
    match v {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(type_error(path, "bool")),
    }
}

fn int_of(v: Option<&Value>, ty: &Ty, path: &str) -> Result<i64> {
    let Some(v) = v else { return Ok(0) };
    let (n, expected) = match ty {
        Ty::Int32 => (v.as_i64().filter(|n| i32::try_from(*n).is_ok()), "int32"),
        _ => (v.as_i64(), "int64"),
    };
    n.ok_or_else(|| type_error(path, expected))
}

fn write_value(out: &mut String, v: Option<&Value>, ty: &Ty, path: &str) -> Result<()> {
    let v = present(v);
    match ty {
        Ty::Str => write_str(out, str_of(v, path)?),
        Ty::Bool => out.push_str(if bool_of(v, path)? { "true" } else { "false" }),
        Ty::Int32 | Ty::Int64 => out.push_str(&int_of(v, ty, path)?.to_string()),
        Ty::Quantity => {
            let text = match v {
                None => "0".to_owned(),
                Some(Value::String(s)) => s.clone(),
                // Go reads an unquoted number from its literal text.
                Some(Value::Number(n)) => n.to_string(),
                Some(_) => return Err(type_error(path, "quantity")),
            };
            let canonical = quantity::canonical(&text).map_err(|source| Error::Quantity {
                path: path.to_owned(),
                source,
            })?;
            write_str(out, &canonical);
        }
        Ty::IntOrString => match v {
            Some(Value::String(s)) => write_str(out, s),
            v => out.push_str(&int_of(v, &Ty::Int32, path)?.to_string()),
        },
        Ty::Ptr(inner) => match v {
            None => out.push_str("null"),
            Some(v) => write_value(out, Some(v), inner, path)?,
        },
        Ty::Slice(item) => match v {
            None => out.push_str("null"),
            Some(Value::Array(items)) => {
                out.push('[');
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_value(out, Some(x), item, &format!("{path}[{i}]"))?;
                }
                out.push(']');
            }
            Some(_) => return Err(type_error(path, "array")),
        },
        Ty::Map(value) => match v {
            None => out.push_str("null"),
            Some(Value::Object(m)) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(out, k);
                    out.push(':');
                    write_value(out, m.get(k), value, &format!("{path}.{k}"))?;
                }
                out.push('}');
            }
            Some(_) => return Err(type_error(path, "object")),
        },
        Ty::Struct(fields) => {
            let object = match v {
                None => None,
                Some(Value::Object(m)) => Some(m),
                Some(_) => return Err(type_error(path, "object")),
            };
            out.push('{');
            let mut first = true;
            write_fields(out, object, fields, path, &mut first)?;
            out.push('}');
        }
    }
    Ok(())
}

fn write_fields(
    out: &mut String,
    object: Option<&serde_json::Map<String, Value>>,
    fields: &[Field],
    path: &str,
    first: &mut bool,
) -> Result<()> {
    for field in fields {
        if field.inline {
            if let Ty::Struct(inner) = &field.ty {
                write_fields(out, object, inner, path, first)?;
            }
            continue;
        }
        let v = object.and_then(|m| m.get(field.name));
        let at = if path.is_empty() {
            field.name.to_owned()
        } else {
            format!("{path}.{}", field.name)
        };
        if field.omitempty && is_empty(v, &field.ty, &at)? {
            continue;
        }
        if !*first {
            out.push(',');
        }
        *first = false;
        write_str(out, field.name);
        out.push(':');
        write_value(out, v, &field.ty, &at)?;
    }
    Ok(())
}

/// A JSON string as Go's `encoding/json` writes it.
fn write_str(out: &mut String, s: &str) {
    crate::gojson::write_string(out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_minimal_container_carries_the_structs_go_never_omits() {
        let spec = json!({"containers": [{"name": "s", "image": "busybox"}]});
        assert_eq!(
            encode(&spec).expect("encodes"),
            r#"{"containers":[{"name":"s","image":"busybox","resources":{},"upgradeStrategy":{},"shareVolumePolicy":{}}]}"#
        );
    }

    #[test]
    fn quantities_are_written_canonical() {
        let written = json!({"containers": [{"name": "s",
            "resources": {"limits": {"memory": "1024Mi", "cpu": "0.1"}}}]});
        let canonical = json!({"containers": [{"name": "s",
            "resources": {"limits": {"cpu": "100m", "memory": "1Gi"}}}]});
        assert_eq!(encode(&written), encode(&canonical));
        assert_eq!(hash(&written), hash(&canonical));
    }

    #[test]
    fn what_go_would_not_decode_names_the_field() {
        let spec = json!({"containers": [{"name": "s", "ports": [{"containerPort": "80"}]}]});
        assert_eq!(
            encode(&spec),
            Err(Error::Type {
                path: "containers[0].ports[0].containerPort".into(),
                expected: "int32"
            })
        );
        let spec = json!({"containers": [{"name": "s", "resources": {"limits": {"cpu": "lots"}}}]});
        let e = encode(&spec).expect_err("bad quantity");
        assert!(
            e.to_string()
                .starts_with("containers[0].resources.limits.cpu"),
            "{e}"
        );
    }

    #[test]
    fn strings_are_escaped_as_go_does() {
        let mut out = String::new();
        write_str(&mut out, "a<b>&\"\\\n\u{1}\u{2028}é\u{8}");
        assert_eq!(out, r#""a\u003cb\u003e\u0026\"\\\n\u0001\u2028é\b""#);
    }

    #[test]
    fn safe_encoding_maps_hex_digits_as_apimachinery_does() {
        // '0' (48) % 27 = 21 -> '4'; 'a' (97) % 27 = 16 -> 'v'; 'f' (102) % 27 = 21 -> '4'.
        assert_eq!(safe_encode("0af"), "4v4");
    }
}
