//! `plugins/sidecarset-injector` behind the runtime's webhook on the embedded cluster:
//! SidecarSets (`bosun.dev/v1alpha1`) injected into pods at creation as OpenKruise's pod
//! webhook injects them, and SidecarSets stamped with Kruise's hashes.
//!
//! The expected values are written from Kruise's code, not from the plugin's: container
//! order from `mergeSidecarContainers`, init containers sorted by name
//! (pkg/webhook/pod/mutating/sidecarset.go), env and mounts from `MergeEnvVar` and
//! `MergeVolumeMounts` (pkg/util/pods.go), the annotations' JSON from Go's `json.Marshal`
//! of `map[string]SidecarSetUpgradeSpec` (pkg/control/sidecarcontrol/util.go: keys
//! sorted, fields `updateTimestamp`, `hash`, `sidecarSetName`, `sidecarList`), and the
//! hashes from `hash.go` by hand: sha256 of the bytes Go marshals, hex, then
//! `rand.SafeEncodeString`.

use std::path::Path;
use std::time::Duration;

use bosun_api::plugin::{FailurePolicy, FullLabelSelector, Webhook, WebhookRule};
use bosun_test_support::embedded::{Env, source};
use bosun_test_support::eventually;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[path = "support/injector.rs"]
mod injector;

const HASH: &str = "kruise.io/sidecarset-hash";
const HASH_WITHOUT_IMAGE: &str = "kruise.io/sidecarset-hash-without-image";
const INJECTED_LIST: &str = "kruise.io/sidecarset-injected-list";

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("kubectl ends")
}

fn sidecarsets(client: &kube::Client) -> Api<DynamicObject> {
    let gvk = kube::api::GroupVersionKind::gvk("bosun.dev", "v1alpha1", "SidecarSet");
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "sidecarsets"),
    )
}

async fn create_sidecarset(client: &kube::Client, name: &str, spec: Value) {
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "bosun.dev/v1alpha1",
        "kind": "SidecarSet",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("sidecarset");
    sidecarsets(client)
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create SidecarSet {name}: {e}"));
}

fn pod(name: &str, namespace: &str, labels: Value, spec: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": spec,
    }))
    .expect("pod")
}

