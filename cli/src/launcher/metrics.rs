//! Prometheus metrics of what the launcher did and what the purges did
//! (README, "The launcher": each is listed there, and a test keeps the list
//! true).

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::fmt::Write as _;

/// A purge's result, as a label value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum PurgeResult {
    Succeeded,
    Failed,
}

impl EncodeLabelValue for PurgeResult {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            PurgeResult::Succeeded => "succeeded",
            PurgeResult::Failed => "failed",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PurgeLabels {
    pub provider: String,
    pub result: PurgeResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub namespace: String,
}

/// Seconds from a companion Job's creation to its completion: the two waits
/// (image stamped, rollout done) and the purge itself.
const PURGE_DURATION_BUCKETS: [f64; 11] = [
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
];

fn purge_duration_histogram() -> Histogram {
    Histogram::new(PURGE_DURATION_BUCKETS)
}

#[derive(Clone)]
pub struct Metrics {
    pub jobs_created: Counter,
    pub jobs_rerun: Counter,
    pub jobs_cancelled: Counter,
    pub jobs_already_present: Counter,
    pub jobs_refused: Counter,
    pub jobs_pruned: Counter,
    pub errors: Counter,
    pub watch_errors: Family<WatchLabels, Counter>,
    pub purges: Family<PurgeLabels, Counter>,
    pub purge_duration: Family<ProviderLabels, Histogram, fn() -> Histogram>,
    pub purge_requests: Family<ProviderLabels, Counter>,
    pub jobs_waiting: Family<NamespaceLabels, Gauge>,
    /// 1 while this replica holds the Lease and acts, 0 while it stands by.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            jobs_created: Counter::default(),
            jobs_rerun: Counter::default(),
            jobs_cancelled: Counter::default(),
            jobs_already_present: Counter::default(),
            jobs_refused: Counter::default(),
            jobs_pruned: Counter::default(),
            errors: Counter::default(),
            watch_errors: Family::default(),
            purges: Family::default(),
            purge_duration: Family::new_with_constructor(purge_duration_histogram),
            purge_requests: Family::default(),
            jobs_waiting: Family::default(),
            leader: Gauge::default(),
        }
    }
}

impl Metrics {
    pub fn purge(&self, provider: &str, result: PurgeResult) -> Counter {
        self.purges
            .get_or_create(&PurgeLabels {
                provider: provider.to_owned(),
                result,
            })
            .clone()
    }

