//! The sidecar without a runtime: plugin bytes are verified against their digest, a
//! plugin restored from the cache serves probes while the runtime is unreachable, and
//! a plugin that hangs in probe makes the probe fail within its deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_host::host::Services;
use bosun_host::limits::Limits;
use bosun_sidecar::agents::{Agents, Error};
use bosun_sidecar::config::Token;
use bosun_sidecar::{Config, Sidecar};

fn agent_bytes() -> Vec<u8> {
    std::fs::read(bosun_test_artifacts::TEST_AGENT).expect("agent artifact")
}

fn agents(dir: &std::path::Path) -> Agents {
    let engine = bosun_host::Engine::new(&bosun_host::engine::Config {
        pooling: false,
        ..Default::default()
    })
    .expect("engine");
    Agents::new(
        engine,
        Services::offline(),
        Limits::default(),
        dir.join("plugins"),
    )
}

#[test]
fn bytes_that_do_not_match_their_digest_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = agents(dir.path());
    let bytes = agent_bytes();
    let digest = bosun_link::digest(&bytes);
    let mut tampered = bytes.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let e = a.store("agent", &digest, &tampered).expect_err("tampered");
    assert!(matches!(e, Error::Digest { .. }), "{e}");
    assert!(e.to_string().contains("do not match digest"), "{e}");
    let e = a
        .install("agent", &digest, tampered.into(), "{}")
        .expect_err("tampered install");
    assert!(matches!(e, Error::Digest { .. }), "{e}");
    assert!(a.held().is_empty());
    // A corrupt cache entry is dropped, not loaded.
    a.store("agent", &digest, &bytes).expect("store");
    assert!(a.cached(&digest).is_some());
    let file = dir
        .path()
        .join("plugins")
        .join(format!("{}.wasm", digest.trim_start_matches("sha256:")));
    std::fs::write(&file, b"garbage").expect("corrupt");
    assert!(a.cached(&digest).is_none());
    assert!(!file.exists());
}

#[test]
fn a_controller_component_is_refused_by_world() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = agents(dir.path());
    let bytes = std::fs::read(bosun_test_artifacts::PINGER).expect("pinger");
    let digest = bosun_link::digest(&bytes);
    let e = a
        .install("pinger", &digest, bytes.into(), "{}")
        .expect_err("controller");
    assert!(e.to_string().contains("pod-agent world"), "{e}");
}

fn config(dir: &std::path::Path) -> Config {
    let vars = [
        ("POD_NAMESPACE", "default"),
        ("POD_NAME", "p"),
        ("POD_UID", "u"),
        // Nothing listens there: the runtime is unreachable.
        ("BOSUN_RUNTIME", "http://127.0.0.1:9"),
        ("BOSUN_TOKEN", "t"),
        ("BOSUN_PROBE_ADDR", "127.0.0.1:0"),
        ("BOSUN_PROBE_TIMEOUT_MS", "300"),
    ];
    let mut c = Config::from_vars(|k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    })
    .expect("config");
    c.shared_dir = dir.join("shared");
    c.data_dir = dir.join("data");
    c.token = Token::Value("t".to_owned());
    c
}

async fn readyz(addr: std::net::SocketAddr) -> (u16, String) {
    get(addr, "/readyz").await
}

async fn get(addr: std::net::SocketAddr, path: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let code = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (code, out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned())
    })
    .await
    .expect("request")
}

/// Puts the agent in the sidecar's cache and its last assignment, as a previous run would.
fn seed(dir: &std::path::Path, config: &str) {
    let bytes = agent_bytes();
    let digest = bosun_link::digest(&bytes);
    let a = Arc::new(agents(&dir.join("data")));
    a.store("agent", &digest, &bytes).expect("store");
    let assigned = serde_json::json!([{"name": "agent", "digest": digest, "config": config}]);
    std::fs::write(dir.join("data/assigned.json"), assigned.to_string()).expect("assigned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_plugin_serves_probes_while_the_runtime_is_unreachable() {
    let dir = tempfile::tempdir().expect("tmp");
    seed(dir.path(), r#"{"tag":"cached"}"#);
    let sidecar = Sidecar::start(config(dir.path())).await.expect("start");
    assert_eq!(sidecar.agents().held().len(), 1);
    let (code, body) = readyz(sidecar.probe_addr()).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("ok agent: cached"), "{body}");
    assert!(!sidecar.connected());
    sidecar.stop().await;
    assert_eq!(
        std::fs::read_to_string(dir.path().join("shared/stopped"))
            .ok()
            .as_deref(),
        Some("cached")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_hanging_in_probe_fails_the_probe_within_the_deadline() {
    let dir = tempfile::tempdir().expect("tmp");
    seed(dir.path(), r#"{"tag":"stuck","hangProbe":true}"#);
    let sidecar = Sidecar::start(config(dir.path())).await.expect("start");
    for _ in 0..2 {
        let started = Instant::now();
        let (code, body) = readyz(sidecar.probe_addr()).await;
        let took = started.elapsed();
        assert_eq!(code, 503, "{body}");
        assert!(
            body.contains("did not answer within 300 ms") || body.contains("probe failed"),
            "{body}"
        );
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
    sidecar.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_flood_shares_plugin_calls_and_is_bounded() {
    let dir = tempfile::tempdir().expect("tmp");
    // Each call hangs until its 300 ms deadline: requests pile up if nothing stops them.
    seed(dir.path(), r#"{"tag":"stuck","hangProbe":true}"#);
    let sidecar = Sidecar::start(config(dir.path())).await.expect("start");
    let addr = sidecar.probe_addr();
    let flood: Vec<_> = (0..80)
        .map(|_| tokio::spawn(get(addr, "/readyz")))
        .collect();
    let mut refused = 0;
    for request in flood {
        let (code, body) = request.await.expect("request");
        assert_eq!(code, 503, "{body}");
        if body.contains("probe requests at once") {
            refused += 1;
        }
    }
    let calls = sidecar.agents().stats()[0].1.calls;
    // on-start, then one probe call per 300 ms the flood lasted (not one per request).
    assert!(calls <= 8, "{calls} plugin calls for 80 requests");
    // 80 requests arrive within the 300 ms the first ones wait: more than the bound.
    assert!(refused > 0, "no request refused");
    sidecar.kill();
}
