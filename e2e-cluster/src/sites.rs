//! A site as a user's repository holds it, applied as Flux applies it, and
//! the moment its rollout is done: shared by the scenarios and the bench.

use crate::cluster::Cluster;
use crate::eventually;
use anyhow::{Result, anyhow};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A labelled site Deployment that passes Pod Security "restricted".
pub fn site(name: &str, namespace: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": name, "namespace": namespace,
            "labels": {"app": name, "cache-buster.io/site": format!("{name}.example.com")},
            "annotations": {"cache-buster.io/urls": format!("https://{name}.example.com/")}
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 101, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "web", "image": image,
                        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
                    }]
                }
            }
        }
    })
}

pub fn deployments(cluster: &Cluster, namespace: &str) -> Api<Deployment> {
    Api::namespaced(cluster.client.clone(), namespace)
}

/// What Flux's kustomize-controller does: server-side apply under its field
/// manager.
pub async fn flux_apply(cluster: &Cluster, manifest: &Value, dry_run: bool) -> Result<Deployment> {
    let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = manifest["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default();
    let mut params = PatchParams::apply("kustomize-controller").force();
    params.dry_run = dry_run;
    Ok(deployments(cluster, namespace)
        .patch(name, &params, &Patch::Apply(manifest))
        .await?)
}

/// The moment the rollout of `image` was done: when the test node made the
/// last pod of its ReplicaSet Ready (waiting first for the ReplicaSet to
/// count it available). The ReplicaSet controller sees the pod Ready a
/// little later, so a latency measured from here is an upper bound.
pub async fn ready_moment(
    cluster: &Cluster,
    namespace: &str,
    deployment: &str,
    image: &str,
) -> Result<Instant> {
    let replica_sets: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), namespace);
    let set = eventually(
        &format!("the ReplicaSet of {image} available"),
        Duration::from_secs(30),
        || {
            let replica_sets = replica_sets.clone();
            async move {
                Ok(replica_sets
                    .list(&ListParams::default().labels(&format!("app={deployment}")))
                    .await?
                    .items
                    .into_iter()
                    .find(|set| runs(set, image) && available(set) >= 1))
            }
        },
    )
    .await?;
    let hash = set
        .labels()
        .get("pod-template-hash")
        .cloned()
        .unwrap_or_default();
    cluster
        .node
        .ready_moments(namespace)
        .into_iter()
        .filter(|(pod, _)| pod.contains(&hash))
        .map(|(_, at)| at)
        .max()
        .ok_or_else(|| anyhow!("no pod of {image} was made Ready by the test node"))
}

fn runs(set: &ReplicaSet, image: &str) -> bool {
    set.spec
        .as_ref()
        .and_then(|spec| spec.template.as_ref())
        .and_then(|template| template.spec.as_ref())
        .is_some_and(|pod| {
            pod.containers
                .iter()
                .any(|container| container.image.as_deref() == Some(image))
        })
}

fn available(set: &ReplicaSet) -> i32 {
    set.status
        .as_ref()
        .and_then(|status| status.available_replicas)
        .unwrap_or(0)
}
