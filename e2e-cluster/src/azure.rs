//! Azure, as the purge of provider `azure` meets it: Entra ID's token
//! endpoint, which checks a client secret, or a federated token as client
//! assertion (its RS256 signature with the cluster issuer's key, its issuer,
//! audience, subject and expiry, as a federated identity credential does);
//! and Azure Resource Manager's Front Door `purge`, accepted with 202 and an
//! `Azure-AsyncOperation` that stays `InProgress` for [`PROCESSING`], each
//! with Azure's own error bodies (a wrong credential, a 429, a failed
//! operation).

use crate::recorded::Recorded;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub const LOGIN_HOST: &str = "login.microsoftonline.com";
pub const ARM_HOST: &str = "management.azure.com";
/// An Azure Container Registry: its `/oauth2/exchange` turns an Entra ID
/// access token into a refresh token, the password of the user with the
/// null GUID (the images themselves are the test registry's).
pub const ACR_HOST: &str = "shopsites.azurecr.io";
pub const ACR_USER: &str = "00000000-0000-0000-0000-000000000000";
pub const ACR_REFRESH_TOKEN: &str = "acr-refresh-token-test-3b9a";
pub const TENANT: &str = "72f988bf-0000-4000-8000-00000000test";
pub const SUBSCRIPTION: &str = "00000000-1111-2222-3333-444444444444";
pub const RESOURCE_GROUP: &str = "shop-rg";
pub const PROFILE: &str = "shop-afd";
pub const ENDPOINT: &str = "shop-endpoint";
/// An app registration with a client secret.
pub const CLIENT_ID: &str = "11111111-aaaa-4bbb-8ccc-000000000001";
pub const CLIENT_SECRET: &str = "azure-client-s3cret~test";
/// The managed identity that trusts the Job's ServiceAccount (AKS
/// Workload Identity's federated credential).
pub const IDENTITY_CLIENT_ID: &str = "22222222-aaaa-4bbb-8ccc-000000000002";
pub const ISSUER: &str = "https://oidc.aks.test/0000/";
pub const AUDIENCE: &str = "api://AzureADTokenExchange";
pub const SUBJECT: &str = "system:serviceaccount:web:cache-buster";
/// How long a purge's operation stays `InProgress`, unless told otherwise.
pub const PROCESSING: Duration = Duration::from_secs(2);
const API_VERSION: &str = "2023-05-01";
/// The `Retry-After` of a purge's 202: "the number of seconds to wait
/// before checking the status" (ARM's asynchronous operations).
pub const ACCEPTED_RETRY_AFTER: Duration = Duration::from_secs(2);

/// Status, headers and body of one answer.
pub type Answer = (u16, Vec<(String, String)>, String);

pub struct Azure {
    issued: Vec<String>,
    operations: BTreeMap<String, (Instant, bool)>,
    /// How long each operation runs.
    pub processing: Duration,
    /// The next this many purges are refused with 429.
    pub rate_limited: usize,
    /// The next operation ends `Failed`.
    pub fail_next: bool,
}

impl Default for Azure {
    fn default() -> Azure {
        Azure {
            issued: Vec::new(),
            operations: BTreeMap::new(),
            processing: PROCESSING,
            rate_limited: 0,
            fail_next: false,
        }
    }
}

fn json_answer(status: u16, body: Value) -> Answer {
    (status, Vec::new(), body.to_string())
}

/// Entra ID's error body (`AADSTS…`).
fn entra_error(status: u16, error: &str, code: u32, description: &str) -> Answer {
    json_answer(
        status,
        json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description} Trace ID: 0000 Correlation ID: 0000 Timestamp: 2026-12-05 06:00:00Z"),
            "error_codes": [code],
            "timestamp": "2026-12-05 06:00:00Z",
            "trace_id": "00000000-0000-0000-0000-000000000000",
            "correlation_id": "00000000-0000-0000-0000-000000000000",
            "error_uri": format!("https://{LOGIN_HOST}/error?code={code}"),
        }),
    )
}

/// Azure Resource Manager's error body.
fn arm_error(status: u16, code: &str, message: &str) -> Answer {
    json_answer(status, json!({"error": {"code": code, "message": message}}))
}

impl Azure {
    pub fn answer(&mut self, request: &Recorded) -> Answer {
        match request.host.as_str() {
            LOGIN_HOST => self.token(request),
            ACR_HOST => self.acr_exchange(request),
            _ => self.resource_manager(request),
        }
    }

