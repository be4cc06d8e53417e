//! The wasm engine: Cranelift with epoch interruption and the pooling allocator, the
//! epoch ticker that enforces call deadlines, one linker per world, and the on-disk
//! cache of compiled code (a second load of the same bytes never recompiles).
//!
//! Without the `cranelift` feature the engine cannot compile: it runs code another
//! engine compiled and shipped ([`Engine::precompiled`] there, [`Engine::adopt_precompiled`]
//! here), which is how a sidecar built without a compiler runs its plugins.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};

use crate::bindings::{iface, pod_agent};
use crate::load::World;
use crate::store::StoreState;

/// The wasmtime version this crate is built with (pinned in the workspace's Cargo.toml;
/// a test keeps the two equal). Precompiled code loads only into the same version.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// At most this many adopted components wait in memory for the load that takes them;
/// the oldest goes first.
const MAX_ADOPTED: usize = 32;

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

/// An engine could not be set up, or precompiled code could not be made or adopted.
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
    /// The component could not be compiled for shipping.
    #[error("cannot precompile sha256:{digest}: {message}")]
    Precompile {
        /// The component's digest (hex).
        digest: String,
        /// Wasmtime's reason.
        message: String,
    },
    /// Precompiled code was refused: not code, or made by another wasmtime build, with
    /// other settings, or for CPU features this machine lacks.
    #[error("precompiled code for sha256:{digest} refused: {message}")]
    Refused {
        /// The component's digest (hex).
        digest: String,
        /// Wasmtime's reason.
        message: String,
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
    /// Compiled by another engine and shipped here ([`Engine::adopt_precompiled`]).
    Shipped,
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
    /// Components adopted from precompiled code, by digest, oldest first.
    adopted: Mutex<Vec<(String, Component)>>,
    /// The engine that makes code for other machines, and its cache name, made on first
    /// use ([`Engine::precompiled`]).
    shipping: std::sync::OnceLock<Result<(wasmtime::Engine, String), String>>,
    config: Config,
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
    if std::env::var_os("BOSUN_PERFMAP").is_some() {
        c.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
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
        let compat = compat_of(&engine);

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
            adopted: Mutex::default(),
            shipping: std::sync::OnceLock::new(),
            config: config.clone(),
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

    /// The compiled-code cache's file for a component compiled by an engine whose settings
    /// `compat` names.
    fn cache_path_for(&self, digest_hex: &str, compat: &str) -> Option<PathBuf> {
        let dir = self.0.cache_dir.as_ref()?;
        Some(dir.join(format!("{digest_hex}-{compat}.cwasm")))
    }

    fn cache_path(&self, digest_hex: &str) -> Option<PathBuf> {
        self.cache_path_for(digest_hex, &self.0.compat)
    }

    /// Whether this engine can compile (built with the `cranelift` feature). One that
    /// cannot loads only code shipped to it ([`Engine::adopt_precompiled`]) or already in
    /// its compiled-code cache.
    pub fn can_compile(&self) -> bool {
        cfg!(feature = "cranelift")
    }

    /// Names the engines that can load each other's precompiled code: the same wasmtime
    /// version for the same architecture and OS. It is a first filter, not the proof:
    /// wasmtime checks the code's settings and CPU features again when it is adopted.
    pub fn artifact_key(&self) -> String {
        format!(
            "wasmtime-{WASMTIME_VERSION}/{}-{}",
            std::env::consts::ARCH,
            std::env::consts::OS
        )
    }

    /// The compiled form of component `bytes` (digest `digest_hex`), serialized for an
    /// engine with the same [`artifact_key`](Self::artifact_key) on another machine: made
    /// with this engine's settings for the architecture's baseline CPU rather than this
    /// machine's (whose features a sidecar's node may lack, and wasmtime would refuse the
    /// code there), and kept in the compiled-code cache.
    pub fn precompiled(&self, bytes: &[u8], digest_hex: &str) -> Result<Vec<u8>, Error> {
        let _span = tracing::debug_span!("bosun.host.precompiled", digest = digest_hex).entered();
        let failed = |message: String| Error::Precompile {
            digest: digest_hex.to_owned(),
            message,
        };
        let (engine, compat) = self.shipping().map_err(failed)?;
        let path = self.cache_path_for(digest_hex, &format!("{compat}-baseline"));
        if let Some(path) = &path
            && let Ok(code) = std::fs::read(path)
            && wasmtime::Engine::detect_precompiled(&code) == Some(wasmtime::Precompiled::Component)
        {
            return Ok(code);
        }
        let code = precompile_now(engine, bytes).map_err(|e| failed(format!("{e:#}")))?;
        if let Some(path) = &path
            && let Err(e) = store_atomically(path, &code)
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the compiled-code cache");
        }
        Ok(code)
    }

    /// The engine [`precompiled`](Self::precompiled) compiles with: this one's settings,
    /// an explicit target (so no CPU features are taken from this machine), on-demand
    /// allocation (it only compiles).
    fn shipping(&self) -> Result<(&wasmtime::Engine, &str), String> {
        let made = self.0.shipping.get_or_init(|| {
            let triple = match std::env::consts::OS {
                "linux" => format!("{}-unknown-linux-gnu", std::env::consts::ARCH),
                "macos" => format!("{}-apple-darwin", std::env::consts::ARCH),
                os => return Err(format!("no baseline target for {os}")),
            };
            let mut c = wasmtime_config(&self.0.config, false);
            set_target(&mut c, &triple).map_err(|e| format!("{e:#}"))?;
            let engine = wasmtime::Engine::new(&c).map_err(|e| format!("{e:#}"))?;
            let compat = compat_of(&engine);
            Ok((engine, compat))
        });
        match made {
            Ok((engine, compat)) => Ok((engine, compat.as_str())),
            Err(e) => Err(e.clone()),
        }
    }

    /// Adopts `code`, the precompiled form of the component of digest `digest_hex` that an
    /// engine with the same [`artifact_key`](Self::artifact_key) made: wasmtime checks its
    /// version, target, settings and the CPU features it needs before anything of it is
    /// used, and refuses it otherwise. A later load of that component uses it instead of
    /// compiling; it is also written to the compiled-code cache, so a restart finds it.
    ///
    /// The caller vouches for `code`: it is native code, not sandboxed wasm. The sidecar
    /// takes it only from the runtime, over the link its CA authenticates.
    pub fn adopt_precompiled(&self, digest_hex: &str, code: &[u8]) -> Result<(), Error> {
        let _span = tracing::debug_span!("bosun.host.adopt", digest = digest_hex).entered();
        let refused = |message: String| Error::Refused {
            digest: digest_hex.to_owned(),
            message,
        };
        if wasmtime::Engine::detect_precompiled(code) != Some(wasmtime::Precompiled::Component) {
            return Err(refused("not a precompiled component".to_owned()));
        }
        // SAFETY: `code` comes from the caller's trusted source (the contract above), and
        // wasmtime checks the header, version, target, settings and CPU features before
        // any of it runs. It is read from memory we own, not mapped from a file.
        #[expect(
            unsafe_code,
            reason = "loading precompiled code is unsafe by wasmtime's contract"
        )]
        let component = unsafe { Component::deserialize(&self.0.engine, code) }
            .map_err(|e| refused(format!("{e:#}")))?;
        if let Some(path) = self.cache_path(digest_hex)
            && let Err(e) = store_atomically(&path, code)
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the compiled-code cache");
        }
        let mut adopted = self
            .0
            .adopted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        adopted.retain(|(d, _)| d != digest_hex);
        if adopted.len() == MAX_ADOPTED {
            adopted.remove(0);
        }
        adopted.push((digest_hex.to_owned(), component));
        Ok(())
    }

    /// Whether compiled code for the component of digest `digest_hex` is here: adopted, or
    /// in the compiled-code cache.
    pub fn has_compiled(&self, digest_hex: &str) -> bool {
        self.0
            .adopted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|(d, _)| d == digest_hex)
            || self.cache_path(digest_hex).is_some_and(|p| p.exists())
    }

    /// Compiles `bytes`, or takes the compiled form shipped here or kept in the cache.
    pub(crate) fn compile(
        &self,
        bytes: &[u8],
        digest_hex: &str,
    ) -> wasmtime::Result<(Component, Compiled)> {
        let _span = tracing::debug_span!("bosun.host.compile", digest = digest_hex).entered();
        // Taken, not kept: the revision holds it from now on, and a later load reads the
        // compiled-code cache `adopt_precompiled` wrote.
        let adopted = {
            let mut adopted = self
                .0
                .adopted
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let at = adopted.iter().position(|(d, _)| d == digest_hex);
            at.map(|i| adopted.remove(i).1)
        };
        if let Some(component) = adopted {
            return Ok((component, Compiled::Shipped));
        }
        let path = self.cache_path(digest_hex);
        if let Some(path) = path.as_deref().filter(|p| p.exists()) {
            match self.deserialize(path) {
                Ok(c) => return Ok((c, Compiled::Cached)),
                Err(e) => {
                    // Removed, so that `has_compiled` no longer counts it and shipped code
                    // is asked for again.
                    tracing::warn!(path = %path.display(), error = %e, "unusable compiled-code cache entry; removed, recompiling");
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let component = compile_now(&self.0.engine, bytes, digest_hex)?;
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
        // SAFETY: entries are written only by `compile` and `adopt_precompiled` above,
        // atomically (a temporary file, then a rename), under a name carrying the sha256
        // of the source bytes and the engine's compatibility hash; wasmtime checks the
        // header, version and settings again.
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

/// The compiled-code cache's name for this engine's settings.
#[cfg(feature = "cranelift")]
fn compat_of(engine: &wasmtime::Engine) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Without a compiler wasmtime has no settings hash: entries are named by version, and
/// wasmtime's own check refuses an entry it cannot run when it is read.
#[cfg(not(feature = "cranelift"))]
fn compat_of(_: &wasmtime::Engine) -> String {
    format!("shipped-{WASMTIME_VERSION}")
}

#[cfg(feature = "cranelift")]
fn set_target(c: &mut wasmtime::Config, triple: &str) -> wasmtime::Result<()> {
    c.target(triple).map(|_| ())
}

#[cfg(not(feature = "cranelift"))]
fn set_target(_: &mut wasmtime::Config, _: &str) -> wasmtime::Result<()> {
    Ok(())
}

#[cfg(feature = "cranelift")]
fn precompile_now(engine: &wasmtime::Engine, bytes: &[u8]) -> wasmtime::Result<Vec<u8>> {
    engine.precompile_component(bytes)
}

#[cfg(not(feature = "cranelift"))]
fn precompile_now(_: &wasmtime::Engine, _: &[u8]) -> wasmtime::Result<Vec<u8>> {
    wasmtime::bail!(
        "this build cannot compile WebAssembly (it was built without the `cranelift` feature)"
    )
}

#[cfg(feature = "cranelift")]
fn compile_now(engine: &wasmtime::Engine, bytes: &[u8], _: &str) -> wasmtime::Result<Component> {
    Component::new(engine, bytes)
}

#[cfg(not(feature = "cranelift"))]
fn compile_now(_: &wasmtime::Engine, _: &[u8], digest_hex: &str) -> wasmtime::Result<Component> {
    wasmtime::bail!(
        "this build cannot compile WebAssembly (it was built without the `cranelift` feature) \
         and has no precompiled code for sha256:{digest_hex}: it runs only code its runtime \
         compiled and shipped, which needs the same wasmtime {WASMTIME_VERSION} build"
    )
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
