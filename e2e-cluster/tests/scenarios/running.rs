//! The companion Job run for real: the test node binds the pods, makes the
//! site's pods Ready (or holds them), and executes the Job's containers
//! (the project's program: `wait-rollout`, then `purge`) in sandboxes that
//! reach the CDN double. Each scenario asserts what reached the CDN and what the
//! API server shows.

use super::*;
use cache_buster_e2e_cluster::cdn::{Failure, Recorded};
use cache_buster_e2e_cluster::node::{Executed, Readiness};
use k8s_openapi::api::core::v1::Secret;

/// A start delay short enough for the tests, long enough to be a real wait.
pub(super) const START_DELAY: Duration = Duration::from_millis(500);
/// How long the scenarios watch for something that must not happen.
const QUIET: Duration = Duration::from_secs(4);

/// A namespace the test node serves.
pub(super) async fn node_namespace(
    cluster: &Cluster,
    ns: &str,
    readiness: Readiness,
) -> Result<()> {
    cluster.site_namespace(ns).await?;
    cluster.node.serve(ns, readiness);
    Ok(())
}

pub(super) async fn secret(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    data: &[(&str, &str)],
) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), ns);
    let data: BTreeMap<String, String> = data
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name}, "type": "Opaque", "stringData": data
    }))?;
    secrets.create(&Default::default(), &secret).await?;
    Ok(())
}

/// A site Deployment with these annotations (besides the site label).
pub(super) fn annotated_site(
    name: &str,
    ns: &str,
    image: &str,
    annotations: &[(&str, &str)],
) -> Value {
    let mut manifest = site(name, ns, image);
    let map: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(key, value)| (format!("cache-buster.io/{key}"), json!(value)))
        .collect();
    manifest["metadata"]["annotations"] = Value::Object(map);
    manifest
}

/// Waits until `count` requests matching `matching` reached the CDN.
pub(super) async fn purges(
    cluster: &Cluster,
    matching: &str,
    count: usize,
    within: Duration,
) -> Result<Vec<Recorded>> {
    eventually(
        &format!("{count} purge request(s) to {matching}"),
        within,
        || async move {
            let seen = cluster.cdn.requests(matching);
            Ok((seen.len() >= count).then_some(seen))
        },
    )
    .await
}

/// Waits until Job `name` has the condition `wanted` (Complete, Failed).
pub(super) async fn job_ends(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    wanted: &str,
    within: Duration,
) -> Result<Job> {
    eventually(
        &format!("Job {ns}/{name} {wanted}"),
        within,
        || async move {
            let job = jobs(cluster, ns).get_opt(name).await?;
            Ok(job.filter(|job| {
                job.status
                    .iter()
                    .flat_map(|status| status.conditions.iter().flatten())
                    .any(|condition| condition.type_ == wanted && condition.status == "True")
            }))
        },
    )
    .await
}

/// Waits until a pod of Job `job` ran `container`; that run.
async fn container_ran(
    cluster: &Cluster,
    ns: &str,
    job: &str,
    container: &str,
) -> Result<Executed> {
    let prefix = format!("{ns}/{job}-");
    eventually(&format!("{container} of {job} ran"), SOON, || {
        let prefix = prefix.clone();
        async move {
            Ok(cluster
                .node
                .executed(ns)
                .into_iter()
                .find(|run| run.container == container && run.pod.starts_with(&prefix)))
        }
    })
    .await
}

/// Waits until a pod of Job `job` is running its init container `container`
/// (as the test node reports it in the pod's status).
async fn container_running(cluster: &Cluster, ns: &str, job: &str, container: &str) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let prefix = format!("{job}-");
    eventually(&format!("{container} of {job} running"), SOON, || {
        let pods = pods.clone();
        let prefix = prefix.clone();
        async move {
            let listed = pods.list(&ListParams::default()).await?;
            let running = listed.items.iter().any(|pod| {
                pod.metadata
                    .name
                    .as_deref()
                    .is_some_and(|name| name.starts_with(&prefix))
                    && pod
                        .status
                        .iter()
                        .flat_map(|status| status.init_container_statuses.iter().flatten())
                        .any(|status| {
                            status.name == container
                                && status
                                    .state
                                    .as_ref()
                                    .is_some_and(|state| state.running.is_some())
                        })
            });
            Ok(running.then_some(()))
        }
    })
    .await
}

