//! SPEC §9: `P/content`, where a site's pages sit in its image and the URL
//! they are served under (`/usr/share/nginx/html=https://www.example.com/`).
//! Checked the same way by the policy at admission and by the program when
//! it reads its argv, as the purge targets are (`target_checks`).

use crate::target_checks::UrlChecks;
use std::fmt;

pub const CONTENT_EXPECTED: &str = "<dir>=<base URL> pairs separated by commas, such as \
     /usr/share/nginx/html=https://www.example.com/: an absolute directory of the image, \
     and an absolute http or https URL ending in /";

/// The setting `contentMaxUrls`' default: beyond it, the purge falls back.
pub const DEFAULT_MAX_URLS: u32 = 500;

pub const REGISTRY_EXPECTED: &str =
    "a registry's host and optional port, such as registry.local:5000, without scheme or path";

/// Where the purge container finds the Deployment's image pull secrets
/// (docker config JSON files), mounted read-only for a content purge.
pub const PULL_SECRETS_DIR: &str = "/var/run/secrets/cache-buster/registries";

/// Where the purge container finds the CA certificates of registries with
/// a private CA (setting `contentRegistryCA`, a ConfigMap's key), mounted
/// read-only for a content purge.
pub const REGISTRY_CA_FILE: &str = "/var/run/secrets/cache-buster/registry-ca/ca.crt";

/// `host[:port]`, as the setting `contentInsecureRegistries` names a
/// registry reached over plain HTTP (kwctl's `sources.yml` names its
/// `insecure_sources` the same way).
pub fn check_registry(text: &str) -> Result<(), ContentRefusal> {
    let refused = || Err(ContentRefusal(format!("is not {REGISTRY_EXPECTED}")));
    if text.is_empty() || text.contains(['/', '@', '?', '#']) || text.contains(char::is_whitespace)
    {
        return refused();
    }
    match url::Url::parse(&["http://", text, "/"].concat()) {
        Ok(url) if url.host_str().is_some() => Ok(()),
        _ => refused(),
    }
}

/// One `<dir>=<base URL>` pair. Only [`ContentRoot::parse`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentRoot {
    dir: String,
    base_url: String,
}

/// Why a pair is refused. The expected form is [`CONTENT_EXPECTED`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentRefusal(pub String);

impl fmt::Display for ContentRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; expected {CONTENT_EXPECTED}", self.0)
    }
}

impl ContentRoot {
    /// `<dir>=<base URL>`. The directory is absolute, without `.` or `..`
    /// segments (a trailing `/` is dropped: `/srv/` is `/srv`); the base URL
    /// is a purge URL as `P/urls` takes one, ends in `/` and has no query
    /// (the files' paths are appended to it).
    pub fn parse(text: &str) -> Result<ContentRoot, ContentRefusal> {
        let refused = |problem: &str| Err(ContentRefusal(problem.to_owned()));
        let Some((dir, base_url)) = text.split_once('=') else {
            return refused("has no = between the directory and the base URL");
        };
        if !dir.starts_with('/') {
            return refused("has a directory that is not absolute (it must start with /)");
        }
        let dir = match dir.trim_end_matches('/') {
            "" => "/",
            trimmed => trimmed,
        };
        if dir != "/"
            && dir
                .split('/')
                .skip(1)
                .any(|segment| segment.is_empty() || segment == "." || segment == "..")
        {
            return refused("has a directory with an empty, . or .. segment");
        }
        if dir.bytes().any(|b| b.is_ascii_control() || b == b'=') {
            return refused("has a directory with a control character or =");
        }
        // The checks of `TargetUrl::parse`, without keeping the URL.
        if let Err(refusal) = UrlChecks::default().check(base_url) {
            return Err(ContentRefusal(
                ["has a base URL that ", refusal.problem].concat(),
            ));
        }
        if base_url.contains('?') {
            return refused("has a base URL with a query; the files' paths are appended to it");
        }
        if !base_url.ends_with('/') {
            return refused("has a base URL that does not end in /");
        }
        Ok(ContentRoot {
            dir: dir.to_owned(),
            base_url: base_url.to_owned(),
        })
    }

    /// As the argv and the annotation write it: `<dir>=<base URL>`.
    pub fn render(&self) -> String {
        [self.dir.as_str(), "=", &self.base_url].concat()
    }

    /// The image's directory, without a trailing `/` (but `/` itself).
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The URL the directory is served under, ending in `/`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// SPEC §9: the URLs of a file of the image (`usr/share/nginx/html/posts/index.html`,
    /// relative to the root): `<base URL><path under dir>`, percent-encoded,
    /// and for an `index.html` its directory's URL too. None outside `dir`.
    pub fn urls_of(&self, path: &str) -> Vec<String> {
        let dir = self.dir.trim_start_matches('/');
        let relative = match dir {
            "" => Some(path),
            dir => path
                .strip_prefix(dir)
                .and_then(|rest| rest.strip_prefix('/')),
        };
        let Some(relative) = relative.filter(|relative| !relative.is_empty()) else {
            return Vec::new();
        };
        let encoded: Vec<String> = relative.split('/').map(path_segment).collect();
        let url = [self.base_url.as_str(), &encoded.join("/")].concat();
        let mut urls = Vec::with_capacity(2);
        if let Some(directory) = url.strip_suffix("index.html")
            && directory.ends_with('/')
        {
            urls.push(directory.to_owned());
        }
        urls.push(url);
        urls
    }

