//! The pod-agent conformance plugin in Rust: an interpreter of the pod step scripts
//! described in tests/conformance/README.md. The Go and JavaScript plugins implement the
//! same interpreter; the suite requires the three to give identical results.

use std::time::Duration;

use bosun_sdk::{Error, Metadata, PodAgent, ProbeKind, ProbeResult, clock, log, pod};
use serde_json::Value;

struct PodConformance {
    config: Value,
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn port(v: &Value) -> u16 {
    v.get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(0)
}

fn timeout(v: &Value) -> Duration {
    Duration::from_millis(v.get("timeoutMs").and_then(Value::as_u64).unwrap_or(1000))
}

fn response_line(method: &str, port: u16, path: &str, r: &pod::HttpResponse) -> String {
    let headers: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{method} :{port}{path} -> {} [{}] {}",
        r.status,
        headers.join(";"),
        String::from_utf8_lossy(&r.body)
    )
}

/// Runs a script; `Ok(reply)` or the error a `fail`/`expectStatus` step raised.
fn run(script: &Value) -> Result<String, Error> {
    let Some(steps) = script.as_array() else {
        return Err(Error::msg("a script is a JSON list of steps"));
    };
    let mut reply = String::new();
    let mut last_status: Option<u16> = None;
    for step in steps {
        let Some((name, a)) = step.as_object().and_then(|o| o.iter().next()) else {
            return Err(Error::msg("a step is a one-key object"));
        };
        match name.as_str() {
            "info" => {
                let info = pod::info();
                let labels: Vec<String> = info
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                log::info(format!(
                    "info {}/{} uid={} node={} labels={}",
                    info.namespace,
                    info.name,
                    info.uid,
                    info.node_name,
                    labels.join(",")
                ));
            }
            "get" | "post" => {
                let (p, path) = (port(a), s(a, "path"));
                let result = if name == "get" {
                    pod::http_get(p, path, timeout(a))
                } else {
                    pod::http_post(
                        p,
                        path,
                        s(a, "contentType"),
                        s(a, "body").as_bytes(),
                        timeout(a),
                    )
                };
                match result {
                    Ok(r) => {
                        let method = if name == "get" { "GET" } else { "POST" };
                        log::info(response_line(method, p, path, &r));
                        last_status = Some(r.status);
                    }
                    Err(e) => {
                        log::warn(e.message());
                        last_status = None;
                    }
                }
            }
            "read" => {
                let path = a.as_str().unwrap_or("");
                match pod::read_file(path) {
                    Ok(b) => log::info(format!("read {path}: {}", String::from_utf8_lossy(&b))),
                    Err(e) => log::warn(e.message()),
                }
            }
            "write" => {
                let (path, contents) = (s(a, "path"), s(a, "contents"));
                match pod::write_file(path, contents.as_bytes()) {
                    Ok(()) => log::info(format!("wrote {path} ({} bytes)", contents.len())),
                    Err(e) => log::warn(e.message()),
                }
            }
            "log" => {
                let level = match s(a, "level") {
                    "trace" => log::Level::Trace,
                    "debug" => log::Level::Debug,
                    "warn" => log::Level::Warn,
                    "error" => log::Level::Error,
                    _ => log::Level::Info,
                };
                log::log(level, s(a, "message"));
            }
            "clock" => log::info(format!(
                "clock {} {}",
                clock::now_ms(),
                clock::now_rfc3339()
            )),
            "expectStatus" => {
                let want = a.as_u64().unwrap_or(0);
                if last_status.map(u64::from) != Some(want) {
                    let got = last_status.map_or("none".to_owned(), |s| s.to_string());
                    return Err(Error::msg(format!("status {got}, expected {want}")));
                }
            }
            "reply" => reply = a.as_str().unwrap_or("").to_owned(),
            "fail" => return Err(Error::msg(a.as_str().unwrap_or(""))),
            other => return Err(Error::msg(format!("unknown step {other}"))),
        }
    }
    Ok(reply)
}

impl PodConformance {
    fn hook(&self, name: &str) -> Result<(), Error> {
        match self.config.get(name) {
            Some(script) => run(script).map(drop),
            None => Ok(()),
        }
    }
}

impl PodAgent for PodConformance {
    fn metadata() -> Metadata {
        Metadata::new("pod-conformance", "0.1.0").description("the pod-agent conformance plugin")
    }

    fn init(config: &str) -> Result<Self, Error> {
        let config: Value =
            serde_json::from_str(config).map_err(|_| Error::msg("config is not JSON"))?;
        if let Some(msg) = config.get("failInit").and_then(Value::as_str) {
            return Err(Error::msg(msg));
        }
        Ok(PodConformance { config })
    }

    fn on_start(&self) -> Result<(), Error> {
        self.hook("onStart")
    }

    fn probe(&self, kind: ProbeKind) -> ProbeResult {
        let kind = match kind {
            ProbeKind::Readiness => "readiness",
            ProbeKind::Liveness => "liveness",
            ProbeKind::Startup => "startup",
        };
        match self.config.get("probes").and_then(|p| p.get(kind)) {
            None => ProbeResult {
                healthy: true,
                message: format!("no {kind} probe"),
            },
            Some(script) => match run(script) {
                Ok(reply) => ProbeResult {
                    healthy: true,
                    message: reply,
                },
                Err(e) => ProbeResult::unhealthy(e.message()),
            },
        }
    }

    fn on_command(&self, payload: &str) -> Result<String, Error> {
        let script: Value = serde_json::from_str(payload)
            .map_err(|_| Error::msg("payload is not a JSON list of steps"))?;
        run(&script)
    }

    fn on_stop(&self) -> Result<(), Error> {
        self.hook("onStop")
    }
}

bosun_sdk::export_pod_agent!(PodConformance);
