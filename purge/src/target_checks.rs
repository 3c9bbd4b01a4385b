//! What a purge target may be (SPEC §2), checked the same way by the policy
//! at admission and by the program when it reads its argv: what admission
//! accepts is exactly what the purge can send. URLs are parsed by the one
//! parser both use (the `url` crate, WHATWG's URL standard, as the HTTP
//! client that sends them parses them).

use std::fmt;

/// Cloudflare's limit for a cache tag.
const TAG_MAX_LENGTH: usize = 1024;

/// Why an item is refused: what is wrong with it, and what is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub problem: &'static str,
    pub expected: &'static str,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; expected {}", self.problem, self.expected)
    }
}

pub const URL_EXPECTED: &str =
    "absolute URLs such as https://www.example.com/page, separated by commas or white space";
pub const PREFIX_EXPECTED: &str =
    "URL prefixes without scheme such as www.example.com/blog, separated by commas or white space";
const HOST_EXPECTED: &str =
    "host names such as www.example.com, separated by commas or white space";
const TAG_EXPECTED: &str =
    "cache tags of printable ASCII characters, separated by commas or white space";

const DOT_SEGMENT: &str = "has a dot segment (. or .., also percent-encoded) in its path, which would steer the purge to another path";

/// A URL to purge: the text as written (a CDN matches its cache keys
/// against it), and the same URL as parsed. Only [`TargetUrl::parse`]
/// makes one, so a provider never meets a URL it cannot read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl {
    written: String,
    parsed: url::Url,
}

impl TargetUrl {
    /// `http(s)://host[:port][/path][?query]`, in the characters a URL may
    /// hold unencoded, without credentials, fragment or dot segment.
    pub fn parse(text: &str) -> Result<TargetUrl, Refusal> {
        Written::check(text)?;
        let parsed = url::Url::parse(text).map_err(|_| refused_url(NOT_A_URL))?;
        Ok(TargetUrl {
            written: text.to_owned(),
            parsed,
        })
    }

    /// As written in the annotation.
    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// As parsed: host, path, query.
    pub fn parsed(&self) -> &url::Url {
        &self.parsed
    }

    /// The host, as written (a parsed URL has one).
    pub fn host(&self) -> &str {
        self.parsed.host_str().unwrap_or_default()
    }

    /// The path (`/` for none), without the query.
    pub fn path(&self) -> &str {
        self.parsed.path()
    }
}

const NOT_A_URL: &str = "is not a valid URL";

fn refused_url(problem: &'static str) -> Refusal {
    Refusal {
        problem,
        expected: URL_EXPECTED,
    }
}

/// A URL split where the `url` crate reads it: `https://host:port` (what
/// it may still refuse: with the path in URL characters and no fragment,
/// the WHATWG parser fails only on the host or port), the authority alone,
/// and the path with its query.
struct Written<'a> {
    origin: &'a str,
    authority: &'a str,
    path: &'a str,
}

