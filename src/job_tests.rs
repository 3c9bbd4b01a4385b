use super::*;
use crate::providers::{JobContext, Provider, PurgeArgv};

fn command(provider: Provider) -> Vec<String> {
    PurgeArgv {
        providers: vec![provider],
        secret: "cdn-credentials".into(),
        dry_run: false,
        urls: vec!["https://www.example.com/".into()],
        prefixes: Vec::new(),
        hosts: Vec::new(),
        tags: Vec::new(),
        everything: false,
        content: Vec::new(),
        content_max_urls: None,
        warm: false,
        insecure_registries: Vec::new(),
        registry_ca_file: None,
        context: JobContext {
            site: "shop".into(),
            namespace: "web".into(),
            deployment: "shop".into(),
            image: "docker.io/library/nginx:1.25".into(),
            image_hash: "d568c927cb".into(),
            job_name: "shop-cache-buster-d568c927cb".into(),
        },
        flags: Default::default(),
        budget_seconds: 180,
    }
    .render()
}

fn job_with(settings: &Settings, provider: Provider) -> Job {
    build_job(JobInput {
        settings,
        namespace: "web",
        deployment: "shop",
        site: "shop.example.com",
        image_hash: "d568c927cb",
        job_name: "shop-cache-buster-d568c927cb",
        credentials_secret: "cdn-credentials",
        purge_args: command(provider),
        purge_reads_the_api: provider == Provider::Http,
        content: false,
        registry_pull_secrets: Vec::new(),
        registry_ca: None,
        providers: &[provider],
    })
}

fn job() -> Job {
    job_with(&Settings::default(), Provider::Cloudflare)
}

