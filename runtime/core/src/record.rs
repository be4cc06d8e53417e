//! Record: while a recording of a plugin runs, each of its reconciles becomes one JSON
//! line — the request, every cache read with the answer it got, every command it submitted
//! with the pipe's answer, and how the call ended — so that `bosun plugin test --replay`
//! can run the same or another revision on exactly what this one saw.
//!
//! The [`Recorder`] sits between the plugins and the shared cache and pipe (it is the
//! `cache` and `commands` of the runtime's [`Services`](bosun_host::host::Services)); the
//! dispatcher opens a call's record before the reconcile ([`Recorder::begin`]) and closes
//! it after ([`Recorder::end`]). When nothing is recorded, a read or a submit costs one
//! atomic load more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bosun_host::call::Error as CallError;
use bosun_host::contract::{Command, ObjectRef, ReconcileOutcome, ReconcileRequest};
use bosun_host::host::CallInfo;
use bosun_host::host::cache::{Cache, ListQuery};
use bosun_host::host::clock::{Clock, System};
use bosun_host::host::commands::Commands;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Default length of a recording, in seconds.
pub const DEFAULT_SECONDS: u64 = 30;
/// Longest recording, in seconds.
pub const MAX_SECONDS: u64 = 600;
/// Bytes of recorded lines one recording keeps; later calls are counted as dropped.
pub const MAX_BYTES: usize = 64 * 1024 * 1024;
/// Reads kept per call; later ones are counted in [`Line::reads_dropped`].
pub const MAX_READS_PER_CALL: usize = 10_000;

/// A recording could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The plugin is already being recorded.
    #[error("plugin {0} is already being recorded; wait for that recording to end")]
    Busy(String),
}

/// One recorded reconcile: a line of a recording file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    /// The plugin's name.
    pub plugin: String,
    /// The digest of the revision that served the call.
    pub revision: String,
    /// When the call started, in milliseconds since the Unix epoch (the plugin's clock).
    pub at_ms: u64,
    /// The request the plugin got.
    pub request: ReconcileRequest,
    /// The cache reads the call made, in order, with their answers.
    #[serde(default)]
    pub reads: Vec<Read>,
    /// Reads past [`MAX_READS_PER_CALL`], not kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reads_dropped: usize,
    /// The commands the call submitted, in order.
    #[serde(default)]
    pub commands: Vec<Submitted>,
    /// How the call ended.
    pub result: Outcome,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A cache read and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Read {
    /// `cache.get`: the object, or `null` when the cache had none.
    Get {
        /// The object asked for.
        get: ObjectRef,
        /// The answer.
        answer: Option<Value>,
    },
    /// `cache.list`: the objects that matched.
    List {
        /// The query.
        list: Query,
        /// The answer.
        answer: Vec<Value>,
    },
}

/// A `cache.list` query as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Query {
    /// api-version of the kind.
    pub api_version: String,
    /// The kind.
    pub kind: String,
    /// One namespace, or all.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The label selector, in Kubernetes syntax.
    #[serde(default)]
    pub label_selector: Option<String>,
}

impl Query {
    /// The query of a `cache.list` call.
    pub fn of(query: &ListQuery<'_>) -> Self {
        Query {
            api_version: query.api_version.to_owned(),
            kind: query.kind.to_owned(),
            namespace: query.namespace.map(str::to_owned),
            label_selector: query.selector.map(ToString::to_string),
        }
    }
}

/// A submitted command and the pipe's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submitted {
    /// The command (`Command::to_json`).
    pub command: Value,
    /// Why the pipe refused it at once (a guardrail), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// How a recorded call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// The plugin returned an outcome.
    #[serde(rename_all = "camelCase")]
    Ok {
        /// Asked to be called again after this many milliseconds.
        requeue_after_ms: Option<u64>,
    },
    /// The call failed.
    Error {
        /// `plugin-error`, `trap`, `timeout`, ...
        kind: String,
        /// What went wrong.
        message: String,
    },
}

impl Outcome {
    /// The outcome of a reconcile's result.
    pub fn of(result: &Result<ReconcileOutcome, CallError>) -> Self {
        match result {
            Ok(o) => Outcome::Ok {
                requeue_after_ms: o.requeue_after_ms,
            },
            Err(e) => Outcome::Error {
                kind: e.kind().to_owned(),
                message: e.to_string(),
            },
        }
    }
}

