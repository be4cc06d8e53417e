//! The node budget: how many nodes may be out of service (cordoned, or tainted to keep
//! pods off) at once.

use std::sync::Arc;
use std::time::Instant;

use bosun_host::contract::{Command, ObjectRef};
use serde::Deserialize;

use super::disruption::disrupted_node;
use super::in_flight::InFlight;
use super::{Budget, Limit, Policy, Refusal, Settings, View};

/// Refuses to take a node out of service (a cordon, a `NoSchedule`/`NoExecute` taint, or
/// a patch with that effect) when as many other nodes as the limit allows are already
/// unschedulable (`spec.unschedulable`) or being taken out by admitted commands. A
/// percentage is of the cached nodes, rounded down but at least 1.
#[derive(Debug)]
pub struct MaxCordonedNodes {
    policy: Arc<dyn Policy>,
    in_flight: InFlight,
}

impl MaxCordonedNodes {
    /// At most `max` nodes cordoned at once, for every plugin.
    pub fn new(max: u32) -> Self {
        Self::with_policy(Arc::new(Settings {
            max_cordoned_nodes: Some(Limit::Count(max)),
            ..Settings::OFF
        }))
    }

    /// The limit `policy` gives each plugin.
    pub fn with_policy(policy: Arc<dyn Policy>) -> Self {
        MaxCordonedNodes {
            policy,
            in_flight: InFlight::default(),
        }
    }
}

#[derive(Deserialize)]
struct NodeDoc {
    metadata: NameOnly,
    #[serde(default)]
    spec: NodeSpec,
}

#[derive(Deserialize)]
struct NameOnly {
    name: String,
}

#[derive(Deserialize, Default)]
struct NodeSpec {
    #[serde(default)]
    unschedulable: bool,
}

impl Budget for MaxCordonedNodes {
    fn name(&self) -> &str {
        "max-cordoned-nodes"
    }

    fn check(
        &self,
        plugin: &str,
        cmd: &Command,
        view: &dyn View,
        now: Instant,
    ) -> Result<(), Refusal> {
        let Some(limit) = self.policy.settings(plugin, None).max_cordoned_nodes else {
            return Ok(());
        };
        let Some(target) = disrupted_node(cmd, view) else {
            return Ok(());
        };
        let mut out = self.in_flight.live(now, view);
        let nodes = view.list("v1", "Node");
        for json in &nodes {
            if let Ok(node) = serde_json::from_str::<NodeDoc>(json)
                && node.spec.unschedulable
            {
                out.insert(node.metadata.name);
            }
        }
        out.remove(&target);
        let count = u32::try_from(out.len()).unwrap_or(u32::MAX);
        let max = limit.of(u32::try_from(nodes.len()).unwrap_or(u32::MAX));
        if count >= max {
            return Err(Refusal::TooManyNodesOut {
                out: out.into_iter().collect(),
                limit: max,
                command: cmd.name(),
                node: target,
            });
        }
        Ok(())
    }

    fn admitted(&self, _plugin: &str, cmd: &Command, view: &dyn View, now: Instant) {
        if let Some(node) = disrupted_node(cmd, view) {
            self.in_flight.insert(node, now);
        } else if let Command::Uncordon(node) = cmd {
            self.in_flight.remove(node);
        }
    }