/// The placement settings land in the pod, typed as Kubernetes has them;
/// unset, none of them appears.
#[test]
fn the_pod_is_placed_as_the_settings_say() {
    let settings: Settings = crate::settings::parse_settings(
        serde_json::json!({
            "imagePullSecrets": [{"name": "registry-mirror"}],
            "nodeSelector": {"kubernetes.io/arch": "arm64"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}],
            "priorityClassName": "batch-low",
            "annotations": {"linkerd.io/inject": "disabled"}
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let placed = serde_json::to_value(job_with(&settings, Provider::Cloudflare)).unwrap();
    let template = &placed["spec"]["template"];
    assert_eq!(
        template["metadata"]["annotations"],
        serde_json::json!({"linkerd.io/inject": "disabled"})
    );
    let pod = &template["spec"];
    assert_eq!(
        pod["imagePullSecrets"],
        serde_json::json!([{"name": "registry-mirror"}])
    );
    assert_eq!(
        pod["nodeSelector"],
        serde_json::json!({"kubernetes.io/arch": "arm64"})
    );
    assert_eq!(
        pod["tolerations"],
        serde_json::json!([{"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}])
    );
    assert_eq!(pod["priorityClassName"], "batch-low");

    let default = serde_json::to_value(job()).unwrap();
    let template = &default["spec"]["template"];
    assert!(template["metadata"].get("annotations").is_none());
    for key in [
        "imagePullSecrets",
        "nodeSelector",
        "tolerations",
        "priorityClassName",
    ] {
        assert!(template["spec"].get(key).is_none(), "{key}");
    }
}

fn pod(job: &Job) -> &PodSpec {
    job.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn all_containers(pod: &PodSpec) -> Vec<&Container> {
    pod.init_containers
        .iter()
        .flatten()
        .chain(pod.containers.iter())
        .collect()
}

#[test]
fn metadata_names_labels_and_namespace() {
    let job = job();
    assert_eq!(
        job.metadata.name.as_deref(),
        Some("shop-cache-buster-d568c927cb")
    );
    assert_eq!(job.metadata.namespace.as_deref(), Some("web"));
    let expected = BTreeMap::from([
        (
            "app.kubernetes.io/component".to_owned(),
            "cache-buster".to_owned(),
        ),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "cache-buster".to_owned(),
        ),
        (
            "cache-buster.io/image-hash".to_owned(),
            "d568c927cb".to_owned(),
        ),
        (
            "cache-buster.io/site".to_owned(),
            "shop.example.com".to_owned(),
        ),
    ]);
    assert_eq!(job.metadata.labels.as_ref(), Some(&expected));
    let pod_labels = job
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref();
    assert_eq!(pod_labels, Some(&expected));
}

#[test]
fn spec_comes_from_the_settings_without_ttl_by_default() {
    let job = job();
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(3));
    assert_eq!(spec.active_deadline_seconds, Some(900));
    assert_eq!(spec.ttl_seconds_after_finished, None);
    let settings = Settings {
        ttl_seconds_after_finished: Some(86400),
        backoff_limit: 0,
        ..Settings::default()
    };
    let spec = job_with(&settings, Provider::Cloudflare).spec.unwrap();
    assert_eq!(spec.ttl_seconds_after_finished, Some(86400));
    assert_eq!(spec.backoff_limit, Some(0));
}

/// A final failure (exit code 2 from either container) fails the Job at
/// once; any other is retried up to backoffLimit.
#[test]
fn a_final_failure_fails_the_job_at_once() {
    let job = job();
    let policy = serde_json::to_value(&job.spec.as_ref().unwrap().pod_failure_policy).unwrap();
    assert_eq!(
        policy,
        serde_json::json!({"rules": [{
            "action": "FailJob",
            "onExitCodes": {"operator": "In", "values": [2]}
        }]})
    );
}

#[test]
fn pod_runs_once_with_its_service_account_and_no_automounted_token() {
    let job = job();
    let pod = pod(&job);
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.service_account_name.as_deref(), Some("cache-buster"));
    assert_eq!(pod.automount_service_account_token, Some(false));
}

/// The checks of the Pod Security Standards "restricted" profile.
#[test]
fn pod_passes_pod_security_restricted() {
    let job = job();
    let pod = pod(&job);
    let pod_security = pod.security_context.as_ref().unwrap();
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert!(pod_security.run_as_user.is_some_and(|uid| uid > 0));
    assert_eq!(
        pod_security.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    for container in all_containers(pod) {
        let security = container.security_context.as_ref().unwrap();
        assert_eq!(
            security.allow_privilege_escalation,
            Some(false),
            "{}",
            container.name
        );
        assert_eq!(
            security.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_owned()][..])
        );
        assert_eq!(security.capabilities.as_ref().unwrap().add, None);
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_ne!(security.privileged, Some(true));
        assert_ne!(security.run_as_user, Some(0));
        let resources = container.resources.as_ref().unwrap();
        for list in [
            resources.requests.as_ref().unwrap(),
            resources.limits.as_ref().unwrap(),
        ] {
            assert!(list.contains_key("cpu") && list.contains_key("memory"));
        }
        assert!(container.ports.is_none());
    }
    for volume in pod.volumes.iter().flatten() {
        let allowed =
            volume.projected.is_some() || volume.secret.is_some() || volume.empty_dir.is_some();
        assert!(
            allowed,
            "volume {} is not of a restricted-allowed type",
            volume.name
        );
    }
    assert_eq!(pod.host_network, None);
    assert_eq!(pod.host_pid, None);
    assert_eq!(pod.host_ipc, None);
}

/// SPEC §4: one image for every container, the project's; no shell.
#[test]
fn every_container_runs_the_projects_image_and_program() {
    let job = job();
    let pod = pod(&job);
    for container in all_containers(pod) {
        assert_eq!(
            container.image.as_deref(),
            Some(crate::settings::DEFAULT_IMAGE)
        );
        assert_eq!(
            container.command.as_deref(),
            Some(&[PROGRAM.to_owned()][..])
        );
    }
    let mirrored = Settings {
        image: "registry.example.com/mirror/cache-buster:v0.1.0".into(),
        ..Settings::default()
    };
    let mirrored = job_with(&mirrored, Provider::Cloudflare);
    for container in all_containers(self::pod(&mirrored)) {
        assert_eq!(
            container.image.as_deref(),
            Some("registry.example.com/mirror/cache-buster:v0.1.0")
        );
    }
}

#[test]
fn one_init_container_waits_for_this_image_then_the_rollout() {
    let job = job();
    let pod = pod(&job);
    let init: Vec<&Container> = pod.init_containers.iter().flatten().collect();
    assert_eq!(init.len(), 1);
    assert_eq!(init[0].name, "wait-rollout");
    assert_eq!(
        init[0].args.as_ref().unwrap(),
        &[
            "wait-rollout",
            "--namespace=web",
            "--deployment=shop",
            "--image-hash=d568c927cb",
            "--annotation=cache-buster.io/image-hash",
            "--timeout-seconds=600",
        ]
    );
}

fn mounts_token(container: &Container) -> bool {
    container.volume_mounts.iter().flatten().any(|mount| {
        mount.mount_path == "/var/run/secrets/kubernetes.io/serviceaccount"
            && mount.read_only == Some(true)
    })
}

/// Provider http's purge lists the cache Service's endpoints: it alone
/// of the providers reads the API.
#[test]
fn the_purge_gets_the_token_only_with_provider_http() {
    for provider in Provider::ALL {
        let job = job_with(&Settings::default(), provider);
        assert_eq!(
            mounts_token(&pod(&job).containers[0]),
            provider == Provider::Http,
            "{provider}"
        );
    }
}

#[test]
fn only_wait_rollout_gets_the_service_account_token() {
    let job = job();
    let pod = pod(&job);
    assert!(pod.init_containers.iter().flatten().all(mounts_token));
    assert!(!mounts_token(&pod.containers[0]));
    let token_volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "kube-api-access")
        .unwrap();
    let sources = token_volume
        .projected
        .as_ref()
        .unwrap()
        .sources
        .as_ref()
        .unwrap();
    assert!(sources.iter().any(|s| s.service_account_token.is_some()));
}

#[test]
fn purge_reads_the_secret_mounted_read_only_and_optional() {
    let job = job();
    let pod = pod(&job);
    let purge = &pod.containers[0];
    assert_eq!(pod.containers.len(), 1);
    assert_eq!(purge.name, "purge");
    assert_eq!(purge.args.as_ref(), Some(&command(Provider::Cloudflare)));
    let mounts = purge.volume_mounts.as_ref().unwrap();
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].mount_path, CREDENTIALS_DIR);
    assert_eq!(mounts[0].read_only, Some(true));
    let secret = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mounts[0].name)
        .unwrap()
        .secret
        .as_ref()
        .unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("cdn-credentials"));
    // Optional: a missing Secret is the purge's to name, not a pod Pending.
    assert_eq!(secret.optional, Some(true));
    // No credential in the environment, for any provider: at most the
    // Job's uid, from the pod's own label (CloudFront's reference).
    for provider in Provider::ALL {
        let job = job_with(&Settings::default(), provider);
        for container in all_containers(self::pod(&job)) {
            for variable in container.env.iter().flatten() {
                assert_eq!(variable.name, JOB_UID_VARIABLE, "{provider}");
                assert_eq!(variable.value, None);
                let from = variable.value_from.as_ref().unwrap();
                assert_eq!(from.secret_key_ref, None);
                assert_eq!(
                    from.field_ref.as_ref().unwrap().field_path,
                    "metadata.labels['batch.kubernetes.io/controller-uid']"
                );
            }
        }
    }
}

