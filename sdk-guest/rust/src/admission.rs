//! The `admission` world: plugins behind the runtime's admission webhook, and helpers to
//! answer an `admission.k8s.io/v1` AdmissionReview.

use std::marker::PhantomData;

use serde_json::{Value, json};

use crate::wit::bosun::operator::types as wit;
use crate::{Context, Error, Metadata, instance};

/// A plugin behind the runtime's mutating/validating admission webhook.
///
/// Export the type with [`export_admission!`](crate::export_admission).
pub trait Admission: Sized + 'static {
    /// Name, version, subscriptions and permissions.
    fn metadata() -> Metadata;

    /// Creates the instance from the JSON configuration (`{}` when none is given).
    fn init(config: &str) -> Result<Self, Error>;

    /// Answers an AdmissionReview (with `request` set) with the AdmissionReview carrying
    /// `response`; see [`allow`], [`deny`] and [`patch`]. An error fails the webhook call.
    fn review(&self, ctx: &mut Context, review: Value) -> Result<Value, Error>;
}

fn response(review: &Value, response: Value) -> Value {
    let mut response = response;
    response["uid"] = review
        .pointer("/request/uid")
        .cloned()
        .unwrap_or_else(|| Value::String(String::new()));
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    })
}

/// The answer that admits the object unchanged.
pub fn allow(review: &Value) -> Value {
    response(review, json!({"allowed": true}))
}

/// The answer that rejects the object with `message` (HTTP 403 in the status).
pub fn deny(review: &Value, message: &str) -> Value {
    response(
        review,
        json!({"allowed": false, "status": {"code": 403, "message": message}}),
    )
}

/// The answer that admits the object with a JSON patch (RFC 6902, an array of operations).
pub fn patch(review: &Value, json_patch: &Value) -> Value {
    response(
        review,
        json!({
            "allowed": true,
            "patchType": "JSONPatch",
            "patch": base64(json_patch.to_string().as_bytes()),
        }),
    )
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Implements the generated world trait for an [`Admission`].
#[doc(hidden)]
pub struct AdmissionExport<T>(PhantomData<T>);

impl<T: Admission> crate::wit::Guest for AdmissionExport<T> {
    fn metadata() -> wit::PluginMetadata {
        T::metadata().into()
    }

    fn init(config: String) -> Result<(), String> {
        instance::set(T::init(&config).map_err(String::from)?);
        Ok(())
    }

    fn review(request: String) -> Result<String, String> {
        let plugin = instance::get::<T>()?;
        let review: Value = serde_json::from_str(&request)
            .map_err(|err| format!("invalid AdmissionReview JSON: {err}"))?;
        Ok(plugin.review(&mut Context::new(), review)?.to_string())
    }
}

/// Exports an [`Admission`] as the component's `admission` world.
///
/// ```ignore
/// bosun_sdk::export_admission!(MyWebhook);
/// ```
#[macro_export]
macro_rules! export_admission {
    ($plugin:ty) => {
        const _: () = {
            type __BosunAdmissionExport = $crate::__private::AdmissionExport<$plugin>;
    $crate::wit::export!(__BosunAdmissionExport with_types_in $crate::wit);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn answers_carry_the_request_uid() {
        let review = json!({"request": {"uid": "abc"}});
        assert_eq!(
            allow(&review)["response"],
            json!({"uid": "abc", "allowed": true})
        );
        assert_eq!(deny(&review, "no")["response"]["status"]["message"], "no");
        let patched = patch(&review, &json!([]));
        assert_eq!(patched["response"]["patch"], "W10=");
        assert_eq!(patched["response"]["patchType"], "JSONPatch");
    }
}
