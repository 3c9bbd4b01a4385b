//! The purge's HTTP client: rustls with the public roots compiled in, a
//! connect and a per-request time-out, and retries with exponential back-off
//! and jitter that honour `Retry-After` on 429 and 503, all within a total
//! budget that ends before the Job's deadline.

use crate::request::{PlannedRequest, Signer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The limits of one purge. The policy counts on `request` and `budget`
/// when it checks `activeDeadlineSeconds` (SPEC §6).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connect: Duration,
    pub request: Duration,
    /// Every request with its retries ends within this, from the start.
    pub budget: Duration,
    /// The first back-off; it doubles up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Tries of one request at most: a CDN that keeps failing fails the
    /// pod, and the Job's backoffLimit decides whether another pod tries.
    pub max_attempts: u32,
    /// When the purge started: the budget counts from here for every
    /// client, the identity look-ups' too, so that all of it ends before
    /// the Job's deadline.
    pub started: Instant,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(60),
            budget: Duration::from_secs(crate::options::PURGE_BUDGET_SECONDS.unsigned_abs()),
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_attempts: 6,
            started: Instant::now(),
        }
    }
}

/// How the client reaches the CDNs. The defaults are the real Internet;
/// the tests (only) point every host at the CDN double and trust its CA.
#[derive(Debug, Clone, Default)]
pub struct Network {
    /// PEM certificates trusted besides the public roots.
    pub extra_roots_pem: Option<Vec<u8>>,
    /// Connect to this address whatever the host (TLS and `Host` unchanged).
    pub connect_to: Option<SocketAddr>,
    /// Registries reached at another `host:port` (a test registry standing
    /// for a cloud's, whose name decides the identity the purge reads it
    /// with): (name, address).
    pub registry_aliases: Vec<(String, String)>,
}

/// What the CDN answered to one request, after its retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: Option<u16>,
    pub body: String,
    pub attempts: u32,
    /// Why it failed: a status that is not 2xx, a time-out, a refused
    /// connection, the budget spent. None when it succeeded.
    pub error: Option<String>,
    /// `Retry-After` of a successful answer: when to ask again about a
    /// purge in progress (Azure Resource Manager's operations say).
    pub retry_after: Option<Duration>,
    /// The value of the request's `id_header` in the successful answer.
    pub id: Option<String>,
}

/// One try's answer, before it is judged.
struct Reply {
    status: u16,
    retry_after: Option<Duration>,
    id: Option<String>,
    body: String,
}

impl Answer {
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

pub struct Client {
    http: reqwest::Client,
    limits: Limits,
}

/// The most of an answer's body that is read: an answer is a few hundred
/// bytes of JSON or XML, and what the outcome quotes is an excerpt; a
/// larger one (a misdirected download, an endless stream) is cut here, not
/// held whole in memory.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the extra CA certificates are not PEM: {0}")]
    Roots(String),
    #[error("the HTTP client cannot be built: {0}")]
    Build(String),
}

