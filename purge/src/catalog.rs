//! What a provider is, as the policy and the program need to know it: the
//! shape of each row of the table in `providers`.

use crate::targets::Target;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    pub name: &'static str,
    /// The keys the credentials Secret holds for it, in the README's order.
    pub secret_keys: &'static [&'static str],
    /// Those of `secret_keys` it can do without.
    pub optional_keys: &'static [&'static str],
    /// The targets it has a request for (`Everything` included where it has).
    pub accepts: &'static [Target],
    /// Whether it purges with no target at all (the webhook is told anyway).
    pub needs_no_target: bool,
    /// Whether its purge reads the Kubernetes API (the caches behind a
    /// Service): the Job then gives the purge container the token.
    pub reads_the_api: bool,
    /// Whether its purge needs the uid of the Job it runs for (CloudFront's
    /// CallerReference): the Job's pod then gets it through the downward API.
    pub needs_job_uid: bool,
    /// How long the CDN may take to finish a purge it has accepted, which
    /// the purge waits for on top of its own budget (Front Door: up to 10
    /// minutes); 0 where the budget covers it.
    pub completion_seconds: i64,
    /// Labels and annotations the Job's pod needs for the provider's
    /// workload identity (AKS: its webhook acts on a labelled pod only).
    pub pod_labels: &'static [(&'static str, &'static str)],
    pub pod_annotations: &'static [(&'static str, &'static str)],
}

impl Info {
    /// The keys a purge cannot go without: the Secret keys not optional.
    pub fn required_secret_keys(&self) -> impl Iterator<Item = &'static str> {
        let optional = self.optional_keys;
        self.secret_keys
            .iter()
            .copied()
            .filter(move |key| !optional.contains(key))
    }
}

/// A target the provider cannot purge (the policy rejects it at admission;
/// a Job written by hand may still ask).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{provider} cannot purge {what}")]
pub struct Unsupported {
    pub provider: &'static str,
    pub what: &'static str,
}
