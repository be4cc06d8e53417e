//! Dynamic admission: the `admissionregistration.k8s.io/v1` webhooks, called as
//! kube-apiserver calls them.
//!
//! A write is admitted in kube-apiserver's order: the mutating webhooks (configurations
//! sorted by name, then their webhooks in order; once more for the `IfNeeded` webhooks
//! that ran before a later webhook changed the object), then the cluster's own defaults
//! and validation, then the validating webhooks, called in parallel. The API handlers
//! compute the object, admit it, then write it with a resource-version precondition.
//!
//! Webhooks are reached over HTTPS only, verified against their `caBundle`: at
//! `clientConfig.url`, or at a Service resolved through its Endpoints (the first ready
//! address of the subset serving the Service port), verified as `NAME.NAMESPACE.svc`.
//! A process on loopback registers with a Service (`ports: [{port: 443, targetPort:
//! PORT}]`) and an Endpoints object of the same name (`subsets: [{addresses: [{ip:
//! 127.0.0.1}], ports: [{port: PORT}]}]`).
//!
//! Webhook configurations themselves are never sent to webhooks. With no configuration
//! stored, a write costs two store lookups (under the store's lock) more than without
//! admission; a write no webhook's rules name takes the same direct path.
//!
//! The built-in controllers' pod creates are admitted too ([`Admission::create_as`]), as
//! kube-apiserver admits kube-controller-manager's: the ReplicaSet and StatefulSet
//! controllers' pods reach mutating webhooks (sidecar injection) and may be refused
//! (see `sim::creates`); webhooks see them made by
//! `system:serviceaccount:kube-system:NAME-controller`. The controllers' other writes
//! (status, scale, revisions, ReplicaSets made by the Deployment controller, deletes,
//! Events) and the garbage collector's and namespace controller's deletes go straight to
//! the store.

mod client;
pub(crate) mod config;
mod review;

use crate::meta;
use crate::resource::ResourceType;
use crate::selector::LabelSelector;
use crate::status::{ApiError, Result};
use crate::store::Store;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, RuleWithOperations, ValidatingWebhook,
};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The Service and the Endpoints object that make a webhook server listening on this
/// machine's loopback at `port` reachable as `clientConfig.service: {namespace, name}`
/// (Service port 443, the default). Its certificate must name `NAME.NAMESPACE.svc`.
pub fn loopback_service(namespace: &str, name: &str, port: u16) -> (Value, Value) {
    let metadata = serde_json::json!({"name": name, "namespace": namespace});
    let service = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]},
    });
    let endpoints = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": metadata,
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port}]}],
    });
    (service, endpoints)
}

/// Who makes a request, as webhooks see it in `userInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum User {
    /// A client of the API: there is no authentication, every client is an administrator.
    Admin,
    /// A built-in controller, by the name of its service account in `kube-system`
    /// (`replicaset-controller`), as kube-controller-manager runs them.
    Controller(&'static str),
}

/// What a request does to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    /// POST, or a server-side apply that creates.
    Create,
    /// PUT and PATCH.
    Update,
    /// DELETE.
    Delete,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        }
    }
}

/// One request, as webhooks see it.
pub(crate) struct Attributes<'a> {
    /// The resource of the URL.
    pub rt: &'a Arc<ResourceType>,
    /// `(group, version, kind)` of the object sent (the resource's, or e.g.
    /// `autoscaling/v1 Scale` for `/scale`).
    pub kind: (&'a str, &'a str, &'a str),
    /// Subresource, "" for the main resource.
    pub sub: &'a str,
    pub op: Operation,
    /// The namespace of the request ("" for cluster-scoped resources).
    pub namespace: &'a str,
    /// The object's name ("" on a create with `generateName`).
    pub name: &'a str,
    pub dry_run: bool,
    /// `CreateOptions`, `UpdateOptions` or `DeleteOptions`.
    pub options: Value,
    /// Who asks.
    pub user: User,
}

