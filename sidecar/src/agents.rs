//! The pod-agent plugins a sidecar runs: verified bytes cached by digest, loaded through
//! the shared host library, swapped when the runtime assigns a new revision.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use bosun_host::contract::{ProbeKind, ProbeResult};
use bosun_host::host::Services;
use bosun_host::limits::Limits;
use bosun_host::load::{Source, Spec, Strategy, World};
use bosun_host::{Engine, Revision};

/// A plugin could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not the revision they claim to be.
    #[error("plugin {name}: bytes do not match digest {digest} (got {actual}); refused")]
    Digest {
        /// The plugin.
        name: String,
        /// The digest assigned.
        digest: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// The component is not a pod-agent.
    #[error(
        "plugin {name}: a {world:?} component cannot run in a sidecar; build it for the pod-agent world"
    )]
    World {
        /// The plugin.
        name: String,
        /// Its world.
        world: World,
    },
    /// The host refused it (compile, link, metadata, init).
    #[error(transparent)]
    Load(#[from] bosun_host::load::Error),
    /// The runtime's precompiled code was refused (another wasmtime build, settings or
    /// CPU).
    #[error("plugin {name}: {source}")]
    Precompiled {
        /// The plugin.
        name: String,
        /// Why.
        #[source]
        source: bosun_host::engine::Error,
    },
    /// The plugin cache is unusable.
    #[error("plugin cache {path}: {source}")]
    Cache {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What one plugin answered to a probe.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Answer {
    /// The plugin.
    pub plugin: String,
    /// Healthy or not.
    pub healthy: bool,
    /// Its message (or why the call failed).
    pub message: String,
}

/// The plugins of one sidecar.
pub struct Agents {
    engine: Engine,
    services: Services,
    limits: Limits,
    cache_dir: PathBuf,
    plugins: RwLock<HashMap<String, Arc<Revision>>>,
}

impl std::fmt::Debug for Agents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agents")
            .field("plugins", &self.held())
            .finish_non_exhaustive()
    }
}

impl Agents {
    /// Plugins served by `services`, with `limits` per call, cached under `cache_dir`.
    pub fn new(engine: Engine, services: Services, limits: Limits, cache_dir: PathBuf) -> Self {
        Agents {
            engine,
            services,
            limits,
            cache_dir,
            plugins: RwLock::default(),
        }
    }

    /// Runs one plugin call with the pod's HTTP requests clamped to its deadline.
    fn timed<R>(&self, call: impl FnOnce() -> R) -> R {
        crate::pod::within(Instant::now() + self.limits.deadline, call)
    }

