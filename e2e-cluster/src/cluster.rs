//! A real control plane on loopback, in a temporary directory: etcd,
//! kube-apiserver (RBAC, Pod Security, the webhook admission plugins and
//! OwnerReferencesPermissionEnforcement), kube-controller-manager, an OCI
//! registry holding the policy pushed by the real `kwctl push`, Kubewarden's
//! `policy-server` loading it from there behind the MutatingWebhookConfiguration
//! that Kubewarden's controller makes of deploy/policy.yaml, and the launcher
//! running as its ServiceAccount with the RBAC of deploy/launcher.yaml.

use crate::cdn::CdnDouble;
use crate::images::{ImageStore, push};
use crate::node::{NodeSetup, TestNode};
use crate::pki::Pki;
use crate::process::{Process, free_port, http_ok, run, wait_until};
use crate::tools::{Tools, repository};
use anyhow::{Context as _, Result, anyhow, ensure};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use kube::{Api, Client, Config, ResourceExt};
use serde::Deserialize;
use serde_json::{Value, json};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What Kubewarden's controller calls a ClusterAdmissionPolicy named NAME.
pub const POLICY_ID: &str = "clusterwide-cache-buster";
/// Kubewarden's own namespace, which its webhooks leave out.
pub(crate) const KUBEWARDEN_NAMESPACE: &str = "kubewarden";
pub(crate) const ADMIN_TOKEN: &str = "cache-buster-test-admin";
pub(crate) const LAUNCHER_NAMESPACE: &str = "cache-buster-system";
pub(crate) const LAUNCHER_ACCOUNT: &str = "launcher";
/// The Lease deploy/launcher.yaml creates, and the two replicas' names in it.
pub const LAUNCHER_LEASE: &str = "launcher";
pub const LAUNCHER_IDENTITY: &str = "launcher-a";
pub const STANDBY_IDENTITY: &str = "launcher-b";
/// Where the pushed policy lives in the local registry.
pub(crate) const MODULE_PATH: &str = "cache-buster/policies/cache-buster:v0.1.0";

pub struct Cluster {
    pub tools: Tools,
    pub pki: Pki,
    pub dir: tempfile::TempDir,
    pub api_port: u16,
    pub client: Client,
    /// deploy/policy.yaml, as Kubewarden reads it.
    pub policy: Value,
    pub launcher_port: u16,
    pub(crate) standby_port: u16,
    pub module: String,
    pub(crate) policy_server_port: u16,
    pub(crate) policy_server_readiness: u16,
    /// The node that binds and runs the pods of the namespaces it serves.
    pub node: TestNode,
    /// The CDN the companion Jobs' purges reach.
    pub cdn: CdnDouble,
    /// The registry the tests push to (`127.0.0.1:<port>`, plain HTTP, as
    /// the setting contentInsecureRegistries names it).
    pub registry: String,
    /// The project's image as the registry holds it (the policy's `image`),
    /// and where the node keeps the images it pulled.
    pub image: String,
    pub images: Arc<ImageStore>,
    /// The image's program as pulled and unpacked: what the launcher runs.
    pub program: PathBuf,
    // Dropped last to first: the launcher and policy-server before the
    // control plane they talk to.
    pub(crate) launcher: Mutex<Option<Process>>,
    pub(crate) standby: Mutex<Option<Process>>,
    pub(crate) policy_server: Mutex<Option<Process>>,
    control_plane: Vec<Process>,
}

/// A kubeconfig for the test API server with a bearer token.
pub(crate) fn kubeconfig(api_port: u16, ca: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://127.0.0.1:{api_port}\n    certificate-authority: {}\nusers:\n- name: user\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context: {{cluster: test, user: user}}\ncurrent-context: test\n",
        ca.display()
    )
}

async fn client_from(kubeconfig_path: &Path) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

impl Cluster {
    pub async fn start(tools: Tools) -> Result<Cluster> {
        let repository = repository();
        let target = repository.join("target");
        std::fs::create_dir_all(&target)?;
        let dir = tempfile::Builder::new()
            .prefix("cluster-")
            .tempdir_in(&target)?;
        let root = dir.path().to_path_buf();
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs)?;
        let pki = Pki::new(&root)?;
        let mut control_plane = Vec::new();

