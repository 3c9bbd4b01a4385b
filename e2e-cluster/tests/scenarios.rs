//! The product as a user installs it, on a real control plane: Flux-like
//! applies through the API server, Kubewarden's policy-server running the
//! released module, and the launcher with its own RBAC. Each scenario asserts
//! what the API server holds, never logs.
//!
//! One control plane serves every scenario (each in its own namespace); it
//! is stopped whatever happens. `cargo test -p cache-buster-e2e-cluster
//! --test scenarios -- NAME` runs the scenarios whose name contains NAME.

use anyhow::{Context as _, Result, anyhow, ensure};
use cache_buster_e2e_cluster::cluster::Cluster;
use cache_buster_e2e_cluster::eventually;
use cache_buster_e2e_cluster::sites::{deployments, flux_apply, ready_moment, site};
use cache_buster_e2e_cluster::tools::{Tools, real_tools_required};
use futures::FutureExt as _;
use futures::future::{LocalBoxFuture, join_all};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde::Deserialize as _;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[path = "scenarios/azure.rs"]
mod azure;
#[path = "scenarios/content.rs"]
mod content;
#[path = "scenarios/gcp.rs"]
mod gcp;
#[path = "scenarios/gitops.rs"]
mod gitops;
#[path = "scenarios/healthy.rs"]
mod healthy;
#[path = "scenarios/layers.rs"]
mod layers;
#[path = "scenarios/promises.rs"]
mod promises;
#[path = "scenarios/refused.rs"]
mod refused;
#[path = "scenarios/running.rs"]
mod running;

const JOB_ANNOTATION: &str = "cache-buster.io/job";
const JOB_NAME_ANNOTATION: &str = "cache-buster.io/job-name";
const HASH_ANNOTATION: &str = "cache-buster.io/image-hash";
const COMPANIONS: &str = "app.kubernetes.io/managed-by=cache-buster";
/// How long the launcher may take to act on a change.
const SOON: Duration = Duration::from_secs(30);

type Scenario = for<'a> fn(&'a Cluster) -> LocalBoxFuture<'a, Result<()>>;

/// Scenarios that share the cluster and run at the same time.
const CONCURRENT: &[(&str, Scenario)] = &[
    ("flux_apply_stamps_and_its_dry_run_changes_nothing", |c| {
        flux_apply_stamps(c).boxed_local()
    }),
    (
        "the_launcher_creates_the_stamped_job_once_and_its_pod_is_admitted",
        |c| job_created_once(c).boxed_local(),
    ),
    (
        "a_reapply_changes_nothing_and_an_image_change_makes_a_new_job",
        |c| reapply_and_image_change(c).boxed_local(),
    ),
    ("a_tampered_annotation_is_overwritten_by_the_policy", |c| {
        tampered_annotation(c).boxed_local()
    }),
    (
        "a_removed_label_removes_the_stamp_and_unlabelled_deployments_are_never_sent",
        |c| label_removed(c).boxed_local(),
    ),
    (
        "a_misconfigured_deployment_is_rejected_with_the_policys_message",
        |c| misconfigured(c).boxed_local(),
    ),
    ("deleting_the_deployment_garbage_collects_its_jobs", |c| {
        garbage_collected(c).boxed_local()
    }),
    ("a_rollback_a_b_a_purges_three_times", |c| {
        rollback_purges(c).boxed_local()
    }),
    ("a_superseded_waiting_job_is_cancelled", |c| {
        superseded_cancelled(c).boxed_local()
    }),
    (
        "a_failed_purge_gives_one_event_with_the_cdn_answer_and_deleting_the_job_reruns_it",
        |c| failed_purge(c).boxed_local(),
    ),
    ("finished_jobs_beyond_the_history_limit_are_pruned", |c| {
        history_pruned(c).boxed_local()
    }),
    (
        "the_kustomize_base_and_a_sites_component_render_and_apply_as_flux_would",
        |c| kustomize_renders(c).boxed_local(),
    ),
    ("kwctl_inspect_reads_the_annotated_policy", |c| {
        kwctl_inspect(c).boxed_local()
    }),
    ("site_namespaces_enforce_pod_security_restricted", |c| {
        pod_security_enforced(c).boxed_local()
    }),
    (
        "the_purge_argv_run_by_the_projects_program_reports_the_cdn_answer_when_it_fails",
        |c| purge_failure_reported(c).boxed_local(),
    ),
    (
        "the_job_purges_once_per_image_and_only_after_the_rollout_is_available",
        |c| running::purge_after_rollout(c).boxed_local(),
    ),
    (
        "cloudflare_purges_files_in_batches_then_prefixes_hosts_tags",
        |c| running::cloudflare_requests(c).boxed_local(),
    ),
    ("fastly_purges_surrogate_keys_urls_and_everything", |c| {
        running::fastly_requests(c).boxed_local()
    }),
    (
        "the_webhook_gets_the_rollouts_facts_and_the_bearer_token",
        |c| running::webhook_request(c).boxed_local(),
    ),
    ("in_quick_succession_the_stale_job_never_purges", |c| {
        running::quick_succession(c).boxed_local()
    }),
    (
        "a_flaky_cdn_is_retried_and_a_permanent_503_fails_the_job_visibly",
        |c| running::cdn_failures(c).boxed_local(),
    ),
    ("a_hanging_cdn_runs_into_the_purges_time_out", |c| {
        running::cdn_hang(c).boxed_local()
    }),
    ("missing_credentials_are_named_where_the_user_looks", |c| {
        running::missing_credentials(c).boxed_local()
    }),
    (
        "a_service_account_refused_by_the_api_server_fails_the_job_at_once_naming_it",
        |c| refused::refused_watch(c).boxed_local(),
    ),
    (
        "google_cloud_cdn_is_invalidated_with_a_signed_jwt_and_its_operation_awaited",
        |c| gcp::gcp_invalidates_and_waits(c).boxed_local(),
    ),
    (
        "azure_front_door_is_purged_with_an_entra_id_token_and_its_operation_awaited",
        |c| azure::azure_purges_and_waits(c).boxed_local(),
    ),
    (
        "a_content_site_purges_what_changed_since_its_last_successful_purge_rollback_included",
        |c| content::a_content_site_purges_what_changed_since_its_last_purge(c).boxed_local(),
    ),
    (
        "a_layered_site_purges_its_varnish_then_cloudflare_with_one_event",
        |c| layers::varnish_then_cloudflare(c).boxed_local(),
    ),
    (
        "a_cloudfront_rollback_a_b_a_makes_three_invalidations_and_three_events",
        |c| promises::cloudfront_rollback_invalidates_three_times(c).boxed_local(),
    ),
    (
        "a_newer_image_lets_a_running_purge_finish_and_cancels_a_waiting_job",
        |c| promises::a_running_purge_finishes_a_waiting_job_is_cancelled(c).boxed_local(),
    ),
    ("the_readmes_quick_start_ends_in_cache_buster_purged", |c| {
        running::quick_start(c).boxed_local()
    }),
    (
        "kubectl_diff_client_and_server_side_show_nothing_after_the_stamp_and_the_purge",
        |c| gitops::diffs_stay_clean_after_the_stamp_and_the_purge(c).boxed_local(),
    ),
];

