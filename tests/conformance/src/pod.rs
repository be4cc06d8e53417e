//! The pod-agent half of the suite: one specification (`pod_cases.json`) run through
//! bosun-host's pod-agent path against a fake pod, for the pod-agent conformance plugin
//! in each language.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use bosun_host::contract::{HttpResponse, PodInfo, ProbeKind};
use bosun_host::host::{cache, clock, commands, log, pod};
use bosun_host::{Engine, Revision, Services, Source, Spec, Strategy};
use serde_json::{Value, json};

use crate::{Lang, NOW_MS, crate_dir};

/// The folder of the pod-agent conformance plugin in `lang`.
pub fn plugin_dir(lang: Lang) -> std::path::PathBuf {
    crate_dir()
        .join("plugins")
        .join(format!("{}-pod", lang.as_str()))
}

/// Builds the pod-agent conformance plugin in `lang` (once per process, so tests running
/// in parallel never build into the same folder at once); returns the component.
pub fn component(lang: Lang) -> anyhow::Result<std::path::PathBuf> {
    /// Each language's build result, kept for the rest of the process.
    type Built = Vec<(Lang, Result<std::path::PathBuf, String>)>;
    static BUILT: std::sync::OnceLock<Mutex<Built>> = std::sync::OnceLock::new();
    let mut built = lock(BUILT.get_or_init(Mutex::default));
    if let Some((_, r)) = built.iter().find(|(l, _)| *l == lang) {
        return r.clone().map_err(anyhow::Error::msg);
    }
    let result = match lang {
        Lang::Rust => crate::build_rust(&plugin_dir(lang), &crate::guest_target_dir()),
        Lang::Go | Lang::Js => bosun_cli::plugin::build_with(&plugin_dir(lang), false),
    }
    .map_err(|e| {
        format!(
            "building the {} pod-agent conformance plugin: {e:#}",
            lang.as_str()
        )
    });
    built.push((lang, result.clone()));
    result.map_err(anyhow::Error::msg)
}

/// One answer of the fake app: a response, or an error (`error` set).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    /// `GET` or `POST`; any when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// The loopback port.
    pub port: u16,
    /// The path, with its query.
    pub path: String,
    /// The status of the response.
    #[serde(default)]
    pub status: u16,
    /// The response's headers.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The response's body.
    #[serde(default)]
    pub body: String,
    /// The host's error instead of a response (e.g. `timed out`).
    #[serde(default)]
    pub error: Option<String>,
}

/// One case of the pod-agent specification.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodCase {
    /// What it checks.
    pub name: String,
    /// The plugin's config.
    #[serde(default = "crate::empty_object")]
    pub config: Value,
    /// The pod (`namespace`, `name`, `uid`, `nodeName`, `labels`); a default pod if absent.
    #[serde(default)]
    pub pod: Option<Value>,
    /// What the app answers; anything else is `connection refused`.
    #[serde(default)]
    pub http: Vec<Route>,
    /// The shared directory's files at the start.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// The calls, in order, on one instance: `{"onStart": null}`, `{"probe": KIND}`,
    /// `{"onCommand": PAYLOAD}` (a string as is, anything else as JSON), `{"onStop": null}`.
    pub calls: Vec<Value>,
    /// What every language must produce.
    pub expect: Value,
}

/// The pod-agent specification: every case of `pod_cases.json`.
pub fn cases() -> anyhow::Result<Vec<PodCase>> {
    let text = std::fs::read_to_string(crate_dir().join("pod_cases.json"))?;
    Ok(serde_json::from_str(&text)?)
}

/// A pod for tests: serves HTTP from a table, keeps files in memory, records every
/// request. Paths that leave the shared directory are refused like the sidecar does.
#[derive(Debug, Default)]
pub struct FakePod {
    /// The pod's identity.
    pub info: Option<PodInfo>,
    /// What the app answers.
    pub routes: Vec<Route>,
    /// The shared directory.
    pub files: Mutex<BTreeMap<String, Vec<u8>>>,
    /// Every HTTP request, as `GET :8080/path` or `POST :8080/path type body`.
    pub requests: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FakePod {
    fn answer(&self, method: &str, port: u16, path: &str) -> Result<HttpResponse, String> {
        let route = self.routes.iter().find(|r| {
            r.port == port && r.path == path && r.method.as_deref().is_none_or(|m| m == method)
        });
        match route {
            None => Err("connection refused".to_owned()),
            Some(Route { error: Some(e), .. }) => Err(e.clone()),
            Some(r) => Ok(HttpResponse {
                status: r.status,
                headers: r.headers.clone(),
                body: r.body.as_bytes().to_vec(),
            }),
        }
    }

    fn check_path(path: &str) -> Result<(), String> {
        if path.is_empty()
            || path.starts_with('/')
            || path.split('/').any(|c| c == ".." || c.is_empty())
        {
            return Err(format!("{path}: outside the shared directory"));
        }
        Ok(())
    }
}

impl pod::Pod for FakePod {
    fn info(&self) -> PodInfo {
        self.info.clone().unwrap_or(PodInfo {
            namespace: "shop".to_owned(),
            name: "web-0".to_owned(),
            uid: "0d9c-uid".to_owned(),
            node_name: "node-1".to_owned(),
            labels: r#"{"app":"web"}"#.to_owned(),
        })
    }

