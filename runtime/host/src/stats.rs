//! Per-revision counters: what the runtime's metrics and status read.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters of one revision.
        #[derive(Debug, Default)]
        pub(crate) struct Counters { $(pub $name: AtomicU64,)* }

        /// A snapshot of one revision's counters.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct Stats { $($(#[$doc])* pub $name: u64,)* }

        impl Counters {
            pub(crate) fn snapshot(&self) -> Stats {
                Stats { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Calls made (any export).
    calls,
    /// Reconcile calls (the samples a canary analysis compares).
    reconciles,
    /// Calls the plugin answered with an error of its own.
    errors,
    /// Calls that trapped (panics, unreachable, host faults).
    traps,
    /// Calls stopped at their deadline.
    timeouts,
    /// Calls that ran out of memory.
    out_of_memory,
    /// Calls stopped for exceeding a per-call cap.
    limit_exceeded,
    /// Instances created.
    instances,
    /// Instances that could not be created (a failing start function, out of memory).
    instantiate_failures,
    /// Commands submitted.
    commands_submitted,
    /// Commands refused (by the host or the embedder's pipe).
    commands_refused,
    /// Cache reads of kinds the plugin did not declare.
    undeclared_reads,
    /// Log lines dropped over the per-call cap.
    log_lines_dropped,
}
