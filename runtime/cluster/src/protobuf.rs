//! Just enough of Kubernetes' protobuf encoding for what kubectl sends that way.
//!
//! kubectl's typed clients (`kubectl create namespace|configmap|deployment`,
//! `kubectl drain`'s evictions) send `application/vnd.kubernetes.protobuf` bodies and do
//! not fall back to JSON. This decodes the envelope (`k8s\0` + `runtime.Unknown`), then
//! the object's metadata (name, generateName, namespace, labels, annotations) and, for a
//! ConfigMap, its `data`, for a Deployment what `kubectl create deployment` sets, for an
//! Eviction its metadata and deleteOptions. Other kinds are refused with 415.

use crate::status::{ApiError, Result};
use serde_json::{Map, Value, json};

/// One protobuf field: number and payload (varint or length-delimited).
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i)?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn fields(b: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i)?;
        let (num, wire) = (key >> 3, key & 7);
        match wire {
            0 => out.push((num, Field::Varint(varint(b, &mut i)?))),
            2 => {
                let len = usize::try_from(varint(b, &mut i)?).ok()?;
                let end = i.checked_add(len)?;
                out.push((num, Field::Bytes(b.get(i..end)?)));
                i = end;
            }
            1 => i = i.checked_add(8)?,
            5 => i = i.checked_add(4)?,
            _ => return None,
        }
    }
    Some(out)
}

fn string(f: &Field<'_>) -> Option<String> {
    match f {
        Field::Bytes(b) => String::from_utf8(b.to_vec()).ok(),
        Field::Varint(_) => None,
    }
}

fn map_entry(f: &Field<'_>) -> Option<(String, String)> {
    let Field::Bytes(b) = f else { return None };
    let (mut k, mut v) = (String::new(), String::new());
    for (n, f) in fields(b)? {
        match n {
            1 => k = string(&f)?,
            2 => v = string(&f)?,
            _ => {}
        }
    }
    Some((k, v))
}

fn string_map(entries: &[&Field<'_>]) -> Option<Value> {
    let mut m = Map::new();
    for e in entries {
        let (k, v) = map_entry(e)?;
        m.insert(k, Value::String(v));
    }
    Some(Value::Object(m))
}

fn object_meta(b: &[u8]) -> Option<Value> {
    let fs = fields(b)?;
    let mut meta = Map::new();
    let mut labels = Vec::new();
    let mut annotations = Vec::new();
    for (n, f) in &fs {
        // Protobuf writes empty strings explicitly; JSON would omit them.
        let mut set = |k: &str| -> Option<()> {
            let v = string(f)?;
            if !v.is_empty() {
                meta.insert(k.into(), json!(v));
            }
            Some(())
        };
        match n {
            1 => set("name")?,
            2 => set("generateName")?,
            3 => set("namespace")?,
            11 => labels.push(f),
            12 => annotations.push(f),
            _ => {}
        }
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), string_map(&labels)?);
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), string_map(&annotations)?);
    }
    Some(Value::Object(meta))
}

fn label_selector(b: &[u8]) -> Option<Value> {
    let labels: Vec<Field<'_>> = fields(b)?
        .into_iter()
        .filter(|(n, _)| *n == 1)
        .map(|(_, f)| f)
        .collect();
    let refs: Vec<&Field<'_>> = labels.iter().collect();
    Some(json!({"matchLabels": string_map(&refs)?}))
}

/// What `kubectl create deployment` sets: replicas, selector, and a template whose
/// containers have a name, an image and container ports.
fn deployment_spec(b: &[u8]) -> Option<Value> {
    let mut spec = json!({});
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Varint(r)) => spec["replicas"] = json!(r),
            (2, Field::Bytes(sel)) => spec["selector"] = label_selector(sel)?,
            (3, Field::Bytes(tpl)) => {
                let mut template = json!({"metadata": {}, "spec": {"containers": []}});
                for (n, f) in fields(tpl)? {
                    match (n, f) {
                        (1, Field::Bytes(m)) => template["metadata"] = object_meta(m)?,
                        (2, Field::Bytes(ps)) => template["spec"] = pod_spec(ps)?,
                        _ => {}
                    }
                }
                spec["template"] = template;
            }
            _ => {}
        }
    }
    Some(spec)
}

