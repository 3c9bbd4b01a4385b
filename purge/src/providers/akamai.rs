//! Akamai Fast Purge v3: URLs, then tags, in bodies of at most 50,000
//! bytes, each request signed with EdgeGrid on every try.
use crate::catalog::Info;
use crate::flags::{RenderFlags, Rendering};
use crate::options::{AkamaiAction, AkamaiNetwork};
use crate::targets::Target;

pub const INFO: Info = Info {
    name: "akamai",
    // The fields of an API client's `.edgerc` section.
    secret_keys: &[
        "AKAMAI_HOST",
        "AKAMAI_CLIENT_TOKEN",
        "AKAMAI_CLIENT_SECRET",
        "AKAMAI_ACCESS_TOKEN",
    ],
    optional_keys: &[],
    // By URL and by cache tag (by CP code: a later addition).
    accepts: &[Target::Urls, Target::Tags],
    needs_no_target: false,
    reads_the_api: false,
    needs_job_uid: false,
    completion_seconds: 0,
    pod_labels: &[],
    pod_annotations: &[],
};

/// Its flags: Fast Purge's action and network (settings `akamaiAction`,
/// `akamaiNetwork`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "client", derive(clap::Args), group(skip))]
pub struct Flags {
    /// Fast Purge's action: invalidate or delete (provider akamai)
    #[cfg_attr(
        feature = "client",
        arg(long, value_parser = parse::action, default_value = "invalidate")
    )]
    pub akamai_action: AkamaiAction,
    /// Fast Purge's network: production or staging (provider akamai)
    #[cfg_attr(
        feature = "client",
        arg(long, value_parser = parse::network, default_value = "production")
    )]
    pub akamai_network: AkamaiNetwork,
}

impl RenderFlags for Flags {
    fn render(&self, to: &mut Rendering<'_>) {
        to.flag("akamai-action", self.akamai_action.name());
        to.flag("akamai-network", self.akamai_network.name());
    }
}

#[cfg(feature = "client")]
mod parse {
    use crate::options::{AkamaiAction, AkamaiNetwork};

    pub fn action(name: &str) -> Result<AkamaiAction, String> {
        [AkamaiAction::Invalidate, AkamaiAction::Delete]
            .into_iter()
            .find(|action| action.name() == name)
            .ok_or_else(|| "expected invalidate or delete".to_owned())
    }

    pub fn network(name: &str) -> Result<AkamaiNetwork, String> {
        [AkamaiNetwork::Production, AkamaiNetwork::Staging]
            .into_iter()
            .find(|network| network.name() == name)
            .ok_or_else(|| "expected production or staging".to_owned())
    }
}

#[cfg(feature = "client")]
pub use requests::Akamai;

#[cfg(feature = "client")]
mod requests {
    use crate::cdn::{Cdn, Layer};
    use crate::credentials::Credentials;
    use crate::edgegrid::EdgeGrid;
    use crate::request::{PlannedRequest, Signer, counted, json_request, without_scheme};
    use crate::targets::PurgeTargets;

    pub struct Akamai;

    impl Cdn for Akamai {
        /// Fast Purge's `purgeId`.
        fn purge_ids(&self, answer: &str) -> Vec<String> {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Accepted {
                purge_id: Option<String>,
            }
            serde_json::from_str::<Accepted>(answer)
                .ok()
                .and_then(|accepted| accepted.purge_id)
                .into_iter()
                .collect()
        }

        fn plan(&self, layer: &Layer<'_>) -> Vec<PlannedRequest> {
            akamai(layer.targets, layer.credentials, layer.options.flags.get::<crate::providers::akamai::Flags>())
        }
    }

    /// Fast Purge: `{"objects":[…]}` of one type (URLs, then tags) a request,
    /// each body at most this many bytes.
    pub const AKAMAI_MAX_BODY: usize = 50_000;

