//! plugins/app-probe (a shipped pod-agent plugin written in Go) through bosun-host's
//! pod-agent path with a fake pod, plus its own `go test` unit tests.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use bosun_conformance::pod::{FakePod, Route, services};
use bosun_conformance::{crate_dir, engine};
use bosun_host::contract::ProbeKind;
use bosun_host::host::log;
use bosun_host::{Engine, Revision, Source, Spec, World};

fn plugin_dir() -> PathBuf {
    crate_dir().join("../../plugins/app-probe")
}

fn wasm() -> &'static PathBuf {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        bosun_cli::plugin::build_with(&plugin_dir(), false).unwrap_or_else(|e| panic!("{e:#}"))
    })
}

fn shared_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        engine(Some(bosun_conformance::guest_target_dir().join("compiled"))).expect("engine")
    })
}

fn route(method: &str, port: u16, path: &str, status: u16, body: &str) -> Route {
    Route {
        method: Some(method.to_owned()),
        port,
        path: path.to_owned(),
        status,
        headers: vec![],
        body: body.to_owned(),
        error: None,
    }
}

fn load(pod: &Arc<FakePod>, config: &str) -> Result<(Revision, Arc<log::Memory>), String> {
    let logs = Arc::new(log::Memory::default());
    let mut spec = Spec::new(services(pod.clone(), logs.clone()));
    spec.config = config.to_owned();
    let source = Source::file(wasm()).expect("read");
    let revision = Revision::load(shared_engine(), &source, spec).map_err(|e| e.to_string())?;
    Ok((revision, logs))
}

fn fake(routes: Vec<Route>) -> Arc<FakePod> {
    Arc::new(FakePod {
        routes,
        ..FakePod::default()
    })
}

const CONFIG: &str = r#"{
  "port": 8080,
  "readiness": {"path": "/ready"},
  "liveness": {"path": "/healthz", "expectStatus": 200, "timeoutMs": 500},
  "startup": {"file": "run/started"},
  "reload": {"path": "/-/reload"},
  "configDir": "etc/app"
}"#;

#[test]
fn probes_follow_the_app() {
    let pod = fake(vec![
        route("GET", 8080, "/ready", 503, "warming up\n"),
        route("GET", 8080, "/healthz", 204, ""),
    ]);
    let (revision, logs) = load(&pod, CONFIG).expect("load");
    assert_eq!(revision.info().world, World::PodAgent);
    assert_eq!(revision.name(), "app-probe");

    revision.on_start().expect("on-start");
    assert_eq!(
        logs.take()
            .iter()
            .map(|l| l.message.as_str())
            .collect::<Vec<_>>(),
        [
            "app-probe for shop/web-0: readiness GET :8080/ready, liveness GET :8080/healthz, startup file run/started"
        ]
    );

    let ready = revision.probe(ProbeKind::Readiness).expect("probe");
    assert!(!ready.healthy);
    assert_eq!(
        ready.message,
        "GET :8080/ready: 503 (want 200-399): warming up"
    );
    // 204 is not the 200 the liveness probe expects.
    let live = revision.probe(ProbeKind::Liveness).expect("probe");
    assert!(!live.healthy);
    assert_eq!(live.message, "GET :8080/healthz: 204 (want 200)");
    let started = revision.probe(ProbeKind::Startup).expect("probe");
    assert!(!started.healthy);
    assert!(
        started
            .message
            .starts_with("waiting for run/started: reading run/started:"),
        "{}",
        started.message
    );

    pod.files
        .lock()
        .expect("files")
        .insert("run/started".into(), vec![]);
    let started = revision.probe(ProbeKind::Startup).expect("probe");
    assert!(started.healthy, "{}", started.message);
    assert_eq!(
        *pod.requests.lock().expect("requests"),
        ["GET :8080/ready", "GET :8080/healthz"]
    );
}

