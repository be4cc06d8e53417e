//! Service account tokens: ES256 JWTs with kube-apiserver's claims, the TokenRequest
//! subresource that issues them and the checks TokenReview and every request run.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use super::{Error, User};
use crate::meta;
use crate::status::{ApiError, Result};
use crate::store::Store;

/// go-jose's leeway on `exp`, `nbf` and `iat`, which kube-apiserver keeps.
const LEEWAY: i64 = 60;

/// What a service account token says (see [`crate::auth::Auth::issue_token`]).
#[derive(Debug, Clone)]
pub struct TokenSpec {
    /// The service account's namespace.
    pub namespace: String,
    /// The service account's name.
    pub name: String,
    /// The service account's uid.
    pub uid: String,
    /// `aud`.
    pub audiences: Vec<String>,
    /// `iat` and `nbf`.
    pub issued: SystemTime,
    /// `exp`.
    pub expires: SystemTime,
    /// The pod the token is bound to: name and uid.
    pub pod: Option<(String, String)>,
}

/// Signs and verifies tokens with the cluster's P-256 key.
pub(crate) struct Signer {
    key: EcdsaKeyPair,
    kid: String,
    issuer: String,
    rng: SystemRandom,
}

fn secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

impl Signer {
    /// The key kept in `dir` (`sa.key`, PKCS#8 PEM), made and written there if absent.
    pub(crate) fn load_or_make(dir: Option<&Path>, issuer: &str) -> Result<Self, Error> {
        let kept = dir.and_then(|d| std::fs::read_to_string(d.join("sa.key")).ok());
        let pem = match kept {
            Some(pem) => pem,
            None => {
                let pem = rcgen::KeyPair::generate()
                    .map_err(|e| Error::Tls(e.to_string()))?
                    .serialize_pem();
                if let Some(d) = dir {
                    super::write_private(&d.join("sa.key"), &pem)?;
                }
                pem
            }
        };
        let der = rcgen::KeyPair::from_pem(&pem)
            .map_err(|e| Error::Tls(format!("sa.key: {e}")))?
            .serialize_der();
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .map_err(|e| Error::Tls(format!("sa.key: {e}")))?;
        // kube-apiserver's key id: a hash of the public key.
        let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
        Ok(Signer {
            kid: B64.encode(digest.as_ref()),
            key,
            issuer: issuer.to_string(),
            rng,
        })
    }

    /// A signed token for `spec`.
    pub(crate) fn issue(&self, spec: &TokenSpec) -> Result<String, Error> {
        let (iat, exp) = (secs(spec.issued), secs(spec.expires));
        let mut k8s = json!({
            "namespace": spec.namespace,
            "serviceaccount": {"name": spec.name, "uid": spec.uid},
        });
        if let Some((name, uid)) = &spec.pod {
            k8s["pod"] = json!({"name": name, "uid": uid});
        }
        let claims = json!({
            "aud": spec.audiences,
            "exp": exp,
            "iat": iat,
            "iss": self.issuer,
            "jti": meta::uid(),
            "kubernetes.io": k8s,
            "nbf": iat,
            "sub": format!("system:serviceaccount:{}:{}", spec.namespace, spec.name),
        });
        let header = json!({"alg": "ES256", "kid": self.kid});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map_err(|e| Error::Tls(format!("cannot sign a token: {e}")))?;
        Ok(format!("{input}.{}", B64.encode(sig.as_ref())))
    }

