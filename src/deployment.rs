//! The decision for one Deployment (SPEC §1, §3): does it take part, what is
//! its companion Job, and is the Deployment already stamped with it?
//!
//! Everything here is a pure function of the settings and the Deployment as
//! submitted. `oldObject` is never consulted: a Deployment whose images did not
//! change still carries its stamp (or gets the same one again), so Flux's
//! dry-runs and re-applies always see the same result.

use crate::annotations::refuse_unknown;
use crate::error::{PolicyError, PolicyResult};
use crate::http_service::{EXPECTED_SERVICE, HttpService};
use crate::image::{ImageReference, SelectedImage, hash_input_lines, image_hash};
use crate::job::{JobInput, build_job};
use crate::json_literal::to_json_literal;
use crate::names::{is_dns1123_label, is_dns1123_subdomain, is_label_value, job_name};
use crate::providers::{JobContext, Provider, PurgeArgv, check_layers};
use crate::settings::Settings;
use crate::targets::{content_from_annotation, from_annotations, read_boolean};
use cache_buster_purge::content::{DEFAULT_MAX_URLS, REGISTRY_CA_FILE};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

use crate::keys::{
    CONTAINER, CONTENT, DRY_RUN, HTTP_SERVICE, IMAGE_HASH, JOB, JOB_NAME, PROVIDER, SECRET, WARM,
};

/// The three annotations the policy owns, in the order it writes them.
pub fn stamp_keys(settings: &Settings) -> [String; 3] {
    [
        settings.annotation(IMAGE_HASH),
        settings.annotation(JOB_NAME),
        settings.annotation(JOB),
    ]
}

/// What the Deployment's companion Job is, and the annotations that say so.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamp {
    pub image_hash: String,
    pub job_name: String,
    /// The complete batch/v1 Job; its annotation is its compact JSON.
    pub job: Job,
    /// The canonical image the hash is of (with several counted containers,
    /// their `name=image` lines joined by ", "): what Events name.
    pub image: String,
    /// The providers, in the order they purge (layers).
    pub providers: Vec<Provider>,
}

impl Stamp {
    /// The Job annotation's value: the Job as compact JSON. Read back from
    /// [`Self::job_json_literal`], so that the module holds one serialiser
    /// of the Job's many types, not two.
    pub fn job_json(&self) -> PolicyResult<String> {
        serde_json::from_str(&self.job_json_literal()?)
            .map_err(|error| PolicyError::JobSerialization(error.to_string()))
    }

    /// [`Self::job_json`] as a JSON string, the annotation's value as the
    /// mutated object holds it, written in one pass (`json_literal`).
    pub fn job_json_literal(&self) -> PolicyResult<String> {
        to_json_literal(&self.job).map_err(|error| PolicyError::JobSerialization(error.to_string()))
    }

    /// (key, value) of the three stamped annotations.
    pub fn annotations(&self, settings: &Settings) -> PolicyResult<[(String, String); 3]> {
        let [hash, name, job] = stamp_keys(settings);
        Ok([
            (hash, self.image_hash.clone()),
            (name, self.job_name.clone()),
            (job, self.job_json()?),
        ])
    }

    /// SPEC §3.5: whether the Deployment already carries exactly these three
    /// values; `carries(key, value)` says whether it has that annotation with
    /// that value. The hash is compared first, and the Job is written out
    /// only when the hash and name match, so a new image never costs the
    /// (long) Job's JSON.
    pub fn is_carried_by(&self, settings: &Settings, carries: impl Fn(&str, &str) -> bool) -> bool {
        let [hash, name, job] = stamp_keys(settings);
        carries(&hash, &self.image_hash)
            && carries(&name, &self.job_name)
            && self.job_json().is_ok_and(|json| carries(&job, &json))
    }
}

/// SPEC §1, decided from the metadata alone, before the rest is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Participation {
    /// Carries the site label: evaluate (SPEC §3).
    Site,
    /// No site label but stamped annotations (the label was removed): these
    /// keys are to be removed.
    LabelRemoved(Vec<String>),
    /// Neither: accept untouched.
    NotTakingPart,
}

