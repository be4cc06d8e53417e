//! Example Bosun controller plugin: copies a node's zone label onto the pods bound to it.
//!
//! For each pod, once it is bound to a node, the plugin reads the node from the cache and,
//! when the node carries the zone label (`topology.kubernetes.io/zone` unless configured
//! otherwise) and the pod's label differs, submits one merge patch that sets it.

use std::time::Duration;

use bosun_sdk::{
    Command, Context, Controller, Error, Metadata, Outcome, Request, Verb, parse_config,
};
use serde::Deserialize;
use serde_json::json;

/// The label copied when the configuration names none.
const DEFAULT_LABEL: &str = "topology.kubernetes.io/zone";

/// How long to wait for a node the cache does not know yet.
const NODE_MISSING_RETRY: Duration = Duration::from_secs(30);

/// The plugin's configuration: `{"label": "topology.kubernetes.io/zone"}`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// The label to copy from the node to its pods.
    label: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            label: DEFAULT_LABEL.to_owned(),
        }
    }
}

struct ZoneLabeler {
    label: String,
}

impl Controller for ZoneLabeler {
    fn metadata() -> Metadata {
        Metadata::new("zone-labeler", env!("CARGO_PKG_VERSION"))
            .description("copies the node's zone label onto the pods bound to it")
            .subscribe("v1", "Pod")
            .permit("v1", "Pod", &[Verb::Read, Verb::Patch, Verb::RecordEvent])
            .permit("v1", "Node", &[Verb::Read])
    }

    fn init(config: &str) -> Result<Self, Error> {
        let config: Config = parse_config(config)?;
        if config.label.is_empty() {
            return Err(Error::msg("invalid config: `label` is empty"));
        }
        Ok(Self {
            label: config.label,
        })
    }

    fn reconcile(&self, ctx: &mut Context, req: &Request) -> Result<Outcome, Error> {
        if req.is_deleted() {
            return Ok(Outcome::done());
        }
        // The slim views read the pod's labels and node name and skip the rest of it: on a
        // 4.5 KB pod that is several times cheaper than a `Value` of every field.
        let Some(pod) = ctx.get_pod(req.target())? else {
            return Ok(Outcome::done());
        };
        // Unbound pods are reconciled again when the scheduler binds them.
        let Some(node_name) = pod.spec.node_name.as_deref() else {
            return Ok(Outcome::done());
        };
        let Some(node) = ctx.get_node(node_name)? else {
            ctx.warn(format!(
                "{}: node {node_name} is not in the cache yet, retrying in {}s",
                req.target(),
                NODE_MISSING_RETRY.as_secs()
            ));
            return Ok(Outcome::requeue_after(NODE_MISSING_RETRY));
        };
        let Some(zone) = node.metadata.label(&self.label) else {
            return Ok(Outcome::done());
        };
        if pod.metadata.label(&self.label) == Some(zone) {
            return Ok(Outcome::done());
        }
        let patch = json!({"metadata": {"labels": {self.label.as_str(): zone}}});
        let id = ctx.submit(Command::merge_patch(req.target(), &patch))?;
        ctx.info(format!(
            "{}: labelled {}={zone} from node {node_name} (command {id})",
            req.target(),
            self.label
        ));
        Ok(Outcome::done())
    }
}

bosun_sdk::export_controller!(ZoneLabeler);

#[cfg(test)]
mod tests {
    use bosun_sdk::EventKind;
    use bosun_sdk::ObjectRef;
    use bosun_sdk::log::Level;
    use bosun_sdk::testing::Host;
    use serde_json::Value;

    use super::*;

    const POD: &str = include_str!("../testdata/pod.json");
    const NODE: &str = include_str!("../testdata/cache/node-1.json");

    fn pod() -> Value {
        serde_json::from_str(POD).expect("testdata/pod.json is JSON")
    }

    fn node() -> Value {
        serde_json::from_str(NODE).expect("testdata/cache/node-1.json is JSON")
    }

    fn plugin(config: &str) -> ZoneLabeler {
        ZoneLabeler::init(config).expect("config is valid")
    }