/// Each run of a CloudFront Job has a CallerReference of its own: the
/// purge container learns its Job's uid, which the Job controller puts
/// on every pod of the Job (the same for a retried pod, another for the
/// Job created again on a rollback).
#[test]
fn a_cloudfront_purge_learns_its_jobs_uid() {
    for provider in Provider::ALL {
        let job = job_with(&Settings::default(), provider);
        let pod = self::pod(&job);
        let purge = pod
            .containers
            .iter()
            .find(|c| c.name == PURGE_CONTAINER)
            .unwrap();
        let names: Vec<&str> = purge
            .env
            .iter()
            .flatten()
            .map(|variable| variable.name.as_str())
            .collect();
        let expected: &[&str] = match provider.info().needs_job_uid {
            true => &[JOB_UID_VARIABLE],
            false => &[],
        };
        assert_eq!(names, expected, "{provider}");
    }
    assert!(Provider::Cloudfront.info().needs_job_uid);
}

#[test]
fn custom_settings_reach_the_job() {
    let settings = Settings {
        annotation_prefix: "purge.example.com".into(),
        service_account_name: "purger".into(),
        run_as_user: 1001,
        rollout_timeout_seconds: 120,
        ..Settings::default()
    };
    let job = job_with(&settings, Provider::Cloudflare);
    let pod = pod(&job);
    assert_eq!(pod.service_account_name.as_deref(), Some("purger"));
    assert_eq!(
        pod.security_context.as_ref().unwrap().run_as_user,
        Some(1001)
    );
    let wait_rollout = pod.init_containers.as_ref().unwrap()[0]
        .args
        .clone()
        .unwrap();
    assert!(wait_rollout.contains(&"--annotation=purge.example.com/image-hash".to_owned()));
    assert!(wait_rollout.contains(&"--timeout-seconds=120".to_owned()));
    assert!(
        job.metadata
            .labels
            .unwrap()
            .contains_key("purge.example.com/site")
    );
}

