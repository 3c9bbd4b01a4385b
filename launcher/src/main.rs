//! cache-buster-launcher: watches labelled Deployments and creates each
//! stamped companion Job once. See README, "The launcher".

use anyhow::{Context as _, Result, anyhow};
use cache_buster::keys;
use cache_buster::settings::{Settings, parse_and_validate};
use cache_buster_launcher::cluster::{Context, error_policy, reconcile};
use cache_buster_launcher::health::Watches;
use cache_buster_launcher::metrics::Metrics;
use cache_buster_launcher::server::router;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::runtime::{Controller, WatchStreamExt as _, controller, reflector, watcher};
use kube::{Api, Client};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::{error, info};

/// Reconciliations at a time: each makes a few API calls; more in flight
/// only queue at the API server's rate limits and hold memory.
const RECONCILE_CONCURRENCY: u16 = 8;

#[derive(Parser)]
#[command(
    name = "cache-buster-launcher",
    version,
    about = "Creates each stamped cache-buster Job exactly once"
)]
struct Args {
    /// The policy's settings (the ClusterAdmissionPolicy's spec.settings), JSON or YAML
    #[arg(long)]
    settings: Option<PathBuf>,
    /// Watch only these namespaces (repeatable); all namespaces by default
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
    /// Finished companion Jobs kept per Deployment
    #[arg(long, default_value_t = 2)]
    history_limit: usize,
    /// Address of /healthz, /readyz and /metrics
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
}