    fn reconcile(host: &mut Host, pod: &Value) -> Outcome {
        let target = ObjectRef::of(pod).expect("pod has an identity");
        host.reconcile(&plugin("{}"), &Request::new(target))
            .expect("reconcile succeeds")
    }

    #[test]
    fn labels_a_bound_pod_with_its_nodes_zone() {
        let mut host = Host::new().with_object(pod()).with_object(node());
        assert_eq!(reconcile(&mut host, &pod()), Outcome::done());
        let target = ObjectRef::new("v1", "Pod")
            .namespaced("shop")
            .named("web-7d9c6b8f5-x2k4p");
        let patch = json!({"metadata": {"labels": {"topology.kubernetes.io/zone": "eu-west-1b"}}});
        assert_eq!(host.commands(), &[Command::merge_patch(&target, &patch)]);
        assert!(matches!(host.logs(), [(Level::Info, line)] if line.contains("eu-west-1b")));
    }

    #[test]
    fn leaves_a_pod_that_already_has_the_zone() {
        let mut pod = pod();
        pod["metadata"]["labels"]["topology.kubernetes.io/zone"] = json!("eu-west-1b");
        let mut host = Host::new().with_object(pod.clone()).with_object(node());
        assert_eq!(reconcile(&mut host, &pod), Outcome::done());
        assert!(host.commands().is_empty());
    }

    #[test]
    fn relabels_a_pod_with_another_zone() {
        let mut pod = pod();
        pod["metadata"]["labels"]["topology.kubernetes.io/zone"] = json!("eu-west-1a");
        let mut host = Host::new().with_object(pod.clone()).with_object(node());
        reconcile(&mut host, &pod);
        assert_eq!(host.commands().len(), 1);
    }

    #[test]
    fn requeues_while_the_node_is_missing() {
        let mut host = Host::new().with_object(pod());
        assert_eq!(
            reconcile(&mut host, &pod()),
            Outcome::requeue_after(Duration::from_secs(30))
        );
        assert!(host.commands().is_empty());
        assert!(matches!(host.logs(), [(Level::Warn, line)] if line.contains("node-1")));
    }

    #[test]
    fn ignores_unbound_deleted_and_gone_pods() {
        let mut unbound = pod();
        unbound["spec"]
            .as_object_mut()
            .expect("spec is an object")
            .remove("nodeName");
        let mut host = Host::new().with_object(unbound.clone()).with_object(node());
        assert_eq!(reconcile(&mut host, &unbound), Outcome::done());

        let mut host = Host::new().with_object(pod()).with_object(node());
        let target = ObjectRef::of(&pod()).expect("pod has an identity");
        let deleted = Request::new(target).with_event(EventKind::Deleted);
        let outcome = host.reconcile(&plugin("{}"), &deleted);
        assert_eq!(outcome.ok(), Some(Outcome::done()));

        let mut host = Host::new().with_object(node());
        assert_eq!(reconcile(&mut host, &pod()), Outcome::done());
        assert!(host.commands().is_empty());
    }

    #[test]
    fn copies_the_configured_label() {
        let mut host = Host::new().with_object(pod()).with_object(node());
        let target = ObjectRef::of(&pod()).expect("pod has an identity");
        let plugin = plugin(r#"{"label": "topology.kubernetes.io/region"}"#);
        assert!(
            host.reconcile(&plugin, &Request::new(target.clone()))
                .is_ok()
        );
        let patch = json!({"metadata": {"labels": {"topology.kubernetes.io/region": "eu-west-1"}}});
        assert_eq!(host.commands(), &[Command::merge_patch(&target, &patch)]);
    }

    #[test]
    fn invalid_config_names_the_problem() {
        let err = |config: &str| ZoneLabeler::init(config).err().map(|e| e.to_string());
        assert_eq!(
            err(r#"{"label": ""}"#).as_deref(),
            Some("invalid config: `label` is empty")
        );
        assert!(err(r#"{"lable": "x"}"#).is_some_and(|e| e.contains("unknown field `lable`")));
        assert!(err("{not json").is_some_and(|e| e.starts_with("invalid config: ")));
        assert!(err("").is_none());
    }
}