async fn create_pod(client: &kube::Client, pod: &Pod) -> Value {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let created = api
        .create(&PostParams::default(), pod)
        .await
        .unwrap_or_else(|e| panic!("create pod {:?}: {e}", pod.metadata.name));
    serde_json::to_value(created).expect("json")
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default()
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["spec"]["containers"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no container {name} in {pod}"))
}

fn env_of(c: &Value) -> Vec<(String, String)> {
    c["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["name"].as_str().unwrap_or("").to_owned(),
                        e["value"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// Kruise's `hash.go`: `rand.SafeEncodeString(fmt.Sprintf("%x", sha256.Sum256(bytes)))`,
/// where SafeEncodeString maps each byte b to "bcdfghjklmnpqrstvwxz2456789"[b % 27].
fn kruise_hash(go_json: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let hex: String = Sha256::digest(go_json.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    hex.bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

fn annotation<'a>(pod: &'a Value, key: &str) -> Option<&'a str> {
    pod["metadata"]["annotations"][key].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecarsets_are_injected_into_pods_as_kruise_injects_them() {
    let env = Env::bare(1).await;
    let mut config = env.config("rt");
    config.webhook.listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.webhook.url = Some("https://127.0.0.1:0".to_owned());
    let rt = env.runtime(config).await;
    let client = env.client.clone();
    let kubeconfig = env.cluster.kubeconfig_path().to_path_buf();

    // The CRD, generated from bosun_api's types.
    let crd_yaml = bosun_api::sidecarset::crd_yaml().expect("crd yaml");
    let out = kubectl(&kubeconfig, &["apply", "-f", "-"], Some(&crd_yaml));
    assert!(out.status.success(), "{out:?}");
    for ns in ["inject", "plain"] {
        let out = kubectl(&kubeconfig, &["create", "namespace", ns], None);
        assert!(out.status.success(), "{out:?}");
    }
    let out = kubectl(
        &kubeconfig,
        &["label", "namespace", "inject", "sidecars=on"],
        None,
    );
    assert!(out.status.success(), "{out:?}");

    rt.install(&source(bosun_test_artifacts::SIDECARSET_INJECTOR), "{}")
        .expect("loads");
    rt.rollouts()
        .declare_webhook("sidecarset-injector", Some(injector::webhook()));
    eventually(
        "the webhook is configured",
        Duration::from_secs(30),
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
                None,
            );
            String::from_utf8_lossy(&out.stdout).trim() == "sidecarset-injector.plugins.bosun.dev"
        },
    )
    .await;

    // --- SidecarSets -----------------------------------------------------------------
    create_sidecarset(
        &client,
        "paused",
        json!({"selector": {"matchLabels": {"case": "paused"}},
               "injectionStrategy": {"paused": true},
               "containers": [{"name": "paused-sc", "image": "p:1"}]}),
    )
    .await;
    create_sidecarset(
        &client,
        "order",
        json!({"selector": {"matchLabels": {"case": "order"}},
               "containers": [
                   {"name": "before-sc", "image": "b:1", "podInjectPolicy": "BeforeAppContainer"},
                   {"name": "after-sc", "image": "a:1", "podInjectPolicy": "AfterAppContainer"},
                   {"name": "existing", "image": "new:1"}],
               "initContainers": [
                   {"name": "init-b", "image": "i:1"},
                   {"name": "init-a", "image": "i:1"},
                   {"name": "init-c", "image": "i:1", "podInjectPolicy": "BeforeAppContainer"}]}),
    )
    .await;
    create_sidecarset(
        &client,
        "env",
        json!({"selector": {"matchLabels": {"case": "env"}},
               "containers": [{
                   "name": "env-sc", "image": "e:1",
                   "env": [{"name": "OWN", "value": "1"}],
                   "transferEnv": [
                       {"sourceContainerName": "app", "envNames": ["TZ", "LANG"]},
                       {"sourceContainerNameFrom": {"fieldRef": {"fieldPath": "metadata.labels['source']"}},
                        "envName": "REGION"}],
                   "shareVolumePolicy": {"type": "enabled"},
                   "volumeMounts": [{"name": "sc-logs", "mountPath": "/logs"},
                                    {"name": "sc-conf", "mountPath": "/etc/conf"}]}],
               "volumes": [{"name": "sc-logs", "emptyDir": {}},
                           {"name": "sc-conf", "emptyDir": {}},
                           {"name": "unused", "emptyDir": {}}],
               "imagePullSecrets": [{"name": "reg"}, {"name": "shared"}]}),
    )
    .await;
    create_sidecarset(
        &client,
        "multi-a",
        json!({"selector": {"matchLabels": {"multi": "yes"}},
               "containers": [{"name": "a-sc", "image": "busybox:1"}]}),
    )
    .await;
    create_sidecarset(
        &client,
        "multi-b",
        json!({"selector": {"matchLabels": {"multi": "yes"}},
               "containers": [{"name": "b-sc", "image": "busybox:2"}]}),
    )
    .await;
    for n in ["clash-1", "clash-2"] {
        create_sidecarset(
            &client,
            n,
            json!({"selector": {"matchLabels": {"clash": "yes"}},
                   "containers": [{"name": "dup", "image": n}]}),
        )
        .await;
    }
    create_sidecarset(
        &client,
        "deploy",
        json!({"selector": {"matchLabels": {"app": "web-deploy"}},
               "containers": [{"name": "deploy-sc", "image": "d:1"}]}),
    )
    .await;
    create_sidecarset(
        &client,
        "empty-selector",
        json!({"selector": {}, "containers": [{"name": "everywhere", "image": "x:1"}]}),
    )
    .await;
    // The last one: once a pod gets it, the plugin's cache holds every SidecarSet above
    // (one watch, in order) and the labelled namespace.
    create_sidecarset(
        &client,
        "ns",
        json!({"selector": {"matchLabels": {"case": "ns"}},
               "namespaceSelector": {"matchLabels": {"sidecars": "on"}},
               "containers": [{"name": "ns-sc", "image": "n:1"}]}),
    )
    .await;
    let mut attempt = 0;
    eventually(
        "the plugin's cache holds the SidecarSets",
        Duration::from_secs(30),
        || {
            attempt += 1;
            let client = client.clone();
            async move {
                let p = pod(
                    &format!("ns-{attempt}"),
                    "inject",
                    json!({"case": "ns"}),
                    json!({"containers": [{"name": "app", "image": "app:1"}]}),
                );
                let created = create_pod(&client, &p).await;
                names(&created["spec"]["containers"]) == ["ns-sc", "app"]
            }
        },
    )
    .await;

    // --- The SidecarSet carries the hashes, as Kruise's SidecarSet webhook writes them.
    let stored = sidecarsets(&client).get("multi-a").await.expect("get");
    let stored = serde_json::to_value(&stored).expect("json");
    let hash_a = kruise_hash(
        r#"{"containers":[{"name":"a-sc","image":"busybox:1","resources":{},"upgradeStrategy":{},"shareVolumePolicy":{}}]}"#,
    );
    let hash_a_without_image = kruise_hash(
        r#"{"containers":[{"name":"a-sc","resources":{},"upgradeStrategy":{},"shareVolumePolicy":{}}]}"#,
    );
    assert_eq!(annotation(&stored, HASH), Some(hash_a.as_str()), "{stored}");
    assert_eq!(
        annotation(&stored, HASH_WITHOUT_IMAGE),
        Some(hash_a_without_image.as_str())
    );
    assert_eq!(
        annotation(&stored, HASH).map(str::to_owned),
        bosun_api::sidecarset_hash::hash(&stored["spec"]).ok()
    );
    // An update is stamped again.
    sidecarsets(&client)
        .patch(
            "multi-a",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"containers": [{"name": "a-sc", "image": "busybox:1"}]},
                                 "metadata": {"annotations": {(HASH): "stale"}}}),
            ),
        )
        .await
        .expect("patch");
    let stored = serde_json::to_value(sidecarsets(&client).get("multi-a").await.expect("get"))
        .expect("json");
    assert_eq!(annotation(&stored, HASH), Some(hash_a.as_str()), "{stored}");
    // A container Go could not decode (Kruise could not hash it) is refused, naming it.
    let bad = r#"{"apiVersion": "bosun.dev/v1alpha1", "kind": "SidecarSet",
        "metadata": {"name": "bad"},
        "spec": {"selector": {"matchLabels": {"case": "bad"}},
                 "containers": [{"name": "s", "image": "s:1", "ports": [{"containerPort": "80"}]}]}}"#;
    let out = kubectl(&kubeconfig, &["create", "-f", "-"], Some(bad));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        stderr.contains("SidecarSet bad: containers[0].ports[0].containerPort: expected int32"),
        "{stderr}"
    );

    // --- No match: a pod nobody selects, one in a namespace the selector excludes, an
    // empty selector (matches nothing), paused injection.
    let plain_spec = json!({"containers": [{"name": "app", "image": "app:1"}]});
    for (name, ns, labels) in [
        ("nobody", "plain", json!({})),
        ("ns-excluded", "plain", json!({"case": "ns"})),
        ("paused", "plain", json!({"case": "paused"})),
    ] {
        let created = create_pod(&client, &pod(name, ns, labels, plain_spec.clone())).await;
        assert_eq!(names(&created["spec"]["containers"]), ["app"], "{name}");
        assert_eq!(annotation(&created, HASH), None, "{name}");
        assert_eq!(annotation(&created, INJECTED_LIST), None, "{name}");
    }

    // --- Before/After with existing containers, init-container order, through kubectl.
    let order_pod = r#"
