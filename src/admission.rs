//! From the waPC `validate` payload to an outcome: which requests are looked
//! at (SPEC §1), in which order the object is read, and how the mutation is
//! written.
//!
//! Every admitted Deployment passes through here, so the object is read once
//! and only as deep as the decision needs: its top level and `metadata` are
//! split into raw JSON members, the labels decide whether it takes part, and
//! only then are the containers read. `oldObject` and `userInfo` are skipped
//! unread.
//!
//! The mutation is written by splicing: every member of the original JSON is
//! copied verbatim except `metadata.annotations`. Fields this build of
//! k8s-openapi does not know (a newer cluster's) and explicit nulls survive,
//! and the patch Kubewarden computes touches only `/metadata/annotations`.

use crate::deployment::{Decision, Participation, RequestContext, decide, participation};
use crate::error::PolicyError;
use crate::settings::{Settings, parse_settings};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// What to answer the API server.
#[derive(Debug)]
pub enum Outcome {
    /// Accept without mutation.
    Accept {
        warnings: Vec<String>,
    },
    /// Accept this object (the original with new annotations), as JSON.
    Mutate {
        object: Box<RawValue>,
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

/// A JSON object read one level deep: each member stays raw JSON text.
type Members<'a> = BTreeMap<String, &'a RawValue>;

/// A JSON object read one level deep in one pass: its members stay raw JSON
/// text, except the member `M::NAME`, read as `M::Value`.
struct Split<'a, M: Member<'a>> {
    members: Members<'a>,
    member: Option<M::Value>,
}

/// Which member a `Split` reads, and as what.
trait Member<'de> {
    /// What the split object is, for error messages.
    const WITHIN: &'static str;
    const NAME: &'static str;
    type Value: Deserialize<'de>;
}

/// `request.object`: its `metadata` is split in turn.
type ObjectParts<'a> = Split<'a, MetadataMember>;
/// `metadata`: its annotations are read as strings (the decision compares
/// them, and the mutation rewrites them).
type MetadataParts<'a> = Split<'a, AnnotationsMember>;

struct MetadataMember;
impl<'de> Member<'de> for MetadataMember {
    const WITHIN: &'static str = "a Kubernetes object";
    const NAME: &'static str = "metadata";
    type Value = MetadataParts<'de>;
}

struct AnnotationsMember;
impl<'de> Member<'de> for AnnotationsMember {
    const WITHIN: &'static str = "object metadata";
    const NAME: &'static str = "annotations";
    type Value = BTreeMap<String, String>;
}

impl<'de, M: Member<'de>> Deserialize<'de> for Split<'de, M> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SplitVisitor(std::marker::PhantomData::<M>))
    }
}

struct SplitVisitor<M>(std::marker::PhantomData<M>);

impl<'de, M: Member<'de>> serde::de::Visitor<'de> for SplitVisitor<M> {
    type Value = Split<'de, M>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str(M::WITHIN)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut split = Split {
            members: Members::new(),
            member: None,
        };
        while let Some(key) = map.next_key::<String>()? {
            if key == M::NAME {
                split.member = map.next_value::<Option<M::Value>>()?;
            } else {
                split.members.insert(key, map.next_value()?);
            }
        }
        Ok(split)
    }
}

impl<'a> ObjectParts<'a> {
    fn metadata(&self) -> Option<&MetadataParts<'a>> {
        self.member.as_ref()
    }
}

/// The part of the Deployment spec the decision reads: container names and
/// images. Everything else is the API server's to validate.
#[derive(Deserialize, Default)]
struct SpecView {
    #[serde(default)]
    template: TemplateView,
}

#[derive(Deserialize, Default)]
struct TemplateView {
    #[serde(default)]
    spec: Option<PodView>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodView {
    #[serde(default)]
    containers: Option<Vec<ContainerView>>,
    #[serde(default)]
    init_containers: Option<Vec<ContainerView>>,
}

#[derive(Deserialize)]
struct ContainerView {
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: Option<String>,
}

impl From<ContainerView> for Container {
    fn from(view: ContainerView) -> Self {
        Container {
            name: view.name,
            image: view.image,
            ..Container::default()
        }
    }
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

    let parts: ObjectParts<'_> = read(object, "request.object")?;
    let metadata = object_meta(&parts)?;

