//! The REST API: parses Kubernetes paths and verbs and answers like kube-apiserver.

use crate::admission::{Attributes, Hooks, Operation, User, Warnings};
use crate::discovery;
use crate::eviction;
use crate::meta;
use crate::patch::{self, PatchKind};
use crate::resource::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, Result};
use crate::store::{DeleteOptions, Store};
use crate::watch;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// Request bodies over this size are refused with 413 (as kube-apiserver's 3 MiB limit).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct AppState {
    pub store: Arc<Store>,
    /// `host:port` the server listens on.
    pub addr: String,
    /// BOOKMARK interval for watches that allow them.
    pub bookmark_interval: Duration,
    /// Serialises evictions so two cannot both spend a budget's last disruption.
    pub evictions: Arc<tokio::sync::Mutex<()>>,
    /// Requests answered, by verb.
    pub requests: Arc<crate::requests::Counter>,
    /// Flips at shutdown: watches end.
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// The admission webhooks.
    pub admission: Arc<crate::admission::Admission>,
}

/// The API router (everything is dispatched by path, as the apiserver's mux does).
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .fallback(handle)
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::disable())
}

async fn handle(State(st): State<AppState>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    st.requests.count(&method, req.uri().query());
    let fields = crate::fieldvalidation::Request::new(
        method.as_str(),
        req.uri().query(),
        &header_str(req.headers(), header::CONTENT_TYPE, ""),
    );
    let wanted = crate::protobuf::negotiate(&header_str(req.headers(), header::ACCEPT, ""));
    let span = tracing::debug_span!("bosun.cluster.request", %method, %path);
    async move {
        let (out, dropped) = crate::fieldvalidation::scope(fields, dispatch(st, req, wanted)).await;
        let mut resp = match out {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(code = e.code, reason = e.reason, "refused");
                e.into_response()
            }
        };
        // Dropped fields are decoded, so warned about, before webhooks are asked.
        if !dropped.is_empty() {
            let headers = resp.headers_mut();
            let later: Vec<HeaderValue> =
                headers.get_all(header::WARNING).iter().cloned().collect();
            headers.remove(header::WARNING);
            for w in dropped {
                if let Ok(v) = HeaderValue::from_bytes(warning_header(&w).as_bytes()) {
                    headers.append(header::WARNING, v);
                }
            }
            for v in later {
                headers.append(header::WARNING, v);
            }
        }
        negotiated(wanted, resp).await
    }
    .instrument(span)
    .await
}

/// Marks a response whose body is a stream (a watch), which is never rewritten.
#[derive(Clone, Copy)]
struct Streaming;

/// The answer in the media type the client prefers: a JSON object (or Status) becomes
/// protobuf when the client asked for it first and the kind has a protobuf form.
async fn negotiated(wanted: crate::protobuf::Wanted, resp: Response) -> Response {
    let crate::protobuf::Wanted::Protobuf { json_too } = wanted else {
        return resp;
    };
    let is_json = resp.headers().get(header::CONTENT_TYPE)
        == Some(&HeaderValue::from_static("application/json"));
    if !is_json || resp.extensions().get::<Streaming>().is_some() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::internal("reading the response").into_response();
    };
    let encoded = serde_json::from_slice::<Value>(&bytes)
        .map_err(|e| crate::protobuf::NoProtobuf(e.to_string()))
        .and_then(|v| crate::protobuf::encode(&v));
    match encoded {
        Ok(pb) => {
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::protobuf::MEDIA_TYPE),
            );
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(pb))
        }
        Err(_) if json_too => Response::from_parts(parts, Body::from(bytes)),
        Err(e) => ApiError::internal(format!("cannot write the answer as protobuf: {}", e.0))
            .into_response(),
    }
}

/// 406, as kube-apiserver's negotiation refuses protobuf for a custom resource.
fn not_acceptable() -> ApiError {
    ApiError::not_acceptable(
        "only the following media types are accepted: application/json, application/yaml",
    )
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn ok(v: &Value) -> Response {
    json_response(StatusCode::OK, v)
}

fn success(code: u16) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code})
}

