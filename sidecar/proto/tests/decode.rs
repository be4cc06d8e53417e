//! The link's messages come from the network: decoding any bytes as any of them never
//! panics, and every valid message survives encoding and decoding unchanged.
//! `PROPTEST_CASES=100000 cargo test -p bosun-link --test decode` runs more cases.

use bosun_link::{
    Ack, Assignment, Command, Drain, FetchChunk, FetchRequest, Hello, Outcome, PluginAssignment,
    PluginError, PluginLoaded, PluginRef, ProbeReport, RuntimeMessage, SidecarMessage, Welcome,
    runtime_message, sidecar_message,
};
use proptest::collection::vec;
use proptest::prelude::*;
use prost::Message;

fn text() -> impl Strategy<Value = String> {
    ".{0,24}"
}

fn hello() -> impl Strategy<Value = Hello> {
    (text(), text(), text(), text(), vec((text(), text()), 0..4)).prop_map(
        |(namespace, pod, uid, sidecar_version, plugins)| Hello {
            namespace,
            pod,
            uid,
            sidecar_version,
            plugins: plugins
                .into_iter()
                .map(|(name, digest)| PluginRef { name, digest })
                .collect(),
        },
    )
}

fn sidecar_message() -> impl Strategy<Value = SidecarMessage> {
    use sidecar_message::Body;
    let body = prop_oneof![
        hello().prop_map(Body::Hello),
        (text(), text(), any::<bool>(), text()).prop_map(|(plugin, kind, healthy, message)| {
            Body::Probe(ProbeReport {
                plugin,
                kind,
                healthy,
                message,
            })
        }),
        any::<u64>().prop_map(|id| Body::Ack(Ack { id })),
        (any::<u64>(), text(), text(), any::<bool>(), text()).prop_map(
            |(id, plugin, revision, ok, message)| Body::Outcome(Outcome {
                id,
                plugin,
                revision,
                ok,
                message,
            })
        ),
        (text(), text(), text()).prop_map(|(plugin, digest, message)| {
            Body::PluginError(PluginError {
                plugin,
                digest,
                message,
            })
        }),
        (text(), text(), any::<u64>()).prop_map(|(plugin, digest, load_micros)| {
            Body::PluginLoaded(PluginLoaded {
                plugin,
                digest,
                load_micros,
            })
        }),
    ];
    proptest::option::of(body).prop_map(|body| SidecarMessage { body })
}

fn runtime_message() -> impl Strategy<Value = RuntimeMessage> {
    use runtime_message::Body;
    let assignment = vec((text(), text(), text(), any::<u64>()), 0..4).prop_map(|plugins| {
        Body::Assignment(Assignment {
            plugins: plugins
                .into_iter()
                .map(|(name, digest, config, size)| PluginAssignment {
                    name,
                    digest,
                    config,
                    size,
                })
                .collect(),
        })
    });
    let body = prop_oneof![
        (text(), any::<u32>(), text()).prop_map(|(runtime_id, heartbeat_ms, engine)| {
            Body::Welcome(Welcome {
                runtime_id,
                heartbeat_ms,
                engine,
            })
        }),
        assignment,
        (any::<u64>(), text(), text()).prop_map(|(id, plugin, payload)| {
            Body::Command(Command {
                id,
                plugin,
                payload,
            })
        }),
        text().prop_map(|reason| Body::Drain(Drain { reason })),
    ];
    proptest::option::of(body).prop_map(|body| RuntimeMessage { body })
}

/// Decodes `bytes` as every message of the protocol; an error is fine, a panic is not.
fn decode_all(bytes: &[u8]) {
    let _ = SidecarMessage::decode(bytes);
    let _ = RuntimeMessage::decode(bytes);
    let _ = FetchRequest::decode(bytes);
    let _ = FetchChunk::decode(bytes);
    let _ = Hello::decode(bytes);
    let _ = Assignment::decode(bytes);
    let _ = Outcome::decode(bytes);
    let _ = SidecarMessage::decode_length_delimited(bytes);
    let _ = RuntimeMessage::decode_length_delimited(bytes);
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    #[test]
    fn damaged_messages_never_panic(
        m in sidecar_message(),
        r in runtime_message(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        for mut bytes in [m.encode_to_vec(), r.encode_to_vec()] {
            if bytes.is_empty() {
                continue;
            }
            for (at, byte) in &flips {
                let i = at.index(bytes.len());
                bytes[i] ^= byte;
            }
            decode_all(&bytes);
            decode_all(&bytes[..cut.index(bytes.len())]);
        }
    }

    #[test]
    fn valid_messages_round_trip(m in sidecar_message(), r in runtime_message()) {
        prop_assert_eq!(SidecarMessage::decode(m.encode_to_vec().as_slice())?, m);
        prop_assert_eq!(RuntimeMessage::decode(r.encode_to_vec().as_slice())?, r);
    }

    #[test]
    fn fetch_messages_round_trip(
        (digest, namespace, pod, uid) in (text(), text(), text(), text()),
        precompiled in any::<bool>(),
        data in vec(any::<u8>(), 0..256),
        (size, sha256) in (any::<u64>(), text()),
    ) {
        let request = FetchRequest { digest, namespace, pod, uid, precompiled };
        prop_assert_eq!(FetchRequest::decode(request.encode_to_vec().as_slice())?, request);
        let chunk = FetchChunk { data, size, sha256 };
        prop_assert_eq!(FetchChunk::decode(chunk.encode_to_vec().as_slice())?, chunk);
    }
}
