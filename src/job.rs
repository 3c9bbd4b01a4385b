//! The companion Job (SPEC §4): waits until exactly this image is rolled out,
//! then purges the CDN. Built as a typed `batch/v1` Job so that its JSON is a
//! valid object by construction, and every field is decided here, from the
//! settings and the Deployment, never from live cluster state.

use crate::providers::{CREDENTIALS_DIR, PURGE_BUDGET_SECONDS, Provider};
use crate::registry_ca::{self, REGISTRY_CA_VOLUME, RegistryCa, registry_ca_volume};
use crate::settings::Settings;
use cache_buster_purge::catalog::Info;
use cache_buster_purge::content::PULL_SECRETS_DIR;
use cache_buster_purge::options::{purge_budget_seconds, shortest_deadline_seconds};
use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, Container, DownwardAPIProjection, DownwardAPIVolumeFile,
    EnvVar, EnvVarSource, KeyToPath, ObjectFieldSelector, PodSecurityContext, PodSpec,
    PodTemplateSpec, ProjectedVolumeSource, ResourceRequirements, SeccompProfile, SecretProjection,
    SecretVolumeSource, SecurityContext, ServiceAccountTokenProjection, Volume, VolumeMount,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

pub const WAIT_ROLLOUT_CONTAINER: &str = "wait-rollout";
pub const PURGE_CONTAINER: &str = "purge";
use crate::fingerprint::stamped_by;
use crate::keys::{
    COMPONENT_LABEL, CONTENT, IMAGE_HASH, LABEL_VALUE, MANAGED_BY_LABEL, SITE, STAMPED_BY,
};

/// The project's program in its image (on the image's PATH).
pub const PROGRAM: &str = "cache-buster";
/// The exit code of a failure that no retry can mend: a Secret or key that
/// is missing, no credential nor workload identity at all, a CDN's or an
/// identity provider's refusal of the credentials or the request (4xx), an
/// API server's refusal of the Job's ServiceAccount, an argv the program
/// does not understand (clap's usage error is 2 too). The Job's
/// podFailurePolicy fails the Job at once on it, so the Event names the
/// cause within seconds instead of after every back-off of `backoffLimit`.
pub const FINAL_FAILURE_EXIT_CODE: i32 = 2;
/// Where Kubernetes itself mounts a service-account token; the program's
/// in-cluster configuration finds it there.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const SERVICE_ACCOUNT_VOLUME: &str = "kube-api-access";
/// The token lifetime Kubernetes uses for its own kube-api-access volumes.
const SERVICE_ACCOUNT_TOKEN_SECONDS: i64 = 3607;
const CREDENTIALS_VOLUME: &str = "credentials";
const REGISTRIES_VOLUME: &str = "registries";

/// Everything that makes one companion Job.
pub struct JobInput<'a> {
    pub settings: &'a Settings,
    pub namespace: &'a str,
    pub deployment: &'a str,
    pub site: &'a str,
    pub image_hash: &'a str,
    pub job_name: &'a str,
    pub credentials_secret: &'a str,
    /// The purge container's arguments (`PurgeArgv::render`).
    pub purge_args: Vec<String>,
    /// Whether the purge reads the API too (provider `http` lists the
    /// cache Service's EndpointSlices): then it gets the token as well.
    pub purge_reads_the_api: bool,
    /// SPEC §9: a content purge, which reads images from their registries.
    pub content: bool,
    /// SPEC §9: the Deployment's image pull secrets, mounted read-only into
    /// the purge for a content purge (empty otherwise).
    pub registry_pull_secrets: Vec<&'a str>,
    /// SPEC §9: the private CA of registries (setting `contentRegistryCA`),
    /// mounted into the purge for a content purge (None otherwise).
    pub registry_ca: Option<&'a RegistryCa>,
    /// The layers: their workload identities may need pod labels and
    /// annotations (AKS Workload Identity's webhook acts on a label).
    pub providers: &'a [Provider],
}

/// The purge's budget for these layers within the settings' deadline, and
/// a warning when the deadline leaves less than the layers may need (a
/// layer chosen by annotation that the settings' check did not see).
pub fn purge_budget(
    settings: &Settings,
    providers: &[Provider],
    provider_key: &str,
) -> (i64, Option<String>) {
    let wanted = purge_budget_seconds(providers);
    let room = settings
        .active_deadline_seconds
        .saturating_sub(settings.rollout_timeout_seconds);
    if wanted <= room {
        return (wanted, None);
    }
    let slowest = providers
        .iter()
        .max_by_key(|provider| provider.info().completion_seconds);
    let warning = slowest.map(|provider| {
        format!(
            "{provider_key}: {provider} may take {}s to finish a purge it accepted, but \
             activeDeadlineSeconds ({}, the policy's settings) leaves the purge {room}s after \
             rolloutTimeoutSeconds ({}): a purge still in progress then is reported as failed; \
             set activeDeadlineSeconds to at least {}",
            provider.info().completion_seconds,
            settings.active_deadline_seconds,
            settings.rollout_timeout_seconds,
            shortest_deadline_seconds(settings.rollout_timeout_seconds, providers)
        )
    });
    // The settings' check keeps `room` at least the budget of any layer
    // that needs no wait of its own.
    (room.max(PURGE_BUDGET_SECONDS), warning)
}

