//! `purge`, the companion Job's container (SPEC §4, §5): reads the
//! credentials of every layer, then purges layer by layer, each provider's
//! requests one after the other; a layer that fails for good stops the
//! layers after it. The outcome gives each layer's result.

use crate::catalog::Info;
use crate::cdn::{Cdn, Completion, Layer, NotPrepared, Options};
use crate::client::{Answer, Client, hosts_of};
use crate::content_purge::ContentPurge;
use crate::credentials::Credentials;
use crate::outcome::{Failure, Outcome, answer_excerpt, redact};
use crate::providers::Provider;
use crate::registry_identity::RegistryIdentity;
use crate::request::{PlannedRequest, Purges};
use crate::targets::PurgeTargets;
use std::borrow::Cow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The bounds of a poll interval a CDN asks for with `Retry-After`.
const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// Everything one purge needs, from the container's argv.
#[derive(Debug, Clone)]
pub struct PurgeJob {
    /// The layers, in the order they purge (origin caches first).
    pub providers: Vec<Provider>,
    pub targets: PurgeTargets,
    pub options: Options,
    /// Where the Secret is mounted, and its name (for the messages).
    pub credentials_dir: PathBuf,
    pub secret: String,
    /// Send nothing; report what would have been sent.
    pub dry_run: bool,
    /// SPEC §9: the files that changed in the image, with `--content`.
    pub content: Option<ContentPurge>,
}

impl PurgeJob {
    fn names(&self) -> String {
        self.providers
            .iter()
            .map(|provider| provider.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn failed(provider: &str, started: Instant, error: String, for_good: bool) -> Outcome {
    Outcome {
        provider: provider.to_owned(),
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
        layers: Vec::new(),
        content: None,
    }
}

/// A layer with nothing to purge with: its identity provider's status
/// decides, as a CDN's does, whether a retry of the pod may mend it.
fn not_prepared(provider: &str, started: Instant, error: NotPrepared, secrets: &[&str]) -> Outcome {
    let mut outcome = failed(
        provider,
        started,
        redact(&error.error, secrets),
        error.for_good,
    );
    if let Some(failure) = &mut outcome.failure {
        failure.status = error.status;
    }
    outcome
}

fn seconds(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 10.0).round() / 10.0
}

/// The Job's workload identities that its layers' clouds' registries take
/// (SPEC §9): none in a dry run, which asks for no token.
fn registry_identities(job: &PurgeJob, credentials: &Credentials) -> Vec<RegistryIdentity> {
    if job.dry_run {
        return Vec::new();
    }
    job.providers
        .iter()
        .filter_map(|provider| provider.cdn().registry_identity(&job.options, credentials))
        .collect()
}

pub async fn run(job: &PurgeJob) -> Outcome {
    let started = Instant::now();
    let rows: Vec<&Info> = job
        .providers
        .iter()
        .map(|provider| provider.info())
        .collect();
    let credentials = if job.dry_run {
        Credentials::placeholders(&rows)
    } else {
        match Credentials::read(&rows, &job.credentials_dir, &job.secret) {
            Ok(credentials) => credentials,
            // A missing Secret or key stays missing: the Job fails at once,
            // before any layer is purged.
            Err(error) => return failed(&job.names(), started, error.to_string(), true),
        }
    };
    let content = match &job.content {
        Some(content) => {
            // A third of the budget at most: the purge that follows keeps
            // the rest, so a slow registry never fails the Job.
            let limit = job.options.limits.budget / 3;
            let compare = content.compare(
                &job.options.context,
                registry_identities(job, &credentials),
                &job.options.network,
                job.options.limits.request,
            );
            let compared = tokio::time::timeout(limit, compare)
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "the images were not compared within {} s, a third of the purge's budget",
                        limit.as_secs()
                    ))
                });
            Some(content.plan(&job.providers, compared))
        }
        None => None,
    };
    let mut outcomes = Vec::new();
    let mut not_run = Vec::new();
    for (index, provider) in job.providers.iter().enumerate() {
        let targets = match &content {
            Some((addition, _)) => Cow::Owned(addition.apply(*provider, &job.targets)),
            None => Cow::Borrowed(&job.targets),
        };
        let outcome = match job.dry_run {
            true => dry_run(job, *provider, &targets, &credentials).await,
            false => purge(job, *provider, &targets, &credentials).await,
        };
        let stop = outcome.failure.is_some();
        outcomes.push(outcome);
        if stop {
            not_run = job
                .providers
                .iter()
                .skip(index + 1)
                .map(|p| p.name())
                .collect();
            break;
        }
    }
    let mut outcome = Outcome::of_layers(outcomes, &not_run, seconds(started));
    outcome.content = content.map(|(_, line)| line);
    outcome
}

