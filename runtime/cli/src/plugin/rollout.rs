//! `bosun plugin push|status|history|promote|rollback`: rollouts (direct, canary, shadow) and version control
//! of plugins through the `Plugin` resource (bosun.dev/v1alpha1), against the cluster the
//! kubeconfig points to (see [`crate::release::kubeconfig`] for which one).
//!
//! The contract with the runtime that drives Plugin objects:
//! - `push` stores each revision in its own immutable ConfigMap
//!   `bosun-plugin-<NAME>-<first 12 hex of the digest>` (key `plugin.wasm`, labels
//!   `bosun.dev/plugin` and `bosun.dev/digest`), kept for rollback, and applies the Plugin
//!   (server-side apply, field manager `bosun-cli`) with `spec.source` pointing at it
//!   and naming the component's full sha256 (the runtime checks the bytes against it),
//!   granting in `spec.permissions` what the component's metadata asks (the runtime does
//!   not start a plugin whose grants fall short, and the pusher has chosen this component);
//!   fields it does not set (limits, targetSelector, dryRun) stay as an admin set them;
//! - `promote` and `rollback` without `--to` only ask: they set the annotation
//!   `bosun.dev/promote` or `bosun.dev/rollback` to the current time, and the runtime acts;
//! - `rollback --to DIGEST` points `spec.source` back at that revision's ConfigMap with a
//!   direct rollout.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use bosun_api::keys;
use bosun_api::plugin::{self as crd, Analysis, Canary, LabelSelector, Plugin, Rollout, Strategy};
use bosun_host::{Revision, Services, Spec};
use clap::{ArgGroup, Args};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams};
use serde_json::{Value, json};

use super::EngineArgs;
use crate::serve::BadConfig;

/// The field manager of everything this module applies.
pub const FIELD_MANAGER: &str = "bosun-cli";
/// The largest component a ConfigMap can carry: the API server refuses ConfigMaps whose
/// data exceeds 1 MiB; 1 KiB is left for the key and the rest of the object.
pub const MAX_COMPONENT_BYTES: usize = 1024 * 1024 - 1024;

/// Which cluster and namespace.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Kubeconfig of the cluster (default: KUBECONFIG, then `.bosun/cluster/kubeconfig`
    /// of `bosun up`, then ~/.kube/config or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the Plugin (default: the kubeconfig context's, else `default`).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
}

