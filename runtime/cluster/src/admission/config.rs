//! `MutatingWebhookConfiguration` and `ValidatingWebhookConfiguration`: the defaults and
//! the validation kube-apiserver applies to them (admissionregistration/v1).

use crate::meta;
use crate::resource::ResourceType;
use crate::status::{ApiError, Result};
use serde_json::{Value, json};

/// The API group of the webhook configurations.
pub(crate) const GROUP: &str = "admissionregistration.k8s.io";
/// Storage key of the mutating configurations.
pub(crate) const MUTATING_KEY: &str = "admissionregistration.k8s.io/mutatingwebhookconfigurations";
/// Storage key of the validating configurations.
pub(crate) const VALIDATING_KEY: &str =
    "admissionregistration.k8s.io/validatingwebhookconfigurations";

/// Defaults and validates a webhook configuration being written; other kinds pass.
pub(crate) fn prepare(rt: &ResourceType, obj: &mut Value) -> Result<()> {
    let mutating = match (rt.group.as_str(), rt.kind.as_str()) {
        (GROUP, "MutatingWebhookConfiguration") => true,
        (GROUP, "ValidatingWebhookConfiguration") => false,
        _ => return Ok(()),
    };
    default(obj, mutating);
    let qualified = format!("{}.{GROUP}", rt.kind);
    let name = meta::name(obj).to_string();
    let errors = validate(obj, mutating);
    if !errors.is_empty() {
        let why = if errors.len() == 1 {
            errors.join("")
        } else {
            format!("[{}]", errors.join(", "))
        };
        return Err(ApiError::invalid(&qualified, &name, why));
    }
    // What validation does not see: the typed form (a caBundle that is not base64).
    let webhooks = obj.get("webhooks").cloned().unwrap_or(json!([]));
    let decoded = if mutating {
        serde_json::from_value::<Vec<k8s_openapi::api::admissionregistration::v1::MutatingWebhook>>(
            webhooks,
        )
        .map(drop)
    } else {
        serde_json::from_value::<
            Vec<k8s_openapi::api::admissionregistration::v1::ValidatingWebhook>,
        >(webhooks)
        .map(drop)
    };
    decoded.map_err(|e| {
        ApiError::bad_request(format!(
            "{qualified} in version \"v1\" cannot be handled: webhooks: {e}"
        ))
    })
}

/// kube-apiserver's v1 defaults (`SetDefaults_MutatingWebhook` and friends).
fn default(obj: &mut Value, mutating: bool) {
    let Some(hooks) = obj.get_mut("webhooks").and_then(Value::as_array_mut) else {
        return;
    };
    for h in hooks.iter_mut().filter_map(Value::as_object_mut) {
        let mut set = |k: &str, v: Value| {
            if h.get(k).is_none_or(Value::is_null) {
                h.insert(k.into(), v);
            }
        };
        set("failurePolicy", json!("Fail"));
        set("matchPolicy", json!("Equivalent"));
        set("namespaceSelector", json!({}));
        set("objectSelector", json!({}));
        set("timeoutSeconds", json!(10));
        if mutating {
            set("reinvocationPolicy", json!("Never"));
        }
        for r in h
            .get_mut("rules")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            if r.get("scope").is_none_or(Value::is_null) {
                r.insert("scope".into(), json!("*"));
            }
        }
        if let Some(s) = h
            .get_mut("clientConfig")
            .and_then(|c| c.get_mut("service"))
            .and_then(Value::as_object_mut)
            && s.get("port").is_none_or(Value::is_null)
        {
            s.insert("port".into(), json!(443));
        }
    }
}

/// Field errors, formatted as kube-apiserver's `field.Error`s.
struct Errors(Vec<String>);

