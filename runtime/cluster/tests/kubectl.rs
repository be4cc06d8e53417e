//! The real kubectl against the embedded cluster (skipped when kubectl is missing).

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const KUBECTL: &str = "/usr/bin/kubectl";

const STATEFULSET: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
  namespace: demo
spec:
  replicas: 2
  serviceName: web
  updateStrategy:
    type: OnDelete
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: nginx:1.25
";

async fn kubectl(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new(KUBECTL);
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    if !out.status.success() {
        anyhow::bail!(
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A running `kubectl get ... -w`: its output lines arrive on a channel.
struct Watch {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Watch {
    fn spawn(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            lines,
            seen: Vec::new(),
        })
    }

    /// Reads lines until `done` holds for the lines seen so far, for at most `secs`.
    async fn until(
        mut self,
        secs: u64,
        done: impl Fn(&[String]) -> bool + Send + 'static,
    ) -> anyhow::Result<Self> {
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(secs);
            while !done(&self.seen) {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.lines.recv_timeout(left) {
                    Ok(line) => self.seen.push(line),
                    Err(_) => anyhow::bail!(
                        "kubectl watch: condition not met within {secs}s; output:\n{}",
                        self.seen.join("\n")
                    ),
                }
            }
            Ok(self)
        })
        .await?
    }

    fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.seen
    }
}

