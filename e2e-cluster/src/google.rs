//! Google, as the purge of provider `gcp` meets it: the OAuth2 token
//! endpoint, which verifies the JWT assertion's RS256 signature with the
//! service account's public key and its claims (audience, scope, expiry),
//! the Compute API's `invalidateCache` and its Operations (`RUNNING` for
//! [`PROCESSING`], then `DONE`), and GKE's metadata server (plain HTTP, as
//! the real one at 169.254.169.254 is), each with Google's own error bodies.

use crate::recorded::Recorded;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub const TOKEN_HOST: &str = "oauth2.googleapis.com";
pub const COMPUTE_HOST: &str = "compute.googleapis.com";
pub const PROJECT: &str = "shop-project";
pub const URL_MAP: &str = "shop-lb";
pub const SERVICE_ACCOUNT: &str = "purger@shop-project.iam.gserviceaccount.com";
/// The service account's key: a 2048-bit RSA key made for the tests only.
pub const KEY_PEM: &str = crate::jwt::TEST_KEY_PEM;
/// The token the metadata server hands to the pod (GKE Workload Identity).
pub const METADATA_TOKEN: &str = "ya29.metadata-token-test-5c1f";
/// How long an invalidation's Operation stays `RUNNING`.
pub const PROCESSING: Duration = Duration::from_secs(2);

type Answer = (u16, String);

/// A service-account JSON key as Google issues it, with [`KEY_PEM`].
pub fn service_account_key() -> String {
    json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "0123456789abcdef",
        "private_key": KEY_PEM,
        "client_email": SERVICE_ACCOUNT,
        "client_id": "100000000000000000001",
        "token_uri": format!("https://{TOKEN_HOST}/token"),
    })
    .to_string()
}

#[derive(Default)]
pub struct Google {
    issued: Vec<String>,
    operations: BTreeMap<String, Instant>,
    /// The next this many invalidations are refused as rate-limited.
    pub rate_limited: usize,
}

fn error(code: u16, status: &str, message: &str, reason: &str) -> Answer {
    (
        code,
        json!({"error": {"code": code, "message": message, "status": status,
                         "errors": [{"message": message, "domain": "global", "reason": reason}]}})
        .to_string(),
    )
}

impl Google {
    pub fn answer(&mut self, request: &Recorded) -> Answer {
        match request.host.as_str() {
            TOKEN_HOST => self.token(request),
            _ => self.compute(request),
        }
    }

