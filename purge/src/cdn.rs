//! The one small interface every provider's module implements: what it
//! looks up first, the requests it plans, what it waits for. What it
//! accepts and which Secret keys it reads are its row of the table
//! (`providers::Provider::info`).

use crate::aws::AwsEnvironment;
use crate::client::{Limits, Network};
use crate::credentials::Credentials;
use crate::flags::JobContext;
pub use crate::not_prepared::NotPrepared;
use crate::registry_identity::RegistryIdentity;
use crate::request::{Header, PlannedRequest, bearer};
use crate::sigv4::SigV4;
use crate::targets::PurgeTargets;
use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

/// Everything from the argv besides the targets, the layers and the
/// Secret, and what the pod's environment says: each provider reads its own.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Each provider's own flags (argv.rs), which it asks for by type.
    pub flags: FlagSet,
    /// What the Job knows of its Deployment.
    pub context: JobContext,
    /// Where the pod's AWS identity is (provider cloudfront).
    pub aws: AwsEnvironment,
    /// Where the pod's Google identity is (provider gcp).
    pub google: crate::google::GoogleEnvironment,
    /// Where the pod's Azure identity is (provider azure).
    pub azure: crate::entra::AzureEnvironment,
    /// The uid of the Job this pod runs for (the downward API's
    /// `batch.kubernetes.io/controller-uid` label): one per run of a Job.
    pub job_uid: String,
    pub limits: Limits,
    pub network: Network,
}

/// Each layer's own flags, held by their type: a provider asks for its
/// own `Flags` and knows no other provider's. (The registry's
/// `ProviderFlags` names every provider; holding it here would make this
/// interface, which every provider implements, depend on all of them.)
#[derive(Clone, Default)]
pub struct FlagSet(Vec<std::sync::Arc<dyn std::any::Any + Send + Sync>>);

impl FlagSet {
    pub fn with(mut self, flags: impl std::any::Any + Send + Sync) -> FlagSet {
        self.0.push(std::sync::Arc::new(flags));
        self
    }

    /// The flags of this type, or their defaults when the argv had none.
    pub fn get<F: std::any::Any + Default + Clone>(&self) -> F {
        self.0
            .iter()
            .find_map(|flags| flags.downcast_ref::<F>())
            .cloned()
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for FlagSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FlagSet({} providers)", self.0.len())
    }
}

/// What a provider found before planning: the caches behind a Service,
/// a signer from the pod's identity, and the secrets that came with it.
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub endpoints: Vec<SocketAddr>,
    pub sigv4: Option<SigV4>,
    /// An OAuth2 access token (providers gcp and azure).
    pub bearer: Option<String>,
    /// Values to redact that are not in the Secret (a session token).
    pub secrets: Vec<String>,
}

impl Found {
    /// An OAuth2 access token, and the secrets met on the way to it (a
    /// federated token): all of them redacted from the outcome.
    pub fn with_bearer(token: String, mut secrets: Vec<String>) -> Found {
        secrets.push(token.clone());
        Found {
            bearer: Some(token),
            secrets,
            ..Found::default()
        }
    }

    /// The token's `Authorization` header (gcp, azure).
    pub fn bearer_header(&self) -> Header {
        bearer(self.bearer.as_deref().unwrap_or_default())
    }

    /// What a dry run plans with in place of the token it never asks for.
    pub fn placeholder_bearer(what: &str) -> Found {
        Found {
            bearer: Some(format!("<{what}>")),
            ..Found::default()
        }
    }
}

/// One layer's purge, as a provider plans it.
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
    pub targets: &'a PurgeTargets,
    pub credentials: &'a Credentials,
    pub options: &'a Options,
    pub found: &'a Found,
}

