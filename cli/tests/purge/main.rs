//! The purge program, the real binary, against the project's CDN double
//! (TLS with a test CA, on loopback), for every provider: its requests and
//! batches, what it does when the CDN fails (503 n times, 429 with
//! Retry-After, a permanent 5xx, a hang, a wrong credential), a missing
//! Secret or key, and that no secret reaches its output or its outcome.
//! The only test-only inputs are the CA to trust and the address to
//! connect to (commands.rs); the argv is the Job's.

use cache_buster_e2e_cluster::aws::{self, PodIdentityAgent};
use cache_buster_e2e_cluster::caches::{Caches, EndpointsApi};
use cache_buster_e2e_cluster::cdn::{
    AKAMAI_ACCESS_TOKEN, AKAMAI_CLIENT_SECRET, AKAMAI_CLIENT_TOKEN, AKAMAI_HOST, CdnDouble,
    Failure, Recorded,
};
use cache_buster_e2e_cluster::pki::Pki;
use cache_buster_e2e_cluster::{azure as azure_double, google};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod azure;
mod content;
mod gcp;

const PROGRAM: &str = env!("CARGO_BIN_EXE_cache-buster");
const CLOUDFLARE_TOKEN: &str = "cf-token-s3cret-0123";
const FASTLY_KEY: &str = "fastly-key-s3cret-4567";
const WEBHOOK_TOKEN: &str = "hook-token-s3cret-89ab";
const BUNNY_KEY: &str = "bunny-key-s3cret-cdef";

struct Setup {
    dir: tempfile::TempDir,
    pki: Pki,
    cdn: CdnDouble,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path()).unwrap();
    let cdn = CdnDouble::start(&pki, 0).await.unwrap();
    Setup { dir, pki, cdn }
}

/// What one run of `purge` left: exit code, output, termination message.
struct Ran {
    success: bool,
    /// 1 for a failure the Job retries, 2 for one it fails at once on.
    exit_code: Option<i32>,
    output: String,
    outcome: Value,
    message: String,
    took: Duration,
}

impl Setup {
    fn secret(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (key, value) in files {
            // As a Secret made from a file: a trailing newline.
            std::fs::write(dir.join(key), format!("{value}\n")).unwrap();
        }
        dir
    }

    async fn purge(&self, credentials: &Path, args: &[&str]) -> Ran {
        self.purge_with(credentials, args, &[]).await
    }

    /// The same, with these variables besides the test-only ones (the
    /// kubeconfig of provider http's API).
    async fn purge_with(&self, credentials: &Path, args: &[&str], env: &[(&str, &Path)]) -> Ran {
        let log = self.dir.path().join("termination-log");
        let _ = std::fs::remove_file(&log);
        let started = Instant::now();
        let output = tokio::process::Command::new(PROGRAM)
            .arg("purge")
            .args(["--secret", "cache-buster-credentials", "--credentials"])
            .arg(credentials)
            .arg("--termination-log")
            .arg(&log)
            .args(args)
            .env_clear()
            .env("CACHE_BUSTER_TEST_CA_FILE", self.pki.ca_file())
            .env("CACHE_BUSTER_TEST_CONNECT_TO", self.cdn.address.to_string())
            .envs(env.iter().copied())
            .output()
            .await
            .unwrap();
        let took = started.elapsed();
        let message = std::fs::read_to_string(&log).unwrap_or_default();
        Ran {
            success: output.status.success(),
            exit_code: output.status.code(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
            outcome: serde_json::from_str(&message).unwrap_or(Value::Null),
            message,
            took,
        }
    }
}

impl Setup {
    /// A Cloudflare purge with the zone and token of [`cloudflare`].
    async fn purge_cloudflare(&self, args: &[&str]) -> Ran {
        let mut all = vec!["--provider=cloudflare"];
        all.extend(args);
        self.purge(&cloudflare(self), &all).await
    }
}

impl Ran {
    /// No secret in what the program printed or reported.
    fn reveals_nothing(&self) {
        for secret in [
            CLOUDFLARE_TOKEN,
            FASTLY_KEY,
            WEBHOOK_TOKEN,
            BUNNY_KEY,
            AKAMAI_CLIENT_SECRET,
            aws::SECRET_ACCESS_KEY,
            aws::FROM_STS.1,
            aws::FROM_STS.2,
            aws::FROM_AGENT.1,
            aws::FROM_AGENT.2,
            aws::WEB_IDENTITY_TOKEN,
            aws::POD_IDENTITY_TOKEN,
            google::METADATA_TOKEN,
            "ya29.double-token",
            azure_double::CLIENT_SECRET,
            "double-arm-token",
            // A federated token's signed header ({"alg":"RS256","kid":"test"}).
            "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ",
            "BEGIN PRIVATE KEY",
            "hooks.example.test/s3cret",
        ] {
            assert!(
                !self.output.contains(secret),
                "{secret} printed: {}",
                self.output
            );
            assert!(
                !self.message.contains(secret),
                "{secret} reported: {}",
                self.message
            );
        }
    }
}

fn cloudflare(setup: &Setup) -> PathBuf {
    setup.secret(
        "cloudflare",
        &[
            ("CLOUDFLARE_ZONE_ID", "zone-1"),
            ("CLOUDFLARE_API_TOKEN", CLOUDFLARE_TOKEN),
        ],
    )
}

fn bodies(requests: &[Recorded]) -> Vec<Value> {
    requests
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn cloudflare_purges_in_batches_with_the_token() {
    let setup = setup().await;
    let urls: Vec<String> = (0..31)
        .map(|i| format!("--url=https://www.example.com/{i}"))
        .collect();
    let mut args: Vec<&str> = urls.iter().map(String::as_str).collect();
    args.extend([
        "--provider=cloudflare",
        "--prefix=www.example.com/blog",
        "--host=static.example.com",
        "--tag=shop",
        "--tag=home",
    ]);
    let ran = setup.purge(&cloudflare(&setup), &args).await;
    assert!(ran.success, "{}", ran.output);
    let requests = setup
        .cdn
        .requests("api.cloudflare.com/client/v4/zones/zone-1/purge_cache");
    assert_eq!(requests.len(), 5);
    let bodies = bodies(&requests);
    assert_eq!(bodies[0]["files"].as_array().unwrap().len(), 30);
    assert_eq!(bodies[1], json!({"files": ["https://www.example.com/30"]}));
    assert_eq!(bodies[2], json!({"prefixes": ["www.example.com/blog"]}));
    assert_eq!(bodies[3], json!({"hosts": ["static.example.com"]}));
    assert_eq!(bodies[4], json!({"tags": ["shop", "home"]}));
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {CLOUDFLARE_TOKEN}").as_str())
        );
        assert_eq!(request.header("content-type"), Some("application/json"));
    }
    assert_eq!(ran.outcome["provider"], "cloudflare");
    assert_eq!(ran.outcome["result"], "purged");
    assert_eq!(ran.outcome["requests"], 5);
    assert_eq!(
        ran.outcome["purged"],
        json!(["31 URLs", "1 prefix", "1 host", "2 tags"])
    );
    // One purge id a request, as Cloudflare answers them.
    let ids = ran.outcome["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 5);
    assert!(
        ids.iter().all(|id| id.as_str().unwrap().len() == 16),
        "{ids:?}"
    );
    ran.reveals_nothing();
}

#[tokio::test]
async fn cloudflare_purges_everything_alone() {
    let setup = setup().await;
    let ran = setup
        .purge_cloudflare(&["--everything", "--url=https://www.example.com/"])
        .await;
    assert!(ran.success, "{}", ran.output);
    assert_eq!(
        bodies(&setup.cdn.requests("api.cloudflare.com")),
        [json!({"purge_everything": true})]
    );
    assert_eq!(ran.outcome["purged"], json!(["everything"]));
}

#[tokio::test]
async fn fastly_keys_and_urls_go_to_the_api_host_only() {
    fastly_key_goes_to_no_other_api_path().await;
    let setup = setup().await;
    let secret = setup.secret(
        "fastly",
        &[
            ("FASTLY_SERVICE_ID", "svc-1"),
            ("FASTLY_API_TOKEN", FASTLY_KEY),
        ],
    );
    let ran = setup
        .purge(
            &secret,
            &[
                "--provider=fastly",
                "--tag=shop",
                "--tag=home",
                "--url=https://shop.example.com/a/b?c=1",
                // A host the annotation's author may own: the key must not go there.
                "--url=http://www.example.com/steal",
            ],
        )
        .await;
    assert!(ran.success, "{}", ran.output);
    let all = setup.cdn.requests("");
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|r| r.host == "api.fastly.com"), "{all:?}");
    assert!(
        all.iter()
            .all(|r| r.header("fastly-key") == Some(FASTLY_KEY))
    );
    assert_eq!(all[0].path, "/service/svc-1/purge");
    assert_eq!(all[0].header("surrogate-key"), Some("shop home"));
    // The URL's query is part of Fastly's {cached_url}, not the API call's.
    assert_eq!(all[1].path, "/purge/shop.example.com/a/b%3Fc=1");
    assert_eq!(all[2].path, "/purge/www.example.com/steal");
    assert_eq!(ran.outcome["purged"], json!(["2 surrogate keys", "2 URLs"]));
    assert!(all.iter().all(|r| r.header("fastly-soft-purge").is_none()));
    ran.reveals_nothing();

    // fastlySoftPurge: each request marks stale instead of evicting.
    let ran = setup
        .purge(
            &secret,
            &[
                "--provider=fastly",
                "--tag=shop",
                "--url=https://shop.example.com/a",
                "--fastly-soft-purge=true",
            ],
        )
        .await;
    assert!(ran.success, "{}", ran.output);
    let soft = &setup.cdn.requests("")[3..];
    assert_eq!(soft.len(), 2, "{soft:?}");
    assert!(
        soft.iter()
            .all(|r| r.header("fastly-soft-purge") == Some("1")),
        "{soft:?}"
    );

    let ran = setup
        .purge(&secret, &["--provider=fastly", "--everything"])
        .await;
    assert!(ran.success, "{}", ran.output);
    assert_eq!(setup.cdn.requests("/service/svc-1/purge_all").len(), 1);
}

