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
use anyhow::{Context as _, Result, anyhow, bail, ensure};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, WebhookClientConfig,
};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
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
const KUBEWARDEN_NAMESPACE: &str = "kubewarden";
const ADMIN_TOKEN: &str = "cache-buster-test-admin";
const LAUNCHER_NAMESPACE: &str = "cache-buster-system";
const LAUNCHER_ACCOUNT: &str = "launcher";
/// The Lease deploy/launcher.yaml creates, and the two replicas' names in it.
pub const LAUNCHER_LEASE: &str = "launcher";
pub const LAUNCHER_IDENTITY: &str = "launcher-a";
pub const STANDBY_IDENTITY: &str = "launcher-b";
/// Where the pushed policy lives in the local registry.
const MODULE_PATH: &str = "cache-buster/policies/cache-buster:v0.1.0";

pub struct Cluster {
    pub tools: Tools,
    pub pki: Pki,
    pub dir: tempfile::TempDir,
    pub api_port: u16,
    pub client: Client,
    /// deploy/policy.yaml, as Kubewarden reads it.
    pub policy: Value,
    pub launcher_port: u16,
    standby_port: u16,
    pub module: String,
    policy_server_port: u16,
    policy_server_readiness: u16,
    /// The node that binds and runs the pods of the namespaces it serves.
    pub node: TestNode,
    /// The CDN the companion Jobs' purges reach.
    pub cdn: CdnDouble,
    /// The project's image as the registry holds it (the policy's `image`),
    /// and where the node keeps the images it pulled.
    pub image: String,
    pub images: Arc<ImageStore>,
    /// The image's program as pulled and unpacked: what the launcher runs.
    pub program: PathBuf,
    // Dropped last to first: the launcher and policy-server before the
    // control plane they talk to.
    launcher: Mutex<Option<Process>>,
    standby: Mutex<Option<Process>>,
    policy_server: Mutex<Option<Process>>,
    control_plane: Vec<Process>,
}

