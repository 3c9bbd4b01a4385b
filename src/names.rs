//! Kubernetes name rules (apimachinery `validation.go`) and the job name.

/// Job names end up in the `job-name` label of the Job's pods: a label value
/// is at most 63 characters, so a longer Job name fails to run (SPEC §3.3).
pub const JOB_NAME_MAX_LENGTH: usize = 63;
const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
const DNS1123_LABEL_MAX_LENGTH: usize = 63;
const LABEL_VALUE_MAX_LENGTH: usize = 63;
const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// What the job name puts between the Deployment name and the image hash.
pub const JOB_NAME_INFIX: &str = "-cache-buster-";

/// SPEC §3.3: `<deployment>-cache-buster-<hash>`; when that is longer than 63
/// characters the Deployment part is cut so the name is 63 long, and any `-`
/// or `.` left at the end of the cut part is dropped (so that the name stays a
/// DNS-1123 subdomain).
pub fn job_name(deployment: &str, image_hash: &str) -> String {
    let suffix_length = JOB_NAME_INFIX.len().saturating_add(image_hash.len());
    let budget = JOB_NAME_MAX_LENGTH.saturating_sub(suffix_length);
    let deployment_part = if deployment.len() > budget {
        // Deployment names are ASCII (validated before); `get` keeps this total.
        deployment
            .get(..budget)
            .unwrap_or(deployment)
            .trim_end_matches(['-', '.'])
    } else {
        deployment
    };
    format!("{deployment_part}{JOB_NAME_INFIX}{image_hash}")
}

/// RFC 1123 label: at most 63 of `[a-z0-9-]`, starting and ending alphanumeric.
pub fn is_dns1123_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    value.len() <= DNS1123_LABEL_MAX_LENGTH
        && bytes.first().is_some_and(is_lower_alphanumeric)
        && bytes.last().is_some_and(is_lower_alphanumeric)
        && bytes.iter().all(|b| is_lower_alphanumeric(b) || *b == b'-')
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns1123_subdomain(value: &str) -> bool {
    value.len() <= DNS1123_SUBDOMAIN_MAX_LENGTH && value.split('.').all(is_dns1123_label)
}

/// A label value: empty, or at most 63 of `[A-Za-z0-9_.-]` starting and
/// ending alphanumeric.
pub fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_qualified_name_part(value, LABEL_VALUE_MAX_LENGTH)
}

/// A label or annotation key: `[prefix/]name`, prefix a DNS-1123 subdomain,
/// name at most 63 of `[A-Za-z0-9_.-]` starting and ending alphanumeric.
pub fn is_qualified_name(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => {
            is_dns1123_subdomain(prefix) && is_qualified_name_part(name, QUALIFIED_NAME_MAX_LENGTH)
        }
        None => is_qualified_name_part(key, QUALIFIED_NAME_MAX_LENGTH),
    }
}

fn is_qualified_name_part(value: &str, max_length: usize) -> bool {
    let bytes = value.as_bytes();
    value.len() <= max_length
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_lower_alphanumeric(b: &u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const HASH: &str = "d568c927cb";

    #[test]
    fn short_deployment_name_is_kept_whole() {
        assert_eq!(job_name("shop", HASH), "shop-cache-buster-d568c927cb");
    }

    /// 39 characters of Deployment name + 24 of suffix = 63: not cut.
    #[test]
    fn name_of_exactly_63_is_not_cut() {
        let deployment = "a".repeat(39);
        let name = job_name(&deployment, HASH);
        assert_eq!(name.len(), 63);
        assert_eq!(name, format!("{deployment}-cache-buster-{HASH}"));
    }

    #[test]
    fn name_of_62_is_not_cut() {
        let deployment = "a".repeat(38);
        assert_eq!(job_name(&deployment, HASH).len(), 62);
        assert!(job_name(&deployment, HASH).starts_with(&deployment));
    }

    #[rstest]
    #[case::one_over(40)]
    #[case::far_over(200)]
    #[case::longest_deployment_name(253)]
    fn longer_names_are_cut_to_exactly_63(#[case] length: usize) {
        let deployment = "b".repeat(length);
        let name = job_name(&deployment, HASH);
        assert_eq!(name.len(), 63);
        assert_eq!(name, format!("{}-cache-buster-{HASH}", "b".repeat(39)));
        assert!(is_dns1123_subdomain(&name));
    }

    #[rstest]
    #[case::dash_at_cut(
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-b-long-tail",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    )]
    #[case::dot_at_cut(
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.b.example",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    )]
    #[case::dashes_and_dot_at_cut(
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.---zzzzzzz",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    )]
    fn trailing_separators_of_the_cut_part_are_dropped(
        #[case] deployment: &str,
        #[case] kept: &str,
    ) {
        let name = job_name(deployment, HASH);
        assert_eq!(name, format!("{kept}-cache-buster-{HASH}"));
        assert!(name.len() < 63);
        assert!(is_dns1123_subdomain(&name), "{name}");
    }

    #[rstest]
    #[case("shop", true)]
    #[case("shop.example", true)]
    #[case("a", true)]
    #[case("Shop", false)]
    #[case("-shop", false)]
    #[case("shop-", false)]
    #[case("shop..example", false)]
    #[case("", false)]
    #[case(&"a".repeat(254), false)]
    fn subdomains(#[case] value: &str, #[case] valid: bool) {
        assert_eq!(is_dns1123_subdomain(value), valid);
    }

    #[rstest]
    #[case("cache-buster.io/site", true)]
    #[case("site", true)]
    #[case("example.com/Site_Name", true)]
    #[case("/site", false)]
    #[case("cache-buster.io/", false)]
    #[case("Cache-Buster.io/site", false)]
    #[case("a/b/c", false)]
    fn qualified_names(#[case] key: &str, #[case] valid: bool) {
        assert_eq!(is_qualified_name(key), valid);
    }

    #[rstest]
    #[case("www", true)]
    #[case("Shop_Site.1", true)]
    #[case("", true)]
    #[case("-www", false)]
    #[case("w w", false)]
    #[case(&"a".repeat(64), false)]
    fn label_values(#[case] value: &str, #[case] valid: bool) {
        assert_eq!(is_label_value(value), valid);
    }
}
