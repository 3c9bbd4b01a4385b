//! Google Cloud CDN: `invalidateCache` of the URL map, one request per URL
//! path (with its host), per prefix (`/<path>*`) and per set of at most 10
//! cache tags, or `/*` for everything; then each returned Operation polled
//! until `DONE`. The bearer token comes from a service-account key in the
//! Secret, or from GKE Workload Identity's metadata server (google.rs).

use crate::catalog::Info;
use crate::flags::{RenderFlags, Rendering};
use crate::targets::Target;

pub const INFO: Info = Info {
    name: "gcp",
    secret_keys: &["GCP_PROJECT", "GCP_URL_MAP", "GCP_SERVICE_ACCOUNT_KEY"],
    // Without a key, the pod's GKE Workload Identity.
    optional_keys: &["GCP_SERVICE_ACCOUNT_KEY"],
    accepts: &[
        Target::Urls,
        Target::Prefixes,
        Target::Tags,
        Target::Everything,
    ],
    needs_no_target: false,
    reads_the_api: false,
    needs_job_uid: false,
    completion_seconds: 0,
    pod_labels: &[],
    pod_annotations: &[],
};

/// It reads nothing from the argv besides the targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "client", derive(clap::Args), group(skip))]
pub struct Flags {}

impl RenderFlags for Flags {
    fn render(&self, _to: &mut Rendering<'_>) {}
}

/// Cache tags in one invalidation, at most (Cloud CDN's limit).
pub const TAGS_PER_REQUEST: usize = 10;

#[cfg(feature = "client")]
pub use requests::Gcp;

#[cfg(feature = "client")]
mod requests {
    use crate::cdn::{Cdn, Completion, Found, Layer, Options, Preparing, top_level_status};
    use crate::credentials::Credentials;
    use crate::providers::gcp::TAGS_PER_REQUEST;
    use crate::request::{PlannedRequest, counted, json_request, path_segment};
    use std::time::Duration;

    pub const COMPUTE_API: &str = "https://compute.googleapis.com/compute/v1";
    /// How often an Operation in progress is asked about.
    pub const POLL_INTERVAL: Duration = Duration::from_secs(3);
    /// Google's answer to too many requests besides 429: a 403 with this reason.
    pub const RATE_LIMITED: &str = "rateLimitExceeded";

    pub struct Gcp;

    impl Cdn for Gcp {
        /// The Operation's `name`: what it is asked about by.
        fn purge_ids(&self, answer: &str) -> Vec<String> {
            #[derive(serde::Deserialize)]
            struct Operation {
                kind: String,
                name: String,
            }
            serde_json::from_str::<Operation>(answer)
                .ok()
                .filter(|operation| operation.kind == "compute#operation")
                .map(|operation| operation.name)
                .into_iter()
                .collect()
        }

        /// The access token (a dry run reads no credential and asks for none).
        fn prepare<'a>(
            &'a self,
            options: &'a Options,
            credentials: &'a Credentials,
            dry_run: bool,
        ) -> Preparing<'a> {
            Box::pin(async move {
                if dry_run {
                    return Ok(Found::placeholder_bearer("GCP access token"));
                }
                let key = credentials.optional("GCP_SERVICE_ACCOUNT_KEY");
                let token =
                    crate::google::token(
                        key,
                        &options.google,
                        crate::google::SCOPE,
                        options.limits,
                        &options.network,
                    )
                    .await?;
                Ok(Found::with_bearer(token, Vec::new()))
            })
        }

        /// Artifact Registry and Container Registry take the same token.
        fn registry_identity(
            &self,
            options: &Options,
            credentials: &Credentials,
        ) -> Option<crate::registry_identity::RegistryIdentity> {
            Some(crate::registry_identity::RegistryIdentity::Google {
                key_json: credentials
                    .optional("GCP_SERVICE_ACCOUNT_KEY")
                    .map(str::to_owned),
                environment: options.google.clone(),
                limits: options.limits,
            })
        }