pub fn participation(settings: &Settings, metadata: &ObjectMeta) -> Participation {
    let annotations = metadata.annotations.as_ref();
    participation_of(
        &settings.site_label,
        &stamp_keys(settings),
        metadata.labels.as_ref(),
        |key| annotations.is_some_and(|annotations| annotations.contains_key(key)),
    )
}

/// `participation` from the labels and which annotation keys are present,
/// for a caller that has not read the annotation values and knows the
/// settings' `site_label` and `stamp_keys` already.
pub fn participation_of(
    site_label: &str,
    stamp_keys: &[String; 3],
    labels: Option<&BTreeMap<String, String>>,
    has_annotation: impl Fn(&str) -> bool,
) -> Participation {
    if labels.is_some_and(|labels| labels.contains_key(site_label)) {
        return Participation::Site;
    }
    let stamped: Vec<String> = stamp_keys
        .iter()
        .filter(|key| has_annotation(key))
        .cloned()
        .collect();
    if stamped.is_empty() {
        Participation::NotTakingPart
    } else {
        Participation::LabelRemoved(stamped)
    }
}

/// The outcome for a labelled Deployment (SPEC §3.5).
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Already carries exactly this stamp: no mutation.
    UpToDate { stamp: Stamp, warnings: Vec<String> },
    /// Missing, stale or tampered stamp: write this one.
    Stamp { stamp: Stamp, warnings: Vec<String> },
}

/// Where the request says the object is, for objects that do not say it
/// themselves (a CREATE may carry neither name nor namespace in metadata).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestContext<'a> {
    pub name: Option<&'a str>,
    pub namespace: Option<&'a str>,
}

/// SPEC §3: the stamp a labelled Deployment must carry, and whether it
/// carries it already. `carries(key, value)` says whether the Deployment has
/// that annotation with that value: the admission compares the JSON text it
/// received, the launcher the typed object it watches (`carried_in`).
pub fn decide(
    settings: &Settings,
    deployment: &Deployment,
    context: RequestContext<'_>,
    carries: impl Fn(&str, &str) -> bool,
) -> PolicyResult<Decision> {
    let (stamp, warnings) = derive_stamp(settings, deployment, context)?;
    if stamp.is_carried_by(settings, carries) {
        Ok(Decision::UpToDate { stamp, warnings })
    } else {
        Ok(Decision::Stamp { stamp, warnings })
    }
}

/// `carries` for a typed Deployment's annotations.
pub fn carried_in(
    annotations: Option<&BTreeMap<String, String>>,
) -> impl Fn(&str, &str) -> bool + '_ {
    move |key, value| {
        annotations
            .and_then(|annotations| annotations.get(key))
            .is_some_and(|carried| carried == value)
    }
}

/// The Deployment's image pull secrets: a content purge reads its images
/// with them (SPEC §9).
fn image_pull_secret_names(deployment: &Deployment) -> Vec<&str> {
    deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .and_then(|pod| pod.image_pull_secrets.as_ref())
        .map(|secrets| secrets.iter().map(|secret| secret.name.as_str()).collect())
        .unwrap_or_default()
}

