//! The OpenAPI v3 and v2 documents: their shapes as kube-apiserver's, `kubectl explain`
//! of built-in and custom kinds, and `kubectl apply --validate=strict` (kubectl parts
//! skipped when kubectl is missing).

mod common;

use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const KUBECTL: &str = "/usr/bin/kubectl";

const WIDGET_CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        description: A widget.
        properties:
          spec:
            type: object
            description: What the widget should be.
            properties:
              size: {type: integer, description: How big the widget is.}
              color: {type: string, enum: [red, blue]}
";

/// One HTTP/1.1 exchange: status, headers (lower-case names) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> anyhow::Result<Value> {
        Ok(serde_json::from_str(&self.body)?)
    }
}

/// A GET with extra headers, over a fresh connection (the server speaks plain HTTP).
async fn get(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Answer> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let raw = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.write_all(req.as_bytes())?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        Ok(out)
    })
    .await??;
    let text = String::from_utf8(raw)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status line: {head}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    // Bodies are small enough to come unchunked or in chunks; only JSON bodies are read.
    let body = if text.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

async fn kubectl(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let mut cmd = Command::new(KUBECTL);
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Creates the Widget CRD through the API and waits until its documents list it.
async fn install_widgets(c: &bosun_cluster::Cluster) -> anyhow::Result<()> {
    let client = c.client().await?;
    let crd: Value = serde_yaml::from_str(WIDGET_CRD)?;
    common::raw(
        &client,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "application/json",
        serde_json::to_vec(&crd)?,
    )
    .await?;
    let started = Instant::now();
    loop {
        let index = get(c.addr(), "/openapi/v3", &[]).await?.json()?;
        if index["paths"].get("apis/example.com/v1").is_some() {
            return Ok(());
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "{index}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3_index_and_documents_have_kube_apiserver_shapes() -> anyhow::Result<()> {
    let c = common::api_only().await?;
    install_widgets(&c).await?;
    let index = get(c.addr(), "/openapi/v3", &[]).await?;
    assert_eq!(index.status, 200);
    assert_eq!(index.header("content-type"), Some("application/json"));
    let index = index.json()?;
    let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (path, hash) = url.split_once("?hash=").unwrap_or((&url, ""));
    assert_eq!(path, "/openapi/v3/apis/apps/v1", "{index}");
    assert_eq!(hash.len(), 128, "SHA-512 in hex: {url}");
    assert!(index["paths"]["api/v1"].is_object(), "{index}");

    // The current hash: cacheable for good, its ETag the hash.
    let doc = get(c.addr(), &url, &[("Accept", "application/json")]).await?;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.header("etag"), Some(format!("\"{hash}\"").as_str()));
    assert_eq!(doc.header("cache-control"), Some("public, immutable"));
    let doc = doc.json()?;
    assert_eq!(doc["openapi"], "3.0.0");
    let schemas = &doc["components"]["schemas"];
    let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deployment["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    assert_eq!(
        deployment["properties"]["spec"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
    );
    assert!(
        schemas["io.k8s.api.apps.v1.DeploymentStrategy"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("replace existing pods")),
        "descriptions are carried"
    );
    assert!(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
    // kubectl's --validate probe: the PATCH operation takes fieldValidation.
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert!(
        patch["parameters"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == "fieldValidation")),
        "{patch}"
    );

    // A stale hash is redirected to the current one; a matching ETag is not resent.
    let stale = get(c.addr(), "/openapi/v3/apis/apps/v1?hash=0123", &[]).await?;
    assert_eq!(stale.status, 301);
    assert_eq!(stale.header("location"), Some(url.as_str()));
    let again = get(
        c.addr(),
        "/openapi/v3/apis/apps/v1",
        &[("If-None-Match", &format!("\"{hash}\""))],
    )
    .await?;
    assert_eq!(again.status, 304);
    // Only JSON is spoken.
    let pb = get(
        c.addr(),
        "/openapi/v3/apis/apps/v1",
        &[(
            "Accept",
            "application/com.github.proto-openapi.spec.v3@v1.0+protobuf",
        )],
    )
    .await?;
    assert_eq!(pb.status, 406);
    assert_eq!(
        get(c.addr(), "/openapi/v3/apis/nope.io/v1", &[])
            .await?
            .status,
        404
    );

    // A CRD's version: its schema under the reversed group, as apiextensions names it.
    let crd = get(c.addr(), "/openapi/v3/apis/example.com/v1", &[])
        .await?
        .json()?;
    let widget = &crd["components"]["schemas"]["com.example.v1.Widget"];
    assert_eq!(widget["description"], "A widget.");
    assert_eq!(
        widget["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "example.com", "kind": "Widget", "version": "v1"}])
    );
    assert_eq!(
        widget["properties"]["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert_eq!(
        widget["properties"]["spec"]["properties"]["color"]["enum"][1],
        "blue"
    );
    assert!(
        crd["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object()
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_is_swagger_with_definitions_in_json_only() -> anyhow::Result<()> {
    let c = common::api_only().await?;
    install_widgets(&c).await?;
    let doc = get(c.addr(), "/openapi/v2", &[("Accept", "application/json")]).await?;
    assert_eq!(doc.status, 200);
    assert!(doc.header("etag").is_some());
    let doc = doc.json()?;
    assert_eq!(doc["swagger"], "2.0");
    let defs = &doc["definitions"];
    assert_eq!(
        defs["io.k8s.api.core.v1.PodSpec"]["properties"]["securityContext"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.PodSecurityContext"
    );
    assert_eq!(
        defs["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"][0]["kind"],
        "Pod"
    );
    assert_eq!(
        defs["com.example.v1.Widget"]["properties"]["metadata"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert!(!doc.to_string().contains("#/components/schemas/"));
    // client-go asks for protobuf only: refused, so it falls back (see the kubectl test).
    let pb = get(
        c.addr(),
        "/openapi/v2",
        &[(
            "Accept",
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        )],
    )
    .await?;
    assert_eq!(pb.status, 406);
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_explains_builtin_and_custom_fields() -> anyhow::Result<()> {
    if !Path::new(KUBECTL).exists() {
        println!("skipping: {KUBECTL} not found");
        return Ok(());
    }
    let c = common::api_only().await?;
    let kc = c.kubeconfig_path().to_path_buf();
    let (ok, out, err) = kubectl(&kc, &["explain", "pod.spec.containers"]).await?;
    assert!(ok, "{err}");
    assert!(out.contains("FIELD: containers <[]Container>"), "{out}");
    assert!(
        out.contains("List of containers belonging to the pod."),
        "{out}"
    );
    assert!(out.contains("imagePullPolicy\t<string>"), "{out}");
    let (ok, out, err) = kubectl(&kc, &["explain", "deployment.spec.strategy"]).await?;
    assert!(ok, "{err}");
    assert!(out.contains("GROUP:      apps"), "{out}");
    assert!(
        out.contains("rollingUpdate\t<RollingUpdateDeployment>"),
        "{out}"
    );

    let crd = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds/sidecarset.yaml");
    let (ok, _, err) = kubectl(&kc, &["apply", "-f", &crd.display().to_string()]).await?;
    assert!(ok, "{err}");
    let started = Instant::now();
    let out = loop {
        let (ok, out, err) = kubectl(&kc, &["explain", "sidecarset.spec"]).await?;
        if ok {
            break out;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "{err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(out.contains("KIND:       SidecarSet"), "{out}");
    assert!(out.contains("FIELD: spec <Object>"), "{out}");
    assert!(
        out.contains("Sidecar containers injected into the pods"),
        "{out}"
    );
    assert!(out.contains("containers\t<[]Object>"), "{out}");
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_validate_strict_refuses_unknown_fields() -> anyhow::Result<()> {
    if !Path::new(KUBECTL).exists() {
        println!("skipping: {KUBECTL} not found");
        return Ok(());
    }
    let c = common::api_only().await?;
    install_widgets(&c).await?;
    let kc = c.kubeconfig_path().to_path_buf();
    let dir = kc.parent().map(Path::to_path_buf).unwrap_or_default();
    let deployment = dir.join("d.yaml");
    std::fs::write(
        &deployment,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: default}\n\
         spec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n\
         \x20   spec:\n      containers: [{name: c, image: i, imagePolicy: x}]\n",
    )?;
    let d = deployment.display().to_string();
    let (ok, _, err) = kubectl(&kc, &["apply", "--validate=strict", "-f", &d]).await?;
    assert!(!ok);
    // kube-apiserver's words, through kubectl (which leaves the check to the server).
    assert_eq!(
        err.trim(),
        "Error from server (BadRequest): error when creating \"".to_string()
            + &d
            + "\": Deployment in version \"v1\" cannot be handled as a Deployment: \
               strict decoding error: unknown field \"spec.template.spec.containers[0].imagePolicy\"",
    );
    // Warn: created without the field, with a warning.
    let (ok, _, err) = kubectl(&kc, &["apply", "--validate=warn", "-f", &d]).await?;
    assert!(ok, "{err}");
    assert!(
        err.contains("Warning: unknown field \"spec.template.spec.containers[0].imagePolicy\""),
        "{err}"
    );
    let (_, out, _) = kubectl(
        &kc,
        &[
            "get",
            "deployment",
            "d",
            "-o",
            "jsonpath={.spec.template.spec.containers[0]}",
        ],
    )
    .await?;
    assert!(!out.contains("imagePolicy"), "{out}");

    let widget = dir.join("w.yaml");
    std::fs::write(
        &widget,
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: default}\n\
         spec: {size: 1, bogus: 2}\n",
    )?;
    let w = widget.display().to_string();
    let (ok, _, err) = kubectl(&kc, &["apply", "--validate=strict", "-f", &w]).await?;
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "Error from server (BadRequest): error when creating \"".to_string()
            + &w
            + "\": Widget in version \"v1\" cannot be handled as a Widget: \
               strict decoding error: unknown field \"spec.bogus\"",
    );
    c.shutdown().await;
    Ok(())
}
