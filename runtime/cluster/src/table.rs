//! `meta.k8s.io/v1` Tables: what `kubectl get` asks for (`Accept: ...;as=Table`), with
//! the columns kubectl users expect for the common kinds and NAME/AGE for the rest.

use crate::meta;
use crate::resource::ResourceType;
use serde_json::{Value, json};

/// kubectl's short age: `45s`, `3m`, `5h`, `2d`.
fn age(obj: &Value) -> String {
    let Some(t) = meta::parse_rfc3339(meta::str_at(obj, "metadata.creationTimestamp")) else {
        return "<unknown>".into();
    };
    since(t)
}

/// The short age of a time (seconds since the epoch).
fn since(t: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let s = (now - t).max(0);
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn num(obj: &Value, path: &str) -> i64 {
    meta::path(obj, path).and_then(Value::as_i64).unwrap_or(0)
}

fn condition(obj: &Value, t: &str) -> Option<String> {
    meta::path(obj, "status.conditions")?
        .as_array()?
        .iter()
        .find(|c| meta::str_at(c, "type") == t)
        .map(|c| meta::str_at(c, "status").to_string())
}

fn pod_status(pod: &Value) -> String {
    if meta::is_deleting(pod) {
        return "Terminating".into();
    }
    let waiting = meta::path(pod, "status.containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|c| {
            let r = meta::str_at(c, "state.waiting.reason");
            (!r.is_empty()).then(|| r.to_string())
        });
    waiting.unwrap_or_else(|| meta::str_at(pod, "status.phase").to_string())
}

/// A table column: name, type, priority and how a cell is read from an object.
type Column = (String, String, u8, Box<dyn Fn(&Value) -> Value>);

/// A column whose cells a plain function computes.
fn col(name: &str, ty: &str, priority: u8, cell: fn(&Value) -> Value) -> Column {
    (name.to_owned(), ty.to_owned(), priority, Box::new(cell))
}

