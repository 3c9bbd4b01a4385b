//! The Kubernetes side of a reconciliation: list the companion Jobs, then do
//! what `plan::decide` said, treating the API's answers as Kubernetes gives
//! them (AlreadyExists on create and NotFound on delete are successes), and
//! record each outcome as an Event on the Deployment.

use crate::launcher::cache::{CachedJob, SiteDeployment};
use crate::launcher::events::{
    REASON_CANCELLED, REASON_CREATED, REASON_PURGE_FAILED, REASON_PURGED, REASON_REFUSED, event,
    failure_detail, layer_results, purged,
};
use crate::launcher::leader::Leadership;
use crate::launcher::metrics::{Metrics, NamespaceLabels, ProviderLabels, PurgeResult};
use crate::launcher::plan::{
    Decision, JobResult, Outcome, Plan, StampedJob, decide_any, is_companion_of, waiting,
};
use crate::launcher::reported::Reported;
use crate::launcher::settings_source::{Accepted, SettingsState};
use cache_buster::keys;
use cache_buster::settings::Settings;
use cache_buster_purge::outcome::Outcome as PurgeOutcome;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, warn};

/// A refused Deployment is looked at again after this long (the policy may
/// have restamped it meanwhile; watch events usually come first).
const RECHECK: Duration = Duration::from_secs(300);
pub struct Context {
    pub client: Client,
    /// The settings, as their source last gave them (a watch of the
    /// ClusterAdmissionPolicy, or a file).
    pub settings: tokio::sync::watch::Receiver<SettingsState>,
    pub history_limit: usize,
    pub metrics: Metrics,
    /// The companion Jobs, as the launcher's watch last saw them: one cache
    /// per watched scope. A reconciliation reads them here instead of
    /// listing a namespace's Jobs each time (with 1,000 sites in one
    /// namespace that was 1,000 Jobs decoded per reconciliation).
    pub jobs: Vec<Store<CachedJob>>,
    /// Names of the Events already recorded (or found recorded), so that a
    /// resync does not ask the API server again, for as long as the API
    /// server keeps Events (`reported`). Event names are derived from what
    /// they report, so after a restart the API server's AlreadyExists says
    /// the same.
    reported: Mutex<Reported>,
    /// Whether this replica may act (it holds the Lease).
    pub leadership: Arc<Leadership>,
}

impl Context {
    pub fn new(
        client: Client,
        settings: tokio::sync::watch::Receiver<SettingsState>,
        history_limit: usize,
        metrics: Metrics,
        jobs: Vec<Store<CachedJob>>,
        leadership: Arc<Leadership>,
    ) -> Self {
        Context {
            client,
            settings,
            history_limit,
            metrics,
            jobs,
            reported: Mutex::new(Reported::new(std::time::Instant::now())),
            leadership,
        }
    }

    /// Before each write: only the leader writes, and only while its Lease
    /// is fresh.
    fn may_write(&self) -> bool {
        self.leadership.may_act(Timestamp::now())
    }

    /// The settings to derive with; none before the first valid ones (the
    /// controllers start after them).
    fn accepted(&self) -> Option<Accepted> {
        match &*self.settings.borrow() {
            SettingsState::Ready(accepted) => Some(accepted.clone()),
            SettingsState::Waiting | SettingsState::Invalid(_) => None,
        }
    }

    /// Whether Event `name` of `namespace` was recorded (Events are
    /// namespaced: two sites of one name in two namespaces have Events of
    /// one name each).
    fn is_reported(&self, namespace: &str, name: &str) -> bool {
        self.reported
            .lock()
            .map(|reported| {
                reported.contains(&format!("{namespace}/{name}"), std::time::Instant::now())
            })
            .unwrap_or(false)
    }