/// Scenarios that stop or change a shared component: one at a time, after
/// the others.
const EXCLUSIVE: &[(&str, Scenario)] = &[
    // First: the watch error counters, since the launchers started, must
    // still be 0 (a_forbidden_watch… counts some on purpose).
    (
        "a_healthy_control_plane_counts_no_watch_error_and_every_purge_has_its_event",
        |c| healthy::healthy_watches(c).boxed_local(),
    ),
    (
        "a_launcher_restart_creates_no_duplicate_job_nor_event",
        |c| launcher_restart(c).boxed_local(),
    ),
    (
        "with_the_policy_bypassed_a_forged_stamp_is_refused_with_one_warning",
        |c| forged_stamp_refused(c).boxed_local(),
    ),
    (
        "a_forbidden_watch_makes_the_launcher_unready_says_why_and_is_counted",
        |c| forbidden_watch(c).boxed_local(),
    ),
    (
        "with_policy_server_down_failure_policy_ignore_lets_the_rollout_through_unstamped",
        |c| policy_server_down(c).boxed_local(),
    ),
    (
        "the_launcher_follows_the_cluster_admission_policys_settings_without_a_restart",
        |c| settings_followed(c).boxed_local(),
    ),
    (
        "a_killed_leader_is_replaced_by_the_standby_and_the_rollout_purges_once",
        |c| running::handover(c).boxed_local(),
    ),
];

fn main() -> ExitCode {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let selected =
        |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let concurrent: Vec<_> = CONCURRENT
        .iter()
        .filter(|(name, _)| selected(name))
        .collect();
    let exclusive: Vec<_> = EXCLUSIVE
        .iter()
        .filter(|(name, _)| selected(name))
        .collect();
    if concurrent.is_empty() && exclusive.is_empty() {
        println!("0 passed, 0 failed");
        return ExitCode::SUCCESS;
    }

    let tools = match Tools::locate() {
        Ok(tools) => tools,
        Err(missing) => {
            let count = concurrent.len() + exclusive.len();
            for program in &missing {
                println!("skipped: the cluster scenarios need {program}");
            }
            if real_tools_required() {
                eprintln!("REQUIRE_REAL_TOOLS=1: a missing program is a failure, not a skip.");
                println!("0 passed, {count} failed");
                return ExitCode::FAILURE;
            }
            println!("0 passed, 0 failed, {count} skipped");
            return ExitCode::SUCCESS;
        }
    };

    // One thread: every child process is started from it, so the kernel's
    // parent-death signal (setpriv --pdeathsig) fires only when the test
    // process itself ends.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let started = Instant::now();
        let mut cluster = match Cluster::start(tools).await {
            Ok(cluster) => cluster,
            Err(error) => {
                eprintln!("the control plane did not start: {error:#}");
                println!("0 passed, 1 failed");
                return ExitCode::FAILURE;
            }
        };
        println!("control plane up in {:.1?}", started.elapsed());
        let outcomes = join_all(
            concurrent
                .iter()
                .map(|(name, scenario)| run(&cluster, name, *scenario)),
        )
        .await;
        let mut failed: Vec<String> = outcomes.into_iter().flatten().collect();
        for (name, scenario) in exclusive {
            failed.extend(run(&cluster, name, *scenario).await);
        }
        let total = CONCURRENT
            .iter()
            .chain(EXCLUSIVE)
            .filter(|(name, _)| selected(name))
            .count();
        if !failed.is_empty()
            && let Some(kept) = cluster.keep_logs()
        {
            eprintln!("the control plane's logs are in {}", kept.display());
        }
        cluster.stop();
        println!("{} passed, {} failed", total - failed.len(), failed.len());
        if failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}

/// Runs one scenario within 5 minutes; its name if it failed.
async fn run(cluster: &Cluster, name: &str, scenario: Scenario) -> Option<String> {
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(300),
        AssertUnwindSafe(scenario(cluster)).catch_unwind(),
    )
    .await;
    let elapsed = started.elapsed();
    match outcome {
        Ok(Ok(Ok(()))) => {
            println!("test {name} ... ok ({elapsed:.1?})");
            None
        }
        Ok(Ok(Err(error))) => {
            println!("test {name} ... FAILED ({elapsed:.1?})\n  {error:#}");
            Some(name.to_owned())
        }
        Ok(Err(_)) => {
            println!("test {name} ... FAILED: panicked");
            Some(name.to_owned())
        }
        Err(_) => {
            println!("test {name} ... FAILED: timed out after {elapsed:.1?}");
            Some(name.to_owned())
        }
    }
}

// ----- a site, as a user's repository holds it -----

fn jobs(cluster: &Cluster, namespace: &str) -> Api<Job> {
    Api::namespaced(cluster.client.clone(), namespace)
}

fn annotation(deployment: &Deployment, key: &str) -> Option<String> {
    deployment.annotations().get(key).cloned()
}

fn stamped_job_name(deployment: &Deployment) -> Result<String> {
    annotation(deployment, JOB_NAME_ANNOTATION)
        .ok_or_else(|| anyhow!("{} is not stamped", deployment.name_any()))
}

async fn companion_jobs(cluster: &Cluster, namespace: &str) -> Result<Vec<Job>> {
    Ok(jobs(cluster, namespace)
        .list(&ListParams::default().labels(COMPANIONS))
        .await?
        .items)
}

async fn wait_for_job(cluster: &Cluster, namespace: &str, name: &str) -> Result<Job> {
    let api = jobs(cluster, namespace);
    eventually(&format!("Job {namespace}/{name} created"), SOON, || {
        let api = api.clone();
        async move { Ok(api.get_opt(name).await?) }
    })
    .await
}

/// The Events on Deployment `name` with this reason.
async fn events(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    reason: &str,
) -> Result<Vec<Event>> {
    let api: Api<Event> = Api::namespaced(cluster.client.clone(), namespace);
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|event| {
            event.involved_object.kind.as_deref() == Some("Deployment")
                && event.involved_object.name.as_deref() == Some(name)
                && event.reason.as_deref() == Some(reason)
        })
        .collect())
}