/// A dry run of one layer: the same plan, with `<KEY>` for each
/// credential, and nothing read (but a self-hosted cache's endpoints),
/// sent or needed.
async fn dry_run(
    job: &PurgeJob,
    provider: Provider,
    targets: &PurgeTargets,
    credentials: &Credentials,
) -> Outcome {
    let started = Instant::now();
    let found = match provider
        .cdn()
        .prepare(&job.options, credentials, true)
        .await
    {
        Ok(found) => found,
        Err(error) => return not_prepared(provider.name(), started, error, &[]),
    };
    let layer = Layer {
        targets,
        credentials,
        options: &job.options,
        found: &found,
    };
    match provider.plan(&layer) {
        Ok(requests) => {
            // A placeholder in a URL's path is percent-encoded; shown as written.
            let unencoded = |mut text: String| {
                for key in provider.secret_keys() {
                    text = text.replace(&format!("%3C{key}%3E"), &format!("<{key}>"));
                }
                text
            };
            Outcome::dry_run(
                provider.name(),
                requests
                    .iter()
                    .map(|request| unencoded(request.describe()))
                    .collect(),
                purged_by_kind(&requests),
            )
        }
        Err(refusal) => failed(provider.name(), started, refusal.to_string(), true),
    }
}

/// What the requests purge, by kind, in the order first purged.
fn purged_by_kind<'a>(requests: impl IntoIterator<Item = &'a PlannedRequest>) -> Vec<String> {
    let mut purged: Vec<Purges> = Vec::new();
    for request in requests {
        match purged
            .iter_mut()
            .find(|done: &&mut Purges| done.one == request.purges.one)
        {
            Some(done) => done.count += request.purges.count,
            None => purged.push(request.purges),
        }
    }
    purged.iter().map(ToString::to_string).collect()
}

/// One layer's purge, within what is left of the budget.
async fn purge(
    job: &PurgeJob,
    provider: Provider,
    targets: &PurgeTargets,
    credentials: &Credentials,
) -> Outcome {
    let started = Instant::now();
    let options = &job.options;
    let found = match provider.cdn().prepare(options, credentials, false).await {
        Ok(found) => found,
        Err(error) => {
            return not_prepared(provider.name(), started, error, &credentials.secrets());
        }
    };
    let mut secrets = credentials.secrets();
    secrets.extend(found.secrets.iter().map(String::as_str));
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));

    let layer = Layer {
        targets,
        credentials,
        options,
        found: &found,
    };
    let requests = match provider.plan(&layer) {
        Ok(requests) => requests,
        Err(refusal) => return failed(provider.name(), started, refusal.to_string(), true),
    };
    let hosts = hosts_of(requests.iter().map(|request| request.url.as_str()));
    let client = match Client::new(options.limits, &options.network, &hosts) {
        Ok(client) => client,
        Err(error) => return failed(provider.name(), started, error.to_string(), false),
    };

    let mut outcome = Outcome {
        provider: provider.name().to_owned(),
        result: "purged".to_owned(),
        requests: 0,
        attempts: 0,
        purged: Vec::new(),
        ids: Vec::new(),
        seconds: 0.0,
        failure: None,
        would_send: Vec::new(),
        layers: Vec::new(),
        content: None,
    };
    let mut not_before = Vec::new();
    let accepted = send_all(
        provider.cdn(),
        &client,
        &requests,
        &secrets,
        &mut outcome,
        &mut not_before,
    )
    .await;
    outcome.purged = purged_by_kind(&requests[..accepted]);
    if outcome.failure.is_none() {
        for (index, id) in outcome.ids.clone().into_iter().enumerate() {
            let Some(completion) = provider.cdn().completion(&layer, &id) else {
                break;
            };
            let first_poll = not_before.get(index).copied().flatten();
            if let Err(failure) = wait_completed(
                &client,
                &completion,
                &reported_id(&id),
                first_poll,
                &secrets,
                &mut outcome,
            )
            .await
            {
                outcome.result = "failed".to_owned();
                outcome.failure = Some(failure);
                break;
            }
        }
    }
    outcome.ids = outcome.ids.iter().map(|id| reported_id(id)).collect();
    outcome.ids.truncate(crate::outcome::MAX_IDS);
    outcome.seconds = seconds(started);
    outcome
}

