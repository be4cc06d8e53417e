//! The Kubernetes RBAC rules the runtime needs: its own (from its configuration) and its
//! plugins' (from their metadata), derived from what the code calls, with no wildcards.
//! `bosun rbac` prints them; `deploy/rbac/` is its output.
//!
//! A plugin's verbs become API calls in [`crate::executor`], so the mapping lives next
//! to what it mirrors:
//!
//! | plugin metadata | API call | rule |
//! |---|---|---|
//! | subscription, `read` | the shared cache's list and watch (`Api::all`) | list, watch |
//! | `apply` | server-side apply (PATCH; it creates the object when absent) | patch |
//! | `patch` | merge or JSON patch, of the object or its status | patch on both |
//! | `delete` | DELETE | delete |
//! | `evict` (Pod) | the Eviction API | create on pods/eviction |
//! | `cordon` (Node) | merge patch; taints read-modify-write | get, patch on nodes |
//! | `record-event` | a core/v1 Event | create on events |
//! | `pod-command` | the sidecar link, not the API | none |
//!
//! Pod-agent plugins run in sidecars and reach the API only through the runtime, so they
//! add nothing. A permission on every kind (`*`) cannot be written without a wildcard and
//! is refused.

use crate::config::{Config, SidecarAuth};
use crate::informer::Kind;
use bosun_host::World;
use bosun_host::contract::{PluginMetadata, Verb};
use std::collections::{BTreeMap, BTreeSet};

/// A kind the rules cannot name.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Discovery does not know the kind (pass its CRD).
    #[error(
        "plugin {plugin}: the kind {kind} is unknown: pass its CustomResourceDefinition (--crd FILE)"
    )]
    UnknownKind {
        /// The plugin that names it.
        plugin: String,
        /// `apiVersion/kind`.
        kind: String,
    },
    /// A permission on every kind of a group.
    #[error(
        "plugin {plugin}: `{verbs}` on every kind of {api_version} would need a wildcard rule; declare the kinds instead"
    )]
    Wildcard {
        /// The plugin.
        plugin: String,
        /// The permission's apiVersion.
        api_version: String,
        /// Its verbs.
        verbs: String,
    },
}

/// How a kind is named in RBAC rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The API group (`""` for the core group).
    pub group: String,
    /// The plural resource name.
    pub plural: String,
    /// Namespaced (or cluster-scoped).
    pub namespaced: bool,
}

/// One plugin, as the rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Plugin<'a> {
    /// Its world.
    pub world: World,
    /// Its metadata.
    pub metadata: &'a PluginMetadata,
}

/// Where a rule applies: cluster-wide, or in one namespace.
pub type Scope = Option<String>;

/// `(group, resource, resourceName)`: what one set of verbs is granted on.
type Target = (String, String, Option<String>);

/// `(group, verbs, resourceNames)` -> `(resources, reasons)`: targets merged into rules.
type Merged = BTreeMap<(String, Vec<String>, Vec<String>), (Vec<String>, BTreeSet<Why>)>;

/// Who needs a rule: a plugin (by name), or the runtime itself (listed last).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Who {
    /// A plugin.
    Plugin(String),
    /// The runtime.
    Runtime,
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::Plugin(name) => f.write_str(name),
            Who::Runtime => f.write_str("runtime"),
        }
    }
}

/// Why a rule is there: who needs it for what (`release`: `patch`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Why {
    /// Who.
    pub who: Who,
    /// For what: a plugin's verb, or what the runtime does.
    pub what: String,
}

impl Why {
    fn runtime(what: &str) -> Self {
        Why {
            who: Who::Runtime,
            what: what.to_owned(),
        }
    }

    fn plugin(name: &str, what: &str) -> Self {
        Why {
            who: Who::Plugin(name.to_owned()),
            what: what.to_owned(),
        }
    }
}

/// The rules, by scope; each verb keeps why it is needed.
#[derive(Debug, Default, Clone)]
pub struct Rules {
    grants: BTreeMap<Scope, BTreeMap<Target, BTreeMap<String, BTreeSet<Why>>>>,
}

/// One rule as Kubernetes writes it, with why it is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `apiGroups` (one).
    pub group: String,
    /// `resources`.
    pub resources: Vec<String>,
    /// `resourceNames`, empty for any.
    pub names: Vec<String>,
    /// `verbs`.
    pub verbs: Vec<String>,
    /// Who needs it for what, plugins by name then the runtime.
    pub reasons: Vec<Why>,
}

