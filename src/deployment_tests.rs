use super::*;
use crate::registry_ca::RegistryCa;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::LocalObjectReference;
use rstest::rstest;
use serde_json::{Value, json};

fn deployment(value: Value) -> Deployment {
    serde_json::from_value(value).unwrap()
}

/// A labelled site Deployment, as in SPEC §2.
fn site(annotations: Value, containers: Value) -> Deployment {
    deployment(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "shop",
            "namespace": "web",
            "labels": {"app": "shop", "cache-buster.io/site": "shop.example.com"},
            "annotations": annotations
        },
        "spec": {
            "selector": {"matchLabels": {"app": "shop"}},
            "template": {
                "metadata": {"labels": {"app": "shop"}},
                "spec": {"containers": containers, "initContainers": [{"name": "migrate", "image": "migrate:9"}]}
            }
        }
    }))
}

fn web(image: &str) -> Value {
    json!([{"name": "web", "image": image}])
}

fn urls() -> Value {
    json!({"cache-buster.io/urls": "https://shop.example.com/"})
}

fn stamp_of(deployment: &Deployment) -> (Stamp, Vec<String>) {
    derive_stamp(&Settings::default(), deployment, RequestContext::default()).unwrap()
}

fn error_of(deployment: &Deployment) -> String {
    derive_stamp(&Settings::default(), deployment, RequestContext::default())
        .unwrap_err()
        .to_string()
}

fn with_stamp(deployment: &Deployment, stamp: &Stamp) -> Deployment {
    let mut stamped = deployment.clone();
    let annotations = stamped
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    for (key, value) in stamp.annotations(&Settings::default()).unwrap() {
        annotations.insert(key, value);
    }
    stamped
}

#[test]
fn participation_follows_the_spec_table() {
    let settings = Settings::default();
    let meta = |value: Value| serde_json::from_value::<ObjectMeta>(value).unwrap();
    assert_eq!(
        participation(
            &settings,
            &meta(json!({"labels": {"cache-buster.io/site": "shop"}}))
        ),
        Participation::Site
    );
    assert_eq!(
        participation(
            &settings,
            &meta(
                json!({"labels": {"app": "shop"}, "annotations": {"cache-buster.io/job-name": "x", "other": "y"}})
            )
        ),
        Participation::LabelRemoved(vec!["cache-buster.io/job-name".to_owned()])
    );
    assert_eq!(
        participation(&settings, &meta(json!({"labels": {"app": "shop"}}))),
        Participation::NotTakingPart
    );
    assert_eq!(
        participation(&settings, &meta(json!({}))),
        Participation::NotTakingPart
    );
}

#[test]
fn participation_uses_the_configured_label_and_prefix() {
    let settings = Settings {
        site_label: "example.com/site".into(),
        annotation_prefix: "purge.example.com".into(),
        ..Settings::default()
    };
    let meta = |value: Value| serde_json::from_value::<ObjectMeta>(value).unwrap();
    assert_eq!(
        participation(
            &settings,
            &meta(json!({"labels": {"example.com/site": "s"}}))
        ),
        Participation::Site
    );
    assert_eq!(
        participation(
            &settings,
            &meta(json!({"labels": {"cache-buster.io/site": "s"}}))
        ),
        Participation::NotTakingPart
    );
    assert_eq!(
        participation(
            &settings,
            &meta(json!({"annotations": {"purge.example.com/job": "{}"}}))
        ),
        Participation::LabelRemoved(vec!["purge.example.com/job".to_owned()])
    );
}

#[test]
fn a_new_site_deployment_gets_the_three_annotations() {
    let deployment = site(urls(), web("nginx:1.25"));
    let decision = decide(
        &Settings::default(),
        &deployment,
        RequestContext::default(),
        carried_in(deployment.metadata.annotations.as_ref()),
    )
    .unwrap();
    let Decision::Stamp { stamp, warnings } = decision else {
        panic!("expected a stamp")
    };
    assert_eq!(stamp.image_hash, "d568c927cb");
    assert_eq!(stamp.job_name, "shop-cache-buster-d568c927cb");
    let job: Job = serde_json::from_str(&stamp.job_json().unwrap()).unwrap();
    assert_eq!(
        job.metadata.name.as_deref(),
        Some("shop-cache-buster-d568c927cb")
    );
    assert_eq!(job.metadata.namespace.as_deref(), Some("web"));
    assert!(warnings.is_empty(), "{warnings:?}");
}

