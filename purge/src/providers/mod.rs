//! The providers (SPEC §5), one module each, and the one table of what each
//! is: its name, the Secret keys it reads, the targets it accepts. The
//! policy reads the table to check a Deployment at admission; the program
//! reads it to check its argv and find the module that plans the requests.
//!
//! Adding a provider: a file here with its `INFO`, its `Flags` and its
//! planner, and its line in `registry!` (docs/development.md).

pub use crate::catalog::{Info, Unsupported};
use crate::flags::{RenderFlags, Rendering};
use crate::targets::{PurgeTargets, Target};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The registry: one line per provider, `Variant => module::Planner`.
/// Its module holds the rest: `INFO` (its row of the table), `Flags` (what
/// it reads from the argv, argv.rs) and the planner (its requests).
macro_rules! registry {
    ($($variant:ident => $module:ident :: $planner:ident,)+) => {
        $(pub mod $module;)+

        #[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[serde(rename_all = "lowercase", try_from = "String")]
        pub enum Provider {
            $($variant,)+
        }

        impl Provider {
            pub const ALL: [Provider; [$(stringify!($variant)),+].len()] =
                [$(Provider::$variant,)+];

            /// The table: each provider's row is its module's `INFO`.
            pub fn info(self) -> &'static Info {
                match self {
                    $(Provider::$variant => &$module::INFO,)+
                }
            }
        }

        #[cfg(feature = "client")]
        impl Provider {
            /// The module that purges for this provider.
            pub fn cdn(self) -> &'static dyn crate::cdn::Cdn {
                match self {
                    $(Provider::$variant => &$module::$planner,)+
                }
            }
        }

        /// Every provider's own flags, side by side (argv.rs); a provider's
        /// are rendered only when it is a layer.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        #[cfg_attr(feature = "client", derive(clap::Args))]
        pub struct ProviderFlags {
            $(
                #[cfg_attr(feature = "client", command(flatten))]
                pub $module: $module::Flags,
            )+
        }

        #[cfg(feature = "client")]
        impl ProviderFlags {
            /// Each provider's flags, for it to ask for by type.
            pub fn into_set(self) -> crate::cdn::FlagSet {
                crate::cdn::FlagSet::default()$(.with(self.$module))+
            }
        }

        impl ProviderFlags {
            /// `provider`'s flags, in its layer's place of the argv.
            pub fn render(&self, provider: Provider, to: &mut Rendering<'_>) {
                match provider {
                    $(Provider::$variant => self.$module.render(to),)+
                }
            }
        }
    };
}

registry! {
    Cloudflare => cloudflare::Cloudflare,
    Fastly => fastly::Fastly,
    Webhook => webhook::Webhook,
    Bunny => bunny::Bunny,
    Akamai => akamai::Akamai,
    Http => http::Caches,
    Cloudfront => cloudfront::CloudFront,
    Gcp => gcp::Gcp,
    Azure => azure::Azure,
}

impl Provider {
    /// The provider of Deployments that name none, unless the settings
    /// say otherwise.
    pub const DEFAULT: Provider = Provider::Cloudflare;

    pub fn name(self) -> &'static str {
        self.info().name
    }

    pub fn from_name(name: &str) -> Option<Provider> {
        Provider::ALL
            .into_iter()
            .find(|provider| provider.name() == name)
    }

    /// The keys the credentials Secret must (or, for the optional ones, may) hold.
    pub fn secret_keys(self) -> &'static [&'static str] {
        self.info().secret_keys
    }

    /// Those of `secret_keys` the Secret may leave out.
    pub fn optional_secret_keys(self) -> &'static [&'static str] {
        self.info().optional_keys
    }

    /// The keys a purge cannot go without.
    pub fn required_secret_keys(self) -> impl Iterator<Item = &'static str> {
        self.info().required_secret_keys()
    }

    pub fn accepts(self, target: Target) -> bool {
        self.info().accepts.contains(&target)
    }

    /// The first of `targets` this provider has no request for.
    pub fn refuses(self, targets: &PurgeTargets) -> Option<Unsupported> {
        targets
            .asked()
            .into_iter()
            .find(|target| !self.accepts(*target))
            .map(|target| Unsupported {
                provider: self.name(),
                what: target.plural(),
            })
    }

    /// For a name that is not a provider, the provider it most likely means,
    /// as a hint to add to the message: the same name in another case, or
    /// one within two edits (`fasty`, `web-hook`).
    pub fn did_you_mean(name: &str) -> Option<String> {
        let lowercase = name.trim().to_lowercase();
        if let Some(provider) = Provider::from_name(&lowercase) {
            return Some(format!(
                "provider names are lowercase: did you mean {:?}?",
                provider.name()
            ));
        }
        Provider::ALL
            .into_iter()
            .map(|provider| (strsim::levenshtein(&lowercase, provider.name()), provider))
            .filter(|(distance, _)| *distance <= 2)
            .min_by_key(|(distance, _)| *distance)
            .map(|(_, provider)| format!("did you mean {:?}?", provider.name()))
    }

    /// "one of cloudflare, fastly, webhook, bunny", with the hint for `name`.
    pub fn expected_for(name: &str) -> String {
        let names: Vec<&str> = Provider::ALL
            .iter()
            .map(|provider| provider.name())
            .collect();
        let mut expected = format!("one of {}", names.join(", "));
        if let Some(hint) = Provider::did_you_mean(name) {
            expected.push_str(&format!(" ({hint})"));
        }
        expected
    }
}