    /// ACR's `POST /oauth2/exchange` (grant `access_token`): a token this
    /// double issued, for this registry, gives the refresh token.
    fn acr_exchange(&self, request: &Recorded) -> Answer {
        let form = request.form();
        let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
        let refused = |message: &str| {
            json_answer(
                401,
                json!({"errors": [{"code": "UNAUTHORIZED", "message": message}]}),
            )
        };
        if request.method != "POST" || request.path != "/oauth2/exchange" {
            return json_answer(404, json!({"errors": [{"code": "NOT_FOUND"}]}));
        }
        if field("grant_type") != "access_token" || field("service") != ACR_HOST {
            return refused("grant_type access_token and service, the registry, are required");
        }
        if !self
            .issued
            .iter()
            .any(|token| token == field("access_token"))
        {
            return refused("the access token is not valid");
        }
        json_answer(200, json!({"refresh_token": ACR_REFRESH_TOKEN}))
    }

    /// `POST /<tenant>/oauth2/v2.0/token`, client credentials.
    fn token(&mut self, request: &Recorded) -> Answer {
        let form = request.form();
        let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
        if request.path != format!("/{TENANT}/oauth2/v2.0/token") {
            return entra_error(
                400,
                "invalid_request",
                90002,
                "Tenant not found. Check to make sure you have the correct tenant ID.",
            );
        }
        if field("grant_type") != "client_credentials" {
            return entra_error(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type.",
            );
        }
        if field("scope") != "https://management.azure.com/.default" {
            return entra_error(
                400,
                "invalid_scope",
                70011,
                "The provided request must include a 'scope' input parameter.",
            );
        }
        let client = field("client_id");
        let allowed = match form.get("client_assertion") {
            None if client == CLIENT_ID && field("client_secret") == CLIENT_SECRET => Ok(()),
            None => Err(entra_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
            )),
            Some(assertion) => self.federated(client, field("client_assertion_type"), assertion),
        };
        if let Err(refusal) = allowed {
            return refusal;
        }
        let token = format!(
            "eyJ0eXAiOiJKV1QifQ.double-arm-token-{}",
            self.issued.len() + 1
        );
        self.issued.push(token.clone());
        json_answer(
            200,
            json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}),
        )
    }

    /// A federated identity credential's checks of the client assertion.
    fn federated(&self, client: &str, assertion_type: &str, assertion: &str) -> Result<(), Answer> {
        let invalid =
            |code, description: &str| Err(entra_error(400, "invalid_client", code, description));
        if assertion_type != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
            return invalid(700010, "The client assertion type is invalid.");
        }
        if assertion.split('.').count() != 3 {
            return invalid(50027, "JWT token is invalid or malformed.");
        }
        let Some((_, claims)) = crate::jwt::verified(assertion) else {
            return invalid(
                5002738,
                "Invalid JWT token. The token's signature does not match the issuer's keys.",
            );
        };
        if client != IDENTITY_CLIENT_ID {
            return Err(entra_error(
                400,
                "unauthorized_client",
                700016,
                &format!("Application with identifier '{client}' was not found in the directory."),
            ));
        }
        if claims["iss"] != ISSUER {
            return invalid(
                700211,
                &format!(
                    "No matching federated identity record found for presented assertion issuer '{}'.",
                    claims["iss"].as_str().unwrap_or_default()
                ),
            );
        }
        let audiences = match &claims["aud"] {
            Value::Array(audiences) => audiences.clone(),
            one => vec![one.clone()],
        };
        if !audiences.iter().any(|audience| audience == AUDIENCE) {
            return invalid(
                700212,
                "No matching federated identity record found for presented assertion audience.",
            );
        }
        if claims["sub"] != SUBJECT {
            return invalid(
                700213,
                &format!(
                    "No matching federated identity record found for presented assertion subject '{}'.",
                    claims["sub"].as_str().unwrap_or_default()
                ),
            );
        }
        if claims["exp"].as_u64().unwrap_or(0) <= crate::jwt::now() {
            return invalid(
                700024,
                "Client assertion is not within its valid time range.",
            );
        }
        Ok(())
    }

    fn resource_manager(&mut self, request: &Recorded) -> Answer {
        let bearer = request
            .header("authorization")
            .and_then(|value| value.strip_prefix("Bearer "));
        match bearer {
            None => {
                return arm_error(
                    401,
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing.",
                );
            }
            Some(token) if !self.issued.iter().any(|issued| issued == token) => {
                return arm_error(
                    401,
                    "InvalidAuthenticationToken",
                    "The access token is invalid.",
                );
            }
            Some(_) => {}
        }
        let purge = format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Cdn/profiles/{PROFILE}/afdEndpoints/{ENDPOINT}/purge?api-version={API_VERSION}"
        );
        let operations = format!(
            "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Cdn/locations/global/operationresults/"
        );
        if request.method == "POST" && request.path == purge {
            if self.rate_limited > 0 {
                self.rate_limited -= 1;
                let (status, mut headers, body) = arm_error(
                    429,
                    "TooManyRequests",
                    "The request is being throttled as the limit has been reached for operation type - Write.",
                );
                headers.push(("retry-after".into(), "1".into()));
                return (status, headers, body);
            }
            let body: Value = serde_json::from_str(&request.body).unwrap_or(Value::Null);
            let paths = body["contentPaths"].as_array().cloned().unwrap_or_default();
            if paths.is_empty()
                || paths.len() > 100
                || !paths
                    .iter()
                    .all(|path| path.as_str().is_some_and(|path| path.starts_with('/')))
            {
                return arm_error(
                    400,
                    "BadRequest",
                    "ContentPaths must be a list of 1 to 100 paths, each starting with '/'.",
                );
            }
            let id = format!(
                "{:08x}-0000-4000-8000-{:012x}",
                self.operations.len() + 1,
                self.operations.len() + 1
            );
            self.operations.insert(
                id.clone(),
                (Instant::now(), std::mem::take(&mut self.fail_next)),
            );
            let status_url =
                format!("https://{ARM_HOST}{operations}{id}?api-version={API_VERSION}");
            return (
                202,
                vec![
                    ("azure-asyncoperation".into(), status_url.clone()),
                    (
                        "location".into(),
                        status_url.replace("operationresults", "operationresults/location"),
                    ),
                    (
                        "retry-after".into(),
                        ACCEPTED_RETRY_AFTER.as_secs().to_string(),
                    ),
                ],
                String::new(),
            );
        }
        if request.method == "GET"
            && let Some(rest) = request.path.strip_prefix(&operations)
        {
            let id = rest.split('?').next().unwrap_or_default();
            let Some((started, fails)) = self.operations.get(id) else {
                return arm_error(
                    404,
                    "NotFound",
                    &format!("The operation '{id}' was not found."),
                );
            };
            let running = started.elapsed() < self.processing;
            let operation = match (running, fails) {
                (true, _) => {
                    json!({"name": id, "status": "InProgress", "startTime": "2026-12-05T06:00:00Z"})
                }
                (false, false) => {
                    json!({"name": id, "status": "Succeeded", "startTime": "2026-12-05T06:00:00Z", "endTime": "2026-12-05T06:00:02Z"})
                }
                (false, true) => {
                    json!({"name": id, "status": "Failed", "startTime": "2026-12-05T06:00:00Z",
                    "error": {"code": "BadRequest", "message": "The domain shop.example.com is not associated with endpoint shop-endpoint."}})
                }
            };
            let headers = match running {
                true => vec![("retry-after".to_owned(), "1".to_owned())],
                false => Vec::new(),
            };
            return (200, headers, operation.to_string());
        }
        if request.path.contains("/afdEndpoints/") {
            return arm_error(
                404,
                "ResourceNotFound",
                "The Resource 'Microsoft.Cdn/profiles/afdEndpoints' under resource group was not found.",
            );
        }
        arm_error(
            404,
            "InvalidResourceType",
            "The resource type could not be found.",
        )
    }
}

