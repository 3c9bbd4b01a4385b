//! Promises the README makes that only a real control plane can show: a
//! CloudFront rollback invalidates again (the Job created anew has a uid,
//! hence a CallerReference, of its own), and a newer image cancels only a
//! Job still waiting for its rollout, never one whose purge runs.

use super::running::{annotated_site, job_ends, node_namespace, secret};
use super::*;
use cache_buster_e2e_cluster::aws;
use cache_buster_e2e_cluster::cdn::Failure;
use cache_buster_e2e_cluster::node::Readiness;

/// Waits until Job `name` exists as a Job not in `seen` (by uid) and has
/// completed; its uid.
async fn new_job_completed(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    seen: &[String],
) -> Result<String> {
    eventually(
        &format!("a new Job {name} Complete"),
        Duration::from_secs(90),
        || {
            let name = name.to_owned();
            let seen = seen.to_vec();
            async move {
                let job = jobs(cluster, ns).get_opt(&name).await?;
                Ok(job.and_then(|job| {
                    let uid = job.uid()?;
                    let complete = job
                        .status
                        .iter()
                        .flat_map(|status| status.conditions.iter().flatten())
                        .any(|condition| {
                            condition.type_ == "Complete" && condition.status == "True"
                        });
                    (complete && !seen.contains(&uid)).then_some(uid)
                }))
            }
        },
    )
    .await
}

