//! Cloudflare: `purge_cache` of the zone, files then prefixes, hosts and
//! tags in batches, or everything alone.
use crate::catalog::Info;
use crate::flags::{RenderFlags, Rendering};
use crate::targets::Target;

pub const INFO: Info = Info {
    name: "cloudflare",
    secret_keys: &["CLOUDFLARE_ZONE_ID", "CLOUDFLARE_API_TOKEN"],
    optional_keys: &[],
    accepts: &[
        Target::Urls,
        Target::Prefixes,
        Target::Hosts,
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

/// Its flags: how many items go in one request (setting `cloudflareBatchSize`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "client", derive(clap::Args), group(skip))]
pub struct Flags {
    /// URLs, prefixes, hosts or tags in one purge request (provider cloudflare)
    #[cfg_attr(feature = "client", arg(long, default_value_t = DEFAULT_BATCH_SIZE))]
    pub cloudflare_batch_size: usize,
}

/// The setting's default, and the program's.
pub const DEFAULT_BATCH_SIZE: usize = 30;

impl Default for Flags {
    fn default() -> Self {
        Flags {
            cloudflare_batch_size: DEFAULT_BATCH_SIZE,
        }
    }
}

impl RenderFlags for Flags {
    fn render(&self, to: &mut Rendering<'_>) {
        to.flag(
            "cloudflare-batch-size",
            &self.cloudflare_batch_size.to_string(),
        );
    }
}

#[cfg(feature = "client")]
pub use requests::Cloudflare;

#[cfg(feature = "client")]
mod requests {
    use crate::cdn::{Cdn, Layer};
    use crate::credentials::Credentials;
    use crate::request::{PlannedRequest, Purges, bearer, counted, json_request, path_segment};
    use crate::targets::PurgeTargets;

    pub const CLOUDFLARE_API: &str = "https://api.cloudflare.com/client/v4";

    pub struct Cloudflare;

    impl Cdn for Cloudflare {
        /// Cloudflare's `result.id`.
        fn purge_ids(&self, answer: &str) -> Vec<String> {
            #[derive(serde::Deserialize)]
            struct Accepted {
                result: Option<crate::cdn::WithId>,
            }
            serde_json::from_str::<Accepted>(answer)
                .ok()
                .and_then(|accepted| accepted.result?.id)
                .into_iter()
                .collect()
        }

        fn plan(&self, layer: &Layer<'_>) -> Vec<PlannedRequest> {
            cloudflare(
                layer.targets,
                layer.credentials,
                layer
                    .options
                    .flags
                    .get::<crate::providers::cloudflare::Flags>()
                    .cloudflare_batch_size
                    .max(1),
            )
        }
    }

    /// Cloudflare's limit of prefixes, hosts or tags in one purge, on every plan.
    const CLOUDFLARE_MAX_PREFIXES_HOSTS_TAGS: usize = 100;

    /// `{"files":[…]}` in batches, then prefixes, hosts and tags likewise, or
    /// `{"purge_everything":true}` alone.
    fn cloudflare(
        targets: &PurgeTargets,
        credentials: &Credentials,
        batch_size: usize,
    ) -> Vec<PlannedRequest> {
        let url = format!(
            "{CLOUDFLARE_API}/zones/{}/purge_cache",
            path_segment(credentials.value("CLOUDFLARE_ZONE_ID"))
        );
        let auth = || vec![bearer(credentials.value("CLOUDFLARE_API_TOKEN"))];
        if targets.everything {
            return vec![json_request(
                url,
                auth(),
                serde_json::json!({"purge_everything": true}),
                Purges::whole("everything"),
            )];
        }
        // Only URLs go up to 500 a request (on Enterprise); prefixes, hosts and
        // tags stay at 100 on every plan (SPEC §5).
        let others = batch_size.min(CLOUDFLARE_MAX_PREFIXES_HOSTS_TAGS);
        let mut requests = Vec::new();
        let urls: Vec<String> = targets.urls.iter().map(ToString::to_string).collect();
        for (field, items, one, many, size) in [
            ("files", &urls, "URL", "URLs", batch_size),
            ("prefixes", &targets.prefixes, "prefix", "prefixes", others),
            ("hosts", &targets.hosts, "host", "hosts", others),
            ("tags", &targets.tags, "tag", "tags", others),
        ] {
            for batch in items.chunks(size) {
                requests.push(json_request(
                    url.clone(),
                    auth(),
                    serde_json::json!({ field: batch }),
                    counted(batch.len(), one, many),
                ));
            }
        }
        requests
    }

    #[cfg(test)]
    mod tests {
        use super::Cloudflare;
        use crate::cdn::Cdn;

        #[test]
        fn the_purge_id_is_the_results() {
            let answer = r#"{"success":true,"errors":[],"result":{"id":"9a7806061c88ada191ed06f989cc3dac"}}"#;
            assert_eq!(Cloudflare.purge_ids(answer), ["9a7806061c88ada191ed06f989cc3dac"]);
            assert!(Cloudflare.purge_ids(r#"{"success":true,"id":"x"}"#).is_empty());
        }

        use crate::flags::JobContext;
        use crate::credentials::Credentials;
        use crate::providers::Provider;
        use crate::request::header;
        use crate::targets::PurgeTargets;
        use crate::testing::*;
        use serde_json::json;

        #[test]
        fn cloudflare_batches_files_then_prefixes_hosts_and_tags() {
            let targets = PurgeTargets {
                urls: urls(65),
                prefixes: vec!["www.example.com/blog".into()],
                hosts: vec!["static.example.com".into()],
                tags: vec!["a".into(), "b".into()],
                everything: false,
            };
            let requests =
                planned(Provider::Cloudflare, &targets, &cloudflare_credentials()).unwrap();
            let bodies = bodies(&requests);
            assert_eq!(bodies.len(), 6);
            assert_eq!(bodies[0]["files"].as_array().unwrap().len(), 30);
            assert_eq!(bodies[1]["files"].as_array().unwrap().len(), 30);
            assert_eq!(bodies[2]["files"].as_array().unwrap().len(), 5);
            assert_eq!(bodies[2]["files"][4], "https://www.example.com/64");
            assert_eq!(bodies[3], json!({"prefixes": ["www.example.com/blog"]}));
            assert_eq!(bodies[4], json!({"hosts": ["static.example.com"]}));
            assert_eq!(bodies[5], json!({"tags": ["a", "b"]}));
            let purges: Vec<String> = requests.iter().map(|r| r.purges.to_string()).collect();
            assert_eq!(
                purges,
                [
                    "30 URLs", "30 URLs", "5 URLs", "1 prefix", "1 host", "2 tags"
                ]
            );
            for request in &requests {
                assert_eq!(request.method, "POST");
                // The zone id is one path segment, whatever it holds.
                assert_eq!(
                    request.url,
                    "https://api.cloudflare.com/client/v4/zones/zone%2F1/purge_cache"
                );
                assert_eq!(
                    request.headers,
                    [
                        header("Authorization", "Bearer cf-token"),
                        header("Content-Type", "application/json")
                    ]
                );
            }
        }

        /// A batch size raised for URLs (Enterprise: 500) leaves prefixes,
        /// hosts and tags at Cloudflare's 100 a request.
        #[test]
        fn cloudflare_sends_at_most_100_prefixes_hosts_or_tags_whatever_the_batch_size() {
            let many = |prefix: &str, count: usize| -> Vec<String> {
                (0..count).map(|n| format!("{prefix}{n}")).collect()
            };
            let targets = PurgeTargets {
                urls: urls(501),
                prefixes: many("www.example.com/p", 120),
                hosts: many("h", 100),
                tags: many("t", 150),
                everything: false,
            };
            let credentials = cloudflare_credentials();
            let with_batch_size = |size| {
                plan(
                    Provider::Cloudflare,
                    &targets,
                    &credentials,
                    &options(size),
                    &JobContext::default(),
                )
                .unwrap()
            };
            let sizes: Vec<(String, usize)> = bodies(&with_batch_size(500))
                .iter()
                .flat_map(|body| body.as_object().unwrap().clone())
                .map(|(field, items)| (field, items.as_array().unwrap().len()))
                .collect();
            let expected = [
                ("files", 500),
                ("files", 1),
                ("prefixes", 100),
                ("prefixes", 20),
                ("hosts", 100),
                ("tags", 100),
                ("tags", 50),
            ];
            assert_eq!(
                sizes,
                expected.map(|(field, size)| (field.to_owned(), size))
            );
            // Below 100, the batch size is every kind's.
            assert!(bodies(&with_batch_size(40)).iter().all(|body| {
                body.as_object()
                    .unwrap()
                    .values()
                    .all(|items| items.as_array().unwrap().len() <= 40)
            }));
        }

        #[test]
        fn cloudflare_purges_everything_alone() {
            let targets = PurgeTargets {
                urls: urls(3),
                everything: true,
                ..PurgeTargets::default()
            };
            let requests =
                planned(Provider::Cloudflare, &targets, &cloudflare_credentials()).unwrap();
            assert_eq!(bodies(&requests), [json!({"purge_everything": true})]);
        }

        fn cloudflare_credentials() -> Credentials {
            credentials(&[
                ("CLOUDFLARE_ZONE_ID", "zone/1"),
                ("CLOUDFLARE_API_TOKEN", "cf-token"),
            ])
        }
    }
}
