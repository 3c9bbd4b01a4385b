//! Test support shared by the launcher's unit and API tests.

use cache_buster::admission::{Outcome, evaluate};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

pub const UID: &str = "9f1e6a52-0b57-4c1f-b1d5-5b2f0f0b7e21";

/// A live site Deployment running `image`, stamped by the policy itself
/// (through the entry point the Wasm module uses).
pub fn stamped(image: &str) -> Deployment {
    let object = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "shop", "namespace": "web", "uid": UID, "resourceVersion": "48213",
            "labels": {"cache-buster.io/site": "shop.example.com"},
            "annotations": {"cache-buster.io/urls": "https://shop.example.com/"}
        },
        "spec": {"selector": {"matchLabels": {"app": "shop"}},
                 "template": {"spec": {"containers": [{"name": "web", "image": image}]}}}
    });
    let payload = json!({"settings": {}, "request": {
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "operation": "UPDATE", "namespace": "web", "name": "shop", "object": object}});
    match evaluate(&serde_json::to_vec(&payload).expect("payload")) {
        Outcome::Mutate { object, .. } => serde_json::from_str(&object).expect("a Deployment"),
        other => panic!("the policy did not stamp: {other:?}"),
    }
}