/// What a finished recording holds.
#[derive(Debug, Default)]
pub struct Recorded {
    /// The JSON lines, one per call.
    pub lines: Vec<String>,
    /// Calls not kept because the recording reached [`MAX_BYTES`].
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Tape {
    id: u64,
    recorded: Recorded,
    bytes: usize,
}

/// (plugin, revision, key): a call in flight. The same key is never reconciled twice at
/// once by one revision, and a shadow revision has its own digest.
type CallKey = (Arc<str>, Arc<str>, Option<String>);

fn call_key(call: &CallInfo) -> CallKey {
    (
        call.plugin.clone(),
        call.revision.clone(),
        call.key.as_ref().map(ObjectRef::key),
    )
}

/// The recorder of a runtime: the cache and command pipe plugins see, recording the calls
/// of the plugins being recorded.
pub struct Recorder {
    cache: Arc<dyn Cache>,
    commands: Arc<dyn Commands>,
    /// How many recordings run (reads and submits skip the lock when none does).
    active: AtomicUsize,
    next_id: AtomicU64,
    tapes: Mutex<HashMap<String, Tape>>,
    calls: Mutex<HashMap<CallKey, Line>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("active", &self.active.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A call being recorded, from [`Recorder::begin`] to [`Recorder::end`].
#[derive(Debug)]
pub struct Ticket {
    key: CallKey,
    tape: u64,
}

/// A running recording of one plugin; dropping it ends the recording and discards what
/// it holds.
#[derive(Debug)]
pub struct Session {
    recorder: Arc<Recorder>,
    plugin: String,
    id: u64,
}

impl Session {
    /// Ends the recording and returns its lines.
    pub fn stop(self) -> Recorded {
        let tape = self.recorder.remove(&self.plugin, self.id);
        tape.map(|t| t.recorded).unwrap_or_default()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.recorder.remove(&self.plugin, self.id);
    }
}

impl Recorder {
    /// A recorder in front of the shared cache and the command pipe.
    pub fn new(cache: Arc<dyn Cache>, commands: Arc<dyn Commands>) -> Self {
        Recorder {
            cache,
            commands,
            active: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            tapes: Mutex::default(),
            calls: Mutex::default(),
        }
    }

    /// Starts recording the calls of `plugin`; one recording per plugin at a time.
    pub fn start(self: &Arc<Self>, plugin: &str) -> Result<Session, Error> {
        let mut tapes = self.tapes.lock().unwrap_or_else(PoisonError::into_inner);
        if tapes.contains_key(plugin) {
            return Err(Error::Busy(plugin.to_owned()));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        tapes.insert(
            plugin.to_owned(),
            Tape {
                id,
                ..Tape::default()
            },
        );
        self.active.fetch_add(1, Ordering::Relaxed);
        tracing::info!(plugin, "recording started");
        Ok(Session {
            recorder: self.clone(),
            plugin: plugin.to_owned(),
            id,
        })
    }

    fn remove(&self, plugin: &str, id: u64) -> Option<Tape> {
        let mut tapes = self.tapes.lock().unwrap_or_else(PoisonError::into_inner);
        if tapes.get(plugin).is_none_or(|t| t.id != id) {
            return None;
        }
        let tape = tapes.remove(plugin)?;
        self.active.fetch_sub(1, Ordering::Relaxed);
        // Records of calls that never ended (a reconcile cancelled at shutdown) go too.
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(p, _, _), _| &**p != plugin);
        tracing::info!(
            plugin,
            calls = tape.recorded.lines.len(),
            dropped = tape.recorded.dropped,
            "recording ended"
        );
        Some(tape)
    }

    /// Whether the calls of `plugin` are being recorded.
    pub fn is_recording(&self, plugin: &str) -> bool {
        self.active.load(Ordering::Relaxed) > 0
            && self
                .tapes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains_key(plugin)
    }

    /// Opens the record of a call about to run, when its plugin is being recorded.
    pub fn begin(&self, call: &CallInfo, request: &ReconcileRequest) -> Option<Ticket> {
        if self.active.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let tape = self
            .tapes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&*call.plugin)
            .map(|t| t.id)?;
        let key = call_key(call);
        let line = Line {
            plugin: call.plugin.to_string(),
            revision: call.revision.to_string(),
            at_ms: System.now_ms(),
            request: request.clone(),
            reads: Vec::new(),
            reads_dropped: 0,
            commands: Vec::new(),
            result: Outcome::Ok {
                requeue_after_ms: None,
            },
        };
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), line);
        Some(Ticket { key, tape })
    }

    /// Closes the record of a call with its result and adds it to the recording (unless
    /// that recording ended meanwhile).
    pub fn end(&self, ticket: Ticket, result: &Result<ReconcileOutcome, CallError>) {
        let Some(mut line) = self
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&ticket.key)
        else {
            return;
        };
        line.result = Outcome::of(result);
        let text = match serde_json::to_string(&line) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(plugin = %line.plugin, error = %e, "cannot serialize a recorded call");
                return;
            }
        };
        let mut tapes = self.tapes.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tape) = tapes.get_mut(&line.plugin).filter(|t| t.id == ticket.tape) else {
            return;
        };
        if tape.bytes + text.len() > MAX_BYTES {
            tape.recorded.dropped += 1;
            return;
        }
        tape.bytes += text.len() + 1;
        tape.recorded.lines.push(text);
    }

    /// Adds to the record of `call`, if it is being recorded.
    fn note(&self, call: &CallInfo, add: impl FnOnce(&mut Line)) {
        if self.active.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(line) = calls.get_mut(&call_key(call)) {
            add(line);
        }
    }

    fn note_read(&self, call: &CallInfo, read: impl FnOnce() -> Read) {
        self.note(call, |line| {
            if line.reads.len() < MAX_READS_PER_CALL {
                line.reads.push(read());
            } else {
                line.reads_dropped += 1;
            }
        });
    }
}