/// Argo CD prunes what carries its Application's tracking label or
/// annotation and is not in Git: the Job carries only SPEC §4's own
/// labels and annotation, whatever the Deployment and its pods carry.
#[test]
fn the_job_carries_no_tracking_label_or_annotation_of_the_deployment() {
    let mut deployment = site(
        json!({
            "cache-buster.io/urls": "https://shop.example.com/",
            "argocd.argoproj.io/tracking-id": "shop:apps/Deployment:web/shop",
            "argocd.argoproj.io/sync-wave": "1",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "kustomize.toolkit.fluxcd.io/reconcile": "enabled"
        }),
        web("nginx:1.25"),
    );
    let tracked = [
        ("app.kubernetes.io/instance", "shop"),
        ("kustomize.toolkit.fluxcd.io/name", "sites"),
        ("app.kubernetes.io/part-of", "shop"),
    ];
    for labels in [
        deployment.metadata.labels.as_mut(),
        deployment
            .spec
            .as_mut()
            .and_then(|spec| spec.template.metadata.as_mut())
            .and_then(|metadata| metadata.labels.as_mut()),
    ] {
        let labels = labels.unwrap();
        for (key, value) in tracked {
            labels.insert(key.to_owned(), value.to_owned());
        }
    }
    let (stamp, _) = stamp_of(&deployment);
    let job: Job = serde_json::from_str(&stamp.job_json().unwrap()).unwrap();
    let own_labels = [
        "app.kubernetes.io/component",
        "app.kubernetes.io/managed-by",
        "cache-buster.io/image-hash",
        "cache-buster.io/site",
    ];
    let keys = |map: Option<&BTreeMap<String, String>>| -> Vec<String> {
        map.map(|map| map.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(keys(job.metadata.labels.as_ref()), own_labels);
    assert_eq!(
        keys(job.metadata.annotations.as_ref()),
        ["cache-buster.io/stamped-by"]
    );
    let pod = job.spec.unwrap().template.metadata.unwrap();
    assert_eq!(keys(pod.labels.as_ref()), own_labels);
    assert_eq!(keys(pod.annotations.as_ref()), Vec::<String>::new());
}

#[test]
fn the_job_json_is_compact() {
    let (stamp, _) = stamp_of(&site(urls(), web("nginx:1.25")));
    let parsed: Value = serde_json::from_str(&stamp.job_json().unwrap()).unwrap();
    assert_eq!(
        serde_json::to_string(&parsed).unwrap(),
        stamp.job_json().unwrap()
    );
    assert!(!stamp.job_json().unwrap().contains('\n'));
    assert!(
        stamp
            .job_json()
            .unwrap()
            .starts_with(&format!(
                r#"{{"apiVersion":"batch/v1","kind":"Job","metadata":{{"annotations":{{"cache-buster.io/stamped-by":"cache-buster {}, settings "#,
                env!("CARGO_PKG_VERSION")
            ))
    );
}

#[test]
fn a_stamped_deployment_is_up_to_date() {
    let deployment = site(urls(), web("nginx:1.25"));
    let (stamp, _) = stamp_of(&deployment);
    let stamped = with_stamp(&deployment, &stamp);
    assert_eq!(
        decide(
            &Settings::default(),
            &stamped,
            RequestContext::default(),
            carried_in(stamped.metadata.annotations.as_ref()),
        ),
        Ok(Decision::UpToDate {
            stamp,
            warnings: vec![]
        })
    );
}

#[rstest]
#[case::hash(0)]
#[case::job_name(1)]
#[case::job(2)]
fn any_tampered_annotation_is_overwritten(#[case] tampered: usize) {
    let deployment = site(urls(), web("nginx:1.25"));
    let (stamp, _) = stamp_of(&deployment);
    let mut stamped = with_stamp(&deployment, &stamp);
    let key = stamp_keys(&Settings::default())[tampered].clone();
    stamped
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(key, r#"{"smuggled":true}"#.into());
    assert_eq!(
        decide(
            &Settings::default(),
            &stamped,
            RequestContext::default(),
            carried_in(stamped.metadata.annotations.as_ref()),
        ),
        Ok(Decision::Stamp {
            stamp,
            warnings: vec![]
        })
    );
}

#[test]
fn an_image_change_changes_the_stamp() {
    let old = site(urls(), web("nginx:1.25"));
    let (old_stamp, _) = stamp_of(&old);
    let new = with_stamp(&site(urls(), web("nginx:1.26")), &old_stamp);
    let Ok(Decision::Stamp { stamp, .. }) = decide(
        &Settings::default(),
        &new,
        RequestContext::default(),
        carried_in(new.metadata.annotations.as_ref()),
    ) else {
        panic!("expected a new stamp")
    };
    assert_ne!(stamp.image_hash, old_stamp.image_hash);
    assert_ne!(stamp.job_name, old_stamp.job_name);
}

#[test]
fn cosmetic_image_spellings_do_not_change_the_stamp() {
    let (short, _) = stamp_of(&site(urls(), web("nginx:1.25")));
    let (long, _) = stamp_of(&site(urls(), web("docker.io/library/nginx:1.25")));
    assert_eq!(short, long);
}

#[test]
fn init_containers_never_count() {
    let (a, _) = stamp_of(&site(urls(), web("nginx:1.25")));
    let mut other_init = site(urls(), web("nginx:1.25"));
    other_init
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .init_containers = Some(vec![Container {
        name: "migrate".into(),
        image: Some("migrate:10".into()),
        ..Container::default()
    }]);
    let (b, _) = stamp_of(&other_init);
    assert_eq!(a.image_hash, b.image_hash);
}

#[test]
fn every_container_counts_unless_one_is_named() {
    let containers = json!([{"name": "web", "image": "nginx:1.25"}, {"name": "php", "image": "bitnami/php-fpm:8.3"}]);
    let (all, _) = stamp_of(&site(urls(), containers.clone()));
    assert_eq!(all.image_hash, "80e0188a88");
    let mut only_web = urls();
    only_web["cache-buster.io/container"] = json!("web");
    let (web_only, _) = stamp_of(&site(only_web, containers));
    assert_eq!(web_only.image_hash, "d568c927cb");
}

#[test]
fn a_sidecar_change_is_ignored_when_the_counted_container_is_named() {
    let mut annotations = urls();
    annotations["cache-buster.io/container"] = json!("web");
    let before = site(
        annotations.clone(),
        json!([{"name": "web", "image": "nginx:1.25"}, {"name": "proxy", "image": "envoy:1"}]),
    );
    let after = site(
        annotations,
        json!([{"name": "web", "image": "nginx:1.25"}, {"name": "proxy", "image": "envoy:2"}]),
    );
    assert_eq!(stamp_of(&before).0, stamp_of(&after).0);
}

#[rstest]
#[case::unknown(
    "cache",
    "annotation cache-buster.io/container: \"cache\" names no container of the Deployment; expected one of the containers: web"
)]
#[case::a_list(
    "web, proxy",
    "annotation cache-buster.io/container: \"web, proxy\" is a list, and the annotation takes a single container name; expected one of the containers: web (without the annotation, every container counts)"
)]
#[case::init(
    "migrate",
    "annotation cache-buster.io/container: \"migrate\" names an init container, and init containers never count; expected one of the containers: web"
)]
fn a_container_annotation_must_name_a_container(#[case] name: &str, #[case] message: &str) {
    let mut annotations = urls();
    annotations["cache-buster.io/container"] = json!(name);
    assert_eq!(error_of(&site(annotations, web("nginx:1.25"))), message);
}