    /// A directory of the image (relative to the root) as a URL prefix,
    /// without scheme: `usr/share/nginx/html/posts` → `www.example.com/posts/`.
    /// None outside `dir`, or where the base URL is no prefix (a port).
    pub fn prefix_of(&self, path: &str) -> Option<String> {
        let url = self.urls_of(path).pop()?;
        let prefix = [
            url.split_once("://").map_or(url.as_str(), |(_, rest)| rest),
            "/",
        ]
        .concat();
        crate::target_checks::check_prefix(&prefix)
            .ok()
            .map(|()| prefix)
    }

    /// The base URL as a prefix, as `P/prefixes` takes one: no scheme.
    pub fn base_prefix(&self) -> &str {
        self.base_url
            .split_once("://")
            .map_or(self.base_url.as_str(), |(_, rest)| rest)
    }
}

/// A file name as a URL path segment: RFC 3986's `pchar` kept, the rest
/// percent-encoded (`a b?.html` is `a%20b%3F.html`).
fn path_segment(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

impl fmt::Display for ContentRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::str::FromStr for ContentRoot {
    type Err = ContentRefusal;

    fn from_str(text: &str) -> Result<ContentRoot, ContentRefusal> {
        ContentRoot::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target_checks::TargetUrl;
    use rstest::rstest;

    #[rstest]
    #[case::host("registry.local", true)]
    #[case::host_and_port("registry.local:5000", true)]
    #[case::address_and_port("127.0.0.1:5000", true)]
    #[case::ipv6("[::1]:5000", true)]
    #[case::scheme("http://registry.local", false)]
    #[case::path("registry.local/library", false)]
    #[case::user("me@registry.local", false)]
    #[case::bad_port("registry.local:http", false)]
    #[case::empty("", false)]
    #[case::space("registry .local", false)]
    fn a_registry_is_a_host_and_a_port(#[case] text: &str, #[case] valid: bool) {
        assert_eq!(check_registry(text).is_ok(), valid, "{text}");
    }

    #[rstest]
    #[case(
        "/usr/share/nginx/html=https://siebjee.nl/",
        "/usr/share/nginx/html",
        "https://siebjee.nl/"
    )]
    #[case(
        "/srv/site/=https://www.example.com/blog/",
        "/srv/site",
        "https://www.example.com/blog/"
    )]
    #[case(
        "/=http://shop.example.com:8080/",
        "/",
        "http://shop.example.com:8080/"
    )]
    fn a_pair_is_a_directory_and_a_base_url(
        #[case] text: &str,
        #[case] dir: &str,
        #[case] base_url: &str,
    ) {
        let root = ContentRoot::parse(text).unwrap();
        assert_eq!((root.dir(), root.base_url()), (dir, base_url));
        assert_eq!(ContentRoot::parse(&root.to_string()), Ok(root));
    }

    #[rstest]
    #[case(
        "/usr/share/nginx/html",
        "has no = between the directory and the base URL"
    )]
    #[case(
        "html=https://a.example/",
        "has a directory that is not absolute (it must start with /)"
    )]
    #[case(
        "/srv/../etc=https://a.example/",
        "has a directory with an empty, . or .. segment"
    )]
    #[case(
        "/srv//site=https://a.example/",
        "has a directory with an empty, . or .. segment"
    )]
    #[case(
        "/srv=siebjee.nl/",
        "has a base URL that is not an absolute http or https URL"
    )]
    #[case(
        "/srv=https://a.example/x/../",
        "has a base URL that has a dot segment (. or .., also percent-encoded) in its path, which would steer the purge to another path"
    )]
    #[case(
        "/srv=https://a.example/?lang=en/",
        "has a base URL with a query; the files' paths are appended to it"
    )]
    #[case("/srv=https://a.example/blog", "has a base URL that does not end in /")]
    fn a_malformed_pair_is_refused_naming_its_problem(#[case] text: &str, #[case] problem: &str) {
        assert_eq!(
            ContentRoot::parse(text),
            Err(ContentRefusal(problem.to_owned()))
        );
    }

    #[rstest]
    #[case("usr/share/nginx/html/posts/new/index.html", &["https://siebjee.nl/posts/new/", "https://siebjee.nl/posts/new/index.html"])]
    #[case("usr/share/nginx/html/index.html", &["https://siebjee.nl/", "https://siebjee.nl/index.html"])]
    #[case("usr/share/nginx/html/index.xml", &["https://siebjee.nl/index.xml"])]
    #[case("usr/share/nginx/html/a b?#.html", &["https://siebjee.nl/a%20b%3F%23.html"])]
    #[case("usr/share/nginx/html/café.html", &["https://siebjee.nl/caf%C3%A9.html"])]
    #[case("usr/share/nginx/htmlx/index.html", &[])]
    #[case("usr/share/nginx/html", &[])]
    #[case("etc/nginx/nginx.conf", &[])]
    fn a_file_under_the_directory_is_its_url(#[case] path: &str, #[case] urls: &[&str]) {
        let root = ContentRoot::parse("/usr/share/nginx/html=https://siebjee.nl/").unwrap();
        assert_eq!(root.urls_of(path), urls);
        for url in root.urls_of(path) {
            assert_eq!(TargetUrl::parse(&url).map(|_| ()), Ok(()), "{url}");
        }
    }

    #[test]
    fn the_base_url_as_a_prefix_has_no_scheme() {
        let root = ContentRoot::parse("/srv=https://www.example.com/blog/").unwrap();
        assert_eq!(root.base_prefix(), "www.example.com/blog/");
    }
}