/// Flags of `bosun plugin push`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("strategy").args(["canary", "canary_selector", "shadow"])))]
#[command(group(ArgGroup::new("canary_rollout").args(["canary", "canary_selector"])))]
pub struct PushArgs {
    /// The component (.wasm), or a plugin source folder to build first.
    pub file: PathBuf,
    /// The Plugin's name; must be the name in the component's metadata.
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The plugin's config, a JSON object (default: keep the Plugin's current config).
    #[arg(long)]
    pub config: Option<String>,
    /// Roll out as a canary serving this share of keys: `20%` or `20` (1 to 100).
    #[arg(long, value_name = "PERCENT")]
    pub canary: Option<String>,
    /// Roll out as a canary serving the objects with these labels: `k=v,k2=v2`.
    #[arg(long, value_name = "SELECTOR")]
    pub canary_selector: Option<String>,
    /// Roll out as a shadow: it sees the same events, its commands are never executed.
    #[arg(long)]
    pub shadow: bool,
    /// Canary: how long it is watched before it is judged, in seconds.
    #[arg(long, value_name = "SECONDS", requires = "canary_rollout")]
    pub window: Option<u64>,
    /// Canary: the highest share of reconciles returning an error (`0.05` or `5%`).
    #[arg(long, value_name = "F", requires = "canary_rollout")]
    pub max_error_rate: Option<String>,
    /// Canary: reconciles needed before judging.
    #[arg(long, value_name = "N", requires = "canary_rollout")]
    pub min_samples: Option<u64>,
    /// Canary: wait for `bosun plugin promote` instead of promoting after the window.
    #[arg(long, requires = "canary_rollout")]
    pub manual_promotion: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Flags of `bosun plugin status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One Plugin (default: every Plugin of the namespace).
    pub name: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Print the Plugins' status as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `bosun plugin history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The Plugin.
    pub name: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Flags of `bosun plugin promote`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The Plugin whose canary to promote.
    pub name: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Flags of `bosun plugin rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The Plugin.
    pub name: String,
    /// Go back to this revision (`sha256:<hex>`, or a unique prefix of at least 8 hex
    /// digits); default: abort the canary, or return to the previous stable revision.
    #[arg(long, value_name = "DIGEST")]
    pub to: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Parses a canary share: `20%` or `20`, a whole percentage over 0 and at most 100.
pub fn parse_share(text: &str) -> Result<u8, BadConfig> {
    let digits = text.trim().strip_suffix('%').unwrap_or(text.trim());
    match digits.parse::<u8>() {
        Ok(n) if (1..=100).contains(&n) => Ok(n),
        _ => Err(BadConfig(format!(
            "invalid --canary {text:?}: the share is a whole percentage over 0 and at most 100, as `20%` or `20`"
        ))),
    }
}

/// Parses `k=v,k2=v2` into labels.
pub fn parse_selector(text: &str) -> Result<BTreeMap<String, String>, BadConfig> {
    let bad = || {
        BadConfig(format!(
            "invalid --canary-selector {text:?}: expected KEY=VALUE[,KEY=VALUE...], as `track=canary,zone=a`"
        ))
    };
    let mut labels = BTreeMap::new();
    for pair in text.split(',') {
        let (k, v) = pair.split_once('=').ok_or_else(bad)?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || k.contains(char::is_whitespace) || v.contains(char::is_whitespace) {
            return Err(bad());
        }
        labels.insert(k.to_owned(), v.to_owned());
    }
    Ok(labels)
}

/// Parses a rate: a fraction from 0 to 1 (`0.05`) or a percentage (`5%`).
pub fn parse_rate(flag: &str, text: &str) -> Result<f64, BadConfig> {
    let t = text.trim();
    let value = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => t.parse::<f64>(),
    };
    match value {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(BadConfig(format!(
            "invalid {flag} {text:?}: expected a fraction from 0 to 1 (`0.05`) or a percentage (`5%`)"
        ))),
    }
}

impl PushArgs {
    /// The rollout the flags ask for.
    pub fn rollout(&self) -> Result<Rollout, BadConfig> {
        let analysis = || -> Result<Analysis, BadConfig> {
            Ok(Analysis {
                max_error_rate: self
                    .max_error_rate
                    .as_deref()
                    .map(|r| parse_rate("--max-error-rate", r))
                    .transpose()?,
                min_samples: self.min_samples,
                window_seconds: self.window,
                ..Analysis::default()
            })
        };
        if let Some(share) = &self.canary {
            let canary = Canary {
                share: Some(parse_share(share)?),
                selector: None,
                analysis: analysis()?,
                manual_promotion: self.manual_promotion,
            };
            return Ok(Rollout {
                strategy: Strategy::Canary,
                canary: Some(canary),
            });
        }
        if let Some(selector) = &self.canary_selector {
            let canary = Canary {
                share: None,
                selector: Some(LabelSelector {
                    match_labels: parse_selector(selector)?,
                }),
                analysis: analysis()?,
                manual_promotion: self.manual_promotion,
            };
            return Ok(Rollout {
                strategy: Strategy::Canary,
                canary: Some(canary),
            });
        }
        let strategy = if self.shadow {
            Strategy::Shadow
        } else {
            Strategy::Direct
        };
        Ok(Rollout {
            strategy,
            canary: None,
        })
    }

    /// `--config`, checked: a JSON object.
    pub fn config(&self) -> Result<Option<Value>, BadConfig> {
        let Some(text) = &self.config else {
            return Ok(None);
        };
        let value: Value = serde_json::from_str(text)
            .map_err(|e| BadConfig(format!("--config is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(BadConfig(format!(
                "--config must be a JSON object, as `{{\"key\": \"value\"}}`; got {text}"
            )));
        }
        Ok(Some(value))
    }
}

/// The hex digits of a `sha256:<hex>` digest (or of bare hex).
pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// The first 12 hex digits of a digest, as tables show it.
pub fn short(digest: &str) -> &str {
    let hex = hex_of(digest);
    &hex[..hex.len().min(12)]
}

/// The ConfigMap holding revision `digest` of plugin `name`.
pub fn configmap_name(name: &str, digest: &str) -> String {
    format!("bosun-plugin-{name}-{}", short(digest))
}

/// One stored revision: its digest (`sha256:<hex>`, or the 63 hex digits of the label
/// when the annotation is missing) and its ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The digest.
    pub digest: String,
    /// The ConfigMap's name.
    pub configmap: String,
}

impl Stored {
    fn of(cm: &ConfigMap) -> Option<Self> {
        let name = cm.metadata.name.clone()?;
        let full = cm
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(keys::DIGEST_LABEL))
            .filter(|d| d.starts_with("sha256:"));
        let digest = match full {
            Some(d) => d.clone(),
            None => cm
                .metadata
                .labels
                .as_ref()?
                .get(keys::DIGEST_LABEL)?
                .clone(),
        };
        Some(Stored {
            digest,
            configmap: name,
        })
    }
}

/// The full digest (`sha256:<64 hex>`) of a stored revision, as a Plugin's source names
/// it: the ConfigMap's annotation, or (a ConfigMap with only the 63-digit label) the
/// digest of the bytes it holds, when they are the revision the label names.
pub fn full_digest(stored: &Stored, configmaps: &[ConfigMap]) -> Result<String, String> {
    if let Some(hex) = crd::sha256_hex(&stored.digest)
        && stored.digest.starts_with("sha256:")
    {
        return Ok(format!("sha256:{hex}"));
    }
    let bytes = configmaps
        .iter()
        .find(|cm| cm.metadata.name.as_deref() == Some(stored.configmap.as_str()))
        .and_then(|cm| cm.binary_data.as_ref()?.get(keys::CONFIGMAP_KEY))
        .ok_or_else(|| {
            format!(
                "ConfigMap {} holds no {} to roll back to; push that revision again",
                stored.configmap,
                keys::CONFIGMAP_KEY
            )
        })?;
    let digest = bosun_host::load::digest(&bytes.0);
    if !hex_of(&digest).starts_with(hex_of(&stored.digest)) {
        return Err(format!(
            "ConfigMap {} holds {digest}, not the revision its label names ({}); push that revision again",
            stored.configmap, stored.digest
        ));
    }
    Ok(digest)
}

