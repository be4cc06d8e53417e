//! `bosun plugin new`: a plugin folder that builds and passes its own test at once.
//!
//! Every language gets the same plugin: it labels each pod `bosun.dev/hello=world` with
//! one merge patch, and `testdata/` holds a pod to try it on with `bosun plugin test`.
//! It depends on the SDK `sdk::sdk_dir` resolves, by absolute path (a Go `replace`, a
//! Cargo path dependency, an npm `file:` dependency).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

use super::build::Lang;
use super::sdk::sdk_dir;

/// Flags of `bosun plugin new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's name: lowercase letters, digits and `-`.
    pub name: String,
    /// The language.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    pub lang: Lang,
    /// Where to create it (default: ./NAME).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

const POD: &str = r#"{
  "apiVersion": "v1",
  "kind": "Pod",
  "metadata": {"name": "web-0", "namespace": "default", "labels": {"app": "web"}},
  "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
}
"#;

const RUST_LIB: &str = r#"//! NAME: a Bosun controller plugin.

use bosun_sdk::{Command, Context, Controller, Error, Metadata, Outcome, Request, Verb};
use serde_json::json;

struct Plugin;

impl Controller for Plugin {
    fn metadata() -> Metadata {
        Metadata::new("NAME", env!("CARGO_PKG_VERSION"))
            .description("labels every pod bosun.dev/hello=world")
            .subscribe("v1", "Pod")
            .permit("v1", "Pod", &[Verb::Read, Verb::Patch])
    }

    fn init(_config: &str) -> Result<Self, Error> {
        Ok(Plugin)
    }

    fn reconcile(&self, ctx: &mut Context, req: &Request) -> Result<Outcome, Error> {
        // get_meta reads only the metadata (get_pod, get_node: slim pods and nodes);
        // ctx.get parses the whole object, several times dearer on a large pod.
        let Some(meta) = ctx.get_meta(req.target())? else {
            return Ok(Outcome::done());
        };
        if meta.label("bosun.dev/hello").is_some() {
            return Ok(Outcome::done());
        }
        let patch = json!({"metadata": {"labels": {"bosun.dev/hello": "world"}}});
        let id = ctx.submit(Command::merge_patch(req.target(), &patch))?;
        ctx.info(format!("{}: labelled (command {id})", req.target()));
        Ok(Outcome::done())
    }
}

bosun_sdk::export_controller!(Plugin);
"#;

const RUST_CARGO: &str = r#"[package]
name = "NAME"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
bosun-sdk = { path = "SDK/rust", features = ["controller"] }
serde_json = "1"

# A plugin is its own workspace, with the profile `bosun plugin build` uses.
[workspace]

[profile.plugin]
inherits = "release"
opt-level = 3
debug = false
strip = true
"#;

const GO_MAIN: &str = r#"// NAME: a Bosun controller plugin.
package main

import (
	"fmt"

	bosun "github.com/bosun-dev/bosun/sdk-guest/go"
)

type plugin struct{}

func (plugin) Metadata() bosun.Metadata {
	return bosun.NewMetadata("NAME", "0.1.0").
		Description("labels every pod bosun.dev/hello=world").
		Subscribe("v1", "Pod").
		Permit("v1", "Pod", bosun.Read, bosun.Patch)
}

func (plugin) Init(config string) error { return nil }

func (plugin) Reconcile(ctx *bosun.Context, req *bosun.Request) (bosun.Outcome, error) {
	// GetMeta reads only the metadata (GetPod, GetNode: slim pods and nodes); Get
	// decodes the whole object, several times dearer on a large pod.
	meta, err := ctx.GetMeta(req.Target)
	if err != nil || meta == nil {
		return bosun.Done(), err
	}
	if _, done := meta.Labels["bosun.dev/hello"]; done {
		return bosun.Done(), nil
	}
	patch := map[string]any{"metadata": map[string]any{"labels": map[string]any{"bosun.dev/hello": "world"}}}
	id, err := ctx.Submit(bosun.MergePatch(req.Target, patch))
	if err != nil {
		return bosun.Done(), err
	}
	ctx.Info(fmt.Sprintf("%s: labelled (command %s)", req.Target, id))
	return bosun.Done(), nil
}

