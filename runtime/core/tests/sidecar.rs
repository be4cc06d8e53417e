//! The sidecar link end to end on the embedded cluster: a controller's pod-command
//! reaches a pod's sidecar plugin and its outcome returns; delivery survives a runtime
//! restart without loss or repetition; sidecars reconnect, hot-swap plugins, and are
//! refused (sessions and plugin fetches alike) with a bad token or an oversize message.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bosun_dev::launcher::Launcher;
use bosun_host::engine::Compiled;
use bosun_host::load::Source;
use bosun_link::link_client::LinkClient;
use bosun_link::{Hello, SidecarMessage, sidecar_message};
use bosun_runtime::Config;
use bosun_sidecar::config::Token;
use bosun_sidecar::{Config as SidecarConfig, Sidecar};
use bosun_test_support::embedded::{Env, source};
use bosun_test_support::{eventually, free_port, with_custom_section};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

fn config(env: &Env, link_port: u16, tls: bool) -> Config {
    let mut c = env.config("rt");
    c.sidecars.listen = Some(SocketAddr::from(([127, 0, 0, 1], link_port)));
    c.sidecars.tls = tls;
    c.sidecars.resend_ms = 500;
    c
}

/// The agent plugin with different bytes (a custom section appended): a new revision.
fn agent_v2() -> Source {
    let bytes = std::fs::read(bosun_test_artifacts::TEST_AGENT).expect("agent");
    let bytes = with_custom_section(&bytes, "revision 2");
    Source {
        origin: "agent-v2".to_owned(),
        bytes: bytes.into(),
    }
}

/// A pod with the agent's label; with `sidecar`, it carries the built-in `bosun-sidecar`
/// container (as injection would give it), which the launcher runs.
async fn agent_pod(env: &Env, name: &str, sidecar: bool) -> Pod {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let mut containers = vec![json!({"name": "app", "image": "app:v1"})];
    if sidecar {
        containers.push(bosun_dev::launcher::container().expect("built-in container"));
    }
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default",
            "labels": {"bosun.dev/agent": "test"}},
        "spec": {"containers": containers}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod")
}

fn sidecar_config(env: &Env, pod: &Pod, runtime: &str, token: Token) -> SidecarConfig {
    let name = pod.metadata.name.clone().expect("name");
    let base = env.dir.path().join("sidecar").join(&name);
    SidecarConfig {
        namespace: "default".to_owned(),
        pod: name,
        uid: pod.metadata.uid.clone().expect("uid"),
        node: String::new(),
        labels: r#"{"bosun.dev/agent":"test"}"#.to_owned(),
        runtime: runtime.to_owned(),
        token,
        runtime_ca: None,
        probe_addr: "127.0.0.1:0".parse().expect("addr"),
        shared_dir: base.join("shared"),
        data_dir: base.join("data"),
        reconnect_max: Duration::from_millis(300),
        probe_timeout: Duration::from_millis(500),
        precompiled: true,
    }
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let addr2 = addr;
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr2).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (status, body)
    })
    .await
    .expect("probe request")
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn log_lines(env: &Env) -> Vec<String> {
    env.logs.take().into_iter().map(|l| l.message).collect()
}

