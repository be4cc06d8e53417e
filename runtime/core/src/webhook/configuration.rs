//! The Mutating/ValidatingWebhookConfiguration objects the leader keeps in line with
//! the admission plugins it serves: one webhook per plugin (`NAME.plugins.bosun.dev`),
//! written by server-side apply under one field manager, and deleted when no plugin of
//! that kind is left.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bosun_api::plugin::{FailurePolicy, ReinvocationPolicy, Webhook};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use super::Webhooks;
use crate::informer::Kind;

/// The field manager of the configurations.
pub const FIELD_MANAGER: &str = "bosun-runtime";

/// The label naming namespaces (kube-apiserver sets it on every namespace).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The default timeout of a plugin's webhook (kube-apiserver's is 10 s).
const DEFAULT_TIMEOUT_SECONDS: u32 = 5;

/// Written again this often even when nothing changed, so that a configuration someone
/// edited or deleted comes back.
const REAPPLY: Duration = Duration::from_secs(30);

/// The webhook's name in the configuration.
pub fn webhook_name(plugin: &str) -> String {
    format!("{plugin}.plugins.bosun.dev")
}

/// The (mutating, validating) webhooks the served admission plugins need.
async fn desired(w: &Webhooks) -> (Vec<Value>, Vec<Value>) {
    let (mut mutating, mut validating) = (Vec::new(), Vec::new());
    let ca = base64::engine::general_purpose::STANDARD.encode(w.ca_pem());
    for name in w.admission_plugins() {
        let Some(revision) = w.parts.registry.current(&name) else {
            continue;
        };
        let settings = w.parts.rollouts.webhook(&name).unwrap_or_default();
        let rules = if settings.rules.is_empty() {
            default_rules(w, &revision).await
        } else {
            settings
                .rules
                .iter()
                .filter_map(|r| serde_json::to_value(r).ok())
                .collect()
        };
        if rules.is_empty() {
            tracing::debug!(plugin = %name, "admission plugin without rules: it subscribes to no kind the API server serves and its Plugin sets no spec.admission.rules");
            continue;
        }
        let webhook = one(w, &name, &settings, rules, &ca);
        if settings.mutating {
            mutating.push(webhook);
        } else {
            validating.push(webhook);
        }
    }
    (mutating, validating)
}

/// CREATE and UPDATE of each kind the plugin's metadata subscribes to.
async fn default_rules(w: &Webhooks, revision: &bosun_host::Revision) -> Vec<Value> {
    let mut rules = Vec::new();
    for s in &revision.metadata().subscriptions {
        let kind = Kind::new(&s.api_version, &s.kind);
        match w.parts.informers.resolve(&kind).await {
            Ok((ar, namespaced)) => rules.push(json!({
                "operations": ["CREATE", "UPDATE"],
                "apiGroups": [ar.group],
                "apiVersions": [ar.version],
                "resources": [ar.plural],
                "scope": if namespaced { "Namespaced" } else { "Cluster" },
            })),
            Err(e) => {
                tracing::debug!(plugin = %revision.name(), kind = %format!("{} {}", s.api_version, s.kind), error = %e, "cannot resolve a subscribed kind for the webhook's rules")
            }
        }
    }
    rules
}

fn one(w: &Webhooks, plugin: &str, s: &Webhook, rules: Vec<Value>, ca: &str) -> Value {
    let path = format!("/admission/{plugin}");
    let client = match &w.config.url {
        Some(url) => json!({"url": format!("{}{path}", url.trim_end_matches('/')), "caBundle": ca}),
        None => json!({
            "service": {
                "namespace": w.service_namespace(),
                "name": w.config.service.name,
                "port": w.config.service.port,
                "path": path,
            },
            "caBundle": ca,
        }),
    };
    let mut ns_selector = s
        .namespace_selector
        .as_ref()
        .and_then(|sel| serde_json::to_value(sel).ok())
        .unwrap_or_else(|| json!({}));
    let excluded = json!({"key": NAMESPACE_NAME_LABEL, "operator": "NotIn", "values": w.excluded_namespaces()});
    match ns_selector
        .get_mut("matchExpressions")
        .and_then(Value::as_array_mut)
    {
        Some(list) => list.push(excluded),
        None => ns_selector["matchExpressions"] = json!([excluded]),
    }
    let mut hook = json!({
        "name": webhook_name(plugin),
        "clientConfig": client,
        "rules": rules,
        "namespaceSelector": ns_selector,
        "objectSelector": s.object_selector.as_ref().and_then(|sel| serde_json::to_value(sel).ok()).unwrap_or_else(|| json!({})),
        "failurePolicy": match s.failure_policy { Some(FailurePolicy::Fail) => "Fail", _ => "Ignore" },
        "matchPolicy": "Equivalent",
        "sideEffects": "None",
        "timeoutSeconds": s.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS).clamp(1, 30),
        "admissionReviewVersions": ["v1"],
    });
    if s.mutating {
        hook["reinvocationPolicy"] = json!(match s.reinvocation_policy {
            Some(ReinvocationPolicy::IfNeeded) => "IfNeeded",
            _ => "Never",
        });
    }
    hook
}

fn resource(kind: &str) -> ApiResource {
    ApiResource {
        group: "admissionregistration.k8s.io".to_owned(),
        version: "v1".to_owned(),
        api_version: "admissionregistration.k8s.io/v1".to_owned(),
        kind: kind.to_owned(),
        plural: format!("{}s", kind.to_ascii_lowercase()),
    }
}

/// Writes (or deletes) the configuration of `kind` so that it holds `webhooks`.
async fn apply(w: &Webhooks, kind: &str, webhooks: &[Value]) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(w.parts.client.clone(), &resource(kind));
    let name = &w.config.configuration_name;
    if webhooks.is_empty() {
        return match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(kind, name = %name, "no admission plugin of this kind left: configuration removed");
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        };
    }
    let object = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "bosun"}},
        "webhooks": webhooks,
    });
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await?;
    Ok(())
}

/// Keeps the configurations in line while this replica leads.
pub(super) async fn sync_loop(webhooks: Weak<Webhooks>) {
    let mut changed = match webhooks.upgrade() {
        Some(w) => w.parts.rollouts.changed(),
        None => return,
    };
    let mut written: HashMap<&'static str, (Vec<Value>, Instant)> = HashMap::new();
    let mut warned: Option<String> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            r = changed.changed() => if r.is_err() { return },
        }
        let Some(w) = webhooks.upgrade() else {
            return;
        };
        if !*w.parts.leading.borrow() {
            written.clear();
            continue;
        }
        let (mutating, validating) = desired(&w).await;
        for (kind, hooks) in [
            ("MutatingWebhookConfiguration", mutating),
            ("ValidatingWebhookConfiguration", validating),
        ] {
            if written
                .get(kind)
                .is_some_and(|(h, at)| *h == hooks && at.elapsed() < REAPPLY)
            {
                continue;
            }
            match apply(&w, kind, &hooks).await {
                Ok(()) => {
                    if !hooks.is_empty() && written.get(kind).is_none_or(|(h, _)| *h != hooks) {
                        let names: Vec<&str> =
                            hooks.iter().filter_map(|h| h["name"].as_str()).collect();
                        tracing::info!(kind, webhooks = ?names, "admission webhook configuration applied");
                    }
                    written.insert(kind, (hooks, Instant::now()));
                    warned = None;
                }
                Err(e) => {
                    let text = format!("cannot write the {kind}: {e}");
                    if warned.as_deref() != Some(text.as_str()) {
                        tracing::warn!("{text}; retrying");
                        warned = Some(text);
                    }
                }
            }
        }
    }
}
