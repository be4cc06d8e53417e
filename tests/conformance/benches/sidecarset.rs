//! SidecarSet figures on the embedded cluster, in one run:
//!
//!     cargo bench -p bosun-conformance --bench sidecarset
//!
//! (a) Pod-creation latency added by injection: pods created through the embedded
//! cluster at a fixed rate (`BOSUN_BENCH_RATE`, default 100/s) for `BOSUN_BENCH_SECONDS`
//! (default 10), first with no webhook configured, then with the sidecarset-injector
//! (Rust admission plugin behind the runtime's webhook) injecting a SidecarSet into every
//! one of them. Latency runs from each create's scheduled time to its answer (a stall
//! counts against every create it delays); every injected pod is checked to carry the
//! sidecar.
//! (b) An image change of a SidecarSet injected into the `BOSUN_BENCH_UPGRADE_PODS`
//! (default 1,000) pods of a Deployment, upgraded in place by the sidecarset plugin
//! (JavaScript) with `maxUnavailable: 10%`, against recreating the same pods with a
//! rolling update of the Deployment (`maxUnavailable: 10%`, `maxSurge: 0`), whose new
//! pods get the new image by injection. Time from the change until every pod runs the
//! new sidecar ready. A new pod pays the simulation's pod start delay
//! (`BOSUN_BENCH_POD_START_MS`, default 2,000: sandbox, network, volumes, a cached image —
//! what a real node takes before a new pod's containers start); an in-place restart does
//! not, as on a real node. The sidecarset plugin's command rate and destructive-rate limits
//! are raised for the run (by default 20 commands/s and 60 destructive commands a
//! minute per plugin would bound the in-place upgrade to at least 1,000 / 60 minutes);
//! the workload budget (25%) stays on. Client, runtime and cluster share this machine's
//! cores.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bosun_conformance::crate_dir;
use bosun_runtime::guardrail::Rate;
use bosun_test_support::embedded::{Env, source};
use bosun_test_support::eventually;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

#[path = "../tests/support/injector.rs"]
mod injector;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn sidecarsets(client: &kube::Client) -> Api<DynamicObject> {
    let gvk = kube::api::GroupVersionKind::gvk("bosun.dev", "v1alpha1", "SidecarSet");
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "sidecarsets"),
    )
}

async fn namespace(client: &kube::Client, name: &str) {
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
}

/// (a) Pods created in `ns` at `rate` per second for `seconds`: the figures, and how many
/// of the created pods carry the `agent` sidecar.
async fn at_rate(client: &kube::Client, ns: &str, rate: u64, seconds: u64) -> (String, usize) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let total = rate * seconds;
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..total {
        let at = start + Duration::from_secs_f64(i as f64 / rate as f64);
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": format!("p-{i}"), "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
            }))
            .expect("pod");
            let created = api.create(&PostParams::default(), &pod).await;
            let latency = at.elapsed();
            let injected = created.as_ref().is_ok_and(|p| {
                p.spec
                    .as_ref()
                    .is_some_and(|s| s.containers.iter().any(|c| c.name == "agent"))
            });
            (latency, created.is_ok(), injected)
        }));
    }
    let (mut lat, mut failed, mut injected) = (Vec::new(), 0, 0);
    for t in tasks {
        let (l, ok, inj) = t.await.expect("create task");
        lat.push(l);
        failed += usize::from(!ok);
        injected += usize::from(inj);
    }
    let wall = start.elapsed();
    lat.sort();
    // The simulated kubelet starts the pods meanwhile: let it settle before what follows.
    tokio::time::sleep(Duration::from_secs(3)).await;
    (
        format!(
            "{total} pods in {:.2} s ({:.0}/s), {failed} failed; p50 {}, p99 {}, max {}",
            wall.as_secs_f64(),
            total as f64 / wall.as_secs_f64(),
            ms(pct(&lat, 0.5)),
            ms(pct(&lat, 0.99)),
            ms(lat.last().copied().unwrap_or_default()),
        ),
        injected,
    )
}

/// The Deployment's pods (label `app=fleet`), by name.
async fn fleet(client: &kube::Client) -> BTreeMap<String, Value> {
    Api::<Pod>::namespaced(client.clone(), "fleet")
        .list(&ListParams::default().labels("app=fleet"))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .map(|p| {
            let v = serde_json::to_value(p).expect("json");
            (v["metadata"]["name"].as_str().unwrap_or("").to_owned(), v)
        })
        .collect()
}

/// The pod runs `image` as its `agent` container, ready, and is not being deleted.
fn runs(pod: &Value, image: &str) -> bool {
    let status = pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "agent"));
    let spec = pod["spec"]["containers"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "agent"));
    pod["metadata"]["deletionTimestamp"].is_null()
        && spec.is_some_and(|c| c["image"] == image)
        && status.is_some_and(|s| s["image"] == image && s["ready"] == true)
}

