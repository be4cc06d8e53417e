//! Which pod a sidecar is: its bearer token must belong to the pod its hello names.
//! With `tokenReview` the API server vouches for the pod's projected service-account
//! token; in embedded mode (`issued`) the token is an HMAC of the pod's identity under a
//! secret kept in the data directory.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use bosun_host::contract::ObjectRef;
use bosun_link::Hello;
use k8s_openapi::api::authentication::v1::TokenReviewStatus;
use tonic::Status;

use super::{Error, Sidecars, io_err};
use crate::config;

/// The file of the secret in the data directory. It keeps the name it had when the link
/// was called the pipe: a new name would make a new secret and void every issued token.
const SECRET_FILE: &str = "pipe-secret";

/// The secret embedded-mode tokens are signed with: made once, kept in the data
/// directory, so sidecars keep their tokens across runtime restarts.
pub(super) fn load_secret(dir: &Path) -> Result<Vec<u8>, Error> {
    let path = dir.join(SECRET_FILE);
    if let Ok(s) = std::fs::read(&path)
        && s.len() >= 32
    {
        // A secret written by an older runtime may be readable by others.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(io_err(&path))?;
        }
        return Ok(s);
    }
    let secret: Vec<u8> = (0..32).map(|_| fastrand::u8(..)).collect();
    // fastrand is not a CSPRNG: mix in the process's randomised hasher state and time.
    let mut mixed = Vec::with_capacity(64);
    mixed.extend_from_slice(&secret);
    for _ in 0..4 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        mixed.extend_from_slice(&h.finish().to_le_bytes());
    }
    let secret = bosun_link::digest(&mixed).into_bytes();
    // Created 0600: never readable by others, not even between a write and a chmod.
    super::write_private(&path, &secret).map_err(io_err(&path))?;
    Ok(secret)
}

impl Sidecars {
    /// The token the sidecar of `namespace/pod` (uid `uid`) presents in embedded mode.
    pub fn issue_token(&self, namespace: &str, pod: &str, uid: &str) -> String {
        bosun_link::pod_token(&self.secret, namespace, pod, uid)
    }

    /// Whether `token` belongs to the pod `hello` names.
    pub(super) async fn authenticate(&self, token: &str, hello: &Hello) -> Result<(), Status> {
        if self.auth == config::SidecarAuth::TokenReview {
            return self.token_review(token, hello).await;
        }
        if !bosun_link::token_matches(
            &self.secret,
            token,
            &hello.namespace,
            &hello.pod,
            &hello.uid,
        ) {
            return Err(Status::unauthenticated(format!(
                "the token does not belong to pod {}/{} (uid {})",
                hello.namespace, hello.pod, hello.uid
            )));
        }
        // The pod must still be the one the token was issued for.
        if let Some(object) = self.informers.get(&ObjectRef::namespaced(
            "v1",
            "Pod",
            &hello.namespace,
            &hello.pod,
        )) && let Ok(v) = serde_json::from_str::<serde_json::Value>(&object)
            && v["metadata"]["uid"]
                .as_str()
                .is_some_and(|u| u != hello.uid)
        {
            return Err(Status::permission_denied(format!(
                "pod {}/{} has another uid than {}: the sidecar belongs to a deleted pod",
                hello.namespace, hello.pod, hello.uid
            )));
        }
        Ok(())
    }

    /// Asks the API server whose token this is (the pod's projected service-account
    /// token carries the pod's name and uid).
    async fn token_review(&self, token: &str, hello: &Hello) -> Result<(), Status> {
        use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..Default::default()
        };
        let api: kube::Api<TokenReview> = kube::Api::all(self.client.clone());
        let reviewed = api
            .create(&kube::api::PostParams::default(), &review)
            .await
            .map_err(|e| {
                Status::unavailable(format!("TokenReview failed: {e}; the sidecar will retry"))
            })?;
        check_review(reviewed.status.as_ref(), hello)
    }
}

