//! The reconcile decision, as a pure function: a Deployment, the companion
//! Jobs that exist and the settings in; what to do out. No Kubernetes call
//! happens here (see `cluster` for those).

use cache_buster::deployment::{RequestContext, derive_stamp, stamp_keys};
use cache_buster::job::{COMPONENT_LABEL, LABEL_VALUE, MANAGED_BY_LABEL};
use cache_buster::settings::Settings;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// What the launcher does for one Deployment.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing to do.
    Skip(SkipReason),
    /// A Job of the stamped name exists, running or finished: it is the record
    /// that this image was (or is being) handled, so nothing is created.
    AlreadyPresent { job: String },
    /// Create this Job (owned by the Deployment), then delete these finished
    /// companion Jobs beyond the history limit.
    Create { job: Box<Job>, prune: Vec<String> },
    /// The stamped Job is not what the policy derives from this Deployment
    /// (written while the policy was off, or by hand): nothing is created.
    Refuse { reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Being deleted: its Jobs go with it.
    BeingDeleted,
    /// No site label: it does not take part.
    NotLabelled,
    /// Labelled but not stamped (the policy has not seen it yet).
    NotStamped,
}

pub fn decide(
    settings: &Settings,
    deployment: &Deployment,
    jobs: &[Job],
    history_limit: usize,
) -> Decision {
    let metadata = &deployment.metadata;
    if metadata.deletion_timestamp.is_some() {
        return Decision::Skip(SkipReason::BeingDeleted);
    }
    if !metadata
        .labels
        .as_ref()
        .is_some_and(|labels| labels.contains_key(&settings.site_label))
    {
        return Decision::Skip(SkipReason::NotLabelled);
    }
    let [_, _, job_key] = stamp_keys(settings);
    let annotations = metadata.annotations.clone().unwrap_or_default();
    if !annotations.contains_key(&job_key) {
        return Decision::Skip(SkipReason::NotStamped);
    }
    let (Some(name), Some(uid)) = (metadata.name.as_deref(), metadata.uid.as_deref()) else {
        return Decision::Refuse {
            reason: "the Deployment has no name or uid to own a Job".to_owned(),
        };
    };

    // The same code as the policy: what it would stamp on this Deployment now.
    let stamp = match derive_stamp(settings, deployment, RequestContext::default()) {
        Ok((stamp, _warnings)) => stamp,
        Err(error) => {
            return Decision::Refuse {
                reason: format!("the policy would reject this Deployment: {error}"),
            };
        }
    };
    if let Some((key, _)) = stamp
        .annotations(settings)
        .into_iter()
        .find(|(key, value)| annotations.get(key).map(String::as_str) != Some(*value))
    {
        return Decision::Refuse {
            reason: format!(
                "annotation {key} is not what the cache-buster policy derives from this Deployment; \
                 no Job is created from it (was it written while the policy was not running?)"
            ),
        };
    }

    if jobs
        .iter()
        .any(|job| job.metadata.name.as_deref() == Some(stamp.job_name.as_str()))
    {
        return Decision::AlreadyPresent {
            job: stamp.job_name,
        };
    }
    let mut job: Job = match serde_json::from_str(&stamp.job_json) {
        Ok(job) => job,
        Err(error) => {
            return Decision::Refuse {
                reason: format!("the stamped Job does not decode: {error}"),
            };
        }
    };
    job.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".to_owned(),
        kind: "Deployment".to_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
        // Neither controller (the Deployment controller manages ReplicaSets
        // only) nor blockOwnerDeletion (it needs rights on the Deployment's
        // finalizers): a plain owner, for garbage collection.
        ..OwnerReference::default()
    }]);
    let prune = prunable(uid, &stamp.job_name, jobs, history_limit);
    Decision::Create {
        job: Box::new(job),
        prune,
    }
}

/// Finished companion Jobs of the Deployment `uid` beyond the newest
/// `history_limit`, never the `current` one, never a running one.
pub fn prunable(uid: &str, current: &str, jobs: &[Job], history_limit: usize) -> Vec<String> {
    let mut finished: Vec<&Job> = jobs
        .iter()
        .filter(|job| job.metadata.name.as_deref() != Some(current))
        .filter(|job| is_companion_of(job, uid) && is_finished(job))
        .collect();
    // Newest first: by completion (or creation) time, then name for stability.
    finished.sort_by(|a, b| {
        finished_at(b)
            .cmp(&finished_at(a))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    finished
        .into_iter()
        .skip(history_limit)
        .filter_map(|job| job.metadata.name.clone())
        .collect()
}

/// Labelled as this project's companion Job and owned by the Deployment.
pub fn is_companion_of(job: &Job, uid: &str) -> bool {
    let labels = job.metadata.labels.as_ref();
    let label = |key: &str| {
        labels
            .and_then(|labels| labels.get(key))
            .map(String::as_str)
    };
    label(MANAGED_BY_LABEL) == Some(LABEL_VALUE)
        && label(COMPONENT_LABEL) == Some(LABEL_VALUE)
        && job
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|owner| owner.kind == "Deployment" && owner.uid == uid)
}

/// Complete or Failed: the Job controller will not start another pod.
pub fn is_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions.iter().any(|condition| {
                matches!(condition.type_.as_str(), "Complete" | "Failed")
                    && condition.status == "True"
            })
        })
}