impl<'a> Attributes<'a> {
    /// Attributes for the main resource (or a subresource that carries the whole object).
    pub(crate) fn new(
        rt: &'a Arc<ResourceType>,
        sub: &'a str,
        op: Operation,
        namespace: &'a str,
        name: &'a str,
        dry_run: bool,
        options: Value,
    ) -> Self {
        Self {
            rt,
            kind: (&rt.group, &rt.version, &rt.kind),
            sub,
            op,
            namespace,
            name,
            dry_run,
            options,
            user: User::Admin,
        }
    }

    fn is_namespace(&self) -> bool {
        self.rt.group.is_empty() && self.rt.plural == "namespaces"
    }

    /// kube-apiserver never sends webhook configurations to webhooks.
    fn exempt(&self) -> bool {
        self.rt.group == config::GROUP
            && matches!(
                self.rt.kind.as_str(),
                "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration"
            )
    }
}

/// The resource a webhook is called for: the request's, or an equivalent version.
pub(crate) struct Invocation<'a> {
    rt: Cow<'a, Arc<ResourceType>>,
}

impl Invocation<'_> {
    /// Whether the webhook is called for another version than the request's.
    fn converted(&self, attrs: &Attributes<'_>) -> bool {
        !Arc::ptr_eq(&*self.rt, attrs.rt)
    }
}

/// Warnings webhooks returned, for the `Warning` headers of the answer.
#[derive(Debug, Default)]
pub(crate) struct Warnings(Mutex<Recorder>);

/// kube-apiserver's warning recorder: duplicates dropped; past 4096 characters in all,
/// every warning is cut to 256 and no more are added once 4096 are written.
#[derive(Debug, Default)]
struct Recorder {
    /// Every distinct warning, whole.
    ordered: Vec<String>,
    seen: HashSet<String>,
    /// What the headers carry.
    written: Vec<String>,
    chars: usize,
    truncating: bool,
}

const WARNINGS_TOTAL: usize = 4 * 1024;
const WARNING_ITEM: usize = 256;

fn cut(text: &str) -> String {
    text.chars().take(WARNING_ITEM).collect()
}

impl Recorder {
    fn add(&mut self, text: String) {
        if text.is_empty() || (self.truncating && self.chars >= WARNINGS_TOTAL) {
            return;
        }
        if !self.seen.insert(text.clone()) {
            return;
        }
        let mut len = text.chars().count();
        let shown = if self.truncating && len > WARNING_ITEM {
            len = WARNING_ITEM;
            cut(&text)
        } else {
            text.clone()
        };
        self.ordered.push(text);
        if self.truncating || self.chars + len <= WARNINGS_TOTAL {
            self.chars += len;
            self.written.push(shown);
            return;
        }
        self.truncating = true;
        self.written = self.ordered.iter().map(|t| cut(t)).collect();
        self.chars = self.written.iter().map(|t| t.chars().count()).sum();
    }
}

impl Warnings {
    fn add(&self, warnings: Vec<String>) {
        if warnings.is_empty() {
            return;
        }
        let mut r = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for w in warnings {
            r.add(w);
        }
    }

    /// The warnings for the headers, in the order they came.
    pub(crate) fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()).written)
    }
}

/// One webhook of a configuration, parsed.
struct Hook {
    name: String,
    rules: Vec<RuleWithOperations>,
    ignore: bool,
    equivalent: bool,
    namespace_selector: LabelSelector,
    object_selector: LabelSelector,
    /// `sideEffects` is `None` or `NoneOnDryRun`.
    dry_run_ok: bool,
    timeout: Duration,
    /// `reinvocationPolicy: IfNeeded`.
    if_needed: bool,
    /// The AdmissionReview version to send (the first of the webhook's we know).
    version: Option<&'static str>,
    client: client::Client,
}

