//! The sidecar link: the real `bosun-sidecar` binary's cold start and idle memory with
//! one Rust pod-agent plugin, the pod-command round trip on loopback, and the runtime's
//! memory and CPU with many connected sidecars.
//!
//! The embedded cluster runs in a child process, and the many sidecars are lightweight
//! link clients in another child process (this binary again), so the RSS and CPU
//! printed for the runtime are its own.
//!
//! Run: `cargo build --release -p bosun-sidecar && cargo bench -p bosun-runtime --bench sidecars`
//! (env: SIDECARS (1000), ROUNDTRIPS (1000), BOSUN_SIDECAR_BIN: another sidecar binary,
//! such as one built with `--no-default-features`, without a compiler)

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_host::contract::{ObjectRef, PodCommand, Verdict};
use bosun_host::host::CallInfo;
use bosun_host::host::commands::Commands;
use bosun_host::load::Source;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn proc_status(pid: &str, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// User + system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if std::env::var_os("BOSUN_BENCH_CLUSTER").is_some() {
        return rt.block_on(async {
            let cluster = bosun_cluster::start(bosun_cluster::Config {
                nodes: 0,
                ..Default::default()
            })
            .await?;
            println!("{}", cluster.kubeconfig_path().display());
            std::future::pending::<()>().await;
            Ok(())
        });
    }
    if let Some(tokens) = std::env::var_os("BOSUN_BENCH_CLIENTS") {
        return rt.block_on(clients(PathBuf::from(tokens)));
    }
    rt.block_on(bench())
}

fn spawn_self(var: &str, value: &str) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(std::env::current_exe()?)
        .env(var, value)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    std::io::BufReader::new(
        child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?,
    )
    .read_line(&mut line)?;
    Ok((child, line.trim().to_owned()))
}

fn sidecar_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("BOSUN_SIDECAR_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow::anyhow!("no target dir"))?;
    let bin = dir.join("bosun-sidecar");
    anyhow::ensure!(
        bin.is_file(),
        "{} is missing: run `cargo build --release -p bosun-sidecar` first",
        bin.display()
    );
    Ok(bin)
}

fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split(' ').nth(1)?.parse().ok()?;
    Some((code, out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned()))
}

/// CPU time a process has used so far: the sum of its threads' /proc/PID/task/TID/schedstat
/// (nanoseconds on CPU), or /proc/PID/stat's user + system ticks (100 per second on Linux,
/// and counting exited threads) when that is more.
fn cpu_of(pid: u32) -> Duration {
    let threads: u64 = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(threads).max(Duration::from_millis(ticks * 10))
}

