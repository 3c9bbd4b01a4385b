//! SPEC §9: a cloud's registry read with the identity the Job already has
//! for its provider, where that works, as the kubelet's credential providers
//! do for nodes: Google's access token, from the Secret's service-account
//! key or GKE Workload Identity's metadata server, is the password of user
//! `oauth2accesstoken` at Artifact Registry (`*.pkg.dev`) and Container
//! Registry (`gcr.io`), for a site whose layers include `gcp`; ECR's
//! `GetAuthorizationToken`, signed with the `cloudfront` layer's AWS
//! credentials (the Secret's keys, IRSA or EKS Pod Identity), gives the
//! password of user `AWS` at `<account>.dkr.ecr.<region>.amazonaws.com`;
//! the `azure` layer's Entra ID token (its client secret, or AKS Workload
//! Identity), exchanged at an Azure Container Registry's `/oauth2/exchange`,
//! gives the refresh token that is the password of the null GUID at
//! `<name>.azurecr.io`. A pull secret for the registry comes first.

use crate::aws::AwsEnvironment;
use crate::client::{Client, Limits, Network};
use crate::credentials::Credentials;
use crate::entra::AzureEnvironment;
use crate::google::GoogleEnvironment;
use crate::request::{PlannedRequest, Signer};
use base64::Engine as _;
use oci_client::secrets::RegistryAuth;

/// The scope of a token that reads images (Artifact Registry and Container
/// Registry take it); the purge's own token keeps its compute scope.
pub const GOOGLE_REGISTRY_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform.read-only";
/// The user name Google's registries take an access token with.
const GOOGLE_TOKEN_USER: &str = "oauth2accesstoken";

/// A workload identity of the Job that a cloud's registries take.
#[derive(Debug, Clone)]
pub enum RegistryIdentity {
    /// The `gcp` layer's: its key (`GCP_SERVICE_ACCOUNT_KEY`), else the
    /// metadata server.
    Google {
        key_json: Option<String>,
        environment: GoogleEnvironment,
        limits: Limits,
    },
    /// The `azure` layer's: the Secret's client secret, else AKS Workload
    /// Identity, as the layer resolves them.
    Azure {
        credentials: Credentials,
        environment: AzureEnvironment,
        limits: Limits,
    },
    /// The `cloudfront` layer's: the Secret's keys, else the pod's
    /// identity, as the layer resolves them.
    Aws {
        credentials: Credentials,
        environment: AwsEnvironment,
        session_name: String,
        limits: Limits,
    },
}

/// The user an ACR refresh token is the password of.
const ACR_TOKEN_USER: &str = "00000000-0000-0000-0000-000000000000";

/// Azure Container Registry, in Azure's public, Chinese and US government
/// clouds.
fn is_acr(host: &str) -> bool {
    [".azurecr.io", ".azurecr.cn", ".azurecr.us"]
        .iter()
        .any(|suffix| host.len() > suffix.len() && host.ends_with(suffix))
}

/// ACR's exchange of an Entra ID access token for its refresh token.
fn acr_exchange_request(registry: &str, access_token: &str) -> PlannedRequest {
    let form = [
        ("grant_type", "access_token"),
        ("service", registry),
        ("access_token", access_token),
    ]
    .iter()
    .map(|(name, value)| format!("{name}={}", crate::request::path_segment(value)))
    .collect::<Vec<_>>()
    .join("&");
    PlannedRequest::fetching(
        format!("https://{registry}/oauth2/exchange"),
        vec![(
            "Content-Type".into(),
            "application/x-www-form-urlencoded".to_owned(),
        )],
        Some(form),
        "token",
    )
}

/// `<account>.dkr.ecr.<region>.amazonaws.com` (or `.com.cn`): the region.
fn ecr_region(host: &str) -> Option<&str> {
    let (_, rest) = host.split_once(".dkr.ecr.")?;
    let region = rest
        .strip_suffix(".amazonaws.com")
        .or_else(|| rest.strip_suffix(".amazonaws.com.cn"))?;
    let valid = !region.is_empty()
        && region
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
    valid.then_some(region)
}

/// ECR's `GetAuthorizationToken` in `region`, for `signer`'s credentials.
fn ecr_token_request(region: &str, signer: crate::sigv4::SigV4) -> PlannedRequest {
    let mut request = PlannedRequest::fetching(
        format!("https://api.ecr.{region}.amazonaws.com/"),
        vec![
            (
                "X-Amz-Target".into(),
                "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken".to_owned(),
            ),
            (
                "Content-Type".into(),
                "application/x-amz-json-1.1".to_owned(),
            ),
        ],
        Some("{}".to_owned()),
        "token",
    );
    request.signed_by = Some(Signer::SigV4(crate::sigv4::SigV4 {
        region: region.to_owned(),
        service: "ecr",
        ..signer
    }));
    request
}

/// `authorizationData[0].authorizationToken`, base64 of `AWS:<password>`.
fn ecr_auth(answer: &str) -> Option<RegistryAuth> {
    let value: serde_json::Value = serde_json::from_str(answer).ok()?;
    let token = value["authorizationData"][0]["authorizationToken"].as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(RegistryAuth::Basic(user.to_owned(), password.to_owned()))
}

impl RegistryIdentity {
    /// Whether `host` (the registry's, without port) is one of this
    /// cloud's registries.
    pub fn serves(&self, host: &str) -> bool {
        match self {
            RegistryIdentity::Google { .. } => {
                host == "gcr.io" || host.ends_with(".gcr.io") || host.ends_with(".pkg.dev")
            }
            RegistryIdentity::Azure { .. } => is_acr(host),
            RegistryIdentity::Aws { .. } => ecr_region(host).is_some(),
        }
    }