fn shared_of(launcher_dir: &Path, pod: &Pod) -> PathBuf {
    launcher_dir
        .join("default")
        .join(pod.metadata.name.as_deref().expect("name"))
        .join(pod.metadata.uid.as_deref().expect("uid"))
        .join("shared")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_command_reaches_the_sidecar_plugin_and_its_outcome_returns() {
    let env = Env::bare(1).await;
    // TLS on, sidecars started by the embedded launcher like in `bosun up`.
    let rt = env.runtime(config(&env, 0, true)).await;
    let launcher_dir = env.dir.path().join("launched");
    let launcher = Launcher::start(&rt, launcher_dir.clone()).expect("link configured");
    rt.install(&source(bosun_test_artifacts::TEST_AGENT), r#"{"tag":"v1"}"#)
        .expect("agent");
    rt.install(&source(bosun_test_artifacts::PINGER), r#"{"count":3}"#)
        .expect("pinger");
    let pod = agent_pod(&env, "agent-0", true).await;
    let shared = shared_of(&launcher_dir, &pod);
    eventually(
        "the three commands ran in the pod's agent plugin, in order",
        Duration::from_secs(30),
        || async { lines(&shared.join("commands.log")) == ["n-0", "n-1", "n-2"] },
    )
    .await;
    // The outcomes reached the controller's next reconcile without any cluster event.
    let mut seen = Vec::new();
    eventually(
        "the pinger saw the three outcomes",
        Duration::from_secs(15),
        || {
            seen.extend(log_lines(&env));
            let ok = (0..3).all(|i| {
                seen.iter()
                    .any(|l| l.contains("Executed: v1:n-") && l.ends_with(&format!("v1:n-{i}")))
            });
            async move { ok }
        },
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(shared.join("started"))
            .ok()
            .as_deref(),
        Some("v1")
    );
    let (sidecars, _) = rt.sidecars().expect("sidecars");
    let status = sidecars.status();
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!(status[0].pod, "default/agent-0");
    assert!(status[0].plugins.contains_key("agent"), "{status:?}");
    // Readiness comes from the plugin: a not-ready file turns it 503.
    let probes = launcher.running()[0].1;
    let (code, body) = get(probes, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("ok agent: v1"), "{body}");
    std::fs::write(shared.join("not-ready"), "x").expect("mark");
    let (code, body) = get(probes, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("not-ready file present"), "{body}");
    launcher.stop().await;
    assert_eq!(
        std::fs::read_to_string(shared.join("stopped"))
            .ok()
            .as_deref(),
        Some("v1"),
        "on-stop ran"
    );
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_restart_mid_stream_loses_and_repeats_nothing() {
    let env = Env::bare(1).await;
    let port = free_port();
    let rt = env.runtime(config(&env, port, false)).await;
    rt.install(&source(bosun_test_artifacts::TEST_AGENT), r#"{"tag":"v1"}"#)
        .expect("agent");
    let pod = agent_pod(&env, "agent-1", false).await;
    let token = rt.sidecars().expect("sidecars").0.issue_token(
        "default",
        "agent-1",
        pod.metadata.uid.as_deref().expect("uid"),
    );
    let sc = sidecar_config(
        &env,
        &pod,
        &format!("http://127.0.0.1:{port}"),
        Token::Value(token),
    );
    let shared = sc.shared_dir.clone();
    let sidecar = Sidecar::start(sc).await.expect("sidecar");
    eventually(
        "the sidecar runs the agent",
        Duration::from_secs(15),
        || async { sidecar.agents().held().iter().any(|(n, _)| n == "agent") },
    )
    .await;
    // 20 commands of 100 ms each: the runtime stops while they are being executed.
    rt.install(
        &source(bosun_test_artifacts::PINGER),
        r#"{"count":20,"prefix":"slow-"}"#,
    )
    .expect("pinger");
    eventually("some commands ran", Duration::from_secs(20), || async {
        lines(&shared.join("commands.log")).len() >= 3
    })
    .await;
    rt.shutdown().await;
    drop(rt);
    let done_by_first = lines(&shared.join("commands.log")).len();
    assert!(
        done_by_first < 20,
        "the restart came too late to test anything"
    );

    // The second runtime has the journal, not the pinger: it only delivers what is left.
    let rt2 = env.runtime(config(&env, port, false)).await;
    rt2.install(&source(bosun_test_artifacts::TEST_AGENT), r#"{"tag":"v1"}"#)
        .expect("agent");
    eventually("all 20 commands ran", Duration::from_secs(40), || async {
        lines(&shared.join("commands.log")).len() >= 20
    })
    .await;
    let (sidecars, _) = rt2.sidecars().expect("sidecars");
    eventually(
        "every outcome reached the runtime",
        Duration::from_secs(10),
        || async { sidecars.in_flight() == 0 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ran = lines(&shared.join("commands.log"));
    let expected: Vec<String> = (0..20).map(|i| format!("slow-{i}")).collect();
    assert_eq!(ran, expected, "each command exactly once, in order");
    assert_eq!(sidecar.executed(), 20);
    // The audit log (kept across both runtimes) has exactly one executed verdict per id.
    rt2.audit().flush().expect("flush");
    let records = bosun_runtime::audit::read(rt2.audit().path()).expect("audit");
    let executed: Vec<u64> = records
        .iter()
        .filter(|r| {
            r.command["command"] == "pod-command"
                && r.verdict == bosun_host::contract::Verdict::Executed
        })
        .filter_map(|r| r.command_id)
        .collect();
    let mut unique = executed.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!((executed.len(), unique.len()), (20, 20), "{executed:?}");
    assert!(done_by_first > 0);
    sidecar.stop().await;
    rt2.shutdown().await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_serves_while_the_runtime_is_away_and_takes_a_new_revision() {
    let env = Env::bare(1).await;
    let port = free_port();
    let pod = agent_pod(&env, "agent-2", false).await;
    // The runtime is not there yet: the sidecar starts anyway and answers probes.
    let rt_config = config(&env, port, false);
    std::fs::create_dir_all(&rt_config.data_dir).expect("dir");
    let uid = pod.metadata.uid.clone().expect("uid");
    let rt = env.runtime(rt_config).await;
    let token = rt
        .sidecars()
        .expect("sidecars")
        .0
        .issue_token("default", "agent-2", &uid);
    rt.shutdown().await;
    drop(rt);
    let sc = sidecar_config(
        &env,
        &pod,
        &format!("http://127.0.0.1:{port}"),
        Token::Value(token),
    );
    let sidecar = Sidecar::start(sc.clone())
        .await
        .expect("sidecar starts without a runtime");
    let (code, body) = get(sidecar.probe_addr(), "/readyz").await;
    assert_eq!(code, 200, "{body}");
    assert!(!sidecar.connected());

    let rt = env.runtime(config(&env, port, false)).await;
    rt.install(&source(bosun_test_artifacts::TEST_AGENT), r#"{"tag":"v1"}"#)
        .expect("agent");
    eventually(
        "connected and running v1",
        Duration::from_secs(15),
        || async {
            sidecar.connected()
                && get(sidecar.probe_addr(), "/readyz")
                    .await
                    .1
                    .contains("agent: v1")
        },
    )
    .await;
    // A new revision (other bytes, other config) is swapped in.
    let v2 = agent_v2();
    let v2_digest = v2.digest();
    rt.install(&v2, r#"{"tag":"v2"}"#).expect("agent v2");
    eventually("running v2", Duration::from_secs(15), || async {
        get(sidecar.probe_addr(), "/readyz")
            .await
            .1
            .contains("agent: v2")
    })
    .await;
    assert_eq!(
        sidecar.agents().held(),
        [("agent".to_owned(), v2_digest.clone())]
    );
    // Same engine on both ends: the sidecar ran the runtime's compiled code, both times.
    assert_eq!(sidecar.agents().compiled("agent"), Some(Compiled::Shipped));

    // The runtime goes away: probes keep answering with the plugin held. A sidecar
    // restarted meanwhile restores it from its cache.
    rt.shutdown().await;
    drop(rt);
    eventually("the sidecar notices", Duration::from_secs(10), || async {
        !sidecar.connected()
    })
    .await;
    assert!(
        get(sidecar.probe_addr(), "/readyz")
            .await
            .1
            .contains("agent: v2")
    );
    sidecar.stop().await;
    let sidecar = Sidecar::start(sc.clone()).await.expect("restart");
    assert_eq!(
        sidecar.agents().held(),
        [("agent".to_owned(), v2_digest.clone())]
    );
    // The shipped code was kept in the sidecar's compiled-code cache.
    assert_eq!(sidecar.agents().compiled("agent"), Some(Compiled::Cached));
    let (code, body) = get(sidecar.probe_addr(), "/readyz").await;
    assert_eq!((code, body.contains("agent: v2")), (200, true), "{body}");
    sidecar.stop().await;

    // A sidecar told not to take precompiled code compiles the component itself.
    let rt = env.runtime(config(&env, port, false)).await;
    rt.install(&agent_v2(), r#"{"tag":"v2"}"#)
        .expect("agent v2");
    let own = SidecarConfig {
        data_dir: sc.data_dir.with_file_name("own-compile"),
        precompiled: false,
        ..sc
    };
    let sidecar = Sidecar::start(own).await.expect("start");
    eventually(
        "running v2, compiled here",
        Duration::from_secs(15),
        || async { sidecar.agents().held() == [("agent".to_owned(), v2_digest.clone())] },
    )
    .await;
    assert_eq!(sidecar.agents().compiled("agent"), Some(Compiled::Fresh));
    sidecar.stop().await;
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

async fn client(port: u16) -> LinkClient<tonic::transport::Channel> {
    LinkClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .expect("connect")
}

fn hello(pod: &str, uid: &str, big: usize) -> SidecarMessage {
    SidecarMessage {
        body: Some(sidecar_message::Body::Hello(Hello {
            namespace: "default".to_owned(),
            pod: pod.to_owned(),
            uid: uid.to_owned(),
            sidecar_version: "x".repeat(big),
            plugins: Vec::new(),
        })),
    }
}

async fn open(
    port: u16,
    token: &str,
    message: SidecarMessage,
) -> Result<tonic::Streaming<bosun_link::RuntimeMessage>, tonic::Status> {
    let mut c = client(port).await.max_encoding_message_size(64 << 20);
    let mut request = tonic::Request::new(tokio_stream::iter(vec![message]));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    c.session(request).await.map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_and_oversize_messages_are_refused() {
    let env = Env::bare(1).await;
    let port = free_port();
    let rt = env.runtime(config(&env, port, false)).await;
    let pod = agent_pod(&env, "agent-3", false).await;
    let uid = pod.metadata.uid.clone().expect("uid");
    let sidecars = rt.sidecars().expect("sidecars").0.clone();
    let good = sidecars.issue_token("default", "agent-3", &uid);
    let other = sidecars.issue_token("default", "someone-else", &uid);

    let e = open(port, "bosun.v1.forged", hello("agent-3", &uid, 0))
        .await
        .expect_err("forged token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    assert!(
        e.message()
            .contains("does not belong to pod default/agent-3"),
        "{e}"
    );
    let e = open(port, &other, hello("agent-3", &uid, 0))
        .await
        .expect_err("another pod's token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    // The token for this pod name but another uid (a deleted pod's sidecar), once the
    // runtime's cache knows the pod's real uid.
    let pod_ref = bosun_host::contract::ObjectRef::namespaced("v1", "Pod", "default", "agent-3");
    eventually("the pod is cached", Duration::from_secs(10), || async {
        rt.informers().get(&pod_ref).is_some()
    })
    .await;
    let stale = sidecars.issue_token("default", "agent-3", "old-uid");
    let e = open(port, &stale, hello("agent-3", "old-uid", 0))
        .await
        .expect_err("stale uid");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    // A message over the limit is refused with the reason.
    let e = open(port, &good, hello("agent-3", &uid, 5 << 20))
        .await
        .expect_err("oversize");
    assert!(
        e.message().contains("message length too large") || e.message().contains("exceeds"),
        "{e}"
    );
    assert_eq!(sidecars.connected(), 0);
    // Plugin bytes are fetched with the pod's token, like a session.
    rt.install(&source(bosun_test_artifacts::TEST_AGENT), r#"{"tag":"v1"}"#)
        .expect("agent");
    let digest =
        bosun_link::digest(&std::fs::read(bosun_test_artifacts::TEST_AGENT).expect("agent"));
    let fetch = |token: Option<String>, pod: &str| {
        let request = bosun_link::FetchRequest {
            digest: digest.clone(),
            namespace: "default".to_owned(),
            pod: pod.to_owned(),
            uid: uid.clone(),
            precompiled: false,
        };
        async move {
            let mut request = tonic::Request::new(request);
            if let Some(t) = token {
                request.metadata_mut().insert(
                    "authorization",
                    format!("Bearer {t}").parse().expect("header"),
                );
            }
            let mut stream = client(port).await.fetch(request).await?.into_inner();
            let mut bytes = Vec::new();
            while let Some(chunk) = stream.message().await? {
                bytes.extend_from_slice(&chunk.data);
            }
            Ok::<_, tonic::Status>(bosun_link::digest(&bytes))
        }
    };
    let e = fetch(None, "agent-3").await.expect_err("no token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    let e = fetch(Some("bosun.v1.forged".to_owned()), "agent-3")
        .await
        .expect_err("forged token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    let e = fetch(Some(good.clone()), "someone-else")
        .await
        .expect_err("another pod");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    let fetched = fetch(Some(good.clone()), "agent-3").await.expect("fetched");
    assert_eq!(fetched, digest);
    // The good token is accepted.
    let mut stream = open(port, &good, hello("agent-3", &uid, 0))
        .await
        .expect("accepted");
    let first = stream.message().await.expect("message").expect("welcome");
    assert!(matches!(
        first.body,
        Some(bosun_link::runtime_message::Body::Welcome(_))
    ));
    // A bad-token sidecar never connects, and says why in its log; it keeps serving.
    let sc = sidecar_config(
        &env,
        &pod,
        &format!("http://127.0.0.1:{port}"),
        Token::Value("bosun.v1.nope".to_owned()),
    );
    let sidecar = Sidecar::start(sc).await.expect("sidecar");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!sidecar.connected());
    assert_eq!(get(sidecar.probe_addr(), "/readyz").await.0, 200);
    sidecar.stop().await;
    rt.shutdown().await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_can_name_the_plugins_its_sidecar_runs() {
    let env = Env::bare(1).await;
    let rt = env.runtime(config(&env, 0, false)).await;
    let launcher_dir = env.dir.path().join("launched");
    let launcher = Launcher::start(&rt, launcher_dir.clone()).expect("link configured");
    rt.install(
        &source(bosun_test_artifacts::TEST_AGENT),
        r#"{"tag":"named"}"#,
    )
    .expect("agent");
    // No `bosun.dev/agent=test` label: the agent's subscription does not match; the
    // annotation names it.
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "named-0", "namespace": "default", "annotations": {
            "sidecar.bosun.dev/plugins": "agent"}},
        "spec": {"containers": [{"name": "app", "image": "app:v1"},
            bosun_dev::launcher::container().expect("built-in container")]}
    }))
    .expect("pod");
    let pod = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("create");
    let shared = shared_of(&launcher_dir, &pod);
    eventually(
        "the named plugin started in the pod",
        Duration::from_secs(30),
        || async {
            std::fs::read_to_string(shared.join("started"))
                .ok()
                .as_deref()
                == Some("named")
        },
    )
    .await;
    launcher.stop().await;
    rt.shutdown().await;
    env.cluster.shutdown().await;
}
