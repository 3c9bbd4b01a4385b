//! Provider azure: Entra ID's token endpoint (a client secret, or AKS
//! Workload Identity's federated token), Front Door's purge through Azure
//! Resource Manager and its operations, as the double plays them.

use super::*;
use azure_double::{
    ARM_HOST, CLIENT_ID, CLIENT_SECRET, ENDPOINT, IDENTITY_CLIENT_ID, ISSUER, LOGIN_HOST,
    PROCESSING, PROFILE, RESOURCE_GROUP, SUBJECT, SUBSCRIPTION, TENANT,
};

/// A Secret for provider azure: the endpoint's coordinates, and the app
/// registration's client credentials when given.
pub(super) fn azure(setup: &Setup, name: &str, client_secret: Option<&str>) -> PathBuf {
    let mut files = vec![
        ("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION),
        ("AZURE_RESOURCE_GROUP", RESOURCE_GROUP),
        ("AZURE_PROFILE", PROFILE),
        ("AZURE_ENDPOINT", ENDPOINT),
    ];
    if let Some(secret) = client_secret {
        files.extend([
            ("AZURE_TENANT_ID", TENANT),
            ("AZURE_CLIENT_ID", CLIENT_ID),
            ("AZURE_CLIENT_SECRET", secret),
        ]);
    }
    setup.secret(name, &files)
}

/// What AKS Workload Identity's webhook gives the pod: the variables, and
/// the projected token (signed by the cluster's issuer) they point at.
fn workload_identity(setup: &Setup, token: &str) -> Vec<(&'static str, PathBuf)> {
    let file = setup.dir.path().join("azure-identity-token");
    std::fs::write(&file, token).unwrap();
    vec![
        ("AZURE_FEDERATED_TOKEN_FILE", file),
        ("AZURE_CLIENT_ID", PathBuf::from(IDENTITY_CLIENT_ID)),
        ("AZURE_TENANT_ID", PathBuf::from(TENANT)),
        (
            "AZURE_AUTHORITY_HOST",
            PathBuf::from(format!("https://{LOGIN_HOST}/")),
        ),
    ]
}

impl Setup {
    async fn purge_as(&self, secret: &Path, args: &[&str], env: &[(&'static str, PathBuf)]) -> Ran {
        let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
        self.purge_with(secret, args, &env).await
    }
}

fn purges(setup: &Setup) -> Vec<Recorded> {
    setup.cdn.requests(&format!(
        "{ARM_HOST}/subscriptions/{SUBSCRIPTION}/resourceGroups/"
    ))
}

/// With a client secret: one token from Entra ID, then for each host its
/// URLs' paths with that domain, then its prefixes as folders; each
/// operation polled (as its Retry-After says) until Succeeded, and its id
/// reported.
#[tokio::test]
async fn azure_with_a_client_secret_purges_each_host_and_waits_for_its_operations() {
    let setup = setup().await;
    let secret = azure(&setup, "azure-secret", Some(CLIENT_SECRET));
    let ran = setup
        .purge(
            &secret,
            &[
                "--provider=azure",
                "--url=https://shop.example.com/menu?lang=de",
                "--url=https://blog.example.com/",
                "--url=https://shop.example.com/cart",
                "--prefix=shop.example.com/blog/",
            ],
        )
        .await;
    assert!(ran.success, "{}", ran.output);
    ran.reveals_nothing();
    let tokens = setup
        .cdn
        .requests(&format!("{LOGIN_HOST}/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(tokens.len(), 1);
    let form = tokens[0].form();
    assert_eq!(form["client_secret"], CLIENT_SECRET, "{form:?}");
    assert_eq!(form["scope"], "https://management.azure.com/.default");

    let purges = purges(&setup);
    assert_eq!(
        bodies(&purges),
        [
            json!({"contentPaths": ["/menu", "/cart"], "domains": ["shop.example.com"]}),
            json!({"contentPaths": ["/"], "domains": ["blog.example.com"]}),
            json!({"contentPaths": ["/blog/*"], "domains": ["shop.example.com"]}),
        ]
    );
    for purge in &purges {
        assert_eq!(
            purge.path,
            format!(
                "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Cdn/profiles/{PROFILE}/afdEndpoints/{ENDPOINT}/purge?api-version=2023-05-01"
            )
        );
        assert_eq!(
            purge.header("authorization"),
            Some("Bearer eyJ0eXAiOiJKV1QifQ.double-arm-token-1")
        );
    }
    // Polled as ARM's Retry-After (1 s) says, not every 10 s.
    assert!(
        ran.took >= PROCESSING && ran.took < Duration::from_secs(9),
        "{:?}",
        ran.took
    );
    assert!(setup.cdn.requests("/operationresults/").len() >= 3);
    assert_eq!(
        ran.outcome["ids"],
        json!([
            "00000001-0000-4000-8000-000000000001",
            "00000002-0000-4000-8000-000000000002",
            "00000003-0000-4000-8000-000000000003"
        ])
    );
    assert_eq!(ran.outcome["purged"], json!(["3 URLs", "1 prefix"]));
}

/// Without a client secret, AKS Workload Identity: the projected token is
/// the client assertion of the identity the webhook names; nothing stored.
#[tokio::test]
async fn azure_without_a_secret_uses_the_pods_workload_identity() {
    let setup = setup().await;
    let secret = azure(&setup, "azure-identity", None);
    let token = azure_double::federated_token(ISSUER, SUBJECT, 3600);
    let ran = setup
        .purge_as(
            &secret,
            &["--provider=azure", "--everything"],
            &workload_identity(&setup, &token),
        )
        .await;
    assert!(ran.success, "{}", ran.output);
    ran.reveals_nothing();
    assert!(!ran.output.contains(&token) && !ran.message.contains(&token));
    let tokens = setup.cdn.requests(LOGIN_HOST);
    assert_eq!(tokens.len(), 1);
    let form = tokens[0].form();
    assert_eq!(form["client_id"], IDENTITY_CLIENT_ID);
    assert_eq!(form["client_assertion"], token);
    assert!(!form.contains_key("client_secret"), "{form:?}");
    assert_eq!(bodies(&purges(&setup)), [json!({"contentPaths": ["/*"]})]);
    assert_eq!(ran.outcome["purged"], json!(["everything"]));
}

/// Entra ID's refusals are quoted and fail the Job at once (exit 2):
/// a wrong client secret, a federated token for another ServiceAccount;
/// and with neither a secret nor an identity the message says both ways.
#[tokio::test]
async fn wrong_or_missing_azure_credentials_fail_at_once_naming_them() {
    let setup = setup().await;
    let secret = azure(&setup, "azure-wrong", Some("not-the-secret"));
    let ran = setup
        .purge(&secret, &["--provider=azure", "--everything"])
        .await;
    assert_eq!(ran.exit_code, Some(2), "{}", ran.output);
    let error = ran.outcome["failure"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("no access token from Entra ID (AZURE_CLIENT_SECRET): HTTP 401")
            && error.contains("AADSTS7000215"),
        "{error}"
    );
    assert_eq!(ran.outcome["failure"]["status"], json!(401));
    assert!(purges(&setup).is_empty());
    ran.reveals_nothing();

    let identity = azure(&setup, "azure-identity", None);
    let stranger = azure_double::federated_token(ISSUER, "system:serviceaccount:web:default", 3600);
    let ran = setup
        .purge_as(
            &identity,
            &["--provider=azure", "--everything"],
            &workload_identity(&setup, &stranger),
        )
        .await;
    assert_eq!(ran.exit_code, Some(2), "{}", ran.output);
    let error = ran.outcome["failure"]["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!(
            "no access token from Entra ID (AKS Workload Identity, client {IDENTITY_CLIENT_ID}): HTTP 400"
        )) && error.contains("AADSTS700213"),
        "{error}"
    );
    assert!(!ran.message.contains(&stranger));

    let ran = setup
        .purge(&identity, &["--provider=azure", "--everything"])
        .await;
    assert_eq!(ran.exit_code, Some(2), "{}", ran.output);
    let error = ran.outcome["failure"]["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "provider azure found no Azure credentials: the Secret cache-buster-credentials has no AZURE_CLIENT_SECRET"
        ) && error.contains("AZURE_FEDERATED_TOKEN_FILE"),
        "{error}"
    );
    assert!(setup.cdn.requests(ARM_HOST).is_empty());
}

/// ARM's 429 is waited out as its Retry-After says; an operation that ends
/// Failed fails the purge with ARM's message; one still InProgress when
/// the budget ends says Front Door goes on with it.
#[tokio::test]
async fn azure_waits_out_429_and_reports_a_failed_or_unfinished_operation() {
    let setup = setup().await;
    let secret = azure(&setup, "azure-secret", Some(CLIENT_SECRET));
    setup.cdn.azure(2, false, Duration::ZERO);
    let ran = setup
        .purge(
            &secret,
            &["--provider=azure", "--url=https://shop.example.com/"],
        )
        .await;
    assert!(ran.success, "{}", ran.output);
    assert_eq!(purges(&setup).len(), 3);

    setup.cdn.azure(0, true, Duration::ZERO);
    let ran = setup
        .purge(
            &secret,
            &["--provider=azure", "--url=https://shop.example.com/"],
        )
        .await;
    assert_eq!(ran.exit_code, Some(1), "{}", ran.output);
    // Every value of the Secret is hidden, the endpoint's name too.
    assert_eq!(
        ran.outcome["failure"]["error"],
        json!(
            "purge operation 00000002-0000-4000-8000-000000000002 ended in an error: Failed: BadRequest: The domain shop.example.com is not associated with endpoint [redacted]."
        )
    );

    setup.cdn.azure(0, false, Duration::from_secs(600));
    let ran = setup
        .purge(
            &secret,
            &[
                "--provider=azure",
                "--url=https://shop.example.com/",
                "--budget-seconds=3",
            ],
        )
        .await;
    assert!(!ran.success);
    let error = ran.outcome["failure"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("purge operation 00000003-0000-4000-8000-000000000003 is still InProgress at the end of the purge's budget; Front Door goes on with it"),
        "{error}"
    );
    assert!(ran.took < Duration::from_secs(10), "{:?}", ran.took);
    ran.reveals_nothing();
}

/// ARM's 202 says how long to wait before asking about the operation
/// (`Retry-After`): no operation is asked about sooner.
#[tokio::test]
async fn azure_asks_about_an_operation_no_sooner_than_its_202_says() {
    let setup = setup().await;
    let secret = azure(&setup, "azure-secret", Some(CLIENT_SECRET));
    let ran = setup
        .purge(
            &secret,
            &[
                "--provider=azure",
                "--url=https://shop.example.com/",
                "--url=https://blog.example.com/",
            ],
        )
        .await;
    assert!(ran.success, "{}", ran.output);
    let polls = setup.cdn.requests("/operationresults/");
    for (index, purge) in purges(&setup).iter().enumerate() {
        let id = format!("{:08x}-0000-4000-8000-{:012x}", index + 1, index + 1);
        let first = polls
            .iter()
            .find(|poll| poll.path.contains(&id))
            .unwrap_or_else(|| panic!("operation {id} never polled"));
        let waited = first.at.duration_since(purge.at);
        assert!(
            waited >= azure_double::ACCEPTED_RETRY_AFTER,
            "operation {id} polled {waited:?} after its 202"
        );
    }
}

/// A dry run reads no credential, asks for no token, shows the request.
#[tokio::test]
async fn an_azure_dry_run_sends_nothing() {
    let setup = setup().await;
    let ran = setup
        .purge(
            &setup.dir.path().join("no-secret"),
            &[
                "--provider=azure",
                "--dry-run",
                "--prefix=shop.example.com/blog",
            ],
        )
        .await;
    assert!(ran.success, "{}", ran.output);
    assert_eq!(
        ran.outcome["wouldSend"],
        json!([
            "POST https://management.azure.com/subscriptions/<AZURE_SUBSCRIPTION_ID>/resourceGroups/<AZURE_RESOURCE_GROUP>/providers/Microsoft.Cdn/profiles/<AZURE_PROFILE>/afdEndpoints/<AZURE_ENDPOINT>/purge?api-version=2023-05-01 (Authorization: Bearer <Entra ID access token>) {\"contentPaths\":[\"/blog/*\"],\"domains\":[\"shop.example.com\"]}"
        ])
    );
    assert!(setup.cdn.requests("/").is_empty());
}
