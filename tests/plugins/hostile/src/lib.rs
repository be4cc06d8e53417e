//! A controller plugin that misbehaves on demand, to test the host's limits and error
//! paths. The init config `{"mode": "..."}` chooses the behaviour of `reconcile`:
//!
//! | mode         | reconcile                                                            |
//! |--------------|----------------------------------------------------------------------|
//! | `ok`         | (default) reads the target, submits one merge patch adding the label `hostile/seen: "true"`, done |
//! | `trap`       | panics (a trap)                                                      |
//! | `loop`       | spins forever without calling the host                               |
//! | `alloc`      | allocates and touches memory without end                             |
//! | `flood`      | submits `count` (default 1,000,000) merge patches, ignoring refusals, then done |
//! | `big-error`  | returns an error of 100 MB (`"bytes": N` in the config changes the size) |
//! | `init-fail`  | (init fails with `hostile: init refused by config`)                  |
//! | `log-flood`  | logs 100,000 lines, then done                                        |
//! | `stdout`     | prints 10 lines to stdout and 1 to stderr, then as `ok`              |
//! | `error`      | returns the error `hostile: reconcile failed on purpose`             |
//! | `requeue`    | asks to be called again after 1500 ms                                |
//! | `state`      | increments the u64 in state key `count` (8 bytes, little-endian) and logs `count=N` |
//! | `overlap`    | marks its key busy in plugin state, spins, unmarks; logs `overlap on KEY` if it found the mark (two calls at once) |
//! | `doomed`     | submits `count` (default 20) merge patches of pods that do not exist |
//! | `peek`       | reads the Secret `default/peek` (not declared) and logs `peek: found` or `peek: nothing` |
//! | `reap`       | deletes its target pod when it has the label `reap=true` (and is not being deleted) |
//! | `pod-command`| sends `{"action":"ping"}` to the pod-agent plugin `agent` in its target pod's sidecar, once; logs outcomes like `ok` |
//! | `forbidden`  | submits an eviction of its target (a verb it did not declare) and logs the refusal |
//! | `state-flood`| writes 64 KiB values under new state keys until one is refused, logs `state-flood: refused after N: REASON`, done |
//! | `list-spin`  | lists pods forever                                                   |
//! | `requeue-now`| asks to be called again at once (`requeue-after-ms: 0`)              |
//!
//! An unknown mode fails `init`.

use std::time::Duration;

use bosun_sdk::{Command, Context, Controller, Error, Metadata, Outcome, Request, Verb};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    #[default]
    Ok,
    Trap,
    Loop,
    Alloc,
    Flood,
    BigError,
    InitFail,
    LogFlood,
    Stdout,
    Error,
    Requeue,
    State,
    Forbidden,
    Overlap,
    Doomed,
    Peek,
    Reap,
    PodCommand,
    StateFlood,
    ListSpin,
    FieldsSpin,
    RequeueNow,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    mode: Mode,
    /// The size of the `big-error` message.
    bytes: Option<usize>,
    /// How many commands `flood` and `doomed` submit.
    count: Option<u32>,
}

/// The default size of the `big-error` message: 100 MB.
const BIG_ERROR_BYTES: usize = 100 * 1024 * 1024;

struct Hostile {
    mode: Mode,
    big_error_bytes: usize,
    count: Option<u32>,
}

fn ok(ctx: &mut Context, req: &Request) -> Result<Outcome, Error> {
    // Report what became of earlier commands, so tests can see them arrive.
    for o in req.outcomes() {
        ctx.info(format!("outcome {} {:?}: {}", o.id, o.verdict, o.message));
    }
    if ctx.get(req.target()).is_none() {
        ctx.info(format!("{} is not in the cache", req.target()));
        return Ok(Outcome::done());
    }
    let patch = json!({"metadata": {"labels": {"hostile/seen": "true"}}});
    ctx.submit(Command::merge_patch(req.target(), &patch))?;
    Ok(Outcome::done())
}

impl Controller for Hostile {
    fn metadata() -> Metadata {
        Metadata::new("hostile", env!("CARGO_PKG_VERSION"))
            .description("misbehaves on demand to test the host")
            .subscribe("v1", "Pod")
            .permit(
                "v1",
                "Pod",
                &[Verb::Read, Verb::Patch, Verb::Delete, Verb::PodCommand],
            )
    }

    fn init(config: &str) -> Result<Self, Error> {
        let config: Config = bosun_sdk::parse_config(config)?;
        if let Mode::InitFail = config.mode {
            return Err(Error::msg("hostile: init refused by config"));
        }
        Ok(Self {
            mode: config.mode,
            big_error_bytes: config.bytes.unwrap_or(BIG_ERROR_BYTES),
            count: config.count,
        })
    }