#[rstest]
#[case::bad_reference(
    "Nginx:1",
    "spec.template.spec.containers[0].image (container \"web\"): \"Nginx:1\" is not a valid image reference: the repository name must be lowercase, got \"Nginx\"; expected [registry[:port]/]repository[:tag][@digest]"
)]
#[case::empty(
    "",
    "spec.template.spec.containers[0].image (container \"web\"): \"\" is not a valid image reference: it is empty"
)]
fn an_image_that_does_not_parse_is_rejected(#[case] image: &str, #[case] message: &str) {
    let error = error_of(&site(urls(), web(image)));
    assert!(error.starts_with(message), "{error}");
}

#[test]
fn a_missing_image_is_rejected() {
    let error = error_of(&site(urls(), json!([{"name": "web"}])));
    assert!(error.starts_with("spec.template.spec.containers[0].image (container \"web\"): \"\" is not a valid image reference"), "{error}");
}

#[test]
fn no_containers_is_rejected() {
    let error = error_of(&site(urls(), json!([])));
    assert_eq!(
        error,
        "spec.template.spec.containers: \"\" is empty; expected at least one container"
    );
}

#[rstest]
#[case::no_tag("nginx", true)]
#[case::latest("ghcr.io/acme/site:latest", true)]
#[case::pinned("nginx:1.25", false)]
#[case::digest(
    "nginx@sha256:0000000000000000000000000000000000000000000000000000000000000001",
    false
)]
fn mutable_tags_warn(#[case] image: &str, #[case] warns: bool) {
    let (_, warnings) = stamp_of(&site(urls(), web(image)));
    assert_eq!(warnings.len(), usize::from(warns), "{warnings:?}");
    if warns {
        assert!(
            warnings[0].starts_with("container \"web\" uses "),
            "{}",
            warnings[0]
        );
        assert!(warnings[0].contains(
            "(mutable tag): a rebuild pushed under the same tag keeps cache-buster.io/image-hash"
        ));
    }
}