async fn wait_for_events(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    reason: &str,
    count: usize,
) -> Result<Vec<Event>> {
    eventually(
        &format!("{count} {reason} Event(s) on {namespace}/{name}"),
        SOON,
        || async move {
            let found = events(cluster, namespace, name, reason).await?;
            Ok((found.len() >= count).then_some(found))
        },
    )
    .await
}

/// Plays the kubelet's last word for a companion Job's pods: each pod of the
/// Job (by uid) still pending ends Succeeded, or Failed with the purge
/// container's termination message, through the status subresource.
async fn finish_pods(
    cluster: &Cluster,
    namespace: &str,
    job: &Job,
    failure: Option<&str>,
) -> Result<usize> {
    let uid = job.uid().ok_or_else(|| anyhow!("Job without uid"))?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let mut finished = 0;
    for pod in pods
        .list(&ListParams::default().labels(&format!("controller-uid={uid}")))
        .await?
        .items
    {
        let phase = pod.status.as_ref().and_then(|status| status.phase.clone());
        if matches!(phase.as_deref(), Some("Succeeded" | "Failed")) {
            continue;
        }
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let terminated = |name: &str, code: i32, message: Option<&str>| {
            json!({"name": name, "image": "", "imageID": "", "ready": false, "restartCount": 0,
                   "state": {"terminated": {"exitCode": code, "reason": if code == 0 {"Completed"} else {"Error"},
                                            "message": message, "startedAt": now, "finishedAt": now}}})
        };
        let (phase, purge) = match failure {
            None => ("Succeeded", terminated("purge", 0, None)),
            Some(message) => ("Failed", terminated("purge", 1, Some(message))),
        };
        let status = json!({"status": {
            "phase": phase,
            "startTime": now,
            "initContainerStatuses": [terminated("wait-rollout", 0, None)],
            "containerStatuses": [purge],
            "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}]
        }});
        pods.patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await?;
        finished += 1;
    }
    Ok(finished)
}

/// Finishes the Job's pods until the Job itself is Complete (or Failed).
async fn run_job_to_end(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    failure: Option<&str>,
) -> Result<Job> {
    let wanted = if failure.is_some() {
        "Failed"
    } else {
        "Complete"
    };
    // A failing Job is retried (backoffLimit) after the Job controller's
    // back-off of 10 s, 20 s, 40 s: up to 70 s.
    eventually(
        &format!("Job {namespace}/{name} {wanted}"),
        Duration::from_secs(150),
        || async move {
            let job = jobs(cluster, namespace).get(name).await?;
            let done = job
                .status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .any(|c| c.type_ == wanted && c.status == "True");
            if done {
                return Ok(Some(job));
            }
            finish_pods(cluster, namespace, &job, failure).await?;
            Ok(None)
        },
    )
    .await
}

/// `subset` holds nothing that `whole` does not (the API server adds
/// defaults; it must change nothing the policy wrote).
fn is_subset(subset: &Value, whole: &Value, path: &str) -> Result<()> {
    match (subset, whole) {
        (Value::Object(small), Value::Object(large)) => {
            for (key, value) in small {
                let inner = large
                    .get(key)
                    .ok_or_else(|| anyhow!("{path}.{key} is missing"))?;
                is_subset(value, inner, &format!("{path}.{key}"))?;
            }
            Ok(())
        }
        (Value::Array(small), Value::Array(large)) => {
            ensure!(
                small.len() == large.len(),
                "{path}: {} items, not {}",
                large.len(),
                small.len()
            );
            for (index, (a, b)) in small.iter().zip(large).enumerate() {
                is_subset(a, b, &format!("{path}[{index}]"))?;
            }
            Ok(())
        }
        _ => {
            ensure!(subset == whole, "{path}: {whole} instead of {subset}");
            Ok(())
        }
    }
}

async fn stable_for(duration: Duration) {
    tokio::time::sleep(duration).await;
}

// ----- the scenarios -----

async fn flux_apply_stamps(cluster: &Cluster) -> Result<()> {
    let ns = "flux-apply";
    cluster.site_namespace(ns).await?;
    let manifest = site("shop", ns, "nginx:1.27.1");
    let dry = flux_apply(cluster, &manifest, true).await?;
    for key in [HASH_ANNOTATION, JOB_NAME_ANNOTATION, JOB_ANNOTATION] {
        ensure!(
            annotation(&dry, key).is_some(),
            "the dry run's answer lacks {key}"
        );
    }
    ensure!(
        deployments(cluster, ns).get_opt("shop").await?.is_none(),
        "the dry run stored the Deployment"
    );
    ensure!(
        companion_jobs(cluster, ns).await?.is_empty(),
        "a dry run made a Job"
    );
    let stored = flux_apply(cluster, &manifest, false).await?;
    for key in [HASH_ANNOTATION, JOB_NAME_ANNOTATION, JOB_ANNOTATION] {
        ensure!(
            annotation(&stored, key) == annotation(&dry, key),
            "{key} differs between the dry run and the apply"
        );
    }
    ensure!(
        stamped_job_name(&stored)?.starts_with("shop-cache-buster-"),
        "job name {:?}",
        stamped_job_name(&stored)
    );
    Ok(())
}

async fn job_created_once(cluster: &Cluster) -> Result<()> {
    let ns = "job-once";
    cluster.site_namespace(ns).await?;
    let stored = flux_apply(cluster, &site("shop", ns, "nginx:1.27.1"), false).await?;
    let name = stamped_job_name(&stored)?;
    let job = wait_for_job(cluster, ns, &name).await?;
    let owner = job
        .owner_references()
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("Job without owner"))?;
    ensure!(
        owner.kind == "Deployment"
            && owner.name == "shop"
            && Some(&owner.uid) == stored.uid().as_ref(),
        "owner {owner:?}"
    );
    let stamp: Value =
        serde_json::from_str(&annotation(&stored, JOB_ANNOTATION).unwrap_or_default())?;
    is_subset(&stamp, &serde_json::to_value(&job)?, "job")?;
    // The Job controller's pod passes Pod Security "restricted": it is
    // created, and the Job controller reports no FailedCreate.
    let uid = job.uid().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let namespace_events: Api<Event> = Api::namespaced(cluster.client.clone(), ns);
    eventually("the Job's pod created", SOON, || {
        let pods = pods.clone();
        let namespace_events = namespace_events.clone();
        let selector = format!("controller-uid={uid}");
        async move {
            let failed_create: Vec<String> = namespace_events
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter(|event| event.reason.as_deref() == Some("FailedCreate"))
                .map(|event| event.message.unwrap_or_default())
                .collect();
            ensure!(failed_create.is_empty(), "FailedCreate: {failed_create:?}");
            Ok(pods
                .list(&ListParams::default().labels(&selector))
                .await?
                .items
                .into_iter()
                .next())
        }
    })
    .await?;
    let created = wait_for_events(cluster, ns, "shop", "CacheBusterJobCreated", 1).await?;
    ensure!(
        created[0]
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("docker.io/library/nginx:1.27.1"),
        "{:?}",
        created[0].message
    );
    stable_for(Duration::from_secs(2)).await;
    ensure!(
        companion_jobs(cluster, ns).await?.len() == 1,
        "more than one Job"
    );
    Ok(())
}