    fn mark_reported(&self, namespace: &str, name: &str) {
        if let Ok(mut reported) = self.reported.lock() {
            reported.insert(format!("{namespace}/{name}"), std::time::Instant::now());
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Deployment {0} has no namespace")]
    NoNamespace(String),
    /// Deleted while it was reconciled: its deletion wakes it again.
    #[error("Deployment {0} is gone")]
    Gone(String),
    /// This replica stood down in the middle of a reconciliation: the
    /// leader does the rest (it reconciles every site when it takes over).
    #[error("this replica no longer holds the Lease")]
    NotLeader,
    #[error("{action} failed: {source}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
}

fn api_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Api { action, source }
}

fn is_status(error: &kube::Error, code: u16, reason: &str) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code && status.reason == reason)
}

/// One Deployment's reconciliation: the API calls of one plan.
struct Reconciliation<'a> {
    context: &'a Context,
    settings: &'a Settings,
    deployment: &'a Deployment,
    name: String,
    namespace: String,
    jobs: Api<Job>,
}

/// One reconciliation of one Deployment.
pub async fn reconcile(site: Arc<SiteDeployment>, context: Arc<Context>) -> Result<Action, Error> {
    let Some(accepted) = context.accepted() else {
        return Ok(Action::requeue(Duration::from_secs(5)));
    };
    if !context.may_write() {
        // A standby: its caches stay warm; becoming the leader reconciles
        // every site.
        return Ok(Action::await_change());
    }
    let settings = accepted.current.as_ref();
    let name = site.name_any();
    let namespace = site
        .namespace()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let jobs: Api<Job> = Api::namespaced(context.client.clone(), &namespace);
    let in_namespace: Vec<Arc<CachedJob>> = context
        .jobs
        .iter()
        .flat_map(|store| {
            store.state_filter(|job| job.metadata.namespace.as_deref() == Some(&namespace))
        })
        .collect();
    context
        .metrics
        .jobs_waiting
        .get_or_create(&NamespaceLabels {
            namespace: namespace.clone(),
        })
        .set(i64::try_from(waiting(in_namespace.iter().map(AsRef::as_ref))).unwrap_or(i64::MAX));
    // Only this Deployment's Jobs (and any Job of the stamped name) matter
    // to its plan: the others are not copied.
    let uid = site.uid().unwrap_or_default();
    let stamped_name = site
        .annotations()
        .get(&settings.annotation(keys::JOB_NAME))
        .cloned();
    let existing: Vec<CachedJob> = in_namespace
        .iter()
        .filter(|job| is_companion_of(job, &uid) || job.metadata.name == stamped_name)
        .map(|job| CachedJob::clone(job))
        .collect();

    let decide = |deployment: &Deployment| {
        decide_any(
            &accepted.candidates(),
            deployment,
            &existing,
            context.history_limit,
            Timestamp::now(),
        )
    };
    let mut deployment = site.to_deployment();
    let mut decision = decide(&deployment);
    if matches!(decision, Decision::Refuse { .. }) && site.has_digests() {
        // The cache keeps a digest of the stamped Job; the words of a
        // refusal quote where it differs, so they read the stamp whole.
        deployment = read_whole(&context.client, &namespace, &name).await?;
        decision = decide(&deployment);
    }

    let run = Reconciliation {
        context: &context,
        settings,
        deployment: &deployment,
        name,
        namespace,
        jobs,
    };
    match decision {
        Decision::Skip(reason) => {
            info!(deployment = %run.name, namespace = %run.namespace, ?reason, "nothing to do");
            Ok(Action::await_change())
        }
        Decision::Refuse { reason } => {
            run.refuse(&reason).await?;
            Ok(Action::requeue(RECHECK))
        }
        Decision::Reconcile(plan) => run.carry_out(plan).await,
    }
}

/// The Deployment as the API server holds it, with every annotation's text
/// (a list by name: the launcher may list Deployments, not get them).
async fn read_whole(client: &Client, namespace: &str, name: &str) -> Result<Deployment, Error> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let action = format!("reading Deployment {namespace}/{name}");
    let listed = deployments
        .list(&ListParams::default().fields(&format!("metadata.name={name}")))
        .await
        .map_err(api_error(action.clone()))?;
    listed
        .items
        .into_iter()
        .next()
        .ok_or_else(|| Error::Gone(format!("{namespace}/{name}")))
}