    /// The claims of a token this cluster signed; `None` for any other token.
    fn verified_claims(&self, token: &str) -> Option<Value> {
        let mut parts = token.split('.');
        let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&B64.decode(h).ok()?).ok()?;
        if header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return None;
        }
        let public = signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.key.public_key().as_ref(),
        );
        let sig = B64.decode(s).ok()?;
        public.verify(format!("{h}.{p}").as_bytes(), &sig).ok()?;
        let claims: Value = serde_json::from_slice(&B64.decode(p).ok()?).ok()?;
        (claims.get("iss").and_then(Value::as_str) == Some(self.issuer.as_str())).then_some(claims)
    }

    /// Who a service account token names, checked as kube-apiserver's service account
    /// authenticator does (signature, audiences, times, the service account and the bound
    /// pod still there with the same uids); the `Err` is the authenticator's message.
    /// `Ok` carries the audiences both the token and the caller accept.
    pub(crate) fn authenticate(
        &self,
        store: &Store,
        token: &str,
        audiences: &[String],
    ) -> Result<(User, Vec<String>), String> {
        let invalid = || "invalid bearer token".to_string();
        let claims = self.verified_claims(token).ok_or_else(invalid)?;
        let token_auds: Vec<String> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        let both: Vec<String> = audiences
            .iter()
            .filter(|a| token_auds.contains(a))
            .cloned()
            .collect();
        if both.is_empty() {
            return Err(format!(
                "token audiences {} is invalid for the target audiences {}",
                go_quoted(&token_auds),
                go_quoted(audiences)
            ));
        }
        let now = secs(SystemTime::now());
        let num = |k: &str| claims.get(k).and_then(Value::as_i64);
        if num("exp").is_some_and(|exp| now > exp + LEEWAY) {
            return Err("service account token has expired".into());
        }
        if num("nbf").is_some_and(|nbf| now < nbf - LEEWAY) {
            return Err("service account token is not valid yet".into());
        }
        if num("iat").is_some_and(|iat| now < iat - LEEWAY) {
            return Err("service account token is issued in the future".into());
        }
        let k8s = claims.get("kubernetes.io").cloned().unwrap_or(Value::Null);
        let (ns, sa, sa_uid) = (
            meta::str_at(&k8s, "namespace"),
            meta::str_at(&k8s, "serviceaccount.name"),
            meta::str_at(&k8s, "serviceaccount.uid"),
        );
        let gone = || "service account token has been invalidated".to_string();
        if ns.is_empty() || sa.is_empty() {
            return Err(invalid());
        }
        if uid_of(store, "serviceaccounts", ns, sa).as_deref() != Some(sa_uid) {
            return Err(gone());
        }
        let mut extra = serde_json::Map::new();
        let pod = meta::str_at(&k8s, "pod.name");
        if !pod.is_empty() {
            let pod_uid = meta::str_at(&k8s, "pod.uid");
            if uid_of(store, "pods", ns, pod).as_deref() != Some(pod_uid) {
                return Err(gone());
            }
            extra.insert("authentication.kubernetes.io/pod-name".into(), json!([pod]));
            extra.insert(
                "authentication.kubernetes.io/pod-uid".into(),
                json!([pod_uid]),
            );
        }
        if let Some(jti) = claims.get("jti").and_then(Value::as_str) {
            extra.insert(
                "authentication.kubernetes.io/credential-id".into(),
                json!([format!("JTI={jti}")]),
            );
        }
        let user = User {
            name: format!("system:serviceaccount:{ns}:{sa}"),
            uid: sa_uid.to_string(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
            extra,
        };
        Ok((user, both))
    }
}

/// The uid of a core/v1 object, if it exists.
fn uid_of(store: &Store, plural: &str, ns: &str, name: &str) -> Option<String> {
    let rt = store.resolve("", "v1", plural)?;
    let obj = store.get(&rt, ns, name).ok()?;
    Some(meta::str_at(&obj, "metadata.uid").to_string())
}

/// A list as Go's `%q` prints a `[]string`: `["a" "b"]`.
pub(crate) fn go_quoted(items: &[String]) -> String {
    let inner: Vec<String> = items
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect();
    format!("[{}]", inner.join(" "))
}

