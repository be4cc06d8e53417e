//! The per-plugin work queue: turns events into keys to reconcile.
//!
//! Like client-go's workqueue or kube-runtime's scheduler, with Bosun's rules:
//!
//! - a key waits at most once: more events for a waiting key are appended to its pending
//!   list (bounded, newest kept, consecutive duplicates collapsed);
//! - a key is never handed out twice at once: an event for a key being reconciled marks it
//!   dirty, and it is queued again as soon as its [`Item`] is [`done`](Queue::done);
//! - at most [`Config::concurrency`] items are out at a time;
//! - failures requeue with per-key exponential backoff and jitter;
//! - what a plugin asks for itself (a requeue-after, a retry after a failure) waits at
//!   least [`Config::min_requeue`] and takes a token from one bucket per queue
//!   ([`Config::rate`], [`Config::burst`]; like controller-runtime's default rate
//!   limiter, the later of the two delays wins), so a plugin answering every reconcile
//!   with `requeue-after-ms: 0` costs a bounded share of a core. Events from the
//!   cluster are not limited;
//! - an [`Item`] dropped without `done` counts as a failure, so a panicking worker cannot
//!   wedge its key.
//!
//! Time is tokio's clock, so tests run with paused time.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bosun_host::contract::EventKind;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Events kept per waiting key; older ones are dropped first. The plugin is
/// level-triggered, so the list is a hint, not a log.
pub const MAX_PENDING_EVENTS: usize = 32;

/// How a queue hands out work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Items out at once (a value of 0 is treated as 1).
    pub concurrency: usize,
    /// Delay after the first failure of a key; doubles with each further failure.
    pub backoff_base: Duration,
    /// Longest delay between retries of a failing key.
    pub backoff_max: Duration,
    /// Shortest requeue-after: a plugin asking for less (e.g. 0) waits this long.
    pub min_requeue: Duration,
    /// Requeues and retries per second the queue grants, over all its keys (a token
    /// bucket); 0 disables the limit.
    pub rate: u32,
    /// Requeues and retries granted at once before `rate` applies.
    pub burst: u32,
}

/// The default [`Config::min_requeue`].
pub const MIN_REQUEUE: Duration = Duration::from_millis(100);
/// The default [`Config::rate`].
pub const RATE: u32 = 50;
/// The default [`Config::burst`].
pub const BURST: u32 = 100;

impl Default for Config {
    fn default() -> Self {
        Config {
            concurrency: 4,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_secs(5 * 60),
            min_requeue: MIN_REQUEUE,
            rate: RATE,
            burst: BURST,
        }
    }
}

/// A token bucket that hands out reservations: each takes a token now, and the
/// reservation's time is when that token is (or was) available.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// When the next requeue may run, given the time it asked for.
    fn reserve(&mut self, config: &Config, now: Instant, wanted: Instant) -> Instant {
        if config.rate == 0 {
            return wanted;
        }
        let rate = f64::from(config.rate);
        let burst = f64::from(config.burst.max(1));
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            return wanted;
        }
        // Far in the future at worst: a backlog of reservations is bounded by the keys.
        let wait = Duration::try_from_secs_f64(-self.tokens / rate)
            .unwrap_or(Duration::from_secs(24 * 3600));
        wanted.max(later(now, wait))
    }
}

/// How a reconcile ended, given back to the queue with [`Queue::done`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done; the key leaves the queue (unless new events arrived meanwhile) and its
    /// failure count is reset.
    Ok,
    /// Done, call again after this delay (the plugin's requeue-after). Resets the failure
    /// count: the reconcile itself succeeded.
    RequeueAfter(Duration),
    /// Failed: retry with exponential backoff.
    Failed,
}

