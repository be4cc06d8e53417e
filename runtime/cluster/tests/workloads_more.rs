//! DaemonSets, Jobs and the simulation's Events, through the API and the real kubectl
//! (the kubectl steps are skipped when kubectl is missing).

mod common;

use common::eventually;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const KUBECTL: &str = "/usr/bin/kubectl";

async fn cluster(nodes: usize) -> anyhow::Result<bosun_cluster::Cluster> {
    common::with(bosun_cluster::Config {
        nodes,
        sim: bosun_cluster::sim::Config {
            startup_delay: Duration::from_millis(20),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
}

/// Runs kubectl against the cluster; `None` when kubectl is missing.
async fn kubectl(c: &bosun_cluster::Cluster, args: &[&str]) -> anyhow::Result<Option<String>> {
    if !Path::new(KUBECTL).exists() {
        println!("skipping kubectl {args:?}: {KUBECTL} not found");
        return Ok(None);
    }
    let mut cmd = Command::new(KUBECTL);
    cmd.arg("--kubeconfig").arg(c.kubeconfig_path()).args(args);
    let shown = format!("{args:?}");
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    anyhow::ensure!(
        out.status.success(),
        "kubectl {shown} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

fn image(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn label<'a>(p: &'a Pod, k: &str) -> Option<&'a str> {
    p.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(k))
        .map(String::as_str)
}

/// Events about the object named `name`, as (reason, message, source component).
async fn events_of(events: &Api<Event>, name: &str) -> Vec<(String, String, String)> {
    let list = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.into_iter()
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
                e.source.and_then(|s| s.component).unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_runs_on_eligible_nodes_and_rolls_out() -> anyhow::Result<()> {
    let c = cluster(3).await?;
    let client = c.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    eventually(10, || async {
        let n = nodes.list(&ListParams::default()).await.ok()?.items.len();
        (n == 3).then_some(())
    })
    .await?;
    // A taint the DaemonSet does not tolerate, and one it does by default.
    nodes
        .patch(
            "sim-node-2",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": [
                {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}})),
        )
        .await?;
    nodes
        .patch(
            "sim-node-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": [
                {"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"}]}})),
        )
        .await?;
    let sets: Api<DaemonSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    sets.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "agent"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "agent", "image": "agent:v1"}]}}
            }
        }))?,
    )
    .await?;
    let on = |img: &'static str| {
        let pods = pods.clone();
        move || {
            let pods = pods.clone();
            async move {
                let list = pods
                    .list(&ListParams::default().labels("app=agent"))
                    .await
                    .ok()?
                    .items;
                let live: Vec<Pod> = list
                    .into_iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .collect();
                let ok = live.len() == 2 && live.iter().all(|p| ready(p) && image(p) == img);
                ok.then_some(live)
            }
        }
    };
    let live = eventually(20, on("agent:v1")).await?;
    let mut placed: Vec<&str> = live
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.as_deref())
        .collect();
    placed.sort_unstable();
    assert_eq!(placed, ["sim-node-0", "sim-node-1"]);
    let p = &live[0];
    assert!(label(p, "controller-revision-hash").is_some());
    assert_eq!(label(p, "pod-template-generation"), Some("1"));
    let tolerations: Vec<String> = p
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            format!(
                "{}:{}",
                t.key.unwrap_or_default(),
                t.effect.unwrap_or_default()
            )
        })
        .collect();
    for t in [
        "node.kubernetes.io/not-ready:NoExecute",
        "node.kubernetes.io/unreachable:NoExecute",
        "node.kubernetes.io/disk-pressure:NoSchedule",
        "node.kubernetes.io/memory-pressure:NoSchedule",
        "node.kubernetes.io/pid-pressure:NoSchedule",
        "node.kubernetes.io/unschedulable:NoSchedule",
        "node.kubernetes.io/network-unavailable:NoSchedule",
    ] {
        assert!(tolerations.iter().any(|x| x == t), "{t} in {tolerations:?}");
    }
    let ds = eventually(10, || async {
        sets.get("agent").await.ok().filter(|d| {
            d.status.as_ref().is_some_and(|s| {
                s.desired_number_scheduled == 2
                    && s.number_ready == 2
                    && s.number_available == Some(2)
                    && s.updated_number_scheduled == Some(2)
            })
        })
    })
    .await?;
    let status = ds.status.unwrap_or_default();
    assert_eq!(status.current_number_scheduled, 2);
    assert_eq!(status.number_misscheduled, 0);
    assert_eq!(status.observed_generation, Some(1));
    kubectl(
        &c,
        &["rollout", "status", "daemonset/agent", "--timeout=60s"],
    )
    .await?;

    sets.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {
            "containers": [{"name": "agent", "image": "agent:v2"}]}}}})),
    )
    .await?;
    if let Some(out) = kubectl(
        &c,
        &["rollout", "status", "daemonset/agent", "--timeout=60s"],
    )
    .await?
    {
        assert!(out.contains("successfully rolled out"), "{out}");
    }
    let live = eventually(30, on("agent:v2")).await?;
    assert!(
        live.iter()
            .all(|p| label(p, "pod-template-generation") == Some("2")),
        "{live:?}"
    );
    let revisions: Api<ControllerRevision> = Api::default_namespaced(client.clone());
    let revs = revisions.list(&ListParams::default()).await?.items;
    assert_eq!(revs.len(), 2, "one ControllerRevision per template");

    // Untainted, the third node gets a pod too.
    nodes
        .patch(
            "sim-node-2",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": null}})),
        )
        .await?;
    eventually(20, || async {
        let n = pods
            .list(&ListParams::default().labels("app=agent"))
            .await
            .ok()?
            .items
            .iter()
            .filter(|p| ready(p) && p.metadata.deletion_timestamp.is_none())
            .count();
        (n == 3).then_some(())
    })
    .await?;
    let events: Api<Event> = Api::default_namespaced(client);
    let seen = events_of(&events, "agent").await;
    assert!(
        seen.iter().any(|(r, m, s)| r == "SuccessfulCreate"
            && m.starts_with("Created pod: agent-")
            && s == "daemonset-controller"),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(r, m, _)| r == "SuccessfulDelete" && m.starts_with("Deleted pod: agent-")),
        "{seen:?}"
    );
    c.shutdown().await;
    Ok(())
}

