//! `bosun record` (ask a running runtime to record a plugin's calls into a file) and the
//! replay behind `bosun plugin test --replay` (run a plugin offline on each recorded call,
//! with a cache that answers exactly the recorded reads, and compare the commands).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use bosun_api::Selector;
use bosun_host::contract::{Command, ObjectRef};
use bosun_host::host::cache::{Cache, ListQuery};
use bosun_host::host::clock::Clock;
use bosun_host::host::commands::Commands;
use bosun_host::host::{CallInfo, log};
use bosun_host::{Revision, Services, Spec, Strategy, World};
use bosun_runtime::record::{DEFAULT_SECONDS, Line, MAX_SECONDS, Outcome, Query, Read, Submitted};
use clap::Args;
use serde_json::{Value, json};

use crate::plugin::TestArgs;

/// Flags of `bosun record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The plugin whose calls to record.
    #[arg(long)]
    pub plugin: String,
    /// Where to write the recording (JSON lines, one per call).
    #[arg(long)]
    pub out: PathBuf,
    /// How long to record.
    #[arg(long, default_value_t = DEFAULT_SECONDS,
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS))]
    pub seconds: u64,
    /// The runtime's admin endpoint (BOSUN_ADMIN_ADDR sets it, as it sets `bosun up`'s).
    #[arg(long, env = "BOSUN_ADMIN_ADDR", default_value = "127.0.0.1:9464")]
    pub admin: SocketAddr,
}

/// `bosun record`: records the plugin's calls for `seconds` and writes them to `out`.
pub fn record(args: &RecordArgs) -> anyhow::Result<ExitCode> {
    let _span = tracing::info_span!("bosun.cli.record", plugin = %args.plugin).entered();
    let name = &args.plugin;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        bail!("--plugin {name:?} is not a plugin name (letters, digits, '-', '_', '.')");
    }
    let path = format!("/plugins/{name}/record?seconds={}", args.seconds);
    let announce = format!("recording {name} for {}s ...", args.seconds);
    let (status, headers, body) = http_get(args.admin, &path, args.seconds + 30, &announce)?;
    if status != 200 {
        let reason = body.lines().next().unwrap_or_default();
        bail!("cannot record {name}: {reason} (HTTP {status})");
    }
    std::fs::write(&args.out, &body)
        .with_context(|| format!("cannot write the recording to {}", args.out.display()))?;
    let calls = body.lines().filter(|l| !l.trim().is_empty()).count();
    let dropped = headers
        .lines()
        .find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.eq_ignore_ascii_case("bosun-dropped-calls")
                .then(|| v.trim().parse::<u64>().ok())?
        })
        .unwrap_or(0);
    if dropped > 0 {
        eprintln!("warning: {dropped} calls were not kept (the recording reached its size cap)");
    }
    println!(
        "recorded {calls} call(s) of {name} in {}s into {}",
        args.seconds,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A plain HTTP/1.0 GET that may wait `timeout_secs` for the answer: (status, headers,
/// body). `announce` is printed once connected.
fn http_get(
    addr: SocketAddr,
    path: &str,
    timeout_secs: u64,
    announce: &str,
) -> anyhow::Result<(u16, String, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).with_context(|| {
        format!(
            "cannot reach the runtime's admin endpoint at {addr}: is `bosun up` or `bosun run` running?"
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(timeout_secs)))?;
    eprintln!("{announce}");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("no answer from the admin endpoint at {addr}"))?;
    let response = String::from_utf8(response).context("the admin endpoint answered non-UTF-8")?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .context("malformed HTTP status line")?;
    Ok((status, headers.to_owned(), body.to_owned()))
}

/// Reads a recording: one [`Line`] per non-empty line, all of one plugin.
pub fn read_recording(path: &Path) -> anyhow::Result<Vec<Line>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the recording {}", path.display()))?;
    let mut lines = Vec::new();
    for (n, text) in text.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(text).with_context(|| {
            format!(
                "{} line {} is not a recorded call (make one with `bosun record`)",
                path.display(),
                n + 1
            )
        })?;
        if let Some(first) = lines.first().map(|l: &Line| &l.plugin)
            && *first != line.plugin
        {
            bail!(
                "{} line {} records plugin {}, the lines before it {first}: one plugin per recording",
                path.display(),
                n + 1,
                line.plugin
            );
        }
        lines.push(line);
    }
    if lines.is_empty() {
        bail!("{} holds no recorded call", path.display());
    }
    Ok(lines)
}

