//! A test admission plugin whose behaviour its init config chooses:
//!
//! - `{"require": "team"}`: denies objects without the label `team` ("pods need a team
//!   label"), allows the others;
//! - `{"add": {"k": "v"}}`: allows with a JSON patch adding the labels;
//! - both together: denies first, then patches;
//! - `{"mode": "loop"}`: never answers (an endless loop, stopped by the deadline);
//! - `{"mode": "error"}`: answers with an error;
//! - `{"mode": "bad-patch"}`: a patch that does not apply;
//! - `{"tag": "v2"}`: appended to denial messages, so two revisions can be told apart.

use bosun_sdk::admission::{Admission, allow, deny, patch};
use bosun_sdk::{Context, Error, Metadata};
use serde_json::{Value, json};

#[derive(serde::Deserialize, Default)]
struct Config {
    #[serde(default)]
    require: Option<String>,
    #[serde(default)]
    add: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    tag: Option<String>,
}

struct Webhook(Config);

impl Admission for Webhook {
    fn metadata() -> Metadata {
        Metadata::new("test-admission", "0.1.0").subscribe("v1", "Pod")
    }

    fn init(config: &str) -> Result<Self, Error> {
        let config: Config = if config.trim().is_empty() {
            Config::default()
        } else {
            serde_json::from_str(config).map_err(|e| Error::msg(format!("config: {e}")))?
        };
        Ok(Webhook(config))
    }

    fn review(&self, _ctx: &mut Context, review: Value) -> Result<Value, Error> {
        match self.0.mode.as_deref() {
            Some("loop") => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Some("error") => return Err(Error::msg("the plugin failed on purpose")),
            Some("bad-patch") => {
                return Ok(patch(
                    &review,
                    &json!([{"op": "replace", "path": "/spec/not/there", "value": 1}]),
                ));
            }
            _ => {}
        }
        let labels = review
            .pointer("/request/object/metadata/labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(label) = &self.0.require
            && !labels.contains_key(label)
        {
            let tag = self
                .0
                .tag
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default();
            return Ok(deny(&review, &format!("pods need a {label} label{tag}")));
        }
        if self.0.add.is_empty() {
            return Ok(allow(&review));
        }
        let mut ops = Vec::new();
        if review.pointer("/request/object/metadata/labels").is_none() {
            ops.push(json!({"op": "add", "path": "/metadata/labels", "value": {}}));
        }
        for (k, v) in &self.0.add {
            let key = k.replace('~', "~0").replace('/', "~1");
            ops.push(json!({"op": "add", "path": format!("/metadata/labels/{key}"), "value": v}));
        }
        Ok(patch(&review, &Value::Array(ops)))
    }
}

bosun_sdk::export_admission!(Webhook);