/// Waits until `n` pods of the fleet run `image`; returns the time it took from `since`.
/// Waits until `n` pods of the fleet run `image`: the time it took from `since`, and the
/// most pods that were not serving (not Ready, or missing) at one time, sampled.
async fn all_run(
    client: &kube::Client,
    n: usize,
    image: &str,
    since: Instant,
) -> (Duration, usize) {
    let deadline = since + Duration::from_secs(1800);
    let mut worst = 0;
    loop {
        let pods = fleet(client).await;
        let running = pods.values().filter(|p| runs(p, image)).count();
        let serving = pods
            .values()
            .filter(|p| {
                p["metadata"]["deletionTimestamp"].is_null()
                    && p["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
            })
            .count();
        worst = worst.max(n.saturating_sub(serving));
        if running == n && pods.len() == n {
            return (since.elapsed(), worst);
        }
        assert!(
            Instant::now() < deadline,
            "{running} of {n} pods run {image} after 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rate = env_u64("BOSUN_BENCH_RATE", 100);
    let seconds = env_u64("BOSUN_BENCH_SECONDS", 10);
    let upgrade = usize::try_from(env_u64("BOSUN_BENCH_UPGRADE_PODS", 1000)).unwrap_or(1000);
    // 110 pods a node: room for (a)'s and (b)'s pods.
    let nodes = ((2 * rate * seconds) as usize + 2 * upgrade) / 100 + 1;
    let pod_start = Duration::from_millis(env_u64("BOSUN_BENCH_POD_START_MS", 2000));
    let cluster = bosun_cluster::start(bosun_cluster::Config {
        nodes,
        sim: bosun_cluster::sim::Config {
            pod_start_delay: pod_start,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .expect("cluster");
    let env = Env {
        client: cluster.client().await.expect("client"),
        cluster,
        dir: tempfile::tempdir().expect("tmp"),
        logs: std::sync::Arc::default(),
    };
    let client = env.client.clone();
    let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_yaml::from_str(&bosun_api::sidecarset::crd_yaml().expect("crd")).expect("crd");
    Api::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .expect("SidecarSet CRD");
    for ns in ["plain", "injected", "fleet"] {
        namespace(&client, ns).await;
    }

    // --- (a) without a webhook.
    let (plain, _) = at_rate(&client, "plain", rate, seconds).await;
    println!("(a) no webhook:    {plain}");

    let mut config = env.config("rt");
    config.webhook.listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.webhook.url = Some("https://127.0.0.1:0".to_owned());
    config
        .guardrails
        .per_plugin_overrides
        .insert("sidecarset".to_owned(), Rate::new(1000.0, 1000));
    let unlimited: bosun_runtime::guardrail::Overrides =
        serde_json::from_value(json!({"destructive": {"perMinute": "off", "cooldown": "0s"}}))
            .expect("overrides");
    config
        .guardrails
        .plugins
        .insert("sidecarset".to_owned(), unlimited);
    let rt = env.runtime(config).await;
    rt.install(&source(bosun_test_artifacts::SIDECARSET_INJECTOR), "{}")
        .expect("injector loads");
    rt.rollouts()
        .declare_webhook("sidecarset-injector", Some(injector::webhook()));
    let set: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "SidecarSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "namespace": "injected",
            "containers": [{"name": "agent", "image": "agent:v1",
                "env": [{"name": "LEVEL", "value": "info"}],
                "volumeMounts": [{"name": "logs", "mountPath": "/var/log/app"}]}],
            "volumes": [{"name": "logs", "emptyDir": {}}],
        },
    }))
    .expect("sidecarset");
    eventually(
        "the SidecarSet is created through the webhook",
        Duration::from_secs(60),
        || async {
            sidecarsets(&client)
                .create(&PostParams::default(), &set)
                .await
                .is_ok()
        },
    )
    .await;
    // The injector injects once its cache holds the SidecarSet: probe until it does.
    let probes: Api<Pod> = Api::namespaced(client.clone(), "injected");
    let mut i = 0;
    eventually("a probe pod is injected", Duration::from_secs(60), || {
        i += 1;
        let probes = probes.clone();
        async move {
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": format!("probe-{i}"), "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
            }))
            .expect("pod");
            probes
                .create(&PostParams::default(), &pod)
                .await
                .is_ok_and(|p| p.spec.is_some_and(|s| s.containers.len() == 2))
        }
    })
    .await;

    // --- (a) with the injector.
    let (injected, count) = at_rate(&client, "injected", rate, seconds).await;
    println!("(a) injected:      {injected}; {count} carry the sidecar");

    // --- (b) a Deployment whose pods carry the sidecar.
    rt.install(
        &source(
            &bosun_cli::plugin::build_with(&crate_dir().join("../../plugins/sidecarset"), false)
                .unwrap_or_else(|e| panic!("{e:#}"))
                .display()
                .to_string(),
        ),
        r#"{"pollMs": 200}"#,
    )
    .expect("sidecarset plugin loads");
    sidecarsets(&client)
        .patch(
            "agent",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "selector": {"matchLabels": {"app": "fleet"}}, "namespace": "fleet",
                "updateStrategy": {"type": "RollingUpdate", "maxUnavailable": "10%"}}})),
        )
        .await
        .expect("retarget the SidecarSet");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "fleet", "namespace": "fleet"},
        "spec": {
            "replicas": upgrade,
            "selector": {"matchLabels": {"app": "fleet"}},
            "strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "10%", "maxSurge": 0}},
            "template": {
                "metadata": {"labels": {"app": "fleet"}},
                "spec": {"containers": [{"name": "app", "image": "app:v1"}]}
            }
        }
    }))
    .expect("deployment");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "fleet");
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create deployment");
    let t = Instant::now();
    all_run(&client, upgrade, "agent:v1", t).await;
    println!(
        "(b) {upgrade} pods created and injected, Ready in {:.1} s (pod start delay {} ms)",
        t.elapsed().as_secs_f64(),
        pod_start.as_millis()
    );
    let before: BTreeMap<String, Value> = fleet(&client)
        .await
        .into_iter()
        .map(|(k, v)| (k, v["metadata"]["uid"].clone()))
        .collect();

    // In place: only the image changes.
    let commands = rt.pipe_counts();
    let t = Instant::now();
    sidecarsets(&client)
        .patch(
            "agent",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"containers": [{"name": "agent", "image": "agent:v2",
                "env": [{"name": "LEVEL", "value": "info"}],
                "volumeMounts": [{"name": "logs", "mountPath": "/var/log/app"}]}]}}),
            ),
        )
        .await
        .expect("image change");
    let (in_place, in_place_worst) = all_run(&client, upgrade, "agent:v2", t).await;
    let after = fleet(&client).await;
    let kept = after
        .iter()
        .filter(|(k, v)| before.get(*k) == Some(&v["metadata"]["uid"]))
        .count();
    let executed = rt.pipe_counts().executed - commands.executed;
    println!(
        "(b) in place:      {upgrade} sidecars upgraded in {:.1} s ({:.0} pods/s); {kept} pods kept their uid; {executed} commands executed; at most {in_place_worst} pods not serving at once (sampled)",
        in_place.as_secs_f64(),
        upgrade as f64 / in_place.as_secs_f64()
    );

    // What one pass of the JavaScript controller costs (its reconcile duration).
    let metrics = bosun_test_support::embedded::admin_get(&rt, "/metrics");
    let sum_count = |suffix: &str| {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with(&format!("bosun_reconcile_duration_seconds_{suffix}{{"))
                    && l.contains(r#"plugin="sidecarset""#)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let (sum, count) = (sum_count("sum"), sum_count("count"));
    println!(
        "(b) the sidecarset plugin (JavaScript): {count:.0} reconciles so far, {:.0} ms each on average",
        if count > 0.0 {
            sum / count * 1000.0
        } else {
            0.0
        }
    );

    // Recreated: a rolling update of the Deployment; the new pods are injected with v3.
    sidecarsets(&client)
        .patch(
            "agent",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"updateStrategy": {"type": "NotUpdate"},
                "containers": [{"name": "agent", "image": "agent:v3",
                "env": [{"name": "LEVEL", "value": "info"}],
                "volumeMounts": [{"name": "logs", "mountPath": "/var/log/app"}]}]}})),
        )
        .await
        .expect("image change, not in place");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t = Instant::now();
    deployments
        .patch(
            "fleet",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {
                "bench.bosun.dev/restartedAt": "now"}}}}})),
        )
        .await
        .expect("restart the deployment");
    let (recreated, recreated_worst) = all_run(&client, upgrade, "agent:v3", t).await;
    let after = fleet(&client).await;
    let kept = after
        .iter()
        .filter(|(k, v)| before.get(*k) == Some(&v["metadata"]["uid"]))
        .count();
    println!(
        "(b) recreated:     {upgrade} pods replaced in {:.1} s ({:.0} pods/s); {kept} pods kept their uid; at most {recreated_worst} pods not serving at once (sampled)",
        recreated.as_secs_f64(),
        upgrade as f64 / recreated.as_secs_f64()
    );
    println!(
        "(b) in place / recreate: {:.2}x the time",
        in_place.as_secs_f64() / recreated.as_secs_f64()
    );
    rt.shutdown().await;
}