impl TryFrom<String> for Provider {
    type Error = String;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Provider::from_name(&name).ok_or_else(|| {
            format!(
                "unknown provider {name:?}, expected {}",
                Provider::expected_for(&name)
            )
        })
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Layers (SPEC §5): `http, cloudflare` — the providers in the order they
/// purge, each once. Empty names (a trailing comma) are skipped.
pub fn parse_layers(value: &str) -> Result<Vec<Provider>, String> {
    let mut layers: Vec<Provider> = Vec::new();
    for name in value
        .split([',', ' ', '\t', '\n'])
        .filter(|name| !name.is_empty())
    {
        let provider = Provider::from_name(name).ok_or_else(|| {
            format!(
                "{name:?} is not a known provider; expected {}",
                Provider::expected_for(name)
            )
        })?;
        if !layers.contains(&provider) {
            layers.push(provider);
        }
    }
    if layers.is_empty() {
        return Err(format!(
            "names no provider; expected {}",
            Provider::expected_for("")
        ));
    }
    Ok(layers)
}

#[cfg(feature = "client")]
impl Provider {
    /// The requests for `layer`, or the first target this provider has no
    /// request for.
    pub fn plan(
        self,
        layer: &crate::cdn::Layer<'_>,
    ) -> Result<Vec<crate::request::PlannedRequest>, Unsupported> {
        match self.refuses(layer.targets) {
            Some(refusal) => Err(refusal),
            None => Ok(self.cdn().plan(layer)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_read_in_order_each_once() {
        assert_eq!(
            parse_layers("http, cloudflare,http").unwrap(),
            [Provider::Http, Provider::Cloudflare]
        );
        assert_eq!(parse_layers(" fastly\n").unwrap(), [Provider::Fastly]);
        assert_eq!(
            parse_layers("http, clouflare").unwrap_err(),
            "\"clouflare\" is not a known provider; expected one of cloudflare, fastly, webhook, bunny, akamai, http, cloudfront, gcp, azure (did you mean \"cloudflare\"?)"
        );
        assert!(
            parse_layers(" , ")
                .unwrap_err()
                .starts_with("names no provider")
        );
    }

    #[test]
    fn a_provider_refuses_the_first_target_it_has_no_request_for() {
        let targets = PurgeTargets {
            everything: true,
            tags: vec!["a".into()],
            ..PurgeTargets::default()
        };
        assert_eq!(
            Provider::Akamai
                .refuses(&targets)
                .map(|refusal| refusal.to_string()),
            Some("akamai cannot purge everything".to_owned())
        );
        let tags_only = PurgeTargets {
            tags: vec!["a".into()],
            ..PurgeTargets::default()
        };
        assert_eq!(
            Provider::Cloudfront
                .refuses(&tags_only)
                .map(|refusal| refusal.to_string()),
            Some("cloudfront cannot purge cache tags".to_owned())
        );
        assert_eq!(Provider::Cloudflare.refuses(&targets), None);
    }

    /// SPEC §5, what each provider has no request for: asked alone, each
    /// of these targets is refused naming the provider, every other one is
    /// planned. (Fast Purge has no request for everything, prefixes or hosts,
    /// nor has a self-hosted cache one that every cache understands.)
    #[test]
    fn each_provider_refuses_what_spec_5_gives_it_no_request_for() {
        use Target::*;
        let refused: [(Provider, &[Target]); 9] = [
            (Provider::Cloudflare, &[]),
            (Provider::Fastly, &[Prefixes, Hosts]),
            (Provider::Webhook, &[]),
            (Provider::Bunny, &[Hosts]),
            (Provider::Akamai, &[Prefixes, Hosts, Everything]),
            (Provider::Http, &[Prefixes, Hosts, Everything]),
            (Provider::Cloudfront, &[Hosts, Tags]),
            (Provider::Gcp, &[Hosts]),
            (Provider::Azure, &[Hosts, Tags]),
        ];
        assert_eq!(
            refused.map(|(provider, _)| provider),
            Provider::ALL,
            "one row per provider"
        );
        for (provider, refuses) in refused {
            for target in [Urls, Prefixes, Hosts, Tags, Everything] {
                let mut alone = PurgeTargets {
                    everything: target == Everything,
                    ..PurgeTargets::default()
                };
                match target {
                    Urls => alone.urls = vec!["https://www.example.com/".parse().unwrap()],
                    Prefixes => alone.prefixes = vec!["www.example.com/blog".into()],
                    Hosts => alone.hosts = vec!["www.example.com".into()],
                    Tags => alone.tags = vec!["shop".into()],
                    Everything => {}
                }
                let expected = refuses.contains(&target).then(|| Unsupported {
                    provider: provider.name(),
                    what: target.plural(),
                });
                assert_eq!(provider.refuses(&alone), expected, "{provider} {target:?}");
            }
        }
    }

    /// Every row names itself: `from_name(name)` finds the same provider.
    #[test]
    fn every_row_is_found_by_its_name() {
        for provider in Provider::ALL {
            assert_eq!(Provider::from_name(provider.name()), Some(provider));
            for key in provider.optional_secret_keys() {
                assert!(provider.secret_keys().contains(key), "{provider} {key}");
            }
        }
    }
}
