//! Bytes the launcher's caches retain per site (`make bench-sites`).
//!
//! Fills the two caches the launcher's watches fill (the labelled
//! Deployments, the companion Jobs) with N synthetic sites, through the same
//! path: each object decoded from its JSON into the cache's type, as the
//! watch decodes it, then watcher events, `cache::Keep` as the Deployments'
//! watch's `modify`, and kube's reflector store. Each site is what the API server would send for a
//! Flux-applied Deployment, stamped by the policy itself (server-side-apply
//! managedFields, status, the three stamped annotations), and the three
//! companion Jobs the launcher keeps with `--history-limit=2` (the stamped
//! one and two finished ones), as the Job controller leaves them.
//!
//! A counting allocator measures the heap retained once the input is gone.
//! Prints figures; asserts nothing. SITES=1000,10000 by default.

use cache_buster::deployment::{RequestContext, derive_stamp};
use cache_buster::settings::Settings;
use cache_buster_cli::launcher::cache::{CachedJob, Keep, SiteDeployment};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The system allocator, counting the bytes in use.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only
// the counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: ptr was allocated by System with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        IN_USE.fetch_add(new_size, Ordering::Relaxed);
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: ptr was allocated by System with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const NAMESPACES: usize = 500;
const JOBS_PER_SITE: usize = 3;

fn uid(kind: u32, site: usize, index: usize) -> String {
    format!(
        "{kind:08x}-{:04x}-4{:03x}-8000-{site:012x}",
        index,
        site % 4096
    )
}

/// A site Deployment as the API server sends it: applied by Flux's
/// kustomize-controller, rolled out, stamped by the policy.
fn deployment(site: usize, settings: &Settings) -> (Value, String) {
    let name = format!("site-{site}");
    let namespace = format!("tenant-{}", site % NAMESPACES);
    let image = format!(
        "ghcr.io/tenant-{}/site-{site}:1.{}.{}",
        site % NAMESPACES,
        site % 7,
        site % 13
    );
    let container = json!({
        "name": "web", "image": image, "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "env": [{"name": "SITE_URL", "value": format!("https://{name}.example.com")},
                {"name": "LOG_LEVEL", "value": "info"}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                           "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
                            "readOnlyRootFilesystem": true},
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"
    });
    let mut value = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": name, "namespace": namespace, "uid": uid(0xdeb1, site, 0),
            "resourceVersion": format!("{}", 48_000_000 + site), "generation": 3,
            "creationTimestamp": "2026-11-01T10:00:00Z",
            "labels": {"app.kubernetes.io/name": name, "cache-buster.io/site": format!("{name}.example.com"),
                       "kustomize.toolkit.fluxcd.io/name": "sites", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"},
            "annotations": {"cache-buster.io/urls": format!("https://{name}.example.com/"),
                            "cache-buster.io/tags": name, "deployment.kubernetes.io/revision": "3"},
            "managedFields": [
                {"manager": "kustomize-controller", "operation": "Apply", "apiVersion": "apps/v1",
                 "time": "2026-12-01T09:00:00Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:annotations": {"f:cache-buster.io/tags": {}, "f:cache-buster.io/urls": {}},
                              "f:labels": {"f:app.kubernetes.io/name": {}, "f:cache-buster.io/site": {},
                                           "f:kustomize.toolkit.fluxcd.io/name": {}, "f:kustomize.toolkit.fluxcd.io/namespace": {}}},
                              "f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {"f:metadata": {"f:labels": {"f:app.kubernetes.io/name": {}}},
                              "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:env": {}, "f:image": {}, "f:name": {},
                              "f:ports": {}, "f:readinessProbe": {}, "f:resources": {}, "f:securityContext": {}}},
                              "f:securityContext": {}}}}}},
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1",
                 "time": "2026-12-01T09:01:00Z", "fieldsType": "FieldsV1", "subresource": "status",
                 "fieldsV1": {"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}},
                              "f:status": {"f:availableReplicas": {}, "f:conditions": {}, "f:observedGeneration": {},
                                           "f:readyReplicas": {}, "f:replicas": {}, "f:updatedReplicas": {}}}}
            ]
        },
        "spec": {
            "replicas": 2, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": name}},
                "spec": {"containers": [container], "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                         "schedulerName": "default-scheduler", "terminationGracePeriodSeconds": 30,
                         "securityContext": {"runAsNonRoot": true, "runAsUser": 101, "seccompProfile": {"type": "RuntimeDefault"}}}
            }
        },
        "status": {
            "observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2,
            "conditions": [
                {"type": "Available", "status": "True", "lastUpdateTime": "2026-12-01T09:01:00Z",
                 "lastTransitionTime": "2026-11-01T10:00:30Z", "reason": "MinimumReplicasAvailable",
                 "message": "Deployment has minimum availability."},
                {"type": "Progressing", "status": "True", "lastUpdateTime": "2026-12-01T09:01:00Z",
                 "lastTransitionTime": "2026-11-01T10:00:00Z", "reason": "NewReplicaSetAvailable",
                 "message": format!("ReplicaSet \"{name}-7c9f8d6b5\" has successfully progressed.")}
            ]
        }
    });
    let unstamped: Deployment = serde_json::from_value(value.clone()).expect("a Deployment");
    let (stamp, _) =
        derive_stamp(settings, &unstamped, RequestContext::default()).expect("a valid site");
    for (key, stamped) in stamp
        .annotations(settings)
        .expect("the stamp's annotations")
    {
        value["metadata"]["annotations"][key] = json!(stamped);
    }
    (value, stamp.job_json().expect("the stamped Job"))
}