/// A key handed out by [`Queue::next`]. Give it back with [`Queue::done`]; dropping it
/// instead counts as [`Outcome::Failed`].
pub struct Item<K: Clone + Eq + Hash + Send + Sync + 'static> {
    /// The key to reconcile.
    pub key: K,
    /// What happened to it since the last reconcile, oldest first (never empty).
    pub events: Vec<EventKind>,
    /// Failures of this key in a row before this delivery (0 on a first try).
    pub attempt: u32,
    queue: Option<Arc<Inner<K>>>,
}

impl<K: Clone + Eq + Hash + Send + Sync + std::fmt::Debug + 'static> std::fmt::Debug for Item<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item")
            .field("key", &self.key)
            .field("events", &self.events)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl<K: Clone + Eq + Hash + Send + Sync + 'static> Drop for Item<K> {
    fn drop(&mut self) {
        if let Some(inner) = self.queue.take() {
            tracing::warn!(
                attempt = self.attempt,
                "work item dropped without done: retrying"
            );
            inner.finish(&self.key, Outcome::Failed);
        }
    }
}

/// A work queue of keys of type `K`. Cheap to clone; clones share the queue.
pub struct Queue<K: Clone + Eq + Hash + Send + Sync + 'static> {
    inner: Arc<Inner<K>>,
}

