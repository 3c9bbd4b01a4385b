//! The cache-buster purge (SPEC §5): each CDN's requests behind one small
//! interface, and the one table of what each provider accepts.
//!
//! Without the `client` feature, only the names, the table and the
//! options: what the policy (WebAssembly) needs to check a Deployment and
//! write the Job's argv. With it, the program that plans, sends and waits.

// What the policy links (the crate without `client`) is held to the
// policy's own rule: nothing that request or settings data reach panics.
// `make lint` checks this build on its own (the workspace unifies `client`).
#![cfg_attr(
    all(not(feature = "client"), not(test)),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod argv;
pub mod catalog;
pub mod content;
pub mod flags;
pub mod options;
pub mod providers;
pub mod target_checks;
pub mod targets;

#[cfg(feature = "client")]
pub mod aws;
#[cfg(feature = "client")]
pub mod cdn;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub mod content_compare;
#[cfg(feature = "client")]
pub mod content_purge;
#[cfg(feature = "client")]
pub mod credentials;
#[cfg(feature = "client")]
pub mod edgegrid;
#[cfg(feature = "client")]
pub mod endpoints;
#[cfg(feature = "client")]
pub mod entra;
#[cfg(feature = "client")]
pub mod google;
#[cfg(feature = "client")]
pub mod image_diff;
#[cfg(feature = "client")]
pub mod layers;
#[cfg(feature = "client")]
pub mod not_prepared;
#[cfg(feature = "client")]
pub mod outcome;
#[cfg(feature = "client")]
pub mod previous;
#[cfg(feature = "client")]
pub mod redact;
#[cfg(feature = "client")]
pub mod registry;
#[cfg(feature = "client")]
pub mod registry_identity;
#[cfg(feature = "client")]
pub mod request;
#[cfg(feature = "client")]
pub mod run;
#[cfg(feature = "client")]
pub mod sigv4;
#[cfg(all(test, feature = "client"))]
mod testing;
#[cfg(feature = "client")]
pub mod xml;

pub use providers::Provider;
pub use targets::PurgeTargets;