fn container_runs<'a>(executed: &'a [Executed], container: &str) -> Vec<&'a Executed> {
    executed
        .iter()
        .filter(|run| run.container == container)
        .collect()
}

// 1. An image change under a Flux-like apply: one purge per image, only after
//    the new ReplicaSet is fully available.
pub async fn purge_after_rollout(cluster: &Cluster) -> Result<()> {
    let ns = "node-rollout";
    node_namespace(cluster, ns, Readiness::Held).await?;
    secret(
        cluster,
        ns,
        "cache-buster-credentials",
        &[
            ("CLOUDFLARE_ZONE_ID", "zone-rollout"),
            ("CLOUDFLARE_API_TOKEN", "cf-token-rollout\n"),
        ],
    )
    .await?;
    let zone = "/zones/zone-rollout/";
    for (round, image) in ["nginx:1.27.1", "nginx:1.27.2"].into_iter().enumerate() {
        cluster.node.serve(ns, Readiness::Held);
        let stored = flux_apply(cluster, &site("shop", ns, image), false).await?;
        let job = stamped_job_name(&stored)?;
        wait_for_job(cluster, ns, &job).await?;
        // The Job waits in wait-rollout while the new pod is not Ready.
        container_running(cluster, ns, &job, "wait-rollout").await?;
        stable_for(QUIET).await;
        let early = cluster.cdn.requests(zone);
        ensure!(
            early.len() == round,
            "a purge was sent while the rollout of {image} was in progress: {early:?}"
        );

        cluster.node.serve(ns, Readiness::After(START_DELAY));
        let seen = purges(cluster, zone, round + 1, Duration::from_secs(60)).await?;
        let ready = ready_moment(cluster, ns, "shop", image).await?;
        let purge = seen.last().ok_or_else(|| anyhow!("no purge"))?;
        ensure!(
            purge.at >= ready,
            "the purge for {image} reached the CDN {:?} before its pods were Ready",
            ready - purge.at
        );
        ensure!(
            purge.method == "POST" && purge.path == "/client/v4/zones/zone-rollout/purge_cache",
            "{}",
            purge.dump()
        );
        ensure!(
            purge.header("authorization") == Some("Bearer cf-token-rollout"),
            "{}",
            purge.dump()
        );
        ensure!(
            purge.header("content-type") == Some("application/json"),
            "{}",
            purge.dump()
        );
        let body: Value = serde_json::from_str(&purge.body)?;
        ensure!(
            body == json!({"files": ["https://shop.example.com/"]}),
            "{body}"
        );
        job_ends(cluster, ns, &job, "Complete", SOON).await?;
    }
    stable_for(QUIET).await;
    let all = cluster.cdn.requests(zone);
    ensure!(
        all.len() == 2,
        "{} purges for two images: {all:?}",
        all.len()
    );
    Ok(())
}

/// Everything the API server holds about the namespace's site and its Jobs,
/// and every argv (and, `with_env`, environment) the node ran there: none of
/// it may carry `token`.
async fn assert_token_hidden(
    cluster: &Cluster,
    ns: &str,
    token: &str,
    with_env: bool,
) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let objects = [
        serde_json::to_string(
            &deployments(cluster, ns)
                .list(&ListParams::default())
                .await?
                .items,
        )?,
        serde_json::to_string(&jobs(cluster, ns).list(&ListParams::default()).await?.items)?,
        serde_json::to_string(&pods.list(&ListParams::default()).await?.items)?,
    ];
    for (what, text) in ["Deployments", "Jobs", "Pods"].iter().zip(&objects) {
        ensure!(!text.contains(token), "the token is in the {what} of {ns}");
    }
    for run in cluster.node.executed(ns) {
        ensure!(
            !run.argv.iter().any(|arg| arg.contains(token)),
            "the token is on the argv of {} in {}",
            run.container,
            run.pod
        );
        if with_env {
            ensure!(
                !run.env.iter().any(|(_, value)| value.contains(token)),
                "the token is in the environment of {} in {}",
                run.container,
                run.pod
            );
        }
    }
    Ok(())
}

