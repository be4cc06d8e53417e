//! Optional authentication and RBAC authorization (off unless [`crate::Config::auth`] is
//! set): the cluster then serves HTTPS with a CA it keeps in `DATA_DIR/auth/`, and every
//! request is authenticated and authorized before it reaches the API.
//!
//! - **Who**: the admin bearer token the kubeconfig carries is `kubernetes-admin` in
//!   `system:masters` (allowed everything, as kube-apiserver's privileged group); service
//!   account tokens are ES256 JWTs the cluster signs, with kube-apiserver's claims, issued
//!   by the TokenRequest subresource (`POST .../serviceaccounts/NAME/token`) and checked as
//!   kube-apiserver checks them (audience, expiry with 60 s leeway, the service account
//!   and the bound pod still existing with the same uid). Requests are authenticated for
//!   the API's audiences ([`Config::audiences`]). No credential, or a refused one: 401.
//! - **What**: RBAC over the stored Roles, ClusterRoles, RoleBindings and
//!   ClusterRoleBindings, plus the bootstrap `system:discovery`,
//!   `system:public-info-viewer` and `system:basic-user` bindings to every authenticated
//!   user and a `cluster-admin` ClusterRole; refused: 403 with kube-apiserver's message.
//! - TokenReview, SubjectAccessReview and SelfSubjectAccessReview are answered here.
//!
//! `Impersonate-User` and `Impersonate-Group` (`kubectl --as`, `--as-group`) are honoured
//! for users allowed the `impersonate` verb on users, groups or serviceaccounts.
//!
//! Not done: client certificates, `Impersonate-Uid`/`-Extra-`, ClusterRole aggregation, the
//! `view`/`edit`/`admin` roles, anonymous requests (kube-apiserver with
//! `--anonymous-auth=false`), and admission webhooks still see `system:admin`.

mod rbac;
mod tls;
mod tokens;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use crate::status::ApiError;
use crate::store::Store;

pub use tokens::TokenSpec;

/// The issuer and default audience of kube-apiserver's service account tokens.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The admin user the kubeconfig's token authenticates as.
pub const ADMIN_USER: &str = "kubernetes-admin";

/// How authentication works when it is on.
#[derive(Debug, Clone)]
pub struct Config {
    /// `iss` of the service account tokens. Default [`DEFAULT_ISSUER`].
    pub issuer: String,
    /// The API's audiences: a token must name one of them to be accepted by the API
    /// server (TokenReview may ask for others). Default: the issuer.
    pub audiences: Vec<String>,
    /// The shortest `expirationSeconds` a TokenRequest may ask for (kube-apiserver: 10
    /// minutes); tests shorten it.
    pub min_token_expiration: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            issuer: DEFAULT_ISSUER.to_string(),
            audiences: vec![DEFAULT_ISSUER.to_string()],
            min_token_expiration: Duration::from_secs(600),
        }
    }
}

/// Why authentication could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A certificate, key or token could not be made or read.
    #[error("auth: {0}")]
    Tls(String),
    /// A key or certificate could not be written to the data directory.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// An authenticated user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct User {
    /// `system:serviceaccount:NS:NAME`, `kubernetes-admin`, ...
    pub name: String,
    /// The service account's uid (empty for the admin).
    pub uid: String,
    /// Groups, `system:authenticated` included.
    pub groups: Vec<String>,
    /// Extra attributes (the bound pod of a token).
    pub extra: serde_json::Map<String, Value>,
}

impl User {
    /// The `UserInfo` of a TokenReview's status.
    fn to_info(&self) -> Value {
        let mut v = json!({"username": self.name});
        if !self.uid.is_empty() {
            v["uid"] = json!(self.uid);
        }
        v["groups"] = json!(self.groups);
        if !self.extra.is_empty() {
            v["extra"] = Value::Object(self.extra.clone());
        }
        v
    }