    /// What the registry is asked with; the error says where the token was
    /// not found (never the token).
    pub async fn auth(&self, host: &str, network: &Network) -> Result<RegistryAuth, String> {
        match self {
            RegistryIdentity::Google {
                key_json,
                environment,
                limits,
            } => crate::google::token(
                key_json.as_deref(),
                environment,
                GOOGLE_REGISTRY_SCOPE,
                *limits,
                network,
            )
            .await
            .map(|token| RegistryAuth::Basic(GOOGLE_TOKEN_USER.to_owned(), token))
            .map_err(|not_prepared| not_prepared.error),
            RegistryIdentity::Azure {
                credentials,
                environment,
                limits,
            } => {
                let (access_token, mut secrets) =
                    crate::entra::token(credentials, environment, *limits, network)
                        .await
                        .map_err(|not_prepared| not_prepared.error)?;
                let client = Client::new(*limits, network, &[host.to_owned()])
                    .map_err(|error| error.to_string())?;
                let answer = client
                    .send(&acr_exchange_request(host, &access_token))
                    .await;
                secrets.push(access_token);
                if let Some(error) = answer.error {
                    let hidden: Vec<&str> = secrets.iter().map(String::as_str).collect();
                    let excerpt = crate::outcome::answer_excerpt(&answer.body, &hidden);
                    return Err(format!(
                        "{host}'s token exchange: {error}; it answered: {excerpt}"
                    ));
                }
                serde_json::from_str::<serde_json::Value>(&answer.body)
                    .ok()
                    .and_then(|value| value["refresh_token"].as_str().map(str::to_owned))
                    .map(|token| RegistryAuth::Basic(ACR_TOKEN_USER.to_owned(), token))
                    .ok_or_else(|| format!("{host}'s token exchange answered no refresh_token"))
            }
            RegistryIdentity::Aws {
                credentials,
                environment,
                session_name,
                limits,
            } => {
                let region = ecr_region(host).unwrap_or_default();
                let api = format!("api.ecr.{region}.amazonaws.com");
                let client = Client::new(*limits, network, &[environment.sts_host(), api])
                    .map_err(|error| error.to_string())?;
                let resolved = crate::aws::resolve(credentials, environment, &client, session_name)
                    .await
                    .map_err(|not_prepared| not_prepared.error)?;
                let answer = client
                    .send(&ecr_token_request(region, resolved.signer))
                    .await;
                if let Some(error) = answer.error {
                    let excerpt = crate::outcome::answer_excerpt(&answer.body, &[]);
                    return Err(format!(
                        "ECR's GetAuthorizationToken in {region}: {error}; it answered: {excerpt}"
                    ));
                }
                ecr_auth(&answer.body).ok_or_else(|| {
                    format!(
                        "ECR's GetAuthorizationToken in {region} answered no authorizationToken"
                    )
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acr_is_any_clouds_azurecr() {
        for (host, acr) in [
            ("shopsites.azurecr.io", true),
            ("shopsites.azurecr.cn", true),
            ("shopsites.azurecr.us", true),
            (".azurecr.io", false),
            ("azurecr.io", false),
            ("shopsites.azurecr.io.evil.example", false),
        ] {
            assert_eq!(is_acr(host), acr, "{host}");
        }
    }

    #[test]
    fn acrs_exchange_is_a_form_for_the_registry() {
        let request = acr_exchange_request("shopsites.azurecr.io", "eyJ0.a+b/c");
        assert_eq!(request.url, "https://shopsites.azurecr.io/oauth2/exchange");
        assert_eq!(
            request.body.as_deref(),
            Some(
                "grant_type=access_token&service=shopsites.azurecr.io&access_token=eyJ0.a%2Bb%2Fc"
            )
        );
    }

    #[test]
    fn an_ecr_host_gives_its_region() {
        for (host, region) in [
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                Some("eu-west-1"),
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                Some("cn-north-1"),
            ),
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com.evil.example",
                None,
            ),
            ("dkr.ecr.eu-west-1.amazonaws.com", None),
            ("123456789012.dkr.ecr..amazonaws.com", None),
            ("public.ecr.aws", None),
            ("europe-docker.pkg.dev", None),
        ] {
            assert_eq!(ecr_region(host), region, "{host}");
        }
    }

    #[test]
    fn ecrs_token_is_the_password_of_its_user() {
        let answer = r#"{"authorizationData":[{"authorizationToken":"QVdTOnMzY3JldA==","expiresAt":1.7e9,"proxyEndpoint":"https://123456789012.dkr.ecr.eu-west-1.amazonaws.com"}]}"#;
        assert_eq!(
            ecr_auth(answer),
            Some(RegistryAuth::Basic("AWS".to_owned(), "s3cret".to_owned()))
        );
        assert_eq!(ecr_auth(r#"{"authorizationData":[]}"#), None);
        assert_eq!(ecr_auth("<html>"), None);
    }

    #[test]
    fn googles_identity_serves_artifact_registry_and_container_registry_only() {
        let google = RegistryIdentity::Google {
            key_json: None,
            environment: GoogleEnvironment::default(),
            limits: Limits::default(),
        };
        for (host, served) in [
            ("europe-docker.pkg.dev", true),
            ("us-central1-docker.pkg.dev", true),
            ("gcr.io", true),
            ("eu.gcr.io", true),
            ("docker.io", false),
            ("ghcr.io", false),
            ("notgcr.io", false),
            ("pkg.dev.example.com", false),
            ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", false),
        ] {
            assert_eq!(google.serves(host), served, "{host}");
        }
    }
}