/// SPEC §3.1–3.4: the stamp a labelled Deployment must carry, and the
/// warnings for the user. Also what the launcher re-derives before it trusts a
/// stamped Job.
pub fn derive_stamp(
    settings: &Settings,
    deployment: &Deployment,
    context: RequestContext<'_>,
) -> PolicyResult<(Stamp, Vec<String>)> {
    let metadata = &deployment.metadata;
    let empty = BTreeMap::new();
    let annotations = metadata.annotations.as_ref().unwrap_or(&empty);
    let annotation = |name: &str| settings.annotation(name);

    let site = site_name(settings, metadata)?;
    refuse_unknown(&settings.annotation_prefix, annotations)?;
    let name = object_name(metadata.name.as_deref().or(context.name))?;
    let namespace = namespace(metadata.namespace.as_deref().or(context.namespace))?;
    let qualified_name = format!("{namespace}/{name}");

    let providers = match annotations.get(&annotation(PROVIDER)) {
        Some(value) => layers(value, &annotation(PROVIDER))?,
        None => vec![settings.provider],
    };
    let secret = match annotations.get(&annotation(SECRET)) {
        Some(value) if is_dns1123_subdomain(value.trim()) => value.trim(),
        Some(value) => {
            return Err(PolicyError::InvalidAnnotation {
                key: annotation(SECRET),
                value: value.clone(),
                problem: "is not a Secret name".to_owned(),
                expected: "a DNS-1123 subdomain such as cdn-credentials".to_owned(),
            });
        }
        None => settings.credentials_secret.as_str(),
    };

    let purge = from_annotations(annotations, annotation)?;
    let content = content_from_annotation(annotations, &annotation(CONTENT))?;
    let warm = read_boolean(&annotation(WARM), annotations)?;
    let dry_run = read_boolean(&annotation(DRY_RUN), annotations)?;
    let mut warnings = check_layers(
        &providers,
        &purge,
        !content.is_empty(),
        &qualified_name,
        annotation,
    )?;
    // The provider that purges the caches behind a Service (http).
    let service_reader = providers
        .iter()
        .find(|provider| provider.info().reads_the_api)
        .copied();
    let http_service = http_service(service_reader, annotations, &annotation(HTTP_SERVICE))?;
    if service_reader.is_none() && annotations.contains_key(&annotation(HTTP_SERVICE)) {
        warnings.push(format!(
            "{} is read only with provider http; this Deployment's provider is {}",
            annotation(HTTP_SERVICE),
            names(&providers)
        ));
    }

    let selected = selected_images(settings, deployment, annotations)?;
    if !content.is_empty() && selected.len() != 1 {
        // SPEC §9 compares one image with the one last purged.
        return Err(PolicyError::InvalidAnnotation {
            key: annotation(CONTENT),
            value: content.join(", "),
            problem: format!(
                "compares one image, and {} containers count",
                selected.len()
            ),
            expected: format!(
                "{} naming the container whose image holds the site",
                annotation(CONTAINER)
            ),
        });
    }
    warnings.extend(mutable_tag_warnings(settings, &selected));
    let image_hash = image_hash(&selected);
    let job_name = job_name(name, &image_hash);

    let image = match selected.as_slice() {
        [only] => only.image.to_string(),
        _ => hash_input_lines(&selected).join(", "),
    };
    let (budget_seconds, budget_warning) =
        crate::job::purge_budget(settings, &providers, &annotation(PROVIDER));
    warnings.extend(budget_warning);
    let argv = PurgeArgv {
        providers: providers.clone(),
        secret: secret.to_owned(),
        dry_run,
        urls: purge.urls,
        prefixes: purge.prefixes,
        hosts: purge.hosts,
        tags: purge.tags,
        everything: purge.everything,
        content_max_urls: (!content.is_empty())
            .then(|| u32::try_from(settings.content_max_urls).unwrap_or(DEFAULT_MAX_URLS)),
        insecure_registries: match content.is_empty() {
            true => Vec::new(),
            false => settings.content_insecure_registries.clone(),
        },
        registry_ca_file: settings
            .content_registry_ca
            .as_ref()
            .filter(|_| !content.is_empty())
            .map(|_| REGISTRY_CA_FILE.to_owned()),
        content,
        warm,
        context: JobContext {
            site: site.to_owned(),
            namespace: namespace.to_owned(),
            deployment: name.to_owned(),
            image,
            image_hash: image_hash.clone(),
            job_name: job_name.clone(),
        },
        flags: settings.provider_flags(http_service),
        budget_seconds: budget_seconds.unsigned_abs(),
    };
    let purge_args = argv.render();
    let job = build_job(JobInput {
        settings,
        namespace,
        deployment: name,
        site,
        image_hash: &image_hash,
        job_name: &job_name,
        credentials_secret: secret,
        purge_args,
        // A content purge looks up the image last purged (its Jobs).
        purge_reads_the_api: !argv.content.is_empty()
            || providers
                .iter()
                .any(|provider| provider.info().reads_the_api),
        content: !argv.content.is_empty(),
        registry_pull_secrets: match argv.content.is_empty() {
            true => Vec::new(),
            false => image_pull_secret_names(deployment),
        },
        registry_ca: settings
            .content_registry_ca
            .as_ref()
            .filter(|_| !argv.content.is_empty()),
        providers: &providers,
    });

    let image = argv.context.image;
    Ok((
        Stamp {
            image_hash,
            job_name,
            job,
            image,
            providers,
        },
        warnings,
    ))
}

