//! The argv as the Job carries it (SPEC §6), and the round trip: what the
//! policy renders, the program parses back to the same argv.

use super::*;
use crate::options::{AkamaiAction, AkamaiNetwork, HttpMethod, HttpService};

fn urls(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("https://www.example.com/{i}"))
        .collect()
}

fn context() -> JobContext {
    JobContext {
        site: "shop".into(),
        namespace: "web".into(),
        deployment: "shop".into(),
        image: "docker.io/library/nginx:1.25".into(),
        image_hash: "d568c927cb".into(),
        job_name: "shop-cache-buster-d568c927cb".into(),
    }
}

/// The argv of `providers` with the policy's defaults and these targets.
fn argv(providers: &[Provider]) -> PurgeArgv {
    PurgeArgv {
        providers: providers.to_vec(),
        secret: "cdn-credentials".into(),
        dry_run: false,
        urls: Vec::new(),
        prefixes: Vec::new(),
        hosts: Vec::new(),
        tags: Vec::new(),
        everything: false,
        content: Vec::new(),
        content_max_urls: None,
        warm: false,
        insecure_registries: Vec::new(),
        registry_ca_file: None,
        context: context(),
        flags: ProviderFlags::default(),
        budget_seconds: 180,
    }
}

/// A dry run says so right after the Secret it will not read.
#[test]
fn a_dry_run_says_so_in_its_argv() {
    let dry_run = PurgeArgv {
        dry_run: true,
        tags: vec!["shop".into()],
        ..argv(&[Provider::Fastly])
    };
    assert_eq!(
        dry_run.render(),
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

/// Setting fastlySoftPurge reaches the Fastly purge's argv, and only it.
#[test]
fn a_fastly_soft_purge_is_in_the_argv_of_fastly_alone() {
    let mut soft = PurgeArgv {
        tags: vec!["shop".into()],
        ..argv(&[Provider::Fastly])
    };
    soft.flags.fastly.fastly_soft_purge = true;
    let rendered = soft.render();
    assert!(
        rendered.contains(&"--fastly-soft-purge=true".to_owned()),
        "{rendered:?}"
    );
    soft.providers = vec![Provider::Cloudflare];
    let rendered = soft.render();
    assert!(
        !rendered.iter().any(|arg| arg.starts_with("--fastly")),
        "{rendered:?}"
    );
}

/// The argv names the subcommand, the provider, the Secret and each
/// target, in the annotations' order, and the budget the deadline counts.
#[test]
fn the_purge_argv_reads_as_what_it_purges() {
    let cloudflare = PurgeArgv {
        urls: urls(2),
        prefixes: vec!["www.example.com/blog".into()],
        hosts: vec!["static.example.com".into()],
        tags: vec!["a".into()],
        ..argv(&[Provider::Cloudflare])
    };
    assert_eq!(
        cloudflare.render(),
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
    let everything = PurgeArgv {
        everything: true,
        ..argv(&[Provider::Fastly])
    };
    assert_eq!(
        everything.render(),
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

/// SPEC §9: each `<dir>=<base URL>` pair, the limit beside them, and the
/// warm-up, after the annotated targets.
#[test]
fn a_content_purge_names_its_directories_and_limit() {
    let content = PurgeArgv {
        urls: urls(1),
        content: vec!["/usr/share/nginx/html=https://siebjee.nl/".into()],
        content_max_urls: Some(500),
        warm: true,
        insecure_registries: vec!["registry.local:5000".into()],
        registry_ca_file: Some("/var/run/secrets/cache-buster/registry-ca/ca.crt".into()),
        ..argv(&[Provider::Cloudflare])
    };
    assert_eq!(
        content.render(),
        [
            "purge",
            "--provider=cloudflare",
            "--secret=cdn-credentials",
            "--url=https://www.example.com/0",
            "--content=/usr/share/nginx/html=https://siebjee.nl/",
            "--content-max-urls=500",
            "--warm",
            "--insecure-registry=registry.local:5000",
            "--registry-ca-file=/var/run/secrets/cache-buster/registry-ca/ca.crt",
            // The new image, and where the image last purged is found.
            "--namespace=web",
            "--deployment=shop",
            "--image=docker.io/library/nginx:1.25",
            "--job-name=shop-cache-buster-d568c927cb",
            "--cloudflare-batch-size=30",
            "--budget-seconds=180",
        ]
    );
}

/// Provider http: the namespace and the Service to look the caches up
/// in, the method, and the tag header only when there are tags.
#[test]
fn the_http_purge_names_its_service_and_method() {
    let mut http = PurgeArgv {
        urls: urls(1),
        ..argv(&[Provider::Http])
    };
    http.flags.http = crate::providers::http::Flags {
        http_service: Some(HttpService::parse("varnish:http").unwrap()),
        http_method: HttpMethod::Ban,
        http_tag_header: "Surrogate-Key".into(),
    };
    assert_eq!(
        http.render(),
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
    http.tags = vec!["shop".into()];
    let rendered = http.render();
    assert!(
        rendered.contains(&"--http-tag-header=Surrogate-Key".to_owned()),
        "{rendered:?}"
    );
}

/// CloudFront's CallerReference starts with the Job's name.
#[test]
fn cloudfront_is_told_the_job() {
    let cloudfront = PurgeArgv {
        prefixes: vec!["www.example.com/blog".into()],
        ..argv(&[Provider::Cloudfront])
    };
    assert_eq!(
        cloudfront.render(),
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

/// The webhook is told the whole context, in its payload's order; a
/// field another layer read already is not given twice.
#[test]
fn the_webhook_is_told_the_site_the_image_and_the_job_once() {
    let layers = PurgeArgv {
        tags: vec!["shop".into()],
        ..argv(&[Provider::Http, Provider::Webhook, Provider::Cloudfront])
    };
    let rendered = layers.render();
    let after_the_targets: Vec<&str> = rendered
        .iter()
        .skip_while(|arg| !arg.starts_with("--tag="))
        .skip(1)
        .map(String::as_str)
        .collect();
    assert_eq!(
        after_the_targets,
        [
            "--namespace=web",
            "--http-method=PURGE",
            "--http-tag-header=xkey",
            "--site=shop",
            "--deployment=shop",
            "--image=docker.io/library/nginx:1.25",
            "--image-hash=d568c927cb",
            "--job-name=shop-cache-buster-d568c927cb",
            "--budget-seconds=180"
        ]
    );
}

/// Credentials are the program's to read from the mounted Secret: the
/// argv names the Secret, never a key.
#[test]
fn no_credential_is_on_the_command_line() {
    for provider in Provider::ALL {
        let rendered = PurgeArgv {
            urls: urls(1),
            ..argv(&[provider])
        }
        .render();
        for key in provider.secret_keys() {
            assert!(
                rendered.iter().all(|arg| !arg.contains(key)),
                "{provider}: {rendered:?}"
            );
        }
    }
}

#[cfg(feature = "client")]
mod round_trip {
    use super::*;
    use clap::{Args, FromArgMatches};

    /// What `cache-buster purge` makes of an argv.
    fn parse(args: &[String]) -> Result<PurgeArgv, String> {
        let command = PurgeArgv::augment_args(clap::Command::new(SUBCOMMAND));
        let matches = command
            .try_get_matches_from(args)
            .map_err(|error| error.to_string())?;
        PurgeArgv::from_arg_matches(&matches).map_err(|error| error.to_string())
    }

    /// Every flag of every provider away from its default, every target
    /// given: what a round trip must keep.
    fn all_given(providers: &[Provider]) -> PurgeArgv {
        let mut flags = ProviderFlags::default();
        flags.cloudflare.cloudflare_batch_size = 77;
        flags.fastly.fastly_soft_purge = true;
        flags.akamai.akamai_action = AkamaiAction::Delete;
        flags.akamai.akamai_network = AkamaiNetwork::Staging;
        flags.http.http_service = Some(HttpService::parse("varnish:8080").unwrap());
        flags.http.http_method = HttpMethod::Ban;
        flags.http.http_tag_header = "Surrogate-Key".into();
        PurgeArgv {
            dry_run: true,
            urls: urls(2),
            prefixes: vec!["www.example.com/blog".into()],
            hosts: vec!["static.example.com".into()],
            tags: vec!["shop".into(), "home".into()],
            everything: true,
            content: vec![
                "/usr/share/nginx/html=https://www.example.com/".into(),
                "/srv/docs=https://docs.example.com/v2/".into(),
            ],
            content_max_urls: Some(1200),
            warm: true,
            insecure_registries: vec!["registry.local:5000".into(), "10.0.0.7".into()],
            registry_ca_file: Some("/etc/registry-ca/ca.crt".into()),
            flags,
            budget_seconds: 780,
            ..argv(providers)
        }
    }

    /// The argvs of the round trip: each provider alone, all of them as
    /// layers, and the shortest argv.
    fn cases() -> Vec<PurgeArgv> {
        let mut cases: Vec<PurgeArgv> = Provider::ALL
            .iter()
            .map(|provider| all_given(&[*provider]))
            .collect();
        cases.push(all_given(&Provider::ALL));
        cases.push(argv(&[Provider::Cloudflare]));
        cases
    }

    /// Parsed back, every argv renders as it was rendered: each flag the
    /// policy writes is one the program reads, into the field it came from,
    /// value for value.
    #[test]
    fn what_the_policy_renders_the_program_parses_back() {
        for argv in cases() {
            let rendered = argv.render();
            let parsed = parse(&rendered).unwrap_or_else(|error| panic!("{rendered:?}: {error}"));
            assert_eq!(parsed.render(), rendered);
            assert_eq!(parsed.providers, argv.providers);
            assert_eq!(parse(&parsed.render()), Ok(parsed));
        }
    }

    /// The round trip covers every flag the program reads from the argv:
    /// none is read that the policy never writes.
    #[test]
    fn the_round_trip_covers_every_flag() {
        let command = PurgeArgv::augment_args(clap::Command::new(SUBCOMMAND));
        let rendered: Vec<String> = cases().iter().flat_map(PurgeArgv::render).collect();
        let mut longs = 0;
        for argument in command.get_arguments() {
            let Some(long) = argument.get_long() else {
                continue;
            };
            longs += 1;
            let flag = format!("--{long}");
            assert!(
                rendered
                    .iter()
                    .any(|arg| arg == &flag || arg.starts_with(&format!("{flag}="))),
                "{flag} is parsed but never rendered"
            );
        }
        assert!(longs > 20, "{longs} flags");
    }

    /// A flag the policy would not write is refused, naming it.
    #[test]
    fn an_argv_the_policy_would_not_write_is_refused() {
        for (args, expected) in [
            (
                &[
                    "purge",
                    "--provider=cloudflare",
                    "--secret=s",
                    "--url=ftp://x",
                ][..],
                "--url",
            ),
            (
                &["purge", "--provider=clouflare", "--secret=s"],
                "cloudflare",
            ),
            (
                &[
                    "purge",
                    "--provider=cloudflare",
                    "--secret=s",
                    "--content=html=https://www.example.com/",
                ],
                "not absolute",
            ),
            (
                &[
                    "purge",
                    "--provider=http",
                    "--secret=s",
                    "--http-method=GET",
                ],
                "PURGE or BAN",
            ),
            (
                &[
                    "purge",
                    "--provider=akamai",
                    "--secret=s",
                    "--akamai-network=test",
                ],
                "production or staging",
            ),
        ] {
            let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
            let error = parse(&args).unwrap_err();
            assert!(error.contains(expected), "{args:?}: {error}");
        }
    }
}