#[test]
fn the_warning_also_comes_when_up_to_date() {
    let deployment = site(urls(), web("nginx"));
    let (stamp, warnings) = stamp_of(&deployment);
    let stamped = with_stamp(&deployment, &stamp);
    let decision = decide(
        &Settings::default(),
        &stamped,
        RequestContext::default(),
        carried_in(stamped.metadata.annotations.as_ref()),
    );
    assert_eq!(decision, Ok(Decision::UpToDate { stamp, warnings }));
}

#[rstest]
#[case::empty_site(json!({"cache-buster.io/site": ""}), "label cache-buster.io/site: \"\" is not a site name")]
#[case::invalid_site(json!({"cache-buster.io/site": "shop example"}), "label cache-buster.io/site: \"shop example\" is not a site name")]
fn the_site_label_must_name_a_site(#[case] labels: Value, #[case] message: &str) {
    let mut deployment = site(urls(), web("nginx:1.25"));
    deployment.metadata.labels = serde_json::from_value(labels).unwrap();
    let error = error_of(&deployment);
    assert!(error.starts_with(message), "{error}");
}

#[rstest]
#[case::provider(
    "cache-buster.io/provider",
    "keycdn",
    "annotation cache-buster.io/provider: \"keycdn\" is not a known provider; expected one of cloudflare, fastly, webhook, bunny, akamai, http, cloudfront, gcp, azure"
)]
#[case::provider_in_capitals(
    "cache-buster.io/provider",
    "Cloudflare",
    "annotation cache-buster.io/provider: \"Cloudflare\" is not a known provider; expected one of cloudflare, fastly, webhook, bunny, akamai, http, cloudfront, gcp, azure (provider names are lowercase: did you mean \"cloudflare\"?)"
)]
#[case::provider_misspelt(
    "cache-buster.io/provider",
    "fasty",
    "annotation cache-buster.io/provider: \"fasty\" is not a known provider; expected one of cloudflare, fastly, webhook, bunny, akamai, http, cloudfront, gcp, azure (did you mean \"fastly\"?)"
)]
#[case::secret(
    "cache-buster.io/secret",
    "My_Secret",
    "annotation cache-buster.io/secret: \"My_Secret\" is not a Secret name; expected a DNS-1123 subdomain such as cdn-credentials"
)]
#[case::url(
    "cache-buster.io/urls",
    "shop.example.com/",
    "annotation cache-buster.io/urls: \"shop.example.com/\" is not an absolute http or https URL"
)]
#[case::dry_run(
    "cache-buster.io/dry-run",
    "yes",
    "annotation cache-buster.io/dry-run: \"yes\" is not a boolean; expected \"true\" or \"false\""
)]
#[case::content_without_url(
    "cache-buster.io/content",
    "/usr/share/nginx/html",
    "annotation cache-buster.io/content: \"/usr/share/nginx/html\" has no = between the directory and the base URL; expected <dir>=<base URL> pairs separated by commas"
)]
#[case::content_relative_dir(
    "cache-buster.io/content",
    "html=https://shop.example.com/",
    "annotation cache-buster.io/content: \"html=https://shop.example.com/\" has a directory that is not absolute (it must start with /)"
)]
#[case::content_url_without_slash(
    "cache-buster.io/content",
    "/srv=https://shop.example.com/blog",
    "annotation cache-buster.io/content: \"/srv=https://shop.example.com/blog\" has a base URL that does not end in /"
)]
#[case::warm(
    "cache-buster.io/warm",
    "on",
    "annotation cache-buster.io/warm: \"on\" is not a boolean; expected \"true\" or \"false\""
)]
#[case::unknown(
    "cache-buster.io/contnet",
    "/srv=https://shop.example.com/",
    "annotation cache-buster.io/contnet is not one the policy reads (did you mean cache-buster.io/content?); expected one of cache-buster.io/urls, "
)]
fn bad_annotations_are_rejected_by_name(
    #[case] key: &str,
    #[case] value: &str,
    #[case] message: &str,
) {
    let mut annotations = urls();
    annotations[key] = json!(value);
    let error = error_of(&site(annotations, web("nginx:1.25")));
    assert!(error.starts_with(message), "{error}");
}

