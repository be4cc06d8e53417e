//! Custom resources against their CRD's schema, compared with upstream: every case below
//! was sent to apiextensions-apiserver 1.36 (etcd-backed, kube-apiserver's CRD handler)
//! and its answer recorded here: status code, Status message, reason, details and causes,
//! the `Warning` headers, and for accepted writes the stored `spec` (pruned and
//! defaulted). The embedded cluster must give the same answers to the same requests.
//!
//! Upstream reports the errors of one object in Go map order, which varies from request
//! to request: messages with several errors are compared as sets of items, causes sorted.

mod common;

use common::api_only;
use http_body_util::BodyExt;
use serde_json::{Value, json};

/// A CRD that uses every schema keyword apiextensions validates.
const WIDGET_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.bosun.dev
spec:
  group: bosun.dev
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        required: [spec]
        properties:
          spec:
            type: object
            required: [name]
            properties:
              name: {type: string, minLength: 2, maxLength: 5, pattern: '^[a-z]+$'}
              count: {type: integer, minimum: 1, maximum: 10, multipleOf: 2}
              ratio: {type: number, minimum: 0, maximum: 1, exclusiveMinimum: true, exclusiveMaximum: true}
              flag: {type: boolean}
              mode: {type: string, enum: [a, b], default: a}
              tags: {type: array, items: {type: string}, minItems: 1, maxItems: 3, uniqueItems: false}
              ints: {type: array, items: {type: integer}, x-kubernetes-list-type: set}
              labels: {type: object, additionalProperties: {type: string}, minProperties: 1, maxProperties: 2}
              i32: {type: integer, format: int32}
              i64: {type: integer, format: int64}
              when: {type: string, format: date-time}
              day: {type: string, format: date}
              data: {type: string, format: byte}
              id: {type: string, format: uuid}
              mail: {type: string, format: email}
              host: {type: string, format: hostname}
              ip: {type: string, format: ipv4}
              ip6: {type: string, format: ipv6}
              cidr: {type: string, format: cidr}
              mac: {type: string, format: mac}
              uri: {type: string, format: uri}
              dur: {type: string, format: duration}
              dt2: {type: string, format: datetime}
              pw: {type: string, format: password}
              unk: {type: string, format: whatever}
              port: {x-kubernetes-int-or-string: true}
              portp:
                x-kubernetes-int-or-string: true
                anyOf: [{type: integer}, {type: string}]
              free: {type: object, x-kubernetes-preserve-unknown-fields: true}
              opt: {type: string, nullable: true}
              nonull: {type: string}
              emb:
                type: object
                x-kubernetes-embedded-resource: true
                x-kubernetes-preserve-unknown-fields: true
              choice:
                type: object
                properties:
                  x: {type: string}
                  q: {type: string}
                oneOf:
                - required: [x]
                - required: [q]
              any:
                type: object
                properties:
                  x: {type: string}
                  q: {type: string}
                anyOf:
                - required: [x]
                - required: [q]
              all:
                type: object
                properties:
                  x: {type: string}
                  q: {type: string}
                allOf:
                - required: [x]
                - required: [q]
              notx:
                type: object
                properties:
                  x: {type: string}
                  q: {type: string}
                not:
                  required: [x]
              nested:
                type: object
                properties:
                  inner:
                    type: object
                    default: {}
                    properties:
                      v: {type: integer, default: 7}
                      w: {type: string}
              defobj:
                type: object
                properties:
                  z: {type: string, default: zz}
              closed:
                type: object
                additionalProperties: false
              keyed:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [k]
                items:
                  type: object
                  properties:
                    k: {type: string, default: x}
                    v: {type: integer}
              items:
                type: array
                items:
                  type: object
                  required: [k]
                  properties:
                    k: {type: string}
                    v: {type: integer, default: 1}
          status:
            type: object
            properties:
              phase: {type: string, enum: [Ok, Bad]}
"#;

/// The Plugin CRD as Bosun installs it.
const PLUGIN_CRD: &str = include_str!("../../../deploy/crds/plugin.yaml");

/// One request, and upstream's answer to it.
struct Case {
    what: &'static str,
    method: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
    /// Sets `metadata.resourceVersion` to the stored one first (upstream requires it on PUT).
    resource_version: bool,
    code: u16,
    /// A Status (message, reason, details) or the written object's `spec` (and `status`).
    /// A message with `…` is compared before and after it.
    expect: &'static str,
    warnings: &'static [&'static str],
}

/// An answer: status code, `Warning` texts, body.
struct Answer {
    code: u16,
    warnings: Vec<String>,
    body: Value,
}

async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> anyhow::Result<Answer> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(kube::client::Body::from(body))?;
    let resp = client.send(req).await?;
    let code = resp.status().as_u16();
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| warning_text(&String::from_utf8_lossy(v.as_bytes())))
        .collect();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Answer {
        code,
        warnings,
        body,
    })
}

/// The text of `299 - "TEXT"`.
fn warning_text(header: &str) -> String {
    let quoted = header.strip_prefix("299 - ").unwrap_or(header);
    let inner = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(quoted);
    inner.replace("\\\"", "\"").replace("\\\\", "\\")
}

/// Whether two `NewInvalid` messages list the same errors (upstream's order varies).
fn same_message(actual: &str, expected: &str) -> bool {
    if actual == expected {
        return true;
    }
    if let Some((before, after)) = expected.split_once('…') {
        return actual.starts_with(before) && actual.ends_with(after);
    }
    let Some((head, list)) = expected.split_once(" is invalid: [") else {
        return false;
    };
    let Some(rest) = actual
        .strip_prefix(head)
        .and_then(|a| a.strip_prefix(" is invalid: ["))
    else {
        return false;
    };
    // Same length, and every expected item present: the same items.
    rest.len() == list.len()
        && expected_items(list)
            .iter()
            .all(|i| rest.contains(i.as_str()))
}

/// The items of `a, b, c]`, split where the next item starts with a field path.
fn expected_items(list: &str) -> Vec<String> {
    let list = list.strip_suffix(']').unwrap_or(list);
    let mut items: Vec<String> = Vec::new();
    for part in list.split(", ") {
        let starts_item = part.starts_with("<nil>: ")
            || part
                .split_once(": ")
                .is_some_and(|(f, _)| !f.contains(' ') && !f.contains('"') && !f.is_empty());
        match items.last_mut() {
            Some(last) if !starts_item => {
                last.push_str(", ");
                last.push_str(part);
            }
            _ => items.push(part.to_string()),
        }
    }
    items
}

