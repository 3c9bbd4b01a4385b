//! What the purge sends (SPEC §5), decided before anything is sent: the
//! provider's requests, in order, with the credentials in place. Pure: the
//! same targets and credentials always give the same requests.

use super::cloudfront::{self, Invalidations};
use super::credentials::Credentials;
use super::edgegrid::EdgeGrid;
use super::sigv4::SigV4;
use cache_buster::http_service::HttpMethod;
use cache_buster::providers::{
    AkamaiOptions, FASTLY_SURROGATE_KEYS_PER_REQUEST, Provider, WebhookPayload,
};
use cache_buster::targets::PurgeTargets;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

pub const CLOUDFLARE_API: &str = "https://api.cloudflare.com/client/v4";
/// Fastly's API host: the only host that ever sees `Fastly-Key`.
pub const FASTLY_API: &str = "https://api.fastly.com";
/// Bunny's API host: the only host that ever sees `AccessKey`.
pub const BUNNY_API: &str = "https://api.bunny.net";
/// Bunny's documented purge rates: about 5 exact purges a second, and one
/// wildcard purge every 2 seconds.
pub const BUNNY_EXACT_GAP: Duration = Duration::from_millis(200);
pub const BUNNY_WILDCARD_GAP: Duration = Duration::from_secs(2);

/// One HTTP request of the purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<Header>,
    /// A JSON body.
    pub body: Option<String>,
    /// What it purges, for the outcome ("30 URLs").
    pub purges: Purges,
    /// Sent at least this long after the request before it: a CDN's
    /// documented rate (Bunny's), kept rather than met with 429s.
    pub gap: Duration,
    /// Signed anew on each try (Akamai's EdgeGrid, AWS's SigV4).
    pub signed_by: Option<Signer>,
    /// An answer 400 with this error code is waited out and retried, as a
    /// 429 is (CloudFront's TooManyInvalidationsInProgress).
    pub waits_out: Option<&'static str>,
}

impl PlannedRequest {
    /// `METHOD URL (Header: value, …) BODY`: what a dry run reports. Only
    /// for a request planned with placeholder credentials, as it quotes
    /// every header.
    pub fn describe(&self) -> String {
        let mut text = format!("{} {}", self.method, self.url);
        let headers: Vec<String> = self
            .headers
            .iter()
            .filter(|(name, _)| *name != "Content-Type")
            .map(|(name, value)| format!("{name}: {value}"))
            .collect();
        if !headers.is_empty() {
            text.push_str(&format!(" ({})", headers.join(", ")));
        }
        if let Some(body) = &self.body {
            text.push(' ');
            text.push_str(body);
        }
        text
    }
}

/// A count of one kind of target ("30 URLs"), or a whole ("everything").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purges {
    pub count: usize,
    pub one: &'static str,
    pub many: &'static str,
}

impl Purges {
    pub(super) const fn whole(what: &'static str) -> Purges {
        Purges {
            count: 1,
            one: what,
            many: what,
        }
    }
}

impl std::fmt::Display for Purges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.count {
            _ if self.one == self.many => f.write_str(self.one),
            1 => write!(f, "1 {}", self.one),
            count => write!(f, "{count} {}", self.many),
        }
    }
}

/// What the webhook is told besides the targets (SPEC §5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookContext {
    pub site: String,
    pub namespace: String,
    pub deployment: String,
    pub image: String,
    pub image_hash: String,
    pub job_name: String,
}

/// A target the provider cannot purge (the policy rejects it at admission;
/// a Job written by hand may still ask).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{provider} cannot purge {what}")]
pub struct Unsupported {
    pub provider: &'static str,
    pub what: &'static str,
}

/// A header's name (most are fixed, a self-hosted cache's tag header is a
/// setting) and value.
pub type Header = (Cow<'static, str>, String);

fn header(name: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Header {
    (name.into(), value.into())
}

pub(super) fn counted(count: usize, one: &'static str, many: &'static str) -> Purges {
    Purges { count, one, many }
}

fn json_request(
    url: String,
    headers: Vec<Header>,
    body: serde_json::Value,
    purges: Purges,
) -> PlannedRequest {
    let mut headers = headers;
    headers.push(header("Content-Type", "application/json"));
    PlannedRequest {
        method: "POST",
        url,
        headers,
        body: Some(body.to_string()),
        purges,
        gap: Duration::ZERO,
        signed_by: None,
        waits_out: None,
    }
}

/// How a request is signed, anew for each try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    EdgeGrid(EdgeGrid),
    SigV4(SigV4),
}

/// The providers' options, from the settings through the argv.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub cloudflare_batch_size: usize,
    pub fastly_soft_purge: bool,
    pub akamai: AkamaiOptions,
    pub http: SelfHosted,
    pub cloudfront: Invalidations,
}

