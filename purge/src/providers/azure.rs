//! Azure Front Door (Standard/Premium): the endpoint's `purge` action of
//! Azure Resource Manager, `{"contentPaths":[…],"domains":[…]}` for each
//! host's paths (at most 100 a request), or `/*` for everything; then the
//! operation that ARM names in `Azure-AsyncOperation` polled until
//! `Succeeded`. The bearer token is Entra ID's, for a client secret in the
//! Secret or for AKS Workload Identity (entra.rs).

use crate::catalog::Info;
use crate::flags::{RenderFlags, Rendering};
use crate::targets::Target;

pub const INFO: Info = Info {
    name: "azure",
    secret_keys: &[
        "AZURE_SUBSCRIPTION_ID",
        "AZURE_RESOURCE_GROUP",
        "AZURE_PROFILE",
        "AZURE_ENDPOINT",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
    ],
    // Without a client secret, the pod's AKS Workload Identity (whose
    // webhook gives the tenant and the client too).
    optional_keys: &["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"],
    accepts: &[Target::Urls, Target::Prefixes, Target::Everything],
    needs_no_target: false,
    reads_the_api: false,
    needs_job_uid: false,
    // "A cache purge can take up to 10 minutes to propagate" (Front Door's
    // cache purge documentation): the purge waits for it.
    completion_seconds: 600,
    pod_labels: &[("azure.workload.identity/use", "true")],
    // Only the purge talks to Azure: the rollout's wait gets no Azure token.
    pod_annotations: &[("azure.workload.identity/skip-containers", "wait-rollout")],
};

/// It reads nothing from the argv besides the targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "client", derive(clap::Args), group(skip))]
pub struct Flags {}

impl RenderFlags for Flags {
    fn render(&self, _to: &mut Rendering<'_>) {}
}

/// Paths in one purge request, at most (Front Door's limit).
pub const PATHS_PER_REQUEST: usize = 100;
/// The Azure Resource Manager API version the requests are written for.
pub const API_VERSION: &str = "2023-05-01";

#[cfg(feature = "client")]
pub use requests::Azure;

#[cfg(feature = "client")]
mod requests {
    use crate::cdn::{Cdn, Completion, Found, Layer, Options, Preparing, top_level_status};
    use crate::credentials::Credentials;
    use crate::providers::azure::{API_VERSION, PATHS_PER_REQUEST};
    use crate::request::{PlannedRequest, Purges, counted, json_request, path_segment};
    use std::time::Duration;

    pub const RESOURCE_MANAGER: &str = "https://management.azure.com";
    /// How often an operation in progress is asked about, unless ARM's
    /// `Retry-After` says otherwise.
    pub const POLL_INTERVAL: Duration = Duration::from_secs(10);
    const ASYNC_OPERATION: &str = "Azure-AsyncOperation";

    pub struct Azure;

    impl Cdn for Azure {
        /// Entra ID's token (a dry run reads no credential and asks for none).
        fn prepare<'a>(
            &'a self,
            options: &'a Options,
            credentials: &'a Credentials,
            dry_run: bool,
        ) -> Preparing<'a> {
            Box::pin(async move {
                if dry_run {
                    return Ok(Found::placeholder_bearer("Entra ID access token"));
                }
                let (token, secrets) = crate::entra::token(
                    credentials,
                    &options.azure,
                    options.limits,
                    &options.network,
                )
                .await?;
                Ok(Found::with_bearer(token, secrets))
            })
        }

        /// Azure Container Registry exchanges the same token for its own.
        fn registry_identity(
            &self,
            options: &Options,
            credentials: &Credentials,
        ) -> Option<crate::registry_identity::RegistryIdentity> {
            Some(crate::registry_identity::RegistryIdentity::Azure {
                credentials: credentials.clone(),
                environment: options.azure.clone(),
                limits: options.limits,
            })
        }