    fn reconcile(&self, ctx: &mut Context, req: &Request) -> Result<Outcome, Error> {
        match self.mode {
            Mode::Ok | Mode::InitFail => ok(ctx, req),
            Mode::Trap => panic!("hostile: trap on purpose"),
            Mode::Loop => loop {
                std::hint::black_box(());
            },
            Mode::Alloc => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    // 1 MiB at a time, every page written so it is really committed.
                    hoard.push(vec![0xA5; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Mode::Flood => {
                let patch = json!({"metadata": {"labels": {"hostile/flood": "true"}}});
                for _ in 0..self.count.unwrap_or(1_000_000) {
                    let _refused_or_not = ctx.submit(Command::merge_patch(req.target(), &patch));
                }
                Ok(Outcome::done())
            }
            Mode::BigError => Err(Error::msg("x".repeat(self.big_error_bytes))),
            Mode::LogFlood => {
                for i in 0..100_000 {
                    ctx.info(format!("hostile log line {i}"));
                }
                Ok(Outcome::done())
            }
            Mode::Stdout => {
                for n in 1..=10 {
                    println!("hostile stdout line {n}");
                }
                eprintln!("hostile stderr line");
                ok(ctx, req)
            }
            Mode::Overlap => {
                let mark = format!("busy/{}", req.target());
                if ctx.state_get(&mark).is_some() {
                    ctx.warn(format!("overlap on {}", req.target()));
                }
                ctx.state_set(&mark, b"1")?;
                let mut x = 0u64;
                for i in 0..20_000_000u64 {
                    x = std::hint::black_box(x.wrapping_add(i));
                }
                ctx.state_delete(&mark);
                Ok(Outcome::done())
            }
            Mode::Doomed => {
                let patch = json!({"metadata": {"labels": {"hostile/doomed": "true"}}});
                for i in 0..self.count.unwrap_or(20) {
                    let ghost = bosun_sdk::ObjectRef::new("v1", "Pod")
                        .namespaced("default")
                        .named(format!("ghost-{i}"));
                    if let Err(refused) = ctx.submit(Command::merge_patch(&ghost, &patch)) {
                        ctx.info(format!("refused: {}", refused.reason));
                    }
                }
                Ok(Outcome::done())
            }
            Mode::Peek => {
                let secret = bosun_sdk::ObjectRef::new("v1", "Secret")
                    .namespaced("default")
                    .named("peek");
                let found = if ctx.get(&secret).is_some() {
                    "found"
                } else {
                    "nothing"
                };
                ctx.info(format!("peek: {found}"));
                Ok(Outcome::done())
            }
            Mode::Reap => {
                let Some(pod) = ctx.get(req.target()) else {
                    return Ok(Outcome::done());
                };
                let marked = pod
                    .pointer("/metadata/labels/reap")
                    .and_then(|v| v.as_str())
                    == Some("true");
                let deleting = pod.pointer("/metadata/deletionTimestamp").is_some();
                if marked && !deleting {
                    ctx.submit(Command::delete(req.target()))?;
                }
                Ok(Outcome::done())
            }
            Mode::PodCommand => {
                for o in req.outcomes() {
                    ctx.info(format!("outcome {} {:?}: {}", o.id, o.verdict, o.message));
                }
                if ctx.state_get("sent").is_none() {
                    let t = req.target();
                    let ns = t.namespace.clone().unwrap_or_default();
                    ctx.submit(Command::pod(
                        ns,
                        t.name.clone(),
                        "agent",
                        r#"{"action":"ping"}"#,
                    ))?;
                    ctx.state_set("sent", b"1")?;
                    return Ok(Outcome::requeue_after(Duration::from_millis(200)));
                }
                Ok(Outcome::done())
            }
            Mode::Forbidden => {
                match ctx.submit(Command::evict(req.target())) {
                    Ok(id) => ctx.warn(format!("evict was accepted as command {}", id.0)),
                    Err(refused) => ctx.info(format!("evict refused: {}", refused.reason)),
                }
                Ok(Outcome::done())
            }
            Mode::StateFlood => {
                let value = vec![0x5A; 64 << 10];
                let start = ctx
                    .state_get("next")
                    .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                    .map_or(0, u64::from_le_bytes);
                for i in start.. {
                    if let Err(e) = ctx.state_set(&format!("flood-{i}"), &value) {
                        ctx.warn(format!("state-flood: refused after {i}: {e}"));
                        return Ok(Outcome::done());
                    }
                    // Best effort: the next call goes on where this one stopped.
                    let _ = ctx.state_set("next", &(i + 1).to_le_bytes());
                }
                Ok(Outcome::done())
            }
            Mode::ListSpin => loop {
                let pods = ctx.list("v1", "Pod", None, None)?;
                std::hint::black_box(pods);
            },
            Mode::FieldsSpin => {
                // A field list far over the host's limit is refused, not read.
                let huge = vec!["metadata.name"; 200_000];
                match ctx.get_fields(req.target(), &huge) {
                    Ok(_) => ctx.warn("a 2.8 MB field list was accepted"),
                    Err(e) => ctx.info(format!("refused: {e}")),
                }
                loop {
                    let cut = ctx.get_fields(req.target(), &["metadata.name"])?;
                    std::hint::black_box(cut);
                }
            }
            Mode::RequeueNow => Ok(Outcome::requeue_after(Duration::ZERO)),
            Mode::Error => Err(Error::msg("hostile: reconcile failed on purpose")),
            Mode::Requeue => Ok(Outcome::requeue_after(Duration::from_millis(1500))),
            Mode::State => {
                let count = ctx
                    .state_get("count")
                    .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
                    .map_or(0, u64::from_le_bytes)
                    + 1;
                ctx.state_set("count", &count.to_le_bytes())?;
                ctx.info(format!("count={count}"));
                Ok(Outcome::done())
            }
        }
    }
}

bosun_sdk::export_controller!(Hostile);
