//! The purge's outcome: one compact JSON object, written as the container's
//! termination message (SPEC §4), which the launcher quotes in its Event.
//! Secrets never reach it: every credential value is redacted from what the
//! CDN answered and from the request it names.

pub use crate::redact::redact;
use serde::{Deserialize, Serialize};

/// The kubelet keeps at most 4,096 bytes of a termination message.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;
const ANSWER_EXCERPT: usize = 600;
pub const MAX_IDS: usize = 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub provider: String,
    /// `purged` or `failed`.
    pub result: String,
    /// Requests sent (the failed one included), and tries in all.
    pub requests: usize,
    pub attempts: u32,
    /// What the accepted requests purged ("30 URLs", "everything").
    pub purged: Vec<String>,
    /// The CDN's ids of the accepted purges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// A dry run's requests, none of them sent: `METHOD URL BODY`, with
    /// `<KEY>` where a credential would be.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub would_send: Vec<String>,
    /// With several providers (layers, SPEC §5): each one's result, in the
    /// order they purge. Then `provider` lists them all, `purged` names
    /// each one's, and `failure` is the failed layer's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerOutcome>,
    /// SPEC §9: what the content purge did, in a line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One layer's result: `purged`, `failed`, `dry-run`, or `not run` (an
/// earlier layer failed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerOutcome {
    pub provider: String,
    pub result: String,
    pub requests: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purged: Vec<String>,
}

/// `result` of a layer after one that failed.
pub const NOT_RUN: &str = "not run";

/// `result` of a dry run.
pub const DRY_RUN: &str = "dry-run";
/// Each request of a dry run is quoted up to this many bytes.
const WOULD_SEND_EXCERPT: usize = 600;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Failure {
    /// `METHOD URL` of the request that failed, if one was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub error: String,
    /// The start of the CDN's answer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub answer: String,
    /// Found before any request, and no retry can mend it (a missing
    /// Secret or key). Not part of the message: its exit code says it.
    #[serde(skip)]
    pub before_sending_for_good: bool,
}

