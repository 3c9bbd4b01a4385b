use super::*;
use crate::launcher::cache::JobOnTheWire;
use crate::test_support::{UID, stamped};
use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use rstest::rstest;
use serde_json::{Value, json};

/// The reconciliation runs at `T + NOW`; Jobs are created at `T + n`.
const T: i64 = 1_790_000_000;
const NOW: i64 = 10_000;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(T + second).unwrap()
}

#[derive(Clone, Copy)]
enum State {
    Waiting,
    /// Its rollout done, its purge container running (a Ready pod).
    Purging,
    /// Its pod just succeeded, not yet counted (`uncountedTerminatedPods`).
    JustPurged,
    Complete(i64),
    Failed(i64),
}
use State::*;

/// `deployment` with its container's image changed (and its stamp not).
fn running(mut deployment: Deployment, image: &str) -> Deployment {
    if let Some(container) = deployment
        .spec
        .as_mut()
        .and_then(|spec| spec.template.spec.as_mut())
        .and_then(|pod| pod.containers.first_mut())
    {
        container.image = Some(image.into());
    }
    deployment
}

fn stamped_job_name(deployment: &Deployment) -> String {
    deployment.metadata.annotations.as_ref().unwrap()["cache-buster.io/job-name"].clone()
}

/// The companion Job the launcher would have created for `deployment`,
/// created at second `created`, in `state`.
fn job_of(deployment: &Deployment, created: i64, state: State) -> CachedJob {
    companion(&stamped_job_name(deployment), created, state, UID)
}

