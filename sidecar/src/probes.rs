//! The probe endpoints the kubelet calls: `/readyz`, `/livez`, `/startupz` answer from
//! the pod-agent plugins (every plugin must be healthy), each within a deadline, so a
//! plugin that hangs makes the probe fail instead of hanging the kubelet.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use bosun_host::contract::ProbeKind;

use crate::agents::Agents;
use crate::session::Session;

#[derive(Clone)]
struct Probes {
    agents: Arc<Agents>,
    session: Arc<Session>,
    timeout: std::time::Duration,
}

pub(crate) fn router(
    agents: Arc<Agents>,
    session: Arc<Session>,
    timeout: std::time::Duration,
) -> Router {
    let state = Probes {
        agents,
        session,
        timeout,
    };
    Router::new()
        .route("/readyz", get(|s| probe(s, ProbeKind::Readiness)))
        .route("/livez", get(|s| probe(s, ProbeKind::Liveness)))
        .route("/startupz", get(|s| probe(s, ProbeKind::Startup)))
        .route("/status", get(status))
        .with_state(state)
}

fn kind_name(kind: ProbeKind) -> &'static str {
    match kind {
        ProbeKind::Readiness => "readiness",
        ProbeKind::Liveness => "liveness",
        ProbeKind::Startup => "startup",
    }
}

async fn probe(State(p): State<Probes>, kind: ProbeKind) -> (StatusCode, String) {
    let name = kind_name(kind);
    let agents = p.agents.clone();
    let call = tokio::task::spawn_blocking(move || agents.probe(kind));
    match tokio::time::timeout(p.timeout, call).await {
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{name}: a plugin did not answer within {} ms\n",
                p.timeout.as_millis()
            ),
        ),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{name}: probe task failed: {e}\n"),
        ),
        Ok(Ok(answers)) => {
            let mut text = String::new();
            for a in &answers {
                p.session
                    .probe_changed(name, &a.plugin, a.healthy, &a.message);
                let mark = if a.healthy { "ok" } else { "FAIL" };
                text.push_str(&format!("{mark} {}: {}\n", a.plugin, a.message));
            }
            if answers.iter().all(|a| a.healthy) {
                if answers.is_empty() {
                    text.push_str("ok (no pod-agent plugins)\n");
                }
                (StatusCode::OK, text)
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, text)
            }
        }
    }
}

async fn status(State(p): State<Probes>) -> String {
    serde_json::json!({
        "connected": p.session.connected.load(Ordering::Relaxed),
        "executed": p.session.executed.load(Ordering::Relaxed),
        "plugins": p.agents.held().into_iter().map(|(n, d)| serde_json::json!({"name": n, "digest": d})).collect::<Vec<_>>(),
    })
    .to_string()
}
