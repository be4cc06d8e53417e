//! What admitted commands are disrupting right now: each budget's record of the objects
//! it let commands take out of service, counted until the cache shows the change, the
//! executor settles the command, or [`IN_FLIGHT_TTL`] passes.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bosun_host::contract::ObjectRef;

use super::View;
use super::pod::{PodDoc, same_image, status_images};

/// How long an admitted disruption counts while the cache does not show it yet.
pub const IN_FLIGHT_TTL: Duration = Duration::from_secs(30);

/// Until when an admitted disruption counts, besides [`IN_FLIGHT_TTL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Until {
    /// Only the TTL (or [`Budget::settle`](super::Budget::settle)) ends it.
    Ttl,
    /// The cached pod reports these containers (name, image) running: from then on its
    /// own readiness tells whether it is available.
    Images(ObjectRef, Vec<(String, String)>),
    /// The cached pod shows itself not Ready.
    Unready(ObjectRef),
    /// The cache no longer holds the pod with this uid (it is gone, or was recreated
    /// under the same name): from then on the workload's size and the new pod's own
    /// readiness tell what is available.
    Gone(ObjectRef, String),
}

impl Until {
    /// The pod whose cached state ends the disruption, if one does.
    fn target(&self) -> Option<&ObjectRef> {
        match self {
            Until::Ttl => None,
            Until::Images(r, _) | Until::Unready(r) | Until::Gone(r, _) => Some(r),
        }
    }

    /// Whether the cached pod (its JSON, `None` when not cached) shows the disruption,
    /// so it no longer needs counting.
    fn shown(&self, pod: Option<&str>) -> bool {
        let pod = pod.and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok());
        match self {
            Until::Ttl => false,
            Until::Images(_, images) => pod.is_some_and(|p| {
                images.iter().all(|(name, image)| {
                    status_images(&p)
                        .iter()
                        .any(|(n, i)| n == name && same_image(i, image))
                })
            }),
            Until::Unready(_) => {
                pod.is_some_and(|p| !serde_json::from_value::<PodDoc>(p).is_ok_and(|d| d.ready()))
            }
            Until::Gone(_, uid) => {
                pod.is_none_or(|p| p.pointer("/metadata/uid").and_then(|u| u.as_str()) != Some(uid))
            }
        }
    }
}

/// One admitted disruption.
#[derive(Debug)]
struct Entry {
    at: Instant,
    until: Until,
    /// The cached pod last looked at (it did not show the disruption): the same text
    /// again is not parsed again.
    seen: Option<Arc<str>>,
}

/// Objects admitted for a disruption, by key, with when they were admitted.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    entries: Mutex<HashMap<String, Entry>>,
}

impl InFlight {
    /// The keys of the disruptions still counted: not expired, not shown by the cache.
    pub(super) fn live(&self, now: Instant, view: &dyn View) -> BTreeSet<String> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|_, e| {
            if now.saturating_duration_since(e.at) >= IN_FLIGHT_TTL {
                return false;
            }
            let Some(target) = e.until.target() else {
                return true;
            };
            let current = view.get(target);
            if let (Some(seen), Some(now)) = (&e.seen, &current)
                && Arc::ptr_eq(seen, now)
            {
                return true;
            }
            let shown = e.until.shown(current.as_deref());
            e.seen = current;
            !shown
        });
        entries.keys().cloned().collect()
    }

    /// Counts `key` from `now` until the TTL passes or it is removed.
    pub(super) fn insert(&self, key: String, now: Instant) {
        self.insert_until(key, now, Until::Ttl);
    }

    /// Counts `key` from `now` until `until` shows in the cache, the TTL passes, or it is
    /// removed.
    pub(super) fn insert_until(&self, key: String, now: Instant, until: Until) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.insert(
            key,
            Entry {
                at: now,
                until,
                seen: None,
            },
        );
    }

    /// Stops counting `key`.
    pub(super) fn remove(&self, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{FakeView, pod, pod_ref};
    use super::*;

    #[test]
    fn entries_expire_after_the_ttl() {
        let now = Instant::now();
        let view = FakeView::default();
        let in_flight = InFlight::default();
        in_flight.insert("Node/n1".into(), now);
        assert!(in_flight.live(now, &view).contains("Node/n1"));
        assert!(in_flight.live(now + IN_FLIGHT_TTL, &view).is_empty());
    }

    #[test]
    fn image_updates_end_when_the_cache_runs_the_new_images() {
        let now = Instant::now();
        let in_flight = InFlight::default();
        let until = Until::Images(pod_ref("web-0"), vec![("app".into(), "app:v2".into())]);
        in_flight.insert_until("Pod/default/web-0".into(), now, until);
        let old = FakeView::default().with(pod("web-0").image("app:v1").build());
        assert_eq!(in_flight.live(now, &old).len(), 1);
        // Runtimes report images fully qualified.
        let new = FakeView::default().with(pod("web-0").image("docker.io/library/app:v2").build());
        assert!(in_flight.live(now, &new).is_empty());
    }

    #[test]
    fn evictions_end_when_the_pod_is_gone_or_replaced() {
        let now = Instant::now();
        let in_flight = InFlight::default();
        let until = Until::Gone(pod_ref("web-0"), "uid-1".into());
        in_flight.insert_until("Pod/default/web-0".into(), now, until);
        let mut old = pod("web-0").build();
        old["metadata"]["uid"] = "uid-1".into();
        assert_eq!(in_flight.live(now, &FakeView::default().with(old)).len(), 1);
        let mut new = pod("web-0").not_ready().build();
        new["metadata"]["uid"] = "uid-2".into();
        assert!(
            in_flight
                .live(now, &FakeView::default().with(new))
                .is_empty()
        );
        let until = Until::Gone(pod_ref("web-0"), "uid-1".into());
        in_flight.insert_until("Pod/default/web-0".into(), now, until);
        assert!(in_flight.live(now, &FakeView::default()).is_empty());
    }

    #[test]
    fn gate_changes_end_when_the_cache_shows_the_pod_unready() {
        let now = Instant::now();
        let in_flight = InFlight::default();
        in_flight.insert_until(
            "Pod/default/web-0".into(),
            now,
            Until::Unready(pod_ref("web-0")),
        );
        let ready = FakeView::default().with(pod("web-0").build());
        assert_eq!(in_flight.live(now, &ready).len(), 1);
        in_flight.remove("Pod/default/web-0");
        assert!(in_flight.live(now, &ready).is_empty());
        in_flight.insert_until(
            "Pod/default/web-0".into(),
            now,
            Until::Unready(pod_ref("web-0")),
        );
        let unready = FakeView::default().with(pod("web-0").not_ready().build());
        assert!(in_flight.live(now, &unready).is_empty());
    }
}
