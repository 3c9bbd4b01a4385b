//! The cache-buster's real-cluster test harness (docs/development.md): a
//! control plane started from the real programs (see `tools`), the policy as
//! released behind Kubewarden's policy-server, and the launcher, on loopback
//! in a temporary directory. `tests/scenarios.rs` runs the scenarios on it.

pub mod aws;
pub mod azure;
pub mod caches;
pub mod cdn;
pub mod cluster;
pub mod container_setup;
pub mod ecr;
pub mod edgegrid;
pub mod google;
pub mod images;
pub mod jwt;
pub mod launcher_replicas;
pub mod node;
pub mod oci;
pub mod pki;
pub mod pod_status;
pub mod policy_server;
pub mod process;
pub mod recorded;
pub mod registry;
pub mod site_images;
pub mod sites;
pub mod tools;

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `probe` every 200 ms until it gives `Some`, or fails with `what`
/// after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if Instant::now() > deadline {
            return Err(match last_error {
                Some(error) => error.context(format!("{what}: not within {timeout:?}")),
                None => anyhow::anyhow!("{what}: not within {timeout:?}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
