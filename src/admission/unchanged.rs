//! The reconcile's fast path: an UPDATE that changes nothing the stamp is
//! made of, carrying the stamp `oldObject` carries, made by this release
//! with these settings, is accepted without deriving the Job again.
//!
//! Flux applies every site Deployment every few minutes (a server-side dry
//! run, then an apply): this is the request the policy answers most often.
//! The stamp is a pure function of the inputs compared here, the settings
//! and the code, and the Job's `P/stamped-by` names the last two
//! (`fingerprint`), so an unchanged stamp on unchanged inputs is the stamp
//! a derivation would write. Everything else is derived and compared in
//! full: a CREATE (a restore from a backup), a stamp that differs from
//! `oldObject`'s (a tampered one is overwritten), any changed input, another
//! release or other settings. `oldObject` is what the API server stored, so
//! the stamp it carries is one the policy wrote or confirmed; the launcher
//! derives every stamp again before it creates a Job.

use super::configured::Configured;
use super::object::{Members, ObjectParts, Str, check_type, skim_members};
use super::skim::{Cursor, NotJson, Raw};
use std::collections::BTreeMap;

/// `oldObject`, read as far as the comparison needs, in the request's one
/// pass: its annotations and labels by borrowed name, the rest raw or
/// skipped (no allocation for what is not compared).
#[derive(Default)]
pub(super) struct OldObject<'a> {
    metadata: OldMetadata<'a>,
    spec: Option<Raw<'a>>,
}

#[derive(Default)]
struct OldMetadata<'a> {
    name: Option<Raw<'a>>,
    namespace: Option<Raw<'a>>,
    labels: Option<BTreeMap<Str<'a>, Str<'a>>>,
    annotations: Option<Members<'a>>,
}

impl<'a> OldObject<'a> {
    /// `oldObject` at the cursor; `Err` when it does not read so (the
    /// request is then read the precise way, and derived). `object`, when
    /// it came first, says what the spec and the annotations likely are: on
    /// a reconcile they are equal, and are found by comparison.
    pub(super) fn skim(
        cursor: &mut Cursor<'a>,
        object: Option<&ObjectParts<'_>>,
    ) -> Result<Self, NotJson> {
        let mut old = OldObject::default();
        cursor.begin_object()?;
        let mut first = true;
        while let Some(name) = cursor.next_member(&mut first)? {
            match name.as_ref() {
                "metadata" if cursor.at_object() => {
                    let annotations = object.and_then(ObjectParts::annotations);
                    old.metadata = OldMetadata::skim(cursor, annotations)?;
                }
                "spec" => {
                    let spec = object.and_then(|object| object.members.get("spec").copied());
                    old.spec = Some(cursor.value_like(spec)?);
                }
                _ => drop(cursor.value()?),
            }
        }
        Ok(old)
    }
}

impl<'a> OldMetadata<'a> {
    fn skim(cursor: &mut Cursor<'a>, likely: Option<&Members<'_>>) -> Result<Self, NotJson> {
        let mut metadata = OldMetadata::default();
        cursor.begin_object()?;
        let mut first = true;
        while let Some(name) = cursor.next_member(&mut first)? {
            match name.as_ref() {
                "name" => metadata.name = Some(cursor.value()?),
                "namespace" => metadata.namespace = Some(cursor.value()?),
                "labels" => {
                    let raw = cursor.value()?;
                    metadata.labels =
                        serde_json::from_str(raw.get()).map_err(|_| NotJson(cursor.offset()))?;
                }
                "annotations" if cursor.at_object() => {
                    metadata.annotations = Some(skim_members(cursor, likely)?);
                }
                _ => drop(cursor.value()?),
            }
        }
        Ok(metadata)
    }
}

