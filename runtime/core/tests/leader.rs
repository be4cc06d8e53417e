//! Leader election end to end on the embedded cluster: a leader whose Lease requests hang
//! stops executing before a standby takes over, and a leader that shuts down hands over
//! at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bosun_host::contract::Verdict;
use bosun_runtime::{Config, Runtime};
use bosun_test_support::embedded::{Env, source};
use bosun_test_support::eventually;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

fn election(env: &Env, name: &str, lease_seconds: u64) -> Config {
    let mut c = env.config(name);
    c.leader_election.enabled = true;
    c.leader_election.lease_seconds = lease_seconds;
    c.leader_election.identity = Some(name.to_owned());
    c
}

/// A link to the API server whose Lease requests never answer while `hang` is set.
#[derive(Clone)]
struct Link {
    client: kube::Client,
    hang: Arc<AtomicBool>,
}

async fn forward(State(link): State<Link>, request: Request) -> Response {
    if link.hang.load(Ordering::SeqCst) && request.uri().path().contains("/leases") {
        std::future::pending::<()>().await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return axum::http::StatusCode::BAD_REQUEST.into_response();
    };
    let request = axum::http::Request::from_parts(parts, kube::client::Body::from(bytes.to_vec()));
    match link.client.send(request).await {
        Ok(response) => response.map(Body::new),
        Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// A client of `env`'s cluster, and the switch that makes its Lease requests hang.
fn hanging_client(env: &Env) -> (kube::Client, Arc<AtomicBool>) {
    let hang = Arc::new(AtomicBool::new(false));
    let link = Link {
        client: env.client.clone(),
        hang: hang.clone(),
    };
    let router = axum::Router::new().fallback(forward).with_state(link);
    (kube::Client::new(router, "default"), hang)
}

async fn pod(pods: &Api<Pod>, name: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "app:v1"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Times (ms since the epoch) at which `rt`'s executed commands were audited.
fn executed_at(rt: &Runtime) -> Vec<u64> {
    rt.audit().flush().expect("flush");
    bosun_runtime::audit::read(rt.audit().path())
        .expect("audit")
        .into_iter()
        .filter(|r| r.verdict == Verdict::Executed)
        .map(|r| r.time_ms)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_requests_hang_stops_executing_before_a_standby_takes_over() {
    let env = Env::start(1).await;
    let (client, hang) = hanging_client(&env);
    let a = Runtime::start_with(election(&env, "a", 6), client, env.logs.clone())
        .await
        .expect("a starts");
    eventually("a leads", Duration::from_secs(10), || async {
        a.is_leader()
    })
    .await;
    let b = env.runtime(election(&env, "b", 6)).await;
    for rt in [&a, &b] {
        rt.install(&source(bosun_test_artifacts::ZONE_LABELER), "{}")
            .expect("zone-labeler");
    }
    // A steady stream of pods: whichever runtime leads labels each one.
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let stream = {
        let pods = pods.clone();
        tokio::spawn(async move {
            for n in 0.. {
                pod(&pods, &format!("web-{n}")).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    eventually("a executes", Duration::from_secs(20), || async {
        !executed_at(&a).is_empty()
    })
    .await;
    assert!(!b.is_leader());

    hang.store(true, Ordering::SeqCst);
    let hung = Instant::now();
    let (mut a_off, mut b_on) = (None, None);
    while b_on.is_none() && hung.elapsed() < Duration::from_secs(30) {
        if a_off.is_none() && !a.is_leader() {
            a_off = Some(now_ms());
        }
        if b.is_leader() {
            b_on = Some(now_ms());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let b_on = b_on.expect("b takes over");
    let a_off = a_off.expect("a stepped down before b took over");
    assert!(a_off < b_on, "a stepped down at {a_off}, b led from {b_on}");
    eventually("b executes", Duration::from_secs(20), || async {
        executed_at(&b).iter().any(|&t| t > b_on)
    })
    .await;
    stream.abort();
    let late: Vec<u64> = executed_at(&a).into_iter().filter(|&t| t >= b_on).collect();
    assert!(
        late.is_empty(),
        "a executed {} commands after b took over",
        late.len()
    );
    assert!(!a.is_leader(), "a cannot renew: it never leads again");
    hang.store(false, Ordering::SeqCst);
    b.shutdown().await;
    a.shutdown().await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_shuts_down_releases_the_lease_and_a_standby_takes_over_at_once() {
    let env = Env::start(1).await;
    // A long lease: waiting for it to expire would take 30 s.
    let a = env.runtime(election(&env, "a", 30)).await;
    eventually("a leads", Duration::from_secs(10), || async {
        a.is_leader()
    })
    .await;
    let b = env.runtime(election(&env, "b", 30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!b.is_leader());
    let stopped = Instant::now();
    a.shutdown().await;
    assert!(!a.is_leader(), "a stepped down");
    // b's next attempt (every 5 s with this lease) finds the lease free.
    eventually("b takes over", Duration::from_secs(12), || async {
        b.is_leader()
    })
    .await;
    assert!(
        stopped.elapsed() < Duration::from_secs(12),
        "takeover took {:?}",
        stopped.elapsed()
    );
    b.shutdown().await;
    env.cluster.shutdown().await;
}
