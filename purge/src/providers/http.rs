//! Provider `http`: the site's own caches (Varnish, nginx, Souin) behind a
//! Service: each ready endpoint gets `PURGE <path>` for every URL, then the
//! tags in one header.
use crate::catalog::Info;
use crate::flags::{Context, RenderFlags, Rendering};
use crate::options::{DEFAULT_TAG_HEADER, HttpMethod, HttpService};
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

/// Its flags: which Service's caches (annotation `http-service`), with which
/// method, tags in which header (settings `httpMethod`, `httpTagHeader`).
/// The Service is looked up in the site's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "client", derive(clap::Args), group(skip))]
pub struct Flags {
    /// The cache Service in --namespace (provider http): <service>[:<port>]
    #[cfg_attr(feature = "client", arg(long, value_parser = parse::service))]
    pub http_service: Option<HttpService>,
    /// The request each cache gets: PURGE or BAN (provider http)
    #[cfg_attr(
        feature = "client",
        arg(long, value_parser = parse::method, default_value = "PURGE")
    )]
    pub http_method: HttpMethod,
    /// The header with the tags (provider http)
    #[cfg_attr(feature = "client", arg(long, default_value = DEFAULT_TAG_HEADER))]
    pub http_tag_header: String,
}

impl Default for Flags {
    fn default() -> Self {
        Flags {
            http_service: None,
            http_method: HttpMethod::default(),
            http_tag_header: DEFAULT_TAG_HEADER.to_owned(),
        }
    }
}

impl RenderFlags for Flags {
    fn render(&self, to: &mut Rendering<'_>) {
        to.context(Context::Namespace);
        if let Some(service) = &self.http_service {
            to.flag("http-service", &service.to_string());
        }
        to.flag("http-method", self.http_method.name());
        if to.has_tags {
            to.flag("http-tag-header", &self.http_tag_header);
        }
    }
}

#[cfg(feature = "client")]
mod parse {
    use crate::options::{HttpMethod, HttpService};

    pub fn service(value: &str) -> Result<HttpService, String> {
        HttpService::parse(value).map_err(|problem| format!("{value:?} {problem}"))
    }

    pub fn method(name: &str) -> Result<HttpMethod, String> {
        HttpMethod::from_name(name).ok_or_else(|| "expected PURGE or BAN".to_owned())
    }
}

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
        /// A cache's `id`, if it answers one.
        fn purge_ids(&self, answer: &str) -> Vec<String> {
            crate::cdn::top_level_id(answer)
        }

        /// The caches: the ready endpoints of the Service, read from the API
        /// with the pod's token (a dry run too: it reads no credential).
        fn prepare<'a>(
            &'a self,
            options: &'a Options,
            _credentials: &'a Credentials,
            _dry_run: bool,
        ) -> Preparing<'a> {
            Box::pin(async move {
                let Some(service) = options.flags.get::<crate::providers::http::Flags>().http_service else {
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
                    crate::endpoints::ready_endpoints(client, &options.context.namespace, &service)
                        .await?;
                Ok(Found {
                    endpoints,
                    ..Found::default()
                })
            })
        }

        fn plan(&self, layer: &Layer<'_>) -> Vec<PlannedRequest> {
            let http = layer.options.flags.get::<crate::providers::http::Flags>();
            self_hosted(
                layer.targets,
                &layer.found.endpoints,
                http.http_method.name(),
                &http.http_tag_header,
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

        use crate::flags::JobContext;
        use crate::credentials::Credentials;
        use crate::options::HttpMethod;
        use crate::providers::Provider;
        use crate::request::PlannedRequest;
        use crate::targets::PurgeTargets;
        use crate::testing::*;
        use crate::testing::Options;

        fn three_caches(method: HttpMethod) -> Options {
            let mut options = Options {
                endpoints: ["10.0.0.3:6091", "10.0.0.4:6091", "[fd00::5]:6091"]
                    .map(|address| address.parse().unwrap())
                    .to_vec(),
                ..options(30)
            };
            options.flags.http.http_method = method;
            options.flags.http.http_tag_header = "Surrogate-Key".into();
            options
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
                &JobContext::default(),
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
                &JobContext::default(),
            )
            .unwrap();
            assert!(ban.iter().all(|r| r.method == "BAN"));
        }
    }
}
