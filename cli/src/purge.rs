//! `cache-buster purge`, the companion Job's container: its argv (which a
//! person can read in the Job), what it prints and what it writes.

use cache_buster_purge::aws::AwsEnvironment;
use cache_buster_purge::cdn::{HttpJob, Options, WebhookContext};
use cache_buster_purge::client::{Limits, Network};
use cache_buster_purge::entra::AzureEnvironment;
use cache_buster_purge::google::GoogleEnvironment;
use cache_buster_purge::options::{
    AkamaiAction, AkamaiNetwork, AkamaiOptions, CREDENTIALS_DIR, DEFAULT_TAG_HEADER, HttpMethod,
    HttpService, PURGE_BUDGET_SECONDS,
};
use cache_buster_purge::providers::{Provider, parse_layers};
use cache_buster_purge::run::{PurgeJob, run};
use cache_buster_purge::target_checks::{Refusal, check_host, check_prefix, check_tag};
use cache_buster_purge::targets::{PurgeTargets, TargetUrl};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The Job's uid, which the Job's pod gets through the downward API.
pub const JOB_UID_VARIABLE: &str = cache_buster::job::JOB_UID_VARIABLE;

/// Test-only: trust these PEM certificates too (the CDN double's CA).
#[cfg(feature = "test-hooks")]
pub const TEST_CA_VARIABLE: &str = "CACHE_BUSTER_TEST_CA_FILE";
/// Test-only: connect to this address whatever the host (the CDN double).
#[cfg(feature = "test-hooks")]
pub const TEST_CONNECT_TO_VARIABLE: &str = "CACHE_BUSTER_TEST_CONNECT_TO";

/// The tests' network: the CDN double's CA trusted and every host reached
/// at its address. Only a build with the `test-hooks` feature (the tests')
/// reads them; the released program has no such variables.
#[cfg(feature = "test-hooks")]
fn test_network(env: &impl Fn(&str) -> Option<String>) -> Result<Network, String> {
    let extra_roots_pem = env(TEST_CA_VARIABLE)
        .map(|file| {
            std::fs::read(&file).map_err(|error| format!("{TEST_CA_VARIABLE}={file}: {error}"))
        })
        .transpose()?;
    let connect_to = env(TEST_CONNECT_TO_VARIABLE)
        .map(|address| {
            address
                .parse::<std::net::SocketAddr>()
                .map_err(|error| format!("{TEST_CONNECT_TO_VARIABLE}={address}: {error}"))
        })
        .transpose()?;
    Ok(Network {
        extra_roots_pem,
        connect_to,
    })
}

/// The real network: the public roots compiled in, hosts as DNS has them.
#[cfg(not(feature = "test-hooks"))]
fn test_network(_env: &impl Fn(&str) -> Option<String>) -> Result<Network, String> {
    Ok(Network::default())
}

#[derive(clap::Args, Debug)]
pub struct PurgeArgs {
    /// The provider, or several purged in that order (layers): http,cloudflare
    #[arg(long, value_parser = parse_layers)]
    pub provider: Layers,
    /// The Secret with the provider's credentials (named in messages)
    #[arg(long)]
    pub secret: String,
    /// Where that Secret is mounted
    #[arg(long, default_value = CREDENTIALS_DIR)]
    pub credentials: PathBuf,
    // Each target checked as the policy checks it (target_checks): an argv
    // the policy would not write is refused before anything is sent.
    #[arg(long = "url", value_parser = target_url)]
    pub urls: Vec<TargetUrl>,
    #[arg(long = "prefix", value_parser = checked(check_prefix))]
    pub prefixes: Vec<String>,
    #[arg(long = "host", value_parser = checked(check_host))]
    pub hosts: Vec<String>,
    #[arg(long = "tag", value_parser = checked(check_tag))]
    pub tags: Vec<String>,
    #[arg(long)]
    pub everything: bool,
    /// Send nothing and read no credential: report what would be sent
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, default_value_t = 30)]
    pub cloudflare_batch_size: usize,
    /// Fastly: mark stale instead of evicting (`Fastly-Soft-Purge: 1`).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub fastly_soft_purge: bool,
    /// Fast Purge's action (provider akamai)
    #[arg(long, value_parser = akamai_action, default_value = "invalidate")]
    pub akamai_action: AkamaiAction,
    /// Fast Purge's network (provider akamai)
    #[arg(long, value_parser = akamai_network, default_value = "production")]
    pub akamai_network: AkamaiNetwork,
    /// The cache Service in --namespace (provider http): <service>[:<port>]
    #[arg(long, value_parser = http_service)]
    pub http_service: Option<HttpService>,
    /// The request each cache gets (provider http)
    #[arg(long, value_parser = http_method, default_value = "PURGE")]
    pub http_method: HttpMethod,
    /// The header with the tags (provider http)
    #[arg(long, default_value = DEFAULT_TAG_HEADER)]
    pub http_tag_header: String,
    /// The webhook's payload (SPEC §5); --namespace also provider http's
    #[arg(long, default_value = "")]
    pub site: String,
    #[arg(long, default_value = "")]
    pub namespace: String,
    #[arg(long, default_value = "")]
    pub deployment: String,
    #[arg(long, default_value = "")]
    pub image: String,
    #[arg(long, default_value = "")]
    pub image_hash: String,
    #[arg(long, default_value = "")]
    pub job_name: String,
    /// The Job's uid, from the downward API (CloudFront's CallerReference)
    #[arg(long, env = JOB_UID_VARIABLE, default_value = "")]
    pub job_uid: String,
    /// Every request with its retries ends within this
    #[arg(long, default_value_t = PURGE_BUDGET_SECONDS.unsigned_abs())]
    pub budget_seconds: u64,
    /// Where the outcome is written (the container's terminationMessagePath)
    #[arg(long, default_value = "/dev/termination-log")]
    pub termination_log: PathBuf,
}

