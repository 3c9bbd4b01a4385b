//! cache-buster: a Kubewarden mutating policy that stamps site Deployments
//! with their companion CDN cache-buster Job (see SPEC.md and README.md).
//!
//! This file only wires the waPC entry points; the decision lives in
//! `admission` (request routing and the JSON edit) and `deployment` (the pure
//! decision), which the launcher, the benchmarks and the fuzz targets reuse.

pub mod admission;
pub mod annotations;
pub mod deployment;
pub mod error;
pub mod fingerprint;
pub mod image;
pub mod job;
mod json_literal;
pub mod keys;
pub mod names;
pub mod placement;
pub mod providers;
/// Provider http's Service and request names, shared with the purge.
pub use cache_buster_purge::options as http_service;
pub mod quantity;
#[cfg(test)]
mod readme;
pub mod registry_ca;
pub mod settings;
pub mod targets;

use admission::Outcome;
use kubewarden_policy_sdk::settings::SettingsValidationResponse;
use kubewarden_policy_sdk::wapc_guest::{self as guest, CallResult};
use kubewarden_policy_sdk::{logging, protocol_version_guest};
use slog::{Logger, info, o};
use std::sync::LazyLock;

// Every evaluation allocates the Job's many small strings: talc does that
// faster than dlmalloc, wasm's default (see docs/development.md, "Speed and size").
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

static LOG_DRAIN: LazyLock<Logger> = LazyLock::new(|| {
    Logger::root(
        logging::KubewardenDrain::new(),
        o!("policy" => "cache-buster"),
    )
});

// The waPC host looks the entry point up by this exact symbol name.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn wapc_init() {
    guest::register_function("validate", validate);
    guest::register_function("validate_settings", validate_settings);
    guest::register_function("protocol_version", protocol_version_guest);
}

/// waPC `validate`: the outcome of `admission::evaluate` as a Kubewarden
/// ValidationResponse. The one place where an error becomes a rejection.
pub fn validate(payload: &[u8]) -> CallResult {
    let answer = match admission::evaluate(payload) {
        Outcome::Accept { warnings } => wire(true, None, None, &warnings),
        Outcome::Mutate { object, warnings } => wire(true, None, Some(&object), &warnings),
        Outcome::Reject(error) => {
            let message = error.to_string();
            info!(LOG_DRAIN, "rejecting request"; "reason" => &message);
            wire(false, Some(&message), None, &[])
        }
    };
    Ok(answer?)
}

