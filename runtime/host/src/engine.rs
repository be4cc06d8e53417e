//! The wasm engine: Cranelift with epoch interruption and the pooling allocator, the
//! epoch ticker that enforces call deadlines, one linker per world, and the on-disk
//! cache of compiled code (a second load of the same bytes never recompiles).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};

use crate::bindings::{iface, pod_agent};
use crate::load::World;
use crate::store::StoreState;

/// How often the epoch advances: the resolution of call deadlines.
pub const TICK: Duration = Duration::from_millis(5);

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where compiled code is kept between runs; `None` keeps nothing.
    pub cache_dir: Option<PathBuf>,
    /// Instances that may exist at once (pooling allocator slots).
    pub max_instances: u32,
    /// The largest memory cap any plugin may be given.
    pub max_memory_bytes: usize,
    /// Use the pooling allocator (falls back to on-demand when it cannot reserve memory).
    pub pooling: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cache_dir: None,
            max_instances: 256,
            max_memory_bytes: 1 << 30,
            pooling: true,
        }
    }
}

/// An engine could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Wasmtime refused the configuration.
    #[error("wasm engine: {0}")]
    Engine(String),
    /// The compiled-code cache directory is unusable.
    #[error("compiled-code cache {path}: {source}")]
    Cache {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Whether a load compiled the component or read it from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compiled {
    /// Compiled now (and stored, when a cache is configured).
    Fresh,
    /// Read from the compiled-code cache.
    Cached,
}

struct Ticker(Arc<AtomicBool>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

struct Inner {
    engine: wasmtime::Engine,
    cache_dir: Option<PathBuf>,
    compat: String,
    max_memory_bytes: usize,
    controller: Linker<StoreState>,
    admission: Linker<StoreState>,
    pod_agent: Linker<StoreState>,
    _ticker: Ticker,
}

/// A shared, cheaply cloned wasm engine.
#[derive(Clone)]
pub struct Engine(Arc<Inner>);

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cache_dir", &self.0.cache_dir)
            .finish_non_exhaustive()
    }
}

fn wasmtime_config(config: &Config, pooling: bool) -> wasmtime::Config {
    let mut c = wasmtime::Config::new();
    c.epoch_interruption(true);
    c.wasm_component_model(true);
    if pooling {
        let n = config.max_instances.max(1);
        let mut p = wasmtime::PoolingAllocationConfig::default();
        p.total_component_instances(n)
            .total_core_instances(n * 8)
            .total_memories(n * 2)
            .total_tables(n * 8)
            .total_stacks(n)
            .max_core_instances_per_component(16)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_memory_size(config.max_memory_bytes)
            // A fresh instance per call would otherwise fault in every page its heap
            // touches again: keep the first MiB of a recycled slot resident (memset,
            // not madvise) so short calls reuse warm pages.
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(64 << 10);
        c.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(p));
    }
    c
}

impl Engine {
    /// Creates an engine and starts its epoch ticker.
    pub fn new(config: &Config) -> Result<Self, Error> {
        let engine = match wasmtime::Engine::new(&wasmtime_config(config, config.pooling)) {
            Ok(e) => e,
            Err(err) if config.pooling => {
                tracing::warn!(error = %err, "pooling allocator unavailable; using on-demand allocation");
                wasmtime::Engine::new(&wasmtime_config(config, false))
                    .map_err(|e| Error::Engine(e.to_string()))?
            }
            Err(err) => return Err(Error::Engine(err.to_string())),
        };
        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir).map_err(|source| Error::Cache {
                path: dir.clone(),
                source,
            })?;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let compat = format!("{:016x}", hasher.finish());

        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("bosun-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match weak.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| Error::Engine(format!("cannot start the epoch ticker: {e}")))?;

        let linkers = build_linkers(&engine).map_err(|e| Error::Engine(e.to_string()))?;
        Ok(Engine(Arc::new(Inner {
            engine,
            cache_dir: config.cache_dir.clone(),
            compat,
            max_memory_bytes: config.max_memory_bytes,
            controller: linkers.0,
            admission: linkers.1,
            pod_agent: linkers.2,
            _ticker: Ticker(stop),
        })))
    }

