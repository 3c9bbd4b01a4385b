//! The launcher's process: its flags, its watches and controllers, the
//! Lease it follows. See README, "The launcher".

use crate::launcher::cache::{CachedJob, Keep, SiteDeployment};
use crate::launcher::cluster::{Context, error_policy, reconcile};
use crate::launcher::health::Watches;
use crate::launcher::leader::{
    LEASE_DURATION, Leadership, LeaseView, RENEW_BEFORE_EXPIRY, Role, Transition,
};
use crate::launcher::metrics::Metrics;
use crate::launcher::server::router;
use crate::launcher::settings_source::{
    Accepted, Follower, POLICY_KIND, POLICY_PLURAL, SettingsState, policy_resource,
};
use anyhow::{Context as _, Result, anyhow, bail};
use cache_buster::keys;
use cache_buster::settings::{Settings, parse_and_validate};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::DynamicObject;
use kube::runtime::{Controller, WatchStreamExt as _, controller, reflector, watcher};
use kube::{Api, Client};
use kube_lease_manager::{LeaseCreateMode, LeaseManagerBuilder};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::{error, info, warn};

/// Reconciliations at a time: each makes a few API calls; more in flight
/// only queue at the API server's rate limits and hold memory.
const RECONCILE_CONCURRENCY: u16 = 8;

/// `cache-buster launcher`'s flags.
#[derive(clap::Args)]
pub struct LauncherArgs {
    /// The ClusterAdmissionPolicy whose spec.settings the launcher derives
    /// with, watched: a change applies without a restart
    #[arg(long, default_value = "cache-buster")]
    policy: String,
    /// A file (JSON or YAML) with the policy's settings, instead of the
    /// ClusterAdmissionPolicy's, for setups without one; read once at start
    #[arg(long, conflicts_with = "policy")]
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
    /// The Lease whose holder acts (the others stand by, caches warm)
    #[arg(long, default_value = "launcher")]
    lease: String,
    /// The Lease's namespace: the launcher's own
    #[arg(long, env = "POD_NAMESPACE", default_value = "cache-buster-system")]
    lease_namespace: String,
    /// This replica's name in the Lease (default: the host name and the process id)
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}
fn load_settings(path: &PathBuf) -> Result<Settings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read settings file {}", path.display()))?;
    let value: serde_json::Value = serde_yaml::from_str(&text)
        .with_context(|| format!("settings file {} is neither JSON nor YAML", path.display()))?;
    parse_and_validate(value.to_string().as_bytes())
        .map_err(|message| anyhow!("invalid settings in {}: {message}", path.display()))
}
/// Runs the launcher until it is stopped; an error is one line an
/// operator can act on, not a backtrace.
pub async fn launch(args: LauncherArgs) -> std::process::ExitCode {
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: LauncherArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    // A settings file is checked before anything else: invalid, the
    // launcher does not start.
    let file_settings = args.settings.as_ref().map(load_settings).transpose()?;
    let client = Client::try_default()
        .await
        .context("cannot reach the Kubernetes API")?;
    let metrics = Metrics::default();

    let registry = Arc::new(metrics.registry());
    let watches = Arc::new(Watches::new(metrics.watch_errors.clone()));
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let leadership = Arc::new(Leadership::new(identity));
    let served = Arc::clone(&watches);
    let role = Arc::clone(&leadership);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router(registry, served, role)).await {
            error!(%error, "the HTTP server stopped");
        }
    });

    let (sender, mut settings) = tokio::sync::watch::channel(SettingsState::Waiting);
    let _kept_open = match file_settings {
        Some(from_file) => {
            sender.send_replace(SettingsState::Ready(Accepted::new(from_file)));
            Some(sender)
        }
        None => {
            let policies = Api::<DynamicObject>::all_with(client.clone(), &policy_resource());
            tokio::spawn(follow_policy(
                policies,
                args.policy.clone(),
                sender,
                Arc::clone(&watches),
            ));
            None
        }
    };
    info!(source = %args.settings.as_ref().map_or_else(
        || format!("{POLICY_KIND} {}", args.policy),
        |path| path.display().to_string(),
    ), "reading the policy's settings");
    let first = settings
        .wait_for(|state| *state != SettingsState::Waiting)
        .await
        .map(|state| state.clone())
        .map_err(|_| anyhow!("the settings' watch stopped before it read any"))?;
    if let SettingsState::Invalid(problem) = first {
        bail!(problem);
    }

    // Only the Lease's holder acts; the crate takes and renews it, and
    // follow_lease says from the Lease itself whether this replica leads.
    let lease = LeaseManagerBuilder::new(client.clone(), &args.lease)
        .with_namespace(&args.lease_namespace)
        .with_create_mode(LeaseCreateMode::UseExistent)
        .with_identity(leadership.identity())
        .with_duration(LEASE_DURATION.as_secs())
        .with_grace(RENEW_BEFORE_EXPIRY.as_secs())
        .build()
        .await
        .with_context(|| {
            format!(
                "cannot use Lease {}/{} (deploy/launcher.yaml creates it, and gives the launcher get, list, watch and patch on it)",
                args.lease_namespace, args.lease
            )
        })?;
    let (holding, lease_task) = lease.watch().await;
    let (became_leader, leading) = tokio::sync::watch::channel(0u64);
    tokio::spawn(follow_lease(
        Api::namespaced(client.clone(), &args.lease_namespace),
        args.lease.clone(),
        Arc::clone(&leadership),
        became_leader,
        metrics.clone(),
        Arc::clone(&watches),
    ));
    info!(identity = %leadership.identity(), lease = %args.lease, "standing by until this replica holds the Lease");

    // The site label selects the watched Deployments, and it and the
    // annotation prefix say what the caches keep: when either changes, the
    // watches start again. Any other change of the settings reconciles
    // every site again.
    loop {
        let Some(current) = watched(&settings.borrow_and_update()) else {
            bail!("the settings are gone");
        };
        let controllers = controllers(
            &client,
            &args,
            &current,
            Resync {
                settings: settings.clone(),
                leading: leading.clone(),
            },
            Arc::clone(&leadership),
            &metrics,
            &watches,
        );
        let mut changes = settings.clone();
        let rewatch = async move {
            let current = Some(current);
            if changes
                .wait_for(|state| watched(state) != current)
                .await
                .is_err()
            {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = futures::future::join_all(controllers) => break,
            () = rewatch => info!("the site label or the annotation prefix changed: watching Deployments anew"),
        }
    }
    // Free the Lease at once, so that the standby need not wait for it to
    // expire.
    drop(holding);
    if tokio::time::timeout(std::time::Duration::from_secs(3), lease_task)
        .await
        .is_err()
    {
        warn!("the Lease was not released in time; the standby takes it when it expires");
    }
    info!("stopped");
    Ok(())
}