/// Whether a TokenReview's answer proves the token belongs to the pod in `hello`.
fn check_review(status: Option<&TokenReviewStatus>, hello: &Hello) -> Result<(), Status> {
    let Some(status) = status.filter(|s| s.authenticated == Some(true)) else {
        let why = status.and_then(|s| s.error.clone()).unwrap_or_default();
        return Err(Status::unauthenticated(format!(
            "the token was not accepted by the API server{}",
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        )));
    };
    let user = status.user.clone().unwrap_or_default();
    let extra = user.extra.unwrap_or_default();
    let one = |k: &str| {
        extra
            .get(k)
            .and_then(|v| v.first())
            .cloned()
            .unwrap_or_default()
    };
    let (pod, uid) = (
        one("authentication.kubernetes.io/pod-name"),
        one("authentication.kubernetes.io/pod-uid"),
    );
    let namespace = user
        .username
        .as_deref()
        .and_then(|u| u.strip_prefix("system:serviceaccount:"))
        .and_then(|r| r.split(':').next())
        .unwrap_or_default()
        .to_owned();
    if pod.is_empty() {
        return Err(Status::permission_denied(
            "the token is not bound to a pod: mount a projected service-account token",
        ));
    }
    if (namespace.as_str(), pod.as_str(), uid.as_str())
        != (
            hello.namespace.as_str(),
            hello.pod.as_str(),
            hello.uid.as_str(),
        )
    {
        return Err(Status::permission_denied(format!(
            "the token belongs to pod {namespace}/{pod} (uid {uid}), not {}/{} (uid {})",
            hello.namespace, hello.pod, hello.uid
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::authentication::v1::UserInfo;

    use super::*;

    fn hello() -> Hello {
        Hello {
            namespace: "demo".into(),
            pod: "web-0".into(),
            uid: "u1".into(),
            ..Default::default()
        }
    }

    fn review(authenticated: bool, user: &str, pod: &str, uid: &str) -> TokenReviewStatus {
        let mut extra = std::collections::BTreeMap::new();
        if !pod.is_empty() {
            extra.insert(
                "authentication.kubernetes.io/pod-name".to_owned(),
                vec![pod.to_owned()],
            );
            extra.insert(
                "authentication.kubernetes.io/pod-uid".to_owned(),
                vec![uid.to_owned()],
            );
        }
        TokenReviewStatus {
            authenticated: Some(authenticated),
            user: Some(UserInfo {
                username: Some(user.to_owned()),
                extra: Some(extra),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_token_review_must_name_the_claimed_pod() {
        let sa = "system:serviceaccount:demo:web";
        assert!(check_review(Some(&review(true, sa, "web-0", "u1")), &hello()).is_ok());
        let e =
            check_review(Some(&review(true, sa, "web-1", "u9")), &hello()).expect_err("other pod");
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("belongs to pod demo/web-1"), "{e}");
        let e = check_review(
            Some(&review(
                true,
                "system:serviceaccount:other:web",
                "web-0",
                "u1",
            )),
            &hello(),
        )
        .expect_err("other namespace");
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let e = check_review(Some(&review(true, sa, "", "")), &hello()).expect_err("unbound");
        assert!(e.message().contains("projected"), "{e}");
        let e =
            check_review(Some(&review(false, sa, "web-0", "u1")), &hello()).expect_err("rejected");
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(check_review(None, &hello()).is_err());
    }

    #[test]
    fn the_secret_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("tmp");
        let secret = load_secret(dir.path()).expect("make");
        assert!(secret.len() >= 32);
        assert_eq!(load_secret(dir.path()).expect("keep"), secret);
        // Tokens issued before a restart stay valid after it.
        let token = bosun_link::pod_token(&secret, "demo", "web-0", "u1");
        let again = load_secret(dir.path()).expect("keep");
        assert!(bosun_link::token_matches(
            &again, &token, "demo", "web-0", "u1"
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            // A secret left readable by others (an older runtime) is tightened.
            let file = dir.path().join(SECRET_FILE);
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            assert_eq!(load_secret(dir.path()).expect("keep"), secret);
            let mode = std::fs::metadata(&file).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
