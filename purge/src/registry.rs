//! SPEC §9: the two images of a content purge, read from their registry
//! through oci-client (the OCI distribution API, its auth challenges, image
//! indexes resolved to the platform the purge runs on). Anonymous, or with
//! the Deployment's image pull secrets (docker config JSON files) mounted
//! read-only. A registry reached over plain HTTP is named by a setting
//! (`--insecure-registry`), as kwctl's `sources.yml` names one: never a
//! default. A layer is read as it downloads: the Job's memory never holds
//! one whole.

use crate::client::Network;
use crate::layers::{Compression, LayerChanges, LayerError, read_layer};
use crate::outcome::redact;
use crate::registry_identity::RegistryIdentity;
use base64::Engine as _;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Why an image could not be read. Never a credential: each message is
/// redacted of the pull secrets' passwords before it is shown.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0:?} is not an image reference")]
    Reference(String),
    #[error("the registry client cannot start: {0}")]
    Client(String),
    #[error(
        "the registries' CA file {file} (setting contentRegistryCA) {problem}; expected PEM \
         certificates, the ConfigMap's key mounted there"
    )]
    Authority { file: String, problem: String },
    #[error("the manifest of {reference} cannot be read: {problem}")]
    Manifest { reference: String, problem: String },
    #[error("layer {digest} of {reference} cannot be read: {problem}")]
    Layer {
        reference: String,
        digest: String,
        problem: String,
    },
    #[error("layer {digest} of {reference} is {media_type}, which is not a tar or gzip layer")]
    LayerType {
        reference: String,
        digest: String,
        media_type: String,
    },
    #[error("layer {digest} of {reference}: {error}")]
    Content {
        reference: String,
        digest: String,
        error: LayerError,
    },
}

/// One image as its registry describes it, for this platform.
#[derive(Debug, Clone)]
pub struct RegistryImage {
    /// Where it is read (a test's registry address, where aliased).
    pub reference: Reference,
    /// The registry the image names.
    pub registry: String,
    /// The digest of the image's manifest (of this platform's, for an index).
    pub digest: String,
    pub layers: Vec<OciDescriptor>,
}

impl RegistryImage {
    /// `registry/repository@sha256:…`: the image, named by its digest.
    pub fn pinned(&self) -> String {
        format!(
            "{}/{}@{}",
            self.registry,
            self.reference.repository(),
            self.digest
        )
    }
}

/// A docker config JSON (`.dockerconfigjson`): the credentials by registry.
#[derive(Debug, Default, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Debug, Default, Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl DockerAuth {
    fn user_and_password(&self) -> Option<(String, String)> {
        if let (Some(user), Some(password)) = (&self.username, &self.password) {
            return Some((user.clone(), password.clone()));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(self.auth.as_deref()?.trim())
            .ok()?;
        let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
        Some((user.to_owned(), password.to_owned()))
    }
}

/// The host a docker config names a registry by: `https://index.docker.io/v1/`
/// is Docker Hub's, as `docker login` writes it.
fn config_host(key: &str) -> &str {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io",
        host => host,
    }
}

/// An error and the causes its text leaves out: reqwest says "error sending
/// request for url (…)", and only its source says that the certificate's
/// issuer is unknown.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text = format!("{text}: {said}");
        }
        source = cause.source();
    }
    text
}

/// The private CA's certificates: a file that holds at least one PEM
/// certificate. A ConfigMap that is missing (its volume is optional) leaves
/// no file, and the purge says so instead of failing every TLS handshake.
fn read_authority(file: &Path) -> Result<Vec<u8>, RegistryError> {
    let failed = |problem: String| RegistryError::Authority {
        file: file.display().to_string(),
        problem,
    };
    let pem = std::fs::read(file).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => failed("is missing: is the ConfigMap there?".to_owned()),
        _ => failed(format!("cannot be read: {error}")),
    })?;
    use rustls::pki_types::{CertificateDer, pem::PemObject as _};
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| failed(format!("is not PEM: {error}")))?;
    match certificates.is_empty() {
        true => Err(failed("holds no certificate".to_owned())),
        false => Ok(pem),
    }
}

/// The registries of a content purge: one client, and the credentials of
/// the pull secrets by registry host.
pub struct Registries {
    client: Client,
    credentials: BTreeMap<String, (String, String)>,
    identities: Vec<RegistryIdentity>,
    tokens: std::sync::Mutex<BTreeMap<String, RegistryAuth>>,
    network: Network,
}

