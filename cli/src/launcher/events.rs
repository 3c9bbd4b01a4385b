//! What a companion Job's pods say when they end (the purge's outcome in
//! its termination message, each layer's result, a failed container's
//! message), and the Event that reports it on the Deployment.

use crate::launcher::metrics::PurgeResult;
use cache_buster::providers::Provider;
use cache_buster_purge::outcome::Outcome as PurgeOutcome;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

const COMPONENT: &str = "cache-buster.io/launcher";
/// The longest quote of a failed container's message in an Event.
pub const REASON_CHARS: usize = 400;

pub const REASON_CREATED: &str = "CacheBusterJobCreated";
pub const REASON_PURGED: &str = "CacheBusterPurged";
pub const REASON_PURGE_FAILED: &str = "CacheBusterPurgeFailed";
pub const REASON_CANCELLED: &str = "CacheBusterJobCancelled";
pub const REASON_REFUSED: &str = "CacheBusterJobRefused";

pub(crate) fn container_statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    pod.status.iter().flat_map(|status| {
        status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten())
    })
}

/// What a pod's failed container said (its termination message: the
/// purge's outcome, or wait-rollout's error, or the last lines of output),
/// and the purge's outcome if it wrote one.
pub(crate) fn failure_detail(pod: &Pod) -> Option<(String, Option<PurgeOutcome>)> {
    let detail = container_statuses(pod).find_map(failed_container)?;
    Some((detail, purge_outcome(pod)))
}

/// One layer's part in a finished Job, for the metrics.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LayerResult {
    pub(crate) provider: String,
    pub(crate) requests: Option<usize>,
    /// None: the layer did not run (an earlier one failed).
    pub(crate) result: Option<PurgeResult>,
}

/// Each layer's requests and result: from the purge's outcome where it
/// gives them, else the Job's result for every layer.
pub(crate) fn layer_results(
    providers: &[Provider],
    purge: Option<&PurgeOutcome>,
    succeeded: bool,
) -> Vec<LayerResult> {
    if let Some(purge) = purge.filter(|purge| !purge.layers.is_empty()) {
        return purge
            .layers
            .iter()
            .map(|layer| LayerResult {
                provider: layer.provider.clone(),
                requests: Some(layer.requests),
                result: match layer.result.as_str() {
                    "failed" => Some(PurgeResult::Failed),
                    cache_buster_purge::outcome::NOT_RUN => None,
                    _ => Some(PurgeResult::Succeeded),
                },
            })
            .collect();
    }
    let job_result = match succeeded {
        true => PurgeResult::Succeeded,
        false => PurgeResult::Failed,
    };
    providers
        .iter()
        .map(|provider| LayerResult {
            provider: provider.name().to_owned(),
            // A purge that failed before its first layer sent nothing.
            requests: purge
                .filter(|_| providers.len() == 1)
                .map(|purge| purge.requests),
            result: Some(job_result),
        })
        .collect()
}

/// The purge's outcome, from a pod whose purge container ended.
pub(crate) fn purge_outcome(pod: &Pod) -> Option<PurgeOutcome> {
    container_statuses(pod).find_map(|status| {
        let terminated = status.state.as_ref()?.terminated.as_ref()?;
        if status.name != cache_buster::job::PURGE_CONTAINER {
            return None;
        }
        PurgeOutcome::from_message(terminated.message.as_deref()?)
    })
}

/// The purge's outcome, from a pod whose purge container succeeded.
pub(crate) fn purged(pod: &Pod) -> Option<PurgeOutcome> {
    purge_outcome(pod).filter(PurgeOutcome::succeeded)
}

/// "container NAME exited with CODE: MESSAGE", the purge's outcome in
/// words, whitespace folded and cut to REASON_CHARS (the end kept: the
/// CDN's answer or the error comes last).
pub fn failed_container(status: &ContainerStatus) -> Option<String> {
    let terminated = status.state.as_ref()?.terminated.as_ref()?;
    if terminated.exit_code == 0 {
        return None;
    }
    let message = terminated
        .message
        .as_deref()
        .or(terminated.reason.as_deref())
        .unwrap_or_default();
    let message = PurgeOutcome::from_message(message)
        .map(|outcome| outcome.summary())
        .unwrap_or_else(|| message.to_owned());
    let folded = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let count = folded.chars().count();
    let quoted = if count > REASON_CHARS {
        let tail: String = folded.chars().skip(count - REASON_CHARS).collect();
        format!("…{tail}")
    } else {
        folded
    };
    Some(format!(
        "container {} exited with {}: {quoted}",
        status.name, terminated.exit_code
    ))
}

