//! Where the guest SDKs come from: `bosun plugin new` points a scaffold at them (Go
//! `replace`, Cargo path dependency, npm `file:` dependency) and `bosun plugin build`
//! reads the JS SDK and the WIT from them.
//!
//! The `bosun` binary embeds the SDK tree (see `build.rs`), so it needs no checkout. The
//! sdk-guest folder is, in this order:
//! 1. `$BOSUN_SDK_DIR`;
//! 2. the checkout the binary was built from, when the binary runs from inside it
//!    (`cargo run`, `cargo test`): there the SDKs are edited and read as they are, and
//!    `.ci/setup` installs the JS SDK's npm packages;
//! 3. the cache: `<cache>/sdk/<version>-<hash>/sdk-guest`, written on first use, where
//!    `<cache>` is `$BOSUN_CACHE_DIR`, `$XDG_CACHE_HOME/bosun` or `~/.cache/bosun` and
//!    `<hash>` is the embedded content's, so a changed SDK gets a new folder. It is
//!    written into a temporary folder beside it and renamed into place: a reader never
//!    sees half of it, and of two concurrent writers the loser uses the winner's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/sdk.rs"));
}

/// The sdk-guest folder (with `go`, `js` and `rust`; the WIT is at `../wit`), written
/// into the cache first if that is where it comes from.
pub(crate) fn sdk_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = var("BOSUN_SDK_DIR") {
        return std::path::absolute(&dir)
            .with_context(|| format!("BOSUN_SDK_DIR={}: not a usable path", dir.display()));
    }
    if let Some(root) = checkout() {
        return Ok(root.join("sdk-guest"));
    }
    Ok(materialise(&cache_dir()?)?.join("sdk-guest"))
}

/// Whether `$BOSUN_SDK_DIR` names the sdk-guest folder.
pub(crate) fn overridden() -> bool {
    var("BOSUN_SDK_DIR").is_some()
}

/// The checkout this binary was built from, if the binary runs from inside it.
pub(crate) fn checkout() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .ok()?;
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    // Built into the checkout's target folder, or into the CARGO_TARGET_DIR it was built
    // with (a target folder shared by several checkouts, as CI's).
    let target = option_env!("CARGO_TARGET_DIR")
        .map(Path::new)
        .and_then(|t| t.canonicalize().ok());
    let built_here = exe.starts_with(&root) || target.is_some_and(|t| exe.starts_with(t));
    (built_here && root.join("sdk-guest").is_dir()).then_some(root)
}

/// `$BOSUN_CACHE_DIR`, `$XDG_CACHE_HOME/bosun` or `~/.cache/bosun`, absolute.
pub(crate) fn cache_dir() -> anyhow::Result<PathBuf> {
    let dir = if let Some(dir) = var("BOSUN_CACHE_DIR") {
        dir
    } else if let Some(xdg) = var("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
        xdg.join("bosun")
    } else if let Some(home) = var("HOME") {
        home.join(".cache").join("bosun")
    } else {
        bail!("no cache folder for the Bosun SDKs: set BOSUN_CACHE_DIR (or HOME)")
    };
    std::path::absolute(&dir)
        .with_context(|| format!("the cache folder {} is not a usable path", dir.display()))
}

