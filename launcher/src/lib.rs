//! The cache-buster launcher: creates the companion Job the policy stamps on
//! each site Deployment, exactly once (SPEC §8).

pub mod cache;
pub mod cluster;
pub mod commands;
pub mod difference;
pub mod health;
pub mod leader;
pub mod metrics;
pub mod plan;
#[cfg(test)]
#[path = "../../src/readme.rs"]
mod readme;
pub mod reported;
pub mod rollout;
pub mod server;
pub mod settings_source;

/// Shared with the API tests in tests/.
#[cfg(test)]
#[path = "../tests/support/mod.rs"]
mod test_support;
