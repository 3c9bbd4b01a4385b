//! The launcher's replicas in the test cluster, as deploy/launcher.yaml
//! runs them: the image's own program, as its ServiceAccount, with the
//! Lease; started, killed and read (`/readyz`, `/metrics`) by the scenarios.

use crate::cluster::{
    Cluster, LAUNCHER_ACCOUNT, LAUNCHER_IDENTITY, LAUNCHER_LEASE, LAUNCHER_NAMESPACE,
    STANDBY_IDENTITY, apply_yaml, http_get, keep, kubeconfig, stop,
};
use crate::process::{Process, http_ok, wait_until};
use crate::tools::repository;
use anyhow::{Result, anyhow};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

impl Cluster {
    /// deploy/launcher.yaml, less its Deployment: the launcher runs as a
    /// process here, with that ServiceAccount's token.
    pub(crate) async fn install_launcher(&self) -> Result<()> {
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

    pub(crate) async fn spawn_replica(
        &self,
        identity: &str,
        port: u16,
        wait_ready: bool,
    ) -> Result<Process> {
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
}
