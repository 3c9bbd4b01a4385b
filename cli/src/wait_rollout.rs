//! `wait-rollout`, the companion Job's init container (SPEC §4): waits until
//! the Deployment carries this Job's image hash, then until that rollout is
//! complete under the conditions `kubectl rollout status` uses, and fails at
//! once when the rollout's progress deadline is exceeded.

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};
use std::process::ExitCode;
use std::time::Duration;

/// Where a rollout stands, for one Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// The Deployment does not carry this Job's hash (yet): another image's
    /// rollout, or the stamp not written yet.
    AwaitingStamp {
        stamped: Option<String>,
    },
    /// kubectl's "Waiting for …" message.
    InProgress(String),
    Complete,
    /// The progress deadline was exceeded: the Deployment's own message.
    Failed(String),
}

/// The decision of kubectl's `DeploymentStatusViewer` (kubectl/pkg/polymorphichelpers/rollout_status.go),
/// after this Job's own condition: the stamp carries its hash.
pub fn rollout(deployment: &Deployment, hash_annotation: &str, hash: &str) -> Rollout {
    let name = deployment.metadata.name.as_deref().unwrap_or_default();
    let stamped = deployment
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(hash_annotation));
    if stamped.map(String::as_str) != Some(hash) {
        return Rollout::AwaitingStamp {
            stamped: stamped.cloned(),
        };
    }
    let status = deployment.status.clone().unwrap_or_default();
    let generation = deployment.metadata.generation.unwrap_or_default();
    if generation > status.observed_generation.unwrap_or_default() {
        return Rollout::InProgress(
            "Waiting for deployment spec update to be observed...".to_owned(),
        );
    }
    let progressing = status
        .conditions
        .iter()
        .flatten()
        .find(|condition| condition.type_ == "Progressing");
    if let Some(condition) =
        progressing.filter(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
    {
        let message = condition.message.clone().unwrap_or_default();
        return Rollout::Failed(format!(
            "deployment {name:?} exceeded its progress deadline: {message}"
        ));
    }
    let updated = status.updated_replicas.unwrap_or_default();
    let replicas = status.replicas.unwrap_or_default();
    let available = status.available_replicas.unwrap_or_default();
    if let Some(wanted) = deployment.spec.as_ref().and_then(|spec| spec.replicas)
        && updated < wanted
    {
        return Rollout::InProgress(format!(
            "Waiting for deployment {name:?} rollout to finish: {updated} out of {wanted} new replicas have been updated..."
        ));
    }
    if replicas > updated {
        return Rollout::InProgress(format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            replicas - updated
        ));
    }
    if available < updated {
        return Rollout::InProgress(format!(
            "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
        ));
    }
    Rollout::Complete
}

/// Why `wait-rollout` gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRolledOut {
    /// The API server refused the ServiceAccount: no retry can mend a Role.
    Refused(String),
    /// The rollout failed or did not come in time.
    Failed(String),
}