/// Query parameters, percent-decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        Self(
            q.unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("1" | "true" | "True"))
    }
    fn dry_run(&self) -> bool {
        self.0.iter().any(|(k, v)| k == "dryRun" && v == "All")
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                match s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A parsed resource path.
struct Target {
    rt: Arc<ResourceType>,
    namespace: String,
    name: Option<String>,
    sub: Option<String>,
    watch_path: bool,
}

async fn dispatch(st: AppState, req: Request, wanted: crate::protobuf::Wanted) -> Result<Response> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = Query::parse(parts.uri.query());
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let reg = || st.store.registry();
    let get_only = |r: Response| {
        if parts.method == Method::GET {
            Ok(r)
        } else {
            Err(ApiError::method_not_allowed(format!(
                "{} is not supported on {path}",
                parts.method
            )))
        }
    };
    match segs.as_slice() {
        ["version"] => return get_only(ok(&discovery::version())),
        ["healthz" | "livez" | "readyz"] => {
            return get_only((StatusCode::OK, "ok").into_response());
        }
        ["openapi", ..] => return crate::openapi::serve(&reg(), &parts),
        ["api"] => return get_only(ok(&discovery::core_versions(&st.addr))),
        ["apis"] => return get_only(ok(&discovery::group_list(&reg()))),
        ["api", v] => {
            let doc = discovery::resource_list(&reg(), "", v).ok_or_else(|| {
                ApiError::not_found_msg("the server could not find the requested resource")
            })?;
            return get_only(ok(&doc));
        }
        ["apis", g] => {
            let doc = discovery::group(&reg(), g).ok_or_else(|| {
                ApiError::not_found_msg("the server could not find the requested resource")
            })?;
            return get_only(ok(&doc));
        }
        ["apis", g, v] => {
            let doc = discovery::resource_list(&reg(), g, v).ok_or_else(|| {
                ApiError::not_found_msg("the server could not find the requested resource")
            })?;
            return get_only(ok(&doc));
        }
        _ => {}
    }
    let target = parse_target(&st.store, &segs)?;
    // Refused before anything is done, as kube-apiserver negotiates first.
    if wanted == (crate::protobuf::Wanted::Protobuf { json_too: false }) && target.rt.custom {
        return Err(not_acceptable());
    }
    let body = read_body(body).await?;
    let span = tracing::debug_span!(
        "bosun.cluster.verb",
        resource = %target.rt.plural,
        namespace = %target.namespace,
        name = target.name.as_deref().unwrap_or(""),
    );
    let call = Call {
        content_type: header_str(&parts.headers, header::CONTENT_TYPE, "application/json"),
        accept: header_str(&parts.headers, header::ACCEPT, ""),
        wanted,
        method: parts.method,
        st,
        target,
        query,
        body,
        warnings: Warnings::default(),
    };
    let out = serve(&call).instrument(span).await;
    let warnings = call.warnings.take();
    if warnings.is_empty() {
        return out;
    }
    // Webhooks' warnings go to the client whatever the answer, as kube-apiserver's.
    let mut resp = out.unwrap_or_else(|e| {
        tracing::debug!(code = e.code, reason = e.reason, "refused");
        e.into_response()
    });
    for w in warnings {
        if let Ok(v) = HeaderValue::from_bytes(warning_header(&w).as_bytes()) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    Ok(resp)
}

/// `299 - "TEXT"`, as kube-apiserver writes a warning (control characters dropped).
fn warning_header(text: &str) -> String {
    let mut out = String::from("299 - \"");
    for ch in text.chars() {
        match ch {
            '"' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A header as text; absent or not ASCII reads as `default`, as the handlers expect.
fn header_str(headers: &HeaderMap, name: header::HeaderName, default: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(default)
        .to_string()
}

async fn read_body(body: Body) -> Result<axum::body::Bytes> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::too_large(format!(
            "the request body is larger than the limit of {MAX_BODY} bytes"
        ))
    })
}

fn parse_target(store: &Store, segs: &[&str]) -> Result<Target> {
    let not_found = || ApiError::not_found_msg("the server could not find the requested resource");
    let (group, version, mut rest) = match segs {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(not_found()),
    };
    let mut watch_path = false;
    if rest.first() == Some(&"watch") {
        watch_path = true;
        rest = &rest[1..];
    }
    let mut namespace = String::new();
    if rest.first() == Some(&"namespaces")
        && rest.len() >= 3
        && !(rest.len() == 3 && matches!(rest[2], "status" | "finalize"))
    {
        namespace = rest[1].to_string();
        rest = &rest[2..];
    }
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n.to_string()), None),
        [p, n, s] => (*p, Some(n.to_string()), Some(s.to_string())),
        _ => return Err(not_found()),
    };
    let rt = store
        .resolve(group, version, plural)
        .ok_or_else(not_found)?;
    if !rt.namespaced && !namespace.is_empty() {
        return Err(not_found());
    }
    if let Some(s) = &sub {
        let allowed = match s.as_str() {
            "status" => rt.status,
            "scale" => rt.scale,
            "eviction" | "binding" | "log" => rt.group.is_empty() && rt.plural == "pods",
            "finalize" => rt.plural == "namespaces",
            _ => false,
        };
        if !allowed {
            return Err(not_found());
        }
    }
    Ok(Target {
        rt,
        namespace,
        name,
        sub,
        watch_path,
    })
}

fn parse_body(body: &[u8], ct: &str) -> Result<Value> {
    if ct.contains("protobuf") {
        return crate::protobuf::decode(body);
    }
    if ct.contains("cbor") {
        return Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unsupported format: {ct}; use application/json"
        )));
    }
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let v: Value = if ct.contains("yaml") {
        serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid YAML in the request body: {e}")))?
    } else {
        let v = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON in the request body: {e}")))?;
        // Repeated fields are reported as the request's fieldValidation asks.
        crate::fieldvalidation::note_body(body);
        v
    };
    if !v.is_object() {
        return Err(ApiError::bad_request("the request body must be an object"));
    }
    Ok(v)
}