async fn reapply_and_image_change(cluster: &Cluster) -> Result<()> {
    let ns = "reapply";
    cluster.site_namespace(ns).await?;
    let first = flux_apply(cluster, &site("shop", ns, "nginx:1.27.1"), false).await?;
    let first_job = wait_for_job(cluster, ns, &stamped_job_name(&first)?).await?;
    // The Deployment controller writes the status once; after that, an
    // unchanged manifest must cause no write at all (the policy returns no
    // patch), so the resourceVersion stays.
    let settled = eventually("the Deployment's status written", SOON, || async move {
        let current = deployments(cluster, ns).get("shop").await?;
        let observed = current
            .status
            .as_ref()
            .and_then(|status| status.observed_generation);
        Ok((observed == current.metadata.generation).then_some(current))
    })
    .await?;
    stable_for(Duration::from_secs(1)).await;
    let before = deployments(cluster, ns).get("shop").await?;
    let again = flux_apply(cluster, &site("shop", ns, "nginx:1.27.1"), false).await?;
    ensure!(
        again.resource_version() == before.resource_version()
            && again.metadata.generation == settled.metadata.generation,
        "a re-apply of the same manifest changed the Deployment"
    );
    stable_for(Duration::from_secs(2)).await;
    let jobs_now = companion_jobs(cluster, ns).await?;
    ensure!(
        jobs_now.len() == 1 && jobs_now[0].uid() == first_job.uid(),
        "a re-apply made another Job"
    );
    let changed = flux_apply(cluster, &site("shop", ns, "nginx:1.27.2"), false).await?;
    let new_name = stamped_job_name(&changed)?;
    ensure!(
        new_name != first_job.name_any(),
        "the image change kept the Job name"
    );
    wait_for_job(cluster, ns, &new_name).await?;
    Ok(())
}

async fn tampered_annotation(cluster: &Cluster) -> Result<()> {
    let ns = "tampered";
    cluster.site_namespace(ns).await?;
    let stored = flux_apply(cluster, &site("shop", ns, "nginx:1.27.1"), false).await?;
    let forged = r#"{"apiVersion":"batch/v1","kind":"Job","spec":{"template":{"spec":{"containers":[{"name":"x","image":"evil"}]}}}}"#;
    let patched = deployments(cluster, ns)
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {JOB_ANNOTATION: forged}}})),
        )
        .await?;
    ensure!(
        annotation(&patched, JOB_ANNOTATION) == annotation(&stored, JOB_ANNOTATION),
        "the forged Job annotation was stored"
    );
    Ok(())
}

async fn label_removed(cluster: &Cluster) -> Result<()> {
    let ns = "label-removed";
    cluster.site_namespace(ns).await?;
    let stored = flux_apply(cluster, &site("shop", ns, "nginx:1.27.1"), false).await?;
    wait_for_job(cluster, ns, &stamped_job_name(&stored)?).await?;
    let mut unlabelled = site("shop", ns, "nginx:1.27.2");
    unlabelled["metadata"]["labels"]
        .as_object_mut()
        .map(|labels| labels.remove("cache-buster.io/site"));
    let after = flux_apply(cluster, &unlabelled, false).await?;
    for key in [HASH_ANNOTATION, JOB_NAME_ANNOTATION, JOB_ANNOTATION] {
        ensure!(
            annotation(&after, key).is_none(),
            "{key} stayed after the label went"
        );
    }
    // An unlabelled Deployment is never sent to the policy: a stamp-like
    // annotation on it stays (the policy would remove it).
    let mut other = site("blog", ns, "nginx:1.27.1");
    other["metadata"]["labels"]
        .as_object_mut()
        .map(|labels| labels.remove("cache-buster.io/site"));
    other["metadata"]["annotations"][JOB_NAME_ANNOTATION] = json!("left-alone");
    let blog = flux_apply(cluster, &other, false).await?;
    ensure!(
        annotation(&blog, JOB_NAME_ANNOTATION).as_deref() == Some("left-alone"),
        "the unlabelled Deployment reached the policy"
    );
    stable_for(Duration::from_secs(2)).await;
    ensure!(
        companion_jobs(cluster, ns).await?.len() == 1,
        "a Job was made without the label"
    );
    Ok(())
}

async fn misconfigured(cluster: &Cluster) -> Result<()> {
    let ns = "misconfigured";
    cluster.site_namespace(ns).await?;
    // A provider that does not exist, and a target the provider cannot
    // purge (Fastly purges no prefix): each refused, naming the annotation.
    for (annotations, named) in [
        (
            json!({"cache-buster.io/provider": "akamia"}),
            ["annotation cache-buster.io/provider", "akamia"],
        ),
        (
            json!({"cache-buster.io/provider": "fastly", "cache-buster.io/prefixes": "shop.example.com/a"}),
            ["annotation cache-buster.io/prefixes", "fastly"],
        ),
    ] {
        let mut manifest = site("shop", ns, "nginx:1.27.1");
        manifest["metadata"]["annotations"] = annotations.clone();
        let error = flux_apply(cluster, &manifest, false)
            .await
            .err()
            .ok_or_else(|| anyhow!("a Deployment with {annotations} was accepted"))?;
        let text = format!("{error:#}");
        ensure!(
            text.contains("denied the request") && named.iter().all(|name| text.contains(name)),
            "{text}"
        );
    }
    ensure!(
        deployments(cluster, ns).get_opt("shop").await?.is_none(),
        "it was stored"
    );
    Ok(())
}

async fn garbage_collected(cluster: &Cluster) -> Result<()> {
    let ns = "garbage";
    cluster.site_namespace(ns).await?;
    let stored = flux_apply(cluster, &site("shop", ns, "nginx:1.27.1"), false).await?;
    wait_for_job(cluster, ns, &stamped_job_name(&stored)?).await?;
    deployments(cluster, ns)
        .delete("shop", &DeleteParams::background())
        .await?;
    eventually(
        "the Deployment's Jobs garbage-collected",
        Duration::from_secs(60),
        || async move { Ok(companion_jobs(cluster, ns).await?.is_empty().then_some(())) },
    )
    .await
}

