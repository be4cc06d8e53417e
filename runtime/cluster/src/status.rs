//! Kubernetes `Status` failures: what every refused request answers.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A refused request, rendered as a `Status` object (kind Status, apiVersion v1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `Conflict`, ...).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// The Status `details` (name, group, kind, causes), when the answer has them.
    pub details: Option<Value>,
}

/// Result of a store or API operation.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 404: `{resource} "{name}" not found`.
    pub fn not_found(resource: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{resource} \"{name}\" not found"))
    }
    /// 404 with a free message (unknown path or resource).
    pub fn not_found_msg(message: impl Into<String>) -> Self {
        Self::new(404, "NotFound", message)
    }
    /// 409: the object already exists.
    pub fn already_exists(resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{resource} \"{name}\" already exists"),
        )
    }
    /// 409: optimistic concurrency or precondition failure.
    pub fn conflict(resource: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {resource} \"{name}\": {why}"),
        )
    }
    /// 409 with a free message (server-side apply conflicts).
    pub fn conflict_msg(message: impl Into<String>) -> Self {
        Self::new(409, "Conflict", message)
    }
    /// 422: the object is invalid.
    pub fn invalid(kind: &str, name: &str, why: impl AsRef<str>) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {}", why.as_ref()),
        )
    }
    /// 422 with the causes, as `NewInvalid` words it: `Kind.group "name" is invalid: ...`
    /// (one error alone, several in brackets), `details` naming the object.
    pub(crate) fn invalid_fields(
        group: &str,
        kind: &str,
        name: &str,
        errors: &[crate::schema::FieldError],
    ) -> Self {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let message = if errors.is_empty() {
            format!("{qualified} \"{name}\" is invalid")
        } else {
            format!(
                "{qualified} \"{name}\" is invalid: {}",
                crate::schema::field::aggregate(errors)
            )
        };
        let mut details = serde_json::Map::new();
        if !name.is_empty() {
            details.insert("name".into(), json!(name));
        }
        if !group.is_empty() {
            details.insert("group".into(), json!(group));
        }
        if !kind.is_empty() {
            details.insert("kind".into(), json!(kind));
        }
        details.insert(
            "causes".into(),
            Value::Array(
                errors
                    .iter()
                    .map(crate::schema::FieldError::cause)
                    .collect(),
            ),
        );
        Self {
            details: Some(Value::Object(details)),
            ..Self::new(422, "Invalid", message)
        }
    }
    /// 400: the request could not be understood.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
    /// 403: refused (e.g. creating in a terminating namespace).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }
    /// 405: the verb is not supported on this path.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }
    /// 410: the watch asked for a resource version older than the history.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }
    /// 415: unsupported patch content type.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }
    /// 406: the client accepts no media type the server can write.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }
    /// 429: e.g. an eviction that would violate a PodDisruptionBudget.
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::new(429, "TooManyRequests", message)
    }
    /// 413: the body is over the limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(413, "RequestEntityTooLarge", message)
    }
    /// 503: the server is shutting down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }
    /// 500: a server fault (storage failure).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The same answer with `details.causes` (each `{reason, message, field}`, as Go's
    /// StatusCause writes its `Type` as `reason`).
    pub(crate) fn with_causes(mut self, causes: Vec<Value>) -> Self {
        let mut details = match self.details.take() {
            Some(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        details.insert("causes".into(), Value::Array(causes));
        self.details = Some(Value::Object(details));
        self
    }

    /// The `Status` object (without `reason` when it has none, as some of
    /// kube-apiserver's 500s).
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(m) = s.as_object_mut() {
            if self.reason.is_empty() {
                m.remove("reason");
            }
            if let Some(d) = &self.details {
                m.insert("details".into(), d.clone());
            }
        }
        s
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            code,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            self.to_status().to_string(),
        )
            .into_response()
    }
}