/// A→B→A with provider cloudfront: three Jobs run, three invalidations in
/// CloudFront, three CacheBusterPurged Events. With the Job's name alone as
/// CallerReference, CloudFront would answer the rollback with A's first
/// invalidation and purge nothing.
pub async fn cloudfront_rollback_invalidates_three_times(cluster: &Cluster) -> Result<()> {
    let ns = "node-cloudfront-rollback";
    let distribution = "EROLLBACK0DIST";
    node_namespace(cluster, ns, Readiness::After(Duration::ZERO)).await?;
    secret(
        cluster,
        ns,
        "cache-buster-credentials",
        &[
            ("CLOUDFRONT_DISTRIBUTION_ID", distribution),
            ("AWS_ACCESS_KEY_ID", aws::ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", aws::SECRET_ACCESS_KEY),
        ],
    )
    .await?;
    let manifest = |image: &str| {
        annotated_site(
            "shop",
            ns,
            image,
            &[
                ("provider", "cloudfront"),
                ("urls", "https://shop.example.com/"),
            ],
        )
    };
    let mut uids = Vec::new();
    for (round, image) in ["nginx:1.27.1", "nginx:1.27.2", "nginx:1.27.1"]
        .into_iter()
        .enumerate()
    {
        // Creation times count in seconds: B's Job must be newer than A's.
        if round > 0 {
            stable_for(Duration::from_millis(1100)).await;
        }
        let stored = flux_apply(cluster, &manifest(image), false).await?;
        let name = stamped_job_name(&stored)?;
        uids.push(new_job_completed(cluster, ns, &name, &uids).await?);
        wait_for_events(cluster, ns, "shop", "CacheBusterPurged", round + 1).await?;
    }
    let made = cluster.cdn.cloudfront_invalidations_of(distribution);
    ensure!(made == 3, "{made} invalidations of {distribution}, not 3");
    let references: Vec<String> = cluster
        .cdn
        .requests(&format!("/distribution/{distribution}/invalidation"))
        .iter()
        .filter(|request| request.method == "POST")
        .filter_map(|request| {
            let body = &request.body;
            let start = body.find("<CallerReference>")? + "<CallerReference>".len();
            let end = body.find("</CallerReference>")?;
            body.get(start..end).map(str::to_owned)
        })
        .collect();
    for (reference, uid) in references.iter().zip(&uids) {
        ensure!(
            reference.ends_with(uid.as_str()),
            "{reference} is not of Job {uid}"
        );
    }
    stable_for(Duration::from_secs(2)).await;
    let purged = events(cluster, ns, "shop", "CacheBusterPurged").await?;
    ensure!(
        purged.len() == 3,
        "{} CacheBusterPurged Events",
        purged.len()
    );
    Ok(())
}

/// Image 1's purge is running (its CDN answers slowly) when image 2 lands,
/// whose Job then waits for a rollout that is held, and image 3 lands: the
/// running purge of image 1 completes and is reported, image 2's waiting
/// Job is cancelled, and the Event says so.
pub async fn a_running_purge_finishes_a_waiting_job_is_cancelled(cluster: &Cluster) -> Result<()> {
    let ns = "node-running-purge";
    let hook = "hooks.example.test/node-running-purge";
    node_namespace(cluster, ns, Readiness::After(Duration::ZERO)).await?;
    secret(
        cluster,
        ns,
        "cache-buster-credentials",
        &[("WEBHOOK_URL", &format!("https://{hook}"))],
    )
    .await?;
    cluster.cdn.fail(
        hook,
        Failure::Slow {
            duration: Duration::from_secs(8),
        },
    );
    let manifest = |image: &str| annotated_site("www", ns, image, &[("provider", "webhook")]);

    let first = stamped_job_name(&flux_apply(cluster, &manifest("nginx:1.27.1"), false).await?)?;
    // Its purge is under way: the webhook has the request, and the Job
    // counts its pod Ready (the purge container runs).
    eventually("image 1's purge sent", SOON, || async move {
        Ok((!cluster.cdn.requests(hook).is_empty()).then_some(()))
    })
    .await?;
    eventually("image 1's Job counts a Ready pod", SOON, || {
        let first = first.clone();
        async move {
            let job = jobs(cluster, ns).get(&first).await?;
            Ok((job.status.and_then(|status| status.ready) == Some(1)).then_some(()))
        }
    })
    .await?;

    cluster.node.serve(ns, Readiness::Held);
    let second = stamped_job_name(&flux_apply(cluster, &manifest("nginx:1.27.2"), false).await?)?;
    wait_for_job(cluster, ns, &second).await?;
    stable_for(Duration::from_millis(500)).await;
    ensure!(
        jobs(cluster, ns).get_opt(&first).await?.is_some(),
        "image 1's Job was deleted while it purged"
    );
    let third = stamped_job_name(&flux_apply(cluster, &manifest("nginx:1.27.3"), false).await?)?;
    eventually("image 2's waiting Job cancelled", SOON, || {
        let second = second.clone();
        async move {
            Ok(jobs(cluster, ns)
                .get_opt(&second)
                .await?
                .is_none()
                .then_some(()))
        }
    })
    .await?;
    let cancelled = wait_for_events(cluster, ns, "www", "CacheBusterJobCancelled", 1).await?;
    let said = cancelled[0].message.clone().unwrap_or_default();
    ensure!(
        said.contains(&format!(
            "Job {second} deleted while it still waited for its rollout"
        )),
        "{said}"
    );

    // Image 1's purge ends, and is reported.
    job_ends(cluster, ns, &first, "Complete", Duration::from_secs(60)).await?;
    let purged = wait_for_events(cluster, ns, "www", "CacheBusterPurged", 1).await?;
    let said = purged[0].message.clone().unwrap_or_default();
    ensure!(said.contains(&format!("Job {first}")), "{said}");

    cluster.node.serve(ns, Readiness::After(Duration::ZERO));
    job_ends(cluster, ns, &third, "Complete", Duration::from_secs(90)).await?;
    wait_for_events(cluster, ns, "www", "CacheBusterPurged", 2).await?;
    let cancelled = events(cluster, ns, "www", "CacheBusterJobCancelled").await?;
    ensure!(cancelled.len() == 1, "{} Jobs cancelled", cancelled.len());
    let bodies: Vec<Value> = cluster
        .cdn
        .requests(hook)
        .iter()
        .map(|request| serde_json::from_str(&request.body))
        .collect::<Result<_, _>>()?;
    let purged_by: Vec<&str> = bodies
        .iter()
        .filter_map(|body| body["jobName"].as_str())
        .collect();
    ensure!(
        purged_by == [first.as_str(), third.as_str()],
        "purges by {purged_by:?}"
    );
    Ok(())
}