/// A non-empty environment variable, as a path.
fn var(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Writes the embedded SDK tree into `cache/sdk/<version>-<hash>` unless it is there;
/// returns that folder.
pub(crate) fn materialise(cache: &Path) -> anyhow::Result<PathBuf> {
    let parent = cache.join("sdk");
    let dir = parent.join(format!("{}-{}", env!("CARGO_PKG_VERSION"), embedded::HASH));
    if dir.is_dir() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&parent).with_context(|| {
        format!(
            "cannot create the SDK cache folder {}: set BOSUN_CACHE_DIR to a writable folder",
            parent.display()
        )
    })?;
    let tmp = parent.join(temp_name("write"));
    let written = write_tree(&tmp);
    let result = written.and_then(|()| match std::fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir.clone()),
        // Another bosun wrote the same folder first: the same content, use it.
        Err(_) if dir.is_dir() => Ok(dir.clone()),
        Err(e) => Err(e).with_context(|| format!("cannot rename {} into place", tmp.display())),
    });
    // Gone after a successful rename; a leftover otherwise.
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn write_tree(root: &Path) -> anyhow::Result<()> {
    for (rel, bytes) in embedded::FILES {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// A name for a temporary folder that no other process or thread uses.
fn temp_name(what: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        ".{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Gives the cache's JS SDK at `js` its npm packages (componentize-qjs) on first use:
/// `npm ci` in a folder beside it, whose `node_modules` is then renamed into place. A
/// checkout's or `$BOSUN_SDK_DIR`'s SDK is left as it is (`.ci/setup` runs `npm ci`).
pub(crate) fn ensure_npm_packages(js: &Path) -> anyhow::Result<()> {
    let modules = js.join("node_modules");
    if modules.is_dir() {
        return Ok(());
    }
    let cache = cache_dir()?;
    let cache = cache.canonicalize().unwrap_or(cache);
    let Some(version_dir) = js
        .parent()
        .and_then(Path::parent)
        .filter(|d| d.starts_with(&cache))
    else {
        return Ok(());
    };
    let tmp = version_dir.join(temp_name("npm"));
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let result = npm_ci(js, &tmp).and_then(|()| {
        match std::fs::rename(tmp.join("node_modules"), &modules) {
            Ok(()) => Ok(()),
            // Another bosun installed them first.
            Err(_) if modules.is_dir() => Ok(()),
            Err(e) => {
                Err(e).with_context(|| format!("cannot move node_modules into {}", js.display()))
            }
        }
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn npm_ci(js: &Path, tmp: &Path) -> anyhow::Result<()> {
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(js.join(file), tmp.join(file))
            .with_context(|| format!("cannot copy {} into {}", file, tmp.display()))?;
    }
    eprintln!(
        "installing the JS SDK's npm packages (npm ci) into {}…",
        js.display()
    );
    let output = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(tmp)
        .output()
        .with_context(|| {
            format!(
                "cannot run npm: put npm (Node.js 20 or newer, e.g. `apt-get install nodejs npm`) \
                 on PATH, or run `npm ci` in {} yourself",
                js.display()
            )
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.trim_end().lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        bail!(
            "npm ci failed, so the JS SDK in {} lacks componentize-qjs \
             (is the npm registry reachable? the next build tries again):\n{tail}",
            js.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_writers_share_one_complete_folder() {
        let cache = tempfile::tempdir().expect("tempdir");
        let dirs: Vec<PathBuf> = std::thread::scope(|s| {
            let writers: Vec<_> = (0..4)
                .map(|_| s.spawn(|| materialise(cache.path()).expect("materialise")))
                .collect();
            writers
                .into_iter()
                .map(|w| w.join().expect("join"))
                .collect()
        });
        assert!(dirs.windows(2).all(|w| w[0] == w[1]), "{dirs:?}");
        for (rel, bytes) in embedded::FILES {
            let on_disk = std::fs::read(dirs[0].join(rel)).expect("read");
            assert_eq!(&on_disk, bytes, "{rel}");
        }
        // No temporary folder is left behind, whoever won.
        let entries: Vec<_> = std::fs::read_dir(cache.path().join("sdk"))
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
    }

    #[test]
    fn the_tree_holds_what_the_scaffolds_need() {
        let has = |rel: &str| embedded::FILES.iter().any(|(p, _)| *p == rel);
        for rel in [
            "Cargo.toml",
            "sdk-guest/go/go.mod",
            "sdk-guest/go/bosun.go",
            "sdk-guest/js/build.mjs",
            "sdk-guest/js/package-lock.json",
            "sdk-guest/rust/Cargo.toml",
            "sdk-guest/rust/src/lib.rs",
            "runtime/api/src/lib.rs",
            "wit/worlds.wit",
        ] {
            assert!(has(rel), "{rel} is not embedded");
        }
        assert!(
            !embedded::FILES
                .iter()
                .any(|(p, _)| p.contains("node_modules") || p.ends_with("_test.go")),
            "node_modules or Go tests are embedded"
        );
    }
}