/// The variable that tells the purge the uid of its Job: one value per run
/// of a Job (a Job created again under the same name has another), shared
/// by the retried pods of one run.
pub const JOB_UID_VARIABLE: &str = "CACHE_BUSTER_JOB_UID";
/// The label the Job controller puts on each pod of a Job: the Job's uid.
const JOB_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";

/// `CACHE_BUSTER_JOB_UID` from the pod's own label, through the downward
/// API: the uid is known only once the API server created the Job.
fn job_uid_variable() -> EnvVar {
    EnvVar {
        name: JOB_UID_VARIABLE.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: format!("metadata.labels['{JOB_UID_LABEL}']"),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

pub fn build_job(input: JobInput<'_>) -> Job {
    let settings = input.settings;
    let labels = job_labels(settings, input.site, input.image_hash);

    // One init container waits for the stamp, then for the rollout: it
    // gets the service-account token (the purge only with provider http).
    let wait_rollout = Container {
        name: WAIT_ROLLOUT_CONTAINER.to_owned(),
        command: Some(strings(&[PROGRAM])),
        args: Some(vec![
            "wait-rollout".to_owned(),
            ["--namespace=", input.namespace].concat(),
            ["--deployment=", input.deployment].concat(),
            ["--image-hash=", input.image_hash].concat(),
            ["--annotation=", &settings.annotation(IMAGE_HASH)].concat(),
            format!("--timeout-seconds={}", settings.rollout_timeout_seconds),
        ]),
        volume_mounts: Some(vec![read_only_mount(
            SERVICE_ACCOUNT_VOLUME,
            SERVICE_ACCOUNT_DIR,
        )]),
        ..restricted_container(settings)
    };
    let mut purge_mounts = vec![read_only_mount(CREDENTIALS_VOLUME, CREDENTIALS_DIR)];
    if input.purge_reads_the_api {
        purge_mounts.push(read_only_mount(SERVICE_ACCOUNT_VOLUME, SERVICE_ACCOUNT_DIR));
    }
    let registries = registries_volume(&input.registry_pull_secrets);
    if registries.is_some() {
        purge_mounts.push(read_only_mount(REGISTRIES_VOLUME, PULL_SECRETS_DIR));
    }
    let registry_ca = input.registry_ca.map(registry_ca_volume);
    if registry_ca.is_some() {
        purge_mounts.push(read_only_mount(
            REGISTRY_CA_VOLUME,
            registry_ca::mount_path(),
        ));
    }
    let needs_job_uid = input
        .providers
        .iter()
        .any(|provider| provider.info().needs_job_uid);
    let purge = Container {
        name: PURGE_CONTAINER.to_owned(),
        command: Some(strings(&[PROGRAM])),
        args: Some(input.purge_args),
        volume_mounts: Some(purge_mounts),
        env: needs_job_uid.then(|| vec![job_uid_variable()]),
        ..restricted_container(settings)
    };

    Job {
        metadata: ObjectMeta {
            // First in the Job's JSON (k8s-openapi writes `annotations`
            // first): the reconcile's fast path reads it there.
            annotations: Some(BTreeMap::from([(
                settings.annotation(STAMPED_BY),
                stamped_by(settings),
            )])),
            name: Some(input.job_name.to_owned()),
            namespace: Some(input.namespace.to_owned()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: i32::try_from(settings.backoff_limit).ok(),
            active_deadline_seconds: Some(settings.active_deadline_seconds),
            pod_failure_policy: Some(fail_at_once_on_a_final_failure()),
            ttl_seconds_after_finished: settings
                .ttl_seconds_after_finished
                .and_then(|ttl| i32::try_from(ttl).ok()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(with_identity(
                        content_label(settings, labels, input.content),
                        input.providers,
                        |info| info.pod_labels,
                    )),
                    annotations: non_empty(with_identity(
                        settings.annotations.clone(),
                        input.providers,
                        |info| info.pod_annotations,
                    )),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    service_account_name: Some(settings.service_account_name.clone()),
                    // Only the containers that read the API get a token,
                    // through their own projected volume.
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(settings.run_as_user),
                        run_as_group: Some(settings.run_as_user),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    init_containers: Some(vec![wait_rollout]),
                    containers: vec![purge],
                    volumes: Some(
                        [
                            service_account_volume(),
                            Volume {
                                name: CREDENTIALS_VOLUME.to_owned(),
                                secret: Some(SecretVolumeSource {
                                    secret_name: Some(input.credentials_secret.to_owned()),
                                    // A missing Secret mounts empty: the purge
                                    // then fails at once naming it, instead of a
                                    // pod Pending until the deadline.
                                    optional: Some(true),
                                    ..SecretVolumeSource::default()
                                }),
                                ..Volume::default()
                            },
                        ]
                        .into_iter()
                        .chain(registries)
                        .chain(registry_ca)
                        .collect(),
                    ),
                    image_pull_secrets: non_empty(
                        settings.image_pull_secrets.iter().map(Into::into).collect(),
                    ),
                    node_selector: non_empty(settings.node_selector.clone()),
                    tolerations: non_empty(settings.tolerations.iter().map(Into::into).collect()),
                    priority_class_name: settings.priority_class_name.clone(),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

/// `pairs` and what the layers' workload identities need of the pod
/// (their table's `pod_labels` or `pod_annotations`); a key already set
/// (by the settings) is kept.
fn with_identity(
    mut pairs: BTreeMap<String, String>,
    providers: &[Provider],
    needs: impl Fn(&Info) -> &'static [(&'static str, &'static str)],
) -> BTreeMap<String, String> {
    for (key, value) in providers.iter().flat_map(|provider| needs(provider.info())) {
        pairs
            .entry((*key).to_owned())
            .or_insert_with(|| (*value).to_owned());
    }
    pairs
}

/// FailJob on `FINAL_FAILURE_EXIT_CODE` from any container (the Job
/// controller reads init containers' exit codes too); every other failure
/// is retried up to `backoffLimit`.
fn fail_at_once_on_a_final_failure() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![PodFailurePolicyRule {
            action: "FailJob".to_owned(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: None,
                operator: "In".to_owned(),
                values: vec![FINAL_FAILURE_EXIT_CODE],
            }),
            on_pod_conditions: None,
        }],
    }
}

/// SPEC §4 labels, on the Job and on its pods.
pub fn job_labels(settings: &Settings, site: &str, image_hash: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (settings.annotation(SITE), site.to_owned()),
        (settings.annotation(IMAGE_HASH), image_hash.to_owned()),
        (MANAGED_BY_LABEL.to_owned(), LABEL_VALUE.to_owned()),
        (COMPONENT_LABEL.to_owned(), LABEL_VALUE.to_owned()),
    ])
}

/// Pod Security "restricted", plus a read-only root filesystem and resources.
fn restricted_container(settings: &Settings) -> Container {
    let resources = &settings.resources;
    let cpu_memory = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])
    };
    Container {
        image: Some(settings.image.clone()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(strings(&["ALL"])),
                ..Capabilities::default()
            }),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            ..SecurityContext::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(cpu_memory(
                &resources.requests.cpu,
                &resources.requests.memory,
            )),
            limits: Some(cpu_memory(&resources.limits.cpu, &resources.limits.memory)),
            ..ResourceRequirements::default()
        }),
        // The program writes its outcome as the termination message; should
        // it die before, its last lines take that place.
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

