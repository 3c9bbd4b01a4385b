//! Purge providers (SPEC §5) at admission: whether each layer can purge the
//! Deployment's targets (from the purge crate's table), and the argv of the
//! Job's `purge` container, which runs the project's own program.
//!
//! The argv reads as what it does (`purge --provider=cloudflare
//! --secret=… --url=…`), never a shell script. Credentials stay in the
//! files of the mounted Secret, which the program reads: no secret value is
//! ever part of the Job, an annotation or a command line. The requests
//! themselves are the program's (purge/src/providers/).

use crate::error::{PolicyError, PolicyResult};
use crate::http_service::{DEFAULT_TAG_HEADER, HttpMethod, HttpService};
use crate::keys;
use crate::targets::{PurgeTargets, Target};

pub use cache_buster_purge::options::{
    AkamaiAction, AkamaiNetwork, AkamaiOptions, CREDENTIALS_DIR, PURGE_BUDGET_SECONDS,
    WebhookPayload,
};
pub use cache_buster_purge::providers::Provider;

/// What the policy checks of a provider, from the purge's table.
pub trait Admission {
    /// SPEC §2: a target the provider cannot purge, or no target at all (the
    /// webhook needs none), is an error. Returns warnings for what is accepted
    /// but has no effect.
    fn check_targets(
        self,
        purge: &PurgeTargets,
        deployment: &str,
        key: impl Fn(&str) -> String,
    ) -> PolicyResult<Vec<String>>;
}

