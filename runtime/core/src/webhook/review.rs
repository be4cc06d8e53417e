//! Serving AdmissionReviews: `POST /admission/NAME` runs plugin NAME's `review` (its
//! canary's for the canary's share of objects; a shadow reviews beside it and is only
//! compared) and returns its answer once checked.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use bosun_host::contract::{ObjectRef, Verdict};
use bosun_host::host::clock::{Clock, System};
use bosun_host::{Revision, World};
use serde_json::{Value, json};

use super::Webhooks;
use crate::audit::Record;
use crate::rollout::shadow::Difference;

/// The largest AdmissionReview accepted (kube-apiserver's objects are at most ~3 MiB;
/// a review carries the object and the old one).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// The timeout when the API server names none (`?timeout=`): kube-apiserver's default
/// for webhooks is 10 s; a plugin gets less so that the answer arrives in time.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What is kept of the reason in an audit record or a difference.
const MAX_MESSAGE: usize = 1024;

type Shared = Weak<Webhooks>;

/// Serves HTTPS on `listener` until the webhook is dropped.
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    webhooks: Shared,
) {
    let app = Router::new()
        .route("/admission/{plugin}", post(review))
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(webhooks.clone());
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "webhook: cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if webhooks.strong_count() == 0 {
            return;
        }
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let stream =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "webhook: TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "webhook: TLS handshake timed out");
                        return;
                    }
                };
            let service = hyper_util::service::TowerToHyperService::new(app);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "webhook: connection ended");
            }
        });
    }
}

#[derive(serde::Deserialize)]
struct TimeoutQuery {
    timeout: Option<String>,
}

/// A Go duration as kube-apiserver writes `?timeout=` (`10s`, `1m0s`, `500ms`).
fn parse_timeout(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (n, tail) = rest.split_at(digits);
        let n: f64 = n.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let secs = match unit {
            "h" => n * 3600.0,
            "m" => n * 60.0,
            "s" => n,
            "ms" => n / 1000.0,
            "us" | "µs" => n / 1e6,
            "ns" => n / 1e9,
            _ => return None,
        };
        total += Duration::try_from_secs_f64(secs).ok()?;
        rest = tail;
    }
    Some(total)
}

fn error(code: StatusCode, message: String) -> Response {
    (code, format!("{message}\n")).into_response()
}

/// How a review ended: the `result` label of `bosun_admission_reviews_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Allowed,
    Patched,
    Denied,
    Error,
    Timeout,
    Excluded,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Patched => "patched",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::Excluded => "excluded",
        }
    }
}

/// What the review is about, read from the request.
#[derive(Clone)]
struct About {
    uid: String,
    operation: String,
    key: ObjectRef,
    namespace: Option<String>,
    labels: std::collections::BTreeMap<String, String>,
    object: Option<Value>,
}

fn about(review: &Value) -> Result<About, String> {
    if review.get("apiVersion").and_then(Value::as_str) != Some("admission.k8s.io/v1")
        || review.get("kind").and_then(Value::as_str) != Some("AdmissionReview")
    {
        return Err("the body is not an admission.k8s.io/v1 AdmissionReview (this webhook serves v1 only: set admissionReviewVersions to [v1])".to_owned());
    }
    let request = review
        .get("request")
        .filter(|r| r.is_object())
        .ok_or("the AdmissionReview has no request")?;
    let text = |p: &str| {
        request
            .pointer(p)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let uid = text("/uid")
        .filter(|u| !u.is_empty())
        .ok_or("the AdmissionReview's request has no uid")?;
    let operation = text("/operation").ok_or("the AdmissionReview's request has no operation")?;
    let namespace = text("/namespace").filter(|n| !n.is_empty());
    let group = text("/kind/group").unwrap_or_default();
    let version = text("/kind/version").unwrap_or_default();
    let kind = text("/kind/kind").unwrap_or_default();
    let object = request
        .get("object")
        .filter(|o| o.is_object())
        .or_else(|| request.get("oldObject").filter(|o| o.is_object()))
        .cloned();
    // An object created with generateName has no name yet: the request routes it.
    let name = text("/name")
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| uid.clone());
    let labels = object
        .as_ref()
        .and_then(|o| o.pointer("/metadata/labels"))
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default();
    Ok(About {
        uid,
        operation,
        key: ObjectRef {
            api_version: if group.is_empty() {
                version
            } else {
                format!("{group}/{version}")
            },
            kind,
            namespace: namespace.clone(),
            name,
        },
        namespace,
        labels,
        object: request.get("object").filter(|o| o.is_object()).cloned(),
    })
}