/// `POST /api/v1/namespaces/NS/serviceaccounts/NAME/token`: a TokenRequest answered
/// with a signed token, as kube-apiserver's TokenRequest subresource.
pub(crate) fn token_request(
    auth: &super::Auth,
    ns: &str,
    name: &str,
    body: &[u8],
) -> Result<Value> {
    let mut req: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON in the request body: {e}")))?;
    let store = &auth.store;
    let sa_rt = store
        .resolve("", "v1", "serviceaccounts")
        .ok_or_else(|| ApiError::internal("serviceaccounts are not served"))?;
    let sa = store.get(&sa_rt, ns, name)?;
    let invalid = |why: String| ApiError::invalid("TokenRequest.authentication.k8s.io", name, why);
    let spec = req.get("spec").cloned().unwrap_or(json!({}));
    let mut audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if audiences.is_empty() {
        audiences = auth.config.audiences.clone();
    }
    let seconds = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => 3600,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| invalid(format!("spec.expirationSeconds: Invalid value: {v}")))?,
    };
    let min = i64::try_from(auth.config.min_token_expiration.as_secs()).unwrap_or(600);
    if seconds < min {
        let what = if min == 600 {
            "10 minutes".to_string()
        } else {
            format!("{min} seconds")
        };
        return Err(invalid(format!(
            "spec.expirationSeconds: Invalid value: {seconds}: may not specify a duration less than {what}"
        )));
    }
    if seconds > 1 << 32 {
        return Err(invalid(format!(
            "spec.expirationSeconds: Invalid value: {seconds}: may not specify a duration larger than 4294967296 seconds"
        )));
    }
    let mut pod = None;
    if let Some(r) = spec.get("boundObjectRef").filter(|r| !r.is_null()) {
        let kind = meta::str_at(r, "kind");
        if kind != "Pod" {
            return Err(invalid(format!(
                "spec.boundObjectRef.kind: Unsupported value: {}: supported values: \"Pod\"",
                serde_json::to_string(kind).unwrap_or_default()
            )));
        }
        let pod_name = meta::str_at(r, "name");
        let pod_rt = store
            .resolve("", "v1", "pods")
            .ok_or_else(|| ApiError::internal("pods are not served"))?;
        let obj = store.get(&pod_rt, ns, pod_name)?;
        let uid = meta::str_at(&obj, "metadata.uid").to_string();
        let want = meta::str_at(r, "uid");
        if !want.is_empty() && want != uid {
            return Err(ApiError::conflict_msg(format!(
                "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
            )));
        }
        pod = Some((pod_name.to_string(), uid));
    }
    let issued = SystemTime::now();
    let expires = issued + Duration::from_secs(u64::try_from(seconds).unwrap_or(3600));
    let token = auth
        .signer
        .issue(&TokenSpec {
            namespace: ns.to_string(),
            name: name.to_string(),
            uid: meta::str_at(&sa, "metadata.uid").to_string(),
            audiences: audiences.clone(),
            issued,
            expires,
            pod,
        })
        .map_err(|e| ApiError::internal(e.to_string()))?;
    req["kind"] = json!("TokenRequest");
    req["apiVersion"] = json!("authentication.k8s.io/v1");
    let mut md = req.get("metadata").cloned().unwrap_or(json!({}));
    md["name"] = json!(name);
    md["namespace"] = json!(ns);
    md["creationTimestamp"] = json!(meta::rfc3339(issued));
    req["metadata"] = md;
    req["spec"]["audiences"] = json!(audiences);
    req["spec"]["expirationSeconds"] = json!(seconds);
    req["status"] = json!({
        "token": token,
        "expirationTimestamp": meta::rfc3339(expires),
    });
    Ok(req)
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`: who a token names, for the
/// audiences asked (the API's own by default), as kube-apiserver answers.
pub(crate) fn token_review(auth: &super::Auth, body: &[u8]) -> Result<Value> {
    let mut review: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON in the request body: {e}")))?;
    let token = meta::str_at(&review, "spec.token").to_string();
    if token.is_empty() {
        return Err(ApiError::invalid(
            "TokenReview.authentication.k8s.io",
            "",
            "spec.token: Required value: token must not be empty",
        ));
    }
    let asked: Vec<String> = review
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let audiences = if asked.is_empty() {
        auth.config.audiences.clone()
    } else {
        asked
    };
    review["kind"] = json!("TokenReview");
    review["apiVersion"] = json!("authentication.k8s.io/v1");
    if review.get("metadata").is_none() {
        review["metadata"] = json!({});
    }
    review["status"] = match auth.authenticate_token(&token, &audiences) {
        Ok((user, auds)) => json!({
            "authenticated": true,
            "user": user.to_info(),
            "audiences": auds,
        }),
        Err(Some(e)) => json!({"user": {}, "error": e}),
        Err(None) => json!({"user": {}}),
    };
    Ok(review)
}
