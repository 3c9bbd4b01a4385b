//! What a provider's preparation ends in when it finds nothing to purge
//! with: the identity modules (aws, google, entra) and the providers share it.

/// Why a provider has nothing to purge with: no credential at all, or an
/// identity provider's refusal (`status`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotPrepared {
    pub error: String,
    /// The identity provider's status, when it answered with an error: a
    /// 4xx refusal of the credential fails the Job at once, as the CDN's.
    pub status: Option<u16>,
    /// Nothing to ask with: no retry of the pod can mend it.
    pub for_good: bool,
}

impl From<String> for NotPrepared {
    fn from(error: String) -> NotPrepared {
        NotPrepared {
            error,
            ..NotPrepared::default()
        }
    }
}