    /// `POST /token` with a JWT bearer assertion (RFC 7523).
    fn token(&mut self, request: &Recorded) -> Answer {
        let form = request.form();
        let grant = |description: &str| {
            (
                400,
                json!({"error": "invalid_grant", "error_description": description}).to_string(),
            )
        };
        if form.get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return (400, json!({"error": "unsupported_grant_type"}).to_string());
        }
        let Some(assertion) = form.get("assertion") else {
            return grant("Missing assertion.");
        };
        if assertion.split('.').count() != 3 {
            return grant("Invalid JWT.");
        }
        let Some((header, claims)) = crate::jwt::verified(assertion) else {
            return grant("Invalid JWT Signature.");
        };
        let now = crate::jwt::now();
        if header["alg"] != "RS256" {
            return grant("Invalid JWT: the algorithm must be RS256.");
        }
        if claims["iss"] != SERVICE_ACCOUNT {
            return grant("Invalid JWT: no such service account.");
        }
        if claims["aud"] != format!("https://{TOKEN_HOST}/token") {
            return grant("Invalid JWT: Failed audience check.");
        }
        let expiry = claims["exp"].as_u64().unwrap_or(0);
        let issued_at = claims["iat"].as_u64().unwrap_or(0);
        if expiry <= now || issued_at > now + 60 || expiry - issued_at > 3600 {
            return grant(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
            );
        }
        let scopes = claims["scope"].as_str().unwrap_or_default();
        if !scopes.split(' ').any(|scope| {
            scope == "https://www.googleapis.com/auth/compute"
                || scope == "https://www.googleapis.com/auth/cloud-platform"
        }) {
            return grant("Invalid JWT: the scope does not allow the Compute API.");
        }
        let token = format!("ya29.double-token-{}", self.issued.len() + 1);
        self.issued.push(token.clone());
        (
            200,
            json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}).to_string(),
        )
    }

    fn compute(&mut self, request: &Recorded) -> Answer {
        let bearer = request
            .header("authorization")
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        if bearer != METADATA_TOKEN && !self.issued.iter().any(|token| token == bearer) {
            return error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
                "authError",
            );
        }
        let project = format!("/compute/v1/projects/{PROJECT}/global");
        if request.method == "POST"
            && request.path == format!("{project}/urlMaps/{URL_MAP}/invalidateCache")
        {
            if self.rate_limited > 0 {
                self.rate_limited -= 1;
                return error(
                    403,
                    "PERMISSION_DENIED",
                    "Rate Limit Exceeded",
                    "rateLimitExceeded",
                );
            }
            let body: Value = serde_json::from_str(&request.body).unwrap_or(Value::Null);
            // Cloud CDN's path: absolute, and a `*` only as its last
            // character, after a `/` (`/news/*`, never `/news*`).
            let path_ok = body["path"].as_str().is_some_and(|path| {
                path.starts_with('/')
                    && match path.find('*') {
                        None => true,
                        Some(star) => star + 1 == path.len() && path.ends_with("/*"),
                    }
            });
            let tags_ok = body["cacheTags"]
                .as_array()
                .is_some_and(|tags| !tags.is_empty() && tags.len() <= 10);
            if !path_ok && !tags_ok {
                return error(
                    400,
                    "INVALID_ARGUMENT",
                    "Invalid value for field 'resource.path'",
                    "invalid",
                );
            }
            let name = format!("operation-{}-invalidate", self.operations.len() + 1);
            self.operations.insert(name.clone(), Instant::now());
            return (200, operation(&name, "RUNNING"));
        }
        if request.method == "GET"
            && let Some(name) = request.path.strip_prefix(&format!("{project}/operations/"))
        {
            return match self.operations.get(name) {
                Some(started) if started.elapsed() >= PROCESSING => (200, operation(name, "DONE")),
                Some(_) => (200, operation(name, "RUNNING")),
                None => error(
                    404,
                    "NOT_FOUND",
                    &format!("The resource '{name}' was not found"),
                    "notFound",
                ),
            };
        }
        if request.path.starts_with("/compute/v1/projects/") {
            return error(
                403,
                "PERMISSION_DENIED",
                "Required 'compute.urlMaps.invalidateCache' permission",
                "forbidden",
            );
        }
        error(404, "NOT_FOUND", "Not Found", "notFound")
    }
}

fn operation(name: &str, status: &str) -> String {
    json!({
        "kind": "compute#operation",
        "id": "5218761031837652437",
        "name": name,
        "operationType": "invalidateCache",
        "targetLink": format!("https://{COMPUTE_HOST}/compute/v1/projects/{PROJECT}/global/urlMaps/{URL_MAP}"),
        "status": status,
        "progress": if status == "DONE" { 100 } else { 0 },
        "selfLink": format!("https://{COMPUTE_HOST}/compute/v1/projects/{PROJECT}/global/operations/{name}"),
    })
    .to_string()
}

/// GKE's metadata server on loopback; `GCE_METADATA_HOST` names it.
pub struct MetadataServer {
    pub host: String,
    server: tokio::task::JoinHandle<()>,
    asked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl MetadataServer {
    pub async fn start() -> anyhow::Result<MetadataServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let host = listener.local_addr()?.to_string();
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = std::sync::Arc::clone(&asked);
        let server = crate::caches::serve(listener, move |request, _| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (status, body) = if request.header("metadata-flavor") != Some("Google") {
                (403, "Missing required header: Metadata-Flavor".to_owned())
            } else if request.path == "/computeMetadata/v1/instance/service-accounts/default/token"
            {
                (
                    200,
                    json!({"access_token": METADATA_TOKEN, "expires_in": 3599, "token_type": "Bearer"})
                        .to_string(),
                )
            } else {
                (404, "Not Found".to_owned())
            };
            crate::caches::respond(
                hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_REQUEST),
                "application/json",
                body,
            )
        });
        Ok(MetadataServer {
            host,
            server,
            asked,
        })
    }

    pub fn requests(&self) -> usize {
        self.asked.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for MetadataServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}
