//! Properties of the patch engine and of request decoding, on generated input: nothing a
//! client sends panics the server, and every refusal is a Kubernetes Status.
//!
//! Each property runs `PROPTEST_CASES` cases (256 by default, 64 for the ones that go
//! through HTTP); run more with
//! `PROPTEST_CASES=20000 cargo test -p bosun-cluster --test properties`. A failure prints
//! the smallest input found and records its seed next to this file
//! (`properties.proptest-regressions`).

mod common;

use bosun_cluster::patch::{self, PatchKind};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `PROPTEST_CASES`, or `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

/// Object keys the patch engine treats specially, and a few others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "metadata",
            "spec",
            "name",
            "containers",
            "ports",
            "containerPort",
            "port",
            "conditions",
            "type",
            "finalizers",
            "ownerReferences",
            "uid",
            "managedFields",
            "manager",
            "operation",
            "fieldsV1",
            "f:spec",
            "k:{\"name\":\"a\"}",
            "$patch",
            "$retainKeys",
            "$deleteFromPrimitiveList/finalizers",
            "$setElementOrder/containers",
        ])
        .prop_map(str::to_string),
        "[a-z]{1,3}",
    ]
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec!["a", "replace", "delete", "merge", "Apply", ""])
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A JSON pointer, often one that names something in a generated value.
fn pointer() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            key(),
            Just("0".to_string()),
            Just("1".to_string()),
            Just("-".to_string()),
            Just("18446744073709551616".to_string()),
            Just("~1".to_string()),
            Just("~".to_string()),
        ],
        0..4,
    )
    .prop_map(|segments| segments.iter().map(|s| format!("/{s}")).collect())
}

/// A JSON patch: operations with pointers, values and sometimes missing fields.
fn json_patch_ops() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        (
            prop::sample::select(vec![
                "add", "remove", "replace", "move", "copy", "test", "x",
            ]),
            pointer(),
            proptest::option::of(pointer()),
            proptest::option::of(json_value()),
        )
            .prop_map(|(op, path, from, value)| {
                let mut o = json!({"op": op, "path": path});
                if let Some(f) = from {
                    o["from"] = json!(f);
                }
                if let Some(v) = value {
                    o["value"] = v;
                }
                o
            }),
        0..5,
    )
    .prop_map(Value::Array)
}

/// An object-shaped current document (what the store holds).
fn current() -> impl Strategy<Value = Value> {
    (json_value(), json_value()).prop_map(|(spec, meta)| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "spec": spec})
    })
}

fn assert_refusal(e: &bosun_cluster::ApiError) -> Result<(), TestCaseError> {
    prop_assert!(
        (400..500).contains(&e.code) && !e.reason.is_empty(),
        "a refusal is a client error: {e}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(Config::with_cases(cases(256)))]

    #[test]
    fn merge_json_and_strategic_patches_never_panic(
        current in current(),
        merge in json_value(),
        ops in json_patch_ops(),
        bytes in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let merge_body = serde_json::to_vec(&merge).unwrap_or_default();
        // (kind, body, whether the body is an object: then so is the result)
        let bodies = [
            (PatchKind::Merge, merge_body.clone(), merge.is_object()),
            (PatchKind::Strategic, merge_body, merge.is_object()),
            (PatchKind::Json, serde_json::to_vec(&ops).unwrap_or_default(), false),
            (PatchKind::Merge, bytes.clone(), false),
            (PatchKind::Strategic, bytes.clone(), false),
            (PatchKind::Json, bytes, false),
        ];
        for (kind, body, object) in bodies {
            match patch::patch(kind, &current, &body) {
                Ok(out) => prop_assert!(!object || out.is_object(), "{kind:?}: {out}"),
                Err(e) => assert_refusal(&e)?,
            }
        }
    }

    #[test]
    fn strategic_merge_of_an_object_is_an_object(current in current(), p in json_value()) {
        let mut doc = current;
        patch::strategic_merge(&mut doc, &json!({"spec": p}));
        prop_assert!(doc.is_object());
    }

    #[test]
    fn server_side_apply_never_panics(
        current in proptest::option::of(current()),
        applied in json_value(),
        force in any::<bool>(),
        bytes in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": applied});
        for manager in ["a", "b"] {
            match patch::server_side_apply(current.as_ref(), &applied, manager, force) {
                Ok(out) => prop_assert!(out.is_object()),
                Err(e) => prop_assert_eq!(e.code, 409, "{}", e),
            }
        }
        if let Err(e) = patch::parse_applied(&bytes) {
            assert_refusal(&e)?;
        }
    }
}

/// One HTTP/1.1 exchange on a fresh connection: the status code and the body.
async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: bosun\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        s.read_to_end(&mut answer),
    )
    .await??;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no answer: {:?}", String::from_utf8_lossy(&answer)))?;
    let status_line = String::from_utf8_lossy(&answer[..split]).into_owned();
    let code = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("bad status line {status_line:?}"))?;
    Ok((code, answer[split + 4..].to_vec()))
}

/// Content types a client may send.
const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/cbor",
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "text/plain",
];

/// A protobuf body: the `k8s\0` envelope, sometimes around a kind the decoder reads.
fn protobuf_body() -> impl Strategy<Value = Vec<u8>> {
    let field = |n: u8, payload: &[u8]| {
        let mut v = vec![(n << 3) | 2];
        let mut len = payload.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                v.push(byte);
                break;
            }
            v.push(byte | 0x80);
        }
        v.extend_from_slice(payload);
        v
    };
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..96).prop_map(|b| [b"k8s\0".as_slice(), &b].concat()),
        (
            prop::sample::select(vec![
                "Namespace",
                "ConfigMap",
                "Secret",
                "Service",
                "Deployment",
                "Eviction"
            ]),
            prop::collection::vec(any::<u8>(), 0..96),
            prop::collection::vec(any::<u8>(), 0..32),
        )
            .prop_map(move |(kind, raw, inner)| {
                let type_meta = [field(1, b"v1"), field(2, kind.as_bytes())].concat();
                // Sometimes a well-formed first field (metadata, or a spec) around random bytes.
                let object = [field(1, &inner), raw].concat();
                [b"k8s\0".to_vec(), field(1, &type_meta), field(2, &object)].concat()
            }),
    ]
}

/// A body and the content type it is sent as: random bytes as anything, and bytes close
/// to what each decoder reads, as that decoder's type.
fn typed_body() -> impl Strategy<Value = (&'static str, Vec<u8>)> {
    let json_types = prop::sample::select(vec![
        "application/json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/json-patch+json",
    ]);
    prop_oneof![
        (
            prop::sample::select(CONTENT_TYPES.to_vec()),
            prop::collection::vec(any::<u8>(), 0..96)
        ),
        (
            json_types.clone(),
            json_value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default())
        ),
        (
            json_types,
            json_value().prop_map(|v| {
                let spec = json!({"replicas": v, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "app", "image": "app:v1"}]}}});
                serde_json::to_vec(&json!({"metadata": {"name": "web"}, "spec": spec}))
                    .unwrap_or_default()
            })
        ),
        (
            Just("application/yaml"),
            prop_oneof![
                json_value()
                    .prop_map(|v| serde_yaml::to_string(&v).unwrap_or_default().into_bytes()),
                "[-:{}\\[\\], a-z0-9&*!|>'\"%@`#\n]{0,64}".prop_map(String::into_bytes),
            ]
        ),
        (Just("application/vnd.kubernetes.protobuf"), protobuf_body()),
    ]
}

