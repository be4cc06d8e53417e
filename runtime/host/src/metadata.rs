//! What a plugin declares about itself, checked at load time and consulted on every
//! cache read and command.

use crate::contract::{PluginMetadata, Verb};
use crate::limits::{
    MAX_METADATA_FIELD_BYTES, MAX_METADATA_TEXT_BYTES, MAX_PERMISSIONS, MAX_SUBSCRIPTIONS,
    MAX_VERBS_PER_PERMISSION,
};
use bosun_api::Selector;
use bosun_api::name::is_dns_label;

/// A plugin's metadata that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

/// Validated metadata.
#[derive(Debug, Clone)]
pub struct Metadata {
    raw: PluginMetadata,
}

impl Metadata {
    /// Validates what the plugin's `metadata` export returned.
    pub fn new(raw: PluginMetadata) -> Result<Self, Error> {
        check_caps(&raw)?;
        if !is_dns_label(&raw.name) {
            return Err(Error(format!(
                "name {:?} is not a DNS label (lowercase letters, digits and '-', at most 63 characters)",
                raw.name
            )));
        }
        for (i, s) in raw.subscriptions.iter().enumerate() {
            check_kind(&s.api_version, &s.kind, false)
                .map_err(|e| Error(format!("subscription {i}: {e}")))?;
            if let Some(ns) = &s.namespace
                && !is_dns_label(ns)
            {
                return Err(Error(format!(
                    "subscription {i}: namespace {ns:?} is not a DNS label"
                )));
            }
            if let Some(sel) = &s.label_selector {
                Selector::parse(sel).map_err(|e| Error(format!("subscription {i}: {e}")))?;
            }
        }
        for (i, p) in raw.permissions.iter().enumerate() {
            check_kind(&p.api_version, &p.kind, true)
                .map_err(|e| Error(format!("permission {i}: {e}")))?;
        }
        Ok(Metadata { raw })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.raw.name
    }

    /// The metadata as the plugin returned it.
    pub fn raw(&self) -> &PluginMetadata {
        &self.raw
    }

    /// Whether the plugin declared `verb` on `api_version`/`kind`.
    pub fn permits(&self, verb: Verb, api_version: &str, kind: &str) -> bool {
        self.raw.permissions.iter().any(|p| {
            p.api_version == api_version
                && (p.kind == kind || p.kind == "*")
                && p.verbs.contains(&verb)
        })
    }

    /// Whether the plugin may read `api_version`/`kind` from the cache: it subscribes to
    /// the kind or holds `read` on it.
    pub fn can_read(&self, api_version: &str, kind: &str) -> bool {
        self.raw
            .subscriptions
            .iter()
            .any(|s| s.api_version == api_version && s.kind == kind)
            || self.permits(Verb::Read, api_version, kind)
    }
}

/// The sizes a plugin declares, checked before anything else looks at them.
fn check_caps(raw: &PluginMetadata) -> Result<(), Error> {
    let count = |what: &str, n: usize, max: usize| {
        if n > max {
            return Err(Error(format!(
                "{n} {what} declared, over the cap of {max} {what} per plugin"
            )));
        }
        Ok(())
    };
    count("subscriptions", raw.subscriptions.len(), MAX_SUBSCRIPTIONS)?;
    count("permissions", raw.permissions.len(), MAX_PERMISSIONS)?;
    let field = |what: &str, s: &str, max: usize| {
        if s.len() > max {
            return Err(Error(format!(
                "{what} is {} bytes, over the cap of {max} bytes",
                s.len()
            )));
        }
        Ok(())
    };
    field("name", &raw.name, MAX_METADATA_FIELD_BYTES)?;
    field("version", &raw.version, MAX_METADATA_FIELD_BYTES)?;
    field("description", &raw.description, MAX_METADATA_TEXT_BYTES)?;
    for (i, s) in raw.subscriptions.iter().enumerate() {
        let at = |what: &str| format!("subscription {i}: {what}");
        field(&at("api-version"), &s.api_version, MAX_METADATA_FIELD_BYTES)?;
        field(&at("kind"), &s.kind, MAX_METADATA_FIELD_BYTES)?;
        field(
            &at("namespace"),
            s.namespace.as_deref().unwrap_or_default(),
            MAX_METADATA_FIELD_BYTES,
        )?;
        field(
            &at("label selector"),
            s.label_selector.as_deref().unwrap_or_default(),
            MAX_METADATA_TEXT_BYTES,
        )?;
    }
    for (i, p) in raw.permissions.iter().enumerate() {
        let at = |what: &str| format!("permission {i}: {what}");
        field(&at("api-version"), &p.api_version, MAX_METADATA_FIELD_BYTES)?;
        field(&at("kind"), &p.kind, MAX_METADATA_FIELD_BYTES)?;
        if p.verbs.len() > MAX_VERBS_PER_PERMISSION {
            return Err(Error(format!(
                "permission {i}: {} verbs, over the cap of {MAX_VERBS_PER_PERMISSION} verbs per permission",
                p.verbs.len()
            )));
        }
    }
    Ok(())
}

