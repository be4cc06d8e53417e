//! Leader election on a coordination.k8s.io/v1 Lease: only the leader reconciles and
//! executes; a standby takes over once the leader's lease has expired.
//!
//! Leadership is fenced as client-go's `leaderelection` fences it, on the monotonic
//! clock only (wall clocks of two machines need not agree):
//! - the leader believes it leads until its *renew deadline*, 2/3 of the lease after
//!   the start of its last successful renewal; every Lease request has a timeout that
//!   ends no later than that deadline, so a hung request cannot keep it leading;
//! - a standby deems the lease expired a full lease after it last saw the Lease change
//!   (its `resourceVersion`), never by comparing the holder's `renewTime` with its own
//!   wall clock. The last third of the lease is the margin between the two;
//! - on clean shutdown the leader steps down, then clears `holderIdentity`, so a standby
//!   takes over at its next attempt instead of waiting for the lease to expire.
//!
//! The leader publishes `false` the moment its deadline passes; the command pipe reads
//! that before each execution (`Pipe::set_leading`).

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::LeaderElection;

/// The durations of an election, all derived from the lease duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a lease holds without renewal (`leaseSeconds`, at least 2 s).
    pub lease: Duration,
    /// How long after the start of its last successful renewal the leader still
    /// believes it leads: 2/3 of the lease (client-go's default ratio, 10 s of 15 s).
    pub renew_deadline: Duration,
    /// Time between two attempts to acquire or renew: 1/6 of the lease.
    pub retry: Duration,
    /// The longest one Lease request may take: 1/3 of the lease, and never past the
    /// renew deadline.
    pub request_timeout: Duration,
}

impl Timing {
    /// The timing of `config`'s election.
    pub fn of(config: &LeaderElection) -> Self {
        let lease = Duration::from_secs(config.lease_seconds.max(2));
        Timing {
            lease,
            renew_deadline: lease * 2 / 3,
            retry: lease / 6,
            request_timeout: lease / 3,
        }
    }
}

/// Runs the election until `stop` completes, publishing whether this runtime leads.
/// When stopped it publishes `false` first, then releases the lease if it holds it.
pub async fn run(
    client: Client,
    config: LeaderElection,
    identity: String,
    leading: watch::Sender<bool>,
    stop: impl Future<Output = ()>,
) {
    let span =
        tracing::info_span!("bosun.leader.elect", lease = %config.name, identity = %identity);
    let timing = Timing::of(&config);
    let mut elector = Elector {
        leases: Api::namespaced(client, &config.namespace),
        name: config.name.clone(),
        identity,
        timing,
        observed: None,
    };
    let publish = |lead: bool| {
        if *leading.borrow() != lead {
            tracing::info!(parent: &span, leading = lead, "leadership changed");
            let _ = leading.send(lead);
        }
    };
    // While leading: the instant this runtime stops believing it leads.
    let mut deadline: Option<Instant> = None;
    tokio::pin!(stop);
    loop {
        let started = Instant::now();
        let limit = deadline.map_or(started + timing.request_timeout, |d| {
            d.min(started + timing.request_timeout)
        });
        let attempt = tokio::select! {
            r = tokio::time::timeout_at(limit, elector.try_acquire_or_renew()) => r,
            () = &mut stop => break,
        };
        match attempt {
            Ok(Ok(true)) => deadline = Some(started + timing.renew_deadline),
            Ok(Ok(false)) => deadline = None,
            Ok(Err(e)) => tracing::warn!(parent: &span, error = %e, "lease request failed"),
            Err(_) => {
                tracing::warn!(parent: &span, timeout = ?limit - started, "lease request timed out")
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::warn!(parent: &span, "lease not renewed before the renew deadline; stepping down");
            deadline = None;
        }
        publish(deadline.is_some());
        let next = started + timing.retry;
        let wake = deadline.map_or(next, |d| d.min(next));
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = &mut stop => break,
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::warn!(parent: &span, "lease not renewed before the renew deadline; stepping down");
            deadline = None;
            publish(false);
        }
    }
    // Step down before releasing: once the lease is free a standby may act at once.
    publish(false);
    // Released even after a missed deadline: the lease may still name this runtime.
    match tokio::time::timeout(timing.request_timeout, elector.release()).await {
        Ok(Ok(true)) => tracing::info!(parent: &span, "lease released"),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => tracing::warn!(parent: &span, error = %e, "cannot release the lease"),
        Err(_) => tracing::warn!(parent: &span, "releasing the lease timed out"),
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// One runtime's side of the election.
struct Elector {
    leases: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    /// The Lease's `resourceVersion` when last read, and when that version was first
    /// seen (monotonic): the holder's lease runs from there.
    observed: Option<(String, Instant)>,
}

impl Elector {
    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.timing.lease.as_secs()).unwrap_or(i32::MAX)
    }

    /// Acquires the lease when it is free or expired, renews it when held: true when
    /// this runtime holds it afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let seconds = self.lease_seconds();
        let Some(mut lease) = self.leases.get_opt(&self.name).await? else {
            let mut lease: Lease = serde_json::from_value(json!({
                "metadata": { "name": self.name },
                "spec": { "holderIdentity": self.identity, "leaseDurationSeconds": seconds, "leaseTransitions": 0 },
            }))
            .map_err(kube::Error::SerdeError)?;
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.acquire_time = Some(now());
            spec.renew_time = Some(now());
            return match self.leases.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let seen = Instant::now();
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let seen_since = match &self.observed {
            Some((v, since)) if *v == version => *since,
            _ => seen,
        };
        self.observed = Some((version, seen_since));
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let held = Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(seconds)).unwrap_or(0),
        );
        let valid = !holder.is_empty() && seen < seen_since + held;
        if holder != self.identity && valid {
            return Ok(false);
        }
        if holder != self.identity {
            spec.acquire_time = Some(now());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.holder_identity = Some(self.identity.clone());
        }
        spec.renew_time = Some(now());
        spec.lease_duration_seconds = Some(seconds);
        // The update carries the resourceVersion we read: a competing writer gets 409.
        match self
            .leases
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Frees the lease if this runtime still holds it (client-go's `ReleaseOnCancel`):
    /// no holder, a one-second duration, renewed now. True when it was released.
    async fn release(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.leases.get_opt(&self.name).await? else {
            return Ok(false);
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now());
        match self
            .leases
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            // Someone else wrote it meanwhile: it is not ours to release any more.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            r => r.map(|_| true),
        }
    }
}

