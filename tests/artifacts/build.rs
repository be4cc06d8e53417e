//! Builds Bosun's guest plugins for `wasm32-wasip2` and writes `$OUT_DIR/artifacts.rs`,
//! one `pub const NAME: &str = "/abs/path/plugin.wasm";` per plugin.
//!
//! Like wasmtime's `test-programs/artifacts`, the plugins are built by a child `cargo`
//! with its own target directory, so it never waits on the lock the outer cargo holds,
//! and with the outer cargo's environment stripped, so that flags meant for the host
//! build (clippy's wrapper, `RUSTFLAGS`, `--target`, profile overrides) do not leak into
//! the guest build. Plugins of different worlds are built by separate invocations: cargo
//! unifies features per invocation, and `bosun-sdk` allows one world feature at a time.

use std::env;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "plugin";

/// A guest plugin: the constant that names its `.wasm`, its package, and its world (the
/// `bosun-sdk` feature it enables).
struct Plugin {
    constant: &'static str,
    package: &'static str,
    world: &'static str,
}

const PLUGINS: &[Plugin] = &[
    Plugin {
        constant: "ZONE_LABELER",
        package: "bosun-plugin-zone-labeler",
        world: "controller",
    },
    Plugin {
        constant: "RELEASE",
        package: "bosun-plugin-release",
        world: "controller",
    },
    Plugin {
        constant: "HOSTILE",
        package: "bosun-plugin-hostile",
        world: "controller",
    },
    Plugin {
        constant: "CRD_WATCHER",
        package: "bosun-plugin-crd-watcher",
        world: "controller",
    },
    Plugin {
        constant: "BAD_METADATA",
        package: "bosun-plugin-bad-metadata",
        world: "controller",
    },
    Plugin {
        constant: "GREEDY_METADATA",
        package: "bosun-plugin-greedy-metadata",
        world: "controller",
    },
    Plugin {
        constant: "RAMPAGE",
        package: "bosun-plugin-rampage",
        world: "controller",
    },
    Plugin {
        constant: "PINGER",
        package: "bosun-plugin-test-pinger",
        world: "controller",
    },
];

/// Plugins with a workspace of their own (pod-agent crates: cargo would unify their
/// bosun-sdk world feature with the controllers' in the main workspace), by directory.
const STANDALONE: &[Plugin] = &[
    Plugin {
        constant: "TEST_AGENT",
        package: "tests/plugins/pod-agent",
        world: "pod-agent",
    },
    Plugin {
        constant: "TEST_ADMISSION",
        package: "tests/plugins/admission",
        world: "admission",
    },
    Plugin {
        constant: "SIDECARSET_INJECTOR",
        package: "plugins/sidecarset-injector",
        world: "admission",
    },
];

/// Directories (relative to the workspace root) whose changes rebuild the plugins.
const WATCHED: &[&str] = &[
    "wit",
    "sdk-guest/rust",
    "plugins/zone-labeler",
    "plugins/release",
    "plugins/sidecarset-injector",
    "runtime/api",
    "tests/plugins",
    "Cargo.toml",
    "Cargo.lock",
];

/// Why the build script failed.
enum Failure {
    /// A problem said in one line (`cargo::error`), like a missing target.
    Plain(String),
    /// The child cargo failed: exit non-zero too, so that cargo shows its output.
    WithOutput(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::Plain(message)
    }
}

fn main() -> ExitCode {
    // `cargo::error` fails the build and shows the message as one `error:` line; a
    // non-zero exit adds the "failed to run custom build command" dump with our output.
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Plain(message)) => {
            println!("cargo::error={message}");
            ExitCode::SUCCESS
        }
        Err(Failure::WithOutput(message)) => {
            println!("cargo::error={message}");
            ExitCode::FAILURE
        }
    }
}

fn var(name: &str) -> Result<OsString, String> {
    env::var_os(name).ok_or_else(|| format!("cargo did not set {name} for the build script"))
}