fn delete_options(query: &Query, body: &[u8]) -> Result<DeleteOptions> {
    let b: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    let dry_body = b
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v == "All"));
    let s = |k: &str| {
        meta::path(&b, k)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Ok(DeleteOptions {
        dry_run: query.dry_run() || dry_body,
        propagation: query
            .get("propagationPolicy")
            .map(str::to_string)
            .or_else(|| s("propagationPolicy")),
        uid: s("preconditions.uid"),
        resource_version: s("preconditions.resourceVersion"),
        grace_period_seconds: grace_period(query, &b)?,
    })
}

/// `gracePeriodSeconds` from the query or the DeleteOptions body (the query wins).
fn grace_period(query: &Query, body: &Value) -> Result<Option<i64>> {
    if let Some(q) = query.get("gracePeriodSeconds") {
        return q.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!("gracePeriodSeconds must be an integer, not {q:?}"))
        });
    }
    Ok(body.get("gracePeriodSeconds").and_then(Value::as_i64))
}

/// A resource request once routed and decoded: what every verb handler reads.
struct Call {
    st: AppState,
    target: Target,
    method: Method,
    query: Query,
    /// `Content-Type`, `application/json` when absent.
    content_type: String,
    /// `Accept`, empty when absent.
    accept: String,
    /// The media type `Accept` negotiated.
    wanted: crate::protobuf::Wanted,
    body: axum::body::Bytes,
    /// What webhooks warned about, for the `Warning` headers.
    warnings: Warnings,
}

impl Call {
    fn store(&self) -> &Store {
        &self.st.store
    }

    fn rt(&self) -> &Arc<ResourceType> {
        &self.target.rt
    }

    fn ns(&self) -> &str {
        &self.target.namespace
    }

    fn dry_run(&self) -> bool {
        self.query.dry_run()
    }

    /// The webhooks that may see this request's `ops` on the URL's (sub)resource; `None`
    /// when none can: the write goes straight to the store.
    fn hooks(&self, ops: &[Operation]) -> Option<Arc<Hooks>> {
        let sub = self.target.sub.as_deref().unwrap_or("");
        self.st
            .admission
            .hooks(&self.st.store)
            .filter(|h| h.may_apply(self.rt(), sub, ops))
    }

    /// `CreateOptions` or `UpdateOptions`, as webhooks get them.
    fn options(&self, kind: &str) -> Value {
        let mut o = json!({"kind": kind, "apiVersion": "meta.k8s.io/v1"});
        if self.dry_run() {
            o["dryRun"] = json!(["All"]);
        }
        if let Some(m) = self.query.get("fieldManager") {
            o["fieldManager"] = json!(m);
        }
        o
    }
}

/// Picks the verb handler for a resource request, as kube-apiserver's REST handlers are
/// chosen by verb, name and subresource; any other combination is 405.
async fn serve(c: &Call) -> Result<Response> {
    match (&c.method, c.target.name.as_deref(), c.target.sub.as_deref()) {
        (&Method::GET, None, None) => list(c),
        (&Method::GET, Some(name), None | Some("status")) => get(c, name),
        (&Method::GET, Some(name), Some("log")) => get_log(c, name),
        (&Method::GET, Some(name), Some("scale")) => get_scale(c, name),
        (&Method::POST, None, None) => create(c).await,
        (&Method::POST, Some(name), Some("eviction")) => evict(c, name).await,
        (&Method::POST, Some(name), Some("binding")) => create_binding(c, name).await,
        (&Method::PUT, Some(name), None | Some("status") | Some("finalize")) => {
            update(c, name).await
        }
        (&Method::PUT, Some(name), Some("scale")) => update_scale(c, name).await,
        (&Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            patch_object(c, name, sub == Some("status")).await
        }
        (&Method::PATCH, Some(name), Some("scale")) => patch_scale(c, name).await,
        (&Method::DELETE, Some(name), None) => delete(c, name).await,
        (&Method::DELETE, None, None) => delete_collection(c).await,
        (method, _, _) => Err(ApiError::method_not_allowed(format!(
            "{method} is not supported on this path"
        ))),
    }
}

/// `labelSelector` and `fieldSelector`, which list, watch and deletecollection share.
fn selectors(query: &Query) -> Result<(LabelSelector, FieldSelector)> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or(""))?;
    Ok((labels, fields))
}

/// GET on a collection: a watch when asked for (`/watch/` or `?watch=1`), otherwise one
/// page of the list, as a Table for kubectl.
fn list(c: &Call) -> Result<Response> {
    let (rt, ns, query) = (c.rt(), c.ns(), &c.query);
    let (labels, fields) = selectors(query)?;
    if c.target.watch_path || query.flag("watch") {
        return watch(c, rt.clone(), ns, labels, fields);
    }
    let limit = query
        .get("limit")
        .map(|l| l.parse::<usize>())
        .transpose()
        .map_err(|_| ApiError::bad_request("limit must be a non-negative integer"))?
        .unwrap_or(0);
    let page = c
        .store()
        .list_page(rt, ns, &labels, &fields, limit, query.get("continue"))?;
    if crate::table::wanted(&c.accept) {
        return Ok(ok(&crate::table::render(
            rt,
            &page.items,
            &page.rv.to_string(),
        )));
    }
    let mut md = json!({"resourceVersion": page.rv.to_string()});
    if let Some(token) = page.continue_token {
        md["continue"] = json!(token);
        md["remainingItemCount"] = json!(page.remaining);
    }
    Ok(ok(&json!({
        "kind": format!("{}List", rt.kind),
        "apiVersion": rt.api_version(),
        "metadata": md,
        "items": page.items,
    })))
}