impl Admission for Provider {
    fn check_targets(
        self,
        purge: &PurgeTargets,
        deployment: &str,
        key: impl Fn(&str) -> String,
    ) -> PolicyResult<Vec<String>> {
        let supported: Vec<&str> = Target::LISTS
            .into_iter()
            .filter(|target| self.accepts(*target))
            .map(Target::key)
            .collect();
        let purges_everything = self.accepts(Target::Everything);
        let expected = || {
            let mut names: Vec<String> = supported.iter().map(|name| key(name)).collect();
            if purges_everything {
                names.push(format!("{} (\"true\")", key(keys::EVERYTHING)));
            }
            names.join(", ")
        };
        if purge.everything && !purges_everything {
            return Err(PolicyError::NoPurgeEverything {
                key: key(keys::EVERYTHING),
                provider: self.name().to_owned(),
                expected: expected(),
            });
        }
        if let Some(unsupported) = purge
            .non_empty_lists()
            .into_iter()
            .find(|list| !supported.contains(list))
        {
            return Err(PolicyError::UnsupportedTarget {
                key: key(unsupported),
                provider: self.name().to_owned(),
                target: Target::LISTS
                    .into_iter()
                    .find(|target| target.key() == unsupported)
                    .map_or("URL", Target::noun)
                    .to_owned(),
                expected: expected(),
            });
        }
        if purge.is_empty() && !self.info().needs_no_target {
            return Err(PolicyError::NoPurgeTarget {
                deployment: deployment.to_owned(),
                provider: self.name().to_owned(),
                expected: expected(),
            });
        }
        let redundant = purge.non_empty_lists();
        let mut warnings = Vec::new();
        if purge.everything && !redundant.is_empty() && !self.info().needs_no_target {
            warnings.push(format!(
                "{} is \"true\": the whole cache is purged, so {} need no purge of their own",
                key(keys::EVERYTHING),
                redundant
                    .iter()
                    .map(|name| key(name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(warnings)
    }
}

/// SPEC §5, layers: every listed provider must accept every target; the
/// first that does not is named. Warnings are given once.
pub fn check_layers(
    providers: &[Provider],
    purge: &PurgeTargets,
    deployment: &str,
    key: impl Fn(&str) -> String,
) -> PolicyResult<Vec<String>> {
    let mut warnings: Vec<String> = Vec::new();
    for provider in providers {
        for warning in provider.check_targets(purge, deployment, &key)? {
            if !warnings.contains(&warning) {
                warnings.push(warning);
            }
        }
    }
    Ok(warnings)
}

/// How one Deployment's purge is made: by which providers (layers, in
/// order), with which Secret, and whether it only reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeMode<'a> {
    pub providers: &'a [Provider],
    pub credentials_secret: &'a str,
    pub cloudflare_batch_size: usize,
    /// Setting `fastlySoftPurge`.
    pub fastly_soft_purge: bool,
    /// `P/dry-run`: send nothing, report what would have been sent.
    pub dry_run: bool,
    pub akamai: AkamaiOptions,
    pub http: HttpOptions<'a>,
    /// The purge's budget (`job::purge_budget`).
    pub budget_seconds: i64,
}

/// Provider `http`'s request: to which Service's caches, with which method,
/// tags in which header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpOptions<'a> {
    /// `P/http-service`; the policy stamps provider `http` only with one.
    pub service: Option<&'a HttpService>,
    pub method: HttpMethod,
    pub tag_header: &'a str,
}

impl Default for HttpOptions<'_> {
    fn default() -> Self {
        HttpOptions {
            service: None,
            method: HttpMethod::Purge,
            tag_header: DEFAULT_TAG_HEADER,
        }
    }
}

/// The purge container's arguments, after the program's name: the
/// subcommand, then flags naming what it purges and with which Secret.
pub fn purge_args(
    mode: PurgeMode<'_>,
    purge: &PurgeTargets,
    webhook: &WebhookPayload<'_, String>,
) -> Vec<String> {
    let PurgeMode {
        providers,
        credentials_secret,
        dry_run,
        ..
    } = mode;
    let mut args = vec![
        "purge".to_owned(),
        [
            "--provider=",
            &providers
                .iter()
                .map(|provider| provider.name())
                .collect::<Vec<_>>()
                .join(","),
        ]
        .concat(),
        ["--secret=", credentials_secret].concat(),
    ];
    if dry_run {
        args.push("--dry-run".to_owned());
    }
    // Not `format!`: a 256 KiB `urls` annotation is thousands of these.
    args.extend(purge.urls.iter().map(|url| ["--url=", url].concat()));
    for (flag, items) in [
        ("prefix", &purge.prefixes),
        ("host", &purge.hosts),
        ("tag", &purge.tags),
    ] {
        args.extend(items.iter().map(|item| ["--", flag, "=", item].concat()));
    }
    if purge.everything {
        args.push("--everything".to_owned());
    }
    for provider in providers {
        let flags = &mut Vec::new();
        provider_flags(*provider, mode, purge, webhook, flags);
        // Layers that share a flag (http's and the webhook's namespace)
        // give it once.
        for flag in flags.drain(..) {
            if !args.contains(&flag) {
                args.push(flag);
            }
        }
    }
    args.push(format!("--budget-seconds={}", mode.budget_seconds));
    args
}

/// The flags one provider reads besides the targets.
fn provider_flags(
    provider: Provider,
    mode: PurgeMode<'_>,
    purge: &PurgeTargets,
    webhook: &WebhookPayload<'_, String>,
    args: &mut Vec<String>,
) {
    let PurgeMode {
        cloudflare_batch_size,
        fastly_soft_purge,
        akamai,
        http,
        ..
    } = mode;
    match provider {
        Provider::Cloudflare => {
            args.push(format!("--cloudflare-batch-size={cloudflare_batch_size}"))
        }
        // Always given, so that a stamp made before an edit of the setting
        // differs in this flag's value, which the launcher names.
        Provider::Fastly => args.push(format!("--fastly-soft-purge={fastly_soft_purge}")),
        Provider::Bunny | Provider::Gcp | Provider::Azure => {}
        // The invalidation's CallerReference: a retried pod makes no second one.
        Provider::Cloudfront => args.push(["--job-name=", webhook.job_name].concat()),
        Provider::Akamai => args.extend([
            ["--akamai-action=", akamai.action.name()].concat(),
            ["--akamai-network=", akamai.network.name()].concat(),
        ]),
        // The Service is looked up in the site's namespace.
        Provider::Http => {
            args.push(["--namespace=", webhook.namespace].concat());
            if let Some(service) = http.service {
                args.push(format!("--http-service={service}"));
            }
            args.push(["--http-method=", http.method.name()].concat());
            if !purge.tags.is_empty() {
                args.push(["--http-tag-header=", http.tag_header].concat());
            }
        }
        // What the webhook is told besides the targets.
        Provider::Webhook => args.extend([
            ["--site=", webhook.site].concat(),
            ["--namespace=", webhook.namespace].concat(),
            ["--deployment=", webhook.deployment].concat(),
            ["--image=", &webhook.image].concat(),
            ["--image-hash=", webhook.image_hash].concat(),
            ["--job-name=", webhook.job_name].concat(),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// The README's provider table: every provider, with its Secret keys
    /// (the optional ones marked so).
    #[test]
    fn the_readme_names_every_provider_and_its_secret_keys() {
        let documented: Vec<(String, String)> =
            crate::readme::table("| provider | Secret keys | requests |")
                .iter()
                .map(|row| (crate::readme::unquoted(&row[0]).to_owned(), row[1].clone()))
                .collect();
        let expected: Vec<(String, String)> = Provider::ALL
            .iter()
            .map(|provider| {
                let keys: Vec<String> = provider
                    .secret_keys()
                    .iter()
                    .map(|key| {
                        if provider.optional_secret_keys().contains(key) {
                            format!("optional `{key}`")
                        } else {
                            format!("`{key}`")
                        }
                    })
                    .collect();
                let keys = if keys.is_empty() {
                    "none".to_owned()
                } else {
                    keys.join(", ")
                };
                (provider.name().to_owned(), keys)
            })
            .collect();
        assert_eq!(documented, expected);
    }

    fn key(name: &str) -> String {
        format!("cache-buster.io/{name}")
    }

    fn urls(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("https://www.example.com/{i}"))
            .collect()
    }

    fn payload<'a>(purge: &'a PurgeTargets) -> WebhookPayload<'a, String> {
        WebhookPayload {
            site: "shop",
            namespace: "web",
            deployment: "shop",
            image: "docker.io/library/nginx:1.25".to_owned(),
            image_hash: "d568c927cb",
            job_name: "shop-cache-buster-d568c927cb",
            urls: &purge.urls,
            prefixes: &purge.prefixes,
            hosts: &purge.hosts,
            tags: &purge.tags,
            everything: purge.everything,
        }
    }

    /// `provider` alone, as a layer list that lives as long as the table.
    fn only(provider: Provider) -> &'static [Provider] {
        let index = Provider::ALL.iter().position(|p| *p == provider).unwrap();
        &Provider::ALL[index..=index]
    }

    fn mode(provider: Provider) -> PurgeMode<'static> {
        PurgeMode {
            providers: only(provider),
            credentials_secret: "cdn-credentials",
            cloudflare_batch_size: 30,
            fastly_soft_purge: false,
            dry_run: false,
            akamai: AkamaiOptions::default(),
            http: HttpOptions::default(),
            budget_seconds: PURGE_BUDGET_SECONDS,
        }
    }