        fn plan(&self, layer: &Layer<'_>) -> Vec<PlannedRequest> {
            let url = format!(
                "{COMPUTE_API}/projects/{}/global/urlMaps/{}/invalidateCache",
                path_segment(layer.credentials.value("GCP_PROJECT")),
                path_segment(layer.credentials.value("GCP_URL_MAP"))
            );
            let request = |body: serde_json::Value, purges| PlannedRequest {
                waits_out: Some(RATE_LIMITED),
                ..json_request(url.clone(), vec![layer.found.bearer_header()], body, purges)
            };
            let targets = layer.targets;
            if targets.everything {
                return vec![request(
                    serde_json::json!({"path": "/*"}),
                    crate::request::Purges::whole("everything"),
                )];
            }
            let mut requests = Vec::new();
            // Invalidation matches a path whatever its query string: URLs
            // that differ only in their query are one invalidation.
            let mut seen = std::collections::BTreeSet::new();
            for url in &targets.urls {
                if !seen.insert((url.host(), url.path())) {
                    continue;
                }
                requests.push(request(
                    serde_json::json!({"path": url.path(), "host": url.host()}),
                    counted(1, "URL", "URLs"),
                ));
            }
            for prefix in &targets.prefixes {
                let (host, path) = prefix.split_once('/').unwrap_or((prefix.as_str(), ""));
                for path in prefix_paths(path) {
                    requests.push(request(
                        serde_json::json!({"path": path, "host": host}),
                        counted(1, "prefix", "prefixes"),
                    ));
                }
            }
            for tags in targets.tags.chunks(TAGS_PER_REQUEST) {
                requests.push(request(
                    serde_json::json!({"cacheTags": tags}),
                    counted(tags.len(), "tag", "tags"),
                ));
            }
            requests
        }

