//! Kruise's injection at pod creation, on the pod's JSON: `buildSidecars`,
//! `mergeSidecarContainers` and `mergeSidecarSecrets` of
//! pkg/webhook/pod/mutating/sidecarset.go, `GetInjectedVolumeMountsAndEnvs` and
//! `GetSidecarTransferEnvs` of pkg/control/sidecarcontrol/util.go, and `MergeEnvVar`,
//! `MergeVolumeMounts`, `MergeVolumes` of pkg/util/pods.go.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bosun_api::{keys, sidecarset_hash};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Kruise's pod annotation listing the SidecarSets injected (comma-separated, sorted).
pub(crate) const INJECTED_LIST_ANNOTATION: &str = "kruise.io/sidecarset-injected-list";
/// The variable every injected container carries.
const INJECTED_ENV: &str = "IS_INJECTED";
/// Kruise's fields of a SidecarContainer, which a pod's container does not have.
const SIDECAR_FIELDS: [&str; 6] = [
    "podInjectPolicy",
    "upgradeStrategy",
    "shareVolumePolicy",
    "shareVolumeDevicePolicy",
    "transferEnv",
    "resourcesPolicy",
];

/// Why a pod is not injected.
pub(crate) enum Error {
    /// Two SidecarSets inject a container of the same name (the denial's message).
    Conflict(String),
    /// The pod's hash annotations do not read (Kruise fails the request too).
    Annotation(String),
}

