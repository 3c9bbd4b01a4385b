//! Fastly: surrogate keys (at most 256 a request) and URLs through the API
//! host only, or `purge_all`; optionally soft (marked stale).
use crate::catalog::Info;
use crate::flags::{RenderFlags, Rendering};
use crate::targets::Target;

pub const INFO: Info = Info {
    name: "fastly",
    secret_keys: &["FASTLY_SERVICE_ID", "FASTLY_API_TOKEN"],
    optional_keys: &[],
    accepts: &[Target::Urls, Target::Tags, Target::Everything],
    needs_no_target: false,
    reads_the_api: false,
    needs_job_uid: false,
    completion_seconds: 0,
    pod_labels: &[],
    pod_annotations: &[],
};

/// Its flags: whether to mark stale instead of evicting (setting `fastlySoftPurge`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "client", derive(clap::Args), group(skip))]
pub struct Flags {
    /// Mark stale instead of evicting (`Fastly-Soft-Purge: 1`, provider fastly)
    #[cfg_attr(
        feature = "client",
        arg(long, default_value_t = false, action = clap::ArgAction::Set)
    )]
    pub fastly_soft_purge: bool,
}

impl RenderFlags for Flags {
    /// Always given, so that a stamp made before an edit of the setting
    /// differs in this flag's value, which the launcher names.
    fn render(&self, to: &mut Rendering<'_>) {
        to.flag(
            "fastly-soft-purge",
            if self.fastly_soft_purge { "true" } else { "false" },
        );
    }
}

/// Fastly accepts at most 256 surrogate keys in one purge request.
pub const SURROGATE_KEYS_PER_REQUEST: usize = 256;

#[cfg(feature = "client")]
pub use requests::Fastly;

#[cfg(feature = "client")]
mod requests {
    use crate::cdn::{Cdn, Layer};
    use crate::credentials::Credentials;
    use crate::providers::fastly::SURROGATE_KEYS_PER_REQUEST as FASTLY_SURROGATE_KEYS_PER_REQUEST;
    use crate::request::{PlannedRequest, Purges, counted, header, path_segment, without_scheme};
    use crate::targets::PurgeTargets;
    use std::time::Duration;

    /// Fastly's API host: the only host that ever sees `Fastly-Key`.
    pub const FASTLY_API: &str = "https://api.fastly.com";

    pub struct Fastly;

    impl Cdn for Fastly {
        /// A single purge's `id`, or a surrogate-key purge's map of key → id.
        fn purge_ids(&self, answer: &str) -> Vec<String> {
            #[derive(serde::Deserialize)]
            #[serde(untagged)]
            enum Accepted {
                One { id: String },
                ByKey(std::collections::BTreeMap<String, String>),
            }
            match serde_json::from_str::<Accepted>(answer) {
                Ok(Accepted::One { id }) => vec![id],
                Ok(Accepted::ByKey(ids)) if !ids.contains_key("status") => {
                    ids.into_values().take(crate::outcome::MAX_IDS).collect()
                }
                _ => Vec::new(),
            }
        }

        fn plan(&self, layer: &Layer<'_>) -> Vec<PlannedRequest> {
            fastly(
                layer.targets,
                layer.credentials,
                layer.options.flags.get::<crate::providers::fastly::Flags>().fastly_soft_purge,
            )
        }
    }

    /// Surrogate keys (at most 256 a request), URLs through the API host (so
    /// the key reaches no other host), or everything.
    fn fastly(
        targets: &PurgeTargets,
        credentials: &Credentials,
        soft: bool,
    ) -> Vec<PlannedRequest> {
        let service = format!(
            "{FASTLY_API}/service/{}",
            path_segment(credentials.value("FASTLY_SERVICE_ID"))
        );
        // A soft purge marks stale: keys and URLs only (purge_all has none).
        let key = || {
            let mut headers = vec![header("Fastly-Key", credentials.value("FASTLY_API_TOKEN"))];
            if soft {
                headers.push(header("Fastly-Soft-Purge", "1"));
            }
            headers
        };
        if targets.everything {
            return vec![PlannedRequest {
                method: "POST",
                url: format!("{service}/purge_all"),
                headers: vec![header("Fastly-Key", credentials.value("FASTLY_API_TOKEN"))],
                body: None,
                purges: Purges::whole("everything"),
                gap: Duration::ZERO,
                signed_by: None,
                waits_out: None,
                id_header: None,
            }];
        }
        let mut requests: Vec<PlannedRequest> = targets
            .tags
            .chunks(FASTLY_SURROGATE_KEYS_PER_REQUEST)
            .map(|keys| PlannedRequest {
                method: "POST",
                url: format!("{service}/purge"),
                headers: [key(), vec![header("Surrogate-Key", keys.join(" "))]].concat(),
                body: None,
                purges: counted(keys.len(), "surrogate key", "surrogate keys"),
                gap: Duration::ZERO,
                signed_by: None,
                waits_out: None,
                id_header: None,
            })
            .collect();
        for url in &targets.urls {
            requests.push(PlannedRequest {
                method: "POST",
                url: format!("{FASTLY_API}/purge/{}", cached_url(url.as_str())),
                headers: key(),
                body: None,
                purges: counted(1, "URL", "URLs"),
                gap: Duration::ZERO,
                signed_by: None,
                waits_out: None,
                id_header: None,
            });
        }
        requests
    }

