//! A test node: a Node object and a small kubelet for the namespaces it is
//! told to serve. It binds the pods the controllers create there (there is
//! no scheduler), then:
//! - a site's own pod becomes Running and Ready after the namespace's start
//!   delay, or stays un-Ready while the namespace is held, so Deployments
//!   really roll out and `kubectl rollout status` really waits;
//! - a companion Job's pod is executed: init containers in order, then the
//!   container, each as a process in a bubblewrap sandbox with a read-only
//!   root, the pod's volumes at their `mountPath`s, the environment resolved
//!   as the kubelet resolves it; the root is the image the pod names, pulled
//!   from its registry and unpacked (images.rs), and the command or the
//!   image's entrypoint runs in it as the pod's user. Exit codes, termination messages and the phase
//!   go back through the status subresource, so the Job controller counts
//!   successes, failures and retries as in a cluster.
//!
//! A pod that is deleted is stopped (its processes killed) and then removed,
//! as the kubelet confirms a graceful deletion.

use crate::cdn::{CDN_ADDRESS, CDN_HOSTS};
use crate::images::ImageStore;
use crate::oci::find_command;
use anyhow::{Context as _, Result, anyhow, bail};
use futures::StreamExt as _;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Event, Node, ObjectReference, Pod, Secret, ServiceAccount, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt as _;

pub const NODE_NAME: &str = "test-node";
/// How long the kubelet waits before it tries a failed mount or a missing
/// environment Secret again.
const RETRY: Duration = Duration::from_secs(1);

/// When a site's pods in a namespace become Ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// This long after the pod is bound.
    After(Duration),
    /// Not while the namespace is held.
    Held,
}

/// One container the node ran, as the process saw it.
#[derive(Clone, Debug)]
pub struct Executed {
    pub pod: String,
    pub container: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub exit_code: i32,
    pub output: String,
    pub started: Instant,
    pub finished: Instant,
}

/// What the node needs from the cluster.
#[derive(Clone)]
pub struct NodeSetup {
    pub client: Client,
    pub api_port: u16,
    pub bwrap: PathBuf,
    /// Where pods' images are pulled from and unpacked.
    pub images: Arc<ImageStore>,
    /// The CA bundle the sandboxes trust (the test CA).
    pub ca_bundle: String,
    /// Where the node keeps its pods' files.
    pub dir: PathBuf,
}

struct Shared {
    setup: NodeSetup,
    namespaces: Mutex<BTreeMap<String, Readiness>>,
    executed: Mutex<Vec<Executed>>,
    /// The ready moments of site pods, by namespace.
    ready_at: Mutex<Vec<(String, String, Instant)>>,
}

