//! The answer as one JSON patch (RFC 6902): whole lists replaced where they changed,
//! annotations set one by one (their keys escaped as JSON pointers, `/` as `~1`).

use bosun_sdk::admission::{allow, patch};
use serde_json::{Value, json};

/// The operations of one answer.
#[derive(Default)]
pub(crate) struct Ops(Vec<Value>);

impl Ops {
    /// Sets the list at `path` of `object` to `items` when it differs. `add` replaces an
    /// existing member and creates a missing one (the parent, `spec`, always exists).
    pub(crate) fn set_list(&mut self, object: &Value, path: &str, items: Vec<Value>) {
        let current = object.pointer(path);
        let unchanged = match current {
            Some(Value::Array(a)) => *a == items,
            None | Some(Value::Null) => items.is_empty(),
            Some(_) => false,
        };
        if !unchanged {
            self.0
                .push(json!({"op": "add", "path": path, "value": items}));
        }
    }

    /// Sets annotations (`current` is the object's `metadata.annotations`).
    pub(crate) fn annotations(&mut self, current: Option<&Value>, set: &[(&str, String)]) {
        let Some(Value::Object(current)) = current else {
            let all: serde_json::Map<String, Value> = set
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
                .collect();
            if !all.is_empty() {
                self.0
                    .push(json!({"op": "add", "path": "/metadata/annotations", "value": all}));
            }
            return;
        };
        for (key, value) in set {
            if current.get(*key).and_then(Value::as_str) == Some(value.as_str()) {
                continue;
            }
            self.0.push(json!({
                "op": "add",
                "path": format!("/metadata/annotations/{}", escape(key)),
                "value": value,
            }));
        }
    }

    /// The AdmissionReview answer: allowed, with the patch when there is one.
    pub(crate) fn answer(self, review: &Value) -> Value {
        if self.0.is_empty() {
            allow(review)
        } else {
            patch(review, &Value::Array(self.0))
        }
    }
}

/// A JSON-pointer reference token (RFC 6901): `~` as `~0`, `/` as `~1`.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}
