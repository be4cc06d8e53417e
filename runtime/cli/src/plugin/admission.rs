//! `bosun plugin test --review`: one review of an admission plugin, answered offline.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use base64::Engine as _;
use bosun_host::Revision;
use bosun_host::host::log;
use serde_json::{Value, json};

/// Reads an AdmissionReview request: `admission.k8s.io/v1`, kind `AdmissionReview`, with a
/// `request` that has a uid.
pub(super) fn read_review(path: &Path) -> anyhow::Result<Value> {
    let review = super::read_one(path, "review")?;
    let is_review = review.get("apiVersion").and_then(Value::as_str) == Some("admission.k8s.io/v1")
        && review.get("kind").and_then(Value::as_str) == Some("AdmissionReview");
    if !is_review {
        bail!(
            "{} is not an AdmissionReview (it needs apiVersion admission.k8s.io/v1 and kind \
             AdmissionReview)",
            path.display()
        );
    }
    if review
        .pointer("/request/uid")
        .and_then(Value::as_str)
        .is_none()
    {
        bail!(
            "{} is an AdmissionReview without a request (it needs request.uid and \
             request.object)",
            path.display()
        );
    }
    Ok(review)
}

/// Runs one review and prints the plugin's response, its patch decoded, and its log lines.
pub(super) fn review(
    revision: &Revision,
    review: &Value,
    logs: &log::Memory,
) -> anyhow::Result<ExitCode> {
    let uid = review.pointer("/request/uid").cloned().unwrap_or_default();
    let result = revision.review(&review.to_string());
    let log_lines = super::log_lines(logs);
    let (status, response, code) = match result {
        Ok(answer) => {
            let response = check(&answer, &uid).with_context(|| {
                format!(
                    "plugin {}: its answer is not a usable AdmissionReview",
                    revision.name()
                )
            })?;
            ("ok", response, ExitCode::SUCCESS)
        }
        Err(e) => (
            "error",
            json!({ "kind": e.kind(), "message": e.to_string() }),
            ExitCode::FAILURE,
        ),
    };
    let key = if status == "ok" {
        "response"
    } else {
        "outcome"
    };
    let out = json!({
        "plugin": revision.name(),
        "revision": revision.digest(),
        "uid": uid,
        "status": status,
        key: response,
        "logs": log_lines,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(code)
}

/// The response of a plugin's answer, checked as the webhook checks it (an AdmissionReview
/// whose response echoes the uid and says `allowed`), with its patch decoded under
/// `patchDecoded`.
fn check(answer: &str, uid: &Value) -> anyhow::Result<Value> {
    let review: Value = serde_json::from_str(answer).context("it is not JSON")?;
    if review.get("kind").and_then(Value::as_str) != Some("AdmissionReview") {
        bail!("it is not an AdmissionReview: {}", excerpt(answer));
    }
    let Some(mut response) = review.get("response").filter(|r| r.is_object()).cloned() else {
        bail!("the AdmissionReview has no response: {}", excerpt(answer));
    };
    if response.get("uid") != Some(uid) {
        bail!(
            "response.uid {} is not the request's {uid} (echo request.uid)",
            response.get("uid").unwrap_or(&Value::Null)
        );
    }
    if !response.get("allowed").is_some_and(Value::is_boolean) {
        bail!("response.allowed is missing or not a boolean");
    }
    if let Some(patch) = response.get("patch").filter(|p| !p.is_null()) {
        let encoded = patch
            .as_str()
            .context("response.patch is not a base64 string")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .context("response.patch is not base64")?;
        let decoded: Value =
            serde_json::from_slice(&bytes).context("response.patch is not a JSON patch")?;
        response["patchDecoded"] = decoded;
    }
    Ok(response)
}

/// The start of a long text, for an error message.
fn excerpt(text: &str) -> String {
    const MAX: usize = 200;
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_that_is_not_a_review_is_refused() {
        let uid = json!("u");
        assert!(check("not json", &uid).is_err());
        assert!(check(r#"{"kind":"Pod"}"#, &uid).is_err());
        assert!(check(r#"{"kind":"AdmissionReview"}"#, &uid).is_err());
        let ok = r#"{"kind":"AdmissionReview","response":{"uid":"u","allowed":true,
            "patchType":"JSONPatch","patch":"W10="}}"#;
        assert_eq!(check(ok, &uid).expect("valid")["patchDecoded"], json!([]));
        let wrong_uid = r#"{"kind":"AdmissionReview","response":{"uid":"x","allowed":true}}"#;
        assert!(check(wrong_uid, &uid).is_err());
    }
}
