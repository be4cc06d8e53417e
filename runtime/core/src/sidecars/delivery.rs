//! Pod-commands out, acks and outcomes back: commands taken from the command pipe are
//! journaled and queued per pod, sent in order to the pod's sidecar, sent again until
//! acknowledged, and finished by their outcome or by their time to live.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use bosun_link::{Command, Outcome, RuntimeMessage, runtime_message};

use super::{Pending, PodKey, Sidecars, now_ms};
use crate::pipe::PodDelivery;

impl Sidecars {
    /// Moves pod-commands from the command pipe into per-pod outboxes, sends them,
    /// resends the unacknowledged, expires the old, refreshes assignments.
    pub(super) async fn pump(self: Arc<Self>) {
        let mut last_assign = Instant::now() - Duration::from_secs(1);
        loop {
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            self.take_new();
            self.deliver();
            if last_assign.elapsed() >= Duration::from_millis(500) {
                last_assign = Instant::now();
                self.assign_all();
            }
        }
    }

    fn take_new(&self) {
        let new = self.pipe.take_all_pod_commands();
        if new.is_empty() {
            return;
        }
        let at = now_ms();
        {
            let mut journal = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
            for d in &new {
                journal.queued(d, at);
            }
            journal.sync();
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        for delivery in new {
            let key = (
                delivery.command.namespace.clone(),
                delivery.command.pod.clone(),
            );
            state.outbox.entry(key).or_default().push_back(Pending {
                delivery,
                queued_ms: at,
                sent: None,
                acked: false,
            });
        }
    }

    fn deliver(&self) {
        let now = now_ms();
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let mut expired = Vec::new();
        // A runtime that no longer leads sends nothing new: another may be acting.
        let leading = self.pipe.is_leading();
        let mut fenced = Vec::new();
        {
            let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let state = &mut *guard;
            for (key, queue) in &mut state.outbox {
                queue.retain(|p| {
                    let old = now.saturating_sub(p.queued_ms) > ttl_ms && !p.acked;
                    if old {
                        expired.push(p.delivery.clone());
                    }
                    !old
                });
                if !leading {
                    queue.retain(|p| {
                        if p.sent.is_none() {
                            fenced.push(p.delivery.clone());
                        }
                        p.sent.is_some()
                    });
                }
                let Some(conn) = state.conns.get(key) else {
                    continue;
                };
                for p in queue.iter_mut() {
                    let due = match p.sent {
                        None => true,
                        Some(at) => !p.acked && at.elapsed() >= self.resend,
                    };
                    if !due {
                        continue;
                    }
                    let message = RuntimeMessage {
                        body: Some(runtime_message::Body::Command(Command {
                            id: p.delivery.id,
                            plugin: p.delivery.command.plugin.clone(),
                            payload: p.delivery.command.payload.clone(),
                        })),
                    };
                    if conn.tx.try_send(Ok(message)).is_err() {
                        // Full or closed: try again on the next round, in order.
                        break;
                    }
                    p.sent = Some(Instant::now());
                }
            }
            state.outbox.retain(|_, q| !q.is_empty());
        }
        for d in fenced {
            self.finish(&d, "", Err(crate::pipe::NOT_LEADER.to_owned()));
        }
        for d in expired {
            self.finish(
                &d,
                "",
                Err(format!(
                    "expired: the sidecar of {}/{} did not take it within {} s",
                    d.command.namespace,
                    d.command.pod,
                    self.ttl.as_secs()
                )),
            );
        }
    }

    /// The sidecar of `key` has command `id`: it is not sent again.
    pub(super) fn acked(&self, key: &PodKey, id: u64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = state
            .outbox
            .get_mut(key)
            .and_then(|q| q.iter_mut().find(|p| p.delivery.id == id))
        {
            p.acked = true;
        }
    }

    /// The sidecar of `key` executed a command: it is finished with outcome `o`.
    pub(super) fn completed(&self, key: &PodKey, o: Outcome) {
        let delivery = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.outbox.get_mut(key).and_then(|q| {
                let i = q.iter().position(|p| p.delivery.id == o.id)?;
                q.remove(i).map(|p| p.delivery)
            })
        };
        // An outcome for an id already finished (a duplicate) changes nothing.
        if let Some(d) = delivery {
            let result = if o.ok { Ok(o.message) } else { Err(o.message) };
            self.finish(&d, &o.revision, result);
        }
    }

    fn finish(&self, delivery: &PodDelivery, revision: &str, result: Result<String, String>) {
        {
            let mut journal = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
            journal.done(delivery.id);
        }
        self.pipe.pod_command_done(delivery, revision, result);
    }
}
