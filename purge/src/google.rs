//! Google's OAuth2 access token, where Google's client libraries find it:
//! a service-account JSON key in the Secret (a JWT signed RS256 with the
//! key, exchanged at the key's `token_uri`), else the metadata server that
//! GKE Workload Identity answers on (`Metadata-Flavor: Google`; the host
//! from `GCE_METADATA_HOST`, as the libraries read it).

use crate::client::{Client, Limits, Network, hosts_of};
use crate::not_prepared::NotPrepared;
use crate::request::{PlannedRequest, path_segment};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::time::{SystemTime, UNIX_EPOCH};

pub const TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The one scope the purge needs (`compute.urlMaps.invalidateCache`).
pub const SCOPE: &str = "https://www.googleapis.com/auth/compute";
pub const METADATA_HOST: &str = "metadata.google.internal";

/// The pod's variables about its Google identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoogleEnvironment {
    /// `GCE_METADATA_HOST`: the metadata server, host and port.
    pub metadata_host: Option<String>,
}

impl GoogleEnvironment {
    pub fn read(env: impl Fn(&str) -> Option<String>) -> GoogleEnvironment {
        GoogleEnvironment {
            metadata_host: env("GCE_METADATA_HOST").filter(|host| !host.trim().is_empty()),
        }
    }

    pub fn metadata_host(&self) -> &str {
        self.metadata_host.as_deref().unwrap_or(METADATA_HOST)
    }
}