#[rstest]
#[case::missing(json!({}), "annotation cache-buster.io/http-service is missing: provider http purges the caches behind a Service; expected <service>[:<port>], a Service in the Deployment's namespace (a DNS-1035 label) and optionally one of its ports by number (1-65535) or name, such as varnish or varnish:http")]
#[case::bad_name(json!({"cache-buster.io/http-service": "Varnish"}), "annotation cache-buster.io/http-service: \"Varnish\" names no Service: \"Varnish\" is not a DNS-1035 label; expected <service>[:<port>]")]
#[case::bad_port(json!({"cache-buster.io/http-service": "varnish:70000"}), "annotation cache-buster.io/http-service: \"varnish:70000\" has port 70000, out of range 1-65535; expected <service>[:<port>]")]
fn provider_http_needs_a_cache_service(#[case] service: Value, #[case] message: &str) {
    let mut annotations = json!({
        "cache-buster.io/provider": "http",
        "cache-buster.io/urls": "https://shop.example.com/",
    });
    annotations
        .as_object_mut()
        .unwrap()
        .extend(service.as_object().unwrap().clone());
    let error = error_of(&site(annotations, web("nginx:1.25")));
    assert!(error.starts_with(message), "{error}");
}

#[test]
fn the_cache_service_reaches_the_argv_and_is_read_only_with_http() {
    let (stamp, warnings) = stamp_of(&site(
        json!({"cache-buster.io/provider": "http", "cache-buster.io/http-service": " varnish:6081 ",
               "cache-buster.io/urls": "https://shop.example.com/"}),
        web("nginx:1.25"),
    ));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(
        stamp
            .job_json()
            .unwrap()
            .contains(r#""--http-service=varnish:6081""#)
    );
    let (_, warnings) = stamp_of(&site(
        json!({"cache-buster.io/http-service": "varnish", "cache-buster.io/urls": "https://shop.example.com/"}),
        web("nginx:1.25"),
    ));
    assert_eq!(
        warnings,
        [
            "cache-buster.io/http-service is read only with provider http; this Deployment's provider is cloudflare"
        ]
    );
}

#[test]
fn a_deployment_without_purge_target_is_rejected() {
    let error = error_of(&site(json!({}), web("nginx:1.25")));
    assert!(
        error.starts_with("Deployment web/shop has no purge target for provider cloudflare"),
        "{error}"
    );
}

/// SPEC §9: `P/content` is a target of its own; the Job's argv carries
/// each pair (normalized), the setting's limit and the warm-up.
#[test]
fn a_content_site_needs_no_other_target_and_its_job_names_the_pairs() {
    let settings = Settings {
        content_max_urls: 1200,
        ..Settings::default()
    };
    let annotations = json!({
        "cache-buster.io/content": "/usr/share/nginx/html/=https://shop.example.com/, /srv/docs=https://docs.example.com/v2/",
        "cache-buster.io/warm": "true"
    });
    let (stamp, warnings) = derive_stamp(
        &settings,
        &site(annotations, web("nginx:1.25")),
        RequestContext::default(),
    )
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let job: Value = serde_json::from_str(&stamp.job_json().unwrap()).unwrap();
    let args: Vec<String> =
        serde_json::from_value(job["spec"]["template"]["spec"]["containers"][0]["args"].clone())
            .unwrap();
    let content: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|arg| arg.starts_with("--content") || *arg == "--warm")
        .collect();
    assert_eq!(
        content,
        [
            "--content=/usr/share/nginx/html=https://shop.example.com/",
            "--content=/srv/docs=https://docs.example.com/v2/",
            "--content-max-urls=1200",
            "--warm"
        ]
    );
}

