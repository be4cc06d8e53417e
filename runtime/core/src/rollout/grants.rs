//! What a `Plugin` object grants (`spec.permissions`), and what a revision asks for
//! beyond it: checked before a revision serves — stable, canary or shadow — and again
//! when a canary is promoted.

use bosun_api::plugin::Permission;
use bosun_host::contract;

/// The permissions a Plugin object grants its revisions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants(Vec<Permission>);

impl Grants {
    /// What `spec.permissions` grants.
    pub fn new(permissions: &[Permission]) -> Self {
        Grants(permissions.to_vec())
    }

    /// What `asked` (a revision's metadata) asks for that is not granted, as
    /// `verb on apiVersion/kind`; empty when everything is.
    pub fn missing(&self, asked: &[contract::Permission]) -> Vec<String> {
        let mut missing = Vec::new();
        for asked in asked {
            for verb in &asked.verbs {
                let granted = self.0.iter().any(|g| {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_host::contract::Verb;

    fn granted(api_version: &str, kind: &str, verbs: &[&str]) -> Permission {
        Permission {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    fn asked(api_version: &str, kind: &str, verbs: &[Verb]) -> contract::Permission {
        contract::Permission {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            verbs: verbs.to_vec(),
        }
    }

    #[test]
    fn what_is_asked_beyond_the_grants_is_named() {
        let grants = Grants::new(&[
            granted("v1", "Pod", &["read", "patch"]),
            granted("apps/v1", "*", &["read"]),
            granted("v1", "Node", &["*"]),
        ]);
        let ok = [
            asked("v1", "Pod", &[Verb::Read, Verb::Patch]),
            asked("apps/v1", "StatefulSet", &[Verb::Read]),
            asked("v1", "Node", &[Verb::Cordon]),
        ];
        assert!(grants.missing(&ok).is_empty());
        let beyond = [
            asked("v1", "Pod", &[Verb::Read, Verb::Evict]),
            asked("apps/v1", "StatefulSet", &[Verb::Delete]),
            asked("batch/v1", "Job", &[Verb::Read]),
        ];
        assert_eq!(
            grants.missing(&beyond),
            [
                "evict on v1/Pod",
                "delete on apps/v1/StatefulSet",
                "read on batch/v1/Job"
            ]
        );
        assert_eq!(Grants::default().missing(&ok).len(), 4);
    }
}
