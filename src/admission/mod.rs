//! From the waPC `validate` payload to an outcome: read the request
//! (`request`, SPEC §1; `object`, the reading layer), ask the decision
//! (`deployment::participation_of` and `deployment::decide`, SPEC §1 and §3),
//! write the mutation (`splice`). Nothing is decided here; an UPDATE that
//! keeps `oldObject`'s stamp on unchanged inputs (`unchanged`) skips the
//! derivation, whose answer it already knows.

mod configured;
mod object;
mod request;
mod skim;
mod splice;
mod unchanged;

use crate::deployment::{Decision, Participation, decide, participation_of};
use crate::error::PolicyError;
use object::{Members, is_json_string};
use splice::{Piece, splice_annotations};

/// What to answer the API server.
#[derive(Debug)]
pub enum Outcome {
    /// Accept without mutation.
    Accept {
        warnings: Vec<String>,
    },
    /// Accept this object (the original with new annotations), as JSON.
    Mutate {
        object: String,
        warnings: Vec<String>,
    },
    Reject(PolicyError),
}

/// Evaluates one `validate` call payload (`{"request": …, "settings": …}`).
pub fn evaluate(payload: &[u8]) -> Outcome {
    match evaluate_request(payload) {
        Ok(outcome) => outcome,
        Err(error) => Outcome::Reject(error),
    }
}

fn evaluate_request(payload: &[u8]) -> Result<Outcome, PolicyError> {
    let Some(request) = request::read_request(payload)? else {
        return Ok(accept());
    };
    let configured = configured::configured(request.settings)?;
    let settings = &configured.settings;
    let parts = &request.object;
    let empty = Members::new();
    let annotations = parts.annotations().unwrap_or(&empty);
    let labels = object::labels(parts)?;

    match participation_of(
        &settings.site_label,
        &configured.stamp_keys,
        labels.as_ref(),
        |key| annotations.contains_key(key),
    ) {
        Participation::NotTakingPart => Ok(accept()),
        Participation::LabelRemoved(keys) => {
            let mut kept = Piece::object(annotations);
            for key in &keys {
                kept.remove(key.as_str());
            }
            Ok(Outcome::Mutate {
                object: splice_annotations(parts, kept)?,
                warnings: Vec::new(),
            })
        }
        Participation::Site => {
            if let Some(old) = &request.old_object
                && unchanged::keeps_its_stamp(&configured, parts, labels.as_ref(), old)
            {
                return Ok(accept());
            }
            let deployment = object::deployment(parts, settings, labels)?;
            let carries = |key: &str, value: &str| {
                annotations
                    .get(key)
                    .is_some_and(|raw| is_json_string(*raw, value))
            };
            match decide(settings, &deployment, request.context(), carries)? {
                Decision::UpToDate { warnings, .. } => Ok(Outcome::Accept { warnings }),
                Decision::Stamp { stamp, warnings } => {
                    let [hash_key, name_key, job_key] = &configured.stamp_keys;
                    let job = stamp.job_json_literal()?;
                    let mut written = Piece::object(annotations);
                    written.insert(hash_key, Piece::Text(&stamp.image_hash));
                    written.insert(name_key, Piece::Text(&stamp.job_name));
                    written.insert(job_key, Piece::JsonText(&job));
                    Ok(Outcome::Mutate {
                        object: splice_annotations(parts, written)?,
                        warnings,
                    })
                }
            }
        }
    }
}