/// The SDK's `ValidationResponse` on the wire, written field by field so
/// that the mutated object goes in as the JSON text `admission` spliced:
/// serde_json writes raw text only from a `RawValue`, which it would first
/// read again, all of it.
fn wire(
    accepted: bool,
    message: Option<&str>,
    mutated_object: Option<&str>,
    warnings: &[String],
) -> Result<Vec<u8>, serde_json::Error> {
    let mut answer = Vec::with_capacity(mutated_object.map_or(0, str::len) + 256);
    answer.extend_from_slice(br#"{"accepted":"#);
    serde_json::to_writer(&mut answer, &accepted)?;
    answer.extend_from_slice(br#","message":"#);
    serde_json::to_writer(&mut answer, &message)?;
    answer.extend_from_slice(br#","code":null,"mutated_object":"#);
    answer.extend_from_slice(mutated_object.unwrap_or("null").as_bytes());
    answer.extend_from_slice(br#","audit_annotations":null,"warnings":"#);
    serde_json::to_writer(&mut answer, &(!warnings.is_empty()).then_some(warnings))?;
    answer.push(b'}');
    Ok(answer)
}

/// waPC `validate_settings`: unlike the SDK helper, a payload that does not
/// decode is an invalid-settings answer naming the key, not a call error.
pub fn validate_settings(payload: &[u8]) -> CallResult {
    let outcome = settings::parse_and_validate(payload).map(drop);
    let response = SettingsValidationResponse {
        valid: outcome.is_ok(),
        message: outcome.err(),
    };
    Ok(serde_json::to_vec(&response)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubewarden_policy_sdk::response::ValidationResponse;
    use kubewarden_policy_sdk::test::Testcase;
    use serde_json::{Value, json};
    use std::path::PathBuf;

    /// The e2e fixtures are whole AdmissionReviews, as the API server sends
    /// them; the SDK's Testcase wants the bare request, so it gets a copy.
    fn request_fixture(name: &str) -> String {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("e2e-tests/fixtures")
            .join(name);
        let review: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let bare = std::env::temp_dir().join(format!("cache-buster-{}-{name}", std::process::id()));
        std::fs::write(&bare, review["request"].to_string()).unwrap();
        bare.to_string_lossy().into_owned()
    }

    fn testcase(name: &str, accepted: bool, settings: Value) -> Testcase<Value> {
        Testcase {
            name: name.to_owned(),
            fixture_file: request_fixture(name),
            expected_validation_result: accepted,
            settings,
        }
    }

    #[test]
    fn labelled_create_is_stamped() {
        let response = testcase("create-labelled.json", true, json!({}))
            .eval(validate)
            .unwrap();
        let annotations = &response.mutated_object.unwrap()["metadata"]["annotations"];
        assert_eq!(
            annotations["cache-buster.io/job-name"],
            "shop-cache-buster-b82cce53ec"
        );
        assert_eq!(annotations["cache-buster.io/image-hash"], "b82cce53ec");
        assert!(response.warnings.is_none());
    }

    #[test]
    fn unlabelled_deployment_is_accepted_without_mutation() {
        let response = testcase("create-unlabelled.json", true, json!({}))
            .eval(validate)
            .unwrap();
        assert!(response.mutated_object.is_none());
        assert!(response.message.is_none());
    }

    #[test]
    fn already_stamped_update_is_accepted_without_mutation() {
        let response = testcase("update-unchanged-image.json", true, json!({}))
            .eval(validate)
            .unwrap();
        assert!(response.mutated_object.is_none());
    }

    #[test]
    fn bad_annotation_is_rejected_with_its_message() {
        let response = testcase("create-bad-url.json", false, json!({}))
            .eval(validate)
            .unwrap();
        assert!(
            response
                .message
                .unwrap()
                .starts_with("annotation cache-buster.io/urls: \"ftp://shop.example.com/\"")
        );
        assert!(response.mutated_object.is_none());
    }

    #[test]
    fn mutable_tag_warning_reaches_the_response() {
        let response = testcase("create-mutable-tag.json", true, json!({}))
            .eval(validate)
            .unwrap();
        let warnings = response.warnings.unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("mutable tag"), "{warnings:?}");
    }

    #[test]
    fn validate_settings_answers_valid_and_invalid() {
        let answer = |payload: &[u8]| -> SettingsValidationResponse {
            serde_json::from_slice(&validate_settings(payload).unwrap()).unwrap()
        };
        assert!(answer(b"{}").valid);
        let invalid = answer(br#"{"cloudflareBatchSize": 0}"#);
        assert!(!invalid.valid);
        assert_eq!(
            invalid.message.unwrap(),
            "cloudflareBatchSize: 0 is out of range; expected 1 to 500"
        );
        let unknown = answer(br#"{"lable": "x"}"#);
        assert!(!unknown.valid);
        assert!(
            unknown
                .message
                .unwrap()
                .starts_with("settings.lable: unknown field `lable`")
        );
    }

    /// The response must read as the SDK's ValidationResponse, field by field.
    #[test]
    fn responses_have_the_sdk_wire_format() {
        let mutated: serde_json::Value =
            serde_json::from_slice(&wire(true, None, Some(r#"{"a":1}"#), &["w".into()]).unwrap())
                .unwrap();
        assert_eq!(
            mutated,
            json!({"accepted": true, "message": null, "code": null, "mutated_object": {"a": 1}, "audit_annotations": null, "warnings": ["w"]})
        );
        let sdk: ValidationResponse = serde_json::from_value(mutated).unwrap();
        assert_eq!(sdk.mutated_object, Some(json!({"a": 1})));
        let rejected: serde_json::Value =
            serde_json::from_slice(&wire(false, Some("no \"quotes\""), None, &[]).unwrap())
                .unwrap();
        assert_eq!(
            rejected,
            json!({"accepted": false, "message": "no \"quotes\"", "code": null, "mutated_object": null, "audit_annotations": null, "warnings": null})
        );
        let sdk: ValidationResponse = serde_json::from_value(rejected).unwrap();
        assert_eq!(sdk.message.as_deref(), Some("no \"quotes\""));
    }

    #[test]
    fn garbage_payload_is_a_rejection_not_an_error() {
        let response: ValidationResponse =
            serde_json::from_slice(&validate(b"\xff\x00").unwrap()).unwrap();
        assert!(!response.accepted);
        assert!(
            response
                .message
                .unwrap()
                .starts_with("cannot read the admission request")
        );
    }
}
