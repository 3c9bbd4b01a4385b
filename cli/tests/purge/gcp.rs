//! Provider gcp: Google's token endpoint and metadata server, Cloud CDN's
//! invalidations and their Operations, as the double plays them.

use super::*;

/// A Secret for provider gcp: the project and URL map, and the
/// service-account key when given.
pub(super) fn gcp(setup: &Setup, name: &str, with_key: Option<String>) -> PathBuf {
    let mut files = vec![
        ("GCP_PROJECT", google::PROJECT.to_owned()),
        ("GCP_URL_MAP", google::URL_MAP.to_owned()),
    ];
    if let Some(key) = with_key {
        files.push(("GCP_SERVICE_ACCOUNT_KEY", key));
    }
    let files: Vec<(&str, &str)> = files.iter().map(|(k, v)| (*k, v.as_str())).collect();
    setup.secret(name, &files)
}

const GCP_TARGETS: [&str; 5] = [
    "--provider=gcp",
    "--url=https://shop.example.com/menu?lang=de",
    "--prefix=shop.example.com/blog/",
    "--tag=shop",
    "--tag=home",
];

/// Provider gcp with a service-account key: a JWT signed RS256, which
/// Google's token endpoint (the double) verifies, exchanged for a token;
/// one invalidateCache per path, prefix and set of tags; each Operation
/// polled until DONE.
#[tokio::test]
async fn gcp_with_a_key_invalidates_and_waits_for_each_operation() {
    let setup = setup().await;
    let secret = gcp(&setup, "gcp-key", Some(google::service_account_key()));
    let ran = setup.purge(&secret, &GCP_TARGETS).await;
    assert!(ran.success, "{}", ran.output);
    ran.reveals_nothing();
    assert_eq!(setup.cdn.requests("oauth2.googleapis.com/token").len(), 1);
    let invalidations = setup.cdn.requests("/urlMaps/shop-lb/invalidateCache");
    assert_eq!(
        bodies(&invalidations),
        [
            json!({"path": "/menu", "host": "shop.example.com"}),
            json!({"path": "/blog/*", "host": "shop.example.com"}),
            json!({"cacheTags": ["shop", "home"]}),
        ]
    );
    for request in &invalidations {
        assert_eq!(
            request.header("authorization"),
            Some("Bearer ya29.double-token-1")
        );
    }
    assert!(ran.took >= google::PROCESSING, "{:?}", ran.took);
    assert!(setup.cdn.requests("/global/operations/").len() >= 3);
    assert_eq!(
        ran.outcome["ids"],
        json!([
            "operation-1-invalidate",
            "operation-2-invalidate",
            "operation-3-invalidate"
        ])
    );
    assert_eq!(
        ran.outcome["purged"],
        json!(["1 URL", "1 prefix", "2 tags"])
    );
}

/// Without a key, GKE Workload Identity: the metadata server's token
/// (`GCE_METADATA_HOST`, `Metadata-Flavor: Google`), no key stored.
#[tokio::test]
async fn gcp_without_a_key_uses_the_metadata_servers_token() {
    let setup = setup().await;
    let metadata = google::MetadataServer::start().await.unwrap();
    let secret = gcp(&setup, "gcp-identity", None);
    let host = PathBuf::from(&metadata.host);
    let ran = setup
        .purge_with(
            &secret,
            &["--provider=gcp", "--everything"],
            &[("GCE_METADATA_HOST", &host)],
        )
        .await;
    assert!(ran.success, "{}", ran.output);
    ran.reveals_nothing();
    assert_eq!(metadata.requests(), 1);
    assert!(setup.cdn.requests("oauth2.googleapis.com").is_empty());
    let invalidations = setup.cdn.requests("/invalidateCache");
    assert_eq!(bodies(&invalidations), [json!({"path": "/*"})]);
    assert_eq!(
        invalidations[0].header("authorization"),
        Some(format!("Bearer {}", google::METADATA_TOKEN).as_str())
    );
}

