//! The purge container's command line (SPEC §6), declared once: the policy
//! renders a [`PurgeArgv`] into the Job, and `cache-buster purge` parses
//! the same type back (with the `client` feature, through clap).
//!
//! Each provider declares the flags it reads in its own module (a `Flags`
//! struct and how it renders); the registry (`providers::registry!`) puts
//! them side by side in [`ProviderFlags`]. What the Job knows of its
//! Deployment ([`JobContext`]) is shared: a flag two layers read is given
//! once.

pub use crate::flags::{Context, JobContext, RenderFlags, Rendering};
#[cfg(feature = "client")]
use crate::options::PURGE_BUDGET_SECONDS;
use crate::providers::{Provider, ProviderFlags};

/// The providers of `--provider`, in the order they purge. An alias, not a
/// `Vec` to clap: one flag with commas, not one flag per provider.
pub type Layers = Vec<Provider>;

/// The whole command line of the purge container, after the program's
/// name. Each target is checked as the policy checks it (`target_checks`):
/// an argv the policy would not write is refused before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "client", derive(clap::Args))]
pub struct PurgeArgv {
    /// The provider, or several purged in that order (layers): http,cloudflare
    #[cfg_attr(feature = "client", arg(long = "provider", value_parser = crate::providers::parse_layers))]
    pub providers: Layers,
    /// The Secret with the provider's credentials (named in messages)
    #[cfg_attr(feature = "client", arg(long))]
    pub secret: String,
    /// Send nothing and read no credential: report what would be sent
    #[cfg_attr(feature = "client", arg(long))]
    pub dry_run: bool,
    /// A URL to purge (annotation `urls`)
    #[cfg_attr(feature = "client", arg(long = "url", value_parser = parse::url))]
    pub urls: Vec<String>,
    /// A URL prefix to purge: host and path, no scheme (annotation `prefixes`)
    #[cfg_attr(feature = "client", arg(long = "prefix", value_parser = parse::prefix))]
    pub prefixes: Vec<String>,
    /// A host name to purge (annotation `hosts`)
    #[cfg_attr(feature = "client", arg(long = "host", value_parser = parse::host))]
    pub hosts: Vec<String>,
    /// A cache tag to purge (annotation `tags`)
    #[cfg_attr(feature = "client", arg(long = "tag", value_parser = parse::tag))]
    pub tags: Vec<String>,
    /// Purge the whole cache (annotation `everything`)
    #[cfg_attr(feature = "client", arg(long))]
    pub everything: bool,
    /// A directory of the image and the URL it is served under,
    /// `<dir>=<base URL>`: purge the files that changed (annotation `content`)
    #[cfg_attr(feature = "client", arg(long = "content", value_parser = parse::content))]
    pub content: Vec<String>,
    /// Beyond this many changed URLs, purge the base URLs as prefixes, or
    /// everything (setting `contentMaxUrls`; written with `--content` only)
    #[cfg_attr(feature = "client", arg(long))]
    pub content_max_urls: Option<u32>,
    /// After the last layer, fetch each purged URL once (annotation `warm`)
    #[cfg_attr(feature = "client", arg(long))]
    pub warm: bool,
    /// A registry the images are read from over plain HTTP, `host[:port]`
    /// (setting `contentInsecureRegistries`; written with `--content` only)
    #[cfg_attr(feature = "client", arg(long = "insecure-registry", value_parser = parse::registry))]
    pub insecure_registries: Vec<String>,
    /// A file of PEM certificates that registries' certificates may chain
    /// to, besides the public roots (setting `contentRegistryCA`; written
    /// with `--content` only)
    #[cfg_attr(feature = "client", arg(long))]
    pub registry_ca_file: Option<String>,
    #[cfg_attr(feature = "client", command(flatten))]
    pub context: JobContext,
    #[cfg_attr(feature = "client", command(flatten))]
    pub flags: ProviderFlags,
    /// Every request with its retries ends within this
    #[cfg_attr(feature = "client", arg(long, default_value_t = PURGE_BUDGET_SECONDS.unsigned_abs()))]
    pub budget_seconds: u64,
}

