//! README.md's commands, run as written: every ```sh block, in order, with bash, in a
//! temporary folder holding symlinks to `plugins/` and `deploy/`, against one `bosun up`
//! started by the README's own first block. Only `cargo run -p bosun-cli --` is replaced,
//! by the `bosun` this test was built with; each block is then checked for what the
//! README says it does, not only for its exit code.
//!
//! The `<!-- ci: test -->` block is the command that runs this test (`.ci/run` runs it),
//! so it is not run here. The blocks run with BOSUN_ADMIN_ADDR set to a free port (where
//! `bosun up` serves its admin endpoint and `bosun status` and `bosun record` look for
//! it), so a `bosun up` of the reader's own may run beside. Needs `kubectl` on PATH and
//! what `.ci/setup` installs (`bosun up` builds the Go and JavaScript plugins, the README
//! scaffolds a Go one).

use std::fs::File;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long `bosun up` may take to build the plugins and settle (a cold cargo cache
/// builds three Rust plugins, a Go one and a JavaScript one).
const UP_TIMEOUT: Duration = Duration::from_secs(600);
/// How long one block may run.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a block that watches may take to show what it is stopped on.
const WATCH_TIMEOUT: Duration = Duration::from_secs(120);

/// The blocks the test knows, by a piece of their text; each is checked after it runs.
const KNOWN: [&str; 6] = [
    "get pods -A -L topology.kubernetes.io/zone",
    "set image statefulset/web",
    "plugin push v2.wasm",
    "record --plugin zone-labeler",
    "plugin test plugins/zone-labeler",
    "plugin new --lang",
];

/// A ```sh block of the README.
struct Block {
    /// Line of its first command in README.md (1-based).
    line: usize,
    /// `run` or `test` for a block under `<!-- ci: NAME -->`.
    marker: Option<String>,
    /// Its commands, as written.
    text: String,
}

/// Every ```sh block, in order (as `.ci/run`'s `readme_command` finds the marked ones).
/// A shell block in another dialect would be skipped silently, so it is refused.
fn sh_blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines().enumerate();
    let mut previous = "";
    while let Some((n, line)) = lines.next() {
        let Some(lang) = line.strip_prefix("```") else {
            if !line.trim().is_empty() {
                previous = line;
            }
            continue;
        };
        let lang = lang.trim();
        assert!(
            !["bash", "shell", "console", "zsh"].contains(&lang),
            "README.md line {}: a ```{lang} block: write commands as ```sh so that \
             runtime/cli/tests/readme.rs runs them",
            n + 1
        );
        let body: Vec<&str> = lines
            .by_ref()
            .map(|(_, l)| l)
            .take_while(|l| !l.starts_with("```"))
            .collect();
        if lang == "sh" {
            let marker = previous
                .trim()
                .strip_prefix("<!-- ci: ")
                .and_then(|m| m.strip_suffix(" -->"))
                .map(str::to_owned);
            blocks.push(Block {
                line: n + 2,
                marker,
                text: body.join("\n"),
            });
        }
        previous = "";
    }
    blocks
}

