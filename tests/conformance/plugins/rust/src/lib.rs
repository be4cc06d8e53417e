//! The conformance plugin in Rust: an interpreter of the step scripts described in
//! tests/conformance/README.md. The Go and JavaScript plugins implement the same
//! interpreter; the suite requires the three to give identical results.

use std::time::Duration;

use bosun_sdk::{
    Command, Context, Controller, Error, EventType, Metadata, ObjectRef, Outcome, Request,
    Subscription, Taint, TaintEffect, Verb,
};
use serde_json::Value;

struct Conformance {
    script: Vec<Value>,
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn obj_ref(v: &Value) -> ObjectRef {
    let mut r = ObjectRef::new(s(v, "apiVersion"), s(v, "kind"));
    if let Some(ns) = v.get("namespace").and_then(Value::as_str) {
        r = r.namespaced(ns);
    }
    r.named(s(v, "name"))
}

fn effect(name: &str) -> TaintEffect {
    match name {
        "NoExecute" => TaintEffect::NoExecute,
        "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
        _ => TaintEffect::NoSchedule,
    }
}

fn command(name: &str, a: &Value) -> Command {
    match name {
        "apply" => Command::apply(a),
        "merge-patch" => Command::merge_patch(&obj_ref(&a["target"]), &a["patch"]),
        "json-patch" => Command::json_patch(&obj_ref(&a["target"]), &a["patch"]),
        "delete" => Command::delete(&obj_ref(a)),
        "evict" => Command::evict(&obj_ref(a)),
        "cordon" => Command::cordon(a.as_str().unwrap_or("")),
        "uncordon" => Command::uncordon(a.as_str().unwrap_or("")),
        "taint" => Command::taint(
            s(a, "node"),
            Taint::new(s(a, "key"), s(a, "value"), effect(s(a, "effect"))),
        ),
        "untaint" => Command::untaint(
            s(a, "node"),
            s(a, "key"),
            a.get("effect").and_then(Value::as_str).map(effect),
        ),
        "event" => Command::event(
            &obj_ref(&a["regarding"]),
            if s(a, "type") == "Warning" {
                EventType::Warning
            } else {
                EventType::Normal
            },
            s(a, "reason"),
            s(a, "message"),
        ),
        _ => Command::pod(
            s(a, "namespace"),
            s(a, "pod"),
            s(a, "plugin"),
            s(a, "payload"),
        ),
    }
}

fn event_name(e: &bosun_sdk::EventKind) -> &'static str {
    use bosun_sdk::EventKind::*;
    match e {
        Added => "added",
        Modified => "modified",
        Deleted => "deleted",
        Resync => "resync",
        Requeued => "requeued",
    }
}

fn verdict_name(v: &bosun_sdk::Verdict) -> &'static str {
    use bosun_sdk::Verdict::*;
    match v {
        Pending => "pending",
        Executed => "executed",
        DryRun => "dry-run",
        Refused => "refused",
        Failed => "failed",
    }
}

impl Controller for Conformance {
    fn metadata() -> Metadata {
        Metadata::new("conformance", "0.1.0")
            .description("the conformance plugin")
            .subscribe("v1", "Pod")
            .subscription(
                Subscription::new("v1", "ConfigMap")
                    .in_namespace("conf")
                    .selector("app=conf"),
            )
            .permit(
                "v1",
                "Pod",
                &[
                    Verb::Read,
                    Verb::Patch,
                    Verb::Delete,
                    Verb::Evict,
                    Verb::RecordEvent,
                    Verb::PodCommand,
                ],
            )
            .permit("v1", "Node", &[Verb::Read, Verb::Cordon])
            .permit("v1", "ConfigMap", &[Verb::Read, Verb::Apply])
    }

    fn init(config: &str) -> Result<Self, Error> {
        let config: Value =
            serde_json::from_str(config).map_err(|_| Error::msg("invalid config: not JSON"))?;
        if let Some(message) = config.get("failInit").and_then(Value::as_str) {
            return Err(Error::msg(message));
        }
        let script = config
            .get("script")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(Conformance { script })
    }

