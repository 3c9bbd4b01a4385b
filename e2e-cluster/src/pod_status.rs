//! What the test node tells the API of a pod, as a kubelet does: each
//! container's state (waiting, running, terminated with its message), the
//! pod's phase and readiness through the status subresource, and Events.

use anyhow::Result;
use k8s_openapi::api::core::v1::{Container, Event, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

/// The test node's name: the pods are bound to it, its Events come from it.
pub const NODE_NAME: &str = "test-node";

/// A container's state as the pod status shows it.
pub(crate) fn terminated(container: &Container, code: i32, message: &str, started: &Time) -> Value {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut state = json!({"exitCode": code, "reason": if code == 0 {"Completed"} else {"Error"},
                           "startedAt": started, "finishedAt": now});
    if !message.is_empty() {
        state["message"] = json!(message);
    }
    json!({"name": container.name, "image": container.image, "imageID": "", "ready": false,
           "restartCount": 0, "state": {"terminated": state}})
}

pub(crate) fn waiting(container: &Container, reason: &str, message: &str) -> Value {
    json!({"name": container.name, "image": container.image, "imageID": "", "ready": false,
           "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}})
}

/// A running container; a main container without a readiness probe is
/// ready once it runs (an init container never is), as the kubelet says.
pub(crate) fn running(container: &Container, started: &Time, ready: bool) -> Value {
    json!({"name": container.name, "image": container.image, "imageID": "", "ready": ready,
           "started": true, "restartCount": 0, "state": {"running": {"startedAt": started}}})
}

pub(crate) async fn report(
    pods: &Api<Pod>,
    name: &str,
    phase: &str,
    init: &[Value],
    main: &[Value],
) -> Result<()> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    // Ready while every main container runs ready (the Job controller
    // counts such pods in the Job's `status.ready`).
    let ready = phase == "Running" && main.iter().all(|status| status["ready"] == true);
    let ready_condition = match ready {
        true => json!({"type": "Ready", "status": "True", "lastTransitionTime": now}),
        false => json!({"type": "Ready", "status": "False", "lastTransitionTime": now,
                        "reason": if phase == "Pending" || phase == "Running" {"ContainersNotReady"} else {"PodCompleted"}}),
    };
    let status = json!({"status": {
        "phase": phase, "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "startTime": now,
        "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                       ready_condition],
        "initContainerStatuses": init,
        "containerStatuses": main
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

/// FallbackToLogsOnError: the last 80 lines of the log, at most 2,048 bytes.
pub(crate) fn log_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let last = lines[lines.len().saturating_sub(80)..].join("\n");
    let mut start = last.len().saturating_sub(2048);
    while !last.is_char_boundary(start) {
        start += 1;
    }
    last[start..].to_owned()
}

/// An Event on the pod from the kubelet (one per reason: later ones only
/// bump its count, as the kubelet's recorder does).
pub(crate) async fn event(client: &Client, pod: &Pod, reason: &str, message: &str) {
    let namespace = pod.namespace().unwrap_or_default();
    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let name = format!("{}.{}", pod.name_any(), reason.to_lowercase());
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    if let Ok(Some(mut existing)) = events.get_opt(&name).await {
        existing.count = Some(existing.count.unwrap_or(1) + 1);
        existing.last_timestamp = Some(now);
        existing.message = Some(message.to_owned());
        let _ = events
            .replace(&name, &PostParams::default(), &existing)
            .await;
        return;
    }
    let event = Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod.name_any()),
            namespace: Some(namespace),
            uid: pod.uid(),
            ..ObjectReference::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some("Warning".into()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        event_time: None::<MicroTime>,
        source: Some(k8s_openapi::api::core::v1::EventSource {
            component: Some("kubelet".into()),
            host: Some(NODE_NAME.into()),
        }),
        ..Event::default()
    };
    let _ = events.create(&PostParams::default(), &event).await;
}