/// A federated token as the cluster's issuer signs it (RS256), with these
/// claims.
pub fn federated_token(issuer: &str, subject: &str, lifetime_seconds: i64) -> String {
    let issued = i64::try_from(crate::jwt::now()).unwrap_or(0);
    crate::jwt::signed(
        &json!({"alg": "RS256", "kid": "test"}),
        &json!({
            "aud": [AUDIENCE], "iss": issuer, "sub": subject,
            "iat": issued, "nbf": issued, "exp": issued + lifetime_seconds,
            "kubernetes.io": {"namespace": "web", "serviceaccount": {"name": "cache-buster"}},
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_federated_token_is_checked_like_entra_does() {
        let azure = Azure::default();
        let assertion_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
        let good = federated_token(ISSUER, SUBJECT, 3600);
        assert!(
            azure
                .federated(IDENTITY_CLIENT_ID, assertion_type, &good)
                .is_ok()
        );
        let refused = |token: &str| {
            azure
                .federated(IDENTITY_CLIENT_ID, assertion_type, token)
                .err()
                .map(|(_, _, body)| body)
                .unwrap_or_default()
        };
        assert!(
            refused(&federated_token("https://elsewhere/", SUBJECT, 3600)).contains("AADSTS700211")
        );
        assert!(
            refused(&federated_token(
                ISSUER,
                "system:serviceaccount:web:other",
                3600
            ))
            .contains("AADSTS700213")
        );
        assert!(refused(&federated_token(ISSUER, SUBJECT, -10)).contains("AADSTS700024"));
        let (head, _) = good.rsplit_once('.').unwrap_or_default();
        assert!(refused(&format!("{head}.AAAA")).contains("AADSTS5002738"));
    }
}