apiVersion: v1
kind: Pod
metadata: {name: order, namespace: plain, labels: {case: order}}
spec:
  initContainers: [{name: pod-init, image: pi:1}]
  containers:
  - {name: app, image: app:1}
  - {name: existing, image: old:1}
"#;
    let out = kubectl(&kubeconfig, &["create", "-f", "-"], Some(order_pod));
    assert!(out.status.success(), "{out:?}");
    let out = kubectl(
        &kubeconfig,
        &[
            "-n",
            "plain",
            "get",
            "pod",
            "order",
            "-o",
            "jsonpath={.spec.containers[*].name}/{.spec.initContainers[*].name}/{.spec.containers[2].image}",
        ],
        None,
    );
    // mergeSidecarContainers: `existing` replaced in place, before-sc first, after-sc
    // last; init containers sorted by name (init-a, init-b, init-c), then placed:
    // init-c (BeforeAppContainer) first, the others after the pod's (the default).
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "before-sc app existing after-sc/init-c pod-init init-a init-b/new:1",
        "{out:?}"
    );
    let order: Value = serde_json::to_value(
        Api::<Pod>::namespaced(client.clone(), "plain")
            .get("order")
            .await
            .expect("get"),
    )
    .expect("json");
    for c in ["before-sc", "after-sc", "existing"] {
        assert_eq!(
            env_of(container(&order, c)),
            pairs(&[("IS_INJECTED", "true")]),
            "{c}"
        );
    }
    assert_eq!(env_of(container(&order, "app")), vec![]);
    assert_eq!(annotation(&order, INJECTED_LIST), Some("order"));

    // --- transferEnv, shared volumes, only mounted volumes, pull secrets de-duplicated.
    let env_pod = pod(
        "env",
        "plain",
        json!({"case": "env", "source": "app2"}),
        json!({
            "containers": [
                {"name": "app", "image": "app:1",
                 "env": [{"name": "TZ", "value": "UTC"}, {"name": "LANG", "value": "C"},
                         {"name": "OWN", "value": "app's"}],
                 "volumeMounts": [{"name": "data", "mountPath": "/data"},
                                  {"name": "app-conf", "mountPath": "/etc/conf"}]},
                {"name": "app2", "image": "app:1", "env": [{"name": "REGION", "value": "eu"}]}],
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "app-conf", "emptyDir": {}},
                        {"name": "sc-conf", "emptyDir": {"medium": "Memory"}}],
            "imagePullSecrets": [{"name": "shared"}],
        }),
    );
    let created = create_pod(&client, &env_pod).await;
    assert_eq!(
        names(&created["spec"]["containers"]),
        ["env-sc", "app", "app2"]
    );
    let sc = container(&created, "env-sc");
    // Its own, IS_INJECTED, then transferred: envNames sorted (LANG, TZ), then REGION from
    // the container the label names. OWN is not transferred (not asked for).
    assert_eq!(
        env_of(sc),
        pairs(&[
            ("OWN", "1"),
            ("IS_INJECTED", "true"),
            ("LANG", "C"),
            ("TZ", "UTC"),
            ("REGION", "eu"),
        ])
    );
    // Its own mounts, then the app's except the path it already mounts.
    let mounts: Vec<(&str, &str)> = sc["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or(""),
                m["mountPath"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        mounts,
        [
            ("sc-logs", "/logs"),
            ("sc-conf", "/etc/conf"),
            ("data", "/data")
        ]
    );
    // The pod's own sc-conf stays; sc-logs is added; `unused` (mounted by nobody) is not.
    assert_eq!(
        names(&created["spec"]["volumes"]),
        ["data", "app-conf", "sc-conf", "sc-logs"]
    );
    assert_eq!(
        created["spec"]["volumes"][2]["emptyDir"]["medium"], "Memory",
        "the pod's volume of the same name is kept"
    );
    assert_eq!(
        names(&created["spec"]["imagePullSecrets"]),
        ["shared", "reg"]
    );

    // --- Two SidecarSets on one pod, and the annotations' exact JSON.
    let created = create_pod(
        &client,
        &pod(
            "multi",
            "plain",
            json!({"multi": "yes"}),
            plain_spec.clone(),
        ),
    )
    .await;
    assert_eq!(
        names(&created["spec"]["containers"]),
        ["a-sc", "b-sc", "app"]
    );
    assert_eq!(annotation(&created, INJECTED_LIST), Some("multi-a,multi-b"));
    let hash_text = annotation(&created, HASH).expect("hash annotation");
    let parsed: Value = serde_json::from_str(hash_text).expect("json");
    let at = parsed["multi-a"]["updateTimestamp"]
        .as_str()
        .expect("timestamp")
        .to_owned();
    assert!(
        at.len() == 20 && at.ends_with('Z') && at.as_bytes()[10] == b'T',
        "metav1.Time marshals as RFC 3339 in seconds, UTC: {at}"
    );
    let hash_b = kruise_hash(
        r#"{"containers":[{"name":"b-sc","image":"busybox:2","resources":{},"upgradeStrategy":{},"shareVolumePolicy":{}}]}"#,
    );
    let hash_b_without_image = kruise_hash(
        r#"{"containers":[{"name":"b-sc","resources":{},"upgradeStrategy":{},"shareVolumePolicy":{}}]}"#,
    );
    assert_eq!(
        hash_text,
        format!(
            r#"{{"multi-a":{{"updateTimestamp":"{at}","hash":"{hash_a}","sidecarSetName":"multi-a","sidecarList":["a-sc"]}},"multi-b":{{"updateTimestamp":"{at}","hash":"{hash_b}","sidecarSetName":"multi-b","sidecarList":["b-sc"]}}}}"#
        )
    );
    assert_eq!(
        annotation(&created, HASH_WITHOUT_IMAGE).expect("annotation"),
        format!(
            r#"{{"multi-a":{{"updateTimestamp":"{at}","hash":"{hash_a_without_image}","sidecarSetName":"multi-a","sidecarList":["a-sc"]}},"multi-b":{{"updateTimestamp":"{at}","hash":"{hash_b_without_image}","sidecarSetName":"multi-b","sidecarList":["b-sc"]}}}}"#
        )
    );

    // --- Two SidecarSets injecting the same container name: denied, both named.
    let clash = "apiVersion: v1\nkind: Pod\nmetadata: {name: clash, namespace: plain, labels: {clash: 'yes'}}\nspec: {containers: [{name: app, image: app:1}]}\n";
    let out = kubectl(&kubeconfig, &["create", "-f", "-"], Some(clash));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        stderr.contains("denied the request: SidecarSets clash-1 and clash-2 both inject a container named \"dup\""),
        "{stderr}"
    );

    // --- Pods a Deployment creates are injected too.
    let deployment = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-deploy, namespace: plain}