/// A content purge's pods carry `P/content: "true"`: the registries'
/// egress (deploy/site-content's NetworkPolicy) selects them, and no other.
fn content_label(
    settings: &Settings,
    mut labels: BTreeMap<String, String>,
    content: bool,
) -> BTreeMap<String, String> {
    if content {
        labels.insert(settings.annotation(CONTENT), "true".to_owned());
    }
    labels
}

/// Each pull secret's `.dockerconfigjson` as `<n>-<name>.json`, in the
/// Deployment's order (the purge tries them in name order, as the kubelet
/// does in list order). Optional: a missing Secret leaves its registry to
/// be read anonymously, and the purge says why it could not.
fn registries_volume(pull_secrets: &[&str]) -> Option<Volume> {
    if pull_secrets.is_empty() {
        return None;
    }
    let sources = pull_secrets
        .iter()
        .enumerate()
        .map(|(index, name)| VolumeProjection {
            secret: Some(SecretProjection {
                name: (*name).to_owned(),
                items: Some(vec![KeyToPath {
                    key: ".dockerconfigjson".to_owned(),
                    path: format!("{index:02}-{name}.json"),
                    ..KeyToPath::default()
                }]),
                optional: Some(true),
            }),
            ..VolumeProjection::default()
        })
        .collect();
    Some(Volume {
        name: REGISTRIES_VOLUME.to_owned(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(sources),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    })
}

/// The same token, CA and namespace files Kubernetes would automount.
fn service_account_volume() -> Volume {
    Volume {
        name: SERVICE_ACCOUNT_VOLUME.to_owned(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".to_owned(),
                        expiration_seconds: Some(SERVICE_ACCOUNT_TOKEN_SECONDS),
                        ..ServiceAccountTokenProjection::default()
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".to_owned(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".to_owned(),
                            path: "ca.crt".to_owned(),
                            ..KeyToPath::default()
                        }]),
                        ..ConfigMapProjection::default()
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".to_owned(),
                            field_ref: Some(ObjectFieldSelector {
                                api_version: Some("v1".to_owned()),
                                field_path: "metadata.namespace".to_owned(),
                            }),
                            ..DownwardAPIVolumeFile::default()
                        }]),
                    }),
                    ..VolumeProjection::default()
                },
            ]),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn read_only_mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// A setting left empty stays out of the Job, as if never written.
fn non_empty<T: IntoIterator + Default + PartialEq>(items: T) -> Option<T> {
    (items != T::default()).then_some(items)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