/// The host name and the process id: unique among replicas without POD_NAME.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "launcher".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Follows the Lease: whether this replica leads, for its reconciliations,
/// `/readyz` and the metric; and on becoming leader, a resync of every site.
async fn follow_lease(
    leases: Api<Lease>,
    name: String,
    leadership: Arc<Leadership>,
    became_leader: tokio::sync::watch::Sender<u64>,
    metrics: Metrics,
    watches: Arc<Watches>,
) {
    let watch = format!("Lease {name}");
    watches.register(&watch);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(leases, config).default_backoff().boxed();
    // A Lease not renewed is seen going stale on this clock, not through
    // the watch, which says nothing while nothing changes.
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        let view = tokio::select! {
            event = events.next() => match event {
                None => break,
                Some(event) => {
                    watches.observe(&watch, "leases", &event);
                    match event {
                        Ok(watcher::Event::Apply(lease) | watcher::Event::InitApply(lease)) => {
                            Some(LeaseView::of(&lease))
                        }
                        Ok(watcher::Event::Delete(_)) => Some(LeaseView::default()),
                        _ => None,
                    }
                }
            },
            _ = tick.tick() => None,
        };
        match leadership.update(view, Timestamp::now()) {
            Some(Transition::BecameLeader) => {
                info!(identity = %leadership.identity(), "this replica holds the Lease: it acts, every site is reconciled");
                became_leader.send_modify(|generation| *generation += 1);
            }
            Some(Transition::SteppedDown) => {
                warn!(identity = %leadership.identity(), "this replica no longer holds a fresh Lease: it stands by");
            }
            None => {}
        }
        metrics
            .leader
            .set(i64::from(leadership.role() == Role::Leader));
    }
}

/// One item per change the receiver sees.
fn changes<T: Send + Sync + 'static>(
    receiver: tokio::sync::watch::Receiver<T>,
) -> impl futures::Stream<Item = ()> + Send {
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.changed().await.ok().map(|()| ((), receiver))
    })
}

/// What makes every site be reconciled again: a change of the settings,
/// and this replica becoming the leader.
struct Resync {
    settings: tokio::sync::watch::Receiver<SettingsState>,
    leading: tokio::sync::watch::Receiver<u64>,
}

impl Resync {
    fn stream(&self) -> impl futures::Stream<Item = ()> + Send + use<> {
        let mut settings = self.settings.clone();
        settings.mark_unchanged();
        let mut leading = self.leading.clone();
        leading.mark_unchanged();
        futures::stream::select(changes(settings).boxed(), changes(leading).boxed())
    }
}

/// The site label the Deployments are selected by, and what the caches keep.
fn watched(state: &SettingsState) -> Option<(String, Keep)> {
    match state {
        SettingsState::Ready(accepted) => Some((
            accepted.current.site_label.clone(),
            Keep::of(&accepted.candidates()),
        )),
        SettingsState::Waiting | SettingsState::Invalid(_) => None,
    }
}

