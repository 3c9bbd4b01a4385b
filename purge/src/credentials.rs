//! The provider's credentials, from the Secret mounted as files (values
//! trimmed: a Secret made from a file keeps its newline). The Secret is
//! mounted `optional`, so that a missing Secret or key fails the purge at
//! once with a message naming them, instead of a pod left Pending.

use crate::catalog::Info;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    values: BTreeMap<String, String>,
    /// The Secret's name, for the messages.
    secret: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialsError {
    #[error(
        "the Secret {secret} is missing or empty (nothing is mounted at {dir}): \
         create it in the Deployment's namespace with the keys {keys}"
    )]
    NoSecret {
        secret: String,
        dir: String,
        keys: String,
    },
    #[error("the Secret {secret} has no key {key} ({provider} needs {keys})")]
    NoKey {
        secret: String,
        key: String,
        provider: &'static str,
        keys: String,
    },
    #[error("the Secret {secret}'s key {key} cannot be read: {error}")]
    Unreadable {
        secret: String,
        key: String,
        error: String,
    },
}

impl Credentials {
    /// Reads the keys of every layer's provider (its row of the table)
    /// from `dir`, where the Secret `secret` is mounted (one Secret holds
    /// them all, SPEC §5).
    pub fn read(
        providers: &[&Info],
        dir: &Path,
        secret: &str,
    ) -> Result<Credentials, CredentialsError> {
        let mut all_keys: Vec<&str> = Vec::new();
        for key in providers.iter().flat_map(|provider| provider.secret_keys) {
            if !all_keys.contains(key) {
                all_keys.push(key);
            }
        }
        // Providers without keys (http) need no Secret at all.
        if all_keys.is_empty() {
            return Ok(Credentials {
                secret: secret.to_owned(),
                ..Credentials::default()
            });
        }
        let mounted = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .any(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
            })
            .unwrap_or(false);
        if !mounted {
            return Err(CredentialsError::NoSecret {
                secret: secret.to_owned(),
                dir: dir.display().to_string(),
                keys: all_keys.join(", "),
            });
        }
        let mut values = BTreeMap::new();
        for key in all_keys {
            match std::fs::read_to_string(dir.join(key)) {
                Ok(text) => {
                    let value = text.trim();
                    if !value.is_empty() {
                        values.insert(key.to_owned(), value.to_owned());
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(CredentialsError::Unreadable {
                        secret: secret.to_owned(),
                        key: key.to_owned(),
                        error: error.to_string(),
                    });
                }
            }
        }
        for provider in providers {
            if let Some(key) = provider
                .required_secret_keys()
                .find(|key| !values.contains_key(*key))
            {
                return Err(CredentialsError::NoKey {
                    secret: secret.to_owned(),
                    key: key.to_owned(),
                    provider: provider.name,
                    keys: provider.secret_keys.join(", "),
                });
            }
        }
        Ok(Credentials {
            values,
            secret: secret.to_owned(),
        })
    }

    /// The Secret's name ("the Secret" when none was read: a dry run).
    pub fn secret_name(&self) -> String {
        match self.secret.is_empty() {
            true => "the Secret".to_owned(),
            false => format!("the Secret {}", self.secret),
        }
    }

    /// `<KEY>` for each key the providers require: what a dry run shows
    /// in place of the credentials it never reads.
    pub fn placeholders(providers: &[&Info]) -> Credentials {
        Credentials {
            values: providers
                .iter()
                .flat_map(|provider| provider.required_secret_keys())
                .map(|key| (key.to_owned(), format!("<{key}>")))
                .collect(),
            secret: String::new(),
        }
    }

