//! A CDN double: one TLS server on loopback that answers as Cloudflare's
//! `purge_cache`, Fastly's `purge`, `purge_all` and URL `PURGE`, Bunny's
//! `purge` and `purgeCache`, and a purge webhook do, records every request
//! it is sent, and fails on demand.
//!
//! It serves the real host names (`api.cloudflare.com`, `api.fastly.com`, the
//! sites' own hosts) with a certificate of the test CA; the test node's
//! sandboxes trust that CA through their CA bundle and reach the double
//! through their `/etc/hosts`. Nothing in the Job's command is rewritten.

use crate::aws;
use crate::azure;
use crate::ecr;
use crate::edgegrid;
use crate::google;
use crate::pki::Pki;
pub use crate::recorded::Recorded;
use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The loopback address the double listens on (port 443, as the real CDNs).
pub const CDN_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// The host names the double answers for; the test node maps each of them
/// to [`CDN_ADDRESS`] in its sandboxes' `/etc/hosts`.
pub const CDN_HOSTS: &[&str] = &[
    "api.cloudflare.com",
    "api.fastly.com",
    "api.bunny.net",
    AKAMAI_HOST,
    aws::CLOUDFRONT_HOST,
    aws::STS_HOST,
    ecr::API_HOST,
    google::TOKEN_HOST,
    google::COMPUTE_HOST,
    azure::LOGIN_HOST,
    azure::ARM_HOST,
    azure::ACR_HOST,
    "hooks.example.test",
    "shop.example.com",
    "blog.example.com",
    "docs.example.com",
    "news.example.com",
    "www.example.com",
];

/// The Akamai API client's host the double answers for (an `.edgerc`'s
/// `host`), and the credentials it checks every EdgeGrid signature with.
pub const AKAMAI_HOST: &str = "akab-test.luna.akamaiapis.net";
pub const AKAMAI_CLIENT_TOKEN: &str = "akab-client-token-test";
pub const AKAMAI_CLIENT_SECRET: &str = "akamai-client-s3cret-test=";
pub const AKAMAI_ACCESS_TOKEN: &str = "akab-access-token-test";

/// How the double answers the requests a rule matches.
#[derive(Clone, Debug)]
pub enum Failure {
    /// 503 Service Unavailable, for the next `times` requests.
    Unavailable { times: usize },
    /// 429 Too Many Requests with `Retry-After: seconds`, `times` times.
    RateLimited { times: usize, retry_after: u64 },
    /// This 5xx status for every request, with `Retry-After: 1` so a test
    /// does not sit through the purge's whole back-off.
    Permanent { status: u16 },
    /// No answer for this long (past the purge's per-request time-out).
    Hang { duration: Duration },
    /// The usual answer, this long after the request.
    Slow { duration: Duration },
    /// The credential (`Authorization`, `Fastly-Key` or `AccessKey`) is not
    /// this one: the provider's own answer to a wrong or missing credential.
    Credential { expected: String },
}

struct Rule {
    /// Matches requests whose `host + path` contains this text.
    matching: String,
    failure: Failure,
}

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    rules: Vec<Rule>,
    cloudfront: aws::CloudFront,
    google: google::Google,
    azure: azure::Azure,
}

pub struct CdnDouble {
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
    pub address: SocketAddr,
}

impl CdnDouble {
    /// Listens on [`CDN_ADDRESS`]:`port` (443 as root; a free port otherwise
    /// makes a double the sandboxes cannot reach by URL, fine for its own tests).
    pub async fn start(pki: &Pki, port: u16) -> Result<CdnDouble> {
        let served = pki.serving("cdn", CDN_HOSTS)?;
        let certs = CertificateDer::pem_file_iter(&served.cert)
            .context("the CDN double's certificate")?
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_file(&served.key).context("the CDN double's key")?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(SocketAddr::new(CDN_ADDRESS, port))
            .await
            .with_context(|| format!("the CDN double cannot listen on {CDN_ADDRESS}:{port}"))?;
        let address = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let state = shared.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(move |request| answer(state.clone(), request));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(CdnDouble {
            state,
            server,
            address,
        })
    }

    /// The next `times` invalidations of Cloud CDN are refused as Google
    /// refuses too many: 403 `rateLimitExceeded`.
    pub fn rate_limit_google(&self, times: usize) {
        if let Ok(mut state) = self.state.lock() {
            state.google.rate_limited = times;
        }
    }

    /// Azure: the next `times` purges are refused with 429, the next
    /// operation fails, each operation runs this long.
    pub fn azure(&self, times: usize, fail_next: bool, processing: Duration) {
        if let Ok(mut state) = self.state.lock() {
            state.azure.rate_limited = times;
            state.azure.fail_next = fail_next;
            state.azure.processing = processing;
        }
    }

