//! From the waPC `validate` payload to an outcome: which requests are looked
//! at (SPEC §1), in which order the object is read, and how the mutation is
//! written.
//!
//! The object is read lazily: first only its metadata (most Deployments do
//! not take part and are accepted right there), then the typed Deployment,
//! and the raw JSON is parsed into an editable tree only when something is to
//! be written. `oldObject` and `userInfo` are skipped unread.
//!
//! The mutation edits that original JSON tree, never a re-serialised typed
//! object: fields this build of k8s-openapi does not know (a newer cluster's)
//! and explicit nulls survive, so the patch Kubewarden computes touches only
//! `/metadata/annotations`.

use crate::deployment::{Decision, Participation, RequestContext, decide, participation};
use crate::error::PolicyError;
use crate::settings::{Settings, parse_settings};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// What to answer the API server.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Accept without mutation.
    Accept {
        warnings: Vec<String>,
    },
    /// Accept the object as edited here.
    Mutate {
        object: Value,
        warnings: Vec<String>,
    },
    Reject(PolicyError),
}

#[derive(Deserialize)]
struct ValidatePayload<'a> {
    #[serde(borrow)]
    request: AdmissionRequest<'a>,
    #[serde(default, borrow)]
    settings: Option<&'a RawValue>,
}

/// The fields of admission/v1 AdmissionRequest the decision needs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdmissionRequest<'a> {
    #[serde(default)]
    kind: GroupVersionKind,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    operation: String,
    #[serde(default, borrow)]
    object: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct GroupVersionKind {
    #[serde(default)]
    group: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    kind: String,
}

/// Only the metadata, for the participation check.
#[derive(Deserialize)]
struct MetadataOnly {
    #[serde(default)]
    metadata: ObjectMeta,
}

/// Evaluates one `validate` call payload (`{"request": …, "settings": …}`).
pub fn evaluate(payload: &[u8]) -> Outcome {
    match evaluate_request(payload) {
        Ok(outcome) => outcome,
        Err(error) => Outcome::Reject(error),
    }
}

fn evaluate_request(payload: &[u8]) -> Result<Outcome, PolicyError> {
    let payload: ValidatePayload<'_> = serde_json::from_slice(payload)
        .map_err(|error| PolicyError::UnreadableRequest(error.to_string()))?;
    let request = payload.request;
    let accept = Outcome::Accept {
        warnings: Vec::new(),
    };

    let is_deployment = request.kind.group == "apps"
        && request.kind.version == "v1"
        && request.kind.kind == "Deployment";
    let is_write = matches!(request.operation.as_str(), "CREATE" | "UPDATE");
    let is_subresource = request
        .sub_resource
        .as_deref()
        .is_some_and(|s| !s.is_empty());
    if !is_deployment || !is_write || is_subresource {
        return Ok(accept);
    }
    let Some(object) = request.object else {
        return Err(PolicyError::UnreadableRequest(format!(
            "request.object is missing from a {} request; expected the Deployment",
            request.operation
        )));
    };

    let settings = match payload.settings {
        Some(raw) => {
            parse_settings(raw.get().as_bytes()).map_err(PolicyError::UnreadableSettings)?
        }
        None => Settings::default(),
    };

    let metadata = serde_json::from_str::<MetadataOnly>(object.get())
        .map_err(|error| PolicyError::UnreadableDeployment(error.to_string()))?
        .metadata;
    match participation(&settings, &metadata) {
        Participation::NotTakingPart => Ok(accept),
        Participation::LabelRemoved(keys) => {
            let mut object = editable(object)?;
            let annotations = annotations_mut(&mut object)?;
            for key in keys {
                annotations.remove(&key);
            }
            Ok(Outcome::Mutate {
                object,
                warnings: Vec::new(),
            })
        }
        Participation::Site => {
            let deployment: Deployment = serde_json::from_str(object.get())
                .map_err(|error| PolicyError::UnreadableDeployment(error.to_string()))?;
            let context = RequestContext {
                name: request.name.as_deref(),
                namespace: request.namespace.as_deref(),
            };
            match decide(&settings, &deployment, context)? {
                Decision::UpToDate { warnings } => Ok(Outcome::Accept { warnings }),
                Decision::Stamp { stamp, warnings } => {
                    let mut object = editable(object)?;
                    let annotations = annotations_mut(&mut object)?;
                    for (key, value) in stamp.annotations(&settings) {
                        annotations.insert(key, Value::String(value.to_owned()));
                    }
                    Ok(Outcome::Mutate { object, warnings })
                }
            }
        }
    }
}