async fn rollback_purges(cluster: &Cluster) -> Result<()> {
    let ns = "rollback";
    cluster.site_namespace(ns).await?;
    let mut job_uids = Vec::new();
    for (round, image) in ["nginx:1.27.1", "nginx:1.27.2", "nginx:1.27.1"]
        .iter()
        .enumerate()
    {
        // Creation times have a resolution of one second, and here a Job
        // finishes at once: the next image's Job must be created in a later
        // second to be told apart (README, "Every rollout purges").
        if round > 0 {
            stable_for(Duration::from_millis(1100)).await;
        }
        let stored = flux_apply(cluster, &site("shop", ns, image), false).await?;
        let name = stamped_job_name(&stored)?;
        // The Job of this rollout: for the rollback, a new one of A's name.
        let job = eventually(&format!("round {round}: a new Job {name}"), SOON, || {
            let name = name.clone();
            let seen = job_uids.clone();
            async move {
                Ok(jobs(cluster, ns)
                    .get_opt(&name)
                    .await?
                    .filter(|job| !seen.contains(&job.uid())))
            }
        })
        .await?;
        job_uids.push(job.uid());
        run_job_to_end(cluster, ns, &name, None).await?;
        wait_for_events(cluster, ns, "shop", "CacheBusterPurged", round + 1).await?;
    }
    ensure!(
        events(cluster, ns, "shop", "CacheBusterJobCreated")
            .await?
            .len()
            == 3,
        "not three Jobs created"
    );
    // A resync does not run A again.
    stable_for(Duration::from_secs(2)).await;
    ensure!(
        events(cluster, ns, "shop", "CacheBusterPurged")
            .await?
            .len()
            == 3,
        "more than three purges"
    );
    let metrics = cluster.launcher_metrics().await?;
    ensure!(
        metrics.contains(
            "cache_buster_launcher_purge_duration_seconds_count{provider=\"cloudflare\"}"
        ),
        "{metrics}"
    );
    Ok(())
}

async fn superseded_cancelled(cluster: &Cluster) -> Result<()> {
    let ns = "superseded";
    cluster.site_namespace(ns).await?;
    let first = flux_apply(cluster, &site("shop", ns, "nginx:1.27.1"), false).await?;
    let old = stamped_job_name(&first)?;
    wait_for_job(cluster, ns, &old).await?;
    let second = flux_apply(cluster, &site("shop", ns, "nginx:1.27.2"), false).await?;
    wait_for_job(cluster, ns, &stamped_job_name(&second)?).await?;
    eventually("the superseded Job deleted", SOON, || {
        let old = old.clone();
        async move {
            Ok(jobs(cluster, ns)
                .get_opt(&old)
                .await?
                .is_none()
                .then_some(()))
        }
    })
    .await?;
    let cancelled = wait_for_events(cluster, ns, "shop", "CacheBusterJobCancelled", 1).await?;
    ensure!(
        cancelled[0]
            .message
            .as_deref()
            .unwrap_or_default()
            .contains(&old),
        "{:?}",
        cancelled[0].message
    );
    Ok(())
}

async fn failed_purge(cluster: &Cluster) -> Result<()> {
    let ns = "failed-purge";
    cluster.site_namespace(ns).await?;
    let stored = flux_apply(cluster, &site("shop", ns, "nginx:1.27.1"), false).await?;
    let name = stamped_job_name(&stored)?;
    let first = wait_for_job(cluster, ns, &name).await?;
    // The purge's outcome, as its termination message.
    let answer = r#"{"provider":"cloudflare","result":"failed","requests":1,"attempts":1,"purged":[],"seconds":0.2,"failure":{"request":"POST https://api.cloudflare.com/client/v4/zones/[redacted]/purge_cache","status":403,"error":"HTTP 403","answer":"{\"success\":false,\"errors\":[{\"code\":10000,\"message\":\"Authentication error\"}]}"}}"#;
    run_job_to_end(cluster, ns, &name, Some(answer)).await?;
    let failed = wait_for_events(cluster, ns, "shop", "CacheBusterPurgeFailed", 1).await?;
    let message = failed[0].message.clone().unwrap_or_default();
    ensure!(
        failed[0].type_.as_deref() == Some("Warning"),
        "{:?}",
        failed[0].type_
    );
    ensure!(
        message.contains("BackoffLimitExceeded")
            && message.contains("purge_cache: HTTP 403; the CDN answered:")
            && message.contains("Authentication error")
            && message.contains(&format!("kubectl delete job {name}")),
        "{message}"
    );
    stable_for(Duration::from_secs(2)).await;
    ensure!(
        events(cluster, ns, "shop", "CacheBusterPurgeFailed")
            .await?
            .len()
            == 1,
        "more than one Event"
    );
    // Retry without a redeploy.
    jobs(cluster, ns)
        .delete(&name, &DeleteParams::background())
        .await?;
    let rerun = eventually("the deleted Job created again", SOON, || {
        let name = name.clone();
        let uid = first.uid();
        async move {
            Ok(jobs(cluster, ns)
                .get_opt(&name)
                .await?
                .filter(|job| job.uid() != uid))
        }
    })
    .await?;
    run_job_to_end(cluster, ns, &rerun.name_any(), None).await?;
    wait_for_events(cluster, ns, "shop", "CacheBusterPurged", 1).await?;
    let metrics = cluster.launcher_metrics().await?;
    ensure!(
        metrics.contains(
            "cache_buster_launcher_purges_total{provider=\"cloudflare\",result=\"failed\"}"
        ),
        "{metrics}"
    );
    Ok(())
}

async fn history_pruned(cluster: &Cluster) -> Result<()> {
    let ns = "history";
    cluster.site_namespace(ns).await?;
    let mut names = Vec::new();
    for image in [
        "nginx:1.27.1",
        "nginx:1.27.2",
        "nginx:1.27.3",
        "nginx:1.27.4",
    ] {
        // The history is ordered by completion time, to the second: one
        // rollout per second at most, as in rollback_purges.
        if !names.is_empty() {
            stable_for(Duration::from_millis(1100)).await;
        }
        let stored = flux_apply(cluster, &site("shop", ns, image), false).await?;
        let name = stamped_job_name(&stored)?;
        wait_for_job(cluster, ns, &name).await?;
        run_job_to_end(cluster, ns, &name, None).await?;
        names.push(name);
    }
    // --history-limit=2: the current Job and the two newest finished before it.
    eventually("the oldest Job pruned", SOON, || {
        let oldest = names[0].clone();
        async move {
            Ok(jobs(cluster, ns)
                .get_opt(&oldest)
                .await?
                .is_none()
                .then_some(()))
        }
    })
    .await?;
    let left: Vec<String> = companion_jobs(cluster, ns)
        .await?
        .iter()
        .map(|job| job.name_any())
        .collect();
    ensure!(left.len() == 3, "{left:?}");
    Ok(())
}

