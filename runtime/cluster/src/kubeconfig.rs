//! The kubeconfig file written at start, so kubectl and kube-rs connect unchanged.

use std::path::Path;

/// The context, cluster and user name in the written kubeconfig.
pub const CONTEXT: &str = "bosun";

/// A kubeconfig for `url` (plain HTTP on loopback, no authentication).
pub fn render(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT}
  cluster:
    server: {url}
contexts:
- name: {CONTEXT}
  context:
    cluster: {CONTEXT}
    user: {CONTEXT}
    namespace: default
current-context: {CONTEXT}
users:
- name: {CONTEXT}
  user: {{}}
preferences: {{}}
"
    )
}

/// Writes the kubeconfig atomically (write then rename), so a reader never sees half of it.
pub fn write(path: &Path, url: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, render(url))?;
    std::fs::rename(&tmp, path)
}

/// Writes a kubeconfig's text atomically (the authenticating cluster's carries a token, so
/// only its owner may read it).
pub(crate) fn write_text(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    std::io::Write::write_all(&mut opts.open(&tmp)?, text.as_bytes())?;
    std::fs::rename(&tmp, path)
}
