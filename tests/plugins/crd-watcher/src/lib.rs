//! A controller for a custom resource that may not exist when the plugin starts:
//! it labels every `example.com/v1` Widget with `crd-watcher/seen: "true"`. It also
//! subscribes to Gizmos, which no test ever defines: a kind that is never served must
//! not keep the plugin from reconciling the others.

use bosun_sdk::{Command, Context, Controller, Error, Metadata, Outcome, Request, Verb};
use serde_json::json;

struct CrdWatcher;

impl Controller for CrdWatcher {
    fn metadata() -> Metadata {
        Metadata::new("crd-watcher", env!("CARGO_PKG_VERSION"))
            .description("labels Widgets, a custom resource")
            .subscribe("example.com/v1", "Widget")
            .subscribe("example.com/v1", "Gizmo")
            .permit("example.com/v1", "Widget", &[Verb::Read, Verb::Patch])
            .permit("example.com/v1", "Gizmo", &[Verb::Read])
    }

    fn init(_config: &str) -> Result<Self, Error> {
        Ok(CrdWatcher)
    }

    fn reconcile(&self, ctx: &mut Context, req: &Request) -> Result<Outcome, Error> {
        let Some(widget) = ctx.get(req.target()) else {
            return Ok(Outcome::done());
        };
        if widget
            .pointer("/metadata/labels/crd-watcher~1seen")
            .is_none()
        {
            let patch = json!({"metadata": {"labels": {"crd-watcher/seen": "true"}}});
            ctx.submit(Command::merge_patch(req.target(), &patch))?;
        }
        Ok(Outcome::done())
    }
}

bosun_sdk::export_controller!(CrdWatcher);