/// Applies `manifest`, waits for its Job to complete; the Job's name.
pub(super) async fn purged_site(cluster: &Cluster, ns: &str, manifest: &Value) -> Result<String> {
    let stored = flux_apply(cluster, manifest, false).await?;
    let job = stamped_job_name(&stored)?;
    wait_for_job(cluster, ns, &job).await?;
    job_ends(cluster, ns, &job, "Complete", Duration::from_secs(90)).await?;
    Ok(job)
}

pub(super) fn bodies(requests: &[Recorded]) -> Result<Vec<Value>> {
    requests
        .iter()
        .map(|request| Ok(serde_json::from_str(&request.body)?))
        .collect()
}

// 2a. Cloudflare: files in batches of cloudflareBatchSize (30), then
//     prefixes, hosts and tags; everything alone.
pub async fn cloudflare_requests(cluster: &Cluster) -> Result<()> {
    let ns = "node-cloudflare";
    node_namespace(cluster, ns, Readiness::After(Duration::ZERO)).await?;
    let token = "cf-token-3b1f9";
    secret(
        cluster,
        ns,
        "cache-buster-credentials",
        &[
            ("CLOUDFLARE_ZONE_ID", "zone-cf\n"),
            ("CLOUDFLARE_API_TOKEN", &format!("{token}\n")),
        ],
    )
    .await?;
    let urls: Vec<String> = (0..31)
        .map(|n| format!("https://shop.example.com/page/{n}"))
        .collect();
    let targets = annotated_site(
        "shop",
        ns,
        "nginx:1.27.1",
        &[
            ("urls", &urls.join(",\n")),
            ("prefixes", "shop.example.com/blog/ shop.example.com/news/"),
            ("hosts", "static.example.com"),
            ("tags", "product-list home"),
        ],
    );
    let job = purged_site(cluster, ns, &targets).await?;
    let seen = cluster.cdn.requests("/zones/zone-cf/");
    ensure!(seen.len() == 5, "{} requests: {seen:?}", seen.len());
    for request in &seen {
        ensure!(
            request.method == "POST"
                && request.host == "api.cloudflare.com"
                && request.path == "/client/v4/zones/zone-cf/purge_cache",
            "{}",
            request.dump()
        );
        ensure!(
            request.header("authorization") == Some(&*format!("Bearer {token}")),
            "{}",
            request.dump()
        );
        ensure!(
            request.header("content-type") == Some("application/json"),
            "{}",
            request.dump()
        );
    }
    let expected = vec![
        json!({"files": urls[..30]}),
        json!({"files": urls[30..]}),
        json!({"prefixes": ["shop.example.com/blog/", "shop.example.com/news/"]}),
        json!({"hosts": ["static.example.com"]}),
        json!({"tags": ["product-list", "home"]}),
    ];
    ensure!(bodies(&seen)? == expected, "{:#?}", bodies(&seen)?);
    wait_for_events(cluster, ns, "shop", "CacheBusterPurged", 1).await?;

    let everything = annotated_site("all", ns, "nginx:1.27.1", &[("everything", "true")]);
    let everything_job = purged_site(cluster, ns, &everything).await?;
    ensure!(everything_job != job, "two sites, one Job name");
    let seen = cluster.cdn.requests("/zones/zone-cf/");
    ensure!(seen.len() == 6, "{} requests: {seen:?}", seen.len());
    ensure!(
        bodies(&seen[5..])? == vec![json!({"purge_everything": true})],
        "{}",
        seen[5].dump()
    );
    assert_token_hidden(cluster, ns, token, true).await
}

