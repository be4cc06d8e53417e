//! What a plugin says about itself: name, subscriptions and permissions.

/// A verb a plugin may be granted on a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    /// Read through the cache (`get`, `list`). Subscribing to a kind grants it.
    Read,
    /// Server-side apply of a whole object.
    Apply,
    /// Merge patch or JSON patch.
    Patch,
    /// Delete an object.
    Delete,
    /// Eviction API (honours PodDisruptionBudgets). Kind `Pod`.
    Evict,
    /// Cordon, uncordon, taint and untaint. Kind `Node`.
    Cordon,
    /// Record a Kubernetes Event about an object of this kind.
    RecordEvent,
    /// Send a command to a pod's sidecar. Kind `Pod`.
    PodCommand,
}

/// Which objects a plugin wants to be called for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// `v1`, `apps/v1`, ...
    pub api_version: String,
    /// `Pod`, `Deployment`, ...
    pub kind: String,
    /// Only this namespace; `None` for all namespaces (or a cluster-scoped kind).
    pub namespace: Option<String>,
    /// A Kubernetes label selector (`app=web,tier in (a,b),!legacy`).
    pub label_selector: Option<String>,
}

impl Subscription {
    /// Every object of this kind, in every namespace.
    pub fn new(api_version: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: None,
            label_selector: None,
        }
    }

    /// Only objects in this namespace.
    #[must_use]
    pub fn in_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Only objects whose labels match this selector.
    #[must_use]
    pub fn selector(mut self, label_selector: impl Into<String>) -> Self {
        self.label_selector = Some(label_selector.into());
        self
    }
}

/// Verbs a plugin may use on one kind. Anything not declared is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    /// `v1`, `apps/v1`, ...
    pub api_version: String,
    /// A kind, or `*` for every kind of this api-version.
    pub kind: String,
    /// The verbs granted.
    pub verbs: Vec<Verb>,
}

/// What a plugin says about itself; the host asks once when it loads a revision.
///
/// ```
/// # use bosun_sdk::{Metadata, Verb};
/// let metadata = Metadata::new("zone-labeler", "0.1.0")
///     .description("copies the node's zone label onto its pods")
///     .subscribe("v1", "Pod")
///     .permit("v1", "Pod", &[Verb::Read, Verb::Patch])
///     .permit("v1", "Node", &[Verb::Read]);
/// assert_eq!(metadata.permissions.len(), 2);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// DNS-label name: lowercase letters, digits and `-`, at most 63 characters.
    pub name: String,
    /// The author's version string (the host names revisions by digest, not by this).
    pub version: String,
    /// One line saying what the plugin does.
    pub description: String,
    /// Which objects the plugin is called for.
    pub subscriptions: Vec<Subscription>,
    /// What the plugin may do.
    pub permissions: Vec<Permission>,
}

impl Metadata {
    /// A plugin with this name and version, no subscriptions and no permissions.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            subscriptions: Vec::new(),
            permissions: Vec::new(),
        }
    }

    /// Sets the description.
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Subscribes to every object of a kind, in every namespace.
    #[must_use]
    pub fn subscribe(self, api_version: impl Into<String>, kind: impl Into<String>) -> Self {
        self.subscription(Subscription::new(api_version, kind))
    }

    /// Adds a subscription (for a namespace or label selector).
    #[must_use]
    pub fn subscription(mut self, subscription: Subscription) -> Self {
        self.subscriptions.push(subscription);
        self
    }

    /// Grants verbs on a kind (`*` for every kind of the api-version).
    #[must_use]
    pub fn permit(
        mut self,
        api_version: impl Into<String>,
        kind: impl Into<String>,
        verbs: &[Verb],
    ) -> Self {
        self.permissions.push(Permission {
            api_version: api_version.into(),
            kind: kind.into(),
            verbs: verbs.to_vec(),
        });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_collects_subscriptions_and_permissions() {
        let metadata = Metadata::new("zone-labeler", "0.1.0")
            .description("labels pods")
            .subscribe("v1", "Pod")
            .subscription(
                Subscription::new("apps/v1", "Deployment")
                    .in_namespace("shop")
                    .selector("app=web"),
            )
            .permit("v1", "Pod", &[Verb::Read, Verb::Patch])
            .permit("v1", "Node", &[Verb::Read]);
        assert_eq!(metadata.name, "zone-labeler");
        assert_eq!(metadata.version, "0.1.0");
        assert_eq!(metadata.description, "labels pods");
        assert_eq!(
            metadata.subscriptions,
            vec![
                Subscription::new("v1", "Pod"),
                Subscription {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    namespace: Some("shop".into()),
                    label_selector: Some("app=web".into()),
                },
            ]
        );
        assert_eq!(
            metadata.permissions[0],
            Permission {
                api_version: "v1".into(),
                kind: "Pod".into(),
                verbs: vec![Verb::Read, Verb::Patch],
            }
        );
        assert_eq!(metadata.permissions[1].kind, "Node");
    }
}