/// The services of a replayed call: the recorded reads, the recorded answers of the
/// pipe, the recorded clock.
#[derive(Debug, Default)]
struct Replay {
    tape: Mutex<Tape>,
    now_ms: AtomicU64,
}

#[derive(Debug, Default)]
struct Tape {
    reads: Vec<(Read, bool)>,
    recorded: Vec<Submitted>,
    submitted: Vec<Value>,
    unrecorded: Vec<String>,
}

impl Replay {
    fn load(&self, line: &Line) {
        let mut tape = self.tape.lock().unwrap_or_else(PoisonError::into_inner);
        *tape = Tape {
            reads: line.reads.iter().map(|r| (r.clone(), false)).collect(),
            recorded: line.commands.clone(),
            ..Tape::default()
        };
        self.now_ms.store(line.at_ms, Ordering::Relaxed);
    }

    fn take(&self) -> (Vec<Value>, Vec<String>) {
        let mut tape = self.tape.lock().unwrap_or_else(PoisonError::into_inner);
        (
            std::mem::take(&mut tape.submitted),
            std::mem::take(&mut tape.unrecorded),
        )
    }

    /// The answer of the first unused recorded read `matches` accepts (else of the first
    /// one: the same read made twice); `None` when nothing was recorded for it.
    fn answer<T>(
        &self,
        matches: impl Fn(&Read) -> Option<T>,
        describe: impl FnOnce() -> String,
    ) -> Option<T> {
        let mut tape = self.tape.lock().unwrap_or_else(PoisonError::into_inner);
        let found = tape
            .reads
            .iter()
            .position(|(r, used)| !used && matches(r).is_some())
            .or_else(|| tape.reads.iter().position(|(r, _)| matches(r).is_some()));
        match found {
            Some(i) => {
                tape.reads[i].1 = true;
                matches(&tape.reads[i].0)
            }
            None => {
                tape.unrecorded.push(describe());
                None
            }
        }
    }
}

fn text(v: &Value) -> Arc<str> {
    match v {
        Value::String(s) => Arc::from(s.as_str()),
        v => Arc::from(v.to_string()),
    }
}

fn same_query(recorded: &Query, query: &ListQuery<'_>) -> bool {
    let selector = match recorded.label_selector.as_deref().map(Selector::parse) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => return false,
    };
    recorded.api_version == query.api_version
        && recorded.kind == query.kind
        && recorded.namespace.as_deref() == query.namespace
        && selector.as_ref() == query.selector
}

impl Cache for Replay {
    fn get(&self, _: &CallInfo, target: &ObjectRef) -> Option<Arc<str>> {
        self.answer(
            |r| match r {
                Read::Get { get, answer } if get == target => Some(answer.as_ref().map(text)),
                _ => None,
            },
            || format!("get {target}"),
        )
        .flatten()
    }

    fn list(&self, _: &CallInfo, query: &ListQuery<'_>) -> Vec<Arc<str>> {
        self.answer(
            |r| match r {
                Read::List { list, answer } if same_query(list, query) => {
                    Some(answer.iter().map(text).collect())
                }
                _ => None,
            },
            || {
                format!(
                    "list {}",
                    serde_json::to_string(&Query::of(query)).unwrap_or_default()
                )
            },
        )
        .unwrap_or_default()
    }
}

