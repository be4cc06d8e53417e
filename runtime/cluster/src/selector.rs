//! Label and field selectors, as `?labelSelector=` and `?fieldSelector=` spell them.

use bosun_api::Selector;
use serde_json::{Map, Value};

use crate::meta;
use crate::status::{ApiError, Result};

/// A parsed label selector; the empty selector matches everything. Parsing is
/// `bosun_api::Selector`'s (the one parser Bosun has); this type adds the API server's
/// error and a `LabelSelector` object that does not parse, which matches nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector(Option<Selector>);

impl Default for LabelSelector {
    fn default() -> Self {
        Self(Some(Selector::default()))
    }
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse(s: &str) -> Result<Self> {
        Selector::parse(s).map(|sel| Self(Some(sel))).map_err(|e| {
            ApiError::bad_request(format!("unable to parse requirement: {}", e.reason))
        })
    }

    /// Builds a selector from a `LabelSelector` object (`matchLabels`, `matchExpressions`);
    /// null is the empty selector, an invalid one matches nothing.
    pub fn from_object(sel: &Value) -> Self {
        Self(Selector::from_label_selector(sel).ok())
    }

    /// Whether the selector has no requirement.
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_some_and(Selector::is_empty)
    }

    /// Whether an object's labels satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.as_ref().is_some_and(|s| s.matches_object(obj))
    }

    /// Whether a label map satisfies every requirement.
    pub fn matches_labels(&self, labels: &Map<String, Value>) -> bool {
        self.0.as_ref().is_some_and(|s| s.matches_map(labels))
    }
}

/// A parsed field selector: `metadata.name=x,status.phase!=Running`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

/// The fields a selector may name; the real server allows a per-kind list, this one
/// the common ones for every kind.
const FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.schedulerName",
    "status.phase",
    "spec.unschedulable",
    "involvedObject.name",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.uid",
    "type",
    "regarding.name",
];

impl FieldSelector {
    /// Parses `a=b`, `a==b` and `a!=b` terms.
    pub fn parse(s: &str) -> Result<Self> {
        let mut terms = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (k, eq, v) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector: {term}"
                )));
            };
            let k = k.trim();
            if !FIELDS.contains(&k) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {k}"
                )));
            }
            terms.push((k.to_string(), eq, v.trim().to_string()));
        }
        Ok(Self(terms))
    }

    /// Whether the object satisfies every term; a missing field reads as "".
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(k, eq, v)| {
            let actual = match meta::path(obj, k) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Null) | None => {
                    if k == "spec.unschedulable" {
                        "false".into()
                    } else {
                        String::new()
                    }
                }
                Some(other) => other.to_string(),
            };
            (actual == *v) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p", "labels": labels}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    }

    #[test]
    fn label_operators() {
        let p = pod(json!({"app": "web", "tier": "front"}));
        let ok = |s: &str| LabelSelector::parse(s).expect("parses").matches(&p);
        assert!(ok("app=web"));
        assert!(ok("app==web,tier"));
        assert!(!ok("app!=web"));
        assert!(ok("app in (web, db)"));
        assert!(!ok("app notin (web,db)"));
        assert!(ok("tier notin (back)"));
        assert!(ok("!missing"));
        assert!(!ok("missing"));
        assert!(ok(""));
        assert!(LabelSelector::parse("app in web").is_err());
        // Kubernetes rejects empty terms rather than skipping them.
        assert!(LabelSelector::parse("app=web,").is_err());
        assert!(LabelSelector::parse("a,,b").is_err());
    }

    #[test]
    fn selector_objects() {
        let sel = LabelSelector::from_object(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]
        }));
        assert!(sel.matches(&pod(json!({"app": "web", "tier": "front"}))));
        assert!(!sel.matches(&pod(json!({"app": "web"}))));
    }

    #[test]
    fn fields() {
        let p = pod(json!({}));
        let ok = |s: &str| FieldSelector::parse(s).expect("parses").matches(&p);
        assert!(ok("metadata.name=p,spec.nodeName=n1"));
        assert!(ok("status.phase!=Pending"));
        assert!(!ok("metadata.namespace=x"));
        assert!(FieldSelector::parse("spec.bogus=1").is_err());
    }
}
