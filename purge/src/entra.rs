//! Microsoft Entra ID's access token for Azure Resource Manager, where
//! Azure's SDKs look for one in a pod (EnvironmentCredential, then
//! WorkloadIdentityCredential): the Secret's `AZURE_CLIENT_SECRET` with its
//! `AZURE_TENANT_ID` and `AZURE_CLIENT_ID` (client credentials); else AKS
//! Workload Identity, the federated token of `AZURE_FEDERATED_TOKEN_FILE`
//! as the client assertion of `AZURE_CLIENT_ID` in `AZURE_TENANT_ID`, at
//! `AZURE_AUTHORITY_HOST`: the variables its webhook injects.

use crate::client::{Client, Limits, Network, hosts_of};
use crate::credentials::Credentials;
use crate::not_prepared::NotPrepared;
use crate::request::{PlannedRequest, path_segment};

pub const AUTHORITY_HOST: &str = "https://login.microsoftonline.com/";
/// Azure Resource Manager's scope: the purge is an ARM action.
pub const SCOPE: &str = "https://management.azure.com/.default";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The pod's variables about its Azure identity (AKS Workload Identity's
/// webhook sets them on a pod labelled `azure.workload.identity/use`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AzureEnvironment {
    pub client_id: Option<String>,
    pub tenant_id: Option<String>,
    pub authority_host: Option<String>,
    pub federated_token_file: Option<String>,
}

impl AzureEnvironment {
    pub fn read(env: impl Fn(&str) -> Option<String>) -> AzureEnvironment {
        let set = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        AzureEnvironment {
            client_id: set("AZURE_CLIENT_ID"),
            tenant_id: set("AZURE_TENANT_ID"),
            authority_host: set("AZURE_AUTHORITY_HOST"),
            federated_token_file: set("AZURE_FEDERATED_TOKEN_FILE"),
        }
    }

    /// The authority, ending in `/` (the webhook's value does; a
    /// hand-set one may not).
    fn authority(&self) -> String {
        let host = self.authority_host.as_deref().unwrap_or(AUTHORITY_HOST);
        format!("{}/", host.trim_end_matches('/'))
    }
}

/// The token's request, what it is asked with (for the messages) and the
/// secret values it carries (for the redaction).
pub struct TokenRequest {
    pub request: PlannedRequest,
    pub from: String,
    pub secrets: Vec<String>,
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(name, value)| format!("{name}={}", path_segment(value)))
        .collect::<Vec<_>>()
        .join("&")
}

fn token_request(
    environment: &AzureEnvironment,
    tenant: &str,
    fields: &[(&str, &str)],
) -> PlannedRequest {
    PlannedRequest::fetching(
        format!(
            "{}{}/oauth2/v2.0/token",
            environment.authority(),
            path_segment(tenant)
        ),
        vec![(
            "Content-Type".into(),
            "application/x-www-form-urlencoded".to_owned(),
        )],
        Some(form(fields)),
        "token",
    )
}

fn missing(error: String) -> NotPrepared {
    NotPrepared {
        error,
        for_good: true,
        ..NotPrepared::default()
    }
}

/// The token's request: client credentials from the Secret, else the
/// workload identity's federated token.
pub fn request(
    secret: &Credentials,
    environment: &AzureEnvironment,
) -> Result<TokenRequest, NotPrepared> {
    if let Some(client_secret) = secret.optional("AZURE_CLIENT_SECRET") {
        let needed = |key: &str| {
            secret.optional(key).ok_or_else(|| {
                missing(format!(
                    "{} has AZURE_CLIENT_SECRET but no {key}: client credentials need \
                     AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET",
                    secret.secret_name()
                ))
            })
        };
        let (tenant, client) = (needed("AZURE_TENANT_ID")?, needed("AZURE_CLIENT_ID")?);
        return Ok(TokenRequest {
            request: token_request(
                environment,
                tenant,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", client),
                    ("client_secret", client_secret),
                    ("scope", SCOPE),
                ],
            ),
            from: "Entra ID (AZURE_CLIENT_SECRET)".to_owned(),
            secrets: Vec::new(),
        });
    }
    let Some(file) = &environment.federated_token_file else {
        return Err(missing(format!(
            "provider azure found no Azure credentials: {} has no AZURE_CLIENT_SECRET, and the pod \
             has no AKS Workload Identity (AZURE_FEDERATED_TOKEN_FILE, which its webhook injects into \
             a pod labelled azure.workload.identity/use: \"true\" whose ServiceAccount is annotated \
             azure.workload.identity/client-id); give the Job's ServiceAccount a federated identity, \
             or put AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET in the Secret",
            secret.secret_name()
        )));
    };
    // The Secret may name the identity itself; else the webhook's variables.
    let pick = |key: &str, injected: &Option<String>| {
        secret
            .optional(key)
            .map(str::to_owned)
            .or_else(|| injected.clone())
            .ok_or_else(|| {
                missing(format!(
                    "AKS Workload Identity gave the pod no {key}: annotate the Job's ServiceAccount \
                     with azure.workload.identity/{} (or put {key} in {})",
                    if key == "AZURE_CLIENT_ID" { "client-id" } else { "tenant-id" },
                    secret.secret_name()
                ))
            })
    };
    let client = pick("AZURE_CLIENT_ID", &environment.client_id)?;
    let tenant = pick("AZURE_TENANT_ID", &environment.tenant_id)?;
    // Read anew for each purge: the kubelet rotates it.
    let assertion = std::fs::read_to_string(file)
        .map(|token| token.trim().to_owned())
        .map_err(|error| {
            NotPrepared::from(format!(
                "cannot read AZURE_FEDERATED_TOKEN_FILE ({file}): {error}"
            ))
        })?;
    Ok(TokenRequest {
        request: token_request(
            environment,
            &tenant,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &assertion),
                ("scope", SCOPE),
            ],
        ),
        from: format!("Entra ID (AKS Workload Identity, client {client})"),
        secrets: vec![assertion],
    })
}

