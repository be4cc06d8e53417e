//! Plugin objects (`bosun.dev/v1alpha1` `Plugin`): the runtime drives each one through
//! fetch (and verify) → compile → init → serve, with its rollout (direct or canary), and
//! writes what happened into its status: stable and canary revisions, per-revision
//! counters, conditions (Ready, Progressing, Degraded with the reason) and history.
//!
//! Annotations ask for actions: `bosun.dev/promote` promotes the canary now,
//! `bosun.dev/rollback` aborts the canary (or, with none, goes back to the previous
//! revision). `bosun plugin push|promote|rollback` set them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, UNIX_EPOCH};

use bosun_host::host::clock::{Clock, System, rfc3339};
use bosun_host::load::Source as Bytes;
use bosun_host::registry::Outcome;
use bosun_host::{Revision, World};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};

use crate::crd::{
    Condition, HistoryEntry, Plugin, PluginStatus, RevisionCounters, Source, Strategy,
};
use crate::gray::{Analysis, Judgement, Split};
use crate::informer::Kind;
use crate::runtime::Runtime;

/// The annotation that promotes a canary (its value: when it was asked).
pub const PROMOTE: &str = "bosun.dev/promote";
/// The annotation that rolls back (its value: when it was asked).
pub const ROLLBACK: &str = "bosun.dev/rollback";
/// The label `bosun plugin push` puts on a plugin's ConfigMap: the digest's hex
/// (its first 63 characters, the longest label value).
pub const DIGEST_LABEL: &str = "bosun.dev/digest";

/// The kind of Plugin objects.
pub fn kind() -> Kind {
    Kind::new("bosun.dev/v1alpha1", "Plugin")
}

#[derive(Default)]
struct Seen {
    version: String,
    promote: Option<String>,
    rollback: Option<String>,
    problem: Option<(String, String)>,
    status: Option<PluginStatus>,
    written: Option<std::time::Instant>,
}

/// Counters alone are written at most this often.
const COUNTERS_EVERY: Duration = Duration::from_secs(10);

/// Drives Plugin objects until the runtime is gone.
pub(crate) async fn run(runtime: Weak<Runtime>, client: kube::Client) {
    let mut seen: HashMap<(String, String), Seen> = HashMap::new();
    loop {
        // Cheap when nothing changed: a spec is applied once, status written on change.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(rt) = runtime.upgrade() else { return };
        if !rt.is_leader() {
            continue;
        }
        for (target, _) in rt.informers().keys(&kind()) {
            let Some(json) = rt.informers().get(&target) else {
                continue;
            };
            let plugin: Plugin = match serde_json::from_str(&json) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(plugin = %target, error = %e, "unreadable Plugin object");
                    continue;
                }
            };
            let ns = target.namespace.clone().unwrap_or_default();
            let entry = seen.entry((ns, target.name.clone())).or_default();
            drive(&rt, &client, &plugin, entry).await;
        }
    }
}

fn now_rfc3339() -> String {
    rfc3339(System.now_ms())
}

fn annotation(p: &Plugin, key: &str) -> Option<String> {
    p.metadata.annotations.as_ref()?.get(key).cloned()
}

/// The plugin's bytes, checked against the digest its source names.
async fn fetch(
    client: &kube::Client,
    ns: &str,
    source: &Source,
) -> Result<Bytes, (String, String)> {
    match source {
        Source::File { path } => {
            let bytes = std::fs::read(path)
                .map_err(|e| ("FetchFailed".to_owned(), format!("file {path}: {e}")))?;
            Ok(Bytes {
                origin: path.clone(),
                bytes: bytes.into(),
            })
        }
        Source::ConfigMap { name, key } => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
            let cm = api.get_opt(name).await.map_err(|e| {
                (
                    "FetchFailed".to_owned(),
                    format!("ConfigMap {ns}/{name}: {e}"),
                )
            })?;
            let Some(cm) = cm else {
                return Err((
                    "FetchFailed".to_owned(),
                    format!("ConfigMap {ns}/{name} does not exist"),
                ));
            };
            let bytes = cm
                .binary_data
                .as_ref()
                .and_then(|b| b.get(key))
                .map(|b| b.0.clone())
                .ok_or_else(|| {
                    (
                        "FetchFailed".to_owned(),
                        format!("ConfigMap {ns}/{name} has no binaryData key {key:?}"),
                    )
                })?;
            let source = Bytes {
                origin: format!("configmap {ns}/{name}"),
                bytes: bytes.into(),
            };
            if let Some(want) = cm
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(DIGEST_LABEL))
            {
                let digest = source.digest();
                if !digest
                    .trim_start_matches("sha256:")
                    .starts_with(want.as_str())
                {
                    return Err((
                        "DigestMismatch".to_owned(),
                        format!(
                            "ConfigMap {ns}/{name} says {DIGEST_LABEL}={want} but its bytes are {digest}; refusing to serve them"
                        ),
                    ));
                }
            }
            Ok(source)
        }
        Source::Url { url, sha256 } => fetch_url(url, sha256).await,
        Source::Oci { reference } => Err((
            "SourceUnsupported".to_owned(),
            format!(
                "OCI sources ({reference}) are not fetched by this runtime yet; push the plugin as a ConfigMap (bosun plugin push)"
            ),
        )),
    }
}