fn sorted_causes(details: &Value) -> Vec<Value> {
    let mut causes: Vec<Value> = details
        .get("causes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    causes.sort_by_key(|c| c.to_string());
    causes
}

fn same_cause_message(actual: &str, expected: &str) -> bool {
    match expected.split_once('…') {
        Some((before, after)) => actual.starts_with(before) && actual.ends_with(after),
        None => actual == expected,
    }
}

fn check(case: &Case, got: &Answer) -> Result<(), String> {
    let expect: Value = serde_json::from_str(case.expect).map_err(|e| e.to_string())?;
    if got.code != case.code {
        return Err(format!(
            "code {} (want {}): {}",
            got.code, case.code, got.body
        ));
    }
    let mut warnings = got.warnings.clone();
    warnings.sort();
    let mut want_warnings: Vec<String> = case.warnings.iter().map(|w| w.to_string()).collect();
    want_warnings.sort();
    if warnings != want_warnings {
        return Err(format!("warnings {warnings:?} (want {want_warnings:?})"));
    }
    if let Some(message) = expect.get("message").and_then(Value::as_str) {
        let actual = got.body["message"].as_str().unwrap_or("");
        if !same_message(actual, message) {
            return Err(format!("message\n  got:  {actual}\n  want: {message}"));
        }
        if got.body.get("reason") != expect.get("reason") {
            return Err(format!(
                "reason {:?} (want {:?})",
                got.body.get("reason"),
                expect.get("reason")
            ));
        }
        let (details, want) = (&got.body["details"], &expect["details"]);
        for k in ["name", "group", "kind"] {
            if details.get(k) != want.get(k) {
                return Err(format!(
                    "details.{k} {:?} (want {:?})",
                    details.get(k),
                    want.get(k)
                ));
            }
        }
        let (causes, want_causes) = (sorted_causes(details), sorted_causes(want));
        let same = causes.len() == want_causes.len()
            && causes.iter().zip(&want_causes).all(|(c, w)| {
                c["reason"] == w["reason"]
                    && c["field"] == w["field"]
                    && same_cause_message(
                        c["message"].as_str().unwrap_or(""),
                        w["message"].as_str().unwrap_or(""),
                    )
            });
        if !same {
            return Err(format!(
                "causes\n  got:  {}\n  want: {}",
                Value::Array(causes),
                Value::Array(want_causes)
            ));
        }
    } else {
        for k in ["spec", "status"] {
            if let Some(want) = expect.get(k)
                && got.body.get(k).unwrap_or(&Value::Null) != want
            {
                return Err(format!("{k} {} (want {want})", got.body[k]));
            }
        }
    }
    Ok(())
}

async fn install(client: &kube::Client, yaml: &str) -> anyhow::Result<Answer> {
    let crd: Value = serde_yaml::from_str(yaml)?;
    let a = send(
        client,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "application/json",
        serde_json::to_vec(&crd)?,
    )
    .await?;
    anyhow::ensure!(a.code == 201, "CRD not created: {}", a.body);
    Ok(a)
}

/// Sends the cases in order; the differences from upstream's answers.
async fn run(client: &kube::Client, cases: &[Case]) -> anyhow::Result<Vec<String>> {
    let mut failures = Vec::new();
    for case in cases {
        let mut body = case.body.as_bytes().to_vec();
        if case.resource_version {
            let path = case.path.split('?').next().unwrap_or("");
            let current = send(client, "GET", path, "application/json", Vec::new()).await?;
            let mut b: Value = serde_json::from_slice(&body)?;
            b["metadata"]["resourceVersion"] = current.body["metadata"]["resourceVersion"].clone();
            body = serde_json::to_vec(&b)?;
        }
        let got = send(client, case.method, case.path, case.content_type, body).await?;
        if let Err(why) = check(case, &got) {
            failures.push(format!("{}: {why}", case.what));
        }
    }
    Ok(failures)
}

#[tokio::test]
async fn custom_resources_are_validated_as_upstream() -> anyhow::Result<()> {
    let c = api_only().await?;
    let client = c.client().await?;
    // Upstream installs Bosun's CRD without a warning (it warns about formats it does not
    // know, as the cases below show).
    let plugin = install(&client, PLUGIN_CRD).await?;
    assert_eq!(plugin.warnings, Vec::<String>::new());
    install(&client, WIDGET_CRD).await?;
    let failures = run(&client, CASES).await?;
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from upstream:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
    c.shutdown().await;
    Ok(())
}

/// A CRD whose schema the test then tightens (see [`RATCHET`]).
const GIZMO_CRD: &str = r##"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"gizmos.bosun.dev"},"spec":{"group":"bosun.dev","scope":"Namespaced","names":{"plural":"gizmos","kind":"Gizmo"},"versions":[{"name":"v1","served":true,"storage":true,"subresources":{"status":{}},"schema":{"openAPIV3Schema":{"type":"object","properties":{"spec":{"type":"object","properties":{"name":{"type":"string"},"count":{"type":"integer"},"tags":{"type":"array","items":{"type":"string"}},"old":{"type":"string","format":"whatever"}}},"status":{"type":"object","properties":{"phase":{"type":"string"}}}}}}}]}}"##;

#[tokio::test]
async fn tightened_schemas_ratchet_and_defaults_apply_on_read() -> anyhow::Result<()> {
    let c = api_only().await?;
    let client = c.client().await?;
    let gizmo = install(&client, GIZMO_CRD).await?;
    assert_eq!(gizmo.warnings, vec!["unrecognized format \"whatever\""]);
    let failures = run(&client, RATCHET).await?;
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from upstream:\n{}",
        failures.len(),
        RATCHET.len(),
        failures.join("\n")
    );
    c.shutdown().await;
    Ok(())
}

/// The Plugin of the issue: two sources (and, first, an unknown field too).
const TWO_SOURCES: &str = "apiVersion: bosun.dev/v1alpha1
kind: Plugin
metadata:
  name: kx
  namespace: default
spec:
  world: controller
  source:
    file: {path: /p/a.wasm}
    configMap: {name: c, key: k, sha256: s}
";

/// kubectl (which sends `fieldValidation=Strict`) prints what upstream's answers make it
/// print. Skipped when kubectl is missing.
#[tokio::test]
async fn kubectl_reports_schema_errors_as_with_upstream() -> anyhow::Result<()> {
    const KUBECTL: &str = "/usr/bin/kubectl";
    if !std::path::Path::new(KUBECTL).exists() {
        eprintln!("skipped: no {KUBECTL}");
        return Ok(());
    }
    let c = api_only().await?;
    let client = c.client().await?;
    install(&client, PLUGIN_CRD).await?;
    let dir = tempfile::tempdir()?;
    let kubectl = |args: Vec<String>| {
        let kc = c.kubeconfig_path().to_path_buf();
        async move {
            let mut cmd = std::process::Command::new(KUBECTL);
            cmd.arg("--kubeconfig").arg(kc).args(&args);
            let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
            anyhow::Ok((
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ))
        }
    };
    let extra = dir.path().join("extra.yaml");
    std::fs::write(
        &extra,
        TWO_SOURCES.replace("  world:", "  extra: 1\n  world:"),
    )?;
    let two = dir.path().join("two.yaml");
    std::fs::write(&two, TWO_SOURCES)?;
    let file = |p: &std::path::Path| p.display().to_string();
    let (ok, err) = kubectl(vec!["apply".into(), "-f".into(), file(&extra)]).await?;
    assert!(!ok);
    assert_eq!(
        err,
        format!(
            "Error from server (BadRequest): error when creating \"{}\": Plugin in version \"v1alpha1\" cannot be handled as a Plugin: strict decoding error: unknown field \"spec.extra\"",
            file(&extra)
        )
    );
    let oneof = "The Plugin \"kx\" is invalid: <nil>: Invalid value: \"\": \"spec.source\" must validate one and only one schema (oneOf). Found 2 valid alternatives";
    for args in [
        vec!["apply", "-f"],
        vec!["apply", "--server-side", "-f"],
        vec!["apply", "--validate=false", "-f"],
        vec!["create", "-f"],
    ] {
        let mut args: Vec<String> = args.into_iter().map(str::to_string).collect();
        args.push(file(&two));
        let (ok, err) = kubectl(args.clone()).await?;
        assert!(!ok, "{args:?}");
        assert_eq!(err, oneof, "{args:?}");
    }
    c.shutdown().await;
    Ok(())
}

/// A request over plain HTTP/1.1, read to the end: kube's client refuses answers with
/// more than 100 headers, which upstream sends when it warns about many fields.
async fn send_raw(c: &bosun_cluster::Cluster, path: &str, body: &[u8]) -> anyhow::Result<Answer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(c.addr()).await?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        c.addr(),
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body).await?;
    let mut out = Vec::new();
    conn.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let warnings = lines
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case("warning"))
        .map(|(_, v)| warning_text(v.trim()))
        .collect();
    Ok(Answer {
        code,
        warnings,
        body: serde_json::from_str(rest).unwrap_or(Value::Null),
    })
}

/// Upstream caps the warnings of one answer at 4096 characters (then cuts each to 256):
/// for a thousand unknown fields it sent 103 warnings, the unknown paths in sorted order.
#[tokio::test]
async fn many_warnings_are_capped_as_upstream() -> anyhow::Result<()> {
    let c = api_only().await?;
    let client = c.client().await?;
    install(&client, PLUGIN_CRD).await?;
    let permissions: Vec<Value> = (0..1000)
        .map(|i| json!({"apiVersion": "v1", "kind": format!("K{i}"), "verbs": ["read"], "zz": 1}))
        .collect();
    let body = json!({"apiVersion": "bosun.dev/v1alpha1", "kind": "Plugin",
        "metadata": {"name": "big"},
        "spec": {"world": "controller", "source": {"file": {"path": "/a"}}, "permissions": permissions}});
    let got = send_raw(
        &c,
        "/apis/bosun.dev/v1alpha1/namespaces/default/plugins?dryRun=All",
        &serde_json::to_vec(&body)?,
    )
    .await?;
    assert_eq!(got.code, 201, "{}", got.body);
    assert_eq!(got.warnings.len(), 103);
    assert_eq!(got.warnings[0], "unknown field \"spec.permissions[0].zz\"");
    assert_eq!(
        got.warnings[1],
        "unknown field \"spec.permissions[100].zz\""
    );
    assert_eq!(
        got.warnings[102],
        "unknown field \"spec.permissions[192].zz\""
    );
    c.shutdown().await;
    Ok(())
}

#[test]
fn messages_compare_as_sets() {
    let want = "K \"x\" is invalid: [a.b: Unsupported value: \"c\": supported values: \"a\", \"b\", <nil>: Invalid value: \"\": \"a\" must validate, d: Required value]";
    let got = "K \"x\" is invalid: [d: Required value, <nil>: Invalid value: \"\": \"a\" must validate, a.b: Unsupported value: \"c\": supported values: \"a\", \"b\"]";
    assert!(same_message(got, want));
    assert!(!same_message(
        "K \"x\" is invalid: [d: Required value, e: Required value]",
        want
    ));
    assert_eq!(expected_items("a.b: x, \"y\", <nil>: z]").len(), 2);
}