impl Failure {
    /// Whether retrying the purge cannot help: nothing was wrong but the
    /// configuration, or the CDN refused the credentials or the request
    /// itself (a 4xx other than a time-out, too early or too many).
    pub fn is_final(&self) -> bool {
        self.before_sending_for_good
            || self.status.is_some_and(|status| {
                (400..500).contains(&status) && !matches!(status, 408 | 425 | 429)
            })
    }
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.failure.is_none()
    }

    /// Failed in a way no retry of the pod can mend (`Failure::is_final`).
    pub fn failed_for_good(&self) -> bool {
        self.failure.as_ref().is_some_and(Failure::is_final)
    }

    pub fn is_dry_run(&self) -> bool {
        self.result == DRY_RUN
    }

    /// What a dry run reports: the requests it would have sent, in order.
    pub fn dry_run(provider: &str, would_send: Vec<String>, purged: Vec<String>) -> Outcome {
        Outcome {
            provider: provider.to_owned(),
            result: DRY_RUN.to_owned(),
            requests: 0,
            attempts: 0,
            purged,
            ids: Vec::new(),
            seconds: 0.0,
            failure: None,
            would_send: would_send
                .iter()
                .map(|request| excerpt(request, WOULD_SEND_EXCERPT))
                .collect(),
            layers: Vec::new(),
            content: None,
        }
    }

    /// The outcome of several layers' outcomes, in order (one layer's is its own).
    pub fn of_layers(mut outcomes: Vec<Outcome>, not_run: &[&str], seconds: f64) -> Outcome {
        if outcomes.len() == 1 && not_run.is_empty() {
            let mut outcome = outcomes.remove(0);
            outcome.seconds = seconds;
            return outcome;
        }
        let mut layers: Vec<LayerOutcome> = outcomes
            .iter()
            .map(|outcome| LayerOutcome {
                provider: outcome.provider.clone(),
                result: outcome.result.clone(),
                requests: outcome.requests,
                purged: outcome.purged.clone(),
            })
            .collect();
        layers.extend(not_run.iter().map(|provider| LayerOutcome {
            provider: (*provider).to_owned(),
            result: NOT_RUN.to_owned(),
            requests: 0,
            purged: Vec::new(),
        }));
        let failed = outcomes.iter().find(|outcome| outcome.failure.is_some());
        Outcome {
            provider: layers
                .iter()
                .map(|layer| layer.provider.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            result: failed
                .or(outcomes.first())
                .map_or_else(|| "failed".to_owned(), |outcome| outcome.result.clone()),
            requests: outcomes.iter().map(|outcome| outcome.requests).sum(),
            attempts: outcomes.iter().map(|outcome| outcome.attempts).sum(),
            purged: outcomes
                .iter()
                .flat_map(|outcome| {
                    outcome
                        .purged
                        .iter()
                        .map(|purged| format!("{}: {purged}", outcome.provider))
                })
                .collect(),
            ids: outcomes
                .iter()
                .flat_map(|outcome| outcome.ids.iter().cloned())
                .take(MAX_IDS)
                .collect(),
            seconds,
            failure: failed
                .and_then(|outcome| outcome.failure.clone())
                .map(|failure| Failure {
                    error: format!(
                        "{}: {}",
                        failed.map_or("", |outcome| outcome.provider.as_str()),
                        failure.error
                    ),
                    ..failure
                }),
            would_send: outcomes
                .iter()
                .flat_map(|outcome| outcome.would_send.iter().cloned())
                .collect(),
            layers,
            content: None,
        }
    }

    /// "purged 30 URLs, 2 tags", or by layer: "http purged 2 URL purges,
    /// then cloudflare purged 1 URL".
    fn what_was_purged(&self) -> String {
        if self.layers.is_empty() {
            return format!("purged {}", self.purged.join(", "));
        }
        self.layers
            .iter()
            .filter(|layer| !layer.purged.is_empty())
            .map(|layer| format!("{} purged {}", layer.provider, layer.purged.join(", ")))
            .collect::<Vec<_>>()
            .join(", then ")
    }

    /// The outcome a termination message holds, if it holds one (a
    /// container that died before writing it leaves its last lines).
    pub fn from_message(message: &str) -> Option<Outcome> {
        serde_json::from_str(message.trim()).ok()
    }

    /// In words, for the launcher's Event: what was purged, with the CDN's
    /// ids, or what failed, with the CDN's answer.
    pub fn summary(&self) -> String {
        let summary = self.summary_of_layers();
        match &self.content {
            Some(content) => [summary.as_str(), "; ", content].concat(),
            None => summary,
        }
    }

    fn summary_of_layers(&self) -> String {
        let requests = match self.requests {
            1 => "1 request".to_owned(),
            n => format!("{n} requests"),
        };
        if self.is_dry_run() {
            let count = match self.would_send.len() {
                1 => "1 request".to_owned(),
                n => format!("{n} requests"),
            };
            return format!(
                "dry run, nothing sent: it would have purged {} with {count}: {}",
                match self.layers.is_empty() {
                    true => self.purged.join(", "),
                    false => self.what_was_purged().replace(" purged ", " "),
                },
                self.would_send.join("; ")
            );
        }
        let mut text = match &self.failure {
            None => format!(
                "{requests} in {}s: {}",
                self.seconds,
                self.what_was_purged()
            ),
            Some(failure) => {
                let mut text = failure.error.clone();
                if let Some(request) = &failure.request {
                    text = format!("{request}: {text}");
                }
                if !self.purged.is_empty() && self.layers.is_empty() {
                    text.push_str(&format!(" (after purging {})", self.purged.join(", ")));
                } else if !self.purged.is_empty() {
                    text.push_str(&format!(" (after {})", self.what_was_purged()));
                }
                if !failure.answer.is_empty() {
                    text.push_str(&format!("; the CDN answered: {}", failure.answer));
                }
                let not_run: Vec<&str> = self
                    .layers
                    .iter()
                    .filter(|layer| layer.result == NOT_RUN)
                    .map(|layer| layer.provider.as_str())
                    .collect();
                if !not_run.is_empty() {
                    text.push_str(&format!(
                        "; not run, as an earlier layer failed: {}",
                        not_run.join(", ")
                    ));
                }
                text
            }
        };
        if self.failure.is_none() && !self.ids.is_empty() {
            text.push_str(&format!(" (purge ids {})", self.ids.join(", ")));
        }
        text
    }

    /// The termination message: compact JSON within the kubelet's limit.
    /// The failed request and the error are bounded; the CDN's answer, then
    /// the ids, are shortened until it fits.
    pub fn to_message(&self) -> String {
        let mut outcome = self.clone();
        if let Some(failure) = outcome.failure.as_mut() {
            failure.request = failure
                .request
                .as_deref()
                .map(|request| excerpt(request, 300));
            failure.error = excerpt(&failure.error, 600);
        }
        loop {
            let text = serde_json::to_string(&outcome).unwrap_or_default();
            if text.len() <= TERMINATION_MESSAGE_LIMIT {
                return text;
            }
            match outcome
                .failure
                .as_mut()
                .filter(|failure| !failure.answer.is_empty())
            {
                Some(failure) if failure.answer.len() > 32 => {
                    failure.answer = excerpt(&failure.answer, failure.answer.len() / 2);
                }
                Some(failure) => failure.answer.clear(),
                None if !outcome.ids.is_empty() => outcome.ids.truncate(outcome.ids.len() / 2),
                // A dry run keeps its first requests, and says how many it left out.
                None if quoted_requests(&outcome.would_send) > 1 => {
                    let total = self.would_send.len();
                    let kept = quoted_requests(&outcome.would_send) / 2;
                    outcome.would_send.truncate(kept);
                    outcome
                        .would_send
                        .push(format!("… and {} more", total - kept));
                }
                // Bounded by then: a few kinds of target, the excerpts above.
                None => return text,
            }
        }
    }
}