pub struct TestNode {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TestNode {
    /// Registers the Node, keeps it alive and starts serving pods.
    pub async fn start(setup: NodeSetup) -> Result<TestNode> {
        std::fs::create_dir_all(setup.dir.join("etc"))?;
        let hosts: String = CDN_HOSTS
            .iter()
            .map(|host| format!("{CDN_ADDRESS} {host}\n"))
            .collect();
        std::fs::write(
            setup.dir.join("etc/hosts"),
            format!("127.0.0.1 localhost\n{hosts}"),
        )?;
        std::fs::create_dir_all(setup.dir.join("etc/certs"))?;
        std::fs::write(
            setup.dir.join("etc/certs/ca-certificates.crt"),
            &setup.ca_bundle,
        )?;
        let nodes: Api<Node> = Api::all(setup.client.clone());
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME}}
        }))?;
        nodes.create(&PostParams::default(), &node).await?;
        heartbeat(&nodes).await?;

        let shared = Arc::new(Shared {
            setup,
            namespaces: Mutex::new(BTreeMap::new()),
            executed: Mutex::new(Vec::new()),
            ready_at: Mutex::new(Vec::new()),
        });
        let beating = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let _ = heartbeat(&nodes).await;
            }
        });
        let serving = tokio::spawn(serve(shared.clone()));
        Ok(TestNode {
            shared,
            tasks: vec![beating, serving],
        })
    }

    /// Serves the pods of `namespace` from now on, with this readiness.
    pub fn serve(&self, namespace: &str, readiness: Readiness) {
        if let Ok(mut namespaces) = self.shared.namespaces.lock() {
            namespaces.insert(namespace.to_owned(), readiness);
        }
    }

    /// Every container run in `namespace`'s pods, in the order they ended.
    pub fn executed(&self, namespace: &str) -> Vec<Executed> {
        let prefix = format!("{namespace}/");
        self.shared
            .executed
            .lock()
            .map(|executed| {
                executed
                    .iter()
                    .filter(|run| run.pod.starts_with(&prefix))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// When the site pods of `namespace` became Ready: (pod name, moment).
    pub fn ready_moments(&self, namespace: &str) -> Vec<(String, Instant)> {
        self.shared
            .ready_at
            .lock()
            .map(|ready| {
                ready
                    .iter()
                    .filter(|(ns, _, _)| ns == namespace)
                    .map(|(_, pod, at)| (pod.clone(), *at))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The kubelet's heartbeat: a Ready condition with a fresh time, so the
/// node lifecycle controller neither taints the node nor evicts its pods.
async fn heartbeat(nodes: &Api<Node>) -> Result<()> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "the cache-buster test node", "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE_NAME}],
        "capacity": {"cpu": "2", "memory": "8Gi", "pods": "1100"},
        "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "1100"}
    }});
    nodes
        .patch_status(NODE_NAME, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

/// Follows every pod; starts one task per pod of a served namespace and
/// stops it when the pod is being deleted.
async fn serve(shared: Arc<Shared>) {
    let pods: Api<Pod> = Api::all(shared.setup.client.clone());
    let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let stream = watcher(pods, watcher::Config::default()).applied_objects();
    futures::pin_mut!(stream);
    while let Some(next) = stream.next().await {
        let Ok(pod) = next else { continue };
        let namespace = pod.namespace().unwrap_or_default();
        let served = shared
            .namespaces
            .lock()
            .map(|namespaces| namespaces.contains_key(&namespace))
            .unwrap_or(false);
        let Some(uid) = pod.uid() else { continue };
        if !served {
            continue;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            if let Some(task) = running.remove(&uid) {
                task.abort();
            }
            let api: Api<Pod> = Api::namespaced(shared.setup.client.clone(), &namespace);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            let _ = api.delete(&pod.name_any(), &params).await;
            continue;
        }
        let finished = pod
            .status
            .as_ref()
            .and_then(|status| status.phase.as_deref())
            .is_some_and(|phase| phase == "Succeeded" || phase == "Failed");
        if finished || running.contains_key(&uid) {
            continue;
        }
        let shared = shared.clone();
        running.insert(
            uid,
            tokio::spawn(async move {
                let name = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
                if let Err(error) = play(&shared, pod).await {
                    eprintln!("test node: pod {name}: {error:#}");
                }
            }),
        );
    }
}

fn is_job_pod(pod: &Pod) -> bool {
    pod.owner_references()
        .iter()
        .any(|owner| owner.kind == "Job")
}

/// The kubelet's work for one pod.
async fn play(shared: &Shared, pod: Pod) -> Result<()> {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let pods: Api<Pod> = Api::namespaced(shared.setup.client.clone(), &namespace);
    if pod
        .spec
        .as_ref()
        .and_then(|spec| spec.node_name.as_ref())
        .is_none()
    {
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME}
        });
        let _: Value = pods
            .create_subresource("binding", &name, &PostParams::default(), &binding)
            .await
            .context("binding")?;
    }
    if is_job_pod(&pod) {
        execute(shared, &pods, pod).await
    } else {
        become_ready(shared, &pods, pod).await
    }
}

async fn become_ready(shared: &Shared, pods: &Api<Pod>, pod: Pod) -> Result<()> {
    let namespace = pod.namespace().unwrap_or_default();
    let bound = Instant::now();
    loop {
        let readiness = shared
            .namespaces
            .lock()
            .ok()
            .and_then(|namespaces| namespaces.get(&namespace).copied());
        match readiness {
            Some(Readiness::After(delay)) if bound.elapsed() >= delay => break,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let containers: Vec<Value> = pod
        .spec
        .iter()
        .flat_map(|spec| &spec.containers)
        .map(|container| {
            json!({"name": container.name, "image": container.image, "imageID": "", "ready": true,
                   "started": true, "restartCount": 0, "state": {"running": {"startedAt": now}}})
        })
        .collect();
    let condition = |kind: &str| json!({"type": kind, "status": "True", "lastTransitionTime": now});
    let status = json!({"status": {
        "phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "startTime": now,
        "conditions": [condition("PodScheduled"), condition("Initialized"), condition("ContainersReady"), condition("Ready")],
        "containerStatuses": containers
    }});
    pods.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&status),
    )
    .await?;
    if let Ok(mut ready) = shared.ready_at.lock() {
        ready.push((namespace, pod.name_any(), Instant::now()));
    }
    Ok(())
}

/// A container's state as the pod status shows it.
fn terminated(container: &Container, code: i32, message: &str, started: &Time) -> Value {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut state = json!({"exitCode": code, "reason": if code == 0 {"Completed"} else {"Error"},
                           "startedAt": started, "finishedAt": now});
    if !message.is_empty() {
        state["message"] = json!(message);
    }
    json!({"name": container.name, "image": container.image, "imageID": "", "ready": false,
           "restartCount": 0, "state": {"terminated": state}})
}

fn waiting(container: &Container, reason: &str, message: &str) -> Value {
    json!({"name": container.name, "image": container.image, "imageID": "", "ready": false,
           "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}})
}

/// A running container; a main container without a readiness probe is
/// ready once it runs (an init container never is), as the kubelet says.
fn running(container: &Container, started: &Time, ready: bool) -> Value {
    json!({"name": container.name, "image": container.image, "imageID": "", "ready": ready,
           "started": true, "restartCount": 0, "state": {"running": {"startedAt": started}}})
}

async fn report(
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

/// Runs a Job's pod to its end, as the kubelet would with
/// `restartPolicy: Never`.
async fn execute(shared: &Shared, pods: &Api<Pod>, pod: Pod) -> Result<()> {
    let name = pod.name_any();
    let uid = pod.uid().unwrap_or_default();
    let spec = pod
        .spec
        .clone()
        .ok_or_else(|| anyhow!("pod without spec"))?;
    let inits = spec.init_containers.clone().unwrap_or_default();
    let mains = spec.containers.clone();
    let pod_dir = shared.setup.dir.join("pods").join(&uid);

    // Volumes first: a mount that fails keeps the pod Pending, with an Event,
    // and is tried again (the kubelet never gives up on it).
    let volumes = loop {
        match mount_volumes(shared, &pod, &pod_dir).await {
            Ok(volumes) => break volumes,
            Err(MountError::Retry(message)) => {
                event(&shared.setup.client, &pod, "FailedMount", &message).await;
                let pending: Vec<Value> = mains
                    .iter()
                    .map(|c| waiting(c, "ContainerCreating", ""))
                    .collect();
                let init: Vec<Value> = inits
                    .iter()
                    .map(|c| waiting(c, "PodInitializing", ""))
                    .collect();
                report(pods, &name, "Pending", &init, &pending).await?;
                tokio::time::sleep(RETRY).await;
            }
            Err(MountError::Fatal(error)) => return Err(error),
        }
    };

    let mut init_statuses: Vec<Value> = inits
        .iter()
        .map(|c| waiting(c, "PodInitializing", ""))
        .collect();
    let mut main_statuses: Vec<Value> = mains
        .iter()
        .map(|c| waiting(c, "PodInitializing", ""))
        .collect();
    for (index, container) in inits.iter().enumerate() {
        let started = Time(k8s_openapi::jiff::Timestamp::now());
        if let Some(slot) = init_statuses.get_mut(index) {
            *slot = running(container, &started, false);
        }
        report(pods, &name, "Pending", &init_statuses, &main_statuses).await?;
        let (code, message) =
            run_container(shared, pods, &pod, container, &volumes, &pod_dir).await?;
        if let Some(slot) = init_statuses.get_mut(index) {
            *slot = terminated(container, code, &message, &started);
        }
        if code != 0 {
            return report(pods, &name, "Failed", &init_statuses, &main_statuses).await;
        }
    }
    let mut failed = false;
    for (index, container) in mains.iter().enumerate() {
        let started = Time(k8s_openapi::jiff::Timestamp::now());
        if let Some(slot) = main_statuses.get_mut(index) {
            *slot = running(container, &started, true);
        }
        report(pods, &name, "Running", &init_statuses, &main_statuses).await?;
        let (code, message) =
            run_container(shared, pods, &pod, container, &volumes, &pod_dir).await?;
        failed |= code != 0;
        if let Some(slot) = main_statuses.get_mut(index) {
            *slot = terminated(container, code, &message, &started);
        }
    }
    let phase = if failed { "Failed" } else { "Succeeded" };
    report(pods, &name, phase, &init_statuses, &main_statuses).await
}

enum MountError {
    /// The kubelet reports it and tries again.
    Retry(String),
    Fatal(anyhow::Error),
}

impl From<anyhow::Error> for MountError {
    fn from(error: anyhow::Error) -> Self {
        MountError::Fatal(error)
    }
}

impl From<std::io::Error> for MountError {
    fn from(error: std::io::Error) -> Self {
        MountError::Fatal(error.into())
    }
}

/// A volume ready to be mounted: its files on the host, and whether only
/// reading is allowed whatever the mount says.
struct Mounted {
    dir: PathBuf,
    read_only: bool,
}

/// Writes every volume's files, as the kubelet's volume plugins do.
async fn mount_volumes(
    shared: &Shared,
    pod: &Pod,
    pod_dir: &Path,
) -> Result<HashMap<String, Mounted>, MountError> {
    let namespace = pod.namespace().unwrap_or_default();
    let client = &shared.setup.client;
    let mut mounted = HashMap::new();
    for volume in pod
        .spec
        .iter()
        .flat_map(|spec| spec.volumes.iter().flatten())
    {
        let dir = pod_dir.join("volumes").join(&volume.name);
        std::fs::create_dir_all(&dir)?;
        let read_only = write_volume(client, pod, &namespace, volume, &dir).await?;
        mounted.insert(volume.name.clone(), Mounted { dir, read_only });
    }
    Ok(mounted)
}

async fn write_volume(
    client: &Client,
    pod: &Pod,
    namespace: &str,
    volume: &Volume,
    dir: &Path,
) -> Result<bool, MountError> {
    if volume.empty_dir.is_some() {
        return Ok(false);
    }
    if let Some(source) = &volume.secret {
        let secret_name = source.secret_name.clone().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let Some(secret) = secrets
            .get_opt(&secret_name)
            .await
            .map_err(anyhow::Error::from)?
        else {
            if source.optional == Some(true) {
                return Ok(true);
            }
            return Err(MountError::Retry(format!(
                "MountVolume.SetUp failed for volume \"{}\" : secret \"{secret_name}\" not found",
                volume.name
            )));
        };
        let data = secret.data.unwrap_or_default();
        match &source.items {
            None => {
                for (key, value) in &data {
                    std::fs::write(dir.join(key), &value.0)?;
                }
            }
            Some(items) => {
                for item in items {
                    let Some(value) = data.get(&item.key) else {
                        return Err(MountError::Retry(format!(
                            "MountVolume.SetUp failed for volume \"{}\" : references non-existent secret key: {}",
                            volume.name, item.key
                        )));
                    };
                    std::fs::write(dir.join(&item.path), &value.0)?;
                }
            }
        }
        return Ok(true);
    }
    if let Some(projected) = &volume.projected {
        for source in projected.sources.iter().flatten() {
            if let Some(token) = &source.service_account_token {
                let account = pod
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.service_account_name.clone())
                    .unwrap_or_else(|| "default".to_owned());
                let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
                let request = TokenRequest {
                    spec: Some(TokenRequestSpec {
                        audiences: token.audience.clone().map(|audience| vec![audience]),
                        expiration_seconds: token.expiration_seconds,
                        bound_object_ref: Some(BoundObjectReference {
                            api_version: Some("v1".to_owned()),
                            kind: Some("Pod".to_owned()),
                            name: Some(pod.name_any()),
                            uid: pod.uid(),
                        }),
                    }),
                    ..TokenRequest::default()
                };
                let issued = accounts
                    .create_token_request(&account, &PostParams::default(), &request)
                    .await
                    .map_err(|error| {
                        MountError::Retry(format!(
                            "MountVolume.SetUp failed for volume \"{}\" : failed to fetch token: {error}",
                            volume.name
                        ))
                    })?;
                let value = issued
                    .status
                    .and_then(|status| status.token)
                    .unwrap_or_default();
                std::fs::write(dir.join(&token.path), value)?;
            }
            if let Some(source) = &source.config_map {
                let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
                let map = maps
                    .get_opt(&source.name)
                    .await
                    .map_err(anyhow::Error::from)?
                    .ok_or_else(|| {
                        MountError::Retry(format!(
                            "MountVolume.SetUp failed for volume \"{}\" : configmap \"{}\" not found",
                            volume.name, source.name
                        ))
                    })?;
                let data = map.data.unwrap_or_default();
                for item in source.items.iter().flatten() {
                    let value = data.get(&item.key).cloned().unwrap_or_default();
                    std::fs::write(dir.join(&item.path), value)?;
                }
            }
            if let Some(downward) = &source.downward_api {
                for item in downward.items.iter().flatten() {
                    let value = match item.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                        Some("metadata.namespace") => namespace.to_owned(),
                        Some("metadata.name") => pod.name_any(),
                        other => {
                            return Err(MountError::Fatal(anyhow!(
                                "the test node does not project {other:?}"
                            )));
                        }
                    };
                    std::fs::write(dir.join(&item.path), value)?;
                }
            }
        }
        return Ok(true);
    }
    Err(MountError::Fatal(anyhow!(
        "the test node does not mount volume {:?}",
        volume.name
    )))
}

/// The container's environment as the kubelet makes it: `value` with
/// `$(VAR)` expanded against what is defined before it, `secretKeyRef`
/// (an optional one missing is left out), then the service variables.
async fn environment(
    shared: &Shared,
    namespace: &str,
    pod: &Pod,
    container: &Container,
    image_env: &[(String, String)],
) -> Result<Result<Vec<(String, String)>, String>> {
    let secrets: Api<Secret> = Api::namespaced(shared.setup.client.clone(), namespace);
    // The image's own variables first (its PATH), as a runtime sets them.
    let mut env: Vec<(String, String)> = image_env.to_vec();
    env.extend([
        ("HOSTNAME".into(), pod.name_any()),
        ("HOME".into(), "/".into()),
        // The purge trusts the public roots compiled into the program; here
        // it is told to trust the CDN double's test CA too, through its
        // test-only variable (launcher/src/commands.rs).
        (
            "CACHE_BUSTER_TEST_CA_FILE".into(),
            "/etc/ssl/certs/ca-certificates.crt".into(),
        ),
    ]);
    for var in container.env.iter().flatten() {
        if let Some(value) = &var.value {
            let defined: HashMap<String, String> = env.iter().cloned().collect();
            env.push((var.name.clone(), expand(value, &defined)));
            continue;
        }
        if let Some(field) = var
            .value_from
            .as_ref()
            .and_then(|from| from.field_ref.as_ref())
        {
            env.push((var.name.clone(), downward_field(pod, &field.field_path)?));
            continue;
        }
        let Some(reference) = var
            .value_from
            .as_ref()
            .and_then(|from| from.secret_key_ref.as_ref())
        else {
            if var.value_from.is_some() {
                bail!(
                    "the test node resolves only secretKeyRef, not {:?}",
                    var.value_from
                );
            }
            env.push((var.name.clone(), String::new()));
            continue;
        };
        let optional = reference.optional == Some(true);
        let secret = secrets.get_opt(&reference.name).await?;
        let value = match secret {
            None if optional => continue,
            None => return Ok(Err(format!("secret \"{}\" not found", reference.name))),
            Some(secret) => match secret.data.unwrap_or_default().get(&reference.key) {
                None if optional => continue,
                None => {
                    return Ok(Err(format!(
                        "couldn't find key {} in Secret {namespace}/{}",
                        reference.key, reference.name
                    )));
                }
                Some(value) => String::from_utf8_lossy(&value.0).into_owned(),
            },
        };
        env.push((var.name.clone(), value));
    }
    env.push(("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into()));
    env.push((
        "KUBERNETES_SERVICE_PORT".into(),
        shared.setup.api_port.to_string(),
    ));
    env.push((
        "KUBERNETES_SERVICE_PORT_HTTPS".into(),
        shared.setup.api_port.to_string(),
    ));
    Ok(Ok(env))
}

/// A pod's field as the downward API gives it to a variable: its name,
/// namespace, uid, or one of its labels (`metadata.labels['key']`, empty
/// when it has no such label).
fn downward_field(pod: &Pod, path: &str) -> Result<String> {
    let metadata = &pod.metadata;
    if let Some(key) = path
        .strip_prefix("metadata.labels['")
        .and_then(|rest| rest.strip_suffix("']"))
    {
        return Ok(metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(key))
            .cloned()
            .unwrap_or_default());
    }
    Ok(match path {
        "metadata.name" => pod.name_any(),
        "metadata.namespace" => metadata.namespace.clone().unwrap_or_default(),
        "metadata.uid" => metadata.uid.clone().unwrap_or_default(),
        other => bail!("the test node does not give a variable {other:?}"),
    })
}

/// The kubelet's `$(VAR)` expansion: a defined variable is replaced, `$$`
/// is a `$`, anything else stays as written.
pub fn expand(text: &str, defined: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
            && let Some(value) = defined.get(&inner[..end])
        {
            out.push_str(value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Runs one container to its end: (exit code, termination message).
async fn run_container(
    shared: &Shared,
    pods: &Api<Pod>,
    pod: &Pod,
    container: &Container,
    volumes: &HashMap<String, Mounted>,
    pod_dir: &Path,
) -> Result<(i32, String)> {
    let namespace = pod.namespace().unwrap_or_default();
    let image = container.image.clone().unwrap_or_default();
    let pulled = match shared.setup.images.pull(&image).await {
        Ok(pulled) => pulled,
        Err(error) => return Ok((128, format!("ErrImagePull: {error:#}"))),
    };
    let env = loop {
        match environment(shared, &namespace, pod, container, &pulled.image.config.env).await? {
            Ok(env) => break env,
            Err(message) => {
                let status = json!({"status": {"phase": "Pending", "containerStatuses": [waiting(container, "CreateContainerConfigError", &message)]}});
                pods.patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&status),
                )
                .await?;
                event(
                    &shared.setup.client,
                    pod,
                    "Failed",
                    &format!("Error: {message}"),
                )
                .await;
                tokio::time::sleep(RETRY).await;
            }
        }
    };
    let defined: HashMap<String, String> = env.iter().cloned().collect();
    // The kubelet's rule: `command` replaces the entrypoint, and then the
    // image's Cmd too; `args` replaces the Cmd.
    let config = &pulled.image.config;
    let (command, args) = match (&container.command, &container.args) {
        (Some(command), args) if !command.is_empty() => {
            (command.clone(), args.clone().unwrap_or_default())
        }
        (_, Some(args)) => (config.entrypoint.clone(), args.clone()),
        (_, None) => (config.entrypoint.clone(), config.cmd.clone()),
    };
    let argv: Vec<String> = command
        .iter()
        .chain(&args)
        .map(|part| expand(part, &defined))
        .collect();
    let Some(program) = argv.first().and_then(|name| {
        find_command(
            &pulled.rootfs,
            defined.get("PATH").map(String::as_str),
            name,
        )
    }) else {
        return Ok((
            128,
            format!("StartError: {:?} is not in image {image}", argv.first()),
        ));
    };

    let security = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.security_context.as_ref());
    let user = container
        .security_context
        .as_ref()
        .and_then(|context| context.run_as_user)
        .or_else(|| security.and_then(|context| context.run_as_user))
        .or_else(|| config.user.split(':').next()?.parse().ok())
        .unwrap_or(0);
    let group = container
        .security_context
        .as_ref()
        .and_then(|context| context.run_as_group)
        .or_else(|| security.and_then(|context| context.run_as_group))
        .unwrap_or(user);
    let read_only_root = container
        .security_context
        .as_ref()
        .and_then(|context| context.read_only_root_filesystem)
        .unwrap_or(false);

    let run_dir = pod_dir.join("containers").join(&container.name);
    std::fs::create_dir_all(&run_dir)?;
    let root = run_dir.join("rootfs");
    let _ = std::fs::remove_dir_all(&root);
    pulled.container_root(&root)?;
    let termination_log = run_dir.join("termination-log");
    std::fs::write(&termination_log, "")?;
    let output_file = run_dir.join("output");

    let etc = shared.setup.dir.join("etc");
    let mut command = tokio::process::Command::new("setpriv");
    command
        .args(["--pdeathsig", "KILL", "--"])
        .arg(&shared.setup.bwrap);
    // The image's root, the container's own (its mount points are made
    // there), read-only once everything is mounted.
    command
        .arg("--bind")
        .arg(&root)
        .arg("/")
        .args(["--dev", "/dev", "--proc", "/proc"])
        .args(["--tmpfs", "/tmp", "--tmpfs", "/run"])
        .arg("--ro-bind")
        .arg(etc.join("hosts"))
        .arg("/etc/hosts")
        .arg("--ro-bind")
        .arg(etc.join("certs"))
        .arg("/etc/ssl/certs")
        .arg("--bind")
        .arg(&termination_log)
        .arg(
            container
                .termination_message_path
                .as_deref()
                .unwrap_or("/dev/termination-log"),
        );
    for mount in container.volume_mounts.iter().flatten() {
        let volume = volumes
            .get(&mount.name)
            .ok_or_else(|| anyhow!("volume {} is not in the pod", mount.name))?;
        let read_only = volume.read_only || mount.read_only == Some(true);
        command
            .arg(if read_only { "--ro-bind" } else { "--bind" })
            .arg(&volume.dir)
            .arg(&mount.mount_path);
    }
    if read_only_root {
        command.args([
            "--remount-ro",
            "/",
            "--remount-ro",
            "/tmp",
            "--remount-ro",
            "/run",
        ]);
    }
    command
        .args([
            "--unshare-user",
            "--uid",
            &user.to_string(),
            "--gid",
            &group.to_string(),
        ])
        .args([
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--hostname",
            &pod.name_any(),
        ])
        .args([
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--clearenv",
        ])
        .args(["--chdir", container.working_dir.as_deref().unwrap_or("/")]);
    for (key, value) in &env {
        command.args(["--setenv", key, value]);
    }
    command.arg("--").arg(&program).args(argv.iter().skip(1));
    let output = std::fs::File::create(&output_file)?;
    command
        .stdin(std::process::Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output)
        .kill_on_drop(true);
    let started = Instant::now();
    let status = command.spawn()?.wait().await?;
    let finished = Instant::now();
    let exit_code = status.code().unwrap_or(137);
    let mut text = String::new();
    tokio::fs::File::open(&output_file)
        .await?
        .read_to_string(&mut text)
        .await?;
    let mut message = std::fs::read_to_string(&termination_log).unwrap_or_default();
    if message.is_empty()
        && exit_code != 0
        && container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
    {
        message = log_tail(&text);
    }
    if let Ok(mut executed) = shared.executed.lock() {
        executed.push(Executed {
            pod: format!("{namespace}/{}", pod.name_any()),
            container: container.name.clone(),
            argv,
            env,
            exit_code,
            output: text,
            started,
            finished,
        });
    }
    Ok((exit_code, message))
}

/// FallbackToLogsOnError: the last 80 lines of the log, at most 2,048 bytes.
fn log_tail(log: &str) -> String {
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
async fn event(client: &Client, pod: &Pod, reason: &str, message: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_the_kubelet() {
        let defined: HashMap<String, String> =
            [("A".to_owned(), "x".to_owned())].into_iter().collect();
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &defined), "x-$(B)-$(A)-$");
        assert_eq!(expand("{{A}} $(A", &defined), "{{A}} $(A");
    }

    #[test]
    fn the_log_fallback_keeps_the_end() {
        let log: String = (0..100).map(|n| format!("line {n}\n")).collect();
        let tail = log_tail(&log);
        assert!(
            tail.starts_with("line 20\n") && tail.ends_with("line 99"),
            "{tail}"
        );
        assert_eq!(log_tail(&"é".repeat(3000)).len(), 2048);
    }
}