/// Whether `object`, an UPDATE's labelled Deployment, keeps `old`'s stamp
/// on unchanged inputs (see the module's comment). `false` whenever it
/// cannot tell: the caller then derives.
pub(super) fn keeps_its_stamp(
    configured: &Configured,
    object: &ObjectParts<'_>,
    object_labels: Option<&BTreeMap<String, String>>,
    old: &OldObject<'_>,
) -> bool {
    let (Some(annotations), Some(old_annotations), Ok(())) = (
        object.annotations(),
        old.metadata.annotations.as_ref(),
        check_type(&object.members),
    ) else {
        return false;
    };
    // The spec is compared as JSON text, which a reconcile leaves as it
    // was: an image change fails here, before anything is read, and any
    // other change of the spec is derived (it is rare, and then exact).
    if object.members.get("spec").copied() != old.spec {
        return false;
    }
    let [hash_key, name_key, job_key] = &configured.stamp_keys;
    let Some(job) = annotations.get(job_key.as_str()) else {
        return false;
    };
    if !job.get().starts_with(&configured.stamped_job_start) {
        return false;
    }
    let same_text = |key: &str| match (annotations.get(key), old_annotations.get(key)) {
        (Some(new), Some(old)) => new == old,
        _ => false,
    };
    let site = configured.settings.site_label.as_str();
    let old_site = old
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(site))
        .map(|value| &**value);
    [hash_key, name_key, job_key]
        .into_iter()
        .all(|key| same_text(key))
        && object.metadata_field("name") == not_null(old.metadata.name)
        && object.metadata_field("namespace") == not_null(old.metadata.namespace)
        && object_labels
            .and_then(|labels| labels.get(site))
            .map(String::as_str)
            == old_site
        && own_annotations(
            configured,
            annotations.iter().map(|(k, v)| (k.as_ref(), *v)),
        )
        .eq(own_annotations(
            configured,
            old_annotations.iter().map(|(k, v)| (&**k, *v)),
        ))
}