/// The requests a dry run's list still quotes (not its "… and N more").
fn quoted_requests(would_send: &[String]) -> usize {
    would_send
        .iter()
        .filter(|request| !request.starts_with("… and "))
        .count()
}

/// At most `limit` bytes of `text`, cut at a character boundary, `…` marking the cut.
pub fn excerpt(text: &str, limit: usize) -> String {
    let text = text.trim();
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

pub fn answer_excerpt(answer: &str, secrets: &[&str]) -> String {
    excerpt(&redact(answer, secrets), ANSWER_EXCERPT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which failures fail the Job at once (exit code 2) and which the Job
    /// retries: a CDN's refusal of the request or the credentials is final;
    /// a time-out, "too early", a rate limit, a 5xx or a network error is not.
    #[test]
    fn a_refusal_or_a_missing_credential_is_final_and_the_rest_is_retried() {
        let with_status = |status: Option<u16>| Failure {
            status,
            error: "x".into(),
            ..Failure::default()
        };
        for (status, is_final) in [
            (Some(400), true),
            (Some(401), true),
            (Some(403), true),
            (Some(404), true),
            (Some(408), false),
            (Some(425), false),
            (Some(429), false),
            (Some(500), false),
            (Some(503), false),
            (None, false),
        ] {
            assert_eq!(with_status(status).is_final(), is_final, "{status:?}");
        }
        let missing_secret = Failure {
            before_sending_for_good: true,
            ..with_status(None)
        };
        assert!(missing_secret.is_final());
        // The mark is the exit code's, not the message's.
        assert_eq!(
            serde_json::to_value(&missing_secret).unwrap(),
            serde_json::json!({"error": "x"})
        );
    }

    #[test]
    fn the_message_fits_the_kubelets_limit() {
        let outcome = Outcome {
            provider: "cloudflare".into(),
            result: "failed".into(),
            requests: 1,
            attempts: 6,
            purged: vec![],
            ids: vec![],
            seconds: 12.5,
            would_send: vec![],
            layers: vec![],
            content: None,
            failure: Some(Failure {
                request: Some(
                    "POST https://api.cloudflare.com/client/v4/zones/[redacted]/purge_cache".into(),
                ),
                status: Some(503),
                error: "HTTP 503".into(),
                answer: "é".repeat(5000),
                ..Failure::default()
            }),
        };
        let message = outcome.to_message();
        assert!(
            message.len() <= TERMINATION_MESSAGE_LIMIT,
            "{}",
            message.len()
        );
        let read: serde_json::Value = serde_json::from_str(&message).unwrap();
        assert_eq!(read["failure"]["status"], 503);
        assert!(read["failure"]["answer"].as_str().unwrap().ends_with('…'));
        assert_eq!(
            Outcome::from_message(&message)
                .unwrap()
                .failure
                .unwrap()
                .status,
            Some(503)
        );
    }

    #[test]
    fn a_dry_run_says_what_it_would_have_sent() {
        let outcome = Outcome::dry_run(
            "cloudflare",
            vec![
                r#"POST https://api.cloudflare.com/client/v4/zones/<CLOUDFLARE_ZONE_ID>/purge_cache {"tags":["shop"]}"#
                    .into(),
            ],
            vec!["1 tag".into()],
        );
        assert!(outcome.succeeded() && outcome.is_dry_run());
        assert_eq!(
            outcome.summary(),
            r#"dry run, nothing sent: it would have purged 1 tag with 1 request: POST https://api.cloudflare.com/client/v4/zones/<CLOUDFLARE_ZONE_ID>/purge_cache {"tags":["shop"]}"#
        );
        let read = Outcome::from_message(&outcome.to_message()).unwrap();
        assert_eq!(read, outcome);
    }

    #[test]
    fn a_long_dry_run_keeps_its_first_requests_within_the_limit() {
        let requests: Vec<String> = (0..40)
            .map(|batch| {
                format!(
                    "POST https://api.example.test/purge {{\"batch\":{batch},\"files\":\"{}\"}}",
                    "x".repeat(400)
                )
            })
            .collect();
        let message =
            Outcome::dry_run("cloudflare", requests, vec!["1200 URLs".into()]).to_message();
        assert!(
            message.len() <= TERMINATION_MESSAGE_LIMIT,
            "{}",
            message.len()
        );
        let read = Outcome::from_message(&message).unwrap();
        assert!(read.would_send[0].contains(r#""batch":0"#), "{message}");
        let last = read.would_send.last().unwrap();
        assert_eq!(
            last,
            &format!("… and {} more", 40 - (read.would_send.len() - 1))
        );
    }

    #[test]
    fn the_summary_says_what_was_purged_or_what_the_cdn_answered() {
        let purged = Outcome::from_message(
            r#"{"provider":"cloudflare","result":"purged","requests":2,"attempts":3,"purged":["30 URLs","2 tags"],"ids":["a1","b2"],"seconds":1.4}"#,
        )
        .unwrap();
        assert_eq!(
            purged.summary(),
            "2 requests in 1.4s: purged 30 URLs, 2 tags (purge ids a1, b2)"
        );
        let failed = Outcome::from_message(
            r#"{"provider":"fastly","result":"failed","requests":2,"attempts":2,"purged":["1 URL"],"seconds":0.3,
                "failure":{"request":"POST https://api.fastly.com/service/[redacted]/purge","status":401,"error":"HTTP 401",
                "answer":"{\"msg\":\"Provided credentials are missing or invalid\"}"}}"#,
        )
        .unwrap();
        assert_eq!(
            failed.summary(),
            "POST https://api.fastly.com/service/[redacted]/purge: HTTP 401 (after purging 1 URL); \
             the CDN answered: {\"msg\":\"Provided credentials are missing or invalid\"}"
        );
        assert_eq!(
            Outcome::from_message("curl: (6) Could not resolve host"),
            None
        );
    }

    fn layer(provider: &str, result: &str, purged: &[&str], failure: Option<Failure>) -> Outcome {
        Outcome {
            provider: provider.into(),
            result: result.into(),
            requests: purged.len() + usize::from(failure.is_some()),
            attempts: 1,
            purged: purged.iter().map(|purged| (*purged).to_owned()).collect(),
            ids: Vec::new(),
            seconds: 0.1,
            failure,
            would_send: Vec::new(),
            layers: Vec::new(),
            content: None,
        }
    }

    /// Layers: the message lists each layer's result in order, the Event
    /// says what each purged, which failed, and which did not run.
    #[test]
    fn a_layered_outcome_gives_each_layers_result() {
        let http = layer("http", "purged", &["2 URL purges"], None);
        let only = Outcome::of_layers(vec![http.clone()], &[], 0.5);
        assert!(only.layers.is_empty(), "one layer keeps the plain outcome");
        let both = Outcome::of_layers(
            vec![
                http.clone(),
                layer("cloudflare", "purged", &["1 URL"], None),
            ],
            &[],
            0.5,
        );
        let message = both.to_message();
        assert!(
            message.contains(r#""layers":[{"provider":"http","result":"purged","requests":1,"purged":["2 URL purges"]},{"provider":"cloudflare","result":"purged","requests":1,"purged":["1 URL"]}]"#),
            "{message}"
        );
        assert_eq!(
            Outcome::from_message(&message).unwrap().summary(),
            "2 requests in 0.5s: http purged 2 URL purges, then cloudflare purged 1 URL"
        );
        let refused = Failure {
            request: Some(
                "POST https://api.cloudflare.com/client/v4/zones/[redacted]/purge_cache".into(),
            ),
            status: Some(403),
            error: "HTTP 403".into(),
            answer: "{\"success\":false}".into(),
            before_sending_for_good: false,
        };
        let failed = Outcome::of_layers(
            vec![http, layer("cloudflare", "failed", &[], Some(refused))],
            &["fastly"],
            0.7,
        );
        assert!(!failed.succeeded());
        assert!(failed.failed_for_good());
        assert_eq!(failed.provider, "http, cloudflare, fastly");
        assert_eq!(
            failed.summary(),
            "POST https://api.cloudflare.com/client/v4/zones/[redacted]/purge_cache: cloudflare: HTTP 403 \
             (after http purged 2 URL purges); the CDN answered: {\"success\":false}; \
             not run, as an earlier layer failed: fastly"
        );
    }
}