impl NotRolledOut {
    pub fn message(&self) -> &str {
        match self {
            NotRolledOut::Refused(message) | NotRolledOut::Failed(message) => message,
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(self, NotRolledOut::Refused(_))
    }
}

/// What `wait-rollout` needs, from its argv.
#[derive(Debug, Clone)]
pub struct WaitFor {
    pub namespace: String,
    pub deployment: String,
    pub hash_annotation: String,
    pub hash: String,
    pub timeout: Duration,
}

/// Watches the Deployment (reconnecting when a watch ends) until its
/// rollout of this hash is complete, it fails, or the time-out passes.
pub async fn wait(client: Client, wait_for: &WaitFor) -> Result<(), NotRolledOut> {
    let deployments: Api<Deployment> = Api::namespaced(client, &wait_for.namespace);
    let config =
        watcher::Config::default().fields(&format!("metadata.name={}", wait_for.deployment));
    let mut last = None;
    let watching = async {
        let mut stream = std::pin::pin!(
            watcher(deployments, config)
                .default_backoff()
                .applied_objects()
        );
        while let Some(event) = stream.next().await {
            let deployment = match event {
                Ok(deployment) => deployment,
                Err(error) => {
                    if let Some(refusal) = refusal(&error) {
                        return Err(NotRolledOut::Refused(refusal));
                    }
                    eprintln!(
                        "watch of deployment {}: {error}; reconnecting",
                        wait_for.deployment
                    );
                    continue;
                }
            };
            let state = rollout(&deployment, &wait_for.hash_annotation, &wait_for.hash);
            if last.as_ref() != Some(&state) {
                match &state {
                    Rollout::AwaitingStamp { stamped } => println!(
                        "deployment {:?} carries {} {}, not this Job's {}: waiting for its rollout",
                        wait_for.deployment,
                        wait_for.hash_annotation,
                        stamped.as_deref().unwrap_or("(none)"),
                        wait_for.hash
                    ),
                    Rollout::InProgress(message) => println!("{message}"),
                    Rollout::Complete => {
                        println!(
                            "deployment {:?} successfully rolled out",
                            wait_for.deployment
                        );
                        return Ok(());
                    }
                    Rollout::Failed(message) => return Err(NotRolledOut::Failed(message.clone())),
                }
                last = Some(state);
            }
        }
        Err(NotRolledOut::Failed(
            "the watch of the Deployment ended".to_owned(),
        ))
    };
    match tokio::time::timeout(wait_for.timeout, watching).await {
        Ok(result) => result,
        Err(_) => Err(NotRolledOut::Failed(format!(
            "deployment {:?} did not roll out image hash {} within {}s",
            wait_for.deployment,
            wait_for.hash,
            wait_for.timeout.as_secs()
        ))),
    }
}

/// A refusal by the API server (401, 403) is final: retrying cannot change
/// a Role. The server's own message names the verb, the resource and the
/// ServiceAccount (`User "system:serviceaccount:web:cache-buster" cannot
/// list resource "deployments" …`), so it is quoted whole.
fn refusal(error: &watcher::Error) -> Option<String> {
    let status = match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.as_ref(),
        watcher::Error::WatchError(status) => status.as_ref(),
        _ => return None,
    };
    matches!(status.code, 401 | 403).then(|| {
        format!(
            "the API server refused to watch the Deployment (HTTP {} {}): {}; \
             the Job's ServiceAccount needs get, list and watch on deployments \
             in its namespace (deploy/site's Role)",
            status.code, status.reason, status.message
        )
    })
}

#[derive(clap::Args, Debug)]
pub struct WaitRolloutArgs {
    #[arg(long)]
    pub namespace: String,
    #[arg(long)]
    pub deployment: String,
    /// The image hash this Job purges for
    #[arg(long)]
    pub image_hash: String,
    /// The annotation that carries the stamped image hash
    #[arg(long, default_value = "cache-buster.io/image-hash")]
    pub annotation: String,
    #[arg(long, default_value_t = 600)]
    pub timeout_seconds: u64,
}

