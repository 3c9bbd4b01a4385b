//! The Kubernetes side of a reconciliation: list the companion Jobs, then do
//! what `plan::decide` said, treating the API's answers as Kubernetes gives
//! them (AlreadyExists on create and NotFound on delete are successes).

use crate::metrics::Metrics;
use crate::plan::{Decision, decide};
use cache_buster::job::{LABEL_VALUE, MANAGED_BY_LABEL};
use cache_buster::settings::Settings;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Client, ResourceExt};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, warn};

const COMPONENT: &str = "cache-buster-launcher";
/// A refused Deployment is looked at again after this long (the policy may
/// have restamped it meanwhile; watch events usually come first).
const RECHECK: Duration = Duration::from_secs(300);

pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub history_limit: usize,
    pub metrics: Metrics,
    /// (Deployment uid, refused annotation) pairs already reported, so that
    /// a forged annotation gives one Event, not one per resync.
    reported: Mutex<HashSet<(String, String)>>,
}

impl Context {
    pub fn new(client: Client, settings: Settings, history_limit: usize, metrics: Metrics) -> Self {
        Context {
            client,
            settings,
            history_limit,
            metrics,
            reported: Mutex::new(HashSet::new()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Deployment {0} has no namespace")]
    NoNamespace(String),
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

/// One reconciliation of one Deployment.
pub async fn reconcile(
    deployment: Arc<Deployment>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    let name = deployment.name_any();
    let namespace = deployment
        .namespace()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let jobs: Api<Job> = Api::namespaced(context.client.clone(), &namespace);
    let selector = format!("{MANAGED_BY_LABEL}={LABEL_VALUE}");
    let existing = jobs
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(api_error(format!("listing the Jobs of {namespace}")))?;

    match decide(
        &context.settings,
        &deployment,
        &existing.items,
        context.history_limit,
    ) {
        Decision::Skip(reason) => {
            info!(deployment = %name, namespace = %namespace, ?reason, "nothing to do");
        }
        Decision::AlreadyPresent { job } => {
            context.metrics.jobs_already_present.inc();
            info!(deployment = %name, namespace = %namespace, job = %job, "companion Job already present");
        }
        Decision::Create { job, prune } => {
            let job_name = job.name_any();
            match jobs.create(&PostParams::default(), &job).await {
                Ok(_) => {
                    context.metrics.jobs_created.inc();
                    info!(deployment = %name, namespace = %namespace, job = %job_name, "companion Job created");
                }
                Err(error) if is_status(&error, 409, "AlreadyExists") => {
                    context.metrics.jobs_already_present.inc();
                    info!(deployment = %name, namespace = %namespace, job = %job_name, "companion Job already present");
                }
                Err(error) => {
                    return Err(api_error(format!("creating Job {namespace}/{job_name}"))(
                        error,
                    ));
                }
            }
            for old in prune {
                match jobs.delete(&old, &DeleteParams::background()).await {
                    Ok(_) => {
                        context.metrics.jobs_pruned.inc();
                        info!(deployment = %name, namespace = %namespace, job = %old, "finished companion Job pruned");
                    }
                    Err(error) if is_status(&error, 404, "NotFound") => {}
                    Err(error) => {
                        return Err(api_error(format!("deleting Job {namespace}/{old}"))(error));
                    }
                }
            }
        }
        Decision::Refuse { reason } => {
            let uid = deployment.uid().unwrap_or_default();
            let annotation = deployment
                .annotations()
                .get(&context.settings.annotation("job"))
                .cloned()
                .unwrap_or_default();
            let first_time = context
                .reported
                .lock()
                .map(|mut reported| reported.insert((uid, annotation)))
                .unwrap_or(true);
            if first_time {
                context.metrics.jobs_refused.inc();
                warn!(deployment = %name, namespace = %namespace, %reason, "stamped Job refused");
                let events: Api<Event> = Api::namespaced(context.client.clone(), &namespace);
                events
                    .create(
                        &PostParams::default(),
                        &refusal_event(&deployment, &namespace, &reason),
                    )
                    .await
                    .map_err(api_error(format!(
                        "recording an Event on Deployment {namespace}/{name}"
                    )))?;
            }
            return Ok(Action::requeue(RECHECK));
        }
    }
    Ok(Action::await_change())
}

/// A Warning Event on the Deployment, as `kubectl describe` shows it.
pub fn refusal_event(deployment: &Deployment, namespace: &str, reason: &str) -> Event {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", deployment.name_any())),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("apps/v1".to_owned()),
            kind: Some("Deployment".to_owned()),
            name: deployment.metadata.name.clone(),
            namespace: Some(namespace.to_owned()),
            uid: deployment.metadata.uid.clone(),
            resource_version: deployment.metadata.resource_version.clone(),
            ..ObjectReference::default()
        },
        reason: Some("CacheBusterJobRefused".to_owned()),
        message: Some(reason.to_owned()),
        type_: Some("Warning".to_owned()),
        source: Some(EventSource {
            component: Some(COMPONENT.to_owned()),
            host: None,
        }),
        reporting_component: Some(COMPONENT.to_owned()),
        reporting_instance: Some(COMPONENT.to_owned()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Event::default()
    }
}

/// Failed reconciliations are retried after a pause.
pub fn error_policy(deployment: Arc<Deployment>, error: &Error, context: Arc<Context>) -> Action {
    context.metrics.errors.inc();
    warn!(deployment = %deployment.name_any(), %error, "reconciliation failed; retrying");
    Action::requeue(Duration::from_secs(30))
}
