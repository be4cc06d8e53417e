//! Admission webhooks: configurations served and validated, webhooks called over HTTPS
//! as kube-apiserver calls them (a test webhook server with its own certificate).

mod common;

use bosun_cluster::Cluster;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KUBECTL: &str = "/usr/bin/kubectl";
const CONFIGS: &str = "/apis/admissionregistration.k8s.io/v1";

/// Base64, as `[]byte` fields are written in JSON.
fn b64(bytes: &[u8]) -> Value {
    serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec())).expect("serialises")
}

/// A response that allows and applies a JSONPatch.
fn patch(ops: Value) -> Value {
    json!({"allowed": true, "patchType": "JSONPatch", "patch": b64(ops.to_string().as_bytes())})
}

fn deny(code: u16, message: &str) -> Value {
    json!({"allowed": false, "status": {"code": code, "message": message}})
}

type Handler = dyn Fn(&Value) -> Value + Send + Sync;

/// A test webhook server: HTTPS with a self-signed certificate for `names`; answers
/// every review with the handler's `response` (its uid filled in) after `delay`.
struct Webhook {
    port: u16,
    ca_pem: String,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    /// Connections accepted (TLS established).
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Webhook {
    async fn start(
        names: &[&str],
        delay: Duration,
        handler: impl Fn(&Value) -> Value + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        Self::start_closing(names, delay, None, handler).await
    }

    /// As [`Webhook::start`]; with `close_after`, each connection is cut that long after
    /// it was accepted, without a word to the client (as a server closing idle ones).
    async fn start_closing(
        names: &[&str],
        delay: Duration,
        close_after: Option<Duration>,
        handler: impl Fn(&Value) -> Value + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names)?;
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key.into())?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let handler: Arc<Handler> = Arc::new(handler);
        let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let seen2 = seen.clone();
        let accepted: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let counted = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, handler, seen) = (acceptor.clone(), handler.clone(), seen2.clone());
                let counted = counted.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    // Counted once TLS is up: a client of another test's cluster that
                    // still calls this port (the OS reused it) fails the handshake with
                    // its own CA and is not this test's connection.
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                        let (handler, seen) = (handler.clone(), seen.clone());
                        async move {
                            let path = req.uri().to_string();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let review: Value = serde_json::from_slice(&body).unwrap_or_default();
                            seen.lock()
                                .expect("not poisoned")
                                .push((path, review.clone()));
                            tokio::time::sleep(delay).await;
                            let mut response = handler(&review);
                            if response.get("uid").is_none() {
                                response["uid"] = review["request"]["uid"].clone();
                            }
                            let out = json!({
                                "apiVersion": "admission.k8s.io/v1",
                                "kind": "AdmissionReview",
                                "response": response,
                            });
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from(out.to_string()),
                            )))
                        }
                    });
                    let serve = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc);
                    match close_after {
                        Some(d) => drop(tokio::time::timeout(d, serve).await),
                        None => drop(serve.await),
                    }
                });
            }
        });
        Ok(Self {
            port,
            ca_pem: ck.cert.pem(),
            seen,
            accepted,
            task,
        })
    }

    /// A webhook on 127.0.0.1 that answers with `handler`.
    async fn local(
        handler: impl Fn(&Value) -> Value + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        Self::start(&["127.0.0.1"], Duration::ZERO, handler).await
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn ca_bundle(&self) -> Value {
        b64(self.ca_pem.as_bytes())
    }

    /// Connections accepted so far.
    fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every request so far: `(path and query, AdmissionReview)`.
    fn requests(&self) -> Vec<(String, Value)> {
        self.seen.lock().expect("not poisoned").clone()
    }

    /// The `request` of every review so far.
    fn reviews(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .map(|(_, r)| r["request"].clone())
            .collect()
    }
}

/// One webhook of a configuration: `hook("x.bosun.test").url(&server, "/v").build()`.
struct HookBuilder {
    v: Value,
}

fn hook(name: &str) -> HookBuilder {
    HookBuilder {
        v: json!({
            "name": name,
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        }),
    }
}

impl HookBuilder {
    fn url(mut self, server: &Webhook, path: &str) -> Self {
        self.v["clientConfig"] = json!({"url": server.url(path), "caBundle": server.ca_bundle()});
        self
    }
    fn client(mut self, cc: Value) -> Self {
        self.v["clientConfig"] = cc;
        self
    }
    fn rules(mut self, ops: &[&str], resources: &[&str]) -> Self {
        self.v["rules"] = json!([{"operations": ops, "apiGroups": ["*"], "apiVersions": ["*"], "resources": resources}]);
        self
    }
    fn set(mut self, k: &str, v: Value) -> Self {
        self.v[k] = v;
        self
    }
    fn build(self) -> Value {
        self.v
    }
}

fn config(kind: &str, name: &str, hooks: Vec<Value>) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "webhooks": hooks,
    })
}

/// Registers a configuration; fails the test unless it is created.
async fn register(c: &Cluster, kind: &str, name: &str, hooks: Vec<Value>) -> anyhow::Result<Value> {
    let plural = format!("{}s", kind.to_lowercase());
    let (code, _, out) = http(
        c,
        "POST",
        &format!("{CONFIGS}/{plural}"),
        Some(config(kind, name, hooks)),
    )
    .await?;
    anyhow::ensure!(code == 201, "{kind} {name}: {code} {out}");
    Ok(out)
}

/// One plain-HTTP request to the cluster: status, headers and the JSON body.
async fn http(
    c: &Cluster,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, HeaderMap, Value)> {
    let ct = if method == "PATCH" {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let tcp = tokio::net::TcpStream::connect(c.addr()).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", c.addr().to_string())
        .header("content-type", ct)
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))?;
    let resp = sender.send_request(req).await?;
    let (code, headers) = (resp.status().as_u16(), resp.headers().clone());
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((
        code,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

async fn namespace(c: &Cluster, name: &str, labels: Value) -> anyhow::Result<()> {
    let (code, _, out) = http(
        c,
        "POST",
        "/api/v1/namespaces",
        Some(json!({"metadata": {"name": name, "labels": labels}})),
    )
    .await?;
    anyhow::ensure!(code == 201, "namespace {name}: {code} {out}");
    Ok(())
}

fn pod(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "app:v1"}]},
    })
}