async fn kwctl_inspect(cluster: &Cluster) -> Result<()> {
    let module = cache_buster_e2e_cluster::cluster::policy_module();
    let output = cache_buster_e2e_cluster::process::run(
        &cluster.tools.kwctl,
        &["inspect", &module.display().to_string()],
        &[("HOME", cluster.root().join("home").as_os_str())],
    )?;
    for expected in ["cache-buster", "mutating", "apps", "deployments"] {
        ensure!(
            output.contains(expected),
            "kwctl inspect does not show {expected}:\n{output}"
        );
    }
    Ok(())
}

async fn launcher_restart(cluster: &Cluster) -> Result<()> {
    let ns = "restart";
    cluster.site_namespace(ns).await?;
    let stored = flux_apply(cluster, &site("shop", ns, "nginx:1.27.1"), false).await?;
    let name = stamped_job_name(&stored)?;
    let job = wait_for_job(cluster, ns, &name).await?;
    run_job_to_end(cluster, ns, &name, None).await?;
    wait_for_events(cluster, ns, "shop", "CacheBusterPurged", 1).await?;
    cluster.stop_launcher()?;
    cluster.start_launcher().await?;
    // The restarted launcher re-lists everything; it must find it all done.
    stable_for(Duration::from_secs(3)).await;
    let now = companion_jobs(cluster, ns).await?;
    ensure!(
        now.len() == 1 && now[0].uid() == job.uid(),
        "the restart re-created the Job"
    );
    for reason in ["CacheBusterJobCreated", "CacheBusterPurged"] {
        let found = events(cluster, ns, "shop", reason).await?;
        ensure!(
            found.len() == 1,
            "{} {reason} Events after the restart",
            found.len()
        );
    }
    Ok(())
}

async fn forged_stamp_refused(cluster: &Cluster) -> Result<()> {
    let ns = "forged";
    cluster.site_namespace(ns).await?;
    // A stamp the policy made for another image, copied by hand.
    let real = flux_apply(cluster, &site("shop", ns, "nginx:1.27.1"), true).await?;
    let stamp: BTreeMap<String, String> = [HASH_ANNOTATION, JOB_NAME_ANNOTATION, JOB_ANNOTATION]
        .iter()
        .filter_map(|key| annotation(&real, key).map(|value| ((*key).to_owned(), value)))
        .collect();
    cluster.remove_webhook().await?;
    let outcome = async {
        let mut manifest = site("shop", ns, "nginx:1.27.9");
        for (key, value) in &stamp {
            manifest["metadata"]["annotations"][key] = json!(value);
        }
        flux_apply(cluster, &manifest, false).await?;
        let refused = wait_for_events(cluster, ns, "shop", "CacheBusterJobRefused", 1).await?;
        ensure!(
            refused[0].type_.as_deref() == Some("Warning"),
            "{:?}",
            refused[0].type_
        );
        stable_for(Duration::from_secs(2)).await;
        ensure!(
            companion_jobs(cluster, ns).await?.is_empty(),
            "a Job was created from a forged stamp"
        );
        ensure!(
            events(cluster, ns, "shop", "CacheBusterJobRefused")
                .await?
                .len()
                == 1,
            "more than one Warning"
        );
        Ok(())
    }
    .await;
    cluster
        .register_webhook()
        .await
        .context("registering the webhook again")?;
    outcome
}

async fn policy_server_down(cluster: &Cluster) -> Result<()> {
    let ns = "policy-server-down";
    cluster.site_namespace(ns).await?;
    cluster.stop_policy_server()?;
    let outcome = async {
        let stored = flux_apply(cluster, &site("shop", ns, "nginx:1.27.1"), false).await?;
        ensure!(
            annotation(&stored, JOB_ANNOTATION).is_none(),
            "stamped without a policy-server"
        );
        let sets: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), ns);
        eventually("the Deployment's ReplicaSet", SOON, || {
            let sets = sets.clone();
            async move {
                Ok(sets
                    .list(&ListParams::default())
                    .await?
                    .items
                    .into_iter()
                    .next())
            }
        })
        .await?;
        stable_for(Duration::from_secs(2)).await;
        ensure!(
            companion_jobs(cluster, ns).await?.is_empty(),
            "a Job without a stamp"
        );
        Ok(())
    }
    .await;
    cluster
        .start_policy_server()
        .await
        .context("starting policy-server again")?;
    outcome
}

