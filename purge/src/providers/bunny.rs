//! Bunny: each URL and prefix (a wildcard URL) through `/purge?url=`, each
//! tag through the pull zone's `purgeCache`, paced to Bunny's rates.
use crate::catalog::Info;
use crate::flags::{RenderFlags, Rendering};
use crate::targets::Target;

pub const INFO: Info = Info {
    name: "bunny",
    secret_keys: &["BUNNY_API_KEY", "BUNNY_PULL_ZONE_ID"],
    optional_keys: &[],
    accepts: &[
        Target::Urls,
        Target::Prefixes,
        Target::Tags,
        Target::Everything,
    ],
    needs_no_target: false,
    reads_the_api: false,
    needs_job_uid: false,
    completion_seconds: 0,
    pod_labels: &[],
    pod_annotations: &[],
};

/// It reads nothing from the argv besides the targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "client", derive(clap::Args), group(skip))]
pub struct Flags {}

impl RenderFlags for Flags {
    fn render(&self, _to: &mut Rendering<'_>) {}
}

#[cfg(feature = "client")]
pub use requests::Bunny;

#[cfg(feature = "client")]
mod requests {
    use crate::cdn::{Cdn, Layer};
    use crate::credentials::Credentials;
    use crate::request::{PlannedRequest, Purges, counted, header, json_request, path_segment};
    use crate::targets::PurgeTargets;
    use std::time::Duration;

    /// Bunny's API host: the only host that ever sees `AccessKey`.
    pub const BUNNY_API: &str = "https://api.bunny.net";
    /// Bunny's documented purge rates: about 5 exact purges a second, and one
    /// wildcard purge every 2 seconds.
    pub const BUNNY_EXACT_GAP: Duration = Duration::from_millis(200);
    pub const BUNNY_WILDCARD_GAP: Duration = Duration::from_secs(2);

    pub struct Bunny;

    impl Cdn for Bunny {
        fn plan(&self, layer: &Layer<'_>) -> Vec<PlannedRequest> {
            bunny(layer.targets, layer.credentials)
        }
    }

    /// Each URL and each prefix (a wildcard URL) through `/purge?url=`, each
    /// tag through the pull zone's `purgeCache`; or that alone, without a body,
    /// for everything. Paced to Bunny's rates.
    fn bunny(targets: &PurgeTargets, credentials: &Credentials) -> Vec<PlannedRequest> {
        let key = || header("AccessKey", credentials.value("BUNNY_API_KEY"));
        let zone = format!(
            "{BUNNY_API}/pullzone/{}/purgeCache",
            path_segment(credentials.value("BUNNY_PULL_ZONE_ID"))
        );
        if targets.everything {
            return vec![PlannedRequest {
                method: "POST",
                url: zone,
                headers: vec![key()],
                body: None,
                purges: Purges::whole("everything"),
                gap: BUNNY_WILDCARD_GAP,
                signed_by: None,
                waits_out: None,
                id_header: None,
            }];
        }
        let by_url = |url: &str, purges: Purges, gap: Duration| PlannedRequest {
            method: "POST",
            url: format!("{BUNNY_API}/purge?url={}", path_segment(url)),
            headers: vec![key()],
            body: None,
            purges,
            gap,
            signed_by: None,
            waits_out: None,
            id_header: None,
        };
        let mut requests: Vec<PlannedRequest> = targets
            .urls
            .iter()
            .map(|url| by_url(url.as_str(), counted(1, "URL", "URLs"), BUNNY_EXACT_GAP))
            .collect();
        requests.extend(targets.prefixes.iter().map(|prefix| {
            by_url(
                &format!("https://{prefix}*"),
                counted(1, "prefix", "prefixes"),
                BUNNY_WILDCARD_GAP,
            )
        }));
        requests.extend(targets.tags.iter().map(|tag| PlannedRequest {
            gap: BUNNY_EXACT_GAP,
            ..json_request(
                zone.clone(),
                vec![key()],
                serde_json::json!({"CacheTag": tag}),
                counted(1, "tag", "tags"),
            )
        }));
        requests
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::flags::JobContext;
        use crate::credentials::Credentials;
        use crate::providers::Provider;
        use crate::request::header;
        use crate::targets::PurgeTargets;
        use crate::testing::*;

        /// URLs, then prefixes as wildcard URLs, then tags, each its own
        /// request, paced to Bunny's rates; the key goes to api.bunny.net only.
        #[test]
        fn bunny_purges_urls_prefixes_and_tags_one_request_each() {
            let targets = PurgeTargets {
                urls: vec!["https://www.example.com/a?b=c".parse().unwrap()],
                prefixes: vec!["www.example.com/blog/".into()],
                tags: vec!["shop".into()],
                ..PurgeTargets::default()
            };
            let requests = plan(
                Provider::Bunny,
                &targets,
                &bunny_credentials(),
                &options(30),
                &JobContext::default(),
            )
            .unwrap();
            let seen: Vec<(String, Option<String>, Duration)> = requests
                .iter()
                .map(|request| (request.url.clone(), request.body.clone(), request.gap))
                .collect();
            assert_eq!(
                seen,
                [
                    (
                        "https://api.bunny.net/purge?url=https%3A%2F%2Fwww.example.com%2Fa%3Fb%3Dc"
                            .to_owned(),
                        None,
                        BUNNY_EXACT_GAP
                    ),
                    (
                        "https://api.bunny.net/purge?url=https%3A%2F%2Fwww.example.com%2Fblog%2F%2A"
                            .to_owned(),
                        None,
                        BUNNY_WILDCARD_GAP
                    ),
                    (
                        "https://api.bunny.net/pullzone/4711/purgeCache".to_owned(),
                        Some(r#"{"CacheTag":"shop"}"#.to_owned()),
                        BUNNY_EXACT_GAP
                    ),
                ]
            );
            for request in &requests {
                assert_eq!(request.method, "POST");
                assert!(request.url.starts_with(BUNNY_API), "{}", request.url);
                assert_eq!(request.headers[0], header("AccessKey", "bunny-key"));
            }
            assert_eq!(
                requests
                    .iter()
                    .map(|request| request.purges.to_string())
                    .collect::<Vec<_>>(),
                ["1 URL", "1 prefix", "1 tag"]
            );
        }

        #[test]
        fn bunny_purges_everything_alone_and_no_host() {
            let everything = PurgeTargets {
                everything: true,
                tags: vec!["shop".into()],
                ..PurgeTargets::default()
            };
            let requests = plan(
                Provider::Bunny,
                &everything,
                &bunny_credentials(),
                &options(30),
                &JobContext::default(),
            )
            .unwrap();
            assert_eq!(requests.len(), 1);
            assert_eq!(
                requests[0].url,
                "https://api.bunny.net/pullzone/4711/purgeCache"
            );
            assert_eq!(requests[0].body, None);
            let hosts = PurgeTargets {
                hosts: vec!["www.example.com".into()],
                ..PurgeTargets::default()
            };
            assert_eq!(
                plan(
                    Provider::Bunny,
                    &hosts,
                    &bunny_credentials(),
                    &options(30),
                    &JobContext::default()
                ),
                Err(crate::providers::Unsupported {
                    provider: "bunny",
                    what: "host names"
                })
            );
        }

        fn bunny_credentials() -> Credentials {
            credentials(&[
                ("BUNNY_API_KEY", "bunny-key"),
                ("BUNNY_PULL_ZONE_ID", "4711"),
            ])
        }
    }
}
