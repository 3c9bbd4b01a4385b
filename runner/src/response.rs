//! admission/v1 AdmissionResponse as policy-evaluator builds it from a
//! policy's ValidationResponse: same fields, same null handling, same patch.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use kubewarden_policy_sdk::response::ValidationResponse;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

#[derive(Serialize, Deserialize, Debug, Default, PartialEq, Eq, Clone)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
    /// base64 of the RFC 6902 JSON Patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<AdmissionResponseStatus>,
    /// Serialised as `null` when absent, like policy-evaluator.
    pub audit_annotations: Option<HashMap<String, String>>,
    pub warnings: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Debug, Default, PartialEq, Eq, Clone)]
pub struct AdmissionResponseStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
}

impl AdmissionResponse {
    pub fn reject(uid: &str, message: String, code: Option<u16>) -> Self {
        AdmissionResponse {
            uid: uid.to_owned(),
            allowed: false,
            status: Some(AdmissionResponseStatus {
                message: Some(message),
                code,
            }),
            ..AdmissionResponse::default()
        }
    }

    /// A trap, a waPC error or an unreadable answer: what policy-server sends.
    pub fn internal_server_error(uid: &str, message: impl std::fmt::Display) -> Self {
        AdmissionResponse::reject(uid, format!("internal server error: {message}"), Some(500))
    }

    /// The patch is `json_patch::diff(object, mutated_object)`; an empty diff
    /// is no patch. A mutation of a missing object (DELETE) is refused.
    pub fn from_policy(uid: &str, object: Option<&Value>, policy: &ValidationResponse) -> Self {
        let patch = match (&policy.mutated_object, object) {
            (Some(_), None) => {
                return AdmissionResponse::reject(
                    uid,
                    "Incoming object is null, which happens only with DELETE operations, but the policy is attempting a mutation. This is not allowed".to_owned(),
                    None,
                );
            }
            (Some(mutated), Some(object)) => {
                let diff = json_patch::diff(object, mutated);
                if diff.0.is_empty() {
                    None
                } else {
                    match serde_json::to_string(&diff) {
                        Ok(json) => Some(STANDARD.encode(json)),
                        Err(error) => {
                            return AdmissionResponse::internal_server_error(
                                uid,
                                format!("cannot serialize JSONPatch: {error}"),
                            );
                        }
                    }
                }
            }
            (None, _) => None,
        };
        let status =
            (policy.message.is_some() || policy.code.is_some()).then(|| AdmissionResponseStatus {
                message: policy.message.clone(),
                code: policy.code,
            });
        AdmissionResponse {
            uid: uid.to_owned(),
            allowed: policy.accepted,
            patch_type: patch.as_ref().map(|_| "JSONPatch".to_owned()),
            patch,
            status,
            audit_annotations: policy.audit_annotations.clone(),
            warnings: policy.warnings.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(mutated: Option<Value>) -> ValidationResponse {
        ValidationResponse {
            accepted: true,
            message: None,
            code: None,
            mutated_object: mutated,
            audit_annotations: None,
            warnings: None,
        }
    }

    #[test]
    fn an_accept_prints_like_kwctl() {
        let response = AdmissionResponse::from_policy("u", Some(&json!({})), &policy(None));
        assert_eq!(
            serde_json::to_string(&response).unwrap(),
            r#"{"uid":"u","allowed":true,"auditAnnotations":null,"warnings":null}"#
        );
    }

    #[test]
    fn a_mutation_is_a_base64_json_patch() {
        let object = json!({"metadata": {"annotations": {"a": "1"}}});
        let mutated = json!({"metadata": {"annotations": {"a": "1", "b": "2"}}});
        let response = AdmissionResponse::from_policy("u", Some(&object), &policy(Some(mutated)));
        assert_eq!(response.patch_type.as_deref(), Some("JSONPatch"));
        let patch: Value =
            serde_json::from_slice(&STANDARD.decode(response.patch.unwrap()).unwrap()).unwrap();
        assert_eq!(
            patch,
            json!([{"op": "add", "path": "/metadata/annotations/b", "value": "2"}])
        );
    }

    #[test]
    fn an_unchanged_object_is_no_patch() {
        let object = json!({"a": 1});
        let response =
            AdmissionResponse::from_policy("u", Some(&object), &policy(Some(object.clone())));
        assert_eq!((response.patch, response.patch_type), (None, None));
        assert!(response.allowed);
    }

    #[test]
    fn mutating_a_deleted_object_is_refused() {
        let response = AdmissionResponse::from_policy("u", None, &policy(Some(json!({}))));
        assert!(!response.allowed);
        assert!(
            response
                .status
                .unwrap()
                .message
                .unwrap()
                .starts_with("Incoming object is null")
        );
    }

    #[test]
    fn a_rejection_carries_message_and_warnings() {
        let rejected = ValidationResponse {
            accepted: false,
            message: Some("no".into()),
            code: Some(400),
            warnings: Some(vec!["w".into()]),
            ..policy(None)
        };
        let response = AdmissionResponse::from_policy("u", Some(&json!({})), &rejected);
        assert_eq!(
            serde_json::to_value(&response).unwrap(),
            json!({"uid": "u", "allowed": false, "status": {"message": "no", "code": 400}, "auditAnnotations": null, "warnings": ["w"]})
        );
    }

    #[test]
    fn internal_errors_are_500() {
        let response = AdmissionResponse::internal_server_error("u", "trap");
        assert_eq!(
            response.status.unwrap(),
            AdmissionResponseStatus {
                message: Some("internal server error: trap".into()),
                code: Some(500)
            }
        );
    }
}