impl Rules {
    fn grant(
        &mut self,
        scope: Scope,
        group: &str,
        resource: &str,
        name: Option<&str>,
        verbs: &[&str],
        why: &Why,
    ) {
        let target = (
            group.to_owned(),
            resource.to_owned(),
            name.map(str::to_owned),
        );
        let by_verb = self
            .grants
            .entry(scope)
            .or_default()
            .entry(target)
            .or_default();
        for v in verbs {
            by_verb
                .entry((*v).to_owned())
                .or_default()
                .insert(why.clone());
        }
    }

    /// The scopes with rules: `None` (cluster-wide) first, then namespaces by name.
    pub fn scopes(&self) -> Vec<Scope> {
        self.grants.keys().cloned().collect()
    }

    /// The rules of one scope, merged: resources of one group with the same verbs (and
    /// names) share a rule. Sorted, so the output is stable.
    pub fn rules(&self, scope: &Scope) -> Vec<Rule> {
        let Some(targets) = self.grants.get(scope) else {
            return Vec::new();
        };
        let mut merged: Merged = BTreeMap::new();
        for ((group, resource, name), verbs) in targets {
            let names: Vec<String> = name.iter().cloned().collect();
            let verb_list: Vec<String> = sort_verbs(verbs.keys().cloned().collect());
            let entry = merged.entry((group.clone(), verb_list, names)).or_default();
            entry.0.push(resource.clone());
            for reasons in verbs.values() {
                entry.1.extend(reasons.iter().cloned());
            }
        }
        let mut rules: Vec<Rule> = merged
            .into_iter()
            .map(|((group, verbs, names), (resources, reasons))| Rule {
                group,
                resources,
                names,
                verbs,
                reasons: reasons.into_iter().collect(),
            })
            .collect();
        // Core group first, then by group; reads before writes.
        rules.sort_by(|a, b| {
            (
                a.group.as_str(),
                !a.verbs.contains(&"list".to_owned()),
                &a.resources,
            )
                .cmp(&(
                    b.group.as_str(),
                    !b.verbs.contains(&"list".to_owned()),
                    &b.resources,
                ))
        });
        rules
    }
}

/// Verbs in the order Kubernetes documents them.
fn sort_verbs(mut verbs: Vec<String>) -> Vec<String> {
    const ORDER: [&str; 8] = [
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
    ];
    verbs.sort_by_key(|v| ORDER.iter().position(|o| o == v).unwrap_or(ORDER.len()));
    verbs
}

