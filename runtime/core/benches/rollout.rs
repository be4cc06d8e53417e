//! Rollouts on the embedded cluster: push-to-serving time of a Plugin object
//! (cold: a digest never compiled; cached: compiled code on disk), and breach-to-rollback
//! time of a canary that fails every reconcile.
//!
//! Run: `cargo bench -p bosun-runtime --bench rollout` (env: PODS (50), RUNS (5))

use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_api::plugin::Plugin;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn variant(tag: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(bosun_test_artifacts::HOSTILE).unwrap_or_default();
    let name = b"bench";
    bytes.push(0);
    bytes.push(u8::try_from(1 + name.len() + tag.len()).unwrap_or(0));
    bytes.push(u8::try_from(name.len()).unwrap_or(0));
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(tag.as_bytes());
    bytes
}

async fn push(
    client: &kube::Client,
    bytes: &[u8],
    mode: &str,
    rollout: serde_json::Value,
) -> anyhow::Result<String> {
    let digest = bosun_link::digest(bytes);
    let hex = digest.trim_start_matches("sha256:");
    let name = format!("bosun-plugin-hostile-{}", &hex[..12]);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"bosun.dev/plugin": "hostile", "bosun.dev/digest": &hex[..63]}},
        "binaryData": {"plugin.wasm": ByteString(bytes.to_vec())},
    }))?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    if cms.get_opt(&name).await?.is_none() {
        cms.create(&PostParams::default(), &cm).await?;
    }
    let plugin = json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "Plugin",
        "metadata": {"name": "hostile", "namespace": "default"},
        "spec": {
            "source": {"configMap": {"name": name, "key": "plugin.wasm", "sha256": digest}},
            "world": "controller",
            "config": {"mode": mode},
            "permissions": [{"apiVersion": "v1", "kind": "Pod", "verbs": ["read", "patch", "delete", "pod-command"]}],
            "rollout": rollout,
        }
    });
    Api::<Plugin>::namespaced(client.clone(), "default")
        .patch(
            "hostile",
            &PatchParams::apply("bench").force(),
            &Patch::Apply(plugin),
        )
        .await?;
    Ok(digest)
}

async fn wait_for(
    client: &kube::Client,
    what: impl Fn(&bosun_api::plugin::PluginStatus) -> bool,
) -> anyhow::Result<()> {
    let api: Api<Plugin> = Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    loop {
        if let Some(s) = api.get("hostile").await?.status
            && what(&s)
        {
            return Ok(());
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(120), "timed out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn stats(v: &mut [Duration]) -> String {
    v.sort();
    format!(
        "median {:.0} ms (min {:.0}, max {:.0}, {} runs)",
        v[v.len() / 2].as_secs_f64() * 1000.0,
        v[0].as_secs_f64() * 1000.0,
        v[v.len() - 1].as_secs_f64() * 1000.0,
        v.len()
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let pods = env("PODS", 50) as usize;
    let runs = env("RUNS", 5) as usize;
    let cluster = bosun_cluster::start(bosun_cluster::Config {
        nodes: 1,
        ..Default::default()
    })
    .await?;
    let client = cluster.client().await?;
    let crd: CustomResourceDefinition = serde_yaml::from_str(&bosun_api::plugin::crd_yaml()?)?;
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await?;
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..pods {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("p-{i}")},
            "spec": {"containers": [{"name": "app", "image": "app:v1"}]}
        }))?;
        api.create(&PostParams::default(), &pod).await?;
    }
    let dir = tempfile::tempdir()?;
    let mut config = bosun_runtime::Config {
        data_dir: dir.path().join("rt"),
        admin_addr: "127.0.0.1:0".parse()?,
        resync_seconds: 0,
        ..Default::default()
    };
    config.guardrails.global = bosun_runtime::guardrail::Rate::new(1e6, 1_000_000);
    config.guardrails.per_plugin = bosun_runtime::guardrail::Rate::new(1e6, 1_000_000);
    config.queue.backoff_base_ms = 50;
    config.queue.backoff_max_ms = 200;
    let rt = bosun_runtime::Runtime::start_with(
        config,
        client.clone(),
        Arc::new(bosun_host::host::log::Memory::default()),
    )
    .await?;

    // Push to serving: a new digest each time (cold: compiled), then digests seen
    // before (cached: the compiled code is read from disk).
    let direct = json!({"strategy": "direct"});
    let mut cold = Vec::new();
    let mut cached = Vec::new();
    for i in 0..runs * 2 {
        // Runs 0..runs are new digests; runs..2*runs repeat them (alternating, so the
        // serving revision always changes).
        let tag = format!("v{}", if i < runs { i } else { i - runs });
        let bytes = variant(&tag);
        let started = Instant::now();
        let digest = push(&client, &bytes, "ok", direct.clone()).await?;
        wait_for(&client, |s| {
            s.stable_revision.as_deref() == Some(digest.as_str())
        })
        .await?;
        if i < runs {
            cold.push(started.elapsed())
        } else {
            cached.push(started.elapsed())
        }
    }
    println!(
        "push to serving (ConfigMap + Plugin applied → status.stableRevision), cold compile: {}",
        stats(&mut cold)
    );
    println!(
        "push to serving, compiled code cached: {}",
        stats(&mut cached)
    );

    // Breach to rollback: a canary failing every reconcile, 50% of {pods} keys.
    let mut breach = Vec::new();
    for i in 0..runs {
        let good = variant(&format!("good-{i}"));
        let d = push(&client, &good, "ok", direct.clone()).await?;
        wait_for(&client, |s| {
            s.stable_revision.as_deref() == Some(d.as_str())
        })
        .await?;
        let bad = variant(&format!("bad-{i}"));
        let started = Instant::now();
        let bad_digest = push(
            &client,
            &bad,
            "error",
            json!({"strategy": "canary", "canary": {"share": 50, "analysis": {"maxErrorRate": 0.2, "minSamples": 10, "windowSeconds": 300}}}),
        )
        .await?;
        wait_for(&client, |s| {
            s.canary_revision.is_none()
                && s.history
                    .iter()
                    .any(|h| h.digest == bad_digest && h.outcome == "Failed")
        })
        .await?;
        breach.push(started.elapsed());
    }
    println!(
        "canary failing every reconcile (50% of {pods} keys, minSamples 10): apply → rolled back in status: {}",
        stats(&mut breach)
    );
    rt.shutdown().await;
    cluster.shutdown().await;
    Ok(())
}
