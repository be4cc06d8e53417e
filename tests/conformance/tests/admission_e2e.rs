//! Admission plugins in Rust, Go and JavaScript behind the runtime's webhook, called by
//! the embedded cluster when `kubectl` creates a pod: each denies a pod without an `app`
//! label (kubectl prints the plugin's message) and labels the others
//! `admitted-by=bosun` (kubectl reads the label back), only in the namespace its
//! webhook's namespaceSelector selects.

use std::path::Path;
use std::time::Duration;

use bosun_api::plugin::{FailurePolicy, FullLabelSelector, Webhook};
use bosun_conformance::crate_dir;
use bosun_test_support::embedded::{Env, source};
use bosun_test_support::eventually;
use serde_json::json;

fn kubectl(kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs")
}

fn pod_yaml(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: shop\n  labels: {labels}\nspec:\n  containers: [{{name: app, image: app:v1}}]\n"
    )
}

fn create(kubeconfig: &Path, yaml: &str) -> std::process::Output {
    let file = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(file.path(), yaml).expect("write");
    kubectl(
        kubeconfig,
        &["create", "-f", &file.path().display().to_string()],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_sees_the_denials_and_mutations_of_admission_plugins_in_every_language() {
    let env = Env::bare(1).await;
    let mut config = env.config("rt");
    config.webhook.listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.webhook.url = Some("https://127.0.0.1:0".to_owned());
    let rt = env.runtime(config).await;
    let kubeconfig = env.cluster.kubeconfig_path().to_path_buf();
    let out = kubectl(&kubeconfig, &["create", "namespace", "shop"]);
    assert!(out.status.success(), "{out:?}");
    let out = kubectl(&kubeconfig, &["label", "namespace", "shop", "admission=on"]);
    assert!(out.status.success(), "{out:?}");
    let out = kubectl(&kubeconfig, &["create", "namespace", "elsewhere"]);
    assert!(out.status.success(), "{out:?}");

    let go = bosun_cli::plugin::build_with(&crate_dir().join("plugins/go-admission"), false)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let js = bosun_cli::plugin::build_with(&crate_dir().join("plugins/js-admission"), false)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let plugins = [
        (
            "test-admission",
            source(bosun_test_artifacts::TEST_ADMISSION),
            json!({"require": "app", "add": {"admitted-by": "bosun"}}).to_string(),
            "pods need a app label",
        ),
        (
            "go-admission",
            source(&go.display().to_string()),
            "{}".to_owned(),
            "pods need an app label",
        ),
        (
            "js-admission",
            source(&js.display().to_string()),
            "{}".to_owned(),
            "pods need an app label",
        ),
    ];
    let selector: FullLabelSelector =
        serde_json::from_value(json!({"matchLabels": {"admission": "on"}})).expect("selector");
    for (i, (name, src, plugin_config, denial)) in plugins.into_iter().enumerate() {
        rt.install(&src, &plugin_config).expect("loads");
        rt.rollouts().declare_webhook(
            name,
            Some(Webhook {
                mutating: true,
                failure_policy: Some(FailurePolicy::Fail),
                namespace_selector: Some(selector.clone()),
                ..Webhook::default()
            }),
        );
        let hook = format!("{name}.plugins.bosun.dev");
        eventually(
            &format!("{name}'s webhook is configured"),
            Duration::from_secs(20),
            || async {
                let out = kubectl(
                    &kubeconfig,
                    &[
                        "get",
                        "mutatingwebhookconfiguration",
                        "bosun",
                        "-o",
                        "jsonpath={.webhooks[*].name}",
                    ],
                );
                String::from_utf8_lossy(&out.stdout).trim() == hook
            },
        )
        .await;

        let out = create(&kubeconfig, &pod_yaml(&format!("bare-{i}"), "{}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{name}: created a pod without app: {out:?}"
        );
        assert!(
            stderr.contains(&format!(
                "admission webhook \"{hook}\" denied the request: {denial}"
            )),
            "{name}: {stderr}"
        );

        let out = create(&kubeconfig, &pod_yaml(&format!("web-{i}"), "{app: web}"));
        assert!(out.status.success(), "{name}: {out:?}");
        let out = kubectl(
            &kubeconfig,
            &[
                "-n",
                "shop",
                "get",
                "pod",
                &format!("web-{i}"),
                "-o",
                "jsonpath={.metadata.labels.admitted-by}",
            ],
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "bosun",
            "{name}: {out:?}"
        );

        // The Go and JS plugins read their namespace from the cache while they review:
        // the runtime watches what an admission plugin may read.
        if name != "test-admission" {
            let logs = env.log_lines();
            assert!(
                logs.iter()
                    .any(|l| l == &format!("review web-{i} in shop (namespace cached: true)")),
                "{name}: {logs:?}"
            );
        }

        // The namespace without the label is not the plugin's.
        let out = kubectl(
            &kubeconfig,
            &[
                "-n",
                "elsewhere",
                "run",
                &format!("free-{i}"),
                "--image=app:v1",
            ],
        );
        assert!(out.status.success(), "{name}: {out:?}");
        rt.uninstall(name);
    }
}