async fn review(
    State(webhooks): State<Shared>,
    Path(plugin): Path<String>,
    Query(query): Query<TimeoutQuery>,
    body: Bytes,
) -> Response {
    let Some(w) = webhooks.upgrade() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the runtime is stopping".to_owned(),
        );
    };
    let started = Instant::now();
    let timeout = query
        .timeout
        .as_deref()
        .and_then(parse_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "the body is not UTF-8 JSON".to_owned(),
        );
    };
    let parsed: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON: {e}"),
            );
        }
    };
    let about = match about(&parsed) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Some(stable) = w
        .parts
        .registry
        .current(&plugin)
        .filter(|r| r.info().world == World::Admission)
    else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no admission plugin {plugin:?} is served here"),
        );
    };
    let mutating = w
        .parts
        .rollouts
        .webhook(&plugin)
        .is_some_and(|s| s.mutating);
    // The runtime's namespace is never the plugins' business, whatever the configuration
    // the API server acted on says (an admission plugin must not block the runtime).
    if about.namespace.as_deref().is_some_and(|ns| w.excluded(ns)) {
        w.parts.metrics.admission(
            &plugin,
            stable.digest(),
            Outcome::Excluded.as_str(),
            started.elapsed(),
        );
        return answer(json!({"uid": about.uid, "allowed": true}));
    }
    let routes = w.parts.rollouts.routes();
    let revision = routes
        .pick(&plugin, &about.key, || Some(about.labels.clone()))
        .unwrap_or(stable);
    let shadow = routes.shadow(&plugin).map(|(r, _)| r);
    let body: Arc<str> = Arc::from(text);
    let permit = w.permit(&plugin);
    let call = {
        let (revision, body) = (revision.clone(), body.clone());
        async move {
            let permit = permit
                .acquire_owned()
                .await
                .map_err(|_| "the runtime is stopping".to_owned())?;
            // The permit goes with the call: a review the API server stopped waiting for
            // still holds its place until the plugin's deadline ends it.
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                revision.review(&body)
            })
            .await
            .map_err(|e| format!("the review task failed: {e}"))?
            .map_err(|e| e.to_string())
        }
    };
    let result = tokio::time::timeout(timeout, call).await;
    let checked = match result {
        Err(_) => Err((
            Outcome::Timeout,
            format!(
                "admission plugin {plugin} did not answer within {}",
                humanize(timeout)
            ),
        )),
        Ok(Err(e)) => Err((Outcome::Error, e)),
        Ok(Ok(answer)) => check(&answer, &about, mutating).map_err(|e| {
            (
                Outcome::Error,
                format!("admission plugin {plugin} answered an invalid review: {e}"),
            )
        }),
    };
    let elapsed = started.elapsed();
    if let Some(shadow) = shadow {
        compare_in_background(&w, &plugin, shadow, body, &about, mutating, &checked);
    }
    match checked {
        Ok((response, outcome)) => {
            w.parts
                .metrics
                .admission(&plugin, revision.digest(), outcome.as_str(), elapsed);
            if outcome == Outcome::Denied {
                let message = response
                    .pointer("/status/message")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                audit(&w, &plugin, &revision, &about, Verdict::Refused, message);
            }
            answer(response)
        }
        Err((outcome, message)) => {
            w.parts
                .metrics
                .admission(&plugin, revision.digest(), outcome.as_str(), elapsed);
            tracing::warn!(plugin = %plugin, uid = %about.uid, "{message}");
            audit(&w, &plugin, &revision, &about, Verdict::Failed, &message);
            // A non-2xx answer makes the API server apply the webhook's failurePolicy.
            error(StatusCode::INTERNAL_SERVER_ERROR, message)
        }
    }
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn answer(response: Value) -> Response {
    let body = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    });
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Checks a plugin's answer: an AdmissionReview whose response echoes the request's uid,
/// says `allowed`, carries a status when it denies (one is added when it does not), and
/// patches only as a mutating webhook, with a JSON patch that applies to the object.
/// Returns the response to send and how it ended.
fn check(answer: &str, about: &About, mutating: bool) -> Result<(Value, Outcome), String> {
    let mut review: Value =
        serde_json::from_str(answer).map_err(|e| format!("it is not JSON: {e}"))?;
    let Some(response) = review.get_mut("response").filter(|r| r.is_object()) else {
        return Err("it has no response".to_owned());
    };
    match response.get("uid").and_then(Value::as_str) {
        Some(uid) if uid == about.uid => {}
        Some(uid) => {
            return Err(format!(
                "response.uid {uid:?} is not the request's {:?}",
                about.uid
            ));
        }
        None => return Err("response.uid is missing (echo request.uid)".to_owned()),
    }
    let allowed = response
        .get("allowed")
        .and_then(Value::as_bool)
        .ok_or("response.allowed is missing or not a boolean")?;
    let patch = response.get("patch").filter(|p| !p.is_null()).cloned();
    if !allowed {
        let has_message = response
            .pointer("/status/message")
            .and_then(Value::as_str)
            .is_some_and(|m| !m.is_empty());
        if !has_message {
            let status = response
                .get("status")
                .cloned()
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            let mut status = status;
            status["message"] = json!("denied by the admission plugin (it gave no reason)");
            if status.get("code").is_none() {
                status["code"] = json!(403);
            }
            response["status"] = status;
        }
        // A denial's patch means nothing.
        if let Some(r) = response.as_object_mut() {
            r.remove("patch");
            r.remove("patchType");
        }
        return Ok((response.take(), Outcome::Denied));
    }
    let Some(patch) = patch else {
        return Ok((response.take(), Outcome::Allowed));
    };
    if !mutating {
        return Err(
            "a validating webhook may not patch (set spec.admission.mutating: true on the Plugin)"
                .to_owned(),
        );
    }
    if response.get("patchType").and_then(Value::as_str) != Some("JSONPatch") {
        return Err("response.patch needs patchType JSONPatch".to_owned());
    }
    let encoded = patch
        .as_str()
        .ok_or("response.patch is not a base64 string")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("response.patch is not base64: {e}"))?;
    let ops: json_patch::Patch = serde_json::from_slice(&bytes)
        .map_err(|e| format!("response.patch is not a JSON patch: {e}"))?;
    let Some(mut object) = about.object.clone() else {
        return Err(format!(
            "a {} request has no object to patch",
            about.operation
        ));
    };
    json_patch::patch(&mut object, &ops)
        .map_err(|e| format!("response.patch does not apply to the object: {e}"))?;
    let outcome = if ops.0.is_empty() {
        Outcome::Allowed
    } else {
        Outcome::Patched
    };
    Ok((response.take(), outcome))
}