    /// `https://www.example.com/a?b` → `www.example.com/a?b`.
    /// Fastly's `{cached_url}`: the URL without its scheme, as one path
    /// parameter of `POST /purge/{cached_url}`. Its query is part of it, so its
    /// `?` is percent-encoded: left bare, `?c=1` would be the API call's own
    /// query, and Fastly would purge `/a/b`, not `/a/b?c=1`. A fragment never
    /// reaches a cache and is dropped.
    fn cached_url(url: &str) -> String {
        let without_fragment = url.split('#').next().unwrap_or_default();
        without_scheme(without_fragment).replace('?', "%3F")
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

        #[test]
        fn the_purge_ids_are_the_single_purges_or_each_keys() {
            assert_eq!(
                Fastly.purge_ids(r#"{"status":"ok","id":"108-1391560174-974124"}"#),
                ["108-1391560174-974124"]
            );
            assert_eq!(
                Fastly.purge_ids(r#"{"shop":"108-1","blog":"108-2"}"#),
                ["108-2", "108-1"]
            );
            assert!(Fastly.purge_ids(r#"{"status":"ok"}"#).is_empty());
            assert!(Fastly.purge_ids("accepted").is_empty());
        }

        /// fastlySoftPurge: `Fastly-Soft-Purge: 1` on every key and URL purge,
        /// none on purge_all (which has no soft form).
        #[test]
        fn a_fastly_soft_purge_marks_keys_and_urls_stale() {
            let credentials = credentials(&[
                ("FASTLY_SERVICE_ID", "svc"),
                ("FASTLY_API_TOKEN", "fastly-key"),
            ]);
            let mut soft = options(30);
            soft.flags.fastly.fastly_soft_purge = true;
            let targets = PurgeTargets {
                urls: vec!["https://www.example.com/a".parse().unwrap()],
                tags: vec!["shop".into()],
                ..PurgeTargets::default()
            };
            let soft_header = header("Fastly-Soft-Purge", "1");
            let softly = |targets: &PurgeTargets| {
                plan(
                    Provider::Fastly,
                    targets,
                    &credentials,
                    &soft,
                    &JobContext::default(),
                )
                .unwrap()
            };
            let requests = softly(&targets);
            assert_eq!(requests.len(), 2);
            assert!(
                requests.iter().all(|r| r.headers.contains(&soft_header)),
                "{requests:?}"
            );
            let hard = planned(Provider::Fastly, &targets, &credentials).unwrap();
            assert!(
                hard.iter().all(|r| !r.headers.contains(&soft_header)),
                "{hard:?}"
            );
            let everything = PurgeTargets {
                everything: true,
                ..PurgeTargets::default()
            };
            let all = softly(&everything);
            assert_eq!(all[0].headers, [header("Fastly-Key", "fastly-key")]);
        }

        /// Fastly's `POST /purge/{cached_url}`: the query belongs to the cached
        /// URL, so the API call itself has none.
        #[test]
        fn a_fastly_url_keeps_its_query_inside_the_cached_url() {
            for (url, cached) in [
                ("https://shop.example.com/a/b", "shop.example.com/a/b"),
                (
                    "https://shop.example.com/a/b?c=1",
                    "shop.example.com/a/b%3Fc=1",
                ),
                (
                    "https://shop.example.com/?c=1&d=2",
                    "shop.example.com/%3Fc=1&d=2",
                ),
                ("http://shop.example.com/a#top", "shop.example.com/a"),
            ] {
                assert_eq!(cached_url(url), cached, "{url}");
            }
        }

        fn fastly_credentials() -> Credentials {
            credentials(&[
                ("FASTLY_SERVICE_ID", "svc"),
                ("FASTLY_API_TOKEN", "fastly-key"),
            ])
        }

        #[test]
        fn fastly_sends_the_key_to_its_api_host_only() {
            let targets = PurgeTargets {
                urls: vec![
                    "http://attacker.example/steal?x=1".parse().unwrap(),
                    "https://www.example.com/a".parse().unwrap(),
                ],
                tags: (0..300).map(|i| format!("k{i}")).collect(),
                ..PurgeTargets::default()
            };
            let requests = planned(Provider::Fastly, &targets, &fastly_credentials()).unwrap();
            for request in &requests {
                assert!(
                    request.url.starts_with("https://api.fastly.com/"),
                    "{}",
                    request.url
                );
                assert!(
                    request
                        .headers
                        .contains(&header("Fastly-Key", "fastly-key"))
                );
            }
            let keys: Vec<usize> = requests
                .iter()
                .filter_map(|r| r.headers.iter().find(|(name, _)| *name == "Surrogate-Key"))
                .map(|(_, keys)| keys.split(' ').count())
                .collect();
            assert_eq!(keys, [256, 44]);
            let urls: Vec<&str> = requests.iter().map(|r| r.url.as_str()).skip(2).collect();
            assert_eq!(
                urls,
                [
                    "https://api.fastly.com/purge/attacker.example/steal%3Fx=1",
                    "https://api.fastly.com/purge/www.example.com/a"
                ]
            );
            assert!(
                requests
                    .iter()
                    .all(|r| r.method == "POST" && r.body.is_none())
            );
        }

        #[test]
        fn fastly_purges_everything_with_purge_all_and_refuses_prefixes() {
            let everything = PurgeTargets {
                everything: true,
                ..PurgeTargets::default()
            };
            let requests = planned(Provider::Fastly, &everything, &fastly_credentials()).unwrap();
            assert_eq!(requests.len(), 1);
            assert_eq!(
                requests[0].url,
                "https://api.fastly.com/service/svc/purge_all"
            );
            let prefixes = PurgeTargets {
                prefixes: vec!["a/b".into()],
                ..PurgeTargets::default()
            };
            assert_eq!(
                planned(Provider::Fastly, &prefixes, &fastly_credentials())
                    .unwrap_err()
                    .to_string(),
                "fastly cannot purge URL prefixes"
            );
        }
    }
}