fn editable(object: &RawValue) -> Result<Value, PolicyError> {
    serde_json::from_str(object.get())
        .map_err(|error| PolicyError::UnreadableDeployment(error.to_string()))
}

/// `metadata.annotations` of the JSON object, created when absent or null.
fn annotations_mut(object: &mut Value) -> Result<&mut Map<String, Value>, PolicyError> {
    let not_an_object =
        |field: &str| PolicyError::UnreadableDeployment(format!("{field} is not an object"));
    let metadata = object
        .as_object_mut()
        .ok_or_else(|| not_an_object("request.object"))?
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if metadata.is_null() {
        *metadata = Value::Object(Map::new());
    }
    let annotations = metadata
        .as_object_mut()
        .ok_or_else(|| not_an_object("metadata"))?
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if annotations.is_null() {
        *annotations = Value::Object(Map::new());
    }
    annotations
        .as_object_mut()
        .ok_or_else(|| not_an_object("metadata.annotations"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::stamp_keys;
    use json_patch::{Patch, PatchOperation, diff};
    use rstest::rstest;
    use serde_json::json;

    fn site_deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "shop",
                "namespace": "web",
                "creationTimestamp": null,
                "labels": {"app": "shop", "cache-buster.io/site": "shop.example.com"},
                "annotations": {"cache-buster.io/urls": "https://shop.example.com/", "team": "web"}
            },
            "spec": {
                "replicas": 2,
                "futureDeploymentField": {"enabled": true},
                "selector": {"matchLabels": {"app": "shop"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "shop"}},
                    "spec": {
                        "futurePodField": [1, 2, 3],
                        "containers": [{"name": "web", "image": "nginx:1.25", "futureContainerField": "x"}]
                    }
                }
            },
            "status": {}
        })
    }

    fn payload(
        operation: &str,
        kind: (&str, &str, &str),
        object: &Value,
        settings: Value,
    ) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "settings": settings,
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": kind.0, "version": kind.1, "kind": kind.2},
                "resource": {"group": kind.0, "version": kind.1, "resource": "deployments"},
                "name": "shop",
                "namespace": "web",
                "operation": operation,
                "userInfo": {"username": "flux"},
                "object": object,
                "oldObject": {"this": "is never read"}
            }
        }))
        .unwrap()
    }

    fn evaluate_deployment(operation: &str, object: &Value) -> Outcome {
        evaluate(&payload(
            operation,
            ("apps", "v1", "Deployment"),
            object,
            json!({}),
        ))
    }

    fn mutated(outcome: Outcome) -> Value {
        match outcome {
            Outcome::Mutate { object, .. } => object,
            other => panic!("expected a mutation, got {other:?}"),
        }
    }

    #[test]
    fn the_patch_touches_only_the_three_annotations() {
        let original = site_deployment();
        let mutated = mutated(evaluate_deployment("CREATE", &original));
        let Patch(operations) = diff(&original, &mutated);
        let paths: Vec<String> = operations
            .iter()
            .map(|operation| match operation {
                PatchOperation::Add(add) => add.path.to_string(),
                other => panic!("unexpected operation {other:?}"),
            })
            .collect();
        assert_eq!(
            paths,
            [
                "/metadata/annotations/cache-buster.io~1image-hash",
                "/metadata/annotations/cache-buster.io~1job",
                "/metadata/annotations/cache-buster.io~1job-name",
            ]
        );
    }

    #[test]
    fn unknown_fields_and_nulls_survive_the_mutation() {
        let original = site_deployment();
        let mut mutated = mutated(evaluate_deployment("CREATE", &original));
        for key in stamp_keys(&Settings::default()) {
            mutated["metadata"]["annotations"]
                .as_object_mut()
                .unwrap()
                .remove(&key);
        }
        assert_eq!(mutated, original);
        assert_eq!(
            mutated["spec"]["futureDeploymentField"],
            json!({"enabled": true})
        );
        assert_eq!(
            mutated["spec"]["template"]["spec"]["futurePodField"],
            json!([1, 2, 3])
        );
        assert_eq!(mutated["metadata"]["creationTimestamp"], Value::Null);
    }

    #[rstest]
    #[case::create("CREATE")]
    #[case::update("UPDATE")]
    fn evaluating_the_mutated_object_again_yields_no_mutation(#[case] operation: &str) {
        let mutated = mutated(evaluate_deployment(operation, &site_deployment()));
        assert_eq!(
            evaluate_deployment(operation, &mutated),
            Outcome::Accept { warnings: vec![] }
        );
    }

    #[test]
    fn a_deployment_without_annotations_gets_the_map_created() {
        let mut original = site_deployment();
        original["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        original["metadata"]["labels"]["cache-buster.io/site"] = json!("shop");
        let mut with_null = original.clone();
        with_null["metadata"]["annotations"] = Value::Null;
        // Without purge annotations only the webhook provider takes the Deployment.
        let settings = json!({"provider": "webhook"});
        for object in [original, with_null] {
            let outcome = evaluate(&payload(
                "CREATE",
                ("apps", "v1", "Deployment"),
                &object,
                settings.clone(),
            ));
            let annotations = mutated(outcome)["metadata"]["annotations"]
                .as_object()
                .unwrap()
                .clone();
            assert_eq!(annotations.len(), 3);
        }
    }

    #[test]
    fn removing_the_label_removes_only_the_stamp() {
        let stamped = mutated(evaluate_deployment("CREATE", &site_deployment()));
        let mut unlabelled = stamped.clone();
        unlabelled["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("cache-buster.io/site");
        let result = mutated(evaluate_deployment("UPDATE", &unlabelled));
        assert_eq!(
            result["metadata"]["annotations"],
            json!({"cache-buster.io/urls": "https://shop.example.com/", "team": "web"})
        );
        let Patch(operations) = diff(&unlabelled, &result);
        assert_eq!(operations.len(), 3);
        assert!(
            operations
                .iter()
                .all(|op| matches!(op, PatchOperation::Remove(_)))
        );
        assert_eq!(
            evaluate_deployment("UPDATE", &result),
            Outcome::Accept { warnings: vec![] }
        );
    }

    #[rstest]
    #[case::delete("DELETE", ("apps", "v1", "Deployment"))]
    #[case::connect("CONNECT", ("apps", "v1", "Deployment"))]
    #[case::pod("CREATE", ("", "v1", "Pod"))]
    #[case::statefulset("CREATE", ("apps", "v1", "StatefulSet"))]
    #[case::other_group("CREATE", ("extensions", "v1beta1", "Deployment"))]
    fn other_kinds_and_operations_pass_untouched(
        #[case] operation: &str,
        #[case] kind: (&str, &str, &str),
    ) {
        let outcome = evaluate(&payload(operation, kind, &site_deployment(), json!({})));
        assert_eq!(outcome, Outcome::Accept { warnings: vec![] });
    }

    #[test]
    fn a_delete_with_a_null_object_passes() {
        let outcome = evaluate(&payload(
            "DELETE",
            ("apps", "v1", "Deployment"),
            &Value::Null,
            json!({}),
        ));
        assert_eq!(outcome, Outcome::Accept { warnings: vec![] });
    }

    #[test]
    fn subresources_pass_untouched() {
        let mut request: Value = serde_json::from_slice(&payload(
            "UPDATE",
            ("apps", "v1", "Deployment"),
            &site_deployment(),
            json!({}),
        ))
        .unwrap();
        request["request"]["subResource"] = json!("status");
        assert_eq!(
            evaluate(&serde_json::to_vec(&request).unwrap()),
            Outcome::Accept { warnings: vec![] }
        );
    }

    #[test]
    fn an_unlabelled_deployment_passes_even_when_its_spec_is_odd() {
        let object = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": "not read"});
        assert_eq!(
            evaluate_deployment("CREATE", &object),
            Outcome::Accept { warnings: vec![] }
        );
    }

    #[rstest]
    #[case::not_json(b"{".to_vec(), "cannot read the admission request: EOF while parsing an object")]
    #[case::no_request(b"{}".to_vec(), "cannot read the admission request: missing field `request`")]
    #[case::request_not_object(br#"{"request": 7}"#.to_vec(), "cannot read the admission request: invalid type: integer `7`")]
    fn unreadable_requests_are_rejected_with_the_reason(
        #[case] payload: Vec<u8>,
        #[case] message: &str,
    ) {
        let Outcome::Reject(error) = evaluate(&payload) else {
            panic!("expected a rejection")
        };
        assert!(error.to_string().starts_with(message), "{error}");
    }

    #[test]
    fn a_create_without_object_is_rejected() {
        let mut request: Value = serde_json::from_slice(&payload(
            "CREATE",
            ("apps", "v1", "Deployment"),
            &Value::Null,
            json!({}),
        ))
        .unwrap();
        request["request"].as_object_mut().unwrap().remove("object");
        let Outcome::Reject(error) = evaluate(&serde_json::to_vec(&request).unwrap()) else {
            panic!()
        };
        assert_eq!(
            error.to_string(),
            "cannot read the admission request: request.object is missing from a CREATE request; expected the Deployment"
        );
    }

    #[rstest]
    #[case::metadata_not_object(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": 1}), "request.object is not a valid apps/v1 Deployment: invalid type: integer `1`")]
    #[case::labelled_bad_spec(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"labels": {"cache-buster.io/site": "s"}}, "spec": {"replicas": "two"}}), "request.object is not a valid apps/v1 Deployment: invalid type: string \"two\"")]
    #[case::labelled_wrong_kind(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"cache-buster.io/site": "s"}}}), "request.object is not a valid apps/v1 Deployment")]
    fn malformed_deployments_are_rejected(#[case] object: Value, #[case] message: &str) {
        let Outcome::Reject(error) = evaluate_deployment("CREATE", &object) else {
            panic!("expected a rejection")
        };
        assert!(error.to_string().starts_with(message), "{error}");
    }

    #[test]
    fn settings_that_do_not_parse_are_rejected() {
        let outcome = evaluate(&payload(
            "CREATE",
            ("apps", "v1", "Deployment"),
            &site_deployment(),
            json!({"provider": 3}),
        ));
        let Outcome::Reject(error) = outcome else {
            panic!()
        };
        assert!(error.to_string().starts_with("cannot read the policy settings: settings.provider: invalid type: integer `3`, expected a string"), "{error}");
    }

    #[test]
    fn null_or_absent_settings_are_the_defaults() {
        let with_null = evaluate(&payload(
            "CREATE",
            ("apps", "v1", "Deployment"),
            &site_deployment(),
            Value::Null,
        ));
        let mut without: Value = serde_json::from_slice(&payload(
            "CREATE",
            ("apps", "v1", "Deployment"),
            &site_deployment(),
            Value::Null,
        ))
        .unwrap();
        without.as_object_mut().unwrap().remove("settings");
        assert_eq!(with_null, evaluate(&serde_json::to_vec(&without).unwrap()));
        assert!(matches!(with_null, Outcome::Mutate { .. }));
    }

    #[test]
    fn rejections_of_labelled_deployments_name_the_annotation() {
        let mut object = site_deployment();
        object["metadata"]["annotations"]["cache-buster.io/provider"] = json!("akamai");
        let Outcome::Reject(error) = evaluate_deployment("CREATE", &object) else {
            panic!()
        };
        assert!(
            error
                .to_string()
                .starts_with("annotation cache-buster.io/provider: \"akamai\"")
        );
    }
}
