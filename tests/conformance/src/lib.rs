//! The conformance suite's harness: builds the conformance plugin in each language and
//! runs one case (cache, object, events, config) through bosun-host, returning what the
//! plugin did as JSON (status, outcome or error, commands, logs).
//!
//! The specification is data: `cases.json` (controllers) and `pod_cases.json` (pod
//! agents, see [`pod`]), described in `README.md`.
#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, bail};
use bosun_cli::offline::OfflineCache;
use bosun_host::contract::{CommandOutcome, EventKind, ObjectRef, ReconcileRequest, Verdict};
use bosun_host::host::{cache, clock, commands, log};
use bosun_host::{Engine, Revision, Services, Source, Spec, Strategy};
use serde_json::{Value, json};

pub mod peers;
pub mod pod;

/// A guest language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    /// sdk-guest/rust.
    Rust,
    /// sdk-guest/go.
    Go,
    /// sdk-guest/js.
    Js,
}

impl Lang {
    /// Every language, Rust (the reference) first.
    pub const ALL: [Lang; 3] = [Lang::Rust, Lang::Go, Lang::Js];

    /// `rust`, `go` or `js`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Go => "go",
            Lang::Js => "js",
        }
    }
}

/// This crate's folder.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `go test ./...` in `dir` (relative to the repository root) with the Go toolchain
/// the builds use (`BOSUN_GO`, or `.venv/bin/go` from `.ci/setup`); panics with its
/// output when it fails.
pub fn go_test(dir: &str) {
    let go = go_path();
    let out = go_command()
        .args(["test", "./..."])
        .current_dir(crate_dir().join("../..").join(dir))
        .env("GOFLAGS", "-mod=mod")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} (run .ci/setup): {e}", go.display()));
    assert!(
        out.status.success(),
        "go test in {dir} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Go toolchain: `$BOSUN_GO`, else the checkout's `.venv/bin/go` (`.ci/setup`).
fn go_path() -> PathBuf {
    std::env::var_os("BOSUN_GO")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir().join("../../.venv/bin/go"))
}

/// `go` for the host, offline: no toolchain download, no module proxy.
pub fn go_command() -> Command {
    let mut cmd = Command::new(go_path());
    cmd.env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env_remove("GOOS")
        .env_remove("GOARCH");
    cmd
}

/// The folder of the conformance plugin in `lang`.
pub fn plugin_dir(lang: Lang) -> PathBuf {
    crate_dir().join("plugins").join(lang.as_str())
}

/// Where guest builds go: `$CARGO_TARGET_DIR/conformance-guests` (or the workspace's
/// `target/`), never the outer cargo's own build directory, so no lock is shared.
pub fn guest_target_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir().join("../../target"));
    target.join("conformance-guests")
}

/// Builds a Rust plugin crate (its own workspace) for wasm32-wasip2 with the `plugin`
/// profile into `target_dir`; returns the component.
pub fn build_rust(dir: &Path, target_dir: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--profile", "plugin", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    for var in [
        "CARGO_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().context("cannot run cargo")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("wasm32-wasip2") && stderr.contains("target may not be installed") {
            bail!("the wasm32-wasip2 target is missing: run `rustup target add wasm32-wasip2`");
        }
        bail!("building {} failed:\n{stderr}", dir.display());
    }
    let name = std::fs::read_to_string(dir.join("Cargo.toml"))?
        .lines()
        .find_map(|l| {
            l.strip_prefix("name = \"")
                .and_then(|r| r.strip_suffix('"'))
                .map(str::to_owned)
        })
        .context("no package name")?;
    Ok(target_dir
        .join("wasm32-wasip2/plugin")
        .join(format!("{}.wasm", name.replace('-', "_"))))
}

/// Builds the conformance plugin in `lang` (once per process); returns the component.
/// A missing toolchain is an error naming the command that installs it.
pub fn component(lang: Lang) -> anyhow::Result<PathBuf> {
    /// Each language's build result, kept for the rest of the process.
    type Built = Vec<(Lang, Result<PathBuf, String>)>;
    static BUILT: OnceLock<Mutex<Built>> = OnceLock::new();
    let built = BUILT.get_or_init(Mutex::default);
    let mut built = built
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, r)) = built.iter().find(|(l, _)| *l == lang) {
        return r.clone().map_err(anyhow::Error::msg);
    }
    let result = match lang {
        Lang::Rust => build_rust(&plugin_dir(lang), &guest_target_dir()),
        Lang::Go | Lang::Js => bosun_cli::plugin::build_with(&plugin_dir(lang), false),
    }
    .map_err(|e| format!("building the {} conformance plugin: {e:#}", lang.as_str()));
    built.push((lang, result.clone()));
    result.map_err(anyhow::Error::msg)
}

