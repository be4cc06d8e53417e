//! `bosun plugin test --replay`: the real binary replays recorded calls offline, compares
//! the commands with the recorded ones or with another plugin's, and refuses bad
//! recordings with one line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bosun_host::contract::{EventKind, ObjectRef, ReconcileRequest};
use bosun_runtime::record::{Line, Outcome, Read, Submitted};
use serde_json::{Value, json};

fn bosun(args: &[&str]) -> Output {
    let cache = std::env::temp_dir().join("bosun-cli-tests-compiled");
    Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(args)
        .env("BOSUN_COMPILED_CACHE", cache)
        .output()
        .expect("bosun runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

const ZONE: &str = "topology.kubernetes.io/zone";

fn pod(name: &str, node: Option<&str>, zone: Option<&str>) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "app:v1"}]}
    });
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    if let Some(z) = zone {
        p["metadata"]["labels"][ZONE] = json!(z);
    }
    p
}

fn node(name: &str, zone: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {ZONE: zone}}})
}

fn zone_patch(pod: &str, zone: &str) -> Submitted {
    Submitted {
        command: json!({
            "command": "merge-patch",
            "target": {"apiVersion": "v1", "kind": "Pod", "namespace": "default", "name": pod},
            "patch": {"metadata": {"labels": {ZONE: zone}}},
        }),
        refused: None,
    }
}

/// One recorded call of zone-labeler on `name`: the pod read, the node read if the pod is
/// bound, and the recorded commands.
fn call(pod_json: Value, node_json: Option<Value>, commands: Vec<Submitted>) -> Line {
    let target = ObjectRef::of(&pod_json).expect("named");
    let mut reads = vec![Read::Get {
        get: target.clone(),
        answer: Some(pod_json.clone()),
    }];
    if let Some(n) = node_json {
        reads.push(Read::Get {
            get: ObjectRef::of(&n).expect("named"),
            answer: Some(n),
        });
    }
    Line {
        plugin: "zone-labeler".into(),
        revision: "sha256:0000".into(),
        at_ms: 1_700_000_000_000,
        request: ReconcileRequest {
            target,
            events: vec![EventKind::Modified],
            outcomes: vec![],
            attempt: 0,
        },
        reads,
        reads_dropped: 0,
        commands,
        result: Outcome::Ok {
            requeue_after_ms: None,
        },
    }
}

fn write(dir: &Path, name: &str, lines: &[Line]) -> PathBuf {
    let path = dir.join(name);
    let text: String = lines
        .iter()
        .map(|l| serde_json::to_string(l).expect("line") + "\n")
        .collect();
    std::fs::write(&path, text).expect("write recording");
    path
}

/// Three calls as the runtime recorded them: a pod labelled from its node, a pod that
/// already has its zone, a pod not bound yet.
fn recording() -> Vec<Line> {
    vec![
        call(
            pod("web-0", Some("n1"), None),
            Some(node("n1", "zone-a")),
            vec![zone_patch("web-0", "zone-a")],
        ),
        call(
            pod("web-1", Some("n2"), Some("zone-b")),
            Some(node("n2", "zone-b")),
            vec![],
        ),
        call(pod("web-2", None, None), None, vec![]),
    ]
}

