//! Container image references: parsing, canonical form and the image hash.
//!
//! The grammar and the normalisation are those of distribution/reference
//! (`reference.go`, `normalize.go`), the code Docker, containerd and the
//! kubelet use, so `nginx`, `docker.io/library/nginx:latest` and
//! `index.docker.io/library/nginx` are one image and hash alike.
//!
//! It is written here rather than taken from `oci-spec`'s `Reference`: that
//! type compiles a large regular expression (a few hundred KiB of Wasm and a
//! slow first call), answers every mistake with "invalid reference format" and
//! does not accept IPv6 registries. The unit tests compare the two on the
//! shared test vectors.

use sha2::{Digest, Sha256};
use std::fmt;

const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPOSITORY_NAMESPACE: &str = "library";
const DEFAULT_TAG: &str = "latest";
/// distribution/reference `NameTotalLengthMax`.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const TAG_LENGTH_MAX: usize = 128;
/// How many hexadecimal characters of the SHA-256 the image hash keeps (SPEC §3.2).
pub const IMAGE_HASH_LENGTH: usize = 10;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// Registry host with optional port, `docker.io` when none was given.
    pub domain: String,
    /// Repository path, with `library/` for official Docker Hub images.
    pub path: String,
    /// The tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// `algorithm:hex`, kept as given.
    pub digest: Option<String>,
}

/// Why a string is not an image reference. The message says what is wrong;
/// the caller adds where the string came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageReferenceError {
    #[error("it is empty")]
    Empty,
    #[error("it contains white space or a control character")]
    WhiteSpace,
    #[error("the repository name is empty")]
    EmptyRepository,
    #[error("the registry host {0:?} is not a valid host name, IPv4 or [IPv6] address")]
    InvalidDomain(String),
    #[error("the registry port in {0:?} is not a number")]
    InvalidPort(String),
    #[error("the repository name must be lowercase, got {0:?}")]
    UppercaseRepository(String),
    #[error(
        "the repository path component {0:?} is not valid: components are lowercase letters and digits, separated by '.', '_', '__' or dashes"
    )]
    InvalidPathComponent(String),
    #[error("the repository name is longer than {NAME_TOTAL_LENGTH_MAX} characters")]
    NameTooLong,
    #[error(
        "the tag {0:?} is not valid: a tag is 1 to {TAG_LENGTH_MAX} letters, digits, '_', '.' or '-', not starting with '.' or '-'"
    )]
    InvalidTag(String),
    #[error("the digest {0:?} is not of the form algorithm:hex")]
    InvalidDigest(String),
    #[error("the digest algorithm {0:?} is not supported: expected sha256, sha384 or sha512")]
    UnsupportedDigestAlgorithm(String),
    #[error(
        "the {algorithm} digest must be {expected} lowercase hexadecimal characters, got {found:?}"
    )]
    InvalidDigestHex {
        algorithm: String,
        expected: usize,
        found: String,
    },
}

