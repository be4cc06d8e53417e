//! The state of one plugin instance's store: WASI (sandboxed), the memory limiter, the
//! plugin's services and the current call.

use std::sync::{Arc, OnceLock};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::contract::{Level, ObjectRef};
use crate::engine::Engine;
use crate::host::clock::{WasiMonotonic, WasiWall};
use crate::host::stdio::Capture;
use crate::host::{CallInfo, Services};
use crate::limits::Limits;
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
}

/// Per-call bookkeeping against the caps.
#[derive(Debug, Default)]
pub(crate) struct CallCounts {
    pub commands: u32,
    pub log_lines: u32,
    pub log_dropped: u32,
}

/// Grants memory growth up to the plugin's cap and remembers a refusal, so that the
/// trap that usually follows is reported as out-of-memory.
pub(crate) struct MemoryLimiter {
    max: usize,
    pub denied: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.max;
        self.denied |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
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
        limiter: MemoryLimiter {
            max: shared.limits.memory_bytes,
            denied: false,
        },
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