    pub fn registry(&self) -> Registry {
        let mut registry = Registry::with_prefix("cache_buster_launcher");
        registry.register(
            "leader",
            "1 while this replica holds the Lease and acts, 0 while it stands by",
            self.leader.clone(),
        );
        registry.register(
            "jobs_created",
            "Companion Jobs created (first runs and reruns)",
            self.jobs_created.clone(),
        );
        registry.register(
            "jobs_rerun",
            "Finished companion Jobs deleted and created again because the Deployment rolled back to their image",
            self.jobs_rerun.clone(),
        );
        registry.register(
            "jobs_cancelled",
            "Waiting companion Jobs deleted because the Deployment moved on to another image",
            self.jobs_cancelled.clone(),
        );
        registry.register(
            "jobs_already_present",
            "Reconciliations that found the stamped Job already created (running or finished)",
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
        registry.register(
            "watch_errors",
            "Failed list and watch calls, by watched resource (retried with back-off; /readyz says which)",
            self.watch_errors.clone(),
        );
        registry.register(
            "purges",
            "Companion Jobs that finished, by provider and result (succeeded, failed)",
            self.purges.clone(),
        );
        registry.register(
            "purge_duration_seconds",
            "Seconds from a companion Job's creation (the stamp) to its successful completion, by provider",
            self.purge_duration.clone(),
        );
        registry.register(
            "purge_requests",
            "Requests the finished companion Jobs' purges sent to the CDN (retries not counted), from their outcomes, by provider",
            self.purge_requests.clone(),
        );
        registry.register(
            "jobs_waiting",
            "Companion Jobs not finished yet (waiting for their rollout, or purging), by namespace",
            self.jobs_waiting.clone(),
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
    fn metrics_are_exposed_in_the_prometheus_text_format() {
        let metrics = Metrics::default();
        metrics.jobs_created.inc();
        metrics.jobs_refused.inc_by(2);
        metrics.purge("cloudflare", PurgeResult::Succeeded).inc();
        metrics.purge("fastly", PurgeResult::Failed).inc();
        metrics
            .purge_duration
            .get_or_create(&ProviderLabels {
                provider: "cloudflare".into(),
            })
            .observe(42.0);
        metrics
            .jobs_waiting
            .get_or_create(&NamespaceLabels {
                namespace: "web".into(),
            })
            .set(3);
        let text = render(&metrics.registry());
        for line in [
            "# TYPE cache_buster_launcher_jobs_created counter",
            "cache_buster_launcher_jobs_created_total 1",
            "cache_buster_launcher_jobs_refused_total 2",
            "cache_buster_launcher_jobs_rerun_total 0",
            "cache_buster_launcher_jobs_cancelled_total 0",
            "cache_buster_launcher_errors_total 0",
            "cache_buster_launcher_purges_total{provider=\"cloudflare\",result=\"succeeded\"} 1",
            "cache_buster_launcher_purges_total{provider=\"fastly\",result=\"failed\"} 1",
            "# TYPE cache_buster_launcher_purge_duration_seconds histogram",
            "cache_buster_launcher_purge_duration_seconds_bucket{le=\"60.0\",provider=\"cloudflare\"} 1",
            "cache_buster_launcher_purge_duration_seconds_bucket{le=\"30.0\",provider=\"cloudflare\"} 0",
            "cache_buster_launcher_purge_duration_seconds_sum{provider=\"cloudflare\"} 42.0",
            "cache_buster_launcher_jobs_waiting{namespace=\"web\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    /// /metrics with every family shown (a labelled family shows once it
    /// has a member).
    fn every_family() -> String {
        let metrics = Metrics::default();
        metrics.purge("webhook", PurgeResult::Succeeded);
        drop(metrics.purge_duration.get_or_create(&ProviderLabels {
            provider: "webhook".into(),
        }));
        drop(metrics.jobs_waiting.get_or_create(&NamespaceLabels {
            namespace: "web".into(),
        }));
        drop(metrics.purge_requests.get_or_create(&ProviderLabels {
            provider: "webhook".into(),
        }));
        drop(metrics.watch_errors.get_or_create(&WatchLabels {
            resource: "jobs".into(),
        }));
        render(&metrics.registry())
    }

    /// The README's metrics table lists exactly what /metrics exposes.
    #[test]
    fn the_readme_documents_every_metric() {
        let documented: Vec<(String, String)> =
            crate::readme::table("| metric | type | labels | meaning |")
                .iter()
                .map(|row| (crate::readme::unquoted(&row[0]).to_owned(), row[1].clone()))
                .collect();
        let text = every_family();
        let exposed: Vec<(String, String)> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE cache_buster_launcher_"))
            .filter_map(|rest| rest.split_once(' '))
            .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
            .collect();
        let mut documented_names: Vec<(String, String)> = documented
            .iter()
            .map(|(name, kind)| {
                let base = name.strip_suffix("_total").unwrap_or(name);
                (base.to_owned(), kind.clone())
            })
            .collect();
        documented_names.sort();
        let mut exposed = exposed;
        exposed.sort();
        assert_eq!(documented_names, exposed);
    }

    fn repository_yaml(path: &str) -> Vec<serde_yaml::Value> {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(path);
        let text = std::fs::read_to_string(&file).unwrap();
        serde_yaml::Deserializer::from_str(&text)
            .map(|document| serde::Deserialize::deserialize(document).unwrap())
            .collect()
    }

    /// Every series and label the alerts of deploy/monitoring read is one
    /// the launcher exposes: a renamed metric cannot silence an alert.
    #[test]
    fn the_monitoring_components_alerts_read_exposed_metrics() {
        let exposed = every_family();
        let rule = &repository_yaml("deploy/monitoring/prometheus-rule.yaml")[0];
        assert_eq!(rule["kind"], "PrometheusRule");
        let rules = rule["spec"]["groups"][0]["rules"].as_sequence().unwrap();
        let alerts: Vec<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
        assert_eq!(
            alerts,
            [
                "CacheBusterPurgeFailed",
                "CacheBusterLauncherNotReady",
                "CacheBusterLauncherWatchFailing"
            ]
        );
        let mut read = 0;
        for rule in rules {
            let expr = rule["expr"].as_str().unwrap();
            for (start, _) in expr.match_indices("cache_buster_launcher_") {
                let name: String = expr[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    exposed
                        .lines()
                        .any(|line| line.starts_with(&format!("{name}{{"))
                            || line.starts_with(&format!("{name} "))),
                    "{name}, read by {:?}, is not exposed:\n{exposed}",
                    rule["alert"]
                );
                read += 1;
            }
            // Labels the alert groups or filters by.
            for label in ["provider", "result", "resource"] {
                if expr.contains(&format!("({label})")) || expr.contains(&format!("{{{label}=")) {
                    assert!(
                        exposed.contains(&format!("{label}=\"")),
                        "label {label} of {expr} is not exposed"
                    );
                }
            }
        }
        assert_eq!(read, 2, "the alerts read the purges and watch errors");
        // The failed purges the first alert counts are labelled so.
        let metrics = Metrics::default();
        metrics.purge("cloudflare", PurgeResult::Failed).inc();
        assert!(render(&metrics.registry()).contains(
            r#"cache_buster_launcher_purges_total{provider="cloudflare",result="failed"} 1"#
        ));
    }

    /// The Service selects the launcher's pods, and the ServiceMonitor
    /// scrapes the Service's port where the launcher serves /metrics.
    #[test]
    fn the_service_monitor_scrapes_the_launchers_metrics_port() {
        let launcher = repository_yaml("deploy/launcher.yaml");
        let deployment = launcher
            .iter()
            .find(|document| document["kind"] == "Deployment")
            .unwrap();
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        let container_port = &deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0];
        let service = &repository_yaml("deploy/monitoring/service.yaml")[0];
        let monitor = &repository_yaml("deploy/monitoring/service-monitor.yaml")[0];
        for (key, value) in service["spec"]["selector"].as_mapping().unwrap() {
            assert_eq!(&pod_labels[key], value, "the Service's selector {key:?}");
        }
        assert_eq!(
            service["spec"]["ports"][0]["targetPort"],
            container_port["name"]
        );
        assert_eq!(
            service["spec"]["ports"][0]["port"],
            container_port["containerPort"]
        );
        for (key, value) in monitor["spec"]["selector"]["matchLabels"]
            .as_mapping()
            .unwrap()
        {
            assert_eq!(
                &service["metadata"]["labels"][key], value,
                "the ServiceMonitor's selector {key:?}"
            );
        }
        let endpoint = &monitor["spec"]["endpoints"][0];
        assert_eq!(endpoint["port"], service["spec"]["ports"][0]["name"]);
        assert_eq!(endpoint["path"], "/metrics");
        assert_eq!(
            service["metadata"]["namespace"],
            deployment["metadata"]["namespace"]
        );
        assert_eq!(
            monitor["metadata"]["namespace"],
            deployment["metadata"]["namespace"]
        );
    }
}