// 2b. Fastly: surrogate keys, then each URL through the API host;
//     everything is purge_all.
pub async fn fastly_requests(cluster: &Cluster) -> Result<()> {
    let ns = "node-fastly";
    node_namespace(cluster, ns, Readiness::After(Duration::ZERO)).await?;
    let token = "fastly-token-77a0";
    secret(
        cluster,
        ns,
        "fastly",
        &[
            ("FASTLY_SERVICE_ID", "svc-fastly"),
            ("FASTLY_API_TOKEN", &format!("{token}\n")),
        ],
    )
    .await?;
    let keyed = annotated_site(
        "blog",
        ns,
        "nginx:1.27.1",
        &[
            ("provider", "fastly"),
            ("secret", "fastly"),
            ("tags", "posts home"),
            (
                "urls",
                "https://blog.example.com/ https://blog.example.com/feed.xml",
            ),
        ],
    );
    purged_site(cluster, ns, &keyed).await?;
    let keys = cluster
        .cdn
        .requests("api.fastly.com/service/svc-fastly/purge");
    ensure!(keys.len() == 1, "{keys:?}");
    let request = &keys[0];
    ensure!(
        request.method == "POST" && request.header("surrogate-key") == Some("posts home"),
        "{}",
        request.dump()
    );
    ensure!(
        request.header("fastly-key") == Some(token),
        "{}",
        request.dump()
    );
    let pages = cluster.cdn.requests("blog.example.com/");
    // URL purges go through Fastly's API host: the key reaches no other.
    let purged: Vec<(String, String, String)> = pages
        .iter()
        .map(|r| (r.method.clone(), r.host.clone(), r.path.clone()))
        .collect();
    let api = |path: &str| {
        (
            "POST".to_owned(),
            "api.fastly.com".to_owned(),
            path.to_owned(),
        )
    };
    ensure!(
        purged
            == [
                api("/purge/blog.example.com/"),
                api("/purge/blog.example.com/feed.xml")
            ],
        "{purged:?}"
    );
    ensure!(
        pages.iter().all(|r| r.header("fastly-key") == Some(token)),
        "{pages:?}"
    );

    let everything = annotated_site(
        "docs",
        ns,
        "nginx:1.27.1",
        &[
            ("provider", "fastly"),
            ("secret", "fastly"),
            ("everything", "true"),
        ],
    );
    purged_site(cluster, ns, &everything).await?;
    let all = cluster
        .cdn
        .requests("api.fastly.com/service/svc-fastly/purge_all");
    ensure!(
        all.len() == 1 && all[0].method == "POST" && all[0].header("fastly-key") == Some(token),
        "{all:?}"
    );
    ensure!(
        cluster.cdn.requests("docs.example.com").is_empty(),
        "a URL purge for a site with only everything"
    );
    assert_token_hidden(cluster, ns, token, true).await
}

// 2c. Webhook: one POST with the rollout's facts, the bearer token.
pub async fn webhook_request(cluster: &Cluster) -> Result<()> {
    let ns = "node-webhook";
    node_namespace(cluster, ns, Readiness::After(Duration::ZERO)).await?;
    let token = "hook-token-5c2e";
    secret(
        cluster,
        ns,
        "hook",
        &[
            (
                "WEBHOOK_URL",
                "https://hooks.example.test/node-webhook/purge\n",
            ),
            ("WEBHOOK_TOKEN", token),
        ],
    )
    .await?;
    let manifest = annotated_site(
        "news",
        ns,
        "ghcr.io/acme/news:2.0.1",
        &[
            ("provider", "webhook"),
            ("secret", "hook"),
            ("urls", "https://news.example.com/"),
            ("tags", "front"),
        ],
    );
    let job = purged_site(cluster, ns, &manifest).await?;
    let stored = deployments(cluster, ns).get("news").await?;
    let seen = cluster.cdn.requests("hooks.example.test/node-webhook/");
    ensure!(seen.len() == 1, "{seen:?}");
    let request = &seen[0];
    ensure!(
        request.method == "POST" && request.path == "/node-webhook/purge",
        "{}",
        request.dump()
    );
    ensure!(
        request.header("authorization") == Some(&*format!("Bearer {token}")),
        "{}",
        request.dump()
    );
    ensure!(
        request.header("content-type") == Some("application/json"),
        "{}",
        request.dump()
    );
    let body: Value = serde_json::from_str(&request.body)?;
    let expected = json!({
        "site": "news.example.com", "namespace": ns, "deployment": "news",
        "image": "ghcr.io/acme/news:2.0.1", "imageHash": annotation(&stored, HASH_ANNOTATION),
        "jobName": job, "urls": ["https://news.example.com/"], "prefixes": [], "hosts": [],
        "tags": ["front"], "everything": false
    });
    ensure!(body == expected, "{body:#}");
    // The optional token is read from the mounted Secret, like the URL:
    // never through an object, the argv or the environment.
    assert_token_hidden(cluster, ns, token, true).await
}