impl Client {
    pub fn new(limits: Limits, network: &Network, hosts: &[String]) -> Result<Client, ClientError> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(pem) = &network.extra_roots_pem {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject as _;
            for certificate in CertificateDer::pem_slice_iter(pem) {
                let certificate =
                    certificate.map_err(|error| ClientError::Roots(error.to_string()))?;
                roots
                    .add(certificate)
                    .map_err(|error| ClientError::Roots(error.to_string()))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|error| ClientError::Build(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(limits.connect)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cache-buster/", env!("CARGO_PKG_VERSION")));
        if let Some(address) = network.connect_to {
            for host in hosts {
                builder = builder.resolve(host, address);
            }
        }
        let http = builder
            .build()
            .map_err(|error| ClientError::Build(error.to_string()))?;
        Ok(Client { http, limits })
    }

    /// What is left of the purge's budget, counted from its start: each
    /// layer and each identity look-up has what the ones before left.
    pub fn remaining(&self) -> Duration {
        self.limits
            .budget
            .saturating_sub(self.limits.started.elapsed())
    }

    /// Sends `request`, retrying what may succeed later, until it succeeds,
    /// fails for good, or the budget is spent.
    pub async fn send(&self, request: &PlannedRequest) -> Answer {
        // A dot segment would be resolved away by the URL parser, and the
        // request (with its key) would reach another path of the API than
        // the one planned: never sent.
        let path = crate::request::without_scheme(&request.url)
            .split_once('/')
            .map_or("", |(_, path)| path);
        if crate::target_checks::has_dot_segment(path) {
            return Answer {
                status: None,
                body: String::new(),
                attempts: 0,
                error: Some(
                    "not sent: its path has a dot segment (. or ..), which would send it to another path of the API"
                        .to_owned(),
                ),
                retry_after: None,
                id: None,
            };
        }
        let mut attempts = 0;
        let mut backoff = self.limits.first_backoff;
        loop {
            attempts += 1;
            let remaining = self.remaining();
            let timeout = self.limits.request.min(remaining);
            let (status, body, error, retry_after) = match self.attempt(request, timeout).await {
                Ok(reply) if (200..300).contains(&reply.status) => {
                    return Answer {
                        status: Some(reply.status),
                        body: reply.body,
                        attempts,
                        error: None,
                        retry_after: reply.retry_after,
                        id: reply.id,
                    };
                }
                Ok(Reply {
                    status,
                    retry_after,
                    body,
                    ..
                }) => {
                    let waited_out = matches!(status, 400 | 403)
                        && request
                            .waits_out
                            .is_some_and(|code| names_error(&body, code));
                    let retryable = waited_out || matches!(status, 429 | 500 | 502 | 503 | 504);
                    let error = format!("HTTP {status}");
                    if !retryable {
                        return Answer {
                            status: Some(status),
                            body,
                            attempts,
                            error: Some(error),
                            retry_after: None,
                            id: None,
                        };
                    }
                    // Retry-After counts on 429 and 503 only (RFC 9110).
                    let honoured = matches!(status, 429 | 503).then_some(retry_after).flatten();
                    (Some(status), body, error, honoured)
                }
                Err(error) => (None, String::new(), error, None),
            };
            if attempts >= self.limits.max_attempts {
                return Answer {
                    status,
                    body,
                    attempts,
                    error: Some(format!("{error}; gave up after {attempts} tries")),
                    retry_after: None,
                    id: None,
                };
            }
            let wait = retry_after.unwrap_or_else(|| jittered(backoff));
            backoff = (backoff * 2).min(self.limits.max_backoff);
            if wait >= self.remaining() {
                let why = match retry_after {
                    Some(asked) => format!(
                        "{error}; the CDN asked to retry after {}s, past the purge's budget of {}s",
                        asked.as_secs(),
                        self.limits.budget.as_secs()
                    ),
                    None => format!(
                        "{error}; no time left to retry within the purge's budget of {}s",
                        self.limits.budget.as_secs()
                    ),
                };
                return Answer {
                    status,
                    body,
                    attempts,
                    error: Some(why),
                    retry_after: None,
                    id: None,
                };
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// One try: (status, Retry-After, body), or why there is no answer.
    async fn attempt(&self, request: &PlannedRequest, timeout: Duration) -> Result<Reply, String> {
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|error| error.to_string())?;
        let mut builder = self.http.request(method, &request.url).timeout(timeout);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_ref(), value);
        }
        // Each try is signed anew: its timestamp (and EdgeGrid's nonce) are fresh.
        if let Some(signer) = &request.signed_by {
            let url = reqwest::Url::parse(&request.url).map_err(|error| error.to_string())?;
            let host = url.host_str().unwrap_or_default();
            let body = request.body.as_deref().unwrap_or_default().as_bytes();
            match signer {
                Signer::EdgeGrid(signer) => {
                    let path = match url.query() {
                        Some(query) => format!("{}?{query}", url.path()),
                        None => url.path().to_owned(),
                    };
                    let authorization = signer.authorization(
                        request.method,
                        host,
                        &path,
                        body,
                        &crate::edgegrid::timestamp_now(),
                        &crate::edgegrid::nonce(),
                    );
                    builder = builder.header("Authorization", authorization);
                }
                Signer::SigV4(signer) => {
                    for (name, value) in signer.headers(
                        request.method,
                        host,
                        url.path(),
                        url.query().unwrap_or_default(),
                        body,
                        &crate::sigv4::amz_date_now(),
                    ) {
                        builder = builder.header(name, value);
                    }
                }
            }
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let response = builder
            .send()
            .await
            .map_err(|error| describe(error, timeout))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| retry_after(value, SystemTime::now()));
        let id = request
            .id_header
            .and_then(|name| response.headers().get(name))
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = bounded_body(response, timeout).await?;
        Ok(Reply {
            status,
            retry_after,
            id,
            body,
        })
    }
}

/// The body's first [`MAX_BODY_BYTES`] as text; the rest is not read.
async fn bounded_body(
    mut response: reqwest::Response,
    timeout: Duration,
) -> Result<String, String> {
    let mut body: Vec<u8> = Vec::new();
    while body.len() < MAX_BODY_BYTES {
        match response
            .chunk()
            .await
            .map_err(|error| describe(error, timeout))?
        {
            Some(chunk) => body.extend_from_slice(&chunk),
            None => break,
        }
    }
    body.truncate(MAX_BODY_BYTES);
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// A transport error in words, without the URL (which may hold a secret;
/// the caller names the request).
fn describe(error: reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        format!("no answer within {}s", timeout.as_secs())
    } else if error.is_connect() {
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&error);
        let mut cause = String::new();
        while let Some(inner) = source {
            cause = inner.to_string();
            source = inner.source();
        }
        format!("cannot connect ({cause})")
    } else {
        error.without_url().to_string()
    }
}

/// The hosts of `urls`, each once: what a client resolves to the test
/// network's double.
pub fn hosts_of<'a>(urls: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for host in urls
        .into_iter()
        .filter_map(|url| reqwest::Url::parse(url).ok())
        .filter_map(|url| url.host_str().map(str::to_owned))
    {
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    hosts
}

/// `Retry-After` as seconds or as an HTTP date (RFC 9110 §10.2.3).
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or_default())
}