/// The largest plugin fetched by URL.
const MAX_URL_BYTES: usize = 64 * 1024 * 1024;

/// GETs `url` (http or https, the system's CA roots) and checks the bytes' sha256.
async fn fetch_url(url: &str, sha256: &str) -> Result<Bytes, (String, String)> {
    use http_body_util::BodyExt;
    let fail = |m: String| ("FetchFailed".to_owned(), m);
    let want = sha256
        .trim()
        .trim_start_matches("sha256:")
        .to_ascii_lowercase();
    if want.len() != 64 || !want.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err((
            "InvalidSource".to_owned(),
            format!("source.url.sha256 {sha256:?} is not a sha256 (64 hex digits)"),
        ));
    }
    let uri: hyper::Uri = url.parse().map_err(|e| {
        (
            "InvalidSource".to_owned(),
            format!("source.url {url:?}: {e}"),
        )
    })?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| fail(format!("no CA roots to check {url} with: {e}")))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https);
    let response = tokio::time::timeout(Duration::from_secs(30), client.get(uri))
        .await
        .map_err(|_| fail(format!("GET {url}: no answer within 30 s")))?
        .map_err(|e| fail(format!("GET {url}: {e}")))?;
    if !response.status().is_success() {
        return Err(fail(format!("GET {url}: {}", response.status())));
    }
    let body = tokio::time::timeout(
        Duration::from_secs(120),
        http_body_util::Limited::new(response.into_body(), MAX_URL_BYTES).collect(),
    )
    .await
    .map_err(|_| fail(format!("GET {url}: the body took over 120 s")))?
    .map_err(|e| fail(format!("GET {url}: {e} (limit {MAX_URL_BYTES} bytes)")))?
    .to_bytes();
    let source = Bytes {
        origin: url.to_owned(),
        bytes: body.to_vec().into(),
    };
    let digest = source.digest();
    if digest.trim_start_matches("sha256:") != want {
        return Err((
            "DigestMismatch".to_owned(),
            format!(
                "{url} has {digest}, not the sha256 the Plugin names ({want}); refusing to serve it"
            ),
        ));
    }
    Ok(source)
}

fn world_of(w: crate::crd::World) -> World {
    match w {
        crate::crd::World::Controller => World::Controller,
        crate::crd::World::Admission => World::Admission,
        crate::crd::World::PodAgent => World::PodAgent,
    }
}

/// What the plugin's metadata asks for that the Plugin object does not grant.
fn missing_grants(p: &Plugin, revision: &Revision) -> Vec<String> {
    let mut missing = Vec::new();
    for asked in &revision.metadata().permissions {
        for verb in &asked.verbs {
            let granted = p.spec.permissions.iter().any(|g| {
                g.api_version == asked.api_version
                    && (g.kind == asked.kind || g.kind == "*")
                    && g.verbs.iter().any(|v| v == verb.as_str() || v == "*")
            });
            if !granted {
                missing.push(format!(
                    "{} on {}/{}",
                    verb.as_str(),
                    asked.api_version,
                    asked.kind
                ));
            }
        }
    }
    missing
}