/// Starts the real sidecar for `pod` and returns it with the time until its readiness
/// endpoint answers 200 with the agent plugin loaded, and the CPU it used until then.
#[allow(clippy::too_many_arguments)]
fn start_sidecar(
    bin: &Path,
    link: &str,
    pod: &Pod,
    token: &str,
    dir: &Path,
    probe_port: u16,
    precompiled: bool,
) -> anyhow::Result<(Child, Duration, Duration)> {
    let started = Instant::now();
    let child = Command::new(bin)
        .env("BOSUN_PRECOMPILED", precompiled.to_string())
        .env("POD_NAMESPACE", "default")
        .env("POD_NAME", pod.metadata.name.as_deref().unwrap_or(""))
        .env("POD_UID", pod.metadata.uid.as_deref().unwrap_or(""))
        .env("BOSUN_RUNTIME", link)
        .env("BOSUN_TOKEN", token)
        .env("BOSUN_PROBE_ADDR", format!("127.0.0.1:{probe_port}"))
        .env("BOSUN_SHARED_DIR", dir.join("shared"))
        .env("BOSUN_DATA_DIR", dir.join("data"))
        .env("BOSUN_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()?;
    let mut child = child;
    let addr = format!("127.0.0.1:{probe_port}");
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the sidecar exited ({status}) before it was ready");
        }
        if let Some((200, body)) = http_get(&addr, "/readyz")
            && body.contains("ok agent")
        {
            let took = started.elapsed();
            let cpu = cpu_of(child.id());
            return Ok((child, took, cpu));
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the sidecar did not become ready"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn bench() -> anyhow::Result<()> {
    let n = env("SIDECARS", 1000) as usize;
    let roundtrips = env("ROUNDTRIPS", 1000) as usize;
    let bin = sidecar_binary()?;
    let (mut cluster, kubeconfig) = spawn_self("BOSUN_BENCH_CLUSTER", "1")?;
    let client = bosun_runtime::connect::client(Some(Path::new(&kubeconfig))).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created: Vec<Pod> = futures::stream::iter(0..n.max(1))
        .map(|i| {
            let pods = pods.clone();
            async move {
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("p-{i}"), "labels": {"bosun.dev/agent": "test"}},
                    "spec": {"containers": [{"name": "app", "image": "app:v1"}]}
                }))?;
                Ok::<Pod, anyhow::Error>(pods.create(&PostParams::default(), &pod).await?)
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let mut created = created;
    created.sort_by_key(|p| {
        p.metadata
            .name
            .as_deref()
            .and_then(|n| n.strip_prefix("p-")?.parse::<usize>().ok())
    });

    let dir = tempfile::tempdir()?;
    let mut config = bosun_runtime::Config {
        data_dir: dir.path().join("runtime"),
        admin_addr: "127.0.0.1:0".parse()?,
        resync_seconds: 0,
        ..Default::default()
    };
    config.sidecars.listen = Some("127.0.0.1:0".parse()?);
    // The round trips are sequential and fast: the rate guardrail is not what is measured.
    config.guardrails.global = bosun_runtime::guardrail::Rate::new(1e6, 1_000_000);
    config.guardrails.per_plugin = bosun_runtime::guardrail::Rate::new(1e6, 1_000_000);
    let runtime = bosun_runtime::Runtime::start(config, client.clone()).await?;
    runtime.install(
        &Source::file(Path::new(bosun_test_artifacts::TEST_AGENT))?,
        r#"{"tag":"v1"}"#,
    )?;
    let (sidecars, addr) = runtime
        .sidecars()
        .ok_or_else(|| anyhow::anyhow!("no sidecar link"))?;
    let sidecars = sidecars.clone();
    let link = format!("http://{addr}");
    let key = ObjectRef::namespaced("v1", "Pod", "default", "p-0");
    let cached = async || {
        while runtime.informers().get(&key).is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    cached().await;
    let p0 = &created[0];
    let token = sidecars.issue_token("default", "p-0", p0.metadata.uid.as_deref().unwrap_or(""));

    // 1. The real binary: first start (fetch + compile), then restarts (cached).
    println!(
        "sidecar binary {} ({:.1} MB)",
        bin.display(),
        std::fs::metadata(&bin)?.len() as f64 / 1e6
    );
    // First starts in an empty data dir: compiling the plugin here, then taking the
    // runtime's precompiled code (which needs a sidecar of the same wasmtime build).
    let mut first = Vec::new();
    for precompiled in [false, true] {
        let (mut took, mut cpu, mut runtime_cpu) = (Vec::new(), Vec::new(), Vec::new());
        let mut refused = None;
        for run in 0..5 {
            let fresh = dir.path().join(format!("first-{precompiled}-{run}"));
            let port = free_port()?;
            let cpu_before = cpu_of(std::process::id());
            match start_sidecar(&bin, &link, p0, &token, &fresh, port, precompiled) {
                Ok((mut child, t, c)) => {
                    runtime_cpu.push(cpu_of(std::process::id()).saturating_sub(cpu_before));
                    child.kill()?;
                    child.wait()?;
                    took.push(t);
                    cpu.push(c);
                }
                // A sidecar without a compiler cannot take `false`: it says so and exits.
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = refused {
            println!("first start with BOSUN_PRECOMPILED={precompiled}: {e}");
            continue;
        }
        for v in [&mut took, &mut cpu, &mut runtime_cpu] {
            v.sort();
        }
        println!(
            "first start to ready (empty data dir; fetch + {}), p50 of 5: {:.1} ms, sidecar CPU {:.1} ms (this process: runtime + driver, {:.1} ms)",
            if precompiled {
                "the runtime's precompiled code"
            } else {
                "compile here"
            },
            ms(percentile(&took, 0.5)),
            ms(percentile(&cpu, 0.5)),
            ms(percentile(&runtime_cpu, 0.5))
        );
        first.push((precompiled, percentile(&cpu, 0.5)));
    }
    let sdir = dir.path().join("sidecar");
    let mut starts = Vec::new();
    for _ in 0..10 {
        let port = free_port()?;
        let (mut c, took, _) = start_sidecar(&bin, &link, p0, &token, &sdir, port, true)?;
        starts.push(took);
        c.kill()?;
        c.wait()?;
    }
    starts.sort();
    println!(
        "restart to ready with the plugin's compiled code cached: p50 {:.1} ms, max {:.1} ms (10 runs)",
        ms(percentile(&starts, 0.5)),
        ms(percentile(&starts, 1.0))
    );
    let agent = std::fs::read(bosun_test_artifacts::TEST_AGENT)?;
    let engine = runtime.registry().engine();
    // Once per revision: the first sidecar's fetch compiles the baseline-CPU code (here a
    // variant of the agent never compiled, to time that), every later one reads it.
    let fresh = bosun_test_support::with_custom_section(&agent, "bench-once");
    let fresh_digest = bosun_link::digest(&fresh);
    let t = Instant::now();
    engine.precompiled(&fresh, fresh_digest.trim_start_matches("sha256:"))?;
    let made = t.elapsed();
    let digest = bosun_link::digest(&agent);
    let t = Instant::now();
    let code = engine.precompiled(&agent, digest.trim_start_matches("sha256:"))?;
    println!(
        "the runtime's code of the agent for sidecars (baseline CPU): {:.1} MB, compiled once per revision in {:.1} ms, then read from its compiled-code cache in {:.1} ms per fetch",
        code.len() as f64 / 1e6,
        ms(made),
        ms(t.elapsed())
    );
    if let [(false, own), (true, shipped)] = first[..] {
        println!(
            "a new revision on 1,000 sidecars, sidecar CPU: compiling in each {:.1} s; the runtime's code {:.1} s (1,000 × the first starts above)",
            own.as_secs_f64() * 1000.0,
            shipped.as_secs_f64() * 1000.0
        );
    }
    let port = free_port()?;
    let (mut child, _, _) = start_sidecar(&bin, &link, p0, &token, &sdir, port, true)?;
    let pid = child.id().to_string();
    while sidecars.connected() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!(
        "sidecar idle with one Rust pod-agent plugin: RSS {:.1} MiB (VmHWM {:.1} MiB)",
        proc_status(&pid, "VmRSS:"),
        proc_status(&pid, "VmHWM:")
    );

    // 2. Round trips: pod-command queued by the command pipe → sidecar plugin → outcome back.
    let pipe_api = runtime.pipe().clone();
    let executor =
        bosun_runtime::executor::Executor::new(client.clone(), runtime.informers().clone());
    let call = CallInfo {
        plugin: Arc::from("bench"),
        revision: Arc::from("sha256:bench"),
        key: Some(key.clone()),
    };
    let mut times = Vec::with_capacity(roundtrips);
    for i in 0..roundtrips {
        let started = Instant::now();
        let id = pipe_api
            .submit(
                &call,
                bosun_host::contract::Command::PodCommand(PodCommand {
                    namespace: "default".into(),
                    pod: "p-0".into(),
                    plugin: "agent".into(),
                    payload: format!("rt-{i}"),
                }),
            )
            .map_err(anyhow::Error::msg)?;
        pipe_api.finish(&call, true, &executor).await;
        'wait: loop {
            for o in pipe_api.take_outcomes("bench", &key) {
                if o.id == id && o.verdict == Verdict::Executed {
                    break 'wait;
                }
                anyhow::ensure!(
                    o.verdict != Verdict::Failed,
                    "command failed: {}",
                    o.message
                );
            }
            tokio::task::yield_now().await;
        }
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "pod-command round trip on loopback ({roundtrips} sequential, plugin appends to a file): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(percentile(&times, 1.0))
    );
    child.kill()?;
    child.wait()?;
    while sidecars.connected() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // 3. Many sidecars (lightweight link clients in a child process).
    let tokens = dir.path().join("tokens");
    let mut lines = format!("{link}\n");
    for p in &created {
        let name = p.metadata.name.as_deref().unwrap_or("");
        let uid = p.metadata.uid.as_deref().unwrap_or("");
        lines.push_str(&format!(
            "{name} {uid} {}\n",
            sidecars.issue_token("default", name, uid)
        ));
    }
    std::fs::write(&tokens, lines)?;
    // Every pod must be in the runtime's cache to get its assignment.
    let last = ObjectRef::namespaced("v1", "Pod", "default", &format!("p-{}", n - 1));
    while runtime.informers().get(&last).is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let self_pid = std::process::id().to_string();
    let rss_before = proc_status(&self_pid, "VmRSS:");
    let started = Instant::now();
    let (mut clients, _) = spawn_self("BOSUN_BENCH_CLIENTS", &tokens.display().to_string())?;
    while sidecars.connected() < n {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "only {} of {n} connected",
            sidecars.connected()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect = started.elapsed();
    let assigned = || {
        sidecars
            .status()
            .iter()
            .filter(|s| s.plugins.contains_key("agent"))
            .count()
    };
    while assigned() < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_assigned = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu0 = cpu_seconds();
    let idle = Duration::from_secs(10);
    tokio::time::sleep(idle).await;
    let cpu_idle = cpu_seconds() - cpu0;
    let rss_connected = proc_status(&self_pid, "VmRSS:");
    // A new revision reaches every sidecar.
    let mut bytes = std::fs::read(bosun_test_artifacts::TEST_AGENT)?;
    bytes.extend_from_slice(&[0, 4, 2, b'v', b'2', 0]);
    let v2 = Source {
        origin: "agent-v2".into(),
        bytes: bytes.into(),
    };
    let digest = v2.digest();
    let cpu1 = cpu_seconds();
    let rollout = Instant::now();
    runtime.install(&v2, r#"{"tag":"v2"}"#)?;
    let on_v2 = || {
        sidecars
            .status()
            .iter()
            .filter(|s| s.plugins.get("agent") == Some(&digest))
            .count()
    };
    while on_v2() < n {
        anyhow::ensure!(
            rollout.elapsed() < Duration::from_secs(120),
            "only {} on v2",
            on_v2()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rollout_time = rollout.elapsed();
    let cpu_rollout = cpu_seconds() - cpu1;
    println!(
        "{n} connected sidecars: all connected in {:.2} s, all assigned in {:.2} s; runtime RSS {:.1} MiB → {:.1} MiB (+{:.1} KiB per sidecar); CPU while idle {:.2}% of one core over {} s",
        connect.as_secs_f64(),
        all_assigned.as_secs_f64(),
        rss_before,
        rss_connected,
        (rss_connected - rss_before) * 1024.0 / n as f64,
        cpu_idle / idle.as_secs_f64() * 100.0,
        idle.as_secs()
    );
    println!(
        "new revision pushed to {n} sidecars and reported loaded in {:.2} s ({:.2} CPU-s in the runtime)",
        rollout_time.as_secs_f64(),
        cpu_rollout
    );
    let _ = clients.kill();
    let _ = cluster.kill();
    runtime.shutdown().await;
    Ok(())
}

/// The child: one lightweight link client per line of the tokens file; each says hello,
/// reports every assigned plugin as loaded, and answers commands.
async fn clients(tokens: PathBuf) -> anyhow::Result<()> {
    use bosun_link::link_client::LinkClient;
    use bosun_link::{
        Hello, Outcome, PluginLoaded, SidecarMessage, runtime_message, sidecar_message,
    };
    let text = std::fs::read_to_string(&tokens)?;
    let mut lines = text.lines();
    let link = lines.next().unwrap_or_default().to_owned();
    let endpoint = tonic::transport::Endpoint::from_shared(link)?;
    println!("ready");
    let mut tasks = Vec::new();
    for line in lines {
        let mut parts = line.split(' ');
        let (Some(name), Some(uid), Some(token)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (name, uid, token) = (name.to_owned(), uid.to_owned(), token.to_owned());
        let endpoint = endpoint.clone();
        tasks.push(tokio::spawn(async move {
            // One connection per sidecar, as pods have.
            let mut client = LinkClient::new(endpoint.connect().await?);
            let (tx, rx) = tokio::sync::mpsc::channel::<SidecarMessage>(16);
            let hello = SidecarMessage {
                body: Some(sidecar_message::Body::Hello(Hello {
                    namespace: "default".into(),
                    pod: name,
                    uid,
                    sidecar_version: "bench".into(),
                    plugins: Vec::new(),
                })),
            };
            tx.send(hello).await?;
            let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse()?);
            let mut inbound = client.session(request).await?.into_inner();
            while let Some(m) = inbound.message().await? {
                match m.body {
                    Some(runtime_message::Body::Assignment(a)) => {
                        for p in a.plugins {
                            tx.send(SidecarMessage {
                                body: Some(sidecar_message::Body::PluginLoaded(PluginLoaded {
                                    plugin: p.name,
                                    digest: p.digest,
                                    load_micros: 0,
                                })),
                            })
                            .await?;
                        }
                    }
                    Some(runtime_message::Body::Command(c)) => {
                        tx.send(SidecarMessage {
                            body: Some(sidecar_message::Body::Outcome(Outcome {
                                id: c.id,
                                plugin: c.plugin,
                                revision: String::new(),
                                ok: true,
                                message: String::new(),
                            })),
                        })
                        .await?;
                    }
                    _ => {}
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