impl<K: Clone + Eq + Hash + Send + Sync + 'static> Clone for Queue<K> {
    fn clone(&self) -> Self {
        Queue {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: Clone + Eq + Hash + Send + Sync + 'static> std::fmt::Debug for Queue<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("len", &self.len())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

struct Inner<K> {
    config: Config,
    state: Mutex<State<K>>,
    changed: Notify,
}

struct State<K> {
    entries: HashMap<K, Entry>,
    ready: VecDeque<K>,
    /// Keys waiting for a time, by (due time, sequence number).
    delayed: BTreeMap<(Instant, u64), K>,
    seq: u64,
    in_flight: usize,
    shutdown: bool,
    /// Tokens for requeues and retries.
    bucket: Bucket,
}

struct Entry {
    /// Events for the next delivery.
    events: Vec<EventKind>,
    /// Failures in a row.
    failures: u32,
    status: Status,
}

enum Status {
    Ready,
    Delayed {
        at: Instant,
        seq: u64,
    },
    /// Handed out; `again` is the earliest time it must be queued after `done`.
    InFlight {
        again: Option<Instant>,
    },
}

fn push_event(events: &mut Vec<EventKind>, event: EventKind) {
    if events.last() == Some(&event) {
        return;
    }
    if events.len() >= MAX_PENDING_EVENTS {
        events.remove(0);
    }
    events.push(event);
}

impl<K: Clone + Eq + Hash + Send + Sync + 'static> Queue<K> {
    /// An empty queue.
    pub fn new(config: Config) -> Self {
        let burst = f64::from(config.burst.max(1));
        Queue {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State {
                    entries: HashMap::new(),
                    ready: VecDeque::new(),
                    delayed: BTreeMap::new(),
                    seq: 0,
                    in_flight: 0,
                    shutdown: false,
                    bucket: Bucket {
                        tokens: burst,
                        at: Instant::now(),
                    },
                }),
                changed: Notify::new(),
            }),
        }
    }

    /// The queue's configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Queues `key` now because of `event`. A key waiting for a later time (a backoff or a
    /// requeue-after) is moved forward: a new event means the object changed. Ignored after
    /// [`shutdown`](Self::shutdown).
    pub fn add(&self, key: K, event: EventKind) {
        self.inner.schedule(key, Instant::now(), event);
    }

    /// Queues `key` after `delay`. If the key is already due sooner, the sooner time is
    /// kept; the event is recorded either way.
    pub fn add_after(&self, key: K, delay: Duration, event: EventKind) {
        self.inner
            .schedule(key, later(Instant::now(), delay), event);
    }

    /// Waits for a key that is due while fewer than `concurrency` items are out, and hands
    /// it out. Returns `None` once [`shutdown`](Self::shutdown) was called and no key is
    /// ready (delayed keys are dropped at shutdown).
    pub async fn next(&self) -> Option<Item<K>> {
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            // Register before looking, so a change between the look and the wait wakes us.
            changed.as_mut().enable();
            let wake_at = {
                let mut state = self.inner.lock();
                let now = Instant::now();
                state.promote_due(now);
                if state.in_flight < self.inner.config.concurrency.max(1)
                    && let Some((key, events, attempt)) = state.pop_ready()
                {
                    return Some(Item {
                        key,
                        events,
                        attempt,
                        queue: Some(Arc::clone(&self.inner)),
                    });
                }
                if state.shutdown && state.ready.is_empty() {
                    return None;
                }
                state.delayed.keys().next().map(|(at, _)| *at)
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        () = &mut changed => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// Gives a handed-out item back. Dirty keys (events arrived while it was out) are
    /// queued again at once; otherwise `outcome` decides. The item must come from this
    /// queue; it always releases its slot in the queue it came from.
    pub fn done(&self, mut item: Item<K>, outcome: Outcome) {
        if let Some(inner) = item.queue.take() {
            debug_assert!(Arc::ptr_eq(&inner, &self.inner), "item from another queue");
            inner.finish(&item.key, outcome);
        }
    }

    /// Keys waiting: ready now or delayed.
    pub fn len(&self) -> usize {
        let state = self.inner.lock();
        state.ready.len() + state.delayed.len()
    }

    /// Whether no key is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Items handed out and not yet done.
    pub fn in_flight(&self) -> usize {
        self.inner.lock().in_flight
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.lock().shutdown
    }

    /// Stops the queue: further adds are ignored, delayed keys are dropped, and
    /// [`next`](Self::next) returns `None` once the keys ready now are handed out. Items
    /// still out may be given back; they are not queued again.
    pub fn shutdown(&self) {
        {
            let mut state = self.inner.lock();
            state.shutdown = true;
            let delayed = std::mem::take(&mut state.delayed);
            for key in delayed.into_values() {
                state.entries.remove(&key);
            }
        }
        self.inner.changed.notify_waiters();
    }
}

impl<K: Clone + Eq + Hash + Send + Sync + 'static> Inner<K> {
    fn lock(&self) -> MutexGuard<'_, State<K>> {
        // The state stays consistent between statements that could panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn schedule(&self, key: K, at: Instant, event: EventKind) {
        {
            let mut state = self.lock();
            if state.shutdown {
                return;
            }
            state.schedule(key, at, event, Instant::now());
        }
        self.changed.notify_waiters();
    }

    fn finish(&self, key: &K, outcome: Outcome) {
        {
            let mut state = self.lock();
            state.in_flight = state.in_flight.saturating_sub(1);
            let now = Instant::now();
            let shutdown = state.shutdown;
            let Some(entry) = state.entries.get_mut(key) else {
                return;
            };
            let again = match entry.status {
                Status::InFlight { again } => again,
                // Not ours to finish (cannot happen: an item is the only handle).
                Status::Ready | Status::Delayed { .. } => return,
            };
            let requeue = match outcome {
                Outcome::Ok => {
                    entry.failures = 0;
                    None
                }
                Outcome::RequeueAfter(delay) => {
                    entry.failures = 0;
                    push_event(&mut entry.events, EventKind::Requeued);
                    Some(later(now, delay.max(self.config.min_requeue)))
                }
                Outcome::Failed => {
                    let delay = backoff(&self.config, entry.failures);
                    entry.failures = entry.failures.saturating_add(1);
                    push_event(&mut entry.events, EventKind::Requeued);
                    Some(later(now, delay))
                }
            };
            let requeue = requeue.map(|at| state.bucket.reserve(&self.config, now, at));
            let at = match (again, requeue) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match at {
                Some(at) if !shutdown => state.place(key.clone(), at, now),
                _ => {
                    state.entries.remove(key);
                }
            }
        }
        self.changed.notify_waiters();
    }
}

