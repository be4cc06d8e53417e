//! Just enough of Kubernetes' protobuf encoding for what kubectl sends that way.
//!
//! kubectl's typed clients (`kubectl create namespace`, `kubectl create configmap`,
//! `kubectl drain`'s evictions) send `application/vnd.kubernetes.protobuf` bodies and do
//! not fall back to JSON. This decodes the envelope (`k8s\0` + `runtime.Unknown`), then
//! the object's metadata (name, generateName, namespace, labels, annotations) and, for a
//! ConfigMap, its `data`. Other kinds are refused with 415.

use crate::status::{ApiError, Result};
use serde_json::{Map, Value, json};

/// One protobuf field: number and payload (varint or length-delimited).
enum Field<'a> {
    Varint,
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
            0 => {
                varint(b, &mut i)?;
                out.push((num, Field::Varint));
            }
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
        Field::Varint => None,
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
        match n {
            1 => {
                meta.insert("name".into(), json!(string(f)?));
            }
            2 => {
                meta.insert("generateName".into(), json!(string(f)?));
            }
            3 => {
                meta.insert("namespace".into(), json!(string(f)?));
            }
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

/// Decodes a protobuf body into the JSON object it stands for.
pub(crate) fn decode(body: &[u8]) -> Result<Value> {
    let unsupported = |why: &str| {
        ApiError::unsupported_media_type(format!(
            "protobuf bodies are supported for Namespace and ConfigMap only ({why}); send application/json"
        ))
    };
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
    if !matches!(kind.as_str(), "Namespace" | "ConfigMap") {
        return Err(unsupported(&kind));
    }
    let mut obj = json!({"apiVersion": api_version, "kind": kind, "metadata": {}});
    let mut data = Vec::new();
    let fs = fields(raw).ok_or_else(bad)?;
    for (n, f) in &fs {
        match (n, f) {
            (1, Field::Bytes(m)) => obj["metadata"] = object_meta(m).ok_or_else(bad)?,
            (2, f) if kind == "ConfigMap" => data.push(f),
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
}
