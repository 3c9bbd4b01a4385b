//! Provider `cloudfront`: invalidations (`CreateInvalidation`) of the
//! URLs' paths, the prefixes as `/<path>*` and everything as `/*`, in
//! batches CloudFront accepts (3,000 paths, 15 of them wildcards), each
//! with the Job's name as its `CallerReference` so that a retried pod makes
//! no second invalidation; then `GetInvalidation` until each is `Completed`.

use crate::catalog::Info;
use crate::flags::{Context, RenderFlags, Rendering};
use crate::targets::Target;

pub const INFO: Info = Info {
    name: "cloudfront",
    // Without keys, the pod's IRSA or EKS Pod Identity credentials.
    secret_keys: &[
        "CLOUDFRONT_DISTRIBUTION_ID",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ],
    optional_keys: &[
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ],
    // Paths: a URL's, a prefix's with `*`, everything's `/*`.
    accepts: &[Target::Urls, Target::Prefixes, Target::Everything],
    needs_no_target: false,
    reads_the_api: false,
    needs_job_uid: true,
    completion_seconds: 0,
    pod_labels: &[],
    pod_annotations: &[],
};

/// It reads the Job's name (its CallerReference's start, so that a retried
/// pod makes no second invalidation) and nothing of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "client", derive(clap::Args), group(skip))]
pub struct Flags {}

impl RenderFlags for Flags {
    fn render(&self, to: &mut Rendering<'_>) {
        to.context(Context::JobName);
    }
}

#[cfg(feature = "client")]
pub use requests::CloudFront;

#[cfg(feature = "client")]
mod requests {
    use crate::aws;
    use crate::cdn::{Cdn, Completion, Found, Layer, Options, Preparing};
    use crate::client::Client;
    use crate::credentials::Credentials;
    use crate::request::{Header, PlannedRequest, Purges, Signer, counted, path_segment};
    use crate::sigv4::SigV4;
    use crate::targets::PurgeTargets;
    use crate::xml::xml_text;
    use std::borrow::Cow;
    use std::time::Duration;

    pub const API: &str = "https://cloudfront.amazonaws.com/2020-05-31";
    /// Paths, and wildcard paths among them, one invalidation may hold (and
    /// a distribution may have in progress).
    pub const MAX_PATHS: usize = 3000;
    pub const MAX_WILDCARDS: usize = 15;
    /// How often an invalidation in progress is asked about.
    pub const POLL_INTERVAL: Duration = Duration::from_secs(5);
    /// The error code of a distribution with too many invalidations in
    /// progress: waited out like a 429.
    pub const TOO_MANY_IN_PROGRESS: &str = "TooManyInvalidationsInProgress";

    /// The distribution and the run of the Job an invalidation is made for,
    /// and how the requests are signed (None: a dry run, which signs nothing).
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Invalidations {
        pub distribution: String,
        /// The Job's name and uid: a retried pod of the same Job repeats
        /// it (CloudFront answers with the invalidation it already made),
        /// while the Job created again for a rollback (A→B→A, same name)
        /// has a uid of its own, so CloudFront invalidates again.
        pub caller_reference: String,
        pub signer: Option<SigV4>,
    }

    /// The invalidation paths of the targets, without duplicates, in order.
    pub fn paths(targets: &PurgeTargets) -> Vec<String> {
        if targets.everything {
            return vec!["/*".to_owned()];
        }
        let mut paths: Vec<String> = Vec::new();
        let urls = targets.urls.iter().map(|url| match url.parsed().query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        });
        let prefixes = targets.prefixes.iter().map(|prefix| {
            let path = prefix.split_once('/').map_or("", |(_, path)| path);
            format!("/{path}*")
        });
        for path in urls.chain(prefixes) {
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
        paths
    }

    /// Consecutive runs of `paths` of at most [`MAX_PATHS`] paths and
    /// [`MAX_WILDCARDS`] wildcard paths each.
    pub fn batches(paths: &[String]) -> Vec<&[String]> {
        let mut batches = Vec::new();
        let (mut start, mut wildcards) = (0, 0);
        for (index, path) in paths.iter().enumerate() {
            let wildcard = usize::from(path.ends_with('*'));
            if index - start == MAX_PATHS || wildcards + wildcard > MAX_WILDCARDS {
                batches.push(&paths[start..index]);
                (start, wildcards) = (index, 0);
            }
            wildcards += wildcard;
        }
        if start < paths.len() {
            batches.push(&paths[start..]);
        }
        batches
    }

    fn escaped(text: &str) -> String {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }

    /// `InvalidationBatch` as CloudFront's 2020-05-31 API reads it.
    pub fn invalidation_batch(caller_reference: &str, paths: &[String]) -> String {
        let items: String = paths
            .iter()
            .map(|path| format!("<Path>{}</Path>", escaped(path)))
            .collect();
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <InvalidationBatch xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\">\
             <CallerReference>{}</CallerReference>\
             <Paths><Quantity>{}</Quantity><Items>{items}</Items></Paths>\
             </InvalidationBatch>",
            escaped(caller_reference),
            paths.len()
        )
    }

    fn signed(invalidations: &Invalidations) -> Option<Signer> {
        invalidations.signer.clone().map(Signer::SigV4)
    }

    /// One `CreateInvalidation` a batch; `CallerReference` the Job's name, with
    /// the batch's number after the first.
    pub fn requests(targets: &PurgeTargets, invalidations: &Invalidations) -> Vec<PlannedRequest> {
        let paths = paths(targets);
        let url = format!(
            "{API}/distribution/{}/invalidation",
            path_segment(&invalidations.distribution)
        );
        batches(&paths)
            .into_iter()
            .enumerate()
            .map(|(index, batch)| {
                let reference = match index {
                    0 => invalidations.caller_reference.clone(),
                    _ => format!("{}-{}", invalidations.caller_reference, index + 1),
                };
                PlannedRequest {
                    method: "POST",
                    url: url.clone(),
                    headers: vec![content_type()],
                    body: Some(invalidation_batch(&reference, batch)),
                    purges: if targets.everything {
                        Purges::whole("everything")
                    } else {
                        counted(batch.len(), "path", "paths")
                    },
                    gap: Duration::ZERO,
                    signed_by: signed(invalidations),
                    waits_out: Some(TOO_MANY_IN_PROGRESS),
                    id_header: None,
                }
            })
            .collect()
    }

    fn content_type() -> Header {
        ("Content-Type".into(), "text/xml".to_owned())
    }

    pub struct CloudFront;

    impl Cdn for CloudFront {
        /// The invalidation's `Id`.
        fn purge_ids(&self, answer: &str) -> Vec<String> {
            xml_text(answer, "Id").map(Cow::into_owned).into_iter().collect()
        }

        /// The signing credentials: the Secret's keys, else the pod's identity
        /// (which a dry run, reading no credential, does not look up).
        fn prepare<'a>(
            &'a self,
            options: &'a Options,
            credentials: &'a Credentials,
            dry_run: bool,
        ) -> Preparing<'a> {
            Box::pin(async move {
                if dry_run {
                    return Ok(Found::default());
                }
                let sts = [options.aws.sts_host()];
                let client = Client::new(options.limits, &options.network, &sts)
                    .map_err(|error| error.to_string())?;
                let resolved =
                    aws::resolve(credentials, &options.aws, &client, &session_name(options))
                        .await?;
                Ok(Found {
                    sigv4: Some(resolved.signer),
                    secrets: resolved.secrets,
                    ..Found::default()
                })
            })
        }

        /// ECR takes a token that these credentials sign for.
        fn registry_identity(
            &self,
            options: &Options,
            credentials: &Credentials,
        ) -> Option<crate::registry_identity::RegistryIdentity> {
            Some(crate::registry_identity::RegistryIdentity::Aws {
                credentials: credentials.clone(),
                environment: options.aws.clone(),
                session_name: session_name(options),
                limits: options.limits,
            })
        }

        fn plan(&self, layer: &Layer<'_>) -> Vec<PlannedRequest> {
            requests(layer.targets, &invalidations(layer))
        }

        fn completion(&self, layer: &Layer<'_>, id: &str) -> Option<Completion> {
            Some(Completion {
                poll: status_request(&invalidations(layer), id),
                status: |answer| xml_text(answer, "Status"),
                done: "Completed",
                failed: |_| None,
                interval: POLL_INTERVAL,
                what: "invalidation",
                after_budget: "CloudFront goes on with it (see the distribution's invalidations)",
            })
        }
    }

    fn invalidations(layer: &Layer<'_>) -> Invalidations {
        Invalidations {
            distribution: layer
                .credentials
                .value("CLOUDFRONT_DISTRIBUTION_ID")
                .to_owned(),
            caller_reference: caller_reference(layer.options),
            signer: layer.found.sigv4.clone(),
        }
    }

    /// `<job name>-<job uid>`; the name alone where the pod was not told
    /// its Job's uid.
    pub fn caller_reference(options: &Options) -> String {
        let name = &options.context.job_name;
        match options.job_uid.as_str() {
            "" => name.clone(),
            uid => format!("{name}-{uid}"),
        }
    }

    /// CloudFront's RoleSessionName: the Job's name, which fits its 64
    /// characters and its alphabet.
    fn session_name(options: &Options) -> String {
        match options.context.job_name.as_str() {
            "" => "cache-buster".to_owned(),
            name => name.chars().take(64).collect(),
        }
    }

    /// `GetInvalidation` of invalidation `id`.
    pub fn status_request(invalidations: &Invalidations, id: &str) -> PlannedRequest {
        PlannedRequest {
            method: "GET",
            url: format!(
                "{API}/distribution/{}/invalidation/{}",
                path_segment(&invalidations.distribution),
                path_segment(id)
            ),
            headers: Vec::new(),
            body: None,
            purges: Purges::whole("status"),
            gap: Duration::ZERO,
            signed_by: signed(invalidations),
            waits_out: None,
            id_header: None,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_purge_id_is_the_invalidations() {
            let answer = r#"<?xml version="1.0"?><Invalidation xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/"><Id>I2J0I21PCUYOIK</Id><Status>InProgress</Status></Invalidation>"#;
            assert_eq!(CloudFront.purge_ids(answer), ["I2J0I21PCUYOIK"]);
            assert!(CloudFront.purge_ids("<Invalidation/>").is_empty());
        }

        fn targets(urls: &[&str], prefixes: &[&str]) -> PurgeTargets {
            PurgeTargets {
                urls: urls.iter().map(|url| url.parse().unwrap()).collect(),
                prefixes: prefixes.iter().map(|prefix| (*prefix).to_owned()).collect(),
                ..PurgeTargets::default()
            }
        }

        #[test]
        fn urls_become_paths_and_prefixes_wildcards() {
            assert_eq!(
                paths(&targets(
                    &[
                        "https://shop.example.com/",
                        "https://shop.example.com/a?b=1",
                        "https://www.example.com/"
                    ],
                    &["shop.example.com/blog/", "shop.example.com"]
                )),
                ["/", "/a?b=1", "/blog/*", "/*"]
            );
            let everything = PurgeTargets {
                everything: true,
                ..targets(&["https://shop.example.com/"], &[])
            };
            assert_eq!(paths(&everything), ["/*"]);
        }

        #[test]
        fn batches_hold_3000_paths_and_15_wildcards() {
            let many: Vec<String> = (0..6001).map(|i| format!("/{i}")).collect();
            let sizes: Vec<usize> = batches(&many).iter().map(|batch| batch.len()).collect();
            assert_eq!(sizes, [3000, 3000, 1]);
            let wildcards: Vec<String> = (0..31).map(|i| format!("/{i}/*")).collect();
            let mut mixed = vec!["/a".to_owned()];
            mixed.extend(wildcards);
            let sizes: Vec<usize> = batches(&mixed).iter().map(|batch| batch.len()).collect();
            assert_eq!(sizes, [16, 15, 1]);
            assert!(batches(&[]).is_empty());
        }

        #[test]
        fn the_batch_is_cloudfronts_xml_with_the_job_as_reference() {
            let invalidations = Invalidations {
                distribution: "EDFDVBD6EXAMPLE".into(),
                caller_reference: "shop-cache-buster-b4612648a6".into(),
                signer: None,
            };
            let requests = requests(
                &targets(
                    &["https://shop.example.com/a?b=1&c=%3C2%3E"],
                    &["shop.example.com/blog/"],
                ),
                &invalidations,
            );
            assert_eq!(requests.len(), 1);
            assert_eq!(
                requests[0].url,
                "https://cloudfront.amazonaws.com/2020-05-31/distribution/EDFDVBD6EXAMPLE/invalidation"
            );
            assert_eq!(
                requests[0].body.as_deref(),
                Some(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
                     <InvalidationBatch xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\">\
                     <CallerReference>shop-cache-buster-b4612648a6</CallerReference>\
                     <Paths><Quantity>2</Quantity><Items><Path>/a?b=1&amp;c=%3C2%3E</Path><Path>/blog/*</Path></Items></Paths>\
                     </InvalidationBatch>"
                )
            );
            assert_eq!(requests[0].purges.to_string(), "2 paths");
            assert_eq!(requests[0].waits_out, Some(TOO_MANY_IN_PROGRESS));
        }

        #[test]
        fn later_batches_have_references_of_their_own() {
            let invalidations = Invalidations {
                distribution: "E1".into(),
                caller_reference: "shop-cache-buster-b4612648a6".into(),
                signer: None,
            };
            let prefixes: Vec<String> = (0..20).map(|i| format!("shop.example.com/{i}/")).collect();
            let prefixes: Vec<&str> = prefixes.iter().map(String::as_str).collect();
            let requests = requests(&targets(&[], &prefixes), &invalidations);
            let references: Vec<_> = requests
                .iter()
                .map(|request| {
                    xml_text(request.body.as_deref().unwrap(), "CallerReference").unwrap()
                })
                .collect();
            assert_eq!(
                references,
                [
                    "shop-cache-buster-b4612648a6",
                    "shop-cache-buster-b4612648a6-2"
                ]
            );
        }
    }
}