    match participation(&settings, &metadata) {
        Participation::NotTakingPart => Ok(accept),
        Participation::LabelRemoved(keys) => {
            let mut annotations = metadata.annotations.unwrap_or_default();
            for key in keys {
                annotations.remove(&key);
            }
            Ok(Outcome::Mutate {
                object: splice_annotations(&parts, &annotations)?,
                warnings: Vec::new(),
            })
        }
        Participation::Site => {
            check_type(&parts.members)?;
            let spec: SpecView = match parts.members.get("spec") {
                Some(raw) if raw.get() != "null" => read(raw, "spec")?,
                _ => SpecView::default(),
            };
            let deployment = Deployment {
                metadata,
                spec: Some(deployment_spec(spec)),
                status: None,
            };
            let context = RequestContext {
                name: request.name.as_deref(),
                namespace: request.namespace.as_deref(),
            };
            match decide(&settings, &deployment, context)? {
                Decision::UpToDate { warnings } => Ok(Outcome::Accept { warnings }),
                Decision::Stamp { stamp, warnings } => {
                    let mut annotations = deployment.metadata.annotations.unwrap_or_default();
                    for (key, value) in stamp.annotations(&settings) {
                        annotations.insert(key, value.to_owned());
                    }
                    Ok(Outcome::Mutate {
                        object: splice_annotations(&parts, &annotations)?,
                        warnings,
                    })
                }
            }
        }
    }
}

fn read<'a, T: Deserialize<'a>>(raw: &'a RawValue, field: &str) -> Result<T, PolicyError> {
    serde_json::from_str(raw.get())
        .map_err(|error| PolicyError::UnreadableDeployment(format!("{field}: {error}")))
}

fn object_meta(parts: &ObjectParts<'_>) -> Result<ObjectMeta, PolicyError> {
    let field = |name: &str| {
        parts
            .metadata()
            .and_then(|metadata| metadata.members.get(name).copied())
            .filter(|raw| raw.get() != "null")
    };
    let text = |name: &str| -> Result<Option<String>, PolicyError> {
        field(name)
            .map(|raw| read(raw, &format!("metadata.{name}")))
            .transpose()
    };
    Ok(ObjectMeta {
        name: text("name")?,
        namespace: text("namespace")?,
        labels: field("labels")
            .map(|raw| read(raw, "metadata.labels"))
            .transpose()?,
        annotations: parts
            .metadata()
            .and_then(|metadata| metadata.member.clone()),
        ..ObjectMeta::default()
    })
}

/// The request says it is an apps/v1 Deployment; so must the object.
fn check_type(top: &Members<'_>) -> Result<(), PolicyError> {
    let member = |name: &str| top.get(name).map(|raw| raw.get()).unwrap_or("null");
    let (api_version, kind) = (member("apiVersion"), member("kind"));
    if api_version == "\"apps/v1\"" && kind == "\"Deployment\"" {
        Ok(())
    } else {
        Err(PolicyError::UnreadableDeployment(format!(
            "its apiVersion is {api_version} and its kind {kind}; expected \"apps/v1\" and \"Deployment\""
        )))
    }
}

fn deployment_spec(view: SpecView) -> DeploymentSpec {
    let pod = view.template.spec.unwrap_or_default();
    let containers = |list: Option<Vec<ContainerView>>| {
        list.map(|list| list.into_iter().map(Container::from).collect::<Vec<_>>())
    };
    DeploymentSpec {
        template: PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: containers(pod.containers).unwrap_or_default(),
                init_containers: containers(pod.init_containers),
                ..PodSpec::default()
            }),
        },
        ..DeploymentSpec::default()
    }
}

/// The original object with `metadata.annotations` replaced; every other
/// member is copied as it came.
fn splice_annotations(
    parts: &ObjectParts<'_>,
    annotations: &BTreeMap<String, String>,
) -> Result<Box<RawValue>, PolicyError> {
    let with = |members: &Members<'_>, name: &'static str, value: &RawValue| {
        let mut spliced: BTreeMap<&str, &RawValue> = members
            .iter()
            .map(|(key, raw)| (key.as_str(), *raw))
            .collect();
        spliced.insert(name, value);
        to_raw(&spliced)
    };
    let empty = Members::new();
    let metadata_members = parts
        .metadata()
        .map_or(&empty, |metadata| &metadata.members);
    let metadata = with(metadata_members, "annotations", &to_raw(annotations)?)?;
    with(&parts.members, "metadata", &metadata)
}

fn to_raw(value: &impl serde::Serialize) -> Result<Box<RawValue>, PolicyError> {
    serde_json::value::to_raw_value(value)
        .map_err(|error| PolicyError::JobSerialization(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::stamp_keys;
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
            Outcome::Mutate { object, .. } => serde_json::from_str(object.get()).unwrap(),
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
        object["metadata"]["annotations"]["cache-buster.io/provider"] = json!("akamai");
        assert!(
            rejection(evaluate_deployment("CREATE", &object))
                .starts_with("annotation cache-buster.io/provider: \"akamai\"")
        );
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
