//! CloudFront's credentials, where an AWS SDK would find them in the pod:
//! the Secret's `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and
//! `AWS_SESSION_TOKEN`); else IRSA (STS `AssumeRoleWithWebIdentity` with
//! `AWS_ROLE_ARN` and the token of `AWS_WEB_IDENTITY_TOKEN_FILE`); else EKS
//! Pod Identity (the agent at `AWS_CONTAINER_CREDENTIALS_FULL_URI`, with the
//! token of `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`): the order of the AWS
//! SDKs' default chain (SPEC §5). The variables are those EKS injects.

use crate::client::Client;
use crate::credentials::Credentials;
use crate::not_prepared::NotPrepared;
use crate::request::{PlannedRequest, path_segment};
use crate::sigv4::SigV4;
use crate::xml::xml_text;

/// The pod's variables that say where its AWS identity is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsEnvironment {
    pub container_credentials_full_uri: Option<String>,
    pub container_authorization_token_file: Option<String>,
    pub role_arn: Option<String>,
    pub web_identity_token_file: Option<String>,
    /// `AWS_REGION`: STS's regional endpoint, as EKS's SDKs use.
    pub region: Option<String>,
}

impl AwsEnvironment {
    pub fn read(env: impl Fn(&str) -> Option<String>) -> AwsEnvironment {
        let set = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        AwsEnvironment {
            container_credentials_full_uri: set("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
            container_authorization_token_file: set("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
            role_arn: set("AWS_ROLE_ARN"),
            web_identity_token_file: set("AWS_WEB_IDENTITY_TOKEN_FILE"),
            region: set("AWS_REGION"),
        }
    }

    /// The STS host: regional when the pod has a region.
    pub fn sts_host(&self) -> String {
        match &self.region {
            Some(region) => format!("sts.{region}.amazonaws.com"),
            None => "sts.amazonaws.com".to_owned(),
        }
    }
}

/// Where the credentials came from, for the outcome and the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Secret,
    PodIdentity,
    WebIdentity,
}

/// Signing credentials for CloudFront, and every secret value met on the
/// way (tokens, keys) for the redaction of the outcome.
pub struct Resolved {
    pub signer: SigV4,
    pub source: Source,
    pub secrets: Vec<String>,
}

fn signer(access_key_id: &str, secret_access_key: &str, session_token: Option<&str>) -> SigV4 {
    SigV4 {
        access_key_id: access_key_id.to_owned(),
        secret_access_key: secret_access_key.to_owned(),
        session_token: session_token.map(str::to_owned),
        region: "us-east-1".to_owned(),
        service: "cloudfront",
    }
}

fn token(file: &str, variable: &str) -> Result<String, String> {
    std::fs::read_to_string(file)
        .map(|token| token.trim().to_owned())
        .map_err(|error| format!("cannot read {variable} ({file}): {error}"))
}

/// The credentials, from the first source that has them.
pub async fn resolve(
    secret: &Credentials,
    environment: &AwsEnvironment,
    client: &Client,
    session_name: &str,
) -> Result<Resolved, NotPrepared> {
    if let (Some(id), Some(key)) = (
        secret.optional("AWS_ACCESS_KEY_ID"),
        secret.optional("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Ok(Resolved {
            signer: signer(id, key, secret.optional("AWS_SESSION_TOKEN")),
            source: Source::Secret,
            secrets: Vec::new(),
        });
    }
    // The SDKs' default chain: web identity (IRSA) before the container
    // credentials endpoint (Pod Identity), so a pod that has both while it
    // moves from one to the other signs as the SDKs would.
    if let (Some(role), Some(file)) = (&environment.role_arn, &environment.web_identity_token_file)
    {
        let token = token(file, "AWS_WEB_IDENTITY_TOKEN_FILE")?;
        let form: String = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", role.as_str()),
            ("RoleSessionName", session_name),
            ("WebIdentityToken", token.as_str()),
        ]
        .iter()
        .map(|(name, value)| format!("{name}={}", path_segment(value)))
        .collect::<Vec<_>>()
        .join("&");
        let answer = client
            .send(&PlannedRequest::fetching(
                format!("https://{}/", environment.sts_host()),
                vec![(
                    "Content-Type".into(),
                    "application/x-www-form-urlencoded".to_owned(),
                )],
                Some(form),
                "credentials",
            ))
            .await;
        if let Some(error) = answer.error {
            return Err(NotPrepared {
                error: format!(
                    "STS AssumeRoleWithWebIdentity for {role} (IRSA) failed: {error}: {}",
                    crate::outcome::answer_excerpt(&answer.body, &[&token])
                ),
                status: answer.status,
                for_good: false,
            });
        }
        let field = |name| xml_text(&answer.body, name);
        let (Some(id), Some(key), Some(session)) = (
            field("AccessKeyId"),
            field("SecretAccessKey"),
            field("SessionToken"),
        ) else {
            return Err("STS's answer has no Credentials".to_owned().into());
        };
        return Ok(Resolved {
            signer: signer(&id, &key, Some(&session)),
            source: Source::WebIdentity,
            secrets: vec![token, key.into_owned(), session.into_owned()],
        });
    }
    if let (Some(uri), Some(file)) = (
        &environment.container_credentials_full_uri,
        &environment.container_authorization_token_file,
    ) {
        container_credentials_uri(uri).map_err(|problem| NotPrepared {
            error: format!("AWS_CONTAINER_CREDENTIALS_FULL_URI {uri:?} {problem}"),
            for_good: true,
            ..NotPrepared::default()
        })?;
        let token = token(file, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")?;
        let answer = client
            .send(&PlannedRequest::fetching(
                uri.clone(),
                vec![("Authorization".into(), token.clone())],
                None,
                "credentials",
            ))
            .await;
        if let Some(error) = answer.error {
            return Err(NotPrepared {
                error: format!(
                    "EKS Pod Identity (AWS_CONTAINER_CREDENTIALS_FULL_URI) gave no credentials: {error}: {}",
                    crate::outcome::answer_excerpt(&answer.body, &[&token])
                ),
                status: answer.status,
                for_good: false,
            });
        }
        let fields: serde_json::Value = serde_json::from_str(&answer.body)
            .map_err(|error| format!("EKS Pod Identity's answer is not JSON: {error}"))?;
        let field = |name: &str| fields.get(name).and_then(serde_json::Value::as_str);
        let (Some(id), Some(key)) = (field("AccessKeyId"), field("SecretAccessKey")) else {
            return Err(
                "EKS Pod Identity's answer has no AccessKeyId and SecretAccessKey"
                    .to_owned()
                    .into(),
            );
        };
        let session = field("Token");
        return Ok(Resolved {
            signer: signer(id, key, session),
            source: Source::PodIdentity,
            secrets: [Some(token.as_str()), Some(key), session]
                .into_iter()
                .flatten()
                .map(str::to_owned)
                .collect(),
        });
    }
    // Nothing to ask with: no retry of the pod mends it.
    Err(NotPrepared {
        error: format!(
            "provider cloudfront found no AWS credentials: {} has no AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY, and the pod has neither IRSA (AWS_ROLE_ARN, \
             AWS_WEB_IDENTITY_TOKEN_FILE) nor EKS Pod Identity (AWS_CONTAINER_CREDENTIALS_FULL_URI); \
             give the Job's ServiceAccount an IAM role, or put the keys in the Secret",
            secret.secret_name()
        ),
        status: None,
        for_good: true,
    })
}

