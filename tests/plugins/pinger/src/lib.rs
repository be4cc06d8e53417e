//! A controller for sidecar tests, named `pinger`: for each pod labelled
//! `bosun.dev/agent=test` it sends `count` pod-commands (`n-0`, `n-1`, ...; the prefix is
//! configurable) to the pod's `agent` plugin, once per pod (config
//! `{"count": 3, "prefix": "n-"}`), and logs every outcome it is
//! shown as `outcome ID VERDICT: MESSAGE`.

use bosun_sdk::{
    Command, Context, Controller, Error, Metadata, Outcome, Request, Subscription, Verb,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default)]
struct Pinger {
    count: u32,
    prefix: String,
}

impl Default for Pinger {
    fn default() -> Self {
        Pinger {
            count: 1,
            prefix: "n-".to_owned(),
        }
    }
}

impl Controller for Pinger {
    fn metadata() -> Metadata {
        Metadata::new("pinger", env!("CARGO_PKG_VERSION"))
            .description("sends numbered pod-commands to the agent plugin")
            .subscription(Subscription::new("v1", "Pod").selector("bosun.dev/agent=test"))
            .permit("v1", "Pod", &[Verb::Read, Verb::PodCommand])
    }

    fn init(config: &str) -> Result<Self, Error> {
        serde_json::from_str(config).map_err(|e| Error::msg(format!("config: {e}")))
    }

    fn reconcile(&self, ctx: &mut Context, req: &Request) -> Result<Outcome, Error> {
        for o in req.outcomes() {
            ctx.info(format!("outcome {} {:?}: {}", o.id, o.verdict, o.message));
        }
        let t = req.target();
        let mark = format!("sent/{t}");
        if ctx.state_get(&mark).is_none() && ctx.get(t).is_some() {
            let ns = t.namespace.clone().unwrap_or_default();
            for i in 0..self.count {
                let id = ctx.submit(Command::pod(
                    ns.clone(),
                    t.name.clone(),
                    "agent",
                    format!("{}{i}", self.prefix),
                ))?;
                ctx.info(format!("submitted {} {}{i}", id.0, self.prefix));
            }
            ctx.state_set(&mark, b"1")?;
        }
        Ok(Outcome::done())
    }
}

bosun_sdk::export_controller!(Pinger);
