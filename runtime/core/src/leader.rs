//! Leader election on a coordination.k8s.io/v1 Lease: only the leader reconciles and
//! executes; a standby takes over once the leader's lease has expired.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::sync::watch;

use crate::config::LeaderElection;

/// Runs the election forever, publishing whether this runtime leads.
pub async fn run(
    client: Client,
    config: LeaderElection,
    identity: String,
    leading: watch::Sender<bool>,
) {
    let span =
        tracing::info_span!("bosun.leader.elect", lease = %config.name, identity = %identity);
    let leases: Api<Lease> = Api::namespaced(client, &config.namespace);
    let duration = Duration::from_secs(config.lease_seconds.max(2));
    let period = duration / 3;
    loop {
        let lead = match try_acquire(&leases, &config, &identity, duration).await {
            Ok(lead) => lead,
            Err(e) => {
                tracing::warn!(parent: &span, error = %e, "lease request failed");
                // Without a renewal we cannot be sure we still lead once the lease would
                // have expired; step down early rather than risk two leaders.
                false
            }
        };
        if *leading.borrow() != lead {
            tracing::info!(parent: &span, leading = lead, "leadership changed");
            let _ = leading.send(lead);
        }
        tokio::time::sleep(period).await;
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

async fn try_acquire(
    leases: &Api<Lease>,
    config: &LeaderElection,
    identity: &str,
    duration: Duration,
) -> Result<bool, kube::Error> {
    let seconds = i32::try_from(duration.as_secs()).unwrap_or(i32::MAX);
    let Some(mut lease) = leases.get_opt(&config.name).await? else {
        let lease: Lease = serde_json::from_value(json!({
            "metadata": { "name": config.name, "namespace": config.namespace },
            "spec": { "holderIdentity": identity, "leaseDurationSeconds": seconds, "leaseTransitions": 0 },
        }))
        .map_err(kube::Error::SerdeError)?;
        let mut lease = lease;
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.acquire_time = Some(now());
        spec.renew_time = Some(now());
        return match leases.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let expired = spec.renew_time.as_ref().is_none_or(|t| {
        let held = Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(seconds)).unwrap_or(0),
        );
        let age = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
        age.as_secs_f64() > held.as_secs_f64()
    });
    if holder != identity && !expired && !holder.is_empty() {
        return Ok(false);
    }
    if holder != identity {
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        spec.holder_identity = Some(identity.to_owned());
    }
    spec.renew_time = Some(now());
    spec.lease_duration_seconds = Some(seconds);
    // The update carries the resourceVersion we read: a competing writer gets 409.
    match leases
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// This process's default identity: hostname and process id.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "bosun".to_owned());
    format!("{host}-{}", std::process::id())
}
