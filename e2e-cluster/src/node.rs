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
use crate::container_setup::{MountError, Mounted, environment, expand, mount_volumes};
use crate::images::ImageStore;
use crate::oci::find_command;
use crate::pod_status::{event, log_tail, report, running, terminated, waiting};
use anyhow::{Context as _, Result, anyhow};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt as _;

pub use crate::pod_status::NODE_NAME;
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
        match mount_volumes(&shared.setup.client, &pod, &pod_dir).await {
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
        match environment(
            &shared.setup.client,
            shared.setup.api_port,
            &namespace,
            pod,
            container,
            &pulled.image.config.env,
        )
        .await?
        {
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