/// Between half and all of `backoff`, so that Jobs failing together do not
/// retry together.
fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// Whether an error answer names `code`: AWS's `<Code>` (CloudFront's
/// TooManyInvalidationsInProgress, a 400), or Google's `reason`
/// (rateLimitExceeded, a 403).
pub fn names_error(body: &str, code: &str) -> bool {
    if body.contains(&format!("<Code>{code}</Code>")) {
        return true;
    }
    serde_json::from_str::<serde_json::Value>(body).is_ok_and(|answer| {
        answer["error"]["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|error| error["reason"] == code)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is waited out as a rate limit: CloudFront's code in its XML,
    /// Google's reason in its JSON; nothing else.
    #[test]
    fn rate_limit_answers_are_told_by_their_code() {
        assert!(names_error(
            "<ErrorResponse><Error><Code>TooManyInvalidationsInProgress</Code></Error></ErrorResponse>",
            "TooManyInvalidationsInProgress"
        ));
        let google = r#"{"error":{"code":403,"message":"Rate Limit Exceeded","errors":[{"message":"Rate Limit Exceeded","domain":"usageLimits","reason":"rateLimitExceeded"}]}}"#;
        assert!(names_error(google, "rateLimitExceeded"));
        let forbidden = google.replace("rateLimitExceeded", "forbidden");
        assert!(!names_error(&forbidden, "rateLimitExceeded"));
        assert!(!names_error("rateLimitExceeded", "rateLimitExceeded"));
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_a_date() {
        let now = httpdate::parse_http_date("Fri, 04 Dec 2026 07:00:00 GMT").unwrap();
        assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Fri, 04 Dec 2026 07:00:05 GMT", now),
            Some(Duration::from_secs(5))
        );
        // A date already past: retry now.
        assert_eq!(
            retry_after("Fri, 04 Dec 2026 06:59:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
    }

    /// A planned URL with a dot segment is not sent: the parser would send
    /// it, key and all, to another path of the API.
    #[tokio::test]
    async fn a_request_whose_path_would_move_is_not_sent() {
        let client = Client::new(Limits::default(), &Network::default(), &[]).unwrap();
        for url in [
            "https://api.fastly.com/purge/www.example.com/../../service/x/purge_all",
            "https://api.fastly.com/purge/www.example.com/%2E%2e/x",
        ] {
            let request = PlannedRequest::fetching(url.to_owned(), Vec::new(), None, "x");
            let answer = client.send(&request).await;
            assert_eq!(answer.attempts, 0, "{url}");
            assert!(answer.error.unwrap().starts_with("not sent"), "{url}");
        }
    }

    /// A server on loopback that answers 200 with a body that never ends.
    fn endless_answer() -> SocketAddr {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let _ = stream.read(&mut [0; 4096]);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
                );
                let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
                while stream.write_all(chunk.as_bytes()).is_ok() {}
            }
        });
        address
    }

    fn fetching(address: SocketAddr) -> PlannedRequest {
        PlannedRequest::fetching(format!("http://{address}/"), Vec::new(), None, "a test")
    }

    /// An answer is read up to a bound, never whole: an endless one still
    /// ends the request, with its first 256 KiB.
    #[tokio::test]
    async fn an_endless_answer_is_read_up_to_its_bound() {
        let limits = Limits {
            request: Duration::from_secs(20),
            ..Limits::default()
        };
        let client = Client::new(limits, &Network::default(), &[]).unwrap();
        let answer = client.send(&fetching(endless_answer())).await;
        assert_eq!(answer.error, None);
        assert_eq!(answer.status, Some(200));
        assert_eq!(answer.body.len(), MAX_BODY_BYTES);
    }

    /// Every client counts the budget from the purge's start: one made
    /// when it is spent (a later layer's identity look-up) sends nothing.
    #[test]
    fn a_client_made_late_has_only_what_is_left_of_the_budget() {
        let limits = Limits {
            budget: Duration::from_secs(30),
            started: Instant::now() - Duration::from_secs(20),
            ..Limits::default()
        };
        let client = Client::new(limits, &Network::default(), &[]).unwrap();
        let left = client.remaining();
        assert!(
            left <= Duration::from_secs(10) && left > Duration::from_secs(9),
            "{left:?}"
        );
    }

    #[test]
    fn the_jitter_stays_between_half_and_all_of_the_back_off() {
        for _ in 0..1000 {
            let wait = jittered(Duration::from_secs(8));
            assert!(
                wait >= Duration::from_secs(4) && wait <= Duration::from_secs(8),
                "{wait:?}"
            );
        }
    }
}