/// `P/provider`: one provider, or several purged in order (layers, SPEC
/// §5: `http, cloudflare`), each once.
fn layers(value: &str, key: &str) -> PolicyResult<Vec<Provider>> {
    let mut providers: Vec<Provider> = Vec::new();
    for name in value.split(|c: char| c == ',' || c.is_whitespace()) {
        if name.is_empty() {
            continue;
        }
        let provider = Provider::from_name(name).ok_or_else(|| PolicyError::InvalidAnnotation {
            key: key.to_owned(),
            value: name.to_owned(),
            problem: "is not a known provider".to_owned(),
            expected: Provider::expected_for(name),
        })?;
        if !providers.contains(&provider) {
            providers.push(provider);
        }
    }
    if providers.is_empty() {
        return Err(PolicyError::InvalidAnnotation {
            key: key.to_owned(),
            value: value.to_owned(),
            problem: "names no provider".to_owned(),
            expected: format!(
                "{}, or several separated by commas, purged in that order",
                Provider::expected_for("")
            ),
        });
    }
    Ok(providers)
}

/// "http, cloudflare".
pub fn names(providers: &[Provider]) -> String {
    providers
        .iter()
        .map(|provider| provider.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Provider `http` purges the caches of the Service `P/http-service` names:
/// it needs one, and a valid one.
fn http_service(
    reader: Option<Provider>,
    annotations: &BTreeMap<String, String>,
    key: &str,
) -> PolicyResult<Option<HttpService>> {
    let Some(reader) = reader else {
        return Ok(None);
    };
    let Some(value) = annotations.get(key) else {
        return Err(PolicyError::MissingAnnotation {
            key: key.to_owned(),
            provider: reader.name().to_owned(),
            expected: EXPECTED_SERVICE.to_owned(),
        });
    };
    HttpService::parse(value)
        .map(Some)
        .map_err(|problem| PolicyError::InvalidAnnotation {
            key: key.to_owned(),
            value: value.clone(),
            problem,
            expected: EXPECTED_SERVICE.to_owned(),
        })
}

fn site_name<'a>(settings: &Settings, metadata: &'a ObjectMeta) -> PolicyResult<&'a str> {
    let site = metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(&settings.site_label))
        .map(String::as_str)
        .unwrap_or_default();
    if site.is_empty() || !is_label_value(site) {
        return Err(PolicyError::InvalidField {
            field: format!("label {}", settings.site_label),
            value: site.to_owned(),
            problem: "is not a site name".to_owned(),
            expected: "the site's name as a non-empty label value (letters, digits, '-', '_', '.')"
                .to_owned(),
        });
    }
    Ok(site)
}

fn object_name(name: Option<&str>) -> PolicyResult<&str> {
    match name {
        Some(name) if is_dns1123_subdomain(name) => Ok(name),
        other => Err(PolicyError::InvalidField {
            field: "metadata.name".to_owned(),
            value: other.unwrap_or_default().to_owned(),
            problem: "is not a Deployment name".to_owned(),
            expected: "a DNS-1123 subdomain (generateName is not supported for site Deployments)"
                .to_owned(),
        }),
    }
}