#[tokio::test]
async fn the_webhook_gets_its_payload_and_a_token_only_when_there_is_one() {
    let setup = setup().await;
    let context = [
        "--provider=webhook",
        "--tag=shop",
        "--site=shop",
        "--namespace=web",
        "--deployment=shop",
        "--image=ghcr.io/acme/shop:1.4.3",
        "--image-hash=b4612648a6",
        "--job-name=shop-cache-buster-b4612648a6",
    ];
    let with_token = setup.secret(
        "hook",
        &[
            ("WEBHOOK_URL", "https://hooks.example.test/s3cret/purge"),
            ("WEBHOOK_TOKEN", WEBHOOK_TOKEN),
        ],
    );
    let ran = setup.purge(&with_token, &context).await;
    assert!(ran.success, "{}", ran.output);
    let requests = setup.cdn.requests("hooks.example.test/s3cret/purge");
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {WEBHOOK_TOKEN}").as_str())
    );
    assert_eq!(
        bodies(&requests)[0],
        json!({"site": "shop", "namespace": "web", "deployment": "shop",
               "image": "ghcr.io/acme/shop:1.4.3", "imageHash": "b4612648a6",
               "jobName": "shop-cache-buster-b4612648a6",
               "urls": [], "prefixes": [], "hosts": [], "tags": ["shop"], "everything": false})
    );
    ran.reveals_nothing();

    let without_token = setup.secret(
        "hook-open",
        &[("WEBHOOK_URL", "https://hooks.example.test/open")],
    );
    let ran = setup.purge(&without_token, &context).await;
    assert!(ran.success, "{}", ran.output);
    let requests = setup.cdn.requests("hooks.example.test/open");
    assert_eq!(requests[0].header("authorization"), None);
}

#[tokio::test]
async fn a_cdn_that_answers_503_twice_is_retried() {
    let setup = setup().await;
    setup
        .cdn
        .fail("api.cloudflare.com", Failure::Unavailable { times: 2 });
    let ran = setup.purge_cloudflare(&["--tag=shop"]).await;
    assert!(ran.success, "{}", ran.output);
    assert_eq!(setup.cdn.requests("api.cloudflare.com").len(), 3);
    assert_eq!(ran.outcome["requests"], 1);
    assert_eq!(ran.outcome["attempts"], 3);
}

#[tokio::test]
async fn a_429_waits_as_long_as_retry_after_says() {
    let setup = setup().await;
    setup.cdn.fail(
        "api.cloudflare.com",
        Failure::RateLimited {
            times: 1,
            retry_after: 2,
        },
    );
    let ran = setup.purge_cloudflare(&["--tag=shop"]).await;
    assert!(ran.success, "{}", ran.output);
    let requests = setup.cdn.requests("api.cloudflare.com");
    assert_eq!(requests.len(), 2);
    let waited = requests[1].at - requests[0].at;
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
    assert!(waited < Duration::from_secs(4), "retried after {waited:?}");
}

#[tokio::test]
async fn a_permanent_5xx_fails_within_the_budget_quoting_the_cdn() {
    let setup = setup().await;
    setup
        .cdn
        .fail("api.cloudflare.com", Failure::Permanent { status: 503 });
    let ran = setup
        .purge_cloudflare(&["--tag=shop", "--budget-seconds=4"])
        .await;
    assert!(!ran.success);
    assert_eq!(
        ran.exit_code,
        Some(1),
        "a 5xx may pass: the Job tries again"
    );
    assert!(ran.took < Duration::from_secs(8), "took {:?}", ran.took);
    assert!(setup.cdn.requests("api.cloudflare.com").len() >= 3);
    assert_eq!(ran.outcome["result"], "failed");
    let failure = &ran.outcome["failure"];
    assert_eq!(failure["status"], 503);
    assert_eq!(
        failure["request"],
        "POST https://api.cloudflare.com/client/v4/zones/[redacted]/purge_cache"
    );
    assert!(
        failure["error"].as_str().unwrap().contains("budget of 4s"),
        "{failure}"
    );
    assert!(
        failure["answer"]
            .as_str()
            .unwrap()
            .contains("origin is down for maintenance"),
        "{failure}"
    );
    ran.reveals_nothing();
}