/// Waits, and says why it stopped waiting where the kubelet shows it.
pub async fn command(args: WaitRolloutArgs) -> ExitCode {
    let wait_for = WaitFor {
        namespace: args.namespace,
        deployment: args.deployment,
        hash_annotation: args.annotation,
        hash: args.image_hash,
        timeout: Duration::from_secs(args.timeout_seconds),
    };
    let result = match kube::Client::try_default().await {
        Ok(client) => wait(client, &wait_for).await,
        Err(error) => Err(NotRolledOut::Failed(format!(
            "cannot reach the Kubernetes API: {error}"
        ))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let message = failure.message();
            eprintln!("Error: {message}");
            // The kubelet shows it as the init container's termination message.
            let _ = std::fs::write("/dev/termination-log", message);
            if failure.is_final() {
                crate::final_failure()
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    const HASH: &str = "b4612648a6";

    /// A Deployment as the API server returns it: `replicas` wanted, then
    /// its status (observedGeneration, replicas, updated, available) and
    /// the Progressing condition's reason.
    fn deployment(
        generation: i64,
        wanted: i32,
        status: (i64, i32, i32, i32),
        progressing: &str,
    ) -> Deployment {
        let (observed, replicas, updated, available) = status;
        serde_json::from_value(json!({
            "metadata": {"name": "shop", "generation": generation, "resourceVersion": "1",
                         "annotations": {"cache-buster.io/image-hash": HASH}},
            "spec": {"replicas": wanted, "selector": {}, "template": {}},
            "status": {
                "observedGeneration": observed, "replicas": replicas,
                "updatedReplicas": updated, "availableReplicas": available,
                "conditions": [{"type": "Progressing", "status": "True", "reason": progressing,
                                "message": "ReplicaSet \"shop-7d4b9c\" has timed out progressing."}]
            }
        }))
        .unwrap()
    }

    /// The cases of kubectl's DeploymentStatusViewer, in its order.
    #[test]
    fn kubectl_rollout_status_conditions() {
        let waiting = |message: &str| Rollout::InProgress(message.to_owned());
        let cases = [
            // generation > observedGeneration: the controller has not seen the new spec.
            (deployment(3, 3, (2, 3, 3, 3), "NewReplicaSetAvailable"),
             waiting("Waiting for deployment spec update to be observed...")),
            // Progressing=False, reason ProgressDeadlineExceeded: fail at once.
            (deployment(3, 3, (3, 4, 1, 3), "ProgressDeadlineExceeded"),
             Rollout::Failed("deployment \"shop\" exceeded its progress deadline: ReplicaSet \"shop-7d4b9c\" has timed out progressing.".to_owned())),
            // updatedReplicas < spec.replicas.
            (deployment(3, 3, (3, 4, 1, 3), "ReplicaSetUpdated"),
             waiting("Waiting for deployment \"shop\" rollout to finish: 1 out of 3 new replicas have been updated...")),
            // status.replicas > updatedReplicas: old pods still terminating.
            (deployment(3, 3, (3, 4, 3, 3), "ReplicaSetUpdated"),
             waiting("Waiting for deployment \"shop\" rollout to finish: 1 old replicas are pending termination...")),
            // availableReplicas < updatedReplicas.
            (deployment(3, 3, (3, 3, 3, 2), "ReplicaSetUpdated"),
             waiting("Waiting for deployment \"shop\" rollout to finish: 2 of 3 updated replicas are available...")),
            // Everything updated and available, nothing old left.
            (deployment(3, 3, (3, 3, 3, 3), "NewReplicaSetAvailable"), Rollout::Complete),
            // Scaled to zero: complete as soon as it is observed.
            (deployment(4, 0, (4, 0, 0, 0), "NewReplicaSetAvailable"), Rollout::Complete),
        ];
        for (deployment, expected) in cases {
            assert_eq!(
                rollout(&deployment, "cache-buster.io/image-hash", HASH),
                expected,
                "{:?}",
                deployment.status
            );
        }
    }

    fn with_version(deployment: &Deployment, version: &str) -> Deployment {
        let mut deployment = deployment.clone();
        deployment.metadata.resource_version = Some(version.to_owned());
        deployment
    }

    /// The watch itself, against a mock API server: the first watch ends
    /// while the rollout is in progress, the second brings it complete.
    #[tokio::test]
    async fn wait_rollout_reconnects_when_a_watch_ends_and_returns_once_complete() {
        use http::{Request, Response};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let in_progress = deployment(3, 3, (3, 4, 1, 3), "ReplicaSetUpdated");
        let complete = deployment(3, 3, (3, 3, 3, 3), "NewReplicaSetAvailable");
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for answer in 0..3 {
                let (request, send) = handle.next_request().await.expect("a request");
                let uri = request.uri().to_string();
                assert!(
                    uri.starts_with("/apis/apps/v1/namespaces/web/deployments?"),
                    "{uri}"
                );
                assert!(uri.contains("fieldSelector=metadata.name%3Dshop"), "{uri}");
                let body = match answer {
                    // The list: the rollout in progress.
                    0 => json!({"apiVersion": "apps/v1", "kind": "DeploymentList",
                                "metadata": {"resourceVersion": "1"}, "items": [in_progress]})
                    .to_string(),
                    // A watch that ends with the rollout still in progress.
                    1 => format!(
                        "{}\n",
                        json!({"type": "MODIFIED", "object": with_version(&in_progress, "2")})
                    ),
                    // The watch again, from there: the rollout complete.
                    _ => format!(
                        "{}\n",
                        json!({"type": "MODIFIED", "object": with_version(&complete, "3")})
                    ),
                };
                seen.push(uri);
                send.send_response(Response::new(Body::from(body.into_bytes())));
            }
            seen
        });
        let result = wait(Client::new(service, "web"), &waiting_for(HASH)).await;
        assert_eq!(result, Ok(()));
        let seen = server.await.unwrap();
        assert!(
            seen[1].contains("watch=true") && seen[2].contains("watch=true"),
            "{seen:?}"
        );
    }

    /// A mock API server that lists `deployment` once and then never
    /// answers (a watch that stays silent).
    fn api_listing(deployment: Deployment) -> Client {
        use http::{Request, Response};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(async move {
            if let Some((_, send)) = handle.next_request().await {
                let list = json!({"apiVersion": "apps/v1", "kind": "DeploymentList",
                                  "metadata": {"resourceVersion": "1"}, "items": [deployment]});
                send.send_response(Response::new(Body::from(list.to_string().into_bytes())));
            }
            while let Some((_, send)) = handle.next_request().await {
                std::mem::forget(send);
            }
        });
        Client::new(service, "web")
    }

    fn waiting_for(hash: &str) -> WaitFor {
        WaitFor {
            namespace: "web".into(),
            deployment: "shop".into(),
            hash_annotation: "cache-buster.io/image-hash".into(),
            hash: hash.into(),
            timeout: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn wait_rollout_fails_at_once_on_an_exceeded_progress_deadline() {
        let stuck = deployment(3, 3, (3, 4, 1, 3), "ProgressDeadlineExceeded");
        assert_eq!(
            wait(api_listing(stuck), &waiting_for(HASH)).await,
            Err(NotRolledOut::Failed("deployment \"shop\" exceeded its progress deadline: ReplicaSet \"shop-7d4b9c\" has timed out progressing.".to_owned()))
        );
    }

    #[tokio::test]
    async fn wait_rollout_gives_up_after_its_timeout() {
        // Another image's rollout, complete: never this Job's.
        let other = deployment(3, 3, (3, 3, 3, 3), "NewReplicaSetAvailable");
        assert_eq!(
            wait(api_listing(other), &waiting_for("0000000000")).await,
            Err(NotRolledOut::Failed(
                "deployment \"shop\" did not roll out image hash 0000000000 within 1s".to_owned()
            ))
        );
    }

    /// A mock API server that refuses the list as a Role without `list`
    /// makes it refuse; the requests it got.
    fn api_refusing(seen: Arc<std::sync::Mutex<usize>>) -> Client {
        use http::{Request, Response, StatusCode};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(async move {
            while let Some((_, send)) = handle.next_request().await {
                *seen.lock().unwrap() += 1;
                let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "reason": "Forbidden", "code": 403,
                    "message": "deployments.apps is forbidden: User \"system:serviceaccount:web:cache-buster\" cannot list resource \"deployments\" in API group \"apps\" in the namespace \"web\"",
                    "details": {"group": "apps", "kind": "deployments"}});
                let mut response = Response::new(Body::from(status.to_string().into_bytes()));
                *response.status_mut() = StatusCode::FORBIDDEN;
                send.send_response(response);
            }
        });
        Client::new(service, "web")
    }

    #[tokio::test]
    async fn a_refused_watch_fails_at_once_naming_the_verb_the_resource_and_the_service_account() {
        let seen = Arc::new(std::sync::Mutex::new(0));
        let mut waiting = waiting_for(HASH);
        waiting.timeout = Duration::from_secs(30);
        let started = std::time::Instant::now();
        let refused = wait(api_refusing(Arc::clone(&seen)), &waiting)
            .await
            .unwrap_err();
        assert!(refused.is_final(), "{refused:?}");
        let message = refused.message();
        assert!(started.elapsed() < Duration::from_secs(5), "{message}");
        assert_eq!(*seen.lock().unwrap(), 1, "a refusal is not retried");
        assert!(
            message.starts_with("the API server refused to watch the Deployment (HTTP 403 Forbidden): ")
                && message.contains(
                    "User \"system:serviceaccount:web:cache-buster\" cannot list resource \"deployments\""
                )
                && message.contains("needs get, list and watch on deployments"),
            "{message}"
        );
    }

    #[test]
    fn another_images_rollout_is_not_this_jobs() {
        let complete = deployment(3, 3, (3, 3, 3, 3), "NewReplicaSetAvailable");
        assert_eq!(
            rollout(&complete, "cache-buster.io/image-hash", "0000000000"),
            Rollout::AwaitingStamp {
                stamped: Some(HASH.to_owned())
            }
        );
        assert_eq!(
            rollout(&complete, "example.com/image-hash", HASH),
            Rollout::AwaitingStamp { stamped: None }
        );
    }
}
