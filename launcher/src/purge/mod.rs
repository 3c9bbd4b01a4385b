//! `purge`, the companion Job's container (SPEC §4, §5): reads the
//! credentials, sends the provider's requests one after the other, stops at
//! the first that fails for good, and reports the outcome.

pub mod aws;
pub mod cloudfront;
pub mod credentials;
pub mod edgegrid;
pub mod endpoints;
pub mod http;
pub mod outcome;
pub mod plan;
pub mod sigv4;

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
    pub fastly_soft_purge: bool,
    pub akamai: AkamaiOptions,
    pub http: HttpJob,
    /// Where the pod's AWS identity is (provider cloudfront).
    pub aws: aws::AwsEnvironment,
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

    fn options(&self, caches: Vec<std::net::SocketAddr>, credentials: &Credentials) -> Options {
        Options {
            cloudflare_batch_size: self.cloudflare_batch_size,
            fastly_soft_purge: self.fastly_soft_purge,
            akamai: self.akamai,
            http: SelfHosted {
                endpoints: caches,
                method: self.http.method,
                tag_header: self.http.tag_header.clone(),
            },
            cloudfront: cloudfront::Invalidations {
                distribution: credentials.value("CLOUDFRONT_DISTRIBUTION_ID").to_owned(),
                job_name: self.webhook.job_name.clone(),
                signer: None,
            },
        }
    }
}

fn failed(job: &PurgeJob, started: Instant, error: String) -> Outcome {
    failed_before_sending(job, started, error, false)
}

/// A failure found before any request; `for_good` when no retry can mend it.
fn failed_before_sending(
    job: &PurgeJob,
    started: Instant,
    error: String,
    for_good: bool,
) -> Outcome {
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
            before_sending_for_good: for_good,
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
        &job.options(caches, &credentials),
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
        // A missing Secret or key stays missing: the Job fails at once.
        Err(error) => return failed_before_sending(job, started, error.to_string(), true),
    };
    let caches = match job.caches().await {
        Ok(caches) => caches,
        Err(error) => return failed(job, started, error),
    };
    let mut options = job.options(caches, &credentials);
    // CloudFront's signing credentials may come from the pod's identity.
    let mut found_secrets: Vec<String> = Vec::new();
    if job.provider == Provider::Cloudfront {
        let sts = [job.aws.sts_host()];
        let resolved = match Client::new(job.limits, &job.network, &sts) {
            Ok(client) => aws::resolve(&credentials, &job.aws, &client, &session_name(job)).await,
            Err(error) => Err(error.to_string()),
        };
        match resolved {
            Ok(resolved) => {
                options.cloudfront.signer = Some(resolved.signer);
                found_secrets = resolved.secrets;
            }
            Err(error) => return failed(job, started, redact(&error, &credentials.secrets())),
        }
    }
    let mut secrets = credentials.secrets();
    secrets.extend(found_secrets.iter().map(String::as_str));
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));

    let requests = match plan::plan(
        job.provider,
        &job.targets,
        &credentials,
        &options,
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
    let accepted = send_all(&client, &requests, &secrets, &mut outcome).await;
    outcome.purged = purged_by_kind(&requests[..accepted]);
    if job.provider == Provider::Cloudfront && outcome.failure.is_none() {
        let ids = outcome.ids.clone();
        for id in &ids {
            let poll = cloudfront::status_request(&options.cloudfront, id);
            if let Err(failure) = wait_completed(&client, &poll, id, &secrets, &mut outcome).await {
                outcome.result = "failed".to_owned();
                outcome.failure = Some(failure);
                break;
            }
        }
    }
    outcome.ids.truncate(outcome::MAX_IDS);
    outcome.seconds = seconds(started);
    outcome
}

/// CloudFront's RoleSessionName: the Job's name, which fits its 64
/// characters and its alphabet.
fn session_name(job: &PurgeJob) -> String {
    match job.webhook.job_name.as_str() {
        "" => "cache-buster".to_owned(),
        name => name.chars().take(64).collect(),
    }
}

/// Sends the requests in order, paced, until one fails for good; returns
/// how many were accepted.
async fn send_all(
    client: &Client,
    requests: &[plan::PlannedRequest],
    secrets: &[&str],
    outcome: &mut Outcome,
) -> usize {
    let mut accepted = 0;
    let mut previous_answered: Option<Instant> = None;
    for request in requests {
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
        if let Some(error) = &answer.error {
            outcome.result = "failed".to_owned();
            outcome.failure = Some(failure_of(request, &answer, error, secrets));
            break;
        }
        accepted += 1;
        outcome.ids.extend(
            ids_in(&answer.body)
                .into_iter()
                .map(|id| redact(&id, secrets)),
        );
    }
    accepted
}

fn failure_of(
    request: &plan::PlannedRequest,
    answer: &http::Answer,
    error: &str,
    secrets: &[&str],
) -> Failure {
    Failure {
        request: Some(redact(
            &format!("{} {}", request.method, request.url),
            secrets,
        )),
        status: answer.status,
        error: redact(error, secrets),
        answer: answer_excerpt(&answer.body, secrets),
        before_sending_for_good: false,
    }
}

/// Asks about invalidation `id` every few seconds until CloudFront says
/// `Completed`, within the purge's budget.
async fn wait_completed(
    client: &Client,
    poll: &plan::PlannedRequest,
    id: &str,
    secrets: &[&str],
    outcome: &mut Outcome,
) -> Result<(), Failure> {
    loop {
        let answer = client.send(poll).await;
        outcome.attempts += answer.attempts;
        if let Some(error) = &answer.error {
            return Err(failure_of(poll, &answer, error, secrets));
        }
        let status = cloudfront::xml_text(&answer.body, "Status").unwrap_or("unknown");
        if status == "Completed" {
            return Ok(());
        }
        if client.remaining() <= cloudfront::POLL_INTERVAL {
            return Err(Failure {
                request: Some(redact(&format!("{} {}", poll.method, poll.url), secrets)),
                status: answer.status,
                error: format!(
                    "invalidation {id} is still {status} at the end of the purge's budget; \
                     CloudFront goes on with it (see the distribution's invalidations)"
                ),
                answer: answer_excerpt(&answer.body, secrets),
                before_sending_for_good: false,
            });
        }
        tokio::time::sleep(cloudfront::POLL_INTERVAL).await;
    }
}