/// One case of the specification.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Case {
    /// What it checks.
    pub name: String,
    /// The plugin's config (a `script` of steps, see README.md).
    #[serde(default = "empty_object")]
    pub config: Value,
    /// The object reconciled; put in the cache unless `absent`.
    pub object: Value,
    /// The object is not in the cache (a missing object).
    #[serde(default)]
    pub absent: bool,
    /// Other objects in the cache.
    #[serde(default)]
    pub cache: Vec<Value>,
    /// Events of the request (default `["added"]`).
    #[serde(default)]
    pub events: Vec<String>,
    /// The request's attempt.
    #[serde(default)]
    pub attempt: u32,
    /// Outcomes reported with the request: `{"id", "verdict", "message"}`.
    #[serde(default)]
    pub outcomes: Vec<Value>,
    /// What every language must produce.
    pub expect: Value,
}

pub(crate) fn empty_object() -> Value {
    json!({})
}

/// The specification: every case of `cases.json`.
pub fn cases() -> anyhow::Result<Vec<Case>> {
    let text = std::fs::read_to_string(crate_dir().join("cases.json"))?;
    Ok(serde_json::from_str(&text)?)
}

/// The fixed clock of every case: 2026-11-29T03:00:00Z.
pub const NOW_MS: u64 = 1_795_921_200_000;

fn event(name: &str) -> anyhow::Result<EventKind> {
    Ok(match name {
        "added" => EventKind::Added,
        "modified" => EventKind::Modified,
        "deleted" => EventKind::Deleted,
        "resync" => EventKind::Resync,
        "requeued" => EventKind::Requeued,
        other => bail!("unknown event {other}"),
    })
}

fn verdict(name: &str) -> anyhow::Result<Verdict> {
    Ok(match name {
        "pending" => Verdict::Pending,
        "executed" => Verdict::Executed,
        "dry-run" => Verdict::DryRun,
        "refused" => Verdict::Refused,
        "failed" => Verdict::Failed,
        other => bail!("unknown verdict {other}"),
    })
}

/// Runs one case against a component; returns what happened as JSON:
/// `{"status": "ok", "requeueAfterMs": n|null, "commands": [...], "logs": [...]}` or
/// `{"status": "error", "error": "...", ...}`; a failed load is `{"status": "load-error"}`.
pub fn run(engine: &Engine, source: &Source, case: &Case) -> anyhow::Result<Value> {
    let mut cache = OfflineCache::default();
    for object in &case.cache {
        cache.insert(object)?;
    }
    let target = if case.absent {
        ObjectRef::of(&case.object).context("the object needs an identity")?
    } else {
        cache.insert(&case.object)?
    };
    let recorder = Arc::new(commands::Recorder::default());
    let logs = Arc::new(log::Memory::default());
    let services = Services {
        cache: Arc::new(cache),
        state: Arc::new(cache::MemoryState::default()),
        commands: recorder.clone(),
        log: logs.clone(),
        clock: Arc::new(clock::Fixed(NOW_MS)),
        pod: None,
    };
    let mut spec = Spec::new(services);
    spec.config = case.config.to_string();
    spec.strategy = Strategy::Fresh;
    spec.limits.deadline = std::time::Duration::from_secs(10);
    let revision = match Revision::load(engine, source, spec) {
        Ok(r) => r,
        Err(e) => return Ok(json!({ "status": "load-error", "error": e.to_string() })),
    };
    let events = if case.events.is_empty() {
        vec![EventKind::Added]
    } else {
        case.events
            .iter()
            .map(|e| event(e))
            .collect::<anyhow::Result<_>>()?
    };
    let outcomes = case
        .outcomes
        .iter()
        .map(|o| {
            Ok(CommandOutcome {
                id: o["id"].as_u64().context("outcome id")?,
                verdict: verdict(o["verdict"].as_str().unwrap_or(""))?,
                message: o["message"].as_str().unwrap_or("").to_owned(),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let request = ReconcileRequest {
        target,
        events,
        outcomes,
        attempt: case.attempt,
    };
    let result = revision.reconcile(&request);
    let commands: Vec<Value> = recorder.take().iter().map(|c| c.to_json()).collect();
    let logs: Vec<Value> = logs.take().iter().map(|l| l.to_json()).collect();
    let mut out = match &result {
        Ok(o) => json!({ "status": "ok", "requeueAfterMs": o.requeue_after_ms }),
        Err(e) => json!({ "status": "error", "error": e.to_string() }),
    };
    out["commands"] = Value::Array(commands);
    out["logs"] = Value::Array(logs);
    Ok(out)
}

/// The metadata a component declares, as JSON.
pub fn metadata(engine: &Engine, source: &Source) -> anyhow::Result<Value> {
    let revision = Revision::inspect(engine, source, Spec::new(Services::offline()))?;
    Ok(serde_json::to_value(revision.metadata())?)
}

/// An engine with a compiled-code cache in `dir` (`None`: no cache).
pub fn engine(cache_dir: Option<PathBuf>) -> anyhow::Result<Engine> {
    let config = bosun_host::engine::Config {
        cache_dir,
        max_instances: 16,
        ..Default::default()
    };
    Ok(Engine::new(&config)?)
}