impl ImageReference {
    /// Parses and normalises `reference` (`[registry[:port]/]path[:tag][@digest]`).
    pub fn parse(reference: &str) -> Result<Self, ImageReferenceError> {
        if reference.is_empty() {
            return Err(ImageReferenceError::Empty);
        }
        if reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ImageReferenceError::WhiteSpace);
        }

        let (name_and_tag, digest) = match reference.split_once('@') {
            Some((name_and_tag, digest)) => (name_and_tag, Some(parse_digest(digest)?)),
            None => (reference, None),
        };

        // A ':' after the last '/' starts the tag; one before it is a registry port.
        let last_slash = name_and_tag.rfind('/');
        let (name, tag) = match name_and_tag.rfind(':') {
            Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
                let (name, tag) = split_at_separator(name_and_tag, colon);
                (name, Some(parse_tag(tag)?))
            }
            _ => (name_and_tag, None),
        };

        if name.is_empty() {
            return Err(ImageReferenceError::EmptyRepository);
        }
        if name.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ImageReferenceError::NameTooLong);
        }

        let (domain, path) = split_domain(name);
        if let Some(domain) = domain {
            validate_domain(domain)?;
        }
        validate_path(path)?;

        let domain = match domain {
            None | Some(LEGACY_DEFAULT_DOMAIN) => DEFAULT_DOMAIN,
            Some(domain) => domain,
        };
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_REPOSITORY_NAMESPACE}/{path}")
        } else {
            path.to_owned()
        };
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (tag, _) => tag.map(str::to_owned),
        };

        Ok(ImageReference {
            domain: domain.to_owned(),
            path,
            tag,
            digest,
        })
    }

    /// A tag that can be re-pushed: `latest`, or no tag, without a digest that
    /// pins the content (SPEC §3.6).
    pub fn is_mutable(&self) -> bool {
        self.digest.is_none() && self.tag.as_deref().is_none_or(|tag| tag == DEFAULT_TAG)
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Splits `text` around the one-byte ASCII separator at `index`.
fn split_at_separator(text: &str, index: usize) -> (&str, &str) {
    let before = text.get(..index).unwrap_or_default();
    let after = text.get(index.saturating_add(1)..).unwrap_or_default();
    (before, after)
}

/// normalize.go `splitDockerDomain`: the first component is a registry only if
/// it looks like a host (has '.' or ':', is `localhost`) or has uppercase.
fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn validate_domain(domain: &str) -> Result<(), ImageReferenceError> {
    let invalid = || ImageReferenceError::InvalidDomain(domain.to_owned());
    let (host, port) = if let Some(bracketed) = domain.strip_prefix('[') {
        let (address, after) = bracketed.split_once(']').ok_or_else(invalid)?;
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid());
        }
        match after {
            "" => (None, None),
            _ => (None, Some(after.strip_prefix(':').ok_or_else(invalid)?)),
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host
        && !host.split('.').all(is_domain_component)
    {
        return Err(invalid());
    }
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(ImageReferenceError::InvalidPort(domain.to_owned()));
    }
    Ok(())
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`
fn is_domain_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

fn validate_path(path: &str) -> Result<(), ImageReferenceError> {
    if path.is_empty() {
        return Err(ImageReferenceError::EmptyRepository);
    }
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(ImageReferenceError::UppercaseRepository(path.to_owned()));
    }
    match path
        .split('/')
        .find(|component| !is_path_component(component))
    {
        Some(component) => Err(ImageReferenceError::InvalidPathComponent(
            component.to_owned(),
        )),
        None => Ok(()),
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn is_path_component(component: &str) -> bool {
    let mut separator = String::new();
    let mut seen_alphanumeric = false;
    for c in component.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if !separator.is_empty() && !is_path_separator(&separator) {
                return false;
            }
            separator.clear();
            seen_alphanumeric = true;
        } else if matches!(c, '.' | '_' | '-') && seen_alphanumeric {
            separator.push(c);
        } else {
            return false;
        }
    }
    seen_alphanumeric && separator.is_empty()
}

fn is_path_separator(separator: &str) -> bool {
    matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-')
}

/// `[\w][\w.-]{0,127}`
fn parse_tag(tag: &str) -> Result<&str, ImageReferenceError> {
    let is_word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let valid = tag.len() <= TAG_LENGTH_MAX
        && tag.as_bytes().first().is_some_and(is_word)
        && tag.bytes().all(|b| is_word(&b) || b == b'.' || b == b'-');
    if valid {
        Ok(tag)
    } else {
        Err(ImageReferenceError::InvalidTag(tag.to_owned()))
    }
}

/// `algorithm:hex`, with the algorithms and lengths the go-digest package accepts.
fn parse_digest(digest: &str) -> Result<String, ImageReferenceError> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or_else(|| ImageReferenceError::InvalidDigest(digest.to_owned()))?;
    let expected = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ if is_digest_algorithm(algorithm) => {
            return Err(ImageReferenceError::UnsupportedDigestAlgorithm(
                algorithm.to_owned(),
            ));
        }
        _ => return Err(ImageReferenceError::InvalidDigest(digest.to_owned())),
    };
    let lowercase_hex = hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex.len() != expected || !lowercase_hex {
        return Err(ImageReferenceError::InvalidDigestHex {
            algorithm: algorithm.to_owned(),
            expected,
            found: hex.to_owned(),
        });
    }
    Ok(digest.to_owned())
}

/// `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*`
fn is_digest_algorithm(algorithm: &str) -> bool {
    algorithm.split(['-', '_', '+', '.']).all(|component| {
        let bytes = component.as_bytes();
        bytes.first().is_some_and(u8::is_ascii_alphabetic)
            && bytes.iter().all(u8::is_ascii_alphanumeric)
    })
}

/// One counted container: its name and its canonical image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedImage {
    pub container: String,
    pub image: ImageReference,
}

/// SPEC §3.2: the first ten lowercase hex characters of SHA-256 over the lines
/// `name=canonical`, sorted by container name, joined by `\n`.
pub fn image_hash(selected: &[SelectedImage]) -> String {
    let lines = hash_input_lines(selected);
    let digest = Sha256::digest(lines.join("\n").as_bytes());
    let mut hash = String::with_capacity(IMAGE_HASH_LENGTH);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in digest.iter().take(IMAGE_HASH_LENGTH.div_ceil(2)) {
        for nibble in [byte >> 4, byte & 0x0f] {
            hash.push(char::from(
                HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    hash.truncate(IMAGE_HASH_LENGTH);
    hash
}

/// The `name=canonical` lines in hash order: by container name, then by image
/// (names are unique in a valid pod; the tie-break keeps invalid input stable).
pub fn hash_input_lines(selected: &[SelectedImage]) -> Vec<String> {
    let mut pairs: Vec<(&str, String)> = selected
        .iter()
        .map(|s| (s.container.as_str(), s.image.to_string()))
        .collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(container, image)| format!("{container}={image}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::docker_hub_short_name("nginx", "docker.io/library/nginx:latest")]
    #[case::docker_hub_short_name_with_tag("nginx:1.25", "docker.io/library/nginx:1.25")]
    #[case::docker_hub_user_repo("bitnami/redis:7.2", "docker.io/bitnami/redis:7.2")]
    #[case::docker_hub_explicit("docker.io/library/nginx:1.25", "docker.io/library/nginx:1.25")]
    #[case::legacy_index_domain("index.docker.io/nginx", "docker.io/library/nginx:latest")]
    #[case::explicit_docker_io_single_path("docker.io/nginx", "docker.io/library/nginx:latest")]
    #[case::registry_with_port("myregistry:5000/app", "myregistry:5000/app:latest")]
    #[case::registry_with_port_and_tag(
        "registry.example.com:5000/team/app:v2",
        "registry.example.com:5000/team/app:v2"
    )]
    #[case::localhost_registry("localhost/app:1", "localhost/app:1")]
    #[case::localhost_port("localhost:5000/app", "localhost:5000/app:latest")]
    #[case::ghcr_nested_path(
        "ghcr.io/org/team/site:2026.11.25",
        "ghcr.io/org/team/site:2026.11.25"
    )]
    #[case::name_with_port_like_tag("test.com:5000", "docker.io/library/test.com:5000")]
    #[case::uppercase_domain("Example.COM/app:1", "Example.COM/app:1")]
    #[case::uppercase_tag("nginx:Stable_1.x", "docker.io/library/nginx:Stable_1.x")]
    #[case::ipv6_registry("[::1]:5000/app:1", "[::1]:5000/app:1")]
    #[case::separators("a/b.c_d__e---f:t", "docker.io/a/b.c_d__e---f:t")]
    #[case::digest_only(
        "nginx@sha256:0000000000000000000000000000000000000000000000000000000000000001",
        "docker.io/library/nginx@sha256:0000000000000000000000000000000000000000000000000000000000000001"
    )]
    #[case::tag_and_digest(
        "ghcr.io/acme/site:v1@sha256:abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcd",
        "ghcr.io/acme/site:v1@sha256:abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcd"
    )]
    fn canonical_form(#[case] reference: &str, #[case] canonical: &str) {
        assert_eq!(
            ImageReference::parse(reference).unwrap().to_string(),
            canonical
        );
    }

    #[rstest]
    #[case::empty("", ImageReferenceError::Empty)]
    #[case::white_space(" nginx", ImageReferenceError::WhiteSpace)]
    #[case::uppercase_path("nginx/Web", ImageReferenceError::UppercaseRepository("nginx/Web".into()))]
    #[case::uppercase_single("Nginx", ImageReferenceError::UppercaseRepository("Nginx".into()))]
    #[case::bad_tag("nginx:-1", ImageReferenceError::InvalidTag("-1".into()))]
    #[case::long_tag(&format!("nginx:{}", "a".repeat(129)), ImageReferenceError::InvalidTag("a".repeat(129)))]
    #[case::empty_tag("nginx:", ImageReferenceError::InvalidTag(String::new()))]
    #[case::double_dot("a..b", ImageReferenceError::InvalidPathComponent("a..b".into()))]
    #[case::trailing_separator("app-", ImageReferenceError::InvalidPathComponent("app-".into()))]
    #[case::leading_separator("_app", ImageReferenceError::InvalidPathComponent("_app".into()))]
    #[case::empty_component(
        "ghcr.io/org//app",
        ImageReferenceError::InvalidPathComponent(String::new())
    )]
    #[case::no_path("ghcr.io/", ImageReferenceError::EmptyRepository)]
    #[case::bad_port("host:abc/app", ImageReferenceError::InvalidPort("host:abc".into()))]
    #[case::bad_host("-host.io/app", ImageReferenceError::InvalidDomain("-host.io".into()))]
    #[case::bad_ipv6("[zz]:5000/app", ImageReferenceError::InvalidDomain("[zz]:5000".into()))]
    #[case::digest_without_colon("nginx@sha256", ImageReferenceError::InvalidDigest("sha256".into()))]
    #[case::digest_unknown_algorithm(
        "nginx@md5:0123456789abcdef0123456789abcdef",
        ImageReferenceError::UnsupportedDigestAlgorithm("md5".into())
    )]
    #[case::digest_short("nginx@sha256:abc", ImageReferenceError::InvalidDigestHex { algorithm: "sha256".into(), expected: 64, found: "abc".into() })]
    #[case::digest_uppercase(
        "nginx@sha256:ABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCD",
        ImageReferenceError::InvalidDigestHex { algorithm: "sha256".into(), expected: 64, found: "ABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCD".into() }
    )]
    #[case::too_long(&format!("ghcr.io/{}", "a".repeat(250)), ImageReferenceError::NameTooLong)]
    fn rejected_references(#[case] reference: &str, #[case] expected: ImageReferenceError) {
        assert_eq!(ImageReference::parse(reference), Err(expected));
    }

    #[rstest]
    #[case::no_tag("nginx", true)]
    #[case::latest("nginx:latest", true)]
    #[case::version("nginx:1.25", false)]
    #[case::digest_only(
        "nginx@sha256:0000000000000000000000000000000000000000000000000000000000000001",
        false
    )]
    #[case::latest_pinned_by_digest(
        "nginx:latest@sha256:0000000000000000000000000000000000000000000000000000000000000001",
        false
    )]
    fn mutable_tags(#[case] reference: &str, #[case] mutable: bool) {
        assert_eq!(
            ImageReference::parse(reference).unwrap().is_mutable(),
            mutable
        );
    }

    fn selected(pairs: &[(&str, &str)]) -> Vec<SelectedImage> {
        pairs
            .iter()
            .map(|(container, image)| SelectedImage {
                container: (*container).to_owned(),
                image: ImageReference::parse(image).unwrap(),
            })
            .collect()
    }

    /// Fixed vectors, computed independently with
    /// `printf '%s' 'web=docker.io/library/nginx:1.25' | sha256sum | cut -c1-10`.
    #[rstest]
    #[case::tag_only(&[("web", "nginx:1.25")], "web=docker.io/library/nginx:1.25", "d568c927cb")]
    #[case::short_name_equals_canonical(&[("web", "docker.io/library/nginx:1.25")], "web=docker.io/library/nginx:1.25", "d568c927cb")]
    #[case::implicit_latest(&[("web", "nginx")], "web=docker.io/library/nginx:latest", "d3f0fbac65")]
    #[case::digest_only(
        &[("web", "ghcr.io/acme/site@sha256:abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcd")],
        "web=ghcr.io/acme/site@sha256:abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcd",
        "442f5ba779"
    )]
    #[case::tag_and_digest(
        &[("web", "ghcr.io/acme/site:v1@sha256:abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcd")],
        "web=ghcr.io/acme/site:v1@sha256:abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcd",
        "192f33439d"
    )]
    #[case::registry_with_port(&[("app", "registry.example.com:5000/team/app:v2")], "app=registry.example.com:5000/team/app:v2", "96d627bdf7")]
    #[case::two_containers_sorted_by_name(
        &[("web", "nginx:1.25"), ("php", "bitnami/php-fpm:8.3")],
        "php=docker.io/bitnami/php-fpm:8.3\nweb=docker.io/library/nginx:1.25",
        "80e0188a88"
    )]
    fn hash_vectors(#[case] pairs: &[(&str, &str)], #[case] input: &str, #[case] hash: &str) {
        let selected = selected(pairs);
        assert_eq!(hash_input_lines(&selected).join("\n"), input);
        assert_eq!(image_hash(&selected), hash);
    }

    #[test]
    fn hash_ignores_container_order() {
        let forward = selected(&[("a", "nginx:1"), ("b", "redis:7")]);
        let backward = selected(&[("b", "redis:7"), ("a", "nginx:1")]);
        assert_eq!(image_hash(&forward), image_hash(&backward));
    }

    #[test]
    fn hash_sorts_by_name_not_by_line() {
        // By line, "a-b=" sorts before "a=" ('-' < '='); by name "a" comes first.
        let lines = hash_input_lines(&selected(&[("a-b", "nginx:1"), ("a", "redis:7")]));
        assert_eq!(
            lines,
            [
                "a=docker.io/library/redis:7",
                "a-b=docker.io/library/nginx:1"
            ]
        );
    }

    #[test]
    fn hash_changes_with_the_image() {
        let old = selected(&[("web", "nginx:1.25")]);
        let new = selected(&[("web", "nginx:1.26")]);
        assert_ne!(image_hash(&old), image_hash(&new));
        assert_eq!(image_hash(&new).len(), IMAGE_HASH_LENGTH);
    }

    /// oci-spec's `Reference` follows the same reference grammar (through a
    /// regular expression): both must agree on every reference it accepts.
    #[rstest]
    #[case("busybox")]
    #[case("test.com:tag")]
    #[case("test.com:5000")]
    #[case("test.com/repo:tag")]
    #[case("test:5000/repo")]
    #[case("test:5000/repo:tag")]
    #[case("lowercase:Uppercase")]
    #[case("sub-dom1.foo.com/bar/baz/quux")]
    #[case("sub-dom1.foo.com/bar/baz/quux:some-long-tag")]
    #[case("b.gcr.io/test.example.com/my-app:test.example.com")]
    #[case("xn--n3h.com/myimage:xn--n3h.com")]
    #[case("foo_bar.com:8080")]
    #[case("foo/foo_bar.com:8080")]
    #[case("opensuse/leap:15.3")]
    #[case("index.docker.io/busybox")]
    #[case(
        "docker.io/foo/bar:1.2@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
    )]
    fn agrees_with_oci_spec(#[case] reference: &str) {
        let theirs: oci_spec::distribution::Reference = reference.parse().unwrap();
        let ours = ImageReference::parse(reference).unwrap();
        assert_eq!(ours.to_string(), theirs.whole(), "{reference}");
    }

    /// normalize.go's splitDockerDomain takes an uppercase first component for
    /// a registry (`strings.ToLower(name[:i]) != name[:i]`); oci-spec does not
    /// and reads `docker.io/Uppercase/…`, which no registry serves. Go wins.
    #[test]
    fn uppercase_first_component_is_a_registry_as_in_go() {
        let ours = ImageReference::parse("Uppercase/lowercase:tag").unwrap();
        assert_eq!(ours.domain, "Uppercase");
        assert_eq!(ours.to_string(), "Uppercase/lowercase:tag");
    }

    #[rstest]
    #[case("Uppercase:tag")]
    #[case("test:5000/Uppercase/lowercase:tag")]
    #[case("aa/asdf$$^/aa")]
    #[case("a:b:c")]
    #[case("-foo/bar")]
    #[case("foo@sha256:ffff")]
    fn rejects_what_oci_spec_rejects(#[case] reference: &str) {
        assert!(
            reference
                .parse::<oci_spec::distribution::Reference>()
                .is_err()
        );
        assert!(ImageReference::parse(reference).is_err(), "{reference}");
    }
}
