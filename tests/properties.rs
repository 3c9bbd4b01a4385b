//! Properties of the policy over generated Deployments (proptest): names up
//! to 253 characters, 0 to 30 containers, image references in every form of
//! the grammar (and invalid ones), random labels and annotations. Each goes
//! through `admission::evaluate`, the entry point of the waPC `validate`.

// The no-panic lints guard the policy itself; a test or benchmark may panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use cache_buster::admission::{Outcome, evaluate};
use cache_buster::image::{ImageReference, SelectedImage, image_hash};
use cache_buster::names::is_dns1123_subdomain;
use json_patch::{Patch, diff};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{Value, json};

const SITE: &str = "cache-buster.io/site";

fn dns_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?"
}

/// Valid DNS-1123 subdomains up to 253 characters, and some invalid names.
fn deployment_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => vec(dns_label(), 1..12).prop_map(|labels| {
            let mut name = labels.join(".");
            name.truncate(253);
            name.trim_end_matches(['-', '.']).to_owned()
        }).prop_filter("non-empty", |name| !name.is_empty()),
        1 => ".{0,40}",
    ]
}

/// Image references of every grammar form, and invalid ones.
fn image() -> impl Strategy<Value = String> {
    let hex = "[0-9a-f]{64}";
    prop_oneof![
        "[a-z0-9]{1,12}",                                  // Docker Hub short name
        "[a-z0-9]{1,12}:[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", // short name with tag
        "[a-z0-9]{1,8}/[a-z0-9]{1,8}(:[a-z0-9.]{1,8})?",   // Docker Hub user repository
        "[a-z]{1,8}\\.(io|com|dev):[0-9]{2,5}/[a-z0-9]{1,8}(/[a-z0-9]{1,8})?:[a-z0-9.]{1,8}", // registry with port
        "localhost(:[0-9]{4})?/[a-z0-9]{1,8}", // localhost registry
        hex.prop_map(|h| format!("ghcr.io/acme/site@sha256:{h}")), // digest only
        hex.prop_map(|h| format!("ghcr.io/acme/site:v1@sha256:{h}")), // tag and digest
        "[A-Za-z0-9:@/._ -]{0,30}",            // anything, often invalid
    ]
}

fn containers() -> impl Strategy<Value = Vec<(String, String)>> {
    vec(("[a-z][a-z0-9-]{0,10}", image()), 0..30)
}

fn purge_annotations() -> impl Strategy<Value = Vec<(String, String)>> {
    let value = prop_oneof![
        "https://www\\.example\\.com/[a-z0-9/]{0,20}",
        "(https://[a-z]{1,8}\\.com/[a-z]{0,5}[ ,]){1,5}",
        "[a-z0-9.-]{1,20}",
        "true|false|yes",
        "cloudflare|fastly|webhook|akamai",
        ".{0,40}",
    ];
    let key = prop_oneof![
        Just("urls"),
        Just("prefixes"),
        Just("hosts"),
        Just("tags"),
        Just("everything"),
        Just("provider"),
        Just("secret"),
        Just("container"),
        Just("image-hash"),
        Just("job-name"),
        Just("job"),
    ];
    vec((key, value), 0..6).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(key, value)| (format!("cache-buster.io/{key}"), value))
            .collect()
    })
}

#[derive(Debug, Clone)]
struct Generated {
    object: Value,
}

fn deployment() -> impl Strategy<Value = Generated> {
    (
        deployment_name(),
        prop_oneof![Just(None), "[A-Za-z0-9._-]{0,20}".prop_map(Some), ".{0,10}".prop_map(Some)],
        btree_map("[a-z]{1,8}", "[a-z0-9]{0,8}", 0..3),
        purge_annotations(),
        containers(),
    )
        .prop_map(|(name, site, other_labels, purge, containers)| {
            let mut labels: serde_json::Map<String, Value> =
                other_labels.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            if let Some(site) = site {
                labels.insert(SITE.to_owned(), Value::String(site));
            }
            let annotations: serde_json::Map<String, Value> =
                purge.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            let containers: Vec<Value> =
                containers.into_iter().map(|(name, image)| json!({"name": name, "image": image})).collect();
            Generated {
                object: json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": name, "namespace": "web", "labels": labels, "annotations": annotations,
                                 "creationTimestamp": null, "futureMetadataField": {"x": 1}},
                    "spec": {"replicas": 1, "futureSpecField": [1, 2],
                             "template": {"spec": {"containers": containers}}}
                }),
            }
        })
}

fn payload(object: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"settings": {}, "request": {
        "uid": "property", "operation": "UPDATE", "namespace": "web",
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "object": object, "oldObject": object}}))
    .unwrap()
}