    fn path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        // Digests come from the network: keep only hex characters in the file name.
        let safe: String = hex.chars().filter(char::is_ascii_hexdigit).collect();
        self.cache_dir.join(format!("{safe}.wasm"))
    }

    /// The cached bytes of `digest`, if present and intact (a corrupt file is removed).
    pub fn cached(&self, digest: &str) -> Option<Arc<[u8]>> {
        let path = self.path(digest);
        let bytes = std::fs::read(&path).ok()?;
        if bosun_link::digest(&bytes) == digest {
            Some(bytes.into())
        } else {
            tracing::warn!(file = %path.display(), "cached plugin does not match its digest; fetching it again");
            let _ = std::fs::remove_file(&path);
            None
        }
    }

    /// The key of this sidecar's engine: precompiled code from a runtime with the same key
    /// may be adopted.
    pub fn engine_key(&self) -> String {
        self.engine.artifact_key()
    }

    /// Whether compiled code for `digest` is already here (adopted or in the cache).
    pub fn has_compiled(&self, digest: &str) -> bool {
        self.engine
            .has_compiled(digest.strip_prefix("sha256:").unwrap_or(digest))
    }

    /// Adopts the runtime's precompiled code for the component of `digest` (checked by
    /// wasmtime against this engine before anything of it is used).
    pub fn adopt(&self, name: &str, digest: &str, code: &[u8]) -> Result<(), Error> {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.engine
            .adopt_precompiled(hex, code)
            .map_err(|source| Error::Precompiled {
                name: name.to_owned(),
                source,
            })
    }

    /// How the code of plugin `name` came to this sidecar: compiled here, read from the
    /// compiled-code cache, or shipped by the runtime.
    pub fn compiled(&self, name: &str) -> Option<bosun_host::engine::Compiled> {
        self.get(name).map(|r| r.info().compiled)
    }

    /// Verifies `bytes` against `digest` and keeps them in the cache.
    pub fn store(&self, name: &str, digest: &str, bytes: &[u8]) -> Result<(), Error> {
        let actual = bosun_link::digest(bytes);
        if actual != digest {
            return Err(Error::Digest {
                name: name.to_owned(),
                digest: digest.to_owned(),
                actual,
            });
        }
        let path = self.path(digest);
        let cache = |source| Error::Cache {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&self.cache_dir).map_err(cache)?;
        let tmp = path.with_extension("part");
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(cache)
    }

    /// Loads `bytes` as plugin `name` with `config`, calls its `on-start`, and makes it
    /// current (the previous revision, if any, is dropped after its calls finish).
    /// Returns the load time in microseconds.
    pub fn install(
        &self,
        name: &str,
        digest: &str,
        bytes: Arc<[u8]>,
        config: &str,
    ) -> Result<u64, Error> {
        let _span = tracing::info_span!("bosun.sidecar.install", plugin = name, digest = %bosun_host::host::log::short(digest)).entered();
        let source = Source {
            origin: format!("{name}@{}", bosun_host::host::log::short(digest)),
            bytes,
        };
        let actual = source.digest();
        if actual != digest {
            return Err(Error::Digest {
                name: name.to_owned(),
                digest: digest.to_owned(),
                actual,
            });
        }
        let spec = Spec {
            config: config.to_owned(),
            limits: self.limits.clone(),
            strategy: Strategy::default(),
            services: self.services.clone(),
        };
        let revision = Revision::load_named(&self.engine, &source, spec, name)?;
        if revision.info().world != World::PodAgent {
            return Err(Error::World {
                name: name.to_owned(),
                world: revision.info().world,
            });
        }
        if let Err(e) = self.timed(|| revision.on_start()) {
            // A failing on-start is the plugin's to report; it still serves probes.
            tracing::warn!(plugin = name, error = %e, "on-start failed");
        }
        let micros = revision.info().load_micros;
        self.plugins
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), Arc::new(revision));
        Ok(micros)
    }

    /// Whether `name` runs exactly `digest` with `config`.
    pub fn runs(&self, name: &str, digest: &str, config: &str) -> bool {
        self.get(name)
            .is_some_and(|r| r.digest() == digest && r.config() == config)
    }

    /// The config `name` was installed with.
    pub fn config_of(&self, name: &str) -> Option<String> {
        self.get(name).map(|r| r.config().to_owned())
    }

    fn get(&self, name: &str) -> Option<Arc<Revision>> {
        self.plugins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Stops and removes `name` (its `on-stop` runs).
    pub fn remove(&self, name: &str) {
        let removed = self
            .plugins
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        if let Some(r) = removed
            && let Err(e) = self.timed(|| r.on_stop())
        {
            tracing::warn!(plugin = name, error = %e, "on-stop failed");
        }
    }

    /// `(name, digest)` of every plugin running.
    pub fn held(&self) -> Vec<(String, String)> {
        let mut held: Vec<(String, String)> = self
            .plugins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(n, r)| (n.clone(), r.digest().to_owned()))
            .collect();
        held.sort();
        held
    }

    /// The call counters of every plugin running, by name.
    pub fn stats(&self) -> Vec<(String, bosun_host::stats::Stats)> {
        let mut stats: Vec<(String, bosun_host::stats::Stats)> = self
            .plugins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(n, r)| (n.clone(), r.stats()))
            .collect();
        stats.sort_by(|a, b| a.0.cmp(&b.0));
        stats
    }

    /// Asks every plugin; healthy when all are (and when there are none).
    pub fn probe(&self, kind: ProbeKind) -> Vec<Answer> {
        let plugins: Vec<(String, Arc<Revision>)> = {
            let p = self.plugins.read().unwrap_or_else(PoisonError::into_inner);
            p.iter().map(|(n, r)| (n.clone(), r.clone())).collect()
        };
        plugins
            .into_iter()
            .map(|(plugin, r)| match self.timed(|| r.probe(kind)) {
                Ok(ProbeResult { healthy, message }) => Answer {
                    plugin,
                    healthy,
                    message,
                },
                Err(e) => Answer {
                    plugin,
                    healthy: false,
                    message: format!("probe failed: {e}"),
                },
            })
            .collect()
    }

    /// Runs a command on `plugin`: the revision's digest and the plugin's answer.
    pub fn command(&self, plugin: &str, payload: &str) -> (String, Result<String, String>) {
        match self.get(plugin) {
            None => (
                String::new(),
                Err(format!("no pod-agent plugin {plugin:?} runs in this pod")),
            ),
            Some(r) => {
                let _span = tracing::info_span!("bosun.sidecar.command", plugin).entered();
                let result = self
                    .timed(|| r.on_command(payload))
                    .map_err(|e| e.to_string());
                (r.digest().to_owned(), result)
            }
        }
    }

    /// Runs every plugin's `on-stop` (the pod is terminating).
    pub fn stop_all(&self) {
        let names: Vec<String> = self.held().into_iter().map(|(n, _)| n).collect();
        for name in names {
            self.remove(&name);
        }
    }
}