impl Reconciliation<'_> {
    /// In the plan's order: the stamped Job, the superseded ones, the
    /// history, then the outcomes.
    async fn carry_out(&self, plan: Plan) -> Result<Action, Error> {
        let metrics = &self.context.metrics;
        match &plan.stamped {
            StampedJob::Keep => {
                metrics.jobs_already_present.inc();
                info!(deployment = %self.name, namespace = %self.namespace, job = %plan.job_name, "companion Job already present");
            }
            StampedJob::Create(job) => {
                self.create(job, &plan, None).await?;
            }
            StampedJob::Rerun { job, replaces } => {
                self.delete(&plan.job_name, Some(replaces)).await?;
                if !self.create(job, &plan, Some(replaces)).await? {
                    // Still being deleted, or already run again (a plan made
                    // before the cache saw the new Job): look again soon.
                    return Ok(Action::requeue(Duration::from_secs(1)));
                }
                metrics.jobs_rerun.inc();
                info!(deployment = %self.name, namespace = %self.namespace, job = %plan.job_name,
                      "the Deployment is back on an image purged before another one: running its Job again");
            }
        }
        for superseded in &plan.cancel {
            if self.delete(superseded, None).await? {
                metrics.jobs_cancelled.inc();
                info!(deployment = %self.name, namespace = %self.namespace, job = %superseded, "superseded companion Job cancelled");
                self.record(
                    format!("{superseded}.cancelled"),
                    "Normal",
                    REASON_CANCELLED,
                    format!(
                        "Job {superseded} deleted while it still waited for its rollout, before it purged: the Deployment moved on to image {} (Job {})",
                        plan.image, plan.job_name
                    ),
                )
                .await?;
            }
        }
        for old in &plan.prune {
            if self.delete(old, None).await? {
                metrics.jobs_pruned.inc();
                info!(deployment = %self.name, namespace = %self.namespace, job = %old, "finished companion Job pruned");
            }
        }
        for outcome in &plan.outcomes {
            self.report(outcome, &plan).await?;
        }
        Ok(Action::await_change())
    }

    /// Creates the stamped Job; false if a Job of that name is still there
    /// although the one it replaces was deleted.
    async fn create(
        &self,
        job: &Job,
        plan: &Plan,
        replaces: Option<&String>,
    ) -> Result<bool, Error> {
        let job_name = &plan.job_name;
        if !self.context.may_write() {
            return Err(Error::NotLeader);
        }
        match self.jobs.create(&PostParams::default(), job).await {
            Ok(created) => {
                self.context.metrics.jobs_created.inc();
                info!(deployment = %self.name, namespace = %self.namespace, job = %job_name, "companion Job created");
                let uid = created.metadata.uid.unwrap_or_default();
                let message = match replaces {
                    None => format!(
                        "Created Job {job_name}: it purges the cache once image {} is rolled out",
                        plan.image
                    ),
                    Some(_) => format!(
                        "Created Job {job_name} again: the Deployment is back on image {} after another image was rolled out, so the cache is purged once it is rolled out",
                        plan.image
                    ),
                };
                self.record(
                    format!("{job_name}.{uid}.created"),
                    "Normal",
                    REASON_CREATED,
                    message,
                )
                .await?;
                Ok(true)
            }
            Err(error) if is_status(&error, 409, "AlreadyExists") => {
                self.context.metrics.jobs_already_present.inc();
                info!(deployment = %self.name, namespace = %self.namespace, job = %job_name, "companion Job already present");
                Ok(replaces.is_none())
            }
            Err(error) => Err(api_error(format!(
                "creating Job {}/{job_name}",
                self.namespace
            ))(error)),
        }
    }

    /// Deletes a Job (its pods in the background); false if it was gone, or
    /// (with a uid) already replaced.
    async fn delete(&self, job: &str, uid: Option<&String>) -> Result<bool, Error> {
        let params = DeleteParams {
            preconditions: uid.map(|uid| Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        if !self.context.may_write() {
            return Err(Error::NotLeader);
        }
        match self.jobs.delete(job, &params).await {
            Ok(_) => Ok(true),
            Err(error) if is_status(&error, 404, "NotFound") => Ok(false),
            // The uid precondition failed: that Job was already replaced.
            Err(error) if uid.is_some() && is_status(&error, 409, "Conflict") => Ok(false),
            Err(error) => Err(api_error(format!("deleting Job {}/{job}", self.namespace))(
                error,
            )),
        }
    }

    /// One Event per finished Job: named after the Job's uid and result.
    async fn report(&self, outcome: &Outcome, plan: &Plan) -> Result<(), Error> {
        let image = if outcome.image_hash == plan.image_hash {
            format!("image {}", plan.image)
        } else {
            format!("the image of hash {}", outcome.image_hash)
        };
        let provider = match plan.providers.as_slice() {
            [one] => format!("{one} cache"),
            layers => format!("{} caches", cache_buster::deployment::names(layers)),
        };
        let job = &outcome.job;
        let (suffix, type_, reason, message, purge) = match &outcome.result {
            JobResult::Purged { seconds } => {
                let purge = self.pod_detail(&outcome.job_uid, purged).await?;
                let did = if purge.as_ref().is_some_and(PurgeOutcome::is_dry_run) {
                    "made a dry run of purging"
                } else {
                    "purged"
                };
                let summary = purge.as_ref().map(|purge| purge.summary());
                (
                    "purged",
                    "Normal",
                    REASON_PURGED,
                    format!(
                        "Job {job} {did} the {provider} for {image}{}{}",
                        seconds
                            .map(|seconds| format!(", {seconds}s after it was created"))
                            .unwrap_or_default(),
                        summary
                            .map(|summary| format!(": {summary}"))
                            .unwrap_or_default()
                    ),
                    purge,
                )
            }
            JobResult::Failed { reason } => {
                let failed = self.pod_detail(&outcome.job_uid, failure_detail).await?;
                let (detail, purge) = match failed {
                    Some((detail, purge)) => (Some(detail), purge),
                    None => (None, None),
                };
                (
                    "purge-failed",
                    "Warning",
                    REASON_PURGE_FAILED,
                    format!(
                        "Job {job} failed to purge the {provider} for {image}: {reason}{}. \
                         Fix the cause, then `kubectl delete job {job} -n {}` runs it again",
                        detail
                            .map(|detail| format!("; {detail}"))
                            .unwrap_or_default(),
                        self.namespace
                    ),
                    purge,
                )
            }
        };
        let name = format!("{job}.{}.{suffix}", outcome.job_uid);
        if self.record(name, type_, reason, message).await? {
            let succeeded = matches!(outcome.result, JobResult::Purged { .. });
            for layer in layer_results(&plan.providers, purge.as_ref(), succeeded) {
                let labels = ProviderLabels {
                    provider: layer.provider.clone(),
                };
                if let Some(sent) = layer.requests {
                    self.context
                        .metrics
                        .purge_requests
                        .get_or_create(&labels)
                        .inc_by(u64::try_from(sent).unwrap_or(u64::MAX));
                }
                let Some(result) = layer.result else { continue };
                if let (
                    PurgeResult::Succeeded,
                    JobResult::Purged {
                        seconds: Some(seconds),
                    },
                ) = (result, &outcome.result)
                {
                    self.context
                        .metrics
                        .purge_duration
                        .get_or_create(&labels)
                        .observe(*seconds as f64);
                }
                self.context.metrics.purge(&layer.provider, result).inc();
            }
        }
        Ok(())
    }

    /// What `detail` reads from the newest of the Job's pods that has one:
    /// the containers' termination messages, from the pod status, never
    /// from logs.
    async fn pod_detail<T>(
        &self,
        job_uid: &str,
        detail: fn(&Pod) -> Option<T>,
    ) -> Result<Option<T>, Error> {
        let pods: Api<Pod> = Api::namespaced(self.context.client.clone(), &self.namespace);
        let listed = pods
            .list(&ListParams::default().labels(&format!("controller-uid={job_uid}")))
            .await
            .map_err(api_error(format!("listing the pods of Job {job_uid}")))?;
        let mut found: Vec<(Option<&Time>, T)> = listed
            .items
            .iter()
            .filter_map(|pod| Some((pod.metadata.creation_timestamp.as_ref(), detail(pod)?)))
            .collect();
        found.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(found.into_iter().next().map(|(_, detail)| detail))
    }

    /// Records an Event on the Deployment unless one of that name exists;
    /// true if it was recorded now.
    async fn record(
        &self,
        name: String,
        type_: &str,
        reason: &str,
        message: String,
    ) -> Result<bool, Error> {
        if self.context.is_reported(&self.namespace, &name) {
            return Ok(false);
        }
        let events: Api<Event> = Api::namespaced(self.context.client.clone(), &self.namespace);
        let event = event(
            self.deployment,
            &self.namespace,
            &name,
            type_,
            reason,
            &message,
        );
        if !self.context.may_write() {
            return Err(Error::NotLeader);
        }
        let recorded = match events.create(&PostParams::default(), &event).await {
            Ok(_) => true,
            Err(error) if is_status(&error, 409, "AlreadyExists") => false,
            Err(error) => {
                return Err(api_error(format!(
                    "recording an Event on Deployment {}/{}",
                    self.namespace, self.name
                ))(error));
            }
        };
        self.context.mark_reported(&self.namespace, &name);
        Ok(recorded)
    }

    async fn refuse(&self, reason: &str) -> Result<(), Error> {
        let annotation = self
            .deployment
            .annotations()
            .get(&self.settings.annotation(keys::JOB))
            .cloned()
            .unwrap_or_default();
        // One Event per refused value: named after a digest of it.
        let digest = Sha256::digest(annotation.as_bytes());
        let name = format!("{}.{:x}.refused", self.name, digest);
        if !self.context.is_reported(&self.namespace, &name) {
            self.context.metrics.jobs_refused.inc();
            warn!(deployment = %self.name, namespace = %self.namespace, %reason, "stamped Job refused");
        }
        self.record(name, "Warning", REASON_REFUSED, reason.to_owned())
            .await?;
        Ok(())
    }
}

/// Failed reconciliations are retried after a pause.
pub fn error_policy(
    deployment: Arc<SiteDeployment>,
    error: &Error,
    context: Arc<Context>,
) -> Action {
    if matches!(error, Error::NotLeader) {
        return Action::await_change();
    }
    context.metrics.errors.inc();
    warn!(deployment = %deployment.name_any(), %error, "reconciliation failed; retrying");
    Action::requeue(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's least-privilege table is the ClusterRole of
    /// deploy/launcher.yaml: every resource, with exactly its verbs.
    #[test]
    fn the_readme_lists_the_launchers_rights_as_deployed() {
        use k8s_openapi::serde::Deserialize as _;
        let manifests = include_str!("../../../deploy/launcher.yaml");
        // The ClusterRole's rules, then the Role's (the Lease).
        let rules: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(manifests)
            .filter_map(|document| serde_json::Value::deserialize(document).ok())
            .filter(|document| document["kind"] == "ClusterRole" || document["kind"] == "Role")
            .flat_map(|role| role["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let names = |value: &serde_json::Value| -> Vec<String> {
            value
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        };
        let deployed: Vec<(String, Vec<String>, Vec<String>)> = rules
            .iter()
            .map(|rule| {
                (
                    names(&rule["resources"]).join(","),
                    names(&rule["resourceNames"]),
                    names(&rule["verbs"]),
                )
            })
            .collect();
        let documented: Vec<(String, Vec<String>, Vec<String>)> =
            crate::readme::table("| resource | verbs | why |")
                .iter()
                .map(|row| {
                    // `clusteradmissionpolicies (`cache-buster` only)`
                    let (resource, only) = row[0]
                        .split_once(" (")
                        .map_or((row[0].as_str(), ""), |(resource, only)| (resource, only));
                    let only: Vec<String> = only
                        .split('`')
                        .nth(1)
                        .map(str::to_owned)
                        .into_iter()
                        .collect();
                    let verbs = row[1].split(", ").map(str::to_owned).collect();
                    (resource.to_owned(), only, verbs)
                })
                .collect();
        assert_eq!(documented, deployed);
    }

    /// A context over a mock API server, with no companion Job cached.
    fn context_with(client: Client, leadership: Leadership) -> Arc<Context> {
        let (_, settings) =
            tokio::sync::watch::channel(SettingsState::Ready(Accepted::new(Settings::default())));
        let (store, _writer) = kube::runtime::reflector::store::<CachedJob>();
        Arc::new(Context::new(
            client,
            settings,
            2,
            Metrics::default(),
            vec![store],
            Arc::new(leadership),
        ))
    }

    fn site() -> Arc<SiteDeployment> {
        Arc::new(SiteDeployment::from(&crate::test_support::stamped(
            "nginx:1.25",
        )))
    }

    /// A standby keeps its caches but acts on nothing: its reconciliation
    /// makes no call at all.
    #[tokio::test]
    async fn a_standby_reconciles_nothing() {
        use http::{Request, Response};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(async move {
            let mut calls = Vec::new();
            while let Some((request, send)) = handle.next_request().await {
                calls.push(format!("{} {}", request.method(), request.uri().path()));
                let mut refused = Response::new(Body::from(b"{}".to_vec()));
                *refused.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                send.send_response(refused);
            }
            calls
        });
        let context = context_with(Client::new(service, "web"), Leadership::new("standby"));
        let action = reconcile(site(), Arc::clone(&context)).await;
        assert!(matches!(action, Ok(action) if action == Action::await_change()));
        drop(context);
        assert_eq!(server.await.unwrap(), Vec::<String>::new());
    }

    /// The leader creates the stamped Job, then records its Event: the only
    /// two calls of a new rollout's reconciliation.
    #[tokio::test]
    async fn the_leader_creates_the_job_and_its_event() {
        use http::{Request, Response, StatusCode};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(async move {
            let mut calls = Vec::new();
            while let Some((request, send)) = handle.next_request().await {
                calls.push(format!("{} {}", request.method(), request.uri().path()));
                let body = match request.uri().path() {
                    path if path.ends_with("/jobs") => serde_json::json!({
                        "apiVersion": "batch/v1", "kind": "Job",
                        "metadata": {"name": "shop-cache-buster-x", "namespace": "web", "uid": "job-uid"}}),
                    _ => serde_json::json!({
                        "apiVersion": "v1", "kind": "Event",
                        "metadata": {"name": "e", "namespace": "web"},
                        "involvedObject": {}}),
                };
                let mut response = Response::new(Body::from(body.to_string().into_bytes()));
                *response.status_mut() = StatusCode::CREATED;
                send.send_response(response);
            }
            calls
        });
        let context = context_with(Client::new(service, "web"), Leadership::alone());
        let action = reconcile(site(), Arc::clone(&context)).await;
        assert!(action.is_ok(), "{action:?}");
        drop(context);
        assert_eq!(
            server.await.unwrap(),
            [
                "POST /apis/batch/v1/namespaces/web/jobs",
                "POST /api/v1/namespaces/web/events"
            ]
        );
    }
}
