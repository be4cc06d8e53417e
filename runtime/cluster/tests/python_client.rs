//! The official Python Kubernetes client (PyPI `kubernetes`, installed into `.venv` by
//! `.ci/setup`) runs a scripted sequence against the embedded cluster: a peer client
//! nobody here wrote. The steps live in `tests/python/client_sequence.py`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest the script may run; it takes a few seconds.
const TIMEOUT: Duration = Duration::from_secs(120);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `python script args`, its stdout and stderr going to `log`; kills it after `TIMEOUT`.
fn run(
    python: &Path,
    script: &Path,
    kubeconfig: &Path,
    log: &Path,
) -> anyhow::Result<(bool, String)> {
    let out = std::fs::File::create(log)?;
    let mut child = Command::new(python)
        .arg("-u")
        .arg(script)
        .arg(kubeconfig)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()?;
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(log)?;
    match status {
        Some(status) => Ok((status.success(), output)),
        None => {
            anyhow::bail!("client_sequence.py did not finish within {TIMEOUT:?}; output:\n{output}")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_runs_the_sequence() -> anyhow::Result<()> {
    let python = repo_root().join(".venv/bin/python");
    let importable = Command::new(&python)
        .args(["-c", "import kubernetes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        importable,
        "{} cannot import kubernetes: run .ci/setup",
        python.display()
    );
    let c = common::with(bosun_cluster::Config {
        nodes: 2,
        sim: bosun_cluster::sim::Config {
            startup_delay: Duration::from_millis(20),
            ..Default::default()
        },
        ..Default::default()
    })
    .await?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client_sequence.py");
    let kubeconfig = c.kubeconfig_path().to_path_buf();
    let log = kubeconfig.with_file_name("python-client.log");
    let (ok, output) =
        tokio::task::spawn_blocking(move || run(&python, &script, &kubeconfig, &log)).await??;
    println!("{output}");
    c.shutdown().await;
    assert!(ok, "client_sequence.py failed; output:\n{output}");
    Ok(())
}
