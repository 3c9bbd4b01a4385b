//! `cache-buster purge`, the companion Job's container: its argv (the
//! purge crate's `argv`, which a person can read in the Job), what it
//! prints and what it writes.

use cache_buster_purge::argv::PurgeArgv;
use cache_buster_purge::aws::AwsEnvironment;
use cache_buster_purge::cdn::Options;
use cache_buster_purge::client::{Limits, Network};
use cache_buster_purge::content::{ContentRoot, DEFAULT_MAX_URLS, PULL_SECRETS_DIR};
use cache_buster_purge::content_purge::ContentPurge;
use cache_buster_purge::entra::AzureEnvironment;
use cache_buster_purge::google::GoogleEnvironment;
use cache_buster_purge::options::CREDENTIALS_DIR;
use cache_buster_purge::run::{PurgeJob, run};
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
/// Test-only: `name=host:port,…`, registries reached at a test registry's
/// address under a cloud registry's name.
#[cfg(feature = "test-hooks")]
pub const TEST_REGISTRY_ALIASES_VARIABLE: &str = "CACHE_BUSTER_TEST_REGISTRY_ALIASES";

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
    let registry_aliases = env(TEST_REGISTRY_ALIASES_VARIABLE)
        .unwrap_or_default()
        .split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(name, address)| (name.to_owned(), address.to_owned()))
                .ok_or_else(|| {
                    format!("{TEST_REGISTRY_ALIASES_VARIABLE}: {pair:?} is not name=address")
                })
        })
        .collect::<Result<_, _>>()?;
    Ok(Network {
        extra_roots_pem,
        connect_to,
        registry_aliases,
    })
}

/// The real network: the public roots compiled in, hosts as DNS has them.
#[cfg(not(feature = "test-hooks"))]
fn test_network(_env: &impl Fn(&str) -> Option<String>) -> Result<Network, String> {
    Ok(Network::default())
}

/// The Job's argv (the purge crate's [`PurgeArgv`], which the policy
/// renders), and what only the program is told: where the Secret is
/// mounted, the Job's uid, where the outcome goes.
#[derive(clap::Args, Debug)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub argv: PurgeArgv,
    /// Where that Secret is mounted
    #[arg(long, default_value = CREDENTIALS_DIR)]
    pub credentials: PathBuf,
    /// The Job's uid, from the downward API (CloudFront's CallerReference)
    #[arg(long, env = JOB_UID_VARIABLE, default_value = "")]
    pub job_uid: String,
    /// Where the outcome is written (the container's terminationMessagePath)
    #[arg(long, default_value = "/dev/termination-log")]
    pub termination_log: PathBuf,
    /// With --content: where the image pull secrets are mounted (docker
    /// config JSON files)
    #[arg(long, default_value = PULL_SECRETS_DIR)]
    pub pull_secrets: PathBuf,
    /// With --content: compare with this image, instead of the one whose
    /// purge last succeeded for the Deployment (a purge run by hand)
    #[arg(long)]
    pub previous_image: Option<String>,
}

impl PurgeArgs {
    /// The job, with the workload identities' variables read from `env`.
    pub fn job(self, env: impl Fn(&str) -> Option<String>) -> Result<PurgeJob, String> {
        let network = test_network(&env)?;
        let PurgeArgv {
            providers,
            secret,
            dry_run,
            urls,
            prefixes,
            hosts,
            tags,
            everything,
            content,
            content_max_urls,
            warm,
            insecure_registries,
            registry_ca_file,
            context,
            flags,
            budget_seconds,
        } = self.argv;
        // Checked by the argv's parser already: this keeps them parsed.
        let content = (!content.is_empty())
            .then(|| {
                content
                    .iter()
                    .map(|pair| {
                        ContentRoot::parse(pair).map_err(|refusal| format!("{pair:?} {refusal}"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .map(|roots| ContentPurge {
                roots,
                max_urls: content_max_urls.unwrap_or(DEFAULT_MAX_URLS),
                warm,
                insecure_registries,
                registry_ca_file: registry_ca_file.map(PathBuf::from),
                pull_secrets: Some(self.pull_secrets),
                previous_image: self.previous_image,
            });
        // Checked by the argv's parser already: this keeps the parsed URL.
        let urls = urls
            .iter()
            .map(|url| TargetUrl::parse(url).map_err(|refusal| format!("{url:?} {refusal}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PurgeJob {
            providers,
            targets: PurgeTargets {
                urls,
                prefixes,
                hosts,
                tags,
                everything,
            },
            options: Options {
                flags: flags.into_set(),
                context,
                aws: AwsEnvironment::read(&env),
                google: GoogleEnvironment::read(&env),
                azure: AzureEnvironment::read(&env),
                job_uid: self.job_uid,
                limits: Limits {
                    budget: Duration::from_secs(budget_seconds),
                    ..Limits::default()
                },
                network,
            },
            credentials_dir: self.credentials,
            secret,
            dry_run,
            content,
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