fn columns(rt: &ResourceType) -> Vec<Column> {
    let name = || col("Name", "string", 0, |o| json!(meta::name(o)));
    let age_col = col("Age", "string", 0, |o| json!(age(o)));
    let mut cols = vec![name()];
    if rt.custom && !rt.printer_columns.is_empty() {
        // As kube-apiserver serves a CRD with additionalPrinterColumns: Name, then those.
        cols.extend(rt.printer_columns.iter().filter_map(printer_column));
        return cols;
    }
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => {
            cols.push(col("Ready", "string", 0, |o| {
                let cs = meta::path(o, "status.containerStatuses").and_then(Value::as_array);
                let ready = cs.map_or(0, |c| c.iter().filter(|c| c["ready"] == true).count());
                let total = meta::path(o, "spec.containers")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                json!(format!("{ready}/{total}"))
            }));
            cols.push(col("Status", "string", 0, |o| json!(pod_status(o))));
            cols.push(col("Restarts", "integer", 0, |o| {
                let n: i64 = meta::path(o, "status.containerStatuses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    // A client may write any count into the status: saturate.
                    .fold(0i64, |n, c| n.saturating_add(num(c, "restartCount")));
                json!(n)
            }));
            cols.push(age_col);
            cols.push(col("IP", "string", 1, |o| {
                json!(meta::str_at(o, "status.podIP"))
            }));
            cols.push(col("Node", "string", 1, |o| {
                json!(meta::str_at(o, "spec.nodeName"))
            }));
        }
        ("", "Node") => {
            cols.push(col("Status", "string", 0, |o| {
                let mut s = match condition(o, "Ready").as_deref() {
                    Some("True") => "Ready".to_string(),
                    _ => "NotReady".to_string(),
                };
                if meta::path(o, "spec.unschedulable") == Some(&json!(true)) {
                    s.push_str(",SchedulingDisabled");
                }
                json!(s)
            }));
            cols.push(col("Roles", "string", 0, |_| json!("<none>")));
            cols.push(age_col);
            cols.push(col("Version", "string", 0, |o| {
                json!(meta::str_at(o, "status.nodeInfo.kubeletVersion"))
            }));
        }
        ("", "Namespace") => {
            cols.push(col("Status", "string", 0, |o| {
                json!(meta::str_at(o, "status.phase"))
            }));
            cols.push(age_col);
        }
        ("apps", "Deployment") => {
            cols.push(col("Ready", "string", 0, |o| {
                json!(format!(
                    "{}/{}",
                    num(o, "status.readyReplicas"),
                    num(o, "spec.replicas")
                ))
            }));
            cols.push(col("Up-to-date", "integer", 0, |o| {
                json!(num(o, "status.updatedReplicas"))
            }));
            cols.push(col("Available", "integer", 0, |o| {
                json!(num(o, "status.availableReplicas"))
            }));
            cols.push(age_col);
        }
        ("apps", "StatefulSet") => {
            cols.push(col("Ready", "string", 0, |o| {
                json!(format!(
                    "{}/{}",
                    num(o, "status.readyReplicas"),
                    num(o, "spec.replicas")
                ))
            }));
            cols.push(age_col);
        }
        ("apps", "DaemonSet") => {
            for (name, field) in [
                ("Desired", "status.desiredNumberScheduled"),
                ("Current", "status.currentNumberScheduled"),
                ("Ready", "status.numberReady"),
                ("Up-to-date", "status.updatedNumberScheduled"),
                ("Available", "status.numberAvailable"),
            ] {
                let cell = move |o: &Value| json!(num(o, field));
                cols.push((name.to_owned(), "integer".to_owned(), 0, Box::new(cell)));
            }
            cols.push(col("Node Selector", "string", 0, |o| {
                let sel = meta::path(o, "spec.template.spec.nodeSelector")
                    .and_then(Value::as_object)
                    .filter(|m| !m.is_empty());
                json!(sel.map_or("<none>".to_string(), |m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                }))
            }));
            cols.push(age_col);
        }
        ("batch", "Job") => {
            cols.push(col("Status", "string", 0, |o| {
                let has = |t: &str| {
                    meta::path(o, "status.conditions")
                        .and_then(Value::as_array)
                        .is_some_and(|cs| {
                            cs.iter().any(|c| {
                                meta::str_at(c, "type") == t && meta::str_at(c, "status") == "True"
                            })
                        })
                };
                json!(if has("Complete") {
                    "Complete"
                } else if has("Failed") {
                    "Failed"
                } else if meta::path(o, "spec.suspend") == Some(&json!(true)) {
                    "Suspended"
                } else {
                    "Running"
                })
            }));
            cols.push(col("Completions", "string", 0, |o| {
                json!(format!(
                    "{}/{}",
                    num(o, "status.succeeded"),
                    num(o, "spec.completions")
                ))
            }));
            cols.push(age_col);
        }
        ("batch", "CronJob") => {
            cols.push(col("Schedule", "string", 0, |o| {
                json!(meta::str_at(o, "spec.schedule"))
            }));
            cols.push(col("Timezone", "string", 0, |o| {
                let tz = meta::str_at(o, "spec.timeZone");
                json!(if tz.is_empty() { "<none>" } else { tz })
            }));
            cols.push(col("Suspend", "boolean", 0, |o| {
                // printBoolPtr's words, as kube-apiserver's printer writes them.
                json!(if meta::path(o, "spec.suspend") == Some(&json!(true)) {
                    "True"
                } else {
                    "False"
                })
            }));
            cols.push(col("Active", "integer", 0, |o| {
                json!(
                    meta::path(o, "status.active")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len)
                )
            }));
            cols.push(col("Last Schedule", "string", 0, |o| {
                json!(
                    meta::parse_rfc3339(meta::str_at(o, "status.lastScheduleTime"))
                        .map_or("<none>".to_string(), since)
                )
            }));
            cols.push(age_col);
        }
        ("apps", "ReplicaSet") => {
            cols.push(col("Desired", "integer", 0, |o| {
                json!(num(o, "spec.replicas"))
            }));
            cols.push(col("Current", "integer", 0, |o| {
                json!(num(o, "status.replicas"))
            }));
            cols.push(col("Ready", "integer", 0, |o| {
                json!(num(o, "status.readyReplicas"))
            }));
            cols.push(age_col);
        }
        _ => cols.push(age_col),
    }
    cols
}