#[test]
fn serialises_as_a_batch_v1_job() {
    let value = serde_json::to_value(job()).unwrap();
    assert_eq!(value["apiVersion"], "batch/v1");
    assert_eq!(value["kind"], "Job");
    assert_eq!(
        value["spec"]["template"]["spec"]["initContainers"][0]["name"],
        "wait-rollout"
    );
    let back: Job = serde_json::from_value(value).unwrap();
    assert_eq!(back, job());
}

/// With the default settings (rollout 600 s, deadline 900 s) the Job
/// waits at most 600 s for its stamp and the rollout, and purges for at
/// most 180 s more: 780 s, within the deadline. Front Door may take 600 s
/// more to finish a purge: 1,380 s.
#[test]
fn the_default_deadline_leaves_time_to_purge_after_the_wait() {
    let defaults = Settings::default();
    let cloudflare = [Provider::Cloudflare];
    assert_eq!(
        shortest_deadline_seconds(defaults.rollout_timeout_seconds, &cloudflare),
        780
    );
    assert!(defaults.active_deadline_seconds >= 780);
    assert_eq!(shortest_deadline_seconds(30, &cloudflare), 210);
    assert_eq!(
        shortest_deadline_seconds(600, &[Provider::Http, Provider::Azure]),
        1380
    );
}

/// A layer chosen by annotation that needs more than the settings'
/// deadline leaves gets what is left, and the user is told what to raise.
#[test]
fn the_budget_is_what_the_deadline_leaves_with_a_warning_when_short() {
    let defaults = Settings::default();
    let key = "cache-buster.io/provider";
    assert_eq!(
        purge_budget(&defaults, &[Provider::Cloudflare], key),
        (180, None)
    );
    let (budget, warning) = purge_budget(&defaults, &[Provider::Http, Provider::Azure], key);
    assert_eq!(budget, 300);
    assert_eq!(
        warning.as_deref(),
        Some(
            "cache-buster.io/provider: azure may take 600s to finish a purge it accepted, but \
             activeDeadlineSeconds (900, the policy's settings) leaves the purge 300s after \
             rolloutTimeoutSeconds (600): a purge still in progress then is reported as failed; \
             set activeDeadlineSeconds to at least 1380"
        )
    );
    let roomy = Settings {
        active_deadline_seconds: 1380,
        ..Settings::default()
    };
    assert_eq!(purge_budget(&roomy, &[Provider::Azure], key), (780, None));
}

/// AKS Workload Identity's webhook mutates only pods with its label;
/// the wait for the rollout is kept out of it. A key the settings set
/// already is theirs.
#[test]
fn an_azure_job_carries_the_workload_identity_label_for_its_pod_only() {
    let job = job_with(&Settings::default(), Provider::Azure);
    let metadata = job.spec.unwrap().template.metadata.unwrap();
    let labels = metadata.labels.unwrap();
    assert_eq!(
        labels
            .get("azure.workload.identity/use")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        metadata.annotations.unwrap(),
        BTreeMap::from([(
            "azure.workload.identity/skip-containers".to_owned(),
            WAIT_ROLLOUT_CONTAINER.to_owned()
        )])
    );
    assert!(
        !job.metadata
            .labels
            .unwrap()
            .contains_key("azure.workload.identity/use")
    );
    let cloudflare = job_with(&Settings::default(), Provider::Cloudflare);
    let metadata = cloudflare.spec.unwrap().template.metadata.unwrap();
    assert!(
        !metadata
            .labels
            .unwrap()
            .contains_key("azure.workload.identity/use")
    );
    assert_eq!(metadata.annotations, None);

    let mut settings = Settings::default();
    settings.annotations.insert(
        "azure.workload.identity/skip-containers".to_owned(),
        "wait-rollout;purge".to_owned(),
    );
    let job = job_with(&settings, Provider::Azure);
    assert_eq!(
        job.spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap()["azure.workload.identity/skip-containers"],
        "wait-rollout;purge"
    );
}