    /// For the tests.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Credentials {
        Credentials {
            values: pairs
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            secret: "cache-buster-credentials".to_owned(),
        }
    }

    /// A required key (present after [`Credentials::read`]).
    pub fn value(&self, key: &str) -> &str {
        self.values.get(key).map_or("", String::as_str)
    }

    pub fn optional(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Every secret value, for redaction, and the parts of a secret URL that
    /// an answer may quote on their own: a receiver's stock 404 quotes the
    /// path (`Cannot POST /services/T0…/B0…/hK7w…`), another the query.
    /// Longest first.
    pub fn secrets(&self) -> Vec<&str> {
        let mut secrets: Vec<&str> = self
            .values
            .iter()
            .flat_map(|(key, value)| {
                // Only a URL-valued key (`WEBHOOK_URL`) has parts that are
                // secrets of their own: a JSON key's `https://www.googleapis.com/…`
                // is no secret, and hiding its host everywhere hides the
                // outcome's own words.
                let parts = match key.ends_with("_URL") {
                    true => url_parts(value),
                    false => Vec::new(),
                };
                std::iter::once(value.as_str()).chain(parts)
            })
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        secrets.dedup();
        secrets
    }
}

/// A part of a secret URL this long or longer is hidden on its own; a
/// shorter path segment (`/purge`, `/hooks`) names a route, not a secret.
const SECRET_URL_PART: usize = 8;