    fn args(provider: Provider, purge: &PurgeTargets) -> Vec<String> {
        purge_args(mode(provider), purge, &payload(purge))
    }

    /// A dry run says so right after the Secret it will not read.
    #[test]
    fn a_dry_run_says_so_in_its_argv() {
        let purge = PurgeTargets {
            tags: vec!["shop".into()],
            ..PurgeTargets::default()
        };
        let dry_run = PurgeMode {
            dry_run: true,
            ..mode(Provider::Fastly)
        };
        assert_eq!(
            purge_args(dry_run, &purge, &payload(&purge)),
            [
                "purge",
                "--provider=fastly",
                "--secret=cdn-credentials",
                "--dry-run",
                "--tag=shop",
                "--fastly-soft-purge=false",
                "--budget-seconds=180"
            ]
        );
    }

    /// Setting fastlySoftPurge reaches the Fastly purge's argv.
    #[test]
    fn a_fastly_soft_purge_is_in_the_argv() {
        let purge = PurgeTargets {
            tags: vec!["shop".into()],
            ..PurgeTargets::default()
        };
        let soft = PurgeMode {
            fastly_soft_purge: true,
            ..mode(Provider::Fastly)
        };
        let argv = purge_args(soft, &purge, &payload(&purge));
        assert!(
            argv.contains(&"--fastly-soft-purge=true".to_owned()),
            "{argv:?}"
        );
        // Other providers are not told.
        let cloudflare = PurgeMode {
            fastly_soft_purge: true,
            ..mode(Provider::Cloudflare)
        };
        let argv = purge_args(cloudflare, &purge, &payload(&purge));
        assert!(
            !argv.iter().any(|arg| arg.starts_with("--fastly")),
            "{argv:?}"
        );
    }

    /// The argv names the subcommand, the provider, the Secret and each
    /// target, in the annotations' order, and the budget the deadline counts.
    #[test]
    fn the_purge_argv_reads_as_what_it_purges() {
        let purge = PurgeTargets {
            urls: urls(2),
            prefixes: vec!["www.example.com/blog".into()],
            hosts: vec!["static.example.com".into()],
            tags: vec!["a".into()],
            everything: false,
        };
        assert_eq!(
            args(Provider::Cloudflare, &purge),
            [
                "purge",
                "--provider=cloudflare",
                "--secret=cdn-credentials",
                "--url=https://www.example.com/0",
                "--url=https://www.example.com/1",
                "--prefix=www.example.com/blog",
                "--host=static.example.com",
                "--tag=a",
                "--cloudflare-batch-size=30",
                "--budget-seconds=180",
            ]
        );
        let everything = PurgeTargets {
            everything: true,
            ..PurgeTargets::default()
        };
        assert_eq!(
            args(Provider::Fastly, &everything),
            [
                "purge",
                "--provider=fastly",
                "--secret=cdn-credentials",
                "--everything",
                "--fastly-soft-purge=false",
                "--budget-seconds=180"
            ]
        );
    }

