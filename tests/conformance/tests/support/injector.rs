//! The sidecarset-injector's webhook as the SidecarSet tests and benchmark declare it:
//! the settings it ships with (`plugins/sidecarset-injector/admission.json`: Pod CREATE,
//! SidecarSet CREATE and UPDATE), failing closed so a missed injection fails the test.

use bosun_api::plugin::{FailurePolicy, Webhook};

/// The shipped settings with `failurePolicy: Fail`.
pub fn webhook() -> Webhook {
    let mut webhook: Webhook = serde_json::from_str(include_str!(
        "../../../../plugins/sidecarset-injector/admission.json"
    ))
    .expect("the injector's admission.json is a Webhook");
    webhook.failure_policy = Some(FailurePolicy::Fail);
    webhook
}
