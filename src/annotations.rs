//! SPEC §2: an annotation under `P/` that the policy neither reads nor
//! writes is refused, naming the nearest known one: a typo (`P/contnet`)
//! must not turn a feature off without a word.

use crate::error::{PolicyError, PolicyResult};
use crate::keys::{self, READ, WRITTEN};
use std::collections::BTreeMap;

/// The first annotation under `prefix/` that is not one of SPEC §2's or
/// §3.4's, refused.
pub fn refuse_unknown(prefix: &str, annotations: &BTreeMap<String, String>) -> PolicyResult<()> {
    let unknown = annotations.keys().find_map(|key| {
        let name = key.strip_prefix(prefix)?.strip_prefix('/')?;
        (!READ.contains(&name) && !WRITTEN.contains(&name)).then_some((key, name))
    });
    match unknown {
        None => Ok(()),
        Some((key, name)) => Err(unknown_annotation(prefix, key, name)),
    }
}

/// The refusal: the nearest known name (the fewest edits, the first of
/// SPEC §2's order on a tie), then every known one.
fn unknown_annotation(prefix: &str, key: &str, name: &str) -> PolicyError {
    let nearest = READ
        .iter()
        .min_by_key(|known| strsim::levenshtein(name, known))
        .copied()
        .unwrap_or_default();
    let mut expected = String::new();
    for known in READ {
        if !expected.is_empty() {
            expected.push_str(", ");
        }
        expected.push_str(&keys::prefixed(prefix, known));
    }
    PolicyError::UnknownAnnotation {
        key: key.to_owned(),
        nearest: keys::prefixed(prefix, nearest),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn annotations(keys: &[&str]) -> BTreeMap<String, String> {
        keys.iter()
            .map(|key| ((*key).to_owned(), "true".to_owned()))
            .collect()
    }

    #[test]
    fn the_annotations_the_policy_reads_and_writes_are_known() {
        let mut keys: Vec<String> = READ
            .iter()
            .chain(&WRITTEN)
            .map(|name| format!("cache-buster.io/{name}"))
            .collect();
        keys.push("fluxcd.io/automated".to_owned());
        keys.push("cache-buster.io.example/anything".to_owned());
        let annotations = keys.into_iter().map(|key| (key, String::new())).collect();
        assert_eq!(refuse_unknown("cache-buster.io", &annotations), Ok(()));
    }

    #[rstest]
    #[case("cache-buster.io/contnet", "cache-buster.io/content")]
    #[case("cache-buster.io/url", "cache-buster.io/urls")]
    #[case("cache-buster.io/dryrun", "cache-buster.io/dry-run")]
    #[case("cache-buster.io/providers", "cache-buster.io/provider")]
    #[case("cache-buster.io/warmup", "cache-buster.io/warm")]
    fn an_unknown_annotation_is_refused_naming_the_nearest(
        #[case] key: &str,
        #[case] nearest: &str,
    ) {
        let error = refuse_unknown("cache-buster.io", &annotations(&[key])).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "annotation {key} is not one the policy reads (did you mean {nearest}?); expected one of \
                 cache-buster.io/urls, cache-buster.io/prefixes, cache-buster.io/hosts, cache-buster.io/tags, \
                 cache-buster.io/everything, cache-buster.io/provider, cache-buster.io/http-service, \
                 cache-buster.io/secret, cache-buster.io/container, cache-buster.io/dry-run, \
                 cache-buster.io/content, cache-buster.io/warm"
            )
        );
    }

    #[test]
    fn the_prefix_is_the_settings() {
        let typo = annotations(&["cdn.example.com/contnet", "cache-buster.io/whatever"]);
        let error = refuse_unknown("cdn.example.com", &typo).unwrap_err();
        assert!(
            error.to_string().starts_with(
                "annotation cdn.example.com/contnet is not one the policy reads (did you mean cdn.example.com/content?)"
            ),
            "{error}"
        );
    }
}