func init() { bosun.ExportController(plugin{}) }

func main() {}
"#;

const GO_MOD: &str = r#"module NAME

go 1.24

require github.com/bosun-dev/bosun/sdk-guest/go v0.0.0

replace github.com/bosun-dev/bosun/sdk-guest/go => "SDK/go"
"#;

const JS_MAIN: &str = r#"// NAME: a Bosun controller plugin.
import { Metadata, Verb, Command, Outcome, exportController } from '@bosun/sdk';

exportController({
  metadata() {
    return new Metadata('NAME', '0.1.0')
      .description('labels every pod bosun.dev/hello=world')
      .subscribe('v1', 'Pod')
      .permit('v1', 'Pod', [Verb.Read, Verb.Patch]);
  },
  init(_config) {},
  reconcile(ctx, req) {
    // getMeta reads only the metadata (getPod, getNode: slim pods and nodes); get
    // parses the whole object, several times dearer on a large pod.
    const meta = ctx.getMeta(req.target);
    if (!meta) return Outcome.done();
    if (meta.labels?.['bosun.dev/hello'] !== undefined) return Outcome.done();
    const patch = { metadata: { labels: { 'bosun.dev/hello': 'world' } } };
    const id = ctx.submit(Command.mergePatch(req.target, patch));
    ctx.info(`${req.target}: labelled (command #${id})`);
    return Outcome.done();
  },
});
"#;

const JS_PACKAGE: &str = r#"{
  "name": "NAME",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "main": "plugin.js",
  "bosun": { "world": "controller" },
  "dependencies": { "@bosun/sdk": "file:SDK/js" }
}
"#;

const README: &str = r#"# NAME

A Bosun controller plugin (LANG) that labels every pod `bosun.dev/hello=world`.

    bosun plugin build .
    bosun plugin test . --object testdata/pod.json --cache testdata/cache
"#;

/// Creates the plugin folder; returns it.
pub fn scaffold(args: &NewArgs) -> anyhow::Result<PathBuf> {
    let name = &args.name;
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !valid {
        bail!("invalid plugin name {name:?}: use lowercase letters, digits and `-` (at most 63)");
    }
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && dir.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "{} exists and is not empty: choose another --dir",
            dir.display()
        );
    }
    // Every template quotes SDK the same way: TOML, JSON and go.mod strings all take
    // `\\` and `\"` escapes.
    let sdk = sdk_dir()?;
    let sdk = sdk
        .to_str()
        .with_context(|| format!("the SDK path {} is not UTF-8", sdk.display()))?
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    let fill = |t: &str| {
        t.replace("NAME", name)
            .replace("LANG", args.lang.as_str())
            .replace("SDK", &sdk)
    };
    let files: Vec<(&str, String)> = match args.lang {
        Lang::Rust => vec![
            ("Cargo.toml", fill(RUST_CARGO)),
            ("src/lib.rs", fill(RUST_LIB)),
        ],
        Lang::Go => vec![("go.mod", fill(GO_MOD)), ("main.go", fill(GO_MAIN))],
        Lang::Js => vec![
            ("package.json", fill(JS_PACKAGE)),
            ("plugin.js", fill(JS_MAIN)),
        ],
    };
    write(&dir, "README.md", &fill(README))?;
    write(&dir, ".gitignore", "/target\nnode_modules/\n")?;
    write(&dir, "testdata/pod.json", POD)?;
    write(&dir, "testdata/cache/.keep", "")?;
    for (path, text) in files {
        write(&dir, path, &text)?;
    }
    Ok(dir)
}

fn write(dir: &Path, rel: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}
