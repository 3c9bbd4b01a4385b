//! The reconcile decision, as a pure function: a Deployment, the companion
//! Jobs that exist and the settings in; what to do out. No Kubernetes call
//! happens here (see `cluster` for those).

use crate::launcher::cache::{CachedJob, carried_in_cache};
use crate::launcher::difference;
use cache_buster::deployment::{
    self as policy, Participation, RequestContext, participation, stamp_keys,
};
use cache_buster::providers::Provider;
use cache_buster::settings::Settings;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;

/// What the launcher does for one Deployment.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing to do.
    Skip(SkipReason),
    /// The stamped Job is not what the policy derives from this Deployment
    /// (written while the policy was off, or by hand): nothing is created.
    Refuse { reason: String },
    /// The stamp is the policy's own: bring its companion Jobs in line.
    Reconcile(Plan),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Being deleted: its Jobs go with it.
    BeingDeleted,
    /// No site label: it does not take part.
    NotLabelled,
    /// Labelled but not stamped (the policy has not seen it yet).
    NotStamped,
    /// Stamped under other settings, for the image it runs, and the Job
    /// that stamp names exists: nothing would be created from it.
    JobOfOtherSettingsExists,
}

/// What to do with the Job the Deployment's stamp names.
#[derive(Debug, Clone, PartialEq)]
pub enum StampedJob {
    /// No Job of that name exists: create it (owned by the Deployment).
    Create(Box<Job>),
    /// It exists and has finished, but a companion Job for another image was
    /// created after it (a rollback, A→B→A): the cache holds that image's
    /// content now, so delete the finished Job (the one of uid `replaces`,
    /// a precondition of the delete) and create it again.
    Rerun { job: Box<Job>, replaces: String },
    /// It exists and is the newest of the Deployment's companion Jobs,
    /// running or finished: it is the record that this rollout is handled.
    Keep,
}

/// Everything one reconciliation does, in the order it does it: the stamped
/// Job first, so that a launcher stopped half-way still finds, in the API
/// server, every companion Job that says a purge is owed.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub job_name: String,
    /// The canonical image of the stamp, for Events.
    pub image: String,
    pub image_hash: String,
    /// The providers, in the order the purge clears them (layers).
    pub providers: Vec<Provider>,
    pub stamped: StampedJob,
    /// Companion Jobs still waiting for a rollout the Deployment has moved
    /// past: deleted, so they never purge for the wrong rollout. One whose
    /// purge has begun (its rollout did complete) is left to finish and be
    /// reported.
    pub cancel: Vec<String>,
    /// Finished companion Jobs beyond the history limit.
    pub prune: Vec<String>,
    /// Finished companion Jobs whose outcome is recent enough to report.
    pub outcomes: Vec<Outcome>,
}

/// How a companion Job ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub job: String,
    pub job_uid: String,
    pub image_hash: String,
    pub result: JobResult,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JobResult {
    /// Complete, this many seconds after the Job was created.
    Purged { seconds: Option<i64> },
    /// Failed, with the Job controller's reason (BackoffLimitExceeded,
    /// DeadlineExceeded) and message.
    Failed { reason: String },
}

/// Outcomes older than this are not reported (again): the API server keeps
/// Events for an hour by default (`--event-ttl`), so an older outcome was
/// reported before and its Event has expired, and a restart must not
/// announce it anew.
pub const OUTCOME_WINDOW_SECONDS: i64 = 3600;

/// `decide` with each of the settings a stamp may have been made with,
/// newest first (see `settings_source::Accepted`): the first under which the
/// stamp is the policy's own wins; otherwise what the newest decides.
pub fn decide_any(
    candidates: &[&Settings],
    deployment: &Deployment,
    jobs: &[CachedJob],
    history_limit: usize,
    now: Timestamp,
) -> Decision {
    let mut newest = None;
    for settings in candidates {
        match decide(settings, deployment, jobs, history_limit, now) {
            reconcile @ Decision::Reconcile(_) => return reconcile,
            other => {
                newest.get_or_insert(other);
            }
        }
    }
    newest.unwrap_or(Decision::Skip(SkipReason::NotLabelled))
}