/// Upstream's answers (apiextensions-apiserver 1.36.4), in the order they were sent.
const CASES: &[Case] = &[
    Case {
        what: "plugin with two sources is refused on create",
        method: "POST",
        path: "/apis/bosun.dev/v1alpha1/namespaces/default/plugins",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1alpha1","kind":"Plugin","metadata":{"name":"two"},"spec":{"world":"controller","source":{"file":{"path":"/p/a.wasm"},"configMap":{"name":"c","key":"k","sha256":"s"}}}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Plugin.bosun.dev \"two\" is invalid: <nil>: Invalid value: \"\": \"spec.source\" must validate one and only one schema (oneOf). Found 2 valid alternatives","reason":"Invalid","details":{"name":"two","group":"bosun.dev","kind":"Plugin","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"\": \"spec.source\" must validate one and only one schema (oneOf). Found 2 valid alternatives","field":"<nil>"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "plugin without a source kind is refused",
        method: "POST",
        path: "/apis/bosun.dev/v1alpha1/namespaces/default/plugins",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1alpha1","kind":"Plugin","metadata":{"name":"none"},"spec":{"world":"controller","source":{}}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Plugin.bosun.dev \"none\" is invalid: [<nil>: Invalid value: \"\": \"spec.source\" must validate one and only one schema (oneOf). Found none valid, spec.source.url: Required value]","reason":"Invalid","details":{"name":"none","group":"bosun.dev","kind":"Plugin","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"\": \"spec.source\" must validate one and only one schema (oneOf). Found none valid","field":"<nil>"},{"reason":"FieldValueRequired","message":"Required value","field":"spec.source.url"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "plugin world and source path are checked",
        method: "POST",
        path: "/apis/bosun.dev/v1alpha1/namespaces/default/plugins",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1alpha1","kind":"Plugin","metadata":{"name":"bad"},"spec":{"world":"ctl","source":{"file":{}}}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Plugin.bosun.dev \"bad\" is invalid: [spec.source.file.path: Required value, spec.world: Unsupported value: \"ctl\": supported values: \"controller\", \"admission\", \"pod-agent\"]","reason":"Invalid","details":{"name":"bad","group":"bosun.dev","kind":"Plugin","causes":[{"reason":"FieldValueRequired","message":"Required value","field":"spec.source.file.path"},{"reason":"FieldValueNotSupported","message":"Unsupported value: \"ctl\": supported values: \"controller\", \"admission\", \"pod-agent\"","field":"spec.world"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "plugin without spec is refused",
        method: "POST",
        path: "/apis/bosun.dev/v1alpha1/namespaces/default/plugins",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1alpha1","kind":"Plugin","metadata":{"name":"nospec"}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Plugin.bosun.dev \"nospec\" is invalid: spec: Required value","reason":"Invalid","details":{"name":"nospec","group":"bosun.dev","kind":"Plugin","causes":[{"reason":"FieldValueRequired","message":"Required value","field":"spec"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "a valid plugin is created with its defaults",
        method: "POST",
        path: "/apis/bosun.dev/v1alpha1/namespaces/default/plugins",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1alpha1","kind":"Plugin","metadata":{"name":"one"},"spec":{"world":"controller","source":{"file":{"path":"/p/a.wasm"}}}}"##,
        resource_version: false,
        code: 201,
        expect: r##"{"spec":{"dryRun":false,"permissions":[],"rollout":{"strategy":"direct"},"source":{"file":{"path":"/p/a.wasm"}},"world":"controller"}}"##,
        warnings: &[],
    },
    Case {
        what: "plugin with two sources is refused on update",
        method: "PUT",
        path: "/apis/bosun.dev/v1alpha1/namespaces/default/plugins/one",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1alpha1","kind":"Plugin","metadata":{"name":"one"},"spec":{"world":"controller","source":{"file":{"path":"/p/a.wasm"},"configMap":{"name":"c","key":"k","sha256":"s"}}}}"##,
        resource_version: true,
        code: 422,
        expect: r##"{"message":"Plugin.bosun.dev \"one\" is invalid: <nil>: Invalid value: \"\": \"spec.source\" must validate one and only one schema (oneOf). Found 2 valid alternatives","reason":"Invalid","details":{"name":"one","group":"bosun.dev","kind":"Plugin","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"\": \"spec.source\" must validate one and only one schema (oneOf). Found 2 valid alternatives","field":"<nil>"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "plugin with two sources is refused on merge patch",
        method: "PATCH",
        path: "/apis/bosun.dev/v1alpha1/namespaces/default/plugins/one",
        content_type: "application/merge-patch+json",
        body: r##"{"spec":{"source":{"configMap":{"name":"c","key":"k","sha256":"s"}}}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Plugin.bosun.dev \"one\" is invalid: <nil>: Invalid value: \"\": \"spec.source\" must validate one and only one schema (oneOf). Found 2 valid alternatives","reason":"Invalid","details":{"name":"one","group":"bosun.dev","kind":"Plugin","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"\": \"spec.source\" must validate one and only one schema (oneOf). Found 2 valid alternatives","field":"<nil>"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "plugin with two sources is refused on json patch",
        method: "PATCH",
        path: "/apis/bosun.dev/v1alpha1/namespaces/default/plugins/one",
        content_type: "application/json-patch+json",
        body: r##"[{"op":"add","path":"/spec/source/configMap","value":{"name":"c","key":"k","sha256":"s"}}]"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Plugin.bosun.dev \"one\" is invalid: <nil>: Invalid value: \"\": \"spec.source\" must validate one and only one schema (oneOf). Found 2 valid alternatives","reason":"Invalid","details":{"name":"one","group":"bosun.dev","kind":"Plugin","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"\": \"spec.source\" must validate one and only one schema (oneOf). Found 2 valid alternatives","field":"<nil>"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "plugin with two sources is refused on server-side apply",
        method: "PATCH",
        path: "/apis/bosun.dev/v1alpha1/namespaces/default/plugins/one?fieldManager=tester&force=true",
        content_type: "application/apply-patch+yaml",
        body: r##"{"apiVersion":"bosun.dev/v1alpha1","kind":"Plugin","metadata":{"name":"one"},"spec":{"world":"controller","source":{"file":{"path":"/p/a.wasm"},"configMap":{"name":"c","key":"k","sha256":"s"}}}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Plugin.bosun.dev \"one\" is invalid: <nil>: Invalid value: \"\": \"spec.source\" must validate one and only one schema (oneOf). Found 2 valid alternatives","reason":"Invalid","details":{"name":"one","group":"bosun.dev","kind":"Plugin","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"\": \"spec.source\" must validate one and only one schema (oneOf). Found 2 valid alternatives","field":"<nil>"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "plugin with two sources is refused on server-side apply create",
        method: "PATCH",
        path: "/apis/bosun.dev/v1alpha1/namespaces/default/plugins/fresh?fieldManager=tester",
        content_type: "application/apply-patch+yaml",
        body: r##"{"apiVersion":"bosun.dev/v1alpha1","kind":"Plugin","metadata":{"name":"fresh"},"spec":{"world":"controller","source":{"file":{"path":"/p/a.wasm"},"configMap":{"name":"c","key":"k","sha256":"s"}}}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Plugin.bosun.dev \"fresh\" is invalid: <nil>: Invalid value: \"\": \"spec.source\" must validate one and only one schema (oneOf). Found 2 valid alternatives","reason":"Invalid","details":{"name":"fresh","group":"bosun.dev","kind":"Plugin","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"\": \"spec.source\" must validate one and only one schema (oneOf). Found 2 valid alternatives","field":"<nil>"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "every keyword fails at once",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"w2"},"spec":{"name":"ABCDEFG","count":3,"ratio":1,"flag":"yes","mode":"c","tags":[],"labels":{},"i32":3000000000,"i64":1.5,"when":"yesterday","day":"2020-13-01","data":"!!","id":"nope","mail":"x","host":"-a-","ip":"1.2.3","ip6":"zz","cidr":"1.2.3.4","mac":"zz","uri":"::","dur":"forever","dt2":"x","unk":"x","port":1.5,"portp":true,"opt":null,"nonull":null,"emb":{},"choice":{"x":"1","q":"2"},"any":{},"all":{"x":"1"},"notx":{"x":"1"},"closed":{"a":1},"items":[{"v":2}]}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"w2\" is invalid: [spec.cidr: Invalid value: \"1.2.3.4\": spec.cidr in body must be of type cidr: \"1.2.3.4\", spec.dt2: Invalid value: \"x\": spec.dt2 in body must be of type datetime: \"x\", spec.mode: Unsupported value: \"c\": supported values: \"a\", \"b\", spec.port: Invalid value: \"number\": spec.port in body must be of type integer,string: \"number\", spec.ip6: Invalid value: \"zz\": spec.ip6 in body must be of type ipv6: \"zz\", <nil>: Invalid value: \"\": \"spec.choice\" must validate one and only one schema (oneOf). Found 2 valid alternatives, spec.i64: Invalid value: \"float64\": spec.i64 in body must be of type int64: \"float64\", <nil>: Invalid value: \"\": Checked value must be of type integer with format int64 in spec.i64, spec.dur: Invalid value: \"forever\": spec.dur in body must be of type duration: \"forever\", spec.mac: Invalid value: \"zz\": spec.mac in body must be of type mac: \"zz\", spec.mail: Invalid value: \"x\": spec.mail in body must be of type email: \"x\", spec.host: Invalid value: \"-a-\": spec.host in body must be of type hostname: \"-a-\", <nil>: Invalid value: \"\": \"spec.any\" must validate at least one schema (anyOf), spec.any.x: Required value, spec.items[0].k: Required value, spec.flag: Invalid value: \"string\": spec.flag in body must be of type boolean: \"string\", <nil>: Invalid value: \"\": \"spec.notx\" must not validate the schema (not), <nil>: Invalid value: \"\": Checked value must be of type integer with format int32 in spec.i32, spec.name: Too long: may not be more than 5 bytes, spec.uri: Invalid value: \"::\": spec.uri in body must be of type uri: \"::\", spec.when: Invalid value: \"yesterday\": spec.when in body must be of type date-time: \"yesterday\", spec.count: Invalid value: 3: spec.count in body should be a multiple of 2, spec.id: Invalid value: \"nope\": spec.id in body must be of type uuid: \"nope\", spec.data: Invalid value: \"!!\": spec.data in body must be of type byte: \"!!\", spec.tags: Invalid value: 0: spec.tags in body should have at least 1 items, spec.ip: Invalid value: \"1.2.3\": spec.ip in body must be of type ipv4: \"1.2.3\", spec.day: Invalid value: \"2020-13-01\": spec.day in body must be of type date: \"2020-13-01\", spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1, spec.portp: Invalid value: \"boolean\": spec.portp in body must be of type integer,string: \"boolean\", <nil>: Invalid value: \"\": \"spec.portp\" must validate at least one schema (anyOf), spec.portp: Invalid value: \"boolean\": spec.portp in body must be of type integer: \"boolean\", spec.all.q: Required value, <nil>: Invalid value: \"\": \"spec.all\" must validate all the schemas (allOf), spec.labels: Invalid value: 0: spec.labels in body should have at least 1 properties, spec.closed: Invalid value: \"a\": spec.closed.a in body is a forbidden property, spec.emb.apiVersion: Required value, spec.emb.kind: Required value]","reason":"Invalid","details":{"name":"w2","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"1.2.3.4\": spec.cidr in body must be of type cidr: \"1.2.3.4\"","field":"spec.cidr"},{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"x\": spec.dt2 in body must be of type datetime: \"x\"","field":"spec.dt2"},{"reason":"FieldValueNotSupported","message":"Unsupported value: \"c\": supported values: \"a\", \"b\"","field":"spec.mode"},{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"number\": spec.port in body must be of type integer,string: \"number\"","field":"spec.port"},{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"zz\": spec.ip6 in body must be of type ipv6: \"zz\"","field":"spec.ip6"},{"reason":"FieldValueInvalid","message":"Invalid value: \"\": \"spec.choice\" must validate one and only one schema (oneOf). Found 2 valid alternatives","field":"<nil>"},{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"float64\": spec.i64 in body must be of type int64: \"float64\"","field":"spec.i64"},{"reason":"FieldValueInvalid","message":"Invalid value: \"\": Checked value must be of type integer with format int64 in spec.i64","field":"<nil>"},{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"forever\": spec.dur in body must be of type duration: \"forever\"","field":"spec.dur"},{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"zz\": spec.mac in body must be of type mac: \"zz\"","field":"spec.mac"},{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"x\": spec.mail in body must be of type email: \"x\"","field":"spec.mail"},{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"-a-\": spec.host in body must be of type hostname: \"-a-\"","field":"spec.host"},{"reason":"FieldValueInvalid","message":"Invalid value: \"\": \"spec.any\" must validate at least one schema (anyOf)","field":"<nil>"},{"reason":"FieldValueRequired","message":"Required value","field":"spec.any.x"},{"reason":"FieldValueRequired","message":"Required value","field":"spec.items[0].k"},{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"string\": spec.flag in body must be of type boolean: \"string\"","field":"spec.flag"},{"reason":"FieldValueInvalid","message":"Invalid value: \"\": \"spec.notx\" must not validate the schema (not)","field":"<nil>"},{"reason":"FieldValueInvalid","message":"Invalid value: \"\": Checked value must be of type integer with format int32 in spec.i32","field":"<nil>"},{"reason":"FieldValueTooLong","message":"Too long: may not be more than 5 bytes","field":"spec.name"},{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"::\": spec.uri in body must be of type uri: \"::\"","field":"spec.uri"},{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"yesterday\": spec.when in body must be of type date-time: \"yesterday\"","field":"spec.when"},{"reason":"FieldValueInvalid","message":"Invalid value: 3: spec.count in body should be a multiple of 2","field":"spec.count"},{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"nope\": spec.id in body must be of type uuid: \"nope\"","field":"spec.id"},{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"!!\": spec.data in body must be of type byte: \"!!\"","field":"spec.data"},{"reason":"FieldValueInvalid","message":"Invalid value: 0: spec.tags in body should have at least 1 items","field":"spec.tags"},{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"1.2.3\": spec.ip in body must be of type ipv4: \"1.2.3\"","field":"spec.ip"},{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"2020-13-01\": spec.day in body must be of type date: \"2020-13-01\"","field":"spec.day"},{"reason":"FieldValueInvalid","message":"Invalid value: 1: spec.ratio in body should be less than 1","field":"spec.ratio"},{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"boolean\": spec.portp in body must be of type integer,string: \"boolean\"","field":"spec.portp"},{"reason":"FieldValueInvalid","message":"Invalid value: \"\": \"spec.portp\" must validate at least one schema (anyOf)","field":"<nil>"},{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"boolean\": spec.portp in body must be of type integer: \"boolean\"","field":"spec.portp"},{"reason":"FieldValueRequired","message":"Required value","field":"spec.all.q"},{"reason":"FieldValueInvalid","message":"Invalid value: \"\": \"spec.all\" must validate all the schemas (allOf)","field":"<nil>"},{"reason":"FieldValueInvalid","message":"Invalid value: 0: spec.labels in body should have at least 1 properties","field":"spec.labels"},{"reason":"FieldValueInvalid","message":"Invalid value: \"a\": spec.closed.a in body is a forbidden property","field":"spec.closed"},{"reason":"FieldValueRequired","message":"Required value","field":"spec.emb.apiVersion"},{"reason":"FieldValueRequired","message":"Required value","field":"spec.emb.kind"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "minLength",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"t"},"spec":{"name":"a"}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"t\" is invalid: spec.name: Invalid value: \"a\": spec.name in body should be at least 2 chars long","reason":"Invalid","details":{"name":"t","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"a\": spec.name in body should be at least 2 chars long","field":"spec.name"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "pattern",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"t"},"spec":{"name":"ab1"}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"t\" is invalid: spec.name: Invalid value: \"ab1\": spec.name in body should match '^[a-z]+$'","reason":"Invalid","details":{"name":"t","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"ab1\": spec.name in body should match '^[a-z]+$'","field":"spec.name"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "maxItems and maxProperties",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"t"},"spec":{"name":"ab","tags":["a","b","c","d"],"labels":{"a":"1","b":"2","c":"3"}}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"t\" is invalid: [spec.tags: Too many: 4: must have at most 3 items, spec.labels: Too many: 3: must have at most 2 items]","reason":"Invalid","details":{"name":"t","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueTooMany","message":"Too many: 4: must have at most 3 items","field":"spec.tags"},{"reason":"FieldValueTooMany","message":"Too many: 3: must have at most 2 items","field":"spec.labels"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "types and exclusive maximum",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"t"},"spec":{"name":"ab","count":"3","ratio":1.5,"i32":1.0,"i64":2.0}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"t\" is invalid: [spec.count: Invalid value: \"string\": spec.count in body must be of type integer: \"string\", spec.ratio: Invalid value: 1.5: spec.ratio in body should be less than 1]","reason":"Invalid","details":{"name":"t","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"string\": spec.count in body must be of type integer: \"string\"","field":"spec.count"},{"reason":"FieldValueInvalid","message":"Invalid value: 1.5: spec.ratio in body should be less than 1","field":"spec.ratio"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "minimum and exclusive minimum",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"t"},"spec":{"name":"ab","count":0,"ratio":0}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"t\" is invalid: [spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0, spec.count: Invalid value: 0: spec.count in body should be greater than or equal to 1]","reason":"Invalid","details":{"name":"t","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: 0: spec.ratio in body should be greater than 0","field":"spec.ratio"},{"reason":"FieldValueInvalid","message":"Invalid value: 0: spec.count in body should be greater than or equal to 1","field":"spec.count"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "a float for an integer",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"t"},"spec":{"name":"ab","count":12.5}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"t\" is invalid: [spec.count: Invalid value: \"number\": spec.count in body must be of type integer: \"number\", <nil>: Invalid value: \"\": Checked value must be of type integer (default format) in spec.count, spec.count: Invalid value: 12.5: spec.count in body should be a multiple of 2, spec.count: Invalid value: 12.5: spec.count in body should be less than or equal to 10]","reason":"Invalid","details":{"name":"t","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"number\": spec.count in body must be of type integer: \"number\"","field":"spec.count"},{"reason":"FieldValueInvalid","message":"Invalid value: \"\": Checked value must be of type integer (default format) in spec.count","field":"<nil>"},{"reason":"FieldValueInvalid","message":"Invalid value: 12.5: spec.count in body should be a multiple of 2","field":"spec.count"},{"reason":"FieldValueInvalid","message":"Invalid value: 12.5: spec.count in body should be less than or equal to 10","field":"spec.count"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "an integral float",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"t"},"spec":{"name":"ab","count":1e3}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"t\" is invalid: spec.count: Invalid value: 1000: spec.count in body should be less than or equal to 10","reason":"Invalid","details":{"name":"t","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: 1000: spec.count in body should be less than or equal to 10","field":"spec.count"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "a large float",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"t"},"spec":{"name":"ab","count":1e7}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"t\" is invalid: spec.count: Invalid value: 1e+07: spec.count in body should be less than or equal to 10","reason":"Invalid","details":{"name":"t","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: 1e+07: spec.count in body should be less than or equal to 10","field":"spec.count"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "a tiny float",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"t"},"spec":{"name":"ab","ratio":-0.000001}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"t\" is invalid: spec.ratio: Invalid value: -1e-06: spec.ratio in body should be greater than 0","reason":"Invalid","details":{"name":"t","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: -1e-06: spec.ratio in body should be greater than 0","field":"spec.ratio"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "a huge integer",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"t"},"spec":{"name":"ab","count":99999999999999999999}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"t\" is invalid: [spec.count: Invalid value: \"number\": spec.count in body must be of type integer: \"number\", <nil>: Invalid value: \"\": Checked value must be of type integer (default format) in spec.count, spec.count: Invalid value: 1e+20: spec.count in body should be a multiple of 2, spec.count: Invalid value: 1e+20: spec.count in body should be less than or equal to 10]","reason":"Invalid","details":{"name":"t","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"number\": spec.count in body must be of type integer: \"number\"","field":"spec.count"},{"reason":"FieldValueInvalid","message":"Invalid value: \"\": Checked value must be of type integer (default format) in spec.count","field":"<nil>"},{"reason":"FieldValueInvalid","message":"Invalid value: 1e+20: spec.count in body should be a multiple of 2","field":"spec.count"},{"reason":"FieldValueInvalid","message":"Invalid value: 1e+20: spec.count in body should be less than or equal to 10","field":"spec.count"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "set duplicates",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"t"},"spec":{"name":"ab","ints":[1,2,1,3,3]}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"t\" is invalid: [spec.ints[2]: Duplicate value: 1, spec.ints[4]: Duplicate value: 3]","reason":"Invalid","details":{"name":"t","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueDuplicate","message":"Duplicate value: 1","field":"spec.ints[2]"},{"reason":"FieldValueDuplicate","message":"Duplicate value: 3","field":"spec.ints[4]"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "map list duplicates",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"t"},"spec":{"name":"ab","keyed":[{"k":"a","v":1},{"k":"a","v":2},{"v":3},{"v":4}]}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"t\" is invalid: [spec.keyed[1]: Duplicate value: {\"k\":\"a\"}, spec.keyed[3]: Duplicate value: {\"k\":\"x\"}]","reason":"Invalid","details":{"name":"t","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueDuplicate","message":"Duplicate value: {\"k\":\"a\"}","field":"spec.keyed[1]"},{"reason":"FieldValueDuplicate","message":"Duplicate value: {\"k\":\"x\"}","field":"spec.keyed[3]"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "nulls in arrays and maps",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"t"},"spec":{"name":"ab","tags":[null,"a"],"labels":{"a":null}}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"t\" is invalid: [spec.tags[0]: Invalid value: \"null\": spec.tags[0] in body must be of type string: \"null\", spec.labels: Invalid value: 0: spec.labels in body should have at least 1 properties]","reason":"Invalid","details":{"name":"t","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"null\": spec.tags[0] in body must be of type string: \"null\"","field":"spec.tags[0]"},{"reason":"FieldValueInvalid","message":"Invalid value: 0: spec.labels in body should have at least 1 properties","field":"spec.labels"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "enum with another type",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"t"},"spec":{"name":"ab","mode":1}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"t\" is invalid: [spec.mode: Invalid value: \"integer\": spec.mode in body must be of type string: \"integer\", spec.mode: Unsupported value: 1: supported values: \"a\", \"b\"]","reason":"Invalid","details":{"name":"t","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"integer\": spec.mode in body must be of type string: \"integer\"","field":"spec.mode"},{"reason":"FieldValueNotSupported","message":"Unsupported value: 1: supported values: \"a\", \"b\"","field":"spec.mode"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "an object where a string goes",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"t"},"spec":{"name":"ab","mode":{"a":"<b>","z":1.0}}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"t\" is invalid: [spec.mode: Invalid value: \"object\": spec.mode in body must be of type string: \"object\", spec.mode: Unsupported value: {}: supported values: \"a\", \"b\"]","reason":"Invalid","details":{"name":"t","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"object\": spec.mode in body must be of type string: \"object\"","field":"spec.mode"},{"reason":"FieldValueNotSupported","message":"Unsupported value: {}: supported values: \"a\", \"b\"","field":"spec.mode"}]}}"##,
        warnings: &[
            "unknown field \"spec.mode.a\"",
            "unknown field \"spec.mode.z\"",
        ],
    },
    Case {
        what: "a number where a string goes",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"t"},"spec":{"name":5}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"t\" is invalid: spec.name: Invalid value: \"integer\": spec.name in body must be of type string: \"integer\"","reason":"Invalid","details":{"name":"t","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"integer\": spec.name in body must be of type string: \"integer\"","field":"spec.name"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "an array where the spec goes",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"t"},"spec":[]}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"t\" is invalid: spec: Invalid value: \"array\": spec in body must be of type object: \"array\"","reason":"Invalid","details":{"name":"t","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"array\": spec in body must be of type object: \"array\"","field":"spec"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "a null spec",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"t"},"spec":null}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"t\" is invalid: spec: Required value","reason":"Invalid","details":{"name":"t","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueRequired","message":"Required value","field":"spec"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "embedded resource kind and apiVersion",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"t"},"spec":{"name":"ab","emb":{"apiVersion":"a/b/c","kind":"Not_A_Kind"}}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"t\" is invalid: [spec.emb.apiVersion: Invalid value: \"a/b/c\": unexpected GroupVersion string: a/b/c, spec.emb.kind: Invalid value: \"Not_A_Kind\": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')]","reason":"Invalid","details":{"name":"t","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"a/b/c\": unexpected GroupVersion string: a/b/c","field":"spec.emb.apiVersion"},{"reason":"FieldValueInvalid","message":"Invalid value: \"Not_A_Kind\": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')","field":"spec.emb.kind"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "minProperties and additionalProperties false",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"t"},"spec":{"name":"ab","labels":{},"closed":{"x":"y"}}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"t\" is invalid: [spec.labels: Invalid value: 0: spec.labels in body should have at least 1 properties, spec.closed: Invalid value: \"x\": spec.closed.x in body is a forbidden property]","reason":"Invalid","details":{"name":"t","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: 0: spec.labels in body should have at least 1 properties","field":"spec.labels"},{"reason":"FieldValueInvalid","message":"Invalid value: \"x\": spec.closed.x in body is a forbidden property","field":"spec.closed"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "nested required in a list",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"t"},"spec":{"name":"ab","items":[{"k":"a"},{"v":2}]}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"t\" is invalid: spec.items[1].k: Required value","reason":"Invalid","details":{"name":"t","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueRequired","message":"Required value","field":"spec.items[1].k"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "nulls are dropped and defaults applied",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets?dryRun=All",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"d"},"spec":{"name":"ab","mode":null,"opt":null,"nonull":null,"nested":{"inner":null}}}"##,
        resource_version: false,
        code: 201,
        expect: r##"{"spec":{"mode":"a","name":"ab","nested":{"inner":{"v":7}},"opt":null}}"##,
        warnings: &[],
    },
    Case {
        what: "int-or-string, preserved and embedded fields are kept",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets?dryRun=All",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"d"},"spec":{"name":"ab","port":"x","portp":"abc","free":{"a":{"b":1}},"emb":{"apiVersion":"v1","kind":"X","metadata":{"name":"q"},"spec":{"a":1}}}}"##,
        resource_version: false,
        code: 201,
        expect: r##"{"spec":{"emb":{"apiVersion":"v1","kind":"X","metadata":{"name":"q"},"spec":{"a":1}},"free":{"a":{"b":1}},"mode":"a","name":"ab","port":"x","portp":"abc"}}"##,
        warnings: &[],
    },
    Case {
        what: "defaults in lists and nested objects",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets?dryRun=All",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"d"},"spec":{"name":"abc","nested":{},"items":[{"k":"a"}]}}"##,
        resource_version: false,
        code: 201,
        expect: r##"{"spec":{"items":[{"k":"a","v":1}],"mode":"a","name":"abc","nested":{"inner":{"v":7}}}}"##,
        warnings: &[],
    },
    Case {
        what: "unknown fields are refused with Strict",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets?fieldValidation=Strict",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"s1","foo":1},"spec":{"name":"abc","extra":1,"zz":{"a":1},"items":[{"k":"a","bad":2}]},"top":1}"##,
        resource_version: false,
        code: 400,
        expect: r##"{"message":"Widget in version \"v1\" cannot be handled as a Widget: strict decoding error: unknown field \"metadata.foo\", unknown field \"spec.extra\", unknown field \"spec.items[0].bad\", unknown field \"spec.zz\", unknown field \"top\"","reason":"BadRequest"}"##,
        warnings: &[],
    },
    Case {
        what: "unknown fields are warned about with Warn",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets?fieldValidation=Warn&dryRun=All",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"s1","foo":1},"spec":{"name":"abc","extra":1,"zz":{"a":1},"items":[{"k":"a","bad":2}]},"top":1}"##,
        resource_version: false,
        code: 201,
        expect: r##"{"spec":{"items":[{"k":"a","v":1}],"mode":"a","name":"abc"}}"##,
        warnings: &[
            "unknown field \"metadata.foo\"",
            "unknown field \"spec.extra\"",
            "unknown field \"spec.items[0].bad\"",
            "unknown field \"spec.zz\"",
            "unknown field \"top\"",
        ],
    },
    Case {
        what: "unknown fields are warned about by default",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets?dryRun=All",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"s1"},"spec":{"name":"abc","extra":1}}"##,
        resource_version: false,
        code: 201,
        expect: r##"{"spec":{"mode":"a","name":"abc"}}"##,
        warnings: &["unknown field \"spec.extra\""],
    },
    Case {
        what: "unknown fields are dropped silently with Ignore",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets?fieldValidation=Ignore&dryRun=All",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"s1"},"spec":{"name":"abc","extra":1}}"##,
        resource_version: false,
        code: 201,
        expect: r##"{"spec":{"mode":"a","name":"abc"}}"##,
        warnings: &[],
    },
    Case {
        what: "Strict refuses unknown fields before checking values",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets?fieldValidation=Strict",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"s1"},"spec":{"name":"ABC","extra":1}}"##,
        resource_version: false,
        code: 400,
        expect: r##"{"message":"Widget in version \"v1\" cannot be handled as a Widget: strict decoding error: unknown field \"spec.extra\"","reason":"BadRequest"}"##,
        warnings: &[],
    },
    Case {
        what: "fieldValidation values are checked",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets?fieldValidation=strict",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"s1"},"spec":{"name":"abc"}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"CreateOptions.meta.k8s.io \"\" is invalid: fieldValidation: Unsupported value: \"strict\": supported values: \"\", \"Ignore\", \"Strict\", \"Warn\"","reason":"Invalid","details":{"group":"meta.k8s.io","kind":"CreateOptions","causes":[{"reason":"FieldValueNotSupported","message":"Unsupported value: \"strict\": supported values: \"\", \"Ignore\", \"Strict\", \"Warn\"","field":"fieldValidation"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "a widget to patch",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"p1"},"spec":{"name":"abc"}}"##,
        resource_version: false,
        code: 201,
        expect: r##"{"spec":{"mode":"a","name":"abc"}}"##,
        warnings: &[],
    },
    Case {
        what: "unknown fields in a merge patch with Strict",
        method: "PATCH",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets/p1?fieldValidation=Strict",
        content_type: "application/merge-patch+json",
        body: r##"{"spec":{"extra":1,"count":2}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":" \"\" is invalid: patch: Invalid value: \"{\\\"apiVersion\\\":\\\"bosun.dev/v1\\\",\\\"kind\\\":\\\"Widget\\\",\\\"metadata\\\":{\u2026\": strict decoding error: unknown field \"spec.extra\"","reason":"Invalid","details":{"causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"{\\\"apiVersion\\\":\\\"bosun.dev/v1\\\",\\\"kind\\\":\\\"Widget\\\",\\\"metadata\\\":{\u2026\": strict decoding error: unknown field \"spec.extra\"","field":"patch"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "unknown fields in a merge patch with Warn",
        method: "PATCH",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets/p1?fieldValidation=Warn",
        content_type: "application/merge-patch+json",
        body: r##"{"spec":{"extra":1,"count":2}}"##,
        resource_version: false,
        code: 200,
        expect: r##"{"spec":{"count":2,"mode":"a","name":"abc"}}"##,
        warnings: &["unknown field \"spec.extra\""],
    },
    Case {
        what: "unknown fields in a json patch with Strict",
        method: "PATCH",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets/p1?fieldValidation=Strict",
        content_type: "application/json-patch+json",
        body: r##"[{"op":"add","path":"/spec/extra","value":1}]"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":" \"\" is invalid: patch: Invalid value: \"{\\\"apiVersion\\\":\\\"bosun.dev/v1\\\",\\\"kind\\\":\\\"Widget\\\",\\\"metadata\\\":{\u2026\": strict decoding error: unknown field \"spec.extra\"","reason":"Invalid","details":{"causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"{\\\"apiVersion\\\":\\\"bosun.dev/v1\\\",\\\"kind\\\":\\\"Widget\\\",\\\"metadata\\\":{\u2026\": strict decoding error: unknown field \"spec.extra\"","field":"patch"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "unknown fields in an update with Strict",
        method: "PUT",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets/p1?fieldValidation=Strict",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"p1"},"spec":{"name":"abc","extra":3}}"##,
        resource_version: true,
        code: 400,
        expect: r##"{"message":"Widget in version \"v1\" cannot be handled as a Widget: strict decoding error: unknown field \"spec.extra\"","reason":"BadRequest"}"##,
        warnings: &[],
    },
    Case {
        what: "unknown fields in server-side apply",
        method: "PATCH",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets/p1?fieldManager=tester&force=true&fieldValidation=Ignore",
        content_type: "application/apply-patch+yaml",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"p1","namespace":"default"},"spec":{"name":"abc","extra":1}}"##,
        resource_version: false,
        code: 500,
        expect: r##"{"message":"failed to create typed patch object (default/p1; bosun.dev/v1, Kind=Widget): .spec.extra: field not declared in schema"}"##,
        warnings: &[],
    },
    Case {
        what: "invalid values in a merge patch",
        method: "PATCH",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets/p1",
        content_type: "application/merge-patch+json",
        body: r##"{"spec":{"name":"ABC","count":3}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"p1\" is invalid: [spec.name: Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$', spec.count: Invalid value: 3: spec.count in body should be a multiple of 2]","reason":"Invalid","details":{"name":"p1","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'","field":"spec.name"},{"reason":"FieldValueInvalid","message":"Invalid value: 3: spec.count in body should be a multiple of 2","field":"spec.count"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "invalid values in server-side apply",
        method: "PATCH",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets/p1?fieldManager=tester&force=true",
        content_type: "application/apply-patch+yaml",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"p1"},"spec":{"name":"ABC"}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"p1\" is invalid: spec.name: Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'","reason":"Invalid","details":{"name":"p1","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'","field":"spec.name"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "status is checked through the status subresource",
        method: "PATCH",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets/p1/status",
        content_type: "application/merge-patch+json",
        body: r##"{"status":{"phase":"Nope","x":1}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"p1\" is invalid: status.phase: Unsupported value: \"Nope\": supported values: \"Ok\", \"Bad\"","reason":"Invalid","details":{"name":"p1","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueNotSupported","message":"Unsupported value: \"Nope\": supported values: \"Ok\", \"Bad\"","field":"status.phase"}]}}"##,
        warnings: &["unknown field \"status.x\""],
    },
    Case {
        what: "only status changes through the status subresource",
        method: "PATCH",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets/p1/status",
        content_type: "application/merge-patch+json",
        body: r##"{"status":{"phase":"Ok"},"spec":{"count":5}}"##,
        resource_version: false,
        code: 200,
        expect: r##"{"spec":{"count":2,"mode":"a","name":"abc"},"status":{"phase":"Ok"}}"##,
        warnings: &[],
    },
    Case {
        what: "a status of the wrong type",
        method: "PATCH",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets/p1/status",
        content_type: "application/merge-patch+json",
        body: r##"{"status":"bad"}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"p1\" is invalid: status: Invalid value: \"string\":  in body must be of type object: \"string\"","reason":"Invalid","details":{"name":"p1","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"string\":  in body must be of type object: \"string\"","field":"status"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "a CRD with an invalid pattern",
        method: "POST",
        path: "/apis/apiextensions.k8s.io/v1/customresourcedefinitions?dryRun=All",
        content_type: "application/json",
        body: r##"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"bads.bosun.dev"},"spec":{"group":"bosun.dev","scope":"Namespaced","names":{"plural":"bads","kind":"Bad"},"versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","properties":{"spec":{"type":"object","properties":{"a":{"type":"string","pattern":"(["}}}}}}}]}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"CustomResourceDefinition.apiextensions.k8s.io \"bads.bosun.dev\" is invalid: spec.validation.openAPIV3Schema.properties[spec].properties[a].pattern: Invalid value: \"([\": must be a valid regular expression, but isn't: error parsing regexp: missing closing ]: `[`","reason":"Invalid","details":{"name":"bads.bosun.dev","group":"apiextensions.k8s.io","kind":"CustomResourceDefinition","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"([\": must be a valid regular expression, but isn't: error parsing regexp: missing closing ]: `[`","field":"spec.validation.openAPIV3Schema.properties[spec].properties[a].pattern"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "a CRD with an unsupported regexp",
        method: "POST",
        path: "/apis/apiextensions.k8s.io/v1/customresourcedefinitions?dryRun=All",
        content_type: "application/json",
        body: r##"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"bads.bosun.dev"},"spec":{"group":"bosun.dev","scope":"Namespaced","names":{"plural":"bads","kind":"Bad"},"versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","properties":{"spec":{"type":"object","properties":{"a":{"type":"string","pattern":"^(?=a)"}}}}}}}]}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"CustomResourceDefinition.apiextensions.k8s.io \"bads.bosun.dev\" is invalid: spec.validation.openAPIV3Schema.properties[spec].properties[a].pattern: Invalid value: \"^(?=a)\": must be a valid regular expression, but isn't: error parsing regexp: invalid or unsupported Perl syntax: `(?=`","reason":"Invalid","details":{"name":"bads.bosun.dev","group":"apiextensions.k8s.io","kind":"CustomResourceDefinition","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"^(?=a)\": must be a valid regular expression, but isn't: error parsing regexp: invalid or unsupported Perl syntax: `(?=`","field":"spec.validation.openAPIV3Schema.properties[spec].properties[a].pattern"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "a CRD with an unknown type",
        method: "POST",
        path: "/apis/apiextensions.k8s.io/v1/customresourcedefinitions?dryRun=All",
        content_type: "application/json",
        body: r##"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"bads.bosun.dev"},"spec":{"group":"bosun.dev","scope":"Namespaced","names":{"plural":"bads","kind":"Bad"},"versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","properties":{"spec":{"type":"object","properties":{"a":{"type":"strin"}}}}}}}]}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"CustomResourceDefinition.apiextensions.k8s.io \"bads.bosun.dev\" is invalid: spec.validation.openAPIV3Schema.properties[spec].properties[a].type: Unsupported value: \"strin\": supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\"","reason":"Invalid","details":{"name":"bads.bosun.dev","group":"apiextensions.k8s.io","kind":"CustomResourceDefinition","causes":[{"reason":"FieldValueNotSupported","message":"Unsupported value: \"strin\": supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\"","field":"spec.validation.openAPIV3Schema.properties[spec].properties[a].type"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "a CRD with uniqueItems",
        method: "POST",
        path: "/apis/apiextensions.k8s.io/v1/customresourcedefinitions?dryRun=All",
        content_type: "application/json",
        body: r##"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"bads.bosun.dev"},"spec":{"group":"bosun.dev","scope":"Namespaced","names":{"plural":"bads","kind":"Bad"},"versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","properties":{"spec":{"type":"object","properties":{"a":{"type":"array","items":{"type":"string"},"uniqueItems":true}}}}}}}]}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"CustomResourceDefinition.apiextensions.k8s.io \"bads.bosun.dev\" is invalid: spec.validation.openAPIV3Schema.properties[spec].properties[a].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic","reason":"Invalid","details":{"name":"bads.bosun.dev","group":"apiextensions.k8s.io","kind":"CustomResourceDefinition","causes":[{"reason":"FieldValueForbidden","message":"Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic","field":"spec.validation.openAPIV3Schema.properties[spec].properties[a].uniqueItems"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "a CRD with a default of the wrong type",
        method: "POST",
        path: "/apis/apiextensions.k8s.io/v1/customresourcedefinitions?dryRun=All",
        content_type: "application/json",
        body: r##"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"bads.bosun.dev"},"spec":{"group":"bosun.dev","scope":"Namespaced","names":{"plural":"bads","kind":"Bad"},"versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","properties":{"spec":{"type":"object","properties":{"a":{"type":"string","default":5}}}}}}}]}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"CustomResourceDefinition.apiextensions.k8s.io \"bads.bosun.dev\" is invalid: spec.validation.openAPIV3Schema.properties[spec].properties[a].default: Invalid value: \"integer\":  in body must be of type string: \"integer\"","reason":"Invalid","details":{"name":"bads.bosun.dev","group":"apiextensions.k8s.io","kind":"CustomResourceDefinition","causes":[{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"integer\":  in body must be of type string: \"integer\"","field":"spec.validation.openAPIV3Schema.properties[spec].properties[a].default"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "a CRD with a default that fails its pattern",
        method: "POST",
        path: "/apis/apiextensions.k8s.io/v1/customresourcedefinitions?dryRun=All",
        content_type: "application/json",
        body: r##"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"bads.bosun.dev"},"spec":{"group":"bosun.dev","scope":"Namespaced","names":{"plural":"bads","kind":"Bad"},"versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","properties":{"spec":{"type":"object","properties":{"a":{"type":"string","default":"ABC","pattern":"^[a-z]*$"}}}}}}}]}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"CustomResourceDefinition.apiextensions.k8s.io \"bads.bosun.dev\" is invalid: spec.validation.openAPIV3Schema.properties[spec].properties[a].default: Invalid value: \"ABC\":  in body should match '^[a-z]*$'","reason":"Invalid","details":{"name":"bads.bosun.dev","group":"apiextensions.k8s.io","kind":"CustomResourceDefinition","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"ABC\":  in body should match '^[a-z]*$'","field":"spec.validation.openAPIV3Schema.properties[spec].properties[a].default"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "a CRD with an unknown format is accepted with a warning",
        method: "POST",
        path: "/apis/apiextensions.k8s.io/v1/customresourcedefinitions?dryRun=All",
        content_type: "application/json",
        body: r##"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"bads.bosun.dev"},"spec":{"group":"bosun.dev","scope":"Namespaced","names":{"plural":"bads","kind":"Bad"},"versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","properties":{"spec":{"type":"object","properties":{"a":{"type":"integer","format":"uint64"},"b":{"type":"string","format":"whatever"}}}}}}}]}}"##,
        resource_version: false,
        code: 201,
        expect: r##"{"spec":{"group":"bosun.dev","names":{"plural":"bads","singular":"bad","kind":"Bad","listKind":"BadList"},"scope":"Namespaced","versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","properties":{"spec":{"type":"object","properties":{"a":{"type":"integer","format":"uint64"},"b":{"type":"string","format":"whatever"}}}}}}}],"conversion":{"strategy":"None"}}}"##,
        warnings: &[
            "unrecognized format \"whatever\"",
            "unrecognized format \"uint64\"",
        ],
    },
    Case {
        what: "repeated fields are refused with Strict",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets?fieldValidation=Strict&dryRun=All",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"d1","name":"d1"},"spec":{"name":"abc","items":[{"k":"a","k":"b"}],"name":"abd"},"spec":{"name":"abc"}}"##,
        resource_version: false,
        code: 400,
        expect: r##"{"message":"Widget in version \"v1\" cannot be handled as a Widget: strict decoding error: duplicate field \"metadata.name\", duplicate field \"spec.items[0].k\", duplicate field \"spec.name\", duplicate field \"spec\"","reason":"BadRequest"}"##,
        warnings: &[],
    },
    Case {
        what: "repeated fields are warned about, the last value wins",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets?dryRun=All",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"d1"},"spec":{"name":"abc","extra":1,"name":"abd","items":[{"k":"a","k":"b"}]}}"##,
        resource_version: false,
        code: 201,
        expect: r##"{"spec":{"items":[{"k":"b","v":1}],"mode":"a","name":"abd"}}"##,
        warnings: &[
            "duplicate field \"spec.name\"",
            "duplicate field \"spec.items[0].k\"",
            "unknown field \"spec.extra\"",
        ],
    },
    Case {
        what: "the metadata of an embedded resource is an ObjectMeta",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets?dryRun=All",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"e1"},"spec":{"name":"ab","emb":{"apiVersion":"v1","kind":"X","metadata":{"name":"a/b%","zz":1},"spec":{"a":1}}}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Widget.bosun.dev \"e1\" is invalid: [spec.emb.metadata.name: Invalid value: \"a/b%\": may not contain '/', spec.emb.metadata.name: Invalid value: \"a/b%\": may not contain '%']","reason":"Invalid","details":{"name":"e1","group":"bosun.dev","kind":"Widget","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"a/b%\": may not contain '/'","field":"spec.emb.metadata.name"},{"reason":"FieldValueInvalid","message":"Invalid value: \"a/b%\": may not contain '%'","field":"spec.emb.metadata.name"}]}}"##,
        warnings: &["unknown field \"spec.emb.metadata.zz\""],
    },
    Case {
        what: "unknown fields of an embedded resource's metadata are dropped",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/widgets?dryRun=All",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Widget","metadata":{"name":"e1"},"spec":{"name":"ab","emb":{"apiVersion":"v1","kind":"X","metadata":{"name":"q","zz":1,"labels":{"a":"b"}},"spec":{"a":1}},"extra":2}}"##,
        resource_version: false,
        code: 201,
        expect: r##"{"spec":{"emb":{"apiVersion":"v1","kind":"X","metadata":{"labels":{"a":"b"},"name":"q"},"spec":{"a":1}},"mode":"a","name":"ab"}}"##,
        warnings: &[
            "unknown field \"spec.extra\"",
            "unknown field \"spec.emb.metadata.zz\"",
        ],
    },
];

/// Upstream's answers once the schema of a stored object is tightened: values an update
/// does not change are not checked again (CRD validation ratcheting; list items are not
/// correlated, so a changed list is checked whole), and reads apply new defaults.
const RATCHET: &[Case] = &[
    Case {
        what: "a gizmo is created",
        method: "POST",
        path: "/apis/bosun.dev/v1/namespaces/default/gizmos",
        content_type: "application/json",
        body: r##"{"apiVersion":"bosun.dev/v1","kind":"Gizmo","metadata":{"name":"g1"},"spec":{"name":"abcde","count":1,"tags":["x","yy"]},"status":{"phase":"Running"}}"##,
        resource_version: false,
        code: 201,
        expect: r##"{"spec":{"count":1,"name":"abcde","tags":["x","yy"]}}"##,
        warnings: &[],
    },
    Case {
        what: "its status is set",
        method: "PATCH",
        path: "/apis/bosun.dev/v1/namespaces/default/gizmos/g1/status",
        content_type: "application/merge-patch+json",
        body: r##"{"status":{"phase":"Running"}}"##,
        resource_version: false,
        code: 200,
        expect: r##"{"spec":{"count":1,"name":"abcde","tags":["x","yy"]},"status":{"phase":"Running"}}"##,
        warnings: &[],
    },
    Case {
        what: "the schema is tightened and gains a default",
        method: "PUT",
        path: "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gizmos.bosun.dev",
        content_type: "application/json",
        body: r##"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"gizmos.bosun.dev"},"spec":{"group":"bosun.dev","scope":"Namespaced","names":{"plural":"gizmos","kind":"Gizmo"},"versions":[{"name":"v1","served":true,"storage":true,"subresources":{"status":{}},"schema":{"openAPIV3Schema":{"type":"object","properties":{"spec":{"type":"object","properties":{"name":{"type":"string","maxLength":3},"count":{"type":"integer"},"tags":{"type":"array","items":{"type":"string","maxLength":1}},"old":{"type":"string","format":"whatever"},"new":{"type":"string","format":"fancy"},"mode":{"type":"string","default":"auto"}}},"status":{"type":"object","properties":{"phase":{"type":"string","enum":["Ok"]}}}}}}}]}}"##,
        resource_version: true,
        code: 200,
        expect: r##"{}"##,
        warnings: &["unrecognized format \"fancy\""],
    },
    Case {
        what: "a read applies the new default",
        method: "GET",
        path: "/apis/bosun.dev/v1/namespaces/default/gizmos/g1",
        content_type: "application/json",
        body: r##""##,
        resource_version: false,
        code: 200,
        expect: r##"{"spec":{"count":1,"mode":"auto","name":"abcde","tags":["x","yy"]},"status":{"phase":"Running"}}"##,
        warnings: &[],
    },
    Case {
        what: "an update that leaves the invalid name alone is accepted",
        method: "PATCH",
        path: "/apis/bosun.dev/v1/namespaces/default/gizmos/g1",
        content_type: "application/merge-patch+json",
        body: r##"{"spec":{"count":2}}"##,
        resource_version: false,
        code: 200,
        expect: r##"{"spec":{"count":2,"mode":"auto","name":"abcde","tags":["x","yy"]}}"##,
        warnings: &[],
    },
    Case {
        what: "changing the name is checked",
        method: "PATCH",
        path: "/apis/bosun.dev/v1/namespaces/default/gizmos/g1",
        content_type: "application/merge-patch+json",
        body: r##"{"spec":{"name":"abcd"}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Gizmo.bosun.dev \"g1\" is invalid: spec.name: Too long: may not be more than 3 bytes","reason":"Invalid","details":{"name":"g1","group":"bosun.dev","kind":"Gizmo","causes":[{"reason":"FieldValueTooLong","message":"Too long: may not be more than 3 bytes","field":"spec.name"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "list items do not ratchet: a changed list is checked whole",
        method: "PATCH",
        path: "/apis/bosun.dev/v1/namespaces/default/gizmos/g1",
        content_type: "application/json-patch+json",
        body: r##"[{"op":"add","path":"/spec/tags/-","value":"zz"}]"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Gizmo.bosun.dev \"g1\" is invalid: [spec.tags[1]: Too long: may not be more than 1 byte, spec.tags[2]: Too long: may not be more than 1 byte]","reason":"Invalid","details":{"name":"g1","group":"bosun.dev","kind":"Gizmo","causes":[{"reason":"FieldValueTooLong","message":"Too long: may not be more than 1 byte","field":"spec.tags[1]"},{"reason":"FieldValueTooLong","message":"Too long: may not be more than 1 byte","field":"spec.tags[2]"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "list items do not ratchet: replacing one item",
        method: "PATCH",
        path: "/apis/bosun.dev/v1/namespaces/default/gizmos/g1",
        content_type: "application/json-patch+json",
        body: r##"[{"op":"replace","path":"/spec/tags/0","value":"q"}]"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Gizmo.bosun.dev \"g1\" is invalid: spec.tags[1]: Too long: may not be more than 1 byte","reason":"Invalid","details":{"name":"g1","group":"bosun.dev","kind":"Gizmo","causes":[{"reason":"FieldValueTooLong","message":"Too long: may not be more than 1 byte","field":"spec.tags[1]"}]}}"##,
        warnings: &[],
    },
    Case {
        what: "an unchanged status ratchets",
        method: "PATCH",
        path: "/apis/bosun.dev/v1/namespaces/default/gizmos/g1/status",
        content_type: "application/merge-patch+json",
        body: r##"{"status":{"phase":"Running"}}"##,
        resource_version: false,
        code: 200,
        expect: r##"{"spec":{"count":2,"mode":"auto","name":"abcde","tags":["x","yy"]},"status":{"phase":"Running"}}"##,
        warnings: &[],
    },
    Case {
        what: "a changed status is checked",
        method: "PATCH",
        path: "/apis/bosun.dev/v1/namespaces/default/gizmos/g1/status",
        content_type: "application/merge-patch+json",
        body: r##"{"status":{"phase":"Runnin"}}"##,
        resource_version: false,
        code: 422,
        expect: r##"{"message":"Gizmo.bosun.dev \"g1\" is invalid: status.phase: Unsupported value: \"Runnin\": supported values: \"Ok\"","reason":"Invalid","details":{"name":"g1","group":"bosun.dev","kind":"Gizmo","causes":[{"reason":"FieldValueNotSupported","message":"Unsupported value: \"Runnin\": supported values: \"Ok\"","field":"status.phase"}]}}"##,
        warnings: &[],
    },
];