/// SPEC §9: a content purge reads its images with the Deployment's pull
/// secrets (mounted read-only, each its docker config), over plain HTTP
/// only from the registries the settings name, and looks up the image last
/// purged with the Job's token. A site without `P/content` gets none of it.
#[test]
fn a_content_purge_gets_the_pull_secrets_the_token_and_the_registry_settings() {
    let settings = Settings {
        content_insecure_registries: vec!["registry.local:5000".to_owned()],
        content_registry_ca: Some(RegistryCa {
            config_map: "trust-bundle".to_owned(),
            key: "trust-bundle.pem".to_owned(),
        }),
        ..Settings::default()
    };
    let mut deployment = site(
        json!({"cache-buster.io/content": "/srv=https://shop.example.com/"}),
        web("registry.local:5000/shop:2"),
    );
    if let Some(pod) = deployment
        .spec
        .as_mut()
        .and_then(|spec| spec.template.spec.as_mut())
    {
        pod.image_pull_secrets = Some(vec![
            LocalObjectReference {
                name: "pull-a".to_owned(),
            },
            LocalObjectReference {
                name: "pull-b".to_owned(),
            },
        ]);
    }
    let (stamp, _) = derive_stamp(&settings, &deployment, RequestContext::default()).unwrap();
    let job: Value = serde_json::from_str(&stamp.job_json().unwrap()).unwrap();
    let pod = &job["spec"]["template"]["spec"];
    let purge = &pod["containers"][0];
    assert_eq!(
        purge["volumeMounts"],
        json!([
            {"mountPath": "/var/run/secrets/cache-buster", "name": "credentials", "readOnly": true},
            {"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "kube-api-access", "readOnly": true},
            {"mountPath": "/var/run/secrets/cache-buster/registries", "name": "registries", "readOnly": true},
            {"mountPath": "/var/run/secrets/cache-buster/registry-ca", "name": "registry-ca", "readOnly": true}
        ])
    );
    assert_eq!(
        pod["volumes"][3],
        json!({"name": "registry-ca", "configMap": {"name": "trust-bundle", "optional": true,
               "items": [{"key": "trust-bundle.pem", "path": "ca.crt"}]}})
    );
    assert_eq!(
        pod["volumes"][2],
        json!({"name": "registries", "projected": {"sources": [
            {"secret": {"name": "pull-a", "optional": true, "items": [{"key": ".dockerconfigjson", "path": "00-pull-a.json"}]}},
            {"secret": {"name": "pull-b", "optional": true, "items": [{"key": ".dockerconfigjson", "path": "01-pull-b.json"}]}}
        ]}})
    );
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"]["cache-buster.io/content"],
        "true"
    );
    let args = purge["args"].as_array().unwrap();
    for expected in [
        "--insecure-registry=registry.local:5000",
        "--registry-ca-file=/var/run/secrets/cache-buster/registry-ca/ca.crt",
        "--image=registry.local:5000/shop:2",
        "--deployment=shop",
    ] {
        assert!(args.contains(&json!(expected)), "{expected} in {args:?}");
    }

    // The same Deployment without P/content: no registry, no token.
    let mut plain = deployment.clone();
    plain.metadata.annotations = Some(BTreeMap::from([(
        "cache-buster.io/urls".to_owned(),
        "https://shop.example.com/".to_owned(),
    )]));
    let (stamp, _) = derive_stamp(&settings, &plain, RequestContext::default()).unwrap();
    let job: Value = serde_json::from_str(&stamp.job_json().unwrap()).unwrap();
    assert_eq!(
        job["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert!(!stamp.job_json().unwrap().contains("--insecure-registry"));
    assert!(!stamp.job_json().unwrap().contains("registry-ca"));
    assert!(
        !stamp
            .job_json()
            .unwrap()
            .contains("cache-buster.io/content")
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"],
        json!([{"mountPath": "/var/run/secrets/cache-buster", "name": "credentials", "readOnly": true}])
    );
}

/// SPEC §9 compares one image: with two counted containers, the user names one.
#[test]
fn a_content_site_with_two_counted_containers_must_name_one() {
    let containers =
        json!([{"name": "web", "image": "nginx:1.25"}, {"name": "proxy", "image": "envoy:1"}]);
    let mut annotations = json!({"cache-buster.io/content": "/srv=https://shop.example.com/"});
    let error = error_of(&site(annotations.clone(), containers.clone()));
    assert_eq!(
        error,
        "annotation cache-buster.io/content: \"/srv=https://shop.example.com/\" compares one image, and 2 containers count; expected cache-buster.io/container naming the container whose image holds the site"
    );
    annotations["cache-buster.io/container"] = json!("web");
    assert!(
        stamp_of(&site(annotations, containers))
            .0
            .job_json()
            .unwrap()
            .contains("--content=/srv=")
    );
}

/// Without `P/content`, the argv has no content flag, whatever the setting.
#[test]
fn a_site_without_content_has_no_content_flags() {
    let (stamp, _) = stamp_of(&site(urls(), web("nginx:1.25")));
    assert!(
        !stamp.job_json().unwrap().contains("--content"),
        "{}",
        stamp.job_json().unwrap()
    );
}

/// A layer that can purge neither prefixes nor everything cannot take the
/// content purge's fallback: accepted, and the user is told.
#[test]
fn a_content_layer_without_a_fallback_is_warned_about() {
    let annotations = json!({
        "cache-buster.io/provider": "akamai",
        "cache-buster.io/content": "/srv=https://shop.example.com/"
    });
    let (_, warnings) = stamp_of(&site(annotations, web("nginx:1.25")));
    assert_eq!(
        warnings,
        [
            "cache-buster.io/content: provider akamai purges neither URL prefixes nor everything, so where the content purge falls back (the first rollout, an image it cannot read, more than contentMaxUrls changed files) it purges only the annotated targets at this layer"
        ]
    );
}

#[test]
fn the_webhook_needs_no_target() {
    let (stamp, _) = stamp_of(&site(
        json!({"cache-buster.io/provider": "webhook"}),
        web("nginx:1.25"),
    ));
    let job: Value = serde_json::from_str(&stamp.job_json().unwrap()).unwrap();
    let args = job["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.starts_with(r#"["purge","--provider=webhook","#),
        "{args}"
    );
    assert!(
        !args.contains("--url=") && !args.contains("--tag="),
        "{args}"
    );
}

#[test]
fn provider_and_secret_annotations_override_the_settings() {
    let annotations = json!({
        "cache-buster.io/provider": " fastly\n",
        "cache-buster.io/secret": "fastly-credentials",
        "cache-buster.io/tags": "shop"
    });
    let (stamp, _) = stamp_of(&site(annotations, web("nginx:1.25")));
    let job: Value = serde_json::from_str(&stamp.job_json().unwrap()).unwrap();
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"][1]["secret"]["secretName"],
        "fastly-credentials"
    );
    let args = pod["containers"][0]["args"].to_string();
    assert!(
        args.contains(r#""--provider=fastly","--secret=fastly-credentials","--tag=shop""#),
        "{args}"
    );
}

/// Layers (SPEC §5): the providers in the order they purge, each with
/// its own flags, one Secret; the purge reads the API as http needs.
#[test]
fn layers_are_stamped_in_order_with_each_providers_flags() {
    let (stamp, warnings) = stamp_of(&site(
        json!({"cache-buster.io/provider": "http, cloudflare",
               "cache-buster.io/http-service": "varnish",
               "cache-buster.io/urls": "https://shop.example.com/"}),
        web("nginx:1.25"),
    ));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(stamp.providers, [Provider::Http, Provider::Cloudflare]);
    let job: Value = serde_json::from_str(&stamp.job_json().unwrap()).unwrap();
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["args"],
        json!([
            "purge",
            "--provider=http,cloudflare",
            "--secret=cache-buster-credentials",
            "--url=https://shop.example.com/",
            "--namespace=web",
            "--http-service=varnish",
            "--http-method=PURGE",
            "--cloudflare-batch-size=30",
            "--budget-seconds=180"
        ])
    );
    let alone = stamp_of(&site(
        json!({"cache-buster.io/provider": "http",
               "cache-buster.io/http-service": "varnish",
               "cache-buster.io/urls": "https://shop.example.com/"}),
        web("nginx:1.25"),
    ))
    .0;
    let mounts = |job_json: &str| {
        let job: Value = serde_json::from_str(job_json).unwrap();
        job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"].clone()
    };
    assert_eq!(
        mounts(&stamp.job_json().unwrap()),
        mounts(&alone.job_json().unwrap()),
        "the purge gets the token as with http alone"
    );
    assert!(
        mounts(&stamp.job_json().unwrap())
            .to_string()
            .contains("/var/run/secrets/kubernetes.io/serviceaccount"),
        "{}",
        mounts(&stamp.job_json().unwrap())
    );
}

#[rstest]
#[case::a_layer_refuses_a_target(
    json!({"cache-buster.io/provider": "http, cloudflare", "cache-buster.io/http-service": "varnish",
           "cache-buster.io/prefixes": "shop.example.com/blog"}),
    "annotation cache-buster.io/prefixes: provider http cannot purge by URL prefix"
)]
#[case::the_second_layer_refuses(
    json!({"cache-buster.io/provider": "cloudflare,fastly", "cache-buster.io/hosts": "shop.example.com"}),
    "annotation cache-buster.io/hosts: provider fastly cannot purge by host name"
)]
#[case::an_unknown_layer(
    json!({"cache-buster.io/provider": "http, clouflare", "cache-buster.io/urls": "https://shop.example.com/"}),
    "annotation cache-buster.io/provider: \"clouflare\" is not a known provider; expected one of cloudflare, fastly, webhook, bunny, akamai, http, cloudfront, gcp, azure (did you mean \"cloudflare\"?)"
)]
#[case::no_layer(
    json!({"cache-buster.io/provider": " , ", "cache-buster.io/urls": "https://shop.example.com/"}),
    "annotation cache-buster.io/provider: \" , \" names no provider; expected one of cloudflare"
)]
fn every_layer_must_purge_every_target(#[case] annotations: Value, #[case] message: &str) {
    let error = error_of(&site(annotations, web("nginx:1.25")));
    assert!(error.starts_with(message), "{error}");
}