/// A column of a CRD's `additionalPrinterColumns`: its JSONPath read from each object;
/// `date` cells shown as an age, as kube-apiserver's table convertor does.
fn printer_column(def: &Value) -> Option<Column> {
    let name = def.get("name")?.as_str()?.to_owned();
    let ty = def
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("string")
        .to_owned();
    let priority = def
        .get("priority")
        .and_then(Value::as_u64)
        .map_or(0, |p| u8::try_from(p).unwrap_or(u8::MAX));
    let path = def.get("jsonPath")?.as_str()?.to_owned();
    let date = ty == "date";
    let cell = move |o: &Value| -> Value {
        let Some(v) = json_path(o, &path) else {
            return Value::Null;
        };
        match v {
            Value::String(t) if date => match meta::parse_rfc3339(t) {
                Some(_) => json!(age(&json!({"metadata": {"creationTimestamp": t}}))),
                None => Value::Null,
            },
            Value::Array(_) | Value::Object(_) => json!(v.to_string()),
            other => other.clone(),
        }
    };
    Some((name, ty, priority, Box::new(cell)))
}

/// The value at a simple JSONPath (`.spec.world`, `{.status.conditions[0].type}`):
/// fields and array indexes, what printer columns use.
fn json_path<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    let mut v = object;
    for part in path
        .trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
    {
        let (field, indexes) = part.split_once('[').map_or((part, ""), |(f, i)| (f, i));
        if !field.is_empty() {
            v = v.get(field)?;
        }
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            let i: usize = index.trim_end_matches(']').parse().ok()?;
            v = v.get(i)?;
        }
    }
    Some(v)
}

/// Whether the client asked for a Table.
pub(crate) fn wanted(accept: &str) -> bool {
    accept.contains("as=Table")
}

/// A Table of `items`.
pub(crate) fn render(rt: &ResourceType, items: &[Value], rv: &str) -> Value {
    let cols = columns(rt);
    let defs: Vec<Value> = cols
        .iter()
        .map(|(name, ty, priority, _)| {
            json!({"name": name, "type": ty, "format": if name == "Name" { "name" } else { "" },
                   "description": "", "priority": priority})
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            json!({
                "cells": cols.iter().map(|(_, _, _, f)| f(o)).collect::<Vec<_>>(),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
                },
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Registry;
    use std::time::{Duration, SystemTime};

    #[test]
    fn ages_like_kubectl() {
        let ago = |secs: u64| {
            let t = SystemTime::now() - Duration::from_secs(secs);
            age(&json!({"metadata": {"creationTimestamp": meta::rfc3339(t)}}))
        };
        // The second may turn between formatting and reading.
        assert!(matches!(ago(30).as_str(), "30s" | "31s"));
        assert_eq!(ago(3 * 60 + 5), "3m");
        assert_eq!(ago(5 * 3600 + 5), "5h");
        assert_eq!(ago(2 * 86_400 + 5), "2d");
        assert_eq!(age(&json!({"metadata": {}})), "<unknown>");
    }

    #[test]
    fn pod_rows() {
        let reg = Registry::builtin();
        let rt = reg.get("", "v1", "pods").expect("builtin");
        let pod = json!({"metadata": {"name": "p", "creationTimestamp": meta::now()},
            "spec": {"containers": [{"name": "a"}], "nodeName": "n"},
            "status": {"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 2}]}});
        let t = render(&rt, &[pod], "1");
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["p", "1/1", "Running", 2, "0s", "", "n"])
        );
    }

    #[test]
    fn custom_resources_show_their_printer_columns() {
        let crd: Value = json!({
            "spec": {"group": "bosun.dev", "scope": "Namespaced",
                "names": {"kind": "Plugin", "plural": "plugins", "singular": "plugin"},
                "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                    "additionalPrinterColumns": [
                        {"name": "World", "type": "string", "jsonPath": ".spec.world"},
                        {"name": "Stable", "type": "string", "jsonPath": ".status.stableRevision"},
                        {"name": "First", "type": "string", "jsonPath": "{.spec.permissions[0].kind}"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]}]}
        });
        let mut reg = Registry::builtin();
        reg.add_crd(&crd);
        let rt = reg.get("bosun.dev", "v1alpha1", "plugins").expect("served");
        let plugin = json!({"metadata": {"name": "zl", "creationTimestamp": meta::now()},
            "spec": {"world": "controller", "permissions": [{"kind": "Pod"}]}});
        let t = render(&rt, &[plugin], "1");
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .expect("columns")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["Name", "World", "Stable", "First", "Age"]);
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["zl", "controller", null, "Pod", "0s"])
        );
    }
}