/// The lowercase hex digits of `--to`: a digest (`sha256:<hex>` or bare hex) or at least
/// its first 8 hex digits.
pub fn digest_prefix(wanted: &str) -> Result<String, BadConfig> {
    let hex = hex_of(wanted.trim()).to_ascii_lowercase();
    if hex.len() < 8 || hex.len() > 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(BadConfig(format!(
            "invalid --to {wanted:?}: expected a digest (sha256:<hex>) or at least its first 8 hex digits"
        )));
    }
    Ok(hex)
}

/// The stored revision `wanted` names: a full digest or a prefix of at least 8 hex digits
/// that only one revision has.
pub fn find_revision<'a>(wanted: &str, stored: &'a [Stored]) -> anyhow::Result<&'a Stored> {
    let hex = digest_prefix(wanted)?;
    let available = || {
        let mut all: Vec<&str> = stored.iter().map(|s| s.digest.as_str()).collect();
        all.sort_unstable();
        all.dedup();
        if all.is_empty() {
            "none (no ConfigMap is labelled for this plugin)".to_owned()
        } else {
            all.join(", ")
        }
    };
    let matches: Vec<&Stored> = stored
        .iter()
        .filter(|s| {
            let have = hex_of(&s.digest);
            // A label keeps only 63 of the 64 digits.
            have.starts_with(&hex[..hex.len().min(have.len())])
        })
        .collect();
    let mut digests: Vec<&str> = matches.iter().map(|s| s.digest.as_str()).collect();
    digests.sort_unstable();
    digests.dedup();
    match digests.len() {
        0 => bail!(
            "no stored revision matches {wanted}; available: {}",
            available()
        ),
        1 => Ok(matches[0]),
        _ => bail!(
            "{wanted} matches {} revisions ({}): give more digits",
            digests.len(),
            digests.join(", ")
        ),
    }
}

/// The status of one condition type (`True`, `False`, `Unknown`; `-` when absent).
fn condition<'a>(status: Option<&'a crd::PluginStatus>, type_: &str) -> Option<&'a crd::Condition> {
    status?.conditions.iter().find(|c| c.type_ == type_)
}

/// The Plugins as a table with a header; each revision's counters on a line of its own.
pub fn status_table(plugins: &[Plugin]) -> String {
    let mut out = format!(
        "{:<24} {:<11} {:<13} {:<18} {:<7} {:<12} {:<9} {}\n",
        "NAME", "WORLD", "STABLE", "CANARY", "READY", "PROGRESSING", "DEGRADED", "REASON"
    );
    for p in plugins {
        let status = p.status.as_ref();
        let stable = status
            .and_then(|s| s.stable_revision.as_deref())
            .map_or("-", short);
        let canary = match status.and_then(|s| s.canary_revision.as_deref()) {
            None => "-".to_owned(),
            Some(d) => match status.and_then(|s| s.canary_share) {
                Some(share) => format!("{}@{share}%", short(d)),
                None => format!("{}@selector", short(d)),
            },
        };
        let cond = |t: &str| condition(status, t).map_or("-", |c| c.status.as_str());
        let degraded = condition(status, "Degraded");
        let reason = match degraded {
            Some(c) if c.status == "True" && c.message.is_empty() => c.reason.clone(),
            Some(c) if c.status == "True" => format!("{}: {}", c.reason, c.message),
            _ => "-".to_owned(),
        };
        out.push_str(&format!(
            "{:<24} {:<11} {:<13} {:<18} {:<7} {:<12} {:<9} {}\n",
            p.metadata.name.as_deref().unwrap_or(""),
            crd::World::as_str(p.spec.world),
            stable,
            canary,
            cond("Ready"),
            cond("Progressing"),
            cond("Degraded"),
            reason,
        ));
        for (digest, c) in status.map(|s| &s.revisions).into_iter().flatten() {
            out.push_str(&format!(
                "  revision {:<13} reconciles={} errors={} traps={} refused={}\n",
                short(digest),
                c.reconciles,
                c.errors,
                c.traps,
                c.refused
            ));
        }
    }
    out
}

/// A Plugin's history as a table with a header, oldest first.
pub fn history_table(history: &[crd::HistoryEntry]) -> String {
    let mut out = format!(
        "{:<21} {:<13} {:<12} {}\n",
        "TIME", "DIGEST", "OUTCOME", "REASON"
    );
    for h in history {
        out.push_str(&format!(
            "{:<21} {:<13} {:<12} {}\n",
            h.time,
            short(&h.digest),
            h.outcome,
            h.reason.as_deref().unwrap_or("-"),
        ));
    }
    out
}