// 3. Two image changes in quick succession: the stale Job never purges; the
//    newest image is purged after its rollout.
pub async fn quick_succession(cluster: &Cluster) -> Result<()> {
    let ns = "node-succession";
    node_namespace(cluster, ns, Readiness::After(Duration::ZERO)).await?;
    secret(
        cluster,
        ns,
        "cache-buster-credentials",
        &[("WEBHOOK_URL", "https://hooks.example.test/node-succession")],
    )
    .await?;
    let manifest = |image: &str| annotated_site("www", ns, image, &[("provider", "webhook")]);
    let first = purged_site(cluster, ns, &manifest("nginx:1.27.1")).await?;
    purges(cluster, "hooks.example.test/node-succession", 1, SOON).await?;

    cluster.node.serve(ns, Readiness::Held);
    let middle = stamped_job_name(&flux_apply(cluster, &manifest("nginx:1.27.2"), false).await?)?;
    container_running(cluster, ns, &middle, "wait-rollout").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let newest = flux_apply(cluster, &manifest("nginx:1.27.3"), false).await?;
    let last = stamped_job_name(&newest)?;
    // The middle Job, waiting in rollout status, is cancelled.
    eventually("the middle Job cancelled", SOON, || {
        let middle = middle.clone();
        async move {
            Ok(jobs(cluster, ns)
                .get_opt(&middle)
                .await?
                .is_none()
                .then_some(()))
        }
    })
    .await?;
    wait_for_events(cluster, ns, "www", "CacheBusterJobCancelled", 1).await?;
    cluster.node.serve(ns, Readiness::After(START_DELAY));
    job_ends(cluster, ns, &last, "Complete", Duration::from_secs(60)).await?;
    let ready = ready_moment(cluster, ns, "www", "nginx:1.27.3").await?;
    stable_for(QUIET).await;

    let seen = cluster.cdn.requests("hooks.example.test/node-succession");
    let jobs_purged: Vec<String> = bodies(&seen)?
        .iter()
        .map(|body| body["jobName"].as_str().unwrap_or_default().to_owned())
        .collect();
    ensure!(
        jobs_purged == [first, last.clone()],
        "purges by {jobs_purged:?}; the middle Job was {middle}"
    );
    let newest_purge = seen.last().ok_or_else(|| anyhow!("no purge"))?;
    ensure!(
        newest_purge.at >= ready,
        "the newest image was purged before its rollout"
    );
    let body: Value = serde_json::from_str(&newest_purge.body)?;
    ensure!(
        body["image"] == "docker.io/library/nginx:1.27.3"
            && body["imageHash"] == json!(annotation(&newest, HASH_ANNOTATION)),
        "{body}"
    );
    Ok(())
}