/// GET on one object (or its status): a watch of that object on the legacy `/watch/`
/// path, otherwise the object, as a Table for kubectl.
fn get(c: &Call, name: &str) -> Result<Response> {
    let (rt, ns) = (c.rt(), c.ns());
    if c.target.watch_path {
        let fields = FieldSelector::parse(&format!("metadata.name={name}"))?;
        return watch(c, rt.clone(), ns, LabelSelector::default(), fields);
    }
    let obj = c.store().get(rt, ns, name)?;
    if crate::table::wanted(&c.accept) && c.target.sub.is_none() {
        let rv = meta::str_at(&obj, "metadata.resourceVersion").to_string();
        return Ok(ok(&crate::table::render(rt, &[obj], &rv)));
    }
    Ok(ok(&obj))
}

/// `pods/log`: plain text, as `kubectl logs` expects.
fn get_log(c: &Call, name: &str) -> Result<Response> {
    let pod = c.store().get(c.rt(), c.ns(), name)?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        pod_log(&pod, c.query.get("container"))?,
    )
        .into_response())
}

/// GET on the `scale` subresource: the object seen as an `autoscaling/v1` Scale.
fn get_scale(c: &Call, name: &str) -> Result<Response> {
    Ok(ok(&scale_of(&c.store().get(c.rt(), c.ns(), name)?)))
}

/// POST on a collection: creates the object of the body (201).
async fn create(c: &Call) -> Result<Response> {
    let obj = parse_body(&c.body, &c.content_type)?;
    let out = match c.hooks(&[Operation::Create]) {
        None => c.store().create(c.rt(), c.ns(), obj, c.dry_run())?,
        Some(hooks) => admit_create(c, &hooks, obj).await?,
    };
    Ok(json_response(StatusCode::CREATED, &out))
}

/// `pods/eviction`: deletes the pod unless a PodDisruptionBudget forbids it (429).
async fn evict(c: &Call, name: &str) -> Result<Response> {
    let opts = eviction_options(c, name)?;
    if let Some(hooks) = c.hooks(&[Operation::Create]) {
        let eviction = json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": c.ns()},
            "deleteOptions": delete_options_object(&opts),
        });
        let mut attrs = Attributes::new(
            c.rt(),
            "eviction",
            Operation::Create,
            c.ns(),
            name,
            opts.dry_run,
            c.options("CreateOptions"),
        );
        attrs.kind = ("policy", "v1", "Eviction");
        // The Eviction's delete options were read above: what a mutating webhook
        // changes in it is not applied.
        let eviction = hooks
            .mutate(c.store(), &attrs, Some(eviction), None, &c.warnings)
            .await?;
        hooks
            .validate(c.store(), &attrs, eviction.as_ref(), None, &c.warnings)
            .await?;
    }
    let _guard = c.st.evictions.lock().await;
    // A dry run is checked against the budgets too; the store then deletes nothing.
    eviction::evict(c.store(), c.ns(), name, &opts)?;
    Ok(json_response(StatusCode::CREATED, &success(201)))
}

/// Decodes an Eviction body into the delete options it carries. kubectl drain sends its
/// evictions as protobuf. The pod is the URL's; the body only brings deleteOptions
/// (dryRun, preconditions).
fn eviction_options(c: &Call, name: &str) -> Result<DeleteOptions> {
    let (body, ct) = (&c.body[..], c.content_type.as_str());
    let ev = if body.is_empty() {
        json!({})
    } else if ct.contains("protobuf") {
        crate::protobuf::decode_eviction(body)?
    } else {
        parse_body(body, ct)?
    };
    let body_name = meta::name(&ev);
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "name in URL does not match name in Eviction object ({body_name} != {name})"
        )));
    }
    let mut opts = delete_options(&c.query, &[])?;
    if let Some(d) = ev.get("deleteOptions") {
        let b = serde_json::to_vec(d).map_err(|e| ApiError::bad_request(e.to_string()))?;
        opts = delete_options(&c.query, &b)?;
    }
    Ok(opts)
}

/// `pods/binding`: what a scheduler posts to assign a pod to a node.
async fn create_binding(c: &Call, name: &str) -> Result<Response> {
    let mut b = parse_body(&c.body, &c.content_type)?;
    if let Some(hooks) = c.hooks(&[Operation::Create]) {
        if let Some(m) = b.as_object_mut() {
            m.entry("apiVersion").or_insert(json!("v1"));
            m.entry("kind").or_insert(json!("Binding"));
        }
        let mut attrs = Attributes::new(
            c.rt(),
            "binding",
            Operation::Create,
            c.ns(),
            name,
            c.dry_run(),
            c.options("CreateOptions"),
        );
        attrs.kind = ("", "v1", "Binding");
        b = hooks
            .mutate(c.store(), &attrs, Some(b), None, &c.warnings)
            .await?
            .unwrap_or(Value::Null);
        hooks
            .validate(c.store(), &attrs, Some(&b), None, &c.warnings)
            .await?;
    }
    let node = meta::str_at(&b, "target.name").to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "Binding",
            name,
            "target.name: Required value",
        ));
    }
    bind(c.store(), c.rt(), c.ns(), name, &node, c.dry_run())?;
    Ok(json_response(StatusCode::CREATED, &success(201)))
}