fn describe_rollout(rollout: &Rollout) -> String {
    let Some(c) = rollout
        .canary
        .as_ref()
        .filter(|_| rollout.strategy == Strategy::Canary)
    else {
        return match rollout.strategy {
            Strategy::Shadow => "shadow (commands recorded and compared, never executed)".into(),
            _ => "direct (replaces the stable revision)".into(),
        };
    };
    let mut text = match (&c.share, &c.selector) {
        (Some(share), _) => format!("canary {share}% of keys"),
        (None, Some(sel)) => {
            let labels: Vec<String> = sel
                .match_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("canary on objects labelled {}", labels.join(","))
        }
        (None, None) => "canary".into(),
    };
    let a = &c.analysis;
    if let Some(r) = a.max_error_rate {
        text.push_str(&format!(", max error rate {r}"));
    }
    if let Some(n) = a.min_samples {
        text.push_str(&format!(", min samples {n}"));
    }
    if let Some(w) = a.window_seconds {
        text.push_str(&format!(", window {w}s"));
    }
    text.push_str(if c.manual_promotion {
        ", promoted by `bosun plugin promote`"
    } else {
        ", promoted automatically after the window"
    });
    text
}

/// Runs `fut` on a current-thread runtime inside a span named `bosun.cli.<op>`.
fn block_on<T>(
    span: tracing::Span,
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(tracing::Instrument::instrument(fut, span))
}

/// Context for a Kubernetes API error: the API server's message alone (kube's own
/// rendering repeats it with the whole status object).
trait KubeContext<T> {
    fn kube_context(self, what: impl FnOnce() -> String) -> anyhow::Result<T>;
}

impl<T> KubeContext<T> for Result<T, kube::Error> {
    fn kube_context(self, what: impl FnOnce() -> String) -> anyhow::Result<T> {
        self.map_err(|e| match e {
            kube::Error::Api(s) => anyhow::anyhow!("{}: {}", what(), s.message),
            other => anyhow::Error::new(other).context(what()),
        })
    }
}

/// A client and the namespace to work in.
async fn connect(args: &ClusterArgs) -> anyhow::Result<(kube::Client, String)> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let kubeconfig = crate::release::kubeconfig(args.kubeconfig.as_deref(), &cwd);
    let client = bosun_runtime::connect::client(kubeconfig.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!(one_line(e)))?;
    let ns = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    Ok((client, ns))
}

/// The Plugins API of `ns`, checked to be served (the CRD is installed).
async fn plugins(client: &kube::Client, ns: &str) -> anyhow::Result<Api<Plugin>> {
    let api: Api<Plugin> = Api::namespaced(client.clone(), ns);
    // Probed as JSON: one unreadable object must not make every Plugin unreachable.
    match raw(&api, ns).list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(api),
        Err(kube::Error::Api(e)) if e.code == 404 => bail!(
            "the cluster does not serve Plugins (bosun.dev/v1alpha1): install the CRD with \
             `kubectl apply -f deploy/crds/plugin.yaml`"
        ),
        Err(e) => Err(e).kube_context(|| format!("cannot list Plugins in {ns}")),
    }
}

/// The Plugins of `api` as JSON objects, read one by one (see [`read`]).
fn raw(api: &Api<Plugin>, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        api.clone().into_client(),
        ns,
        &ApiResource::erase::<Plugin>(&()),
    )
}

/// A Plugin read from its JSON, or why it does not read as one (naming the field).
fn read(object: &DynamicObject) -> Result<Plugin, crd::Unreadable> {
    let value = serde_json::to_value(object).map_err(|e| crd::Unreadable {
        path: ".".to_owned(),
        message: e.to_string(),
    })?;
    crd::parse(&value)
}

async fn get_plugin(api: &Api<Plugin>, ns: &str, name: &str) -> anyhow::Result<Plugin> {
    let object = raw(api, ns)
        .get_opt(name)
        .await
        .kube_context(|| format!("cannot read Plugin {ns}/{name}"))?
        .with_context(|| format!("Plugin {ns}/{name} not found"))?;
    read(&object).map_err(|e| {
        anyhow::anyhow!(
            "Plugin {ns}/{name} is not a valid Plugin ({e}): fix it with `kubectl edit plugin {name} -n {ns}`, or push again"
        )
    })
}

/// Applies the fields of a Plugin spec this command owns. Fields it leaves out (limits,
/// targetSelector, dryRun) stay as an admin set them.
async fn apply_plugin(
    api: &Api<Plugin>,
    ns: &str,
    name: &str,
    spec: Value,
) -> anyhow::Result<Plugin> {
    let body = json!({
        "apiVersion": "bosun.dev/v1alpha1",
        "kind": "Plugin",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    });
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .kube_context(|| format!("cannot apply Plugin {ns}/{name}"))
}

/// The merge patch that takes a Plugin over in one step: `source` replacing any other
/// kind of source, and every other field of `owned` (a spec from [`owned_spec`]) as it
/// is there, `current`'s keys that `owned` lacks removed (an old canary's selector, say).
fn take_over_patch(source: &crd::Source, current: &Value, owned: &Value) -> Value {
    let mut patch = source.take_over_patch();
    for (key, value) in owned.as_object().into_iter().flatten() {
        if key != "source" {
            patch["spec"][key] = replacing(&current[key], value);
        }
    }
    patch
}

/// A JSON merge patch that turns `old` into `new`: objects are patched key by key (a key
/// only `old` has is removed), anything else is replaced.
fn replacing(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch: serde_json::Map<String, Value> = old
                .keys()
                .filter(|k| !new.contains_key(*k))
                .map(|k| (k.clone(), Value::Null))
                .collect();
            for (k, v) in new {
                let v = match old.get(k) {
                    Some(o) => replacing(o, v),
                    None => v.clone(),
                };
                patch.insert(k.clone(), v);
            }
            Value::Object(patch)
        }
        _ => new.clone(),
    }
}

