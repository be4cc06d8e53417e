//! Conversions between the SDK's types and the generated WIT types.

use crate::wit::bosun::operator::types as wit;
use crate::{Metadata, ObjectRef, Verb};

impl From<&ObjectRef> for wit::ObjectRef {
    fn from(r: &ObjectRef) -> Self {
        Self {
            api_version: r.api_version.clone(),
            kind: r.kind.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
        }
    }
}

impl From<ObjectRef> for wit::ObjectRef {
    fn from(r: ObjectRef) -> Self {
        Self {
            api_version: r.api_version,
            kind: r.kind,
            namespace: r.namespace,
            name: r.name,
        }
    }
}

impl From<wit::ObjectRef> for ObjectRef {
    fn from(r: wit::ObjectRef) -> Self {
        Self {
            api_version: r.api_version,
            kind: r.kind,
            namespace: r.namespace,
            name: r.name,
        }
    }
}

impl From<Verb> for wit::Verb {
    fn from(verb: Verb) -> Self {
        match verb {
            Verb::Read => Self::Read,
            Verb::Apply => Self::Apply,
            Verb::Patch => Self::Patch,
            Verb::Delete => Self::Delete,
            Verb::Evict => Self::Evict,
            Verb::Cordon => Self::Cordon,
            Verb::RecordEvent => Self::RecordEvent,
            Verb::PodCommand => Self::PodCommand,
        }
    }
}

impl From<Metadata> for wit::PluginMetadata {
    fn from(m: Metadata) -> Self {
        Self {
            name: m.name,
            version: m.version,
            description: m.description,
            subscriptions: m
                .subscriptions
                .into_iter()
                .map(|s| wit::Subscription {
                    api_version: s.api_version,
                    kind: s.kind,
                    namespace: s.namespace,
                    label_selector: s.label_selector,
                })
                .collect(),
            permissions: m
                .permissions
                .into_iter()
                .map(|p| wit::Permission {
                    api_version: p.api_version,
                    kind: p.kind,
                    verbs: p.verbs.into_iter().map(Into::into).collect(),
                })
                .collect(),
        }
    }
}

#[cfg(feature = "controller")]
mod controller {
    use super::wit;
    use crate::{
        Command, CommandId, CommandOutcome, EventKind, EventType, Request, TaintEffect, Verdict,
    };

    impl From<wit::TaintEffect> for TaintEffect {
        fn from(e: wit::TaintEffect) -> Self {
            match e {
                wit::TaintEffect::NoSchedule => Self::NoSchedule,
                wit::TaintEffect::PreferNoSchedule => Self::PreferNoSchedule,
                wit::TaintEffect::NoExecute => Self::NoExecute,
            }
        }
    }

    impl From<TaintEffect> for wit::TaintEffect {
        fn from(e: TaintEffect) -> Self {
            match e {
                TaintEffect::NoSchedule => Self::NoSchedule,
                TaintEffect::PreferNoSchedule => Self::PreferNoSchedule,
                TaintEffect::NoExecute => Self::NoExecute,
            }
        }
    }

    impl From<Command> for wit::Command {
        fn from(cmd: Command) -> Self {
            match cmd {
                Command::Apply { object } => Self::Apply(object),
                Command::MergePatch { target, patch } => Self::MergePatch(wit::Patch {
                    target: target.into(),
                    patch,
                }),
                Command::JsonPatch { target, patch } => Self::JsonPatch(wit::Patch {
                    target: target.into(),
                    patch,
                }),
                Command::Delete { target } => Self::Delete(target.into()),
                Command::Evict { pod } => Self::Evict(pod.into()),
                Command::Cordon { node } => Self::Cordon(node),
                Command::Uncordon { node } => Self::Uncordon(node),
                Command::Taint { node, taint } => Self::Taint(wit::NodeTaint {
                    node,
                    taint: wit::Taint {
                        key: taint.key,
                        value: taint.value,
                        effect: taint.effect.into(),
                    },
                }),
                Command::Untaint { node, key, effect } => Self::Untaint(wit::NodeUntaint {
                    node,
                    key,
                    effect: effect.map(Into::into),
                }),
                Command::Event {
                    regarding,
                    event_type,
                    reason,
                    message,
                } => Self::RecordEvent(wit::EventCommand {
                    regarding: regarding.into(),
                    event_type: match event_type {
                        EventType::Normal => wit::EventType::Normal,
                        EventType::Warning => wit::EventType::Warning,
                    },
                    reason,
                    message,
                }),
                Command::Pod {
                    namespace,
                    pod,
                    plugin,
                    payload,
                } => Self::PodCommand(wit::PodCommand {
                    namespace,
                    pod,
                    plugin,
                    payload,
                }),
            }
        }
    }

    impl From<wit::EventKind> for EventKind {
        fn from(e: wit::EventKind) -> Self {
            match e {
                wit::EventKind::Added => Self::Added,
                wit::EventKind::Modified => Self::Modified,
                wit::EventKind::Deleted => Self::Deleted,
                wit::EventKind::Resync => Self::Resync,
                wit::EventKind::Requeued => Self::Requeued,
            }
        }
    }

    impl From<wit::CommandOutcome> for CommandOutcome {
        fn from(o: wit::CommandOutcome) -> Self {
            Self {
                id: CommandId(o.id),
                verdict: match o.verdict {
                    wit::Verdict::Pending => Verdict::Pending,
                    wit::Verdict::Executed => Verdict::Executed,
                    wit::Verdict::DryRun => Verdict::DryRun,
                    wit::Verdict::Refused => Verdict::Refused,
                    wit::Verdict::Failed => Verdict::Failed,
                },
                message: o.message,
            }
        }
    }

    impl From<wit::ReconcileRequest> for Request {
        fn from(r: wit::ReconcileRequest) -> Self {
            let mut request = Request::new(r.target.into()).with_attempt(r.attempt);
            for event in r.events {
                request = request.with_event(event.into());
            }
            for outcome in r.outcomes {
                request = request.with_outcome(outcome.into());
            }
            request
        }
    }
}
