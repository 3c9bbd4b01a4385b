//! The companion Job run for real: the test node binds the pods, makes the
//! site's pods Ready (or holds them), and executes the Job's containers
//! (`kubectl wait`, `kubectl rollout status`, curl) in sandboxes that reach
//! the CDN double. Each scenario asserts what reached the CDN and what the
//! API server shows.

use super::*;
use cache_buster_e2e_cluster::cdn::{Failure, Recorded};
use cache_buster_e2e_cluster::node::{Executed, Readiness};
use k8s_openapi::api::core::v1::Secret;

/// A start delay short enough for the tests, long enough to be a real wait.
const START_DELAY: Duration = Duration::from_millis(500);
/// How long the scenarios watch for something that must not happen.
const QUIET: Duration = Duration::from_secs(4);

/// A namespace the test node serves.
async fn node_namespace(cluster: &Cluster, ns: &str, readiness: Readiness) -> Result<()> {
    cluster.site_namespace(ns).await?;
    cluster.node.serve(ns, readiness);
    Ok(())
}

async fn secret(cluster: &Cluster, ns: &str, name: &str, data: &[(&str, &str)]) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), ns);
    let data: BTreeMap<String, String> = data
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name}, "type": "Opaque", "stringData": data
    }))?;
    secrets.create(&Default::default(), &secret).await?;
    Ok(())
}

/// A site Deployment with these annotations (besides the site label).
fn annotated_site(name: &str, ns: &str, image: &str, annotations: &[(&str, &str)]) -> Value {
    let mut manifest = site(name, ns, image);
    let map: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(key, value)| (format!("cache-buster.io/{key}"), json!(value)))
        .collect();
    manifest["metadata"]["annotations"] = Value::Object(map);
    manifest
}

/// Waits until `count` requests matching `matching` reached the CDN.
async fn purges(
    cluster: &Cluster,
    matching: &str,
    count: usize,
    within: Duration,
) -> Result<Vec<Recorded>> {
    eventually(
        &format!("{count} purge request(s) to {matching}"),
        within,
        || async move {
            let seen = cluster.cdn.requests(matching);
            Ok((seen.len() >= count).then_some(seen))
        },
    )
    .await
}

/// Waits until Job `name` has the condition `wanted` (Complete, Failed).
async fn job_ends(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    wanted: &str,
    within: Duration,
) -> Result<Job> {
    eventually(
        &format!("Job {ns}/{name} {wanted}"),
        within,
        || async move {
            let job = jobs(cluster, ns).get_opt(name).await?;
            Ok(job.filter(|job| {
                job.status
                    .iter()
                    .flat_map(|status| status.conditions.iter().flatten())
                    .any(|condition| condition.type_ == wanted && condition.status == "True")
            }))
        },
    )
    .await
}

/// The moment the rollout of `image` counted as done: its pods all Ready
/// (the node records when it made each Ready).
async fn ready_moment(
    cluster: &Cluster,
    ns: &str,
    deployment: &str,
    image: &str,
) -> Result<Instant> {
    let replica_sets: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), ns);
    let set = eventually(
        &format!("the ReplicaSet of {image} available"),
        SOON,
        || {
            let replica_sets = replica_sets.clone();
            async move {
                Ok(replica_sets
                    .list(&ListParams::default().labels(&format!("app={deployment}")))
                    .await?
                    .items
                    .into_iter()
                    .find(|set| {
                        let runs_image = set
                            .spec
                            .as_ref()
                            .and_then(|spec| spec.template.as_ref())
                            .and_then(|template| template.spec.as_ref())
                            .is_some_and(|pod| {
                                pod.containers
                                    .iter()
                                    .any(|c| c.image.as_deref() == Some(image))
                            });
                        let available = set
                            .status
                            .as_ref()
                            .and_then(|status| status.available_replicas)
                            .unwrap_or(0);
                        runs_image && available >= 1
                    }))
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
        .ready_moments(ns)
        .into_iter()
        .filter(|(pod, _)| pod.contains(&hash))
        .map(|(_, at)| at)
        .max()
        .ok_or_else(|| anyhow!("no pod of {image} was made Ready by the node"))
}

/// Waits until a pod of Job `job` ran `container`; that run.
async fn container_ran(
    cluster: &Cluster,
    ns: &str,
    job: &str,
    container: &str,
) -> Result<Executed> {
    let prefix = format!("{ns}/{job}-");
    eventually(&format!("{container} of {job} ran"), SOON, || {
        let prefix = prefix.clone();
        async move {
            Ok(cluster
                .node
                .executed(ns)
                .into_iter()
                .find(|run| run.container == container && run.pod.starts_with(&prefix)))
        }
    })
    .await
}

fn container_runs<'a>(executed: &'a [Executed], container: &str) -> Vec<&'a Executed> {
    executed
        .iter()
        .filter(|run| run.container == container)
        .collect()
}

// 1. An image change under a Flux-like apply: one purge per image, only after
//    the new ReplicaSet is fully available.
pub async fn purge_after_rollout(cluster: &Cluster) -> Result<()> {
    let ns = "node-rollout";
    node_namespace(cluster, ns, Readiness::Held).await?;
    secret(
        cluster,
        ns,
        "cache-buster-credentials",
        &[
            ("CLOUDFLARE_ZONE_ID", "zone-rollout"),
            ("CLOUDFLARE_API_TOKEN", "cf-token-rollout\n"),
        ],
    )
    .await?;
    let zone = "/zones/zone-rollout/";
    for (round, image) in ["nginx:1.27.1", "nginx:1.27.2"].into_iter().enumerate() {
        cluster.node.serve(ns, Readiness::Held);
        let stored = flux_apply(cluster, &site("shop", ns, image), false).await?;
        let job = stamped_job_name(&stored)?;
        wait_for_job(cluster, ns, &job).await?;
        // The Job waits in `kubectl rollout status` while the new pod is not Ready.
        container_ran(cluster, ns, &job, "wait-image").await?;
        stable_for(QUIET).await;
        let early = cluster.cdn.requests(zone);
        ensure!(
            early.len() == round,
            "a purge was sent while the rollout of {image} was in progress: {early:?}"
        );

        cluster.node.serve(ns, Readiness::After(START_DELAY));
        let seen = purges(cluster, zone, round + 1, Duration::from_secs(60)).await?;
        let ready = ready_moment(cluster, ns, "shop", image).await?;
        let purge = seen.last().ok_or_else(|| anyhow!("no purge"))?;
        ensure!(
            purge.at >= ready,
            "the purge for {image} reached the CDN {:?} before its pods were Ready",
            ready - purge.at
        );
        ensure!(
            purge.method == "POST" && purge.path == "/client/v4/zones/zone-rollout/purge_cache",
            "{}",
            purge.dump()
        );
        ensure!(
            purge.header("authorization") == Some("Bearer cf-token-rollout"),
            "{}",
            purge.dump()
        );
        ensure!(
            purge.header("content-type") == Some("application/json"),
            "{}",
            purge.dump()
        );
        let body: Value = serde_json::from_str(&purge.body)?;
        ensure!(
            body == json!({"files": ["https://shop.example.com/"]}),
            "{body}"
        );
        job_ends(cluster, ns, &job, "Complete", SOON).await?;
    }
    stable_for(QUIET).await;
    let all = cluster.cdn.requests(zone);
    ensure!(
        all.len() == 2,
        "{} purges for two images: {all:?}",
        all.len()
    );
    Ok(())
}