fn owned_spec(
    source: &crd::Source,
    world: crd::World,
    config: Option<&Value>,
    permissions: &[crd::Permission],
    rollout: &Rollout,
) -> anyhow::Result<Value> {
    let mut spec = json!({
        "source": serde_json::to_value(source)?,
        "world": serde_json::to_value(world)?,
        "permissions": serde_json::to_value(permissions)?,
        "rollout": serde_json::to_value(rollout)?,
    });
    if let Some(config) = config {
        spec["config"] = config.clone();
    }
    Ok(spec)
}

fn now() -> String {
    use bosun_api::time::rfc3339;
    use bosun_host::host::clock::{Clock, System};
    rfc3339(System.now_ms())
}

/// Errors of the host library can span lines (compiler output); a CLI error is one line.
fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// `bosun plugin push`.
pub fn push(args: &PushArgs) -> anyhow::Result<ExitCode> {
    // Flags first: a typo costs nothing.
    let rollout = args.rollout()?;
    let config = args.config()?;
    let path = &args.file;
    let source = super::component(path)?;
    let engine = args.engine.engine()?;
    let revision =
        Revision::inspect(&engine, &source, Spec::new(Services::offline())).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a Bosun plugin component: {}",
                path.display(),
                one_line(e)
            )
        })?;
    let meta = revision.metadata();
    if meta.name != args.name {
        bail!(
            "{} is the plugin {:?}, not {:?}: pass --name {} or push the right file",
            path.display(),
            meta.name,
            args.name,
            meta.name
        );
    }
    let digest = source.digest();
    let size = source.bytes.len();
    if size > MAX_COMPONENT_BYTES {
        bail!(
            "{} is {size} bytes, too big for a ConfigMap (at most {MAX_COMPONENT_BYTES}: Kubernetes \
             limits a ConfigMap to 1 MiB): serve it over http(s) and set the Plugin's source.url \
             with sha256 {}",
            path.display(),
            hex_of(&digest)
        );
    }
    let world = revision.info().world;
    let permissions: Vec<crd::Permission> = meta
        .permissions
        .iter()
        .map(|p| crd::Permission {
            api_version: p.api_version.clone(),
            kind: p.kind.clone(),
            verbs: p.verbs.iter().map(|v| v.as_str().to_owned()).collect(),
        })
        .collect();
    let name = args.name.clone();
    let bytes = source.bytes.to_vec();

    let span = tracing::info_span!("bosun.cli.plugin_push", plugin = %name, digest = %digest);
    let report = block_on(span, async {
        let (client, ns) = connect(&args.cluster).await?;
        let plugins = plugins(&client, &ns).await?;
        // Read as JSON: a push repairs an object that does not read as a Plugin.
        let existing = raw(&plugins, &ns)
            .get_opt(&name)
            .await
            .kube_context(|| format!("cannot read Plugin {ns}/{name}"))?;

        let cm_name = configmap_name(&name, &digest);
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let cm_existed = configmaps
            .get_opt(&cm_name)
            .await
            .kube_context(|| format!("cannot read ConfigMap {ns}/{cm_name}"))?
            .is_some();
        let hex = hex_of(&digest);
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(cm_name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(BTreeMap::from([
                    (keys::PLUGIN_LABEL.to_owned(), name.clone()),
                    (
                        keys::DIGEST_LABEL.to_owned(),
                        hex[..hex.len().min(63)].to_owned(),
                    ),
                ])),
                annotations: Some(BTreeMap::from([(
                    keys::DIGEST_LABEL.to_owned(),
                    digest.clone(),
                )])),
                ..ObjectMeta::default()
            },
            immutable: Some(true),
            binary_data: Some(BTreeMap::from([(
                keys::CONFIGMAP_KEY.to_owned(),
                ByteString(bytes),
            )])),
            ..ConfigMap::default()
        };
        let mut cm_value = serde_json::to_value(&cm)?;
        cm_value["apiVersion"] = json!("v1");
        cm_value["kind"] = json!("ConfigMap");
        configmaps
            .patch(
                &cm_name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&cm_value),
            )
            .await
            .kube_context(|| format!("cannot apply ConfigMap {ns}/{cm_name}"))?;

        // Without --config the Plugin keeps the config it has.
        let config = config.or_else(|| {
            existing
                .as_ref()
                .and_then(|p| p.data.pointer("/spec/config"))
                .filter(|c| !c.is_null())
                .cloned()
        });
        let source = crd::Source::ConfigMap {
            name: cm_name.clone(),
            key: keys::CONFIGMAP_KEY.to_owned(),
            sha256: digest.clone(),
        };
        let spec = owned_spec(&source, world, config.as_ref(), &permissions, &rollout)?;
        if let Some(existing) = &existing {
            // The push takes the source over (the plugins folder's file source, say):
            // a Plugin has one source, whoever wrote the other. The same patch sets the
            // rest of the spec: the runtime acts on every version it sees, and a new
            // source under the old rollout or grants would be rolled out directly, or
            // refused, before the apply below.
            plugins
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(take_over_patch(&source, &existing.data["spec"], &spec)),
                )
                .await
                .kube_context(|| format!("cannot take over the source of Plugin {ns}/{name}"))?;
        }
        apply_plugin(&plugins, &ns, &name, spec).await?;
        Ok((ns, cm_name, cm_existed, existing.is_some()))
    })?;
    let (ns, cm_name, cm_existed, plugin_existed) = report;
    println!("digest     {digest} ({size} bytes)");
    println!(
        "configmap  {ns}/{cm_name} ({})",
        if cm_existed {
            "already stored"
        } else {
            "created"
        }
    );
    println!(
        "plugin     {ns}/{name} ({}), world {}",
        if plugin_existed { "updated" } else { "created" },
        crd::World::as_str(world)
    );
    for p in &permissions {
        println!(
            "grants     {} on {}/{}",
            p.verbs.join(", "),
            p.api_version,
            p.kind
        );
    }
    println!("rollout    {}", describe_rollout(&rollout));
    Ok(ExitCode::SUCCESS)
}

