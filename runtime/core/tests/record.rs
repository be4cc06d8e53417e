//! Recording a plugin's calls through the admin endpoint, on the embedded cluster: each
//! reconcile of the recorded plugin becomes one JSON line with its request, its cache
//! reads and their answers, and the commands it submitted.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bosun_runtime::Runtime;
use bosun_runtime::record::{Line, Read};
use bosun_test_support::embedded::{Env, source};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

async fn start(env: &Env) -> Arc<Runtime> {
    env.runtime(env.config("rt")).await
}

/// GET on the admin endpoint: (status, body).
async fn admin_get(addr: SocketAddr, path: String) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).expect("admin endpoint");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("response");
        let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        (status, body.to_owned())
    })
    .await
    .expect("request task")
}

async fn create_pod(env: &Env, name: &str) {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "app", "image": "app:v1"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_holds_requests_reads_and_commands() {
    let env = Env::start(2).await;
    let rt = start(&env).await;
    let admin = rt.admin_addr();
    rt.install(&source(bosun_test_artifacts::ZONE_LABELER), "{}")
        .expect("zone-labeler");
    rt.install(&source(bosun_test_artifacts::HOSTILE), r#"{"mode":"ok"}"#)
        .expect("hostile");

    // Bad requests are answered at once, with the reason.
    let (status, body) = admin_get(admin, "/plugins/nope/record?seconds=1".into()).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no plugin named \"nope\""), "{body}");
    let (status, body) = admin_get(admin, "/plugins/zone-labeler/record?seconds=601".into()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("from 1 to 600"), "{body}");

    let recording = tokio::spawn(admin_get(
        admin,
        "/plugins/zone-labeler/record?seconds=6".into(),
    ));
    // The recording starts as soon as the request arrives; leave it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = admin_get(admin, "/plugins/zone-labeler/record?seconds=1".into()).await;
    assert_eq!(status, 409, "one recording of a plugin at a time: {body}");
    for name in ["rec-0", "rec-1", "rec-2"] {
        create_pod(&env, name).await;
    }
    let (status, body) = recording.await.expect("recording task");
    assert_eq!(status, 200, "{body}");

    let lines: Vec<Line> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!lines.is_empty(), "no call recorded");
    assert!(
        lines.iter().all(|l| l.plugin == "zone-labeler"),
        "only the recorded plugin's calls"
    );
    for name in ["rec-0", "rec-1", "rec-2"] {
        let key = format!("Pod/default/{name}");
        let calls: Vec<&Line> = lines
            .iter()
            .filter(|l| l.request.target.key() == key)
            .collect();
        assert!(!calls.is_empty(), "no call for {key}");
        // The call that labelled the pod read the pod, then its node, and patched the pod
        // with the zone the node read answered.
        let labelled = calls
            .iter()
            .find(|l| !l.commands.is_empty())
            .unwrap_or_else(|| panic!("no command recorded for {key}: {calls:?}"));
        let node_read = labelled.reads.iter().find_map(|r| match r {
            Read::Get { get, answer } if get.kind == "Node" => Some((get, answer)),
            _ => None,
        });
        let (node, answer) = node_read.unwrap_or_else(|| panic!("no node read: {labelled:?}"));
        let zone = answer
            .as_ref()
            .and_then(|n| n.pointer("/metadata/labels/topology.kubernetes.io~1zone"))
            .and_then(|z| z.as_str())
            .expect("the node read answered the labelled node");
        assert_eq!(
            zone,
            if node.name == "sim-node-0" {
                "zone-a"
            } else {
                "zone-b"
            }
        );
        assert!(
            labelled
                .reads
                .iter()
                .any(|r| matches!(r, Read::Get { get, answer: Some(_) } if get.key() == key)),
            "the pod read is recorded: {labelled:?}"
        );
        let command = &labelled.commands[0];
        assert_eq!(command.command["command"], "merge-patch");
        assert_eq!(command.command["target"]["name"], name);
        assert_eq!(
            command.command["patch"]["metadata"]["labels"]["topology.kubernetes.io/zone"],
            zone
        );
        assert_eq!(command.refused, None);
        assert!(matches!(
            labelled.result,
            bosun_runtime::record::Outcome::Ok { .. }
        ));
    }

    // The recording ended with its answer: the next one may start.
    let (status, body) = admin_get(admin, "/plugins/zone-labeler/record?seconds=1".into()).await;
    assert_eq!(status, 200, "{body}");
    rt.shutdown().await;
    env.cluster.shutdown().await;
}
