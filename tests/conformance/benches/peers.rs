//! The zone-labeler decision run the way each operator framework runs it, for the same
//! event (a 4.5 KB Pod and its Node), on this machine:
//!
//! - Bosun plugins in Rust, Go and JavaScript, each in a warm instance (the host reads
//!   the pod and node from its cache, the plugin parses them, decides and submits one
//!   merge patch);
//! - native Rust, as a kube-rs controller runs it: parse the objects, decide, serialise
//!   the patch;
//! - a fork-per-event hook in the style of shell-operator: a process per event, the
//!   binding on stdin, the patch on stdout, as a small native binary (Go) and as the
//!   Python script shell-operator users write;
//! - an HTTP hook in the style of Metacontroller: a local server answering JSON per
//!   event over one keep-alive connection (Go, `GOMAXPROCS=1`).
//!
//! Printed per approach: p50/p99 from event to command, events/s on one caller thread,
//! CPU per event (this process for in-process approaches; the children's or the server's
//! for hooks), the peer's peak RSS where it is a process, and the ratio to Bosun's Rust
//! plugin. Every approach's output is checked against the expected patch first.
//! The peers are in `tests/conformance/peers` (its README has their contracts).
//!
//! Run: `cargo bench -p bosun-conformance --bench peers`

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_host::contract::{EventKind, ObjectRef, ReconcileRequest};
use bosun_host::host::cache::{Cache, ListQuery};
use bosun_host::host::{CallInfo, Services, commands};
use bosun_host::{Engine, Revision, Source, Spec, Strategy};
use serde_json::{Value, json};

const PATCH: &str = r#"{"metadata":{"labels":{"topology.kubernetes.io/zone":"zone-a"}}}"#;

fn peers_dir() -> PathBuf {
    bosun_conformance::peers::dir()
}

struct Objects(HashMap<String, Arc<str>>);

impl Cache for Objects {
    fn get(&self, _: &CallInfo, target: &ObjectRef) -> Option<Arc<str>> {
        self.0.get(&target.key()).cloned()
    }
    fn list(&self, _: &CallInfo, _: &ListQuery<'_>) -> Vec<Arc<str>> {
        Vec::new()
    }
}

/// Keeps the last patch, so each approach's result can be checked.
#[derive(Default)]
struct Sink(std::sync::Mutex<Option<String>>);

impl commands::Commands for Sink {
    fn submit(&self, _: &CallInfo, command: bosun_host::contract::Command) -> Result<u64, String> {
        if let bosun_host::contract::Command::MergePatch(p) = command {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.patch);
        }
        Ok(0)
    }
}

impl Sink {
    fn take(&self) -> Option<Value> {
        let patch = self.0.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        serde_json::from_str(&patch).ok()
    }
}

/// Fields of `/proc/PID/stat` after the command name (`state` is index 0).
fn stat_fields(pid: &str) -> Vec<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default()
}

/// Clock ticks as a duration (the kernel's USER_HZ is 100 on Linux).
fn ticks(t: u64) -> Duration {
    Duration::from_millis(t * 10)
}

/// CPU time of this process (utime + stime), or of its waited-for children (cutime +
/// cstime), in 10 ms ticks.
fn cpu(children: bool) -> Duration {
    let f = stat_fields("self");
    let (a, b) = if children { (13, 14) } else { (11, 12) };
    ticks(f.get(a).copied().unwrap_or(0) + f.get(b).copied().unwrap_or(0))
}

/// CPU time and peak RSS (KiB) of process `pid`.
fn proc_usage(pid: u32) -> (Duration, i64) {
    let f = stat_fields(&pid.to_string());
    let cpu = ticks(f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0));
    (cpu, peak_rss(pid))
}

/// `VmHWM` of process `pid`, in KiB (0 when it is gone).
fn peak_rss(pid: u32) -> i64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A hook's peak RSS: read once it has started (after `settle`) and again when it has
/// written its answer, before it is reaped.
fn hook_rss(program: &Path, args: &[&str], binding: &[u8], settle: Duration) -> i64 {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hook");
    std::thread::sleep(settle);
    let started = peak_rss(child.id());
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(binding).expect("write binding");
    drop(stdin);
    // The patch is written when the work is done; the process still exists until its
    // output is read and it exits.
    let mut first = [0u8; 1];
    let _ = child.stdout.as_mut().expect("stdout").read(&mut first);
    // Gone already (a zombie has no memory figures): what it held once started.
    let rss = peak_rss(child.id()).max(started);
    let _ = child.wait_with_output();
    rss
}

struct Figures {
    name: String,
    p50: Duration,
    p99: Duration,
    per_sec: f64,
    cpu_per_event: Duration,
    rss_kib: Option<i64>,
}

