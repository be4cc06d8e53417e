//! Bad plugin source through `bosun plugin build`: a Go or JavaScript plugin that does
//! not compile fails with the compiler's message (file and line), and a JavaScript
//! plugin importing an interface its world does not provide fails with the interface's
//! name.

use std::path::Path;

use bosun_conformance::crate_dir;

fn sdk_go() -> String {
    crate_dir()
        .join("../../sdk-guest/go")
        .canonicalize()
        .expect("sdk-guest/go")
        .display()
        .to_string()
}

fn go_plugin(dir: &Path, main: &str) {
    std::fs::write(
        dir.join("go.mod"),
        format!(
            "module bad\n\ngo 1.24\n\nrequire github.com/bosun-dev/bosun/sdk-guest/go v0.0.0\n\nreplace github.com/bosun-dev/bosun/sdk-guest/go => {}\n",
            sdk_go()
        ),
    )
    .expect("go.mod");
    std::fs::write(dir.join("main.go"), main).expect("main.go");
}

fn js_plugin(dir: &Path, world: &str, plugin: &str) {
    std::fs::write(
        dir.join("package.json"),
        format!(r#"{{"name": "bad", "type": "module", "main": "plugin.js", "bosun": {{"world": "{world}"}}}}"#),
    )
    .expect("package.json");
    std::fs::write(dir.join("plugin.js"), plugin).expect("plugin.js");
}

fn build_error(dir: &Path) -> String {
    match bosun_cli::plugin::build_with(dir, false) {
        Ok(wasm) => panic!("{} built into {}", dir.display(), wasm.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn a_go_plugin_that_does_not_compile_gives_the_compilers_message() {
    let tmp = tempfile::tempdir().expect("tempdir");
    go_plugin(
        tmp.path(),
        r#"package main

import bosun "github.com/bosun-dev/bosun/sdk-guest/go"

type p struct{}

func (p) Metadata() bosun.Metadata { return bosun.NewMetadata("bad", "0.1.0") }
func (p) Init(config string) error { return nil }
func (p) Reconcile(ctx *bosun.Context, req *bosun.Request) (bosun.Outcome, error) {
	return bosun.Done(), undefinedThing
}

func init() { bosun.ExportController(p{}) }
func main() {}
"#,
    );
    let err = build_error(tmp.path());
    assert!(err.contains("go build failed in"), "{err}");
    assert!(
        err.contains("main.go:10:23: undefined: undefinedThing"),
        "{err}"
    );
}

#[test]
fn a_go_plugin_that_misses_a_hook_gives_the_compilers_message() {
    // A pod-agent without the PodAgent methods (no PodAgentDefaults embedded).
    let tmp = tempfile::tempdir().expect("tempdir");
    go_plugin(
        tmp.path(),
        r#"package main

import bosun "github.com/bosun-dev/bosun/sdk-guest/go"

type agent struct{}

func (agent) Metadata() bosun.Metadata { return bosun.NewMetadata("bad", "0.1.0") }
func (agent) Init(config string) error { return nil }

func init() { bosun.ExportPodAgent(agent{}) }
func main() {}
"#,
    );
    let err = build_error(tmp.path());
    assert!(
        err.contains(
            "main.go:10:36: cannot use agent{} (value of struct type agent) as bosun.PodAgent value"
        ),
        "{err}"
    );
    assert!(err.contains("missing method OnCommand"), "{err}");
}

#[test]
fn a_js_plugin_that_does_not_compile_gives_the_compilers_message() {
    let tmp = tempfile::tempdir().expect("tempdir");
    js_plugin(
        tmp.path(),
        "controller",
        "import { Metadata, Outcome, exportController } from '@bosun/sdk';\n\
         exportController({ metadata: () => new Metadata('bad', '0.1.0'), init() {}, reconcile() { return Outcome.done( } });\n",
    );
    let err = build_error(tmp.path());
    assert!(
        err.contains("the plugin's JavaScript does not load"),
        "{err}"
    );
    assert!(err.contains("unexpected token in expression: '}'"), "{err}");
    assert!(err.contains("/plugin.js:2:"), "{err}");

    // An import the SDK does not export, and a throw at the top level: QuickJS's words.
    js_plugin(
        tmp.path(),
        "controller",
        "import { exportController, Nothing } from '@bosun/sdk';\nexportController({});\n",
    );
    let err = build_error(tmp.path());
    assert!(err.contains("Could not find export 'Nothing'"), "{err}");
    js_plugin(
        tmp.path(),
        "controller",
        "import { exportController } from '@bosun/sdk';\nthrow new Error('no config file');\n",
    );
    let err = build_error(tmp.path());
    assert!(
        err.contains("no config file") && err.contains("/plugin.js:2:"),
        "{err}"
    );
}

#[test]
fn a_js_plugin_importing_an_unknown_interface_fails_with_its_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plugin = |import: &str| {
        format!(
            "import nope from '{import}';\n\
             import {{ Metadata, Outcome, exportController }} from '@bosun/sdk';\n\
             exportController({{ metadata: () => new Metadata('bad', '0.1.0'), init() {{}}, reconcile() {{ nope.x(); return Outcome.done(); }} }});\n"
        )
    };

    js_plugin(
        tmp.path(),
        "controller",
        &plugin("bosun:operator/nope@0.1.0"),
    );
    let err = build_error(tmp.path());
    assert!(
        err.contains(
            "plugin.js imports the interface bosun:operator/nope@0.1.0, which the controller world does not provide"
        ),
        "{err}"
    );
    assert!(err.contains("a controller plugin may import bosun:operator/cache@0.1.0, bosun:operator/commands@0.1.0, bosun:operator/log@0.1.0, bosun:operator/clock@0.1.0"), "{err}");

    // A WASI interface the host does not give plugins.
    js_plugin(
        tmp.path(),
        "controller",
        &plugin("wasi:http/outgoing-handler@0.2.0"),
    );
    let err = build_error(tmp.path());
    assert!(err.contains("imports the interface wasi:http/outgoing-handler@0.2.0, which the controller world does not provide"), "{err}");

    // The contract's interface without its version: named, with the fix.
    js_plugin(tmp.path(), "controller", &plugin("bosun:operator/cache"));
    let err = build_error(tmp.path());
    assert!(
        err.contains("(write it with the contract's version: 'bosun:operator/cache@0.1.0')"),
        "{err}"
    );

    // A real interface of another world: the pod-agent world has no cache.
    js_plugin(
        tmp.path(),
        "pod-agent",
        "import cache from 'bosun:operator/cache@0.1.0';\n\
         import { Metadata, exportPodAgent } from '@bosun/sdk/pod-agent';\n\
         exportPodAgent({ metadata: () => new Metadata('bad', '0.1.0'), init() { cache.get(); } });\n",
    );
    let err = build_error(tmp.path());
    assert!(err.contains("imports the interface bosun:operator/cache@0.1.0, which the pod-agent world does not provide"), "{err}");

    // A Node module does not exist inside a component.
    js_plugin(
        tmp.path(),
        "controller",
        "import fs from 'node:fs';\nimport { exportController } from '@bosun/sdk';\n",
    );
    let err = build_error(tmp.path());
    assert!(
        err.contains("plugin.js imports 'node:fs', which does not exist inside a plugin"),
        "{err}"
    );

    // An import in a comment is not an import.
    js_plugin(
        tmp.path(),
        "controller",
        "// import nope from 'bosun:operator/nope@0.1.0';\n\
         /* import fs from 'node:fs'; */\n\
         import { Metadata, Outcome, exportController } from '@bosun/sdk';\n\
         exportController({ metadata: () => new Metadata('ok', '0.1.0'), init() {}, reconcile() { return Outcome.done(); } });\n",
    );
    bosun_cli::plugin::build_with(tmp.path(), false).unwrap_or_else(|e| panic!("{e:#}"));
}

#[test]
fn a_js_plugin_mixing_worlds_or_naming_an_unknown_world_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        tmp.path().join("package.json"),
        r#"{"name": "bad", "type": "module", "main": "plugin.js"}"#,
    )
    .expect("package.json");
    std::fs::write(
        tmp.path().join("plugin.js"),
        "import { exportController } from '@bosun/sdk';\nimport { exportPodAgent } from '@bosun/sdk/pod-agent';\n",
    )
    .expect("plugin.js");
    let err = build_error(tmp.path());
    assert!(
        err.contains("imports the SDK modules of several worlds (controller, pod-agent)"),
        "{err}"
    );

    js_plugin(
        tmp.path(),
        "sidecar",
        "import { exportController } from '@bosun/sdk';\n",
    );
    let err = build_error(tmp.path());
    assert!(
        err.contains(
            r#"bosun.world is "sidecar": the worlds are controller, admission and pod-agent"#
        ),
        "{err}"
    );
}