/// PUT on an object, its status or a namespace's finalize: replaces it with the body.
async fn update(c: &Call, name: &str) -> Result<Response> {
    let obj = parse_body(&c.body, &c.content_type)?;
    let sub = c.target.sub.as_deref().unwrap_or("");
    let status_only = sub == "status";
    let Some(hooks) = c.hooks(&[Operation::Update]) else {
        return Ok(ok(&c.store().update(
            c.rt(),
            c.ns(),
            name,
            obj,
            status_only,
            c.dry_run(),
        )?));
    };
    // Without a resourceVersion the update is unconditional: a concurrent write while
    // webhooks were asked is retried with the new current object.
    let unconditional = meta::str_at(&obj, "metadata.resourceVersion").is_empty();
    let mut last = None;
    for _ in 0..RETRIES {
        let old = c.store().get(c.rt(), c.ns(), name)?;
        let r = admit_update(c, &hooks, sub, name, obj.clone(), &old).await;
        match r {
            Err(e) if unconditional && is_stale(&e) => last = Some(e),
            r => return Ok(ok(&r?)),
        }
    }
    Err(last.unwrap_or_else(|| stale(c.rt(), name)))
}

/// PUT on the `scale` subresource: sets `spec.replicas` from the Scale of the body.
async fn update_scale(c: &Call, name: &str) -> Result<Response> {
    let mut scale = parse_body(&c.body, &c.content_type)?;
    if let Some(hooks) = c.hooks(&[Operation::Update]) {
        let current = c.store().get(c.rt(), c.ns(), name)?;
        scale = admit_scale(c, &hooks, name, scale, &current).await?;
    }
    let out = set_replicas(c.store(), c.rt(), c.ns(), name, &scale, c.dry_run())?;
    Ok(ok(&scale_of(&out)))
}

/// PATCH on an object or its status: server-side apply (which needs a field manager) or
/// one of the JSON, merge and strategic-merge patches.
async fn patch_object(c: &Call, name: &str, status_only: bool) -> Result<Response> {
    let (rt, ns, dry_run, body) = (c.rt(), c.ns(), c.dry_run(), &c.body[..]);
    let kind = PatchKind::from_content_type(&c.content_type)?;
    let applied = if kind == PatchKind::Apply {
        let manager = c.query.get("fieldManager").unwrap_or("").to_string();
        if manager.is_empty() {
            return Err(ApiError::bad_request(
                "PATCH requests with apply content type require a fieldManager",
            ));
        }
        let mut applied = patch::parse_applied(body)?;
        check_applied_identity(rt, ns, name, &mut applied)?;
        Some((applied, manager, c.query.flag("force")))
    } else {
        None
    };
    if let Some(hooks) = c.hooks(&[Operation::Update, Operation::Create]) {
        return Ok(ok(&admit_patch(
            c,
            &hooks,
            name,
            status_only,
            kind,
            applied.as_ref(),
        )
        .await?));
    }
    let out = if let Some((applied, manager, force)) = &applied {
        let force = *force;
        c.store()
            .mutate(rt, ns, name, status_only, dry_run, |cur| {
                patch::server_side_apply(cur, applied, manager, force)
            })?
    } else {
        c.store()
            .mutate(rt, ns, name, status_only, dry_run, |cur| match cur {
                Some(cur) => patch::patch(kind, cur, body),
                None => Err(ApiError::not_found(&rt.qualified(), name)),
            })?
    };
    Ok(ok(&out))
}

/// PATCH on the `scale` subresource: patches the current Scale, then sets its replicas.
async fn patch_scale(c: &Call, name: &str) -> Result<Response> {
    let (rt, ns, body) = (c.rt(), c.ns(), &c.body[..]);
    let kind = PatchKind::from_content_type(&c.content_type)?;
    let object = c.store().get(rt, ns, name)?;
    let current = scale_of(&object);
    let mut patched = if kind == PatchKind::Apply {
        patch::server_side_apply(Some(&current), &patch::parse_applied(body)?, "scale", true)?
    } else {
        patch::patch(kind, &current, body)?
    };
    if let Some(hooks) = c.hooks(&[Operation::Update]) {
        patched = admit_scale(c, &hooks, name, patched, &object).await?;
    }
    let out = set_replicas(c.store(), rt, ns, name, &patched, c.dry_run())?;
    Ok(ok(&scale_of(&out)))
}

/// DELETE on one object, with the DeleteOptions of the query and body.
async fn delete(c: &Call, name: &str) -> Result<Response> {
    let opts = delete_options(&c.query, &c.body)?;
    Ok(ok(&match c.hooks(&[Operation::Delete]) {
        None => c.store().delete(c.rt(), c.ns(), name, &opts)?,
        Some(hooks) => admit_delete(c, &hooks, c.ns(), name, &opts).await?,
    }))
}