        // etcd
        let etcd_port = free_port()?;
        let peer_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut etcd = Process::start(
            "etcd",
            &tools.etcd,
            [
                format!("--data-dir={}", root.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=default={peer_url}"),
                "--name=default".to_owned(),
                "--log-level=warn".to_owned(),
            ],
            &[],
            &logs,
        )?;
        wait_until(&mut etcd, Duration::from_secs(30), || {
            http_ok(etcd_port, "/health")
        })
        .await?;
        control_plane.push(etcd);

        // kube-apiserver
        let api_port = free_port()?;
        let serving = pki.serving(
            "apiserver",
            &[
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "10.96.0.1",
            ],
        )?;
        let (sa_private, sa_public) = pki.service_account_keys()?;
        let tokens = root.join("tokens.csv");
        std::fs::write(
            &tokens,
            format!("{ADMIN_TOKEN},admin,admin,\"system:masters\"\n"),
        )?;
        let mut apiserver = Process::start(
            "kube-apiserver",
            &tools.kube_apiserver,
            [
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".to_owned(),
                "--advertise-address=127.0.0.1".to_owned(),
                format!("--secure-port={api_port}"),
                "--service-cluster-ip-range=10.96.0.0/24".to_owned(),
                format!("--tls-cert-file={}", serving.cert.display()),
                format!("--tls-private-key-file={}", serving.key.display()),
                format!("--client-ca-file={}", pki.ca_file().display()),
                format!("--token-auth-file={}", tokens.display()),
                "--authorization-mode=RBAC".to_owned(),
                "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,PodSecurity,\
                 MutatingAdmissionWebhook,ValidatingAdmissionWebhook,OwnerReferencesPermissionEnforcement"
                    .to_owned(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
                format!("--service-account-key-file={}", sa_public.display()),
                format!("--service-account-signing-key-file={}", sa_private.display()),
                format!("--cert-dir={}", root.join("apiserver").display()),
                "--enable-priority-and-fairness=false".to_owned(),
                "--profiling=false".to_owned(),
            ],
            &[],
            &logs,
        )?;
        let admin_kubeconfig = root.join("admin.kubeconfig");
        std::fs::write(
            &admin_kubeconfig,
            kubeconfig(api_port, &pki.ca_file(), ADMIN_TOKEN),
        )?;
        let client = client_from(&admin_kubeconfig).await?;
        {
            let client = client.clone();
            wait_until(&mut apiserver, Duration::from_secs(90), move || {
                let client = client.clone();
                async move {
                    let request = http_request("/readyz");
                    matches!(client.request_text(request).await, Ok(text) if text == "ok")
                }
            })
            .await?;
        }
        control_plane.push(apiserver);

        // kube-controller-manager
        let mut controller_manager = Process::start(
            "kube-controller-manager",
            &tools.kube_controller_manager,
            [
                format!("--kubeconfig={}", admin_kubeconfig.display()),
                "--controllers=*".to_owned(),
                "--leader-elect=false".to_owned(),
                format!(
                    "--service-account-private-key-file={}",
                    sa_private.display()
                ),
                format!("--root-ca-file={}", pki.ca_file().display()),
                "--bind-address=127.0.0.1".to_owned(),
                format!("--secure-port={}", free_port()?),
                format!("--cert-dir={}", root.join("controller-manager").display()),
            ],
            &[],
            &logs,
        )?;
        {
            // The ServiceAccount controller's "default" account says it runs.
            let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
            wait_until(
                &mut controller_manager,
                Duration::from_secs(60),
                move || {
                    let accounts = accounts.clone();
                    async move { matches!(accounts.get_opt("default").await, Ok(Some(_))) }
                },
            )
            .await?;
        }
        control_plane.push(controller_manager);

        // The OCI registry, and the policy pushed to it by kwctl.
        let registry_port = free_port()?;
        let registry_config = crate::registry::write_config(&root, registry_port, None)?;
        let mut registry = Process::start(
            "registry",
            &tools.registry,
            [OsStr::new("serve"), registry_config.as_os_str()],
            &[],
            &logs,
        )?;
        wait_until(&mut registry, Duration::from_secs(30), || {
            http_ok(registry_port, "/v2/")
        })
        .await?;
        control_plane.push(registry);
        let sources = root.join("sources.yml");
        std::fs::write(
            &sources,
            format!("insecure_sources:\n  - \"127.0.0.1:{registry_port}\"\n"),
        )?;
        let module = format!("registry://127.0.0.1:{registry_port}/{MODULE_PATH}");
        let home = root.join("home");
        std::fs::create_dir_all(&home)?;
        let annotated = policy_module();
        run(
            &tools.kwctl,
            &[
                "push",
                "--sources-path",
                &sources.display().to_string(),
                &annotated.display().to_string(),
                &module,
            ],
            &[("HOME", home.as_os_str())],
        )
        .context("kwctl push of annotated-policy.wasm")?;

        // The project's image, pushed to the registry; the policy's `image`
        // names it there, so the Job's containers and the launcher run it.
        let version = concat!("v", env!("CARGO_PKG_VERSION"));
        let image = format!("127.0.0.1:{registry_port}/cache-buster/cache-buster:{version}");
        push(&tools.skopeo, &tools.image, version, &image)
            .context("skopeo copy of make image's layout to the registry")?;
        let policy_text = std::fs::read_to_string(repository.join("deploy/policy.yaml"))
            .context("reading deploy/policy.yaml")?;
        let released_image = format!("image: ghcr.io/cache-buster/cache-buster:{version}");
        ensure!(
            policy_text.contains(&released_image),
            "deploy/policy.yaml does not set {released_image}"
        );
        let registry = format!("127.0.0.1:{registry_port}");
        let policy_text = policy_text
            .replace(&released_image, &format!("image: {image}"))
            // SPEC §9: content purges read the site images pushed there.
            .replace(
                "    contentMaxUrls: 500\n",
                &format!(
                    "    contentMaxUrls: 500\n    contentInsecureRegistries: [\"{registry}\"]\n"
                ),
            );
        ensure!(
            policy_text.contains("contentInsecureRegistries"),
            "deploy/policy.yaml does not set contentMaxUrls: 500, after which the tests name their registry"
        );
        let policy: Value = serde_yaml::from_str(&policy_text)?;
        // The ClusterAdmissionPolicy of deploy/policy.yaml, stored as
        // Kubewarden stores it: the policy-server is configured from it, and
        // the launcher reads its settings from it.
        let crd = std::fs::read_to_string(
            repository.join("e2e-cluster/crds/clusteradmissionpolicies.yaml"),
        )?;
        apply_yaml(&client, &crd, None, &[]).await?;
        {
            let text = policy_text.clone();
            let client = client.clone();
            // Until the new CRD is served.
            wait_until(&mut control_plane[1], Duration::from_secs(30), move || {
                let client = client.clone();
                let text = text.clone();
                async move { apply_yaml(&client, &text, None, &[]).await.is_ok() }
            })
            .await?;
        }

        let images = Arc::new(ImageStore::new(tools.skopeo.clone(), root.join("images")));
        // The launcher runs from the image too: its program as pulled.
        let program = images.pull(&image).await?.entrypoint_program()?;
        let cdn = CdnDouble::start(&pki, 443).await?;
        let node = TestNode::start(NodeSetup {
            client: client.clone(),
            api_port,
            bwrap: tools.bwrap.clone(),
            images: images.clone(),
            ca_bundle: pki.ca_pem.clone(),
            dir: root.join("node"),
        })
        .await?;

        let cluster = Cluster {
            tools,
            pki,
            dir,
            api_port,
            client,
            policy,
            registry,
            launcher_port: free_port()?,
            standby_port: free_port()?,
            module,
            policy_server_port: free_port()?,
            policy_server_readiness: free_port()?,
            node,
            cdn,
            image,
            images,
            program,
            launcher: Mutex::new(None),
            standby: Mutex::new(None),
            policy_server: Mutex::new(None),
            control_plane,
        };
        cluster.start_policy_server().await?;
        cluster.register_webhook().await?;
        cluster.install_launcher().await?;
        cluster.start_launcher().await?;
        Ok(cluster)
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn logs(&self) -> PathBuf {
        self.root().join("logs")
    }

    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.root().join("admin.kubeconfig")
    }

    /// The ClusterAdmissionPolicy of deploy/policy.yaml, as stored.
    pub(crate) fn policies(&self) -> Api<DynamicObject> {
        let resource = kube::api::ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("policies.kubewarden.io", "v1", "ClusterAdmissionPolicy"),
            "clusteradmissionpolicies",
        );
        Api::all_with(self.client.clone(), &resource)
    }

