//! The admin endpoint: /metrics (Prometheus text), /healthz, /readyz, /plugins (JSON),
//! /plugins/NAME/diff (JSON), /plugins/NAME/record?seconds=N (JSON lines).

use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use bosun_host::Registry;
use tokio::sync::watch;

use crate::connect::Health;
use crate::dispatch::Dispatcher;
use crate::informer::{Informers, KindState};
use crate::metrics::Metrics;
use crate::pipe::Pipe;
use crate::record::Recorder;
use crate::rollout::Routes;
use crate::sidecars::Sidecars;

/// What the admin endpoint reads: narrow handles to the runtime's parts.
pub struct Parts {
    /// Plugins and their revisions.
    pub registry: Arc<Registry>,
    /// The shared cache.
    pub informers: Arc<Informers>,
    /// Queues per plugin.
    pub dispatcher: Arc<Dispatcher>,
    /// Breakers and verdicts.
    pub pipe: Arc<Pipe>,
    /// The metric families.
    pub metrics: Metrics,
    /// Whether the API server answers.
    pub health: Health,
    /// Canaries and shadows (their differences).
    pub routes: Arc<Routes>,
    /// Record sessions.
    pub recorder: Arc<Recorder>,
    /// The sidecar link and its address, when configured.
    pub sidecars: Option<(Arc<Sidecars>, SocketAddr)>,
    /// Whether this runtime leads.
    pub leading: watch::Receiver<bool>,
    /// The admission webhook, when configured.
    pub webhooks: Option<Arc<crate::webhook::Webhooks>>,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("admin::Parts").finish_non_exhaustive()
    }
}

type Shared = Weak<Parts>;

/// Serves the admin endpoint until the runtime (which holds the parts) is dropped.
pub async fn serve(listener: tokio::net::TcpListener, runtime: Shared) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/plugins", get(plugins))
        .route("/plugins/{name}/diff", get(diff))
        .route("/plugins/{name}/record", get(record))
        .with_state(runtime);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "admin endpoint stopped");
    }
}

fn gone() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "runtime stopped\n").into_response()
}

async fn metrics(State(rt): State<Shared>) -> Response {
    let Some(rt) = rt.upgrade() else {
        return gone();
    };
    for (kind, n) in rt.informers.counts() {
        if let Some((api_version, kind)) = kind.rsplit_once('/') {
            rt.metrics.cache_objects(api_version, kind, n);
        }
    }
    for (plugin, (depth, in_flight)) in rt.dispatcher.queues() {
        rt.metrics.queue(&plugin, depth, in_flight);
    }
    for name in rt.registry.names() {
        let open = !matches!(
            rt.pipe.guardrails().breaker_state(&name),
            crate::guardrail::breaker::State::Closed
        );
        rt.metrics.breaker_open(&name, open);
        if let Some(r) = rt.registry.current(&name) {
            rt.metrics
                .undeclared_reads(&name, r.stats().undeclared_reads);
            let state = r.state_usage();
            rt.metrics.plugin_state(&name, state.bytes, state.keys);
        }
    }
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        rt.metrics.encode(),
    )
        .into_response()
}

async fn healthz(State(rt): State<Shared>) -> Response {
    if rt.upgrade().is_none() {
        return gone();
    }
    (StatusCode::OK, "ok\n").into_response()
}

/// Ready when the API server answers and every watched kind is synced; a pending kind
/// (not served yet) does not block readiness but is named.
async fn readyz(State(rt): State<Shared>) -> Response {
    let Some(rt) = rt.upgrade() else {
        return gone();
    };
    if let Some(problem) = rt.health.problem() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{problem}\n")).into_response();
    }
    let states = rt.informers.states();
    let syncing: Vec<&String> = states
        .iter()
        .filter(|(_, s)| **s == KindState::Syncing)
        .map(|(k, _)| k)
        .collect();
    if !syncing.is_empty() {
        let list = syncing
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("caches syncing: {list}\n"),
        )
            .into_response();
    }
    (StatusCode::OK, "ok\n").into_response()
}