/// `text` quoted for the shell.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// What a block printed and how it ended.
struct Ran {
    script: String,
    /// `None`: it ran until the test stopped it (a watch).
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// The temporary folder the README runs in, and its `bosun up`.
struct Readme {
    tmp: tempfile::TempDir,
    bosun: String,
    up: Option<Child>,
    /// BOSUN_ADMIN_ADDR of every block.
    admin: String,
    blocks_run: usize,
}

impl Drop for Readme {
    fn drop(&mut self) {
        if let Some(mut up) = self.up.take() {
            stop(&mut up, "-KILL");
        }
    }
}

/// Signals a block's process group (bash and what it started).
fn signal(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", &format!("-{}", child.id())])
        .status();
}

/// Signals the process group and waits for bash to end.
fn stop(child: &mut Child, how: &str) -> Option<ExitStatus> {
    signal(child, how);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(child, "-KILL");
    child.wait().ok()
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn short(digest: &str) -> &str {
    &digest.trim_start_matches("sha256:")[..12]
}

impl Readme {
    fn new() -> Self {
        let kubectl = Command::new("kubectl")
            .args(["version", "--client"])
            .output();
        assert!(
            kubectl.is_ok_and(|o| o.status.success()),
            "kubectl is needed on PATH: the README's commands use it"
        );
        let tmp = tempfile::Builder::new()
            .prefix("bosun-readme-")
            .tempdir()
            .expect("tempdir");
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&work).expect("work dir");
        std::fs::create_dir_all(tmp.path().join("out")).expect("out dir");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let repo = repo.canonicalize().expect("the checkout");
        // The README's paths, relative to the checkout; `.bosun/`, `hello/` and the
        // files the commands write stay in the temporary folder.
        for dir in ["plugins", "deploy"] {
            std::os::unix::fs::symlink(repo.join(dir), work.join(dir)).expect("symlink");
        }
        Readme {
            tmp,
            bosun: quoted(env!("CARGO_BIN_EXE_bosun")),
            up: None,
            admin: format!("127.0.0.1:{}", bosun_test_support::free_port()),
            blocks_run: 0,
        }
    }

    fn work(&self) -> PathBuf {
        self.tmp.path().join("work")
    }

    fn up_log(&self) -> PathBuf {
        self.tmp.path().join("out/up.log")
    }

    /// The block as run: `cargo run -p bosun-cli --` is the `bosun` of this build.
    fn script(&self, block: &Block) -> String {
        let script = block.text.replace("cargo run -p bosun-cli --", &self.bosun);
        assert!(
            !script.contains("cargo "),
            "README.md line {}: a cargo command other than `cargo run -p bosun-cli --`, \
             which the test cannot run as written:\n{}",
            block.line,
            block.text
        );
        script
    }

    /// `bash -euo pipefail -c SCRIPT` (as `.ci/run` runs the README's commands) in the
    /// work folder, in a process group of its own, output to files.
    fn spawn(&self, script: &str, out: &Path, err: &Path) -> Child {
        let stdout = File::create(out).expect("output file");
        // One file for both (`bosun up`'s log): one offset, nothing overwritten.
        let stderr = if out == err {
            stdout.try_clone()
        } else {
            File::create(err)
        }
        .expect("output file");
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .current_dir(self.work())
            // The commands find the cluster through `.bosun/`; `bosun up` runs until
            // stopped.
            .env_remove("KUBECONFIG")
            .env("BOSUN_ADMIN_ADDR", &self.admin)
            .env_remove("BOSUN_UP_EXIT_AFTER")
            .env("BOSUN_COMPILED_CACHE", self.tmp.path().join("compiled"))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .expect("bash runs")
    }

    /// Runs a block to its end, or until its output satisfies `until` (then stops it).
    fn run(&mut self, block: &Block, until: Option<&dyn Fn(&str) -> bool>) -> Ran {
        self.blocks_run += 1;
        let script = self.script(block);
        let out = self.tmp.path().join(format!("out/{}.out", self.blocks_run));
        let err = self.tmp.path().join(format!("out/{}.err", self.blocks_run));
        let mut child = self.spawn(&script, &out, &err);
        let started = Instant::now();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let timeout = if until.is_some() {
            WATCH_TIMEOUT
        } else {
            BLOCK_TIMEOUT
        };
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if until.is_some_and(|done| done(&read(&out))) {
                stop(&mut child, "-TERM");
                break None;
            }
            if started.elapsed() > timeout {
                let status = stop(&mut child, "-KILL");
                let ran = Ran {
                    script,
                    status,
                    stdout: read(&out),
                    stderr: read(&err),
                    took: started.elapsed(),
                };
                self.fail(block, &ran, &format!("did not finish in {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let ran = Ran {
            script,
            status,
            stdout: read(&out),
            stderr: read(&err),
            took: started.elapsed(),
        };
        match ran.status {
            Some(s) if !s.success() => self.fail(block, &ran, "failed"),
            None if until.is_none() => self.fail(block, &ran, "was stopped"),
            _ => {}
        }
        eprintln!(
            "README.md line {}: ran in {:.1}s",
            block.line,
            ran.took.as_secs_f64()
        );
        ran
    }

    /// Panics with the block, what it printed and the end of `bosun up`'s output.
    fn fail(&self, block: &Block, ran: &Ran, what: &str) -> ! {
        panic!(
            "README.md line {}: the block {what}\n--- as run:\n{}\n--- exit: {} after {:.1}s\n\
             --- stdout:\n{}\n--- stderr:\n{}\n--- bosun up, last lines:\n{}",
            block.line,
            ran.script,
            ran.status
                .map_or_else(|| "stopped by the test".to_owned(), |s| s.to_string()),
            ran.took.as_secs_f64(),
            ran.stdout,
            ran.stderr,
            tail(&self.up_log(), 40),
        )
    }

    /// Starts the `<!-- ci: run -->` block (`bosun up`) and waits until the demo runs
    /// with its plugins and every demo pod carries its node's zone.
    fn start_up(&mut self, block: &Block) {
        let script = self.script(block);
        assert!(
            script.contains(" up"),
            "the ci: run block starts `bosun up`"
        );
        let log = self.up_log();
        self.up = Some(self.spawn(&script, &log, &log));
        let started = Instant::now();
        let mut settled = false;
        while started.elapsed() < UP_TIMEOUT {
            let up = self.up.as_mut().expect("started");
            if let Ok(Some(status)) = up.try_wait() {
                let ran = Ran {
                    script,
                    status: Some(status),
                    stdout: String::new(),
                    stderr: String::new(),
                    took: started.elapsed(),
                };
                self.fail(
                    block,
                    &ran,
                    "ended while the README runs commands against it",
                );
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let status = text.lines().rev().find(|l| l.contains(" nodes · pods "));
            settled = status.is_some_and(|l| {
                l.contains("pods 3/3 ready")
                    && l.contains("zone-labeler@")
                    && l.contains("release@")
                    && l.ends_with("sidecars 3")
            }) && {
                let pods = self.demo_pods();
                !pods.is_empty() && pods.iter().all(|p| zone(p).is_some())
            };
            if settled {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        if !settled {
            let ran = Ran {
                script,
                status: None,
                stdout: String::new(),
                stderr: String::new(),
                took: started.elapsed(),
            };
            self.fail(
                block,
                &ran,
                &format!(
                    "did not bring up 3 ready demo pods labelled with their zones, with \
                     zone-labeler, release and 3 sidecars, in {UP_TIMEOUT:?}"
                ),
            );
        }
        eprintln!(
            "README.md line {}: bosun up settled in {:.1}s",
            block.line,
            started.elapsed().as_secs_f64()
        );
    }

    /// `bosun up` stops on SIGTERM (as on Ctrl-C), in time and cleanly.
    fn stop_up(&mut self) {
        let mut up = self.up.take().expect("bosun up runs");
        let status = stop(&mut up, "-TERM");
        // bash may have exec'd `bosun up` (its status), or ended on the signal itself
        // while `bosun up` stops: then wait for the admin port to be let go.
        let started = Instant::now();
        while std::net::TcpListener::bind(&self.admin).is_err()
            && started.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(self.up_log()).unwrap_or_default();
        let ended = status.is_some_and(|s| s.success() || s.signal() == Some(15));
        assert!(
            ended
                && std::net::TcpListener::bind(&self.admin).is_ok()
                && log.contains("stopping")
                && !log.contains("exiting anyway"),
            "bosun up did not stop cleanly on SIGTERM ({status:?}):\n{}",
            tail(&self.up_log(), 40)
        );
    }

    /// `kubectl --kubeconfig .bosun/cluster/kubeconfig ARGS -o json` (the test's own look).
    fn kubectl_json(&self, args: &[&str]) -> Value {
        let out = Command::new("kubectl")
            .args(["--kubeconfig", ".bosun/cluster/kubeconfig"])
            .args(args)
            .args(["-o", "json"])
            .current_dir(self.work())
            .env_remove("KUBECONFIG")
            .output()
            .expect("kubectl runs");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// The demo StatefulSet's pods by name, once there are three.
    fn demo_pods(&self) -> Vec<Value> {
        let list = self.kubectl_json(&["-n", "demo", "get", "pods"]);
        let mut items = list["items"].as_array().cloned().unwrap_or_default();
        items.sort_by(|a, b| name(a).cmp(name(b)));
        if items.len() == 3 { items } else { Vec::new() }
    }

    /// `bosun plugin status zone-labeler --json`, the Plugin's status.
    fn plugin_status(&self) -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_bosun"))
            .args(["plugin", "status", "zone-labeler", "--json"])
            .current_dir(self.work())
            .env_remove("KUBECONFIG")
            .output()
            .expect("bosun runs");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v[0]["status"].clone()
    }

    fn digest_of(&self, rel: &str) -> String {
        let bytes = std::fs::read(self.work().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        bosun_host::load::digest(&bytes)
    }
}

fn zone(pod: &Value) -> Option<&str> {
    pod["metadata"]["labels"]["topology.kubernetes.io/zone"].as_str()
}

fn name(pod: &Value) -> &str {
    pod["metadata"]["name"].as_str().unwrap_or("?")
}

/// (uid, restart count, image) of a pod's only container.
/// A demo pod's uid, and its `web` container's restarts and image.
fn incarnation(pod: &Value) -> (String, u64, String) {
    let web = |list: &Value| {
        list.as_array()
            .and_then(|l| l.iter().find(|c| c["name"] == "web"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    (
        pod["metadata"]["uid"].as_str().unwrap_or("?").to_owned(),
        web(&pod["status"]["containerStatuses"])["restartCount"]
            .as_u64()
            .unwrap_or(0),
        web(&pod["spec"]["containers"])["image"]
            .as_str()
            .unwrap_or("?")
            .to_owned(),
    )
}

/// The JSON document a block printed after its first `{` line.
fn json_after(block: &Block, ran: &Ran, readme: &Readme) -> Value {
    let at = ran.stdout.find("\n{").map_or(0, |i| i + 1);
    serde_json::from_str(&ran.stdout[at..])
        .unwrap_or_else(|e| readme.fail(block, ran, &format!("printed no JSON result: {e}")))
}

#[test]
fn every_sh_block_of_the_readme_runs_as_written() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(repo.join("README.md")).expect("README.md");
    let blocks = sh_blocks(&text);
    let mut readme = Readme::new();
    let mut seen: Vec<&str> = Vec::new();
    for block in &blocks {
        match block.marker.as_deref() {
            // This test's own command: `.ci/run` runs it.
            Some("test") => {
                assert!(block.text.contains("cargo test"), "{}", block.text);
                continue;
            }
            Some("run") => {
                readme.start_up(block);
                continue;
            }
            _ => {}
        }
        let keys: Vec<&str> = KNOWN
            .iter()
            .copied()
            .filter(|k| block.text.contains(k))
            .collect();
        let [key] = keys[..] else {
            panic!(
                "README.md line {}: no check (or more than one) in runtime/cli/tests/readme.rs \
                 knows this block: add one\n{}",
                block.line, block.text
            );
        };
        assert!(
            readme.up.is_some(),
            "README.md line {}: a block before the `<!-- ci: run -->` one",
            block.line
        );
        seen.push(key);
        match key {
            "get pods -A -L topology.kubernetes.io/zone" => {
                let ran = readme.run(block, None);
                for pod in ["web-0", "web-1", "web-2"] {
                    let labelled = ran.stdout.lines().any(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        f.first() == Some(&"demo")
                            && f.get(1) == Some(&pod)
                            && f.last().is_some_and(|z| z.starts_with("zone-"))
                    });
                    if !labelled {
                        readme.fail(block, &ran, &format!("does not show {pod} with its zone"));
                    }
                }
                let serving = ran.stdout.lines().any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.first() == Some(&"zone-labeler") && f.get(1) == Some(&"serving")
                });
                if !serving || !ran.stdout.contains("leader: true") {
                    readme.fail(block, &ran, "does not show zone-labeler serving as leader");
                }
            }
            "set image statefulset/web" => {
                let before: Vec<(String, u64, String)> =
                    readme.demo_pods().iter().map(incarnation).collect();
                // `get pods -w` watches until Ctrl-C: stopped once every pod shows
                // one more restart and is ready again (its app and its injected
                // bosun-sidecar: READY 2/2).
                let all_ready = |ready: &str| {
                    ready
                        .split_once('/')
                        .is_some_and(|(r, n)| r == n && r != "0")
                };
                let restarted = |out: &str| {
                    (0..3).all(|i| {
                        let pod = format!("web-{i}");
                        let restarts = before.get(i).map_or(1, |b| b.1 + 1).to_string();
                        out.lines().any(|l| {
                            let f: Vec<&str> = l.split_whitespace().collect();
                            f.len() >= 4 && f[0] == pod && all_ready(f[1]) && f[3] == restarts
                        })
                    })
                };
                let ran = readme.run(block, Some(&restarted));
                let after: Vec<(String, u64, String)> =
                    readme.demo_pods().iter().map(incarnation).collect();
                let same_pods = before.len() == 3
                    && after.len() == 3
                    && before
                        .iter()
                        .zip(&after)
                        .all(|(b, a)| a.0 == b.0 && a.1 == b.1 + 1 && a.2 == "nginx:1.28");
                if !ran.stdout.contains("image updated") || !same_pods {
                    readme.fail(
                        block,
                        &ran,
                        &format!(
                            "did not restart each pod in place once with the new image: \
                             (uid, restarts, image) before {before:?}, after {after:?}"
                        ),
                    );
                }
            }
            "plugin push v2.wasm" => {
                let ran = readme.run(block, None);
                let v1 = readme.digest_of(".bosun/plugins/zone-labeler.wasm");
                let v2 = readme.digest_of("v2.wasm");
                if v1 == v2 {
                    readme.fail(
                        block,
                        &ran,
                        "v2.wasm is the folder's revision, not a new one",
                    );
                }
                let canary = format!("{}@20%", short(&v2));
                let shown = ran.stdout.lines().any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() > 3 && f[0] == "zone-labeler" && f[2] == short(&v1) && f[3] == canary
                });
                if !ran.stdout.contains(&format!("digest     {v2}"))
                    || !ran.stdout.contains("rollout    canary 20%")
                    || !shown
                    || !ran
                        .stdout
                        .contains(&format!("asked the runtime to promote {}", short(&v2)))
                {
                    readme.fail(
                        block,
                        &ran,
                        &format!(
                            "did not push {v2} as a 20% canary beside {v1}, show it ({canary}) \
                             and ask to promote it"
                        ),
                    );
                }
                let started = Instant::now();
                let mut status = readme.plugin_status();
                while !(status["stableRevision"] == v2.as_str()
                    && status["canaryRevision"].is_null())
                {
                    if started.elapsed() > Duration::from_secs(60) {
                        readme.fail(
                            block,
                            &ran,
                            &format!("the canary {v2} was not promoted to stable: {status:#}"),
                        );
                    }
                    std::thread::sleep(Duration::from_millis(250));
                    status = readme.plugin_status();
                }
            }
            "record --plugin zone-labeler" => {
                let ran = readme.run(block, None);
                let recording =
                    std::fs::read_to_string(readme.work().join("zl.jsonl")).unwrap_or_default();
                let calls: Vec<Value> = recording
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect();
                let v2 = readme.digest_of("v2.wasm");
                // The label taken off web-0 is put back: a recorded call of the promoted
                // revision with that patch.
                let relabelled = calls.iter().any(|c| {
                    c["revision"] == v2.as_str()
                        && c["request"].to_string().contains("web-0")
                        && c["commands"]
                            .to_string()
                            .contains("topology.kubernetes.io/zone")
                });
                let printed = format!("recorded {} call(s) of zone-labeler", calls.len());
                let compared = format!(
                    "{} calls, 0 differ between v2.wasm and plugins/zone-labeler",
                    calls.len()
                );
                let web0 = readme
                    .demo_pods()
                    .iter()
                    .find(|p| name(p) == "web-0")
                    .and_then(|p| zone(p).map(str::to_owned));
                if !relabelled
                    || !ran.stdout.contains(&printed)
                    || !ran.stderr.contains(&compared)
                    || web0.is_none()
                {
                    readme.fail(
                        block,
                        &ran,
                        &format!(
                            "did not record web-0 relabelled by {v2} and replay it with no \
                             difference (web-0's zone now: {web0:?}); the recording:\n{recording}"
                        ),
                    );
                }
            }
            "plugin test plugins/zone-labeler" => {
                let ran = readme.run(block, None);
                let v = json_after(block, &ran, &readme);
                let command = &v["commands"][0]["command"];
                if v["status"] != "ok"
                    || v["plugin"] != "zone-labeler"
                    || command["command"] != "merge-patch"
                    || command["patch"]["metadata"]["labels"]["topology.kubernetes.io/zone"]
                        != "eu-west-1b"
                {
                    readme.fail(
                        block,
                        &ran,
                        "did not print the merge patch labelling the pod with its node's zone",
                    );
                }
            }
            "plugin new --lang" => {
                let ran = readme.run(block, None);
                let v = json_after(block, &ran, &readme);
                let command = &v["commands"][0]["command"];
                if ran.stdout.lines().next() != Some("hello")
                    || v["status"] != "ok"
                    || v["plugin"] != "hello"
                    || command["patch"]["metadata"]["labels"]["bosun.dev/hello"] != "world"
                {
                    readme.fail(
                        block,
                        &ran,
                        "did not create hello/ and print its merge patch labelling the pod",
                    );
                }
            }
            other => unreachable!("{other}"),
        }
    }
    for key in KNOWN {
        assert!(
            seen.contains(&key),
            "README.md has no ```sh block with `{key}` any more: update \
             runtime/cli/tests/readme.rs"
        );
    }
    readme.stop_up();
}