impl<K: Clone + Eq + Hash> State<K> {
    fn schedule(&mut self, key: K, at: Instant, event: EventKind, now: Instant) {
        match self.entries.get_mut(&key) {
            Some(entry) => {
                push_event(&mut entry.events, event);
                match entry.status {
                    Status::Ready => {}
                    Status::InFlight { ref mut again } => {
                        *again = Some(again.map_or(at, |t| t.min(at)));
                    }
                    Status::Delayed { at: old, seq } => {
                        if at < old {
                            self.delayed.remove(&(old, seq));
                            self.place(key, at, now);
                        }
                    }
                }
            }
            None => {
                self.entries.insert(
                    key.clone(),
                    Entry {
                        events: vec![event],
                        failures: 0,
                        status: Status::Ready,
                    },
                );
                self.place(key, at, now);
            }
        }
    }

    /// Puts an existing entry in the ready list or the delayed map.
    fn place(&mut self, key: K, at: Instant, now: Instant) {
        let status = if at <= now {
            self.ready.push_back(key.clone());
            Status::Ready
        } else {
            self.seq += 1;
            let seq = self.seq;
            self.delayed.insert((at, seq), key.clone());
            Status::Delayed { at, seq }
        };
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.status = status;
        }
    }

    fn promote_due(&mut self, now: Instant) {
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            if let Some(e) = self.entries.get_mut(&key) {
                e.status = Status::Ready;
            }
            self.ready.push_back(key);
        }
    }

    fn pop_ready(&mut self) -> Option<(K, Vec<EventKind>, u32)> {
        while let Some(key) = self.ready.pop_front() {
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            entry.status = Status::InFlight { again: None };
            let mut events = std::mem::take(&mut entry.events);
            if events.is_empty() {
                events.push(EventKind::Requeued);
            }
            let attempt = entry.failures;
            self.in_flight += 1;
            return Some((key, events, attempt));
        }
        None
    }
}

/// `now + delay`, saturating far in the future (a plugin may ask for any delay).
fn later(now: Instant, delay: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(delay.min(FAR))
        .unwrap_or_else(|| now + Duration::from_secs(24 * 3600))
}