/// A kubeconfig for the test API server with a bearer token.
fn kubeconfig(api_port: u16, ca: &Path, token: &str) -> String {
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
        let registry_config = root.join("registry.yml");
        std::fs::write(
            &registry_config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{registry_port}\n",
                root.join("registry").display()
            ),
        )?;
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
        let policy_text = policy_text.replace(&released_image, &format!("image: {image}"));
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
    fn policies(&self) -> Api<DynamicObject> {
        let resource = kube::api::ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("policies.kubewarden.io", "v1", "ClusterAdmissionPolicy"),
            "clusteradmissionpolicies",
        );
        Api::all_with(self.client.clone(), &resource)
    }

    fn policy_name(&self) -> Result<&str> {
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

    /// policy-server with TLS, loading the pushed module with the settings
    /// of the stored ClusterAdmissionPolicy, as Kubewarden's controller
    /// configures it.
    pub async fn start_policy_server(&self) -> Result<()> {
        let settings = self.policy_settings().await?;
        let root = self.root();
        let serving = self
            .pki
            .serving("policy-server", &["127.0.0.1", "localhost"])?;
        let spec = &self.policy["spec"];
        let policies = json!({
            POLICY_ID: {
                "module": self.module,
                "policyMode": spec["mode"].as_str().unwrap_or("protect"),
                "allowedToMutate": spec["mutating"].as_bool().unwrap_or(false),
                "timeoutEvalSeconds": spec["timeoutEvalSeconds"],
                "settings": settings,
            }
        });
        let policies_file = root.join("policies.yml");
        std::fs::write(&policies_file, serde_yaml::to_string(&policies)?)?;
        let download = root.join("policies");
        std::fs::create_dir_all(&download)?;
        let kubeconfig = self.admin_kubeconfig();
        let mut server = Process::start(
            "policy-server",
            &self.tools.policy_server,
            [
                format!("--policies={}", policies_file.display()),
                "--addr=127.0.0.1".to_owned(),
                format!("--port={}", self.policy_server_port),
                format!("--readiness-probe-port={}", self.policy_server_readiness),
                format!("--cert-file={}", serving.cert.display()),
                format!("--key-file={}", serving.key.display()),
                format!("--sources-path={}", root.join("sources.yml").display()),
                format!("--policies-download-dir={}", download.display()),
                format!("--sigstore-cache-dir={}", root.join("sigstore").display()),
                "--ignore-kubernetes-connection-failure".to_owned(),
                "--log-no-color".to_owned(),
                "--workers=2".to_owned(),
            ],
            &[
                ("KUBECONFIG", kubeconfig.as_os_str()),
                ("HOME", root.join("home").as_os_str()),
            ],
            &self.logs(),
        )?;
        let readiness = self.policy_server_readiness;
        wait_until(&mut server, Duration::from_secs(120), move || {
            http_ok(readiness, "/readiness")
        })
        .await?;
        keep(&self.policy_server, server)
    }

    pub fn stop_policy_server(&self) -> Result<()> {
        stop(&self.policy_server)
    }

    /// The MutatingWebhookConfiguration Kubewarden's controller makes of the
    /// ClusterAdmissionPolicy in deploy/policy.yaml.
    pub fn webhook_configuration(&self) -> Result<MutatingWebhookConfiguration> {
        let spec = &self.policy["spec"];
        let name = self.policy["metadata"]["name"]
            .as_str()
            .ok_or_else(|| anyhow!("deploy/policy.yaml has no metadata.name"))?;
        if format!("clusterwide-{name}") != POLICY_ID {
            bail!("deploy/policy.yaml names the policy {name}, the tests expect cache-buster");
        }
        let rules: Vec<RuleWithOperations> = serde_json::from_value(spec["rules"].clone())?;
        let object_selector: Option<LabelSelector> =
            serde_json::from_value(spec["objectSelector"].clone())?;
        let ca = self.pki.ca_pem.as_bytes().to_vec();
        Ok(MutatingWebhookConfiguration {
            metadata: kube::api::ObjectMeta {
                name: Some(POLICY_ID.to_owned()),
                labels: Some(
                    [
                        ("kubewarden".to_owned(), "true".to_owned()),
                        ("kubewardenPolicyScope".to_owned(), "cluster".to_owned()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            webhooks: Some(vec![MutatingWebhook {
                name: format!("{POLICY_ID}.kubewarden.admission"),
                client_config: WebhookClientConfig {
                    url: Some(format!(
                        "https://127.0.0.1:{}/validate/{POLICY_ID}",
                        self.policy_server_port
                    )),
                    ca_bundle: Some(ByteString(ca)),
                    service: None,
                },
                rules: Some(rules),
                failure_policy: Some(spec["failurePolicy"].as_str().unwrap_or("Fail").to_owned()),
                match_policy: Some(
                    spec["matchPolicy"]
                        .as_str()
                        .unwrap_or("Equivalent")
                        .to_owned(),
                ),
                namespace_selector: Some(serde_json::from_value(json!({
                    "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                                          "values": [KUBEWARDEN_NAMESPACE]}]
                }))?),
                object_selector,
                side_effects: spec["sideEffects"].as_str().unwrap_or("None").to_owned(),
                timeout_seconds: spec["timeoutSeconds"]
                    .as_i64()
                    .and_then(|t| i32::try_from(t).ok()),
                admission_review_versions: vec!["v1".to_owned()],
                reinvocation_policy: None,
                match_conditions: None,
            }]),
        })
    }

    /// Registers the webhook and waits until the API server calls it.
    pub async fn register_webhook(&self) -> Result<()> {
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        api.patch(
            POLICY_ID,
            &PatchParams::apply("kubewarden-controller").force(),
            &Patch::Apply(self.webhook_configuration()?),
        )
        .await?;
        // The API server picks webhook configurations up asynchronously: a
        // server-side dry run of a labelled Deployment says when.
        let probe: Value = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "webhook-probe", "namespace": "default",
                         "labels": {"cache-buster.io/site": "probe"},
                         "annotations": {"cache-buster.io/urls": "https://probe.example/"}},
            "spec": {"selector": {"matchLabels": {"app": "probe"}},
                     "template": {"metadata": {"labels": {"app": "probe"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}
        }))?;
        let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
            Api::namespaced(self.client.clone(), "default");
        let deployment = serde_json::from_value(probe)?;
        for _ in 0..100 {
            let created = deployments
                .create(
                    &PostParams {
                        dry_run: true,
                        field_manager: None,
                    },
                    &deployment,
                )
                .await?;
            if created.annotations().contains_key("cache-buster.io/job") {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the API server did not call the policy within 10 s of registering the webhook")
    }

    pub async fn remove_webhook(&self) -> Result<()> {
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        api.delete(POLICY_ID, &Default::default()).await?;
        // As with registering: wait until the API server no longer calls it.
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(())
    }

    /// deploy/launcher.yaml, less its Deployment: the launcher runs as a
    /// process here, with that ServiceAccount's token.
    async fn install_launcher(&self) -> Result<()> {
        let text = std::fs::read_to_string(repository().join("deploy/launcher.yaml"))?;
        apply_yaml(&self.client, &text, None, &["Deployment"]).await?;
        Ok(())
    }

    /// A token of `account` from the TokenRequest API, as a kubeconfig file.
    pub async fn kubeconfig_for(&self, namespace: &str, account: &str) -> Result<PathBuf> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: None,
                expiration_seconds: Some(3600),
                bound_object_ref: None,
            }),
            ..Default::default()
        };
        let token = accounts
            .create_token_request(account, &PostParams::default(), &request)
            .await?
            .status
            .and_then(|status| status.token)
            .ok_or_else(|| anyhow!("the TokenRequest for {namespace}/{account} gave no token"))?;
        let path = self
            .root()
            .join(format!("{namespace}-{account}.kubeconfig"));
        std::fs::write(
            &path,
            kubeconfig(self.api_port, &self.pki.ca_file(), &token),
        )?;
        Ok(path)
    }

    /// Starts the launcher and waits until it is ready (`/readyz`).
    pub async fn start_launcher(&self) -> Result<()> {
        self.spawn_launcher(true).await
    }

    /// Starts the launcher; with `wait_ready`, waits until `/readyz` says ok.
    pub async fn spawn_launcher(&self, wait_ready: bool) -> Result<()> {
        let launcher = self
            .spawn_replica(LAUNCHER_IDENTITY, self.launcher_port, wait_ready)
            .await?;
        keep(&self.launcher, launcher)
    }

    /// Starts a second launcher, as deploy/launcher.yaml's second replica:
    /// same ServiceAccount and arguments, its own name in the Lease.
    pub async fn start_standby(&self) -> Result<()> {
        let standby = self
            .spawn_replica(STANDBY_IDENTITY, self.standby_port, true)
            .await?;
        keep(&self.standby, standby)
    }

    pub fn stop_standby(&self) -> Result<()> {
        stop(&self.standby)
    }

    /// The second launcher's process id.
    pub fn standby_pid(&self) -> Option<u32> {
        self.standby.lock().ok()?.as_ref().map(Process::pid)
    }

    /// Kills the first launcher at once (SIGKILL): it releases nothing, as
    /// a node that dies.
    pub fn kill_launcher(&self) -> Result<()> {
        if let Some(mut process) = self
            .launcher
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .take()
        {
            process.kill();
        }
        Ok(())
    }

    /// `/readyz` of the first launcher (`launcher`) or the second.
    pub async fn readyz(&self, standby: bool) -> Result<String> {
        let port = if standby {
            self.standby_port
        } else {
            self.launcher_port
        };
        http_get(port, "/readyz").await
    }

    async fn spawn_replica(&self, identity: &str, port: u16, wait_ready: bool) -> Result<Process> {
        let kubeconfig = self
            .kubeconfig_for(LAUNCHER_NAMESPACE, LAUNCHER_ACCOUNT)
            .await?;
        let mut launcher = Process::start(
            identity,
            &self.program,
            [
                "launcher".to_owned(),
                format!("--policy={}", self.policy_name()?),
                "--history-limit=2".to_owned(),
                format!("--listen=127.0.0.1:{port}"),
                format!("--lease={LAUNCHER_LEASE}"),
            ],
            &[
                ("KUBECONFIG", kubeconfig.as_os_str()),
                ("RUST_LOG", OsStr::new("info")),
                // As the downward API sets them in deploy/launcher.yaml.
                ("POD_NAME", OsStr::new(identity)),
                ("POD_NAMESPACE", OsStr::new(LAUNCHER_NAMESPACE)),
            ],
            &self.logs(),
        )?;
        let started = move || async move {
            if wait_ready {
                http_ok(port, "/readyz").await
            } else {
                // Answering at all (/healthz) is enough.
                http_ok(port, "/healthz").await
            }
        };
        wait_until(&mut launcher, Duration::from_secs(30), started).await?;
        Ok(launcher)
    }

    pub fn stop_launcher(&self) -> Result<()> {
        stop(&self.launcher)
    }

    /// The running launcher's process id.
    pub fn launcher_pid(&self) -> Option<u32> {
        self.launcher.lock().ok()?.as_ref().map(Process::pid)
    }

    /// The launcher's /metrics text.
    pub async fn launcher_metrics(&self) -> Result<String> {
        http_get(self.launcher_port, "/metrics").await
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
fn keep(slot: &Mutex<Option<Process>>, process: Process) -> Result<()> {
    *slot.lock().map_err(|_| anyhow!("poisoned"))? = Some(process);
    Ok(())
}

/// Stops the process in the slot, if any.
fn stop(slot: &Mutex<Option<Process>>) -> Result<()> {
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
