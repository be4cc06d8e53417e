//! A reconcile call's request and outcome.

use std::time::Duration;

use crate::{CommandId, ObjectRef};

/// What happened to an object since the plugin last reconciled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The object appeared (first seen, or created).
    Added,
    /// The object changed.
    Modified,
    /// The object is gone; the cache returns its last known state during this call.
    Deleted,
    /// Periodic resync: nothing changed, the host asks the plugin to re-check.
    Resync,
    /// The plugin asked for this call (requeue-after, or a retry after an error).
    Requeued,
}

/// What became of a submitted command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Accepted by the guardrails, not executed yet.
    Pending,
    /// Applied to the cluster (or delivered and acknowledged by a sidecar).
    Executed,
    /// Passed the guardrails but not executed: the plugin runs in dry-run.
    DryRun,
    /// Stopped by a guardrail; the message names which and why.
    Refused,
    /// Executed and failed; the message carries the error.
    Failed,
}

/// The outcome of a command the plugin submitted earlier for the same key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandOutcome {
    /// The id `submit` returned.
    pub id: CommandId,
    /// What became of it.
    pub verdict: Verdict,
    /// Why, for `Refused` and `Failed`.
    pub message: String,
}

/// One reconcile call: the key, what happened to it, and what became of the commands this
/// plugin submitted for it before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    target: ObjectRef,
    events: Vec<EventKind>,
    outcomes: Vec<CommandOutcome>,
    attempt: u32,
}

impl Request {
    /// A first call for `target` with no events (for tests; the host builds the real ones).
    pub fn new(target: ObjectRef) -> Self {
        Self {
            target,
            events: Vec::new(),
            outcomes: Vec::new(),
            attempt: 0,
        }
    }

    /// Adds an event.
    #[must_use]
    pub fn with_event(mut self, event: EventKind) -> Self {
        self.events.push(event);
        self
    }

    /// Adds a command outcome.
    #[must_use]
    pub fn with_outcome(mut self, outcome: CommandOutcome) -> Self {
        self.outcomes.push(outcome);
        self
    }

    /// Sets the attempt number.
    #[must_use]
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// The object to reconcile.
    pub fn target(&self) -> &ObjectRef {
        &self.target
    }

    /// Events coalesced since the last call for this key, oldest first.
    pub fn events(&self) -> &[EventKind] {
        &self.events
    }

    /// Outcomes of earlier commands not reported yet, oldest first.
    pub fn outcomes(&self) -> &[CommandOutcome] {
        &self.outcomes
    }

    /// 0 on a first call; n after n consecutive failed calls for this key.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether the object is gone: the latest event is [`EventKind::Deleted`].
    pub fn is_deleted(&self) -> bool {
        self.events.last() == Some(&EventKind::Deleted)
    }
}

/// What a reconcile call asks of the host afterwards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    requeue_after: Option<Duration>,
}

impl Outcome {
    /// Nothing more to do until the next event.
    pub fn done() -> Self {
        Self::default()
    }

    /// Call again for this key after `delay`, even without events.
    pub fn requeue_after(delay: Duration) -> Self {
        Self {
            requeue_after: Some(delay),
        }
    }

    /// The requested delay, if any.
    pub fn requeue_delay(&self) -> Option<Duration> {
        self.requeue_after
    }

    /// The requested delay in whole milliseconds (saturating), as the host receives it.
    pub fn requeue_after_ms(&self) -> Option<u64> {
        self.requeue_after
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_means_last_event_is_deleted() {
        let pod = ObjectRef::new("v1", "Pod").namespaced("ns").named("a");
        let req = Request::new(pod.clone())
            .with_event(EventKind::Modified)
            .with_event(EventKind::Deleted);
        assert!(req.is_deleted());
        assert_eq!(req.target(), &pod);
        let recreated = req.clone().with_event(EventKind::Added);
        assert!(!recreated.is_deleted());
        assert!(!Request::new(pod).is_deleted());
    }

    #[test]
    fn outcomes_in_milliseconds() {
        assert_eq!(Outcome::done().requeue_after_ms(), None);
        assert_eq!(
            Outcome::requeue_after(Duration::from_millis(1500)).requeue_after_ms(),
            Some(1500)
        );
        assert_eq!(
            Outcome::requeue_after(Duration::MAX).requeue_after_ms(),
            Some(u64::MAX)
        );
    }
}