impl Errors {
    fn required(&mut self, field: &str, detail: &str) {
        self.0.push(if detail.is_empty() {
            format!("{field}: Required value")
        } else {
            format!("{field}: Required value: {detail}")
        });
    }
    fn invalid(&mut self, field: &str, value: &Value, detail: &str) {
        self.0
            .push(format!("{field}: Invalid value: {value}: {detail}"));
    }
    fn unsupported(&mut self, field: &str, value: &Value, supported: &[&str]) {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        self.0.push(format!(
            "{field}: Unsupported value: {value}: supported values: {}",
            list.join(", ")
        ));
    }
    fn forbidden(&mut self, field: &str, detail: &str) {
        self.0.push(format!("{field}: Forbidden: {detail}"));
    }
}

fn strings(v: Option<&Value>) -> Option<Vec<&str>> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().map(|s| s.as_str().unwrap_or("")).collect())
}

fn validate(obj: &Value, mutating: bool) -> Vec<String> {
    let mut e = Errors(Vec::new());
    let hooks = match obj.get("webhooks") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(v) => {
            e.invalid("webhooks", v, "must be a list");
            return e.0;
        }
    };
    let mut names = std::collections::HashSet::new();
    for (i, h) in hooks.iter().enumerate() {
        let f = format!("webhooks[{i}]");
        webhook(&mut e, &f, h, mutating);
        let name = meta::str_at(h, "name");
        if !name.is_empty() && !names.insert(name) {
            e.0.push(format!("{f}.name: Duplicate value: {name:?}"));
        }
    }
    e.0
}

fn webhook(e: &mut Errors, f: &str, h: &Value, mutating: bool) {
    let field = |k: &str| format!("{f}.{k}");
    let name = meta::str_at(h, "name");
    if name.is_empty() {
        e.required(&field("name"), "");
    } else if !meta::is_dns_subdomain(name) {
        e.invalid(
            &field("name"),
            &json!(name),
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        );
    } else if name.split('.').count() < 3 {
        e.invalid(
            &field("name"),
            &json!(name),
            "should be a domain with at least three segments separated by dots",
        );
    }
    for (j, r) in h
        .get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        rule(e, &format!("{f}.rules[{j}]"), r);
    }
    let one_of = |e: &mut Errors, k: &str, allowed: &[&str]| {
        if let Some(v) = h.get(k).filter(|v| !v.is_null())
            && !v.as_str().is_some_and(|s| allowed.contains(&s))
        {
            e.unsupported(&field(k), v, allowed);
        }
    };
    one_of(e, "failurePolicy", &["Fail", "Ignore"]);
    one_of(e, "matchPolicy", &["Equivalent", "Exact"]);
    if mutating {
        one_of(e, "reinvocationPolicy", &["IfNeeded", "Never"]);
    }
    match h.get("sideEffects").filter(|v| !v.is_null()) {
        None => e.required(
            &field("sideEffects"),
            "must specify one of None, NoneOnDryRun",
        ),
        Some(v) => {
            if !matches!(v.as_str(), Some("None" | "NoneOnDryRun")) {
                e.unsupported(&field("sideEffects"), v, &["None", "NoneOnDryRun"]);
            }
        }
    }
    if let Some(t) = h.get("timeoutSeconds").filter(|v| !v.is_null())
        && !t.as_i64().is_some_and(|t| (1..=30).contains(&t))
    {
        e.invalid(
            &field("timeoutSeconds"),
            t,
            "the timeout value must be between 1 and 30 seconds",
        );
    }
    for k in ["namespaceSelector", "objectSelector"] {
        if let Some(sel) = h.get(k).filter(|v| !v.is_null())
            && let Err(err) = bosun_api::Selector::from_label_selector(sel)
        {
            e.invalid(&field(k), sel, &err.reason);
        }
    }
    if h.get("matchConditions")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        e.forbidden(
            &field("matchConditions"),
            "CEL match conditions are not supported by the embedded cluster",
        );
    }
    client_config(e, &field("clientConfig"), h.get("clientConfig"));
    review_versions(e, &field("admissionReviewVersions"), h);
}