/// Google's other answer to too many requests, a 403 rateLimitExceeded,
/// is waited out like a 429; a wrong credential is named, its answer quoted.
#[tokio::test]
async fn gcp_rate_limits_are_waited_out_and_a_refused_key_is_named() {
    let setup = setup().await;
    setup.cdn.rate_limit_google(2);
    let secret = gcp(&setup, "gcp-key", Some(google::service_account_key()));
    let ran = setup
        .purge(&secret, &["--provider=gcp", "--tag=shop"])
        .await;
    assert!(ran.success, "{}", ran.output);
    assert_eq!(setup.cdn.requests("/invalidateCache").len(), 3);
    assert_eq!(ran.outcome["attempts"].as_u64().map(|n| n >= 3), Some(true));

    let stranger = google::service_account_key().replace(
        google::SERVICE_ACCOUNT,
        "someone@elsewhere.iam.gserviceaccount.com",
    );
    let secret = gcp(&setup, "gcp-stranger", Some(stranger));
    let ran = setup
        .purge(&secret, &["--provider=gcp", "--tag=shop"])
        .await;
    assert_eq!(ran.exit_code, Some(2), "{}", ran.output);
    let error = ran.outcome["failure"]["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "no access token from Google's token endpoint (GCP_SERVICE_ACCOUNT_KEY): HTTP 400"
        ) && error.contains("invalid_grant"),
        "{error}"
    );
    ran.reveals_nothing();
}

/// A dry run asks for no token and shows where it would go.
#[tokio::test]
async fn a_gcp_dry_run_sends_nothing() {
    let setup = setup().await;
    let ran = setup
        .purge(
            &setup.dir.path().join("no-secret"),
            &["--provider=gcp", "--dry-run", "--tag=shop"],
        )
        .await;
    assert!(ran.success, "{}", ran.output);
    assert_eq!(
        ran.outcome["wouldSend"],
        json!([
            "POST https://compute.googleapis.com/compute/v1/projects/<GCP_PROJECT>/global/urlMaps/<GCP_URL_MAP>/invalidateCache (Authorization: Bearer <GCP access token>) {\"cacheTags\":[\"shop\"]}"
        ])
    );
    assert!(setup.cdn.requests("/").is_empty());
}

/// The budget counts from the purge's start for every layer and every
/// identity look-up: after a Cloudflare layer that took 2 of the 4 s, the
/// token of the gcp layer (a metadata server that never answers) gets what
/// is left, not 4 s of its own, so the outcome is written before the
/// Job's deadline.
#[tokio::test]
async fn an_identity_look_up_has_only_what_is_left_of_the_budget() {
    let setup = setup().await;
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = PathBuf::from(silent.local_addr().unwrap().to_string());
    let secret = setup.secret(
        "cloudflare-then-gcp",
        &[
            ("CLOUDFLARE_ZONE_ID", "zone-1"),
            ("CLOUDFLARE_API_TOKEN", CLOUDFLARE_TOKEN),
            ("GCP_PROJECT", google::PROJECT),
            ("GCP_URL_MAP", google::URL_MAP),
        ],
    );
    setup.cdn.fail(
        "api.cloudflare.com",
        Failure::Slow {
            duration: Duration::from_secs(2),
        },
    );
    let ran = setup
        .purge_with(
            &secret,
            &[
                "--provider=cloudflare,gcp",
                "--url=https://shop.example.com/",
                "--budget-seconds=4",
            ],
            &[("GCE_METADATA_HOST", &host)],
        )
        .await;
    assert!(!ran.success, "{}", ran.output);
    assert_eq!(
        ran.outcome["layers"][0]["result"], "purged",
        "{}",
        ran.message
    );
    assert!(
        ran.took < Duration::from_millis(4800),
        "the purge ran {:?} on a budget of 4 s",
        ran.took
    );
    drop(silent);
}