    /// URLs, then tags, in bodies of at most 50,000 bytes, each request signed
    /// with EdgeGrid on every try.
    fn akamai(
        targets: &PurgeTargets,
        credentials: &Credentials,
        flags: crate::providers::akamai::Flags,
    ) -> Vec<PlannedRequest> {
        let signer = EdgeGrid {
            client_token: credentials.value("AKAMAI_CLIENT_TOKEN").to_owned(),
            client_secret: credentials.value("AKAMAI_CLIENT_SECRET").to_owned(),
            access_token: credentials.value("AKAMAI_ACCESS_TOKEN").to_owned(),
        };
        // The host as the .edgerc gives it, with or without its scheme.
        let host = without_scheme(credentials.value("AKAMAI_HOST")).trim_end_matches('/');
        let mut requests = Vec::new();
        let urls: Vec<String> = targets.urls.iter().map(ToString::to_string).collect();
        for (kind, items, one, many) in [
            ("url", &urls, "URL", "URLs"),
            ("tag", &targets.tags, "tag", "tags"),
        ] {
            for batch in by_body_size(items, AKAMAI_MAX_BODY) {
                requests.push(PlannedRequest {
                    signed_by: Some(Signer::EdgeGrid(signer.clone())),
                    ..json_request(
                        format!(
                            "https://{}/ccu/v3/{}/{kind}/{}",
                            host,
                            flags.akamai_action.name(),
                            flags.akamai_network.name()
                        ),
                        Vec::new(),
                        serde_json::json!({ "objects": batch }),
                        counted(batch.len(), one, many),
                    )
                });
            }
        }
        requests
    }

