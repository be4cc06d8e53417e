//! `admission.k8s.io` AdmissionReview: the request kube-apiserver sends, the checks it
//! makes on the answer, and how a denial becomes a client's error.

use super::{Attributes, Invocation, User};
use crate::status::ApiError;
use serde::Deserialize;
use serde_json::{Value, json};

/// `userInfo`: the embedded cluster has no authentication and grants everything, so an
/// API client is a cluster administrator; a built-in controller is its service account,
/// as kube-controller-manager's controllers authenticate.
fn user_info(user: User) -> Value {
    match user {
        User::Admin => {
            json!({"username": "system:admin", "groups": ["system:masters", "system:authenticated"]})
        }
        User::Controller(name) => json!({
            "username": format!("system:serviceaccount:kube-system:{name}"),
            "groups": [
                "system:serviceaccounts",
                "system:serviceaccounts:kube-system",
                "system:authenticated",
            ],
        }),
    }
}

/// The AdmissionReview for one call (`v1` or `v1beta1`, the webhook's first known).
pub(crate) fn request(
    uid: &str,
    version: &str,
    attrs: &Attributes<'_>,
    inv: &Invocation<'_>,
    object: Option<&Value>,
    old: Option<&Value>,
) -> Vec<u8> {
    let rt = attrs.rt;
    let gvk = |g: &str, v: &str, k: &str| json!({"group": g, "version": v, "kind": k});
    let gvr = |g: &str, v: &str, r: &str| json!({"group": g, "version": v, "resource": r});
    let (rg, rv, rk) = attrs.kind;
    let (ig, iv, ik) = if inv.converted(attrs) && attrs.sub.is_empty() {
        (&*inv.rt.group, &*inv.rt.version, &*inv.rt.kind)
    } else {
        attrs.kind
    };
    let mut req = json!({
        "uid": uid,
        "kind": gvk(ig, iv, ik),
        "resource": gvr(&inv.rt.group, &inv.rt.version, &inv.rt.plural),
        "requestKind": gvk(rg, rv, rk),
        "requestResource": gvr(&rt.group, &rt.version, &rt.plural),
        "operation": attrs.op.as_str(),
        "userInfo": user_info(attrs.user),
        "object": object,
        "oldObject": old,
        "dryRun": attrs.dry_run,
        "options": attrs.options,
    });
    if let Some(m) = req.as_object_mut() {
        if !attrs.sub.is_empty() {
            m.insert("subResource".into(), json!(attrs.sub));
            m.insert("requestSubResource".into(), json!(attrs.sub));
        }
        if !attrs.name.is_empty() {
            m.insert("name".into(), json!(attrs.name));
        }
        if !attrs.namespace.is_empty() {
            m.insert("namespace".into(), json!(attrs.namespace));
        }
    }
    let review = json!({
        "kind": "AdmissionReview",
        "apiVersion": format!("admission.k8s.io/{version}"),
        "request": req,
    });
    serde_json::to_vec(&review).unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    response: Option<Response>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    allowed: bool,
    #[serde(default)]
    status: Option<Status>,
    #[serde(default)]
    patch: Option<k8s_openapi::ByteString>,
    #[serde(default)]
    patch_type: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

/// The `metav1.Status` of a denial.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Status {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

/// A verified answer.
pub(crate) struct Verdict {
    pub allowed: bool,
    pub status: Status,
    /// A JSONPatch, only from a mutating webhook.
    pub patch: Option<Vec<u8>>,
    pub warnings: Vec<String>,
}

/// Decodes and checks an answer as `VerifyAdmissionResponse`; the error continues
/// `failed calling webhook "NAME": `.
pub(crate) fn verify(
    body: &[u8],
    uid: &str,
    version: &str,
    mutating: bool,
) -> Result<Verdict, String> {
    let review: Review = serde_json::from_slice(body)
        .map_err(|e| format!("failed to call webhook: decoding the response: {e}"))?;
    let invalid = |why: String| format!("received invalid webhook response: {why}");
    let r = review
        .response
        .ok_or_else(|| invalid("webhook response was absent".into()))?;
    if version == "v1" {
        if r.uid != uid {
            return Err(invalid(format!(
                "expected response.uid={uid:?}, got {:?}",
                r.uid
            )));
        }
        if review.api_version != "admission.k8s.io/v1" || review.kind != "AdmissionReview" {
            return Err(invalid(format!(
                "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {}, Kind={}",
                review.api_version, review.kind
            )));
        }
    }
    let patch = r.patch.map(|p| p.0).filter(|p| !p.is_empty());
    if mutating {
        if version == "v1" {
            match (&patch, &r.patch_type) {
                (Some(_), None) => {
                    return Err(invalid(
                        "webhook returned response.patch but not response.patchType".into(),
                    ));
                }
                (None, Some(_)) => {
                    return Err(invalid(
                        "webhook returned response.patchType but not response.patch".into(),
                    ));
                }
                (Some(_), Some(t)) if t != "JSONPatch" => {
                    return Err(format!("unsupported patch type {t:?}"));
                }
                _ => {}
            }
        }
    } else if patch.is_some() {
        return Err(invalid(
            "validating webhook may not return response.patch".into(),
        ));
    } else if r.patch_type.is_some() {
        return Err(invalid(
            "validating webhook may not return response.patchType".into(),
        ));
    }
    Ok(Verdict {
        allowed: r.allowed,
        status: r.status.unwrap_or_default(),
        patch,
        warnings: r.warnings,
    })
}

/// The reasons `metav1.Status` defines, as the static strings `ApiError` carries.
const REASONS: &[&str] = &[
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "AlreadyExists",
    "Conflict",
    "Gone",
    "Invalid",
    "ServerTimeout",
    "StoreReadError",
    "Timeout",
    "TooManyRequests",
    "BadRequest",
    "MethodNotAllowed",
    "NotAcceptable",
    "RequestEntityTooLarge",
    "UnsupportedMediaType",
    "InternalError",
    "Expired",
    "ServiceUnavailable",
];

/// A denial as `webhookerrors.ToStatusErr` renders it: the webhook's code (400 when it
/// gives less), its reason when it is one of the API's, and the message
/// `admission webhook "HOOK" denied the request: MESSAGE` — no resource prefix (kubectl
/// prints `Error from server: admission webhook "HOOK" denied the request: ...`).
pub(crate) fn denied(_attrs: &Attributes<'_>, hook: &str, s: &Status) -> ApiError {
    // kube-apiserver raises a code under 400 to 400; one over 599 cannot be sent as an
    // HTTP status and reads as 500.
    let code = u16::try_from(s.code).unwrap_or(400).clamp(400, 600);
    let code = if code == 600 { 500 } else { code };
    let denied_by = format!("admission webhook {hook:?} denied the request");
    let message = if !s.message.is_empty() {
        format!("{denied_by}: {}", s.message)
    } else if !s.reason.is_empty() {
        format!("{denied_by}: {}", s.reason)
    } else {
        format!("{denied_by} without explanation")
    };
    let reason = REASONS
        .iter()
        .find(|r| **r == s.reason)
        .copied()
        .unwrap_or("");
    ApiError {
        code,
        reason,
        message,
        details: None,
    }
}

/// `apierrors.NewInternalError`.
pub(crate) fn internal(why: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("Internal error occurred: {why}"))
}
