//! The request and settings inputs, read the way kwctl reads them.

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::authentication::v1::UserInfo;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::Read;
use std::path::Path;

/// admission/v1 AdmissionRequest with policy-evaluator's field set and
/// optionality: what the policy receives is this struct re-serialised, so
/// unknown fields are dropped and `object: null` disappears, as with kwctl.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    pub uid: String,
    pub kind: GroupVersionKind,
    pub resource: GroupVersionResource,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_kind: Option<GroupVersionKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_resource: Option<GroupVersionResource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_sub_resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub operation: String,
    pub user_info: UserInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_object: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GroupVersionKind {
    pub group: String,
    pub version: String,
    pub kind: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupVersionResource {
    pub group: String,
    pub version: String,
    pub resource: String,
}

/// Reads a bare AdmissionRequest or an AdmissionReview (its `.request`) from
/// a file, or from standard input when `path` is `-`.
pub fn read_request(path: &str) -> Result<AdmissionRequest> {
    let text = if path == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the request from standard input")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read request file {path}"))?
    };
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("request {path} is not valid JSON"))?;
    parse_request(value)
}

pub fn parse_request(value: Value) -> Result<AdmissionRequest> {
    let Value::Object(object) = value else {
        bail!(
            "Invalid request object: expected a JSON object (an AdmissionRequest or an AdmissionReview)"
        );
    };
    let request = if object.get("kind").and_then(Value::as_str) == Some("AdmissionReview") {
        object
            .get("request")
            .cloned()
            .ok_or_else(|| anyhow!("invalid AdmissionReview object: it has no request"))?
    } else {
        Value::Object(object)
    };
    serde_json::from_value(request)
        .map_err(|error| anyhow!("cannot build AdmissionRequest object from given input: {error}"))
}

/// `--settings-json` or `--settings-path` (JSON or YAML), as a JSON object;
/// no settings at all is the empty object, as kwctl sends it.
pub fn read_settings(json: Option<&str>, path: Option<&Path>) -> Result<Value> {
    let settings: Value = match (json, path) {
        (Some(_), Some(_)) => bail!("--settings-json and --settings-path cannot be used together"),
        (Some(json), None) => {
            serde_json::from_str(json).context("--settings-json is not valid JSON")?
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read settings file {}", path.display()))?;
            // YAML is a superset of JSON: one parser reads both.
            serde_yaml::from_str(&text).with_context(|| {
                format!("settings file {} is neither JSON nor YAML", path.display())
            })?
        }
        (None, None) => Value::Object(Map::new()),
    };
    match settings {
        Value::Object(_) => Ok(settings),
        Value::Null => Ok(Value::Object(Map::new())),
        other => bail!("the settings must be an object (key: value), got {other}"),
    }
}

/// The waPC `validate` payload.
pub fn validate_payload(request: &AdmissionRequest, settings: &Value) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(&serde_json::json!({
        "request": request,
        "settings": settings,
    }))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bare() -> Value {
        json!({
            "uid": "1",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "operation": "CREATE",
            "userInfo": {"username": "u"},
            "object": {"metadata": {"name": "x"}},
            "notAField": true
        })
    }

    #[test]
    fn reads_bare_requests_and_reviews_alike() {
        let from_bare = parse_request(bare()).unwrap();
        let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": bare()});
        let from_review = parse_request(review).unwrap();
        assert_eq!(
            serde_json::to_value(&from_bare).unwrap(),
            serde_json::to_value(&from_review).unwrap()
        );
        assert_eq!(from_bare.uid, "1");
    }

    #[test]
    fn forwards_what_kwctl_forwards() {
        let mut input = bare();
        input["object"] = Value::Null;
        let forwarded = serde_json::to_value(parse_request(input).unwrap()).unwrap();
        assert!(forwarded.get("object").is_none(), "null object is dropped");
        assert!(
            forwarded.get("notAField").is_none(),
            "unknown fields are dropped"
        );
        assert_eq!(forwarded["userInfo"], json!({"username": "u"}));
    }

    #[test]
    fn refuses_requests_kwctl_refuses() {
        let mut missing_uid = bare();
        missing_uid.as_object_mut().unwrap().remove("uid");
        let error = parse_request(missing_uid).unwrap_err().to_string();
        assert_eq!(
            error,
            "cannot build AdmissionRequest object from given input: missing field `uid`"
        );
        assert!(
            parse_request(json!([1]))
                .unwrap_err()
                .to_string()
                .starts_with("Invalid request object")
        );
        let error = parse_request(json!({"kind": "AdmissionReview"}))
            .unwrap_err()
            .to_string();
        assert_eq!(error, "invalid AdmissionReview object: it has no request");
    }

    #[test]
    fn settings_come_from_json_yaml_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("s.yaml");
        std::fs::write(&yaml, "provider: fastly\nbackoffLimit: 1\n").unwrap();
        assert_eq!(
            read_settings(None, Some(&yaml)).unwrap(),
            json!({"provider": "fastly", "backoffLimit": 1})
        );
        let json_file = dir.path().join("s.json");
        std::fs::write(&json_file, r#"{"provider": "webhook"}"#).unwrap();
        assert_eq!(
            read_settings(None, Some(&json_file)).unwrap(),
            json!({"provider": "webhook"})
        );
        assert_eq!(
            read_settings(Some(r#"{"a": 1}"#), None).unwrap(),
            json!({"a": 1})
        );
        assert_eq!(read_settings(None, None).unwrap(), json!({}));
        assert!(
            read_settings(Some("[1]"), None)
                .unwrap_err()
                .to_string()
                .contains("must be an object")
        );
        assert!(
            read_settings(Some("{"), None)
                .unwrap_err()
                .to_string()
                .contains("--settings-json is not valid JSON")
        );
        let missing = read_settings(None, Some(Path::new("/nonexistent.yaml"))).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "cannot read settings file /nonexistent.yaml"
        );
    }
}