impl<'a> Written<'a> {
    fn split(text: &'a str) -> Result<Written<'a>, Refusal> {
        let scheme_length = if text.starts_with("https://") {
            "https://".len()
        } else if text.starts_with("http://") {
            "http://".len()
        } else {
            return Err(refused_url("is not an absolute http or https URL"));
        };
        let origin_end = text
            .bytes()
            .skip(scheme_length)
            .position(|b| matches!(b, b'/' | b'?' | b'#'))
            .map_or(text.len(), |at| scheme_length + at);
        let (origin, path) = text.split_at_checked(origin_end).unwrap_or((text, ""));
        Ok(Written {
            origin,
            authority: origin.get(scheme_length..).unwrap_or_default(),
            path,
        })
    }

    fn check_authority(&self) -> Result<(), Refusal> {
        if self.authority.contains('@') {
            return Err(refused_url("carries user credentials"));
        }
        if !is_host_and_port(self.authority) {
            return Err(refused_url("has no valid host name"));
        }
        Ok(())
    }

    fn check_path(&self) -> Result<(), Refusal> {
        let path = self.path.as_bytes();
        if path.contains(&b'#') {
            return Err(refused_url(
                "has a #fragment, which is never part of a cache key",
            ));
        }
        if !path.iter().copied().all(is_url_byte) {
            return Err(refused_url(
                "contains a character that must be percent-encoded",
            ));
        }
        if has_dot_segment(self.path) {
            return Err(refused_url(DOT_SEGMENT));
        }
        Ok(())
    }

    /// Every check of [`TargetUrl::parse`] but the `url` crate's.
    fn check(text: &'a str) -> Result<Written<'a>, Refusal> {
        let written = Written::split(text)?;
        written.check_authority()?;
        written.check_path()?;
        Ok(written)
    }
}

/// Checks URLs exactly as [`TargetUrl::parse`] does, keeping nothing: what
/// the policy needs of a long `urls` annotation. The URLs of a list mostly
/// share one origin, so the last one's verdict is remembered: its host is
/// checked, and read by the `url` crate, once.
#[derive(Debug, Default)]
pub struct UrlChecks {
    last_origin: String,
    last_verdict: Option<Result<(), Refusal>>,
}

impl UrlChecks {
    pub fn check(&mut self, text: &str) -> Result<(), Refusal> {
        let written = Written::split(text)?;
        let verdict = match self.last_verdict {
            Some(verdict) if written.origin == self.last_origin => verdict,
            _ => {
                let verdict = written.check_authority().and_then(|()| {
                    url::Url::parse(written.origin)
                        .map(drop)
                        .map_err(|_| refused_url(NOT_A_URL))
                });
                self.last_origin.clear();
                self.last_origin.push_str(written.origin);
                self.last_verdict = Some(verdict);
                verdict
            }
        };
        // In `TargetUrl::parse`'s order: the authority, the path, the parser.
        match verdict {
            Err(refusal) if refusal.problem != NOT_A_URL => Err(refusal),
            _ => written.check_path().and(verdict),
        }
    }
}

impl std::str::FromStr for TargetUrl {
    type Err = Refusal;

    fn from_str(text: &str) -> Result<TargetUrl, Refusal> {
        TargetUrl::parse(text)
    }
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

impl PartialEq<&str> for TargetUrl {
    fn eq(&self, other: &&str) -> bool {
        self.written == *other
    }
}

impl PartialEq<str> for TargetUrl {
    fn eq(&self, other: &str) -> bool {
        self.written == other
    }
}

impl serde::Serialize for TargetUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.written)
    }
}

/// `host/path` without scheme (Cloudflare's prefix purge): a host name, and
/// a path in URL characters, without query, fragment or dot segment.
pub fn check_prefix(prefix: &str) -> Result<(), Refusal> {
    let refused = |problem| {
        Err(Refusal {
            problem,
            expected: PREFIX_EXPECTED,
        })
    };
    if prefix.contains("://") {
        return refused("has a scheme");
    }
    let (host, path) = prefix
        .split_at_checked(prefix.find('/').unwrap_or(prefix.len()))
        .unwrap_or((prefix, ""));
    if !is_host_name(host) {
        return refused("has no valid host name");
    }
    if path.contains(['?', '#']) || !path.bytes().all(is_url_byte) {
        return refused("has a query, fragment or character that must be percent-encoded");
    }
    if has_dot_segment(path) {
        return refused(DOT_SEGMENT);
    }
    Ok(())
}

pub fn check_host(host: &str) -> Result<(), Refusal> {
    if is_host_name(host) {
        return Ok(());
    }
    Err(Refusal {
        problem: "is not a host name",
        expected: HOST_EXPECTED,
    })
}

pub fn check_tag(tag: &str) -> Result<(), Refusal> {
    let refused = |problem| {
        Err(Refusal {
            problem,
            expected: TAG_EXPECTED,
        })
    };
    if tag.len() > TAG_MAX_LENGTH {
        return refused("is longer than 1024 characters");
    }
    if !tag.bytes().all(|b| b.is_ascii_graphic()) {
        return refused("contains a non-printable or non-ASCII character");
    }
    Ok(())
}

