//! Where the real programs are. Each is taken from the variable the
//! ecosystem uses for it (envtest's `KUBEBUILDER_ASSETS`, `KWCTL`,
//! `POLICY_SERVER`, …), else from the reference toolbox beside the repository
//! (`../shared/toolbox`, unpacked into `target/toolbox` by its install.sh),
//! else from `PATH`. Nothing is downloaded.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every program a cluster test runs.
#[derive(Debug, Clone)]
pub struct Tools {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kwctl: PathBuf,
    pub policy_server: PathBuf,
    pub registry: PathBuf,
    pub launcher: PathBuf,
    pub curl: PathBuf,
    pub kubectl: PathBuf,
    pub bwrap: PathBuf,
}

/// A program that was not found, and how to get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub program: &'static str,
    pub looked_in: String,
    pub how: &'static str,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} not found (looked in {}); {}",
            self.program, self.looked_in, self.how
        )
    }
}

/// The repository's root: this crate's parent.
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The unpacked reference toolbox, if there is one: `$TOOLBOX_DIR`, else
/// `../shared/toolbox` unpacked (idempotently) into `target/toolbox`.
fn toolbox() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TOOLBOX_DIR") {
        return Some(PathBuf::from(dir));
    }
    let repository = repository();
    let install = repository.join("../shared/toolbox/install.sh");
    let target = repository.join("target/toolbox");
    if install.is_file() {
        let status = Command::new("bash").arg(&install).arg(&target).status();
        if !matches!(status, Ok(status) if status.success()) {
            eprintln!("cluster: {} {} failed", install.display(), target.display());
        }
    }
    target.is_dir().then_some(target)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

struct Lookup {
    toolbox: Option<PathBuf>,
    missing: Vec<Missing>,
}

impl Lookup {
    /// The first of: `$variable` (a file), `$KUBEBUILDER_ASSETS/name` when
    /// `assets`, the toolbox's `name`, `name` on PATH.
    fn find(
        &mut self,
        program: &'static str,
        variable: Option<&str>,
        assets: bool,
        how: &'static str,
    ) -> PathBuf {
        let mut looked_in = Vec::new();
        let mut candidates = Vec::new();
        if let Some(variable) = variable {
            looked_in.push(format!("${variable}"));
            if let Some(path) = std::env::var_os(variable) {
                candidates.push(PathBuf::from(path));
            }
        }
        if assets {
            looked_in.push("$KUBEBUILDER_ASSETS".to_owned());
            if let Some(dir) = std::env::var_os("KUBEBUILDER_ASSETS") {
                candidates.push(PathBuf::from(dir).join(program));
            }
        }
        if let Some(toolbox) = &self.toolbox {
            looked_in.push(toolbox.display().to_string());
            candidates.push(toolbox.join(program));
        }
        looked_in.push("PATH".to_owned());
        candidates.extend(on_path(program));
        match candidates.into_iter().find(|path| path.is_file()) {
            Some(path) => path,
            None => {
                self.missing.push(Missing {
                    program,
                    looked_in: looked_in.join(", "),
                    how,
                });
                PathBuf::from(program)
            }
        }
    }
}

const ENVTEST: &str = "on a machine with internet, `setup-envtest use 1.26 -p path` gives a KUBEBUILDER_ASSETS \
                       directory (etcd, kube-apiserver); or unpack ../shared/toolbox with its install.sh";
const KUBERNETES_SERVER: &str = "it is in Kubernetes' server release (kubernetes-server-linux-amd64.tar.gz, \
                                 kubernetes/server/bin); set KUBE_CONTROLLER_MANAGER or put it in KUBEBUILDER_ASSETS";
const KUBEWARDEN: &str = "download it from the kubewarden/kubewarden-controller release v1.35.0 and set KWCTL and \
                          POLICY_SERVER, or unpack ../shared/toolbox with its install.sh";

impl Tools {
    pub fn locate() -> Result<Tools, Vec<Missing>> {
        let mut lookup = Lookup {
            toolbox: toolbox(),
            missing: Vec::new(),
        };
        let launcher_default = repository().join("target/tools/cache-buster-launcher");
        let launcher = std::env::var_os("LAUNCHER")
            .map(PathBuf::from)
            .unwrap_or(launcher_default);
        if !launcher.is_file() {
            lookup.missing.push(Missing {
                program: "cache-buster-launcher",
                looked_in: format!("$LAUNCHER, {}", launcher.display()),
                how: "build it with `cargo build --locked --profile tools -p cache-buster-launcher`",
            });
        }
        let tools = Tools {
            etcd: lookup.find("etcd", None, true, "Debian: apt-get install etcd-server"),
            kube_apiserver: lookup.find("kube-apiserver", None, true, ENVTEST),
            kube_controller_manager: lookup.find(
                "kube-controller-manager",
                Some("KUBE_CONTROLLER_MANAGER"),
                true,
                KUBERNETES_SERVER,
            ),
            kwctl: lookup.find("kwctl", Some("KWCTL"), false, KUBEWARDEN),
            policy_server: lookup.find("policy-server", Some("POLICY_SERVER"), false, KUBEWARDEN),
            registry: lookup.find(
                "docker-registry",
                Some("REGISTRY"),
                false,
                "Debian: apt-get install docker-registry",
            ),
            curl: lookup.find(
                "curl",
                Some("CURL"),
                false,
                "curl >= 8.3 (Debian 12 has 7.88): set CURL, or unpack ../shared/toolbox with its install.sh",
            ),
            kubectl: lookup.find(
                "kubectl",
                Some("KUBECTL"),
                true,
                "install kubectl (https://kubernetes.io/docs/tasks/tools/) or set KUBECTL",
            ),
            bwrap: lookup.find("bwrap", Some("BWRAP"), false, "Debian: apt-get install bubblewrap"),
            launcher,
        };
        if lookup.missing.is_empty() {
            Ok(tools)
        } else {
            Err(lookup.missing)
        }
    }
}
