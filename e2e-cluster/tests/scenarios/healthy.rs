//! A healthy control plane, watched through a site's whole life: on a real
//! API server the launchers' watches never fail, and every purge that ran
//! has its Event. A watch that fails on every change (a cached Job without
//! the resourceVersion kube's watcher resumes from) re-lists after a
//! growing back-off, sees Jobs late, and can cancel a Job that has already
//! purged: an outcome lost, which this scenario catches.

use super::running::{START_DELAY, node_namespace, purges, secret};
use super::*;
use cache_buster_e2e_cluster::node::Readiness;

const WATCH_ERRORS: &str = "cache_buster_launcher_watch_errors";

/// Watch errors counted in a /metrics text, of every resource. A family
/// with no error yet has no line at all; that its name is the one counted
/// when a watch fails, `a_forbidden_watch_…` shows on the same launcher.
fn watch_errors(metrics: &str) -> Result<u64> {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{WATCH_ERRORS}_total")))
        .map(|line| {
            let count = line.rsplit(' ').next().unwrap_or_default();
            count
                .parse::<f64>()
                .map(|count| count as u64)
                .with_context(|| format!("{line:?}"))
        })
        .sum()
}

/// The launcher's watch errors since it started: 0 on a healthy control
/// plane.
async fn no_watch_error(cluster: &Cluster, after: &str) -> Result<()> {
    let metrics = cluster.launcher_metrics().await?;
    let errors = watch_errors(&metrics)?;
    ensure!(
        errors == 0,
        "after {after}, the launcher counted {errors} watch error(s):\n{}",
        metrics
            .lines()
            .filter(|line| line.starts_with(WATCH_ERRORS))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}

/// One rollout, run to its purge: the Job of this image's stamp, and the
/// `count`th purge at the CDN and Event on the Deployment.
async fn rolled_out_and_purged(
    cluster: &Cluster,
    ns: &str,
    image: &str,
    count: usize,
) -> Result<Job> {
    let stored = flux_apply(cluster, &site("shop", ns, image), false).await?;
    let name = stamped_job_name(&stored)?;
    purges(
        cluster,
        "/zones/zone-healthy/",
        count,
        Duration::from_secs(60),
    )
    .await?;
    wait_for_events(cluster, ns, "shop", "CacheBusterPurged", count)
        .await
        .with_context(|| format!("the Event of purge {count} ({image})"))?;
    jobs(cluster, ns)
        .get_opt(&name)
        .await?
        .ok_or_else(|| anyhow!("no Job {name}"))
}

pub async fn healthy_watches(cluster: &Cluster) -> Result<()> {
    let ns = "node-healthy";
    node_namespace(cluster, ns, Readiness::After(START_DELAY)).await?;
    secret(
        cluster,
        ns,
        "cache-buster-credentials",
        &[
            ("CLOUDFLARE_ZONE_ID", "zone-healthy"),
            ("CLOUDFLARE_API_TOKEN", "cf-token-healthy"),
        ],
    )
    .await?;

    // A rollout, another, and a rollback to the first image (A→B→A): three
    // purges. Creation times have a resolution of one second: each next
    // image's Job is created in a later second (README, "Every rollout purges").
    let mut purged = 0;
    for image in ["nginx:1.27.1", "nginx:1.27.2", "nginx:1.27.1"] {
        if purged > 0 {
            stable_for(Duration::from_millis(1100)).await;
        }
        purged += 1;
        rolled_out_and_purged(cluster, ns, image, purged).await?;
    }
    no_watch_error(cluster, "a rollout and a rollback").await?;

    // A settings edit, followed by the launchers without a restart, and the
    // policy-server reloaded as Kubewarden's controller does: the next
    // rollout's Job carries the new settings.
    let original = cluster.policy_settings().await?;
    let edited = async {
        let mut changed = original.clone();
        changed["backoffLimit"] = json!(4);
        cluster.set_policy_settings(changed).await?;
        cluster.stop_policy_server()?;
        cluster.start_policy_server().await?;
        stable_for(Duration::from_millis(1100)).await;
        let job = rolled_out_and_purged(cluster, ns, "nginx:1.27.3", purged + 1).await?;
        ensure!(
            job.spec.as_ref().and_then(|spec| spec.backoff_limit) == Some(4),
            "{:?}",
            job.spec
        );
        Ok(())
    }
    .await;
    cluster.set_policy_settings(original).await?;
    cluster.stop_policy_server()?;
    cluster.start_policy_server().await?;
    edited?;
    purged += 1;

    // Nothing more happens, and every purge that reached the CDN has its
    // Event; no Job was cancelled.
    stable_for(Duration::from_secs(4)).await;
    let at_the_cdn = cluster.cdn.requests("/zones/zone-healthy/").len();
    let reported = events(cluster, ns, "shop", "CacheBusterPurged")
        .await?
        .len();
    ensure!(
        at_the_cdn == purged && reported == purged,
        "{purged} rollouts, {at_the_cdn} purges at the CDN, {reported} CacheBusterPurged Events"
    );
    let cancelled = events(cluster, ns, "shop", "CacheBusterJobCancelled").await?;
    ensure!(cancelled.is_empty(), "Jobs cancelled: {cancelled:?}");
    no_watch_error(cluster, "a rollout, a rollback and a settings edit").await
}