// 4. The CDN answers 503 twice, then 200: one Job, one successful pod. A
//    permanent 503: the Job fails after its retries, visibly.
pub async fn cdn_failures(cluster: &Cluster) -> Result<()> {
    let ns = "node-cdn-failures";
    node_namespace(cluster, ns, Readiness::After(Duration::ZERO)).await?;
    secret(
        cluster,
        ns,
        "flaky",
        &[
            ("CLOUDFLARE_ZONE_ID", "zone-flaky"),
            ("CLOUDFLARE_API_TOKEN", "t"),
        ],
    )
    .await?;
    secret(
        cluster,
        ns,
        "down",
        &[
            ("CLOUDFLARE_ZONE_ID", "zone-down"),
            ("CLOUDFLARE_API_TOKEN", "t"),
        ],
    )
    .await?;
    cluster
        .cdn
        .fail("/zones/zone-flaky/", Failure::Unavailable { times: 2 });
    cluster
        .cdn
        .fail("/zones/zone-down/", Failure::Permanent { status: 503 });

    let flaky = annotated_site(
        "docs",
        ns,
        "nginx:1.27.1",
        &[("secret", "flaky"), ("everything", "true")],
    );
    let job = purged_site(cluster, ns, &flaky).await?;
    let seen = cluster.cdn.requests("/zones/zone-flaky/");
    ensure!(
        seen.len() == 3,
        "{} requests for 503, 503, 200: {seen:?}",
        seen.len()
    );
    let status = jobs(cluster, ns)
        .get(&job)
        .await?
        .status
        .unwrap_or_default();
    ensure!(
        status.succeeded == Some(1) && status.failed.unwrap_or(0) == 0,
        "{status:?}"
    );
    let purge_runs = container_runs(&cluster.node.executed(ns), "purge")
        .into_iter()
        .filter(|run| run.pod.contains(&job))
        .count();
    ensure!(purge_runs == 1, "{purge_runs} purge containers for one Job");

    // 429 with Retry-After: the purge waits as told, then succeeds.
    secret(
        cluster,
        ns,
        "throttled",
        &[
            ("CLOUDFLARE_ZONE_ID", "zone-throttled"),
            ("CLOUDFLARE_API_TOKEN", "t"),
        ],
    )
    .await?;
    cluster.cdn.fail(
        "/zones/zone-throttled/",
        Failure::RateLimited {
            times: 1,
            retry_after: 3,
        },
    );
    let throttled = annotated_site(
        "blog",
        ns,
        "nginx:1.27.1",
        &[("secret", "throttled"), ("everything", "true")],
    );
    purged_site(cluster, ns, &throttled).await?;
    let seen = cluster.cdn.requests("/zones/zone-throttled/");
    ensure!(
        seen.len() == 2,
        "{} requests for 429, 200: {seen:?}",
        seen.len()
    );
    let waited = seen[1].at - seen[0].at;
    ensure!(
        waited >= Duration::from_secs(3),
        "the purge retried after {waited:?}, not the 3 s of Retry-After"
    );

    let down = annotated_site(
        "shop",
        ns,
        "nginx:1.27.1",
        &[("secret", "down"), ("everything", "true")],
    );
    let stored = flux_apply(cluster, &down, false).await?;
    let failed = stamped_job_name(&stored)?;
    let job = job_ends(cluster, ns, &failed, "Failed", Duration::from_secs(200)).await?;
    let status = job.status.unwrap_or_default();
    // backoffLimit 3: four pods, each trying six times (Retry-After: 1).
    ensure!(status.failed == Some(4), "{status:?}");
    let seen = cluster.cdn.requests("/zones/zone-down/");
    ensure!(
        seen.len() == 24,
        "{} requests: four pods of six tries expected",
        seen.len()
    );
    let reason = status
        .conditions
        .iter()
        .flatten()
        .find(|condition| condition.type_ == "Failed")
        .and_then(|condition| condition.reason.clone());
    ensure!(
        reason.as_deref() == Some("BackoffLimitExceeded"),
        "{reason:?}"
    );
    let event = wait_for_events(cluster, ns, "shop", "CacheBusterPurgeFailed", 1).await?;
    let message = event[0].message.clone().unwrap_or_default();
    ensure!(
        message.contains("origin is down for maintenance") && message.contains("503"),
        "{message}"
    );
    Ok(())
}

// 5. Credentials missing: a key the Secret lacks, or the Secret itself,
//    fails the purge at once (the Secret is mounted optional) with a
//    message naming the Secret and the key, which the Event quotes.
pub async fn missing_credentials(cluster: &Cluster) -> Result<()> {
    let ns = "node-credentials";
    node_namespace(cluster, ns, Readiness::After(Duration::ZERO)).await?;
    secret(cluster, ns, "half", &[("CLOUDFLARE_ZONE_ID", "zone-half")]).await?;
    for (site, secret_name, expected) in [
        (
            "shop",
            "half",
            "the Secret half has no key CLOUDFLARE_API_TOKEN",
        ),
        ("blog", "nowhere", "the Secret nowhere is missing or empty"),
    ] {
        let manifest = annotated_site(
            site,
            ns,
            "nginx:1.27.1",
            &[("secret", secret_name), ("everything", "true")],
        );
        let stored = flux_apply(cluster, &manifest, false).await?;
        let job = stamped_job_name(&stored)?;
        let run = container_ran(cluster, ns, &job, "purge").await?;
        // Exit code 2: no retry can mend a missing Secret or key.
        ensure!(
            run.exit_code == cache_buster::job::FINAL_FAILURE_EXIT_CODE,
            "the purge without its credentials exited {}",
            run.exit_code
        );
        ensure!(
            run.finished - run.started < Duration::from_secs(5),
            "the purge took {:?} to name what is missing",
            run.finished - run.started
        );
        // The Job's podFailurePolicy fails it at once, without the back-offs
        // of backoffLimit 3, and the Deployment's Event names what is missing.
        let failed = job_ends(cluster, ns, &job, "Failed", Duration::from_secs(15)).await?;
        let pods_run = failed
            .status
            .as_ref()
            .and_then(|status| status.failed)
            .unwrap_or_default();
        ensure!(pods_run == 1, "{pods_run} pods ran, not one");
        let event = wait_for_events(cluster, ns, site, "CacheBusterPurgeFailed", 1).await?;
        let text = event[0].message.clone().unwrap_or_default();
        ensure!(text.contains(expected), "{text}");
    }
    ensure!(
        cluster.cdn.requests("zone-half").is_empty(),
        "a purge without a token was sent"
    );
    Ok(())
}