/// Sends the requests in order, paced, until one fails for good; returns
/// how many were accepted. For each id it adds to the outcome, `not_before`
/// gets when the accepting answer's `Retry-After` ends: the CDN asked not
/// to be asked about it before then.
async fn send_all(
    cdn: &dyn Cdn,
    client: &Client,
    requests: &[PlannedRequest],
    secrets: &[&str],
    outcome: &mut Outcome,
    not_before: &mut Vec<Option<Instant>>,
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
        let answered = Instant::now();
        previous_answered = Some(answered);
        let first_poll = answer
            .retry_after
            .map(|asked| answered + asked.clamp(MIN_POLL_INTERVAL, MAX_POLL_INTERVAL));
        outcome.requests += 1;
        outcome.attempts += answer.attempts;
        if let Some(error) = &answer.error {
            outcome.result = "failed".to_owned();
            outcome.failure = Some(failure_of(request, &answer, error, secrets));
            break;
        }
        accepted += 1;
        let Some(header) = request.id_header else {
            outcome.ids.extend(
                cdn.purge_ids(&answer.body)
                    .into_iter()
                    .map(|id| redact(&id, secrets)),
            );
            not_before.resize(outcome.ids.len(), first_poll);
            continue;
        };
        match answer.id.as_deref().map(|id| same_origin(&request.url, id)) {
            Some(Ok(id)) => {
                outcome.ids.push(id);
                not_before.resize(outcome.ids.len(), first_poll);
            }
            Some(Err(elsewhere)) => {
                // Its poll would carry the token: only to the API's own host.
                outcome.result = "failed".to_owned();
                outcome.failure = Some(Failure {
                    error: format!(
                        "its answer's {header} points at {elsewhere}, not at the API it was sent to; not followed"
                    ),
                    ..failure_of(request, &answer, "", secrets)
                });
                break;
            }
            None => {}
        }
    }
    accepted
}

/// `id`, a URL to poll, when it has the scheme, host and port of `url`;
/// else its origin, for the message.
fn same_origin(url: &str, id: &str) -> Result<String, String> {
    let origin = |text: &str| {
        reqwest::Url::parse(text)
            .ok()
            .map(|url| url.origin().ascii_serialization())
    };
    match (origin(url), origin(id)) {
        (Some(sent), Some(poll)) if sent == poll => Ok(id.to_owned()),
        (_, poll) => Err(poll.unwrap_or_else(|| format!("{id:?}"))),
    }
}

/// What the outcome calls a purge: an id that is a URL to poll (Azure's
/// operation) by its last path segment, the operation's own id.
fn reported_id(id: &str) -> String {
    match reqwest::Url::parse(id) {
        Ok(url) => url
            .path_segments()
            .and_then(|mut segments| segments.next_back().map(str::to_owned))
            .filter(|segment| !segment.is_empty())
            .unwrap_or_else(|| id.to_owned()),
        Err(_) => id.to_owned(),
    }
}

