//! Turning bytes into a serving revision: check that they are a component, compile (or
//! read the compiled cache), find the world, link the imports, ask for metadata,
//! validate it, and initialise with the plugin's config.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::engine::{Compiled, Engine};
use crate::host::Services;
use crate::limits::Limits;

pub use bosun_api::World;

/// How instances of a revision are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Strategy {
    /// A new instance (and `init`) for every call: full isolation between calls.
    Fresh,
    /// Instances are kept and reused, then recycled after `recycle_after` calls or any
    /// trap. For guests whose start-up is costly (Go, JavaScript).
    Warm {
        /// Calls an instance serves before it is replaced.
        recycle_after: u32,
        /// Idle instances kept.
        max_idle: u32,
    },
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy::Warm {
            recycle_after: 10_000,
            max_idle: 8,
        }
    }
}

/// What to load: the bytes and where they came from (a path, a URL, a label).
#[derive(Debug, Clone)]
pub struct Source {
    /// Where the bytes came from, for messages.
    pub origin: String,
    /// The component.
    pub bytes: Arc<[u8]>,
}

impl Source {
    /// Reads a file.
    pub fn file(path: &std::path::Path) -> std::io::Result<Self> {
        Ok(Source {
            origin: path.display().to_string(),
            bytes: std::fs::read(path)?.into(),
        })
    }

    /// `sha256:<hex>` of the bytes: the revision's name.
    pub fn digest(&self) -> String {
        digest(&self.bytes)
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// How to run what is loaded.
#[derive(Debug, Clone)]
pub struct Spec {
    /// JSON handed to `init`.
    pub config: String,
    /// Per-call limits.
    pub limits: Limits,
    /// Instance reuse.
    pub strategy: Strategy,
    /// What the imports are served by.
    pub services: Services,
}

impl Spec {
    /// Defaults with `services`.
    pub fn new(services: Services) -> Self {
        Spec {
            config: "{}".to_owned(),
            limits: Limits::default(),
            strategy: Strategy::default(),
            services,
        }
    }
}

/// Why a load failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Cause {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Read(String),
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly file (it does not start with \\0asm)")]
    NotWasm,
    /// A core module was given where a component is needed.
    #[error(
        "this is a core wasm module, not a component: build with `--target wasm32-wasip2` (Rust) or adapt it with `bosun plugin build`"
    )]
    CoreModule,
    /// Wasmtime could not compile it.
    #[error("cannot compile: {0}")]
    Compile(String),
    /// Its exports match no Bosun world.
    #[error(
        "exports [{exports}] match no Bosun world: a controller exports metadata, init and reconcile; an admission plugin metadata, init and review; a pod-agent metadata, init, on-start, probe, on-command and on-stop"
    )]
    UnknownWorld {
        /// What it exports.
        exports: String,
    },
    /// It imports something the host does not provide.
    #[error(
        "imports `{import}`, which a {world} plugin is not given (plugins get bosun:operator@0.1 and WASI without filesystem or network)"
    )]
    UnsupportedImport {
        /// The world it was linked as.
        world: World,
        /// The import.
        import: String,
    },
    /// Its exports do not have the world's types.
    #[error("does not implement the {world} world: {message}")]
    WrongWorld {
        /// The world it was checked against.
        world: World,
        /// Wasmtime's explanation.
        message: String,
    },
    /// The `metadata` export failed or returned invalid metadata.
    #[error("invalid metadata: {0}")]
    Metadata(String),
    /// The config is not valid JSON.
    #[error("config is not valid JSON: {0}")]
    InvalidConfig(String),
    /// The limits asked for exceed what the engine allows.
    #[error("memory cap of {asked} bytes exceeds the engine's maximum of {max}")]
    Limits {
        /// The cap asked for.
        asked: usize,
        /// The engine's maximum.
        max: usize,
    },
    /// `init` failed (an error, a trap, a timeout).
    #[error("init failed: {0}")]
    Init(String),
    /// A plugin of another name was expected.
    #[error("plugin is named {actual:?} in its metadata, but {expected:?} was expected")]
    NameMismatch {
        /// The name expected.
        expected: String,
        /// The name in the metadata.
        actual: String,
    },
}

/// A failed load: which plugin, from where, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin {plugin} ({origin}): {cause}")]
pub struct Error {
    /// The plugin's name, as far as it is known (`?` before its metadata answered).
    pub plugin: String,
    /// Where the bytes came from.
    pub origin: String,
    /// Why.
    pub cause: Cause,
}

/// A component compiled and checked against its world, not yet instantiated.
pub(crate) struct Checked {
    pub component: Component,
    pub world: World,
    pub compiled: Compiled,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// Checks the bytes' header, compiles them and finds their world.
pub(crate) fn check(engine: &Engine, bytes: &[u8], digest: &str) -> Result<Checked, Cause> {
    match bytes.get(0..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0x00, 0x01, 0x00]) => {}
        Some([0, b'a', b's', b'm', 0x01, 0x00, 0x00, 0x00]) => return Err(Cause::CoreModule),
        Some([0, b'a', b's', b'm', ..]) => {
            return Err(Cause::Compile(
                "unsupported WebAssembly binary version".to_owned(),
            ));
        }
        _ => return Err(Cause::NotWasm),
    }
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    let (component, compiled) = engine
        .compile(bytes, hex)
        .map_err(|e| Cause::Compile(format!("{e:#}")))?;
    let ty = component.component_type();
    let engine_ref = engine.wasmtime();
    let exports: Vec<String> = ty.exports(engine_ref).map(|(n, _)| n.to_owned()).collect();
    let imports: Vec<String> = ty.imports(engine_ref).map(|(n, _)| n.to_owned()).collect();
    let world = World::ALL
        .into_iter()
        .find(|w| w.exports().iter().all(|e| exports.iter().any(|x| x == e)))
        .ok_or_else(|| Cause::UnknownWorld {
            exports: exports.join(", "),
        })?;
    // Name the first import the world does not provide, before wasmtime's generic check.
    if let Some((name, _)) = ty
        .imports(engine_ref)
        .find(|(name, item)| !provided(world, name, &item.ty))
    {
        return Err(Cause::UnsupportedImport {
            world,
            import: name.to_owned(),
        });
    }
    if let Err(e) = engine.linker(world).instantiate_pre(&component) {
        return Err(Cause::WrongWorld {
            world,
            message: format!("{e:#}"),
        });
    }
    Ok(Checked {
        component,
        world,
        compiled,
        imports,
        exports,
    })
}

/// Whether an import is something `world` provides: its bosun:operator interfaces and
/// WASI (whose exact types the linker then checks).
fn provided(world: World, name: &str, item: &ComponentItem) -> bool {
    let bosun: &[&str] = match world {
        World::Controller => &["types", "cache", "commands", "log", "clock"],
        World::Admission => &["types", "cache", "log", "clock"],
        World::PodAgent => &["types", "pod", "log", "clock"],
    };
    let ok = match name.strip_prefix("bosun:operator/") {
        // Any 0.1.x of the contract links (wasmtime matches 0.x versions by their minor);
        // another version is named here rather than as a type mismatch by the linker.
        Some(rest) => rest
            .split_once('@')
            .is_some_and(|(iface, version)| bosun.contains(&iface) && version.starts_with("0.1.")),
        None => [
            "wasi:cli/",
            "wasi:io/",
            "wasi:clocks/",
            "wasi:random/",
            "wasi:filesystem/",
            "wasi:sockets/",
        ]
        .iter()
        .any(|p| name.starts_with(p)),
    };
    ok && matches!(item, ComponentItem::ComponentInstance(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha256() {
        assert_eq!(
            digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