/// The double's hang: a request it never answers runs into the purge's
/// per-request time-out, cut to the purge's budget (its own is 180 s; here
/// 3 s), and is still recorded. The project's program, as the Job runs it.
pub async fn cdn_hang(cluster: &Cluster) -> Result<()> {
    cluster.cdn.fail(
        "hooks.example.test/hang",
        Failure::Hang {
            duration: Duration::from_secs(30),
        },
    );
    let secret = cluster.root().join("hang-secret");
    std::fs::create_dir_all(&secret)?;
    std::fs::write(
        secret.join("WEBHOOK_URL"),
        "https://hooks.example.test/hang\n",
    )?;
    let log = cluster.root().join("hang-termination-log");
    let started = Instant::now();
    let output = tokio::process::Command::new(&cluster.program)
        .args([
            "purge",
            "--provider=webhook",
            "--secret=hang",
            "--budget-seconds=3",
        ])
        .arg("--credentials")
        .arg(&secret)
        .arg("--termination-log")
        .arg(&log)
        .env("CACHE_BUSTER_TEST_CA_FILE", cluster.pki.ca_file())
        .env(
            "CACHE_BUSTER_TEST_CONNECT_TO",
            cluster.cdn.address.to_string(),
        )
        .output()
        .await?;
    let message = std::fs::read_to_string(&log).unwrap_or_default();
    ensure!(
        output.status.code() == Some(1),
        "purge: {:?} {message}",
        output.status
    );
    ensure!(message.contains("no answer within"), "{message}");
    ensure!(
        started.elapsed() < Duration::from_secs(10),
        "the purge waited {:?}",
        started.elapsed()
    );
    ensure!(
        cluster.cdn.requests("hooks.example.test/hang").len() == 1,
        "the hanging request was not recorded"
    );
    Ok(())
}