/// Status of every plugin, as `bosun status` prints it.
pub fn plugins_json(rt: &Parts) -> serde_json::Value {
    let queues = rt.dispatcher.queues();
    let plugins: Vec<_> = rt
        .registry
        .status()
        .into_iter()
        .map(|s| {
            let breaker = rt.pipe.guardrails().breaker_state(&s.name);
            let (depth, in_flight) = queues.get(&s.name).copied().unwrap_or_default();
            let last_error = s.history.iter().rev().find_map(|e| match &e.outcome {
                bosun_host::registry::Outcome::Failed(r) => Some(r.clone()),
                _ => None,
            });
            json!({
                "name": s.name,
                "state": if s.current.is_some() { "serving" } else { "failed" },
                "revision": s.current,
                "stats": s.stats,
                "pluginState": s.state,
                "breaker": breaker,
                "queue": { "depth": depth, "inFlight": in_flight },
                "lastLoadError": last_error,
                "history": s.history,
            })
        })
        .collect();
    json!({
        "leader": *rt.leading.borrow(),
        "apiServer": rt.health.problem().unwrap_or_else(|| "reachable".to_owned()),
        "kinds": rt.informers.states(),
        "objects": rt.informers.counts(),
        "plugins": plugins,
        "guardrails": rt.pipe.guardrails().config().summary(),
        "sidecars": rt.sidecars.as_ref().map(|(s, addr)| json!({
            "listen": addr.to_string(),
            "tls": s.ca_file().is_some(),
            "inFlight": s.in_flight(),
            "connected": s.status(),
        })),
        "webhook": rt.webhooks.as_ref().map(|w| w.status()),
    })
}

/// What a shadow revision decided differently from the stable one.
async fn diff(
    State(rt): State<Shared>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    let Some(rt) = rt.upgrade() else {
        return gone();
    };
    if rt.registry.current(&name).is_none() {
        return (StatusCode::NOT_FOUND, format!("no plugin named {name:?}\n")).into_response();
    }
    let shadow = rt.routes.shadow(&name).map(|(r, _)| r.digest().to_owned());
    axum::Json(json!({
        "plugin": name,
        "shadow": shadow,
        "differences": rt.routes.differences(&name),
    }))
    .into_response()
}

/// Records the calls of a plugin for `seconds` (default 30, at most 600) and answers
/// with them, one JSON line per call.
async fn record(
    State(rt): State<Shared>,
    axum::extract::Path(name): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    use crate::record::{DEFAULT_SECONDS, MAX_SECONDS};
    let bad = |msg: String| (StatusCode::BAD_REQUEST, format!("{msg}\n")).into_response();
    let seconds = match query.get("seconds").map(|s| s.parse::<u64>()) {
        None => DEFAULT_SECONDS,
        Some(Ok(n)) if (1..=MAX_SECONDS).contains(&n) => n,
        Some(_) => {
            return bad(format!(
                "seconds must be a whole number from 1 to {MAX_SECONDS}"
            ));
        }
    };
    let session = {
        let Some(rt) = rt.upgrade() else {
            return gone();
        };
        let Some(revision) = rt.registry.current(&name) else {
            return (StatusCode::NOT_FOUND, format!("no plugin named {name:?}\n")).into_response();
        };
        if revision.info().world != bosun_host::World::Controller {
            return bad(format!(
                "plugin {name} is a {} plugin; only controller plugins' reconciles are recorded",
                revision.info().world
            ));
        }
        match rt.recorder.start(&name) {
            Ok(s) => s,
            Err(e) => return (StatusCode::CONFLICT, format!("{e}\n")).into_response(),
        }
    };
    // The runtime is not held while waiting: it may stop meanwhile.
    tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
    let recorded = session.stop();
    let mut body = recorded.lines.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_owned()),
            (
                header::HeaderName::from_static("bosun-dropped-calls"),
                recorded.dropped.to_string(),
            ),
        ],
        body,
    )
        .into_response()
}

async fn plugins(State(rt): State<Shared>) -> Response {
    let Some(rt) = rt.upgrade() else {
        return gone();
    };
    axum::Json(plugins_json(&rt)).into_response()
}