/// What the pod becomes.
pub(crate) struct Injection {
    pub(crate) init_containers: Vec<Value>,
    pub(crate) containers: Vec<Value>,
    pub(crate) volumes: Vec<Value>,
    pub(crate) image_pull_secrets: Vec<Value>,
    pub(crate) annotations: Vec<(&'static str, String)>,
}

/// Kruise's `SidecarSetUpgradeSpec`, the value per SidecarSet of the pod's hash
/// annotations; Go writes the fields in this order, `null` for a zero time or nil list.
#[derive(Serialize, Deserialize, Default)]
struct UpgradeSpec {
    #[serde(rename = "updateTimestamp", default)]
    update_timestamp: Option<String>,
    #[serde(default)]
    hash: String,
    #[serde(rename = "sidecarSetName", default)]
    sidecar_set_name: String,
    #[serde(rename = "sidecarList", default)]
    sidecar_list: Option<Vec<String>>,
    #[serde(
        rename = "controllerRevision",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    controller_revision: String,
}

/// A sidecar container about to be placed, with its `podInjectPolicy`.
struct Placed {
    container: Value,
    before: bool,
}

/// Injects `sets` (matched, in order) into `pod` at `now` (RFC 3339, seconds).
/// `Ok(None)` when they have no container to inject.
pub(crate) fn inject(pod: &Value, sets: &[&Value], now: &str) -> Result<Option<Injection>, Error> {
    check_conflicts(sets)?;
    let annotations = pod.pointer("/metadata/annotations");
    let annotation = |key: &str| {
        annotations
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let mut hashes = read_hashes(
        annotation(keys::SIDECARSET_HASH_ANNOTATION),
        keys::SIDECARSET_HASH_ANNOTATION,
    )?;
    let mut hashes_without_image = read_hashes(
        annotation(keys::SIDECARSET_HASH_WITHOUT_IMAGE_ANNOTATION),
        keys::SIDECARSET_HASH_WITHOUT_IMAGE_ANNOTATION,
    )?;
    let mut names: BTreeSet<String> = annotation(INJECTED_LIST_ANNOTATION)
        .map(|l| l.split(',').map(str::to_owned).collect())
        .unwrap_or_default();

    let app_containers = list(pod.pointer("/spec/containers"));
    let mut sidecars = Vec::new();
    let mut init_sidecars = Vec::new();
    let mut secrets = Vec::new();
    let mut volumes = Vec::new();
    for set in sets {
        let name = set
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let spec = &set["spec"];
        names.insert(name.clone());
        let set_volumes: HashMap<&str, &Value> = list(spec.get("volumes"))
            .iter()
            .filter_map(|v| Some((v.get("name")?.as_str()?, v)))
            .collect();
        let mut sidecar_list = BTreeSet::new();
        let mut injecting = false;
        for (source, before_by_default, out) in [
            ("initContainers", false, &mut init_sidecars),
            ("containers", true, &mut sidecars),
        ] {
            for sidecar in list(spec.get(source)) {
                let container_name = sidecar["name"].as_str().unwrap_or("").to_owned();
                // Native sidecars (init containers that restart) count as sidecars.
                if source == "containers" || sidecar["restartPolicy"] == "Always" {
                    sidecar_list.insert(container_name);
                }
                // Only the SidecarSet volumes the container itself mounts.
                for mount in list(sidecar.get("volumeMounts")) {
                    if let Some(v) = mount["name"].as_str().and_then(|n| set_volumes.get(n)) {
                        volumes.push((*v).clone());
                    }
                }
                out.push(prepare(sidecar, pod, app_containers, before_by_default));
                injecting = true;
            }
            if source == "initContainers" {
                secrets.extend(list(spec.get("imagePullSecrets")).iter().cloned());
            }
        }
        if injecting {
            let sidecar_list: Vec<String> = sidecar_list.into_iter().collect();
            let annotation = |key: &str| {
                set.pointer("/metadata/annotations")
                    .and_then(|a| a.get(key))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            // Kruise reads the SidecarSet's annotations; one stored before this plugin
            // ran has none, and gets the hashes they would hold.
            let hash = annotation(keys::SIDECARSET_HASH_ANNOTATION)
                .or_else(|| sidecarset_hash::hash(spec).ok())
                .unwrap_or_default();
            let hash_without_image = annotation(keys::SIDECARSET_HASH_WITHOUT_IMAGE_ANNOTATION)
                .or_else(|| sidecarset_hash::hash_without_image(spec).ok())
                .unwrap_or_default();
            let revision = set
                .pointer("/status/latestRevision")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            hashes.insert(
                name.clone(),
                UpgradeSpec {
                    update_timestamp: Some(now.to_owned()),
                    hash,
                    sidecar_set_name: name.clone(),
                    sidecar_list: Some(sidecar_list.clone()),
                    controller_revision: revision,
                },
            );
            hashes_without_image.insert(
                name.clone(),
                UpgradeSpec {
                    update_timestamp: Some(now.to_owned()),
                    hash: hash_without_image,
                    sidecar_set_name: name,
                    sidecar_list: Some(sidecar_list),
                    controller_revision: String::new(),
                },
            );
        }
    }
    if sidecars.is_empty() && init_sidecars.is_empty() {
        return Ok(None);
    }
    // Init containers by name (a stable sort, across SidecarSets), then placed by policy.
    init_sidecars.sort_by(|a, b| name(&a.container).cmp(name(&b.container)));
    let to_json = |m: &BTreeMap<String, UpgradeSpec>| {
        serde_json::to_string(m).unwrap_or_else(|_| "{}".to_owned())
    };
    Ok(Some(Injection {
        init_containers: merge_containers(list(pod.pointer("/spec/initContainers")), init_sidecars),
        containers: merge_containers(app_containers, sidecars),
        volumes: merge_by(
            list(pod.pointer("/spec/volumes")).to_vec(),
            volumes,
            "name",
            false,
        ),
        image_pull_secrets: merge_by(
            Vec::new(),
            list(pod.pointer("/spec/imagePullSecrets"))
                .iter()
                .cloned()
                .chain(secrets)
                .collect(),
            "name",
            true,
        ),
        annotations: vec![
            (keys::SIDECARSET_HASH_ANNOTATION, to_json(&hashes)),
            (
                keys::SIDECARSET_HASH_WITHOUT_IMAGE_ANNOTATION,
                to_json(&hashes_without_image),
            ),
            (
                INJECTED_LIST_ANNOTATION,
                names.into_iter().collect::<Vec<_>>().join(","),
            ),
        ],
    }))
}

/// A container name injected by two SidecarSets is refused: Kruise refuses the second
/// SidecarSet in its validating webhook; here the pod is denied, naming both.
fn check_conflicts(sets: &[&Value]) -> Result<(), Error> {
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for set in sets {
        let set_name = set
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let spec = &set["spec"];
        let mut own = HashSet::new();
        for c in list(spec.get("initContainers"))
            .iter()
            .chain(list(spec.get("containers")))
        {
            let n = name(c);
            if !own.insert(n) {
                continue;
            }
            if let Some(other) = owner.insert(n, set_name) {
                return Err(Error::Conflict(format!(
                    "SidecarSets {other} and {set_name} both inject a container named {n:?} \
                     into this pod: change one SidecarSet's container name or selector"
                )));
            }
        }
    }
    Ok(())
}

/// The pod's hash annotation as a map (Kruise also reads its older form, name → hash).
fn read_hashes(text: Option<&str>, key: &str) -> Result<BTreeMap<String, UpgradeSpec>, Error> {
    let Some(text) = text else {
        return Ok(BTreeMap::new());
    };
    if let Ok(m) = serde_json::from_str::<BTreeMap<String, UpgradeSpec>>(text) {
        return Ok(m);
    }
    serde_json::from_str::<BTreeMap<String, String>>(text)
        .map(|old| {
            old.into_iter()
                .map(|(k, hash)| {
                    let spec = UpgradeSpec {
                        hash,
                        sidecar_set_name: k.clone(),
                        ..UpgradeSpec::default()
                    };
                    (k, spec)
                })
                .collect()
        })
        .map_err(|e| Error::Annotation(format!("the pod's annotation {key} does not read: {e}")))
}

/// The container as injected: shared volume mounts (when enabled) after its own, not
/// repeating a mount path; env its own, then `IS_INJECTED=true`, then the transferred
/// and the shared mounts' variables it does not already have.
fn prepare(sidecar: &Value, pod: &Value, app_containers: &[Value], before: bool) -> Placed {
    let mut container = sidecar.clone();
    let before = match sidecar["podInjectPolicy"].as_str() {
        Some("BeforeAppContainer") => true,
        Some("AfterAppContainer") => false,
        _ => before,
    };
    let (shared_mounts, shared_env) =
        if sidecar.pointer("/shareVolumePolicy/type") == Some(&json!("enabled")) {
            shared_volume_mounts(app_containers)
        } else {
            (Vec::new(), Vec::new())
        };
    let transferred = merge_by(
        Vec::new(),
        [transfer_env(sidecar, pod, app_containers), shared_env].concat(),
        "name",
        true,
    );
    if let Some(c) = container.as_object_mut() {
        for field in SIDECAR_FIELDS {
            c.remove(field);
        }
        if !shared_mounts.is_empty() {
            let own = list(c.get("volumeMounts")).to_vec();
            c.insert(
                "volumeMounts".into(),
                Value::Array(merge_by(own, shared_mounts, "mountPath", false)),
            );
        }
        let mut env = list(c.get("env")).to_vec();
        env.push(json!({"name": INJECTED_ENV, "value": "true"}));
        c.insert(
            "env".into(),
            Value::Array(merge_by(env, transferred, "name", false)),
        );
    }
    Placed { container, before }
}

/// The app containers' volume mounts (those without `IS_INJECTED=true`), and the
/// variables their `subPathExpr`s name, copied from the same container.
fn shared_volume_mounts(app_containers: &[Value]) -> (Vec<Value>, Vec<Value>) {
    let mut mounts = Vec::new();
    let mut env = Vec::new();
    for c in app_containers {
        let vars = list(c.get("env"));
        if vars
            .iter()
            .any(|e| e["name"] == INJECTED_ENV && e["value"] == "true")
        {
            continue;
        }
        for mount in list(c.get("volumeMounts")) {
            mounts.push(mount.clone());
            let expr = mount["subPathExpr"].as_str().unwrap_or("");
            for var in sub_path_vars(expr) {
                if let Some(e) = vars.iter().find(|e| e["name"] == var) {
                    env.push(e.clone());
                }
            }
        }
    }
    (mounts, env)
}

/// The names in `$(NAME)` expansions (Kruise's `\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)`).
fn sub_path_vars(expr: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("$(") {
        let after = &rest[start + 2..];
        let Some(end) = after.find(')') else { break };
        let var = &after[..end];
        let first_ok = var
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || "-._".contains(c));
        if first_ok
            && var
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        {
            out.push(var);
            rest = &after[end + 1..];
        } else {
            rest = after;
        }
    }
    out
}

/// `transferEnv`: for each entry, its variables (`envName` and `envNames`, sorted) that the
/// source container (named, or named by a pod label or annotation) has, in that order.
fn transfer_env(sidecar: &Value, pod: &Value, app_containers: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for t in list(sidecar.get("transferEnv")) {
        let mut vars: BTreeSet<&str> = list(t.get("envNames"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if let Some(n) = t["envName"].as_str().filter(|n| !n.is_empty()) {
            vars.insert(n);
        }
        let mut source = t["sourceContainerName"].as_str().unwrap_or("").to_owned();
        if let Some(path) = t
            .pointer("/sourceContainerNameFrom/fieldRef/fieldPath")
            .and_then(Value::as_str)
        {
            match field_of(pod, path) {
                Some(s) => source = s,
                // Kruise logs the unsupported path and skips the entry.
                None => continue,
            }
        }
        let Some(from) = app_containers.iter().find(|c| name(c) == source) else {
            continue;
        };
        let env = list(from.get("env"));
        for var in vars {
            if let Some(e) = env.iter().rev().find(|e| e["name"] == var) {
                out.push(e.clone());
            }
        }
    }
    out
}

/// `metadata.labels['KEY']` or `metadata.annotations['KEY']` of the pod (Kruise's
/// `ExtractContainerNameFromFieldPath`: no other field); a missing key reads as "".
fn field_of(pod: &Value, path: &str) -> Option<String> {
    let (map, rest) = if let Some(r) = path.strip_prefix("metadata.labels[") {
        ("labels", r)
    } else if let Some(r) = path.strip_prefix("metadata.annotations[") {
        ("annotations", r)
    } else {
        return None;
    };
    let key = rest.strip_suffix(']')?;
    let key = key
        .strip_prefix('\'')
        .and_then(|k| k.strip_suffix('\''))
        .or_else(|| key.strip_prefix('"').and_then(|k| k.strip_suffix('"')))?;
    Some(
        pod.pointer(&format!("/metadata/{map}"))
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    )
}

/// Kruise's `mergeSidecarContainers`: a sidecar whose name the pod already has replaces
/// that container in place; the others go before the pod's containers
/// (`BeforeAppContainer`) or after them, each group in injection order.
fn merge_containers(origins: &[Value], injected: Vec<Placed>) -> Vec<Value> {
    let mut origins = origins.to_vec();
    let mut before = Vec::new();
    let mut after = Vec::new();
    for p in injected {
        if let Some(i) = origins.iter().position(|c| name(c) == name(&p.container)) {
            origins[i] = p.container;
        } else if p.before {
            before.push(p.container);
        } else {
            after.push(p.container);
        }
    }
    before.extend(origins);
    before.extend(after);
    before
}

/// `base`, then the `extra` items whose `key` is not yet present (when `dedup_base`,
/// repeated keys in `base` are dropped too, as `mergeSidecarSecrets` does).
fn merge_by(base: Vec<Value>, extra: Vec<Value>, key: &str, dedup_base: bool) -> Vec<Value> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(base.len() + extra.len());
    for item in base {
        let k = item[key].as_str().unwrap_or("").to_owned();
        if seen.insert(k) || !dedup_base {
            out.push(item);
        }
    }
    for item in extra {
        if seen.insert(item[key].as_str().unwrap_or("").to_owned()) {
            out.push(item);
        }
    }
    out
}

fn name(c: &Value) -> &str {
    c["name"].as_str().unwrap_or("")
}

fn list(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}