/// The purge container's argv exactly as the policy stamps it, run by the
/// project's program in a sandbox that mounts the Secret where the Job
/// does, against a CDN that refuses: its termination message names the
/// HTTP status and the CDN's answer, the webhook's URL redacted, and the
/// launcher's Event quotes them.
async fn purge_failure_reported(cluster: &Cluster) -> Result<()> {
    use cache_buster::deployment::{RequestContext, derive_stamp};
    use cache_buster::settings::Settings;
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let answer = r#"{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}"#;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    // One request is enough: a 403 is not retried.
    let server = tokio::spawn(async move {
        let mut requests = Vec::new();
        if let Ok(Ok((mut stream, _))) =
            tokio::time::timeout(Duration::from_secs(10), listener.accept()).await
        {
            let mut buffer = vec![0; 65536];
            let read = stream.read(&mut buffer).await.unwrap_or(0);
            requests.push(String::from_utf8_lossy(&buffer[..read]).into_owned());
            let response = format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
        requests
    });

    let mut deployment: Deployment = serde_json::from_value(site("shop", "web", "nginx:1.27.1"))?;
    deployment
        .metadata
        .annotations
        .get_or_insert_default()
        .insert("cache-buster.io/provider".into(), "webhook".into());
    let (stamp, _) = derive_stamp(&Settings::default(), &deployment, RequestContext::default())?;
    let job: Job = serde_json::from_str(&stamp.job_json().unwrap())?;
    let pod = job
        .spec
        .and_then(|spec| spec.template.spec)
        .ok_or_else(|| anyhow!("no pod"))?;
    let purge = pod
        .containers
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("no container"))?;
    ensure!(
        purge.termination_message_policy.as_deref() == Some("FallbackToLogsOnError"),
        "{purge:?}"
    );
    let mount = purge
        .volume_mounts
        .iter()
        .flatten()
        .find(|mount| mount.name == "credentials")
        .ok_or_else(|| anyhow!("no credentials mount"))?;

    // The Secret's files, with the newline a Secret made from a file has.
    let secret = cluster.root().join("purge-secret");
    std::fs::create_dir_all(&secret)?;
    std::fs::write(
        secret.join("WEBHOOK_URL"),
        format!("http://127.0.0.1:{port}/purge\n"),
    )?;
    std::fs::write(secret.join("WEBHOOK_TOKEN"), "s3cret\n")?;
    let termination_log = cluster.root().join("purge-termination-log");
    std::fs::write(&termination_log, "")?;
    // The image's root, as the test node gives a container its own.
    let pulled = cluster.images.pull(&cluster.image).await?;
    let root = cluster.root().join("purge-root");
    pulled.container_root(&root)?;
    let mut command = std::process::Command::new(&cluster.tools.bwrap);
    command
        .arg("--bind")
        .arg(&root)
        .arg("/")
        .args(["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/run"])
        .arg("--ro-bind")
        .arg(&secret)
        .arg(&mount.mount_path)
        .arg("--bind")
        .arg(&termination_log)
        .arg("/dev/termination-log")
        .args(["--remount-ro", "/", "--clearenv", "--setenv", "PATH"])
        .arg(pulled.image.env("PATH").unwrap_or("/usr/local/bin"))
        .arg("--")
        .args(purge.command.iter().flatten())
        .args(purge.args.iter().flatten());
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    let message = std::fs::read_to_string(&termination_log)?;
    // A refused credential is final: exit code 2, the Job fails at once.
    ensure!(
        output.status.code() == Some(cache_buster::job::FINAL_FAILURE_EXIT_CODE),
        "purge exited with {:?}: {message} {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let outcome: Value = serde_json::from_str(&message)?;
    ensure!(outcome["failure"]["status"] == 403, "{message}");
    ensure!(
        outcome["failure"]["request"] == "POST [redacted]",
        "{message}"
    );
    ensure!(
        !message.contains("s3cret") && !message.contains(&format!("127.0.0.1:{port}")),
        "{message}"
    );

    let requests = server.await?;
    let request = requests
        .first()
        .ok_or_else(|| anyhow!("nothing reached the CDN"))?;
    ensure!(request.starts_with("POST /purge HTTP/1.1"), "{request}");
    // Header names are case-insensitive (RFC 9110); HTTP/1.1 clients of
    // today send them in lower case.
    let header = |name: &str, value: &str| {
        request.lines().any(|line| {
            line.split_once(':').is_some_and(|(field, content)| {
                field.eq_ignore_ascii_case(name) && content.trim() == value
            })
        })
    };
    ensure!(header("Authorization", "Bearer s3cret"), "{request}");
    ensure!(header("Content-Type", "application/json"), "{request}");

    // What the kubelet would report, as the launcher quotes it.
    let status = ContainerStatus {
        name: purge.name.clone(),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: cache_buster::job::FINAL_FAILURE_EXIT_CODE,
                message: Some(message),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let quoted = cache_buster_cli::launcher::events::failed_container(&status).unwrap_or_default();
    ensure!(
        quoted.starts_with(
            "container purge exited with 2: POST [redacted]: HTTP 403; the CDN answered: "
        ) && quoted.contains("Authentication error"),
        "{quoted}"
    );
    Ok(())
}

/// The harness's own premise: a site namespace refuses a pod that breaks
/// Pod Security "restricted", so an admitted companion pod means something.
async fn pod_security_enforced(cluster: &Cluster) -> Result<()> {
    let ns = "pod-security";
    cluster.site_namespace(ns).await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "root"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))?;
    let error = pods
        .create(&Default::default(), &pod)
        .await
        .err()
        .ok_or_else(|| anyhow!("a pod without any restriction was admitted"))?;
    let text = error.to_string();
    ensure!(text.contains("violates PodSecurity \"restricted"), "{text}");
    Ok(())
}

/// RBAC without list and watch on Jobs (a common mistake when copying the
/// ClusterRole): the launcher runs, but /readyz says which watch fails and
/// why, the failures are counted, and it recovers once RBAC is fixed.
async fn forbidden_watch(cluster: &Cluster) -> Result<()> {
    use k8s_openapi::api::rbac::v1::ClusterRole;
    let roles: Api<ClusterRole> = Api::all(cluster.client.clone());
    let original = roles.get("cache-buster:launcher").await?;
    let mut narrowed = original.clone();
    for rule in narrowed.rules.iter_mut().flatten() {
        if rule
            .resources
            .iter()
            .flatten()
            .any(|resource| resource == "jobs")
        {
            rule.verbs = vec!["create".into(), "delete".into()];
        }
    }
    cluster.stop_launcher()?;
    roles
        .replace("cache-buster:launcher", &Default::default(), &narrowed)
        .await?;
    let outcome = async {
        cluster.spawn_launcher(false).await?;
        let body = readyz_until(
            cluster,
            "/readyz failing on the jobs watch",
            SOON,
            |status, body| status == 503 && body.contains("failing"),
        )
        .await?;
        ensure!(
            body.contains("watch of jobs in all namespaces failing (retried with back-off): ")
                && body.contains("jobs.batch is forbidden"),
            "{body}"
        );
        ensure!(
            !body.contains("deployments in all namespaces failing"),
            "{body}"
        );
        let metrics = cluster.launcher_metrics().await?;
        let errors = metrics
            .lines()
            .find_map(|line| {
                line.strip_prefix("cache_buster_launcher_watch_errors_total{resource=\"jobs\"} ")
            })
            .and_then(|count| count.trim().parse::<u64>().ok())
            .unwrap_or(0);
        ensure!(errors >= 1, "no watch error counted:\n{metrics}");
        Ok(())
    }
    .await;
    let mut restored = original.clone();
    restored.metadata.resource_version = None;
    roles
        .replace("cache-buster:launcher", &Default::default(), &restored)
        .await?;
    outcome?;
    readyz_until(
        cluster,
        "/readyz ok once RBAC is fixed",
        Duration::from_secs(90),
        |status, _| status == 200,
    )
    .await
    .map(drop)
}

/// The launcher's /readyz answer, once `wanted(status, body)` holds.
async fn readyz_until(
    cluster: &Cluster,
    what: &str,
    within: Duration,
    wanted: fn(u16, &str) -> bool,
) -> Result<String> {
    let port = cluster.launcher_port;
    eventually(what, within, || async move {
        let (status, body) =
            cache_buster_e2e_cluster::cluster::http_get_with_status(port, "/readyz").await?;
        Ok(wanted(status, &body).then_some(body))
    })
    .await
}