/// Follows the ClusterAdmissionPolicy named `name`: its settings into
/// `sender`, what is wrong with it into the readiness.
async fn follow_policy(
    policies: Api<DynamicObject>,
    name: String,
    sender: tokio::sync::watch::Sender<SettingsState>,
    watches: Arc<Watches>,
) {
    let watch = format!("{POLICY_KIND} {name}");
    watches.register(&watch);
    let mut follower = Follower::default();
    // Read access to this one object only: a name field selector, which
    // RBAC's resourceNames allows for list and watch.
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(policies, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                watches.observe::<DynamicObject>(&watch, POLICY_PLURAL, &Err(error));
                continue;
            }
        };
        let step = follower.step(&sender.borrow(), &event);
        if let Some(usable) = step.usable {
            if let Err(problem) = &usable {
                warn!(policy = %name, %problem, "the policy's settings cannot be used");
            }
            watches.settle(&watch, usable);
        }
        if let Some(next) = step.next {
            info!(policy = %name, "the policy's settings changed: every site is reconciled again");
            sender.send_replace(next);
        }
    }
}

/// One controller per watched scope, over the Deployments carrying
/// `selector`, woken by their companion Jobs and by a change of settings.
fn controllers(
    client: &Client,
    args: &LauncherArgs,
    (selector, keep): &(String, Keep),
    resync: Resync,
    leadership: Arc<Leadership>,
    metrics: &Metrics,
    watches: &Arc<Watches>,
) -> Vec<impl std::future::Future<Output = ()> + use<>> {
    // (Deployments, Jobs, where): one pair of watches per scope, each
    // decoding into the caches' own compact types (cache.rs).
    let apis: Vec<(Api<SiteDeployment>, Api<CachedJob>, String)> = if args.namespaces.is_empty() {
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
        let health = Arc::clone(watches);
        // A CachedJob is compact as decoded (cache.rs), but for the
        // resourceVersion the watcher itself needs: dropped after it.
        let trigger = reflector::reflector(
            writer,
            watcher(jobs.clone(), watcher::Config::default().labels(&companions))
                .modify(Keep::job)
                .inspect(move |event| health.observe(&watch, "jobs", event)),
        )
        .default_backoff()
        .touched_objects();
        stores.push(store);
        triggers.push(trigger);
    }
    let context = Arc::new(Context::new(
        client.clone(),
        resync.settings.clone(),
        args.history_limit,
        metrics.clone(),
        stores,
        leadership,
    ));
    info!(namespaces = ?args.namespaces, label = %selector, "watching site Deployments");
    apis.into_iter()
        .zip(triggers)
        .map(|((deployments, _, scope), trigger)| {
            // The Deployments' cache too, as compact.
            let (store, writer) = reflector::store();
            let watch = format!("deployments in {scope}");
            watches.register(&watch);
            let health = Arc::clone(watches);
            let keep = keep.clone();
            let sites = reflector::reflector(
                writer,
                watcher(deployments, watcher::Config::default().labels(selector))
                    .modify(move |site| keep.deployment(site))
                    .inspect(move |event| health.observe(&watch, "deployments", event)),
            )
            .default_backoff()
            .applied_objects();
            Controller::for_stream(sites, store)
                .owns_stream(trigger)
                .reconcile_all_on(resync.stream())
                .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
                .shutdown_on_signal()
                .run(reconcile, error_policy, Arc::clone(&context))
                .for_each(|outcome| async move {
                    if let Err(error) = outcome {
                        error!(%error, "controller error");
                    }
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readme;

    /// The README's flag table lists exactly the launcher's flags, with
    /// their defaults where they have one.
    #[test]
    fn the_readme_documents_every_flag_and_its_default() {
        use clap::CommandFactory as _;
        let mut documented: Vec<(String, String)> = readme::table("| flag | default | |")
            .iter()
            .filter_map(|row| {
                let flag = readme::unquoted(&row[0]);
                let name = flag.strip_prefix("--")?.split(' ').next()?;
                Some((name.to_owned(), readme::unquoted(&row[1]).to_owned()))
            })
            .collect();
        documented.sort();
        #[derive(clap::Parser)]
        struct Launcher {
            #[command(flatten)]
            args: LauncherArgs,
        }
        let launcher = Launcher::command();
        let mut flags: Vec<(String, String)> = launcher
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
        let error = load_settings(&path).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "invalid settings in {}: settings.backoffLimit: invalid type: string \"three\", expected i64; settings.provider: unknown provider \"Cloudflare\", expected one of cloudflare, fastly, webhook, bunny, akamai, http, cloudfront, gcp, azure (provider names are lowercase: did you mean \"cloudflare\"?)",
                path.display()
            )
        );
    }
}