        fn plan(&self, layer: &Layer<'_>) -> Vec<PlannedRequest> {
            let value = |key| path_segment(layer.credentials.value(key));
            let url = format!(
                "{RESOURCE_MANAGER}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Cdn/profiles/{}/afdEndpoints/{}/purge?api-version={API_VERSION}",
                value("AZURE_SUBSCRIPTION_ID"),
                value("AZURE_RESOURCE_GROUP"),
                value("AZURE_PROFILE"),
                value("AZURE_ENDPOINT"),
            );
            let request = |body: serde_json::Value, purges| PlannedRequest {
                id_header: Some(ASYNC_OPERATION),
                ..json_request(url.clone(), vec![layer.found.bearer_header()], body, purges)
            };
            let targets = layer.targets;
            if targets.everything {
                // No domain: every domain of the endpoint.
                return vec![request(
                    serde_json::json!({"contentPaths": ["/*"]}),
                    Purges::whole("everything"),
                )];
            }
            let urls = targets
                .urls
                .iter()
                .map(|url| (url.host().to_owned(), url.path().to_owned()));
            let prefixes = targets.prefixes.iter().map(|prefix| {
                let (host, path) = prefix.split_once('/').unwrap_or((prefix.as_str(), ""));
                // Front Door's wildcard is a whole folder: `/blog/*`.
                let folder = path.trim_end_matches('/');
                let path = match folder.is_empty() {
                    true => "/*".to_owned(),
                    false => format!("/{folder}/*"),
                };
                (host.to_owned(), path)
            });
            let mut requests = Vec::new();
            for (paths, one, many) in [
                (by_host(urls), "URL", "URLs"),
                (by_host(prefixes), "prefix", "prefixes"),
            ] {
                for (host, paths) in paths {
                    for batch in paths.chunks(PATHS_PER_REQUEST) {
                        requests.push(request(
                            serde_json::json!({"contentPaths": batch, "domains": [host]}),
                            counted(batch.len(), one, many),
                        ));
                    }
                }
            }
            requests
        }

