//! Provider `cloudfront`: invalidations (`CreateInvalidation`) of the
//! URLs' paths, the prefixes as `/<path>*` and everything as `/*`, in
//! batches CloudFront accepts (3,000 paths, 15 of them wildcards), each
//! with the Job's name as its `CallerReference` so that a retried pod makes
//! no second invalidation; then `GetInvalidation` until each is `Completed`.

use super::plan::{Header, PlannedRequest, Purges, Signer};
use super::sigv4::SigV4;
use cache_buster::targets::PurgeTargets;
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

/// The distribution and the Job an invalidation is made for, and how the
/// requests are signed (None: a dry run, which signs nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invalidations {
    pub distribution: String,
    pub job_name: String,
    pub signer: Option<SigV4>,
}

/// The invalidation paths of the targets, without duplicates, in order.
pub fn paths(targets: &PurgeTargets) -> Vec<String> {
    if targets.everything {
        return vec!["/*".to_owned()];
    }
    let mut paths: Vec<String> = Vec::new();
    let urls = targets.urls.iter().filter_map(|url| {
        let url = reqwest::Url::parse(url).ok()?;
        Some(match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        })
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
        super::plan::path_segment(&invalidations.distribution)
    );
    batches(&paths)
        .into_iter()
        .enumerate()
        .map(|(index, batch)| {
            let reference = match index {
                0 => invalidations.job_name.clone(),
                _ => format!("{}-{}", invalidations.job_name, index + 1),
            };
            PlannedRequest {
                method: "POST",
                url: url.clone(),
                headers: vec![content_type()],
                body: Some(invalidation_batch(&reference, batch)),
                purges: if targets.everything {
                    Purges::whole("everything")
                } else {
                    super::plan::counted(batch.len(), "path", "paths")
                },
                gap: Duration::ZERO,
                signed_by: signed(invalidations),
                waits_out: Some(TOO_MANY_IN_PROGRESS),
            }
        })
        .collect()
}

fn content_type() -> Header {
    ("Content-Type".into(), "text/xml".to_owned())
}

/// `GetInvalidation` of invalidation `id`.
pub fn status_request(invalidations: &Invalidations, id: &str) -> PlannedRequest {
    PlannedRequest {
        method: "GET",
        url: format!(
            "{API}/distribution/{}/invalidation/{}",
            super::plan::path_segment(&invalidations.distribution),
            super::plan::path_segment(id)
        ),
        headers: Vec::new(),
        body: None,
        purges: Purges::whole("status"),
        gap: Duration::ZERO,
        signed_by: signed(invalidations),
        waits_out: None,
    }
}

/// The text of the first `<tag>…</tag>` of an AWS answer (their XML is
/// flat and unambiguous for the fields read here: `Id`, `Status`, `Code`,
/// and STS's credentials).
pub fn xml_text<'a>(answer: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = answer.find(&open)? + open.len();
    let end = answer[start..].find(&format!("</{tag}>"))? + start;
    Some(&answer[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(urls: &[&str], prefixes: &[&str]) -> PurgeTargets {
        PurgeTargets {
            urls: urls.iter().map(|url| (*url).to_owned()).collect(),
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
            job_name: "shop-cache-buster-b4612648a6".into(),
            signer: None,
        };
        let requests = requests(
            &targets(
                &["https://shop.example.com/a?b=1&c=<2>"],
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
            job_name: "shop-cache-buster-b4612648a6".into(),
            signer: None,
        };
        let prefixes: Vec<String> = (0..20).map(|i| format!("shop.example.com/{i}/")).collect();
        let prefixes: Vec<&str> = prefixes.iter().map(String::as_str).collect();
        let requests = requests(&targets(&[], &prefixes), &invalidations);
        let references: Vec<&str> = requests
            .iter()
            .map(|request| xml_text(request.body.as_deref().unwrap(), "CallerReference").unwrap())
            .collect();
        assert_eq!(
            references,
            [
                "shop-cache-buster-b4612648a6",
                "shop-cache-buster-b4612648a6-2"
            ]
        );
    }

    #[test]
    fn fields_are_read_from_aws_answers() {
        let answer = "<?xml version=\"1.0\"?><Invalidation xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\">\
                      <Id>I2J0I21PCUYOIK</Id><Status>InProgress</Status></Invalidation>";
        assert_eq!(xml_text(answer, "Id"), Some("I2J0I21PCUYOIK"));
        assert_eq!(xml_text(answer, "Status"), Some("InProgress"));
        assert_eq!(xml_text(answer, "Code"), None);
    }
}