/// A Job as the API server would send it, decoded as the cache does.
fn companion(name: &str, created: i64, state: State, owner: &str) -> CachedJob {
    let mut job: JobOnTheWire = serde_json::from_value(json!({
        "metadata": {
            "name": name, "namespace": "web", "uid": format!("uid-{name}-{created}"),
            "labels": {"app.kubernetes.io/managed-by": "cache-buster", "app.kubernetes.io/component": "cache-buster",
                       "cache-buster.io/image-hash": name.rsplit('-').next().unwrap()},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop", "uid": owner}],
        }
    }))
    .unwrap();
    job.metadata.creation_timestamp = Some(Time(at(created)));
    let finished = |type_: &str, second: i64, reason: Option<&str>| {
        Some(JobStatus {
            conditions: Some(vec![JobCondition {
                type_: type_.to_owned(),
                status: "True".to_owned(),
                reason: reason.map(str::to_owned),
                message: reason.map(|_| "Job has reached the specified backoff limit".to_owned()),
                last_transition_time: Some(Time(at(second))),
                ..Default::default()
            }]),
            completion_time: (type_ == "Complete").then(|| Time(at(second))),
            ..Default::default()
        })
    };
    job.status = match state {
        Waiting => Some(JobStatus {
            active: Some(1),
            ready: Some(0),
            ..Default::default()
        }),
        Purging => Some(JobStatus {
            active: Some(1),
            ready: Some(1),
            ..Default::default()
        }),
        JustPurged => Some(JobStatus {
            active: Some(0),
            ready: Some(0),
            uncounted_terminated_pods: Some(k8s_openapi::api::batch::v1::UncountedTerminatedPods {
                succeeded: Some(vec!["pod-uid".to_owned()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        Complete(second) => finished("Complete", second, None),
        Failed(second) => finished("Failed", second, Some("BackoffLimitExceeded")),
    };
    CachedJob::from(job)
}

fn decide_with(deployment: &Deployment, jobs: &[CachedJob], history_limit: usize) -> Decision {
    decide(
        &Settings::default(),
        deployment,
        jobs,
        history_limit,
        at(NOW),
    )
}

fn plan(deployment: &Deployment, jobs: &[CachedJob]) -> Plan {
    match decide_with(deployment, jobs, 2) {
        Decision::Reconcile(plan) => plan,
        other => panic!("expected a plan, got {other:?}"),
    }
}

/// What happens to the stamped Job, in one word, for the tables.
fn verdict(plan: &Plan) -> &'static str {
    match plan.stamped {
        StampedJob::Create(_) => "create",
        StampedJob::Rerun { .. } => "rerun",
        StampedJob::Keep => "keep",
    }
}

#[test]
fn a_new_image_creates_its_job_owned_by_the_deployment() {
    let deployment = stamped("nginx:1.25");
    let plan = plan(&deployment, &[]);
    let StampedJob::Create(job) = plan.stamped else {
        panic!("{plan:?}")
    };
    assert_eq!(job.metadata.name, Some(stamped_job_name(&deployment)));
    assert_eq!(plan.job_name, stamped_job_name(&deployment));
    assert_eq!(plan.image, "docker.io/library/nginx:1.25");
    assert_eq!(plan.providers, [Provider::Cloudflare]);
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("Deployment", "shop", UID)
    );
    assert_eq!(owner.controller, None);
    assert_eq!(owner.block_owner_deletion, None);
    assert!(plan.prune.is_empty() && plan.cancel.is_empty() && plan.outcomes.is_empty());
    // Apart from the owner, the Job is exactly the stamped one.
    let mut stamped_job: Value = serde_json::from_str(
        &deployment.metadata.annotations.as_ref().unwrap()["cache-buster.io/job"],
    )
    .unwrap();
    stamped_job["metadata"]["ownerReferences"] =
        serde_json::to_value(job.metadata.owner_references.clone()).unwrap();
    assert_eq!(serde_json::to_value(&*job).unwrap(), stamped_job);
}

/// Image A, then B, then A again (a `git revert` under Flux), and the
/// cases around it. Jobs are (image, created at, state); the stamp is the
/// last image of the history.
#[rstest]
#[case::first_rollout(&[], "A", "create", &[])]
#[case::same_image_again_a_a(&[("A", 1, Complete(5))], "A", "keep", &[])]
#[case::still_waiting_is_kept(&[("A", 1, Waiting)], "A", "keep", &[])]
#[case::a_b_a_with_b_purged(&[("A", 1, Complete(5)), ("B", 10, Complete(15))], "A", "rerun", &[])]
#[case::created_in_the_same_second_is_not_newer(&[("A", 1, Complete(1)), ("B", 1, Complete(1))], "A", "keep", &[])]
#[case::a_b_a_with_b_still_waiting(&[("A", 1, Complete(5)), ("B", 10, Waiting)], "A", "rerun", &["B"])]
#[case::a_b_a_with_a_failed(&[("A", 1, Failed(5)), ("B", 10, Complete(15))], "A", "rerun", &[])]
#[case::a_b_a_b(&[("A", 20, Complete(25)), ("B", 10, Complete(15))], "B", "rerun", &[])]
#[case::resync_after_the_rerun(&[("A", 20, Complete(25)), ("B", 10, Complete(15))], "A", "keep", &[])]
#[case::restart_after_the_delete_of_a_rerun(&[("B", 10, Complete(15))], "A", "create", &[])]
#[case::restart_after_the_create_of_a_rerun(&[("A", 20, Waiting), ("B", 10, Waiting)], "A", "keep", &["B"])]
#[case::pruned_history(&[("B", 10, Complete(15))], "A", "create", &[])]
#[case::superseded_while_waiting(&[("A", 1, Waiting)], "B", "create", &["A"])]
#[case::superseded_while_purging_purges_on(&[("A", 1, Purging)], "B", "create", &[])]
#[case::superseded_as_its_purge_ends(&[("A", 1, JustPurged)], "B", "create", &[])]
#[case::a_b_a_with_b_purging(&[("A", 1, Complete(5)), ("B", 10, Purging)], "A", "rerun", &[])]
#[case::finished_jobs_are_never_cancelled(&[("A", 1, Complete(5)), ("C", 2, Failed(6))], "B", "create", &[])]
#[case::a_deleted_failed_job_is_created_again(&[("B", 10, Complete(15))], "A", "create", &[])]
fn every_rollout_to_a_different_image_purges_once(
    #[case] history: &[(&str, i64, State)],
    #[case] stamp: &str,
    #[case] expected: &str,
    #[case] cancelled: &[&str],
) {
    let image = |letter: &str| match letter {
        "A" => "nginx:1.25",
        "B" => "nginx:1.26",
        _ => "nginx:1.27",
    };
    let jobs: Vec<CachedJob> = history
        .iter()
        .map(|(letter, created, state)| job_of(&stamped(image(letter)), *created, *state))
        .collect();
    let deployment = stamped(image(stamp));
    let plan = plan(&deployment, &jobs);
    assert_eq!(verdict(&plan), expected, "{plan:?}");
    let cancelled: Vec<String> = cancelled
        .iter()
        .map(|letter| stamped_job_name(&stamped(image(letter))))
        .collect();
    assert_eq!(plan.cancel, cancelled);
    if let StampedJob::Rerun { job, replaces } = &plan.stamped {
        assert_eq!(job.metadata.name, Some(stamped_job_name(&deployment)));
        assert!(job.metadata.owner_references.is_some());
        let finished = jobs
            .iter()
            .find(|old| old.metadata.name == job.metadata.name);
        assert_eq!(
            Some(replaces),
            finished.and_then(|old| old.metadata.uid.as_ref())
        );
    }
}

#[test]
fn a_failed_job_is_not_retried_by_a_resync_only_by_deleting_it() {
    let deployment = stamped("nginx:1.25");
    let failed = job_of(&deployment, 1, Failed(5));
    assert_eq!(verdict(&plan(&deployment, &[failed])), "keep");
    assert_eq!(verdict(&plan(&deployment, &[])), "create");
}

#[test]
fn companions_of_another_deployment_are_not_newer_and_not_cancelled() {
    let deployment = stamped("nginx:1.25");
    let other = companion("blog-cache-buster-0000000009", 50, Waiting, "another-uid");
    let plan = plan(&deployment, &[job_of(&deployment, 1, Complete(5)), other]);
    assert_eq!(verdict(&plan), "keep");
    assert!(plan.cancel.is_empty());
}

#[test]
fn outcomes_are_reported_for_recently_finished_jobs() {
    let a = stamped("nginx:1.25");
    let b = stamped("nginx:1.26");
    let c = stamped("nginx:1.27");
    let jobs = [
        job_of(&a, NOW - 100, Complete(NOW - 58)),
        job_of(&b, NOW - 50, Failed(NOW - 10)),
        // Finished longer ago than Events live: reported back then.
        job_of(&c, 1, Complete(5)),
    ];
    let plan = plan(&b, &jobs);
    let outcomes: Vec<(String, JobResult)> = plan
        .outcomes
        .iter()
        .map(|outcome| (outcome.job.clone(), outcome.result.clone()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (
                stamped_job_name(&a),
                JobResult::Purged { seconds: Some(42) }
            ),
            (
                stamped_job_name(&b),
                JobResult::Failed {
                    reason: "BackoffLimitExceeded: Job has reached the specified backoff limit"
                        .to_owned()
                }
            ),
        ]
    );
    let first = &plan.outcomes[0];
    assert_eq!(first.image_hash, plan_hash(&a));
    assert_eq!(
        first.job_uid,
        format!("uid-{}-{}", stamped_job_name(&a), NOW - 100)
    );
}

fn plan_hash(deployment: &Deployment) -> String {
    deployment.metadata.annotations.as_ref().unwrap()["cache-buster.io/image-hash"].clone()
}

#[test]
fn a_job_about_to_be_rerun_is_not_reported_again() {
    let a = stamped("nginx:1.25");
    let b = stamped("nginx:1.26");
    let jobs = [
        job_of(&a, NOW - 100, Complete(NOW - 90)),
        job_of(&b, NOW - 50, Complete(NOW - 40)),
    ];
    let plan = plan(&a, &jobs);
    assert_eq!(verdict(&plan), "rerun");
    assert_eq!(
        plan.outcomes
            .iter()
            .map(|o| o.job.clone())
            .collect::<Vec<_>>(),
        [stamped_job_name(&b)]
    );
}

#[test]
fn waiting_counts_unfinished_companion_jobs() {
    let a = stamped("nginx:1.25");
    let mut foreign = companion("user-job", 1, Waiting, UID);
    foreign.companion = false;
    let jobs = [
        job_of(&a, 1, Waiting),
        job_of(&stamped("nginx:1.26"), 2, Complete(3)),
        companion("blog-cache-buster-0000000009", 3, Waiting, "another-uid"),
        foreign,
    ];
    assert_eq!(waiting(&jobs), 2);
}

#[test]
fn finished_jobs_beyond_the_history_limit_are_pruned_newest_kept() {
    let deployment = stamped("nginx:1.26");
    let jobs = vec![
        companion("shop-cache-buster-0000000001", 1, Complete(1), UID),
        companion("shop-cache-buster-0000000002", 2, Failed(2), UID),
        companion("shop-cache-buster-0000000003", 3, Complete(3), UID),
        companion("shop-cache-buster-0000000004", 4, Complete(4), UID),
        companion(
            "other-cache-buster-0000000000",
            0,
            Complete(0),
            "another-uid",
        ),
    ];
    assert_eq!(
        plan(&deployment, &jobs).prune,
        [
            "shop-cache-buster-0000000002",
            "shop-cache-buster-0000000001"
        ]
    );
}

#[test]
fn the_stamped_job_is_never_pruned_and_a_waiting_one_is_cancelled_not_pruned() {
    let deployment = stamped("nginx:1.26");
    let jobs = vec![
        job_of(&deployment, 1, Complete(2)),
        companion("shop-cache-buster-running", 3, Waiting, UID),
    ];
    let plan = decide_with(&deployment, &jobs, 0);
    let Decision::Reconcile(plan) = plan else {
        panic!()
    };
    assert!(plan.prune.is_empty(), "{plan:?}");
    assert_eq!(plan.cancel, ["shop-cache-buster-running"]);
}

#[rstest]
#[case(0, 3)]
#[case(1, 2)]
#[case(3, 0)]
fn the_history_limit_is_a_setting(#[case] limit: usize, #[case] pruned: usize) {
    let deployment = stamped("nginx:1.26");
    let jobs: Vec<CachedJob> = (1..=3)
        .map(|i| companion(&format!("old-{i}"), i, Complete(i), UID))
        .collect();
    let Decision::Reconcile(plan) = decide_with(&deployment, &jobs, limit) else {
        panic!()
    };
    assert_eq!(plan.prune.len(), pruned);
}

#[test]
fn a_rollback_to_a_pruned_image_creates_its_job_anew() {
    // History limit 0: A's finished Job went when B's was created.
    let a = stamped("nginx:1.25");
    let b = stamped("nginx:1.26");
    let Decision::Reconcile(first) = decide_with(&b, &[job_of(&a, 1, Complete(2))], 0) else {
        panic!()
    };
    assert_eq!(first.prune, [stamped_job_name(&a)]);
    let Decision::Reconcile(back) = decide_with(&a, &[job_of(&b, 3, Complete(4))], 0) else {
        panic!()
    };
    assert_eq!(verdict(&back), "create");
}

#[test]
fn jobs_not_labelled_as_companions_are_never_pruned_nor_cancelled() {
    let deployment = stamped("nginx:1.26");
    let mut foreign = companion("user-job", 1, Complete(1), UID);
    foreign.companion = false;
    let mut foreign_waiting = companion("user-job-2", 1, Waiting, UID);
    foreign_waiting.companion = false;
    let jobs: Vec<CachedJob> = (2..=4)
        .map(|i| companion(&format!("old-{i}"), i, Complete(i), UID))
        .chain([foreign, foreign_waiting])
        .collect();
    let plan = plan(&deployment, &jobs);
    assert_eq!(plan.prune, ["old-2"]);
    assert!(plan.cancel.is_empty());
}

#[rstest]
#[case::job("cache-buster.io/job")]
#[case::job_name("cache-buster.io/job-name")]
#[case::image_hash("cache-buster.io/image-hash")]
fn a_forged_annotation_is_refused(#[case] key: &str) {
    let mut deployment = stamped("nginx:1.25");
    let annotations = deployment.metadata.annotations.as_mut().unwrap();
    annotations.insert(key.to_owned(), r#"{"kind":"Job","spec":{"template":{"spec":{"containers":[{"name":"x","image":"evil"}]}}}}"#.to_owned());
    let Decision::Refuse { reason } = decide_with(&deployment, &[], 2) else {
        panic!()
    };
    assert!(
        reason.starts_with(&format!(
            "annotation {key} is not what the cache-buster policy derives"
        )),
        "{reason}"
    );
}

/// Stamped by a policy with backoffLimit 4, read by a launcher with the
/// default 3: the Event says it is the settings, and which.
#[test]
fn a_stamp_made_with_other_settings_is_refused_naming_the_setting() {
    let deployment = stamped("nginx:1.25");
    let policy_settings = Settings {
        backoff_limit: 4,
        ..Settings::default()
    };
    let mut restamped = deployment.clone();
    let (stamp, _) =
        cache_buster::deployment::derive_stamp(&policy_settings, &restamped, Default::default())
            .unwrap();
    let annotations = restamped.metadata.annotations.as_mut().unwrap();
    for (key, value) in stamp.annotations(&policy_settings).unwrap() {
        annotations.insert(key, value);
    }
    let Decision::Refuse { reason } = decide_with(&restamped, &[], 2) else {
        panic!()
    };
    assert_eq!(
        reason,
        "annotation cache-buster.io/job is not what the cache-buster policy derives from this Deployment; \
         no Job is created from it: it differs only where settings decide: spec.backoffLimit (4 in the stamp, 3 here). \
         The stamp was made with other settings (backoffLimit) than the launcher's: it predates a change of \
         the settings (the next rollout is stamped anew), or the policy and the launcher read different settings \
         (see the launcher's --policy and --settings)"
    );
}

/// Right after a settings change the policy-server may still stamp with
/// the settings before it: such a stamp is the policy's own, and its Job
/// is created. Two changes back it is not.
#[test]
fn a_stamp_of_the_settings_before_a_change_is_still_the_policys() {
    let before = Settings::default();
    let after = Settings {
        backoff_limit: 5,
        ..Settings::default()
    };
    let deployment = stamped("nginx:1.25");
    let decision = decide_any(&[&after, &before], &deployment, &[], 2, at(NOW));
    let Decision::Reconcile(plan) = decision else {
        panic!("{decision:?}")
    };
    assert_eq!(plan.job_name, stamped_job_name(&deployment));
    let StampedJob::Create(job) = plan.stamped else {
        panic!("{:?}", plan.stamped)
    };
    assert_eq!(job.spec.unwrap().backoff_limit, Some(3));

    let Decision::Refuse { reason } = decide_any(&[&after], &deployment, &[], 2, at(NOW)) else {
        panic!()
    };
    assert!(
        reason.contains("spec.backoffLimit (3 in the stamp, 5 here)"),
        "{reason}"
    );
    // Its Job was created when the stamp was the derivation: after
    // later edits, nothing is created from it, and nothing is said.
    let created = job_of(&deployment, 1, Complete(2));
    assert_eq!(
        decide_any(
            &[&after],
            &deployment,
            std::slice::from_ref(&created),
            2,
            at(NOW)
        ),
        Decision::Skip(SkipReason::JobOfOtherSettingsExists)
    );
    // A stamp for another image than the one it runs is refused even so.
    let stale = running(deployment.clone(), "nginx:1.26");
    assert!(matches!(
        decide_any(&[&after, &before], &stale, &[created], 2, at(NOW)),
        Decision::Refuse { .. }
    ));
}

#[test]
fn a_stamp_left_from_an_older_image_is_refused() {
    // The image changed while the policy was not running: the stamp is stale.
    let deployment = running(stamped("nginx:1.25"), "nginx:1.26");
    assert!(matches!(
        decide_with(&deployment, &[], 2),
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
        .insert("cache-buster.io/provider".into(), "keycdn".into());
    let Decision::Refuse { reason } = decide_with(&deployment, &[], 2) else {
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
        decide_with(&deployment, &[], 2),
        Decision::Skip(SkipReason::NotLabelled)
    );
}

#[test]
fn a_deployment_being_deleted_is_skipped() {
    let mut deployment = stamped("nginx:1.25");
    deployment.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
    assert_eq!(
        decide_with(&deployment, &[], 2),
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
        decide_with(&deployment, &[], 2),
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
        decide(&other, &deployment, &[], 2, at(NOW)),
        Decision::Refuse { .. }
    ));
}