/// Provider http: the caches found behind the Service, and how each is asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelfHosted {
    pub endpoints: Vec<SocketAddr>,
    pub method: HttpMethod,
    pub tag_header: String,
}

/// The requests for `provider`, in the order SPEC §5 gives.
pub fn plan(
    provider: Provider,
    targets: &PurgeTargets,
    credentials: &Credentials,
    options: &Options,
    webhook: &WebhookContext,
) -> Result<Vec<PlannedRequest>, Unsupported> {
    match provider {
        Provider::Cloudflare => Ok(cloudflare(
            targets,
            credentials,
            options.cloudflare_batch_size.max(1),
        )),
        Provider::Fastly => fastly(targets, credentials, options.fastly_soft_purge),
        Provider::Webhook => Ok(vec![webhook_request(targets, credentials, webhook)]),
        Provider::Bunny => bunny(targets, credentials),
        Provider::Akamai => akamai(targets, credentials, options.akamai),
        Provider::Http => self_hosted(targets, &options.http),
        Provider::Cloudfront => {
            for (list, what) in [
                (&targets.hosts, "host names"),
                (&targets.tags, "cache tags"),
            ] {
                if !list.is_empty() {
                    return Err(Unsupported {
                        provider: "cloudfront",
                        what,
                    });
                }
            }
            Ok(cloudfront::requests(targets, &options.cloudfront))
        }
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
    let auth = || {
        vec![header(
            "Authorization",
            format!("Bearer {}", credentials.value("CLOUDFLARE_API_TOKEN")),
        )]
    };
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
    for (field, items, one, many, size) in [
        ("files", &targets.urls, "URL", "URLs", batch_size),
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

/// Surrogate keys (at most 256 a request), URLs through the API host (so
/// the key reaches no other host), or everything.
fn fastly(
    targets: &PurgeTargets,
    credentials: &Credentials,
    soft: bool,
) -> Result<Vec<PlannedRequest>, Unsupported> {
    for (list, what) in [(&targets.prefixes, "prefixes"), (&targets.hosts, "hosts")] {
        if !list.is_empty() {
            return Err(Unsupported {
                provider: "fastly",
                what,
            });
        }
    }
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
        return Ok(vec![PlannedRequest {
            method: "POST",
            url: format!("{service}/purge_all"),
            headers: vec![header("Fastly-Key", credentials.value("FASTLY_API_TOKEN"))],
            body: None,
            purges: Purges::whole("everything"),
            gap: Duration::ZERO,
            signed_by: None,
            waits_out: None,
        }]);
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
        })
        .collect();
    for url in &targets.urls {
        requests.push(PlannedRequest {
            method: "POST",
            url: format!("{FASTLY_API}/purge/{}", cached_url(url)),
            headers: key(),
            body: None,
            purges: counted(1, "URL", "URLs"),
            gap: Duration::ZERO,
            signed_by: None,
            waits_out: None,
        });
    }
    Ok(requests)
}

/// Each URL and each prefix (a wildcard URL) through `/purge?url=`, each
/// tag through the pull zone's `purgeCache`; or that alone, without a body,
/// for everything. Paced to Bunny's rates.
fn bunny(
    targets: &PurgeTargets,
    credentials: &Credentials,
) -> Result<Vec<PlannedRequest>, Unsupported> {
    if !targets.hosts.is_empty() {
        return Err(Unsupported {
            provider: "bunny",
            what: "host names",
        });
    }
    let key = || header("AccessKey", credentials.value("BUNNY_API_KEY"));
    let zone = format!(
        "{BUNNY_API}/pullzone/{}/purgeCache",
        path_segment(credentials.value("BUNNY_PULL_ZONE_ID"))
    );
    if targets.everything {
        return Ok(vec![PlannedRequest {
            method: "POST",
            url: zone,
            headers: vec![key()],
            body: None,
            purges: Purges::whole("everything"),
            gap: BUNNY_WILDCARD_GAP,
            signed_by: None,
            waits_out: None,
        }]);
    }
    let by_url = |url: &str, purges: Purges, gap: Duration| PlannedRequest {
        method: "POST",
        url: format!("{BUNNY_API}/purge?url={}", path_segment(url)),
        headers: vec![key()],
        body: None,
        purges,
        gap,
        signed_by: None,
        waits_out: None,
    };
    let mut requests: Vec<PlannedRequest> = targets
        .urls
        .iter()
        .map(|url| by_url(url, counted(1, "URL", "URLs"), BUNNY_EXACT_GAP))
        .collect();
    requests.extend(targets.prefixes.iter().map(|prefix| {
        by_url(
            &format!("https://{prefix}*"),
            counted(1, "prefix", "prefixes"),
            BUNNY_WILDCARD_GAP,
        )
    }));
    requests.extend(targets.tags.iter().map(|tag| PlannedRequest {
        gap: BUNNY_EXACT_GAP,
        ..json_request(
            zone.clone(),
            vec![key()],
            serde_json::json!({"CacheTag": tag}),
            counted(1, "tag", "tags"),
        )
    }));
    Ok(requests)
}

/// For the providers that purge URLs and tags only (Akamai, self-hosted
/// caches): the first target they have no request for.
fn only_urls_and_tags(provider: &'static str, targets: &PurgeTargets) -> Result<(), Unsupported> {
    let unsupported = |what| Err(Unsupported { provider, what });
    if targets.everything {
        return unsupported("everything");
    }
    if !targets.prefixes.is_empty() {
        return unsupported("URL prefixes");
    }
    if !targets.hosts.is_empty() {
        return unsupported("host names");
    }
    Ok(())
}

/// Fast Purge: `{"objects":[…]}` of one type (URLs, then tags) a request,
/// each body at most this many bytes.
pub const AKAMAI_MAX_BODY: usize = 50_000;

/// URLs, then tags, in bodies of at most 50,000 bytes, each request signed
/// with EdgeGrid on every try.
fn akamai(
    targets: &PurgeTargets,
    credentials: &Credentials,
    options: AkamaiOptions,
) -> Result<Vec<PlannedRequest>, Unsupported> {
    only_urls_and_tags("akamai", targets)?;
    let signer = EdgeGrid {
        client_token: credentials.value("AKAMAI_CLIENT_TOKEN").to_owned(),
        client_secret: credentials.value("AKAMAI_CLIENT_SECRET").to_owned(),
        access_token: credentials.value("AKAMAI_ACCESS_TOKEN").to_owned(),
    };
    // The host as the .edgerc gives it, with or without its scheme.
    let host = without_scheme(credentials.value("AKAMAI_HOST")).trim_end_matches('/');
    let mut requests = Vec::new();
    for (kind, items, one, many) in [
        ("url", &targets.urls, "URL", "URLs"),
        ("tag", &targets.tags, "tag", "tags"),
    ] {
        for batch in by_body_size(items, AKAMAI_MAX_BODY) {
            requests.push(PlannedRequest {
                signed_by: Some(Signer::EdgeGrid(signer.clone())),
                ..json_request(
                    format!(
                        "https://{}/ccu/v3/{}/{kind}/{}",
                        host,
                        options.action.name(),
                        options.network.name()
                    ),
                    Vec::new(),
                    serde_json::json!({ "objects": batch }),
                    counted(batch.len(), one, many),
                )
            });
        }
    }
    Ok(requests)
}

/// Consecutive runs of `items` whose `{"objects":[…]}` body stays within
/// `limit` bytes (an item alone larger than that still goes, alone).
fn by_body_size(items: &[String], limit: usize) -> Vec<&[String]> {
    const ENVELOPE: usize = r#"{"objects":[]}"#.len();
    let mut batches = Vec::new();
    let (mut start, mut size) = (0, ENVELOPE);
    for (index, item) in items.iter().enumerate() {
        // The item quoted (JSON-escaped), and a comma before all but the first.
        let item_size =
            serde_json::Value::from(item.as_str()).to_string().len() + usize::from(index > start);
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

/// Every cache gets, for each URL, `PURGE <path>` with the URL's `Host`,
/// then one request with all the tags in the tag header; cache by cache.
fn self_hosted(
    targets: &PurgeTargets,
    caches: &SelfHosted,
) -> Result<Vec<PlannedRequest>, Unsupported> {
    only_urls_and_tags("http", targets)?;
    // The policy admits only absolute http(s) URLs: each has a host.
    let urls: Vec<(String, String)> = targets
        .urls
        .iter()
        .filter_map(|url| reqwest::Url::parse(url).ok())
        .map(|url| {
            let host = match (url.host_str(), url.port()) {
                (Some(host), Some(port)) => format!("{host}:{port}"),
                (host, None) => host.unwrap_or_default().to_owned(),
                (None, Some(_)) => String::new(),
            };
            let path = match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_owned(),
            };
            (host, path)
        })
        .collect();
    let request = |endpoint: &SocketAddr, path: &str, headers, purges| PlannedRequest {
        method: caches.method.name(),
        url: format!("http://{endpoint}{path}"),
        headers,
        body: None,
        purges,
        gap: Duration::ZERO,
        signed_by: None,
        waits_out: None,
    };
    let mut requests = Vec::new();
    for endpoint in &caches.endpoints {
        for (host, path) in &urls {
            requests.push(request(
                endpoint,
                path,
                vec![header("Host", host.clone())],
                counted(1, "URL purge", "URL purges"),
            ));
        }
        if !targets.tags.is_empty() {
            requests.push(request(
                endpoint,
                "/",
                vec![header(caches.tag_header.clone(), targets.tags.join(" "))],
                counted(targets.tags.len(), "tag purge", "tag purges"),
            ));
        }
    }
    Ok(requests)
}

fn webhook_request(
    targets: &PurgeTargets,
    credentials: &Credentials,
    context: &WebhookContext,
) -> PlannedRequest {
    let payload = WebhookPayload {
        site: &context.site,
        namespace: &context.namespace,
        deployment: &context.deployment,
        image: context.image.clone(),
        image_hash: &context.image_hash,
        job_name: &context.job_name,
        urls: &targets.urls,
        prefixes: &targets.prefixes,
        hosts: &targets.hosts,
        tags: &targets.tags,
        everything: targets.everything,
    };
    let mut headers = Vec::new();
    // No token, no Authorization header: never `Bearer ` with nothing after it.
    if let Some(token) = credentials.optional("WEBHOOK_TOKEN") {
        headers.push(header("Authorization", format!("Bearer {token}")));
    }
    json_request(
        credentials.value("WEBHOOK_URL").to_owned(),
        headers,
        serde_json::to_value(&payload).unwrap_or_default(),
        Purges::whole("the webhook"),
    )
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

fn without_scheme(url: &str) -> &str {
    url.split_once("://").map_or(url, |(_, rest)| rest)
}

/// A credential placed in a URL path: percent-encoded, so a stray `/` or
/// `?` cannot change which API is called.
pub(super) fn path_segment(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn credentials(pairs: &[(&str, &str)]) -> Credentials {
        Credentials::from_pairs(pairs)
    }

    fn urls(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("https://www.example.com/{i}"))
            .collect()
    }

    fn bodies(requests: &[PlannedRequest]) -> Vec<Value> {
        requests
            .iter()
            .map(|request| serde_json::from_str(request.body.as_deref().unwrap_or("null")).unwrap())
            .collect()
    }

    fn options(cloudflare_batch_size: usize) -> Options {
        Options {
            cloudflare_batch_size,
            ..Options::default()
        }
    }

    /// The plan with the default batch size and no webhook context.
    fn planned(
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

    fn cloudflare_credentials() -> Credentials {
        credentials(&[
            ("CLOUDFLARE_ZONE_ID", "zone/1"),
            ("CLOUDFLARE_API_TOKEN", "cf-token"),
        ])
    }

    fn bunny_credentials() -> Credentials {
        credentials(&[
            ("BUNNY_API_KEY", "bunny-key"),
            ("BUNNY_PULL_ZONE_ID", "4711"),
        ])
    }

    /// URLs, then prefixes as wildcard URLs, then tags, each its own
    /// request, paced to Bunny's rates; the key goes to api.bunny.net only.
    #[test]
    fn bunny_purges_urls_prefixes_and_tags_one_request_each() {
        let targets = PurgeTargets {
            urls: vec!["https://www.example.com/a?b=c".into()],
            prefixes: vec!["www.example.com/blog/".into()],
            tags: vec!["shop".into()],
            ..PurgeTargets::default()
        };
        let requests = plan(
            Provider::Bunny,
            &targets,
            &bunny_credentials(),
            &options(30),
            &WebhookContext::default(),
        )
        .unwrap();
        let seen: Vec<(String, Option<String>, Duration)> = requests
            .iter()
            .map(|request| (request.url.clone(), request.body.clone(), request.gap))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "https://api.bunny.net/purge?url=https%3A%2F%2Fwww.example.com%2Fa%3Fb%3Dc"
                        .to_owned(),
                    None,
                    BUNNY_EXACT_GAP
                ),
                (
                    "https://api.bunny.net/purge?url=https%3A%2F%2Fwww.example.com%2Fblog%2F%2A"
                        .to_owned(),
                    None,
                    BUNNY_WILDCARD_GAP
                ),
                (
                    "https://api.bunny.net/pullzone/4711/purgeCache".to_owned(),
                    Some(r#"{"CacheTag":"shop"}"#.to_owned()),
                    BUNNY_EXACT_GAP
                ),
            ]
        );
        for request in &requests {
            assert_eq!(request.method, "POST");
            assert!(request.url.starts_with(BUNNY_API), "{}", request.url);
            assert_eq!(request.headers[0], header("AccessKey", "bunny-key"));
        }
        assert_eq!(
            requests
                .iter()
                .map(|request| request.purges.to_string())
                .collect::<Vec<_>>(),
            ["1 URL", "1 prefix", "1 tag"]
        );
    }

    #[test]
    fn bunny_purges_everything_alone_and_no_host() {
        let everything = PurgeTargets {
            everything: true,
            tags: vec!["shop".into()],
            ..PurgeTargets::default()
        };
        let requests = plan(
            Provider::Bunny,
            &everything,
            &bunny_credentials(),
            &options(30),
            &WebhookContext::default(),
        )
        .unwrap();
        assert_eq!(requests.len(), 1);
        assert_eq!(
            requests[0].url,
            "https://api.bunny.net/pullzone/4711/purgeCache"
        );
        assert_eq!(requests[0].body, None);
        let hosts = PurgeTargets {
            hosts: vec!["www.example.com".into()],
            ..PurgeTargets::default()
        };
        assert_eq!(
            plan(
                Provider::Bunny,
                &hosts,
                &bunny_credentials(),
                &options(30),
                &WebhookContext::default()
            ),
            Err(Unsupported {
                provider: "bunny",
                what: "host names"
            })
        );
    }

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
            urls: vec!["https://www.example.com/".into()],
            tags: vec!["shop".into(), "blog".into()],
            ..PurgeTargets::default()
        };
        let delete_on_staging = Options {
            akamai: AkamaiOptions {
                action: cache_buster::providers::AkamaiAction::Delete,
                network: cache_buster::providers::AkamaiNetwork::Staging,
            },
            ..options(30)
        };
        let requests = plan(
            Provider::Akamai,
            &targets,
            &akamai_credentials(),
            &delete_on_staging,
            &WebhookContext::default(),
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
        assert_eq!(sent, targets.urls);
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

    fn three_caches(method: HttpMethod) -> Options {
        Options {
            http: SelfHosted {
                endpoints: ["10.0.0.3:6091", "10.0.0.4:6091", "[fd00::5]:6091"]
                    .map(|address| address.parse().unwrap())
                    .to_vec(),
                method,
                tag_header: "Surrogate-Key".into(),
            },
            ..options(30)
        }
    }

    /// Each cache, in turn: each URL's path with its Host, then the tags in
    /// one header.
    #[test]
    fn http_sends_each_cache_every_url_then_the_tags() {
        let targets = PurgeTargets {
            urls: vec![
                "https://shop.example.com/a?b=1".into(),
                "http://shop.example.com:8080/".into(),
            ],
            tags: vec!["shop".into(), "home".into()],
            ..PurgeTargets::default()
        };
        let requests = plan(
            Provider::Http,
            &targets,
            &Credentials::default(),
            &three_caches(HttpMethod::Purge),
            &WebhookContext::default(),
        )
        .unwrap();
        let described: Vec<String> = requests.iter().map(PlannedRequest::describe).collect();
        let mut expected = Vec::new();
        for cache in ["10.0.0.3:6091", "10.0.0.4:6091", "[fd00::5]:6091"] {
            expected.extend([
                format!("PURGE http://{cache}/a?b=1 (Host: shop.example.com)"),
                format!("PURGE http://{cache}/ (Host: shop.example.com:8080)"),
                format!("PURGE http://{cache}/ (Surrogate-Key: shop home)"),
            ]);
        }
        assert_eq!(described, expected);
        assert!(requests.iter().all(|r| r.body.is_none()));

        let ban = plan(
            Provider::Http,
            &targets,
            &Credentials::default(),
            &three_caches(HttpMethod::Ban),
            &WebhookContext::default(),
        )
        .unwrap();
        assert!(ban.iter().all(|r| r.method == "BAN"));
    }

    /// Fast Purge has no request for everything, prefixes or hosts, nor
    /// has a self-hosted cache one that every cache understands.
    #[test]
    fn akamai_and_http_refuse_what_they_have_no_request_for() {
        let unpurgeable = [
            (
                PurgeTargets {
                    everything: true,
                    ..PurgeTargets::default()
                },
                "everything",
            ),
            (
                PurgeTargets {
                    prefixes: vec!["www.example.com/blog".into()],
                    ..PurgeTargets::default()
                },
                "URL prefixes",
            ),
            (
                PurgeTargets {
                    hosts: vec!["www.example.com".into()],
                    ..PurgeTargets::default()
                },
                "host names",
            ),
        ];
        for (provider, credentials, options) in [
            (Provider::Akamai, akamai_credentials(), options(30)),
            (
                Provider::Http,
                Credentials::default(),
                three_caches(HttpMethod::Purge),
            ),
        ] {
            for (targets, what) in &unpurgeable {
                assert_eq!(
                    plan(
                        provider,
                        targets,
                        &credentials,
                        &options,
                        &WebhookContext::default()
                    ),
                    Err(Unsupported {
                        provider: provider.name(),
                        what
                    }),
                    "{provider}"
                );
            }
        }
    }

    #[test]
    fn cloudflare_batches_files_then_prefixes_hosts_and_tags() {
        let targets = PurgeTargets {
            urls: urls(65),
            prefixes: vec!["www.example.com/blog".into()],
            hosts: vec!["static.example.com".into()],
            tags: vec!["a".into(), "b".into()],
            everything: false,
        };
        let requests = planned(Provider::Cloudflare, &targets, &cloudflare_credentials()).unwrap();
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
                &WebhookContext::default(),
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

    /// fastlySoftPurge: `Fastly-Soft-Purge: 1` on every key and URL purge,
    /// none on purge_all (which has no soft form).
    #[test]
    fn a_fastly_soft_purge_marks_keys_and_urls_stale() {
        let credentials = credentials(&[
            ("FASTLY_SERVICE_ID", "svc"),
            ("FASTLY_API_TOKEN", "fastly-key"),
        ]);
        let soft = Options {
            fastly_soft_purge: true,
            ..options(30)
        };
        let targets = PurgeTargets {
            urls: vec!["https://www.example.com/a".into()],
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
                &WebhookContext::default(),
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

    #[test]
    fn cloudflare_purges_everything_alone() {
        let targets = PurgeTargets {
            urls: urls(3),
            everything: true,
            ..PurgeTargets::default()
        };
        let requests = planned(Provider::Cloudflare, &targets, &cloudflare_credentials()).unwrap();
        assert_eq!(bodies(&requests), [json!({"purge_everything": true})]);
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
                "http://attacker.example/steal?x=1".into(),
                "https://www.example.com/a".into(),
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
            "fastly cannot purge prefixes"
        );
    }

    #[test]
    fn the_webhook_gets_the_spec_payload_and_a_token_only_when_there_is_one() {
        let targets = PurgeTargets {
            tags: vec!["shop".into()],
            ..PurgeTargets::default()
        };
        let context = WebhookContext {
            site: "shop".into(),
            namespace: "web".into(),
            deployment: "shop".into(),
            image: "ghcr.io/acme/shop:1.4.3".into(),
            image_hash: "b4612648a6".into(),
            job_name: "shop-cache-buster-b4612648a6".into(),
        };
        let without = credentials(&[("WEBHOOK_URL", "https://hooks.example.test/purge")]);
        let requests = plan(
            Provider::Webhook,
            &targets,
            &without,
            &options(30),
            &context,
        )
        .unwrap();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].url, "https://hooks.example.test/purge");
        assert!(
            !requests[0]
                .headers
                .iter()
                .any(|(name, _)| *name == "Authorization")
        );
        assert_eq!(
            bodies(&requests)[0],
            json!({
                "site": "shop", "namespace": "web", "deployment": "shop",
                "image": "ghcr.io/acme/shop:1.4.3", "imageHash": "b4612648a6",
                "jobName": "shop-cache-buster-b4612648a6",
                "urls": [], "prefixes": [], "hosts": [], "tags": ["shop"], "everything": false
            })
        );
        let with = credentials(&[
            ("WEBHOOK_URL", "https://hooks.example.test/purge"),
            ("WEBHOOK_TOKEN", "s3cret"),
        ]);
        let requests = plan(Provider::Webhook, &targets, &with, &options(30), &context).unwrap();
        assert!(
            requests[0]
                .headers
                .contains(&header("Authorization", "Bearer s3cret"))
        );
    }
}
