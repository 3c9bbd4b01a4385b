//! `kwrun bench`: the figures `kwctl bench` gives, for one request on one
//! instantiated module, measured after a warm-up.

use crate::host::{Limits, LoadedPolicy};
use crate::request::{AdmissionRequest, validate_payload};
use anyhow::{Result, bail};
use serde::Serialize;
use serde_json::Value;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct BenchConfig {
    pub warm_up: Duration,
    pub measurement: Duration,
    /// Upper bound on the samples kept per measurement.
    pub max_samples: usize,
}

/// Statistics of one measured operation, in nanoseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stats {
    pub samples: usize,
    pub mean_ns: f64,
    pub median_ns: u64,
    pub p99_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    pub per_second: f64,
}

impl Stats {
    pub fn from_samples(mut samples: Vec<u64>) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let count = samples.len();
        let total: u64 = samples.iter().sum();
        let mean_ns = total as f64 / count as f64;
        // Nearest rank: the smallest sample with at least 99 % at or below it.
        let p99_index = (count * 99).div_ceil(100).saturating_sub(1);
        Some(Stats {
            samples: count,
            mean_ns,
            median_ns: samples[count / 2],
            p99_ns: samples[p99_index.min(count - 1)],
            min_ns: samples[0],
            max_ns: samples[count - 1],
            per_second: 1e9 / mean_ns,
        })
    }
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub policy: String,
    pub module_bytes: u64,
    pub request: String,
    /// Compiling the module (what policy-server does once at start).
    pub load_ms: f64,
    /// Instantiating it and running `wapc_init` (once per worker).
    pub instantiate_ms: f64,
    pub validate_settings: Stats,
    /// The waPC `validate` call alone: what the policy costs.
    pub validate: Stats,
    /// As `kwctl bench` measures: payload serialisation, the call, decoding
    /// the answer and computing the JSON Patch.
    pub evaluation: Stats,
    pub outcome: String,
}

fn measure(config: &BenchConfig, mut operation: impl FnMut() -> Result<()>) -> Result<Stats> {
    let warm_up_end = Instant::now() + config.warm_up;
    while Instant::now() < warm_up_end {
        operation()?;
    }
    let mut samples = Vec::with_capacity(config.max_samples.min(1 << 20));
    let end = Instant::now() + config.measurement;
    while samples.len() < config.max_samples && (samples.is_empty() || Instant::now() < end) {
        let started = Instant::now();
        operation()?;
        samples.push(started.elapsed().as_nanos() as u64);
    }
    match Stats::from_samples(samples) {
        Some(stats) => Ok(stats),
        None => bail!("no sample was taken: give a positive --measurement-time"),
    }
}

pub fn bench(
    policy_uri: &str,
    request_path: &str,
    request: &AdmissionRequest,
    settings: &Value,
    limits: Limits,
    config: &BenchConfig,
) -> Result<BenchReport> {
    let loaded = LoadedPolicy::load(policy_uri)?;
    let module_bytes =
        std::fs::metadata(policy_uri.strip_prefix("file://").unwrap_or(policy_uri))?.len();
    let started = Instant::now();
    let policy = loaded.instantiate(limits)?;
    let instantiate = started.elapsed();
    policy.protocol_version()?;

    let settings_answer = policy.validate_settings(settings);
    if !settings_answer.valid {
        bail!(
            "provided settings are not valid: {:?}",
            settings_answer.message.unwrap_or_default()
        );
    }
    let settings_payload = settings.to_string();
    let validate_settings = measure(config, || {
        policy
            .call("validate_settings", settings_payload.as_bytes())
            .map(drop)
    })?;

    let payload = validate_payload(request, settings)?;
    let validate = measure(config, || policy.call("validate", &payload).map(drop))?;
    let evaluation = measure(config, || {
        std::hint::black_box(policy.validate(request, settings));
        Ok(())
    })?;

    let response = policy.validate(request, settings);
    let outcome = match (response.allowed, response.patch.is_some()) {
        (true, true) => "accepted with a patch",
        (true, false) => "accepted without patch",
        (false, _) => "rejected",
    };
    Ok(BenchReport {
        policy: policy_uri.to_owned(),
        module_bytes,
        request: request_path.to_owned(),
        load_ms: loaded.load_time.as_secs_f64() * 1e3,
        instantiate_ms: instantiate.as_secs_f64() * 1e3,
        validate_settings,
        validate,
        evaluation,
        outcome: outcome.to_owned(),
    })
}

fn micros(ns: f64) -> String {
    format!("{:.1} µs", ns / 1e3)
}

pub fn render(report: &BenchReport) -> String {
    let row = |name: &str, stats: &Stats| {
        format!(
            "{name:<18} {:>10} {:>10} {:>10} {:>10} {:>12.0} {:>9}\n",
            micros(stats.mean_ns),
            micros(stats.median_ns as f64),
            micros(stats.p99_ns as f64),
            micros(stats.min_ns as f64),
            stats.per_second,
            stats.samples
        )
    };
    let mut text = format!(
        "policy             {} ({} bytes)\nrequest            {} ({})\nmodule load        {:.1} ms (compile)\ninstantiate        {:.2} ms (wapc_init)\n\n",
        report.policy,
        report.module_bytes,
        report.request,
        report.outcome,
        report.load_ms,
        report.instantiate_ms
    );
    text.push_str(&format!(
        "{:<18} {:>10} {:>10} {:>10} {:>10} {:>12} {:>9}\n",
        "operation", "mean", "median", "p99", "min", "per second", "samples"
    ));
    text.push_str(&row("validate_settings", &report.validate_settings));
    text.push_str(&row("validate (call)", &report.validate));
    text.push_str(&row("evaluation", &report.evaluation));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_of_known_samples() {
        let stats = Stats::from_samples((1..=100).rev().collect()).unwrap();
        assert_eq!(stats.samples, 100);
        assert_eq!(stats.median_ns, 51);
        assert_eq!(stats.p99_ns, 99);
        assert_eq!((stats.min_ns, stats.max_ns), (1, 100));
        assert!((stats.mean_ns - 50.5).abs() < 1e-9);
        assert!((stats.per_second - 1e9 / 50.5).abs() < 1e-3);
    }

    #[test]
    fn one_sample_is_every_statistic() {
        let stats = Stats::from_samples(vec![7]).unwrap();
        assert_eq!(
            (stats.median_ns, stats.p99_ns, stats.min_ns, stats.max_ns),
            (7, 7, 7, 7)
        );
        assert_eq!(Stats::from_samples(vec![]), None);
    }
}