    fn http_get(&self, port: u16, path: &str, _timeout_ms: u32) -> Result<HttpResponse, String> {
        lock(&self.requests).push(format!("GET :{port}{path}"));
        self.answer("GET", port, path)
    }

    fn http_post(
        &self,
        port: u16,
        path: &str,
        content_type: &str,
        body: &[u8],
        _timeout_ms: u32,
    ) -> Result<HttpResponse, String> {
        lock(&self.requests).push(format!(
            "POST :{port}{path} {content_type} {}",
            String::from_utf8_lossy(body)
        ));
        self.answer("POST", port, path)
    }

    fn read_file(&self, path: &str) -> Result<Vec<u8>, String> {
        Self::check_path(path)?;
        lock(&self.files)
            .get(path)
            .cloned()
            .ok_or_else(|| format!("{path}: no such file"))
    }

    fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), String> {
        Self::check_path(path)?;
        lock(&self.files).insert(path.to_owned(), contents.to_vec());
        Ok(())
    }
}

fn pod_info(v: &Value) -> PodInfo {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
    PodInfo {
        namespace: s("namespace"),
        name: s("name"),
        uid: s("uid"),
        node_name: s("nodeName"),
        labels: v.get("labels").map_or("{}".to_owned(), Value::to_string),
    }
}

fn probe_kind(name: &str) -> anyhow::Result<ProbeKind> {
    Ok(match name {
        "readiness" => ProbeKind::Readiness,
        "liveness" => ProbeKind::Liveness,
        "startup" => ProbeKind::Startup,
        other => bail!("unknown probe kind {other}"),
    })
}

/// Services for a pod-agent plugin: nothing but the pod, a log and a fixed clock.
pub fn services(pod: Arc<FakePod>, logs: Arc<log::Memory>) -> Services {
    Services {
        cache: Arc::new(cache::Empty),
        state: Arc::new(cache::MemoryState::default()),
        commands: Arc::new(commands::Recorder::default()),
        log: logs,
        clock: Arc::new(clock::Fixed(NOW_MS)),
        pod: Some(pod),
    }
}

/// Runs one case against a component on one warm instance; returns what happened as
/// JSON: `{"results": [...], "logs": [...], "requests": [...], "files": {...}}`, or
/// `{"status": "load-error", "error": ...}`.
pub fn run(engine: &Engine, source: &Source, case: &PodCase) -> anyhow::Result<Value> {
    let pod = Arc::new(FakePod {
        info: case.pod.as_ref().map(pod_info),
        routes: case.http.clone(),
        files: Mutex::new(
            case.files
                .iter()
                .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
                .collect(),
        ),
        requests: Mutex::default(),
    });
    let logs = Arc::new(log::Memory::default());
    let mut spec = Spec::new(services(pod.clone(), logs.clone()));
    spec.config = case.config.to_string();
    spec.strategy = Strategy::Warm {
        recycle_after: 1_000,
        max_idle: 1,
    };
    spec.limits.deadline = std::time::Duration::from_secs(10);
    let revision = match Revision::load(engine, source, spec) {
        Ok(r) => r,
        Err(e) => return Ok(json!({ "status": "load-error", "error": e.to_string() })),
    };
    let unit = |r: Result<(), bosun_host::call::Error>| match r {
        Ok(()) => json!({ "ok": null }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    let mut results = Vec::new();
    for call in &case.calls {
        let (name, arg) = call
            .as_object()
            .and_then(|o| o.iter().next())
            .context("a call is a one-key object")?;
        results.push(match name.as_str() {
            "onStart" => unit(revision.on_start()),
            "onStop" => unit(revision.on_stop()),
            "probe" => match revision.probe(probe_kind(arg.as_str().unwrap_or(""))?) {
                Ok(p) => json!({ "healthy": p.healthy, "message": p.message }),
                Err(e) => json!({ "error": e.to_string() }),
            },
            "onCommand" => {
                let payload = match arg {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                match revision.on_command(&payload) {
                    Ok(reply) => json!({ "ok": reply }),
                    Err(e) => json!({ "error": e.to_string() }),
                }
            }
            other => bail!("unknown call {other}"),
        });
    }
    let files: BTreeMap<String, String> = lock(&pod.files)
        .iter()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    Ok(json!({
        "results": results,
        "logs": logs.take().iter().map(|l| l.to_json()).collect::<Vec<_>>(),
        "requests": *lock(&pod.requests),
        "files": files,
    }))
}