fn job(name: &str, completions: i32, parallelism: i32, annotations: serde_json::Value) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "completions": completions,
            "parallelism": parallelism,
            "backoffLimit": 1,
            "template": {"metadata": {"annotations": annotations},
                "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "work", "image": "work:v1"}]}}
        }
    }))
    .expect("valid job")
}

fn condition(j: &Job, type_: &str) -> Option<(String, String)> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_or_fail_past_their_backoff_limit() -> anyhow::Result<()> {
    let c = cluster(2).await?;
    let client = c.client().await?;
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    jobs.create(
        &PostParams::default(),
        &job("batch", 3, 2, json!({"sim.bosun.dev/run-seconds": "0.3"})),
    )
    .await?;
    jobs.create(
        &PostParams::default(),
        &job(
            "broken",
            1,
            1,
            json!({"sim.bosun.dev/run-seconds": "0.2",
            "sim.bosun.dev/exit-code": "3"}),
        ),
    )
    .await?;
    // While it runs, at most `parallelism` pods at once.
    let running = eventually(10, || async {
        let j = jobs.get("batch").await.ok()?;
        j.status.as_ref()?.active.filter(|&a| a > 0)
    })
    .await?;
    assert!(running <= 2, "{running} active");
    kubectl(
        &c,
        &[
            "wait",
            "--for=condition=complete",
            "job/batch",
            "--timeout=60s",
        ],
    )
    .await?;
    let done = eventually(30, || async {
        jobs.get("batch")
            .await
            .ok()
            .filter(|j| condition(j, "Complete").is_some())
    })
    .await?;
    assert_eq!(
        condition(&done, "Complete"),
        Some((
            "CompletionsReached".into(),
            "Reached expected number of succeeded pods".into()
        ))
    );
    let status = done.status.clone().unwrap_or_default();
    assert_eq!(status.succeeded, Some(3));
    assert_eq!(status.active, Some(0));
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    let mine = pods
        .list(&ListParams::default().labels("job-name=batch"))
        .await?
        .items;
    assert_eq!(mine.len(), 3);
    for p in &mine {
        let st = p.status.clone().unwrap_or_default();
        assert_eq!(st.phase.as_deref(), Some("Succeeded"));
        let term = st
            .container_statuses
            .unwrap_or_default()
            .first()
            .and_then(|c| c.state.clone()?.terminated);
        let term = term.expect("terminated state");
        assert_eq!(
            (term.exit_code, term.reason.as_deref()),
            (0, Some("Completed"))
        );
    }
    if let Some(out) = kubectl(&c, &["get", "job", "batch"]).await? {
        assert!(out.contains("Complete") && out.contains("3/3"), "{out}");
    }

    let failed = eventually(30, || async {
        jobs.get("broken")
            .await
            .ok()
            .filter(|j| condition(j, "Failed").is_some())
    })
    .await?;
    assert_eq!(
        condition(&failed, "Failed"),
        Some((
            "BackoffLimitExceeded".into(),
            "Job has reached the specified backoff limit".into()
        ))
    );
    assert!(condition(&failed, "Complete").is_none());
    let status = failed.status.clone().unwrap_or_default();
    assert_eq!(status.failed, Some(2), "backoffLimit 1: two pods failed");
    let broken = pods
        .list(&ListParams::default().labels("job-name=broken"))
        .await?
        .items;
    assert!(broken.iter().all(|p| {
        let st = p.status.clone().unwrap_or_default();
        let code = st
            .container_statuses
            .unwrap_or_default()
            .first()
            .and_then(|c| c.state.clone()?.terminated)
            .map(|t| t.exit_code);
        st.phase.as_deref() == Some("Failed") && code == Some(3)
    }));
    let events: Api<Event> = Api::default_namespaced(client);
    let seen = events_of(&events, "batch").await;
    assert!(
        seen.iter()
            .any(|(r, m, s)| r == "Completed" && m == "Job completed" && s == "job-controller"),
        "{seen:?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|(r, _, _)| r == "SuccessfulCreate")
            .count(),
        3,
        "{seen:?}"
    );
    let seen = events_of(&events, "broken").await;
    assert!(
        seen.iter().any(|(r, _, _)| r == "BackoffLimitExceeded"),
        "{seen:?}"
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulation_records_events_as_kube_components_do() -> anyhow::Result<()> {
    let c = cluster(1).await?;
    let client = c.client().await?;
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let events: Api<Event> = Api::default_namespaced(client.clone());
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "web:v1"}]}}
                }
            }))?,
        )
        .await?;
    let pod = eventually(20, || async {
        let list = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?;
        list.items.into_iter().find(ready)
    })
    .await?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let rs = label(&pod, "pod-template-hash")
        .map(|h| format!("web-{h}"))
        .unwrap_or_default();
    let seen = eventually(10, || async {
        let seen = events_of(&events, &name).await;
        (seen.len() >= 4).then_some(seen)
    })
    .await?;
    let want = [
        (
            "Scheduled",
            format!("Successfully assigned default/{name} to sim-node-0"),
            "default-scheduler",
        ),
        (
            "Pulled",
            "Container image \"web:v1\" already present on machine".to_string(),
            "kubelet",
        ),
        ("Created", "Created container: web".to_string(), "kubelet"),
        ("Started", "Started container web".to_string(), "kubelet"),
    ];
    for (r, m, s) in &want {
        assert!(
            seen.iter().any(|e| e.0 == *r && e.1 == *m && e.2 == *s),
            "{r} {m:?} {s} in {seen:?}"
        );
    }
    let of_rs = events_of(&events, &rs).await;
    assert!(
        of_rs.contains(&(
            "SuccessfulCreate".into(),
            format!("Created pod: {name}"),
            "replicaset-controller".into()
        )),
        "{of_rs:?}"
    );
    let of_d = events_of(&events, "web").await;
    assert!(
        of_d.contains(&(
            "ScalingReplicaSet".into(),
            format!("Scaled up replica set {rs} from 0 to 1"),
            "deployment-controller".into()
        )),
        "{of_d:?}"
    );
    if let Some(out) = kubectl(&c, &["describe", "pod", &name]).await? {
        for text in [
            "Scheduled",
            "default-scheduler",
            "Successfully assigned default/",
            "Started container web",
        ] {
            assert!(out.contains(text), "{text} in:\n{out}");
        }
    }
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await?;
    let seen = eventually(20, || async {
        let seen = events_of(&events, &name).await;
        seen.iter().any(|e| e.0 == "Killing").then_some(seen)
    })
    .await?;
    assert!(
        seen.iter()
            .any(|e| e.0 == "Killing" && e.1 == "Stopping container web" && e.2 == "kubelet"),
        "{seen:?}"
    );
    let of_rs = events_of(&events, &rs).await;
    assert!(
        of_rs.contains(&(
            "SuccessfulDelete".into(),
            format!("Deleted pod: {name}"),
            "replicaset-controller".into()
        )),
        "{of_rs:?}"
    );
    let of_d = events_of(&events, "web").await;
    assert!(
        of_d.iter()
            .any(|e| e.1 == format!("Scaled down replica set {rs} from 1 to 0")),
        "{of_d:?}"
    );
    c.shutdown().await;
    Ok(())
}