impl Registries {
    /// `insecure`: the registries reached over plain HTTP. `authority`: a
    /// file of PEM certificates trusted besides the public roots, for
    /// registries with a private CA. `pull_secrets`: a directory of docker
    /// config JSON files (absent: anonymous only). `identities`: the Job's
    /// workload identities, for their clouds' registries without a pull
    /// secret. `network`: the tests' CA, trusted besides the public roots,
    /// and their registries' addresses.
    pub fn new(
        insecure: &[String],
        authority: Option<&Path>,
        pull_secrets: Option<&Path>,
        identities: Vec<RegistryIdentity>,
        network: &Network,
        timeout: Duration,
    ) -> Result<Registries, RegistryError> {
        // reqwest without a provider: ring, as the rest of the program. A
        // provider installed already is the same one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|certificate| Certificate {
                encoding: CertificateEncoding::Der,
                data: certificate.to_vec(),
            })
            .collect();
        let config = ClientConfig {
            protocol: match insecure {
                [] => ClientProtocol::Https,
                hosts => ClientProtocol::HttpsExcept(hosts.to_vec()),
            },
            tls_certs_only: roots,
            extra_root_certificates: network
                .extra_roots_pem
                .iter()
                .cloned()
                .chain(authority.map(read_authority).transpose()?)
                .map(|pem| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: pem,
                })
                .collect(),
            read_timeout: Some(timeout),
            connect_timeout: Some(timeout),
            user_agent: concat!("cache-buster/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let client =
            Client::try_from(config).map_err(|error| RegistryError::Client(error.to_string()))?;
        Ok(Registries {
            client,
            credentials: pull_secrets.map(read_pull_secrets).unwrap_or_default(),
            identities,
            tokens: std::sync::Mutex::default(),
            network: network.clone(),
        })
    }

    /// A pull secret for the registry, else the Job's identity for its
    /// cloud, else anonymous.
    async fn auth(&self, registry: &str) -> Result<RegistryAuth, String> {
        if let Some((user, password)) = self.credentials.get(config_host(registry)) {
            return Ok(RegistryAuth::Basic(user.clone(), password.clone()));
        }
        let host = registry.split(':').next().unwrap_or(registry);
        let Some(identity) = self
            .identities
            .iter()
            .find(|identity| identity.serves(host))
        else {
            return Ok(RegistryAuth::Anonymous);
        };
        // Both images are usually in one registry: one token serves both.
        if let Some(known) = self.lock_tokens().get(registry) {
            return Ok(known.clone());
        }
        let auth = identity.auth(host, &self.network).await.map_err(|error| {
            format!("{registry} has no pull secret, and the Job's identity gave no token: {error}")
        })?;
        self.lock_tokens().insert(registry.to_owned(), auth.clone());
        Ok(auth)
    }

    /// The identities' tokens by registry (never held across an await).
    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RegistryAuth>> {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The image where it is read: at its test address, where aliased.
    fn located(&self, image: &str) -> String {
        self.network
            .registry_aliases
            .iter()
            .find_map(|(name, address)| {
                image
                    .strip_prefix(name.as_str())
                    .filter(|rest| rest.starts_with('/'))
                    .map(|rest| [address.as_str(), rest].concat())
            })
            .unwrap_or_else(|| image.to_owned())
    }

    fn redacted(&self, text: String) -> String {
        let secrets: Vec<&str> = self
            .credentials
            .values()
            .map(|(_, password)| password.as_str())
            .collect();
        redact(&text, &secrets)
    }

    /// The image's manifest, for this platform where it is an index.
    pub async fn image(&self, image: &str) -> Result<RegistryImage, RegistryError> {
        let parse = |image: &str| {
            image
                .parse::<Reference>()
                .map_err(|_| RegistryError::Reference(image.to_owned()))
        };
        let named = parse(image)?;
        let reference = parse(&self.located(image))?;
        let unread = |problem: String| RegistryError::Manifest {
            reference: image.to_owned(),
            problem: self.redacted(problem),
        };
        let auth = self.auth(named.resolve_registry()).await.map_err(unread)?;
        let (manifest, digest) = self
            .client
            .pull_image_manifest(&reference, &auth)
            .await
            .map_err(|error| unread(with_causes(&error)))?;
        Ok(RegistryImage {
            reference,
            registry: named.registry().to_owned(),
            digest,
            layers: manifest.layers,
        })
    }

    /// Reads one layer as it downloads, keeping what `wanted` selects.
    pub async fn read_layer(
        &self,
        image: &RegistryImage,
        layer: &OciDescriptor,
        wanted: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    ) -> Result<LayerChanges, RegistryError> {
        let reference = image.reference.whole();
        let compression =
            compression_of(&layer.media_type).ok_or_else(|| RegistryError::LayerType {
                reference: reference.clone(),
                digest: layer.digest.clone(),
                media_type: layer.media_type.clone(),
            })?;
        let failed = |problem: String| RegistryError::Layer {
            reference: reference.clone(),
            digest: layer.digest.clone(),
            problem: self.redacted(problem),
        };
        let blob = self
            .client
            .pull_blob_stream(&image.reference, layer)
            .await
            .map_err(|error| failed(with_causes(&error)))?;
        let reader =
            tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(blob.stream));
        let read = tokio::task::spawn_blocking(move || {
            read_layer(reader, compression, &|path: &str| wanted(path))
        })
        .await
        .map_err(|error| failed(error.to_string()))?;
        read.map_err(|error| RegistryError::Content {
            reference: reference.clone(),
            digest: layer.digest.clone(),
            error,
        })
    }
}

/// A layer's compression from its media type (OCI and Docker's).
fn compression_of(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
        _ => None,
    }
}

/// The credentials of every docker config JSON file in `dir`, by registry
/// host. A file that is not one is skipped: that registry is read
/// anonymously, and its refusal says so.
fn read_pull_secrets(dir: &Path) -> BTreeMap<String, (String, String)> {
    let mut credentials = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return credentials;
    };
    let mut files: Vec<_> = entries.flatten().map(|entry| entry.path()).collect();
    // In name order: the first secret naming a registry wins, as the
    // kubelet tries a pod's pull secrets in order.
    files.sort();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let Ok(config) = serde_json::from_str::<DockerConfig>(&text) else {
            continue;
        };
        for (key, auth) in config.auths {
            if let Some(pair) = auth.user_and_password() {
                credentials
                    .entry(config_host(&key).to_owned())
                    .or_insert(pair);
            }
        }
    }
    credentials
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
