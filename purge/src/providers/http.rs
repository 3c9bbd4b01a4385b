//! Provider `http`: the site's own caches (Varnish, nginx, Souin) behind a
//! Service: each ready endpoint gets `PURGE <path>` for every URL, then the
//! tags in one header.
use crate::catalog::Info;
use crate::targets::Target;

pub const INFO: Info = Info {
    name: "http",
    // The caches are the site's own: `P/http-service` names them.
    secret_keys: &[],
    optional_keys: &[],
    // `PURGE <path>` to each cache, tags in one header; no request for
    // everything that every cache understands.
    accepts: &[Target::Urls, Target::Tags],
    needs_no_target: false,
    reads_the_api: true,
    needs_job_uid: false,
    completion_seconds: 0,
    pod_labels: &[],
    pod_annotations: &[],
};

#[cfg(feature = "client")]
pub use requests::Caches;

#[cfg(feature = "client")]
mod requests {
    use crate::cdn::{Cdn, Found, Layer, NotPrepared, Options, Preparing};
    use crate::credentials::Credentials;
    use crate::request::{PlannedRequest, counted, header};
    use crate::targets::PurgeTargets;
    use std::net::SocketAddr;
    use std::time::Duration;

    pub struct Caches;

    impl Cdn for Caches {
        /// The caches: the ready endpoints of the Service, read from the API
        /// with the pod's token (a dry run too: it reads no credential).
        fn prepare<'a>(
            &'a self,
            options: &'a Options,
            _credentials: &'a Credentials,
            _dry_run: bool,
        ) -> Preparing<'a> {
            Box::pin(async move {
                let Some(service) = &options.http.service else {
                    return Err(NotPrepared {
                        error: "provider http needs --http-service=<service>[:<port>]".to_owned(),
                        for_good: true,
                        ..NotPrepared::default()
                    });
                };
                let client = kube::Client::try_default()
                    .await
                    .map_err(|error| format!("cannot reach the Kubernetes API: {error}"))?;
                let endpoints =
                    crate::endpoints::ready_endpoints(client, &options.webhook.namespace, service)
                        .await?;
                Ok(Found {
                    endpoints,
                    ..Found::default()
                })
            })
        }

        fn plan(&self, layer: &Layer<'_>) -> Vec<PlannedRequest> {
            let http = &layer.options.http;
            self_hosted(
                layer.targets,
                &layer.found.endpoints,
                http.method.name(),
                &http.tag_header,
            )
        }
    }

    /// Every cache gets, for each URL, `PURGE <path>` with the URL's `Host`,
    /// then one request with all the tags in the tag header; cache by cache.
    fn self_hosted(
        targets: &PurgeTargets,
        endpoints: &[SocketAddr],
        method: &'static str,
        tag_header: &str,
    ) -> Vec<PlannedRequest> {
        let urls: Vec<(String, String)> = targets
            .urls
            .iter()
            .map(|url| {
                let host = match url.parsed().port() {
                    Some(port) => format!("{}:{port}", url.host()),
                    None => url.host().to_owned(),
                };
                let url = url.parsed();
                let path = match url.query() {
                    Some(query) => format!("{}?{query}", url.path()),
                    None => url.path().to_owned(),
                };
                (host, path)
            })
            .collect();
        let request = |endpoint: &SocketAddr, path: &str, headers, purges| PlannedRequest {
            method,
            url: format!("http://{endpoint}{path}"),
            headers,
            body: None,
            purges,
            gap: Duration::ZERO,
            signed_by: None,
            waits_out: None,
            id_header: None,
        };
        let mut requests = Vec::new();
        for endpoint in endpoints {
            for (host, path) in &urls {
                requests.push(request(
                    endpoint,
                    path,
                    vec![header("Host", host.clone())],
                    counted(1, "URL purge", "URL purges"),
                ));
            }
            if !targets.tags.is_empty() {
                requests.push(request(
                    endpoint,
                    "/",
                    vec![header(tag_header.to_owned(), targets.tags.join(" "))],
                    counted(targets.tags.len(), "tag purge", "tag purges"),
                ));
            }
        }
        requests
    }

    #[cfg(test)]
    mod tests {

        use crate::cdn::WebhookContext;
        use crate::credentials::Credentials;
        use crate::options::HttpMethod;
        use crate::providers::Provider;
        use crate::request::PlannedRequest;
        use crate::targets::PurgeTargets;
        use crate::testing::*;
        use crate::testing::{Options, SelfHosted};

        fn three_caches(method: HttpMethod) -> Options {
            Options {
                http: SelfHosted {
                    endpoints: ["10.0.0.3:6091", "10.0.0.4:6091", "[fd00::5]:6091"]
                        .map(|address| address.parse().unwrap())
                        .to_vec(),
                    method,
                    tag_header: "Surrogate-Key".into(),
                },
                ..options(30)
            }
        }

        /// Each cache, in turn: each URL's path with its Host, then the tags in
        /// one header.
        #[test]
        fn http_sends_each_cache_every_url_then_the_tags() {
            let targets = PurgeTargets {
                urls: vec![
                    "https://shop.example.com/a?b=1".parse().unwrap(),
                    "http://shop.example.com:8080/".parse().unwrap(),
                ],
                tags: vec!["shop".into(), "home".into()],
                ..PurgeTargets::default()
            };
            let requests = plan(
                Provider::Http,
                &targets,
                &Credentials::default(),
                &three_caches(HttpMethod::Purge),
                &WebhookContext::default(),
            )
            .unwrap();
            let described: Vec<String> = requests.iter().map(PlannedRequest::describe).collect();
            let mut expected = Vec::new();
            for cache in ["10.0.0.3:6091", "10.0.0.4:6091", "[fd00::5]:6091"] {
                expected.extend([
                    format!("PURGE http://{cache}/a?b=1 (Host: shop.example.com)"),
                    format!("PURGE http://{cache}/ (Host: shop.example.com:8080)"),
                    format!("PURGE http://{cache}/ (Surrogate-Key: shop home)"),
                ]);
            }
            assert_eq!(described, expected);
            assert!(requests.iter().all(|r| r.body.is_none()));

            let ban = plan(
                Provider::Http,
                &targets,
                &Credentials::default(),
                &three_caches(HttpMethod::Ban),
                &WebhookContext::default(),
            )
            .unwrap();
            assert!(ban.iter().all(|r| r.method == "BAN"));
        }
    }
}
