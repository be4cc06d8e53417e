//! `bosun up`, `bosun run`, `bosun cluster serve` and `bosun status`: the long-running
//! commands and the one that reports on them.

use std::io::{IsTerminal, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use bosun_dev::up::{self, Up};
use bosun_runtime::{Config, Runtime};
use clap::Args;

/// Flags of `bosun up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the cluster and the runtime keep their state.
    #[arg(long, default_value = ".bosun")]
    pub data_dir: PathBuf,
    /// The plugins folder, hot-reloaded (default: DATA_DIR/plugins).
    #[arg(long)]
    pub plugins: Option<PathBuf>,
    /// Source folders of built-in plugins to build and place in the plugins folder.
    #[arg(long, default_value = "plugins")]
    pub builtin: PathBuf,
    /// Simulated nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Runtime configuration file (YAML).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Admin endpoint address (overrides the config file).
    #[arg(long, env = "BOSUN_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,
    /// Do not create the demo workload.
    #[arg(long)]
    pub no_demo: bool,
    /// Stop after this many seconds (for scripts and smoke tests).
    #[arg(long, env = "BOSUN_UP_EXIT_AFTER")]
    pub exit_after: Option<u64>,
}

/// Flags of `bosun run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Kubeconfig of the cluster (default: KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Runtime configuration file (YAML).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The plugins folder, hot-reloaded (overrides the config file).
    #[arg(long)]
    pub plugins: Option<PathBuf>,
    /// Where the runtime keeps its state (overrides the config file).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Admin endpoint address (overrides the config file).
    #[arg(long)]
    pub admin_addr: Option<SocketAddr>,
}

/// Flags of `bosun cluster serve`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Where the cluster keeps its state (omit to keep it in memory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
    /// Simulated nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
}

/// Flags of `bosun status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The runtime's admin endpoint (BOSUN_ADMIN_ADDR sets it, as it sets `bosun up`'s).
    #[arg(long, env = "BOSUN_ADMIN_ADDR", default_value = "127.0.0.1:9464")]
    pub admin: SocketAddr,
    /// Print the JSON as served.
    #[arg(long)]
    pub json: bool,
}

/// An invalid configuration: reported in one line with exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadConfig(pub String);

pub(crate) fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Config::load(p).map_err(|e| BadConfig(e.to_string()).into()),
        None => Ok(Config::default()),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `bosun up`.
