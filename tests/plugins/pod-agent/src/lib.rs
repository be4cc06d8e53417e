//! A pod-agent plugin for sidecar tests, named `agent`, run in pods labelled
//! `bosun.dev/agent=test`. Config: `{"tag": "v1", "hangProbe": false}`.
//!
//! - `on-start` writes `started` (the tag) in the shared directory;
//! - readiness is unhealthy while a `not-ready` file exists, and never returns with
//!   `hangProbe` (a plugin stuck in probe);
//! - `on-command` appends the payload as a line of `commands.log` and answers
//!   `TAG:PAYLOAD`; the payload `fail` is answered with an error, payloads starting
//!   with `slow` take 100 ms;
//! - `on-stop` writes `stopped`.

use bosun_sdk::pod;
use bosun_sdk::{Error, Metadata, PodAgent, ProbeKind, ProbeResult, Subscription};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Agent {
    tag: String,
    hang_probe: bool,
}

impl PodAgent for Agent {
    fn metadata() -> Metadata {
        Metadata::new("agent", env!("CARGO_PKG_VERSION"))
            .description("test agent: commands to a shared file, readiness from a file")
            .subscription(Subscription::new("v1", "Pod").selector("bosun.dev/agent=test"))
    }

    fn init(config: &str) -> Result<Self, Error> {
        serde_json::from_str(config).map_err(|e| Error::msg(format!("config: {e}")))
    }

    fn on_start(&self) -> Result<(), Error> {
        pod::write_file("started", self.tag.as_bytes())
    }

    fn probe(&self, kind: ProbeKind) -> ProbeResult {
        if self.hang_probe {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        if kind == ProbeKind::Readiness && pod::read_file("not-ready").is_ok() {
            return ProbeResult::unhealthy("not-ready file present");
        }
        ProbeResult {
            healthy: true,
            message: self.tag.clone(),
        }
    }

    fn on_command(&self, payload: &str) -> Result<String, Error> {
        if payload == "fail" {
            return Err(Error::msg("asked to fail"));
        }
        if payload.starts_with("slow") {
            // A command that takes 100 ms.
            let until = bosun_sdk::clock::now_ms() + 100;
            while bosun_sdk::clock::now_ms() < until {
                std::hint::spin_loop();
            }
        }
        let mut log = pod::read_file("commands.log").unwrap_or_default();
        log.extend_from_slice(payload.as_bytes());
        log.push(b'\n');
        pod::write_file("commands.log", &log)?;
        Ok(format!("{}:{payload}", self.tag))
    }

    fn on_stop(&self) -> Result<(), Error> {
        pod::write_file("stopped", self.tag.as_bytes())
    }
}

bosun_sdk::export_pod_agent!(Agent);
