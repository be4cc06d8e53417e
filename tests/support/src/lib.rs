//! Helpers shared by Bosun's end-to-end tests: waiting for a condition, a free port, a
//! plugin with other bytes (another revision) and the same behaviour.

use std::time::{Duration, Instant};

#[cfg(feature = "embedded")]
pub mod embedded;

/// Polls `check` every 50 ms until it is true; panics naming `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < timeout {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// `component` with a custom section named `bosun-test` holding `tag` appended: other
/// bytes (another digest, another revision), the same behaviour.
pub fn with_custom_section(component: &[u8], tag: &str) -> Vec<u8> {
    let name = b"bosun-test";
    let size = 1 + name.len() + tag.len();
    assert!(size < 128, "tag too long for a one-byte LEB128 size");
    let mut bytes = component.to_vec();
    bytes.push(0);
    bytes.extend([size as u8, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(tag.as_bytes());
    bytes
}

/// `kubectl --kubeconfig KUBECONFIG ARGS…`: its stdout, or an error naming the command
/// and holding its stderr.
pub fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}
