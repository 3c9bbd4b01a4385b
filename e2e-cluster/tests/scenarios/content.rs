//! SPEC §9 on the real control plane: a static site with `P/content`, its
//! images in the real registry (a shared base layer and a site layer each,
//! whiteouts included). A, then B (one post added) whose purge fails, then
//! C: B's Event lists B's changes, and C's purge covers A→C, since A is the
//! image whose purge last succeeded. The rollback C→A purges what differs
//! between C and A.

use super::layers::component_role;
use super::running::{START_DELAY, annotated_site, bodies, job_ends, node_namespace, secret};
use super::*;
use cache_buster_e2e_cluster::cdn::Failure;
use cache_buster_e2e_cluster::node::Readiness;
use cache_buster_e2e_cluster::site_images::{LayerEntry, layer, nginx_base, push};

const HTML: &str = "usr/share/nginx/html";

/// The blog's images: the shared base, then each version's site layer.
async fn blog_images(registry: &str) -> Result<[String; 3]> {
    let base = nginx_base()?;
    let file = |path: &str| format!("{HTML}/{path}");
    let (index, feed, hello, new, third) = (
        file("index.html"),
        file("index.xml"),
        file("posts/hello/index.html"),
        file("posts/new/index.html"),
        file("posts/third/index.html"),
    );
    let a = layer(&[
        LayerEntry::File(&index, b"hello"),
        LayerEntry::File(&feed, b"<rss>hello</rss>"),
        LayerEntry::File(&hello, b"<h1>hello</h1>"),
    ])?;
    let b = layer(&[
        LayerEntry::File(&index, b"new, hello"),
        LayerEntry::File(&feed, b"<rss>new hello</rss>"),
        LayerEntry::File(&hello, b"<h1>hello</h1>"),
        LayerEntry::File(&new, b"<h1>new</h1>"),
    ])?;
    let c = layer(&[
        LayerEntry::File(&index, b"third, new, hello"),
        LayerEntry::File(&feed, b"<rss>third new hello</rss>"),
        LayerEntry::File(&hello, b"<h1>hello</h1>"),
        LayerEntry::File(&new, b"<h1>new</h1>"),
        LayerEntry::File(&third, b"<h1>third</h1>"),
        LayerEntry::Whiteout(&file("50x.html")),
    ])?;
    Ok([
        push(registry, "blog", "a", &[base.clone(), a]).await?,
        push(registry, "blog", "b", &[base.clone(), b]).await?,
        push(registry, "blog", "c", &[base, c]).await?,
    ])
}

/// The URLs Cloudflare got in `files` from this zone, from the `from`th
/// request on, sorted.
fn files_purged(cluster: &Cluster, zone: &str, from: usize) -> Result<Vec<String>> {
    let requests = cluster.cdn.requests(&format!("/zones/{zone}/"));
    let mut files: Vec<String> = bodies(requests.get(from..).unwrap_or_default())?
        .iter()
        .flat_map(|body| body["files"].as_array().cloned().unwrap_or_default())
        .filter_map(|url| url.as_str().map(str::to_owned))
        .collect();
    files.sort();
    Ok(files)
}

/// Applies `manifest` as Flux does and waits until its stamped Job `ends`
/// (Complete, Failed).
async fn roll_out(cluster: &Cluster, ns: &str, manifest: &Value, ends: &str) -> Result<()> {
    let stored = flux_apply(cluster, manifest, false).await?;
    job_ends(
        cluster,
        ns,
        &stamped_job_name(&stored)?,
        ends,
        Duration::from_secs(90),
    )
    .await?;
    Ok(())
}

fn urls(paths: &[&str]) -> Vec<String> {
    let mut urls: Vec<String> = paths
        .iter()
        .map(|path| format!("https://blog.example.com/{path}"))
        .collect();
    urls.sort();
    urls
}