#[test]
fn create_and_update_bodies_always_get_an_object_or_a_status() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cluster = rt.block_on(common::api_only())?;
    let addr = cluster.addr();
    let setup = [
        (
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata": {"name": "target"}}),
        ),
        (
            "/apis/apps/v1/namespaces/default/deployments",
            json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "app:v1"}]}}}}),
        ),
    ];
    for (path, obj) in setup {
        let (code, _) = rt.block_on(exchange(
            addr,
            "POST",
            path,
            "application/json",
            &serde_json::to_vec(&obj)?,
        ))?;
        anyhow::ensure!(code == 201, "setup {path}: {code}");
    }
    let requests = (
        prop::sample::select(vec![
            ("POST", "/api/v1/namespaces/default/configmaps"),
            ("PUT", "/api/v1/namespaces/default/configmaps/target"),
            ("POST", "/api/v1/namespaces"),
            ("POST", "/apis/apps/v1/namespaces/default/deployments"),
            ("PUT", "/apis/apps/v1/namespaces/default/deployments/web"),
            (
                "PUT",
                "/apis/apps/v1/namespaces/default/deployments/web/scale",
            ),
            ("PATCH", "/apis/apps/v1/namespaces/default/deployments/web"),
            ("POST", "/api/v1/namespaces/default/pods/web-0/eviction"),
        ]),
        any::<bool>(),
        typed_body(),
    );
    // Seeds are printed on failure; the runner has no source file to record them next to.
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::with_cases(cases(64))
    });
    let outcome = runner.run(&requests, |((method, path), dry_run, (ct, body))| {
        let path = if dry_run {
            format!("{path}?dryRun=All")
        } else {
            path.to_string()
        };
        let (code, answer) = rt
            .block_on(exchange(addr, method, &path, ct, &body))
            .map_err(|e| TestCaseError::fail(format!("{method} {path} ({ct}): {e}")))?;
        let v: Value = serde_json::from_slice(&answer).map_err(|e| {
            TestCaseError::fail(format!("{method} {path} ({ct}) {code}: not JSON: {e}"))
        })?;
        prop_assert!(v.is_object(), "{method} {path} ({ct}) {code}: {v}");
        if code >= 300 {
            prop_assert!(
                (400..500).contains(&code),
                "{method} {path} ({ct}): {code} {v}"
            );
            prop_assert_eq!(&v["kind"], "Status", "{} {}: {}", method, path, v);
            prop_assert_eq!(v["code"].as_u64(), Some(u64::from(code)), "{}", v);
            prop_assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty()), "{}", v);
        }
        Ok(())
    });
    rt.block_on(cluster.shutdown());
    outcome.map_err(|e| anyhow::anyhow!("{e}"))
}