fn namespace(namespace: Option<&str>) -> PolicyResult<&str> {
    match namespace {
        Some(namespace) if is_dns1123_label(namespace) => Ok(namespace),
        other => Err(PolicyError::InvalidField {
            field: "metadata.namespace".to_owned(),
            value: other.unwrap_or_default().to_owned(),
            problem: "is not a namespace name".to_owned(),
            expected: "a DNS-1123 label".to_owned(),
        }),
    }
}

/// SPEC §3.1: every container of the pod template, or only the one that
/// `P/container` names; init containers never count.
fn selected_images(
    settings: &Settings,
    deployment: &Deployment,
    annotations: &BTreeMap<String, String>,
) -> PolicyResult<Vec<SelectedImage>> {
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref());
    let containers: &[Container] = pod.map(|pod| pod.containers.as_slice()).unwrap_or_default();
    if containers.is_empty() {
        return Err(PolicyError::InvalidField {
            field: "spec.template.spec.containers".to_owned(),
            value: String::new(),
            problem: "is empty".to_owned(),
            expected: "at least one container".to_owned(),
        });
    }

    let counted: Vec<(usize, &Container)> = match annotations.get(&settings.annotation(CONTAINER)) {
        None => containers.iter().enumerate().collect(),
        Some(wanted) => {
            let wanted_name = wanted.trim();
            let found: Vec<(usize, &Container)> = containers
                .iter()
                .enumerate()
                .filter(|(_, container)| container.name == wanted_name)
                .collect();
            if found.is_empty() && wanted_name.contains([',', ' ', '\t', '\n']) {
                let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
                return Err(PolicyError::InvalidAnnotation {
                    key: settings.annotation(CONTAINER),
                    value: wanted.clone(),
                    problem: "is a list, and the annotation takes a single container name"
                        .to_owned(),
                    expected: format!(
                        "one of the containers: {} (without the annotation, every container counts)",
                        names.join(", ")
                    ),
                });
            }
            if found.is_empty() {
                let is_init = pod
                    .and_then(|pod| pod.init_containers.as_ref())
                    .is_some_and(|init| init.iter().any(|c| c.name == wanted_name));
                let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
                return Err(PolicyError::InvalidAnnotation {
                    key: settings.annotation(CONTAINER),
                    value: wanted.clone(),
                    problem: if is_init {
                        "names an init container, and init containers never count".to_owned()
                    } else {
                        "names no container of the Deployment".to_owned()
                    },
                    expected: format!("one of the containers: {}", names.join(", ")),
                });
            }
            found
        }
    };

    counted
        .into_iter()
        .map(|(index, container)| {
            let field = format!(
                "spec.template.spec.containers[{index}].image (container {:?})",
                container.name
            );
            let image = container.image.as_deref().unwrap_or_default();
            ImageReference::parse(image)
                .map(|image| SelectedImage {
                    container: container.name.clone(),
                    image,
                })
                .map_err(|error| PolicyError::InvalidField {
                    field,
                    value: image.to_owned(),
                    problem: format!("is not a valid image reference: {error}"),
                    expected: "[registry[:port]/]repository[:tag][@digest], such as nginx:1.27 or ghcr.io/acme/site:v2".to_owned(),
                })
        })
        .collect()
}

/// SPEC §3.6: a rebuild under a mutable tag keeps the hash, so no purge.
fn mutable_tag_warnings(settings: &Settings, selected: &[SelectedImage]) -> Vec<String> {
    selected
        .iter()
        .filter(|s| s.image.is_mutable())
        .map(|s| {
            format!(
                "container {:?} uses {} (mutable tag): a rebuild pushed under the same tag keeps {}, so no cache purge follows it; pin a version tag or a digest",
                s.container,
                s.image,
                settings.annotation(IMAGE_HASH)
            )
        })
        .collect()
}

#[cfg(test)]
#[path = "deployment_tests.rs"]
mod tests;
