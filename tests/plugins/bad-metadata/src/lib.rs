//! A controller plugin whose metadata is invalid: it subscribes to api-version
//! `not a version!` and an empty kind. The host must refuse to load it, and say why.

use bosun_sdk::{Context, Controller, Error, Metadata, Outcome, Request, Verb};

struct BadMetadata;

impl Controller for BadMetadata {
    fn metadata() -> Metadata {
        Metadata::new("bad-metadata", env!("CARGO_PKG_VERSION"))
            .description("declares a subscription the host must reject")
            .subscribe("not a version!", "")
            .permit("v1", "Pod", &[Verb::Read])
    }

    fn init(_config: &str) -> Result<Self, Error> {
        Ok(Self)
    }

    fn reconcile(&self, _ctx: &mut Context, _req: &Request) -> Result<Outcome, Error> {
        Ok(Outcome::done())
    }
}

bosun_sdk::export_controller!(BadMetadata);
