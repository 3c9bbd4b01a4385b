//! What to purge, read from the Deployment's annotations (SPEC §2).

use crate::error::{PolicyError, PolicyResult};
use std::collections::BTreeMap;

/// Cloudflare's limit for a cache tag.
const TAG_MAX_LENGTH: usize = 1024;

pub use cache_buster_purge::targets::{PurgeTargets, Target};

use crate::keys::{EVERYTHING, HOSTS, PREFIXES, TAGS, URLS};

/// Reads the purge annotations; `key` turns a name (`urls`) into the full
/// annotation key (`cache-buster.io/urls`).
pub fn from_annotations(
    annotations: &BTreeMap<String, String>,
    key: impl Fn(&str) -> String,
) -> PolicyResult<PurgeTargets> {
    let list = |name: &str, check: fn(&str) -> Option<(&'static str, &'static str)>| {
        let key = key(name);
        match annotations.get(&key) {
            Some(value) => split_list(&key, value, check),
            None => Ok(Vec::new()),
        }
    };
    Ok(PurgeTargets {
        urls: list(URLS, check_url)?,
        prefixes: list(PREFIXES, check_prefix)?,
        hosts: list(HOSTS, check_host)?,
        tags: list(TAGS, check_tag)?,
        everything: read_boolean(&key(EVERYTHING), annotations)?,
    })
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

/// Splits on commas and white space, drops empty items and duplicates, and
/// checks each item; `check` returns (problem, expected) for a bad item.
fn split_list(
    key: &str,
    value: &str,
    check: fn(&str) -> Option<(&'static str, &'static str)>,
) -> PolicyResult<Vec<String>> {
    let mut items: Vec<String> = Vec::new();
    for item in value.split(|c: char| c == ',' || c.is_whitespace()) {
        if item.is_empty() || items.iter().any(|seen| seen == item) {
            continue;
        }
        if let Some((problem, expected)) = check(item) {
            return Err(PolicyError::InvalidAnnotation {
                key: key.to_owned(),
                value: item.to_owned(),
                problem: problem.to_owned(),
                expected: expected.to_owned(),
            });
        }
        items.push(item.to_owned());
    }
    Ok(items)
}

const URL_EXPECTED: &str =
    "absolute URLs such as https://www.example.com/page, separated by commas or white space";

/// `http(s)://host[:port][/path][?query]`: what a CDN can purge. The string
/// is kept as written, since the CDN matches it against its cache keys.
fn check_url(url: &str) -> Option<(&'static str, &'static str)> {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return Some(("is not an absolute http or https URL", URL_EXPECTED));
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some((authority, path)) = rest.split_at_checked(authority_end) else {
        return Some(("has no valid host name", URL_EXPECTED));
    };
    if authority.contains('@') {
        return Some(("carries user credentials", URL_EXPECTED));
    }
    if !is_host_and_port(authority) {
        return Some(("has no valid host name", URL_EXPECTED));
    }
    if path.contains('#') {
        return Some((
            "has a #fragment, which is never part of a cache key",
            URL_EXPECTED,
        ));
    }
    if !path.bytes().all(is_url_byte) {
        return Some((
            "contains a character that must be percent-encoded",
            URL_EXPECTED,
        ));
    }
    None
}

const PREFIX_EXPECTED: &str =
    "URL prefixes without scheme such as www.example.com/blog, separated by commas or white space";

/// `host/path` without scheme (Cloudflare prefix purge).
fn check_prefix(prefix: &str) -> Option<(&'static str, &'static str)> {
    if prefix.contains("://") {
        return Some(("has a scheme", PREFIX_EXPECTED));
    }
    let Some((host, path)) = prefix.split_at_checked(prefix.find('/').unwrap_or(prefix.len()))
    else {
        return Some(("has no valid host name", PREFIX_EXPECTED));
    };
    if !is_host_name(host) {
        return Some(("has no valid host name", PREFIX_EXPECTED));
    }
    if path.contains(['?', '#']) || !path.bytes().all(is_url_byte) {
        return Some((
            "has a query, fragment or character that must be percent-encoded",
            PREFIX_EXPECTED,
        ));
    }
    None
}

fn check_host(host: &str) -> Option<(&'static str, &'static str)> {
    (!is_host_name(host)).then_some((
        "is not a host name",
        "host names such as www.example.com, separated by commas or white space",
    ))
}

fn check_tag(tag: &str) -> Option<(&'static str, &'static str)> {
    let expected = "cache tags of printable ASCII characters, separated by commas or white space";
    if tag.len() > TAG_MAX_LENGTH {
        return Some(("is longer than 1024 characters", expected));
    }
    (!tag.bytes().all(|b| b.is_ascii_graphic()))
        .then_some(("contains a non-printable or non-ASCII character", expected))
}

/// Letters, digits, '-' and '.', each dot-separated label non-empty and at
/// most 63 long, not starting or ending with '-'.
fn is_host_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            let bytes = label.as_bytes();
            label.len() <= 63
                && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
                && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        })
}

fn is_host_and_port(authority: &str) -> bool {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((address, after)) = bracketed.split_once(']') else {
            return false;
        };
        return address.parse::<std::net::Ipv6Addr>().is_ok()
            && (after.is_empty() || after.strip_prefix(':').is_some_and(is_port));
    }
    match authority.split_once(':') {
        Some((host, port)) => is_host_name(host) && is_port(port),
        None => is_host_name(authority),
    }
}

fn is_port(port: &str) -> bool {
    port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// RFC 3986 unreserved, reserved and '%' (for percent-encoding).
fn is_url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?[]@!$&'()*+,;=%".contains(&b)
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
    fn invalid_urls_are_named(#[case] url: &str, #[case] problem: &str) {
        let error = read(&[("urls", url)]).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "annotation cache-buster.io/urls: {url:?} {problem}"
            )),
            "{error}"
        );
        assert!(
            error.ends_with(&format!("; expected {URL_EXPECTED}")),
            "{error}"
        );
    }

    #[rstest]
    #[case::scheme("prefixes", "https://www.example.com/blog", "has a scheme")]
    #[case::bad_prefix_host("prefixes", "-www.example.com/blog", "has no valid host name")]
    #[case::query("prefixes", "www.example.com/blog?x", "has a query")]
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

    #[test]
    fn overlong_tags_are_refused() {
        let tag = "t".repeat(1025);
        let error = read(&[("tags", &tag)]).unwrap_err().to_string();
        assert!(error.contains("is longer than 1024 characters"), "{error}");
        assert_eq!(read(&[("tags", &"t".repeat(1024))]).unwrap().tags.len(), 1);
    }
}
