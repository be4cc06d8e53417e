//! `bosun plugin …`: build, inspect and test plugins offline; push them to a cluster and
//! manage their revisions there (`rollout`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use bosun_host::contract::{EventKind, ObjectRef, ReconcileRequest};
use bosun_host::host::{clock, commands, log};
use bosun_host::{Engine, Revision, Services, Source, Spec, Strategy, World};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::offline::{OfflineCache, parse_documents};

mod admission;
mod build;
pub mod rollout;
mod scaffold;
mod sdk;

pub use build::{Lang, build, build_with};
pub use scaffold::{NewArgs, scaffold};

/// `bosun plugin` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a plugin source folder that builds and passes its own test at once.
    ///
    /// The plugin depends on the SDK by path: `$BOSUN_SDK_DIR` (an sdk-guest folder) if
    /// set; else the checkout `bosun` was built from, if `bosun` runs from inside it; else
    /// the SDKs embedded in `bosun`, written on first use into
    /// `$BOSUN_CACHE_DIR` (default `$XDG_CACHE_HOME/bosun` or `~/.cache/bosun`) under
    /// `sdk/<version>-<hash>/`. The first JavaScript build there runs `npm ci` once.
    New(NewArgs),
    /// Build a plugin from its source folder into a component (Rust: Cargo.toml, Go: go.mod,
    /// JavaScript: package.json).
    Build(BuildArgs),
    /// Show a component's world, imports, exports, metadata, size and digest.
    Inspect(InspectArgs),
    /// Run one reconcile against an offline cache; print the commands and the outcome as JSON.
    /// With --replay, run every call of a recording and compare the commands. For an
    /// admission plugin, run one review (--review) and print its answer.
    Test(TestArgs),
    /// Store a component in the cluster and roll it out as the Plugin's new revision
    /// (direct, canary or shadow), granting the permissions its metadata asks.
    Push(rollout::PushArgs),
    /// Show Plugins: stable and canary revisions, conditions, per-revision counters.
    Status(rollout::StatusArgs),
    /// Show a Plugin's revision history.
    History(rollout::HistoryArgs),
    /// Ask the runtime to promote a Plugin's canary now.
    Promote(rollout::PromoteArgs),
    /// Ask the runtime to roll a Plugin back, or point it at an older revision (--to).
    Rollback(rollout::RollbackArgs),
    /// Show where a shadow revision decided differently from the stable one.
    Diff(DiffArgs),
}

/// Flags of `bosun plugin diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The plugin.
    pub name: String,
    /// The runtime's admin endpoint (BOSUN_ADMIN_ADDR sets it, as it sets `bosun up`'s).
    #[arg(long, env = "BOSUN_ADMIN_ADDR", default_value = "127.0.0.1:9464")]
    pub admin: std::net::SocketAddr,
    /// Print the JSON as served.
    #[arg(long)]
    pub json: bool,
}