pub fn decide(
    settings: &Settings,
    deployment: &Deployment,
    jobs: &[CachedJob],
    history_limit: usize,
    now: Timestamp,
) -> Decision {
    let metadata = &deployment.metadata;
    if metadata.deletion_timestamp.is_some() {
        return Decision::Skip(SkipReason::BeingDeleted);
    }
    if participation(settings, metadata) != Participation::Site {
        return Decision::Skip(SkipReason::NotLabelled);
    }
    let [_, name_key, job_key] = stamp_keys(settings);
    let annotations = metadata.annotations.as_ref();
    if !annotations.is_some_and(|annotations| annotations.contains_key(&job_key)) {
        return Decision::Skip(SkipReason::NotStamped);
    }
    let (Some(name), Some(uid)) = (metadata.name.as_deref(), metadata.uid.as_deref()) else {
        return Decision::Refuse {
            reason: "the Deployment has no name or uid to own a Job".to_owned(),
        };
    };

    // The policy's own decision: the launcher goes on only where the policy
    // would leave the Deployment as it is.
    let carries = carried_in_cache(annotations);
    let stamp = match policy::decide(settings, deployment, RequestContext::default(), &carries) {
        Ok(policy::Decision::UpToDate { stamp, .. }) => stamp,
        Ok(policy::Decision::Stamp { stamp, .. }) => {
            // A stamp of the settings before an edit, for this very image,
            // whose Job was created then: no Warning, since nothing is
            // created from it (a Job is only ever created from a stamp
            // that is exactly the derivation).
            let names_its_job = annotations
                .and_then(|annotations| annotations.get(&name_key))
                .is_some_and(|name| *name == stamp.job_name);
            let job_exists = jobs.iter().any(|job| {
                job.metadata.name.as_deref() == Some(stamp.job_name.as_str())
                    && is_companion_of(job, uid)
            });
            if names_its_job && job_exists {
                return Decision::Skip(SkipReason::JobOfOtherSettingsExists);
            }
            let annotations_derived = match stamp.annotations(settings) {
                Ok(derived) => derived,
                Err(error) => {
                    return Decision::Refuse {
                        reason: format!("the stamped Job does not encode: {error}"),
                    };
                }
            };
            let [_, _, job_derived] = &annotations_derived;
            let (key, derived) = annotations_derived
                .iter()
                .find(|(key, value)| !carries(key, value))
                .unwrap_or(job_derived)
                .clone();
            let carried = annotations
                .and_then(|annotations| annotations.get(&key))
                .cloned()
                .unwrap_or_default();
            let why = if key == job_key {
                difference::explain(&carried, &derived)
            } else {
                format!(
                    "it is {carried:?} where the policy derives {derived:?}, so the stamp was written while the policy was not running, or by another version of it"
                )
            };
            return Decision::Refuse {
                reason: format!(
                    "annotation {key} is not what the cache-buster policy derives from this Deployment; \
                     no Job is created from it: {why}"
                ),
            };
        }
        Err(error) => {
            return Decision::Refuse {
                reason: format!("the policy would reject this Deployment: {error}"),
            };
        }
    };

    let companions: Vec<&CachedJob> = jobs
        .iter()
        .filter(|job| is_companion_of(job, uid))
        .collect();
    let is_stamped =
        |job: &CachedJob| job.metadata.name.as_deref() == Some(stamp.job_name.as_str());
    let existing = jobs.iter().find(|job| is_stamped(job));
    let rerun = existing.filter(|job| is_finished(job) && has_newer(job, &companions));
    let stamped = match (existing, rerun) {
        (Some(_), None) => StampedJob::Keep,
        (_, rerun) => {
            let job = Box::new(owned_job(stamp.job.clone(), name, uid));
            match rerun {
                Some(finished) => StampedJob::Rerun {
                    job,
                    replaces: finished.metadata.uid.clone().unwrap_or_default(),
                },
                None => StampedJob::Create(job),
            }
        }
    };
    let cancel = companions
        .iter()
        .filter(|job| !is_stamped(job) && !is_finished(job) && !job.purging)
        .filter_map(|job| job.metadata.name.clone())
        .collect();
    let prune = prunable(uid, &stamp.job_name, jobs, history_limit);
    let outcomes = companions
        .iter()
        .filter(|job| !matches!(stamped, StampedJob::Rerun { .. }) || !is_stamped(job))
        .filter_map(|job| outcome(job, now))
        .collect();
    Decision::Reconcile(Plan {
        job_name: stamp.job_name,
        image: stamp.image,
        image_hash: stamp.image_hash,
        providers: stamp.providers,
        stamped,
        cancel,
        prune,
        outcomes,
    })
}

/// The stamped Job, owned by the Deployment.
fn owned_job(mut job: Job, name: &str, uid: &str) -> Job {
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
    job
}

/// Whether another companion Job of the Deployment was created after `job`:
/// its image was rolled out (or began to be) since `job` purged.
fn has_newer(job: &CachedJob, companions: &[&CachedJob]) -> bool {
    let created = job.metadata.creation_timestamp.as_ref();
    companions.iter().any(|other| {
        other.metadata.name != job.metadata.name
            && other.metadata.creation_timestamp.as_ref() > created
    })
}

/// A finished Job's outcome, if it finished within the reporting window.
fn outcome(job: &CachedJob, now: Timestamp) -> Option<Outcome> {
    let end = job.end.as_ref()?;
    let finished = job.completion_time.as_ref().or(end.at.as_ref())?;
    if now.as_second() - finished.0.as_second() > OUTCOME_WINDOW_SECONDS {
        return None;
    }
    let result = if end.complete {
        let seconds = job
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|created| finished.0.as_second() - created.0.as_second());
        JobResult::Purged { seconds }
    } else {
        JobResult::Failed {
            reason: end.reason.clone(),
        }
    };
    Some(Outcome {
        job: job.metadata.name.clone()?,
        job_uid: job.metadata.uid.clone()?,
        image_hash: job.image_hash.clone().unwrap_or_default(),
        result,
    })
}

/// Companion Jobs still waiting (not finished), for the gauge.
pub fn waiting<'a>(jobs: impl IntoIterator<Item = &'a CachedJob>) -> usize {
    jobs.into_iter()
        .filter(|job| is_companion(job) && !is_finished(job))
        .count()
}

/// Finished companion Jobs of the Deployment `uid` beyond the newest
/// `history_limit`, never the `current` one, never a running one.
pub fn prunable(uid: &str, current: &str, jobs: &[CachedJob], history_limit: usize) -> Vec<String> {
    let mut finished: Vec<&CachedJob> = jobs
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

/// Labelled as this project's companion Job.
fn is_companion(job: &CachedJob) -> bool {
    job.companion
}

/// Labelled as this project's companion Job and owned by the Deployment.
pub fn is_companion_of(job: &CachedJob, uid: &str) -> bool {
    is_companion(job)
        && job
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|owner| owner.kind == "Deployment" && owner.uid == uid)
}

/// Complete or Failed: the Job controller will not start another pod.
pub fn is_finished(job: &CachedJob) -> bool {
    job.end.is_some()
}

fn finished_at(job: &CachedJob) -> Option<&Time> {
    job.completion_time
        .as_ref()
        .or(job.metadata.creation_timestamp.as_ref())
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