/// Whether a path (with its query, which ends it) has a segment that URL
/// parsers resolve away: `.` or `..`, written plainly or as `%2e`. Sent to
/// an API that builds a path from it, `../..` would reach another endpoint
/// with the same key.
pub fn has_dot_segment(path_and_query: &str) -> bool {
    let bytes = path_and_query.as_bytes();
    let path = bytes.split(|b| *b == b'?').next().unwrap_or_default();
    path.split(|b| *b == b'/').any(is_dot_segment)
}

/// `.` or `..`, each dot written plainly or as `%2e` (any case); read
/// without allocating, as a long annotation has thousands of segments.
fn is_dot_segment(segment: &[u8]) -> bool {
    let mut rest = segment;
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', b'e' | b'E', tail @ ..] => tail,
            _ => return false,
        };
        dots += 1;
    }
    matches!(dots, 1 | 2)
}

/// Letters, digits, '-' and '.', each dot-separated label non-empty and at
/// most 63 long, not starting or ending with '-'.
pub fn is_host_name(host: &str) -> bool {
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
    matches!(b,
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
        | b'-' | b'.' | b'_' | b'~' | b':' | b'/' | b'?' | b'[' | b']' | b'@'
        | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b'%')
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// SPEC §2: a dot segment makes a URL malformed, plainly or
    /// percent-encoded, anywhere in its path (not in its query).
    #[rstest]
    #[case("https://www.example.com/../../service/other/purge_all")]
    #[case("https://www.example.com/a/..")]
    #[case("https://www.example.com/./a")]
    #[case("https://www.example.com/%2e%2e/service/x/purge_all")]
    #[case("https://www.example.com/%2E%2E/x")]
    #[case("https://www.example.com/.%2e/x")]
    #[case("https://www.example.com/%2e/x")]
    #[case("https://www.example.com/..?a=b")]
    fn urls_with_dot_segments_are_refused(#[case] text: &str) {
        assert_eq!(TargetUrl::parse(text).unwrap_err().problem, DOT_SEGMENT);
    }

    #[rstest]
    #[case("https://www.example.com/...")]
    #[case("https://www.example.com/a..b/.well-known/x.css")]
    #[case("https://www.example.com/a?b=../..")]
    fn dots_that_are_no_segment_pass(#[case] text: &str) {
        let url = TargetUrl::parse(text).unwrap();
        assert_eq!(url.as_str(), text);
        // What the client sends is what was written: no dot segment moved it.
        assert_eq!(url.parsed().as_str(), text);
    }

    #[rstest]
    #[case("www.example.com/../admin")]
    #[case("www.example.com/blog/%2E%2e")]
    fn prefixes_with_dot_segments_are_refused(#[case] prefix: &str) {
        assert_eq!(check_prefix(prefix).unwrap_err().problem, DOT_SEGMENT);
    }

    /// Every URL the checks admit, the parser reads, with the host and path
    /// the providers use.
    #[test]
    fn an_admitted_url_is_parsed_with_its_host_and_path() {
        let url = TargetUrl::parse("https://shop.example.com:8443/products/[id]?c=%20d").unwrap();
        assert_eq!(url.host(), "shop.example.com");
        assert_eq!(url.path(), "/products/[id]");
        assert_eq!(url.parsed().query(), Some("c=%20d"));
        assert_eq!(url, "https://shop.example.com:8443/products/[id]?c=%20d");
    }

    /// The verdict of the full parse, as the policy's checks must give it.
    fn parse_verdict(text: &str) -> Result<(), &'static str> {
        TargetUrl::parse(text)
            .map(drop)
            .map_err(|refusal| refusal.problem)
    }

    /// One checker through a list, as the policy reads an annotation: the
    /// remembered origin never changes a verdict, in either order.
    #[rstest]
    #[case("https://www.example.com/a", Ok(()))]
    #[case("https://www.example.com/b?c=d", Ok(()))]
    #[case("https://www.example.com/../x", Err(DOT_SEGMENT))]
    #[case(
        "https://www.example.com/é",
        Err("contains a character that must be percent-encoded")
    )]
    #[case("https://1.2.3.999/a", Err(NOT_A_URL))]
    #[case("https://1.2.3.999/b", Err(NOT_A_URL))]
    #[case(
        "https://1.2.3.999/#top",
        Err("has a #fragment, which is never part of a cache key")
    )]
    #[case("https://1.2.3.999/%2e%2e/x", Err(DOT_SEGMENT))]
    #[case("https://www.example.com:0/a", Err("has no valid host name"))]
    #[case("https://u@www.example.com/a", Err("carries user credentials"))]
    #[case("https://www.example.com", Ok(()))]
    #[case("http://www.example.com?x", Ok(()))]
    #[case("https://[::1]:8443/a", Ok(()))]
    #[case("ftp://www.example.com/a", Err("is not an absolute http or https URL"))]
    fn url_checks_give_the_parse_verdict(
        #[case] text: &str,
        #[case] verdict: Result<(), &'static str>,
    ) {
        assert_eq!(parse_verdict(text), verdict, "the full parse of {text}");
        let mut forwards = UrlChecks::default();
        let mut backwards = UrlChecks::default();
        for (checks, before) in [
            (&mut forwards, "https://1.2.3.999/z"),
            (&mut backwards, "https://www.example.com/z"),
        ] {
            let _ = checks.check(before);
            let _ = checks.check(text);
            assert_eq!(
                checks.check(text).map_err(|r| r.problem),
                verdict,
                "{text} after {before}"
            );
        }
    }

    proptest::proptest! {
        /// Any list of URL-like texts, read by one checker, gets each
        /// text's verdict from the full parse.
        #[test]
        fn url_checks_agree_with_the_parse_on_any_list(
            texts in proptest::collection::vec(url_like(), 1..12)
        ) {
            let mut checks = UrlChecks::default();
            for text in &texts {
                proptest::prop_assert_eq!(
                    checks.check(text).map_err(|r| r.problem),
                    parse_verdict(text),
                    "{}", text
                );
            }
        }
    }

    /// Scheme, credentials, host, port and path drawn from the parts the
    /// checks and the `url` crate decide on.
    fn url_like() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let scheme = prop::sample::select(vec!["https://", "http://", "ftp://", "https:", ""]);
        let credentials = prop::sample::select(vec!["", "", "", "user@", "u:p@"]);
        let host = prop::sample::select(vec![
            "www.example.com",
            "www.example.com",
            "a",
            "1.2.3.4",
            "1.2.3.999",
            "0x7f.1",
            "999999999999",
            "xn--zz",
            "xn--nxasmq6b",
            "-a.example",
            "a_b.example",
            "",
            "[::1]",
            "[::1",
            "[2001:db8::g]",
            "example.com.",
            "EXAMPLE.com",
        ]);
        let port = prop::sample::select(vec!["", "", ":0", ":80", ":65535", ":65536", ":x", ":"]);
        let segment = prop::sample::select(vec![
            "a",
            "index.html",
            ".",
            "..",
            "%2e",
            "%2E%2e",
            ".%2e",
            "...",
            "é",
            "#f",
            "?q=..",
            "?a=b/../c",
            "[id]",
            "%20",
            "\\",
            " ",
            "%",
            "~x",
            "@",
        ]);
        let path = prop::collection::vec(segment, 0..4).prop_map(|segments| {
            segments
                .iter()
                .map(|segment| format!("/{segment}"))
                .collect::<String>()
        });
        (scheme, credentials, host, port, path).prop_map(
            |(scheme, credentials, host, port, path)| {
                format!("{scheme}{credentials}{host}{port}{path}")
            },
        )
    }

    #[test]
    fn a_refusal_reads_as_problem_then_expectation() {
        let refusal = TargetUrl::parse("ftp://x").unwrap_err();
        assert_eq!(
            refusal.to_string(),
            format!("is not an absolute http or https URL; expected {URL_EXPECTED}")
        );
    }
}