fn pod_spec(b: &[u8]) -> Option<Value> {
    let mut containers = Vec::new();
    for (n, f) in fields(b)? {
        if let (2, Field::Bytes(c)) = (n, f) {
            let mut container = json!({});
            let mut ports = Vec::new();
            for (n, f) in fields(c)? {
                match (n, &f) {
                    (1, _) => container["name"] = json!(string(&f)?),
                    (2, _) => container["image"] = json!(string(&f)?),
                    (6, Field::Bytes(p)) => {
                        for (n, f) in fields(p)? {
                            if let (3, Field::Varint(port)) = (n, f) {
                                ports.push(json!({"containerPort": port, "protocol": "TCP"}));
                            }
                        }
                    }
                    _ => {}
                }
            }
            if !ports.is_empty() {
                container["ports"] = Value::Array(ports);
            }
            containers.push(container);
        }
    }
    Some(json!({"containers": containers}))
}

/// The `runtime.Unknown` envelope: apiVersion, kind and the object's bytes.
fn envelope(body: &[u8]) -> Result<(String, String, &[u8])> {
    let bad = || ApiError::bad_request("malformed protobuf body");
    let rest = body.strip_prefix(b"k8s\0").ok_or_else(bad)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, f) in fields(rest).ok_or_else(bad)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (n, f) in fields(tm).ok_or_else(bad)? {
                    match n {
                        1 => api_version = string(&f).ok_or_else(bad)?,
                        2 => kind = string(&f).ok_or_else(bad)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    Ok((api_version, kind, raw))
}

/// `meta/v1` DeleteOptions: grace period, preconditions, propagation policy, dryRun.
fn delete_options(b: &[u8]) -> Option<Value> {
    let mut opts = Map::new();
    let mut dry_run = Vec::new();
    for (n, f) in fields(b)? {
        match (n, &f) {
            (1, Field::Varint(g)) => {
                // int64, two's complement.
                opts.insert("gracePeriodSeconds".into(), json!(*g as i64));
            }
            (2, Field::Bytes(p)) => {
                let mut pre = Map::new();
                for (n, f) in fields(p)? {
                    match n {
                        1 => pre.insert("uid".into(), json!(string(&f)?)),
                        2 => pre.insert("resourceVersion".into(), json!(string(&f)?)),
                        _ => None,
                    };
                }
                opts.insert("preconditions".into(), Value::Object(pre));
            }
            (3, Field::Varint(o)) => {
                opts.insert("orphanDependents".into(), json!(*o != 0));
            }
            (4, _) => {
                let p = string(&f)?;
                if !p.is_empty() {
                    opts.insert("propagationPolicy".into(), json!(p));
                }
            }
            (5, _) => dry_run.push(json!(string(&f)?)),
            _ => {}
        }
    }
    if !dry_run.is_empty() {
        opts.insert("dryRun".into(), Value::Array(dry_run));
    }
    Some(Value::Object(opts))
}

/// Decodes a protobuf `policy/v1` Eviction (what `kubectl drain` sends): its metadata
/// and deleteOptions, as JSON.
pub(crate) fn decode_eviction(body: &[u8]) -> Result<Value> {
    let bad = || ApiError::bad_request("malformed protobuf Eviction body");
    let (api_version, kind, raw) = envelope(body)?;
    if kind != "Eviction" {
        return Err(ApiError::bad_request(format!(
            "expected an Eviction body, got {kind:?}"
        )));
    }
    let mut obj = json!({"apiVersion": api_version, "kind": kind, "metadata": {}});
    for (n, f) in fields(raw).ok_or_else(bad)? {
        match (n, f) {
            (1, Field::Bytes(m)) => obj["metadata"] = object_meta(m).ok_or_else(bad)?,
            (2, Field::Bytes(d)) => obj["deleteOptions"] = delete_options(d).ok_or_else(bad)?,
            _ => {}
        }
    }
    Ok(obj)
}

/// Decodes a protobuf body into the JSON object it stands for.
pub(crate) fn decode(body: &[u8]) -> Result<Value> {
    let unsupported = |why: &str| {
        ApiError::unsupported_media_type(format!(
            "protobuf bodies are supported for Namespace, ConfigMap and Deployment only ({why}); send application/json"
        ))
    };
    let bad = || ApiError::bad_request("malformed protobuf body");
    let (api_version, kind, raw) = envelope(body)?;
    if !matches!(kind.as_str(), "Namespace" | "ConfigMap" | "Deployment") {
        return Err(unsupported(&kind));
    }
    let mut obj = json!({"apiVersion": api_version, "kind": kind, "metadata": {}});
    let mut data = Vec::new();
    let fs = fields(raw).ok_or_else(bad)?;
    for (n, f) in &fs {
        match (n, f) {
            (1, Field::Bytes(m)) => obj["metadata"] = object_meta(m).ok_or_else(bad)?,
            (2, f) if kind == "ConfigMap" => data.push(f),
            (2, Field::Bytes(spec)) if kind == "Deployment" => {
                obj["spec"] = deployment_spec(spec).ok_or_else(bad)?;
            }
            _ => {}
        }
    }
    if !data.is_empty() {
        obj["data"] = string_map(&data).ok_or_else(bad)?;
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(n << 3) | 2, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decodes_a_namespace() {
        let label = [field(1, b"team"), field(2, b"a")].concat();
        let meta = [field(1, b"demo"), field(11, &label)].concat();
        let raw = field(1, &meta);
        let tm = [field(1, b"v1"), field(2, b"Namespace")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &tm), field(2, &raw)].concat();
        let v = decode(&body).expect("decodes");
        assert_eq!(v["metadata"]["name"], "demo");
        assert_eq!(v["metadata"]["labels"]["team"], "a");
        assert_eq!(v["kind"], "Namespace");
        assert!(decode(b"k8s\0\xff").is_err());
        assert!(decode(b"nope").is_err());
    }

    // Random bodies, bare and inside a well-formed envelope, never panic the decoders and
    // are refused with a client error. `PROPTEST_CASES` sets the number of cases (256).
    proptest::proptest! {
        #[test]
        fn random_bodies_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128),
            kind in proptest::sample::select(vec!["Namespace", "ConfigMap", "Deployment", "Eviction"]),
        ) {
            let tm = [field(1, b"v1"), field(2, kind.as_bytes())].concat();
            let raw = &bytes[..bytes.len().min(120)];
            let enveloped = [b"k8s\0".to_vec(), field(1, &tm), field(2, raw)].concat();
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

    #[test]
    fn decodes_an_eviction() {
        let meta = [field(1, b"web-0"), field(3, b"demo")].concat();
        let pre = field(1, b"u-1");
        let opts = [field(2, &pre), field(5, b"All"), vec![(1 << 3), 30]].concat();
        let raw = [field(1, &meta), field(2, &opts)].concat();
        let tm = [field(1, b"policy/v1"), field(2, b"Eviction")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &tm), field(2, &raw)].concat();
        let v = decode_eviction(&body).expect("decodes");
        assert_eq!(v["metadata"]["name"], "web-0");
        assert_eq!(v["metadata"]["namespace"], "demo");
        assert_eq!(v["deleteOptions"]["preconditions"]["uid"], "u-1");
        assert_eq!(v["deleteOptions"]["dryRun"], json!(["All"]));
        assert_eq!(v["deleteOptions"]["gracePeriodSeconds"], 30);
        let ns = [
            b"k8s\0".to_vec(),
            field(1, &[field(1, b"v1"), field(2, b"Namespace")].concat()),
        ]
        .concat();
        assert!(decode_eviction(&ns).is_err());
    }
}
