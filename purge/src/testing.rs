//! What the providers' planning tests share: credentials from pairs, the
//! options a test varies, and one call that plans a provider's requests.

use crate::cdn::{self, Found, Layer};
use crate::credentials::Credentials;
use crate::flags::JobContext;
use crate::providers::{Provider, ProviderFlags, Unsupported};
use crate::request::PlannedRequest;
use crate::targets::PurgeTargets;
use serde_json::Value;
use std::net::SocketAddr;

pub fn credentials(pairs: &[(&str, &str)]) -> Credentials {
    Credentials::from_pairs(pairs)
}

pub fn urls(n: usize) -> Vec<crate::targets::TargetUrl> {
    (0..n)
        .map(|i| format!("https://www.example.com/{i}").parse().unwrap())
        .collect()
}

pub fn bodies(requests: &[PlannedRequest]) -> Vec<Value> {
    requests
        .iter()
        .map(|request| serde_json::from_str(request.body.as_deref().unwrap_or("null")).unwrap())
        .collect()
}

/// The options the planning tests vary: the providers' flags, and the
/// caches provider http's lookup would have found.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub flags: ProviderFlags,
    pub endpoints: Vec<SocketAddr>,
}

pub fn options(cloudflare_batch_size: usize) -> Options {
    let mut options = Options::default();
    options.flags.cloudflare.cloudflare_batch_size = cloudflare_batch_size;
    options
}

/// `provider`'s requests for these targets, options and context.
pub fn plan(
    provider: Provider,
    targets: &PurgeTargets,
    credentials: &Credentials,
    options: &Options,
    context: &JobContext,
) -> Result<Vec<PlannedRequest>, Unsupported> {
    let options_of_the_job = cdn::Options {
        flags: options.flags.clone().into_set(),
        context: context.clone(),
        ..cdn::Options::default()
    };
    let found = Found {
        endpoints: options.endpoints.clone(),
        ..Found::default()
    };
    provider.plan(&Layer {
        targets,
        credentials,
        options: &options_of_the_job,
        found: &found,
    })
}

/// The plan of a provider that sends a bearer token (gcp, azure), with the
/// token its identity module would have fetched.
pub fn planned_with_bearer(
    provider: Provider,
    targets: &PurgeTargets,
    credentials: &Credentials,
    bearer: &str,
) -> Result<Vec<PlannedRequest>, Unsupported> {
    provider.plan(&Layer {
        targets,
        credentials,
        options: &cdn::Options::default(),
        found: &Found::with_bearer(bearer.into(), Vec::new()),
    })
}

/// The plan with the default batch size and no webhook context.
pub fn planned(
    provider: Provider,
    targets: &PurgeTargets,
    credentials: &Credentials,
) -> Result<Vec<PlannedRequest>, Unsupported> {
    plan(
        provider,
        targets,
        credentials,
        &options(30),
        &JobContext::default(),
    )
}