fn load_settings(path: Option<&PathBuf>) -> Result<Settings> {
    let Some(path) = path else {
        return Ok(Settings::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read settings file {}", path.display()))?;
    let value: serde_json::Value = serde_yaml::from_str(&text)
        .with_context(|| format!("settings file {} is neither JSON nor YAML", path.display()))?;
    parse_and_validate(value.to_string().as_bytes())
        .map_err(|message| anyhow!("invalid settings in {}: {message}", path.display()))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One line an operator can act on, not a backtrace.
            eprintln!("Error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A plan reads a Job's metadata and status, never its pod template (which
/// is most of its size) nor its managedFields: the cache keeps neither.
fn keep_what_plans_read(job: &mut Job) {
    job.metadata.managed_fields = None;
    if let Some(spec) = job.spec.as_mut() {
        spec.template = Default::default();
    }
}

async fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let settings = load_settings(args.settings.as_ref())?;
    let client = Client::try_default()
        .await
        .context("cannot reach the Kubernetes API")?;
    let metrics = Metrics::default();

    let registry = Arc::new(metrics.registry());
    let watches = Arc::new(Watches::new(metrics.watch_errors.clone()));
    let served = Arc::clone(&watches);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router(registry, served)).await {
            error!(%error, "the HTTP server stopped");
        }
    });

    let selector = settings.site_label.clone();
    // (Deployments, Jobs, where): one pair of watches per scope.
    let apis: Vec<(Api<Deployment>, Api<Job>, String)> = if args.namespaces.is_empty() {
        vec![(
            Api::all(client.clone()),
            Api::all(client.clone()),
            "all namespaces".to_owned(),
        )]
    } else {
        args.namespaces
            .iter()
            .map(|namespace| {
                (
                    Api::namespaced(client.clone(), namespace),
                    Api::namespaced(client.clone(), namespace),
                    format!("namespace {namespace}"),
                )
            })
            .collect()
    };
    // The companion Jobs are watched once, into a cache that reconciliations
    // read, and each change wakes the owning Deployment's reconciliation.
    // The cache is written before the wake-up is sent (kube's reflector),
    // so a reconciliation sees at least the change that woke it. Until the
    // first list is in, a plan may miss a Job: then it creates one that
    // exists (AlreadyExists), and never deletes one it has not seen.
    let companions = keys::companion_selector();
    let mut stores = Vec::new();
    let mut triggers = Vec::new();
    for (_, jobs, scope) in &apis {
        let (store, writer) = reflector::store();
        let watch = format!("jobs in {scope}");
        watches.register(&watch);
        let health = Arc::clone(&watches);
        let trigger = reflector::reflector(
            writer,
            watcher(jobs.clone(), watcher::Config::default().labels(&companions))
                .modify(keep_what_plans_read)
                .inspect(move |event| health.observe(&watch, "jobs", event)),
        )
        .default_backoff()
        .touched_objects();
        stores.push(store);
        triggers.push(trigger);
    }
    let context = Arc::new(Context::new(
        client,
        settings,
        args.history_limit,
        metrics,
        stores,
    ));
    info!(namespaces = ?args.namespaces, label = %selector, "watching site Deployments");
    let controllers = apis
        .into_iter()
        .zip(triggers)
        .map(|((deployments, _, scope), trigger)| {
            // The Deployments' cache too, without their managedFields.
            let (store, writer) = reflector::store();
            let watch = format!("deployments in {scope}");
            watches.register(&watch);
            let health = Arc::clone(&watches);
            let sites = reflector::reflector(
                writer,
                watcher(deployments, watcher::Config::default().labels(&selector))
                    .modify(|deployment: &mut Deployment| deployment.metadata.managed_fields = None)
                    .inspect(move |event| health.observe(&watch, "deployments", event)),
            )
            .default_backoff()
            .applied_objects();
            Controller::for_stream(sites, store)
                .owns_stream(trigger)
                .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
                .shutdown_on_signal()
                .run(reconcile, error_policy, Arc::clone(&context))
                .for_each(|outcome| async move {
                    if let Err(error) = outcome {
                        error!(%error, "controller error");
                    }
                })
        });
    futures::future::join_all(controllers).await;
    info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's flag table lists exactly the launcher's flags, with
    /// their defaults where they have one.
    #[test]
    fn the_readme_documents_every_flag_and_its_default() {
        use clap::CommandFactory as _;
        let readme = include_str!("../../README.md");
        let table = readme
            .split("| flag | default | |")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .expect("the README's flag table");
        let mut documented: Vec<(String, String)> = table
            .lines()
            .skip(2)
            .filter_map(|row| {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                let flag = cells.get(1)?.trim_matches('`');
                let name = flag.strip_prefix("--")?.split(' ').next()?;
                Some((name.to_owned(), cells.get(2)?.trim_matches('`').to_owned()))
            })
            .collect();
        documented.sort();
        let mut flags: Vec<(String, String)> = Args::command()
            .get_arguments()
            .filter_map(|argument| {
                let name = argument.get_long()?;
                let default = argument
                    .get_default_values()
                    .first()
                    .map(|value| value.to_string_lossy().into_owned());
                Some((name.to_owned(), default))
            })
            .filter(|(name, _)| name != "help" && name != "version")
            .map(|(name, default)| {
                let documented_default = documented
                    .iter()
                    .find(|(documented, _)| *documented == name)
                    .map(|(_, text)| text.clone())
                    .unwrap_or_default();
                // A flag without a default is documented in words.
                (name, default.unwrap_or(documented_default))
            })
            .collect();
        flags.sort();
        assert_eq!(documented, flags);
    }

    /// YAML settings are named by key, never by a position in the JSON the
    /// launcher converts them to, and every problem is listed (in key order).
    #[test]
    fn invalid_yaml_settings_are_named_by_key_all_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.yaml");
        std::fs::write(
            &path,
            "provider: Cloudflare\nbackoffLimit: three\nresources:\n  limits:\n    memory: 256Mi\n",
        )
        .unwrap();
        let error = load_settings(Some(&path)).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "invalid settings in {}: settings.backoffLimit: invalid type: string \"three\", expected i64; settings.provider: unknown provider \"Cloudflare\", expected one of cloudflare, fastly, webhook (provider names are lowercase: did you mean \"cloudflare\"?)",
                path.display()
            )
        );
    }
}