impl Hook {
    #[expect(
        clippy::too_many_arguments,
        reason = "the fields mutating and validating webhooks share"
    )]
    fn new(
        name: &str,
        rules: Option<&Vec<RuleWithOperations>>,
        failure: Option<&String>,
        matching: Option<&String>,
        ns: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
        obj: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
        side_effects: &str,
        timeout: Option<i32>,
        versions: &[String],
        cc: &k8s_openapi::api::admissionregistration::v1::WebhookClientConfig,
        pool: &client::Pool,
    ) -> Self {
        let selector =
            |s: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>| {
                s.and_then(|s| serde_json::to_value(s).ok())
                    .map(|v| LabelSelector::from_object(&v))
                    .unwrap_or_default()
            };
        Self {
            name: name.to_string(),
            rules: rules.cloned().unwrap_or_default(),
            ignore: failure.is_some_and(|f| f == "Ignore"),
            equivalent: matching.is_none_or(|m| m == "Equivalent"),
            namespace_selector: selector(ns),
            object_selector: selector(obj),
            dry_run_ok: matches!(side_effects, "None" | "NoneOnDryRun"),
            timeout: Duration::from_secs(timeout.and_then(|t| u64::try_from(t).ok()).unwrap_or(10)),
            if_needed: false,
            version: versions.iter().find_map(|v| match v.as_str() {
                "v1" => Some("v1"),
                "v1beta1" => Some("v1beta1"),
                _ => None,
            }),
            client: client::Client::new(cc, pool.clone()),
        }
    }

    fn mutating(h: &MutatingWebhook, pool: &client::Pool) -> Self {
        let mut hook = Self::new(
            &h.name,
            h.rules.as_ref(),
            h.failure_policy.as_ref(),
            h.match_policy.as_ref(),
            h.namespace_selector.as_ref(),
            h.object_selector.as_ref(),
            &h.side_effects,
            h.timeout_seconds,
            &h.admission_review_versions,
            &h.client_config,
            pool,
        );
        hook.if_needed = h.reinvocation_policy.as_deref() == Some("IfNeeded");
        hook
    }

    fn validating(h: &ValidatingWebhook, pool: &client::Pool) -> Self {
        Self::new(
            &h.name,
            h.rules.as_ref(),
            h.failure_policy.as_ref(),
            h.match_policy.as_ref(),
            h.namespace_selector.as_ref(),
            h.object_selector.as_ref(),
            &h.side_effects,
            h.timeout_seconds,
            &h.admission_review_versions,
            &h.client_config,
            pool,
        )
    }
}

/// The webhooks of every stored configuration, in calling order.
pub(crate) struct Hooks {
    mutating: Vec<Hook>,
    validating: Vec<Hook>,
}

impl Hooks {
    /// Whether some webhook's rules may name a request: writes no webhook can see keep
    /// the direct path (selectors and scopes are checked later).
    pub(crate) fn may_apply(&self, rt: &ResourceType, sub: &str, ops: &[Operation]) -> bool {
        let exempt = rt.group == config::GROUP;
        !exempt
            && self.mutating.iter().chain(&self.validating).any(|h| {
                (h.equivalent && rt.custom)
                    || h.rules
                        .iter()
                        .any(|r| ops.iter().any(|op| rule_names(r, rt, sub, *op)))
            })
    }
}

/// The configuration objects the webhooks were parsed from, and the webhooks.
type Parsed = (Vec<Arc<Value>>, Arc<Hooks>);

/// The stored configurations, parsed once per change, and the connections to webhooks.
#[derive(Default)]
pub(crate) struct Admission {
    cache: Mutex<Option<Parsed>>,
    /// Kept-alive connections, shared by every configuration.
    pool: client::Pool,
}

impl Admission {
    /// The webhooks, or `None` when no configuration exists (the fast path: writes go
    /// straight to the store). Callers check [`Hooks::may_apply`] next.
    pub(crate) fn hooks(&self, store: &Store) -> Option<Arc<Hooks>> {
        let mutating = store.all(config::MUTATING_KEY);
        let validating = store.all(config::VALIDATING_KEY);
        if mutating.is_empty() && validating.is_empty() {
            return None;
        }
        let split = mutating.len();
        let mut sources = mutating;
        sources.extend(validating);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, hooks)) = &*cache
            && seen.len() == sources.len()
            && seen.iter().zip(&sources).all(|(a, b)| Arc::ptr_eq(a, b))
        {
            return Some(hooks.clone());
        }
        let webhooks = |obj: &Value| obj.get("webhooks").cloned().unwrap_or(Value::Null);
        let mut hooks = Hooks {
            mutating: Vec::new(),
            validating: Vec::new(),
        };
        // `all` lists by name: the order kube-apiserver calls configurations in.
        for obj in &sources[..split] {
            match serde_json::from_value::<Option<Vec<MutatingWebhook>>>(webhooks(obj)) {
                Ok(list) => hooks
                    .mutating
                    .extend(list.iter().flatten().map(|h| Hook::mutating(h, &self.pool))),
                Err(e) => {
                    tracing::warn!(config = meta::name(obj), error = %e, "skipping an unreadable MutatingWebhookConfiguration")
                }
            }
        }
        for obj in &sources[split..] {
            match serde_json::from_value::<Option<Vec<ValidatingWebhook>>>(webhooks(obj)) {
                Ok(list) => hooks.validating.extend(
                    list.iter()
                        .flatten()
                        .map(|h| Hook::validating(h, &self.pool)),
                ),
                Err(e) => {
                    tracing::warn!(config = meta::name(obj), error = %e, "skipping an unreadable ValidatingWebhookConfiguration")
                }
            }
        }
        let hooks = Arc::new(hooks);
        *cache = Some((sources, hooks.clone()));
        Some(hooks)
    }
}