/// DELETE on a collection (deletecollection): deletes what the selectors match and
/// answers with the list of deleted objects.
async fn delete_collection(c: &Call) -> Result<Response> {
    let (rt, store) = (c.rt(), c.store());
    let opts = delete_options(&c.query, &c.body)?;
    let (labels, fields) = selectors(&c.query)?;
    let hooks = c.hooks(&[Operation::Delete]);
    let mut deleted = Vec::new();
    for obj in store.list(rt, c.ns(), &labels, &fields) {
        let (ns, name) = (meta::namespace(&obj), meta::name(&obj));
        let r = match &hooks {
            None => store.delete(rt, ns, name, &opts),
            Some(hooks) => admit_delete(c, hooks, ns, name, &opts).await,
        };
        match r {
            Ok(o) => deleted.push(o),
            // Deleted concurrently: that is what was asked.
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(ok(&json!({
        "kind": format!("{}List", rt.kind),
        "apiVersion": rt.api_version(),
        "metadata": {"resourceVersion": store.current_rv().to_string()},
        "items": deleted,
    })))
}

fn watch(
    c: &Call,
    rt: Arc<ResourceType>,
    ns: &str,
    labels: LabelSelector,
    fields: FieldSelector,
) -> Result<Response> {
    let (st, query) = (&c.st, &c.query);
    let from = match query.get("resourceVersion") {
        None | Some("") => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion: {v}")))?,
        ),
    };
    // An int64, as kube-apiserver decodes it; what does not parse is a 400, not the
    // default (a huge value is honoured: the watch's deadline saturates).
    let timeout = match query.get("timeoutSeconds") {
        None | Some("") => Duration::from_secs(30 * 60),
        Some(t) => t
            .parse::<i64>()
            .ok()
            .and_then(|t| u64::try_from(t).ok())
            .map(Duration::from_secs)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid timeoutSeconds: {t:?}: must be a non-negative 64-bit integer"
                ))
            })?,
    };
    // Streaming lists (`sendInitialEvents=true`): the current state as ADDED events, then
    // a bookmark that marks the end of the initial events.
    let initial_events = query.flag("sendInitialEvents");
    let from = if initial_events { None } else { from };
    let table = crate::table::wanted(&c.accept);
    let protobuf =
        !table && !rt.custom && matches!(c.wanted, crate::protobuf::Wanted::Protobuf { .. });
    let start = match st.store.watch(&rt, ns, from) {
        Ok(s) => s,
        // As kube-apiserver: the watch is accepted, then ends with an ERROR event, which
        // is what makes clients (kube-runtime's watcher, client-go's reflector) relist.
        Err(e) if e.code == 410 => {
            let status = e.to_status();
            let (body, content_type) = match protobuf
                .then(|| crate::protobuf::watch_frame("ERROR", &status).ok())
                .flatten()
            {
                Some(frame) => (frame, WATCH_PROTOBUF),
                None => (
                    format!("{}\n", json!({"type": "ERROR", "object": status})).into_bytes(),
                    "application/json",
                ),
            };
            let mut resp =
                (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response();
            resp.extensions_mut().insert(Streaming);
            return Ok(resp);
        }
        Err(e) => return Err(e),
    };
    let params = watch::Params {
        namespace: ns.to_string(),
        labels,
        fields,
        timeout,
        bookmarks: query
            .flag("allowWatchBookmarks")
            .then_some(st.bookmark_interval),
        stop: st.stop.clone(),
        initial_events_end: initial_events,
        table,
        protobuf,
    };
    let body = Body::from_stream(watch::stream(rt, start, params));
    let content_type = if protobuf {
        WATCH_PROTOBUF
    } else {
        "application/json"
    };
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response();
    resp.extensions_mut().insert(Streaming);
    Ok(resp)
}

/// A protobuf watch stream's media type, as kube-apiserver writes it.
const WATCH_PROTOBUF: &str = "application/vnd.kubernetes.protobuf;stream=watch";

/// An applied configuration names the object of the URL, and its type.
fn check_applied_identity(
    rt: &ResourceType,
    ns: &str,
    name: &str,
    applied: &mut Value,
) -> Result<()> {
    let body_name = meta::name(applied);
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let m = meta::metadata_mut(applied);
    m.insert("name".into(), json!(name));
    if rt.namespaced {
        m.insert("namespace".into(), json!(ns));
    }
    if let Some(o) = applied.as_object_mut() {
        o.entry("apiVersion").or_insert(json!(rt.api_version()));
        o.entry("kind").or_insert(json!(rt.kind));
    }
    Ok(())
}

/// Binds a pod to a node (what a scheduler does).
pub(crate) fn bind(
    store: &Store,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    node: &str,
    dry_run: bool,
) -> Result<Value> {
    store.mutate(rt, ns, name, false, dry_run, |cur| {
        let Some(cur) = cur else {
            return Err(ApiError::not_found(&rt.qualified(), name));
        };
        if !meta::str_at(cur, "spec.nodeName").is_empty() {
            return Err(ApiError::conflict(
                &rt.qualified(),
                name,
                &format!(
                    "pod {name} is already assigned to node {:?}",
                    meta::str_at(cur, "spec.nodeName")
                ),
            ));
        }
        let mut p = cur.clone();
        meta::object_mut(&mut p, "spec").insert("nodeName".into(), json!(node));
        Ok(p)
    })
}