    fn admin() -> Self {
        User {
            name: ADMIN_USER.to_string(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
            ..User::default()
        }
    }
}

/// Authentication state of a running cluster.
pub struct Auth {
    config: Config,
    store: Arc<Store>,
    signer: tokens::Signer,
    ca: tls::Ca,
    admin_token: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Writes a file only its owner may read.
fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(io)?;
    std::io::Write::write_all(&mut f, text.as_bytes()).map_err(io)
}

impl Auth {
    /// Loads the CA, the signing key and the admin token kept in `dir` (`DATA_DIR/auth`),
    /// making what is missing; without a directory, all are new.
    pub(crate) fn new(
        config: Config,
        store: Arc<Store>,
        dir: Option<&Path>,
    ) -> Result<Self, Error> {
        if let Some(d) = dir {
            std::fs::create_dir_all(d).map_err(|source| Error::Io {
                path: d.to_path_buf(),
                source,
            })?;
        }
        let ca = tls::Ca::load_or_make(dir)?;
        let signer = tokens::Signer::load_or_make(dir, &config.issuer)?;
        let kept = dir.and_then(|d| std::fs::read_to_string(d.join("admin.token")).ok());
        let admin_token = match kept.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()) {
            Some(t) => t,
            None => {
                let mut bytes = [0u8; 32];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
                    .map_err(|_| Error::Tls("no randomness for the admin token".into()))?;
                let t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
                if let Some(d) = dir {
                    write_private(&d.join("admin.token"), &t)?;
                }
                t
            }
        };
        Ok(Auth {
            config,
            store,
            signer,
            ca,
            admin_token,
        })
    }

    /// The CA certificate (PEM) clients verify the server with.
    pub fn ca_pem(&self) -> &str {
        &self.ca.cert
    }

    /// The admin bearer token (user `kubernetes-admin`, group `system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// How authentication is configured.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Signs a service account token as given, without TokenRequest's checks (tests use
    /// it for tokens already expired).
    pub fn issue_token(&self, spec: &TokenSpec) -> Result<String, Error> {
        self.signer.issue(spec)
    }

    /// Who `token` is for a caller accepting `audiences`, and the audiences both accept;
    /// `Err(Some(message))` when the token is refused with a reason, `Err(None)` when no
    /// authenticator recognises it.
    pub fn authenticate_token(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<(User, Vec<String>), Option<String>> {
        if constant_time_eq(token.as_bytes(), self.admin_token.as_bytes()) {
            // Audience-agnostic, as kube-apiserver wraps its static tokens.
            let both: Vec<String> = audiences
                .iter()
                .filter(|a| self.config.audiences.contains(a))
                .cloned()
                .collect();
            if both.is_empty() {
                return Err(None);
            }
            return Ok((User::admin(), both));
        }
        self.signer
            .authenticate(&self.store, token, audiences)
            .map_err(Some)
    }

    /// A kubeconfig for `url` that verifies the server with the CA and sends the admin
    /// token.
    pub fn kubeconfig(&self, url: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca.cert.as_bytes());
        let name = crate::kubeconfig::CONTEXT;
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: {name}
  cluster:
    server: {url}
    certificate-authority-data: {ca}
contexts:
- name: {name}
  context:
    cluster: {name}
    user: {name}
    namespace: default
current-context: {name}
users:
- name: {name}
  user:
    token: {token}
preferences: {{}}
",
            token = self.admin_token
        )
    }

    /// The HTTPS listener for `tcp`.
    pub(crate) fn listener(&self, tcp: tokio::net::TcpListener) -> Result<tls::Listener, Error> {
        let addr = tcp.local_addr().map_err(|source| Error::Io {
            path: "listener".into(),
            source,
        })?;
        let acceptor = self.ca.acceptor(addr)?;
        tls::Listener::new(tcp, acceptor).map_err(|source| Error::Io {
            path: "listener".into(),
            source,
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// kube-apiserver's 401 body.
fn unauthorized() -> Response {
    ApiError {
        code: 401,
        reason: "Unauthorized",
        message: "Unauthorized".into(),
        details: None,
    }
    .into_response()
}

fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Wraps `router` so every request is authenticated and authorized first.
pub(crate) fn layer(router: axum::Router, auth: Arc<Auth>) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(auth, middleware))
}

/// The user a request acts as: the authenticated one, or whom its `Impersonate-User` and
/// `Impersonate-Group` headers name when the authenticated user may impersonate them (as
/// kube-apiserver's impersonation filter; `Impersonate-Uid` and `-Extra-` are not read).
/// The headers are removed before the request goes on.
#[expect(
    clippy::result_large_err,
    reason = "a refusal is answered at once, never propagated further"
)]
fn impersonate(store: &Store, user: User, req: &mut Request) -> Result<User, Response> {
    let headers = req.headers_mut();
    let name = headers
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let groups: Vec<String> = headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    headers.remove("impersonate-user");
    headers.remove("impersonate-group");
    let Some(name) = name else {
        if groups.is_empty() {
            return Ok(user);
        }
        return Err(ApiError::internal(
            "requested [{Group}] without impersonating a user".to_string(),
        )
        .into_response());
    };
    let may = |a: rbac::Attributes| match rbac::authorize(store, &user, &a) {
        rbac::Decision::Allow(_) => Ok(()),
        rbac::Decision::Deny(reason) => Err(rbac::forbidden(&user, &a, &reason).into_response()),
    };
    let act = |resource: &str, namespace: &str, name: &str| rbac::Attributes {
        verb: "impersonate".into(),
        resource_request: true,
        resource: resource.into(),
        namespace: namespace.into(),
        name: name.into(),
        ..rbac::Attributes::default()
    };
    let sa = name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'));
    match sa {
        Some((ns, sa_name)) => may(act("serviceaccounts", ns, sa_name))?,
        None => may(act("users", "", &name))?,
    }
    for g in &groups {
        may(act("groups", "", g))?;
    }
    let mut all = groups.clone();
    if groups.is_empty()
        && let Some((ns, _)) = sa
    {
        all.push("system:serviceaccounts".into());
        all.push(format!("system:serviceaccounts:{ns}"));
    }
    if name != "system:anonymous" && !all.iter().any(|g| g == "system:authenticated") {
        all.push("system:authenticated".into());
    }
    Ok(User {
        name,
        groups: all,
        ..User::default()
    })
}