fn rule(e: &mut Errors, f: &str, r: &Value) {
    let field = |k: &str| format!("{f}.{k}");
    let list = |e: &mut Errors, k: &str, what: &str| -> Vec<String> {
        let v = strings(r.get(k)).unwrap_or_default();
        if v.is_empty() {
            e.required(&field(k), "");
        }
        if v.len() > 1 && v.contains(&"*") {
            e.invalid(
                &field(k),
                &json!(v),
                &format!("if '*' is present, must not specify other {what}"),
            );
        }
        v.into_iter().map(str::to_string).collect()
    };
    let ops = list(e, "operations", "operations");
    for (i, op) in ops.iter().enumerate() {
        let allowed = ["*", "CONNECT", "CREATE", "DELETE", "UPDATE"];
        if !allowed.contains(&op.as_str()) {
            e.unsupported(&format!("{f}.operations[{i}]"), &json!(op), &allowed);
        }
    }
    list(e, "apiGroups", "API groups");
    let versions = list(e, "apiVersions", "API versions");
    for (i, v) in versions.iter().enumerate() {
        if v.is_empty() {
            e.required(&format!("{f}.apiVersions[{i}]"), "");
        }
    }
    resources(e, &field("resources"), r);
    if let Some(s) = r.get("scope").filter(|v| !v.is_null())
        && !matches!(s.as_str(), Some("*" | "Cluster" | "Namespaced"))
    {
        e.unsupported(&field("scope"), s, &["*", "Cluster", "Namespaced"]);
    }
}

fn resources(e: &mut Errors, f: &str, r: &Value) {
    let res = strings(r.get("resources")).unwrap_or_default();
    if res.is_empty() {
        e.required(f, "");
    }
    let mut with_wild_sub = std::collections::HashSet::new();
    let mut with_wild_res = std::collections::HashSet::new();
    let (mut double, mut single, mut plain) = (false, false, false);
    for (i, rs) in res.iter().enumerate() {
        if rs.is_empty() {
            e.required(&format!("{f}[{i}]"), "");
            continue;
        }
        double |= *rs == "*/*";
        single |= *rs == "*";
        let Some((res, sub)) = rs.split_once('/') else {
            plain = *rs != "*";
            continue;
        };
        if with_wild_sub.contains(res) {
            e.invalid(
                &format!("{f}[{i}]"),
                &json!(rs),
                &format!("if '{res}/*' is present, must not specify {rs}"),
            );
        }
        if with_wild_res.contains(sub) {
            e.invalid(
                &format!("{f}[{i}]"),
                &json!(rs),
                &format!("if '*/{sub}' is present, must not specify {rs}"),
            );
        }
        if sub == "*" {
            with_wild_sub.insert(res);
        }
        if res == "*" {
            with_wild_res.insert(sub);
        }
    }
    if res.len() > 1 && double {
        e.invalid(
            f,
            &json!(res),
            "if '*/*' is present, must not specify other resources",
        );
    }
    if single && plain {
        e.invalid(
            f,
            &json!(res),
            "if '*' is present, must not specify other resources without subresources",
        );
    }
}

fn client_config(e: &mut Errors, f: &str, cc: Option<&Value>) {
    let cc = cc.unwrap_or(&Value::Null);
    let url = cc.get("url").filter(|v| !v.is_null());
    let service = cc.get("service").filter(|v| !v.is_null());
    match (url, service) {
        (Some(url), None) => webhook_url(e, &format!("{f}.url"), url.as_str().unwrap_or("")),
        (None, Some(svc)) => {
            let f = format!("{f}.service");
            if meta::str_at(svc, "name").is_empty() {
                e.required(&format!("{f}.name"), "service name is required");
            }
            if meta::str_at(svc, "namespace").is_empty() {
                e.required(&format!("{f}.namespace"), "service namespace is required");
            }
            let port = svc.get("port").unwrap_or(&Value::Null);
            if !port.as_i64().is_some_and(|p| (1..=65535).contains(&p)) {
                e.invalid(
                    &format!("{f}.port"),
                    port,
                    "port is not valid: must be between 1 and 65535, inclusive",
                );
            }
            service_path(e, &format!("{f}.path"), meta::str_at(svc, "path"));
        }
        _ => e.required(f, "exactly one of url or service is required"),
    }
}