/// Objects cross as JSON text; a recording keeps them as JSON values (text that does not
/// parse is kept as a string).
fn value(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or_else(|_| Value::String(json.to_owned()))
}

impl Cache for Recorder {
    fn get(&self, call: &CallInfo, target: &ObjectRef) -> Option<Arc<str>> {
        let answer = self.cache.get(call, target);
        self.note_read(call, || Read::Get {
            get: target.clone(),
            answer: answer.as_deref().map(value),
        });
        answer
    }

    fn list(&self, call: &CallInfo, query: &ListQuery<'_>) -> Vec<Arc<str>> {
        let answer = self.cache.list(call, query);
        self.note_read(call, || Read::List {
            list: Query::of(query),
            answer: answer.iter().map(|o| value(o)).collect(),
        });
        answer
    }
}

impl Commands for Recorder {
    fn submit(&self, call: &CallInfo, command: Command) -> Result<u64, String> {
        let json = (self.active.load(Ordering::Relaxed) > 0).then(|| command.to_json());
        let answer = self.commands.submit(call, command);
        if let Some(command) = json {
            self.note(call, |line| {
                line.commands.push(Submitted {
                    command,
                    refused: answer.as_ref().err().cloned(),
                });
            });
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use bosun_api::Selector;
    use bosun_host::contract::{EventKind, Patch};
    use bosun_host::host::cache::Empty;
    use bosun_host::host::commands::Recorder as Sink;

    use super::*;

    fn pod() -> ObjectRef {
        ObjectRef::namespaced("v1", "Pod", "default", "web-0")
    }

    fn call(plugin: &str) -> CallInfo {
        CallInfo {
            plugin: Arc::from(plugin),
            revision: Arc::from("sha256:abc"),
            key: Some(pod()),
        }
    }

    fn request() -> ReconcileRequest {
        ReconcileRequest {
            target: pod(),
            events: vec![EventKind::Added],
            outcomes: vec![],
            attempt: 0,
        }
    }

    /// Runs one call of `plugin` through the recorder: a get, a list, a submit.
    fn one_call(recorder: &Recorder, plugin: &str) {
        let call = call(plugin);
        let ticket = recorder.begin(&call, &request());
        assert_eq!(recorder.get(&call, &pod()), None);
        let selector = Selector::parse("app in (web,api)").expect("valid");
        let query = ListQuery {
            api_version: "v1",
            kind: "Node",
            namespace: None,
            selector: Some(&selector),
        };
        assert!(recorder.list(&call, &query).is_empty());
        let patch = Command::MergePatch(Patch {
            target: pod(),
            patch: r#"{"metadata":{"labels":{"a":"b"}}}"#.to_owned(),
        });
        recorder.submit(&call, patch).expect("accepted");
        if let Some(t) = ticket {
            recorder.end(
                t,
                &Ok(ReconcileOutcome {
                    requeue_after_ms: Some(5),
                }),
            );
        }
    }

    #[test]
    fn records_the_calls_of_the_recorded_plugin_only() {
        let sink = Arc::new(Sink::default());
        let recorder = Arc::new(Recorder::new(Arc::new(Empty), sink.clone()));
        one_call(&recorder, "zone-labeler");
        let session = recorder.start("zone-labeler").expect("starts");
        assert!(matches!(
            recorder.start("zone-labeler"),
            Err(Error::Busy(_))
        ));
        one_call(&recorder, "zone-labeler");
        one_call(&recorder, "other");
        let recorded = session.stop();
        one_call(&recorder, "zone-labeler");
        assert_eq!(sink.len(), 4, "every command reached the pipe");
        assert_eq!(recorded.lines.len(), 1, "{:?}", recorded.lines);
        let line: Line = serde_json::from_str(&recorded.lines[0]).expect("a line parses back");
        assert_eq!(line.plugin, "zone-labeler");
        assert_eq!(line.request, request());
        assert_eq!(
            line.reads,
            vec![
                Read::Get {
                    get: pod(),
                    answer: None
                },
                Read::List {
                    list: Query {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        namespace: None,
                        label_selector: Some("app in (web,api)".into()),
                    },
                    answer: vec![],
                },
            ]
        );
        assert_eq!(line.commands.len(), 1);
        assert_eq!(line.commands[0].command["command"], "merge-patch");
        assert_eq!(
            line.result,
            Outcome::Ok {
                requeue_after_ms: Some(5)
            }
        );
        assert!(!recorder.is_recording("zone-labeler"));
        assert!(recorder.calls.lock().expect("lock").is_empty());
    }

    #[test]
    fn a_dropped_session_ends_the_recording() {
        let recorder = Arc::new(Recorder::new(Arc::new(Empty), Arc::new(Sink::default())));
        let session = recorder.start("p").expect("starts");
        // A call that never ends (cancelled) does not outlive the recording.
        assert!(recorder.begin(&call("p"), &request()).is_some());
        drop(session);
        assert!(!recorder.is_recording("p"));
        assert!(recorder.calls.lock().expect("lock").is_empty());
        assert!(recorder.start("p").is_ok(), "a new recording can start");
    }
}