    pub(crate) fn policy_name(&self) -> Result<&str> {
        self.policy["metadata"]["name"]
            .as_str()
            .ok_or_else(|| anyhow!("deploy/policy.yaml has no metadata.name"))
    }

    /// The stored ClusterAdmissionPolicy's `spec.settings`.
    pub async fn policy_settings(&self) -> Result<Value> {
        let stored = self.policies().get(self.policy_name()?).await?;
        Ok(stored.data["spec"]["settings"].clone())
    }

    /// Replaces the stored ClusterAdmissionPolicy's `spec.settings`, as a
    /// user's edit (or Flux) does. The policy-server keeps its settings
    /// until it is restarted, as until Kubewarden's controller reloads it.
    pub async fn set_policy_settings(&self, settings: Value) -> Result<()> {
        let policies = self.policies();
        let mut stored = policies.get(self.policy_name()?).await?;
        stored.data["spec"]["settings"] = settings;
        policies
            .replace(self.policy_name()?, &PostParams::default(), &stored)
            .await?;
        Ok(())
    }

    /// A site namespace as a user sets one up: Pod Security "restricted"
    /// enforced, deploy/site/job-rbac.yaml applied in it.
    pub async fn site_namespace(&self, name: &str) -> Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let namespace: Namespace = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}
        }))?;
        namespaces
            .create(&PostParams::default(), &namespace)
            .await?;
        let text = std::fs::read_to_string(repository().join("deploy/site/job-rbac.yaml"))?;
        apply_yaml(&self.client, &text, Some(name), &[]).await?;
        Ok(())
    }

    /// Copies the logs next to the target directory, for a failed run.
    pub fn keep_logs(&self) -> Option<PathBuf> {
        let kept = repository().join("target/cluster-logs");
        let _ = std::fs::remove_dir_all(&kept);
        std::fs::create_dir_all(&kept).ok()?;
        for entry in std::fs::read_dir(self.logs()).ok()?.flatten() {
            let _ = std::fs::copy(entry.path(), kept.join(entry.file_name()));
        }
        Some(kept)
    }

    /// Stops everything, newest first.
    pub fn stop(&mut self) {
        let _ = self.stop_standby();
        let _ = self.stop_launcher();
        let _ = self.stop_policy_server();
        while let Some(mut process) = self.control_plane.pop() {
            process.stop();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Keeps a started process in its slot (a component the scenarios restart).
pub(crate) fn keep(slot: &Mutex<Option<Process>>, process: Process) -> Result<()> {
    *slot.lock().map_err(|_| anyhow!("poisoned"))? = Some(process);
    Ok(())
}

/// Stops the process in the slot, if any.
pub(crate) fn stop(slot: &Mutex<Option<Process>>) -> Result<()> {
    if let Some(mut process) = slot.lock().map_err(|_| anyhow!("poisoned"))?.take() {
        process.stop();
    }
    Ok(())
}

/// The policy module the tests deploy: `$POLICY`, else the repository's
/// annotated-policy.wasm (what `make annotated-policy.wasm` builds).
pub fn policy_module() -> PathBuf {
    std::env::var_os("POLICY")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository().join("annotated-policy.wasm"))
}

fn http_request(path: &str) -> http::Request<Vec<u8>> {
    let mut request = http::Request::new(Vec::new());
    *request.uri_mut() = path.parse().unwrap_or_default();
    request
}

/// A plain-HTTP GET on loopback, the body.
pub async fn http_get(port: u16, path: &str) -> Result<String> {
    Ok(http_get_with_status(port, path).await?.1)
}

/// GET http://127.0.0.1:PORT/PATH: the status code and the body.
pub async fn http_get_with_status(port: u16, path: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Server-side apply of every document in `yaml` but those of `skip_kinds`,
/// in `namespace` where a document names none.
pub async fn apply_yaml(
    client: &Client,
    yaml: &str,
    namespace: Option<&str>,
    skip_kinds: &[&str],
) -> Result<Vec<DynamicObject>> {
    let documents = serde_yaml::Deserializer::from_str(yaml)
        .map(Value::deserialize)
        .collect::<Result<Vec<Value>, _>>()?;
    let mut applied = Vec::new();
    for value in documents.into_iter().filter(|value| !value.is_null()) {
        let object: DynamicObject = serde_json::from_value(value)?;
        let types = object
            .types
            .clone()
            .ok_or_else(|| anyhow!("a document without apiVersion/kind"))?;
        if skip_kinds.contains(&types.kind.as_str()) {
            continue;
        }
        let gvk = GroupVersionKind::try_from(&types)?;
        let (resource, capabilities) = pinned_kind(client, &gvk).await?;
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Namespaced => {
                let namespace = object
                    .metadata
                    .namespace
                    .as_deref()
                    .or(namespace)
                    .ok_or_else(|| {
                        anyhow!("{} {} needs a namespace", types.kind, object.name_any())
                    })?;
                Api::namespaced_with(client.clone(), namespace, &resource)
            }
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        let name = object.name_any();
        applied.push(
            api.patch(
                &name,
                &PatchParams::apply("cache-buster-tests").force(),
                &Patch::Apply(&object),
            )
            .await
            .with_context(|| format!("applying {} {name}", types.kind))?,
        );
    }
    Ok(applied)
}
