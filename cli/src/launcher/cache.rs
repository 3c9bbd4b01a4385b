//! What the launcher's caches keep of each object its watches see: only
//! what its decisions read (SPEC §8), since one launcher serves thousands of
//! sites (`make bench-sites` measures the bytes retained per site).
//! - The watches decode into types of their own. `CachedJob` keeps a Job's
//!   identity, owner, companion labels, image hash and end, as decoded; a
//!   pod template or a status counter is skipped, never stored. Its
//!   `resourceVersion` is kept only until kube's watcher has read it (it
//!   resumes from it, and rejects an event without one): `Keep::job` drops
//!   it after the watcher, before the cache.
//!   `SiteDeployment` keeps metadata and each container's name and image.
//! - `Keep::deployment` then drops what the policy's derivation does not
//!   read (managedFields, foreign labels and annotations), shares the site
//!   label's key among all sites, and puts a digest in place of the stamped
//!   Job's JSON: the launcher derives that text itself, and compares digests.

use cache_buster::keys::{self, COMPONENT_LABEL, LABEL_VALUE, MANAGED_BY_LABEL};
use cache_buster::settings::Settings;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::Resource;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a stamped Job's JSON becomes in the cache.
const DIGEST_PREFIX: &str = "sha256:";
/// `P/image-hash` ends so, whatever `P`.
const IMAGE_HASH_LABEL_SUFFIX: &str = "/image-hash";