        /// `GET <Azure-AsyncOperation>` until its status is `Succeeded`.
        fn completion(&self, layer: &Layer<'_>, id: &str) -> Option<Completion> {
            Some(Completion {
                poll: PlannedRequest::fetching(
                    id.to_owned(),
                    vec![layer.found.bearer_header()],
                    None,
                    "status",
                ),
                status: top_level_status,
                done: "Succeeded",
                failed: operation_error,
                interval: POLL_INTERVAL,
                what: "purge operation",
                after_budget: "Front Door goes on with it (the profile's activity log shows it); \
                     to wait longer, raise activeDeadlineSeconds",
            })
        }
    }

    /// Each host's paths, hosts in the order first met, each path once.
    fn by_host(pairs: impl Iterator<Item = (String, String)>) -> Vec<(String, Vec<String>)> {
        let mut hosts: Vec<(String, Vec<String>)> = Vec::new();
        for (host, path) in pairs {
            match hosts.iter_mut().find(|(known, _)| *known == host) {
                Some((_, paths)) if paths.contains(&path) => {}
                Some((_, paths)) => paths.push(path),
                None => hosts.push((host, vec![path])),
            }
        }
        hosts
    }

    /// A `Failed` or `Canceled` operation: its `error.message`.
    fn operation_error(answer: &str) -> Option<String> {
        let operation: serde_json::Value = serde_json::from_str(answer).ok()?;
        let status = operation["status"].as_str()?;
        if !matches!(status, "Failed" | "Canceled") {
            return None;
        }
        let error = &operation["error"];
        Some(match (error["code"].as_str(), error["message"].as_str()) {
            (Some(code), Some(message)) => format!("{status}: {code}: {message}"),
            (None, Some(message)) => format!("{status}: {message}"),
            _ => status.to_owned(),
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::providers::Provider;
        use crate::request::header;
        use crate::targets::PurgeTargets;
        use crate::testing::*;
        use serde_json::json;

        const PURGE: &str = "https://management.azure.com/subscriptions/sub-1/resourceGroups/shop-rg/providers/Microsoft.Cdn/profiles/shop-afd/afdEndpoints/shop-ep/purge?api-version=2023-05-01";

        fn azure_plan(targets: &PurgeTargets) -> Vec<PlannedRequest> {
            let credentials = credentials(&[
                ("AZURE_SUBSCRIPTION_ID", "sub-1"),
                ("AZURE_RESOURCE_GROUP", "shop-rg"),
                ("AZURE_PROFILE", "shop-afd"),
                ("AZURE_ENDPOINT", "shop-ep"),
            ]);
            planned_with_bearer(Provider::Azure, targets, &credentials, "eyJ0.token").unwrap()
        }

        /// SPEC §5: URLs → their paths with their hosts as domains,
        /// prefixes → `/<path>/*`, everything `/*`; one request per host.
        #[test]
        fn each_hosts_paths_go_in_one_request_with_that_domain() {
            let targets = PurgeTargets {
                urls: vec![
                    "https://shop.example.com/menu?lang=de".parse().unwrap(),
                    "https://blog.example.com/".parse().unwrap(),
                    "https://shop.example.com/menu?lang=fr".parse().unwrap(),
                    "https://shop.example.com/cart".parse().unwrap(),
                ],
                prefixes: vec![
                    "shop.example.com/blog/".into(),
                    "shop.example.com/news".into(),
                    "docs.example.com".into(),
                ],
                ..PurgeTargets::default()
            };
            let requests = azure_plan(&targets);
            assert_eq!(
                bodies(&requests),
                [
                    json!({"contentPaths": ["/menu", "/cart"], "domains": ["shop.example.com"]}),
                    json!({"contentPaths": ["/"], "domains": ["blog.example.com"]}),
                    json!({"contentPaths": ["/blog/*", "/news/*"], "domains": ["shop.example.com"]}),
                    json!({"contentPaths": ["/*"], "domains": ["docs.example.com"]}),
                ]
            );
            for request in &requests {
                assert_eq!(request.url, PURGE);
                assert_eq!(request.id_header, Some("Azure-AsyncOperation"));
                assert!(
                    request
                        .headers
                        .contains(&header("Authorization", "Bearer eyJ0.token"))
                );
            }
            let everything = PurgeTargets {
                everything: true,
                ..targets
            };
            assert_eq!(
                bodies(&azure_plan(&everything)),
                [json!({"contentPaths": ["/*"]})]
            );
        }

        #[test]
        fn a_hundred_paths_a_request_at_most() {
            let targets = PurgeTargets {
                urls: (0..150)
                    .map(|i| format!("https://shop.example.com/p{i}").parse().unwrap())
                    .collect(),
                ..PurgeTargets::default()
            };
            let requests = azure_plan(&targets);
            let sizes: Vec<usize> = bodies(&requests)
                .iter()
                .map(|body| body["contentPaths"].as_array().map_or(0, Vec::len))
                .collect();
            assert_eq!(sizes, [100, 50]);
            assert_eq!(requests[1].purges.to_string(), "50 URLs");
        }

        #[test]
        fn an_operation_is_done_at_succeeded_and_failed_when_it_failed() {
            let running =
                r#"{"name":"op-1","status":"InProgress","startTime":"2026-12-05T06:00:00Z"}"#;
            assert_eq!(top_level_status(running).as_deref(), Some("InProgress"));
            assert_eq!(operation_error(running), None);
            assert_eq!(operation_error(r#"{"status":"Succeeded"}"#), None);
            let failed = r#"{"name":"op-1","status":"Failed","error":{"code":"BadRequest","message":"The domain is not part of the endpoint"}}"#;
            assert_eq!(
                operation_error(failed).as_deref(),
                Some("Failed: BadRequest: The domain is not part of the endpoint")
            );
            assert_eq!(
                operation_error(r#"{"status":"Canceled"}"#).as_deref(),
                Some("Canceled")
            );
        }
    }
}