/// The delay before retry number `failures + 1`: `base * 2^failures`, capped at `max`,
/// with ±20% jitter (never above `max`).
fn backoff(config: &Config, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.min(31));
    let exp = config
        .backoff_base
        .checked_mul(factor)
        .unwrap_or(config.backoff_max)
        .min(config.backoff_max);
    let jitter = 0.8 + 0.4 * fastrand::f64();
    exp.mul_f64(jitter).min(config.backoff_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(concurrency: usize) -> Queue<&'static str> {
        Queue::new(Config {
            concurrency,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(100),
            min_requeue: Duration::ZERO,
            rate: 0,
            burst: 1,
        })
    }

    /// Reconciles of keys that always ask to be called again after `asked`, in `window`.
    async fn requeue_loop(
        config: Config,
        keys: &[&'static str],
        asked: Duration,
        window: Duration,
    ) -> usize {
        let q = Queue::new(config);
        for &k in keys {
            q.add(k, EventKind::Added);
        }
        let end = Instant::now() + window;
        let mut n = 0;
        while let Ok(Some(item)) = tokio::time::timeout_at(end, q.next()).await {
            n += 1;
            q.done(item, Outcome::RequeueAfter(asked));
        }
        n
    }

    #[tokio::test(start_paused = true)]
    async fn requeue_after_zero_waits_the_floor() {
        let config = Config {
            rate: 0,
            ..Config::default()
        };
        let n = requeue_loop(config, &["a"], Duration::ZERO, Duration::from_millis(9_950)).await;
        // One at once, then one per 100 ms.
        assert_eq!(n, 100, "{n} reconciles in 9.95 s");
    }

    #[tokio::test(start_paused = true)]
    async fn requeues_of_many_keys_are_held_to_the_rate() {
        let keys: Vec<&'static str> = (0..1000)
            .map(|i| &*Box::leak(format!("k{i}").into_boxed_str()))
            .collect();
        let n = requeue_loop(
            Config::default(),
            &keys,
            Duration::ZERO,
            Duration::from_secs(10),
        )
        .await;
        // The first round (events) is free; then the burst, then 50 a second.
        let bound = 1000 + BURST as usize + 10 * RATE as usize;
        assert!(
            n <= bound && n >= bound - 10,
            "{n} reconciles in 10 s, expected about {bound}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn longer_requeues_are_not_delayed_by_the_bucket() {
        let n = requeue_loop(
            Config::default(),
            &["a", "b"],
            Duration::from_secs(1),
            Duration::from_millis(10_500),
        )
        .await;
        assert_eq!(n, 2 * 11);
    }

    async fn next(q: &Queue<&'static str>) -> Item<&'static str> {
        q.next().await.expect("an item")
    }

    /// Whether `next` yields an item within `within` (time is paused, so this is exact).
    async fn yields_within(q: &Queue<&'static str>, within: Duration) -> bool {
        tokio::time::timeout(within, q.next()).await.is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_one_key_is_one_item_with_coalesced_events() {
        let q = queue(4);
        q.add("a", EventKind::Added);
        for _ in 0..1000 {
            q.add("a", EventKind::Modified);
        }
        q.add("a", EventKind::Deleted);
        assert_eq!(q.len(), 1);
        let item = next(&q).await;
        assert_eq!(item.key, "a");
        assert_eq!(
            item.events,
            [EventKind::Added, EventKind::Modified, EventKind::Deleted]
        );
        assert_eq!(item.attempt, 0);
        q.done(item, Outcome::Ok);
        assert!(q.is_empty());
        assert!(!yields_within(&q, Duration::from_secs(60)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn pending_events_are_bounded_and_keep_the_newest() {
        let q = queue(1);
        for i in 0..100 {
            let event = if i % 2 == 0 {
                EventKind::Modified
            } else {
                EventKind::Resync
            };
            q.add("a", event);
        }
        q.add("a", EventKind::Deleted);
        let item = next(&q).await;
        assert_eq!(item.events.len(), MAX_PENDING_EVENTS);
        assert_eq!(item.events.last(), Some(&EventKind::Deleted));
        q.done(item, Outcome::Ok);
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_in_flight_is_delivered_again_only_after_done() {
        let q = queue(4);
        q.add("a", EventKind::Added);
        let first = next(&q).await;
        q.add("a", EventKind::Modified);
        q.add("a", EventKind::Modified);
        assert!(!yields_within(&q, Duration::from_secs(60)).await);
        assert_eq!(q.in_flight(), 1);
        q.done(first, Outcome::Ok);
        let second = next(&q).await;
        assert_eq!(second.key, "a");
        assert_eq!(second.events, [EventKind::Modified]);
        q.done(second, Outcome::Ok);
        assert_eq!((q.len(), q.in_flight()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_bound_is_honoured() {
        let q = queue(2);
        for key in ["a", "b", "c"] {
            q.add(key, EventKind::Added);
        }
        let a = next(&q).await;
        let b = next(&q).await;
        assert_eq!(q.in_flight(), 2);
        assert!(!yields_within(&q, Duration::from_secs(60)).await);
        assert_eq!(q.len(), 1);
        q.done(a, Outcome::Ok);
        let c = next(&q).await;
        assert_eq!(c.key, "c");
        q.done(b, Outcome::Ok);
        q.done(c, Outcome::Ok);
        assert_eq!(q.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_next_is_woken_by_done() {
        let q = queue(1);
        q.add("a", EventKind::Added);
        q.add("b", EventKind::Added);
        let a = next(&q).await;
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        q.done(a, Outcome::Ok);
        let b = waiter.await.expect("joined").expect("an item");
        assert_eq!(b.key, "b");
        q.done(b, Outcome::Ok);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_up_to_the_cap() {
        let q = queue(1);
        q.add("a", EventKind::Added);
        let mut item = next(&q).await;
        let mut delays = Vec::new();
        for _ in 0..6 {
            q.done(item, Outcome::Failed);
            let start = Instant::now();
            item = next(&q).await;
            delays.push(start.elapsed());
            assert_eq!(item.events, [EventKind::Requeued]);
        }
        assert_eq!(item.attempt, 6);
        // 10, 20, 40, 80 ms (±20%), then capped at 100 ms (jitter only downwards).
        for (n, delay) in delays.iter().take(4).enumerate() {
            let expected = 10.0 * f64::from(1u32 << n);
            let ms = delay.as_secs_f64() * 1000.0;
            assert!(
                (expected * 0.8..=expected * 1.2).contains(&ms),
                "retry {n}: {ms} ms, expected about {expected} ms"
            );
        }
        for delay in &delays[4..] {
            let ms = delay.as_secs_f64() * 1000.0;
            assert!((80.0..=100.0).contains(&ms), "capped retry took {ms} ms");
        }
        q.done(item, Outcome::Ok);
        // Ok resets the failure count.
        q.add("a", EventKind::Modified);
        let item = next(&q).await;
        assert_eq!(item.attempt, 0);
        q.done(item, Outcome::Failed);
        let start = Instant::now();
        let item = next(&q).await;
        assert!(start.elapsed() <= Duration::from_millis(12));
        q.done(item, Outcome::Ok);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_item_counts_as_failed() {
        let q = queue(1);
        q.add("a", EventKind::Added);
        drop(next(&q).await);
        assert_eq!(q.in_flight(), 0);
        let item = next(&q).await;
        assert_eq!((item.key, item.attempt), ("a", 1));
        q.done(item, Outcome::Ok);
    }

    #[tokio::test(start_paused = true)]
    async fn requeue_after_fires_at_the_time() {
        let q = queue(1);
        q.add("a", EventKind::Added);
        let item = next(&q).await;
        q.done(item, Outcome::RequeueAfter(Duration::from_secs(30)));
        assert_eq!(q.len(), 1);
        let start = Instant::now();
        let item = next(&q).await;
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        assert_eq!(item.events, [EventKind::Requeued]);
        q.done(item, Outcome::Ok);
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_keeps_the_sooner_time() {
        let q = queue(1);
        let start = Instant::now();
        q.add_after("a", Duration::from_secs(10), EventKind::Resync);
        q.add_after("a", Duration::from_secs(60), EventKind::Requeued);
        q.add_after("a", Duration::from_secs(5), EventKind::Resync);
        assert_eq!(q.len(), 1);
        let item = next(&q).await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(
            item.events,
            [EventKind::Resync, EventKind::Requeued, EventKind::Resync]
        );
        q.done(item, Outcome::Ok);
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_moves_a_backing_off_key_forward() {
        let q = queue(1);
        q.add("a", EventKind::Added);
        let item = next(&q).await;
        q.done(item, Outcome::RequeueAfter(Duration::from_secs(300)));
        let start = Instant::now();
        q.add("a", EventKind::Modified);
        let item = next(&q).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(item.events, [EventKind::Requeued, EventKind::Modified]);
        q.done(item, Outcome::Ok);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_next_after_ready_keys() {
        let q = queue(4);
        q.add("a", EventKind::Added);
        q.add_after("b", Duration::from_secs(10), EventKind::Added);
        let waiter = tokio::spawn({
            let q = q.clone();
            async move {
                let mut keys = Vec::new();
                while let Some(item) = q.next().await {
                    keys.push(item.key);
                    q.done(item, Outcome::Ok);
                }
                keys
            }
        });
        tokio::task::yield_now().await;
        q.shutdown();
        q.add("c", EventKind::Added);
        let keys = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("next() ended")
            .expect("joined");
        assert_eq!(keys, ["a"]);
        assert!(q.next().await.is_none());
    }
}