/// Where the container credentials may be fetched from, as AWS's SDKs
/// allow it: any https URL; over plain http only the loopback, ECS's
/// 169.254.170.2 and EKS Pod Identity's 169.254.170.23 and [fd00:ec2::23]
/// (the token goes with the request, so it goes nowhere else).
pub fn container_credentials_uri(uri: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(uri).map_err(|error| format!("is not a URL ({error})"))?;
    let allowed_over_http = match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(address)) => {
            address.is_loopback()
                || address == std::net::Ipv4Addr::new(169, 254, 170, 2)
                || address == std::net::Ipv4Addr::new(169, 254, 170, 23)
        }
        Some(url::Host::Ipv6(address)) => {
            address.is_loopback()
                || address == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23)
        }
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if allowed_over_http => Ok(()),
        _ => Err(
            "is neither https nor the loopback, ECS's 169.254.170.2 or EKS Pod Identity's \
             169.254.170.23 or [fd00:ec2::23] over http, as AWS's SDKs require; its token is not sent there"
                .to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    /// The addresses AWS's SDKs fetch container credentials from, and
    /// those they refuse.
    #[rstest]
    #[case("http://169.254.170.23/v1/credentials", true)]
    #[case("http://[fd00:ec2::23]/v1/credentials", true)]
    #[case("http://169.254.170.2/creds", true)]
    #[case("http://127.0.0.1:8080/creds", true)]
    #[case("http://127.9.9.9/creds", true)]
    #[case("http://localhost/creds", true)]
    #[case("http://[::1]/creds", true)]
    #[case("https://credentials.example.com/creds", true)]
    #[case("http://credentials.example.com/creds", false)]
    #[case("http://10.0.0.1/creds", false)]
    #[case("http://169.254.169.254/latest", false)]
    #[case("ftp://127.0.0.1/creds", false)]
    #[case("not a url", false)]
    fn container_credentials_come_only_from_where_the_sdks_fetch_them(
        #[case] uri: &str,
        #[case] allowed: bool,
    ) {
        assert_eq!(container_credentials_uri(uri).is_ok(), allowed, "{uri}");
    }

    use super::*;

    #[test]
    fn the_variables_are_those_eks_injects() {
        let environment = AwsEnvironment::read(|name| match name {
            "AWS_ROLE_ARN" => Some("arn:aws:iam::111122223333:role/cache-buster".into()),
            "AWS_WEB_IDENTITY_TOKEN_FILE" => {
                Some("/var/run/secrets/eks.amazonaws.com/serviceaccount/token".into())
            }
            "AWS_REGION" => Some("eu-west-1".into()),
            "AWS_CONTAINER_CREDENTIALS_FULL_URI" => Some("  ".into()),
            _ => None,
        });
        assert_eq!(environment.sts_host(), "sts.eu-west-1.amazonaws.com");
        assert_eq!(environment.container_credentials_full_uri, None);
        assert_eq!(AwsEnvironment::default().sts_host(), "sts.amazonaws.com");
    }
}