fn webhook_url(e: &mut Errors, f: &str, url: &str) {
    const FORM: &str = "; desired format: https://host[/path]";
    let v = json!(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        e.required(f, &format!("url must be a valid URL: missing scheme{FORM}"));
        return;
    };
    if scheme != "https" {
        e.invalid(
            f,
            &json!(scheme),
            &format!("'https' is the only allowed URL scheme{FORM}"),
        );
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if let Some((user, _)) = authority.split_once('@') {
        e.invalid(
            f,
            &json!(user),
            "user information is not permitted in the URL",
        );
    }
    if authority.rsplit('@').next().unwrap_or("").is_empty() {
        e.invalid(f, &json!(""), &format!("host must be specified{FORM}"));
    }
    if let Some((_, frag)) = url.split_once('#') {
        e.invalid(f, &json!(frag), "fragments are not permitted in the URL");
    }
    let before_fragment = url.split('#').next().unwrap_or("");
    if let Some((_, q)) = before_fragment.split_once('?')
        && !q.is_empty()
    {
        e.invalid(
            f,
            &json!(q),
            "query parameters are not permitted in the URL",
        );
    }
    if url.parse::<axum::http::Uri>().is_err() {
        e.invalid(f, &v, &format!("url must be a valid URL{FORM}"));
    }
}

fn service_path(e: &mut Errors, f: &str, path: &str) {
    if path.is_empty() || path == "/" {
        return;
    }
    let v = json!(path);
    if path == "//" {
        e.invalid(f, &v, "segment[0] may not be empty");
        return;
    }
    if !path.starts_with('/') {
        e.invalid(f, &v, "must start with a '/'");
    }
    let check = path.strip_prefix('/').unwrap_or(path);
    let check = check.strip_suffix('/').unwrap_or(check);
    for (i, step) in check.split('/').enumerate() {
        if step.is_empty() {
            e.invalid(f, &v, &format!("segment[{i}] may not be empty"));
        } else if !meta::is_dns_subdomain(step) {
            e.invalid(
                f,
                &v,
                &format!(
                    "segment[{i}]: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                ),
            );
        }
    }
}

fn review_versions(e: &mut Errors, f: &str, h: &Value) {
    let versions = strings(h.get("admissionReviewVersions")).unwrap_or_default();
    if versions.is_empty() {
        e.required(f, "must specify one of v1, v1beta1");
        return;
    }
    let mut seen = std::collections::HashSet::new();
    for (i, v) in versions.iter().enumerate() {
        if !seen.insert(*v) {
            e.invalid(&format!("{f}[{i}]"), &json!(v), "duplicate version");
            continue;
        }
        let dns1035 = v.len() <= 63
            && v.starts_with(|c: char| c.is_ascii_lowercase())
            && meta::is_dns_label(v);
        if !dns1035 {
            e.invalid(
                &format!("{f}[{i}]"),
                &json!(v),
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            );
        }
    }
    if !versions.iter().any(|v| matches!(*v, "v1" | "v1beta1")) {
        e.invalid(
            f,
            &json!(versions),
            "must include at least one of v1, v1beta1",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Registry;

    fn rt(kind: &str) -> std::sync::Arc<ResourceType> {
        let plural = format!("{}s", kind.to_lowercase());
        Registry::builtin()
            .get(GROUP, "v1", &plural)
            .expect("served")
    }

    fn hook() -> Value {
        json!({
            "name": "pods.example.com",
            "clientConfig": {"service": {"name": "s", "namespace": "n"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        })
    }

    #[test]
    fn defaults_are_kube_apiservers() {
        let mut obj = json!({"metadata": {"name": "m"}, "webhooks": [hook()]});
        prepare(&rt("MutatingWebhookConfiguration"), &mut obj).expect("valid");
        let h = &obj["webhooks"][0];
        assert_eq!(h["failurePolicy"], "Fail");
        assert_eq!(h["matchPolicy"], "Equivalent");
        assert_eq!(h["timeoutSeconds"], 10);
        assert_eq!(h["reinvocationPolicy"], "Never");
        assert_eq!(h["namespaceSelector"], json!({}));
        assert_eq!(h["objectSelector"], json!({}));
        assert_eq!(h["rules"][0]["scope"], "*");
        assert_eq!(h["clientConfig"]["service"]["port"], 443);
        let mut v = json!({"metadata": {"name": "v"}, "webhooks": [hook()]});
        prepare(&rt("ValidatingWebhookConfiguration"), &mut v).expect("valid");
        assert!(v["webhooks"][0].get("reinvocationPolicy").is_none());
    }

    #[test]
    fn invalid_webhooks_are_refused_with_every_reason() {
        let mut h = hook();
        h["name"] = json!("short.name");
        h["sideEffects"] = json!("Some");
        h["timeoutSeconds"] = json!(31);
        h["failurePolicy"] = json!("Sometimes");
        h["admissionReviewVersions"] = json!(["v2"]);
        h["clientConfig"] = json!({"url": "http://x/y?z=1", "service": {"name": "s"}});
        let mut obj = json!({"metadata": {"name": "m"}, "webhooks": [h]});
        let err = prepare(&rt("ValidatingWebhookConfiguration"), &mut obj).expect_err("invalid");
        assert_eq!(err.code, 422);
        for part in [
            "ValidatingWebhookConfiguration.admissionregistration.k8s.io \"m\" is invalid: [",
            "webhooks[0].name: Invalid value: \"short.name\": should be a domain with at least three segments",
            "webhooks[0].sideEffects: Unsupported value: \"Some\": supported values: \"None\", \"NoneOnDryRun\"",
            "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
            "webhooks[0].failurePolicy: Unsupported value: \"Sometimes\"",
            "webhooks[0].admissionReviewVersions: Invalid value: [\"v2\"]: must include at least one of v1, v1beta1",
            "webhooks[0].clientConfig: Required value: exactly one of url or service is required",
        ] {
            assert!(err.message.contains(part), "{part} in {}", err.message);
        }
    }

    #[test]
    fn urls_and_rules_are_checked() {
        let mut h = hook();
        h["clientConfig"] = json!({"url": "http://user@host/p?q=1"});
        h["rules"][0]["resources"] = json!(["*", "pods"]);
        h["rules"][0]["operations"] = json!(["CREATE", "PATCH"]);
        let mut obj = json!({"metadata": {"name": "m"}, "webhooks": [h, hook()]});
        let err = prepare(&rt("MutatingWebhookConfiguration"), &mut obj).expect_err("invalid");
        for part in [
            "'https' is the only allowed URL scheme",
            "user information is not permitted in the URL",
            "query parameters are not permitted in the URL",
            "if '*' is present, must not specify other resources without subresources",
            "operations[1]: Unsupported value: \"PATCH\"",
            "webhooks[1].name: Duplicate value: \"pods.example.com\"",
        ] {
            assert!(err.message.contains(part), "{part} in {}", err.message);
        }
    }

    #[test]
    fn a_ca_bundle_that_is_not_base64_is_a_bad_request() {
        let mut h = hook();
        h["clientConfig"]["caBundle"] = json!("not base64!");
        let mut obj = json!({"metadata": {"name": "m"}, "webhooks": [h]});
        let err = prepare(&rt("MutatingWebhookConfiguration"), &mut obj).expect_err("invalid");
        assert_eq!(err.code, 400, "{}", err.message);
    }
}