/// deploy/ is a kustomize base and deploy/site a component, rendered by a
/// real kustomize (kubectl's), as a Flux Kustomization renders them; the
/// example site of docs/flux.md applies and works.
async fn kustomize_renders(cluster: &Cluster) -> Result<()> {
    use cache_buster_e2e_cluster::cluster::apply_yaml;
    use cache_buster_e2e_cluster::process::run;
    use cache_buster_e2e_cluster::tools::repository;
    let root = repository();
    let render = |path: &str| {
        run(
            &cluster.tools.kubectl,
            &["kustomize", &root.join(path).display().to_string()],
            &[],
        )
    };
    let kinds = |yaml: &str| -> Result<Vec<(String, String, String)>> {
        serde_yaml::Deserializer::from_str(yaml)
            .map(|document| {
                let value = Value::deserialize(document)?;
                let field = |pointer: &str| {
                    value
                        .pointer(pointer)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                Ok((
                    field("/kind"),
                    field("/metadata/namespace"),
                    field("/metadata/name"),
                ))
            })
            .collect()
    };
    let base = render("deploy")?;
    let mut rendered = kinds(&base)?;
    rendered.sort();
    let launcher = |kind: &str, namespace: &str, name: &str| {
        (kind.to_owned(), namespace.to_owned(), name.to_owned())
    };
    ensure!(
        rendered
            == [
                launcher("ClusterAdmissionPolicy", "", "cache-buster"),
                launcher("ClusterRole", "", "cache-buster:launcher"),
                launcher("ClusterRoleBinding", "", "cache-buster:launcher"),
                launcher("Deployment", "cache-buster-system", "launcher"),
                launcher("Lease", "cache-buster-system", "launcher"),
                launcher("Namespace", "", "cache-buster-system"),
                launcher("PodDisruptionBudget", "cache-buster-system", "launcher"),
                launcher("Role", "cache-buster-system", "launcher"),
                launcher("RoleBinding", "cache-buster-system", "launcher"),
                launcher("ServiceAccount", "cache-buster-system", "launcher"),
            ],
        "the base renders {rendered:?}"
    );

    let site = render("docs/examples/site")?;
    let mut rendered = kinds(&site)?;
    rendered.sort();
    ensure!(
        rendered
            == [
                launcher("Deployment", "web", "shop"),
                launcher("NetworkPolicy", "web", "cache-buster-job"),
                launcher("NetworkPolicy", "web", "cache-buster-job-registries"),
                launcher("Role", "web", "cache-buster"),
                launcher("RoleBinding", "web", "cache-buster"),
                launcher("ServiceAccount", "web", "cache-buster"),
            ],
        "the site renders {rendered:?}"
    );
    ensure!(
        !base.contains("kind: Secret") && !site.contains("kind: Secret"),
        "an example Secret is rendered"
    );

    // Applied as Flux applies it, in a namespace that enforces "restricted".
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster.client.clone());
    let namespace = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}
    }))?;
    namespaces.create(&Default::default(), &namespace).await?;
    apply_yaml(&cluster.client, &site, None, &[]).await?;
    let stored = deployments(cluster, "web").get("shop").await?;
    let job = wait_for_job(cluster, "web", &stamped_job_name(&stored)?).await?;
    // The Job's pod runs as the component's ServiceAccount, and is admitted.
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "web");
    let uid = job.uid().unwrap_or_default();
    let pod = eventually("the Job's pod", SOON, || {
        let pods = pods.clone();
        let uid = uid.clone();
        async move {
            Ok(pods
                .list(&ListParams::default().labels(&format!("controller-uid={uid}")))
                .await?
                .items
                .into_iter()
                .next())
        }
    })
    .await?;
    let account = pod
        .spec
        .and_then(|spec| spec.service_account_name)
        .unwrap_or_default();
    ensure!(account == "cache-buster", "the pod runs as {account:?}");
    Ok(())
}

/// One source of settings: the launcher reads the ClusterAdmissionPolicy's
/// `spec.settings` through a watch. An edit of them reaches it while it
/// runs; the stamps the policy-server makes before it reloads are still
/// accepted; an invalid edit is named on /readyz and changes nothing.
async fn settings_followed(cluster: &Cluster) -> Result<()> {
    let ns = "settings-change";
    cluster.site_namespace(ns).await?;
    let original = cluster.policy_settings().await?;
    let launcher = cluster.launcher_pid();
    let backoff_limit = |job: &Job| job.spec.as_ref().and_then(|spec| spec.backoff_limit);
    let outcome = async {
        let mut changed = original.clone();
        changed["backoffLimit"] = json!(5);
        cluster.set_policy_settings(changed.clone()).await?;

        // The policy-server has not reloaded yet: it stamps with the
        // settings before the edit, and the launcher creates that Job.
        let stored = flux_apply(cluster, &site("before", ns, "nginx:1.27.1"), false).await?;
        let job = wait_for_job(cluster, ns, &stamped_job_name(&stored)?).await?;
        ensure!(backoff_limit(&job) == Some(3), "{:?}", job.spec);

        // Reloaded (as Kubewarden's controller restarts it on an edit), the
        // policy stamps with backoffLimit 5, and the launcher, still the
        // same process, derives the same Job: it creates it.
        cluster.stop_policy_server()?;
        cluster.start_policy_server().await?;
        let stored = flux_apply(cluster, &site("after", ns, "nginx:1.27.1"), false).await?;
        let job = wait_for_job(cluster, ns, &stamped_job_name(&stored)?).await?;
        ensure!(backoff_limit(&job) == Some(5), "{:?}", job.spec);
        ensure!(
            events(cluster, ns, "after", "CacheBusterJobRefused")
                .await?
                .is_empty(),
            "the stamp of the edited settings was refused"
        );
        ensure!(
            cluster.launcher_pid() == launcher,
            "the launcher was restarted"
        );

        // An invalid edit: /readyz names it, and the launcher goes on with
        // the last valid settings.
        let mut invalid = changed.clone();
        invalid["backoffLimit"] = json!(-1);
        cluster.set_policy_settings(invalid).await?;
        let body = readyz_until(cluster, "/readyz naming the invalid settings", SOON, |status, _| {
            status == 503
        })
        .await?;
        ensure!(
            body.trim()
                == "ClusterAdmissionPolicy cache-buster: invalid settings in ClusterAdmissionPolicy cache-buster: \
                    backoffLimit: -1 is out of range; expected 0 to 20; \
                    the launcher keeps deriving with the last valid settings",
            "{body}"
        );
        let stored = flux_apply(cluster, &site("meanwhile", ns, "nginx:1.27.1"), false).await?;
        let job = wait_for_job(cluster, ns, &stamped_job_name(&stored)?).await?;
        ensure!(backoff_limit(&job) == Some(5), "{:?}", job.spec);
        Ok(())
    }
    .await;
    cluster
        .set_policy_settings(original)
        .await
        .context("restoring the policy's settings")?;
    cluster.stop_policy_server()?;
    cluster
        .start_policy_server()
        .await
        .context("starting policy-server again")?;
    outcome?;
    readyz_until(
        cluster,
        "/readyz ok once the settings are valid",
        SOON,
        |status, _| status == 200,
    )
    .await
    .map(drop)
}
