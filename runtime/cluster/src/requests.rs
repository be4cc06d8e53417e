//! Counts of the API requests the server answered, by verb: what a benchmark reports as
//! "API calls made" (fault-injection admin endpoints are not counted).

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::Method;

/// Live counters, shared by the request handler.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    reads: AtomicU64,
    watches: AtomicU64,
    creates: AtomicU64,
    updates: AtomicU64,
    patches: AtomicU64,
    deletes: AtomicU64,
}

impl Counter {
    /// Counts one request; `query` tells a watch from a read.
    pub(crate) fn count(&self, method: &Method, query: Option<&str>) {
        let watch =
            query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
        let counter = match *method {
            Method::GET if watch => &self.watches,
            Method::POST => &self.creates,
            Method::PUT => &self.updates,
            Method::PATCH => &self.patches,
            Method::DELETE => &self.deletes,
            _ => &self.reads,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub(crate) fn snapshot(&self) -> Requests {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Requests {
            reads: get(&self.reads),
            watches: get(&self.watches),
            creates: get(&self.creates),
            updates: get(&self.updates),
            patches: get(&self.patches),
            deletes: get(&self.deletes),
        }
    }
}

/// API requests answered, by kind of verb.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    /// GET, HEAD and OPTIONS that are not watches (get, list, discovery).
    pub reads: u64,
    /// Watches opened.
    pub watches: u64,
    /// POST: creates, evictions.
    pub creates: u64,
    /// PUT.
    pub updates: u64,
    /// PATCH.
    pub patches: u64,
    /// DELETE.
    pub deletes: u64,
}

impl Requests {
    /// Requests that change something.
    pub fn writes(&self) -> u64 {
        self.creates + self.updates + self.patches + self.deletes
    }

    /// Every request.
    pub fn total(&self) -> u64 {
        self.reads + self.watches + self.writes()
    }

    /// What was answered since `earlier`.
    pub fn since(&self, earlier: &Requests) -> Requests {
        Requests {
            reads: self.reads.saturating_sub(earlier.reads),
            watches: self.watches.saturating_sub(earlier.watches),
            creates: self.creates.saturating_sub(earlier.creates),
            updates: self.updates.saturating_sub(earlier.updates),
            patches: self.patches.saturating_sub(earlier.patches),
            deletes: self.deletes.saturating_sub(earlier.deletes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_told_apart_and_watches_are_not_reads() {
        let c = Counter::default();
        c.count(&Method::GET, Some("labelSelector=a%3Db"));
        c.count(&Method::GET, Some("watch=true&resourceVersion=5"));
        c.count(&Method::GET, None);
        c.count(&Method::PATCH, None);
        c.count(&Method::POST, None);
        c.count(&Method::DELETE, None);
        let s = c.snapshot();
        assert_eq!((s.reads, s.watches, s.writes(), s.total()), (2, 1, 3, 6));
        let later = Counter::default();
        later.count(&Method::PUT, None);
        assert_eq!(later.snapshot().since(&Requests::default()).updates, 1);
    }
}