/// Whether a `kubectl get pods -w` line shows `pod` Ready and Running.
fn ready_running(lines: &[String], pod: &str) -> bool {
    lines.iter().any(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        cols.len() >= 3 && cols[0] == pod && cols[1] == "1/1" && cols[2] == "Running"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_applies_gets_cordons_and_drains() -> anyhow::Result<()> {
    if !Path::new(KUBECTL).exists() {
        println!("skipping: {KUBECTL} not found");
        return Ok(());
    }
    let c = common::with(bosun_cluster::Config {
        nodes: 2,
        sim: bosun_cluster::sim::Config {
            startup_delay: Duration::from_millis(20),
            ..Default::default()
        },
        ..Default::default()
    })
    .await?;
    let kc = c.kubeconfig_path().to_path_buf();
    kubectl(&kc, &["create", "namespace", "demo"]).await?;
    let pods_watch = Watch::spawn(&kc, &["-n", "demo", "get", "pods", "-w"])?;
    let manifest = kc.with_file_name("sts.yaml");
    std::fs::write(&manifest, STATEFULSET)?;
    let path = manifest.to_string_lossy().into_owned();
    kubectl(&kc, &["apply", "-f", &path]).await?;
    // `kubectl get pods -w` sees both pods become Ready (one-row Tables per event).
    let lines = pods_watch
        .until(20, |l| {
            ready_running(l, "web-0") && ready_running(l, "web-1")
        })
        .await?
        .stop();
    assert!(
        lines.first().is_some_and(|h| h.starts_with("NAME")),
        "{lines:?}"
    );
    let jsonpath =
        r#"-o=jsonpath={range .items[*]}{.metadata.name}={.status.phase}={.spec.nodeName} {end}"#;
    let pods = common::eventually(20, || {
        let kc = kc.clone();
        async move {
            let out = kubectl(
                &kc,
                &["-n", "demo", "get", "pods", "-l", "app=web", jsonpath],
            )
            .await
            .ok()?;
            (out.matches("=Running=").count() == 2).then_some(out)
        }
    })
    .await?;
    let node = pods
        .split_whitespace()
        .find(|p| p.starts_with("web-0="))
        .and_then(|p| p.rsplit('=').next())
        .unwrap_or_default()
        .to_string();
    assert!(node.starts_with("sim-node-"), "{pods}");
    // Re-applying an unchanged manifest is a no-op patch.
    let again = kubectl(&kc, &["apply", "-f", &path]).await?;
    assert!(again.contains("unchanged"), "{again}");
    // `kubectl get` prints the server's Table.
    let table = kubectl(&kc, &["-n", "demo", "get", "pods", "-o", "wide"]).await?;
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("Running") && table.contains(&node),
        "{table}"
    );

    // Typed kubectl commands send protobuf bodies.
    kubectl(
        &kc,
        &[
            "-n",
            "demo",
            "create",
            "deployment",
            "api",
            "--image=api:v1",
            "--replicas=2",
        ],
    )
    .await?;
    common::eventually(20, || {
        let kc = kc.clone();
        async move {
            let out = kubectl(
                &kc,
                &[
                    "-n",
                    "demo",
                    "get",
                    "deployment",
                    "api",
                    "-o=jsonpath={.status.availableReplicas}",
                ],
            )
            .await
            .ok()?;
            (out == "2").then_some(())
        }
    })
    .await?;
    kubectl(
        &kc,
        &["-n", "demo", "set", "image", "deployment/api", "api=api:v2"],
    )
    .await?;
    kubectl(
        &kc,
        &[
            "-n",
            "demo",
            "rollout",
            "status",
            "deployment/api",
            "--timeout=20s",
        ],
    )
    .await?;
    let log = kubectl(&kc, &["-n", "demo", "logs", "web-0"]).await?;
    assert!(log.contains("nginx:1.25"), "{log}");

    kubectl(&kc, &["cordon", &node]).await?;
    let unschedulable = kubectl(
        &kc,
        &["get", "node", &node, "-o=jsonpath={.spec.unschedulable}"],
    )
    .await?;
    assert_eq!(unschedulable, "true");
    kubectl(
        &kc,
        &["drain", &node, "--ignore-daemonsets", "--timeout=30s"],
    )
    .await?;
    // The StatefulSet brings web-0 back, on the other node.
    common::eventually(20, || {
        let (kc, node) = (kc.clone(), node.clone());
        async move {
            let out = kubectl(
                &kc,
                &["-n", "demo", "get", "pods", "-l", "app=web", jsonpath],
            )
            .await
            .ok()?;
            (out.matches("=Running=").count() == 2 && !out.contains(&node)).then_some(())
        }
    })
    .await?;

    // OnDelete: a new template leaves the pods alone ...
    let pod_state = r#"-o=jsonpath={.metadata.uid} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].image} {.status.containerStatuses[0].ready}"#;
    let before = kubectl(&kc, &["-n", "demo", "get", "pod", "web-1", pod_state]).await?;
    let fields: Vec<&str> = before.split_whitespace().collect();
    let (uid, restarts): (String, u32) = match fields.as_slice() {
        [uid, restarts, "nginx:1.25", "true"] => (uid.to_string(), restarts.parse()?),
        _ => anyhow::bail!("unexpected pod state: {before}"),
    };
    kubectl(
        &kc,
        &[
            "-n",
            "demo",
            "set",
            "image",
            "statefulset/web",
            "app=nginx:1.26",
        ],
    )
    .await?;
    let template = kubectl(
        &kc,
        &[
            "-n",
            "demo",
            "get",
            "statefulset",
            "web",
            "-o=jsonpath={.spec.template.spec.containers[0].image}",
        ],
    )
    .await?;
    assert_eq!(template, "nginx:1.26");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let spec_image = kubectl(
        &kc,
        &[
            "-n",
            "demo",
            "get",
            "pod",
            "web-1",
            "-o=jsonpath={.spec.containers[0].image}",
        ],
    )
    .await?;
    assert_eq!(spec_image, "nginx:1.25", "OnDelete must not replace pods");
    // ... and an in-place update of the pod's image restarts the container, not the pod.
    kubectl(
        &kc,
        &[
            "-n",
            "demo",
            "patch",
            "pod",
            "web-1",
            "-p",
            r#"{"spec":{"containers":[{"name":"app","image":"nginx:1.26"}]}}"#,
        ],
    )
    .await?;
    let want = format!("{uid} {} nginx:1.26 true", restarts + 1);
    common::eventually(20, || {
        let (kc, want) = (kc.clone(), want.clone());
        async move {
            let out = kubectl(&kc, &["-n", "demo", "get", "pod", "web-1", pod_state])
                .await
                .ok()?;
            (out == want).then_some(())
        }
    })
    .await?;

    kubectl(&kc, &["-n", "demo", "delete", "statefulset", "web"]).await?;
    let gone = kubectl(
        &kc,
        &[
            "-n",
            "demo",
            "get",
            "statefulset",
            "--ignore-not-found",
            "-o=name",
        ],
    )
    .await?;
    assert_eq!(gone.trim(), "");
    // The garbage collector removes the StatefulSet's pods.
    common::eventually(20, || {
        let kc = kc.clone();
        async move {
            let out = kubectl(
                &kc,
                &["-n", "demo", "get", "pods", "-l", "app=web", "-o=name"],
            )
            .await
            .ok()?;
            out.trim().is_empty().then_some(())
        }
    })
    .await?;
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_shows_a_crds_printer_columns() -> anyhow::Result<()> {
    if !Path::new(KUBECTL).exists() {
        println!("skipping: {KUBECTL} not found");
        return Ok(());
    }
    let c = common::with(bosun_cluster::Config {
        nodes: 0,
        ..Default::default()
    })
    .await?;
    let kc = c.kubeconfig_path().to_path_buf();
    let crd = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds/plugin.yaml");
    kubectl(&kc, &["apply", "-f", &crd.display().to_string()]).await?;
    let manifest = kc.with_file_name("plugin.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: bosun.dev/v1alpha1\nkind: Plugin\nmetadata: {name: zone-labeler, namespace: default}\n\
         spec: {source: {file: {path: /p.wasm}}, world: controller}\n",
    )?;
    let started = Instant::now();
    // The kind is served once the CRD is established.
    while let Err(e) = kubectl(&kc, &["apply", "-f", &manifest.display().to_string()]).await {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "{e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = kubectl(&kc, &["get", "plugins"]).await?;
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines.first().map(Vec::as_slice),
        Some(&["NAME", "WORLD", "STABLE", "CANARY", "AGE"][..]),
        "{out}"
    );
    // No status yet: STABLE and CANARY are empty cells, AGE an age.
    let row = lines.get(1).cloned().unwrap_or_default();
    assert_eq!(
        row.get(..2),
        Some(&["zone-labeler", "controller"][..]),
        "{out}"
    );
    assert!(row.last().is_some_and(|a| a.ends_with('s')), "{out}");
    c.shutdown().await;
    Ok(())
}

/// `kubectl get -o json` of one object.
async fn get_json(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = kubectl(kubeconfig, &[args, &["-o", "json"]].concat()).await?;
    Ok(serde_json::from_str(&out)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_sends_protobuf_for_builtin_kinds() -> anyhow::Result<()> {
    use serde_json::json;
    if !Path::new(KUBECTL).exists() {
        println!("skipping: {KUBECTL} not found");
        return Ok(());
    }
    let c = common::with(bosun_cluster::Config {
        nodes: 0,
        ..Default::default()
    })
    .await?;
    let kc = c.kubeconfig_path().to_path_buf();

    kubectl(&kc, &["create", "namespace", "p"]).await?;
    let ns = get_json(&kc, &["get", "namespace", "p"]).await?;
    assert_eq!(
        (&ns["kind"], &ns["metadata"]["name"]),
        (&json!("Namespace"), &json!("p"))
    );

    // The typed generators send protobuf and take protobuf back (kubectl decodes the
    // answer to print it), as kubectl's request log shows.
    let out = Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&kc)
        .args([
            "-n",
            "p",
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal=a=b",
            "-v=8",
        ])
        .output()?;
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "{log}"
    );
    let answer = log
        .split("\"Response\" status=\"201 Created\"")
        .nth(1)
        .unwrap_or_default();
    assert!(
        answer.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "{log}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("secret/s created"));
    let s = get_json(&kc, &["-n", "p", "get", "secret", "s"]).await?;
    assert_eq!(s["data"], json!({"a": "Yg=="}), "{s}");
    assert_eq!(s["metadata"]["namespace"], "p");

    kubectl(
        &kc,
        &[
            "-n",
            "p",
            "create",
            "configmap",
            "cm",
            "--from-literal=k=v",
            "--from-literal=e=",
        ],
    )
    .await?;
    let cm = get_json(&kc, &["-n", "p", "get", "configmap", "cm"]).await?;
    // An empty value is still an entry.
    assert_eq!(cm["data"], json!({"k": "v", "e": ""}), "{cm}");

    kubectl(
        &kc,
        &[
            "-n",
            "p",
            "create",
            "service",
            "clusterip",
            "x",
            "--tcp=80:8080",
        ],
    )
    .await?;
    let svc = get_json(&kc, &["-n", "p", "get", "service", "x"]).await?;
    assert_eq!(svc["metadata"]["labels"], json!({"app": "x"}), "{svc}");
    assert_eq!(svc["spec"]["selector"], json!({"app": "x"}));
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    let port = &svc["spec"]["ports"][0];
    assert_eq!(
        (
            &port["name"],
            &port["port"],
            &port["targetPort"],
            &port["protocol"]
        ),
        (&json!("80-8080"), &json!(80), &json!(8080), &json!("TCP")),
        "{svc}"
    );

    // `--replicas=0` is a value the client chose, not a zero to leave out.
    kubectl(
        &kc,
        &[
            "-n",
            "p",
            "create",
            "deployment",
            "d",
            "--image=nginx:1.25",
            "--port=8080",
            "--replicas=0",
        ],
    )
    .await?;
    let d = get_json(&kc, &["-n", "p", "get", "deployment", "d"]).await?;
    assert_eq!(d["spec"]["replicas"], 0, "{d}");
    assert_eq!(d["spec"]["selector"], json!({"matchLabels": {"app": "d"}}));
    assert_eq!(
        d["spec"]["template"]["metadata"]["labels"],
        json!({"app": "d"})
    );
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        (&container["name"], &container["image"]),
        (&json!("nginx"), &json!("nginx:1.25"))
    );
    assert_eq!(container["ports"][0]["containerPort"], 8080, "{d}");

    // Kinds served by other parts of the cluster are tried when they are served.
    let resources = kubectl(&kc, &["api-resources", "-o", "name"]).await?;
    let served = |r: &str| resources.lines().any(|l| l == r);
    if served("jobs.batch") {
        kubectl(
            &kc,
            &[
                "-n",
                "p",
                "create",
                "job",
                "j",
                "--image=busybox",
                "--",
                "echo",
                "hi",
            ],
        )
        .await?;
        let j = get_json(&kc, &["-n", "p", "get", "job", "j"]).await?;
        let pod = &j["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never", "{j}");
        assert_eq!(pod["containers"][0]["image"], "busybox");
        assert_eq!(pod["containers"][0]["command"], json!(["echo", "hi"]));
    }
    if served("roles.rbac.authorization.k8s.io") {
        kubectl(
            &kc,
            &[
                "-n",
                "p",
                "create",
                "role",
                "r",
                "--verb=get",
                "--resource=pods",
            ],
        )
        .await?;
        let r = get_json(&kc, &["-n", "p", "get", "role", "r"]).await?;
        assert_eq!(
            r["rules"],
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
            "{r}"
        );
        kubectl(
            &kc,
            &[
                "-n",
                "p",
                "create",
                "rolebinding",
                "rb",
                "--role=r",
                "--user=alice",
            ],
        )
        .await?;
        let rb = get_json(&kc, &["-n", "p", "get", "rolebinding", "rb"]).await?;
        assert_eq!(
            rb["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}),
            "{rb}"
        );
        assert_eq!(
            rb["subjects"],
            json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}])
        );
    }
    c.shutdown().await;
    Ok(())
}
