//! The launcher's Kubernetes calls against the API's wire format: a tower-test
//! mock stands in for the API server, checks each HTTP request the kube
//! client sends (method, path, query, JSON body) and answers with responses
//! recorded from an API server (tests/api/*.json).

mod support;

use cache_buster::settings::Settings;
use cache_buster_launcher::cluster::{Context, reconcile};
use cache_buster_launcher::metrics::Metrics;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use support::{UID, stamped};
use tower_test::mock::{self, Handle, SendResponse};

type ApiServer = Handle<Request<Body>, Response<Body>>;

const JOBS: &str = "/apis/batch/v1/namespaces/web/jobs";
const EVENTS: &str = "/api/v1/namespaces/web/events";

fn annotation(deployment: &Deployment, key: &str) -> String {
    deployment
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .cloned()
        .unwrap_or_default()
}

fn recorded(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/api/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn context(history_limit: usize) -> (Arc<Context>, ApiServer, Metrics) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let metrics = Metrics::default();
    let context = Context::new(
        Client::new(service, "web"),
        Settings::default(),
        history_limit,
        metrics.clone(),
    );
    (Arc::new(context), handle, metrics)
}

/// The next request: its method, path, query and JSON body.
async fn next(
    server: &mut ApiServer,
) -> (Method, String, String, Value, SendResponse<Response<Body>>) {
    let (request, respond) = tokio::time::timeout(Duration::from_secs(5), server.next_request())
        .await
        .expect("the launcher sent a request")
        .expect("a request");
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let bytes = request.into_body().collect_bytes().await.expect("a body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("a JSON body")
    };
    (method, path, query, body, respond)
}

fn answer(respond: SendResponse<Response<Body>>, status: StatusCode, body: Vec<u8>) {
    respond.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(body))
            .expect("a response"),
    );
}

/// The list call every reconciliation starts with.
async fn expect_job_list(server: &mut ApiServer, recorded_list: &str) {
    let (method, path, query, _, respond) = next(server).await;
    assert_eq!((method, path.as_str()), (Method::GET, JOBS));
    assert!(
        query.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dcache-buster"),
        "{query}"
    );
    answer(respond, StatusCode::OK, recorded(recorded_list));
}

