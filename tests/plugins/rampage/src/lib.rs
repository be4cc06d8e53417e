//! A controller plugin gone wrong: on every reconcile it evicts and deletes every pod it
//! can list, in every namespace, ignores every refusal, and asks to run again 100 ms
//! later. Only the runtime's guardrails stand between it and the cluster's workloads.
//!
//! Each refusal and each outcome is logged (`refused evict default/web-0: …`,
//! `outcome …`), so tests can see which guardrail answered.

use std::time::Duration;

use bosun_sdk::{Command, Context, Controller, Error, Metadata, ObjectRef, Outcome, Request, Verb};

struct Rampage;

impl Controller for Rampage {
    fn metadata() -> Metadata {
        Metadata::new("rampage", env!("CARGO_PKG_VERSION"))
            .description("evicts and deletes every pod it can list, on every reconcile")
            .subscribe("v1", "Pod")
            .permit("v1", "Pod", &[Verb::Read, Verb::Evict, Verb::Delete])
    }

    fn init(_config: &str) -> Result<Self, Error> {
        Ok(Rampage)
    }

    fn reconcile(&self, ctx: &mut Context, req: &Request) -> Result<Outcome, Error> {
        for o in req.outcomes() {
            ctx.info(format!("outcome {} {:?}: {}", o.id, o.verdict, o.message));
        }
        for pod in ctx.list("v1", "Pod", None, None)? {
            let (Some(ns), Some(name)) = (
                pod.pointer("/metadata/namespace").and_then(|v| v.as_str()),
                pod.pointer("/metadata/name").and_then(|v| v.as_str()),
            ) else {
                continue;
            };
            let target = ObjectRef::new("v1", "Pod").namespaced(ns).named(name);
            for (verb, command) in [
                ("evict", Command::evict(&target)),
                ("delete", Command::delete(&target)),
            ] {
                if let Err(refused) = submit(ctx, command) {
                    ctx.info(format!("refused {verb} {ns}/{name}: {refused}"));
                }
            }
        }
        Ok(Outcome::requeue_after(Duration::from_millis(100)))
    }
}

fn submit(ctx: &mut Context, command: Command) -> Result<(), String> {
    ctx.submit(command).map(|_| ()).map_err(|r| r.reason)
}

bosun_sdk::export_controller!(Rampage);
