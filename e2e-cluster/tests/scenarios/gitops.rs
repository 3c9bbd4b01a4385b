//! GitOps diffs stay clean (docs/argo-cd.md, docs/flux.md): after the
//! policy stamped a site and its Job purged, the real kubectl's diffs of
//! the site's manifest show nothing, both as Argo CD's default diff reads
//! it (client-side, on `last-applied-configuration`) and as Flux and Argo
//! CD's ServerSideDiff compute it (a server-side apply, dry run). Both
//! diffs reach the policy through the API server, as the real tools' do.

use super::running::{START_DELAY, node_namespace};
use super::*;
use cache_buster_e2e_cluster::node::Readiness;
use cache_buster_e2e_cluster::process::run;

/// Argo CD's tracking label and annotation, as it sets them on what an
/// Application manages (its `label` and `annotation` tracking methods).
const TRACKING_LABEL: &str = "app.kubernetes.io/instance";
const TRACKING_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";

/// `kubectl diff` of `file`: its output, when it found a difference
/// (exit 1); none when it found none (exit 0); an error otherwise.
fn kubectl_diff(cluster: &Cluster, file: &Path, extra: &[&str]) -> Result<Option<String>> {
    let output = std::process::Command::new(&cluster.tools.kubectl)
        .arg("diff")
        .args(extra)
        .arg("-f")
        .arg(file)
        .env("KUBECONFIG", cluster.admin_kubeconfig())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    match output.status.code() {
        Some(0) => Ok(None),
        Some(1) => Ok(Some(stdout)),
        _ => Err(anyhow!(
            "kubectl diff {extra:?} failed ({}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )),
    }
}

pub async fn diffs_stay_clean_after_the_stamp_and_the_purge(cluster: &Cluster) -> Result<()> {
    let ns = "gitops-diff";
    node_namespace(cluster, ns, Readiness::After(START_DELAY)).await?;
    let manifest = |image: &str| {
        let mut manifest = site("shop", ns, image);
        manifest["metadata"]["labels"][TRACKING_LABEL] = json!("shop");
        manifest["metadata"]["annotations"][TRACKING_ANNOTATION] =
            json!(format!("shop:apps/Deployment:{ns}/shop"));
        // Nothing to send: the purge's outcome is its Event.
        manifest["metadata"]["annotations"]["cache-buster.io/dry-run"] = json!("true");
        manifest
    };
    let write = |name: &str, manifest: &Value| -> Result<std::path::PathBuf> {
        let file = cluster.root().join(format!("{ns}-{name}.json"));
        std::fs::write(&file, serde_json::to_vec_pretty(manifest)?)?;
        Ok(file)
    };
    let in_git = write("shop", &manifest("nginx:1.27.1"))?;

    // Synced as Argo CD syncs by default: a client-side apply.
    let kubeconfig = cluster.admin_kubeconfig();
    run(
        &cluster.tools.kubectl,
        &["apply", "-f", &in_git.display().to_string()],
        &[("KUBECONFIG", kubeconfig.as_os_str())],
    )?;
    wait_for_events(cluster, ns, "shop", "CacheBusterPurged", 1).await?;
    let stamped = deployments(cluster, ns).get("shop").await?;
    let job = jobs(cluster, ns).get(&stamped_job_name(&stamped)?).await?;
    let pod_metadata = job
        .spec
        .as_ref()
        .and_then(|spec| spec.template.metadata.clone())
        .unwrap_or_default();
    for (what, labels, annotations) in [
        (
            "Job",
            job.metadata.labels.clone(),
            job.metadata.annotations.clone(),
        ),
        ("Job's pod", pod_metadata.labels, pod_metadata.annotations),
    ] {
        ensure!(
            !labels.unwrap_or_default().contains_key(TRACKING_LABEL)
                && !annotations
                    .unwrap_or_default()
                    .contains_key(TRACKING_ANNOTATION),
            "the {what} carries Argo CD's tracking metadata, so Argo CD would prune it"
        );
    }

    for (diff, extra) in [
        ("client-side (Argo CD's default diff)", &[][..]),
        (
            "server-side (Flux, Argo CD's ServerSideDiff)",
            &["--server-side", "--force-conflicts"][..],
        ),
    ] {
        if let Some(difference) = kubectl_diff(cluster, &in_git, extra)? {
            return Err(anyhow!(
                "the {diff} of the stamped, purged site shows:\n{difference}"
            ));
        }
    }

    // The diffs do see a change, with the stamp the policy would make: the
    // dry run went through the policy.
    let next = write("shop-next", &manifest("nginx:1.27.2"))?;
    let difference = kubectl_diff(cluster, &next, &[])?
        .ok_or_else(|| anyhow!("kubectl diff shows no image change"))?;
    let added = |text: &str| {
        difference
            .lines()
            .any(|line| line.starts_with('+') && line.contains(text))
    };
    ensure!(
        added("image: nginx:1.27.2") && added("cache-buster.io/image-hash: "),
        "the diff of an image change lacks the image or the new stamp:\n{difference}"
    );

    // And nothing happened: the diffs' dry runs created no Job.
    stable_for(Duration::from_secs(3)).await;
    let companions = companion_jobs(cluster, ns).await?;
    ensure!(
        companions.len() == 1,
        "{} companion Jobs after the diffs",
        companions.len()
    );
    Ok(())
}
