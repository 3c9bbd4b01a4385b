//! SPEC §9: the image whose purge last succeeded for this Deployment, the
//! old side of a content purge. The companion Jobs are that record: each
//! names its Deployment and its image in its purge container's argv, and
//! the API server keeps whether it succeeded. The newest succeeded one
//! (other than this Job) wins: when B's Job failed or was superseded, C is
//! compared with A, so C's purge covers A→B's changes too.

use crate::argv::SUBCOMMAND;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::ListParams;

/// The labels the policy gives every companion Job (SPEC §4).
pub const COMPANION_SELECTOR: &str =
    "app.kubernetes.io/managed-by=cache-buster,app.kubernetes.io/component=cache-buster";

/// The image of the newest succeeded companion Job of `deployment` in
/// `namespace`, other than `own_job`; None on the first rollout.
pub async fn last_purged_image(
    client: kube::Client,
    namespace: &str,
    deployment: &str,
    own_job: &str,
) -> Result<Option<String>, kube::Error> {
    let jobs: Api<Job> = Api::namespaced(client, namespace);
    let list = jobs
        .list(&ListParams::default().labels(COMPANION_SELECTOR))
        .await?;
    Ok(newest_succeeded(&list.items, deployment, own_job))
}

/// `--<name>=` of the Job's purge container.
fn purge_flag<'a>(job: &'a Job, name: &str) -> Option<&'a str> {
    let containers = &job.spec.as_ref()?.template.spec.as_ref()?.containers;
    let args = containers.iter().find_map(|container| {
        let args = container.args.as_ref()?;
        (args.first().map(String::as_str) == Some(SUBCOMMAND)).then_some(args)
    })?;
    let prefix = ["--", name, "="].concat();
    args.iter()
        .find_map(|arg| arg.strip_prefix(prefix.as_str()))
}

/// The pure choice of [`last_purged_image`], on the Jobs listed.
pub fn newest_succeeded(jobs: &[Job], deployment: &str, own_job: &str) -> Option<String> {
    jobs.iter()
        .filter(|job| job.metadata.name.as_deref() != Some(own_job))
        .filter(|job| purge_flag(job, "deployment") == Some(deployment))
        .filter_map(|job| {
            let status = job.status.as_ref()?;
            let completed = status.completion_time.as_ref()?;
            (status.succeeded.unwrap_or(0) > 0).then_some((completed.0, job))
        })
        .max_by_key(|(completed, _)| *completed)
        .and_then(|(_, job)| purge_flag(job, "image"))
        .filter(|image| !image.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
#[path = "previous_tests.rs"]
mod tests;