fn mutated(outcome: &Outcome) -> Option<Value> {
    match outcome {
        Outcome::Mutate { object, .. } => Some(serde_json::from_str(object).unwrap()),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// No input panics; every stamped job name is a DNS-1123 subdomain of at
    /// most 63 characters, and names the stamped Job.
    #[test]
    fn job_names_are_valid_and_short(generated in deployment()) {
        let outcome = evaluate(&payload(&generated.object));
        if let Some(mutated) = mutated(&outcome) {
            let annotations = &mutated["metadata"]["annotations"];
            if let Some(name) = annotations["cache-buster.io/job-name"].as_str() {
                prop_assert!(name.len() <= 63, "{name}");
                prop_assert!(is_dns1123_subdomain(name), "{name}");
                let job: Value = serde_json::from_str(annotations["cache-buster.io/job"].as_str().unwrap()).unwrap();
                prop_assert_eq!(job["metadata"]["name"].as_str(), Some(name));
            }
        }
    }

    /// Evaluating the mutated object again yields no mutation.
    #[test]
    fn mutation_is_idempotent(generated in deployment()) {
        if let Some(mutated) = mutated(&evaluate(&payload(&generated.object))) {
            let again = evaluate(&payload(&mutated));
            prop_assert!(matches!(again, Outcome::Accept { .. }), "{:?}", again);
        }
    }

    /// The patch Kubewarden would compute touches only /metadata/annotations.
    #[test]
    fn patches_touch_only_the_annotations(generated in deployment()) {
        if let Some(mutated) = mutated(&evaluate(&payload(&generated.object))) {
            let Patch(operations) = diff(&generated.object, &mutated);
            prop_assert!(!operations.is_empty());
            for operation in operations {
                let path = serde_json::to_value(&operation).unwrap()["path"].as_str().unwrap().to_owned();
                prop_assert!(path.starts_with("/metadata/annotations"), "{path}");
            }
        }
    }

    /// A rejection names the annotation, label or field at fault.
    #[test]
    fn rejections_name_what_is_wrong(generated in deployment()) {
        if let Outcome::Reject(error) = evaluate(&payload(&generated.object)) {
            let message = error.to_string();
            let names_it = ["cache-buster.io/", "metadata.", "spec.template.spec.containers", "request.object"]
                .iter()
                .any(|place| message.contains(place));
            prop_assert!(names_it, "{message}");
        }
    }

    /// The image hash is a function of the counted name=image pairs only:
    /// the order of the containers does not matter.
    #[test]
    fn the_hash_ignores_container_order(pairs in vec(("[a-z][a-z0-9-]{0,10}", image()), 1..30), seed in any::<u64>()) {
        let selected: Vec<SelectedImage> = pairs
            .iter()
            .filter_map(|(container, image)| {
                ImageReference::parse(image).ok().map(|image| SelectedImage { container: container.clone(), image })
            })
            .collect();
        let mut shuffled = selected.clone();
        // A deterministic shuffle from the seed.
        let len = shuffled.len();
        for i in (1..len).rev() {
            let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % (i as u64 + 1)) as usize;
            shuffled.swap(i, j);
        }
        prop_assert_eq!(image_hash(&selected), image_hash(&shuffled));
    }

    /// Spelling an image in its canonical form changes nothing.
    #[test]
    fn canonical_spelling_keeps_the_hash(container in "[a-z][a-z0-9-]{0,10}", image in image()) {
        if let Ok(reference) = ImageReference::parse(&image) {
            let canonical = ImageReference::parse(&reference.to_string()).unwrap();
            prop_assert_eq!(&canonical, &reference);
            let hash = |image: ImageReference| image_hash(&[SelectedImage { container: container.clone(), image }]);
            prop_assert_eq!(hash(reference), hash(canonical));
        }
    }
}

/// The generator must reach every outcome often, or the properties above
/// would hold vacuously.
#[test]
fn the_generator_reaches_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut mutated, mut accepted, mut rejected) = (0, 0, 0);
    for _ in 0..1000 {
        let generated = deployment().new_tree(&mut runner).unwrap().current();
        match evaluate(&payload(&generated.object)) {
            Outcome::Mutate { .. } => mutated += 1,
            Outcome::Accept { .. } => accepted += 1,
            Outcome::Reject(_) => rejected += 1,
        }
    }
    println!("mutated {mutated}, accepted {accepted}, rejected {rejected}");
    assert!(
        mutated >= 100 && accepted >= 100 && rejected >= 100,
        "mutated {mutated}, accepted {accepted}, rejected {rejected}"
    );
}