fn failure_of(request: &PlannedRequest, answer: &Answer, error: &str, secrets: &[&str]) -> Failure {
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

/// Asks about purge `id` every few seconds until the CDN says it is done
/// (CloudFront: `Completed`), within the purge's budget; the first time
/// not before `first_poll`, when the accepting answer set one (Azure's
/// 202 carries `Retry-After`, "the number of seconds to wait before
/// checking the status").
async fn wait_completed(
    client: &Client,
    completion: &Completion,
    id: &str,
    first_poll: Option<Instant>,
    secrets: &[&str],
    outcome: &mut Outcome,
) -> Result<(), Failure> {
    let poll = &completion.poll;
    if let Some(first_poll) = first_poll {
        let budget_ends = Instant::now() + client.remaining();
        tokio::time::sleep_until(first_poll.min(budget_ends).into()).await;
    }
    loop {
        let answer = client.send(poll).await;
        outcome.attempts += answer.attempts;
        if let Some(error) = &answer.error {
            return Err(failure_of(poll, &answer, error, secrets));
        }
        let status = (completion.status)(&answer.body).unwrap_or(Cow::Borrowed("unknown"));
        if let Some(why) = (completion.failed)(&answer.body) {
            return Err(Failure {
                request: Some(redact(&format!("{} {}", poll.method, poll.url), secrets)),
                status: answer.status,
                error: redact(
                    &format!("{} {id} ended in an error: {why}", completion.what),
                    secrets,
                ),
                answer: answer_excerpt(&answer.body, secrets),
                before_sending_for_good: false,
            });
        }
        if status == completion.done {
            return Ok(());
        }
        // The CDN's own `Retry-After` (Azure Resource Manager's), within reason.
        let interval = answer.retry_after.map_or(completion.interval, |asked| {
            asked.clamp(MIN_POLL_INTERVAL, MAX_POLL_INTERVAL)
        });
        if client.remaining() <= interval {
            return Err(Failure {
                request: Some(redact(&format!("{} {}", poll.method, poll.url), secrets)),
                status: answer.status,
                error: format!(
                    "{} {id} is still {status} at the end of the purge's budget; {}",
                    completion.what, completion.after_budget
                ),
                answer: answer_excerpt(&answer.body, secrets),
                before_sending_for_good: false,
            });
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPERATION: &str = "https://management.azure.com/subscriptions/s/providers/Microsoft.Cdn/locations/global/operationresults/0000-op?api-version=2023-05-01";
    const PURGE: &str = "https://management.azure.com/subscriptions/s/resourceGroups/r/providers/Microsoft.Cdn/profiles/p/afdEndpoints/e/purge?api-version=2023-05-01";

    /// A poll carries the token: only a URL on the API's own origin is
    /// followed.
    #[test]
    fn an_id_from_a_header_is_followed_only_on_the_apis_origin() {
        assert_eq!(same_origin(PURGE, OPERATION), Ok(OPERATION.to_owned()));
        assert_eq!(
            same_origin(PURGE, "https://attacker.example/operationresults/1"),
            Err("https://attacker.example".to_owned())
        );
        assert_eq!(
            same_origin(PURGE, "http://management.azure.com/x"),
            Err("http://management.azure.com".to_owned())
        );
        assert_eq!(
            same_origin(PURGE, "not a url"),
            Err("\"not a url\"".to_owned())
        );
    }

    #[test]
    fn an_id_that_is_a_url_is_reported_by_its_last_segment() {
        assert_eq!(reported_id(OPERATION), "0000-op");
        assert_eq!(
            reported_id("operation-1-invalidate"),
            "operation-1-invalidate"
        );
        assert_eq!(reported_id("I2J0I21TGGT5SM"), "I2J0I21TGGT5SM");
    }
}
