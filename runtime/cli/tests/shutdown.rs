//! `bosun run` stops within its grace period and a few seconds on SIGTERM, whatever the
//! API server does: here it accepts connections and never answers.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sigterm_stops_the_runtime_in_time_even_with_a_hung_api_server() {
    // An "API server" that takes every connection and says nothing.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: hung\n  cluster:\n    server: http://{addr}\n\
             contexts:\n- name: hung\n  context:\n    cluster: hung\n    user: u\n\
             current-context: hung\nusers:\n- name: u\n  user: {{}}\n"
        ),
    )
    .expect("kubeconfig");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "shutdownGraceSeconds: 2\n").expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["run", "--admin-addr", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bosun run starts");
    // Wait for it to say it runs (its informers are stuck on the API server by now).
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).expect("bosun run prints");
    assert!(
        first.starts_with(b"runtime running"),
        "{:?}",
        String::from_utf8_lossy(&first)
    );
    std::thread::sleep(Duration::from_secs(2));
    let sent = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    // Grace 2 s, plus 5 s for the rest; a little slack for a loaded machine.
    let limit = Duration::from_secs(12);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if sent.elapsed() > limit {
            let _ = child.kill();
            panic!("bosun run did not stop within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("stopping"), "{err}");
}