fn accept() -> Outcome {
    Outcome::Accept {
        warnings: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::stamp_keys;
    use crate::settings::Settings;
    use json_patch::{Patch, PatchOperation, diff};
    use rstest::rstest;
    use serde_json::{Value, json};

    fn site_deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "shop",
                "namespace": "web",
                "creationTimestamp": null,
                "labels": {"app": "shop", "cache-buster.io/site": "shop.example.com"},
                "annotations": {"cache-buster.io/urls": "https://shop.example.com/", "team": "web"},
                "managedFields": [{"manager": "kustomize-controller", "operation": "Apply", "fieldsV1": {"f:spec": {}}}]
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
            Outcome::Mutate { object, .. } => serde_json::from_str(&object).unwrap(),
            other => panic!("expected a mutation, got {other:?}"),
        }
    }

    fn accepted_without_mutation(outcome: Outcome) -> bool {
        matches!(outcome, Outcome::Accept { warnings } if warnings.is_empty())
    }

    fn rejection(outcome: Outcome) -> String {
        match outcome {
            Outcome::Reject(error) => error.to_string(),
            other => panic!("expected a rejection, got {other:?}"),
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
        assert!(accepted_without_mutation(evaluate_deployment(
            operation, &mutated
        )));
    }

    #[test]
    fn a_deployment_without_annotations_gets_the_map_created() {
        let mut original = site_deployment();
        original["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
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
            let mutated = mutated(outcome);
            assert_eq!(
                mutated["metadata"]["annotations"]
                    .as_object()
                    .unwrap()
                    .len(),
                3
            );
            assert_eq!(
                mutated["metadata"]["managedFields"],
                object["metadata"]["managedFields"]
            );
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
        assert!(accepted_without_mutation(evaluate_deployment(
            "UPDATE", &result
        )));
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
        assert!(accepted_without_mutation(outcome));
    }

    #[test]
    fn a_delete_with_a_null_object_passes() {
        let outcome = evaluate(&payload(
            "DELETE",
            ("apps", "v1", "Deployment"),
            &Value::Null,
            json!({}),
        ));
        assert!(accepted_without_mutation(outcome));
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
        assert!(accepted_without_mutation(evaluate(
            &serde_json::to_vec(&request).unwrap()
        )));
    }

    #[test]
    fn an_unlabelled_deployment_passes_even_when_its_spec_is_odd() {
        let object = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": "not read"});
        assert!(accepted_without_mutation(evaluate_deployment(
            "CREATE", &object
        )));
    }

    #[rstest]
    #[case::not_json(b"{".to_vec(), "cannot read the admission request: EOF while parsing an object")]
    #[case::no_request(b"{}".to_vec(), "cannot read the admission request: missing field `request`")]
    #[case::request_not_object(br#"{"request": 7}"#.to_vec(), "cannot read the admission request: invalid type: integer `7`")]
    fn unreadable_requests_are_rejected_with_the_reason(
        #[case] payload: Vec<u8>,
        #[case] message: &str,
    ) {
        let error = rejection(evaluate(&payload));
        assert!(error.starts_with(message), "{error}");
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
        assert_eq!(
            rejection(evaluate(&serde_json::to_vec(&request).unwrap())),
            "cannot read the admission request: request.object is missing from a CREATE request; expected the Deployment"
        );
    }

    #[rstest]
    #[case::object_not_object(json!([1]), "request.object is not a valid apps/v1 Deployment: request.object: invalid type: sequence, expected a Kubernetes object")]
    #[case::metadata_not_object(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": 1}), "request.object is not a valid apps/v1 Deployment: request.object: invalid type: integer `1`, expected object metadata")]
    #[case::labels_not_strings(json!({"metadata": {"labels": {"cache-buster.io/site": 7}}}), "request.object is not a valid apps/v1 Deployment: metadata.labels: invalid type: integer `7`, expected a string")]
    #[case::labelled_bad_containers(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"labels": {"cache-buster.io/site": "s"}}, "spec": {"template": {"spec": {"containers": "web"}}}}), "request.object is not a valid apps/v1 Deployment: spec: invalid type: string \"web\", expected a sequence")]
    #[case::labelled_wrong_kind(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"cache-buster.io/site": "s"}}}), "request.object is not a valid apps/v1 Deployment: its apiVersion is \"v1\" and its kind \"Pod\"; expected \"apps/v1\" and \"Deployment\"")]
    fn malformed_deployments_are_rejected(#[case] object: Value, #[case] message: &str) {
        let error = rejection(evaluate_deployment("CREATE", &object));
        assert!(error.starts_with(message), "{error}");
    }

    #[test]
    fn settings_that_do_not_parse_are_rejected() {
        let outcome = evaluate(&payload(
            "CREATE",
            ("apps", "v1", "Deployment"),
            &site_deployment(),
            json!({"provider": 3}),
        ));
        let error = rejection(outcome);
        assert!(error.starts_with("cannot read the policy settings: settings.provider: invalid type: integer `3`, expected a string"), "{error}");
    }

    #[test]
    fn null_or_absent_settings_are_the_defaults() {
        let with_null = mutated(evaluate(&payload(
            "CREATE",
            ("apps", "v1", "Deployment"),
            &site_deployment(),
            Value::Null,
        )));
        let mut without: Value = serde_json::from_slice(&payload(
            "CREATE",
            ("apps", "v1", "Deployment"),
            &site_deployment(),
            Value::Null,
        ))
        .unwrap();
        without.as_object_mut().unwrap().remove("settings");
        assert_eq!(
            with_null,
            mutated(evaluate(&serde_json::to_vec(&without).unwrap()))
        );
    }

    #[test]
    fn rejections_of_labelled_deployments_name_the_annotation() {
        let mut object = site_deployment();
        object["metadata"]["annotations"]["cache-buster.io/provider"] = json!("keycdn");
        assert!(
            rejection(evaluate_deployment("CREATE", &object))
                .starts_with("annotation cache-buster.io/provider: \"keycdn\"")
        );
    }

    /// The payload as text, for tests about how the JSON is spelled.
    fn payload_text(object: &Value) -> String {
        String::from_utf8(payload(
            "UPDATE",
            ("apps", "v1", "Deployment"),
            object,
            json!({}),
        ))
        .unwrap()
    }

    fn mutated_text(outcome: Outcome) -> String {
        match outcome {
            Outcome::Mutate { object, .. } => object,
            other => panic!("expected a mutation, got {other:?}"),
        }
    }

    #[test]
    fn other_annotations_are_copied_as_they_were_spelled() {
        let mut object = site_deployment();
        object["metadata"]["annotations"]["team"] = json!("web & ops");
        let text = payload_text(&object).replace("web & ops", r"web \u0026 ops");
        assert!(text.contains(r#""team":"web \u0026 ops""#));
        let mutated = mutated_text(evaluate(text.as_bytes()));
        assert!(mutated.contains(r#""team":"web \u0026 ops""#), "{mutated}");
    }

    #[test]
    fn a_stamp_the_api_server_escaped_differently_is_still_up_to_date() {
        let stamped = mutated(evaluate_deployment("CREATE", &site_deployment()));
        // Go's encoding/json writes `&`, `<` and `>` as \u escapes; any
        // escape of the same string is the same value.
        let text = payload_text(&stamped).replace(r#"\"kind\""#, r#"\u0022kind\u0022"#);
        assert!(text.contains(r#"\u0022kind\u0022"#));
        assert!(accepted_without_mutation(evaluate(text.as_bytes())));
    }

    #[rstest]
    #[case::canonical(r#""a\"b""#, "a\"b", true)]
    #[case::escaped_otherwise(r#""a\u0022b\u0026""#, "a\"b&", true)]
    #[case::other_value(r#""a\"c""#, "a\"b", false)]
    #[case::not_a_string("7", "7", false)]
    fn json_strings_compare_by_value(#[case] text: &str, #[case] value: &str, #[case] equal: bool) {
        let raw = skim::Raw::from_serde(serde_json::from_str(text).unwrap());
        assert_eq!(is_json_string(raw, value), equal);
    }

    #[test]
    fn a_policy_annotation_that_is_no_string_is_rejected_by_name() {
        let mut object = site_deployment();
        object["metadata"]["annotations"]["cache-buster.io/urls"] = json!(7);
        assert_eq!(
            rejection(evaluate_deployment("CREATE", &object)),
            "request.object is not a valid apps/v1 Deployment: metadata.annotations[\"cache-buster.io/urls\"]: invalid type: integer `7`, expected a string at line 1 column 1"
        );
    }

    #[test]
    fn other_annotations_are_not_read_at_all() {
        let mut object = site_deployment();
        object["metadata"]["annotations"]["team"] = json!({"not": "a string"});
        let mutated = mutated(evaluate_deployment("CREATE", &object));
        assert_eq!(
            mutated["metadata"]["annotations"]["team"],
            json!({"not": "a string"})
        );
        object["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("cache-buster.io/site");
        assert!(accepted_without_mutation(evaluate_deployment(
            "CREATE", &object
        )));
    }

    #[test]
    fn a_malformed_object_of_a_request_let_pass_is_not_read() {
        // The one-pass read fails on it; the request still passes (SPEC §1).
        let object = json!({"metadata": 1});
        let outcome = evaluate(&payload("CREATE", ("", "v1", "Pod"), &object, json!({})));
        assert!(accepted_without_mutation(outcome));
    }

    /// Regression (fuzz/artifacts/validate/crash-ea2f9f3f…): a lone
    /// surrogate escape in a member copied unread made the answer unreadable.
    #[rstest]
    #[case::spec_of_a_site(true, r"termin\udAAAation")]
    #[case::annotation_when_the_label_is_removed(false, r"web \udAAA")]
    fn a_lone_surrogate_escape_is_rejected_not_copied(
        #[case] labelled: bool,
        #[case] spelled: &str,
    ) {
        let mut object = mutated(evaluate_deployment("CREATE", &site_deployment()));
        object["spec"]["template"]["spec"]["futurePodField"] = json!("termination");
        object["metadata"]["annotations"]["team"] = json!("web X");
        if !labelled {
            object["metadata"]["labels"]
                .as_object_mut()
                .unwrap()
                .remove("cache-buster.io/site");
        } else {
            object["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.27");
        }
        let text = payload_text(&object)
            .replace("termination", r"termin\udAAAation")
            .replace("web X", r"web \udAAA");
        assert!(text.contains(spelled));
        let error = rejection(evaluate(text.as_bytes()));
        assert!(
            error.starts_with("request.object is not a valid apps/v1 Deployment: a string holds a \\u escape that is not valid UTF-16"),
            "{error}"
        );
        // A valid pair of surrogates is a character, and is copied as it came.
        let pair = payload_text(&object).replace("web X", r"web \ud83d\ude00");
        let text = mutated_text(evaluate(pair.as_bytes()));
        assert!(text.contains(r"web \ud83d\ude00"), "{text}");
    }

    #[test]
    fn escaped_member_names_are_read_like_plain_ones() {
        let plain = payload(
            "CREATE",
            ("apps", "v1", "Deployment"),
            &site_deployment(),
            json!({}),
        );
        let escaped = String::from_utf8(plain.clone())
            .unwrap()
            .replace("\"metadata\":", "\"\\u006detadata\":");
        assert!(escaped.contains("\\u006detadata"));
        assert_eq!(
            mutated(evaluate(escaped.as_bytes())),
            mutated(evaluate(&plain))
        );
    }
}
