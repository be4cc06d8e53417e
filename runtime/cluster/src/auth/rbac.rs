//! RBAC authorization: a request's attributes (as kube-apiserver's `RequestInfoFactory`
//! reads them from the path), the rules of Roles and ClusterRoles granted by bindings, the
//! bootstrap policy every authenticated user has, and the access reviews.

use axum::http::Method;
use serde_json::{Value, json};

use super::User;
use crate::meta;
use crate::status::{ApiError, Result};
use crate::store::Store;

/// What a request asks to do, as RBAC sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Attributes {
    pub verb: String,
    /// The URL path (non-resource requests).
    pub path: String,
    pub resource_request: bool,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

/// The attributes of a request, as `RequestInfoFactory.NewRequestInfo` derives them.
pub(crate) fn attributes(method: &Method, path: &str, query: Option<&str>) -> Attributes {
    let non_resource = || Attributes {
        verb: method.as_str().to_lowercase(),
        path: path.to_string(),
        ..Attributes::default()
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // `/api/v1` and `/apis/GROUP/VERSION` themselves are discovery: non-resource paths.
    let (group, version, mut rest) = match parts.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => return non_resource(),
    };
    let mut a = Attributes {
        resource_request: true,
        path: path.to_string(),
        group: group.to_string(),
        version: version.to_string(),
        ..Attributes::default()
    };
    a.verb = match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
    .to_string();
    if rest.first() == Some(&"watch") && rest.len() >= 2 {
        a.verb = "watch".into();
        rest = &rest[1..];
    }
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        a.namespace = rest[1].to_string();
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest = &rest[2..];
        }
    }
    if let Some(r) = rest.first() {
        a.resource = (*r).to_string();
    }
    if let Some(n) = rest.get(1) {
        a.name = (*n).to_string();
    }
    if let Some(s) = rest.get(2) {
        a.subresource = (*s).to_string();
    }
    let q = Query(query.unwrap_or(""));
    if a.name.is_empty() && a.verb == "get" {
        a.verb = if matches!(q.get("watch").as_deref(), Some("1" | "true" | "True")) {
            "watch"
        } else {
            "list"
        }
        .into();
    }
    if a.name.is_empty() && matches!(a.verb.as_str(), "list" | "watch") {
        // A list of one object by name is authorized as that object.
        if let Some(sel) = q.get("fieldSelector") {
            for term in sel.split(',') {
                let v = term
                    .strip_prefix("metadata.name==")
                    .or_else(|| term.strip_prefix("metadata.name="));
                if let Some(v) = v
                    && !v.is_empty()
                    && !v.contains('/')
                    && v != "."
                    && v != ".."
                {
                    a.name = v.to_string();
                }
            }
        }
    }
    if a.name.is_empty() && a.verb == "delete" {
        a.verb = "deletecollection".into();
    }
    a
}

struct Query<'a>(&'a str);

impl Query<'_> {
    /// The last value of `key`, percent-decoded.
    fn get(&self, key: &str) -> Option<String> {
        self.0
            .split('&')
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| decode(v))
            .next_back()
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(v) => {
                    out.push(v);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An authorization decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Allowed; the reason names the binding (empty for system:masters).
    Allow(String),
    /// Not allowed; the reason is RBAC's errors (a binding's missing role), often empty.
    Deny(String),
}

