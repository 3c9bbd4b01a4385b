//! What the providers' planning tests share: credentials from pairs, the
//! options a test varies, and one call that plans a provider's requests.

use crate::cdn::{self, Found, HttpJob, Layer, WebhookContext};
use crate::credentials::Credentials;
use crate::options::{AkamaiOptions, HttpMethod};
use crate::providers::{Provider, Unsupported};
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

/// The options the planning tests vary.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub cloudflare_batch_size: usize,
    pub fastly_soft_purge: bool,
    pub akamai: AkamaiOptions,
    pub http: SelfHosted,
}

/// Provider http's caches, as its lookup would have found them.
#[derive(Debug, Clone, Default)]
pub struct SelfHosted {
    pub endpoints: Vec<SocketAddr>,
    pub method: HttpMethod,
    pub tag_header: String,
}

pub fn options(cloudflare_batch_size: usize) -> Options {
    Options {
        cloudflare_batch_size,
        ..Options::default()
    }
}

/// `provider`'s requests for these targets, options and webhook context.
pub fn plan(
    provider: Provider,
    targets: &PurgeTargets,
    credentials: &Credentials,
    options: &Options,
    webhook: &WebhookContext,
) -> Result<Vec<PlannedRequest>, Unsupported> {
    let options_of_the_job = cdn::Options {
        cloudflare_batch_size: options.cloudflare_batch_size,
        fastly_soft_purge: options.fastly_soft_purge,
        akamai: options.akamai,
        http: HttpJob {
            service: None,
            method: options.http.method,
            tag_header: options.http.tag_header.clone(),
        },
        webhook: webhook.clone(),
        ..cdn::Options::default()
    };
    let found = Found {
        endpoints: options.http.endpoints.clone(),
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
        &WebhookContext::default(),
    )
}