/// `bosun plugin diff`: the differences the runtime recorded between a shadow revision
/// and the stable one.
fn diff(args: &DiffArgs) -> anyhow::Result<ExitCode> {
    let body = crate::serve::get(args.admin, &format!("/plugins/{}/diff", args.name))?;
    if args.json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let v: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| anyhow::anyhow!("the admin endpoint answered with invalid JSON: {e}"))?;
    match v["shadow"].as_str() {
        Some(d) => println!("shadow revision {d} of {}", args.name),
        None => println!(
            "{} has no shadow running (differences kept from the last one, if any)",
            args.name
        ),
    }
    let list = v["differences"].as_array().cloned().unwrap_or_default();
    println!("{} difference(s)", list.len());
    for d in list {
        println!("--- {} ({})", d["key"].as_str().unwrap_or("?"), d["events"]);
        println!("  stable: {}", d["stable"]);
        match (d["shadow"].get("Ok"), d["shadow"].get("Err")) {
            (Some(ok), _) => println!("  shadow: {ok}"),
            (_, Some(err)) => println!("  shadow failed: {}", err.as_str().unwrap_or("?")),
            _ => println!("  shadow: {}", d["shadow"]),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Flags of `bosun plugin build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The plugin's source folder.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// Flags of `bosun plugin inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The component (.wasm), or a plugin source folder to build first.
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Flags of `bosun plugin test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The component (.wasm), or a plugin source folder to build first.
    pub file: PathBuf,
    /// The object to reconcile (JSON or YAML), for a controller plugin.
    #[arg(long, required_unless_present_any = ["replay", "review"])]
    pub object: Option<PathBuf>,
    /// The AdmissionReview to answer (JSON or YAML), for an admission plugin.
    #[arg(long, conflicts_with_all = ["object", "replay", "event"])]
    pub review: Option<PathBuf>,
    /// A folder of objects (JSON/YAML files) the plugin sees in its cache.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Replay a recording (`bosun record`) instead: run every recorded call against its
    /// recorded cache reads and compare the commands with the recorded ones.
    #[arg(long, conflicts_with_all = ["object", "cache", "now_ms"])]
    pub replay: Option<PathBuf>,
    /// With --replay: run this plugin too and show only the calls where the two differ.
    #[arg(long, requires = "replay")]
    pub against: Option<PathBuf>,
    /// The config of the --against plugin, as JSON (default: --config).
    #[arg(long, requires = "against")]
    pub against_config: Option<String>,
    /// The plugin's config, as JSON.
    #[arg(long, default_value = "{}")]
    pub config: String,
    /// What happened to the object.
    #[arg(long, value_enum, default_value_t = Event::Added)]
    pub event: Event,
    /// The time the plugin's clock shows, in milliseconds since the Unix epoch (default: now).
    #[arg(long)]
    pub now_ms: Option<u64>,
    /// Per-call deadline in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub deadline_ms: u64,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Engine flags shared by the subcommands.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Cache compiled code here (default: ~/.cache/bosun/compiled or $BOSUN_COMPILED_CACHE).
    #[arg(long)]
    pub compiled_cache: Option<PathBuf>,
    /// Do not cache compiled code.
    #[arg(long, conflicts_with = "compiled_cache")]
    pub no_compiled_cache: bool,
}

impl EngineArgs {
    pub(crate) fn engine(&self) -> anyhow::Result<Engine> {
        let cache_dir = if self.no_compiled_cache {
            None
        } else {
            self.compiled_cache
                .clone()
                .or_else(crate::default_compiled_cache)
        };
        let config = bosun_host::engine::Config {
            cache_dir,
            max_instances: 16,
            ..Default::default()
        };
        Ok(Engine::new(&config)?)
    }
}

/// An event kind, as a flag value.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Event {
    /// The object appeared.
    Added,
    /// The object changed.
    Modified,
    /// The object is gone (the cache still returns its last state).
    Deleted,
    /// Periodic resync.
    Resync,
}

impl From<Event> for EventKind {
    fn from(e: Event) -> Self {
        match e {
            Event::Added => EventKind::Added,
            Event::Modified => EventKind::Modified,
            Event::Deleted => EventKind::Deleted,
            Event::Resync => EventKind::Resync,
        }
    }
}

/// Runs a `bosun plugin` subcommand.
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::New(args) => {
            let dir = scaffold(&args)?;
            println!("{}", dir.display());
            eprintln!(
                "created {}: try `bosun plugin test {} --object {}`",
                dir.display(),
                dir.display(),
                dir.join("testdata/pod.json").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Build(args) => {
            let wasm = build(&args.dir)?;
            println!("{}", wasm.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect(args) => inspect(&args),
        Command::Test(args) => test(&args),
        Command::Push(args) => rollout::push(&args),
        Command::Status(args) => rollout::status(&args),
        Command::History(args) => rollout::history(&args),
        Command::Promote(args) => rollout::promote(&args),
        Command::Rollback(args) => rollout::rollback(&args),
        Command::Diff(args) => diff(&args),
    }
}

/// A component path: the file itself, or the output of building a source folder.
pub(crate) fn component(path: &Path) -> anyhow::Result<Source> {
    let file = if path.is_dir() {
        build(path)?
    } else {
        path.to_path_buf()
    };
    Source::file(&file).with_context(|| format!("cannot read the plugin {}", file.display()))
}

fn inspect(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let source = component(&args.file)?;
    let engine = args.engine.engine()?;
    let revision = Revision::inspect(&engine, &source, Spec::new(Services::offline()))?;
    let info = revision.info();
    let meta = revision.metadata();
    if args.json {
        let out = json!({ "info": info, "metadata": meta });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("plugin       {} {}", meta.name, meta.version);
    if !meta.description.is_empty() {
        println!("description  {}", meta.description);
    }
    println!("world        bosun:operator/{}@0.1.0", info.world);
    println!("digest       {}", info.digest);
    println!("size         {} bytes", info.size);
    println!(
        "load         {:.1} ms ({:?})",
        info.load_micros as f64 / 1000.0,
        info.compiled
    );
    for s in &meta.subscriptions {
        let ns = s
            .namespace
            .as_deref()
            .map(|n| format!(" in {n}"))
            .unwrap_or_default();
        let sel = s
            .label_selector
            .as_deref()
            .map(|l| format!(" where {l}"))
            .unwrap_or_default();
        println!("subscribes   {}/{}{ns}{sel}", s.api_version, s.kind);
    }
    for p in &meta.permissions {
        let verbs: Vec<_> = p.verbs.iter().map(|v| v.as_str()).collect();
        println!(
            "may          {} on {}/{}",
            verbs.join(", "),
            p.api_version,
            p.kind
        );
    }
    for i in &info.imports {
        println!("imports      {i}");
    }
    for e in &info.exports {
        println!("exports      {e}");
    }
    Ok(ExitCode::SUCCESS)
}

fn test(args: &TestArgs) -> anyhow::Result<ExitCode> {
    if let Some(recording) = &args.replay {
        return crate::record::replay(args, recording);
    }
    let mut cache = OfflineCache::default();
    if let Some(dir) = &args.cache {
        cache.load_dir(dir)?;
    }
    // What to run: the object to reconcile, or the AdmissionReview to answer. Which one the
    // plugin takes is known once it is loaded, so both are read (and checked) first.
    let input = match (&args.object, &args.review) {
        (Some(path), _) => {
            let object = read_one(path, "object")?;
            let target: ObjectRef = cache
                .insert(&object)
                .with_context(|| format!("in {}", path.display()))?;
            Input::Object(target)
        }
        (None, Some(path)) => Input::Review(admission::read_review(path)?),
        (None, None) => bail!("--object FILE, --review FILE or --replay REC.jsonl is required"),
    };
    serde_json::from_str::<Value>(&args.config).context("--config is not valid JSON")?;

    let recorder = Arc::new(commands::Recorder::default());
    let logs = Arc::new(log::Memory::default());
    let now = args
        .now_ms
        .unwrap_or_else(|| clock::Clock::now_ms(&clock::System));
    let services = Services {
        cache: Arc::new(cache),
        commands: recorder.clone(),
        log: logs.clone(),
        clock: Arc::new(clock::Fixed(now)),
        ..Services::offline()
    };
    let mut spec = Spec::new(services);
    spec.config = args.config.clone();
    spec.strategy = Strategy::Fresh;
    spec.limits.deadline = std::time::Duration::from_millis(args.deadline_ms);

    let source = component(&args.file)?;
    let engine = args.engine.engine()?;
    let revision = Revision::load(&engine, &source, spec)?;
    let world = revision.info().world;
    let target = match (world, input) {
        (World::Controller, Input::Object(target)) => target,
        (World::Admission, Input::Review(review)) => {
            return admission::review(&revision, &review, &logs);
        }
        (World::Controller, Input::Review(_)) => bail!(
            "{} is a controller plugin: pass the object to reconcile with --object FILE \
             (--review is for admission plugins)",
            source.origin
        ),
        (World::Admission, Input::Object(_)) => bail!(
            "{} is an admission plugin: pass an AdmissionReview with --review FILE \
             (--object is for controller plugins)",
            source.origin
        ),
        (world, _) => bail!(
            "{} is a {world} plugin; `plugin test` runs controller and admission plugins",
            source.origin
        ),
    };
    let request = ReconcileRequest {
        target,
        events: vec![args.event.into()],
        outcomes: vec![],
        attempt: 0,
    };
    let result = revision.reconcile(&request);
    let commands: Vec<Value> = recorder.take().iter().map(|c| c.to_json()).collect();
    let logs = log_lines(&logs);
    let (status, outcome) = match &result {
        Ok(o) => ("ok", json!({ "requeueAfterMs": o.requeue_after_ms })),
        Err(e) => (
            "error",
            json!({ "kind": e.kind(), "message": e.to_string() }),
        ),
    };
    let out = json!({
        "plugin": revision.name(),
        "revision": revision.digest(),
        "target": request.target.key(),
        "status": status,
        "outcome": outcome,
        "commands": commands,
        "logs": logs,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What `plugin test` runs: a reconcile of an object, or a review.
enum Input {
    /// The object to reconcile, inserted in the cache.
    Object(ObjectRef),
    /// The AdmissionReview to answer.
    Review(Value),
}

/// The first object of a JSON or YAML file.
fn read_one(path: &Path, what: &str) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    parse_documents(&text)
        .with_context(|| format!("{} is not valid JSON or YAML", path.display()))?
        .into_iter()
        .next()
        .with_context(|| format!("no {what} in {}", path.display()))
}

/// The plugin's log lines of the call, as `plugin test` prints them.
fn log_lines(logs: &log::Memory) -> Vec<Value> {
    logs.take().iter().map(|l| l.to_json()).collect()
}