async fn middleware(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let Some(token) = bearer(&req) else {
        return unauthorized();
    };
    let user = match auth.authenticate_token(token, &auth.config.audiences) {
        Ok((user, _)) => user,
        Err(why) => {
            tracing::debug!(reason = why.as_deref().unwrap_or(""), "unauthorized");
            return unauthorized();
        }
    };
    let user = match impersonate(&auth.store, user, &mut req) {
        Ok(u) => u,
        Err(refused) => return refused,
    };
    let attrs = rbac::attributes(req.method(), req.uri().path(), req.uri().query());
    if let rbac::Decision::Deny(reason) = rbac::authorize(&auth.store, &user, &attrs) {
        tracing::debug!(user = %user.name, verb = %attrs.verb, path = %attrs.path, "forbidden");
        return rbac::forbidden(&user, &attrs, &reason).into_response();
    }
    let special = attrs.resource_request
        && attrs.verb == "create"
        && match (attrs.group.as_str(), attrs.resource.as_str()) {
            ("", "serviceaccounts") => attrs.subresource == "token" && !attrs.name.is_empty(),
            ("authentication.k8s.io", "tokenreviews")
            | ("authorization.k8s.io", "selfsubjectaccessreviews" | "subjectaccessreviews") => {
                attrs.name.is_empty() && attrs.namespace.is_empty()
            }
            _ => false,
        };
    if !special || attrs.version != "v1" || req.method() != Method::POST {
        return next.run(req).await;
    }
    let protobuf = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("protobuf"));
    let body = match axum::body::to_bytes(req.into_body(), crate::api::MAX_BODY).await {
        // kubectl sends the reviews as protobuf.
        Ok(b) if protobuf => match crate::protobuf::decode(&b) {
            Ok(v) => axum::body::Bytes::from(v.to_string()),
            Err(e) => return e.into_response(),
        },
        Ok(b) => b,
        Err(_) => {
            return ApiError::too_large(format!(
                "the request body is larger than the limit of {} bytes",
                crate::api::MAX_BODY
            ))
            .into_response();
        }
    };
    let out = match attrs.resource.as_str() {
        "serviceaccounts" => tokens::token_request(&auth, &attrs.namespace, &attrs.name, &body),
        "tokenreviews" => tokens::token_review(&auth, &body),
        "selfsubjectaccessreviews" => rbac::self_subject_access_review(&auth.store, &user, &body),
        _ => rbac::subject_access_review(&auth.store, &body),
    };
    match out {
        Ok(v) => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json")],
            v.to_string(),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}