fn run() -> Result<(), Failure> {
    let manifest_dir = PathBuf::from(var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .join("../..")
        .canonicalize()
        .map_err(|err| format!("finding the workspace root: {err}"))?;
    for path in WATCHED {
        println!("cargo::rerun-if-changed={}", root.join(path).display());
    }
    let out_dir = PathBuf::from(var("OUT_DIR")?);
    let rustc = PathBuf::from(var("RUSTC")?);
    check_target(&rustc)?;

    let target_dir = guest_target_dir(&out_dir);
    let mut worlds: Vec<&str> = PLUGINS.iter().map(|p| p.world).collect();
    worlds.dedup();
    for world in worlds {
        let packages = PLUGINS.iter().filter(|p| p.world == world);
        build(&root, &target_dir, packages.map(|p| p.package))?;
    }

    for plugin in STANDALONE {
        build_standalone(&root.join(plugin.package), &target_dir)?;
    }

    let mut source = String::new();
    for plugin in PLUGINS.iter().chain(STANDALONE) {
        let crate_name = if plugin.package.contains('/') {
            package_name(&root.join(plugin.package))?
        } else {
            plugin.package.to_owned()
        };
        let wasm = target_dir
            .join(TARGET)
            .join(PROFILE)
            .join(format!("{}.wasm", crate_name.replace('-', "_")));
        if !wasm.is_file() {
            return Err(Failure::Plain(format!(
                "cargo built {} but {} is missing",
                plugin.package,
                wasm.display()
            )));
        }
        let path = wasm
            .to_str()
            .ok_or_else(|| format!("{} is not UTF-8", wasm.display()))?;
        let _ = writeln!(
            source,
            "/// `{}` (world `{}`), built for {TARGET} with profile `{PROFILE}`.\n\
             pub const {}: &str = {path:?};",
            plugin.package, plugin.world, plugin.constant
        );
    }
    let artifacts = out_dir.join("artifacts.rs");
    std::fs::write(&artifacts, source)
        .map_err(|err| Failure::Plain(format!("writing {}: {err}", artifacts.display())))
}

/// Fails with one clear line when the standard library for the guest target is missing.
fn check_target(rustc: &Path) -> Result<(), String> {
    let output = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|err| format!("running {} --print sysroot: {err}", rustc.display()))?;
    let sysroot = String::from_utf8_lossy(&output.stdout);
    let target_lib = Path::new(sysroot.trim()).join("lib/rustlib").join(TARGET);
    if output.status.success() && !target_lib.is_dir() {
        return Err(format!(
            "the {TARGET} target is missing: run `rustup target add {TARGET}`"
        ));
    }
    Ok(())
}

/// `<target-dir>/wasm-guests` next to the outer build's profile directories, so that
/// debug, release and clippy builds share one guest build; `$OUT_DIR/wasm-guests` when
/// `OUT_DIR` does not have cargo's usual `<dir>/<profile>/build/<pkg>/out` shape.
fn guest_target_dir(out_dir: &Path) -> PathBuf {
    let mut ancestors = out_dir.ancestors();
    match (ancestors.nth(2), ancestors.nth(1)) {
        (Some(build), Some(dir)) if build.file_name().is_some_and(|n| n == "build") => {
            dir.join("wasm-guests")
        }
        _ => out_dir.join("wasm-guests"),
    }
}

/// Whether the outer cargo's variable `name` must not reach the child cargo.
fn leaks(name: &str) -> bool {
    const KEEP: &[&str] = &[
        "CARGO_HOME",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
        "CARGO_TERM_",
    ];
    const DROP: &[&str] = &[
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_LINKER",
        "RUSTDOC",
        "MAKEFLAGS",
        "MFLAGS",
        "TARGET",
        "HOST",
        "OUT_DIR",
        "OPT_LEVEL",
        "PROFILE",
        "DEBUG",
        "NUM_JOBS",
        "CLIPPY_ARGS",
        "CLIPPY_CONF_DIR",
    ];
    if name.starts_with("CARGO_") {
        return !KEEP.iter().any(|keep| name.starts_with(keep));
    }
    name.starts_with("__CARGO") || DROP.contains(&name)
}

/// The `name` of the package in `dir/Cargo.toml`.
fn package_name(dir: &Path) -> Result<String, Failure> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .map_err(|err| format!("reading {}: {err}", manifest.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("name = \"")
                .and_then(|r| r.strip_suffix('"'))
                .map(str::to_owned)
        })
        .ok_or_else(|| Failure::Plain(format!("no package name in {}", manifest.display())))
}

/// Builds a plugin crate that is its own workspace (with its own lockfile).
fn build_standalone(dir: &Path, target_dir: &Path) -> Result<(), Failure> {
    run_cargo(dir, target_dir, std::iter::empty())
}

fn build<'a>(
    root: &Path,
    target_dir: &Path,
    packages: impl Iterator<Item = &'a str>,
) -> Result<(), Failure> {
    run_cargo(root, target_dir, packages)
}

fn run_cargo<'a>(
    root: &Path,
    target_dir: &Path,
    packages: impl Iterator<Item = &'a str>,
) -> Result<(), Failure> {
    let cargo = var("CARGO")?;
    let mut cmd = Command::new(&cargo);
    cmd.arg("build")
        .arg("--locked")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args(["--target", TARGET, "--profile", PROFILE])
        .arg("--target-dir")
        .arg(target_dir);
    // The outer cargo's job count (`-j`, `CARGO_BUILD_JOBS`) still bounds the child.
    if let Some(jobs) = env::var_os("NUM_JOBS") {
        cmd.arg("--jobs").arg(jobs);
    }
    for package in packages {
        cmd.args(["--package", package]);
    }
    for (name, _) in env::vars_os() {
        if name.to_str().is_none_or(leaks) {
            cmd.env_remove(&name);
        }
    }
    // Build-script stdout is parsed by cargo: send the child's stdout to stderr.
    cmd.stdout(Stdio::from(std::io::stderr()));
    let status = cmd
        .status()
        .map_err(|err| format!("running {}: {err}", Path::new(&cargo).display()))?;
    if !status.success() {
        return Err(Failure::WithOutput(format!(
            "building the guest plugins for {TARGET} failed ({status}); see its output below"
        )));
    }
    Ok(())
}