fn cronjob(name: &str, policy: &str, run_seconds: &str) -> CronJob {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "schedule": "* * * * *",
            "concurrencyPolicy": policy,
            "successfulJobsHistoryLimit": 2,
            "jobTemplate": {
                "metadata": {"labels": {"from": name}},
                "spec": {"backoffLimit": 0, "template": {
                    "metadata": {"annotations": {"sim.bosun.dev/run-seconds": run_seconds}},
                    "spec": {"restartPolicy": "Never",
                        "containers": [{"name": "work", "image": "work:v1"}]}}}
            }
        }
    }))
    .expect("valid cronjob")
}

/// Jobs owned by the CronJob `name`.
async fn jobs_of(jobs: &Api<Job>, name: &str) -> Vec<Job> {
    let list = jobs.list(&ListParams::default()).await.map(|l| l.items);
    list.unwrap_or_default()
        .into_iter()
        .filter(|j| {
            j.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "CronJob" && o.name == name)
        })
        .collect()
}

/// A schedule minute lasts one second here (`cron_minute`), so `* * * * *` runs every
/// second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjobs_run_jobs_on_schedule_prune_history_and_forbid_overlap() -> anyhow::Result<()> {
    let c = common::with(bosun_cluster::Config {
        nodes: 1,
        sim: bosun_cluster::sim::Config {
            startup_delay: Duration::from_millis(20),
            cron_minute: Duration::from_secs(1),
            ..Default::default()
        },
        ..Default::default()
    })
    .await?;
    let client = c.client().await?;
    let cjs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");

    // Refused schedules and zones, as kube-apiserver refuses them.
    let mut bad = cronjob("bad", "Allow", "0.1");
    bad.spec.schedule = "x".into();
    let err = cjs
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("refused");
    let kube::Error::Api(ae) = err else {
        anyhow::bail!("not an API error: {err}")
    };
    assert_eq!(ae.code, 422);
    assert!(
        ae.message
            .contains(r#"spec.schedule: Invalid value: "x": expected exactly 5 fields, found 1"#),
        "{}",
        ae.message
    );
    let mut bad = cronjob("bad", "Allow", "0.1");
    bad.spec.time_zone = Some("Europe/Berlin".into());
    let err = cjs
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("spec.timeZone"), "{err}");

    // Allow: a Job every minute from the template; they complete; two kept.
    let tick = cjs
        .create(&PostParams::default(), &cronjob("tick", "Allow", "0.1"))
        .await?;
    let spec = &tick.spec;
    assert_eq!(spec.failed_jobs_history_limit, Some(1));
    assert_eq!(spec.suspend, Some(false));
    let first = eventually(10, || async {
        jobs_of(&jobs, "tick").await.into_iter().next()
    })
    .await?;
    let name = first.metadata.name.clone().unwrap_or_default();
    let minute = name.strip_prefix("tick-").expect("NAME-<minute>");
    assert!(minute.parse::<u64>().is_ok(), "{name}");
    assert_eq!(
        first
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("from"))
            .map(String::as_str),
        Some("tick")
    );
    let annotations = first.metadata.annotations.clone().unwrap_or_default();
    assert!(annotations.contains_key("batch.kubernetes.io/cronjob-scheduled-timestamp"));
    let owner = &first.metadata.owner_references.as_ref().expect("owned")[0];
    assert_eq!(owner.controller, Some(true));
    eventually(20, || async {
        let done = jobs_of(&jobs, "tick").await;
        let complete = done
            .iter()
            .filter(|j| condition(j, "Complete").is_some())
            .count();
        let evs = events_of(&events, "tick").await;
        let deleted = evs.iter().any(|(r, m, s)| {
            r == "SuccessfulDelete"
                && m.starts_with("Deleted job tick-")
                && s == "cronjob-controller"
        });
        let cj = cjs.get("tick").await.ok()?;
        let status = cj.status?;
        (deleted
            && complete <= 2
            && evs
                .iter()
                .any(|(r, m, _)| r == "SuccessfulCreate" && m.starts_with("Created job tick-"))
            && evs.iter().any(|(r, m, _)| {
                r == "SawCompletedJob"
                    && m.starts_with("Saw completed job: tick-")
                    && m.ends_with(", status: Complete")
            })
            && status.last_schedule_time.is_some()
            && status.last_successful_time.is_some())
        .then_some(())
    })
    .await?;
    assert!(
        !jobs
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .any(|j| j.metadata.name.as_deref() == Some(name.as_str())),
        "the oldest Job {name} was pruned"
    );
    if let Some(out) = kubectl(&c, &["get", "cronjob", "tick"]).await? {
        let header: Vec<&str> = out
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(
            header,
            [
                "NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"
            ]
        );
        assert!(
            out.contains("* * * * *") && out.contains("<none>") && out.contains("False"),
            "{out}"
        );
    }
    cjs.patch(
        "tick",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await?;

    // Forbid: while a Job runs (3 s, three schedule minutes) no other starts.
    cjs.create(&PostParams::default(), &cronjob("slow", "Forbid", "3"))
        .await?;
    eventually(10, || async {
        (!jobs_of(&jobs, "slow").await.is_empty()).then_some(())
    })
    .await?;
    for _ in 0..10 {
        let running = jobs_of(&jobs, "slow")
            .await
            .into_iter()
            .filter(|j| condition(j, "Complete").is_none() && condition(j, "Failed").is_none())
            .count();
        assert!(running <= 1, "{running} Jobs run at once under Forbid");
        let active = cjs
            .get("slow")
            .await?
            .status
            .and_then(|s| s.active)
            .map_or(0, |a| a.len());
        assert!(active <= 1, "status.active: {active}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(jobs_of(&jobs, "slow").await.len(), 1, "a run was skipped");
    // When it ends, the next one starts.
    eventually(15, || async {
        (jobs_of(&jobs, "slow").await.len() >= 2).then_some(())
    })
    .await?;
    c.shutdown().await;
    Ok(())
}
