//! `purge`, the companion Job's container (SPEC §4, §5): reads the
//! credentials, sends the provider's requests one after the other, stops at
//! the first that fails for good, and reports the outcome.

pub mod credentials;
pub mod edgegrid;
pub mod endpoints;
pub mod http;
pub mod outcome;
pub mod plan;

use cache_buster::http_service::{HttpMethod, HttpService};
use cache_buster::providers::{AkamaiOptions, Provider};
use cache_buster::targets::PurgeTargets;
use credentials::Credentials;
use http::{Client, Limits, Network};
use outcome::{Failure, Outcome, answer_excerpt, ids_in, redact};
use plan::{Options, SelfHosted, WebhookContext};
use std::path::PathBuf;
use std::time::Instant;

/// Everything one purge needs, from the container's argv.
#[derive(Debug, Clone)]
pub struct PurgeJob {
    pub provider: Provider,
    pub targets: PurgeTargets,
    pub cloudflare_batch_size: usize,
    pub akamai: AkamaiOptions,
    pub http: HttpJob,
    pub webhook: WebhookContext,
    /// Where the Secret is mounted, and its name (for the messages).
    pub credentials_dir: PathBuf,
    pub secret: String,
    pub limits: Limits,
    pub network: Network,
    /// Send nothing; report what would have been sent.
    pub dry_run: bool,
}

/// Provider http's request: which Service's caches (in the webhook
/// context's namespace), with which method, tags in which header.
#[derive(Debug, Clone, Default)]
pub struct HttpJob {
    pub service: Option<HttpService>,
    pub method: HttpMethod,
    pub tag_header: String,
}

impl PurgeJob {
    /// The caches to purge (provider http only): the ready endpoints of the
    /// Service, read from the API with the pod's token.
    async fn caches(&self) -> Result<Vec<std::net::SocketAddr>, String> {
        if self.provider != Provider::Http {
            return Ok(Vec::new());
        }
        let Some(service) = &self.http.service else {
            return Err("provider http needs --http-service=<service>[:<port>]".to_owned());
        };
        let client = kube::Client::try_default()
            .await
            .map_err(|error| format!("cannot reach the Kubernetes API: {error}"))?;
        endpoints::ready_endpoints(client, &self.webhook.namespace, service).await
    }

    fn options(&self, caches: Vec<std::net::SocketAddr>) -> Options {
        Options {
            cloudflare_batch_size: self.cloudflare_batch_size,
            akamai: self.akamai,
            http: SelfHosted {
                endpoints: caches,
                method: self.http.method,
                tag_header: self.http.tag_header.clone(),
            },
        }
    }
}

fn failed(job: &PurgeJob, started: Instant, error: String) -> Outcome {
    Outcome {
        provider: job.provider.name().to_owned(),
        result: "failed".to_owned(),
        requests: 0,
        attempts: 0,
        purged: Vec::new(),
        ids: Vec::new(),
        seconds: seconds(started),
        would_send: Vec::new(),
        failure: Some(Failure {
            request: None,
            status: None,
            error,
            answer: String::new(),
        }),
    }
}

fn seconds(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 10.0).round() / 10.0
}

/// A dry run: the same plan, with `<KEY>` for each credential, and nothing
/// read (but a self-hosted cache's endpoints), sent or needed.
async fn dry_run(job: &PurgeJob) -> Outcome {
    let credentials = Credentials::placeholders(job.provider);
    let caches = match job.caches().await {
        Ok(caches) => caches,
        Err(error) => return failed(job, Instant::now(), error),
    };
    match plan::plan(
        job.provider,
        &job.targets,
        &credentials,
        &job.options(caches),
        &job.webhook,
    ) {
        Ok(requests) => {
            // A placeholder in a URL's path is percent-encoded; shown as written.
            let unencoded = |mut text: String| {
                for key in job.provider.secret_keys() {
                    text = text.replace(&format!("%3C{key}%3E"), &format!("<{key}>"));
                }
                text
            };
            Outcome::dry_run(
                job.provider.name(),
                requests
                    .iter()
                    .map(|request| unencoded(request.describe()))
                    .collect(),
                purged_by_kind(&requests),
            )
        }
        Err(error) => failed(job, Instant::now(), error.to_string()),
    }
}

/// What the requests purge, by kind, in the order first purged.
fn purged_by_kind<'a>(requests: impl IntoIterator<Item = &'a plan::PlannedRequest>) -> Vec<String> {
    let mut purged: Vec<plan::Purges> = Vec::new();
    for request in requests {
        match purged
            .iter_mut()
            .find(|done: &&mut plan::Purges| done.one == request.purges.one)
        {
            Some(done) => done.count += request.purges.count,
            None => purged.push(request.purges),
        }
    }
    purged.iter().map(ToString::to_string).collect()
}

pub async fn run(job: &PurgeJob) -> Outcome {
    if job.dry_run {
        return dry_run(job).await;
    }
    let started = Instant::now();
    let credentials = match Credentials::read(job.provider, &job.credentials_dir, &job.secret) {
        Ok(credentials) => credentials,
        Err(error) => return failed(job, started, error.to_string()),
    };
    let secrets = credentials.secrets();
    let caches = match job.caches().await {
        Ok(caches) => caches,
        Err(error) => return failed(job, started, error),
    };
    let requests = match plan::plan(
        job.provider,
        &job.targets,
        &credentials,
        &job.options(caches),
        &job.webhook,
    ) {
        Ok(requests) => requests,
        Err(error) => return failed(job, started, error.to_string()),
    };
    let hosts: Vec<String> = requests
        .iter()
        .filter_map(|request| reqwest::Url::parse(&request.url).ok())
        .filter_map(|url| url.host_str().map(str::to_owned))
        .collect();
    let client = match Client::new(job.limits, &job.network, &hosts) {
        Ok(client) => client,
        Err(error) => return failed(job, started, error.to_string()),
    };

    let mut outcome = Outcome {
        provider: job.provider.name().to_owned(),
        result: "purged".to_owned(),
        requests: 0,
        attempts: 0,
        purged: Vec::new(),
        ids: Vec::new(),
        seconds: 0.0,
        failure: None,
        would_send: Vec::new(),
    };
    let mut accepted = 0;
    let mut previous_answered: Option<Instant> = None;
    for request in &requests {
        // A CDN's documented rate, kept (Bunny's). Counted from the answer
        // before, which the CDN sent after the request arrived: so the CDN
        // sees at least the gap between two arrivals, however slow the
        // first connection was.
        if let Some(previous) = previous_answered {
            tokio::time::sleep_until((previous + request.gap).into()).await;
        }
        let answer = client.send(request).await;
        previous_answered = Some(Instant::now());
        outcome.requests += 1;
        outcome.attempts += answer.attempts;
        if let Some(error) = answer.error {
            outcome.result = "failed".to_owned();
            outcome.failure = Some(Failure {
                request: Some(redact(
                    &format!("{} {}", request.method, request.url),
                    &secrets,
                )),
                status: answer.status,
                error: redact(&error, &secrets),
                answer: answer_excerpt(&answer.body, &secrets),
            });
            break;
        }
        accepted += 1;
        outcome.ids.extend(
            ids_in(&answer.body)
                .into_iter()
                .map(|id| redact(&id, &secrets)),
        );
    }
    outcome.purged = purged_by_kind(&requests[..accepted]);
    outcome.ids.truncate(outcome::MAX_IDS);
    outcome.seconds = seconds(started);
    outcome
}
