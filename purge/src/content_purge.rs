//! SPEC §9 in the program: what a content purge (`--content`) adds to each
//! layer's targets, and the line the outcome says of it.
//!
//! The changed files are found by comparing the new image with the one
//! last purged. Where that comparison gives no list of URLs, the purge
//! falls back: the base URLs as prefixes where every layer purges prefixes,
//! else everything at each layer that can. This release does not read
//! images yet, so every content purge falls back, and its outcome says so.

use crate::content::ContentRoot;
use crate::providers::Provider;
use crate::target_checks::check_prefix;
use crate::targets::{PurgeTargets, Target};

/// What `--content`, `--content-max-urls` and `--warm` ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentPurge {
    pub roots: Vec<ContentRoot>,
    pub max_urls: u32,
    pub warm: bool,
}

/// Why the changed files were not purged one by one.
pub const NOT_COMPARED: &str =
    "the images were not compared: this release does not read images from their registry yet";

/// SPEC §9, fallback: what replaces the changed files' URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// The base URLs, without scheme, at every layer.
    Prefixes(Vec<String>),
    /// The whole cache, at each layer that can purge it.
    Everything,
}

impl Fallback {
    /// Prefixes when every layer purges prefixes and every base URL is one
    /// (a host with a port is not); else everything.
    pub fn for_layers(roots: &[ContentRoot], providers: &[Provider]) -> Fallback {
        let prefixes: Vec<String> = roots
            .iter()
            .map(|root| root.base_prefix().to_owned())
            .collect();
        let every_layer = providers
            .iter()
            .all(|provider| provider.accepts(Target::Prefixes));
        if every_layer && prefixes.iter().all(|prefix| check_prefix(prefix).is_ok()) {
            Fallback::Prefixes(prefixes)
        } else {
            Fallback::Everything
        }
    }

    /// `targets` with the fallback added, for one layer. A layer that can
    /// purge neither gets its annotated targets alone (admission warned).
    pub fn apply(&self, provider: Provider, targets: &PurgeTargets) -> PurgeTargets {
        let mut targets = targets.clone();
        match self {
            Fallback::Prefixes(prefixes) => {
                for prefix in prefixes {
                    if !targets.prefixes.contains(prefix) {
                        targets.prefixes.push(prefix.clone());
                    }
                }
            }
            Fallback::Everything if provider.accepts(Target::Everything) => {
                targets.everything = true;
            }
            Fallback::Everything => {}
        }
        targets
    }

    /// "fell back to the prefixes shop.example.com/ (because …)".
    pub fn describe(&self, reason: &str) -> String {
        match self {
            Fallback::Prefixes(prefixes) => format!(
                "content: fell back to the prefixes {} ({reason})",
                prefixes.join(", ")
            ),
            Fallback::Everything => format!("content: fell back to everything ({reason})"),
        }
    }
}

impl ContentPurge {
    /// The fallback for these layers, and the outcome's line.
    pub fn plan(&self, providers: &[Provider]) -> (Fallback, String) {
        let fallback = Fallback::for_layers(&self.roots, providers);
        let mut line = fallback.describe(NOT_COMPARED);
        if self.warm {
            line.push_str("; no page warmed: this release does not fetch pages yet");
        }
        (fallback, line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(pairs: &[&str]) -> Vec<ContentRoot> {
        pairs
            .iter()
            .map(|pair| ContentRoot::parse(pair).unwrap())
            .collect()
    }

    #[test]
    fn layers_that_all_purge_prefixes_get_the_base_urls_as_prefixes() {
        let fallback = Fallback::for_layers(
            &roots(&[
                "/srv=https://shop.example.com/",
                "/docs=https://docs.example.com/v2/",
            ]),
            &[Provider::Cloudflare, Provider::Bunny],
        );
        assert_eq!(
            fallback,
            Fallback::Prefixes(vec![
                "shop.example.com/".to_owned(),
                "docs.example.com/v2/".to_owned()
            ])
        );
        let annotated = PurgeTargets {
            prefixes: vec!["shop.example.com/".to_owned()],
            ..PurgeTargets::default()
        };
        assert_eq!(
            fallback.apply(Provider::Cloudflare, &annotated).prefixes,
            ["shop.example.com/", "docs.example.com/v2/"]
        );
    }

    #[test]
    fn a_layer_without_prefixes_makes_it_everything_where_a_layer_can() {
        let roots = roots(&["/srv=https://shop.example.com/"]);
        let layers = [Provider::Fastly, Provider::Cloudflare];
        let fallback = Fallback::for_layers(&roots, &layers);
        assert_eq!(fallback, Fallback::Everything);
        assert!(
            fallback
                .apply(Provider::Fastly, &PurgeTargets::default())
                .everything
        );
        // Akamai purges neither: its annotated targets alone.
        let tags = PurgeTargets {
            tags: vec!["shop".to_owned()],
            ..PurgeTargets::default()
        };
        assert_eq!(fallback.apply(Provider::Akamai, &tags), tags);
    }

    #[test]
    fn a_base_url_with_a_port_is_no_prefix() {
        let fallback = Fallback::for_layers(
            &roots(&["/srv=http://shop.example.com:8080/"]),
            &[Provider::Cloudflare],
        );
        assert_eq!(fallback, Fallback::Everything);
    }

    #[test]
    fn the_outcome_says_what_was_purged_instead_and_why() {
        let content = ContentPurge {
            roots: roots(&["/srv=https://shop.example.com/"]),
            max_urls: 500,
            warm: true,
        };
        let (_, line) = content.plan(&[Provider::Cloudflare]);
        assert_eq!(
            line,
            "content: fell back to the prefixes shop.example.com/ (the images were not compared: \
             this release does not read images from their registry yet); no page warmed: this \
             release does not fetch pages yet"
        );
    }
}