impl Commands for Replay {
    /// Accepts a command, or refuses it with the recorded reason when the recorded call
    /// submitted the same command at this place and the pipe refused it.
    fn submit(&self, _: &CallInfo, command: Command) -> Result<u64, String> {
        let json = command.to_json();
        let mut tape = self.tape.lock().unwrap_or_else(PoisonError::into_inner);
        let n = tape.submitted.len();
        let refused = tape
            .recorded
            .get(n)
            .filter(|r| r.command == json)
            .and_then(|r| r.refused.clone());
        tape.submitted.push(json);
        match refused {
            Some(reason) => Err(reason),
            None => Ok(n as u64 + 1),
        }
    }
}

impl Clock for Replay {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }
}

/// A plugin loaded for replay.
struct Player {
    revision: Revision,
    replay: Arc<Replay>,
    logs: Arc<log::Memory>,
}

/// What one plugin did on one recorded call.
struct Run {
    commands: Vec<Value>,
    unrecorded: Vec<String>,
    result: Outcome,
}

impl Run {
    fn failed(&self) -> bool {
        matches!(self.result, Outcome::Error { .. })
    }

    /// Same commands, and both succeeded or both failed the same way.
    fn same(&self, commands: &[Value], result: &Outcome) -> bool {
        let kind = |o: &Outcome| match o {
            Outcome::Ok { .. } => None,
            Outcome::Error { kind, .. } => Some(kind.clone()),
        };
        self.commands == commands && kind(&self.result) == kind(result)
    }

    fn to_json(&self) -> Value {
        let mut v = json!({ "result": self.result, "commands": self.commands });
        if !self.unrecorded.is_empty() {
            v["unrecordedReads"] = json!(self.unrecorded);
        }
        v
    }
}

impl Player {
    fn load(args: &TestArgs, file: &Path, config: &str) -> anyhow::Result<Self> {
        serde_json::from_str::<Value>(config)
            .with_context(|| format!("the config for {} is not valid JSON", file.display()))?;
        let replay = Arc::new(Replay::default());
        let logs = Arc::new(log::Memory::default());
        let services = Services {
            cache: replay.clone(),
            commands: replay.clone(),
            log: logs.clone(),
            clock: replay.clone(),
            ..Services::offline()
        };
        let mut spec = Spec::new(services);
        spec.config = config.to_owned();
        spec.strategy = Strategy::Fresh;
        spec.limits.deadline = Duration::from_millis(args.deadline_ms);
        let source = crate::plugin::component(file)?;
        let engine = args.engine.engine()?;
        let revision = Revision::load(&engine, &source, spec)?;
        if revision.info().world != World::Controller {
            bail!(
                "{} is a {} plugin; replay runs controller plugins",
                source.origin,
                revision.info().world
            );
        }
        Ok(Player {
            revision,
            replay,
            logs,
        })
    }

    fn run(&self, line: &Line) -> Run {
        self.replay.load(line);
        let result = self.revision.reconcile(&line.request);
        let (commands, unrecorded) = self.replay.take();
        self.logs.take();
        Run {
            commands,
            unrecorded,
            result: Outcome::of(&result),
        }
    }
}