/// Of `value`, if it is a URL: its path with the query, its path, its query,
/// and each path segment and query value of `SECRET_URL_PART` characters or
/// more. Nothing for a bare root path.
fn url_parts(value: &str) -> Vec<&str> {
    let Some((_, after_scheme)) = value.split_once("://") else {
        return Vec::new();
    };
    let Some(slash) = after_scheme.find('/') else {
        return Vec::new();
    };
    let path_and_query = after_scheme[slash..].split('#').next().unwrap_or_default();
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut parts = Vec::new();
    if path.len() > 1 {
        parts.extend([path_and_query, path]);
    }
    if !query.is_empty() {
        parts.extend([path_and_query, query]);
    }
    let long_parts = path
        .split('/')
        .chain(
            query
                .split('&')
                .map(|pair| pair.split_once('=').map_or(pair, |(_, v)| v)),
        )
        .filter(|part| part.chars().count() >= SECRET_URL_PART);
    parts.extend(long_parts);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Provider;

    fn secret_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (key, value) in files {
            std::fs::write(dir.path().join(key), value).unwrap();
        }
        dir
    }

    #[test]
    fn values_are_trimmed() {
        let dir = secret_dir(&[
            ("CLOUDFLARE_ZONE_ID", "zone\n"),
            ("CLOUDFLARE_API_TOKEN", "  token \n"),
        ]);
        let credentials =
            Credentials::read(&[Provider::Cloudflare.info()], dir.path(), "cdn").unwrap();
        assert_eq!(credentials.value("CLOUDFLARE_ZONE_ID"), "zone");
        assert_eq!(credentials.value("CLOUDFLARE_API_TOKEN"), "token");
    }

    #[test]
    fn a_missing_key_names_the_secret_and_the_key() {
        let dir = secret_dir(&[("CLOUDFLARE_ZONE_ID", "zone")]);
        assert_eq!(
            Credentials::read(&[Provider::Cloudflare.info()], dir.path(), "cdn")
                .unwrap_err()
                .to_string(),
            "the Secret cdn has no key CLOUDFLARE_API_TOKEN (cloudflare needs CLOUDFLARE_ZONE_ID, CLOUDFLARE_API_TOKEN)"
        );
        // An empty value is as good as none.
        let dir = secret_dir(&[
            ("CLOUDFLARE_ZONE_ID", "zone"),
            ("CLOUDFLARE_API_TOKEN", "\n"),
        ]);
        assert!(matches!(
            Credentials::read(&[Provider::Cloudflare.info()], dir.path(), "cdn"),
            Err(CredentialsError::NoKey { .. })
        ));
    }

    #[test]
    fn a_missing_secret_is_named_with_the_keys_it_needs() {
        // An optional Secret volume whose Secret does not exist is an empty directory.
        let dir = secret_dir(&[]);
        let message = Credentials::read(
            &[Provider::Fastly.info()],
            dir.path(),
            "cache-buster-credentials",
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.starts_with("the Secret cache-buster-credentials is missing or empty"),
            "{message}"
        );
        assert!(
            message.ends_with("with the keys FASTLY_SERVICE_ID, FASTLY_API_TOKEN"),
            "{message}"
        );
    }

    /// Layers: one Secret holds the keys of every provider; a layer's
    /// missing key is named with that layer's provider.
    #[test]
    fn layers_read_every_providers_keys_from_one_secret() {
        let dir = secret_dir(&[
            ("CLOUDFLARE_ZONE_ID", "zone"),
            ("CLOUDFLARE_API_TOKEN", "token"),
            ("FASTLY_SERVICE_ID", "svc"),
        ]);
        let layers = [Provider::Http.info(), Provider::Cloudflare.info()];
        let credentials = Credentials::read(&layers, dir.path(), "cdn").unwrap();
        assert_eq!(credentials.value("CLOUDFLARE_API_TOKEN"), "token");
        assert_eq!(
            Credentials::read(
                &[Provider::Cloudflare.info(), Provider::Fastly.info()],
                dir.path(),
                "cdn"
            )
            .unwrap_err()
            .to_string(),
            "the Secret cdn has no key FASTLY_API_TOKEN (fastly needs FASTLY_SERVICE_ID, FASTLY_API_TOKEN)"
        );
        assert_eq!(
            Credentials::placeholders(&[Provider::Http.info(), Provider::Cloudflare.info()])
                .value("CLOUDFLARE_ZONE_ID"),
            "<CLOUDFLARE_ZONE_ID>"
        );
    }

    #[test]
    fn the_webhook_token_is_optional() {
        let dir = secret_dir(&[("WEBHOOK_URL", "https://hooks.example.test/x\n")]);
        let credentials =
            Credentials::read(&[Provider::Webhook.info()], dir.path(), "hook").unwrap();
        assert_eq!(credentials.optional("WEBHOOK_TOKEN"), None);
        assert_eq!(
            credentials.secrets(),
            ["https://hooks.example.test/x", "/x"]
        );
    }

    /// A webhook URL's path is its secret: an answer that quotes the path,
    /// a part of it or the query hides them all.
    #[test]
    fn a_secret_urls_path_query_and_long_parts_are_secrets_too() {
        let credentials = Credentials::from_pairs(&[(
            "WEBHOOK_URL",
            "https://hooks.example.test/services/T0AB12CD3/B0EF45GH6/hK7wXyZ0123456789abcdef?sig=Zm9vYmFyYmF6cXV4&v=1",
        )]);
        let secrets = credentials.secrets();
        for part in [
            "/services/T0AB12CD3/B0EF45GH6/hK7wXyZ0123456789abcdef?sig=Zm9vYmFyYmF6cXV4&v=1",
            "/services/T0AB12CD3/B0EF45GH6/hK7wXyZ0123456789abcdef",
            "sig=Zm9vYmFyYmF6cXV4&v=1",
            "T0AB12CD3",
            "hK7wXyZ0123456789abcdef",
            "Zm9vYmFyYmF6cXV4",
        ] {
            assert!(secrets.contains(&part), "{part} in {secrets:?}");
        }
        assert!(!secrets.contains(&"1"), "{secrets:?}");
        let answer = "Cannot POST /services/T0AB12CD3/B0EF45GH6/hK7wXyZ0123456789abcdef \
                      (unknown hook hK7wXyZ0123456789abcdef)";
        assert_eq!(
            crate::outcome::redact(answer, &secrets),
            "Cannot POST [redacted] (unknown hook [redacted])"
        );
        // A URL without a path, and a value that is no URL, have no parts.
        let plain = Credentials::from_pairs(&[("A", "https://hooks.example.test"), ("B", "token")]);
        assert_eq!(plain.secrets(), ["https://hooks.example.test", "token"]);
        // Only a URL-valued key has parts: a JSON key's URLs are not split,
        // so `www.googleapis.com` is no "secret" hidden from every outcome.
        let key = r#"{"client_x509_cert_url":"https://www.googleapis.com/robot/v1/metadata/x509/purger%40shop-project.iam.gserviceaccount.com"}"#;
        let google = Credentials::from_pairs(&[("GCP_SERVICE_ACCOUNT_KEY", key)]);
        assert_eq!(google.secrets(), [key]);
    }
}
