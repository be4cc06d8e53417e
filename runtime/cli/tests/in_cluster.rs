//! The runtime as deploy/'s Deployment runs it, against the embedded cluster with
//! authentication and RBAC on: in-cluster configuration (a service-account token file,
//! the cluster's CA, `KUBERNETES_SERVICE_HOST`/`PORT`), deploy/runtime/config.yaml, the
//! built-in plugins in its plugins folder, and nothing but the RBAC `bosun rbac`
//! generated (deploy/rbac). The simulated kubelet does not run images: the test starts
//! the `bosun` binary with the pod's environment and mounts (files in a temporary
//! folder, named by `BOSUN_SERVICEACCOUNT_DIR`).
//!
//! Sufficient: the runtime leads, publishes and serves every built-in plugin, injects a
//! sidecar through its webhook and writes SidecarSet status, and logs no refusal.
//! Minimal (sampled): without the leader-election rules it never leads; without
//! `plugins/status` no Plugin gets a status.

use bosun_test_support::{eventually, free_port, kubectl};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BUILT_IN: [&str; 6] = [
    "release",
    "sidecarset-injector",
    "sidecarset",
    "remediation",
    "app-probe",
    "node-agent",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The built-in plugins as the runtime image lays them out (deploy/images).
fn plugins_folder(dir: &Path) -> anyhow::Result<PathBuf> {
    let folder = dir.join("plugins");
    std::fs::create_dir_all(&folder)?;
    for name in BUILT_IN {
        let src = repo().join("plugins").join(name);
        let wasm = bosun_cli::plugin::build_with(&src, false)?;
        std::fs::copy(&wasm, folder.join(format!("{name}.wasm")))?;
        let admission = src.join("admission.json");
        if admission.is_file() {
            std::fs::copy(&admission, folder.join(format!("{name}.admission.json")))?;
        }
    }
    Ok(folder)
}

/// A `bosun run` started as the Deployment's container, its stderr in `log`.
struct Runtime {
    child: Child,
    log: PathBuf,
    admin: u16,
}

impl Runtime {
    fn start(
        dir: &Path,
        name: &str,
        cluster: &bosun_cluster::Cluster,
        sa: &Path,
        plugins: &Path,
        pod: &str,
    ) -> anyhow::Result<Self> {
        let mut config: Value = serde_yaml::from_str(&std::fs::read_to_string(
            repo().join("deploy/runtime/config.yaml"),
        )?)?;
        let admin = free_port();
        let webhook = free_port();
        // What names this machine instead of a pod: folders, loopback listeners, and the
        // webhook's URL (the embedded cluster cannot resolve Services).
        config["dataDir"] = dir.join(name).display().to_string().into();
        config["pluginsDir"] = plugins.display().to_string().into();
        config["adminAddr"] = format!("127.0.0.1:{admin}").into();
        config["sidecars"]["listen"] = format!("127.0.0.1:{}", free_port()).into();
        config["webhook"]["listen"] = format!("127.0.0.1:{webhook}").into();
        config["webhook"]["url"] = format!("https://127.0.0.1:{webhook}").into();
        config["leaderElection"]["identity"] = name.into();
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(&file, serde_yaml::to_string(&config)?)?;
        let log = dir.join(format!("{name}.log"));
        let addr = cluster.addr();
        let child = Command::new(env!("CARGO_BIN_EXE_bosun"))
            .args(["run", "--config"])
            .arg(&file)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir)
            .env("RUST_LOG", "info")
            .env("KUBERNETES_SERVICE_HOST", addr.ip().to_string())
            .env("KUBERNETES_SERVICE_PORT", addr.port().to_string())
            .env("BOSUN_SERVICEACCOUNT_DIR", sa)
            .env("POD_NAME", pod)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        Ok(Runtime { child, log, admin })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn ready(&self) -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.admin)) else {
            return false;
        };
        let _ = s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200")
    }

    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log()
    }
}

impl Drop for Runtime {
    /// A failed assertion does not leave the runtime running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn plugins_ready(kc: &Path) -> usize {
    let Ok(out) = kubectl(kc, &["-n", "bosun-system", "get", "plugins", "-o", "json"]) else {
        return 0;
    };
    let list: Value = serde_json::from_str(&out).unwrap_or_default();
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|p| {
                    p["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .count()
        })
        .unwrap_or(0)
}