/// `bosun plugin test FILE --replay REC [--against OTHER]`: exit 0 when every call gives
/// the recorded commands (or, with `--against`, the same commands from both plugins) and
/// no call fails; 1 otherwise.
pub fn replay(args: &TestArgs, recording: &Path) -> anyhow::Result<ExitCode> {
    let _span = tracing::info_span!("bosun.cli.replay", recording = %recording.display()).entered();
    let lines = read_recording(recording)?;
    let recorded_plugin = &lines[0].plugin;
    let player = Player::load(args, &args.file, &args.config)?;
    if player.revision.name() != recorded_plugin {
        bail!(
            "{} is plugin {}, but {} is a recording of {recorded_plugin}",
            args.file.display(),
            player.revision.name(),
            recording.display()
        );
    }
    let against = match &args.against {
        Some(other) => {
            let config = args.against_config.as_deref().unwrap_or(&args.config);
            Some(Player::load(args, other, config)?)
        }
        None => None,
    };
    let mut out = std::io::stdout().lock();
    let (mut differ, mut failed) = (0usize, 0usize);
    for (i, line) in lines.iter().enumerate() {
        let recorded: Vec<Value> = line.commands.iter().map(|c| c.command.clone()).collect();
        let run = player.run(line);
        let head = json!({
            "call": i + 1,
            "key": line.request.target.key(),
            "events": line.request.events,
        });
        let mut v = head;
        match &against {
            None => {
                let equal = run.same(&recorded, &line.result);
                failed += usize::from(run.failed());
                differ += usize::from(!equal);
                v["result"] = json!(run.result);
                v["commands"] = json!(run.commands);
                v["equal"] = json!(equal);
                if !equal {
                    v["recorded"] = json!({ "result": line.result, "commands": recorded });
                }
                if !run.unrecorded.is_empty() {
                    v["unrecordedReads"] = json!(run.unrecorded);
                }
            }
            Some(other) => {
                let theirs = other.run(line);
                failed += usize::from(run.failed() || theirs.failed());
                if run.same(&theirs.commands, &theirs.result) {
                    continue;
                }
                differ += 1;
                v["plugin"] = run.to_json();
                v["against"] = theirs.to_json();
                v["recorded"] = json!({ "result": line.result, "commands": recorded });
            }
        }
        writeln!(out, "{v}")?;
    }
    let n = lines.len();
    let failures = if failed > 0 {
        format!(", {failed} failed")
    } else {
        String::new()
    };
    match &args.against {
        None => eprintln!("{n} calls, {differ} differ from the recording{failures}"),
        Some(other) => eprintln!(
            "{n} calls, {differ} differ between {} and {}{failures}",
            args.file.display(),
            other.display()
        ),
    }
    Ok(if differ == 0 && failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use bosun_host::contract::{EventKind, ReconcileRequest};

    use super::*;

    fn call() -> CallInfo {
        CallInfo {
            plugin: Arc::from("p"),
            revision: Arc::from("sha256:0"),
            key: None,
        }
    }

    #[test]
    fn the_replay_cache_answers_recorded_reads_and_reports_others() {
        let pod = ObjectRef::namespaced("v1", "Pod", "default", "web-0");
        let node = ObjectRef::cluster("v1", "Node", "n1");
        let line = Line {
            plugin: "p".into(),
            revision: "sha256:0".into(),
            at_ms: 42,
            request: ReconcileRequest {
                target: pod.clone(),
                events: vec![EventKind::Added],
                outcomes: vec![],
                attempt: 0,
            },
            reads: vec![
                Read::Get {
                    get: node.clone(),
                    answer: Some(json!({"metadata": {"name": "n1"}})),
                },
                Read::List {
                    list: Query {
                        api_version: "v1".into(),
                        kind: "Pod".into(),
                        namespace: Some("default".into()),
                        label_selector: Some("app=web".into()),
                    },
                    answer: vec![json!({"metadata": {"name": "web-0"}})],
                },
            ],
            reads_dropped: 0,
            commands: vec![],
            result: Outcome::Ok {
                requeue_after_ms: None,
            },
        };
        let replay = Replay::default();
        replay.load(&line);
        assert_eq!(replay.now_ms(), 42);
        let got = replay.get(&call(), &node).expect("recorded");
        assert_eq!(&*got, r#"{"metadata":{"name":"n1"}}"#);
        assert_eq!(replay.get(&call(), &pod), None);
        let selector = Selector::parse("app == web").expect("valid");
        let query = |selector| ListQuery {
            api_version: "v1",
            kind: "Pod",
            namespace: Some("default"),
            selector,
        };
        assert_eq!(replay.list(&call(), &query(Some(&selector))).len(), 1);
        assert!(replay.list(&call(), &query(None)).is_empty());
        let (_, unrecorded) = replay.take();
        assert_eq!(unrecorded.len(), 2, "{unrecorded:?}");
        assert_eq!(unrecorded[0], "get Pod/default/web-0");
    }
}