    /// Consecutive runs of `items` whose `{"objects":[…]}` body stays within
    /// `limit` bytes (an item alone larger than that still goes, alone).
    fn by_body_size(items: &[String], limit: usize) -> Vec<&[String]> {
        const ENVELOPE: usize = r#"{"objects":[]}"#.len();
        let mut batches = Vec::new();
        let (mut start, mut size) = (0, ENVELOPE);
        for (index, item) in items.iter().enumerate() {
            // The item quoted (JSON-escaped), and a comma before all but the first.
            let item_size = serde_json::Value::from(item.as_str()).to_string().len()
                + usize::from(index > start);
            if index > start && size + item_size > limit {
                batches.push(&items[start..index]);
                start = index;
                size = ENVELOPE + item_size - 1;
            } else {
                size += item_size;
            }
        }
        if start < items.len() {
            batches.push(&items[start..]);
        }
        batches
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::flags::JobContext;
        use crate::credentials::Credentials;
        use crate::providers::Provider;
        use crate::targets::PurgeTargets;
        use crate::testing::*;

        #[test]
        fn the_purge_id_is_fast_purges_purge_id() {
            let answer = r#"{"httpStatus":201,"detail":"Request accepted","estimatedSeconds":5,"purgeId":"e535071c-26b2-11e7-94d7-276f2f54d938","supportId":"17PY1492793544958045-219026624"}"#;
            assert_eq!(Akamai.purge_ids(answer), ["e535071c-26b2-11e7-94d7-276f2f54d938"]);
        }

        use crate::options::{AkamaiAction, AkamaiNetwork};

        fn akamai_credentials() -> Credentials {
            credentials(&[
                ("AKAMAI_HOST", "https://akab-test.luna.akamaiapis.net/"),
                ("AKAMAI_CLIENT_TOKEN", "akab-client-token"),
                ("AKAMAI_CLIENT_SECRET", "s3cret"),
                ("AKAMAI_ACCESS_TOKEN", "akab-access-token"),
            ])
        }

        #[test]
        fn akamai_sends_urls_then_tags_each_request_signed() {
            let targets = PurgeTargets {
                urls: vec!["https://www.example.com/".parse().unwrap()],
                tags: vec!["shop".into(), "blog".into()],
                ..PurgeTargets::default()
            };
            let mut delete_on_staging = options(30);
            delete_on_staging.flags.akamai = crate::providers::akamai::Flags {
                akamai_action: AkamaiAction::Delete,
                akamai_network: AkamaiNetwork::Staging,
            };
            let requests = plan(
                Provider::Akamai,
                &targets,
                &akamai_credentials(),
                &delete_on_staging,
                &JobContext::default(),
            )
            .unwrap();
            let seen: Vec<(&str, Option<&str>)> = requests
                .iter()
                .map(|r| (r.url.as_str(), r.body.as_deref()))
                .collect();
            assert_eq!(
                seen,
                [
                    (
                        "https://akab-test.luna.akamaiapis.net/ccu/v3/delete/url/staging",
                        Some(r#"{"objects":["https://www.example.com/"]}"#)
                    ),
                    (
                        "https://akab-test.luna.akamaiapis.net/ccu/v3/delete/tag/staging",
                        Some(r#"{"objects":["shop","blog"]}"#)
                    ),
                ]
            );
            // The secret travels only as the signer's key, never as a header.
            assert!(requests.iter().all(|r| r.signed_by.is_some()));
            assert!(
                requests
                    .iter()
                    .all(|r| r.headers.iter().all(|(_, value)| !value.contains("s3cret")))
            );
            let defaults = planned(Provider::Akamai, &targets, &akamai_credentials()).unwrap();
            assert!(
                defaults[0]
                    .url
                    .ends_with("/ccu/v3/invalidate/url/production")
            );
        }

        #[test]
        fn akamai_bodies_stay_within_50000_bytes() {
            let targets = PurgeTargets {
                urls: urls(2000),
                ..PurgeTargets::default()
            };
            let requests = planned(Provider::Akamai, &targets, &akamai_credentials()).unwrap();
            assert!(requests.len() > 1, "{} requests", requests.len());
            let mut sent = Vec::new();
            for request in &requests {
                let body = request.body.as_deref().unwrap();
                assert!(body.len() <= AKAMAI_MAX_BODY, "{} bytes", body.len());
                let value: serde_json::Value = serde_json::from_str(body).unwrap();
                sent.extend(
                    value["objects"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|url| url.as_str().unwrap().to_owned()),
                );
            }
            // Every URL once, in order; and each batch as full as the limit allows.
            assert_eq!(
                targets.urls,
                sent.iter().map(String::as_str).collect::<Vec<_>>()
            );
            for pair in requests.windows(2) {
                let body = pair[0].body.as_deref().unwrap();
                let next: serde_json::Value =
                    serde_json::from_str(pair[1].body.as_deref().unwrap()).unwrap();
                let next_quoted = next["objects"][0].to_string();
                assert!(
                    body.len() + 1 + next_quoted.len() > AKAMAI_MAX_BODY,
                    "the next URL would have fit in a body of {} bytes",
                    body.len()
                );
            }
        }

        #[test]
        fn akamai_batches_at_the_exact_limit() {
            // Two items that fill 50,000 bytes exactly go together; one byte
            // more and the second goes alone.
            let envelope = r#"{"objects":[]}"#.len();
            let half = |extra: usize| {
                let first = "a".repeat((AKAMAI_MAX_BODY - envelope - 1) / 2 - 2);
                let second = "b".repeat(AKAMAI_MAX_BODY - envelope - 1 - first.len() - 4 + extra);
                vec![first, second]
            };
            let fits = half(0);
            assert_eq!(by_body_size(&fits, AKAMAI_MAX_BODY).len(), 1);
            let body = serde_json::json!({ "objects": fits }).to_string();
            assert_eq!(body.len(), AKAMAI_MAX_BODY);
            assert_eq!(by_body_size(&half(1), AKAMAI_MAX_BODY).len(), 2);
            assert!(by_body_size(&[], AKAMAI_MAX_BODY).is_empty());
        }
    }
}