    /// Provider http: the namespace and the Service to look the caches up
    /// in, the method, and the tag header only when there are tags.
    #[test]
    fn the_http_purge_names_its_service_and_method() {
        let service = HttpService::parse("varnish:http").unwrap();
        let mut purge = PurgeTargets {
            urls: urls(1),
            ..PurgeTargets::default()
        };
        let http = PurgeMode {
            http: HttpOptions {
                service: Some(&service),
                method: HttpMethod::Ban,
                tag_header: "Surrogate-Key",
            },
            ..mode(Provider::Http)
        };
        assert_eq!(
            purge_args(http, &purge, &payload(&purge)),
            [
                "purge",
                "--provider=http",
                "--secret=cdn-credentials",
                "--url=https://www.example.com/0",
                "--namespace=web",
                "--http-service=varnish:http",
                "--http-method=BAN",
                "--budget-seconds=180"
            ]
        );
        purge.tags = vec!["shop".into()];
        let args = purge_args(http, &purge, &payload(&purge));
        assert!(
            args.contains(&"--http-tag-header=Surrogate-Key".to_owned()),
            "{args:?}"
        );
    }

    /// CloudFront's CallerReference is the Job's name.
    #[test]
    fn cloudfront_is_told_the_job() {
        let purge = PurgeTargets {
            prefixes: vec!["www.example.com/blog".into()],
            ..PurgeTargets::default()
        };
        assert_eq!(
            args(Provider::Cloudfront, &purge),
            [
                "purge",
                "--provider=cloudfront",
                "--secret=cdn-credentials",
                "--prefix=www.example.com/blog",
                "--job-name=shop-cache-buster-d568c927cb",
                "--budget-seconds=180"
            ]
        );
    }

    #[test]
    fn the_webhook_is_told_the_site_the_image_and_the_job() {
        let purge = PurgeTargets {
            tags: vec!["shop".into()],
            ..PurgeTargets::default()
        };
        let args = args(Provider::Webhook, &purge);
        for expected in [
            "--site=shop",
            "--namespace=web",
            "--deployment=shop",
            "--image=docker.io/library/nginx:1.25",
            "--image-hash=d568c927cb",
            "--job-name=shop-cache-buster-d568c927cb",
        ] {
            assert!(
                args.iter().any(|arg| arg == expected),
                "{expected} in {args:?}"
            );
        }
    }

    /// Credentials are the program's to read from the mounted Secret: the
    /// argv names the Secret, never a key's value.
    #[test]
    fn no_credential_is_on_the_command_line() {
        let purge = PurgeTargets {
            urls: urls(1),
            ..PurgeTargets::default()
        };
        for provider in Provider::ALL {
            let args = args(provider, &purge);
            for key in provider.secret_keys() {
                assert!(
                    args.iter().all(|arg| !arg.contains(key)),
                    "{provider}: {args:?}"
                );
            }
        }
    }

