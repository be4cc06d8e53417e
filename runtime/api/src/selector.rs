//! Kubernetes label selectors (`app=web,tier in (a,b),!legacy`): parsing and matching.
//!
//! The one parser of Bosun: plugins declare selectors in their metadata and pass them to
//! `cache.list` (the host validates them at load time, the offline cache matches with
//! them), the embedded cluster answers `?labelSelector=` with it, and `LabelSelector`
//! objects (`matchLabels`, `matchExpressions`) become the same [`Selector`]. It follows
//! `k8s.io/apimachinery/pkg/labels`: an empty term (`a,,b`, a trailing comma) and an
//! empty value set (`k in ()`) are errors, the empty selector matches everything.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::name::{is_label_value, is_qualified_name};

/// A label selector that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {selector:?}: {reason}")]
pub struct Error {
    /// The selector as given.
    pub selector: String,
    /// What is wrong with it.
    pub reason: String,
}

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value` or `key==value`.
    Equals(String, String),
    /// `key!=value`.
    NotEquals(String, String),
    /// `key in (a,b)`.
    In(String, Vec<String>),
    /// `key notin (a,b)`.
    NotIn(String, Vec<String>),
    /// `key`.
    Exists(String),
    /// `!key`.
    NotExists(String),
}

/// A parsed selector: every requirement must hold. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// Parses Kubernetes selector syntax.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let err = |reason: &str| Error {
            selector: input.to_owned(),
            reason: reason.to_owned(),
        };
        let mut requirements = Vec::new();
        for part in split_top_level(input).map_err(|r| err(&r))? {
            let part = part.trim();
            if part.is_empty() {
                if input.trim().is_empty() {
                    continue;
                }
                return Err(err("empty requirement"));
            }
            requirements.push(parse_requirement(part).map_err(|r| err(&r))?);
        }
        Ok(Selector { requirements })
    }

    /// A `LabelSelector` object (`matchLabels`, `matchExpressions` with `In`, `NotIn`,
    /// `Exists`, `DoesNotExist`) as a selector, checked as Kubernetes checks it. A null
    /// or empty object matches everything.
    pub fn from_label_selector(object: &Value) -> Result<Self, Error> {
        let err = |reason: String| Error {
            selector: object.to_string(),
            reason,
        };
        let mut requirements = Vec::new();
        if object.is_null() {
            return Ok(Selector { requirements });
        }
        let obj = object
            .as_object()
            .ok_or_else(|| err("a label selector must be an object".to_owned()))?;
        if let Some(labels) = obj.get("matchLabels").filter(|v| !v.is_null()) {
            let labels = labels
                .as_object()
                .ok_or_else(|| err("matchLabels must be an object".to_owned()))?;
            for (k, v) in labels {
                let v = v
                    .as_str()
                    .ok_or_else(|| err(format!("matchLabels[{k:?}] must be a string")))?;
                requirements.push(Requirement::Equals(
                    label_key(k).map_err(err)?,
                    label_value(v).map_err(err)?,
                ));
            }
        }
        let expressions = match obj.get("matchExpressions") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(a)) => a.as_slice(),
            Some(_) => return Err(err("matchExpressions must be a list".to_owned())),
        };
        for e in expressions {
            let key = e["key"]
                .as_str()
                .ok_or_else(|| err("a matchExpression has no key".to_owned()))?;
            let key = label_key(key).map_err(err)?;
            let values = match &e["values"] {
                Value::Null => Vec::new(),
                Value::Array(a) => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .ok_or_else(|| err(format!("the values of {key:?} must be strings")))
                            .and_then(|v| label_value(v).map_err(err))
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(err(format!("the values of {key:?} must be a list"))),
            };
            let op = e["operator"].as_str().unwrap_or("");
            requirements.push(match op {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(err(format!(
                        "for 'in', 'notin' operators, values set can't be empty ({key:?})"
                    )));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(err(format!(
                        "values set must be empty for exists and does not exist ({key:?})"
                    )));
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::NotExists(key),
                other => {
                    return Err(err(format!(
                        "{other:?} is not a valid label selector operator"
                    )));
                }
            });
        }
        Ok(Selector { requirements })
    }

    /// Whether the selector has no requirement (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, every one of which must hold.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether the labels `get` looks up satisfy every requirement.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|l| !vs.iter().any(|v| v == l)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }

    /// Whether labels (a `metadata.labels` map) satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }

    /// Whether a JSON label map satisfies every requirement (non-string values are absent).
    pub fn matches_map(&self, labels: &serde_json::Map<String, Value>) -> bool {
        self.matches_with(|k| labels.get(k).and_then(Value::as_str))
    }

    /// Whether a JSON object's `metadata.labels` satisfy the selector.
    pub fn matches_object(&self, object: &Value) -> bool {
        if self.requirements.is_empty() {
            return true;
        }
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object);
        self.matches_with(|k| labels?.get(k).and_then(Value::as_str))
    }
}

/// Kubernetes selector syntax, which [`Selector::parse`] reads back to an equal selector
/// (recordings keep `cache.list` queries in this form).
impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match r {
                Requirement::Equals(k, v) => write!(f, "{k}={v}")?,
                Requirement::NotEquals(k, v) => write!(f, "{k}!={v}")?,
                Requirement::In(k, vs) => write!(f, "{k} in ({})", vs.join(","))?,
                Requirement::NotIn(k, vs) => write!(f, "{k} notin ({})", vs.join(","))?,
                Requirement::Exists(k) => f.write_str(k)?,
                Requirement::NotExists(k) => write!(f, "!{k}")?,
            }
        }
        Ok(())
    }
}

fn split_top_level(input: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced ')'".to_owned());
                }
            }
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".to_owned());
    }
    parts.push(&input[start..]);
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(label_key(key.trim())?));
    }
    for (op, is_eq) in [("!=", false), ("==", true), ("=", true)] {
        if let Some((k, v)) = part.split_once(op) {
            let (k, v) = (label_key(k.trim())?, label_value(v.trim())?);
            return Ok(if is_eq {
                Requirement::Equals(k, v)
            } else {
                Requirement::NotEquals(k, v)
            });
        }
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let key = label_key(words[0])?;
        let rest = words[1].trim();
        let (negate, list) = if let Some(l) = rest.strip_prefix("notin") {
            (true, l)
        } else if let Some(l) = rest.strip_prefix("in") {
            (false, l)
        } else {
            return Err(format!("expected 'in' or 'notin' after {key:?}"));
        };
        let list = list
            .trim()
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .ok_or_else(|| format!("the values of {key:?} must be in parentheses"))?;
        if list.trim().is_empty() {
            return Err(format!(
                "for 'in', 'notin' operators, values set can't be empty ({key:?})"
            ));
        }
        let values = list
            .split(',')
            .map(|v| label_value(v.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(if negate {
            Requirement::NotIn(key, values)
        } else {
            Requirement::In(key, values)
        });
    }
    Ok(Requirement::Exists(label_key(part)?))
}

fn label_key(key: &str) -> Result<String, String> {
    if !is_qualified_name(key) {
        return Err(format!(
            "label key {key:?} is not valid (an optional DNS-subdomain prefix and '/', then at most 63 alphanumerics, '-', '_' or '.')"
        ));
    }
    Ok(key.to_owned())
}

fn label_value(value: &str) -> Result<String, String> {
    if !is_label_value(value) {
        return Err(format!("label value {value:?} is not valid"));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selector_objects() {
        let s = Selector::from_label_selector(&serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front"]},
                {"key": "legacy", "operator": "DoesNotExist"}
            ]
        }))
        .expect("valid");
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "front")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("legacy", "")
        ])));
        assert_eq!(s.to_string(), "app=web,tier in (front),!legacy");
        assert!(
            Selector::from_label_selector(&Value::Null)
                .expect("null")
                .is_empty()
        );
        for bad in [
            serde_json::json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
            serde_json::json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
            serde_json::json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
            serde_json::json!({"matchLabels": {"bad key": "x"}}),
            serde_json::json!({"matchLabels": {"a": 1}}),
        ] {
            assert!(Selector::from_label_selector(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_reads_back_to_an_equal_selector() {
        for input in [
            "",
            "app=web",
            "app!=web,tier in (a,b)",
            "x notin (c), !legacy, env",
        ] {
            let parsed = Selector::parse(input).expect("valid");
            let again = Selector::parse(&parsed.to_string()).expect("displayed form parses");
            assert_eq!(again, parsed, "{input:?} -> {parsed}");
        }
        assert_eq!(
            Selector::parse("a = 1 ,b in ( x , y )")
                .expect("valid")
                .to_string(),
            "a=1,b in (x,y)"
        );
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matches_every_operator() {
        let s = Selector::parse("app=web, tier in (a, b),env!=prod,!legacy,zone").expect("valid");
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "a"), ("zone", "z1")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "c"), ("zone", "z1")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "a"),
            ("zone", "z1"),
            ("legacy", "")
        ])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "a"),
            ("zone", "z1"),
            ("env", "prod")
        ])));
        let notin = Selector::parse("tier notin (a)").expect("valid");
        assert!(notin.matches(&labels(&[])));
        assert!(!notin.matches(&labels(&[("tier", "a")])));
    }

    #[test]
    fn empty_selector_matches_all() {
        assert!(
            Selector::parse("")
                .expect("valid")
                .matches(&labels(&[("a", "b")]))
        );
    }

    #[test]
    fn rejects_malformed_selectors() {
        for bad in [
            "app=",
            "=x",
            "tier in a,b",
            "tier in (a",
            "a,,b",
            "a=b,",
            ",a",
            "tier in ()",
            "bad key=1",
            "-x=1",
        ] {
            let parsed = Selector::parse(bad);
            // `app=` is valid in Kubernetes (empty value); everything else must fail.
            if bad == "app=" {
                assert!(parsed.is_ok(), "{bad}");
            } else {
                assert!(parsed.is_err(), "{bad} parsed as {parsed:?}");
            }
        }
    }
}