/// A site Deployment as the cache keeps it: its metadata, and the name and
/// image of each container, which is all the policy's derivation reads.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct SiteDeployment {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: SiteSpec,
    /// The site label, moved out of `metadata.labels` by `Keep::deployment`:
    /// its key is the same for every site, so all share one copy.
    #[serde(skip)]
    pub site_label: Option<(Arc<str>, String)>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct SiteSpec {
    #[serde(default)]
    pub template: SiteTemplate,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct SiteTemplate {
    #[serde(default)]
    pub spec: SitePodSpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SitePodSpec {
    #[serde(default)]
    pub containers: Vec<NamedImage>,
    /// Read only to name them in a message (they never count).
    #[serde(default)]
    pub init_containers: Vec<NamedImage>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct NamedImage {
    pub name: String,
    #[serde(default)]
    pub image: Option<String>,
}

/// A companion Job as the cache keeps it, decoded straight from the watch
/// (`JobOnTheWire`): its identity and owner, whether it is labelled as a
/// companion, its image hash, and how it ended.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(from = "JobOnTheWire")]
pub struct CachedJob {
    /// Name, namespace, uid, creation and owners; and, until `Keep::job`
    /// drops it, the resourceVersion the watcher needs.
    pub metadata: ObjectMeta,
    /// Labelled `managed-by` and `component` cache-buster.
    pub companion: bool,
    /// Its `P/image-hash` label.
    pub image_hash: Option<String>,
    /// When the Job controller counted it done (Complete only).
    pub completion_time: Option<Time>,
    /// Its Complete or Failed condition, once it has one.
    pub end: Option<JobEnd>,
    /// Its purge has begun: a pod of it is Ready (its purge container runs,
    /// which it does only after `wait-rollout` succeeded) or has succeeded
    /// (counted, or not yet).
    /// Such a Job is past waiting, and is never cancelled.
    pub purging: bool,
}

/// A Job's end, from its Complete or Failed condition.
#[derive(Clone, Debug, PartialEq)]
pub struct JobEnd {
    pub complete: bool,
    pub at: Option<Time>,
    /// The condition's reason and message (BackoffLimitExceeded: …).
    pub reason: String,
}

/// A Job as the API server sends it, as far as the cache reads it.
#[derive(Deserialize)]
pub struct JobOnTheWire {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub status: Option<JobStatus>,
}

impl From<JobOnTheWire> for CachedJob {
    fn from(wire: JobOnTheWire) -> Self {
        let metadata = wire.metadata;
        let labels = metadata.labels.unwrap_or_default();
        let companion = [MANAGED_BY_LABEL, COMPONENT_LABEL]
            .iter()
            .all(|key| labels.get(*key).map(String::as_str) == Some(LABEL_VALUE));
        // `P/image-hash`, whatever the prefix: the policy gives a Job no
        // other label of that name.
        let image_hash = labels
            .into_iter()
            .find(|(key, _)| key.ends_with(IMAGE_HASH_LABEL_SUFFIX))
            .map(|(_, hash)| hash);
        let status = wire.status.unwrap_or_default();
        // A pod that succeeded is first "uncounted" (the Job controller
        // removes its finalizer), then counted in `succeeded`: in between,
        // no pod is Ready and none counted yet, but the purge did run.
        let succeeded_uncounted = status
            .uncounted_terminated_pods
            .as_ref()
            .and_then(|uncounted| uncounted.succeeded.as_ref())
            .is_some_and(|pods| !pods.is_empty());
        let purging = status.ready.unwrap_or_default() > 0
            || status.succeeded.unwrap_or_default() > 0
            || succeeded_uncounted;
        let end = status
            .conditions
            .into_iter()
            .flatten()
            .find(|condition| {
                matches!(condition.type_.as_str(), "Complete" | "Failed")
                    && condition.status == "True"
            })
            .map(|condition| JobEnd {
                complete: condition.type_ == "Complete",
                at: condition.last_transition_time,
                reason: [condition.reason, condition.message]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": "),
            });
        CachedJob {
            metadata: ObjectMeta {
                name: metadata.name,
                namespace: metadata.namespace,
                uid: metadata.uid,
                resource_version: metadata.resource_version,
                creation_timestamp: metadata.creation_timestamp,
                owner_references: metadata.owner_references.map(|owners| {
                    owners
                        .into_iter()
                        .map(|owner| OwnerReference {
                            block_owner_deletion: None,
                            controller: None,
                            ..owner
                        })
                        .collect()
                }),
                ..ObjectMeta::default()
            },
            companion,
            image_hash,
            completion_time: status.completion_time,
            end,
            purging,
        }
    }
}

/// The typed objects' API identity: a watch of `SiteDeployment` is a watch
/// of Deployments.
macro_rules! resource_as {
    ($cached:ty, $real:ty) => {
        impl Resource for $cached {
            type DynamicType = ();
            type Scope = <$real as Resource>::Scope;

            fn kind(dt: &()) -> Cow<'_, str> {
                <$real as Resource>::kind(dt)
            }
            fn group(dt: &()) -> Cow<'_, str> {
                <$real as Resource>::group(dt)
            }
            fn version(dt: &()) -> Cow<'_, str> {
                <$real as Resource>::version(dt)
            }
            fn plural(dt: &()) -> Cow<'_, str> {
                <$real as Resource>::plural(dt)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

resource_as!(SiteDeployment, Deployment);
resource_as!(CachedJob, Job);

impl SiteDeployment {
    /// The Deployment the policy's code reads: the same metadata, and each
    /// container's name and image.
    pub fn to_deployment(&self) -> Deployment {
        let containers = |images: &[NamedImage]| -> Vec<Container> {
            images
                .iter()
                .map(|named| Container {
                    name: named.name.clone(),
                    image: named.image.clone(),
                    ..Container::default()
                })
                .collect()
        };
        let pod = &self.spec.template.spec;
        let mut metadata = self.metadata.clone();
        if let Some((key, value)) = &self.site_label {
            metadata
                .labels
                .get_or_insert_default()
                .insert(key.to_string(), value.clone());
        }
        Deployment {
            metadata,
            spec: Some(DeploymentSpec {
                template: PodTemplateSpec {
                    spec: Some(PodSpec {
                        containers: containers(&pod.containers),
                        init_containers: (!pod.init_containers.is_empty())
                            .then(|| containers(&pod.init_containers)),
                        ..PodSpec::default()
                    }),
                    ..PodTemplateSpec::default()
                },
                ..DeploymentSpec::default()
            }),
            status: None,
        }
    }

    /// Whether the cache holds a digest in place of some annotation's text.
    pub fn has_digests(&self) -> bool {
        self.metadata
            .annotations
            .iter()
            .flatten()
            .any(|(_, value)| is_digest(value))
    }
}

impl From<&Deployment> for SiteDeployment {
    fn from(deployment: &Deployment) -> Self {
        let images = |containers: Option<&Vec<Container>>| {
            containers
                .into_iter()
                .flatten()
                .map(|container| NamedImage {
                    name: container.name.clone(),
                    image: container.image.clone(),
                })
                .collect()
        };
        let pod = deployment
            .spec
            .as_ref()
            .and_then(|spec| spec.template.spec.as_ref());
        SiteDeployment {
            metadata: deployment.metadata.clone(),
            spec: SiteSpec {
                template: SiteTemplate {
                    spec: SitePodSpec {
                        containers: images(pod.map(|pod| &pod.containers)),
                        init_containers: images(pod.and_then(|pod| pod.init_containers.as_ref())),
                    },
                },
            },
            site_label: None,
        }
    }
}

/// What the caches keep, by the names the settings give: those of each
/// settings a stamp may have been made with (the current ones, and those
/// just before an edit, see `settings_source::Accepted`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keep {
    site_label: Arc<str>,
    /// `P/` of each: the policy's annotations.
    own_prefixes: Vec<String>,
    /// `P/job` of each: kept as a digest.
    job_annotations: Vec<String>,
}

impl Keep {
    pub fn new(settings: &Settings) -> Keep {
        Keep::of(&[settings])
    }

    /// For these settings, the current ones first (whose site label the
    /// watch selects by).
    pub fn of(candidates: &[&Settings]) -> Keep {
        let mut own_prefixes: Vec<String> = candidates
            .iter()
            .map(|settings| format!("{}/", settings.annotation_prefix))
            .collect();
        own_prefixes.dedup();
        let mut job_annotations: Vec<String> = candidates
            .iter()
            .map(|settings| settings.annotation(keys::JOB))
            .collect();
        job_annotations.dedup();
        Keep {
            site_label: Arc::from(
                candidates
                    .first()
                    .map_or(keys::default_site_label(), |settings| {
                        settings.site_label.clone()
                    })
                    .as_str(),
            ),
            own_prefixes,
            job_annotations,
        }
    }

    /// A companion Job, after kube's watcher has read its resourceVersion:
    /// no decision reads it, so the cache does not keep it.
    pub fn job(job: &mut CachedJob) {
        job.metadata.resource_version = None;
    }

    /// A site Deployment: the site label (its key shared) and the policy's
    /// own annotations, the stamped Job as a digest; no managedFields.
    pub fn deployment(&self, site: &mut SiteDeployment) {
        let metadata = &mut site.metadata;
        metadata.managed_fields = None;
        if let Some(value) = metadata
            .labels
            .take()
            .and_then(|mut labels| labels.remove(&*self.site_label))
        {
            site.site_label = Some((Arc::clone(&self.site_label), value));
        }
        if let Some(annotations) = metadata.annotations.as_mut() {
            annotations.retain(|key, _| {
                self.own_prefixes
                    .iter()
                    .any(|prefix| key.starts_with(prefix.as_str()))
            });
            for key in &self.job_annotations {
                if let Some(job) = annotations.get_mut(key) {
                    *job = digest(job);
                }
            }
        }
    }
}

/// `sha256:<hex>` of `text`.
pub fn digest(text: &str) -> String {
    let hash = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(DIGEST_PREFIX.len() + 64);
    out.push_str(DIGEST_PREFIX);
    for byte in hash {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

pub fn is_digest(value: &str) -> bool {
    value.len() == DIGEST_PREFIX.len() + 64 && value.starts_with(DIGEST_PREFIX)
}

/// `carries(key, value)` for the policy's decision, over cached annotations:
/// the very value, or the digest the cache keeps of it.
pub fn carried_in_cache(
    annotations: Option<&BTreeMap<String, String>>,
) -> impl Fn(&str, &str) -> bool + '_ {
    move |key, value| {
        annotations
            .and_then(|annotations| annotations.get(key))
            .is_some_and(|carried| {
                carried == value || (is_digest(carried) && *carried == digest(value))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launcher::plan::{Decision, decide};
    use crate::test_support::stamped;
    use k8s_openapi::jiff::Timestamp;
    use kube::ResourceExt as _;
    use serde_json::json;

    /// A Deployment as a watch sends it, decoded and kept as the cache does.
    fn cached(deployment: &Deployment, settings: &Settings) -> SiteDeployment {
        let mut site: SiteDeployment =
            serde_json::from_value(serde_json::to_value(deployment).unwrap()).unwrap();
        Keep::new(settings).deployment(&mut site);
        site
    }

    #[test]
    fn the_cache_keeps_what_the_decisions_read_and_a_digest_of_the_stamp() {
        let settings = Settings::default();
        let mut deployment = stamped("nginx:1.25");
        let labels = deployment.metadata.labels.get_or_insert_default();
        labels.insert("app.kubernetes.io/name".into(), "shop".into());
        let annotations = deployment.metadata.annotations.get_or_insert_default();
        annotations.insert(
            "kubectl.kubernetes.io/last-applied-configuration".into(),
            "{}".into(),
        );
        let job_json = annotations["cache-buster.io/job"].clone();

        let site = cached(&deployment, &settings);
        assert_eq!(site.metadata.labels, None);
        assert_eq!(
            site.site_label
                .as_ref()
                .map(|(key, value)| (&**key, value.as_str())),
            Some(("cache-buster.io/site", "shop.example.com"))
        );
        let kept: Vec<&str> = site.annotations().keys().map(String::as_str).collect();
        assert_eq!(
            kept,
            [
                "cache-buster.io/image-hash",
                "cache-buster.io/job",
                "cache-buster.io/job-name",
                "cache-buster.io/urls"
            ]
        );
        assert_eq!(site.annotations()["cache-buster.io/job"], digest(&job_json));
        assert!(site.has_digests());
        assert_eq!(
            site.spec.template.spec.containers,
            [NamedImage {
                name: "web".into(),
                image: Some("nginx:1.25".into())
            }]
        );
    }

    /// Right after an edit of the prefix, a stamp of the settings before it
    /// is still the policy's: the cache keeps the annotations of both.
    #[test]
    fn the_annotations_of_the_settings_before_an_edit_are_kept_too() {
        let before = Settings::default();
        let after = Settings {
            annotation_prefix: "purge.example.com".into(),
            ..Settings::default()
        };
        let mut site: SiteDeployment =
            serde_json::from_value(serde_json::to_value(stamped("nginx:1.25")).unwrap()).unwrap();
        let annotations = site.metadata.annotations.get_or_insert_default();
        annotations.insert(
            "purge.example.com/urls".into(),
            "https://shop.example.com/".into(),
        );
        annotations.insert("other.example.com/note".into(), "x".into());
        Keep::of(&[&after, &before]).deployment(&mut site);
        let kept = site.annotations();
        assert!(kept.contains_key("purge.example.com/urls"));
        assert!(is_digest(&kept["cache-buster.io/job"]));
        assert!(!kept.contains_key("other.example.com/note"));
        let mut only_after: SiteDeployment =
            serde_json::from_value(serde_json::to_value(stamped("nginx:1.25")).unwrap()).unwrap();
        Keep::new(&after).deployment(&mut only_after);
        assert!(only_after.annotations().is_empty());
    }

    /// Every site shares one copy of the site label's key.
    #[test]
    fn the_site_labels_key_is_shared() {
        let settings = Settings::default();
        let keep = Keep::new(&settings);
        let mut sites: Vec<SiteDeployment> = ["nginx:1.25", "nginx:1.26"]
            .iter()
            .map(|image| {
                serde_json::from_value(serde_json::to_value(stamped(image)).unwrap()).unwrap()
            })
            .collect();
        for site in &mut sites {
            keep.deployment(site);
        }
        let keys: Vec<&Arc<str>> = sites
            .iter()
            .map(|site| &site.site_label.as_ref().unwrap().0)
            .collect();
        assert!(Arc::ptr_eq(keys[0], keys[1]));
    }

    /// What the launcher decides from the cache is what it would decide
    /// from the whole Deployment: a Job is created from the derivation.
    #[test]
    fn a_cached_site_decides_as_the_whole_deployment() {
        let settings = Settings::default();
        let deployment = stamped("nginx:1.25");
        let site = cached(&deployment, &settings);
        let now = Timestamp::now();
        let whole = decide(&settings, &deployment, &[], 2, now);
        let from_cache = decide(&settings, &site.to_deployment(), &[], 2, now);
        assert!(matches!(whole, Decision::Reconcile(_)), "{whole:?}");
        assert_eq!(from_cache, whole);
    }

    /// A forged or stale stamp is refused from the cache too; its digest
    /// is not the derivation's.
    #[test]
    fn a_stamp_that_is_not_the_derivation_is_refused_from_the_cache() {
        let settings = Settings::default();
        let mut deployment = stamped("nginx:1.25");
        let annotations = deployment.metadata.annotations.as_mut().unwrap();
        let job = annotations.get_mut("cache-buster.io/job").unwrap();
        *job = job.replace("\"backoffLimit\":3", "\"backoffLimit\":4");
        let site = cached(&deployment, &settings);
        let decision = decide(&settings, &site.to_deployment(), &[], 2, Timestamp::now());
        assert!(matches!(decision, Decision::Refuse { .. }), "{decision:?}");
    }

    #[test]
    fn carries_compares_values_or_their_digests() {
        let annotations = BTreeMap::from([
            ("a".to_owned(), "short".to_owned()),
            ("job".to_owned(), digest("{\"kind\":\"Job\"}")),
        ]);
        let carries = carried_in_cache(Some(&annotations));
        assert!(carries("a", "short"));
        assert!(!carries("a", "other"));
        assert!(carries("job", "{\"kind\":\"Job\"}"));
        assert!(!carries("job", "{\"kind\":\"Job\",\"x\":1}"));
        assert!(!carries("missing", "short"));
    }

    /// A Job decodes into its identity, owner, companion labels, hash and
    /// end; its spec, status counters and other metadata are not kept.
    #[test]
    fn a_job_decodes_into_what_the_plans_read() {
        let wire = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {
                "name": "shop-cache-buster-d568c927cb", "namespace": "web", "uid": "job-uid",
                "resourceVersion": "77", "generation": 1, "creationTimestamp": "2026-12-01T09:00:00Z",
                "labels": {"app.kubernetes.io/managed-by": "cache-buster", "app.kubernetes.io/component": "cache-buster",
                           "cache-buster.io/image-hash": "d568c927cb", "cache-buster.io/site": "shop.example.com"},
                "annotations": {"x": "y"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop", "uid": "dep-uid",
                                     "blockOwnerDeletion": true}],
                "managedFields": [{"manager": "kube-controller-manager"}]
            },
            "spec": {"backoffLimit": 3, "template": {"spec": {"containers": [{"name": "purge"}]}}},
            "status": {
                "conditions": [
                    {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
                    {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                     "message": "Job has reached the specified backoff limit",
                     "lastTransitionTime": "2026-12-01T09:05:00Z", "lastProbeTime": "2026-12-01T09:05:00Z"}
                ],
                "startTime": "2026-12-01T09:00:01Z", "failed": 4, "ready": 0, "terminating": 0
            }
        });
        let job: CachedJob = serde_json::from_value(wire).unwrap();
        assert!(job.companion);
        assert_eq!(job.image_hash.as_deref(), Some("d568c927cb"));
        assert_eq!(job.completion_time, None);
        let end = job.end.as_ref().unwrap();
        assert!(!end.complete);
        assert_eq!(
            end.reason,
            "BackoffLimitExceeded: Job has reached the specified backoff limit"
        );
        assert_eq!(
            end.at.as_ref().map(|at| at.0.to_string()),
            Some("2026-12-01T09:05:00Z".to_owned())
        );
        let metadata = &job.metadata;
        assert_eq!(
            metadata.name.as_deref(),
            Some("shop-cache-buster-d568c927cb")
        );
        assert_eq!(metadata.uid.as_deref(), Some("job-uid"));
        assert_eq!(
            (
                metadata.labels.as_ref(),
                metadata.annotations.as_ref(),
                metadata.managed_fields.as_ref()
            ),
            (None, None, None)
        );
        // kube's watcher resumes from the resourceVersion (and refuses an
        // event without one): decoded, it is there; in the cache, not.
        assert_eq!(
            (metadata.resource_version.as_deref(), metadata.generation),
            (Some("77"), None)
        );
        let mut cached = job.clone();
        Keep::job(&mut cached);
        assert_eq!(cached.metadata.resource_version, None);
        assert_eq!(
            CachedJob {
                metadata: ObjectMeta {
                    resource_version: Some("77".to_owned()),
                    ..cached.metadata.clone()
                },
                ..cached
            },
            job
        );
        let owner = &metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Deployment", "shop", "dep-uid")
        );
        assert_eq!(owner.block_owner_deletion, None);

        let running: CachedJob = serde_json::from_value(json!({
            "metadata": {"name": "j", "labels": {"app.kubernetes.io/managed-by": "someone-else"}},
            "status": {"active": 1}
        }))
        .unwrap();
        assert!(!running.companion);
        assert_eq!(running.end, None);
    }

    #[test]
    fn the_hash_labels_suffix_is_the_policys_label() {
        assert_eq!(
            IMAGE_HASH_LABEL_SUFFIX,
            format!("/{}", cache_buster::keys::IMAGE_HASH)
        );
    }
}