        /// `GET …/global/operations/<name>` until its status is `DONE`.
        fn completion(&self, layer: &Layer<'_>, id: &str) -> Option<Completion> {
            let operation = format!(
                "{COMPUTE_API}/projects/{}/global/operations/{}",
                path_segment(layer.credentials.value("GCP_PROJECT")),
                path_segment(id)
            );
            Some(Completion {
                poll: PlannedRequest {
                    waits_out: Some(RATE_LIMITED),
                    ..PlannedRequest::fetching(
                        operation,
                        vec![layer.found.bearer_header()],
                        None,
                        "status",
                    )
                },
                status: top_level_status,
                done: "DONE",
                failed: operation_error,
                interval: POLL_INTERVAL,
                what: "operation",
                after_budget: "Cloud CDN goes on with it (gcloud compute operations describe)",
            })
        }
    }

    /// Cloud CDN takes a `*` only as the last character, after a `/`
    /// (`/news/*`): the prefix `news` is its folder and the path itself;
    /// `news/` the folder alone; none, the whole host.
    fn prefix_paths(path: &str) -> Vec<String> {
        match path.strip_suffix('/') {
            _ if path.is_empty() => vec!["/*".to_owned()],
            Some(folder) => vec![format!("/{folder}/*")],
            None => vec![format!("/{path}"), format!("/{path}/*")],
        }
    }

    /// A `DONE` Operation that failed: its `error.errors[].message`s.
    fn operation_error(answer: &str) -> Option<String> {
        let operation: serde_json::Value = serde_json::from_str(answer).ok()?;
        let errors = operation.get("error")?.get("errors")?.as_array()?;
        let messages: Vec<&str> = errors
            .iter()
            .filter_map(|error| error.get("message")?.as_str())
            .collect();
        Some(match messages.is_empty() {
            true => operation["error"].to_string(),
            false => messages.join("; "),
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

        #[test]
        fn the_purge_id_is_the_operations_name() {
            let answer = r#"{"kind":"compute#operation","id":"123","name":"operation-1-2","status":"RUNNING"}"#;
            assert_eq!(Gcp.purge_ids(answer), ["operation-1-2"]);
            assert!(Gcp.purge_ids(r#"{"name":"operation-1-2"}"#).is_empty());
        }

        fn gcp_plan(targets: &PurgeTargets) -> Vec<PlannedRequest> {
            let credentials =
                credentials(&[("GCP_PROJECT", "shop-project"), ("GCP_URL_MAP", "shop-lb")]);
            planned_with_bearer(Provider::Gcp, targets, &credentials, "ya29.token").unwrap()
        }

        #[test]
        fn one_invalidation_per_path_prefix_and_ten_tags() {
            let targets = PurgeTargets {
                urls: vec!["https://shop.example.com/menu?lang=de".parse().unwrap()],
                prefixes: vec!["shop.example.com/blog/".into()],
                tags: (0..12).map(|i| format!("t{i}")).collect(),
                ..PurgeTargets::default()
            };
            let requests = gcp_plan(&targets);
            assert_eq!(
                bodies(&requests),
                [
                    json!({"path": "/menu", "host": "shop.example.com"}),
                    json!({"path": "/blog/*", "host": "shop.example.com"}),
                    json!({"cacheTags": ["t0","t1","t2","t3","t4","t5","t6","t7","t8","t9"]}),
                    json!({"cacheTags": ["t10","t11"]}),
                ]
            );
            for request in &requests {
                assert_eq!(
                    request.url,
                    "https://compute.googleapis.com/compute/v1/projects/shop-project/global/urlMaps/shop-lb/invalidateCache"
                );
                assert!(
                    request
                        .headers
                        .contains(&header("Authorization", "Bearer ya29.token"))
                );
                assert_eq!(request.waits_out, Some(RATE_LIMITED));
            }
            let everything = PurgeTargets {
                everything: true,
                ..targets
            };
            assert_eq!(bodies(&gcp_plan(&everything)), [json!({"path": "/*"})]);
        }

        /// Google refuses a `*` anywhere but after a final `/`; a path
        /// matches whatever its query, so two URLs that differ only there
        /// are one invalidation.
        #[test]
        fn prefixes_end_in_a_folder_wildcard_and_queries_make_no_second_invalidation() {
            let targets = PurgeTargets {
                urls: [
                    "https://shop.example.com/menu?lang=de",
                    "https://shop.example.com/menu?lang=fr",
                    "https://shop.example.com/menu",
                    "https://www.example.com/menu?lang=fr",
                ]
                .iter()
                .map(|url| url.parse().unwrap())
                .collect(),
                prefixes: vec![
                    "shop.example.com/news".into(),
                    "shop.example.com/blog/".into(),
                    "shop.example.com".into(),
                ],
                ..PurgeTargets::default()
            };
            assert_eq!(
                bodies(&gcp_plan(&targets)),
                [
                    json!({"path": "/menu", "host": "shop.example.com"}),
                    json!({"path": "/menu", "host": "www.example.com"}),
                    json!({"path": "/news", "host": "shop.example.com"}),
                    json!({"path": "/news/*", "host": "shop.example.com"}),
                    json!({"path": "/blog/*", "host": "shop.example.com"}),
                    json!({"path": "/*", "host": "shop.example.com"}),
                ]
            );
        }

        /// An Operation is done at `DONE`; one that is done with an error
        /// fails the purge, quoting Google's messages.
        #[test]
        fn a_done_operation_with_an_error_is_a_failure() {
            let running = r#"{"kind":"compute#operation","name":"operation-1","status":"RUNNING"}"#;
            assert_eq!(top_level_status(running).as_deref(), Some("RUNNING"));
            assert_eq!(operation_error(running), None);
            let failed = r#"{"kind":"compute#operation","name":"operation-1","status":"DONE",
                "error":{"errors":[{"code":"INVALID_USAGE","message":"Invalid path"}]}}"#;
            assert_eq!(top_level_status(failed).as_deref(), Some("DONE"));
            assert_eq!(operation_error(failed).as_deref(), Some("Invalid path"));
        }
    }
}