/// A finished companion Job as the Job controller leaves it.
fn job(job_json: &str, site: usize, index: usize) -> Value {
    let mut value: Value = serde_json::from_str(job_json).expect("the stamped Job");
    let uid = uid(0x10b, site, index);
    if index > 0 {
        // An earlier image's Job: another hash, the same shape.
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let renamed = format!("{}z{index}", &name[..name.len() - 2]);
        value["metadata"]["name"] = json!(renamed);
    }
    let name = value["metadata"]["name"].clone();
    let metadata = &mut value["metadata"];
    metadata["uid"] = json!(uid);
    metadata["resourceVersion"] = json!(format!("{}", 49_000_000 + site * 3 + index));
    metadata["generation"] = json!(1);
    metadata["creationTimestamp"] = json!(format!("2026-12-0{}T09:00:00Z", 3 - index));
    metadata["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "Deployment",
        "name": format!("site-{site}"), "uid": self::uid(0xdeb1, site, 0)}]);
    metadata["managedFields"] = json!([
        {"manager": "cache-buster", "operation": "Update", "apiVersion": "batch/v1",
         "time": "2026-12-01T09:00:00Z", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:metadata": {"f:labels": {}, "f:ownerReferences": {}}, "f:spec": {"f:template": {}}}},
        {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "batch/v1",
         "time": "2026-12-01T09:01:00Z", "fieldsType": "FieldsV1", "subresource": "status",
         "fieldsV1": {"f:status": {"f:completionTime": {}, "f:conditions": {}, "f:ready": {}, "f:startTime": {},
                                   "f:succeeded": {}, "f:terminating": {}, "f:uncountedTerminatedPods": {}}}}
    ]);
    let controller_labels = json!({"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
                                   "controller-uid": uid, "job-name": name});
    let spec = &mut value["spec"];
    spec["completions"] = json!(1);
    spec["parallelism"] = json!(1);
    spec["completionMode"] = json!("NonIndexed");
    spec["suspend"] = json!(false);
    spec["manualSelector"] = json!(false);
    spec["podReplacementPolicy"] = json!("TerminatingOrFailed");
    spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    if let Some(labels) = spec["template"]["metadata"]["labels"].as_object_mut() {
        for (key, label) in controller_labels.as_object().into_iter().flatten() {
            labels.insert(key.clone(), label.clone());
        }
    }
    value["status"] = json!({
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "lastProbeTime": "2026-12-01T09:01:00Z",
             "lastTransitionTime": "2026-12-01T09:01:00Z", "reason": "CompletionsReached",
             "message": "Reached expected number of succeeded pods"},
            {"type": "Complete", "status": "True", "lastProbeTime": "2026-12-01T09:01:00Z",
             "lastTransitionTime": "2026-12-01T09:01:00Z", "reason": "CompletionsReached",
             "message": "Reached expected number of succeeded pods"}
        ],
        "startTime": "2026-12-01T09:00:00Z", "completionTime": "2026-12-01T09:01:00Z",
        "succeeded": 1, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {}
    });
    value
}

/// What a watch makes of an object the API server sends: its JSON decoded
/// into the cache's type.
fn decoded<K: DeserializeOwned>(value: &Value) -> K {
    let wire = serde_json::to_vec(value).expect("JSON");
    serde_json::from_slice(&wire).expect("an object of the cache's type")
}

/// Feeds `objects` through a watch's initial list into a reflector store,
/// each compacted as the launcher's watch does.
fn fill<K>(objects: impl Iterator<Item = K>, compact: impl FnMut(&mut K)) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let events = std::iter::once(watcher::Event::Init)
        .chain(objects.map(watcher::Event::InitApply))
        .chain(std::iter::once(watcher::Event::InitDone))
        .map(Ok::<_, watcher::Error>);
    let stream = reflector::reflector(writer, futures::stream::iter(events).modify(compact));
    futures::executor::block_on(stream.for_each(|_| async {}));
    store
}

fn in_use() -> usize {
    IN_USE.load(Ordering::Relaxed)
}

fn main() {
    let sizes: Vec<usize> = std::env::var("SITES")
        .unwrap_or_else(|_| "1000,10000".to_owned())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let settings = Settings::default();
    println!(
        "| sites | Deployments cache | Jobs cache ({JOBS_PER_SITE} a site) | retained per site | retained in all | time to fill |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for sites in sizes {
        let started = Instant::now();
        let before = in_use();
        let keep = Keep::new(&settings);
        let deployments = fill(
            (0..sites).map(|site| decoded::<SiteDeployment>(&deployment(site, &settings).0)),
            |site| keep.deployment(site),
        );
        let after_deployments = in_use();
        let jobs = fill(
            (0..sites).flat_map(|site| {
                let (_, job_json) = deployment(site, &settings);
                (0..JOBS_PER_SITE)
                    .map(|index| decoded::<CachedJob>(&job(&job_json, site, index)))
                    .collect::<Vec<_>>()
            }),
            // Compact as decoded.
            |_: &mut CachedJob| {},
        );
        let after_jobs = in_use();
        let took = started.elapsed();
        assert_eq!(deployments.state().len(), sites, "Deployments in the cache");
        assert_eq!(
            jobs.state().len(),
            sites * JOBS_PER_SITE,
            "Jobs in the cache"
        );
        let per_site = |bytes: usize| bytes / sites;
        let total = after_jobs - before;
        println!(
            "| {sites} | {} B a site | {} B a site | {} B | {:.1} MiB | {:.1} s |",
            per_site(after_deployments - before),
            per_site(after_jobs - after_deployments),
            per_site(total),
            total as f64 / (1024.0 * 1024.0),
            took.as_secs_f64()
        );
        drop((deployments, jobs));
    }
}