pub async fn a_content_site_purges_what_changed_since_its_last_purge(
    cluster: &Cluster,
) -> Result<()> {
    let ns = "node-content";
    node_namespace(cluster, ns, Readiness::After(START_DELAY)).await?;
    component_role(cluster, ns, "site-content").await?;
    secret(
        cluster,
        ns,
        "cache-buster-credentials",
        &[
            ("CLOUDFLARE_ZONE_ID", "zone-content"),
            ("CLOUDFLARE_API_TOKEN", "cf-token-content"),
        ],
    )
    .await?;
    // B's purge fails for good: its Secret's token is one Cloudflare refuses.
    secret(
        cluster,
        ns,
        "refused",
        &[
            ("CLOUDFLARE_ZONE_ID", "zone-refused"),
            ("CLOUDFLARE_API_TOKEN", "cf-token-revoked"),
        ],
    )
    .await?;
    cluster.cdn.fail(
        "/zones/zone-refused/",
        Failure::Credential {
            expected: "cf-token-current".to_owned(),
        },
    );
    let [a, b, c] = blog_images(&cluster.registry).await?;
    let content = ("content", "/usr/share/nginx/html=https://blog.example.com/");
    let blog = |image: &str, secret: Option<&str>| {
        let mut annotations = vec![content];
        annotations.extend(secret.map(|secret| ("secret", secret)));
        let mut manifest = annotated_site("blog", ns, image, &annotations);
        manifest["metadata"]["labels"]["cache-buster.io/site"] = json!("blog.example.com");
        manifest
    };

    // A, the first rollout: nothing to compare with, the documented fallback.
    roll_out(cluster, ns, &blog(&a, None), "Complete").await?;
    let event = wait_for_events(cluster, ns, "blog", "CacheBusterPurged", 1).await?;
    let text = event[0].message.clone().unwrap_or_default();
    ensure!(
        text.contains("content: fell back to the prefixes blog.example.com/ (no earlier purge of this Deployment succeeded"),
        "A's Event: {text}"
    );

    // B, whose purge fails: its Event lists exactly B's changes (the post
    // only B's site layer holds counts as changed: the base might hold it).
    roll_out(cluster, ns, &blog(&b, Some("refused")), "Failed").await?;
    let failed = wait_for_events(cluster, ns, "blog", "CacheBusterPurgeFailed", 1).await?;
    let text = failed[0].message.clone().unwrap_or_default();
    ensure!(
        // The failure's quote of the outcome keeps its end: the images'
        // digests, the counts and the URLs.
        text.contains(&format!(" → {}/blog@sha256:", cluster.registry))
            && text.contains(": 0 added, 3 changed, 0 removed, ")
            && text.contains(
                "5 URLs purged: https://blog.example.com/ https://blog.example.com/index.html \
                 https://blog.example.com/index.xml https://blog.example.com/posts/new/ \
                 https://blog.example.com/posts/new/index.html"
            ),
        "B's Event does not list A→B: {text}"
    );

    // C: compared with A (B never purged), so B's post is purged too.
    let before = cluster.cdn.requests("/zones/zone-content/").len();
    roll_out(cluster, ns, &blog(&c, None), "Complete").await?;
    let purged = files_purged(cluster, "zone-content", before)?;
    let a_to_c = urls(&[
        "",
        "index.html",
        "index.xml",
        "50x.html",
        "posts/new/",
        "posts/new/index.html",
        "posts/third/",
        "posts/third/index.html",
    ]);
    ensure!(
        purged == a_to_c,
        "C's purge sent {purged:#?}, not A→C's {a_to_c:#?}"
    );

    // The rollback C → A: A's Job runs again, compared with C.
    let before = cluster.cdn.requests("/zones/zone-content/").len();
    flux_apply(cluster, &blog(&a, None), false).await?;
    let events = wait_for_events(cluster, ns, "blog", "CacheBusterPurged", 3).await?;
    let purged = files_purged(cluster, "zone-content", before)?;
    ensure!(
        purged == a_to_c,
        "the rollback's purge sent {purged:#?}, not C→A's {a_to_c:#?}"
    );
    ensure!(
        events.iter().any(|event| event
            .message
            .as_deref()
            .is_some_and(|text| text.contains("1 added, 4 changed, 0 removed"))),
        "no Event of the rollback says C→A: {events:#?}"
    );
    Ok(())
}
