//! Kubernetes' name rules (`k8s.io/apimachinery/pkg/util/validation`).

/// Whether `s` is a DNS-1123 label: lowercase alphanumerics and `-`, at most 63
/// characters, starting and ending alphanumeric (namespaces, most label-key names).
pub fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_label_chars(s)
}

/// Whether `s` is a DNS-1123 subdomain: dot-separated parts of lowercase alphanumerics
/// and `-`, each starting and ending alphanumeric, at most 253 characters in all (most
/// object names, label-key prefixes). As Kubernetes' regular expression, a part is not
/// limited to 63 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_label_chars)
}

fn is_label_chars(s: &str) -> bool {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    s.starts_with(ok) && s.ends_with(ok) && s.chars().all(|c| ok(c) || c == '-')
}

/// Whether `s` is a qualified name (a label or annotation key, a taint key): an
/// optional DNS-subdomain prefix and `/`, then at most 63 alphanumerics, `-`, `_` or `.`,
/// starting and ending alphanumeric.
pub fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns_subdomain) && name.len() <= 63 && is_qualified_chars(name)
}

/// Whether `s` is a label value: empty, or at most 63 alphanumerics, `-`, `_` or `.`,
/// starting and ending alphanumeric.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || (s.len() <= 63 && is_qualified_chars(s))
}

fn is_qualified_chars(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    s.starts_with(alnum)
        && s.ends_with(alnum)
        && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
}

/// Whether `s` can name an object of any kind in a request path (Kubernetes'
/// `IsValidPathSegmentName` plus its length limit): not `.` or `..`, no `/` or `%`, no
/// control characters, at most 253 bytes.
pub fn is_path_segment_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && !s.contains(['/', '%'])
        && !s.chars().any(char::is_control)
}

/// Whether `s` is an API version: `v1`, or `GROUP/VERSION` with a DNS-subdomain group and
/// a DNS-label version.
pub fn is_api_version(s: &str) -> bool {
    match s.split_once('/') {
        Some((group, version)) => is_dns_subdomain(group) && is_dns_label(version),
        None => is_dns_label(s),
    }
}

/// Whether `s` is a kind: a letter, then letters and digits (`Pod`, `StatefulSet`), at
/// most 63 characters.
pub fn is_kind(s: &str) -> bool {
    s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Why `name` cannot name an object of `kind`, by that kind's rule: a DNS-1123 label for
/// namespaces, a DNS-1123 subdomain for the kinds that require one (pods, nodes,
/// workloads, config, events, leases...), a path-segment name for any other kind.
pub fn check_object_name(kind: &str, name: &str) -> Result<(), String> {
    const SUBDOMAIN: &[&str] = &[
        "Pod",
        "Node",
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "Event",
        "Endpoints",
        "StatefulSet",
        "Deployment",
        "ReplicaSet",
        "DaemonSet",
        "Job",
        "CronJob",
        "PodDisruptionBudget",
        "Lease",
        "CustomResourceDefinition",
    ];
    let (ok, rule) = if kind == "Namespace" {
        (
            is_dns_label(name),
            "a DNS-1123 label (lowercase alphanumerics and '-', at most 63)",
        )
    } else if SUBDOMAIN.contains(&kind) {
        (
            is_dns_subdomain(name),
            "a DNS-1123 subdomain (lowercase alphanumerics, '-' and '.', at most 253)",
        )
    } else {
        (
            is_path_segment_name(name),
            "a path segment (not '.' or '..', no '/', '%' or control characters, at most 253)",
        )
    };
    if ok {
        Ok(())
    } else {
        Err(format!("name {name:?} of a {kind} is not {rule}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        assert!(is_dns_label("web-0"));
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad:?}");
        }
        assert!(is_dns_subdomain("example.com"));
        assert!(is_dns_subdomain("web-0"));
        assert!(is_dns_subdomain(&"a".repeat(64)));
        for bad in ["", ".", "..", "a..b", "a/b", "../etc", &"a".repeat(254)] {
            assert!(!is_dns_subdomain(bad), "{bad:?}");
        }
    }

    #[test]
    fn qualified_names_and_values() {
        assert!(is_qualified_name("app"));
        assert!(is_qualified_name("topology.kubernetes.io/zone"));
        for bad in ["", "/a", "a/", "bad key", "-x", "A_/b", &"a".repeat(64)] {
            assert!(!is_qualified_name(bad), "{bad:?}");
        }
        assert!(is_label_value("") && is_label_value("zone-a"));
        assert!(!is_label_value("a b") && !is_label_value("-a"));
    }

    #[test]
    fn object_names_by_kind() {
        assert!(check_object_name("Pod", "web-0").is_ok());
        assert!(check_object_name("Node", "sim-node-0").is_ok());
        assert!(check_object_name("Namespace", "demo").is_ok());
        assert!(check_object_name("ClusterRole", "system:controller").is_ok());
        for (kind, bad) in [
            ("Pod", "\u{0}\n/.."),
            ("Node", "a/../../b"),
            ("Namespace", "../../etc"),
            ("Namespace", "a.b"),
            ("ClusterRole", ".."),
            ("ClusterRole", "a/b"),
            ("ClusterRole", "50%"),
            ("Widget", "a\u{7}"),
        ] {
            assert!(check_object_name(kind, bad).is_err(), "{kind} {bad:?}");
        }
    }

    #[test]
    fn api_versions_and_kinds() {
        for ok in ["v1", "apps/v1", "bosun.dev/v1alpha1"] {
            assert!(is_api_version(ok), "{ok}");
        }
        for bad in ["", "/v1", "apps/", "Apps/v1", "a/b/c", "../v1"] {
            assert!(!is_api_version(bad), "{bad:?}");
        }
        assert!(is_kind("StatefulSet") && !is_kind("") && !is_kind("Pod/x") && !is_kind("1Pod"));
    }
}
