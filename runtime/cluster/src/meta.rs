//! Small helpers over object metadata: timestamps, uids, names and JSON paths.

use serde_json::{Map, Value};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The current time as an RFC 3339 timestamp with second precision, as Kubernetes writes it.
pub(crate) fn now() -> String {
    rfc3339(SystemTime::now())
}

// Times as Kubernetes writes `metav1.Time` (UTC, whole seconds), from bosun-api.
pub(crate) use bosun_api::time::{parse_rfc3339, rfc3339_of as rfc3339};

/// A random 64-bit number; std's `RandomState` is seeded per process, the counter makes
/// every call differ.
pub(crate) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// A random version-4 UUID.
pub(crate) fn uid() -> String {
    let (a, b) = (random_u64(), random_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// Five lowercase alphanumerics, the suffix of `generateName` and of controller pod names.
pub(crate) fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = random_u64();
    (0..5)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

// Kubernetes' name rules, from bosun-api.
pub(crate) use bosun_api::name::{is_dns_label, is_dns_subdomain};

/// Looks up a dotted path (`spec.nodeName`) in an object.
pub(crate) fn path<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(obj, |v, k| v.get(k))
}

/// A string at a dotted path, or "" when missing.
pub(crate) fn str_at<'a>(obj: &'a Value, dotted: &str) -> &'a str {
    path(obj, dotted).and_then(Value::as_str).unwrap_or("")
}

/// The object's `metadata`, created if missing or not an object.
pub(crate) fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    object_mut(obj, "metadata")
}

/// The map under `key`, replacing a missing or non-object value with `{}`.
pub(crate) fn object_mut<'a>(obj: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let Value::Object(map) = obj else {
        unreachable!("just made an object")
    };
    let entry = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    match entry {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// `metadata.name`.
pub(crate) fn name(obj: &Value) -> &str {
    str_at(obj, "metadata.name")
}

/// `metadata.namespace`.
pub(crate) fn namespace(obj: &Value) -> &str {
    str_at(obj, "metadata.namespace")
}

/// `metadata.uid`.
pub(crate) fn uid_of(obj: &Value) -> &str {
    str_at(obj, "metadata.uid")
}

/// `metadata.labels` as a map (empty when missing).
pub(crate) fn labels(obj: &Value) -> Map<String, Value> {
    path(obj, "metadata.labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// `metadata.finalizers` (empty when missing).
pub(crate) fn finalizers(obj: &Value) -> Vec<String> {
    path(obj, "metadata.finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `metadata.deletionTimestamp` is set.
pub(crate) fn is_deleting(obj: &Value) -> bool {
    path(obj, "metadata.deletionTimestamp").is_some_and(|v| !v.is_null())
}

/// The uids in `metadata.ownerReferences`, borrowed.
pub(crate) fn owner_uid_refs(obj: &Value) -> impl Iterator<Item = &str> {
    path(obj, "metadata.ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("uid").and_then(Value::as_str))
}

/// The `resourceVersion` of an object parsed as the store's counter.
pub(crate) fn resource_version(obj: &Value) -> Option<u64> {
    str_at(obj, "metadata.resourceVersion").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_names() {
        assert!(is_dns_subdomain("web-0.example"));
        assert!(!is_dns_subdomain("Web"));
        assert!(!is_dns_subdomain("-a"));
        assert!(!is_dns_subdomain(""));
        assert!(!is_dns_label("a.b"));
        assert!(is_dns_label("kube-system"));
    }

    #[test]
    fn uids_differ_and_look_like_uuids() {
        let (a, b) = (uid(), uid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(random_suffix().len(), 5);
    }
}
