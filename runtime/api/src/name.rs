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
}