/// As `ObjectParts::metadata_field` reads a member: null is none.
fn not_null(value: Option<Raw<'_>>) -> Option<Raw<'_>> {
    value.filter(|raw| raw.get() != "null")
}

/// The policy's own annotations (`P/…`) but the stamp, as JSON text.
fn own_annotations<'m, 'r: 'm>(
    configured: &'m Configured,
    annotations: impl Iterator<Item = (&'m str, Raw<'r>)> + 'm,
) -> impl Iterator<Item = (&'m str, Raw<'r>)> + 'm {
    annotations.filter(move |(key, _)| {
        configured.is_own_annotation(key)
            && !configured.stamp_keys.iter().any(|stamped| stamped == key)
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Outcome, evaluate};
    use super::*;
    use rstest::rstest;
    use serde_json::{Value, json};

    /// `oldObject` as the cursor reads it, with `object` read first (its
    /// texts likely equal) or not at all, against serde_json's reading.
    #[rstest]
    #[case::same_stamp(|_: &mut Value| {})]
    #[case::other_stamp(|old: &mut Value| old["metadata"]["annotations"][JOB] = json!(format!("{} ", job_of(old))))]
    #[case::other_spec(|old: &mut Value| old["spec"]["replicas"] = json!(9))]
    #[case::a_number_where_a_string_was(|old: &mut Value| old["metadata"]["annotations"][JOB] = json!(7))]
    fn old_object_reads_as_serde_json_reads(#[case] change: fn(&mut Value)) {
        let object = stamped(&json!({}));
        let mut old = object.clone();
        change(&mut old);
        for object_first in [true, false] {
            let (first, second) = if object_first {
                ("object", "oldObject")
            } else {
                ("oldObject", "object")
            };
            let values = [
                (first, if object_first { &object } else { &old }),
                (second, if object_first { &old } else { &object }),
            ];
            let text = format!(
                r#"{{"{}": {}, "{}": {}}}"#,
                values[0].0,
                serde_json::to_string_pretty(values[0].1).unwrap(),
                values[1].0,
                serde_json::to_string(values[1].1).unwrap()
            );
            let mut cursor = Cursor::new(&text);
            cursor.begin_object().unwrap();
            let mut first_member = true;
            let (mut parts, mut read) = (None, None);
            while let Some(name) = cursor.next_member(&mut first_member).unwrap() {
                if name == "object" {
                    parts = Some(ObjectParts::skim(&mut cursor).unwrap());
                } else {
                    read = Some(OldObject::skim(&mut cursor, parts.as_ref()).unwrap());
                }
            }
            cursor.end().unwrap();
            let read = read.unwrap();
            let parsed = |raw: Raw<'_>| serde_json::from_str::<Value>(raw.get()).unwrap();
            assert_eq!(read.spec.map(parsed).as_ref(), Some(&old["spec"]));
            assert_eq!(read.metadata.name.map(parsed), Some(json!("shop")));
            let annotations = read.metadata.annotations.unwrap();
            assert_eq!(
                annotations
                    .iter()
                    .map(|(name, raw)| (name.to_string(), parsed(*raw)))
                    .collect::<serde_json::Map<_, _>>(),
                *old["metadata"]["annotations"].as_object().unwrap()
            );
        }
    }

    const JOB: &str = "cache-buster.io/job";

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "shop",
                "namespace": "web",
                "labels": {"app": "shop", "cache-buster.io/site": "shop.example.com"},
                "annotations": {"cache-buster.io/urls": "https://shop.example.com/", "team": "web"}
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "shop"}},
                "template": {
                    "metadata": {"labels": {"app": "shop"}},
                    "spec": {
                        "initContainers": [{"name": "migrate", "image": "ghcr.io/acme/shop-migrate:1.4.2"}],
                        "containers": [{"name": "web", "image": "ghcr.io/acme/shop:1.4.2", "env": [{"name": "A", "value": "1"}]}]
                    }
                }
            }
        })
    }

    fn payload(operation: &str, object: &Value, old: Option<&Value>, settings: &Value) -> Vec<u8> {
        let mut request = json!({
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "shop",
            "namespace": "web",
            "operation": operation,
            "object": object,
        });
        if let Some(old) = old {
            request["oldObject"] = old.clone();
        }
        serde_json::to_vec(&json!({"settings": settings, "request": request})).unwrap()
    }

    fn mutated(outcome: Outcome) -> Option<Value> {
        match outcome {
            Outcome::Mutate { object, .. } => Some(serde_json::from_str(&object).unwrap()),
            Outcome::Accept { .. } => None,
            Outcome::Reject(error) => panic!("rejected: {error}"),
        }
    }

    /// The policy's answer to the UPDATE from `old` to `object`: the
    /// mutated object, or `None` when accepted as it is.
    fn update(object: &Value, old: &Value, settings: &Value) -> Option<Value> {
        mutated(evaluate(&payload("UPDATE", object, Some(old), settings)))
    }

    /// The Deployment as the policy stamps it with `settings`.
    fn stamped(settings: &Value) -> Value {
        mutated(evaluate(&payload("CREATE", &deployment(), None, settings))).unwrap()
    }

    fn job_of(object: &Value) -> String {
        object["metadata"]["annotations"][JOB]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Whether the fast path takes the UPDATE from `old` to `object`.
    fn takes_the_fast_path(object: &Value, old: &Value) -> bool {
        let text = payload("UPDATE", object, Some(old), &json!({}));
        let request = super::super::request::read_request(&text).unwrap().unwrap();
        let labels = super::super::object::labels(&request.object).unwrap();
        let configured = super::super::configured::configured(None).unwrap();
        // The fast path is tried on every UPDATE that reads so.
        super::keeps_its_stamp(
            &configured,
            &request.object,
            labels.as_ref(),
            request.old_object.as_ref().unwrap(),
        )
    }

    #[test]
    fn a_reconcile_that_changes_nothing_is_accepted_without_deriving() {
        let stamped = stamped(&json!({}));
        assert!(takes_the_fast_path(&stamped, &stamped));
        assert_eq!(update(&stamped, &stamped, &json!({})), None);
        // What the stamp is not made of may change: another label, another
        // annotation.
        let mut relabelled = stamped.clone();
        relabelled["metadata"]["labels"]["tier"] = json!("front");
        relabelled["metadata"]["annotations"]["team"] = json!("shop");
        assert!(takes_the_fast_path(&relabelled, &stamped));
    }

    /// Each edit of an UPDATE that the fast path must leave to the
    /// derivation, and whether the derivation then writes a new stamp.
    #[rstest]
    #[case::image_changed(|o: &mut Value| o["spec"]["template"]["spec"]["containers"][0]["image"] = json!("ghcr.io/acme/shop:1.4.3"), true)]
    #[case::container_added(|o: &mut Value| o["spec"]["template"]["spec"]["containers"].as_array_mut().unwrap().push(json!({"name": "log", "image": "busybox:1.36"})), true)]
    #[case::scaled(|o: &mut Value| o["spec"]["replicas"] = json!(5), false)]
    #[case::env_changed(|o: &mut Value| o["spec"]["template"]["spec"]["containers"][0]["env"] = json!([]), false)]
    #[case::init_container_changed(|o: &mut Value| o["spec"]["template"]["spec"]["initContainers"][0]["image"] = json!("ghcr.io/acme/shop-migrate:1.4.3"), false)]
    #[case::urls_changed(|o: &mut Value| o["metadata"]["annotations"]["cache-buster.io/urls"] = json!("https://shop.example.com/new"), true)]
    #[case::provider_added(|o: &mut Value| o["metadata"]["annotations"]["cache-buster.io/dry-run"] = json!("true"), true)]
    #[case::renamed(|o: &mut Value| o["metadata"]["name"] = json!("store"), true)]
    #[case::site_renamed(|o: &mut Value| o["metadata"]["labels"]["cache-buster.io/site"] = json!("store.example.com"), true)]
    #[case::stamp_tampered(|o: &mut Value| o["metadata"]["annotations"][JOB] = json!(job_of(o).replace("\"purge\",", "\"purge\",\"--url=https://evil.example/\",")), true)]
    #[case::hash_tampered(|o: &mut Value| o["metadata"]["annotations"]["cache-buster.io/image-hash"] = json!("0000000000"), true)]
    fn a_changed_input_or_stamp_is_derived(#[case] edit: fn(&mut Value), #[case] restamps: bool) {
        let old = stamped(&json!({}));
        let mut object = old.clone();
        edit(&mut object);
        assert!(!takes_the_fast_path(&object, &old));
        let answer = update(&object, &old, &json!({}));
        assert_eq!(answer.is_some(), restamps, "{answer:?}");
        if let Some(answer) = answer {
            // The derivation's stamp, whatever the request carried.
            let mut unstamped = object.clone();
            for key in [
                "cache-buster.io/image-hash",
                "cache-buster.io/job-name",
                JOB,
            ] {
                unstamped["metadata"]["annotations"]
                    .as_object_mut()
                    .unwrap()
                    .remove(key);
            }
            assert_eq!(
                answer,
                mutated(evaluate(&payload("CREATE", &unstamped, None, &json!({})))).unwrap()
            );
        }
    }

    #[test]
    fn a_tampered_stamp_is_overwritten_even_on_an_unchanged_image() {
        let old = stamped(&json!({}));
        let mut object = old.clone();
        let tampered = job_of(&old).replace("\"cache-buster\"]", "\"sh\"]");
        assert_ne!(tampered, job_of(&old));
        object["metadata"]["annotations"][JOB] = json!(tampered);
        let answer = update(&object, &old, &json!({})).unwrap();
        assert_eq!(job_of(&answer), job_of(&old));
    }

    #[test]
    fn a_settings_change_restamps() {
        let old = stamped(&json!({}));
        let settings = json!({"backoffLimit": 5});
        let answer = update(&old, &old, &settings).unwrap();
        assert_eq!(answer, stamped(&settings));
        assert!(job_of(&answer).contains("\"backoffLimit\":5"));
        let labelled_otherwise = json!({"credentialsSecret": "cache-buster-credentials"});
        assert_eq!(
            update(&old, &old, &labelled_otherwise),
            None,
            "an explicit default is the same settings"
        );
        let other = json!({"annotations": {"sidecar.istio.io/inject": "false"}});
        let answer = update(&old, &old, &other).unwrap();
        assert_eq!(answer, stamped(&other));
    }

    #[test]
    fn a_stamp_of_another_release_is_restamped() {
        let current = stamped(&json!({}));
        let version = env!("CARGO_PKG_VERSION");
        let mut earlier = current.clone();
        earlier["metadata"]["annotations"][JOB] = json!(job_of(&current).replace(
            &format!("cache-buster {version}, settings"),
            "cache-buster 0.0.9, settings"
        ));
        assert_ne!(earlier, current);
        assert!(!takes_the_fast_path(&earlier, &earlier));
        let answer = update(&earlier, &earlier, &json!({})).unwrap();
        assert_eq!(answer, current);
    }

    #[test]
    fn a_create_of_a_stamped_deployment_is_derived_and_compared() {
        // A restore from a backup: whatever it carries is checked in full,
        // even when the request holds an oldObject of that very stamp.
        let old = stamped(&json!({}));
        let mut restored = old.clone();
        restored["metadata"]["annotations"][JOB] =
            json!(job_of(&old).replace("\"cache-buster\"]", "\"sh\"]"));
        for request in [
            payload("CREATE", &restored, None, &json!({})),
            payload("CREATE", &restored, Some(&restored), &json!({})),
        ] {
            let answer = mutated(evaluate(&request)).unwrap();
            assert_eq!(job_of(&answer), job_of(&old));
        }
        assert_eq!(
            mutated(evaluate(&payload("CREATE", &old, None, &json!({})))),
            None
        );
    }
}
