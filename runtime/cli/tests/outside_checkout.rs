//! A `bosun` binary away from the checkout it was built from scaffolds and builds plugins
//! in every language against the SDKs it embeds, written into its cache on first use.
//!
//! There is no chroot here, so the test proves the checkout is out of reach otherwise: the
//! binary is a copy in a temporary folder (the checkout is used only by a binary that runs
//! from inside it), BOSUN_SDK_DIR is unset, the cache is fresh, and the scaffolds must
//! point into the cache and never mention the checkout. The toolchains are prerequisites
//! passed like on any machine: Go (the checkout's `.venv/bin/go` from `.ci/setup`) and
//! node/npm on PATH, the npm registry reachable for the JS SDK's `npm ci`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The checkout the test binary was built from.
fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("checkout")
}

/// Where the Rust scaffold builds: `$CARGO_TARGET_DIR/scaffold-test` (or the checkout's
/// `target/scaffold-test`).
fn scaffold_target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| checkout().join("target"), PathBuf::from)
        .join("scaffold-test")
}

/// Runs `cmd` to completion. The other test copies `bosun` too: a child it forks while
/// its copy is open for writing holds that descriptor, and exec of a file open for
/// writing fails (ETXTBSY) until the child has exec'd itself, so that is retried.
fn output(cmd: &mut Command) -> std::process::Output {
    for _ in 0..100 {
        match cmd.output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.expect("run bosun"),
        }
    }
    panic!("the copied bosun stayed busy (ETXTBSY) for 2 s");
}

/// A copied `bosun`, an empty working folder and a fresh cache, in one temporary folder.
struct Away {
    tmp: tempfile::TempDir,
    path: OsString,
}

impl Away {
    fn new() -> Away {
        let tmp = tempfile::tempdir().expect("tempdir");
        for dir in ["bin", "work", "cache"] {
            std::fs::create_dir(tmp.path().join(dir)).expect("mkdir");
        }
        std::fs::copy(env!("CARGO_BIN_EXE_bosun"), tmp.path().join("bin/bosun"))
            .expect("copy bosun");
        let mut path = vec![checkout().join(".venv/bin")];
        path.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        let path = std::env::join_paths(path).expect("PATH");
        Away { tmp, path }
    }

    fn work(&self) -> PathBuf {
        self.tmp.path().join("work")
    }

    fn cache(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }

    /// Runs the copied `bosun` in the working folder; its stdout, or a panic with stderr.
    fn bosun(&self, args: &[&str]) -> String {
        let out = output(
            Command::new(self.tmp.path().join("bin/bosun"))
                .args(args)
                .current_dir(self.work())
                .env_remove("BOSUN_SDK_DIR")
                .env_remove("BOSUN_GO")
                .env_remove("BOSUN_NODE")
                .env("PATH", &self.path)
                .env("BOSUN_CACHE_DIR", self.cache())
                .env("BOSUN_COMPILED_CACHE", self.tmp.path().join("compiled"))
                // A stable folder of the workspace's target: reruns compile wit-bindgen once.
                .env("CARGO_TARGET_DIR", scaffold_target()),
        );
        assert!(
            out.status.success(),
            "bosun {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Every file under `dir` but build outputs and npm packages, with its text.
fn files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !["target", "node_modules"].contains(&name) {
                out.extend(files(&path));
            }
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&path).expect("read")).into_owned();
            out.push((path, text));
        }
    }
    out
}

#[test]
fn a_copied_binary_scaffolds_and_builds_every_language_from_its_cache() {
    let away = Away::new();
    let checkout = checkout();
    let checkout = checkout.to_str().expect("UTF-8");
    for (lang, manifest) in [
        ("go", "go.mod"),
        ("js", "package.json"),
        ("rust", "Cargo.toml"),
    ] {
        let name = format!("hello-{lang}");
        away.bosun(&["plugin", "new", &name, "--lang", lang]);
        let dir = away.work().join(&name);

        // The SDK was written into the cache, and the scaffold points there.
        let sdks: Vec<PathBuf> = std::fs::read_dir(away.cache().join("sdk"))
            .expect("the cache holds no sdk folder")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(sdks.len(), 1, "one SDK version in the cache: {sdks:?}");
        let sdk = sdks[0].join("sdk-guest").join(lang);
        assert!(sdk.is_dir(), "{} is missing", sdk.display());
        let text = std::fs::read_to_string(dir.join(manifest)).expect("manifest");
        assert!(
            text.contains(sdk.to_str().expect("UTF-8")),
            "{manifest} does not point at the cache's SDK {}:\n{text}",
            sdk.display()
        );
        for (path, text) in files(&dir).into_iter().chain(files(&sdks[0])) {
            assert!(
                !text.contains(checkout),
                "{} mentions the checkout {checkout}",
                path.display()
            );
        }

        let wasm = away.bosun(&["plugin", "build", &name]);
        let wasm = PathBuf::from(wasm.trim_end());
        let bytes = std::fs::read(&wasm).expect("the component");
        // The component-model preamble: magic, version 0x0d, layer 1.
        assert_eq!(
            bytes.get(..8),
            Some(&b"\0asm\x0d\0\x01\0"[..]),
            "{} is not a component",
            wasm.display()
        );
        let info: serde_json::Value = serde_json::from_str(&away.bosun(&[
            "plugin",
            "inspect",
            "--json",
            wasm.to_str().expect("UTF-8"),
        ]))
        .expect("inspect JSON");
        assert_eq!(info["info"]["world"], "controller", "{lang}: {info}");
        assert_eq!(info["info"]["name"], name.as_str(), "{lang}: {info}");
    }
    // The JS build installed the SDK's npm packages in the cache, not in the checkout.
    let sdk = std::fs::read_dir(away.cache().join("sdk"))
        .expect("read_dir")
        .next()
        .expect("the SDK")
        .expect("entry")
        .path();
    assert!(
        sdk.join("sdk-guest/js/node_modules/componentize-qjs")
            .is_dir(),
        "componentize-qjs is not in the cache"
    );
}

#[test]
fn bosun_sdk_dir_wins_and_the_checkout_serves_a_binary_run_from_it() {
    let away = Away::new();
    // BOSUN_SDK_DIR is taken as it is, before the cache.
    let own = away.tmp.path().join("my-sdk");
    let out = output(
        Command::new(away.tmp.path().join("bin/bosun"))
            .args(["plugin", "new", "hello", "--lang", "go"])
            .current_dir(away.work())
            .env("BOSUN_SDK_DIR", &own)
            .env("BOSUN_CACHE_DIR", away.cache()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let go_mod = std::fs::read_to_string(away.work().join("hello/go.mod")).expect("go.mod");
    let want = format!("=> \"{}\"", own.join("go").display());
    assert!(go_mod.contains(&want), "{go_mod}");
    assert!(!away.cache().join("sdk").exists(), "the cache was written");

    // The binary in the checkout's target folder uses the checkout's sdk-guest as it is.
    let out = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["plugin", "new", "hello-here", "--lang", "rust"])
        .current_dir(away.work())
        .env_remove("BOSUN_SDK_DIR")
        .env("BOSUN_CACHE_DIR", away.cache())
        .output()
        .expect("run bosun");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cargo =
        std::fs::read_to_string(away.work().join("hello-here/Cargo.toml")).expect("Cargo.toml");
    let want = format!("path = \"{}\"", checkout().join("sdk-guest/rust").display());
    assert!(cargo.contains(&want), "{cargo}");
    assert!(!away.cache().join("sdk").exists(), "the cache was written");
}
