//! The probe endpoints the kubelet calls: `/readyz`, `/livez`, `/startupz` answer from
//! the pod-agent plugins (every plugin must be healthy), each within a deadline, so a
//! plugin that hangs makes the probe fail instead of hanging the kubelet.
//!
//! A flood of requests (a misconfigured kubelet, a neighbour scanning the port) costs
//! little: requests of one kind share the plugin calls in flight (single-flight), and
//! beyond [`MAX_REQUESTS`] at once they are answered 503 without calling anything.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use bosun_host::contract::ProbeKind;
use tokio::sync::{Semaphore, watch};

use crate::agents::{Agents, Answer};
use crate::session::Session;

/// Probe requests served at once; more are answered 503 at once.
const MAX_REQUESTS: usize = 32;

#[derive(Clone)]
struct Probes {
    agents: Arc<Agents>,
    session: Arc<Session>,
    timeout: std::time::Duration,
    requests: Arc<Semaphore>,
    flights: Arc<Flights>,
}

/// What a call in flight will answer (`None` until it does).
type Landing = watch::Receiver<Option<Arc<Vec<Answer>>>>;

/// The probe calls in flight, one per kind at most.
#[derive(Default)]
struct Flights(Mutex<HashMap<&'static str, Landing>>);

impl Flights {
    /// The answer of the call in flight for `kind`, or of one started now with `call` on
    /// a blocking thread. A call that outlives its waiters (a hung plugin) keeps its
    /// slot until it ends, so requests that come meanwhile wait for it instead of
    /// starting more.
    fn join(
        self: &Arc<Self>,
        kind: &'static str,
        call: impl FnOnce() -> Vec<Answer> + Send + 'static,
    ) -> Landing {
        let mut flights = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(landing) = flights.get(kind) {
            return landing.clone();
        }
        let (tx, rx) = watch::channel(None);
        flights.insert(kind, rx.clone());
        /// Frees the slot when the call ends, even by a panic.
        struct Landed(Arc<Flights>, &'static str);
        impl Drop for Landed {
            fn drop(&mut self) {
                (self.0)
                    .0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(self.1);
            }
        }
        let landed = Landed(self.clone(), kind);
        tokio::task::spawn_blocking(move || {
            let answers = call();
            drop(landed);
            let _ = tx.send(Some(Arc::new(answers)));
        });
        rx
    }
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
        requests: Arc::new(Semaphore::new(MAX_REQUESTS)),
        flights: Arc::default(),
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
    let Ok(_permit) = p.requests.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{name}: more than {MAX_REQUESTS} probe requests at once; refused\n"),
        );
    };
    let agents = p.agents.clone();
    let mut landing = p.flights.join(name, move || agents.probe(kind));
    let call = async {
        landing
            .wait_for(Option::is_some)
            .await
            .map(|answers| answers.clone().unwrap_or_default())
    };
    match tokio::time::timeout(p.timeout, call).await {
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{name}: a plugin did not answer within {} ms\n",
                p.timeout.as_millis()
            ),
        ),
        Ok(Err(_)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{name}: the probe call ended without an answer\n"),
        ),
        Ok(Ok(answers)) => {
            let mut text = String::new();
            for a in answers.iter() {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    fn counting(calls: &Arc<AtomicUsize>) -> impl FnOnce() -> Vec<Answer> + Send + 'static {
        let calls = calls.clone();
        move || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(200));
            vec![Answer {
                plugin: "agent".to_owned(),
                healthy: true,
                message: format!("call {n}"),
            }]
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_of_one_kind_share_the_call_in_flight() {
        let flights = Arc::new(Flights::default());
        let (ready, live) = (Arc::default(), Arc::default());
        let mut landings: Vec<Landing> = (0..50)
            .map(|_| flights.join("readiness", counting(&ready)))
            .collect();
        let mut other = flights.join("liveness", counting(&live));
        for landing in &mut landings {
            let answers = landing.wait_for(Option::is_some).await.expect("answer");
            assert_eq!(answers.as_deref().expect("some")[0].message, "call 0");
        }
        other.wait_for(Option::is_some).await.expect("answer");
        assert_eq!(ready.load(Ordering::SeqCst), 1, "one call for 50 requests");
        assert_eq!(live.load(Ordering::SeqCst), 1, "another kind, another call");
        // Once landed, the next request makes a new call: answers are never stale.
        let mut next = flights.join("readiness", counting(&ready));
        let answers = next.wait_for(Option::is_some).await.expect("answer");
        assert_eq!(answers.as_deref().expect("some")[0].message, "call 1");
    }
}
