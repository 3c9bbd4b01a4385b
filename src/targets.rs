//! What to purge, read from the Deployment's annotations (SPEC §2). Each
//! item is checked by the purge crate's checks (`target_checks`), the very
//! ones the program applies to its argv.

use crate::error::{PolicyError, PolicyResult};
use cache_buster_purge::content::{CONTENT_EXPECTED, ContentRefusal, ContentRoot};
use cache_buster_purge::target_checks::{Refusal, UrlChecks, check_host, check_prefix, check_tag};
use std::collections::{BTreeMap, HashSet};

pub use cache_buster_purge::targets::Target;

/// What the policy reads: URLs checked as the program will parse them, and
/// kept as written (the Job carries their text).
pub type PurgeTargets = cache_buster_purge::targets::PurgeTargets<String>;

use crate::keys::{EVERYTHING, HOSTS, PREFIXES, TAGS, URLS};

/// Reads the purge annotations; `key` turns a name (`urls`) into the full
/// annotation key (`cache-buster.io/urls`).
pub fn from_annotations(
    annotations: &BTreeMap<String, String>,
    key: impl Fn(&str) -> String,
) -> PolicyResult<PurgeTargets> {
    let list = |name: &str, check: fn(&str) -> Result<(), Refusal>| {
        let key = key(name);
        match annotations.get(&key) {
            Some(value) => split_list(&key, value, &mut |item| {
                check(item)
                    .map(|()| item.to_owned())
                    .map_err(ItemRefusal::from)
            }),
            None => Ok(Vec::new()),
        }
    };
    let urls = match annotations.get(&key(URLS)) {
        Some(value) => {
            let mut checks = UrlChecks::default();
            split_list(&key(URLS), value, &mut |url| {
                checks
                    .check(url)
                    .map(|()| url.to_owned())
                    .map_err(ItemRefusal::from)
            })?
        }
        None => Vec::new(),
    };
    Ok(PurgeTargets {
        urls,
        prefixes: list(PREFIXES, check_prefix)?,
        hosts: list(HOSTS, check_host)?,
        tags: list(TAGS, check_tag)?,
        everything: read_boolean(&key(EVERYTHING), annotations)?,
    })
}

/// SPEC §9: `P/content`'s `<dir>=<base URL>` pairs, as the Job's argv
/// writes them (`/srv/` is `/srv`); none without the annotation.
pub fn content_from_annotation(
    annotations: &BTreeMap<String, String>,
    key: &str,
) -> PolicyResult<Vec<String>> {
    match annotations.get(key) {
        Some(value) => split_list(key, value, &mut |pair| {
            ContentRoot::parse(pair)
                .map(|root| root.render())
                .map_err(ItemRefusal::from)
        }),
        None => Ok(Vec::new()),
    }
}

/// A `"true"`/`"false"` annotation; absent is false.
pub fn read_boolean(key: &str, annotations: &BTreeMap<String, String>) -> PolicyResult<bool> {
    match annotations.get(key).map(|value| (value, value.trim())) {
        None => Ok(false),
        Some((_, "true")) => Ok(true),
        Some((_, "false")) => Ok(false),
        Some((value, _)) => Err(PolicyError::InvalidAnnotation {
            key: key.to_owned(),
            value: value.clone(),
            problem: "is not a boolean".to_owned(),
            expected: "\"true\" or \"false\"".to_owned(),
        }),
    }
}

/// Why `split_list` refused an item: what is wrong, what is expected.
struct ItemRefusal {
    problem: String,
    expected: &'static str,
}

impl From<Refusal> for ItemRefusal {
    fn from(refusal: Refusal) -> Self {
        ItemRefusal {
            problem: refusal.problem.to_owned(),
            expected: refusal.expected,
        }
    }
}

impl From<ContentRefusal> for ItemRefusal {
    fn from(refusal: ContentRefusal) -> Self {
        ItemRefusal {
            problem: refusal.0,
            expected: CONTENT_EXPECTED,
        }
    }
}