fn check_kind(api_version: &str, kind: &str, wildcard: bool) -> Result<(), String> {
    if !valid_api_version(api_version) {
        return Err(format!(
            "api-version {api_version:?} is not valid (expected `v1` or `group/version` such as `apps/v1`)"
        ));
    }
    let valid_kind = kind.starts_with(|c: char| c.is_ascii_uppercase())
        && kind.chars().all(|c| c.is_ascii_alphanumeric())
        && kind.len() <= 63;
    if !(valid_kind || (wildcard && kind == "*")) {
        return Err(format!(
            "kind {kind:?} is not valid (expected UpperCamelCase such as `Pod`)"
        ));
    }
    Ok(())
}

fn valid_api_version(s: &str) -> bool {
    let (group, version) = match s.split_once('/') {
        Some((g, v)) => (Some(g), v),
        None => (None, s),
    };
    let group_ok = group.is_none_or(|g| g.len() <= 253 && g.split('.').all(is_dns_label));
    let version_ok = version.starts_with('v')
        && version.len() > 1
        && version
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && version[1..].starts_with(|c: char| c.is_ascii_digit());
    group_ok && version_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Permission, Subscription};

    fn meta(api_version: &str, kind: &str) -> PluginMetadata {
        PluginMetadata {
            name: "demo".into(),
            version: "0.1.0".into(),
            description: String::new(),
            subscriptions: vec![Subscription {
                api_version: api_version.into(),
                kind: kind.into(),
                namespace: None,
                label_selector: Some("app=web".into()),
            }],
            permissions: vec![Permission {
                api_version: "v1".into(),
                kind: "Pod".into(),
                verbs: vec![Verb::Patch],
            }],
        }
    }

    #[test]
    fn accepts_well_formed_metadata() {
        let m = Metadata::new(meta("apps/v1", "StatefulSet")).expect("valid");
        assert!(m.permits(Verb::Patch, "v1", "Pod"));
        assert!(!m.permits(Verb::Delete, "v1", "Pod"));
        assert!(m.can_read("apps/v1", "StatefulSet"));
        assert!(!m.can_read("v1", "Secret"));
    }

    #[test]
    fn a_hundred_thousand_subscriptions_are_refused_naming_the_cap() {
        let mut m = meta("v1", "Pod");
        m.subscriptions = vec![m.subscriptions[0].clone(); 100_000];
        let err = Metadata::new(m).expect_err("over the cap");
        assert!(
            err.0.contains("100000 subscriptions")
                && err
                    .0
                    .contains(&format!("cap of {MAX_SUBSCRIPTIONS} subscriptions")),
            "{err}"
        );
        let mut m = meta("v1", "Pod");
        m.permissions = vec![m.permissions[0].clone(); MAX_PERMISSIONS + 1];
        let err = Metadata::new(m).expect_err("over the cap");
        assert!(err.0.contains("cap of 64 permissions"), "{err}");
        let mut m = meta("v1", "Pod");
        m.subscriptions = vec![m.subscriptions[0].clone(); MAX_SUBSCRIPTIONS];
        m.permissions = vec![m.permissions[0].clone(); MAX_PERMISSIONS];
        assert!(Metadata::new(m).is_ok(), "at the cap is allowed");
    }

    #[test]
    fn long_metadata_strings_are_refused_naming_the_field() {
        let mut m = meta("v1", "Pod");
        m.description = "x".repeat(1 << 20);
        let err = Metadata::new(m).expect_err("over the cap");
        assert!(err.0.starts_with("description is 1048576 bytes"), "{err}");
        let mut m = meta("v1", "Pod");
        m.version = "1".repeat(300);
        assert!(Metadata::new(m).expect_err("long").0.starts_with("version"));
        let mut m = meta("v1", "Pod");
        m.subscriptions[0].label_selector = Some("a".repeat(10_000));
        let err = Metadata::new(m).expect_err("long selector");
        assert!(err.0.contains("subscription 0: label selector"), "{err}");
    }

    #[test]
    fn rejects_malformed_kinds() {
        let err = Metadata::new(meta("not a version!", "")).expect_err("invalid");
        assert!(err.0.contains("api-version \"not a version!\""), "{err}");
        assert!(Metadata::new(meta("v1", "pod")).is_err());
        assert!(Metadata::new(meta("bosun.dev/v1alpha1", "Plugin")).is_ok());
        let mut bad_name = meta("v1", "Pod");
        bad_name.name = "Bad_Name".into();
        assert!(Metadata::new(bad_name).is_err());
    }
}
