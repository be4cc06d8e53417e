//! The state of one plugin instance's store: WASI (sandboxed), the memory limiter, the
//! plugin's services and the current call.

use bosun_api::fields::{Fields, FieldsError};
use std::sync::{Arc, OnceLock};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::contract::{Level, ObjectRef};
use crate::engine::Engine;
use crate::host::clock::{WasiMonotonic, WasiWall};
use crate::host::stdio::Capture;
use crate::host::{CallInfo, Services};
use crate::limits::{Limits, MAX_TABLE_ELEMENTS};
use crate::metadata::Metadata;
use crate::stats::Counters;

/// What every instance of one revision shares.
pub(crate) struct Shared {
    pub name: Arc<str>,
    pub digest: Arc<str>,
    /// Set once the revision's `metadata` export has answered and validated.
    pub metadata: OnceLock<Metadata>,
    pub limits: Limits,
    pub services: Services,
    pub counters: Counters,
    /// Field lists of `cache.get-fields` already parsed: a plugin names the same few lists
    /// on every call, and parsing one costs as much as cutting a pod.
    pub fields: FieldLists,
}

/// The last few field lists a revision's calls named, parsed. At most [`FieldLists::KEPT`];
/// a new one replaces the oldest.
#[derive(Default)]
pub(crate) struct FieldLists(std::sync::Mutex<std::collections::VecDeque<(String, Arc<Fields>)>>);

impl FieldLists {
    const KEPT: usize = 8;

    /// The parsed form of `paths`, parsed now if it is not kept.
    pub fn get(&self, paths: String) -> Result<Arc<Fields>, FieldsError> {
        let mut kept = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, fields)) = kept.iter().find(|(p, _)| *p == paths) {
            return Ok(fields.clone());
        }
        let fields = Arc::new(Fields::parse_list(&paths)?);
        if kept.len() == Self::KEPT {
            kept.pop_front();
        }
        kept.push_back((paths, fields.clone()));
        Ok(fields)
    }
}

/// Per-call bookkeeping against the caps.
#[derive(Debug, Default)]
pub(crate) struct CallCounts {
    pub commands: u32,
    pub log_lines: u32,
    pub log_dropped: u32,
    pub state_sets: u32,
    /// Bytes the host copied into the guest (cache and state reads).
    pub read_bytes: usize,
}

/// Grants memory growth up to the plugin's cap, summed over all of the instance's linear
/// memories (a component may hold several), and remembers a refusal, so that the trap
/// that usually follows is reported as out-of-memory. Tables are capped the same way.
pub(crate) struct MemoryLimiter {
    max: usize,
    /// Bytes granted to all memories so far (memories never shrink).
    memory: usize,
    /// Elements granted to all tables so far.
    table_elements: usize,
    pub denied: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(max: usize) -> Self {
        MemoryLimiter {
            max,
            memory: 0,
            table_elements: 0,
            denied: false,
        }
    }
}

/// Grants `desired - current` more out of `total`, if it stays within `max`.
fn grow(total: &mut usize, current: usize, desired: usize, max: usize) -> bool {
    let after = total.saturating_add(desired.saturating_sub(current));
    let ok = after <= max;
    if ok {
        *total = after;
    }
    ok
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = grow(&mut self.memory, current, desired, self.max);
        self.denied |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(grow(
            &mut self.table_elements,
            current,
            desired,
            MAX_TABLE_ELEMENTS,
        ))
    }
}

pub(crate) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub shared: Arc<Shared>,
    pub call: CallInfo,
    pub counts: CallCounts,
    stdout: Capture,
    stderr: Capture,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl StoreState {
    /// Resets the per-call state before a call.
    pub fn begin_call(&mut self, key: Option<ObjectRef>) {
        self.call.key = key;
        self.counts = CallCounts::default();
        self.limiter.denied = false;
    }

    /// Forwards captured stdout/stderr to the log and reports what the caps dropped.
    pub fn end_call(&mut self) {
        for (capture, level, stream) in [
            (self.stdout.clone(), Level::Info, "stdout"),
            (self.stderr.clone(), Level::Warn, "stderr"),
        ] {
            let (lines, dropped) = capture.drain();
            for line in lines {
                self.write_log(level, format!("[{stream}] {line}"));
            }
            if dropped > 0 {
                self.shared.services.log.log(
                    &self.call,
                    Level::Warn,
                    &format!("[{stream}] {dropped} bytes over the per-call cap were dropped"),
                );
            }
        }
        if self.counts.log_dropped > 0 {
            let n = self.counts.log_dropped;
            self.shared.services.log.log(
                &self.call,
                Level::Warn,
                &format!(
                    "{n} log lines over the per-call cap of {} were dropped",
                    self.shared.limits.max_log_lines_per_call
                ),
            );
        }
    }
}

/// A new store for one instance of a revision: no filesystem, network, environment or
/// arguments; stdio captured; WASI clocks read the plugin's clock.
pub(crate) fn new_store(engine: &Engine, shared: &Arc<Shared>) -> Store<StoreState> {
    let stdio_cap = shared.limits.max_stdio_bytes;
    let (stdout, stderr) = (Capture::new(stdio_cap), Capture::new(stdio_cap));
    let clock = shared.services.clock.clone();
    let wasi = WasiCtxBuilder::new()
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .wall_clock(WasiWall(clock.clone()))
        .monotonic_clock(WasiMonotonic(clock))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    let state = StoreState {
        wasi,
        table: ResourceTable::new(),
        limiter: MemoryLimiter::new(shared.limits.memory_bytes),
        shared: shared.clone(),
        call: CallInfo {
            plugin: shared.name.clone(),
            revision: shared.digest.clone(),
            key: None,
        },
        counts: CallCounts::default(),
        stdout,
        stderr,
    };
    let mut store = Store::new(engine.wasmtime(), state);
    store.limiter(|s| &mut s.limiter);
    store.epoch_deadline_trap();
    store
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_capped_over_all_memories_together() {
        let mut l = MemoryLimiter::new(64 << 20);
        assert!(l.memory_growing(0, 40 << 20, None).expect("ok"));
        // A second memory of 40 MiB would be within the cap on its own.
        assert!(!l.memory_growing(0, 40 << 20, None).expect("ok"));
        assert!(l.denied);
        assert!(l.memory_growing(0, 24 << 20, None).expect("ok"));
        assert!(
            !l.memory_growing(24 << 20, (24 << 20) + 1, None)
                .expect("ok")
        );
    }

    #[test]
    fn table_elements_are_capped_over_all_tables_together() {
        let mut l = MemoryLimiter::new(0);
        assert!(l.table_growing(0, 60_000, None).expect("ok"));
        assert!(!l.table_growing(0, 60_000, None).expect("ok"));
        assert!(!l.denied, "a table is not memory");
    }
}
