//! `cache-buster launcher`: watches labelled Deployments and creates each
//! stamped companion Job exactly once, then reports its outcome as Events
//! (SPEC §8). `run` is the process; `cluster` its reconcile.

pub mod cache;
pub mod cluster;
pub mod difference;
pub mod events;
pub mod health;
pub mod leader;
pub mod metrics;
pub mod plan;
pub mod reported;
pub mod run;
pub mod server;
pub mod settings_source;