/// Times `events` calls of `f` after a tenth as many warm-up calls; `cpu` reads the CPU
/// clock that counts `f`'s work.
fn measure(name: &str, events: usize, cpu: impl Fn() -> Duration, mut f: impl FnMut()) -> Figures {
    for _ in 0..(events / 10).max(1) {
        f();
    }
    let mut samples = Vec::with_capacity(events);
    let (started, cpu0) = (Instant::now(), cpu());
    for _ in 0..events {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    let (total, cpu_used) = (started.elapsed(), cpu() - cpu0);
    samples.sort();
    Figures {
        name: name.to_owned(),
        p50: samples[samples.len() / 2],
        p99: samples[(samples.len() * 99 / 100).min(samples.len() - 1)],
        per_sec: events as f64 / total.as_secs_f64(),
        cpu_per_event: cpu_used / events as u32,
        rss_kib: None,
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The decision as a native Rust function, as a kube-rs controller runs it on objects it
/// received as JSON: parse, decide, serialise the patch.
fn native(pod: &str, node: &str) -> Option<String> {
    let pod: Value = serde_json::from_str(pod).ok()?;
    let node_name = pod.pointer("/spec/nodeName")?.as_str()?;
    let node: Value = serde_json::from_str(node).ok()?;
    if node.pointer("/metadata/name")?.as_str()? != node_name {
        return None;
    }
    let key = "topology.kubernetes.io/zone";
    let zone = node.pointer("/metadata/labels")?.get(key)?.as_str()?;
    let current = pod
        .pointer("/metadata/labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str);
    (current != Some(zone)).then(|| json!({"metadata": {"labels": {key: zone}}}).to_string())
}

/// The real Python interpreter (`python3` may be a shell shim).
fn python() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// One keep-alive HTTP/1.1 connection to the webhook peer.
struct Http {
    reader: BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
    addr: String,
}

impl Http {
    fn connect(addr: &str) -> Http {
        let stream = std::net::TcpStream::connect(addr).expect("connect webhook");
        stream.set_nodelay(true).expect("nodelay");
        Http {
            writer: stream.try_clone().expect("clone"),
            reader: BufReader::new(stream),
            addr: addr.to_owned(),
        }
    }

    fn post(&mut self, body: &[u8]) -> Vec<u8> {
        write!(
            self.writer,
            "POST /sync HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        )
        .expect("write");
        self.writer.write_all(body).expect("write body");
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("read");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l
                .to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
            {
                len = v.parse().expect("length");
            }
        }
        let mut out = vec![0; len];
        self.reader.read_exact(&mut out).expect("body");
        out
    }
}

fn main() {
    let pod = std::fs::read_to_string(peers_dir().join("testdata/pod_4k.json")).expect("pod");
    let node = std::fs::read_to_string(peers_dir().join("testdata/node.json")).expect("node");
    let binding =
        std::fs::read(peers_dir().join("testdata/bindings/pod_4k.json")).expect("binding");
    let expected: Value = serde_json::from_str(PATCH).expect("patch");
    println!(
        "one event: a {} byte Pod and its {} byte Node; expected command: merge patch {PATCH}",
        pod.len(),
        node.len()
    );
    let mut rows: Vec<Figures> = Vec::new();

    // Bosun plugins, warm instances.
    let pod_value: Value = serde_json::from_str(&pod).expect("pod json");
    let target = ObjectRef::of(&pod_value).expect("named");
    let mut objects = HashMap::new();
    objects.insert(target.key(), Arc::from(pod.as_str()));
    objects.insert("Node/node-1".to_owned(), Arc::from(node.as_str()));
    let sink = Arc::new(Sink::default());
    let services = Services {
        cache: Arc::new(Objects(objects)),
        commands: sink.clone(),
        ..Services::offline()
    };
    let request = ReconcileRequest {
        target: target.clone(),
        events: vec![EventKind::Modified],
        outcomes: vec![],
        attempt: 0,
    };
    let engine = Engine::new(&bosun_host::engine::Config::default()).expect("engine");
    let plugins = [
        (
            "Bosun plugin, Rust",
            PathBuf::from(bosun_test_artifacts::ZONE_LABELER),
        ),
        (
            "Bosun plugin, Go",
            bosun_cli::plugin::build_with(&peers_dir().join("plugins/go"), false)
                .expect("go plugin"),
        ),
        (
            "Bosun plugin, JavaScript",
            bosun_cli::plugin::build_with(&peers_dir().join("plugins/js"), false)
                .expect("js plugin"),
        ),
    ];
    for (name, path) in plugins {
        let bytes = std::fs::read(&path).expect("component");
        let source = Source {
            origin: path.display().to_string(),
            bytes: Arc::from(bytes),
        };
        let mut spec = Spec::new(services.clone());
        spec.strategy = Strategy::Warm {
            recycle_after: u32::MAX,
            max_idle: 1,
        };
        let revision = Revision::load(&engine, &source, spec).expect("loads");
        revision.reconcile(&request).expect("reconciles");
        assert_eq!(
            sink.take().as_ref(),
            Some(&expected),
            "{name}: wrong command"
        );
        rows.push(measure(
            name,
            20_000,
            || cpu(false),
            || {
                revision.reconcile(&request).expect("ok");
            },
        ));
    }

    // Native Rust (a kube-rs controller's reconcile body).
    let out = native(&pod, &node).expect("a patch");
    assert_eq!(
        serde_json::from_str::<Value>(&out).ok().as_ref(),
        Some(&expected)
    );
    rows.push(measure(
        "native Rust (kube-rs)",
        50_000,
        || cpu(false),
        || {
            std::hint::black_box(native(std::hint::black_box(&pod), &node));
        },
    ));

    // Fork per event.
    let hook = bosun_conformance::peers::build("hook");
    let check = |out: Vec<u8>, name: &str| {
        let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
        assert_eq!(v, expected, "{name}: {}", String::from_utf8_lossy(&out));
    };
    check(
        bosun_conformance::peers::run_hook(&hook, &[], &binding),
        "hook",
    );
    let mut row = measure(
        "fork per event, Go binary",
        500,
        || cpu(true),
        || {
            bosun_conformance::peers::run_hook(&hook, &[], &binding);
        },
    );
    row.rss_kib = Some(hook_rss(&hook, &[], &binding, Duration::from_millis(50)));
    rows.push(row);
    match python() {
        Some(py) => {
            let script = peers_dir().join("hook.py");
            let script = script.to_str().expect("utf-8 path").to_owned();
            for (name, args) in [
                ("fork per event, Python", vec![script.as_str()]),
                ("fork per event, Python -S", vec!["-S", script.as_str()]),
            ] {
                check(
                    bosun_conformance::peers::run_hook(&py, &args, &binding),
                    name,
                );
                let mut row = measure(
                    name,
                    100,
                    || cpu(true),
                    || {
                        bosun_conformance::peers::run_hook(&py, &args, &binding);
                    },
                );
                row.rss_kib = Some(hook_rss(&py, &args, &binding, Duration::from_millis(300)));
                rows.push(row);
            }
        }
        None => println!("no python3: the Python hook is not measured"),
    }

    // HTTP per event, one keep-alive connection, the server on one core.
    let webhook = bosun_conformance::peers::build("webhook");
    let mut server = Command::new(&webhook)
        .arg("127.0.0.1:0")
        .env("GOMAXPROCS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("webhook");
    let mut addr = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut addr)
        .expect("address");
    let mut http = Http::connect(addr.trim());
    let answer: Value = serde_json::from_slice(&http.post(&binding)).expect("json answer");
    assert_eq!(answer["patch"], expected, "webhook: {answer}");
    let pid = server.id();
    let mut row = measure(
        "HTTP hook, Go server",
        5_000,
        || proc_usage(pid).0,
        || {
            http.post(&binding);
        },
    );
    row.rss_kib = Some(proc_usage(pid).1);
    rows.push(row);
    let _ = server.kill();
    let _ = server.wait();

    let base = rows[0].cpu_per_event.max(Duration::from_nanos(1));
    let base_p50 = rows[0].p50.max(Duration::from_nanos(1));
    println!(
        "\n{:<28} {:>10} {:>10} {:>10} {:>12} {:>10} {:>11} {:>11}",
        "", "p50 µs", "p99 µs", "events/s", "CPU/event µs", "peak RSS", "CPU ×Rust", "p50 ×Rust"
    );
    for r in &rows {
        println!(
            "{:<28} {:>10.1} {:>10.1} {:>10.0} {:>12.1} {:>10} {:>11.2} {:>11.2}",
            r.name,
            us(r.p50),
            us(r.p99),
            r.per_sec,
            us(r.cpu_per_event),
            r.rss_kib
                .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_else(|| "-".into()),
            r.cpu_per_event.as_secs_f64() / base.as_secs_f64(),
            r.p50.as_secs_f64() / base_p50.as_secs_f64(),
        );
    }
    println!(
        "\nIn-process rows count this process's CPU (the plugin, the host's cache reads and\n\
         the command sink); hook rows count the children's CPU (fork, exec, runtime start,\n\
         parse, decide, print) but not this process's spawning; the HTTP row counts the\n\
         server's CPU only."
    );
}
