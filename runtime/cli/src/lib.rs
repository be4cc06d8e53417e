//! The `bosun` command line: flags (clap) and one function per subcommand.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod offline;
pub mod plugin;
pub mod rbac;
pub mod record;
pub mod release;
pub mod serve;

/// Bosun: a Kubernetes operator runtime whose operators are WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "bosun", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output (-v debug, -vv trace). `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the embedded cluster, the runtime and the built-in plugins on this machine.
    Up(serve::UpArgs),
    /// Run the runtime against the cluster of the current kubeconfig (or in-cluster).
    Run(serve::RunArgs),
    /// Show the plugins of a running runtime.
    Status(serve::StatusArgs),
    /// The embedded Kubernetes-compatible cluster on its own.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Work with plugins: build, inspect, test offline; push, status, history, promote,
    /// rollback on a cluster.
    #[command(subcommand)]
    Plugin(plugin::Command),
    /// Record a plugin's calls (requests, cache reads, commands) from a running runtime
    /// into a file, for `bosun plugin test --replay`.
    Record(record::RecordArgs),
    /// In-place releases of StatefulSets by the release plugin.
    #[command(subcommand)]
    Release(release::Command),
    /// Print the least-privilege RBAC (ClusterRole, Roles, bindings) a runtime with this
    /// configuration needs to run these plugins.
    Rbac(rbac::RbacArgs),
}

/// `bosun cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Serve the embedded cluster until Ctrl-C.
    Serve(serve::ClusterArgs),
}

/// Starts logging to stderr.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour codes only for a terminal: a log file or a pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up(args) => serve::up(args),
        Command::Run(args) => serve::run(args),
        Command::Status(args) => serve::status(args),
        Command::Cluster(ClusterCommand::Serve(args)) => serve::cluster(args),
        Command::Plugin(cmd) => plugin::run(cmd),
        Command::Release(cmd) => release::run(cmd),
        Command::Record(args) => record::record(&args),
        Command::Rbac(args) => rbac::rbac(&args),
    }
}

/// Where compiled plugin code is cached between runs: `$BOSUN_COMPILED_CACHE`, else
/// `$XDG_CACHE_HOME/bosun/compiled`, else `~/.cache/bosun/compiled`.
pub fn default_compiled_cache() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BOSUN_COMPILED_CACHE") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("bosun").join("compiled"))
}