    fn settle(&self, target: &ObjectRef) {
        if target.kind == "Node" {
            self.in_flight.remove(&target.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::IN_FLIGHT_TTL;
    use super::super::fixtures::{FakeView, node, taint};
    use super::*;
    use bosun_host::contract::TaintEffect;

    #[test]
    fn max_cordoned_nodes_counts_unschedulable_nodes_but_not_the_target() {
        let now = Instant::now();
        let view = FakeView::default()
            .with(node("n1").unschedulable().build())
            .with(node("n2").unschedulable().build())
            .with(node("n3").build());
        let budget = MaxCordonedNodes::new(2);
        let err = budget
            .check("remediation", &Command::Cordon("n3".into()), &view, now)
            .expect_err("two nodes are already cordoned");
        assert!(
            matches!(&err, Refusal::TooManyNodesOut { out, limit: 2, command: "cordon", node }
                if out == &["n1", "n2"] && node == "n3"),
            "{err:?}"
        );
        let err = err.to_string();
        assert!(err.contains("2 nodes") && err.contains("n1, n2"), "{err}");
        assert!(err.contains("the limit is 2"), "{err}");
        let refused = budget.check("r", &taint("n3", TaintEffect::NoExecute), &view, now);
        assert!(refused.is_err());
        // A harmless taint, an uncordon, or a taint on a node already cordoned pass.
        let soft = taint("n3", TaintEffect::PreferNoSchedule);
        assert!(budget.check("r", &soft, &view, now).is_ok());
        let uncordon = Command::Uncordon("n1".into());
        assert!(budget.check("r", &uncordon, &view, now).is_ok());
        let budget = MaxCordonedNodes::new(2);
        let view = FakeView::default()
            .with(node("n1").unschedulable().build())
            .with(node("n2").build());
        let lock = taint("n1", TaintEffect::NoSchedule);
        assert!(budget.check("r", &lock, &view, now).is_ok());
    }

    #[test]
    fn max_cordoned_nodes_counts_admitted_cordons_until_settled_or_expired() {
        let now = Instant::now();
        let view = FakeView::default()
            .with(node("n1").build())
            .with(node("n2").build())
            .with(node("n3").build());
        let budget = MaxCordonedNodes::new(1);
        let first = Command::Cordon("n1".into());
        assert!(budget.check("r", &first, &view, now).is_ok());
        budget.admitted("r", &first, &view, now);
        // Cordon and taint of the same node are one node out.
        let lock = taint("n1", TaintEffect::NoSchedule);
        assert!(budget.check("r", &lock, &view, now).is_ok());
        let second = Command::Cordon("n2".into());
        assert!(budget.check("r", &second, &view, now).is_err());
        assert!(
            budget
                .check("r", &second, &view, now + IN_FLIGHT_TTL)
                .is_ok()
        );
        budget.settle(&ObjectRef::cluster("v1", "Node", "n1"));
        assert!(budget.check("r", &second, &view, now).is_ok());
    }

    #[test]
    fn a_share_of_nodes_is_at_least_one() {
        let now = Instant::now();
        let budget = MaxCordonedNodes::with_policy(Arc::new(Settings {
            max_cordoned_nodes: Some(Limit::Percent(10)),
            ..Settings::OFF
        }));
        let mut view = FakeView::default();
        for i in 0..9 {
            view = view.with(node(&format!("n{i}")).build());
        }
        let first = Command::Cordon("n0".into());
        assert!(budget.check("r", &first, &view, now).is_ok());
        budget.admitted("r", &first, &view, now);
        let err = budget
            .check("r", &Command::Cordon("n1".into()), &view, now)
            .expect_err("10% of 9 nodes is 1");
        assert!(err.to_string().contains("the limit is 1"), "{err}");
        // A merge patch setting spec.unschedulable is a cordon too.
        let patch = Command::MergePatch(bosun_host::contract::Patch {
            target: ObjectRef::cluster("v1", "Node", "n2"),
            patch: r#"{"spec":{"unschedulable":true}}"#.into(),
        });
        assert!(budget.check("r", &patch, &view, now).is_err());
        // 20 nodes: 2 at once.
        for i in 9..20 {
            view = view.with(node(&format!("n{i}")).build());
        }
        assert!(budget.check("r", &patch, &view, now).is_ok());
    }

    #[test]
    fn refusals_read_as_before() {
        let now = Instant::now();
        let mut view = FakeView::default();
        for i in 1..=7 {
            view = view.with(node(&format!("n{i}")).unschedulable().build());
        }
        let view = view.with(node("n9").build());
        let err = MaxCordonedNodes::new(3)
            .check("r", &Command::Cordon("n9".into()), &view, now)
            .expect_err("seven nodes are out");
        assert_eq!(
            err.to_string(),
            "7 nodes are already unschedulable or being cordoned (n1, n2, n3, n4, n5, ...), \
             the limit is 3; refusing to cordon node n9"
        );
        let view = FakeView::default()
            .with(node("n1").unschedulable().build())
            .with(node("n2").unschedulable().build())
            .with(node("n3").build());
        let err = MaxCordonedNodes::new(2)
            .check("r", &taint("n3", TaintEffect::NoExecute), &view, now)
            .expect_err("two nodes are out");
        assert_eq!(
            err.to_string(),
            "2 nodes are already unschedulable or being cordoned (n1, n2), the limit is 2; \
             refusing to taint node n3"
        );
    }
}