/// This process's default identity: hostname and process id.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "bosun".to_owned());
    format!("{host}-{}", std::process::id())
}

/// The label the leader's pod carries (`leaderElection.labelPod`).
pub const LEADER_LABEL: &str = "bosun.dev/leader";

/// Keeps [`LEADER_LABEL`] on this runtime's pod (`POD_NAME` in the service account's
/// namespace) while it leads, and off it otherwise (also at start: a restarted container
/// keeps its pod's labels). A failed patch is retried.
pub async fn label_pod(client: Client, mut leading: tokio::sync::watch::Receiver<bool>) {
    let span = tracing::info_span!("bosun.leader.label_pod");
    let (Some(pod), Some(ns)) = (
        std::env::var("POD_NAME").ok().filter(|p| !p.is_empty()),
        crate::webhook::pod_namespace(),
    ) else {
        tracing::warn!(parent: &span, "leaderElection.labelPod needs POD_NAME (downward API) and a service-account namespace; the pod is not labelled");
        return;
    };
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, &ns);
    let mut labelled: Option<bool> = None;
    loop {
        let lead = *leading.borrow();
        if labelled != Some(lead) {
            let value = if lead { json!("true") } else { json!(null) };
            let patch = json!({"metadata": {"labels": {LEADER_LABEL: value}}});
            match pods
                .patch(&pod, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(parent: &span, pod = %pod, leading = lead, "pod label updated");
                    labelled = Some(lead);
                }
                Err(e) => {
                    tracing::warn!(parent: &span, pod = %pod, error = %e, "cannot label this runtime's pod; retrying");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(if labelled == Some(lead) { 30 } else { 2 })) => {}
            r = leading.changed() => if r.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{Method, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};
    use serde_json::Value;

    use super::*;

    const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases";

    /// An API server that serves one namespace's Leases from memory, with
    /// optimistic concurrency on `resourceVersion`.
    #[derive(Default)]
    struct Leases {
        objects: Mutex<std::collections::HashMap<String, Value>>,
        version: AtomicU64,
    }

    /// One client's link to [`Leases`]: while `hang` is set its requests never answer.
    #[derive(Clone)]
    struct Link {
        server: Arc<Leases>,
        hang: Arc<AtomicBool>,
    }

    fn status(code: StatusCode, reason: &str) -> Response {
        let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": reason, "reason": reason, "code": code.as_u16()});
        (code, axum::Json(body)).into_response()
    }

    async fn serve(State(link): State<Link>, method: Method, uri: Uri, body: Bytes) -> Response {
        if link.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        let server = &link.server;
        let Some(rest) = uri.path().strip_prefix(LEASES) else {
            return status(StatusCode::NOT_FOUND, "NotFound");
        };
        let name = rest.trim_start_matches('/').to_owned();
        let mut objects = server.objects.lock().expect("lock");
        let body: Option<Value> = serde_json::from_slice(&body).ok();
        let stamp = |mut lease: Value| {
            let v = server.version.fetch_add(1, Ordering::SeqCst) + 1;
            lease["metadata"]["resourceVersion"] = json!(v.to_string());
            lease["metadata"]["namespace"] = json!("default");
            lease
        };
        match (method, body) {
            (Method::GET, _) => match objects.get(&name) {
                Some(lease) => axum::Json(lease.clone()).into_response(),
                None => status(StatusCode::NOT_FOUND, "NotFound"),
            },
            (Method::POST, Some(lease)) => {
                let name = lease["metadata"]["name"].as_str().unwrap_or("").to_owned();
                if objects.contains_key(&name) {
                    return status(StatusCode::CONFLICT, "AlreadyExists");
                }
                let lease = stamp(lease);
                objects.insert(name, lease.clone());
                (StatusCode::CREATED, axum::Json(lease)).into_response()
            }
            (Method::PUT, Some(lease)) => {
                let current = objects
                    .get(&name)
                    .map(|l| l["metadata"]["resourceVersion"].clone());
                if current != Some(lease["metadata"]["resourceVersion"].clone()) {
                    return status(StatusCode::CONFLICT, "Conflict");
                }
                let lease = stamp(lease);
                objects.insert(name, lease.clone());
                axum::Json(lease).into_response()
            }
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        }
    }

    impl Leases {
        /// A client of this server, and the switch that makes its requests hang.
        fn client(self: &Arc<Self>) -> (Client, Arc<AtomicBool>) {
            let hang = Arc::new(AtomicBool::new(false));
            let link = Link {
                server: self.clone(),
                hang: hang.clone(),
            };
            let router = Router::new().fallback(serve).with_state(link);
            (Client::new(router, "default"), hang)
        }

        fn holder(&self, name: &str) -> Option<String> {
            let objects = self.objects.lock().expect("lock");
            objects.get(name)?["spec"]["holderIdentity"]
                .as_str()
                .map(str::to_owned)
        }
    }

    fn config() -> LeaderElection {
        LeaderElection {
            enabled: true,
            lease_seconds: 15,
            ..Default::default()
        }
    }

    /// Starts `identity`'s election; it runs until `stop` completes.
    fn elect(
        client: Client,
        identity: &str,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(run(client, config(), identity.to_owned(), tx, stop));
        (rx, task)
    }

    /// When `rx` first reads `value`.
    fn when(mut rx: watch::Receiver<bool>, value: bool) -> tokio::task::JoinHandle<Instant> {
        tokio::spawn(async move {
            let _ = rx.wait_for(|l| *l == value).await;
            Instant::now()
        })
    }

    #[test]
    fn timing_follows_client_go_ratios() {
        let t = Timing::of(&config());
        assert_eq!(t.renew_deadline, Duration::from_secs(10));
        assert_eq!(t.request_timeout, Duration::from_secs(5));
        assert_eq!(t.retry, Duration::from_millis(2500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_whose_lease_requests_hang_steps_down_before_a_standby_takes_over() {
        let timing = Timing::of(&config());
        let server = Arc::new(Leases::default());
        let (a_client, a_hang) = server.client();
        let (b_client, _) = server.client();
        let (mut a, _a_task) = elect(a_client, "a", std::future::pending());
        a.wait_for(|l| *l).await.expect("a runs");
        let (b, _b_task) = elect(b_client, "b", std::future::pending());
        tokio::time::sleep(timing.lease * 4).await;
        assert!(*a.borrow(), "a keeps leading while it renews");
        assert!(!*b.borrow(), "b waits while a renews");

        // From now on every Lease request of a hangs, and never answers.
        let hung = Instant::now();
        a_hang.store(true, Ordering::SeqCst);
        let a_off = when(a.clone(), false);
        let b_on = when(b.clone(), true);
        let b_on = tokio::time::timeout(timing.lease * 4, b_on)
            .await
            .expect("b takes over")
            .expect("watch");
        assert!(
            a_off.is_finished(),
            "a still believed it led when b took over"
        );
        let a_off = a_off.await.expect("watch");
        assert!(
            a_off <= hung + timing.renew_deadline,
            "a stepped down {:?} after its requests hung",
            a_off - hung
        );
        assert!(
            b_on - a_off >= timing.lease - timing.renew_deadline,
            "b took over {:?} after a stepped down",
            b_on - a_off
        );
        assert_eq!(server.holder(&config().name).as_deref(), Some("b"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_leader_releases_the_lease_and_a_standby_takes_over_at_once() {
        let timing = Timing::of(&config());
        let server = Arc::new(Leases::default());
        let (a_client, _) = server.client();
        let (b_client, _) = server.client();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (mut a, a_task) = elect(a_client, "a", async {
            let _ = stopped.await;
        });
        a.wait_for(|l| *l).await.expect("a runs");
        let (b, _b_task) = elect(b_client, "b", std::future::pending());
        tokio::time::sleep(timing.lease * 2).await;
        assert!(!*b.borrow(), "b waits while a leads");

        let at = Instant::now();
        stop.send(()).expect("a runs");
        a_task.await.expect("a stops");
        assert!(!*a.borrow(), "a stepped down");
        assert_eq!(server.holder(&config().name), None, "the lease is free");
        let b_on = tokio::time::timeout(timing.lease * 2, when(b, true))
            .await
            .expect("b takes over")
            .expect("watch");
        assert!(
            b_on - at <= timing.retry,
            "b took over {:?} after a stopped, not at its next attempt",
            b_on - at
        );
    }
}