/// The access token, and the secret values met on the way to it (the
/// federated token).
pub async fn token(
    secret: &Credentials,
    environment: &AzureEnvironment,
    limits: Limits,
    network: &Network,
) -> Result<(String, Vec<String>), NotPrepared> {
    let TokenRequest {
        request,
        from,
        secrets,
    } = request(secret, environment)?;
    let client = Client::new(limits, network, &hosts_of([request.url.as_str()]))
        .map_err(|error| error.to_string())?;
    let answer = client.send(&request).await;
    let hidden: Vec<&str> = secrets.iter().map(String::as_str).collect();
    if let Some(error) = &answer.error {
        return Err(NotPrepared {
            error: format!(
                "no access token from {from}: {error}; it answered: {}",
                crate::outcome::answer_excerpt(&answer.body, &hidden)
            ),
            status: answer.status,
            for_good: false,
        });
    }
    let token = serde_json::from_str::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|value| value["access_token"].as_str().map(str::to_owned))
        .ok_or_else(|| NotPrepared::from(format!("no access_token in the answer of {from}")))?;
    Ok((token, secrets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form_of(request: &PlannedRequest) -> Vec<(String, String)> {
        request
            .body
            .as_deref()
            .unwrap_or_default()
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }

    #[test]
    fn the_variables_are_those_the_webhook_injects() {
        let environment = AzureEnvironment::read(|name| match name {
            "AZURE_CLIENT_ID" => Some("0000-client".into()),
            "AZURE_TENANT_ID" => Some("1111-tenant".into()),
            "AZURE_AUTHORITY_HOST" => Some("https://login.microsoftonline.com/".into()),
            "AZURE_FEDERATED_TOKEN_FILE" => Some(" ".into()),
            _ => None,
        });
        assert_eq!(environment.client_id.as_deref(), Some("0000-client"));
        assert_eq!(environment.federated_token_file, None);
        assert_eq!(
            AzureEnvironment {
                authority_host: Some("https://login.example.test".into()),
                ..AzureEnvironment::default()
            }
            .authority(),
            "https://login.example.test/"
        );
    }

    #[test]
    fn client_credentials_from_the_secret_come_first() {
        let secret = Credentials::from_pairs(&[
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "client-1"),
            ("AZURE_CLIENT_SECRET", "s3cret/+="),
        ]);
        let environment = AzureEnvironment {
            federated_token_file: Some("/nonexistent".into()),
            ..AzureEnvironment::default()
        };
        let token = request(&secret, &environment).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            token.request.url,
            "https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token"
        );
        assert_eq!(
            form_of(&token.request),
            [
                ("grant_type", "client_credentials"),
                ("client_id", "client-1"),
                ("client_secret", "s3cret%2F%2B%3D"),
                ("scope", "https%3A%2F%2Fmanagement.azure.com%2F.default"),
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        let partial = Credentials::from_pairs(&[("AZURE_CLIENT_SECRET", "s")]);
        let refused = request(&partial, &environment).err().unwrap_or_default();
        assert!(refused.for_good);
        assert_eq!(
            refused.error,
            "the Secret cache-buster-credentials has AZURE_CLIENT_SECRET but no AZURE_TENANT_ID: \
             client credentials need AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET"
        );
    }

    #[test]
    fn without_a_client_secret_the_federated_token_is_the_assertion() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("azure-identity-token");
        std::fs::write(&file, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln\n").unwrap_or_else(|e| panic!("{e}"));
        let environment = AzureEnvironment {
            client_id: Some("client-wi".into()),
            tenant_id: Some("tenant-wi".into()),
            authority_host: Some("https://login.microsoftonline.com/".into()),
            federated_token_file: Some(file.display().to_string()),
        };
        let token =
            request(&Credentials::default(), &environment).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            token.request.url,
            "https://login.microsoftonline.com/tenant-wi/oauth2/v2.0/token"
        );
        let form = form_of(&token.request);
        assert!(form.contains(&(
            "client_assertion_type".into(),
            "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer".into()
        )));
        assert!(form.contains(&(
            "client_assertion".into(),
            "eyJhbGciOiJSUzI1NiJ9.e30.c2ln".into()
        )));
        assert_eq!(token.secrets, ["eyJhbGciOiJSUzI1NiJ9.e30.c2ln"]);

        let no_client = AzureEnvironment {
            client_id: None,
            ..environment
        };
        let refused = request(&Credentials::default(), &no_client)
            .err()
            .unwrap_or_default();
        assert!(
            refused
                .error
                .starts_with("AKS Workload Identity gave the pod no AZURE_CLIENT_ID: annotate the Job's ServiceAccount with azure.workload.identity/client-id"),
            "{}",
            refused.error
        );
    }

    #[test]
    fn with_neither_the_message_names_both_ways() {
        let refused = request(&Credentials::default(), &AzureEnvironment::default())
            .err()
            .unwrap_or_default();
        assert!(refused.for_good);
        assert!(refused.error.contains("no AZURE_CLIENT_SECRET"));
        assert!(refused.error.contains("AZURE_FEDERATED_TOKEN_FILE"));
        assert!(refused.error.contains("azure.workload.identity/use"));
    }
}