/// A credential of one character (a test's `t`) is hidden where it stands
/// whole, not letter by letter: the message stays readable.
#[tokio::test]
async fn a_one_character_token_is_hidden_without_turning_the_message_into_noise() {
    let setup = setup().await;
    setup
        .cdn
        .fail("api.cloudflare.com", Failure::Permanent { status: 503 });
    let short = setup.secret(
        "short",
        &[
            ("CLOUDFLARE_ZONE_ID", "zone-t"),
            ("CLOUDFLARE_API_TOKEN", "t"),
        ],
    );
    let ran = setup
        .purge(
            &short,
            &["--provider=cloudflare", "--tag=shop", "--budget-seconds=2"],
        )
        .await;
    let failure = &ran.outcome["failure"];
    assert_eq!(
        failure["request"],
        "POST https://api.cloudflare.com/client/v4/zones/[redacted]/purge_cache"
    );
    let error = failure["error"].as_str().unwrap();
    assert!(error.starts_with("HTTP 503; "), "{error}");
    assert!(!error.contains("[redacted]"), "{error}");
    assert!(
        failure["answer"]
            .as_str()
            .unwrap()
            .contains("origin is down for maintenance"),
        "{failure}"
    );
}

#[tokio::test]
async fn a_request_is_tried_six_times_at_most() {
    let setup = setup().await;
    // Retry-After: 1, so the six tries take about five seconds.
    setup
        .cdn
        .fail("api.cloudflare.com", Failure::Permanent { status: 503 });
    let ran = setup.purge_cloudflare(&["--tag=shop"]).await;
    assert!(!ran.success);
    assert_eq!(setup.cdn.requests("api.cloudflare.com").len(), 6);
    assert_eq!(ran.outcome["attempts"], 6);
    assert_eq!(
        ran.outcome["failure"]["error"],
        "HTTP 503; gave up after 6 tries"
    );
}

#[tokio::test]
async fn a_hanging_cdn_is_given_up_when_the_budget_ends() {
    let setup = setup().await;
    setup.cdn.fail(
        "api.cloudflare.com",
        Failure::Hang {
            duration: Duration::from_secs(30),
        },
    );
    let ran = setup
        .purge_cloudflare(&["--tag=shop", "--budget-seconds=3"])
        .await;
    assert!(!ran.success);
    assert!(ran.took < Duration::from_secs(6), "took {:?}", ran.took);
    assert!(
        ran.outcome["failure"]["error"]
            .as_str()
            .unwrap()
            .starts_with("no answer within"),
        "{}",
        ran.message
    );
}

#[tokio::test]
async fn a_wrong_credential_gets_the_providers_answer_without_retries() {
    let setup = setup().await;
    setup.cdn.fail(
        "api.cloudflare.com",
        Failure::Credential {
            expected: "the-right-token".into(),
        },
    );
    let ran = setup.purge_cloudflare(&["--tag=shop"]).await;
    assert!(!ran.success);
    assert_eq!(ran.exit_code, Some(2), "a refused credential is final");
    assert_eq!(setup.cdn.requests("api.cloudflare.com").len(), 1);
    assert_eq!(ran.outcome["failure"]["status"], 403);
    assert!(
        ran.outcome["failure"]["answer"]
            .as_str()
            .unwrap()
            .contains("Authentication error")
    );
    ran.reveals_nothing();

    let fastly = setup.secret(
        "fastly-wrong",
        &[
            ("FASTLY_SERVICE_ID", "svc"),
            ("FASTLY_API_TOKEN", FASTLY_KEY),
        ],
    );
    setup.cdn.fail(
        "api.fastly.com",
        Failure::Credential {
            expected: "the-right-key".into(),
        },
    );
    let ran = setup
        .purge(&fastly, &["--provider=fastly", "--tag=shop"])
        .await;
    assert_eq!(ran.outcome["failure"]["status"], 401);
    assert!(
        ran.outcome["failure"]["answer"]
            .as_str()
            .unwrap()
            .contains("Provided credentials are missing or invalid")
    );
    ran.reveals_nothing();
}

#[tokio::test]
async fn a_missing_secret_or_key_fails_at_once_naming_them() {
    let setup = setup().await;
    let no_token = setup.secret("partial", &[("CLOUDFLARE_ZONE_ID", "zone-1")]);
    let ran = setup
        .purge(&no_token, &["--provider=cloudflare", "--tag=shop"])
        .await;
    // Final: the Job's podFailurePolicy fails it at once on exit code 2.
    assert_eq!(ran.exit_code, Some(2), "{}", ran.output);
    assert_eq!(
        ran.outcome["failure"]["error"],
        "the Secret cache-buster-credentials has no key CLOUDFLARE_API_TOKEN (cloudflare needs CLOUDFLARE_ZONE_ID, CLOUDFLARE_API_TOKEN)"
    );
    let missing = setup.secret("missing", &[]);
    let ran = setup.purge(&missing, &["--provider=webhook"]).await;
    assert_eq!(ran.exit_code, Some(2), "{}", ran.output);
    let error = ran.outcome["failure"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("the Secret cache-buster-credentials is missing or empty"),
        "{error}"
    );
    assert!(ran.took < Duration::from_secs(2), "took {:?}", ran.took);
    assert!(setup.cdn.requests("").is_empty());
}

/// A dry run (`P/dry-run: "true"`) reads no Secret and sends nothing, and
/// its outcome quotes each request it would have sent, credentials shown
/// as `<KEY>`.
#[tokio::test]
async fn a_dry_run_sends_nothing_and_says_what_it_would_have_sent() {
    let setup = setup().await;
    let missing = setup.secret("none", &[]);
    let ran = setup
        .purge(
            &missing,
            &[
                "--provider=cloudflare",
                "--dry-run",
                "--url=https://shop.example.test/",
                "--tag=shop",
            ],
        )
        .await;
    assert!(ran.success, "{}", ran.output);
    assert_eq!(ran.outcome["result"], "dry-run");
    assert_eq!(ran.outcome["requests"], 0);
    assert_eq!(ran.outcome["purged"], json!(["1 URL", "1 tag"]));
    assert_eq!(
        ran.outcome["wouldSend"],
        json!([
            r#"POST https://api.cloudflare.com/client/v4/zones/<CLOUDFLARE_ZONE_ID>/purge_cache (Authorization: Bearer <CLOUDFLARE_API_TOKEN>) {"files":["https://shop.example.test/"]}"#,
            r#"POST https://api.cloudflare.com/client/v4/zones/<CLOUDFLARE_ZONE_ID>/purge_cache (Authorization: Bearer <CLOUDFLARE_API_TOKEN>) {"tags":["shop"]}"#,
        ])
    );

    // Even with a Secret mounted, not one of its values is read.
    let real = setup.secret(
        "fastly",
        &[
            ("FASTLY_SERVICE_ID", "svc-1"),
            ("FASTLY_API_TOKEN", FASTLY_KEY),
        ],
    );
    let ran = setup
        .purge(&real, &["--provider=fastly", "--dry-run", "--tag=shop"])
        .await;
    assert!(ran.success, "{}", ran.output);
    assert_eq!(
        ran.outcome["wouldSend"],
        json!([
            "POST https://api.fastly.com/service/<FASTLY_SERVICE_ID>/purge (Fastly-Key: <FASTLY_API_TOKEN>, Surrogate-Key: shop)"
        ])
    );
    assert!(!ran.message.contains("svc-1"), "{}", ran.message);
    ran.reveals_nothing();
    assert!(setup.cdn.requests("").is_empty());
}

