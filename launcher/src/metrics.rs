//! Prometheus counters of what the launcher did.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

#[derive(Default, Clone)]
pub struct Metrics {
    pub jobs_created: Counter,
    pub jobs_already_present: Counter,
    pub jobs_refused: Counter,
    pub jobs_pruned: Counter,
    pub errors: Counter,
}

impl Metrics {
    pub fn registry(&self) -> Registry {
        let mut registry = Registry::with_prefix("cache_buster_launcher");
        registry.register(
            "jobs_created",
            "Companion Jobs created",
            self.jobs_created.clone(),
        );
        registry.register(
            "jobs_already_present",
            "Stamped Jobs found already created (running or finished)",
            self.jobs_already_present.clone(),
        );
        registry.register(
            "jobs_refused",
            "Stamped Jobs not created because they do not match what the policy derives",
            self.jobs_refused.clone(),
        );
        registry.register(
            "jobs_pruned",
            "Finished companion Jobs deleted beyond the history limit",
            self.jobs_pruned.clone(),
        );
        registry.register(
            "errors",
            "Reconciliations that failed and will be retried",
            self.errors.clone(),
        );
        registry
    }
}

pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut text, registry);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_exposed_in_the_prometheus_text_format() {
        let metrics = Metrics::default();
        metrics.jobs_created.inc();
        metrics.jobs_refused.inc_by(2);
        let text = render(&metrics.registry());
        assert!(
            text.contains("# TYPE cache_buster_launcher_jobs_created counter"),
            "{text}"
        );
        assert!(
            text.contains("cache_buster_launcher_jobs_created_total 1"),
            "{text}"
        );
        assert!(
            text.contains("cache_buster_launcher_jobs_refused_total 2"),
            "{text}"
        );
        assert!(
            text.contains("cache_buster_launcher_errors_total 0"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