pub fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let mut config = load_config(args.config.as_deref())?;
    if let Some(addr) = args.admin_addr {
        config.admin_addr = addr;
    }
    let mut seed = Vec::new();
    if args.builtin.is_dir() {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&args.builtin)
            .with_context(|| format!("cannot read {}", args.builtin.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| crate::plugin::Lang::detect(p).is_ok())
            .collect();
        dirs.sort();
        for dir in dirs {
            let started = std::time::Instant::now();
            let rust = dir.join("Cargo.toml").exists();
            let wasm = match crate::plugin::build(&dir) {
                Ok(w) => w,
                Err(e) if !rust => {
                    // Go and JS plugins need their toolchains; without them `up` still runs.
                    eprintln!("skipped {}: {e:#}", dir.display());
                    continue;
                }
                Err(e) => return Err(e),
            };
            eprintln!(
                "built {} in {:.1}s",
                dir.display(),
                started.elapsed().as_secs_f64()
            );
            // A plugin's `bosun-up.json` is its config in `bosun up`, its `admission.json`
            // its webhook settings (an admission plugin's).
            let config = Some(dir.join("bosun-up.json")).filter(|c| c.is_file());
            let admission = Some(dir.join("admission.json")).filter(|c| c.is_file());
            seed.push(up::Seed {
                wasm,
                config,
                admission,
            });
        }
    }
    let plugins_dir = args
        .plugins
        .clone()
        .unwrap_or_else(|| args.data_dir.join("plugins"));
    let grace = stop_limit(&config);
    let options = up::Options {
        data_dir: args.data_dir.clone(),
        plugins_dir: plugins_dir.clone(),
        seed,
        nodes: args.nodes,
        runtime: config,
        demo: !args.no_demo,
    };
    let rt = runtime()?;
    let result = rt.block_on(async move {
        eprintln!(
            "starting the embedded cluster ({} nodes) and the runtime…",
            args.nodes
        );
        let up = Up::start(options).await?;
        if let Some(kc) = up.kubeconfig() {
            println!("cluster ready. kubeconfig: {}", kc.display());
            println!(
                "  kubectl --kubeconfig {} get pods -A -L topology.kubernetes.io/zone",
                kc.display()
            );
        }
        println!("plugins folder (hot-reloaded): {}", plugins_dir.display());
        println!(
            "admin: http://{}/plugins   (bosun status --admin {})",
            up.runtime().admin_addr(),
            up.runtime().admin_addr()
        );
        println!("Ctrl-C stops.");
        status_loop(&up, args.exit_after.map(Duration::from_secs)).await;
        eprintln!("\nstopping…");
        stop_within(grace, up.shutdown()).await;
        anyhow::Ok(())
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    result?;
    Ok(ExitCode::SUCCESS)
}

/// How long stopping may take: the runtime's grace period for reconciles in flight, and a
/// few seconds for the rest (stepping down, the audit log, the embedded cluster).
fn stop_limit(config: &bosun_runtime::Config) -> Duration {
    Duration::from_secs(config.shutdown_grace_seconds.saturating_add(5))
}

/// Runs `shutdown` for at most `limit`, or until a second Ctrl-C or SIGTERM: stopping
/// always ends, whatever a plugin, a sidecar or the API server does.
async fn stop_within(limit: Duration, shutdown: impl std::future::Future<Output = ()>) {
    tokio::select! {
        () = shutdown => {}
        () = tokio::time::sleep(limit) => {
            eprintln!("stopping took more than {} s; exiting anyway", limit.as_secs());
        }
        () = up::signal() => eprintln!("second signal: exiting now"),
    }
}

async fn status_loop(up: &Up, exit_after: Option<Duration>) {
    let tty = std::io::stdout().is_terminal();
    let started = tokio::time::Instant::now();
    let mut last = String::new();
    let stop = up::signal();
    tokio::pin!(stop);
    loop {
        let s = up.snapshot().await;
        let line = format!(
            "{} nodes · pods {}/{} ready · plugins: {} · reconciles {} · commands {} executed, {} refused, {} failed · sidecars {}",
            s.nodes,
            s.pods.0,
            s.pods.1,
            if s.plugins.is_empty() {
                "none".to_owned()
            } else {
                s.plugins.join(", ")
            },
            s.reconciles,
            s.commands.executed,
            s.commands.refused,
            s.commands.failed,
            s.sidecars,
        );
        if tty {
            print!("\r\x1b[2K{line}");
            let _ = std::io::stdout().flush();
        } else if line != last {
            println!("{line}");
        }
        last = line;
        if exit_after.is_some_and(|d| started.elapsed() >= d) {
            return;
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(up::STATUS_PERIOD) => {}
        }
    }
}

/// `bosun run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut config = load_config(args.config.as_deref())?;
    if let Some(p) = args.plugins {
        config.plugins_dir = Some(p);
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(a) = args.admin_addr {
        config.admin_addr = a;
    }
    let grace = stop_limit(&config);
    let tokio_rt = runtime()?;
    let result = tokio_rt.block_on(async move {
        let client = bosun_runtime::connect::client(args.kubeconfig.as_deref()).await?;
        let rt = Runtime::start(config, client.clone()).await?;
        // As `bosun up`: deploy/ ships the built-in plugins in the image's plugins folder.
        let _publish = rt.publish_folder(client);
        println!("runtime running; admin on http://{}", rt.admin_addr());
        up::signal().await;
        eprintln!("stopping…");
        stop_within(grace, rt.shutdown()).await;
        anyhow::Ok(())
    });
    // Plugin calls still on blocking threads end at their deadline; do not wait for them.
    tokio_rt.shutdown_timeout(Duration::from_secs(1));
    result?;
    Ok(ExitCode::SUCCESS)
}

/// `bosun cluster serve`.
pub fn cluster(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(bosun_cluster::serve_until_ctrl_c(bosun_cluster::Config {
        data_dir: args.data_dir,
        addr: args.addr,
        nodes: args.nodes,
        ..Default::default()
    }))?;
    Ok(ExitCode::SUCCESS)
}

/// GET on a loopback admin endpoint (HTTP/1.0, no dependencies).
pub(crate) fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("cannot reach the runtime's admin endpoint at {addr}: is `bosun up` or `bosun run` running?"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!("{path}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
}

/// The plugins' table of `bosun status`, from the admin endpoint's `/plugins` answer.
fn plugins_table(v: &serde_json::Value) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<20} {:<8} {:<14} {:>9} {:>7} {:>6} {:>8} {:>6} {:>6} {:>9} {:>7} {:>11} {:<10}\n",
        "PLUGIN",
        "STATE",
        "REVISION",
        "CALLS",
        "ERRORS",
        "TRAPS",
        "TIMEOUTS",
        "OOM",
        "LIMIT",
        "REFUSED",
        "QUEUE",
        "STATE-BYTES",
        "BREAKER"
    ));
    for p in v["plugins"].as_array().into_iter().flatten() {
        let digest = p["revision"]["digest"].as_str().unwrap_or("-");
        let short = digest
            .trim_start_matches("sha256:")
            .get(..12)
            .unwrap_or(digest);
        let s = |k: &str| {
            p["stats"][k]
                .as_u64()
                .map_or_else(|| "-".to_owned(), |n| n.to_string())
        };
        let breaker = p["breaker"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| p["breaker"].to_string());
        out.push_str(&format!(
            "{:<20} {:<8} {:<14} {:>9} {:>7} {:>6} {:>8} {:>6} {:>6} {:>9} {:>7} {:>11} {:<10}\n",
            p["name"].as_str().unwrap_or("?"),
            p["state"].as_str().unwrap_or("?"),
            short,
            s("calls"),
            s("errors"),
            s("traps"),
            s("timeouts"),
            s("outOfMemory"),
            s("limitExceeded"),
            s("commandsRefused"),
            p["queue"]["depth"].as_u64().unwrap_or(0).to_string(),
            p["pluginState"]["bytes"]
                .as_u64()
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            breaker,
        ));
        if let Some(err) = p["lastLoadError"].as_str() {
            out.push_str(&format!("    last load error: {err}\n"));
        }
    }
    out
}

