//! Azure Front Door end to end: the Job's purge gets an Entra ID token for
//! the client secret of its Secret (the double checks it), purges the
//! endpoint's paths through Azure Resource Manager, and waits until the
//! operation ARM names is Succeeded; the Event names it. The Job's pod
//! carries the label AKS Workload Identity's webhook acts on.

use super::running::{START_DELAY, annotated_site, bodies, node_namespace, purged_site, secret};
use super::*;
use cache_buster_e2e_cluster::azure;
use cache_buster_e2e_cluster::node::Readiness;

pub async fn azure_purges_and_waits(cluster: &Cluster) -> Result<()> {
    let ns = "node-azure";
    node_namespace(cluster, ns, Readiness::After(START_DELAY)).await?;
    secret(
        cluster,
        ns,
        "cache-buster-credentials",
        &[
            ("AZURE_SUBSCRIPTION_ID", azure::SUBSCRIPTION),
            ("AZURE_RESOURCE_GROUP", azure::RESOURCE_GROUP),
            ("AZURE_PROFILE", azure::PROFILE),
            ("AZURE_ENDPOINT", azure::ENDPOINT),
            ("AZURE_TENANT_ID", azure::TENANT),
            ("AZURE_CLIENT_ID", azure::CLIENT_ID),
            ("AZURE_CLIENT_SECRET", azure::CLIENT_SECRET),
        ],
    )
    .await?;
    let purge_path = format!(
        "{}/subscriptions/{}/resourceGroups/",
        azure::ARM_HOST,
        azure::SUBSCRIPTION
    );
    let before = cluster.cdn.requests(&purge_path).len();
    let manifest = annotated_site(
        "shop",
        ns,
        "nginx:1.27.1",
        &[
            ("provider", "azure"),
            ("urls", "https://shop.example.com/menu"),
            ("prefixes", "shop.example.com/blog/"),
        ],
    );
    let job = purged_site(cluster, ns, &manifest).await?;
    let requests = cluster.cdn.requests(&purge_path);
    ensure!(
        bodies(&requests[before..])?
            == [
                json!({"contentPaths": ["/menu"], "domains": ["shop.example.com"]}),
                json!({"contentPaths": ["/blog/*"], "domains": ["shop.example.com"]}),
            ],
        "{:#?}",
        bodies(&requests[before..])?
    );
    ensure!(
        !cluster.cdn.requests("/operationresults/").is_empty(),
        "no operation was asked about"
    );
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let listed = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await?;
    let pod = listed.items.first().context("the Job's pod")?;
    ensure!(
        pod.labels()
            .get("azure.workload.identity/use")
            .map(String::as_str)
            == Some("true"),
        "the pod lacks AKS Workload Identity's label: {:?}",
        pod.labels()
    );
    let event = wait_for_events(cluster, ns, "shop", "CacheBusterPurged", 1).await?;
    let text = event[0].message.clone().unwrap_or_default();
    for said in [
        format!("Job {job} purged the azure cache"),
        "purged 1 URL, 1 prefix".to_owned(),
        "-0000-4000-8000-".to_owned(),
    ] {
        ensure!(text.contains(&said), "{said:?} not in: {text}");
    }
    ensure!(
        !text.contains("double-arm-token") && !text.contains(azure::CLIENT_SECRET),
        "a credential in the Event: {text}"
    );
    Ok(())
}