/// Bunny: each URL and prefix through `/purge?url=`, each tag through the
/// pull zone, the key in `AccessKey` to api.bunny.net only, and the
/// requests paced to Bunny's rates (a wildcard purge 2 s after the one
/// before it).
#[tokio::test]
async fn bunny_purges_urls_prefixes_and_tags_paced_to_its_rates() {
    let setup = setup().await;
    let secret = setup.secret(
        "bunny",
        &[("BUNNY_API_KEY", BUNNY_KEY), ("BUNNY_PULL_ZONE_ID", "4711")],
    );
    let ran = setup
        .purge(
            &secret,
            &[
                "--provider=bunny",
                "--url=https://shop.example.com/a?b=1",
                "--prefix=shop.example.com/blog/",
                "--tag=shop",
            ],
        )
        .await;
    assert!(ran.success, "{}", ran.output);
    let all = setup.cdn.requests("");
    let seen: Vec<(&str, &str, &str)> = all
        .iter()
        .map(|r| (r.host.as_str(), r.path.as_str(), r.body.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (
                "api.bunny.net",
                "/purge?url=https%3A%2F%2Fshop.example.com%2Fa%3Fb%3D1",
                ""
            ),
            (
                "api.bunny.net",
                "/purge?url=https%3A%2F%2Fshop.example.com%2Fblog%2F%2A",
                ""
            ),
            (
                "api.bunny.net",
                "/pullzone/4711/purgeCache",
                r#"{"CacheTag":"shop"}"#
            ),
        ]
    );
    assert!(all.iter().all(|r| r.header("accesskey") == Some(BUNNY_KEY)));
    assert!(
        all[1].at - all[0].at >= std::time::Duration::from_secs(2),
        "a wildcard purge {:?} after the purge before it",
        all[1].at - all[0].at
    );
    assert!(all[2].at - all[1].at >= std::time::Duration::from_millis(200));
    assert_eq!(ran.outcome["purged"], json!(["1 URL", "1 prefix", "1 tag"]));
    ran.reveals_nothing();

    let ran = setup
        .purge(&secret, &["--provider=bunny", "--everything"])
        .await;
    assert!(ran.success, "{}", ran.output);
    let everything = setup.cdn.requests("/pullzone/4711/purgeCache");
    assert_eq!(everything.last().map(|r| r.body.as_str()), Some(""));
}

/// Bunny's own answers: a wrong key is refused at once with its 401, a
/// 429 is waited out as Retry-After says.
#[tokio::test]
async fn bunny_refuses_a_wrong_key_and_its_429_is_waited_out() {
    let setup = setup().await;
    let wrong = setup.secret(
        "bunny-wrong",
        &[("BUNNY_API_KEY", BUNNY_KEY), ("BUNNY_PULL_ZONE_ID", "4711")],
    );
    setup.cdn.fail(
        "api.bunny.net/purge?",
        Failure::Credential {
            expected: "the-right-key".into(),
        },
    );
    let ran = setup
        .purge(
            &wrong,
            &["--provider=bunny", "--url=https://shop.example.com/"],
        )
        .await;
    assert!(!ran.success);
    assert_eq!(setup.cdn.requests("api.bunny.net/purge?").len(), 1);
    assert_eq!(ran.outcome["failure"]["status"], 401);
    assert!(
        ran.outcome["failure"]["answer"]
            .as_str()
            .unwrap()
            .contains("Authorization has been denied for this request.")
    );
    ran.reveals_nothing();

    setup.cdn.fail(
        "/pullzone/4711/purgeCache",
        Failure::RateLimited {
            times: 1,
            retry_after: 1,
        },
    );
    let ran = setup
        .purge(&wrong, &["--provider=bunny", "--tag=shop"])
        .await;
    assert!(ran.success, "{}", ran.output);
    let tried = setup.cdn.requests("/pullzone/4711/purgeCache");
    assert_eq!(tried.len(), 2);
    assert!(tried[1].at - tried[0].at >= std::time::Duration::from_secs(1));
    assert_eq!(ran.outcome["attempts"], 2);
}

/// An API client's `.edgerc` section as a Secret, with this client secret.
fn akamai(setup: &Setup, name: &str, client_secret: &str) -> PathBuf {
    setup.secret(
        name,
        &[
            ("AKAMAI_HOST", AKAMAI_HOST),
            ("AKAMAI_CLIENT_TOKEN", AKAMAI_CLIENT_TOKEN),
            ("AKAMAI_CLIENT_SECRET", client_secret),
            ("AKAMAI_ACCESS_TOKEN", AKAMAI_ACCESS_TOKEN),
        ],
    )
}

