//! Kubewarden's side of the test cluster: the real `policy-server` serving
//! the policy pushed to the registry, and the MutatingWebhookConfiguration
//! Kubewarden's controller makes of deploy/policy.yaml.

use crate::cluster::{Cluster, KUBEWARDEN_NAMESPACE, POLICY_ID, keep, stop};
use crate::process::{Process, http_ok, wait_until};
use anyhow::{Result, anyhow, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use std::time::Duration;

impl Cluster {
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
}