/// The create call; answers as the API server does (the object, with a uid).
async fn expect_job_created(
    server: &mut ApiServer,
    deployment: &Deployment,
    status: StatusCode,
    body: Option<Vec<u8>>,
) {
    let (method, path, _, mut job, respond) = next(server).await;
    assert_eq!((method, path.as_str()), (Method::POST, JOBS));
    assert_eq!(
        job["metadata"]["name"],
        annotation(deployment, "cache-buster.io/job-name").as_str()
    );
    assert_eq!(
        job["metadata"]["ownerReferences"],
        serde_json::json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop", "uid": UID}])
    );
    let mut without_owner = job.clone();
    without_owner["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("ownerReferences");
    let stamped_job: Value =
        serde_json::from_str(&annotation(deployment, "cache-buster.io/job")).unwrap();
    assert_eq!(
        without_owner, stamped_job,
        "the created Job is the stamped one"
    );
    job["metadata"]["uid"] = "0c8f7a1e-6a0c-4a4e-8f55-2f3b1d0e9a10".into();
    job["metadata"]["resourceVersion"] = "48400".into();
    answer(
        respond,
        status,
        body.unwrap_or_else(|| serde_json::to_vec(&job).unwrap()),
    );
}

async fn run(
    deployment: Deployment,
    context: Arc<Context>,
) -> tokio::task::JoinHandle<Result<Action, cache_buster_launcher::cluster::Error>> {
    tokio::spawn(reconcile(Arc::new(deployment), context))
}

#[tokio::test]
async fn a_new_image_creates_its_job() {
    let (context, mut server, metrics) = context(2);
    let deployment = stamped("nginx:1.25");
    let reconciliation = run(deployment.clone(), context).await;
    expect_job_list(&mut server, "jobs-list-empty.json").await;
    expect_job_created(&mut server, &deployment, StatusCode::CREATED, None).await;
    assert_eq!(
        reconciliation.await.unwrap().unwrap(),
        Action::await_change()
    );
    assert_eq!(metrics.jobs_created.get(), 1);
}

#[tokio::test]
async fn already_exists_is_success() {
    let (context, mut server, metrics) = context(2);
    let deployment = stamped("nginx:1.25");
    let reconciliation = run(deployment.clone(), context).await;
    expect_job_list(&mut server, "jobs-list-empty.json").await;
    expect_job_created(
        &mut server,
        &deployment,
        StatusCode::CONFLICT,
        Some(recorded("status-already-exists.json")),
    )
    .await;
    assert!(reconciliation.await.unwrap().is_ok());
    assert_eq!(
        (
            metrics.jobs_created.get(),
            metrics.jobs_already_present.get()
        ),
        (0, 1)
    );
}

#[tokio::test]
async fn finished_jobs_beyond_the_limit_are_deleted_after_the_create() {
    let (context, mut server, metrics) = context(1);
    let deployment = stamped("nginx:1.25");
    let reconciliation = run(deployment.clone(), context).await;
    expect_job_list(&mut server, "jobs-list-history.json").await;
    expect_job_created(&mut server, &deployment, StatusCode::CREATED, None).await;
    // Newest finished kept (…3); …2 then …1 deleted; the running one never.
    for (name, status, response) in [
        (
            "shop-cache-buster-0000000002",
            StatusCode::OK,
            "status-deleted.json",
        ),
        (
            "shop-cache-buster-0000000001",
            StatusCode::NOT_FOUND,
            "status-not-found.json",
        ),
    ] {
        let (method, path, query, body, respond) = next(&mut server).await;
        assert_eq!((method, path), (Method::DELETE, format!("{JOBS}/{name}")));
        assert!(query.is_empty(), "{query}");
        assert_eq!(body["propagationPolicy"], "Background");
        answer(respond, status, recorded(response));
    }
    assert!(reconciliation.await.unwrap().is_ok());
    assert_eq!(
        (metrics.jobs_created.get(), metrics.jobs_pruned.get()),
        (1, 1)
    );
}

#[tokio::test]
async fn a_present_job_is_not_created_again() {
    let (context, mut server, metrics) = context(2);
    let deployment = stamped("nginx:1.25");
    let mut list: Value = serde_json::from_slice(&recorded("jobs-list-history.json")).unwrap();
    list["items"][2]["metadata"]["name"] =
        annotation(&deployment, "cache-buster.io/job-name").into();
    let reconciliation = run(deployment, context).await;
    let (_, path, _, _, respond) = next(&mut server).await;
    assert_eq!(path, JOBS);
    answer(respond, StatusCode::OK, serde_json::to_vec(&list).unwrap());
    assert_eq!(
        reconciliation.await.unwrap().unwrap(),
        Action::await_change()
    );
    assert_eq!(metrics.jobs_already_present.get(), 1);
}

#[tokio::test]
async fn a_forged_job_gets_one_warning_event_and_no_job() {
    let (context, mut server, metrics) = context(2);
    let mut deployment = stamped("nginx:1.25");
    deployment.metadata.annotations.as_mut().unwrap().insert(
        "cache-buster.io/job".into(),
        r#"{"apiVersion":"batch/v1","kind":"Job"}"#.into(),
    );

    let reconciliation = run(deployment.clone(), Arc::clone(&context)).await;
    expect_job_list(&mut server, "jobs-list-empty.json").await;
    let (method, path, _, event, respond) = next(&mut server).await;
    assert_eq!((method, path.as_str()), (Method::POST, EVENTS));
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "CacheBusterJobRefused");
    assert_eq!(event["involvedObject"]["uid"], UID);
    assert_eq!(event["involvedObject"]["kind"], "Deployment");
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .starts_with("annotation cache-buster.io/job is not what")
    );
    answer(respond, StatusCode::CREATED, recorded("event-created.json"));
    assert_eq!(
        reconciliation.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(300))
    );

    // The same forged annotation again: no second Event.
    let again = run(deployment, context).await;
    expect_job_list(&mut server, "jobs-list-empty.json").await;
    assert!(again.await.unwrap().is_ok());
    assert_eq!(metrics.jobs_refused.get(), 1);
}

#[tokio::test]
async fn an_api_failure_is_an_error_to_retry() {
    let (context, mut server, metrics) = context(2);
    let reconciliation = run(stamped("nginx:1.25"), context).await;
    let (_, path, _, _, respond) = next(&mut server).await;
    assert_eq!(path, JOBS);
    answer(
        respond,
        StatusCode::INTERNAL_SERVER_ERROR,
        recorded("status-internal-error.json"),
    );
    let error = reconciliation.await.unwrap().unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("listing the Jobs of web failed: "),
        "{error}"
    );
    assert!(
        error.to_string().contains("etcdserver: request timed out"),
        "{error}"
    );
    assert_eq!(metrics.jobs_created.get(), 0);
}

#[tokio::test]
async fn a_deployment_without_stamp_costs_one_list_and_nothing_else() {
    let (context, mut server, metrics) = context(2);
    let mut deployment = stamped("nginx:1.25");
    deployment.metadata.annotations = None;
    let reconciliation = run(deployment, context).await;
    expect_job_list(&mut server, "jobs-list-empty.json").await;
    assert_eq!(
        reconciliation.await.unwrap().unwrap(),
        Action::await_change()
    );
    assert_eq!(metrics.jobs_created.get() + metrics.jobs_refused.get(), 0);
}
