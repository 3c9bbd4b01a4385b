//! SPEC §9: a cloud's registry read with the identity the Job already has
//! for its provider, where that works, as the kubelet's credential providers
//! do for nodes: Google's access token, from the Secret's service-account
//! key or GKE Workload Identity's metadata server, is the password of user
//! `oauth2accesstoken` at Artifact Registry (`*.pkg.dev`) and Container
//! Registry (`gcr.io`), for a site whose layers include `gcp`. A pull secret
//! for the registry comes first.

use crate::client::{Limits, Network};
use crate::google::GoogleEnvironment;
use oci_client::secrets::RegistryAuth;

/// The scope of a token that reads images (Artifact Registry and Container
/// Registry take it); the purge's own token keeps its compute scope.
pub const GOOGLE_REGISTRY_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform.read-only";
/// The user name Google's registries take an access token with.
const GOOGLE_TOKEN_USER: &str = "oauth2accesstoken";

/// A workload identity of the Job that a cloud's registries take.
#[derive(Debug, Clone)]
pub enum RegistryIdentity {
    /// The `gcp` layer's: its key (`GCP_SERVICE_ACCOUNT_KEY`), else the
    /// metadata server.
    Google {
        key_json: Option<String>,
        environment: GoogleEnvironment,
        limits: Limits,
    },
}

impl RegistryIdentity {
    /// Whether `host` (the registry's, without port) is one of this
    /// cloud's registries.
    pub fn serves(&self, host: &str) -> bool {
        match self {
            RegistryIdentity::Google { .. } => {
                host == "gcr.io" || host.ends_with(".gcr.io") || host.ends_with(".pkg.dev")
            }
        }
    }

    /// What the registry is asked with; the error says where the token was
    /// not found (never the token).
    pub async fn auth(&self, network: &Network) -> Result<RegistryAuth, String> {
        match self {
            RegistryIdentity::Google {
                key_json,
                environment,
                limits,
            } => crate::google::token(
                key_json.as_deref(),
                environment,
                GOOGLE_REGISTRY_SCOPE,
                *limits,
                network,
            )
            .await
            .map(|token| RegistryAuth::Basic(GOOGLE_TOKEN_USER.to_owned(), token))
            .map_err(|not_prepared| not_prepared.error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn googles_identity_serves_artifact_registry_and_container_registry_only() {
        let google = RegistryIdentity::Google {
            key_json: None,
            environment: GoogleEnvironment::default(),
            limits: Limits::default(),
        };
        for (host, served) in [
            ("europe-docker.pkg.dev", true),
            ("us-central1-docker.pkg.dev", true),
            ("gcr.io", true),
            ("eu.gcr.io", true),
            ("docker.io", false),
            ("ghcr.io", false),
            ("notgcr.io", false),
            ("pkg.dev.example.com", false),
            ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", false),
        ] {
            assert_eq!(google.serves(host), served, "{host}");
        }
    }
}