/// Akamai Fast Purge: URLs, then tags, each request EdgeGrid-signed (the
/// double checks every signature with the test client's secret), the
/// action and network from the argv, the purge ids in the outcome.
#[tokio::test]
async fn akamai_signs_each_request_and_reports_its_purge_ids() {
    let setup = setup().await;
    let secret = akamai(&setup, "akamai", AKAMAI_CLIENT_SECRET);
    let ran = setup
        .purge(
            &secret,
            &[
                "--provider=akamai",
                "--akamai-action=delete",
                "--akamai-network=staging",
                "--url=https://www.example.com/a?b=1",
                "--tag=shop",
                "--tag=blog",
            ],
        )
        .await;
    assert!(ran.success, "{}", ran.output);
    let all = setup.cdn.requests("");
    let seen: Vec<(&str, &str, &str, &str)> = all
        .iter()
        .map(|r| {
            (
                r.method.as_str(),
                r.host.as_str(),
                r.path.as_str(),
                r.body.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "POST",
                AKAMAI_HOST,
                "/ccu/v3/delete/url/staging",
                r#"{"objects":["https://www.example.com/a?b=1"]}"#
            ),
            (
                "POST",
                AKAMAI_HOST,
                "/ccu/v3/delete/tag/staging",
                r#"{"objects":["shop","blog"]}"#
            ),
        ]
    );
    assert!(all.iter().all(|r| {
        r.header("authorization")
            .is_some_and(|value| value.starts_with("EG1-HMAC-SHA256 client_token="))
            && r.header("content-type") == Some("application/json")
    }));
    assert_eq!(ran.outcome["purged"], json!(["1 URL", "2 tags"]));
    let ids = ran.outcome["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 2, "{}", ran.outcome);
    assert_ne!(ids[0], ids[1]);
    ran.reveals_nothing();

    // Fast Purge has no "everything": the program refuses before sending,
    // as the policy does at admission.
    let ran = setup
        .purge(&secret, &["--provider=akamai", "--everything"])
        .await;
    assert!(!ran.success);
    assert_eq!(setup.cdn.requests("").len(), 2);
    assert!(ran.message.contains("akamai"), "{}", ran.message);
}

/// A signature made with a wrong secret gets Akamai's 401 problem at once
/// (no retry); a 429 is waited out, and the retry is signed anew.
#[tokio::test]
async fn akamai_refuses_a_wrong_signature_and_its_429_is_waited_out() {
    let setup = setup().await;
    let wrong = akamai(&setup, "akamai-wrong", "not-the-client-secret");
    let ran = setup
        .purge(&wrong, &["--provider=akamai", "--tag=shop"])
        .await;
    assert!(!ran.success);
    assert_eq!(setup.cdn.requests(AKAMAI_HOST).len(), 1);
    assert_eq!(ran.outcome["failure"]["status"], 401);
    let answer = ran.outcome["failure"]["answer"].as_str().unwrap();
    assert!(answer.contains("The signature does not match"), "{answer}");
    ran.reveals_nothing();

    let right = akamai(&setup, "akamai", AKAMAI_CLIENT_SECRET);
    setup.cdn.fail(
        "/ccu/v3/invalidate/tag/production",
        Failure::RateLimited {
            times: 1,
            retry_after: 1,
        },
    );
    let ran = setup
        .purge(&right, &["--provider=akamai", "--tag=shop"])
        .await;
    assert!(ran.success, "{}", ran.output);
    let tried = setup.cdn.requests("/ccu/v3/invalidate/tag/production");
    assert_eq!(tried.len(), 3, "the refused one and two tries");
    assert!(tried[2].at - tried[1].at >= Duration::from_secs(1));
    assert_ne!(
        tried[1].header("authorization"),
        tried[2].header("authorization"),
        "each try has its own timestamp and nonce"
    );
    assert_eq!(ran.outcome["attempts"], 2);
}

/// Three ready caches behind the Service `web/varnish` (port `purge`), and
/// a fourth endpoint that is not ready (terminating), whose cache runs but
/// must get nothing.
async fn varnish(setup: &Setup) -> (Caches, EndpointsApi) {
    let addresses: Vec<std::net::IpAddr> = ["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"]
        .iter()
        .map(|address| address.parse().unwrap())
        .collect();
    let caches = Caches::start(&addresses).await.unwrap();
    let (ready, not_ready) = caches.endpoints.split_at(3);
    let api = EndpointsApi::start(setup.dir.path(), "web", "varnish", ready, not_ready)
        .await
        .unwrap();
    (caches, api)
}

const HTTP_ARGS: [&str; 4] = [
    "--provider=http",
    "--namespace=web",
    "--http-service=varnish:purge",
    "--http-tag-header=xkey",
];

/// Provider http: the Service and its EndpointSlices are read from the API
/// (the pod's own, here a kubeconfig), and each ready cache gets every URL
/// with its Host, then the tags in one xkey header. No Secret is needed.
#[tokio::test]
async fn http_purges_every_ready_cache_behind_the_service() {
    let setup = setup().await;
    let (caches, api) = varnish(&setup).await;
    let no_secret = setup.dir.path().join("no-secret");
    let mut args = HTTP_ARGS.to_vec();
    args.extend([
        "--url=https://shop.example.com/a?b=1",
        "--tag=shop",
        "--tag=home",
    ]);
    let ran = setup
        .purge_with(&no_secret, &args, &[("KUBECONFIG", &api.kubeconfig)])
        .await;
    assert!(ran.success, "{}", ran.output);
    assert_eq!(
        api.requests(),
        [
            "GET /api/v1/namespaces/web/services/varnish",
            "GET /apis/discovery.k8s.io/v1/namespaces/web/endpointslices?&labelSelector=kubernetes.io%2Fservice-name%3Dvarnish",
        ]
    );
    for endpoint in &caches.endpoints[..3] {
        let got: Vec<(String, String, String, Option<String>)> = caches
            .requests(*endpoint)
            .iter()
            .map(|r| {
                (
                    r.method.clone(),
                    r.host.clone(),
                    r.path.clone(),
                    r.header("xkey").map(str::to_owned),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "PURGE".into(),
                    "shop.example.com".into(),
                    "/a?b=1".into(),
                    None
                ),
                (
                    "PURGE".into(),
                    endpoint.to_string(),
                    "/".into(),
                    Some("shop home".into())
                ),
            ],
            "{endpoint}"
        );
    }
    assert!(
        caches.requests(caches.endpoints[3]).is_empty(),
        "the endpoint that is not ready"
    );
    assert_eq!(
        ran.outcome["purged"],
        json!(["3 URL purges", "6 tag purges"])
    );
    assert_eq!(ran.outcome["requests"], 6);

    // BAN, as some VCLs define it, by setting.
    let mut ban = HTTP_ARGS.to_vec();
    ban.extend(["--http-method=BAN", "--url=https://shop.example.com/"]);
    let ran = setup
        .purge_with(&no_secret, &ban, &[("KUBECONFIG", &api.kubeconfig)])
        .await;
    assert!(ran.success, "{}", ran.output);
    let last = caches.requests(caches.endpoints[2]);
    assert_eq!(last.last().map(|r| r.method.as_str()), Some("BAN"));
}

/// A cache that refuses the purge fails it (each cache keeps its own
/// objects: a purge that misses one is no purge), naming the cache and
/// quoting its answer; a Service without that port, or with no ready
/// endpoint, fails before anything is sent.
#[tokio::test]
async fn http_fails_when_a_cache_refuses_or_there_is_none() {
    let setup = setup().await;
    let (caches, api) = varnish(&setup).await;
    let no_secret = setup.dir.path().join("no-secret");
    let refusing = caches.endpoints[1];
    caches.refuse(refusing);
    let mut args = HTTP_ARGS.to_vec();
    args.push("--url=https://shop.example.com/");
    let ran = setup
        .purge_with(&no_secret, &args, &[("KUBECONFIG", &api.kubeconfig)])
        .await;
    assert!(!ran.success);
    assert_eq!(ran.outcome["failure"]["status"], 405);
    assert_eq!(
        ran.outcome["failure"]["request"],
        format!("PURGE http://{refusing}/")
    );
    assert_eq!(ran.outcome["failure"]["answer"], "Not allowed.");
    assert_eq!(caches.requests(refusing).len(), 1, "a 405 is not retried");
    assert!(
        caches.requests(caches.endpoints[2]).is_empty(),
        "stopped at the refusal"
    );

    let mut wrong_port = args.clone();
    wrong_port[2] = "--http-service=varnish:admin";
    let ran = setup
        .purge_with(&no_secret, &wrong_port, &[("KUBECONFIG", &api.kubeconfig)])
        .await;
    assert!(!ran.success);
    assert_eq!(
        ran.outcome["failure"]["error"],
        "the cache Service web/varnish has no port admin; it has http (80), purge (6091)"
    );

    let elsewhere = setup.dir.path().join("no-ready-endpoint");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let empty = EndpointsApi::start(&elsewhere, "web", "varnish", &[], &caches.endpoints)
        .await
        .unwrap();
    let ran = setup
        .purge_with(&no_secret, &args, &[("KUBECONFIG", &empty.kubeconfig)])
        .await;
    assert!(!ran.success);
    assert!(
        ran.outcome["failure"]["error"]
            .as_str()
            .unwrap()
            .ends_with("has no ready endpoint on port purge: no cache to purge"),
        "{}",
        ran.outcome
    );
}

/// A dry run reads the endpoints (no Secret) and says what each cache
/// would have been sent.
#[tokio::test]
async fn an_http_dry_run_lists_each_cache() {
    let setup = setup().await;
    let (caches, api) = varnish(&setup).await;
    let mut args = HTTP_ARGS.to_vec();
    args.extend(["--dry-run", "--url=https://shop.example.com/"]);
    let ran = setup
        .purge_with(
            &setup.dir.path().join("no-secret"),
            &args,
            &[("KUBECONFIG", &api.kubeconfig)],
        )
        .await;
    assert!(ran.success, "{}", ran.output);
    let expected: Vec<String> = caches.endpoints[..3]
        .iter()
        .map(|endpoint| format!("PURGE http://{endpoint}/ (Host: shop.example.com)"))
        .collect();
    assert_eq!(ran.outcome["wouldSend"], json!(expected));
    assert!(
        caches
            .endpoints
            .iter()
            .all(|e| caches.requests(*e).is_empty())
    );
}

/// Layers (SPEC §5): `http,cloudflare` with one Secret. The site's own
/// caches, then the CDN: the CDN gets its purge only after every cache
/// answered, so it cannot refill from one that still has the old page.
const LAYERS: [&str; 4] = [
    "--provider=http,cloudflare",
    "--namespace=web",
    "--http-service=varnish:purge",
    "--url=https://shop.example.com/",
];

#[tokio::test]
async fn layers_purge_the_origin_caches_then_the_cdn_in_order() {
    let setup = setup().await;
    let (caches, api) = varnish(&setup).await;
    let ran = setup
        .purge_with(
            &cloudflare(&setup),
            &LAYERS,
            &[("KUBECONFIG", &api.kubeconfig)],
        )
        .await;
    assert!(ran.success, "{}", ran.output);
    ran.reveals_nothing();
    let cdn = setup.cdn.requests("/client/v4/zones/zone-1/purge_cache");
    assert_eq!(
        bodies(&cdn),
        [json!({"files": ["https://shop.example.com/"]})]
    );
    let last_cache_answer = caches.endpoints[..3]
        .iter()
        .flat_map(|endpoint| caches.requests(*endpoint))
        .map(|request| request.at)
        .max()
        .expect("every ready cache purged");
    assert!(cdn[0].at > last_cache_answer, "the CDN after the caches");
    assert_eq!(ran.outcome["provider"], "http, cloudflare");
    assert_eq!(
        ran.outcome["layers"],
        json!([
            {"provider": "http", "result": "purged", "requests": 3, "purged": ["3 URL purges"]},
            {"provider": "cloudflare", "result": "purged", "requests": 1, "purged": ["1 URL"]},
        ])
    );
    assert_eq!(ran.outcome["requests"], 4);
    assert!(
        ran.outcome["ids"]
            .as_array()
            .is_some_and(|ids| !ids.is_empty())
    );
}

/// A layer that fails for good stops the layers after it: the CDN is not
/// purged while a cache in front of the origin still holds the old page.
#[tokio::test]
async fn a_failed_layer_stops_the_layers_after_it() {
    let setup = setup().await;
    let (caches, api) = varnish(&setup).await;
    caches.refuse(caches.endpoints[0]);
    let ran = setup
        .purge_with(
            &cloudflare(&setup),
            &LAYERS,
            &[("KUBECONFIG", &api.kubeconfig)],
        )
        .await;
    assert!(!ran.success);
    assert_eq!(ran.exit_code, Some(2), "a 405 is final: {}", ran.output);
    assert!(setup.cdn.requests("/client/v4/zones").is_empty());
    assert_eq!(
        ran.outcome["layers"],
        json!([
            {"provider": "http", "result": "failed", "requests": 1},
            {"provider": "cloudflare", "result": "not run", "requests": 0},
        ])
    );
    assert_eq!(ran.outcome["failure"]["status"], 405);
    assert!(
        ran.outcome["failure"]["error"]
            .as_str()
            .unwrap()
            .starts_with("http: "),
        "{}",
        ran.outcome
    );

    // A key a later layer needs is missing: nothing is purged at all.
    let half = setup.secret("half", &[("CLOUDFLARE_ZONE_ID", "zone-1")]);
    caches.refuse_none();
    let before = caches.requests(caches.endpoints[1]).len();
    let ran = setup
        .purge_with(&half, &LAYERS, &[("KUBECONFIG", &api.kubeconfig)])
        .await;
    assert_eq!(ran.exit_code, Some(2), "{}", ran.output);
    assert_eq!(caches.requests(caches.endpoints[1]).len(), before);
    assert_eq!(
        ran.outcome["failure"]["error"],
        "the Secret cache-buster-credentials has no key CLOUDFLARE_API_TOKEN (cloudflare needs CLOUDFLARE_ZONE_ID, CLOUDFLARE_API_TOKEN)"
    );
}

/// A dry run covers every layer: each cache's request, then the CDN's,
/// nothing sent and no Secret read.
#[tokio::test]
async fn a_layered_dry_run_lists_every_layer() {
    let setup = setup().await;
    let (caches, api) = varnish(&setup).await;
    let mut args = LAYERS.to_vec();
    args.push("--dry-run");
    let ran = setup
        .purge_with(
            &setup.dir.path().join("no-secret"),
            &args,
            &[("KUBECONFIG", &api.kubeconfig)],
        )
        .await;
    assert!(ran.success, "{}", ran.output);
    let mut expected: Vec<String> = caches.endpoints[..3]
        .iter()
        .map(|endpoint| format!("PURGE http://{endpoint}/ (Host: shop.example.com)"))
        .collect();
    expected.push(
        "POST https://api.cloudflare.com/client/v4/zones/<CLOUDFLARE_ZONE_ID>/purge_cache \
         (Authorization: Bearer <CLOUDFLARE_API_TOKEN>) {\"files\":[\"https://shop.example.com/\"]}"
            .to_owned(),
    );
    assert_eq!(ran.outcome["wouldSend"], json!(expected));
    assert_eq!(ran.outcome["result"], "dry-run");
    assert!(setup.cdn.requests("/").is_empty());
    assert!(
        caches
            .endpoints
            .iter()
            .all(|e| caches.requests(*e).is_empty())
    );
}

const DISTRIBUTION: &str = "EDFDVBD6EXAMPLE";
const CLOUDFRONT_JOB: &str = "--job-name=shop-cache-buster-b4612648a6";
const CLOUDFRONT_URL: [&str; 3] = [
    "--provider=cloudfront",
    CLOUDFRONT_JOB,
    "--url=https://shop.example.com/",
];

/// A file of the pod's with this token, as EKS projects it.
fn token_file(setup: &Setup, name: &str, token: &str) -> PathBuf {
    let file = setup.dir.path().join(name);
    std::fs::write(&file, format!("{token}\n")).unwrap();
    file
}

/// A Secret with the distribution, and the access keys when given.
fn cloudfront(setup: &Setup, name: &str, keys: Option<(&str, &str)>) -> PathBuf {
    let mut files = vec![("CLOUDFRONT_DISTRIBUTION_ID", DISTRIBUTION)];
    if let Some((id, secret)) = keys {
        files.extend([("AWS_ACCESS_KEY_ID", id), ("AWS_SECRET_ACCESS_KEY", secret)]);
    }
    setup.secret(name, &files)
}

/// A URL whose path climbs out of its segment (`..`, plain or
/// percent-encoded) would make Fastly's `/purge/<host>/<path>` a call of
/// another API path with the key (`/service/<other>/purge_all`): the
/// program refuses it as the policy does, sending nothing, dry run or not.
async fn fastly_key_goes_to_no_other_api_path() {
    let setup = setup().await;
    let secret = setup.secret(
        "fastly-dots",
        &[
            ("FASTLY_SERVICE_ID", "svc-1"),
            ("FASTLY_API_TOKEN", FASTLY_KEY),
        ],
    );
    for url in [
        "https://www.example.com/../../service/other/purge_all",
        "https://www.example.com/%2e%2e/%2E%2E/service/other/purge_all",
    ] {
        for dry_run in [false, true] {
            let mut args = vec!["--provider=fastly".to_owned(), format!("--url={url}")];
            if dry_run {
                args.push("--dry-run".to_owned());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let ran = setup.purge(&secret, &args).await;
            assert_eq!(ran.exit_code, Some(2), "{url}: {}", ran.output);
            assert!(ran.output.contains("has a dot segment"), "{}", ran.output);
            assert_eq!(ran.outcome, Value::Null, "{url}");
        }
    }
    assert!(setup.cdn.requests("").is_empty());
}

/// The requests CloudFront got, as `METHOD path`.
fn cloudfront_calls(setup: &Setup) -> Vec<String> {
    setup
        .cdn
        .requests(aws::CLOUDFRONT_HOST)
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// CloudFront with the Secret's keys: one invalidation of the URLs' paths
/// and the prefixes as wildcards, its CallerReference the Job's name, every
/// request SigV4-signed (the double verifies each), then GetInvalidation
/// until it is Completed; its id in the outcome. The same Job again makes
/// no second invalidation.
#[tokio::test]
async fn cloudfront_invalidates_and_waits_until_completed() {
    let setup = setup().await;
    let secret = cloudfront(
        &setup,
        "cloudfront",
        Some((aws::ACCESS_KEY_ID, aws::SECRET_ACCESS_KEY)),
    );
    let args = [
        "--provider=cloudfront",
        CLOUDFRONT_JOB,
        "--url=https://shop.example.com/a?b=1",
        "--prefix=shop.example.com/blog/",
    ];
    let ran = setup.purge(&secret, &args).await;
    assert!(ran.success, "{}", ran.output);
    let calls = cloudfront_calls(&setup);
    let id = ran.outcome["ids"][0].as_str().unwrap().to_owned();
    assert!(id.starts_with('I') && id.len() == 14, "{id}");
    let created = format!("POST /2020-05-31/distribution/{DISTRIBUTION}/invalidation");
    let polled = format!("GET /2020-05-31/distribution/{DISTRIBUTION}/invalidation/{id}");
    assert_eq!(calls[0], created);
    assert!(
        calls.len() >= 3,
        "created, then InProgress, then Completed: {calls:?}"
    );
    assert!(calls[1..].iter().all(|call| *call == polled), "{calls:?}");
    let body = &setup.cdn.requests(aws::CLOUDFRONT_HOST)[0].body;
    assert!(body.contains("<CallerReference>shop-cache-buster-b4612648a6</CallerReference>"));
    assert!(body.contains("<Paths><Quantity>2</Quantity><Items><Path>/a?b=1</Path><Path>/blog/*</Path></Items></Paths>"));
    assert_eq!(ran.outcome["purged"], json!(["2 paths"]));
    ran.reveals_nothing();

    // A retried pod: the same reference, the same invalidation.
    let again = setup.purge(&secret, &args).await;
    assert!(again.success, "{}", again.output);
    assert_eq!(again.outcome["ids"][0], id.as_str());
    assert_eq!(setup.cdn.cloudfront_invalidations(), 1);
}

/// The Job's uid (the downward API's, in CACHE_BUSTER_JOB_UID) is part of
/// the CallerReference: the pods of one Job share it, while the Job created
/// again under the same name for a rollback (A→B→A) invalidates anew,
/// where the name alone would get the first invalidation back, unchanged.
#[tokio::test]
async fn cloudfront_invalidates_again_for_each_run_of_a_job() {
    let setup = setup().await;
    let secret = cloudfront(
        &setup,
        "cloudfront",
        Some((aws::ACCESS_KEY_ID, aws::SECRET_ACCESS_KEY)),
    );
    let args = [
        "--provider=cloudfront",
        CLOUDFRONT_JOB,
        "--url=https://shop.example.com/",
    ];
    let run = |uid: &'static str| {
        let setup = &setup;
        let secret = &secret;
        async move {
            let ran = setup
                .purge_with(secret, &args, &[("CACHE_BUSTER_JOB_UID", Path::new(uid))])
                .await;
            assert!(ran.success, "{}", ran.output);
            ran.outcome["ids"][0].as_str().unwrap().to_owned()
        }
    };
    let first = run("8f14e45f-ceea-467f-a0e6-1a2b3c4d5e01").await;
    let retried = run("8f14e45f-ceea-467f-a0e6-1a2b3c4d5e01").await;
    let rerun = run("c9f0f895-fb98-4b91-99f5-1a2b3c4d5e02").await;
    assert_eq!(retried, first);
    assert_ne!(rerun, first);
    assert_eq!(setup.cdn.cloudfront_invalidations(), 2);
    let bodies: Vec<String> = setup
        .cdn
        .requests(aws::CLOUDFRONT_HOST)
        .iter()
        .filter(|request| request.method == "POST")
        .map(|request| request.body.clone())
        .collect();
    assert!(bodies[0].contains(
        "<CallerReference>shop-cache-buster-b4612648a6-8f14e45f-ceea-467f-a0e6-1a2b3c4d5e01</CallerReference>"
    ));
}

/// More wildcards than CloudFront takes in progress: a second batch, which
/// meets TooManyInvalidationsInProgress while the first runs and is
/// retried until it fits; a wrong secret gets SignatureDoesNotMatch at once.
#[tokio::test]
async fn cloudfront_waits_out_too_many_invalidations_and_refuses_a_wrong_secret() {
    let setup = setup().await;
    let secret = cloudfront(
        &setup,
        "cloudfront",
        Some((aws::ACCESS_KEY_ID, aws::SECRET_ACCESS_KEY)),
    );
    let prefixes: Vec<String> = (0..20)
        .map(|i| format!("--prefix=shop.example.com/{i}/"))
        .collect();
    let mut args = vec!["--provider=cloudfront", CLOUDFRONT_JOB];
    args.extend(prefixes.iter().map(String::as_str));
    let ran = setup.purge(&secret, &args).await;
    assert!(ran.success, "{}", ran.output);
    let creates = cloudfront_calls(&setup)
        .iter()
        .filter(|call| call.starts_with("POST"))
        .count();
    assert!(
        creates >= 3,
        "the second batch was refused, then retried: {creates}"
    );
    assert_eq!(ran.outcome["ids"].as_array().unwrap().len(), 2);
    assert_eq!(ran.outcome["purged"], json!(["20 paths"]));

    let wrong = cloudfront(
        &setup,
        "cloudfront-wrong",
        Some((aws::ACCESS_KEY_ID, "not-the-secret-key")),
    );
    let before = cloudfront_calls(&setup).len();
    let ran = setup
        .purge(
            &wrong,
            &[
                "--provider=cloudfront",
                CLOUDFRONT_JOB,
                "--url=https://shop.example.com/",
            ],
        )
        .await;
    assert!(!ran.success);
    assert_eq!(
        cloudfront_calls(&setup).len(),
        before + 1,
        "a 403 is not retried"
    );
    assert_eq!(ran.outcome["failure"]["status"], 403);
    let answer = ran.outcome["failure"]["answer"].as_str().unwrap();
    assert!(
        answer.contains("<Code>SignatureDoesNotMatch</Code>"),
        "{answer}"
    );
}

/// IRSA: no keys in the Secret; STS's AssumeRoleWithWebIdentity with the
/// pod's role and token file gives temporary credentials, whose session
/// token CloudFront's requests carry. A token STS refuses fails the purge.
#[tokio::test]
async fn cloudfront_takes_irsa_credentials_from_sts() {
    let setup = setup().await;
    let secret = cloudfront(&setup, "cloudfront-irsa", None);
    let token_file = token_file(&setup, "eks-token", aws::WEB_IDENTITY_TOKEN);
    let role = PathBuf::from(aws::ROLE_ARN);
    let env: [(&str, &Path); 2] = [
        ("AWS_ROLE_ARN", &role),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file),
    ];
    let args = CLOUDFRONT_URL;
    let ran = setup.purge_with(&secret, &args, &env).await;
    assert!(ran.success, "{}", ran.output);
    let sts = setup.cdn.requests(aws::STS_HOST);
    assert_eq!(sts.len(), 1);
    assert!(sts[0].body.contains("Action=AssumeRoleWithWebIdentity"));
    assert!(
        sts[0]
            .body
            .contains("RoleSessionName=shop-cache-buster-b4612648a6")
    );
    assert!(
        sts[0].header("authorization").is_none(),
        "STS's call is unsigned"
    );
    let created = &setup.cdn.requests(aws::CLOUDFRONT_HOST)[0];
    assert_eq!(
        created.header("x-amz-security-token"),
        Some(aws::FROM_STS.2)
    );
    ran.reveals_nothing();

    std::fs::write(&token_file, "a-forged-token").unwrap();
    let ran = setup.purge_with(&secret, &args, &env).await;
    // STS's 400 is a refusal: the Job fails at once, as on a CDN's 4xx.
    assert_eq!(ran.exit_code, Some(2), "{}", ran.output);
    let error = ran.outcome["failure"]["error"].as_str().unwrap();
    assert!(error.starts_with("STS AssumeRoleWithWebIdentity for arn:aws:iam::111122223333:role/cache-buster (IRSA) failed: HTTP 400"), "{error}");
    assert!(error.contains("InvalidIdentityToken"), "{error}");
}

/// EKS Pod Identity: the agent's URL and token file give temporary
/// credentials; with neither that nor IRSA nor keys, the purge says what
/// is missing.
#[tokio::test]
async fn cloudfront_takes_pod_identity_credentials_from_the_agent() {
    let setup = setup().await;
    let agent = PodIdentityAgent::start().await.unwrap();
    let secret = cloudfront(&setup, "cloudfront-pod-identity", None);
    let token_file = token_file(&setup, "eks-pod-identity-token", aws::POD_IDENTITY_TOKEN);
    let url = PathBuf::from(&agent.url);
    let env: [(&str, &Path); 2] = [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_file),
    ];
    let args = CLOUDFRONT_URL;
    let ran = setup.purge_with(&secret, &args, &env).await;
    assert!(ran.success, "{}", ran.output);
    let created = &setup.cdn.requests(aws::CLOUDFRONT_HOST)[0];
    assert_eq!(
        created.header("x-amz-security-token"),
        Some(aws::FROM_AGENT.2)
    );
    assert!(
        created
            .header("authorization")
            .unwrap()
            .contains(&format!("Credential={}/", aws::FROM_AGENT.0))
    );
    assert!(setup.cdn.requests(aws::STS_HOST).is_empty());
    ran.reveals_nothing();

    // Without keys or an identity, nothing to ask with: the Job fails at once.
    let ran = setup.purge(&secret, &args).await;
    assert_eq!(ran.exit_code, Some(2), "{}", ran.output);
    assert!(
        ran.outcome["failure"]["error"]
            .as_str()
            .unwrap()
            .starts_with(
                "provider cloudfront found no AWS credentials: the Secret cache-buster-credentials has no AWS_ACCESS_KEY_ID"
            ),
        "{}",
        ran.outcome
    );
}

