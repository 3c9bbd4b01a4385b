//! Every reason the policy rejects a request. The `Display` text is the
//! rejection message the user sees: what is wrong, where, and what is expected.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read the admission request: {0}")]
    UnreadableRequest(String),

    #[error("cannot read the policy settings: {0}")]
    UnreadableSettings(String),

    #[error("request.object is not a valid apps/v1 Deployment: {0}")]
    UnreadableDeployment(String),

    #[error("{field}: {value:?} {problem}; expected {expected}")]
    InvalidField {
        field: String,
        value: String,
        problem: String,
        expected: String,
    },

    #[error("annotation {key}: {value:?} {problem}; expected {expected}")]
    InvalidAnnotation {
        key: String,
        value: String,
        problem: String,
        expected: String,
    },

    #[error(
        "annotation {key} is not one the policy reads (did you mean {nearest}?); expected one of {expected}"
    )]
    UnknownAnnotation {
        key: String,
        nearest: String,
        expected: String,
    },

    #[error(
        "Deployment {deployment} has no purge target for provider {provider}; expected at least one of the annotations {expected}"
    )]
    NoPurgeTarget {
        deployment: String,
        provider: String,
        expected: String,
    },

    #[error(
        "annotation {key}: provider {provider} cannot purge by {target}; expected only {expected} with this provider"
    )]
    UnsupportedTarget {
        key: String,
        provider: String,
        target: String,
        expected: String,
    },

    #[error(
        "annotation {key}: provider {provider} cannot purge everything; expected only {expected} with this provider"
    )]
    NoPurgeEverything {
        key: String,
        provider: String,
        expected: String,
    },

    #[error(
        "annotation {key} is missing: provider {provider} purges the caches behind a Service; expected {expected}"
    )]
    MissingAnnotation {
        key: String,
        provider: String,
        expected: String,
    },

    #[error("cannot build the companion Job: {0}")]
    JobSerialization(String),
}

pub type PolicyResult<T> = Result<T, PolicyError>;