/// `bosun status`.
pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let body = get(args.admin, "/plugins")?;
    if args.json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let v: serde_json::Value =
        serde_json::from_str(&body).context("the admin endpoint answered with invalid JSON")?;
    println!(
        "leader: {}   api server: {}",
        v["leader"],
        v["apiServer"].as_str().unwrap_or("?")
    );
    print!("{}", plugins_table(&v));
    for (i, line) in v["guardrails"].as_array().into_iter().flatten().enumerate() {
        let label = if i == 0 { "guardrails:" } else { "  " };
        println!("{label} {}", line.as_str().unwrap_or("?"));
    }
    if let Some(hook) = v["webhook"].as_object() {
        let plugins: Vec<String> = hook["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                format!(
                    "{} ({}, {})",
                    p["name"].as_str().unwrap_or("?"),
                    if p["mutating"] == true {
                        "mutating"
                    } else {
                        "validating"
                    },
                    p["failurePolicy"].as_str().unwrap_or("?")
                )
            })
            .collect();
        println!(
            "admission webhook {} (called at {}), certificate expires {}: {}",
            hook["address"].as_str().unwrap_or("?"),
            hook["calledAt"].as_str().unwrap_or("?"),
            hook["certificateExpires"].as_str().unwrap_or("?"),
            if plugins.is_empty() {
                "no admission plugins".to_owned()
            } else {
                plugins.join(", ")
            }
        );
    }
    if let Some(link) = v["sidecars"].as_object() {
        let connected = link["connected"].as_array().cloned().unwrap_or_default();
        println!(
            "sidecar link {} ({}): {} connected, {} pod-commands in flight",
            link["listen"].as_str().unwrap_or("?"),
            if link["tls"] == true {
                "TLS"
            } else {
                "plaintext"
            },
            connected.len(),
            link["inFlight"]
        );
        if !connected.is_empty() {
            println!(
                "{:<40} {:<40} {:>7} {:<20}",
                "POD", "PLUGINS", "WAITING", "PROBES FAILING"
            );
        }
        for s in connected {
            let plugins: Vec<String> = s["plugins"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(n, d)| {
                    let d = d.as_str().unwrap_or("").trim_start_matches("sha256:");
                    format!("{n}@{}", d.get(..8).unwrap_or(d))
                })
                .collect();
            let failing: Vec<&str> = s["probes"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, ok)| **ok == false)
                .map(|(k, _)| k.as_str())
                .collect();
            println!(
                "{:<40} {:<40} {:>7} {:<20}",
                s["pod"].as_str().unwrap_or("?"),
                if plugins.is_empty() {
                    "-".to_owned()
                } else {
                    plugins.join(",")
                },
                s["waiting"],
                if failing.is_empty() {
                    "-".to_owned()
                } else {
                    failing.join(",")
                }
            );
            for (plugin, error) in s["errors"].as_object().into_iter().flatten() {
                println!("    {plugin}: {}", error.as_str().unwrap_or("?"));
            }
        }
    }
    if let Some(kinds) = v["kinds"].as_object() {
        for (kind, state) in kinds {
            if state["state"] != "synced" {
                println!("kind {kind}: {}", state);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_shows_out_of_memory_calls_and_state_bytes() {
        let v = serde_json::json!({"plugins": [{
            "name": "hostile", "state": "serving",
            "revision": {"digest": "sha256:0123456789abcdef"},
            "stats": {"calls": 9, "errors": 0, "traps": 0, "timeouts": 0,
                      "outOfMemory": 7, "limitExceeded": 2, "commandsRefused": 0},
            "queue": {"depth": 1},
            "pluginState": {"bytes": 4096, "keys": 3},
            "breaker": "closed",
        }]});
        let table = plugins_table(&v);
        let lines: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        let header = &lines[0];
        let row = &lines[1];
        let col = |name: &str| row[header.iter().position(|h| *h == name).expect(name)];
        assert_eq!(col("OOM"), "7", "{table}");
        assert_eq!(col("LIMIT"), "2", "{table}");
        assert_eq!(col("STATE-BYTES"), "4096", "{table}");
    }
}
