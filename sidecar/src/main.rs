//! `bosun-sidecar`: the per-pod sidecar. Configured from the environment; exit code 64
//! on bad configuration.

use std::process::ExitCode;

use bosun_sidecar::{Config, Sidecar};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BOSUN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a container's log gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bosun-sidecar: invalid configuration: {e}");
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(8)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bosun-sidecar: cannot start: {e}");
            return ExitCode::from(70);
        }
    };
    runtime.block_on(async {
        let sidecar = match Sidecar::start(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("bosun-sidecar: {e:#}");
                return ExitCode::from(70);
            }
        };
        wait_for_termination().await;
        tracing::info!("terminating: flushing the link and stopping plugins");
        sidecar.stop().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
