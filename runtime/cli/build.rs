//! Embeds the guest SDKs in the `bosun` binary, so that `bosun plugin new` and `bosun plugin
//! build` work on a machine without a Bosun checkout (`src/plugin/sdk.rs` writes them out).
//!
//! The tree mirrors the repository's layout, because the Rust SDK reads the WIT at
//! `../../wit` and inherits its manifest fields from a workspace root:
//!
//! - `sdk-guest/go`: the package's `.go` files (not its tests) and `go.mod`
//! - `sdk-guest/js`: the modules, their types, `package.json`, `package-lock.json` and
//!   `build.mjs` (not `node_modules`: `bosun plugin build` runs `npm ci` on first use)
//! - `sdk-guest/rust` and `runtime/api` (the SDK's test host needs `bosun-api`): the
//!   manifests, without dev-dependencies, and `src/`
//! - `wit/*.wit`
//! - `Cargo.toml`: the workspace root of those two crates, from the repository's own
//!
//! It generates `$OUT_DIR/sdk.rs`: `FILES`, every file's path and `include_bytes!`, and
//! `HASH`, a short hash of all of them that names the cache folder.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(var("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.join("../..");
    let out_dir = PathBuf::from(var("OUT_DIR"));

    // (path in the embedded tree, file to include)
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let go = |n: &str| (n.ends_with(".go") && !n.ends_with("_test.go")) || n == "go.mod";
    collect(&root, "sdk-guest/go", false, &go, &mut files);
    // A flat folder: watching it catches an added file.
    println!(
        "cargo:rerun-if-changed={}",
        root.join("sdk-guest/go").display()
    );
    let js = |n: &str| {
        n.ends_with(".js")
            || n.ends_with(".mjs")
            || n.ends_with(".d.ts")
            || n == "package.json"
            || n == "package-lock.json"
    };
    // Not the folder itself: cargo would watch node_modules too.
    collect(&root, "sdk-guest/js", false, &js, &mut files);
    collect(
        &root,
        "sdk-guest/rust/src",
        true,
        &|n| n.ends_with(".rs"),
        &mut files,
    );
    collect(
        &root,
        "runtime/api/src",
        true,
        &|n| n.ends_with(".rs"),
        &mut files,
    );
    collect(&root, "wit", true, &|n| n.ends_with(".wit"), &mut files);
    for crate_dir in ["sdk-guest/rust", "runtime/api"] {
        let rel = format!("{crate_dir}/Cargo.toml");
        let text = read(&root.join(&rel));
        files.push((
            rel.clone(),
            generated(&out_dir, &rel, &without_dev_dependencies(&text)),
        ));
    }
    let workspace = workspace_root(&read(&root.join("Cargo.toml")));
    files.push((
        "Cargo.toml".into(),
        generated(&out_dir, "Cargo.toml", &workspace),
    ));
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.toml").display()
    );
    files.sort();

    let mut hash = Fnv::default();
    let mut code = String::from(
        "/// The embedded SDK tree: each file's path under it and its content.\n\
         pub(crate) const FILES: &[(&str, &[u8])] = &[\n",
    );
    for (rel, path) in &files {
        hash.write(rel.as_bytes());
        hash.write(&[0]);
        hash.write(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
        hash.write(&[0]);
        let path = path.to_str().expect("UTF-8 path");
        writeln!(code, "    ({rel:?}, include_bytes!({path:?})),").expect("write");
    }
    code.push_str("];\n");
    writeln!(
        code,
        "/// A short hash of `FILES`: a changed SDK gets a new cache folder.\n\
         pub(crate) const HASH: &str = \"{:016x}\";",
        hash.0
    )
    .expect("write");
    std::fs::write(out_dir.join("sdk.rs"), code).expect("write sdk.rs");
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

fn read(path: &Path) -> String {
    println!("cargo:rerun-if-changed={}", path.display());
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Adds the files of `root/rel` that `keep` accepts (by name), in subfolders too when
/// `recurse`; watches them, and the folder itself when `recurse` (for added files).
fn collect(
    root: &Path,
    rel: &str,
    recurse: bool,
    keep: &dyn Fn(&str) -> bool,
    files: &mut Vec<(String, PathBuf)>,
) {
    let dir = root.join(rel);
    if recurse {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.expect("read_dir");
        let name = entry.file_name().into_string().expect("UTF-8 file name");
        let path = entry.path();
        if path.is_dir() {
            if recurse {
                collect(root, &format!("{rel}/{name}"), true, keep, files);
            }
        } else if keep(&name) {
            println!("cargo:rerun-if-changed={}", path.display());
            let path = path.canonicalize().expect("canonicalize");
            files.push((format!("{rel}/{name}"), path));
        }
    }
}

/// Writes a generated file into OUT_DIR; returns its path.
fn generated(out_dir: &Path, rel: &str, text: &str) -> PathBuf {
    let path = out_dir.join("sdk").join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("create_dir_all");
    std::fs::write(&path, text).expect("write");
    path
}

/// Whether a manifest line opens a table (`[name]`, `[a.b]`), not an array's line.
fn is_header(line: &str) -> bool {
    line.starts_with('[') && line.trim_end().ends_with(']') && !line.starts_with("[[")
}

/// A crate manifest without its `[dev-dependencies]`: those name workspace crates that
/// are not embedded.
fn without_dev_dependencies(text: &str) -> String {
    let mut out = String::new();
    let mut skip = false;
    for line in text.lines() {
        if is_header(line) {
            skip = line.trim_end() == "[dev-dependencies]";
        }
        if !skip {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The workspace root of the embedded crates: the repository's `[workspace.package]`,
/// `[workspace.dependencies]` and `[workspace.lints.*]`, with only those two members.
fn workspace_root(text: &str) -> String {
    let mut out = String::from(
        "# The workspace root of the embedded Bosun SDK crates (written by `bosun`).\n\
         [workspace]\nresolver = \"3\"\nmembers = [\"sdk-guest/rust\", \"runtime/api\"]\n",
    );
    let mut keep = false;
    for line in text.lines() {
        if is_header(line) {
            let name = line.trim_end();
            keep = name == "[workspace.package]"
                || name == "[workspace.dependencies]"
                || name.starts_with("[workspace.lints");
            if keep {
                out.push('\n');
            }
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// FNV-1a, 64 bits: enough to tell SDK contents apart, and no build dependency.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}