    fn reconcile(&self, ctx: &mut Context, req: &Request) -> Result<Outcome, Error> {
        let mut outcome = Outcome::done();
        for step in &self.script {
            let Some((op, arg)) = step.as_object().and_then(|o| o.iter().next()) else {
                continue;
            };
            match op.as_str() {
                "get" => {
                    let r = obj_ref(arg);
                    match ctx.get(&r) {
                        None => ctx.info(format!("get {r}: absent")),
                        Some(o) => ctx.info(format!(
                            "get {r}: present rv={}",
                            o.pointer("/metadata/resourceVersion")
                                .and_then(Value::as_str)
                                .unwrap_or("-")
                        )),
                    }
                }
                "list" => {
                    let ns = arg.get("namespace").and_then(Value::as_str);
                    let sel = arg.get("selector").and_then(Value::as_str);
                    let (av, kind) = (s(arg, "apiVersion"), s(arg, "kind"));
                    match ctx.list(av, kind, ns, sel) {
                        Ok(items) => {
                            let mut names: Vec<&str> = items
                                .iter()
                                .map(|o| {
                                    o.pointer("/metadata/name")
                                        .and_then(Value::as_str)
                                        .unwrap_or("")
                                })
                                .collect();
                            names.sort_unstable();
                            ctx.info(format!(
                                "list {av}/{kind}: {} [{}]",
                                names.len(),
                                names.join(",")
                            ));
                        }
                        Err(err) => ctx.warn(format!("list {av}/{kind}: error: {err}")),
                    }
                }
                "submit" => {
                    let Some((name, a)) = arg.as_object().and_then(|o| o.iter().next()) else {
                        continue;
                    };
                    match ctx.submit(command(name, a)) {
                        Ok(id) => ctx.info(format!("submit {name}: accepted {id}")),
                        Err(err) => ctx.warn(format!("submit {name}: {err}")),
                    }
                }
                "state-set" => {
                    let key = s(arg, "key");
                    match ctx.state_set(key, s(arg, "value").as_bytes()) {
                        Ok(()) => ctx.info(format!("state-set {key}")),
                        Err(err) => ctx.warn(format!("state-set {key}: {err}")),
                    }
                }
                "state-get" => {
                    let key = arg.as_str().unwrap_or("");
                    match ctx.state_get(key) {
                        Some(v) => {
                            ctx.info(format!("state-get {key}: {}", String::from_utf8_lossy(&v)))
                        }
                        None => ctx.info(format!("state-get {key}: absent")),
                    }
                }
                "state-delete" => {
                    let key = arg.as_str().unwrap_or("");
                    ctx.state_delete(key);
                    ctx.info(format!("state-delete {key}"));
                }
                "log" => {
                    let message = s(arg, "message");
                    match s(arg, "level") {
                        "trace" => ctx.trace(message),
                        "debug" => ctx.debug(message),
                        "warn" => ctx.warn(message),
                        "error" => ctx.error(message),
                        _ => ctx.info(message),
                    }
                }
                "clock" => ctx.info(format!("clock {} {}", ctx.now_ms(), ctx.now_rfc3339())),
                "request" => {
                    let events: Vec<&str> = req.events().iter().map(event_name).collect();
                    let outcomes: Vec<String> = req
                        .outcomes()
                        .iter()
                        .map(|o| format!("{}:{}:{}", o.id.0, verdict_name(&o.verdict), o.message))
                        .collect();
                    ctx.info(format!(
                        "request {} events={} attempt={} outcomes={}",
                        req.target(),
                        events.join(","),
                        req.attempt(),
                        outcomes.join(";")
                    ));
                }
                "requeue" => {
                    outcome =
                        Outcome::requeue_after(Duration::from_millis(arg.as_u64().unwrap_or(0)));
                }
                "fail" => return Err(Error::msg(arg.as_str().unwrap_or("failed"))),
                other => ctx.error(format!("unknown step {other}")),
            }
        }
        Ok(outcome)
    }
}

bosun_sdk::export_controller!(Conformance);