/// How the purge learns that an accepted purge is done: `poll` is asked
/// every `interval` (or as its answer's `Retry-After` says) until
/// `status` reads `done` in its answer.
#[derive(Debug, Clone)]
pub struct Completion {
    pub poll: PlannedRequest,
    pub status: fn(&str) -> Option<Cow<'_, str>>,
    pub done: &'static str,
    /// Why the purge failed after all, read from any answer (Google's
    /// Operation `DONE` with an `error`, Azure's operation `Failed`); None
    /// while it runs and when it succeeded.
    pub failed: fn(&str) -> Option<String>,
    pub interval: Duration,
    /// What the id names, for the message ("invalidation").
    pub what: &'static str,
    /// What the CDN does when the budget ends first, for the message.
    pub after_budget: &'static str,
}

/// The top-level `"status"` of a JSON answer (Google's Operation, ARM's
/// operation); a nested `status` (an error's) is not it.
pub fn top_level_status(answer: &str) -> Option<Cow<'_, str>> {
    #[derive(serde::Deserialize)]
    struct Operation<'a> {
        #[serde(borrow)]
        status: Option<Cow<'a, str>>,
    }
    serde_json::from_str::<Operation>(answer).ok()?.status
}

/// An object with an `id` (Cloudflare's `result`, a webhook's answer).
#[derive(serde::Deserialize)]
pub struct WithId {
    pub id: Option<String>,
}

/// The top-level `"id"` of a JSON answer, if it is text.
pub fn top_level_id(answer: &str) -> Vec<String> {
    serde_json::from_str::<WithId>(answer)
        .ok()
        .and_then(|answer| answer.id)
        .into_iter()
        .collect()
}

pub type Preparing<'a> = Pin<Box<dyn Future<Output = Result<Found, NotPrepared>> + Send + 'a>>;

pub trait Cdn: Sync {
    /// Looks up what the plan needs besides the Secret. A dry run (no
    /// credential read) looks up only what reads no credential.
    fn prepare<'a>(
        &'a self,
        _options: &'a Options,
        _credentials: &'a Credentials,
        _dry_run: bool,
    ) -> Preparing<'a> {
        Box::pin(std::future::ready(Ok(Found::default())))
    }

    /// The requests, in the order SPEC §5 gives, for targets the provider
    /// accepts. Pure: the same layer, the same requests.
    fn plan(&self, layer: &Layer<'_>) -> Vec<PlannedRequest>;

    /// After its requests: how to wait until the purge with this id is done.
    fn completion(&self, _layer: &Layer<'_>, _id: &str) -> Option<Completion> {
        None
    }

    /// The ids of the purges an accepting answer started, as the CDN
    /// writes them: reported in the outcome and asked about by
    /// `completion`. A CDN that answers an id in a header (`id_header`)
    /// or none at all keeps the default.
    fn purge_ids(&self, _answer: &str) -> Vec<String> {
        Vec::new()
    }

    /// The identity the layer's credentials give, where its cloud's
    /// registries take it too: a content purge reads its images with it
    /// (SPEC §9). Most CDNs are no registry's cloud.
    fn registry_identity(
        &self,
        _options: &Options,
        _credentials: &Credentials,
    ) -> Option<RegistryIdentity> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::{top_level_id, top_level_status};

    #[test]
    fn the_status_read_is_the_operations_own_not_a_nested_one() {
        let answer = r#"{"error":{"errors":[{"status":"PERMISSION_DENIED"}]},"status":"DONE"}"#;
        assert_eq!(top_level_status(answer).as_deref(), Some("DONE"));
        assert_eq!(top_level_status(r#"{"error":{"status":"X"}}"#), None);
        assert_eq!(top_level_status("<html>busy</html>"), None);
    }

    #[test]
    fn the_id_read_is_the_answers_own_text() {
        assert_eq!(top_level_id(r#"{"result":{"id":"a"},"id":"b"}"#), ["b"]);
        assert!(top_level_id(r#"{"result":{"id":"a"}}"#).is_empty());
        assert!(top_level_id(r#"{"id":7}"#).is_empty());
        assert!(top_level_id("accepted").is_empty());
    }
}