/// A dry run is a Job of its own: the flag is part of the stamp, so
/// turning it off stamps a new Job, which then really purges.
#[test]
fn a_dry_run_is_stamped_into_the_purge_argv() {
    let purge_args = |dry_run: &str| {
        let mut annotations = urls();
        annotations["cache-buster.io/dry-run"] = json!(dry_run);
        let (stamp, _) = stamp_of(&site(annotations, web("nginx:1.25")));
        let job: Value = serde_json::from_str(&stamp.job_json().unwrap()).unwrap();
        (
            stamp.job_json().unwrap(),
            job["spec"]["template"]["spec"]["containers"][0]["args"].to_string(),
        )
    };
    let (dry_job, dry_args) = purge_args("true");
    assert!(
        dry_args.starts_with(
            r#"["purge","--provider=cloudflare","--secret=cache-buster-credentials","--dry-run","--url="#
        ),
        "{dry_args}"
    );
    let (real_job, real_args) = purge_args(" false ");
    assert!(!real_args.contains("--dry-run"), "{real_args}");
    assert_ne!(dry_job, real_job);
}

/// Front Door may take ten minutes to finish a purge: with the default
/// deadline the purge gets what is left after the rollout (300 s), and
/// the user is told what to raise; a roomy deadline gives it all 780 s.
#[test]
fn an_azure_site_gets_the_budget_the_deadline_leaves_and_a_warning() {
    let annotations = json!({"cache-buster.io/provider": "azure",
                             "cache-buster.io/urls": "https://shop.example.com/"});
    let budget = |settings: &Settings| {
        let (stamp, warnings) = derive_stamp(
            settings,
            &site(annotations.clone(), web("nginx:1.25")),
            RequestContext::default(),
        )
        .unwrap();
        let job: Value = serde_json::from_str(&stamp.job_json().unwrap()).unwrap();
        let args = job["spec"]["template"]["spec"]["containers"][0]["args"].clone();
        let budget = args
            .as_array()
            .and_then(|args| args.last())
            .and_then(Value::as_str)
            .map(str::to_owned);
        (budget, warnings)
    };
    let (short, warnings) = budget(&Settings::default());
    assert_eq!(short.as_deref(), Some("--budget-seconds=300"));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("cache-buster.io/provider: azure may take 600s")
            && warnings[0].ends_with("set activeDeadlineSeconds to at least 1380"),
        "{}",
        warnings[0]
    );
    let roomy = Settings {
        active_deadline_seconds: 1380,
        ..Settings::default()
    };
    assert_eq!(
        budget(&roomy),
        (Some("--budget-seconds=780".to_owned()), vec![])
    );
}