/// The README's quick start, as a newcomer runs it with no CDN account: the
/// example applied as kubectl renders it, then the README's `kubectl set
/// image` to the next tag. Each rollout ends in one CacheBusterPurged Event
/// that quotes the dry run, and nothing reaches a CDN.
pub async fn quick_start(cluster: &Cluster) -> Result<()> {
    use cache_buster_e2e_cluster::cluster::apply_yaml;
    use cache_buster_e2e_cluster::process::run;
    use cache_buster_e2e_cluster::tools::repository;
    let ns = "cache-buster-quickstart";
    let readme = std::fs::read_to_string(repository().join("README.md"))?;
    let set_image = readme
        .lines()
        .find(|line| {
            line.starts_with("kubectl set image -n cache-buster-quickstart deployment/shop web=")
        })
        .ok_or_else(|| anyhow!("the README's quick start has no `kubectl set image` step"))?;
    let next_image = set_image
        .split_once("web=")
        .map(|(_, image)| image.trim())
        .unwrap_or_default();
    let rendered = run(
        &cluster.tools.kubectl,
        &[
            "kustomize",
            &repository()
                .join("docs/examples/quickstart")
                .display()
                .to_string(),
        ],
        &[],
    )?;
    ensure!(
        !rendered.contains(next_image),
        "the example already runs {next_image}"
    );

    cluster.node.serve(ns, Readiness::After(START_DELAY));
    apply_yaml(&cluster.client, &rendered, None, &[]).await?;
    let first = wait_for_events(cluster, ns, "shop", "CacheBusterPurged", 1).await?;

    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": next_image}]}}}});
    deployments(cluster, ns)
        .patch("shop", &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    let purged = wait_for_events(cluster, ns, "shop", "CacheBusterPurged", 2).await?;
    stable_for(QUIET).await;
    let purged_now = events(cluster, ns, "shop", "CacheBusterPurged").await?;
    ensure!(
        purged_now.len() == 2 && first.len() == 1,
        "{} CacheBusterPurged Events for two rollouts",
        purged_now.len()
    );
    for event in &purged {
        let message = event.message.as_deref().unwrap_or_default();
        ensure!(
            message.contains("made a dry run of purging the cloudflare cache")
                && message.contains(
                    "dry run, nothing sent: it would have purged 1 URL, 1 tag with 2 requests"
                )
                && message.contains(r#"{"files":["https://quickstart.example.com/"]}"#),
            "{message}"
        );
    }
    ensure!(
        purged.iter().any(|event| event
            .message
            .as_deref()
            .is_some_and(|message| message.contains(next_image))),
        "no Event names {next_image}"
    );
    let sent: Vec<Recorded> = cluster
        .cdn
        .requests("")
        .into_iter()
        .filter(|request| {
            request.body.contains("quickstart") || request.path.contains("CLOUDFLARE_ZONE_ID")
        })
        .collect();
    ensure!(sent.is_empty(), "a dry run reached the CDN: {sent:?}");
    Ok(())
}

/// Two launchers, as deploy/launcher.yaml runs them: the leader is killed
/// (SIGKILL, as a node that dies) in the middle of a rollout. The standby
/// takes the Lease within its duration, creates the Job if the leader had
/// not, and the purge happens exactly once, with one Event per outcome.
pub async fn handover(cluster: &Cluster) -> Result<()> {
    let ns = "node-handover";
    node_namespace(cluster, ns, Readiness::Held).await?;
    secret(
        cluster,
        ns,
        "cache-buster-credentials",
        &[
            ("CLOUDFLARE_ZONE_ID", "zone-handover"),
            ("CLOUDFLARE_API_TOKEN", "cf-token-handover"),
        ],
    )
    .await?;
    let roles = || async {
        let first = cluster.readyz(false).await.unwrap_or_default();
        let second = cluster.readyz(true).await.unwrap_or_default();
        (first.trim().to_owned(), second.trim().to_owned())
    };
    cluster.start_standby().await?;
    eventually(
        "the first launcher leads, the second stands by",
        SOON,
        || async {
            Ok(
                (roles().await == ("ok: leader".to_owned(), "ok: standby".to_owned()))
                    .then_some(()),
            )
        },
    )
    .await?;

    let zone = "/zones/zone-handover/";
    let stored = flux_apply(cluster, &site("shop", ns, "nginx:1.27.1"), false).await?;
    let job = stamped_job_name(&stored)?;
    cluster.kill_launcher()?;
    let killed = Instant::now();
    eventually("the standby leads", Duration::from_secs(40), || async {
        Ok((cluster.readyz(true).await?.trim() == "ok: leader").then_some(()))
    })
    .await?;
    let took_over = killed.elapsed();
    ensure!(
        took_over <= Duration::from_secs(20),
        "the standby took {took_over:?} to lead; the Lease lasts 15 s"
    );
    wait_for_job(cluster, ns, &job).await?;
    cluster.node.serve(ns, Readiness::After(START_DELAY));
    purges(cluster, zone, 1, Duration::from_secs(60)).await?;
    job_ends(cluster, ns, &job, "Complete", SOON).await?;
    wait_for_events(cluster, ns, "shop", "CacheBusterPurged", 1).await?;
    stable_for(QUIET).await;
    let sent = cluster.cdn.requests(zone);
    ensure!(
        sent.len() == 1,
        "{} purges for one rollout: {sent:?}",
        sent.len()
    );
    for reason in ["CacheBusterJobCreated", "CacheBusterPurged"] {
        let found = events(cluster, ns, "shop", reason).await?;
        ensure!(
            found.len() == 1,
            "{} {reason} Events: {found:?}",
            found.len()
        );
    }
    let companions = companion_jobs(cluster, ns).await?;
    ensure!(companions.len() == 1, "{} companion Jobs", companions.len());

    // Back to one launcher, as the other scenarios expect: the standby
    // releases the Lease as it stops, and the first takes it at once.
    cluster.stop_standby()?;
    cluster.start_launcher().await?;
    eventually("the first launcher leads again", SOON, || async {
        Ok((cluster.readyz(false).await?.trim() == "ok: leader").then_some(()))
    })
    .await?;
    Ok(())
}
