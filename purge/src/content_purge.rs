//! SPEC §9 in the program: what a content purge (`--content`) adds to each
//! layer's targets, and the line the outcome says of it.
//!
//! The changed files are found by comparing the new image with the one
//! last purged (content_compare.rs); each becomes its URLs. Where that
//! comparison gives no list of URLs (no earlier purge, a registry that
//! cannot be read, more URLs than `contentMaxUrls`), the purge falls back:
//! the base URLs as prefixes where every layer purges prefixes, else
//! everything at each layer that can. A content purge never fails the Job.

use crate::client::Network;
use crate::content::ContentRoot;
use crate::content_compare::{Compared, compare_images};
use crate::flags::JobContext;
use crate::previous::last_purged_image;
use crate::providers::Provider;
use crate::registry::Registries;
use crate::registry_identity::RegistryIdentity;
use crate::target_checks::{TargetUrl, check_prefix};
use crate::targets::{PurgeTargets, Target};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// What `--content`, `--content-max-urls` and `--warm` ask for, and where
/// the images are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentPurge {
    pub roots: Vec<ContentRoot>,
    pub max_urls: u32,
    pub warm: bool,
    /// Registries reached over plain HTTP (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
    /// The CA certificates of registries with a private CA
    /// (`--registry-ca-file`).
    pub registry_ca_file: Option<PathBuf>,
    /// The mounted image pull secrets (docker config JSON files).
    pub pull_secrets: Option<PathBuf>,
    /// The image to compare with, given by hand; else the last purged one.
    pub previous_image: Option<String>,
}

/// The URLs of the outcome's line: the first few of those purged.
const URLS_SHOWN: usize = 5;

fn every_layer_purges_prefixes(providers: &[Provider]) -> bool {
    providers
        .iter()
        .all(|provider| provider.accepts(Target::Prefixes))
}

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
        if every_layer_purges_prefixes(providers)
            && prefixes.iter().all(|prefix| check_prefix(prefix).is_ok())
        {
            Fallback::Prefixes(prefixes)
        } else {
            Fallback::Everything
        }
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

/// What a content purge adds to every layer's annotated targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addition {
    /// The URLs of the files that changed (none when nothing did), and the
    /// prefixes of paths hidden in one image only.
    Pages {
        urls: Vec<TargetUrl>,
        prefixes: Vec<String>,
    },
    Fallback(Fallback),
}

impl Addition {
    /// `targets` with the addition, for one layer. A layer that can purge
    /// neither prefixes nor everything gets its annotated targets alone
    /// under a fallback (admission warned).
    pub fn apply(&self, provider: Provider, targets: &PurgeTargets) -> PurgeTargets {
        let mut targets = targets.clone();
        match self {
            Addition::Pages { urls, prefixes } => {
                for url in urls {
                    if !targets.urls.contains(url) {
                        targets.urls.push(url.clone());
                    }
                }
                for prefix in prefixes {
                    if !targets.prefixes.contains(prefix) {
                        targets.prefixes.push(prefix.clone());
                    }
                }
            }
            Addition::Fallback(Fallback::Prefixes(prefixes)) => {
                for prefix in prefixes {
                    if !targets.prefixes.contains(prefix) {
                        targets.prefixes.push(prefix.clone());
                    }
                }
            }
            Addition::Fallback(Fallback::Everything) if provider.accepts(Target::Everything) => {
                targets.everything = true;
            }
            Addition::Fallback(Fallback::Everything) => {}
        }
        targets
    }
}

/// "1.2 MB": the bytes read, as the outcome says them.
fn size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", bytes as f64 / 1e3),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    }
}

