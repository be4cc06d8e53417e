//! Optional authentication and RBAC: off by default (plain HTTP, everyone is admin); on,
//! HTTPS with the admin token in the kubeconfig, service account tokens from
//! TokenRequest, TokenReview, RBAC with kube-apiserver's 403s, and access reviews.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use bosun_cluster::{Cluster, Config, auth};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

const KUBECTL: &str = "/usr/bin/kubectl";
const SA: &str = "system:serviceaccount:default:app";

async fn with_auth() -> anyhow::Result<Cluster> {
    common::with(Config {
        nodes: 0,
        auth: Some(auth::Config::default()),
        ..Config::default()
    })
    .await
}

/// A client for the cluster sending `token` (none: no credential at all).
async fn client_with(cluster: &Cluster, token: Option<&str>) -> anyhow::Result<kube::Client> {
    let mut config = cluster.kube_config().await?;
    config.auth_info.token = token.map(|t| t.to_string().into());
    Ok(kube::Client::try_from(config)?)
}

/// `method path` with a JSON body: the status code and the JSON answer.
async fn call(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.map(|b| b.to_string().into_bytes()).unwrap_or_default())?;
    let resp = client.send(req.map(Into::into)).await?;
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((code, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

async fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(KUBECTL);
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    // Off the runtime's thread: the cluster answers on it.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("kubectl joins")
        .expect("kubectl runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Service account `app`, pod `p`, and a RoleBinding letting `app` get/list pods in
/// `default`.
async fn setup_app(admin: &kube::Client) -> anyhow::Result<()> {
    for (path, body) in [
        (
            "/api/v1/namespaces/default/serviceaccounts",
            json!({"metadata": {"name": "app"}}),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
            json!({"metadata": {"name": "pod-reader"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
            json!({"metadata": {"name": "read-pods"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "app"}]}),
        ),
    ] {
        let (code, out) = call(admin, "POST", path, Some(body)).await?;
        anyhow::ensure!(code == 201, "{path}: {code} {out}");
    }
    let pods: kube::Api<Pod> = kube::Api::namespaced(admin.clone(), "default");
    pods.create(&Default::default(), &common::pod("p").build())
        .await?;
    Ok(())
}

/// A TokenRequest for `app`: the answer.
async fn token_request(admin: &kube::Client, spec: Value) -> anyhow::Result<(u16, Value)> {
    call(
        admin,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/app/token",
        Some(
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}),
        ),
    )
    .await
}

async fn token_for(admin: &kube::Client, spec: Value) -> anyhow::Result<String> {
    let (code, out) = token_request(admin, spec).await?;
    anyhow::ensure!(code == 201, "TokenRequest: {code} {out}");
    Ok(out["status"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

async fn review(admin: &kube::Client, token: &str, audiences: &[&str]) -> anyhow::Result<Value> {
    let mut spec = json!({"token": token});
    if !audiences.is_empty() {
        spec["audiences"] = json!(audiences);
    }
    let (code, out) = call(
        admin,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        Some(
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}),
        ),
    )
    .await?;
    anyhow::ensure!(code == 201, "TokenReview: {code} {out}");
    Ok(out["status"].clone())
}

fn unauthorized() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
}

#[tokio::test]
async fn auth_off_serves_plain_http_to_everyone() -> anyhow::Result<()> {
    let cluster = common::api_only().await?;
    assert!(cluster.url().starts_with("http://"));
    assert!(cluster.auth().is_none());
    let kubeconfig = std::fs::read_to_string(cluster.kubeconfig_path())?;
    assert!(!kubeconfig.contains("token"), "{kubeconfig}");
    let anonymous = client_with(&cluster, None).await?;
    let (code, _) = call(&anonymous, "GET", "/api/v1/namespaces/default/pods", None).await?;
    assert_eq!(code, 200);
    // The review APIs are not served without authentication.
    let (code, _) = call(
        &anonymous,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        Some(json!({"spec": {"token": "x"}})),
    )
    .await?;
    assert_eq!(code, 404);
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn admin_kubeconfig_works_and_no_credential_is_401() -> anyhow::Result<()> {
    let cluster = with_auth().await?;
    assert!(cluster.url().starts_with("https://"));
    let kubeconfig = std::fs::read_to_string(cluster.kubeconfig_path())?;
    assert!(kubeconfig.contains("certificate-authority-data: "));
    let admin = cluster.client().await?;
    let (code, out) = call(&admin, "GET", "/api/v1/namespaces/default/pods", None).await?;
    assert_eq!(code, 200, "{out}");

    for token in [None, Some("not-a-token"), Some("a.b.c")] {
        let client = client_with(&cluster, token).await?;
        for path in ["/api/v1/namespaces/default/pods", "/version", "/apis"] {
            let (code, out) = call(&client, "GET", path, None).await?;
            assert_eq!((code, &out), (401, &unauthorized()), "{token:?} {path}");
        }
    }

    if Path::new(KUBECTL).exists() {
        let k = cluster.kubeconfig_path();
        let (ok, out) = kubectl(k, &["get", "pods"]).await;
        assert!(ok, "{out}");
        let (ok, out) = kubectl(k, &["auth", "can-i", "get", "pods"]).await;
        assert!(ok && out.trim() == "yes", "{out}");
        let (ok, out) = kubectl(k, &["auth", "can-i", "delete", "nodes"]).await;
        assert!(ok && out.lines().next() == Some("yes"), "{out}");
    }
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn service_account_tokens_are_authorized_by_rbac() -> anyhow::Result<()> {
    let cluster = with_auth().await?;
    let admin = cluster.client().await?;
    setup_app(&admin).await?;
    let (code, out) = token_request(&admin, json!({})).await?;
    assert_eq!(code, 201, "{out}");
    assert_eq!(out["kind"], "TokenRequest");
    assert_eq!(
        out["spec"]["audiences"],
        json!([auth::DEFAULT_ISSUER]),
        "the API's audience by default"
    );
    assert_eq!(out["spec"]["expirationSeconds"], 3600);
    assert!(out["status"]["expirationTimestamp"].is_string());
    let token = out["status"]["token"].as_str().unwrap_or_default();
    let app = client_with(&cluster, Some(token)).await?;

    // Allowed: get and list pods in its namespace.
    let (code, out) = call(&app, "GET", "/api/v1/namespaces/default/pods", None).await?;
    assert_eq!(code, 200, "{out}");
    let (code, out) = call(&app, "GET", "/api/v1/namespaces/default/pods/p", None).await?;
    assert_eq!(code, 200, "{out}");
    // Discovery is every authenticated user's.
    let (code, _) = call(&app, "GET", "/apis", None).await?;
    assert_eq!(code, 200);

    // Denied: another namespace, another verb, cluster scope, a subresource, a path.
    let denied = [
        (
            "GET",
            "/api/v1/namespaces/kube-system/pods",
            "pods is forbidden: User \"system:serviceaccount:default:app\" cannot list resource \"pods\" in API group \"\" in the namespace \"kube-system\"",
            json!({"kind": "pods"}),
        ),
        (
            "DELETE",
            "/api/v1/namespaces/default/pods/p",
            "pods \"p\" is forbidden: User \"system:serviceaccount:default:app\" cannot delete resource \"pods\" in API group \"\" in the namespace \"default\"",
            json!({"name": "p", "kind": "pods"}),
        ),
        (
            "GET",
            "/apis/apps/v1/deployments",
            "deployments.apps is forbidden: User \"system:serviceaccount:default:app\" cannot list resource \"deployments\" in API group \"apps\" at the cluster scope",
            json!({"group": "apps", "kind": "deployments"}),
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods/p/eviction",
            "pods \"p\" is forbidden: User \"system:serviceaccount:default:app\" cannot create resource \"pods/eviction\" in API group \"\" in the namespace \"default\"",
            json!({"name": "p", "kind": "pods"}),
        ),
        (
            "GET",
            "/metrics",
            "forbidden: User \"system:serviceaccount:default:app\" cannot get path \"/metrics\"",
            json!({}),
        ),
    ];
    for (method, path, message, details) in denied {
        let (code, out) = call(&app, method, path, Some(json!({}))).await?;
        assert_eq!(
            out,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": "Forbidden", "details": details, "code": 403}),
            "{method} {path}"
        );
        assert_eq!(code, 403);
    }
    // The pod is still there.
    let (code, _) = call(&admin, "GET", "/api/v1/namespaces/default/pods/p", None).await?;
    assert_eq!(code, 200);

    // A binding to a role that does not exist says so.
    let (code, _) = call(
        &admin,
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
        Some(json!({"metadata": {"name": "dangling"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gone"},
            "subjects": [{"kind": "ServiceAccount", "name": "app"}]})),
    )
    .await?;
    assert_eq!(code, 201);
    let (_, out) = call(&app, "GET", "/api/v1/namespaces/default/secrets", None).await?;
    assert_eq!(
        out["message"],
        "secrets is forbidden: User \"system:serviceaccount:default:app\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\": RBAC: role.rbac.authorization.k8s.io \"gone\" not found"
    );
    let (code, _) = call(
        &admin,
        "DELETE",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings/dangling",
        None,
    )
    .await?;
    assert_eq!(code, 200);

    // SelfSubjectAccessReview (what `kubectl auth can-i` sends) as the service account.
    let ssar = |verb: &str, ns: &str| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"namespace": ns, "verb": verb, "resource": "pods"}}})
    };
    let path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let (code, out) = call(&app, "POST", path, Some(ssar("list", "default"))).await?;
    assert_eq!(code, 201, "{out}");
    assert_eq!(
        out["status"],
        json!({"allowed": true, "reason": "RBAC: allowed by RoleBinding \"read-pods/default\" of Role \"pod-reader\" to ServiceAccount \"app/default\""})
    );
    let (_, out) = call(&app, "POST", path, Some(ssar("delete", "default"))).await?;
    assert_eq!(out["status"]["allowed"], false);
    let (_, out) = call(&app, "POST", path, Some(ssar("get", "kube-system"))).await?;
    assert_eq!(out["status"]["allowed"], false);

    // SubjectAccessReview: the admin asks about the service account.
    let sar = |verb: &str| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": SA, "groups": ["system:serviceaccounts", "system:authenticated"],
                "resourceAttributes": {"namespace": "default", "verb": verb, "resource": "pods"}}})
    };
    let path = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
    let (code, out) = call(&admin, "POST", path, Some(sar("get"))).await?;
    assert_eq!(
        (code, &out["status"]["allowed"]),
        (201, &json!(true)),
        "{out}"
    );
    let (_, out) = call(&admin, "POST", path, Some(sar("delete"))).await?;
    assert_eq!(out["status"]["allowed"], false);
    // ... which the service account may not ask.
    let (code, out) = call(&app, "POST", path, Some(sar("get"))).await?;
    assert_eq!(code, 403, "{out}");

    if Path::new(KUBECTL).exists() {
        let k = cluster.kubeconfig_path();
        for (verb, ns, want) in [
            ("list", "default", "yes"),
            ("delete", "default", "no"),
            ("get", "kube-system", "no"),
        ] {
            let args = ["--token", token, "-n", ns, "auth", "can-i", verb, "pods"];
            let (ok, out) = kubectl(k, &args).await;
            assert_eq!((ok, out.trim()), (want == "yes", want), "{args:?}: {out}");
        }
        // Impersonation: the admin may act as the service account, which may not act as
        // anyone.
        for (verb, want) in [("list", "yes"), ("delete", "no")] {
            let args = ["--as", SA, "auth", "can-i", verb, "pods"];
            let (_, out) = kubectl(k, &args).await;
            assert_eq!(out.lines().next(), Some(want), "{args:?}: {out}");
        }
        let (ok, out) = kubectl(k, &["--token", token, "--as", "bob", "get", "pods"]).await;
        assert!(!ok, "{out}");
        assert!(
            out.contains("Error from server (Forbidden): users \"bob\" is forbidden: User \"system:serviceaccount:default:app\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"),
            "{out}"
        );
        let (ok, out) = kubectl(k, &["--token", token, "get", "pods", "-n", "kube-system"]).await;
        assert!(!ok, "{out}");
        assert!(
            out.contains("Error from server (Forbidden): pods is forbidden: User \"system:serviceaccount:default:app\" cannot list resource \"pods\" in API group \"\" in the namespace \"kube-system\""),
            "{out}"
        );
    }
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn expired_and_wrong_audience_tokens_are_refused() -> anyhow::Result<()> {
    let cluster = with_auth().await?;
    let admin = cluster.client().await?;
    setup_app(&admin).await?;
    let a = cluster.auth().expect("auth is on");
    let (code, out) = call(
        &admin,
        "GET",
        "/api/v1/namespaces/default/serviceaccounts/app",
        None,
    )
    .await?;
    assert_eq!(code, 200);
    let sa_uid = out["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // expirationSeconds under the minimum is refused as kube-apiserver refuses it.
    let (code, out) = token_request(&admin, json!({"expirationSeconds": 10})).await?;
    assert_eq!(code, 422, "{out}");
    assert_eq!(
        out["message"],
        "TokenRequest.authentication.k8s.io \"app\" is invalid: spec.expirationSeconds: Invalid value: 10: may not specify a duration less than 10 minutes"
    );

    // Expired two minutes ago (past the 60 s leeway).
    let now = SystemTime::now();
    let expired = a.issue_token(&auth::TokenSpec {
        namespace: "default".into(),
        name: "app".into(),
        uid: sa_uid.clone(),
        audiences: a.config().audiences.clone(),
        issued: now - Duration::from_secs(3600),
        expires: now - Duration::from_secs(120),
        pod: None,
    })?;
    let client = client_with(&cluster, Some(&expired)).await?;
    let (code, out) = call(&client, "GET", "/api/v1/namespaces/default/pods", None).await?;
    assert_eq!((code, out), (401, unauthorized()));
    let status = review(&admin, &expired, &[]).await?;
    assert_eq!(
        status,
        json!({"user": {}, "error": "service account token has expired"})
    );

    // A token for audience "bosun": refused by the API, accepted by TokenReview for "bosun".
    let bosun = token_for(&admin, json!({"audiences": ["bosun"]})).await?;
    let client = client_with(&cluster, Some(&bosun)).await?;
    let (code, out) = call(&client, "GET", "/api/v1/namespaces/default/pods", None).await?;
    assert_eq!((code, out), (401, unauthorized()));
    let status = review(&admin, &bosun, &["bosun"]).await?;
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(status["audiences"], json!(["bosun"]));
    assert_eq!(status["user"]["username"], SA);
    assert_eq!(status["user"]["uid"], sa_uid.as_str());
    assert_eq!(
        status["user"]["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ])
    );
    let status = review(&admin, &bosun, &[]).await?;
    assert_eq!(
        status,
        json!({"user": {}, "error": format!(
            "token audiences [\"bosun\"] is invalid for the target audiences [\"{}\"]",
            auth::DEFAULT_ISSUER
        )})
    );
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn token_review_of_a_pod_bound_token() -> anyhow::Result<()> {
    let cluster = with_auth().await?;
    let admin = cluster.client().await?;
    setup_app(&admin).await?;
    let (_, pod) = call(&admin, "GET", "/api/v1/namespaces/default/pods/p", None).await?;
    let pod_uid = pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // Bound to a pod that does not exist, or with another uid: refused.
    let (code, out) = token_request(
        &admin,
        json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "nope"}}),
    )
    .await?;
    assert_eq!(
        (code, &out["message"]),
        (404, &json!("pods \"nope\" not found"))
    );
    let (code, _) = token_request(
        &admin,
        json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "other"}}),
    )
    .await?;
    assert_eq!(code, 409);

    let bound = token_for(
        &admin,
        json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": pod_uid}}),
    )
    .await?;
    let status = review(&admin, &bound, &[]).await?;
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(status["audiences"], json!([auth::DEFAULT_ISSUER]));
    let extra = &status["user"]["extra"];
    assert_eq!(extra["authentication.kubernetes.io/pod-name"], json!(["p"]));
    assert_eq!(
        extra["authentication.kubernetes.io/pod-uid"],
        json!([pod_uid.as_str()])
    );
    let client = client_with(&cluster, Some(&bound)).await?;
    let (code, _) = call(&client, "GET", "/api/v1/namespaces/default/pods", None).await?;
    assert_eq!(code, 200);

    // The pod goes (and comes back with another uid): the token is invalidated.
    let (code, _) = call(
        &admin,
        "DELETE",
        "/api/v1/namespaces/default/pods/p?gracePeriodSeconds=0",
        None,
    )
    .await?;
    assert_eq!(code, 200);
    let invalidated = json!({"user": {}, "error": "service account token has been invalidated"});
    assert_eq!(review(&admin, &bound, &[]).await?, invalidated);
    let pods: kube::Api<Pod> = kube::Api::namespaced(admin.clone(), "default");
    pods.create(&Default::default(), &common::pod("p").build())
        .await?;
    assert_eq!(review(&admin, &bound, &[]).await?, invalidated);
    let (code, out) = call(&client, "GET", "/api/v1/namespaces/default/pods", None).await?;
    assert_eq!((code, out), (401, unauthorized()));
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn credentials_survive_a_restart_with_a_data_dir() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = Config {
        nodes: 0,
        data_dir: Some(dir.path().to_path_buf()),
        auth: Some(auth::Config::default()),
        ..Config::default()
    };
    let cluster = common::with(config.clone()).await?;
    let admin = cluster.client().await?;
    setup_app(&admin).await?;
    let token = token_for(&admin, json!({})).await?;
    let (ca, admin_token) = {
        let a = cluster.auth().expect("auth is on");
        (a.ca_pem().to_string(), a.admin_token().to_string())
    };
    cluster.shutdown().await;

    let cluster = common::with(config).await?;
    let a = cluster.auth().expect("auth is on");
    assert_eq!(
        (a.ca_pem(), a.admin_token()),
        (ca.as_str(), admin_token.as_str())
    );
    let client = client_with(&cluster, Some(&token)).await?;
    let (code, out) = call(&client, "GET", "/api/v1/namespaces/default/pods", None).await?;
    assert_eq!(code, 200, "{out}");
    cluster.shutdown().await;
    Ok(())
}
