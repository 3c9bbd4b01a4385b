//! Google Cloud CDN end to end: the Job's purge signs a JWT with the
//! service-account key of its Secret, which Google's token endpoint (the
//! double) verifies, invalidates the URL map's cache with the token, and
//! waits until Google says the Operation is DONE; the Event names it.

use super::running::{START_DELAY, annotated_site, bodies, node_namespace, purged_site, secret};
use super::*;
use cache_buster_e2e_cluster::google;
use cache_buster_e2e_cluster::node::Readiness;

pub async fn gcp_invalidates_and_waits(cluster: &Cluster) -> Result<()> {
    let ns = "node-gcp";
    node_namespace(cluster, ns, Readiness::After(START_DELAY)).await?;
    let key = google::service_account_key();
    secret(
        cluster,
        ns,
        "cache-buster-credentials",
        &[
            ("GCP_PROJECT", google::PROJECT),
            ("GCP_URL_MAP", google::URL_MAP),
            ("GCP_SERVICE_ACCOUNT_KEY", &key),
        ],
    )
    .await?;
    let before = cluster.cdn.requests("/invalidateCache").len();
    let manifest = annotated_site(
        "shop",
        ns,
        "nginx:1.27.1",
        &[
            ("provider", "gcp"),
            ("urls", "https://shop.example.com/menu"),
            ("tags", "shop"),
        ],
    );
    let job = purged_site(cluster, ns, &manifest).await?;
    let invalidations = cluster.cdn.requests("/invalidateCache");
    ensure!(
        bodies(&invalidations[before..])?
            == [
                json!({"path": "/menu", "host": "shop.example.com"}),
                json!({"cacheTags": ["shop"]}),
            ],
        "{:#?}",
        bodies(&invalidations[before..])?
    );
    ensure!(
        !cluster
            .cdn
            .requests("oauth2.googleapis.com/token")
            .is_empty(),
        "no token was asked for"
    );
    let event = wait_for_events(cluster, ns, "shop", "CacheBusterPurged", 1).await?;
    let text = event[0].message.clone().unwrap_or_default();
    for said in [
        format!("Job {job} purged the gcp cache"),
        "purged 1 URL, 1 tag".to_owned(),
        "-invalidate".to_owned(),
    ] {
        ensure!(text.contains(&said), "{said:?} not in: {text}");
    }
    ensure!(!text.contains("ya29."), "a token in the Event: {text}");
    Ok(())
}