impl ContentPurge {
    /// Finds the image to compare with and compares it with `context`'s.
    /// Every failure is the reason of a fallback.
    pub async fn compare(
        &self,
        context: &JobContext,
        identities: Vec<RegistryIdentity>,
        network: &Network,
        timeout: Duration,
    ) -> Result<Compared, String> {
        let previous = match &self.previous_image {
            Some(image) => image.clone(),
            None => {
                let client = kube::Client::try_default().await.map_err(|error| {
                    format!("the image last purged cannot be looked up: {error}")
                })?;
                last_purged_image(
                    client,
                    &context.namespace,
                    &context.deployment,
                    &context.job_name,
                )
                .await
                .map_err(|error| format!("the image last purged cannot be looked up: {error}"))?
                .ok_or_else(|| {
                    "no earlier purge of this Deployment succeeded: nothing to compare with"
                        .to_owned()
                })?
            }
        };
        let registries = Registries::new(
            &self.insecure_registries,
            self.registry_ca_file.as_deref(),
            self.pull_secrets.as_deref(),
            identities,
            network,
            timeout,
        )
        .map_err(|error| error.to_string())?;
        compare_images(&registries, &previous, &context.image, &self.roots)
            .await
            .map_err(|error| format!("the images were not compared: {error}"))
    }

    /// The addition for these layers from the comparison (or the reason
    /// there was none), and the outcome's line.
    pub fn plan(
        &self,
        providers: &[Provider],
        compared: Result<Compared, String>,
    ) -> (Addition, String) {
        let fallback = |reason: &str| {
            let fallback = Fallback::for_layers(&self.roots, providers);
            let line = fallback.describe(reason);
            (Addition::Fallback(fallback), line)
        };
        let (addition, mut line) = match compared {
            Err(reason) => fallback(&reason),
            Ok(compared) => self.of_changes(providers, &compared, fallback),
        };
        if self.warm {
            line.push_str("; no page warmed: this release does not fetch pages yet");
        }
        (addition, line)
    }