fn analysis_of(p: &Plugin) -> Result<(Split, Analysis), String> {
    let canary = p.spec.rollout.canary.clone().unwrap_or_default();
    let split = match (&canary.selector, canary.share) {
        (Some(sel), _) => {
            let text: Vec<String> = sel
                .match_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            Split::Selector(
                bosun_host::selector::Selector::parse(&text.join(","))
                    .map_err(|e| format!("rollout.canary.selector: {e}"))?,
            )
        }
        (None, Some(share)) if (1..=100).contains(&share) => Split::Share(share),
        (None, Some(share)) => {
            return Err(format!(
                "rollout.canary.share {share} is not a percentage of keys: use 1 to 100"
            ));
        }
        (None, None) => Split::Share(10),
    };
    let d = Analysis::default();
    let a = &canary.analysis;
    for (name, v) in [
        ("maxErrorRate", a.max_error_rate),
        ("maxTrapRate", a.max_trap_rate),
        ("maxRefusedRate", a.max_refused_rate),
    ] {
        if let Some(v) = v
            && !(0.0..=1.0).contains(&v)
        {
            return Err(format!(
                "rollout.canary.analysis.{name} {v} is not a rate: use 0 to 1"
            ));
        }
    }
    Ok((
        split,
        Analysis {
            max_error_rate: a.max_error_rate.unwrap_or(d.max_error_rate),
            max_trap_rate: a.max_trap_rate.unwrap_or(d.max_trap_rate),
            max_refused_rate: a.max_refused_rate.unwrap_or(d.max_refused_rate),
            min_samples: a.min_samples.unwrap_or(d.min_samples),
            window: a.window_seconds.map_or(d.window, Duration::from_secs),
            manual: canary.manual_promotion,
        },
    ))
}

async fn apply_spec(
    rt: &Runtime,
    client: &kube::Client,
    p: &Plugin,
) -> Result<(), (String, String)> {
    let name = p.metadata.name.clone().unwrap_or_default();
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let canary = if p.spec.rollout.strategy == Strategy::Canary {
        Some(analysis_of(p).map_err(|m| ("InvalidRollout".to_owned(), m))?)
    } else {
        None
    };
    let source = fetch(client, &ns, &p.spec.source).await?;
    let config = config_of(p);
    let digest = source.digest();
    // Already serving exactly this (stable, or as the canary)?
    if let Some(current) = rt.registry().current(&name)
        && current.digest() == digest
        && current.config() == config
    {
        if rt.gray.route(&name).is_some() {
            // The spec went back to the stable revision: the canary ends.
            let _ = rt.abort_canary(&name, "the Plugin's source is the stable revision again");
        }
        return Ok(());
    }
    if let Some(route) = rt.gray.route(&name)
        && route.canary.digest() == digest
        && route.canary.config() == config
    {
        return Ok(());
    }
    if p.spec.rollout.strategy == Strategy::Shadow {
        if rt.registry().current(&name).is_none() {
            return Err((
                "InvalidRollout".to_owned(),
                "a shadow needs a stable revision to compare with: roll the first revision out directly".to_owned(),
            ));
        }
        let (rt_src, cfg) = (source.clone(), config.clone());
        let shadow = rt
            .shadow(&rt_src, &cfg)
            .map_err(|e| ("LoadFailed".to_owned(), e.to_string()))?;
        if let Err(problem) = admissible(p, &shadow, &name) {
            rt.gray.end(&name);
            return Err(problem);
        }
        return Ok(());
    }
    let mut spec = rt.spec();
    spec.config = config;
    if let Some(l) = &p.spec.limits {
        if let Some(ms) = l.deadline_ms {
            spec.limits.deadline = Duration::from_millis(ms);
        }
        if let Some(bytes) = l.memory_bytes {
            spec.limits.memory_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        }
    }
    let revision = Arc::new(load(rt, &source, spec, &name).await?);
    if let Err((reason, why)) = admissible(p, &revision, &name) {
        rt.registry()
            .record_failure(&name, &digest, &source.origin, &why);
        return Err((reason, why));
    }
    if canary.is_some()
        && rt.registry().current(&name).is_none()
        && let Some(stable) = p.status.as_ref().and_then(|s| s.stable_revision.clone())
        && stable != digest
    {
        // A restarted runtime: the stable revision comes back first, then the canary
        // resumes with the same split.
        restore_stable(rt, client, p, &stable).await?;
    }
    match canary {
        Some((split, analysis)) if rt.registry().current(&name).is_some() => {
            rt.start_canary(revision, split, analysis)
                .map_err(|e| ("LoadFailed".to_owned(), e.to_string()))?;
        }
        _ => {
            if rt.gray.route(&name).is_some() {
                let _ = rt.abort_canary(&name, "replaced by a direct rollout");
            }
            rt.registry().adopt(revision);
            rt.dispatcher.sync();
        }
    }
    Ok(())
}