    /// The wasmtime engine.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.0.engine
    }

    /// The largest memory cap a plugin may be given on this engine.
    pub fn max_memory_bytes(&self) -> usize {
        self.0.max_memory_bytes
    }

    pub(crate) fn linker(&self, world: World) -> &Linker<StoreState> {
        match world {
            World::Controller => &self.0.controller,
            World::Admission => &self.0.admission,
            World::PodAgent => &self.0.pod_agent,
        }
    }

    fn cache_path(&self, digest_hex: &str) -> Option<PathBuf> {
        let dir = self.0.cache_dir.as_ref()?;
        Some(dir.join(format!("{digest_hex}-{}.cwasm", self.0.compat)))
    }

    /// Compiles `bytes`, or reads the compiled form from the cache.
    pub(crate) fn compile(
        &self,
        bytes: &[u8],
        digest_hex: &str,
    ) -> wasmtime::Result<(Component, Compiled)> {
        let _span = tracing::debug_span!("bosun.host.compile", digest = digest_hex).entered();
        let path = self.cache_path(digest_hex);
        if let Some(path) = path.as_deref().filter(|p| p.exists()) {
            match self.deserialize(path) {
                Ok(c) => return Ok((c, Compiled::Cached)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unusable compiled-code cache entry; recompiling")
                }
            }
        }
        let component = Component::new(&self.0.engine, bytes)?;
        if let Some(path) = path
            && let Err(e) = store_atomically(&path, &component.serialize()?)
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the compiled-code cache");
        }
        Ok((component, Compiled::Fresh))
    }

    fn deserialize(&self, path: &Path) -> wasmtime::Result<Component> {
        // Read into memory rather than map the file: a cache file truncated or rewritten
        // in place while the code runs must not fault the process.
        let bytes = std::fs::read(path)?;
        // SAFETY: entries are written only by `compile` above, atomically (a temporary
        // file, then a rename), under a name carrying the sha256 of the source bytes and
        // the engine's compatibility hash; wasmtime checks the header and version again.
        // The cache directory must be writable only by the runtime's user.
        #[expect(
            unsafe_code,
            reason = "loading precompiled code is unsafe by wasmtime's contract"
        )]
        unsafe {
            Component::deserialize(&self.0.engine, &bytes)
        }
    }
}

fn store_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

type Linkers = (Linker<StoreState>, Linker<StoreState>, Linker<StoreState>);

fn build_linkers(engine: &wasmtime::Engine) -> wasmtime::Result<Linkers> {
    let base = || -> wasmtime::Result<Linker<StoreState>> {
        let mut l = Linker::new(engine);
        // Plugins built against an older 0.1.x contract still link.
        l.allow_shadowing(false);
        wasmtime_wasi::p2::add_to_linker_sync(&mut l)?;
        iface::log::add_to_linker::<_, HasSelf<StoreState>>(&mut l, |s| s)?;
        iface::clock::add_to_linker::<_, HasSelf<StoreState>>(&mut l, |s| s)?;
        Ok(l)
    };
    let mut controller = base()?;
    iface::cache::add_to_linker::<_, HasSelf<StoreState>>(&mut controller, |s| s)?;
    iface::commands::add_to_linker::<_, HasSelf<StoreState>>(&mut controller, |s| s)?;
    let mut admission = base()?;
    iface::cache::add_to_linker::<_, HasSelf<StoreState>>(&mut admission, |s| s)?;
    let mut pod_agent = base()?;
    pod_agent::bosun::operator::pod::add_to_linker::<_, HasSelf<StoreState>>(
        &mut pod_agent,
        |s| s,
    )?;
    Ok((controller, admission, pod_agent))
}