    fn of_changes(
        &self,
        providers: &[Provider],
        compared: &Compared,
        fallback: impl Fn(&str) -> (Addition, String),
    ) -> (Addition, String) {
        let changes = &compared.changes;
        let images = format!("{} → {}", compared.old, compared.new);
        // A path one image removes or makes opaque over the shared layers
        // may have been a directory: its files there are unknown, so it is
        // purged as a prefix where every layer can, else the fallback.
        let hidden: Vec<String> = changes
            .hidden_in_one
            .iter()
            .flat_map(|path| self.roots.iter().flat_map(move |root| root.prefix_of(path)))
            .collect();
        if !hidden.is_empty() && !every_layer_purges_prefixes(providers) {
            return fallback(&format!(
                "{images}: /{} hides the shared layers' files in one image only, and not every layer purges prefixes",
                changes
                    .hidden_in_one
                    .first()
                    .map(String::as_str)
                    .unwrap_or_default()
            ));
        }
        let counts = format!(
            "{} added, {} changed, {} removed, {} downloaded",
            changes.added.len(),
            changes.changed.len(),
            changes.removed.len(),
            size(compared.downloaded)
        );
        let urls: BTreeSet<String> = changes
            .added
            .iter()
            .chain(&changes.changed)
            .chain(&changes.removed)
            .flat_map(|path| self.roots.iter().flat_map(|root| root.urls_of(path)))
            .collect();
        if urls.len() > self.max_urls as usize {
            return fallback(&format!(
                "{images}: {counts}; {} URLs, more than contentMaxUrls ({})",
                urls.len(),
                self.max_urls
            ));
        }
        let parsed: Result<Vec<TargetUrl>, String> = urls
            .iter()
            .map(|url| TargetUrl::parse(url).map_err(|refusal| format!("{url} {refusal}")))
            .collect();
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(refusal) => return fallback(&format!("{images}: a changed file's URL {refusal}")),
        };
        let prefixes = match hidden.as_slice() {
            [] => String::new(),
            hidden => format!(
                ", and the prefixes {} (hidden in one image only)",
                hidden.join(" ")
            ),
        };
        let line = match parsed.as_slice() {
            [] if hidden.is_empty() => format!("content: {images}: {counts}; no page changed"),
            [] => format!("content: {images}: {counts}; no URL purged{prefixes}"),
            urls => {
                let shown: Vec<&str> = urls
                    .iter()
                    .take(URLS_SHOWN)
                    .map(TargetUrl::as_str)
                    .collect();
                let more = urls.len().saturating_sub(URLS_SHOWN);
                format!(
                    "content: {images}: {counts}; {} purged: {}{}{prefixes}",
                    match urls.len() {
                        1 => "1 URL".to_owned(),
                        count => format!("{count} URLs"),
                    },
                    shown.join(" "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                )
            }
        };
        (
            Addition::Pages {
                urls: parsed,
                prefixes: hidden,
            },
            line,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_diff::Changes;

    fn roots(pairs: &[&str]) -> Vec<ContentRoot> {
        pairs
            .iter()
            .map(|pair| ContentRoot::parse(pair).unwrap())
            .collect()
    }

    fn content(pairs: &[&str], max_urls: u32) -> ContentPurge {
        ContentPurge {
            roots: roots(pairs),
            max_urls,
            warm: false,
            insecure_registries: Vec::new(),
            registry_ca_file: None,
            pull_secrets: None,
            previous_image: None,
        }
    }

    fn compared(added: &[&str], changed: &[&str], removed: &[&str]) -> Compared {
        let owned = |paths: &[&str]| paths.iter().map(|path| (*path).to_owned()).collect();
        Compared {
            old: "registry.example/site@sha256:aaaa".to_owned(),
            new: "registry.example/site@sha256:bbbb".to_owned(),
            changes: Changes {
                added: owned(added),
                changed: owned(changed),
                removed: owned(removed),
                hidden_in_one: Vec::new(),
            },
            downloaded: 2_345_678,
        }
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
            Addition::Fallback(fallback)
                .apply(Provider::Cloudflare, &annotated)
                .prefixes,
            ["shop.example.com/", "docs.example.com/v2/"]
        );
    }

    #[test]
    fn a_layer_without_prefixes_makes_it_everything_where_a_layer_can() {
        let roots = roots(&["/srv=https://shop.example.com/"]);
        let layers = [Provider::Fastly, Provider::Cloudflare];
        let fallback = Fallback::for_layers(&roots, &layers);
        assert_eq!(fallback, Fallback::Everything);
        let addition = Addition::Fallback(fallback);
        assert!(
            addition
                .apply(Provider::Fastly, &PurgeTargets::default())
                .everything
        );
        // Akamai purges neither: its annotated targets alone.
        let tags = PurgeTargets {
            tags: vec!["shop".to_owned()],
            ..PurgeTargets::default()
        };
        assert_eq!(addition.apply(Provider::Akamai, &tags), tags);
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
    fn without_a_comparison_the_outcome_says_what_was_purged_instead_and_why() {
        let mut content = content(&["/srv=https://shop.example.com/"], 500);
        content.warm = true;
        let (addition, line) = content.plan(
            &[Provider::Cloudflare],
            Err(
                "no earlier purge of this Deployment succeeded: nothing to compare with".to_owned(),
            ),
        );
        assert_eq!(
            addition,
            Addition::Fallback(Fallback::Prefixes(vec!["shop.example.com/".to_owned()]))
        );
        assert_eq!(
            line,
            "content: fell back to the prefixes shop.example.com/ (no earlier purge of this \
             Deployment succeeded: nothing to compare with); no page warmed: this release does \
             not fetch pages yet"
        );
    }

    #[test]
    fn every_changed_file_under_a_site_directory_becomes_its_urls() {
        let content = content(&["/usr/share/nginx/html=https://blog.example.com/"], 500);
        let (addition, line) = content.plan(
            &[Provider::Cloudflare],
            Ok(compared(
                &["usr/share/nginx/html/posts/new/index.html"],
                &[
                    "usr/share/nginx/html/index.xml",
                    "usr/share/nginx/html/index.html",
                ],
                &["usr/share/nginx/html/old page.html", "etc/nginx/nginx.conf"],
            )),
        );
        let Addition::Pages { urls, .. } = &addition else {
            panic!("{addition:?}")
        };
        let urls: Vec<&str> = urls.iter().map(TargetUrl::as_str).collect();
        assert_eq!(
            urls,
            [
                "https://blog.example.com/",
                "https://blog.example.com/index.html",
                "https://blog.example.com/index.xml",
                "https://blog.example.com/old%20page.html",
                "https://blog.example.com/posts/new/",
                "https://blog.example.com/posts/new/index.html",
            ]
        );
        assert_eq!(
            line,
            "content: registry.example/site@sha256:aaaa → registry.example/site@sha256:bbbb: \
             1 added, 2 changed, 2 removed, 2.3 MB downloaded; 6 URLs purged: \
             https://blog.example.com/ https://blog.example.com/index.html \
             https://blog.example.com/index.xml https://blog.example.com/old%20page.html \
             https://blog.example.com/posts/new/ and 1 more"
        );
        let annotated = PurgeTargets {
            urls: vec![TargetUrl::parse("https://blog.example.com/").unwrap()],
            ..PurgeTargets::default()
        };
        assert_eq!(
            addition.apply(Provider::Cloudflare, &annotated).urls.len(),
            6
        );
    }

    #[test]
    fn more_urls_than_the_setting_fall_back_and_say_how_many() {
        let content = content(&["/srv=https://shop.example.com/"], 2);
        let (addition, line) = content.plan(
            &[Provider::Fastly],
            Ok(compared(
                &["srv/a.html", "srv/b.html", "srv/c.html"],
                &[],
                &[],
            )),
        );
        assert_eq!(addition, Addition::Fallback(Fallback::Everything));
        assert!(
            line.starts_with(
                "content: fell back to everything (registry.example/site@sha256:aaaa → "
            ),
            "{line}"
        );
        assert!(
            line.ends_with("3 URLs, more than contentMaxUrls (2))"),
            "{line}"
        );
    }

    #[test]
    fn no_changed_page_purges_nothing_more_and_says_so() {
        let content = content(&["/srv=https://shop.example.com/"], 500);
        let (addition, line) =
            content.plan(&[Provider::Fastly], Ok(compared(&[], &["etc/hosts"], &[])));
        assert_eq!(
            addition,
            Addition::Pages {
                urls: Vec::new(),
                prefixes: Vec::new()
            }
        );
        assert!(
            line.ends_with("0 added, 1 changed, 0 removed, 2.3 MB downloaded; no page changed"),
            "{line}"
        );
    }

    #[test]
    fn a_path_hidden_in_one_image_only_is_purged_as_a_prefix_where_every_layer_can() {
        let content = content(&["/srv=https://shop.example.com/"], 500);
        let mut hiding = compared(&[], &[], &["srv/posts"]);
        hiding.changes.hidden_in_one = vec!["srv/posts".to_owned()];
        let (addition, line) = content.plan(&[Provider::Cloudflare], Ok(hiding.clone()));
        assert_eq!(
            addition,
            Addition::Pages {
                urls: vec![TargetUrl::parse("https://shop.example.com/posts").unwrap()],
                prefixes: vec!["shop.example.com/posts/".to_owned()],
            }
        );
        assert!(
            line.ends_with(", and the prefixes shop.example.com/posts/ (hidden in one image only)"),
            "{line}"
        );
        // Fastly purges no prefix: the fallback.
        let (addition, line) = content.plan(&[Provider::Fastly], Ok(hiding));
        assert_eq!(addition, Addition::Fallback(Fallback::Everything));
        assert!(
            line.contains("/srv/posts hides the shared layers' files in one image only"),
            "{line}"
        );
    }
}
