//! Purge providers (SPEC §5) at admission: whether each layer can purge the
//! Deployment's targets, from the purge crate's table. The Job's argv is
//! the purge crate's `argv::PurgeArgv`, which the program parses back; the
//! requests themselves are the program's (purge/src/providers/).

use crate::error::{PolicyError, PolicyResult};
use crate::keys;
use crate::targets::{PurgeTargets, Target};

pub use cache_buster_purge::argv::{JobContext, PurgeArgv};
pub use cache_buster_purge::options::{
    AkamaiAction, AkamaiNetwork, CREDENTIALS_DIR, PURGE_BUDGET_SECONDS,
};
pub use cache_buster_purge::providers::{Provider, ProviderFlags};

/// What the policy checks of a provider, from the purge's table.
pub trait Admission {
    /// SPEC §2: a target the provider cannot purge, or no target at all (the
    /// webhook needs none), is an error. Returns warnings for what is accepted
    /// but has no effect.
    fn check_targets(
        self,
        purge: &PurgeTargets,
        has_content: bool,
        deployment: &str,
        key: impl Fn(&str) -> String,
    ) -> PolicyResult<Vec<String>>;
}

impl Admission for Provider {
    fn check_targets(
        self,
        purge: &PurgeTargets,
        has_content: bool,
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
        let purges_urls = self.accepts(Target::Urls);
        if has_content && !purges_urls {
            // SPEC §9: the changed files are purged as URLs.
            return Err(PolicyError::UnsupportedTarget {
                key: key(keys::CONTENT),
                provider: self.name().to_owned(),
                target: Target::Urls.noun().to_owned(),
                expected: expected(),
            });
        }
        if purge.is_empty() && !has_content && !self.info().needs_no_target {
            let mut expected = expected();
            if purges_urls {
                expected.push_str(", ");
                expected.push_str(&key(keys::CONTENT));
            }
            return Err(PolicyError::NoPurgeTarget {
                deployment: deployment.to_owned(),
                provider: self.name().to_owned(),
                expected,
            });
        }
        let redundant = purge.non_empty_lists();
        let mut warnings = Vec::new();
        if has_content && !self.accepts(Target::Prefixes) && !purges_everything {
            warnings.push(format!(
                "{}: provider {} purges neither URL prefixes nor everything, so where the content purge \
                 falls back (the first rollout, an image it cannot read, more than contentMaxUrls \
                 changed files) it purges only the annotated targets at this layer",
                key(keys::CONTENT),
                self.name()
            ));
        }
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
    has_content: bool,
    deployment: &str,
    key: impl Fn(&str) -> String,
) -> PolicyResult<Vec<String>> {
    let mut warnings: Vec<String> = Vec::new();
    for provider in providers {
        for warning in provider.check_targets(purge, has_content, deployment, &key)? {
            if !warnings.contains(&warning) {
                warnings.push(warning);
            }
        }
    }
    Ok(warnings)
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

    #[rstest]
    #[case::fastly_prefixes(Provider::Fastly, PurgeTargets { prefixes: vec!["a.example/b".into()], ..Default::default() },
        "annotation cache-buster.io/prefixes: provider fastly cannot purge by URL prefix; expected only cache-buster.io/urls, cache-buster.io/tags, cache-buster.io/everything (\"true\") with this provider")]
    #[case::fastly_hosts(Provider::Fastly, PurgeTargets { hosts: vec!["a.example".into()], ..Default::default() },
        "annotation cache-buster.io/hosts: provider fastly cannot purge by host name")]
    #[case::cloudflare_nothing(
        Provider::Cloudflare,
        PurgeTargets::default(),
        "Deployment web/shop has no purge target for provider cloudflare; expected at least one of the annotations cache-buster.io/urls, cache-buster.io/prefixes, cache-buster.io/hosts, cache-buster.io/tags, cache-buster.io/everything (\"true\"), cache-buster.io/content"
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
        "Deployment web/shop has no purge target for provider fastly; expected at least one of the annotations cache-buster.io/urls, cache-buster.io/tags, cache-buster.io/everything (\"true\"), cache-buster.io/content"
    )]
    fn targets_a_provider_cannot_purge_are_rejected(
        #[case] provider: Provider,
        #[case] purge: PurgeTargets,
        #[case] message: &str,
    ) {
        let error = provider
            .check_targets(&purge, false, "web/shop", key)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with(message), "{error}");
        if message.contains("has no purge target") {
            assert_eq!(error, message, "the whole message");
        }
    }

    #[test]
    fn webhook_needs_no_target() {
        assert_eq!(
            Provider::Webhook.check_targets(&PurgeTargets::default(), false, "web/shop", key),
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
            .check_targets(&purge, false, "web/shop", key)
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