/// `bosun plugin status`.
pub fn status(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let span = tracing::info_span!("bosun.cli.plugin_status");
    let (ns, list, unreadable) = block_on(span, async {
        let (client, ns) = connect(&args.cluster).await?;
        let api = plugins(&client, &ns).await?;
        let (list, unreadable) = match &args.name {
            Some(name) => (vec![get_plugin(&api, &ns, name).await?], Vec::new()),
            None => {
                let objects = raw(&api, &ns)
                    .list(&ListParams::default())
                    .await
                    .kube_context(|| format!("cannot list Plugins in {ns}"))?
                    .items;
                let (mut items, mut unreadable) = (Vec::new(), Vec::new());
                for object in &objects {
                    match read(object) {
                        Ok(p) => items.push(p),
                        Err(e) => {
                            unreadable.push((object.metadata.name.clone().unwrap_or_default(), e))
                        }
                    }
                }
                items.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
                unreadable.sort_by(|a, b| a.0.cmp(&b.0));
                (items, unreadable)
            }
        };
        Ok((ns, list, unreadable))
    })?;
    // The readable ones are shown; each one that is not is named once, on stderr.
    for (name, e) in &unreadable {
        eprintln!("Plugin {ns}/{name} is not a valid Plugin: {e}");
    }
    if args.json {
        let out: Vec<Value> = list
            .iter()
            .map(|p| {
                json!({
                    "namespace": p.metadata.namespace,
                    "name": p.metadata.name,
                    "status": p.status,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() && unreadable.is_empty() {
        println!("no Plugin in namespace {ns}");
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", status_table(&list));
    if list.iter().all(|p| {
        p.status
            .as_ref()
            .is_none_or(|s| *s == crd::PluginStatus::default())
    }) {
        eprintln!("no status yet: no Bosun runtime has reported on these Plugins");
    }
    Ok(ExitCode::SUCCESS)
}

/// `bosun plugin history`.
pub fn history(args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let span = tracing::info_span!("bosun.cli.plugin_history", plugin = %args.name);
    let (ns, plugin) = block_on(span, async {
        let (client, ns) = connect(&args.cluster).await?;
        let api = plugins(&client, &ns).await?;
        let plugin = get_plugin(&api, &ns, &args.name).await?;
        Ok((ns, plugin))
    })?;
    let history = plugin.status.map(|s| s.history).unwrap_or_default();
    if history.is_empty() {
        println!(
            "Plugin {ns}/{} has no history yet (no Bosun runtime has reported on it)",
            args.name
        );
    } else {
        print!("{}", history_table(&history));
    }
    Ok(ExitCode::SUCCESS)
}

async fn annotate(api: &Api<Plugin>, ns: &str, name: &str, key: &str) -> anyhow::Result<String> {
    let at = now();
    let patch = json!({"metadata": {"annotations": {key: at}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .kube_context(|| format!("cannot annotate Plugin {ns}/{name}"))?;
    Ok(at)
}

/// `bosun plugin promote`.
pub fn promote(args: &PromoteArgs) -> anyhow::Result<ExitCode> {
    let name = &args.name;
    let span = tracing::info_span!("bosun.cli.plugin_promote", plugin = %name);
    let (ns, canary, at) = block_on(span, async {
        let (client, ns) = connect(&args.cluster).await?;
        let api = plugins(&client, &ns).await?;
        let plugin = get_plugin(&api, &ns, name).await?;
        let Some(canary) = plugin.status.and_then(|s| s.canary_revision) else {
            bail!(
                "Plugin {ns}/{name} has no canary to promote: its status shows none running \
                 (push one with `bosun plugin push FILE --name {name} --canary 10%`)"
            );
        };
        let at = annotate(&api, &ns, name, keys::PROMOTE_ANNOTATION).await?;
        Ok((ns, canary, at))
    })?;
    println!(
        "asked the runtime to promote {} on Plugin {ns}/{name} ({}={at})",
        short(&canary),
        keys::PROMOTE_ANNOTATION
    );
    Ok(ExitCode::SUCCESS)
}

/// `bosun plugin rollback`.
pub fn rollback(args: &RollbackArgs) -> anyhow::Result<ExitCode> {
    let name = &args.name;
    if let Some(to) = &args.to {
        digest_prefix(to)?;
    }
    let span = tracing::info_span!("bosun.cli.plugin_rollback", plugin = %name);
    let message = block_on(span, async {
        let (client, ns) = connect(&args.cluster).await?;
        let api = plugins(&client, &ns).await?;
        let plugin = get_plugin(&api, &ns, name).await?;
        let Some(to) = &args.to else {
            let at = annotate(&api, &ns, name, keys::ROLLBACK_ANNOTATION).await?;
            let what = match plugin
                .status
                .as_ref()
                .and_then(|s| s.canary_revision.as_deref())
            {
                Some(c) => format!("abort the canary {}", short(c)),
                None => "return to the previous stable revision".to_owned(),
            };
            return Ok(format!(
                "asked the runtime to {what} on Plugin {ns}/{name} ({}={at})",
                keys::ROLLBACK_ANNOTATION
            ));
        };
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let selector = format!("{}={name}", keys::PLUGIN_LABEL);
        let items = configmaps
            .list(&ListParams::default().labels(&selector))
            .await
            .kube_context(|| format!("cannot list the ConfigMaps of Plugin {ns}/{name}"))?
            .items;
        let stored: Vec<Stored> = items.iter().filter_map(Stored::of).collect();
        let target =
            find_revision(to, &stored).map_err(|e| e.context(format!("Plugin {ns}/{name}")))?;
        let sha256 =
            full_digest(target, &items).map_err(|e| anyhow::anyhow!("Plugin {ns}/{name}: {e}"))?;
        let source = crd::Source::ConfigMap {
            name: target.configmap.clone(),
            key: keys::CONFIGMAP_KEY.to_owned(),
            sha256,
        };
        let spec = &plugin.spec;
        let owned = owned_spec(
            &source,
            spec.world,
            spec.config.as_ref(),
            &spec.permissions,
            &Rollout::default(),
        )?;
        apply_plugin(&api, &ns, name, owned).await?;
        Ok(format!(
            "Plugin {ns}/{name} now runs {} from ConfigMap {ns}/{} (rollout direct)",
            target.digest, target.configmap
        ))
    })?;
    println!("{message}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_takes_the_plugin_over_in_one_patch() {
        // The plugins folder's Plugin: a file source, a direct rollout, an old canary
        // block left by an admin, fewer grants.
        let current = json!({
            "source": {"file": {"path": "zone-labeler.wasm"}},
            "world": "controller",
            "permissions": [{"apiVersion": "v1", "kind": "Pod", "verbs": ["read"]}],
            "rollout": {"strategy": "direct", "canary": {"selector": {"matchLabels": {"a": "b"}}}},
            "config": {"label": "x"},
            "limits": {"deadlineMs": 500},
        });
        let source = crd::Source::ConfigMap {
            name: "bosun-plugin-zone-labeler-0123456789ab".to_owned(),
            key: keys::CONFIGMAP_KEY.to_owned(),
            sha256: format!("sha256:{}", "0".repeat(64)),
        };
        let rollout = Rollout {
            strategy: Strategy::Canary,
            canary: Some(Canary {
                share: Some(20),
                ..Canary::default()
            }),
        };
        let permissions = [crd::Permission {
            api_version: "v1".to_owned(),
            kind: "Pod".to_owned(),
            verbs: vec!["read".to_owned(), "patch".to_owned()],
        }];
        let owned = owned_spec(
            &source,
            crd::World::Controller,
            None,
            &permissions,
            &rollout,
        )
        .expect("spec");
        let patch = take_over_patch(&source, &current, &owned);
        let mut merged = json!({"spec": current});
        json_merge(&mut merged, &patch);
        let spec = &merged["spec"];
        assert_eq!(spec["source"], owned["source"], "{patch}");
        assert_eq!(spec["rollout"], owned["rollout"], "{patch}");
        assert_eq!(spec["permissions"], owned["permissions"], "{patch}");
        assert_eq!(
            spec["config"],
            json!({"label": "x"}),
            "kept without --config"
        );
        assert_eq!(
            spec["limits"],
            json!({"deadlineMs": 500}),
            "not the push's field"
        );
    }

    /// RFC 7386.
    fn json_merge(target: &mut Value, patch: &Value) {
        let Value::Object(patch) = patch else {
            *target = patch.clone();
            return;
        };
        if !target.is_object() {
            *target = json!({});
        }
        let target = target.as_object_mut().expect("an object");
        for (k, v) in patch {
            if v.is_null() {
                target.remove(k);
            } else {
                json_merge(target.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }

    #[test]
    fn shares_are_whole_percentages_from_1_to_100() {
        assert_eq!(parse_share("20%").ok(), Some(20));
        assert_eq!(parse_share("20").ok(), Some(20));
        assert_eq!(parse_share("100%").ok(), Some(100));
        for bad in ["0", "0%", "150%", "101", "-5", "12.5%", "%", "abc"] {
            let err = parse_share(bad).expect_err(bad);
            assert!(err.to_string().contains("`20%`"), "{err}");
        }
    }

    #[test]
    fn selectors_and_rates_parse_or_name_the_form() {
        let labels = parse_selector("track=canary, zone=a").expect("parses");
        assert_eq!(labels.get("track").map(String::as_str), Some("canary"));
        assert_eq!(labels.get("zone").map(String::as_str), Some("a"));
        for bad in ["", "track", "=x", "a=b,,c=d"] {
            assert!(parse_selector(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_rate("--f", "0.05").ok(), Some(0.05));
        assert_eq!(parse_rate("--f", "5%").ok(), Some(0.05));
        assert!(parse_rate("--f", "1.5").is_err());
        assert!(parse_rate("--f", "x").is_err());
    }

    fn stored(digest: &str) -> Stored {
        Stored {
            digest: digest.to_owned(),
            configmap: configmap_name("p", digest),
        }
    }

    #[test]
    fn revisions_are_found_by_a_unique_prefix() {
        let a = format!("sha256:{}", "ab".repeat(32));
        let b = format!("sha256:abab1234{}", "0".repeat(56));
        let all = [stored(&a), stored(&b)];
        assert_eq!(find_revision(&a, &all).expect("full").digest, a);
        assert_eq!(find_revision("abab1234", &all).expect("prefix").digest, b);
        assert_eq!(
            find_revision("sha256:ABABABAB", &all)
                .expect("upper case")
                .digest,
            a
        );
        let twice = [stored(&a), stored(&a)];
        let once = find_revision("abababab", &twice).expect("one digest");
        assert_eq!(once.digest, a);
        let err = find_revision("abab", &all).expect_err("too short");
        assert!(err.to_string().contains("at least its first 8"), "{err}");
        let err = find_revision("deadbeef", &all).expect_err("unknown");
        assert!(
            err.to_string().contains(&a) && err.to_string().contains(&b),
            "{err}"
        );
        // A label keeps 63 digits: the full digest still finds it.
        let label_only = Stored {
            digest: "ab".repeat(32)[..63].to_owned(),
            configmap: "x".into(),
        };
        assert_eq!(
            find_revision(&a, std::slice::from_ref(&label_only))
                .expect("label")
                .configmap,
            "x"
        );
    }

    #[test]
    fn a_rollback_names_the_full_digest_of_the_revision() {
        let bytes = b"\0asm component".to_vec();
        let digest = bosun_host::load::digest(&bytes);
        let cm = |name: &str, data: &[u8]| ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            binary_data: Some(BTreeMap::from([(
                keys::CONFIGMAP_KEY.to_owned(),
                ByteString(data.to_vec()),
            )])),
            ..ConfigMap::default()
        };
        // From the annotation.
        let annotated = stored(&digest);
        assert_eq!(full_digest(&annotated, &[]), Ok(digest.clone()));
        // From the bytes, when only the 63-digit label says which revision it is.
        let label_only = Stored {
            digest: hex_of(&digest)[..63].to_owned(),
            configmap: "old".into(),
        };
        assert_eq!(
            full_digest(&label_only, &[cm("old", &bytes)]),
            Ok(digest.clone())
        );
        // Bytes that are another revision than the label says.
        let e = full_digest(&label_only, &[cm("old", b"other")]).expect_err("other bytes");
        assert!(e.contains("not the revision its label names"), "{e}");
        let e = full_digest(&label_only, &[]).expect_err("gone");
        assert!(e.contains("push that revision again"), "{e}");
    }

    #[test]
    fn two_revisions_sharing_a_prefix_need_more_digits() {
        let a = format!("sha256:12345678{}", "a".repeat(56));
        let b = format!("sha256:12345678{}", "b".repeat(56));
        let err = find_revision("12345678", &[stored(&a), stored(&b)]).expect_err("ambiguous");
        assert!(err.to_string().contains("more digits"), "{err}");
    }

    #[test]
    fn the_status_table_shows_revisions_conditions_and_counters() {
        let plugin: Plugin = serde_json::from_value(json!({
            "apiVersion": "bosun.dev/v1alpha1", "kind": "Plugin",
            "metadata": {"name": "zone-labeler", "namespace": "default"},
            "spec": {"source": {"configMap": {"name": "cm", "key": keys::CONFIGMAP_KEY,
                "sha256": format!("sha256:{}", "2".repeat(64))}}, "world": "controller"},
            "status": {
                "stableRevision": format!("sha256:{}", "1".repeat(64)),
                "canaryRevision": format!("sha256:{}", "2".repeat(64)),
                "canaryShare": 20,
                "revisions": {format!("sha256:{}", "2".repeat(64)): {"reconciles": 40, "errors": 9, "traps": 1, "refused": 0}},
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Serving", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": "Degraded", "status": "True", "reason": "CanaryFailing", "message": "error rate 0.22 over 0.05", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                ],
            },
        }))
        .expect("plugin");
        let text = status_table(&[plugin]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let fields: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            &fields[..7],
            [
                "zone-labeler",
                "controller",
                "111111111111",
                "222222222222@20%",
                "True",
                "-",
                "True"
            ],
            "{text}"
        );
        assert!(
            lines[1].ends_with("CanaryFailing: error rate 0.22 over 0.05"),
            "{text}"
        );
        assert!(
            lines[2].contains("222222222222") && lines[2].contains("errors=9"),
            "{text}"
        );
    }
}