#[test]
fn the_webhook_payload_describes_the_rollout() {
    let annotations = json!({"cache-buster.io/provider": "webhook", "cache-buster.io/tags": "a b"});
    let (stamp, _) = stamp_of(&site(annotations, web("nginx:1.25")));
    let job: Value = serde_json::from_str(&stamp.job_json().unwrap()).unwrap();
    let args: Vec<String> =
        serde_json::from_value(job["spec"]["template"]["spec"]["containers"][0]["args"].clone())
            .unwrap();
    for expected in [
        "--site=shop.example.com".to_owned(),
        "--image=docker.io/library/nginx:1.25".to_owned(),
        format!("--image-hash={}", stamp.image_hash),
        format!("--job-name={}", stamp.job_name),
        "--tag=a".to_owned(),
        "--tag=b".to_owned(),
    ] {
        assert!(args.contains(&expected), "{expected} in {args:?}");
    }
}

#[test]
fn long_deployment_names_give_63_character_job_names() {
    let mut deployment = site(urls(), web("nginx:1.25"));
    deployment.metadata.name = Some(format!("{}.example", "s".repeat(60)));
    let (stamp, _) = stamp_of(&deployment);
    assert_eq!(stamp.job_name.len(), 63);
    assert_eq!(
        stamp.job_name,
        format!("{}-cache-buster-{}", "s".repeat(39), stamp.image_hash)
    );
}

#[test]
fn name_and_namespace_fall_back_to_the_request() {
    let mut deployment = site(urls(), web("nginx:1.25"));
    deployment.metadata.name = None;
    deployment.metadata.namespace = None;
    let context = RequestContext {
        name: Some("shop"),
        namespace: Some("web"),
    };
    let (stamp, _) = derive_stamp(&Settings::default(), &deployment, context).unwrap();
    assert_eq!(stamp.job_name, "shop-cache-buster-d568c927cb");
    assert_eq!(
        error_of(&deployment),
        "metadata.name: \"\" is not a Deployment name; expected a DNS-1123 subdomain (generateName is not supported for site Deployments)"
    );
}

#[test]
fn the_stamp_is_deterministic() {
    let deployment = site(
        json!({"cache-buster.io/urls": "https://a.example/ https://b.example/", "cache-buster.io/tags": "x y"}),
        web("nginx:1.25"),
    );
    let first = stamp_of(&deployment);
    for _ in 0..5 {
        assert_eq!(stamp_of(&deployment), first);
    }
}