/// Simulated containers write no output: the log says what the simulation did.
fn pod_log(pod: &Value, container: Option<&str>) -> Result<String> {
    let statuses: Vec<&Value> = meta::path(pod, "status.containerStatuses")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let wanted = match container {
        Some(c) => statuses
            .into_iter()
            .filter(|s| meta::str_at(s, "name") == c)
            .collect::<Vec<_>>(),
        None => statuses.into_iter().take(1).collect(),
    };
    let Some(status) = wanted.first() else {
        return Err(ApiError::bad_request(format!(
            "container {} is not valid for pod {}",
            container.unwrap_or("<none>"),
            meta::name(pod)
        )));
    };
    Ok(format!(
        "simulated container {} (image {}) running since {}, restarts: {}\n",
        meta::str_at(status, "name"),
        meta::str_at(status, "image"),
        meta::str_at(status, "state.running.startedAt"),
        meta::path(status, "restartCount")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    ))
}

fn scale_of(obj: &Value) -> Value {
    let sel = meta::path(obj, "spec.selector.matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta::name(obj),
            "namespace": meta::namespace(obj),
            "uid": meta::uid_of(obj),
            "resourceVersion": meta::str_at(obj, "metadata.resourceVersion"),
            "creationTimestamp": meta::str_at(obj, "metadata.creationTimestamp"),
        },
        "spec": {"replicas": meta::path(obj, "spec.replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": meta::path(obj, "status.replicas").cloned().unwrap_or(json!(0)),
            "selector": sel,
        },
    })
}

fn set_replicas(
    store: &Store,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    scale: &Value,
    dry_run: bool,
) -> Result<Value> {
    // An int32, not negative, as kube-apiserver decodes and validates a Scale.
    let replicas = crate::validate::int32_at(scale, "spec.replicas", 0)
        .map_err(|e| e.into_api_error("Scale", name))?
        .ok_or_else(|| {
            ApiError::invalid(
                "Scale",
                name,
                "spec.replicas: Invalid value: must be a non-negative integer",
            )
        })?;
    let want_rv = meta::str_at(scale, "metadata.resourceVersion").to_string();
    store.mutate(rt, ns, name, false, dry_run, |cur| {
        let Some(cur) = cur else {
            return Err(ApiError::not_found(&rt.qualified(), name));
        };
        let mut o = cur.clone();
        if !want_rv.is_empty() {
            meta::metadata_mut(&mut o).insert("resourceVersion".into(), json!(want_rv));
        }
        meta::object_mut(&mut o, "spec").insert("replicas".into(), json!(replicas));
        Ok(o)
    })
}

// Admitted writes: the object is computed, admitted (which awaits webhooks), then written
// with a resource-version precondition; a write that lost a race is computed again, as
// kube-apiserver's GuaranteedUpdate does.

/// How often an admitted write is computed again after losing a race.
const RETRIES: usize = 5;

/// A write refused because the object changed since it was read.
fn is_stale(e: &ApiError) -> bool {
    e.code == 409 && e.reason == "Conflict" && e.message.contains("has been modified")
}

fn stale(rt: &ResourceType, name: &str) -> ApiError {
    ApiError::conflict(
        &rt.qualified(),
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}

/// The namespace webhooks are told: a Namespace's own name, "" for cluster-scoped.
fn request_namespace<'a>(rt: &ResourceType, ns: &'a str, name: &'a str) -> &'a str {
    if rt.group.is_empty() && rt.plural == "namespaces" {
        name
    } else if rt.namespaced {
        ns
    } else {
        ""
    }
}

/// The body as webhooks see it: its type, and its namespace when it names none.
fn typed(rt: &ResourceType, ns: &str, mut obj: Value) -> Value {
    let Some(m) = obj.as_object_mut() else {
        return obj;
    };
    m.entry("apiVersion")
        .or_insert_with(|| json!(rt.api_version()));
    m.entry("kind").or_insert_with(|| json!(rt.kind));
    if rt.namespaced && !ns.is_empty() {
        let md = meta::metadata_mut(&mut obj);
        if md
            .get("namespace")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            md.insert("namespace".into(), json!(ns));
        }
    }
    obj
}

/// A create through the API, admitted (see [`Hooks::create`]).
async fn admit_create(c: &Call, hooks: &Hooks, obj: Value) -> Result<Value> {
    let obj = typed(c.rt(), c.ns(), obj);
    hooks
        .create(
            c.store(),
            c.rt(),
            c.ns(),
            obj,
            c.dry_run(),
            c.options("CreateOptions"),
            User::Admin,
            &c.warnings,
        )
        .await
}