fn target_url(text: &str) -> Result<TargetUrl, String> {
    TargetUrl::parse(text).map_err(|refusal| format!("{text:?} {refusal}"))
}

/// A clap parser of the items `check` accepts.
fn checked(
    check: fn(&str) -> Result<(), Refusal>,
) -> impl Fn(&str) -> Result<String, String> + Clone + Send + Sync + 'static {
    move |text: &str| {
        check(text)
            .map(|()| text.to_owned())
            .map_err(|refusal| format!("{text:?} {refusal}"))
    }
}

fn akamai_action(name: &str) -> Result<AkamaiAction, String> {
    serde_json::from_value(serde_json::Value::from(name))
        .map_err(|_| "expected invalidate or delete".to_owned())
}

fn akamai_network(name: &str) -> Result<AkamaiNetwork, String> {
    serde_json::from_value(serde_json::Value::from(name))
        .map_err(|_| "expected production or staging".to_owned())
}

fn http_service(value: &str) -> Result<HttpService, String> {
    HttpService::parse(value).map_err(|problem| format!("{value:?} {problem}"))
}

fn http_method(name: &str) -> Result<HttpMethod, String> {
    HttpMethod::from_name(name).ok_or_else(|| "expected PURGE or BAN".to_owned())
}

/// The providers of `--provider`, in order.
pub type Layers = Vec<Provider>;

impl PurgeArgs {
    /// The job, with the workload identities' variables read from `env`.
    pub fn job(self, env: impl Fn(&str) -> Option<String>) -> Result<PurgeJob, String> {
        let network = test_network(&env)?;
        Ok(PurgeJob {
            providers: self.provider,
            targets: PurgeTargets {
                urls: self.urls,
                prefixes: self.prefixes,
                hosts: self.hosts,
                tags: self.tags,
                everything: self.everything,
            },
            options: Options {
                cloudflare_batch_size: self.cloudflare_batch_size,
                fastly_soft_purge: self.fastly_soft_purge,
                akamai: AkamaiOptions {
                    action: self.akamai_action,
                    network: self.akamai_network,
                },
                http: HttpJob {
                    service: self.http_service,
                    method: self.http_method,
                    tag_header: self.http_tag_header,
                },
                aws: AwsEnvironment::read(&env),
                google: GoogleEnvironment::read(&env),
                azure: AzureEnvironment::read(&env),
                webhook: WebhookContext {
                    site: self.site,
                    namespace: self.namespace,
                    deployment: self.deployment,
                    image: self.image,
                    image_hash: self.image_hash,
                    job_name: self.job_name,
                },
                job_uid: self.job_uid,
                limits: Limits {
                    budget: Duration::from_secs(self.budget_seconds),
                    ..Limits::default()
                },
                network,
            },
            credentials_dir: self.credentials,
            secret: self.secret,
            dry_run: self.dry_run,
        })
    }
}

/// Purges, prints the outcome and writes it as the termination message.
pub async fn command(args: PurgeArgs) -> ExitCode {
    let termination_log = args.termination_log.clone();
    let job = match args.job(|name| std::env::var(name).ok()) {
        Ok(job) => job,
        Err(error) => {
            eprintln!("Error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = run(&job).await;
    let message = outcome.to_message();
    println!("{message}");
    if let Err(error) = std::fs::write(&termination_log, &message) {
        eprintln!(
            "cannot write the outcome to {}: {error}",
            termination_log.display()
        );
    }
    if outcome.succeeded() {
        ExitCode::SUCCESS
    } else if outcome.failed_for_good() {
        crate::final_failure()
    } else {
        ExitCode::FAILURE
    }
}
