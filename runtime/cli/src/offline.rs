//! An offline cache for `bosun plugin test`: Kubernetes objects read from JSON or YAML
//! files (one object, a multi-document YAML stream, or a `List`), served through the
//! host's cache interface.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use bosun_host::contract::ObjectRef;
use bosun_host::host::CallInfo;
use bosun_host::host::cache::{Cache, ListQuery};
use serde_json::Value;

/// Objects keyed by (api-version, kind, namespace, name), kept as JSON text.
#[derive(Debug, Default)]
pub struct OfflineCache {
    objects: BTreeMap<(String, String, Option<String>, String), Arc<str>>,
}

impl OfflineCache {
    /// Adds one object.
    pub fn insert(&mut self, object: &Value) -> anyhow::Result<ObjectRef> {
        let r =
            ObjectRef::of(object).context("an object needs apiVersion, kind and metadata.name")?;
        let key = (
            r.api_version.clone(),
            r.kind.clone(),
            r.namespace.clone(),
            r.name.clone(),
        );
        self.objects.insert(key, Arc::from(object.to_string()));
        Ok(r)
    }

    /// Adds every object of a file; returns their references.
    pub fn load_file(&mut self, path: &Path) -> anyhow::Result<Vec<ObjectRef>> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let docs = parse_documents(&text)
            .with_context(|| format!("{} is not valid JSON or YAML", path.display()))?;
        let mut refs = Vec::new();
        for doc in docs {
            match doc.get("items").and_then(Value::as_array) {
                Some(items)
                    if doc
                        .get("kind")
                        .and_then(Value::as_str)
                        .is_some_and(|k| k.ends_with("List")) =>
                {
                    for item in items {
                        refs.push(
                            self.insert(item)
                                .with_context(|| format!("in {}", path.display()))?,
                        );
                    }
                }
                _ => refs.push(
                    self.insert(&doc)
                        .with_context(|| format!("in {}", path.display()))?,
                ),
            }
        }
        Ok(refs)
    }

    /// Adds every `.json`, `.yaml` and `.yml` file of a folder.
    pub fn load_dir(&mut self, dir: &Path) -> anyhow::Result<usize> {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read the cache folder {}", dir.display()))?;
        let mut paths: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("json" | "yaml" | "yml")
                )
            })
            .collect();
        paths.sort();
        let mut n = 0;
        for path in paths {
            n += self.load_file(&path)?.len();
        }
        Ok(n)
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

/// Parses JSON, or YAML with one or more documents (empty documents are skipped).
pub fn parse_documents(text: &str) -> anyhow::Result<Vec<Value>> {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return Ok(vec![v]);
    }
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v: Value = serde::Deserialize::deserialize(doc)?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    if docs.is_empty() {
        bail!("no object in it");
    }
    Ok(docs)
}

impl Cache for OfflineCache {
    fn get(&self, _: &CallInfo, target: &ObjectRef) -> Option<Arc<str>> {
        let key = (
            target.api_version.clone(),
            target.kind.clone(),
            target.namespace.clone(),
            target.name.clone(),
        );
        self.objects.get(&key).cloned()
    }

    fn list(&self, _: &CallInfo, query: &ListQuery<'_>) -> Vec<Arc<str>> {
        self.objects
            .iter()
            .filter(|((av, kind, ns, _), _)| {
                av == query.api_version
                    && kind == query.kind
                    && query.namespace.is_none_or(|q| ns.as_deref() == Some(q))
            })
            .filter(|(_, json)| {
                query.selector.is_none_or(|s| {
                    serde_json::from_str::<Value>(json).is_ok_and(|v| s.matches_object(&v))
                })
            })
            .map(|(_, json)| json.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multi_document_yaml_and_lists() {
        let docs = parse_documents("a: 1\n---\nb: 2\n---\n").expect("valid");
        assert_eq!(docs.len(), 2);
        let mut cache = OfflineCache::default();
        let list = serde_json::json!({"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Node","metadata":{"name":"n1"}},
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"d","labels":{"app":"web"}}}]});
        for item in list["items"].as_array().expect("items") {
            cache.insert(item).expect("named");
        }
        assert_eq!(cache.len(), 2);
        assert!(parse_documents("{ not: [valid").is_err());
    }
}