/// An Event on the Deployment, as `kubectl describe` and `kubectl events`
/// show it.
pub fn event(
    deployment: &Deployment,
    namespace: &str,
    name: &str,
    type_: &str,
    reason: &str,
    message: &str,
) -> Event {
    let now = Time(Timestamp::now());
    Event {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("apps/v1".to_owned()),
            kind: Some("Deployment".to_owned()),
            name: deployment.metadata.name.clone(),
            namespace: Some(namespace.to_owned()),
            uid: deployment.metadata.uid.clone(),
            resource_version: deployment.metadata.resource_version.clone(),
            ..ObjectReference::default()
        },
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        type_: Some(type_.to_owned()),
        source: Some(EventSource {
            component: Some(COMPONENT.to_owned()),
            host: None,
        }),
        reporting_component: Some(COMPONENT.to_owned()),
        reporting_instance: Some(COMPONENT.to_owned()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated};

    fn terminated(exit_code: i32, message: Option<&str>) -> ContainerStatus {
        ContainerStatus {
            name: "purge".into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code,
                    message: message.map(str::to_owned),
                    reason: Some("Error".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The purge's outcome is quoted in words: the failed request, the
    /// CDN's status and answer; a missing Secret as the purge names it.
    #[test]
    fn a_failed_purge_is_quoted_from_its_outcome() {
        let message = r#"{"provider":"cloudflare","result":"failed","requests":1,"attempts":6,"purged":[],"seconds":181.2,"failure":{"request":"POST https://api.cloudflare.com/client/v4/zones/[redacted]/purge_cache","status":503,"error":"HTTP 503; no time left to retry within the purge's budget of 180s","answer":"{\"success\":false}"}}"#;
        assert_eq!(
            failed_container(&terminated(1, Some(message))).as_deref(),
            Some(
                "container purge exited with 1: POST https://api.cloudflare.com/client/v4/zones/[redacted]/purge_cache: \
                 HTTP 503; no time left to retry within the purge's budget of 180s; the CDN answered: {\"success\":false}"
            )
        );
        let missing = r#"{"provider":"cloudflare","result":"failed","requests":0,"attempts":0,"purged":[],"seconds":0.0,"failure":{"error":"the Secret half has no key CLOUDFLARE_API_TOKEN (cloudflare needs CLOUDFLARE_ZONE_ID, CLOUDFLARE_API_TOKEN)"}}"#;
        assert_eq!(
            failed_container(&terminated(2, Some(missing))).as_deref(),
            Some(
                "container purge exited with 2: the Secret half has no key CLOUDFLARE_API_TOKEN \
                 (cloudflare needs CLOUDFLARE_ZONE_ID, CLOUDFLARE_API_TOKEN)"
            )
        );
    }

    /// The metrics give each layer's result: from the outcome's layers,
    /// a layer that did not run counting no purge; without them, the Job's
    /// result for each provider.
    #[test]
    fn each_layer_has_its_own_metrics() {
        let layered = PurgeOutcome::from_message(
            r#"{"provider":"http, cloudflare, fastly","result":"failed","requests":4,"attempts":4,"purged":["http: 3 URL purges"],"seconds":0.4,
                "failure":{"error":"cloudflare: HTTP 403","status":403},
                "layers":[{"provider":"http","result":"purged","requests":3,"purged":["3 URL purges"]},
                          {"provider":"cloudflare","result":"failed","requests":1},
                          {"provider":"fastly","result":"not run","requests":0}]}"#,
        )
        .unwrap();
        let layers = [Provider::Http, Provider::Cloudflare, Provider::Fastly];
        let result = |provider: &str, requests, result| LayerResult {
            provider: provider.to_owned(),
            requests,
            result,
        };
        assert_eq!(
            layer_results(&layers, Some(&layered), false),
            [
                result("http", Some(3), Some(PurgeResult::Succeeded)),
                result("cloudflare", Some(1), Some(PurgeResult::Failed)),
                result("fastly", Some(0), None),
            ]
        );
        // A Job that failed before its purge wrote anything: every layer failed.
        assert_eq!(
            layer_results(&layers[..2], None, false),
            [
                result("http", None, Some(PurgeResult::Failed)),
                result("cloudflare", None, Some(PurgeResult::Failed)),
            ]
        );
        let single = PurgeOutcome::from_message(
            r#"{"provider":"fastly","result":"purged","requests":2,"attempts":2,"purged":["1 URL"],"seconds":0.2}"#,
        )
        .unwrap();
        assert_eq!(
            layer_results(&[Provider::Fastly], Some(&single), true),
            [result("fastly", Some(2), Some(PurgeResult::Succeeded))]
        );
    }

    #[test]
    fn a_succeeded_purge_is_summarised_from_its_outcome() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "status": {"containerStatuses": [{"name": "purge", "image": "x", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"terminated": {"exitCode": 0,
                "message": "{\"provider\":\"fastly\",\"result\":\"purged\",\"requests\":1,\"attempts\":1,\"purged\":[\"2 surrogate keys\"],\"ids\":[\"108-1\"],\"seconds\":0.4}"}}}]}
        }))
        .unwrap();
        assert_eq!(
            purged(&pod).map(|outcome| outcome.summary()).as_deref(),
            Some("1 request in 0.4s: purged 2 surrogate keys (purge ids 108-1)")
        );
    }

    #[test]
    fn a_failed_container_is_quoted_with_its_exit_code_and_message() {
        assert_eq!(
            failed_container(&terminated(
                22,
                Some("{\"success\":false}\ncurl: (22) The requested URL returned error: 403\n")
            )),
            Some(
                "container purge exited with 22: {\"success\":false} curl: (22) The requested URL returned error: 403"
                    .to_owned()
            )
        );
        assert_eq!(
            failed_container(&terminated(1, None)),
            Some("container purge exited with 1: Error".to_owned())
        );
        assert_eq!(failed_container(&terminated(0, Some("ok"))), None);
    }

    #[test]
    fn a_long_message_keeps_its_end() {
        let long = format!("{} curl: (22) error: 503", "x".repeat(3000));
        let quoted = failed_container(&terminated(22, Some(&long))).unwrap();
        assert!(quoted.ends_with("curl: (22) error: 503"), "{quoted}");
        assert!(quoted.chars().count() < REASON_CHARS + 40, "{quoted}");
    }

    /// The README's Event table lists exactly the reasons recorded.
    #[test]
    fn the_readme_documents_every_event_reason() {
        let rows = crate::readme::table("| reason | type | message |");
        let documented: Vec<&str> = rows
            .iter()
            .map(|row| crate::readme::unquoted(&row[0]))
            .collect();
        assert_eq!(
            documented,
            [
                REASON_CREATED,
                REASON_PURGED,
                REASON_PURGE_FAILED,
                REASON_CANCELLED,
                REASON_REFUSED
            ]
        );
    }
}
