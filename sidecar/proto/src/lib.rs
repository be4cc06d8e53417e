//! The protocol between the Bosun runtime and the sidecar in each pod
//! (`proto/bosun/link/v1/link.proto`), and the tokens that tie a sidecar to its pod.
//!
//! One bidirectional stream per sidecar carries hello, assignments, commands, acks,
//! outcomes and probe reports; plugin bytes are fetched by digest in chunks.

#[allow(missing_docs, clippy::all, clippy::pedantic, rust_2018_idioms)]
mod generated {
    tonic::include_proto!("bosun.link.v1");
}

pub use generated::*;

use sha2::{Digest, Sha256};

/// The largest message either side accepts (plugin bytes travel in chunks below it).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// The size of the chunks plugin bytes are fetched in.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// The metadata key the sidecar's token travels in.
pub const AUTHORIZATION: &str = "authorization";

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// The token the runtime issues to the sidecar of `namespace/pod` (uid `uid`) in
/// embedded mode: an HMAC of the pod's identity under the runtime's secret.
pub fn pod_token(secret: &[u8], namespace: &str, pod: &str, uid: &str) -> String {
    let mac = hmac_sha256(secret, format!("{namespace}/{pod}/{uid}").as_bytes());
    format!("bosun.v1.{}", hex::encode(mac))
}

/// Whether `token` was issued for `namespace/pod` (uid `uid`), compared in constant time.
pub fn token_matches(secret: &[u8], token: &str, namespace: &str, pod: &str, uid: &str) -> bool {
    let expected = pod_token(secret, namespace, pod, uid);
    let (a, b) = (expected.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `sha256:<hex>` of `bytes`, the name of a plugin revision.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_token_belongs_to_one_pod() {
        let t = pod_token(b"secret", "demo", "web-0", "u1");
        assert!(token_matches(b"secret", &t, "demo", "web-0", "u1"));
        assert!(!token_matches(b"secret", &t, "demo", "web-1", "u1"));
        assert!(!token_matches(b"secret", &t, "demo", "web-0", "u2"));
        assert!(!token_matches(b"other", &t, "demo", "web-0", "u1"));
        assert!(!token_matches(
            b"secret",
            "bosun.v1.00",
            "demo",
            "web-0",
            "u1"
        ));
    }
}