impl Admission {
    /// Creates an object for a built-in controller, admitted as a create by `user`
    /// through the API would be ([`Hooks::create`]); straight to the store when no
    /// webhook's rules name it. Webhooks' warnings go to the log.
    pub(crate) async fn create_as(
        &self,
        store: &Store,
        rt: &Arc<ResourceType>,
        ns: &str,
        obj: Value,
        user: User,
    ) -> Result<Value> {
        let Some(hooks) = self
            .hooks(store)
            .filter(|h| h.may_apply(rt, "", &[Operation::Create]))
        else {
            return store.create(rt, ns, obj, false);
        };
        let warnings = Warnings::default();
        let options = serde_json::json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"});
        let out = hooks
            .create(store, rt, ns, obj, false, options, user, &warnings)
            .await;
        for w in warnings.take() {
            tracing::debug!(user = ?user, warning = %w, "admission webhook warning");
        }
        out
    }
}

/// Why a call did not give a verdict.
enum CallError {
    /// Calling failed (`ErrCallingWebhook`): the webhook's `failurePolicy` decides.
    Calling(String),
    /// An answer for the client whatever the policy.
    Status(ApiError),
}

impl CallError {
    fn into_api_error(self, hook: &Hook) -> ApiError {
        match self {
            Self::Calling(why) => {
                review::internal(format!("failed calling webhook {:?}: {why}", hook.name))
            }
            Self::Status(e) => e,
        }
    }
}

/// The labels of the request's namespace, looked up once.
struct Namespace<'s> {
    store: &'s Store,
    labels: Option<Option<Map<String, Value>>>,
}