fn audit(
    w: &Webhooks,
    plugin: &str,
    revision: &Revision,
    about: &About,
    verdict: Verdict,
    message: &str,
) {
    w.parts.audit.append(&Record {
        time_ms: System.now_ms(),
        plugin: plugin.to_owned(),
        revision: revision.digest().to_owned(),
        key: Some(about.key.key()),
        command_id: None,
        command: json!({"admission": {"operation": about.operation, "uid": about.uid}}),
        verdict,
        guardrail: Some("admission".to_owned()),
        message: truncate(message),
    });
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_MESSAGE {
        return s.to_owned();
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The part of an answer two revisions are compared on: allowed, the decoded patch,
/// the denial's message and code.
fn verdict_of(response: &Value) -> Value {
    let patch = response
        .get("patch")
        .and_then(Value::as_str)
        .and_then(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    json!({
        "allowed": response.get("allowed"),
        "patch": patch,
        "status": response.get("status").map(|s| json!({"code": s.get("code"), "message": s.get("message")})),
    })
}

/// Runs the shadow revision on the same review after the answer went out, and records
/// a difference when it decided otherwise. Its answer is never returned.
fn compare_in_background(
    w: &Arc<Webhooks>,
    plugin: &str,
    shadow: Arc<Revision>,
    body: Arc<str>,
    about: &About,
    mutating: bool,
    stable: &Result<(Value, Outcome), (Outcome, String)>,
) {
    let stable = match stable {
        Ok((response, _)) => verdict_of(response),
        Err((_, message)) => json!({"error": message}),
    };
    let routes = w.parts.rollouts.routes().clone();
    let (plugin, key) = (plugin.to_owned(), about.key.key());
    let about = about.clone();
    let permit = w.permit(&plugin);
    tokio::spawn(async move {
        // A shadow takes a permit like any review: it cannot crowd out the stable one
        // beyond the plugin's share.
        let Ok(permit) = permit.try_acquire_owned() else {
            return;
        };
        let outcome = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            shadow.review(&body)
        })
        .await;
        let shadow = match outcome {
            Ok(Ok(answer)) => match check(&answer, &about, mutating) {
                Ok((response, _)) => Ok(verdict_of(&response)),
                Err(e) => Err(format!("invalid review: {e}")),
            },
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let same = match &shadow {
            Ok(v) => *v == stable,
            Err(_) => false,
        };
        if !same {
            routes.differ(
                &plugin,
                Difference {
                    at_ms: System.now_ms(),
                    key,
                    events: vec![format!("admission {}", about.operation)],
                    stable: vec![stable],
                    shadow: shadow.map(|v| vec![v]),
                },
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn about(object: Value) -> About {
        super::about(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u1", "operation": "CREATE", "namespace": "shop", "name": "p",
                        "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "object": object}
        }))
        .expect("about")
    }

    fn b64(v: &Value) -> String {
        base64::engine::general_purpose::STANDARD.encode(v.to_string())
    }

    #[test]
    fn timeouts_read_as_go_durations() {
        assert_eq!(parse_timeout("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_timeout("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_timeout("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_timeout("x"), None);
        assert_eq!(parse_timeout("10"), None);
    }

    #[test]
    fn requests_are_read_and_keyed() {
        let a = about(json!({"metadata": {"name": "p", "labels": {"team": "a"}}}));
        assert_eq!(a.key.key(), "Pod/shop/p");
        assert_eq!(a.key.api_version, "v1");
        assert_eq!(a.labels.get("team").map(String::as_str), Some("a"));
        assert!(
            super::about(
                &json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"})
            )
            .is_err()
        );
        assert!(super::about(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"operation": "CREATE"}})).is_err());
    }

    #[test]
    fn answers_are_checked() {
        let a = about(json!({"metadata": {"name": "p", "labels": {}}}));
        let ok = |r: Value| json!({"response": r}).to_string();
        assert_eq!(
            check(&ok(json!({"uid": "u1", "allowed": true})), &a, false)
                .expect("allowed")
                .1,
            Outcome::Allowed
        );
        assert!(check(&ok(json!({"uid": "other", "allowed": true})), &a, false).is_err());
        assert!(check(&ok(json!({"allowed": true})), &a, false).is_err());
        assert!(check(&ok(json!({"uid": "u1"})), &a, false).is_err());
        assert!(check("not json", &a, false).is_err());
        // A denial without a reason gets one.
        let (denied, outcome) =
            check(&ok(json!({"uid": "u1", "allowed": false})), &a, false).expect("denied");
        assert_eq!(outcome, Outcome::Denied);
        assert_eq!(denied["status"]["code"], 403);
        assert!(
            denied["status"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        // Patches: mutating only, JSONPatch, and they must apply.
        let add = json!([{"op": "add", "path": "/metadata/labels/x", "value": "y"}]);
        let patched =
            ok(json!({"uid": "u1", "allowed": true, "patchType": "JSONPatch", "patch": b64(&add)}));
        assert_eq!(
            check(&patched, &a, true).expect("patched").1,
            Outcome::Patched
        );
        assert!(
            check(&patched, &a, false)
                .expect_err("refused")
                .contains("validating")
        );
        let bad_path = json!([{"op": "replace", "path": "/spec/nothing/here", "value": 1}]);
        let e = check(&ok(json!({"uid": "u1", "allowed": true, "patchType": "JSONPatch", "patch": b64(&bad_path)})), &a, true).expect_err("refused");
        assert!(e.contains("does not apply"), "{e}");
        let e = check(
            &ok(json!({"uid": "u1", "allowed": true, "patch": b64(&add)})),
            &a,
            true,
        )
        .expect_err("refused");
        assert!(e.contains("patchType"), "{e}");
        let e = check(
            &ok(json!({"uid": "u1", "allowed": true, "patchType": "JSONPatch", "patch": "%%%"})),
            &a,
            true,
        )
        .expect_err("refused");
        assert!(e.contains("base64"), "{e}");
    }
}