fn finished_at(job: &Job) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> {
    job.status
        .as_ref()
        .and_then(|status| status.completion_time.as_ref())
        .or(job.metadata.creation_timestamp.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{UID, stamped};
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use rstest::rstest;
    use serde_json::{Value, json};

    fn stamped_job_name(deployment: &Deployment) -> String {
        deployment.metadata.annotations.as_ref().unwrap()["cache-buster.io/job-name"].clone()
    }

    fn companion(name: &str, finished: Option<(&str, i64)>, owner: &str) -> Job {
        let mut job: Job = serde_json::from_value(json!({
            "metadata": {
                "name": name, "namespace": "web",
                "labels": {"app.kubernetes.io/managed-by": "cache-buster", "app.kubernetes.io/component": "cache-buster"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop", "uid": owner}],
                "creationTimestamp": "2026-11-01T00:00:00Z"
            }
        }))
        .unwrap();
        if let Some((condition, second)) = finished {
            job.status = Some(JobStatus {
                conditions: Some(vec![JobCondition {
                    type_: condition.to_owned(),
                    status: "True".to_owned(),
                    ..Default::default()
                }]),
                completion_time: Some(Time(
                    k8s_openapi::jiff::Timestamp::from_second(1_790_000_000 + second).unwrap(),
                )),
                ..Default::default()
            });
        }
        job
    }

    fn decide_default(deployment: &Deployment, jobs: &[Job]) -> Decision {
        decide(&Settings::default(), deployment, jobs, 2)
    }

    #[test]
    fn a_new_image_creates_its_job_owned_by_the_deployment() {
        let deployment = stamped("nginx:1.25");
        let Decision::Create { job, prune } = decide_default(&deployment, &[]) else {
            panic!()
        };
        assert_eq!(job.metadata.name, Some(stamped_job_name(&deployment)));
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Deployment", "shop", UID)
        );
        assert_eq!(owner.controller, None);
        assert_eq!(owner.block_owner_deletion, None);
        assert!(prune.is_empty());
        // Apart from the owner, the Job is exactly the stamped one.
        let mut stamped_job: Value = serde_json::from_str(
            &deployment.metadata.annotations.as_ref().unwrap()["cache-buster.io/job"],
        )
        .unwrap();
        stamped_job["metadata"]["ownerReferences"] =
            serde_json::to_value(job.metadata.owner_references.clone()).unwrap();
        assert_eq!(serde_json::to_value(&*job).unwrap(), stamped_job);
    }

    #[rstest]
    #[case::running(None)]
    #[case::succeeded(Some(("Complete", 0)))]
    #[case::failed(Some(("Failed", 0)))]
    fn a_job_of_that_name_is_never_created_again(#[case] state: Option<(&str, i64)>) {
        let deployment = stamped("nginx:1.25");
        let name = stamped_job_name(&deployment);
        let existing = companion(&name, state, UID);
        assert_eq!(
            decide_default(&deployment, &[existing]),
            Decision::AlreadyPresent { job: name }
        );
    }

    #[test]
    fn the_same_image_again_is_already_present() {
        let first = stamped("nginx:1.25");
        let again = stamped("docker.io/library/nginx:1.25");
        let existing = companion(&stamped_job_name(&first), Some(("Complete", 0)), UID);
        assert!(matches!(
            decide_default(&again, &[existing]),
            Decision::AlreadyPresent { .. }
        ));
    }

    #[test]
    fn finished_jobs_beyond_the_history_limit_are_pruned_newest_kept() {
        let deployment = stamped("nginx:1.26");
        let jobs = vec![
            companion("shop-cache-buster-0000000001", Some(("Complete", 1)), UID),
            companion("shop-cache-buster-0000000002", Some(("Failed", 2)), UID),
            companion("shop-cache-buster-0000000003", Some(("Complete", 3)), UID),
            companion("shop-cache-buster-0000000004", Some(("Complete", 4)), UID),
            companion("shop-cache-buster-running", None, UID),
            companion(
                "other-cache-buster-0000000000",
                Some(("Complete", 0)),
                "another-uid",
            ),
        ];
        let Decision::Create { prune, .. } = decide_default(&deployment, &jobs) else {
            panic!()
        };
        assert_eq!(
            prune,
            [
                "shop-cache-buster-0000000002",
                "shop-cache-buster-0000000001"
            ]
        );
    }

    #[rstest]
    #[case(0, 3)]
    #[case(1, 2)]
    #[case(3, 0)]
    fn the_history_limit_is_a_setting(#[case] limit: usize, #[case] pruned: usize) {
        let deployment = stamped("nginx:1.26");
        let jobs: Vec<Job> = (1..=3)
            .map(|i| companion(&format!("old-{i}"), Some(("Complete", i)), UID))
            .collect();
        let Decision::Create { prune, .. } =
            decide(&Settings::default(), &deployment, &jobs, limit)
        else {
            panic!()
        };
        assert_eq!(prune.len(), pruned);
    }

    #[test]
    fn jobs_not_labelled_as_companions_are_never_pruned() {
        let deployment = stamped("nginx:1.26");
        let mut foreign = companion("user-job", Some(("Complete", 1)), UID);
        foreign.metadata.labels = None;
        let jobs: Vec<Job> = (2..=4)
            .map(|i| companion(&format!("old-{i}"), Some(("Complete", i)), UID))
            .chain([foreign])
            .collect();
        let Decision::Create { prune, .. } = decide_default(&deployment, &jobs) else {
            panic!()
        };
        assert_eq!(prune, ["old-2"]);
    }

    #[rstest]
    #[case::job("cache-buster.io/job")]
    #[case::job_name("cache-buster.io/job-name")]
    #[case::image_hash("cache-buster.io/image-hash")]
    fn a_forged_annotation_is_refused(#[case] key: &str) {
        let mut deployment = stamped("nginx:1.25");
        let annotations = deployment.metadata.annotations.as_mut().unwrap();
        annotations.insert(key.to_owned(), r#"{"kind":"Job","spec":{"template":{"spec":{"containers":[{"name":"x","image":"evil"}]}}}}"#.to_owned());
        let Decision::Refuse { reason } = decide_default(&deployment, &[]) else {
            panic!()
        };
        assert!(
            reason.starts_with(&format!(
                "annotation {key} is not what the cache-buster policy derives"
            )),
            "{reason}"
        );
    }

    #[test]
    fn a_stamp_left_from_an_older_image_is_refused() {
        // The image changed while the policy was not running: the stamp is stale.
        let mut deployment = stamped("nginx:1.25");
        deployment
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some("nginx:1.26".into());
        assert!(matches!(
            decide_default(&deployment, &[]),
            Decision::Refuse { .. }
        ));
    }

    #[test]
    fn a_deployment_the_policy_would_reject_is_refused() {
        let mut deployment = stamped("nginx:1.25");
        deployment
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("cache-buster.io/provider".into(), "akamai".into());
        let Decision::Refuse { reason } = decide_default(&deployment, &[]) else {
            panic!()
        };
        assert!(
            reason.starts_with(
                "the policy would reject this Deployment: annotation cache-buster.io/provider"
            ),
            "{reason}"
        );
    }

    #[test]
    fn a_deployment_without_the_label_is_skipped() {
        let mut deployment = stamped("nginx:1.25");
        deployment
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove("cache-buster.io/site");
        assert_eq!(
            decide_default(&deployment, &[]),
            Decision::Skip(SkipReason::NotLabelled)
        );
    }

    #[test]
    fn a_deployment_being_deleted_is_skipped() {
        let mut deployment = stamped("nginx:1.25");
        deployment.metadata.deletion_timestamp =
            Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(
            decide_default(&deployment, &[]),
            Decision::Skip(SkipReason::BeingDeleted)
        );
    }

    #[test]
    fn a_labelled_deployment_not_yet_stamped_is_skipped() {
        let mut deployment = stamped("nginx:1.25");
        deployment
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove("cache-buster.io/job");
        assert_eq!(
            decide_default(&deployment, &[]),
            Decision::Skip(SkipReason::NotStamped)
        );
    }

    #[test]
    fn the_launcher_uses_the_same_settings_as_the_policy() {
        let deployment = stamped("nginx:1.25");
        let other = Settings {
            backoff_limit: 5,
            ..Settings::default()
        };
        assert!(matches!(
            decide(&other, &deployment, &[], 2),
            Decision::Refuse { .. }
        ));
    }
}
