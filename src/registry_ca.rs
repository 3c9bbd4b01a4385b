//! SPEC §9: the setting `contentRegistryCA`, for registries whose TLS
//! certificate chains to a private CA (as kwctl's `sources.yml` names its
//! `source_authorities`): a ConfigMap's key in the site's namespace, such as
//! the one trust-manager or the cluster's operator writes into every
//! namespace. A content purge mounts it read-only and trusts it besides the
//! public roots; never a default.

use crate::names::is_dns1123_subdomain;
use cache_buster_purge::content::REGISTRY_CA_FILE;
use k8s_openapi::api::core::v1::{ConfigMapVolumeSource, KeyToPath, Volume};
use serde::{Deserialize, Serialize};

pub const REGISTRY_CA_VOLUME: &str = "registry-ca";
const DEFAULT_KEY: &str = "ca.crt";

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegistryCa {
    /// The ConfigMap, in the namespace of each content site.
    pub config_map: String,
    /// Its key that holds the PEM certificates.
    #[serde(default = "default_key")]
    pub key: String,
}

fn default_key() -> String {
    DEFAULT_KEY.to_owned()
}

/// The directory the file is mounted in, and the file's name in it.
fn mount_parts() -> (&'static str, &'static str) {
    REGISTRY_CA_FILE
        .rsplit_once('/')
        .unwrap_or((REGISTRY_CA_FILE, DEFAULT_KEY))
}

pub fn mount_path() -> &'static str {
    mount_parts().0
}

/// What is wrong with the setting, one message per field.
pub fn registry_ca_problems(ca: Option<&RegistryCa>) -> Vec<String> {
    let Some(ca) = ca else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    if !is_dns1123_subdomain(&ca.config_map) {
        problems.push(format!(
            "contentRegistryCA.configMap: {:?} is not a ConfigMap name; expected a DNS-1123 \
             subdomain such as registry-ca",
            ca.config_map
        ));
    }
    if !is_config_map_key(&ca.key) {
        problems.push(format!(
            "contentRegistryCA.key: {:?} is not a ConfigMap key; expected letters, digits, '-', \
             '_' or '.' (at most 253), such as ca.crt",
            ca.key
        ));
    }
    problems
}

/// Kubernetes' rule for a ConfigMap's keys (`IsConfigMapKey`).
fn is_config_map_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && !key.starts_with("..")
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
}

/// The volume with the key as the file the purge reads
/// (`--registry-ca-file`). Optional: a missing ConfigMap leaves no file, and
/// the purge says so and falls back, instead of a pod that never starts.
pub fn registry_ca_volume(ca: &RegistryCa) -> Volume {
    Volume {
        name: REGISTRY_CA_VOLUME.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: ca.config_map.clone(),
            items: Some(vec![KeyToPath {
                key: ca.key.clone(),
                path: mount_parts().1.to_owned(),
                ..KeyToPath::default()
            }]),
            optional: Some(true),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn ca(config_map: &str, key: &str) -> RegistryCa {
        RegistryCa {
            config_map: config_map.to_owned(),
            key: key.to_owned(),
        }
    }

    #[test]
    fn the_key_defaults_to_ca_crt_and_unknown_fields_are_refused() {
        let read: RegistryCa = serde_json::from_str(r#"{"configMap": "registry-ca"}"#).unwrap();
        assert_eq!(read, ca("registry-ca", "ca.crt"));
        let misspelt = serde_json::from_str::<RegistryCa>(r#"{"configmap": "registry-ca"}"#)
            .unwrap_err()
            .to_string();
        assert!(misspelt.contains("unknown field `configmap`"), "{misspelt}");
    }

    #[rstest]
    #[case::trust_manager_bundle("trust-bundle", "trust-bundle.pem", &[])]
    #[case::a_name_with_capitals("Registry-CA", "ca.crt", &[
        "contentRegistryCA.configMap: \"Registry-CA\" is not a ConfigMap name; expected a DNS-1123 subdomain such as registry-ca",
    ])]
    #[case::a_key_with_a_slash("registry-ca", "certs/ca.crt", &[
        "contentRegistryCA.key: \"certs/ca.crt\" is not a ConfigMap key; expected letters, digits, '-', '_' or '.' (at most 253), such as ca.crt",
    ])]
    #[case::a_key_of_dots("registry-ca", "..", &[
        "contentRegistryCA.key: \"..\" is not a ConfigMap key; expected letters, digits, '-', '_' or '.' (at most 253), such as ca.crt",
    ])]
    fn each_field_is_checked(
        #[case] config_map: &str,
        #[case] key: &str,
        #[case] expected: &[&str],
    ) {
        assert_eq!(registry_ca_problems(Some(&ca(config_map, key))), expected);
    }

    #[test]
    fn the_key_is_mounted_as_the_file_the_purge_reads() {
        let volume = registry_ca_volume(&ca("trust-bundle", "trust-bundle.pem"));
        let source = volume.config_map.unwrap();
        assert_eq!(source.name, "trust-bundle");
        assert_eq!(source.optional, Some(true));
        let item = source.items.unwrap().pop().unwrap();
        assert_eq!(item.key, "trust-bundle.pem");
        assert_eq!(format!("{}/{}", mount_path(), item.path), REGISTRY_CA_FILE);
    }
}