/// The JSON handed to the plugin's `init`.
fn config_of(p: &Plugin) -> String {
    p.spec
        .config
        .as_ref()
        .map_or_else(|| "{}".to_owned(), serde_json::Value::to_string)
}

/// Loads (compile, link, metadata, init) off the async threads; a failure is recorded
/// in the plugin's history.
async fn load(
    rt: &Runtime,
    source: &Bytes,
    spec: bosun_host::load::Spec,
    name: &str,
) -> Result<Revision, (String, String)> {
    let engine = rt.registry().engine().clone();
    let (src, expected) = (source.clone(), name.to_owned());
    tokio::task::spawn_blocking(move || Revision::load_named(&engine, &src, spec, &expected))
        .await
        .map_err(|e| ("LoadFailed".to_owned(), e.to_string()))?
        .map_err(|e| {
            rt.registry().record_failure(
                name,
                &source.digest(),
                &source.origin,
                &e.cause.to_string(),
            );
            ("LoadFailed".to_owned(), e.to_string())
        })
}

/// Whether a loaded revision may serve as `p`: its world, its name, and the
/// permissions its metadata asks for against what the Plugin grants.
fn admissible(p: &Plugin, revision: &Revision, name: &str) -> Result<(), (String, String)> {
    let want = world_of(p.spec.world);
    if revision.info().world != want {
        return Err((
            "WorldMismatch".to_owned(),
            format!(
                "the component is a {} plugin but spec.world says {want}",
                revision.info().world
            ),
        ));
    }
    if revision.name() != name {
        return Err((
            "LoadFailed".to_owned(),
            format!(
                "the component is plugin {:?}, not {name:?}",
                revision.name()
            ),
        ));
    }
    let missing = missing_grants(p, revision);
    if !missing.is_empty() {
        return Err((
            "PermissionsNotGranted".to_owned(),
            format!(
                "the plugin asks for permissions spec.permissions does not grant: {}",
                missing.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Loads the revision `digest` of `p` from the ConfigMap `bosun plugin push` left for it.
async fn restore_stable(
    rt: &Runtime,
    client: &kube::Client,
    p: &Plugin,
    digest: &str,
) -> Result<(), (String, String)> {
    let name = p.metadata.name.clone().unwrap_or_default();
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let hex = digest.trim_start_matches("sha256:");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let list = api
        .list(&kube::api::ListParams::default().labels(&format!("bosun.dev/plugin={name}")))
        .await
        .map_err(|e| {
            (
                "FetchFailed".to_owned(),
                format!("listing the ConfigMaps of {name}: {e}"),
            )
        })?;
    let found = list.items.into_iter().find(|cm| {
        cm.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(DIGEST_LABEL))
            .is_some_and(|d| hex.starts_with(d.as_str()))
    });
    let Some(cm) = found else {
        return Err((
            "FetchFailed".to_owned(),
            format!(
                "the stable revision {digest} is not kept in any ConfigMap of {name}; push it again"
            ),
        ));
    };
    let source = Source::ConfigMap {
        name: cm.metadata.name.unwrap_or_default(),
        key: "plugin.wasm".to_owned(),
    };
    let bytes = fetch(client, &ns, &source).await?;
    let mut spec = rt.spec();
    spec.config = config_of(p);
    let revision = load(rt, &bytes, spec, &name).await?;
    rt.registry().adopt(Arc::new(revision));
    rt.dispatcher.sync();
    Ok(())
}

async fn drive(rt: &Arc<Runtime>, client: &kube::Client, p: &Plugin, seen: &mut Seen) {
    let name = p.metadata.name.clone().unwrap_or_default();
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let version = format!(
        "{}/{}",
        p.metadata.generation.unwrap_or_default(),
        serde_json::to_string(&p.spec).unwrap_or_default()
    );
    let first = seen.version.is_empty();
    if version != seen.version {
        let span = tracing::info_span!("bosun.plugins.apply", plugin = %format!("{ns}/{name}"));
        match tracing::Instrument::instrument(apply_spec(rt, client, p), span).await {
            Ok(()) => seen.problem = None,
            Err((reason, message)) => {
                tracing::warn!(plugin = %format!("{ns}/{name}"), reason = %reason, "{message}");
                seen.problem = Some((reason, message));
            }
        }
        seen.version = version;
    }
    // Annotations are requests: one seen when the runtime starts was already acted on
    // (or is stale), so only a change acts.
    let promote = annotation(p, PROMOTE);
    if !first
        && promote.is_some()
        && promote != seen.promote
        && let Err(e) = rt.promote(&name, "promoted by hand (bosun.dev/promote)")
    {
        tracing::warn!(plugin = %name, "{e}");
    }
    seen.promote = promote;
    let rollback = annotation(p, ROLLBACK);
    if !first && rollback.is_some() && rollback != seen.rollback {
        if rt.gray.route(&name).is_some() {
            let _ = rt.abort_canary(&name, "rolled back by hand (bosun.dev/rollback)");
        } else {
            match rt.registry().rollback(&name, None) {
                Ok(_) => rt.dispatcher.sync(),
                Err(e) => tracing::warn!(plugin = %name, "{e}"),
            }
        }
    }
    seen.rollback = rollback;
    let mut status = status_of(rt, &name, seen.problem.as_ref());
    // A condition keeps its transition time while its status stays.
    let now = now_rfc3339();
    for c in &mut status.conditions {
        c.last_transition_time = seen
            .status
            .as_ref()
            .and_then(|s| {
                s.conditions
                    .iter()
                    .find(|o| o.type_ == c.type_ && o.status == c.status)
            })
            .map_or_else(|| now.clone(), |o| o.last_transition_time.clone());
    }
    let only_counters = seen.status.as_ref().is_some_and(|old| {
        let mut a = old.clone();
        a.revisions = status.revisions.clone();
        a == status
    });
    let due = seen.written.is_none_or(|t| t.elapsed() >= COUNTERS_EVERY);
    if seen.status.as_ref() != Some(&status) && (!only_counters || due) {
        let api: Api<Plugin> = Api::namespaced(client.clone(), &ns);
        // A merge patch leaves out what it does not name: fields now empty are nulled.
        let mut value = serde_json::to_value(&status).unwrap_or_default();
        for field in ["stableRevision", "canaryRevision", "canaryShare"] {
            if let Some(obj) = value.as_object_mut() {
                obj.entry(field).or_insert(serde_json::Value::Null);
            }
        }
        let patch = serde_json::json!({ "status": value });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                seen.status = Some(status);
                seen.written = Some(std::time::Instant::now());
            }
            Err(e) => {
                tracing::warn!(plugin = %format!("{ns}/{name}"), error = %e, "cannot write the Plugin status")
            }
        }
    }
}

fn condition(type_: &str, on: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if on { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        // Set when written; the runtime does not track transitions across restarts.
        last_transition_time: String::new(),
    }
}

fn status_of(rt: &Runtime, name: &str, problem: Option<&(String, String)>) -> PluginStatus {
    let stable = rt.registry().current(name);
    let (route, judgement) = rt.canary_state(name);
    let mut revisions = BTreeMap::new();
    let counters = |r: &Revision| {
        let s = r.stats();
        RevisionCounters {
            reconciles: s.reconciles,
            errors: s.errors,
            traps: s.traps + s.timeouts + s.out_of_memory,
            refused: s.commands_refused,
        }
    };
    if let Some(s) = &stable {
        revisions.insert(s.digest().to_owned(), counters(s));
    }
    if let Some(r) = &route {
        revisions.insert(r.canary.digest().to_owned(), counters(&r.canary));
    }
    let mut conditions = vec![match &stable {
        Some(s) => condition(
            "Ready",
            true,
            "Serving",
            &format!("{} serves", bosun_host::host::log::short(s.digest())),
        ),
        None => condition("Ready", false, "NotServing", "no revision serves yet"),
    }];
    conditions.push(match (&route, &judgement) {
        (Some(_), Some(j)) => {
            let (reason, text) = match j {
                Judgement::Waiting(t) => ("CanaryAnalysis", t),
                Judgement::ReadyToPromote(t) => ("AwaitingPromotion", t),
                Judgement::Promote(t) | Judgement::RollBack(t) => ("CanaryAnalysis", t),
            };
            condition("Progressing", true, reason, text)
        }
        (Some(_), None) => condition(
            "Progressing",
            true,
            "CanaryStarted",
            "the analysis has not run yet",
        ),
        (None, Some(Judgement::Promote(t))) => condition("Progressing", false, "CanaryPromoted", t),
        (None, Some(Judgement::RollBack(t))) => {
            condition("Progressing", false, "CanaryRolledBack", t)
        }
        (None, _) => condition("Progressing", false, "Stable", "no canary in progress"),
    });
    conditions.push(match (problem, &judgement, &route) {
        (Some((reason, message)), _, _) => condition("Degraded", true, reason, message),
        (None, Some(Judgement::RollBack(t)), None) => {
            condition("Degraded", true, "CanaryRolledBack", t)
        }
        _ => condition("Degraded", false, "AsExpected", ""),
    });
    let history = rt
        .registry()
        .history(name)
        .into_iter()
        .map(|e| {
            let ms =
                e.at.duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
            let (outcome, reason) = match e.outcome {
                Outcome::Serving => ("Serving", None),
                Outcome::Replaced => ("Replaced", None),
                Outcome::RolledBack => ("RolledBackTo", None),
                Outcome::Failed(r) => ("Failed", Some(r)),
            };
            HistoryEntry {
                digest: e.digest,
                time: rfc3339(ms),
                outcome: outcome.to_owned(),
                reason,
            }
        })
        .collect();
    PluginStatus {
        stable_revision: stable.map(|s| s.digest().to_owned()),
        canary_revision: route.as_ref().map(|r| r.canary.digest().to_owned()),
        canary_share: route.as_ref().and_then(|r| match r.split {
            Split::Share(s) => Some(s),
            Split::Selector(_) | Split::Shadow => None,
        }),
        revisions,
        conditions,
        history,
    }
}

/// Embedded mode: every plugin the plugins folder loaded is published as a `Plugin`
/// object (a `file` source), so `bosun plugin status|push|promote|rollback` see and
/// manage folder plugins like any other. A plugin whose serving revision did not come
/// from the folder (a push took over) is left alone until the folder's file changes.
pub async fn mirror_folder(
    runtime: Weak<Runtime>,
    client: kube::Client,
    dir: std::path::PathBuf,
    namespace: String,
) {
    let mut published: HashMap<String, String> = HashMap::new();
    let api: Api<Plugin> = Api::namespaced(client, &namespace);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(rt) = runtime.upgrade() else { return };
        for name in rt.registry().names() {
            let Some(r) = rt.registry().current(&name) else {
                continue;
            };
            let Ok(path) = std::fs::canonicalize(&r.info().origin) else {
                continue;
            };
            if !path.starts_with(&dir)
                || published.get(&name).map(String::as_str) == Some(r.digest())
            {
                continue;
            }
            let world = match r.info().world {
                World::Controller => "controller",
                World::Admission => "admission",
                World::PodAgent => "pod-agent",
            };
            let permissions: Vec<serde_json::Value> = r
                .metadata()
                .permissions
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "apiVersion": p.api_version,
                        "kind": p.kind,
                        "verbs": p.verbs.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let config: serde_json::Value =
                serde_json::from_str(r.config()).unwrap_or_else(|_| serde_json::json!({}));
            let plugin = serde_json::json!({
                "apiVersion": "bosun.dev/v1alpha1", "kind": "Plugin",
                "metadata": {"name": name, "namespace": namespace,
                    "labels": {"bosun.dev/source": "plugins-folder"}},
                "spec": {
                    "source": {"file": {"path": path.display().to_string()}},
                    "world": world,
                    "config": config,
                    "permissions": permissions,
                    "rollout": {"strategy": "direct"},
                }
            });
            match api
                .patch(
                    &name,
                    &PatchParams::apply("bosun-plugins-folder").force(),
                    &Patch::Apply(&plugin),
                )
                .await
            {
                Ok(_) => {
                    tracing::info!(plugin = %name, "published the folder's plugin as a Plugin object");
                    published.insert(name, r.digest().to_owned());
                }
                // The CRD may not be installed (yet): try again next round.
                Err(e) => {
                    tracing::debug!(plugin = %name, error = %e, "cannot publish the Plugin object")
                }
            }
        }
    }
}
