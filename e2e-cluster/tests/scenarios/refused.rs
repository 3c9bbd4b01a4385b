//! A refusal by the API server is final: the Job's ServiceAccount without
//! the Role of deploy/site (a Role edited too tightly, a RoleBinding never
//! applied) fails `wait-rollout` at once with the server's own message, and
//! the Job's podFailurePolicy fails the Job on its exit code 2, so the
//! Deployment's Event names the verb, the resource and the ServiceAccount
//! within seconds instead of after the rollout time-out and every back-off.

use super::running::{START_DELAY, job_ends, node_namespace};
use super::*;
use cache_buster_e2e_cluster::node::Readiness;
use k8s_openapi::api::rbac::v1::Role;

pub async fn refused_watch(cluster: &Cluster) -> Result<()> {
    let ns = "node-refused";
    node_namespace(cluster, ns, Readiness::After(START_DELAY)).await?;
    // The Role that lets the Job's ServiceAccount watch Deployments, gone.
    let roles: Api<Role> = Api::namespaced(cluster.client.clone(), ns);
    roles
        .delete("cache-buster", &DeleteParams::default())
        .await?;

    let stored = flux_apply(cluster, &site("shop", ns, "nginx:1.27.1"), false).await?;
    let name = stamped_job_name(&stored)?;
    let failed = job_ends(cluster, ns, &name, "Failed", Duration::from_secs(20)).await?;
    let status = failed.status.unwrap_or_default();
    ensure!(
        status.failed == Some(1),
        "{:?} pods failed, not one: a refusal is not retried",
        status.failed
    );
    let event = wait_for_events(cluster, ns, "shop", "CacheBusterPurgeFailed", 1).await?;
    let text = event[0].message.clone().unwrap_or_default();
    // The container's message is quoted by its end (launcher, REASON_CHARS):
    // the server's words and what to grant.
    for named in [
        "container wait-rollout exited with 2",
        "HTTP 403 Forbidden",
        "\"system:serviceaccount:node-refused:cache-buster\"",
        "cannot list resource \"deployments\"",
        "needs get, list and watch on deployments",
    ] {
        ensure!(text.contains(named), "{named:?} not in: {text}");
    }
    Ok(())
}