impl Hooks {
    /// Whether the webhook applies to the request, and for which resource version.
    fn invocation<'a>(
        &self,
        hook: &Hook,
        attrs: &'a Attributes<'a>,
        object: Option<&Value>,
        old: Option<&Value>,
        ns: &mut Namespace<'_>,
    ) -> Option<Invocation<'a>> {
        let rule_for = |rt: &ResourceType| hook.rules.iter().any(|r| rule_matches(r, attrs, rt));
        let inv = if rule_for(attrs.rt) {
            Invocation {
                rt: Cow::Borrowed(attrs.rt),
            }
        } else if hook.equivalent && attrs.rt.custom {
            // The other served versions of a custom resource (they share one stored form).
            let reg = ns.store.registry();
            let other = reg
                .all()
                .find(|t| {
                    t.storage_key() == attrs.rt.storage_key()
                        && t.version != attrs.rt.version
                        && rule_for(t)
                })?
                .clone();
            Invocation {
                rt: Cow::Owned(other),
            }
        } else {
            return None;
        };
        if !namespace_matches(hook, attrs, object, old, ns) {
            return None;
        }
        if !hook.object_selector.is_empty() {
            let m = |o: Option<&Value>| o.is_some_and(|o| hook.object_selector.matches(o));
            if !m(object) && !m(old) {
                return None;
            }
        }
        Some(inv)
    }

    /// A create, admitted: the mutating webhooks, the store's defaults and validation
    /// (a dry run), the validating webhooks, then the write (unless `dry_run`).
    /// `obj` carries its `apiVersion`, `kind` and namespace; `ns` is the request's.
    #[expect(clippy::too_many_arguments, reason = "one create's inputs")]
    pub(crate) async fn create(
        &self,
        store: &Store,
        rt: &Arc<ResourceType>,
        ns: &str,
        obj: Value,
        dry_run: bool,
        options: Value,
        user: User,
        warnings: &Warnings,
    ) -> Result<Value> {
        let name = meta::name(&obj).to_string();
        let obj_ns = if rt.namespaced {
            meta::namespace(&obj).to_string()
        } else {
            String::new()
        };
        let mut attrs =
            Attributes::new(rt, "", Operation::Create, &obj_ns, &name, dry_run, options);
        attrs.user = user;
        let obj = self
            .mutate(store, &attrs, Some(obj), None, warnings)
            .await?
            .unwrap_or(Value::Null);
        let prepared = store.create(rt, ns, obj, true)?;
        self.validate(store, &attrs, Some(&prepared), None, warnings)
            .await?;
        if dry_run {
            return Ok(prepared);
        }
        store.create_prepared(rt, ns, prepared)
    }

    /// Runs the mutating webhooks; returns the object they leave.
    pub(crate) async fn mutate(
        &self,
        store: &Store,
        attrs: &Attributes<'_>,
        mut object: Option<Value>,
        old: Option<&Value>,
        warnings: &Warnings,
    ) -> Result<Option<Value>> {
        if self.mutating.is_empty() || attrs.exempt() {
            return Ok(object);
        }
        let mut ns = Namespace {
            store,
            labels: None,
        };
        // kube-apiserver's webhookReinvokeContext.
        let mut previously: Vec<usize> = Vec::new();
        let mut reinvoke: HashSet<usize> = HashSet::new();
        for round in 0..2 {
            if round == 1 && reinvoke.is_empty() {
                break;
            }
            for (i, hook) in self.mutating.iter().enumerate() {
                if round == 1 && !reinvoke.contains(&i) {
                    continue;
                }
                let Some(inv) = self.invocation(hook, attrs, object.as_ref(), old, &mut ns) else {
                    continue;
                };
                let changed = match call_mutating(
                    store,
                    hook,
                    attrs,
                    &inv,
                    &mut object,
                    old,
                    warnings,
                )
                .await
                {
                    Ok(changed) => changed,
                    Err(CallError::Calling(why)) if hook.ignore => {
                        tracing::warn!(webhook = %hook.name, error = %why, "failed calling webhook, failing open");
                        false
                    }
                    Err(e) => return Err(e.into_api_error(hook)),
                };
                if changed {
                    reinvoke.extend(previously.drain(..));
                }
                if hook.if_needed {
                    previously.push(i);
                }
            }
        }
        Ok(object)
    }

    /// Runs the validating webhooks in parallel; the first refusal (in calling order)
    /// is the answer.
    pub(crate) async fn validate(
        &self,
        store: &Store,
        attrs: &Attributes<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
        warnings: &Warnings,
    ) -> Result<()> {
        if self.validating.is_empty() || attrs.exempt() {
            return Ok(());
        }
        let mut ns = Namespace {
            store,
            labels: None,
        };
        let calls: Vec<_> = self
            .validating
            .iter()
            .filter_map(|hook| {
                let inv = self.invocation(hook, attrs, object, old, &mut ns)?;
                Some(async move {
                    let r = call(store, hook, attrs, &inv, object, old, false, warnings).await;
                    (hook, r)
                })
            })
            .collect();
        if calls.is_empty() {
            return Ok(());
        }
        let mut first = None;
        for (hook, r) in futures::future::join_all(calls).await {
            match r {
                Ok(_) => {}
                Err(CallError::Calling(why)) if hook.ignore => {
                    tracing::warn!(webhook = %hook.name, error = %why, "failed calling webhook, failing open");
                }
                Err(e) => {
                    if first.is_none() {
                        first = Some(e.into_api_error(hook));
                    }
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// A rule as kube-apiserver's `rules.Matcher` reads it.
fn rule_matches(r: &RuleWithOperations, attrs: &Attributes<'_>, rt: &ResourceType) -> bool {
    let scope = match r.scope.as_deref() {
        Some("Namespaced") => !attrs.is_namespace() && !attrs.namespace.is_empty(),
        Some("Cluster") => attrs.is_namespace() || attrs.namespace.is_empty(),
        _ => true,
    };
    rule_names(r, rt, attrs.sub, attrs.op) && scope
}

/// Whether a rule names the operation, group, version, resource and subresource.
fn rule_names(r: &RuleWithOperations, rt: &ResourceType, sub: &str, op: Operation) -> bool {
    let has =
        |list: &Option<Vec<String>>, v: &str| list.iter().flatten().any(|x| x == "*" || x == v);
    let resource = r.resources.iter().flatten().any(|rs| {
        let (res, s) = rs.split_once('/').unwrap_or((rs, ""));
        (res == "*" || res == rt.plural) && (s == "*" || s == sub)
    });
    has(&r.operations, op.as_str())
        && has(&r.api_groups, &rt.group)
        && has(&r.api_versions, &rt.version)
        && resource
}

/// `namespaceSelector` against the request's namespace (a Namespace's own labels for a
/// Namespace; cluster-scoped objects always match). A namespace that does not exist
/// matches nothing: the write then fails as it would without webhooks.
fn namespace_matches(
    hook: &Hook,
    attrs: &Attributes<'_>,
    object: Option<&Value>,
    old: Option<&Value>,
    ns: &mut Namespace<'_>,
) -> bool {
    if hook.namespace_selector.is_empty() {
        return true;
    }
    if attrs.is_namespace() {
        return object
            .or(old)
            .is_some_and(|o| hook.namespace_selector.matches(o));
    }
    if attrs.namespace.is_empty() {
        return true;
    }
    let labels = ns.labels.get_or_insert_with(|| {
        let rt = ns.store.resolve("", "v1", "namespaces")?;
        ns.store
            .get(&rt, "", attrs.namespace)
            .ok()
            .map(|n| meta::labels(&n))
    });
    labels
        .as_ref()
        .is_some_and(|l| hook.namespace_selector.matches_labels(l))
}

/// Calls a webhook and checks its answer: `Ok` only when it allowed the request.
#[expect(clippy::too_many_arguments, reason = "one call's inputs")]
async fn call(
    store: &Store,
    hook: &Hook,
    attrs: &Attributes<'_>,
    inv: &Invocation<'_>,
    object: Option<&Value>,
    old: Option<&Value>,
    mutating: bool,
    warnings: &Warnings,
) -> Result<review::Verdict, CallError> {
    if attrs.dry_run && !hook.dry_run_ok {
        return Err(CallError::Status(ApiError::bad_request(format!(
            "admission webhook {:?} does not support dry run",
            hook.name
        ))));
    }
    let version = hook.version.ok_or_else(|| {
        CallError::Calling(
            "could not create admission objects: webhook does not accept known AdmissionReview versions (v1, v1beta1)"
                .into(),
        )
    })?;
    // An equivalent version sees the object in its own apiVersion.
    let as_version = |o: Option<&Value>| -> Option<Value> {
        let mut o = o?.clone();
        if let Some(m) = o.as_object_mut() {
            m.insert("apiVersion".into(), Value::String(inv.rt.api_version()));
        }
        Some(o)
    };
    let converted = inv.converted(attrs);
    let (object_v, old_v) = if converted {
        (as_version(object), as_version(old))
    } else {
        (None, None)
    };
    let (object, old) = if converted {
        (object_v.as_ref(), old_v.as_ref())
    } else {
        (object, old)
    };
    let uid = meta::uid();
    let body = review::request(&uid, version, attrs, inv, object, old);
    let answer = hook
        .client
        .post(store, body, hook.timeout)
        .await
        .map_err(CallError::Calling)?;
    let verdict = review::verify(&answer, &uid, version, mutating).map_err(CallError::Calling)?;
    warnings.add(verdict.warnings.clone());
    if !verdict.allowed {
        return Err(CallError::Status(review::denied(
            attrs,
            &hook.name,
            &verdict.status,
        )));
    }
    Ok(verdict)
}

/// Calls a mutating webhook and applies its patch; returns whether the object changed.
async fn call_mutating(
    store: &Store,
    hook: &Hook,
    attrs: &Attributes<'_>,
    inv: &Invocation<'_>,
    object: &mut Option<Value>,
    old: Option<&Value>,
    warnings: &Warnings,
) -> Result<bool, CallError> {
    let verdict = call(
        store,
        hook,
        attrs,
        inv,
        object.as_ref(),
        old,
        true,
        warnings,
    )
    .await?;
    let Some(patch) = verdict.patch else {
        return Ok(false);
    };
    let ops: json_patch::Patch = serde_json::from_slice(&patch).map_err(|e| {
        CallError::Calling(format!(
            "received undecodable patch in webhook response: {e}"
        ))
    })?;
    if ops.0.is_empty() {
        return Ok(false);
    }
    let Some(current) = object.as_ref() else {
        return Err(CallError::Status(review::internal(format!(
            "admission webhook {:?} attempted to modify the object, which is not supported for this operation",
            hook.name
        ))));
    };
    let converted = inv.converted(attrs);
    let mut patched = current.clone();
    if converted && let Some(m) = patched.as_object_mut() {
        m.insert("apiVersion".into(), Value::String(inv.rt.api_version()));
    }
    json_patch::patch(&mut patched, &ops).map_err(|e| CallError::Status(review::internal(e)))?;
    if !patched.is_object() {
        return Err(CallError::Status(review::internal(format!(
            "admission webhook {:?} patched the object into a non-object",
            hook.name
        ))));
    }
    if converted && let Some(m) = patched.as_object_mut() {
        m.insert("apiVersion".into(), Value::String(attrs.rt.api_version()));
    }
    let changed = patched != *current;
    *object = Some(patched);
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Registry;
    use serde_json::json;

    fn rule(v: Value) -> RuleWithOperations {
        serde_json::from_value(v).expect("rule")
    }

    #[test]
    fn warnings_are_deduplicated_and_capped() {
        let w = Warnings::default();
        w.add(vec!["a".into(), "a".into(), "b".into()]);
        assert_eq!(w.take(), vec!["a", "b"]);
        let w = Warnings::default();
        w.add((0..1000).map(|i| format!("{i:0>300}")).collect());
        let all = w.take();
        assert!(all.iter().all(|t| t.chars().count() == 256));
        let total: usize = all.iter().map(String::len).sum();
        assert!((4096..4096 + 256).contains(&total), "{total}");
    }

    #[test]
    fn rules_match_as_kube_apiservers() {
        let reg = Registry::builtin();
        let pods = reg.get("", "v1", "pods").expect("pods");
        let nss = reg.get("", "v1", "namespaces").expect("namespaces");
        let create = Attributes::new(&pods, "", Operation::Create, "d", "p", false, json!({}));
        let status = Attributes::new(
            &pods,
            "status",
            Operation::Update,
            "d",
            "p",
            false,
            json!({}),
        );
        let ns = Attributes::new(&nss, "", Operation::Create, "", "n", false, json!({}));
        let r = |ops: &str, res: &str, scope: &str| {
            rule(
                json!({"operations": [ops], "apiGroups": [""], "apiVersions": ["*"], "resources": [res], "scope": scope}),
            )
        };
        assert!(rule_matches(&r("CREATE", "pods", "*"), &create, &pods));
        assert!(!rule_matches(&r("UPDATE", "pods", "*"), &create, &pods));
        assert!(rule_matches(&r("*", "*", "*"), &create, &pods));
        assert!(
            !rule_matches(&r("*", "*", "*"), &status, &pods),
            "* is main resources only"
        );
        assert!(rule_matches(&r("*", "*/*", "*"), &status, &pods));
        assert!(rule_matches(&r("*", "pods/status", "*"), &status, &pods));
        assert!(rule_matches(&r("*", "pods/*", "*"), &status, &pods));
        assert!(!rule_matches(&r("*", "pods", "*"), &status, &pods));
        assert!(rule_matches(&r("*", "*", "Namespaced"), &create, &pods));
        assert!(!rule_matches(&r("*", "*", "Cluster"), &create, &pods));
        assert!(rule_matches(&r("*", "*", "Cluster"), &ns, &nss));
        assert!(!rule_matches(&r("*", "*", "Namespaced"), &ns, &nss));
    }
}
