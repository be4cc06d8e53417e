//! `deploy/`: the RBAC is what `bosun rbac` prints for the shipped configuration and
//! built-in plugins, and every Kustomize install renders and applies to a cluster.

use bosun_conformance::crate_dir;
use bosun_test_support::embedded::Env;
use bosun_test_support::{eventually, kubectl};
use std::path::PathBuf;
use std::time::Duration;

/// The built-in plugins the runtime image carries (deploy/images).
const BUILT_IN: [&str; 6] = [
    "plugins/release",
    "plugins/sidecarset-injector",
    "plugins/sidecarset",
    "plugins/remediation",
    "plugins/app-probe",
    "plugins/node-agent",
];

fn repo() -> PathBuf {
    crate_dir().join("../..")
}

#[test]
fn shipped_rbac_is_what_bosun_rbac_prints() -> anyhow::Result<()> {
    let root = repo();
    let mut argv = vec![
        "bosun".to_owned(),
        "rbac".to_owned(),
        "--config".to_owned(),
        root.join("deploy/runtime/config.yaml")
            .display()
            .to_string(),
    ];
    argv.extend(BUILT_IN.iter().map(|p| root.join(p).display().to_string()));
    let cli = <bosun_cli::Cli as clap::Parser>::try_parse_from(&argv)?;
    let bosun_cli::Command::Rbac(args) = cli.command else {
        anyhow::bail!("`bosun rbac` did not parse as itself");
    };
    let printed = bosun_cli::rbac::render(&args)?;
    let shipped = root.join("deploy/rbac/rbac.yaml");
    if std::env::var_os("BOSUN_UPDATE_RBAC").is_some() {
        std::fs::write(&shipped, &printed)?;
    }
    let current = std::fs::read_to_string(&shipped).unwrap_or_default();
    assert!(
        current == printed,
        "deploy/rbac/rbac.yaml is stale: rerun with BOSUN_UPDATE_RBAC=1. `bosun rbac` prints:\n{printed}"
    );
    // Least privilege: no wildcard anywhere.
    assert!(!printed.contains("\"*\""), "{printed}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_install_renders_and_applies_to_the_embedded_cluster() -> anyhow::Result<()> {
    let root = repo();
    for install in [
        "deploy",
        "deploy/overlays/dev",
        "deploy/overlays/restricted",
    ] {
        let env = Env::bare(2).await;
        let kc = env.cluster.kubeconfig_path().to_path_buf();
        let rendered = kubectl(
            &kc,
            &["kustomize", &root.join(install).display().to_string()],
        )?;
        assert!(!rendered.contains("\"*\""), "{install}: a wildcard");
        let file = env.dir.path().join("rendered.yaml");
        std::fs::write(&file, &rendered)?;
        let file = file.display().to_string();
        // The CRDs first, as deploy/README.md says: kubectl does not wait for a CRD it
        // applies to be served before applying the custom resources after it.
        let crds = root.join("deploy/crds").display().to_string();
        kubectl(&kc, &["apply", "--server-side", "-k", &crds])?;
        let applied = kubectl(&kc, &["apply", "--server-side", "-f", &file])?;
        for what in [
            "namespace/bosun-system serverside-applied",
            "customresourcedefinition.apiextensions.k8s.io/plugins.bosun.dev serverside-applied",
            "clusterrole.rbac.authorization.k8s.io/bosun-runtime serverside-applied",
            "deployment.apps/bosun-runtime serverside-applied",
            "service/bosun-webhook serverside-applied",
        ] {
            assert!(
                applied.contains(what),
                "{install}: {what} missing from:\n{applied}"
            );
        }
        let want = if install.ends_with("dev") { "1" } else { "2" };
        eventually(
            &format!("{install}: the runtime Deployment's pods ready"),
            Duration::from_secs(60),
            || {
                let kc = kc.clone();
                async move {
                    kubectl(
                        &kc,
                        &[
                            "-n",
                            "bosun-system",
                            "get",
                            "deployment",
                            "bosun-runtime",
                            "-o",
                            "jsonpath={.status.readyReplicas}",
                        ],
                    )
                    .is_ok_and(|n| n == want)
                }
            },
        )
        .await;
        // The built-in SidecarSet goes in after the runtime (deploy/README.md).
        let sidecarset = root.join("deploy/sidecarset").display().to_string();
        let applied = kubectl(&kc, &["apply", "--server-side", "-k", &sidecarset])?;
        assert!(
            applied.contains("sidecarset.bosun.dev/bosun-sidecar serverside-applied"),
            "{applied}"
        );
        // Applying again changes nothing and conflicts with nothing.
        kubectl(&kc, &["apply", "--server-side", "-f", &file])?;
        env.cluster.shutdown().await;
    }
    Ok(())
}