fn lease_holder(kc: &Path) -> String {
    kubectl(
        kc,
        &[
            "-n",
            "bosun-system",
            "get",
            "lease",
            "bosun-runtime",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    )
    .unwrap_or_default()
}

/// The rendered RBAC with the rule whose comment line contains `who` (and the rule's
/// lines after it) removed.
fn without_rule(rbac: &str, who: &str) -> String {
    let mut out = Vec::new();
    let mut skipping = false;
    for line in rbac.lines() {
        if line.starts_with("  # ") {
            skipping = line.contains(who);
        } else if !line.starts_with("  ") && !line.starts_with("    ") {
            skipping = false;
        }
        if !skipping {
            out.push(line);
        }
    }
    out.join("\n") + "\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_runs_in_cluster_with_only_the_generated_rbac() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let plugins = plugins_folder(dir.path())?;
    let cluster = bosun_cluster::start(bosun_cluster::Config {
        nodes: 1,
        auth: Some(bosun_cluster::auth::Config::default()),
        ..Default::default()
    })
    .await?;
    let kc = cluster.kubeconfig_path().to_path_buf();
    let root = repo();
    kubectl(
        &kc,
        &[
            "apply",
            "--server-side",
            "-k",
            &root.join("deploy/crds").display().to_string(),
        ],
    )?;
    kubectl(
        &kc,
        &[
            "apply",
            "--server-side",
            "-k",
            &root.join("deploy/overlays/dev").display().to_string(),
        ],
    )?;

    // The pod's service-account mount: a token TokenRequest issued, the CA, the namespace.
    let sa = dir.path().join("serviceaccount");
    std::fs::create_dir_all(&sa)?;
    let token = kubectl(
        &kc,
        &[
            "-n",
            "bosun-system",
            "create",
            "token",
            "bosun-runtime",
            "--duration=1h",
        ],
    )?;
    std::fs::write(sa.join("token"), token.trim())?;
    let auth = cluster
        .auth()
        .ok_or_else(|| anyhow::anyhow!("auth is on"))?;
    std::fs::write(sa.join("ca.crt"), auth.ca_pem())?;
    std::fs::write(sa.join("namespace"), "bosun-system")?;

    // The pod the runtime "is": one of the Deployment's (simulated) pods.
    let runtime_pod = kubectl(
        &kc,
        &[
            "-n",
            "bosun-system",
            "get",
            "pods",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
    )?;
    anyhow::ensure!(!runtime_pod.is_empty(), "the runtime Deployment has no pod");
    let leader_label = || {
        kubectl(
            &kc,
            &[
                "-n",
                "bosun-system",
                "get",
                "pod",
                &runtime_pod,
                "-o",
                "jsonpath={.metadata.labels.bosun\\.dev/leader}",
            ],
        )
        .unwrap_or_default()
    };
    let rt = Runtime::start(
        dir.path(),
        "runtime-a",
        &cluster,
        &sa,
        &plugins,
        &runtime_pod,
    )?;
    let wait = Duration::from_secs(120);
    eventually("the runtime ready", wait, || async { rt.ready() }).await;
    eventually("it leads", wait, || async {
        lease_holder(&kc) == "runtime-a"
    })
    .await;
    // Its pod is labelled for the Service that sends the sidecars to the leader.
    eventually("its pod labelled the leader", wait, || async {
        leader_label() == "true"
    })
    .await;
    eventually(
        "every built-in plugin published and Ready",
        wait,
        || async { plugins_ready(&kc) == BUILT_IN.len() },
    )
    .await;
    // The injector behind the runtime's webhook puts the sidecar into an opted-in pod,
    // and the SidecarSet controller (JavaScript) counts it in the SidecarSet's status.
    eventually("the webhook registered", wait, || async {
        kubectl(&kc, &["get", "mutatingwebhookconfiguration", "bosun"]).is_ok()
    })
    .await;
    // The built-in SidecarSet, once the webhook that stamps its hashes is there.
    kubectl(
        &kc,
        &[
            "apply",
            "--server-side",
            "-k",
            &root.join("deploy/sidecarset").display().to_string(),
        ],
    )?;
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app", "namespace": "default", "labels": {"sidecar.bosun.dev/inject": "true"}},
        "spec": {"containers": [{"name": "app", "image": "app:v1"}]},
    });
    let pod_file = dir.path().join("pod.json");
    std::fs::write(&pod_file, pod.to_string())?;
    eventually("the pod created with its sidecar", wait, || async {
        let _ = kubectl(
            &kc,
            &["delete", "pod", "app", "--ignore-not-found", "--wait=false"],
        );
        kubectl(&kc, &["create", "-f", &pod_file.display().to_string()]).is_ok()
            && kubectl(
                &kc,
                &[
                    "get",
                    "pod",
                    "app",
                    "-o",
                    "jsonpath={.spec.containers[*].name}",
                ],
            )
            .is_ok_and(|names| names.contains("bosun-sidecar"))
    })
    .await;
    let counted = || {
        kubectl(
            &kc,
            &[
                "get",
                "sidecarset",
                "bosun-sidecar",
                "-o",
                "jsonpath={.status.matchedPods}",
            ],
        )
        .is_ok_and(|n| n.trim() == "1")
    };
    let deadline = std::time::Instant::now() + wait;
    while !counted() {
        assert!(
            std::time::Instant::now() < deadline,
            "the SidecarSet's status does not count the pod: {}\nruntime log:\n{}",
            kubectl(&kc, &["get", "sidecarset", "bosun-sidecar", "-o", "yaml"]).unwrap_or_default(),
            rt.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The link's CA, made once into the Secret, is published where sidecars mount it.
    let published = || {
        kubectl(
            &kc,
            &[
                "-n",
                "default",
                "get",
                "configmap",
                "bosun-runtime-ca",
                "-o",
                "jsonpath={.data.ca\\.pem}",
            ],
        )
        .unwrap_or_default()
    };
    let mut ca = String::new();
    let deadline = std::time::Instant::now() + wait;
    while !ca.contains("BEGIN CERTIFICATE") {
        assert!(
            std::time::Instant::now() < deadline,
            "the link's CA is not published:\n{}",
            rt.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        ca = published();
    }
    let kept = kubectl(
        &kc,
        &[
            "-n",
            "bosun-system",
            "get",
            "secret",
            "bosun-link-tls",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ],
    )?;
    assert_eq!(
        base64(&ca),
        kept.trim(),
        "the published CA is not the Secret's"
    );
    let log = rt.stop();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the runtime was refused something the generated RBAC lacks:\n{log}"
    );

    // Minimal, sampled: each rule below is needed by the capability named.
    let rbac = std::fs::read_to_string(root.join("deploy/rbac/rbac.yaml"))?;
    for (rule, name, broken) in [
        ("runtime (leader election)", "runtime-b", "leads"),
        (
            "runtime (Plugin status)",
            "runtime-c",
            "writes Plugin status",
        ),
        (
            "runtime (publishes the sidecar link's CA",
            "runtime-d",
            "publishes the CA",
        ),
    ] {
        let reduced = without_rule(&rbac, rule);
        assert_ne!(reduced, rbac, "no rule for {rule}");
        let file = dir.path().join(format!("{name}-rbac.yaml"));
        std::fs::write(&file, &reduced)?;
        kubectl(
            &kc,
            &["apply", "--server-side", "-f", &file.display().to_string()],
        )?;
        kubectl(
            &kc,
            &[
                "-n",
                "bosun-system",
                "delete",
                "lease",
                "bosun-runtime",
                "--ignore-not-found",
            ],
        )?;
        kubectl(&kc, &["-n", "bosun-system", "delete", "plugins", "--all"])?;
        kubectl(
            &kc,
            &[
                "-n",
                "default",
                "delete",
                "configmap",
                "bosun-runtime-ca",
                "--ignore-not-found",
            ],
        )?;
        let rt = Runtime::start(dir.path(), name, &cluster, &sa, &plugins, &runtime_pod)?;
        tokio::time::sleep(Duration::from_secs(15)).await;
        let log = rt.stop();
        match broken {
            "leads" => {
                assert_eq!(lease_holder(&kc), "", "led without the lease rules:\n{log}");
                // Not leading, it takes the label its pod kept from runtime-a off.
                assert_eq!(leader_label(), "", "a pod not leading labelled:\n{log}");
            }
            "publishes the CA" => {
                assert_eq!(published(), "", "published without its rule:\n{log}")
            }
            _ => assert_eq!(
                plugins_ready(&kc),
                0,
                "Plugin status written without plugins/status:\n{log}"
            ),
        }
        assert!(
            log.to_lowercase().contains("forbidden"),
            "{rule}: no refusal logged:\n{log}"
        );
        kubectl(
            &kc,
            &[
                "apply",
                "--server-side",
                "-f",
                &root.join("deploy/rbac/rbac.yaml").display().to_string(),
            ],
        )?;
    }
    // Every runtime since loaded the one CA from the Secret.
    let rt = Runtime::start(
        dir.path(),
        "runtime-e",
        &cluster,
        &sa,
        &plugins,
        &runtime_pod,
    )?;
    eventually("the CA published again, unchanged", wait, || async {
        published() == ca
    })
    .await;
    rt.stop();
    cluster.shutdown().await;
    Ok(())
}

/// Base64 (standard, padded), as the API shows a Secret's data.
fn base64(text: &str) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An admission plugin in a runtime whose webhook is off is never called: the runtime
/// says so instead of leaving it a mystery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_plugin_without_the_webhook_is_warned_about() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins)?;
    let wasm = bosun_cli::plugin::build_with(&repo().join("plugins/sidecarset-injector"), false)?;
    std::fs::copy(&wasm, plugins.join("sidecarset-injector.wasm"))?;
    let cluster = bosun_cluster::start(bosun_cluster::Config {
        nodes: 0,
        ..Default::default()
    })
    .await?;
    let log = dir.path().join("run.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .arg("run")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig_path())
        .arg("--plugins")
        .arg(&plugins)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--admin-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let said = || {
        std::fs::read_to_string(&log).is_ok_and(|l| {
            l.contains("admission plugin loaded, but the admission webhook is off")
                && l.contains("sidecarset-injector")
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !said() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(said(), "{}", std::fs::read_to_string(&log)?);
    cluster.shutdown().await;
    Ok(())
}