/// The bootstrap ClusterRoles a binding may name without the cluster storing them.
fn builtin_cluster_role(name: &str) -> Option<Value> {
    let rules = match name {
        "cluster-admin" => json!([
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            {"nonResourceURLs": ["*"], "verbs": ["*"]},
        ]),
        "system:discovery" => json!([{
            "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                "/openapi", "/openapi/*", "/readyz", "/version", "/version/"],
            "verbs": ["get"],
        }]),
        "system:public-info-viewer" => json!([{
            "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
            "verbs": ["get"],
        }]),
        "system:basic-user" => json!([
            {"apiGroups": ["authorization.k8s.io"],
             "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
             "verbs": ["create"]},
            {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"],
             "verbs": ["create"]},
        ]),
        _ => return None,
    };
    Some(json!({"metadata": {"name": name}, "rules": rules}))
}

/// The bootstrap ClusterRoleBindings kube-apiserver creates for every authenticated user.
fn builtin_bindings() -> Vec<Value> {
    ["system:discovery", "system:public-info-viewer", "system:basic-user"]
        .iter()
        .map(|name| {
            json!({
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                    "name": "system:authenticated"}],
            })
        })
        .collect()
}

fn strings<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a str> {
    v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// Whether one PolicyRule allows the request (`RuleAllows`).
fn rule_allows(a: &Attributes, rule: &Value) -> bool {
    let has = |key: &str, want: &str| strings(rule, key).any(|s| s == "*" || s == want);
    if !has("verbs", &a.verb) {
        return false;
    }
    if !a.resource_request {
        return strings(rule, "nonResourceURLs").any(|u| {
            u == "*"
                || u == a.path
                || u.strip_suffix('*')
                    .is_some_and(|prefix| a.path.starts_with(prefix))
        });
    }
    if !has("apiGroups", &a.group) {
        return false;
    }
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resource_ok = strings(rule, "resources").any(|r| {
        r == "*"
            || r == combined
            || (!a.subresource.is_empty() && r.strip_prefix("*/") == Some(a.subresource.as_str()))
    });
    if !resource_ok {
        return false;
    }
    let mut names = strings(rule, "resourceNames").peekable();
    names.peek().is_none() || names.any(|n| n == a.name)
}

/// Whether a binding's subject is `user` (`appliesToUser`).
fn subject_applies(user: &User, subject: &Value, binding_ns: &str) -> bool {
    let name = meta::str_at(subject, "name");
    match meta::str_at(subject, "kind") {
        "User" => user.name == name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = match meta::str_at(subject, "namespace") {
                "" => binding_ns,
                ns => ns,
            };
            !ns.is_empty() && user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn describe_subject(subject: &Value, binding_ns: &str) -> String {
    let (kind, name) = (meta::str_at(subject, "kind"), meta::str_at(subject, "name"));
    let name = if kind == "ServiceAccount" {
        let ns = match meta::str_at(subject, "namespace") {
            "" => binding_ns,
            ns => ns,
        };
        format!("{name}/{ns}")
    } else {
        name.to_string()
    };
    format!("{kind} {}", go_q(&name))
}

fn go_q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn stored(store: &Store, plural: &str, ns: &str, name: &str) -> Option<Value> {
    let rt = store.resolve("rbac.authorization.k8s.io", "v1", plural)?;
    store.get(&rt, ns, name).ok()
}

fn each(store: &Store, plural: &str, ns: &str, mut f: impl FnMut(&Value)) {
    if let Some(rt) = store.resolve("rbac.authorization.k8s.io", "v1", plural) {
        store.for_each(&rt, ns, |v| f(v));
    }
}

/// The RBAC decision for `a` by `user` (system:masters is allowed everything first, as
/// kube-apiserver's privileged-group authorizer does).
pub(crate) fn authorize(store: &Store, user: &User, a: &Attributes) -> Decision {
    if user.groups.iter().any(|g| g == "system:masters") {
        return Decision::Allow(String::new());
    }
    let mut errors: Vec<String> = Vec::new();
    let mut allowed: Option<String> = None;
    // ClusterRoleBindings first: the stored ones, then the bootstrap ones not stored.
    let mut cluster_bindings = Vec::new();
    each(store, "clusterrolebindings", "", |b| {
        cluster_bindings.push(b.clone())
    });
    for b in builtin_bindings() {
        let name = meta::str_at(&b, "metadata.name");
        if !cluster_bindings
            .iter()
            .any(|s| meta::str_at(s, "metadata.name") == name)
        {
            cluster_bindings.push(b);
        }
    }
    let check = |binding: &Value, binding_ns: &str, errors: &mut Vec<String>| -> Option<String> {
        let subject = binding
            .get("subjects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|s| subject_applies(user, s, binding_ns))?;
        let (kind, role) = (
            meta::str_at(binding, "roleRef.kind"),
            meta::str_at(binding, "roleRef.name"),
        );
        let rules = if kind == "Role" {
            if binding_ns.is_empty() {
                return None;
            }
            let Some(r) = stored(store, "roles", binding_ns, role) else {
                errors.push(format!(
                    "role.rbac.authorization.k8s.io {} not found",
                    go_q(role)
                ));
                return None;
            };
            r
        } else {
            let Some(r) =
                stored(store, "clusterroles", "", role).or_else(|| builtin_cluster_role(role))
            else {
                errors.push(format!(
                    "clusterrole.rbac.authorization.k8s.io {} not found",
                    go_q(role)
                ));
                return None;
            };
            r
        };
        let rule_hit = rules
            .get("rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|r| rule_allows(a, r));
        rule_hit.then(|| {
            let bname = meta::str_at(binding, "metadata.name");
            let source = if binding_ns.is_empty() {
                format!("ClusterRoleBinding {}", go_q(bname))
            } else {
                format!("RoleBinding {}", go_q(&format!("{bname}/{binding_ns}")))
            };
            format!(
                "RBAC: allowed by {source} of {kind} {} to {}",
                go_q(role),
                describe_subject(subject, binding_ns)
            )
        })
    };
    for b in &cluster_bindings {
        if let Some(r) = check(b, "", &mut errors) {
            allowed = Some(r);
            break;
        }
    }
    if allowed.is_none() && !a.namespace.is_empty() {
        let mut bindings = Vec::new();
        each(store, "rolebindings", &a.namespace, |b| {
            bindings.push(b.clone())
        });
        for b in &bindings {
            if let Some(r) = check(b, &a.namespace, &mut errors) {
                allowed = Some(r);
                break;
            }
        }
    }
    match allowed {
        Some(reason) => Decision::Allow(reason),
        None => Decision::Deny(match errors.len() {
            0 => String::new(),
            1 => format!("RBAC: {}", errors[0]),
            _ => format!("RBAC: [{}]", errors.join(", ")),
        }),
    }
}

/// The 403 kube-apiserver answers a denied request with (`responsewriters.Forbidden`).
pub(crate) fn forbidden(user: &User, a: &Attributes, reason: &str) -> ApiError {
    let who = go_q(&user.name);
    let mut msg = if !a.resource_request {
        format!("User {who} cannot {} path {}", a.verb, go_q(&a.path))
    } else {
        let resource = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        let scope = if a.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {}", go_q(&a.namespace))
        };
        format!(
            "User {who} cannot {} resource {} in API group {} {scope}",
            a.verb,
            go_q(&resource),
            go_q(&a.group)
        )
    };
    if !reason.is_empty() {
        msg = format!("{msg}: {reason}");
    }
    // `NewForbidden(GroupResource, name, err)`.
    let qualified = match (a.resource_request, a.group.is_empty()) {
        (false, _) => String::new(),
        (true, true) => a.resource.clone(),
        (true, false) => format!("{}.{}", a.resource, a.group),
    };
    let message = if qualified.is_empty() {
        format!("forbidden: {msg}")
    } else if a.name.is_empty() {
        format!("{qualified} is forbidden: {msg}")
    } else {
        format!("{qualified} {} is forbidden: {msg}", go_q(&a.name))
    };
    let mut details = serde_json::Map::new();
    if a.resource_request {
        if !a.name.is_empty() {
            details.insert("name".into(), json!(a.name));
        }
        if !a.group.is_empty() {
            details.insert("group".into(), json!(a.group));
        }
        if !a.resource.is_empty() {
            details.insert("kind".into(), json!(a.resource));
        }
    }
    ApiError {
        code: 403,
        reason: "Forbidden",
        message,
        details: Some(Value::Object(details)),
    }
}

/// The attributes a SubjectAccessReview's spec asks about.
fn review_attributes(spec: &Value) -> Result<Attributes> {
    if let Some(r) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
        let s = |k: &str| meta::str_at(r, k).to_string();
        return Ok(Attributes {
            verb: s("verb"),
            path: String::new(),
            resource_request: true,
            group: s("group"),
            version: s("version"),
            resource: s("resource"),
            subresource: s("subresource"),
            namespace: s("namespace"),
            name: s("name"),
        });
    }
    if let Some(n) = spec.get("nonResourceAttributes").filter(|v| v.is_object()) {
        return Ok(Attributes {
            verb: meta::str_at(n, "verb").to_string(),
            path: meta::str_at(n, "path").to_string(),
            ..Attributes::default()
        });
    }
    Err(ApiError::invalid(
        "SubjectAccessReview.authorization.k8s.io",
        "",
        "spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
    ))
}

fn answer(mut review: Value, kind: &str, decision: Decision) -> Value {
    review["kind"] = json!(kind);
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    if review.get("metadata").is_none() {
        review["metadata"] = json!({});
    }
    review["status"] = match decision {
        Decision::Allow(reason) if reason.is_empty() => json!({"allowed": true}),
        Decision::Allow(reason) => json!({"allowed": true, "reason": reason}),
        Decision::Deny(reason) if reason.is_empty() => json!({"allowed": false}),
        Decision::Deny(reason) => json!({"allowed": false, "reason": reason}),
    };
    review
}

fn parse(body: &[u8]) -> Result<Value> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON in the request body: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request("the request body must be an object"));
    }
    Ok(v)
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`: may the caller do it?
pub(crate) fn self_subject_access_review(store: &Store, user: &User, body: &[u8]) -> Result<Value> {
    let review = parse(body)?;
    let spec = review.get("spec").cloned().unwrap_or(Value::Null);
    let a = review_attributes(&spec)?;
    Ok(answer(
        review,
        "SelfSubjectAccessReview",
        authorize(store, user, &a),
    ))
}

/// `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`: may the user the spec names
/// do it?
pub(crate) fn subject_access_review(store: &Store, body: &[u8]) -> Result<Value> {
    let review = parse(body)?;
    let spec = review.get("spec").cloned().unwrap_or(Value::Null);
    let a = review_attributes(&spec)?;
    let groups: Vec<String> = strings(&spec, "groups").map(str::to_string).collect();
    let name = meta::str_at(&spec, "user").to_string();
    if name.is_empty() && groups.is_empty() {
        return Err(ApiError::invalid(
            "SubjectAccessReview.authorization.k8s.io",
            "",
            "spec.user: Invalid value: \"\": at least one of user or group must be specified",
        ));
    }
    let user = User {
        name,
        uid: meta::str_at(&spec, "uid").to_string(),
        groups,
        extra: serde_json::Map::new(),
    };
    Ok(answer(
        review,
        "SubjectAccessReview",
        authorize(store, &user, &a),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(method: Method, path: &str, query: Option<&str>) -> Attributes {
        attributes(&method, path, query)
    }

    #[test]
    fn request_info_as_kube_apiserver() {
        let a = attrs(Method::GET, "/api/v1/namespaces/default/pods", None);
        assert_eq!(
            (a.verb.as_str(), a.resource.as_str(), a.namespace.as_str()),
            ("list", "pods", "default")
        );
        let a = attrs(Method::GET, "/api/v1/pods", Some("watch=true"));
        assert_eq!((a.verb.as_str(), a.namespace.as_str()), ("watch", ""));
        let a = attrs(
            Method::POST,
            "/api/v1/namespaces/ns/pods/web-0/eviction",
            None,
        );
        assert_eq!(
            (a.verb.as_str(), a.name.as_str(), a.subresource.as_str()),
            ("create", "web-0", "eviction")
        );
        let a = attrs(
            Method::DELETE,
            "/apis/apps/v1/namespaces/ns/deployments",
            None,
        );
        assert_eq!(
            (a.verb.as_str(), a.group.as_str()),
            ("deletecollection", "apps")
        );
        let a = attrs(Method::GET, "/api/v1/namespaces/ns", None);
        assert_eq!(
            (a.resource.as_str(), a.name.as_str(), a.namespace.as_str()),
            ("namespaces", "ns", "ns")
        );
        let a = attrs(
            Method::GET,
            "/api/v1/namespaces/ns/pods",
            Some("fieldSelector=metadata.name=web-0&watch=1"),
        );
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("watch", "web-0"));
        let a = attrs(Method::GET, "/apis", None);
        assert!(!a.resource_request);
        assert!(!attrs(Method::GET, "/api/v1", None).resource_request);
        assert!(!attrs(Method::GET, "/apis/apps/v1", None).resource_request);
        assert_eq!((a.verb.as_str(), a.path.as_str()), ("get", "/apis"));
    }

    #[test]
    fn rules_match_verbs_resources_subresources_and_names() {
        let a = attrs(Method::POST, "/api/v1/namespaces/ns/pods/p/eviction", None);
        let rule = |r: Value| rule_allows(&a, &r);
        assert!(rule(
            json!({"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]})
        ));
        assert!(rule(
            json!({"apiGroups": ["*"], "resources": ["*/eviction"], "verbs": ["*"]})
        ));
        assert!(!rule(
            json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]})
        ));
        assert!(rule(
            json!({"apiGroups": [""], "resources": ["*"], "verbs": ["create"], "resourceNames": ["p"]})
        ));
        assert!(!rule(
            json!({"apiGroups": [""], "resources": ["*"], "verbs": ["create"], "resourceNames": ["q"]})
        ));
        let a = attrs(Method::GET, "/openapi/v3/apis/apps/v1", None);
        assert!(rule_allows(
            &a,
            &json!({"nonResourceURLs": ["/openapi/*"], "verbs": ["get"]})
        ));
        assert!(!rule_allows(
            &a,
            &json!({"nonResourceURLs": ["/openapi"], "verbs": ["get"]})
        ));
    }

    #[test]
    fn forbidden_messages_as_kube_apiserver() {
        let user = User {
            name: "system:serviceaccount:default:app".into(),
            ..User::default()
        };
        let e = forbidden(
            &user,
            &attrs(Method::GET, "/api/v1/namespaces/default/pods", None),
            "",
        );
        assert_eq!(
            e.message,
            "pods is forbidden: User \"system:serviceaccount:default:app\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(e.details, Some(json!({"kind": "pods"})));
        let e = forbidden(
            &user,
            &attrs(Method::GET, "/apis/apps/v1/deployments/x", None),
            "",
        );
        assert_eq!(
            e.message,
            "deployments.apps \"x\" is forbidden: User \"system:serviceaccount:default:app\" cannot get resource \"deployments\" in API group \"apps\" at the cluster scope"
        );
        let e = forbidden(&user, &attrs(Method::GET, "/metrics", None), "");
        assert_eq!(
            e.message,
            "forbidden: User \"system:serviceaccount:default:app\" cannot get path \"/metrics\""
        );
        assert_eq!(e.details, Some(json!({})));
    }
}