/// Splits on commas and white space, drops empty items and duplicates
/// (order kept; a hash set remembers what was seen, so a long list costs
/// no more than its length, and no list of crafted items costs more), and
/// reads each item with `read`.
/// One copy for every list (a `dyn` reader): the module stays small.
fn split_list(
    key: &str,
    value: &str,
    read: &mut dyn FnMut(&str) -> Result<String, ItemRefusal>,
) -> PolicyResult<Vec<String>> {
    // Sized once: a set grown to thousands of items rehashes a dozen times.
    let separators = value
        .bytes()
        .filter(|b| *b == b',' || b.is_ascii_whitespace())
        .count();
    let mut seen: HashSet<&str> = HashSet::with_capacity(separators + 1);
    let mut items = Vec::new();
    for item in value.split(|c: char| c == ',' || c.is_whitespace()) {
        if item.is_empty() || !seen.insert(item) {
            continue;
        }
        let read = read(item).map_err(|refusal| PolicyError::InvalidAnnotation {
            key: key.to_owned(),
            value: item.to_owned(),
            problem: refusal.problem,
            expected: refusal.expected.to_owned(),
        })?;
        items.push(read);
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (format!("cache-buster.io/{name}"), (*value).to_owned()))
            .collect()
    }

    fn read(pairs: &[(&str, &str)]) -> PolicyResult<PurgeTargets> {
        from_annotations(&annotations(pairs), |name| {
            format!("cache-buster.io/{name}")
        })
    }

    #[test]
    fn lists_split_on_commas_and_white_space_without_duplicates_in_order() {
        let targets = read(&[
            (
                "urls",
                "https://a.example/x, https://b.example/y\n https://a.example/x,,https://c.example",
            ),
            ("tags", "blog\tnews blog"),
            ("hosts", "www.example.com"),
            ("prefixes", "www.example.com/blog/"),
        ])
        .unwrap();
        assert_eq!(
            targets.urls,
            [
                "https://a.example/x",
                "https://b.example/y",
                "https://c.example"
            ]
        );
        assert_eq!(targets.tags, ["blog", "news"]);
        assert_eq!(targets.hosts, ["www.example.com"]);
        assert_eq!(targets.prefixes, ["www.example.com/blog/"]);
        assert!(!targets.everything);
        assert!(!targets.is_empty());
    }

    #[test]
    fn no_annotations_means_no_target() {
        let targets = read(&[]).unwrap();
        assert!(targets.is_empty());
        assert!(read(&[("urls", " , \n")]).unwrap().is_empty());
        assert!(read(&[("everything", "false")]).unwrap().is_empty());
    }

    #[rstest]
    #[case("true", true)]
    #[case(" true\n", true)]
    #[case("false", false)]
    fn everything_is_a_boolean(#[case] value: &str, #[case] everything: bool) {
        assert_eq!(
            read(&[("everything", value)]).unwrap().everything,
            everything
        );
    }

    #[test]
    fn everything_rejects_anything_else() {
        let error = read(&[("everything", "yes")]).unwrap_err().to_string();
        assert_eq!(
            error,
            "annotation cache-buster.io/everything: \"yes\" is not a boolean; expected \"true\" or \"false\""
        );
    }

    #[rstest]
    #[case("https://www.example.com")]
    #[case("http://www.example.com/")]
    #[case("https://www.example.com:8443/a/b?c=d&e=%20f")]
    #[case("https://[2001:db8::1]/page")]
    #[case("https://shop.example.com/products/[id]")]
    fn valid_urls(#[case] url: &str) {
        assert_eq!(read(&[("urls", url)]).unwrap().urls, [url]);
    }

    #[rstest]
    #[case::no_scheme("www.example.com/page", "is not an absolute http or https URL")]
    #[case::ftp("ftp://example.com/file", "is not an absolute http or https URL")]
    #[case::no_host("https:///page", "has no valid host name")]
    #[case::bad_host("https://exa_mple.com/", "has no valid host name")]
    #[case::bad_port("https://example.com:99999/", "has no valid host name")]
    #[case::credentials("https://user:pw@example.com/", "carries user credentials")]
    #[case::fragment("https://example.com/page#top", "has a #fragment")]
    #[case::quote(
        "https://example.com/\"x\"",
        "contains a character that must be percent-encoded"
    )]
    #[case::unicode(
        "https://example.com/café",
        "contains a character that must be percent-encoded"
    )]
    #[case::dot_segments(
        "https://www.example.com/../../service/other/purge_all",
        "has a dot segment"
    )]
    #[case::encoded_dot_segments(
        "https://www.example.com/%2e%2E/service/other/purge_all",
        "has a dot segment"
    )]
    fn invalid_urls_are_named(#[case] url: &str, #[case] problem: &str) {
        let error = read(&[("urls", url)]).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "annotation cache-buster.io/urls: {url:?} {problem}"
            )),
            "{error}"
        );
        assert!(
            error.ends_with(&format!(
                "; expected {}",
                cache_buster_purge::target_checks::URL_EXPECTED
            )),
            "{error}"
        );
    }

    #[rstest]
    #[case::scheme("prefixes", "https://www.example.com/blog", "has a scheme")]
    #[case::bad_prefix_host("prefixes", "-www.example.com/blog", "has no valid host name")]
    #[case::query("prefixes", "www.example.com/blog?x", "has a query")]
    #[case::prefix_dot_segment("prefixes", "www.example.com/blog/../admin", "has a dot segment")]
    #[case::host_with_path("hosts", "www.example.com/blog", "is not a host name")]
    #[case::host_with_scheme("hosts", "https://www.example.com", "is not a host name")]
    #[case::tag_unicode("tags", "héllo", "contains a non-printable or non-ASCII character")]
    fn other_invalid_items_are_named(
        #[case] name: &str,
        #[case] value: &str,
        #[case] problem: &str,
    ) {
        let error = read(&[(name, value)]).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "annotation cache-buster.io/{name}: {value:?} {problem}"
            )),
            "{error}"
        );
    }

    /// A 256 KiB annotation (the API server takes that much in all of an
    /// object's annotations) is read in one pass: a set remembers what was
    /// seen, so each item costs the same however many came before
    /// (`make bench` measures its time through the Wasm runner).
    #[test]
    fn a_256_kib_list_keeps_each_item_once_in_order() {
        let mut value = String::new();
        let mut count = 0;
        while value.len() < 256 * 1024 {
            value.push_str(&format!("https://www.example.com/page/{count} "));
            count += 1;
        }
        value.push_str("https://www.example.com/page/0");
        let urls = read(&[("urls", &value)]).unwrap().urls;
        assert_eq!(urls.len(), count);
        assert_eq!(urls[0], "https://www.example.com/page/0");
        assert_eq!(
            urls[count - 1],
            format!("https://www.example.com/page/{}", count - 1).as_str()
        );
    }

    #[test]
    fn overlong_tags_are_refused() {
        let tag = "t".repeat(1025);
        let error = read(&[("tags", &tag)]).unwrap_err().to_string();
        assert!(error.contains("is longer than 1024 characters"), "{error}");
        assert_eq!(read(&[("tags", &"t".repeat(1024))]).unwrap().tags.len(), 1);
    }
}
