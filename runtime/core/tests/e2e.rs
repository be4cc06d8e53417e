//! The runtime end to end on the embedded cluster: events become reconciles, commands
//! pass the guardrails and reach the cluster, outcomes come back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_runtime::{Config, Runtime};
use bosun_test_support::embedded::{Env, source};
use bosun_test_support::eventually;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

async fn pod(env: &Env, name: &str, labels: serde_json::Value) -> Pod {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "app:v1"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod")
}

fn label(p: &Pod, key: &str) -> Option<String> {
    p.metadata.labels.as_ref()?.get(key).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_becomes_a_command_applied_and_its_outcome_returns() {
    let env = Env::start(2).await;
    let rt = env.runtime(env.config("rt")).await;
    rt.install(&source(bosun_test_artifacts::ZONE_LABELER), "{}")
        .expect("zone-labeler");
    rt.install(&source(bosun_test_artifacts::HOSTILE), r#"{"mode":"ok"}"#)
        .expect("hostile");
    pod(&env, "web-0", json!({"app": "web"})).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    eventually(
        "the pod is labelled with its node's zone and seen",
        Duration::from_secs(20),
        || async {
            let p = pods.get("web-0").await.expect("pod");
            let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
            let zone = label(&p, "topology.kubernetes.io/zone");
            let expected = match node.as_deref() {
                Some("sim-node-0") => Some("zone-a".to_owned()),
                Some("sim-node-1") => Some("zone-b".to_owned()),
                _ => None,
            };
            expected.is_some()
                && zone == expected
                && label(&p, "hostile/seen").as_deref() == Some("true")
        },
    )
    .await;
    // The patch changed the pod, so the hostile plugin ran again and saw the outcome.
    let mut seen = Vec::new();
    eventually(
        "the outcome reached the next reconcile",
        Duration::from_secs(10),
        || {
            seen.extend(env.log_lines());
            let ok = seen
                .iter()
                .any(|l| l.starts_with("outcome ") && l.contains("Executed"));
            async move { ok }
        },
    )
    .await;
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

fn yaml_config(env: &Env, name: &str, yaml: &str) -> Config {
    let parsed = Config::parse(yaml).expect("test config");
    let base = env.config(name);
    Config {
        guardrails: parsed.guardrails,
        queue: base.queue.clone(),
        ..base
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_events_is_deduplicated_and_never_reconciled_concurrently() {
    let env = Env::start(2).await;
    let mut cfg = env.config("rt");
    cfg.queue.concurrency = 4;
    let rt = env.runtime(cfg).await;
    pod(&env, "busy", json!({"app": "busy"})).await;
    rt.install(
        &source(bosun_test_artifacts::HOSTILE),
        r#"{"mode":"overlap"}"#,
    )
    .expect("hostile");
    let hostile = || rt.registry().current("hostile").expect("loaded");
    eventually("first reconcile", Duration::from_secs(10), || async {
        hostile().stats().calls > 1
    })
    .await;
    let before = hostile().stats().calls;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    for i in 0..100 {
        let patch = json!({"metadata": {"annotations": {"burst": i.to_string()}}});
        pods.patch("busy", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("patch");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = hostile().stats().calls - before;
    assert!(during >= 1, "the burst was reconciled");
    assert!(during < 50, "100 events coalesced into {during} reconciles");
    let lines = env.log_lines();
    assert!(!lines.iter().any(|l| l.starts_with("overlap")), "{lines:?}");
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_back_off_exponentially() {
    let env = Env::start(2).await;
    let rt = env.runtime(env.config("rt")).await;
    pod(&env, "failing", json!({"app": "x"})).await;
    rt.install(
        &source(bosun_test_artifacts::HOSTILE),
        r#"{"mode":"error"}"#,
    )
    .expect("hostile");
    let hostile = rt.registry().current("hostile").expect("loaded");
    eventually("first failure", Duration::from_secs(10), || async {
        hostile.stats().errors >= 1
    })
    .await;
    let first = hostile.stats().errors;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    // Base 100 ms doubling: about 100+200+400+800+1600 ms fit in 3 s — a handful, not thousands.
    let retries = hostile.stats().errors - first;
    assert!((2..=10).contains(&retries), "{retries} retries in 3 s");
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_plugin_is_rate_limited_then_its_breaker_opens_while_another_plugin_works() {
    let env = Env::start(2).await;
    let cfg = yaml_config(
        &env,
        "rt",
        "guardrails:\n  perPlugin: {perSecond: 5, burst: 20}\n  breaker: {window: 60s, minSamples: 10, failureRatio: 0.5, cooldown: 60s}\n",
    );
    let rt = env.runtime(cfg).await;
    pod(&env, "target", json!({"app": "t"})).await;
    rt.install(
        &source(bosun_test_artifacts::HOSTILE),
        r#"{"mode":"doomed","count":100}"#,
    )
    .expect("hostile");
    rt.install(&source(bosun_test_artifacts::ZONE_LABELER), "{}")
        .expect("zone-labeler");
    let mut lines = Vec::new();
    eventually("rate-limit refusals", Duration::from_secs(15), || {
        lines.extend(env.log_lines());
        let ok = lines.iter().any(|l| l.contains("refused: rate limit"));
        async move { ok }
    })
    .await;
    // Its admitted patches all fail (the pods do not exist): the breaker opens.
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    for i in 0..5 {
        let patch = json!({"metadata": {"annotations": {"poke": i.to_string()}}});
        pods.patch("target", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("poke");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eventually("breaker refusals", Duration::from_secs(15), || {
        lines.extend(env.log_lines());
        let ok = lines
            .iter()
            .any(|l| l.contains("refused: ") && l.contains("breaker"));
        async move { ok }
    })
    .await;
    // The other plugin is unaffected: a new pod gets its zone.
    pod(&env, "other", json!({"app": "o"})).await;
    eventually(
        "zone-labeler still works",
        Duration::from_secs(15),
        || async {
            pods.get("other")
                .await
                .ok()
                .is_some_and(|p| label(&p, "topology.kubernetes.io/zone").is_some())
        },
    )
    .await;
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_executes_nothing_and_audits_everything() {
    let env = Env::start(2).await;
    let cfg = yaml_config(&env, "rt", "guardrails:\n  dryRun: [zone-labeler]\n");
    let rt = env.runtime(cfg).await;
    rt.install(&source(bosun_test_artifacts::ZONE_LABELER), "{}")
        .expect("zone-labeler");
    pod(&env, "dry", json!({"app": "d"})).await;
    let labeler = rt.registry().current("zone-labeler").expect("loaded");
    eventually("a dry-run command", Duration::from_secs(15), || async {
        labeler.stats().commands_submitted >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let p = pods.get("dry").await.expect("pod");
    assert_eq!(
        label(&p, "topology.kubernetes.io/zone"),
        None,
        "dry-run changed nothing"
    );
    rt.audit().flush().expect("flush");
    let records = bosun_runtime::audit::read(rt.audit().path()).expect("audit");
    assert!(!records.is_empty());
    assert!(
        records
            .iter()
            .all(|r| r.verdict == bosun_host::contract::Verdict::DryRun),
        "{records:?}"
    );
    assert!(
        records.iter().any(|r| r.command["command"] == "merge-patch"
            && r.key.as_deref() == Some("Pod/default/dry"))
    );
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_of_an_undeclared_kind_returns_nothing() {
    let env = Env::start(2).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(env.client.clone(), "default");
    let secret =
        serde_json::from_value(json!({"metadata": {"name": "peek"}, "stringData": {"k": "v"}}))
            .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let rt = env.runtime(env.config("rt")).await;
    pod(&env, "peeker", json!({"app": "p"})).await;
    rt.install(&source(bosun_test_artifacts::HOSTILE), r#"{"mode":"peek"}"#)
        .expect("hostile");
    let mut lines = Vec::new();
    eventually("the plugin peeked", Duration::from_secs(15), || {
        lines.extend(env.log_lines());
        let ok = lines.iter().any(|l| l.starts_with("peek:"));
        async move { ok }
    })
    .await;
    assert!(lines.iter().all(|l| l != "peek: found"), "{lines:?}");
    assert!(
        rt.registry()
            .current("hostile")
            .expect("loaded")
            .stats()
            .undeclared_reads
            >= 1
    );
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_runtime_converges_without_repeating_destructive_commands() {
    let env = Env::start(2).await;
    for i in 0..8 {
        pod(&env, &format!("reap-{i}"), json!({"reap": "true"})).await;
    }
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let remaining = || async {
        pods.list(&Default::default())
            .await
            .map(|l| {
                l.items
                    .iter()
                    .filter(|p| {
                        p.metadata
                            .name
                            .as_deref()
                            .is_some_and(|n| n.starts_with("reap-"))
                    })
                    .count()
            })
            .unwrap_or(99)
    };
    let mut cfg = env.config("rt");
    cfg.queue.concurrency = 1;
    let first = env.runtime(cfg.clone()).await;
    first
        .install(&source(bosun_test_artifacts::HOSTILE), r#"{"mode":"reap"}"#)
        .expect("hostile");
    eventually("some pods reaped", Duration::from_secs(15), || async {
        remaining().await < 8
    })
    .await;
    first.shutdown().await;
    drop(first);
    let second = env.runtime(cfg).await;
    second
        .install(&source(bosun_test_artifacts::HOSTILE), r#"{"mode":"reap"}"#)
        .expect("hostile");
    eventually("all pods reaped", Duration::from_secs(20), || async {
        remaining().await == 0
    })
    .await;
    second.audit().flush().expect("flush");
    let records = bosun_runtime::audit::read(second.audit().path()).expect("audit");
    for i in 0..8 {
        let key = format!("Pod/default/reap-{i}");
        let deletes = records
            .iter()
            .filter(|r| {
                r.key.as_deref() == Some(key.as_str())
                    && r.command["command"] == "delete"
                    && r.verdict == bosun_host::contract::Verdict::Executed
            })
            .count();
        assert_eq!(deletes, 1, "{key} deleted {deletes} times");
    }
    second.shutdown().await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runtimes_elect_one_leader_and_fail_over() {
    let env = Env::start(2).await;
    let election = |name: &str| {
        let mut c = env.config(name);
        c.leader_election.enabled = true;
        c.leader_election.lease_seconds = 3;
        c.leader_election.identity = Some(name.to_owned());
        c
    };
    let a = env.runtime(election("a")).await;
    eventually("a leads", Duration::from_secs(10), || async {
        a.is_leader()
    })
    .await;
    let b = env.runtime(election("b")).await;
    for rt in [&a, &b] {
        rt.install(&source(bosun_test_artifacts::HOSTILE), r#"{"mode":"ok"}"#)
            .expect("hostile");
    }
    // Loading calls metadata and init: count only the calls after that.
    let calls = |rt: &Arc<Runtime>| {
        rt.registry()
            .current("hostile")
            .map(|r| r.stats().calls)
            .unwrap_or(0)
    };
    let (base_a, base_b) = (calls(&a), calls(&b));
    pod(&env, "led", json!({"app": "l"})).await;
    eventually("the leader reconciles", Duration::from_secs(10), || async {
        calls(&a) > base_a
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!b.is_leader());
    assert_eq!(calls(&b), base_b, "the standby reconciles nothing");
    let stopped = Instant::now();
    a.shutdown().await;
    drop(a);
    eventually("b takes over", Duration::from_secs(10), || async {
        b.is_leader()
    })
    .await;
    assert!(
        stopped.elapsed() < Duration::from_secs(8),
        "failover took {:?}",
        stopped.elapsed()
    );
    pod(&env, "after", json!({"app": "a"})).await;
    eventually(
        "the new leader reconciles",
        Duration::from_secs(10),
        || async { calls(&b) > base_b },
    )
    .await;
    b.shutdown().await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_of_a_kind_not_served_yet_starts_when_its_crd_appears() {
    let env = Env::start(2).await;
    let rt = env.runtime(env.config("rt")).await;
    rt.install(&source(bosun_test_artifacts::CRD_WATCHER), "{}")
        .expect("crd-watcher");
    eventually("the kind is pending", Duration::from_secs(10), || async {
        rt.informers()
            .states()
            .get("example.com/v1/Widget")
            .is_some_and(|s| matches!(s, bosun_runtime::informer::KindState::Pending(_)))
    })
    .await;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(env.client.clone());
    let crd = serde_json::from_value(json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }))
    .expect("crd");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("create crd");
    let ar = kube::api::ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let widgets: Api<kube::api::DynamicObject> =
        Api::namespaced_with(env.client.clone(), "default", &ar);
    let w: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1", "namespace": "default"}, "spec": {"size": 3}
    }))
    .expect("widget");
    eventually(
        "the widget can be created",
        Duration::from_secs(10),
        || async {
            widgets.create(&PostParams::default(), &w).await.is_ok()
                || widgets.get_opt("w1").await.ok().flatten().is_some()
        },
    )
    .await;
    eventually(
        "the widget is labelled",
        Duration::from_secs(20),
        || async {
            widgets.get("w1").await.ok().is_some_and(|w| {
                w.metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key("crd-watcher/seen"))
            })
        },
    )
    .await;
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_plugin_in_the_folder_is_reported_and_the_others_run() {
    let env = Env::start(2).await;
    let plugins = env.dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("dir");
    std::fs::copy(
        bosun_test_artifacts::ZONE_LABELER,
        plugins.join("zone-labeler.wasm"),
    )
    .expect("copy");
    std::fs::write(plugins.join("broken.wasm"), b"\0asm\x0d\x00\x01\x00garbage").expect("write");
    let mut cfg = env.config("rt");
    cfg.plugins_dir = Some(plugins);
    let rt = env.runtime(cfg).await;
    pod(&env, "folder", json!({"app": "f"})).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    eventually(
        "zone-labeler from the folder works",
        Duration::from_secs(20),
        || async {
            pods.get("folder")
                .await
                .ok()
                .is_some_and(|p| label(&p, "topology.kubernetes.io/zone").is_some())
        },
    )
    .await;
    let status = rt.status();
    let broken = status["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .find(|p| p["name"] == "broken")
        .expect("broken listed");
    assert_eq!(broken["state"], "failed");
    assert!(
        broken["lastLoadError"]
            .as_str()
            .is_some_and(|e| e.contains("compile")),
        "{broken}"
    );
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_is_reported_by_health() {
    let dir = tempfile::tempdir().expect("tempdir");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"
    )).expect("kubeconfig");
    let client = bosun_runtime::connect::client(Some(&kubeconfig))
        .await
        .expect("client builds");
    let cfg = Config {
        data_dir: dir.path().join("rt"),
        admin_addr: "127.0.0.1:0".parse().expect("addr"),
        ..Default::default()
    };
    let rt = tokio::time::timeout(Duration::from_secs(10), Runtime::start(cfg, client))
        .await
        .expect("start does not hang")
        .expect("starts");
    eventually(
        "health names the problem",
        Duration::from_secs(10),
        || async {
            rt.status()["apiServer"]
                .as_str()
                .is_some_and(|s| s.contains("cannot reach the API server"))
        },
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(rt.admin_addr())
        .await
        .expect("admin");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    assert!(
        out.starts_with("HTTP/1.0 503") || out.starts_with("HTTP/1.1 503"),
        "{out}"
    );
    assert!(out.contains("cannot reach the API server"), "{out}");
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_commands_wait_for_the_sidecar_and_their_outcome_returns() {
    let env = Env::start(2).await;
    let rt = env.runtime(env.config("rt")).await;
    pod(&env, "with-agent", json!({"app": "a"})).await;
    rt.install(
        &source(bosun_test_artifacts::HOSTILE),
        r#"{"mode":"pod-command"}"#,
    )
    .expect("hostile");
    eventually(
        "the pod-command waits for the sidecar",
        Duration::from_secs(15),
        || async { rt.pipe().waiting_pod_commands() == 1 },
    )
    .await;
    let mut lines = Vec::new();
    eventually("the plugin saw it pending", Duration::from_secs(10), || {
        lines.extend(env.log_lines());
        let ok = lines.iter().any(|l| {
            l.contains("Pending") && l.contains("waiting for the sidecar of default/with-agent")
        });
        async move { ok }
    })
    .await;
    // What the sidecar link will do: take the pod's commands and report the result.
    let deliveries = rt.pipe().take_pod_commands("default", "with-agent");
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].command.plugin, "agent");
    rt.pipe()
        .pod_command_done(&deliveries[0], "sha256:agent", Ok("pong".to_owned()));
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    pods.patch(
        "with-agent",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"poke": "1"}}})),
    )
    .await
    .expect("poke");
    eventually(
        "the outcome reached the plugin",
        Duration::from_secs(10),
        || {
            lines.extend(env.log_lines());
            let ok = lines.iter().any(|l| l.contains("Executed: pong"));
            async move { ok }
        },
    )
    .await;
    rt.shutdown().await;
    env.cluster.shutdown().await;
}