    #[rstest]
    #[case::fastly_prefixes(Provider::Fastly, PurgeTargets { prefixes: vec!["a.example/b".into()], ..Default::default() },
        "annotation cache-buster.io/prefixes: provider fastly cannot purge by URL prefix; expected only cache-buster.io/urls, cache-buster.io/tags, cache-buster.io/everything (\"true\") with this provider")]
    #[case::fastly_hosts(Provider::Fastly, PurgeTargets { hosts: vec!["a.example".into()], ..Default::default() },
        "annotation cache-buster.io/hosts: provider fastly cannot purge by host name")]
    #[case::cloudflare_nothing(
        Provider::Cloudflare,
        PurgeTargets::default(),
        "Deployment web/shop has no purge target for provider cloudflare; expected at least one of the annotations cache-buster.io/urls, cache-buster.io/prefixes, cache-buster.io/hosts, cache-buster.io/tags, cache-buster.io/everything (\"true\")"
    )]
    #[case::bunny_hosts(Provider::Bunny, PurgeTargets { hosts: vec!["a.example".into()], ..Default::default() },
        "annotation cache-buster.io/hosts: provider bunny cannot purge by host name; expected only cache-buster.io/urls, cache-buster.io/prefixes, cache-buster.io/tags, cache-buster.io/everything (\"true\") with this provider")]
    #[case::akamai_everything(Provider::Akamai, PurgeTargets { everything: true, ..Default::default() },
        "annotation cache-buster.io/everything: provider akamai cannot purge everything; expected only cache-buster.io/urls, cache-buster.io/tags with this provider")]
    #[case::http_everything(Provider::Http, PurgeTargets { everything: true, ..Default::default() },
        "annotation cache-buster.io/everything: provider http cannot purge everything; expected only cache-buster.io/urls, cache-buster.io/tags with this provider")]
    #[case::http_hosts(Provider::Http, PurgeTargets { hosts: vec!["a.example".into()], ..Default::default() },
        "annotation cache-buster.io/hosts: provider http cannot purge by host name; expected only cache-buster.io/urls, cache-buster.io/tags with this provider")]
    #[case::cloudfront_tags(Provider::Cloudfront, PurgeTargets { tags: vec!["shop".into()], ..Default::default() },
        "annotation cache-buster.io/tags: provider cloudfront cannot purge by cache tag; expected only cache-buster.io/urls, cache-buster.io/prefixes, cache-buster.io/everything (\"true\") with this provider")]
    #[case::cloudfront_hosts(Provider::Cloudfront, PurgeTargets { hosts: vec!["a.example".into()], ..Default::default() },
        "annotation cache-buster.io/hosts: provider cloudfront cannot purge by host name; expected only cache-buster.io/urls, cache-buster.io/prefixes, cache-buster.io/everything (\"true\") with this provider")]
    #[case::akamai_prefixes(Provider::Akamai, PurgeTargets { prefixes: vec!["a.example/b".into()], ..Default::default() },
        "annotation cache-buster.io/prefixes: provider akamai cannot purge by URL prefix; expected only cache-buster.io/urls, cache-buster.io/tags with this provider")]
    #[case::azure_tags(Provider::Azure, PurgeTargets { tags: vec!["shop".into()], ..Default::default() },
        "annotation cache-buster.io/tags: provider azure cannot purge by cache tag; expected only cache-buster.io/urls, cache-buster.io/prefixes, cache-buster.io/everything (\"true\") with this provider")]
    #[case::azure_hosts(Provider::Azure, PurgeTargets { hosts: vec!["a.example".into()], ..Default::default() },
        "annotation cache-buster.io/hosts: provider azure cannot purge by host name")]
    #[case::gcp_hosts(Provider::Gcp, PurgeTargets { hosts: vec!["a.example".into()], ..Default::default() },
        "annotation cache-buster.io/hosts: provider gcp cannot purge by host name; expected only cache-buster.io/urls, cache-buster.io/prefixes, cache-buster.io/tags, cache-buster.io/everything (\"true\") with this provider")]
    #[case::fastly_nothing(
        Provider::Fastly,
        PurgeTargets::default(),
        "Deployment web/shop has no purge target for provider fastly"
    )]
    fn targets_a_provider_cannot_purge_are_rejected(
        #[case] provider: Provider,
        #[case] purge: PurgeTargets,
        #[case] message: &str,
    ) {
        let error = provider
            .check_targets(&purge, "web/shop", key)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with(message), "{error}");
    }

    #[test]
    fn webhook_needs_no_target() {
        assert_eq!(
            Provider::Webhook.check_targets(&PurgeTargets::default(), "web/shop", key),
            Ok(vec![])
        );
    }

    #[test]
    fn everything_with_other_targets_warns_they_are_redundant() {
        let purge = PurgeTargets {
            urls: urls(1),
            tags: vec!["t".into()],
            everything: true,
            ..Default::default()
        };
        let warnings = Provider::Cloudflare
            .check_targets(&purge, "web/shop", key)
            .unwrap();
        assert_eq!(
            warnings,
            [
                "cache-buster.io/everything is \"true\": the whole cache is purged, so cache-buster.io/urls, cache-buster.io/tags need no purge of their own"
            ]
        );
    }

    #[test]
    fn provider_names_round_trip() {
        for provider in Provider::ALL {
            assert_eq!(Provider::from_name(provider.name()), Some(provider));
            assert_eq!(serde_json::to_value(provider).unwrap(), provider.name());
        }
        assert_eq!(Provider::from_name("keycdn"), None);
    }
}
