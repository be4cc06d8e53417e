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
        err("restart")
            .contains(r#"unknown action "restart": app-probe takes reload and write-config"#)
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
    // The Go toolchain the build uses (BOSUN_GO, or .venv/bin/go from .ci/setup).
    let go = std::env::var_os("BOSUN_GO")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir().join("../../.venv/bin/go"));
    let out = std::process::Command::new(&go)
        .args(["test", "./..."])
        .current_dir(plugin_dir())
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env_remove("GOOS")
        .env_remove("GOARCH")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} (run .ci/setup): {e}", go.display()));
    assert!(
        out.status.success(),
        "go test in plugins/app-probe failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
