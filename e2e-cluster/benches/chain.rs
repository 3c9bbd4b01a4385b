//! The whole chain measured on the test cluster (`make bench-cluster`):
//!
//! 1. from the moment the new ReplicaSet is fully available (the test node
//!    made its last pod Ready, start delay zero) to the first purge request
//!    reaching the CDN double; and from the Deployment's apply to the Job's
//!    creation. ROLLOUTS rollouts, one after the other.
//! 2. the launcher, two replicas, with SITES labelled Deployments: a cold start, the time
//!    until every one of their Jobs exists, and its resident memory (peak
//!    and after) and CPU time, read from /proc.
//!
//! It prints figures; it asserts nothing (a benchmark, not a timed test).

use anyhow::{Context as _, Result, anyhow};
use cache_buster_e2e_cluster::cluster::Cluster;
use cache_buster_e2e_cluster::node::Readiness;
use cache_buster_e2e_cluster::sites::{flux_apply, ready_moment, site};
use cache_buster_e2e_cluster::tools::Tools;
use futures::StreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::ListParams;
use serde_json::json;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let number = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    };
    let rollouts = number("ROLLOUTS", 10);
    let sites = number("SITES", 1000);
    let tools = match Tools::locate() {
        Ok(tools) => tools,
        Err(missing) => {
            for program in &missing {
                eprintln!("missing: {program}");
            }
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut cluster = match Cluster::start(tools).await {
            Ok(cluster) => cluster,
            Err(error) => {
                eprintln!("the control plane did not start: {error:#}");
                return ExitCode::FAILURE;
            }
        };
        let outcome = async {
            rollout_latency(&cluster, rollouts).await?;
            launcher_at_scale(&cluster, sites).await
        }
        .await;
        cluster.stop();
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("bench failed: {error:#}");
                ExitCode::FAILURE
            }
        }
    })
}

/// min / median / max, in milliseconds.
fn summary(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    if let (Some(min), Some(max)) = (samples.first(), samples.last()) {
        let median = samples[samples.len() / 2];
        println!(
            "{label}: median {:.0} ms, min {:.0} ms, max {:.0} ms ({} samples)",
            ms(median),
            ms(*min),
            ms(*max),
            samples.len()
        );
    }
}

async fn rollout_latency(cluster: &Cluster, rollouts: usize) -> Result<()> {
    let ns = "bench-latency";
    cluster.site_namespace(ns).await?;
    cluster.node.serve(ns, Readiness::After(Duration::ZERO));
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), ns);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "cache-buster-credentials"},
        "stringData": {"WEBHOOK_URL": "https://hooks.example.test/bench-latency"}
    }))?;
    secrets.create(&Default::default(), &secret).await?;
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), ns);
    let mut to_job = Vec::new();
    let mut to_purge = Vec::new();
    for round in 1..=rollouts {
        let image = format!("nginx:1.27.{round}");
        let mut manifest = site("www", ns, &image);
        manifest["metadata"]["annotations"]["cache-buster.io/provider"] = json!("webhook");
        let applied = Instant::now();
        let stored = flux_apply(cluster, &manifest, false).await?;
        let job = stored
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get("cache-buster.io/job-name").cloned())
            .ok_or_else(|| anyhow!("not stamped"))?;
        let created = poll(Duration::from_secs(30), || async {
            Ok(jobs.get_opt(&job).await?.map(|_| Instant::now()))
        })
        .await?;
        to_job.push(created - applied);
        let purged = poll(Duration::from_secs(60), || async {
            Ok(cluster
                .cdn
                .requests("hooks.example.test/bench-latency")
                .get(round - 1)
                .map(|request| request.at))
        })
        .await?;
        let ready = ready_moment(cluster, ns, "www", &format!("nginx:1.27.{round}")).await?;
        to_purge.push(purged.saturating_duration_since(ready));
    }
    summary("apply → Job created", to_job);
    summary(
        "ReplicaSet available (last pod Ready) → first purge at the CDN",
        to_purge,
    );
    Ok(())
}

/// Polls every 10 ms (finer than `eventually`: this is what is measured).
async fn poll<T, F, Fut>(within: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(anyhow!("not within {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// (resident KiB, peak resident KiB, CPU seconds) of a process.
fn usage(pid: u32) -> Result<(u64, u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th of the whole line.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("/proc/PID/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..13)
        .into_iter()
        .flatten()
        .filter_map(|value| value.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on Linux.
    Ok((field("VmRSS:"), field("VmHWM:"), ticks as f64 / 100.0))
}

async fn launcher_at_scale(cluster: &Cluster, sites: usize) -> Result<()> {
    let ns = "bench-scale";
    cluster.site_namespace(ns).await?;
    cluster.stop_launcher()?;
    let started = Instant::now();
    let manifests: Vec<_> = (0..sites)
        .map(|n| {
            let mut manifest = site(&format!("site-{n:04}"), ns, "nginx:1.27.1");
            manifest["spec"]["replicas"] = json!(0);
            manifest
        })
        .collect();
    let applied: Vec<Result<_>> = futures::stream::iter(&manifests)
        .map(|manifest| flux_apply(cluster, manifest, false))
        .buffer_unordered(16)
        .collect()
        .await;
    applied.into_iter().collect::<Result<Vec<_>>>()?;
    println!(
        "{sites} labelled Deployments applied and stamped in {:.1} s (policy-server)",
        started.elapsed().as_secs_f64()
    );

    // Two replicas, as deploy/launcher.yaml runs them: the first takes the
    // Lease and acts, the second stands by with the same caches.
    let cold = Instant::now();
    cluster.start_launcher().await?;
    cluster.start_standby().await?;
    let pid = cluster
        .launcher_pid()
        .ok_or_else(|| anyhow!("no launcher"))?;
    let standby = cluster.standby_pid().ok_or_else(|| anyhow!("no standby"))?;
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), ns);
    let mut peak_rss = 0;
    let all = loop {
        let (rss, _, _) = usage(pid)?;
        peak_rss = peak_rss.max(rss);
        let count = jobs
            .list_metadata(
                &ListParams::default().labels("app.kubernetes.io/managed-by=cache-buster"),
            )
            .await?
            .items
            .len();
        if count >= sites {
            break cold.elapsed();
        }
        if cold.elapsed() > Duration::from_secs(300) {
            return Err(anyhow!("{count} of {sites} Jobs after 300 s"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (_, hwm_at_done, cpu_at_done) = usage(pid)?;
    println!(
        "launcher cold start → all {sites} Jobs created: {:.1} s, CPU {cpu_at_done:.1} s, peak RSS {:.1} MiB",
        all.as_secs_f64(),
        hwm_at_done.max(peak_rss) as f64 / 1024.0
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (rss, hwm, cpu) = usage(pid)?;
    println!(
        "leader 30 s later, idle with {sites} sites: RSS {:.1} MiB (peak {:.1} MiB), CPU {:.2} s in those 30 s",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        cpu - cpu_at_done
    );
    let (rss, hwm, cpu) = usage(standby)?;
    println!(
        "standby at the same time, caches as warm: RSS {:.1} MiB (peak {:.1} MiB), CPU {:.2} s since its start",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        cpu
    );
    cluster.stop_standby()?;
    Ok(())
}