async fn create_pod(c: &Cluster, ns: &str, p: Value) -> anyhow::Result<(u16, HeaderMap, Value)> {
    http(c, "POST", &format!("/api/v1/namespaces/{ns}/pods"), Some(p)).await
}

/// Denies pods without a `team` label.
fn require_team(review: &Value) -> Value {
    if review["request"]["object"]["metadata"]["labels"]["team"].is_string() {
        json!({"allowed": true})
    } else {
        deny(403, "pods need a team label")
    }
}

#[tokio::test]
async fn a_validating_webhook_guards_the_namespaces_it_selects() -> anyhow::Result<()> {
    let c = common::api_only().await?;
    let server = Webhook::local(require_team).await?;
    namespace(&c, "guarded", json!({"admission": "on"})).await?;
    namespace(&c, "open", json!({})).await?;
    register(
        &c,
        "ValidatingWebhookConfiguration",
        "require-team",
        vec![
            hook("require-team.bosun.test")
                .url(&server, "/validate")
                .set(
                    "namespaceSelector",
                    json!({"matchLabels": {"admission": "on"}}),
                )
                .build(),
        ],
    )
    .await?;

    let (code, _, out) = create_pod(&c, "guarded", pod("p1", json!({}))).await?;
    assert_eq!(code, 403, "{out}");
    // webhookerrors.ToStatusErr: the webhook's code, no reason it did not give, no
    // resource prefix (kubectl: `Error from server: admission webhook ... denied ...`).
    assert!(out.get("reason").is_none(), "{out}");
    assert_eq!(
        out["message"],
        "admission webhook \"require-team.bosun.test\" denied the request: pods need a team label"
    );
    let (code, _, _) = http(&c, "GET", "/api/v1/namespaces/guarded/pods/p1", None).await?;
    assert_eq!(code, 404, "a denied pod is not stored");
    let (code, _, out) = create_pod(&c, "guarded", pod("p2", json!({"team": "a"}))).await?;
    assert_eq!(code, 201, "{out}");
    let (code, _, out) = create_pod(&c, "open", pod("p3", json!({}))).await?;
    assert_eq!(code, 201, "not called for other namespaces: {out}");

    let requests = server.requests();
    assert_eq!(requests.len(), 2, "called for the guarded namespace only");
    assert_eq!(requests[0].0, "/validate?timeout=10s");
    let (review, r) = (&requests[0].1, &requests[0].1["request"]);
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    assert!(!r["uid"].as_str().unwrap_or("").is_empty());
    assert_eq!(
        r["kind"],
        json!({"group": "", "version": "v1", "kind": "Pod"})
    );
    assert_eq!(
        r["resource"],
        json!({"group": "", "version": "v1", "resource": "pods"})
    );
    assert_eq!(r["requestKind"], r["kind"]);
    assert_eq!(r["requestResource"], r["resource"]);
    assert_eq!(r["operation"], "CREATE");
    assert_eq!(r["name"], "p1");
    assert_eq!(r["namespace"], "guarded");
    assert_eq!(r["dryRun"], false);
    assert_eq!(r["options"]["kind"], "CreateOptions");
    assert_eq!(r["userInfo"]["username"], "system:admin");
    assert_eq!(r["oldObject"], Value::Null);
    assert!(
        r["object"]["metadata"]["uid"].is_string(),
        "validating webhooks see the object as it will be stored"
    );
    assert_eq!(r["object"]["status"]["phase"], "Pending");
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn namespaces_are_labelled_with_their_name_for_selectors() -> anyhow::Result<()> {
    let c = common::api_only().await?;
    let server = Webhook::local(|_| deny(403, "no pods here")).await?;
    let excluded = json!({"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]},
    ]});
    register(
        &c,
        "ValidatingWebhookConfiguration",
        "not-kube-system",
        vec![
            hook("not-kube-system.bosun.test")
                .url(&server, "/")
                .set("namespaceSelector", excluded)
                .build(),
        ],
    )
    .await?;
    let (_, _, ns) = http(&c, "GET", "/api/v1/namespaces/kube-system", None).await?;
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "kube-system"
    );
    let (code, _, out) = create_pod(&c, "kube-system", pod("k1", json!({}))).await?;
    assert_eq!(code, 201, "{out}");
    let (code, _, out) = create_pod(&c, "default", pod("k2", json!({}))).await?;
    assert_eq!(code, 403, "{out}");
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_mutating_webhook_labels_what_is_created() -> anyhow::Result<()> {
    let c = common::api_only().await?;
    let server = Webhook::local(|_| {
        patch(json!([{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}]))
    })
    .await?;
    register(
        &c,
        "MutatingWebhookConfiguration",
        "labeler",
        vec![hook("labeler.bosun.test").url(&server, "/mutate").build()],
    )
    .await?;
    let (code, _, out) = create_pod(&c, "default", pod("m1", json!({"app": "web"}))).await?;
    assert_eq!(code, 201, "{out}");
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "mutated": "yes"})
    );
    let (_, _, stored) = http(&c, "GET", "/api/v1/namespaces/default/pods/m1", None).await?;
    assert_eq!(stored["metadata"]["labels"]["mutated"], "yes");
    let r = &server.reviews()[0];
    assert!(
        r["object"]["metadata"].get("uid").is_none(),
        "mutating webhooks see the request's object"
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_if_needed_webhook_is_reinvoked_after_a_later_change() -> anyhow::Result<()> {
    let c = common::api_only().await?;
    // The first webhook copies the `second` label into `first-saw`; the second adds it.
    let first = Webhook::local(|review| {
        let saw = review["request"]["object"]["metadata"]["labels"]["second"]
            .as_str()
            .unwrap_or("none")
            .to_string();
        patch(json!([{"op": "add", "path": "/metadata/labels/first-saw", "value": saw}]))
    })
    .await?;
    let second = Webhook::local(|_| {
        patch(json!([{"op": "add", "path": "/metadata/labels/second", "value": "set"}]))
    })
    .await?;
    let never = Webhook::local(|_| json!({"allowed": true})).await?;
    // Configurations are called by name: a-first, then b-second.
    register(
        &c,
        "MutatingWebhookConfiguration",
        "b-second",
        vec![hook("second.bosun.test").url(&second, "/").build()],
    )
    .await?;
    register(
        &c,
        "MutatingWebhookConfiguration",
        "a-first",
        vec![
            hook("never.bosun.test").url(&never, "/").build(),
            hook("first.bosun.test")
                .url(&first, "/")
                .set("reinvocationPolicy", json!("IfNeeded"))
                .build(),
        ],
    )
    .await?;
    let (code, _, out) = create_pod(&c, "default", pod("r1", json!({}))).await?;
    assert_eq!(code, 201, "{out}");
    assert_eq!(out["metadata"]["labels"]["second"], "set");
    assert_eq!(
        out["metadata"]["labels"]["first-saw"], "set",
        "reinvoked with the later change"
    );
    assert_eq!(first.requests().len(), 2);
    assert_eq!(
        second.requests().len(),
        1,
        "a webhook's own change does not reinvoke it"
    );
    assert_eq!(never.requests().len(), 1, "reinvocationPolicy Never");
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_object_selector_matches_the_new_or_the_old_labels() -> anyhow::Result<()> {
    let c = common::api_only().await?;
    let server = Webhook::local(|_| json!({"allowed": true})).await?;
    register(
        &c,
        "ValidatingWebhookConfiguration",
        "checked",
        vec![
            hook("checked.bosun.test")
                .url(&server, "/")
                .rules(&["CREATE", "UPDATE"], &["configmaps"])
                .set("objectSelector", json!({"matchLabels": {"check": "yes"}}))
                .build(),
        ],
    )
    .await?;
    let cm = |name: &str, labels: Value| json!({"metadata": {"name": name, "labels": labels}});
    let path = "/api/v1/namespaces/default/configmaps";
    http(&c, "POST", path, Some(cm("plain", json!({})))).await?;
    assert!(
        server.requests().is_empty(),
        "not called for unselected objects"
    );
    let (code, _, _) = http(
        &c,
        "POST",
        path,
        Some(cm("checked", json!({"check": "yes"}))),
    )
    .await?;
    assert_eq!(code, 201);
    assert_eq!(server.requests().len(), 1);
    // Removing the label is still seen: the old object matches.
    let (code, _, out) = http(
        &c,
        "PATCH",
        &format!("{path}/checked"),
        Some(json!({"metadata": {"labels": {"check": null}}})),
    )
    .await?;
    assert_eq!(code, 200, "{out}");
    let reviews = server.reviews();
    assert_eq!(reviews.len(), 2);
    assert_eq!(reviews[1]["operation"], "UPDATE", "a patch is an update");
    assert_eq!(
        reviews[1]["oldObject"]["metadata"]["labels"]["check"],
        "yes"
    );
    assert_eq!(reviews[1]["options"]["kind"], "UpdateOptions");
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn subresources_match_only_rules_that_name_them() -> anyhow::Result<()> {
    let c = common::api_only().await?;
    let main = Webhook::local(|_| json!({"allowed": true})).await?;
    let status = Webhook::local(|_| deny(422, "status is frozen")).await?;
    register(
        &c,
        "ValidatingWebhookConfiguration",
        "pods",
        vec![
            hook("main.bosun.test")
                .url(&main, "/")
                .rules(&["*"], &["*"])
                .build(),
            hook("status.bosun.test")
                .url(&status, "/")
                .rules(&["UPDATE"], &["pods/status"])
                .build(),
        ],
    )
    .await?;
    create_pod(&c, "default", pod("s1", json!({}))).await?;
    let (code, _, out) = http(
        &c,
        "PATCH",
        "/api/v1/namespaces/default/pods/s1/status",
        Some(json!({"status": {"phase": "Running"}})),
    )
    .await?;
    assert_eq!(code, 422, "{out}");
    assert!(
        out.get("reason").is_none(),
        "no reason given: none, with the webhook's code: {out}"
    );
    let r = &status.reviews()[0];
    assert_eq!(r["subResource"], "status");
    assert_eq!(r["requestSubResource"], "status");
    assert_eq!(r["object"]["status"]["phase"], "Running");
    assert_eq!(
        main.requests().len(),
        1,
        "'*' matches the main resource only"
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_webhook_that_is_down_fails_the_request_unless_ignored() -> anyhow::Result<()> {
    let c = common::api_only().await?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let down = json!({"url": format!("https://127.0.0.1:{port}/x"), "caBundle": b64(b"unused")});
    register(
        &c,
        "ValidatingWebhookConfiguration",
        "down",
        vec![hook("down.bosun.test").client(down.clone()).build()],
    )
    .await?;
    let (code, _, out) = create_pod(&c, "default", pod("d1", json!({}))).await?;
    assert_eq!(code, 500, "{out}");
    assert_eq!(out["reason"], "InternalError");
    // A caBundle that is not PEM fails before any connection.
    let msg = out["message"].as_str().unwrap_or("");
    assert!(
        msg.starts_with(
            "Internal error occurred: failed calling webhook \"down.bosun.test\": could not get REST client: unable to load root certificates"
        ),
        "{msg}"
    );

    let server = Webhook::local(|_| json!({"allowed": true})).await?;
    let (code, _, out) = http(
        &c,
        "DELETE",
        &format!("{CONFIGS}/validatingwebhookconfigurations/down"),
        None,
    )
    .await?;
    assert_eq!(code, 200, "{out}");
    let refused =
        json!({"url": format!("https://127.0.0.1:{port}/x"), "caBundle": server.ca_bundle()});
    register(
        &c,
        "ValidatingWebhookConfiguration",
        "down",
        vec![hook("down.bosun.test").client(refused.clone()).build()],
    )
    .await?;
    let (code, _, out) = create_pod(&c, "default", pod("d2", json!({}))).await?;
    assert_eq!(code, 500);
    assert_eq!(
        out["message"],
        format!(
            "Internal error occurred: failed calling webhook \"down.bosun.test\": failed to call webhook: Post \"https://127.0.0.1:{port}/x?timeout=10s\": dial tcp 127.0.0.1:{port}: connect: connection refused"
        )
    );

    register(
        &c,
        "ValidatingWebhookConfiguration",
        "down-ignored",
        vec![
            hook("ignored.bosun.test")
                .client(refused)
                .set("failurePolicy", json!("Ignore"))
                .build(),
        ],
    )
    .await?;
    http(
        &c,
        "DELETE",
        &format!("{CONFIGS}/validatingwebhookconfigurations/down"),
        None,
    )
    .await?;
    let (code, _, out) = create_pod(&c, "default", pod("d3", json!({}))).await?;
    assert_eq!(code, 201, "failurePolicy Ignore: {out}");
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_slow_webhook_times_out_at_its_timeout() -> anyhow::Result<()> {
    let c = common::api_only().await?;
    let server = Webhook::start(
        &["127.0.0.1"],
        Duration::from_secs(60),
        |_| json!({"allowed": true}),
    )
    .await?;
    register(
        &c,
        "ValidatingWebhookConfiguration",
        "slow",
        vec![
            hook("slow.bosun.test")
                .url(&server, "/slow")
                .set("timeoutSeconds", json!(1))
                .build(),
        ],
    )
    .await?;
    let start = Instant::now();
    let (code, _, out) = create_pod(&c, "default", pod("t1", json!({}))).await?;
    assert_eq!(code, 500, "{out}");
    let msg = out["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("/slow?timeout=1s\": context deadline exceeded"),
        "{msg}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "did not wait for the answer"
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_certificate_the_ca_bundle_does_not_sign_is_refused() -> anyhow::Result<()> {
    let c = common::api_only().await?;
    let server = Webhook::local(|_| json!({"allowed": true})).await?;
    let other = Webhook::local(|_| json!({"allowed": true})).await?;
    register(
        &c,
        "ValidatingWebhookConfiguration",
        "wrong-ca",
        vec![
            hook("wrong-ca.bosun.test")
                .client(json!({"url": server.url("/"), "caBundle": other.ca_bundle()}))
                .build(),
        ],
    )
    .await?;
    let (code, _, out) = create_pod(&c, "default", pod("w1", json!({}))).await?;
    assert_eq!(code, 500, "{out}");
    let msg = out["message"].as_str().unwrap_or("");
    assert!(msg.contains("tls: failed to verify certificate"), "{msg}");
    assert!(server.requests().is_empty());
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_service_is_reached_through_its_endpoints() -> anyhow::Result<()> {
    let c = common::api_only().await?;
    let server = Webhook::start(&["hook.webhooks.svc"], Duration::ZERO, require_team).await?;
    namespace(&c, "webhooks", json!({})).await?;
    let service = json!({"name": "hook", "namespace": "webhooks", "path": "/validate"});
    register(
        &c,
        "ValidatingWebhookConfiguration",
        "by-service",
        vec![
            hook("by-service.bosun.test")
                .client(json!({"service": service, "caBundle": server.ca_bundle()}))
                .build(),
        ],
    )
    .await?;
    let (code, _, out) = create_pod(&c, "default", pod("v1", json!({}))).await?;
    assert_eq!(code, 500, "no Service yet: {out}");
    assert!(
        out["message"]
            .as_str()
            .unwrap_or("")
            .contains("service \"hook\" not found"),
        "{out}"
    );

    let (service, endpoints) =
        bosun_cluster::admission::loopback_service("webhooks", "hook", server.port);
    let (code, _, out) = http(
        &c,
        "POST",
        "/api/v1/namespaces/webhooks/services",
        Some(service),
    )
    .await?;
    assert_eq!(code, 201, "{out}");
    let (code, _, out) = create_pod(&c, "default", pod("v1", json!({}))).await?;
    assert_eq!(code, 500, "no Endpoints yet: {out}");
    assert!(
        out["message"]
            .as_str()
            .unwrap_or("")
            .contains("endpoints \"hook\" not found"),
        "{out}"
    );
    let (code, _, out) = http(
        &c,
        "POST",
        "/api/v1/namespaces/webhooks/endpoints",
        Some(endpoints),
    )
    .await?;
    assert_eq!(code, 201, "{out}");
    let (code, _, out) = create_pod(&c, "default", pod("v2", json!({}))).await?;
    assert_eq!(code, 403, "{out}");
    let (code, _, out) = create_pod(&c, "default", pod("v3", json!({"team": "a"}))).await?;
    assert_eq!(code, 201, "{out}");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].0, "/validate?timeout=10s");
    let (_, _, cfg) = http(
        &c,
        "GET",
        &format!("{CONFIGS}/validatingwebhookconfigurations/by-service"),
        None,
    )
    .await?;
    assert_eq!(
        cfg["webhooks"][0]["clientConfig"]["service"]["port"], 443,
        "defaulted"
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_dry_run_is_passed_through_and_stores_nothing() -> anyhow::Result<()> {
    let c = common::api_only().await?;
    let server = Webhook::local(|_| {
        patch(json!([{"op": "add", "path": "/metadata/labels/dry", "value": "seen"}]))
    })
    .await?;
    register(
        &c,
        "MutatingWebhookConfiguration",
        "dry",
        vec![
            hook("dry.bosun.test")
                .url(&server, "/")
                .set("sideEffects", json!("NoneOnDryRun"))
                .build(),
        ],
    )
    .await?;
    let (code, _, out) = http(
        &c,
        "POST",
        "/api/v1/namespaces/default/pods?dryRun=All",
        Some(pod("dry1", json!({}))),
    )
    .await?;
    assert_eq!(code, 201, "{out}");
    assert_eq!(out["metadata"]["labels"]["dry"], "seen");
    let r = &server.reviews()[0];
    assert_eq!(r["dryRun"], true);
    assert_eq!(r["options"]["dryRun"], json!(["All"]));
    let (code, _, _) = http(&c, "GET", "/api/v1/namespaces/default/pods/dry1", None).await?;
    assert_eq!(code, 404, "a dry run stores nothing");
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn warnings_come_back_as_headers() -> anyhow::Result<()> {
    let c = common::api_only().await?;
    let server = Webhook::local(
        |_| json!({"allowed": true, "warnings": ["image \"app:v1\" is old", "second"]}),
    )
    .await?;
    register(
        &c,
        "ValidatingWebhookConfiguration",
        "warner",
        vec![hook("warner.bosun.test").url(&server, "/").build()],
    )
    .await?;
    let (code, headers, _) = create_pod(&c, "default", pod("w1", json!({}))).await?;
    assert_eq!(code, 201);
    let warnings: Vec<&str> = headers
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(
        warnings,
        vec!["299 - \"image \\\"app:v1\\\" is old\"", "299 - \"second\""]
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_delete_sends_the_old_object() -> anyhow::Result<()> {
    let c = common::api_only().await?;
    let server = Webhook::local(|review| {
        if review["request"]["oldObject"]["metadata"]["labels"]["keep"] == "yes" {
            deny(403, "kept")
        } else {
            json!({"allowed": true})
        }
    })
    .await?;
    register(
        &c,
        "ValidatingWebhookConfiguration",
        "deletes",
        vec![
            hook("deletes.bosun.test")
                .url(&server, "/")
                .rules(&["DELETE"], &["configmaps"])
                .build(),
        ],
    )
    .await?;
    let path = "/api/v1/namespaces/default/configmaps";
    for (name, keep) in [("keep", "yes"), ("drop", "no")] {
        http(
            &c,
            "POST",
            path,
            Some(json!({"metadata": {"name": name, "labels": {"keep": keep}}})),
        )
        .await?;
    }
    let (code, _, out) = http(&c, "DELETE", &format!("{path}/keep"), None).await?;
    assert_eq!(code, 403, "{out}");
    let (code, _, _) = http(&c, "GET", &format!("{path}/keep"), None).await?;
    assert_eq!(code, 200, "a refused delete deletes nothing");
    let (code, _, out) = http(&c, "DELETE", &format!("{path}/drop"), None).await?;
    assert_eq!(code, 200, "{out}");
    let reviews = server.reviews();
    assert_eq!(reviews.len(), 2);
    assert_eq!(reviews[0]["operation"], "DELETE");
    assert_eq!(reviews[0]["object"], Value::Null);
    assert_eq!(reviews[0]["oldObject"]["metadata"]["name"], "keep");
    assert_eq!(reviews[0]["options"]["kind"], "DeleteOptions");
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn webhook_configurations_are_validated_defaulted_and_never_admitted() -> anyhow::Result<()> {
    let c = common::api_only().await?;
    let bad = hook("short.name")
        .client(json!({"url": "http://example.com/x"}))
        .set("sideEffects", json!("Some"))
        .set("timeoutSeconds", json!(0))
        .build();
    let (code, _, out) = http(
        &c,
        "POST",
        &format!("{CONFIGS}/validatingwebhookconfigurations"),
        Some(config("ValidatingWebhookConfiguration", "bad", vec![bad])),
    )
    .await?;
    assert_eq!(code, 422, "{out}");
    assert_eq!(out["reason"], "Invalid");
    let msg = out["message"].as_str().unwrap_or("");
    for part in [
        "ValidatingWebhookConfiguration.admissionregistration.k8s.io \"bad\" is invalid: [",
        "webhooks[0].name: Invalid value: \"short.name\": should be a domain with at least three segments separated by dots",
        "webhooks[0].sideEffects: Unsupported value: \"Some\": supported values: \"None\", \"NoneOnDryRun\"",
        "webhooks[0].timeoutSeconds: Invalid value: 0: the timeout value must be between 1 and 30 seconds",
        "webhooks[0].clientConfig.url: Invalid value: \"http\": 'https' is the only allowed URL scheme",
    ] {
        assert!(msg.contains(part), "{part} in {msg}");
    }

    // A webhook that refuses everything does not see webhook configurations.
    let server = Webhook::local(|_| deny(403, "no")).await?;
    let created = register(
        &c,
        "MutatingWebhookConfiguration",
        "deny-all",
        vec![
            hook("deny-all.bosun.test")
                .url(&server, "/")
                .rules(&["*"], &["*/*"])
                .build(),
        ],
    )
    .await?;
    let h = &created["webhooks"][0];
    assert_eq!(h["failurePolicy"], "Fail");
    assert_eq!(h["matchPolicy"], "Equivalent");
    assert_eq!(h["timeoutSeconds"], 10);
    assert_eq!(h["reinvocationPolicy"], "Never");
    assert_eq!(h["rules"][0]["scope"], "*");
    register(
        &c,
        "ValidatingWebhookConfiguration",
        "another",
        vec![hook("another.bosun.test").url(&server, "/").build()],
    )
    .await?;
    let (code, _, _) = http(
        &c,
        "GET",
        &format!("{CONFIGS}/mutatingwebhookconfigurations?watch=0"),
        None,
    )
    .await?;
    assert_eq!(code, 200);
    let (code, _, out) = http(
        &c,
        "DELETE",
        &format!("{CONFIGS}/mutatingwebhookconfigurations/deny-all"),
        None,
    )
    .await?;
    assert_eq!(code, 200, "{out}");
    assert!(server.requests().is_empty());
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn answers_kube_apiserver_refuses_are_errors() -> anyhow::Result<()> {
    let c = common::api_only().await?;
    let wrong_uid = Webhook::local(|_| json!({"allowed": true, "uid": "not-the-request"})).await?;
    let bad_patch =
        Webhook::local(|_| patch(json!([{"op": "remove", "path": "/spec/missing"}]))).await?;
    register(
        &c,
        "ValidatingWebhookConfiguration",
        "wrong-uid",
        vec![hook("wrong-uid.bosun.test").url(&wrong_uid, "/").build()],
    )
    .await?;
    let (code, _, out) = create_pod(&c, "default", pod("u1", json!({}))).await?;
    assert_eq!(code, 500, "{out}");
    let msg = out["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("failed calling webhook \"wrong-uid.bosun.test\": received invalid webhook response: expected response.uid="),
        "{msg}"
    );
    http(
        &c,
        "DELETE",
        &format!("{CONFIGS}/validatingwebhookconfigurations/wrong-uid"),
        None,
    )
    .await?;
    // A patch that does not apply is an internal error whatever the failure policy.
    register(
        &c,
        "MutatingWebhookConfiguration",
        "bad-patch",
        vec![
            hook("bad-patch.bosun.test")
                .url(&bad_patch, "/")
                .set("failurePolicy", json!("Ignore"))
                .build(),
        ],
    )
    .await?;
    let (code, _, out) = create_pod(&c, "default", pod("u2", json!({}))).await?;
    assert_eq!(code, 500, "{out}");
    assert!(
        out["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("Internal error occurred: "),
        "{out}"
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn equivalent_versions_of_a_custom_resource_match_by_default() -> anyhow::Result<()> {
    let c = common::api_only().await?;
    let schema = json!({"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}});
    let (code, _, out) = http(
        &c,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        Some(json!({
            "metadata": {"name": "widgets.bosun.test"},
            "spec": {
                "group": "bosun.test",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [
                    {"name": "v1", "served": true, "storage": true, "schema": schema},
                    {"name": "v2", "served": true, "storage": false, "schema": schema},
                ],
            },
        })),
    )
    .await?;
    assert_eq!(code, 201, "{out}");
    let equivalent = Webhook::local(|_| {
        patch(json!([{"op": "add", "path": "/metadata/labels", "value": {"seen": "v1"}}]))
    })
    .await?;
    let exact = Webhook::local(|_| json!({"allowed": true})).await?;
    let v1_only = |name: &str, server: &Webhook| {
        hook(name)
            .url(server, "/")
            .set(
                "rules",
                json!([{"operations": ["CREATE"], "apiGroups": ["bosun.test"], "apiVersions": ["v1"], "resources": ["widgets"]}]),
            )
    };
    register(
        &c,
        "MutatingWebhookConfiguration",
        "widgets",
        vec![
            v1_only("equivalent.bosun.test", &equivalent).build(),
            v1_only("exact.bosun.test", &exact)
                .set("matchPolicy", json!("Exact"))
                .build(),
        ],
    )
    .await?;
    let (code, _, out) = http(
        &c,
        "POST",
        "/apis/bosun.test/v2/namespaces/default/widgets",
        Some(json!({"apiVersion": "bosun.test/v2", "kind": "Widget", "metadata": {"name": "w"}})),
    )
    .await?;
    assert_eq!(code, 201, "{out}");
    assert_eq!(out["apiVersion"], "bosun.test/v2");
    assert_eq!(out["metadata"]["labels"]["seen"], "v1");
    let r = &equivalent.reviews()[0];
    assert_eq!(
        r["kind"],
        json!({"group": "bosun.test", "version": "v1", "kind": "Widget"})
    );
    assert_eq!(r["resource"]["version"], "v1");
    assert_eq!(r["requestKind"]["version"], "v2");
    assert_eq!(r["requestResource"]["version"], "v2");
    assert_eq!(r["object"]["apiVersion"], "bosun.test/v1");
    assert!(exact.requests().is_empty(), "matchPolicy Exact");
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn evictions_and_scale_changes_are_admitted_as_their_subresources() -> anyhow::Result<()> {
    let c = common::api_only().await?;
    let server = Webhook::local(|review| {
        let r = &review["request"];
        if r["subResource"] == "eviction" || r["object"]["spec"]["replicas"].as_i64() > Some(5) {
            deny(403, "not now")
        } else {
            json!({"allowed": true})
        }
    })
    .await?;
    register(
        &c,
        "ValidatingWebhookConfiguration",
        "subresources",
        vec![
            hook("subresources.bosun.test")
                .url(&server, "/")
                .rules(
                    &["CREATE", "UPDATE"],
                    &["pods/eviction", "deployments/scale"],
                )
                .build(),
        ],
    )
    .await?;
    create_pod(&c, "default", pod("e1", json!({}))).await?;
    let (code, _, out) = http(
        &c,
        "POST",
        "/api/v1/namespaces/default/pods/e1/eviction",
        Some(json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "e1"}})),
    )
    .await?;
    assert_eq!(code, 403, "{out}");
    let (code, _, _) = http(&c, "GET", "/api/v1/namespaces/default/pods/e1", None).await?;
    assert_eq!(code, 200, "a refused eviction deletes nothing");

    let labels = json!({"app": "web"});
    let (code, _, out) = http(
        &c,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        Some(json!({
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": "app:v1"}]}},
            },
        })),
    )
    .await?;
    assert_eq!(code, 201, "{out}");
    let scale = "/apis/apps/v1/namespaces/default/deployments/web/scale";
    let (code, _, out) = http(&c, "PATCH", scale, Some(json!({"spec": {"replicas": 9}}))).await?;
    assert_eq!(code, 403, "{out}");
    let (code, _, out) = http(&c, "PATCH", scale, Some(json!({"spec": {"replicas": 3}}))).await?;
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["spec"]["replicas"], 3);
    let reviews = server.reviews();
    assert_eq!(reviews.len(), 3);
    assert_eq!(
        reviews[0]["kind"],
        json!({"group": "policy", "version": "v1", "kind": "Eviction"})
    );
    assert_eq!(reviews[0]["resource"]["resource"], "pods");
    assert_eq!(
        reviews[1]["kind"],
        json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
    );
    assert_eq!(reviews[1]["subResource"], "scale");
    assert_eq!(reviews[1]["oldObject"]["spec"]["replicas"], 1);
    c.shutdown().await;
    Ok(())
}

async fn kubectl(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let mut cmd = std::process::Command::new(KUBECTL);
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    Ok(tokio::task::spawn_blocking(move || cmd.output()).await??)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_prints_denials_and_warnings() -> anyhow::Result<()> {
    if !Path::new(KUBECTL).exists() {
        println!("skipping: {KUBECTL} not found");
        return Ok(());
    }
    let c = common::api_only().await?;
    let server = Webhook::local(|review| {
        let mut r = require_team(review);
        r["warnings"] = json!(["teams are reviewed weekly"]);
        r
    })
    .await?;
    register(
        &c,
        "ValidatingWebhookConfiguration",
        "require-team",
        vec![hook("require-team.bosun.test").url(&server, "/").build()],
    )
    .await?;
    let kc = c.kubeconfig_path().to_path_buf();
    let manifest = kc.with_file_name("pod.yaml");
    std::fs::write(&manifest, serde_yaml::to_string(&pod("k1", json!({})))?)?;
    let out = kubectl(&kc, &["create", "-f", &manifest.to_string_lossy()]).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("admission webhook \"require-team.bosun.test\" denied the request: pods need a team label"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Warning: teams are reviewed weekly"),
        "{stderr}"
    );
    std::fs::write(
        &manifest,
        serde_yaml::to_string(&pod("k2", json!({"team": "a"})))?,
    )?;
    let out = kubectl(&kc, &["create", "-f", &manifest.to_string_lossy()]).await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pod/k2 created"));
    c.shutdown().await;
    Ok(())
}

/// A cluster whose simulated controllers run, for the pods they create.
async fn with_controllers() -> anyhow::Result<Cluster> {
    common::with(bosun_cluster::Config {
        nodes: 2,
        sim: bosun_cluster::sim::Config {
            speed: 10.0,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
}

/// A Deployment, ReplicaSet or StatefulSet of `replicas` pods labelled `app: NAME`.
fn workload(kind: &str, name: &str, replicas: u32) -> Value {
    let mut w = json!({
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "app:v1"}]},
            },
        },
    });
    if kind == "StatefulSet" {
        w["spec"]["serviceName"] = json!(name);
    }
    w
}

async fn create_workload(c: &Cluster, kind: &str, name: &str, replicas: u32) -> anyhow::Result<()> {
    let plural = format!("{}s", kind.to_lowercase());
    let (code, _, out) = http(
        c,
        "POST",
        &format!("/apis/apps/v1/namespaces/default/{plural}"),
        Some(workload(kind, name, replicas)),
    )
    .await?;
    anyhow::ensure!(code == 201, "{kind} {name}: {code} {out}");
    Ok(())
}

/// The pods labelled `app: APP` in `default`.
async fn pods_of(c: &Cluster, app: &str) -> anyhow::Result<Vec<Value>> {
    let (code, _, out) = http(
        c,
        "GET",
        &format!("/api/v1/namespaces/default/pods?labelSelector=app%3D{app}"),
        None,
    )
    .await?;
    anyhow::ensure!(code == 200, "{code} {out}");
    Ok(out["items"].as_array().cloned().unwrap_or_default())
}

/// The Warning Events `reason` on the object named `name` in `default`.
async fn events_on(c: &Cluster, name: &str, reason: &str) -> anyhow::Result<Vec<Value>> {
    let (code, _, out) = http(c, "GET", "/api/v1/namespaces/default/events", None).await?;
    anyhow::ensure!(code == 200, "{code} {out}");
    Ok(out["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["name"] == name && e["reason"] == reason)
        .cloned()
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_the_controllers_create_go_through_mutating_webhooks() -> anyhow::Result<()> {
    let c = with_controllers().await?;
    let server = Webhook::local(|_| {
        patch(json!([{"op": "add", "path": "/metadata/labels/injected", "value": "sidecar"}]))
    })
    .await?;
    register(
        &c,
        "MutatingWebhookConfiguration",
        "injector",
        vec![hook("injector.bosun.test").url(&server, "/inject").build()],
    )
    .await?;
    create_workload(&c, "Deployment", "web", 2).await?;
    create_workload(&c, "StatefulSet", "db", 2).await?;
    for (app, n) in [("web", 2), ("db", 2)] {
        let pods = common::eventually(30, || async {
            let pods = pods_of(&c, app).await.ok()?;
            (pods.len() == n).then_some(pods)
        })
        .await?;
        for p in &pods {
            assert_eq!(
                p["metadata"]["labels"]["injected"], "sidecar",
                "{app}: {}",
                p["metadata"]
            );
        }
    }
    let (_, _, db1) = http(&c, "GET", "/api/v1/namespaces/default/pods/db-1", None).await?;
    assert_eq!(db1["metadata"]["labels"]["injected"], "sidecar");

    let reviews = server.reviews();
    let by = |kind: &str| {
        reviews
            .iter()
            .filter(|r| r["object"]["metadata"]["ownerReferences"][0]["kind"] == kind)
            .collect::<Vec<_>>()
    };
    let (from_rs, from_sts) = (by("ReplicaSet"), by("StatefulSet"));
    assert_eq!(from_rs.len(), 2, "one call per pod of the ReplicaSet");
    assert_eq!(from_sts.len(), 2, "one call per pod of the StatefulSet");
    for (reviews, sa) in [
        (&from_rs, "replicaset-controller"),
        (&from_sts, "statefulset-controller"),
    ] {
        for r in reviews {
            assert_eq!(r["operation"], "CREATE");
            assert_eq!(r["namespace"], "default");
            assert_eq!(
                r["userInfo"]["username"],
                format!("system:serviceaccount:kube-system:{sa}")
            );
            assert_eq!(
                r["userInfo"]["groups"],
                json!([
                    "system:serviceaccounts",
                    "system:serviceaccounts:kube-system",
                    "system:authenticated"
                ])
            );
        }
    }
    assert_eq!(from_sts[0]["name"], "db-0");
    assert!(
        from_rs[0]["object"]["metadata"]["generateName"]
            .as_str()
            .is_some_and(|g| g.starts_with("web-")),
        "{}",
        from_rs[0]["object"]["metadata"]
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_controller_pod_is_a_failed_create_retried_with_backoff() -> anyhow::Result<()> {
    let c = with_controllers().await?;
    let allow = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let allowed = allow.clone();
    let server = Webhook::local(move |_| {
        if allowed.load(std::sync::atomic::Ordering::SeqCst) {
            json!({"allowed": true})
        } else {
            deny(403, "not yet")
        }
    })
    .await?;
    register(
        &c,
        "ValidatingWebhookConfiguration",
        "gate",
        vec![hook("gate.bosun.test").url(&server, "/gate").build()],
    )
    .await?;
    create_workload(&c, "ReplicaSet", "gated", 3).await?;
    create_workload(&c, "StatefulSet", "gated-db", 1).await?;

    // Retried: the Event is counted again.
    let rs_events = common::eventually(30, || async {
        let events = events_on(&c, "gated", "FailedCreate").await.ok()?;
        events
            .iter()
            .any(|e| e["count"].as_i64() >= Some(2))
            .then_some(events)
    })
    .await?;
    assert_eq!(rs_events.len(), 1, "repeats are counted on one Event");
    let e = &rs_events[0];
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["involvedObject"]["kind"], "ReplicaSet");
    assert_eq!(e["source"]["component"], "replicaset-controller");
    let message = e["message"].as_str().unwrap_or("");
    assert!(message.starts_with("Error creating: "), "{message}");
    assert!(
        message.ends_with("admission webhook \"gate.bosun.test\" denied the request: not yet"),
        "{message}"
    );
    let sts_events = common::eventually(30, || async {
        let events = events_on(&c, "gated-db", "FailedCreate").await.ok()?;
        (!events.is_empty()).then_some(events)
    })
    .await?;
    let message = sts_events[0]["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with("create Pod gated-db-0 in StatefulSet gated-db failed error: ")
            && message.ends_with("denied the request: not yet"),
        "{message}"
    );
    assert_eq!(
        sts_events[0]["source"]["component"],
        "statefulset-controller"
    );
    assert!(
        pods_of(&c, "gated").await?.is_empty(),
        "no pod while denied"
    );
    assert!(
        pods_of(&c, "gated-db").await?.is_empty(),
        "no pod while denied"
    );

    // Backoff: a refused owner is not retried on every change of the cluster (its own
    // Events are changes), and one refusal stops its creates for the pass (slow start).
    let before = server.requests().len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = server.requests().len() - before;
    assert!(
        calls < 40,
        "{calls} webhook calls in a second: retried without backoff"
    );

    allow.store(true, std::sync::atomic::Ordering::SeqCst);
    common::eventually(40, || async {
        let rs = pods_of(&c, "gated").await.ok()?;
        let sts = pods_of(&c, "gated-db").await.ok()?;
        (rs.len() == 3 && sts.len() == 1).then_some(())
    })
    .await?;
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn connections_to_a_webhook_are_kept_alive_and_replaced_once_closed() -> anyhow::Result<()> {
    let c = common::api_only().await?;
    let server = Webhook::local(|_| json!({"allowed": true})).await?;
    register(
        &c,
        "ValidatingWebhookConfiguration",
        "kept",
        vec![hook("kept.bosun.test").url(&server, "/").build()],
    )
    .await?;
    for i in 0..5 {
        let (code, _, out) = create_pod(&c, "default", pod(&format!("k{i}"), json!({}))).await?;
        assert_eq!(code, 201, "{out}");
    }
    assert_eq!(server.requests().len(), 5);
    assert_eq!(server.connections(), 1, "one connection for every call");

    // A server that closes its connections: the next call opens a new one.
    let closing = Webhook::start_closing(
        &["127.0.0.1"],
        Duration::ZERO,
        Some(Duration::from_millis(200)),
        |_| json!({"allowed": true}),
    )
    .await?;
    register(
        &c,
        "ValidatingWebhookConfiguration",
        "closing",
        vec![hook("closing.bosun.test").url(&closing, "/").build()],
    )
    .await?;
    let (code, _, out) = create_pod(&c, "default", pod("c1", json!({}))).await?;
    assert_eq!(code, 201, "{out}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (code, _, out) = create_pod(&c, "default", pod("c2", json!({}))).await?;
    assert_eq!(code, 201, "a closed connection is not reused: {out}");
    assert_eq!(closing.requests().len(), 2);
    assert_eq!(closing.connections(), 2);
    assert_eq!(
        server.connections(),
        1,
        "the first server's connection is still used"
    );
    c.shutdown().await;
    Ok(())
}
