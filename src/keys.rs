//! Every label and annotation name of the project, and the one place that
//! derives the prefixed forms (`P/<name>`, SPEC §2, §3.4, §4) from the
//! settings' prefix. A leaf: it depends on nothing in the crate, and no other
//! module spells a name.

/// `P` of SPEC: the default annotation prefix.
pub const DEFAULT_PREFIX: &str = "cache-buster.io";

/// `P/site`: the default site label of the Deployment, and the Job's label
/// with the site's name.
pub const SITE: &str = "site";

// SPEC §2: the Deployment's purge targets.
pub const URLS: &str = "urls";
pub const PREFIXES: &str = "prefixes";
pub const HOSTS: &str = "hosts";
pub const TAGS: &str = "tags";
pub const EVERYTHING: &str = "everything";

// SPEC §2: the rest of the per-Deployment configuration.
pub const PROVIDER: &str = "provider";
pub const SECRET: &str = "secret";
pub const CONTAINER: &str = "container";
/// `"true"`: the purge sends nothing and reports what it would have sent.
pub const DRY_RUN: &str = "dry-run";
/// Provider `http`: the cache Service, `<service>[:<port>]`.
pub const HTTP_SERVICE: &str = "http-service";
/// SPEC §9: `<dir>=<base URL>` pairs, the files to compare between images.
pub const CONTENT: &str = "content";
/// SPEC §9: `"true"`: fetch each purged URL once after the purge.
pub const WARM: &str = "warm";

/// SPEC §2: every annotation of the Deployment the policy reads, in the
/// README's order.
pub const READ: [&str; 12] = [
    URLS,
    PREFIXES,
    HOSTS,
    TAGS,
    EVERYTHING,
    PROVIDER,
    HTTP_SERVICE,
    SECRET,
    CONTAINER,
    DRY_RUN,
    CONTENT,
    WARM,
];

// SPEC §3.4: the three annotations the policy writes (the hash is also a
// label of the Job, SPEC §4).
pub const IMAGE_HASH: &str = "image-hash";
pub const JOB_NAME: &str = "job-name";
pub const JOB: &str = "job";
/// SPEC §3.4: the Job's own annotation saying which policy release and
/// settings stamped it (`fingerprint`), so that a reconcile that changes
/// nothing can be told from one that needs a new stamp without deriving it.
pub const STAMPED_BY: &str = "stamped-by";
/// SPEC §3.4: what the policy writes on the Deployment.
pub const WRITTEN: [&str; 3] = [IMAGE_HASH, JOB_NAME, JOB];

// SPEC §4: the Job's fixed labels, which also tell the launcher its Jobs.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
pub const LABEL_VALUE: &str = "cache-buster";

/// `P/<name>` for the prefix `prefix`.
pub fn prefixed(prefix: &str, name: &str) -> String {
    // Not `format!`: a stamp makes some twenty of these.
    [prefix, "/", name].concat()
}

/// The default site label, `cache-buster.io/site`.
pub fn default_site_label() -> String {
    prefixed(DEFAULT_PREFIX, SITE)
}

/// `managed-by=cache-buster`: the selector of every companion Job.
pub fn companion_selector() -> String {
    format!("{MANAGED_BY_LABEL}={LABEL_VALUE}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_as_spec_says() {
        assert_eq!(
            prefixed("cache-buster.io", JOB_NAME),
            "cache-buster.io/job-name"
        );
        assert_eq!(default_site_label(), "cache-buster.io/site");
        assert_eq!(
            companion_selector(),
            "app.kubernetes.io/managed-by=cache-buster"
        );
    }

    fn documented(header: &str) -> Vec<String> {
        crate::readme::table(header)
            .iter()
            .map(|row| crate::readme::unquoted(row[0].trim_start_matches("label ")).to_owned())
            .collect()
    }

    /// The README's two annotation tables name exactly the keys the policy
    /// reads and the three it writes, with the default prefix.
    #[test]
    fn the_readme_names_every_annotation() {
        let read: Vec<String> = std::iter::once(SITE)
            .chain(READ)
            .map(|name| prefixed(DEFAULT_PREFIX, name))
            .collect();
        assert_eq!(documented("| annotation | meaning |"), read);
        let written = WRITTEN.map(|name| prefixed(DEFAULT_PREFIX, name));
        assert_eq!(documented("| annotation | value |"), written);
    }
}