    /// How many invalidations CloudFront made.
    pub fn cloudfront_invalidations(&self) -> usize {
        self.state
            .lock()
            .map(|state| state.cloudfront.invalidations())
            .unwrap_or_default()
    }

    /// How many invalidations CloudFront made of `distribution`.
    pub fn cloudfront_invalidations_of(&self, distribution: &str) -> usize {
        self.state
            .lock()
            .map(|state| state.cloudfront.invalidations_of(distribution))
            .unwrap_or_default()
    }

    /// Requests whose `host + path` contains `matching` answer with `failure`.
    pub fn fail(&self, matching: &str, failure: Failure) {
        if let Ok(mut state) = self.state.lock() {
            state.rules.push(Rule {
                matching: matching.to_owned(),
                failure,
            });
        }
    }

    /// Every request so far whose `host + path` contains `matching`, in the
    /// order they arrived.
    pub fn requests(&self, matching: &str) -> Vec<Recorded> {
        self.state
            .lock()
            .map(|state| {
                state
                    .requests
                    .iter()
                    .filter(|request| {
                        format!("{}{}", request.host, request.path).contains(matching)
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for CdnDouble {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn answer(
    state: Arc<Mutex<State>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let recorded = Recorded::of(request).await?;
    let target = format!("{}{}", recorded.host, recorded.path);
    // Azure plays its own: Entra ID's checks, ARM's operations.
    if [azure::LOGIN_HOST, azure::ARM_HOST, azure::ACR_HOST].contains(&recorded.host.as_str()) {
        let (status, headers, body) = match state.lock() {
            Ok(mut state) => {
                state.requests.push(recorded.clone());
                state.azure.answer(&recorded)
            }
            Err(_) => (500, Vec::new(), String::new()),
        };
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Ok(respond(status, &headers, &body));
    }
    // Google plays its own: the token's JWT, Operations in progress.
    if [google::TOKEN_HOST, google::COMPUTE_HOST].contains(&recorded.host.as_str()) {
        let (status, body) = match state.lock() {
            Ok(mut state) => {
                state.requests.push(recorded.clone());
                state.google.answer(&recorded)
            }
            Err(_) => (500, String::new()),
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Ok(crate::caches::respond(status, "application/json", body));
    }
    if recorded.host == ecr::API_HOST {
        let (status, body) = match state.lock() {
            Ok(mut state) => {
                state.requests.push(recorded.clone());
                ecr::answer(&recorded)
            }
            Err(_) => (500, String::new()),
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Ok(crate::caches::respond(
            status,
            "application/x-amz-json-1.1",
            body,
        ));
    }
    // AWS plays its own answers: signatures, STS, invalidations in progress.
    if [aws::CLOUDFRONT_HOST, aws::STS_HOST].contains(&recorded.host.as_str()) {
        let (status, body) = match state.lock() {
            Ok(mut state) => {
                state.requests.push(recorded.clone());
                if recorded.host == aws::STS_HOST {
                    aws::sts_answer(&recorded)
                } else {
                    state.cloudfront.answer(&recorded)
                }
            }
            Err(_) => (500, String::new()),
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Ok(crate::caches::respond(status, "text/xml", body));
    }
    if recorded.host == AKAMAI_HOST
        && let Err(why) = edgegrid::verify(
            &recorded,
            AKAMAI_CLIENT_TOKEN,
            AKAMAI_CLIENT_SECRET,
            AKAMAI_ACCESS_TOKEN,
        )
    {
        if let Ok(mut state) = state.lock() {
            state.requests.push(recorded.clone());
        }
        return Ok(akamai_denied(&recorded, why));
    }
    let failure = state.lock().ok().and_then(|mut state| {
        state.requests.push(recorded.clone());
        let rule = state
            .rules
            .iter_mut()
            .find(|rule| target.contains(&rule.matching))?;
        match &mut rule.failure {
            Failure::Unavailable { times } | Failure::RateLimited { times, .. } if *times == 0 => {
                None
            }
            Failure::Credential { expected } => {
                let given = recorded
                    .header("authorization")
                    .or_else(|| recorded.header("fastly-key"))
                    .or_else(|| recorded.header("accesskey"))
                    .unwrap_or_default();
                let token = given.strip_prefix("Bearer ").unwrap_or(given);
                (token != expected.as_str()).then(|| rule.failure.clone())
            }
            Failure::Unavailable { times } | Failure::RateLimited { times, .. } => {
                *times -= 1;
                Some(rule.failure.clone())
            }
            other => Some(other.clone()),
        }
    });
    Ok(match failure {
        None => success(&recorded),
        Some(Failure::Unavailable { .. }) => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            &[],
            r#"{"success":false,"errors":[{"code":503,"message":"Service Unavailable"}]}"#,
        ),
        Some(Failure::RateLimited { retry_after, .. }) => respond(
            StatusCode::TOO_MANY_REQUESTS,
            &[("retry-after", &retry_after.to_string())],
            r#"{"success":false,"errors":[{"code":971,"message":"Please wait and consider throttling your request speed"}]}"#,
        ),
        Some(Failure::Permanent { status }) => respond(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &[("retry-after", "1")],
            &format!(
                r#"{{"success":false,"errors":[{{"code":{status},"message":"origin is down for maintenance"}}]}}"#
            ),
        ),
        Some(Failure::Hang { duration }) => {
            tokio::time::sleep(duration).await;
            respond(StatusCode::GATEWAY_TIMEOUT, &[], "")
        }
        Some(Failure::Credential { .. }) => refused(&recorded),
        Some(Failure::Slow { duration }) => {
            tokio::time::sleep(duration).await;
            success(&recorded)
        }
    })
}

/// What each API answers to a wrong or missing credential.
fn refused(request: &Recorded) -> Response<Full<Bytes>> {
    match request.host.as_str() {
        "api.cloudflare.com" => respond(
            StatusCode::FORBIDDEN,
            &[],
            r#"{"success":false,"errors":[{"code":10000,"message":"Authentication error"}],"messages":[],"result":null}"#,
        ),
        "api.fastly.com" => respond(
            StatusCode::UNAUTHORIZED,
            &[],
            r#"{"msg":"Provided credentials are missing or invalid"}"#,
        ),
        "api.bunny.net" => respond(
            StatusCode::UNAUTHORIZED,
            &[],
            r#"{"HttpCode":401,"Message":"Authorization has been denied for this request."}"#,
        ),
        AKAMAI_HOST => akamai_denied(request, "The signature does not match"),
        _ => respond(StatusCode::UNAUTHORIZED, &[], r#"{"error":"unauthorized"}"#),
    }
}

/// What each API answers when the purge is accepted.
fn success(request: &Recorded) -> Response<Full<Bytes>> {
    match (request.host.as_str(), request.method.as_str()) {
        // Cloudflare answers with the purge's id: the double derives one
        // from the request, so each batch has its own.
        ("api.cloudflare.com", _) => respond(
            StatusCode::OK,
            &[],
            &format!(
                r#"{{"success":true,"errors":[],"messages":[],"result":{{"id":"{:016x}"}}}}"#,
                fnv(&request.body)
            ),
        ),
        ("api.fastly.com", _) if request.path.ends_with("/purge_all") => {
            respond(StatusCode::OK, &[], r#"{"status":"ok"}"#)
        }
        // A URL purge through the API host: /purge/<host>/<path>.
        ("api.fastly.com", _) if request.path.starts_with("/purge/") => respond(
            StatusCode::OK,
            &[],
            r#"{"status":"ok","id":"108-1391560174-974124"}"#,
        ),
        ("api.fastly.com", _) => {
            let keys = request.header("surrogate-key").unwrap_or_default();
            let ids: Vec<String> = keys
                .split_whitespace()
                .map(|key| format!(r#""{key}":"108-1391560174-974124""#))
                .collect();
            respond(StatusCode::OK, &[], &format!("{{{}}}", ids.join(",")))
        }
        // Fast Purge accepts with 201 and the purge's id; the double derives
        // one from the body, so each batch has its own.
        (AKAMAI_HOST, "POST") => {
            let id = fnv(&request.body);
            respond(
                StatusCode::CREATED,
                &[],
                &format!(
                    r#"{{"httpStatus":201,"detail":"Request accepted","estimatedSeconds":5,"purgeId":"{:08x}-{:04x}-11e7-94d7-{:012x}","supportId":"17PY1492793544958045-219026624"}}"#,
                    id >> 32,
                    (id >> 16) & 0xffff,
                    id & 0xffff_ffff_ffff
                ),
            )
        }
        // Bunny answers a purge with an empty 200.
        ("api.bunny.net", _) => respond(StatusCode::OK, &[], ""),
        (_, "PURGE") => respond(
            StatusCode::OK,
            &[],
            r#"{"status":"ok","id":"108-1391560174-974124"}"#,
        ),
        _ => respond(StatusCode::ACCEPTED, &[], r#"{"accepted":true}"#),
    }
}

/// Akamai's answer to a request its gateway does not authenticate, as an
/// RFC 7807 problem.
fn akamai_denied(request: &Recorded, detail: &str) -> Response<Full<Bytes>> {
    let problem = serde_json::json!({
        "type": "https://problems.luna.akamaiapis.net/-/pep-authn/deny",
        "title": "Not authorized",
        "status": 401,
        "detail": detail,
        "instance": format!("https://{}{}", request.host, request.path),
        "method": request.method,
    });
    respond(StatusCode::UNAUTHORIZED, &[], &problem.to_string())
}

/// FNV-1a: a stable id from a request body.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn respond(status: StatusCode, headers: &[(&str, &str)], body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    for (key, value) in headers {
        if let (Ok(key), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(key.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(key, value);
        }
    }
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
