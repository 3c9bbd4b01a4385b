//! Layers (SPEC §5): a site whose own Varnish stands behind Cloudflare
//! lists `http, cloudflare`. The Job's purge asks the API server for the
//! cache Service's EndpointSlices (the Role of deploy/site-http), purges
//! each ready cache, and only then Cloudflare; one Event says what each
//! layer purged.

use super::running::{START_DELAY, annotated_site, bodies, node_namespace, purged_site, secret};
use super::*;
use cache_buster_e2e_cluster::caches::{Caches, host_address};
use cache_buster_e2e_cluster::node::Readiness;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::Role;
use kube::api::PostParams;

/// The rules a component (deploy/site-http, deploy/site-content) adds to
/// the site's Role, applied as its kustomize patch would (the JSON patch
/// ops of the component).
pub(super) async fn component_role(cluster: &Cluster, ns: &str, name: &str) -> Result<()> {
    let component: Value = serde_yaml::from_str(&std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../deploy/{name}/kustomization.yaml")),
    )?)?;
    let ops: Vec<Value> = serde_yaml::from_str(
        component["patches"][0]["patch"]
            .as_str()
            .with_context(|| format!("deploy/{name} has no patch"))?,
    )?;
    let roles: Api<Role> = Api::namespaced(cluster.client.clone(), ns);
    let mut role = roles.get("cache-buster").await?;
    for op in ops {
        ensure!(
            op["op"] == "add" && op["path"] == "/rules/-",
            "deploy/{name}: an op this scenario does not apply: {op}"
        );
        role.rules
            .get_or_insert_default()
            .push(serde_json::from_value(op["value"].clone())?);
    }
    roles
        .replace("cache-buster", &PostParams::default(), &role)
        .await?;
    Ok(())
}

/// The Service `varnish` (port `purge`) and the EndpointSlice of its one
/// ready cache, as the endpointslice controller would write it for a pod.
async fn varnish_service(cluster: &Cluster, ns: &str, cache: std::net::SocketAddr) -> Result<()> {
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), ns);
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "varnish"},
        "spec": {"ports": [{"name": "purge", "port": 6091, "targetPort": cache.port()}]}
    }))?;
    services.create(&PostParams::default(), &service).await?;
    let slices: Api<EndpointSlice> = Api::namespaced(cluster.client.clone(), ns);
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {
            "name": "varnish-1",
            "labels": {
                "kubernetes.io/service-name": "varnish",
                "endpointslice.kubernetes.io/managed-by": "cache-buster-scenarios"
            }
        },
        "addressType": if cache.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{"addresses": [cache.ip().to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "purge", "port": cache.port(), "protocol": "TCP"}]
    }))?;
    slices.create(&PostParams::default(), &slice).await?;
    Ok(())
}

pub async fn varnish_then_cloudflare(cluster: &Cluster) -> Result<()> {
    let Some(address) = host_address() else {
        println!(
            "skipped: a layered site needs an address of this host that is not loopback \
             (the API server refuses loopback endpoints), and this host has none"
        );
        return Ok(());
    };
    let ns = "node-layers";
    node_namespace(cluster, ns, Readiness::After(START_DELAY)).await?;
    component_role(cluster, ns, "site-http").await?;
    let caches = Caches::start(&[address]).await?;
    let cache = caches.endpoints[0];
    varnish_service(cluster, ns, cache).await?;
    let token = "cf-token-layers-77a1";
    secret(
        cluster,
        ns,
        "cache-buster-credentials",
        &[
            ("CLOUDFLARE_ZONE_ID", "zone-layers"),
            ("CLOUDFLARE_API_TOKEN", token),
        ],
    )
    .await?;

    let manifest = annotated_site(
        "shop",
        ns,
        "nginx:1.27.1",
        &[
            ("provider", "http, cloudflare"),
            ("http-service", "varnish:purge"),
            (
                "urls",
                "https://shop.example.com/, https://shop.example.com/menu",
            ),
        ],
    );
    purged_site(cluster, ns, &manifest).await?;

    let at_cache = caches.requests(cache);
    let purged: Vec<(String, String, String)> = at_cache
        .iter()
        .map(|r| (r.method.clone(), r.host.clone(), r.path.clone()))
        .collect();
    ensure!(
        purged
            == [
                ("PURGE".into(), "shop.example.com".into(), "/".into()),
                ("PURGE".into(), "shop.example.com".into(), "/menu".into()),
            ],
        "the cache got {purged:?}"
    );
    let at_cdn = cluster.cdn.requests("/zones/zone-layers/");
    ensure!(
        bodies(&at_cdn)?
            == [json!({"files": ["https://shop.example.com/", "https://shop.example.com/menu"]})],
        "Cloudflare got {:#?}",
        bodies(&at_cdn)?
    );
    let last_cache = at_cache.iter().map(|r| r.at).max().context("no purge")?;
    ensure!(
        at_cdn[0].at > last_cache,
        "Cloudflare was purged before the site's own cache"
    );

    let event = wait_for_events(cluster, ns, "shop", "CacheBusterPurged", 1).await?;
    let text = event[0].message.clone().unwrap_or_default();
    for said in [
        "purged the http, cloudflare caches",
        "3 requests",
        "http purged 2 URL purges, then cloudflare purged 2 URLs",
    ] {
        ensure!(text.contains(said), "{said:?} not in: {text}");
    }
    ensure!(!text.contains(token), "the token in the Event: {text}");
    Ok(())
}
