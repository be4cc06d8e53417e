//! The real kubectl against the embedded cluster (skipped when kubectl is missing).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

const KUBECTL: &str = "/usr/bin/kubectl";

const STATEFULSET: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
  namespace: demo
spec:
  replicas: 2
  serviceName: web
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
    let manifest = kc.with_file_name("sts.yaml");
    std::fs::write(&manifest, STATEFULSET)?;
    let path = manifest.to_string_lossy().into_owned();
    kubectl(&kc, &["apply", "-f", &path]).await?;
    let jsonpath =
        r#"-o=jsonpath={range .items[*]}{.metadata.name}={.status.phase}={.spec.nodeName} {end}"#;
    let pods = common::eventually(20, || {
        let kc = kc.clone();
        async move {
            let out = kubectl(&kc, &["-n", "demo", "get", "pods", jsonpath])
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
            let out = kubectl(&kc, &["-n", "demo", "get", "pods", jsonpath])
                .await
                .ok()?;
            (out.matches("=Running=").count() == 2 && !out.contains(&node)).then_some(())
        }
    })
    .await?;
    c.shutdown().await;
    Ok(())
}