/// The subcommand the argv starts with.
pub const SUBCOMMAND: &str = "purge";

impl PurgeArgv {
    /// The purge container's `args`: the subcommand, then flags that read
    /// as what it does (`purge --provider=cloudflare --secret=… --url=…`).
    /// Never a credential: those stay in the mounted Secret's files.
    pub fn render(&self) -> Vec<String> {
        let layers: Vec<&str> = self.providers.iter().map(|p| p.name()).collect();
        let listed = self.urls.len() + self.prefixes.len() + self.hosts.len() + self.tags.len();
        let mut args = Vec::with_capacity(listed + 16);
        args.push(SUBCOMMAND.to_owned());
        args.push(["--provider=", &layers.join(",")].concat());
        args.push(["--secret=", &self.secret].concat());
        if self.dry_run {
            args.push("--dry-run".to_owned());
        }
        // Not `format!`: a 256 KiB `urls` annotation is thousands of these.
        for (flag, items) in [
            ("url", &self.urls),
            ("prefix", &self.prefixes),
            ("host", &self.hosts),
            ("tag", &self.tags),
        ] {
            args.extend(items.iter().map(|item| ["--", flag, "=", item].concat()));
        }
        if self.everything {
            args.push("--everything".to_owned());
        }
        args.extend(
            self.content
                .iter()
                .map(|root| ["--content=", root].concat()),
        );
        if let Some(max) = self.content_max_urls {
            args.push(["--content-max-urls=", &max.to_string()].concat());
        }
        if self.warm {
            args.push("--warm".to_owned());
        }
        args.extend(
            self.insecure_registries
                .iter()
                .map(|registry| ["--insecure-registry=", registry].concat()),
        );
        if let Some(file) = &self.registry_ca_file {
            args.push(["--registry-ca-file=", file].concat());
        }
        let mut rendering = Rendering::new(args, &self.context, !self.tags.is_empty());
        if !self.content.is_empty() {
            // SPEC §9: the new image, and where to find the one last purged.
            for field in [
                Context::Namespace,
                Context::Deployment,
                Context::Image,
                Context::JobName,
            ] {
                rendering.context(field);
            }
        }
        for provider in &self.providers {
            self.flags.render(*provider, &mut rendering);
        }
        let mut args = rendering.into_args();
        args.push(format!("--budget-seconds={}", self.budget_seconds));
        args
    }
}

/// The value parsers of the program's side: each target checked as the
/// policy checks it, the layers as `P/provider` reads them. A provider's
/// own flags have their parsers in its module.
#[cfg(feature = "client")]
pub mod parse {
    use crate::target_checks::{Refusal, TargetUrl, check_host, check_prefix, check_tag};

    pub fn url(text: &str) -> Result<String, String> {
        TargetUrl::parse(text)
            .map(|_| text.to_owned())
            .map_err(|refusal| format!("{text:?} {refusal}"))
    }

    fn checked(text: &str, check: fn(&str) -> Result<(), Refusal>) -> Result<String, String> {
        check(text)
            .map(|()| text.to_owned())
            .map_err(|refusal| format!("{text:?} {refusal}"))
    }

    pub fn registry(text: &str) -> Result<String, String> {
        crate::content::check_registry(text)
            .map(|()| text.to_owned())
            .map_err(|refusal| format!("{text:?} {}", refusal.0))
    }

    pub fn prefix(text: &str) -> Result<String, String> {
        checked(text, check_prefix)
    }

    pub fn host(text: &str) -> Result<String, String> {
        checked(text, check_host)
    }

    pub fn tag(text: &str) -> Result<String, String> {
        checked(text, check_tag)
    }

    /// `<dir>=<base URL>`, kept as the policy wrote it (normalized).
    pub fn content(text: &str) -> Result<String, String> {
        crate::content::ContentRoot::parse(text)
            .map(|root| root.to_string())
            .map_err(|refusal| format!("{text:?} {refusal}"))
    }
}

#[cfg(test)]
#[path = "argv_tests.rs"]
mod tests;