/// A pod moving from IRSA to Pod Identity has both: the AWS SDKs take web
/// identity first, and so does the purge.
#[tokio::test]
async fn cloudfront_takes_irsa_before_pod_identity_as_the_aws_sdks_do() {
    let setup = setup().await;
    let agent = PodIdentityAgent::start().await.unwrap();
    let secret = cloudfront(&setup, "cloudfront-both", None);
    let web_token = token_file(&setup, "eks-token", aws::WEB_IDENTITY_TOKEN);
    let agent_token = token_file(&setup, "eks-pod-identity-token", aws::POD_IDENTITY_TOKEN);
    let role = PathBuf::from(aws::ROLE_ARN);
    let url = PathBuf::from(&agent.url);
    let env: [(&str, &Path); 4] = [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &agent_token),
        ("AWS_ROLE_ARN", &role),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", &web_token),
    ];
    let ran = setup.purge_with(&secret, &CLOUDFRONT_URL, &env).await;
    assert!(ran.success, "{}", ran.output);
    assert_eq!(setup.cdn.requests(aws::STS_HOST).len(), 1);
    assert_eq!(agent.requests(), 0, "the agent was asked first");
    let created = &setup.cdn.requests(aws::CLOUDFRONT_HOST)[0];
    assert_eq!(
        created.header("x-amz-security-token"),
        Some(aws::FROM_STS.2)
    );
    ran.reveals_nothing();
}