#[test]
fn replaying_the_same_plugin_gives_the_recorded_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = write(dir.path(), "rec.jsonl", &recording());
    let out = bosun(&[
        "plugin",
        "test",
        bosun_test_artifacts::ZONE_LABELER,
        "--replay",
        rec.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{}", stdout(&out));
    assert!(lines.iter().all(|l| l["equal"] == true), "{}", stdout(&out));
    assert_eq!(lines[0]["key"], "Pod/default/web-0");
    assert_eq!(
        lines[0]["commands"],
        json!([zone_patch("web-0", "zone-a").command])
    );
    assert_eq!(lines[1]["commands"], json!([]));
    assert!(lines.iter().all(|l| l.get("unrecordedReads").is_none()));
    assert!(
        stderr(&out).contains("3 calls, 0 differ from the recording"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_changed_decision_and_an_unrecorded_read_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lines = recording();
    // The recorded revision labelled web-0 with another zone than the node's.
    lines[0].commands = vec![zone_patch("web-0", "zone-x")];
    // The node read of web-1 was not recorded: the plugin finds no node and asks nothing.
    lines[1].reads.truncate(1);
    let rec = write(dir.path(), "rec.jsonl", &lines);
    let out = bosun(&[
        "plugin",
        "test",
        bosun_test_artifacts::ZONE_LABELER,
        "--replay",
        rec.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out_lines = json_lines(&out);
    assert_eq!(out_lines[0]["equal"], false);
    assert_eq!(
        out_lines[0]["recorded"]["commands"],
        json!([zone_patch("web-0", "zone-x").command])
    );
    assert_eq!(out_lines[1]["equal"], true);
    assert_eq!(out_lines[1]["unrecordedReads"], json!(["get Node/n2"]));
    assert!(
        stderr(&out).contains("3 calls, 1 differ from the recording"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn against_another_plugin_prints_only_the_calls_that_differ() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = write(dir.path(), "rec.jsonl", &recording());
    let rec = rec.to_str().expect("utf-8");
    let zone = bosun_test_artifacts::ZONE_LABELER;
    // Against itself: nothing differs.
    let out = bosun(&["plugin", "test", zone, "--replay", rec, "--against", zone]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("3 calls, 0 differ"),
        "{}",
        stderr(&out)
    );
    // Against hostile (patches every pod it reads with hostile/seen): every call differs.
    let out = bosun(&[
        "plugin",
        "test",
        zone,
        "--replay",
        rec,
        "--against",
        bosun_test_artifacts::HOSTILE,
        "--against-config",
        r#"{"mode":"ok"}"#,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{}", stdout(&out));
    assert_eq!(
        lines[0]["plugin"]["commands"],
        json!([zone_patch("web-0", "zone-a").command])
    );
    let theirs = &lines[0]["against"]["commands"][0];
    assert_eq!(theirs["command"], "merge-patch");
    assert_eq!(
        theirs["patch"]["metadata"]["labels"]["hostile/seen"],
        "true"
    );
    assert!(
        stderr(&out).contains("3 calls, 3 differ"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_recordings_get_one_line_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let zone = bosun_test_artifacts::ZONE_LABELER;
    let garbage = dir.path().join("garbage.jsonl");
    std::fs::write(&garbage, "{\"plugin\": \"zone-labeler\"}\nnot json\n").expect("write");
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").expect("write");
    let missing = dir.path().join("missing.jsonl");
    let rec = write(dir.path(), "rec.jsonl", &recording());
    let cases: [(&[&str], &str); 5] = [
        (
            &["--replay", garbage.to_str().expect("utf-8")],
            "line 1 is not a recorded call",
        ),
        (
            &["--replay", empty.to_str().expect("utf-8")],
            "holds no recorded call",
        ),
        (
            &["--replay", missing.to_str().expect("utf-8")],
            "cannot read the recording",
        ),
        (
            &[
                "--replay",
                rec.to_str().expect("utf-8"),
                "--against",
                "/nonexistent.wasm",
            ],
            "cannot read the plugin /nonexistent.wasm",
        ),
        (
            &[
                "--replay",
                rec.to_str().expect("utf-8"),
                "--config",
                "{nope",
            ],
            "is not valid JSON",
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["plugin", "test", zone];
        args.extend_from_slice(flags);
        let out = bosun(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{flags:?}: one line: {err}");
        assert!(err.contains(expected), "{flags:?}: {err}");
    }
    // A recording of another plugin.
    let out = bosun(&[
        "plugin",
        "test",
        bosun_test_artifacts::HOSTILE,
        "--replay",
        rec.to_str().expect("utf-8"),
        "--config",
        r#"{"mode":"ok"}"#,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is plugin hostile, but") && stderr(&out).contains("zone-labeler"),
        "{}",
        stderr(&out)
    );
    // --against without --replay is a usage error.
    let out = bosun(&["plugin", "test", zone, "--against", zone]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn record_without_a_runtime_says_where_it_looked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let out_file = dir.path().join("rec.jsonl");
    let admin = format!("127.0.0.1:{port}");
    let out = bosun(&[
        "record",
        "--plugin",
        "zone-labeler",
        "--out",
        out_file.to_str().expect("utf-8"),
        "--seconds",
        "1",
        "--admin",
        &admin,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("admin endpoint at {admin}")),
        "{}",
        stderr(&out)
    );
    assert!(!out_file.exists());
    let out = bosun(&["record", "--plugin", "p", "--out", "x", "--seconds", "601"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// The whole loop: `bosun record` against a runtime on the embedded cluster while pods
/// are created, then the recording replayed offline gives the commands the runtime saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_made_by_the_runtime_replays_equal() {
    use k8s_openapi::api::core::v1::{Node, Pod};
    use kube::api::{Api, Patch, PatchParams, PostParams};

    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = bosun_cluster::start(bosun_cluster::Config {
        nodes: 1,
        ..Default::default()
    })
    .await
    .expect("cluster");
    let client = cluster.client().await.expect("client");
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while nodes.get_opt("sim-node-0").await.ok().flatten().is_none() {
        assert!(std::time::Instant::now() < deadline, "node registered");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let label = json!({"metadata": {"labels": {ZONE: "zone-a"}}});
    nodes
        .patch("sim-node-0", &PatchParams::default(), &Patch::Merge(label))
        .await
        .expect("label node");
    let config = bosun_runtime::Config {
        data_dir: dir.path().join("rt"),
        admin_addr: "127.0.0.1:0".parse().expect("addr"),
        resync_seconds: 0,
        shutdown_grace_seconds: 5,
        ..Default::default()
    };
    let rt = bosun_runtime::Runtime::start_with(
        config,
        client.clone(),
        std::sync::Arc::new(bosun_host::host::log::Memory::default()),
    )
    .await
    .expect("runtime");
    let source =
        bosun_host::Source::file(Path::new(bosun_test_artifacts::ZONE_LABELER)).expect("artifact");
    rt.install(&source, "{}").expect("zone-labeler");

    let rec = dir.path().join("rec.jsonl");
    let (admin, rec_arg) = (
        rt.admin_addr().to_string(),
        rec.to_str().expect("utf-8").to_owned(),
    );
    let recording = tokio::task::spawn_blocking(move || {
        bosun(&[
            "record",
            "--plugin",
            "zone-labeler",
            "--out",
            &rec_arg,
            "--seconds",
            "5",
            "--admin",
            &admin,
        ])
    });
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["loop-0", "loop-1"] {
        let p: Pod = serde_json::from_value(pod(name, None, None)).expect("pod");
        pods.create(&PostParams::default(), &p).await.expect("pod");
    }
    let out = recording.await.expect("record task");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let recorded = std::fs::read_to_string(&rec).expect("recording written");
    let calls = recorded.lines().count();
    assert!(
        stdout(&out).contains(&format!("recorded {calls} call(s) of zone-labeler")),
        "{}",
        stdout(&out)
    );
    assert!(
        recorded.contains("\"merge-patch\""),
        "the pods were labelled while recording: {recorded}"
    );
    rt.shutdown().await;
    cluster.shutdown().await;

    let rec_arg = rec.to_str().expect("utf-8").to_owned();
    let out = tokio::task::spawn_blocking(move || {
        bosun(&[
            "plugin",
            "test",
            bosun_test_artifacts::ZONE_LABELER,
            "--replay",
            &rec_arg,
        ])
    })
    .await
    .expect("replay task");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), calls);
    assert!(lines.iter().all(|l| l["equal"] == true));
    assert!(
        lines
            .iter()
            .any(|l| l["commands"][0]["patch"]["metadata"]["labels"][ZONE] == "zone-a"),
        "{}",
        stdout(&out)
    );
}