#[test]
fn an_app_that_is_down_is_unhealthy_and_unconfigured_probes_pass() {
    let pod = fake(vec![]);
    let (revision, _) =
        load(&pod, r#"{"port": 8080, "readiness": {"path": "/ready"}}"#).expect("load");
    let ready = revision.probe(ProbeKind::Readiness).expect("probe");
    assert_eq!(
        (ready.healthy, ready.message.as_str()),
        (false, "GET :8080/ready: connection refused")
    );
    let live = revision.probe(ProbeKind::Liveness).expect("probe");
    assert_eq!(
        (live.healthy, live.message.as_str()),
        (true, "liveness not configured")
    );
}

#[test]
fn write_config_then_reload() {
    let pod = fake(vec![route("POST", 8080, "/-/reload", 200, "")]);
    let (revision, _) = load(&pod, CONFIG).expect("load");
    let reply = revision
        .on_command(r#"{"action": "write-config", "path": "app.yaml", "contents": "level: debug\n", "reload": true}"#)
        .expect("write-config");
    assert_eq!(
        reply,
        "wrote etc/app/app.yaml (13 bytes); reloaded (POST :8080/-/reload: 200)"
    );
    assert_eq!(
        pod.files
            .lock()
            .expect("files")
            .get("etc/app/app.yaml")
            .map(Vec::as_slice),
        Some(&b"level: debug\n"[..])
    );
    assert_eq!(
        *pod.requests.lock().expect("requests"),
        ["POST :8080/-/reload application/json "]
    );
    assert_eq!(
        revision.on_command("reload").expect("reload"),
        "reloaded (POST :8080/-/reload: 200)"
    );
}

#[test]
fn command_errors_name_the_problem() {
    let pod = fake(vec![route(
        "POST",
        8080,
        "/-/reload",
        500,
        "config invalid",
    )]);
    let (revision, _) = load(&pod, CONFIG).expect("load");
    let err = |payload: &str| revision.on_command(payload).expect_err(payload).to_string();
    assert!(err("reload").ends_with("reload: POST :8080/-/reload answered 500: config invalid"));
    assert!(
        err("reboot").contains(
            r#"unknown action "reboot": app-probe takes reload, restart and write-config"#
        )
    );
    assert!(
        err(r#"{"action": "write-config", "path": "../../etc/passwd", "contents": "x"}"#)
            .contains("write-config: path \"../../etc/passwd\" must be a relative path")
    );
    assert!(err(r#"{"action": "reload", "force": true}"#).contains("invalid command payload"));
    assert!(pod.files.lock().expect("files").is_empty());

    // No reload configured.
    let (plain, _) = load(&fake(vec![]), r#"{"port": 8080}"#).expect("load");
    assert!(
        plain
            .on_command("reload")
            .expect_err("no reload")
            .to_string()
            .contains("reload is not configured")
    );
}

#[test]
fn bad_config_fails_the_load_with_the_reason() {
    let pod = fake(vec![]);
    for (config, want) in [
        (r#"{"readiness": {"path": "/ready"}}"#, "readiness: no port"),
        (
            r#"{"port": 8080, "readiness": {"path": "ready"}}"#,
            r#"readiness.path "ready" must start with /"#,
        ),
        (
            r#"{"port": 8080, "liveness": {"file": "x"}}"#,
            "file is only for the startup probe",
        ),
        (r#"{"port": 8080, "prot": 1}"#, r#"unknown field "prot""#),
        (r#"{"configDir": "/etc"}"#, "configDir"),
    ] {
        let err = load(&pod, config)
            .err()
            .unwrap_or_else(|| panic!("{config} loads"));
        assert!(
            err.contains("init failed") && err.contains("invalid config: ") && err.contains(want),
            "{config}: {err}"
        );
    }
}

#[test]
fn its_go_unit_tests_pass() {
    bosun_conformance::go_test("plugins/app-probe");
}

/// A tiny app on the loopback: answers `GET /ready` with `ready_status`, `POST /-/reload`
/// with 200 (recording the body), anything else with 404. One connection at a time.
struct App {
    port: u16,
    ready_status: Arc<std::sync::atomic::AtomicU16>,
    reloads: Arc<std::sync::Mutex<Vec<String>>>,
}

fn serve_app() -> App {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicU16, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let ready_status = Arc::new(AtomicU16::new(503));
    let reloads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (status, seen) = (ready_status.clone(), reloads.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then the body by Content-Length.
            let (head, body_start) = loop {
                let Ok(n) = stream.read(&mut buf) else {
                    break (String::new(), 0);
                };
                if n == 0 {
                    break (String::new(), 0);
                }
                raw.extend_from_slice(&buf[..n]);
                if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    break (String::from_utf8_lossy(&raw[..p]).into_owned(), p + 4);
                }
            };
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while raw.len() < body_start + len {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                }
            }
            let body = String::from_utf8_lossy(&raw[body_start.min(raw.len())..]).into_owned();
            let (code, text) = if head.starts_with("GET /ready ") {
                (status.load(Ordering::SeqCst), "warming up")
            } else if head.starts_with("POST /-/reload ") {
                seen.lock().expect("reloads").push(body);
                (200, "reloaded")
            } else {
                (404, "no such page")
            };
            let response = format!(
                "HTTP/1.1 {code} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    App {
        port,
        ready_status,
        reloads,
    }
}

/// app-probe in the sidecar's own pod implementation: real HTTP to an app on the
/// loopback, real files under a shared directory.
#[test]
fn in_the_sidecars_pod_with_a_real_app() {
    use std::sync::atomic::Ordering;
    let app = serve_app();
    let shared = tempfile::tempdir().expect("tempdir");
    let pod = Arc::new(bosun_sidecar::pod::LocalPod::new(
        bosun_host::contract::PodInfo {
            namespace: "shop".into(),
            name: "web-0".into(),
            uid: "uid-1".into(),
            node_name: "node-1".into(),
            labels: r#"{"app":"web"}"#.into(),
        },
        shared.path().to_path_buf(),
    ));
    let logs = Arc::new(log::Memory::default());
    let services = bosun_host::Services {
        pod: Some(pod),
        log: logs.clone(),
        ..bosun_host::Services::offline()
    };
    let mut spec = Spec::new(services);
    spec.config = format!(
        r#"{{"port": {}, "readiness": {{"path": "/ready"}}, "startup": {{"file": "run/started"}},
            "reload": {{"path": "/-/reload"}}, "configDir": "etc"}}"#,
        app.port
    );
    let source = Source::file(wasm()).expect("read");
    let revision = Revision::load(shared_engine(), &source, spec).expect("load");

    let p = revision.probe(ProbeKind::Readiness).expect("probe");
    assert_eq!(
        (p.healthy, p.message),
        (
            false,
            format!("GET :{}/ready: 503 (want 200-399): warming up", app.port)
        )
    );
    app.ready_status.store(200, Ordering::SeqCst);
    let p = revision.probe(ProbeKind::Readiness).expect("probe");
    assert_eq!(
        (p.healthy, p.message),
        (true, format!("GET :{}/ready: 200", app.port))
    );

    assert!(!revision.probe(ProbeKind::Startup).expect("probe").healthy);
    std::fs::create_dir_all(shared.path().join("run")).expect("mkdir");
    std::fs::write(shared.path().join("run/started"), b"").expect("touch");
    assert!(revision.probe(ProbeKind::Startup).expect("probe").healthy);

    let reply = revision
        .on_command(r#"{"action": "write-config", "path": "app.yaml", "contents": "level: debug\n", "reload": true}"#)
        .expect("write-config");
    assert_eq!(
        reply,
        format!(
            "wrote etc/app.yaml (13 bytes); reloaded (POST :{}/-/reload: 200)",
            app.port
        )
    );
    assert_eq!(
        std::fs::read_to_string(shared.path().join("etc/app.yaml")).expect("written"),
        "level: debug\n"
    );
    assert_eq!(*app.reloads.lock().expect("reloads"), [""]);
    // A symlink out of the shared directory passes the plugin's own path check; the
    // sidecar refuses it, and the plugin reports the sidecar's reason.
    let outside = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(outside.path(), shared.path().join("etc/link")).expect("symlink");
    let err = revision
        .on_command(r#"{"action": "write-config", "path": "link/escape", "contents": "x"}"#)
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("write-config: writing etc/link/escape: \"etc/link/escape\" leads outside the shared directory"),
        "{err}"
    );
    assert!(!outside.path().join("escape").exists());
}