/// The rules for a runtime with `config`, in namespace `namespace` (where its webhook
/// Secret lives), running `plugins`; `resolve` names a kind's resource (discovery).
pub fn derive(
    config: &Config,
    namespace: &str,
    plugins: &[Plugin<'_>],
    resolve: &dyn Fn(&Kind) -> Option<Resource>,
) -> Result<Rules, Error> {
    let mut r = Rules::default();
    runtime_rules(&mut r, config, namespace);
    for p in plugins {
        plugin_rules(&mut r, p, resolve)?;
    }
    Ok(r)
}

/// What the runtime calls itself, by what its configuration turns on.
fn runtime_rules(r: &mut Rules, config: &Config, namespace: &str) {
    let cluster = None;
    let watch = ["list", "watch"];
    if config.plugin_objects {
        // The Plugin controller's informer (rollout/controller.rs), and the status it
        // writes on every Plugin it sees (WrongNamespace outside its namespace).
        r.grant(
            cluster.clone(),
            "bosun.dev",
            "plugins",
            None,
            &watch,
            &Why::runtime("Plugin objects"),
        );
        r.grant(
            cluster.clone(),
            "bosun.dev",
            "plugins/status",
            None,
            &["patch"],
            &Why::runtime("Plugin status"),
        );
        // `configMap` sources, and the stable revision's code after a restart
        // (rollout/source.rs, rollout/controller.rs).
        let ns = config
            .plugin_namespace
            .clone()
            .unwrap_or_else(|| namespace.to_owned());
        r.grant(
            Some(ns.clone()),
            "",
            "configmaps",
            None,
            &["get", "list"],
            &Why::runtime("plugin code in ConfigMaps"),
        );
        if config.plugins_dir.is_some() {
            // The plugins folder publishes its plugins as Plugin objects (rollout/folder.rs).
            r.grant(
                Some(ns),
                "bosun.dev",
                "plugins",
                None,
                &["get", "patch"],
                &Why::runtime("publishes the plugins folder as Plugin objects"),
            );
        }
    }
    if config.leader_election.enabled {
        // leader.rs: created when absent, then read, renewed and released by update.
        let le = &config.leader_election;
        if le.label_pod {
            // leader.rs `label_pod`: its own pod, whose name is not known in advance.
            r.grant(
                Some(namespace.to_owned()),
                "",
                "pods",
                None,
                &["patch"],
                &Why::runtime("labels its pod while it leads"),
            );
        }
        let ns = Some(le.namespace.clone());
        r.grant(
            ns.clone(),
            "coordination.k8s.io",
            "leases",
            None,
            &["create"],
            &Why::runtime("leader election"),
        );
        r.grant(
            ns,
            "coordination.k8s.io",
            "leases",
            Some(&le.name),
            &["get", "update"],
            &Why::runtime("leader election"),
        );
    }
    let link = &config.sidecars;
    if link.listen.is_some() && link.tls {
        // sidecars/tls.rs: the link's CA and certificate shared through a Secret.
        if let Some(secret) = &link.tls_secret {
            let ns = Some(namespace.to_owned());
            let why = &Why::runtime("sidecar link certificate");
            r.grant(ns.clone(), "", "secrets", None, &["create"], why);
            r.grant(ns, "", "secrets", Some(secret), &["get"], why);
        }
        // sidecars/publish.rs: the CA as a ConfigMap in every namespace (server-side
        // apply by name).
        if let Some(cm) = &link.publish_ca {
            let why = &Why::runtime("publishes the sidecar link's CA");
            r.grant(cluster.clone(), "", "namespaces", None, &watch, why);
            r.grant(cluster.clone(), "", "configmaps", Some(cm), &["patch"], why);
        }
    }
    if config.sidecars.listen.is_some() {
        // The sidecar link assigns pod-agents by pod (sidecars/mod.rs).
        r.grant(
            cluster.clone(),
            "",
            "pods",
            None,
            &watch,
            &Why::runtime("sidecar link"),
        );
        if config.sidecars.auth == SidecarAuth::TokenReview {
            r.grant(
                cluster.clone(),
                "authentication.k8s.io",
                "tokenreviews",
                None,
                &["create"],
                &Why::runtime("sidecar link tokenReview"),
            );
        }
    }
    if config.webhook.listen.is_some() {
        // webhook/configuration.rs: server-side apply, and delete when no admission
        // plugin of the kind is left; webhook/tls.rs: the shared serving certificate.
        let name = config.webhook.configuration_name.as_str();
        for kind in [
            "mutatingwebhookconfigurations",
            "validatingwebhookconfigurations",
        ] {
            r.grant(
                cluster.clone(),
                "admissionregistration.k8s.io",
                kind,
                Some(name),
                &["patch", "delete"],
                &Why::runtime("admission webhook"),
            );
        }
        if let Some(secret) = &config.webhook.secret {
            let ns = Some(namespace.to_owned());
            r.grant(
                ns.clone(),
                "",
                "secrets",
                None,
                &["create"],
                &Why::runtime("webhook certificate"),
            );
            r.grant(
                ns,
                "",
                "secrets",
                Some(secret),
                &["get", "update"],
                &Why::runtime("webhook certificate"),
            );
        }
    }
    // The budgets' informers (runtime.rs `command_pipe`).
    let g = &config.guardrails;
    if g.any(|s| s.max_cordoned_nodes.is_some()) {
        r.grant(
            cluster.clone(),
            "",
            "nodes",
            None,
            &watch,
            &Why::runtime("maxCordonedNodes budget"),
        );
    }
    let workloads = g.any(|s| s.max_unavailable.is_some() || s.min_healthy_share.is_some());
    let pdbs = g.any(|s| s.pod_disruption_budgets);
    if workloads || pdbs {
        r.grant(
            cluster.clone(),
            "",
            "pods",
            None,
            &watch,
            &Why::runtime("disruption budgets"),
        );
    }
    if workloads {
        for (group, plural) in [
            ("apps", "replicasets"),
            ("apps", "deployments"),
            ("apps", "statefulsets"),
            ("apps", "daemonsets"),
            ("batch", "jobs"),
        ] {
            r.grant(
                cluster.clone(),
                group,
                plural,
                None,
                &watch,
                &Why::runtime("maxUnavailable budget"),
            );
        }
    }
    if pdbs {
        r.grant(
            cluster,
            "policy",
            "poddisruptionbudgets",
            None,
            &watch,
            &Why::runtime("podDisruptionBudgets"),
        );
    }
}

/// What one plugin's metadata makes the runtime call.
fn plugin_rules(
    r: &mut Rules,
    p: &Plugin<'_>,
    resolve: &dyn Fn(&Kind) -> Option<Resource>,
) -> Result<(), Error> {
    if p.world == World::PodAgent {
        return Ok(());
    }
    let name = &p.metadata.name;
    let named = |api_version: &str, kind: &str| {
        let k = Kind::new(api_version, kind);
        resolve(&k).ok_or_else(|| Error::UnknownKind {
            plugin: name.clone(),
            kind: format!("{api_version}/{kind}"),
        })
    };
    let watch = ["list", "watch"];
    if p.world == World::Controller {
        for s in &p.metadata.subscriptions {
            let res = named(&s.api_version, &s.kind)?;
            r.grant(
                None,
                &res.group,
                &res.plural,
                None,
                &watch,
                &Why::plugin(name, "subscribes"),
            );
        }
    }
    for perm in &p.metadata.permissions {
        if perm.kind == "*" {
            return Err(Error::Wildcard {
                plugin: name.clone(),
                api_version: perm.api_version.clone(),
                verbs: perm
                    .verbs
                    .iter()
                    .map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let res = named(&perm.api_version, &perm.kind)?;
        for verb in &perm.verbs {
            let why = &Why::plugin(name, verb.as_str());
            let (g, plural) = (res.group.as_str(), res.plural.as_str());
            match verb {
                Verb::Read => r.grant(None, g, plural, None, &watch, why),
                Verb::Apply => r.grant(None, g, plural, None, &["patch"], why),
                Verb::Patch => {
                    r.grant(None, g, plural, None, &["patch"], why);
                    r.grant(None, g, &format!("{plural}/status"), None, &["patch"], why);
                }
                Verb::Delete => r.grant(None, g, plural, None, &["delete"], why),
                Verb::Evict => r.grant(None, "", "pods/eviction", None, &["create"], why),
                Verb::Cordon => r.grant(None, "", "nodes", None, &["get", "patch"], why),
                Verb::RecordEvent => r.grant(None, "", "events", None, &["create"], why),
                Verb::PodCommand => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_host::contract::{Permission, Subscription};

    fn resolve(k: &Kind) -> Option<Resource> {
        let (group, plural, namespaced) = match (k.api_version.as_str(), k.kind.as_str()) {
            ("v1", "Pod") => ("", "pods", true),
            ("v1", "Node") => ("", "nodes", false),
            ("apps/v1", "StatefulSet") => ("apps", "statefulsets", true),
            _ => return None,
        };
        Some(Resource {
            group: group.into(),
            plural: plural.into(),
            namespaced,
        })
    }

    fn meta(perms: Vec<(&str, &str, Vec<Verb>)>) -> PluginMetadata {
        PluginMetadata {
            name: "p".into(),
            version: "1".into(),
            description: String::new(),
            subscriptions: vec![Subscription {
                api_version: "apps/v1".into(),
                kind: "StatefulSet".into(),
                namespace: None,
                label_selector: None,
            }],
            permissions: perms
                .into_iter()
                .map(|(a, k, verbs)| Permission {
                    api_version: a.into(),
                    kind: k.into(),
                    verbs,
                })
                .collect(),
        }
    }

    #[test]
    fn plugin_verbs_become_the_calls_the_executor_makes() {
        let m = meta(vec![
            (
                "v1",
                "Pod",
                vec![Verb::Read, Verb::Patch, Verb::Evict, Verb::PodCommand],
            ),
            ("v1", "Node", vec![Verb::Cordon]),
        ]);
        let config = Config::default();
        let rules = derive(
            &config,
            "bosun-system",
            &[Plugin {
                world: World::Controller,
                metadata: &m,
            }],
            &resolve,
        )
        .expect("rules");
        let cluster = rules.rules(&None);
        let has = |group: &str, resource: &str, verb: &str| {
            cluster.iter().any(|r| {
                r.group == group
                    && r.resources.iter().any(|x| x == resource)
                    && r.verbs.iter().any(|v| v == verb)
            })
        };
        assert!(has("apps", "statefulsets", "watch"), "{cluster:#?}");
        assert!(has("", "pods", "list") && has("", "pods", "patch"));
        assert!(has("", "pods/status", "patch"));
        assert!(has("", "pods/eviction", "create"));
        assert!(has("", "nodes", "get") && has("", "nodes", "patch"));
        assert!(!has("", "pods", "delete"));
        assert!(cluster.iter().all(|r| !r.verbs.contains(&"*".to_owned())));
    }

    #[test]
    fn wildcards_and_unknown_kinds_are_refused_and_pod_agents_need_nothing() {
        let wild = meta(vec![("apps/v1", "*", vec![Verb::Read])]);
        let config = Config::default();
        let controller = |m| Plugin {
            world: World::Controller,
            metadata: m,
        };
        let e = derive(&config, "ns", &[controller(&wild)], &resolve).expect_err("wildcard");
        assert!(e.to_string().contains("wildcard"), "{e}");
        let unknown = meta(vec![("example.com/v1", "Widget", vec![Verb::Read])]);
        let e = derive(&config, "ns", &[controller(&unknown)], &resolve).expect_err("unknown");
        assert!(e.to_string().contains("--crd"), "{e}");
        let agent = Plugin {
            world: World::PodAgent,
            metadata: &wild,
        };
        assert!(derive(&config, "ns", &[agent], &resolve).is_ok());
    }
}
