//! A controller plugin that declares 100,000 subscriptions, far over the host's cap.
//! The host must refuse to load it, naming the cap, before it watches anything.

use bosun_sdk::{Context, Controller, Error, Metadata, Outcome, Request, Verb};

struct GreedyMetadata;

impl Controller for GreedyMetadata {
    fn metadata() -> Metadata {
        let mut m = Metadata::new("greedy-metadata", env!("CARGO_PKG_VERSION"))
            .description("declares more subscriptions than the host allows")
            .permit("v1", "Pod", &[Verb::Read]);
        for i in 0..100_000 {
            m = m.subscribe("example.com/v1", format!("Kind{i}"));
        }
        m
    }

    fn init(_config: &str) -> Result<Self, Error> {
        Ok(Self)
    }

    fn reconcile(&self, _ctx: &mut Context, _req: &Request) -> Result<Outcome, Error> {
        Ok(Outcome::done())
    }
}

bosun_sdk::export_controller!(GreedyMetadata);