/// An update of `old` (the object, its status or a namespace's finalize), admitted.
async fn admit_update(
    c: &Call,
    hooks: &Hooks,
    sub: &str,
    name: &str,
    obj: Value,
    old: &Value,
) -> Result<Value> {
    let (rt, store) = (c.rt(), c.store());
    let status_only = sub == "status";
    let attrs = Attributes::new(
        rt,
        sub,
        Operation::Update,
        request_namespace(rt, c.ns(), name),
        name,
        c.dry_run(),
        c.options("UpdateOptions"),
    );
    let obj = typed(rt, c.ns(), obj);
    let mut obj = hooks
        .mutate(store, &attrs, Some(obj), Some(old), &c.warnings)
        .await?
        .unwrap_or(Value::Null);
    // The write must replace the object the webhooks were shown.
    if obj.is_object() && meta::str_at(&obj, "metadata.resourceVersion").is_empty() {
        let rv = meta::str_at(old, "metadata.resourceVersion").to_string();
        meta::metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rv));
    }
    let prepared = store.update(rt, c.ns(), name, obj, status_only, true)?;
    hooks
        .validate(store, &attrs, Some(&prepared), Some(old), &c.warnings)
        .await?;
    if c.dry_run() {
        return Ok(prepared);
    }
    store.update(rt, c.ns(), name, prepared, status_only, false)
}

/// A patch (an update, or a create for a server-side apply of a missing object),
/// admitted; computed again from the new current object when it lost a race.
async fn admit_patch(
    c: &Call,
    hooks: &Hooks,
    name: &str,
    status_only: bool,
    kind: PatchKind,
    applied: Option<&(Value, String, bool)>,
) -> Result<Value> {
    let (rt, store) = (c.rt(), c.store());
    let sub = if status_only { "status" } else { "" };
    let mut last = None;
    for _ in 0..RETRIES {
        let current = match store.get(rt, c.ns(), name) {
            Ok(o) => Some(o),
            Err(e) if e.code == 404 => None,
            Err(e) => return Err(e),
        };
        let patched = match (applied, &current) {
            (Some((applied, manager, force)), cur) => {
                patch::server_side_apply(cur.as_ref(), applied, manager, *force)?
            }
            (None, Some(cur)) => patch::patch(kind, cur, &c.body)?,
            (None, None) => return Err(ApiError::not_found(&rt.qualified(), name)),
        };
        let r = match &current {
            None => admit_create(c, hooks, patched).await,
            Some(cur) => admit_update(c, hooks, sub, name, patched, cur).await,
        };
        match r {
            Err(e) if is_stale(&e) || (current.is_none() && e.reason == "AlreadyExists") => {
                last = Some(e);
            }
            r => return r,
        }
    }
    Err(last.unwrap_or_else(|| stale(rt, name)))
}

/// `DeleteOptions`, as webhooks get them.
fn delete_options_object(opts: &DeleteOptions) -> Value {
    let mut o = json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"});
    if opts.dry_run {
        o["dryRun"] = json!(["All"]);
    }
    if let Some(p) = &opts.propagation {
        o["propagationPolicy"] = json!(p);
    }
    if let Some(uid) = &opts.uid {
        o["preconditions"]["uid"] = json!(uid);
    }
    if let Some(rv) = &opts.resource_version {
        o["preconditions"]["resourceVersion"] = json!(rv);
    }
    if let Some(g) = opts.grace_period_seconds {
        o["gracePeriodSeconds"] = json!(g);
    }
    o
}

/// A delete, admitted with the current object as `oldObject`.
async fn admit_delete(
    c: &Call,
    hooks: &Hooks,
    ns: &str,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Value> {
    let (rt, store) = (c.rt(), c.store());
    let mut last = None;
    for _ in 0..RETRIES {
        let old = store.get(rt, ns, name)?;
        let attrs = Attributes::new(
            rt,
            "",
            Operation::Delete,
            request_namespace(rt, ns, name),
            name,
            opts.dry_run,
            delete_options_object(opts),
        );
        hooks
            .mutate(store, &attrs, None, Some(&old), &c.warnings)
            .await?;
        hooks
            .validate(store, &attrs, None, Some(&old), &c.warnings)
            .await?;
        let mut precondition = opts.clone();
        if precondition.resource_version.is_none() {
            precondition.resource_version =
                Some(meta::str_at(&old, "metadata.resourceVersion").to_string());
        }
        match store.delete(rt, ns, name, &precondition) {
            Err(e) if e.code == 409 && opts.resource_version.is_none() => last = Some(e),
            r => return r,
        }
    }
    Err(last.unwrap_or_else(|| stale(rt, name)))
}

/// A Scale written through `/scale`, admitted as `autoscaling/v1` Scale; the store
/// then checks and applies it.
async fn admit_scale(
    c: &Call,
    hooks: &Hooks,
    name: &str,
    scale: Value,
    current: &Value,
) -> Result<Value> {
    let old = scale_of(current);
    let mut attrs = Attributes::new(
        c.rt(),
        "scale",
        Operation::Update,
        c.ns(),
        name,
        c.dry_run(),
        c.options("UpdateOptions"),
    );
    attrs.kind = ("autoscaling", "v1", "Scale");
    let scale = hooks
        .mutate(c.store(), &attrs, Some(scale), Some(&old), &c.warnings)
        .await?
        .unwrap_or(Value::Null);
    hooks
        .validate(c.store(), &attrs, Some(&scale), Some(&old), &c.warnings)
        .await?;
    Ok(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1&dryRun=All",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        assert!(q.dry_run());
        assert_eq!(decode("%zz%"), "%zz%");
    }
}