spec:
  replicas: 2
  selector: {matchLabels: {app: web-deploy}}
  template:
    metadata: {labels: {app: web-deploy}}
    spec: {containers: [{name: web, image: web:1}]}
"#;
    let out = kubectl(&kubeconfig, &["create", "-f", "-"], Some(deployment));
    assert!(out.status.success(), "{out:?}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "plain");
    eventually(
        "the Deployment's pods are injected",
        Duration::from_secs(30),
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=web-deploy"))
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            list.len() == 2
                && list.iter().all(|p| {
                    let p = serde_json::to_value(p).unwrap_or_default();
                    names(&p["spec"]["containers"]) == ["deploy-sc", "web"]
                        && annotation(&p, INJECTED_LIST) == Some("deploy")
                })
        },
    )
    .await;
}

/// `failurePolicy: Fail` is the cluster's word, not the runtime's: once the runtime is
/// gone, the API server refuses pods in the namespaces the webhook selects (naming it) and
/// admits the others, which the webhook never covered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_runtime_down_fail_refuses_only_the_selected_namespaces() {
    const WEBHOOK: &str = "sidecarset-injector.plugins.bosun.dev";
    let env = Env::bare(1).await;
    let mut config = env.config("rt");
    config.webhook.listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.webhook.url = Some("https://127.0.0.1:0".to_owned());
    let rt = env.runtime(config).await;
    let client = env.client.clone();
    let kubeconfig = env.cluster.kubeconfig_path().to_path_buf();

    let crd_yaml = bosun_api::sidecarset::crd_yaml().expect("crd yaml");
    let out = kubectl(&kubeconfig, &["apply", "-f", "-"], Some(&crd_yaml));
    assert!(out.status.success(), "{out:?}");
    for ns in ["guarded", "free"] {
        let out = kubectl(&kubeconfig, &["create", "namespace", ns], None);
        assert!(out.status.success(), "{out:?}");
    }
    let out = kubectl(
        &kubeconfig,
        &[
            "label",
            "namespace",
            "guarded",
            "sidecarset-injection=enabled",
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");

    rt.install(&source(bosun_test_artifacts::SIDECARSET_INJECTOR), "{}")
        .expect("loads");
    rt.rollouts().declare_webhook(
        "sidecarset-injector",
        Some(Webhook {
            mutating: true,
            rules: vec![WebhookRule {
                operations: vec!["CREATE".to_owned()],
                api_groups: vec![String::new()],
                api_versions: vec!["v1".to_owned()],
                resources: vec!["pods".to_owned()],
                scope: None,
            }],
            namespace_selector: Some(FullLabelSelector {
                match_labels: [("sidecarset-injection".to_owned(), "enabled".to_owned())].into(),
                ..FullLabelSelector::default()
            }),
            failure_policy: Some(FailurePolicy::Fail),
            ..Webhook::default()
        }),
    );
    eventually(
        "the webhook is configured with Fail and the namespace selector",
        Duration::from_secs(30),
        || async {
            let out = kubectl(
                &kubeconfig,
                &["get", "mutatingwebhookconfiguration", "bosun", "-o", "json"],
                None,
            );
            let config: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let hook = &config["webhooks"][0];
            hook["name"] == WEBHOOK
                && hook["failurePolicy"] == "Fail"
                && hook["namespaceSelector"]["matchLabels"]["sidecarset-injection"] == "enabled"
        },
    )
    .await;

    let spec = json!({"containers": [{"name": "app", "image": "app:1"}]});
    // While the runtime runs, the selected namespace admits pods: the webhook answers.
    let mut attempt = 0;
    eventually(
        "the webhook admits a pod in the selected namespace",
        Duration::from_secs(30),
        || {
            attempt += 1;
            let (client, spec) = (client.clone(), spec.clone());
            async move {
                let p = pod(&format!("up-{attempt}"), "guarded", json!({}), spec);
                Api::<Pod>::namespaced(client, "guarded")
                    .create(&PostParams::default(), &p)
                    .await
                    .is_ok()
            }
        },
    )
    .await;

    rt.shutdown().await;
    drop(rt);

    let refused = Api::<Pod>::namespaced(client.clone(), "guarded")
        .create(
            &PostParams::default(),
            &pod("down", "guarded", json!({}), spec.clone()),
        )
        .await;
    let message = match refused {
        Ok(p) => panic!("a pod was admitted with the runtime down: {:?}", p.metadata),
        Err(e) => e.to_string(),
    };
    assert!(
        message.contains(&format!("failed calling webhook \"{WEBHOOK}\"")),
        "{message}"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "guarded");
    assert!(
        pods.get_opt("down").await.expect("get").is_none(),
        "the refused pod is not stored"
    );

    // The webhook does not select this namespace: the API server never calls it.
    let created = create_pod(&client, &pod("down", "free", json!({}), spec)).await;
    assert_eq!(names(&created["spec"]["containers"]), ["app"]);
}

/// The offline half: the plugin's `review` called directly (bosun-host, a cache of the
/// given objects, a fixed clock), for what the embedded cluster cannot set up cheaply.
mod offline {
    use std::sync::Arc;

    use base64::Engine as _;
    use bosun_cli::offline::OfflineCache;
    use bosun_host::host::{cache, clock, commands, log};
    use bosun_host::{Revision, Services, Spec, Strategy};
    use serde_json::{Value, json};

    /// 2023-11-14T22:13:20Z.
    const NOW_MS: u64 = 1_700_000_000_000;
    const NOW: &str = "2023-11-14T22:13:20Z";

    /// The plugin's answer to a CREATE of `object` (kind `kind`) with `cached` in the cache.
    fn review(cached: &[Value], kind: &str, object: &Value) -> Value {
        let mut cache = OfflineCache::default();
        for o in cached {
            cache.insert(o).expect("cache");
        }
        let services = Services {
            cache: Arc::new(cache),
            state: Arc::new(cache::MemoryState::default()),
            commands: Arc::new(commands::Recorder::default()),
            log: Arc::new(log::Memory::default()),
            clock: Arc::new(clock::Fixed(NOW_MS)),
            pod: None,
        };
        let mut spec = Spec::new(services);
        spec.strategy = Strategy::Fresh;
        let engine = bosun_conformance::engine(None).expect("engine");
        let source = super::source(bosun_test_artifacts::SIDECARSET_INJECTOR);
        let revision = Revision::load(&engine, &source, spec).expect("loads");
        let request = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {"uid": "u1", "kind": {"group": "", "version": "v1", "kind": kind},
                        "operation": "CREATE", "namespace": "shop", "object": object},
        });
        let answer = revision.review(&request.to_string()).expect("reviews");
        serde_json::from_str(&answer).expect("json")
    }

    /// The JSON patch of an answer (an empty list when there is none).
    fn patch_of(answer: &Value) -> Value {
        let Some(text) = answer["response"]["patch"].as_str() else {
            return json!([]);
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("base64");
        serde_json::from_slice(&bytes).expect("patch json")
    }

    /// `object` with the answer's patch applied.
    fn patched(answer: &Value, object: &Value) -> Value {
        let patch: json_patch::Patch =
            serde_json::from_value(patch_of(answer)).expect("a JSON patch");
        let mut out = object.clone();
        json_patch::patch(&mut out, &patch).expect("the patch applies");
        out
    }

    fn sidecarset(name: &str, spec: Value, annotations: Value, status: Value) -> Value {
        json!({"apiVersion": "bosun.dev/v1alpha1", "kind": "SidecarSet",
               "metadata": {"name": name, "annotations": annotations},
               "spec": spec, "status": status})
    }

    fn pod(annotations: Value, spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "p", "namespace": "shop", "labels": {"app": "web"},
                            "annotations": annotations},
               "spec": spec})
    }

    #[test]
    fn native_sidecars_revisions_and_earlier_annotations_are_written_as_kruise_writes_them() {
        let set = sidecarset(
            "ss",
            json!({"selector": {"matchLabels": {"app": "web"}},
                   "containers": [{"name": "c1", "image": "c:1"}],
                   "initContainers": [{"name": "native", "image": "n:1", "restartPolicy": "Always"},
                                      {"name": "plain-init", "image": "p:1"}]}),
            json!({"kruise.io/sidecarset-hash": "H", "kruise.io/sidecarset-hash-without-image": "W"}),
            json!({"latestRevision": "ss-rev1"}),
        );
        // An annotation in Kruise's older form (name → hash) and an earlier SidecarSet.
        let p = pod(
            json!({"kruise.io/sidecarset-hash": r#"{"old":"h0"}"#,
                   "kruise.io/sidecarset-injected-list": "old"}),
            json!({"containers": [{"name": "app", "image": "a:1"}]}),
        );
        let answer = review(&[set], "Pod", &p);
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
        let ops = patch_of(&answer);
        // Existing annotations are set one by one, the key's `/` escaped.
        assert!(
            ops.as_array()
                .expect("ops")
                .iter()
                .any(|o| o["path"] == "/metadata/annotations/kruise.io~1sidecarset-hash"),
            "{ops}"
        );
        let out = patched(&answer, &p);
        let annotations = &out["metadata"]["annotations"];
        // Go: the old entry decoded into SidecarSetUpgradeSpec{hash, sidecarSetName} (zero
        // time → null, nil list → null); the native sidecar is in sidecarList, the plain
        // init container is not; controllerRevision only in the first annotation.
        assert_eq!(
            annotations["kruise.io/sidecarset-hash"],
            format!(
                r#"{{"old":{{"updateTimestamp":null,"hash":"h0","sidecarSetName":"old","sidecarList":null}},"ss":{{"updateTimestamp":"{NOW}","hash":"H","sidecarSetName":"ss","sidecarList":["c1","native"],"controllerRevision":"ss-rev1"}}}}"#
            )
        );
        assert_eq!(
            annotations["kruise.io/sidecarset-hash-without-image"],
            format!(
                r#"{{"ss":{{"updateTimestamp":"{NOW}","hash":"W","sidecarSetName":"ss","sidecarList":["c1","native"]}}}}"#
            )
        );
        assert_eq!(annotations["kruise.io/sidecarset-injected-list"], "old,ss");
        assert_eq!(
            super::names(&out["spec"]["initContainers"]),
            ["native", "plain-init"]
        );
    }

    #[test]
    fn shared_mounts_skip_injected_containers_and_bring_their_sub_path_variables() {
        let set = sidecarset(
            "share",
            json!({"selector": {"matchLabels": {"app": "web"}},
                   "containers": [{
                       "name": "logger", "image": "l:1",
                       "shareVolumePolicy": {"type": "enabled"},
                       "transferEnv": [
                           {"sourceContainerNameFrom": {"fieldRef": {"fieldPath": "metadata.annotations['main']"}},
                            "envName": "MODE"},
                           {"sourceContainerNameFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                            "envName": "MODE"}]}]}),
            json!({}),
            json!({}),
        );
        let p = pod(
            json!({"main": "app"}),
            json!({"containers": [
                {"name": "app", "image": "a:1",
                 "env": [{"name": "MODE", "value": "fast"}, {"name": "POD", "value": "p"}],
                 "volumeMounts": [{"name": "data", "mountPath": "/data", "subPathExpr": "x/$(POD)"}]},
                {"name": "old-sidecar", "image": "o:1",
                 "env": [{"name": "IS_INJECTED", "value": "true"}],
                 "volumeMounts": [{"name": "secret", "mountPath": "/secret"}]}]}),
        );
        let out = patched(&review(&[set], "Pod", &p), &p);
        let logger = super::container(&out, "logger");
        // Only the app container's mount (the injected container's is not shared).
        assert_eq!(
            logger["volumeMounts"],
            json!([{"name": "data", "mountPath": "/data", "subPathExpr": "x/$(POD)"}])
        );
        // MODE from the container the annotation names (the unsupported `metadata.name`
        // entry is skipped, as Kruise skips it), then POD for the subPathExpr.
        assert_eq!(
            super::env_of(logger),
            super::pairs(&[("IS_INJECTED", "true"), ("MODE", "fast"), ("POD", "p")])
        );
        // Kruise's own fields do not reach the pod.
        assert!(logger.get("shareVolumePolicy").is_none() && logger.get("transferEnv").is_none());
    }

    #[test]
    fn a_pod_without_annotations_or_being_deleted() {
        let set = sidecarset(
            "s",
            json!({"selector": {"matchLabels": {"app": "web"}},
                   "containers": [{"name": "s", "image": "s:1"}]}),
            json!({}),
            json!({}),
        );
        let mut p = pod(
            json!({}),
            json!({"containers": [{"name": "app", "image": "a:1"}]}),
        );
        p["metadata"]
            .as_object_mut()
            .expect("meta")
            .remove("annotations");
        let out = patched(&review(std::slice::from_ref(&set), "Pod", &p), &p);
        // A SidecarSet without the hash annotations: the hashes its spec gives.
        let hash = bosun_api::sidecarset_hash::hash(&set["spec"]).expect("hash");
        assert_eq!(
            out["metadata"]["annotations"]["kruise.io/sidecarset-hash"],
            format!(
                r#"{{"s":{{"updateTimestamp":"{NOW}","hash":"{hash}","sidecarSetName":"s","sidecarList":["s"]}}}}"#
            )
        );
        p["metadata"]["deletionTimestamp"] = json!(NOW);
        let answer = review(&[set], "Pod", &p);
        assert_eq!(answer["response"]["allowed"], true);
        assert_eq!(patch_of(&answer), json!([]));
    }
}