/// The fields of a service-account key the token needs.
#[derive(Debug, serde::Deserialize)]
struct ServiceAccountKey {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

/// A JWT for `key`: header and claims as Google's token endpoint asks
/// (RFC 7523), signed RS256 with ring.
fn assertion(
    key: &ServiceAccountKey,
    audience: &str,
    scope: &str,
    now: u64,
) -> Result<String, String> {
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use rustls::pki_types::pem::PemObject as _;
    let der = PrivatePkcs8KeyDer::from_pem_slice(key.private_key.as_bytes())
        .map_err(|_| "its private_key is not a PEM PKCS#8 key".to_owned())?;
    let pair = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
        .map_err(|error| format!("its private_key is not an RSA key ({error})"))?;
    let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    if let Some(id) = &key.private_key_id {
        header["kid"] = id.clone().into();
    }
    let claims = serde_json::json!({
        "iss": key.client_email,
        "scope": scope,
        "aud": audience,
        "iat": now,
        "exp": now + 3600,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "signing the token request failed".to_owned())?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// The token's request: to the key's token endpoint with a signed
/// assertion for `scope`, or to the metadata server (whose token has the
/// scopes of the workload's identity).
pub fn request(
    key_json: Option<&str>,
    environment: &GoogleEnvironment,
    scope: &str,
) -> Result<PlannedRequest, String> {
    let Some(key_json) = key_json else {
        return Ok(PlannedRequest::fetching(
            format!(
                "http://{}/computeMetadata/v1/instance/service-accounts/default/token",
                environment.metadata_host()
            ),
            vec![("Metadata-Flavor".into(), "Google".to_owned())],
            None,
            "token",
        ));
    };
    let key: ServiceAccountKey = serde_json::from_str(key_json).map_err(|error| {
        format!("GCP_SERVICE_ACCOUNT_KEY is not a service-account JSON key ({error})")
    })?;
    let audience = key
        .token_uri
        .clone()
        .unwrap_or_else(|| TOKEN_URI.to_owned());
    google_token_endpoint(&audience)
        .map_err(|problem| format!("GCP_SERVICE_ACCOUNT_KEY's token_uri {audience:?} {problem}"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let jwt = assertion(&key, &audience, scope, now)
        .map_err(|problem| format!("GCP_SERVICE_ACCOUNT_KEY of {}: {problem}", key.client_email))?;
    Ok(PlannedRequest::fetching(
        audience,
        vec![(
            "Content-Type".into(),
            "application/x-www-form-urlencoded".to_owned(),
        )],
        Some(format!(
            "grant_type={}&assertion={jwt}",
            path_segment("urn:ietf:params:oauth:grant-type:jwt-bearer")
        )),
        "token",
    ))
}

/// The access token, from the key or the metadata server. A key that is
/// no key fails for good: no retry mends it.
pub async fn token(
    key_json: Option<&str>,
    environment: &GoogleEnvironment,
    scope: &str,
    limits: Limits,
    network: &Network,
) -> Result<String, NotPrepared> {
    let request = request(key_json, environment, scope).map_err(|error| NotPrepared {
        error,
        for_good: true,
        ..NotPrepared::default()
    })?;
    let client = Client::new(limits, network, &hosts_of([request.url.as_str()]))
        .map_err(|error| error.to_string())?;
    let answer = client.send(&request).await;
    let from = match key_json {
        Some(_) => "Google's token endpoint (GCP_SERVICE_ACCOUNT_KEY)".to_owned(),
        None => format!(
            "the metadata server {} (GKE Workload Identity; the Secret has no GCP_SERVICE_ACCOUNT_KEY)",
            environment.metadata_host()
        ),
    };
    if let Some(error) = &answer.error {
        return Err(NotPrepared {
            error: format!(
                "no access token from {from}: {error}; it answered: {}",
                crate::outcome::answer_excerpt(&answer.body, &[])
            ),
            status: answer.status,
            for_good: false,
        });
    }
    serde_json::from_str::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|value| value["access_token"].as_str().map(str::to_owned))
        .ok_or_else(|| NotPrepared::from(format!("no access_token in the answer of {from}")))
}

/// A key's `token_uri` gets a signed assertion: only Google's own token
/// endpoint, over https (`oauth2.googleapis.com`, or a Private Service
/// Connect name under `googleapis.com`), as Google documents for keys it
/// issues; a key edited to send the assertion elsewhere is refused.
fn google_token_endpoint(uri: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(uri).map_err(|error| format!("is not a URL ({error})"))?;
    let host = url.host_str().unwrap_or_default();
    let google = host == "googleapis.com" || host.ends_with(".googleapis.com");
    if url.scheme() == "https" && google && url.username().is_empty() {
        return Ok(());
    }
    Err(
        "is not an https URL of googleapis.com; the key's assertion is sent to Google only"
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_keys_token_uri_must_be_googles() {
        for allowed in [
            TOKEN_URI,
            "https://oauth2.googleapis.com/token",
            "https://oauth2-psc.p.googleapis.com/token",
        ] {
            assert_eq!(google_token_endpoint(allowed), Ok(()), "{allowed}");
        }
        for refused in [
            "http://oauth2.googleapis.com/token",
            "https://attacker.example/token",
            "https://googleapis.com.attacker.example/token",
            "https://evilgoogleapis.com/token",
            "file:///etc/passwd",
        ] {
            assert!(google_token_endpoint(refused).is_err(), "{refused}");
        }
    }

    use super::*;

    /// A 2048-bit RSA key made for these tests only.
    pub const TEST_KEY: &str = include_str!("../tests/data/gcp-test-key.pem");

    fn key() -> ServiceAccountKey {
        ServiceAccountKey {
            client_email: "purger@shop-project.iam.gserviceaccount.com".into(),
            private_key: TEST_KEY.into(),
            private_key_id: Some("k1".into()),
            token_uri: None,
        }
    }

    #[test]
    fn the_assertion_is_an_rs256_jwt_for_googles_token_endpoint() {
        let jwt = assertion(&key(), TOKEN_URI, SCOPE, 1_700_000_000).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |part: &str| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
        };
        assert_eq!(
            decode(parts[0]),
            serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "k1"})
        );
        assert_eq!(
            decode(parts[1]),
            serde_json::json!({
                "iss": "purger@shop-project.iam.gserviceaccount.com",
                "scope": SCOPE, "aud": TOKEN_URI,
                "iat": 1_700_000_000u64, "exp": 1_700_003_600u64
            })
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 256);
    }

    #[test]
    fn without_a_key_the_metadata_server_is_asked() {
        let environment = GoogleEnvironment::read(|name| {
            (name == "GCE_METADATA_HOST").then(|| "127.0.0.1:8089".to_owned())
        });
        let request = request(None, &environment, SCOPE).unwrap();
        assert_eq!(
            request.describe(),
            "GET http://127.0.0.1:8089/computeMetadata/v1/instance/service-accounts/default/token (Metadata-Flavor: Google)"
        );
        assert_eq!(
            super::request(None, &GoogleEnvironment::default(), SCOPE)
                .unwrap()
                .url,
            "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"
        );
    }

    #[test]
    fn a_broken_key_is_named() {
        assert!(
            request(Some("{}"), &GoogleEnvironment::default(), SCOPE)
                .unwrap_err()
                .starts_with("GCP_SERVICE_ACCOUNT_KEY is not a service-account JSON key")
        );
        let not_pem = serde_json::json!({"client_email": "a@b", "private_key": "nope"}).to_string();
        assert_eq!(
            request(Some(&not_pem), &GoogleEnvironment::default(), SCOPE).unwrap_err(),
            "GCP_SERVICE_ACCOUNT_KEY of a@b: its private_key is not a PEM PKCS#8 key"
        );
    }
}
